"""What the points service needs from its store, as a port (PointsStore), and the types that cross it.

The service decides (what a purchase earns, what a refund takes back, which answer a request gets); the store
persists what it is handed, all or nothing, under conditions that keep the ledger true, and says which condition
failed. Adapters: loyalty.adapters.dynamodb.points_store (the table), loyalty.adapters.memory.points_store (an
in-memory fake for tests). tests/integration/test_points_store_contract.py holds both to the same behaviour.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from loyalty.core.errors import (
    ConfigVersionConflict,
    InsufficientPoints,
    LimitReached,
    OrderConflict,
    OutOfStock,
    RewardNotFound,
    StockConflict,
    TierTooLow,
)
from loyalty.core.events import EventType
from loyalty.core.idempotency import Claim, Replay
from loyalty.core.instants import timestamp
from loyalty.points.categories import OrderCategories
from loyalty.points.ledger import LedgerEntry, OrderRecord
from loyalty.points.member_record import MemberStanding, first_purchase_record
from loyalty.points.members import ConsentChange, Member, ProfileChanges, TierMove
from loyalty.points.program import ProgramConfig, ProgramVersion
from loyalty.points.rewards import MAX_STOCK, LimitPeriod, Reward


class ReferralCodeTaken(Exception):
    """Enrolment: another member holds the referral code drawn for this one. Nothing was written; draw another."""


class ExternalIdTaken(Exception):
    """Enrolment: a member with this external id exists already. Nothing was written."""


class RefundBasisMoved(Exception):
    """A refund's write found the order or the member no longer as the plan read them (another refund, a
    redemption, ...). Nothing was written; plan again from fresh reads."""


class ProgramVersionMoved(Exception):
    """A program replace found the stored version no longer the one it replaces (another replace got there first),
    or its version already kept. Nothing was written; the service answers 409 with the version now in force."""


class RewardChanged(Exception):
    """A redemption's write found the reward no longer on the terms it was planned from: replaced (another version),
    retired, gone, or its stock made limited or unlimited. Nothing was written; `current` is the reward as stored
    (None if it is not there), for the service to plan again from."""

    def __init__(self, current: Reward | None):
        super().__init__(current.reward_id if current is not None else "no such reward")
        self.current = current


def insufficient_points(needed: int, available: int) -> InsufficientPoints:
    """The refusal of a debit the balance does not cover, with what the member had: remembered as the answer."""
    return InsufficientPoints(
        f"{needed} points needed, {available} available", details={"available": available, "needed": needed}
    )


def order_conflict(order_id: str) -> OrderConflict:
    """The refusal of an order id already recorded with another member, amount, currency or line items."""
    return OrderConflict(
        f"order {order_id} is already recorded with a different member, amount, currency or line items",
        field="order_id",
    )


class StandingMoved(Exception):
    """An earn's tier guard failed: the member may cross a threshold with it, the program changed since the
    headroom was computed, or (a pinned write) the member changed since it was read. Nothing was written; the
    service works out the standing from `standing` (as the failed write found it) and writes again, pinned."""

    def __init__(self, standing: MemberStanding):
        super().__init__(standing.member.member_id)
        self.standing = standing


class BudgetSpent(Exception):
    """A promotion's budget no longer covers what the pricing gave it. Nothing was written; `given` is what the
    promotion has given so far, as the failed write found it. The service prices again with what is left."""

    def __init__(self, promotion_id: str, given: int):
        super().__init__(promotion_id)
        self.promotion_id = promotion_id
        self.given = given


@dataclass(frozen=True)
class HeadroomGuard:
    """The one-round-trip earn's tier guard: the member item's headroom was computed under program `basis`, and
    stays above 0 once `uses` (the entry's qualifying units) is taken off it, which the write does. A member
    without the attribute (enrolled before tiers moved) fails it, as one who may cross a threshold does."""

    basis: int
    uses: Decimal


@dataclass(frozen=True)
class PinnedStanding:
    """An earn written from a standing read (a StandingMoved, or a member-priced earn): the member item is still at
    `revision`; the write sets the new headroom under program `basis`, and, with `move`, the new tier, its history
    and (up) when it was reached, and records the move as a TierChanged event. `usage` adds each capped promotion's
    points to the member's counter for its period ("<promotion id>#<period key>")."""

    revision: int
    basis: int
    headroom: Decimal
    move: TierMove | None = None
    usage: Mapping[str, int] = field(default_factory=dict)


def tier_event(member_id: str, entry_id: str, move: TierMove) -> dict[str, Any]:
    """The record of a move on the ladder, as both stores keep it (the table's TIER#<entry id> item): a TierChanged
    domain event (loyalty.core.events), its id the earn's entry id and "-tier"."""
    return {
        "event_type": EventType.TIER_CHANGED,
        "event_id": f"{entry_id}-tier",
        "member_id": member_id,
        "occurred_at": timestamp(move.at),
        "entry_id": entry_id,
        **move.model_dump(mode="json", exclude={"at"}),
    }


def review_event(member_id: str, review_at: datetime, move: TierMove) -> dict[str, Any]:
    """The record of a move a review made (the table's TIER#review-<instant> item): a TierChanged domain event, its
    id naming the member and the review, so a review run twice records it once."""
    record_id = f"review-{timestamp(review_at)}"
    return {**tier_event(member_id, record_id, move), "event_id": f"{member_id}-{record_id}", "entry_id": None}


def expiring_event(member_id: str, expires_on: str, points: int, at: datetime) -> dict[str, Any]:
    """The record of points about to expire (the table's EXPIRING#<expires_on> item): a PointsExpiringSoon domain
    event, once per member and lot."""
    return {
        "event_type": EventType.POINTS_EXPIRING_SOON,
        "event_id": f"{member_id}-expiring-{expires_on}",
        "member_id": member_id,
        "occurred_at": timestamp(at),
        "expires_on": expires_on,
        "points": points,
    }


@dataclass(frozen=True)
class TierReviewed:
    """A move a scheduled review decided for a member as read at `revision` (the store writes it on condition that
    the member is still there, and was not reviewed at `review_at` or later): the move, the headroom after it under
    program `basis`, and the review's instant, kept on the member as `tier_reviewed_at`."""

    member_id: str
    revision: int
    review_at: datetime
    move: TierMove
    headroom: Decimal
    basis: int


@dataclass(frozen=True)
class BudgetUse:
    """Points a promotion with a budget gives: the write adds them to its total on condition that the total stays
    within `budget`."""

    promotion_id: str
    points: int
    budget: int


@dataclass(frozen=True)
class EarnGuards:
    """What an earn's write must hold besides the ledger's own conditions (either `headroom` or `pinned`)."""

    headroom: HeadroomGuard | None = None
    pinned: PinnedStanding | None = None
    budgets: tuple[BudgetUse, ...] = ()
    revision: int | None = None  # an expiry: the member's revision it was computed from (docs/expiry.md)


def out_of_stock(reward_id: str) -> OutOfStock:
    return OutOfStock(f"reward {reward_id} is out of stock", field="reward_id")


def tier_too_low(tier: str | None, min_tier: str | None) -> TierTooLow:
    return TierTooLow(
        f"reward needs tier {min_tier} or above; the member is {tier}",
        field="reward_id",
        details={"tier": tier, "min_tier": min_tier},
    )


def limit_reached(limit: MemberLimit, redeemed: int) -> LimitReached:
    return LimitReached(
        f"redeemed {redeemed} times already; at most {limit.limit} per member ({limit.period.value}: {limit.key})",
        field="reward_id",
        details={"limit": limit.limit, "period": limit.period.value, "redeemed": redeemed},
    )


def reward_not_found(reward_id: str) -> RewardNotFound:
    return RewardNotFound(f"reward {reward_id} not found", field="reward_id")


def reward_version_conflict(reward_id: str, version: int, expected: int | None) -> ConfigVersionConflict:
    """A change made from a version that is no longer the stored one (`expected` None: a create of an id taken)."""
    if expected is None:
        message = f"reward {reward_id} exists already (version {version}): replace it with If-Match: {version}"
    else:
        message = f"reward {reward_id} is at version {version}, not {expected}; read it again"
    return ConfigVersionConflict(message, details={"version": version})


def stock_conflict(reward_id: str, stock: int | None, add: int) -> StockConflict:
    if stock is None:
        message = f"reward {reward_id} has unlimited stock: set a number before adding to it"
    elif stock + add < 0:
        message = f"reward {reward_id} holds {stock}: taking {-add} would leave less than 0"
    else:
        message = f"reward {reward_id} holds {stock}: adding {add} would pass the most a stock holds ({MAX_STOCK})"
    return StockConflict(message, field="add", details={"stock": stock})


def holds_terms(stored: Reward, planned: Reward) -> bool:
    """Whether the stored reward is still the one a redemption was planned from: what the write pins."""
    return (
        stored.active
        and (stored.version, stored.cost_points) == (planned.version, planned.cost_points)
        and (stored.stock is None) == (planned.stock is None)
    )


@dataclass(frozen=True)
class PurchaseFacts:
    """What a purchase adds to the member's write-time aggregates: its spend and its categories in the program's
    base currency (the order's `spend`), and, if it is the member's earliest purchase, itself as the first purchase
    (`order_id`, `occurred_at`, `amount`: member_record.FIRST_PURCHASE)."""

    occurred_at: datetime
    amount: Decimal
    categories: OrderCategories = field(default_factory=OrderCategories)
    order_id: str = ""

    @classmethod
    def of(cls, order: OrderRecord) -> PurchaseFacts:
        categories = OrderCategories(dict(order.category_totals), order.other_categories_total)
        return cls(order.occurred_at, order.spend, categories, order.order_id)

    def first_purchase(self) -> dict[str, Any]:
        """The member item's record of its first purchase, as this purchase would be it."""
        return first_purchase_record(self.order_id, self.occurred_at, self.amount)


@dataclass(frozen=True)
class MemberHoldings:
    """What a member holds that a refund can take back, as read: the points available and the category spend
    (`spend_by_category` None on a member enrolled before category affinity was kept)."""

    member_id: str
    available: int
    spend_by_category: Mapping[str, Decimal] | None
    spend_other_categories: Decimal
    first_order_id: str | None = None  # the order the member item keeps as the first purchase (FIRST_PURCHASE)


@dataclass(frozen=True)
class Reversal:
    """A refund as the service planned it, with what it was planned from, for the store to write in one go.

    The store adds `amount` and `due` to the order's refund totals on condition that they are still those of
    `order` (as read); debits the member's `entry.points` on condition that the balance covers them; takes `taken`
    from the member's category spend on condition that nothing goes below 0; takes `spend` (the refunded spend, in
    the base currency) and the due points out of the order's month in the write-time aggregates; with
    `cancels_purchase` (the refund completes the order's refunds), takes the purchase itself out of
    `purchase_count` and of its month's purchases; with `first_purchase`, takes `spend` off the member's first
    purchase on condition that the item still keeps this order as it (and marks it refunded with
    `cancels_purchase`); appends `entry`; and writes `claim`. A failed condition on the order or the member is
    RefundBasisMoved."""

    entry: LedgerEntry
    claim: Claim
    order: OrderRecord
    amount: Decimal
    due: int
    taken: OrderCategories
    spend: Decimal | None = None  # None: `amount` (an order in the base currency)
    cancels_purchase: bool = False
    first_purchase: bool = False

    @property
    def spend_taken(self) -> Decimal:
        return self.amount if self.spend is None else self.spend


@dataclass(frozen=True)
class MemberLimit:
    """A member's counter of redemptions of one reward in one period, and the most it may reach."""

    key: str  # loyalty.points.rewards.limit_key: "lifetime", "2026", "2026-06"
    limit: int
    period: LimitPeriod
    expires_at: datetime | None = None  # the period is over then, and the counter never read again


@dataclass(frozen=True)
class Redemption:
    """A redemption as the service planned it, for the store to write in one go (docs/rewards.md):

    the debit `entry` (points -cost, the reward's id, its voucher code if any) on condition that the balance covers
    it and that the member's tier is one of `tiers` (None: any tier); `claim`, the answer; the `reward` the plan was
    made from, pinned (holds_terms: active, this version and cost), its stock decremented under stock >= 1, or if it
    had none, still none; and, with a `limit`, the member's counter for it incremented under counter < limit.

    Raises, nothing written: MemberNotFound; RewardChanged (the pin failed); OutOfStock; TierTooLow; LimitReached;
    InsufficientPoints, in that order when several hold; IdempotencyKeyReused; StoreContention."""

    entry: LedgerEntry
    claim: Claim
    reward: Reward
    tiers: tuple[str, ...] | None = None
    limit: MemberLimit | None = None


@dataclass(frozen=True)
class StockDelta:
    """Add `add` (negative: take) to a reward's stock, which must exist and stay inside 0..MAX_STOCK."""

    add: int


@dataclass(frozen=True)
class StockLevel:
    """Set a reward's stock to `stock` (None: unlimited)."""

    stock: int | None


StockChange = StockDelta | StockLevel


class PointsStore(Protocol):
    """The points service's store. Every write is one atomic change guarded by conditions (docs/ledger.md)."""

    # ---- members ----

    def create_member(
        self,
        member: Member,
        *,
        headroom: Decimal | None = None,
        basis: int | None = None,
        consents: Sequence[ConsentChange] = (),
    ) -> None:
        """Enroll `member` (counters at 0, aggregates empty, `headroom` before the next threshold under program
        `basis`; without them the first earn works the standing out), with `consents` (the consents given when
        enrolling) as the start of their consent history. Raises ExternalIdTaken or ReferralCodeTaken."""
        ...

    def member_id_for_external(self, external_id: str) -> str | None: ...

    def member_id_for_referral(self, code: str) -> str | None: ...

    def get_member(self, member_id: str) -> Member:
        """Raises MemberNotFound."""
        ...

    def standing(self, member_id: str) -> MemberStanding:
        """The member as pricing and the tier rules read them (one consistent read). Raises MemberNotFound."""
        ...

    def budgets_given(self, promotion_ids: Iterable[str]) -> dict[str, int]:
        """The points each promotion has given so far (0 for one that has given none)."""
        ...

    def roster_page(
        self, worker: int, workers: int, cursor: str | None, limit: int
    ) -> tuple[list[MemberStanding], str | None]:
        """One page of share `worker` of `workers` of every member (a parallel scan of the MemberRoster index: a
        scheduled job's read, never a request's), and the cursor to go on from (None: the share is done). Raises
        InvalidRequest (field `cursor`) for a cursor this store did not make."""
        ...

    def warn_expiring(self, member_id: str, lots: Mapping[str, int], warned_through: str | None, at: datetime) -> bool:
        """Record PointsExpiringSoon for each lot (expires_on -> points left) and move the member's
        `expiry_warned_through` to the last of them, on condition that it is still `warned_through` (as read).
        False (nothing written) if another run got there first. Raises MemberNotFound."""
        ...

    def review_tier(self, reviewed: TierReviewed) -> bool:
        """Write a review's move: the tier, its history, the headroom, `tier_reviewed_at`, +1 revision, and the
        TierChanged record (review_event). False (nothing written) if the member moved since `revision` or was
        reviewed at `review_at` or later already. Raises MemberNotFound."""
        ...

    def ledger_page(self, member_id: str, limit: int, cursor: str | None) -> tuple[list[LedgerEntry], str | None]:
        """Newest first; the cursor is opaque and reads only ever inside this member's ledger. Raises
        InvalidRequest (field `cursor`) for a cursor this store did not make."""
        ...

    # ---- profile and consent (docs/members.md) ----

    def update_profile(self, member_id: str, changes: ProfileChanges, claim: Claim | None = None) -> Replay | None:
        """Set and remove the profile's fields as `changes` says, moving the member's `revision` when anything
        changes, with `claim` if any: one conditional write (the member exists), never a read before it. None when
        written; the first answer when the claim's key was taken by the same request (nothing written).

        Raises MemberNotFound, IdempotencyKeyReused (the key taken by another request)."""
        ...

    def set_consent(self, member_id: str, change: ConsentChange) -> bool:
        """Set the member's consent on `change.channel` to `change.granted`, move their `revision` and keep `change`
        in their consent history, in one conditional write, if the consent is not so already. True when written;
        False when it already was (nothing written, nothing recorded). Raises MemberNotFound."""
        ...

    def consent_history(self, member_id: str, limit: int, cursor: str | None) -> tuple[list[ConsentChange], str | None]:
        """The member's consent changes, newest first; the cursor is opaque and reads only inside this member's
        history. Raises InvalidRequest (field `cursor`) for a cursor this store did not make."""
        ...

    # ---- ledger writes ----

    def post(
        self,
        entry: LedgerEntry,
        claim: Claim,
        order: OrderRecord | None = None,
        guards: EarnGuards | None = None,
    ) -> Replay | None:
        """Apply one entry with its claim (for a purchase, `order`, remembered under the order id, is the claim) and,
        for an earn, its `guards` (tier headroom or a pinned standing, promotion budgets). None when applied; the
        first answer when the claim's key was taken by the same request (a replay is answered before any guard).

        Raises StandingMoved or BudgetSpent (a guard failed), MemberNotFound, InsufficientPoints (a debit the
        balance does not cover), OrderConflict (the order id recorded with another fingerprint),
        IdempotencyKeyReused (the key taken by another request), StoreContention (concurrent changes past the retry
        budget)."""
        ...

    def remember(self, claim: Claim, now: datetime) -> Replay | None:
        """Keep a refusal's answer under its key. None when kept; the first answer when the key was taken.
        Raises IdempotencyKeyReused."""
        ...

    def replay(self, claim: Claim) -> Replay | None:
        """The first answer under `claim`'s key, or None if it is not taken. Raises IdempotencyKeyReused."""
        ...

    def get_order(self, order_id: str) -> OrderRecord | None: ...

    def holdings(self, member_id: str) -> MemberHoldings:
        """Raises MemberNotFound."""
        ...

    def reverse(self, reversal: Reversal) -> Replay | None:
        """Write a planned refund (see Reversal). None when written; the first answer when its claim was taken.
        Raises RefundBasisMoved, IdempotencyKeyReused, StoreContention."""
        ...

    def redeem(self, redemption: Redemption) -> Replay | None:
        """Write a planned redemption (see Redemption) in one transaction. None when written; the first answer when
        its claim was taken by the same request."""
        ...

    # ---- configuration ----

    def get_program(self) -> ProgramConfig | None:
        """The program document in force; None when none was ever stored (the built-in defaults are)."""
        ...

    def put_program(
        self,
        program: ProgramConfig,
        *,
        replaces: int | None,
        replaced_at: datetime | None = None,
        replaced_by: str | None = None,
        claim: Claim | None = None,
    ) -> Replay | None:
        """Put `program` in force over version `replaces` (None: over nothing stored), keep it as its own history
        item (with when and by whom), and write `claim` (an idempotent replace): all or nothing. `program.version`
        is the next version, above `replaces`. None when written; the first answer when the claim's key was taken
        by the same request (checked before the version).

        Raises ProgramVersionMoved (the stored version is not `replaces`, or this version is already kept),
        IdempotencyKeyReused (the key taken by another request)."""
        ...

    def program_versions(self, limit: int, cursor: str | None) -> tuple[list[ProgramVersion], str | None]:
        """Every version kept, newest first. The cursor is opaque; InvalidRequest (field `cursor`) for one this
        store did not make."""
        ...

    def program_version(self, version: int) -> ProgramVersion | None: ...

    # ---- the catalog ----

    def list_rewards(self) -> list[Reward]:
        """Every reward, retired ones too (the service's cached catalog)."""
        ...

    def get_reward(self, reward_id: str) -> Reward | None:
        """The reward as stored now (a consistent read)."""
        ...

    def rewards_page(self, limit: int, cursor: str | None) -> tuple[list[Reward], str | None]:
        """Rewards by id, retired ones too. Raises InvalidRequest (field `cursor`) for a cursor this store did not
        make."""
        ...

    def put_reward(self, reward: Reward) -> None:
        """Store the reward as it is, whatever was there (seeding)."""
        ...

    def create_reward(self, reward: Reward) -> None:
        """Store a new reward. Raises ConfigVersionConflict (with the stored version) if the id is taken."""
        ...

    def replace_reward(self, reward: Reward, replaces: int) -> Reward:
        """Replace the reward's terms and version if the stored version is `replaces` (a reward stored without one
        is at 1); the stored stock stays. Returns the reward as stored. Raises RewardNotFound, ConfigVersionConflict."""
        ...

    def retire_reward(self, reward_id: str) -> Reward:
        """active false and the version one up; kept for the ledger. Returns the reward. Raises RewardNotFound."""
        ...

    def change_stock(self, reward_id: str, change: StockChange) -> Reward:
        """Apply the change atomically (no read first). Returns the reward. Raises RewardNotFound, StockConflict."""
        ...
