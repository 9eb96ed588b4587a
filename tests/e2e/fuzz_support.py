"""What the contract fuzzing needs besides schemathesis: a stack of its own, the callers, and who may call what.

The fuzzing writes whatever the documents allow (members, activities, segment definitions, program settings), so it
runs on a stack of its own, in a child process: the session's `stack` fixture and the other end-to-end tests never
see its data, and the child's environment (endpoints, table names) never leaks into this process.

    python -m tests.e2e.fuzz_support     # a seeded moto stack on a free port; prints its URL; stops at stdin's end
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "dev:admin:fuzz-ops"
SERVICE_TOKEN = "dev:service:fuzz-commerce"
READY_TIMEOUT_S = 120
READY = "fuzz-stack-ready "  # the line the child prints once the stack is up (other output may come first)

# Examples per operation and caller. `make test` runs a few, seeded; FUZZ_EXAMPLES=500 (make fuzz) runs many more,
# and adds schemathesis' coverage phase (boundary values, missing and malformed parts, each field in turn).
DEFAULT_EXAMPLES = 6
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)
LONG_RUN = EXAMPLES > DEFAULT_EXAMPLES
SEED = int(os.environ.get("FUZZ_SEED") or 20260101)


# --- the stack, in a child process


def _serve() -> int:
    """The child: a seeded moto stack on a free port until stdin closes."""
    from devstack.seed import seed
    from devstack.stack import LocalStack

    with LocalStack(root=ROOT, dynamodb="moto", port=0, seed=seed) as stack:
        print(READY + json.dumps({"api_url": stack.api_url}), flush=True)
        sys.stdin.read()  # the parent closes it (or dies)
    return 0


# Only what a Python process needs: nothing of the parent's emulator endpoints, credentials or table names.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "SYSTEMROOT", "VIRTUAL_ENV")


@contextmanager
def child_stack(log_path: Path) -> Iterator[str]:
    """Start `python -m tests.e2e.fuzz_support`, yield its API URL, stop it. Its logs go to log_path."""
    env = {name: os.environ[name] for name in _INHERITED if name in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    with open(log_path, "w", encoding="utf-8") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.fuzz_support"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            assert child.stdout is not None
            ready: list[str] = []
            up = threading.Event()

            def read_stdout() -> None:  # to the log, all of it, so the child never blocks on a full pipe
                assert child.stdout is not None
                for line in child.stdout:
                    if line.startswith(READY) and not ready:
                        ready.append(line[len(READY) :])
                        up.set()
                    else:
                        log.write(line)
                        log.flush()
                up.set()

            threading.Thread(target=read_stdout, daemon=True).start()
            up.wait(READY_TIMEOUT_S)
            if not ready:
                raise RuntimeError(f"the fuzzing stack did not start (exit {child.poll()}); its log: {log_path}")
            yield str(json.loads(ready[0])["api_url"])
        finally:
            # Everything the child holds is in its memory (moto in a thread, no DynamoDB Local): nothing to save.
            child.terminate()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# --- the data the callers reach


@dataclass
class Fixtures:
    """Known ids, so that generated path parameters often name something that exists."""

    api_url: str = ""
    member_id: str = ""  # enrolled through the API, with points to spend
    other_member_id: str = ""  # another enrolled member: its token must not reach member_id
    reward_ids: list[str] = field(default_factory=list)
    segment_ids: list[str] = field(default_factory=list)  # as members carry them: rfm:<id>, rule:<slug>, ...
    definition_ids: list[str] = field(default_factory=list)  # marketer-defined segments' slugs
    run_ids: list[str] = field(default_factory=list)
    log_path: str = ""  # the child stack's log: handler tracebacks behind a 5xx


KNOWN = Fixtures()


def _call(base: str, method: str, path: str, token: str, body: Any = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return requests.request(method, base + path, json=body, headers=headers, timeout=60)


def _ok(response: requests.Response, *statuses: int) -> Any:
    if response.status_code not in statuses:
        raise RuntimeError(f"{response.request.method} {response.url}: {response.status_code} {response.text[:500]}")
    return response.json()


RULE_SEGMENTS = ("fuzz-vib", "fuzz-rouge", "fuzz-consenting")
VALID_RULE = {"field": "tier", "op": "in", "value": ["VIB", "Rouge"]}


def _ids(base: str, path: str, key: str, id_key: str) -> list[str]:
    response = _call(base, "GET", path, ADMIN_TOKEN)
    try:
        items = response.json()[key] if response.status_code == 200 else []
        return sorted({str(item[id_key]) for item in items})
    except (ValueError, KeyError, TypeError):
        return []


def prepare(api_url: str) -> Fixtures:
    """Two members (the first with points), three rule segments, and the ids of what the stack knows."""
    KNOWN.api_url = api_url
    for attribute in ("member_id", "other_member_id"):
        body = {"external_id": f"fuzz-{uuid.uuid4().hex[:12]}", "consent": {"email": True, "profiling": True}}
        member = _ok(_call(api_url, "POST", "/v1/members", ADMIN_TOKEN, body), 201)
        setattr(KNOWN, attribute, member["member_id"])
    purchase = {"type": "purchase", "order_id": f"fuzz-{uuid.uuid4().hex[:12]}", "amount": "5000", "currency": "USD"}
    _ok(_call(api_url, "POST", f"/v1/members/{KNOWN.member_id}/activities", SERVICE_TOKEN, purchase), 201)
    # Marketer-defined segments to replace and delete (the fuzzing's DELETEs get their 204 on these).
    for slug in RULE_SEGMENTS:
        body = {"name": f"Fuzz {slug}", "rule": VALID_RULE}
        _ok(_call(api_url, "PUT", f"/v1/admin/segment-definitions/{slug}", ADMIN_TOKEN, body), 200, 201)
    # The ids the stack already knows. An answer of another shape leaves a list empty; the fuzzing of that same
    # route reports the answer.
    KNOWN.reward_ids = _ids(api_url, "/v1/rewards", "rewards", "reward_id")
    KNOWN.segment_ids = _ids(api_url, "/v1/admin/segments", "segments", "segment_id")
    KNOWN.definition_ids = _ids(api_url, "/v1/admin/segment-definitions", "segments", "segment_id")
    KNOWN.run_ids = _ids(api_url, "/v1/admin/segment-refreshes", "runs", "run_id")
    return KNOWN


# --- the callers, and who may call what


@dataclass(frozen=True)
class Role:
    name: str
    description: str

    def token(self) -> str | None:
        return {
            "member": f"dev:member:{KNOWN.member_id}",
            "other-member": f"dev:member:{KNOWN.other_member_id}",
            "admin": ADMIN_TOKEN,
            "service": SERVICE_TOKEN,
            "anonymous": None,
        }[self.name]

    def headers(self) -> dict[str, str]:
        token = self.token()
        return {"Authorization": f"Bearer {token}"} if token else {}


MEMBER = Role("member", "the member the generated member ids mostly name")
OTHER_MEMBER = Role("other-member", "another member, on the first member's routes")
ADMIN = Role("admin", "an admin")
SERVICE = Role("service", "a server caller (commerce system)")
ANONYMOUS = Role("anonymous", "no Authorization header")

MEMBERS_API_ROLES = (MEMBER, OTHER_MEMBER, ADMIN, SERVICE, ANONYMOUS)
ADMIN_API_ROLES = (ADMIN, MEMBER)

# Who passes each route's gate, which is decided before the request's body is read: anyone else gets 401 without a
# token and 403 with one, whatever the request looks like. "owner": a member on its own member id.
PUBLIC = frozenset({"anonymous", "member", "other-member", "admin", "service"})
SIGNED_IN = PUBLIC - {"anonymous"}
STAFF = frozenset({"admin", "service"})
MEMBER_OR_STAFF = STAFF | {"owner"}
MEMBERS_API_GATES: dict[str, frozenset[str]] = {
    "POST /v1/members": SIGNED_IN,
    "GET /v1/members/{member_id}": MEMBER_OR_STAFF,
    "POST /v1/members/{member_id}/activities": STAFF,
    "GET /v1/members/{member_id}/ledger": MEMBER_OR_STAFF,
    "GET /v1/members/{member_id}/prediction": STAFF,
    "POST /v1/members/{member_id}/redemptions": MEMBER_OR_STAFF,
    "GET /v1/members/{member_id}/segments": MEMBER_OR_STAFF,
    "PATCH /v1/members/{member_id}/profile": MEMBER_OR_STAFF,
    "PUT /v1/members/{member_id}/consents/{channel}": MEMBER_OR_STAFF,
    "GET /v1/members/{member_id}/consents": MEMBER_OR_STAFF,
    "GET /v1/rewards": SIGNED_IN,
    "GET /v1/openapi.json": PUBLIC,
}
ADMIN_API_GATE = frozenset({"admin"})
# Past the gate, still never a 2xx: a member enrolls only itself (external_id equal to its token's subject), which a
# generated external id never is; a refusal that reads the body may come after the body's own 4xx.
REFUSED_BY_BODY: dict[str, frozenset[str]] = {"POST /v1/members": frozenset({"member", "other-member"})}


def _passes_gate(role: Role, gate: frozenset[str], path_parameters: dict[str, Any] | None) -> bool:
    if role.name in gate:
        return True
    token_member = {"member": KNOWN.member_id, "other-member": KNOWN.other_member_id}.get(role.name)
    return "owner" in gate and token_member is not None and (path_parameters or {}).get("member_id") == token_member


def refusal(role: Role, operation: str, path_parameters: dict[str, Any] | None, admin_api: bool) -> int | None:
    """The status the gate refuses this caller with (401, 403), or None if the caller gets past it."""
    gate = ADMIN_API_GATE if admin_api else MEMBERS_API_GATES[operation]
    if _passes_gate(role, gate, path_parameters):
        return None
    return 401 if role.token() is None else 403


def may_succeed(role: Role, operation: str, path_parameters: dict[str, Any] | None, admin_api: bool) -> bool:
    if refusal(role, operation, path_parameters, admin_api) is not None:
        return False
    return admin_api or role.name not in REFUSED_BY_BODY.get(operation, frozenset())


if __name__ == "__main__":
    sys.exit(_serve())
