"""Segments after a burst of purchases on one member (docs/refresh.md, "Fresh between refreshes").

While a member's facts change faster than SegmentReevaluationFunction re-evaluates them, most of its evaluations lose their
conditional write (StaleMember): the image they started from is older than the member. Such a record is acknowledged,
not retried: the change that moved the member is a later record of the same stream, carrying a newer image, and that
record re-evaluates the member. The burst's last record carries the final facts and settles the member.

Two ways in, on moto and on DynamoDB Local:
- the handler alone, fed stream records whose images are older than the member (deterministic interleaving);
- the handler behind the local stack's stream poller (devstack.pollers.StreamPoller, with the template's event source
  mapping: filter, batch size, bisection, retries), reading the table's real stream, while every segment write of
  the burst loses to a purchase that lands between the evaluation and its write. Then silence, and within a bounded
  time the member's memberships are the pure core's answer for their final item.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer

from devstack.functions import InvocationError
from devstack.pollers import StreamPoller
from loyalty import runtime
from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.points.member_record import is_settled
from loyalty.points.members import Consent, Enrollment, Profile
from loyalty.segments.assign import segments_of
from loyalty.segments.features import features_of
from loyalty.segments.ports import PublishedCutPoints, StaleMember
from loyalty.segments.rfm import RfmCutPoints, money_bucket
from tests.integration.conftest import CREDENTIALS, REGION, TEMPLATE, Loyalty
from tests.integration.test_functions_events import LambdaContext, load_handler

BURST = 24  # purchases on one member
BACKLOG = 6  # of them, already in the stream before the poller's first read
AMOUNT = "60"  # 60 points each: High Spender (more than 500 points in 6 months) from the 9th purchase on
SETTLE_WITHIN = 10.0  # seconds from the burst's last purchase to the member's final segments
EMAIL = "burst.shopper@example.com"
FIRST_NAME = "Bernadette"

_serializer = TypeSerializer()


@pytest.fixture(scope="module")
def segment_reevaluation() -> ModuleType:
    return load_handler("segment_reevaluation")


@dataclass
class Burst:
    loyalty: Loyalty
    member_id: str
    store: SegmentStore
    bought: int = 0
    ended_at: float | None = None

    def buy(self) -> None:
        self.bought += 1
        outcome = self.loyalty.buy(self.member_id, AMOUNT, order_id=f"burst-{self.bought}")
        assert outcome.status == 201, outcome.body
        if self.bought == BURST:
            self.ended_at = time.monotonic()

    @property
    def remaining(self) -> int:
        return BURST - self.bought

    def image(self) -> dict[str, Any]:
        """The member item as it is now, as a stream record's NewImage carries it."""
        return {name: _serializer.serialize(value) for name, value in self.loyalty.member_item(self.member_id).items()}

    def fresh_evaluation(self) -> set[str]:
        """The pure core's answer for the member's item as it is now, with the published cut points."""
        config = self.store.get_config()
        published = self.store.get_cut_points()
        assert published is not None
        features = features_of(self.loyalty.member_item(self.member_id), datetime.now(UTC), config)
        return segments_of(features, published.cut_points, config, published.model)

    def memberships(self) -> set[str]:
        return {m.segment_id for m in self.store.memberships_of(self.member_id)}

    def segment_events(self) -> list[dict[str, Any]]:
        items = self.loyalty.all_items()
        return [i for i in items if i["PK"] == f"MEMBER#{self.member_id}" and str(i["SK"]).startswith("SEGEVENT#")]

    def assert_settled_on_fresh_evaluation(self) -> None:
        expected = self.fresh_evaluation()
        item = self.loyalty.member_item(self.member_id)
        assert self.memberships() == expected
        assert set(item.get("segments") or ()) == expected
        assert is_settled(item), "the stored segments are those of the member's final facts"
        # each change announced once: per segment, what entered and left adds up to the membership
        for segment in {str(e["segment_id"]) for e in self.segment_events()} | expected:
            kinds = [str(e["event_type"]) for e in self.segment_events() if e["segment_id"] == segment]
            assert kinds.count("SegmentEntered") - kinds.count("SegmentLeft") == int(segment in expected), segment


@pytest.fixture
def burst(loyalty: Loyalty, monkeypatch: pytest.MonkeyPatch) -> Iterator[Burst]:
    """A member with a profile (personal data the logs must not carry), the table in TABLE_NAME for the handler, and
    RFM cut points published so that the burst moves the member's RFM segment as well as their points segments."""
    monkeypatch.setenv("TABLE_NAME", loyalty.table)
    monkeypatch.setenv("CONFIG_CACHE_SECONDS", "0")
    if loyalty.backend == "dynamodb-local":
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", loyalty.client.meta.endpoint_url)
    runtime.reset()
    store = SegmentStore(loyalty.store)
    buckets = tuple(money_bucket(Decimal(amount)) for amount in (100, 300, 600, 1000))
    store.put_cut_points(
        PublishedCutPoints(
            "run-before-the-burst",
            datetime.now(UTC).isoformat(),
            RfmCutPoints(r=(1, 2, 3, 4), f=(2, 4, 8, 16), m=buckets),  # type: ignore[arg-type]
        )
    )
    enrolled = loyalty.service.enroll(
        Enrollment(
            external_id=f"burst-{uuid.uuid4().hex[:8]}",
            profile=Profile(first_name=FIRST_NAME, email=EMAIL),
            consent=Consent(profiling=True),  # segmented by behaviour
        )
    )
    yield Burst(loyalty, str(enrolled.body["member_id"]), store)
    runtime.reset()


def record(image: dict[str, Any], sequence: int) -> dict[str, Any]:
    """A MODIFY record of the member item, as Lambda delivers it (events/segment_reevaluation_member_modified.json)."""
    return {
        "eventID": uuid.uuid4().hex,
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "Keys": {"PK": image["PK"], "SK": image["SK"]},
            "NewImage": image,
            "SequenceNumber": f"{sequence:024d}",
            "StreamViewType": "NEW_IMAGE",
        },
    }


def log_records(caplog: pytest.LogCaptureFixture, handler: ModuleType) -> list[logging.LogRecord]:
    """What the handler's powertools logger logged (it propagates to pytest's capture)."""
    name = handler.logger.name
    return [r for r in caplog.records if r.name == name or r.name.startswith(f"{name}.")]


def assert_no_personal_data(records: list[logging.LogRecord]) -> None:
    for entry in records:
        text = f"{entry.getMessage()} {entry.__dict__}"
        assert EMAIL not in text and FIRST_NAME not in text


# ---- the handler alone, with images older than the member -------------------------------------------------------


def test_a_record_whose_image_the_member_has_moved_past_is_acknowledged_and_the_bursts_last_record_settles_it(
    burst: Burst, segment_reevaluation: ModuleType, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # Given a burst of purchases, each leaving an image of the member on the stream
    images = []
    for _ in range(6):
        burst.buy()
        images.append(burst.image())
    revisions = [int(image["revision"]["N"]) for image in images]
    # When the second purchase's record arrives after the member has moved on
    result = segment_reevaluation.lambda_handler({"Records": [record(images[1], 2)]}, LambdaContext())
    # Then it is acknowledged, not reported for retry, and nothing is written from its old image
    assert result == {"batchItemFailures": []}
    assert burst.memberships() == set() and burst.segment_events() == []
    # and it is logged as the expected race it is: INFO, with the member id and both revisions, no personal data
    logged = log_records(caplog, segment_reevaluation)
    assert not [r for r in logged if r.levelno >= logging.WARNING]
    (superseded,) = [r for r in logged if r.getMessage().startswith("segment re-evaluation superseded")]
    assert superseded.levelno == logging.INFO
    assert superseded.member_id == burst.member_id  # type: ignore[attr-defined]
    assert superseded.record_revision == revisions[1]  # type: ignore[attr-defined]
    assert superseded.current_revision == revisions[-1]  # type: ignore[attr-defined]
    assert_no_personal_data(logged)

    # When the rest of the burst arrives in one batch, its last record carrying the final image
    caplog.clear()
    batch = [record(images[i], i + 1) for i in (2, 3, 4, 5)]
    result = segment_reevaluation.lambda_handler({"Records": batch}, LambdaContext())
    # Then the member's segments are a fresh evaluation of their final facts, each change announced once
    assert result == {"batchItemFailures": []}
    assert "points:high-spenders" not in burst.memberships()  # 6 x 60 points: not yet
    burst.assert_settled_on_fresh_evaluation()
    events = len(burst.segment_events())
    assert events == len(burst.memberships())  # only entries: the older images wrote nothing
    summary = next(r for r in log_records(caplog, segment_reevaluation) if r.getMessage() == "members re-evaluated")
    assert summary.superseded == 3 and summary.changes == events  # type: ignore[attr-defined]

    # When Lambda delivers the last record again (a retried batch), and then the segment write's own record
    result = segment_reevaluation.lambda_handler({"Records": [record(images[5], 6)]}, LambdaContext())
    assert result == {"batchItemFailures": []}
    result = segment_reevaluation.lambda_handler({"Records": [record(burst.image(), 7)]}, LambdaContext())
    # Then nothing moves and nothing is announced twice
    assert result == {"batchItemFailures": []}
    burst.assert_settled_on_fresh_evaluation()
    assert len(burst.segment_events()) == events
    assert not [r for r in log_records(caplog, segment_reevaluation) if r.levelno >= logging.WARNING]


def test_a_write_that_keeps_failing_while_the_member_stands_still_is_an_error_and_is_retried(
    burst: Burst, segment_reevaluation: ModuleType, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    burst.buy()
    image = burst.image()

    # Given segment writes that are refused although the member's facts do not move (not a race: a real failure)
    def refused(self: SegmentStore, member: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        raise StaleMember(f"member {member['member_id']} changed while its segments were evaluated")

    monkeypatch.setattr(SegmentStore, "apply", refused)
    # When its record arrives
    result = segment_reevaluation.lambda_handler({"Records": [record(image, 1)]}, LambdaContext())
    # Then the record is reported for retry, and logged as an ERROR naming the member, without personal data
    assert result == {"batchItemFailures": [{"itemIdentifier": f"{1:024d}"}]}
    logged = log_records(caplog, segment_reevaluation)
    (error,) = [r for r in logged if r.levelno >= logging.ERROR]
    assert error.getMessage() == "segment re-evaluation failed"
    assert error.member_id == burst.member_id  # type: ignore[attr-defined]
    assert error.record_revision == int(image["revision"]["N"])  # type: ignore[attr-defined]
    assert_no_personal_data(logged)


# ---- the handler behind the stream poller, reading the table's stream -------------------------------------------


@dataclass
class Deliveries:
    invocations: int = 0
    records: int = 0
    stale: int = 0  # segment writes refused by their condition (StaleMember)
    writes: int = 0  # segment transactions attempted


class InProcessPool:
    """What the local stack's function pool does for the poller: invoke the handler, a raise as an InvocationError."""

    def __init__(self, handler: ModuleType, counts: Deliveries):
        self.handler = handler
        self.counts = counts

    def invoke(self, event: dict[str, Any]) -> Any:
        self.counts.invocations += 1
        self.counts.records += len(event["Records"])
        try:
            return self.handler.lambda_handler(event, LambdaContext())
        except Exception as error:
            raise InvocationError("SegmentReevaluationFunction", error) from error


def reevaluation_stream_source(**changes: Any) -> Any:
    (source,) = [e for e in TEMPLATE.stream_events if e.function == "SegmentReevaluationFunction"]
    return dataclasses.replace(source, **changes)


MAPPINGS = {
    # the template's mapping as Lambda runs it (batches of 100, 20 retries with bisection)
    "template": lambda: (reevaluation_stream_source(), reevaluation_stream_source().maximum_retry_attempts),
    # small batches, so that the burst's records spread over many invocations; the local stack's retry cap
    "batches-of-3": lambda: (reevaluation_stream_source(batch_size=3), None),
}


@pytest.mark.parametrize("mapping", list(MAPPINGS))
def test_after_a_burst_that_races_every_reevaluation_the_stream_settles_the_member_within_seconds(
    burst: Burst,
    segment_reevaluation: ModuleType,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    mapping: str,
) -> None:
    caplog.set_level(logging.INFO)
    loyalty = burst.loyalty
    counts = Deliveries()
    # Given the first purchases of a burst already on the stream
    for _ in range(BACKLOG):
        burst.buy()
    # and the rest of the burst racing the re-evaluations: one purchase lands between each evaluation and its write
    real_apply = SegmentStore.apply

    def racing_apply(self: SegmentStore, *args: Any, **kwargs: Any) -> Any:
        if burst.remaining:
            burst.buy()
        counts.writes += 1
        try:
            return real_apply(self, *args, **kwargs)
        except StaleMember:
            counts.stale += 1
            raise

    monkeypatch.setattr(SegmentStore, "apply", racing_apply)
    # When the stream poller delivers the table's stream to the handler, with the template's mapping
    source, max_retries = MAPPINGS[mapping]()
    endpoint = loyalty.client.meta.endpoint_url if loyalty.backend == "dynamodb-local" else None
    streams = boto3.client("dynamodbstreams", region_name=REGION, endpoint_url=endpoint, **CREDENTIALS)
    stream_arn = loyalty.client.describe_table(TableName=loyalty.table)["Table"]["LatestStreamArn"]
    poller = StreamPoller(
        InProcessPool(segment_reevaluation, counts),  # type: ignore[arg-type]
        source,
        stream_arn,
        streams,
        None,
        REGION,
        "arn:aws:lambda:us-east-1:123456789012:function:SegmentReevaluationFunction",
        verify_reads=loyalty.backend == "moto",
    )
    if max_retries is not None:
        poller.max_retries = max_retries
    deadline = time.monotonic() + 120
    idle = 0
    while idle < 3:  # until the stream has nothing new for three polls in a row: silence
        assert time.monotonic() < deadline, f"the stream did not drain: {counts}, {poller.status()}"
        idle = 0 if poller.poll_once() else idle + 1
    settled_at = time.monotonic()

    # Then the whole burst happened, racing: every segment write but the last lost its condition, and each of those
    # records was acknowledged as superseded (one INFO line each), not retried
    assert burst.bought == BURST and burst.ended_at is not None
    assert counts.stale >= BURST - BACKLOG and counts.writes == counts.stale + 1
    logged = log_records(caplog, segment_reevaluation)
    assert len([r for r in logged if r.getMessage().startswith("segment re-evaluation superseded")]) == counts.stale
    print(
        f"\n{loyalty.backend}/{mapping}: {BURST} purchases, {counts.records} records in {counts.invocations} "
        f"invocations, {counts.writes} segment transactions, {counts.stale} StaleMember, "
        f"{poller.failed_attempts} failed attempts, {poller.dead_lettered} dead-lettered, "
        f"settled {settled_at - burst.ended_at:.2f} s after the last purchase"
    )
    # and the member's segments are a fresh evaluation of their final facts, within seconds of the last purchase
    burst.assert_settled_on_fresh_evaluation()
    assert "points:high-spenders" in burst.memberships()
    assert settled_at - burst.ended_at < SETTLE_WITHIN
    # with no record reported for retry, none parked, and nothing logged above INFO
    assert poller.failed_attempts == 0 and poller.dead_lettered == 0
    assert not [r for r in logged if r.levelno >= logging.WARNING]
    assert_no_personal_data(logged)
