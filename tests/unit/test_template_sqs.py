"""SQS event source mappings as the local stack reads them: the template's `Type: SQS` events, the record Lambda
builds from a received message, and how a batch's answer decides which messages are retried."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import Any

import pytest

from devstack.functions import InvocationError
from devstack.pollers import SqsPoller, sqs_record_for_lambda
from devstack.template import Resolver, SqsEvent, Template, load_template

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Work:
    Type: AWS::SQS::Queue
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/worker
      Handler: app.handler
      Events:
        Plain:
          Type: SQS
          Properties:
            Queue: !GetAtt Work.Arn
        Tuned:
          Type: SQS
          Properties:
            Queue: arn:aws:sqs:us-east-1:123456789012:elsewhere
            BatchSize: 25
            MaximumBatchingWindowInSeconds: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
            ScalingConfig: {MaximumConcurrency: 2}
            FilterCriteria:
              Filters:
                - Pattern: '{"body": {"kind": ["refresh"]}}'
            Enabled: false
"""


@pytest.fixture
def sample(tmp_path: Path) -> Template:
    (tmp_path / "template.yaml").write_text(textwrap.dedent(SAMPLE))
    return load_template(tmp_path / "template.yaml")


def test_an_sqs_event_with_only_a_queue_gets_lambdas_defaults(sample: Template) -> None:
    plain = next(e for e in sample.sqs_events if e.name == "Plain")

    assert plain == SqsEvent(
        function="Worker",
        name="Plain",
        queue={"Fn::GetAtt": ["Work", "Arn"]},
        queue_logical_id="Work",
        batch_size=10,
        maximum_batching_window=0,
        report_batch_item_failures=False,
        maximum_concurrency=None,
        filter_patterns=(),
        enabled=True,
    )
    assert Resolver(sample).resolve(plain.queue) == "arn:aws:sqs:us-east-1:123456789012:loyalty-local-Work"


def test_an_sqs_events_settings_are_all_read(sample: Template) -> None:
    tuned = next(e for e in sample.sqs_events if e.name == "Tuned")

    assert tuned.queue == "arn:aws:sqs:us-east-1:123456789012:elsewhere"
    assert tuned.queue_logical_id is None  # a literal ARN names no resource of the template
    assert (tuned.batch_size, tuned.maximum_batching_window, tuned.maximum_concurrency) == (25, 2, 2)
    assert tuned.report_batch_item_failures
    assert tuned.filter_patterns == ({"body": {"kind": ["refresh"]}},)
    assert tuned.enabled is False
    # SQS events are their own kind: no other list of events holds them
    assert not sample.stream_events and not sample.schedule_events and not sample.rule_events


def test_a_received_message_becomes_the_record_lambda_passes() -> None:
    message = {
        "MessageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "ReceiptHandle": "AQEB-handle",
        "MD5OfBody": "098f6bcd4621d373cade4e832627b4f6",
        "Body": "test",
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1545082649183", "SenderId": "AIDA"},
        "MD5OfMessageAttributes": "b25f48e8",
        "MessageAttributes": {
            "kind": {"StringValue": "refresh", "DataType": "String"},
            "blob": {"BinaryValue": b"\x00\x01", "DataType": "Binary"},
        },
    }

    record = sqs_record_for_lambda(message, "arn:aws:sqs:us-east-1:123456789012:work", "us-east-1")

    assert record == {
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEB-handle",
        "body": "test",
        "attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1545082649183", "SenderId": "AIDA"},
        "messageAttributes": {
            "kind": {"stringValue": "refresh", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
            "blob": {
                "binaryValue": base64.b64encode(b"\x00\x01").decode(),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": "Binary",
            },
        },
        "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
        "md5OfMessageAttributes": "b25f48e8",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:work",
        "awsRegion": "us-east-1",
    }


class _AnswerPool:
    """Stands in for a function's container pool: answers every invocation with `answer` (or raises it)."""

    def __init__(self, answer: Any):
        self.answer = answer

    def invoke(self, event: Any) -> Any:
        if isinstance(self.answer, BaseException):
            raise InvocationError("Worker", self.answer)
        return self.answer


def _failed(answer: Any, report: bool = True) -> set[str]:
    event = SqsEvent("Worker", "Work", "arn", "Work", 10, 0, report, None)
    poller = SqsPoller(_AnswerPool(answer), event, "url", "arn", sqs=None, region="us-east-1")  # type: ignore[arg-type]
    records = [{"messageId": m} for m in ("a", "b", "c")]
    return poller._invoke(records)


@pytest.mark.parametrize(
    ("answer", "failed"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": None}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
        ({"batchItemFailures": [{"itemIdentifier": "a"}, {"itemIdentifier": "c"}]}, {"a", "c"}),
        # Lambda reads an empty, null or unknown identifier, or a malformed list, as the whole batch failing
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, {"a", "b", "c"}),
        ({"batchItemFailures": [{"itemIdentifier": None}]}, {"a", "b", "c"}),
        ({"batchItemFailures": [{"itemIdentifier": "zzz"}]}, {"a", "b", "c"}),
        ({"batchItemFailures": [{"messageId": "b"}]}, {"a", "b", "c"}),
        ({"batchItemFailures": {"itemIdentifier": "b"}}, {"a", "b", "c"}),
        (ValueError("boom"), {"a", "b", "c"}),
    ],
)
def test_which_messages_of_a_batch_are_retried(answer: Any, failed: set[str]) -> None:
    assert _failed(answer) == failed


def test_without_report_batch_item_failures_the_answer_is_ignored() -> None:
    assert _failed({"batchItemFailures": [{"itemIdentifier": "b"}]}, report=False) == set()
    assert _failed(ValueError("boom"), report=False) == {"a", "b", "c"}
