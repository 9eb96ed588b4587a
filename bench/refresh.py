"""`python -m bench.refresh`: the segment refresh end to end on DynamoDB Local (loyalty.segments.refresh).

    cpu       CPU time per member of each step a worker runs (botocore parsing a Scan page, from_item, features_of,
              RFM, the BG/NBD sample row, segments_given_rfm, KPIs) and per membership transaction, in this process
              alone, best of 3: the figures docs/refresh-estimate.md builds the 10M-member estimate on
    ingest    --members synthetic member items (default 50,000), shaped as the store writes them (the Member model
              dumped and encoded with the store's own to_item, write-time aggregates over the last 24 months), put
              with BatchWriteItem from a thread pool into table A, made from template.yaml on a DynamoDB Local of
              its own; later the same into table B on another (one emulator per table: DynamoDB Local slows a
              table's writes by the stream records its other tables hold). Setup only: the bench is about the
              refresh, not the ingest
    run A     table A, a full refresh with 1 worker (a first run: every member who consents to profiling, all by
              default (--profiling), gets a segment set), profiled
    baseline  in table A after run A: a bare TransactWriteItems of what a membership change writes, from 1 and from
              4 threads
    run B     table B (the same items), a full refresh with 4 shares running concurrently: the refresh's state machine
              on moto's ASL interpreter in this process, its Distributed Maps running the shares' tasks at once
    run C     table B again, no fact changed: must write nothing
    run D     table B after ~1% of members bought once more (an UpdateItem as the ledger's: the month's maps,
              purchase_count, last_purchase_at, counters, revision + 1): must write exactly the members whose
              computed segments differ
    profile   where run A's one worker spent its time, wall and CPU: Scan calls, decoding, features_of, RFM, the
              sample, assignment, KPIs, membership transactions

Per run: wall time, members/s, roster items read per member per pass (Items returned by Scans of MemberRoster),
DynamoDB calls by operation and their mean latency, the state machine's tasks run, membership transactions attempted
and committed. Every run is checked (exactly 1 roster item per member per pass, 2W + 3 tasks, members counted once, one
committed transaction per changed member, none cancelled) and its memberships against the pure core (features_of +
summarize + segments_of over every member item read back from the table, with the run's prediction model); failed
checks are listed at the end and make the exit status 1. Counts and ratios carry over to AWS; absolute times are
DynamoDB Local's on this machine (a Java emulator sharing the CPUs with the workers, all of them threads of one
Python process), so they say little about AWS throughput. DynamoDB Local only: moto copies its tables on every
transaction.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import random
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from devstack import dynamodb_local
from devstack.resources import create_table
from devstack.template import Resolver, load_template
from loyalty.adapters.dynamodb.points_store import ROSTER_INDEX, LoyaltyStore, member_key
from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.adapters.dynamodb.table import from_item, to_item
from loyalty.core import ids
from loyalty.points import member_record as record
from loyalty.points.member_record import PastPurchase, month_key, months_before, new_member_item, with_purchases
from loyalty.points.members import Consent, Member, Profile
from loyalty.segments.assign import segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.prediction import PredictionModel
from loyalty.segments.rfm import RfmCutPoints, summarize
from loyalty.segments.service import SegmentationService

ROOT = Path(__file__).resolve().parents[1]
CREDENTIALS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench", "region_name": "us-east-1"}
OPERATIONS = ("Scan", "TransactWriteItems", "Query", "GetItem", "PutItem", "UpdateItem", "BatchWriteItem")
COUNTRIES = (("US", 40), ("FR", 15), ("GB", 12), ("DE", 10), ("CA", 8), ("ES", 6), ("IT", 5), ("AU", 4))
TIERS = ((1000, "Rouge"), (350, "VIB"), (0, "Insider"))  # ProgramConfig's defaults, on points of the last 12 months
FIRST_NAMES = ("Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farah", "Giulia", "Hugo", "Iris", "Jonas", "Kenji", "Lea")
LAST_NAMES = ("Martin", "Smith", "Dubois", "Müller", "Rossi", "García", "Nguyen", "Kowalski", "Silva", "Brown")


# ---- synthetic members ------------------------------------------------------------------------------------------


def _geometric(rng: random.Random, p: float) -> int:
    """1, 2, 3, ... with P(k) = (1 - p)^(k - 1) p."""
    return 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - p))


def synthetic_member(rng: random.Random, index: int, as_of: datetime, profiling_share: float = 1.0) -> dict[str, Any]:
    """One member item as the store holds it after enrollment and a history of purchases and redemptions.

    20% never purchased; the others' last purchase a long-tailed number of days ago (mean 60, capped at two years),
    a geometric number of purchases (mean 3.3) spread back from it over an exponential span (mean 300 days), each a
    lognormal basket (median about $37) earning 1 point per dollar. The monthly maps hold the months the store
    keeps (the as-of month and the 23 before it); purchase_count and lifetime points count the older ones too."""
    member_id = f"m_{ids.ulid().lower()}"
    history: list[PastPurchase] = []
    if rng.random() < 0.20:
        enrolled_at = as_of - timedelta(days=rng.uniform(1, 1000))
    else:
        last_days = min(int(rng.expovariate(1 / 60)), 729)
        purchase_count = _geometric(rng, 0.30)
        first_days = last_days + (int(rng.expovariate(1 / 300)) if purchase_count > 1 else 0)
        days = [last_days, first_days] + [rng.randint(last_days, first_days) for _ in range(purchase_count - 2)]
        moments = [as_of - timedelta(days=d, seconds=rng.randrange(3600, 86_400)) for d in days[:purchase_count]]
        for at in moments:
            amount = Decimal(str(max(0.5, round(rng.lognormvariate(3.6, 0.9), 2))))
            history.append(PastPurchase(at, amount, int(amount)))
        enrolled_at = min(moments) - timedelta(days=rng.uniform(0, 90))
    lifetime = sum(purchase.points for purchase in history)
    redemptions = 0
    redeemed = 0
    if lifetime >= 500 and rng.random() < 0.4:
        redeemed = 100 * rng.randint(1, lifetime // 100)
        redemptions = max(1, redeemed // 500)
    recent_points = sum(p.points for p in history if month_key(p.at) > months_before(as_of, 12))
    tier = next(name for threshold, name in TIERS if recent_points >= threshold)
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    country = rng.choices([c for c, _ in COUNTRIES], weights=[w for _, w in COUNTRIES])[0]
    member = Member(
        member_id=member_id,
        external_id=f"bench-{index:08d}",
        profile=Profile(
            first_name=first,
            last_name=last,
            email=f"{first.lower()}.{last.lower()}.{index}@example.com",
            locale="en-US" if country == "US" else "en",
            country=country,
        ),
        consent=Consent(
            email=rng.random() < 0.6,
            sms=rng.random() < 0.3,
            push=rng.random() < 0.4,
            profiling=rng.random() < profiling_share,  # the draw is made whatever the share: same members
        ),
        birthday=date(rng.randint(1950, 2006), rng.randint(1, 12), rng.randint(1, 28)) if rng.random() < 0.8 else None,
        referral_code=ids.referral_code(),
        tier=tier,
        enrolled_at=enrolled_at,
    )
    # What LoyaltyStore.create_member writes, then what the ledger transactions would have added to it.
    values = with_purchases(new_member_item(member), history, as_of)
    values["redeemed"] = redeemed
    values["available"] = int(values["available"]) - redeemed
    values[record.REVISION] = record.revision_of(values) + redemptions
    return {**member_key(member_id), **to_item(values)}


def dynamodb_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB bills an item (DynamoDB JSON) as: names and strings in UTF-8, numbers about one byte per two
    significant digits plus one, 3 bytes + 1 per element for maps and lists (the developer guide's rules)."""

    def size(typed: Mapping[str, Any]) -> int:
        ((kind, raw),) = typed.items()
        if kind == "S":
            return len(raw.encode())
        if kind == "N":
            digits = raw.lstrip("-").replace(".", "").strip("0") or "0"
            return (len(digits) + 1) // 2 + 1
        if kind in ("BOOL", "NULL"):
            return 1
        if kind == "M":
            return 3 + sum(len(k.encode()) + size(v) + 1 for k, v in raw.items())
        if kind == "L":
            return 3 + sum(size(v) + 1 for v in raw)
        return len(raw)

    return sum(len(name.encode()) + size(typed) for name, typed in value.items())


# ---- DynamoDB Local ----------------------------------------------------------------------------------------------


def new_client(endpoint: str) -> Any:
    config = Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 8})
    return boto3.client("dynamodb", endpoint_url=endpoint, config=config, **CREDENTIALS)


def new_table(client: Any) -> str:
    """template.yaml's LoyaltyTable (keys, both sparse indexes, stream, TTL), made by the local stack's own code."""
    template = load_template(ROOT / "template.yaml")
    resolver = Resolver(template, stack_name=f"bench-refresh-{uuid.uuid4().hex[:8]}")
    return str(create_table(client, template.resources["LoyaltyTable"], resolver)["TableName"])


def batch_write(client: Any, table: str, items: Sequence[dict[str, Any]], threads: int) -> None:
    def write(start: int) -> None:
        pending = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
        for attempt in range(20):
            unprocessed = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not unprocessed:
                return
            pending = unprocessed
            time.sleep(0.01 * 2 ** min(attempt, 6))
        raise RuntimeError("BatchWriteItem kept items unprocessed")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(0, len(items), 25)))


def ingest(client: Any, table: str, items: Sequence[dict[str, Any]], threads: int, name: str) -> None:
    started = time.perf_counter()
    batch_write(client, table, items, threads)
    seconds = time.perf_counter() - started
    print(
        f"ingest into table {name} (setup only; this bench is about the refresh): BatchWriteItem from {threads} "
        f"threads into a table made from template.yaml on a DynamoDB Local of its own, {len(items) / seconds:,.0f} "
        f"items/s ({seconds:.0f} s)",
        flush=True,
    )


def read_roster(client: Any, table: str, segments: int = 4) -> dict[str, dict[str, Any]]:
    """Every member item, through the roster index (uncounted: the bench's own checks, not the refresh)."""

    def share(segment: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {
            "TableName": table,
            "IndexName": ROSTER_INDEX,
            "Segment": segment,
            "TotalSegments": segments,
        }
        while True:
            page = client.scan(**request)
            found.extend(from_item(raw) for raw in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    with ThreadPoolExecutor(segments) as pool:
        return {str(item["member_id"]): item for part in pool.map(share, range(segments)) for item in part}


def buy_once_more(client: Any, table: str, member_ids: Sequence[str], at: datetime, seed: int, threads: int) -> None:
    """One more purchase for each member, as the ledger's member update records it (docs/data-model.md)."""
    rng = random.Random(seed)
    amounts = [Decimal(str(max(0.5, round(rng.lognormvariate(3.6, 0.9), 2)))) for _ in member_ids]
    moment = to_item({"at": at})["at"]
    names = {
        "#m": month_key(at),
        "#spend": record.SPEND_BY_MONTH,
        "#purchases": record.PURCHASES_BY_MONTH,
        "#points": record.POINTS_BY_MONTH,
        "#first": record.FIRST_PURCHASE_AT,
        "#last": record.LAST_PURCHASE_AT,
        "#revision": record.REVISION,
        "#count": record.PURCHASE_COUNT,
    }

    def buy(index: int) -> None:
        amount = amounts[index]
        earned = int(amount)
        client.update_item(
            TableName=table,
            Key=member_key(member_ids[index]),
            UpdateExpression=(
                "SET #spend.#m = if_not_exists(#spend.#m, :zero) + :amount, "
                "#purchases.#m = if_not_exists(#purchases.#m, :zero) + :one, "
                "#points.#m = if_not_exists(#points.#m, :zero) + :points, "
                "#first = if_not_exists(#first, :at), #last = :at "
                "ADD #revision :one, #count :one, lifetime_earned :points, available :points"
            ),
            ConditionExpression="attribute_exists(PK) AND (attribute_not_exists(#last) OR #last <= :at)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":amount": {"N": str(amount)},
                ":points": {"N": str(earned)},
                ":at": moment,
            },
        )

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(buy, range(len(member_ids))))


def bare_transactions(
    client: Any, table: str, member: Mapping[str, Any], changes: int, count: int, threads: int
) -> tuple[float, float, float]:
    """The emulator's own rate for what a membership transaction writes, without the refresh: one member item (in
    the MemberRoster index), `changes` membership items (in SegmentMembers) and `changes` event items, conditional
    puts in one TransactWriteItems, from `threads` threads. (transactions per second, mean latency in ms, mean CPU
    of this process per transaction in us)"""
    latencies: list[float] = []
    cpu: list[float] = []

    def put(item: dict[str, Any]) -> dict[str, Any]:
        return {"Put": {"TableName": table, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}

    def one(index: int) -> None:
        key = f"MEMBER#bench-{uuid.uuid4().hex}"
        items = [put({**member, "PK": {"S": key}, record.ROSTER_ID: {"S": key}})]
        for n in range(changes):
            membership = {"segment_shard": {"S": f"bench:{n}#{index % 16:02d}"}, "segment_member": {"S": key}}
            items.append(put({"PK": {"S": key}, "SK": {"S": f"SEGMENT#bench:{n}"}, **membership}))
            items.append(put({"PK": {"S": key}, "SK": {"S": f"SEGEVENT#{n}"}, "event_type": {"S": "SegmentEntered"}}))
        started, started_cpu = time.perf_counter(), time.thread_time()
        client.transact_write_items(TransactItems=items)
        latencies.append(time.perf_counter() - started)
        cpu.append(time.thread_time() - started_cpu)

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started), sum(latencies) / count * 1e3, sum(cpu) / count * 1e6


# ---- measuring a run ---------------------------------------------------------------------------------------------


class Meter:
    """The refresh's DynamoDB client, counting calls by operation, membership transactions (and their items), and
    the Items every Scan of the roster index returns. Wraps a client of its own: the bench's checks are not counted.
    """

    def __init__(self, client: Any):
        self._client = client
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.roster_items = 0
        self.membership_transactions = 0  # attempted (each is a billed TransactWriteItems call)
        self.membership_committed = 0
        self.membership_items = 0
        self.latency: Counter[str] = Counter()  # seconds spent in each operation's calls, summed over threads
        self.scan_timer: Callable[[Callable[[], Any]], Any] | None = None  # set while profiling
        client.meta.events.register("before-parameter-build.dynamodb.*", self._count)
        client.meta.events.register("after-call.dynamodb.*", self._done)

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.latency.clear()
            self.roster_items = self.membership_transactions = self.membership_committed = self.membership_items = 0

    def _count(self, params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context["bench_started"] = time.perf_counter()
        with self._lock:
            self.calls[model.name] += 1
            if model.name == "TransactWriteItems":
                first = params["TransactItems"][0].get("Update", {})
                if first.get("Key", {}).get("SK") == {"S": "MEMBER"} and "#segments" in first.get(
                    "UpdateExpression", ""
                ):
                    self.membership_transactions += 1
                    self.membership_items += len(params["TransactItems"])
                    context["bench_membership"] = True

    def _done(self, http_response: Any, model: Any, context: dict[str, Any], **_: Any) -> None:
        elapsed = time.perf_counter() - context.get("bench_started", time.perf_counter())
        with self._lock:
            self.latency[model.name] += elapsed
            if context.get("bench_membership") and http_response.status_code == 200:
                self.membership_committed += 1

    def scan(self, **request: Any) -> Any:
        timer = self.scan_timer
        page = timer(lambda: self._client.scan(**request)) if timer else self._client.scan(**request)
        if request.get("IndexName") == ROSTER_INDEX:
            with self._lock:
                self.roster_items += len(page.get("Items", []))
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class RefreshTasks:
    """The refresh's state machine (template.yaml) on moto's ASL interpreter in this process, its Lambda tasks run
    here by the refresh's steps: the Distributed Maps run the W shares of a pass concurrently (threads of the moto
    server), as Step Functions runs them as concurrent Lambda invocations. Counts the tasks run, by step, and their
    own CPU (thread time: Python, never the emulator's Java)."""

    def __init__(self, refresh: Any) -> None:
        from devstack.states import TemplateJob
        from loyalty.adapters.step_functions import JobExecutions

        self.refresh = refresh
        self.steps: Counter[str] = Counter()
        self.cpu_seconds = 0.0
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []
        server = _step_functions()
        self.job = TemplateJob(
            server,
            load_template(ROOT / "template.yaml"),
            "SegmentRefreshStateMachine",
            {"SegmentRefreshFunction": self._task},
            stack_name=f"bench-{uuid.uuid4().hex[:8]}",
        )
        self.executions = JobExecutions(server.client, self.job.state_machine_arn)

    def _task(self, task: dict[str, Any]) -> Any:
        cpu = time.thread_time()
        try:
            return self.refresh.handle(task, workers=1, still_running=self.executions.is_running)
        except BaseException as error:  # a bug here: the definition would retry it, the bench reports it
            self.errors.append(error)
            raise
        finally:
            with self._lock:
                self.steps[str(task["step"])] += 1
                self.cpu_seconds += time.thread_time() - cpu

    def run(self, run_id: str, as_of: datetime, workers: int) -> None:
        self.refresh.service.start_refresh(self.executions, run_id, as_of, workers, "bench")
        try:
            self.job.wait(self.executions.execution_arn(run_id), timeout=24 * 3600)
        finally:
            self.job.close()
        if self.errors:
            raise self.errors[0]


_server: Any = None


def _step_functions() -> Any:
    global _server
    if _server is None:
        from devstack.states import StepFunctionsServer

        _server = StepFunctionsServer()
    return _server


@dataclass
class RunResult:
    label: str
    workers: int
    seconds: float
    cpu_seconds: float  # the invocations' Python CPU
    run: dict[str, Any]  # the run item as the engine left it (its totals)
    calls: Counter[str]
    roster_items: int
    transactions: int  # membership transactions attempted (TransactWriteItems calls, each billed)
    committed: int  # of them, committed
    transaction_items: int
    tasks: Counter[str]  # the state machine's tasks run, by step
    latency: Counter[str]  # seconds in each operation's calls, all threads

    @property
    def members(self) -> int:
        return int(self.run["members"])

    @property
    def changed_members(self) -> int:
        return int(self.run["changed_members"])

    def print(self) -> None:
        members = self.members
        per_pass = self.roster_items / members / 2 if members else 0.0
        print(self.label)
        print(
            f"  wall {self.seconds:7.1f} s  {members / self.seconds:6.0f} members/s  |  roster items read per member "
            f"per pass {per_pass:.3f} ({self.roster_items:,} in 2 passes)  |  tasks run "
            f"{sum(self.tasks.values())} ({', '.join(f'{k} {v}' for k, v in sorted(self.tasks.items()))}; "
            f"expected 2W + 3 = {2 * self.workers + 3})"
        )
        calls = ", ".join(f"{name} {self.calls.get(name, 0):,}" for name in OPERATIONS)
        other = sum(n for name, n in self.calls.items() if name not in OPERATIONS)
        print(f"  DynamoDB calls: {calls}" + (f", other {other}" if other else ""))
        mean = {name: self.latency[name] / self.calls[name] * 1e3 for name in self.calls if self.calls[name]}
        print(
            f"  mean call latency: Scan page {mean.get('Scan', 0):.0f} ms, TransactWriteItems "
            f"{mean.get('TransactWriteItems', 0):.1f} ms; calls in flight on average "
            f"{sum(self.latency.values()) / self.seconds:.2f}"
        )
        per_member = f"{self.committed / self.changed_members:.3f}" if self.changed_members else "n/a"
        print(
            f"  membership writes: run totals {self.changed_members:,} members changed, {int(self.run['changes']):,} "
            f"changes, {int(self.run.get('stale_members', 0))} stale; transactions {self.committed:,} committed "
            f"({self.transaction_items:,} items attempted) of {self.transactions:,} attempted; {per_member} committed "
            "transactions per changed member"
        )
        print(
            f"  Python CPU of the invocations: {self.cpu_seconds:.1f} s, {self.cpu_seconds / members * 1e6:.0f} us "
            "per member (both passes, botocore included)",
            flush=True,
        )


def refresh_run(
    label: str, meter: Meter, table: str, workers: int, as_of: datetime, *, profile: StageProfile | None = None
) -> RunResult:
    from loyalty.segments.refresh import SegmentRefresh

    service = SegmentationService(SegmentStore(LoyaltyStore(meter, table)), cache_seconds=0)
    refresh = SegmentRefresh(service)
    tasks = RefreshTasks(refresh)
    run_id = f"bench-{uuid.uuid4().hex[:10]}"
    gc.collect()
    gc.freeze()  # the bench's own checks hold every item; a worker holds one page (see main)
    meter.reset()
    start = time.perf_counter()
    with profile.attached(refresh, meter) if profile else _nothing():
        tasks.run(run_id, as_of, workers)
    seconds = time.perf_counter() - start
    run = service.segments.get_run(run_id)
    if run is None or run["status"] != "complete":
        raise SystemExit(f"{label}: the run did not complete: {run}")
    return RunResult(
        label,
        workers,
        seconds,
        tasks.cpu_seconds,
        run,
        Counter(meter.calls),
        meter.roster_items,
        meter.membership_transactions,
        meter.membership_committed,
        meter.membership_items,
        tasks.steps,
        Counter(meter.latency),
    )


@contextmanager
def _nothing() -> Iterator[None]:
    yield


# ---- where one worker's time goes ----------------------------------------------------------------------------------


@dataclass
class StageProfile:
    """Wall time and this thread's CPU time per stage of one worker. Single-threaded runs only: the clocks are read
    around each call (two reads of each clock, about a microsecond a call), so concurrent workers would be
    attributed to each other. CPU time is what carries over to Lambda; on a loaded machine wall time also counts
    the moments the worker was not scheduled, and it counts the emulator's answers."""

    wall: Counter[str] = field(default_factory=Counter)
    cpu: Counter[str] = field(default_factory=Counter)
    calls: Counter[str] = field(default_factory=Counter)
    total: float = 0.0
    total_cpu: float = 0.0

    def _timed(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock, thread_clock = time.perf_counter, time.thread_time

        def timed(*args: Any, **kwargs: Any) -> Any:
            started_cpu, started = thread_clock(), clock()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall[name] += clock() - started
                self.cpu[name] += thread_clock() - started_cpu
                self.calls[name] += 1

        return timed

    @contextmanager
    def attached(self, refresh: Any, meter: Meter) -> Iterator[None]:
        import loyalty.segments.refresh as engine
        from loyalty.segments.kpis import KpiTable
        from loyalty_analytics import rfm

        patches: list[tuple[Any, str, Any]] = []

        def patch(owner: Any, name: str, stage: str) -> None:
            original = getattr(owner, name)
            patches.append((owner, name, original))
            setattr(owner, name, self._timed(stage, original))

        store = refresh.store
        patch(store, "scan_roster", "scan_roster")  # the Scan call, then from_item over the page
        patch(engine, "features_of", "features_of")
        patch(engine, "_rfm_inputs", "rfm")
        for name in ("summarize", "score", "segment_codes"):
            patch(rfm, name, "rfm")
        patch(engine, "sample_row", "sample")
        patch(engine, "segments_given_rfm", "assign")
        patch(engine, "member_kpis", "kpis")
        patch(engine, "kpi_groups", "kpis")
        patch(KpiTable, "add", "kpis")
        patch(store, "apply", "transactions")
        meter.scan_timer = lambda call: self._timed("scan", call)()
        started, started_cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.total += time.perf_counter() - started
            self.total_cpu += time.thread_time() - started_cpu  # the main thread: start and advancing only
            meter.scan_timer = None
            for owner, name, original in reversed(patches):
                if owner is store:
                    delattr(owner, name)  # back to the class's method
                else:
                    setattr(owner, name, original)

    def print(self, members: int, worker_cpu: float) -> None:
        stages = [
            ("Scan calls (DynamoDB Local answering, botocore)", "scan"),
            ("from_item over each page", "decode"),
            ("features_of (both passes)", "features_of"),
            ("RFM, vectorised (inputs, summaries, scores)", "rfm"),
            ("BG/NBD sample rows (pass one)", "sample"),
            ("segments_given_rfm (points, lifecycle, rules, churn risk)", "assign"),
            ("KPIs (member_kpis, groups, table add)", "kpis"),
            ("membership transactions (apply)", "transactions"),
        ]
        wall, cpu = Counter(self.wall), Counter(self.cpu)
        wall["decode"], cpu["decode"] = wall["scan_roster"] - wall["scan"], cpu["scan_roster"] - cpu["scan"]
        wall["other"] = self.total - sum(wall[key] for _, key in stages)
        cpu["other"] = worker_cpu + self.total_cpu - sum(cpu[key] for _, key in stages)
        stages.append(("other (run and part items, fits, the loop, set compares)", "other"))
        print(
            f"where one worker's time goes (run A: 1 worker, {members:,} members, 2 passes, {self.total:.1f} s wall, "
            f"{worker_cpu + self.total_cpu:.1f} s CPU):"
        )
        print(f"  {'stage':<58} {'wall s':>8} {'share':>6} {'wall us/member':>15} {'CPU us/member':>14}")
        for name, key in stages:
            print(
                f"  {name:<58} {wall[key]:8.2f} {wall[key] / self.total:6.1%} {wall[key] / members * 1e6:15.1f} "
                f"{cpu[key] / members * 1e6:14.1f}"
            )
        compute = sum(cpu[key] for key in ("features_of", "rfm", "sample", "assign", "kpis")) / members * 1e6
        decode = (cpu["scan"] + cpu["decode"]) / members * 1e6
        transactions = max(1, self.calls["transactions"])
        print(
            f"  CPU per member for both passes: features_of + RFM + sample + assignment + KPIs {compute:.1f} us; decoding "
            f"(botocore's Scan calls + from_item) {decode:.1f} us. Per membership transaction: "
            f"{wall['transactions'] / transactions * 1e3:.2f} ms wall, {cpu['transactions'] / transactions * 1e6:.0f}"
            " us CPU here (building it, botocore)"
        )


# ---- per-member CPU, without the emulator ---------------------------------------------------------------------------


def cpu_per_member(items: Sequence[dict[str, Any]], as_of: datetime, config: SegmentationConfig) -> dict[str, float]:
    """CPU microseconds per member (thread time) of each step a worker runs for every member, best of 3, in this
    process alone (no emulator answering at the same time): botocore parsing a Scan response page, from_item, features_of, the
    vectorised RFM steps of each pass, segments_given_rfm, the KPIs; and per membership transaction, building it
    in SegmentStore.apply and botocore validating and serialising it (a stubbed client: no signing, no network)."""
    from botocore.parsers import create_parser
    from botocore.stub import Stubber

    import loyalty.segments.refresh as engine
    from loyalty.segments.assign import segments_given_rfm
    from loyalty.segments.kpis import KpiTable, kpi_groups, member_kpis
    from loyalty_analytics import rfm

    client = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9", **CREDENTIALS)
    scan = client.meta.service_model.operation_model("Scan")
    parser = create_parser(scan.metadata["protocol"])
    page_size = 650  # about what a 1 MB Scan page holds at these item sizes; the per-member cost barely depends on it
    bodies = [
        json.dumps({"Items": list(items[start : start + page_size]), "Count": 0, "ScannedCount": 0}).encode()
        for start in range(0, len(items), page_size)
    ]
    members = len(items)
    best: dict[str, float] = {}

    def measure(name: str, action: Callable[[], Any], per: int = members) -> Any:
        result = None
        for _ in range(3):
            started = time.thread_time()  # CPU time: a loaded machine's scheduling does not count
            result = action()
            best[name] = min(best.get(name, math.inf), (time.thread_time() - started) / per * 1e6)
        return result

    raw_pages = measure(
        "botocore parse",
        lambda: [parser.parse({"body": b, "headers": {}, "status_code": 200}, scan.output_shape) for b in bodies],
    )
    plain = measure("from_item", lambda: [from_item(raw) for page in raw_pages for raw in page["Items"]])
    features = measure("features_of", lambda: [features_of(item, as_of, config) for item in plain])
    pages = [features[start : start + page_size] for start in range(0, members, page_size)]
    profiled = [[f for f in page if f.consent.profiling] for page in pages]  # what pass one summarises
    summary = measure("RFM pass one", lambda: rfm.merge(rfm.summarize(*engine._rfm_inputs(page)) for page in profiled))
    cut_points = summary.cut_points()
    rows = measure(
        "prediction sample",
        lambda: [
            row
            for item, f in zip(plain, features, strict=True)
            if f.consent.profiling and (row := engine.sample_row(item, f))
        ],
    )
    model = engine.fit_model(engine.BgNbdSample().add(rows), "bench", as_of.isoformat())

    def rfm_pass_two() -> list[str | None]:
        found: list[str | None] = []
        for page in pages:
            codes, names = rfm.segment_codes(rfm.score(*engine._rfm_inputs(page), cut_points), config.rfm_map)
            found.extend(names[code] if code >= 0 else None for code in codes.tolist())
        return found

    rfm_segments = measure("RFM pass two", rfm_pass_two)
    after = measure(
        "segments_given_rfm",
        lambda: [segments_given_rfm(f, r, config, model) for f, r in zip(features, rfm_segments, strict=True)],
    )

    def kpis() -> None:
        table = KpiTable.of(as_of, config.kpis)
        for item, member, segments in zip(plain, features, after, strict=True):
            table.add(kpi_groups(member.tier, segments), member_kpis(item, as_of, config.kpis))

    measure("KPIs", kpis)
    best["segments per member"] = sum(len(segments) for segments in after) / members

    stubbed = boto3.client("dynamodb", endpoint_url="http://127.0.0.1:9", **CREDENTIALS)
    transactions = min(members, 2000)
    stubber = Stubber(stubbed)
    for _ in range(3 * transactions):
        stubber.add_response("transact_write_items", {})
    store = SegmentStore(LoyaltyStore(stubbed, "bench"))
    now = datetime.now(UTC)
    writes = list(zip(plain, after, strict=True))[:transactions]
    with stubber:
        measure(
            "transaction build + serialise",
            lambda: [store.apply(item, segments, now, "refresh:bench") for item, segments in writes],
            per=transactions,
        )
    return best


def print_cpu(best: Mapping[str, float]) -> float:
    """Print the per-member CPU table; return the CPU of both passes per member (the transaction excluded)."""
    pass_one = ("botocore parse", "from_item", "features_of", "RFM pass one", "prediction sample")
    pass_two = ("botocore parse", "from_item", "features_of", "RFM pass two", "segments_given_rfm", "KPIs")
    one, two = sum(best[n] for n in pass_one), sum(best[n] for n in pass_two)
    print("CPU per member (thread CPU time, best of 3, in this process alone, no emulator answering):")
    print("  " + ", ".join(f"{name} {best[name]:.1f} us" for name in pass_two[:3]))
    print("  " + ", ".join(f"{name} {best[name]:.1f} us" for name in ("RFM pass one", "prediction sample")))
    print("  " + ", ".join(f"{name} {best[name]:.1f} us" for name in pass_two[3:]))
    print(
        f"  pass one {one:.1f} us, pass two {two:.1f} us per member: {one + two:.1f} us for a refresh, of which "
        f"decoding (botocore + from_item) {2 * (best['botocore parse'] + best['from_item']):.1f} us"
    )
    print(
        f"  per membership transaction: building it and botocore's validation and serialisation "
        f"{best['transaction build + serialise']:.0f} us (signing, HTTP and the response not included)",
        flush=True,
    )
    return one + two


# ---- independent expectations ---------------------------------------------------------------------------------------


def expected_segments(
    items: Mapping[str, Mapping[str, Any]], as_of: datetime, config: SegmentationConfig, model: PredictionModel | None
) -> tuple[RfmCutPoints | None, dict[str, set[str]]]:
    """The pure core's answer for every member: one summary of the members who consent to profiling for the cut
    points (docs/segments.md, "Profiling consent"), then segments_of member by member. The prediction model is the
    run's own (its fit is checked by comparing runs, not refitted)."""
    features = [features_of(item, as_of, config) for item in items.values()]
    cut_points = summarize(f for f in features if f.consent.profiling).cut_points()
    return cut_points, {f.member_id: segments_of(f, cut_points, config, model) for f in features}


def run_model(run: Mapping[str, Any]) -> PredictionModel | None:
    return PredictionModel.model_validate_json(run["model"]) if run.get("model") else None


def _fit(model: PredictionModel | None) -> dict[str, Any] | None:
    """A model without the run it was fitted in: what two runs over the same members must agree on."""
    return None if model is None else model.model_dump(exclude={"run_id"})


def run_cut_points(run: Mapping[str, Any]) -> RfmCutPoints | None:
    return RfmCutPoints.model_validate_json(run["cut_points"]) if run.get("cut_points") else None


def stored_segments(items: Mapping[str, Mapping[str, Any]]) -> dict[str, set[str]]:
    return {member_id: set(item.get("segments") or ()) for member_id, item in items.items()}


class Checks:
    """Every check of the run, reported together at the end, so a failed one does not hide the figures."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def __call__(self, condition: bool, message: str) -> None:
        if condition:
            self.passed += 1
        else:
            self.failed.append(message)
            print(f"  CHECK FAILED: {message}")

    def run(self, result: RunResult, members: int, changed: int) -> None:
        """What every run must show: one roster item per member per pass, members counted once, one committed
        transaction per member whose segments changed (none has more than 49 changes), the run's totals right."""
        run, label = result.run, result.label.split(":")[0]
        self(
            result.roster_items == 2 * members,
            f"{label}: {result.roster_items:,} roster items read, not 2 x {members:,}",
        )
        expected_tasks = {"begin": 1, "scan": result.workers, "merge": 1, "score": result.workers, "finish": 1}
        self(dict(result.tasks) == expected_tasks, f"{label}: tasks run {dict(result.tasks)}, not {expected_tasks}")
        self(int(run["members"]) == int(run["members_read"]) == members, f"{label}: members counted {run['members']}")
        self(result.committed == changed, f"{label}: {result.committed:,} committed transactions, {changed:,} changed")
        self(
            result.transactions == result.committed,
            f"{label}: {result.transactions - result.committed:,} membership transactions cancelled",
        )
        self(
            result.changed_members == changed,
            f"{label}: run total changed_members {result.changed_members:,}, not {changed:,}",
        )


# ---- the bench ---------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=4, help="concurrent invocations of runs B, C and D")
    parser.add_argument("--changed", type=float, default=0.01, help="share of members who buy before run D")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument(
        "--profiling",
        type=float,
        default=1.0,
        help="share of members who consent to profiling (the others get no behavioural segment); "
        "docs/refresh-estimate.md's figures are for 1.0",
    )
    parser.add_argument("--ingest-threads", type=int, default=8)
    parser.add_argument("--baseline", type=int, default=200, help="bare transactions per baseline figure")
    args = parser.parse_args(argv)

    if not dynamodb_local.java_available():
        print("segment refresh bench skipped: DynamoDB Local needs java (moto copies its tables on every transaction)")
        return
    if threading.current_thread() is threading.main_thread():  # a terminated bench still stops DynamoDB Local
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    total = time.perf_counter()
    check = Checks()
    as_of = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    config = SegmentationConfig()
    rng = random.Random(args.seed)
    print(
        f"segment refresh on DynamoDB Local: {args.members:,} synthetic members as of {as_of:%Y-%m-%d %H:%M}Z, the "
        f"default segmentation document, {_cpus()} CPUs",
        flush=True,
    )
    started = time.perf_counter()
    items = [synthetic_member(rng, index, as_of, args.profiling) for index in range(args.members)]
    built = time.perf_counter() - started
    sizes = sorted(dynamodb_size(item) for item in items)
    print(
        f"items built with the store's own to_item in {built:.1f} s; a member item is {sum(sizes) / len(sizes):,.0f} "
        f"bytes as DynamoDB bills it on average (median {sizes[len(sizes) // 2]:,}, p99 "
        f"{sizes[len(sizes) * 99 // 100]:,}, max {sizes[-1]:,})",
        flush=True,
    )
    # A worker holds one page at a time; this process holds every item. Out of the collector's sight (gc.freeze),
    # the items cost the measured code nothing: full collections would otherwise traverse all of them, again and
    # again, and charge it to whatever allocates at the time (botocore's parsing most).
    gc.collect()
    gc.freeze()
    cpu = cpu_per_member(items[: min(len(items), 5_000)], as_of, config)
    print_cpu(cpu)
    changes = max(1, round(cpu["segments per member"]))
    # One emulator per table: DynamoDB Local slows a table's writes by the stream records its other tables hold,
    # deleted ones included (docs/local-stack.md), which would charge run B's ingest and transactions for table A.
    with dynamodb_local.start() as server:
        setup = new_client(server.endpoint)
        table_a = new_table(setup)
        ingest(setup, table_a, items, args.ingest_threads, "A")
        meter = Meter(new_client(server.endpoint))

        profile = StageProfile()
        a = refresh_run(
            "run A: full refresh, 1 worker (a first run: every member gets a segment set)",
            meter,
            table_a,
            1,
            as_of,
            profile=profile,
        )
        a.print()
        roster_a = read_roster(setup, table_a)
        model = run_model(a.run)
        cut_points, expected = expected_segments(roster_a, as_of, config, model)
        print(
            "  prediction model: "
            + (
                f"fitted on a sample of {model.sample_members:,} members ({model.sample_repeaters:,} repeaters)"
                if model
                else "none (too small a sample, or no fit)"
            )
        )
        segmented = sum(1 for segments in expected.values() if segments)  # all who consent to profiling, at least
        check.run(a, args.members, changed=segmented)
        check(run_cut_points(a.run) == cut_points, "run A: cut points differ from the pure core's")
        check(stored_segments(roster_a) == expected, "run A: memberships differ from the pure core's")
        del roster_a

        # The baseline goes into table A once run A is checked: the emulator and the table at the size run A had.
        member_item = items[0]
        bare_transactions(setup, table_a, member_item, changes, args.baseline, args.workers)  # warms the JIT up
        one_rate, one_latency, one_cpu = bare_transactions(setup, table_a, member_item, changes, args.baseline, 1)
        many_rate, many_latency, _ = bare_transactions(
            setup, table_a, member_item, changes, args.baseline, args.workers
        )
        print(
            f"baseline, same emulator and table after run A: a bare TransactWriteItems of what a membership change "
            f"writes (1 member item + {changes} memberships + {changes} events, conditional puts), {args.baseline} "
            f"each: 1 thread {one_rate:.1f}/s ({one_latency:.1f} ms, {one_cpu:.0f} us CPU here each), "
            f"{args.workers} threads {many_rate:.1f}/s ({many_latency:.1f} ms): x{many_rate / one_rate:.2f} from "
            f"{args.workers} threads",
            flush=True,
        )

    with dynamodb_local.start() as server:
        setup = new_client(server.endpoint)
        table_b = new_table(setup)
        ingest(setup, table_b, items, args.ingest_threads, "B")
        del items  # the tables hold them now
        gc.collect()
        gc.freeze()
        meter = Meter(new_client(server.endpoint))

        b = refresh_run(
            f"run B: full refresh, {args.workers} concurrent workers (a fresh table, the same items)",
            meter,
            table_b,
            args.workers,
            as_of,
        )
        b.print()
        check.run(b, args.members, changed=segmented)
        check(run_cut_points(b.run) == cut_points, "run B: cut points differ from run A's")
        check(
            _fit(run_model(b.run)) == _fit(model),
            "run B: prediction model differs from run A's (same members, 4 workers)",
        )
        check(stored_segments(read_roster(setup, table_b)) == expected, "run B: memberships differ from run A's")

        c = refresh_run(f"run C: {args.workers} workers again, no fact changed", meter, table_b, args.workers, as_of)
        c.print()
        check.run(c, args.members, changed=0)

        buyers = rng.sample(sorted(expected), max(1, round(args.members * args.changed)))
        buy_once_more(setup, table_b, buyers, as_of - timedelta(minutes=1), args.seed, args.ingest_threads)
        before = read_roster(setup, table_b)
        bought = set(buyers)
        d = refresh_run(
            f"run D: {args.workers} workers after {len(buyers):,} members ({len(buyers) / args.members:.1%}) bought "
            "once more (UpdateItem as the ledger's: month maps, counters, revision + 1)",
            meter,
            table_b,
            args.workers,
            as_of,
        )
        d.print()
        expected_d_cuts, expected_d = expected_segments(before, as_of, config, run_model(d.run))
        differ = {m for m, segments in expected_d.items() if segments != set(before[m].get("segments") or ())}
        moved = "cut points moved" if expected_d_cuts != cut_points else "cut points unchanged"
        moved += ", model refitted" if _fit(run_model(d.run)) != _fit(model) else ", model unchanged"
        print(
            f"  members whose computed segments (pure core, on the items read before the run, with the run's model) "
            f"differ from their stored ones: {len(differ):,} = {len(differ & bought):,} of the {len(bought):,} buyers "
            f"+ {len(differ - bought):,} others ({moved})"
        )
        check.run(d, args.members, changed=len(differ))
        check(run_cut_points(d.run) == expected_d_cuts, "run D: cut points differ from the pure core's")
        check(stored_segments(read_roster(setup, table_b)) == expected_d, "run D: memberships differ from the core's")

    def latency(result: RunResult) -> float:
        return result.latency["TransactWriteItems"] / max(1, result.calls["TransactWriteItems"]) * 1e3

    print(
        f"ratios: {args.workers} workers vs 1 (run B vs run A): x{a.seconds / b.seconds:.2f} wall-time speed-up. "
        f"Threads of one Python process under one GIL, DynamoDB Local on the same {_cpus()} CPUs: a transaction took "
        f"{latency(a):.1f} ms in run A (x{latency(a) / one_latency:.2f} the bare 1-thread latency) and "
        f"{latency(b):.1f} ms in run B (x{latency(b) / many_latency:.2f} the bare {args.workers}-thread latency), "
        "the emulator serialising writes behind other workers' Scan pages; Lambda's invocations do not share a CPU"
    )
    print(
        f"  committed transactions per changed member: A {a.committed / args.members:.3f}, "
        f"B {b.committed / args.members:.3f}, D {d.committed / max(1, len(differ)):.3f} (no member has more than 49 "
        f"changes); run C: {c.transactions} transactions; attempted per committed: A "
        f"{a.transactions / max(1, a.committed):.3f}, B {b.transactions / max(1, b.committed):.3f}, "
        f"D {d.transactions / max(1, d.committed):.3f}"
    )
    profile.print(args.members, a.cpu_seconds)
    gc.unfreeze()
    print(f"checks: {check.passed} passed, {len(check.failed)} failed; whole bench {time.perf_counter() - total:.0f} s")
    if check.failed:
        for message in check.failed:
            print(f"  FAILED: {message}")
        raise SystemExit(1)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


if __name__ == "__main__":
    main()
