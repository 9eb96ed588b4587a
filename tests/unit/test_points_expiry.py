"""Lots and their expiry on the in-memory store: first in, first out without touching lots on a debit, the daily
job booking exactly what expired once however often it runs, refunds giving their order's lot its points back, the
last-activity mode, period-end rounding, PointsExpiringSoon once per lot, items from before lots were kept, and the
invariants under random histories (docs/expiry.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.events import EventType, domain_event_from_item
from loyalty.points.activities import Purchase, Refund
from loyalty.points.expiry import PointsExpiry
from loyalty.points.ledger import EntryKind
from loyalty.points.lots import NEVER, bucket_for, due, expiry_date, remaining, unspent_through
from loyalty.points.members import Enrollment
from loyalty.points.program import ExpiryPolicy, ProgramConfig
from loyalty.points.rewards import Reward, RewardKind
from loyalty.points.service import LoyaltyService

D = Decimal


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    clock: Clock
    store: MemoryPointsStore
    service: LoyaltyService
    n: int = 0

    def at(self, day: date) -> None:
        self.clock.now = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)

    def enroll(self) -> str:
        self.n += 1
        return str(self.service.enroll(Enrollment(external_id=f"cust-{self.n}")).body["member_id"])

    def buy(self, member_id: str, amount: int, on: date, order_id: str | None = None) -> None:
        self.n += 1
        self.at(on)
        purchase = Purchase(order_id=order_id or f"o-{self.n}", amount=D(amount), currency="USD")
        assert self.service.purchase(member_id, purchase).status == 201

    def redeem(self, member_id: str, points: int, on: date) -> int:
        self.n += 1
        self.at(on)
        self.store.put_reward(
            Reward(reward_id=f"r{points}", name="Treat", kind=RewardKind.FREE_PRODUCT, cost_points=points)
        )
        self.service.catalog.clear()
        return self.service.redeem(member_id, f"r{points}", f"k-{self.n}").status

    def run(self, on: date) -> list[dict[str, Any]]:
        self.at(on)
        job = PointsExpiry(self.store, self.service.program.get, shares=3, clock=self.clock)
        out = []
        for share in job.begin({})["shares"]:
            answer = job.expire(share, lambda: 900.0)
            while not answer["done"]:
                answer = job.expire(answer, lambda: 900.0)
            out.append(answer)
        return out

    def available(self, member_id: str) -> int:
        return self.service.member(member_id).balance.available

    def check(self, member_id: str) -> None:
        """The ledger is the truth; the lots account for every available point."""
        standing = self.store.standing(member_id)
        entries = self.store.ledger_page(member_id, 10_000, None)[0]
        assert standing.member.balance.available == sum(e.points for e in entries) >= 0
        assert standing.member.balance.available == sum((standing.lots or {}).values()) - standing.lots_consumed


def _world(**policy: Any) -> World:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    store = MemoryPointsStore(clock=clock)
    expiry = {"enabled": True, "months": 12, **policy}
    store.put_program(ProgramConfig(expiry=ExpiryPolicy.model_validate(expiry)), replaces=None)
    return World(clock, store, LoyaltyService(store, cache_seconds=0, clock=clock))


def test_the_soonest_lots_are_spent_first_and_what_is_left_of_them_expires_after_their_last_day() -> None:
    world = _world()
    member = world.enroll()
    world.buy(member, 100, date(2025, 6, 15))  # lot 2026-06-14
    world.buy(member, 50, date(2025, 9, 1))  # lot 2026-08-31
    assert world.redeem(member, 30, date(2025, 10, 1)) == 201  # taken from the June lot

    assert sum(s["expired_points"] for s in world.run(date(2026, 6, 14))) == 0  # its last day: still spendable
    shares = world.run(date(2026, 6, 15))

    assert sum(s["expired_points"] for s in shares) == 70 and sum(s["expired_members"] for s in shares) == 1
    assert world.available(member) == 50
    balance = world.service.member(member).balance
    assert (balance.expired, balance.redeemed, balance.lifetime_earned) == (70, 30, 150)
    (expiry,) = [e for e in world.store.ledger_page(member, 100, None)[0] if e.kind is EntryKind.EXPIRY]
    assert expiry.points == -70
    assert [(lot.expires_on, lot.points) for lot in remaining(world.store.standing(member).lots or {}, 100)] == [
        ("2026-08-31", 50)
    ]
    world.check(member)


def test_the_job_run_twice_on_a_day_or_on_the_next_expires_nothing_more() -> None:
    world = _world()
    member = world.enroll()
    world.buy(member, 100, date(2025, 6, 15))

    first, again, next_day = world.run(date(2026, 6, 15)), world.run(date(2026, 6, 15)), world.run(date(2026, 6, 16))

    assert [sum(s["expired_points"] for s in run) for run in (first, again, next_day)] == [100, 0, 0]
    assert world.available(member) == 0
    assert len([e for e in world.store.ledger_page(member, 100, None)[0] if e.kind is EntryKind.EXPIRY]) == 1
    world.check(member)


def test_a_refund_takes_its_points_back_from_its_own_orders_lot() -> None:
    world = _world()
    member = world.enroll()
    world.buy(member, 100, date(2025, 6, 15), order_id="june")
    world.buy(member, 50, date(2025, 9, 1), order_id="september")
    world.at(date(2025, 9, 2))
    assert world.service.refund(Refund(order_id="june", refund_id="r1", amount=D(100))).status == 201

    assert sum(s["expired_points"] for s in world.run(date(2026, 6, 15))) == 0  # the June lot was given back
    assert sum(s["expired_points"] for s in world.run(date(2026, 9, 1))) == 50
    world.check(member)


class RedeemsDuringTheExpiry(MemoryPointsStore):
    """A store where a member redeems between the job's read of them and its write, once."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.world: World | None = None
        self.raced = False

    def post(self, entry: Any, claim: Any, order: Any = None, guards: Any = None) -> Any:
        if entry.kind is EntryKind.EXPIRY and not self.raced and self.world is not None:
            self.raced = True
            now = self.world.clock.now
            assert self.world.redeem(entry.member_id, 40, now.date()) == 201
            self.world.clock.now = now
        return super().post(entry, claim, order, guards)


def test_a_redemption_between_the_jobs_read_and_write_is_counted_before_anything_expires() -> None:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    store = RedeemsDuringTheExpiry(clock)
    store.put_program(ProgramConfig(expiry=ExpiryPolicy(enabled=True, months=12)), replaces=None)
    world = World(clock, store, LoyaltyService(store, cache_seconds=0, clock=clock))
    store.world = world
    member = world.enroll()
    world.buy(member, 100, date(2025, 6, 15))
    world.buy(member, 100, date(2025, 12, 1))

    shares = world.run(date(2026, 6, 15))

    # The 40 redeemed on the day came out of the June lot first: 60 of it expire, not 100.
    assert store.raced and sum(s["expired_points"] for s in shares) == 60
    assert world.available(member) == 100
    world.check(member)


class RefundsDuringTheExpiry(MemoryPointsStore):
    """A store where the order of the ending lot is refunded between the job's read and its write, once."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.world: World | None = None
        self.raced = False

    def post(self, entry: Any, claim: Any, order: Any = None, guards: Any = None) -> Any:
        if entry.kind is EntryKind.EXPIRY and not self.raced and self.world is not None:
            self.raced = True
            refund = Refund(order_id="june", refund_id="r-race", amount=D(100))
            assert self.world.service.refund(refund).status == 201
        return super().post(entry, claim, order, guards)


def test_a_refund_between_the_jobs_read_and_write_leaves_the_other_lots_alone() -> None:
    clock = Clock(datetime(2025, 1, 1, tzinfo=UTC))
    store = RefundsDuringTheExpiry(clock)
    store.put_program(ProgramConfig(expiry=ExpiryPolicy(enabled=True, months=12)), replaces=None)
    world = World(clock, store, LoyaltyService(store, cache_seconds=0, clock=clock))
    store.world = world
    member = world.enroll()
    world.buy(member, 100, date(2025, 6, 15), order_id="june")
    world.buy(member, 100, date(2025, 12, 1), order_id="december")

    shares = world.run(date(2026, 6, 15))

    # The June lot gave its points back to the refund: nothing of it is left to expire, and December's stay.
    assert store.raced and sum(s["expired_points"] for s in shares) == 0
    assert world.available(member) == 100
    world.check(member)


def test_after_last_activity_everything_expires_once_the_member_has_been_idle_long_enough() -> None:
    world = _world(mode="after_last_activity", months=6)
    member = world.enroll()
    world.buy(member, 80, date(2025, 1, 10))
    assert world.redeem(member, 10, date(2025, 3, 1)) == 201  # the last activity: expires after 2025-08-31

    assert sum(s["expired_points"] for s in world.run(date(2025, 8, 31))) == 0
    assert sum(s["expired_points"] for s in world.run(date(2025, 9, 1))) == 70
    world.check(member)


@pytest.mark.parametrize(
    ("booked", "rounded", "expected"),
    [
        (date(2025, 6, 15), False, date(2026, 6, 14)),
        (date(2025, 6, 15), True, date(2026, 6, 30)),
        (date(2024, 2, 29), False, date(2025, 2, 27)),  # Feb 29 + 12 months = Feb 28, the day before
        (date(2025, 1, 31), True, date(2026, 1, 31)),
    ],
)
def test_a_lot_lasts_its_months_less_a_day_or_to_the_end_of_that_month(
    booked: date, rounded: bool, expected: date
) -> None:
    policy = ExpiryPolicy(enabled=True, months=12, round_to_period_end=rounded)
    assert expiry_date(policy, datetime(booked.year, booked.month, booked.day, 23, tzinfo=UTC)) == expected


def test_points_expiring_soon_is_announced_once_per_lot() -> None:
    world = _world(warn_days=30)
    member = world.enroll()
    world.buy(member, 100, date(2025, 6, 15))  # lot 2026-06-14
    world.buy(member, 20, date(2025, 7, 20))  # lot 2026-07-19

    world.run(date(2026, 5, 10))  # 35 days before: nothing yet
    world.run(date(2026, 5, 20))  # the June lot is within 30 days
    world.run(date(2026, 5, 21))  # nothing new
    world.run(date(2026, 6, 20))  # the July lot now

    events = [domain_event_from_item(item) for item in world.store.expiring_events]
    assert [(e.event_type, e.detail["expires_on"], e.detail["points"]) for e in events if e] == [
        (EventType.POINTS_EXPIRING_SOON, "2026-06-14", 100),
        (EventType.POINTS_EXPIRING_SOON, "2026-07-19", 20),
    ]


def test_a_balance_from_before_lots_were_kept_becomes_a_lot_that_never_expires() -> None:
    world = _world()
    member = world.enroll()
    world.buy(member, 100, date(2025, 6, 15))
    state = world.store._members[member]
    state.lots, state.lots_consumed = None, 0  # as an item written before lots were kept, 100 points available
    world.buy(member, 10, date(2025, 7, 1))

    assert world.store.standing(member).lots == {NEVER: 100, "2026-06-30": 10}
    assert sum(s["expired_points"] for s in world.run(date(2027, 1, 1))) == 10
    assert world.available(member) == 100
    world.check(member)


def test_with_expiry_off_credits_go_to_a_lot_that_never_expires() -> None:
    assert bucket_for(ExpiryPolicy(), datetime(2025, 1, 1, tzinfo=UTC)) == NEVER
    assert due(ExpiryPolicy(), {NEVER: 500}, 0, date(2099, 1, 1), None) == 0


_STEPS = st.lists(
    st.tuples(st.sampled_from(["buy", "redeem", "refund", "expire"]), st.integers(1, 200), st.integers(0, 600)),
    min_size=1,
    max_size=25,
)


@given(steps=_STEPS)
@settings(max_examples=60, deadline=None, database=None)
def test_under_any_history_the_lots_account_for_every_available_point_and_the_ledger_stays_true(
    steps: list[tuple[str, int, int]],
) -> None:
    world = _world(months=3)
    member = world.enroll()
    start, orders = date(2025, 1, 1), []
    for kind, amount, offset in sorted(steps, key=lambda step: step[2]):
        day = date.fromordinal(start.toordinal() + offset)
        if kind == "buy":
            orders.append(f"o-{len(orders)}")
            world.buy(member, amount, day, order_id=orders[-1])
        elif kind == "redeem" and world.available(member) >= amount:
            assert world.redeem(member, amount, day) == 201
        elif kind == "refund" and orders:
            world.at(day)
            world.service.refund(Refund(order_id=orders[amount % len(orders)], refund_id=f"r-{offset}", amount=D(1)))
        elif kind == "expire":
            world.run(day)
        world.check(member)
        standing = world.store.standing(member)
        assert (
            unspent_through(standing.lots or {}, standing.lots_consumed, day - __import__("datetime").timedelta(1)) >= 0
        )
