"""Publishes domain events from the table's stream: the write is the event, so a crash after it loses none.

The template's stream filter passes only INSERTs of items that carry `event_type`. Records that EventBridge does
not accept are reported as batch item failures; Lambda retries from the first of them (ReportBatchItemFailures).
Each event carries the correlation id its item was written with (docs/observability.md), and is logged with it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from boto3.dynamodb.types import TypeDeserializer

from loyalty.core.events import DomainEvent, domain_event_from_item
from loyalty.core.observability import carrying, invocation, logger, metrics
from loyalty.runtime import event_publisher

_deserializer = TypeDeserializer()


def _event(record: dict[str, Any]) -> DomainEvent | None:
    if record.get("eventName") != "INSERT":  # the template's filter passes only INSERTs; this holds without it
        return None
    image = record.get("dynamodb", {}).get("NewImage") or {}
    return domain_event_from_item({k: _deserializer.deserialize(v) for k, v in image.items()})


@metrics.log_metrics(capture_cold_start_metric=True)
@invocation()
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records", [])
    pending: list[tuple[str, DomainEvent]] = []
    for record in records:
        domain_event = _event(record)
        if domain_event is not None:
            pending.append((record["dynamodb"]["SequenceNumber"], domain_event))
    failed = event_publisher().publish([e for _, e in pending])
    refused = set(failed)
    for index, (_, published) in enumerate(pending):
        if index not in refused:
            with carrying(published.correlation_id):
                logger.info(
                    "domain event published",
                    extra={"event_id": published.event_id, "event_type": published.event_type.value},
                )
    if failed:
        logger.warning("events not accepted by EventBridge", extra={"failed": len(failed), "total": len(pending)})
    logger.info("published domain events", extra={"published": len(pending) - len(failed)})
    return {"batchItemFailures": [{"itemIdentifier": pending[i][0]} for i in sorted(failed)]}
