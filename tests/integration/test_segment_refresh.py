"""The segment refresh end to end: its state machine (template.yaml) executed by moto's interpreter, its tasks run
by the refresh's steps on the store, two passes over N shares, continuations, repeated invocations, crashes.

Every test compares with an independent computation: each member's segments straight from the pure core
(`features_of` + `segments_of` with cut points from one whole-population summary), sizes counted from those, and
the table's own membership and event items read back directly.

The data is on DynamoDB Local only: moto serves one request at a time (devstack/moto_isolation.py) and parses each
expression anew, so a refresh's concurrent shares would queue behind each other there. The store's semantics on
moto are covered by the store tests; the refresh is a client of the same operations.

The population is seeded once per module, through LoyaltyService on the in-memory points store (which
test_points_store_contract.py holds to the DynamoDB store, member item included); each test writes those member
items into a fresh table of its own (no stream: nothing here reads one) with BatchWriteItem. The refresh reads
member items alone. Through the DynamoDB store's transactions the seeding took 5-12 s per test.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loyalty.adapters.dynamodb.points_store import ROSTER_INDEX
from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.points.members import Consent, ConsentChannel
from loyalty.segments.assign import segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.refresh import SegmentRefresh
from loyalty.segments.rfm import summarize
from loyalty.segments.service import SegmentationService
from tests.integration.conftest import (
    PROFILED,
    Backend,
    Loyalty,
    dynamodb_client,
    make_loyalty,
    member_items,
    memory_loyalty,
    write_members,
)
from tests.integration.refresh_job import RefreshJob, StepFunctionsServer, quick_retries, step_functions

__all__ = ["quick_retries", "step_functions"]  # the fixtures, for the modules that import this one's harness

AS_OF = datetime.now(UTC).replace(microsecond=0)


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
    """Members with varied histories: never bought, bought once long ago, regulars, big spenders. Every fifth has
    not consented to profiling: counted, left out of the cut points, and in no behavioural segment."""
    rng = random.Random(seed)
    ids = []
    for index in range(members):
        consent = PROFILED if index % 5 != 4 else Consent(email=True)
        member_id = loyalty.enroll(f"refresh-{seed}-{index}", consent=consent)
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
    cut_points = summarize(f for f in features if f.consent.profiling).cut_points()  # the population profiled
    return {f.member_id: segments_of(f, cut_points, config) for f in features}


def _unprofiled(loyalty: Loyalty, ids: list[str]) -> list[str]:
    return [member_id for member_id in ids if not loyalty.member_item(member_id)["consent"].get("profiling")]


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
    """The refresh's state machine on moto, its tasks run by a SegmentRefresh on the test's table. `invocations`
    lists every task the function ran, in order (the step, the share's pass and worker); `repeat` runs each
    invocation that many times (Lambda and Step Functions deliver at least once), answering the last result."""

    def __init__(self, loyalty: Loyalty, server: StepFunctionsServer, *, repeat: int = 1, **options: Any):
        self.loyalty = loyalty
        self.client = CountingClient(loyalty.client)
        from loyalty.adapters.dynamodb.points_store import LoyaltyStore

        store = LoyaltyStore(self.client, loyalty.table)
        self.service = SegmentationService(SegmentStore(store), cache_seconds=0)
        self.refresh = SegmentRefresh(self.service, **options)
        self.repeat = repeat
        self.invocations: list[tuple[str, int, int]] = []
        self.failures = 0
        self._lock = threading.Lock()
        self.before: Callable[[dict[str, Any]], None] = lambda task: None  # runs before each task (a crash, say)
        self.job = RefreshJob(server, self._task)

    def _task(self, task: dict[str, Any]) -> Any:
        share = task.get("share") or {}
        with self._lock:
            self.invocations.append((str(task["step"]), int(share.get("pass", 0)), int(share.get("worker", -1))))
        try:
            self.before(task)
            result: Any = None
            for _ in range(self.repeat):
                result = self.refresh.handle(task, workers=4, still_running=self.job.executions.is_running)
            return result
        except Exception:
            with self._lock:
                self.failures += 1
            raise

    def start(self, run_id: str, workers: int, as_of: datetime = AS_OF) -> str:
        """Record the run and start its execution, as the admin API does. Returns the execution's ARN."""
        self.service.start_refresh(self.job.executions, run_id, as_of, workers, "test")
        return self.job.executions.execution_arn(run_id)

    def run_to_end(self, run_id: str, workers: int, as_of: datetime = AS_OF) -> dict[str, Any]:
        self.job.wait(self.start(run_id, workers, as_of))
        return self.run(run_id)

    def steps(self, step: str) -> list[tuple[str, int, int]]:
        return [invocation for invocation in self.invocations if invocation[0] == step]

    def run(self, run_id: str) -> dict[str, Any]:
        run = SegmentStore(self.service.segments._store).get_run(run_id)
        assert run is not None
        return run


@pytest.fixture
def harnesses(step_functions: StepFunctionsServer, quick_retries: None) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(loyalty: Loyalty, **options: Any) -> Harness:
        made.append(Harness(loyalty, step_functions, **options))
        return made[-1]

    yield make
    for harness in made:
        harness.job.close()


@pytest.fixture(scope="module", params=[pytest.param("dynamodb-local", marks=pytest.mark.dynamodb_local)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend("dynamodb-local", dynamodb_client(request.getfixturevalue("dynamodb_local").endpoint))


@pytest.fixture(scope="module")
def seeded() -> tuple[list[str], list[dict[str, Any]]]:
    """40 members of `_populate`, through the service on the in-memory store: their ids and member items."""
    source = memory_loyalty()
    ids = _populate(source, 40)
    return ids, member_items(source, ids)


@pytest.fixture
def loyalty(backend: Backend) -> Iterator[Loyalty]:
    """A fresh table without a stream (nothing here reads one; DynamoDB Local writes faster without)."""
    system = make_loyalty(backend, stream=False)
    yield system
    backend.client.delete_table(TableName=system.table)


@pytest.fixture
def population(loyalty: Loyalty, seeded: tuple[list[str], list[dict[str, Any]]]) -> tuple[Loyalty, list[str]]:
    """The seeded members' items, written to this test's table."""
    ids, items = seeded
    write_members(loyalty, items)
    return loyalty, ids


def test_a_refresh_gives_every_member_the_segments_of_the_pure_core(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    # Given 40 members with varied histories
    loyalty, ids = population
    harness = harnesses(loyalty, page_size=7)
    # When a refresh's execution runs over 4 shares
    run = harness.run_to_end("run-1", workers=4)
    # Then the run completed, every member was read once per pass, and memberships are what the core computes
    assert run["status"] == "complete"
    assert int(run["pass1_done"]) == int(run["pass2_done"]) == 4
    assert int(run["members"]) == int(run["members_read"]) == len(ids)
    assert harness.client.roster_items == 2 * len(ids)
    expected = _expected(loyalty, ids, AS_OF, SegmentationConfig())
    for member_id in ids:
        assert _memberships(loyalty, member_id) == expected[member_id], member_id
        assert set(loyalty.member_item(member_id).get("segments") or ()) == expected[member_id]
    # And the members who have not consented to profiling were counted, and are in no segment (no rule segment
    # reads only declared fields here)
    unprofiled = _unprofiled(loyalty, ids)
    assert int(run["members_without_profiling"]) == len(unprofiled) == len(ids) // 5
    assert all(_memberships(loyalty, member_id) == set() for member_id in unprofiled)
    # And the sizes are the counts, every segment of the catalog listed (0 for the empty ones)
    sizes = Counter(segment for segments in expected.values() for segment in segments)
    latest = harness.service.catalog()
    assert {row["segment_id"]: row["size"] for row in latest if row["size"]} == dict(sizes)
    # And one SegmentEntered per membership, nothing else (the first run starts from nothing)
    events = _segment_events(loyalty)
    assert sum(events.values()) == sum(sizes.values())
    assert all(count == 1 and kind == "SegmentEntered" for (_, _, kind), count in events.items())
    # And the one-run slot is free again
    assert harness.service.segments.active_run() is None


def test_a_second_refresh_on_the_same_facts_writes_nothing(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    loyalty, _ids = population
    harness = harnesses(loyalty)
    harness.run_to_end("run-1", workers=3)
    events_before = _segment_events(loyalty)
    # When the refresh runs again as of the same moment
    run = harness.run_to_end("run-2", workers=2)
    # Then it changed nothing and emitted nothing
    assert run["status"] == "complete"
    assert int(run["changes"]) == 0 and int(run["changed_members"]) == 0
    assert _segment_events(loyalty) == events_before


def test_continuations_repeated_invocations_and_any_order_give_the_same_result(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    # Given shares that hand on a continuation after every page of 3, and every task invocation run twice (at least
    # once delivery), the shares running concurrently in whatever order the Map runs them
    loyalty, ids = population
    harness = harnesses(loyalty, page_size=3, max_pages=1, repeat=2)
    run = harness.run_to_end("run-1", workers=3)
    # Then the Choice looped each share back many times, yet every share was counted once and every change
    # written once
    assert len(harness.steps("scan")) > 3 and len(harness.steps("score")) > 3
    assert run["status"] == "complete"
    assert int(run["pass1_done"]) == int(run["pass2_done"]) == 3
    assert int(run["members"]) == int(run["members_read"]) == len(ids)
    expected = _expected(loyalty, ids, AS_OF, SegmentationConfig())
    for member_id in ids:
        assert _memberships(loyalty, member_id) == expected[member_id]
    events = _segment_events(loyalty)
    assert set(events.values()) == {1}
    assert sum(events.values()) == sum(len(s) for s in expected.values())


def test_a_worker_that_dies_mid_page_is_retried_by_the_definition_without_double_counting(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    loyalty, ids = population
    harness = harnesses(loyalty, page_size=50)
    store = harness.service.segments
    real_apply = store.apply
    calls = {"n": 0}
    lock = threading.Lock()

    def dying_apply(*args: Any, **kwargs: Any) -> Any:
        with lock:
            calls["n"] += 1
            dies = calls["n"] == 5
        if dies:
            raise ConnectionError("worker lost mid-page")
        return real_apply(*args, **kwargs)

    store.apply = dying_apply  # type: ignore[method-assign]
    # When one invocation dies after writing four members' changes, and the definition's Retry runs its task again
    run = harness.run_to_end("run-1", workers=2)
    # Then the run completes with each member counted once and each change written once
    assert harness.failures == 1
    assert len(harness.steps("score")) == 2 + 1
    assert run["status"] == "complete"
    assert int(run["members"]) == len(ids)
    expected = _expected(loyalty, ids, AS_OF, SegmentationConfig())
    sizes = Counter(segment for segments in expected.values() for segment in segments)
    assert {row["segment_id"]: row["size"] for row in harness.service.catalog() if row["size"]} == dict(sizes)
    assert set(_segment_events(loyalty).values()) == {1}


def test_a_member_who_changes_during_the_refresh_is_evaluated_on_fresh_facts(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    loyalty, ids = population
    harness = harnesses(loyalty, page_size=100)
    target = ids[0]
    store = harness.service.segments
    original_scan = store.scan_roster

    # Given pass one is done (the cut points are fixed), a member buys after the scan of pass two read them
    def scan_then_buy(*args: Any, **kwargs: Any) -> Any:
        page = original_scan(*args, **kwargs)
        if store.get_run("run-1")["status"] == "scoring":  # type: ignore[index]
            loyalty.buy(target, "700", order_id="during-refresh", occurred_at=AS_OF - timedelta(hours=1))
            store.scan_roster = original_scan  # type: ignore[method-assign]
        return page

    store.scan_roster = scan_then_buy  # type: ignore[method-assign]
    run = harness.run_to_end("run-1", workers=1)
    # Then the member's segments are those of their facts after the purchase, with the run's cut points
    assert run["status"] == "complete"
    assert "during-refresh" in str(loyalty.ledger(target))
    from loyalty.segments.rfm import RfmCutPoints

    cut_points = RfmCutPoints.model_validate_json(run["cut_points"])
    config = SegmentationConfig()
    fresh = segments_of(features_of(loyalty.member_item(target), AS_OF, config), cut_points, config)
    assert _memberships(loyalty, target) == fresh
    assert "points:high-spenders" in fresh


def test_a_member_who_withdrew_profiling_consent_leaves_every_segment_at_the_next_refresh(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    # Given a refresh has put every consenting member in their segments
    loyalty, ids = population
    harness = harnesses(loyalty)
    harness.run_to_end("run-1", workers=2)
    leaving = next(member_id for member_id in ids if len(_memberships(loyalty, member_id)) > 1)
    was_in = _memberships(loyalty, leaving)
    # When the member withdraws their profiling consent (no stream here: only the refresh re-evaluates them)
    assert loyalty.service.set_consent(leaving, ConsentChannel.PROFILING, False, "member")["changed"]
    run = harness.run_to_end("run-2", workers=2)
    # Then the next refresh took them out of every segment, announcing each, and counted them
    assert _memberships(loyalty, leaving) == set()
    events = _segment_events(loyalty)
    left = {segment for (member, segment, kind) in events if member == leaving and kind == "SegmentLeft"}
    assert left == was_in and set(events.values()) == {1}
    assert int(run["members_without_profiling"]) == len(_unprofiled(loyalty, ids)) == len(ids) // 5 + 1
    assert _memberships(loyalty, ids[0]) == _expected(loyalty, ids, AS_OF, SegmentationConfig())[ids[0]]


def test_concurrent_reevaluations_of_one_member_emit_each_change_once(loyalty: Loyalty) -> None:
    # Given a member who just bought, seen by eight evaluators at once (the stream and a refresh, say)
    member_id = loyalty.enroll("racer", consent=PROFILED)
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


def test_pass_two_starts_once_after_every_share_of_pass_one(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    # Given two shares whose pass-one tasks finish at the same moment
    loyalty, _ = population
    harness = harnesses(loyalty)
    barrier = threading.Barrier(2)

    def finish_together(task: dict[str, Any]) -> None:
        if task["step"] == "scan":
            barrier.wait(timeout=30)

    harness.before = finish_together
    run = harness.run_to_end("run-1", workers=2)
    # Then the merge ran once, after both, and pass two's shares were handed out once, each run once
    assert run["status"] == "complete"
    steps = [step for step, _, _ in harness.invocations]
    assert steps.count("begin") == steps.count("merge") == steps.count("finish") == 1
    assert sorted(harness.steps("scan")) == [("scan", 1, 0), ("scan", 1, 1)]
    assert sorted(harness.steps("score")) == [("score", 2, 0), ("score", 2, 1)]
    assert steps.index("merge") > max(i for i, step in enumerate(steps) if step == "scan")
    assert steps.index("merge") < min(i for i, step in enumerate(steps) if step == "score")
    assert steps[-1] == "finish"


def test_a_second_run_waits_for_the_first_and_a_repeated_start_runs_nothing_twice(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    loyalty, _ = population
    harness = harnesses(loyalty)
    held = threading.Event()
    release = threading.Event()

    def hold_pass_one(task: dict[str, Any]) -> None:
        if task["step"] == "scan":
            held.set()
            release.wait(timeout=60)

    harness.before = hold_pass_one
    # Given a run whose execution is in pass one
    first = harness.start("run-1", workers=1)
    assert held.wait(timeout=30)
    # When another run is asked for meanwhile, it is refused, naming the running one
    from loyalty.core.errors import RefreshInProgress

    with pytest.raises(RefreshInProgress) as refused:
        harness.service.start_refresh(harness.job.executions, "run-2", AS_OF, 1, "test")
    assert refused.value.details == {"run_id": "run-1"}
    # And the same run started again finds its execution: one execution, nothing run twice
    again, created = harness.service.start_refresh(harness.job.executions, "run-1", AS_OF, 1, "test")
    assert not created and again["run_id"] == "run-1"
    release.set()
    harness.job.wait(first)
    harness.service.start_refresh(harness.job.executions, "run-1", AS_OF, 1, "test")
    listed = harness.job.server.client.list_executions(stateMachineArn=harness.job.state_machine_arn)["executions"]
    assert [execution["name"] for execution in listed] == ["run-1"]
    steps = [step for step, _, _ in harness.invocations]
    assert steps.count("begin") == steps.count("merge") == steps.count("finish") == 1
    # And once it is over, the next run takes the slot
    assert harness.run_to_end("run-2", workers=1)["status"] == "complete"


def test_a_run_whose_execution_ended_unfinished_gives_way_and_shows_as_failed(
    population: tuple[Loyalty, list[str]], harnesses: Callable[..., Harness]
) -> None:
    loyalty, _ = population
    harness = harnesses(loyalty)

    def crash_the_merge(task: dict[str, Any]) -> None:
        if task["step"] == "merge":
            raise RuntimeError("the fit keeps failing")

    harness.before = crash_the_merge
    # Given a run whose merge fails on every attempt the definition's Retry makes
    described = harness.job.server.client.describe_execution(executionArn=harness.start("run-1", workers=2))
    from devstack.states import wait_for_execution

    ended = wait_for_execution(harness.job.server.client, described["executionArn"], timeout=120)
    assert ended["status"] == "FAILED" and ended["error"] == "RuntimeError"
    assert harness.steps("merge") == [("merge", 0, -1)] * 4  # the first attempt and three retries
    # Then the run shows as failed (its record says scanning; its execution has ended)
    assert harness.run("run-1")["status"] == "scanning"
    assert harness.service.refresh_run("run-1", harness.job.executions)["status"] == "failed"
    # And the next run takes the slot over, recording the abandoned run as failed
    harness.before = lambda task: None
    assert harness.run_to_end("run-2", workers=2)["status"] == "complete"
    assert harness.run("run-1")["status"] == "failed"
    assert harness.service.segments.active_run() is None
