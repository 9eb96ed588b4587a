"""EventBridge rules reach their functions locally (moto has no Lambda targets), with Lambda's asynchronous
retries and OnFailure destination; the bus's domain events are kept for /_local/events and wait_for_events."""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from devstack.stack import LocalStack

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 5
    Environment:
      Variables:
        SEEN_QUEUE_URL: !Ref SeenQueue
Resources:
  SeenQueue:
    Type: AWS::SQS::Queue
  RuleFailures:
    Type: AWS::SQS::Queue
  RuleDeadLetters:
    Type: AWS::SQS::Queue
  Bus:
    Type: AWS::Events::EventBus
    Properties: {Name: !Sub "${AWS::StackName}-bus"}
  BusArchive:
    Type: AWS::Events::Archive
    Properties:
      SourceArn: !GetAtt Bus.Arn
      EventPattern: {source: [sample-app]}
  OrdersFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sample
      Handler: app.on_order
      EventInvokeConfig:
        MaximumRetryAttempts: 1
        DestinationConfig:
          OnFailure: {Type: SQS, Destination: !GetAtt RuleFailures.Arn}
      Events:
        Orders:
          Type: EventBridgeRule
          Properties:
            EventBusName: !Ref Bus
            Pattern: {source: [shop], detail-type: [Ordered]}
            DeadLetterConfig: {Arn: !GetAtt RuleDeadLetters.Arn}
"""

HANDLER = """
import json
import os

import boto3


def on_order(event, context):
    if event["detail"].get("fail"):
        raise ValueError("this order cannot be handled")
    boto3.client("sqs").send_message(QueueUrl=os.environ["SEEN_QUEUE_URL"], MessageBody=json.dumps(event))
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("sample-rules")
    (root / "functions" / "sample").mkdir(parents=True)
    (root / "functions" / "sample" / "app.py").write_text(HANDLER)
    (root / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    with LocalStack(root=root, dynamodb="moto", port=0, stack_name="rules-test") as running:
        yield running


def receive_until(
    stack: LocalStack, logical_id: str, done: Callable[[list[Any]], bool], timeout: float = 15.0
) -> list[Any]:
    sqs = stack.client("sqs")
    url = stack.queue_url(logical_id)
    bodies: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(bodies):
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def put_event(stack: LocalStack, source: str, detail_type: str, detail: dict[str, Any]) -> None:
    response = stack.client("events").put_events(
        Entries=[
            {
                "Source": source,
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
                "EventBusName": stack.resource_name("Bus"),
            }
        ]
    )
    assert response["FailedEntryCount"] == 0


def test_a_matching_event_invokes_the_rules_function_with_the_eventbridge_event(stack: LocalStack) -> None:
    # Given an event the rule wants and two it does not
    put_event(stack, "shop", "Ordered", {"order": 1})
    put_event(stack, "shop", "Cancelled", {"order": 2})
    put_event(stack, "elsewhere", "Ordered", {"order": 3})

    # When the rule has delivered
    seen = receive_until(stack, "SeenQueue", lambda b: len(b) >= 1)
    seen += receive_until(stack, "SeenQueue", lambda b: False, timeout=1.5)

    # Then only the matching one reached the handler, as the EventBridge event itself
    assert [e["detail"] for e in seen] == [{"order": 1}]
    event = seen[0]
    assert event["source"] == "shop" and event["detail-type"] == "Ordered"
    assert event["id"] and event["time"] and event["region"] == "us-east-1"


def test_a_failing_event_is_retried_then_sent_to_the_on_failure_destination(stack: LocalStack) -> None:
    # When the handler raises on an event every time
    put_event(stack, "shop", "Ordered", {"order": 9, "fail": True})

    # Then after MaximumRetryAttempts + 1 attempts Lambda's invocation record lands in the OnFailure queue
    parked = receive_until(stack, "RuleFailures", lambda b: len(b) >= 1)
    assert len(parked) == 1
    record = parked[0]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 2
    assert record["requestPayload"]["detail"] == {"order": 9, "fail": True}
    assert record["responsePayload"]["errorType"] == "ValueError"
    # And not in the rule's dead-letter queue, which is for events EventBridge itself could not deliver
    assert receive_until(stack, "RuleDeadLetters", lambda b: False, timeout=1) == []


def test_the_buses_domain_events_are_kept_and_can_be_waited_for(stack: LocalStack) -> None:
    # Given events on the bus: two the archive pattern keeps (source sample-app), one it does not
    put_event(stack, "sample-app", "ThingHappened", {"member_id": "m1", "n": 1})
    put_event(stack, "sample-app", "ThingHappened", {"member_id": "m2", "n": 2})
    put_event(stack, "shop", "Ordered", {"order": 5})

    # When a test waits for them
    found = stack.wait_for_events("ThingHappened", count=1, timeout=10, member_id="m2")

    # Then they are there, filtered by detail-type and detail values, and served on /_local/events
    assert [e["detail"]["n"] for e in found] == [2]
    assert len(stack.wait_for_events("ThingHappened", count=2, timeout=10)) == 2
    served = requests.get(stack.api_url + "/_local/events", params={"detail_type": "ThingHappened"}, timeout=10)
    assert [e["detail"]["n"] for e in served.json()["events"]] == [1, 2]
    assert all(e["source"] == "sample-app" for e in stack.events())


def test_waiting_for_events_that_never_come_says_what_was_seen(stack: LocalStack) -> None:
    with pytest.raises(TimeoutError, match="seen so far"):
        stack.wait_for_events("NeverHappens", count=1, timeout=0.3)
