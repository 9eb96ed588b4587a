"""The segmentation document: every threshold and definition marketers can change without a deploy, versioned."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from loyalty.segments.points import LifecycleConfig, PointsSegmentConfig
from loyalty.segments.rfm import RfmSegmentMap

MONTHS_KEPT = 24  # the member item's monthly aggregates cover this many months (docs/data-model.md)


class SegmentationConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int = Field(default=1, ge=1)
    rfm_window_months: int = Field(
        default=12, ge=1, le=MONTHS_KEPT, description="Months (the as-of month included) that F and M cover."
    )
    rfm_map: RfmSegmentMap = Field(default_factory=RfmSegmentMap)
    points: PointsSegmentConfig = Field(default_factory=PointsSegmentConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
