"""The segmentation admin API and the member's segments route, over HTTP on the local stack.

What the routes answer only: a refresh started here is not waited for (the refresh engine has its own tests).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.template import load_template
from tests.e2e.conftest import ADMIN, PROFILED, ROOT, SERVICE, Api

ADMIN_ROUTES = sorted(
    (event.method, event.path)
    for event in load_template(ROOT / "template.yaml").api_events
    if event.function == "AdminApiFunction" and event.method != "OPTIONS"  # CORS preflights: no token, no body
)


def _slug() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


def _concrete(path: str) -> str:
    """A template path with its parameters filled in."""
    if path.startswith("/v1/admin/segment-definitions/"):
        return path.replace("{segment_id}", "some-segment")
    return path.replace("{segment_id}", "rfm:champions").replace("{run_id}", "manual-0")


def _valid_request(method: str, path: str, document: dict[str, Any]) -> dict[str, Any]:
    """Headers and body that pass validation, so the answer is the route's own (authorisation included)."""
    if (method, path) == ("PUT", "/v1/admin/segmentation"):
        return {"json": document, "headers": {"If-Match": str(document["version"])}}
    if method == "PUT":
        return {"json": {"name": "Anything", "rule": {"field": "tier", "op": "=", "value": "VIB"}}}
    if method == "POST":
        return {"json": {"workers": 1}, "headers": {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}}
    return {}


def test_the_template_routes_are_the_routes_the_admin_function_documents(api: Api) -> None:
    document = api.call("GET", "/v1/admin/openapi.json")
    assert document.status_code == 200, document.text
    assert document.json()["info"]["title"] == "Serverless Loyalty Admin API"
    documented = sorted(
        (method.upper(), path) for path, methods in document.json()["paths"].items() for method in methods
    )
    assert documented == ADMIN_ROUTES
    assert len(ADMIN_ROUTES) == 22  # segmentation 13, the program document 4, the rewards catalog 5


@pytest.mark.parametrize("token", ["dev:member:m_01abcdefghjkmnpqrstvwxyz012", SERVICE], ids=["member", "service"])
def test_only_an_admin_token_reaches_any_admin_route(api: Api, token: str) -> None:
    # Given the document at its current version, so that every request is valid and only the token is at fault
    document = api.call("GET", "/v1/admin/segmentation").json()

    answers = {}
    for method, path in ADMIN_ROUTES:
        response = api.call(method, _concrete(path), token=token, **_valid_request(method, path, document))
        answers[(method, path)] = (response.status_code, response.json()["code"])

    assert answers == {route: (403, "forbidden") for route in ADMIN_ROUTES}
    # And nothing changed
    assert api.call("GET", "/v1/admin/segmentation").json() == document
    assert api.call("GET", "/v1/admin/segments", token=None).status_code == 401


def test_a_rule_segment_is_created_replaced_listed_read_and_deleted(api: Api) -> None:
    slug = _slug()
    path = f"/v1/admin/segment-definitions/{slug}"
    rule = {"field": "tier", "op": "in", "value": ["VIB", "Rouge"]}

    created = api.call("PUT", path, json={"name": "Big spenders", "description": "VIB and up", "rule": rule})
    assert created.status_code == 201, created.text
    assert created.headers["Location"] == path
    assert created.json() == {
        "segment_id": slug,
        "name": "Big spenders",
        "description": "VIB and up",
        "rule": rule,
        "version": 1,
    }

    narrower = {"field": "spend_12m", "op": ">=", "value": 500}
    replaced = api.call("PUT", path, json={"segment_id": slug, "name": "Bigger spenders", "rule": narrower})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["version"] == 2
    assert replaced.json()["rule"] == narrower
    assert "Location" not in replaced.headers

    listed = api.call("GET", "/v1/admin/segment-definitions")
    assert listed.status_code == 200
    (mine,) = [d for d in listed.json()["segments"] if d["segment_id"] == slug]
    assert mine == replaced.json()

    segment = api.call("GET", f"/v1/admin/segments/rule:{slug}", params={"history": 5})
    assert segment.status_code == 200, segment.text
    assert segment.json()["segment_id"] == f"rule:{slug}"
    assert segment.json()["name"] == "Bigger spenders"
    assert segment.json()["definition"] == replaced.json()
    assert isinstance(segment.json()["size"], int)
    assert isinstance(segment.json()["history"], list)
    catalog = {s["segment_id"]: s for s in api.call("GET", "/v1/admin/segments").json()["segments"]}
    assert catalog[f"rule:{slug}"]["name"] == "Bigger spenders"
    members = api.call("GET", f"/v1/admin/segments/rule:{slug}/members", params={"limit": 10})
    assert members.status_code == 200
    assert set(members.json()) == {"members", "next_cursor"}

    deleted = api.call("DELETE", path)
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""

    gone = api.call("GET", f"/v1/admin/segments/rule:{slug}")
    assert gone.status_code == 404
    assert gone.json()["code"] == "segment_not_found"
    assert api.call("DELETE", path).status_code == 404
    assert slug not in {d["segment_id"] for d in api.call("GET", "/v1/admin/segment-definitions").json()["segments"]}
    assert f"rule:{slug}" not in {s["segment_id"] for s in api.call("GET", "/v1/admin/segments").json()["segments"]}


def test_a_rule_segment_with_groups_is_stored_and_read_back(api: Api) -> None:
    slug = _slug()
    rule = {
        "all": [
            {"field": "tier", "op": "in", "value": ["VIB", "Rouge"]},
            {
                "any": [
                    {"field": "spend_12m", "op": ">=", "value": 250},
                    {"not": {"field": "country", "op": "=", "value": "FR"}},
                ]
            },
        ]
    }

    created = api.call("PUT", f"/v1/admin/segment-definitions/{slug}", json={"name": "Grouped", "rule": rule})

    assert created.status_code == 201, created.text
    assert created.json()["rule"] == rule
    assert api.call("GET", f"/v1/admin/segments/rule:{slug}").json()["definition"]["rule"] == rule
    assert api.call("GET", "/v1/admin/segmentation").status_code == 200
    assert api.call("DELETE", f"/v1/admin/segment-definitions/{slug}").status_code == 204


def test_an_invalid_rule_is_a_422_naming_every_problem_by_its_path(api: Api) -> None:
    version = api.call("GET", "/v1/admin/segmentation").json()["version"]
    slug = _slug()
    rule = {
        "all": [
            {"field": "country", "op": "=", "value": "FR"},
            {"field": "point_6m", "op": ">", "value": 5},
            {"field": "points_6m", "op": ">", "value": "500"},
            {"any": [{"field": "tier", "op": ">", "value": "VIB"}]},
            {"field": "age", "op": "between", "value": [40, 30]},
        ]
    }

    response = api.call("PUT", f"/v1/admin/segment-definitions/{slug}", json={"name": "Broken", "rule": rule})

    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_segment"
    errors = {e["field"]: e["reason"] for e in response.json()["errors"]}
    assert errors == {
        "rule.all[1].field": "unknown field 'point_6m' (did you mean points_6m?)",
        "rule.all[2].value": "points_6m takes a number",
        "rule.all[3].any[0].op": "> does not apply to tier, which takes a string",
        "rule.all[4].value": "age between takes [low, high] with low <= high, got [40, 30]",
    }

    too_deep: dict[str, Any] = {"field": "tier", "op": "=", "value": "VIB"}
    for _ in range(9):
        too_deep = {"all": [too_deep]}
    deep = api.call("PUT", f"/v1/admin/segment-definitions/{slug}", json={"name": "Deep", "rule": too_deep})
    assert deep.status_code == 422
    assert [e["field"] for e in deep.json()["errors"]] == ["rule" + ".all[0]" * 8]

    both = api.call("PUT", f"/v1/admin/segment-definitions/{slug}", json={"name": "", "rule": {"not": []}})
    assert both.status_code == 422
    assert {e["field"] for e in both.json()["errors"]} == {"name", "rule.not"}

    # Nothing was stored
    assert api.call("GET", f"/v1/admin/segments/rule:{slug}").status_code == 404
    assert api.call("GET", "/v1/admin/segmentation").json()["version"] == version


def test_the_document_is_replaced_only_from_its_current_version(api: Api) -> None:
    read = api.call("GET", "/v1/admin/segmentation")
    assert read.status_code == 200
    document = read.json()
    assert {"version", "rfm_window_months", "rfm_map", "points", "lifecycle", "rule_segments"} <= set(document)

    # The same content written back from the version read: accepted, one version up
    replaced = api.call("PUT", "/v1/admin/segmentation", json=document, headers={"If-Match": str(document["version"])})
    assert replaced.status_code == 200, replaced.text
    assert replaced.json() == {**document, "version": document["version"] + 1}
    assert api.call("GET", "/v1/admin/segmentation").json() == replaced.json()

    # A colleague still holding the old version: refused, told the current one
    stale = api.call("PUT", "/v1/admin/segmentation", json=document, headers={"If-Match": str(document["version"])})
    assert stale.status_code == 409, stale.text
    assert stale.json()["code"] == "version_conflict"
    assert stale.json()["version"] == document["version"] + 1

    current = str(document["version"] + 1)
    missing = api.call("PUT", "/v1/admin/segmentation", json=document)
    assert missing.status_code == 400
    assert missing.json()["errors"] == [{"field": "If-Match", "reason": "required"}]
    window = api.call(
        "PUT", "/v1/admin/segmentation", json={**document, "rfm_window_months": 0}, headers={"If-Match": current}
    )
    assert window.status_code == 422
    assert [e["field"] for e in window.json()["errors"]] == ["rfm_window_months"]
    bad_rule = {"segment_id": "bad-rule", "name": "Bad", "rule": {"field": "points_6m", "op": ">", "value": "x"}}
    invalid = api.call(
        "PUT",
        "/v1/admin/segmentation",
        json={**document, "rule_segments": [*document["rule_segments"], bad_rule]},
        headers={"If-Match": current},
    )
    assert invalid.status_code == 422
    assert [e["field"] for e in invalid.json()["errors"]] == [
        f"rule_segments[{len(document['rule_segments'])}].rule.value"
    ]
    assert api.call("GET", "/v1/admin/segmentation").json()["version"] == int(current)


def test_the_catalog_and_the_analytics_answer_before_and_between_refreshes(api: Api) -> None:
    catalog = api.call("GET", "/v1/admin/segments")
    assert catalog.status_code == 200
    ids = [s["segment_id"] for s in catalog.json()["segments"]]
    assert {"rfm:champions", "points:high-spenders", "lifecycle:potential"} <= set(ids)
    assert all(isinstance(s["size"], int) and s["size"] >= 0 for s in catalog.json()["segments"])

    analytics = api.call("GET", "/v1/admin/analytics")
    assert analytics.status_code == 200
    assert set(analytics.json()) == {"run_id", "as_of", "overall", "tiers", "segments"}

    page = api.call("GET", "/v1/admin/segments/lifecycle:potential/members", params={"limit": 1})
    assert page.status_code == 200
    assert len(page.json()["members"]) <= 1


def test_a_member_reads_their_own_segments_and_no_one_else_s(api: Api) -> None:
    mine, theirs = api.enroll(consent=PROFILED), api.enroll(consent=PROFILED)
    path = f"/v1/members/{mine}/segments"

    own = api.call("GET", path, token=f"dev:member:{mine}")
    assert own.status_code == 200, own.text
    assert own.json()["member_id"] == mine

    # Re-evaluation after enrolment is asynchronous (the table's stream): a new member becomes a potential customer
    deadline = time.monotonic() + 20
    while not own.json()["segments"] and time.monotonic() < deadline:
        time.sleep(0.25)
        own = api.call("GET", path, token=f"dev:member:{mine}")
    assert [s["segment_id"] for s in own.json()["segments"]] == ["lifecycle:potential"]
    assert own.json()["segments"][0]["entered_at"]

    other = api.call("GET", path, token=f"dev:member:{theirs}")
    assert other.status_code == 403
    assert api.call("GET", path, token=ADMIN).json() == own.json()
    assert api.call("GET", path, token=SERVICE).status_code == 200


def test_run_now_starts_a_refresh_once_per_idempotency_key(api: Api) -> None:
    key = f"e2e-refresh-{uuid.uuid4().hex}"
    as_of = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    body = {"as_of": as_of.isoformat(), "workers": 2}

    started = api.call("POST", "/v1/admin/segment-refreshes", json=body, headers={"Idempotency-Key": key})

    assert started.status_code == 202, started.text
    run = started.json()
    assert run["run_id"].startswith("manual-")
    assert run["workers"] == 2
    assert run["requested_by"] == ADMIN.rsplit(":", 1)[1]
    assert datetime.fromisoformat(run["as_of"]) == as_of
    assert run["status"]
    assert started.headers["Location"] == f"/v1/admin/segment-refreshes/{run['run_id']}"
    assert "Idempotent-Replayed" not in started.headers

    # The same key again (a retried request): that run, nothing new started
    replay = api.call("POST", "/v1/admin/segment-refreshes", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 200, replay.text
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["run_id"] == run["run_id"]
    assert replay.json()["started_at"] == run["started_at"]

    listed = api.call("GET", "/v1/admin/segment-refreshes", params={"limit": 100})
    assert listed.status_code == 200
    assert [r["run_id"] for r in listed.json()["runs"]].count(run["run_id"]) == 1
    one = api.call("GET", f"/v1/admin/segment-refreshes/{run['run_id']}")
    assert one.status_code == 200
    assert {k: one.json()[k] for k in ("run_id", "as_of", "workers", "requested_by", "started_at")} == {
        k: run[k] for k in ("run_id", "as_of", "workers", "requested_by", "started_at")
    }
