"""Promotions: time-boxed offers on top of the program's earn rules, as validated data (docs/promotions.md).

A promotion says what it gives (its kind and the figures that kind needs), when (a UTC window, end exclusive), to
whom (an audience of tiers and segment ids; empty means everyone), and how much at most (a cap per member per
period, a total budget). It holds no state: what a promotion already gave, to a member in a period or in all, is
counted by the store and handed to pricing (loyalty.points.pricing), which decides what it gives a purchase.

Every problem with a document is reported at once, each at its field: the checks that depend on another field (the
end after the start, the figures a kind needs or refuses) are field validators that read the fields before them,
so they run beside the plain field checks instead of after them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
)

from loyalty.points.categories import category_name

MAX_PROMOTIONS: Final = 100  # per program document; pricing looks at each on every purchase
MAX_AUDIENCE: Final = 50  # tiers, segment ids, categories or SKUs one promotion names
_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
# A segment id as loyalty.segments.ids writes it: `<family>:<slug>` (rfm:at-risk, lifecycle:occasional, rule:vip).
_SEGMENT_ID = re.compile(r"[a-z]+:[a-z0-9]+(-[a-z0-9]+)*")


class PromotionKind(StrEnum):
    MULTIPLIER = "multiplier"  # x multiplier on what the program earns on the whole purchase
    CATEGORY_MULTIPLIER = "category_multiplier"  # x multiplier on what the program earns on some lines
    FIXED_BONUS = "fixed_bonus"  # `points` on each qualifying purchase
    FIRST_PURCHASE_BONUS = "first_purchase_bonus"  # `points` on the member's first purchase ever


MULTIPLYING: Final = frozenset({PromotionKind.MULTIPLIER, PromotionKind.CATEGORY_MULTIPLIER})
BONUSES: Final = frozenset({PromotionKind.FIXED_BONUS, PromotionKind.FIRST_PURCHASE_BONUS})


class CapPeriod(StrEnum):
    """The periods a member's cap counts over, in UTC; `promotion` is the whole window."""

    DAY = "day"
    WEEK = "week"  # ISO 8601 weeks (Monday to Sunday), numbered in their ISO year
    MONTH = "month"
    YEAR = "year"
    PROMOTION = "promotion"


def period_key(period: CapPeriod, now: datetime) -> str:
    """The counter a moment falls in: "2026-12-03", "2026-W49", "2026-12", "2026", or "all" for the whole promotion.

    Weeks are ISO weeks, so the days around a year end share one key: 2026-12-31 and 2027-01-01 are both "2026-W53".
    """
    period = CapPeriod(period)  # "week" as well as CapPeriod.WEEK
    utc = now.astimezone(UTC)
    if period is CapPeriod.DAY:
        return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
    if period is CapPeriod.WEEK:
        year, week, _ = utc.isocalendar()
        return f"{year:04d}-W{week:02d}"
    if period is CapPeriod.MONTH:
        return f"{utc.year:04d}-{utc.month:02d}"
    if period is CapPeriod.YEAR:
        return f"{utc.year:04d}"
    return "all"


def _slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(f"{value!r} is not a slug: lowercase letters and digits in words joined by single hyphens")
    return value


def _segment_ids(values: frozenset[str]) -> frozenset[str]:
    wrong = sorted(value for value in values if not _SEGMENT_ID.fullmatch(value))
    if wrong:
        raise ValueError(f"segment ids are <family>:<slug> (e.g. lifecycle:occasional), not {', '.join(wrong)}")
    return values


def _categories_as_stored(values: frozenset[str]) -> frozenset[str]:
    """Lines are matched on their category as the store spells it (loyalty.points.categories.category_name), so a
    promotion names categories that way too; otherwise "Skin Care" would silently match nothing."""
    wrong = sorted(value for value in values if category_name(value) != value)
    if wrong:
        spelled = ", ".join(f"{category_name(value)!r}, not {value!r}" for value in wrong)
        raise ValueError(f"category names are written as stored (case-folded, trimmed, single spaces): {spelled}")
    return values


def _sorted(values: frozenset[str]) -> list[str]:
    return sorted(values)


Name = Annotated[str, Field(min_length=1, max_length=64)]
TierName = Annotated[str, Field(min_length=1, max_length=40)]
# A set of names, matched as a set and written sorted, so that the same document always has the same JSON.
Names = Annotated[frozenset[Name], Field(max_length=MAX_AUDIENCE), PlainSerializer(_sorted, return_type=list[str])]
TierNames = Annotated[
    frozenset[TierName], Field(max_length=MAX_AUDIENCE), PlainSerializer(_sorted, return_type=list[str])
]


class Money(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=3, allow_inf_nan=False)]
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code")]


class Cap(BaseModel):
    """At most `points` from one promotion to one member in each `period`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    points: Annotated[int, Field(ge=1, le=10_000_000)]
    period: CapPeriod


class Promotion(BaseModel):
    """One promotion. Figures a kind does not use are refused rather than ignored, so a typo cannot pass silently."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    promotion_id: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_slug)]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    kind: PromotionKind
    starts_at: AwareDatetime = Field(description="First instant of the window (inclusive), stored in UTC.")
    ends_at: AwareDatetime = Field(description="End of the window (exclusive), after starts_at, stored in UTC.")
    multiplier: Annotated[Decimal, Field(gt=1, le=100, allow_inf_nan=False)] | None = Field(
        default=None,
        validate_default=True,
        description="multiplier and category_multiplier: x N on what the program earns on what the promotion covers.",
    )
    categories: Annotated[Names, AfterValidator(_categories_as_stored)] = Field(
        default=frozenset(), validate_default=True, description="category_multiplier: the lines it covers."
    )
    skus: Names = Field(
        default=frozenset(), validate_default=True, description="category_multiplier: the lines it covers."
    )
    points: Annotated[int, Field(ge=1, le=1_000_000)] | None = Field(
        default=None, validate_default=True, description="fixed_bonus and first_purchase_bonus: points per purchase."
    )
    min_amount: Money | None = Field(
        default=None,
        validate_default=True,
        description="fixed_bonus and first_purchase_bonus: the order must be at least this, in this currency.",
    )
    tiers: TierNames = Field(
        default=frozenset(), description="Audience: members in one of these tiers (empty: any tier)."
    )
    segments: Annotated[Names, AfterValidator(_segment_ids)] = Field(
        default=frozenset(), description="Audience: members holding one of these segment ids (empty: no condition)."
    )
    cap: Cap | None = Field(default=None, description="Points per member per period, at most.")
    budget: Annotated[int, Field(ge=1, le=10**12)] | None = Field(
        default=None, description="Points the promotion gives in all, to all members, at most."
    )

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        return moment.astimezone(UTC)

    @field_validator("ends_at")
    @classmethod
    def _ends_after_start(cls, ends_at: datetime, info: ValidationInfo) -> datetime:
        starts_at = info.data.get("starts_at")
        if starts_at is not None and ends_at <= starts_at:
            raise ValueError(f"the promotion must end after it starts ({starts_at.isoformat()})")
        return ends_at

    @field_validator("multiplier")
    @classmethod
    def _multiplier_for_its_kinds(cls, multiplier: Decimal | None, info: ValidationInfo) -> Decimal | None:
        _needs(info, multiplier is not None, MULTIPLYING, "multiplier")
        return multiplier

    @field_validator("skus")
    @classmethod
    def _lines_for_category_multipliers(cls, skus: frozenset[str], info: ValidationInfo) -> frozenset[str]:
        kind = info.data.get("kind")
        categories = info.data.get("categories")
        if kind is PromotionKind.CATEGORY_MULTIPLIER and not skus and categories == frozenset():
            raise ValueError("a category_multiplier promotion names at least one category or SKU")
        if kind is not None and kind is not PromotionKind.CATEGORY_MULTIPLIER and (skus or categories):
            raise ValueError(f"a {kind.value} promotion takes no categories or SKUs (only category_multiplier does)")
        return skus

    @field_validator("points")
    @classmethod
    def _points_for_bonuses(cls, points: int | None, info: ValidationInfo) -> int | None:
        _needs(info, points is not None, BONUSES, "points")
        return points

    @field_validator("min_amount")
    @classmethod
    def _minimum_for_bonuses(cls, minimum: Money | None, info: ValidationInfo) -> Money | None:
        kind = info.data.get("kind")
        if minimum is not None and kind is not None and kind not in BONUSES:
            raise ValueError(f"a {kind.value} promotion takes no minimum amount (only {_kinds(BONUSES)} promotions do)")
        return minimum

    def is_on(self, now: datetime) -> bool:
        """Inside the window: starts_at <= now < ends_at."""
        return self.starts_at <= now < self.ends_at

    def cap_key(self, now: datetime) -> str | None:
        """The member counter a purchase at `now` counts against (period_key), or None without a cap."""
        return None if self.cap is None else period_key(self.cap.period, now)


def _kinds(kinds: frozenset[PromotionKind]) -> str:
    return " and ".join(sorted(kind.value for kind in kinds))


def _needs(info: ValidationInfo, present: bool, kinds: frozenset[PromotionKind], what: str) -> None:
    """A figure `kinds` require and the other kinds refuse (nothing to say when the kind itself is invalid)."""
    kind: Any = info.data.get("kind")
    if kind is None:
        return
    if kind in kinds and not present:
        raise ValueError(f"a {kind.value} promotion needs its {what}")
    if kind not in kinds and present:
        raise ValueError(f"a {kind.value} promotion takes no {what} (only {_kinds(kinds)} promotions do)")


def _unique_ids(promotions: tuple[Promotion, ...]) -> tuple[Promotion, ...]:
    seen: set[str] = set()
    repeated: set[str] = set()
    for promotion in promotions:
        (repeated if promotion.promotion_id in seen else seen).add(promotion.promotion_id)
    if repeated:
        raise ValueError(f"promotion ids must be unique; repeated: {', '.join(sorted(repeated))}")
    return promotions


Promotions = Annotated[tuple[Promotion, ...], Field(max_length=MAX_PROMOTIONS), AfterValidator(_unique_ids)]
"""The program's promotions (ProgramConfig.promotions): at most MAX_PROMOTIONS, ids unique."""


_RANK: Final = {kind: index for index, kind in enumerate(PromotionKind)}


def in_order(promotions: Sequence[Promotion]) -> list[Promotion]:
    """The order promotions apply in: by kind (PromotionKind's order), then by id."""
    return sorted(promotions, key=lambda p: (_RANK[p.kind], p.promotion_id))
