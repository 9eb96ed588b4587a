"""A member's own purchase rhythm: the expected next purchase day from their gaps."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from loyalty_analytics.rhythm import (
    expected_next_purchase,
    purchase_rhythm,
    purchase_rhythm_from_summary,
)


def days(*offsets: int, start: date = date(2025, 1, 6)) -> list[date]:
    return [start + timedelta(days=offset) for offset in offsets]


def test_a_regular_monthly_buyer_is_expected_a_month_after_the_last_purchase() -> None:
    rhythm = purchase_rhythm(days(0, 30, 60, 90, 120))

    assert rhythm is not None
    assert (rhythm.typical_gap_days, rhythm.basis, rhythm.gaps) == (30.0, "median", 4)
    assert rhythm.expected_next == date(2025, 1, 6) + timedelta(days=150)


def test_one_long_pause_does_not_move_the_median_rhythm() -> None:
    """Gaps 14, 14, 15, 120, 13: the mean would say 35 days, the member's habit is a fortnight."""
    rhythm = purchase_rhythm(days(0, 14, 28, 43, 163, 176))

    assert rhythm is not None
    assert rhythm.typical_gap_days == 14.0 and rhythm.basis == "median"
    assert rhythm.expected_next == date(2025, 1, 6) + timedelta(days=190)


def test_an_even_number_of_gaps_takes_the_middle_two() -> None:
    rhythm = purchase_rhythm(days(0, 10, 30, 60, 100))  # gaps 10, 20, 30, 40

    assert rhythm is not None and rhythm.typical_gap_days == 25.0


def test_with_one_or_two_gaps_the_mean_gap_is_used() -> None:
    two_purchases = purchase_rhythm(days(0, 21))
    three_purchases = purchase_rhythm(days(0, 10, 25))  # gaps 10 and 15

    assert two_purchases is not None and (two_purchases.typical_gap_days, two_purchases.basis) == (21.0, "mean")
    assert three_purchases is not None and (three_purchases.typical_gap_days, three_purchases.basis) == (12.5, "mean")
    assert three_purchases.expected_next == date(2025, 1, 6) + timedelta(days=25 + 13)  # 12.5 rounds half up


def test_same_day_orders_are_one_purchase_day_and_order_does_not_matter() -> None:
    morning, evening = datetime(2025, 3, 1, 9, 30), datetime(2025, 3, 1, 20, 15)
    history = [date(2025, 3, 31), evening, date(2025, 1, 30), morning]

    rhythm = purchase_rhythm(history)

    assert rhythm is not None
    assert rhythm.gaps == 2 and rhythm.typical_gap_days == 30.0
    assert rhythm.last_purchase == date(2025, 3, 31)
    assert expected_next_purchase(history) == date(2025, 4, 30)


def test_fewer_than_two_purchase_days_have_no_rhythm() -> None:
    assert purchase_rhythm([]) is None
    assert purchase_rhythm([datetime(2025, 5, 1, 8), datetime(2025, 5, 1, 18)]) is None
    assert expected_next_purchase([date(2025, 5, 1)]) is None


def test_overdue_counts_days_past_the_expected_purchase() -> None:
    rhythm = purchase_rhythm(days(0, 7, 14, 21))  # next expected on day 28

    assert rhythm is not None
    assert rhythm.days_overdue(date(2025, 1, 6) + timedelta(days=25)) == -3
    assert rhythm.days_overdue(datetime(2025, 1, 6, 23, 59) + timedelta(days=40)) == 12


def test_the_summary_gives_the_mean_gap() -> None:
    """First, last and the number of purchase days (what the member's item keeps) give (last - first) / (n - 1)."""
    rhythm = purchase_rhythm_from_summary(date(2025, 1, 1), date(2025, 4, 11), 5)  # 100 days, 4 gaps

    assert rhythm is not None
    assert (rhythm.typical_gap_days, rhythm.basis, rhythm.gaps) == (25.0, "mean", 4)
    assert rhythm.expected_next == date(2025, 5, 6)
    assert purchase_rhythm_from_summary(date(2025, 1, 1), date(2025, 1, 1), 1) is None


@pytest.mark.parametrize(
    ("first", "last", "count", "message"),
    [
        (date(2025, 2, 1), date(2025, 1, 1), 2, "before the first"),
        (date(2025, 1, 1), date(2025, 1, 3), 0, "at least 1"),
        (date(2025, 1, 1), date(2025, 1, 3), 4, "do not fit"),
    ],
)
def test_an_impossible_summary_is_refused(first: date, last: date, count: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        purchase_rhythm_from_summary(first, last, count)
