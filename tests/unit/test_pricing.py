"""Pricing with promotions: windows, audiences, caps and budgets, stacking, the tier, one rounding on the running
total, and the program's own earn unchanged (docs/promotions.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loyalty.core.errors import InvalidRequest
from loyalty.points.activities import LineItem, Purchase
from loyalty.points.pricing import MemberContext, Pricing, PurchaseContext, price_purchase
from loyalty.points.program import ProgramConfig, purchase_points
from loyalty.points.promotions import CapPeriod, Promotion, PromotionKind, period_key

D = Decimal
START = datetime(2026, 12, 3, tzinfo=UTC)  # a double-points day: 2026-12-03, all day (UTC)
END = datetime(2026, 12, 4, tzinfo=UTC)
NOON = datetime(2026, 12, 3, 12, tzinfo=UTC)
INSIDER = MemberContext(tier="Insider")


def promo(promotion_id: str = "double-day", **fields: Any) -> Promotion:
    """A promotion on for START..END, a double-points day unless the fields say otherwise."""
    values: dict[str, Any] = {"name": promotion_id.replace("-", " "), "starts_at": START, "ends_at": END}
    values.update(fields)
    values.setdefault("kind", PromotionKind.MULTIPLIER)
    if values["kind"] in (PromotionKind.MULTIPLIER, PromotionKind.CATEGORY_MULTIPLIER):
        values.setdefault("multiplier", D(2))
    return Promotion(promotion_id=promotion_id, **values)


def line(amount: str, *, sku: str | None = None, category: str | None = None) -> LineItem:
    return LineItem(sku=sku, category=category, amount=D(amount))


def price(
    program: ProgramConfig,
    amount: str,
    lines: tuple[LineItem, ...] = (),
    *,
    member: MemberContext = INSIDER,
    now: datetime = NOON,
    currency: str = "USD",
    budgets_left: Mapping[str, int] | None = None,
) -> Pricing:
    return price_purchase(program, PurchaseContext(D(amount), currency, lines), member, now, budgets_left=budgets_left)


def rules(pricing: Pricing) -> dict[str, int]:
    return {entry.rule: entry.points for entry in pricing.breakdown}


def assert_adds_up(pricing: Pricing) -> None:
    assert sum(entry.points for entry in pricing.breakdown) == pricing.points


# ---- windows: start inclusive, end exclusive ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "points"),
    [
        (START - timedelta(microseconds=1), 10),
        (START, 20),
        (NOON, 20),
        (END - timedelta(microseconds=1), 20),
        (END, 10),
        (datetime(2026, 12, 3, 20, tzinfo=timezone(timedelta(hours=-5))), 10),  # 01:00 UTC on the 4th: over
    ],
    ids=["just-before", "at-start", "midday", "last-instant", "at-end", "other-offset-after-end"],
)
def test_a_double_points_day_doubles_inside_its_window_only(now: datetime, points: int) -> None:
    pricing = price(ProgramConfig(promotions=(promo(),)), "10.00", now=now)

    assert pricing.points == points
    assert ("promotion:double-day" in rules(pricing)) is (points == 20)
    assert_adds_up(pricing)


def test_a_promotion_outside_its_window_gives_nothing_and_is_not_counted() -> None:
    pricing = price(ProgramConfig(promotions=(promo(),)), "10.00", now=END)

    assert pricing.breakdown == (pricing.breakdown[0],) and pricing.breakdown[0].rule == "base"
    assert pricing.promotions == ()


# ---- what each kind gives ---------------------------------------------------------------------------------------


def test_a_category_bonus_multiplies_the_lines_it_covers_only() -> None:
    bonus = promo("skincare-triple", kind=PromotionKind.CATEGORY_MULTIPLIER, multiplier=D(3), categories={"skin care"})
    lines = (line("20", category="  Skin  CARE"), line("30", category="fragrance"))

    pricing = price(ProgramConfig(promotions=(bonus,)), "60", lines)

    # 60 base; the skin care line (spelled as the store spells it: "skin care") earns 20 x (3 - 1) more.
    assert rules(pricing) == {"base": 60, "promotion:skincare-triple": 40}
    assert pricing.points == 100


def test_a_category_bonus_covers_a_sku_it_names_whatever_its_category() -> None:
    bonus = promo("gift-set", kind=PromotionKind.CATEGORY_MULTIPLIER, skus={"SKU-GIFT"})

    pricing = price(ProgramConfig(promotions=(bonus,)), "25", (line("10", sku="SKU-GIFT", category="fragrance"),))

    assert rules(pricing) == {"base": 25, "promotion:gift-set": 10}


def test_a_category_bonus_with_no_line_it_covers_has_no_line() -> None:
    bonus = promo("skincare", kind=PromotionKind.CATEGORY_MULTIPLIER, categories={"skincare"})

    assert rules(price(ProgramConfig(promotions=(bonus,)), "25", (line("10", category="fragrance"),))) == {"base": 25}
    assert rules(price(ProgramConfig(promotions=(bonus,)), "25")) == {"base": 25}


def test_a_category_bonus_multiplies_what_the_program_earns_on_the_line_not_its_amount() -> None:
    program = ProgramConfig(
        points_per_unit={"USD": D(2)},
        category_multipliers={"skincare": D(3)},
        promotions=(promo("skincare", kind=PromotionKind.CATEGORY_MULTIPLIER, categories={"skincare"}),),
    )

    pricing = price(program, "10", (line("10", category="skincare"),))

    # The program: 10 x 2 = 20 base, + 10 x 2 x (3 - 1) = 40 for the category; the promotion doubles the 60.
    assert rules(pricing) == {"base": 20, "category:skincare": 40, "promotion:skincare": 60}


@pytest.mark.parametrize(
    ("first_purchase", "expected"),
    [(True, {"base": 10, "promotion:welcome": 500}), (False, {"base": 10})],
    ids=["first-purchase", "any-later-purchase"],
)
def test_a_first_purchase_bonus_is_given_on_the_first_purchase_only(
    first_purchase: bool, expected: dict[str, int]
) -> None:
    welcome = promo("welcome", kind=PromotionKind.FIRST_PURCHASE_BONUS, points=500)
    member = MemberContext(tier="Insider", first_purchase=first_purchase)

    assert rules(price(ProgramConfig(promotions=(welcome,)), "10", member=member)) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "bonus"),
    [("49.99", "USD", False), ("50", "USD", True), ("80", "USD", True), ("80", "EUR", False)],
    ids=["below-minimum", "at-minimum", "above-minimum", "other-currency"],
)
def test_a_fixed_bonus_needs_its_minimum_in_its_currency(amount: str, currency: str, bonus: bool) -> None:
    program = ProgramConfig(
        points_per_unit={"USD": D(1), "EUR": D(1)},
        exchange_rates={"EUR": D("1.08")},
        promotions=(
            promo(
                "spend-50", kind=PromotionKind.FIXED_BONUS, points=100, min_amount={"amount": "50", "currency": "USD"}
            ),
        ),
    )

    pricing = price(program, amount, currency=currency)

    assert rules(pricing).get("promotion:spend-50") == (100 if bonus else None)


# ---- audiences --------------------------------------------------------------------------------------------------

OCCASIONAL_DOUBLE = promo("occasional-double", segments={"lifecycle:occasional"})


@pytest.mark.parametrize(
    ("segments", "points"),
    [
        ({"lifecycle:occasional"}, 40),
        ({"lifecycle:occasional", "rfm:at-risk"}, 40),
        ({"lifecycle:loyal", "rfm:champions"}, 20),
        (set(), 20),
    ],
    ids=["in-the-segment", "in-it-among-others", "in-other-segments", "in-no-segment"],
)
def test_double_points_for_occasional_shoppers_reaches_members_in_the_segment_only(
    segments: set[str], points: int
) -> None:
    member = MemberContext(tier="Insider", segments=frozenset(segments))

    assert price(ProgramConfig(promotions=(OCCASIONAL_DOUBLE,)), "20", member=member).points == points


@pytest.mark.parametrize(
    ("tier", "segments", "doubled"),
    [
        ("VIB", set(), True),
        ("Rouge", set(), True),
        ("Insider", set(), False),
        ("VIB", {"rule:big-spenders"}, True),
    ],
    ids=["listed-tier", "other-listed-tier", "tier-not-listed", "segments-do-not-matter"],
)
def test_a_tier_audience_reaches_the_tiers_it_lists(tier: str, segments: set[str], doubled: bool) -> None:
    vib_days = promo("vib-days", tiers={"VIB", "Rouge"})
    member = MemberContext(tier=tier, segments=frozenset(segments))

    assert price(ProgramConfig(promotions=(vib_days,)), "20", member=member).points == (40 if doubled else 20)


@pytest.mark.parametrize(
    ("tier", "segments", "doubled"),
    [("VIB", {"rfm:at-risk"}, True), ("VIB", set(), False), ("Insider", {"rfm:at-risk"}, False)],
    ids=["both", "tier-only", "segment-only"],
)
def test_an_audience_of_tiers_and_segments_needs_both(tier: str, segments: set[str], doubled: bool) -> None:
    win_back = promo("vib-win-back", tiers={"VIB"}, segments={"rfm:at-risk", "lifecycle:lapsed"})
    member = MemberContext(tier=tier, segments=frozenset(segments))

    assert price(ProgramConfig(promotions=(win_back,)), "20", member=member).points == (40 if doubled else 20)


# ---- caps per member per period -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "now", "given_before", "points", "key"),
    [
        (CapPeriod.DAY, NOON, 0, 30, "2026-12-03"),  # 30 offered, 100 left: all of it
        (CapPeriod.DAY, NOON, 85, 15, "2026-12-03"),  # clipped to what the day has left
        (CapPeriod.DAY, NOON, 100, 0, "2026-12-03"),  # the day is used up
        (CapPeriod.DAY, NOON, 130, 0, "2026-12-03"),  # over the cap already (a cap lowered): never negative
        (CapPeriod.WEEK, datetime(2026, 12, 31, 23, tzinfo=UTC), 90, 10, "2026-W53"),
        (CapPeriod.WEEK, datetime(2027, 1, 1, 1, tzinfo=UTC), 90, 10, "2026-W53"),  # the same ISO week
        (CapPeriod.WEEK, datetime(2027, 1, 4, tzinfo=UTC), 0, 30, "2027-W01"),
        (CapPeriod.MONTH, datetime(2026, 12, 31, 23, 59, tzinfo=UTC), 80, 20, "2026-12"),
        (CapPeriod.YEAR, datetime(2026, 12, 31, tzinfo=UTC), 99, 1, "2026"),
        (CapPeriod.PROMOTION, NOON, 70, 30, "all"),
    ],
    ids=[
        "day-room",
        "day-clipped",
        "day-used-up",
        "day-over",
        "week-dec-31",
        "week-jan-1",
        "week-next",
        "month-clipped",
        "year-clipped",
        "whole-promotion",
    ],
)
def test_a_cap_clips_what_a_promotion_gives_a_member_in_its_period(
    period: CapPeriod, now: datetime, given_before: int, points: int, key: str
) -> None:
    season = promo(
        "season",
        kind=PromotionKind.FIXED_BONUS,
        points=30,
        starts_at=datetime(2026, 11, 1, tzinfo=UTC),
        ends_at=datetime(2027, 2, 1, tzinfo=UTC),
        cap={"points": 100, "period": period},
    )
    assert season.cap_key(now) == key  # the counter the caller reads before and adds to after
    member = MemberContext(tier="Insider", given_in_period={"season": given_before})

    pricing = price(ProgramConfig(promotions=(season,)), "10", member=member, now=now)

    assert rules(pricing) == {"base": 10, "promotion:season": points}  # a capped promotion still shows, at 0
    awards = [(award.promotion_id, award.points, award.offered, award.cap_key) for award in pricing.promotions]
    assert awards == ([("season", points, 30, key)] if points else [])
    assert_adds_up(pricing)


@pytest.mark.parametrize(
    ("moment", "period", "key"),
    [
        (datetime(2026, 12, 3, 23, 59, tzinfo=UTC), CapPeriod.DAY, "2026-12-03"),
        (datetime(2026, 12, 3, 20, tzinfo=timezone(timedelta(hours=-5))), CapPeriod.DAY, "2026-12-04"),
        (datetime(2026, 12, 3, tzinfo=UTC), CapPeriod.WEEK, "2026-W49"),
        (datetime(2025, 12, 29, tzinfo=UTC), CapPeriod.WEEK, "2026-W01"),  # a Monday in December, week 1 of 2026
        (datetime(2027, 1, 3, tzinfo=UTC), CapPeriod.WEEK, "2026-W53"),  # a Sunday in January, 2026's last week
        (datetime(2026, 1, 1, tzinfo=UTC), CapPeriod.MONTH, "2026-01"),
        (datetime(999, 5, 1, tzinfo=UTC), CapPeriod.YEAR, "0999"),
        (datetime(2026, 6, 1, tzinfo=UTC), CapPeriod.PROMOTION, "all"),
    ],
)
def test_period_keys_are_utc_calendar_and_iso_week_keys(moment: datetime, period: CapPeriod, key: str) -> None:
    assert period_key(period, moment) == key


# ---- budgets --------------------------------------------------------------------------------------------------

BUDGETED = promo("launch", kind=PromotionKind.FIXED_BONUS, points=50, budget=10_000)


@pytest.mark.parametrize(
    ("budgets_left", "points"),
    [
        (None, 50),  # never given yet: the whole budget is left
        ({"launch": 10_000}, 50),
        ({"launch": 20}, 20),  # clipped to what is left
        ({"launch": 0}, 0),  # exhausted
        ({"launch": -5}, 0),  # overspent by a race the store lost: never negative
        ({"other": 0}, 50),
    ],
    ids=["no-counter", "plenty", "clipped", "exhausted", "overspent", "another-promotions-budget"],
)
def test_a_budget_clips_a_promotion_and_an_exhausted_one_gives_nothing(
    budgets_left: dict[str, int] | None, points: int
) -> None:
    pricing = price(ProgramConfig(promotions=(BUDGETED,)), "10", budgets_left=budgets_left)

    assert rules(pricing)["promotion:launch"] == points
    assert [award.points for award in pricing.promotions] == ([points] if points else [])
    assert_adds_up(pricing)


def test_a_promotion_without_a_budget_is_unlimited_whatever_the_counters_say() -> None:
    pricing = price(ProgramConfig(promotions=(promo(),)), "10", budgets_left={"double-day": 0})

    assert rules(pricing)["promotion:double-day"] == 10


def test_a_budget_smaller_than_one_award_caps_it_and_the_tighter_of_cap_and_budget_wins() -> None:
    tiny = promo("tiny", kind=PromotionKind.FIXED_BONUS, points=50, budget=30, cap={"points": 40, "period": "day"})
    member = MemberContext(tier="Insider", given_in_period={"tiny": 15})

    assert rules(price(ProgramConfig(promotions=(tiny,)), "10"))["promotion:tiny"] == 30  # the budget
    assert rules(price(ProgramConfig(promotions=(tiny,)), "10", member=member))["promotion:tiny"] == 25  # the cap
    # A counter claiming more than the budget (the budget lowered since) is held to the budget.
    assert rules(price(ProgramConfig(promotions=(tiny,)), "10", budgets_left={"tiny": 1000}))["promotion:tiny"] == 30


# ---- the tier, stacking, and what multipliers multiply ---------------------------------------------------------


@pytest.mark.parametrize(
    ("multiplier", "expected"),
    [(D(1), {"base": 100}), (D("1.5"), {"base": 100, "tier:VIB": 50}), (D("1.25"), {"base": 100, "tier:VIB": 25})],
    ids=["no-extra", "half-again", "a-quarter"],
)
def test_a_tier_multiplier_earns_its_extra_on_the_programs_earn(multiplier: Decimal, expected: dict[str, int]) -> None:
    member = MemberContext(tier="VIB", tier_multiplier=multiplier)

    assert rules(price(ProgramConfig(), "100", member=member)) == expected


def test_two_multipliers_add_their_extras_and_do_not_compound() -> None:
    program = ProgramConfig(promotions=(promo("double-day"), promo("triple-weekend", multiplier=D(3))))

    pricing = price(program, "10")

    assert rules(pricing) == {"base": 10, "promotion:double-day": 10, "promotion:triple-weekend": 20}
    assert pricing.points == 40  # 1 + 1 + 2 = 4x, not 2 x 3 = 6x


def test_tier_day_and_category_promotions_stack_by_adding_their_extras() -> None:
    program = ProgramConfig(
        promotions=(
            promo("double-day"),
            promo("skincare-triple", kind=PromotionKind.CATEGORY_MULTIPLIER, multiplier=D(3), categories={"skincare"}),
        )
    )
    member = MemberContext(tier="VIB", tier_multiplier=D("1.5"))

    pricing = price(program, "100", (line("40", category="skincare"),), member=member)

    assert rules(pricing) == {
        "base": 100,
        "tier:VIB": 50,  # 0.5 x 100: the tier does not multiply promotions
        "promotion:double-day": 100,  # 1 x 100: the day does not multiply the tier or the category promotion
        "promotion:skincare-triple": 80,  # 2 x 40
    }
    assert pricing.points == 330  # the skincare line at 1 + 0.5 + 1 + 2 = 4.5x, the rest at 2.5x


def test_promotions_apply_by_kind_then_id_whatever_order_the_program_lists_them() -> None:
    program = ProgramConfig(
        promotions=(
            promo("b-welcome", kind=PromotionKind.FIRST_PURCHASE_BONUS, points=5),
            promo("z-bonus", kind=PromotionKind.FIXED_BONUS, points=5),
            promo("a-bonus", kind=PromotionKind.FIXED_BONUS, points=5),
            promo("y-skin", kind=PromotionKind.CATEGORY_MULTIPLIER, categories={"skincare"}),
            promo("x-double"),
        )
    )
    member = MemberContext(tier="Insider", first_purchase=True)

    pricing = price(program, "10", (line("5", category="skincare"),), member=member)

    assert [entry.rule for entry in pricing.breakdown] == [
        "base",
        "promotion:x-double",
        "promotion:y-skin",
        "promotion:a-bonus",
        "promotion:z-bonus",
        "promotion:b-welcome",
    ]


def test_a_double_points_day_leaves_a_line_the_program_takes_out_of_earning_out() -> None:
    program = ProgramConfig(category_multipliers={"gift card": D(0)}, promotions=(promo(),))

    pricing = price(program, "100", (line("60", category="gift card"),))

    assert rules(pricing) == {"base": 100, "category:gift card": -60, "promotion:double-day": 40}
    assert pricing.points == 80


# ---- rounding: once, on the running total ---------------------------------------------------------------------


def test_fractions_carry_from_line_to_line_so_a_double_day_doubles_exactly() -> None:
    pricing = price(ProgramConfig(promotions=(promo(),)), "10.50")

    # 10.5 + 10.5 = 21: the base's half point and the promotion's make one more, on the promotion's line.
    assert rules(pricing) == {"base": 10, "promotion:double-day": 11}


def test_a_clipped_promotion_adds_its_points_and_the_fraction_carries_on() -> None:
    program = ProgramConfig(
        promotions=(
            promo("capped", cap={"points": 3, "period": "day"}),
            promo("welcome", kind=PromotionKind.FIXED_BONUS, points=1),
        )
    )

    pricing = price(program, "10.50")

    # 10.5 base; "capped" offers floor(21) - 10 = 11, gives 3 (total 13.5); the bonus brings it to 14.5.
    assert rules(pricing) == {"base": 10, "promotion:capped": 3, "promotion:welcome": 1}
    assert pricing.points == 14
    assert [(a.promotion_id, a.points, a.offered) for a in pricing.promotions] == [("capped", 3, 11), ("welcome", 1, 1)]


def test_program_rule_lines_split_the_programs_one_rounding() -> None:
    program = ProgramConfig(category_multipliers={"skincare": D(1), "body": D(2)})
    lines = (line("0.99", category="skincare"), line("0.60", category="body"), line("0.99", category="skincare"))

    pricing = price(program, "2.58", lines)

    # 2.58 + 0.60 = 3.18: 2 base, +1 when the body line's extra crosses 3; skincare's extras are 0.
    assert rules(pricing) == {"base": 2, "category:skincare": 0, "category:body": 1}
    assert pricing.points == purchase_points(program, D("2.58"), "USD", lines) == 3


# ---- the worked example of docs/promotions.md -----------------------------------------------------------------


def test_the_worked_example_of_the_design_note() -> None:
    week = {"starts_at": datetime(2026, 11, 30, tzinfo=UTC), "ends_at": datetime(2026, 12, 7, tzinfo=UTC)}
    program = ProgramConfig(
        category_multipliers={"skincare": D(2), "gift card": D(0)},
        promotions=(
            promo(
                "occasional-double", segments={"lifecycle:occasional"}, cap={"points": 200, "period": "week"}, **week
            ),
            promo(
                "skincare-triple",
                kind=PromotionKind.CATEGORY_MULTIPLIER,
                multiplier=D(3),
                categories={"skincare"},
                budget=100_000,
                **week,
            ),
            promo(
                "spend-100",
                kind=PromotionKind.FIXED_BONUS,
                points=100,
                min_amount={"amount": "100", "currency": "USD"},
                **week,
            ),
            promo("welcome", kind=PromotionKind.FIRST_PURCHASE_BONUS, points=500, **week),
            promo("rouge-triple", multiplier=D(3), tiers={"Rouge"}, **week),
        ),
    )
    member = MemberContext(
        tier="VIB",
        tier_multiplier=D("1.25"),
        segments=frozenset({"lifecycle:occasional", "rfm:at-risk"}),
        given_in_period={"occasional-double": 100},
    )
    lines = (
        line("40.25", category="skincare"),
        line("25.00", category="gift card"),
        line("30.00", category="fragrance"),
    )
    now = datetime(2026, 12, 3, 18, 30, tzinfo=UTC)

    pricing = price(program, "120.50", lines, member=member, now=now, budgets_left={"skincare-triple": 50})

    assert [(entry.rule, entry.points) for entry in pricing.breakdown] == [
        ("base", 120),
        ("category:skincare", 40),
        ("category:gift card", -25),
        ("tier:VIB", 34),
        ("promotion:occasional-double", 100),
        ("promotion:skincare-triple", 50),
        ("promotion:spend-100", 100),
    ]
    assert pricing.points == 419
    assert pricing.program_points == purchase_points(program, D("120.50"), "USD", lines) == 135
    assert [(a.promotion_id, a.points, a.offered, a.cap_key) for a in pricing.promotions] == [
        ("occasional-double", 100, 136, "2026-W49"),
        ("skincare-triple", 50, 161, None),
        ("spend-100", 100, 100, None),
    ]


# ---- the program's own earn is unchanged ------------------------------------------------------------------------

PROGRAM_CASES = [  # tests/unit/test_program.py's cases of purchase_points
    (ProgramConfig(), "10.99", "USD", ()),
    (ProgramConfig(), "0.99", "USD", ()),
    (ProgramConfig(category_multipliers={"skincare": D(1)}), "1.98", "USD", (line("0.99", category="skincare"),) * 2),
    (
        ProgramConfig(category_multipliers={"skincare": D(2)}),
        "50",
        "USD",
        (line("30", category="skincare"), line("20", category="fragrance")),
    ),
    (
        ProgramConfig(category_multipliers={"skincare": D(2)}, sku_multipliers={"SKU-GIFTSET": D(3)}),
        "10",
        "USD",
        (line("10", sku="SKU-GIFTSET", category="skincare"),),
    ),
    (
        ProgramConfig(category_multipliers={"skincare": D(2)}, sku_multipliers={"SKU-GIFTSET": D(3)}),
        "10",
        "USD",
        (line("10", sku="SKU-OTHER", category="skincare"),),
    ),
    (ProgramConfig(category_multipliers={"gift-card": D(0)}), "100", "USD", (line("60", category="gift-card"),)),
    (
        ProgramConfig(
            points_per_unit={"EUR": D("1.1")},
            exchange_rates={"EUR": D("1.08")},
            category_multipliers={"skincare": D("1.5")},
        ),
        "10.00",
        "EUR",
        (line("5.00", category="skincare"),),
    ),
    (ProgramConfig(), "10", "USD", (line("6"), line("4"))),
    (
        ProgramConfig(points_per_unit={"USD": D(1), "JPY": D("0.01")}, exchange_rates={"JPY": D("0.0067")}),
        "1000",
        "JPY",
        (),
    ),
]


@pytest.mark.parametrize(("program", "amount", "currency", "lines"), PROGRAM_CASES)
def test_without_tier_or_promotions_the_points_are_purchase_points(
    program: ProgramConfig, amount: str, currency: str, lines: tuple[LineItem, ...]
) -> None:
    pricing = price(program, amount, lines, currency=currency)

    assert pricing.points == pricing.program_points == purchase_points(program, D(amount), currency, lines)
    assert_adds_up(pricing)


@pytest.mark.parametrize(
    ("program", "amount", "currency", "lines", "field"),
    [
        (ProgramConfig(), "10", "EUR", (), "currency"),
        (ProgramConfig(max_purchase_amount=D(1000)), "1000.01", "USD", (), "amount"),
        (ProgramConfig(), "-1", "USD", (), "amount"),
        (ProgramConfig(), "10", "USD", (line("6"), line("4.01")), "line_items"),
    ],
    ids=["currency-not-accepted", "above-the-limit", "negative", "lines-exceed-order"],
)
def test_pricing_refuses_what_purchase_points_refuses_naming_the_field(
    program: ProgramConfig, amount: str, currency: str, lines: tuple[LineItem, ...], field: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        price(program, amount, lines, currency=currency)

    assert refused.value.field == field


def test_a_purchase_prices_as_its_context() -> None:
    purchase = Purchase(order_id="web-1", amount=D("12.5"), currency="USD", line_items=(line("2.5", category="x"),))

    assert PurchaseContext.of(purchase) == PurchaseContext(D("12.5"), "USD", (line("2.5", category="x"),))


def test_now_without_a_timezone_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        price(ProgramConfig(), "10", now=datetime(2026, 12, 3, 12))


@pytest.mark.parametrize(
    ("fields", "field"),
    [({"tier_multiplier": D("0.5")}, "tier_multiplier"), ({"given_in_period": {"x": -1}}, "given_in_period")],
)
def test_a_member_context_out_of_range_is_refused_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        MemberContext(tier="Insider", **fields)

    assert refused.value.errors()[0]["loc"][0] == field


# ---- promotions are validated as data ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"promotion_id": "Double Day"}, "promotion_id", "not a slug"),
        ({"ends_at": START}, "ends_at", "must end after it starts"),
        ({"ends_at": START - timedelta(days=1)}, "ends_at", "must end after it starts"),
        ({"starts_at": datetime(2026, 12, 3)}, "starts_at", "timezone"),
        ({"multiplier": D(1)}, "multiplier", "greater than 1"),
        ({"multiplier": None}, "multiplier", "needs its multiplier"),
        ({"points": 10}, "points", "takes no points"),
        ({"kind": "fixed_bonus", "multiplier": None}, "points", "needs its points"),
        ({"kind": "fixed_bonus", "multiplier": None, "points": 0}, "points", "greater than or equal to 1"),
        ({"categories": {"skincare"}}, "skus", "takes no categories or SKUs"),
        ({"kind": "category_multiplier"}, "skus", "at least one category or SKU"),
        ({"kind": "category_multiplier", "categories": {"Skin Care"}}, "categories", "'skin care', not 'Skin Care'"),
        ({"min_amount": {"amount": "10", "currency": "USD"}}, "min_amount", "takes no minimum amount"),
        ({"segments": {"occasional"}}, "segments", "<family>:<slug>"),
        ({"cap": {"points": 10, "period": "fortnight"}}, "cap", "'day', 'week', 'month', 'year' or 'promotion'"),
        ({"budget": 0}, "budget", "greater than or equal to 1"),
        ({"kind": "triple"}, "kind", "'multiplier', 'category_multiplier'"),
        ({"audience": "everyone"}, "audience", "Extra inputs are not permitted"),
    ],
)
def test_a_promotion_document_is_refused_naming_the_field_and_the_reason(
    fields: dict[str, Any], field: str, reason: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        promo(**fields)

    assert [(error["loc"][0], reason in error["msg"]) for error in refused.value.errors()] == [(field, True)]


def test_every_reason_a_promotion_is_refused_is_listed_at_once() -> None:
    with pytest.raises(ValidationError) as refused:
        Promotion.model_validate(
            {
                "promotion_id": "Bad Id",
                "name": "",
                "kind": "fixed_bonus",
                "starts_at": "2026-12-03T00:00:00Z",
                "ends_at": "2026-12-02T00:00:00Z",
                "multiplier": "2",
                "categories": ["skincare"],
                "segments": ["occasional"],
                "cap": {"points": 0, "period": "day"},
            }
        )

    assert sorted(error["loc"][0] for error in refused.value.errors()) == [
        "cap",
        "ends_at",
        "multiplier",
        "name",
        "points",
        "promotion_id",
        "segments",
        "skus",
    ]


def test_a_promotion_window_is_kept_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    promotion = promo(starts_at=datetime(2026, 12, 3, tzinfo=paris), ends_at=datetime(2026, 12, 4, tzinfo=paris))

    assert promotion.starts_at == datetime(2026, 12, 2, 23, tzinfo=UTC) and promotion.starts_at.tzinfo is UTC
    assert promotion.is_on(datetime(2026, 12, 2, 23, 30, tzinfo=UTC))


def test_promotion_ids_are_unique_in_a_program() -> None:
    with pytest.raises(ValidationError, match="repeated: double-day"):
        ProgramConfig(promotions=(promo(), promo(multiplier=D(3))))


def test_a_program_with_promotions_round_trips_through_json() -> None:
    program = ProgramConfig(
        promotions=(
            promo(tiers={"VIB"}, segments={"lifecycle:occasional"}, cap={"points": 500, "period": "week"}),
            promo(
                "spend-50",
                kind=PromotionKind.FIXED_BONUS,
                points=100,
                min_amount={"amount": "50", "currency": "USD"},
                budget=10**6,
            ),
        )
    )

    assert ProgramConfig.model_validate_json(program.model_dump_json()) == program


# ---- properties ---------------------------------------------------------------------------------------------------

_CATEGORIES = ("skincare", "fragrance", "hair", "gift card")
_SKUS = ("SKU-1", "SKU-2", "SKU-3")


@st.composite
def orders(draw: st.DrawFn) -> tuple[ProgramConfig, PurchaseContext]:
    """A program (rate, category and SKU multipliers, some below 1) and an order on it, in hundredths so that the
    Decimal arithmetic is exact and a Fraction can check it."""
    hundredths = st.integers(min_value=0, max_value=400).map(lambda n: D(n) / 100)
    program = ProgramConfig(
        points_per_unit={"USD": D(draw(st.integers(min_value=1, max_value=500))) / 100},
        category_multipliers=draw(st.dictionaries(st.sampled_from(_CATEGORIES), hundredths, max_size=4)),
        sku_multipliers=draw(st.dictionaries(st.sampled_from(_SKUS), hundredths, max_size=3)),
    )
    lines = tuple(
        LineItem(
            sku=draw(st.sampled_from((None, *_SKUS))),
            category=draw(st.sampled_from((None, *_CATEGORIES))),
            amount=D(draw(st.integers(min_value=0, max_value=50_000))) / 100,
        )
        for _ in range(draw(st.integers(min_value=0, max_value=8)))
    )
    lines_total = sum((entry.amount for entry in lines), D(0))
    amount = lines_total + D(draw(st.integers(min_value=0, max_value=50_000))) / 100
    return program, PurchaseContext(amount, "USD", lines)


@st.composite
def promotions(draw: st.DrawFn, *, active: bool) -> tuple[Promotion, ...]:
    """Promotions of every kind; with active=False also outside their window or audience, capped and budgeted."""
    found = []
    for index in range(draw(st.integers(min_value=0, max_value=6))):
        kind = draw(st.sampled_from(list(PromotionKind)))
        fields: dict[str, Any] = {"kind": kind}
        if kind in (PromotionKind.MULTIPLIER, PromotionKind.CATEGORY_MULTIPLIER):
            fields["multiplier"] = D(draw(st.integers(min_value=101, max_value=500))) / 100
        else:
            fields["points"] = draw(st.integers(min_value=1, max_value=1000))
        if kind is PromotionKind.CATEGORY_MULTIPLIER:
            fields["categories"] = set(draw(st.lists(st.sampled_from(_CATEGORIES), min_size=1, max_size=2)))
        if not active:
            shift = draw(st.sampled_from((timedelta(0), timedelta(0), timedelta(days=1), -timedelta(days=1))))
            fields.update(starts_at=START + shift, ends_at=END + shift)
            fields["tiers"] = draw(st.sampled_from((set(), set(), {"Insider"}, {"VIB"})))
            if draw(st.booleans()):
                fields["cap"] = {"points": draw(st.integers(1, 300)), "period": draw(st.sampled_from(list(CapPeriod)))}
            if draw(st.booleans()):
                fields["budget"] = draw(st.integers(1, 300))
        found.append(promo(f"p{index}", **fields))
    return tuple(found)


def _program_earn(program: ProgramConfig, purchase: PurchaseContext) -> tuple[Fraction, list[Fraction]]:
    """The program's earn, and each line's amount x its program multiplier, in exact rationals."""
    earned, per_line = Fraction(purchase.amount), []
    for entry in purchase.lines:
        multiplier = program.sku_multipliers.get(entry.sku) if entry.sku else None
        if multiplier is None and entry.category:
            multiplier = program.category_multipliers.get(entry.category)
        factor = Fraction(multiplier) if multiplier is not None else Fraction(1)
        earned += Fraction(entry.amount) * (factor - 1)
        per_line.append(Fraction(entry.amount) * factor)
    return earned * Fraction(program.points_per_unit["USD"]), per_line


@given(
    order=orders(),
    offers=promotions(active=True),
    tier_multiplier=st.integers(min_value=100, max_value=300).map(lambda n: D(n) / 100),
)
@settings(max_examples=200, database=None, deadline=None)
def test_unclipped_points_are_the_floor_of_the_exact_total(
    order: tuple[ProgramConfig, PurchaseContext], offers: tuple[Promotion, ...], tier_multiplier: Decimal
) -> None:
    base_program, purchase = order
    program = base_program.model_copy(update={"promotions": offers})
    rate = Fraction(program.points_per_unit["USD"])
    earn, per_line = _program_earn(program, purchase)
    exact = earn * Fraction(tier_multiplier)
    for offer in offers:
        if offer.kind is PromotionKind.MULTIPLIER:
            exact += earn * (Fraction(offer.multiplier or 0) - 1)
        elif offer.kind is PromotionKind.CATEGORY_MULTIPLIER:
            covered = sum(
                (
                    share
                    for entry, share in zip(purchase.lines, per_line, strict=True)
                    if entry.category in offer.categories
                ),
                Fraction(0),
            )
            exact += covered * rate * (Fraction(offer.multiplier or 0) - 1)
        elif offer.kind is PromotionKind.FIXED_BONUS:
            exact += offer.points or 0
    member = MemberContext(tier="VIB", tier_multiplier=tier_multiplier)

    pricing = price_purchase(program, purchase, member, NOON)

    assert pricing.points == math.floor(exact)
    assert pricing.program_points == purchase_points(program, purchase.amount, "USD", purchase.lines)
    assert_adds_up(pricing)


@given(
    order=orders(),
    offers=promotions(active=False),
    tier=st.sampled_from(("Insider", "VIB")),
    first_purchase=st.booleans(),
    given_in_period=st.dictionaries(st.sampled_from([f"p{i}" for i in range(6)]), st.integers(0, 400)),
    budgets_left=st.dictionaries(st.sampled_from([f"p{i}" for i in range(6)]), st.integers(-10, 400)),
)
@settings(max_examples=200, database=None, deadline=None)
def test_the_breakdown_adds_up_and_caps_and_budgets_are_never_exceeded(
    order: tuple[ProgramConfig, PurchaseContext],
    offers: tuple[Promotion, ...],
    tier: str,
    first_purchase: bool,
    given_in_period: dict[str, int],
    budgets_left: dict[str, int],
) -> None:
    base_program, purchase = order
    program = base_program.model_copy(update={"promotions": offers})
    member = MemberContext(tier=tier, first_purchase=first_purchase, given_in_period=given_in_period)

    pricing = price_purchase(program, purchase, member, NOON, budgets_left=budgets_left)

    assert_adds_up(pricing)
    assert pricing.points >= 0
    assert pricing.program_points == purchase_points(program, purchase.amount, "USD", purchase.lines)
    lines = rules(pricing)
    by_id = {offer.promotion_id: offer for offer in offers}
    for offer in offers:
        points = lines.get(f"promotion:{offer.promotion_id}")
        if not offer.is_on(NOON) or (offer.tiers and tier not in offer.tiers):
            assert points is None
        if points is None:
            continue
        assert points >= 0
        if offer.cap is not None:
            assert points <= max(0, offer.cap.points - given_in_period.get(offer.promotion_id, 0))
        if offer.budget is not None:
            assert points <= max(0, min(offer.budget, budgets_left.get(offer.promotion_id, offer.budget)))
    assert {award.promotion_id: award.points for award in pricing.promotions} == {
        rule.removeprefix("promotion:"): points
        for rule, points in lines.items()
        if rule.startswith("promotion:") and points > 0
    }
    for award in pricing.promotions:
        assert award.cap_key == by_id[award.promotion_id].cap_key(NOON)
