"""Points segments (thresholds as configuration) and lifecycle stages. Definitions: docs/segments.md.

Points segments overlap on purpose (a High Spender is often a Frequent Buyer too); a member is in exactly one
lifecycle stage, decided by a fixed precedence: potential, new, loyal, churning, occasional.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.segments.features import MemberFeatures


class PointsSegment(StrEnum):
    HIGH_SPENDERS = "high-spenders"
    FREQUENT_BUYERS = "frequent-buyers"
    OCCASIONAL_SHOPPERS = "occasional-shoppers"
    DORMANT = "dormant"


class LifecycleStage(StrEnum):
    POTENTIAL = "potential"
    NEW = "new"
    LOYAL = "loyal"
    CHURNING = "churning"
    OCCASIONAL = "occasional"


class PointsSegmentConfig(BaseModel):
    """Thresholds of the points segments. Strictness is in the names: `above` is >, `min`/`max` are inclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    high_spenders_points_6m_above: int = Field(default=500, ge=0)
    frequent_buyers_min_active_months_6m: int = Field(default=4, ge=1, le=6)
    occasional_min_points_12m: int = Field(default=50, ge=0)
    occasional_max_points_12m: int = Field(default=500, ge=0)
    dormant_never_purchased_enrolled_days_above: int = Field(default=90, ge=0, le=36_500)
    dormant_recency_days_above: int = Field(default=180, ge=0, le=36_500)
    dormant_low_points_12m_below: int = Field(default=50, ge=0)
    dormant_low_points_recency_days_above: int = Field(default=90, ge=0, le=36_500)

    @model_validator(mode="after")
    def _band_ascends(self) -> Self:
        if self.occasional_min_points_12m > self.occasional_max_points_12m:
            raise ValueError("occasional_min_points_12m is above occasional_max_points_12m")
        return self


class LifecycleConfig(BaseModel):
    """Thresholds of the lifecycle stages. `loyal_min_active_months_6m` defaults to the Frequent Buyers threshold
    but is its own setting: retuning a campaign segment should not silently move members between stages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    new_first_purchase_within_days: int = Field(default=60, ge=0, le=36_500)
    loyal_min_active_months_6m: int = Field(default=4, ge=1, le=6)
    loyal_min_purchases_12m: int = Field(default=6, ge=1)
    loyal_max_recency_days: int = Field(default=90, ge=0, le=36_500)
    churning_recency_days_above: int = Field(default=180, ge=0, le=36_500)


def is_frequent_buyer(features: MemberFeatures, config: PointsSegmentConfig) -> bool:
    return features.active_months_6m >= config.frequent_buyers_min_active_months_6m


def is_dormant(features: MemberFeatures, config: PointsSegmentConfig) -> bool:
    recency = features.recency_days
    if recency is None:
        return features.days_since_enrolled > config.dormant_never_purchased_enrolled_days_above
    return recency > config.dormant_recency_days_above or (
        features.points_12m < config.dormant_low_points_12m_below
        and recency > config.dormant_low_points_recency_days_above
    )


def points_segments(features: MemberFeatures, config: PointsSegmentConfig) -> frozenset[PointsSegment]:
    """Every points segment the member is in; none, one or several."""
    found: set[PointsSegment] = set()
    if features.points_6m > config.high_spenders_points_6m_above:
        found.add(PointsSegment.HIGH_SPENDERS)
    frequent = is_frequent_buyer(features, config)
    if frequent:
        found.add(PointsSegment.FREQUENT_BUYERS)
    if (
        features.purchases_12m > 0
        and not frequent
        and config.occasional_min_points_12m <= features.points_12m <= config.occasional_max_points_12m
    ):
        found.add(PointsSegment.OCCASIONAL_SHOPPERS)
    if is_dormant(features, config):
        found.add(PointsSegment.DORMANT)
    return frozenset(found)


def lifecycle_stage(features: MemberFeatures, config: LifecycleConfig) -> LifecycleStage:
    """Exactly one stage. Churning uses the recency threshold alone: the member's own purchase rhythm (recency
    beyond 3x their mean gap) belongs to the prediction segments, which need the purchase dates the item lacks."""
    recency = features.recency_days
    if recency is None:
        return LifecycleStage.POTENTIAL
    first = features.days_since_first_purchase
    if first is not None and first <= config.new_first_purchase_within_days:
        return LifecycleStage.NEW
    regular = (
        features.active_months_6m >= config.loyal_min_active_months_6m
        or features.purchases_12m >= config.loyal_min_purchases_12m
    )
    if regular and recency <= config.loyal_max_recency_days:
        return LifecycleStage.LOYAL
    if recency > config.churning_recency_days_above:
        return LifecycleStage.CHURNING
    return LifecycleStage.OCCASIONAL
