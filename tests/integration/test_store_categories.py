"""Category affinity at write time: the purchase's one transaction adds each line to its category on the member
item, a refund takes its share back, and the map stays bounded. On moto in-process and on DynamoDB Local."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError

from loyalty.adapters.dynamodb.points_store import LoyaltyStore
from loyalty.core.idempotency import Outcome
from loyalty.points.activities import LineItem, Purchase, Refund
from loyalty.points.categories import MAX_CATEGORIES
from loyalty.points.service import LoyaltyService
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from tests.integration.conftest import Backend, Loyalty, dynamodb_client, make_loyalty

D = Decimal


def buy(
    loyalty: Loyalty,
    member_id: str,
    amount: str,
    lines: list[tuple[str | None, str]],
    order_id: str,
    occurred_at: datetime | None = None,
) -> Outcome:
    items = tuple(LineItem(category=category, amount=D(value)) for category, value in lines)
    purchase = Purchase(order_id=order_id, amount=D(amount), currency="USD", occurred_at=occurred_at, line_items=items)
    return loyalty.service.purchase(member_id, purchase)


def refund(loyalty: Loyalty, order_id: str, amount: str, refund_id: str) -> Outcome:
    return loyalty.service.refund(Refund(order_id=order_id, refund_id=refund_id, amount=D(amount)))


def categories(loyalty: Loyalty, member_id: str) -> tuple[dict[str, Decimal], Decimal]:
    item = loyalty.member_item(member_id)
    return dict(item["spend_by_category"]), D(item.get("spend_other_categories", 0))  # absent: nothing beyond


class CallCounter:
    """The DynamoDB client, recording each operation the code under test calls, with the partition it names."""

    def __init__(self, client: Any):
        self._client = client
        self.calls: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute) or name.startswith("_") or name in ("meta", "exceptions"):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, str(kwargs.get("Key", {}).get("PK", {}).get("S", ""))))
            return attribute(*args, **kwargs)

        return call


def test_a_purchase_adds_each_line_to_its_normalised_category_in_its_one_transaction(backend: Backend) -> None:
    # Given a member, and a store whose client counts what it is asked
    counter = CallCounter(backend.client)
    loyalty = make_loyalty(backend, client=counter)
    member_id = loyalty.enroll()
    assert categories(loyalty, member_id) == ({}, 0)  # created empty at enrollment
    counter.calls.clear()

    # When an order with categorised, oddly spelt and uncategorised lines is bought
    buy(
        loyalty,
        member_id,
        "110.00",
        [("Makeup", "30.00"), (" makeup ", "10.00"), ("Skin  Care", "40.00"), (None, "20.00"), ("  ", "5.00")],
        "web-1",
    )

    # Then the member and the order took one call, the one transaction that also credits the points (the program
    # configuration is read too: the tests' service caches nothing)
    assert counter.calls == [("get_item", "PROGRAM"), ("transact_write_items", "")]
    # And the member item and the order item hold the order's spend per normalised category
    assert categories(loyalty, member_id) == ({"makeup": D(40), "skin care": D(40)}, 0)
    order = loyalty.item("ORDER#web-1", "ORDER")
    assert order is not None
    assert (order["category_totals"], order["other_categories_total"]) == ({"makeup": D(40), "skin care": D(40)}, 0)
    # And a second purchase in a category the member has adds to it, still in one call
    counter.calls.clear()
    buy(loyalty, member_id, "5", [("MAKEUP", "5")], "web-2")
    assert counter.calls == [("get_item", "PROGRAM"), ("transact_write_items", "")]
    assert categories(loyalty, member_id)[0]["makeup"] == D(45)
    loyalty.assert_ledger_is_true(member_id)
    backend.client.delete_table(TableName=loyalty.table)


def test_partial_refunds_split_proportionally_and_the_full_refund_restores_exactly(loyalty: Loyalty) -> None:
    # Given a member who bought makeup before, then an order of 100.00 (makeup 30, skin care 40, 30 uncategorised)
    member_id = loyalty.enroll()
    buy(loyalty, member_id, "12.34", [("makeup", "12.34")], "web-0")
    before, _ = categories(loyalty, member_id)
    buy(loyalty, member_id, "100.00", [("makeup", "30.00"), ("skin care", "40.00"), (None, "30.00")], "web-1")

    # When a third of it is refunded
    refund(loyalty, "web-1", "33.33", "rf-1")

    # Then each category gives back its share, rounded down to a thousandth
    spend, _ = categories(loyalty, member_id)
    assert spend == {"makeup": D("12.34") + D(30) - D("9.999"), "skin care": D(40) - D("13.332")}

    # When the rest is refunded
    refund(loyalty, "web-1", "66.67", "rf-2")

    # Then every category is back exactly where it was before the order (skin care kept, at 0)
    spend, other = categories(loyalty, member_id)
    assert spend == {**before, "skin care": D(0)}
    assert other == 0
    order = loyalty.item("ORDER#web-1", "ORDER")
    assert order is not None and order["refunded_amount"] == D(100)
    loyalty.assert_ledger_is_true(member_id)


def test_a_refund_too_small_to_take_a_thousandth_from_a_category_takes_nothing_from_it(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    buy(loyalty, member_id, "100.00", [("samples", "0.05"), (None, "99.95")], "web-1")

    refund(loyalty, "web-1", "0.01", "rf-1")  # 0.05 x 0.01 / 100 = 0.000005: rounds down to nothing

    assert categories(loyalty, member_id) == ({"samples": D("0.05")}, 0)
    refund(loyalty, "web-1", "99.99", "rf-2")
    assert categories(loyalty, member_id) == ({"samples": D(0)}, 0)


def test_past_fifty_categories_the_spend_goes_to_the_other_bucket_and_comes_back_out_of_it(loyalty: Loyalty) -> None:
    # Given a member with 48 categories
    member_id = loyalty.enroll()
    buy(loyalty, member_id, "48", [(f"c{i:02d}", "1") for i in range(48)], "web-1")

    # When an order brings three new categories and one they have: room for two
    buy(loyalty, member_id, "17", [("x-large", "9"), ("x-mid", "5"), ("x-small", "2"), ("c00", "1")], "web-2")

    # Then the two largest new ones take the room, the third goes to the other bucket
    spend, other = categories(loyalty, member_id)
    assert len(spend) == MAX_CATEGORIES
    assert (spend["x-large"], spend["x-mid"], spend["c00"], other) == (D(9), D(5), D(2), D(2))
    assert "x-small" not in spend

    # When the member buys in that unnamed category again, with the map full
    buy(loyalty, member_id, "4", [("x-small", "4")], "web-3")
    spend, other = categories(loyalty, member_id)
    assert (len(spend), other) == (MAX_CATEGORIES, D(6))
    features = features_of(loyalty.member_item(member_id), datetime.now(UTC), SegmentationConfig())
    assert features.categories.spend_in("x-small") is None  # unknown by name, not 0
    assert features.categories.share_of("c00") == D(2) / D(48 + 1 + 9 + 5 + 6)

    # When the order that overflowed is refunded in full
    refund(loyalty, "web-2", "17", "rf-1")

    # Then each name gives back what it got, and the other bucket what it got
    spend, other = categories(loyalty, member_id)
    assert (spend["x-large"], spend["x-mid"], spend["c00"], other) == (D(0), D(0), D(1), D(4))
    assert len(spend) == MAX_CATEGORIES  # names are never removed
    loyalty.assert_ledger_is_true(member_id)


def test_one_order_adds_its_fifty_largest_categories_by_name(loyalty: Loyalty) -> None:
    member_id = loyalty.enroll()
    lines = [(f"{i:02d} " + "long category name " * 3, str(100 + i)) for i in range(MAX_CATEGORIES + 2)]

    buy(loyalty, member_id, "10000", lines, "web-1")

    spend, other = categories(loyalty, member_id)
    assert len(spend) == MAX_CATEGORIES
    assert other == D(100) + D(101)  # the two smallest
    refund(loyalty, "web-1", "10000", "rf-1")
    spend, other = categories(loyalty, member_id)
    assert set(spend.values()) == {D(0)} and other == 0


def test_a_member_enrolled_before_the_map_existed_gets_one_from_their_next_purchase(loyalty: Loyalty) -> None:
    if loyalty.backend == "moto":
        # DynamoDB checks an update's condition before its document paths, so the purchase's update fails its
        # condition and the store creates the map; moto checks the paths first and reports a ValidationError.
        pytest.skip("moto validates update paths before conditions, unlike DynamoDB")
    member_id = loyalty.enroll()
    loyalty.client.update_item(
        TableName=loyalty.table,
        Key={"PK": {"S": f"MEMBER#{member_id}"}, "SK": {"S": "MEMBER"}},
        UpdateExpression="REMOVE spend_by_category, spend_other_categories",
    )

    buy(loyalty, member_id, "25", [("Makeup", "20")], "web-1")

    assert categories(loyalty, member_id) == ({"makeup": D(20)}, 0)
    assert loyalty.member_item(member_id)["purchase_count"] == 1
    loyalty.assert_ledger_is_true(member_id)


class RaceOnce:
    """The DynamoDB client, letting `race` run once between the first cancelled transaction and its retry: another
    request that lands after this one read the member and before it writes again."""

    def __init__(self, client: Any, race: Callable[[], None]):
        self._client = client
        self._race: Callable[[], None] | None = race

    def transact_write_items(self, **request: Any) -> Any:
        try:
            return self._client.transact_write_items(**request)
        except ClientError as error:
            if self._race is not None and error.response["Error"]["Code"] == "TransactionCanceledException":
                race, self._race = self._race, None
                race()
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_purchase_placed_from_a_stale_read_of_the_map_is_placed_again(backend: Backend) -> None:
    # Given a member with 48 categories, and a purchase of 3 new ones that does not fit (room for 2): its first
    # attempt fails and hands back the item, and just then another purchase takes one of the two places
    plain = make_loyalty(backend)
    member_id = plain.enroll()
    buy(plain, member_id, "48", [(f"c{i:02d}", "1") for i in range(48)], "web-1")
    yesterday = datetime.now(UTC) - timedelta(days=1)  # so that only the map, not last_purchase_at, has moved
    client = RaceOnce(backend.client, lambda: buy(plain, member_id, "7", [("rival", "7")], "web-2", yesterday))
    store = LoyaltyStore(client, plain.table)
    racing = Loyalty(backend.name, backend.client, plain.table, store, LoyaltyService(store, cache_seconds=0))

    # When the purchase is retried with the placement it made from the 48 names it read
    buy(racing, member_id, "12", [("new-a", "5"), ("new-b", "4"), ("new-c", "3")], "web-3")

    # Then it is placed again from what is there now: one place left, for the largest; the map holds 50 names
    spend, other = categories(plain, member_id)
    assert len(spend) == MAX_CATEGORIES
    assert (spend["rival"], spend["new-a"], other) == (D(7), D(5), D(4 + 3))
    plain.assert_ledger_is_true(member_id)
    backend.client.delete_table(TableName=plain.table)


# ---- concurrency, on DynamoDB Local (it cancels concurrent transactions on one item, as DynamoDB does) ---------


@pytest.fixture
def local(request: pytest.FixtureRequest) -> Iterator[Loyalty]:
    client = dynamodb_client(request.getfixturevalue("dynamodb_local").endpoint)
    system = make_loyalty(Backend("dynamodb-local", client))
    yield system
    client.delete_table(TableName=system.table)


@pytest.mark.dynamodb_local
def test_concurrent_purchases_in_new_categories_never_keep_more_than_fifty_names(local: Loyalty) -> None:
    # Given a member with 44 categories: room for 6
    member_id = local.enroll()
    buy(local, member_id, "44", [(f"c{i:02d}", "1") for i in range(44)], "seed")
    start = threading.Barrier(8)
    bought = {f"new-{i}-{j}": D(f"{10 + i}.{j}") for i in range(8) for j in range(2 + i % 2)}

    def purchase(index: int) -> Outcome:
        lines = [(name, str(amount)) for name, amount in bought.items() if name.startswith(f"new-{index}-")]
        total = str(sum(D(amount) for _, amount in lines))
        start.wait()
        return buy(local, member_id, total, lines, f"web-{uuid.uuid4().hex}")

    # When 8 purchases of 2 or 3 categories of their own (20 in all) race for the room
    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(purchase, range(8)))

    # Then all are recorded; exactly 6 new names were kept, each with its own amount, and the rest is in other
    assert all(outcome.status == 201 for outcome in outcomes)
    spend, other = categories(local, member_id)
    new = {name: value for name, value in spend.items() if name.startswith("new-")}
    assert len(spend) == MAX_CATEGORIES and len(new) == 6
    assert all(value == bought[name] for name, value in new.items())
    assert sum(new.values()) + other == sum(bought.values())
    local.assert_ledger_is_true(member_id)
