"""The refresh's numpy RFM and the API's pure-Python RFM agree on every member, boundaries and ties included."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loyalty.segments.features import ConsentFlags, MemberFeatures
from loyalty.segments.rfm import RfmCutPoints, RfmSegmentMap, money_bucket, money_bucket_boundaries, score, summarize
from loyalty_analytics import rfm as vectorised

BOUNDARIES = money_bucket_boundaries()


def member(recency_days: int | None, frequency: int, monetary: Decimal) -> MemberFeatures:
    return MemberFeatures(
        member_id="m",
        recency_days=recency_days,
        frequency=frequency,
        monetary=monetary,
        purchases_6m=0,
        purchases_12m=0,
        spend_6m=Decimal(0),
        spend_12m=Decimal(0),
        points_6m=0,
        points_12m=0,
        active_months_6m=0,
        purchase_count=frequency,
        days_since_enrolled=0,
        days_since_first_purchase=recency_days,
        tier="Insider",
        country=None,
        age=None,
        consent=ConsentFlags(),
        available_points=0,
        lifetime_points=0,
    )


@st.composite
def populations(draw: Any) -> list[tuple[int | None, int, Decimal]]:
    """Small value ranges make heavy ties; sizes run from 0 to well past 5; zeros and never-purchased included."""
    spread = draw(st.sampled_from([1, 3, 30, 1000]))
    money = st.one_of(
        st.just(Decimal(0)),
        st.decimals(min_value=0, max_value=spread * 10, places=2),
        st.sampled_from([Decimal(f"{b:.17g}") for b in BOUNDARIES[:5]]),
    )
    row = st.tuples(st.one_of(st.none(), st.integers(0, spread)), st.integers(0, spread), money)
    return draw(st.lists(row, max_size=draw(st.sampled_from([4, 12, 80]))))


def arrays(rows: list[tuple[int | None, int, Decimal]]) -> tuple[Any, Any, Any]:
    recency = np.array([vectorised.NEVER_PURCHASED if r is None else r for r, _, _ in rows], dtype=np.int32)
    frequency = np.array([f for _, f, _ in rows], dtype=np.int32)
    money = np.array([float(m) for _, _, m in rows], dtype=np.float64)
    return recency, frequency, money


@given(populations())
@settings(max_examples=200, database=None, deadline=None)
def test_numpy_and_pure_python_build_the_same_summary_and_give_every_member_the_same_scores(
    rows: list[tuple[int | None, int, Decimal]],
) -> None:
    # Given one population as member features (the API's view) and as arrays (the refresh's view)
    members = [member(r, f if r is not None else 0, m) for r, f, m in rows]
    recency, frequency, money = arrays([(r, f if r is not None else 0, m) for r, f, m in rows])

    # When each side summarises and scores
    buckets = vectorised.money_buckets(money)
    summary = vectorised.summarize(recency, frequency, buckets)
    pure_summary = summarize(members)

    # Then the summaries, the cut points and every member's scores are identical
    assert summary == pure_summary
    cuts = summary.cut_points()
    assert cuts == pure_summary.cut_points()
    if cuts is None:
        assert all(r is None for r, _, _ in rows)
        return
    scores = vectorised.score(recency, frequency, buckets, cuts)
    for i, features in enumerate(members):
        expected = score(features, cuts)
        got = (int(scores.r[i]), int(scores.f[i]), int(scores.m[i]))
        assert got == ((0, 0, 0) if expected is None else (expected.r, expected.f, expected.m))
        if expected is not None:
            assert int(scores.fm[i]) == expected.fm


@given(populations(), populations(), st.integers(1, 4))
@settings(max_examples=80, database=None, deadline=None)
def test_scoring_against_another_populations_cut_points_agrees_too(
    seen: list[tuple[int | None, int, Decimal]], new: list[tuple[int | None, int, Decimal]], parts: int
) -> None:
    # Given cut points from a refresh merged from several workers' summaries
    recency, frequency, money = arrays(seen)
    pieces = np.array_split(np.arange(len(seen)), parts)
    cuts = vectorised.merge(
        vectorised.summarize(recency[p], frequency[p], vectorised.money_buckets(money[p])) for p in pieces
    ).cut_points()
    if cuts is None:
        return
    # When members who arrived since are scored both ways
    recency, frequency, money = arrays(new)
    scores = vectorised.score(recency, frequency, vectorised.money_buckets(money), cuts)

    # Then both ways agree
    for i, (r, f, m) in enumerate(new):
        expected = score(member(r, f, m), cuts)
        assert (int(scores.r[i]), int(scores.f[i]), int(scores.m[i])) == (
            (0, 0, 0) if expected is None else (expected.r, expected.f, expected.m)
        )


def test_money_buckets_agree_on_every_boundary_and_its_neighbours() -> None:
    amounts = [0.0, -1.0, 0.005, 1e300, *BOUNDARIES]
    amounts += [math.nextafter(b, 0) for b in BOUNDARIES]
    amounts += [math.nextafter(b, math.inf) for b in BOUNDARIES]

    got = vectorised.money_buckets(np.array(amounts)).tolist()

    assert got == [money_bucket(a) for a in amounts]


@given(st.lists(st.floats(min_value=-10, max_value=1e17, allow_nan=False), max_size=50))
@settings(max_examples=200, database=None)
def test_money_buckets_agree_on_random_amounts(amounts: list[float]) -> None:
    assert vectorised.money_buckets(np.array(amounts, dtype=np.float64)).tolist() == [money_bucket(a) for a in amounts]


def test_segment_codes_follow_the_map_and_mark_the_unscored() -> None:
    scores = vectorised.RfmScores(
        r=np.array([5, 1, 0], dtype=np.int8), f=np.array([5, 1, 0], dtype=np.int8), m=np.array([4, 2, 0], dtype=np.int8)
    )

    codes, ids = vectorised.segment_codes(scores, RfmSegmentMap())

    assert [ids[c] if c >= 0 else None for c in codes.tolist()] == ["champions", "lost", None]


def test_a_summary_crosses_the_wire_between_numpy_workers_unchanged() -> None:
    recency = np.array([1, 1, 5, -1, 40], dtype=np.int32)
    frequency = np.array([2, 2, 1, 0, 9], dtype=np.int32)
    buckets = vectorised.money_buckets(np.array([10.0, 10.0, 3.5, 0.0, 900.0]))
    summary = vectorised.summarize(recency, frequency, buckets)

    received = type(summary).from_json(summary.to_json())

    assert received == summary
    # N = 4 purchasers: targets 1, 2, 3, 4, so each cut point is one member's value
    assert received.cut_points() == RfmCutPoints(r=(1, 1, 5, 40), f=(1, 2, 2, 9), m=(588, 694, 694, 1146))
    assert [money_bucket(a) for a in (3.5, 10.0, 900.0)] == [588, 694, 1146]
