"""The segment storage contract (loyalty.segments.ports.SegmentStorage): every behaviour the segmentation service
relies on, run against the in-memory store and the DynamoDB store on moto and on DynamoDB Local, so that the fake
the service's unit tests run on behaves as the table does.

Members come in through enrollment (LoyaltyStore.create_member on the table; the same item, from
loyalty.points.member_record, in memory) and their facts change through a purchase (the ledger's write on the table;
its effect on the member item in memory).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.adapters.dynamodb.table import encode_cursor, from_item
from loyalty.adapters.memory.segment_store import InMemorySegmentStore
from loyalty.core import ids
from loyalty.core.errors import ConfigVersionConflict, InvalidRequest
from loyalty.core.instants import timestamp
from loyalty.points import member_record as record
from loyalty.points.activities import Purchase
from loyalty.points.members import Consent, Member, Profile
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.ports import (
    CHANGES_PER_WRITE,
    MEMBERSHIP_SHARDS,
    Membership,
    PublishedCutPoints,
    SegmentStorage,
    StaleMember,
    membership_shard,
)
from loyalty.segments.prediction import BgNbdParameters, PredictionModel
from loyalty.segments.rfm import RfmCutPoints
from loyalty.segments.rules import SegmentDefinition
from tests.integration.conftest import BACKENDS, Backend, make_loyalty, open_backend

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
MEMORY = "memory"


@pytest.fixture(scope="module", params=[MEMORY, *BACKENDS])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The conftest's two DynamoDB backends, and the in-memory store as a third."""
    if request.param == MEMORY:
        yield Backend(MEMORY, None)
    else:
        yield from open_backend(request, request.param)


@dataclass
class Storage:
    """A SegmentStorage under test, with the ways in that are not part of the port."""

    name: str
    store: SegmentStorage
    enroll: Callable[[Member], None]
    buy: Callable[[str, Decimal, datetime], None]
    events: Callable[[str], list[tuple[str, str, str]]]  # (event type, segment id, source), sorted


@pytest.fixture
def storage(backend: Backend) -> Iterator[Storage]:
    if backend.name == MEMORY:
        memory = InMemorySegmentStore()

        def memory_buy(member_id: str, amount: Decimal, at: datetime) -> None:
            memory.record_purchases(member_id, [record.PastPurchase(at, amount, int(amount))], datetime.now(UTC))

        yield Storage(
            MEMORY,
            memory,
            lambda member: memory.put_member_item(record.new_member_item(member)),
            memory_buy,
            lambda member_id: sorted((e.event_type, e.segment_id, e.source) for e in memory.segment_events(member_id)),
        )
        return
    loyalty = make_loyalty(backend)

    def table_buy(member_id: str, amount: Decimal, at: datetime) -> None:
        order = f"order-{uuid.uuid4().hex[:10]}"
        outcome = loyalty.service.purchase(
            member_id, Purchase(order_id=order, amount=amount, currency="USD", occurred_at=at)
        )
        assert outcome.status == 201, outcome.body

    def table_events(member_id: str) -> list[tuple[str, str, str]]:
        page = loyalty.client.query(
            TableName=loyalty.table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": {"S": f"MEMBER#{member_id}"}, ":prefix": {"S": "SEGEVENT#"}},
            ConsistentRead=True,
        )
        items = [from_item(raw) for raw in page["Items"]]
        return sorted((str(i["event_type"]), str(i["segment_id"]), str(i["source"])) for i in items)

    yield Storage(
        backend.name,
        SegmentStore(loyalty.store),
        loyalty.store.create_member,  # raises if the member exists: each one is new
        table_buy,
        table_events,
    )
    backend.client.delete_table(TableName=loyalty.table)


def new_member(storage: Storage) -> str:
    member_id = f"m_{ids.ulid().lower()}"
    storage.enroll(
        Member(
            member_id=member_id,
            external_id=f"contract-{uuid.uuid4().hex[:12]}",
            profile=Profile(country="FR"),
            consent=Consent(email=True),
            referral_code=ids.referral_code(),
            tier="Insider",
            enrolled_at=NOW - timedelta(days=30),
        )
    )
    return member_id


def read(storage: Storage, member_id: str) -> dict[str, Any]:
    item = storage.store.get_member_item(member_id)
    assert item is not None
    return item


def segments(count: int, prefix: str = "rule:contract") -> list[str]:
    return [f"{prefix}-{n:03d}" for n in range(count)]


# ---- reading a member ------------------------------------------------------------------------------------------


def test_a_member_item_reads_back_as_enrolled_and_reflects_every_completed_change(storage: Storage) -> None:
    assert storage.store.get_member_item("m_nobody") is None
    member_id = new_member(storage)

    enrolled = read(storage, member_id)
    storage.buy(member_id, Decimal("42.50"), NOW - timedelta(days=1))
    bought = read(storage, member_id)

    assert enrolled[record.MEMBER_ID] == member_id
    assert record.revision_of(enrolled) == 1 and record.segments_version_of(enrolled) == 0
    assert not record.stored_segments(enrolled) and not record.is_settled(enrolled)
    assert record.member_of(enrolled).consent.email is True
    assert record.revision_of(bought) == 2
    assert bought[record.PURCHASE_COUNT] == 1
    assert bought[record.SPEND_BY_MONTH] == {record.month_key(NOW - timedelta(days=1)): Decimal("42.50")}
    assert bought[record.LAST_PURCHASE_AT] == timestamp(NOW - timedelta(days=1))


# ---- applying a change of segments -------------------------------------------------------------------------------


def test_a_first_evaluation_enters_every_segment_once_and_settles_the_member(storage: Storage) -> None:
    member_id = new_member(storage)
    item = read(storage, member_id)

    applied = storage.store.apply(item, {"lifecycle:potential", "rfm:new"}, NOW, "activity")
    after = read(storage, member_id)

    assert (applied.member_id, applied.entered, applied.left) == (member_id, ("lifecycle:potential", "rfm:new"), ())
    assert applied.changes == 2
    assert after[record.SEGMENTS] == ["lifecycle:potential", "rfm:new"]
    assert record.segments_version_of(after) == 1
    assert after[record.SEGMENTS_REVISION] == after[record.REVISION] and record.is_settled(after)
    assert after[record.SEGMENTS_EVALUATED_AT] == timestamp(NOW)
    assert storage.store.memberships_of(member_id) == [
        Membership(member_id, "lifecycle:potential", timestamp(NOW)),
        Membership(member_id, "rfm:new", timestamp(NOW)),
    ]
    assert storage.events(member_id) == [
        ("SegmentEntered", "lifecycle:potential", "activity"),
        ("SegmentEntered", "rfm:new", "activity"),
    ]


def test_a_move_enters_the_new_segments_leaves_the_old_and_keeps_the_rest(storage: Storage) -> None:
    member_id = new_member(storage)
    storage.store.apply(read(storage, member_id), {"lifecycle:potential", "points:dormant"}, NOW, "activity")
    later = NOW + timedelta(hours=1)

    applied = storage.store.apply(read(storage, member_id), {"lifecycle:new", "points:dormant"}, later, "refresh:r1")
    after = read(storage, member_id)

    assert (applied.entered, applied.left) == (("lifecycle:new",), ("lifecycle:potential",))
    assert after[record.SEGMENTS] == ["lifecycle:new", "points:dormant"]
    assert record.segments_version_of(after) == 2
    assert storage.store.memberships_of(member_id) == [
        Membership(member_id, "lifecycle:new", timestamp(later)),
        Membership(member_id, "points:dormant", timestamp(NOW)),  # kept: entered at its first entry
    ]
    assert [event for event in storage.events(member_id) if event[2] == "refresh:r1"] == [
        ("SegmentEntered", "lifecycle:new", "refresh:r1"),
        ("SegmentLeft", "lifecycle:potential", "refresh:r1"),
    ]


def test_an_evaluation_that_changes_nothing_writes_nothing(storage: Storage) -> None:
    member_id = new_member(storage)
    storage.store.apply(read(storage, member_id), {"lifecycle:potential"}, NOW, "activity")
    before = read(storage, member_id)

    applied = storage.store.apply(before, {"lifecycle:potential"}, NOW + timedelta(hours=1), "activity")

    assert applied.changes == 0
    assert read(storage, member_id) == before
    assert len(storage.events(member_id)) == 1


def test_a_change_of_facts_after_the_read_makes_the_write_stale_and_nothing_is_written(storage: Storage) -> None:
    member_id = new_member(storage)
    seen = read(storage, member_id)
    storage.buy(member_id, Decimal("10"), NOW)

    with pytest.raises(StaleMember) as stale:
        storage.store.apply(seen, {"lifecycle:new"}, NOW, "activity")

    assert stale.value.status == 409 and stale.value.code == "stale_member"
    after = read(storage, member_id)
    assert not record.stored_segments(after) and record.segments_version_of(after) == 0
    assert storage.store.memberships_of(member_id) == [] and storage.events(member_id) == []


def test_a_segment_write_after_the_read_makes_the_write_stale(storage: Storage) -> None:
    member_id = new_member(storage)
    seen = read(storage, member_id)
    storage.store.apply(seen, {"lifecycle:potential"}, NOW, "refresh:r1")

    with pytest.raises(StaleMember):
        storage.store.apply(seen, {"lifecycle:potential", "rfm:new"}, NOW, "activity")

    assert read(storage, member_id)[record.SEGMENTS] == ["lifecycle:potential"]
    assert [segment for _, segment, _ in storage.events(member_id)] == ["lifecycle:potential"]


def test_a_member_gone_since_the_read_is_stale(storage: Storage) -> None:
    ghost = {record.MEMBER_ID: "m_gone", record.REVISION: Decimal(3)}

    with pytest.raises(StaleMember):
        storage.store.apply(ghost, {"lifecycle:new"}, NOW, "activity")

    assert storage.store.get_member_item("m_gone") is None
    assert storage.store.memberships_of("m_gone") == []


def test_more_changes_than_one_write_holds_are_written_in_parts_each_moving_the_version(storage: Storage) -> None:
    member_id = new_member(storage)
    many = segments(2 * CHANGES_PER_WRITE + 2)  # three parts: 49, 49 and 2

    applied = storage.store.apply(read(storage, member_id), many, NOW, "refresh:r1")
    after = read(storage, member_id)

    assert applied.entered == tuple(many)
    assert after[record.SEGMENTS] == many and record.is_settled(after)
    assert record.segments_version_of(after) == 3
    assert [m.segment_id for m in storage.store.memberships_of(member_id)] == many
    assert sorted(segment for _, segment, _ in storage.events(member_id)) == many

    storage.store.apply(after, many[:1], NOW, "refresh:r2")  # 100 leave: three parts again

    assert record.segments_version_of(read(storage, member_id)) == 6
    assert [m.segment_id for m in storage.store.memberships_of(member_id)] == many[:1]


def test_of_evaluators_racing_from_one_read_exactly_one_writes(storage: Storage) -> None:
    member_id = new_member(storage)
    seen = read(storage, member_id)
    outcomes: list[str] = []
    start = threading.Barrier(4)

    def evaluate(n: int) -> None:
        start.wait()
        try:
            storage.store.apply(seen, {"lifecycle:potential", f"rule:racer-{n}"}, NOW, f"racer-{n}")
            outcomes.append("written")
        except StaleMember:
            outcomes.append("stale")

    threads = [threading.Thread(target=evaluate, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["stale", "stale", "stale", "written"]
    events = storage.events(member_id)
    assert len(events) == 2 and len({source for _, _, source in events}) == 1
    assert record.segments_version_of(read(storage, member_id)) == 1


# ---- the segmentation document -------------------------------------------------------------------------------


def test_the_document_is_the_defaults_at_version_1_until_one_is_stored(storage: Storage) -> None:
    assert storage.store.get_config() == SegmentationConfig()
    assert storage.store.get_config().version == 1


def test_a_document_replaces_the_version_it_was_read_at_and_no_other(storage: Storage) -> None:
    rule = SegmentDefinition.parse(
        {"segment_id": "big-spenders", "name": "Big spenders", "rule": {"field": "spend_12m", "op": ">", "value": 500}}
    )
    second = SegmentationConfig(version=2, rule_segments=(rule,))
    third = SegmentationConfig(version=3, rfm_window_months=6)

    with pytest.raises(ConfigVersionConflict):
        storage.store.put_config(second, replaces=5)  # nothing is stored at version 5
    storage.store.put_config(second, replaces=None)
    assert storage.store.get_config() == second

    with pytest.raises(ConfigVersionConflict):
        storage.store.put_config(third, replaces=1)  # a colleague's version 2 is stored
    with pytest.raises(ConfigVersionConflict):
        storage.store.put_config(third, replaces=None)
    storage.store.put_config(third, replaces=2)
    assert storage.store.get_config() == third

    with pytest.raises(ConfigVersionConflict) as conflict:
        storage.store.put_config(SegmentationConfig(version=4), replaces=2)
    assert conflict.value.status == 409
    assert storage.store.get_config() == third


def test_version_1_may_be_replaced_over_the_defaults_or_over_a_stored_version_1(storage: Storage) -> None:
    storage.store.put_config(SegmentationConfig(version=1, rfm_window_months=9), replaces=1)
    storage.store.put_config(SegmentationConfig(version=2, rfm_window_months=10), replaces=1)

    assert storage.store.get_config().rfm_window_months == 10


# ---- memberships ---------------------------------------------------------------------------------------------


def test_a_members_memberships_are_listed_in_segment_order_and_none_for_a_stranger(storage: Storage) -> None:
    member_id = new_member(storage)
    storage.store.apply(read(storage, member_id), {"rfm:new", "lifecycle:new", "points:dormant"}, NOW, "activity")

    assert [m.segment_id for m in storage.store.memberships_of(member_id)] == [
        "lifecycle:new",
        "points:dormant",
        "rfm:new",
    ]
    assert storage.store.memberships_of("m_nobody") == []


def test_a_segments_members_are_paged_in_listing_order_without_repeats_or_gaps(storage: Storage) -> None:
    members = [new_member(storage) for _ in range(11)]
    for n, member_id in enumerate(members):
        wanted = {"lifecycle:new"} if n % 4 else {"lifecycle:new", "points:dormant"}
        storage.store.apply(read(storage, member_id), wanted, NOW, "refresh:r1")
    expected = sorted(members, key=lambda m: (membership_shard(m), m))

    pages: list[list[Membership]] = []
    cursor: str | None = None
    while True:
        page, cursor = storage.store.members_of("lifecycle:new", 3, cursor)
        pages.append(page)
        assert len(page) <= 3
        if cursor is None:
            break
        assert len(page) == 3  # only a full page names a next one

    listed = [m.member_id for page in pages for m in page]
    assert listed == expected
    assert {m.segment_id for page in pages for m in page} == {"lifecycle:new"}
    assert all(m.entered_at == timestamp(NOW) for page in pages for m in page)
    assert [m.member_id for m in storage.store.members_of("points:dormant", 50, None)[0]] == sorted(
        members[::4], key=lambda m: (membership_shard(m), m)
    )
    assert storage.store.members_of("points:dormant", 50, None)[1] is None
    assert storage.store.members_of("rfm:nobody", 10, None) == ([], None)


def test_a_full_page_before_the_last_shard_is_followed_by_an_empty_one(storage: Storage) -> None:
    members: list[str] = []
    while len(members) < 4:  # none in the last shard: the listing cannot know no one follows them
        member_id = new_member(storage)
        if membership_shard(member_id) < MEMBERSHIP_SHARDS - 1:
            members.append(member_id)
            storage.store.apply(read(storage, member_id), {"points:dormant"}, NOW, "refresh:r1")

    page, cursor = storage.store.members_of("points:dormant", len(members), None)

    assert [m.member_id for m in page] == sorted(members, key=lambda m: (membership_shard(m), m))
    assert cursor is not None
    assert storage.store.members_of("points:dormant", len(members), cursor) == ([], None)


def test_a_member_who_left_is_not_listed_and_one_who_entered_between_pages_is_not_skipped(storage: Storage) -> None:
    members = sorted((new_member(storage) for _ in range(4)), key=lambda m: (membership_shard(m), m))
    for member_id in members[:3]:
        storage.store.apply(read(storage, member_id), {"rfm:champions"}, NOW, "refresh:r1")

    first, cursor = storage.store.members_of("rfm:champions", 1, None)
    storage.store.apply(read(storage, members[1]), set(), NOW, "activity")  # leaves
    storage.store.apply(read(storage, members[3]), {"rfm:champions"}, NOW, "activity")  # enters, listed later
    rest: list[Membership] = []
    while cursor is not None:
        page, cursor = storage.store.members_of("rfm:champions", 1, cursor)
        rest.extend(page)

    assert [m.member_id for m in first] == members[:1]
    assert [m.member_id for m in rest] == [members[2], members[3]]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        encode_cursor({"shard": 16, "after": "m_x"}),
        encode_cursor({"shard": -1}),
        encode_cursor({"shard": "0", "after": "m_x"}),
        encode_cursor({"shard": 0, "after": 7}),
        "WyJtX3giXQ",  # a JSON list, not a position
    ],
)
def test_a_cursor_the_listing_did_not_return_is_the_callers_error(storage: Storage, cursor: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        storage.store.members_of("lifecycle:new", 10, cursor)

    assert refused.value.field == "cursor"


# ---- published cut points and model --------------------------------------------------------------------------


def test_published_cut_points_and_model_read_back_as_published(storage: Storage) -> None:
    assert storage.store.get_cut_points() is None
    model = PredictionModel(
        run_id="run-1",
        as_of="2026-03-15T00:00:00Z",
        bgnbd=BgNbdParameters(r=0.243, alpha=30.898, a=0.793, b=2.426),
        sample_members=2357,
        sample_repeaters=946,
        sample_rate_log2=0,
        log_likelihood=-9582.4,
    )
    published = PublishedCutPoints(
        "run-1", "2026-03-15T00:00:00Z", RfmCutPoints(r=(1, 2, 3, 4), f=(2, 4, 8, 16), m=(10, 20, 30, 40)), model
    )

    storage.store.put_cut_points(published)
    assert storage.store.get_cut_points() == published

    bare = PublishedCutPoints("run-2", "2026-03-16T00:00:00Z", None, None)
    storage.store.put_cut_points(bare)
    assert storage.store.get_cut_points() == bare


# ---- sizes and the latest results ---------------------------------------------------------------------------------


def _history(storage: Storage, segment_id: str, limit: int) -> list[tuple[str, str, int]]:
    return [(h["run_id"], h["as_of"], int(h["size"])) for h in storage.store.size_history(segment_id, limit)]


def test_segment_sizes_are_kept_per_run_and_read_newest_first(storage: Storage) -> None:
    first, second = NOW, NOW + timedelta(days=1)
    storage.store.put_segment_sizes("r1", first, {"rfm:new": {"size": 3}, "lifecycle:new": {"size": 5}})
    storage.store.put_segment_sizes("r2", second, {"rfm:new": {"size": 4}})

    assert _history(storage, "rfm:new", 10) == [("r2", timestamp(second), 4), ("r1", timestamp(first), 3)]
    assert _history(storage, "rfm:new", 1) == [("r2", timestamp(second), 4)]
    assert _history(storage, "lifecycle:new", 10) == [("r1", timestamp(first), 5)]
    assert storage.store.size_history("rule:never", 10) == []
    assert storage.store.size_history("rfm:new", 1)[0]["segment_id"] == "rfm:new"


def test_many_segments_sizes_are_all_kept(storage: Storage) -> None:
    sizes = {segment: {"size": n} for n, segment in enumerate(segments(30))}  # more than one batch of 25

    storage.store.put_segment_sizes("r1", NOW, sizes)

    assert all(_history(storage, s, 5) == [("r1", timestamp(NOW), n)] for n, s in enumerate(segments(30)))


def test_the_latest_results_read_back_as_put_and_the_next_replaces_them(storage: Storage) -> None:
    assert storage.store.get_latest() is None
    storage.store.put_latest({"run_id": "r1", "as_of": NOW, "sizes": '{"rfm:new": 3}', "kpis": "{}", "members": 3})
    storage.store.put_latest({"run_id": "r2", "as_of": NOW, "sizes": '{"rfm:new": 4}', "kpis": "{}", "members": 4})

    latest = storage.store.get_latest()
    assert latest is not None
    assert (latest["run_id"], latest["as_of"], latest["sizes"], latest["members"]) == (
        "r2",
        timestamp(NOW),
        '{"rfm:new": 4}',
        4,
    )
