"""The event-driven functions, in-process against moto: the stream publisher turns the items the store wrote into
domain events on the bus, and the order-events function earns and reverses points from commerce events, once."""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws
from pydantic import ValidationError

from loyalty import runtime
from loyalty.adapters.eventbridge import EventPublisher
from loyalty.core.errors import MemberNotFound, OrderNotFound
from loyalty.core.settings import settings
from loyalty.points.activities import Adjustment, Engagement, Purchase, Refund
from loyalty.points.members import Consent, ConsentChannel, Enrollment, Profile
from loyalty.points.service import LoyaltyService
from tests.integration.conftest import REGION, REWARDS, ROOT, create_loyalty_table, template

EVENTS = ROOT / "events"
_serializer = TypeSerializer()


def load_handler(function: str) -> ModuleType:
    """functions/<name>/app.py as Lambda loads it, under a name of its own (every function's module is `app`)."""
    spec = importlib.util.spec_from_file_location(
        f"{function}_app_under_test", ROOT / "functions" / function / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as an import would: pydantic resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


def sample_event(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


@dataclass
class LambdaContext:
    function_name: str = "under-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:under-test"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"


@dataclass
class Aws:
    table: str
    bus: str
    queue_url: str
    dynamodb: Any
    sqs: Any
    resource: Any

    @property
    def service(self) -> LoyaltyService:
        return runtime.loyalty_service()  # exactly what the handlers use

    def published(self) -> list[dict[str, Any]]:
        """Every event the bus delivered to the capture queue, as EventBridge shapes it."""
        events: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return events
            events.extend(json.loads(message["Body"]) for message in batch)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )

    def items(self, pk: str) -> list[dict[str, Any]]:
        """A partition's items read back as plain values, the way a DynamoDB resource returns them."""
        table = self.resource.Table(self.table)
        return list(table.query(KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": pk})["Items"])

    def balance(self, member_id: str) -> int:
        return self.service.member(member_id).balance.available


@dataclass
class Cloud:
    dynamodb: Any
    resource: Any
    sqs: Any
    bus: str
    queue_url: str


@pytest.fixture(scope="module")
def cloud() -> Iterator[Cloud]:
    """moto for the module: a bus whose rule (the archive's pattern from template.yaml) feeds a capture queue."""
    with pytest.MonkeyPatch.context() as env, mock_aws():
        env.setenv("AWS_DEFAULT_REGION", REGION)
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        bus = "loyalty-test-loyalty"
        events.create_event_bus(Name=bus)
        queue_url = sqs.create_queue(QueueName="captured-domain-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = template()["Resources"]["LoyaltyBusArchive"]["Properties"]["EventPattern"]
        events.put_rule(Name="capture", EventBusName=bus, EventPattern=json.dumps(pattern))
        events.put_targets(Rule="capture", EventBusName=bus, Targets=[{"Id": "queue", "Arn": queue_arn}])
        env.setenv("EVENT_BUS_NAME", bus)
        env.setenv("CONFIG_CACHE_SECONDS", "0")
        resource = boto3.resource("dynamodb", region_name=REGION)
        yield Cloud(boto3.client("dynamodb", region_name=REGION), resource, sqs, bus, queue_url)
    runtime.reset()


@pytest.fixture
def aws(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    """A fresh table from template.yaml, named in TABLE_NAME, and the runtime reset so the handlers use it."""
    table = create_loyalty_table(cloud.dynamodb)
    monkeypatch.setenv("TABLE_NAME", table)
    runtime.reset()
    system = Aws(table, cloud.bus, cloud.queue_url, cloud.dynamodb, cloud.sqs, cloud.resource)
    system.published()  # start with an empty capture queue
    for reward in REWARDS:
        system.service.store.put_reward(reward)
    yield system
    cloud.dynamodb.delete_table(TableName=table)
    runtime.reset()


# ---- the stream publisher ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def publisher() -> ModuleType:
    return load_handler("event_publisher")


def stream_event(items: list[dict[str, Any]], first_sequence: int = 1000) -> dict[str, Any]:
    """A DynamoDB stream batch of INSERTs, shaped like events/event_publisher_stream_insert.json."""
    template_record = sample_event("event_publisher_stream_insert.json")["Records"][0]
    records = []
    for offset, item in enumerate(items):
        record = copy.deepcopy(template_record)
        record["eventID"] = uuid.uuid4().hex
        image = {name: _serializer.serialize(value) for name, value in item.items()}
        record["dynamodb"]["Keys"] = {"PK": image["PK"], "SK": image["SK"]}
        record["dynamodb"]["NewImage"] = image
        record["dynamodb"]["SequenceNumber"] = str(first_sequence + offset)
        records.append(record)
    return {"Records": records}


def history(aws: Aws) -> tuple[str, dict[str, str]]:
    """A member with one change of each kind, written by the real service. Returns (member_id, kind -> entry_id)."""
    service = aws.service
    member_id = service.enroll(
        Enrollment(external_id="cust-1001", profile=Profile(first_name="Ada", email="ada@example.com"))
    ).body["member_id"]
    earned = service.purchase(member_id, Purchase(order_id="web-5531", amount=Decimal("120.50"), currency="USD"))
    bonus = service.record(member_id, Engagement(type="review", reference="SKU-SERUM"), "review-1")
    redeemed = service.redeem(member_id, "sample-trio", "redeem-1")
    reversed_ = service.refund(Refund(order_id="web-5531", refund_id="rf-1", amount=Decimal("20.50")))
    adjusted = service.record(member_id, Adjustment(points=-5, reason="goodwill for Ada"), "adjust-1")
    entries = {
        "earn": earned.body["entry"]["entry_id"],
        "bonus": bonus.body["entry"]["entry_id"],
        "redeem": redeemed.body["entry"]["entry_id"],
        "reversal": reversed_.body["entry"]["entry_id"],
        "adjustment": adjusted.body["entry"]["entry_id"],
    }
    return member_id, entries


def test_the_publisher_puts_each_recorded_change_on_the_bus_as_its_domain_event(
    aws: Aws, publisher: ModuleType
) -> None:
    member_id, entries = history(aws)
    items = aws.items(f"MEMBER#{member_id}") + aws.items("ORDER#web-5531")  # the order item records no event

    result = publisher.lambda_handler(stream_event(items), LambdaContext())

    assert result == {"batchItemFailures": []}
    published = {event["detail"]["event_id"]: event for event in aws.published()}
    assert set(published) == {member_id, *entries.values()}
    assert {e["source"] for e in published.values()} == {"serverless-loyalty"}
    kinds = {published[entry_id]["detail-type"]: published[entry_id]["detail"] for entry_id in entries.values()}
    assert set(kinds) == {"PointsEarned", "PointsRedeemed", "PointsReversed", "PointsAdjusted"}
    enrolled = published[member_id]
    assert (enrolled["detail-type"], enrolled["detail"]["tier"]) == ("MemberEnrolled", "Insider")
    earn = published[entries["earn"]]["detail"]
    assert (earn["member_id"], earn["kind"], earn["points"], earn["order_id"]) == (member_id, "earn", 120, "web-5531")
    assert published[entries["bonus"]]["detail"]["points"] == 50
    assert published[entries["redeem"]]["detail"]["reward_id"] == "sample-trio"
    assert published[entries["reversal"]]["detail"]["refund_id"] == "rf-1"
    assert published[entries["reversal"]]["detail"]["points"] == -20
    for event in published.values():
        body = json.dumps(event["detail"])
        assert "Ada" not in body
        assert "ada@example.com" not in body
        assert "profile" not in event["detail"]


def test_each_consent_change_is_published_as_consent_changed_with_no_personal_data(
    aws: Aws, publisher: ModuleType
) -> None:
    # Given a member who gave email consent at enrolment, then granted SMS and withdrew email in their app
    enrollment = Enrollment(external_id="cust-ada", profile=Profile(first_name="Ada"), consent=Consent(email=True))
    member_id = aws.service.enroll(enrollment).body["member_id"]
    sms = aws.service.set_consent(member_id, ConsentChannel.SMS, True, "member")["change"]
    email = aws.service.set_consent(member_id, ConsentChannel.EMAIL, False, "member")["change"]
    items = aws.items(f"MEMBER#{member_id}")
    # When the stream delivers the member's items
    publisher.lambda_handler(stream_event(items), LambdaContext())
    # Then each change went out once, as ConsentChanged, saying what changed and by whom, and nothing about the member
    published = [e for e in aws.published() if e["detail-type"] == "ConsentChanged"]
    details = sorted((e["detail"] for e in published), key=lambda detail: detail["event_id"])
    assert [(d["channel"], d["granted"], d["source"]) for d in details] == [
        ("email", True, "enrollment"),
        ("sms", True, "member"),
        ("email", False, "member"),
    ]
    assert [d["event_id"] for d in details][1:] == [sms["change_id"], email["change_id"]]
    assert {d["member_id"] for d in details} == {member_id}
    assert all(set(d) == {"event_id", "occurred_at", "member_id", "channel", "granted", "source"} for d in details)


def test_records_that_record_no_event_publish_nothing(aws: Aws, publisher: ModuleType) -> None:
    aws.service.enroll(Enrollment(external_id="cust-1"))
    items = aws.items("EXTERNAL#cust-1") + aws.items("CATALOG")

    result = publisher.lambda_handler(stream_event(items), LambdaContext())

    assert result == {"batchItemFailures": []}
    assert aws.published() == []


class RefusingEvents:
    """EventBridge that refuses the entries whose detail names one of `refuse` (a FailedEntry each)."""

    def __init__(self, refuse: set[str], *, fail_call_with: set[str] | None = None):
        self.refuse = refuse
        self.fail_call_with = fail_call_with or set()
        self.calls: list[list[dict[str, Any]]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        ids = [json.loads(entry["Detail"])["event_id"] for entry in Entries]
        if self.fail_call_with & set(ids):
            raise ConnectionError("EventBridge unreachable")
        results = [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} if i in self.refuse else {"EventId": i}
            for i in ids
        ]
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}


def many_changes(aws: Aws, count: int) -> tuple[str, list[dict[str, Any]]]:
    member_id = aws.service.enroll(Enrollment(external_id=f"cust-{uuid.uuid4().hex[:6]}")).body["member_id"]
    for i in range(count):
        aws.service.record(member_id, Engagement(type="review"), f"review-{i}")
    return member_id, aws.items(f"MEMBER#{member_id}")


def test_a_record_eventbridge_refuses_is_reported_for_retry_by_its_sequence_number(
    aws: Aws, publisher: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, items = many_changes(aws, 12)  # 14 events: the enrolment, 12 earns, the move to VIB at 350 points
    published = [item["event_type"] for item in items if item.get("event_type")]
    assert len(published) == 14 and "TierChanged" in published
    event = stream_event(items)
    refused_item = items[11]
    refused_id = refused_item.get("entry_id") or refused_item["member_id"]
    events = RefusingEvents({refused_id})
    monkeypatch.setattr(publisher, "event_publisher", lambda: EventPublisher(events, settings().event_bus_name))

    result = publisher.lambda_handler(event, LambdaContext())

    [record] = [r for r in event["Records"] if r["dynamodb"]["NewImage"]["SK"]["S"] == refused_item["SK"]]
    assert result == {"batchItemFailures": [{"itemIdentifier": record["dynamodb"]["SequenceNumber"]}]}
    assert [len(call) for call in events.calls] == [10, 4]  # PutEvents takes at most 10


def test_when_a_whole_put_events_call_fails_every_record_of_that_call_is_reported(
    aws: Aws, publisher: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, items = many_changes(aws, 12)
    event = stream_event(items)
    in_second_call = items[12].get("entry_id") or items[12]["member_id"]
    events = RefusingEvents(set(), fail_call_with={in_second_call})
    monkeypatch.setattr(publisher, "event_publisher", lambda: EventPublisher(events, settings().event_bus_name))

    result = publisher.lambda_handler(event, LambdaContext())

    second_call = [r["dynamodb"]["SequenceNumber"] for r in event["Records"][10:]]
    assert result == {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in second_call]}


# ---- commerce order events -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def orders() -> ModuleType:
    return load_handler("order_events")


def order_placed(**detail: Any) -> dict[str, Any]:
    """events/order_events_order_placed.json, with a fresh event id and the detail fields given."""
    event = sample_event("order_events_order_placed.json")
    event["id"] = str(uuid.uuid4())
    event["detail"]["occurred_at"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    event["detail"].update(detail)
    return event


def order_refunded(**detail: Any) -> dict[str, Any]:
    event = sample_event("order_events_order_refunded.json")
    event["id"] = str(uuid.uuid4())
    event["detail"].update(detail)
    return event


@pytest.fixture
def customer(aws: Aws) -> str:
    """The commerce system's customer cust-1001, enrolled as a member (the sample events' customer), who consents to
    profiling (segmented by behaviour)."""
    enrollment = Enrollment(external_id="cust-1001", consent=Consent(email=True, profiling=True))
    return str(aws.service.enroll(enrollment).body["member_id"])


def test_an_order_placed_by_a_customer_who_is_a_member_earns(aws: Aws, orders: ModuleType, customer: str) -> None:
    result = orders.lambda_handler(order_placed(), LambdaContext())

    assert (result["status"], result["replayed"]) == (201, False)
    assert result["entry"]["points"] == 120  # 120.5 USD, floor once
    assert result["entry"]["member_id"] == customer
    assert aws.balance(customer) == 120


def test_the_same_order_event_delivered_again_changes_nothing(aws: Aws, orders: ModuleType, customer: str) -> None:
    event = order_placed()
    first = orders.lambda_handler(event, LambdaContext())

    again = orders.lambda_handler(event, LambdaContext())  # EventBridge delivers at least once
    resent = orders.lambda_handler(order_placed(), LambdaContext())  # a new event id for the same order

    for replay in (again, resent):
        assert replay["replayed"] is True
        assert replay["entry"] == first["entry"]
    assert aws.balance(customer) == 120
    assert len(aws.service.ledger(customer, 100, None)["entries"]) == 1


def test_an_order_may_name_the_member_directly(aws: Aws, orders: ModuleType, customer: str) -> None:
    event = order_placed(order_id="web-by-member", member_id=customer, customer_id=None, amount=10, line_items=[])

    assert orders.lambda_handler(event, LambdaContext())["status"] == 201
    assert aws.balance(customer) == 10


def test_an_order_from_a_customer_who_is_not_a_member_is_acknowledged_and_earns_nothing(
    aws: Aws, orders: ModuleType
) -> None:
    result = orders.lambda_handler(order_placed(customer_id="cust-stranger", order_id="web-77"), LambdaContext())

    assert result["status"] == "ignored"
    assert aws.items("ORDER#web-77") == []


def test_an_order_refunded_event_reverses_the_orders_share_once(aws: Aws, orders: ModuleType, customer: str) -> None:
    orders.lambda_handler(order_placed(), LambdaContext())
    refund = order_refunded()  # 20.5 of 120.5 refunded

    result = orders.lambda_handler(refund, LambdaContext())
    again = orders.lambda_handler(refund, LambdaContext())

    assert (result["status"], result["points_due"], result["points_reversed"]) == (201, 20, 20)
    assert again["replayed"] is True
    assert again["entry"] == result["entry"]
    assert aws.balance(customer) == 100


def test_the_same_refund_in_two_events_reverses_once(aws: Aws, orders: ModuleType, customer: str) -> None:
    orders.lambda_handler(order_placed(), LambdaContext())
    first, second = order_refunded(), order_refunded()  # two PutEvents: two event ids, one refund_id
    assert first["id"] != second["id"]

    applied = orders.lambda_handler(first, LambdaContext())
    again = orders.lambda_handler(second, LambdaContext())

    assert (applied["replayed"], again["replayed"]) == (False, True)
    assert again["entry"] == applied["entry"]
    assert aws.balance(customer) == 100


def test_a_refund_event_without_a_refund_id_raises_and_writes_nothing(
    aws: Aws, orders: ModuleType, customer: str
) -> None:
    orders.lambda_handler(order_placed(), LambdaContext())
    event = order_refunded()
    del event["detail"]["refund_id"]

    with pytest.raises(ValidationError, match="refund_id"):
        orders.lambda_handler(event, LambdaContext())

    assert aws.balance(customer) == 120


def test_a_refund_beyond_its_order_is_acknowledged_as_refused_and_replays_as_refused(
    aws: Aws, orders: ModuleType, customer: str
) -> None:
    orders.lambda_handler(order_placed(), LambdaContext())
    too_much = order_refunded(refund_id="rf-too-much", amount="500.00")

    refused = orders.lambda_handler(too_much, LambdaContext())
    again = orders.lambda_handler(order_refunded(refund_id="rf-too-much", amount="500.00"), LambdaContext())

    assert (refused["status"], refused["code"], refused["replayed"]) == (409, "refund_exceeds_order", False)
    assert (again["status"], again["message"], again["replayed"]) == (409, refused["message"], True)
    assert aws.balance(customer) == 120


def test_a_refund_that_arrives_before_its_order_raises_so_lambda_retries(
    aws: Aws, orders: ModuleType, customer: str
) -> None:
    with pytest.raises(OrderNotFound):
        orders.lambda_handler(order_refunded(order_id="web-not-yet"), LambdaContext())

    orders.lambda_handler(order_placed(order_id="web-not-yet"), LambdaContext())  # the order arrives
    retried = orders.lambda_handler(order_refunded(order_id="web-not-yet"), LambdaContext())  # Lambda retries
    assert retried["status"] == 201
    assert aws.balance(customer) == 100


def test_an_order_naming_an_unknown_member_id_raises_rather_than_being_dropped(aws: Aws, orders: ModuleType) -> None:
    with pytest.raises(MemberNotFound):
        orders.lambda_handler(order_placed(member_id="m_01jzzzzzzzzzzzzzzzzzzzzzzz"), LambdaContext())


def test_a_malformed_order_event_raises_and_writes_nothing(aws: Aws, orders: ModuleType, customer: str) -> None:
    event = order_placed(order_id="web-bad")
    del event["detail"]["amount"]

    with pytest.raises(ValidationError):
        orders.lambda_handler(event, LambdaContext())

    assert aws.items("ORDER#web-bad") == []
    assert aws.balance(customer) == 0


def test_an_event_of_another_detail_type_is_refused(aws: Aws, orders: ModuleType) -> None:
    event = order_placed()
    event["detail-type"] = "OrderShipped"

    with pytest.raises(ValidationError):
        orders.lambda_handler(event, LambdaContext())


# ---- keeping segments fresh between refreshes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def segment_reevaluation() -> ModuleType:
    return load_handler("segment_reevaluation")


def member_modified(aws: Aws, member_id: str, sequence: int) -> dict[str, Any]:
    """The stream record of the member item as it is now, shaped like events/segment_reevaluation_member_modified.json."""
    event = sample_event("segment_reevaluation_member_modified.json")
    record = event["Records"][0]
    (item,) = (i for i in aws.items(f"MEMBER#{member_id}") if i["SK"] == "MEMBER")
    image = {name: _serializer.serialize(value) for name, value in item.items()}
    record["dynamodb"].update(Keys={"PK": image["PK"], "SK": image["SK"]}, NewImage=image)
    record["dynamodb"]["SequenceNumber"] = str(sequence)
    return event


def segment_event_items(aws: Aws, member_id: str) -> list[tuple[str, str]]:
    items = aws.items(f"MEMBER#{member_id}")
    return sorted((i["segment_id"], i["event_type"]) for i in items if str(i["SK"]).startswith("SEGEVENT#"))


def test_a_purchase_is_reevaluated_and_the_segment_write_it_causes_is_not(
    aws: Aws, segment_reevaluation: ModuleType, customer: str
) -> None:
    from loyalty.segments.ports import PublishedCutPoints
    from loyalty.segments.rfm import RfmCutPoints

    segmentation = runtime.segmentation_service()
    store = segmentation.segments
    now = datetime.now(UTC)
    store.put_cut_points(
        PublishedCutPoints("run-1", now.isoformat(), RfmCutPoints(r=(1, 2, 3, 4), f=(1, 1, 1, 1), m=(1, 1, 1, 1)))
    )
    aws.service.purchase(customer, Purchase(order_id="web-7001", amount=Decimal("80"), currency="USD"))
    # When the stream delivers the purchase's change of the member item
    result = segment_reevaluation.lambda_handler(member_modified(aws, customer, 2000), LambdaContext())
    # Then the member's segments were evaluated and written, each change announced once
    assert result == {"batchItemFailures": []}
    entered = segment_event_items(aws, customer)
    assert entered and all(kind == "SegmentEntered" for _, kind in entered)
    stored = {m.segment_id for m in store.memberships_of(customer)}
    assert stored == {segment for segment, _ in entered}
    # Given a refresh has since published cut points that would put the member in another RFM segment
    store.put_cut_points(
        PublishedCutPoints(
            "run-2", now.isoformat(), RfmCutPoints(r=(-1, -1, -1, -1), f=(3, 5, 8, 13), m=(5000, 5000, 5000, 5000))
        )
    )
    member_item = next(i for i in aws.items(f"MEMBER#{customer}") if i["SK"] == "MEMBER")
    assert segmentation.evaluate(member_item, datetime.now(UTC)) != stored
    # When the stream delivers the segment write itself (a MODIFY of the member item, facts unchanged)
    result = segment_reevaluation.lambda_handler(member_modified(aws, customer, 2001), LambdaContext())
    # Then it is not re-evaluated: nothing moves, nothing is announced
    assert result == {"batchItemFailures": []}
    assert segment_event_items(aws, customer) == entered
    assert {m.segment_id for m in store.memberships_of(customer)} == stored
    # And the member's next purchase is evaluated with the new cut points
    aws.service.purchase(customer, Purchase(order_id="web-7002", amount=Decimal("15"), currency="USD"))
    segment_reevaluation.lambda_handler(member_modified(aws, customer, 2002), LambdaContext())
    member_item = next(i for i in aws.items(f"MEMBER#{customer}") if i["SK"] == "MEMBER")
    assert {m.segment_id for m in store.memberships_of(customer)} == segmentation.evaluate(
        member_item, datetime.now(UTC)
    )
    assert len(segment_event_items(aws, customer)) > len(entered)


def test_a_withdrawn_profiling_consent_reaches_the_reevaluation_and_takes_the_member_out_of_behavioural_segments(
    aws: Aws, segment_reevaluation: ModuleType, customer: str
) -> None:
    segmentation = runtime.segmentation_service()
    segmentation.put_rule_segment(
        {"segment_id": "mailable", "name": "Mailable", "rule": {"field": "consent.email", "op": "=", "value": True}}
    )
    aws.service.purchase(customer, Purchase(order_id="web-7101", amount=Decimal("620"), currency="USD"))
    segment_reevaluation.lambda_handler(member_modified(aws, customer, 4000), LambdaContext())
    store = segmentation.segments
    before = {m.segment_id for m in store.memberships_of(customer)}
    assert {"lifecycle:new", "points:high-spenders", "rule:mailable"} <= before
    # When the member withdraws profiling consent, and the stream delivers the change of their member item
    aws.service.set_consent(customer, ConsentChannel.PROFILING, False, "member")
    result = segment_reevaluation.lambda_handler(member_modified(aws, customer, 4001), LambdaContext())
    # Then the record was re-evaluated (not skipped as settled): every behavioural membership went, announced
    assert result == {"batchItemFailures": []}
    assert {m.segment_id for m in store.memberships_of(customer)} == {"rule:mailable"}
    left = {segment for segment, kind in segment_event_items(aws, customer) if kind == "SegmentLeft"}
    assert left == before - {"rule:mailable"}
    # And a prediction for them is refused from then on
    from loyalty.core.errors import ConsentRequired

    with pytest.raises(ConsentRequired):
        segmentation.member_prediction(customer)


def path_of(module: ModuleType) -> Path:
    return Path(str(module.__file__))


def test_each_handler_is_loaded_from_its_own_function_folder(publisher: ModuleType, orders: ModuleType) -> None:
    assert path_of(publisher) == ROOT / "functions" / "event_publisher" / "app.py"
    assert path_of(orders) == ROOT / "functions" / "order_events" / "app.py"


# ---- the correlation id, from where a change came in to the events it published -------------------------------


@pytest.fixture(scope="module")
def members_api() -> ModuleType:
    return load_handler("members_api")


def api_purchase(member_id: str, order_id: str, correlation_header: str) -> dict[str, Any]:
    """A staff caller's POST of a purchase activity (events/members_api_enroll.json's admin), with X-Correlation-Id."""
    event = sample_event("members_api_enroll.json")
    path = f"/v1/members/{member_id}/activities"
    headers = {"Content-Type": "application/json", "X-Correlation-Id": correlation_header}
    event.update(
        resource="/v1/members/{member_id}/activities",
        path=path,
        pathParameters={"member_id": member_id},
        headers=headers,
        multiValueHeaders={name: [value] for name, value in headers.items()},
        body=json.dumps({"type": "purchase", "order_id": order_id, "amount": "42.00", "currency": "USD"}),
    )
    event["requestContext"].update(resourcePath=event["resource"], path=f"/prod{path}")
    return event


def written_by(aws: Aws, member_id: str) -> dict[str, dict[str, Any]]:
    """The member's items by sort key prefix (MEMBER, LEDGER, SEGEVENT, ...), the last of each."""
    return {str(item["SK"]).split("#")[0]: item for item in aws.items(f"MEMBER#{member_id}")}


def test_a_commerce_events_id_is_on_every_item_it_wrote_and_on_the_domain_event_published(
    aws: Aws, orders: ModuleType, publisher: ModuleType, customer: str
) -> None:
    event = order_placed()
    # When the commerce system's OrderPlaced earns points
    orders.lambda_handler(event, LambdaContext())
    # Then the ledger entry, the member item and the order (the purchase's claim) carry the event's id
    written = written_by(aws, customer)
    assert written["LEDGER"]["correlation_id"] == written["MEMBER"]["correlation_id"] == event["id"]
    assert aws.items("ORDER#web-5531")[0]["correlation_id"] == event["id"]
    # And the stream publisher puts it in the PointsEarned event's detail
    publisher.lambda_handler(stream_event([written["LEDGER"]]), LambdaContext())
    (published,) = aws.published()
    assert (published["detail-type"], published["detail"]["correlation_id"]) == ("PointsEarned", event["id"])


def test_an_api_callers_correlation_id_reaches_the_domain_event_published(
    aws: Aws, members_api: ModuleType, publisher: ModuleType, customer: str
) -> None:
    answer = members_api.lambda_handler(api_purchase(customer, "web-8100", "checkout-7f3a9c"), LambdaContext())

    assert answer["statusCode"] == 201
    assert "X-Correlation-Id" not in (answer.get("multiValueHeaders") or {})  # the answer is the documented one
    ledger = written_by(aws, customer)["LEDGER"]
    publisher.lambda_handler(stream_event([ledger]), LambdaContext())
    (published,) = aws.published()
    assert published["detail"]["correlation_id"] == "checkout-7f3a9c"
    assert published["detail"]["entry_id"] == json.loads(answer["body"])["entry"]["entry_id"]


def test_a_segment_change_carries_the_correlation_id_of_the_purchase_that_caused_it(
    aws: Aws, orders: ModuleType, segment_reevaluation: ModuleType, publisher: ModuleType, customer: str
) -> None:
    event = order_placed()
    orders.lambda_handler(event, LambdaContext())
    # When the stream delivers the member item the purchase changed, and the re-evaluation moves the member
    segment_reevaluation.lambda_handler(member_modified(aws, customer, 3000), LambdaContext())
    segment_events = [i for i in aws.items(f"MEMBER#{customer}") if str(i["SK"]).startswith("SEGEVENT#")]
    assert segment_events
    # Then each SegmentEntered item carries the purchase's correlation id, and so does the event published from it
    assert {item["correlation_id"] for item in segment_events} == {event["id"]}
    publisher.lambda_handler(stream_event(segment_events), LambdaContext())
    published = aws.published()
    assert {e["detail-type"] for e in published} == {"SegmentEntered"}
    assert {e["detail"]["correlation_id"] for e in published} == {event["id"]}


def test_a_change_made_under_no_correlation_id_publishes_none(aws: Aws, publisher: ModuleType) -> None:
    member_id = aws.service.enroll(Enrollment(external_id="cust-quiet")).body["member_id"]

    publisher.lambda_handler(stream_event(aws.items(f"MEMBER#{member_id}")), LambdaContext())

    (published,) = aws.published()
    assert published["detail-type"] == "MemberEnrolled"
    assert "correlation_id" not in published["detail"]
