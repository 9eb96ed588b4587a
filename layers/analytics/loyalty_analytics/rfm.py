"""The refresh's vectorised twin of loyalty.segments.rfm: same summaries, same cut points, the same scores.

The API re-scores one member with the pure-Python `loyalty.segments.rfm.score` between refreshes; the refresh
scores millions here. Both compare the float of the money with one table of bucket boundaries and count cut points
strictly below a value (bisect_left == searchsorted side="left"), so they cannot disagree (tests/unit hold them to
it on random populations).

Arrays are one entry per member. `recency_days` < 0 (NEVER_PURCHASED) marks a member who never purchased: counted
in the summary, scored 0 (no score).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import reduce

import numpy as np
import numpy.typing as npt

from loyalty.segments.rfm import (
    RfmCutPoints,
    RfmSegmentMap,
    RfmSummary,
    money_bucket_boundaries,
)

NEVER_PURCHASED = -1
NO_SCORE = 0
_BOUNDARIES = np.asarray(money_bucket_boundaries(), dtype=np.float64)
# Bucket k spans [_PADDED[k + 1], _PADDED[k + 2]); bucket -1 is everything below 0.01.
_PADDED = np.concatenate(([-np.inf], _BOUNDARIES, [np.inf]))
_LOG_FLOOR, _LOG_GROWTH = float(np.log(_BOUNDARIES[0])), float(np.log(1.01))
# bincount over [min, max] while the span stays small; np.unique (a sort) beyond it.
_DENSE_SPAN = 1 << 20


def money_buckets(money: npt.ArrayLike) -> npt.NDArray[np.int16]:
    """The bucket index of each amount (float64 currency units): -1 below 0.01, else floor(log(m/0.01)/log(1.01)).

    The log gives a guess within one bucket of the truth; one comparison each way with the shared boundary table
    makes it exact, so this agrees with loyalty.segments.rfm.money_bucket (a bisect over the same table) everywhere,
    boundaries included, at half the cost of a searchsorted over 4096 boundaries.
    """
    amounts = np.asarray(money, dtype=np.float64)
    if not np.isfinite(amounts).all():
        raise ValueError("money amounts must be finite")
    with np.errstate(divide="ignore", invalid="ignore"):
        guess = np.floor((np.log(np.maximum(amounts, 1e-3)) - _LOG_FLOOR) / _LOG_GROWTH)
    bucket = np.clip(guess, -1, len(_BOUNDARIES) - 1).astype(np.int16)
    bucket -= amounts < _PADDED[bucket + 1]
    bucket += amounts >= _PADDED[bucket + 2]
    return bucket


def _histogram(values: npt.NDArray[np.integer]) -> dict[int, int]:
    if values.size == 0:
        return {}
    low, high = int(values.min()), int(values.max())
    if high - low <= _DENSE_SPAN:
        counts = np.bincount((values - low).astype(np.intp, copy=False), minlength=high - low + 1)
        present = np.flatnonzero(counts)
        return dict(zip((present + low).tolist(), counts[present].tolist(), strict=True))
    distinct, counts = np.unique(values, return_counts=True)
    return dict(zip(distinct.tolist(), counts.tolist(), strict=True))


def summarize(recency_days: npt.ArrayLike, frequency: npt.ArrayLike, money_bucket: npt.ArrayLike) -> RfmSummary:
    """Pass one for a slice of members (one worker's scan segment). Merge the slices with `merge`."""
    recency, counts, buckets = np.asarray(recency_days), np.asarray(frequency), np.asarray(money_bucket)
    if not recency.shape == counts.shape == buckets.shape:
        raise ValueError("recency_days, frequency and money_bucket must have one entry per member")
    purchased = recency >= 0
    scored = int(np.count_nonzero(purchased))
    if scored < recency.size:
        recency, counts, buckets = recency[purchased], counts[purchased], buckets[purchased]
    return RfmSummary(
        recency_days=_histogram(recency),
        frequency=_histogram(counts),
        money_bucket=_histogram(buckets),
        members_with_purchases=scored,
        members_never_purchased=int(purchased.size - scored),
    )


def merge(summaries: Iterable[RfmSummary]) -> RfmSummary:
    return reduce(RfmSummary.merge, summaries, RfmSummary())


@dataclass(frozen=True)
class RfmScores:
    """Scores 1-5 per member (int8); 0 where the member never purchased."""

    r: npt.NDArray[np.int8]
    f: npt.NDArray[np.int8]
    m: npt.NDArray[np.int8]

    @property
    def fm(self) -> npt.NDArray[np.int8]:
        """(F + M) / 2 rounded half up."""
        return ((self.f + self.m + 1) // 2).astype(np.int8)


def score(
    recency_days: npt.ArrayLike,
    frequency: npt.ArrayLike,
    money_bucket: npt.ArrayLike,
    cut_points: RfmCutPoints,
) -> RfmScores:
    """#{k : value > c_k}, counted with four comparisons per column: with four cut points that is ~15x faster than
    np.searchsorted(c, values, side="left"), which counts the same thing (bisect_left in the pure-Python twin)."""
    recency, counts, buckets = np.asarray(recency_days), np.asarray(frequency), np.asarray(money_bucket)
    r = _above(recency, cut_points.r)
    np.subtract(5, r, out=r)
    f = _above(counts, cut_points.f)
    f += 1
    m = _above(buckets, cut_points.m)
    m += 1
    never = recency < 0
    if never.any():
        for scores in (r, f, m):
            scores[never] = NO_SCORE
    return RfmScores(r=r, f=f, m=m)


def _above(values: npt.NDArray[np.integer], cuts: tuple[int, int, int, int]) -> npt.NDArray[np.int8]:
    """How many cut points each value is strictly above (0..4)."""
    count = np.zeros(values.shape, dtype=np.int8)
    for cut in cuts:
        count += values > cut
    return count


def segment_codes(scores: RfmScores, rfm_map: RfmSegmentMap) -> tuple[npt.NDArray[np.int8], tuple[str, ...]]:
    """Each member's RFM segment as an index into the returned segment ids; -1 where unscored."""
    ids = tuple(segment.segment_id for segment in rfm_map.segments)
    lookup = np.full((6, 6), -1, dtype=np.int8)  # [R, FM]; row and column 0 stay -1 (no score)
    for (r, fm), segment in rfm_map.grid().items():
        lookup[r, fm] = ids.index(segment.segment_id)
    return lookup[scores.r, scores.fm], ids
