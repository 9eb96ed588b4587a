"""A points job's state machine as the template deploys it (the tier review, the daily expiry): on moto's ASL
interpreter, its Lambda tasks run by its function's handler in this process, on the template's table (moto)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.resources import create_resources
from devstack.states import StepFunctionsServer, TemplateJob
from devstack.template import Resolver
from loyalty import runtime
from tests.integration.conftest import TEMPLATE
from tests.integration.test_functions_events import load_handler


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "roster-job", 512, "roster-job"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:roster-job"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@contextmanager
def roster_job(
    state_machine: str, function: str, handler: str, environment: dict[str, str]
) -> Iterator[tuple[TemplateJob, Any]]:
    """The job and the points service its tasks use, with `environment` over the function's own."""
    with mock_aws(), pytest.MonkeyPatch.context() as patch:
        server = StepFunctionsServer()
        try:
            resolver = Resolver(TEMPLATE, f"{handler.replace('_', '-')}-{uuid.uuid4().hex[:8]}")
            create_resources(resolver, lambda service: boto3.client(service, region_name="us-east-1"))
            for name, value in TEMPLATE.function(function).environment.items():
                patch.setenv(name, str(resolver.resolve(value)))
            patch.setenv("TABLE_NAME", str(resolver.resolve({"Ref": "LoyaltyTable"})))
            for name, value in environment.items():
                patch.setenv(name, value)
            runtime.reset()
            module = load_handler(handler)
            job = TemplateJob(
                server,
                TEMPLATE,
                state_machine,
                {function: lambda event: module.lambda_handler(event, Context())},
                stack_name=resolver.stack_name,
            )
            yield job, runtime.loyalty_service()
            job.close()
        finally:
            server.stop()
            runtime.reset()
