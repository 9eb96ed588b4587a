"""The scheduled tier review on the in-memory store: down one level at most, none in grace, nobody written who stays,
each move once however often the review runs, shares and continuations covering every member once, and a member
who earns while being reviewed judged again on fresh facts. The job's state machine runs it on moto:
tests/integration/test_tier_review_job.py."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.events import EventType, domain_event_from_item
from loyalty.core.idempotency import Outcome
from loyalty.points.activities import Purchase
from loyalty.points.members import Enrollment
from loyalty.points.ports import TierReviewed
from loyalty.points.service import LoyaltyService
from loyalty.points.tier_review import TierReview
from loyalty.points.tiers import last_review

REVIEW = datetime(2026, 6, 1, tzinfo=UTC)


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
    orders: int = 0

    def member_who_earned(self, points: int, on: datetime) -> str:
        """A member who earned `points` in one purchase on `on` (moving up then, if it reached a threshold)."""
        self.clock.now = on
        member = str(self.service.enroll(Enrollment(external_id=f"cust-{self.orders}")).body["member_id"])
        if points:
            self.buy(member, points, on)
        return member

    def buy(self, member_id: str, points: int, on: datetime) -> Outcome:
        self.orders += 1
        self.clock.now = on
        purchase = Purchase(order_id=f"o-{self.orders}", amount=Decimal(points), currency="USD", occurred_at=on)
        return self.service.purchase(member_id, purchase)

    def review(self, at: datetime = REVIEW, **options: Any) -> list[dict[str, Any]]:
        self.clock.now = at
        job = TierReview(self.store, self.service.program.get, clock=self.clock, **options)
        begun = job.begin({})
        assert begun["review_at"] == "2026-06-01T00:00:00.000000Z"
        finished = []
        for share in begun["shares"]:
            answer = job.review(share, lambda: 900.0)
            while not answer["done"]:
                answer = job.review(answer, lambda: 900.0)
            finished.append(answer)
        return finished

    def tier(self, member_id: str) -> str:
        return self.service.member(member_id).tier


def _world(store: MemoryPointsStore | None = None) -> World:
    clock = Clock(REVIEW)
    store = store or MemoryPointsStore(clock=clock)
    return World(clock, store, LoyaltyService(store, cache_seconds=0, clock=clock))


def test_the_review_moves_down_one_level_those_whose_closed_window_no_longer_holds_their_tier() -> None:
    world = _world()
    lapsed_vib = world.member_who_earned(400, datetime(2025, 5, 20, tzinfo=UTC))  # May 2025 leaves the window
    lapsed_rouge = world.member_who_earned(1200, datetime(2025, 5, 20, tzinfo=UTC))
    kept_vib = world.member_who_earned(400, datetime(2025, 6, 2, tzinfo=UTC))  # June 2025 is still in
    in_grace = world.member_who_earned(400, datetime(2026, 4, 10, tzinfo=UTC))  # up on 2026-04-10: grace to 07-10
    insider = world.member_who_earned(10, datetime(2025, 5, 20, tzinfo=UTC))
    assert [world.tier(m) for m in (lapsed_vib, lapsed_rouge, kept_vib, in_grace)] == ["VIB", "Rouge", "VIB", "VIB"]

    shares = world.review()

    assert [world.tier(m) for m in (lapsed_vib, lapsed_rouge, kept_vib, in_grace, insider)] == [
        "Insider",
        "VIB",  # one level down at most
        "VIB",
        "VIB",
        "Insider",
    ]
    assert sum(share["read"] for share in shares) == 5
    assert sum(share["moved"] for share in shares) == 2
    moves = world.service.member(lapsed_rouge).tier_history
    assert [(m.from_tier, m.to_tier, m.direction, m.reason, int(m.value)) for m in moves] == [
        ("Insider", "Rouge", "up", "earn", 1200),
        ("Rouge", "VIB", "down", "review", 0),
    ]
    assert moves[-1].at == REVIEW
    events = [domain_event_from_item(item) for item in world.store.tier_events]
    downs = [(e.member_id, e.detail["to_tier"]) for e in events if e and e.detail["direction"] == "down"]
    assert sorted(downs) == sorted([(lapsed_vib, "Insider"), (lapsed_rouge, "VIB")])
    assert all(e is not None and e.event_type is EventType.TIER_CHANGED for e in events)


def test_a_review_run_again_moves_nobody_twice_and_records_each_move_once() -> None:
    world = _world()
    lapsed = world.member_who_earned(1200, datetime(2025, 5, 20, tzinfo=UTC))

    first, again = world.review(), world.review()

    assert sum(s["moved"] for s in first) == 1 and sum(s["moved"] for s in again) == 0
    assert world.tier(lapsed) == "VIB"
    assert len([e for e in world.store.tier_events if e["direction"] == "down"]) == 1


def test_the_next_review_moves_a_lapsed_member_down_one_more_level() -> None:
    world = _world()
    lapsed = world.member_who_earned(1200, datetime(2025, 5, 20, tzinfo=UTC))
    world.review()

    world.clock.now = datetime(2026, 7, 1, tzinfo=UTC)
    job = TierReview(world.store, world.service.program.get, clock=world.clock)
    for share in job.begin({})["shares"]:
        job.review(share, lambda: 900.0)

    assert [m.to_tier for m in world.service.member(lapsed).tier_history] == ["Rouge", "VIB", "Insider"]


def test_shares_and_continuations_read_every_member_once() -> None:
    world = _world()
    members = [world.member_who_earned(400, datetime(2025, 5, 20, tzinfo=UTC)) for _ in range(23)]
    world.clock.now = REVIEW
    job = TierReview(world.store, world.service.program.get, shares=4, page_size=2, clock=world.clock)
    read = moved = continuations = 0
    for share in job.begin({})["shares"]:
        answer = job.review(share, lambda: 0.0)  # always near the deadline: one page per invocation
        while not answer["done"]:
            continuations += 1
            answer = job.review(answer, lambda: 0.0)
        read, moved = read + answer["read"], moved + answer["moved"]

    assert (read, moved) == (23, 23)
    assert continuations >= 23 // 2 - 4
    assert {world.tier(m) for m in members} == {"Insider"}


class EarnsDuringTheReview(MemoryPointsStore):
    """A store where, the first time the review writes a member, that member earns first (between the review's
    read and its write)."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.world: World | None = None
        self.raced: set[str] = set()

    def review_tier(self, reviewed: TierReviewed) -> bool:
        if reviewed.member_id not in self.raced and self.world is not None:
            self.raced.add(reviewed.member_id)
            now = self.world.clock.now
            self.world.buy(reviewed.member_id, 500, datetime(2026, 5, 31, 23, 0, tzinfo=UTC))
            self.world.clock.now = now
        return super().review_tier(reviewed)


def test_a_member_who_earns_while_being_reviewed_is_judged_again_on_fresh_facts() -> None:
    clock = Clock(REVIEW)
    store = EarnsDuringTheReview(clock)
    world = _world(store)
    store.world = world
    lapsed = world.member_who_earned(400, datetime(2025, 5, 20, tzinfo=UTC))

    shares = world.review()

    # The 500 points earned on May 31 count in the window the review closes: judged again, the member keeps VIB.
    assert world.tier(lapsed) == "VIB"
    assert sum(s["moved"] for s in shares) == 0
    assert store.raced == {lapsed}


@pytest.mark.parametrize(
    ("now", "review"),
    [
        (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)),
        (datetime(2026, 6, 30, 23, 59, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)),
        (datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
    ],
)
def test_the_review_carried_out_is_the_latest_at_or_before_now(now: datetime, review: datetime) -> None:
    world = _world()
    assert last_review(world.service.program.get().tier_policy, now) == review


def test_a_review_of_a_given_past_instant_can_be_run_again_by_hand() -> None:
    world = _world()
    job = TierReview(world.store, world.service.program.get, clock=world.clock)

    assert job.begin({"review_at": "2026-05-01T00:00:00Z"})["review_at"] == "2026-05-01T00:00:00.000000Z"
    with pytest.raises(Exception, match="ISO 8601"):
        job.begin({"review_at": "May Day"})
