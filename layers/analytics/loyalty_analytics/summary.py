"""From raw transactions to the (frequency, recency, T, monetary value) summary BG/NBD and Gamma-Gamma take.

Definitions (Fader, Hardie and Lee; the defaults of lifetimes' `summary_data_from_transaction_data`):

- dates are first cut to periods: calendar days (`period="D"`) or Monday-to-Sunday weeks (`period="W"`, pandas'
  "W"); transactions after the observation end's period are dropped;
- a customer's purchases in one period count once, their values summed;
- frequency = number of purchase periods minus 1 (repeat periods: the first is the acquisition, not a repeat);
- recency = last period - first period, T = observation end's period - first period, divided by
  `periods_per_unit` (lifetimes' `freq_multiplier`): `period="D", periods_per_unit=7` gives fractional weeks, as in
  FHL's CDNOW summary (t_x = 30.43 weeks);
- monetary_value = mean value of the repeat periods (the first excluded), 0 when there is none.

Customers whose first purchase falls after the observation end do not appear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from loyalty_analytics._fitting import FloatArray, as_float_array

Period = Literal["D", "W"]
# 1970-01-01 was a Thursday: shifting by 3 days makes week numbers start on Mondays.
_MONDAY_SHIFT = 3


@dataclass(frozen=True)
class CustomerSummary:
    customer_ids: npt.NDArray[Any]  # sorted, one per customer
    frequency: FloatArray
    recency: FloatArray
    T: FloatArray
    monetary_value: FloatArray | None  # None when no values were given

    def __len__(self) -> int:
        return int(self.customer_ids.shape[0])


def summarize_transactions(
    customer_ids: npt.ArrayLike,
    dates: npt.ArrayLike,
    values: npt.ArrayLike | None = None,
    *,
    observation_end: date | str | np.datetime64,
    period: Period = "D",
    periods_per_unit: float = 1.0,
) -> CustomerSummary:
    """Summarise transactions (one row each: customer id, date, optional value) as of `observation_end`.

    `dates` may be datetime64 values, `datetime.date` objects or ISO strings; times of day are dropped.
    """
    if period not in ("D", "W"):
        raise ValueError(f"period must be 'D' (days) or 'W' (weeks), got {period!r}")
    if not (np.isfinite(periods_per_unit) and periods_per_unit > 0):
        raise ValueError("periods_per_unit must be a positive number")
    ids = np.asarray(customer_ids)
    days = _as_days("dates", dates)
    if ids.ndim != 1 or days.shape != ids.shape:
        raise ValueError(
            f"customer_ids and dates must be one-dimensional and of one length, got {ids.shape}, {days.shape}"
        )
    amounts = None if values is None else as_float_array("values", values)
    if amounts is not None and amounts.shape != ids.shape:
        raise ValueError(f"values must have one entry per transaction ({ids.shape[0]}), got {amounts.shape}")
    end = _as_days("observation_end", np.asarray([observation_end]))[0]

    periods = _to_periods(days, period)
    end_period = _to_periods(np.asarray([end]), period)[0]
    inside = periods <= end_period
    unique_ids, customer = np.unique(ids[inside], return_inverse=True)
    customer = customer.reshape(-1)
    periods = periods[inside]
    if periods.size == 0:
        empty = np.zeros(0)
        return CustomerSummary(unique_ids, empty, empty.copy(), empty.copy(), None if amounts is None else empty.copy())

    # Sort by (customer, period); the first row of each run of equal pairs starts a purchase period.
    order = np.lexsort((periods, customer))
    customer, periods = customer[order], periods[order]
    starts = np.flatnonzero(np.r_[True, (customer[1:] != customer[:-1]) | (periods[1:] != periods[:-1])])
    period_customer = customer[starts]
    period_of = periods[starts]

    count = np.bincount(period_customer, minlength=unique_ids.size)
    first_index = np.searchsorted(period_customer, np.arange(unique_ids.size), side="left")
    last_index = first_index + count - 1
    first, last = period_of[first_index], period_of[last_index]
    frequency = (count - 1).astype(np.float64)

    monetary: FloatArray | None = None
    if amounts is not None:
        amounts = amounts[inside][order]
        period_value = np.add.reduceat(amounts, starts)
        repeat_value = period_value.copy()
        repeat_value[first_index] = 0.0  # the acquisition period is not a repeat purchase
        repeat_total = np.bincount(period_customer, weights=repeat_value, minlength=unique_ids.size)
        monetary = np.divide(repeat_total, frequency, out=np.zeros(unique_ids.size), where=frequency > 0)

    return CustomerSummary(
        customer_ids=unique_ids,
        frequency=frequency,
        recency=(last - first) / periods_per_unit,
        T=(end_period - first) / periods_per_unit,
        monetary_value=monetary,
    )


def _as_days(name: str, dates: npt.ArrayLike) -> npt.NDArray[np.int64]:
    try:
        days = np.asarray(dates).astype("datetime64[D]")
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be dates (datetime64, datetime.date or ISO strings): {error}") from None
    if np.any(np.isnat(days)):
        raise ValueError(f"{name} must not contain missing dates (NaT)")
    return days.astype(np.int64)


def _to_periods(days: npt.NDArray[np.int64], period: Period) -> npt.NDArray[np.int64]:
    return days if period == "D" else (days + _MONDAY_SHIFT) // 7
