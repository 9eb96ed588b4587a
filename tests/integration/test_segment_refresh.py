"""The segment refresh end to end on the store: two passes over N workers, checkpoints, redeliveries, crashes.

Every test compares with an independent computation: each member's segments straight from the pure core
(`features_of` + `segments_of` with cut points from one whole-population summary), sizes counted from those, and
the table's own membership and event items read back directly.

On DynamoDB Local only: moto copies every table of its backend on each TransactWriteItems (for its rollback), so
populating these tables costs 150-200 ms per purchase there, minutes per test. The store's semantics on moto are
covered by the store tests; the refresh is a client of the same operations.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loyalty.adapters.dynamodb.points_store import ROSTER_INDEX
from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.segments.assign import segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.refresh import SegmentRefresh
from loyalty.segments.rfm import summarize
from loyalty.segments.service import SegmentationService, WorkMessage
from tests.integration.conftest import Backend, Loyalty, dynamodb_client

AS_OF = datetime.now(UTC).replace(microsecond=0)


class ListQueue:
    """The work queue as a list: the test decides the order, duplicates and losses of deliveries."""

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] = deque()
        self.sent = 0

    def send(self, messages: Sequence[Mapping[str, Any]]) -> None:
        self.messages.extend(dict(m) for m in messages)
        self.sent += len(messages)


class CountingClient:
    """The DynamoDB client, counting the items each Scan of the roster index returns."""

    def __init__(self, client: Any):
        self._client = client
        self.roster_items = 0
        self._lock = threading.Lock()

    def scan(self, **request: Any) -> Any:
        page = self._client.scan(**request)
        if request.get("IndexName") == ROSTER_INDEX:
            with self._lock:
                self.roster_items += len(page.get("Items", []))
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _populate(loyalty: Loyalty, members: int, seed: int = 7) -> list[str]:
    """Members with varied histories: never bought, bought once long ago, regulars, big spenders."""
    rng = random.Random(seed)
    ids = []
    for index in range(members):
        member_id = loyalty.enroll(f"refresh-{seed}-{index}")
        ids.append(member_id)
        purchases = rng.choice([0, 0, 1, 1, 2, 3, 5, 8])
        for n in range(purchases):
            days_ago = rng.choice([1, 5, 20, 45, 80, 120, 200, 300, 400])
            amount = rng.choice(["9.99", "25", "60", "120.50", "480"])
            loyalty.buy(
                member_id, amount, order_id=f"o-{seed}-{index}-{n}", occurred_at=AS_OF - timedelta(days=days_ago)
            )
    return ids


def _expected(loyalty: Loyalty, ids: list[str], as_of: datetime, config: SegmentationConfig) -> dict[str, set[str]]:
    features = [features_of(loyalty.member_item(member_id), as_of, config) for member_id in ids]
    cut_points = summarize(features).cut_points()
    return {f.member_id: segments_of(f, cut_points, config) for f in features}


def _memberships(loyalty: Loyalty, member_id: str) -> set[str]:
    page = loyalty.client.query(
        TableName=loyalty.table,
        KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
        ExpressionAttributeValues={":pk": {"S": f"MEMBER#{member_id}"}, ":prefix": {"S": "SEGMENT#"}},
        ConsistentRead=True,
    )
    return {item["segment_id"]["S"] for item in page["Items"]}


def _segment_events(loyalty: Loyalty) -> Counter[tuple[str, str, str]]:
    events: Counter[tuple[str, str, str]] = Counter()
    for item in loyalty.all_items():
        if str(item["SK"]).startswith("SEGEVENT#"):
            events[(item["member_id"], item["segment_id"], item["event_type"])] += 1
    return events


class Harness:
    def __init__(self, loyalty: Loyalty, **options: Any):
        self.loyalty = loyalty
        self.client = CountingClient(loyalty.client)
        from loyalty.adapters.dynamodb.points_store import LoyaltyStore

        store = LoyaltyStore(self.client, loyalty.table)
        self.service = SegmentationService(SegmentStore(store), cache_seconds=0)
        self.queue = ListQueue()
        self.refresh = SegmentRefresh(self.service, self.queue, **options)  # type: ignore[arg-type]

    def start(self, run_id: str, workers: int, as_of: datetime = AS_OF) -> None:
        self.refresh.start(run_id, as_of, workers, "test")

    def drain(self, *, duplicate: bool = False, shuffle: random.Random | None = None) -> int:
        delivered = 0
        while self.queue.messages:
            if shuffle is not None:
                items = list(self.queue.messages)
                shuffle.shuffle(items)
                self.queue.messages = deque(items)
            message = WorkMessage.parse(self.queue.messages.popleft())
            for _ in range(2 if duplicate else 1):
                self.refresh.work(message)
                delivered += 1
        return delivered

    def run(self, run_id: str) -> dict[str, Any]:
        run = SegmentStore(self.service.segments._store).get_run(run_id)
        assert run is not None
        return run


@pytest.fixture(scope="module", params=[pytest.param("dynamodb-local", marks=pytest.mark.dynamodb_local)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend("dynamodb-local", dynamodb_client(request.getfixturevalue("dynamodb_local").endpoint))


@pytest.fixture
def population(loyalty: Loyalty) -> tuple[Loyalty, list[str]]:
    return loyalty, _populate(loyalty, 40)


def test_a_refresh_gives_every_member_the_segments_of_the_pure_core(population: tuple[Loyalty, list[str]]) -> None:
    # Given 40 members with varied histories
    loyalty, ids = population
    harness = Harness(loyalty, page_size=7)
    # When a refresh runs over 4 workers
    harness.start("run-1", workers=4)
    harness.drain()
    # Then the run completed, every member was read once per pass, and memberships are what the core computes
    run = harness.run("run-1")
    assert run["status"] == "complete"
    assert int(run["pass1_done"]) == int(run["pass2_done"]) == 4
    assert int(run["members"]) == int(run["members_read"]) == len(ids)
    assert harness.client.roster_items == 2 * len(ids)
    expected = _expected(loyalty, ids, AS_OF, SegmentationConfig())
    for member_id in ids:
        assert _memberships(loyalty, member_id) == expected[member_id], member_id
        assert set(loyalty.member_item(member_id)["segments"]) == expected[member_id]
    # And the sizes are the counts, every segment of the catalog listed (0 for the empty ones)
    sizes = Counter(segment for segments in expected.values() for segment in segments)
    latest = harness.service.catalog()
    assert {row["segment_id"]: row["size"] for row in latest if row["size"]} == dict(sizes)
    # And one SegmentEntered per membership, nothing else (the first run starts from nothing)
    events = _segment_events(loyalty)
    assert sum(events.values()) == sum(sizes.values())
    assert all(count == 1 and kind == "SegmentEntered" for (_, _, kind), count in events.items())


def test_a_second_refresh_on_the_same_facts_writes_nothing(population: tuple[Loyalty, list[str]]) -> None:
    loyalty, _ids = population
    harness = Harness(loyalty)
    harness.start("run-1", workers=3)
    harness.drain()
    events_before = _segment_events(loyalty)
    # When the refresh runs again as of the same moment
    harness.start("run-2", workers=2)
    harness.drain()
    # Then it changed nothing and emitted nothing
    run = harness.run("run-2")
    assert run["status"] == "complete"
    assert int(run["changes"]) == 0 and int(run["changed_members"]) == 0
    assert _segment_events(loyalty) == events_before


def test_checkpoints_redeliveries_and_any_order_give_the_same_result(population: tuple[Loyalty, list[str]]) -> None:
    # Given workers that checkpoint after every page of 3, every message delivered twice, in random order
    loyalty, ids = population
    harness = Harness(loyalty, page_size=3, max_pages=1)
    harness.start("run-1", workers=3)
    delivered = harness.drain(duplicate=True, shuffle=random.Random(3))
    # Then it took many steps, yet every worker was counted once and every change written once
    run = harness.run("run-1")
    assert delivered > 2 * 2 * 3
    assert run["status"] == "complete"
    assert int(run["pass1_done"]) == int(run["pass2_done"]) == 3
    assert int(run["members"]) == int(run["members_read"]) == len(ids)
    expected = _expected(loyalty, ids, AS_OF, SegmentationConfig())
    for member_id in ids:
        assert _memberships(loyalty, member_id) == expected[member_id]
    events = _segment_events(loyalty)
    assert set(events.values()) == {1}
    assert sum(events.values()) == sum(len(s) for s in expected.values())


def test_a_worker_that_dies_mid_page_is_retried_without_double_counting(
    population: tuple[Loyalty, list[str]],
) -> None:
    loyalty, ids = population
    harness = Harness(loyalty, page_size=50)
    store = harness.service.segments
    real_apply = store.apply
    calls = {"n": 0}

    def dying_apply(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            raise ConnectionError("worker lost mid-page")
        return real_apply(*args, **kwargs)

    store.apply = dying_apply  # type: ignore[method-assign]
    harness.start("run-1", workers=2)
    # When one delivery dies after writing four members' changes, and SQS delivers it again
    failures = 0
    while harness.queue.messages:
        body = harness.queue.messages.popleft()
        try:
            harness.refresh.work(WorkMessage.parse(body))
        except ConnectionError:
            failures += 1
            harness.queue.messages.append(body)
    # Then the run completes with each member counted once and each change written once
    assert failures == 1
    run = harness.run("run-1")
    assert run["status"] == "complete"
    assert int(run["members"]) == len(ids)
    expected = _expected(loyalty, ids, AS_OF, SegmentationConfig())
    sizes = Counter(segment for segments in expected.values() for segment in segments)
    assert {row["segment_id"]: row["size"] for row in harness.service.catalog() if row["size"]} == dict(sizes)
    assert set(_segment_events(loyalty).values()) == {1}


def test_a_member_who_changes_during_the_refresh_is_evaluated_on_fresh_facts(
    population: tuple[Loyalty, list[str]],
) -> None:
    loyalty, ids = population
    harness = Harness(loyalty, page_size=100)
    harness.start("run-1", workers=1)
    # Given pass one is done (the cut points are fixed) ...
    message = WorkMessage.parse(harness.queue.messages.popleft())
    harness.refresh.work(message)
    assert harness.run("run-1")["status"] == "scoring"
    # ... and a member buys after the scan of pass two read them
    target = ids[0]
    original_scan = harness.service.segments.scan_roster

    def scan_then_buy(*args: Any, **kwargs: Any) -> Any:
        page = original_scan(*args, **kwargs)
        loyalty.buy(target, "700", order_id="during-refresh", occurred_at=AS_OF - timedelta(hours=1))
        harness.service.segments.scan_roster = original_scan  # type: ignore[method-assign]
        return page

    harness.service.segments.scan_roster = scan_then_buy  # type: ignore[method-assign]
    harness.drain()
    # Then the member's segments are those of their facts after the purchase, with the run's cut points
    run = harness.run("run-1")
    assert run["status"] == "complete"
    from loyalty.segments.rfm import RfmCutPoints

    cut_points = RfmCutPoints.model_validate_json(run["cut_points"])
    config = SegmentationConfig()
    fresh = segments_of(features_of(loyalty.member_item(target), AS_OF, config), cut_points, config)
    assert _memberships(loyalty, target) == fresh
    assert "points:high-spenders" in fresh


def test_concurrent_reevaluations_of_one_member_emit_each_change_once(loyalty: Loyalty) -> None:
    # Given a member who just bought, seen by eight evaluators at once (the stream and a refresh, say)
    member_id = loyalty.enroll("racer")
    loyalty.buy(member_id, "250", order_id="race-1", occurred_at=AS_OF - timedelta(days=2))
    image = loyalty.member_item(member_id)
    services = [SegmentationService(SegmentStore(loyalty.store), cache_seconds=0) for _ in range(8)]
    barrier = threading.Barrier(len(services))
    results: list[Any] = []

    def evaluate(service: SegmentationService) -> None:
        barrier.wait()
        results.append(service.reevaluate(image))

    threads = [threading.Thread(target=evaluate, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then exactly one of them wrote the change, and each SegmentEntered exists once
    entered = [r for r in results if r.entered]
    assert len(entered) == 1
    events = _segment_events(loyalty)
    assert set(events.values()) == {1}
    assert {segment for (_, segment, _) in events} == _memberships(loyalty, member_id) == set(entered[0].entered)


def test_two_last_finishers_of_pass_one_send_pass_two_once(population: tuple[Loyalty, list[str]]) -> None:
    # Given two workers whose pass-one parts finish at the same moment
    loyalty, _ = population
    harness = Harness(loyalty)
    harness.start("run-1", workers=2)
    store = harness.service.segments
    real_finish = store.finish_part
    barrier = threading.Barrier(2)

    def finish_together(*args: Any, **kwargs: Any) -> bool:
        finished = real_finish(*args, **kwargs)
        if args[1] == 1:
            barrier.wait(timeout=30)  # both parts are counted before either moves the run on
        return finished

    store.finish_part = finish_together  # type: ignore[method-assign]
    messages = [WorkMessage.parse(harness.queue.messages.popleft()) for _ in range(2)]
    threads = [threading.Thread(target=harness.refresh.work, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then pass two's messages were sent once, not once per finisher
    assert sorted((m["pass"], m["worker"]) for m in harness.queue.messages) == [(2, 0), (2, 1)]
    harness.drain()
    assert harness.run("run-1")["status"] == "complete"
