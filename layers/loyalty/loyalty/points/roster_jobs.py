"""What the points context's scheduled jobs share (the tier review, the daily expiry): one share of the roster per
task, paged through until it is done or its invocation nears its deadline, then handed back with its cursor for
the state machine's Choice to loop it (statemachines/tier_review.asl.json, points_expiry.asl.json)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from loyalty.points.member_record import MemberStanding
from loyalty.points.ports import PointsStore

PAGE_SIZE = 200
DEADLINE_MARGIN_SECONDS = 30.0  # a share hands back its cursor with this much of its invocation left


def shares(count: int, **fields: Any) -> list[dict[str, Any]]:
    """The shares `begin` hands the Distributed Map: each names its worker of `count`, no cursor yet, and `fields`."""
    return [{**fields, "worker": worker, "workers": count, "cursor": None} for worker in range(count)]


def walk_share(
    store: PointsStore,
    share: Mapping[str, Any],
    page_size: int,
    time_left: Callable[[], float],
    visit: Callable[[MemberStanding], None],
) -> tuple[str | None, bool]:
    """Visit the members of `share` from its cursor, page by page, until the share is done or fewer than
    DEADLINE_MARGIN_SECONDS are left: (the cursor to go on from, done)."""
    worker, workers, cursor = int(share["worker"]), int(share["workers"]), share.get("cursor")
    while True:
        page, cursor = store.roster_page(worker, workers, cursor, page_size)
        for standing in page:
            visit(standing)
        if cursor is None:
            return None, True
        if time_left() < DEADLINE_MARGIN_SECONDS:
            return cursor, False
