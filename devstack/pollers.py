"""Background delivery that Lambda's event sources do on AWS: stream records, queues and EventBridge rules to handlers.

- `StreamPoller`: a DynamoDB stream event source mapping (filter, batch, ReportBatchItemFailures, retries, then the
  OnFailure destination).
- `SqsPoller`: an SQS event source mapping (batches, several at once, ReportBatchItemFailures; the queue's
  RedrivePolicy parks what keeps failing).
- `RulePoller`: an EventBridge rule whose target is a function. moto does not invoke Lambda targets, so the rule is
  made on the bus with an SQS target of our own, and that queue is polled into the handler.
- `EventTap`: a rule that copies the bus's domain events into a ring buffer (`/_local/events`, `wait_for_events`).

Each is a daemon thread with `stop()`; `status()` feeds `/_local/status`.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError
from moto.events.models import EventPattern

from devstack.functions import FunctionPool, InvocationError
from devstack.template import EventBridgeRuleEvent, SqsEvent, StreamEvent

log = logging.getLogger("devstack.pollers")

LOCAL_RETRY_CAP = 3  # AWS retries a failing stream batch up to MaximumRetryAttempts (100 here); locally, 3 is plenty
IDLE_WAIT = 0.2


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _queue_name(*parts: str) -> str:
    """An SQS queue / EventBridge rule name (letters, digits, - and _; at most 64 characters)."""
    name = re.sub(r"[^A-Za-z0-9_-]", "-", "-".join(parts))
    return name if len(name) <= 64 else f"{name[:55]}-{uuid.uuid5(uuid.NAMESPACE_URL, name).hex[:8]}"


@dataclass
class Destination:
    """Where failed work goes: an SQS queue (URL) or an SNS topic (ARN), as a Lambda destination or a DLQ."""

    kind: str  # "sqs" or "sns"
    target: str
    client: Any
    arn: str = ""

    def send(self, message: Mapping[str, Any], attributes: Mapping[str, str] | None = None) -> None:
        body = json.dumps(message, default=str)
        message_attributes = {
            k: {"DataType": "String", "StringValue": v[:256] or "-"} for k, v in (attributes or {}).items()
        }
        if self.kind == "sqs":
            self.client.send_message(QueueUrl=self.target, MessageBody=body, MessageAttributes=message_attributes)
        else:
            self.client.publish(TopicArn=self.target, Message=body, MessageAttributes=message_attributes)


class Poller(threading.Thread):
    kind = "poller"

    def __init__(self, name: str, function: str | None):
        super().__init__(name=name, daemon=True)
        self.function = function
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed_attempts = 0
        self.dead_lettered = 0
        self.last_error: str | None = None

    def stop(self) -> None:
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def setup(self) -> None:
        """Make what the poller reads from (rules, queues). Runs before the thread starts."""

    def poll_once(self) -> bool:
        """One round. True if it found work (poll again at once), False if idle."""
        raise NotImplementedError

    def run(self) -> None:
        while not self.stopping:
            try:
                busy = self.poll_once()
            except Exception as error:
                if self.stopping:
                    break
                self.last_error = f"{type(error).__name__}: {error}"
                log.warning("%s: %s", self.name, self.last_error, exc_info=log.isEnabledFor(logging.DEBUG))
                self._stopping.wait(1.0)
                continue
            if not busy:
                self._stopping.wait(IDLE_WAIT)

    def status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "function": self.function,
            "alive": self.is_alive(),
            "delivered": self.delivered,
            "failed_attempts": self.failed_attempts,
            "dead_lettered": self.dead_lettered,
            "last_error": self.last_error,
        }


# --- DynamoDB streams ---------------------------------------------------------------------------------------------


def _lambda_shaped(value: Any) -> Any:
    """boto3 parses stream records (datetimes, bytes); Lambda's event has numbers and base64 strings."""
    if isinstance(value, dict):
        return {k: _lambda_shaped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lambda_shaped(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _repair_attribute_value(value: Any) -> Any:
    if value == {}:
        return {"M": {}}
    if isinstance(value, dict) and isinstance(value.get("M"), dict):
        return {"M": {k: _repair_attribute_value(v) for k, v in value["M"].items()}}
    if isinstance(value, dict) and isinstance(value.get("L"), list):
        return {"L": [_repair_attribute_value(v) for v in value["L"]]}
    return value


def stream_record_for_lambda(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """The record as Lambda's DynamoDB event carries it."""
    shaped = _lambda_shaped(dict(record))
    images = shaped.get("dynamodb") or {}
    for image in ("Keys", "NewImage", "OldImage"):
        if isinstance(images.get(image), dict):
            # DynamoDB Local's stream writes an empty map attribute as {} instead of {"M": {}} (GetItem does not):
            # no deserializer reads that, and real streams never send it.
            images[image] = {k: _repair_attribute_value(v) for k, v in images[image].items()}
    shaped["eventSource"] = "aws:dynamodb"
    shaped["eventSourceARN"] = stream_arn
    shaped["awsRegion"] = region  # DynamoDB Local says "ddblocal"
    return shaped


class StreamFilter:
    """Lambda event filtering: a record passes if any pattern matches (no patterns: everything passes).

    Lambda's filter syntax is EventBridge's, so moto's EventBridge matcher does the matching.
    """

    def __init__(self, patterns: tuple[Mapping[str, Any], ...]):
        self.patterns = [EventPattern.load(json.dumps(p)) for p in patterns]

    def matches(self, record: Mapping[str, Any]) -> bool:
        return not self.patterns or any(p.matches_event(dict(record)) for p in self.patterns)


class StreamPoller(Poller):
    kind = "dynamodb-stream"

    def __init__(
        self,
        pool: FunctionPool,
        event: StreamEvent,
        stream_arn: str,
        streams: Any,
        on_failure: Destination | None,
        region: str,
        function_arn: str,
        verify_reads: bool = False,
    ):
        super().__init__(f"stream:{event.function}.{event.name}", event.function)
        self.verify_reads = verify_reads  # for moto: see _poll_verified
        self.pool = pool
        self.event = event
        self.stream_arn = stream_arn
        self.streams = streams
        self.on_failure = on_failure
        self.region = region
        self.function_arn = function_arn
        self.filter = StreamFilter(event.filter_patterns)
        retries = event.maximum_retry_attempts
        self.max_retries = LOCAL_RETRY_CAP if retries < 0 else min(retries, LOCAL_RETRY_CAP)
        self.filtered_out = 0
        self._iterators: dict[str, str | None] = {}  # shard id -> iterator (None: shard closed and read)
        self._parents: dict[str, str | None] = {}
        self._last_sequence: dict[str, str] = {}
        self._described = 0.0
        self._history: dict[str, OrderedDict[int, str]] = {}  # shard -> delivered sequence number -> eventID
        self._pending: dict[str, dict[int, str]] = {}  # shard -> records seen once, not yet confirmed
        self._skip_existing = event.starting_position == "LATEST"
        self.rewinds = 0

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "stream_arn": self.stream_arn,
            "shards": len(self._iterators),
            "filtered_out": self.filtered_out,
            "batch_size": self.event.batch_size,
            "max_retries": self.max_retries,
            **({"verified_reads": True, "rewinds": self.rewinds} if self.verify_reads else {}),
        }

    def _refresh_shards(self) -> None:
        start: str | None = None
        first_time = not self._iterators
        while True:
            kwargs = {"StreamArn": self.stream_arn, **({"ExclusiveStartShardId": start} if start else {})}
            description = self.streams.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id in self._iterators:
                    continue
                self._parents[shard_id] = shard.get("ParentShardId")
                # A shard that appears later is read from its start; the first ones from the mapping's position.
                position = self.event.starting_position if first_time else "TRIM_HORIZON"
                self._iterators[shard_id] = self.streams.get_shard_iterator(
                    StreamArn=self.stream_arn,
                    ShardId=shard_id,
                    ShardIteratorType="LATEST" if position == "LATEST" else "TRIM_HORIZON",
                )["ShardIterator"]
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        self._described = time.monotonic()

    def _ready(self, shard_id: str) -> bool:
        parent = self._parents.get(shard_id)  # a child shard waits until its parent is read to the end
        return not parent or parent not in self._iterators or self._iterators[parent] is None

    def poll_once(self) -> bool:
        if not self._iterators or time.monotonic() - self._described > 1.0:
            self._refresh_shards()
        busy = False
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None or not self._ready(shard_id) or self.stopping:
                continue
            if self.verify_reads:
                busy = self._poll_verified(shard_id) or busy
                continue
            try:
                page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            except ClientError as error:
                if error.response["Error"]["Code"] not in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                    raise
                self._iterators[shard_id] = self._reopen(shard_id)
                continue
            records = page.get("Records", [])
            self._iterators[shard_id] = page.get("NextShardIterator")
            if records:
                busy = True
                self._deliver(shard_id, records)
                self._last_sequence[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
        return busy

    # moto: a transaction that fails replaces the table, stream shard included, by a copy taken before it began.
    # Iterators then read a shard nobody writes to any more, records of the rolled-back writes were visible for a
    # moment, and new records reuse their sequence numbers. So on moto each poll reads the current shard afresh,
    # checks that the last delivered record is still there, and delivers a record only once two reads agree.

    def _records(self, shard_id: str, iterator_type: str, sequence: int | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id, "ShardIteratorType": iterator_type}
        if sequence is not None:
            kwargs["SequenceNumber"] = str(sequence)
        iterator = self.streams.get_shard_iterator(**kwargs)["ShardIterator"]
        return list(self.streams.get_records(ShardIterator=iterator, Limit=1000).get("Records", []))

    def _poll_verified(self, shard_id: str) -> bool:
        history = self._history.setdefault(shard_id, OrderedDict())
        last = self._last_sequence.get(shard_id)
        if last is None:
            records = self._records(shard_id, "TRIM_HORIZON")
        else:
            records = self._records(shard_id, "AT_SEQUENCE_NUMBER", int(last))
            head = records[0] if records else None
            if head is None or history.get(int(head["dynamodb"]["SequenceNumber"])) != head["eventID"]:
                self._rewind(shard_id)
                return True
            records = records[1:]
        pending = self._pending.get(shard_id, {})
        confirmed = []
        for record in records:
            if pending.get(int(record["dynamodb"]["SequenceNumber"])) != record["eventID"]:
                break
            confirmed.append(record)
        self._pending[shard_id] = {int(r["dynamodb"]["SequenceNumber"]): r["eventID"] for r in records}
        if not confirmed:
            return False  # what was read once is confirmed on the next poll, after the idle wait
        if self._skip_existing:
            self._skip_existing = False  # StartingPosition LATEST: what was there at start is not delivered
        else:
            self._deliver(shard_id, confirmed)
        for record in confirmed:
            history[int(record["dynamodb"]["SequenceNumber"])] = record["eventID"]
        while len(history) > 50_000:
            history.popitem(last=False)
        self._last_sequence[shard_id] = confirmed[-1]["dynamodb"]["SequenceNumber"]
        return True

    def _rewind(self, shard_id: str) -> None:
        """The shard was rolled back: resume after the newest delivered record that is still in it."""
        current: dict[int, str] = {}
        iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page.get("Records"):
                break
            current.update({int(r["dynamodb"]["SequenceNumber"]): r["eventID"] for r in page["Records"]})
            iterator = page.get("NextShardIterator")
        history = self._history[shard_id]
        resume = next((seq for seq, event_id in reversed(history.items()) if current.get(seq) == event_id), None)
        while history and next(reversed(history)) != resume:
            history.popitem()
        if resume is None:
            self._last_sequence.pop(shard_id, None)
        else:
            self._last_sequence[shard_id] = str(resume)
        self._pending[shard_id] = {}
        self.rewinds += 1
        log.warning(
            "%s: the stream was rolled back (moto replaces a table and its stream when a transaction fails); "
            "reading again after sequence number %s",
            self.name,
            resume,
        )

    def _reopen(self, shard_id: str) -> str:
        last = self._last_sequence.get(shard_id)
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if last:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=last)
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        return str(self.streams.get_shard_iterator(**kwargs)["ShardIterator"])

    def _deliver(self, shard_id: str, raw_records: list[dict[str, Any]]) -> None:
        records = []
        for raw in raw_records:
            record = stream_record_for_lambda(raw, self.stream_arn, self.region)
            if self.filter.matches(record):
                records.append(record)
            else:
                self.filtered_out += 1
        start = 0
        while start < len(records) and not self.stopping:
            size = min(self.event.batch_size, len(records) - start)
            attempts = 0
            while not self.stopping:
                batch = records[start : start + size]
                first_failed, error = self._invoke(batch)
                attempts += 1
                if first_failed is None:
                    self.delivered += len(batch)
                    start += size
                    break
                self.failed_attempts += 1
                self.delivered += first_failed  # the records before the first failure are done (checkpointed)
                start += first_failed
                size -= first_failed
                if attempts > self.max_retries:
                    self._give_up(shard_id, records[start : start + size], attempts, error)
                    start += size
                    break
                if error is not None and self.event.bisect_on_error and size > 1:
                    size = (size + 1) // 2  # BisectBatchOnFunctionError: retry the first half alone
                self._stopping.wait(min(0.1 * 2**attempts, 1.0))

    def _invoke(self, batch: list[dict[str, Any]]) -> tuple[int | None, InvocationError | None]:
        """(index of the first failed record or None, the error if the function raised)."""
        try:
            response = self.pool.invoke({"Records": batch})
        except InvocationError as error:
            self.last_error = str(error)
            log.warning("%s: %s", self.name, error)
            return 0, error
        if not self.event.report_batch_item_failures or not isinstance(response, dict):
            return None, None
        failures = response.get("batchItemFailures") or []
        if not failures:
            return None, None
        sequences = [r["dynamodb"]["SequenceNumber"] for r in batch]
        indexes = []
        for failure in failures:
            identifier = (failure or {}).get("itemIdentifier")
            if identifier not in sequences:
                # Lambda reads an empty or unknown identifier as the whole batch failing.
                self.last_error = f"batchItemFailures names {identifier!r}, not a record of the batch"
                return 0, None
            indexes.append(sequences.index(identifier))
        self.last_error = f"{len(failures)} of {len(batch)} records reported as failed"
        return min(indexes), None

    def _give_up(
        self, shard_id: str, records: list[dict[str, Any]], attempts: int, error: InvocationError | None
    ) -> None:
        log.error(
            "%s: %d records failed %d times, sent to the OnFailure destination", self.name, len(records), attempts
        )
        self.dead_lettered += len(records)
        if self.on_failure is None or not records:
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        message: dict[str, Any] = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                **({"functionError": "Unhandled"} if error else {}),
            },
            "version": "1.0",
            "timestamp": _now_iso(),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first.get("SequenceNumber"),
                "endSequenceNumber": last.get("SequenceNumber"),
                "approximateArrivalOfFirstRecord": _iso(first.get("ApproximateCreationDateTime")),
                "approximateArrivalOfLastRecord": _iso(last.get("ApproximateCreationDateTime")),
                "batchSize": len(records),
                "streamArn": self.stream_arn,
            },
        }
        self.on_failure.send(message)


def _iso(epoch: Any) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(float(epoch), UTC).isoformat().replace("+00:00", "Z")


# --- SQS queues ---------------------------------------------------------------------------------------------------

SQS_CONCURRENCY = 4  # batches in flight at once per mapping: Lambda scales out further, a laptop need not
SQS_RETRY_VISIBILITY = 1  # seconds until a failed message is received again (AWS: the queue's VisibilityTimeout)
SQS_WAIT_SECONDS = 1  # long poll, short so that stop() is quick
SQS_STOP_GRACE = 5.0  # seconds stop() waits for batches in flight


def _base64(data: Any) -> str:
    return base64.b64encode(data).decode("ascii") if isinstance(data, bytes | bytearray) else str(data)


def _message_attribute_for_lambda(value: Mapping[str, Any]) -> dict[str, Any]:
    """SQS's MessageAttributeValue as Lambda's event spells it: camelCase, binary as base64, lists always there."""
    shaped: dict[str, Any] = {}
    if value.get("StringValue") is not None:
        shaped["stringValue"] = value["StringValue"]
    if value.get("BinaryValue") is not None:
        shaped["binaryValue"] = _base64(value["BinaryValue"])
    shaped["stringListValues"] = list(value.get("StringListValues") or [])
    shaped["binaryListValues"] = [_base64(v) for v in value.get("BinaryListValues") or []]
    shaped["dataType"] = value.get("DataType", "String")
    return shaped


def sqs_record_for_lambda(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """A received message as a record of Lambda's SQS event."""
    attributes = message.get("MessageAttributes") or {}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {name: _message_attribute_for_lambda(v) for name, v in attributes.items()},
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class SqsPoller(Poller):
    """An `SQS` event source mapping: long-polls the queue and runs up to `concurrency` batches at once.

    Each batch runs in a thread of its own (as a gateway request does: Powertools' per-request state is per
    thread). A batch that succeeds is deleted. A raised exception leaves every message of the batch, a
    `batchItemFailures` answer (with ReportBatchItemFailures) only those it names; they are received again after
    `retry_visibility` seconds instead of the queue's VisibilityTimeout. The queue's own RedrivePolicy parks a
    message after maxReceiveCount receives: moto applies it on receive, as SQS does, so the poller only counts it.
    """

    kind = "sqs"

    def __init__(
        self,
        pool: FunctionPool,
        event: SqsEvent,
        queue_url: str,
        queue_arn: str,
        sqs: Any,
        region: str,
        concurrency: int = SQS_CONCURRENCY,
        retry_visibility: int = SQS_RETRY_VISIBILITY,
    ):
        super().__init__(f"sqs:{event.function}.{event.name}", event.function)
        self.pool = pool
        self.event = event
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.sqs = sqs
        self.region = region
        self.concurrency = max(1, concurrency)
        self.retry_visibility = retry_visibility
        self.batch_size = max(1, min(event.batch_size, 10))  # one ReceiveMessage returns at most 10 messages
        self.max_receive_count: int | None = None
        self.dead_letter_arn: str | None = None
        self.in_flight = 0
        self.peak_in_flight = 0
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._workers: set[threading.Thread] = set()
        self._batch_numbers = itertools.count(1)

    def status(self) -> dict[str, Any]:
        with self._lock:
            in_flight, peak = self.in_flight, self.peak_in_flight
        return {
            **super().status(),
            "queue_url": self.queue_url,
            "queue_arn": self.queue_arn,
            "batch_size": self.batch_size,
            "report_batch_item_failures": self.event.report_batch_item_failures,
            "concurrency": self.concurrency,
            "in_flight": in_flight,
            "peak_in_flight": peak,
            "retry_visibility_seconds": self.retry_visibility,
            "max_receive_count": self.max_receive_count,
            "dead_letter_arn": self.dead_letter_arn,
        }

    def setup(self) -> None:
        attributes = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
        policy = (attributes.get("Attributes") or {}).get("RedrivePolicy")
        if policy:
            redrive = json.loads(policy)
            self.max_receive_count = int(redrive["maxReceiveCount"])
            self.dead_letter_arn = redrive.get("deadLetterTargetArn")

    def run(self) -> None:
        super().run()
        # Stopping: let the batches in flight finish, so their messages are deleted or released, not left hidden.
        deadline = time.monotonic() + SQS_STOP_GRACE
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                log.warning("%s: batch %s still running at stop", self.name, worker.name)

    def poll_once(self) -> bool:
        if not self._slots.acquire(timeout=IDLE_WAIT):
            return True  # every worker is busy; that wait was the idle wait
        slots = 1
        while slots * self.batch_size < 10 and self._slots.acquire(blocking=False):
            slots += 1
        try:
            messages = (
                []
                if self.stopping
                else self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(10, slots * self.batch_size),
                    WaitTimeSeconds=SQS_WAIT_SECONDS,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                ).get("Messages", [])
            )
        except BaseException:
            for _ in range(slots):
                self._slots.release()
            raise
        batches = [messages[i : i + self.batch_size] for i in range(0, len(messages), self.batch_size)]
        for _ in range(slots - len(batches)):
            self._slots.release()
        for batch in batches:
            self._start(batch)
        return bool(messages)

    def _start(self, messages: list[dict[str, Any]]) -> None:
        worker = threading.Thread(
            target=self._work, args=(messages,), name=f"{self.name}#{next(self._batch_numbers)}", daemon=True
        )
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self._workers.add(worker)
        worker.start()

    def _work(self, messages: list[dict[str, Any]]) -> None:
        try:
            self._process(messages)
        except Exception as error:  # the emulator went away (stop), or answered an error: said, never silent
            self.last_error = f"{type(error).__name__}: {error}"
            log.warning("%s: %s", self.name, self.last_error, exc_info=log.isEnabledFor(logging.DEBUG))
        finally:
            with self._lock:
                self.in_flight -= 1
                self._workers.discard(threading.current_thread())
            self._slots.release()

    def _process(self, messages: list[dict[str, Any]]) -> None:
        records = [sqs_record_for_lambda(m, self.queue_arn, self.region) for m in messages]
        failed = self._invoke(records)
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        if done:
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)]
            self._check_batch("delete", self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries))
        if retry:
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.retry_visibility}
                for i, m in enumerate(retry)
            ]
            response = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            self._check_batch("release", response)
        parked = [m for m in retry if self._last_receive(m)]
        with self._lock:
            self.delivered += len(done)
            self.failed_attempts += len(retry)
            self.dead_lettered += len(parked)
        for message in parked:
            log.error(
                "%s: message %s failed on receive %s of %s: SQS moves it to %s",
                self.name,
                message["MessageId"],
                message.get("Attributes", {}).get("ApproximateReceiveCount"),
                self.max_receive_count,
                self.dead_letter_arn,
            )

    def _last_receive(self, message: Mapping[str, Any]) -> bool:
        """Whether this failure was the message's last receive before the RedrivePolicy parks it."""
        receives = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        return self.max_receive_count is not None and receives >= self.max_receive_count

    def _check_batch(self, what: str, response: Mapping[str, Any]) -> None:
        for failure in response.get("Failed") or []:
            self.last_error = f"{what} failed for a message: {failure.get('Code')} {failure.get('Message')}"
            log.warning("%s: %s", self.name, self.last_error)

    def _invoke(self, records: list[dict[str, Any]]) -> set[str]:
        """The ids of the messages that failed: all of them when the handler raised or its answer is unusable."""
        every = {r["messageId"] for r in records}
        try:
            response = self.pool.invoke({"Records": records})
        except Exception as error:  # InvocationError; or the module would not load, which Lambda also retries
            self.last_error = str(error)
            log.warning("%s: %d messages failed: %s", self.name, len(records), error)
            return every
        if not self.event.report_batch_item_failures or not isinstance(response, dict):
            return set()
        failures = response.get("batchItemFailures")
        if not failures:
            return set()  # an empty or null list: the whole batch succeeded
        failed: set[str] = set()
        for failure in failures if isinstance(failures, list) else [None]:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if identifier not in every:
                # As on Lambda: an empty, null or unknown itemIdentifier fails the whole batch.
                self.last_error = f"batchItemFailures names {identifier!r}, not a message of the batch"
                log.warning("%s: %s", self.name, self.last_error)
                return every
            failed.add(str(identifier))
        self.last_error = f"{len(failed)} of {len(records)} messages reported as failed"
        return failed


# --- EventBridge rules --------------------------------------------------------------------------------------------


class _QueuedRule(Poller):
    """A rule on a bus whose target is a queue of ours; subclasses say what to do with each event."""

    def __init__(
        self,
        name: str,
        function: str | None,
        rule_name: str,
        queue_name: str,
        patterns: Mapping[str, Mapping[str, Any]],
        events: Any,
        sqs: Any,
        rule_input: Any = None,
    ):
        super().__init__(name, function)
        self.rule_name = rule_name
        self.queue_name = queue_name
        self.patterns = {bus: dict(pattern) for bus, pattern in patterns.items()}  # bus name -> event pattern
        self.events_client = events
        self.sqs = sqs
        self.rule_input = rule_input
        self.queue_url = ""

    def setup(self) -> None:
        self.queue_url = self.sqs.create_queue(QueueName=self.queue_name, Attributes={"VisibilityTimeout": "30"})[
            "QueueUrl"
        ]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for bus, pattern in self.patterns.items():
            self.events_client.put_rule(
                Name=self.rule_name,
                EventBusName=bus,
                EventPattern=json.dumps(pattern),
                State="ENABLED",
                Description="devstack: delivers this rule's events locally",
            )
            target: dict[str, Any] = {"Id": "devstack", "Arn": queue_arn}
            if self.rule_input is not None:
                target["Input"] = self.rule_input if isinstance(self.rule_input, str) else json.dumps(self.rule_input)
            self.events_client.put_targets(Rule=self.rule_name, EventBusName=bus, Targets=[target])

    def poll_once(self) -> bool:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages = response.get("Messages", [])
        for message in messages:
            if self.stopping:
                break
            self.handle(message)
        return bool(messages)

    def handle(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def delete(self, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])


class RulePoller(_QueuedRule):
    """Delivers an `EventBridgeRule` event to its function, with Lambda's asynchronous retries and failure target."""

    kind = "eventbridge-rule"

    def __init__(
        self,
        pool: FunctionPool,
        event: EventBridgeRuleEvent,
        bus_name: str,
        pattern: Mapping[str, Any],
        events: Any,
        sqs: Any,
        on_failure: Destination | None,
        dead_letter: Destination | None,
        max_attempts: int,
        function_arn: str,
        rule_input: Any = None,
    ):
        name = _queue_name("devstack", event.function, event.name)
        super().__init__(
            f"rule:{event.function}.{event.name}",
            event.function,
            name,
            name,
            {bus_name: pattern},
            events,
            sqs,
            rule_input,
        )
        self.pool = pool
        self.event = event
        self.on_failure = on_failure
        self.dead_letter = dead_letter
        self.max_attempts = max_attempts
        self.function_arn = function_arn

    def status(self) -> dict[str, Any]:
        return {**super().status(), "rules": self.patterns, "queue": self.queue_name, "max_attempts": self.max_attempts}

    def handle(self, message: dict[str, Any]) -> None:
        attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            payload = json.loads(message["Body"])
        except ValueError:
            payload = message["Body"]
        try:
            self.pool.invoke(payload)
        except InvocationError as error:
            self.failed_attempts += 1
            self.last_error = str(error)
            log.warning("%s: attempt %d of %d failed: %s", self.name, attempt, self.max_attempts, error)
            if attempt >= self.max_attempts:
                self._give_up(payload, attempt, error)
                self.delete(message)
            else:
                # Lambda retries an asynchronous invocation after a delay; a short one here.
                self.sqs.change_message_visibility(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=min(attempt, 5)
                )
            return
        self.delivered += 1
        self.delete(message)

    def _give_up(self, payload: Any, attempts: int, error: InvocationError) -> None:
        self.dead_lettered += 1
        if self.on_failure is not None:
            # The function's EventInvokeConfig OnFailure destination gets Lambda's invocation record.
            self.on_failure.send(
                {
                    "version": "1.0",
                    "timestamp": _now_iso(),
                    "requestContext": {
                        "requestId": str(uuid.uuid4()),
                        "functionArn": f"{self.function_arn}:$LATEST",
                        "condition": "RetriesExhausted",
                        "approximateInvokeCount": attempts,
                    },
                    "requestPayload": payload,
                    "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
                    "responsePayload": error.payload(),
                }
            )
        elif self.dead_letter is not None:
            # No destination: the event itself, with the error, to the rule's dead-letter queue.
            self.dead_letter.send(
                payload,
                {
                    "ERROR_CODE": error.error_type,
                    "ERROR_MESSAGE": error.error_message,
                    "RULE_ARN": self.rule_name,
                    "TARGET_ARN": self.function_arn,
                },
            )
        else:
            log.error(
                "%s: event dropped after %d attempts (no destination or DLQ): %s",
                self.name,
                attempts,
                json.dumps(payload, default=str)[:500],
            )


class EventTap(_QueuedRule):
    """Keeps the last `capacity` events that match `pattern` on the given buses, newest last."""

    kind = "event-tap"

    def __init__(self, patterns: Mapping[str, Mapping[str, Any]], events: Any, sqs: Any, capacity: int = 10_000):
        name = _queue_name("devstack", "domain-events")
        super().__init__("tap:domain-events", None, name, name, patterns, events, sqs)
        self.buffer: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._arrived = threading.Condition()

    def status(self) -> dict[str, Any]:
        return {**super().status(), "rules": self.patterns, "buffered": len(self.buffer)}

    def handle(self, message: dict[str, Any]) -> None:
        try:
            event = json.loads(message["Body"])
        except ValueError:
            event = {"body": message["Body"]}
        with self._arrived:
            self.buffer.append(event)
            self.delivered += 1
            self._arrived.notify_all()
        self.delete(message)

    def events(self, detail_type: str | None = None, **detail: Any) -> list[dict[str, Any]]:
        with self._arrived:
            snapshot = list(self.buffer)
        return [e for e in snapshot if _event_matches(e, detail_type, detail)]

    def wait_for(
        self, detail_type: str | None, count: int, timeout: float, detail: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = [e for e in self.buffer if _event_matches(e, detail_type, detail or {})]
                remaining = deadline - time.monotonic()
                if len(found) >= count or remaining <= 0:
                    return found
                self._arrived.wait(remaining)


def _event_matches(event: Mapping[str, Any], detail_type: str | None, detail: Mapping[str, Any]) -> bool:
    if detail_type is not None and event.get("detail-type") != detail_type:
        return False
    body = event.get("detail") or {}
    return all(isinstance(body, dict) and body.get(k) == v for k, v in detail.items())
