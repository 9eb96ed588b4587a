"""The segment refresh: the nightly schedule starts a run; each SQS message is one worker's share of one pass.

What a run does, and why it is safe to retry at any point: loyalty.segments.refresh and docs/refresh.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty.adapters.work_queue import WorkQueue
from loyalty.core.settings import settings
from loyalty.runtime import client, segmentation_service
from loyalty.segments.refresh import SegmentRefresh, WorkMessage
from loyalty.segments.service import scheduled_run_id

logger = Logger()


@cache
def refresh() -> SegmentRefresh:
    return SegmentRefresh(segmentation_service(), WorkQueue(client("sqs"), settings().refresh_queue_url))


def _start(event: dict[str, Any]) -> dict[str, Any]:
    """The schedule's event: one run per UTC day, as of the moment the schedule fired."""
    fired = datetime.fromisoformat(str(event.get("time") or datetime.now(UTC).isoformat()).replace("Z", "+00:00"))
    run, created = refresh().start(scheduled_run_id(fired), fired, settings().refresh_workers, "schedule")
    logger.info(
        "segment refresh started" if created else "segment refresh already recorded", extra={"run": run["run_id"]}
    )
    return {"run_id": run["run_id"], "created": created}


def _work(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failures = []
    for record in event["Records"]:
        message = WorkMessage.parse(record["body"])
        try:
            refresh().work(message, time_left=lambda: context.get_remaining_time_in_millis() / 1000)
        except Exception:
            logger.exception("refresh work failed; SQS delivers it again", extra=message.body())
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "Records" in event:
        return _work(event, context)
    return _start(event)
