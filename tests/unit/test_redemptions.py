"""Redemption rules on the in-memory store: the window, stock, per-member limits and tier gates, each refusal with
its code and remembered under the key like a success, a cached catalog gone stale, and many redemptions at once
against a small stock. That the in-memory store refuses as the DynamoDB one does is
tests/integration/test_points_store_contract.py's business."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.errors import StoreContention
from loyalty.core.idempotency import Outcome, Replay
from loyalty.points.activities import Purchase
from loyalty.points.members import Enrollment
from loyalty.points.ports import Redemption, RewardChanged, StockDelta, StockLevel
from loyalty.points.rewards import Reward, RewardTerms
from loyalty.points.service import REDEEM_ATTEMPTS, LoyaltyService

START = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Catalog:
    """A service on a fresh in-memory store, with an admin's service beside it (another container, as the admin API
    is), whose changes the member-facing service's cache does not see until it reloads."""

    store: MemoryPointsStore
    service: LoyaltyService
    admin: LoyaltyService
    clock: Clock
    orders: int = 0

    def enroll(self, points: int = 0) -> str:
        member_id = str(self.service.enroll(Enrollment(external_id=f"cust-{self.orders}-{id(self)}")).body["member_id"])
        self.orders += 1
        if points:
            purchase = Purchase(order_id=f"web-{self.orders}", amount=Decimal(points), currency="USD")
            assert self.service.purchase(member_id, purchase).status == 201
        return member_id

    def add(self, reward_id: str, **terms: Any) -> Reward:
        document = {"name": reward_id.title(), "kind": "free_product", "cost_points": 100, **terms}
        reward, created = self.admin.save_reward(reward_id, RewardTerms.model_validate(document), None)
        assert created
        return reward

    def replace(self, reward_id: str, **terms: Any) -> Reward:
        current = self.admin.reward(reward_id)
        document = {**current.model_dump(exclude={"reward_id", "version"}), **terms}
        reward, _ = self.admin.save_reward(reward_id, RewardTerms.model_validate(document), current.version)
        return reward

    def redeem(self, member_id: str, reward_id: str, key: str = "key-1") -> Outcome:
        return self.service.redeem(member_id, reward_id, key)

    def available(self, member_id: str) -> int:
        return self.service.member(member_id).balance.available

    def redemptions(self, member_id: str) -> list[dict[str, Any]]:
        return [e for e in self.service.ledger(member_id, 1000, None)["entries"] if e["kind"] == "redeem"]

    def assert_ledger_is_true(self, member_id: str) -> None:
        balance = self.service.member(member_id).balance
        entries = self.service.ledger(member_id, 1000, None)["entries"]
        assert balance.available == sum(entry["points"] for entry in entries) >= 0
        assert balance.redeemed == -sum(e["points"] for e in entries if e["kind"] == "redeem")


def make_catalog(*, cache_seconds: float = 0) -> Catalog:
    clock = Clock()
    store = MemoryPointsStore(clock=clock)
    return Catalog(
        store,
        LoyaltyService(store, cache_seconds=cache_seconds, clock=clock),
        LoyaltyService(store, cache_seconds=0, clock=clock),
        clock,
    )


@pytest.fixture
def catalog() -> Catalog:
    return make_catalog()


# ---- each rule, its refusal, and the refusal remembered -----------------------------------------------------------


def _later(c: Catalog, member_id: str) -> None:
    c.clock.now = datetime(2026, 7, 1, tzinfo=UTC)


def _earlier(c: Catalog, member_id: str) -> None:
    c.replace("gift", valid_until=None)


def _restocked(c: Catalog, member_id: str) -> None:
    c.admin.change_stock("gift", StockDelta(5))


def _ungated(c: Catalog, member_id: str) -> None:
    c.replace("gift", min_tier=None)


def _next_month(c: Catalog, member_id: str) -> None:
    c.clock.now = datetime(2026, 7, 2, tzinfo=UTC)


def _richer(c: Catalog, member_id: str) -> None:
    c.service.purchase(member_id, Purchase(order_id="top-up", amount=Decimal(500), currency="USD"))


@pytest.mark.parametrize(
    ("terms", "before", "code", "then"),
    [
        ({"valid_from": "2026-07-01T00:00:00Z"}, None, "reward_not_yet_valid", _later),
        ({"valid_until": "2026-06-01T00:00:00Z"}, None, "reward_expired", _earlier),
        ({"stock": 0}, None, "out_of_stock", _restocked),
        ({"min_tier": "Rouge"}, None, "tier_too_low", _ungated),  # 500 points: VIB, below Rouge
        ({"per_member_limit": 1, "limit_period": "month"}, "june", "limit_reached", _next_month),
        ({"cost_points": 900}, None, "insufficient_points", _richer),
    ],
    ids=["not-yet-valid", "expired", "out-of-stock", "tier-too-low", "limit-reached", "insufficient-points"],
)
def test_each_refusal_has_its_code_debits_nothing_and_replays_as_itself_after_the_world_changed(
    catalog: Catalog, terms: dict[str, Any], before: str | None, code: str, then: Any
) -> None:
    member_id = catalog.enroll(points=500)
    catalog.add("gift", **terms)
    if before:
        assert catalog.redeem(member_id, "gift", before).status == 201

    refused = catalog.redeem(member_id, "gift")
    balance = catalog.available(member_id)
    then(catalog, member_id)  # the same request would now go through...
    replayed = catalog.redeem(member_id, "gift")
    fresh = catalog.redeem(member_id, "gift", "key-2")  # ...and a new one does

    assert (refused.status, refused.body["code"], refused.replayed) == (409, code, False)
    assert (replayed.status, replayed.body, replayed.replayed) == (409, refused.body, True)
    assert fresh.status == 201, fresh.body
    assert len(catalog.redemptions(member_id)) == (2 if before else 1)
    assert catalog.available(member_id) <= balance
    catalog.assert_ledger_is_true(member_id)


def test_refusals_tell_the_figures_behind_them(catalog: Catalog) -> None:
    member_id = catalog.enroll(points=150)
    catalog.add("vib-gift", min_tier="VIB")
    catalog.add("monthly", per_member_limit=1, limit_period="month", cost_points=10)
    catalog.add("later", valid_from="2026-07-01T00:00:00Z")
    catalog.redeem(member_id, "monthly", "first")

    gated = catalog.redeem(member_id, "vib-gift").body
    limited = catalog.redeem(member_id, "monthly", "second").body
    early = catalog.redeem(member_id, "later", "third").body

    assert (gated["tier"], gated["min_tier"]) == ("Insider", "VIB")
    assert (limited["limit"], limited["period"], limited["redeemed"]) == (1, "month", 1)
    assert early["valid_from"] == "2026-07-01T00:00:00+00:00"


def test_when_several_rules_refuse_the_answer_is_the_first_that_holds_in_the_documented_order(
    catalog: Catalog,
) -> None:
    member_id = catalog.enroll(points=50)  # too few points for any of these, and Insider
    catalog.add("all-wrong", stock=0, min_tier="Rouge", cost_points=900)
    catalog.add("gated-and-dear", min_tier="Rouge", cost_points=900)

    assert catalog.redeem(member_id, "all-wrong").body["code"] == "out_of_stock"
    assert catalog.redeem(member_id, "gated-and-dear", "key-2").body["code"] == "tier_too_low"


def test_a_gate_naming_a_tier_no_longer_on_the_ladder_opens_to_no_one(catalog: Catalog) -> None:
    member_id = catalog.enroll(points=500)
    catalog.add("gold-gift", min_tier="VIB")
    catalog.store.put_reward(catalog.admin.reward("gold-gift").model_copy(update={"min_tier": "Gold"}))

    refused = catalog.redeem(member_id, "gold-gift")

    assert (refused.status, refused.body["code"]) == (409, "tier_too_low")
    assert catalog.available(member_id) == 500


# ---- kinds ------------------------------------------------------------------------------------------------------


def test_a_donation_gives_its_points_to_the_cause_without_a_voucher(catalog: Catalog) -> None:
    member_id = catalog.enroll(points=300)
    catalog.add("ocean", kind="donation", cause="Ocean clean-up", cost_points=250)

    donated = catalog.redeem(member_id, "ocean")

    assert donated.status == 201
    assert "voucher_code" not in donated.body and "voucher_code" not in donated.body["entry"]
    assert (donated.body["entry"]["reward_id"], donated.body["entry"]["points"]) == ("ocean", -250)
    assert donated.body["reward"]["cause"] == "Ocean clean-up"
    assert catalog.available(member_id) == 50
    catalog.assert_ledger_is_true(member_id)


def test_an_experience_takes_a_seat_of_its_capacity_and_closes_when_the_event_starts(catalog: Catalog) -> None:
    members = [catalog.enroll(points=100) for _ in range(3)]
    event = {"starts_at": "2026-06-20T19:00:00Z", "place": "Paris"}
    catalog.add("masterclass", kind="experience", experience=event, stock=2)

    seats = [catalog.redeem(member_id, "masterclass").status for member_id in members]
    catalog.admin.change_stock("masterclass", StockDelta(1))
    catalog.clock.now = datetime(2026, 6, 20, 19, 0, tzinfo=UTC)
    late = catalog.redeem(members[2], "masterclass", "key-2")

    assert seats == [201, 201, 409]
    assert (late.status, late.body["code"]) == (409, "reward_expired")
    assert catalog.admin.reward("masterclass").stock == 1


def test_the_answer_gives_the_terms_redeemed_and_not_a_stock_the_redemption_itself_moved(catalog: Catalog) -> None:
    member_id = catalog.enroll(points=100)
    catalog.add("sample", stock=7, cost_points=10)

    redeemed = catalog.redeem(member_id, "sample")

    assert redeemed.body["reward"]["version"] == 1 and "stock" not in redeemed.body["reward"]
    assert catalog.admin.reward("sample").stock == 6


# ---- per-member limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "moves_to", "counts_again"),
    [
        ("month", datetime(2026, 7, 1, tzinfo=UTC), True),
        ("month", datetime(2026, 6, 30, 23, 59, tzinfo=UTC), False),
        ("year", datetime(2027, 1, 1, tzinfo=UTC), True),
        ("year", datetime(2026, 12, 31, 23, 59, tzinfo=UTC), False),
        ("lifetime", datetime(2040, 1, 1, tzinfo=UTC), False),
    ],
    ids=["next-month", "same-month", "next-year", "same-year", "lifetime"],
)
def test_a_per_member_limit_counts_in_its_period_and_for_each_member_alone(
    catalog: Catalog, period: str, moves_to: datetime, counts_again: bool
) -> None:
    member_id, other = catalog.enroll(points=1000), catalog.enroll(points=1000)
    catalog.add("treat", per_member_limit=2, limit_period=period, cost_points=10)

    first = [catalog.redeem(member_id, "treat", f"now-{i}").status for i in range(3)]
    others = [catalog.redeem(other, "treat", f"now-{i}").status for i in range(2)]
    catalog.clock.now = moves_to
    after = catalog.redeem(member_id, "treat", "later")

    assert first == [201, 201, 409] and others == [201, 201]
    assert after.status == (201 if counts_again else 409)
    assert len(catalog.redemptions(member_id)) == (3 if counts_again else 2)


# ---- a cached catalog gone stale: the transaction's pins are on the stored reward --------------------------------


def test_a_reward_replaced_since_it_was_cached_is_redeemed_on_its_terms_as_stored() -> None:
    catalog = make_catalog(cache_seconds=3600)
    member_id = catalog.enroll(points=100)
    catalog.add("treat", cost_points=10)
    assert [r.cost_points for r in catalog.service.rewards()] == [10]  # cached now

    catalog.replace("treat", cost_points=30)
    redeemed = catalog.redeem(member_id, "treat")

    assert redeemed.status == 201
    assert (redeemed.body["entry"]["points"], redeemed.body["reward"]["version"]) == (-30, 2)
    assert catalog.available(member_id) == 70
    assert [r.cost_points for r in catalog.service.rewards()] == [30]  # the cache was reloaded


@pytest.mark.parametrize(
    ("change", "status", "code", "stock_after"),
    [
        (lambda admin: admin.change_stock("treat", StockLevel(0)), 409, "out_of_stock", 0),
        (lambda admin: admin.retire_reward("treat"), 404, "reward_not_found", None),
        (lambda admin: admin.change_stock("treat", StockLevel(3)), 201, None, 2),
    ],
    ids=["sold-out", "retired", "made-limited"],
)
def test_a_cached_reward_whose_stored_item_moved_is_judged_on_the_stored_one(
    change: Any, status: int, code: str | None, stock_after: int | None
) -> None:
    catalog = make_catalog(cache_seconds=3600)
    member_id = catalog.enroll(points=100)
    catalog.add("treat", cost_points=10)  # unlimited, as the cache will keep it
    assert catalog.service.rewards()

    change(catalog.admin)
    outcome = catalog.redeem(member_id, "treat")

    assert (outcome.status, outcome.body.get("code")) == (status, code)
    assert catalog.admin.reward("treat").stock == stock_after
    assert catalog.available(member_id) == (90 if status == 201 else 100)


class EverChangingStore(MemoryPointsStore):
    """A store whose reward is replaced again between every plan and its write."""

    def __init__(self) -> None:
        super().__init__(clock=lambda: START)
        self.writes = 0

    def redeem(self, redemption: Redemption) -> Replay | None:
        self.writes += 1
        planned = redemption.reward
        raise RewardChanged(planned.model_copy(update={"version": planned.version + 1}))


def test_a_reward_that_keeps_changing_is_a_503_that_debits_nothing() -> None:
    store = EverChangingStore()
    service = LoyaltyService(store, cache_seconds=0, clock=lambda: START)
    member_id = str(service.enroll(Enrollment(external_id="cust-1")).body["member_id"])
    service.purchase(member_id, Purchase(order_id="o-1", amount=Decimal(100), currency="USD"))
    store.put_reward(Reward(reward_id="treat", name="Treat", kind="free_product", cost_points=10))

    with pytest.raises(StoreContention) as contention:
        service.redeem(member_id, "treat", "key-1")

    assert contention.value.status == 503
    assert store.writes == REDEEM_ATTEMPTS
    assert service.member(member_id).balance.available == 100


# ---- many at once -------------------------------------------------------------------------------------------------


def test_fifty_concurrent_redemptions_of_a_stock_of_ten_give_exactly_ten_vouchers(catalog: Catalog) -> None:
    members = [catalog.enroll(points=100) for _ in range(50)]
    catalog.add("limited", stock=10, cost_points=40)

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(lambda m: catalog.redeem(m, "limited", f"k-{m}"), members))

    assert Counter((o.status, o.body.get("code")) for o in outcomes) == {(201, None): 10, (409, "out_of_stock"): 40}
    assert len({o.body["voucher_code"] for o in outcomes if o.status == 201}) == 10
    assert catalog.admin.reward("limited").stock == 0
    assert sorted(catalog.available(m) for m in members) == [60] * 10 + [100] * 40
    for member_id in members:
        catalog.assert_ledger_is_true(member_id)


def test_concurrent_redemptions_by_one_member_never_pass_the_members_limit(catalog: Catalog) -> None:
    member_id = catalog.enroll(points=1000)
    catalog.add("twice", per_member_limit=2, cost_points=10)

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(lambda i: catalog.redeem(member_id, "twice", f"k-{i}"), range(20)))

    assert Counter((o.status, o.body.get("code")) for o in outcomes) == {(201, None): 2, (409, "limit_reached"): 18}
    assert catalog.available(member_id) == 980
    catalog.assert_ledger_is_true(member_id)


# ---- the catalog a member sees ----------------------------------------------------------------------------------


def test_a_member_sees_the_catalog_by_their_tier_and_anyone_else_by_the_entry_tier(catalog: Catalog) -> None:
    member_id = catalog.enroll()
    catalog.add("sample", cost_points=10)
    catalog.add("vib-gift", min_tier="VIB", cost_points=20)
    catalog.add("vib-preview", kind="exclusive_offer", min_tier="VIB", cost_points=5)
    catalog.add("sold-out", stock=0)

    mine = {offer.reward.reward_id: offer.tier_allows for offer in catalog.service.offers(member_id)}
    anyone = {offer.reward.reward_id: offer.tier_allows for offer in catalog.service.offers(None)}

    assert mine == anyone == {"sample": True, "vib-gift": False}
    assert [offer.reward.reward_id for offer in catalog.service.offers(None)] == ["sample", "vib-gift"]


def test_the_offered_rewards_are_those_inside_their_window_now(catalog: Catalog) -> None:
    catalog.add("summer", valid_from="2026-06-21T00:00:00Z", valid_until="2026-09-23T00:00:00Z")

    before = catalog.service.rewards()
    catalog.clock.now = datetime(2026, 6, 21, tzinfo=UTC)
    during = catalog.service.rewards()
    catalog.clock.now += timedelta(days=100)
    after = catalog.service.rewards()

    assert ([r.reward_id for r in before], [r.reward_id for r in during], after) == ([], ["summer"], [])
