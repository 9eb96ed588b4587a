"""Keeps segments fresh between refreshes: a member item that was inserted or modified is re-evaluated at once.

The template's stream filter passes INSERT and MODIFY records of member items (SK = MEMBER). The new image is the
member as the change left it, so re-evaluating reads nothing; what changed is written with its SegmentEntered /
SegmentLeft event items in one transaction (loyalty.adapters.dynamodb.segment_store). The records of those segment writes
themselves (a re-evaluation's or the refresh's) come back through the same filter and are skipped: their segments
are already those of the facts they carry, and re-evaluating them with this container's cached cut points, possibly
older than the refresh's, could only undo the refresh.

Under a burst of changes to one member, only the newest record matters. The stream delivers a member's records in
order, so a record followed by another of the same member in the batch is skipped, and a record whose write loses to
a change of the member's facts made after its image (SupersededImage) is acknowledged: the record of that change
comes later, with the newer image, and re-evaluates the member. That race is expected and logged at INFO. Any other
failure is an ERROR, reported, and Lambda retries from it (ReportBatchItemFailures), then parks it in the dead-letter
queue.

Each record is handled under the correlation id of the change that wrote its image, which its log lines and the
SegmentEntered / SegmentLeft items it writes carry on (docs/observability.md).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer

from loyalty.core import correlation
from loyalty.core.observability import carrying, invocation, logger, metrics, record_segment_changes
from loyalty.points.member_record import is_settled, revision_of
from loyalty.runtime import segmentation_service
from loyalty.segments.service import SupersededImage

_deserializer = TypeDeserializer()


def _member_of(record: dict[str, Any]) -> dict[str, Any] | None:
    """The member item a record's new image carries, or None for a record that is not a member's change."""
    image = record.get("dynamodb", {}).get("NewImage")
    if record.get("eventName") not in ("INSERT", "MODIFY") or not image:
        return None
    member = {k: _deserializer.deserialize(v) for k, v in image.items()}
    return member if "member_id" in member else None


@metrics.log_metrics(capture_cold_start_metric=True)
@invocation()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    service = segmentation_service()
    records = event.get("Records", [])
    members = [_member_of(record) for record in records]
    last_record_of = {str(member["member_id"]): index for index, member in enumerate(members) if member is not None}
    changed = settled = superseded = entered = left = 0
    for index, (record, member) in enumerate(zip(records, members, strict=True)):
        if member is None:
            continue
        member_id = str(member["member_id"])
        if last_record_of[member_id] != index:  # a later record of this batch carries a newer image of the member
            superseded += 1
            continue
        if is_settled(member):
            settled += 1
            continue
        with carrying(member.get(correlation.ATTRIBUTE)):
            try:
                applied = service.reevaluate(member, later_changes_follow=True)
            except SupersededImage as race:
                superseded += 1
                logger.info(
                    "segment re-evaluation superseded by a later change of the member",
                    extra={
                        "member_id": member_id,
                        "record_revision": race.image_revision,
                        "current_revision": race.current_revision,
                    },
                )
                continue
            except Exception:
                logger.exception(
                    "segment re-evaluation failed",
                    extra={"member_id": member_id, "record_revision": revision_of(member)},
                )
                record_segment_changes(entered, left)
                return {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
            logger.info(
                "member re-evaluated",
                extra={"member_id": member_id, "entered": list(applied.entered), "left": list(applied.left)},
            )
        changed += applied.changes
        entered += len(applied.entered)
        left += len(applied.left)
    record_segment_changes(entered, left)
    logger.info(
        "members re-evaluated",
        extra={"records": len(records), "settled": settled, "superseded": superseded, "changes": changed},
    )
    return {"batchItemFailures": []}
