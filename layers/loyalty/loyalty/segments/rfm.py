"""Explainable RFM: global quintile cut points from mergeable exact histograms, scores by bisect, a segment map.

Pure Python (the API layer re-scores one member between refreshes with the last cut points). Its vectorised twin,
loyalty_analytics.rfm, builds the same summaries and gives the same scores; the two must never disagree.

Tie policy (docs/segments.md): over the N members who ever purchased, c_k (k = 1..4) is the smallest value whose
cumulative count reaches ceil(k*N/5). F and M = 1 + #{k : value > c_k}; R = 5 - #{k : recency_days > c_k}.
Equal values always get equal scores, and the scores only depend on the histogram, so workers can build histograms
in parallel, merge them, and agree on the cut points.
"""

from __future__ import annotations

import decimal
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping
from decimal import Decimal
from functools import cache
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from loyalty.segments.features import MemberFeatures
from loyalty.segments.ids import Slug

# ---- money buckets ------------------------------------------------------------------------------------------------

MONEY_BUCKET_FLOOR = Decimal("0.01")
MONEY_BUCKET_GROWTH = Decimal("1.01")
MONEY_BUCKET_COUNT = 4096  # the last bucket starts near 5e15 currency units and holds everything above


@cache
def money_bucket_boundaries() -> tuple[float, ...]:
    """b_k = 0.01 * 1.01**k, each the float nearest the exact value (60 digits), so that the bucket of an amount
    never depends on a platform's log(): both implementations compare the float of the amount with this table.
    Built on first use (about 15 ms), not at import, so API cold starts that never score RFM do not pay for it."""
    context = decimal.Context(prec=60)
    bound, boundaries = MONEY_BUCKET_FLOOR, []
    for _ in range(MONEY_BUCKET_COUNT):
        boundaries.append(float(bound))
        bound = context.multiply(bound, MONEY_BUCKET_GROWTH)
    return tuple(boundaries)


NO_SPEND_BUCKET = -1


def money_bucket(amount: Decimal | int | float) -> int:
    """floor(log(amount / 0.01) / log(1.01)), evaluated exactly on float(amount); -1 below 0.01 (no spend)."""
    return bisect_right(money_bucket_boundaries(), float(amount)) - 1


# ---- summaries and cut points ---------------------------------------------------------------------------------------

CutPoints = Annotated[tuple[int, int, int, int], Field(description="c_1..c_4, non-decreasing")]


def _quintile_cuts(histogram: Mapping[int, int]) -> tuple[int, int, int, int]:
    """c_k = the smallest value whose cumulative count reaches ceil(k*N/5), k = 1..4."""
    total = sum(histogram.values())
    targets = [(k * total + 4) // 5 for k in range(1, 5)]
    cuts: list[int] = []
    cumulative = 0
    for value in sorted(histogram):
        cumulative += histogram[value]
        while len(cuts) < 4 and cumulative >= targets[len(cuts)]:
            cuts.append(value)
    return cuts[0], cuts[1], cuts[2], cuts[3]


class RfmCutPoints(BaseModel):
    """The global cut points of one refresh: what a member's value is compared with to score it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: CutPoints
    f: CutPoints
    m: CutPoints = Field(description="Over money bucket indexes, not amounts.")

    @model_validator(mode="after")
    def _ascending(self) -> Self:
        for name in ("r", "f", "m"):
            cuts = getattr(self, name)
            if list(cuts) != sorted(cuts):
                raise ValueError(f"cut points {name} must be non-decreasing, got {list(cuts)}")
        return self


def _merged(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    total = Counter(a)
    total.update(b)
    return {value: total[value] for value in sorted(total)}


class RfmSummary(BaseModel):
    """Pass one of a refresh: exact integer histograms of the RFM inputs. Mergeable (associative, commutative),
    JSON round-trippable, so parallel workers can ship theirs through SQS or S3 and a merge gives the global one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recency_days: dict[int, int] = Field(default_factory=dict, description="recency in days -> members")
    frequency: dict[int, int] = Field(default_factory=dict, description="purchases in the window -> members")
    money_bucket: dict[int, int] = Field(default_factory=dict, description="money bucket index -> members")
    members_with_purchases: int = Field(default=0, ge=0)
    members_never_purchased: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        lowest = {"recency_days": 0, "frequency": 0, "money_bucket": NO_SPEND_BUCKET}
        for name, floor in lowest.items():
            histogram: dict[int, int] = getattr(self, name)
            if any(value < floor for value in histogram):
                raise ValueError(f"{name} holds a value below {floor}")
            if any(count < 1 for count in histogram.values()):
                raise ValueError(f"{name} holds a count below 1")
            if sum(histogram.values()) != self.members_with_purchases:
                raise ValueError(f"{name} counts {sum(histogram.values())} members, not {self.members_with_purchases}")
        return self

    @property
    def members(self) -> int:
        return self.members_with_purchases + self.members_never_purchased

    def merge(self, other: RfmSummary) -> RfmSummary:
        return RfmSummary(
            recency_days=_merged(self.recency_days, other.recency_days),
            frequency=_merged(self.frequency, other.frequency),
            money_bucket=_merged(self.money_bucket, other.money_bucket),
            members_with_purchases=self.members_with_purchases + other.members_with_purchases,
            members_never_purchased=self.members_never_purchased + other.members_never_purchased,
        )

    def cut_points(self) -> RfmCutPoints | None:
        """None when nobody has purchased: there is no population to rank against, so nobody gets RFM scores.

        With N < 5 or heavy ties several cut points coincide, and the policy still holds as stated: e.g. N = 1 gives
        c_1 = c_2 = c_3 = c_4 = the one value, so that member scores R 5, F 1, M 1; a population where everyone has
        the same value scores everyone R 5 (recency) or 1 (frequency, money): nobody is beyond anyone else.
        """
        if self.members_with_purchases == 0:
            return None
        return RfmCutPoints(
            r=_quintile_cuts(self.recency_days),
            f=_quintile_cuts(self.frequency),
            m=_quintile_cuts(self.money_bucket),
        )

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> RfmSummary:
        return cls.model_validate_json(text)


def summarize(features: Iterable[MemberFeatures]) -> RfmSummary:
    """The summary of a population of members (pure Python; the refresh uses loyalty_analytics.rfm)."""
    recency: Counter[int] = Counter()
    frequency: Counter[int] = Counter()
    money: Counter[int] = Counter()
    never = 0
    for member in features:
        if member.recency_days is None:
            never += 1
            continue
        recency[member.recency_days] += 1
        frequency[member.frequency] += 1
        money[money_bucket(member.monetary)] += 1
    return RfmSummary(
        recency_days=dict(sorted(recency.items())),
        frequency=dict(sorted(frequency.items())),
        money_bucket=dict(sorted(money.items())),
        members_with_purchases=recency.total(),
        members_never_purchased=never,
    )


# ---- scores ---------------------------------------------------------------------------------------------------------

Score = Annotated[int, Field(ge=1, le=5)]


class RfmScore(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    r: Score
    f: Score
    m: Score

    @property
    def fm(self) -> int:
        """(F + M) / 2 rounded half up: the second axis of the segment map."""
        return (self.f + self.m + 1) // 2


def score_values(recency_days: int, frequency: int, bucket: int, cut_points: RfmCutPoints) -> RfmScore:
    """#{k : value > c_k} is bisect_left over the sorted cut points: equal values land on the same side."""
    return RfmScore(
        r=5 - bisect_left(cut_points.r, recency_days),
        f=1 + bisect_left(cut_points.f, frequency),
        m=1 + bisect_left(cut_points.m, bucket),
    )


def score(features: MemberFeatures, cut_points: RfmCutPoints) -> RfmScore | None:
    """The member's R, F, M against the last global cut points; None if they never purchased."""
    if features.recency_days is None:
        return None
    return score_values(features.recency_days, features.frequency, money_bucket(features.monetary), cut_points)


# ---- the segment map ------------------------------------------------------------------------------------------------

Band = Annotated[tuple[Score, Score], Field(description="[low, high], inclusive")]
CELLS = tuple((r, fm) for r in range(1, 6) for fm in range(1, 6))


class RfmSegment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    segment_id: Slug
    name: str = Field(min_length=1, max_length=80)
    r: Band
    fm: Band

    @model_validator(mode="after")
    def _bands_ascend(self) -> Self:
        for axis in ("r", "fm"):
            low, high = getattr(self, axis)
            if low > high:
                raise ValueError(f"{self.segment_id}: {axis} band [{low}, {high}] has low above high")
        return self

    def covers(self, r: int, fm: int) -> bool:
        return self.r[0] <= r <= self.r[1] and self.fm[0] <= fm <= self.fm[1]


def _segment(segment_id: str, name: str, r: tuple[int, int], fm: tuple[int, int]) -> RfmSegment:
    return RfmSegment(segment_id=segment_id, name=name, r=r, fm=fm)


DEFAULT_RFM_SEGMENTS: tuple[RfmSegment, ...] = (
    _segment("champions", "Champions", (4, 5), (4, 5)),
    _segment("loyal", "Loyal", (3, 5), (3, 5)),
    _segment("potential-loyalist", "Potential Loyalist", (4, 5), (2, 3)),
    _segment("new", "New", (5, 5), (1, 1)),
    _segment("promising", "Promising", (4, 4), (1, 1)),
    _segment("need-attention", "Need Attention", (3, 3), (2, 3)),
    _segment("about-to-sleep", "About to Sleep", (3, 3), (1, 2)),
    _segment("cant-lose-them", "Can't Lose Them", (1, 1), (4, 5)),
    _segment("at-risk", "At Risk", (1, 2), (3, 5)),
    _segment("hibernating", "Hibernating", (2, 2), (1, 2)),
    _segment("lost", "Lost", (1, 1), (1, 2)),
)


class RfmSegmentMap(BaseModel):
    """Named regions of the (R, FM) grid; the first segment that covers a cell wins. Must cover all 25 cells, and
    every segment must win at least one (a segment hidden behind earlier ones is a mistake worth refusing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    segments: tuple[RfmSegment, ...] = DEFAULT_RFM_SEGMENTS
    _grid: dict[tuple[int, int], RfmSegment] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _covers_the_grid(self) -> Self:
        ids = [segment.segment_id for segment in self.segments]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"segment ids repeat: {', '.join(repeated)}")
        grid: dict[tuple[int, int], RfmSegment] = {}
        for cell in CELLS:
            for segment in self.segments:
                if segment.covers(*cell):
                    grid[cell] = segment
                    break
        uncovered = [cell for cell in CELLS if cell not in grid]
        if uncovered:
            names = ", ".join(f"(R={r}, FM={fm})" for r, fm in uncovered)
            raise ValueError(f"the segment map leaves {len(uncovered)} of 25 cells uncovered: {names}")
        winners = {segment.segment_id for segment in grid.values()}
        hidden = [segment.segment_id for segment in self.segments if segment.segment_id not in winners]
        if hidden:
            raise ValueError(f"segments never chosen (every cell they cover is taken earlier): {', '.join(hidden)}")
        self._grid = grid
        return self

    def segment_for(self, rfm: RfmScore) -> RfmSegment:
        return self._grid[(rfm.r, rfm.fm)]

    def grid(self) -> dict[tuple[int, int], RfmSegment]:
        """(R, FM) -> the segment that wins the cell: the effective map, for documentation and the numpy twin."""
        return dict(self._grid)
