"""Random histories of earning, spending, refunding and replaying, on one or two members: whatever happens, the
ledger stays the truth and a replay gets exactly its first answer. Runs on moto in-process (60 histories) and on
DynamoDB Local (15), every history on one table with members of its own (moto's transactions no longer copy the
table, devstack/moto_isolation.py, so a table per history only cost its creation)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from functools import partial
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.core.idempotency import Outcome
from loyalty.points.activities import Adjustment, Engagement, Purchase, Refund
from loyalty.points.program import ProgramConfig
from tests.integration.conftest import REWARDS, Backend, Loyalty, make_loyalty

PROGRAM = ProgramConfig()
COST = {reward.reward_id: reward.cost_points for reward in REWARDS}
ENGAGEMENTS = ["review", "survey", "social_share", "referral"]

member = st.integers(min_value=0, max_value=1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("buy"), member, st.integers(min_value=1, max_value=30_000)),  # cents
        st.tuples(st.just("late-buy"), member, st.integers(min_value=1, max_value=30_000)),
        st.tuples(st.just("engage"), member, st.sampled_from(ENGAGEMENTS)),
        st.tuples(st.just("redeem"), member, st.sampled_from(sorted(COST))),
        st.tuples(st.just("refund"), st.integers(min_value=0, max_value=50), st.integers(min_value=1, max_value=120)),
        st.tuples(st.just("debit"), member, st.integers(min_value=1, max_value=300)),  # a negative adjustment
        st.tuples(st.just("replay"), st.integers(min_value=0, max_value=50), st.just(0)),
    ),
    min_size=1,
    max_size=8,
)


@dataclass
class Expected:
    """What the ledger must say, worked out independently of the code under test."""

    available: int = 0
    lifetime_earned: int = 0
    unrecovered: int = 0
    purchases: int = 0
    spend: Decimal = Decimal(0)
    points_earned: int = 0  # earn + bonus, less what refunds were due to take back (the monthly maps' net)
    first_order: str | None = None  # the earliest purchase's order id


@dataclass
class Order:
    member: int
    amount: Decimal
    points: int
    refunded: Decimal = Decimal(0)
    due_so_far: int = 0


@dataclass
class History:
    system: Loyalty
    members: list[str]
    expected: list[Expected] = field(default_factory=lambda: [Expected(), Expected()])
    orders: list[tuple[str, Order]] = field(default_factory=list)
    done: list[tuple[Callable[[], Outcome], Outcome]] = field(
        default_factory=list
    )  # (how to replay it, its first answer)
    late: int = 0

    def run(self, op: tuple[str, Any, Any]) -> None:
        kind, a, b = op
        if kind == "replay":
            if self.done:
                again, first = self.done[a % len(self.done)]
                replay = again()
                assert replay.replayed
                assert (replay.status, replay.body) == (first.status, first.body)
            return
        if kind in ("buy", "late-buy"):
            self.buy(a, Decimal(b) / 100, late=kind == "late-buy")
        elif kind == "engage":
            self.engage(a, b)
        elif kind == "redeem":
            self.debit(a, COST[b], partial(self.service.redeem, self.members[a], b, uuid.uuid4().hex))
        elif kind == "debit":
            adjustment = Adjustment(points=-b, reason="correction")
            self.debit(a, b, partial(self.service.record, self.members[a], adjustment, uuid.uuid4().hex))
        elif kind == "refund" and self.orders:
            self.refund(*self.orders[a % len(self.orders)], percent=b)

    @property
    def service(self) -> Any:
        return self.system.service

    def buy(self, who: int, amount: Decimal, *, late: bool) -> None:
        occurred_at = None
        if late:  # older than everything before it, yet inside the 24-month window of the aggregates
            self.late += 1
            occurred_at = datetime.now(UTC) - timedelta(days=25 * self.late)
        purchase = Purchase(
            order_id=f"o-{uuid.uuid4().hex[:10]}", amount=amount, currency="USD", occurred_at=occurred_at
        )
        call = partial(self.service.purchase, self.members[who], purchase)
        outcome = call()
        points = int(amount.to_integral_value(rounding=ROUND_FLOOR))
        assert outcome.body["entry"]["points"] == points
        expected = self.expected[who]
        expected.available += points
        expected.lifetime_earned += points
        expected.purchases += 1
        expected.spend += amount
        expected.points_earned += points
        if expected.first_order is None or late:  # a late purchase is older than every one before it
            expected.first_order = purchase.order_id
        self.orders.append((purchase.order_id, Order(who, amount, points)))
        self.done.append((call, outcome))

    def engage(self, who: int, activity: str) -> None:
        call = partial(self.service.record, self.members[who], Engagement(type=activity), uuid.uuid4().hex)
        outcome = call()
        points = PROGRAM.activity_points[activity]  # type: ignore[index]
        assert outcome.body["entry"]["points"] == points
        expected = self.expected[who]
        expected.available += points
        expected.lifetime_earned += points
        expected.points_earned += points
        self.done.append((call, outcome))

    def debit(self, who: int, points: int, call: Callable[[], Outcome]) -> None:
        expected = self.expected[who]
        outcome = call()
        if outcome.status == 409:
            assert outcome.body["code"] == "insufficient_points"
            assert expected.available < points
            return
        assert expected.available >= points
        assert outcome.body["entry"]["points"] == -points
        expected.available -= points
        self.done.append((call, outcome))

    def refund(self, order_id: str, order: Order, *, percent: int) -> None:
        amount = max(Decimal("0.01"), (order.amount * percent / 100).quantize(Decimal("0.01")))
        refund = Refund(order_id=order_id, refund_id=f"rf-{uuid.uuid4().hex[:10]}", amount=amount)
        call = partial(self.service.refund, refund)
        expected = self.expected[order.member]
        if amount > order.amount - order.refunded:
            refused = call()
            assert (refused.status, refused.body["code"]) == (409, "refund_exceeds_order")
            assert refused.body["errors"][0]["field"] == "amount"
            return
        outcome = call()
        target = int((Decimal(order.points) * (order.refunded + amount) / order.amount).to_integral_value(ROUND_FLOOR))
        due = target - order.due_so_far
        reversed_now = min(due, expected.available)
        assert (outcome.body["points_due"], outcome.body["points_reversed"]) == (due, reversed_now)
        assert outcome.body["points_unrecovered"] == due - reversed_now
        order.refunded += amount
        order.due_so_far += due
        expected.available -= reversed_now
        expected.unrecovered += due - reversed_now
        expected.spend -= amount
        expected.points_earned -= due
        if order.refunded == order.amount:  # refunded in full: no longer a purchase
            expected.purchases -= 1
        self.done.append((call, outcome))

    def check(self) -> None:
        for who, member_id in enumerate(self.members):
            expected = self.expected[who]
            self.system.assert_ledger_is_true(member_id)
            item = self.system.member_item(member_id)
            assert int(item["available"]) == expected.available >= 0
            assert int(item["lifetime_earned"]) == expected.lifetime_earned
            assert int(item["unrecovered"]) == expected.unrecovered
            assert int(item["purchase_count"]) == expected.purchases
            assert sum(item["spend_by_month"].values(), Decimal(0)) == expected.spend
            assert sum(item["points_by_month"].values(), Decimal(0)) == expected.points_earned
            assert sum(item["purchases_by_month"].values(), Decimal(0)) == expected.purchases
            if expected.first_order is not None:
                first = dict(self.orders)[expected.first_order]
                kept = item["first_purchase"]
                assert (kept["order_id"], kept["amount"]) == (expected.first_order, first.amount - first.refunded)
                assert kept.get("refunded", False) == (first.refunded == first.amount)
        for order_id, order in self.orders:
            stored = self.system.item(f"ORDER#{order_id}", "ORDER")
            assert stored is not None
            assert (stored["refunded_amount"], stored["reversal_due"]) == (order.refunded, order.due_so_far)


def test_random_histories_keep_the_ledger_true_and_every_replay_gets_its_first_answer(backend: Backend) -> None:
    shared = make_loyalty(backend)  # each history enrols members of its own

    @settings(
        max_examples=60 if backend.name == "moto" else 15,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(ops=operations, two_members=st.booleans())
    def history(ops: list[tuple[str, Any, Any]], two_members: bool) -> None:
        system = shared
        members = [system.enroll() for _ in range(2 if two_members else 1)]
        run = History(system, members)
        for op in ops:
            if op[0] != "replay" and op[0] != "refund" and op[1] >= len(members):
                op = (op[0], 0, op[2])
            run.run(op)
        run.check()

    try:
        history()
    finally:
        backend.client.delete_table(TableName=shared.table)
