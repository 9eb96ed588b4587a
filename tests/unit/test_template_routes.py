"""How the local gateway reads the template's routes and filters: API Gateway's route choice, dev tokens as
Cognito claims, the proxy event, and Lambda's stream filter on the template's own pattern."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devstack.gateway import (
    MethodNotFound,
    Route,
    RouteNotFound,
    Router,
    answer_from_proxy_response,
    build_proxy_event,
    claims_for_token,
)
from devstack.pollers import StreamFilter, stream_record_for_lambda
from devstack.template import ApiEvent, load_template

ROOT = Path(__file__).resolve().parents[2]


def _route(path: str, method: str = "GET", authorizer: str | None = "Pool") -> Route:
    return Route(ApiEvent("Fn", f"{method}{path}", path, method, "Api", authorizer), "prod")


def test_literal_segments_win_over_parameters_and_parameters_over_greedy_paths() -> None:
    router = Router([_route("/items/{item_id}"), _route("/items/special"), _route("/{proxy+}", "ANY")])

    assert router.match("GET", "/items/special")[0].event.path == "/items/special"
    assert router.match("GET", "/items/42") == (router.match("GET", "/items/42")[0], {"item_id": "42"})
    assert router.match("GET", "/items/42")[0].event.path == "/items/{item_id}"
    route, params = router.match("DELETE", "/other/deep/path")
    assert route.event.path == "/{proxy+}" and params == {"proxy": "other/deep/path"}


def test_unknown_path_and_unknown_method_are_told_apart() -> None:
    router = Router([_route("/v1/members", "POST")])

    with pytest.raises(RouteNotFound):
        router.match("GET", "/v1/nothing")
    with pytest.raises(MethodNotFound):
        router.match("GET", "/v1/members")


def test_the_real_templates_routes_resolve_member_paths() -> None:
    template = load_template(ROOT / "template.yaml")
    router = Router(Route(e, "prod") for e in template.api_events)

    route, params = router.match("POST", "/v1/members/m_123/redemptions")

    assert route.event.path == "/v1/members/{member_id}/redemptions"
    assert params == {"member_id": "m_123"}


@pytest.mark.parametrize(
    ("token", "claims"),
    [
        (
            "Bearer dev:member:m_01abc",
            {"sub": "m_01abc", "cognito:username": "m_01abc", "custom:member_id": "m_01abc", "token_use": "id"},
        ),
        ("Bearer dev:user:sub-123", {"sub": "sub-123", "cognito:username": "sub-123", "token_use": "id"}),
        (
            "Bearer dev:admin:alice",
            {"sub": "alice", "cognito:username": "alice", "cognito:groups": "loyalty-admins", "token_use": "id"},
        ),
        (
            "dev:service:commerce",
            {
                "sub": "commerce",
                "cognito:username": "commerce",
                "cognito:groups": "loyalty-services",
                "token_use": "id",
            },
        ),
    ],
)
def test_dev_tokens_become_the_claims_cognito_would_give(token: str, claims: dict[str, str]) -> None:
    assert claims_for_token(token) == claims


@pytest.mark.parametrize("token", [None, "", "Bearer", "Bearer dev:root:x", "Bearer dev:member:", "Bearer eyJhbGciOi"])
def test_missing_or_malformed_tokens_have_no_claims(token: str | None) -> None:
    assert claims_for_token(token) is None


def test_the_proxy_event_has_api_gateways_shape() -> None:
    route = _route("/items/{item_id}", "POST")

    event = build_proxy_event(
        route,
        "POST",
        "/items/42",
        {"item_id": "42"},
        [("tag", "a"), ("tag", "b"), ("q", "1")],
        [("Content-Type", "application/json"), ("X-Multi", "1"), ("X-Multi", "2")],
        b'{"a": 1}',
        claims={"sub": "u"},
        host="127.0.0.1:3000",
    )

    assert event["resource"] == "/items/{item_id}"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"item_id": "42"}
    assert event["queryStringParameters"] == {"tag": "b", "q": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["1"]}
    assert event["headers"]["X-Multi"] == "2" and event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["body"] == '{"a": 1}' and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    context = event["requestContext"]
    assert context["path"] == "/items/42" and context["stage"] == "prod"  # at the root, as behind a custom domain
    assert context["resourcePath"] == "/items/{item_id}" and context["httpMethod"] == "POST"
    assert context["authorizer"] == {"claims": {"sub": "u"}}
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert isinstance(context["requestTimeEpoch"], int) and context["requestId"]


def test_an_open_route_without_query_or_body_gets_nones_and_no_authorizer() -> None:
    event = build_proxy_event(_route("/docs", authorizer=None), "GET", "/docs", {}, [], [], b"")

    assert event["queryStringParameters"] is None and event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None and event["body"] is None
    assert "authorizer" not in event["requestContext"]


def test_a_binary_body_is_base64_encoded_both_ways() -> None:
    event = build_proxy_event(_route("/upload", "POST"), "POST", "/upload", {}, [], [], b"\xff\x00\x01")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\x00\x01"

    answer = answer_from_proxy_response(
        {
            "statusCode": 200,
            "body": base64.b64encode(b"\x89PNG").decode(),
            "isBase64Encoded": True,
            "headers": {"Content-Type": "image/png"},
        }
    )
    assert answer.body == b"\x89PNG" and ("Content-Type", "image/png") in answer.headers


def test_the_templates_stream_filter_passes_only_inserts_of_event_items() -> None:
    template = load_template(ROOT / "template.yaml")
    (stream,) = [e for e in template.stream_events if e.function == "EventPublisherFunction"]
    stream_filter = StreamFilter(stream.filter_patterns)

    def record(name: str, image: dict[str, object]) -> dict[str, object]:
        raw = {"eventID": "1", "eventName": name, "dynamodb": {"NewImage": image, "SequenceNumber": "1"}}
        return stream_record_for_lambda(raw, "arn:stream", "us-east-1")

    assert stream_filter.matches(record("INSERT", {"PK": {"S": "x"}, "event_type": {"S": "PointsEarned"}}))
    assert not stream_filter.matches(record("INSERT", {"PK": {"S": "x"}}))
    assert not stream_filter.matches(record("MODIFY", {"PK": {"S": "x"}, "event_type": {"S": "PointsEarned"}}))
    assert not stream_filter.matches(record("REMOVE", {}))


def test_stream_records_are_shaped_as_lambda_gives_them() -> None:
    from datetime import UTC, datetime

    raw = {
        "eventName": "INSERT",
        "awsRegion": "ddblocal",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
            "SequenceNumber": "7",
            "NewImage": {"blob": {"B": b"\x00\x01"}, "empty": {}, "nested": {"L": [{}]}},
        },
    }

    record = stream_record_for_lambda(raw, "arn:stream", "us-east-1")

    assert record["eventSource"] == "aws:dynamodb" and record["eventSourceARN"] == "arn:stream"
    assert record["awsRegion"] == "us-east-1"
    assert record["dynamodb"]["ApproximateCreationDateTime"] == 1767225600
    assert record["dynamodb"]["NewImage"] == {"blob": {"B": "AAE="}, "empty": {"M": {}}, "nested": {"L": [{"M": {}}]}}
