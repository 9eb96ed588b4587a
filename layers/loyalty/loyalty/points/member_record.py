"""The member item: the one record per member that the ledger keeps up to date and segmentation reads.

It carries who the member is (identity, profile, consent), the balance counters, the write-time aggregates of their
purchases (first and last purchase, the count, the monthly maps keyed "YYYY-MM" in UTC over the last MONTHS_KEPT
months, spend per category), the `revision` of those facts, and the segments last written for them
(docs/data-model.md). This module names every attribute and reads and builds plain items (the dicts a store reads,
a stream image decodes to, or a seeding script writes): the DynamoDB store writes the same names through its
update expressions, features_of and the KPIs read them, and no other module spells them.

Pure Python: the domain reads member items too, so nothing here knows DynamoDB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final

from loyalty.core.events import EventType
from loyalty.core.instants import timestamp
from loyalty.points.categories import CATEGORY_MAP, OTHER_CATEGORIES
from loyalty.points.members import Consent, ConsentChannel, Member

MONTHS_KEPT: Final = 24  # the monthly maps cover the current month and the 23 before it (at least)
PRUNE_SPAN: Final = 12  # each purchase removes this many months beyond the window

# ---- attribute names ---------------------------------------------------------------------------------------------

MEMBER_ID: Final = "member_id"
REVISION: Final = "revision"  # +1 on every change to the member's facts; segment writes are pinned to it
ROSTER_ID: Final = "roster_id"  # hash key of the sparse MemberRoster index, carried by member items alone
EVENT_TYPE: Final = "event_type"  # the stream publisher's cue: enrollment announces MemberEnrolled
IDENTITY: Final = ("member_id", "external_id", "birthday", "referral_code", "referred_by", "tier", "enrolled_at")
PROFILE: Final = "profile"
CONSENT: Final = "consent"
COUNTERS: Final = ("available", "pending", "lifetime_earned", "redeemed", "reversed", "expired", "unrecovered")

FIRST_PURCHASE_AT: Final = "first_purchase_at"
# The earliest purchase itself: {"order_id", "at", "amount"} (its spend in the base currency, net of its refunds;
# "refunded": true once refunded in full), so that the repeat purchases can be told apart from it (Gamma-Gamma's
# mean spend: docs/prediction.md). A refund of that order finds it by order id.
FIRST_PURCHASE: Final = "first_purchase"
LAST_PURCHASE_AT: Final = "last_purchase_at"
PURCHASE_COUNT: Final = "purchase_count"
SPEND_BY_MONTH: Final = "spend_by_month"  # net spend, Decimal
PURCHASES_BY_MONTH: Final = "purchases_by_month"  # purchases, int
POINTS_BY_MONTH: Final = "points_by_month"  # points earned (net of reversals), int
MONTHLY_MAPS: Final = (SPEND_BY_MONTH, PURCHASES_BY_MONTH, POINTS_BY_MONTH)
SPEND_BY_CATEGORY: Final = CATEGORY_MAP  # lifetime net spend per kept category (loyalty.points.categories)
SPEND_OTHER_CATEGORIES: Final = OTHER_CATEGORIES  # categorised spend beyond the kept names

TIER: Final = "tier"
TIER_UPGRADED_AT: Final = "tier_upgraded_at"  # when the member last moved up (a review's grace counts from it)
TIER_HISTORY: Final = "tier_history"  # every move on the ladder, oldest first (docs/tiers.md)
TIER_REVIEWED_AT: Final = "tier_reviewed_at"  # the last scheduled review that moved the member
# How much more the member can qualify with before the next threshold, as last computed, and under which program
# version: every earn takes its qualifying units off it under a condition that it stays above 0, so an earn that
# might cross a threshold fails that condition and is written again with the exact standing (docs/tiers.md,
# "One round trip"). Months leaving the window and refunds only ever make the true headroom larger.
TIER_HEADROOM: Final = "tier_headroom"
TIER_BASIS: Final = "tier_basis"
NO_TIER_ABOVE: Final = Decimal(10) ** 30  # the headroom at the top of the ladder
PROMOTION_USAGE: Final = "promotion_usage"  # points each capped promotion gave, by "<promotion id>#<period key>"
# Lots (loyalty.points.lots, docs/expiry.md): credits by the bucket they expire in, and what debits consumed.
LOTS: Final = "lots"
LOTS_CONSUMED: Final = "lots_consumed"
LAST_ACTIVITY_AT: Final = "last_activity_at"  # the member's last earn or redemption
EXPIRY_WARNED_THROUGH: Final = "expiry_warned_through"  # the last bucket PointsExpiringSoon announced

SEGMENTS: Final = "segments"  # the member's segment ids, as last written
SEGMENTS_VERSION: Final = "segments_version"  # +1 on every segment write; absent before the first
SEGMENTS_REVISION: Final = "segments_revision"  # the revision the stored segments were computed from
SEGMENTS_EVALUATED_AT: Final = "segments_evaluated_at"


# ---- months -------------------------------------------------------------------------------------------------------


def month_index(moment: date) -> int:
    """Months since year 0 of the UTC calendar month of a moment (a date is its own month), so that month
    arithmetic is integer arithmetic: 2026-01 minus one is 2025-12. A naive datetime is taken as UTC."""
    if isinstance(moment, datetime) and moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.year * 12 + moment.month - 1


def month_key(month: int | date) -> str:
    """The "YYYY-MM" key the monthly maps use, of a month_index or of a moment's UTC month."""
    index = month if isinstance(month, int) else month_index(month)
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def months_before(moment: date, count: int) -> str:
    """The key of the month `count` months before the moment's UTC month."""
    return month_key(month_index(moment) - count)


def is_kept(month: str, now: datetime) -> bool:
    """True if a month's key is inside the window the monthly maps keep as of `now`."""
    return month > months_before(now, MONTHS_KEPT)


# ---- reading an item ---------------------------------------------------------------------------------------------


def revision_of(item: Mapping[str, Any]) -> int:
    """The revision of the member's facts an item (or a stream image of it) carries; 0 before the first change."""
    return int(item.get(REVISION) or 0)


def stored_segments(item: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(str(segment) for segment in item.get(SEGMENTS) or ())


def segments_version_of(item: Mapping[str, Any]) -> int:
    """The version of the stored segments; 0 before the first segment write."""
    return int(item.get(SEGMENTS_VERSION) or 0)


def is_settled(item: Mapping[str, Any]) -> bool:
    """True if the item's segments were computed from the facts it carries: the last change to it was a segment
    write (a refresh's or a re-evaluation's), not a change of facts (a ledger write bumps `revision`)."""
    settled = item.get(SEGMENTS_REVISION)
    return settled is not None and int(settled) == int(item.get(REVISION, 0))


def member_of(item: Mapping[str, Any]) -> Member:
    """The member (identity, profile, consent, tier and its history, balance, purchase statistics) an item holds."""
    return Member.model_validate(
        {
            **{name: item.get(name) for name in IDENTITY},
            PROFILE: item.get(PROFILE) or {},
            CONSENT: item.get(CONSENT) or {},
            TIER_UPGRADED_AT: item.get(TIER_UPGRADED_AT),
            TIER_HISTORY: item.get(TIER_HISTORY) or [],
            "balance": {name: int(item.get(name, 0)) for name in COUNTERS},
            "purchases": {
                FIRST_PURCHASE_AT: item.get(FIRST_PURCHASE_AT),
                LAST_PURCHASE_AT: item.get(LAST_PURCHASE_AT),
                PURCHASE_COUNT: int(item.get(PURCHASE_COUNT, 0)),
            },
        }
    )


def consent_of(item: Mapping[str, Any]) -> Consent:
    """The member's consents as an item (or a stream image of it) holds them; a channel absent is not granted."""
    held = item.get(CONSENT) or {}
    return Consent(**{channel.value: bool(held.get(channel.value, False)) for channel in ConsentChannel})


@dataclass(frozen=True, slots=True)
class MemberStanding:
    """What pricing and the tier rules read of a member, as one item holds it: the member, the `revision` a write
    made from it is pinned to, the monthly maps, the segments, the headroom before the next threshold and the program
    version it was computed under (None on an item from before tiers moved), and the points each capped promotion
    gave in each period."""

    member: Member
    revision: int
    aggregates: PurchaseAggregates
    segments: frozenset[str]
    headroom: Decimal | None
    basis: int | None
    promotion_usage: Mapping[str, int]
    reviewed_at: datetime | None = None
    lots: Mapping[str, int] | None = None  # None on an item from before lots were kept
    lots_consumed: int = 0
    last_activity_at: datetime | None = None
    warned_through: str | None = None


def standing_of(item: Mapping[str, Any]) -> MemberStanding:
    headroom, basis = item.get(TIER_HEADROOM), item.get(TIER_BASIS)
    return MemberStanding(
        member=member_of(item),
        revision=revision_of(item),
        aggregates=aggregates_of(item),
        segments=stored_segments(item),
        headroom=None if headroom is None else Decimal(headroom),
        basis=None if basis is None else int(basis),
        promotion_usage={str(k): int(v) for k, v in (item.get(PROMOTION_USAGE) or {}).items()},
        reviewed_at=_instant(item[TIER_REVIEWED_AT]) if item.get(TIER_REVIEWED_AT) else None,
        lots=None if item.get(LOTS) is None else {str(k): int(v) for k, v in item[LOTS].items()},
        lots_consumed=int(item.get(LOTS_CONSUMED) or 0),
        last_activity_at=_instant(item[LAST_ACTIVITY_AT]) if item.get(LAST_ACTIVITY_AT) else None,
        warned_through=item.get(EXPIRY_WARNED_THROUGH),
    )


@dataclass(frozen=True, slots=True)
class FirstPurchase:
    """The member's earliest purchase as the item keeps it: its order, when, and its spend in the base currency net
    of its refunds; `refunded` once refunded in full (it then no longer counts in `purchase_count` and the maps,
    while `first_purchase_at` still names its moment)."""

    order_id: str
    at: datetime
    amount: Decimal
    refunded: bool = False


def first_purchase_record(order_id: str, at: datetime, amount: Decimal) -> dict[str, Any]:
    """FIRST_PURCHASE as a purchase writes it (its moment as the item's timestamps are written)."""
    return {"order_id": order_id, "at": timestamp(at), "amount": amount}


def first_purchase_of(item: Mapping[str, Any]) -> FirstPurchase | None:
    """The first purchase the item keeps, if it is the one at `first_purchase_at`; None without a purchase, or on
    an item written before the first purchase was kept (a later purchase then recorded itself, at another moment,
    or nothing)."""
    kept, first = item.get(FIRST_PURCHASE), item.get(FIRST_PURCHASE_AT)
    if not kept or first is None or _instant(kept["at"]) != _instant(first):
        return None
    return FirstPurchase(
        order_id=str(kept["order_id"]),
        at=_instant(kept["at"]),
        amount=Decimal(kept["amount"]),
        refunded=bool(kept.get("refunded", False)),
    )


@dataclass(frozen=True, slots=True)
class PurchaseAggregates:
    """The write-time aggregates of a member's purchases, as an item keeps them: what features_of, the KPIs and
    the predictions read instead of the ledger. Timestamps stay as stored (ISO strings, or datetimes in items
    built by hand); numbers as the store reads them (Decimal or int)."""

    first_purchase_at: Any = None
    last_purchase_at: Any = None
    purchase_count: int = 0
    spend_by_month: Mapping[str, Any] = field(default_factory=dict)
    purchases_by_month: Mapping[str, Any] = field(default_factory=dict)
    points_by_month: Mapping[str, Any] = field(default_factory=dict)
    spend_by_category: Mapping[str, Any] = field(default_factory=dict)
    spend_other_categories: Any = 0
    first_purchase: FirstPurchase | None = None


def aggregates_of(item: Mapping[str, Any]) -> PurchaseAggregates:
    return PurchaseAggregates(
        first_purchase_at=item.get(FIRST_PURCHASE_AT),
        last_purchase_at=item.get(LAST_PURCHASE_AT),
        purchase_count=int(item.get(PURCHASE_COUNT, 0)),
        spend_by_month=item.get(SPEND_BY_MONTH) or {},
        purchases_by_month=item.get(PURCHASES_BY_MONTH) or {},
        points_by_month=item.get(POINTS_BY_MONTH) or {},
        spend_by_category=item.get(SPEND_BY_CATEGORY) or {},
        spend_other_categories=item.get(SPEND_OTHER_CATEGORIES) or 0,
        first_purchase=first_purchase_of(item),
    )


# ---- building an item ----------------------------------------------------------------------------------------------


def new_member_item(
    member: Member, *, headroom: Decimal | int | None = None, basis: int | None = None
) -> dict[str, Any]:
    """The item enrollment writes: the member, zero counters, empty aggregates, revision 1, in the roster, and the
    headroom before the ladder's next threshold under the program version `basis`."""
    values: dict[str, Any] = member.model_dump(exclude={"balance", "purchases", TIER_UPGRADED_AT, TIER_HISTORY})
    if member.tier_upgraded_at is not None:
        values[TIER_UPGRADED_AT] = member.tier_upgraded_at
    values[TIER_HISTORY] = [change.model_dump(mode="json") for change in member.tier_history]
    if headroom is not None and basis is not None:
        values.update({TIER_HEADROOM: headroom, TIER_BASIS: basis})
    values.update({name: 0 for name in COUNTERS})
    values.update({name: {} for name in MONTHLY_MAPS})
    values.update({SPEND_BY_CATEGORY: {}, SPEND_OTHER_CATEGORIES: 0, PURCHASE_COUNT: 0})
    values.update({LOTS: {}, LOTS_CONSUMED: 0})
    values.update({EVENT_TYPE: EventType.MEMBER_ENROLLED, ROSTER_ID: member.member_id, REVISION: 1})
    return values


@dataclass(frozen=True)
class PastPurchase:
    """A purchase already made, for building an item with a history (seeding, tests): what it added (`amount` in
    the base currency)."""

    at: datetime
    amount: Decimal
    points: int
    order_id: str = ""  # "": one made up from the moment


def with_purchases(item: Mapping[str, Any], purchases: Iterable[PastPurchase], now: datetime) -> dict[str, Any]:
    """The item after these purchases (each earning its points), as the ledger's writes would have left it: the
    counters, the count and the first and last purchase (and the first one's record) cover them all; the monthly
    maps only the months kept as of `now`; the revision moves once per purchase. Categories are left as they are."""
    updated = dict(item)
    monthly = {name: dict(item.get(name) or {}) for name in MONTHLY_MAPS}
    first, last = item.get(FIRST_PURCHASE_AT), item.get(LAST_PURCHASE_AT)
    first_record = item.get(FIRST_PURCHASE)
    count = revision = earned = 0
    for purchase in purchases:
        count, earned = count + 1, earned + purchase.points
        month = month_key(purchase.at)
        if is_kept(month, now):
            spend = monthly[SPEND_BY_MONTH]
            spend[month] = spend.get(month, Decimal(0)) + purchase.amount
            monthly[PURCHASES_BY_MONTH][month] = monthly[PURCHASES_BY_MONTH].get(month, 0) + 1
            monthly[POINTS_BY_MONTH][month] = monthly[POINTS_BY_MONTH].get(month, 0) + purchase.points
        if first is None or _instant(purchase.at) < _instant(first):
            first = purchase.at
            order_id = purchase.order_id or f"past-{timestamp(purchase.at)}"
            first_record = first_purchase_record(order_id, purchase.at, purchase.amount)
        last = purchase.at if last is None or _instant(purchase.at) > _instant(last) else last
        revision += 1
    updated.update(monthly)
    updated[FIRST_PURCHASE_AT], updated[LAST_PURCHASE_AT] = first, last
    if first_record is not None:
        updated[FIRST_PURCHASE] = first_record
    updated[PURCHASE_COUNT] = int(item.get(PURCHASE_COUNT, 0)) + count
    updated["lifetime_earned"] = int(item.get("lifetime_earned", 0)) + earned
    updated["available"] = int(item.get("available", 0)) + earned
    updated[REVISION] = revision_of(item) + revision
    return updated


def _instant(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(moment, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
