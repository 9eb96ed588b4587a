"""The prediction over the API routes, handlers in-process on the template's resources in moto: staff read a member's
predictions with the model the last refresh published (expected spend where the member has enough history), and
admins read the model a refresh run fitted."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.resources import create_resources
from devstack.template import Resolver, load_template
from loyalty import runtime
from loyalty.points.activities import Purchase
from loyalty.points.members import Consent, ConsentChannel, Enrollment
from loyalty.segments.ports import PublishedCutPoints
from loyalty.segments.prediction import BgNbdParameters, GammaGammaParameters, PredictionModel
from tests.integration.test_functions_events import load_handler

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
SAMPLE_EVENT = json.loads((ROOT / "events" / "admin_api_list_segments.json").read_text())  # an admin's GET

MODEL = PredictionModel(
    run_id="run-predictions",
    as_of="2026-03-15T00:00:00Z",
    bgnbd=BgNbdParameters(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426),  # CDNOW's (FHL 2005), in days
    gamma_gamma=GammaGammaParameters(p=6.25, q=3.74, v=15.44),  # CDNOW's (Fader and Hardie)
    sample_members=2357,
    sample_repeaters=946,
    sample_rate_log2=0,
    log_likelihood=-9582.4,
)


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "prediction-routes", 512, "prediction-routes"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:prediction-routes"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _handler(function_logical_id: str) -> ModuleType:
    return load_handler(TEMPLATE.function(function_logical_id).handler_file.parent.name)


def _get(function: ModuleType, resource: str, path: str, parameters: dict[str, str]) -> tuple[int, Any]:
    event = copy.deepcopy(SAMPLE_EVENT)
    event.update(resource=resource, path=path, pathParameters=parameters)
    event["requestContext"].update(resourcePath=resource, path=f"/prod{path}")
    answer = function.lambda_handler(event, Context())
    return int(answer["statusCode"]), json.loads(answer["body"])


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The template's resources in moto, the functions' environment as the template resolves it."""
    with mock_aws():
        resolver = Resolver(TEMPLATE, "prediction")
        create_resources(resolver, lambda service: boto3.client(service, region_name="us-east-1"))
        for name, value in TEMPLATE.function("MembersApiFunction").environment.items():
            monkeypatch.setenv(name, str(resolver.resolve(value)))
        runtime.reset()
        yield
        runtime.reset()


def _member(purchases: list[tuple[int, str]], *, profiling: bool = True) -> str:
    """A member with purchases (days ago, amount in USD), who consents to profiling unless told otherwise."""
    service = runtime.loyalty_service()
    enrollment = Enrollment(external_id=f"cust-{uuid.uuid4().hex[:12]}", consent=Consent(profiling=profiling))
    member_id = str(service.enroll(enrollment).body["member_id"])
    now = datetime.now(UTC)
    for days_ago, amount in purchases:
        purchase = Purchase(
            order_id=f"order-{uuid.uuid4().hex[:12]}",
            amount=Decimal(amount),
            currency="USD",
            occurred_at=now - timedelta(days=days_ago),
        )
        assert service.purchase(member_id, purchase).status == 201
    return member_id


def _prediction(members_api: ModuleType, member_id: str) -> dict[str, Any]:
    status, body = _get(
        members_api,
        "/v1/members/{member_id}/prediction",
        f"/v1/members/{member_id}/prediction",
        {"member_id": member_id},
    )
    assert status == 200, body
    return dict(body)


@pytest.mark.usefixtures("emulated")
def test_staff_read_expected_spend_where_the_member_has_enough_history() -> None:
    # Given a regular (three purchases: 30, 50 and 70 USD), a one-time buyer, and a published model with Gamma-Gamma
    regular = _member([(60, "30.00"), (40, "50.00"), (20, "70.00")])
    once = _member([(20, "80.00")])
    runtime.segmentation_service().publish_cut_points(
        PublishedCutPoints(run_id=MODEL.run_id, as_of=MODEL.as_of, cut_points=None, model=MODEL)
    )
    members_api = _handler("MembersApiFunction")
    # When staff read their predictions
    body = _prediction(members_api, regular)
    # Then the regular's spend per purchase is Gamma-Gamma's for x = 2 repeat purchases of mean 60 (50 and 70: the
    # first purchase is not a repeat, docs/prediction.md)
    assert MODEL.gamma_gamma is not None
    assert body["expected_spend_per_purchase"] == pytest.approx(
        MODEL.gamma_gamma.expected_average_spend(2, 60.0), rel=1e-12
    )
    assert body["expected_spend_90d"] == pytest.approx(
        body["expected_purchases_90d"] * body["expected_spend_per_purchase"], rel=1e-12
    )
    assert 0 < body["expected_spend_90d"] < body["expected_spend_per_purchase"] * 90  # a plausible figure
    # And the one-time buyer has BG/NBD figures but not enough history for a spend
    first_only = _prediction(members_api, once)
    assert first_only["probability_alive"] == 1.0 and first_only["expected_purchases_90d"] > 0
    assert first_only["expected_spend_per_purchase"] is None and first_only["expected_spend_90d"] is None
    # When the last refresh fitted no Gamma-Gamma, nobody has an expected spend
    runtime.segmentation_service().publish_cut_points(
        PublishedCutPoints(
            run_id="run-no-spend",
            as_of=MODEL.as_of,
            cut_points=None,
            model=MODEL.model_copy(update={"gamma_gamma": None}),
        )
    )
    no_spend_model = _prediction(members_api, regular)
    assert no_spend_model["expected_purchases_90d"] == body["expected_purchases_90d"]
    assert no_spend_model["expected_spend_per_purchase"] is None and no_spend_model["expected_spend_90d"] is None


@pytest.mark.usefixtures("emulated")
def test_a_member_without_profiling_consent_gets_no_prediction_until_they_consent() -> None:
    # Given a regular who never consented to profiling, and a published model
    member_id = _member([(60, "30.00"), (40, "50.00"), (20, "70.00")], profiling=False)
    runtime.segmentation_service().publish_cut_points(
        PublishedCutPoints(run_id=MODEL.run_id, as_of=MODEL.as_of, cut_points=None, model=MODEL)
    )
    members_api = _handler("MembersApiFunction")
    resource, path = "/v1/members/{member_id}/prediction", f"/v1/members/{member_id}/prediction"
    # When staff ask for their predictions, they are refused: a conflict with the member's choice, not a 403 or 404
    status, body = _get(members_api, resource, path, {"member_id": member_id})
    assert (status, body["code"], body["consent"]) == (409, "consent_required", "profiling")
    assert "probability_alive" not in body
    # When the member consents, the same request is answered
    runtime.loyalty_service().set_consent(member_id, ConsentChannel.PROFILING, True, "member")
    assert _prediction(members_api, member_id)["probability_alive"] is not None


@pytest.mark.usefixtures("emulated")
def test_admins_see_the_model_a_refresh_run_fitted() -> None:
    # Given a run in pass one: no model yet
    service = runtime.segmentation_service()
    service.new_run("run-model", datetime(2026, 3, 15, tzinfo=UTC), 2, "ops-alice")
    admin_api = _handler("AdminApiFunction")

    def run() -> dict[str, Any]:
        status, body = _get(
            admin_api,
            "/v1/admin/segment-refreshes/{run_id}",
            "/v1/admin/segment-refreshes/run-model",
            {"run_id": "run-model"},
        )
        assert status == 200, body
        return dict(body)

    assert run()["model"] is None
    # When pass one ends without a model (the refresh records "": too small a sample), still none
    service.segments.update_run("run-model", model="")
    assert run()["model"] is None
    # When the run has fitted one (the refresh stores the model's JSON on the run, as here)
    service.segments.update_run("run-model", expect_status="scanning", status="scoring", model=MODEL.model_dump_json())
    # Then the run shows it: BG/NBD and Gamma-Gamma parameters, sample sizes, convergence
    shown = run()["model"]
    assert shown == MODEL.model_dump(mode="json")
    assert shown["bgnbd"] == {"r": 0.243, "alpha": 4.414 * 7, "a": 0.793, "b": 2.426}
    assert shown["gamma_gamma"] == {"p": 6.25, "q": 3.74, "v": 15.44}
    assert (shown["sample_members"], shown["sample_repeaters"], shown["converged"]) == (2357, 946, True)
    # And so does the list of runs
    status, listed = _get(admin_api, "/v1/admin/segment-refreshes", "/v1/admin/segment-refreshes", {})
    assert status == 200, listed
    assert [r["model"] for r in listed["runs"] if r["run_id"] == "run-model"] == [shown]
