"""The local API gateway, driven over HTTP, in front of a tiny sample function with its own small template.

The sample lives in a temporary folder (not functions/), so these tests pin the gateway's behaviour alone: the proxy
event API Gateway would send, dev tokens as Cognito claims, API Gateway's own answers, one request per container.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack, StackError

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage: {Type: String, Default: test}
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables:
        GREETING: hello
        ITEMS_TABLE: !Ref Items
Resources:
  Items:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      KeySchema: [{AttributeName: id, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: id, AttributeType: S}]
  Pool:
    Type: AWS::Cognito::UserPool
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: !Ref Stage
      Auth:
        DefaultAuthorizer: PoolAuthorizer
        Authorizers:
          PoolAuthorizer: {UserPoolArn: !GetAtt Pool.Arn}
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/echo
      Handler: app.handler
      MemorySize: 256
      Events:
        GetItem: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/items/{item_id}", Method: get}}
        PostItem: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/items/{item_id}", Method: post}}
        Special: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /items/special, Method: get}}
        Health:
          Type: Api
          Properties: {RestApiId: !Ref Api, Path: /health, Method: get, Auth: {Authorizer: NONE}}
        Crash: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /crash, Method: get}}
        Slow: {Type: Api, Properties: {RestApiId: !Ref Api, Path: /slow, Method: get}}
        Nightly: {Type: Schedule, Properties: {Schedule: rate(1 day), Input: '{"job": "nightly"}'}}
  ResolverFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/resolver
      Handler: app.handler
      Events:
        Echo: {Type: Api, Properties: {RestApiId: !Ref Api, Path: "/resolver/{item_id}", Method: post}}
"""

RESOLVER_HANDLER = """
import json
import time

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

app = APIGatewayRestResolver()


@app.post("/resolver/<item_id>")
def echo(item_id):
    before = app.current_event.headers.get("X-Request")
    time.sleep(0.02)  # another request is served meanwhile, in another container
    after = app.current_event.headers.get("X-Request")
    claims = app.current_event.request_context.authorizer.claims
    return Response(200, "application/json", json.dumps({"item_id": item_id, "before": before, "after": after,
                                                         "sub": claims.get("sub")}))


def handler(event, context):
    return app.resolve(event, context)
"""

HANDLER = """
import base64
import json
import os
import time

_in_flight = 0  # module state, as Powertools' resolver keeps the current event: never shared by two requests


def handler(event, context):
    global _in_flight
    if "job" in event:
        return {"ran": event["job"], "function_name": context.function_name}
    if event["resource"] == "/crash":
        raise RuntimeError("the sample handler crashed on purpose")
    if event["resource"] == "/slow":
        _in_flight += 1
        started = time.monotonic()
        try:
            if _in_flight != 1:
                raise AssertionError("this container was entered by two requests at once")
            time.sleep(0.05)
        finally:
            _in_flight -= 1
        body = {"container": __name__, "started": started, "ended": time.monotonic()}
        return {"statusCode": 200, "body": json.dumps(body)}
    if event["body"] and event["isBase64Encoded"]:
        return {"statusCode": 200, "isBase64Encoded": True, "headers": {"Content-Type": "application/octet-stream"},
                "body": base64.b64encode(base64.b64decode(event["body"])[::-1]).decode()}
    return {
        "statusCode": 201 if event["httpMethod"] == "POST" else 200,
        "headers": {"Content-Type": "application/json", "X-Echo": "yes"},
        "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
        "body": json.dumps({
            "event": event,
            "env": {k: os.environ.get(k) for k in ("GREETING", "ITEMS_TABLE", "AWS_ENDPOINT_URL")},
            "context": {"function_name": context.function_name, "memory": context.memory_limit_in_mb,
                        "request_id": context.aws_request_id, "remaining": context.get_remaining_time_in_millis()},
        }),
    }
"""

ADMIN = {"Authorization": "Bearer dev:admin:alice"}


def write_sample(root: Path) -> Path:
    (root / "functions" / "echo").mkdir(parents=True)
    (root / "functions" / "echo" / "app.py").write_text(HANDLER)
    (root / "functions" / "resolver").mkdir(parents=True)
    (root / "functions" / "resolver" / "app.py").write_text(RESOLVER_HANDLER)
    (root / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = write_sample(tmp_path_factory.mktemp("sample-api"))
    with LocalStack(root=root, dynamodb="moto", port=0, stack_name="gateway-test") as running:
        yield running


def get(stack: LocalStack, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(stack.api_url + path, timeout=10, **kwargs)


def invocations(stack: LocalStack) -> int:
    return int(get(stack, "/_local/status").json()["functions"]["EchoFunction"]["invocations"])


def test_the_handler_gets_api_gateways_proxy_event(stack: LocalStack) -> None:
    # When a protected route is called with a path parameter, a repeated query parameter, headers and a JSON body
    response = requests.post(
        stack.api_url + "/items/42?tag=a&tag=b&q=x%20y",
        headers={**ADMIN, "X-Custom": "1"},
        json={"name": "lamp"},
        timeout=10,
    )

    # Then the handler saw the event API Gateway would have sent
    assert response.status_code == 201, response.text
    event = response.json()["event"]
    assert event["resource"] == "/items/{item_id}"
    assert event["path"] == "/items/42"
    assert event["httpMethod"] == "POST"
    assert event["pathParameters"] == {"item_id": "42"}
    assert event["queryStringParameters"] == {"tag": "b", "q": "x y"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "q": ["x y"]}
    assert event["headers"]["X-Custom"] == "1"
    assert event["multiValueHeaders"]["X-Custom"] == ["1"]
    assert event["body"] == '{"name": "lamp"}' and event["isBase64Encoded"] is False
    assert event["stageVariables"] is None
    context = event["requestContext"]
    assert context["stage"] == "test"  # the Stage parameter's default
    assert context["path"] == "/items/42"  # called at the root, as through a custom domain
    assert context["resourcePath"] == "/items/{item_id}"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert context["authorizer"]["claims"]["cognito:groups"] == "loyalty-admins"
    # And the response's headers and multi-value headers came back
    assert response.headers["X-Echo"] == "yes"
    assert response.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_the_api_also_answers_under_its_stage_as_at_the_execute_api_address(stack: LocalStack) -> None:
    response = requests.post(stack.api_url + "/test/items/42", headers=ADMIN, json={"name": "lamp"}, timeout=10)

    assert response.status_code == 201, response.text
    event = response.json()["event"]
    assert (event["path"], event["resource"]) == ("/items/42", "/items/{item_id}")
    assert event["requestContext"]["path"] == "/test/items/42"


def test_the_handler_runs_with_the_templates_environment_and_a_lambda_context(stack: LocalStack) -> None:
    body = get(stack, "/items/1", headers=ADMIN).json()

    assert body["env"]["GREETING"] == "hello"
    assert body["env"]["ITEMS_TABLE"] == "gateway-test-Items"
    assert body["env"]["AWS_ENDPOINT_URL"] == stack.moto_endpoint
    assert body["context"]["function_name"] == "gateway-test-EchoFunction"
    assert body["context"]["memory"] == 256
    assert 0 < body["context"]["remaining"] <= 5000


@pytest.mark.parametrize(
    ("token", "claims"),
    [
        (
            "dev:member:m_01abc",
            {"sub": "m_01abc", "cognito:username": "m_01abc", "custom:member_id": "m_01abc", "token_use": "id"},
        ),
        ("dev:user:cognito-sub-1", {"sub": "cognito-sub-1", "cognito:username": "cognito-sub-1", "token_use": "id"}),
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
def test_dev_tokens_arrive_as_cognito_claims(stack: LocalStack, token: str, claims: dict[str, str]) -> None:
    response = get(stack, "/items/7", headers={"Authorization": f"Bearer {token}"})

    assert response.json()["event"]["requestContext"]["authorizer"] == {"claims": claims}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-dev-token"}, {"Authorization": "dev:x:y"}])
def test_a_protected_route_without_a_good_token_is_401_and_the_function_is_not_called(
    stack: LocalStack, headers: dict[str, str]
) -> None:
    before = invocations(stack)

    response = get(stack, "/items/7", headers=headers)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert invocations(stack) == before


def test_an_open_route_needs_no_token_and_gets_no_authorizer(stack: LocalStack) -> None:
    response = get(stack, "/health")

    assert response.status_code == 200
    assert "authorizer" not in response.json()["event"]["requestContext"]


def test_a_literal_path_wins_over_a_path_parameter(stack: LocalStack) -> None:
    event = get(stack, "/items/special", headers=ADMIN).json()["event"]

    assert event["resource"] == "/items/special" and event["pathParameters"] is None


def test_unknown_routes_and_methods_get_api_gateways_answers(stack: LocalStack) -> None:
    missing = get(stack, "/nowhere", headers=ADMIN)
    wrong_method = requests.delete(stack.api_url + "/items/1", headers=ADMIN, timeout=10)

    # API Gateway answers both with 403 MissingAuthenticationToken when the API declares no GatewayResponses
    assert (missing.status_code, missing.json()) == (403, {"message": "Missing Authentication Token"})
    assert (wrong_method.status_code, wrong_method.json()) == (403, {"message": "Missing Authentication Token"})


def test_a_crashing_handler_is_a_502(stack: LocalStack) -> None:
    response = get(stack, "/crash", headers=ADMIN)

    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_a_binary_body_travels_base64_encoded(stack: LocalStack) -> None:
    response = requests.put(stack.api_url + "/items/1", headers=ADMIN, data=b"\xff\x00", timeout=10)
    assert response.status_code == 403  # PUT is not declared

    response = requests.post(stack.api_url + "/items/1", headers=ADMIN, data=b"\xff\x00\x10", timeout=10)

    assert response.status_code == 200
    assert response.content == b"\x10\x00\xff"


def test_concurrent_requests_never_share_a_container(stack: LocalStack) -> None:
    # Given a handler that sleeps 50 ms, fails if a second request enters its module meanwhile, and says when it ran
    # (the stack runs it in this process: its monotonic clock is this test's)
    def call(_: int) -> tuple[int, dict[str, Any]]:
        response = get(stack, "/slow", headers=ADMIN)
        return response.status_code, response.json()

    # When 20 requests arrive at once
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(call, range(20)))

    # Then none saw another in its container, they ran side by side, and more than one container cold-started.
    # (Side by side: some handler invocations overlapped in time, which serialised requests never do. A wall-clock
    # bound on the 20 requests said the same only on an idle machine: 2.2 s under a loaded CI run.)
    assert [status for status, _ in results] == [200] * 20, results
    edges = sorted([(body["started"], 1) for _, body in results] + [(body["ended"], -1) for _, body in results])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most > 1, "no two requests ran at the same time: requests were serialised"
    assert len({body["container"] for _, body in results}) > 1
    status = get(stack, "/_local/status").json()["functions"]["EchoFunction"]
    assert status["cold_starts"] > 1 and status["busy"] == 0


def test_a_schedule_fires_on_demand_with_its_input(stack: LocalStack) -> None:
    response = requests.post(stack.api_url + "/_local/schedules/EchoFunction/Nightly", timeout=10)

    assert response.status_code == 200
    assert response.json()["result"] == {"ran": "nightly", "function_name": "gateway-test-EchoFunction"}
    assert requests.post(stack.api_url + "/_local/schedules/EchoFunction/Nope", timeout=10).status_code == 404


def test_the_status_page_lists_endpoints_routes_functions_and_schedules(stack: LocalStack) -> None:
    status = get(stack, "/_local/status").json()

    assert status["dynamodb_backend"] == "moto"
    assert status["endpoints"] == {"moto": stack.moto_endpoint, "dynamodb": stack.dynamodb_endpoint}
    assert {"method": "GET", "path": "/health", "function": "EchoFunction", "event": "Health", "auth": "NONE"} in (
        status["routes"]
    )
    assert status["functions"]["EchoFunction"]["invocations"] > 0
    assert status["schedules"][0]["expression"] == "rate(1 day)"
    assert status["resources"]["tables"] == {"Items": "gateway-test-Items"}


def test_a_second_stack_in_the_same_process_is_refused(stack: LocalStack) -> None:
    with pytest.raises(StackError, match="already running"):
        LocalStack(root=stack.root, dynamodb="moto", port=0).start()
    assert get(stack, "/health").status_code == 200  # and the first one is unharmed


def test_invoke_runs_a_function_through_its_pool(stack: LocalStack) -> None:
    assert stack.invoke("EchoFunction", {"job": "direct"})["ran"] == "direct"


def test_concurrent_requests_to_a_powertools_resolver_each_see_their_own_event(stack: LocalStack) -> None:
    # Given a Powertools REST resolver, which keeps the current event on a class shared by every copy of the module
    def call(index: int) -> dict[str, Any]:
        response = requests.post(
            f"{stack.api_url}/resolver/{index}",
            headers={"Authorization": f"Bearer dev:user:caller-{index}", "X-Request": str(index)},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    # When 30 requests run at once
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(call, range(30)))

    # Then each handler saw only its own request: path, headers and caller, before and after the others ran
    for index, answer in enumerate(answers):
        assert answer == {"item_id": str(index), "before": str(index), "after": str(index), "sub": f"caller-{index}"}
