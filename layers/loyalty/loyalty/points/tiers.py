"""Tiers that live: qualification over a window, upgrades as soon as earned, downgrades only at a review.

Pure: the policy is data (loyalty.points.program.TierPolicy), the member's standing is read from the monthly maps
of their item (loyalty.points.member_record), and every function takes `now`. Nothing here writes a tier: each
function answers with the change to make (a TierChange) or None, and the service records it (docs/tiers.md).

A review at instant R judges the window as it stands just before R, the window R closes: a monthly review on the
1st judges the 12 months just ended, a yearly review on January 1 the year just ended (value_at_review).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from loyalty.points.member_record import NO_TIER_ABOVE, PurchaseAggregates, aggregates_of, month_index, month_key
from loyalty.points.program import QualifyingMeasure, QualifyingWindow, ReviewCadence, Tier, TierPolicy
from loyalty.points.rewards import Reward

Value = int | Decimal  # points (int) or spend in the policy's currency (Decimal)
Standing = PurchaseAggregates | Mapping[str, Any]  # a member item, or the aggregates read from one

_JUST_BEFORE = timedelta(microseconds=1)


class UnknownTier(ValueError):
    """A tier name that is not on the ladder: the ladder was renamed and the member's item was not moved."""


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"


class ChangeReason(StrEnum):
    EARN = "earn"
    REVIEW = "review"
    REFUND = "refund"


class TierChange(BaseModel):
    """A move on the ladder the service should record, and the value that decided it."""

    model_config = ConfigDict(frozen=True)

    from_tier: str
    to_tier: str
    direction: Direction
    reason: ChangeReason
    value: Value
    measure: QualifyingMeasure
    currency: str | None = Field(description="The currency of a spend value; None when the measure is points.")


class NextReward(BaseModel):
    """The reward to show next to the bar: one the member can redeem now, or the closest one they cannot yet."""

    model_config = ConfigDict(frozen=True)

    reward: Reward
    affordable: bool
    points_needed: int = Field(ge=0, description="0 when affordable.")


class TierProgress(BaseModel):
    """Everything a progress bar needs. `value`, `to_next` and `to_keep` are in the measure's unit: points, or
    `currency` when the measure is spend."""

    model_config = ConfigDict(frozen=True)

    tier: Tier
    next_tier: Tier | None = Field(description="None at the top of the ladder.")
    value: Value = Field(description="The qualifying value now.")
    to_next: Value = Field(description="Still needed to reach next_tier; 0 at the top.")
    percent: int = Field(
        ge=0, le=100, description="value as a share of next_tier's threshold, floored; 100 at the top."
    )
    window_ends_on: date = Field(description="The last day of the current qualifying window.")
    next_review_at: datetime
    to_keep: Value = Field(description="Still needed to keep `tier` at the next review; 0 when already safe.")
    measure: QualifyingMeasure
    currency: str | None
    next_reward: NextReward | None = Field(description="None when no active reward is open to the member's tier.")


# ---- qualification ----------------------------------------------------------------------------------------------


def _utc(moment: datetime) -> datetime:
    """A naive moment is taken as UTC, as the monthly maps do."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def window_months(policy: TierPolicy, now: datetime) -> range:
    """The month indexes (member_record.month_index) of the qualifying window as of `now`."""
    current = month_index(_utc(now))
    if policy.window is QualifyingWindow.ROLLING_12_MONTHS:
        return range(current - 11, current + 1)
    return range(current - current % 12, current + 1)


def window_ends_on(policy: TierPolicy, now: datetime) -> date:
    """The last day of the qualifying window as of `now`: the end of the month, or of the year."""
    moment = _utc(now)
    month = moment.month if policy.window is QualifyingWindow.ROLLING_12_MONTHS else 12
    return date(moment.year, month, calendar.monthrange(moment.year, month)[1])


def qualifying_value(standing: Standing, policy: TierPolicy, now: datetime) -> Value:
    """Points earned (int) or net spend (Decimal) over the window as of `now`, from the item's monthly maps.

    The maps are net of refunds, which are booked in their order's month; a month outside the window, or one the
    maps no longer keep, counts nothing.
    """
    aggregates = standing if isinstance(standing, PurchaseAggregates) else aggregates_of(standing)
    if policy.measure is QualifyingMeasure.POINTS:
        points = aggregates.points_by_month
        return sum((int(points.get(month_key(m)) or 0) for m in window_months(policy, now)), 0)
    spend = aggregates.spend_by_month
    return sum((Decimal(spend.get(month_key(m)) or 0) for m in window_months(policy, now)), Decimal(0))


def value_at_review(standing: Standing, policy: TierPolicy, review_at: datetime) -> Value:
    """What a review at `review_at` judges: the window just before it, the one the review closes. Before the review,
    it is the value so far (a later month adds nothing yet)."""
    return qualifying_value(standing, policy, review_at - _JUST_BEFORE)


def tier_for(value: Value, ladder: tuple[Tier, ...]) -> Tier:
    """The highest level whose threshold the value reaches (the first level for anything below it)."""
    reached = ladder[0]
    for level in ladder:
        if value >= level.threshold:
            reached = level
    return reached


def rank(tier: str, ladder: tuple[Tier, ...]) -> int:
    """The position of a tier on the ladder, 0 at the bottom."""
    for position, level in enumerate(ladder):
        if level.name == tier:
            return position
    raise UnknownTier(f"tier {tier!r} is not on the ladder ({', '.join(t.name for t in ladder)})")


# ---- changes ------------------------------------------------------------------------------------------------------


def _change(current: str, to: Tier, reason: ChangeReason, value: Value, policy: TierPolicy) -> TierChange:
    direction = Direction.UP if rank(to.name, policy.ladder) > rank(current, policy.ladder) else Direction.DOWN
    spend = policy.measure is QualifyingMeasure.SPEND
    return TierChange(
        from_tier=current,
        to_tier=to.name,
        direction=direction,
        reason=reason,
        value=value,
        measure=policy.measure,
        currency=policy.currency if spend else None,
    )


def _upgrade(current_tier: str, value: Value, policy: TierPolicy, reason: ChangeReason) -> TierChange | None:
    reached = tier_for(value, policy.ladder)
    if rank(reached.name, policy.ladder) > rank(current_tier, policy.ladder):
        return _change(current_tier, reached, reason, value, policy)
    return None


def _one_down(current_tier: str, value: Value, policy: TierPolicy, reason: ChangeReason) -> TierChange | None:
    position = rank(current_tier, policy.ladder)
    if rank(tier_for(value, policy.ladder).name, policy.ladder) < position:
        return _change(current_tier, policy.ladder[position - 1], reason, value, policy)
    return None


def after_earn(current_tier: str, value_after: Value, policy: TierPolicy) -> TierChange | None:
    """An upgrade as soon as the value reaches a higher threshold, as many levels as it reaches; never a downgrade."""
    return _upgrade(current_tier, value_after, policy, ChangeReason.EARN)


def after_refund(current_tier: str, value_after: Value, policy: TierPolicy) -> TierChange | None:
    """None unless the policy lets a refund downgrade; then one level down if the value no longer supports the tier.

    No grace: a refund that takes back the purchase that won a tier is the case this rule exists for.
    """
    if not policy.refund_can_downgrade:
        return None
    return _one_down(current_tier, value_after, policy, ChangeReason.REFUND)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, on the month's last day when it is shorter (Jan 31 + 1 = Feb 28)."""
    year, month0 = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    day = min(moment.day, calendar.monthrange(year, month0 + 1)[1])
    return moment.replace(year=year, month=month0 + 1, day=day)


def in_grace(upgraded_at: datetime | None, policy: TierPolicy, review_at: datetime) -> bool:
    """True if the member was upgraded less than grace_months before the review."""
    if upgraded_at is None or policy.grace_months == 0:
        return False
    return add_months(_utc(upgraded_at), policy.grace_months) > _utc(review_at)


def at_review(
    current_tier: str, value: Value, upgraded_at: datetime | None, policy: TierPolicy, now: datetime
) -> TierChange | None:
    """The change a review at `now` makes, judging `value` (value_at_review of the member's item at `now`).

    Down at most one level, and not while in grace. A review also catches up an upgrade the value supports but the
    member was not given (the ladder's thresholds were lowered, say), as an earn would have.
    """
    upgrade = _upgrade(current_tier, value, policy, ChangeReason.REVIEW)
    if upgrade is not None or in_grace(upgraded_at, policy, now):
        return upgrade
    return _one_down(current_tier, value, policy, ChangeReason.REVIEW)


def last_review(policy: TierPolicy, now: datetime) -> datetime:
    """The latest scheduled review at or before `now` (00:00 UTC): the one a review job started now carries out."""
    moment = _utc(now)
    if policy.review is ReviewCadence.MONTHLY:
        return datetime(moment.year, moment.month, 1, tzinfo=UTC)
    this_year = datetime(moment.year, policy.review_month, policy.review_day, tzinfo=UTC)
    return this_year if this_year <= moment else this_year.replace(year=moment.year - 1)


def on_ladder(tier: str, policy: TierPolicy) -> str:
    """The member's tier, or the ladder's first if the ladder no longer names it (renamed in a new version)."""
    return tier if any(level.name == tier for level in policy.ladder) else policy.ladder[0].name


def headroom_above(policy: TierPolicy, value: Value, tier: str | None = None) -> Decimal:
    """Qualifying units left before the threshold above `tier` (by default the tier `value` reaches), as the member
    item keeps them for the one-round-trip earn (docs/tiers.md); NO_TIER_ABOVE at the top."""
    held = tier if tier is not None else tier_for(value, policy.ladder).name
    position = rank(held, policy.ladder)
    if position + 1 >= len(policy.ladder):
        return NO_TIER_ABOVE
    return Decimal(policy.ladder[position + 1].threshold) - Decimal(value)


def next_review(policy: TierPolicy, now: datetime) -> datetime:
    """The first scheduled review strictly after `now` (00:00 UTC)."""
    moment = _utc(now)
    if policy.review is ReviewCadence.MONTHLY:
        year, month0 = divmod(moment.year * 12 + moment.month, 12)
        return datetime(year, month0 + 1, 1, tzinfo=UTC)
    this_year = datetime(moment.year, policy.review_month, policy.review_day, tzinfo=UTC)
    return this_year if this_year > moment else this_year.replace(year=moment.year + 1)


# ---- progress -----------------------------------------------------------------------------------------------------


def _shortfall(threshold: int, value: Value) -> Value:
    """What the value lacks to reach the threshold, never below zero, in the value's own type."""
    return max(value * 0, threshold - value)


def _share(value: Value, threshold: int) -> int:
    return max(0, min(100, int(value * 100 // threshold)))


def next_reward(
    member_tier: str, rewards: Iterable[Reward], ladder: tuple[Tier, ...], available: int
) -> NextReward | None:
    """The most expensive active reward the member can afford, else the closest one they cannot yet, among those
    their tier may redeem (a reward gated by a tier not on the ladder is open to no one)."""
    position = rank(member_tier, ladder)
    names = {level.name: index for index, level in enumerate(ladder)}
    open_to_member = [
        reward
        for reward in rewards
        if reward.active and (reward.min_tier is None or names.get(reward.min_tier, len(ladder)) <= position)
    ]
    affordable = [reward for reward in open_to_member if reward.cost_points <= available]
    if affordable:
        best = max(affordable, key=lambda reward: (reward.cost_points, reward.reward_id))
        return NextReward(reward=best, affordable=True, points_needed=0)
    if open_to_member:
        closest = min(open_to_member, key=lambda reward: (reward.cost_points, reward.reward_id))
        return NextReward(reward=closest, affordable=False, points_needed=closest.cost_points - max(available, 0))
    return None


def progress(
    member_tier: str,
    standing: Standing,
    policy: TierPolicy,
    now: datetime,
    rewards: Iterable[Reward],
    available_points: int,
    *,
    upgraded_at: datetime | None = None,
) -> TierProgress:
    """Where the member stands: toward the next tier, against the next review, and toward the next reward.

    Takes the member's item rather than one value: what the next review will judge is a window of its own (with a
    yearly review of a rolling window it is not the current one), and only the monthly maps can tell it.
    """
    ladder = policy.ladder
    position = rank(member_tier, ladder)
    tier = ladder[position]
    upper = ladder[position + 1] if position + 1 < len(ladder) else None
    value = qualifying_value(standing, policy, now)
    review_at = next_review(policy, now)
    to_keep = value * 0
    if position > 0 and not in_grace(upgraded_at, policy, review_at):
        to_keep = _shortfall(tier.threshold, value_at_review(standing, policy, review_at))
    spend = policy.measure is QualifyingMeasure.SPEND
    return TierProgress(
        tier=tier,
        next_tier=upper,
        value=value,
        to_next=_shortfall(upper.threshold, value) if upper else value * 0,
        percent=_share(value, upper.threshold) if upper else 100,
        window_ends_on=window_ends_on(policy, now),
        next_review_at=review_at,
        to_keep=to_keep,
        measure=policy.measure,
        currency=policy.currency if spend else None,
        next_reward=next_reward(member_tier, rewards, ladder, available_points),
    )
