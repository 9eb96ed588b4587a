"""A local API Gateway (REST API, Lambda proxy integration) in front of the template's `Api` events.

Routes come from the template; each request becomes the proxy event API Gateway would send, runs in the function's
container pool, and the proxy response is written back. The Cognito authorizer is replaced by development tokens
(`Authorization: Bearer dev:<role>:<id>`) that become the claims Cognito would put in an ID token. Answers the
gateway gives itself (no route, no token, a body over 10 MB, a crashed handler) are the template's
`GatewayResponses`, rendered as API Gateway renders them. The API answers at the root (as behind a custom domain)
and under its stage (`/prod/v1/...`, as at the execute-api address); `/` is a page of links for a newcomer.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from devstack.functions import FunctionHost, InvocationError
from devstack.template import ACCOUNT_ID, ApiEvent

log = logging.getLogger("devstack.gateway")

MAX_REQUEST_BYTES = 10 * 1024 * 1024  # API Gateway's REST payload limit

LOCAL_PREFIX = "/_local/"
ADMIN_GROUP = "loyalty-admins"
SERVICE_GROUP = "loyalty-services"
_DEV_TOKEN = re.compile(r"^dev:(member|user|admin|service):([A-Za-z0-9][A-Za-z0-9_.@+=-]{0,127})$")


# --- Routing ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    event: ApiEvent
    stage: str

    @property
    def segments(self) -> tuple[str, ...]:
        return _split(self.event.path)


def _split(path: str) -> tuple[str, ...]:
    return tuple(s for s in path.strip("/").split("/") if s)


def _segment_kind(segment: str) -> int:
    if segment.startswith("{") and segment.endswith("+}"):
        return 2  # greedy {proxy+}
    if segment.startswith("{") and segment.endswith("}"):
        return 1
    return 0  # literal: most specific


def _match(template: tuple[str, ...], path: tuple[str, ...]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for index, segment in enumerate(template):
        kind = _segment_kind(segment)
        if kind == 2:
            rest = path[index:]
            if not rest:
                return None
            params[segment[1:-2]] = "/".join(rest)
            return params
        if index >= len(path):
            return None
        if kind == 1:
            params[segment[1:-1]] = path[index]
        elif segment != path[index]:
            return None
    return params if len(template) == len(path) else None


class RouteNotFound(Exception):
    pass


class MethodNotFound(Exception):
    pass


class Router:
    """API Gateway's choice: the most specific resource whose path matches (literal segments beat parameters,
    parameters beat {proxy+}), then the method on it (ANY if declared). No fallback to a less specific resource."""

    def __init__(self, routes: Iterable[Route]):
        self.resources: dict[tuple[str, ...], dict[str, Route]] = {}
        for route in routes:
            methods = self.resources.setdefault(route.segments, {})
            if route.event.method in methods:
                other = methods[route.event.method].event
                log.warning(
                    "%s %s is declared twice (%s.%s and %s.%s): the first wins",
                    route.event.method,
                    route.event.path,
                    other.function,
                    other.name,
                    route.event.function,
                    route.event.name,
                )
                continue
            methods[route.event.method] = route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        segments = _split(path)
        candidates = []
        for template, methods in self.resources.items():
            params = _match(template, segments)
            if params is not None:
                candidates.append((tuple(_segment_kind(s) for s in template), template, params, methods))
        if not candidates:
            raise RouteNotFound(path)
        _, _, params, methods = min(candidates, key=lambda c: c[0])
        route = methods.get(method.upper()) or methods.get("ANY")
        if route is None:
            raise MethodNotFound(f"{method} {path}")
        return route, params


# --- Authorizer ---------------------------------------------------------------------------------------------------


def claims_for_token(
    authorization: str | None, admin_group: str = ADMIN_GROUP, service_group: str = SERVICE_GROUP
) -> dict[str, str] | None:
    """The Cognito ID-token claims a development token stands for; None if the token is missing or malformed.

    dev:member:<member_id>, dev:user:<sub> (signed up, not enrolled), dev:admin:<name>, dev:service:<name>.
    """
    if not authorization:
        return None
    token = authorization.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    match = _DEV_TOKEN.match(token)
    if match is None:
        return None
    role, subject = match.groups()
    claims = {"sub": subject, "cognito:username": subject}
    if role == "member":
        claims["custom:member_id"] = subject
    elif role == "admin":
        claims["cognito:groups"] = admin_group
    elif role == "service":
        claims["cognito:groups"] = service_group
    claims["token_use"] = "id"  # noqa: S105 - a claim name, not a secret
    return claims


# --- The proxy event and response ---------------------------------------------------------------------------------


def build_proxy_event(
    route: Route,
    method: str,
    path: str,
    path_parameters: Mapping[str, str],
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str = "127.0.0.1",
    claims: Mapping[str, str] | None = None,
    host: str = "localhost",
    request_id: str | None = None,
    stage_prefix: str = "",
) -> dict[str, Any]:
    """The event API Gateway's Lambda proxy integration (REST API, payload 1.0) sends for this request.
    `stage_prefix` is "/<stage>" when the request named the stage in its path (the execute-api address), as
    requestContext.path then carries it; "" when it came to the root (a custom domain's base path mapping)."""
    single_headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in headers:
        single_headers[name] = value  # the last one wins, as on API Gateway
        multi_headers.setdefault(name, []).append(value)
    single_query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in query:
        single_query[name] = value
        multi_query.setdefault(name, []).append(value)
    if body:
        try:
            text_body: str | None = body.decode("utf-8")
            is_base64 = False
        except UnicodeDecodeError:
            text_body, is_base64 = base64.b64encode(body).decode("ascii"), True
    else:
        text_body, is_base64 = None, False
    now = time.time()
    request_context: dict[str, Any] = {
        "resourceId": "local",
        "resourcePath": route.event.path,
        "httpMethod": method,
        "extendedRequestId": uuid.uuid4().hex[:16],
        "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "path": f"{stage_prefix}{path}",
        "accountId": ACCOUNT_ID,
        "protocol": "HTTP/1.1",
        "stage": route.stage,
        "domainPrefix": host.split(".")[0].split(":")[0],
        "requestTimeEpoch": int(now * 1000),
        "requestId": request_id or str(uuid.uuid4()),
        "identity": {
            "cognitoIdentityPoolId": None,
            "accountId": None,
            "cognitoIdentityId": None,
            "caller": None,
            "sourceIp": source_ip,
            "principalOrgId": None,
            "accessKey": None,
            "cognitoAuthenticationType": None,
            "cognitoAuthenticationProvider": None,
            "userArn": None,
            "userAgent": single_headers.get("User-Agent") or _header(single_headers, "user-agent"),
            "user": None,
        },
        "domainName": host,
        "apiId": "local",
    }
    if claims is not None:
        request_context["authorizer"] = {"claims": dict(claims)}
    return {
        "resource": route.event.path,
        "path": path,
        "httpMethod": method,
        "headers": single_headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": single_query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": request_context,
        "body": text_body,
        "isBase64Encoded": is_base64,
    }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


@dataclass
class HttpAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class MalformedProxyResponse(ValueError):
    pass


def answer_from_proxy_response(response: Any) -> HttpAnswer:
    """What API Gateway sends back for a Lambda proxy response (a malformed one is a 502, as on AWS)."""
    if not isinstance(response, dict):
        raise MalformedProxyResponse(f"the handler returned {type(response).__name__}, not a proxy response dict")
    try:
        status = int(response.get("statusCode", 200))
    except (TypeError, ValueError) as error:
        raise MalformedProxyResponse(f"statusCode {response.get('statusCode')!r} is not a number") from error
    headers: list[tuple[str, str]] = [(str(k), str(v)) for k, v in (response.get("headers") or {}).items()]
    single = {k.lower() for k, _ in headers}
    for name, values in (response.get("multiValueHeaders") or {}).items():
        if str(name).lower() in single:
            headers = [(k, v) for k, v in headers if k.lower() != str(name).lower()]
        headers.extend((str(name), str(v)) for v in values)
    body = response.get("body")
    if body is None:
        raw = b""
    elif response.get("isBase64Encoded"):
        raw = base64.b64decode(str(body))
    else:
        raw = str(body).encode("utf-8")
    if raw and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return HttpAnswer(status, headers, raw)


def gateway_answer(status: int, message: str, error_type: str) -> HttpAnswer:
    """API Gateway's default answer, for an API whose template declares no GatewayResponses."""
    body = json.dumps({"message": message}).encode()
    return HttpAnswer(status, [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)], body)


# Response type, default status and API Gateway's message, for the answers the local gateway gives itself.
GATEWAY_RESPONSE_TYPES = {
    "MISSING_AUTHENTICATION_TOKEN": (403, "Missing Authentication Token", "MissingAuthenticationTokenException"),
    "UNAUTHORIZED": (401, "Unauthorized", "UnauthorizedException"),
    "REQUEST_TOO_LARGE": (413, "Request Too Long", "RequestTooLongException"),
    "DEFAULT_5XX": (502, "Internal server error", "InternalServerErrorException"),
}


@dataclass(frozen=True)
class GatewayResponses:
    """An API's `GatewayResponses` (AWS::Serverless::Api): per response type a status, headers and a body template.

    A type without an entry falls back to DEFAULT_4XX or DEFAULT_5XX by its status, then to API Gateway's own
    `{"message": ...}`. Header values are API Gateway's mapping expressions: `'literal'` or
    `method.request.header.<name>`; the body templates may use `$context.error.messageString` (the message as a
    JSON string), `$context.error.message` and `$context.requestId`.
    """

    entries: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def answer(self, kind: str, request_headers: list[tuple[str, str]], request_id: str = "") -> HttpAnswer:
        status, message, error_type = GATEWAY_RESPONSE_TYPES[kind]
        entry = self.entries.get(kind) or self.entries.get("DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX")
        if entry is None:
            return gateway_answer(status, message, error_type)
        status = int(entry.get("StatusCode") or status)
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", error_type)]
        for name, expression in ((entry.get("ResponseParameters") or {}).get("Headers") or {}).items():
            value = _mapping_value(str(expression), request_headers)
            if value is not None:
                headers.append((str(name), value))
        template = str((entry.get("ResponseTemplates") or {}).get("application/json") or "")
        if not template:
            return HttpAnswer(status, headers, json.dumps({"message": message}).encode())
        body = (
            template.replace("$context.error.messageString", json.dumps(message))
            .replace("$context.error.message", message)
            .replace("$context.requestId", request_id)
        )
        return HttpAnswer(status, headers, body.encode())


def _mapping_value(expression: str, request_headers: list[tuple[str, str]]) -> str | None:
    if len(expression) >= 2 and expression[0] == expression[-1] == "'":
        return expression[1:-1]
    prefix = "method.request.header."
    if expression.lower().startswith(prefix):
        wanted = expression[len(prefix) :].lower()
        return next((v for k, v in request_headers if k.lower() == wanted), None)
    return None


# --- The server ---------------------------------------------------------------------------------------------------


@dataclass
class LocalRoutes:
    """What the /_local/ routes answer with (the stack provides these)."""

    status: Callable[[], dict[str, Any]]
    events: Callable[[str | None], list[dict[str, Any]]]
    fire_schedule: Callable[[str, str], Any]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    gateway: Gateway


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _serve(self) -> None:
        started = time.perf_counter()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        try:
            if length > MAX_REQUEST_BYTES:
                self.close_connection = True  # the body is not read: the connection cannot be reused
                answer = self.server.gateway.responses.answer("REQUEST_TOO_LARGE", list(self.headers.items()))
            else:
                body = self.rfile.read(length) if length > 0 else b""
                answer = self.server.gateway.handle(
                    self.command, self.path, list(self.headers.items()), body, self.client_address[0]
                )
        except Exception:
            log.exception("the local gateway failed on %s %s", self.command, self.path)
            answer = gateway_answer(500, "Internal server error", "InternalServerErrorException")
        self.send_response(answer.status)
        for name, value in answer.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info("%s %s %d %.0fms", self.command, self.path, answer.status, elapsed_ms)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve


class Gateway:
    """The HTTP server. `start()` binds 127.0.0.1:port (a free port if 0); `url` is the API's base URL."""

    def __init__(
        self,
        routes: Iterable[Route],
        functions: FunctionHost,
        local: LocalRoutes | None = None,
        host: str = "127.0.0.1",
        port: int = 3000,
        groups: Mapping[str, str] | None = None,
        responses: GatewayResponses | None = None,
    ):
        self.router = Router(routes)
        self.responses = responses or GatewayResponses()
        self.stages = {route.stage for methods in self.router.resources.values() for route in methods.values()}
        self.groups = {"admin": ADMIN_GROUP, "service": SERVICE_GROUP, **(groups or {})}
        self.functions = functions
        self.local = local
        self.host = host
        self.port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Gateway:
        server = _Server((self.host, self.port), _RequestHandler)
        server.gateway = self
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="devstack-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    # the request

    def handle(
        self, method: str, raw_target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str = "127.0.0.1"
    ) -> HttpAnswer:
        target = urlsplit(raw_target)
        path = unquote(target.path) or "/"
        if len(path) > 1:
            path = path.rstrip("/") or "/"
        query = parse_qsl(target.query, keep_blank_values=True)
        if path.startswith(LOCAL_PREFIX) or path == LOCAL_PREFIX.rstrip("/"):
            return self._local(method, path, query)
        if path == "/" and method in ("GET", "HEAD"):
            return self._home()
        stage_prefix = ""
        first = "/" + path.strip("/").split("/", 1)[0]
        if first[1:] in self.stages:  # the execute-api address: https://<api>.execute-api.<region>/<stage>/v1/...
            stage_prefix, path = first, path[len(first) :] or "/"
        request_id = str(uuid.uuid4())
        try:
            route, params = self.router.match(method, path)
        except (RouteNotFound, MethodNotFound):
            return self.responses.answer("MISSING_AUTHENTICATION_TOKEN", headers, request_id)
        claims = None
        if route.event.protected:
            authorization = next((v for k, v in headers if k.lower() == "authorization"), None)
            claims = claims_for_token(authorization, self.groups["admin"], self.groups["service"])
            if claims is None:
                return self.responses.answer("UNAUTHORIZED", headers, request_id)
        host = next((v for k, v in headers if k.lower() == "host"), f"{self.host}:{self.port}")
        headers = _with_forwarding_headers(headers, source_ip, self.port)
        event = build_proxy_event(
            route, method, path, params, query, headers, body, source_ip, claims, host, request_id, stage_prefix
        )
        try:
            response = self.functions.invoke(route.event.function, event)
            answer = answer_from_proxy_response(response)
        except InvocationError as error:
            log.error("%s failed on %s %s:\n%s", error.function, method, path, "".join(error.stack_trace).rstrip())
            answer = self.responses.answer("DEFAULT_5XX", headers, request_id)
        except MalformedProxyResponse as error:
            log.error("%s gave a malformed proxy response on %s %s: %s", route.event.function, method, path, error)
            answer = self.responses.answer("DEFAULT_5XX", headers, request_id)
        except Exception:
            log.exception("%s could not run on %s %s", route.event.function, method, path)
            answer = self.responses.answer("DEFAULT_5XX", headers, request_id)
        answer.headers.append(("x-amzn-RequestId", request_id))
        return answer

    def _home(self) -> HttpAnswer:
        """`/` on the local stack: where to start (API Gateway itself has no such page)."""
        docs = [
            e.event.path
            for methods in self.router.resources.values()
            for e in methods.values()
            if e.event.method == "GET" and not e.event.protected
        ]
        links = "".join(f'<li><a href="{p}">{p}</a></li>' for p in sorted(docs))
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Serverless Loyalty, local stack</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}}
code{{background:#f3f3f3;padding:0 .25rem}}</style></head>
<body><h1>Serverless Loyalty, local stack</h1>
<p>The API answers here at the root (<code>/v1/...</code>) and under its stage
(<code>/{"/".join(sorted(self.stages)) or "prod"}/v1/...</code>), as API Gateway does.</p>
<h2>API documents</h2><ul>{links}</ul>
<p>The admin API's document is at <a href="/v1/admin/openapi.json">/v1/admin/openapi.json</a> (admin token).
In Swagger UI, <em>Authorize</em> with a development token: <code>dev:member:&lt;member_id&gt;</code>,
<code>dev:user:&lt;sub&gt;</code>, <code>dev:admin:&lt;name&gt;</code> or <code>dev:service:&lt;name&gt;</code>.</p>
<h2>The stack</h2><ul>
<li><a href="/_local/status">/_local/status</a>: emulators, functions, pollers</li>
<li><a href="/_local/events">/_local/events</a>: the domain events published to the bus
(<code>?detail_type=PointsEarned</code>)</li>
<li><code>POST /_local/schedules/&lt;FunctionLogicalId&gt;/&lt;EventName&gt;</code>: fire a schedule now</li>
<li>Commerce events: <code>make order ARGS="placed --customer cust-1001 --order web-1 --amount 80 --currency USD"</code>
</li></ul></body></html>
"""
        return HttpAnswer(200, [("Content-Type", "text/html; charset=utf-8")], page.encode())

    def _local(self, method: str, path: str, query: list[tuple[str, str]]) -> HttpAnswer:
        def reply(status: int, payload: Any) -> HttpAnswer:
            body = json.dumps(payload, indent=2, default=str).encode()
            return HttpAnswer(status, [("Content-Type", "application/json")], body)

        if self.local is None:
            return reply(404, {"message": "no local routes on this gateway"})
        parts = _split(path)
        if method == "GET" and parts == ("_local", "status"):
            return reply(200, self.local.status())
        if method == "GET" and parts == ("_local", "events"):
            detail_type = dict(query).get("detail_type")
            return reply(200, {"events": self.local.events(detail_type)})
        if method == "POST" and len(parts) == 4 and parts[:2] == ("_local", "schedules"):
            try:
                result = self.local.fire_schedule(parts[2], parts[3])
            except KeyError as error:
                return reply(404, {"message": str(error.args[0] if error.args else error)})
            except InvocationError as error:
                return reply(502, {"message": str(error), "error": error.payload()})
            return reply(200, {"function": parts[2], "event": parts[3], "result": result})
        return reply(
            404,
            {
                "message": f"no local route {method} {path}",
                "routes": [
                    "GET /_local/status",
                    "GET /_local/events[?detail_type=X]",
                    "POST /_local/schedules/<FunctionLogicalId>/<EventName>",
                ],
            },
        )


def _with_forwarding_headers(headers: list[tuple[str, str]], source_ip: str, port: int) -> list[tuple[str, str]]:
    """API Gateway adds X-Forwarded-For/-Port/-Proto; so does the local one (unless the caller sent them)."""
    present = {k.lower() for k, _ in headers}
    extra = [("X-Forwarded-For", source_ip), ("X-Forwarded-Port", str(port)), ("X-Forwarded-Proto", "http")]
    return list(headers) + [(k, v) for k, v in extra if k.lower() not in present]
