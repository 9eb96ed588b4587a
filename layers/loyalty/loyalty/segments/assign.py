"""A member's segments, as stable ids, and what changed between two assignments (SegmentEntered / SegmentLeft).

rfm:<segment>            one, when the member has purchased and cut points exist (e.g. rfm:champions)
points:<segment>         zero or more (points:high-spenders, points:frequent-buyers, ...)
lifecycle:<stage>        exactly one (lifecycle:loyal)
rule:<segment_id>        every marketer-defined segment whose rule holds
prediction:churn-risk    when a prediction model is given: >= 2 purchases and P(alive) below the threshold

A member who has not consented to profiling is in none of these but the rule segments that read no behaviour
(loyalty.segments.rules.reads_behaviour): docs/segments.md, "Profiling consent".
"""

from __future__ import annotations

from collections.abc import Iterable

from loyalty.segments import ids
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import MemberFeatures
from loyalty.segments.points import LifecycleStage, PointsSegment, lifecycle_stage, points_segments
from loyalty.segments.prediction import PredictionModel, is_churn_risk
from loyalty.segments.rfm import RfmCutPoints, score
from loyalty.segments.rules import evaluate


def segments_of(
    features: MemberFeatures,
    rfm_cut_points: RfmCutPoints | None,
    config: SegmentationConfig,
    model: PredictionModel | None = None,
) -> set[str]:
    """Every segment the member belongs to. `rfm_cut_points` are the last refresh's (None: no RFM segment yet);
    `model` is the last refresh's prediction model (None: no prediction segment)."""
    rfm_segment = None
    if rfm_cut_points is not None and is_profiled(features):
        rfm = score(features, rfm_cut_points)
        if rfm is not None:
            rfm_segment = config.rfm_map.segment_for(rfm).segment_id
    return segments_given_rfm(features, rfm_segment, config, model)


def segments_given_rfm(
    features: MemberFeatures,
    rfm_segment: str | None,
    config: SegmentationConfig,
    model: PredictionModel | None = None,
) -> set[str]:
    """`segments_of` for a member whose RFM segment (an id of `config.rfm_map`, or None) is already known: the
    refresh scores a page of members at once with loyalty_analytics.rfm, then assigns the rest here."""
    if not is_profiled(features):
        return without_profiling(features, config)
    found = {ids.segment_id(ids.POINTS, segment) for segment in points_segments(features, config.points)}
    found.add(ids.segment_id(ids.LIFECYCLE, lifecycle_stage(features, config.lifecycle)))
    if rfm_segment is not None:
        found.add(ids.segment_id(ids.RFM, rfm_segment))
    for definition in config.rule_segments:
        if evaluate(definition.rule, features):
            found.add(ids.segment_id(ids.RULE, definition.segment_id))
    if is_churn_risk(features, model, config.prediction):
        found.add(ids.segment_id(ids.PREDICTION, ids.CHURN_RISK))
    return found


def is_profiled(features: MemberFeatures) -> bool:
    """True if the member consented to profiling: only then are they scored, staged, predicted and in behavioural
    rule segments. Absent consent is no consent."""
    return features.consent.profiling


def without_profiling(features: MemberFeatures, config: SegmentationConfig) -> set[str]:
    """The segments of a member who has not consented to profiling: the rule segments that read only what they
    declared and where they stand in the program (country, age, consents, tier, ...), whose rule holds."""
    return {
        ids.segment_id(ids.RULE, definition.segment_id)
        for definition in config.rule_segments
        if not definition.behavioural and evaluate(definition.rule, features)
    }


def diff(before: Iterable[str], after: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(entered, left), each sorted, so the events a change emits come out in a stable order."""
    old, new = set(before), set(after)
    return tuple(sorted(new - old)), tuple(sorted(old - new))


def segment_catalog(config: SegmentationConfig) -> tuple[str, ...]:
    """Every id this configuration can assign, so a segment that is empty still reports a size of 0."""
    return (
        *(ids.segment_id(ids.RFM, segment.segment_id) for segment in config.rfm_map.segments),
        *(ids.segment_id(ids.POINTS, segment) for segment in PointsSegment),
        *(ids.segment_id(ids.LIFECYCLE, stage) for stage in LifecycleStage),
        *(ids.segment_id(ids.RULE, definition.segment_id) for definition in config.rule_segments),
        ids.segment_id(ids.PREDICTION, ids.CHURN_RISK),
    )
