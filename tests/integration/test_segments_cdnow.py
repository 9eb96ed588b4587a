"""Segments on real data: CDNOW through the real ingest path and a real refresh, against an independent reference.

CDNOW_master.txt (shipped in the lifetimes package; 69,659 purchases by 23,570 customers, 1997-01-01 to
1998-06-30) is fed as a brand would feed it: `LoyaltyService.enroll` once per customer (external id `cdnow-<id>`),
each consenting to profiling (else they would be in no behavioural segment), then `LoyaltyService.purchase` for
every row (order id `cdnow-<id>-<row>`, the row's amount in USD, at 12:00 UTC on its date), on a thread pool, with the store's and the service's clocks frozen at 1998-07-01T00:00:00Z, the day
after the data ends. The service writes to the in-memory points store (held to the DynamoDB store's behaviour,
member item included, by test_points_store_contract.py); the member items it leaves are then written to a table on
DynamoDB Local. A segment refresh then runs there as of that moment over 4 shares, its state machine's execution
to completion.

The reference is computed here with pandas straight from the raw file, calling nothing of `loyalty.segments`:
per customer the documented fields (docs/segments.md: UTC calendar-day recency, calendar-month windows that end
with and include the as-of month), money buckets by exact integer arithmetic, the global quintile cut points by the
documented tie policy (value_counts + cumsum), R/F/M, the RFM segment from the documented grid, the lifecycle
stage and the points segments with their default thresholds. Points are re-derived from docs/ledger.md: a purchase
earns floor(amount x points_per_unit[currency]), and the default program gives 1 point per USD.

Every member's R, F and M (the system scores them with the cut points its run published) and every membership the
refresh wrote (the member's SEGMENT# items: `rfm:*`, `lifecycle:*`, `points:*`) must equal the reference; so must
the documented fields `features_of` reads from the member item (recency, frequency, spend, windows, points), which
makes a disagreement easy to place. Prediction segments (`prediction:*`, docs/prediction.md) are written by the same
refresh but are not compared here: the member's other memberships are checked whatever they hold.

Refused rows: `Purchase.amount` must be positive, so the rows of $0.00 are refused (a validation error, a 422 at the
API): 80 of the 69,659 rows (8 in the sample). They are kept out of the reference too. 68 customers (7 in the
sample) have only such rows: they are enrolled and never purchase, so they are `lifecycle:potential` with no RFM
scores and are not counted in the quintiles.

Two RFM windows are checked. 19 months (1997-01 to 1998-07, the as-of month included) holds the whole data set.
18 months, often taken for "the 18 months of data", is 1997-02 to 1998-07 by the documented rule: January 1997
falls outside it, so 4,162 customers (199 in the sample) whose accepted purchases all fell in that month have a
recency but frequency 0 and no spend in the window (money bucket -1), and are still scored, as members who purchased.
Eighteen calendar months of data do not fit an 18-month window ending in July 1998, because the as-of month counts,
so both windows are run, on the same load, one refresh after the other (the second changes what the first wrote).

Size: by default (`make test`) a deterministic 1-in-20 sample, the customers whose id % 20 == 1: 1,179 customers,
3,554 rows (3,546 accepted purchases). It still holds every case the checks are about ($0.00 rows refused, customers
left with no purchase, customers whose purchases all fell in January 1997, quintiles with heavy ties), and halves the
first refresh's 2,357 membership transactions of the 1-in-10 sample it used to run (most of the module's time).
`CDNOW_CUSTOMERS=all` (`make verify-cdnow`) loads all 23,570 customers and
69,659 rows (69,579 purchases). `-s` prints the counts, the load rate, the refresh time and the segment sizes.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, localcontext
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pydantic import ValidationError

from bench.refresh import batch_write
from devstack import dynamodb_local as ddb_local
from loyalty.adapters.dynamodb.points_store import LoyaltyStore, member_key
from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.adapters.dynamodb.table import from_item, to_item
from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.errors import InvalidRequest
from loyalty.points.activities import Purchase
from loyalty.points.member_record import new_member_item
from loyalty.points.members import Consent, Enrollment
from loyalty.points.service import LoyaltyService
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import MemberFeatures, features_of
from loyalty.segments.refresh import SegmentRefresh
from loyalty.segments.rfm import RfmCutPoints, money_bucket, score
from loyalty.segments.service import SegmentationService
from tests.integration.conftest import create_loyalty_table, dynamodb_client
from tests.integration.refresh_job import RefreshJob, StepFunctionsServer, step_functions

__all__ = ["step_functions"]  # the fixture

_spec = importlib.util.find_spec("lifetimes")
if _spec is None or not _spec.submodule_search_locations:
    pytest.skip("the lifetimes package (for its CDNOW data files) is not installed", allow_module_level=True)
CDNOW_MASTER = Path(next(iter(_spec.submodule_search_locations))) / "datasets" / "CDNOW_master.txt"

FULL = os.environ.get("CDNOW_CUSTOMERS", "").strip().lower() == "all"

# What the selection holds: customers, rows, rows refused ($0.00), customers left with no purchase.
EXPECTED_COUNTS = {True: (23_570, 69_659, 80, 68), False: (1_179, 3_554, 8, 7)}
# Customers whose accepted purchases all fell in January 1997 (outside an 18-month window as of 1998-07-01).
JANUARY_ONLY = {True: 4_162, False: 199}

AS_OF = datetime(1998, 7, 1, tzinfo=UTC)
AS_OF_DAY = pd.Timestamp("1998-07-01")
AS_OF_MONTH = 1998 * 12 + 7 - 1
LOAD_THREADS = 12
REFRESH_WORKERS = 4

# ---- the documented rules, typed in from the docs -------------------------------------------------------------

POINTS_PER_USD = 1  # ProgramConfig's default points_per_unit; docs/ledger.md: floor(amount x points_per_unit)

# docs/segments.md, "The segment map": the default map (first match wins) and the effective grid it documents.
RFM_MAP = (  # (id, R range, FM range)
    ("champions", (4, 5), (4, 5)),
    ("loyal", (3, 5), (3, 5)),
    ("potential-loyalist", (4, 5), (2, 3)),
    ("new", (5, 5), (1, 1)),
    ("promising", (4, 4), (1, 1)),
    ("need-attention", (3, 3), (2, 3)),
    ("about-to-sleep", (3, 3), (1, 2)),
    ("cant-lose-them", (1, 1), (4, 5)),
    ("at-risk", (1, 2), (3, 5)),
    ("hibernating", (2, 2), (1, 2)),
    ("lost", (1, 1), (1, 2)),
)
RFM_GRID = {  # R -> the segment for FM = 1..5
    5: ("new", "potential-loyalist", "loyal", "champions", "champions"),
    4: ("promising", "potential-loyalist", "loyal", "champions", "champions"),
    3: ("about-to-sleep", "need-attention", "loyal", "loyal", "loyal"),
    2: ("hibernating", "hibernating", "at-risk", "at-risk", "at-risk"),
    1: ("lost", "lost", "at-risk", "cant-lose-them", "cant-lose-them"),
}
MONEY_BUCKETS = 4096  # spend beyond the last boundary shares the last bucket
COMPARED = ("rfm:", "lifecycle:", "points:")  # the segment families this test holds to the reference


# ---- the raw file and the reference -------------------------------------------------------------------------------


def _read_cdnow() -> pd.DataFrame:
    """Every row of CDNOW_master.txt (header, then id, YYYYMMDD, CDs, dollars), amounts as exact cents."""
    raw = pd.read_csv(CDNOW_MASTER, sep=r"\s+", dtype=str)
    assert list(raw.columns) == ["customer_id", "date", "number_of_cds", "dollar_value"]
    rows = pd.DataFrame(
        {
            "row": range(len(raw)),
            "customer_id": raw["customer_id"].astype(int),
            "day": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["dollar_value"],
        }
    )
    cents = [Decimal(amount) * 100 for amount in rows["amount"]]
    assert all(c == c.to_integral_value() for c in cents), "an amount with fractions of a cent"
    rows["cents"] = [int(c) for c in cents]
    rows["month"] = rows["day"].dt.year * 12 + rows["day"].dt.month - 1
    return rows


def _selection(rows: pd.DataFrame) -> pd.DataFrame:
    return rows if FULL else rows[rows["customer_id"] % 20 == 1]


def exact_money_bucket(cents: int) -> int:
    """floor(log(m / 0.01) / log(1.01)) for m = cents / 100 >= 0.01, exactly: the k with 1.01^k <= cents <
    1.01^(k+1), i.e. 101^k <= cents * 100^k, checked in integers after a 50-digit guess. -1 below one cent."""
    if cents < 1:
        return -1
    with localcontext() as context:
        context.prec = 50
        k = int((Decimal(cents).ln() / Decimal("1.01").ln()).to_integral_value(rounding=ROUND_FLOOR))
    while 101 ** (k + 1) <= cents * 100 ** (k + 1):
        k += 1
    while k > 0 and 101**k > cents * 100**k:
        k -= 1
    return min(k, MONEY_BUCKETS - 1)


def quintile_cut_points(values: pd.Series) -> tuple[int, int, int, int]:
    """c_k = the smallest value whose cumulative count reaches ceil(k * N / 5), k = 1..4."""
    n = len(values)
    cumulative = values.value_counts().sort_index().cumsum()
    return tuple(int(cumulative[cumulative >= -(-k * n // 5)].index[0]) for k in range(1, 5))  # type: ignore[return-value]


def _segment_for(r: int, fm: int) -> str:
    return next(sid for sid, (r_lo, r_hi), (fm_lo, fm_hi) in RFM_MAP if r_lo <= r <= r_hi and fm_lo <= fm <= fm_hi)


def _lifecycle(m: Mapping[str, Any]) -> str:
    if m["recency_days"] is None:
        return "potential"
    if m["days_since_first_purchase"] <= 60:
        return "new"
    if (m["active_months_6m"] >= 4 or m["purchases_12m"] >= 6) and m["recency_days"] <= 90:
        return "loyal"
    if m["recency_days"] > 180:
        return "churning"
    return "occasional"


def _points_segments(m: Mapping[str, Any]) -> set[str]:
    found = set()
    if m["points_6m"] > 500:
        found.add("high-spenders")
    frequent = m["active_months_6m"] >= 4
    if frequent:
        found.add("frequent-buyers")
    if m["purchases_12m"] >= 1 and not frequent and 50 <= m["points_12m"] <= 500:
        found.add("occasional-shoppers")
    recency = m["recency_days"]
    if (
        (recency is None and m["days_since_enrolled"] > 90)
        or (recency is not None and recency > 180)
        or (recency is not None and m["points_12m"] < 50 and recency > 90)
    ):
        found.add("dormant")
    return found


@dataclass
class Reference:
    cut_points: dict[str, tuple[int, int, int, int]]
    scores: dict[int, tuple[int, int, int] | None]  # customer id -> (R, F, M)
    segments: dict[int, set[str]]
    fields: pd.DataFrame  # customer id -> the documented fields (for diffs)


def reference(accepted: pd.DataFrame, customers: pd.Index, window_months: int) -> Reference:
    """The documented segments of every customer, from the accepted rows alone."""
    back = AS_OF_MONTH - accepted["month"]  # months before the as-of month (0 = the as-of month itself)
    assert (back >= 0).all()
    by_customer = accepted.groupby("customer_id")
    fields = pd.DataFrame(index=customers)
    fields["recency_days"] = (AS_OF_DAY - by_customer["day"].max()).dt.days.reindex(customers).astype("Int64")
    fields["days_since_first_purchase"] = (
        (AS_OF_DAY - by_customer["day"].min()).dt.days.reindex(customers).astype("Int64")
    )
    fields["days_since_enrolled"] = 0  # enrolled at the frozen clock, 1998-07-01
    points = accepted["cents"] * POINTS_PER_USD // 100
    for name, span in (("rfm", window_months), ("6m", 6), ("12m", 12)):
        inside = accepted[back < span].assign(points=points[back < span]).groupby("customer_id")
        fields[f"purchases_{name}"] = inside.size().reindex(customers, fill_value=0)
        fields[f"cents_{name}"] = inside["cents"].sum().reindex(customers, fill_value=0)
        fields[f"points_{name}"] = inside["points"].sum().reindex(customers, fill_value=0)
        fields[f"active_months_{name}"] = inside["month"].nunique().reindex(customers, fill_value=0)
    fields = fields.rename(columns={"purchases_rfm": "frequency"})
    fields["money_bucket"] = [exact_money_bucket(int(c)) for c in fields["cents_rfm"]]

    purchased = fields[fields["recency_days"].notna()]
    cuts = {
        "r": quintile_cut_points(purchased["recency_days"].astype(int)),
        "f": quintile_cut_points(purchased["frequency"]),
        "m": quintile_cut_points(purchased["money_bucket"]),
    }
    scores: dict[int, tuple[int, int, int] | None] = {}
    segments: dict[int, set[str]] = {}
    for customer, row in fields.iterrows():
        member: dict[str, Any] = {str(k): (None if pd.isna(v) else int(v)) for k, v in row.items()}
        found = {f"lifecycle:{_lifecycle(member)}", *(f"points:{p}" for p in _points_segments(member))}
        if member["recency_days"] is None:
            scores[int(customer)] = None
        else:
            r = 5 - sum(member["recency_days"] > c for c in cuts["r"])
            f = 1 + sum(member["frequency"] > c for c in cuts["f"])
            m = 1 + sum(member["money_bucket"] > c for c in cuts["m"])
            scores[int(customer)] = (r, f, m)
            found.add(f"rfm:{RFM_GRID[r][(f + m + 1) // 2 - 1]}")  # FM = (F + M) / 2, rounded half up
        segments[int(customer)] = found
    return Reference(cuts, scores, segments, fields)


# ---- loading through the real ingest path ---------------------------------------------------------------------------


@dataclass
class Loaded:
    store: LoyaltyStore
    rows: pd.DataFrame  # the selection, every row
    accepted: pd.DataFrame  # the rows the API took
    members: dict[int, str]  # customer id -> member id
    refused: list[tuple[int, int, str, str]] = field(default_factory=list)  # (customer, row, amount, reason)
    seconds: float = 0.0

    @property
    def customers(self) -> pd.Index:
        return pd.Index(sorted(self.members), name="customer_id")


def _load_customer(service: LoyaltyService, customer: int, rows: pd.DataFrame) -> tuple[str, list[Any]]:
    # Every customer consents to profiling: without it they would be in no behavioural segment, and the comparison
    # with the reference segmentation would compare nothing (docs/segments.md, "Profiling consent").
    outcome = service.enroll(Enrollment(external_id=f"cdnow-{customer}", consent=Consent(profiling=True)))
    member_id = str(outcome.body["member_id"])
    refused = []
    for row, day, amount in zip(rows["row"], rows["day"], rows["amount"], strict=True):
        try:
            purchase = Purchase(
                order_id=f"cdnow-{customer}-{row}",
                amount=Decimal(amount),
                currency="USD",
                occurred_at=day.to_pydatetime().replace(hour=12, tzinfo=UTC),
            )
            service.purchase(member_id, purchase)
        except ValidationError as error:  # the API's 422: the request body does not validate
            reasons = (f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
            refused.append((customer, int(row), amount, "; ".join(reasons)))
        except InvalidRequest as error:  # the service's 422
            refused.append((customer, int(row), amount, f"{error.field}: {error.message}"))
    return member_id, refused


@pytest.fixture(scope="module")
def own_dynamodb_local(dynamodb_local: Any) -> Iterator[Any]:
    """A fresh DynamoDB Local of this module's own (the session fixture installs it, or skips without java). On the
    session's instance, after the rest of the suite, this module took 18 minutes in a full run; alone, 2.4."""
    with ddb_local.start() as server:
        yield server


def _member_items(memory: MemoryPointsStore, service: LoyaltyService, members: Mapping[int, str]) -> list[Any]:
    """Each member's item as the DynamoDB store would have written it: the enrolled member (new_member_item) with
    the counters and write-time aggregates the service's purchases left on the in-memory store."""
    items = []
    for member_id in members.values():
        values = {**new_member_item(service.member(member_id)), **memory.member_item(member_id)}
        items.append({**member_key(member_id), **to_item(values)})
    return items


@pytest.fixture(scope="module")
def loaded(own_dynamodb_local: Any) -> Iterator[Loaded]:
    """Every row through LoyaltyService (enrol, purchase) on the in-memory points store, which
    test_points_store_contract holds to the DynamoDB store's behaviour, member item included; then the member items
    written to a table of DynamoDB Local (BatchWriteItem) for the refresh. Through the DynamoDB store itself the
    load took 100 s of a CI run for the sample; the refresh reads nothing else of what it wrote."""
    client = dynamodb_client(own_dynamodb_local.endpoint)
    table = create_loyalty_table(client, stream=False)  # nothing here reads the stream
    frozen = lambda: AS_OF  # noqa: E731
    store = LoyaltyStore(client, table, clock=frozen)
    memory = MemoryPointsStore(clock=frozen)
    service = LoyaltyService(memory, clock=frozen)
    rows = _selection(_read_cdnow())
    loaded = Loaded(store, rows, rows, {})
    started = time.perf_counter()
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        futures = {
            customer: pool.submit(_load_customer, service, int(customer), group)
            for customer, group in rows.groupby("customer_id")
        }
        for customer, future in futures.items():
            member_id, refused = future.result()
            loaded.members[int(customer)] = member_id
            loaded.refused.extend(refused)
    loaded.seconds = time.perf_counter() - started
    batch_write(client, table, _member_items(memory, service, loaded.members), LOAD_THREADS)
    refused_rows = {row for _, row, _, _ in loaded.refused}
    loaded.accepted = rows[~rows["row"].isin(refused_rows)]
    yield loaded
    client.delete_table(TableName=table)


# ---- the refresh, its queue drained by 4 concurrent deliveries --------------------------------------------------------


def run_refresh(
    server: StepFunctionsServer, refresh: SegmentRefresh, run_id: str, workers: int
) -> Counter[tuple[int, int, int]]:
    """Record the run and run its execution of the refresh's state machine to the end (the Map runs the shares
    concurrently, as Lambda would). Returns how many times each share's task ran, by (pass, worker, step)."""
    delivered: Counter[tuple[int, int, int]] = Counter()
    lock = threading.Lock()

    def task(event: dict[str, Any]) -> Any:
        share = event.get("share")
        if share:
            with lock:
                delivered[(int(share["pass"]), int(share["worker"]), int(share["step"]))] += 1
        return refresh.handle(event, workers=workers, still_running=job.executions.is_running)

    job = RefreshJob(server, task)
    try:
        refresh.service.start_refresh(job.executions, run_id, AS_OF, workers, "test_segments_cdnow")
        job.wait(job.executions.execution_arn(run_id), timeout=3600)
    finally:
        job.close()
    return delivered


def _partitions(store: LoyaltyStore, members: Mapping[int, str]) -> dict[int, tuple[dict[str, Any], set[str]]]:
    """customer id -> (member item, segment ids of its SEGMENT# items), read back from the table directly: one
    consistent parallel Scan of its member and membership items (a Query per member took 6-7 s for the sample)."""
    filtered: dict[str, Any] = {
        "TableName": store.table_name,
        "FilterExpression": "begins_with(PK, :pk) AND (SK = :member OR begins_with(SK, :segment))",
        "ExpressionAttributeValues": {
            ":pk": {"S": "MEMBER#"},
            ":member": {"S": "MEMBER"},
            ":segment": {"S": "SEGMENT#"},
        },
        "ConsistentRead": True,
        "TotalSegments": LOAD_THREADS,
    }

    def scan(segment: int) -> list[dict[str, Any]]:
        request = {**filtered, "Segment": segment}
        found: list[dict[str, Any]] = []
        while True:
            page = store.client.scan(**request)
            found.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    items: dict[str, dict[str, Any]] = {}
    segments: dict[str, set[str]] = {}
    with ThreadPoolExecutor(LOAD_THREADS) as pool:
        for raw in (raw for part in pool.map(scan, range(LOAD_THREADS)) for raw in part):
            member_id = raw["PK"]["S"].removeprefix("MEMBER#")
            if raw["SK"]["S"] == "MEMBER":
                items[member_id] = from_item(raw)
            else:
                segments.setdefault(member_id, set()).add(raw["segment_id"]["S"])
    return {customer: (items.get(m, {}), segments.get(m, set())) for customer, m in members.items()}


def _diff(customer: int, member_id: str, what: str, system: Any, expected: Any, ref: Reference) -> str:
    fields = ref.fields.loc[customer].to_dict()
    return f"customer {customer} ({member_id}): {what} system {system} reference {expected}; reference fields {fields}"


def _system_fields(features: MemberFeatures) -> dict[str, int | None]:
    """The documented fields as the system reads them from the member item, in the reference's units."""
    return {
        "recency_days": features.recency_days,
        "days_since_first_purchase": features.days_since_first_purchase,
        "days_since_enrolled": features.days_since_enrolled,
        "frequency": features.frequency,
        "cents_rfm": int(features.monetary * 100),
        "money_bucket": money_bucket(features.monetary),
        "purchases_6m": features.purchases_6m,
        "cents_6m": int(features.spend_6m * 100),
        "points_6m": features.points_6m,
        "active_months_6m": features.active_months_6m,
        "purchases_12m": features.purchases_12m,
        "cents_12m": int(features.spend_12m * 100),
        "points_12m": features.points_12m,
    }


def _reference_fields(ref: Reference, customer: int) -> dict[str, int | None]:
    row = ref.fields.loc[customer]
    return {name: (None if pd.isna(row[name]) else int(row[name])) for name in _SYSTEM_FIELD_NAMES}


_SYSTEM_FIELD_NAMES = (
    "recency_days",
    "days_since_first_purchase",
    "days_since_enrolled",
    "frequency",
    "cents_rfm",
    "money_bucket",
    "purchases_6m",
    "cents_6m",
    "points_6m",
    "active_months_6m",
    "purchases_12m",
    "cents_12m",
    "points_12m",
)


# ---- the test ------------------------------------------------------------------------------------------------------------


def test_the_documented_rules_grid_is_what_the_map_gives() -> None:
    """The doc's effective grid and its first-match map agree (both are typed in above)."""
    assert {r: tuple(_segment_for(r, fm) for fm in range(1, 6)) for r in range(1, 6)} == RFM_GRID


def test_the_cdnow_file_holds_the_documented_counts() -> None:
    rows = _read_cdnow()
    assert (len(rows), rows["customer_id"].nunique()) == (69_659, 23_570)
    assert (rows["day"].min(), rows["day"].max()) == (pd.Timestamp("1997-01-01"), pd.Timestamp("1998-06-30"))
    selected = _selection(rows)
    refused = selected[selected["cents"] <= 0]
    never = selected["customer_id"].nunique() - selected[selected["cents"] > 0]["customer_id"].nunique()
    assert (selected["customer_id"].nunique(), len(selected), len(refused), never) == EXPECTED_COUNTS[FULL]


@pytest.mark.dynamodb_local
@pytest.mark.timeout(7200 if FULL else 900)
@pytest.mark.parametrize("window_months", [19, 18], ids=["whole-history-19-months", "january-1997-outside-18-months"])
def test_every_cdnow_member_gets_the_documented_scores_and_segments(
    loaded: Loaded, window_months: int, step_functions: StepFunctionsServer
) -> None:
    customers, rows, refused_expected, never = EXPECTED_COUNTS[FULL]
    # The load: every customer enrolled, exactly the $0.00 rows refused, and only for their amount
    assert len(loaded.members) == customers and len(loaded.rows) == rows
    assert sorted(row for _, row, _, _ in loaded.refused) == sorted(loaded.rows[loaded.rows["cents"] <= 0]["row"])
    assert len(loaded.refused) == refused_expected
    assert {reason for *_, reason in loaded.refused} == {"amount: Input should be greater than 0"}, loaded.refused[:3]
    ref = reference(loaded.accepted, loaded.customers, window_months)
    purchased_nothing_in_window = int(((ref.fields["frequency"] == 0) & ref.fields["recency_days"].notna()).sum())
    assert purchased_nothing_in_window == (JANUARY_ONLY[FULL] if window_months == 18 else 0)

    # When a refresh's execution runs as of 1998-07-01 over 4 shares, with the RFM window of this case
    segmentation = SegmentationService(SegmentStore(loaded.store), cache_seconds=0)
    current = segmentation.document()
    segmentation.replace_document({"rfm_window_months": window_months}, if_version=current.version)
    refresh = SegmentRefresh(segmentation)
    run_id = f"cdnow-{window_months}m"
    started = time.perf_counter()
    delivered = run_refresh(step_functions, refresh, run_id, REFRESH_WORKERS)
    refresh_seconds = time.perf_counter() - started

    # Then the run completed over everyone, with the reference's cut points
    run = segmentation.segments.get_run(run_id)
    assert run is not None and run["status"] == "complete", run
    assert int(run["members"]) == int(run["members_read"]) == customers
    assert int(run["stale_members"]) == 0
    config = SegmentationConfig.model_validate_json(run["config"])
    assert config.rfm_window_months == window_months
    cut_points = RfmCutPoints.model_validate_json(run["cut_points"])
    assert (cut_points.r, cut_points.f, cut_points.m) == (ref.cut_points["r"], ref.cut_points["f"], ref.cut_points["m"])

    # And every member's R, F, M and memberships are the reference's
    read_started = time.perf_counter()
    partitions = _partitions(loaded.store, loaded.members)
    read_seconds = time.perf_counter() - read_started
    mismatches: list[str] = []
    others: Counter[str] = Counter()  # memberships outside the compared families
    for customer, (item, all_memberships) in partitions.items():
        member_id = loaded.members[customer]
        memberships = {segment for segment in all_memberships if segment.startswith(COMPARED)}
        others.update(all_memberships - memberships)
        features = features_of(item, AS_OF, config)
        system_fields, reference_fields = _system_fields(features), _reference_fields(ref, customer)
        if system_fields != reference_fields:
            differ = {k: (v, reference_fields[k]) for k, v in system_fields.items() if v != reference_fields[k]}
            mismatches.append(_diff(customer, member_id, "fields", differ, "(pairs: system, reference)", ref))
        rfm = score(features, cut_points)
        system_scores = None if rfm is None else (rfm.r, rfm.f, rfm.m)
        if system_scores != ref.scores[customer]:
            mismatches.append(_diff(customer, member_id, "(R, F, M)", system_scores, ref.scores[customer], ref))
        if memberships != ref.segments[customer]:
            detail = f"only system {sorted(memberships - ref.segments[customer])}, only reference "
            detail += f"{sorted(ref.segments[customer] - memberships)}"
            mismatches.append(_diff(customer, member_id, "segments", sorted(memberships), detail, ref))
        if set(item.get("segments") or ()) != all_memberships:
            mismatches.append(
                f"customer {customer} ({member_id}): member item {item.get('segments')} vs SEGMENT# items"
            )
    mismatching_members = len({m.split(" ", 2)[1] for m in mismatches})
    assert not mismatches, (
        f"{mismatching_members} of {customers} members disagree with the reference ({len(mismatches)} differences); "
        "first ones:\n" + "\n".join(mismatches[:12])
    )

    # And the published sizes are the reference's counts
    expected_sizes = Counter(segment for segments in ref.segments.values() for segment in segments)
    sizes = {row["segment_id"]: row["size"] for row in segmentation.catalog()}
    assert {k: v for k, v in sizes.items() if v and k.startswith(COMPARED)} == dict(expected_sizes)

    accepted = len(loaded.accepted)
    repeated = {key: n for key, n in delivered.items() if n > 1}
    duplicates = f"(pass, worker, step) run more than once: {repeated}" if repeated else "none twice"
    print(
        f"\nCDNOW {'all customers' if FULL else '1-in-20 sample (id % 20 == 1)'}, RFM window {window_months} months "
        f"({(AS_OF - timedelta(days=1)):%Y-%m} data end, as of {AS_OF:%Y-%m-%d}):\n"
        f"  loaded {customers:,} members and {accepted:,} purchases ({len(loaded.refused)} rows of $0.00 refused, "
        f"{never} customers never purchased) in {loaded.seconds:.1f} s: "
        f"{accepted / loaded.seconds:.0f} purchases/s, {(customers + accepted) / loaded.seconds:.0f} enrolments + purchases/s "
        f"through the service on the in-memory store, {LOAD_THREADS} threads\n"
        f"  refresh {run_id}: {REFRESH_WORKERS} shares, {sum(delivered.values())} share tasks ({duplicates}), "
        f"{refresh_seconds:.1f} s "
        f"({customers / refresh_seconds:.0f} members/s), {int(run['changed_members']):,} members changed, "
        f"{int(run['changes']):,} membership changes; read back in {read_seconds:.1f} s\n"
        f"  cut points r {cut_points.r} f {cut_points.f} m {cut_points.m} (= reference)\n"
        f"  agreement: all {customers:,} members have the reference's fields, R, F, M and rfm/lifecycle/points "
        f"segments; not compared: {dict(others) or 'no other memberships'}"
    )
    for prefix in ("rfm:", "lifecycle:", "points:"):
        shown = ", ".join(f"{k.removeprefix(prefix)} {v:,}" for k, v in sizes.items() if k.startswith(prefix))
        print(f"  {prefix:<11}{shown}")
