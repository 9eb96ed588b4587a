"""Program KPIs from one member item each: periods of whole UTC months, exact mergeable sums, reports rounded once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loyalty.segments.features import month_index, month_key, window_totals
from loyalty.segments.kpis import (
    KpiConfig,
    KpiPeriods,
    KpiReport,
    KpiSums,
    KpiTable,
    MonthRange,
    kpi_groups,
    member_kpis,
)

AS_OF = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
QUARTER = KpiConfig()  # 3 months: current 2025-11..2026-01, previous 2025-08..2025-10


def member_item(**fields: Any) -> dict[str, Any]:
    """A member item as the store reads it: Decimal numbers; maps keyed "YYYY-MM"."""
    item: dict[str, Any] = {
        "member_id": "m_1",
        "tier": "Insider",
        "enrolled_at": "2024-03-01T09:00:00.000000Z",
        "available": Decimal(0),
        "pending": Decimal(0),
        "lifetime_earned": Decimal(0),
        "redeemed": Decimal(0),
        "spend_by_month": {},
        "purchases_by_month": {},
        "points_by_month": {},
    }
    item.update(fields)
    return item


def months(values: dict[str, int | str]) -> dict[str, Decimal]:
    return {month: Decimal(str(value)) for month, value in values.items()}


def buyer(purchases: dict[str, int], spend: dict[str, str], **fields: Any) -> dict[str, Any]:
    return member_item(purchases_by_month=months(dict(purchases)), spend_by_month=months(dict(spend)), **fields)


# ---- periods ------------------------------------------------------------------------------------------------------


def test_the_current_period_ends_with_the_as_of_month_and_the_previous_one_precedes_it() -> None:
    periods = KpiPeriods.of(AS_OF, QUARTER)

    assert periods.current == MonthRange(first="2025-11", last="2026-01")
    assert periods.previous == MonthRange(first="2025-08", last="2025-10")


@pytest.mark.parametrize(
    ("period_months", "current", "previous"),
    [
        (1, ("2026-01", "2026-01"), ("2025-12", "2025-12")),
        (6, ("2025-08", "2026-01"), ("2025-02", "2025-07")),
        (12, ("2025-02", "2026-01"), ("2024-02", "2025-01")),
    ],
)
def test_period_lengths_cross_year_ends(
    period_months: int, current: tuple[str, str], previous: tuple[str, str]
) -> None:
    periods = KpiPeriods.of(AS_OF, KpiConfig(period_months=period_months))

    assert (periods.current.first, periods.current.last) == current
    assert (periods.previous.first, periods.previous.last) == previous


@pytest.mark.parametrize("period_months", [0, 13, -1])
def test_a_period_is_1_to_12_months(period_months: int) -> None:
    with pytest.raises(ValidationError):
        KpiConfig(period_months=period_months)


def test_as_of_in_another_zone_is_read_in_utc_and_a_naive_one_is_refused() -> None:
    # 00:30 on 1 February in Paris is still January in UTC
    paris = datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))

    assert KpiPeriods.of(paris, QUARTER).as_of_month == "2026-01"
    with pytest.raises(ValueError, match="timezone-aware"):
        member_kpis(member_item(), datetime(2026, 1, 15), QUARTER)


def test_month_key_inverts_month_index_and_window_totals_read_the_maps_like_features_of() -> None:
    assert month_key(month_index(AS_OF)) == "2026-01"
    assert month_key(month_index(datetime(2025, 12, 31, tzinfo=UTC)) + 1) == "2026-01"

    totals, active = window_totals(
        months({"2026-01": "1.50", "2025-12": 0, "2025-11": 2, "2025-10": 4, "2026-02": 99}), month_index(AS_OF), (2, 3)
    )

    assert (totals, active) == ([Decimal("1.50"), Decimal("3.50")], [1, 2])


# ---- one member ---------------------------------------------------------------------------------------------------


def test_a_member_who_bought_in_both_periods_is_active_a_previous_purchaser_and_retained() -> None:
    item = buyer(
        {"2025-10": 1, "2026-01": 2},
        {"2025-10": "40.00", "2026-01": "100.50"},
        lifetime_earned=Decimal(1000),
        redeemed=Decimal(0),
        available=Decimal(900),
        pending=Decimal(100),
    )

    assert member_kpis(item, AS_OF, QUARTER) == KpiSums(
        members=1,
        active_members=1,
        previous_purchasers=1,
        retained=1,
        spend_current=Decimal("100.50"),
        points_earned=1000,
        points_redeemed=0,
        points_liability=1000,
    )


def test_previous_period_only_current_period_only_and_never() -> None:
    previous_only = buyer({"2025-08": 2}, {"2025-08": "80.00"})
    current_only = buyer({"2025-11": 1}, {"2025-11": "59.50"})

    lapsed = member_kpis(previous_only, AS_OF, QUARTER)
    new = member_kpis(current_only, AS_OF, QUARTER)

    assert (lapsed.active_members, lapsed.previous_purchasers, lapsed.retained, lapsed.spend_current) == (
        0,
        1,
        0,
        Decimal(0),
    )
    assert (new.active_members, new.previous_purchasers, new.retained, new.spend_current) == (
        1,
        0,
        0,
        Decimal("59.50"),
    )


def test_a_member_who_never_purchased_and_has_no_maps_or_counters_counts_only_as_a_member() -> None:
    item = {"member_id": "m_9", "tier": "Insider", "enrolled_at": "2025-12-01T00:00:00Z"}

    assert member_kpis(item, AS_OF, QUARTER) == KpiSums(members=1)


def test_a_fully_refunded_purchase_still_makes_the_member_active_with_no_spend() -> None:
    # refunds net spend in the order's month, but do not take the purchase back
    item = buyer({"2026-01": 1}, {"2026-01": "0.00"})

    sums = member_kpis(item, AS_OF, QUARTER)

    assert (sums.active_members, sums.spend_current) == (1, Decimal(0))


def test_months_before_the_previous_period_and_after_as_of_are_ignored() -> None:
    # 2025-07 is the 7th month back (before the previous period); 2026-02 is after the as-of month
    item = buyer({"2025-07": 5, "2024-01": 3, "2026-02": 1}, {"2025-07": "500.00", "2026-02": "20.00"})

    assert member_kpis(item, AS_OF, QUARTER) == KpiSums(members=1)


def test_zero_purchase_months_are_not_purchases() -> None:
    item = buyer({"2026-01": 0, "2025-09": 0}, {})

    sums = member_kpis(item, AS_OF, QUARTER)

    assert (sums.active_members, sums.previous_purchasers) == (0, 0)


def test_spend_stays_exact_decimal_and_a_float_in_a_hand_built_item_is_read_by_its_text() -> None:
    item = member_item(
        purchases_by_month=months({"2026-01": 2}), spend_by_month={"2026-01": 0.1, "2025-12": Decimal("0.20")}
    )

    assert member_kpis(item, AS_OF, QUARTER).spend_current == Decimal("0.30")


def test_a_corrupt_month_key_is_an_error_not_a_silent_zero() -> None:
    with pytest.raises(ValueError, match="not YYYY-MM"):
        member_kpis(buyer({"2026-1": 1}, {}), AS_OF, QUARTER)


def test_negative_counters_are_refused() -> None:
    with pytest.raises(ValidationError):
        member_kpis(member_item(available=Decimal(-5)), AS_OF, QUARTER)


# ---- a worked example: four members, one table --------------------------------------------------------------------

POPULATION = {
    # tier, segments, item
    "lapsed": (
        "Insider",
        {"lifecycle:churning"},
        buyer(
            {"2025-09": 2},
            {"2025-09": "80.00"},
            lifetime_earned=Decimal(500),
            redeemed=Decimal(200),
            available=Decimal(300),
        ),
    ),
    "loyal": (
        "VIB",
        {"lifecycle:loyal", "rfm:champions"},
        buyer(
            {"2025-10": 1, "2026-01": 2},
            {"2025-10": "40.00", "2026-01": "100.50"},
            lifetime_earned=Decimal(1000),
            available=Decimal(900),
            pending=Decimal(100),
        ),
    ),
    "new": (
        "Insider",
        {"lifecycle:new"},
        buyer(
            {"2025-11": 1},
            {"2025-11": "59.50"},
            lifetime_earned=Decimal(300),
            redeemed=Decimal(300),
        ),
    ),
    "never": ("Insider", {"lifecycle:potential"}, member_item()),
}


def population_table() -> KpiTable:
    table = KpiTable.of(AS_OF, QUARTER)
    for tier, segments, item in POPULATION.values():
        table.add(kpi_groups(tier, segments), member_kpis(item, AS_OF, QUARTER))
    return table


def test_the_overall_report_by_hand() -> None:
    # Given four members: lapsed (previous only), loyal (both), new (current only), never purchased
    table = population_table()

    # When the overall group is reported
    report = table.report("all")

    # Then: 4 members, 2 active; of the 2 previous purchasers 1 came back; 160.00 spent this quarter;
    # 500 of 1800 points redeemed; 300 + 900 + 100 points still held
    assert report == KpiReport(
        group="all",
        members=4,
        active_members=2,
        redemption_rate=Decimal("0.2778"),
        retention_rate=Decimal("0.5000"),
        average_spend_per_member=Decimal("40.00"),
        average_spend_per_active_member=Decimal("80.00"),
        points_liability=1300,
        period_months=3,
        current_period=MonthRange(first="2025-11", last="2026-01"),
        previous_period=MonthRange(first="2025-08", last="2025-10"),
    )


def test_tier_and_segment_groups_by_hand() -> None:
    table = population_table()

    insider = table.report("tier:Insider")  # lapsed, new, never
    vib = table.report("tier:VIB")  # loyal
    new = table.report("segment:lifecycle:new")

    assert (insider.members, insider.active_members, insider.retention_rate) == (3, 1, Decimal("0.0000"))
    assert insider.redemption_rate == Decimal("0.6250")  # 500 of 800
    assert insider.average_spend_per_member == Decimal("19.83")  # 59.50 / 3 = 19.8333
    assert insider.average_spend_per_active_member == Decimal("59.50")
    assert (vib.members, vib.points_liability) == (1, 1000)
    assert (vib.retention_rate, vib.redemption_rate) == (Decimal("1.0000"), Decimal("0.0000"))
    assert new.retention_rate is None  # nobody in the segment bought in the previous period
    assert new.redemption_rate == Decimal("1.0000")
    assert table.groups() == (
        "all",
        "segment:lifecycle:churning",
        "segment:lifecycle:loyal",
        "segment:lifecycle:new",
        "segment:lifecycle:potential",
        "segment:rfm:champions",
        "tier:Insider",
        "tier:VIB",
    )


def test_a_group_of_members_who_never_purchased_has_no_rates_and_zero_spend() -> None:
    report = population_table().report("segment:lifecycle:potential")

    assert (report.members, report.active_members, report.points_liability) == (1, 0, 0)
    assert report.redemption_rate is None  # nothing earned
    assert report.retention_rate is None  # nobody bought in the previous period
    assert report.average_spend_per_member == Decimal("0.00")
    assert report.average_spend_per_active_member is None


def test_a_group_nobody_was_added_to_reports_zero_members_and_no_rates() -> None:
    report = population_table().report("segment:rule:win-back")

    assert (report.members, report.active_members, report.points_liability) == (0, 0, 0)
    assert report.redemption_rate is report.retention_rate is None
    assert report.average_spend_per_member is report.average_spend_per_active_member is None


def test_the_report_is_json_ready_with_decimals_as_exact_strings() -> None:
    dumped = population_table().report("all").model_dump(mode="json")

    assert dumped == {
        "group": "all",
        "members": 4,
        "active_members": 2,
        "redemption_rate": "0.2778",
        "retention_rate": "0.5000",
        "average_spend_per_member": "40.00",
        "average_spend_per_active_member": "80.00",
        "points_liability": 1300,
        "period_months": 3,
        "current_period": {"first": "2025-11", "last": "2026-01"},
        "previous_period": {"first": "2025-08", "last": "2025-10"},
    }


# ---- report arithmetic --------------------------------------------------------------------------------------------


def report_of(**sums: Any) -> KpiReport:
    table = KpiTable.of(AS_OF, QUARTER)
    table.add(["all"], KpiSums(**sums))
    return table.report("all")


@pytest.mark.parametrize(
    ("redeemed", "earned", "rate"),
    [
        (1, 3, "0.3333"),
        (2, 3, "0.6667"),
        (1, 32, "0.0312"),  # 0.03125: a tie rounds to even
        (3, 32, "0.0938"),  # 0.09375: a tie rounds to even
        (0, 7, "0.0000"),
        (7, 7, "1.0000"),
    ],
)
def test_rates_round_half_to_even_to_four_places(redeemed: int, earned: int, rate: str) -> None:
    report = report_of(members=1, points_redeemed=redeemed, points_earned=earned)

    assert report.redemption_rate is not None
    assert str(report.redemption_rate) == rate


@pytest.mark.parametrize(
    ("spend", "members", "average"),
    [("0.05", 2, "0.02"), ("0.15", 2, "0.08"), ("100", 3, "33.33"), ("200", 3, "66.67"), ("-0.03", 2, "-0.02")],
)
def test_averages_round_half_to_even_to_cents(spend: str, members: int, average: str) -> None:
    report = report_of(members=members, active_members=members, spend_current=Decimal(spend))

    assert str(report.average_spend_per_member) == str(report.average_spend_per_active_member) == average


def test_rounding_is_exact_beyond_the_decimal_context_precision() -> None:
    # at the default 28 digits, 0.005 + 1e-33 would become the tie 0.005 and then round to even, 0.00
    report = report_of(members=1, active_members=1, spend_current=Decimal("0.005000000000000000000000000000001"))

    assert str(report.average_spend_per_member) == "0.01"


def test_retention_is_the_share_of_previous_purchasers_who_came_back() -> None:
    report = report_of(members=10, active_members=4, previous_purchasers=6, retained=3)

    assert report.retention_rate == Decimal("0.5000")


def test_a_report_is_refused_for_a_key_that_is_not_a_group() -> None:
    with pytest.raises(ValueError, match="not a KPI group"):
        population_table().report("rfm:champions")  # the segment id without "segment:"


# ---- sums and tables: validation and merging ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sums",
    [
        {"members": 1, "active_members": 2},
        {"members": 1, "previous_purchasers": 2},
        {"members": 2, "active_members": 1, "previous_purchasers": 2, "retained": 2},
        {"members": -1},
        {"spend_current": Decimal("NaN")},
    ],
)
def test_inconsistent_sums_are_refused(sums: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        KpiSums(**sums)


@st.composite
def kpi_sums(draw: Any) -> KpiSums:
    members = draw(st.integers(min_value=0, max_value=1000))
    active = draw(st.integers(min_value=0, max_value=members))
    previous = draw(st.integers(min_value=0, max_value=members))
    return KpiSums(
        members=members,
        active_members=active,
        previous_purchasers=previous,
        retained=draw(st.integers(min_value=0, max_value=min(active, previous))),
        spend_current=draw(st.decimals(min_value=-(10**9), max_value=10**12, places=2)),
        points_earned=draw(st.integers(min_value=0, max_value=10**12)),
        points_redeemed=draw(st.integers(min_value=0, max_value=10**12)),
        points_liability=draw(st.integers(min_value=0, max_value=10**12)),
    )


@given(kpi_sums(), kpi_sums(), kpi_sums())
@settings(max_examples=150, database=None, deadline=None)
def test_sums_merge_associatively_and_commutatively_with_zero_as_identity(a: KpiSums, b: KpiSums, c: KpiSums) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b) == b.merge(a)
    assert a.merge(KpiSums.zero()) == KpiSums.zero().merge(a) == a


def test_spend_sums_are_exact_beyond_the_default_28_digits_in_sums_and_tables() -> None:
    big, small = KpiSums(spend_current=Decimal("12345678901234567890123.45")), KpiSums(spend_current=Decimal("1e-9"))
    table = KpiTable.of(AS_OF, QUARTER)
    table.add(["all"], big)
    table.add(["all"], small)

    assert big.merge(small).spend_current == table["all"].spend_current == Decimal("12345678901234567890123.450000001")


groups = st.sampled_from(
    ["all", "tier:Insider", "tier:VIB", "tier:Rouge", "segment:rfm:champions", "segment:rule:win-back-2026"]
)


@st.composite
def tables(draw: Any) -> KpiTable:
    table = KpiTable.of(AS_OF, QUARTER)
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        table.add(draw(st.lists(groups, unique=True)), draw(kpi_sums()))
    return table


@given(tables(), tables(), tables())
@settings(max_examples=100, database=None, deadline=None)
def test_tables_merge_associatively_and_commutatively_with_the_empty_table_as_identity(
    a: KpiTable, b: KpiTable, c: KpiTable
) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b) == b.merge(a)
    assert a.merge(KpiTable()) == KpiTable().merge(a) == a


purchases = st.dictionaries(
    st.sampled_from(["2025-06", "2025-08", "2025-10", "2025-11", "2026-01", "2026-02"]),
    st.integers(min_value=0, max_value=3),
)


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["Insider", "VIB"]),
            purchases,
            st.decimals(min_value=0, max_value=10_000, places=2),
            st.integers(min_value=0, max_value=5000),
        ),
        max_size=30,
    ),
    st.integers(min_value=1, max_value=4),
)
@settings(max_examples=80, database=None, deadline=None)
def test_workers_tables_shipped_as_json_and_merged_equal_one_table_of_everyone(
    members: list[tuple[str, dict[str, int], Decimal, int]], workers: int
) -> None:
    # Given members as items, each with the same spend in every month they bought in
    items = [
        (tier, buyer(bought, {month: str(spend) for month in bought}, lifetime_earned=Decimal(points)))
        for tier, bought, spend, points in members
    ]

    def table_of(part: list[tuple[str, dict[str, Any]]]) -> KpiTable:
        table = KpiTable.of(AS_OF, QUARTER)
        for tier, item in part:
            table.add(kpi_groups(tier, []), member_kpis(item, AS_OF, QUARTER))
        return table

    # When workers each build a table of their share, ship it as JSON, and the shipped tables are merged
    merged = KpiTable()
    for worker in range(workers):
        merged = merged.merge(KpiTable.from_json(table_of(items[worker::workers]).to_json()))

    # Then the merged table is the table of everyone, and so are its reports
    whole = table_of(items)
    assert merged == whole
    for group in whole:
        assert merged.report(group) == whole.report(group)


# ---- JSON ---------------------------------------------------------------------------------------------------------


@given(tables())
@settings(max_examples=100, database=None, deadline=None)
def test_a_table_survives_a_json_round_trip_exactly(table: KpiTable) -> None:
    again = KpiTable.from_json(table.to_json())

    assert again == table
    assert again.periods == table.periods
    assert {group: str(sums.spend_current) for group, sums in again.items()} == {
        group: str(sums.spend_current) for group, sums in table.items()
    }


def test_the_json_names_the_periods_and_columns_once_and_holds_one_row_per_group() -> None:
    table = KpiTable.of(AS_OF, QUARTER)
    table.add(["all", "tier:VIB"], KpiSums(members=1, active_members=1, spend_current=Decimal("12.30")))

    assert json.loads(table.to_json()) == {
        "as_of_month": "2026-01",
        "period_months": 3,
        "columns": [
            "members",
            "active_members",
            "previous_purchasers",
            "retained",
            "spend_current",
            "points_earned",
            "points_redeemed",
            "points_liability",
        ],
        "groups": {"all": [1, 1, 0, 0, "12.30", 0, 0, 0], "tier:VIB": [1, 1, 0, 0, "12.30", 0, 0, 0]},
    }


def test_three_hundred_groups_of_ten_million_members_fit_well_inside_a_dynamodb_item() -> None:
    big = KpiSums(
        members=10_000_000,
        active_members=9_999_999,
        previous_purchasers=9_999_998,
        retained=9_999_997,
        spend_current=Decimal("12345678901.23"),
        points_earned=10**12,
        points_redeemed=10**12 - 1,
        points_liability=10**12 - 2,
    )
    table = KpiTable.of(AS_OF, QUARTER)
    slug = "-".join(["segment"] * 8)[:60]
    for index in range(300):
        table.add([f"segment:rule:{slug}{index:04d}"], big)

    size = len(table.to_json().encode())

    assert size < 64 * 1024  # a DynamoDB item holds 400 KB
    assert KpiTable.from_json(table.to_json()) == table


@pytest.mark.parametrize(
    ("change", "error"),
    [
        pytest.param(lambda d: d["groups"]["all"].__setitem__(4, 12.3), "string_type", id="float spend"),
        pytest.param(lambda d: d["groups"]["all"].__setitem__(0, 1.0), "int_type", id="float count"),
        pytest.param(lambda d: d["groups"]["all"].__setitem__(0, "1"), "int_type", id="count as a string"),
        pytest.param(lambda d: d["groups"]["all"].__setitem__(4, "NaN"), "finite_number", id="spend not a number"),
        pytest.param(lambda d: d["groups"]["all"].pop(), "missing", id="short row"),
        pytest.param(lambda d: d["columns"].reverse(), "columns are", id="other column order"),
        pytest.param(
            lambda d: d["groups"].__setitem__("rfm:champions", d["groups"]["all"]), "not a KPI group", id="bad key"
        ),
        pytest.param(lambda d: d.__setitem__("period_months", 13), "less_than_equal", id="period too long"),
        pytest.param(lambda d: d.__setitem__("as_of_month", "2026-13"), "string_pattern", id="not a month"),
        pytest.param(lambda d: d["groups"]["all"].__setitem__(3, 5), "retained members", id="retained not active"),
    ],
)
def test_a_damaged_document_is_refused(change: Any, error: str) -> None:
    table = KpiTable.of(AS_OF, QUARTER)
    table.add(["all"], KpiSums(members=2, active_members=1, previous_purchasers=1, spend_current=Decimal("5.00")))
    document = json.loads(table.to_json())
    change(document)

    with pytest.raises(ValueError, match=error):  # pydantic's ValidationError is a ValueError
        KpiTable.from_json(json.dumps(document))


# ---- tables: guarding the groups and the periods ------------------------------------------------------------------


def test_a_member_is_added_once_per_group() -> None:
    table = KpiTable.of(AS_OF, QUARTER)

    with pytest.raises(ValueError, match="repeat"):
        table.add(["all", "tier:VIB", "all"], KpiSums(members=1))
    assert len(table) == 0


@pytest.mark.parametrize("group", ["", "everyone", "tier:", "segment:champions", "segment:rfm:Champions", "rfm:new"])
def test_group_keys_are_all_tier_or_segment(group: str) -> None:
    table = KpiTable.of(AS_OF, QUARTER)

    with pytest.raises(ValueError, match="not a KPI group"):
        table.add([group], KpiSums(members=1))
    assert group not in table


def test_adding_zero_lists_an_empty_group_for_the_report() -> None:
    table = KpiTable.of(AS_OF, QUARTER)
    table.add(["segment:rule:win-back"], KpiSums.zero())

    assert table.groups() == ("segment:rule:win-back",)
    assert table.report("segment:rule:win-back").members == 0


def test_kpi_groups_are_all_the_tier_and_each_segment_once() -> None:
    assert kpi_groups("VIB", ["rfm:loyal", "lifecycle:new", "rfm:loyal"]) == (
        "all",
        "tier:VIB",
        "segment:lifecycle:new",
        "segment:rfm:loyal",
    )


def test_tables_of_different_periods_do_not_merge() -> None:
    january = KpiTable.of(AS_OF, QUARTER)
    february = KpiTable.of(datetime(2026, 2, 1, tzinfo=UTC), QUARTER)
    half_year = KpiTable.of(AS_OF, KpiConfig(period_months=6))

    with pytest.raises(ValueError, match="different periods"):
        january.merge(february)
    with pytest.raises(ValueError, match="different periods"):
        january.merge(half_year)


def test_the_unbound_table_merges_but_refuses_members_and_reports() -> None:
    empty = KpiTable()

    with pytest.raises(ValueError, match="no periods"):
        empty.add(["all"], KpiSums(members=1))
    with pytest.raises(ValueError, match="no periods"):
        empty.report("all")
    assert KpiTable.from_json(empty.to_json()) == empty
    assert empty.merge(population_table()).periods == KpiPeriods.of(AS_OF, QUARTER)
