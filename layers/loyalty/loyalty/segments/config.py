"""The segmentation document: every threshold and definition marketers can change without a deploy, versioned."""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.points.member_record import MONTHS_KEPT
from loyalty.segments.kpis import KpiConfig
from loyalty.segments.points import LifecycleConfig, PointsSegmentConfig
from loyalty.segments.prediction import PredictionConfig
from loyalty.segments.rfm import RfmSegmentMap
from loyalty.segments.rules import SegmentDefinition

MAX_RULE_SEGMENTS = 200


class SegmentationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(default=1, ge=1)
    rfm_window_months: int = Field(
        default=12, ge=1, le=MONTHS_KEPT, description="Months (the as-of month included) that F and M cover."
    )
    rfm_map: RfmSegmentMap = Field(default_factory=RfmSegmentMap)
    points: PointsSegmentConfig = Field(default_factory=PointsSegmentConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    kpis: KpiConfig = Field(default_factory=KpiConfig)
    prediction: PredictionConfig = Field(default_factory=PredictionConfig)
    rule_segments: tuple[SegmentDefinition, ...] = Field(default=(), max_length=MAX_RULE_SEGMENTS)

    @model_validator(mode="after")
    def _rule_segment_ids_unique(self) -> Self:
        ids = [definition.segment_id for definition in self.rule_segments]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"rule segment ids repeat: {', '.join(repeated)}")
        return self
