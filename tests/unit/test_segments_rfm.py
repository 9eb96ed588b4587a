"""RFM: quintile cut points from exact histograms, the tie policy, money buckets, mergeable summaries, the map."""

from __future__ import annotations

import itertools
import math
import random
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loyalty.segments.features import ConsentFlags, MemberFeatures
from loyalty.segments.rfm import (
    CELLS,
    DEFAULT_RFM_SEGMENTS,
    RfmCutPoints,
    RfmScore,
    RfmSegment,
    RfmSegmentMap,
    RfmSummary,
    money_bucket,
    money_bucket_boundaries,
    score,
    score_values,
    summarize,
)

BOUNDARIES = money_bucket_boundaries()


def member(recency_days: int | None = 10, frequency: int = 1, monetary: str | Decimal = "10.00") -> MemberFeatures:
    purchased = recency_days is not None
    return MemberFeatures(
        member_id="m",
        recency_days=recency_days,
        frequency=frequency if purchased else 0,
        monetary=Decimal(monetary) if purchased else Decimal(0),
        purchases_6m=0,
        purchases_12m=0,
        spend_6m=Decimal(0),
        spend_12m=Decimal(0),
        points_6m=0,
        points_12m=0,
        active_months_6m=0,
        purchase_count=frequency if purchased else 0,
        days_since_enrolled=400,
        days_since_first_purchase=recency_days,
        tier="Insider",
        country=None,
        age=None,
        consent=ConsentFlags(),
        available_points=0,
        lifetime_points=0,
    )


def frequency_summary(values: list[int]) -> RfmSummary:
    return summarize(member(recency_days=v, frequency=v) for v in values)


# ---- the tie policy, by hand ----------------------------------------------------------------------------------


def test_ten_distinct_values_fall_two_to_a_quintile() -> None:
    # Given frequencies 1..10: ceil(k*10/5) = 2, 4, 6, 8, so the cut points are the 2nd, 4th, 6th and 8th values
    cuts = frequency_summary(list(range(1, 11))).cut_points()
    assert cuts is not None
    assert cuts.f == (2, 4, 6, 8)

    # Then F pairs the values and R (recency, lower is better) mirrors it
    f_scores = [score_values(v, v, 0, cuts).f for v in range(1, 11)]
    r_scores = [score_values(v, v, 0, cuts).r for v in range(1, 11)]
    assert f_scores == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert r_scores == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]


def test_a_heavy_tie_shares_one_score_and_the_scores_it_spans_are_skipped() -> None:
    # Given [1,1,1,1,1,2,3,4,5,6]: cumulative counts 5,6,7,8,9,10 against targets 2,4,6,8
    values = [1, 1, 1, 1, 1, 2, 3, 4, 5, 6]
    cuts = frequency_summary(values).cut_points()
    assert cuts is not None

    # Then c = (1, 1, 2, 4): the five 1s take c_1 and c_2 together
    assert cuts.f == (1, 1, 2, 4)
    assert [score_values(v, v, 0, cuts).f for v in values] == [1, 1, 1, 1, 1, 3, 4, 4, 5, 5]
    assert [score_values(v, v, 0, cuts).r for v in values] == [5, 5, 5, 5, 5, 3, 2, 2, 1, 1]


def test_a_tie_at_the_top_takes_the_top_score_together() -> None:
    values = [1, 2, 3, 4, 5, 6, 9, 9, 9, 9]  # targets 2,4,6,8 -> c = (2, 4, 6, 9)
    cuts = frequency_summary(values).cut_points()
    assert cuts is not None

    assert cuts.f == (2, 4, 6, 9)
    assert [score_values(v, v, 0, cuts).f for v in values] == [1, 1, 2, 2, 3, 3, 4, 4, 4, 4]


@pytest.mark.parametrize(
    ("values", "cuts", "f_scores", "r_scores"),
    [
        ([7], (7, 7, 7, 7), [1], [5]),
        ([1, 2], (1, 1, 2, 2), [1, 3], [5, 3]),
        ([1, 2, 3], (1, 2, 2, 3), [1, 2, 4], [5, 4, 2]),
        ([1, 2, 3, 4], (1, 2, 3, 4), [1, 2, 3, 4], [5, 4, 3, 2]),
        ([3, 3, 3, 3, 3, 3], (3, 3, 3, 3), [1] * 6, [5] * 6),
    ],
)
def test_small_and_all_equal_populations_follow_the_same_policy(
    values: list[int], cuts: tuple[int, ...], f_scores: list[int], r_scores: list[int]
) -> None:
    found = frequency_summary(values).cut_points()
    assert found is not None

    assert found.f == cuts
    assert [score_values(v, v, 0, found).f for v in values] == f_scores
    assert [score_values(v, v, 0, found).r for v in values] == r_scores


def test_a_value_beyond_the_last_refresh_scores_at_the_extremes() -> None:
    # Between refreshes the API scores new values against the last cut points
    cuts = frequency_summary([1, 2, 3, 4, 5]).cut_points()
    assert cuts is not None

    assert score_values(100, 100, 5000, cuts) == RfmScore(r=1, f=5, m=5)
    assert score_values(0, 0, -1, cuts) == RfmScore(r=5, f=1, m=1)


def test_nobody_who_purchased_means_no_cut_points_and_never_purchased_means_no_score() -> None:
    summary = summarize([member(recency_days=None), member(recency_days=None)])

    assert summary.cut_points() is None
    assert (summary.members_with_purchases, summary.members_never_purchased) == (0, 2)
    cuts = RfmCutPoints(r=(1, 2, 3, 4), f=(1, 2, 3, 4), m=(1, 2, 3, 4))
    assert score(member(recency_days=None), cuts) is None


def test_money_is_scored_on_its_bucket_so_equal_spend_always_scores_equal() -> None:
    population = [member(recency_days=1, monetary=m) for m in ("5.00", "5.00", "20.00", "80.00", "80.00", "300.00")]
    cuts = summarize(population).cut_points()
    assert cuts is not None

    scores = [score(m, cuts) for m in population]

    assert scores[0] == scores[1] and scores[3] == scores[4]
    # N = 6: targets 2, 3, 4, 5 -> c = (b(5), b(20), b(80), b(80))
    assert cuts.m == (money_bucket(5), money_bucket(20), money_bucket(80), money_bucket(80))
    assert [s.m for s in scores if s is not None] == [1, 1, 2, 3, 3, 5]


@given(st.lists(st.integers(min_value=0, max_value=12), min_size=1, max_size=80))
@settings(max_examples=150, database=None, deadline=None)
def test_scores_are_monotone_and_equal_values_score_equal(values: list[int]) -> None:
    cuts = frequency_summary(values).cut_points()
    assert cuts is not None
    by_value = {v: score_values(v, v, 0, cuts) for v in values}

    ordered = sorted(by_value)
    for low, high in itertools.pairwise(ordered):
        assert by_value[low].f <= by_value[high].f
        assert by_value[low].r >= by_value[high].r
    assert by_value[ordered[0]].f == 1 and by_value[ordered[0]].r == 5


@given(st.integers(min_value=1, max_value=40))
@settings(max_examples=40, database=None, deadline=None)
def test_distinct_values_in_multiples_of_five_fill_every_quintile_equally(fifths: int) -> None:
    values = random.Random(fifths).sample(range(10_000), 5 * fifths)
    cuts = frequency_summary(values).cut_points()
    assert cuts is not None

    counts = [0] * 6
    for v in values:
        counts[score_values(v, v, 0, cuts).f] += 1

    assert counts[1:] == [fifths] * 5


# ---- money buckets --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "bucket"),
    [("0", -1), ("-3.00", -1), ("0.009", -1), ("0.01", 0), ("0.0101", 1), ("1.00", 462), ("100.00", 925)],
)
def test_money_buckets_are_one_percent_wide_from_one_cent(amount: str, bucket: int) -> None:
    assert money_bucket(Decimal(amount)) == bucket


def test_bucket_boundaries_are_the_exact_powers_to_the_nearest_float() -> None:
    for k in (0, 1, 2, 100, 462, 1000, 2500, 4095):
        exact = Decimal("0.01") * Decimal("1.01") ** k
        assert BOUNDARIES[k] == float(exact)
        assert money_bucket(BOUNDARIES[k]) == k
        assert money_bucket(math.nextafter(BOUNDARIES[k], 0)) == k - 1


@given(st.floats(min_value=0.01, max_value=1e12, allow_nan=False))
@settings(max_examples=300, database=None)
def test_the_bucket_is_the_log_formula(amount: float) -> None:
    estimate = math.log(amount / 0.01) / math.log(1.01)
    if abs(estimate - round(estimate)) < 1e-9:
        return  # on a boundary to within float error: the table decides (tested above)
    assert money_bucket(amount) == math.floor(estimate)


def test_amounts_within_one_percent_can_share_a_bucket_but_never_swap_order() -> None:
    assert money_bucket(Decimal("100.00")) == money_bucket(Decimal("100.30"))
    assert money_bucket(Decimal("100.00")) < money_bucket(Decimal("101.50"))


def test_spend_beyond_the_table_shares_the_last_bucket() -> None:
    assert money_bucket(Decimal("1e16")) == money_bucket(Decimal("1e30")) == len(BOUNDARIES) - 1


# ---- summaries ------------------------------------------------------------------------------------------------

histograms = st.dictionaries(st.integers(min_value=0, max_value=50), st.integers(min_value=1, max_value=9), max_size=8)


@st.composite
def summaries(draw: Any) -> RfmSummary:
    recency = draw(histograms)
    total = sum(recency.values())
    values = [v for v, n in recency.items() for _ in range(n)]
    frequency: dict[int, int] = {}
    money: dict[int, int] = {}
    for _ in values:
        f = draw(st.integers(min_value=0, max_value=6))
        frequency[f] = frequency.get(f, 0) + 1
        m = draw(st.integers(min_value=-1, max_value=900))
        money[m] = money.get(m, 0) + 1
    return RfmSummary(
        recency_days=recency,
        frequency=frequency,
        money_bucket=money,
        members_with_purchases=total,
        members_never_purchased=draw(st.integers(min_value=0, max_value=5)),
    )


@given(summaries(), summaries(), summaries())
@settings(max_examples=100, database=None, deadline=None)
def test_merge_is_associative_and_commutative(a: RfmSummary, b: RfmSummary, c: RfmSummary) -> None:
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(b) == b.merge(a)
    assert a.merge(RfmSummary()) == a


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5), st.sampled_from(["0", "3.50", "9.99", "120.00"]))))
@settings(max_examples=60, database=None, deadline=None)
def test_summaries_of_parts_merge_to_the_summary_of_the_whole(rows: list[tuple[int, int, str]]) -> None:
    members = [member(r, f, m) for r, f, m in rows] + [member(recency_days=None)]
    half = len(members) // 2

    merged = summarize(members[:half]).merge(summarize(members[half:]))

    assert merged == summarize(members)
    assert merged.cut_points() == summarize(members).cut_points()


@given(summaries())
@settings(max_examples=60, database=None, deadline=None)
def test_a_summary_survives_a_json_round_trip(summary: RfmSummary) -> None:
    assert RfmSummary.from_json(summary.to_json()) == summary


@pytest.mark.parametrize(
    "fields",
    [
        {"recency_days": {1: 2}, "frequency": {1: 1}, "money_bucket": {1: 2}, "members_with_purchases": 2},
        {"recency_days": {-1: 1}, "frequency": {1: 1}, "money_bucket": {1: 1}, "members_with_purchases": 1},
        {"recency_days": {1: 0}, "frequency": {}, "money_bucket": {}, "members_with_purchases": 0},
        {"money_bucket": {-2: 1}, "recency_days": {1: 1}, "frequency": {1: 1}, "members_with_purchases": 1},
    ],
)
def test_an_inconsistent_summary_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RfmSummary.model_validate(fields)


def test_cut_points_must_ascend() -> None:
    with pytest.raises(ValidationError, match="non-decreasing"):
        RfmCutPoints(r=(1, 2, 3, 4), f=(3, 2, 2, 2), m=(0, 0, 0, 0))


# ---- the segment map ------------------------------------------------------------------------------------------

# The effective default grid, R rows from 5 down to 1, FM columns 1..5 (first matching segment wins)
EXPECTED_GRID = {
    5: ["new", "potential-loyalist", "loyal", "champions", "champions"],
    4: ["promising", "potential-loyalist", "loyal", "champions", "champions"],
    3: ["about-to-sleep", "need-attention", "loyal", "loyal", "loyal"],
    2: ["hibernating", "hibernating", "at-risk", "at-risk", "at-risk"],
    1: ["lost", "lost", "at-risk", "cant-lose-them", "cant-lose-them"],
}


def test_the_default_map_covers_all_25_cells_as_the_industry_grid_does() -> None:
    grid = RfmSegmentMap().grid()

    assert set(grid) == set(CELLS)
    for r, row in EXPECTED_GRID.items():
        assert [grid[(r, fm)].segment_id for fm in range(1, 6)] == row


def test_fm_is_the_mean_of_f_and_m_rounded_half_up() -> None:
    assert [RfmScore(r=3, f=f, m=m).fm for f, m in [(1, 1), (1, 2), (2, 3), (4, 5), (5, 5), (1, 5)]] == [
        1,
        2,
        3,
        5,
        5,
        3,
    ]
    assert RfmSegmentMap().segment_for(RfmScore(r=5, f=3, m=4)).name == "Champions"


def test_a_custom_map_that_leaves_cells_uncovered_is_refused_naming_them() -> None:
    segments = [s for s in DEFAULT_RFM_SEGMENTS if s.segment_id not in ("lost", "new")]

    with pytest.raises(ValidationError) as refused:
        RfmSegmentMap(segments=tuple(segments))

    assert "leaves 3 of 25 cells uncovered: (R=1, FM=1), (R=1, FM=2), (R=5, FM=1)" in str(refused.value)


def test_a_segment_that_can_never_win_a_cell_is_refused() -> None:
    everything = RfmSegment(segment_id="everyone", name="Everyone", r=(1, 5), fm=(1, 5))
    hidden = RfmSegment(segment_id="vips", name="VIPs", r=(5, 5), fm=(5, 5))

    with pytest.raises(ValidationError, match=r"never chosen.*vips"):
        RfmSegmentMap(segments=(everything, hidden))


def test_a_custom_map_of_json_is_accepted_and_used() -> None:
    custom = RfmSegmentMap.model_validate(
        {
            "segments": [
                {"segment_id": "best", "name": "Best", "r": [5, 5], "fm": [5, 5]},
                {"segment_id": "rest", "name": "Rest", "r": [1, 5], "fm": [1, 5]},
            ]
        }
    )

    assert custom.segment_for(RfmScore(r=5, f=5, m=5)).segment_id == "best"
    assert custom.segment_for(RfmScore(r=5, f=5, m=3)).segment_id == "rest"


@pytest.mark.parametrize(
    "segment",
    [
        {"segment_id": "x", "name": "X", "r": [4, 2], "fm": [1, 5]},
        {"segment_id": "x", "name": "X", "r": [0, 5], "fm": [1, 5]},
        {"segment_id": "Big Spenders", "name": "X", "r": [1, 5], "fm": [1, 5]},
    ],
)
def test_a_malformed_segment_is_refused(segment: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RfmSegment.model_validate(segment)


def test_segment_ids_may_not_repeat() -> None:
    with pytest.raises(ValidationError, match="repeat: champions"):
        RfmSegmentMap(segments=(*DEFAULT_RFM_SEGMENTS, DEFAULT_RFM_SEGMENTS[0]))
