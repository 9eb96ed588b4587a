"""The segment refresh's tasks: every task of the state machine statemachines/segment_refresh.asl.json invokes this
function with the step to run (`{"step": "begin" | "scan" | "merge" | "score" | "finish", ...}`); the answer is the
task's output. What each step does, and why each is safe to run again: loyalty.segments.refresh, docs/refresh.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty.core.observability import invocation, metrics, record_refresh_run
from loyalty.core.settings import settings
from loyalty.runtime import refresh_executions, segment_refresh, segmentation_service
from loyalty.segments.refresh import SegmentRefresh


def steps() -> SegmentRefresh:
    """The refresh's steps. SegmentRefresh is imported at the top, not only where runtime builds it, so a function
    deployed without the analytics layer (numpy, scipy) fails its cold start rather than its first task
    (tests/integration/test_lambda_layout.py)."""
    return segment_refresh()


def _run_figures(run_id: str) -> None:
    """A completed run's duration and members per second, counted by the finish that completes it. A retried finish
    of a run already complete counts it again: rare, and a dashboard's maximum or average over runs is unmoved."""
    run = segmentation_service().refresh_run(run_id)
    if run.get("status") != "complete" or not run.get("started_at") or not run.get("completed_at"):
        return
    started, completed = (
        datetime.fromisoformat(str(run[k]).replace("Z", "+00:00")) for k in ("started_at", "completed_at")
    )
    record_refresh_run(int(run.get("members") or 0), (completed - started).total_seconds())


@metrics.log_metrics
@invocation(correlation_id=lambda event: str(event.get("run_id") or "") or None)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = steps().handle(
        event,
        workers=settings().refresh_workers,
        still_running=lambda arn: refresh_executions().is_running(arn),
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    if event.get("step") == "finish" and answer.get("status") == "complete":
        _run_figures(str(answer["run_id"]))
    return answer
