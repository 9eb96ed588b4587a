"""Tiers that live, and promotions, in the earn path, on the in-memory store: the move up in the same write as
the earn that crosses a threshold, one round trip for an earn that cannot cross one, the member's progress, tier
multipliers, promotions with audiences, caps and budgets, replays and races. The rules themselves are
tests/unit/test_tiers.py's and test_pricing.py's; the stores' conditions, test_points_store_contract.py's."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.events import EventType, domain_event_from_item
from loyalty.core.idempotency import Outcome
from loyalty.points.activities import ActivityType, Engagement, Purchase, Refund
from loyalty.points.members import Enrollment
from loyalty.points.ports import EarnGuards, PinnedStanding, StandingMoved
from loyalty.points.program import DEFAULT_LADDER, ProgramConfig, Tier
from loyalty.points.promotions import Promotion
from loyalty.points.rewards import Reward, RewardKind
from loyalty.points.service import LoyaltyService

D = Decimal
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


class CountingStore(MemoryPointsStore):
    """The in-memory store, counting the writes an earn takes (each `post` is one DynamoDB transaction) and the
    reads of a member's standing (each one GetItem)."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: NOW)
        self.posts = 0
        self.reads = 0

    def post(self, *args: Any, **kwargs: Any) -> Any:
        self.posts += 1
        return super().post(*args, **kwargs)

    def standing(self, member_id: str) -> Any:
        self.reads += 1
        return super().standing(member_id)


@dataclass
class Program:
    store: CountingStore
    service: LoyaltyService
    orders: int = field(default=0)

    def enroll(self) -> str:
        self.orders += 1
        return str(self.service.enroll(Enrollment(external_id=f"cust-{self.orders}")).body["member_id"])

    def buy(self, member_id: str, amount: str, order_id: str | None = None, at: datetime | None = None) -> Outcome:
        self.orders += 1
        purchase = Purchase(order_id=order_id or f"web-{self.orders}", amount=D(amount), currency="USD", occurred_at=at)
        return self.service.purchase(member_id, purchase)

    def round_trips(self, earn: Any) -> int:
        """The store calls one earn takes: writes plus reads."""
        before = self.store.posts + self.store.reads
        earn()
        return self.store.posts + self.store.reads - before

    def tier(self, member_id: str) -> str:
        return self.service.member(member_id).tier


def _program(program: ProgramConfig | None = None) -> Program:
    store = CountingStore()
    if program is not None:
        store.put_program(program, replaces=None)
    store.put_reward(Reward(reward_id="treat", name="Treat", kind=RewardKind.FREE_PRODUCT, cost_points=100))
    store.put_reward(Reward(reward_id="palette", name="Palette", kind=RewardKind.FREE_PRODUCT, cost_points=500))
    return Program(store, LoyaltyService(store, cache_seconds=0, clock=lambda: NOW))


# ---- moving up ---------------------------------------------------------------------------------------------------


def test_an_earn_that_cannot_reach_the_next_threshold_is_one_write_and_moves_nothing() -> None:
    points = _program()
    member = points.enroll()

    trips = points.round_trips(lambda: points.buy(member, "349.00"))

    assert trips == 1
    assert points.tier(member) == "Insider"
    assert points.service.member(member).tier_history == []
    assert points.store.tier_events == []


@pytest.mark.parametrize(
    ("purchases", "tier", "moves"),
    [
        (["349.99"], "Insider", []),  # 349 points: one short of VIB
        (["350.00"], "VIB", [("Insider", "VIB", 350)]),  # exactly the threshold
        (["349.00", "1.00"], "VIB", [("Insider", "VIB", 350)]),  # crossed by the second earn
        (["1200.00"], "Rouge", [("Insider", "Rouge", 1200)]),  # two levels in one earn: one move
        (["400.00", "700.00"], "Rouge", [("Insider", "VIB", 400), ("VIB", "Rouge", 1100)]),
    ],
    ids=["one-short", "exactly", "second-earn-crosses", "two-levels-at-once", "one-level-then-the-next"],
)
def test_an_earn_that_reaches_a_threshold_moves_the_member_up_in_the_same_write(
    purchases: list[str], tier: str, moves: list[tuple[str, str, int]]
) -> None:
    points = _program()
    member = points.enroll()

    for amount in purchases:
        assert points.buy(member, amount).status == 201

    seen = points.service.member(member)
    assert seen.tier == tier
    assert [(m.from_tier, m.to_tier, int(m.value)) for m in seen.tier_history] == moves
    assert all(m.direction == "up" and m.reason == "earn" for m in seen.tier_history)
    assert seen.tier_upgraded_at == (NOW if moves else None)
    events = [domain_event_from_item(item) for item in points.store.tier_events]
    assert [(e.event_type, e.detail["from_tier"], e.detail["to_tier"]) for e in events if e] == [
        (EventType.TIER_CHANGED, f, t) for f, t, _ in moves
    ]


def test_the_earn_that_crosses_costs_a_second_write_and_the_ones_after_it_one_again() -> None:
    points = _program()
    member = points.enroll()

    assert points.round_trips(lambda: points.buy(member, "300.00")) == 1
    assert points.round_trips(lambda: points.buy(member, "60.00")) == 2  # the guard failed; written pinned
    assert points.tier(member) == "VIB"
    assert points.round_trips(lambda: points.buy(member, "10.00")) == 1  # headroom to Rouge: 1000 - 370


def test_a_replayed_order_that_crossed_a_threshold_answers_the_first_answer_and_moves_nothing_twice() -> None:
    points = _program()
    member = points.enroll()
    first = points.buy(member, "500.00", order_id="web-big")

    again = points.buy(member, "500.00", order_id="web-big")

    assert again.replayed and again.body == first.body
    assert [m.to_tier for m in points.service.member(member).tier_history] == ["VIB"]
    assert len(points.store.tier_events) == 1
    assert points.service.member(member).balance.available == 500


def test_concurrent_earns_that_together_cross_a_threshold_move_the_member_once() -> None:
    points = _program()
    member = points.enroll()

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda n: points.buy(member, "50.00", order_id=f"web-race-{n}"), range(16)))

    assert [o.status for o in outcomes] == [201] * 16
    seen = points.service.member(member)
    assert (
        seen.balance.available == 800 == sum(e.points for e in points.service.store.ledger_page(member, 100, None)[0])
    )
    assert seen.tier == "VIB"
    assert [(m.from_tier, m.to_tier) for m in seen.tier_history] == [("Insider", "VIB")]
    assert int(seen.tier_history[0].value) >= 350
    assert len(points.store.tier_events) == 1


def test_a_refund_never_moves_a_member_down_and_a_redemption_neither() -> None:
    points = _program()
    member = points.enroll()
    points.buy(member, "400.00", order_id="web-vib")

    assert points.service.refund(Refund(order_id="web-vib", refund_id="r1", amount=D("300.00"))).status == 201
    assert points.service.redeem(member, "treat", "k-1").status == 201

    assert points.tier(member) == "VIB"
    assert [m.to_tier for m in points.service.member(member).tier_history] == ["VIB"]


def test_engagement_bonuses_count_toward_the_tier_as_the_points_they_earn() -> None:
    points = _program(ProgramConfig(activity_points={ActivityType.REVIEW: 200}))
    member = points.enroll()
    points.buy(member, "200.00")

    recorded = points.service.record(member, Engagement(type=ActivityType.REVIEW, reference="r-1"), "review-1")

    assert recorded.status == 201
    assert points.tier(member) == "VIB"
    assert recorded.body["entry"]["program_version"] == 1


def test_a_purchase_dated_before_the_qualifying_window_earns_but_does_not_count_toward_the_tier() -> None:
    points = _program()
    member = points.enroll()
    points.buy(member, "300.00")

    points.buy(member, "100.00", at=NOW - timedelta(days=400))  # 13 months back: outside the rolling 12 months

    assert points.service.member(member).balance.available == 400
    assert points.tier(member) == "Insider"


def test_a_new_ladder_version_is_applied_at_the_members_next_earn() -> None:
    store = CountingStore()
    points = Program(store, LoyaltyService(store, cache_seconds=0, clock=lambda: NOW))
    member = points.enroll()
    points.buy(member, "300.00")
    lower = (Tier(name="Insider", threshold=0), Tier(name="VIB", threshold=200), Tier(name="Rouge", threshold=1000))
    store.put_program(ProgramConfig(version=2, tiers=lower), replaces=None)

    trips = points.round_trips(lambda: points.buy(member, "1.00"))

    assert trips == 2  # the headroom was computed under version 1: written again from the standing
    assert points.tier(member) == "VIB"
    assert points.service.member(member).tier_history[0].value == 301


def test_a_member_without_a_headroom_is_written_from_their_standing_and_gets_one() -> None:
    points = _program()
    member = points.enroll()
    points.store._members[member].headroom = None  # as an item written before tiers moved
    points.store._members[member].basis = None

    assert points.round_trips(lambda: points.buy(member, "10.00")) == 2
    assert points.store.standing(member).headroom == 340
    assert points.round_trips(lambda: points.buy(member, "10.00")) == 1


def test_a_guard_that_fails_writes_nothing() -> None:
    points = _program()
    member = points.enroll()
    before = points.store.standing(member)
    entry_count = len(points.service.store.ledger_page(member, 100, None)[0])
    outcome = points.buy(member, "10.00")
    assert outcome.status == 201

    stale = EarnGuards(pinned=PinnedStanding(revision=before.revision, basis=1, headroom=D(1)))
    with pytest.raises(StandingMoved):
        points.store.post(*_entry_and_claim(member), guards=stale)

    assert len(points.service.store.ledger_page(member, 100, None)[0]) == entry_count + 1
    assert points.service.member(member).balance.available == 10


def _entry_and_claim(member_id: str) -> tuple[Any, Any]:
    from loyalty.core import ids
    from loyalty.core.idempotency import Claim
    from loyalty.points.ledger import EntryKind, LedgerEntry

    entry = LedgerEntry(entry_id=ids.ulid(), member_id=member_id, kind=EntryKind.BONUS, points=5, created_at=NOW)
    return entry, Claim(f"activity:{member_id}:stale", "f", 201, {})


# ---- progress ----------------------------------------------------------------------------------------------------


def test_the_member_view_gives_a_progress_bar_toward_the_next_tier_and_the_next_reward() -> None:
    points = _program()
    member = points.enroll()
    points.buy(member, "140.00")

    view = points.service.member_view(member)

    bar = view["progress"]
    assert (bar["tier"]["name"], bar["next_tier"]["name"]) == ("Insider", "VIB")
    assert (bar["value"], bar["to_next"], bar["percent"]) == (140, 210, 40)
    assert bar["window_ends_on"] == "2026-06-30"
    assert bar["to_keep"] == 0
    assert bar["next_reward"]["reward"]["reward_id"] == "treat" and bar["next_reward"]["affordable"] is True
    assert view["balance"]["available"] == 140


def test_at_the_top_the_bar_is_full_and_names_no_next_tier() -> None:
    points = _program()
    member = points.enroll()
    points.buy(member, "1500.00")

    bar = points.service.member_view(member)["progress"]

    assert (bar["tier"]["name"], bar["next_tier"], bar["percent"], bar["to_next"]) == ("Rouge", None, 100, 0)


# ---- multipliers and promotions -----------------------------------------------------------------------------------


def _ladder_with_multipliers() -> tuple[Tier, ...]:
    return (
        Tier(name="Insider", threshold=0),
        Tier(name="VIB", threshold=350, earn_multiplier=D("1.5")),
        Tier(name="Rouge", threshold=1000, earn_multiplier=D(2)),
    )


def test_a_tier_multiplier_prices_the_earn_after_reading_the_member_and_the_breakdown_says_so() -> None:
    points = _program(ProgramConfig(version=3, tiers=_ladder_with_multipliers()))
    member = points.enroll()
    points.buy(member, "400.00")  # Insider when priced: 400, then VIB

    trips = points.round_trips(lambda: points.buy(member, "100.00", order_id="web-vib-1"))

    entry = points.service.ledger(member, 1, None)["entries"][0]
    assert trips == 2  # the member read, then the write pinned to it
    assert entry["points"] == 150
    assert entry["breakdown"] == [{"rule": "base", "points": 100}, {"rule": "tier:VIB", "points": 50}]
    assert entry["program_version"] == 3


def _promotion(**fields: Any) -> Promotion:
    window = {"starts_at": NOW - timedelta(days=1), "ends_at": NOW + timedelta(days=1)}
    return Promotion.model_validate({**window, **fields})


def test_double_points_for_occasional_shoppers_goes_to_members_in_the_segment_only() -> None:
    promotion = _promotion(
        promotion_id="occasional-double",
        name="Double points for occasional shoppers",
        kind="multiplier",
        multiplier=2,
        segments=["points:occasional-shoppers"],
    )
    points = _program(ProgramConfig(version=2, promotions=(promotion,)))
    occasional, other = points.enroll(), points.enroll()
    points.store.set_segments(occasional, ["points:occasional-shoppers", "lifecycle:occasional"])

    doubled, plain = points.buy(occasional, "40.00"), points.buy(other, "40.00")

    assert doubled.body["entry"]["points"] == 80
    assert doubled.body["entry"]["breakdown"][-1] == {"rule": "promotion:occasional-double", "points": 40}
    assert plain.body["entry"]["points"] == 40


def test_a_cap_per_member_per_day_clips_the_promotion_and_counts_what_it_gave() -> None:
    promotion = _promotion(
        promotion_id="bonus-day", name="Bonus day", kind="fixed_bonus", points=100, cap={"points": 150, "period": "day"}
    )
    points = _program(ProgramConfig(version=2, promotions=(promotion,)))
    member = points.enroll()

    earned = [points.buy(member, "10.00").body["entry"]["points"] for _ in range(3)]

    assert earned == [110, 60, 10]  # 10 base each; the bonus 100, then the 50 left of the cap, then none
    assert points.store.standing(member).promotion_usage == {"bonus-day#2026-06-15": 150}


def test_a_budget_clips_the_promotion_across_members_and_is_never_overspent_under_concurrency() -> None:
    promotion = _promotion(promotion_id="launch", name="Launch bonus", kind="fixed_bonus", points=100, budget=1050)
    points = _program(ProgramConfig(version=2, promotions=(promotion,)))
    members = [points.enroll() for _ in range(12)]

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(lambda m: points.buy(m, "1.00"), members))

    bonuses = sorted(o.body["entry"]["points"] - 1 for o in outcomes)
    assert sum(bonuses) == 1050
    assert bonuses == [0, 50] + [100] * 10
    assert points.store.budgets_given(["launch"]) == {"launch": 1050}


def test_a_first_purchase_bonus_goes_with_the_first_purchase_only() -> None:
    promotion = _promotion(promotion_id="welcome", name="Welcome", kind="first_purchase_bonus", points=250)
    points = _program(ProgramConfig(version=2, promotions=(promotion,)))
    member = points.enroll()

    first, second = points.buy(member, "20.00"), points.buy(member, "20.00")

    assert (first.body["entry"]["points"], second.body["entry"]["points"]) == (270, 20)


def test_the_default_ladder_is_the_documented_one() -> None:
    assert [(t.name, t.threshold, t.earn_multiplier) for t in DEFAULT_LADDER] == [
        ("Insider", 0, 1),
        ("VIB", 350, 1),
        ("Rouge", 1000, 1),
    ]
