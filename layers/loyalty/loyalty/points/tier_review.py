"""The scheduled tier review: the only way down the ladder (docs/tiers.md).

A job of the refresh's shape (statemachines/tier_review.asl.json): `begin` names the review (the latest scheduled
review at or before now, loyalty.points.tiers.last_review) and the shares of the roster; each share pages through
its part of the members (a parallel scan of the MemberRoster index) and, for every member, judges the window the
review closes (value_at_review) and writes the move at_review decides: one level down at most, none in grace (or a
move up a lowered threshold now allows). A share near its invocation's deadline returns its cursor and the state
machine loops it back.

Safe to run again, and against earns: each move is written pinned to the member's revision as read and on
condition that the member was not moved by this review (or a later one) already; a member who changed meanwhile is
read again and judged again. A member the review leaves where they are is not written at all. Pure of AWS: the
store is the points port.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loyalty.core.errors import InvalidRequest, StoreContention
from loyalty.core.instants import timestamp
from loyalty.points.member_record import MemberStanding
from loyalty.points.members import TierMove
from loyalty.points.ports import PointsStore, TierReviewed
from loyalty.points.program import ProgramConfig
from loyalty.points.roster_jobs import PAGE_SIZE, shares, walk_share
from loyalty.points.tiers import at_review, headroom_above, last_review, on_ladder, qualifying_value, value_at_review

MEMBER_ATTEMPTS = 5  # judgements of one member who keeps changing under the review, before the task fails


@dataclass
class ShareCounts:
    read: int = 0
    moved: int = 0


class TierReview:
    """The review's steps: `handle({"step": "begin" | "review", ...})` answers the state machine's task."""

    def __init__(
        self,
        store: PointsStore,
        program: Callable[[], ProgramConfig],
        *,
        shares: int = 8,
        page_size: int = PAGE_SIZE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.store = store
        self._program = program
        self._shares = shares
        self._page_size = page_size
        self._clock = clock

    def handle(self, task: Mapping[str, Any], *, time_left: Callable[[], float] = lambda: 900.0) -> dict[str, Any]:
        step = task.get("step")
        if step == "begin":
            return self.begin(task.get("event") or {})
        if step == "review":
            share = task.get("share")
            if not isinstance(share, Mapping):
                raise InvalidRequest("a review task needs its share", field="share")
            return self.review(share, time_left)
        raise InvalidRequest(f"unknown step {step!r}", field="step")

    def begin(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The review to carry out: `review_at` as given (a re-run of a past review), else the latest scheduled one;
        and one share per roster segment."""
        given = event.get("review_at")
        if given is not None:
            try:
                review_at = datetime.fromisoformat(str(given).replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                raise InvalidRequest("not an ISO 8601 instant", field="review_at") from None
        else:
            review_at = last_review(self._program().tier_policy, self._clock())
        at = timestamp(review_at)
        return {"review_at": at, "shares": shares(self._shares, review_at=at, read=0, moved=0)}

    def review(self, share: Mapping[str, Any], time_left: Callable[[], float]) -> dict[str, Any]:
        """Page through the share until it is done or its invocation nears its deadline. The answer is the share
        to continue from (`done` false) or the finished share with its counts."""
        review_at = datetime.fromisoformat(str(share["review_at"]).replace("Z", "+00:00"))
        counts = ShareCounts(int(share.get("read", 0)), int(share.get("moved", 0)))
        program = self._program()

        def visit(standing: MemberStanding) -> None:
            counts.read += 1
            counts.moved += self._review_member(standing, review_at, program)

        cursor, done = walk_share(self.store, share, self._page_size, time_left, visit)
        return {**share, "cursor": cursor, "read": counts.read, "moved": counts.moved, "done": done}

    def _review_member(self, standing: MemberStanding, review_at: datetime, program: ProgramConfig) -> int:
        """1 if the review moved the member, else 0."""
        policy = program.tier_policy
        member_id = standing.member.member_id
        for _ in range(MEMBER_ATTEMPTS):
            if standing.reviewed_at is not None and standing.reviewed_at >= review_at:
                return 0
            member = standing.member
            tier = on_ladder(member.tier, policy)
            value = value_at_review(standing.aggregates, policy, review_at)
            change = at_review(tier, value, member.tier_upgraded_at, policy, review_at)
            if change is None:
                return 0
            move = TierMove(
                at=review_at,
                from_tier=member.tier,
                to_tier=change.to_tier,
                direction=change.direction.value,
                reason=change.reason.value,
                value=change.value,
                measure=change.measure.value,
                currency=change.currency,
            )
            now_value = qualifying_value(standing.aggregates, policy, self._clock())
            reviewed = TierReviewed(
                member_id=member_id,
                revision=standing.revision,
                review_at=review_at,
                move=move,
                headroom=headroom_above(policy, now_value, change.to_tier),
                basis=program.version,
            )
            if self.store.review_tier(reviewed):
                return 1
            standing = self.store.standing(member_id)  # changed since read: judge it again as it is now
        raise StoreContention(f"member {member_id} kept changing during the tier review; retry")
