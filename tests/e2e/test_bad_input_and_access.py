"""Bad input gets a clear 4xx naming the field, never a 500, and leaves nothing written; tokens reach only
what they may."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN, SERVICE, Api

UNKNOWN = "m_00000000000000000000000000"


def _cases(member: str) -> list[tuple[str, str, str, Any, dict[str, str], int, str | None]]:
    """(method, path, token, json body or raw string, headers, expected status, expected field)."""
    acts = f"/v1/members/{member}/activities"
    redeem = f"/v1/members/{member}/redemptions"
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    purchase = {"type": "purchase", "order_id": "o-bad", "amount": "10", "currency": "USD"}
    return [
        ("POST", "/v1/members", ADMIN, "{not json", {}, 400, "body"),
        ("POST", "/v1/members", ADMIN, [], {}, 422, "body"),
        ("POST", "/v1/members", ADMIN, {}, {}, 422, "external_id"),
        ("POST", "/v1/members", ADMIN, {"external_id": 42}, {}, 422, "external_id"),
        ("POST", "/v1/members", ADMIN, {"external_id": "a b"}, {}, 422, "external_id"),
        ("POST", "/v1/members", ADMIN, {"external_id": "x", "birthday": "2999-01-01"}, {}, 422, "birthday"),
        (
            "POST",
            "/v1/members",
            ADMIN,
            {"external_id": "x", "profile": {"email": "nope"}},
            {},
            422,
            "profile.email",
        ),
        ("POST", "/v1/members", ADMIN, {"external_id": "x", "surprise": 1}, {}, 422, "surprise"),
        (
            "POST",
            "/v1/members",
            ADMIN,
            {"external_id": "x", "referred_by": "ZZZZ-ZZZZ"},
            {},
            422,
            "referred_by",
        ),
        ("GET", "/v1/members/not-a-member-id", ADMIN, None, {}, 422, "member_id"),
        ("GET", f"/v1/members/{UNKNOWN}", ADMIN, None, {}, 404, "member_id"),
        ("GET", f"/v1/members/{UNKNOWN}/ledger", ADMIN, None, {}, 404, "member_id"),
        ("GET", f"/v1/members/{member}/ledger?limit=0", ADMIN, None, {}, 422, "limit"),
        ("GET", f"/v1/members/{member}/ledger?limit=abc", ADMIN, None, {}, 422, "limit"),
        ("GET", f"/v1/members/{member}/ledger?cursor=garbage", ADMIN, None, {}, 422, "cursor"),
        ("POST", acts, SERVICE, "{", {}, 400, "body"),
        ("POST", acts, SERVICE, {"type": "teleport"}, {}, 422, "type"),
        ("POST", acts, SERVICE, {**purchase, "amount": "-5"}, {}, 422, "amount"),
        ("POST", acts, SERVICE, {**purchase, "amount": "1e30"}, {}, 422, "amount"),
        ("POST", acts, SERVICE, {**purchase, "amount": "NaN"}, {}, 422, "amount"),
        ("POST", acts, SERVICE, {**purchase, "amount": "5000000"}, {}, 422, "amount"),
        ("POST", acts, SERVICE, {**purchase, "amount": True}, {}, 422, "amount"),
        ("POST", acts, SERVICE, {**purchase, "currency": "usd"}, {}, 422, "currency"),
        ("POST", acts, SERVICE, {**purchase, "currency": "JPY"}, {}, 422, "currency"),
        ("POST", acts, SERVICE, {**purchase, "order_id": ""}, {}, 422, "order_id"),
        ("POST", acts, SERVICE, {**purchase, "occurred_at": "2999-01-01T00:00:00Z"}, {}, 422, "occurred_at"),
        ("POST", acts, SERVICE, {**purchase, "occurred_at": "2026-01-01T00:00:00"}, {}, 422, "occurred_at"),
        (
            "POST",
            acts,
            SERVICE,
            {**purchase, "line_items": [{"amount": "-1"}]},
            {},
            422,
            "line_items[0].amount",
        ),
        ("POST", acts, SERVICE, {**purchase, "line_items": [{"amount": "11"}]}, {}, 422, "line_items"),
        ("POST", f"/v1/members/{UNKNOWN}/activities", SERVICE, purchase, {}, 404, "member_id"),
        ("POST", acts, SERVICE, {"type": "review"}, {}, 422, "Idempotency-Key"),
        ("POST", acts, ADMIN, {"type": "adjustment", "points": 0, "reason": "zero"}, key, 422, "points"),
        ("POST", acts, ADMIN, {"type": "adjustment", "points": 5}, key, 422, "reason"),
        (
            "POST",
            acts,
            ADMIN,
            {"type": "adjustment", "points": -(10**9), "reason": "big"},
            key,
            422,
            "points",
        ),
        ("POST", acts, ADMIN, {"type": "adjustment", "points": -50, "reason": "too much"}, key, 409, None),
        (
            "POST",
            acts,
            SERVICE,
            {"type": "refund", "order_id": "o-never", "refund_id": "r", "amount": "1"},
            {},
            404,
            "order_id",
        ),
        (
            "POST",
            acts,
            SERVICE,
            {"type": "refund", "order_id": "o-never", "amount": "1"},
            {},
            422,
            "refund_id",
        ),
        ("POST", redeem, ADMIN, {"reward_id": "coupon"}, {}, 400, "Idempotency-Key"),
        # refusals are remembered under their key (docs/idempotency.md): each gets a key of its own
        (
            "POST",
            redeem,
            ADMIN,
            {"reward_id": "no-such-reward"},
            {"Idempotency-Key": f"k-{uuid.uuid4().hex}"},
            404,
            "reward_id",
        ),
        ("POST", redeem, ADMIN, {"reward_id": "coupon"}, {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}, 409, None),
        ("POST", redeem, ADMIN, {}, key, 422, "reward_id"),
        (
            "POST",
            redeem,
            ADMIN,
            {"reward_id": "coupon"},
            {"Idempotency-Key": "x" * 300},
            422,
            "Idempotency-Key",
        ),
        ("GET", "/v1/members/not-a-member-id/segments", ADMIN, None, {}, 422, "member_id"),
        ("GET", f"/v1/members/{UNKNOWN}/segments", ADMIN, None, {}, 404, "member_id"),
        *_admin_cases(),
    ]


def _admin_cases() -> list[tuple[str, str, str, Any, dict[str, str], int, str | None]]:
    """The segmentation admin routes (an admin token; only the input is at fault)."""
    segment = "/v1/admin/segments/rfm:champions"
    definition = "/v1/admin/segment-definitions/e2e-bad-input"
    rule = {"field": "tier", "op": "=", "value": "VIB"}
    refreshes = "/v1/admin/segment-refreshes"
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    return [
        ("GET", "/v1/admin/segments/champions", ADMIN, None, {}, 422, "segment_id"),
        ("GET", "/v1/admin/segments/rfm:Champions", ADMIN, None, {}, 422, "segment_id"),
        ("GET", "/v1/admin/segments/rfm:no-such-segment", ADMIN, None, {}, 404, "segment_id"),
        ("GET", "/v1/admin/segments/rule:no-such-segment/members", ADMIN, None, {}, 404, "segment_id"),
        ("GET", f"{segment}?history=0", ADMIN, None, {}, 422, "history"),
        ("GET", f"{segment}?history=101", ADMIN, None, {}, 422, "history"),
        ("GET", f"{segment}/members?limit=0", ADMIN, None, {}, 422, "limit"),
        ("GET", f"{segment}/members?limit=501", ADMIN, None, {}, 422, "limit"),
        ("GET", f"{segment}/members?cursor=garbage", ADMIN, None, {}, 422, "cursor"),
        ("GET", f"{segment}/members?cursor=eyJzaGFyZCI6OTl9", ADMIN, None, {}, 422, "cursor"),
        ("PUT", "/v1/admin/segment-definitions/Win%20Back", ADMIN, {"name": "x", "rule": rule}, {}, 422, "segment_id"),
        ("PUT", definition, ADMIN, "{", {}, 400, "body"),
        ("PUT", definition, ADMIN, {"name": "x"}, {}, 422, "rule"),
        ("PUT", definition, ADMIN, {"name": "x", "rule": rule, "surprise": 1}, {}, 422, "surprise"),
        ("PUT", definition, ADMIN, {"name": "x", "rule": rule, "version": 7}, {}, 422, "version"),
        ("PUT", definition, ADMIN, {"segment_id": "other", "name": "x", "rule": rule}, {}, 422, "segment_id"),
        ("PUT", definition, ADMIN, {"name": "x" * 101, "rule": rule}, {}, 422, "name"),
        (
            "PUT",
            definition,
            ADMIN,
            {"name": "x", "rule": {"any": [rule, {"field": "point_6m", "op": ">", "value": 5}]}},
            {},
            422,
            "rule.any[1].field",
        ),
        ("DELETE", "/v1/admin/segment-definitions/no-such-segment", ADMIN, None, {}, 404, "segment_id"),
        ("PUT", "/v1/admin/segmentation", ADMIN, {}, {}, 400, "If-Match"),
        ("PUT", "/v1/admin/segmentation", ADMIN, {}, {"If-Match": "abc"}, 422, "If-Match"),
        ("PUT", "/v1/admin/segmentation", ADMIN, {}, {"If-Match": "0"}, 422, "If-Match"),
        (
            "PUT",
            "/v1/admin/segmentation",
            ADMIN,
            {"rfm_window_months": 25},
            {"If-Match": "1"},
            422,
            "rfm_window_months",
        ),
        ("PUT", "/v1/admin/segmentation", ADMIN, {"surprise": 1}, {"If-Match": "1"}, 422, "surprise"),
        ("PUT", "/v1/admin/segmentation", ADMIN, {}, {"If-Match": "999999"}, 409, None),
        ("POST", refreshes, ADMIN, {}, {}, 400, "Idempotency-Key"),
        ("POST", refreshes, ADMIN, {"workers": 0}, key, 422, "workers"),
        ("POST", refreshes, ADMIN, {"workers": 257}, key, 422, "workers"),
        ("POST", refreshes, ADMIN, {"as_of": "2999-01-01T00:00:00Z"}, key, 422, "as_of"),
        ("POST", refreshes, ADMIN, {"as_of": "2026-01-01T00:00:00"}, key, 422, "as_of"),
        ("POST", refreshes, ADMIN, {"surprise": 1}, key, 422, "surprise"),
        ("GET", f"{refreshes}?limit=0", ADMIN, None, {}, 422, "limit"),
        ("GET", f"{refreshes}?limit=101", ADMIN, None, {}, 422, "limit"),
        ("GET", f"{refreshes}/no-such-run", ADMIN, None, {}, 404, "run_id"),
        ("GET", f"{refreshes}/not_a_run", ADMIN, None, {}, 422, "run_id"),
    ]


def test_bad_input_gets_a_clear_4xx_and_writes_nothing(api: Api) -> None:
    # Given a member with 20 points and a ledger of one entry
    member_id = api.enroll()
    assert api.purchase(member_id, "20").status_code == 201
    before = (api.member(member_id)["balance"], len(api.ledger(member_id)), _segmentation(api))

    failures = []
    for method, path, token, body, headers, status, field in _cases(member_id):
        if isinstance(body, str):
            response = api.call(
                method, path, token=token, data=body, headers={**headers, "Content-Type": "application/json"}
            )
        else:
            response = api.call(method, path, token=token, json=body, headers=headers)
        payload = response.json()
        fields = [error["field"] for error in payload.get("errors", [])]
        if response.status_code != status or (field is not None and field not in fields):
            failures.append(f"{method} {path} {body!r}: {response.status_code} {payload}")
        assert payload.get("message"), (path, payload)
    assert not failures, "\n".join(failures)

    # Then nothing was written anywhere on the member, nor to the segmentation document or its runs
    assert (api.member(member_id)["balance"], len(api.ledger(member_id)), _segmentation(api)) == before


def _segmentation(api: Api) -> tuple[Any, ...]:
    runs = api.call("GET", "/v1/admin/segment-refreshes", params={"limit": 100}).json()["runs"]
    return api.call("GET", "/v1/admin/segmentation").json(), sorted(r["run_id"] for r in runs)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("GET", "/ledger", None),
        ("GET", "/segments", None),
        ("POST", "/redemptions", {"reward_id": "coupon"}),
    ],
)
def test_a_member_token_reaches_only_its_own_member(api: Api, method: str, suffix: str, body: Any) -> None:
    mine, theirs = api.enroll(), api.enroll()
    api.purchase(theirs, "500")
    headers = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    other = api.call(method, f"/v1/members/{theirs}{suffix}", token=f"dev:member:{mine}", json=body, headers=headers)
    assert other.status_code == 403, other.text
    own = api.call(method, f"/v1/members/{mine}{suffix}", token=f"dev:member:{mine}", json=body, headers=headers)
    assert own.status_code in (200, 409), own.text  # 409: own member has no points to redeem
    assert api.member(theirs)["balance"]["available"] == 500


def test_member_tokens_cannot_record_earning_activities(api: Api) -> None:
    member_id = api.enroll()
    response = api.purchase(member_id, "10")  # as a service: allowed
    assert response.status_code == 201
    as_member = api.call(
        "POST",
        f"/v1/members/{member_id}/activities",
        token=f"dev:member:{member_id}",
        json={"type": "purchase", "order_id": "o-self", "amount": "999", "currency": "USD"},
    )
    assert as_member.status_code == 403
    adjustment = api.call(
        "POST",
        f"/v1/members/{member_id}/activities",
        token=SERVICE,
        json={"type": "adjustment", "points": 100, "reason": "service may not adjust"},
        headers={"Idempotency-Key": "svc-adj"},
    )
    assert adjustment.status_code == 403
    assert api.member(member_id)["balance"]["available"] == 10


def test_a_shopper_may_enroll_only_themselves(api: Api) -> None:
    subject = f"cognito-{uuid.uuid4().hex[:8]}"
    itself = api.call("POST", "/v1/members", token=f"dev:user:{subject}", json={"external_id": subject})
    assert itself.status_code == 201
    someone_else = api.call("POST", "/v1/members", token=f"dev:user:{subject}", json={"external_id": "victim"})
    assert someone_else.status_code == 403


def test_protected_routes_need_a_token_and_docs_do_not(api: Api) -> None:
    assert api.call("GET", "/v1/rewards", token=None).status_code == 401
    assert api.call("GET", "/v1/rewards", token="garbage").status_code == 401
    rewards = api.call("GET", "/v1/rewards", token="dev:member:m_01abcdefghjkmnpqrstvwxyz012")
    assert rewards.status_code == 200
    assert {r["reward_id"] for r in rewards.json()["rewards"]} >= {"coupon", "ten-points"}
    spec = api.call("GET", "/v1/openapi.json", token=None)
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Serverless Loyalty API"
    assert api.call("GET", "/v1/docs", token=None).status_code == 200
