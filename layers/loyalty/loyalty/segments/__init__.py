"""Segmentation's pure core: member features from one item, RFM, points and lifecycle segments, marketer rules.

Pure Python and pydantic (this package ships in the API layer). The refresh's vectorised twin of the RFM scoring
lives in loyalty_analytics.rfm. Definitions and policies: docs/segments.md.
"""

from loyalty.segments.assign import diff, segment_catalog, segments_given_rfm, segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import ConsentFlags, MemberFeatures, features_of
from loyalty.segments.points import (
    LifecycleConfig,
    LifecycleStage,
    PointsSegment,
    PointsSegmentConfig,
    lifecycle_stage,
    points_segments,
)
from loyalty.segments.rfm import (
    RfmCutPoints,
    RfmScore,
    RfmSegment,
    RfmSegmentMap,
    RfmSummary,
    money_bucket,
    score,
    summarize,
)
from loyalty.segments.rules import InvalidRule, SegmentDefinition, evaluate, parse_rule

__all__ = [
    "ConsentFlags",
    "InvalidRule",
    "LifecycleConfig",
    "LifecycleStage",
    "MemberFeatures",
    "PointsSegment",
    "PointsSegmentConfig",
    "RfmCutPoints",
    "RfmScore",
    "RfmSegment",
    "RfmSegmentMap",
    "RfmSummary",
    "SegmentDefinition",
    "SegmentationConfig",
    "diff",
    "evaluate",
    "features_of",
    "lifecycle_stage",
    "money_bucket",
    "parse_rule",
    "points_segments",
    "score",
    "segment_catalog",
    "segments_given_rfm",
    "segments_of",
    "summarize",
]
