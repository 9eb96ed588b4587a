"""Contract fuzzing: the committed OpenAPI documents against the local stack, over HTTP, for every caller.

For each operation of openapi.json (members API) and openapi.admin.json (admin API), and each caller that may or
may not call it, schemathesis generates requests from the document (valid ones and invalid ones) and checks every
answer: never a 5xx; a status, content type, headers and body the document declares for that operation; and the
caller's access: a caller the operation is not for is refused (401 without a token, 403 with one), whatever the
request looks like.

Bounded for `make test`: a few examples per operation and caller, derandomized (the same requests on every run).
FUZZ_EXAMPLES=500 (make fuzz) runs many more and adds schemathesis' coverage phase; FUZZ_SEED changes the seed.
The stack is a seeded moto stack of its own, in a child process (tests/e2e/fuzz_support.py): the fuzzing writes
whatever the documents allow, and no other test sees it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import requests
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.generation.meta import CONTENT_TYPE_PROBES, coverage_scenario
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e import fuzz_support
from tests.e2e.fuzz_support import (
    ADMIN_API_ROLES,
    EXAMPLES,
    KNOWN,
    LONG_RUN,
    MEMBERS_API_ROLES,
    ROOT,
    SEED,
    VALID_RULE,
    Role,
    may_succeed,
    refusal,
)

DOCUMENTS: dict[str, dict[str, Any]] = {}  # the documents as committed, for what schemathesis does not check

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def _load(document: str) -> Any:
    DOCUMENTS[document] = json.loads((ROOT / document).read_text(encoding="utf-8"))
    schema = schemathesis.openapi.from_path(ROOT / document, config=schemathesis.Config(seed=SEED))
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=EXAMPLES,
        deterministic=True,  # the same requests on every run
        database="none",  # and none remembered from an earlier one
        with_security_parameters=False,  # the caller's token comes from the role, never generated
    )
    schema.config.phases.update(phases=["examples", "fuzzing", *(["coverage"] if LONG_RUN else [])])
    return schema


# make test's per-test timeout fits the bounded run; a long run takes what it takes (one operation and caller can
# run for many minutes at FUZZ_EXAMPLES=500 with the coverage phase).
pytestmark = pytest.mark.timeout(0 if LONG_RUN else 300)

MEMBERS_API = _load("openapi.json")
ADMIN_API = _load("openapi.admin.json")


# --- generated path parameters often name something that exists, so the fuzzing gets past 404


def _often(path_parameters: dict[str, Any], name: str, known: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    if name not in path_parameters or not known:
        return st.just(path_parameters)
    return st.one_of(st.just(path_parameters), st.sampled_from([{**path_parameters, name: v} for v in known]))


@MEMBERS_API.hook("flatmap_path_parameters")
def _members_path(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    return _often(path_parameters or {}, "member_id", [KNOWN.member_id])


def _often_in_body(body: Any, name: str, known: list[Any]) -> st.SearchStrategy[Any]:
    if not isinstance(body, dict) or name not in body or not known:
        return st.just(body)
    return st.one_of(st.just(body), st.sampled_from([{**body, name: v} for v in known]))


@MEMBERS_API.hook("flatmap_body")
def _known_reward(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """Redemptions often name a reward of the catalog (the member has the points for the cheaper ones)."""
    path = context.operation.path if context.operation is not None else ""
    return _often_in_body(body, "reward_id", KNOWN.reward_ids) if path.endswith("/redemptions") else st.just(body)


@ADMIN_API.hook("flatmap_body")
def _valid_rule(context: Any, body: Any) -> st.SearchStrategy[Any]:
    """Segment definitions often carry a rule the validator takes, so they get stored (200, 201), not only 422."""
    path = context.operation.path if context.operation is not None else ""
    return _often_in_body(body, "rule", [VALID_RULE]) if "segment-definitions" in path else st.just(body)


@ADMIN_API.hook("flatmap_path_parameters")
def _admin_path(context: Any, path_parameters: dict[str, Any] | None) -> st.SearchStrategy[Any]:
    path = context.operation.path if context.operation is not None else ""
    parameters = path_parameters or {}
    if "segment-definitions" in path:
        return _often(parameters, "segment_id", KNOWN.definition_ids)
    if "run_id" in parameters:
        return _often(parameters, "run_id", KNOWN.run_ids)
    if "reward_id" in parameters:
        return _often(parameters, "reward_id", KNOWN.reward_ids)
    return _often(parameters, "segment_id", KNOWN.segment_ids)


# --- the stack


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("contract-fuzz") / "stack.log"  # the handlers' logs and tracebacks
    KNOWN.log_path = str(log)
    with fuzz_support.child_stack(log) as api_url:
        fuzz_support.prepare(api_url)
        yield api_url


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


# --- the checks


def _access(role: Role, admin_api: bool) -> Callable[..., None]:
    """A caller the route is not for gets 401 (no token) or 403 (a token), whatever the request; never a 2xx."""

    def caller_is_refused(ctx: Any, response: Any, case: Any) -> None:
        operation = f"{case.method.upper()} {case.operation.path}"
        status = response.status_code
        expected = refusal(role, operation, case.path_parameters, admin_api)
        if expected is not None and status != expected:
            raise AssertionError(
                f"{role.name} ({role.description}) may not call {operation}: expected {expected}, got {status}"
            )
        if 200 <= status < 300 and not may_succeed(role, operation, case.path_parameters, admin_api):
            raise AssertionError(f"{role.name} ({role.description}) got {status} from {operation}")

    return caller_is_refused


def no_content_unless_documented(ctx: Any, response: Any, case: Any) -> None:
    """A status documented without content (a 204) comes without a body and without a Content-Type.

    schemathesis checks the content type only where the document lists one."""
    document = DOCUMENTS[case.operation.schema.location.rsplit("/", 1)[-1]]
    documented = document["paths"][case.operation.path][case.method.lower()]["responses"]
    entry = documented.get(str(response.status_code))
    if entry is None:
        return  # status_code_conformance reports it
    if "$ref" in entry:
        entry = document["components"]["responses"][entry["$ref"].rsplit("/", 1)[-1]]
    if entry.get("content"):
        return
    content_type = response.headers.get("content-type") or response.headers.get("Content-Type")
    if response.content or content_type:
        raise AssertionError(
            f"{response.status_code} is documented without content, but came with Content-Type {content_type} "
            f"and {len(response.content or b'')} bytes of body"
        )


def undeclared_method_refused(ctx: Any, response: Any, case: Any) -> None:
    """A method the document does not declare on a path (the coverage phase sends some) never gets a 2xx.

    OPTIONS excepted: a CORS preflight is answered on every path, and no document lists it."""
    if 200 <= response.status_code < 300 and case.method.upper() != "OPTIONS":
        raise AssertionError(
            f"{case.method.upper()} {case.operation.path} is not documented, yet answered {response.status_code}"
        )


def _server_error_log(offset: int) -> Callable[..., None]:
    """Behind a 5xx, what the stack logged meanwhile at WARNING and above: the handler's traceback."""

    def stack_log(ctx: Any, response: Any, case: Any) -> None:
        if response.status_code < 500:
            return
        with open(KNOWN.log_path, encoding="utf-8", errors="replace") as log:
            log.seek(offset)
            lines = [
                line for line in log.read().splitlines() if not line.startswith(('{"level":"INFO"', '{"level":"DEBUG"'))
            ]
        if lines:  # nothing when the gateway itself answered (not_a_server_error reports the 5xx either way)
            raise AssertionError("The stack logged:\n" + "\n".join(lines[-40:]))

    return stack_log


def probe_answer_documented(ctx: Any, response: Any, case: Any) -> None:
    """A request with a Content-Type the operation does not take (coverage phase) gets an answer the document
    declares too: schemathesis itself checks only its status there."""
    if coverage_scenario(case) in CONTENT_TYPE_PROBES:
        case.operation.validate_response(response, case=case)


def _exercise(case: Any, role: Role, api_url: str, http: requests.Session, admin_api: bool) -> None:
    headers = role.headers()
    offset = Path(KNOWN.log_path).stat().st_size
    response = case.call(base_url=api_url, session=http, headers=headers, timeout=60)
    checks: list[Any]
    extra: list[Any]
    if case.method.upper() != case.operation.method.upper():
        # The document says nothing of the answer (API Gateway's own is 403 Missing Authentication Token).
        checks, extra = [not_a_server_error], [undeclared_method_refused, _server_error_log(offset)]
    else:
        checks = CHECKS
        extra = [_access(role, admin_api), no_content_unless_documented, probe_answer_documented]
        extra.append(_server_error_log(offset))
    case.validate_response(response, checks=checks, additional_checks=extra, headers=headers)


@pytest.mark.parametrize("role", MEMBERS_API_ROLES, ids=lambda role: role.name)
@MEMBERS_API.parametrize()
def test_members_api(case: Any, role: Role, fuzz_api: str, http: requests.Session) -> None:
    _exercise(case, role, fuzz_api, http, admin_api=False)


@pytest.mark.parametrize("role", ADMIN_API_ROLES, ids=lambda role: role.name)
@ADMIN_API.parametrize()
def test_admin_api(case: Any, role: Role, fuzz_api: str, http: requests.Session) -> None:
    _exercise(case, role, fuzz_api, http, admin_api=True)
