"""Lots: when credited points expire, and how much of each lot is left, first in, first out (docs/expiry.md).

Credits are kept in buckets by the day they expire (`lots`: bucket key -> points credited, less what refunds of its
orders took back); debits are not booked against buckets at all, only counted (`consumed`: redemptions, negative
adjustments, expiries). Because every new credit expires no earlier than the ones before it (its date is computed
from when it is booked), spending the soonest-expiring points first needs nothing more: the points still unspent
in the buckets that expire on or before a day are `max(0, credited through that day - consumed)`.

Bucket keys: "YYYY-MM-DD" (the last day the points can be spent), LAST_ACTIVITY (every credit of a program whose
points expire a while after the member's last activity) or NEVER (credits booked while expiry was off). Pure.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from loyalty.points.program import ExpiryMode, ExpiryPolicy

NEVER: Final = "never"
LAST_ACTIVITY: Final = "last-activity"


def _utc_day(moment: datetime) -> date:
    return (moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)).date()


def add_months(day: date, months: int) -> date:
    """The same day `months` later, the month's last day when it is shorter (Jan 31 + 1 = Feb 28)."""
    year, month0 = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(year, month0 + 1, min(day.day, calendar.monthrange(year, month0 + 1)[1]))


def _month_end(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])


def expiry_date(policy: ExpiryPolicy, start: datetime) -> date:
    """The last day points credited (or a member last active) at `start` can be spent: `months` later, less a day,
    at the end of that month if the policy rounds to period end."""
    last_day = add_months(_utc_day(start), policy.months) - timedelta(days=1)
    return _month_end(last_day) if policy.round_to_period_end else last_day


def bucket_for(policy: ExpiryPolicy, booked_at: datetime) -> str:
    """The bucket a credit booked at `booked_at` goes to."""
    if not policy.enabled:
        return NEVER
    if policy.mode is ExpiryMode.AFTER_LAST_ACTIVITY:
        return LAST_ACTIVITY
    return expiry_date(policy, booked_at).isoformat()


def _dated(lots: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted((key, int(points)) for key, points in lots.items() if key not in (NEVER, LAST_ACTIVITY))


def unspent_through(lots: Mapping[str, int], consumed: int, day: date) -> int:
    """Points still unspent in the dated buckets that expire on or before `day` (first in, first out)."""
    credited = sum(points for key, points in _dated(lots) if key <= day.isoformat())
    return max(0, credited - consumed)


@dataclass(frozen=True, slots=True)
class Lot:
    expires_on: str  # "YYYY-MM-DD", LAST_ACTIVITY or NEVER
    points: int  # still unspent


def remaining(lots: Mapping[str, int], consumed: int) -> list[Lot]:
    """Every bucket with points left, soonest first, consumption taken from the soonest: what the member holds."""
    left = int(consumed)
    held: list[Lot] = []
    ordered = _dated(lots) + [(k, int(lots[k])) for k in (LAST_ACTIVITY, NEVER) if k in lots]
    for key, points in ordered:
        taken = min(points, max(left, 0))
        left -= taken
        if points - taken > 0:
            held.append(Lot(key, points - taken))
    return held


def due(
    policy: ExpiryPolicy,
    lots: Mapping[str, int],
    consumed: int,
    today: date,
    last_activity_at: datetime | None,
) -> int:
    """Points that have expired by `today` and are not yet booked as expired: the dated buckets whose last day is
    before today, and, for a program whose points expire after the last activity, every unspent point once that
    day has passed. Buckets of another mode than the policy's (the policy changed) follow their own key."""
    expired = unspent_through(lots, consumed, today - timedelta(days=1))
    idle = (
        LAST_ACTIVITY in lots
        and last_activity_at is not None
        and policy.enabled
        and policy.mode is ExpiryMode.AFTER_LAST_ACTIVITY
        and expiry_date(policy, last_activity_at) < today
    )
    if idle:
        total = sum(points for _, points in _dated(lots)) + int(lots[LAST_ACTIVITY])
        return max(0, total - consumed)
    return expired


def expiring_between(lots: Mapping[str, int], consumed: int, after: date, through: date) -> dict[str, int]:
    """The dated buckets that expire after `after` and on or before `through` with points left, and how many."""
    left = int(consumed)
    found: dict[str, int] = {}
    for key, points in _dated(lots):
        taken = min(points, max(left, 0))
        left -= taken
        if after.isoformat() < key <= through.isoformat() and points - taken > 0:
            found[key] = points - taken
    return found
