"""The bus: the in-memory twin (loyalty.adapters.memory.messaging) behaves as the EventBridge adapter does on moto,
so what is tested on the twin is tested on what it will meet. Each behaviour runs against both."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from loyalty.adapters.eventbridge import EventPublisher
from loyalty.adapters.memory.messaging import RecordingBus
from loyalty.core.events import DomainEvent, EventType
from loyalty.core.ports import EventBus

REGION = "us-east-1"


@dataclass
class Bus:
    port: EventBus
    delivered: Callable[[], list[dict[str, Any]]]  # the events that got through, as their consumers see them


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@pytest.fixture(params=["memory", "moto"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "memory":
        memory = RecordingBus()
        yield Bus(memory, lambda: [{"id": e.event_id, "type": e.event_type.value} for e in memory.published])
        return
    with mock_aws():
        events, sqs = boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)
        name = f"bus-{uuid.uuid4().hex[:8]}"
        events.create_event_bus(Name=name)
        url = sqs.create_queue(QueueName=f"{name}-seen")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="all", EventBusName=name, EventPattern=json.dumps({"source": ["serverless-loyalty"]}))
        events.put_targets(Rule="all", EventBusName=name, Targets=[{"Id": "seen", "Arn": arn}])

        def delivered() -> list[dict[str, Any]]:
            return [{"id": e["detail"]["event_id"], "type": e["detail-type"]} for e in _drain(sqs, url)]

        yield Bus(EventPublisher(events, name), delivered)


def event(number: int) -> DomainEvent:
    return DomainEvent(
        event_id=f"01JQ{number:022d}",
        event_type=EventType.POINTS_EARNED,
        occurred_at="2026-11-30T10:00:00.000000Z",
        member_id="m_1",
        detail={"points": number},
    )


def test_every_event_published_is_delivered_once_in_batches_past_the_bus_limit(bus: Bus) -> None:
    events = [event(n) for n in range(23)]  # PutEvents takes 10 entries a call

    failed = bus.port.publish(events)

    assert failed == []
    delivered = bus.delivered()
    assert sorted(d["id"] for d in delivered) == sorted(e.event_id for e in events)
    assert {d["type"] for d in delivered} == {"PointsEarned"}


def test_publishing_nothing_is_accepted_and_delivers_nothing(bus: Bus) -> None:
    assert bus.port.publish([]) == []
    assert bus.delivered() == []


def test_the_twin_bus_refuses_what_it_is_told_to_and_still_accepts_the_rest() -> None:
    """What a refusal looks like to a caller (EventPublisher maps EventBridge's per-entry ErrorCode the same way:
    tests/integration/test_functions_events.py)."""
    bus = RecordingBus()
    bus.refuse = {event(1).event_id}

    assert bus.publish([event(0), event(1), event(2)]) == [1]
    assert [e.event_id for e in bus.published] == [event(0).event_id, event(2).event_id]
