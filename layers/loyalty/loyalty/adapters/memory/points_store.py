"""An in-memory points store (loyalty.points.ports.PointsStore), for the service's tests: same conditions, same
answers, same counters and write-time aggregates as the DynamoDB store, in microseconds and without an emulator.

One lock makes every method atomic, as one DynamoDB transaction is, so concurrent callers see the same outcomes
(a debit the balance no longer covers, a refund whose order moved, a reward's last unit of stock). It reuses the domain's rules (entry counters,
category placement), the member item's codec (the months the aggregates keep: loyalty.points.member_record) and
the cursor's form, so the two cannot disagree; tests/integration/test_points_store_contract.py runs the same
behaviours against both.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from loyalty.adapters.dynamodb.table import decode_cursor, encode_cursor
from loyalty.core.errors import InvalidRequest, LoyaltyError, MemberNotFound
from loyalty.core.idempotency import Claim, Replay, key_reused
from loyalty.core.instants import timestamp
from loyalty.points.categories import OrderCategories, place
from loyalty.points.ledger import Balance, EntryKind, LedgerEntry, OrderRecord
from loyalty.points.lots import NEVER
from loyalty.points.member_record import (
    FIRST_PURCHASE,
    MONTHS_KEPT,
    PRUNE_SPAN,
    MemberStanding,
    aggregates_of,
    is_kept,
    month_key,
    months_before,
)
from loyalty.points.members import ConsentChange, Member, ProfileChanges, PurchaseStats
from loyalty.points.ports import (
    BudgetSpent,
    EarnGuards,
    ExternalIdTaken,
    MemberHoldings,
    PointsStore,
    ProgramVersionMoved,
    PurchaseFacts,
    Redemption,
    ReferralCodeTaken,
    RefundBasisMoved,
    Reversal,
    RewardChanged,
    StandingMoved,
    StockChange,
    StockDelta,
    TierReviewed,
    expiring_event,
    holds_terms,
    insufficient_points,
    limit_reached,
    order_conflict,
    out_of_stock,
    review_event,
    reward_not_found,
    reward_version_conflict,
    stock_conflict,
    tier_event,
    tier_too_low,
)
from loyalty.points.program import ProgramConfig, ProgramVersion
from loyalty.points.rewards import MAX_STOCK, Reward

_COUNTERS = tuple(Balance.model_fields)
_MONTHLY = ("spend_by_month", "purchases_by_month", "points_by_month")
_LEDGER = "LEDGER#"  # a cursor holds a position in the ledger, as the DynamoDB store's does
_VERSION = "VERSION#"  # ... or in the program's history
_REWARD = "REWARD#"  # and a position in the catalog
_CONSENT = "CONSENT#"  # ... or in a member's consent history


@dataclass(frozen=True)
class _Answer:
    fingerprint: str
    replay: Replay


@dataclass
class _Order:
    record: OrderRecord
    answer: _Answer


@dataclass
class _Member:
    """A member as enrolled, and what the ledger keeps on the member item: counters and write-time aggregates."""

    member: Member
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    purchase_count: int = 0
    first_purchase_at: datetime | None = None
    last_purchase_at: datetime | None = None
    first_purchase: dict[str, Any] | None = None  # as the item keeps it (member_record.FIRST_PURCHASE)
    monthly: dict[str, dict[str, Decimal]] = field(default_factory=lambda: {name: {} for name in _MONTHLY})
    spend_by_category: dict[str, Decimal] | None = field(default_factory=dict)
    spend_other_categories: Decimal = Decimal(0)
    revision: int = 1
    headroom: Decimal | None = None
    basis: int | None = None
    promotion_usage: dict[str, int] = field(default_factory=dict)
    segments: frozenset[str] = frozenset()  # as a segment write would leave them (set_segments, for tests)
    reviewed_at: datetime | None = None
    lots: dict[str, int] | None = field(default_factory=dict)  # None: as an item from before lots were kept
    lots_consumed: int = 0
    last_activity_at: datetime | None = None
    warned_through: str | None = None


class MemoryPointsStore:
    """The points store in a process's memory. Thread-safe; nothing survives the process."""

    def __init__(self, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._clock = clock  # the monthly aggregates' window moves with it
        self._lock = threading.RLock()
        self._members: dict[str, _Member] = {}
        self._external: dict[str, str] = {}
        self._referral: dict[str, str] = {}
        self._ledgers: dict[str, dict[str, LedgerEntry]] = {}
        self._consents: dict[str, dict[str, ConsentChange]] = {}  # member id -> change id -> change
        self._orders: dict[str, _Order] = {}
        self._claims: dict[str, _Answer] = {}
        self._program: ProgramConfig | None = None
        self._program_versions: dict[int, ProgramVersion] = {}
        self._rewards: dict[str, Reward] = {}
        self._budgets: dict[str, int] = {}
        self.tier_events: list[dict[str, Any]] = []  # the TierChanged records, as the table's TIER# items hold them
        self.expiring_events: list[dict[str, Any]] = []  # the PointsExpiringSoon records (EXPIRING# items)
        self._redeemed: dict[tuple[str, str, str], int] = {}  # (member, reward, period key) -> redemptions

    # ---- members ----------------------------------------------------------------------------------------

    def create_member(
        self,
        member: Member,
        *,
        headroom: Decimal | None = None,
        basis: int | None = None,
        consents: Sequence[ConsentChange] = (),
    ) -> None:
        with self._lock:
            if member.external_id in self._external:
                raise ExternalIdTaken(member.external_id)
            if member.referral_code in self._referral:
                raise ReferralCodeTaken
            if member.member_id in self._members:
                raise LoyaltyError("member id collision")
            enrolled = member.model_copy(update={"balance": Balance(), "purchases": PurchaseStats()}, deep=True)
            self._members[member.member_id] = _Member(
                enrolled, headroom=None if headroom is None else Decimal(headroom), basis=basis
            )
            self._external[member.external_id] = member.member_id
            self._referral[member.referral_code] = member.member_id
            self._ledgers[member.member_id] = {}
            self._consents[member.member_id] = {change.change_id: change for change in consents}

    def member_id_for_external(self, external_id: str) -> str | None:
        with self._lock:
            return self._external.get(external_id)

    def member_id_for_referral(self, code: str) -> str | None:
        with self._lock:
            return self._referral.get(code)

    def get_member(self, member_id: str) -> Member:
        with self._lock:
            state = self._member(member_id)
            return state.member.model_copy(
                update={
                    "balance": Balance(**state.counters),
                    "purchases": PurchaseStats(
                        first_purchase_at=state.first_purchase_at,
                        last_purchase_at=state.last_purchase_at,
                        purchase_count=state.purchase_count,
                    ),
                },
                deep=True,
            )

    def standing(self, member_id: str) -> MemberStanding:
        return self._standing(member_id)

    def _standing(self, member_id: str) -> MemberStanding:
        """The standing as the member item holds it (what a failed DynamoDB transaction hands back, unread)."""
        with self._lock:
            state = self._member(member_id)
            return MemberStanding(
                member=self.get_member(member_id),
                revision=state.revision,
                aggregates=aggregates_of(self.member_item(member_id)),
                segments=state.segments,
                headroom=state.headroom,
                basis=state.basis,
                promotion_usage=dict(state.promotion_usage),
                reviewed_at=state.reviewed_at,
                lots=None if state.lots is None else dict(state.lots),
                lots_consumed=state.lots_consumed,
                last_activity_at=state.last_activity_at,
                warned_through=state.warned_through,
            )

    def roster_page(
        self, worker: int, workers: int, cursor: str | None, limit: int
    ) -> tuple[list[MemberStanding], str | None]:
        after = ""
        if cursor:
            position = decode_cursor(cursor).get("after")
            if not isinstance(position, str):
                raise InvalidRequest("cursor is not one this store made", field="cursor")
            after = position
        with self._lock:
            share = sorted(m for m in self._members if zlib.crc32(m.encode()) % workers == worker and m > after)
            page = [self._standing(member_id) for member_id in share[:limit]]
        more = len(share) > limit
        return page, encode_cursor({"after": page[-1].member.member_id}) if more else None

    def review_tier(self, reviewed: TierReviewed) -> bool:
        with self._lock:
            state = self._member(reviewed.member_id)
            if state.revision != reviewed.revision:
                return False
            if state.reviewed_at is not None and state.reviewed_at >= reviewed.review_at:
                return False
            move = reviewed.move
            update: dict[str, Any] = {"tier": move.to_tier, "tier_history": [*state.member.tier_history, move]}
            if move.direction == "up":
                update["tier_upgraded_at"] = move.at
            state.member = state.member.model_copy(update=update)
            state.revision += 1
            state.reviewed_at = reviewed.review_at
            state.headroom, state.basis = reviewed.headroom, reviewed.basis
            self.tier_events.append(review_event(reviewed.member_id, reviewed.review_at, move))
            return True

    def warn_expiring(self, member_id: str, lots: Mapping[str, int], warned_through: str | None, at: datetime) -> bool:
        with self._lock:
            state = self._member(member_id)
            if state.warned_through != warned_through:
                return False
            state.warned_through = max(lots)
            self.expiring_events.extend(expiring_event(member_id, d, p, at) for d, p in sorted(lots.items()))
            return True

    def set_segments(self, member_id: str, segments: Iterable[str]) -> None:
        """What a segment write leaves on the member item (the segments context writes them; tests set them)."""
        with self._lock:
            self._member(member_id).segments = frozenset(segments)

    def budgets_given(self, promotion_ids: Iterable[str]) -> dict[str, int]:
        with self._lock:
            return {pid: self._budgets.get(pid, 0) for pid in promotion_ids}

    def ledger_page(self, member_id: str, limit: int, cursor: str | None) -> tuple[list[LedgerEntry], str | None]:
        position = _position(cursor, _LEDGER) if cursor else None
        with self._lock:
            ids = sorted(self._ledgers.get(member_id, {}), reverse=True)
            if position is not None:
                ids = [entry_id for entry_id in ids if _LEDGER + entry_id < position]
            page = [self._ledgers[member_id][entry_id] for entry_id in ids[:limit]]
        # As DynamoDB does: a page that reached the limit has a next cursor, even if nothing follows it.
        next_cursor = encode_cursor({"sk": _LEDGER + page[-1].entry_id}) if len(page) == limit else None
        return page, next_cursor

    # ---- profile and consent ----------------------------------------------------------------------------------

    def update_profile(self, member_id: str, changes: ProfileChanges, claim: Claim | None = None) -> Replay | None:
        with self._lock:
            taken = self._claims.get(claim.key) if claim is not None else None
            if claim is not None and taken is not None:
                return _replay(claim, taken)
            state = self._member(member_id)
            if not changes.empty:
                profile = changes.applied_to(state.member.profile)
                state.member = state.member.model_copy(update={"profile": profile})
                state.revision += 1
            if claim is not None:
                self._claims[claim.key] = _Answer(claim.fingerprint, Replay(claim.status, claim.body))
            return None

    def set_consent(self, member_id: str, change: ConsentChange) -> bool:
        with self._lock:
            state = self._member(member_id)
            consent = state.member.consent
            if consent.granted(change.channel) == change.granted:
                return False
            updated = consent.model_copy(update={change.channel.value: change.granted})
            state.member = state.member.model_copy(update={"consent": updated})
            state.revision += 1
            self._consents[member_id][change.change_id] = change.model_copy()
            return True

    def consent_history(self, member_id: str, limit: int, cursor: str | None) -> tuple[list[ConsentChange], str | None]:
        position = _position(cursor, _CONSENT) if cursor else None
        with self._lock:
            history = self._consents.get(member_id, {})
            change_ids = sorted(history, reverse=True)
            if position is not None:
                change_ids = [change_id for change_id in change_ids if _CONSENT + change_id < position]
            page = [history[change_id].model_copy() for change_id in change_ids[:limit]]
        next_cursor = encode_cursor({"sk": _CONSENT + page[-1].change_id}) if len(page) == limit else None
        return page, next_cursor

    def member_item(self, member_id: str) -> dict[str, Any]:
        """The member's profile, consent, counters and write-time aggregates under the DynamoDB member item's
        attribute names (instants as its timestamps), for tests that compare the two stores."""
        with self._lock:
            state = self._member(member_id)
            item: dict[str, Any] = {
                "profile": state.member.profile.model_dump(exclude_none=True),
                "consent": state.member.consent.model_dump(),
                **state.counters,
                "purchase_count": state.purchase_count,
                **{name: dict(months) for name, months in state.monthly.items()},
                "spend_other_categories": state.spend_other_categories,
                "revision": state.revision,
            }
            if state.spend_by_category is not None:
                item["spend_by_category"] = dict(state.spend_by_category)
            if state.first_purchase_at is not None:
                item["first_purchase_at"] = timestamp(state.first_purchase_at)
            if state.last_purchase_at is not None:
                item["last_purchase_at"] = timestamp(state.last_purchase_at)
            if state.first_purchase is not None:
                item[FIRST_PURCHASE] = dict(state.first_purchase)
            return item

    # ---- ledger writes ----------------------------------------------------------------------------------

    def post(
        self,
        entry: LedgerEntry,
        claim: Claim,
        order: OrderRecord | None = None,
        guards: EarnGuards | None = None,
    ) -> Replay | None:
        with self._lock:
            if order is not None:
                recorded = self._orders.get(order.order_id)
                taken = recorded.answer if recorded is not None else None
            else:
                taken = self._claims.get(claim.key)
            if taken is not None:
                return _replay(claim, taken, order)
            state = self._member(entry.member_id)
            if entry.entry_id in self._ledgers[entry.member_id]:
                raise LoyaltyError("ledger entry id collision")
            guards = guards or EarnGuards()
            self._check(state, entry.member_id, guards)  # as the DynamoDB store reads a failed member: guards first
            if entry.points < 0 and state.counters["available"] < -entry.points:
                raise insufficient_points(-entry.points, state.counters["available"])
            purchase = PurchaseFacts.of(order) if order is not None else None
            self._apply(state, entry)
            self._apply_guards(state, entry, guards)
            if entry.kind in (EntryKind.EARN, EntryKind.BONUS) and entry.points:
                when = purchase.occurred_at if purchase else entry.created_at
                self._add_to_month(state, "points_by_month", when, Decimal(entry.points))
            if purchase is not None:
                self._record_purchase(state, purchase)
            answer = _Answer(claim.fingerprint, Replay(claim.status, claim.body))
            if order is not None:
                self._orders[order.order_id] = _Order(order.model_copy(deep=True), answer)
            else:
                self._claims[claim.key] = answer
            return None

    def remember(self, claim: Claim, now: datetime) -> Replay | None:
        with self._lock:
            taken = self._claims.get(claim.key)
            if taken is not None:
                return _replay(claim, taken)
            self._claims[claim.key] = _Answer(claim.fingerprint, Replay(claim.status, claim.body))
            return None

    def replay(self, claim: Claim) -> Replay | None:
        with self._lock:
            taken = self._claims.get(claim.key)
            return _replay(claim, taken) if taken is not None else None

    def get_order(self, order_id: str) -> OrderRecord | None:
        with self._lock:
            stored = self._orders.get(order_id)
            return stored.record.model_copy(deep=True) if stored is not None else None

    def holdings(self, member_id: str) -> MemberHoldings:
        with self._lock:
            state = self._member(member_id)
            spend = None if state.spend_by_category is None else dict(state.spend_by_category)
            first = state.first_purchase["order_id"] if state.first_purchase is not None else None
            return MemberHoldings(member_id, state.counters["available"], spend, state.spend_other_categories, first)

    def reverse(self, reversal: Reversal) -> Replay | None:
        entry, read, claim = reversal.entry, reversal.order, reversal.claim
        with self._lock:
            taken = self._claims.get(claim.key)
            if taken is not None:
                return _replay(claim, taken)
            stored = self._orders.get(read.order_id)
            state = self._members.get(entry.member_id)
            if (
                stored is None
                or (stored.record.refunded_amount, stored.record.reversal_due)
                != (read.refunded_amount, read.reversal_due)
                or state is None
                or (entry.points < 0 and state.counters["available"] < -entry.points)
                or not _can_take(state, reversal.taken)
                or (reversal.first_purchase and (state.first_purchase or {}).get("order_id") != read.order_id)
                or entry.entry_id in self._ledgers[entry.member_id]
                or (read.lot is not None and -entry.points > (state.lots or {}).get(read.lot, 0))
            ):
                raise RefundBasisMoved(read.order_id)
            stored.record = stored.record.model_copy(
                update={
                    "refunded_amount": stored.record.refunded_amount + reversal.amount,
                    "reversal_due": stored.record.reversal_due + reversal.due,
                }
            )
            self._apply(state, entry)
            if -entry.points and read.lot is not None and state.lots is not None:
                state.lots[read.lot] -= -entry.points  # the order's own lot gives its points back
            elif -entry.points:
                state.lots_consumed += -entry.points  # an order from before lots were kept
            spend = reversal.spend_taken
            cancelled = Decimal(-1 if reversal.cancels_purchase else 0)
            for aggregate, delta in (
                ("spend_by_month", -spend),
                ("points_by_month", Decimal(-reversal.due)),
                ("purchases_by_month", cancelled),
            ):
                if delta:
                    self._add_to_month(state, aggregate, read.occurred_at, delta)
            state.purchase_count += int(cancelled)
            if reversal.first_purchase:
                assert state.first_purchase is not None  # checked above
                state.first_purchase["amount"] -= spend
                if reversal.cancels_purchase:
                    state.first_purchase["refunded"] = True
            if reversal.taken.totals:
                assert state.spend_by_category is not None  # _can_take checked it
                for name, take in reversal.taken.totals.items():
                    state.spend_by_category[name] -= take
            state.spend_other_categories -= reversal.taken.other
            self._claims[claim.key] = _Answer(claim.fingerprint, Replay(claim.status, claim.body))
            return None

    def redeem(self, redemption: Redemption) -> Replay | None:
        entry, claim, planned, limit = redemption.entry, redemption.claim, redemption.reward, redemption.limit
        with self._lock:
            taken = self._claims.get(claim.key)
            if taken is not None:
                return _replay(claim, taken)
            state = self._member(entry.member_id)
            stored = self._rewards.get(planned.reward_id)
            if stored is None or not holds_terms(stored, planned):
                raise RewardChanged(stored.model_copy() if stored is not None else None)
            if stored.stock is not None and stored.stock < 1:
                raise out_of_stock(stored.reward_id)
            tier = state.member.tier
            if redemption.tiers is not None and tier not in redemption.tiers:
                raise tier_too_low(tier, planned.min_tier)
            counter = (entry.member_id, planned.reward_id, limit.key) if limit is not None else None
            if limit is not None and counter is not None and self._redeemed.get(counter, 0) >= limit.limit:
                raise limit_reached(limit, self._redeemed[counter])
            if state.counters["available"] < -entry.points:
                raise insufficient_points(-entry.points, state.counters["available"])
            if entry.entry_id in self._ledgers[entry.member_id]:
                raise LoyaltyError("ledger entry id collision")
            self._apply(state, entry)
            if stored.stock is not None:
                self._rewards[stored.reward_id] = stored.model_copy(update={"stock": stored.stock - 1})
            if counter is not None:
                self._redeemed[counter] = self._redeemed.get(counter, 0) + 1
            self._claims[claim.key] = _Answer(claim.fingerprint, Replay(claim.status, claim.body))
            return None

    def redeemed(self, member_id: str, reward_id: str, key: str) -> int:
        """The member's counter of the reward in the period `key` (for tests that compare the two stores)."""
        with self._lock:
            return self._redeemed.get((member_id, reward_id, key), 0)

    # ---- program --------------------------------------------------------------------------------------------

    def get_program(self) -> ProgramConfig | None:
        with self._lock:
            return self._program

    def put_program(
        self,
        program: ProgramConfig,
        *,
        replaces: int | None,
        replaced_at: datetime | None = None,
        replaced_by: str | None = None,
        claim: Claim | None = None,
    ) -> Replay | None:
        with self._lock:
            taken = self._claims.get(claim.key) if claim is not None else None
            if claim is not None and taken is not None:
                return _replay(claim, taken)
            stored = self._program.version if self._program is not None else None
            if stored != replaces or program.version in self._program_versions:
                raise ProgramVersionMoved(f"the program is at version {stored}, not {replaces}")
            at = replaced_at.astimezone(UTC) if replaced_at is not None else None
            self._program = program
            self._program_versions[program.version] = ProgramVersion(
                program=program, replaced_at=at, replaced_by=replaced_by
            )
            if claim is not None:
                self._claims[claim.key] = _Answer(claim.fingerprint, Replay(claim.status, claim.body))
            return None

    def program_versions(self, limit: int, cursor: str | None) -> tuple[list[ProgramVersion], str | None]:
        position = _position(cursor, _VERSION) if cursor else None
        with self._lock:
            numbers = sorted(self._program_versions, reverse=True)
            if position is not None:
                numbers = [n for n in numbers if _version_sk(n) < position]
            page = [self._program_versions[n] for n in numbers[:limit]]
        next_cursor = encode_cursor({"sk": _version_sk(page[-1].version)}) if len(page) == limit else None
        return page, next_cursor

    def program_version(self, version: int) -> ProgramVersion | None:
        with self._lock:
            return self._program_versions.get(version)

    # ---- the catalog ------------------------------------------------------------------------------------------

    def list_rewards(self) -> list[Reward]:
        with self._lock:
            return [reward.model_copy() for reward in self._rewards.values()]

    def get_reward(self, reward_id: str) -> Reward | None:
        with self._lock:
            stored = self._rewards.get(reward_id)
            return stored.model_copy() if stored is not None else None

    def rewards_page(self, limit: int, cursor: str | None) -> tuple[list[Reward], str | None]:
        position = _catalog_position(cursor) if cursor else None
        with self._lock:
            ids = sorted(self._rewards)
            if position is not None:
                ids = [reward_id for reward_id in ids if _REWARD + reward_id > position]
            page = [self._rewards[reward_id].model_copy() for reward_id in ids[:limit]]
        next_cursor = encode_cursor({"sk": _REWARD + page[-1].reward_id}) if len(page) == limit else None
        return page, next_cursor

    def put_reward(self, reward: Reward) -> None:
        with self._lock:
            self._rewards[reward.reward_id] = reward.model_copy()

    def create_reward(self, reward: Reward) -> None:
        with self._lock:
            stored = self._rewards.get(reward.reward_id)
            if stored is not None:
                raise reward_version_conflict(reward.reward_id, stored.version, None)
            self._rewards[reward.reward_id] = reward.model_copy()

    def replace_reward(self, reward: Reward, replaces: int) -> Reward:
        with self._lock:
            stored = self._rewards.get(reward.reward_id)
            if stored is None:
                raise reward_not_found(reward.reward_id)
            if stored.version != replaces:
                raise reward_version_conflict(reward.reward_id, stored.version, replaces)
            replaced = reward.model_copy(update={"stock": stored.stock})
            self._rewards[reward.reward_id] = replaced
            return replaced.model_copy()

    def retire_reward(self, reward_id: str) -> Reward:
        with self._lock:
            stored = self._rewards.get(reward_id)
            if stored is None:
                raise reward_not_found(reward_id)
            retired = stored.model_copy(update={"active": False, "version": stored.version + 1})
            self._rewards[reward_id] = retired
            return retired.model_copy()

    def change_stock(self, reward_id: str, change: StockChange) -> Reward:
        with self._lock:
            stored = self._rewards.get(reward_id)
            if stored is None:
                raise reward_not_found(reward_id)
            if isinstance(change, StockDelta):
                if stored.stock is None or not 0 <= stored.stock + change.add <= MAX_STOCK:
                    raise stock_conflict(reward_id, stored.stock, change.add)
                stock: int | None = stored.stock + change.add
            else:
                stock = change.stock
            changed = stored.model_copy(update={"stock": stock})
            self._rewards[reward_id] = changed
            return changed.model_copy()

    # ---- an earn's guards: tier standing, promotion budgets -----------------------------------------------------

    def _check(self, state: _Member, member_id: str, guards: EarnGuards) -> None:
        """The guards' conditions, as the DynamoDB store's transaction puts them: raise before anything changes."""
        headroom, pinned = guards.headroom, guards.pinned
        if headroom is not None and (
            state.basis != headroom.basis or state.headroom is None or not state.headroom > headroom.uses
        ):
            raise StandingMoved(self._standing(member_id))
        if pinned is not None and state.revision != pinned.revision:
            raise StandingMoved(self._standing(member_id))
        if guards.revision is not None and state.revision != guards.revision:
            raise StandingMoved(self._standing(member_id))
        for use in guards.budgets:
            given = self._budgets.get(use.promotion_id, 0)
            if given > use.budget - use.points:
                raise BudgetSpent(use.promotion_id, given)

    def _apply_guards(self, state: _Member, entry: LedgerEntry, guards: EarnGuards) -> None:
        if guards.headroom is not None and state.headroom is not None:
            state.headroom -= guards.headroom.uses
        pinned = guards.pinned
        if pinned is not None:
            state.headroom, state.basis = pinned.headroom, pinned.basis
            state.promotion_usage = dict(pinned.usage)
            move = pinned.move
            if move is not None:
                history = [*state.member.tier_history, move]
                update: dict[str, Any] = {"tier": move.to_tier, "tier_history": history}
                if move.direction == "up":
                    update["tier_upgraded_at"] = move.at
                state.member = state.member.model_copy(update=update)
                self.tier_events.append(tier_event(entry.member_id, entry.entry_id, move))
        for use in guards.budgets:
            self._budgets[use.promotion_id] = self._budgets.get(use.promotion_id, 0) + use.points

    # ---- the member item's projection of the ledger ---------------------------------------------------------

    def _member(self, member_id: str) -> _Member:
        state = self._members.get(member_id)
        if state is None:
            raise MemberNotFound(f"member {member_id} not found", field="member_id")
        return state

    def _apply(self, state: _Member, entry: LedgerEntry) -> None:
        state.revision += 1
        for counter, delta in entry.counters().items():
            state.counters[counter] += delta
        self._ledgers[entry.member_id][entry.entry_id] = entry
        if entry.credits_lot():
            if state.lots is None:  # an item from before lots were kept: its balance becomes a lot that never expires
                held = state.counters["available"] - entry.points + state.lots_consumed
                state.lots = {NEVER: held} if held else {}
            state.lots[str(entry.lot)] = state.lots.get(str(entry.lot), 0) + entry.points
        state.lots_consumed += entry.consumes()
        if entry.is_activity():
            state.last_activity_at = entry.created_at

    def _add_to_month(self, state: _Member, aggregate: str, when: datetime, amount: Decimal) -> None:
        if not is_kept(month_key(when), self._clock()):
            return  # older than the window the aggregates keep
        months = state.monthly[aggregate]
        months[month_key(when)] = months.get(month_key(when), Decimal(0)) + amount

    def _record_purchase(self, state: _Member, purchase: PurchaseFacts) -> None:
        at = purchase.occurred_at.astimezone(UTC)
        self._add_to_month(state, "spend_by_month", at, purchase.amount)
        self._add_to_month(state, "purchases_by_month", at, Decimal(1))
        state.purchase_count += 1
        if state.first_purchase_at is None or at < state.first_purchase_at:
            state.first_purchase_at = at
            state.first_purchase = purchase.first_purchase()
        if state.last_purchase_at is None or at >= state.last_purchase_at:
            state.last_purchase_at = at
        now = self._clock()
        for back in range(MONTHS_KEPT + 1, MONTHS_KEPT + 1 + PRUNE_SPAN):
            for aggregate in _MONTHLY:
                state.monthly[aggregate].pop(months_before(now, back), None)
        self._add_categories(state, purchase.categories)

    @staticmethod
    def _add_categories(state: _Member, order: OrderCategories) -> None:
        other = order.other
        if order.totals:
            placement = place(order, state.spend_by_category)
            if placement.create or state.spend_by_category is None:
                state.spend_by_category = {}
            for name, amount in placement.kept.items():
                state.spend_by_category[name] = state.spend_by_category.get(name, Decimal(0)) + amount
            other = placement.other
        state.spend_other_categories += other


def _can_take(state: _Member, taken: OrderCategories) -> bool:
    """Whether the member still holds every share the refund takes (nothing may go below 0)."""
    spend = state.spend_by_category or {}
    if any(name not in spend or spend[name] < take for name, take in taken.totals.items()):
        return False
    return not taken.other or state.spend_other_categories >= taken.other


def _replay(claim: Claim, taken: _Answer, order: OrderRecord | None = None) -> Replay:
    if taken.fingerprint != claim.fingerprint:
        raise order_conflict(order.order_id) if order is not None else key_reused()
    return taken.replay


def _position(cursor: str, prefix: str = _LEDGER) -> str:
    sk = decode_cursor(cursor).get("sk")
    if not isinstance(sk, str) or not sk.startswith(prefix):
        raise InvalidRequest("cursor is not one this API returned", field="cursor")
    return sk


def _version_sk(version: int) -> str:
    return f"{_VERSION}{version:010d}"  # zero-padded, as the DynamoDB store's sort key, so text order is number order


def _catalog_position(cursor: str) -> str:
    return _position(cursor, _REWARD)


if TYPE_CHECKING:  # the type checker holds the fake to the port
    _conforms: PointsStore = MemoryPointsStore()
