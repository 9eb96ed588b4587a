"""The HTTP edge shared by API functions (docs/api-edge.md): every request is authenticated and authorised for
its route before its body is read, the body is read by one strict reader, every answer is JSON in one error shape
and carries the CORS headers its origin is allowed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ValidationError

from loyalty.core.access import Caller, Role, caller_from_request_context
from loyalty.core.errors import Forbidden, InvalidRequest, LoyaltyError, field_path
from loyalty.core.idempotency import Outcome
from loyalty.core.request_body import MAX_BODY_BYTES, parse_json, read_body
from loyalty.core.settings import settings

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
    400: "The body is not UTF-8 or not JSON, has a key twice, nests too deep or holds a number too long; or a "
    "required header is missing",
    401: "No valid token",
    403: "The token may not reach this member or route",
    404: "Unknown member, reward or order",
    409: "Insufficient points, or an order id already recorded with other facts",
    413: "The body is larger than the route accepts",
    415: "The body is not sent as application/json",
    422: "A field failed validation, or an idempotency key was reused for another request",
    429: "Too many requests; retry after a pause",
    500: "An internal error; safe to retry a write with the same Idempotency-Key",
    503: "Too many concurrent changes to one member; safe to retry",
}
# Every route can answer these: the gateway's own answers (docs/api-edge.md) and the body reader's on writes.
GATEWAY_ERRORS = (401, 429, 500)
BODY_ERRORS = (400, 413, 415)


def documented(
    success: int, model: type[BaseModel] | None, description: str, *errors: int | tuple[int, str]
) -> dict[int, Any]:
    """OpenAPI responses for a route: its success body and the error bodies it can return. An error is a status
    (its usual meaning) or (status, what it means on this route)."""
    responses: dict[int, Any] = {success: {"description": description}}
    if model is not None:
        responses[success]["content"] = {"application/json": {"model": model}}
    elif success == 204:
        responses[success]["content"] = {}  # no body: not even the resolver's guessed "Return" schema
    for error in (*GATEWAY_ERRORS, *errors):
        status, meaning = error if isinstance(error, tuple) else (error, _ERROR_MEANING[error])
        responses[status] = {"description": meaning, "content": {"application/json": {"model": ErrorBody}}}
    return responses


def documented_write(
    success: int, model: type[BaseModel] | None, description: str, *errors: int | tuple[int, str]
) -> dict[int, Any]:
    """documented() for a route that takes a body: the body reader's answers (400, 413, 415) are listed too."""
    explained = {error[0] if isinstance(error, tuple) else error for error in errors}
    return documented(success, model, description, *(e for e in BODY_ERRORS if e not in explained), *errors)


def idempotency_key(description: str) -> Any:
    """The Idempotency-Key header of a write, described as the route uses it: printable ASCII, 1-255 characters."""
    return Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description=description,
    )


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body, separators=(",", ":"), default=str),
        headers=headers,
    )


# ---- answers as documented ---------------------------------------------------------------------------------------

Answer = TypeVar("Answer", bound=BaseModel)


class UndocumentedAnswer(Exception):
    """A route built an answer its documented model does not describe: a defect here, never the caller's. It is
    answered 500 internal_error and logged with the field paths at fault, never sent."""

    def __init__(self, model: type[BaseModel], problems: list[str]):
        super().__init__(f"{model.__name__}: {'; '.join(problems)}")
        self.model = model.__name__
        self.problems = problems


def as_documented(model: type[Answer], body: Mapping[str, Any], *, more_fields: bool = False) -> Answer:
    """`body` as the route's documented model, read as _documented says."""
    return _documented(model, body, more_fields=more_fields)[0]


def _documented(model: type[Answer], body: Mapping[str, Any], *, more_fields: bool = False) -> tuple[Answer, Any]:
    """`body` (a JSON object as a service wrote it, or as an idempotent write stored its first answer) read as the
    route's documented model, as a client would read the JSON: every required field present, each value one the
    model takes, and no field the model does not list (`more_fields`: an error body may carry the figures behind a
    refusal). Raises UndocumentedAnswer. A value the model converts ("5" for a count) is sent as the model
    serialises it (model_response), so what leaves has the documented types. Returns the model and that
    serialisation."""
    text = json.dumps(body, separators=(",", ":"), default=str)
    try:
        answer = model.model_validate_json(text)
    except ValidationError as invalid:
        raise UndocumentedAnswer(
            model, [f"{_path(e['loc']) or 'body'}: {e['type']}" for e in invalid.errors()]
        ) from None
    serialised = _serialised(answer)  # the fields the body gave that the model has: a field it ignored is missing
    if not more_fields:
        extra = _undocumented(body, serialised, "")
        if extra:
            raise UndocumentedAnswer(model, [f"{field}: not documented" for field in extra])
    return answer, serialised


_path = field_path


def _undocumented(sent: Any, documented: Any, path: str) -> list[str]:
    """The fields of `sent` its model's own dump of it does not have (the model ignored them)."""
    found: list[str] = []
    if isinstance(sent, Mapping) and isinstance(documented, dict):
        for key, value in sent.items():
            where = f"{path}.{key}" if path else key
            found += [where] if key not in documented else _undocumented(value, documented[key], where)
    elif isinstance(sent, list | tuple) and isinstance(documented, list):
        for index, (item, kept) in enumerate(zip(sent, documented, strict=False)):
            found += _undocumented(item, kept, f"{path}[{index}]")
    return found


def _serialised(answer: BaseModel) -> Any:
    """The answer as its model serialises it (JSON mode: an amount is a string, a moment ISO 8601), with the fields
    it was given: an optional field the answer does not have is left out, not sent as null."""
    return answer.model_dump(mode="json", by_alias=True, exclude_unset=True)


def model_response(status: int, answer: BaseModel, headers: dict[str, str] | None = None) -> Response[Any]:
    """A model the route built, as the model serialises it (_serialised)."""
    return json_response(status, _serialised(answer), headers)


def answer(
    status: int, model: type[BaseModel], body: Mapping[str, Any], headers: dict[str, str] | None = None
) -> Response[Any]:
    """A route's answer: `body` as its documented `model` (as_documented), sent as the model serialises it."""
    return json_response(status, _documented(model, body)[1], headers)


def outcome_response(outcome: Outcome, model: type[BaseModel]) -> Response[Any]:
    """An idempotent write's answer, first or replayed: a success as the route's documented `model`, a refusal
    (remembered like a success) as an ErrorBody; a replay says so in Idempotent-Replayed."""
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    if outcome.status >= 400:
        as_documented(ErrorBody, outcome.body, more_fields=True)
        return json_response(outcome.status, outcome.body, headers)  # the figures behind the refusal included
    return answer(outcome.status, model, outcome.body, headers)


def _field(location: tuple[Any, ...]) -> str:
    """("body", "line_items", 0, "amount") -> "line_items[0].amount"; ("header", "idempotency-key") ->
    "Idempotency-Key" (headers arrive lower-cased; the error names them as documented)."""
    if len(location) == 2 and location[0] == "header":
        return "-".join(part.capitalize() for part in str(location[1]).split("-"))
    return _path(location[1:] if len(location) > 1 else location) or str(location[0])


def _tags(expected: str) -> list[str]:
    """pydantic's `expected_tags` ("'a', 'b'" or "<Kind.A: 'a'>, ...") as the tags alone."""
    return re.findall(r"'([^']*)'", expected)


def _field_error(error: dict[str, Any], variants: frozenset[str]) -> dict[str, str]:
    location = tuple(error.get("loc", ()))
    kind = error.get("type")
    context = error.get("ctx") or {}
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # A discriminated union (activities by "type"): name the discriminator, list what it accepts.
        discriminator = str(context.get("discriminator", "type")).strip("'\"")
        field = _field((*location, discriminator))
        if kind == "union_tag_not_found":
            return {"field": field, "reason": "required"}
        accepted = ", ".join(sorted(_tags(str(context.get("expected_tags", "")))))
        return {"field": field, "reason": f"unknown value {context.get('tag')!r}; expected one of: {accepted}"}
    # The chosen variant of a discriminated union sits in the path ("body", "purchase", "amount"): drop it.
    if len(location) > 2 and location[0] == "body" and location[1] in variants:
        location = (location[0], *location[2:])
    # So do the rule language's variants, tagged in braces ("rule", "{all}", "all", 0, "{condition}", "value"):
    # the field is rule.all[0].value, as the rule segment routes name it.
    location = tuple(part for part in location if not (isinstance(part, str) and _BRACED_TAG.fullmatch(part)))
    return {"field": _field(location), "reason": error.get("msg", "invalid")}


def validation_error_body(
    errors: list[dict[str, Any]], variants: frozenset[str] = frozenset()
) -> tuple[int, dict[str, Any]]:
    """`variants`: the tags of the body's discriminated union (activities by "type"); a tag in an error's location
    is pydantic's, not the caller's, and is left out of the field named."""
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
        "errors": [_field_error(error, variants) for error in errors],
    }


_BRACED_TAG = re.compile(r"\{[a-z_]+\}")


def build_resolver(variants: frozenset[str] = frozenset()) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True, strip_prefixes=None, json_body_deserializer=parse_json)

    @app.exception_handler(RequestValidationError)
    def _invalid(error: RequestValidationError) -> Response[Any]:
        status, body = validation_error_body(list(error.errors()), variants)
        return json_response(status, body)

    @app.exception_handler(LoyaltyError)
    def _domain(error: LoyaltyError) -> Response[Any]:
        return json_response(error.status, error.body())

    @app.not_found
    def _not_found(_: Exception) -> Response[Any]:
        return json_response(404, {"code": "route_not_found", "message": "no such route", "errors": []})

    @app.exception_handler(UndocumentedAnswer)
    def _undocumented_answer(error: UndocumentedAnswer) -> Response[Any]:
        event = app.current_event
        logger.error(
            "answer does not match its documented model",
            extra={"route": f"{event.http_method} {event.resource}", "model": error.model, "problems": error.problems},
        )
        return json_response(500, {"code": "internal_error", "message": "internal error", "errors": []})

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response[Any]:
        logger.exception("unhandled error")
        return json_response(500, {"code": "internal_error", "message": "internal error", "errors": []})

    return app


def current_caller(app: APIGatewayRestResolver) -> Caller:
    return caller_from_request_context(app.current_event.raw_event.get("requestContext"))


# ---- access before the body ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Access:
    """Who may call a route, decided from the token and the path alone, before the body is read. Rules that
    depend on the body (an adjustment needs an admin, a shopper enrolls only themselves) stay in the route."""

    roles: frozenset[Role] = frozenset(Role)
    public: bool = False  # no token needed (the API documents)
    own_member: str | None = None  # a member's token reaches only the member this path parameter names

    def check(self, event: Mapping[str, Any]) -> None:
        if self.public:
            return
        caller = caller_from_request_context(event.get("requestContext"))
        if caller.role not in self.roles:
            raise Forbidden(f"this route needs one of: {', '.join(sorted(r.value for r in self.roles))}")
        path = event.get("pathParameters") or {}
        if self.own_member and caller.role is Role.MEMBER and caller.member_id != path.get(self.own_member):
            raise Forbidden("this token cannot reach that member")


PUBLIC = Access(public=True)
SIGNED_IN = Access()
STAFF = Access(roles=frozenset({Role.ADMIN, Role.SERVICE}))
ADMIN = Access(roles=frozenset({Role.ADMIN}))
MEMBER_OR_STAFF = Access(roles=frozenset({Role.MEMBER, Role.ADMIN, Role.SERVICE}), own_member="member_id")


# ---- CORS ------------------------------------------------------------------------------------------------------

ALLOWED_HEADERS = ("Authorization", "Content-Type", "Idempotency-Key", "If-Match")
EXPOSED_HEADERS = ("Idempotent-Replayed", "Location", "x-amzn-RequestId")
PREFLIGHT_MAX_AGE = 7200  # seconds: the longest a browser keeps a preflight (Chromium's cap)


@dataclass(frozen=True)
class Cors:
    """Browsers on the configured origins may call the API. Tokens travel in the Authorization header, not in
    cookies, so no answer allows credentials; "*" allows any origin."""

    origins: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, configured: str) -> Cors:
        return cls(frozenset(origin.strip().rstrip("/") for origin in configured.split(",") if origin.strip()))

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self.origins or origin in self.origins)

    def headers(self, origin: str | None) -> dict[str, str]:
        if not self.allows(origin):
            return {"Vary": "Origin"} if self.origins else {}
        assert origin is not None
        return {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Expose-Headers": ", ".join(EXPOSED_HEADERS),
            "Vary": "Origin",
        }

    def preflight(self, origin: str | None, methods: Iterable[str]) -> dict[str, str]:
        headers = self.headers(origin)
        if self.allows(origin):
            headers["Access-Control-Allow-Methods"] = ", ".join(sorted({*methods, "OPTIONS"}))
            headers["Access-Control-Allow-Headers"] = ", ".join(ALLOWED_HEADERS)
            headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE)
        return headers


@lru_cache(maxsize=4)
def _parsed_cors(configured: str) -> Cors:
    return Cors.parse(configured)


def configured_cors() -> Cors:
    """The origins in the ALLOWED_ORIGINS setting (the template's AllowedOrigins parameter)."""
    return _parsed_cors(settings().allowed_origins)


# ---- the API function --------------------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def resource_of(path: str) -> str:
    """ "/v1/members/<member_id>" (the resolver's) -> "/v1/members/{member_id}" (API Gateway's resource)."""
    return re.sub(r"<(\w+)>", r"{\1}", path)


@dataclass
class Api:
    """An API function: its resolver and, per route, who may call it. `handle` is the Lambda entry point."""

    variants: frozenset[str] = frozenset()  # the body union's tags (validation_error_body)
    app: APIGatewayRestResolver = field(init=False)
    cors: Callable[[], Cors] = configured_cors
    max_body_bytes: int = MAX_BODY_BYTES
    access: dict[tuple[str, str], Access] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.app = build_resolver(self.variants)

    def route(self, method: str, path: str, *, access: Access, **options: Any) -> Callable[[F], F]:
        if access.public:
            options.setdefault("security", [])
        self.access[(method, resource_of(path))] = access
        register: Callable[[F], F] = self.app.route(path, method, **options)
        return register

    def get(self, path: str, *, access: Access, **options: Any) -> Callable[[F], F]:
        return self.route("GET", path, access=access, **options)

    def post(self, path: str, *, access: Access, **options: Any) -> Callable[[F], F]:
        return self.route("POST", path, access=access, **options)

    def put(self, path: str, *, access: Access, **options: Any) -> Callable[[F], F]:
        return self.route("PUT", path, access=access, **options)

    def patch(self, path: str, *, access: Access, **options: Any) -> Callable[[F], F]:
        return self.route("PATCH", path, access=access, **options)

    def delete(self, path: str, *, access: Access, **options: Any) -> Callable[[F], F]:
        return self.route("DELETE", path, access=access, **options)

    def caller(self) -> Caller:
        return current_caller(self.app)

    def handle(self, event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        headers = {str(k).lower(): v for k, v in (event.get("headers") or {}).items()}
        origin = headers.get("origin")
        cors = self.cors()
        method = str(event.get("httpMethod") or "").upper()
        resource = str(event.get("resource") or "")
        if method == "OPTIONS":
            methods = [m for (m, r) in self.access if r == resource]
            return _proxy_response(204, None, cors.preflight(origin, methods))
        access = self.access.get((method, resource))
        if access is not None:  # an unknown route is the resolver's 404
            try:
                access.check(event)
                if method in ("POST", "PUT", "PATCH"):
                    read_body(event, self.max_body_bytes)
                    event = _json_media_type(event)
            except LoyaltyError as refused:
                return _proxy_response(refused.status, refused.body(), cors.headers(origin))
        response = self.app.resolve(event, context)
        if (
            access is not None
            and response.get("statusCode") == 404
            and '"route_not_found"' in str(response.get("body"))
        ):
            # API Gateway routed it to this resource, so a path parameter holds characters the resolver's route
            # pattern does not take: the parameter is invalid, the route exists.
            names = sorted((event.get("pathParameters") or {}).keys())
            invalid = InvalidRequest("not a value this route accepts", field=names[0] if len(names) == 1 else "path")
            response = _proxy_response(invalid.status, invalid.body(), {})
        response.setdefault("headers", {})
        response["headers"] = {**(response["headers"] or {}), **cors.headers(origin)}
        if response.get("statusCode") == 204:  # no content: no body and no content type
            response["body"] = ""
            response["headers"] = {k: v for k, v in response["headers"].items() if k.lower() != "content-type"}
            if response.get("multiValueHeaders"):
                response["multiValueHeaders"] = {
                    k: v for k, v in response["multiValueHeaders"].items() if k.lower() != "content-type"
                }
        return response


def _json_media_type(event: dict[str, Any]) -> dict[str, Any]:
    """The event with a `+json` content type the body reader accepted (application/merge-patch+json, say) given to
    the resolver as application/json, the one media type it parses (it would answer any other with a 500)."""
    headers = event.get("headers") or {}
    names = [name for name in headers if str(name).lower() == "content-type"]
    if not names or str(headers[names[0]]).strip().lower().startswith("application/json"):
        return event
    as_json = {**event, "headers": {**headers, names[0]: "application/json"}}
    multi = event.get("multiValueHeaders") or {}
    if any(str(name).lower() == "content-type" for name in multi):
        as_json["multiValueHeaders"] = {
            name: (["application/json"] if str(name).lower() == "content-type" else values)
            for name, values in multi.items()
        }
    return as_json


def _proxy_response(status: int, body: Any, headers: Mapping[str, str]) -> dict[str, Any]:
    if body is None:
        return {"statusCode": status, "headers": dict(headers), "body": "", "isBase64Encoded": False}
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", **headers},
        "body": json.dumps(body, separators=(",", ":"), default=str),
        "isBase64Encoded": False,
    }
