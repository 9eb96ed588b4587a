"""Segmentation's pure core: member features from one item, RFM, points and lifecycle segments, marketer rules.

Pure Python and pydantic (this package ships in the API layer). The refresh's vectorised twin of the RFM scoring
lives in loyalty_analytics.rfm. Definitions and policies: docs/segments.md.
"""

from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import ConsentFlags, MemberFeatures, features_of
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

__all__ = [
    "ConsentFlags",
    "MemberFeatures",
    "RfmCutPoints",
    "RfmScore",
    "RfmSegment",
    "RfmSegmentMap",
    "RfmSummary",
    "SegmentationConfig",
    "features_of",
    "money_bucket",
    "score",
    "summarize",
]
