"""Segmentation's pure core: member features from one item, RFM, points and lifecycle segments, marketer rules, and
predictions for one member (BG/NBD parameters fitted by the refresh, applied in pure Python).

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
from loyalty.segments.prediction import (
    MemberPrediction,
    PredictionConfig,
    PredictionModel,
    member_prediction,
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
    "MemberPrediction",
    "PointsSegment",
    "PointsSegmentConfig",
    "PredictionConfig",
    "PredictionModel",
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
    "member_prediction",
    "money_bucket",
    "parse_rule",
    "points_segments",
    "score",
    "segment_catalog",
    "segments_given_rfm",
    "segments_of",
    "summarize",
]
