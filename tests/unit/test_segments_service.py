"""The segmentation service on the in-memory store (loyalty.adapters.memory.segment_store), which the contract suite
holds to the DynamoDB store's behaviour: re-evaluation as purchases arrive and as evaluators race, the segmentation
document and its rule segments, memberships, sizes and predictions. No AWS, milliseconds each."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.memory.segment_store import InMemorySegmentStore
from loyalty.core.errors import ConfigVersionConflict, InvalidRequest, MemberNotFound, SegmentNotFound
from loyalty.core.instants import timestamp
from loyalty.points import member_record as record
from loyalty.points.members import Consent, Member, Profile
from loyalty.segments.assign import segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.ports import AppliedChange, PublishedCutPoints, StaleMember
from loyalty.segments.prediction import BgNbdParameters, PredictionModel
from loyalty.segments.rules import InvalidRule
from loyalty.segments.service import MAX_REEVALUATIONS, SegmentationService, SupersededImage

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
MODEL = PredictionModel(
    run_id="run-1",
    as_of="2026-03-15T00:00:00Z",
    bgnbd=BgNbdParameters(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426),  # CDNOW's (FHL 2005), in days
    sample_members=2357,
    sample_repeaters=946,
    sample_rate_log2=0,
    log_likelihood=-9582.4,
)
WIN_BACK_FR = {
    "segment_id": "win-back-fr",
    "name": "Win back, France",
    "rule": {
        "all": [{"field": "country", "op": "=", "value": "FR"}, {"field": "purchase_count", "op": ">", "value": 0}]
    },
}


class Racing(InMemorySegmentStore):
    """The in-memory store, where something changes the member just before some of the segment writes."""

    def __init__(self) -> None:
        super().__init__()
        self.before_write: list[Callable[[], None]] = []
        self.writes = 0

    def apply(self, member: Mapping[str, Any], after: Iterable[str], now: datetime, source: str) -> AppliedChange:
        self.writes += 1
        if self.before_write:
            self.before_write.pop(0)()
        return super().apply(member, after, now, source)


@pytest.fixture
def store() -> Racing:
    return Racing()


@pytest.fixture
def service(store: Racing) -> SegmentationService:
    return SegmentationService(store, clock=lambda: NOW)  # type: ignore[arg-type]  # no refresh runs in memory


def enroll(store: InMemorySegmentStore, member_id: str = "m_1", country: str = "FR") -> str:
    member = Member(
        member_id=member_id,
        external_id=f"ext-{member_id}",
        profile=Profile(country=country),
        consent=Consent(email=True, profiling=True),
        referral_code="AAAA-BBBB",
        tier="Insider",
        enrolled_at=NOW - timedelta(days=3),
    )
    store.put_member_item(record.new_member_item(member))
    return member_id


def buy(store: InMemorySegmentStore, member_id: str, amount: str, days_ago: int = 1) -> None:
    at = NOW - timedelta(days=days_ago)
    store.record_purchases(member_id, [record.PastPurchase(at, Decimal(amount), int(Decimal(amount)))], NOW)


def item(store: InMemorySegmentStore, member_id: str = "m_1") -> dict[str, Any]:
    found = store.get_member_item(member_id)
    assert found is not None
    return found


def memberships(store: InMemorySegmentStore, member_id: str = "m_1") -> set[str]:
    return {m.segment_id for m in store.memberships_of(member_id)}


# ---- re-evaluation ---------------------------------------------------------------------------------------------


def test_a_purchase_moves_a_member_into_segments_and_out_of_others(store: Racing, service: SegmentationService) -> None:
    enroll(store)
    service.reevaluate(item(store))
    buy(store, "m_1", "620")

    applied = service.reevaluate(item(store), source="activity")

    assert applied.entered == ("lifecycle:new", "points:high-spenders")
    assert applied.left == ("lifecycle:potential",)
    assert memberships(store) == {"lifecycle:new", "points:high-spenders"}
    assert record.is_settled(item(store))
    assert [(e.event_type, e.segment_id) for e in store.segment_events("m_1")] == [
        ("SegmentEntered", "lifecycle:potential"),
        ("SegmentEntered", "lifecycle:new"),
        ("SegmentEntered", "points:high-spenders"),
        ("SegmentLeft", "lifecycle:potential"),
    ]
    assert {e.source for e in store.segment_events("m_1")[1:]} == {"activity"}


def test_a_reevaluation_that_loses_its_write_to_a_purchase_reads_again_and_writes_once(
    store: Racing, service: SegmentationService
) -> None:
    enroll(store)
    image = item(store)  # the member before the purchase
    store.before_write.append(lambda: buy(store, "m_1", "620"))

    applied = service.reevaluate(image)

    fresh = segments_of(features_of(item(store), NOW, SegmentationConfig()), None, SegmentationConfig(), None)
    assert store.writes == 2  # the first lost (StaleMember), the second was evaluated from the read
    assert set(applied.entered) == fresh == memberships(store)
    assert [e.segment_id for e in store.segment_events("m_1")] == sorted(fresh)  # each change announced once
    assert record.is_settled(item(store))


def test_a_reevaluation_that_loses_to_another_evaluator_at_the_same_revision_evaluates_again(
    store: Racing, service: SegmentationService
) -> None:
    enroll(store)
    image = item(store)
    store.before_write.append(lambda: store.apply(image, {"lifecycle:potential"}, NOW, "refresh:r1"))

    applied = service.reevaluate(image, later_changes_follow=True)  # same facts: not superseded

    assert applied.changes == 0  # the other evaluator already wrote what this one would have
    assert [e.source for e in store.segment_events("m_1")] == ["refresh:r1"]


def test_a_stream_image_the_member_has_moved_past_is_superseded_and_writes_nothing(
    store: Racing, service: SegmentationService
) -> None:
    enroll(store)
    image = item(store)
    store.before_write.append(lambda: buy(store, "m_1", "620"))

    with pytest.raises(SupersededImage) as superseded:
        service.reevaluate(image, later_changes_follow=True)

    assert (superseded.value.image_revision, superseded.value.current_revision) == (1, 2)
    assert isinstance(superseded.value, StaleMember) and superseded.value.member_id == "m_1"
    assert store.segment_events("m_1") == [] and store.writes == 1


def test_a_member_who_keeps_changing_is_given_up_after_the_last_evaluation(
    store: Racing, service: SegmentationService
) -> None:
    enroll(store)
    store.before_write.extend([lambda: buy(store, "m_1", "5")] * MAX_REEVALUATIONS)

    with pytest.raises(StaleMember) as stale:
        service.reevaluate(item(store))

    assert type(stale.value) is StaleMember
    assert store.writes == MAX_REEVALUATIONS and store.segment_events("m_1") == []


def test_a_member_erased_while_evaluated_is_left_alone(store: Racing, service: SegmentationService) -> None:
    enroll(store)
    image = item(store)
    store.before_write.append(lambda: store.erase_member("m_1"))

    assert service.reevaluate(image) == AppliedChange("m_1", (), ())
    assert store.segment_events("m_1") == []


def test_published_cut_points_score_members_from_then_on(store: Racing, service: SegmentationService) -> None:
    enroll(store)
    buy(store, "m_1", "30")
    service.reevaluate(item(store))
    assert not any(s.startswith("rfm:") for s in memberships(store))

    service.publish_cut_points(PublishedCutPoints("run-1", timestamp(NOW), _cut_points(), MODEL))
    buy(store, "m_1", "30")
    service.reevaluate(item(store))

    assert any(s.startswith("rfm:") for s in memberships(store))


def _cut_points() -> Any:
    from loyalty.segments.rfm import RfmCutPoints, money_bucket

    return RfmCutPoints(r=(1, 2, 3, 4), f=(2, 4, 8, 16), m=tuple(money_bucket(Decimal(a)) for a in (10, 20, 40, 80)))


# ---- the segmentation document ----------------------------------------------------------------------------------


def test_the_document_is_replaced_over_the_version_read_and_never_over_a_colleagues(
    service: SegmentationService,
) -> None:
    replaced = service.replace_document({"rfm_window_months": 6}, if_version=1)

    assert replaced.version == 2 and service.document() == replaced
    with pytest.raises(ConfigVersionConflict) as conflict:
        service.replace_document({"rfm_window_months": 9}, if_version=1)
    assert conflict.value.status == 409
    assert conflict.value.details == {"version": 2}
    assert service.document().rfm_window_months == 6


def test_an_invalid_document_is_refused_with_every_reason_and_nothing_is_stored(service: SegmentationService) -> None:
    with pytest.raises(InvalidRequest) as refused:
        service.replace_document({"rfm_window_months": 0, "kpis": {"period_months": 13}, "colour": "red"}, 1)

    problems = refused.value.details["errors"]
    assert {p["field"] for p in problems} == {"rfm_window_months", "kpis.period_months", "colour"}
    assert all(p["reason"] for p in problems)
    assert refused.value.field == problems[0]["field"]
    assert service.document() == SegmentationConfig()


def test_a_rule_segment_is_created_then_replaced_then_deleted(store: Racing, service: SegmentationService) -> None:
    stored, created = service.put_rule_segment(WIN_BACK_FR)
    assert created and stored.version == 1 and service.document().version == 2

    replaced, created = service.put_rule_segment({**WIN_BACK_FR, "name": "Win back (FR)"})
    assert not created and replaced.version == 2
    assert [d.name for d in service.document().rule_segments] == ["Win back (FR)"]
    assert service.segment("rule:win-back-fr", 5)["definition"]["name"] == "Win back (FR)"

    service.delete_rule_segment("win-back-fr")
    assert service.document().rule_segments == () and service.document().version == 4
    with pytest.raises(SegmentNotFound):
        service.delete_rule_segment("win-back-fr")
    with pytest.raises(SegmentNotFound):
        service.segment("rule:win-back-fr", 5)


def test_a_rule_segment_applies_to_the_next_reevaluation(store: Racing, service: SegmentationService) -> None:
    enroll(store, "m_fr", country="FR")
    enroll(store, "m_de", country="DE")
    service.config.get()  # cached before the change
    service.put_rule_segment(WIN_BACK_FR)
    buy(store, "m_fr", "20")
    buy(store, "m_de", "20")

    service.reevaluate(item(store, "m_fr"))
    service.reevaluate(item(store, "m_de"))

    assert "rule:win-back-fr" in memberships(store, "m_fr")
    assert "rule:win-back-fr" not in memberships(store, "m_de")


def test_an_invalid_rule_segment_is_refused_naming_its_problems(service: SegmentationService) -> None:
    with pytest.raises(InvalidRule) as refused:
        service.put_rule_segment({**WIN_BACK_FR, "rule": {"field": "shoe_size", "op": "=", "value": 42}})

    assert refused.value.status == 422
    assert service.document().version == 1


def test_a_rule_segment_put_while_a_colleague_changes_the_document_keeps_both_changes(
    store: Racing, service: SegmentationService
) -> None:
    colleague = {**WIN_BACK_FR, "segment_id": "vip-de", "name": "VIP, Germany"}
    original = store.put_config
    raced: list[int] = []

    def racing_put(config: SegmentationConfig, *, replaces: int | None) -> None:
        if not raced:  # the colleague's change lands between the read and this write
            raced.append(replaces or 1)
            SegmentationService(store).put_rule_segment(colleague)  # type: ignore[arg-type]
        original(config, replaces=replaces)

    store.put_config = racing_put  # type: ignore[method-assign]

    service.put_rule_segment(WIN_BACK_FR)

    assert sorted(d.segment_id for d in service.document().rule_segments) == ["vip-de", "win-back-fr"]
    assert service.document().version == 3


# ---- memberships, sizes and KPIs ---------------------------------------------------------------------------------


def test_a_members_segments_are_listed_in_order_and_a_stranger_is_not_found(
    store: Racing, service: SegmentationService
) -> None:
    enroll(store)
    buy(store, "m_1", "620")
    service.reevaluate(item(store))
    enroll(store, "m_2")

    assert [m.segment_id for m in service.segments_of_member("m_1")] == ["lifecycle:new", "points:high-spenders"]
    assert service.segments_of_member("m_2") == []  # enrolled, not evaluated yet
    with pytest.raises(MemberNotFound):
        service.segments_of_member("m_nobody")


def test_a_segments_members_are_paged_and_an_unknown_segment_is_not_found(
    store: Racing, service: SegmentationService
) -> None:
    for n in range(5):
        service.reevaluate(item(store, enroll(store, f"m_{n}")))

    listed, cursor = service.segment_members("lifecycle:potential", 2, None)
    while cursor is not None:
        page, cursor = service.segment_members("lifecycle:potential", 2, cursor)
        listed.extend(page)

    assert sorted(m.member_id for m in listed) == [f"m_{n}" for n in range(5)]
    with pytest.raises(SegmentNotFound):
        service.segment_members("rule:nothing-like-it", 2, None)


def test_sizes_and_kpis_are_those_of_the_last_refresh(store: Racing, service: SegmentationService) -> None:
    assert service.analytics()["run_id"] is None
    store.put_segment_sizes("r1", NOW - timedelta(days=1), {"lifecycle:new": {"size": 3}})
    store.put_segment_sizes("r2", NOW, {"lifecycle:new": {"size": 5}})
    kpis = {"all": {"members": 8}, "tier:Insider": {"members": 8}, "segment:lifecycle:new": {"members": 5}}
    store.put_latest(
        {"run_id": "r2", "as_of": NOW, "sizes": json.dumps({"lifecycle:new": 5}), "kpis": json.dumps(kpis)}
    )

    catalog = {entry["segment_id"]: entry for entry in service.catalog()}
    detail = service.segment("lifecycle:new", 5)
    analytics = service.analytics()

    assert catalog["lifecycle:new"]["size"] == 5 and catalog["lifecycle:potential"]["size"] == 0
    assert catalog["lifecycle:new"]["kpis"] == {"members": 5} and catalog["lifecycle:new"]["run_id"] == "r2"
    assert [(h["run_id"], h["size"]) for h in detail["history"]] == [("r2", 5), ("r1", 3)] and detail["size"] == 5
    assert analytics["overall"] == {"members": 8} and analytics["tiers"] == {"Insider": {"members": 8}}
    assert analytics["segments"] == {"lifecycle:new": {"members": 5}}


# ---- predictions --------------------------------------------------------------------------------------------------


def test_a_members_predictions_come_from_their_item_and_the_published_model(
    store: Racing, service: SegmentationService
) -> None:
    enroll(store)
    buy(store, "m_1", "40", days_ago=70)
    buy(store, "m_1", "40", days_ago=40)
    buy(store, "m_1", "40", days_ago=10)

    rhythm_only = service.member_prediction("m_1")
    service.publish_cut_points(PublishedCutPoints("run-1", timestamp(NOW), None, MODEL))
    modelled = service.member_prediction("m_1")

    assert rhythm_only.probability_alive is None and rhythm_only.expected_next_purchase is not None
    assert rhythm_only.expected_next_purchase == (NOW - timedelta(days=10)).date() + timedelta(days=30)
    assert modelled.probability_alive is not None and 0 < modelled.probability_alive <= 1
    assert modelled.expected_purchases_90d is not None and modelled.expected_purchases_90d > 0
    with pytest.raises(MemberNotFound):
        service.member_prediction("m_nobody")
