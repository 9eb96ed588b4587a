"""The HTTP edge shared by API functions: a resolver whose errors are JSON with the field and the reason."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel

from loyalty.access import Caller, caller_from_request_context
from loyalty.activities import ActivityType
from loyalty.errors import LoyaltyError

logger = Logger()


class FieldError(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    """Every 4xx and 5xx body: a stable code, a sentence, and the fields at fault."""

    code: str
    message: str
    errors: list[FieldError]


_ERROR_MEANING = {
    400: "Malformed JSON or a missing required header",
    401: "No valid token",
    403: "The token may not reach this member or route",
    404: "Unknown member, reward or order",
    409: "Insufficient points, or an order id already recorded with other facts",
    422: "A field failed validation, or an idempotency key was reused for another request",
    503: "Too many concurrent changes to one member; safe to retry",
}


def documented(
    success: int, model: type[BaseModel] | None, description: str, *errors: int | tuple[int, str]
) -> dict[int, Any]:
    """OpenAPI responses for a route: its success body and the error bodies it can return. An error is a status
    (its usual meaning) or (status, what it means on this route)."""
    responses: dict[int, Any] = {success: {"description": description}}
    if model is not None:
        responses[success]["content"] = {"application/json": {"model": model}}
    for error in errors:
        status, meaning = error if isinstance(error, tuple) else (error, _ERROR_MEANING[error])
        responses[status] = {"description": meaning, "content": {"application/json": {"model": ErrorBody}}}
    return responses


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, separators=(",", ":"), default=str),
        headers=headers,
    )


def _field(location: tuple[Any, ...]) -> str:
    """("body", "line_items", 0, "amount") -> "line_items[0].amount"; ("header", "idempotency-key") ->
    "Idempotency-Key" (headers arrive lower-cased; the error names them as documented)."""
    if len(location) == 2 and location[0] == "header":
        return "-".join(part.capitalize() for part in str(location[1]).split("-"))
    path = ""
    for part in location[1:] if len(location) > 1 else location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or str(location[0])


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    location = tuple(error.get("loc", ()))
    kind = error.get("type")
    context = error.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # A discriminated union (activities by "type"): name the discriminator, list what it accepts.
        discriminator = str(context.get("discriminator", "type")).strip("'\"")
        field = _field((*location, discriminator))
        if kind == "union_tag_not_found":
            return {"field": field, "reason": "required"}
        accepted = ", ".join(sorted(_ACTIVITY_TAGS))
        return {"field": field, "reason": f"unknown value {context.get('tag')!r}; expected one of: {accepted}"}
    # The chosen variant of a discriminated union sits in the path ("body", "purchase", "amount"): drop it.
    if len(location) > 2 and location[0] == "body" and location[1] in _ACTIVITY_TAGS:
        location = (location[0], *location[2:])
    # So do the rule language's variants, tagged in braces ("rule", "{all}", "all", 0, "{condition}", "value"):
    # the field is rule.all[0].value, as the rule segment routes name it.
    location = tuple(part for part in location if not (isinstance(part, str) and _BRACED_TAG.fullmatch(part)))
    return {"field": _field(location), "reason": error.get("msg", "invalid")}


def validation_error_body(errors: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    if any(error.get("type") == "json_invalid" for error in errors):
        return 400, {
            "code": "malformed_json",
            "message": "the request body is not valid JSON",
            "errors": [{"field": "body", "reason": "not valid JSON"}],
        }
    missing_headers = [
        _field(tuple(error["loc"]))
        for error in errors
        if error.get("type") == "missing" and tuple(error.get("loc", ()))[:1] == ("header",)
    ]
    if missing_headers:  # a required header left out is a 400, as the redemption route answers it
        headers = " and ".join(missing_headers) + (" headers are" if len(missing_headers) > 1 else " header is")
        return 400, {
            "code": "invalid_request",
            "message": f"{headers} required",
            "errors": [{"field": header, "reason": "required"} for header in missing_headers],
        }
    return 422, {
        "code": "invalid_request",
        "message": "the request did not pass validation",
        "errors": [_field_error(error) for error in errors],
    }


_ACTIVITY_TAGS = {kind.value for kind in ActivityType}
_BRACED_TAG = re.compile(r"\{[a-z_]+\}")


def build_resolver() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True, strip_prefixes=None)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[Any]:
        status, body = validation_error_body(list(error.errors()))
        return json_response(status, body)

    @app.exception_handler(LoyaltyError)
    def _domain(error: LoyaltyError) -> Response[Any]:
        return json_response(error.status, error.body())

    @app.not_found
    def _not_found(_: Exception) -> Response[Any]:
        return json_response(404, {"code": "route_not_found", "message": "no such route", "errors": []})

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[Any]:
        logger.exception("unhandled error")
        return json_response(500, {"code": "internal_error", "message": "internal error", "errors": []})

    return app


def current_caller(app: APIGatewayRestResolver) -> Caller:
    return caller_from_request_context(app.current_event.raw_event.get("requestContext"))
