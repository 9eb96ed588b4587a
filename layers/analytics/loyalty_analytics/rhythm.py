"""The member's own purchase rhythm: when would they buy next if they keep their habit?

No population model here, just the member's history, so it explains itself ("you buy every 30 days; your last
purchase was 12 May"). Purchases are counted per calendar day (two orders on one day are one purchase day, as in
`loyalty_analytics.summary`), and the typical gap is:

- the median of the gaps between consecutive purchase days when there are at least 3 gaps: one long holiday or one
  burst of orders does not move it (with 1 or 2 gaps a median is no more robust than a mean);
- otherwise the mean gap, (last - first) / (purchase days - 1).

From a summary (first, last, number of purchase days: what the member's item keeps up to date) only the mean is
possible, so `purchase_rhythm_from_summary` uses the mean whatever the count. Fewer than 2 purchase days: no rhythm.
Pure Python: it runs per member in the refresh without numpy.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

MEDIAN_FROM_GAPS = 3


@dataclass(frozen=True)
class PurchaseRhythm:
    last_purchase: date
    typical_gap_days: float
    basis: Literal["median", "mean"]
    gaps: int  # number of gaps between purchase days the typical gap was taken from

    @property
    def expected_next(self) -> date:
        """Last purchase day plus the typical gap, rounded to the nearest day (halves up)."""
        return self.last_purchase + timedelta(days=math.floor(self.typical_gap_days + 0.5))

    def days_overdue(self, today: date) -> int:
        """Days past the expected next purchase (negative: not due yet)."""
        return (_day(today) - self.expected_next).days


def purchase_rhythm(purchase_dates: Iterable[date]) -> PurchaseRhythm | None:
    """The rhythm of a member's purchases (dates or datetimes, any order); None with fewer than 2 purchase days."""
    days = sorted({_day(value) for value in purchase_dates})
    if len(days) < 2:
        return None
    gaps = [(later - earlier).days for earlier, later in itertools.pairwise(days)]
    if len(gaps) >= MEDIAN_FROM_GAPS:
        return PurchaseRhythm(days[-1], float(statistics.median(gaps)), "median", len(gaps))
    return PurchaseRhythm(days[-1], (days[-1] - days[0]).days / len(gaps), "mean", len(gaps))


def purchase_rhythm_from_summary(first: date, last: date, purchase_days: int) -> PurchaseRhythm | None:
    """The rhythm from a summary: first and last purchase days and the number of distinct purchase days."""
    first_day, last_day = _day(first), _day(last)
    if last_day < first_day:
        raise ValueError("the last purchase cannot come before the first")
    if purchase_days < 1:
        raise ValueError("purchase_days counts purchase days, so at least 1 when there is a first purchase")
    span = (last_day - first_day).days
    if purchase_days > span + 1:
        raise ValueError(f"{purchase_days} purchase days do not fit between {first_day} and {last_day}")
    if purchase_days < 2:
        return None
    return PurchaseRhythm(last_day, span / (purchase_days - 1), "mean", purchase_days - 1)


def expected_next_purchase(purchase_dates: Iterable[date]) -> date | None:
    """The expected next purchase day, or None with fewer than 2 purchase days."""
    rhythm = purchase_rhythm(purchase_dates)
    return None if rhythm is None else rhythm.expected_next


def _day(value: date) -> date:
    return value.date() if isinstance(value, datetime) else value
