"""The DynamoDB adapter: one table, its keys (docs/data-model.md), and the transactions that keep the ledger true.

Every balance change is ONE TransactWriteItems: the member item (counters and write-time aggregates, guarded by
conditions), the append-only ledger entry, and the idempotency claim (the order item for purchases). No read
comes before it on the earn and redeem paths, so a change costs one round trip, and a replay is answered from the
claim that the failed condition hands back in the same round trip.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

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
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidRequest,
    LoyaltyError,
    MemberNotFound,
    OrderConflict,
    OrderNotFound,
    StoreContention,
)
from loyalty.core.instants import timestamp
from loyalty.points.categories import (
    CATEGORY_MAP,
    MAX_CATEGORIES,
    OTHER_CATEGORIES,
    OrderCategories,
    fits,
    place,
    refund_shares,
    taken_from_member,
)
from loyalty.points.ledger import (
    EVENT_OF_KIND,
    EntryKind,
    LedgerEntry,
    OrderRecord,
    RefundPlan,
    plan_refund,
)
from loyalty.points.member_record import (
    FIRST_PURCHASE_AT,
    LAST_PURCHASE_AT,
    MONTHLY_MAPS,
    MONTHS_KEPT,
    POINTS_BY_MONTH,
    PURCHASE_COUNT,
    PURCHASES_BY_MONTH,
    REVISION,
    SPEND_BY_MONTH,
    is_kept,
    member_of,
    month_key,
    months_before,
    new_member_item,
)
from loyalty.points.members import Member
from loyalty.points.program import ProgramConfig
from loyalty.points.rewards import Reward

ROSTER_INDEX = "MemberRoster"  # sparse GSI over member items only (their roster_id): the refresh scans it
_PRUNE_SPAN = 12  # each purchase removes this many months beyond the window
IDEMPOTENCY_TTL_SECONDS = 30 * 24 * 3600


def member_key(member_id: str) -> dict[str, Any]:
    return key(f"MEMBER#{member_id}", "MEMBER")


@dataclass(frozen=True)
class Claim:
    """An idempotency claim written with the change it guards, holding the answer to give on a replay."""

    key: str
    fingerprint: str
    status: int
    body: dict[str, Any]
    order: OrderRecord | None = None  # purchases: the claim is the order item, keyed by order id
    expires: bool = True  # header keys expire (IDEMPOTENCY_TTL_SECONDS); natural ids (refund ids) are kept

    def item_key(self) -> dict[str, Any]:
        if self.order is not None:
            return key(f"ORDER#{self.order.order_id}", "ORDER")
        return key(f"IDEMPOTENCY#{self.key}", "IDEMPOTENCY")

    def item(self, now: datetime) -> dict[str, Any]:
        values: dict[str, Any] = {
            "fingerprint": self.fingerprint,
            "response": json.dumps({"status": self.status, "body": self.body}),
        }
        if self.order is not None:
            values.update(self.order.model_dump())
        else:
            values["claim_key"] = self.key
            if self.expires:
                values[TTL_ATTRIBUTE] = int(now.timestamp()) + IDEMPOTENCY_TTL_SECONDS
        return {**self.item_key(), **to_item(values)}


@dataclass(frozen=True)
class Replay:
    """The first answer to a request that has already been carried out."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class PurchaseFacts:
    """What a purchase adds to the member's write-time aggregates."""

    occurred_at: datetime
    amount: Decimal
    categories: OrderCategories = field(default_factory=OrderCategories)


def ledger_cursor(last_key: dict[str, Any] | None) -> str | None:
    return encode_cursor({"sk": last_key["SK"]["S"]}) if last_key else None


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

    def _replay(self, claim: Claim, old: dict[str, Any] | None) -> Replay:
        stored = old if old is not None else self._io.get(claim.item_key())
        if stored is None:  # the condition failed, so the claim existed; it can only vanish by TTL
            raise StoreContention("idempotency record changed during the request; retry")
        if stored.get("fingerprint") != claim.fingerprint:
            if claim.order is not None:
                raise OrderConflict(
                    f"order {claim.order.order_id} is already recorded with a different member, amount or currency",
                    field="order_id",
                )
            raise IdempotencyKeyReused("this Idempotency-Key was used for a different request", field="Idempotency-Key")
        response = json.loads(stored["response"])
        return Replay(status=int(response["status"]), body=response["body"])

    # ---- members --------------------------------------------------------------------------------------------

    def create_member(self, member: Member) -> tuple[Member, bool]:
        """Enroll, or return the member this external id already enrolled. (member, created)"""
        values = new_member_item(member)
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
        ]
        try:
            self._io.transact(items)
            return member, True
        except Cancelled as cancelled:
            if cancelled.failed(1):
                existing = self.member_id_for_external(member.external_id)
                if existing is None:
                    raise StoreContention("enrollment raced with an erasure; retry") from None
                return self.get_member(existing), False
            if cancelled.failed(2):  # referral code collision: the caller draws another code
                raise _ReferralCodeTaken from None
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

    # ---- ledger writes --------------------------------------------------------------------------------------

    def _member_update(
        self,
        entry: LedgerEntry,
        purchase: PurchaseFacts | None,
        *,
        out_of_order: dict[str, Any] | None = None,
        categories_seen: dict[str, Any] | None = None,
    ) -> Update:
        update = Update()
        update.conditions.append("attribute_exists(PK)")
        update.adds.append(f"{update.name(REVISION)} {update.value(1)}")
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
            update.sets.append(f"{last} = {update.value(at)}")
            update.conditions.append(f"attribute_not_exists({last}) OR {last} <= {update.value(at)}")
        else:
            last = update.name(LAST_PURCHASE_AT)
            update.conditions.append(f"{last} > {update.value(at)}")
            seen_first = out_of_order.get(FIRST_PURCHASE_AT)
            if seen_first is not None and timestamp(at) < seen_first:
                first = update.name(FIRST_PURCHASE_AT)
                update.sets.append(f"{first} = {update.value(at)}")
                update.conditions.append(f"{first} = {update.value(seen_first)}")
        now = self._clock()
        for back in range(MONTHS_KEPT + 1, MONTHS_KEPT + 1 + _PRUNE_SPAN):
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

    def _claim_put(self, claim: Claim, now: datetime) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": claim.item(now),
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
                Item=claim.item(now),
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

    def post(self, entry: LedgerEntry, claim: Claim, purchase: PurchaseFacts | None = None) -> Replay | None:
        """Apply one ledger entry atomically. Returns None when applied, or the first answer on a replay.

        Raises MemberNotFound, InsufficientPoints (debits), OrderConflict / IdempotencyKeyReused (a key reused
        for another request).
        """
        out_of_order: dict[str, Any] | None = None
        categories_seen: dict[str, Any] | None = None
        for _ in range(4):
            update = self._member_update(entry, purchase, out_of_order=out_of_order, categories_seen=categories_seen)
            items = [
                update.request(self._table, member_key(entry.member_id)),
                self._entry_put(entry),
                self._claim_put(claim, entry.created_at),
            ]
            try:
                self._io.transact(items)
                return None
            except Cancelled as cancelled:
                if cancelled.failed(2):
                    return self._replay(claim, cancelled.old_item(2))
                if not cancelled.failed(0):
                    raise LoyaltyError("ledger entry id collision") from None
                member = cancelled.old_item(0)
                if member is None:
                    member = self._io.get(member_key(entry.member_id))
                if member is None:
                    raise MemberNotFound(f"member {entry.member_id} not found", field="member_id") from None
                # The member exists: either a replay whose claim the cancellation did not report, a debit the
                # balance does not cover, an older purchase arriving after a newer one, or a purchase whose
                # categories do not all fit the member's map.
                stored = self._io.get(claim.item_key())
                if stored is not None:
                    return self._replay(claim, stored)
                if entry.points < 0 and int(member.get("available", 0)) < -entry.points:
                    raise InsufficientPoints(
                        f"{-entry.points} points needed, {int(member.get('available', 0))} available",
                        details={"available": int(member.get("available", 0)), "needed": -entry.points},
                    ) from None
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

    def refund(
        self,
        order_id: str,
        refund_id: str,
        amount: Decimal,
        claim_key: str,
        fingerprint: str,
        now: datetime,
        respond: Callable[[LedgerEntry, RefundPlan], tuple[int, dict[str, Any]]],
        *,
        member_id: str | None = None,
    ) -> Replay | tuple[LedgerEntry, RefundPlan]:
        """Reverse the points a share of an order earned (policy: loyalty.points.ledger.plan_refund).

        Reads the order and the member, then writes order, member, entry and claim in one transaction whose
        conditions pin what was read (the order's refund totals, the balance it takes from); a concurrent change
        makes the transaction fail and the refund is planned again from fresh reads.
        """
        claim_probe = Claim(key=claim_key, fingerprint=fingerprint, status=0, body={})
        for _ in range(self._io.max_attempts):
            stored = self._io.get(claim_probe.item_key())
            if stored is not None:
                return self._replay(claim_probe, stored)
            order_item = self._io.get(key(f"ORDER#{order_id}", "ORDER"))
            if order_item is None or (member_id is not None and order_item["member_id"] != member_id):
                raise OrderNotFound(f"order {order_id} not found", field="order_id")
            order = OrderRecord.model_validate(order_item)
            member = self._io.get(member_key(order.member_id))
            if member is None:
                raise MemberNotFound(f"member {order.member_id} not found", field="member_id")
            plan = plan_refund(order, amount, int(member.get("available", 0)))
            entry = LedgerEntry(
                entry_id=_new_entry_id(),
                member_id=order.member_id,
                kind=EntryKind.REVERSAL,
                points=-plan.reverse,
                created_at=now,
                order_id=order_id,
                refund_id=refund_id,
                unrecovered=plan.unrecovered,
            )
            status, body = respond(entry, plan)
            claim = Claim(key=claim_key, fingerprint=fingerprint, status=status, body=body, expires=False)

            order_update = Update()
            order_update.conditions.append(
                f"{order_update.name('refunded_amount')} = {order_update.value(order.refunded_amount)}"
            )
            order_update.conditions.append(
                f"{order_update.name('reversal_due')} = {order_update.value(order.reversal_due)}"
            )
            order_update.adds.append(f"{order_update.name('refunded_amount')} {order_update.value(amount)}")
            order_update.adds.append(f"{order_update.name('reversal_due')} {order_update.value(plan.due)}")

            member_update = self._member_update(entry, None)
            for aggregate, delta in (("spend_by_month", -amount), ("points_by_month", -plan.due)):
                if delta:
                    self._add_to_month(member_update, aggregate, order.occurred_at, delta)
            self._take_categories(member_update, order, amount, member)
            items = [
                order_update.request(self._table, key(f"ORDER#{order_id}", "ORDER"), return_old=False),
                member_update.request(self._table, member_key(order.member_id), return_old=False),
                self._entry_put(entry),
                self._claim_put(claim, now),
            ]
            try:
                self._io.transact(items)
                return entry, plan
            except Cancelled as cancelled:
                if cancelled.failed(3):
                    return self._replay(claim, cancelled.old_item(3))
                continue  # the order or the balance moved since the reads: plan again
        raise StoreContention("the order kept changing during the refund; retry")

    def _take_categories(self, update: Update, order: OrderRecord, amount: Decimal, member: dict[str, Any]) -> None:
        """Take the refund's share of each of the order's categories back out of the member's category spend
        (loyalty.points.categories.refund_shares), each subtraction guarded so that nothing goes below 0: a concurrent
        refund of another order that got there first fails the transaction, and the refund is planned again."""
        ordered = OrderCategories(order.category_totals, order.other_categories_total)
        if not ordered.totals and not ordered.other:
            return
        shares = refund_shares(ordered, order.amount, order.refunded_amount, amount)
        by_name, other = taken_from_member(shares, member.get(CATEGORY_MAP), member.get(OTHER_CATEGORIES))
        spend = update.name(CATEGORY_MAP) if by_name else ""  # DynamoDB refuses a placeholder the update leaves unused
        for category, take in by_name.items():
            path, value = f"{spend}.{update.name(category)}", update.value(take)
            update.sets.append(f"{path} = {path} - {value}")
            update.conditions.append(f"{path} >= {value}")
        if other:
            name = update.name(OTHER_CATEGORIES)
            update.adds.append(f"{name} {update.value(-other)}")
            update.conditions.append(f"{name} >= {update.value(other)}")

    # ---- catalog and program ------------------------------------------------------------------------------

    def list_rewards(self) -> list[Reward]:
        rewards: list[Reward] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "CATALOG"}},
        }
        while True:
            page = self._client.query(**request)
            rewards.extend(Reward.model_validate(from_item(item)) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return rewards
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_reward(self, reward: Reward) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={**key("CATALOG", f"REWARD#{reward.reward_id}"), **to_item(reward.model_dump())},
        )

    def get_program(self) -> ProgramConfig | None:
        item = self._io.get(key("PROGRAM", "CONFIG"))
        return ProgramConfig.model_validate_json(item["document"]) if item else None

    def put_program(self, program: ProgramConfig) -> None:
        self._client.put_item(
            TableName=self._table,
            Item={
                **key("PROGRAM", "CONFIG"),
                **to_item({"version": program.version, "document": program.model_dump_json()}),
            },
        )


class _ReferralCodeTaken(Exception):
    pass


ReferralCodeTaken = _ReferralCodeTaken


def _new_entry_id() -> str:
    from loyalty.core.ids import ulid

    return ulid()


def member_from_item(item: dict[str, Any]) -> Member:
    return member_of(item)


def entry_from_item(item: dict[str, Any]) -> LedgerEntry:
    fields = {k: v for k, v in item.items() if k in LedgerEntry.model_fields}
    fields["points"] = int(fields["points"])
    fields["unrecovered"] = int(fields.get("unrecovered", 0))
    return LedgerEntry.model_validate(fields)
