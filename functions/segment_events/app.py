"""Keeps segments fresh between refreshes: a member item that was inserted or modified is re-evaluated at once.

The template's stream filter passes INSERT and MODIFY records of member items (SK = MEMBER). The new image is the
member as the change left it, so re-evaluating reads nothing; what changed is written with its SegmentEntered /
SegmentLeft event items in one transaction (loyalty.adapters.segment_store). The records of those segment writes
themselves (a re-evaluation's or the refresh's) come back through the same filter and are skipped: their segments
are already those of the facts they carry, and re-evaluating them with this container's cached cut points, possibly
older than the refresh's, could only undo the refresh. A record that fails is reported, and
Lambda retries from it (ReportBatchItemFailures), then parks it in the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer

from loyalty.adapters.segment_store import is_settled
from loyalty.runtime import segmentation_service

logger = Logger()
_deserializer = TypeDeserializer()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = segmentation_service()
    changed = settled = 0
    for record in event.get("Records", []):
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") not in ("INSERT", "MODIFY") or not image:
            continue
        member = {k: _deserializer.deserialize(v) for k, v in image.items()}
        if "member_id" not in member:
            continue
        if is_settled(member):
            settled += 1
            continue
        try:
            applied = service.reevaluate(member)
        except Exception:
            logger.exception("segment re-evaluation failed", extra={"member_id": member["member_id"]})
            return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
        changed += applied.changes
    logger.info(
        "members re-evaluated",
        extra={"records": len(event.get("Records", [])), "settled": settled, "changes": changed},
    )
    return {"batchItemFailures": []}
