"""From transactions to (frequency, recency, T, monetary value), with FHL's and lifetimes' definitions."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pytest

from loyalty_analytics.summary import CustomerSummary, Period, summarize_transactions

TRANSACTIONS = [
    # customer, day, value
    ("alice", "2025-01-01", 10.0),
    ("alice", "2025-01-01", 5.0),  # same day: one purchase period worth 15
    ("alice", "2025-01-15", 20.0),
    ("alice", "2025-02-01", 7.0),
    ("alice", "2025-02-01", 3.0),  # same day: one repeat period worth 10
    ("alice", "2025-04-10", 99.0),  # after the observation end: ignored
    ("bob", "2025-03-01", 12.0),
    ("carol", "2025-03-05", 8.0),
    ("carol", "2025-03-05", 4.0),  # two orders on her first day: still no repeat purchase
    ("dave", "2025-04-02", 50.0),  # first purchase after the end: not a customer yet
    ("eve", "2025-01-05", 1.0),  # a Sunday...
    ("eve", "2025-01-06", 1.0),  # ...and the Monday after: two days, two weeks
    ("frank", "2025-01-06", 2.0),  # a Monday...
    ("frank", "2025-01-12", 4.0),  # ...and the Sunday of the same week
]
END = date(2025, 3, 31)


def summarize(period: Period = "D", periods_per_unit: float = 1.0) -> CustomerSummary:
    ids, dates, values = zip(*TRANSACTIONS, strict=True)
    return summarize_transactions(
        ids, dates, values, observation_end=END, period=period, periods_per_unit=periods_per_unit
    )


def as_rows(summary: CustomerSummary) -> dict[str, tuple[float, ...]]:
    assert summary.monetary_value is not None
    columns = zip(summary.frequency, summary.recency, summary.T, summary.monetary_value, strict=True)
    return {
        str(customer): tuple(float(v) for v in row) for customer, row in zip(summary.customer_ids, columns, strict=True)
    }


def test_daily_summary_counts_purchase_days_after_the_first() -> None:
    rows = as_rows(summarize("D"))

    assert rows == {
        # frequency, recency (last - first), T (end - first), mean value of the repeat days
        "alice": (2, 31, 89, 15.0),
        "bob": (0, 0, 30, 0.0),
        "carol": (0, 0, 26, 0.0),
        "eve": (1, 1, 85, 1.0),
        "frank": (1, 6, 84, 4.0),
    }


def test_weekly_summary_counts_monday_to_sunday_weeks() -> None:
    """2025-01-01 is a Wednesday in the week of Monday 2024-12-30; the end, Monday 2025-03-31, starts week 13."""
    rows = as_rows(summarize("W"))

    assert rows["alice"] == (2, 4, 13, 15.0)  # weeks of Dec 30, Jan 13, Jan 27
    assert rows["eve"] == (1, 1, 13, 1.0)  # Sunday and Monday are different weeks (her first: week of Dec 30)
    assert rows["frank"] == (0, 0, 12, 0.0)  # Monday and Sunday of one week: one purchase period worth 6


def test_days_reported_in_weeks_keep_their_fractions() -> None:
    """FHL's CDNOW summary: purchases counted per day, times in weeks (t_x = 30.43)."""
    summary = summarize("D", periods_per_unit=7)

    assert np.allclose(summary.recency, np.array([31, 0, 0, 1, 6]) / 7)
    assert np.allclose(summary.T, np.array([89, 30, 26, 85, 84]) / 7)


def test_without_values_there_is_no_monetary_value_and_dates_can_be_dates() -> None:
    summary = summarize_transactions(
        [7, 7, 3],
        np.array([date(2025, 1, 1), date(2025, 1, 8), np.datetime64("2025-01-02T23:59")], dtype=object),
        observation_end="2025-01-31",
    )

    assert summary.monetary_value is None
    assert list(summary.customer_ids) == [3, 7]
    assert list(summary.frequency) == [0, 1] and list(summary.T) == [29, 30]


def test_no_transactions_give_an_empty_summary() -> None:
    summary = summarize_transactions([], np.array([], dtype="datetime64[D]"), [], observation_end=END)

    assert len(summary) == 0 and summary.monetary_value is not None and summary.monetary_value.size == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dates": ["2025-01-01", "not a date"]}, "must be dates"),
        ({"dates": ["2025-01-01", "NaT"]}, "missing dates"),
        ({"values": [1.0]}, "one entry per transaction"),
        ({"values": [1.0, float("inf")]}, "finite"),
        ({"period": "M"}, "period must be"),
        ({"periods_per_unit": 0}, "positive"),
    ],
)
def test_bad_input_is_refused_with_the_reason(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {
        "customer_ids": ["a", "b"],
        "dates": ["2025-01-01", "2025-01-02"],
        "values": [1.0, 2.0],
        "observation_end": END,
    }
    arguments.update(kwargs)

    with pytest.raises(ValueError, match=message):
        summarize_transactions(**arguments)  # type: ignore[arg-type]


def lifetimes_reference(
    ids: np.ndarray, dates: np.ndarray, values: np.ndarray, end: str, freq: Period, mult: float
) -> Any:  # a pandas DataFrame
    """lifetimes' summary_data_from_transaction_data (0.11, defaults otherwise) step by step in pandas: dates to
    periods, drop what is after the end's period, sum each customer's values per period, frequency = periods - 1,
    times between period starts divided by freq_multiplier, monetary value = mean of the non-first periods."""
    import pandas as pd

    frame = pd.DataFrame({"id": ids, "date": pd.to_datetime(dates), "value": values})
    frame = frame.sort_values(["id", "date", "value"])
    frame["date"] = frame["date"].dt.to_period(freq).dt.to_timestamp()
    end_start = pd.Timestamp(end).to_period(freq).to_timestamp()
    frame = frame[frame["date"] <= end_start]
    periods = frame.groupby(["id", "date"], as_index=False)["value"].sum().sort_values(["id", "date"])
    periods["first"] = ~periods.duplicated("id")
    per_customer = periods.groupby("id")["date"].agg(["min", "max", "count"])
    unit = np.timedelta64(1, freq)
    repeat = periods[~periods["first"]].groupby("id")["value"].mean()
    return pd.DataFrame(
        {
            "frequency": per_customer["count"] - 1,
            "recency": (per_customer["max"] - per_customer["min"]) / unit / mult,
            "T": (end_start - per_customer["min"]) / unit / mult,
            "monetary_value": repeat.reindex(per_customer.index).fillna(0.0),
        }
    )


@pytest.mark.parametrize(("period", "periods_per_unit"), [("D", 1.0), ("D", 7.0), ("W", 1.0)])
def test_matches_lifetimes_definition_on_random_transactions(period: Period, periods_per_unit: float) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    ids = rng.integers(0, 150, n)
    dates = np.datetime64("2024-01-01") + rng.integers(0, 200, n) * (rng.random(n) < 0.7)  # many on Jan 1
    values = np.round(rng.gamma(2.0, 15.0, n), 2)

    summary = summarize_transactions(
        ids, dates, values, observation_end="2024-05-15", period=period, periods_per_unit=periods_per_unit
    )

    reference = lifetimes_reference(ids, dates, values, "2024-05-15", period, periods_per_unit)
    assert list(summary.customer_ids) == list(reference.index)
    assert np.array_equal(summary.frequency, reference["frequency"].to_numpy(dtype=float))
    assert np.allclose(summary.recency, reference["recency"].to_numpy(dtype=float), rtol=1e-12)
    assert np.allclose(summary.T, reference["T"].to_numpy(dtype=float), rtol=1e-12)
    assert summary.monetary_value is not None
    assert np.allclose(summary.monetary_value, reference["monetary_value"].to_numpy(dtype=float), rtol=1e-12)
    assert summary.frequency.sum() > 100  # the draw has plenty of repeat purchases to compare
