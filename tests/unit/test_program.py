"""What a purchase earns: the program's rate, multipliers, one rounding on the total, and refusals of bad input."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loyalty.core.errors import InvalidRequest
from loyalty.points.activities import ActivityType, LineItem
from loyalty.points.program import ProgramConfig, Tier, activity_points, purchase_points

D = Decimal


def line(amount: str, *, sku: str | None = None, category: str | None = None) -> LineItem:
    return LineItem(sku=sku, category=category, amount=D(amount))


def test_default_program_earns_one_point_per_whole_currency_unit() -> None:
    program = ProgramConfig()

    assert purchase_points(program, D("10"), "USD") == 10
    assert purchase_points(program, D("10.99"), "USD") == 10
    assert purchase_points(program, D("0.99"), "USD") == 0


def test_rounding_happens_once_on_the_total_so_splitting_into_lines_loses_nothing() -> None:
    program = ProgramConfig(category_multipliers={"skincare": D(1)})
    lines = (line("0.99", category="skincare"), line("0.99", category="skincare"))

    # Each line alone would floor to 0; together the order is 1.98, which earns 1.
    assert purchase_points(program, D("1.98"), "USD", lines) == 1


def test_a_category_multiplier_earns_the_extra_on_its_lines_only() -> None:
    program = ProgramConfig(category_multipliers={"skincare": D(2)})
    lines = (line("30", category="skincare"), line("20", category="fragrance"))

    # 50 base + 30 x (2 - 1) extra on the skincare line.
    assert purchase_points(program, D("50"), "USD", lines) == 80


def test_a_sku_multiplier_wins_over_its_category_multiplier() -> None:
    program = ProgramConfig(category_multipliers={"skincare": D(2)}, sku_multipliers={"SKU-GIFTSET": D(3)})
    lines = (line("10", sku="SKU-GIFTSET", category="skincare"),)

    assert purchase_points(program, D("10"), "USD", lines) == 30  # 3x, not 2x


def test_a_sku_without_its_own_multiplier_falls_back_to_its_category() -> None:
    program = ProgramConfig(category_multipliers={"skincare": D(2)}, sku_multipliers={"SKU-GIFTSET": D(3)})

    assert purchase_points(program, D("10"), "USD", (line("10", sku="SKU-OTHER", category="skincare"),)) == 20


def test_a_zero_multiplier_takes_its_lines_out_of_earning() -> None:
    program = ProgramConfig(category_multipliers={"gift-card": D(0)})

    assert purchase_points(program, D("100"), "USD", (line("60", category="gift-card"),)) == 40


def test_fractional_rates_and_multipliers_round_down_once() -> None:
    program = ProgramConfig(
        base_currency="EUR", points_per_unit={"EUR": D("1.1")}, category_multipliers={"skincare": D("1.5")}
    )

    # (10.00 + 5.00 x 0.5) x 1.1 = 13.75 -> 13
    assert purchase_points(program, D("10.00"), "EUR", (line("5.00", category="skincare"),)) == 13


@given(cents=st.lists(st.integers(min_value=0, max_value=100_000), min_size=1, max_size=20))
@settings(max_examples=200, database=None)
def test_points_are_the_floor_of_the_total_however_the_order_is_split_into_lines(cents: list[int]) -> None:
    program = ProgramConfig(category_multipliers={"any": D(1)})
    lines = tuple(line(str(D(c) / 100), category="any") for c in cents)
    total = sum((D(c) / 100 for c in cents), D(0))

    assert purchase_points(program, total, "USD", lines) == int(total)


def test_lines_that_add_up_to_more_than_the_order_are_refused_with_the_field() -> None:
    with pytest.raises(InvalidRequest) as refused:
        purchase_points(ProgramConfig(), D("10"), "USD", (line("6"), line("4.01")))

    assert refused.value.field == "line_items"
    assert refused.value.status == 422


def test_lines_may_cover_exactly_the_order() -> None:
    assert purchase_points(ProgramConfig(), D("10"), "USD", (line("6"), line("4"))) == 10


def test_a_currency_the_program_does_not_list_is_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        purchase_points(ProgramConfig(), D("10"), "EUR")

    assert refused.value.field == "currency"
    assert refused.value.body()["errors"] == [{"field": "currency", "reason": refused.value.message}]


def test_an_absurd_amount_is_refused_not_earned_on() -> None:
    program = ProgramConfig(max_purchase_amount=D(1000))

    assert purchase_points(program, D(1000), "USD") == 1000
    with pytest.raises(InvalidRequest) as refused:
        purchase_points(program, D("1000.01"), "USD")
    assert refused.value.field == "amount"


def test_engagement_activities_earn_their_configured_points() -> None:
    program = ProgramConfig()

    assert activity_points(program, ActivityType.REVIEW) == 50
    assert activity_points(program, ActivityType.REFERRAL) == 500
    assert activity_points(program, ActivityType.PURCHASE) == 0  # purchases earn by amount, not a fixed bonus


# ---- program configuration is validated as data ------------------------------------------------------------


@pytest.mark.parametrize("code", ["usd", "US", "USDX", "U$D", "12A", ""])
def test_a_currency_code_that_is_not_iso_4217_shaped_is_refused(code: str) -> None:
    with pytest.raises(ValidationError, match="ISO 4217"):
        ProgramConfig(points_per_unit={code: D(1)})


def test_a_currency_code_with_non_ascii_letters_is_refused() -> None:
    with pytest.raises(ValidationError):
        ProgramConfig(points_per_unit={"ÉUR": D(1)})


def test_several_iso_currencies_are_accepted() -> None:
    program = ProgramConfig(
        points_per_unit={"USD": D(1), "EUR": D("1.1"), "JPY": D("0.01")},
        exchange_rates={"EUR": D("1.08"), "JPY": D("0.0067")},
    )

    assert purchase_points(program, D(1000), "JPY") == 10


@pytest.mark.parametrize("rate", [D(0), D(-1), D(1001)])
def test_a_rate_outside_the_allowed_range_is_refused(rate: Decimal) -> None:
    with pytest.raises(ValidationError):
        ProgramConfig(points_per_unit={"USD": rate})


# ---- exchange rates: spend is kept in the base currency -------------------------------------------------------


@pytest.mark.parametrize(
    ("accepted", "rates", "reason"),
    [
        ({"USD": D(1), "EUR": D(1), "GBP": D(1)}, {"EUR": D("1.08")}, "accepted currencies without a rate to USD: GBP"),
        ({"USD": D(1)}, {"USD": D(1)}, "USD is the base currency: it converts at 1 and takes no rate"),
        ({"USD": D(1)}, {"CHF": D("1.1")}, "CHF is not an accepted currency (points_per_unit)"),
        ({"EUR": D(1)}, {}, "accepted currencies without a rate to USD: EUR"),
    ],
    ids=["accepted-without-a-rate", "a-rate-for-the-base", "a-rate-for-a-currency-not-accepted", "base-not-accepted"],
)
def test_every_accepted_currency_but_the_base_needs_a_rate_and_nothing_else_has_one(
    accepted: dict[str, Decimal], rates: dict[str, Decimal], reason: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        ProgramConfig(points_per_unit=accepted, exchange_rates=rates)

    assert [(problem["loc"], reason in problem["msg"]) for problem in refused.value.errors()] == [
        (("exchange_rates",), True)
    ]


@pytest.mark.parametrize("rate", [D(0), D(-1), D("1000000.01"), D("NaN"), D("Infinity")])
def test_an_exchange_rate_must_be_positive_and_finite(rate: Decimal) -> None:
    with pytest.raises(ValidationError) as refused:
        ProgramConfig(points_per_unit={"USD": D(1), "EUR": D(1)}, exchange_rates={"EUR": rate})

    assert refused.value.errors()[0]["loc"][0] == "exchange_rates"


@pytest.mark.parametrize(
    ("amount", "currency", "base"),
    [
        ("19.99", "EUR", "21.639"),  # 21.639175: to 0.001
        ("0.005", "EUR", "0.005"),  # 0.0054125
        ("1000", "JPY", "6.700"),
        ("42.50", "USD", "42.50"),  # the base currency as it is
    ],
)
def test_an_amount_converts_to_the_base_currency_at_the_programs_rate_to_a_thousandth(
    amount: str, currency: str, base: str
) -> None:
    program = ProgramConfig(
        points_per_unit={"USD": D(1), "EUR": D(1), "JPY": D("0.01")},
        exchange_rates={"EUR": D("1.0825"), "JPY": D("0.0067")},
    )

    converted = program.in_base_currency(D(amount), currency)

    assert converted == D(base) and str(converted) == base


def test_an_amount_in_a_currency_without_a_rate_is_refused_naming_the_currency() -> None:
    with pytest.raises(InvalidRequest) as refused:
        ProgramConfig().in_base_currency(D(10), "EUR")

    assert refused.value.field == "currency" and "EUR" in refused.value.message


@pytest.mark.parametrize(
    "tiers",
    [
        (),
        (Tier(name="VIB", threshold=350),),
        (Tier(name="Insider", threshold=0), Tier(name="Rouge", threshold=1000), Tier(name="VIB", threshold=350)),
        (Tier(name="Insider", threshold=0), Tier(name="VIB", threshold=350), Tier(name="Also VIB", threshold=350)),
    ],
    ids=["empty", "not-from-zero", "not-ascending", "duplicate-threshold"],
)
def test_tiers_must_start_at_zero_and_ascend_strictly(tiers: tuple[Tier, ...]) -> None:
    with pytest.raises(ValidationError, match="tiers must start at threshold 0"):
        ProgramConfig(tiers=tiers)


def test_the_default_ladder_is_valid_and_new_members_start_on_its_first_tier() -> None:
    program = ProgramConfig()

    assert [t.threshold for t in program.tiers] == [0, 350, 1000]
    assert program.entry_tier == "Insider"


def test_a_program_document_round_trips_through_json() -> None:
    program = ProgramConfig(version=3, points_per_unit={"USD": D(2)}, sku_multipliers={"SKU-1": D("1.5")})

    assert ProgramConfig.model_validate_json(program.model_dump_json()) == program
