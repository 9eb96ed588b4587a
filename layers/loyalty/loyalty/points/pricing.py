"""Pricing a purchase: what it earns under the program, the member's tier and the promotions on at the time, rule
by rule. Pure: the caller reads the counters (a member's points per promotion in its cap period, each budget left)
and the clock; pricing reads nothing. docs/promotions.md has the rules below with a worked example.

The arithmetic
--------------
1. Program earn, E: (amount + sum over lines of line.amount x (m - 1)) x rate, where m is the line's SKU multiplier,
   else its category's (purchase_points, unchanged). Kept exact, never rounded on its own.
2. Tier: `tier:<name>` earns E x (t - 1), t the member's earn multiplier (given by the caller; a line only if t > 1).
3. Promotions, in a fixed order: by kind (multiplier, category_multiplier, fixed_bonus, first_purchase_bonus), then
   by id. `multiplier` earns E x (N - 1); `category_multiplier` earns the program's earn on the lines it covers
   (line.amount x m x rate, summed) x (N - 1); `fixed_bonus` and `first_purchase_bonus` earn their points.
   What a multiplier multiplies: the program's earn, base plus category and SKU extras, so a line the program takes
   out of earning (a 0x gift card) stays out on a double-points day; never the tier's extra or another promotion's.
   Stacking: multipliers add their extras and never compound: a 1.5x tier, a 2x day and a 3x category promotion
   earn 1 + 0.5 + 1 + 2 = 4.5x on the covered lines, not 9x. Each promotion counts from E alone, and each has its
   own cap and budget, so the order changes no figure beyond which line a carried fraction (4.) lands on.
4. Rounding: once, on the running total. Each line of the breakdown gets floor(total after it) - floor(total
   before it), so the lines add up exactly to `points` = floor(exact total), a fraction one line leaves carries
   into the next, and splitting an order into lines (or its earn into rules) never loses a point. The program's
   lines (base, category, SKU) add up to exactly purchase_points.
5. Caps and budgets: a promotion gives min(its points, cap - what it gave the member this period, budget left),
   never below 0. A clipped promotion adds exactly the points it gives to the running total.
6. Eligibility: a promotion gives nothing, and has no line, outside its window (starts_at <= now < ends_at),
   outside its audience (the member's tier among its tiers, if it names any; one of its segments held, if it names
   any), on a purchase below its min_amount or in another currency than the minimum's, on lines it does not cover
   (category_multiplier: no line at all), or, for first_purchase_bonus, on any purchase but the member's first.
   A promotion the purchase qualifies for keeps its line even at 0 points (capped, or nothing to multiply), so a
   member sees why; only promotions that gave points are listed in `promotions`, for the store's counters.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

from loyalty.core.errors import InvalidRequest
from loyalty.points.activities import LineItem, Purchase
from loyalty.points.categories import category_name
from loyalty.points.program import ProgramConfig
from loyalty.points.promotions import CapPeriod, Promotion, PromotionKind, in_order, period_key

BASE: Final = "base"
_PROGRAM_PREFIXES: Final = ("category:", "sku:")
_ZERO = Decimal(0)
_ONE = Decimal(1)
# Spelling a category as stored (Unicode normalisation) costs about a microsecond a line; a program's categories are
# few, so each is spelled once per container. Bounded: line categories come from outside.
_as_stored = functools.lru_cache(maxsize=4096)(category_name)


@dataclass(frozen=True, slots=True)
class PurchaseContext:
    """What is bought: the order amount and its currency, and the lines (which may cover part of the order)."""

    amount: Decimal
    currency: str
    lines: tuple[LineItem, ...] = ()

    @classmethod
    def of(cls, purchase: Purchase) -> PurchaseContext:
        return cls(purchase.amount, purchase.currency, purchase.line_items)


class MemberContext(BaseModel):
    """Who buys, as the caller read it: the tier and its earn multiplier (the tier ladder is the caller's), the
    segment ids the member item carries, whether this is the member's first purchase ever, and the points each
    promotion already gave this member in the cap period `now` falls in (Promotion.cap_key; absent: none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: Annotated[str, Field(min_length=1, max_length=40)]
    tier_multiplier: Annotated[Decimal, Field(ge=1, le=100, allow_inf_nan=False)] = _ONE
    segments: frozenset[str] = frozenset()
    first_purchase: bool = False
    given_in_period: dict[str, NonNegativeInt] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PricingLine:
    """One rule's share of the points: `base`, `category:<name>`, `sku:<sku>`, `tier:<name>` or `promotion:<id>`."""

    rule: str
    points: int


@dataclass(frozen=True, slots=True)
class PromotionAward:
    """What a promotion gave this purchase, for the store to add to its counters: the member's counter of the period
    `cap_key` (None: the promotion has no cap) and the promotion's budget (if it has one)."""

    promotion_id: str
    points: int
    offered: int  # before the cap and the budget clipped it
    cap_key: str | None


@dataclass(frozen=True, slots=True)
class Pricing:
    points: int
    breakdown: tuple[PricingLine, ...]
    promotions: tuple[PromotionAward, ...] = ()

    @property
    def program_points(self) -> int:
        """The program's own earn (base, category and SKU lines): what purchase_points gives, without tier or
        promotions. A tier ladder that counts only earned-by-spend points reads this."""
        return sum(
            line.points for line in self.breakdown if line.rule == BASE or line.rule.startswith(_PROGRAM_PREFIXES)
        )


def _floor(value: Decimal) -> int:
    return math.floor(value)  # exact for a Decimal (Decimal.__floor__), and faster than to_integral_value


class _Running:
    """The running exact total and the breakdown, each line taking floor(after) - floor(before)."""

    __slots__ = ("floored", "lines", "total")

    def __init__(self, total: Decimal) -> None:
        self.total = total
        self.floored = _floor(total)
        self.lines: list[PricingLine] = []

    def offer(self, exact: Decimal) -> int:
        """The whole points `exact` would add here."""
        return _floor(self.total + exact) - self.floored

    def add(self, rule: str, exact: Decimal, points: int, offered: int) -> None:
        """Add the line; `points` below what `exact` offered (clipped) adds exactly `points`, keeping the fraction."""
        self.total += exact if points == offered else Decimal(points)
        self.floored += points
        self.lines.append(PricingLine(rule, points))


def _checked(program: ProgramConfig, purchase: PurchaseContext) -> Decimal:
    """The rate; the same refusals as purchase_points, each naming its field."""
    rate = program.points_per_unit.get(purchase.currency)
    if rate is None:
        raise InvalidRequest(f"currency {purchase.currency} is not accepted by this program", field="currency")
    if purchase.amount < 0:
        raise InvalidRequest("amount is negative", field="amount")
    if purchase.amount > program.max_purchase_amount:
        raise InvalidRequest(f"amount exceeds the program's limit of {program.max_purchase_amount}", field="amount")
    if sum((line.amount for line in purchase.lines), _ZERO) > purchase.amount:
        raise InvalidRequest("line items add up to more than the order amount", field="line_items")
    return rate


def _qualifies(promotion: Promotion, purchase: PurchaseContext, member: MemberContext, now: datetime) -> bool:
    if not promotion.starts_at <= now < promotion.ends_at:
        return False
    if promotion.tiers and member.tier not in promotion.tiers:
        return False
    if promotion.segments and promotion.segments.isdisjoint(member.segments):
        return False
    if promotion.kind is PromotionKind.FIRST_PURCHASE_BONUS and not member.first_purchase:
        return False
    minimum = promotion.min_amount
    return minimum is None or (purchase.currency == minimum.currency and purchase.amount >= minimum.amount)


def price_purchase(
    program: ProgramConfig,
    purchase: PurchaseContext,
    member: MemberContext,
    now: datetime,
    *,
    budgets_left: Mapping[str, int] | None = None,
) -> Pricing:
    """The points a purchase earns and the rule each came from (the module's docstring gives the arithmetic).

    `now` is the instant the purchase counts at, for windows and cap periods (timezone-aware). `budgets_left`: the
    points each promotion with a budget has left; a promotion missing from it has its whole budget left (its
    counter starts with its first award), and a promotion without a budget is unlimited.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    rate = _checked(program, purchase)

    # 1. The program: base, then each SKU or category rule a line matches, rounded on the running total exactly as
    # purchase_points rounds (the same additions, in the same order, of currency amounts times the rate).
    earned = purchase.amount
    before = _floor(earned * rate)
    base_points = before
    rule_points: dict[str, int] = {}
    line_earn: list[Decimal] = []  # each line's amount x its program multiplier, for category promotions
    for line in purchase.lines:
        multiplier = program.sku_multipliers.get(line.sku) if line.sku else None
        rule = f"sku:{line.sku}"
        if multiplier is None and line.category:
            multiplier = program.category_multipliers.get(line.category)
            rule = f"category:{line.category}"
        if multiplier is None:
            line_earn.append(line.amount)
            continue
        line_earn.append(line.amount * multiplier)
        earned += line.amount * (multiplier - 1)
        after = _floor(earned * rate)
        rule_points[rule] = rule_points.get(rule, 0) + after - before
        before = after
    program_earn = earned * rate
    running = _Running(program_earn)
    running.lines.append(PricingLine(BASE, base_points))
    running.lines.extend(PricingLine(rule, points) for rule, points in rule_points.items())

    # 2. The tier's extra on the program's earn.
    if member.tier_multiplier > 1:
        extra = program_earn * (member.tier_multiplier - 1)
        offered = running.offer(extra)
        running.add(f"tier:{member.tier}", extra, offered, offered)

    # 3. The promotions on at `now` that this purchase and member qualify for.
    awards: list[PromotionAward] = []
    left = budgets_left or {}
    covers: list[tuple[str | None, str | None, Decimal]] | None = None  # (SKU, category as stored, earn) per line
    cap_keys: dict[CapPeriod, str] = {}
    for promotion in in_order([p for p in program.promotions if _qualifies(p, purchase, member, now)]):
        if promotion.kind is PromotionKind.MULTIPLIER:
            exact = program_earn * (_multiplier(promotion) - 1)
        elif promotion.kind is PromotionKind.CATEGORY_MULTIPLIER:
            if covers is None:
                covers = [
                    (line.sku, _as_stored(line.category), earn)
                    for line, earn in zip(purchase.lines, line_earn, strict=True)
                ]
            skus, categories = promotion.skus, promotion.categories
            covered = [earn for sku, category, earn in covers if sku in skus or category in categories]
            if not covered:
                continue
            exact = sum(covered, _ZERO) * rate * (_multiplier(promotion) - 1)
        else:
            exact = Decimal(promotion.points or 0)
        offered = running.offer(exact)
        points = _clipped(offered, promotion, member, left)
        running.add(f"promotion:{promotion.promotion_id}", exact, points, offered)
        if points > 0:
            cap_key = None
            if promotion.cap is not None:
                period = promotion.cap.period
                cap_key = cap_keys.get(period) or cap_keys.setdefault(period, period_key(period, now))
            awards.append(PromotionAward(promotion.promotion_id, points, offered, cap_key))

    return Pricing(running.floored, tuple(running.lines), tuple(awards))


def _multiplier(promotion: Promotion) -> Decimal:
    if promotion.multiplier is None:  # refused by Promotion's validation; here for the type checker
        raise ValueError(f"promotion {promotion.promotion_id} has no multiplier")
    return promotion.multiplier


def _clipped(offered: int, promotion: Promotion, member: MemberContext, budgets_left: Mapping[str, int]) -> int:
    """What the promotion gives of what it offers: no more than its cap and its budget leave, and never below 0."""
    points = offered
    if promotion.cap is not None:
        points = min(points, promotion.cap.points - member.given_in_period.get(promotion.promotion_id, 0))
    if promotion.budget is not None:
        points = min(points, promotion.budget, budgets_left.get(promotion.promotion_id, promotion.budget))
    return max(0, points)
