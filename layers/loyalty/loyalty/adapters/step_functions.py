"""Step Functions adapter: a job's executions, named by their run id (docs/refresh.md).

An execution's name is its run id, so starting the same run twice finds the execution already there instead of
running it twice: Step Functions answers a repeated StartExecution of a running execution (same name, same input)
with that execution, and refuses one whose execution has ended (ExecutionAlreadyExists), which is taken here as
"already started" too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

RUNNING = "RUNNING"


def execution_arn(state_machine_arn: str, name: str) -> str:
    """The ARN Step Functions gives the execution `name` of a standard state machine."""
    prefix, separator, machine = state_machine_arn.partition(":stateMachine:")
    if not separator:
        raise ValueError(f"not a state machine ARN: {state_machine_arn!r}")
    return f"{prefix}:execution:{machine}:{name}"


class JobExecutions:
    """The executions of one state machine. `client` is a boto3 Step Functions client."""

    def __init__(self, client: Any, state_machine_arn: str):
        self._client = client
        self.state_machine_arn = state_machine_arn

    def execution_arn(self, name: str) -> str:
        return execution_arn(self.state_machine_arn, name)

    def start(self, name: str, job_input: Mapping[str, Any]) -> str:
        """Start the execution `name` with `job_input`, or find it started already. Returns its ARN."""
        try:
            started = self._client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=name,
                input=json.dumps(dict(job_input), separators=(",", ":"), sort_keys=True),
            )
        except self._client.exceptions.ExecutionAlreadyExists:
            return self.execution_arn(name)
        return str(started["executionArn"])

    def status(self, arn: str) -> str | None:
        """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED (or PENDING_REDRIVE); None for no such execution."""
        if not arn:
            return None
        try:
            return str(self._client.describe_execution(executionArn=arn)["status"])
        except self._client.exceptions.ExecutionDoesNotExist:
            return None

    def is_running(self, arn: str) -> bool:
        return self.status(arn) in (RUNNING, "PENDING_REDRIVE")
