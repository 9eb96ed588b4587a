"""The segment refresh's state machine, from template.yaml, executed by moto's ASL interpreter in this process, its
Lambda tasks run by a handler the test gives (devstack.states routes moto's Lambda Invoke to it).

The member data stays where the test keeps it (DynamoDB Local): only Step Functions and Lambda are moto's here.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from devstack.states import StepFunctionsServer, TemplateJob
from loyalty.adapters.step_functions import JobExecutions
from tests.integration.conftest import TEMPLATE

__all__ = ["RefreshJob", "StepFunctionsServer", "quick_retries", "step_functions"]

RETRY_WAIT_SCALE = 0.01


@pytest.fixture(scope="session")
def step_functions() -> Iterator[StepFunctionsServer]:
    server = StepFunctionsServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The definition's Retry waits a hundredth of their seconds. moto's interpreter sleeps them for real
    (IntervalSeconds 1, BackoffRate 2: 1 + 2 + 4 s before a task's third retry); what a test checks is which attempts
    ran and what they wrote, which the wait's length does not change (the retries still come one after the other,
    after the failed attempt). Only the retrier's clock is scaled: nothing else of the interpreter sleeps."""
    from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl

    scaled = SimpleNamespace(sleep=lambda seconds: time.sleep(seconds * RETRY_WAIT_SCALE))
    monkeypatch.setattr(retrier_decl, "time", scaled)


class RefreshJob(TemplateJob):
    """A fresh copy of the refresh's state machine (a stack name of its own) whose function runs `handler`."""

    def __init__(self, server: StepFunctionsServer, handler: Callable[[dict[str, Any]], Any]):
        super().__init__(
            server,
            TEMPLATE,
            "SegmentRefreshStateMachine",
            {"SegmentRefreshFunction": handler},
            stack_name=f"refresh-test-{uuid.uuid4().hex[:10]}",
        )
        self.executions = JobExecutions(server.client, self.state_machine_arn)

    def output(self, execution_arn: str, timeout: float = 300.0) -> dict[str, Any]:
        return dict(json.loads(self.wait(execution_arn, timeout)["output"]))
