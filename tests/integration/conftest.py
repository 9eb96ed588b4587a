"""The loyalty table, made from template.yaml's LoyaltyTable, on two DynamoDB backends.

`loyalty` gives each test a fresh table (unique name) behind a real `LoyaltyStore` and `LoyaltyService`, once on moto
in-process and once on AWS's DynamoDB Local (the `dynamodb_local` session fixture of tests/conftest.py), so every
store test runs against both moto's and DynamoDB's own semantics.

Seeding members fast, for a test about what reads them (a refresh, a KPI) rather than about the writes:
`memory_loyalty()` is the same service on the in-memory points store (held to the DynamoDB store, member item
included, by test_points_store_contract.py), `member_items` are the member items it leaves, and `write_members`
puts them into a table with BatchWriteItem: a few milliseconds per member instead of one transaction per enrolment and per purchase.
"""

from __future__ import annotations

import dataclasses
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from moto import mock_aws

from bench.refresh import batch_write
from devstack.resources import create_table
from devstack.template import Resolver, load_template
from loyalty.adapters.dynamodb.points_store import LoyaltyStore, entry_from_item, member_key
from loyalty.adapters.dynamodb.table import from_item, to_item
from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.idempotency import Outcome
from loyalty.points.activities import Engagement, Purchase
from loyalty.points.ledger import LedgerEntry
from loyalty.points.member_record import new_member_item
from loyalty.points.members import Consent, Enrollment
from loyalty.points.rewards import Reward, RewardKind
from loyalty.points.service import LoyaltyService

ROOT = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
CLIENT_CONFIG = Config(max_pool_connections=64, retries={"mode": "standard", "max_attempts": 3})

REWARDS = (
    Reward(reward_id="ten-points", name="Ten-point treat", kind=RewardKind.FREE_PRODUCT, cost_points=10),
    Reward(reward_id="sample-trio", name="Deluxe sample trio", kind=RewardKind.FREE_PRODUCT, cost_points=100),
    Reward(
        reward_id="ten-off",
        name="$10 off",
        kind=RewardKind.DISCOUNT_FIXED,
        cost_points=500,
        value=Decimal(10),
        currency="USD",
    ),
)


# Consent given at enrolment by the members of segmentation tests: behavioural segments need profiling consent
# (docs/segments.md, "Profiling consent"); absent consent is no consent.
PROFILED = Consent(email=True, profiling=True)


# ---- the table, from the one source of wiring ---------------------------------------------------------------


TEMPLATE = load_template(ROOT / "template.yaml")


def template() -> dict[str, Any]:
    """template.yaml as parsed by the local stack (CloudFormation tags as their long forms)."""
    return TEMPLATE.raw


def loyalty_table_properties() -> dict[str, Any]:
    return dict(TEMPLATE.resources["LoyaltyTable"].properties)


def create_loyalty_table(client: Any, *, stream: bool = True) -> str:
    """The template's LoyaltyTable (keys, indexes, billing, stream, TTL), made by the local stack's own code under a
    stack name of its own, so every test gets a fresh table. Returns the table's name. `stream=False` leaves the
    stream out, for a module that reads none: DynamoDB Local writes about twice as fast without one."""
    resolver = Resolver(TEMPLATE, stack_name=f"loyalty-test-{uuid.uuid4().hex[:12]}")
    resource = TEMPLATE.resources["LoyaltyTable"]
    if not stream:
        properties = {k: v for k, v in resource.properties.items() if k != "StreamSpecification"}
        resource = dataclasses.replace(resource, properties=properties)
    return str(create_table(client, resource, resolver)["TableName"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dynamodb_client(endpoint: str | None = None) -> Any:
    return boto3.client("dynamodb", region_name=REGION, endpoint_url=endpoint, config=CLIENT_CONFIG, **CREDENTIALS)


# ---- backends -------------------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    client: Any


BACKENDS = ["moto", pytest.param("dynamodb-local", marks=pytest.mark.dynamodb_local)]
STORE_BACKENDS = ["memory", *BACKENDS]  # the in-memory points store, held to the same contract as DynamoDB


def open_backend(request: pytest.FixtureRequest, name: str) -> Iterator[Backend]:
    """The DynamoDB backend `name` ("moto" or "dynamodb-local") for as long as the generator runs."""
    if name == "moto":
        with mock_aws():
            yield Backend("moto", dynamodb_client())
    else:
        local = request.getfixturevalue("dynamodb_local")
        yield Backend("dynamodb-local", dynamodb_client(local.endpoint))


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A DynamoDB client: moto in-process, or DynamoDB Local (skipped only where Java is missing). Module-scoped:
    each test still gets its own table (see `loyalty`), only the mock and the client are shared."""
    yield from open_backend(request, request.param)


@pytest.fixture(scope="module", params=STORE_BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """`backend`, and the in-memory store as a third (its client None): for tests that hold every points store
    to one contract (tests/integration/test_points_store_contract.py)."""
    if request.param == "memory":
        yield Backend("memory", None)
    else:
        yield from open_backend(request, request.param)


# ---- the system under test --------------------------------------------------------------------------------


@dataclass
class Loyalty:
    """A fresh loyalty table with its store and service, and the reads a test needs to check what was written."""

    backend: str
    client: Any  # None for the in-memory store (memory_loyalty), which has no table to read back
    table: str
    store: Any  # LoyaltyStore, or MemoryPointsStore for memory_loyalty
    service: LoyaltyService
    _orders: int = field(default=0)

    # -- acting --

    def enroll(self, external_id: str | None = None, *, consent: Consent | None = None) -> str:
        """Enroll a member; `consent` as given at enrolment (none by default: absent means no)."""
        enrollment = Enrollment(
            external_id=external_id or f"cust-{uuid.uuid4().hex[:12]}", consent=consent or Consent()
        )
        outcome = self.service.enroll(enrollment)
        return str(outcome.body["member_id"])

    def buy(
        self,
        member_id: str,
        amount: str,
        order_id: str | None = None,
        occurred_at: datetime | None = None,
        currency: str = "USD",
    ) -> Outcome:
        if order_id is None:
            self._orders += 1
            order_id = f"order-{uuid.uuid4().hex[:8]}-{self._orders}"
        purchase = Purchase(order_id=order_id, amount=Decimal(amount), currency=currency, occurred_at=occurred_at)
        return self.service.purchase(member_id, purchase)

    def review(self, member_id: str, key: str | None = None) -> Outcome:
        return self.service.record(member_id, Engagement(type="review"), key or uuid.uuid4().hex)

    # -- reading back --

    def item(self, pk: str, sk: str) -> dict[str, Any] | None:
        raw = self.client.get_item(TableName=self.table, Key={"PK": {"S": pk}, "SK": {"S": sk}}, ConsistentRead=True)
        return from_item(raw["Item"]) if "Item" in raw else None

    def member_item(self, member_id: str) -> dict[str, Any]:
        item = self.item(f"MEMBER#{member_id}", "MEMBER")
        assert item is not None, f"member {member_id} not in the table"
        return item

    def available(self, member_id: str) -> int:
        return int(self.member_item(member_id)["available"])

    def ledger(self, member_id: str) -> list[LedgerEntry]:
        """Every ledger entry of a member, straight from the table (not through the code under test's paging)."""
        entries: list[LedgerEntry] = []
        request: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :ledger)",
            "ExpressionAttributeValues": {":pk": {"S": f"MEMBER#{member_id}"}, ":ledger": {"S": "LEDGER#"}},
            "ConsistentRead": True,
        }
        while True:
            page = self.client.query(**request)
            entries.extend(entry_from_item(from_item(item)) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return entries
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def all_items(self) -> list[dict[str, Any]]:
        """The whole (small, per-test) table: checks that a refused request wrote nothing anywhere."""
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self.client.scan(**request)
            items.extend(from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def assert_ledger_is_true(self, member_id: str) -> None:
        """The lines that must hold: balance == sum of entries >= 0, and the counters add up."""
        member = self.member_item(member_id)
        entries = self.ledger(member_id)
        counters = {
            name: int(member.get(name, 0))
            for name in ("available", "pending", "lifetime_earned", "redeemed", "reversed", "expired", "unrecovered")
        }
        assert counters["available"] == sum(entry.points for entry in entries)
        assert counters["available"] >= 0
        assert counters["available"] + counters["pending"] == (
            counters["lifetime_earned"] - counters["redeemed"] - counters["reversed"] - counters["expired"]
        )
        assert counters["unrecovered"] == sum(entry.unrecovered for entry in entries)


def make_loyalty(backend: Backend, *, client: Any = None, stream: bool = True, **store_options: Any) -> Loyalty:
    name = create_loyalty_table(backend.client, stream=stream)
    store = LoyaltyStore(client or backend.client, name, **store_options)
    for reward in REWARDS:
        store.put_reward(reward)
    return Loyalty(backend.name, backend.client, name, store, LoyaltyService(store, cache_seconds=0))


@pytest.fixture
def loyalty(backend: Backend) -> Iterator[Loyalty]:
    system = make_loyalty(backend)
    yield system
    backend.client.delete_table(TableName=system.table)


# ---- seeding members fast ---------------------------------------------------------------------------------


def memory_loyalty(clock: Callable[[], datetime] | None = None) -> Loyalty:
    """The service on the in-memory points store: `enroll` and `buy` as on a table, in microseconds. Only the
    acting half of Loyalty works (nothing to read back): member_items and write_members put what it leaves into a
    real table."""
    memory = MemoryPointsStore(clock=clock) if clock else MemoryPointsStore()
    for reward in REWARDS:
        memory.put_reward(reward)
    service = LoyaltyService(memory, cache_seconds=0, **({"clock": clock} if clock else {}))
    return Loyalty("memory", None, "", memory, service)


def member_items(source: Loyalty, member_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Each member's item (DynamoDB JSON) as the DynamoDB store would have written it: the enrolled member
    (new_member_item) with the counters and write-time aggregates the service's writes left on the in-memory store."""
    store: MemoryPointsStore = source.store
    items = []
    for member_id in member_ids:
        values = {**new_member_item(source.service.member(member_id)), **store.member_item(member_id)}
        items.append({**member_key(member_id), **to_item(values)})
    return items


def write_members(target: Loyalty, items: list[dict[str, Any]]) -> None:
    """Put member_items (made once, written to as many tables as need them) into the target's table with
    BatchWriteItem. Member items only: the refresh, the KPIs and the segment reads read nothing else (no ledger
    entry, order or external-id item is written)."""
    batch_write(target.client, target.table, items, 4)
