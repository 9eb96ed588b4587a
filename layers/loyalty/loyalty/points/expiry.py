"""The daily points expiry: book what expired, announce what is about to (docs/expiry.md).

A job of the tier review's shape (statemachines/points_expiry.asl.json): `begin` names the day (today, UTC; a start
whose input carries `day` re-runs that one) and the roster's shares; each share pages through its part of the
members. For each member with lots: the points due (loyalty.points.lots.due: the dated lots whose last day is
before the day, first in, first out, or the whole balance once the last activity is far enough behind) are booked
as one `expiry` entry, keyed `expiry:<member>:<day>` and pinned to the member's revision it was computed from;
then the lots expiring within the policy's `warn_days` that were not announced yet are announced (one
PointsExpiringSoon each).

Safe to run again and against redemptions and refunds: the same day's expiry is a replay of the first; a
redemption or a refund between the read and the write moves the revision, the write is refused, and the member is
computed again from the item the refusal hands back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from loyalty.core import ids
from loyalty.core.errors import InvalidRequest, StoreContention
from loyalty.core.idempotency import Claim, fingerprint
from loyalty.points.ledger import EntryKind, LedgerEntry
from loyalty.points.lots import due, expiring_between
from loyalty.points.member_record import MemberStanding
from loyalty.points.ports import EarnGuards, PointsStore, StandingMoved
from loyalty.points.program import ProgramConfig
from loyalty.points.roster_jobs import PAGE_SIZE, shares, walk_share

MEMBER_ATTEMPTS = 5


class PointsExpiry:
    """The expiry's steps: `handle({"step": "begin" | "expire", ...})` answers the state machine's task."""

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
        if step == "expire":
            share = task.get("share")
            if not isinstance(share, Mapping):
                raise InvalidRequest("an expiry task needs its share", field="share")
            return self.expire(share, time_left)
        raise InvalidRequest(f"unknown step {step!r}", field="step")

    def begin(self, event: Mapping[str, Any]) -> dict[str, Any]:
        given = event.get("day")
        if given is not None:
            try:
                day = date.fromisoformat(str(given))
            except ValueError:
                raise InvalidRequest("not an ISO 8601 date", field="day") from None
        else:
            day = self._clock().astimezone(UTC).date()
        counts = {"read": 0, "expired_members": 0, "expired_points": 0, "warned": 0}
        return {"day": day.isoformat(), "shares": shares(self._shares, day=day.isoformat(), **counts)}

    def expire(self, share: Mapping[str, Any], time_left: Callable[[], float]) -> dict[str, Any]:
        day = date.fromisoformat(str(share["day"]))
        counts = {name: int(share.get(name, 0)) for name in ("read", "expired_members", "expired_points", "warned")}
        program = self._program()

        def visit(standing: MemberStanding) -> None:
            counts["read"] += 1
            if standing.lots is None:
                return  # nothing booked in lots yet (an item from before lots were kept, never credited since)
            expired, warned = self.member(standing, day, program)
            counts["expired_members"] += expired > 0
            counts["expired_points"] += expired
            counts["warned"] += warned

        cursor, done = walk_share(self.store, share, self._page_size, time_left, visit)
        return {**share, **counts, "cursor": cursor, "done": done}

    def member(self, standing: MemberStanding, day: date, program: ProgramConfig) -> tuple[int, int]:
        """Expire what is due for one member on `day` and announce what comes due soon: (points expired, lots
        announced)."""
        member_id = standing.member.member_id
        expired = 0
        for _ in range(MEMBER_ATTEMPTS):
            lots = standing.lots or {}
            amount = min(
                due(program.expiry, lots, standing.lots_consumed, day, standing.last_activity_at),
                standing.member.balance.available,
            )
            if amount <= 0:
                break
            entry = LedgerEntry(
                entry_id=ids.ulid(),
                member_id=member_id,
                kind=EntryKind.EXPIRY,
                points=-amount,
                created_at=self._clock(),
                reason=f"points whose lots ended before {day.isoformat()}",
                program_version=program.version,
            )
            claim = Claim(f"expiry:{member_id}:{day.isoformat()}", fingerprint(member_id, day.isoformat()), 201, {})
            try:
                replay = self.store.post(
                    entry,
                    claim.answering(201, {"entry": entry.public()}),
                    None,
                    EarnGuards(revision=standing.revision),
                )
            except StandingMoved as moved:
                standing = moved.standing
                continue
            if replay is None:  # written: what the lots consumed moved by the expiry, with nothing else between
                expired = amount
                consumed, revision = standing.lots_consumed + amount, standing.revision + 1
                standing = dataclasses.replace(standing, lots_consumed=consumed, revision=revision)
            break
        else:
            raise StoreContention(f"member {member_id} kept changing during the expiry; retry")
        return expired, self._warn(standing, day, program)

    def _warn(self, standing: MemberStanding, day: date, program: ProgramConfig) -> int:
        policy = program.expiry
        if not policy.enabled or not policy.warn_days or not standing.lots:
            return 0
        after = max(standing.warned_through or "", (day - timedelta(days=1)).isoformat())
        soon = expiring_between(
            standing.lots, standing.lots_consumed, date.fromisoformat(after), day + timedelta(days=policy.warn_days)
        )
        if not soon:
            return 0
        written = self.store.warn_expiring(standing.member.member_id, soon, standing.warned_through, self._clock())
        return len(soon) if written else 0
