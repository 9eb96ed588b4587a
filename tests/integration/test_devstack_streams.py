"""The stream poller does what Lambda's DynamoDB event source mapping does, on moto and on DynamoDB Local:
filter with the template's pattern, batch, honour batchItemFailures, retry, then park the batch in OnFailure."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

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
  Things:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      KeySchema: [{AttributeName: pk, KeyType: HASH}]
      AttributeDefinitions: [{AttributeName: pk, AttributeType: S}]
      StreamSpecification: {StreamViewType: NEW_AND_OLD_IMAGES}
  SeenQueue:
    Type: AWS::SQS::Queue
  StreamFailures:
    Type: AWS::SQS::Queue
  StreamFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: functions/sample
      Handler: app.on_stream
      Events:
        Changes:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt Things.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 10
            MaximumRetryAttempts: 2
            FunctionResponseTypes: [ReportBatchItemFailures]
            FilterCriteria:
              Filters:
                - Pattern: '{"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": [{"exists": true}]}}}}'
            DestinationConfig:
              OnFailure: {Type: SQS, Destination: !GetAtt StreamFailures.Arn}
"""

HANDLER = """
import json
import os

import boto3

_attempts = {}  # pk -> invocations that carried it


def on_stream(event, context):
    sqs = boto3.client("sqs")  # a plain client: the stack's environment points it at the emulator
    failures = []
    for record in event["Records"]:
        image = record["dynamodb"]["NewImage"]
        pk = image["pk"]["S"]
        _attempts[pk] = _attempts.get(pk, 0) + 1
        sqs.send_message(QueueUrl=os.environ["SEEN_QUEUE_URL"], MessageBody=json.dumps(record))
        mode = image.get("fail", {}).get("S")
        if mode == "always" or (mode == "once" and _attempts[pk] == 1):
            failures.append({"itemIdentifier": record["dynamodb"]["SequenceNumber"]})
    return {"batchItemFailures": failures}
"""

BACKENDS = ["moto", pytest.param("dynamodb-local", marks=pytest.mark.dynamodb_local)]


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    root = tmp_path_factory.mktemp("sample-stream")
    (root / "functions" / "sample").mkdir(parents=True)
    (root / "functions" / "sample" / "app.py").write_text(HANDLER)
    (root / "template.yaml").write_text(textwrap.dedent(TEMPLATE))
    options: dict[str, Any] = {"dynamodb": "moto"}
    if request.param == "dynamodb-local":
        options = {"dynamodb_endpoint": request.getfixturevalue("dynamodb_local").endpoint}
    name = f"streams-{uuid.uuid4().hex[:6]}"  # DynamoDB Local is shared by the session: tables of their own
    with LocalStack(root=root, port=0, stack_name=name, **options) as running:
        yield running


def receive_until(
    stack: LocalStack, logical_id: str, done: Callable[[list[Any]], bool], timeout: float = 20.0
) -> list[Any]:
    """Every message body of a template queue, gathered until `done(bodies)` or the timeout."""
    sqs = stack.client("sqs")
    bodies: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not done(bodies):
        response = sqs.receive_message(QueueUrl=stack.queue_url(logical_id), MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in response.get("Messages", []):
            bodies.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=stack.queue_url(logical_id), ReceiptHandle=message["ReceiptHandle"])
    return bodies


def put(stack: LocalStack, pk: str, **attributes: str) -> None:
    item = {"pk": {"S": pk}, **{k: {"S": v} for k, v in attributes.items()}}
    stack.client("dynamodb").put_item(TableName=stack.resource_name("Things"), Item=item)


def test_only_inserts_that_match_the_filter_reach_the_handler_in_lambdas_record_shape(stack: LocalStack) -> None:
    # Given an item the filter wants, one without the filtered attribute, and an update of the first
    run = uuid.uuid4().hex[:6]
    put(stack, f"{run}-wanted", kind="thing", nested="x")
    put(stack, f"{run}-unwanted")
    put(stack, f"{run}-wanted", kind="thing", nested="changed")  # a MODIFY
    put(stack, f"{run}-last", kind="thing")

    # When the poller has delivered what passes the filter
    seen = receive_until(
        stack, "SeenQueue", lambda b: any(r["dynamodb"]["Keys"]["pk"]["S"] == f"{run}-last" for r in b)
    )

    # Then only the two INSERTs with `kind` arrived, shaped as Lambda's DynamoDB event records
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in seen]
    assert keys == [f"{run}-wanted", f"{run}-last"]
    record = seen[0]
    assert record["eventName"] == "INSERT"
    assert record["eventSource"] == "aws:dynamodb"
    assert record["eventSourceARN"] == stack.resources.streams["Things"]
    assert record["awsRegion"] == "us-east-1"
    assert record["dynamodb"]["NewImage"]["nested"] == {"S": "x"}
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], int | float)
    assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"


def test_a_reported_failure_is_retried_from_that_record_then_parked_in_on_failure(stack: LocalStack) -> None:
    # Given a record the handler reports as failed every time, and one it fails only once
    run = uuid.uuid4().hex[:6]
    put(stack, f"{run}-poison", kind="thing", fail="always")

    # When the poller has retried it (MaximumRetryAttempts 2: three invocations carry it)
    parked = receive_until(stack, "StreamFailures", lambda b: len(b) >= 1)
    put(stack, f"{run}-flaky", kind="thing", fail="once")
    put(stack, f"{run}-fine", kind="thing")

    def flaky_retried_and_fine_delivered(bodies: list[Any]) -> bool:
        keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in bodies]
        return keys.count(f"{run}-flaky") >= 2 and f"{run}-fine" in keys

    seen = receive_until(stack, "SeenQueue", flaky_retried_and_fine_delivered)

    # Then the poison record went to the OnFailure queue as Lambda describes a stream batch
    assert len(parked) == 1
    info = parked[0]["DDBStreamBatchInfo"]
    assert info["streamArn"] == stack.resources.streams["Things"]
    assert info["batchSize"] == 1
    assert parked[0]["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert parked[0]["requestContext"]["approximateInvokeCount"] == 3
    # And the flaky one was retried from itself and then got through, never parked
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in seen]
    assert keys.count(f"{run}-flaky") == 2
    assert keys.index(f"{run}-flaky") < keys.index(f"{run}-fine")  # in the stream's order
    assert receive_until(stack, "StreamFailures", lambda b: False, timeout=1.5) == []
    poller = next(p for p in stack.status()["pollers"] if p["kind"] == "dynamodb-stream")
    assert poller["dead_lettered"] >= 1 and poller["alive"]


def test_a_failed_transaction_neither_reaches_the_handler_nor_stalls_the_stream(stack: LocalStack) -> None:
    # Given a transaction whose second check fails after its first put (moto rolls back by swapping the table,
    # stream included, for a copy: a naive poller keeps reading the orphaned stream and sees nothing more)
    run = uuid.uuid4().hex[:6]
    table = stack.resource_name("Things")
    dynamodb = stack.client("dynamodb")
    put(stack, f"{run}-before", kind="thing")
    with pytest.raises(dynamodb.exceptions.TransactionCanceledException):
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": f"{run}-rolled-back"}, "kind": {"S": "thing"}}}},
                {
                    "ConditionCheck": {
                        "TableName": table,
                        "Key": {"pk": {"S": f"{run}-before"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
            ]
        )

    # When more writes follow
    put(stack, f"{run}-after", kind="thing")
    seen = receive_until(
        stack, "SeenQueue", lambda b: any(r["dynamodb"]["Keys"]["pk"]["S"] == f"{run}-after" for r in b)
    )

    # Then the writes around it arrive, and the rolled-back one never does
    keys = [r["dynamodb"]["Keys"]["pk"]["S"] for r in seen if r["dynamodb"]["Keys"]["pk"]["S"].startswith(run)]
    assert keys == [f"{run}-before", f"{run}-after"]
