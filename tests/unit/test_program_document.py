"""The program document as the service keeps it, on the in-memory store: read, replaced whole over the version in
force, refused with every reason, replayed under an idempotency key, raced, paged through, and named on every ledger
entry it priced. The store's side of the contract (the condition, the history item, the claim in one write) is
tests/integration/test_points_store_contract.py's business."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.core.errors import ConfigVersionConflict, IdempotencyKeyReused, InvalidRequest, ProgramVersionNotFound
from loyalty.points.activities import Adjustment, Engagement, Purchase, Refund
from loyalty.points.members import Enrollment
from loyalty.points.program import ExpiryMode, ExpiryPolicy, ProgramConfig, ProgramDocument, RewardsPolicy
from loyalty.points.rewards import Reward, RewardKind
from loyalty.points.service import LoyaltyService

D = Decimal
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
DOUBLE = {"points_per_unit": {"USD": "2"}}  # a document: everything else at its default
PROMOTION = {
    "promotion_id": "rouge-days",
    "name": "Rouge days",
    "kind": "fixed_bonus",
    "starts_at": "2026-06-01T00:00:00Z",
    "ends_at": "2026-07-01T00:00:00Z",
    "points": 100,
}


@pytest.fixture
def store() -> MemoryPointsStore:
    memory = MemoryPointsStore(clock=lambda: NOW)
    memory.put_reward(Reward(reward_id="treat", name="Treat", kind=RewardKind.FREE_PRODUCT, cost_points=10))
    return memory


@pytest.fixture
def service(store: MemoryPointsStore) -> LoyaltyService:
    return LoyaltyService(store, cache_seconds=0, clock=lambda: NOW)


def replace(service: LoyaltyService, document: dict[str, Any], if_version: int, **options: Any) -> dict[str, Any]:
    outcome = service.replace_program(document, if_version, "ops-alice", **options)
    assert outcome.status == 200
    return outcome.body


def errors_of(refused: pytest.ExceptionInfo[InvalidRequest]) -> dict[str, str]:
    return {problem["field"]: problem["reason"] for problem in refused.value.details["errors"]}


# ---- reading -----------------------------------------------------------------------------------------------------


def test_before_any_replace_the_built_in_defaults_are_version_1_put_in_force_by_no_one(
    service: LoyaltyService, store: MemoryPointsStore
) -> None:
    in_force = service.program_document()

    assert in_force.program == ProgramConfig() and in_force.version == 1
    assert (in_force.replaced_at, in_force.replaced_by) == (None, None)
    assert service.program_versions(10, None) == ([in_force], None)
    assert service.program_version(1) == in_force
    with pytest.raises(ProgramVersionNotFound) as missing:
        service.program_version(2)
    assert (missing.value.status, missing.value.field) == (404, "version")
    assert store.get_program() is None  # reading stores nothing


def test_the_document_as_the_api_shows_it_is_the_program_its_version_and_who_put_it_in_force(
    service: LoyaltyService,
) -> None:
    body = replace(service, DOUBLE, 1)

    shown = ProgramDocument.model_validate(body)
    assert shown.version == 2 and shown.points_per_unit == {"USD": D(2)}
    assert (shown.replaced_at, shown.replaced_by) == (NOW, "ops-alice")
    assert service.program_document().public() == body


# ---- replacing ---------------------------------------------------------------------------------------------------


def test_a_replace_puts_the_next_version_in_force_at_once_and_keeps_the_defaults_as_version_1(
    store: MemoryPointsStore,
) -> None:
    service = LoyaltyService(store, cache_seconds=3600, clock=lambda: NOW)
    member_id = str(service.enroll(Enrollment(external_id="cust-1")).body["member_id"])
    service.program.get()  # cached before the change, for longer than the test

    replace(service, DOUBLE, 1)
    earned = service.purchase(member_id, Purchase(order_id="web-1", amount=D(10), currency="USD"))

    assert earned.body["entry"]["points"] == 20 and earned.body["entry"]["program_version"] == 2
    assert store.get_program() == ProgramConfig(version=2, points_per_unit={"USD": D(2)})
    versions, _ = service.program_versions(10, None)
    assert [(v.version, v.replaced_by) for v in versions] == [(2, "ops-alice"), (1, None)]
    assert versions[1].program == ProgramConfig()


@pytest.mark.parametrize(("replaced", "if_version"), [(0, 2), (2, 2), (2, 1)], ids=["ahead", "behind", "long-behind"])
def test_a_replace_over_a_version_not_in_force_is_a_409_with_the_version_in_force_and_changes_nothing(
    service: LoyaltyService, replaced: int, if_version: int
) -> None:
    for version in range(1, replaced + 1):
        replace(service, {"max_adjustment_points": 1000 + version}, version)
    before = service.program_versions(10, None)

    with pytest.raises(ConfigVersionConflict) as stale:
        service.replace_program(DOUBLE, if_version, "ops-bob")

    assert (stale.value.status, stale.value.code) == (409, "version_conflict")
    assert stale.value.details == {"version": replaced + 1}
    assert service.program_versions(10, None) == before
    assert service.program_document().version == replaced + 1


def test_an_invalid_document_is_refused_with_every_reason_at_once_and_the_previous_version_stays_in_force(
    service: LoyaltyService, store: MemoryPointsStore
) -> None:
    replace(service, DOUBLE, 1)
    document = {
        "points_per_unit": {"usd": "1"},
        "tiers": [{"name": "Insider", "threshold": 5}],
        "expiry": {"enabled": True, "months": 0},
        "rewards": {"pending_days": -1},
        "promotions": [{**PROMOTION, "ends_at": "2026-05-01T00:00:00Z"}],
        "colour": "red",
    }

    with pytest.raises(InvalidRequest) as refused:
        service.replace_program(document, 2, "ops-alice")

    problems = errors_of(refused)
    assert set(problems) == {
        "points_per_unit",
        "tiers",
        "expiry.months",
        "rewards.pending_days",
        "promotions[0].ends_at",
        "colour",
    }
    assert "ISO 4217" in problems["points_per_unit"] and "start at threshold 0" in problems["tiers"]
    assert refused.value.status == 422 and refused.value.field == refused.value.details["errors"][0]["field"]
    assert store.get_program() == ProgramConfig(version=2, points_per_unit={"USD": D(2)})
    assert [v.version for v in service.program_versions(10, None)[0]] == [2, 1]


def test_a_promotion_for_a_tier_the_ladder_lacks_is_refused_beside_the_documents_other_problems(
    service: LoyaltyService,
) -> None:
    document = {"promotions": [{**PROMOTION, "tiers": ["Gold", "VIB"]}], "max_adjustment_points": 0}

    with pytest.raises(InvalidRequest) as refused:
        service.replace_program(document, 1, "ops-alice")

    problems = errors_of(refused)
    assert set(problems) == {"tiers", "max_adjustment_points"}
    assert "rouge-days (Gold)" in problems["tiers"]
    renamed = [
        {"name": "Insider", "threshold": 0},
        {"name": "Gold", "threshold": 500},
        {"name": "VIB", "threshold": 900},
    ]
    assert replace(service, {**document, "tiers": renamed, "max_adjustment_points": 10}, 1)["version"] == 2


def test_a_document_too_large_to_keep_in_one_item_is_refused(service: LoyaltyService) -> None:
    many = {f"SKU-{index:06d}": "2" for index in range(20_000)}  # 17 bytes each: 340 KB

    with pytest.raises(InvalidRequest) as refused:
        service.replace_program({"sku_multipliers": many}, 1, "ops-alice")

    assert (refused.value.status, refused.value.field) == (422, "document")
    assert service.program_document().version == 1
    fewer = dict(list(many.items())[:1000])
    assert replace(service, {"sku_multipliers": fewer}, 1)["version"] == 2


def test_what_a_read_gives_back_is_ignored_in_a_replace(service: LoyaltyService) -> None:
    read = service.program_document().public()
    edited = {**read, "points_per_unit": {"USD": "3"}, "version": 41, "replaced_by": "mallory"}
    edited["replaced_at"] = "2001-01-01T00:00:00Z"

    body = replace(service, edited, 1)

    assert (body["version"], body["replaced_by"], body["points_per_unit"]) == (2, "ops-alice", {"USD": "3"})
    assert datetime.fromisoformat(body["replaced_at"]) == NOW


# ---- idempotency and races -------------------------------------------------------------------------------------


def test_a_replace_replayed_under_its_key_gets_its_first_answer_whatever_happened_since(
    service: LoyaltyService,
) -> None:
    first = service.replace_program(DOUBLE, 1, "ops-alice", idempotency_key="change-42")
    replace(service, {"max_adjustment_points": 10}, 2)

    again = service.replace_program(DOUBLE, 1, "ops-alice", idempotency_key="change-42")

    assert (first.status, first.replayed, again.status, again.replayed) == (200, False, 200, True)
    assert again.body == first.body and again.body["version"] == 2
    assert service.program_document().version == 3  # the replay changed nothing
    with pytest.raises(IdempotencyKeyReused) as reused:
        service.replace_program({"points_per_unit": {"USD": "5"}}, 1, "ops-alice", idempotency_key="change-42")
    assert (reused.value.status, reused.value.field) == (422, "Idempotency-Key")
    with pytest.raises(ConfigVersionConflict):  # without its key, the same request is a stale one
        service.replace_program(DOUBLE, 1, "ops-alice")


def test_a_refused_replace_keeps_nothing_under_its_key(service: LoyaltyService) -> None:
    with pytest.raises(InvalidRequest):
        service.replace_program({"max_adjustment_points": 0}, 1, "ops-alice", idempotency_key="k")

    corrected = service.replace_program({"max_adjustment_points": 5}, 1, "ops-alice", idempotency_key="k")

    assert (corrected.status, corrected.replayed, corrected.body["max_adjustment_points"]) == (200, False, 5)


class Racing(MemoryPointsStore):
    """Every contender reads the version in force before any of them writes: the store's condition decides."""

    def __init__(self, contenders: int):
        super().__init__(clock=lambda: NOW)
        self._all_read = threading.Barrier(contenders)
        self._seen = threading.local()
        self.racing = False

    def get_program(self) -> ProgramConfig | None:
        read = super().get_program()
        if self.racing and not getattr(self._seen, "read", False):
            self._seen.read = True
            self._all_read.wait(timeout=10)
        return read


@pytest.mark.parametrize("stored_first", [False, True], ids=["over-the-built-in-defaults", "over-a-stored-version"])
def test_concurrent_replaces_of_one_version_one_wins_the_others_get_409(stored_first: bool) -> None:
    contenders = 8
    store = Racing(contenders)
    if stored_first:
        store.put_program(ProgramConfig(), replaces=None)
    service = LoyaltyService(store, cache_seconds=0, clock=lambda: NOW)
    store.racing = True

    def attempt(index: int) -> Any:
        try:
            return service.replace_program({"max_adjustment_points": 100 + index}, 1, f"admin-{index}")
        except ConfigVersionConflict as stale:
            return stale

    with ThreadPoolExecutor(max_workers=contenders) as pool:
        results = list(pool.map(attempt, range(contenders)))
    store.racing = False

    assert Counter(type(result).__name__ for result in results) == {"Outcome": 1, "ConfigVersionConflict": 7}
    assert all(r.details == {"version": 2} for r in results if isinstance(r, ConfigVersionConflict))
    (won,) = [r for r in results if not isinstance(r, ConfigVersionConflict)]
    assert service.program_document().public() == won.body
    assert [v.version for v in service.program_versions(10, None)[0]] == [2, 1]


def test_the_versions_page_newest_first_through_a_cursor(service: LoyaltyService) -> None:
    for version in range(1, 6):
        replace(service, {"max_adjustment_points": version}, version)

    first, cursor = service.program_versions(4, None)
    rest, last = service.program_versions(4, cursor)

    assert [v.version for v in first + rest] == [6, 5, 4, 3, 2, 1] and last is None
    assert service.program_version(4).program.max_adjustment_points == 3


# ---- the version that priced each entry --------------------------------------------------------------------------


def test_every_entry_the_program_prices_names_its_version_and_the_others_none(service: LoyaltyService) -> None:
    member_id = str(service.enroll(Enrollment(external_id="cust-1")).body["member_id"])
    service.purchase(member_id, Purchase(order_id="web-1", amount=D(40), currency="USD"))
    replace(service, DOUBLE, 1)

    service.record(member_id, Engagement(type="review"), "review-1")
    service.record(member_id, Adjustment(points=5, reason="goodwill"), "adjust-1")
    service.purchase(member_id, Purchase(order_id="web-2", amount=D(10), currency="USD"))
    service.refund(Refund(order_id="web-1", refund_id="r-1", amount=D(10)), member_id=member_id)
    service.redeem(member_id, "treat", "redeem-1")

    entries = service.ledger(member_id, 10, None)["entries"]
    named = [(e["kind"], e.get("order_id"), e.get("program_version")) for e in entries]
    assert named[::-1] == [
        ("earn", "web-1", 1),
        ("bonus", None, 2),
        ("adjustment", None, 2),
        ("earn", "web-2", 2),
        ("reversal", "web-1", None),  # takes back what web-1 earned: priced by the order, not the program
        ("redeem", None, None),  # priced by the catalog
    ]


def test_a_container_still_caching_the_previous_version_names_the_version_that_priced_its_entries(
    store: MemoryPointsStore,
) -> None:
    admin = LoyaltyService(store, cache_seconds=0, clock=lambda: NOW)
    member_id = str(admin.enroll(Enrollment(external_id="cust-1")).body["member_id"])
    warm = LoyaltyService(store, cache_seconds=3600, clock=lambda: NOW)
    warm.program.get()

    replace(admin, DOUBLE, 1)
    outcome = warm.purchase(member_id, Purchase(order_id="web-1", amount=D(10), currency="USD"))

    assert (outcome.body["entry"]["points"], outcome.body["entry"]["program_version"]) == (10, 1)
    assert admin.program_version(1).program.points_per_unit == {"USD": D(1)}


# ---- the policy sections ---------------------------------------------------------------------------------------


def test_the_expiry_and_rewards_policies_default_to_nothing_expiring_and_nothing_pending() -> None:
    program = ProgramConfig()

    assert program.expiry == ExpiryPolicy(
        enabled=False, mode=ExpiryMode.AFTER_EARN, months=12, round_to_period_end=False
    )
    assert program.rewards == RewardsPolicy(pending_days=0)


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"expiry": {"months": 0}}, "expiry.months"),
        ({"expiry": {"months": 121}}, "expiry.months"),
        ({"expiry": {"mode": "never"}}, "expiry.mode"),
        ({"expiry": {"enabled": "sometimes"}}, "expiry.enabled"),
        ({"expiry": {"month": 6}}, "expiry.month"),
        ({"rewards": {"pending_days": -1}}, "rewards.pending_days"),
        ({"rewards": {"pending_days": 366}}, "rewards.pending_days"),
    ],
)
def test_a_policy_outside_its_bounds_is_refused_naming_its_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ProgramConfig.model_validate(section)

    assert [".".join(map(str, e["loc"])) for e in refused.value.errors()] == [field]


def test_an_expiry_policy_switched_on_reads_back_as_written() -> None:
    written = {
        "enabled": True,
        "mode": "after_last_activity",
        "months": 24,
        "round_to_period_end": True,
        "warn_days": 14,
    }

    program = ProgramConfig.model_validate({"expiry": written, "rewards": {"pending_days": 30}})

    assert program.expiry.model_dump(mode="json") == written and program.rewards.pending_days == 30
    assert ProgramConfig.model_validate_json(program.model_dump_json()) == program
