"""The segment refresh's tasks: every task of the state machine statemachines/segment_refresh.asl.json invokes this
function with the step to run (`{"step": "begin" | "scan" | "merge" | "score" | "finish", ...}`); the answer is the
task's output. What each step does, and why each is safe to run again: loyalty.segments.refresh, docs/refresh.md.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty.adapters.step_functions import JobExecutions
from loyalty.core.settings import settings
from loyalty.runtime import client, segmentation_service
from loyalty.segments.refresh import SegmentRefresh

logger = Logger()


def refresh() -> SegmentRefresh:
    """Light: the service and its clients are built once per container (loyalty.runtime)."""
    config = settings()
    return SegmentRefresh(
        segmentation_service(), page_size=config.refresh_page_size, reserve_seconds=config.refresh_reserve_seconds
    )


@cache
def executions() -> JobExecutions:
    # Only asked about the execution of a run that holds the one-run slot, by its ARN.
    return JobExecutions(client("stepfunctions"), settings().refresh_state_machine_arn)


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Metrics of the refresh (shares, pages, members, changes) belong here, beside the logger.
    return refresh().handle(
        event,
        workers=settings().refresh_workers,
        still_running=lambda arn: executions().is_running(arn),
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
