"""The DynamoDB adapter: one table, its keys (docs/data-model.md), and the transactions that keep the ledger true.

Every balance change is ONE TransactWriteItems: the member item (counters and write-time aggregates, guarded by
conditions), the append-only ledger entry, and the idempotency claim (the order item for purchases); a redemption
adds the reward (pinned, its stock taken) and the member's counter for a limited reward (docs/rewards.md). No read
comes before it on the earn and redeem paths, so a change costs one round trip, and a replay is answered from the
claim that the failed condition hands back in the same round trip.

It implements loyalty.points.ports.PointsStore: it writes what the service decided, under the conditions that keep
it true, and turns failed conditions into the port's exceptions; it plans nothing (a refund is planned by the
service, from what this store read, and written here pinned to those reads).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import ValidationError

from loyalty.adapters.dynamodb.table import (
    TTL_ATTRIBUTE,
    Cancelled,
    Table,
    Update,
    decode_cursor,
    encode_cursor,
    from_item,
    key,
    to_item,
)
from loyalty.core.errors import (
    InvalidRequest,
    LoyaltyError,
    MemberNotFound,
    StoreContention,
)
from loyalty.core.events import EventType
from loyalty.core.idempotency import Claim, Replay, key_reused
from loyalty.core.instants import timestamp
from loyalty.points.categories import (
    CATEGORY_MAP,
    MAX_CATEGORIES,
    OTHER_CATEGORIES,
    OrderCategories,
    fits,
    place,
)
from loyalty.points.ledger import EVENT_OF_KIND, EntryKind, LedgerEntry, OrderRecord
from loyalty.points.lots import NEVER
from loyalty.points.member_record import (
    CONSENT,
    EXPIRY_WARNED_THROUGH,
    FIRST_PURCHASE,
    FIRST_PURCHASE_AT,
    LAST_ACTIVITY_AT,
    LAST_PURCHASE_AT,
    LOTS,
    LOTS_CONSUMED,
    MONTHLY_MAPS,
    MONTHS_KEPT,
    POINTS_BY_MONTH,
    PROFILE,
    PROMOTION_USAGE,
    PRUNE_SPAN,
    PURCHASE_COUNT,
    PURCHASES_BY_MONTH,
    REVISION,
    SPEND_BY_MONTH,
    TIER,
    TIER_BASIS,
    TIER_HEADROOM,
    TIER_HISTORY,
    TIER_REVIEWED_AT,
    TIER_UPGRADED_AT,
    MemberStanding,
    consent_of,
    is_kept,
    member_of,
    month_key,
    months_before,
    new_member_item,
    revision_of,
    standing_of,
)
from loyalty.points.members import ConsentChange, Member, ProfileChanges, TierMove
from loyalty.points.ports import (
    BudgetSpent,
    BudgetUse,
    EarnGuards,
    ExternalIdTaken,
    MemberHoldings,
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

ROSTER_INDEX = "MemberRoster"  # sparse GSI over member items only (their roster_id): the refresh scans it
IDEMPOTENCY_TTL_SECONDS = 30 * 24 * 3600
CATALOG = "CATALOG"
REWARD_PREFIX = "REWARD#"
REDEEMED = "redeemed"  # a member's redemptions of one reward in one period, on its own item (docs/rewards.md)
# The attributes a replace leaves as they are: the stock, which redemptions and the stock route move.
STOCK = "stock"

logger = Logger()


def member_key(member_id: str) -> dict[str, Any]:
    return key(f"MEMBER#{member_id}", "MEMBER")


def order_key(order_id: str) -> dict[str, Any]:
    return key(f"ORDER#{order_id}", "ORDER")


def reward_key(reward_id: str) -> dict[str, Any]:
    return key(CATALOG, f"{REWARD_PREFIX}{reward_id}")


def redeemed_key(member_id: str, reward_id: str, period: str) -> dict[str, Any]:
    """A member's counter of one reward in one period: beside the member item, in its partition."""
    return key(f"MEMBER#{member_id}", f"REDEEMED#{reward_id}#{period}")


def claim_key(claim: Claim, order: OrderRecord | None = None) -> dict[str, Any]:
    """Where a claim lives: a purchase's is its order item, keyed by order id; any other, its own item."""
    if order is not None:
        return order_key(order.order_id)
    return key(f"IDEMPOTENCY#{claim.key}", "IDEMPOTENCY")


def claim_item(claim: Claim, now: datetime, order: OrderRecord | None = None) -> dict[str, Any]:
    """The claim's item: its fingerprint and answer; the order's facts for a purchase; an expiry
    (IDEMPOTENCY_TTL_SECONDS) for a key that expires."""
    values: dict[str, Any] = {
        "fingerprint": claim.fingerprint,
        "response": json.dumps({"status": claim.status, "body": claim.body}),
    }
    if order is not None:
        values.update(order.model_dump())
    else:
        values["claim_key"] = claim.key
        if claim.expires:
            values[TTL_ATTRIBUTE] = int(now.timestamp()) + IDEMPOTENCY_TTL_SECONDS
    return {**claim_key(claim, order), **to_item(values)}


PROGRAM_KEY = key("PROGRAM", "CONFIG")  # the document in force
PROGRAM_VERSION_PREFIX = "VERSION#"  # PK PROGRAM: every version kept, SK VERSION#<10-digit version>


def program_version_key(version: int) -> dict[str, Any]:
    """A kept version's item: zero-padded, so that a query in SK order is in version order."""
    return key("PROGRAM", f"{PROGRAM_VERSION_PREFIX}{version:010d}")


CONSENT_PREFIX = "CONSENT#"  # PK MEMBER#<id>: the member's consent history, SK CONSENT#<change id (a ULID)>


def consent_key(member_id: str, change_id: str) -> dict[str, Any]:
    return key(f"MEMBER#{member_id}", f"{CONSENT_PREFIX}{change_id}")


def consent_item(member_id: str, change: ConsentChange) -> dict[str, Any]:
    """A consent change as its history item keeps it: the record of a ConsentChanged domain event (event_type), with
    no personal data beyond the member id the partition already holds."""
    values = {**change.model_dump(), "member_id": member_id, "event_type": EventType.CONSENT_CHANGED}
    return {**consent_key(member_id, change.change_id), **to_item(values)}


def ledger_cursor(last_key: dict[str, Any] | None) -> str | None:
    return encode_cursor({"sk": last_key["SK"]["S"]}) if last_key else None


def roster_position(cursor: str) -> dict[str, Any]:
    position = decode_cursor(cursor).get("key")
    if not isinstance(position, dict) or not str(position.get("PK", {}).get("S", "")).startswith("MEMBER#"):
        raise InvalidRequest("cursor is not one this store made", field="cursor")
    return position


def ledger_position(cursor: str, pk: str) -> dict[str, Any]:
    sk = decode_cursor(cursor).get("sk")
    if not isinstance(sk, str) or not sk.startswith("LEDGER#"):
        raise InvalidRequest("cursor is not one this API returned", field="cursor")
    return key(pk, sk)


class LoyaltyStore:
    """The loyalty table. Takes its boto3 DynamoDB client, so tests hand it a moto or DynamoDB Local client."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        *,
        max_attempts: int = 12,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self._io = Table(client, table_name, max_attempts=max_attempts, sleep=sleep)
        self._client = client
        self._table = table_name
        self._clock = clock  # the monthly aggregates' window moves with it

    @property
    def client(self) -> Any:
        return self._client

    @property
    def table_name(self) -> str:
        return self._table

    @property
    def table(self) -> Table:
        return self._io

    # ---- transactions -------------------------------------------------------------------------------------

    def _replay(self, claim: Claim, old: dict[str, Any] | None, order: OrderRecord | None = None) -> Replay:
        stored = old if old is not None else self._io.get(claim_key(claim, order))
        if stored is None:  # the condition failed, so the claim existed; it can only vanish by TTL
            raise StoreContention("idempotency record changed during the request; retry")
        if stored.get("fingerprint") != claim.fingerprint:
            raise order_conflict(order.order_id) if order is not None else key_reused()
        response = json.loads(stored["response"])
        return Replay(status=int(response["status"]), body=response["body"])

    # ---- members --------------------------------------------------------------------------------------------

    def create_member(
        self,
        member: Member,
        *,
        headroom: Decimal | None = None,
        basis: int | None = None,
        consents: Sequence[ConsentChange] = (),
    ) -> None:
        """Enroll: the member item, the external id and referral code each claimed for this member alone, and the
        consents given as the first items of the consent history. Raises ExternalIdTaken or ReferralCodeTaken
        (nothing written)."""
        values = new_member_item(member, headroom=headroom, basis=basis)
        items = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {**member_key(member.member_id), **to_item(values)},
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        **key(f"EXTERNAL#{member.external_id}", "EXTERNAL"),
                        **to_item({"member_id": member.member_id}),
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        **key(f"REFERRAL#{member.referral_code}", "REFERRAL"),
                        **to_item({"member_id": member.member_id}),
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
            *({"Put": {"TableName": self._table, "Item": consent_item(member.member_id, c)}} for c in consents),
        ]
        try:
            self._io.transact(items)
        except Cancelled as cancelled:
            if cancelled.failed(1):
                raise ExternalIdTaken(member.external_id) from None
            if cancelled.failed(2):  # referral code collision: the caller draws another code
                raise ReferralCodeTaken from None
            raise

    def member_id_for_external(self, external_id: str) -> str | None:
        item = self._io.get(key(f"EXTERNAL#{external_id}", "EXTERNAL"))
        return item["member_id"] if item else None

    def member_id_for_referral(self, code: str) -> str | None:
        item = self._io.get(key(f"REFERRAL#{code}", "REFERRAL"))
        return item["member_id"] if item else None

    def get_member(self, member_id: str) -> Member:
        item = self._io.get(member_key(member_id))
        if item is None:
            raise MemberNotFound(f"member {member_id} not found", field="member_id")
        return member_from_item(item)

    def standing(self, member_id: str) -> MemberStanding:
        item = self._io.get(member_key(member_id))
        if item is None:
            raise MemberNotFound(f"member {member_id} not found", field="member_id")
        return standing_of(item)

    def budgets_given(self, promotion_ids: Iterable[str]) -> dict[str, int]:
        return {pid: int((self._io.get(budget_key(pid)) or {}).get("given", 0)) for pid in promotion_ids}

    def roster_page(
        self, worker: int, workers: int, cursor: str | None, limit: int
    ) -> tuple[list[MemberStanding], str | None]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": ROSTER_INDEX,
            "Segment": worker,
            "TotalSegments": workers,
            "Limit": limit,
        }
        if cursor:
            request["ExclusiveStartKey"] = roster_position(cursor)
        page = self._client.scan(**request)
        standings = [standing_of(from_item(raw)) for raw in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return standings, encode_cursor({"key": last}) if last else None

    def review_tier(self, reviewed: TierReviewed) -> bool:
        move, update = reviewed.move, Update()
        update.conditions.append("attribute_exists(PK)")
        update.conditions.append(f"{update.name(REVISION)} = {update.value(reviewed.revision)}")
        at = update.name(TIER_REVIEWED_AT)
        update.conditions.append(f"attribute_not_exists({at}) OR {at} < {update.value(reviewed.review_at)}")
        update.adds.append(f"{update.name(REVISION)} {update.value(1)}")
        history = update.name(TIER_HISTORY)
        update.sets.append(f"{update.name(TIER)} = {update.value(move.to_tier)}")
        update.sets.append(
            f"{history} = list_append(if_not_exists({history}, {update.value([])}), {update.value([move.model_dump()])})"
        )
        update.sets.append(f"{at} = {update.value(reviewed.review_at)}")
        update.sets.append(f"{update.name(TIER_HEADROOM)} = {update.value(reviewed.headroom)}")
        update.sets.append(f"{update.name(TIER_BASIS)} = {update.value(reviewed.basis)}")
        if move.direction == "up":
            update.sets.append(f"{update.name(TIER_UPGRADED_AT)} = {update.value(move.at)}")
        record = review_event(reviewed.member_id, reviewed.review_at, move)
        items = [
            update.request(self._table, member_key(reviewed.member_id)),
            {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        **key(f"MEMBER#{reviewed.member_id}", f"TIER#review-{timestamp(reviewed.review_at)}"),
                        **to_item({k: v for k, v in record.items() if v is not None}),
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            },
        ]
        try:
            self._io.transact(items)
            return True
        except Cancelled as cancelled:
            if cancelled.failed(0) and cancelled.old_item(0) is None:
                raise MemberNotFound(f"member {reviewed.member_id} not found", field="member_id") from None
            return False

    def ledger_page(self, member_id: str, limit: int, cursor: str | None) -> tuple[list[LedgerEntry], str | None]:
        """Newest first. The cursor is opaque to clients and only ever points into this member's ledger."""
        pk = f"MEMBER#{member_id}"
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":prefix": {"S": "LEDGER#"}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            request["ExclusiveStartKey"] = ledger_position(cursor, pk)
        page = self._client.query(**request)
        entries = [entry_from_item(from_item(item)) for item in page.get("Items", [])]
        return entries, ledger_cursor(page.get("LastEvaluatedKey"))

    # ---- profile and consent (docs/members.md) ------------------------------------------------------------

    def update_profile(self, member_id: str, changes: ProfileChanges, claim: Claim | None = None) -> Replay | None:
        """One conditional update of the member item (it exists): SET and REMOVE of the profile's fields, the
        revision moved (segments read the country); with a claim, one transaction of the two. Nothing is read
        first, so two patches of different fields never undo each other."""
        update = Update()
        update.conditions.append("attribute_exists(PK)")
        if not changes.empty:
            profile = update.name(PROFILE)
            for name, value in changes.values.items():
                update.sets.append(f"{profile}.{update.name(name)} = {update.value(value)}")
            for name in sorted(changes.removed):
                update.removes.append(f"{profile}.{update.name(name)}")
            update.adds.append(f"{update.name(REVISION)} {update.value(1)}")
        items = [update.request(self._table, member_key(member_id))]
        if claim is not None:
            items.append(self._claim_put(claim, self._clock()))
        try:
            self._io.transact(items)
            return None
        except Cancelled as cancelled:
            if claim is not None:
                if cancelled.failed(1):
                    return self._replay(claim, cancelled.old_item(1))
                stored = self._io.get(claim_key(claim))  # a replay whose claim the cancellation did not report
                if stored is not None:
                    return self._replay(claim, stored)
            raise MemberNotFound(f"member {member_id} not found", field="member_id") from None

    def set_consent(self, member_id: str, change: ConsentChange) -> bool:
        """One transaction: the member's consent flag set and `revision` moved, on condition that the member exists
        and the consent is not already so (absent is not granted); the history item put beside it. The condition
        makes a repeated or concurrent identical request record nothing, without a read first."""
        update = Update()
        flag = f"{update.name(CONSENT)}.{update.name(change.channel.value)}"
        other = update.value(not change.granted)
        if change.granted:
            update.conditions.append(f"attribute_exists(PK) AND (attribute_not_exists({flag}) OR {flag} = {other})")
        else:
            update.conditions.append(f"attribute_exists(PK) AND {flag} = {other}")
        update.sets.append(f"{flag} = {update.value(change.granted)}")
        update.adds.append(f"{update.name(REVISION)} {update.value(1)}")
        history = {
            "Put": {
                "TableName": self._table,
                "Item": consent_item(member_id, change),
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }
        try:
            self._io.transact([update.request(self._table, member_key(member_id)), history])
            return True
        except Cancelled as cancelled:
            if not cancelled.failed(0):
                raise LoyaltyError("consent change id collision") from None
            member = cancelled.old_item(0) or self._io.get(member_key(member_id))
            if member is None:
                raise MemberNotFound(f"member {member_id} not found", field="member_id") from None
            if consent_of(member).granted(change.channel) != change.granted:  # changed back meanwhile
                raise StoreContention("the member's consent kept changing during the request; retry") from None
            return False

    def consent_history(self, member_id: str, limit: int, cursor: str | None) -> tuple[list[ConsentChange], str | None]:
        pk = f"MEMBER#{member_id}"
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":prefix": {"S": CONSENT_PREFIX}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            sk = decode_cursor(cursor).get("sk")
            if not isinstance(sk, str) or not sk.startswith(CONSENT_PREFIX):
                raise InvalidRequest("cursor is not one this API returned", field="cursor")
            request["ExclusiveStartKey"] = key(pk, sk)
        page = self._client.query(**request)
        changes = [consent_change_from_item(from_item(item)) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return changes, encode_cursor({"sk": last["SK"]["S"]}) if last else None

    # ---- ledger writes --------------------------------------------------------------------------------------

    def _member_update(
        self,
        entry: LedgerEntry,
        purchase: PurchaseFacts | None,
        *,
        out_of_order: dict[str, Any] | None = None,
        categories_seen: dict[str, Any] | None = None,
        lots_seen: dict[str, Any] | None = None,
    ) -> Update:
        update = Update()
        update.conditions.append("attribute_exists(PK)")
        update.adds.append(f"{update.name(REVISION)} {update.value(1)}")
        self._book_lots(update, entry, lots_seen)
        for counter, delta in entry.counters().items():
            if delta:
                update.adds.append(f"{update.name(counter)} {update.value(delta)}")
        if entry.points < 0:
            update.conditions.append(f"{update.name('available')} >= {update.value(-entry.points)}")
        if entry.kind in (EntryKind.EARN, EntryKind.BONUS) and entry.points:
            when = purchase.occurred_at if purchase else entry.created_at
            self._add_to_month(update, POINTS_BY_MONTH, when, entry.points)
        if purchase is not None:
            self._record_purchase(update, purchase, out_of_order)
            self._add_categories(update, purchase.categories, categories_seen)
        return update

    @staticmethod
    def _book_lots(update: Update, entry: LedgerEntry, lots_seen: dict[str, Any] | None) -> None:
        """A credit into its lot, a debit into what the lots consumed, an earn or a redemption into the last
        activity (docs/expiry.md). An item from before lots were kept (no `lots` map: the condition fails, the item
        comes back as `lots_seen`) gets its map with the balance it had as a lot that never expires, pinned to
        that balance and what was consumed, so that lots - consumed stays the balance."""
        if entry.credits_lot():
            lots = update.name(LOTS)
            if lots_seen is None:
                path = f"{lots}.{update.name(str(entry.lot))}"
                update.sets.append(f"{path} = if_not_exists({path}, {update.value(0)}) + {update.value(entry.points)}")
                update.conditions.append(f"attribute_exists({lots})")
            else:
                available, consumed = int(lots_seen.get("available", 0)), int(lots_seen.get(LOTS_CONSUMED, 0))
                seeded = {NEVER: available + consumed} if available + consumed else {}
                seeded[str(entry.lot)] = seeded.get(str(entry.lot), 0) + entry.points
                update.sets.append(f"{lots} = {update.value(seeded)}")
                update.conditions.append(f"attribute_not_exists({lots})")
                update.conditions.append(f"{update.name('available')} = {update.value(available)}")
                used = update.name(LOTS_CONSUMED)
                update.conditions.append(
                    f"attribute_not_exists({used})" if not consumed else f"{used} = {update.value(consumed)}"
                )
        if entry.consumes():
            update.adds.append(f"{update.name(LOTS_CONSUMED)} {update.value(entry.consumes())}")
        if entry.is_activity():
            update.sets.append(f"{update.name(LAST_ACTIVITY_AT)} = {update.value(entry.created_at)}")

    def warn_expiring(self, member_id: str, lots: Mapping[str, int], warned_through: str | None, at: datetime) -> bool:
        update, through = Update(), max(lots)
        warned = update.name(EXPIRY_WARNED_THROUGH)
        update.conditions.append("attribute_exists(PK)")
        if warned_through is None:
            update.conditions.append(f"attribute_not_exists({warned})")
        else:
            update.conditions.append(f"{warned} = {update.value(warned_through)}")
        update.sets.append(f"{warned} = {update.value(through)}")
        items = [update.request(self._table, member_key(member_id))]
        for expires_on, points in sorted(lots.items()):
            record = expiring_event(member_id, expires_on, points, at)
            items.append(
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {**key(f"MEMBER#{member_id}", f"EXPIRING#{expires_on}"), **to_item(record)},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                }
            )
        try:
            self._io.transact(items)
            return True
        except Cancelled as cancelled:
            if cancelled.failed(0) and cancelled.old_item(0) is None:
                raise MemberNotFound(f"member {member_id} not found", field="member_id") from None
            return False

    @staticmethod
    def _guard_standing(update: Update, guards: EarnGuards) -> None:
        """An earn's tier guard on the member item (docs/tiers.md, "One round trip"): the headroom stays above 0
        once the earn's qualifying units are taken off it, under the same program version; or, pinned to the
        revision read, the standing the service worked out from it."""
        headroom, pinned = guards.headroom, guards.pinned
        if guards.revision is not None:
            update.conditions.append(f"{update.name(REVISION)} = {update.value(guards.revision)}")
        if headroom is not None:
            room, basis = update.name(TIER_HEADROOM), update.name(TIER_BASIS)
            update.conditions.append(f"{basis} = {update.value(headroom.basis)}")
            update.conditions.append(f"{room} > {update.value(headroom.uses)}")
            if headroom.uses:
                update.adds.append(f"{room} {update.value(-headroom.uses)}")
        if pinned is not None:
            update.conditions.append(f"{update.name(REVISION)} = {update.value(pinned.revision)}")
            update.sets.append(f"{update.name(TIER_HEADROOM)} = {update.value(pinned.headroom)}")
            update.sets.append(f"{update.name(TIER_BASIS)} = {update.value(pinned.basis)}")
            update.sets.append(f"{update.name(PROMOTION_USAGE)} = {update.value(dict(pinned.usage))}")
            move = pinned.move
            if move is not None:
                history = update.name(TIER_HISTORY)
                recorded = update.value([move.model_dump()])
                update.sets.append(f"{update.name(TIER)} = {update.value(move.to_tier)}")
                update.sets.append(f"{history} = list_append(if_not_exists({history}, {update.value([])}), {recorded})")
                if move.direction == "up":
                    update.sets.append(f"{update.name(TIER_UPGRADED_AT)} = {update.value(move.at)}")

    def _budget_update(self, use: BudgetUse) -> dict[str, Any]:
        """A promotion's total given, on condition that it stays within the budget."""
        update = Update()
        given = update.name("given")
        update.adds.append(f"{given} {update.value(use.points)}")
        update.conditions.append(f"attribute_not_exists({given}) OR {given} <= {update.value(use.budget - use.points)}")
        return update.request(self._table, budget_key(use.promotion_id))

    def _tier_event_put(self, entry: LedgerEntry, move: TierMove) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    **key(f"MEMBER#{entry.member_id}", f"TIER#{entry.entry_id}"),
                    **to_item(tier_event(entry.member_id, entry.entry_id, move)),
                },
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def _add_to_month(self, update: Update, aggregate: str, when: datetime, amount: Any) -> None:
        if not is_kept(month_key(when), self._clock()):
            return  # older than the window the aggregates keep
        path = f"{update.name(aggregate)}.{update.name(month_key(when))}"
        update.sets.append(f"{path} = if_not_exists({path}, {update.value(0)}) + {update.value(amount)}")

    def _record_purchase(self, update: Update, purchase: PurchaseFacts, out_of_order: dict[str, Any] | None) -> None:
        at = purchase.occurred_at
        self._add_to_month(update, SPEND_BY_MONTH, at, purchase.amount)
        self._add_to_month(update, PURCHASES_BY_MONTH, at, 1)
        update.adds.append(f"{update.name(PURCHASE_COUNT)} {update.value(1)}")
        if out_of_order is None:
            # In order (the common case): this purchase is the latest. The condition keeps a late-arriving older
            # event from moving last_purchase_at backwards; that case is retried below with its own update.
            first, last = update.name(FIRST_PURCHASE_AT), update.name(LAST_PURCHASE_AT)
            update.sets.append(f"{first} = if_not_exists({first}, {update.value(at)})")
            kept = update.name(FIRST_PURCHASE)
            update.sets.append(f"{kept} = if_not_exists({kept}, {update.value(purchase.first_purchase())})")
            update.sets.append(f"{last} = {update.value(at)}")
            update.conditions.append(f"attribute_not_exists({last}) OR {last} <= {update.value(at)}")
        else:
            last = update.name(LAST_PURCHASE_AT)
            update.conditions.append(f"{last} > {update.value(at)}")
            seen_first = out_of_order.get(FIRST_PURCHASE_AT)
            if seen_first is not None and timestamp(at) < seen_first:
                first = update.name(FIRST_PURCHASE_AT)
                update.sets.append(f"{first} = {update.value(at)}")
                update.sets.append(f"{update.name(FIRST_PURCHASE)} = {update.value(purchase.first_purchase())}")
                update.conditions.append(f"{first} = {update.value(seen_first)}")
        now = self._clock()
        for back in range(MONTHS_KEPT + 1, MONTHS_KEPT + 1 + PRUNE_SPAN):
            month = months_before(now, back)
            for aggregate in MONTHLY_MAPS:
                update.removes.append(f"{update.name(aggregate)}.{update.name(month)}")

    def _add_categories(self, update: Update, order: OrderCategories, seen_item: dict[str, Any] | None) -> None:
        """Add the order's category spend to the member's map (docs/data-model.md). Without a read (`seen_item`
        None), the update adds every name and its condition holds only if they are all kept already or all fit;
        otherwise (or on an item without the map) the transaction fails and the caller retries with the member
        item it got back, placed exactly by loyalty.points.categories.place and pinned by the map's size (names are
        never removed, so an unchanged size is an unchanged set of names)."""
        other = order.other
        if order.totals and seen_item is None:
            spend = update.name(CATEGORY_MAP)
            names = {update.name(category): amount for category, amount in order.totals.items()}
            self._add_to_categories(update, spend, names)
            held = " AND ".join(f"attribute_exists({spend}.{name})" for name in names)
            room = update.value(MAX_CATEGORIES - len(names))
            update.conditions.append(f"size({spend}) <= {room} OR ({held})")
        elif order.totals and seen_item is not None:
            spend = update.name(CATEGORY_MAP)
            placement = place(order, seen_item.get(CATEGORY_MAP))
            other = placement.other
            if placement.create:
                update.sets.append(f"{spend} = {update.value(placement.kept)}")
                update.conditions.append(f"attribute_not_exists({spend})")
            else:
                kept = {update.name(category): amount for category, amount in placement.kept.items()}
                self._add_to_categories(update, spend, kept)
                update.conditions.append(f"size({spend}) = {update.value(placement.seen_size)}")
        if other:
            update.adds.append(f"{update.name(OTHER_CATEGORIES)} {update.value(other)}")

    @staticmethod
    def _add_to_categories(update: Update, spend: str, amounts: dict[str, Decimal]) -> None:
        """SET spend_by_category.#c = if_not_exists(spend_by_category.#c, 0) + :x, for each placeholder #c."""
        if not amounts:
            return
        zero = update.value(0)
        for name, amount in amounts.items():
            path = f"{spend}.{name}"
            update.sets.append(f"{path} = if_not_exists({path}, {zero}) + {update.value(amount)}")

    def _entry_put(self, entry: LedgerEntry) -> dict[str, Any]:
        values = entry.model_dump()
        values["event_type"] = EVENT_OF_KIND[entry.kind]
        return {
            "Put": {
                "TableName": self._table,
                "Item": {**key(f"MEMBER#{entry.member_id}", f"LEDGER#{entry.entry_id}"), **to_item(values)},
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def _claim_put(self, claim: Claim, now: datetime, order: OrderRecord | None = None) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": claim_item(claim, now, order),
                "ConditionExpression": "attribute_not_exists(PK)",
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def remember(self, claim: Claim, now: datetime) -> Replay | None:
        """Store a refusal's answer under its idempotency key, so that a replay gets the same refusal. Returns
        None when stored, or the first answer when the key was already claimed (by a success or a refusal that
        got there first): one conditional put, no read before it."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=claim_item(claim, now),
                ConditionExpression="attribute_not_exists(PK)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return None
        except ClientError as error:
            if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            response: dict[str, Any] = dict(error.response)
            old = response.get("Item")
            return self._replay(claim, from_item(old) if old else None)

    def replay(self, claim: Claim) -> Replay | None:
        """The first answer under the claim's key, if the key is taken (one consistent read)."""
        stored = self._io.get(claim_key(claim))
        return self._replay(claim, stored) if stored is not None else None

    def post(
        self,
        entry: LedgerEntry,
        claim: Claim,
        order: OrderRecord | None = None,
        guards: EarnGuards | None = None,
    ) -> Replay | None:
        """Apply one ledger entry atomically, with an earn's guards. Returns None when applied, or the first answer
        on a replay.

        Raises MemberNotFound, InsufficientPoints (debits), OrderConflict / IdempotencyKeyReused (a key reused
        for another request), StandingMoved / BudgetSpent (a guard failed: loyalty.points.ports).
        """
        guards = guards or EarnGuards()
        purchase = PurchaseFacts.of(order) if order is not None else None
        out_of_order: dict[str, Any] | None = None
        categories_seen: dict[str, Any] | None = None
        lots_seen: dict[str, Any] | None = None
        for _ in range(5):
            update = self._member_update(
                entry, purchase, out_of_order=out_of_order, categories_seen=categories_seen, lots_seen=lots_seen
            )
            self._guard_standing(update, guards)
            items = [
                update.request(self._table, member_key(entry.member_id)),
                self._entry_put(entry),
                self._claim_put(claim, entry.created_at, order),
                *(self._budget_update(use) for use in guards.budgets),
            ]
            if guards.pinned is not None and guards.pinned.move is not None:
                items.append(self._tier_event_put(entry, guards.pinned.move))
            try:
                self._io.transact(items)
                return None
            except Cancelled as cancelled:
                if cancelled.failed(2):
                    return self._replay(claim, cancelled.old_item(2), order)
                for position, use in enumerate(guards.budgets, start=3):
                    if cancelled.failed(position):
                        old = cancelled.old_item(position) or {}
                        raise BudgetSpent(use.promotion_id, int(old.get("given", 0))) from None
                if not cancelled.failed(0):
                    raise LoyaltyError("ledger entry id collision") from None
                member = cancelled.old_item(0)
                if member is None:
                    member = self._io.get(member_key(entry.member_id))
                if member is None:
                    raise MemberNotFound(f"member {entry.member_id} not found", field="member_id") from None
                # The member exists. An earn's tier guard that the item fails is handed to the service at once,
                # unread: the write it makes next carries the same claim, so a replay is still answered by it.
                if not _standing_holds(member, guards):
                    raise StandingMoved(standing_of(member)) from None
                # Else: a replay whose claim the cancellation did not report, a debit the balance does not cover, an
                # older purchase arriving after a newer one, or a purchase whose categories do not all fit the map.
                stored = self._io.get(claim_key(claim, order))
                if stored is not None:
                    return self._replay(claim, stored, order)
                if entry.points < 0 and int(member.get("available", 0)) < -entry.points:
                    raise insufficient_points(-entry.points, int(member.get("available", 0))) from None
                if entry.credits_lot() and (LOTS not in member) != (lots_seen is not None):
                    lots_seen = member if LOTS not in member else None  # an item from before lots were kept
                    continue
                if purchase is not None:
                    # An older purchase arriving after a newer one, and/or category names that do not all fit
                    # the member's map: both are planned from the item the cancellation handed back.
                    late = str(member.get("last_purchase_at", "")) > timestamp(purchase.occurred_at)
                    out_of_order = member if late else None
                    categories_seen = None if fits(purchase.categories, member.get(CATEGORY_MAP)) else member
                    if late or categories_seen is not None:
                        continue
                # The member changed between the attempt and the check (a concurrent debit): try again.
                out_of_order = categories_seen = None
        raise StoreContention("the member kept changing during the request; retry")

    # ---- refunds: the service plans (loyalty.points.service), the store writes what was planned --------------

    def get_order(self, order_id: str) -> OrderRecord | None:
        item = self._io.get(order_key(order_id))
        return OrderRecord.model_validate(item) if item is not None else None

    def holdings(self, member_id: str) -> MemberHoldings:
        item = self._io.get(member_key(member_id))
        if item is None:
            raise MemberNotFound(f"member {member_id} not found", field="member_id")
        spend = item.get(CATEGORY_MAP)
        first = item.get(FIRST_PURCHASE) or {}
        return MemberHoldings(
            member_id=member_id,
            available=int(item.get("available", 0)),
            spend_by_category=None if spend is None else {name: Decimal(v) for name, v in spend.items()},
            spend_other_categories=Decimal(item.get(OTHER_CATEGORIES, 0)),
            first_order_id=first.get("order_id"),
        )

    def reverse(self, reversal: Reversal) -> Replay | None:
        """Write order + member + entry + claim in one transaction whose conditions pin what the plan was made
        from: the order's refund totals as read, the balance the entry takes from, the category spend it takes
        back (nothing below 0). A failed pin is RefundBasisMoved; a taken claim, the first answer."""
        entry, order, claim = reversal.entry, reversal.order, reversal.claim
        order_update = Update()
        order_update.conditions.append(
            f"{order_update.name('refunded_amount')} = {order_update.value(order.refunded_amount)}"
        )
        order_update.conditions.append(
            f"{order_update.name('reversal_due')} = {order_update.value(order.reversal_due)}"
        )
        order_update.adds.append(f"{order_update.name('refunded_amount')} {order_update.value(reversal.amount)}")
        order_update.adds.append(f"{order_update.name('reversal_due')} {order_update.value(reversal.due)}")

        member_update = self._member_update(entry, None)
        taken_back = -entry.points
        if taken_back and order.lot is not None:
            path, value = f"{member_update.name(LOTS)}.{member_update.name(order.lot)}", member_update.value(taken_back)
            member_update.sets.append(f"{path} = {path} - {value}")
            member_update.conditions.append(f"{path} >= {value}")
        elif taken_back:  # an order from before lots were kept: its points are consumed like a debit's
            member_update.adds.append(f"{member_update.name(LOTS_CONSUMED)} {member_update.value(taken_back)}")
        spend = reversal.spend_taken
        cancelled = -1 if reversal.cancels_purchase else 0
        for aggregate, delta in (
            (SPEND_BY_MONTH, -spend),
            (POINTS_BY_MONTH, -reversal.due),
            (PURCHASES_BY_MONTH, cancelled),
        ):
            if delta:
                self._add_to_month(member_update, aggregate, order.occurred_at, delta)
        if cancelled:
            member_update.adds.append(f"{member_update.name(PURCHASE_COUNT)} {member_update.value(cancelled)}")
        if reversal.first_purchase:
            self._take_from_first_purchase(member_update, order.order_id, spend, reversal.cancels_purchase)
        self._take_categories(member_update, reversal.taken)
        items = [
            order_update.request(self._table, order_key(order.order_id), return_old=False),
            member_update.request(self._table, member_key(entry.member_id), return_old=False),
            self._entry_put(entry),
            self._claim_put(claim, entry.created_at),
        ]
        try:
            self._io.transact(items)
            return None
        except Cancelled as cancelled:
            if cancelled.failed(3):
                return self._replay(claim, cancelled.old_item(3))
            raise RefundBasisMoved(order.order_id) from None  # (or the entry id was taken: planned afresh too)

    @staticmethod
    def _take_from_first_purchase(update: Update, order_id: str, spend: Decimal, refunded: bool) -> None:
        """A refund of the member's first purchase takes its spend off the item's record of it too (marked refunded
        when in full), on condition that the record is still of this order (an older purchase arriving late takes
        its place: the refund is then planned again)."""
        kept = update.name(FIRST_PURCHASE)
        update.conditions.append(f"{kept}.{update.name('order_id')} = {update.value(order_id)}")
        if spend:  # a placeholder is named only when used: DynamoDB refuses one left unused
            amount = f"{kept}.{update.name('amount')}"
            update.sets.append(f"{amount} = {amount} - {update.value(spend)}")
        if refunded:
            update.sets.append(f"{kept}.{update.name('refunded')} = {update.value(True)}")

    @staticmethod
    def _take_categories(update: Update, taken: OrderCategories) -> None:
        """Take a refund's share back out of the member's category spend, each subtraction guarded so that nothing
        goes below 0 (a concurrent refund of another order that got there first fails the transaction)."""
        spend = update.name(CATEGORY_MAP) if taken.totals else ""  # DynamoDB refuses a placeholder left unused
        for category, take in taken.totals.items():
            path, value = f"{spend}.{update.name(category)}", update.value(take)
            update.sets.append(f"{path} = {path} - {value}")
            update.conditions.append(f"{path} >= {value}")
        if taken.other:
            name = update.name(OTHER_CATEGORIES)
            update.adds.append(f"{name} {update.value(-taken.other)}")
            update.conditions.append(f"{name} >= {update.value(taken.other)}")

    # ---- redemptions: the service plans (terms, tiers, limit), the store writes them pinned -----------------

    def redeem(self, redemption: Redemption) -> Replay | None:
        """One transaction: the member debited under `available >= cost` and its tier among those allowed, the
        ledger entry, the claim, the reward pinned to the planned terms with its stock decremented under
        `stock >= 1` (or still without one), and the member's counter for the period under its limit. A failed
        condition is read from the items the cancellation hands back (docs/rewards.md); a cancellation none of them
        explains any more (a concurrent change came and went) is tried again."""
        entry, claim = redemption.entry, redemption.claim
        items = [
            self._redeemer_update(redemption).request(self._table, member_key(entry.member_id)),
            self._entry_put(entry),
            self._claim_put(claim, entry.created_at),
            self._reward_pin(redemption.reward).request(self._table, reward_key(redemption.reward.reward_id)),
        ]
        if redemption.limit is not None:
            counter = redeemed_key(entry.member_id, redemption.reward.reward_id, redemption.limit.key)
            items.append(self._counter_update(redemption).request(self._table, counter))
        for _ in range(4):
            try:
                self._io.transact(items)
                return None
            except Cancelled as cancelled:
                if cancelled.failed(2):
                    return self._replay(claim, cancelled.old_item(2))
                if cancelled.failed(1):
                    raise LoyaltyError("ledger entry id collision") from None
                stored = self._io.get(claim_key(claim))  # a replay the cancellation did not report
                if stored is not None:
                    return self._replay(claim, stored)
                refusal = self._redemption_refusal(redemption, cancelled)
                if refusal is not None:
                    raise refusal from None
        raise StoreContention("the member or the reward kept changing during the redemption; retry")

    def _redeemer_update(self, redemption: Redemption) -> Update:
        update = self._member_update(redemption.entry, None)
        if redemption.tiers is not None:
            names = ", ".join(update.value(tier) for tier in redemption.tiers) or update.value("")
            update.conditions.append(f"{update.name('tier')} IN ({names})")
        return update

    @staticmethod
    def _reward_pin(reward: Reward) -> Update:
        """The reward item as planned: there, active, at this version and cost; its stock taken one from under
        `stock >= 1`, or, planned without a stock, still without one (a ConditionCheck then: nothing written)."""
        update = Update()
        version = update.name("version")
        update.conditions.append("attribute_exists(PK)")
        update.conditions.append(f"{update.name('active')} = {update.value(True)}")
        update.conditions.append(f"{update.name('cost_points')} = {update.value(reward.cost_points)}")
        if reward.version == 1:  # a reward stored before rewards had versions is at 1
            update.conditions.append(f"attribute_not_exists({version}) OR {version} = {update.value(1)}")
        else:
            update.conditions.append(f"{version} = {update.value(reward.version)}")
        stock = update.name(STOCK)
        if reward.stock is None:
            update.conditions.append(f"attribute_not_exists({stock})")
        else:
            update.conditions.append(f"{stock} >= {update.value(1)}")
            update.adds.append(f"{stock} {update.value(-1)}")
        return update

    @staticmethod
    def _counter_update(redemption: Redemption) -> Update:
        limit = redemption.limit
        assert limit is not None
        update = Update()
        count = update.name(REDEEMED)
        update.conditions.append(f"attribute_not_exists({count}) OR {count} < {update.value(limit.limit)}")
        update.adds.append(f"{count} {update.value(1)}")
        update.sets.append(f"{update.name('reward_id')} = {update.value(redemption.reward.reward_id)}")
        update.sets.append(f"{update.name('period')} = {update.value(limit.key)}")
        if limit.expires_at is not None:
            update.sets.append(f"{update.name(TTL_ATTRIBUTE)} = {update.value(int(limit.expires_at.timestamp()))}")
        return update

    def _redemption_refusal(self, redemption: Redemption, cancelled: Cancelled) -> Exception | None:
        """What a cancelled redemption's items say, in the order the port names: the member gone, the reward moved,
        out of stock, the tier, the limit, the balance. None when no condition fails on the items as handed back."""
        entry, planned = redemption.entry, redemption.reward
        member: dict[str, Any] | None = None
        if cancelled.failed(0):
            member = cancelled.old_item(0) or self._io.get(member_key(entry.member_id))
            if member is None:
                return MemberNotFound(f"member {entry.member_id} not found", field="member_id")
        if cancelled.failed(3):
            old = cancelled.old_item(3)
            current = reward_from_item(old) if old is not None else None
            if current is None or not holds_terms(current, planned):
                return RewardChanged(current)
            if current.stock is not None and current.stock < 1:
                return out_of_stock(planned.reward_id)
        if member is not None and redemption.tiers is not None and member.get("tier") not in redemption.tiers:
            return tier_too_low(member.get("tier"), planned.min_tier)
        if redemption.limit is not None and cancelled.failed(4):
            redeemed = int((cancelled.old_item(4) or {}).get(REDEEMED, 0))
            if redeemed >= redemption.limit.limit:
                return limit_reached(redemption.limit, redeemed)
        if member is not None and int(member.get("available", 0)) < -entry.points:
            return insufficient_points(-entry.points, int(member.get("available", 0)))
        return None

    # ---- the catalog --------------------------------------------------------------------------------------

    def list_rewards(self) -> list[Reward]:
        rewards: list[Reward] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": CATALOG}},
            "ConsistentRead": True,
        }
        while True:
            page = self._client.query(**request)
            rewards.extend(_readable(page.get("Items", [])))
            if "LastEvaluatedKey" not in page:
                return rewards
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def get_reward(self, reward_id: str) -> Reward | None:
        item = self._io.get(reward_key(reward_id))
        return reward_from_item(item) if item is not None else None

    def rewards_page(self, limit: int, cursor: str | None) -> tuple[list[Reward], str | None]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": CATALOG}, ":prefix": {"S": REWARD_PREFIX}},
            "Limit": limit,
            "ConsistentRead": True,
        }
        if cursor:
            sk = decode_cursor(cursor).get("sk")
            if not isinstance(sk, str) or not sk.startswith(REWARD_PREFIX):
                raise InvalidRequest("cursor is not one this API returned", field="cursor")
            request["ExclusiveStartKey"] = key(CATALOG, sk)
        page = self._client.query(**request)
        last = page.get("LastEvaluatedKey")
        return list(_readable(page.get("Items", []))), encode_cursor({"sk": last["SK"]["S"]}) if last else None

    def put_reward(self, reward: Reward) -> None:
        self._client.put_item(TableName=self._table, Item={**reward_key(reward.reward_id), **reward_item(reward)})

    def create_reward(self, reward: Reward) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**reward_key(reward.reward_id), **reward_item(reward)},
                ConditionExpression="attribute_not_exists(PK)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            old = _failed_condition(error)
            version = int(from_item(old).get("version", 1)) if old else 1
            raise reward_version_conflict(reward.reward_id, version, None) from None

    def replace_reward(self, reward: Reward, replaces: int) -> Reward:
        """An update, not a put: every term is set (or removed when absent), the stock is left as it is."""
        update = Update()
        version = update.name("version")
        update.conditions.append("attribute_exists(PK)")
        if replaces == 1:
            update.conditions.append(f"attribute_not_exists({version}) OR {version} = {update.value(1)}")
        else:
            update.conditions.append(f"{version} = {update.value(replaces)}")
        values = reward.model_dump(exclude={STOCK})
        for name, value in values.items():
            if value is None:
                update.removes.append(update.name(name))
            else:
                update.sets.append(f"{update.name(name)} = {update.value(value)}")
        request = update.request(self._table, reward_key(reward.reward_id))
        stored = self._update_reward(request["Update"], reward.reward_id, replaces)
        return stored

    def retire_reward(self, reward_id: str) -> Reward:
        update = Update()
        version = update.name("version")
        update.conditions.append("attribute_exists(PK)")
        update.sets.append(f"{update.name('active')} = {update.value(False)}")
        update.sets.append(f"{version} = if_not_exists({version}, {update.value(1)}) + {update.value(1)}")
        return self._update_reward(update.request(self._table, reward_key(reward_id))["Update"], reward_id)

    def change_stock(self, reward_id: str, change: StockChange) -> Reward:
        """One conditional update, no read: a delta under `stock >= -add` (and the most a stock holds), a level set
        outright. Which condition failed is read from the item the refusal hands back."""
        update = Update()
        stock = update.name(STOCK)
        update.conditions.append("attribute_exists(PK)")
        if isinstance(change, StockDelta):
            update.adds.append(f"{stock} {update.value(change.add)}")
            update.conditions.append(f"{stock} >= {update.value(max(0, -change.add))}")
            update.conditions.append(f"{stock} <= {update.value(MAX_STOCK - max(0, change.add))}")
        elif change.stock is None:
            update.removes.append(stock)
        else:
            update.sets.append(f"{stock} = {update.value(change.stock)}")
        request = update.request(self._table, reward_key(reward_id))["Update"]
        try:
            return self._update_reward(request, reward_id)
        except _RewardRefused as refused:
            assert isinstance(change, StockDelta)  # a level is set on any reward that exists
            held = refused.item.get(STOCK)
            raise stock_conflict(reward_id, None if held is None else int(held), change.add) from None

    def _update_reward(self, request: dict[str, Any], reward_id: str, replaces: int | None = None) -> Reward:
        """Run a conditional UpdateItem on a reward; the reward as stored after it. A failed condition: no item is
        RewardNotFound; with `replaces`, another version is a conflict; else _RewardRefused with the item."""
        try:
            answer = self._client.update_item(**request, ReturnValues="ALL_NEW")
        except ClientError as error:
            old = _failed_condition(error)
            if old is None:
                raise reward_not_found(reward_id) from None
            item = from_item(old)
            if replaces is not None:
                raise reward_version_conflict(reward_id, int(item.get("version", 1)), replaces) from None
            raise _RewardRefused(item) from None
        stored = reward_from_item(from_item(answer["Attributes"]))
        if stored is None:
            raise LoyaltyError(f"reward {reward_id} was written but does not read back")
        return stored

    def get_program(self) -> ProgramConfig | None:
        item = self._io.get(PROGRAM_KEY)
        return ProgramConfig.model_validate_json(item["document"]) if item else None

    def put_program(
        self,
        program: ProgramConfig,
        *,
        replaces: int | None,
        replaced_at: datetime | None = None,
        replaced_by: str | None = None,
        claim: Claim | None = None,
    ) -> Replay | None:
        """One transaction: the document in force, put on condition that it is still at `replaces` (absent for
        None); the same version kept as its own item, on condition that it is not kept yet; the claim, if any."""
        values = to_item(
            {
                "version": program.version,
                "document": program.model_dump_json(),
                "replaced_at": replaced_at,
                "replaced_by": replaced_by,
            }
        )
        in_force: dict[str, Any] = {"TableName": self._table, "Item": {**PROGRAM_KEY, **values}}
        if replaces is None:
            in_force["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            in_force["ConditionExpression"] = "version = :replaces"
            in_force["ExpressionAttributeValues"] = {":replaces": {"N": str(replaces)}}
        kept = {
            "TableName": self._table,
            "Item": {**program_version_key(program.version), **values},
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        items: list[dict[str, Any]] = [{"Put": in_force}, {"Put": kept}]
        if claim is not None:
            items.append(self._claim_put(claim, replaced_at or self._clock()))
        try:
            self._io.transact(items)
            return None
        except Cancelled as cancelled:
            if claim is not None:
                if cancelled.failed(2):
                    return self._replay(claim, cancelled.old_item(2))
                stored = self._io.get(claim_key(claim))  # a replay whose claim the cancellation did not report
                if stored is not None:
                    return self._replay(claim, stored)
            raise ProgramVersionMoved(f"the program is no longer at version {replaces}") from None

    def program_versions(self, limit: int, cursor: str | None) -> tuple[list[ProgramVersion], str | None]:
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": "PROGRAM"}, ":prefix": {"S": PROGRAM_VERSION_PREFIX}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            sk = decode_cursor(cursor).get("sk")
            if not isinstance(sk, str) or not sk.startswith(PROGRAM_VERSION_PREFIX):
                raise InvalidRequest("cursor is not one this API returned", field="cursor")
            request["ExclusiveStartKey"] = key("PROGRAM", sk)
        page = self._client.query(**request)
        versions = [program_version_from_item(from_item(item)) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return versions, encode_cursor({"sk": last["SK"]["S"]}) if last else None

    def program_version(self, version: int) -> ProgramVersion | None:
        item = self._io.get(program_version_key(version))
        return program_version_from_item(item) if item else None


def budget_key(promotion_id: str) -> dict[str, Any]:
    return key(f"PROMOTION#{promotion_id}", "BUDGET")


def _standing_holds(member: dict[str, Any], guards: EarnGuards) -> bool:
    """Whether the member item (as a failed transaction found it) meets the earn's tier guard."""
    headroom, pinned = guards.headroom, guards.pinned
    if pinned is not None and revision_of(member) != pinned.revision:
        return False
    if guards.revision is not None and revision_of(member) != guards.revision:
        return False
    if headroom is None:
        return True
    room, basis = member.get(TIER_HEADROOM), member.get(TIER_BASIS)
    return basis is not None and int(basis) == headroom.basis and room is not None and Decimal(room) > headroom.uses


class _RewardRefused(Exception):
    """A reward update's condition failed on an item that exists (`item`, as it was)."""

    def __init__(self, item: dict[str, Any]):
        super().__init__("condition failed")
        self.item = item


def _failed_condition(error: ClientError) -> dict[str, Any] | None:
    """The item a failed condition handed back (None: there was none); any other error is raised again."""
    if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
        raise error
    response: dict[str, Any] = dict(error.response)
    old: dict[str, Any] | None = response.get("Item")
    return old or None


def reward_item(reward: Reward) -> dict[str, Any]:
    return to_item(reward.model_dump())


def reward_from_item(item: dict[str, Any]) -> Reward | None:
    """The reward an item holds; None, logged, for one that no longer reads as a reward (a stored discount the
    old model let through without its value or currency, say): offered to no one until an admin replaces it."""
    try:
        return Reward.from_stored(item)
    except ValidationError as invalid:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in invalid.errors()]
        logger.warning(
            "a stored reward does not read", extra={"reward_id": item.get("reward_id"), "problems": problems}
        )
        return None


def _readable(items: list[dict[str, Any]]) -> list[Reward]:
    rewards = (reward_from_item(from_item(item)) for item in items)
    return [reward for reward in rewards if reward is not None]


def member_from_item(item: dict[str, Any]) -> Member:
    return member_of(item)


def entry_from_item(item: dict[str, Any]) -> LedgerEntry:
    fields = {k: v for k, v in item.items() if k in LedgerEntry.model_fields}
    fields["points"] = int(fields["points"])
    fields["unrecovered"] = int(fields.get("unrecovered", 0))
    if fields.get("program_version") is not None:
        fields["program_version"] = int(fields["program_version"])
    return LedgerEntry.model_validate(fields)


def consent_change_from_item(item: dict[str, Any]) -> ConsentChange:
    return ConsentChange.model_validate({name: item[name] for name in ConsentChange.model_fields})


def program_version_from_item(item: dict[str, Any]) -> ProgramVersion:
    replaced_at = item.get("replaced_at")
    return ProgramVersion(
        program=ProgramConfig.model_validate_json(item["document"]),
        replaced_at=datetime.fromisoformat(replaced_at) if replaced_at else None,
        replaced_by=item.get("replaced_by"),
    )
