"""template.yaml is the one source of wiring: what the code names exists there, made in the emulator, with the keys
the code uses; the API routes the code serves are the routes the template declares; every function has a sample
event in events/ that its handler accepts."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.events.models import EventPattern

from devstack.resources import create_resources
from devstack.template import Resolver, Template, load_template
from loyalty import runtime
from loyalty.adapters.dynamodb.table import KEY_ATTRIBUTES, TTL_ATTRIBUTE, to_item
from loyalty.core.events import EventType

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE: Template = load_template(ROOT / "template.yaml")
FUNCTIONS = [f for f in TEMPLATE.functions.values()]


def _load(function_logical_id: str) -> ModuleType:
    function = TEMPLATE.function(function_logical_id)
    name = f"wiring_{function_logical_id}"
    spec = importlib.util.spec_from_file_location(name, function.handler_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The template's resources made in moto, the functions' environment set as the template resolves it."""
    with mock_aws():
        resolver = Resolver(TEMPLATE, "wiring")
        created = create_resources(resolver, lambda service: boto3.client(service, region_name="us-east-1"))
        environment = {k: str(resolver.resolve(v)) for k, v in FUNCTIONS[0].environment.items()}
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        runtime.reset()
        yield {"resolver": resolver, "created": created, "environment": environment}
        runtime.reset()


def test_every_function_reads_the_table_and_bus_the_template_makes(emulated: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        assert function.environment.get("TABLE_NAME") == {"Ref": "LoyaltyTable"}, function.logical_id
        assert function.environment.get("EVENT_BUS_NAME") == {"Ref": "LoyaltyBus"}, function.logical_id
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    table = dynamodb.describe_table(TableName=emulated["environment"]["TABLE_NAME"])["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == list(KEY_ATTRIBUTES)
    assert [k["KeyType"] for k in table["KeySchema"]] == ["HASH", "RANGE"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ttl = dynamodb.describe_time_to_live(TableName=table["TableName"])["TimeToLiveDescription"]
    assert ttl["AttributeName"] == TTL_ATTRIBUTE
    buses = boto3.client("events", region_name="us-east-1").list_event_buses()["EventBuses"]
    assert emulated["environment"]["EVENT_BUS_NAME"] in {bus["Name"] for bus in buses}


def test_every_dead_letter_queue_the_functions_name_exists(emulated: dict[str, Any]) -> None:
    sqs = boto3.client("sqs", region_name="us-east-1")
    named = set()
    for function in FUNCTIONS:
        raw = json.dumps(function.properties)
        named |= {q.logical_id for q in TEMPLATE.queues if q.logical_id in raw}
    assert named >= {
        "OrderEventsDeadLetterQueue",
        "EventPublisherDeadLetterQueue",
        "SegmentReevaluationDeadLetterQueue",
    }
    for logical_id in named:
        url = emulated["created"].queues[logical_id]
        assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


@pytest.mark.parametrize(
    ("function", "served"),
    [("MembersApiFunction", {("GET", "/v1/docs")}), ("AdminApiFunction", set())],
)
def test_api_routes_in_the_code_are_the_routes_in_the_template(function: str, served: set[tuple[str, str]]) -> None:
    module = _load(function)
    document = json.loads(module.app.get_openapi_json_schema())
    in_code = {(method.upper(), path) for path, methods in document["paths"].items() for method in methods}
    in_code |= served  # Swagger UI: served, not part of its own document
    in_template = {(e.method, e.path) for e in TEMPLATE.api_events if e.function == function and e.method != "OPTIONS"}
    assert in_code == in_template


@pytest.mark.parametrize("function", ["MembersApiFunction", "AdminApiFunction"])
def test_every_path_a_browser_calls_with_a_token_has_an_open_preflight_to_the_same_function(function: str) -> None:
    events = [e for e in TEMPLATE.api_events if e.function == function]
    protected_paths = {e.path for e in events if e.protected}
    preflights = {e.path for e in events if e.method == "OPTIONS"}
    assert preflights == protected_paths
    assert all(not e.protected for e in events if e.method == "OPTIONS")


def test_only_the_members_api_document_and_its_viewer_and_the_preflights_are_open() -> None:
    open_routes = {(e.method, e.path) for e in TEMPLATE.api_events if not e.protected and e.method != "OPTIONS"}
    assert open_routes == {("GET", "/v1/openapi.json"), ("GET", "/v1/docs")}


def _stream_filter(function_logical_id: str) -> Any:
    (stream,) = [s for s in TEMPLATE.stream_events if s.function == function_logical_id]
    patterns = [EventPattern.load(json.dumps(p)) for p in stream.filter_patterns]

    def passes(event_name: str, item: dict[str, Any]) -> bool:
        keys = {k: v for k, v in to_item(item).items() if k in KEY_ATTRIBUTES}
        record = {"eventName": event_name, "dynamodb": {"Keys": keys, "NewImage": to_item(item)}}
        return any(p.matches_event(record) for p in patterns)

    return passes


def test_member_changes_reach_the_segment_events_function_and_nothing_else() -> None:
    passes = _stream_filter("SegmentReevaluationFunction")
    member = {"PK": "MEMBER#m", "SK": "MEMBER", "member_id": "m", "event_type": "MemberEnrolled"}
    assert passes("INSERT", member)
    assert passes("MODIFY", member)
    assert not passes("REMOVE", member)
    assert not passes("INSERT", {"PK": "MEMBER#m", "SK": "LEDGER#1", "event_type": "PointsEarned"})
    assert not passes("INSERT", {"PK": "MEMBER#m", "SK": "SEGMENT#rfm:loyal", "segment_id": "rfm:loyal"})
    assert not passes("INSERT", {"PK": "MEMBER#m", "SK": "SEGEVENT#1", "event_type": "SegmentEntered"})


def test_stream_filter_passes_event_records_and_nothing_else() -> None:
    passes = _stream_filter("EventPublisherFunction")

    entry = {"PK": "MEMBER#m", "SK": "LEDGER#1", "event_type": EventType.POINTS_EARNED.value, "points": 5}
    assert passes("INSERT", entry)
    assert passes("INSERT", {"PK": "MEMBER#m", "SK": "MEMBER", "event_type": EventType.MEMBER_ENROLLED.value})
    assert not passes("MODIFY", {"PK": "MEMBER#m", "SK": "MEMBER", "event_type": "MemberEnrolled"})
    assert not passes("INSERT", {"PK": "ORDER#o", "SK": "ORDER", "points": 5})
    assert not passes("INSERT", {"PK": "IDEMPOTENCY#k", "SK": "IDEMPOTENCY"})


def test_every_function_has_a_sample_event_its_handler_accepts(emulated: dict[str, Any]) -> None:
    """The events/ fixtures, run in the order a day would: enroll, order, refund, token, stream."""
    samples = {path.name: json.loads(path.read_text()) for path in (ROOT / "events").glob("*.json")}
    for function in FUNCTIONS:
        prefix = function.code_uri.name + "_"
        assert any(name.startswith(prefix) for name in samples), f"no events/{prefix}*.json"

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "wiring", 512, "wiring"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:wiring"

        def get_remaining_time_in_millis(self) -> int:
            return 900_000

    enrolled = _load("MembersApiFunction").lambda_handler(samples["members_api_enroll.json"], Context())
    assert enrolled["statusCode"] == 201, enrolled["body"]
    member_id = json.loads(enrolled["body"])["member_id"]

    orders = _load("OrderEventsFunction")
    placed = orders.lambda_handler(samples["order_events_order_placed.json"], Context())
    assert placed["status"] == 201 and placed["entry"]["member_id"] == member_id
    refunded = orders.lambda_handler(samples["order_events_order_refunded.json"], Context())
    assert refunded["status"] == 201 and refunded["points_reversed"] > 0

    token = samples["token_claims_pre_token_generation.json"]
    token["request"]["userAttributes"]["sub"] = "cust-1001"  # the external id the sample enrollment used
    claims = _load("TokenClaimsFunction").lambda_handler(token, Context())
    assert claims["response"]["claimsOverrideDetails"]["claimsToAddOrOverride"] == {"custom:member_id": member_id}

    published = _load("EventPublisherFunction").lambda_handler(samples["event_publisher_stream_insert.json"], Context())
    assert published == {"batchItemFailures": []}

    modified = samples["segment_reevaluation_member_modified.json"]
    image = modified["Records"][0]["dynamodb"]["NewImage"]
    stored = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=emulated["environment"]["TABLE_NAME"], Key={"PK": {"S": f"MEMBER#{member_id}"}, "SK": {"S": "MEMBER"}}
    )["Item"]
    image.clear()
    image.update(stored)  # the sample's shape, this run's member
    assert _load("SegmentReevaluationFunction").lambda_handler(modified, Context()) == {"batchItemFailures": []}
    after = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=emulated["environment"]["TABLE_NAME"],
        Key={"PK": {"S": f"MEMBER#{member_id}"}, "SK": {"S": "MEMBER"}},
        ConsistentRead=True,
    )["Item"]
    assert len([s["S"] for s in after["segments"]["L"] if s["S"].startswith("lifecycle:")]) == 1

    # The refresh's tasks, as its state machine invokes them: begin records the scheduled run, a share scans
    runtime.reset()
    refresh = _load("SegmentRefreshFunction")
    begun = refresh.lambda_handler(samples["segment_refresh_begin.json"], Context())
    assert begun["run_id"] == "scheduled-2026-11-23" and begun["proceed"] is True
    assert [share["worker"] for share in begun["shares"]] == list(range(16))
    assert begun["shares"][0] == samples["segment_refresh_scan.json"]["share"]
    scanned = refresh.lambda_handler(samples["segment_refresh_scan.json"], Context())
    assert scanned == {**samples["segment_refresh_scan.json"]["share"], "done": True}

    # The tier review's tasks: begin names the review and its shares (a re-run names its instant), a share reviews
    review = _load("TierReviewFunction")
    begun = review.lambda_handler(samples["tier_review_begin.json"], Context())
    assert begun["review_at"] == "2026-12-01T00:00:00.000000Z"
    assert begun["shares"][0] == samples["tier_review_share.json"]["share"] and len(begun["shares"]) == 8
    reviewed = review.lambda_handler(samples["tier_review_share.json"], Context())
    assert reviewed["done"] is True and reviewed["moved"] == 0

    # The daily expiry's tasks: begin names the day and its shares, a share expires and announces
    expiry = _load("PointsExpiryFunction")
    begun = expiry.lambda_handler(samples["points_expiry_begin.json"], Context())
    assert begun["day"] == "2026-12-03" and len(begun["shares"]) == 8
    assert begun["shares"][0] == samples["points_expiry_share.json"]["share"]
    expired = expiry.lambda_handler(samples["points_expiry_share.json"], Context())
    assert expired["done"] is True and expired["expired_points"] == 0


def _tasks(states: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Task state of a definition, those inside Map iterations included."""
    found = []
    for state in states.values():
        if state["Type"] == "Task":
            found.append(state)
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            found.extend(_tasks(processor["States"]))
    return found


@pytest.mark.parametrize("machine", [m.logical_id for m in TEMPLATE.state_machines])
def test_every_task_of_a_state_machine_invokes_a_function_of_the_template_it_may_invoke(machine: str) -> None:
    resource = TEMPLATE.resources[machine]
    definition = json.loads((ROOT / resource.properties["DefinitionUri"]).read_text())
    substitutions = resource.properties["DefinitionSubstitutions"]
    invoked = set()
    for task in _tasks(definition["States"]):
        assert task["Resource"] == "arn:aws:states:::lambda:invoke", task
        name = task["Parameters"]["FunctionName"]
        assert name.startswith("${") and name.endswith("}"), name
        target = substitutions[name[2:-1]]
        assert target == {"Fn::GetAtt": [target["Fn::GetAtt"][0], "Arn"]}
        assert target["Fn::GetAtt"][0] in TEMPLATE.functions
        invoked.add(target["Fn::GetAtt"][0])
        # A task is retried when it fails (a crashed or timed-out invocation) and bounded in time
        assert any("States.TaskFailed" in r["ErrorEquals"] for r in task["Retry"]), task
        assert task["TimeoutSeconds"] <= TEMPLATE.function(target["Fn::GetAtt"][0]).timeout
    allowed = {
        policy["LambdaInvokePolicy"]["FunctionName"]["Ref"]
        for policy in resource.properties["Policies"]
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy
    }
    assert invoked and invoked == allowed
    # Every substitution is used, and none is left unsubstituted
    text = json.dumps(definition)
    assert all("${" + name + "}" in text for name in substitutions)
    assert set(re.findall(r"\$\{([^}]+)\}", text)) <= set(substitutions)


def test_the_nightly_refresh_is_the_state_machines_schedule_and_run_now_starts_it() -> None:
    (nightly,) = [e for e in TEMPLATE.schedule_events if e.name == "Nightly"]
    assert nightly.function == "SegmentRefreshStateMachine" and nightly.state_machine
    assert nightly.expression == "cron(0 3 * * ? *)"
    admin = TEMPLATE.function("AdminApiFunction")
    assert admin.environment["REFRESH_STATE_MACHINE_ARN"] == {"Ref": "SegmentRefreshStateMachine"}
    assert {
        "StepFunctionsExecutionPolicy": {"StateMachineName": {"Fn::GetAtt": ["SegmentRefreshStateMachine", "Name"]}}
    } in (admin.properties["Policies"])
    # The refresh function has no event of its own: only its state machine invokes it
    assert not TEMPLATE.function("SegmentRefreshFunction").events
