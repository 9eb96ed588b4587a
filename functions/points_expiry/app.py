"""The daily points expiry's tasks: every task of statemachines/points_expiry.asl.json invokes this function with its
step (`{"step": "begin" | "expire", ...}`); the answer is the task's output. What each step does and why it is safe
to run again: loyalty.points.expiry, docs/expiry.md."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty.core.observability import invocation, metrics
from loyalty.runtime import points_expiry


@metrics.log_metrics
@invocation()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return points_expiry().handle(event, time_left=lambda: context.get_remaining_time_in_millis() / 1000)
