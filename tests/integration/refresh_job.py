"""The segment refresh's state machine, from template.yaml, executed by moto's ASL interpreter in this process, its
Lambda tasks run by a handler the test gives (devstack.states routes moto's Lambda Invoke to it).

The member data stays where the test keeps it (DynamoDB Local): only Step Functions and Lambda are moto's here.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devstack.states import StepFunctionsServer, TemplateJob
from loyalty.adapters.step_functions import JobExecutions
from tests.integration.conftest import TEMPLATE

__all__ = ["RefreshJob", "StepFunctionsServer", "step_functions"]


@pytest.fixture(scope="session")
def step_functions() -> Iterator[StepFunctionsServer]:
    server = StepFunctionsServer()
    try:
        yield server
    finally:
        server.stop()


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
