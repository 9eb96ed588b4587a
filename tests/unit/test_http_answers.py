"""A route's answer leaves as its documented model says, or not at all: a body that does not match its model (a
required field missing, a value of another type, a field the model does not list) is a 500 internal_error, logged
with the fields at fault, never a malformed 200."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any

import pytest
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel

from loyalty.core.http import (
    PUBLIC,
    Api,
    Cors,
    UndocumentedAnswer,
    answer,
    as_documented,
    documented,
    model_response,
    outcome_response,
)
from loyalty.core.idempotency import Outcome


class Voucher(BaseModel):
    code: str
    points: int
    value: Decimal
    note: str | None = None


class Wallet(BaseModel):
    owner: str
    vouchers: list[Voucher]
    next_cursor: str | None


VOUCHER = {"code": "V-1", "points": 10, "value": "5.00"}


def _api(body: dict[str, Any] | Outcome, status: int = 200, headers: dict[str, str] | None = None) -> Api:
    api = Api(cors=lambda: Cors())

    @api.get("/v1/wallet", access=PUBLIC, responses=documented(200, Wallet, "The wallet"))
    def wallet() -> Response[Any]:
        if isinstance(body, Outcome):
            return outcome_response(body, Wallet)
        return answer(status, Wallet, body, headers)

    return api


def _call(api: Api) -> tuple[int, dict[str, str], Any]:
    event = {
        "resource": "/v1/wallet",
        "path": "/v1/wallet",
        "httpMethod": "GET",
        "headers": {},
        "requestContext": {"resourcePath": "/v1/wallet", "httpMethod": "GET", "stage": "prod", "requestId": "r-1"},
    }
    raw = api.handle(event, None)  # type: ignore[arg-type]
    headers = {k: str(v) for k, v in (raw.get("headers") or {}).items()}
    headers.update({k: ", ".join(v) for k, v in (raw.get("multiValueHeaders") or {}).items()})
    return int(raw["statusCode"]), headers, json.loads(raw["body"])


@pytest.mark.parametrize(
    ("body", "fault"),
    [
        ({"owner": "m-1", "vouchers": [VOUCHER]}, "next_cursor: missing"),
        ({"owner": "m-1", "vouchers": [{**VOUCHER, "points": "ten"}], "next_cursor": None}, "vouchers[0].points"),
        ({"owner": 7, "vouchers": [], "next_cursor": None}, "owner: string_type"),
        ({"owner": "m-1", "vouchers": [VOUCHER], "next_cursor": None, "secret": "x"}, "secret: not documented"),
        ({"owner": "m-1", "vouchers": [{**VOUCHER, "pin": "1234"}], "next_cursor": None}, "vouchers[0].pin"),
    ],
    ids=["missing-field", "wrong-type-nested", "wrong-type", "undocumented-field", "undocumented-nested-field"],
)
def test_an_answer_that_does_not_match_its_model_is_a_logged_500(
    body: dict[str, Any], fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a route whose body does not match its documented model
    # When it is called
    status, _, sent = _call(_api(body))
    # Then the caller gets the internal error, and nothing of the body
    assert status == 500
    assert sent == {"code": "internal_error", "message": "internal error", "errors": []}
    # And the log names the route, the model and the field at fault, without its value
    (record,) = [r for r in caplog.records if r.getMessage() == "answer does not match its documented model"]
    assert record.levelname == "ERROR"
    assert (record.route, record.model) == ("GET /v1/wallet", "Wallet")  # type: ignore[attr-defined]
    problems: list[str] = record.problems  # type: ignore[attr-defined]
    assert any(problem.startswith(fault) for problem in problems), problems
    assert "1234" not in json.dumps(problems)


def test_an_answer_that_matches_leaves_as_the_model_serialises_it() -> None:
    # Given a body with a value the model converts and an optional field it does not have
    body = {"owner": "m-1", "vouchers": [{**VOUCHER, "points": "10"}], "next_cursor": None}
    # When the route answers it, with its own status and headers
    status, headers, sent = _call(_api(body, status=201, headers={"Location": "/v1/wallet"}))
    # Then status and headers are the route's, the count is a number, the amount a string, the absent note absent,
    # and a null the body gave is kept
    assert status == 201 and headers["Location"] == "/v1/wallet"
    assert sent == {"owner": "m-1", "vouchers": [{"code": "V-1", "points": 10, "value": "5.00"}], "next_cursor": None}


def test_a_refusal_is_an_error_body_with_the_figures_behind_it_and_a_replay_says_so() -> None:
    refusal = {"code": "insufficient_points", "message": "no", "errors": [], "available": 3, "needed": 10}

    status, headers, sent = _call(_api(Outcome(409, refusal, replayed=True)))

    assert status == 409 and sent == refusal
    assert headers["Idempotent-Replayed"] == "true"


def test_a_stored_refusal_that_is_not_an_error_body_is_not_sent() -> None:
    status, _, sent = _call(_api(Outcome(409, {"reason": "no"})))

    assert status == 500 and sent["code"] == "internal_error"


def test_a_stored_success_is_read_as_the_route_model() -> None:
    body = {"owner": "m-1", "vouchers": [], "next_cursor": "c-2"}

    status, headers, sent = _call(_api(Outcome(200, body)))

    assert (status, sent) == (200, body) and "Idempotent-Replayed" not in headers


def test_a_model_the_route_built_keeps_only_the_fields_it_was_given() -> None:
    voucher = Voucher(code="V-2", points=1, value=Decimal("0.50"))

    response = model_response(200, Wallet(owner="m-2", vouchers=[voucher], next_cursor=None))

    assert json.loads(str(response.body)) == {
        "owner": "m-2",
        "vouchers": [{"code": "V-2", "points": 1, "value": "0.50"}],
        "next_cursor": None,
    }


def test_as_documented_lists_every_field_at_fault() -> None:
    with pytest.raises(UndocumentedAnswer) as undocumented:
        as_documented(Wallet, {"owner": "m-1", "vouchers": [{"code": "V-1", "value": "x"}]})

    assert sorted(undocumented.value.problems) == [
        "next_cursor: missing",
        "vouchers[0].points: missing",
        "vouchers[0].value: decimal_parsing",
    ]


class Note(BaseModel):
    text: str | None = None


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/merge-patch+json", "Application/Merge-Patch+JSON; charset=utf-8"],
)
def test_a_body_sent_as_any_json_media_type_the_reader_accepts_reaches_the_route(content_type: str) -> None:
    api = Api(cors=lambda: Cors())

    @api.patch("/v1/note", access=PUBLIC)
    def note(patch: Annotated[Note, Body()]) -> Response[Any]:
        return model_response(200, patch)

    event = {
        "resource": "/v1/note",
        "path": "/v1/note",
        "httpMethod": "PATCH",
        "headers": {"Content-Type": content_type},
        "multiValueHeaders": {"Content-Type": [content_type]},
        "body": json.dumps({"text": None}),
        "requestContext": {"resourcePath": "/v1/note", "httpMethod": "PATCH", "stage": "prod", "requestId": "r-1"},
    }

    raw = api.handle(event, None)  # type: ignore[arg-type]

    assert (raw["statusCode"], json.loads(raw["body"])) == (200, {"text": None})  # null kept: a merge patch's removal
