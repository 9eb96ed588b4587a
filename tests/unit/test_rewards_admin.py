"""The catalog as admins keep it, through the service on the in-memory store: create and replace with an optimistic
version, retire (never delete), stock moved by a delta that never goes below 0 or set outright, and the pages of the
whole catalog; and the admin API's stock body."""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import ValidationError

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.errors import ConfigVersionConflict, InvalidRequest, RewardNotFound, StockConflict
from loyalty.points.activities import Engagement
from loyalty.points.members import Enrollment
from loyalty.points.ports import StockDelta, StockLevel
from loyalty.points.program import ProgramConfig, Tier
from loyalty.points.rewards import MAX_STOCK, RewardTerms
from loyalty.points.service import LoyaltyService

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


def terms(**values: Any) -> RewardTerms:
    return RewardTerms.model_validate({"name": "Treat", "kind": "free_product", "cost_points": 100, **values})


@pytest.fixture
def service() -> LoyaltyService:
    return LoyaltyService(MemoryPointsStore(clock=lambda: NOW), cache_seconds=0, clock=lambda: NOW)


# ---- create and replace -----------------------------------------------------------------------------------------


def test_a_reward_is_created_at_version_1_and_an_id_taken_is_a_conflict_naming_its_version(
    service: LoyaltyService,
) -> None:
    created, is_new = service.save_reward("treat", terms(stock=20), None)

    with pytest.raises(ConfigVersionConflict) as taken:
        service.save_reward("treat", terms(name="Another"), None)

    assert is_new and (created.version, created.stock) == (1, 20)
    assert (taken.value.status, taken.value.body()["version"]) == (409, 1)
    assert service.reward("treat").name == "Treat"


def test_a_replace_from_the_stored_version_moves_it_one_up_and_keeps_the_stock(service: LoyaltyService) -> None:
    service.save_reward("treat", terms(stock=20), None)
    service.change_stock("treat", StockDelta(-5))  # redemptions or an admin since the reward was read

    replaced, is_new = service.save_reward("treat", terms(name="Better treat", stock=20), 1)

    assert not is_new
    assert (replaced.name, replaced.version, replaced.stock) == ("Better treat", 2, 15)
    assert service.reward("treat") == replaced


def test_a_replace_from_a_version_no_longer_stored_is_a_conflict_and_changes_nothing(service: LoyaltyService) -> None:
    service.save_reward("treat", terms(), None)
    service.save_reward("treat", terms(cost_points=150), 1)

    with pytest.raises(ConfigVersionConflict) as stale:
        service.save_reward("treat", terms(cost_points=50), 1)

    assert stale.value.body()["version"] == 2
    assert service.reward("treat").cost_points == 150


def test_a_replace_of_a_reward_not_there_is_not_found(service: LoyaltyService) -> None:
    with pytest.raises(RewardNotFound):
        service.save_reward("ghost", terms(), 1)


def test_a_gate_must_name_a_tier_of_the_programs_ladder(service: LoyaltyService) -> None:
    service.store.put_program(
        ProgramConfig(tiers=(Tier(name="Bronze", threshold=0), Tier(name="Gold", threshold=5))), replaces=None
    )

    with pytest.raises(InvalidRequest) as refused:
        service.save_reward("treat", terms(min_tier="VIB"), None)
    created, _ = service.save_reward("treat", terms(min_tier="Gold"), None)

    assert refused.value.field == "min_tier" and "Bronze, Gold" in refused.value.message
    assert created.min_tier == "Gold"


def test_an_experience_is_created_with_its_capacity_as_its_stock(service: LoyaltyService) -> None:
    event = {"starts_at": "2026-09-01T19:00:00Z", "place": "Paris"}

    with pytest.raises(InvalidRequest) as refused:
        service.save_reward("night", terms(kind="experience", experience=event), None)
    created, _ = service.save_reward("night", terms(kind="experience", experience=event, stock=30), None)

    assert (refused.value.field, refused.value.message) == ("stock", "an experience reward needs a stock: its capacity")
    assert created.stock == 30


def test_a_replace_that_makes_a_reward_an_experience_needs_a_stored_capacity(service: LoyaltyService) -> None:
    service.save_reward("night", terms(), None)  # unlimited
    event = {"starts_at": "2026-09-01T19:00:00Z", "place": "Paris"}

    with pytest.raises(InvalidRequest) as refused:
        service.save_reward("night", terms(kind="experience", experience=event, stock=30), 1)
    service.change_stock("night", StockLevel(30))
    replaced, _ = service.save_reward("night", terms(kind="experience", experience=event), 1)

    assert refused.value.field == "stock"
    assert (replaced.kind, replaced.stock, replaced.version) == ("experience", 30, 2)


# ---- retiring ---------------------------------------------------------------------------------------------------


def test_a_retired_reward_is_kept_for_the_ledger_but_offered_and_redeemable_no_more(service: LoyaltyService) -> None:
    service.save_reward("treat", terms(cost_points=10), None)
    member_id = str(service.enroll(Enrollment(external_id="cust-1")).body["member_id"])
    service.store.put_program(ProgramConfig(activity_points={"survey": 100}), replaces=None)
    service.record(member_id, Engagement(type="survey"), "s")
    assert service.redeem(member_id, "treat", "before").status == 201

    retired = service.retire_reward("treat")
    again = service.retire_reward("treat")
    refused = service.redeem(member_id, "treat", "after")

    assert (retired.active, retired.version, again.version) == (False, 2, 3)
    assert service.rewards() == [] and service.offers(member_id) == []
    assert (refused.status, refused.body["code"]) == (404, "reward_not_found")
    assert service.reward("treat").name == "Treat"  # still there, for the admin and the ledger
    assert [e["reward_id"] for e in service.ledger(member_id, 10, None)["entries"] if e["kind"] == "redeem"] == [
        "treat"
    ]


def test_a_retired_reward_is_brought_back_by_a_replace_with_active_true(service: LoyaltyService) -> None:
    service.save_reward("treat", terms(), None)
    service.retire_reward("treat")

    back, _ = service.save_reward("treat", terms(active=True), 2)

    assert (back.active, back.version) == (True, 3)
    assert [r.reward_id for r in service.rewards()] == ["treat"]


def test_retiring_a_reward_not_there_is_not_found(service: LoyaltyService) -> None:
    with pytest.raises(RewardNotFound):
        service.retire_reward("ghost")


# ---- stock ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stock", "change", "after"),
    [
        (10, StockDelta(5), 15),
        (10, StockDelta(-10), 0),
        (10, StockLevel(3), 3),
        (10, StockLevel(None), None),
        (None, StockLevel(7), 7),
        (0, StockDelta(MAX_STOCK), MAX_STOCK),
    ],
    ids=["add", "take-all", "set", "unlimited", "limit-an-unlimited-one", "up-to-the-most"],
)
def test_the_stock_moves_by_a_delta_or_is_set(
    service: LoyaltyService, stock: int | None, change: Any, after: int | None
) -> None:
    service.save_reward("treat", terms(stock=stock), None)

    changed = service.change_stock("treat", change)

    assert changed.stock == after == service.reward("treat").stock
    assert changed.version == 1  # the stock is not a term: a redemption pinned to version 1 still holds


@pytest.mark.parametrize(
    ("stock", "add", "said"),
    [
        (3, -4, "would leave less than 0"),
        (MAX_STOCK - 1, 2, "would pass the most a stock holds"),
        (None, 5, "unlimited stock"),
    ],
    ids=["below-zero", "above-the-most", "unlimited"],
)
def test_a_delta_the_stock_cannot_take_is_a_conflict_naming_the_stock_and_changes_nothing(
    service: LoyaltyService, stock: int | None, add: int, said: str
) -> None:
    service.save_reward("treat", terms(stock=stock), None)

    with pytest.raises(StockConflict) as refused:
        service.change_stock("treat", StockDelta(add))

    assert refused.value.status == 409 and said in refused.value.message
    assert (refused.value.body()["stock"], refused.value.field) == (stock, "add")
    assert service.reward("treat").stock == stock


def test_an_experiences_capacity_cannot_be_made_unlimited(service: LoyaltyService) -> None:
    event = {"starts_at": "2026-09-01T19:00:00Z", "place": "Paris"}
    service.save_reward("night", terms(kind="experience", experience=event, stock=30), None)

    with pytest.raises(InvalidRequest) as refused:
        service.change_stock("night", StockLevel(None))

    assert refused.value.field == "unlimited"
    assert service.reward("night").stock == 30


def test_the_stock_of_a_reward_not_there_is_not_found(service: LoyaltyService) -> None:
    with pytest.raises(RewardNotFound):
        service.change_stock("ghost", StockDelta(1))


# ---- the whole catalog, a page at a time --------------------------------------------------------------------------


def test_pages_chain_through_every_reward_by_id_retired_and_sold_out_ones_too(service: LoyaltyService) -> None:
    for reward_id in ("c-sold-out", "a-live", "e-retired", "b-live", "d-live"):
        service.save_reward(reward_id, terms(stock=0 if "sold" in reward_id else None), None)
    service.retire_reward("e-retired")

    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = service.rewards_page(2, cursor)
        seen += [reward.reward_id for reward in page]
        pages += 1
        if cursor is None:
            break

    assert seen == ["a-live", "b-live", "c-sold-out", "d-live", "e-retired"]
    assert pages == 3


def test_a_cursor_this_store_did_not_make_is_refused_naming_it(service: LoyaltyService) -> None:
    with pytest.raises(InvalidRequest) as refused:
        service.rewards_page(10, "eyJzayI6IkxFREdFUiMxIn0")  # {"sk":"LEDGER#1"}: a ledger's, not the catalog's

    assert refused.value.field == "cursor"


# ---- the admin API's stock body ----------------------------------------------------------------------------------


@cache
def _admin_api() -> ModuleType:
    spec = importlib.util.spec_from_file_location("admin_api_for_units", ROOT / "functions/admin_api/app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("body", "change"),
    [({"add": -3}, StockDelta(-3)), ({"set": 12}, StockLevel(12)), ({"unlimited": True}, StockLevel(None))],
)
def test_a_stock_request_is_one_change(body: dict[str, Any], change: Any) -> None:
    assert _admin_api().StockRequest.model_validate(body).change() == change


@pytest.mark.parametrize(
    "body", [{}, {"add": 1, "set": 2}, {"add": 0}, {"unlimited": False}, {"set": -1}, {"add": 1, "more": 1}]
)
def test_a_stock_request_that_is_not_exactly_one_change_is_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _admin_api().StockRequest.model_validate(body)
