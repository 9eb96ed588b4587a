"""The SQS poller does what Lambda's SQS event source mapping does, against moto's SQS: Lambda's record, delete on
success, retry what failed (all of a batch, or only what batchItemFailures names), the queue's RedrivePolicy parks
what keeps failing, and several batches run at once."""

from __future__ import annotations

import hashlib
import itertools
import json
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from devstack.pollers import SQS_CONCURRENCY, SqsPoller
from devstack.stack import LocalStack

TEMPLATE = """
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Timeout: 10
    Environment:
      Variables:
        SEEN_QUEUE_URL: !Ref SeenQueue
Resources:
  SeenQueue:
    Type: AWS::SQS::Queue
  WorkDeadLetters:
    Type: AWS::SQS::Queue
  Work:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 600  # long, as the real queue's: a retry sooner than this is the local stack's doing
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDeadLetters.Arn
        maxReceiveCount: 3
  PartialWork:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 600
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sample
      Handler: app.on_messages
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
            BatchSize: 1
  PartialWorker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sample
      Handler: app.on_messages
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt PartialWork.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
            Enabled: false  # not polled by the stack: the test starts this poller once its messages are queued
"""

HANDLER = """
import json
import os
import time

import boto3


def on_messages(event, context):
    started = time.time()
    bodies = [json.loads(record["body"]) for record in event["Records"]]
    time.sleep(max((body.get("sleep", 0) for body in bodies), default=0))
    sqs = boto3.session.Session().client("sqs")  # a session per call: batches run in several threads at once
    seen = {"records": event["Records"], "started": started, "ended": time.time(), "tag": bodies[0].get("tag")}
    sqs.send_message(QueueUrl=os.environ["SEEN_QUEUE_URL"], MessageBody=json.dumps(seen))
    if any(body.get("raise") for body in bodies):
        raise ValueError("this work cannot be done")
    return {
        "batchItemFailures": [
            {"itemIdentifier": record["messageId"]}
            for record, body in zip(event["Records"], bodies)
            if int(record["attributes"]["ApproximateReceiveCount"]) <= body.get("fail_receives", 0)
        ]
    }
"""


class Seen:
    """Every invocation the handler reported on SeenQueue, kept across tests (each test looks for its own tag)."""

    def __init__(self, stack: LocalStack):
        self.stack = stack
        self.invocations: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def wait(self, tag: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        sqs, url = self.stack.client("sqs"), self.stack.queue_url("SeenQueue")
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                mine = [i for i in self.invocations if i["tag"] == tag]
                if len(mine) >= count or time.monotonic() > deadline:
                    return sorted(mine, key=lambda i: i["started"])
                for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                    "Messages", []
                ):
                    self.invocations.append(json.loads(message["Body"]))
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("sample-sqs")
    (root / "functions" / "sample").mkdir(parents=True)
    (root / "functions" / "sample" / "app.py").write_text(HANDLER)
    (root / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    with LocalStack(root=root, dynamodb="moto", port=0, stack_name="sqs-test") as running:
        yield running


@pytest.fixture(scope="module")
def seen(stack: LocalStack) -> Seen:
    return Seen(stack)


def queue_arn(stack: LocalStack, logical_id: str) -> str:
    attributes = stack.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url(logical_id), AttributeNames=["QueueArn"]
    )["Attributes"]
    return str(attributes["QueueArn"])


def wait_until_empty(stack: LocalStack, logical_id: str, timeout: float = 10.0) -> dict[str, str]:
    """The queue's counts once nothing is waiting or in flight (a message not deleted stays in flight 600 s)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + timeout
    while True:
        counts = stack.client("sqs").get_queue_attributes(QueueUrl=stack.queue_url(logical_id), AttributeNames=names)
        if all(counts["Attributes"][n] == "0" for n in names) or time.monotonic() > deadline:
            return dict(counts["Attributes"])
        time.sleep(0.2)


def send(stack: LocalStack, logical_id: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return dict(
        stack.client("sqs").send_message(QueueUrl=stack.queue_url(logical_id), MessageBody=json.dumps(body), **kwargs)
    )


def test_a_message_whose_handler_succeeds_arrives_as_lambdas_record_and_is_deleted(
    stack: LocalStack, seen: Seen
) -> None:
    # Given a message with attributes of both kinds
    tag = uuid.uuid4().hex
    body = json.dumps({"tag": tag})
    sent = stack.client("sqs").send_message(
        QueueUrl=stack.queue_url("Work"),
        MessageBody=body,
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "refresh"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )

    # When the poller has passed it to the function
    (invocation,) = seen.wait(tag, 1)

    # Then the function got one record shaped as Lambda shapes it
    (record,) = invocation["records"]
    assert record["messageId"] == sent["MessageId"] and record["receiptHandle"]
    assert record["body"] == body and record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()  # noqa: S324
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn(stack, "Work")
    assert record["awsRegion"] == "us-east-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["messageAttributes"] == {
        "kind": {"stringValue": "refresh", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
        "blob": {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"},
    }
    assert record["md5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    # And the message is gone from the queue, not just hidden
    assert wait_until_empty(stack, "Work") == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }


def test_a_message_whose_handler_raises_is_retried_soon_then_parked_by_the_queues_redrive_policy(
    stack: LocalStack, seen: Seen
) -> None:
    # Given a message the handler always raises on (the queue parks a message after 3 receives)
    tag = uuid.uuid4().hex
    send(stack, "Work", {"tag": tag, "raise": True})

    # When the dead-letter queue receives it
    sqs, dead_letters = stack.client("sqs"), stack.queue_url("WorkDeadLetters")
    parked: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not parked and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=dead_letters, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            if json.loads(message["Body"]).get("tag") == tag:
                parked.append(message)

    # Then it is the message itself, after exactly three attempts, a second or two apart (not the queue's 600 s)
    assert [json.loads(m["Body"]) for m in parked] == [{"tag": tag, "raise": True}]
    attempts = seen.wait(tag, 3)
    assert [i["records"][0]["attributes"]["ApproximateReceiveCount"] for i in attempts] == ["1", "2", "3"]
    assert all(later["started"] - earlier["ended"] < 5 for earlier, later in itertools.pairwise(attempts))
    # And it is not tried again, the work queue is empty, and the poller says what happened
    assert len(seen.wait(tag, 4, timeout=2.5)) == 3
    assert wait_until_empty(stack, "Work")["ApproximateNumberOfMessagesNotVisible"] == "0"
    status = next(p for p in stack.status()["pollers"] if p["name"] == "sqs:Worker.Work")
    assert status["dead_lettered"] >= 1 and status["failed_attempts"] >= 3
    assert "ValueError: this work cannot be done" in status["last_error"]


def test_with_report_batch_item_failures_only_the_reported_message_is_retried(stack: LocalStack, seen: Seen) -> None:
    # Given three messages queued before anything polls their queue, so that one batch carries them all, and a
    # handler that reports the middle one as failed on its first receive
    tag = uuid.uuid4().hex
    ids = [
        send(stack, "PartialWork", {"tag": tag, "n": n, "fail_receives": 1 if n == 1 else 0})["MessageId"]
        for n in range(3)
    ]
    assert not any(p.name == "sqs:PartialWorker.Work" for p in stack.pollers)  # Enabled: false is not polled
    (event,) = (e for e in stack.template.sqs_events if e.function == "PartialWorker")
    assert stack.functions is not None
    poller = SqsPoller(
        stack.functions.pool("PartialWorker"),
        event,
        stack.queue_url("PartialWork"),
        queue_arn(stack, "PartialWork"),
        stack.client("sqs"),
        "us-east-1",
    )
    poller.setup()

    # When the mapping runs until the function has been invoked twice
    poller.start()
    try:
        first, second = seen.wait(tag, 2)
    finally:
        poller.stop()
        poller.join(timeout=10)

    # Then the first batch held all three, and only the reported message came back, on its second receive
    assert sorted(r["messageId"] for r in first["records"]) == sorted(ids)
    assert [(r["messageId"], r["attributes"]["ApproximateReceiveCount"]) for r in second["records"]] == [(ids[1], "2")]
    assert wait_until_empty(stack, "PartialWork")["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert (poller.delivered, poller.failed_attempts, poller.dead_lettered) == (3, 1, 0)
    assert not poller.is_alive()


def test_messages_run_concurrently_up_to_the_pollers_concurrency(stack: LocalStack, seen: Seen) -> None:
    # Given twice as many one-second messages as the poller runs at once
    tag = uuid.uuid4().hex
    count = 2 * SQS_CONCURRENCY
    stack.client("sqs").send_message_batch(
        QueueUrl=stack.queue_url("Work"),
        Entries=[{"Id": str(n), "MessageBody": json.dumps({"tag": tag, "n": n, "sleep": 1.0})} for n in range(count)],
    )

    # When they have all been handled
    invocations = seen.wait(tag, count, timeout=30)

    # Then each ran once, and at most (and at some point exactly) SQS_CONCURRENCY ran at the same time
    assert sorted(json.loads(i["records"][0]["body"])["n"] for i in invocations) == list(range(count))
    edges = sorted([(i["started"], 1) for i in invocations] + [(i["ended"], -1) for i in invocations])
    running, most = 0, 0
    for _, step in edges:
        running += step
        most = max(most, running)
    assert most == SQS_CONCURRENCY
    status = next(p for p in stack.status()["pollers"] if p["name"] == "sqs:Worker.Work")
    assert status["peak_in_flight"] == SQS_CONCURRENCY
    assert wait_until_empty(stack, "Work")["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_the_sqs_poller_is_shown_in_the_local_status(stack: LocalStack) -> None:
    status = requests.get(stack.api_url + "/_local/status", timeout=10).json()

    (poller,) = (p for p in status["pollers"] if p["kind"] == "sqs")
    assert poller["name"] == "sqs:Worker.Work" and poller["function"] == "Worker" and poller["alive"]
    assert poller["queue_url"] == stack.queue_url("Work")
    assert poller["batch_size"] == 1 and poller["concurrency"] == SQS_CONCURRENCY
    assert poller["max_receive_count"] == 3
    assert poller["dead_letter_arn"] == queue_arn(stack, "WorkDeadLetters")
    assert poller["retry_visibility_seconds"] == 1
