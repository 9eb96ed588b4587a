"""`python -m bench.segments`: the RFM scoring core on synthetic members, loyalty_analytics.rfm beside pandas.

Both sides run the same policy (docs/segments.md) on the same arrays in the same process: money buckets, exact
histograms, quintile cut points, R/F/M scores. The pandas side is written here, independently (value_counts and
cumsum for the cut points, the log formula for the buckets, Series.searchsorted for the scores), and the run fails
unless both give every member the same scores. Times are the best of --repeats runs without tracing; peak memory is
measured in a separate traced run (tracemalloc sees numpy's and pandas' buffers), over and above the inputs.
"""

from __future__ import annotations

import argparse
import math
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.rfm import RfmCutPoints, RfmSummary, score
from loyalty_analytics import rfm

Arrays = tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.float64]]


def synthetic_members(count: int, seed: int) -> Arrays:
    """Skewed like a real program: ~20% never purchased; recency in whole days with a long tail (so ties are
    everywhere); purchases in the window geometric; spend a lognormal basket per purchase, in cents."""
    rng = np.random.default_rng(seed)
    never = rng.random(count) < 0.20
    recency = np.minimum(rng.geometric(1 / 60, count) - 1, 729).astype(np.int32)
    in_window = recency <= 365
    frequency = np.where(in_window, rng.geometric(0.35, count), 0).astype(np.int32)
    baskets = rng.lognormal(mean=3.6, sigma=0.9, size=count)
    money = np.round(baskets * frequency, 2)
    recency[never] = rfm.NEVER_PURCHASED
    frequency[never] = 0
    money[never] = 0.0
    return recency, frequency, money


def score_with_loyalty_analytics(recency: Any, frequency: Any, money: Any) -> Any:
    buckets = rfm.money_buckets(money)
    summary = rfm.summarize(recency, frequency, buckets)
    cuts = summary.cut_points()
    assert cuts is not None
    scores = rfm.score(recency, frequency, buckets, cuts)
    return scores.r, scores.f, scores.m


def score_with_pandas(recency: Any, frequency: Any, money: Any) -> Any:
    """The same policy, written the way an analyst would in pandas."""
    members = pd.DataFrame({"recency": recency, "frequency": frequency, "money": money})
    buyers = members[members["recency"] >= 0]
    spend = buyers["money"]
    bucket = np.floor(np.log(spend.where(spend >= 0.01) / 0.01) / math.log(1.01)).fillna(-1).astype("int64")

    def cut_points(values: pd.Series) -> pd.Series:
        cumulative = values.value_counts().sort_index().cumsum()
        total = int(cumulative.iloc[-1])
        targets = [math.ceil(k * total / 5) for k in range(1, 5)]
        return pd.Series(cumulative.index[cumulative.searchsorted(targets, side="left")])

    def above(values: pd.Series) -> npt.NDArray[np.intp]:
        return np.asarray(cut_points(values).searchsorted(values, side="left"))

    scores = pd.DataFrame(
        {
            "r": 5 - above(buyers["recency"]),
            "f": 1 + above(buyers["frequency"]),
            "m": 1 + above(bucket),
        },
        index=buyers.index,
    ).reindex(members.index, fill_value=0)  # 0: never purchased, no score
    return scores["r"].to_numpy(), scores["f"].to_numpy(), scores["m"].to_numpy()


@dataclass
class Run:
    seconds: float
    peak_bytes: int
    result: Any


def measure(action: Callable[[], Any], repeats: int) -> Run:
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - start)
        del result
    tracemalloc.start()
    tracemalloc.reset_peak()
    result = action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Run(best, peak, result)


def fan_out_merge(arrays: Arrays, workers: int) -> tuple[float, int]:
    """Pass one as the refresh runs it: one summary per worker, sent as JSON, merged. (seconds, bytes sent)"""
    recency, frequency, money = arrays
    start = time.perf_counter()
    sent = []
    for part in np.array_split(np.arange(recency.size), workers):
        summary = rfm.summarize(recency[part], frequency[part], rfm.money_buckets(money[part]))
        sent.append(summary.to_json())
    merged = rfm.merge(RfmSummary.from_json(text) for text in sent)
    seconds = time.perf_counter() - start
    whole = rfm.summarize(recency, frequency, rfm.money_buckets(money))
    assert merged == whole, "merged worker summaries differ from the whole population's"
    return seconds, sum(len(text) for text in sent)


def per_member_python(count: int) -> tuple[float, float]:
    """The API path between refreshes: features_of on one member item, then score() against the last cut points."""
    config = SegmentationConfig()
    as_of = datetime(2026, 6, 15, tzinfo=UTC)
    item = {
        "member_id": "m_1",
        "tier": "VIB",
        "enrolled_at": "2023-01-05T10:00:00.000000Z",
        "profile": {"country": "FR"},
        "consent": {"email": True},
        "available": Decimal(340),
        "lifetime_earned": Decimal(2200),
        "purchase_count": Decimal(31),
        "first_purchase_at": "2023-02-01T10:00:00.000000Z",
        "last_purchase_at": "2026-06-02T18:30:00.000000Z",
        "spend_by_month": {f"2025-{m:02d}": Decimal("42.50") for m in range(1, 13)}
        | {f"2026-{m:02d}": Decimal("61.20") for m in range(1, 7)},
        "purchases_by_month": {f"2025-{m:02d}": Decimal(1) for m in range(1, 13)}
        | {f"2026-{m:02d}": Decimal(2) for m in range(1, 7)},
        "points_by_month": {f"2025-{m:02d}": Decimal(42) for m in range(1, 13)}
        | {f"2026-{m:02d}": Decimal(61) for m in range(1, 7)},
    }
    start = time.perf_counter()
    for _ in range(count):
        features = features_of(item, as_of, config)
    features_seconds = (time.perf_counter() - start) / count
    cuts = RfmCutPoints(r=(7, 20, 45, 110), f=(1, 1, 2, 4), m=(600, 700, 800, 900))
    start = time.perf_counter()
    for _ in range(count):
        score(features, cuts)
    return features_seconds, (time.perf_counter() - start) / count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per implementation (best is kept)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workers", type=int, default=8, help="summaries merged in the fan-out figure")
    args = parser.parse_args(argv)

    arrays = synthetic_members(args.members, args.seed)
    recency, frequency, _ = arrays
    buyers = int(np.count_nonzero(recency >= 0))
    print(
        f"RFM scoring core: {args.members:,} synthetic members ({buyers / args.members:.0%} ever purchased; "
        f"{np.unique(recency[recency >= 0]).size} distinct recencies, {np.unique(frequency).size} distinct "
        f"frequencies), numpy {np.__version__}, pandas {pd.__version__}"
    )

    ours = measure(lambda: score_with_loyalty_analytics(*arrays), args.repeats)
    theirs = measure(lambda: score_with_pandas(*arrays), args.repeats)
    for name, a, b in zip("RFM", ours.result, theirs.result, strict=True):
        differ = int(np.count_nonzero(np.asarray(a) != np.asarray(b)))
        assert differ == 0, f"{name}: {differ} members scored differently by pandas"
    print(f"  agreement: all {args.members:,} members have identical R, F and M in both implementations")

    for label, run in (("loyalty_analytics.rfm", ours), ("pandas (same policy)", theirs)):
        print(
            f"  {label:<22} {args.members / run.seconds / 1e6:7.2f} M members/s  ({run.seconds * 1000:7.1f} ms)  "
            f"peak memory {run.peak_bytes / 2**20:7.1f} MiB"
        )
    print(
        f"  ratio: {theirs.seconds / ours.seconds:.1f}x the pandas throughput, "
        f"{ours.peak_bytes / theirs.peak_bytes:.2f}x its peak memory"
    )

    merge_seconds, sent = fan_out_merge(arrays, args.workers)
    print(
        f"  pass one as {args.workers} workers: summaries built, sent as JSON ({sent / args.workers / 1024:.1f} KiB "
        f"each) and merged in {merge_seconds * 1000:.1f} ms; merged == whole population"
    )
    features_seconds, score_seconds = per_member_python(20_000)
    print(
        f"  pure Python, one member (API between refreshes): features_of {features_seconds * 1e6:.1f} us, "
        f"score {score_seconds * 1e6:.1f} us"
    )


if __name__ == "__main__":
    main()
