"""Living tiers (loyalty.points.tiers): qualification over a window, upgrades on earn, downgrades only at a review
(one level, after grace), refunds, progress, and the policy validated as data (loyalty.points.program)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loyalty.points import member_record as record
from loyalty.points.program import ProgramConfig, QualifyingMeasure, Tier, TierPolicy, TierRules
from loyalty.points.rewards import Reward, RewardKind
from loyalty.points.tiers import (
    ChangeReason,
    Direction,
    TierChange,
    UnknownTier,
    add_months,
    after_earn,
    after_refund,
    at_review,
    next_review,
    progress,
    qualifying_value,
    tier_for,
    value_at_review,
    window_ends_on,
)

D = Decimal
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
POLICY = TierPolicy()  # Insider 0 / VIB 350 / Rouge 1,000; points; rolling 12 months; monthly review; grace 3
LADDER = POLICY.ladder
SPEND = TierPolicy(measure="spend", currency="EUR")
CALENDAR = TierPolicy(window="calendar_year", review="yearly")
YEARLY_JULY = TierPolicy(review="yearly", review_month=7, review_day=1)
REFUNDS_DOWNGRADE = TierPolicy(refund_can_downgrade=True)
NO_GRACE = TierPolicy(grace_months=0)


def item(points: dict[str, int] | None = None, spend: dict[str, str] | None = None) -> dict[str, Any]:
    """A member item as the store reads it: the monthly maps hold Decimals."""
    return {
        record.POINTS_BY_MONTH: {month: D(value) for month, value in (points or {}).items()},
        record.SPEND_BY_MONTH: {month: D(value) for month, value in (spend or {}).items()},
    }


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# ---- the ladder ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "Insider"),
        (349, "Insider"),
        (350, "VIB"),
        (999, "VIB"),
        (1000, "Rouge"),
        (1_000_000, "Rouge"),
        (D("349.99"), "Insider"),
        (D("350.00"), "VIB"),
        (-5, "Insider"),  # below the bottom is still the bottom
    ],
)
def test_the_tier_is_the_highest_level_whose_threshold_the_value_reaches(value: int | Decimal, expected: str) -> None:
    assert tier_for(value, LADDER).name == expected


# ---- qualification ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "now", "month", "counted"),
    [
        # rolling 12 months as of 2026-03-15: 2025-04 .. 2026-03
        (POLICY, NOW, "2026-03", True),  # the current month (the window's 12th)
        (POLICY, NOW, "2025-04", True),  # the window's first month
        (POLICY, NOW, "2025-03", False),  # the 13th month back
        (POLICY, NOW, "2026-04", False),  # a later month
        # month boundary: the last instant of March still counts 2025-04; the 1st of April no longer does
        (POLICY, at("2026-03-31T23:59:59.999999"), "2025-04", True),
        (POLICY, at("2026-04-01T00:00:00"), "2025-04", False),
        (POLICY, at("2026-04-01T00:00:00"), "2026-04", True),
        # a new year: the rolling window reaches back into the old one
        (POLICY, at("2026-01-01T00:00:00"), "2025-02", True),
        (POLICY, at("2026-01-01T00:00:00"), "2025-01", False),
        # calendar year as of 2026-03-15: 2026-01 .. 2026-03
        (CALENDAR, NOW, "2026-01", True),
        (CALENDAR, NOW, "2026-03", True),
        (CALENDAR, NOW, "2025-12", False),
        # a new year starts the calendar window from nothing
        (CALENDAR, at("2026-01-01T00:00:00"), "2025-12", False),
        (CALENDAR, at("2026-01-01T00:00:00"), "2026-01", True),
        (CALENDAR, at("2025-12-31T23:59:59"), "2025-01", True),
    ],
)
def test_a_month_counts_only_inside_the_window(policy: TierPolicy, now: datetime, month: str, counted: bool) -> None:
    member = item(points={month: 120}, spend={month: "80.50"})
    by_spend = TierPolicy.model_validate({**policy.model_dump(), "measure": "spend"})

    assert qualifying_value(member, policy, now) == (120 if counted else 0)
    assert qualifying_value(member, by_spend, now) == (D("80.50") if counted else 0)


def test_the_window_follows_the_utc_month_whatever_the_offset_of_now() -> None:
    paris_april_first = datetime(2026, 4, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # 2026-03-31 22:30 UTC
    member = item(points={"2025-04": 100})

    assert qualifying_value(member, POLICY, paris_april_first) == 100


def test_points_are_summed_as_an_int_net_of_reversals_over_the_window() -> None:
    # 2025-06 earned 500 and had 200 reversed: the map holds the net 300.
    member = item(points={"2025-06": 300, "2025-12": 40, "2026-03": 10, "2024-12": 999})

    value = qualifying_value(member, POLICY, NOW)

    assert value == 350 and type(value) is int


def test_spend_is_summed_as_a_decimal_to_the_cent() -> None:
    member = item(spend={"2025-06": "120.10", "2026-02": "229.89", "2026-03": "0.01"})

    value = qualifying_value(member, SPEND, NOW)

    assert value == D("350.00") and isinstance(value, Decimal)
    assert tier_for(value, SPEND.ladder).name == "VIB"


def test_the_value_reads_a_built_item_and_its_aggregates_alike() -> None:
    purchases = [
        record.PastPurchase(NOW - timedelta(days=40), D("150"), 150),
        record.PastPurchase(NOW - timedelta(days=400), D("900"), 900),  # before the window
        record.PastPurchase(NOW - timedelta(days=3), D("200"), 200),
    ]
    built = record.with_purchases({}, purchases, NOW)

    assert qualifying_value(built, POLICY, NOW) == 350
    assert qualifying_value(record.aggregates_of(built), POLICY, NOW) == 350
    assert qualifying_value(record.aggregates_of(built), SPEND, NOW) == D(350)


def test_a_member_without_maps_has_nothing_to_count() -> None:
    assert qualifying_value({}, POLICY, NOW) == 0
    assert qualifying_value({}, SPEND, NOW) == D(0)


@pytest.mark.parametrize(
    ("policy", "review_at", "counted", "not_counted"),
    [
        # a monthly review on April 1 judges the 12 months just ended, not April
        (POLICY, at("2026-04-01T00:00:00"), "2025-04", "2026-04"),
        (POLICY, at("2026-04-01T00:00:00"), "2026-03", "2025-03"),
        # a yearly review on January 1 of a calendar window judges the year just ended
        (CALENDAR, at("2027-01-01T00:00:00"), "2026-12", "2027-01"),
        (CALENDAR, at("2027-01-01T00:00:00"), "2026-01", "2025-12"),
        # a yearly review on July 1 of a rolling window judges July to June
        (YEARLY_JULY, at("2026-07-01T00:00:00"), "2025-07", "2025-06"),
    ],
)
def test_a_review_judges_the_window_it_closes(
    policy: TierPolicy, review_at: datetime, counted: str, not_counted: str
) -> None:
    member = item(points={counted: 400, not_counted: 5000})

    assert value_at_review(member, policy, review_at) == 400


@pytest.mark.parametrize(
    ("policy", "now", "ends_on"),
    [
        (POLICY, NOW, date(2026, 3, 31)),
        (POLICY, at("2024-02-10T00:00:00"), date(2024, 2, 29)),
        (POLICY, at("2026-12-31T23:59:59"), date(2026, 12, 31)),
        (CALENDAR, NOW, date(2026, 12, 31)),
    ],
)
def test_the_window_ends_with_its_month_or_its_year(policy: TierPolicy, now: datetime, ends_on: date) -> None:
    assert window_ends_on(policy, now) == ends_on


# ---- upgrades on earn ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "value", "to"),
    [
        ("Insider", 349, None),  # missed by one
        ("Insider", 350, "VIB"),  # exactly hit
        ("Insider", 1000, "Rouge"),  # two levels at once
        ("Insider", 5000, "Rouge"),
        ("VIB", 999, None),
        ("VIB", 1000, "Rouge"),
        ("VIB", 0, None),  # an earn never moves a member down
        ("Rouge", 0, None),
        ("Rouge", 5000, None),  # nothing above the top
    ],
)
def test_an_earn_upgrades_to_the_level_the_value_reaches(current: str, value: int, to: str | None) -> None:
    change = after_earn(current, value, POLICY)

    if to is None:
        assert change is None
    else:
        assert change == TierChange(
            from_tier=current,
            to_tier=to,
            direction=Direction.UP,
            reason=ChangeReason.EARN,
            value=value,
            measure=QualifyingMeasure.POINTS,
            currency=None,
        )


def test_a_spend_upgrade_carries_its_currency() -> None:
    change = after_earn("Insider", D("350.00"), SPEND)

    assert change is not None
    assert (change.to_tier, change.value, change.measure, change.currency) == ("VIB", D("350.00"), "spend", "EUR")


@given(current=st.sampled_from(["Insider", "VIB", "Rouge"]), value=st.integers(min_value=0, max_value=10_000))
@settings(max_examples=200, database=None)
def test_an_earn_never_moves_a_member_down(current: str, value: int) -> None:
    change = after_earn(current, value, POLICY)

    assert change is None or (change.direction is Direction.UP and change.to_tier == tier_for(value, LADDER).name)


# ---- refunds ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "current", "value", "to"),
    [
        (POLICY, "VIB", 0, None),  # a refund alone never lowers a tier by default
        (POLICY, "Rouge", 0, None),
        (REFUNDS_DOWNGRADE, "VIB", 349, "Insider"),
        (REFUNDS_DOWNGRADE, "VIB", 350, None),  # still exactly supported
        (REFUNDS_DOWNGRADE, "Rouge", 999, "VIB"),
        (REFUNDS_DOWNGRADE, "Rouge", 0, "VIB"),  # one level at most
        (REFUNDS_DOWNGRADE, "Insider", 0, None),  # nothing below the bottom
        (REFUNDS_DOWNGRADE, "Insider", 1000, None),  # a refund never upgrades
    ],
)
def test_a_refund_lowers_a_tier_only_when_the_policy_says_so(
    policy: TierPolicy, current: str, value: int, to: str | None
) -> None:
    change = after_refund(current, value, policy)

    assert (change.to_tier if change else None) == to
    if change:
        assert (change.direction, change.reason, change.value) == (Direction.DOWN, ChangeReason.REFUND, value)


# ---- reviews ------------------------------------------------------------------------------------------------------

REVIEW = at("2026-04-01T00:00:00")


@pytest.mark.parametrize(
    ("policy", "current", "value", "upgraded_at", "to"),
    [
        (POLICY, "VIB", 349, None, "Insider"),  # missed by one
        (POLICY, "VIB", 350, None, None),  # exactly kept
        (POLICY, "Rouge", 0, None, "VIB"),  # one level down at most
        (POLICY, "Rouge", 1000, None, None),  # the top, kept
        (POLICY, "Insider", 0, None, None),  # the bottom: nothing to lose
        # grace: upgraded less than 3 months before the review keeps the tier
        (POLICY, "VIB", 0, at("2026-02-20T00:00:00"), None),
        (POLICY, "VIB", 0, at("2026-01-01T00:00:00") + timedelta(microseconds=1), None),  # just under 3 months
        (POLICY, "VIB", 0, at("2026-01-01T00:00:00"), "Insider"),  # exactly 3 months: grace is over
        (POLICY, "Rouge", 0, at("2025-06-01T00:00:00"), "VIB"),
        (NO_GRACE, "VIB", 0, at("2026-03-31T23:00:00"), "Insider"),  # no grace configured
    ],
)
def test_a_review_moves_down_one_level_at_most_after_grace(
    policy: TierPolicy, current: str, value: int, upgraded_at: datetime | None, to: str | None
) -> None:
    change = at_review(current, value, upgraded_at, policy, REVIEW)

    assert (change.to_tier if change else None) == to
    if change:
        assert (change.direction, change.reason, change.value) == (Direction.DOWN, ChangeReason.REVIEW, value)


@pytest.mark.parametrize("upgraded_at", [None, at("2026-03-20T00:00:00")])
def test_a_review_catches_up_an_upgrade_the_member_was_not_given(upgraded_at: datetime | None) -> None:
    # The ladder's thresholds were lowered, say: the review gives what an earn would have, levels at once.
    change = at_review("Insider", 1000, upgraded_at, POLICY, REVIEW)

    assert change is not None
    assert (change.to_tier, change.direction, change.reason) == ("Rouge", Direction.UP, ChangeReason.REVIEW)


@given(
    current=st.sampled_from(["Insider", "VIB", "Rouge"]),
    value=st.integers(min_value=0, max_value=5000),
    upgraded_days_ago=st.none() | st.integers(min_value=0, max_value=800),
)
@settings(max_examples=300, database=None)
def test_a_review_never_moves_a_member_down_more_than_one_level(
    current: str, value: int, upgraded_days_ago: int | None
) -> None:
    upgraded_at = None if upgraded_days_ago is None else REVIEW - timedelta(days=upgraded_days_ago)

    change = at_review(current, value, upgraded_at, POLICY, REVIEW)

    if change is not None and change.direction is Direction.DOWN:
        names = [level.name for level in LADDER]
        assert names.index(change.from_tier) - names.index(change.to_tier) == 1
        assert value < LADDER[names.index(current)].threshold


def test_a_tier_not_on_the_ladder_is_refused_by_name() -> None:
    with pytest.raises(UnknownTier, match="'Gold' is not on the ladder"):
        at_review("Gold", 0, None, POLICY, REVIEW)


@pytest.mark.parametrize(
    ("policy", "now", "expected"),
    [
        (POLICY, NOW, at("2026-04-01T00:00:00")),
        (POLICY, at("2026-12-31T23:59:59"), at("2027-01-01T00:00:00")),
        (POLICY, at("2026-04-01T00:00:00"), at("2026-05-01T00:00:00")),  # strictly after a review now due
        (YEARLY_JULY, NOW, at("2026-07-01T00:00:00")),
        (YEARLY_JULY, at("2026-07-01T00:00:00"), at("2027-07-01T00:00:00")),
        (YEARLY_JULY, at("2026-08-01T00:00:00"), at("2027-07-01T00:00:00")),
        (CALENDAR, NOW, at("2027-01-01T00:00:00")),
    ],
)
def test_the_next_review_is_the_first_scheduled_one_after_now(
    policy: TierPolicy, now: datetime, expected: datetime
) -> None:
    assert next_review(policy, now) == expected


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (at("2026-01-31T10:00:00"), 1, at("2026-02-28T10:00:00")),
        (at("2024-01-31T10:00:00"), 1, at("2024-02-29T10:00:00")),
        (at("2025-11-15T00:00:00"), 3, at("2026-02-15T00:00:00")),
    ],
)
def test_grace_counts_calendar_months(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


# ---- progress -----------------------------------------------------------------------------------------------------


def reward(reward_id: str, cost: int, *, active: bool = True, min_tier: str | None = None) -> Reward:
    return Reward(
        reward_id=reward_id,
        name=reward_id,
        kind=RewardKind.FREE_PRODUCT,
        cost_points=cost,
        active=active,
        min_tier=min_tier,
    )


CATALOG = [reward("sample", 100), reward("mini", 300), reward("full-size", 800), reward("retired", 250, active=False)]


@pytest.mark.parametrize(
    ("tier", "points", "next_tier", "to_next", "percent", "to_keep"),
    [
        ("Insider", {}, "VIB", 350, 0, 0),  # at 0
        ("Insider", {"2026-03": 349}, "VIB", 1, 99, 0),  # one short: floored, never rounded up to 100
        ("VIB", {"2026-03": 350}, "Rouge", 650, 35, 0),  # at the threshold: safe at the next review
        ("VIB", {"2025-04": 150, "2026-01": 50}, "Rouge", 800, 20, 150),
        ("Rouge", {"2026-03": 1200}, None, 0, 100, 0),  # at the top
        ("Rouge", {"2026-03": 400}, None, 0, 100, 600),
        ("Insider", {"2026-03": 1000}, "VIB", 0, 100, 0),  # an upgrade not yet recorded
    ],
)
def test_progress_toward_the_next_tier_and_against_the_next_review(
    tier: str, points: dict[str, int], next_tier: str | None, to_next: int, percent: int, to_keep: int
) -> None:
    shown = progress(tier, item(points=points), POLICY, NOW, CATALOG, 0)

    assert shown.tier.name == tier
    assert (shown.next_tier.name if shown.next_tier else None) == next_tier
    assert (shown.to_next, shown.percent, shown.to_keep) == (to_next, percent, to_keep)
    assert (shown.window_ends_on, shown.next_review_at) == (date(2026, 3, 31), at("2026-04-01T00:00:00"))
    assert (shown.measure, shown.currency) == ("points", None)


def test_a_member_in_grace_at_the_next_review_has_nothing_to_keep() -> None:
    member = item(points={"2026-03": 10})

    in_grace = progress("VIB", member, POLICY, NOW, [], 0, upgraded_at=at("2026-03-01T00:00:00"))
    grace_over = progress("VIB", member, POLICY, NOW, [], 0, upgraded_at=at("2025-12-15T00:00:00"))

    assert (in_grace.to_keep, grace_over.to_keep) == (0, 340)


def test_to_keep_counts_only_what_the_next_review_will_judge() -> None:
    # Yearly review on 2026-07-01 of a rolling window: it judges 2025-07 .. 2026-06, so 2025-05 counts today but
    # will have left the window by then.
    member = item(points={"2025-05": 300, "2025-08": 100, "2026-02": 50})

    shown = progress("VIB", member, YEARLY_JULY, NOW, [], 0)

    assert (shown.value, shown.to_keep, shown.next_review_at) == (450, 200, at("2026-07-01T00:00:00"))


def test_calendar_year_progress_ends_with_the_year() -> None:
    member = item(points={"2025-11": 900, "2026-02": 300})

    shown = progress("VIB", member, CALENDAR, NOW, [], 0)

    assert (shown.value, shown.to_keep, shown.to_next) == (300, 50, 700)
    assert (shown.window_ends_on, shown.next_review_at) == (date(2026, 12, 31), at("2027-01-01T00:00:00"))


def test_spend_progress_is_in_the_base_currency() -> None:
    shown = progress("Insider", item(spend={"2026-01": "100.25"}), SPEND, NOW, [], 0)

    assert (shown.value, shown.to_next, shown.percent, shown.currency) == (D("100.25"), D("249.75"), 28, "EUR")
    assert isinstance(shown.to_keep, Decimal) and shown.to_keep == 0


@pytest.mark.parametrize(
    ("tier", "rewards", "available", "expected", "affordable", "needed"),
    [
        ("VIB", CATALOG, 350, "mini", True, 0),  # the most expensive one affordable
        ("VIB", CATALOG, 800, "full-size", True, 0),  # exactly affordable
        ("VIB", CATALOG, 50, "sample", False, 50),  # none affordable: the closest, and what it still needs
        ("VIB", CATALOG, 0, "sample", False, 100),
        ("VIB", [], 500, None, None, None),  # no catalog
        ("VIB", [reward("retired", 10, active=False)], 500, None, None, None),  # only retired rewards
        # a tier-gated reward is skipped below its tier, offered from it
        ("Insider", [reward("vib-gift", 200, min_tier="VIB"), reward("sample", 100)], 250, "sample", True, 0),
        ("VIB", [reward("vib-gift", 200, min_tier="VIB"), reward("sample", 100)], 250, "vib-gift", True, 0),
        ("Rouge", [reward("vib-gift", 200, min_tier="VIB"), reward("sample", 100)], 250, "vib-gift", True, 0),
        ("Insider", [reward("vib-gift", 200, min_tier="VIB")], 0, None, None, None),
        (
            "Rouge",
            [reward("gold-gift", 200, min_tier="Gold"), reward("sample", 100)],
            500,
            "sample",
            True,
            0,
        ),  # gate not on the ladder
    ],
)
def test_the_next_reward_is_the_best_affordable_else_the_closest(
    tier: str,
    rewards: list[Reward],
    available: int,
    expected: str | None,
    affordable: bool | None,
    needed: int | None,
) -> None:
    shown = progress(tier, item(), POLICY, NOW, rewards, available).next_reward

    if expected is None:
        assert shown is None
    else:
        assert shown is not None
        assert (shown.reward.reward_id, shown.affordable, shown.points_needed) == (expected, affordable, needed)


# ---- the policy is validated as data ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tiers", "reason"),
    [
        ((), "the ladder is empty"),
        ((Tier(name="VIB", threshold=350),), "the first, VIB, is at 350"),
        (
            (Tier(name="Insider", threshold=0), Tier(name="Rouge", threshold=1000), Tier(name="VIB", threshold=350)),
            r"VIB \(350\) comes after Rouge \(1000\)",
        ),
        (
            (Tier(name="Insider", threshold=0), Tier(name="VIB", threshold=350), Tier(name="Also", threshold=350)),
            r"Also \(350\) comes after VIB \(350\)",
        ),
    ],
    ids=["empty", "not-from-zero", "not-ascending", "duplicate-threshold"],
)
def test_a_bad_ladder_is_refused_naming_the_field_and_the_step_at_fault(tiers: tuple[Tier, ...], reason: str) -> None:
    with pytest.raises(ValidationError, match=f"tiers must start at threshold 0 and ascend strictly: {reason}") as bad:
        ProgramConfig(tiers=tiers)

    assert bad.value.errors()[0]["loc"] == ("tiers",)
    with pytest.raises(ValidationError, match=reason):
        TierPolicy(ladder=tiers)


def test_tier_names_must_be_unique() -> None:
    ladder = (Tier(name="Insider", threshold=0), Tier(name="Insider", threshold=350))

    with pytest.raises(ValidationError, match="tier names must be unique: Insider named more than once"):
        ProgramConfig(tiers=ladder)


@pytest.mark.parametrize(
    ("multiplier", "reason"),
    [
        (D(0), "greater than or equal to 1"),
        (D("0.99"), "greater than or equal to 1"),
        (D(-1), "greater than or equal to 1"),
        (D("10.01"), "less than or equal to 10"),
    ],
)
def test_an_earn_multiplier_outside_1_to_10_is_refused(multiplier: Decimal, reason: str) -> None:
    vib = {"name": "VIB", "threshold": 350, "earn_multiplier": multiplier}
    with pytest.raises(ValidationError) as bad:
        ProgramConfig.model_validate({"tiers": [{"name": "Insider", "threshold": 0}, vib]})

    (error,) = bad.value.errors()
    assert error["loc"] == ("tiers", 1, "earn_multiplier")
    assert reason in error["msg"]


@pytest.mark.parametrize("multiplier", [D(1), D("1.5"), D(10)])
def test_an_earn_multiplier_from_1_to_10_is_accepted(multiplier: Decimal) -> None:
    assert Tier(name="VIB", threshold=350, earn_multiplier=multiplier).earn_multiplier == multiplier


@pytest.mark.parametrize(
    ("perks", "reason"),
    [
        (("Early Access",), "should match pattern"),
        (("x" * 41,), "should match pattern"),
        (("early-access", "early-access"), "perks must be unique: early-access listed more than once"),
    ],
)
def test_perks_are_short_unique_slugs(perks: tuple[str, ...], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason) as bad:
        Tier(name="VIB", threshold=350, perks=perks)

    assert bad.value.errors()[0]["loc"][0] == "perks"


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ({"window": "calendar_year"}, "a calendar_year window is reviewed yearly on January 1"),
        ({"window": "calendar_year", "review": "yearly", "review_month": 3}, "reviewed yearly on January 1"),
        ({"review": "monthly", "review_day": 15}, "a monthly review is on the 1st of every month"),
        ({"review": "yearly", "review_month": 2, "review_day": 29}, r"review_day 29 is not in month 2 every year"),
        ({"review": "yearly", "review_month": 4, "review_day": 31}, r"at most 30"),
        ({"review": "yearly", "review_month": 13}, "review_month"),
        ({"grace_months": -1}, "grace_months"),
        ({"measure": "visits"}, "measure"),
        ({"window": "rolling_6_months"}, "window"),
    ],
)
def test_bad_tier_rules_are_refused_with_the_reason(rules: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        ProgramConfig.model_validate({"tier_rules": rules})


def test_the_default_policy_is_the_current_ladder_reviewed_monthly_with_three_months_grace() -> None:
    policy = ProgramConfig().tier_policy

    assert [(t.name, t.threshold, t.earn_multiplier, t.perks) for t in policy.ladder] == [
        ("Insider", 0, 1, ()),
        ("VIB", 350, 1, ()),
        ("Rouge", 1000, 1, ()),
    ]
    assert (policy.measure, policy.window, policy.review, policy.grace_months) == (
        "points",
        "rolling_12_months",
        "monthly",
        3,
    )
    assert policy.refund_can_downgrade is False and policy.currency == "USD"


def test_the_program_policy_carries_its_ladder_rules_and_base_currency() -> None:
    ladder = (Tier(name="Member", threshold=0), Tier(name="Gold", threshold=500, earn_multiplier=D("1.25")))
    program = ProgramConfig(
        base_currency="EUR",
        points_per_unit={"EUR": D(1)},
        tiers=ladder,
        tier_rules=TierRules(measure="spend", window="calendar_year", review="yearly", grace_months=0),
    )

    policy = program.tier_policy

    assert (policy.ladder, policy.currency, policy.measure, policy.grace_months) == (ladder, "EUR", "spend", 0)


def test_a_program_document_with_tier_rules_round_trips_and_an_older_one_still_reads() -> None:
    program = ProgramConfig(
        tiers=(Tier(name="Insider", threshold=0), Tier(name="VIB", threshold=350, perks=("early-access",))),
        tier_rules=TierRules(review="yearly", review_month=7, review_day=1, refund_can_downgrade=True),
    )
    older = ProgramConfig.model_validate({"tiers": [{"name": "Insider", "threshold": 0}]})

    assert ProgramConfig.model_validate_json(program.model_dump_json()) == program
    assert older.tiers[0].earn_multiplier == 1 and older.tier_rules == TierRules()


def test_a_reward_is_open_to_every_tier_unless_gated() -> None:
    assert reward("sample", 100).min_tier is None
    assert "min_tier" not in reward("sample", 100).public()
    assert reward("vib-gift", 100, min_tier="VIB").public()["min_tier"] == "VIB"
