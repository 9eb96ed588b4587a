"""Bad input gets a clear 4xx naming the field at fault, in the shape a client can act on."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from loyalty.core.errors import InsufficientPoints, InvalidRequest
from loyalty.core.http import ErrorBody, documented, validation_error_body
from loyalty.points.activities import Activity, ActivityType

ACTIVITY = TypeAdapter(Activity)
VARIANTS = frozenset(ActivityType)


def body_errors(payload: Any) -> list[dict[str, Any]]:
    """The errors Powertools hands the resolver for a body parameter: pydantic's, located under "body"."""
    with pytest.raises(ValidationError) as invalid:
        ACTIVITY.validate_python(payload)
    return [{**error, "loc": ("body", *error["loc"])} for error in invalid.value.errors()]


def fields(errors: list[dict[str, Any]]) -> list[str]:
    status, body = validation_error_body(errors, VARIANTS)
    assert status == 422
    assert body["code"] == "invalid_request"
    return [error["field"] for error in body["errors"]]


def test_a_body_that_is_not_json_is_a_400_malformed_json() -> None:
    status, body = validation_error_body([{"type": "json_invalid", "loc": ("body", 18), "msg": "Invalid JSON"}])

    assert status == 400
    assert body["code"] == "malformed_json"
    assert body["errors"] == [{"field": "body", "reason": "not valid JSON"}]


def test_a_nested_line_item_error_names_its_path() -> None:
    errors = body_errors(
        {"type": "purchase", "order_id": "o-1", "amount": "10", "currency": "USD", "line_items": [{"amount": "ten"}]}
    )

    assert fields(errors) == ["line_items[0].amount"]


def test_the_discriminated_union_variant_is_dropped_from_the_field_path() -> None:
    errors = body_errors({"type": "purchase", "order_id": "o 1", "amount": "-1", "currency": "usd"})

    assert [e["loc"][1] for e in errors] == ["purchase"] * 3  # pydantic puts the variant in the path ...
    assert sorted(fields(errors)) == ["amount", "currency", "order_id"]  # ... the client never sees it


def test_each_variant_tag_is_dropped() -> None:
    errors = body_errors({"type": "social_share", "reference": ""})

    assert fields(errors) == ["reference"]


def test_a_deep_path_keeps_every_index_and_name() -> None:
    errors = [{"type": "int_parsing", "loc": ("body", "refund", "line_items", 3, "quantity"), "msg": "bad"}]

    assert fields(errors) == ["line_items[3].quantity"]


def test_a_header_error_names_the_header() -> None:
    errors = [{"type": "string_too_long", "loc": ("header", "Idempotency-Key"), "msg": "too long"}]

    assert validation_error_body(errors)[1]["errors"] == [{"field": "Idempotency-Key", "reason": "too long"}]


def test_a_query_parameter_error_names_the_parameter() -> None:
    assert fields([{"type": "less_than_equal", "loc": ("query", "limit"), "msg": "<= 100"}]) == ["limit"]


def test_several_errors_are_all_reported() -> None:
    errors = body_errors({"type": "purchase", "amount": "x"})

    assert sorted(fields(errors)) == ["amount", "currency", "order_id"]


def test_an_unknown_field_that_happens_to_share_a_variant_name_is_still_named() -> None:
    errors = body_errors({"type": "purchase", "order_id": "o-1", "amount": "10", "currency": "USD", "refund": "1"})

    assert fields(errors) == ["refund"]


def test_an_unknown_activity_type_names_the_type_field_and_what_it_accepts() -> None:
    status, body = validation_error_body(body_errors({"type": "teleport", "points": 5}), VARIANTS)

    assert status == 422
    [error] = body["errors"]
    assert error["field"] == "type"
    assert "'teleport'" in error["reason"]
    for accepted in ("purchase", "refund", "review", "adjustment"):
        assert accepted in error["reason"]


def test_a_missing_activity_type_is_reported_as_required() -> None:
    _, body = validation_error_body(body_errors({"order_id": "o-1", "amount": "10", "currency": "USD"}), VARIANTS)

    assert body["errors"] == [{"field": "type", "reason": "required"}]


def test_a_header_keeps_its_documented_name_though_it_arrives_lower_cased() -> None:
    errors = [{"type": "string_pattern_mismatch", "loc": ("header", "idempotency-key"), "msg": "bad"}]

    assert fields(errors) == ["Idempotency-Key"]


def test_domain_errors_carry_the_field_and_the_reason() -> None:
    error = InvalidRequest("line items add up to more than the order amount", field="line_items")

    assert error.status == 422
    assert error.body() == {
        "code": "invalid_request",
        "message": error.message,
        "errors": [{"field": "line_items", "reason": error.message}],
    }


def test_insufficient_points_is_a_409_with_what_was_needed() -> None:
    error = InsufficientPoints("10 needed, 5 available", details={"available": 5, "needed": 10})

    assert error.status == 409
    assert error.body()["available"] == 5
    assert error.body()["needed"] == 10


def test_a_missing_required_header_is_a_400_naming_it() -> None:
    errors = [
        {"type": "missing", "loc": ("header", "if-match"), "msg": "Field required"},
        {"type": "int_parsing", "loc": ("body", "version"), "msg": "bad"},
    ]

    status, body = validation_error_body(errors)

    assert status == 400
    assert body["message"] == "If-Match header is required"
    assert body["errors"] == [{"field": "If-Match", "reason": "required"}]


def test_the_rule_language_variant_tags_are_dropped_from_the_field_path() -> None:
    location = ("body", "rule_segments", 0, "rule", "{all}", "all", 2, "{condition}", "value")
    errors = [{"type": "value_error", "loc": location, "msg": "points_6m takes a number"}]

    assert fields(errors) == ["rule_segments[0].rule.all[2].value"]


def test_documented_errors_take_the_usual_meaning_or_the_route_own() -> None:
    responses = documented(200, None, "ok", 401, (409, "Another refresh is running"))

    assert responses[401]["description"] == "No valid token"
    assert responses[409]["description"] == "Another refresh is running"
    assert responses[409]["content"]["application/json"]["model"] is ErrorBody
