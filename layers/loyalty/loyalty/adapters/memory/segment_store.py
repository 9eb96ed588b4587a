"""Segmentation's storage in memory (loyalty.segments.ports.SegmentStorage): the segmentation service's unit tests
run on it in milliseconds, and the contract suite (tests/integration/test_segment_store_contract.py) runs the same
behaviours on it and on the DynamoDB store, so it cannot drift from it.

It keeps what the loyalty table keeps, with the same conditions: segment writes pinned to the member's revision and
segments version, in parts of at most CHANGES_PER_WRITE changes each written whole; memberships listed shard by
shard with the same cursors; the document replaced only over the version it was read at. Values read back as they
would from DynamoDB (numbers as Decimal, moments as timestamps). Thread-safe: one lock around every read and write,
so concurrent evaluators race as they would on the table, one part at a time. Refresh runs are not kept here.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from loyalty.adapters.dynamodb.table import decode_cursor, encode_cursor
from loyalty.core import ids
from loyalty.core.errors import ConfigVersionConflict, InvalidRequest
from loyalty.core.events import EventType
from loyalty.core.instants import timestamp
from loyalty.points import member_record as record
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.ports import (
    MEMBERSHIP_SHARDS,
    AppliedChange,
    Membership,
    PublishedCutPoints,
    StaleMember,
    membership_shard,
)


def stored(value: Any) -> Any:
    """A value as DynamoDB gives it back: numbers as Decimal, datetimes as timestamps, dates ISO, tuples as lists,
    enums as their values, None left out of maps."""
    if isinstance(value, bool) or value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): stored(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple | set | frozenset):
        return [stored(v) for v in value]
    return value


@dataclass(frozen=True)
class SegmentEvent:
    """A SegmentEntered or SegmentLeft event as a segment write records it."""

    event_id: str
    event_type: str
    member_id: str
    segment_id: str
    occurred_at: str
    source: str


class InMemorySegmentStore:
    """SegmentStorage in memory. Members come in through `put_member_item`, change through `record_purchases` and
    `record_consent` (the points store's part, which this store does not keep) and go through `erase_member`;
    `segment_events` shows what segment writes announced."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._members: dict[str, dict[str, Any]] = {}
        self._memberships: dict[tuple[str, str], Membership] = {}
        self._events: list[SegmentEvent] = []
        self._document: tuple[int, str] | None = None
        self._cut_points: PublishedCutPoints | None = None
        self._sizes: dict[str, dict[str, dict[str, Any]]] = {}  # segment id -> sort key -> item
        self._latest: dict[str, Any] | None = None

    # ---- members (what the ledger's writes leave on the member item) ------------------------------------------

    def put_member_item(self, item: Mapping[str, Any]) -> None:
        with self._lock:
            self._members[str(item[record.MEMBER_ID])] = stored(item)

    def record_purchases(self, member_id: str, purchases: Iterable[record.PastPurchase], now: datetime) -> None:
        """What the ledger's purchase writes do to the member item: the aggregates move and so does the revision."""
        with self._lock:
            item = self._members[member_id]
            self._members[member_id] = stored(record.with_purchases(item, list(purchases), now))

    def record_consent(self, member_id: str, channel: str, granted: bool) -> None:
        """What the points store's consent write does to the member item: the flag set and the revision moved."""
        with self._lock:
            item = self._members[member_id]
            consent = {**(item.get(record.CONSENT) or {}), channel: granted}
            changed = {record.CONSENT: consent, record.REVISION: record.revision_of(item) + 1}
            self._members[member_id] = stored({**item, **changed})

    def erase_member(self, member_id: str) -> None:
        """What an erasure leaves of a member for segmentation: no member item."""
        with self._lock:
            self._members.pop(member_id, None)

    def segment_events(self, member_id: str) -> list[SegmentEvent]:
        with self._lock:
            return [event for event in self._events if event.member_id == member_id]

    # ---- MemberSegments ----------------------------------------------------------------------------------------

    def get_member_item(self, member_id: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._members.get(member_id)
            return copy.deepcopy(item) if item is not None else None

    def apply(self, member: Mapping[str, Any], after: Iterable[str], now: datetime, source: str) -> AppliedChange:
        before = record.stored_segments(member)
        change = AppliedChange.between(str(member[record.MEMBER_ID]), before, after)
        revision = record.revision_of(member)
        version = record.segments_version_of(member)
        for part, segments in change.parts(before):
            with self._lock:
                self._write_part(change.member_id, part, segments, revision, version, now, source)
            version += 1
        return change

    def _write_part(
        self,
        member_id: str,
        part: list[tuple[str, bool]],
        segments: list[str],
        revision: int,
        version: int,
        now: datetime,
        source: str,
    ) -> None:
        item = self._members.get(member_id)
        stale = (
            item is None
            or not _pinned(item, record.REVISION, revision)
            or not _pinned(item, record.SEGMENTS_VERSION, version)
            or any(((member_id, segment) in self._memberships) == joins for segment, joins in part)
        )
        if stale or item is None:
            raise StaleMember(f"member {member_id} changed while its segments were evaluated")
        at = timestamp(now)
        item[record.SEGMENTS] = list(segments)
        item[record.SEGMENTS_VERSION] = Decimal(version + 1)
        item[record.SEGMENTS_EVALUATED_AT] = at
        item[record.SEGMENTS_REVISION] = Decimal(revision)
        for segment, joins in part:
            if joins:
                self._memberships[(member_id, segment)] = Membership(member_id, segment, at)
            else:
                del self._memberships[(member_id, segment)]
            kind = EventType.SEGMENT_ENTERED if joins else EventType.SEGMENT_LEFT
            self._events.append(SegmentEvent(ids.ulid(), kind.value, member_id, segment, at, source))

    # ---- SegmentationDocuments ------------------------------------------------------------------------------

    def get_config(self) -> SegmentationConfig:
        with self._lock:
            document = self._document
        return SegmentationConfig.model_validate_json(document[1]) if document else SegmentationConfig()

    def put_config(self, config: SegmentationConfig, *, replaces: int | None) -> None:
        with self._lock:
            version = self._document[0] if self._document else None
            first = replaces is None or replaces == 1  # over nothing stored yet, or over version 1
            if not (version in (None, 1) if first else version == replaces):
                raise ConfigVersionConflict("the segmentation document changed meanwhile; read it again")
            self._document = (config.version, config.model_dump_json())

    # ---- Memberships -------------------------------------------------------------------------------------------

    def memberships_of(self, member_id: str) -> list[Membership]:
        with self._lock:
            found = [m for (owner, _), m in self._memberships.items() if owner == member_id]
        return sorted(found, key=lambda m: m.segment_id)

    def members_of(self, segment_id: str, limit: int, cursor: str | None) -> tuple[list[Membership], str | None]:
        shard, after = 0, ""
        if cursor:
            position = decode_cursor(cursor)
            raw_shard, raw_after = position.get("shard"), position.get("after")
            if not isinstance(raw_shard, int) or not 0 <= raw_shard < MEMBERSHIP_SHARDS:
                raise InvalidRequest("cursor is not one this API returned", field="cursor")
            if not isinstance(raw_after, str | None):
                raise InvalidRequest("cursor is not one this API returned", field="cursor")
            shard, after = raw_shard, raw_after or ""
        with self._lock:
            listed = sorted(
                ((membership_shard(m.member_id), m.member_id), m)
                for (_, segment), m in self._memberships.items()
                if segment == segment_id
            )
        following = [m for position, m in listed if position > (shard, after)]
        page = following[:limit]
        if len(page) < limit:
            return page, None
        last = page[-1]
        # As the index is read: a full page names where it stopped unless nothing can follow it (the last shard,
        # read to its end).
        more = len(following) > limit or membership_shard(last.member_id) + 1 < MEMBERSHIP_SHARDS
        return page, encode_cursor(
            {"shard": membership_shard(last.member_id), "after": last.member_id}
        ) if more else None

    # ---- PublishedModels ----------------------------------------------------------------------------------------

    def get_cut_points(self) -> PublishedCutPoints | None:
        with self._lock:
            return self._cut_points

    def put_cut_points(self, published: PublishedCutPoints) -> None:
        with self._lock:
            self._cut_points = published

    # ---- SegmentResults -------------------------------------------------------------------------------------------

    def put_segment_sizes(self, run_id: str, completed_at: datetime, sizes: dict[str, dict[str, Any]]) -> None:
        with self._lock:
            for segment_id, entry in sizes.items():
                item = {"segment_id": segment_id, "run_id": run_id, "as_of": completed_at, **entry}
                self._sizes.setdefault(segment_id, {})[f"{timestamp(completed_at)}#{run_id}"] = stored(item)

    def size_history(self, segment_id: str, limit: int) -> list[dict[str, Any]]:
        with self._lock:
            history = self._sizes.get(segment_id, {})
            return [copy.deepcopy(history[key]) for key in sorted(history, reverse=True)[:limit]]

    def put_latest(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._latest = stored(values)

    def get_latest(self) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._latest)


def _pinned(item: Mapping[str, Any], attribute: str, expected: int) -> bool:
    """The condition a segment write puts on a counter of the member item: equal to what was read, or absent when
    it was read as 0."""
    return item.get(attribute) is None if expected == 0 else item.get(attribute) == expected
