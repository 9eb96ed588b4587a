"""What the handlers count (CloudWatch EMF on stdout, as Lambda ships it to CloudWatch), how the correlation id is
found and written onto a change's items. The handlers run with a stand-in service: the metrics come from the answer
a write gave, whatever store gave it."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loyalty import runtime  # noqa: F401  (the composition root: it connects the conflict metric on import)
from loyalty.adapters.dynamodb import table as toolkit
from loyalty.adapters.dynamodb.table import Table, correlated_items, key, on_conflict_retried
from loyalty.core import correlation, observability
from loyalty.core.idempotency import Outcome
from loyalty.core.observability import metrics
from loyalty.core.settings import settings

ROOT = Path(__file__).resolve().parents[2]
MEMBER_ID = "m_01m83p8nz4nsv851aw9hcrayax"
REWARD = {"reward_id": "sample-trio", "name": "Sample trio", "kind": "free_product", "cost_points": 100}
ENTRY = {"entry_id": "01M83P8P1WRPWN7H1NJYT2SE3Q", "member_id": MEMBER_ID, "created_at": "2026-11-20T14:03:12Z"}


@dataclass(frozen=True)
class Emitted:
    name: str
    unit: str
    values: list[float]
    dimensions: dict[str, str]  # besides service


def emitted(capsys: pytest.CaptureFixture[str]) -> list[Emitted]:
    """Every metric the EMF lines printed so far carry, in order."""
    found = []
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        blob = json.loads(line)
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "ServerlessLoyalty"
            dimensions = {d: blob[d] for d in directive["Dimensions"][0] if d != "service"}
            for metric in directive["Metrics"]:
                value = blob[metric["Name"]]
                values = value if isinstance(value, list) else [value]
                found.append(Emitted(metric["Name"], metric["Unit"], values, dimensions))
    return [metric for metric in found if metric.name != "ColdStart"]


@pytest.fixture(autouse=True)
def _no_metrics_left_over() -> None:
    metrics.clear_metrics()


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What the handlers read from the environment (nothing reaches AWS: the service is a stand-in)."""
    monkeypatch.setenv("TABLE_NAME", "loyalty-unit")
    monkeypatch.setenv("EVENT_BUS_NAME", "loyalty-unit")
    settings.cache_clear()
    yield
    settings.cache_clear()


def load(function: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{function}_observed", ROOT / "functions" / function / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "under-test", 512, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:under-test"


class StandInService:
    """Answers every write with the Outcome it is given, and remembers the correlation id it was called under."""

    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        self.correlation_ids: list[str | None] = []
        self.store = self

    def member_id_for_external(self, external_id: str) -> str:
        return MEMBER_ID

    def _answer(self, *args: Any) -> Outcome:
        self.correlation_ids.append(correlation.current())
        return self.outcome

    purchase = refund = redeem = record = _answer


@pytest.fixture(scope="module")
def orders() -> ModuleType:
    return load("order_events")


@pytest.fixture(scope="module")
def members_api() -> ModuleType:
    return load("members_api")


def order_placed() -> dict[str, Any]:
    return dict(json.loads((ROOT / "events" / "order_events_order_placed.json").read_text()))


def redemption_request(correlation_header: str | None = None) -> dict[str, Any]:
    """An admin's POST of a redemption (events/members_api_enroll.json's caller), as API Gateway hands it over."""
    event = copy.deepcopy(json.loads((ROOT / "events" / "members_api_enroll.json").read_text()))
    path = f"/v1/members/{MEMBER_ID}/redemptions"
    headers = {"Content-Type": "application/json", "Idempotency-Key": "redeem-1"}
    if correlation_header is not None:
        headers["X-Correlation-Id"] = correlation_header
    event.update(
        resource="/v1/members/{member_id}/redemptions",
        path=path,
        pathParameters={"member_id": MEMBER_ID},
        headers=headers,
        multiValueHeaders={name: [value] for name, value in headers.items()},
        body=json.dumps({"reward_id": "sample-trio"}),
    )
    event["requestContext"].update(resourcePath=event["resource"], path=f"/prod{path}")
    return event


def test_a_purchase_event_counts_the_points_it_earned(
    orders: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    service = StandInService(Outcome(201, {"entry": {**ENTRY, "kind": "earn", "points": 120}}))
    monkeypatch.setattr(orders, "loyalty_service", lambda: service)

    orders.lambda_handler(order_placed(), Context())

    assert emitted(capsys) == [Emitted("PointsEarned", "Count", [120.0], {})]
    assert service.correlation_ids == ["5f1b8c9e-2a4d-4c1e-9b0a-3e2f1d0c9b8a"]  # the bus event's id


def test_a_purchase_event_delivered_again_counts_a_replay_and_no_points(
    orders: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    replayed = Outcome(201, {"entry": {**ENTRY, "kind": "earn", "points": 120}}, replayed=True)
    monkeypatch.setattr(orders, "loyalty_service", lambda: StandInService(replayed))

    orders.lambda_handler(order_placed(), Context())

    assert emitted(capsys) == [Emitted("IdempotentReplay", "Count", [1.0], {"operation": "purchase"})]


def test_a_redemption_refused_for_insufficient_points_is_counted_by_its_reason(
    members_api: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = {"code": "insufficient_points", "message": "100 points needed, 40 available", "errors": []}
    monkeypatch.setattr(members_api, "loyalty_service", lambda: StandInService(Outcome(409, refusal)))

    answer = members_api.lambda_handler(redemption_request(), Context())

    assert answer["statusCode"] == 409
    assert emitted(capsys) == [Emitted("RedemptionRefused", "Count", [1.0], {"reason": "insufficient_points"})]


def test_a_redemption_counts_the_points_it_spent(
    members_api: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {"entry": {**ENTRY, "kind": "redeem", "points": -100}, "voucher_code": "ABCD-EFGH-JKMN", "reward": REWARD}
    monkeypatch.setattr(members_api, "loyalty_service", lambda: StandInService(Outcome(201, body)))

    members_api.lambda_handler(redemption_request(), Context())

    assert emitted(capsys) == [Emitted("PointsRedeemed", "Count", [100.0], {})]


def test_a_replayed_redemption_counts_a_replay_only_even_when_it_replays_a_refusal(
    members_api: ModuleType, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    refusal = Outcome(409, {"code": "insufficient_points", "message": "", "errors": []}, replayed=True)
    monkeypatch.setattr(members_api, "loyalty_service", lambda: StandInService(refusal))

    answer = members_api.lambda_handler(redemption_request(), Context())

    assert answer["multiValueHeaders"]["Idempotent-Replayed"] == ["true"]
    assert emitted(capsys) == [Emitted("IdempotentReplay", "Count", [1.0], {"operation": "redemption"})]


def test_an_api_write_is_correlated_by_the_callers_header_or_else_by_the_gateways_request_id(
    members_api: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = StandInService(Outcome(409, {"code": "insufficient_points", "message": "", "errors": []}))
    monkeypatch.setattr(members_api, "loyalty_service", lambda: service)

    members_api.lambda_handler(redemption_request("checkout-7f3a"), Context())
    members_api.lambda_handler(redemption_request("not a valid id; DROP"), Context())
    members_api.lambda_handler(redemption_request(), Context())

    request_id = redemption_request()["requestContext"]["requestId"]
    assert service.correlation_ids == ["checkout-7f3a", request_id, request_id]
    assert correlation.current() is None  # nothing is carried past the invocation


@pytest.mark.parametrize(
    ("operation", "outcome"),
    [
        ("purchase", Outcome(201, {"entry": {**ENTRY, "kind": "earn", "points": 0}})),  # a purchase worth nothing
        ("redemption", Outcome(422, {"code": "invalid_request", "message": "", "errors": []})),  # bad input
        ("redemption", Outcome(503, {"code": "contention", "message": "", "errors": []})),
        ("activity", Outcome(409, {"code": "insufficient_points", "message": "", "errors": []})),  # an adjustment
        ("activity", Outcome(201, {"entry": {**ENTRY, "kind": "adjustment", "points": 5}})),
    ],
)
def test_what_is_not_a_business_figure_emits_nothing(
    operation: str, outcome: Outcome, capsys: pytest.CaptureFixture[str]
) -> None:
    observability.record_outcome(operation, outcome)
    metrics.flush_metrics()

    assert emitted(capsys) == []


def test_a_refund_counts_the_points_it_reversed(capsys: pytest.CaptureFixture[str]) -> None:
    observability.record_outcome("refund", Outcome(201, {"entry": {**ENTRY, "kind": "reversal", "points": -20}}))
    metrics.flush_metrics()

    assert emitted(capsys) == [Emitted("PointsReversed", "Count", [20.0], {})]


def test_segment_changes_are_counted_by_direction_and_a_direction_without_changes_emits_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    observability.record_segment_changes(entered=3, left=0)

    assert emitted(capsys) == [Emitted("SegmentChanges", "Count", [3.0], {"change": "entered"})]


def test_a_refresh_reports_its_duration_and_members_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    observability.record_refresh_run(members=12_000, seconds=40.0)
    metrics.flush_metrics()

    assert emitted(capsys) == [
        Emitted("RefreshRunDuration", "Seconds", [40.0], {}),
        Emitted("RefreshMembersPerSecond", "Count/Second", [300.0], {}),
    ]


class ConflictingClient:
    """Cancels the first `conflicts` transactions with TransactionConflict, then accepts."""

    def __init__(self, conflicts: int):
        self.conflicts = conflicts
        self.written: list[list[dict[str, Any]]] = []

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.written.append(TransactItems)
        if len(self.written) <= self.conflicts:
            reasons = [{"Code": "TransactionConflict"}]
            error = {"Error": {"Code": "TransactionCanceledException", "Message": ""}, "CancellationReasons": reasons}
            raise ClientError(error, "TransactWriteItems")  # type: ignore[arg-type]
        return {}


def test_each_transaction_retried_after_a_conflict_is_counted(capsys: pytest.CaptureFixture[str]) -> None:
    assert toolkit._conflict_retried is observability.count_conflict_retried  # what the composition root connects
    on_conflict_retried(observability.count_conflict_retried)
    table = Table(ConflictingClient(conflicts=2), "loyalty", sleep=lambda _: None)

    table.transact([{"Put": {"TableName": "loyalty", "Item": key("A", "B")}}])
    metrics.flush_metrics()

    assert emitted(capsys) == [Emitted("TransactionConflictRetried", "Count", [1.0, 1.0], {})]


def test_a_transaction_carries_the_correlation_id_onto_every_item_it_writes() -> None:
    client = ConflictingClient(conflicts=0)
    items = [
        {"Put": {"TableName": "t", "Item": key("MEMBER#m", "LEDGER#1")}},
        {
            "Update": {
                "TableName": "t",
                "Key": key("MEMBER#m", "MEMBER"),
                "UpdateExpression": "SET #n0 = :v0 ADD #n1 :v1",
                "ExpressionAttributeNames": {"#n0": "tier", "#n1": "available"},
                "ExpressionAttributeValues": {":v0": {"S": "VIB"}, ":v1": {"N": "5"}},
            }
        },
        {"Update": {"TableName": "t", "Key": key("RUN", "1"), "UpdateExpression": "ADD #d :one"}},
        {"Delete": {"TableName": "t", "Key": key("MEMBER#m", "SEGMENT#x")}},
        {"ConditionCheck": {"TableName": "t", "Key": key("X", "Y"), "ConditionExpression": "attribute_exists(PK)"}},
    ]

    with correlation.correlated("5f1b8c9e-2a4d"):
        Table(client, "t").transact(items)
    Table(client, "t").transact(items)

    stamped, plain = client.written
    assert stamped[0]["Put"]["Item"]["correlation_id"] == {"S": "5f1b8c9e-2a4d"}
    member = stamped[1]["Update"]
    assert member["UpdateExpression"] == "SET #correlation_id = :correlation_id, #n0 = :v0 ADD #n1 :v1"
    assert member["ExpressionAttributeNames"]["#correlation_id"] == "correlation_id"
    assert member["ExpressionAttributeValues"][":correlation_id"] == {"S": "5f1b8c9e-2a4d"}
    assert stamped[2]["Update"]["UpdateExpression"] == "SET #correlation_id = :correlation_id ADD #d :one"
    assert stamped[3:] == items[3:]
    assert plain == items  # no correlation id carried: the items are written as given
    assert "correlation_id" not in items[0]["Put"]["Item"]  # the caller's items are not changed


def test_an_update_whose_set_clause_is_not_first_is_left_as_written() -> None:
    update = {"Update": {"TableName": "t", "Key": key("A", "B"), "UpdateExpression": "ADD #a :one SET #b = :two"}}

    assert correlated_items([update], "c-1") == [update]


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("c6af9ac6-7b61-11e6-9a41-93e8deadbeef", True),
        ("checkout:web/7f3a_1.2", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("", False),
        ("-leading-dash", False),
        ("two words", False),
        ("trailing-newline\n", False),
        (42, False),
        (None, False),
    ],
)
def test_a_correlation_id_is_an_id_never_free_text(value: object, valid: bool) -> None:
    assert (correlation.valid(value) is not None) is valid


def test_invocations_running_at_once_in_one_process_never_fail_on_each_others_flush(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The local stack runs many invocations in one process: one's flush must never find the metric set another
    flush emptied (Powertools would raise, and the request would fail), nor lose another's counts."""
    import sys
    import threading

    from loyalty.core.observability import metrics

    errors: list[BaseException] = []

    def invocation() -> None:
        try:
            for _ in range(200):
                metrics.add_metric(name="PointsEarned", unit="Count", value=1)
                metrics.flush_metrics()
        except BaseException as error:
            errors.append(error)

    # Threads switch every microsecond, so the race shows if the lock is missing (without it, here: several
    # SchemaValidationErrors and about a third of the counts lost).
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=invocation) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(switch)

    assert errors == []
    assert sum(sum(e.values) for e in emitted(capsys) if e.name == "PointsEarned") == 8 * 200


class StandInRefresh:
    def __init__(self, answer: dict[str, Any]):
        self.answer = answer

    def handle(self, event: dict[str, Any], **_: Any) -> dict[str, Any]:
        return self.answer


class StandInSegmentation:
    def __init__(self, run: dict[str, Any]):
        self.run = run

    def refresh_run(self, run_id: str) -> dict[str, Any]:
        return self.run


@pytest.mark.parametrize(
    ("step", "status", "counted"),
    [("finish", "complete", True), ("finish", "failed", False), ("score", "scoring", False)],
)
def test_the_finish_that_completes_a_run_counts_its_duration_and_members_per_second(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], step: str, status: str, counted: bool
) -> None:
    refresh = load("segment_refresh")
    run = {
        "status": status,
        "members": 1200,
        "started_at": "2026-12-01T02:00:00.000000Z",
        "completed_at": "2026-12-01T02:01:00.000000Z",
    }
    monkeypatch.setattr(refresh, "steps", lambda: StandInRefresh({"run_id": "nightly-1", "status": status}))
    monkeypatch.setattr(refresh, "segmentation_service", lambda: StandInSegmentation(run))

    refresh.lambda_handler({"step": step, "run_id": "nightly-1"}, Context())

    figures = {e.name: e.values for e in emitted(capsys) if e.name.startswith("Refresh")}
    assert figures == ({"RefreshRunDuration": [60.0], "RefreshMembersPerSecond": [20.0]} if counted else {})
