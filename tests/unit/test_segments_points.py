"""Points segments at their thresholds, and lifecycle stages: exactly one per member."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loyalty.segments.features import ConsentFlags, MemberFeatures
from loyalty.segments.points import (
    LifecycleConfig,
    LifecycleStage,
    PointsSegment,
    PointsSegmentConfig,
    lifecycle_stage,
    points_segments,
)

POINTS = PointsSegmentConfig()
LIFECYCLE = LifecycleConfig()
HIGH, FREQUENT, OCCASIONAL, DORMANT = (
    PointsSegment.HIGH_SPENDERS,
    PointsSegment.FREQUENT_BUYERS,
    PointsSegment.OCCASIONAL_SHOPPERS,
    PointsSegment.DORMANT,
)


def member(**fields: Any) -> MemberFeatures:
    """A member who bought once, 30 days ago, 40 days after enrolling; fields override."""
    values: dict[str, Any] = {
        "member_id": "m",
        "recency_days": 30,
        "frequency": 1,
        "monetary": Decimal(20),
        "purchases_6m": 1,
        "purchases_12m": 1,
        "spend_6m": Decimal(20),
        "spend_12m": Decimal(20),
        "points_6m": 20,
        "points_12m": 20,
        "active_months_6m": 1,
        "purchase_count": 1,
        "days_since_enrolled": 400,
        "days_since_first_purchase": 300,
        "tier": "Insider",
        "country": None,
        "age": None,
        "consent": ConsentFlags(),
        "available_points": 20,
        "lifetime_points": 20,
    }
    values.update(fields)
    if values["recency_days"] is None:
        values.update(days_since_first_purchase=None, purchases_6m=0, purchases_12m=0, frequency=0, purchase_count=0)
    return MemberFeatures(**values)


# ---- points segments ------------------------------------------------------------------------------------------


def test_high_spenders_earned_more_than_500_points_in_six_months() -> None:
    assert HIGH not in points_segments(member(points_6m=500, points_12m=500), POINTS)
    assert HIGH in points_segments(member(points_6m=501, points_12m=501), POINTS)


def test_frequent_buyers_purchased_in_at_least_four_of_the_last_six_months_whatever_the_amount() -> None:
    assert FREQUENT not in points_segments(member(active_months_6m=3, purchases_6m=30, points_6m=3000), POINTS)
    assert FREQUENT in points_segments(member(active_months_6m=4, purchases_6m=4, points_6m=4), POINTS)


@pytest.mark.parametrize(("points_12m", "occasional"), [(49, False), (50, True), (500, True), (501, False)])
def test_occasional_shoppers_have_moderate_points_inclusive(points_12m: int, occasional: bool) -> None:
    found = points_segments(member(points_6m=min(points_12m, 400), points_12m=points_12m), POINTS)

    assert (OCCASIONAL in found) is occasional


def test_occasional_shoppers_bought_this_year_and_are_not_frequent() -> None:
    assert OCCASIONAL not in points_segments(member(points_12m=100, purchases_12m=0, recency_days=400), POINTS)
    assert OCCASIONAL not in points_segments(member(points_12m=100, active_months_6m=5, purchases_6m=5), POINTS)
    assert OCCASIONAL in points_segments(member(points_12m=100, active_months_6m=3, purchases_6m=3), POINTS)


@pytest.mark.parametrize(
    ("fields", "dormant"),
    [
        ({"recency_days": None, "days_since_enrolled": 90}, False),  # never bought, enrolled 90 days: not yet
        ({"recency_days": None, "days_since_enrolled": 91}, True),
        ({"recency_days": 180, "points_12m": 400}, False),
        ({"recency_days": 181, "points_12m": 400}, True),  # no purchase in the last 180 days
        ({"recency_days": 91, "points_12m": 49}, True),  # low accumulation and quiet for 90 days
        ({"recency_days": 90, "points_12m": 49}, False),
        ({"recency_days": 91, "points_12m": 50}, False),
    ],
)
def test_dormant_is_no_recent_purchase_or_low_accumulation(fields: dict[str, Any], dormant: bool) -> None:
    assert (DORMANT in points_segments(member(**fields), POINTS)) is dormant


def test_a_member_may_be_in_several_points_segments() -> None:
    # Bought every month, big basket: high spender and frequent buyer at once
    regular = member(points_6m=900, points_12m=1500, active_months_6m=6, purchases_6m=6, recency_days=3)
    # One big purchase 181 days ago, still inside six calendar months: high spender and dormant
    lapsed = member(points_6m=800, points_12m=800, recency_days=181)

    assert points_segments(regular, POINTS) == {HIGH, FREQUENT}
    assert points_segments(lapsed, POINTS) == {HIGH, DORMANT}


def test_thresholds_are_configuration() -> None:
    config = PointsSegmentConfig(high_spenders_points_6m_above=100, frequent_buyers_min_active_months_6m=2)

    found = points_segments(member(points_6m=101, active_months_6m=2, purchases_6m=2), config)

    assert {HIGH, FREQUENT} <= found


def test_an_inverted_occasional_band_is_refused() -> None:
    with pytest.raises(ValidationError, match="occasional_min_points_12m is above"):
        PointsSegmentConfig(occasional_min_points_12m=600)


# ---- lifecycle ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "stage"),
    [
        ({"recency_days": None}, LifecycleStage.POTENTIAL),
        ({"recency_days": 5, "days_since_first_purchase": 60}, LifecycleStage.NEW),
        ({"recency_days": 5, "days_since_first_purchase": 61}, LifecycleStage.OCCASIONAL),
        ({"active_months_6m": 4, "purchases_6m": 4, "purchases_12m": 4, "recency_days": 90}, LifecycleStage.LOYAL),
        ({"active_months_6m": 4, "purchases_6m": 4, "purchases_12m": 4, "recency_days": 91}, LifecycleStage.OCCASIONAL),
        ({"purchases_12m": 6, "recency_days": 20}, LifecycleStage.LOYAL),
        ({"purchases_12m": 5, "recency_days": 20}, LifecycleStage.OCCASIONAL),
        ({"recency_days": 180}, LifecycleStage.OCCASIONAL),
        ({"recency_days": 181}, LifecycleStage.CHURNING),
        ({"recency_days": 181, "purchases_12m": 12, "active_months_6m": 1}, LifecycleStage.CHURNING),
    ],
)
def test_lifecycle_stage_at_its_thresholds(fields: dict[str, Any], stage: LifecycleStage) -> None:
    assert lifecycle_stage(member(**fields), LIFECYCLE) is stage


def test_new_takes_precedence_over_loyal_for_a_burst_of_first_purchases() -> None:
    burst = member(days_since_first_purchase=20, recency_days=1, purchases_12m=8, active_months_6m=1)

    assert lifecycle_stage(burst, LIFECYCLE) is LifecycleStage.NEW


@st.composite
def any_member(draw: Any) -> MemberFeatures:
    purchased = draw(st.booleans())
    recency = draw(st.integers(0, 800)) if purchased else None
    first = None if recency is None else recency + draw(st.integers(0, 800))
    return member(
        recency_days=recency,
        days_since_first_purchase=first,
        days_since_enrolled=(first or 0) + draw(st.integers(0, 800)),
        active_months_6m=draw(st.integers(0, 6)) if purchased else 0,
        purchases_12m=draw(st.integers(0, 30)) if purchased else 0,
        points_6m=draw(st.integers(0, 2000)),
        points_12m=draw(st.integers(0, 3000)),
    )


configs = st.builds(
    LifecycleConfig,
    new_first_purchase_within_days=st.integers(0, 400),
    loyal_min_active_months_6m=st.integers(1, 6),
    loyal_min_purchases_12m=st.integers(1, 20),
    loyal_max_recency_days=st.integers(0, 400),
    churning_recency_days_above=st.integers(0, 400),
)


@given(any_member(), configs)
@settings(max_examples=500, database=None, deadline=None)
def test_every_member_is_in_exactly_the_first_stage_whose_definition_holds(
    features: MemberFeatures, config: LifecycleConfig
) -> None:
    recency, first = features.recency_days, features.days_since_first_purchase
    definitions = {
        LifecycleStage.POTENTIAL: recency is None,
        LifecycleStage.NEW: first is not None and first <= config.new_first_purchase_within_days,
        LifecycleStage.LOYAL: recency is not None
        and recency <= config.loyal_max_recency_days
        and (
            features.active_months_6m >= config.loyal_min_active_months_6m
            or features.purchases_12m >= config.loyal_min_purchases_12m
        ),
        LifecycleStage.CHURNING: recency is not None and recency > config.churning_recency_days_above,
        LifecycleStage.OCCASIONAL: True,
    }
    expected = next(stage for stage, holds in definitions.items() if holds)

    stage = lifecycle_stage(features, config)

    assert stage is expected
    assert isinstance(stage, LifecycleStage) and list(definitions) == list(LifecycleStage)
