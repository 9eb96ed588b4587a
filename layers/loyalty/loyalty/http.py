"""The HTTP edge shared by API functions: a resolver whose errors are JSON with the field and the reason."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import BaseModel

from loyalty.access import Caller, caller_from_request_context
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


def documented(success: int, model: type[BaseModel] | None, description: str, *errors: int) -> dict[int, Any]:
    """OpenAPI responses for a route: its success body and the error bodies it can return."""
    responses: dict[int, Any] = {success: {"description": description}}
    if model is not None:
        responses[success]["content"] = {"application/json": {"model": model}}
    for status in errors:
        responses[status] = {
            "description": _ERROR_MEANING[status],
            "content": {"application/json": {"model": ErrorBody}},
        }
    return responses


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, separators=(",", ":"), default=str),
        headers=headers,
    )


def _field(location: tuple[Any, ...]) -> str:
    # ("body", "line_items", 0, "amount") -> "line_items[0].amount"; ("header", "Idempotency-Key") -> its name
    path = ""
    for part in location[1:] if len(location) > 1 else location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or str(location[0])


def validation_error_body(errors: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    if any(error.get("type") == "json_invalid" for error in errors):
        return 400, {
            "code": "malformed_json",
            "message": "the request body is not valid JSON",
            "errors": [{"field": "body", "reason": "not valid JSON"}],
        }
    fields = []
    for error in errors:
        location = tuple(error.get("loc", ()))
        # A discriminated union puts the chosen variant in the path ("body", "purchase", "amount"): drop it.
        if len(location) > 2 and location[0] == "body" and error.get("type") != "union_tag_invalid":
            location = tuple(p for p in location if p not in _UNION_TAGS)
        fields.append({"field": _field(location), "reason": error.get("msg", "invalid")})
    return 422, {
        "code": "invalid_request",
        "message": "the request did not pass validation",
        "errors": fields,
    }


_UNION_TAGS = {"purchase", "refund", "referral", "review", "social_share", "survey", "adjustment"}


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
