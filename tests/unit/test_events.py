"""Domain events are made from the very items the store writes, and carry ids and amounts, never personal data."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.dynamodb.points_store import LoyaltyStore
from loyalty.adapters.dynamodb.table import from_item
from loyalty.core.events import SOURCE, EventType, domain_event_from_item
from loyalty.core.idempotency import Claim
from loyalty.points.activities import ActivityType
from loyalty.points.ledger import EntryKind, LedgerEntry
from loyalty.points.members import Consent, Member, Profile

NOW = datetime(2026, 11, 20, 14, 3, 12, 428082, tzinfo=UTC)
MEMBER_ID = "m_01m83p8nz4nsv851aw9hcrayax"
PERSONAL = ("Ada", "Lovelace", "ada@example.com", "+447700900123", "SW1A 1AA")
# What a detail may carry: ids, amounts and the kind of change.
ALLOWED_DETAIL = {
    "event_id",
    "occurred_at",
    "member_id",
    "entry_id",
    "tier",
    "kind",
    "points",
    "activity",
    "order_id",
    "refund_id",
    "reward_id",
    "unrecovered",
}


class CapturingClient:
    """Stands in for DynamoDB: keeps what the store would write, so the test sees the store's real items."""

    def __init__(self) -> None:
        self.transactions: list[list[dict[str, Any]]] = []

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.transactions.append(TransactItems)
        return {}


def written_items() -> tuple[LoyaltyStore, CapturingClient]:
    client = CapturingClient()
    return LoyaltyStore(client, "loyalty-table"), client


def member_item() -> dict[str, Any]:
    store, client = written_items()
    store.create_member(
        Member(
            member_id=MEMBER_ID,
            external_id="cust-1001",
            profile=Profile(
                first_name="Ada",
                last_name="Lovelace",
                email="ada@example.com",
                phone="+447700900123",
                postal_code="SW1A 1AA",
            ),
            consent=Consent(email=True),
            referral_code="ABCD-EFGH",
            tier="Insider",
            enrolled_at=NOW,
        )
    )
    return from_item(client.transactions[0][0]["Put"]["Item"])


def entry_item(entry: LedgerEntry) -> dict[str, Any]:
    store, client = written_items()
    store.post(entry, Claim("activity:x", "f", 201, {}))
    return from_item(client.transactions[0][1]["Put"]["Item"])


LEDGER_ENTRIES = {
    EntryKind.EARN: dict(points=120, activity=ActivityType.PURCHASE, order_id="web-5531"),
    EntryKind.BONUS: dict(points=50, activity=ActivityType.REVIEW, reference="SKU-SERUM reviewed by Ada"),
    EntryKind.REDEEM: dict(points=-100, reward_id="sample-trio", voucher_code="ABCD-EFGH-JKMN"),
    EntryKind.REVERSAL: dict(points=-30, order_id="web-5531", refund_id="rf-1", unrecovered=70),
    EntryKind.ADJUSTMENT: dict(
        points=-5, activity=ActivityType.ADJUSTMENT, reason="goodwill correction for Ada Lovelace, ada@example.com"
    ),
    EntryKind.EXPIRY: dict(points=-12),
}
EXPECTED_TYPE = {
    EntryKind.EARN: EventType.POINTS_EARNED,
    EntryKind.BONUS: EventType.POINTS_EARNED,
    EntryKind.REDEEM: EventType.POINTS_REDEEMED,
    EntryKind.REVERSAL: EventType.POINTS_REVERSED,
    EntryKind.ADJUSTMENT: EventType.POINTS_ADJUSTED,
    EntryKind.EXPIRY: EventType.POINTS_EXPIRED,
}


def make_entry(kind: EntryKind, **fields: Any) -> LedgerEntry:
    return LedgerEntry(entry_id="01M83P8P1WRPWN7H1NJYT2SE3Q", member_id=MEMBER_ID, kind=kind, created_at=NOW, **fields)


def test_enrollment_publishes_member_enrolled_with_the_tier_and_no_profile() -> None:
    event = domain_event_from_item(member_item())

    assert event is not None
    assert event.event_type is EventType.MEMBER_ENROLLED
    assert event.event_id == MEMBER_ID
    assert event.member_id == MEMBER_ID
    assert event.occurred_at == "2026-11-20T14:03:12.428082Z"
    assert event.detail == {"tier": "Insider"}


def test_the_enrollment_event_entry_carries_no_personal_data() -> None:
    event = domain_event_from_item(member_item())
    assert event is not None
    published = event.entry("loyalty-bus")["Detail"]

    for value in PERSONAL:
        assert value not in published
    assert not {"profile", "email", "phone", "first_name", "birthday", "external_id"} & set(json.loads(published))


@pytest.mark.parametrize("kind", list(EntryKind))
def test_each_ledger_entry_kind_publishes_its_event_with_ids_and_amounts_only(kind: EntryKind) -> None:
    fields = LEDGER_ENTRIES[kind]
    event = domain_event_from_item(entry_item(make_entry(kind, **fields)))

    assert event is not None
    assert event.event_type is EXPECTED_TYPE[kind]
    assert event.event_id == "01M83P8P1WRPWN7H1NJYT2SE3Q"
    assert event.detail["kind"] == kind.value
    assert event.detail["points"] == fields["points"]
    assert type(event.detail["points"]) is int  # not Decimal: consumers get a JSON number
    detail = json.loads(event.entry("loyalty-bus")["Detail"])
    assert set(detail) <= ALLOWED_DETAIL
    assert not {"profile", "email", "phone", "reason", "reference", "voucher_code"} & set(detail)
    for value in PERSONAL:
        assert value not in json.dumps(detail)


def test_a_reversal_event_names_its_order_refund_and_what_it_could_not_recover() -> None:
    event = domain_event_from_item(entry_item(make_entry(EntryKind.REVERSAL, **LEDGER_ENTRIES[EntryKind.REVERSAL])))

    assert event is not None
    assert event.detail == {
        "entry_id": "01M83P8P1WRPWN7H1NJYT2SE3Q",
        "kind": "reversal",
        "points": -30,
        "order_id": "web-5531",
        "refund_id": "rf-1",
        "unrecovered": 70,
    }


def test_a_voucher_code_is_a_secret_and_never_leaves_in_an_event() -> None:
    event = domain_event_from_item(entry_item(make_entry(EntryKind.REDEEM, **LEDGER_ENTRIES[EntryKind.REDEEM])))

    assert event is not None
    assert "ABCD-EFGH-JKMN" not in event.entry("bus")["Detail"]
    assert event.detail["reward_id"] == "sample-trio"


def test_a_ledger_event_carries_its_points_even_when_they_are_zero() -> None:
    event = domain_event_from_item(
        entry_item(make_entry(EntryKind.EARN, points=0, order_id="o-cheap", activity=ActivityType.PURCHASE))
    )

    assert event is not None
    assert event.detail.get("points") == 0


def test_the_eventbridge_entry_has_the_project_source_the_type_and_json_detail() -> None:
    event = domain_event_from_item(entry_item(make_entry(EntryKind.EARN, **LEDGER_ENTRIES[EntryKind.EARN])))
    assert event is not None

    entry = event.entry("loyalty-bus")

    assert set(entry) == {"Source", "DetailType", "Detail", "EventBusName"}
    assert entry["Source"] == SOURCE == "serverless-loyalty"
    assert entry["DetailType"] == "PointsEarned"
    assert entry["EventBusName"] == "loyalty-bus"
    assert json.loads(entry["Detail"]) == {
        "event_id": "01M83P8P1WRPWN7H1NJYT2SE3Q",
        "occurred_at": "2026-11-20T14:03:12.428082Z",
        "member_id": MEMBER_ID,
        "entry_id": "01M83P8P1WRPWN7H1NJYT2SE3Q",
        "kind": "earn",
        "points": 120,
        "activity": "purchase",
        "order_id": "web-5531",
    }


@pytest.mark.parametrize(
    "item",
    [
        {"PK": "ORDER#o-1", "SK": "ORDER", "member_id": MEMBER_ID, "amount": Decimal("10"), "points": Decimal(10)},
        {"PK": "IDEMPOTENCY#x", "SK": "IDEMPOTENCY", "fingerprint": "f", "response": "{}"},
        {"PK": "EXTERNAL#cust-1", "SK": "EXTERNAL", "member_id": MEMBER_ID},
        {"PK": "CATALOG", "SK": "REWARD#r", "reward_id": "r", "name": "R", "birthday": date(2000, 1, 1)},
    ],
    ids=["order", "claim", "external-id", "reward"],
)
def test_items_that_record_no_change_publish_nothing(item: dict[str, Any]) -> None:
    assert domain_event_from_item(item) is None


def test_an_item_with_an_unknown_event_type_is_an_error_not_a_silent_drop() -> None:
    with pytest.raises(ValueError, match="PointsTeleported"):
        domain_event_from_item(
            {
                "event_type": "PointsTeleported",
                "entry_id": "e",
                "member_id": "m",
                "created_at": "2026-01-01T00:00:00.000000Z",
            }
        )
