"""Domain events, made from the items that record each change (read off the table's stream).

An item that is the record of a domain event carries `event_type`; the stream filter in template.yaml passes only
INSERTs of such items to the publisher. The event's id is the record's own id, so consumers can drop duplicates
(the stream and EventBridge deliver at least once). Details carry ids and amounts, never personal data, and the
correlation id of the request or event that caused the change when it had one (docs/observability.md).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel

from loyalty.core import correlation

SOURCE = "serverless-loyalty"


class EventType(StrEnum):
    """Domain events; the item that records the change carries its event type (domain_event_from_item)."""

    MEMBER_ENROLLED = "MemberEnrolled"
    POINTS_EARNED = "PointsEarned"
    POINTS_REDEEMED = "PointsRedeemed"
    POINTS_REVERSED = "PointsReversed"
    POINTS_ADJUSTED = "PointsAdjusted"
    POINTS_EXPIRED = "PointsExpired"
    SEGMENT_ENTERED = "SegmentEntered"
    SEGMENT_LEFT = "SegmentLeft"
    TIER_CHANGED = "TierChanged"
    POINTS_EXPIRING_SOON = "PointsExpiringSoon"
    CONSENT_CHANGED = "ConsentChanged"


_LEDGER_FIELDS = ("kind", "points", "activity", "order_id", "refund_id", "reward_id")
_TIER_FIELDS = ("from_tier", "to_tier", "direction", "reason", "value", "measure", "currency", "entry_id")
_CONSENT_FIELDS = ("channel", "granted", "source")


class DomainEvent(BaseModel):
    event_id: str
    event_type: EventType
    occurred_at: str
    member_id: str
    detail: dict[str, Any]
    correlation_id: str | None = None

    def entry(self, bus_name: str) -> dict[str, Any]:
        """An EventBridge PutEvents entry."""
        import json

        body = {
            "event_id": self.event_id,
            "occurred_at": self.occurred_at,
            "member_id": self.member_id,
            **self.detail,
        }
        if self.correlation_id is not None:
            body[correlation.ATTRIBUTE] = self.correlation_id
        return {
            "Source": SOURCE,
            "DetailType": self.event_type.value,
            "Detail": json.dumps(body, default=str),
            "EventBusName": bus_name,
        }


def _number(value: Any) -> Any:
    return int(value) if hasattr(value, "to_integral_value") and value == value.to_integral_value() else value


def domain_event_from_item(item: dict[str, Any]) -> DomainEvent | None:
    """The event an inserted item records, or None if it records none. `item` is plain (deserialised)."""
    raw_type = item.get("event_type")
    if not raw_type:
        return None
    event_type = EventType(raw_type)
    correlation_id = correlation.valid(item.get(correlation.ATTRIBUTE))
    if event_type is EventType.MEMBER_ENROLLED:
        return DomainEvent(
            event_id=item["member_id"],
            event_type=event_type,
            occurred_at=item["enrolled_at"],
            member_id=item["member_id"],
            detail={"tier": item.get("tier")},
            correlation_id=correlation_id,
        )
    if event_type in (EventType.SEGMENT_ENTERED, EventType.SEGMENT_LEFT):
        return DomainEvent(
            event_id=item["event_id"],
            event_type=event_type,
            occurred_at=item["occurred_at"],
            member_id=item["member_id"],
            detail={"segment_id": item["segment_id"], "source": item.get("source")},
            correlation_id=correlation_id,
        )
    if event_type is EventType.POINTS_EXPIRING_SOON:
        return DomainEvent(
            event_id=item["event_id"],
            event_type=event_type,
            occurred_at=item["occurred_at"],
            member_id=item["member_id"],
            detail={"expires_on": item["expires_on"], "points": _number(item["points"])},
            correlation_id=correlation_id,
        )
    if event_type is EventType.TIER_CHANGED:
        return DomainEvent(
            event_id=item["event_id"],
            event_type=event_type,
            occurred_at=item["occurred_at"],
            member_id=item["member_id"],
            detail={name: _number(item[name]) for name in _TIER_FIELDS if item.get(name) is not None},
            correlation_id=correlation_id,
        )
    if event_type is EventType.CONSENT_CHANGED:
        return DomainEvent(
            event_id=item["change_id"],
            event_type=event_type,
            occurred_at=item["at"],
            member_id=item["member_id"],
            detail={name: item[name] for name in _CONSENT_FIELDS},
            correlation_id=correlation_id,
        )
    detail = {name: _number(item[name]) for name in _LEDGER_FIELDS if item.get(name) is not None}
    if event_type is EventType.POINTS_REVERSED:  # a reversal always says what it could not take back
        detail["unrecovered"] = _number(item.get("unrecovered", 0))
    return DomainEvent(
        event_id=item["entry_id"],
        event_type=event_type,
        occurred_at=item["created_at"],
        member_id=item["member_id"],
        detail={"entry_id": item["entry_id"], **detail},
        correlation_id=correlation_id,
    )
