"""The segment refresh's state machine, from template.yaml, executed by moto's ASL interpreter in this process, its
Lambda tasks run by a handler the test gives (devstack.states routes moto's Lambda Invoke to it).

The member data stays where the test keeps it (DynamoDB Local): only Step Functions and Lambda are moto's here.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from devstack import states
from devstack.template import Resolver
from loyalty.adapters.step_functions import JobExecutions
from tests.integration.conftest import CREDENTIALS, REGION, TEMPLATE

STATE_MACHINE = "SegmentRefreshStateMachine"
FUNCTION = "SegmentRefreshFunction"


class StepFunctionsServer:
    """A moto server (a thread of this process) that executes state machines."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.port = port
        self.endpoint = f"http://{host}:{port}"
        states.enable_execution(self.endpoint)
        self.client = boto3.client("stepfunctions", region_name=REGION, endpoint_url=self.endpoint, **CREDENTIALS)

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture(scope="session")
def step_functions() -> Iterator[StepFunctionsServer]:
    server = StepFunctionsServer()
    saved = os.environ.get("MOTO_PORT")
    os.environ["MOTO_PORT"] = str(server.port)  # where the interpreter's tasks call Lambda
    try:
        yield server
    finally:
        if saved is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = saved
        server.stop()


class RefreshJob:
    """A fresh copy of the refresh's state machine (a stack name of its own) whose function runs `handler`."""

    def __init__(self, server: StepFunctionsServer, handler: Callable[[dict[str, Any]], Any]):
        self.server = server
        resolver = Resolver(TEMPLATE, stack_name=f"refresh-test-{uuid.uuid4().hex[:10]}")
        self.state_machine_arn = states.create_state_machines(resolver, server.client)[STATE_MACHINE]
        self.function_name = resolver.physical_name(FUNCTION)
        self.executions = JobExecutions(server.client, self.state_machine_arn)
        states.route_lambda_invocations({self.function_name: handler})

    def wait(self, execution_arn: str, timeout: float = 300.0) -> dict[str, Any]:
        described = states.wait_for_execution(self.server.client, execution_arn, timeout)
        assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
        return described

    def output(self, execution_arn: str, timeout: float = 300.0) -> dict[str, Any]:
        return dict(json.loads(self.wait(execution_arn, timeout)["output"]))

    def close(self) -> None:
        states.unroute_lambda_invocations([self.function_name])
