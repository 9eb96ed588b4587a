"""Every route answers what its committed OpenAPI document says. Each operation of openapi.json and
openapi.admin.json is called in-process (the API functions' handlers on the template's resources in moto, after a
segment refresh has run) with a valid request, and with requests it refuses; every body is checked against the
document's schema for the status it came with. The document's objects are read as closed here: a field the document
does not list fails as surely as a missing required field or a wrong type.

The one open object is ErrorBody: a refusal may carry the figures behind it beside code, message and errors
(available and needed points, the refundable amount, the running refresh's run_id, a document's current version).
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from jsonschema import Draft202012Validator
from moto import mock_aws

from devstack.resources import create_resources
from devstack.states import StepFunctionsServer, TemplateJob
from devstack.template import Resolver, load_template
from loyalty import runtime
from loyalty.adapters.step_functions import JobExecutions
from loyalty.points.activities import Purchase
from loyalty.points.members import Consent, Enrollment
from loyalty.points.rewards import Reward, RewardKind
from tests.integration.test_functions_events import load_handler

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
DOCUMENTS = {"members_api": ROOT / "openapi.json", "admin_api": ROOT / "openapi.admin.json"}
FUNCTIONS = {"members_api": "MembersApiFunction", "admin_api": "AdminApiFunction"}
SAMPLE_EVENT = json.loads((ROOT / "events" / "admin_api_list_segments.json").read_text())
OPEN_SCHEMAS = frozenset({"ErrorBody"})

ADMIN = {"sub": "ops-alice", "cognito:groups": "loyalty-admins", "token_use": "id"}
SERVICE = {"sub": "commerce", "cognito:groups": "loyalty-services", "token_use": "id"}


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "documented-answers", 512, "documented-answers"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:documented-answers"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def member_token(member_id: str) -> dict[str, str]:
    return {"sub": f"shopper-{member_id}", "custom:member_id": member_id, "token_use": "id"}


# ---- the documents, objects closed --------------------------------------------------------------------------------


def _closed(node: Any, name: str = "") -> Any:
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    schema = {key: _closed(value) for key, value in node.items()}
    if "properties" in schema and "additionalProperties" not in schema and name not in OPEN_SCHEMAS:
        schema["additionalProperties"] = False
    return schema


@dataclass(frozen=True)
class Document:
    raw: dict[str, Any]
    components: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Document:
        raw = json.loads(path.read_text())
        schemas = raw["components"]["schemas"]
        return cls(raw, {"schemas": {name: _closed(schema, name) for name, schema in schemas.items()}})

    def operations(self) -> set[tuple[str, str]]:
        return {(method.upper(), path) for path, item in self.raw["paths"].items() for method in item}

    def check(self, method: str, path: str, status: int, headers: dict[str, str], body: str) -> None:
        """The answer as documented for its status: no body where none is documented, else JSON that the status's
        schema accepts."""
        responses = self.raw["paths"][path][method.lower()]["responses"]
        assert str(status) in responses, f"{method} {path} answered {status}, not documented: {body}"
        content = responses[str(status)].get("content") or {}
        if not content:
            assert body == "", f"{method} {path} {status} documents no content and sent {body!r}"
            return
        assert headers.get("Content-Type") == "application/json", headers
        schema = {**content["application/json"]["schema"], "components": self.components}
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        problems = [
            f"{'/'.join(map(str, e.absolute_path)) or 'body'}: {e.message}"
            for e in validator.iter_errors(json.loads(body))
        ]
        assert not problems, f"{method} {path} {status}: {problems}"


DOCUMENT = {function: Document.load(path) for function, path in DOCUMENTS.items()}


# ---- the functions, on the template's resources in moto -----------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text) if self.text else None


@dataclass
class World:
    """The API functions and what the seeding made: members with points, a catalog, a refresh that ran, a rule
    segment. `answers` keeps every (function, method, path template, status) checked."""

    handlers: dict[str, ModuleType]
    members: list[str]
    rule_slug: str
    run_id: str
    answers: set[tuple[str, str, str, int]] = field(default_factory=set)
    walked: set[str] = field(default_factory=set)  # the walks run on this world

    def call(
        self,
        function: str,
        method: str,
        path: str,
        parameters: dict[str, str] | None = None,
        *,
        claims: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """Call `path` (a template: /v1/members/{member_id}) and check the answer against the document."""
        parameters = parameters or {}
        actual = path.format(**parameters)
        event = copy.deepcopy(SAMPLE_EVENT)
        all_headers = {"Authorization": "Bearer <token>", **(headers or {})}
        if body is not None:
            all_headers.setdefault("Content-Type", "application/json")
        event.update(
            resource=path,
            path=actual,
            httpMethod=method,
            headers=all_headers,
            multiValueHeaders={k: [v] for k, v in all_headers.items()},
            pathParameters=parameters or None,
            queryStringParameters=query,
            multiValueQueryStringParameters={k: [v] for k, v in query.items()} if query else None,
            body=None if body is None else (body if isinstance(body, str) else json.dumps(body)),
        )
        event["requestContext"].update(resourcePath=path, httpMethod=method, path=f"/prod{actual}")
        event["requestContext"]["authorizer"] = {"claims": claims or ADMIN}
        raw = self.handlers[function].lambda_handler(event, Context())
        answer = Answer(int(raw["statusCode"]), _headers(raw), str(raw.get("body") or ""))
        DOCUMENT[function].check(method, path, answer.status, answer.headers, answer.text)
        self.answers.add((function, method, path, answer.status))
        return answer


def _headers(raw: dict[str, Any]) -> dict[str, str]:
    headers = {k: str(v) for k, v in (raw.get("headers") or {}).items()}
    for name, values in (raw.get("multiValueHeaders") or {}).items():
        headers.setdefault(name, ", ".join(map(str, values)))
    return headers


def _environment(resolver: Resolver) -> dict[str, str]:
    environment: dict[str, str] = {}
    for logical_id in (*FUNCTIONS.values(), "SegmentRefreshFunction"):
        for name, value in TEMPLATE.function(logical_id).environment.items():
            environment[name] = str(resolver.resolve(value))
    return environment


def _purchase(member_id: str, amount: str, days_ago: int) -> None:
    purchase = Purchase(
        order_id=f"seed-{uuid.uuid4().hex[:12]}",
        amount=Decimal(amount),
        currency="USD",
        occurred_at=datetime.now(UTC) - timedelta(days=days_ago),
    )
    assert runtime.loyalty_service().purchase(member_id, purchase).status == 201


@contextmanager
def _step_functions() -> Iterator[StepFunctionsServer]:
    server = StepFunctionsServer()
    try:
        yield server
    finally:
        server.stop()


def _refresh_job(server: StepFunctionsServer, functions: dict[str, ModuleType]) -> TemplateJob:
    """The template's refresh state machine on moto's interpreter, its tasks run by the refresh function; the
    admin function and the refresh function start and ask about its executions."""
    refresh_function = load_handler("segment_refresh")
    job = TemplateJob(
        server,
        TEMPLATE,
        "SegmentRefreshStateMachine",
        {"SegmentRefreshFunction": lambda event: refresh_function.lambda_handler(event, Context())},
        stack_name=f"documented-answers-{uuid.uuid4().hex[:8]}",
    )
    executions = JobExecutions(server.client, job.state_machine_arn)
    for module in (functions["admin_api"], refresh_function):
        module.refresh_executions = lambda: executions  # type: ignore[attr-defined]
    return job


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with mock_aws(), pytest.MonkeyPatch.context() as patch, _step_functions() as server:
        resolver = Resolver(TEMPLATE, "documented-answers")
        create_resources(resolver, lambda service: boto3.client(service, region_name="us-east-1"))
        environment = _environment(resolver)
        for name, value in environment.items():
            patch.setenv(name, value)
        runtime.reset()
        service = runtime.loyalty_service()
        service.store.put_reward(
            Reward(reward_id="ten-points", name="Ten-point treat", kind=RewardKind.FREE_PRODUCT, cost_points=10)
        )
        service.store.put_reward(
            Reward(
                reward_id="ten-off",
                name="$10 off",
                kind=RewardKind.DISCOUNT_FIXED,
                cost_points=5000,
                value=Decimal(10),
                currency="USD",
            )
        )
        now = datetime.now(UTC)
        for reward_id, terms in {
            "sold-out": {"stock": 0},
            "rouge-only": {"min_tier": "Rouge"},
            "once": {"per_member_limit": 1, "limit_period": "year"},
            "next-year": {"valid_from": now + timedelta(days=365)},
            "last-year": {"valid_until": now - timedelta(days=365)},
            "ocean": {"kind": RewardKind.DONATION, "cause": "Ocean clean-up"},
            "night": {
                "kind": RewardKind.EXPERIENCE,
                "experience": {"starts_at": now + timedelta(days=30), "place": "Lyon"},
                "stock": 5,
            },
        }.items():
            terms = {"kind": RewardKind.FREE_PRODUCT, **terms}
            service.store.put_reward(Reward(reward_id=reward_id, name=reward_id, cost_points=1, **terms))
        members = []
        # Two big spenders: a one-member page of their rule segment always has a next page, whichever shards hold them.
        for purchases in ([(40, "120.00"), (20, "80.50")], [(10, "35.00")], [(300, "12.00")], [(5, "150.00")]):
            enrollment = Enrollment(external_id=f"seed-{uuid.uuid4().hex[:12]}", consent=Consent(profiling=True))
            member_id = str(service.enroll(enrollment).body["member_id"])
            for days_ago, amount in purchases:
                _purchase(member_id, amount, days_ago)
            members.append(member_id)
        world = World({name: load_handler(name) for name in FUNCTIONS}, members, "big-spenders", "")
        job = _refresh_job(server, world.handlers)
        rule = {"name": "Big spenders", "rule": {"field": "spend_12m", "op": ">=", "value": 100}}
        assert (
            world.call(
                "admin_api",
                "PUT",
                "/v1/admin/segment-definitions/{segment_id}",
                {"segment_id": world.rule_slug},
                body=rule,
            ).status
            == 201
        )
        started = world.call(
            "admin_api",
            "POST",
            "/v1/admin/segment-refreshes",
            body={"workers": 2},
            headers={"Idempotency-Key": "seed-refresh"},
        )
        assert started.status == 202, started.text
        world.run_id = started.body["run_id"]
        job.wait(JobExecutions(server.client, job.state_machine_arn).execution_arn(world.run_id))
        assert runtime.segmentation_service().refresh_run(world.run_id)["status"] == "complete"
        yield world
        job.close()
        runtime.reset()


# ---- every operation: a valid request, then requests it refuses ---------------------------------------------------

MEMBER = "/v1/members/{member_id}"
ACTIVITIES = "/v1/members/{member_id}/activities"
REDEMPTIONS = "/v1/members/{member_id}/redemptions"
DEFINITION = "/v1/admin/segment-definitions/{segment_id}"
REFRESHES = "/v1/admin/segment-refreshes"
PROGRAM = "/v1/admin/program"
VERSIONS = PROGRAM + "/versions"
VERSION = VERSIONS + "/{version}"
UNKNOWN_MEMBER = {"member_id": "m_" + "0" * 26}
PROFILE = MEMBER + "/profile"
CONSENTS = MEMBER + "/consents"
CONSENT = CONSENTS + "/{channel}"


def _members(world: World) -> None:
    external_id = f"cust-{uuid.uuid4().hex[:12]}"
    assert (
        world.call("members_api", "POST", "/v1/members", claims=SERVICE, body={"external_id": external_id}).status
        == 201
    )
    again = world.call("members_api", "POST", "/v1/members", claims=SERVICE, body={"external_id": external_id})
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    shopper = {"sub": "someone", "token_use": "id"}
    assert (
        world.call("members_api", "POST", "/v1/members", claims=shopper, body={"external_id": "another"}).status == 403
    )
    assert world.call("members_api", "POST", "/v1/members", claims=SERVICE, body={"external_id": ""}).status == 422
    assert world.call("members_api", "POST", "/v1/members", claims=SERVICE, body="{", headers={}).status == 400
    plain = {"Content-Type": "text/plain"}
    assert world.call("members_api", "POST", "/v1/members", claims=SERVICE, body="{}", headers=plain).status == 415
    huge = json.dumps({"external_id": "x" * (1024 * 1024 + 1)})
    assert world.call("members_api", "POST", "/v1/members", claims=SERVICE, body=huge).status == 413


def _member(world: World) -> None:
    member_id = world.members[0]
    assert world.call("members_api", "GET", MEMBER, {"member_id": member_id}).status == 200
    assert (
        world.call("members_api", "GET", MEMBER, {"member_id": member_id}, claims=member_token(member_id)).status == 200
    )
    other = member_token(world.members[1])
    assert world.call("members_api", "GET", MEMBER, {"member_id": member_id}, claims=other).status == 403
    assert world.call("members_api", "GET", MEMBER, UNKNOWN_MEMBER).status == 404
    assert world.call("members_api", "GET", MEMBER, {"member_id": "nobody"}).status == 422


def _activities(world: World) -> None:
    member = {"member_id": world.members[1]}
    order_id = f"o-{uuid.uuid4().hex[:12]}"
    purchase = {"type": "purchase", "order_id": order_id, "amount": "60.00", "currency": "USD"}
    assert world.call("members_api", "POST", ACTIVITIES, member, claims=SERVICE, body=purchase).status == 201
    refund = {"type": "refund", "order_id": order_id, "refund_id": "r-1", "amount": "20.00"}
    refunded = world.call("members_api", "POST", ACTIVITIES, member, claims=SERVICE, body=refund)
    assert refunded.status == 201 and refunded.body["points_reversed"] > 0
    too_much = {"type": "refund", "order_id": order_id, "refund_id": "r-2", "amount": "900.00"}
    assert world.call("members_api", "POST", ACTIVITIES, member, claims=SERVICE, body=too_much).status == 409
    review = {"type": "review", "reference": "sku-1"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert world.call("members_api", "POST", ACTIVITIES, member, claims=SERVICE, body=review, headers=key).status == 201
    replayed = world.call("members_api", "POST", ACTIVITIES, member, claims=SERVICE, body=review, headers=key)
    assert replayed.status == 201 and replayed.headers.get("Idempotent-Replayed") == "true"
    adjustment = {"type": "adjustment", "points": 0, "reason": "goodwill reversed"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert world.call("members_api", "POST", ACTIVITIES, member, body=adjustment, headers=key).status == 422
    adjustment["points"] = -900
    overdrawn = world.call("members_api", "POST", ACTIVITIES, member, body=adjustment, headers=key)
    assert overdrawn.status == 409 and overdrawn.body["code"] == "insufficient_points"
    adjustment["points"] = 25
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert world.call("members_api", "POST", ACTIVITIES, member, body=adjustment, headers=key).status == 201
    member_claims = member_token(member["member_id"])
    assert world.call("members_api", "POST", ACTIVITIES, member, claims=member_claims, body=review).status == 403
    elsewhere = {**purchase, "order_id": f"o-{uuid.uuid4().hex[:12]}"}
    assert world.call("members_api", "POST", ACTIVITIES, UNKNOWN_MEMBER, claims=SERVICE, body=elsewhere).status == 404
    assert world.call("members_api", "POST", ACTIVITIES, member, claims=SERVICE, body={"type": "nap"}).status == 422


def _ledger(world: World) -> None:
    member = {"member_id": world.members[0]}
    page = world.call("members_api", "GET", MEMBER + "/ledger", member, query={"limit": "1"})
    assert page.status == 200 and page.body["next_cursor"]
    last = world.call("members_api", "GET", MEMBER + "/ledger", member, query={"cursor": page.body["next_cursor"]})
    assert last.status == 200 and last.body["next_cursor"] is None
    assert world.call("members_api", "GET", MEMBER + "/ledger", UNKNOWN_MEMBER).status == 404
    assert world.call("members_api", "GET", MEMBER + "/ledger", member, query={"limit": "0"}).status == 422


def _prediction(world: World) -> None:
    member = {"member_id": world.members[0]}
    assert world.call("members_api", "GET", MEMBER + "/prediction", member, claims=SERVICE).status == 200
    mine = member_token(member["member_id"])
    assert world.call("members_api", "GET", MEMBER + "/prediction", member, claims=mine).status == 403
    assert world.call("members_api", "GET", MEMBER + "/prediction", UNKNOWN_MEMBER).status == 404
    unprofiled = {"member_id": _new_member(world)}  # enrolled without stating consent: no profiling
    refused = world.call("members_api", "GET", MEMBER + "/prediction", unprofiled, claims=SERVICE)
    assert refused.status == 409 and refused.body["code"] == "consent_required"


def _new_member(world: World, **consent: bool) -> str:
    """A member enrolled for one walk alone, through the API, with `consent` as given at enrolment."""
    body = {"external_id": f"cust-{uuid.uuid4().hex[:12]}", "profile": {"first_name": "Ada", "country": "FR"}}
    enrolled = world.call("members_api", "POST", "/v1/members", claims=SERVICE, body={**body, "consent": consent})
    assert enrolled.status == 201, enrolled.text
    return str(enrolled.body["member_id"])


def _profile(world: World) -> None:
    member = {"member_id": _new_member(world)}
    mine = member_token(member["member_id"])
    key = {"Idempotency-Key": uuid.uuid4().hex}
    patch = {"email": "ada@example.com", "country": None}
    changed = world.call("members_api", "PATCH", PROFILE, member, claims=mine, body=patch, headers=key)
    assert changed.status == 200 and changed.body["profile"] == {"first_name": "Ada", "email": "ada@example.com"}
    again = world.call("members_api", "PATCH", PROFILE, member, claims=mine, body=patch, headers=key)
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true"
    other = {"email": "grace@example.com"}
    reused = world.call("members_api", "PATCH", PROFILE, member, claims=mine, body=other, headers=key)
    assert reused.status == 422 and reused.body["code"] == "idempotency_key_reused"
    merge_patch = {"Content-Type": "application/merge-patch+json"}
    by_staff = world.call(
        "members_api", "PATCH", PROFILE, member, claims=SERVICE, body={"first_name": "Grace"}, headers=merge_patch
    )
    assert by_staff.status == 200 and by_staff.body["profile"]["first_name"] == "Grace"
    invalid = world.call("members_api", "PATCH", PROFILE, member, body={"email": "nope", "nickname": "A"})
    assert invalid.status == 422 and {e["field"] for e in invalid.body["errors"]} == {"email", "nickname"}
    assert world.call("members_api", "PATCH", PROFILE, member, body="{", headers={}).status == 400
    someone_else = member_token(world.members[1])
    assert world.call("members_api", "PATCH", PROFILE, member, claims=someone_else, body=other).status == 403
    assert world.call("members_api", "PATCH", PROFILE, UNKNOWN_MEMBER, body=other).status == 404


def _consents(world: World) -> None:
    member_id = _new_member(world, email=True)
    email = {"member_id": member_id, "channel": "email"}
    profiling = {"member_id": member_id, "channel": "profiling"}
    mine = member_token(member_id)
    granted = world.call("members_api", "PUT", CONSENT, profiling, claims=mine, body={"granted": True})
    assert granted.status == 200 and granted.body["changed"] and granted.body["change"]["source"] == "member"
    same = world.call("members_api", "PUT", CONSENT, profiling, claims=mine, body={"granted": True})
    assert same.status == 200 and not same.body["changed"] and same.body["change"] is None
    withdrawn = world.call("members_api", "PUT", CONSENT, email, claims=SERVICE, body={"granted": False})
    assert withdrawn.status == 200 and withdrawn.body["change"]["source"] == "service"
    listed = world.call("members_api", "GET", CONSENTS, {"member_id": member_id}, claims=mine, query={"limit": "2"})
    assert listed.status == 200 and listed.body["consent"]["profiling"] and not listed.body["consent"]["email"]
    assert [(c["channel"], c["granted"]) for c in listed.body["history"]] == [("email", False), ("profiling", True)]
    rest = world.call(
        "members_api", "GET", CONSENTS, {"member_id": member_id}, query={"cursor": listed.body["next_cursor"]}
    )
    assert rest.status == 200 and [c["source"] for c in rest.body["history"]] == ["enrollment"]
    assert world.call("members_api", "PUT", CONSENT, email, body={"granted": "yes"}).status == 422
    unknown_channel = {"member_id": member_id, "channel": "pigeon"}
    assert world.call("members_api", "PUT", CONSENT, unknown_channel, body={"granted": True}).status == 422
    assert world.call("members_api", "PUT", CONSENT, email, body="[", headers={}).status == 400
    someone_else = member_token(world.members[1])
    assert world.call("members_api", "PUT", CONSENT, email, claims=someone_else, body={"granted": True}).status == 403
    assert world.call("members_api", "GET", CONSENTS, {"member_id": member_id}, claims=someone_else).status == 403
    nobody = {**UNKNOWN_MEMBER, "channel": "email"}
    assert world.call("members_api", "PUT", CONSENT, nobody, body={"granted": True}).status == 404
    assert world.call("members_api", "GET", CONSENTS, UNKNOWN_MEMBER).status == 404
    assert world.call("members_api", "GET", CONSENTS, {"member_id": member_id}, query={"limit": "0"}).status == 422


def _redemptions(world: World) -> None:
    member = {"member_id": world.members[0]}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    redeemed = world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": "ten-points"}, headers=key)
    assert redeemed.status == 201 and redeemed.body["voucher_code"]
    again = world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": "ten-points"}, headers=key)
    assert again.status == 201 and again.body == redeemed.body
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": "once"}, headers=key).status == 201
    for reward_id, code in [
        ("ten-off", "insufficient_points"),
        ("sold-out", "out_of_stock"),
        ("rouge-only", "tier_too_low"),
        ("once", "limit_reached"),
        ("next-year", "reward_not_yet_valid"),
        ("last-year", "reward_expired"),
    ]:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        refused = world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": reward_id}, headers=key)
        assert (refused.status, refused.body["code"]) == (409, code), refused.text
        replayed = world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": reward_id}, headers=key)
        assert replayed.body == refused.body and replayed.headers.get("Idempotent-Replayed") == "true"
    donation = {"Idempotency-Key": uuid.uuid4().hex}
    donated = world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": "ocean"}, headers=donation)
    assert donated.status == 201 and "voucher_code" not in donated.body
    seat = {"Idempotency-Key": uuid.uuid4().hex}
    booked = world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": "night"}, headers=seat)
    assert (
        booked.status == 201 and booked.body["voucher_code"] and booked.body["reward"]["experience"]["place"] == "Lyon"
    )
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": "gone"}, headers=key).status == 404
    assert world.call("members_api", "POST", REDEMPTIONS, member, body={"reward_id": "ten-points"}).status == 400


def _member_segments(world: World) -> None:
    member = {"member_id": world.members[0]}
    segments = world.call("members_api", "GET", MEMBER + "/segments", member, claims=member_token(member["member_id"]))
    assert segments.status == 200 and f"rule:{world.rule_slug}" in {s["segment_id"] for s in segments.body["segments"]}
    assert world.call("members_api", "GET", MEMBER + "/segments", UNKNOWN_MEMBER).status == 404


def _rewards(world: World) -> None:
    rewards = world.call("members_api", "GET", "/v1/rewards", claims=member_token(world.members[2]))
    assert rewards.status == 200
    offered = {r["reward_id"]: r["tier_allows"] for r in rewards.body["rewards"]}
    assert offered == {
        "ten-points": True,
        "ten-off": True,
        "rouge-only": False,
        "once": True,
        "ocean": True,
        "night": True,
    }
    assert world.call("members_api", "GET", "/v1/rewards", claims=SERVICE).status == 200
    unknown = member_token(UNKNOWN_MEMBER["member_id"])  # a token naming no member sees what anyone sees
    anyone = world.call("members_api", "GET", "/v1/rewards", claims=unknown)
    assert anyone.status == 200 and "rouge-only" in {r["reward_id"] for r in anyone.body["rewards"]}


def _members_document(world: World) -> None:
    assert world.call("members_api", "GET", "/v1/openapi.json", claims={}).status == 200


def _segments(world: World) -> None:
    catalog = world.call("admin_api", "GET", "/v1/admin/segments")
    assert catalog.status == 200 and any(s["size"] > 0 for s in catalog.body["segments"])
    assert world.call("admin_api", "GET", "/v1/admin/segments", claims=SERVICE).status == 403
    rule_segment = {"segment_id": f"rule:{world.rule_slug}"}
    detail = world.call("admin_api", "GET", "/v1/admin/segments/{segment_id}", rule_segment)
    assert detail.status == 200 and detail.body["definition"] and detail.body["history"]
    lifecycle = world.call("admin_api", "GET", "/v1/admin/segments/{segment_id}", {"segment_id": "lifecycle:new"})
    assert lifecycle.status == 200 and lifecycle.body["definition"] is None
    unknown = {"segment_id": "rule:nothing-here"}
    assert world.call("admin_api", "GET", "/v1/admin/segments/{segment_id}", unknown).status == 404
    assert world.call("admin_api", "GET", "/v1/admin/segments/{segment_id}", {"segment_id": "x"}).status == 422
    members = world.call(
        "admin_api", "GET", "/v1/admin/segments/{segment_id}/members", rule_segment, query={"limit": "1"}
    )
    assert members.status == 200 and members.body["members"] and members.body["next_cursor"]
    assert world.call("admin_api", "GET", "/v1/admin/segments/{segment_id}/members", unknown).status == 404


def _definitions(world: World) -> None:
    listed = world.call("admin_api", "GET", "/v1/admin/segment-definitions")
    assert listed.status == 200 and listed.body["segments"]
    slug = {"segment_id": f"vip-{uuid.uuid4().hex[:8]}"}
    rule = {"name": "VIB", "rule": {"all": [{"field": "tier", "op": "=", "value": "VIB"}]}}
    created = world.call("admin_api", "PUT", DEFINITION, slug, body=rule)
    assert created.status == 201 and created.headers.get("Location")
    assert world.call("admin_api", "PUT", DEFINITION, slug, body={**rule, "description": "Tier VIB"}).status == 200
    wrong = {**rule, "rule": {"all": [{"field": "tier", "op": "=", "value": 3}]}}
    assert world.call("admin_api", "PUT", DEFINITION, slug, body=wrong).status == 422
    assert world.call("admin_api", "PUT", DEFINITION, slug, body={**rule, "segment_id": "other"}).status == 422
    assert world.call("admin_api", "PUT", DEFINITION, slug, body="[", headers={}).status == 400
    assert world.call("admin_api", "DELETE", DEFINITION, slug).status == 204
    assert world.call("admin_api", "DELETE", DEFINITION, slug).status == 404
    assert world.call("admin_api", "DELETE", DEFINITION, slug, claims=SERVICE).status == 403


def _segmentation(world: World) -> None:
    document = world.call("admin_api", "GET", "/v1/admin/segmentation")
    assert document.status == 200
    version = {"If-Match": str(document.body["version"])}
    replaced = world.call("admin_api", "PUT", "/v1/admin/segmentation", body=document.body, headers=version)
    assert replaced.status == 200 and replaced.body["version"] == document.body["version"] + 1
    stale = world.call("admin_api", "PUT", "/v1/admin/segmentation", body=document.body, headers=version)
    assert stale.status == 409 and stale.body["version"] == replaced.body["version"]
    broken = {**document.body, "rule_segments": "none"}
    assert world.call("admin_api", "PUT", "/v1/admin/segmentation", body=broken, headers=version).status == 422
    assert world.call("admin_api", "PUT", "/v1/admin/segmentation", body=document.body).status == 400


def _program(world: World) -> None:
    read = world.call("admin_api", "GET", PROGRAM)
    assert read.status == 200
    version = read.body["version"]
    edited = {**read.body, "sku_multipliers": {"SKU-GIFTSET": "3"}}
    headers = {"If-Match": str(version), "Idempotency-Key": uuid.uuid4().hex}
    replaced = world.call("admin_api", "PUT", PROGRAM, body=edited, headers=headers)
    assert replaced.status == 200, replaced.text
    assert (replaced.body["version"], replaced.body["replaced_by"]) == (version + 1, ADMIN["sub"])
    again = world.call("admin_api", "PUT", PROGRAM, body=edited, headers=headers)
    assert again.status == 200 and again.headers.get("Idempotent-Replayed") == "true" and again.body == replaced.body
    stale = world.call("admin_api", "PUT", PROGRAM, body=edited, headers={"If-Match": str(version)})
    assert stale.status == 409 and stale.body["version"] == version + 1
    current = {"If-Match": str(version + 1)}
    broken = {**edited, "points_per_unit": {"usd": "1"}, "expiry": {"months": 0}, "colour": "red"}
    refused = world.call("admin_api", "PUT", PROGRAM, body=broken, headers=current)
    assert refused.status == 422
    assert {e["field"] for e in refused.body["errors"]} == {"points_per_unit", "expiry.months", "colour"}
    assert world.call("admin_api", "PUT", PROGRAM, body=edited).status == 400  # no If-Match
    assert world.call("admin_api", "PUT", PROGRAM, body="{", headers=current).status == 400
    assert world.call("admin_api", "PUT", PROGRAM, body=edited, headers=current, claims=SERVICE).status == 403
    assert world.call("admin_api", "GET", PROGRAM, claims=SERVICE).status == 403
    assert world.call("admin_api", "GET", PROGRAM).body == replaced.body  # the refusals left it in force


def _program_versions(world: World) -> None:
    in_force = world.call("admin_api", "GET", PROGRAM).body
    page = world.call("admin_api", "GET", VERSIONS, query={"limit": "1"})
    assert page.status == 200 and page.body["versions"] == [in_force]
    if in_force["version"] > 1:
        rest = world.call("admin_api", "GET", VERSIONS, query={"cursor": page.body["next_cursor"]})
        assert rest.status == 200 and rest.body["versions"][-1]["version"] == 1
    assert world.call("admin_api", "GET", VERSIONS, query={"limit": "0"}).status == 422
    assert world.call("admin_api", "GET", VERSIONS, query={"cursor": "bm90IGEgY3Vyc29y"}).status == 422
    assert world.call("admin_api", "GET", VERSIONS, claims=SERVICE).status == 403
    one = world.call("admin_api", "GET", VERSION, {"version": str(in_force["version"])})
    assert one.status == 200 and one.body == in_force
    assert world.call("admin_api", "GET", VERSION, {"version": "999999"}).status == 404
    assert world.call("admin_api", "GET", VERSION, {"version": "0"}).status == 422
    assert world.call("admin_api", "GET", VERSION, {"version": "1"}, claims=SERVICE).status == 403


def _refreshes(world: World) -> None:
    runs = world.call("admin_api", "GET", REFRESHES, query={"limit": "5"})
    assert runs.status == 200 and runs.body["runs"][0]["run_id"] == world.run_id
    run = world.call("admin_api", "GET", REFRESHES + "/{run_id}", {"run_id": world.run_id})
    assert run.status == 200 and run.body["status"] == "complete" and run.body["cut_points"]
    assert world.call("admin_api", "GET", REFRESHES + "/{run_id}", {"run_id": "never-ran"}).status == 404
    replayed = world.call(
        "admin_api", "POST", REFRESHES, body={"workers": 2}, headers={"Idempotency-Key": "seed-refresh"}
    )
    assert replayed.status == 200 and replayed.headers.get("Idempotent-Replayed") == "true"
    key = {"Idempotency-Key": uuid.uuid4().hex}
    started = world.call("admin_api", "POST", REFRESHES, headers=key)
    assert started.status == 202 and started.body["status"] == "scanning"
    busy = world.call("admin_api", "POST", REFRESHES, body={}, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert busy.status == 409 and busy.body["run_id"] == started.body["run_id"]
    assert world.call("admin_api", "POST", REFRESHES, body={"workers": 0}, headers=key).status == 422


def _analytics(world: World) -> None:
    analytics = world.call("admin_api", "GET", "/v1/admin/analytics")
    assert analytics.status == 200 and analytics.body["run_id"] == world.run_id and analytics.body["overall"]


CATALOG = "/v1/admin/rewards"
REWARD = CATALOG + "/{reward_id}"
STOCK = REWARD + "/stock"


def _catalog(world: World) -> None:
    page = world.call("admin_api", "GET", CATALOG, query={"limit": "2"})
    assert page.status == 200 and len(page.body["rewards"]) == 2 and page.body["next_cursor"]
    rest = world.call("admin_api", "GET", CATALOG, query={"cursor": page.body["next_cursor"]})
    assert rest.status == 200 and {r["reward_id"] for r in rest.body["rewards"]} >= {"sold-out"}  # out of stock too
    assert world.call("admin_api", "GET", CATALOG, query={"limit": "0"}).status == 422
    assert world.call("admin_api", "GET", CATALOG, query={"cursor": "bm9wZQ"}).status == 422
    assert world.call("admin_api", "GET", CATALOG, claims=SERVICE).status == 403


def _reward(world: World) -> None:
    slug = {"reward_id": f"gift-{uuid.uuid4().hex[:8]}"}
    terms = {"name": "Gift", "kind": "discount_percent", "percent": 15, "cost_points": 300, "stock": 5}
    created = world.call("admin_api", "PUT", REWARD, slug, body=terms)
    assert created.status == 201 and created.body["version"] == 1 and created.headers.get("Location")
    read = world.call("admin_api", "GET", REWARD, slug)
    assert read.status == 200 and read.body == created.body
    taken = world.call("admin_api", "PUT", REWARD, slug, body=terms)
    assert taken.status == 409 and taken.body["version"] == 1
    version = {"If-Match": "1"}
    replaced = world.call("admin_api", "PUT", REWARD, slug, body={**read.body, "cost_points": 250}, headers=version)
    assert replaced.status == 200 and (replaced.body["version"], replaced.body["stock"]) == (2, 5)
    stale = world.call("admin_api", "PUT", REWARD, slug, body=terms, headers=version)
    assert stale.status == 409 and stale.body["version"] == 2
    ghost = {"reward_id": "never-made"}
    assert world.call("admin_api", "PUT", REWARD, ghost, body=terms, headers=version).status == 404
    invalid = world.call("admin_api", "PUT", REWARD, slug, body={**terms, "kind": "discount_fixed", "cost_points": 0})
    assert invalid.status == 422
    assert {e["field"] for e in invalid.body["errors"]} == {"cost_points", "value", "currency", "percent"}
    assert world.call("admin_api", "PUT", REWARD, slug, body={**terms, "reward_id": "other"}).status == 422
    assert world.call("admin_api", "PUT", REWARD, slug, body="{", headers={}).status == 400
    assert world.call("admin_api", "PUT", REWARD, slug, body=terms, claims=SERVICE).status == 403
    assert world.call("admin_api", "GET", REWARD, {"reward_id": "Not A Slug"}).status == 422
    assert world.call("admin_api", "GET", REWARD, ghost).status == 404
    retired = world.call("admin_api", "DELETE", REWARD, slug)
    assert retired.status == 200 and retired.body["active"] is False and retired.body["version"] == 3
    assert world.call("admin_api", "DELETE", REWARD, ghost).status == 404
    assert world.call("admin_api", "DELETE", REWARD, slug, claims=SERVICE).status == 403


def _stock(world: World) -> None:
    slug = {"reward_id": f"stocked-{uuid.uuid4().hex[:8]}"}
    terms = {"name": "Stocked", "kind": "free_product", "cost_points": 50, "stock": 3, "active": False}
    assert world.call("admin_api", "PUT", REWARD, slug, body=terms).status == 201
    added = world.call("admin_api", "POST", STOCK, slug, body={"add": 4})
    assert added.status == 200 and added.body["stock"] == 7
    below = world.call("admin_api", "POST", STOCK, slug, body={"add": -8})
    assert below.status == 409 and (below.body["code"], below.body["stock"]) == ("stock_conflict", 7)
    unlimited = world.call("admin_api", "POST", STOCK, slug, body={"unlimited": True})
    assert unlimited.status == 200 and "stock" not in unlimited.body
    assert world.call("admin_api", "POST", STOCK, slug, body={"set": 2, "add": 1}).status == 422
    assert world.call("admin_api", "POST", STOCK, {"reward_id": "never-made"}, body={"set": 1}).status == 404
    assert world.call("admin_api", "POST", STOCK, slug, body="[", headers={}).status == 400
    assert world.call("admin_api", "POST", STOCK, slug, body={"set": 1}, claims=SERVICE).status == 403


def _admin_document(world: World) -> None:
    assert world.call("admin_api", "GET", "/v1/admin/openapi.json").status == 200
    assert world.call("admin_api", "GET", "/v1/admin/openapi.json", claims=SERVICE).status == 403


OPERATIONS: dict[tuple[str, str, str], Callable[[World], None]] = {
    ("members_api", "POST", "/v1/members"): _members,
    ("members_api", "GET", MEMBER): _member,
    ("members_api", "POST", ACTIVITIES): _activities,
    ("members_api", "GET", MEMBER + "/ledger"): _ledger,
    ("members_api", "GET", MEMBER + "/prediction"): _prediction,
    ("members_api", "PATCH", PROFILE): _profile,
    ("members_api", "PUT", CONSENT): _consents,
    ("members_api", "GET", CONSENTS): _consents,
    ("members_api", "POST", REDEMPTIONS): _redemptions,
    ("members_api", "GET", MEMBER + "/segments"): _member_segments,
    ("members_api", "GET", "/v1/rewards"): _rewards,
    ("members_api", "GET", "/v1/openapi.json"): _members_document,
    ("admin_api", "GET", "/v1/admin/segments"): _segments,
    ("admin_api", "GET", "/v1/admin/segments/{segment_id}"): _segments,
    ("admin_api", "GET", "/v1/admin/segments/{segment_id}/members"): _segments,
    ("admin_api", "GET", "/v1/admin/segment-definitions"): _definitions,
    ("admin_api", "PUT", DEFINITION): _definitions,
    ("admin_api", "DELETE", DEFINITION): _definitions,
    ("admin_api", "GET", "/v1/admin/segmentation"): _segmentation,
    ("admin_api", "PUT", "/v1/admin/segmentation"): _segmentation,
    ("admin_api", "GET", REFRESHES): _refreshes,
    ("admin_api", "POST", REFRESHES): _refreshes,
    ("admin_api", "GET", REFRESHES + "/{run_id}"): _refreshes,
    ("admin_api", "GET", "/v1/admin/analytics"): _analytics,
    ("admin_api", "GET", PROGRAM): _program,
    ("admin_api", "PUT", PROGRAM): _program,
    ("admin_api", "GET", VERSIONS): _program_versions,
    ("admin_api", "GET", VERSION): _program_versions,
    ("admin_api", "GET", CATALOG): _catalog,
    ("admin_api", "GET", REWARD): _reward,
    ("admin_api", "PUT", REWARD): _reward,
    ("admin_api", "DELETE", REWARD): _reward,
    ("admin_api", "POST", STOCK): _stock,
    ("admin_api", "GET", "/v1/admin/openapi.json"): _admin_document,
}
# Refresh runs last: the run it starts is still going, as the 409 needs.
WALKS = sorted(dict.fromkeys(OPERATIONS.values()), key=lambda walk: walk is _refreshes)


def test_every_documented_operation_is_walked() -> None:
    documented = {(function, method, path) for function, doc in DOCUMENT.items() for method, path in doc.operations()}
    assert documented == set(OPERATIONS)


@pytest.mark.parametrize("walk", WALKS, ids=lambda walk: walk.__name__.strip("_"))
def test_every_answer_is_the_documented_shape_for_its_status(world: World, walk: Callable[[World], None]) -> None:
    walk(world)
    world.walked.add(walk.__name__)


def test_every_operation_gave_its_documented_success(world: World) -> None:
    """Each operation answered at least its first documented 2xx, over every walk (those this world has not run yet,
    as when the walks ran on another worker's world or the test runs alone, are run here)."""
    for walk in WALKS:
        if walk.__name__ not in world.walked:
            walk(world)
            world.walked.add(walk.__name__)
    missing = []
    for function, method, path in OPERATIONS:
        responses = DOCUMENT[function].raw["paths"][path][method.lower()]["responses"]
        successes = {int(status) for status in responses if status.startswith("2")}
        given = {status for (f, m, p, status) in world.answers if (f, m, p) == (function, method, path)}
        if not successes <= given:
            missing.append(f"{method} {path}: {sorted(successes - given)} never answered")
    assert not missing


@pytest.mark.parametrize(
    "broken",
    [
        {"member_id": "m_1", "segments": [], "tier": "VIB"},
        {"member_id": "m_1", "segments": [{"segment_id": "rfm:lost", "entered_at": "2026-01-01", "score": 1}]},
        {"member_id": "m_1"},
        {"member_id": 1, "segments": []},
    ],
    ids=["undocumented-field", "undocumented-nested-field", "missing-field", "wrong-type"],
)
def test_the_check_refuses_a_body_the_document_does_not_describe(broken: dict[str, Any]) -> None:
    document, json_headers = DOCUMENT["members_api"], {"Content-Type": "application/json"}
    valid = {"member_id": "m_1", "segments": [{"segment_id": "rfm:lost", "entered_at": "2026-01-01"}]}
    document.check("GET", MEMBER + "/segments", 200, json_headers, json.dumps(valid))

    with pytest.raises(AssertionError):
        document.check("GET", MEMBER + "/segments", 200, json_headers, json.dumps(broken))
    with pytest.raises(AssertionError, match="not documented"):
        document.check("GET", MEMBER + "/segments", 409, json_headers, json.dumps(valid))
