"""The points ledger: entries, the balance they add up to, and the refund policy. Pure; no AWS.

Invariant kept by every write (one DynamoDB transaction per change, see loyalty.adapters.dynamodb.points_store):
    available == sum(entry.points for entry in ledger) >= 0
    available + pending == lifetime_earned - redeemed - reversed - expired
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loyalty.core.errors import RefundExceedsOrder
from loyalty.core.events import EventType
from loyalty.points.activities import ActivityType
from loyalty.points.categories import refund_share


class EntryKind(StrEnum):
    EARN = "earn"  # a purchase
    BONUS = "bonus"  # referral, review, social share, survey
    REDEEM = "redeem"
    REVERSAL = "reversal"  # a refund or return takes back what its order earned
    ADJUSTMENT = "adjustment"  # an admin's correction, with a reason
    EXPIRY = "expiry"


EVENT_OF_KIND = {
    EntryKind.EARN: EventType.POINTS_EARNED,
    EntryKind.BONUS: EventType.POINTS_EARNED,
    EntryKind.REDEEM: EventType.POINTS_REDEEMED,
    EntryKind.REVERSAL: EventType.POINTS_REVERSED,
    EntryKind.ADJUSTMENT: EventType.POINTS_ADJUSTED,
    EntryKind.EXPIRY: EventType.POINTS_EXPIRED,
}


class EarnLine(BaseModel):
    """One rule's share of an earn's points (loyalty.points.pricing): base, category:<name>, sku:<sku>,
    tier:<name> or promotion:<id>. An earn's lines add up to its points."""

    model_config = ConfigDict(frozen=True)

    rule: str
    points: int


class LedgerEntry(BaseModel):
    """One append-only line of a member's ledger. `points` is signed: credits positive, debits negative."""

    model_config = ConfigDict(frozen=True)

    entry_id: str
    member_id: str
    kind: EntryKind
    points: int
    created_at: datetime
    activity: ActivityType | None = None
    order_id: str | None = None
    refund_id: str | None = None
    reward_id: str | None = None
    voucher_code: str | None = None
    reference: str | None = None
    reason: str | None = None
    unrecovered: int = Field(default=0, ge=0, description="Points a reversal was due but could not take back.")
    program_version: int | None = Field(
        default=None,
        ge=1,
        description="The version of the program document that priced the entry (earns, bonuses, adjustments).",
    )
    breakdown: list[EarnLine] | None = Field(default=None, description="A purchase's points, rule by rule.")
    lot: str | None = Field(
        default=None,
        description="A credit's lot: the last day its points can be spent (YYYY-MM-DD), last-activity, or never.",
    )

    def counters(self) -> dict[str, int]:
        """How this entry moves the member's balance counters."""
        p = self.points
        if self.kind in (EntryKind.EARN, EntryKind.BONUS) or (self.kind is EntryKind.ADJUSTMENT and p > 0):
            return {"available": p, "lifetime_earned": p}
        if self.kind is EntryKind.REDEEM:
            return {"available": p, "redeemed": -p}
        if self.kind is EntryKind.EXPIRY:
            return {"available": p, "expired": -p}
        counters = {"available": p, "reversed": -p}  # reversals and negative adjustments
        if self.unrecovered:
            counters["unrecovered"] = self.unrecovered
        return counters

    def consumes(self) -> int:
        """Points this entry consumes from the member's lots (docs/expiry.md): a redemption, a negative adjustment,
        an expiry. A reversal takes back from its order's lot instead (the store's refund write)."""
        spends = self.kind in (EntryKind.REDEEM, EntryKind.EXPIRY) or (self.kind is EntryKind.ADJUSTMENT)
        return -self.points if spends and self.points < 0 else 0

    def credits_lot(self) -> bool:
        """True for a credit booked into a lot (`lot`)."""
        return self.lot is not None and self.points > 0 and self.kind is not EntryKind.REVERSAL

    def is_activity(self) -> bool:
        """An earn, a bonus or a redemption: what moves a member's last activity (an expiry policy may count from
        it)."""
        return self.kind in (EntryKind.EARN, EntryKind.BONUS, EntryKind.REDEEM)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


class Balance(BaseModel):
    available: int = 0
    pending: int = 0
    lifetime_earned: int = 0
    redeemed: int = 0
    reversed: int = 0
    expired: int = 0
    unrecovered: int = Field(default=0, description="Reversals the balance could not cover (points already spent).")


class OrderRecord(BaseModel):
    """A purchase as the ledger remembers it, so that refunds reverse exactly what it earned."""

    order_id: str
    member_id: str
    amount: Decimal
    currency: str
    points: int
    occurred_at: datetime
    refunded_amount: Decimal = Decimal(0)
    reversal_due: int = 0  # points the refunds so far were due to take back (recovered or not)
    # The amount in the program's base currency at the rate when it was written: what the member's spend aggregates
    # got. None on an order recorded before spend was converted (its amount was added as given).
    base_amount: Decimal | None = None
    base_currency: str | None = None
    # What the order added to the member's category spend (loyalty.points.categories), in the base currency, so a
    # refund takes back its share.
    category_totals: dict[str, Decimal] = Field(default_factory=dict)
    other_categories_total: Decimal = Decimal(0)
    lot: str | None = None  # the lot its points went to: a refund takes them back from it (docs/expiry.md)

    @property
    def spend(self) -> Decimal:
        """What the order added to the member's spend: its base-currency amount (its amount, on an older order)."""
        return self.amount if self.base_amount is None else self.base_amount

    def refunded_in_full_by(self, amount: Decimal) -> bool:
        """True if a refund of `amount` brings what is refunded to the order's amount: it no longer counts as a
        purchase."""
        return self.refunded_amount + amount == self.amount

    def spend_refunded_by(self, amount: Decimal) -> Decimal:
        """The share of the order's spend (base currency) a refund of `amount` (order currency) takes back, on the
        running total as the points and the categories are (loyalty.points.categories.refund_share): the shares of
        an order's refunds add up to its spend exactly once it is refunded in full, however they were split."""
        return refund_share(self.spend, self.amount, self.refunded_amount, amount)


class RefundPlan(BaseModel):
    due: int  # points this refund should take back
    reverse: int  # points actually taken back now (never more than available)
    unrecovered: int  # due - reverse: already spent, written off and counted on the member


def plan_refund(order: OrderRecord, amount: Decimal, available: int) -> RefundPlan:
    """The refund policy.

    A refund takes back the points its share of the order earned, computed on the running total so that the
    refunds of an order, however split, take back exactly the points it earned, never one more:
        due = floor(points x refunded_total / order_amount) - due_so_far
    Points already spent are not clawed into a negative balance: the ledger takes back what is available and
    records the rest as `unrecovered` on the entry and on the member, for review.
    """
    remaining = order.amount - order.refunded_amount
    if amount > remaining:
        raise RefundExceedsOrder(
            f"refund of {amount} exceeds what is left to refund on order {order.order_id} ({remaining})",
            field="amount",
            details={"refundable": {"amount": format(remaining.normalize(), "f"), "currency": order.currency}},
        )
    refunded_total = order.refunded_amount + amount
    target = int((Decimal(order.points) * refunded_total / order.amount).to_integral_value(rounding=ROUND_FLOOR))
    due = max(0, target - order.reversal_due)
    reverse = min(due, max(available, 0))
    return RefundPlan(due=due, reverse=reverse, unrecovered=due - reverse)
