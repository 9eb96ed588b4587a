"""Profiling consent (docs/segments.md, "Profiling consent"): a member who has not consented to profiling is in no
behavioural segment (rfm, points, lifecycle, prediction, and the rule segments that read behaviour) and gets no
prediction; the rule segments that read only what they declared and where they stand in the program still apply.
Absent consent is no consent. Withdrawing it moves the member's revision, so the stream re-evaluates them and their
behavioural memberships go, each with its SegmentLeft."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from loyalty.adapters.memory.segment_store import InMemorySegmentStore
from loyalty.core.errors import ConsentRequired
from loyalty.core.instants import timestamp
from loyalty.points import member_record as record
from loyalty.points.members import Consent, Member, Profile
from loyalty.segments.assign import is_profiled, segments_of, without_profiling
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.ports import PublishedCutPoints
from loyalty.segments.prediction import BgNbdParameters, PredictionModel
from loyalty.segments.refresh import ScanState
from loyalty.segments.rfm import RfmCutPoints, RfmSummary, money_bucket
from loyalty.segments.rules import (
    DECLARED_FIELDS,
    RULE_FIELDS,
    SegmentDefinition,
    is_behavioural,
    parse_rule,
    reads_behaviour,
)
from loyalty.segments.service import SegmentationService

AS_OF = datetime(2026, 3, 10, tzinfo=UTC)
CUTS = RfmCutPoints(
    r=(14, 30, 90, 200),
    f=(0, 1, 1, 2),
    m=(money_bucket(20), money_bucket(50), money_bucket(90), money_bucket(150)),
)
MODEL = PredictionModel(
    run_id="run-1",
    as_of="2026-03-10T00:00:00Z",
    bgnbd=BgNbdParameters(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426),
    sample_members=2357,
    sample_repeaters=946,
    sample_rate_log2=0,
    log_likelihood=-9582.4,
)


def rule_segment(segment_id: str, rule: dict[str, Any]) -> SegmentDefinition:
    return SegmentDefinition.parse({"segment_id": segment_id, "name": segment_id, "rule": rule})


FRANCE = rule_segment("france", {"field": "country", "op": "=", "value": "FR"})
VIB_WITH_EMAIL = rule_segment(
    "vib-email",
    {"all": [{"field": "tier", "op": "=", "value": "VIB"}, {"field": "consent.email", "op": "=", "value": True}]},
)
WIN_BACK_FR = rule_segment(
    "win-back-fr",
    {"all": [{"field": "country", "op": "=", "value": "FR"}, {"field": "recency_days", "op": ">", "value": 0}]},
)
NOT_RECENT = rule_segment("not-recent", {"not": {"field": "recency_days", "op": "<=", "value": 5}})
CONFIG = SegmentationConfig(rule_segments=(FRANCE, VIB_WITH_EMAIL, WIN_BACK_FR, NOT_RECENT))


def member_item(consent: dict[str, bool], **fields: Any) -> dict[str, Any]:
    months = ["2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03"]
    item: dict[str, Any] = {
        "member_id": "m_1",
        "tier": "VIB",
        "enrolled_at": "2023-01-05T10:00:00.000000Z",
        "profile": {"country": "FR"},
        "consent": consent,
        "first_purchase_at": "2024-02-01T10:00:00Z",
        "last_purchase_at": "2026-02-05T10:00:00Z",
        "purchase_count": Decimal(20),
        "purchases_by_month": {m: Decimal(1) for m in months[:-1]},
        "spend_by_month": {m: Decimal("60.00") for m in months[:-1]},
        "points_by_month": {m: Decimal(120) for m in months[:-1]},
    }
    item.update(fields)
    return item


# ---- which rule fields read behaviour ------------------------------------------------------------------------------


def test_the_declared_fields_are_these_and_every_other_field_reads_behaviour() -> None:
    assert {
        "country",
        "age",
        "tier",
        "days_since_enrolled",
        "available_points",
        "consent.email",
        "consent.sms",
        "consent.push",
        "consent.whatsapp",
        "consent.profiling",
    } == DECLARED_FIELDS
    assert set(RULE_FIELDS) > DECLARED_FIELDS
    behavioural = {name for name in RULE_FIELDS if is_behavioural(name)}
    assert behavioural == set(RULE_FIELDS) - DECLARED_FIELDS
    assert {"recency_days", "monetary", "purchase_count", "lifetime_points", "top_category"} <= behavioural
    assert is_behavioural("category_spend.makeup") and is_behavioural("category_share.skin care")


@pytest.mark.parametrize(
    ("rule", "behavioural"),
    [
        ({"field": "country", "op": "=", "value": "FR"}, False),
        ({"field": "spend_12m", "op": ">=", "value": 100}, True),
        ({"all": [{"field": "tier", "op": "=", "value": "VIB"}, {"field": "age", "op": ">", "value": 30}]}, False),
        ({"any": [{"field": "tier", "op": "=", "value": "VIB"}, {"field": "points_6m", "op": ">", "value": 5}]}, True),
        ({"not": {"field": "recency_days", "op": "exists"}}, True),
        ({"not": {"all": [{"any": [{"field": "category_share.makeup", "op": ">", "value": 0.5}]}]}}, True),
        ({"all": []}, False),
    ],
    ids=["declared", "behaviour", "all-declared", "any-with-behaviour", "not-behaviour", "nested-category", "empty"],
)
def test_a_rule_reads_behaviour_when_any_of_its_conditions_does(rule: dict[str, Any], behavioural: bool) -> None:
    assert reads_behaviour(parse_rule(rule)) is behavioural
    assert rule_segment("s", rule).behavioural is behavioural


# ---- the segments of a member without profiling consent ----------------------------------------------------------


@pytest.mark.parametrize("consent", [{}, {"profiling": False}, {"email": True, "sms": True}], ids=str)
def test_without_profiling_consent_only_the_rule_segments_on_declared_fields_are_assigned(
    consent: dict[str, bool],
) -> None:
    item = member_item({"email": True, **consent})
    features = features_of(item, AS_OF, CONFIG)

    found = segments_of(features, CUTS, CONFIG, MODEL)

    assert not is_profiled(features)
    assert found == without_profiling(features, CONFIG) == {"rule:france", "rule:vib-email"}


def test_with_profiling_consent_the_same_member_is_in_every_segment_their_behaviour_earns() -> None:
    features = features_of(member_item({"email": True, "profiling": True}), AS_OF, CONFIG)

    found = segments_of(features, CUTS, CONFIG, MODEL)

    assert is_profiled(features)
    assert {"rule:france", "rule:vib-email", "rule:win-back-fr", "rule:not-recent"} <= found
    assert {s.split(":", 1)[0] for s in found} >= {"rfm", "points", "lifecycle", "rule"}


def test_a_member_without_profiling_consent_who_never_bought_is_not_even_a_potential_customer() -> None:
    item = member_item({}, purchase_count=Decimal(0), purchases_by_month={}, spend_by_month={}, points_by_month={})
    del item["first_purchase_at"], item["last_purchase_at"]
    features = features_of(item, AS_OF, SegmentationConfig())

    assert segments_of(features, CUTS, SegmentationConfig(), MODEL) == set()


# ---- re-evaluation: the consent change is a change of the member's facts ---------------------------------------


@pytest.fixture
def store() -> InMemorySegmentStore:
    store = InMemorySegmentStore()
    member = Member(
        member_id="m_1",
        external_id="ext-m_1",
        profile=Profile(country="FR"),
        consent=Consent(email=True, profiling=True),
        referral_code="AAAA-BBBB",
        tier="VIB",
        enrolled_at=AS_OF - timedelta(days=400),
    )
    store.put_member_item(record.new_member_item(member))
    purchases = [record.PastPurchase(AS_OF - timedelta(days=d), Decimal("60"), 600) for d in (100, 70, 40, 10)]
    store.record_purchases("m_1", purchases, AS_OF)
    return store


@pytest.fixture
def service(store: InMemorySegmentStore) -> SegmentationService:
    service = SegmentationService(store, clock=lambda: AS_OF)  # type: ignore[arg-type]  # no refresh runs here
    store.put_config(CONFIG, replaces=None)
    service.publish_cut_points(PublishedCutPoints("run-1", timestamp(AS_OF), CUTS, MODEL))
    return service


def memberships(store: InMemorySegmentStore) -> set[str]:
    return {m.segment_id for m in store.memberships_of("m_1")}


def current(store: InMemorySegmentStore) -> dict[str, Any]:
    item = store.get_member_item("m_1")
    assert item is not None
    return item


def test_withdrawing_profiling_consent_is_a_change_the_stream_reevaluates_and_it_leaves_behavioural_segments(
    store: InMemorySegmentStore, service: SegmentationService
) -> None:
    service.reevaluate(current(store))
    before = memberships(store)
    assert {"rfm", "points", "lifecycle"} <= {s.split(":", 1)[0] for s in before}
    assert record.is_settled(current(store))

    store.record_consent("m_1", "profiling", False)
    image = current(store)  # the stream record of the consent write: its new image
    assert not record.is_settled(image)  # so the re-evaluation function evaluates it, not skips it
    applied = service.reevaluate(image, later_changes_follow=True)

    assert memberships(store) == {"rule:france", "rule:vib-email"}
    assert set(applied.left) == before - {"rule:france", "rule:vib-email"} and applied.entered == ()
    left = [e.segment_id for e in store.segment_events("m_1") if e.event_type == "SegmentLeft"]
    assert sorted(left) == sorted(applied.left)  # each membership that went is announced once
    assert record.is_settled(current(store))


def test_granting_it_again_brings_the_behavioural_segments_back(
    store: InMemorySegmentStore, service: SegmentationService
) -> None:
    service.reevaluate(current(store))
    before = memberships(store)
    store.record_consent("m_1", "profiling", False)
    service.reevaluate(current(store))

    store.record_consent("m_1", "profiling", True)
    service.reevaluate(current(store))

    assert memberships(store) == before


def test_a_prediction_for_a_member_without_profiling_consent_is_refused_as_a_conflict(
    store: InMemorySegmentStore, service: SegmentationService
) -> None:
    assert service.member_prediction("m_1").probability_alive is not None
    store.record_consent("m_1", "profiling", False)

    with pytest.raises(ConsentRequired) as refused:
        service.member_prediction("m_1")

    assert refused.value.status == 409 and refused.value.body()["code"] == "consent_required"
    assert refused.value.body()["consent"] == "profiling"


# ---- the refresh's pass one --------------------------------------------------------------------------------------


def test_pass_one_counts_the_members_it_left_out_and_its_state_keeps_the_count() -> None:
    summary = RfmSummary(members_never_purchased=3)
    state = ScanState(summary, None, unprofiled=2).merge(ScanState(RfmSummary(), None, unprofiled=5))

    assert (state.unprofiled, state.members) == (7, 10)
    assert ScanState.from_json(state.to_json()) == state
    older = '{"rfm": ' + RfmSummary(members_never_purchased=1).to_json() + ', "sample": null}'
    assert ScanState.from_json(older).unprofiled == 0  # a part state written before consent was applied
