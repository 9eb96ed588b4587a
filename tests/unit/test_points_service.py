"""The points service's behaviour on the in-memory store: earning, redeeming, refunds, replays and refusals,
enrolment, adjustments. No AWS, no emulator: the whole file runs in well under a second. That the in-memory store
behaves as the DynamoDB one does is tests/integration/test_points_store_contract.py's business."""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core import ids
from loyalty.core.errors import (
    IdempotencyKeyReused,
    InvalidRequest,
    MemberNotFound,
    OrderConflict,
    OrderNotFound,
    StoreContention,
)
from loyalty.core.idempotency import Outcome, Replay, fingerprint
from loyalty.core.instants import timestamp
from loyalty.points.activities import Adjustment, Engagement, LineItem, Purchase, Refund
from loyalty.points.ledger import EntryKind
from loyalty.points.member_record import month_key
from loyalty.points.members import Enrollment
from loyalty.points.ports import RefundBasisMoved, Reversal
from loyalty.points.program import ProgramConfig, TierRules
from loyalty.points.rewards import Reward, RewardKind
from loyalty.points.service import REFUND_ATTEMPTS, LoyaltyService, purchase_fingerprint

D = Decimal
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
VOUCHER = re.compile(r"^[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}-[2-9A-HJKMNP-TV-Z]{4}$")
REWARDS = (
    Reward(reward_id="ten-points", name="Ten-point treat", kind=RewardKind.FREE_PRODUCT, cost_points=10),
    Reward(reward_id="sample-trio", name="Deluxe sample trio", kind=RewardKind.FREE_PRODUCT, cost_points=100),
    Reward(reward_id="retired", name="Old treat", kind=RewardKind.FREE_PRODUCT, cost_points=10, active=False),
)


@dataclass
class Points:
    """The service on a fresh in-memory store, and the shortcuts a test needs."""

    store: MemoryPointsStore
    service: LoyaltyService
    orders: int = field(default=0)

    def enroll(self, external_id: str | None = None) -> str:
        self.orders += 1
        outcome = self.service.enroll(Enrollment(external_id=external_id or f"cust-{self.orders}"))
        return str(outcome.body["member_id"])

    def buy(self, member_id: str, amount: str, order_id: str | None = None, **facts: Any) -> Outcome:
        self.orders += 1
        purchase = Purchase(order_id=order_id or f"web-{self.orders}", amount=D(amount), currency="USD", **facts)
        return self.service.purchase(member_id, purchase)

    def refund(self, order_id: str, amount: str, refund_id: str, member_id: str | None = None) -> Outcome:
        return self.service.refund(
            Refund(order_id=order_id, refund_id=refund_id, amount=D(amount)), member_id=member_id
        )

    def redeem(self, member_id: str, reward_id: str, key: str) -> Outcome:
        return self.service.redeem(member_id, reward_id, key)

    def adjust(self, member_id: str, points: int, key: str) -> Outcome:
        return self.service.record(member_id, Adjustment(points=points, reason="goodwill correction"), key)

    def available(self, member_id: str) -> int:
        return self.service.member(member_id).balance.available

    def entries(self, member_id: str) -> list[dict[str, Any]]:
        return self.service.ledger(member_id, 1000, None)["entries"]

    def assert_ledger_is_true(self, member_id: str) -> None:
        balance = self.service.member(member_id).balance
        entries = self.entries(member_id)
        assert balance.available == sum(entry["points"] for entry in entries) >= 0
        assert balance.available + balance.pending == (
            balance.lifetime_earned - balance.redeemed - balance.reversed - balance.expired
        )
        assert balance.unrecovered == sum(entry["unrecovered"] for entry in entries)


def make_points(store: Any = None) -> Points:
    memory = MemoryPointsStore(clock=lambda: NOW)
    for reward in REWARDS:
        memory.put_reward(reward)
    return Points(memory, LoyaltyService(store or memory, cache_seconds=0, clock=lambda: NOW))


@pytest.fixture
def points() -> Points:
    return make_points()


# ---- earning ----------------------------------------------------------------------------------------------


def test_a_purchase_earns_a_point_per_whole_unit_and_remembers_the_order(points: Points) -> None:
    member_id = points.enroll()

    outcome = points.buy(member_id, "120.50", order_id="web-5531")

    assert (outcome.status, outcome.replayed) == (201, False)
    assert (outcome.body["entry"]["kind"], outcome.body["entry"]["points"]) == ("earn", 120)
    assert points.available(member_id) == 120
    order = points.store.get_order("web-5531")
    assert order is not None and (order.member_id, order.amount, order.points) == (member_id, D("120.50"), 120)
    points.assert_ledger_is_true(member_id)


@pytest.mark.parametrize(
    ("activity", "earned"), [("review", 50), ("survey", 100), ("social_share", 25), ("referral", 500)]
)
def test_engagement_activities_earn_what_the_program_says(points: Points, activity: str, earned: int) -> None:
    member_id = points.enroll()

    outcome = points.service.record(member_id, Engagement(type=activity), "key-1")

    assert outcome.status == 201
    assert (outcome.body["entry"]["kind"], outcome.body["entry"]["points"]) == ("bonus", earned)
    assert outcome.body["entry"]["activity"] == activity
    assert points.available(member_id) == earned == ProgramConfig().activity_points[activity]  # type: ignore[index]


@pytest.mark.parametrize(
    ("lines", "currency", "earned"),
    [
        ((), "USD", 20),  # 10 x 2
        ((), "EUR", 15),  # 10 x 1.5
        ((LineItem(category="skincare", amount=D(4)),), "USD", 36),  # (10 + 4 x 2) x 2
        ((LineItem(sku="SKU-1", amount=D(5)),), "USD", 40),  # (10 + 5 x 2) x 2
    ],
    ids=["base-rate", "other-currency", "category-multiplier", "sku-multiplier"],
)
def test_a_program_stored_as_data_sets_what_a_purchase_earns(
    points: Points, lines: tuple[LineItem, ...], currency: str, earned: int
) -> None:
    points.store.put_program(
        ProgramConfig(
            version=2,
            points_per_unit={"USD": D(2), "EUR": D("1.5")},
            exchange_rates={"EUR": D("1.08")},
            category_multipliers={"skincare": D(3)},
            sku_multipliers={"SKU-1": D(3)},
        ),
        replaces=None,
    )
    member_id = points.enroll()

    purchase = Purchase(order_id="web-1", amount=D(10), currency=currency, line_items=lines)
    outcome = points.service.purchase(member_id, purchase)

    assert outcome.body["entry"]["points"] == earned


@pytest.mark.parametrize(
    ("facts", "field"),
    [
        ({"currency": "EUR"}, "currency"),
        ({"occurred_at": NOW + timedelta(hours=1)}, "occurred_at"),
        ({"occurred_at": datetime(999, 12, 31, tzinfo=UTC)}, "occurred_at"),
    ],
    ids=["currency-not-accepted", "in-the-future", "before-1970"],
)
def test_a_purchase_the_program_cannot_take_is_refused_and_writes_nothing(
    points: Points, facts: dict[str, Any], field: str
) -> None:
    member_id = points.enroll()
    purchase = Purchase(order_id="web-1", amount=D(10), **{"currency": "USD", **facts})

    with pytest.raises(InvalidRequest) as refused:
        points.service.purchase(member_id, purchase)

    assert refused.value.field == field
    assert points.store.get_order("web-1") is None
    assert points.entries(member_id) == []


def test_an_activity_the_program_awards_nothing_for_is_refused(points: Points) -> None:
    points.store.put_program(ProgramConfig(activity_points={"review": 0}), replaces=None)
    member_id = points.enroll()

    with pytest.raises(InvalidRequest) as refused:
        points.service.record(member_id, Engagement(type="review"), "key-1")

    assert refused.value.field == "type"


@pytest.mark.parametrize(
    "activity", [Engagement(type="review"), Adjustment(points=5, reason="goodwill")], ids=["engagement", "adjustment"]
)
def test_an_activity_other_than_a_purchase_or_refund_needs_an_idempotency_key(
    points: Points, activity: Engagement | Adjustment
) -> None:
    member_id = points.enroll()

    with pytest.raises(InvalidRequest) as refused:
        points.service.record(member_id, activity, None)

    assert refused.value.field == "Idempotency-Key"
    assert points.entries(member_id) == []


def test_a_purchase_for_an_unknown_member_is_not_found_and_records_no_order(points: Points) -> None:
    with pytest.raises(MemberNotFound):
        points.buy("m_unknown", "10.00", order_id="web-ghost")

    assert points.store.get_order("web-ghost") is None


# ---- replays and conflicts --------------------------------------------------------------------------------


@pytest.mark.parametrize("write", ["purchase", "engagement", "adjustment", "redemption", "refund"])
def test_every_write_replayed_gets_its_first_answer_and_changes_nothing(points: Points, write: str) -> None:
    member_id = points.enroll()
    points.buy(member_id, "300.00", order_id="web-0")
    calls = {
        "purchase": lambda: points.buy(member_id, "42.00", order_id="web-1"),
        "engagement": lambda: points.service.record(member_id, Engagement(type="review"), "key-1"),
        "adjustment": lambda: points.adjust(member_id, -5, "key-1"),
        "redemption": lambda: points.redeem(member_id, "sample-trio", "key-1"),
        "refund": lambda: points.refund("web-0", "30.00", "rf-1"),
    }
    first = calls[write]()
    member = points.service.member(member_id)

    replays = [calls[write]() for _ in range(3)]

    assert not first.replayed
    assert all((r.status, r.body, r.replayed) == (first.status, first.body, True) for r in replays)
    assert points.service.member(member_id) == member
    points.assert_ledger_is_true(member_id)


def test_the_same_order_written_differently_is_a_replay(points: Points) -> None:
    member_id = points.enroll()
    first = points.buy(member_id, "42", order_id="web-1")

    assert points.buy(member_id, "42.00", order_id="web-1").body == first.body


@pytest.mark.parametrize("other", ["amount", "member"])
def test_an_order_id_reused_with_other_facts_is_an_order_conflict(points: Points, other: str) -> None:
    first, second = points.enroll(), points.enroll()
    points.buy(first, "42.00", order_id="web-1")

    with pytest.raises(OrderConflict) as conflict:
        points.buy(first if other == "amount" else second, "43.00" if other == "amount" else "42.00", "web-1")

    assert (conflict.value.status, conflict.value.field) == (409, "order_id")
    assert (points.available(first), points.available(second)) == (42, 0)


LINES = (
    LineItem(sku="SKU-1", category="makeup", amount=D("30.00")),
    LineItem(sku="SKU-2", category="skin care", quantity=2, amount=D("12.50")),
)


@pytest.mark.parametrize(
    ("again", "replayed"),
    [
        ((LINES[1].model_copy(update={"amount": D("12.5")}), LINES[0].model_copy(update={"amount": D(30)})), True),
        ((LINES[0],), False),
        ((*LINES, LineItem(sku="SKU-3", amount=D(1))), False),
        ((LINES[0], LINES[1].model_copy(update={"amount": D("12.49")})), False),
        ((LINES[0], LINES[1].model_copy(update={"quantity": 1})), False),
        ((LINES[0], LINES[1].model_copy(update={"category": "fragrance"})), False),
        ((), False),
    ],
    ids=[
        "same-lines-any-order",
        "a-line-dropped",
        "a-line-added",
        "other-amount",
        "other-quantity",
        "other-category",
        "no-lines",
    ],
)
def test_an_order_id_replayed_with_other_line_items_is_an_order_conflict(
    points: Points, again: tuple[LineItem, ...], replayed: bool
) -> None:
    member_id = points.enroll()
    first = points.service.purchase(
        member_id, Purchase(order_id="web-1", amount=D(50), currency="USD", line_items=LINES)
    )
    retry = Purchase(order_id="web-1", amount=D(50), currency="USD", line_items=again)

    if replayed:
        assert points.service.purchase(member_id, retry) == Outcome(first.status, first.body, replayed=True)
    else:
        with pytest.raises(OrderConflict) as conflict:
            points.service.purchase(member_id, retry)
        assert (conflict.value.status, conflict.value.field) == (409, "order_id")
        assert "line items" in conflict.value.message
    assert points.available(member_id) == 50 and len(points.entries(member_id)) == 1


def test_an_order_without_line_items_keeps_the_fingerprint_it_had_before_lines_were_part_of_it() -> None:
    purchase = Purchase(order_id="web-1", amount=D("42.0"), currency="USD")

    assert purchase_fingerprint("m_1", purchase) == fingerprint("m_1", D(42), "USD")


@pytest.mark.parametrize(
    ("write", "again"),
    [
        ("redemption", lambda p, m: p.redeem(m, "ten-points", "key-1")),
        ("adjustment", lambda p, m: p.adjust(m, 26, "key-1")),
        ("engagement", lambda p, m: p.service.record(m, Engagement(type="survey"), "key-1")),
        ("refund", lambda p, m: p.refund("web-0", "25.00", "rf-1")),
    ],
)
def test_an_idempotency_key_reused_for_another_request_is_refused(points: Points, write: str, again: Any) -> None:
    member_id = points.enroll()
    points.buy(member_id, "250.00", order_id="web-0")
    first = {
        "redemption": lambda: points.redeem(member_id, "sample-trio", "key-1"),
        "adjustment": lambda: points.adjust(member_id, 25, "key-1"),
        "engagement": lambda: points.service.record(member_id, Engagement(type="review"), "key-1"),
        "refund": lambda: points.refund("web-0", "20.00", "rf-1"),
    }[write]()
    balance = points.available(member_id)

    with pytest.raises(IdempotencyKeyReused) as reused:
        again(points, member_id)

    assert first.status == 201
    assert reused.value.status == 422
    assert points.available(member_id) == balance


def test_an_idempotency_key_is_scoped_to_its_member(points: Points) -> None:
    first, second = points.enroll(), points.enroll()
    points.buy(first, "100.00")
    points.buy(second, "100.00")

    a, b = points.redeem(first, "ten-points", "key-1"), points.redeem(second, "ten-points", "key-1")

    assert not b.replayed and a.body["voucher_code"] != b.body["voucher_code"]


# ---- redeeming --------------------------------------------------------------------------------------------


def test_a_redemption_debits_the_cost_and_hands_out_a_voucher(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "150.00")

    outcome = points.redeem(member_id, "sample-trio", "key-1")

    assert outcome.status == 201
    assert VOUCHER.match(outcome.body["voucher_code"])
    assert outcome.body["reward"]["reward_id"] == "sample-trio"
    assert outcome.body["entry"]["points"] == -100
    balance = points.service.member(member_id).balance
    assert (balance.available, balance.redeemed) == (50, 100)
    points.assert_ledger_is_true(member_id)


@pytest.mark.parametrize(
    ("bought", "request_", "code", "status"),
    [
        ("99.99", ("sample-trio",), "insufficient_points", 409),
        ("100.00", ("no-such-reward",), "reward_not_found", 404),
        ("100.00", ("retired",), "reward_not_found", 404),
    ],
    ids=["balance-does-not-cover", "unknown-reward", "retired-reward"],
)
def test_a_refused_redemption_is_remembered_and_replays_as_the_same_refusal(
    points: Points, bought: str, request_: tuple[str], code: str, status: int
) -> None:
    member_id = points.enroll()
    points.buy(member_id, bought)
    [reward_id] = request_

    refused = points.redeem(member_id, reward_id, "key-1")
    points.buy(member_id, "500.00")  # could afford anything now
    points.store.put_reward(
        Reward(reward_id="no-such-reward", name="Late", kind=RewardKind.FREE_PRODUCT, cost_points=1)
    )
    replay = points.redeem(member_id, reward_id, "key-1")
    fresh = points.redeem(member_id, "sample-trio", "key-2")

    assert (refused.status, refused.body["code"], refused.replayed) == (status, code, False)
    assert (replay.status, replay.body, replay.replayed) == (status, refused.body, True)
    assert fresh.status == 201  # a new key is a new request, judged now
    assert [e["kind"] for e in points.entries(member_id)].count("redeem") == 1
    assert points.available(member_id) == int(D(bought)) + 500 - 100  # the refused request debited nothing


def test_an_insufficient_points_refusal_says_what_was_available_and_needed(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "99.99")

    refused = points.redeem(member_id, "sample-trio", "key-1")

    assert (refused.body["available"], refused.body["needed"]) == (99, 100)
    assert points.available(member_id) == 99


def test_a_reward_added_after_the_catalog_was_cached_is_found_before_a_refusal_is_remembered() -> None:
    memory = MemoryPointsStore()
    service = LoyaltyService(memory, cache_seconds=3600)
    points = Points(memory, service)
    member_id = points.enroll()
    points.buy(member_id, "100.00")
    assert service.rewards() == []  # the empty catalog is cached now

    memory.put_reward(Reward(reward_id="new-treat", name="New", kind=RewardKind.FREE_PRODUCT, cost_points=10))

    assert points.redeem(member_id, "new-treat", "key-1").status == 201
    assert points.available(member_id) == 90


def test_the_catalog_lists_active_rewards_cheapest_first(points: Points) -> None:
    assert [reward.reward_id for reward in points.service.rewards()] == ["ten-points", "sample-trio"]


# ---- refunds ----------------------------------------------------------------------------------------------


def test_a_partial_refund_reverses_its_share_of_the_orders_points(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "100.00", order_id="web-1")

    outcome = points.refund("web-1", "25.00", "rf-1")

    assert (outcome.status, outcome.replayed) == (201, False)
    assert (outcome.body["points_due"], outcome.body["points_reversed"], outcome.body["points_unrecovered"]) == (
        25,
        25,
        0,
    )
    assert (outcome.body["entry"]["kind"], outcome.body["entry"]["points"]) == ("reversal", -25)
    assert outcome.body["entry"]["refund_id"] == "rf-1"
    order = points.store.get_order("web-1")
    assert order is not None and (order.refunded_amount, order.reversal_due) == (D(25), 25)
    assert points.available(member_id) == 75
    points.assert_ledger_is_true(member_id)


@pytest.mark.parametrize(
    "amounts",
    [["10.00", "33.33", "0.01", "56.65"], ["99.99"], ["0.01"] * 3 + ["99.96"], ["50", "49.99"]],
    ids=["four-parts", "in-full", "pennies-then-the-rest", "two-halves"],
)
def test_refunds_of_an_order_however_split_reverse_exactly_its_points(points: Points, amounts: list[str]) -> None:
    member_id = points.enroll()
    points.buy(member_id, "99.99", order_id="web-1")  # 99 points
    points.service.record(member_id, Engagement(type="review"), "key-1")  # 50 that no refund may touch

    dues = [points.refund("web-1", amount, f"rf-{i}").body["points_due"] for i, amount in enumerate(amounts)]

    assert sum(dues) == 99 and all(due >= 0 for due in dues)
    assert points.available(member_id) == 50
    assert points.service.member(member_id).balance.reversed == 99
    points.assert_ledger_is_true(member_id)


def test_a_refund_after_the_points_were_spent_takes_what_is_left_and_records_the_rest(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "150.00", order_id="web-1")
    points.redeem(member_id, "sample-trio", "key-1")  # 50 left

    outcome = points.refund("web-1", "150.00", "rf-1")

    assert (outcome.body["points_due"], outcome.body["points_reversed"], outcome.body["points_unrecovered"]) == (
        150,
        50,
        100,
    )
    assert outcome.body["entry"]["unrecovered"] == 100
    balance = points.service.member(member_id).balance
    assert (balance.available, balance.unrecovered, balance.reversed) == (0, 100, 50)
    points.assert_ledger_is_true(member_id)


def test_a_refund_beyond_what_is_left_is_refused_and_the_refusal_is_remembered(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "50.00", order_id="web-1")
    points.refund("web-1", "30.00", "rf-1")

    refused = points.refund("web-1", "20.01", "rf-2")
    points.refund("web-1", "20.00", "rf-3")  # the order is refunded in full now
    replay = points.refund("web-1", "20.01", "rf-2")

    assert (refused.status, refused.body["code"], refused.replayed) == (409, "refund_exceeds_order", False)
    assert refused.body["errors"] == [{"field": "amount", "reason": refused.body["message"]}]
    assert refused.body["refundable"] == {"amount": "20", "currency": "USD"}
    assert (replay.status, replay.body, replay.replayed) == (409, refused.body, True)
    assert points.available(member_id) == 0
    points.assert_ledger_is_true(member_id)


@pytest.mark.parametrize("whose", ["unknown-order", "another-members-order"])
def test_a_refund_of_an_order_not_recorded_for_the_member_is_not_found_and_not_remembered(
    points: Points, whose: str
) -> None:
    owner, other = points.enroll(), points.enroll()
    points.buy(owner, "50.00", order_id="web-1")
    order_id, member_id = ("web-never", None) if whose == "unknown-order" else ("web-1", other)

    with pytest.raises(OrderNotFound) as missing:
        points.refund(order_id, "10.00", "rf-1", member_id=member_id)

    assert missing.value.status == 404
    assert points.available(owner) == 50
    assert points.refund("web-1", "10.00", "rf-1").status == 201  # nothing was kept under the refund's identity


def test_a_refund_is_the_same_refund_through_either_door(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "50.00", order_id="web-1")
    activity = Refund(order_id="web-1", refund_id="rf-1", amount=D(10))

    through_api = points.service.record(member_id, activity, "some-unrelated-header-key")
    through_event = points.service.refund(activity)

    assert through_event.replayed and through_event.body == through_api.body
    assert points.available(member_id) == 40


def test_a_refund_takes_its_share_of_each_category_back(points: Points) -> None:
    member_id = points.enroll()
    lines = (LineItem(category="Makeup", amount=D(30)), LineItem(category="skin care", amount=D(40)))
    points.service.purchase(member_id, Purchase(order_id="web-1", amount=D(100), currency="USD", line_items=lines))

    points.refund("web-1", "33.33", "rf-1")
    after_part = points.store.member_item(member_id)["spend_by_category"]
    points.refund("web-1", "66.67", "rf-2")

    assert after_part == {"makeup": D(30) - D("9.999"), "skin care": D(40) - D("13.332")}
    assert points.store.member_item(member_id)["spend_by_category"] == {"makeup": D(0), "skin care": D(0)}


@pytest.mark.parametrize(
    "parts", [["100.00"], ["30.00", "70.00"], ["33.33", "33.33", "33.34"]], ids=["at-once", "two-parts", "three-parts"]
)
def test_an_order_refunded_in_full_no_longer_counts_as_a_purchase(points: Points, parts: list[str]) -> None:
    member_id = points.enroll()
    placed = NOW - timedelta(days=40)
    points.buy(member_id, "100.00", order_id="web-1", occurred_at=placed)
    points.buy(member_id, "50.00", order_id="web-2")

    counts = []
    for number, part in enumerate(parts):
        points.refund("web-1", part, f"rf-{number}")
        counts.append(points.store.member_item(member_id)["purchase_count"])

    assert counts == [2] * (len(parts) - 1) + [1]  # only the refund that completes the order un-counts it
    item = points.store.member_item(member_id)
    assert item["purchases_by_month"] == {month_key(placed): 0, month_key(NOW): 1}
    assert item["spend_by_month"] == {month_key(placed): 0, month_key(NOW): 50}
    purchases = points.service.member(member_id).purchases
    assert (purchases.purchase_count, purchases.first_purchase_at, purchases.last_purchase_at) == (1, placed, NOW)
    points.assert_ledger_is_true(member_id)


def test_a_partial_refund_reduces_the_spend_and_not_the_purchase_count(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "100.00", order_id="web-1")

    points.refund("web-1", "99.99", "rf-1")

    item = points.store.member_item(member_id)
    assert (item["purchase_count"], item["purchases_by_month"], item["spend_by_month"]) == (
        1,
        {month_key(NOW): 1},
        {month_key(NOW): D("0.01")},
    )


def test_the_member_item_keeps_its_first_purchase_net_of_its_refunds(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "100.00", order_id="web-1", occurred_at=NOW - timedelta(days=40))
    points.buy(member_id, "50.00", order_id="web-2")
    points.refund("web-1", "30.00", "rf-1")
    kept_after_refund = points.store.member_item(member_id)["first_purchase"]

    earlier = NOW - timedelta(days=60)
    points.buy(member_id, "20.00", order_id="web-0", occurred_at=earlier)  # arrives late: the first purchase now
    points.refund("web-1", "70.00", "rf-2")  # no longer the first purchase: its record is left alone

    assert kept_after_refund == {"order_id": "web-1", "at": timestamp(NOW - timedelta(days=40)), "amount": D(70)}
    assert points.store.member_item(member_id)["first_purchase"] == {
        "order_id": "web-0",
        "at": timestamp(earlier),
        "amount": D(20),
    }
    assert points.store.member_item(member_id)["purchase_count"] == 2


EUROS = ProgramConfig(
    version=2, points_per_unit={"USD": D(1), "EUR": D(1)}, exchange_rates={"EUR": D("1.0825")}
)  # USD per EUR


def test_spend_in_another_currency_is_kept_in_the_base_currency_and_the_order_in_its_own(points: Points) -> None:
    points.store.put_program(EUROS, replaces=None)
    member_id = points.enroll()
    lines = (LineItem(category="makeup", amount=D("10.00")),)

    earned = points.service.purchase(
        member_id, Purchase(order_id="web-1", amount=D("19.99"), currency="EUR", line_items=lines)
    )
    points.buy(member_id, "10.00", order_id="web-2")

    assert earned.body["entry"]["points"] == 19  # priced in its own currency
    order = points.store.get_order("web-1")
    assert order is not None
    assert (order.amount, order.currency, order.base_amount, order.base_currency) == (
        D("19.99"),
        "EUR",
        D("21.639"),  # 19.99 x 1.0825 = 21.639175
        "USD",
    )
    assert order.category_totals == {"makeup": D("10.825")}
    item = points.store.member_item(member_id)
    assert item["spend_by_month"] == {month_key(NOW): D("31.639")}  # never 29.99, EUR and USD summed as one
    assert item["spend_by_category"] == {"makeup": D("10.825")}


def test_refunds_in_another_currency_take_back_exactly_the_spend_it_added_in_the_base_currency(points: Points) -> None:
    points.store.put_program(EUROS, replaces=None)
    member_id = points.enroll()
    points.service.purchase(member_id, Purchase(order_id="web-1", amount=D("19.99"), currency="EUR"))
    points.buy(member_id, "10.00", order_id="web-2")

    points.refund("web-1", "10.00", "rf-1")
    after_part = points.store.member_item(member_id)["spend_by_month"][month_key(NOW)]
    points.refund("web-1", "9.99", "rf-2")

    assert after_part == D("31.639") - D("10.824")  # floor3(21.639 x 10 / 19.99)
    assert points.store.member_item(member_id)["spend_by_month"] == {month_key(NOW): D(10)}


def test_a_spend_tier_counts_a_purchase_in_another_currency_at_its_base_currency_value(points: Points) -> None:
    by_spend = EUROS.model_copy(update={"tier_rules": TierRules(measure="spend")})
    points.store.put_program(by_spend, replaces=None)
    member_id = points.enroll()

    points.service.purchase(member_id, Purchase(order_id="web-1", amount=D(330), currency="EUR"))

    # 330 EUR is 357.225 USD: past VIB's 350 (330 summed as USD would not be)
    assert points.service.member(member_id).tier == "VIB"


class MovingOrder:
    """The in-memory store, except that just before each of the first `moves` refund writes another refund of
    the same order lands (as a concurrent request would), so the write finds the order moved."""

    def __init__(self, store: MemoryPointsStore, moves: int):
        self._store = store
        self.moves = moves
        self.writes = 0

    def reverse(self, reversal: Reversal) -> Replay | None:
        self.writes += 1
        if self.writes <= self.moves:
            rival = Refund(order_id=reversal.order.order_id, refund_id=f"rival-{self.writes}", amount=D(1))
            LoyaltyService(self._store, cache_seconds=0, clock=lambda: NOW).refund(rival)
        return self._store.reverse(reversal)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_refund_whose_order_moved_meanwhile_is_planned_again_from_fresh_reads() -> None:
    points = make_points()
    member_id = points.enroll()
    points.buy(member_id, "100.00", order_id="web-1")
    moving = MovingOrder(points.store, moves=2)
    service = LoyaltyService(moving, cache_seconds=0, clock=lambda: NOW)  # type: ignore[arg-type]

    outcome = service.refund(Refund(order_id="web-1", refund_id="rf-1", amount=D(50)))

    assert moving.writes == 3  # two writes found the order moved; the third, planned from fresh reads, landed
    assert outcome.body["points_due"] == 50
    order = points.store.get_order("web-1")
    assert order is not None and (order.refunded_amount, order.reversal_due) == (D(52), 52)
    points.assert_ledger_is_true(member_id)


def test_a_refund_whose_order_keeps_moving_is_a_503_and_writes_nothing_of_its_own() -> None:
    points = make_points()
    member_id = points.enroll()
    points.buy(member_id, "100.00", order_id="web-1")

    class AlwaysMoved(MovingOrder):
        def reverse(self, reversal: Reversal) -> Replay | None:
            self.writes += 1
            raise RefundBasisMoved(reversal.order.order_id)

    moving = AlwaysMoved(points.store, moves=0)
    service = LoyaltyService(moving, cache_seconds=0, clock=lambda: NOW)  # type: ignore[arg-type]

    with pytest.raises(StoreContention) as contention:
        service.refund(Refund(order_id="web-1", refund_id="rf-1", amount=D(50)))

    assert contention.value.status == 503
    assert moving.writes == REFUND_ATTEMPTS
    assert points.refund("web-1", "50", "rf-1").status == 201  # retried with the same identity, it goes through


# ---- many callers at once: the in-memory store is atomic per write, as a transaction is ----------------------


def test_concurrent_redemptions_and_refunds_on_the_in_memory_store_keep_the_ledger_true(points: Points) -> None:
    member_id = points.enroll()
    points.buy(member_id, "100.00", order_id="web-1")
    points.buy(member_id, "100.00", order_id="web-2")

    with ThreadPoolExecutor(max_workers=16) as pool:
        redeemed = list(pool.map(lambda i: points.redeem(member_id, "ten-points", f"key-{i}"), range(30)))
        refunded = list(pool.map(lambda i: points.refund("web-2", "10", f"rf-{i}"), range(12)))

    assert sum(r.status == 201 for r in redeemed) == 20  # 200 points: twenty 10-point rewards, then refusals
    assert Counter(r.status for r in refunded) == {201: 10, 409: 2}
    assert sum(r.body["points_due"] for r in refunded if r.status == 201) == 100
    assert points.available(member_id) == 0
    points.assert_ledger_is_true(member_id)


# ---- enrolment --------------------------------------------------------------------------------------------


def test_enrolling_twice_with_the_same_external_id_returns_the_first_member(points: Points) -> None:
    first = points.service.enroll(Enrollment(external_id="cust-1001"))
    second = points.service.enroll(Enrollment(external_id="cust-1001"))

    assert (first.status, first.replayed, second.status, second.replayed) == (201, False, 200, True)
    assert second.body["member_id"] == first.body["member_id"]
    member = points.service.member(first.body["member_id"])
    assert (member.tier, member.balance.available, member.purchases.purchase_count) == ("Insider", 0, 0)


def test_a_referral_names_the_referring_member_and_an_unknown_code_enrolls_no_one(points: Points) -> None:
    referrer = points.service.member(points.enroll())

    referred = points.service.enroll(Enrollment(external_id="cust-friend", referred_by=referrer.referral_code))
    with pytest.raises(InvalidRequest) as refused:
        points.service.enroll(Enrollment(external_id="cust-stranger", referred_by="ZZZZ-ZZZZ"))

    assert referred.body["referred_by"] == referrer.member_id
    assert refused.value.field == "referred_by"
    assert points.store.member_id_for_external("cust-stranger") is None


def test_a_referral_code_already_taken_is_drawn_again(points: Points, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = points.service.member(points.enroll()).referral_code
    draws = iter([taken, taken, "WXYZ-2345"])
    monkeypatch.setattr(ids, "referral_code", lambda: next(draws))

    outcome = points.service.enroll(Enrollment(external_id="cust-unlucky"))

    assert (outcome.status, outcome.body["referral_code"]) == (201, "WXYZ-2345")
    assert points.store.member_id_for_referral(taken) != outcome.body["member_id"]


class LateLookup:
    """The in-memory store, except that the first external-id lookup misses: another enrolment of the same
    external id lands between the service's lookup and its write."""

    def __init__(self, store: MemoryPointsStore):
        self._store = store
        self.lookups = 0

    def member_id_for_external(self, external_id: str) -> str | None:
        self.lookups += 1
        return None if self.lookups == 1 else self._store.member_id_for_external(external_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_an_enrolment_that_loses_a_race_for_its_external_id_answers_with_the_winner(points: Points) -> None:
    winner = points.service.enroll(Enrollment(external_id="cust-race"))
    late = LateLookup(points.store)
    service = LoyaltyService(late, cache_seconds=0, clock=lambda: NOW)  # type: ignore[arg-type]

    outcome = service.enroll(Enrollment(external_id="cust-race"))

    assert (outcome.status, outcome.replayed, outcome.body["member_id"]) == (200, True, winner.body["member_id"])
    assert late.lookups == 2


# ---- adjustments ------------------------------------------------------------------------------------------


def test_adjustments_move_the_balance_either_way_with_their_reason(points: Points) -> None:
    member_id = points.enroll()

    up, down = points.adjust(member_id, 25, "key-1"), points.adjust(member_id, -10, "key-2")

    assert (up.body["entry"]["points"], down.body["entry"]["points"]) == (25, -10)
    assert up.body["entry"]["reason"] == "goodwill correction"
    balance = points.service.member(member_id).balance
    assert (balance.available, balance.lifetime_earned, balance.reversed) == (15, 25, 10)
    points.assert_ledger_is_true(member_id)


def test_a_negative_adjustment_beyond_the_balance_is_refused_and_remembered(points: Points) -> None:
    member_id = points.enroll()
    points.adjust(member_id, 25, "key-1")

    refused = points.adjust(member_id, -26, "key-2")
    points.buy(member_id, "10.00")
    replay = points.adjust(member_id, -26, "key-2")

    assert (refused.status, refused.body["code"]) == (409, "insufficient_points")
    assert (replay.status, replay.body, replay.replayed) == (409, refused.body, True)
    assert points.available(member_id) == 35


@pytest.mark.parametrize("adjustment", [0, 101, -101])
def test_an_adjustment_of_nothing_or_beyond_the_programs_limit_is_refused(points: Points, adjustment: int) -> None:
    points.store.put_program(ProgramConfig(max_adjustment_points=100), replaces=None)
    member_id = points.enroll()

    with pytest.raises(InvalidRequest) as refused:
        points.adjust(member_id, adjustment, "key-1")

    assert refused.value.field == "points"


# ---- the ledger -------------------------------------------------------------------------------------------


def test_the_ledger_pages_newest_first_and_an_unknown_member_has_none(points: Points) -> None:
    member_id = points.enroll()
    for i in range(7):
        points.service.record(member_id, Engagement(type="review"), f"key-{i}")

    first = points.service.ledger(member_id, 5, None)
    second = points.service.ledger(member_id, 5, first["next_cursor"])

    read = [e["entry_id"] for e in first["entries"] + second["entries"]]
    assert read == sorted(read, reverse=True) and len(set(read)) == 7
    assert second["next_cursor"] is None
    assert all(e["kind"] == EntryKind.BONUS for e in first["entries"])
    with pytest.raises(MemberNotFound):
        points.service.ledger("m_unknown", 5, None)
