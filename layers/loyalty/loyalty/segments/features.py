"""What segmentation knows about a member: figures computed from ONE member item, never the ledger.

The member item carries write-time aggregates (docs/data-model.md): `first_purchase_at`, `last_purchase_at`,
`purchase_count`, the monthly maps `spend_by_month`, `purchases_by_month`, `points_by_month` keyed `YYYY-MM`
(UTC), and lifetime net spend per category (`spend_by_category`, `spend_other_categories`). Every window here is a
run of whole calendar months ending with the as-of month, and every day count is a difference of UTC calendar
dates, so all members scored in one refresh share one clock. The definitions marketers
may rely on are in docs/segments.md ("documented member fields"); `RULE_FIELDS` (loyalty.segments.rules) is built
from this model, so a field added here is a field the rule language accepts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Context, Decimal
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from loyalty.points import member_record as record
from loyalty.points.member_record import month_index, month_key

if TYPE_CHECKING:
    from loyalty.segments.config import SegmentationConfig

_ZERO = Decimal(0)
_SHARES = Context(prec=28, rounding=ROUND_HALF_EVEN)  # a share is a ratio of exact sums, to 28 significant digits
_Number = TypeVar("_Number", int, Decimal)


class ConsentFlags(BaseModel):
    """Per-channel marketing consent as the member gave it; absent means no."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: bool = False
    sms: bool = False
    push: bool = False
    whatsapp: bool = False
    profiling: bool = False


class CategorySpend(BaseModel):
    """A member's lifetime net spend per category, as the member item keeps it: the names it keeps (at most
    loyalty.points.categories.MAX_CATEGORIES) and the categorised spend beyond them (`other`). Read by the rule fields
    `category_spend.<category>`, `category_share.<category>` and `top_category` (docs/segments.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by_category: dict[str, Decimal] = Field(default_factory=dict)
    other: Decimal = _ZERO

    @cached_property
    def total(self) -> Decimal:
        """Categorised net spend: every kept category and the rest. Uncategorised lines are in none of it."""
        return sum(self.by_category.values(), _ZERO) + self.other

    def spend_in(self, category: str) -> Decimal | None:
        """Net spend in a category; 0 if the member never bought in it; None (unknown) if the member's map is
        full and the category is not kept by name while some spend beyond the kept names remains."""
        spend = self.by_category.get(category)
        if spend is not None:
            return spend
        return _ZERO if self.other <= 0 else None

    def share_of(self, category: str) -> Decimal | None:
        """spend_in(category) / total, 0 to 1; None when the spend is unknown or there is no categorised spend."""
        spend = self.spend_in(category)
        if spend is None or self.total <= 0:
            return None
        return _SHARES.divide(spend, self.total)

    def top(self) -> str | None:
        """The kept category with the most net spend, equal spend going to the first name in code point order;
        None if no category has positive spend, or if the spend beyond the kept names is at least the top's (one
        of those categories could then be the top)."""
        best = min(self.by_category, key=lambda name: (-self.by_category[name], name), default=None)
        if best is None or self.by_category[best] <= 0 or self.other >= self.by_category[best]:
            return None
        return best


_NO_CATEGORIES = CategorySpend()


class MemberFeatures(BaseModel):
    """One member's segmentation inputs as of a moment. Windows include the as-of month (see docs/segments.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str = Field(description="Identity only; not a rule field.")
    recency_days: int | None = Field(ge=0, description="UTC days from the last purchase to as-of; None if never.")
    frequency: int = Field(ge=0, description="Purchases in the RFM window (rfm_window_months).")
    monetary: Decimal = Field(description="Net spend in the RFM window.")
    purchases_6m: int = Field(ge=0)
    purchases_12m: int = Field(ge=0)
    spend_6m: Decimal
    spend_12m: Decimal
    points_6m: int
    points_12m: int
    active_months_6m: int = Field(ge=0, le=6, description="Months with at least one purchase among the last 6.")
    purchase_count: int = Field(ge=0, description="Lifetime purchases.")
    days_since_enrolled: int = Field(ge=0)
    days_since_first_purchase: int | None = Field(ge=0)
    tier: str
    country: str | None
    age: int | None = Field(ge=0)
    consent: ConsentFlags
    available_points: int
    lifetime_points: int
    top_category: str | None = Field(default=None, description="CategorySpend.top(): the most-bought category.")
    categories: CategorySpend = Field(
        default=_NO_CATEGORIES, description="Lifetime net spend per category; read by the category rule fields."
    )

    @property
    def has_purchased(self) -> bool:
        return self.recency_days is not None


@lru_cache(maxsize=64)
def _months_back(current: int, span: int) -> dict[str, int]:
    """ "YYYY-MM" -> months before the current month, for the `span` months ending with it. Looking keys up here
    costs a dict probe; parsing every key of every item was most of the time features_of took."""
    return {month_key(index): current - index for index in range(current - span + 1, current + 1)}


_MONTH_KEY = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])")


def _outside(key: str) -> None:
    """A key outside every window must still be a month (older, or later than as-of); anything else is corrupt."""
    if not _MONTH_KEY.fullmatch(key):
        raise ValueError(f"monthly aggregate key {key!r} is not YYYY-MM")


def _instant(value: Any, name: str) -> datetime:
    """A stored timestamp (fixed-width UTC string, or a datetime in hand-built items) as an aware UTC datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} is not a timestamp: {value!r}")
    if moment.tzinfo is None:  # the store writes UTC only
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _day(value: Any, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value)
    raise ValueError(f"{name} is not a date: {value!r}")


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(str(value))
    return Decimal(value)


def _age(birthday: date, today: date) -> int:
    """Whole years lived; someone born on 29 February turns a year older on 1 March in common years."""
    return today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))


def _trailing_totals(
    monthly: Mapping[str, Any] | None,
    months: Mapping[str, int],
    spans: tuple[int, ...],
    convert: Callable[[Any], _Number],
    zero: _Number,
) -> tuple[list[_Number], list[int]]:
    """Sum a "YYYY-MM" map over each trailing span of months (the current month is 0 back), and count the months
    in each span with a positive value. Months outside the longest window are passed to `_outside`."""
    totals = [zero] * len(spans)
    active = [0] * len(spans)
    for key, raw in (monthly or {}).items():
        back = months.get(key)
        if back is None:
            _outside(key)
            continue
        value = convert(raw)
        for index, span in enumerate(spans):
            if back < span:
                totals[index] += value
                if value > 0:
                    active[index] += 1
    return totals, active


def window_totals(
    monthly: Mapping[str, Any] | None, current: int, spans: tuple[int, ...]
) -> tuple[list[Decimal], list[int]]:
    """A monthly map summed as exact decimals over trailing spans of months ending with the month `current` (a
    `month_index`, included), and the months in each span with a positive value: the same reading of the maps as
    features_of, for the other modules that read them (the KPIs)."""
    return _trailing_totals(monthly, _months_back(current, max(spans)), spans, _decimal, _ZERO)


def features_of(member_item: Mapping[str, Any], as_of: datetime, config: SegmentationConfig) -> MemberFeatures:
    """Segmentation features of one member item (as the store reads it: Decimal numbers, ISO timestamp strings).

    Months after the as-of month (a clock ahead of ours) and months before a window are ignored; a purchase dated
    after as-of counts as 0 days ago.
    """
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (segments are computed in UTC)")
    now = as_of.astimezone(UTC)
    today = now.date()
    current = month_index(now)
    window = config.rfm_window_months
    months = _months_back(current, max(12, window))

    bought = record.aggregates_of(member_item)
    spends, _ = _trailing_totals(bought.spend_by_month, months, (6, 12, window), _decimal, _ZERO)
    spend_6m, spend_12m, monetary = spends
    purchases, active = _trailing_totals(bought.purchases_by_month, months, (6, 12, window), int, 0)
    purchases_6m, purchases_12m, frequency = purchases
    active_months_6m = active[0]
    (points_6m, points_12m), _ = _trailing_totals(bought.points_by_month, months, (6, 12), int, 0)

    last, first = bought.last_purchase_at, bought.first_purchase_at
    recency_days = None if last is None else max(0, (today - _instant(last, record.LAST_PURCHASE_AT).date()).days)
    since_first = None if first is None else max(0, (today - _instant(first, record.FIRST_PURCHASE_AT).date()).days)
    if "enrolled_at" not in member_item:
        raise ValueError("member item has no enrolled_at")
    since_enrolled = max(0, (today - _instant(member_item["enrolled_at"], "enrolled_at").date()).days)
    birthday = member_item.get("birthday")
    profile = member_item.get(record.PROFILE) or {}
    categories = _category_spend(bought)
    consent = member_item.get(record.CONSENT) or {}

    return MemberFeatures(
        member_id=str(member_item.get(record.MEMBER_ID, "")),
        recency_days=recency_days,
        frequency=frequency,
        monetary=monetary,
        purchases_6m=purchases_6m,
        purchases_12m=purchases_12m,
        spend_6m=spend_6m,
        spend_12m=spend_12m,
        points_6m=points_6m,
        points_12m=points_12m,
        active_months_6m=active_months_6m,
        purchase_count=bought.purchase_count,
        days_since_enrolled=since_enrolled,
        days_since_first_purchase=since_first,
        tier=str(member_item.get("tier", "")),
        country=profile.get("country"),
        age=None if birthday is None else max(0, _age(_day(birthday, "birthday"), today)),
        consent=ConsentFlags(**{flag: bool(consent.get(flag, False)) for flag in ConsentFlags.model_fields}),
        available_points=int(member_item.get("available", 0)),
        lifetime_points=int(member_item.get("lifetime_earned", 0)),
        top_category=categories.top(),
        categories=categories,
    )


def _category_spend(bought: record.PurchaseAggregates) -> CategorySpend:
    spend, other = bought.spend_by_category, bought.spend_other_categories
    if not spend and not other:
        return _NO_CATEGORIES
    by_category = {str(name): _decimal(value) for name, value in spend.items()}
    return CategorySpend.model_construct(by_category=by_category, other=_decimal(other))
