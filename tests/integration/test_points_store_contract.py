"""One contract for every points store (loyalty.points.ports.PointsStore): the same behaviours, run against the
in-memory store, the DynamoDB store on moto and the DynamoDB store on DynamoDB Local, so the fake the service's
unit tests use cannot drift from the store that runs in production.

Each test calls the port directly (no service): every method, every condition (insufficient points, order
conflicts, idempotency key reuse, referral code and external id taken, a refund's pins, a program replaced over
another version than the one in force), the replays of answers and of remembered refusals, ledger pages and cursors,
the program's kept versions, and the counters and write-time aggregates the member keeps.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.dynamodb.points_store import LoyaltyStore, month_key, months_before, redeemed_key, reward_key
from loyalty.adapters.dynamodb.table import from_item, to_item
from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core import ids
from loyalty.core.errors import (
    ConfigVersionConflict,
    IdempotencyKeyReused,
    InsufficientPoints,
    InvalidRequest,
    LimitReached,
    MemberNotFound,
    OrderConflict,
    OutOfStock,
    RewardNotFound,
    StockConflict,
    TierTooLow,
)
from loyalty.core.idempotency import Claim, Replay
from loyalty.core.instants import timestamp
from loyalty.points.categories import MAX_CATEGORIES, OrderCategories
from loyalty.points.ledger import EntryKind, LedgerEntry, OrderRecord
from loyalty.points.members import (
    Consent,
    ConsentChange,
    ConsentChannel,
    Member,
    Profile,
    ProfilePatch,
    TierMove,
)
from loyalty.points.ports import (
    BudgetSpent,
    BudgetUse,
    EarnGuards,
    ExternalIdTaken,
    HeadroomGuard,
    MemberHoldings,
    MemberLimit,
    PinnedStanding,
    PointsStore,
    ProgramVersionMoved,
    Redemption,
    ReferralCodeTaken,
    RefundBasisMoved,
    Reversal,
    RewardChanged,
    StandingMoved,
    StockDelta,
    StockLevel,
    TierReviewed,
)
from loyalty.points.program import MAX_DOCUMENT_BYTES, ProgramConfig, ProgramVersion
from loyalty.points.rewards import MAX_STOCK, LimitPeriod, Reward, RewardKind
from tests.integration.conftest import Backend, create_loyalty_table

D = Decimal
START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
COUNTERS = ("available", "pending", "lifetime_earned", "redeemed", "reversed", "expired", "unrecovered")
AGGREGATES = (
    *COUNTERS,
    "purchase_count",
    "first_purchase_at",
    "last_purchase_at",
    "first_purchase",
    "spend_by_month",
    "purchases_by_month",
    "points_by_month",
    "spend_by_category",
    "spend_other_categories",
    "revision",
)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Subject:
    """A points store under contract, and how to read back what the member item keeps."""

    backend: str
    store: PointsStore
    clock: Clock
    read_member_item: Callable[[str], dict[str, Any]]
    read_tier_events: Callable[[str], list[dict[str, Any]]]
    members: list[str] = field(default_factory=list)
    # the member's counter of a reward in a period (member id, reward id, period key), as the store keeps it
    read_redeemed: Callable[[str, str, str], int] = lambda member_id, reward_id, period: 0
    put_raw_reward: Callable[[dict[str, Any]], None] | None = None  # an item as an older model stored it (DynamoDB)

    def aggregates(self, member_id: str) -> dict[str, Any]:
        item = self.read_member_item(member_id)
        return {name: item[name] for name in AGGREGATES if name in item}

    # -- acting through the port --

    def enroll(self) -> str:
        member = new_member()
        self.store.create_member(member)
        return member.member_id

    def credit(self, member_id: str, points: int = 50, key: str | None = None, fingerprint: str = "f") -> Claim:
        claim = Claim(key or f"activity:{uuid.uuid4().hex}", fingerprint, 201, {"points": points})
        assert self.store.post(entry(member_id, EntryKind.BONUS, points), claim) is None
        return claim

    def buy(
        self,
        member_id: str,
        amount: str,
        *,
        at: datetime | None = None,
        categories: OrderCategories | None = None,
        order_id: str | None = None,
        base: tuple[str, str] | None = None,
    ) -> OrderRecord:
        """A purchase of `amount` USD, or, with `base` (amount, currency), of `amount` in another currency whose
        spend is `base` in the base currency."""
        order = purchase_order(member_id, D(amount), at or self.clock.now, categories, order_id)
        if base is not None:
            order = order.model_copy(update={"currency": "EUR", "base_amount": D(base[0]), "base_currency": base[1]})
        claim = Claim(f"order:{order.order_id}", f"{member_id}:{amount}", 201, {"order": order.order_id})
        assert self.store.post(entry(member_id, EntryKind.EARN, order.points), claim, order) is None
        return order

    def snapshot(self, member_id: str) -> tuple[Any, ...]:
        """What a refused write must leave as it was: the member's item, ledger and balance."""
        entries, _ = self.store.ledger_page(member_id, 100, None)
        return self.aggregates(member_id), [e.entry_id for e in entries], self.store.get_member(member_id)


def new_member() -> Member:
    return Member(
        member_id=ids.member_id(),
        external_id=f"cust-{uuid.uuid4().hex[:12]}",
        profile=Profile(first_name="Ada"),
        consent=Consent(email=True),
        referral_code=ids.referral_code(),
        tier="Insider",
        enrolled_at=START,
    )


def entry(member_id: str, kind: EntryKind, points: int, **facts: Any) -> LedgerEntry:
    return LedgerEntry(entry_id=ids.ulid(), member_id=member_id, kind=kind, points=points, created_at=START, **facts)


def purchase_order(
    member_id: str, amount: Decimal, at: datetime, categories: OrderCategories | None, order_id: str | None
) -> OrderRecord:
    ordered = categories or OrderCategories()
    return OrderRecord(
        order_id=order_id or f"web-{uuid.uuid4().hex[:10]}",
        member_id=member_id,
        amount=amount,
        currency="USD",
        points=int(amount),
        occurred_at=at,
        category_totals=ordered.totals,
        other_categories_total=ordered.other,
    )


@pytest.fixture
def subject(store_backend: Backend) -> Iterator[Subject]:
    clock = Clock()
    if store_backend.name == "memory":
        memory = MemoryPointsStore(clock=clock)

        def memory_tier_events(member_id: str) -> list[dict[str, Any]]:
            return [event for event in memory.tier_events if event["member_id"] == member_id]

        yield Subject("memory", memory, clock, memory.member_item, memory_tier_events, read_redeemed=memory.redeemed)
        return
    client = store_backend.client
    table = create_loyalty_table(client)

    def read_member_item(member_id: str) -> dict[str, Any]:
        key = {"PK": {"S": f"MEMBER#{member_id}"}, "SK": {"S": "MEMBER"}}
        return from_item(client.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"])

    def read_tier_events(member_id: str) -> list[dict[str, Any]]:
        page = client.query(
            TableName=table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :tier)",
            ExpressionAttributeValues={":pk": {"S": f"MEMBER#{member_id}"}, ":tier": {"S": "TIER#"}},
            ConsistentRead=True,
        )
        return [{k: v for k, v in from_item(item).items() if k not in ("PK", "SK")} for item in page["Items"]]

    def read_redeemed(member_id: str, reward_id: str, period: str) -> int:
        item = client.get_item(TableName=table, Key=redeemed_key(member_id, reward_id, period), ConsistentRead=True)
        return int(from_item(item["Item"])["redeemed"]) if "Item" in item else 0

    def put_raw_reward(values: dict[str, Any]) -> None:
        client.put_item(TableName=table, Item={**reward_key(values["reward_id"]), **to_item(values)})

    store = LoyaltyStore(client, table, clock=clock)
    yield Subject(
        store_backend.name, store, clock, read_member_item, read_tier_events, [], read_redeemed, put_raw_reward
    )
    client.delete_table(TableName=table)


# ---- members ------------------------------------------------------------------------------------------------


def test_an_enrolled_member_reads_back_at_zero_with_its_external_id_and_referral_code(subject: Subject) -> None:
    member = new_member()

    subject.store.create_member(member)

    assert subject.store.get_member(member.member_id) == member
    assert subject.store.member_id_for_external(member.external_id) == member.member_id
    assert subject.store.member_id_for_referral(member.referral_code) == member.member_id
    assert subject.aggregates(member.member_id) == {
        **dict.fromkeys(COUNTERS, 0),
        "purchase_count": 0,
        "spend_by_month": {},
        "purchases_by_month": {},
        "points_by_month": {},
        "spend_by_category": {},
        "spend_other_categories": 0,
        "revision": 1,
    }


@pytest.mark.parametrize("taken", ["external_id", "referral_code"])
def test_an_external_id_or_referral_code_already_held_refuses_the_enrolment_and_writes_nothing(
    subject: Subject, taken: str
) -> None:
    holder = new_member()
    subject.store.create_member(holder)
    other = new_member().model_copy(update={taken: getattr(holder, taken)})

    with pytest.raises(ExternalIdTaken if taken == "external_id" else ReferralCodeTaken):
        subject.store.create_member(other)

    with pytest.raises(MemberNotFound):
        subject.store.get_member(other.member_id)
    assert subject.store.member_id_for_external(holder.external_id) == holder.member_id
    assert subject.store.member_id_for_referral(holder.referral_code) == holder.member_id
    if taken == "external_id":
        assert subject.store.member_id_for_referral(other.referral_code) is None
    else:
        assert subject.store.member_id_for_external(other.external_id) is None


def test_an_unknown_member_is_not_found_and_unknown_ids_name_no_one(subject: Subject) -> None:
    with pytest.raises(MemberNotFound) as missing:
        subject.store.get_member("m_unknown")
    with pytest.raises(MemberNotFound):
        subject.store.holdings("m_unknown")

    assert (missing.value.status, missing.value.field) == (404, "member_id")
    assert subject.store.member_id_for_external("cust-nobody") is None
    assert subject.store.member_id_for_referral("ZZZZ-ZZZZ") is None


# ---- the profile and consents (docs/members.md) ------------------------------------------------------------


def consent_change(channel: ConsentChannel, granted: bool, source: str = "member") -> ConsentChange:
    return ConsentChange(change_id=ids.ulid(), channel=channel, granted=granted, at=START, source=source)


def test_a_profile_change_sets_and_removes_fields_and_moves_the_revision(subject: Subject) -> None:
    member_id = subject.enroll()  # first_name Ada
    changes = ProfilePatch.model_validate({"email": "ada@example.com", "country": "FR"}).changes()
    assert subject.store.update_profile(member_id, changes) is None
    removed = ProfilePatch.model_validate({"first_name": None, "locale": None}).changes()  # locale: never set

    assert subject.store.update_profile(member_id, removed) is None

    assert subject.store.get_member(member_id).profile == Profile(email="ada@example.com", country="FR")
    assert subject.read_member_item(member_id)["profile"] == {"email": "ada@example.com", "country": "FR"}
    assert subject.aggregates(member_id)["revision"] == 3


def test_a_profile_change_with_a_claim_is_made_once_and_a_key_taken_by_another_request_is_refused(
    subject: Subject,
) -> None:
    member_id = subject.enroll()
    claim = Claim(f"profile:{member_id}:k1", "fingerprint-1", 200, {})
    changes = ProfilePatch.model_validate({"email": "ada@example.com"}).changes()
    assert subject.store.update_profile(member_id, changes, claim) is None
    subject.store.update_profile(member_id, ProfilePatch.model_validate({"email": None}).changes())
    before = subject.snapshot(member_id)

    assert subject.store.update_profile(member_id, changes, claim) == Replay(200, {})
    with pytest.raises(IdempotencyKeyReused):
        subject.store.update_profile(member_id, changes, Claim(claim.key, "fingerprint-2", 200, {}))

    assert subject.snapshot(member_id) == before  # the replay did not set the email again


def test_an_empty_profile_change_with_a_claim_keeps_the_claim_and_leaves_the_member_as_it_was(
    subject: Subject,
) -> None:
    member_id = subject.enroll()
    claim = Claim(f"profile:{member_id}:k1", "fingerprint-1", 200, {})
    before = subject.snapshot(member_id)

    assert subject.store.update_profile(member_id, ProfilePatch().changes(), claim) is None

    assert subject.snapshot(member_id) == before
    assert subject.store.replay(claim) == Replay(200, {})


def test_a_profile_change_of_an_unknown_member_is_not_found_and_keeps_no_claim(subject: Subject) -> None:
    claim = Claim("profile:m_unknown:k1", "fingerprint-1", 200, {})
    changes = ProfilePatch.model_validate({"first_name": "Ada"}).changes()

    with pytest.raises(MemberNotFound):
        subject.store.update_profile("m_unknown", changes, claim)

    assert subject.store.replay(claim) is None


def test_a_consent_change_sets_the_flag_moves_the_revision_and_is_kept_in_the_history(subject: Subject) -> None:
    member_id = subject.enroll()  # email granted at enrolment, without a history (created without consents)
    change = consent_change(ConsentChannel.PROFILING, True)

    assert subject.store.set_consent(member_id, change) is True

    assert subject.store.get_member(member_id).consent == Consent(email=True, profiling=True)
    assert subject.read_member_item(member_id)["consent"]["profiling"] is True
    assert subject.aggregates(member_id)["revision"] == 2
    assert subject.store.consent_history(member_id, 10, None) == ([change], None)


@pytest.mark.parametrize(
    ("channel", "granted"),
    [(ConsentChannel.EMAIL, True), (ConsentChannel.SMS, False)],
    ids=["granted-again", "withdrawn-though-never-granted"],
)
def test_a_consent_set_to_what_it_already_is_writes_and_records_nothing(
    subject: Subject, channel: ConsentChannel, granted: bool
) -> None:
    member_id = subject.enroll()  # email granted, sms absent (no)
    before = subject.snapshot(member_id)

    assert subject.store.set_consent(member_id, consent_change(channel, granted)) is False

    assert subject.snapshot(member_id) == before
    assert subject.store.consent_history(member_id, 10, None) == ([], None)


def test_a_consent_change_of_an_unknown_member_is_not_found(subject: Subject) -> None:
    with pytest.raises(MemberNotFound):
        subject.store.set_consent("m_unknown", consent_change(ConsentChannel.EMAIL, True))


def test_concurrent_identical_consent_changes_record_one(subject: Subject) -> None:
    member_id = subject.enroll()
    changes = [consent_change(ConsentChannel.PUSH, True) for _ in range(6)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        written = list(pool.map(lambda change: subject.store.set_consent(member_id, change), changes))

    assert written.count(True) == 1
    assert [c.channel for c in subject.store.consent_history(member_id, 10, None)[0]] == [ConsentChannel.PUSH]
    assert subject.aggregates(member_id)["revision"] == 2


def test_the_consents_given_at_enrolment_are_the_start_of_the_history(subject: Subject) -> None:
    member = new_member()
    given = (consent_change(ConsentChannel.EMAIL, True, "enrollment"),)

    subject.store.create_member(member, consents=given)

    assert subject.store.consent_history(member.member_id, 10, None) == (list(given), None)


def test_the_consent_history_pages_newest_first_inside_the_members_own_history(subject: Subject) -> None:
    alice, bob = subject.enroll(), subject.enroll()
    for member_id in (bob, alice):  # bob's changes first: older than any position in alice's history
        for granted in (True, False, True):
            subject.store.set_consent(member_id, consent_change(ConsentChannel.SMS, granted))
        subject.credit(member_id, 5)  # a ledger entry in the same partition is no history
    first, cursor = subject.store.consent_history(alice, 2, None)
    assert cursor is not None

    rest, _ = subject.store.consent_history(alice, 10, cursor)
    bobs, _ = subject.store.consent_history(bob, 10, cursor)

    assert [c.granted for c in first + rest] == [True, False, True]
    ids_read = [c.change_id for c in first + rest]
    assert ids_read == sorted(ids_read, reverse=True)
    assert len(bobs) == 3 and all(c.change_id < first[-1].change_id for c in bobs)  # bob's, and only bob's
    _, ledger_cursor = subject.store.ledger_page(alice, 1, None)
    assert ledger_cursor is not None
    with pytest.raises(InvalidRequest) as refused:
        subject.store.consent_history(alice, 2, ledger_cursor)
    assert refused.value.field == "cursor"


# ---- posting entries ----------------------------------------------------------------------------------------


def test_a_credit_moves_the_counters_and_the_months_points_and_its_replay_changes_nothing(subject: Subject) -> None:
    member_id = subject.enroll()

    claim = subject.credit(member_id, 50)
    before = subject.snapshot(member_id)
    replay = subject.store.post(entry(member_id, EntryKind.BONUS, 50), claim)

    assert replay == Replay(201, {"points": 50})
    assert subject.snapshot(member_id) == before
    item = subject.aggregates(member_id)
    assert (item["available"], item["lifetime_earned"], item["revision"]) == (50, 50, 2)
    assert item["points_by_month"] == {month_key(START): 50}
    assert item["purchase_count"] == 0 and item["spend_by_month"] == {}


def test_a_key_taken_by_another_request_is_refused_and_writes_nothing(subject: Subject) -> None:
    member_id = subject.enroll()
    claim = subject.credit(member_id, 50, fingerprint="first")
    before = subject.snapshot(member_id)

    with pytest.raises(IdempotencyKeyReused) as reused:
        subject.store.post(entry(member_id, EntryKind.BONUS, 60), Claim(claim.key, "second", 201, {}))

    assert (reused.value.status, reused.value.field) == (422, "Idempotency-Key")
    assert subject.snapshot(member_id) == before


@pytest.mark.parametrize(
    ("kind", "counter", "extra"),
    [(EntryKind.REDEEM, "redeemed", {}), (EntryKind.ADJUSTMENT, "reversed", {"reason": "correction"})],
)
def test_a_debit_the_balance_covers_is_applied_and_one_it_does_not_is_insufficient_points(
    subject: Subject, kind: EntryKind, counter: str, extra: dict[str, Any]
) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, 30)

    assert subject.store.post(entry(member_id, kind, -30, **extra), Claim(f"k:{uuid.uuid4()}", "f", 201, {})) is None
    subject.credit(member_id, 20)
    before = subject.snapshot(member_id)
    refused = Claim(f"k:{uuid.uuid4()}", "f", 201, {})
    with pytest.raises(InsufficientPoints) as insufficient:
        subject.store.post(entry(member_id, kind, -21, **extra), refused)

    assert insufficient.value.status == 409
    assert insufficient.value.body()["available"] == 20 and insufficient.value.body()["needed"] == 21
    assert subject.snapshot(member_id) == before
    assert subject.store.replay(refused) is None  # the refusal itself is the service's to remember
    item = subject.aggregates(member_id)
    assert (item["available"], item[counter]) == (20, 30)


def test_an_entry_for_an_unknown_member_is_not_found_and_its_key_stays_free(subject: Subject) -> None:
    claim = Claim("activity:ghost", "f", 201, {})

    with pytest.raises(MemberNotFound):
        subject.store.post(entry("m_unknown", EntryKind.BONUS, 5), claim)

    assert subject.store.replay(claim) is None


# ---- purchases: the order is the claim --------------------------------------------------------------------


def test_a_purchase_records_its_order_and_keeps_the_members_aggregates(subject: Subject) -> None:
    member_id = subject.enroll()
    older = START - timedelta(days=40)

    first = subject.buy(member_id, "40.25", at=older)
    subject.buy(member_id, "10.50")

    assert subject.store.get_order(first.order_id) == first
    item = subject.aggregates(member_id)
    assert (item["available"], item["lifetime_earned"], item["purchase_count"]) == (50, 50, 2)
    assert (item["first_purchase_at"], item["last_purchase_at"]) == (timestamp(older), timestamp(START))
    assert item["spend_by_month"] == {month_key(older): D("40.25"), month_key(START): D("10.5")}
    assert item["purchases_by_month"] == {month_key(older): 1, month_key(START): 1}
    assert item["points_by_month"] == {month_key(older): 40, month_key(START): 10}
    assert item["first_purchase"] == {"order_id": first.order_id, "at": timestamp(older), "amount": D("40.25")}
    member = subject.store.get_member(member_id)
    assert (member.purchases.first_purchase_at, member.purchases.last_purchase_at) == (older, START)
    assert subject.store.holdings(member_id).first_order_id == first.order_id


def test_spend_in_another_currency_is_written_in_the_base_currency_and_the_order_keeps_its_own(
    subject: Subject,
) -> None:
    member_id = subject.enroll()

    order = subject.buy(member_id, "10", base=("10.8", "USD"), categories=OrderCategories({"makeup": D("5.4")}))

    stored = subject.store.get_order(order.order_id)
    assert stored is not None and (stored.amount, stored.currency) == (D(10), "EUR")
    assert (stored.base_amount, stored.base_currency) == (D("10.8"), "USD")
    item = subject.aggregates(member_id)
    assert item["spend_by_month"] == {month_key(START): D("10.8")}
    assert item["spend_by_category"] == {"makeup": D("5.4")}
    assert item["first_purchase"]["amount"] == D("10.8")


def test_a_purchase_replayed_gets_its_first_answer_and_one_with_other_facts_is_an_order_conflict(
    subject: Subject,
) -> None:
    member_id = subject.enroll()
    order = subject.buy(member_id, "42", order_id="web-1")
    claim = Claim("order:web-1", f"{member_id}:42", 201, {"order": "web-1"})
    before = subject.snapshot(member_id)

    replay = subject.store.post(entry(member_id, EntryKind.EARN, 42), claim, order)
    with pytest.raises(OrderConflict) as conflict:
        subject.store.post(entry(member_id, EntryKind.EARN, 43), Claim("order:web-1", "other", 201, {}), order)

    assert replay == Replay(201, {"order": "web-1"})
    assert (conflict.value.status, conflict.value.field) == (409, "order_id")
    assert subject.snapshot(member_id) == before
    assert subject.store.get_order("web-1") == order


def test_a_late_purchase_moves_the_first_purchase_back_and_not_the_last(subject: Subject) -> None:
    member_id = subject.enroll()
    newest, middle, oldest = START - timedelta(days=2), START - timedelta(days=40), START - timedelta(days=100)

    orders = [subject.buy(member_id, "10", at=at) for at in (newest, middle, oldest)]
    subject.buy(member_id, "10", at=START - timedelta(days=70))  # late, but not the earliest

    item = subject.aggregates(member_id)
    assert (item["first_purchase_at"], item["last_purchase_at"]) == (timestamp(oldest), timestamp(newest))
    assert item["first_purchase"] == {"order_id": orders[-1].order_id, "at": timestamp(oldest), "amount": D(10)}
    assert item["purchase_count"] == 4
    assert sum(item["purchases_by_month"].values()) == 4


def test_the_monthly_aggregates_keep_a_window_and_purchases_prune_what_falls_out_of_it(subject: Subject) -> None:
    member_id = subject.enroll()
    too_old = START - timedelta(days=31 * 25)
    assert month_key(too_old) <= months_before(START, 24)

    subject.buy(member_id, "7", at=too_old)  # counted, but not in the months the aggregates keep
    subject.buy(member_id, "5")
    subject.clock.now = START + timedelta(days=31 * 30)  # 30 months on: START's month is past the window
    subject.buy(member_id, "3", at=subject.clock.now)

    item = subject.aggregates(member_id)
    assert item["purchase_count"] == 3 and item["available"] == 15
    assert item["spend_by_month"] == {month_key(subject.clock.now): 3}
    assert item["purchases_by_month"] == {month_key(subject.clock.now): 1}
    assert item["points_by_month"] == {month_key(subject.clock.now): 3}


def test_a_purchases_categories_fill_the_map_and_the_rest_goes_to_the_other_bucket(subject: Subject) -> None:
    member_id = subject.enroll()
    subject.buy(member_id, "48", categories=OrderCategories({f"c{i:02d}": D(1) for i in range(48)}))

    order = OrderCategories({"x-large": D(9), "x-mid": D(5), "x-small": D(2), "c00": D(1)}, D("0.5"))
    subject.buy(member_id, "17.5", categories=order)

    holdings = subject.store.holdings(member_id)
    assert holdings.spend_by_category is not None and len(holdings.spend_by_category) == MAX_CATEGORIES
    assert {name: holdings.spend_by_category.get(name) for name in ("x-large", "x-mid", "x-small", "c00")} == {
        "x-large": D(9),
        "x-mid": D(5),
        "x-small": None,
        "c00": D(2),
    }
    assert holdings == MemberHoldings(member_id, 65, holdings.spend_by_category, D("2.5"), holdings.first_order_id)
    assert holdings.first_order_id is not None


# ---- remembered refusals and replays ------------------------------------------------------------------------


def test_a_remembered_refusal_is_the_answer_under_its_key_from_then_on(subject: Subject) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, 10)
    refusal = Claim(f"redeem:{member_id}:key-1", "f", 409, {"code": "insufficient_points"}, expires=False)
    before = subject.snapshot(member_id)

    assert subject.store.replay(refusal) is None
    assert subject.store.remember(refusal, START) is None
    again = subject.store.remember(refusal.answering(404, {"code": "other"}), START)
    replay = subject.store.replay(refusal)
    posted = subject.store.post(entry(member_id, EntryKind.REDEEM, -5), refusal.answering(201, {}))

    assert again == replay == posted == Replay(409, {"code": "insufficient_points"})
    assert subject.snapshot(member_id) == before
    with pytest.raises(IdempotencyKeyReused):
        subject.store.replay(Claim(refusal.key, "another request", 0, {}))
    with pytest.raises(IdempotencyKeyReused):
        subject.store.remember(Claim(refusal.key, "another request", 409, {}), START)


# ---- refunds: read, planned by the service, written pinned to the reads --------------------------------------


def reversal(
    subject: Subject,
    order: OrderRecord,
    amount: str,
    *,
    due: int,
    reverse: int | None = None,
    taken: OrderCategories | None = None,
    key: str | None = None,
    fingerprint: str = "f",
    spend: str | None = None,
    cancels_purchase: bool = False,
    first_purchase: bool = False,
) -> Reversal:
    reversed_now = due if reverse is None else reverse
    reversal_entry = LedgerEntry(
        entry_id=ids.ulid(),
        member_id=order.member_id,
        kind=EntryKind.REVERSAL,
        points=-reversed_now,
        created_at=subject.clock.now,
        order_id=order.order_id,
        refund_id="rf",
        unrecovered=due - reversed_now,
    )
    claim = Claim(key or f"refund:{order.order_id}:{uuid.uuid4().hex}", fingerprint, 201, {"due": due}, expires=False)
    return Reversal(
        reversal_entry,
        claim,
        order,
        D(amount),
        due,
        taken or OrderCategories(),
        spend=None if spend is None else D(spend),
        cancels_purchase=cancels_purchase,
        first_purchase=first_purchase,
    )


def test_unknown_orders_read_as_none(subject: Subject) -> None:
    assert subject.store.get_order("web-never") is None


def test_a_planned_refund_is_written_to_the_order_the_member_and_its_orders_month(subject: Subject) -> None:
    member_id = subject.enroll()
    placed = START - timedelta(days=70)
    order = subject.buy(
        member_id, "100", at=placed, categories=OrderCategories({"makeup": D(30), "skin care": D(40)}, D(10))
    )
    subject.buy(member_id, "5")
    subject.credit(member_id, 3)  # 108 available

    planned = reversal(
        subject, order, "60", due=110, reverse=108, taken=OrderCategories({"makeup": D(18), "skin care": D(24)}, D(6))
    )
    assert subject.store.reverse(planned) is None
    before = subject.snapshot(member_id)
    replay = subject.store.reverse(planned)

    assert replay == Replay(201, {"due": 110})
    assert subject.snapshot(member_id) == before
    stored = subject.store.get_order(order.order_id)
    assert stored is not None and (stored.refunded_amount, stored.reversal_due) == (D(60), 110)
    item = subject.aggregates(member_id)
    assert (item["available"], item["reversed"], item["unrecovered"]) == (0, 108, 2)
    assert item["spend_by_month"][month_key(placed)] == 40
    assert item["points_by_month"][month_key(placed)] == 100 - 110
    assert item["spend_by_month"][month_key(START)] == 5
    assert item["purchases_by_month"][month_key(placed)] == 1  # a refund is not an un-purchase
    assert subject.store.holdings(member_id) == MemberHoldings(
        member_id, 0, {"makeup": D(12), "skin care": D(16)}, D(4), first_order_id=order.order_id
    )
    entries, _ = subject.store.ledger_page(member_id, 10, None)
    assert [e for e in entries if e.kind is EntryKind.REVERSAL] == [planned.entry]


def test_the_refund_that_completes_an_order_takes_the_purchase_out_of_the_counts(subject: Subject) -> None:
    member_id = subject.enroll()
    placed = START - timedelta(days=70)
    first = subject.buy(member_id, "100", at=placed)
    subject.buy(member_id, "5")
    subject.store.reverse(reversal(subject, first, "40", due=40, first_purchase=True))
    after_part = subject.aggregates(member_id)
    moved_on = subject.store.get_order(first.order_id)
    assert moved_on is not None

    rest = reversal(subject, moved_on, "60", due=60, cancels_purchase=True, first_purchase=True)
    assert subject.store.reverse(rest) is None

    assert after_part["purchase_count"] == 2 and after_part["purchases_by_month"][month_key(placed)] == 1
    assert after_part["first_purchase"]["amount"] == 60 and "refunded" not in after_part["first_purchase"]
    item = subject.aggregates(member_id)
    assert item["purchase_count"] == 1
    assert item["purchases_by_month"] == {month_key(placed): 0, month_key(START): 1}
    assert item["spend_by_month"] == {month_key(placed): 0, month_key(START): 5}
    assert item["first_purchase"] == {
        "order_id": first.order_id,
        "at": timestamp(placed),
        "amount": 0,
        "refunded": True,
    }
    # The first and last purchase moments stay: the item keeps no other purchase's moment to move them to
    assert (item["first_purchase_at"], item["last_purchase_at"]) == (timestamp(placed), timestamp(START))


def test_a_refund_in_another_currency_takes_its_spend_in_the_base_currency(subject: Subject) -> None:
    member_id = subject.enroll()
    order = subject.buy(member_id, "10", base=("10.8", "USD"))

    subject.store.reverse(reversal(subject, order, "10", due=10, spend="10.8", cancels_purchase=True))

    item = subject.aggregates(member_id)
    assert item["spend_by_month"] == {month_key(START): 0} and item["purchase_count"] == 0


def test_a_refund_of_the_first_purchase_too_small_to_take_spend_leaves_its_record_and_writes_the_rest(
    subject: Subject,
) -> None:
    member_id = subject.enroll()
    order = subject.buy(member_id, "10", base=("0.05", "USD"))  # a currency worth little: 0.001 of it is no spend

    assert subject.store.reverse(reversal(subject, order, "0.001", due=0, spend="0", first_purchase=True)) is None

    stored = subject.store.get_order(order.order_id)
    assert stored is not None and stored.refunded_amount == D("0.001")
    assert subject.aggregates(member_id)["first_purchase"]["amount"] == D("0.05")


def test_a_refund_planned_for_the_first_purchase_is_refused_as_moved_once_an_older_one_took_its_place(
    subject: Subject,
) -> None:
    member_id = subject.enroll()
    order = subject.buy(member_id, "100", at=START - timedelta(days=10))
    planned = reversal(subject, order, "100", due=100, cancels_purchase=True, first_purchase=True)
    older = subject.buy(member_id, "20", at=START - timedelta(days=30))  # arrives late: the first purchase now
    before = subject.snapshot(member_id), subject.store.get_order(order.order_id)

    with pytest.raises(RefundBasisMoved):
        subject.store.reverse(planned)

    assert (subject.snapshot(member_id), subject.store.get_order(order.order_id)) == before
    assert subject.store.holdings(member_id).first_order_id == older.order_id
    assert subject.store.replay(planned.claim) is None


PINS = {
    "order-refunded-since": lambda s, o: s.store.reverse(reversal(s, o, "10", due=10)),
    "balance-spent-since": lambda s, o: s.store.post(
        entry(o.member_id, EntryKind.REDEEM, -95), Claim(f"k:{uuid.uuid4()}", "f", 201, {})
    ),
}


@pytest.mark.parametrize(
    ("moved", "planned"),
    [
        ("order-refunded-since", {"amount": "20", "due": 20}),
        ("balance-spent-since", {"amount": "20", "due": 20}),
        ("nothing", {"amount": "20", "due": 20, "taken": OrderCategories({"makeup": D("30.001")})}),
        ("nothing", {"amount": "20", "due": 20, "taken": OrderCategories({"never-bought": D(1)})}),
        ("nothing", {"amount": "20", "due": 20, "taken": OrderCategories(other=D("0.001"))}),
        ("nothing", {"amount": "20", "due": 101}),
    ],
    ids=[
        "order-moved",
        "balance-no-longer-covers",
        "category-below-zero",
        "category-not-held",
        "other-bucket-below-zero",
        "more-than-available",
    ],
)
def test_a_planned_refund_whose_reads_moved_is_refused_as_moved_and_writes_nothing(
    subject: Subject, moved: str, planned: dict[str, Any]
) -> None:
    member_id = subject.enroll()
    order = subject.buy(member_id, "100", categories=OrderCategories({"makeup": D(30)}))
    stale = reversal(subject, order, planned["amount"], due=planned["due"], taken=planned.get("taken"))
    if moved in PINS:
        PINS[moved](subject, order)
    before = subject.snapshot(member_id), subject.store.get_order(order.order_id)

    with pytest.raises(RefundBasisMoved):
        subject.store.reverse(stale)

    assert (subject.snapshot(member_id), subject.store.get_order(order.order_id)) == before
    assert subject.store.replay(stale.claim) is None


@pytest.mark.parametrize("missing", ["order", "member"])
def test_a_planned_refund_of_an_order_or_member_that_is_not_there_is_refused_as_moved(
    subject: Subject, missing: str
) -> None:
    member_id = subject.enroll()
    order = purchase_order(member_id, D(10), START, None, None)  # never posted
    if missing == "member":
        order = order.model_copy(update={"member_id": "m_unknown"})
        subject.buy(member_id, "10", order_id=order.order_id)
    planned = reversal(subject, order, "5", due=0)

    with pytest.raises(RefundBasisMoved):
        subject.store.reverse(planned)

    assert subject.store.replay(planned.claim) is None


def test_a_refunds_identity_taken_by_another_refund_is_refused_as_reused(subject: Subject) -> None:
    member_id = subject.enroll()
    order = subject.buy(member_id, "100")
    first = reversal(subject, order, "10", due=10, key="refund:o:rf-1", fingerprint="10")
    subject.store.reverse(first)
    moved_on = subject.store.get_order(order.order_id)
    assert moved_on is not None

    with pytest.raises(IdempotencyKeyReused):
        subject.store.reverse(reversal(subject, moved_on, "20", due=20, key="refund:o:rf-1", fingerprint="20"))

    assert subject.aggregates(member_id)["available"] == 90


# ---- the ledger, page by page -------------------------------------------------------------------------------


def test_the_ledger_pages_newest_first_and_the_cursor_chain_ends_after_the_last_entry(subject: Subject) -> None:
    member_id = subject.enroll()
    for _ in range(7):
        subject.credit(member_id, 1)

    first, cursor = subject.store.ledger_page(member_id, 4, None)
    assert cursor is not None
    second, cursor = subject.store.ledger_page(member_id, 3, cursor)  # exactly what is left
    if cursor is not None:  # DynamoDB (and the in-memory store) give a full page a cursor; moto only if more follow
        assert subject.store.ledger_page(member_id, 3, cursor) == ([], None)

    read = [e.entry_id for e in first + second]
    assert read == sorted(read, reverse=True) and len(set(read)) == 7
    assert subject.store.ledger_page(member_id, 2, None)[1] is not None
    assert subject.store.ledger_page(member_id, 8, None)[1] is None
    assert subject.store.ledger_page("m_unknown", 5, None) == ([], None)


def test_a_cursor_reads_only_inside_the_members_own_ledger_and_a_forged_one_is_refused(subject: Subject) -> None:
    alice, bob = subject.enroll(), subject.enroll()
    for _ in range(4):
        subject.credit(alice, 1)
        subject.credit(bob, 1)
    alices, cursor = subject.store.ledger_page(alice, 2, None)
    assert cursor is not None

    bobs, _ = subject.store.ledger_page(bob, 10, cursor)

    assert {e.member_id for e in bobs} == {bob}
    assert all(e.entry_id < alices[-1].entry_id for e in bobs)
    for forged in ("bm90IGEgY3Vyc29y", "eyJzayI6Ik1FTUJFUiJ9", "%%%"):  # not JSON; a position outside the ledger
        with pytest.raises(InvalidRequest) as refused:
            subject.store.ledger_page(alice, 2, forged)
        assert refused.value.field == "cursor"


# ---- redemptions: the reward, the member's tier and limit, pinned in one write ------------------------------------

JUNE = MemberLimit("2026-06", 2, LimitPeriod.MONTH, datetime(2026, 7, 1, tzinfo=UTC))


def catalog_reward(subject: Subject, reward_id: str = "treat", **terms: Any) -> Reward:
    reward = Reward.model_validate(
        {"reward_id": reward_id, "name": "Treat", "kind": "free_product", "cost_points": 10, **terms}
    )
    subject.store.put_reward(reward)
    return reward


def redemption(
    member_id: str,
    reward: Reward,
    *,
    tiers: tuple[str, ...] | None = None,
    limit: MemberLimit | None = None,
    key: str | None = None,
    fingerprint: str = "f",
) -> Redemption:
    debit = entry(member_id, EntryKind.REDEEM, -reward.cost_points, reward_id=reward.reward_id, voucher_code="V-1")
    claim = Claim(key or f"redeem:{member_id}:{uuid.uuid4().hex}", fingerprint, 201, {"voucher_code": "V-1"})
    return Redemption(debit, claim, reward, tiers, limit)


def redemption_state(subject: Subject, member_id: str, reward_id: str = "treat") -> tuple[Any, ...]:
    """What a refused redemption must leave as it was: the member, the reward's stock and the member's counter."""
    reward = subject.store.get_reward(reward_id)
    counted = subject.read_redeemed(member_id, reward_id, JUNE.key)
    return subject.snapshot(member_id), reward.stock if reward else None, counted


def test_a_redemption_debits_takes_one_of_the_stock_counts_for_the_member_and_its_replay_changes_nothing(
    subject: Subject,
) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, 50)
    reward = catalog_reward(subject, stock=3)
    planned = redemption(member_id, reward, tiers=("Insider", "VIB"), limit=JUNE)

    assert subject.store.redeem(planned) is None
    after = redemption_state(subject, member_id)
    replay = subject.store.redeem(planned)

    assert replay == Replay(201, {"voucher_code": "V-1"})
    assert redemption_state(subject, member_id) == after
    item = subject.aggregates(member_id)
    assert (item["available"], item["redeemed"], item["revision"]) == (40, 10, 3)
    assert after[1:] == (2, 1)  # stock 3 -> 2; the member's June counter 0 -> 1
    [debit] = [e for e in subject.store.ledger_page(member_id, 10, None)[0] if e.kind is EntryKind.REDEEM]
    assert (debit.points, debit.reward_id, debit.voucher_code) == (-10, "treat", "V-1")


def test_a_reward_without_a_stock_stays_unlimited_and_a_redemption_without_a_limit_counts_nothing(
    subject: Subject,
) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, 50)
    reward = catalog_reward(subject)

    for _ in range(3):
        assert subject.store.redeem(redemption(member_id, reward)) is None

    stored = subject.store.get_reward("treat")
    assert stored is not None and stored.stock is None and stored == reward
    assert subject.read_redeemed(member_id, "treat", JUNE.key) == 0
    assert subject.aggregates(member_id)["available"] == 20


@pytest.mark.parametrize(
    ("terms", "tiers", "credit", "counted", "refusal"),
    [
        ({"stock": 0}, None, 50, 0, OutOfStock),
        ({}, ("VIB", "Rouge"), 50, 0, TierTooLow),
        ({}, (), 50, 0, TierTooLow),  # a gate naming no tier of the ladder
        ({}, None, 50, 2, LimitReached),
        ({}, None, 9, 0, InsufficientPoints),
    ],
    ids=["out-of-stock", "tier-too-low", "no-tier-allowed", "limit-reached", "insufficient-points"],
)
def test_each_failed_condition_is_its_refusal_and_writes_nothing(
    subject: Subject,
    terms: dict[str, Any],
    tiers: tuple[str, ...] | None,
    credit: int,
    counted: int,
    refusal: type[Exception],
) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, credit)
    reward = catalog_reward(subject, **terms)
    for _ in range(counted):  # the member's June redemptions so far
        assert subject.store.redeem(redemption(member_id, reward, limit=JUNE)) is None
    before = redemption_state(subject, member_id)
    refused = redemption(member_id, reward, tiers=tiers, limit=JUNE)

    with pytest.raises(refusal) as raised:
        subject.store.redeem(refused)

    assert redemption_state(subject, member_id) == before
    assert subject.store.replay(refused.claim) is None  # the refusal is the service's to remember
    body = raised.value.body()  # type: ignore[attr-defined]
    if refusal is TierTooLow:
        assert body["tier"] == "Insider"
    if refusal is LimitReached:
        assert (body["limit"], body["redeemed"], body["period"]) == (2, 2, "month")
    if refusal is InsufficientPoints:
        assert (body["available"], body["needed"]) == (9, 10)


@pytest.mark.parametrize(
    ("stored", "planned", "current"),
    [
        ({"version": 2, "cost_points": 20}, {}, "stored"),
        ({"active": False}, {}, "stored"),
        (None, {}, None),
        ({"stock": 5}, {}, "stored"),  # made limited since the plan: its stock must be taken
        ({}, {"stock": 5}, "stored"),  # made unlimited since the plan
    ],
    ids=["replaced", "retired", "gone", "made-limited", "made-unlimited"],
)
def test_a_reward_no_longer_on_the_planned_terms_is_reward_changed_with_the_stored_one_and_nothing_written(
    subject: Subject, stored: dict[str, Any] | None, planned: dict[str, Any], current: str | None
) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, 50)
    plan = Reward(reward_id="treat", name="Treat", kind=RewardKind.FREE_PRODUCT, cost_points=10, **planned)
    kept = catalog_reward(subject, **stored) if stored is not None else None
    before = subject.snapshot(member_id)

    with pytest.raises(RewardChanged) as changed:
        subject.store.redeem(redemption(member_id, plan))

    assert changed.value.current == (kept if current == "stored" else None)
    assert subject.snapshot(member_id) == before
    assert subject.store.get_reward("treat") == kept


def test_when_several_conditions_fail_the_refusal_is_the_first_in_the_ports_order(subject: Subject) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, 5)  # too few points for each refused case below
    sold_out = catalog_reward(subject, "sold-out", stock=0)
    gated = catalog_reward(subject, "gated")
    twice = catalog_reward(subject, "twice", cost_points=2)
    assert subject.store.redeem(redemption(member_id, twice, limit=JUNE)) is None
    assert subject.store.redeem(redemption(member_id, twice, limit=JUNE)) is None  # 1 point left: too few again

    with pytest.raises(OutOfStock):
        subject.store.redeem(redemption(member_id, sold_out, tiers=("Rouge",), limit=JUNE))
    with pytest.raises(TierTooLow):
        subject.store.redeem(redemption(member_id, gated.model_copy(update={"cost_points": 10}), tiers=("Rouge",)))
    with pytest.raises(LimitReached):
        subject.store.redeem(redemption(member_id, twice, limit=JUNE))


def test_a_redemption_for_an_unknown_member_is_not_found_and_takes_no_stock(subject: Subject) -> None:
    reward = catalog_reward(subject, stock=1)
    planned = redemption("m_unknown", reward, limit=JUNE)

    with pytest.raises(MemberNotFound):
        subject.store.redeem(planned)

    assert subject.store.replay(planned.claim) is None
    assert subject.store.get_reward("treat") == reward


def test_a_redemptions_key_taken_by_another_request_is_refused_and_writes_nothing(subject: Subject) -> None:
    member_id = subject.enroll()
    subject.credit(member_id, 50)
    reward = catalog_reward(subject, stock=5)
    first = redemption(member_id, reward, key="redeem:k", fingerprint="first")
    assert subject.store.redeem(first) is None
    before = redemption_state(subject, member_id)

    with pytest.raises(IdempotencyKeyReused):
        subject.store.redeem(redemption(member_id, reward, key="redeem:k", fingerprint="second"))

    assert redemption_state(subject, member_id) == before


def test_fifty_concurrent_redemptions_of_a_stock_of_ten_give_exactly_ten(subject: Subject) -> None:
    """Fifty members at once, one reward with ten left: only the reward's stock can refuse."""
    members = [subject.enroll() for _ in range(50)]
    for member_id in members:
        subject.credit(member_id, 30)
    reward = catalog_reward(subject, stock=10, cost_points=25)

    def redeem(member_id: str) -> str:
        try:
            return "redeemed" if subject.store.redeem(redemption(member_id, reward)) is None else "replayed"
        except OutOfStock:
            return "out_of_stock"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = Counter(pool.map(redeem, members))

    assert outcomes == {"redeemed": 10, "out_of_stock": 40}
    stored = subject.store.get_reward("treat")
    assert stored is not None and stored.stock == 0
    balances = Counter(subject.aggregates(member_id)["available"] for member_id in members)
    assert balances == {5: 10, 30: 40}
    for member_id in members:
        entries, _ = subject.store.ledger_page(member_id, 10, None)
        assert subject.aggregates(member_id)["available"] == sum(e.points for e in entries)


# ---- the catalog ------------------------------------------------------------------------------------------------


def test_a_reward_is_created_once_and_replaced_only_from_its_stored_version_keeping_its_stock(
    subject: Subject,
) -> None:
    created = Reward(reward_id="treat", name="Treat", kind=RewardKind.FREE_PRODUCT, cost_points=10, stock=8)
    subject.store.create_reward(created)
    with pytest.raises(ConfigVersionConflict) as taken:
        subject.store.create_reward(created.model_copy(update={"name": "Other"}))

    replacement = created.model_copy(update={"name": "Better", "version": 2, "stock": 100, "sku": "SKU-1"})
    replaced = subject.store.replace_reward(replacement, 1)
    with pytest.raises(ConfigVersionConflict) as stale:
        subject.store.replace_reward(replacement.model_copy(update={"version": 2}), 1)
    dropped = subject.store.replace_reward(replaced.model_copy(update={"version": 3, "sku": None}), 2)
    with pytest.raises(RewardNotFound):
        subject.store.replace_reward(replacement.model_copy(update={"reward_id": "ghost"}), 1)

    assert taken.value.body()["version"] == 1 and stale.value.body()["version"] == 2
    assert (replaced.name, replaced.version, replaced.stock, replaced.sku) == ("Better", 2, 8, "SKU-1")
    assert (dropped.version, dropped.sku, dropped.stock) == (3, None, 8)  # a term left out is removed
    assert subject.store.get_reward("treat") == dropped
    assert subject.store.get_reward("ghost") is None


def test_a_retired_reward_is_kept_inactive_at_the_next_version(subject: Subject) -> None:
    reward = catalog_reward(subject, stock=4)

    retired = subject.store.retire_reward("treat")

    assert retired == reward.model_copy(update={"active": False, "version": 2})
    assert subject.store.get_reward("treat") == retired
    assert subject.store.list_rewards() == [retired]
    with pytest.raises(RewardNotFound):
        subject.store.retire_reward("ghost")


@pytest.mark.parametrize(
    ("stock", "change", "after"),
    [
        (10, StockDelta(-10), 0),
        (10, StockDelta(7), 17),
        (0, StockDelta(MAX_STOCK), MAX_STOCK),
        (10, StockLevel(3), 3),
        (10, StockLevel(None), None),
        (None, StockLevel(6), 6),
    ],
)
def test_a_stock_change_is_applied_as_asked(
    subject: Subject, stock: int | None, change: Any, after: int | None
) -> None:
    catalog_reward(subject, stock=stock)

    changed = subject.store.change_stock("treat", change)

    assert changed.stock == after
    assert subject.store.get_reward("treat") == changed and changed.version == 1


@pytest.mark.parametrize(("stock", "add"), [(3, -4), (MAX_STOCK, 1), (None, 1)], ids=["below-0", "above", "unlimited"])
def test_a_delta_the_stock_cannot_take_is_a_stock_conflict_with_the_stock_and_changes_nothing(
    subject: Subject, stock: int | None, add: int
) -> None:
    reward = catalog_reward(subject, stock=stock)

    with pytest.raises(StockConflict) as refused:
        subject.store.change_stock("treat", StockDelta(add))

    assert refused.value.body()["stock"] == stock
    assert subject.store.get_reward("treat") == reward
    with pytest.raises(RewardNotFound):
        subject.store.change_stock("ghost", StockDelta(1))


def test_the_catalog_pages_by_id_and_a_cursor_from_elsewhere_is_refused(subject: Subject) -> None:
    for reward_id in ("e", "b", "a", "d", "c"):
        catalog_reward(subject, reward_id)

    first, cursor = subject.store.rewards_page(2, None)
    second, cursor = subject.store.rewards_page(2, cursor)
    third, cursor = subject.store.rewards_page(2, cursor)

    assert [r.reward_id for r in first + second + third] == ["a", "b", "c", "d", "e"]
    assert cursor is None
    for forged in ("eyJzayI6IkxFREdFUiMxIn0", "%%%"):  # a ledger's position; not a cursor
        with pytest.raises(InvalidRequest) as refused:
            subject.store.rewards_page(2, forged)
        assert refused.value.field == "cursor"


def test_a_reward_stored_before_kinds_were_renamed_and_versions_kept_reads_and_redeems(subject: Subject) -> None:
    if subject.put_raw_reward is None:
        pytest.skip("the in-memory store holds models, never an older item")
    member_id = subject.enroll()
    subject.credit(member_id, 600)
    old = {"reward_id": "ten-off", "name": "$10 off", "kind": "discount", "cost_points": 500, "active": True}
    subject.put_raw_reward({**old, "value": D(10), "currency": "USD"})
    subject.put_raw_reward({**old, "reward_id": "no-currency", "value": D(5)})  # the old model allowed it

    [read] = subject.store.list_rewards()

    assert (read.reward_id, read.kind, read.version, read.value) == ("ten-off", RewardKind.DISCOUNT_FIXED, 1, 10)
    assert subject.store.get_reward("no-currency") is None  # offered to no one until an admin replaces it
    assert subject.store.redeem(redemption(member_id, read)) is None  # the version-1 pin holds on no version
    assert subject.store.retire_reward("ten-off").version == 2
    fixed = Reward(
        reward_id="no-currency", name="$5 off", kind="discount_fixed", cost_points=5, value=5, currency="USD"
    )
    assert subject.store.replace_reward(fixed.model_copy(update={"version": 2}), 1).currency == "USD"


# ---- configuration --------------------------------------------------------------------------------------------


def test_the_program_and_the_catalog_read_back_as_stored(subject: Subject) -> None:
    assert subject.store.get_program() is None
    assert subject.store.program_versions(10, None) == ([], None)
    assert subject.store.program_version(1) is None
    assert subject.store.list_rewards() == []
    program = ProgramConfig(version=2, points_per_unit={"USD": D(2)})
    treat = Reward(reward_id="treat", name="Treat", kind=RewardKind.FREE_PRODUCT, cost_points=10)

    assert subject.store.put_program(program, replaces=None, replaced_at=START, replaced_by="ops-alice") is None
    subject.store.put_reward(treat)
    subject.store.put_reward(treat.model_copy(update={"active": False}))
    off = Reward(reward_id="off", name="Off", kind=RewardKind.DISCOUNT_FIXED, cost_points=5, value=D(1), currency="EUR")
    event = {"starts_at": START + timedelta(days=30), "place": "Paris"}
    night = Reward(
        reward_id="night", name="Night", kind=RewardKind.EXPERIENCE, cost_points=5, experience=event, stock=3
    )
    subject.store.put_reward(off)
    subject.store.put_reward(night)

    assert subject.store.get_program() == program
    assert subject.store.program_version(2) == ProgramVersion(
        program=program, replaced_at=START, replaced_by="ops-alice"
    )
    assert sorted(subject.store.list_rewards(), key=lambda r: r.reward_id) == [
        night,
        off,
        treat.model_copy(update={"active": False}),
    ]


def program(version: int, rate: str = "1") -> ProgramConfig:
    return ProgramConfig(version=version, points_per_unit={"USD": D(rate)})


def test_a_replace_puts_the_next_version_in_force_and_keeps_every_version(subject: Subject) -> None:
    subject.store.put_program(program(1), replaces=None)
    later = START + timedelta(hours=1)

    subject.store.put_program(program(2, "2"), replaces=1, replaced_at=later, replaced_by="ops-bob")
    subject.store.put_program(program(3, "3"), replaces=2, replaced_at=later, replaced_by="ops-carol")

    assert subject.store.get_program() == program(3, "3")
    versions, cursor = subject.store.program_versions(10, None)
    assert [(v.version, v.replaced_by) for v in versions] == [(3, "ops-carol"), (2, "ops-bob"), (1, None)]
    assert cursor is None
    assert versions[1] == ProgramVersion(program=program(2, "2"), replaced_at=later, replaced_by="ops-bob")
    assert subject.store.program_version(1) == ProgramVersion(program=program(1))


@pytest.mark.parametrize(
    ("replaces", "version"),
    [(1, 3), (None, 3), (3, 4), (2, 2)],
    ids=["a-version-no-longer-in-force", "over-nothing-when-something-is", "a-version-never-in-force", "kept-already"],
)
def test_a_replace_over_another_version_than_the_one_in_force_is_refused_and_writes_nothing(
    subject: Subject, replaces: int | None, version: int
) -> None:
    subject.store.put_program(program(1), replaces=None)
    subject.store.put_program(program(2, "2"), replaces=1)
    claim = Claim(f"program:{uuid.uuid4().hex}", "f", 200, {"version": version})

    with pytest.raises(ProgramVersionMoved):
        subject.store.put_program(program(version, "9"), replaces=replaces, claim=claim)

    assert subject.store.get_program() == program(2, "2")
    assert [v.version for v in subject.store.program_versions(10, None)[0]] == [2, 1]
    assert subject.store.replay(claim) is None


def test_a_replace_with_a_claim_is_replayed_from_it_and_a_key_taken_by_another_request_is_refused(
    subject: Subject,
) -> None:
    claim = Claim(f"program:{uuid.uuid4().hex}", "first", 200, {"version": 1})
    assert subject.store.put_program(program(1), replaces=None, claim=claim) is None

    # The same request again: its first answer, though the version it replaced is no longer in force.
    replay = subject.store.put_program(program(1), replaces=None, claim=claim)
    with pytest.raises(IdempotencyKeyReused):
        subject.store.put_program(program(2, "2"), replaces=1, claim=Claim(claim.key, "second", 200, {}))

    assert replay == Replay(200, {"version": 1})
    assert subject.store.get_program() == program(1)
    assert [v.version for v in subject.store.program_versions(10, None)[0]] == [1]


def test_concurrent_replaces_of_one_version_let_exactly_one_win(subject: Subject) -> None:
    subject.store.put_program(program(1), replaces=None)
    contenders = 8

    def replace(index: int) -> Any:
        try:
            return subject.store.put_program(program(2, str(index + 2)), replaces=1, replaced_by=f"admin-{index}")
        except ProgramVersionMoved as moved:
            return moved

    with ThreadPoolExecutor(max_workers=contenders) as pool:
        results = list(pool.map(replace, range(contenders)))

    winners = [index for index, result in enumerate(results) if result is None]
    assert len(winners) == 1
    assert all(isinstance(result, ProgramVersionMoved) for result in results if result is not None)
    in_force = subject.store.program_version(2)
    assert in_force is not None and in_force.replaced_by == f"admin-{winners[0]}"
    assert subject.store.get_program() == in_force.program == program(2, str(winners[0] + 2))
    assert [v.version for v in subject.store.program_versions(10, None)[0]] == [2, 1]


def test_program_versions_page_newest_first_and_a_cursor_from_elsewhere_is_refused(subject: Subject) -> None:
    subject.store.put_program(program(1), replaces=None)
    for version in range(2, 8):
        subject.store.put_program(program(version), replaces=version - 1)

    first, cursor = subject.store.program_versions(4, None)
    assert cursor is not None
    second, cursor = subject.store.program_versions(3, cursor)  # exactly what is left
    if cursor is not None:  # DynamoDB (and the in-memory store) give a full page a cursor; moto only if more follow
        assert subject.store.program_versions(3, cursor) == ([], None)

    assert [v.version for v in first + second] == [7, 6, 5, 4, 3, 2, 1]
    assert subject.store.program_versions(8, None)[1] is None
    member_id = subject.enroll()
    for _ in range(3):
        subject.credit(member_id, 1)
    _, ledger_cursor = subject.store.ledger_page(member_id, 1, None)
    assert ledger_cursor is not None
    for forged in (ledger_cursor, "bm90IGEgY3Vyc29y", "%%%"):  # a ledger position; not JSON
        with pytest.raises(InvalidRequest) as refused:
            subject.store.program_versions(2, forged)
        assert refused.value.field == "cursor"


def test_the_largest_document_the_service_accepts_is_kept_in_force_and_as_its_version(subject: Subject) -> None:
    largest = ProgramConfig(sku_multipliers={f"SKU-{index:06d}": D(2) for index in range(17_500)})
    assert MAX_DOCUMENT_BYTES - 2_000 < len(largest.model_dump_json()) <= MAX_DOCUMENT_BYTES

    subject.store.put_program(largest, replaces=None, replaced_by="ops-" + "x" * 200)

    assert subject.store.get_program() == largest
    kept = subject.store.program_version(1)
    assert kept is not None and kept.program == largest


def test_an_entry_reads_back_with_the_program_version_that_priced_it(subject: Subject) -> None:
    member_id = subject.enroll()
    priced = entry(member_id, EntryKind.BONUS, 25, program_version=7)

    subject.store.post(priced, Claim(f"activity:{uuid.uuid4().hex}", "f", 201, {}))

    assert subject.store.ledger_page(member_id, 1, None)[0] == [priced]


# ---- an earn's guards: the tier's headroom, a standing pinned to its revision, promotion budgets -------------------


def _enroll_with_headroom(subject: Subject, headroom: int, basis: int = 1) -> str:
    member = new_member()
    subject.store.create_member(member, headroom=D(headroom), basis=basis)
    return member.member_id


def _earn(subject: Subject, member_id: str, points: int, guards: EarnGuards, key: str | None = None) -> Replay | None:
    claim = Claim(key or f"activity:{uuid.uuid4().hex}", "f", 201, {"points": points})
    return subject.store.post(entry(member_id, EntryKind.BONUS, points), claim, None, guards)


def test_an_earn_inside_the_headroom_is_written_and_takes_its_units_off_it(subject: Subject) -> None:
    member = _enroll_with_headroom(subject, 350)

    assert _earn(subject, member, 100, EarnGuards(headroom=HeadroomGuard(1, D(100)))) is None

    standing = subject.store.standing(member)
    assert (standing.headroom, standing.basis, standing.member.balance.available) == (250, 1, 100)
    assert standing.revision == 2 and standing.member.tier == "Insider"


@pytest.mark.parametrize(
    ("headroom", "basis", "uses"),
    [(350, 1, 350), (350, 1, 400), (350, 2, 10), (None, None, 10)],
    ids=["reaches-the-threshold", "passes-it", "another-program-version", "no-headroom-yet"],
)
def test_an_earn_the_headroom_does_not_cover_is_refused_with_the_standing_and_writes_nothing(
    subject: Subject, headroom: int | None, basis: int | None, uses: int
) -> None:
    member = new_member()
    subject.store.create_member(member, headroom=None if headroom is None else D(headroom), basis=basis)
    before = subject.snapshot(member.member_id)

    with pytest.raises(StandingMoved) as moved:
        _earn(subject, member.member_id, uses, EarnGuards(headroom=HeadroomGuard(1, D(uses))))

    assert moved.value.standing.member.member_id == member.member_id
    assert moved.value.standing.revision == 1
    assert moved.value.standing.headroom == (None if headroom is None else D(headroom))
    assert subject.snapshot(member.member_id) == before


def test_a_replay_is_answered_before_the_headroom_is_looked_at(subject: Subject) -> None:
    member = _enroll_with_headroom(subject, 350)
    assert _earn(subject, member, 300, EarnGuards(headroom=HeadroomGuard(1, D(300))), key="activity:k1") is None

    replay = _earn(subject, member, 300, EarnGuards(headroom=HeadroomGuard(1, D(300))), key="activity:k1")

    assert replay == Replay(201, {"points": 300})


def _move(to_tier: str = "VIB", value: int = 400) -> TierMove:
    return TierMove(
        at=START, from_tier="Insider", to_tier=to_tier, direction="up", reason="earn", value=D(value), measure="points"
    )


def test_a_pinned_earn_writes_the_move_up_its_history_its_event_and_the_new_headroom(subject: Subject) -> None:
    member = _enroll_with_headroom(subject, 350)
    pinned = PinnedStanding(revision=1, basis=1, headroom=D(600), move=_move(), usage={"bonus-day#2026-06-15": 40})

    assert _earn(subject, member, 400, EarnGuards(pinned=pinned)) is None

    standing = subject.store.standing(member)
    assert standing.member.tier == "VIB" and standing.member.tier_upgraded_at == START
    assert [(m.from_tier, m.to_tier, m.value) for m in standing.member.tier_history] == [("Insider", "VIB", 400)]
    assert (standing.headroom, standing.basis, standing.revision) == (600, 1, 2)
    assert standing.promotion_usage == {"bonus-day#2026-06-15": 40}
    (event,) = subject.read_tier_events(member)
    assert (event["event_type"], event["from_tier"], event["to_tier"], event["reason"]) == (
        "TierChanged",
        "Insider",
        "VIB",
        "earn",
    )
    assert event["event_id"].endswith("-tier") and event["occurred_at"] == timestamp(START)


def test_a_pinned_earn_on_a_member_who_moved_since_is_refused_with_the_standing_and_writes_nothing(
    subject: Subject,
) -> None:
    member = _enroll_with_headroom(subject, 350)
    subject.credit(member, 10)  # revision 2 now
    before = subject.snapshot(member)
    pinned = PinnedStanding(revision=1, basis=1, headroom=D(600), move=_move())

    with pytest.raises(StandingMoved) as moved:
        _earn(subject, member, 400, EarnGuards(pinned=pinned))

    assert moved.value.standing.revision == 2 and moved.value.standing.member.balance.available == 10
    assert subject.snapshot(member) == before
    assert subject.read_tier_events(member) == []


def test_a_promotion_budget_is_never_overspent_and_a_refusal_says_what_was_given(subject: Subject) -> None:
    member = _enroll_with_headroom(subject, 10_000)
    promotion = f"launch-{uuid.uuid4().hex[:6]}"

    def earn(points: int) -> Replay | None:
        guards = EarnGuards(headroom=HeadroomGuard(1, D(points)), budgets=(BudgetUse(promotion, points, 250),))
        return _earn(subject, member, points, guards)

    assert earn(100) is None and earn(150) is None
    before = subject.snapshot(member)
    with pytest.raises(BudgetSpent) as spent:
        earn(1)

    assert (spent.value.promotion_id, spent.value.given) == (promotion, 250)
    assert subject.store.budgets_given([promotion, "never-used"]) == {promotion: 250, "never-used": 0}
    assert subject.snapshot(member) == before


# ---- the scheduled tier review: the roster in shares, a move pinned to the revision read ---------------------------


def test_the_roster_shares_hold_every_member_once_page_by_page(subject: Subject) -> None:
    members = {subject.enroll() for _ in range(7)}
    seen: list[str] = []
    for worker in range(3):
        cursor: str | None = None
        while True:
            page, cursor = subject.store.roster_page(worker, 3, cursor, 2)
            seen.extend(standing.member.member_id for standing in page)
            if cursor is None:
                break

    assert sorted(seen) == sorted(members)
    with pytest.raises(InvalidRequest) as refused:
        subject.store.roster_page(0, 3, "eyJrZXkiOiB7IlBLIjogeyJTIjogIk9SREVSI3gifX19", 2)  # a position off the roster
    assert refused.value.field == "cursor"


def _review(member_id: str, revision: int, at: datetime = START) -> TierReviewed:
    move = TierMove(
        at=at, from_tier="VIB", to_tier="Insider", direction="down", reason="review", value=D(12), measure="points"
    )
    return TierReviewed(member_id=member_id, revision=revision, review_at=at, move=move, headroom=D(338), basis=1)


def test_a_review_writes_its_move_once_and_never_over_a_member_who_moved_since(subject: Subject) -> None:
    member = subject.enroll()

    assert subject.store.review_tier(_review(member, 1)) is True
    assert subject.store.review_tier(_review(member, 2)) is False  # reviewed at this instant already
    after = subject.store.standing(member)
    assert (after.member.tier, after.revision, after.reviewed_at, after.headroom) == ("Insider", 2, START, 338)
    assert [(m.from_tier, m.to_tier, m.reason) for m in after.member.tier_history] == [("VIB", "Insider", "review")]
    (event,) = subject.read_tier_events(member)
    assert event["event_type"] == "TierChanged" and event["event_id"] == f"{member}-review-{timestamp(START)}"

    later = START + timedelta(days=30)
    subject.credit(member, 5)  # revision 3
    before = subject.snapshot(member)
    assert subject.store.review_tier(_review(member, 2, later)) is False  # the member moved since it was read
    assert subject.snapshot(member) == before
    assert subject.store.review_tier(_review(member, 3, later)) is True


# ---- lots (docs/expiry.md): credits by bucket, debits consumed, an expiry pinned to what was consumed ------------


def _lot_entry(member_id: str, kind: EntryKind, points: int, lot: str | None = None) -> LedgerEntry:
    return entry(member_id, kind, points, lot=lot)


def test_credits_go_to_their_lot_and_debits_are_counted_as_consumed(subject: Subject) -> None:
    member = subject.enroll()
    for points, lot in ((100, "2027-06-14"), (50, "2027-06-14"), (20, "2027-08-31")):
        claim = Claim(f"activity:{uuid.uuid4().hex}", "f", 201, {})
        assert subject.store.post(_lot_entry(member, EntryKind.BONUS, points, lot), claim) is None
    debit = Claim(f"redeem:{uuid.uuid4().hex}", "f", 201, {})
    assert subject.store.post(entry(member, EntryKind.REDEEM, -30, reward_id="treat"), debit) is None

    standing = subject.store.standing(member)
    assert standing.lots == {"2027-06-14": 150, "2027-08-31": 20}
    assert (standing.lots_consumed, standing.member.balance.available) == (30, 140)
    assert standing.last_activity_at == START


def test_an_expiry_pinned_to_the_revision_read_is_refused_once_a_debit_moved_it(subject: Subject) -> None:
    member = subject.enroll()
    assert (
        subject.store.post(_lot_entry(member, EntryKind.BONUS, 100, "2027-06-14"), Claim("activity:a", "f", 201, {}))
        is None
    )
    read = subject.store.standing(member)
    assert subject.store.post(entry(member, EntryKind.REDEEM, -40), Claim("redeem:b", "f", 201, {})) is None
    before = subject.snapshot(member)

    with pytest.raises(StandingMoved) as moved:
        subject.store.post(
            entry(member, EntryKind.EXPIRY, -100),
            Claim("expiry:c", "f", 201, {}),
            None,
            EarnGuards(revision=read.revision),
        )

    assert moved.value.standing.lots_consumed == 40
    assert subject.snapshot(member) == before
    fresh = moved.value.standing
    assert (
        subject.store.post(
            entry(member, EntryKind.EXPIRY, -60),
            Claim("expiry:c", "f", 201, {}),
            None,
            EarnGuards(revision=fresh.revision),
        )
        is None
    )
    after = subject.store.standing(member)
    assert (after.lots_consumed, after.member.balance.available, after.member.balance.expired) == (100, 0, 60)


def test_expiring_lots_are_announced_once_and_the_member_remembers_how_far(subject: Subject) -> None:
    member = subject.enroll()

    assert subject.store.warn_expiring(member, {"2027-06-14": 70, "2027-06-30": 5}, None, START) is True
    assert subject.store.warn_expiring(member, {"2027-06-30": 5}, None, START) is False  # another run got there
    assert subject.store.standing(member).warned_through == "2027-06-30"
    assert subject.store.warn_expiring(member, {"2027-07-19": 20}, "2027-06-30", START) is True
    assert subject.store.standing(member).warned_through == "2027-07-19"


def _forget_lots(subject: Subject, member_id: str) -> None:
    """Make the member's item one from before lots were kept."""
    store: Any = subject.store
    if subject.backend == "memory":
        store._members[member_id].lots, store._members[member_id].lots_consumed = None, 0
        return
    store.client.update_item(
        TableName=store.table_name,
        Key={"PK": {"S": f"MEMBER#{member_id}"}, "SK": {"S": "MEMBER"}},
        UpdateExpression="REMOVE lots, lots_consumed",
    )


def test_an_item_from_before_lots_gets_its_balance_as_a_lot_that_never_expires_with_its_next_credit(
    subject: Subject,
) -> None:
    member = subject.enroll()
    subject.credit(member, 80)
    _forget_lots(subject, member)

    claim = Claim(f"activity:{uuid.uuid4().hex}", "f", 201, {})
    assert subject.store.post(_lot_entry(member, EntryKind.BONUS, 20, "2027-06-14"), claim) is None

    standing = subject.store.standing(member)
    assert standing.lots == {"never": 80, "2027-06-14": 20}
    assert standing.member.balance.available == 100 == sum(standing.lots.values()) - standing.lots_consumed


def test_a_refund_gives_its_orders_lot_its_points_back(subject: Subject) -> None:
    member = subject.enroll()
    order = purchase_order(member, D(100), START, None, None).model_copy(update={"lot": "2027-06-14"})
    claim = Claim(f"order:{order.order_id}", "f", 201, {})
    assert subject.store.post(_lot_entry(member, EntryKind.EARN, 100, "2027-06-14"), claim, order) is None
    stored = subject.store.get_order(order.order_id)
    assert stored is not None and stored.lot == "2027-06-14"
    back = entry(member, EntryKind.REVERSAL, -40, order_id=order.order_id, refund_id="r1")
    reversal = Reversal(
        entry=back,
        claim=Claim(f"refund:{order.order_id}:r1", "f", 201, {}),
        order=stored,
        amount=D(40),
        due=40,
        taken=OrderCategories(),
    )

    assert subject.store.reverse(reversal) is None

    standing = subject.store.standing(member)
    assert standing.lots == {"2027-06-14": 60} and standing.lots_consumed == 0
    assert standing.member.balance.available == 60
