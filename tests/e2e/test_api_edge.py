"""The API's edges as an outside client meets them: bodies that are not what a route expects, refusals replayed,
browsers calling from another origin, the gateway's own answers, and the local stack's front page."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import requests

from tests.e2e.conftest import ADMIN, ROOT, SERVICE, WEB_APP, Api

MEMBER_TOKEN = "dev:member:{member_id}"


def _write_routes() -> list[tuple[str, str, str]]:
    """(document, method, path) for every route with a request body, from the committed OpenAPI documents, so a
    route added later is covered without touching this test."""
    routes = []
    for name in ("openapi.json", "openapi.admin.json"):
        document = json.loads(Path(ROOT / name).read_text())
        for path, methods in document["paths"].items():
            for method, operation in methods.items():
                if method in ("post", "put", "patch") and "requestBody" in operation:
                    routes.append((name, method.upper(), path))
    return sorted(routes)


WRITE_ROUTES = _write_routes()


def _concrete(path: str, member_id: str) -> str:
    return (
        path.replace("{member_id}", member_id)
        .replace("{segment_id}", "edge-cases")
        .replace("{reward_id}", "edge-cases")
    )


def _bad_bodies() -> list[tuple[str, bytes, str, int, str, str | None]]:
    """(case, body, content type, status, code, what the message names)"""
    deep = b"[" * 100_000 + b"]" * 100_000
    return [
        ("not UTF-8", b"\xff\xfe{}", "application/json", 400, "malformed_json", "UTF-8"),
        ("text/plain", b'{"a": 1}', "text/plain", 415, "unsupported_media_type", "text/plain"),
        ("application/xml", b"<a/>", "application/xml", 415, "unsupported_media_type", "application/xml"),
        (
            "JSON in another charset",
            b'{"a": 1}',
            "application/json; charset=latin-1",
            415,
            "unsupported_media_type",
            None,
        ),
        ("not JSON", b"{", "application/json", 400, "malformed_json", None),
        ("a 5,000-digit number", b'{"amount": ' + b"9" * 5000 + b"}", "application/json", 400, "malformed_json", "40"),
        ("NaN", b'{"amount": NaN}', "application/json", 400, "malformed_json", "NaN"),
        ("arrays nested 100,000 deep", deep, "application/json", 400, "malformed_json", "32 levels"),
        ("objects nested 40 deep", b'{"a":' * 40 + b"1" + b"}" * 40, "application/json", 400, "malformed_json", "32"),
        (
            "a duplicate key",
            b'{"type":"purchase","order_id":"X","amount":10,"amount":900000,"currency":"USD"}',
            "application/json",
            400,
            "malformed_json",
            "'amount'",
        ),
        ("over 1 MiB", b'{"a": "' + b"x" * 1_100_000 + b'"}', "application/json", 413, "payload_too_large", None),
    ]


def test_every_write_route_refuses_every_bad_body_with_a_4xx_and_writes_nothing(api: Api) -> None:
    # Given a member with 20 points, and the segmentation document
    member_id = api.enroll()
    assert api.purchase(member_id, "20").status_code == 201
    before = (api.member(member_id), api.call("GET", "/v1/admin/segmentation").json())
    assert WRITE_ROUTES, "no write routes found in the documents"

    failures = []
    for _, method, path in WRITE_ROUTES:
        for case, body, content_type, status, code, named in _bad_bodies():
            headers = {"Content-Type": content_type, "Idempotency-Key": f"k-{uuid.uuid4().hex}", "If-Match": "1"}
            response = api.call(method, _concrete(path, member_id), token=ADMIN, data=body, headers=headers)  # type: ignore[arg-type]
            payload = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
            if (response.status_code, payload.get("code")) != (status, code) or (
                named and named not in payload.get("message", "")
            ):
                failures.append(f"{method} {path} {case}: {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)

    # Then nothing was written
    assert (api.member(member_id), api.call("GET", "/v1/admin/segmentation").json()) == before


@pytest.mark.parametrize(("document", "method", "path"), [r for r in WRITE_ROUTES if r[0] == "openapi.admin.json"])
def test_the_role_is_checked_before_the_body_is_read(api: Api, document: str, method: str, path: str) -> None:
    member_token = MEMBER_TOKEN.format(member_id="m_01jzzzzzzzzzzzzzzzzzzzzzzz")

    response = api.call(
        method, _concrete(path, "x"), token=member_token, data=b"\xff", headers={"Content-Type": "text/plain"}
    )  # type: ignore[arg-type]

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


def test_a_member_token_on_another_members_write_is_forbidden_before_the_body_is_read(api: Api) -> None:
    member_id, other = api.enroll(), api.enroll()

    response = api.call(
        "POST",
        f"/v1/members/{other}/redemptions",
        token=MEMBER_TOKEN.format(member_id=member_id),
        data=b"\xff",  # type: ignore[arg-type]
        headers={"Content-Type": "application/json", "Idempotency-Key": "k"},
    )

    assert (response.status_code, response.json()["code"]) == (403, "forbidden")


def test_a_body_over_the_gateways_limit_is_a_413_in_the_error_shape(api: Api) -> None:
    response = api.call(
        "POST",
        "/v1/members",
        data=b"x" * (10 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},  # type: ignore[arg-type]
    )

    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


def test_a_refused_redemption_replays_as_the_same_refusal_after_the_member_earns_more(api: Api) -> None:
    # Given a member who cannot afford the 100-point coupon
    member_id = api.enroll()
    api.purchase(member_id, "50")
    me = MEMBER_TOKEN.format(member_id=member_id)
    key = {"Idempotency-Key": f"redeem-{uuid.uuid4().hex}"}
    redeem = f"/v1/members/{member_id}/redemptions"

    first = api.call("POST", redeem, token=me, json={"reward_id": "coupon"}, headers=key)
    # When the member earns enough and the app retries the same request
    api.purchase(member_id, "500")
    retried = api.call("POST", redeem, token=me, json={"reward_id": "coupon"}, headers=key)
    other_reward = api.call("POST", redeem, token=me, json={"reward_id": "ten-points"}, headers=key)
    fresh = api.call("POST", redeem, token=me, json={"reward_id": "coupon"}, headers={"Idempotency-Key": "new-one"})

    # Then the retry gets the first answer, refusal and all, and nothing was debited by it
    assert (first.status_code, first.json()["code"], first.json()["available"]) == (409, "insufficient_points", 50)
    assert (retried.status_code, retried.json()) == (409, first.json())
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert (other_reward.status_code, other_reward.json()["code"]) == (422, "idempotency_key_reused")
    assert fresh.status_code == 201
    assert api.member(member_id)["balance"]["available"] == 450


def test_a_refund_needs_its_refund_id(api: Api) -> None:
    member_id = api.enroll()
    api.purchase(member_id, "50", order_id="edge-refund-1")

    response = api.call(
        "POST",
        f"/v1/members/{member_id}/activities",
        token=SERVICE,
        json={"type": "refund", "order_id": "edge-refund-1", "amount": "10"},
        headers={"Idempotency-Key": "k"},
    )

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["refund_id"]


# ---- browsers ----------------------------------------------------------------------------------------------


def test_a_browsers_preflight_is_answered_without_a_token(api: Api) -> None:
    for path in ("/v1/rewards", "/v1/members/m_01jzzzzzzzzzzzzzzzzzzzzzzz/redemptions", "/v1/admin/segments"):
        response = api.call(
            "OPTIONS",
            path,
            token=None,
            headers={
                "Origin": WEB_APP,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, idempotency-key, content-type",
            },
        )

        assert response.status_code == 204, (path, response.text)
        assert response.headers["Access-Control-Allow-Origin"] == WEB_APP
        allowed = {h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "idempotency-key", "content-type"} <= allowed
        assert "OPTIONS" in response.headers["Access-Control-Allow-Methods"]
        assert "Access-Control-Allow-Credentials" not in response.headers
        assert response.content == b"" and "Content-Type" not in response.headers


def test_another_origin_gets_no_cors_headers(api: Api) -> None:
    preflight = api.call("OPTIONS", "/v1/rewards", token=None, headers={"Origin": "https://evil.example"})
    request = api.call("GET", "/v1/rewards", headers={"Origin": "https://evil.example"})

    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert request.status_code == 200 and "Access-Control-Allow-Origin" not in request.headers


@pytest.mark.parametrize(
    ("method", "path", "token", "status"),
    [
        ("GET", "/v1/rewards", ADMIN, 200),  # an answer
        ("GET", "/v1/members/m_01jzzzzzzzzzzzzzzzzzzzzzzz", ADMIN, 404),  # the function's error
        ("GET", "/v1/admin/segments", SERVICE, 403),  # the function's refusal
        ("GET", "/v1/rewards", None, 401),  # the gateway's refusal
        ("GET", "/v1/nowhere", ADMIN, 404),  # the gateway's: no such route
    ],
)
def test_every_answer_carries_the_cors_headers_of_an_allowed_origin(
    api: Api, method: str, path: str, token: str | None, status: int
) -> None:
    response = api.call(method, path, token=token, headers={"Origin": WEB_APP})

    assert response.status_code == status
    assert response.headers["Access-Control-Allow-Origin"] == WEB_APP
    body = response.json()
    if status >= 400:
        assert set(body) >= {"code", "message", "errors"}, body  # the project's error shape, whoever answered


def test_a_delete_answers_204_without_a_body_or_content_type(api: Api) -> None:
    slug = f"edge-{uuid.uuid4().hex[:8]}"
    path = f"/v1/admin/segment-definitions/{slug}"
    created = api.call("PUT", path, json={"name": "Edge", "rule": {"field": "tier", "op": "=", "value": "VIB"}})
    assert created.status_code == 201, created.text

    deleted = api.call("DELETE", path)

    assert deleted.status_code == 204
    assert deleted.content == b"" and "Content-Type" not in deleted.headers


# ---- the local stack for a newcomer ---------------------------------------------------------------------------


def test_the_front_page_links_the_documents_and_the_stack(api: Api) -> None:
    response = requests.get(api.base + "/", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    for link in ("/v1/docs", "/v1/openapi.json", "/_local/status", "/_local/events"):
        assert f'href="{link}"' in response.text


@pytest.mark.parametrize(("prefix", "server"), [("", "/"), ("/prod", "/prod")])
def test_swagger_tries_requests_where_it_is_served(api: Api, prefix: str, server: str) -> None:
    page = requests.get(f"{api.base}{prefix}/v1/docs", timeout=10)
    through = api.call("GET", f"{prefix}/v1/rewards")

    assert page.status_code == 200
    assert f'"url": "{server}"' in page.text  # the document's server: where "Try it out" sends requests
    assert through.status_code == 200
