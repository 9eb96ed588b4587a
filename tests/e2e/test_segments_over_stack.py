"""Segments through the whole local stack: purchases over HTTP move members between segments within seconds (the
stream, SegmentReevaluationFunction, the event publisher, the bus), each change announced once; the nightly schedule starts
the refresh's state machine, whose execution (moto's interpreter, the tasks run by the in-process function) carries the
run to completion, retrying a failed task and looping a share's continuations."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from devstack import states
from devstack.stack import LocalStack
from loyalty.core.settings import settings
from loyalty.segments.prediction import PredictionModel
from tests.e2e.conftest import PROFILED, Api


def _table(stack: LocalStack) -> str:
    return stack.resource_name("LoyaltyTable")


def _item(stack: LocalStack, pk: str, sk: str) -> dict[str, Any] | None:
    found = stack.client("dynamodb").get_item(
        TableName=_table(stack), Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True
    )
    return found.get("Item")


def _memberships(stack: LocalStack, member_id: str) -> set[str]:
    page = stack.client("dynamodb").query(
        TableName=_table(stack),
        KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
        ExpressionAttributeValues={":pk": {"S": f"MEMBER#{member_id}"}, ":prefix": {"S": "SEGMENT#"}},
        ConsistentRead=True,
    )
    return {item["segment_id"]["S"] for item in page["Items"]}


def _wait(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout} s")


def test_a_purchase_moves_the_member_between_segments_and_each_change_is_announced_once(
    stack: LocalStack, api: Api
) -> None:
    # Given a new member: enrolled, never purchased
    member_id = api.enroll(consent=PROFILED)
    stack.wait_for_events("SegmentEntered", 1, timeout=20, member_id=member_id, segment_id="lifecycle:potential")
    # When they make a big first purchase
    assert api.purchase(member_id, "650.00").status_code == 201
    # Then within seconds they are a new customer and a high spender, and no longer a potential one
    stack.wait_for_events("SegmentEntered", 1, timeout=20, member_id=member_id, segment_id="points:high-spenders")
    stack.wait_for_events("SegmentEntered", 1, timeout=20, member_id=member_id, segment_id="lifecycle:new")
    stack.wait_for_events("SegmentLeft", 1, timeout=20, member_id=member_id, segment_id="lifecycle:potential")
    expected = {"points:high-spenders", "lifecycle:new"}
    _wait(lambda: expected <= _memberships(stack, member_id), 20, "memberships written")
    time.sleep(2)  # let every redelivery and re-evaluation of the member's own writes run its course
    seen = Counter(
        (event["detail-type"], event["detail"]["segment_id"])
        for kind in ("SegmentEntered", "SegmentLeft")
        for event in stack.events(kind, member_id=member_id)
    )
    # And each change was announced exactly once, and the announcements add up to the memberships held now
    assert set(seen.values()) == {1}, seen
    entered = {segment for (kind, segment) in seen if kind == "SegmentEntered"}
    left = {segment for (kind, segment) in seen if kind == "SegmentLeft"}
    assert entered - left == _memberships(stack, member_id)


def _no_refresh_running(stack: LocalStack) -> None:
    _wait(lambda: _item(stack, "SEGMENTS", "ACTIVE_REFRESH") is None, 120, "no refresh running")


def _execution(stack: LocalStack, execution_arn: str) -> dict[str, Any]:
    described = states.wait_for_execution(stack.client("stepfunctions"), execution_arn, timeout=180)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    return described


def test_the_nightly_schedule_runs_a_refresh_execution_to_completion(stack: LocalStack, api: Api) -> None:
    # Given members who bought, and no refresh running (another test may have started one)
    members = [api.enroll(consent=PROFILED) for _ in range(6)]
    for index, member_id in enumerate(members):
        for order in range(index):
            assert api.purchase(member_id, f"{20 + 35 * order}.00").status_code == 201
    _no_refresh_running(stack)
    # When the nightly schedule fires: it starts an execution of the state machine with the schedule's event
    started = stack.fire_schedule("SegmentRefreshStateMachine", "Nightly")
    # Then the execution carries both passes over the Distributed Maps to completion
    output = json.loads(_execution(stack, started["executionArn"])["output"])
    run_id = output["run_id"]
    run = _wait(
        lambda: (item := _item(stack, f"REFRESH#{run_id}", "RUN")) and item["status"]["S"] == "complete" and item,
        120,
        f"refresh {run_id} complete",
    )
    workers = int(run["workers"]["N"])
    assert int(run["pass1_done"]["N"]) == int(run["pass2_done"]["N"]) == workers
    assert int(run["members"]["N"]) >= len(members)
    assert int(run["members"]["N"]) == int(run["members_read"]["N"])
    # And every member who bought has an RFM segment now, with the run's cut points published for the API
    for member_id in members[1:]:
        assert any(s.startswith("rfm:") for s in _memberships(stack, member_id)), member_id
    published = _item(stack, "SEGMENTS", "CUTPOINTS")
    assert published is not None and published["run_id"]["S"] == run_id
    latest = _item(stack, "SEGMENTS", "LATEST")
    assert latest is not None and latest["run_id"]["S"] == run_id
    assert _item(stack, "SEGMENTS", "ACTIVE_REFRESH") is None


@pytest.fixture
def tiny_time_budget(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every share hands on a continuation after each page of 2 members (its invocation always "near its deadline")."""
    monkeypatch.setenv("REFRESH_PAGE_SIZE", "2")
    monkeypatch.setenv("REFRESH_RESERVE_SECONDS", "100000")
    settings.cache_clear()
    yield
    monkeypatch.undo()
    settings.cache_clear()


@pytest.fixture
def refresh_tasks(stack: LocalStack) -> Iterator[list[dict[str, Any]]]:
    """Every task the refresh's function ran (its event), in order; the merge's first invocation fails."""
    name = stack.resource_name("SegmentRefreshFunction")
    run = stack._lambda_routes[name]
    seen: list[dict[str, Any]] = []

    def task(event: dict[str, Any]) -> Any:
        seen.append(event)
        if event["step"] == "merge" and [e["step"] for e in seen].count("merge") == 1:
            raise ConnectionError("the merge's worker was lost")
        return run(event)

    states.route_lambda_invocations({name: task})
    yield seen
    states.route_lambda_invocations({name: run})


def test_run_now_runs_an_execution_with_continuations_and_a_retried_task_once_per_run(
    stack: LocalStack, api: Api, tiny_time_budget: None, refresh_tasks: list[dict[str, Any]]
) -> None:
    # Given members, and no refresh running
    for _ in range(5):
        api.enroll(consent=PROFILED)
    _no_refresh_running(stack)
    # When an admin starts a refresh over 2 shares, and starts it again with the same key
    key = f"e2e-sfn-{time.time_ns()}"
    started = api.call("POST", "/v1/admin/segment-refreshes", json={"workers": 2}, headers={"Idempotency-Key": key})
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    again = api.call("POST", "/v1/admin/segment-refreshes", json={"workers": 2}, headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["run_id"] == run_id
    # Then its execution, named by the run id, runs to SUCCEEDED
    machine = stack.state_machines["SegmentRefreshStateMachine"]
    execution_arn = machine.replace(":stateMachine:", ":execution:") + f":{run_id}"
    _execution(stack, execution_arn)
    # with every share looping back through the Choice (a page of 2 at a time), ...
    steps = [task["step"] for task in refresh_tasks]
    members = int(api.call("GET", f"/v1/admin/segment-refreshes/{run_id}").json()["members"])
    assert members >= 5
    assert steps.count("scan") >= members // 2 and steps.count("score") >= members // 2
    assert any(task["share"]["step"] > 0 for task in refresh_tasks if task["step"] == "scan")
    # ... the merge that failed retried by the definition (its history shows the failure, then the success), ...
    assert steps.count("merge") == 2
    history = stack.client("stepfunctions").get_execution_history(executionArn=execution_arn, maxResults=1000)
    kinds = [event["type"] for event in history["events"]]
    assert "TaskFailed" in kinds and kinds[-1] == "ExecutionSucceeded"
    # ... and one execution for the run however often it was started, its tasks run once
    executions = stack.client("stepfunctions").list_executions(stateMachineArn=machine)["executions"]
    assert [e["name"] for e in executions].count(run_id) == 1
    assert steps.count("begin") == steps.count("finish") == 1
    run = api.call("GET", f"/v1/admin/segment-refreshes/{run_id}").json()
    assert run["status"] == "complete" and run["members"] == run["members_read"]
    assert run["pass1_done"] == run["pass2_done"] == 2
    # A start of the same run once it is over starts nothing either
    assert (
        api.call(
            "POST", "/v1/admin/segment-refreshes", json={"workers": 2}, headers={"Idempotency-Key": key}
        ).status_code
        == 200
    )
    assert [task["step"] for task in refresh_tasks].count("begin") == 1


def test_predictions_are_for_staff_and_follow_the_members_own_rhythm(stack: LocalStack, api: Api) -> None:
    # Given a member who bought twice, 20 days apart
    member_id = api.enroll(consent=PROFILED)
    now = time.time()
    for days_ago in (30, 10):
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - days_ago * 86400))
        assert api.purchase(member_id, "40.00", occurred_at=at).status_code == 201
    # When staff ask for the member's predictions
    answer = api.call("GET", f"/v1/members/{member_id}/prediction")
    # Then the next purchase is expected one mean gap after the last, 10 days from now
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["member_id"] == member_id
    expected_next = time.strftime("%Y-%m-%d", time.gmtime(now + 10 * 86400))
    assert body["expected_next_purchase"] == expected_next
    assert isinstance(body["churn_risk"], bool)
    # And the expected spend: null without a published Gamma-Gamma fit (this stack's refreshes see too few members to
    # fit a model), else Gamma-Gamma's for x = 1 repeat purchase of mean 40, and over 90 days times the purchases
    published = _item(stack, "SEGMENTS", "CUTPOINTS")
    raw_model = published.get("model", {}).get("S") if published else None
    spend_model = PredictionModel.model_validate_json(raw_model).gamma_gamma if raw_model else None
    if spend_model is None:
        assert body["expected_spend_per_purchase"] is None and body["expected_spend_90d"] is None
    else:
        assert body["expected_spend_per_purchase"] == pytest.approx(spend_model.expected_average_spend(1, 40.0))
        assert body["expected_spend_90d"] == pytest.approx(
            body["expected_spend_per_purchase"] * body["expected_purchases_90d"], rel=1e-12
        )
    # And the member's own app may not read them; an unknown member is a 404
    assert api.call("GET", f"/v1/members/{member_id}/prediction", token=f"dev:member:{member_id}").status_code == 403
    assert api.call("GET", "/v1/members/m_00000000000000000000000000/prediction").status_code == 404
