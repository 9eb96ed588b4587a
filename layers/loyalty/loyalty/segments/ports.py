"""What segmentation needs from storage, as typed ports: the segmentation service depends on these, never on a
store class. loyalty.adapters.dynamodb.segment_store implements them on the loyalty table (loyalty.runtime wires
it in); loyalty.adapters.memory.segment_store implements them in memory for the service's unit tests; one contract
suite (tests/integration/test_segment_store_contract.py) holds the two to the same behaviour.

Member items are plain dicts in the layout of loyalty.points.member_record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from loyalty.core.errors import LoyaltyError
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.prediction import PredictionModel
from loyalty.segments.rfm import RfmCutPoints

CHANGES_PER_WRITE = 49  # 1 member update + 2 items per change <= 100, DynamoDB's transaction limit
MEMBERSHIP_SHARDS = 16  # a segment's members are listed shard by shard (DynamoDB: one index partition each)


def membership_shard(member_id: str) -> int:
    """The shard a member is listed in, in every segment: listings go shard by shard, member id order within."""
    return int(hashlib.sha256(member_id.encode()).hexdigest()[:8], 16) % MEMBERSHIP_SHARDS


class StaleMember(LoyaltyError):
    """The member's facts or segments moved since they were read: read again and re-evaluate."""

    status = 409
    code = "stale_member"


@dataclass(frozen=True)
class Membership:
    member_id: str
    segment_id: str
    entered_at: str


@dataclass(frozen=True)
class AppliedChange:
    member_id: str
    entered: tuple[str, ...]
    left: tuple[str, ...]

    @property
    def changes(self) -> int:
        return len(self.entered) + len(self.left)

    @classmethod
    def between(cls, member_id: str, before: Iterable[str], after: Iterable[str]) -> AppliedChange:
        """The change that moves a member from the segments `before` to those `after`."""
        was, will = set(before), set(after)
        return cls(member_id, entered=tuple(sorted(will - was)), left=tuple(sorted(was - will)))

    def parts(self, before: Iterable[str]) -> Iterator[tuple[list[tuple[str, bool]], list[str]]]:
        """The writes that make this change, from the segments `before`: parts of at most CHANGES_PER_WRITE
        (segment, entered?) changes, each with the member's segments once it is written, so each part is complete
        and correct on its own."""
        changes = [(segment, True) for segment in self.entered] + [(segment, False) for segment in self.left]
        current = set(before)
        for start in range(0, len(changes), CHANGES_PER_WRITE):
            part = changes[start : start + CHANGES_PER_WRITE]
            for segment, joins in part:
                (current.add if joins else current.discard)(segment)
            yield part, sorted(current)


@dataclass(frozen=True)
class PublishedCutPoints:
    """The RFM cut points of the last refresh that finished pass one, for scoring members between refreshes, and
    the prediction model it fitted (None: too few members, or an older run)."""

    run_id: str
    as_of: str
    cut_points: RfmCutPoints | None
    model: PredictionModel | None = None


class MemberSegments(Protocol):
    """A member's item and the one write that moves their segments."""

    def get_member_item(self, member_id: str) -> dict[str, Any] | None:
        """The member item, read consistently (it reflects every write that completed before); None if absent."""
        ...

    def apply(self, member: Mapping[str, Any], after: Iterable[str], now: datetime, source: str) -> AppliedChange:
        """Move the member from the segments on `member` (the item as read) to `after`, with one SegmentEntered or
        SegmentLeft event per change and the membership items the segment listings read, pinned to the `revision`
        and `segments_version` of `member`: if either moved since (or the member is gone), raise StaleMember and
        write nothing of the part that lost. Each part of at most CHANGES_PER_WRITE changes is written whole or
        not at all, and moves `segments_version` by one; a member whose segments do not change is not written."""
        ...


class SegmentationDocuments(Protocol):
    def get_config(self) -> SegmentationConfig:
        """The stored document, or the defaults (version 1) when none was ever stored."""
        ...

    def put_config(self, config: SegmentationConfig, *, replaces: int | None) -> None:
        """Store `config` if the stored version is still `replaces` (None or 1: nothing stored yet, or version 1).
        A lost race raises ConfigVersionConflict; the caller reads again and reapplies its change."""
        ...


class Memberships(Protocol):
    def memberships_of(self, member_id: str) -> list[Membership]:
        """The member's segments with the moment each was entered, in segment id order."""
        ...

    def members_of(self, segment_id: str, limit: int, cursor: str | None) -> tuple[list[Membership], str | None]:
        """A page of at most `limit` members of a segment, in listing order (membership_shard, then member id),
        and the cursor of the next page: None when no member can follow (a full page may still be followed by an
        empty last one). Pages neither repeat nor skip a member present throughout; a cursor this method did not
        return raises InvalidRequest naming `cursor`."""
        ...


class PublishedModels(Protocol):
    def get_cut_points(self) -> PublishedCutPoints | None: ...

    def put_cut_points(self, published: PublishedCutPoints) -> None: ...


class SegmentResults(Protocol):
    """What a completed refresh leaves: each segment's size per run, and the latest run's sizes and KPIs."""

    def put_segment_sizes(self, run_id: str, completed_at: datetime, sizes: dict[str, dict[str, Any]]) -> None: ...

    def size_history(self, segment_id: str, limit: int) -> list[dict[str, Any]]:
        """A segment's recorded sizes, newest first: {segment_id, run_id, as_of, size, ...} each."""
        ...

    def put_latest(self, values: dict[str, Any]) -> None: ...

    def get_latest(self) -> dict[str, Any] | None: ...


class SegmentStorage(MemberSegments, SegmentationDocuments, Memberships, PublishedModels, SegmentResults, Protocol):
    """Everything the segmentation service reads and writes, refresh runs aside."""


class RefreshRuns(Protocol):
    """The refresh's own records (runs, the one-run slot, the shares' states, the roster scan), kept on DynamoDB by
    loyalty.segments.refresh while its state machine runs. Not part of the in-memory store."""

    def scan_roster(
        self, worker: int, workers: int, start_key: dict[str, Any] | None, page_size: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]: ...

    def create_run(
        self, run: dict[str, Any], *, still_running: Callable[[str], bool]
    ) -> tuple[dict[str, Any], bool]: ...

    def active_run(self) -> dict[str, Any] | None: ...

    def release_slot(self, run_id: str) -> None: ...

    def get_run(self, run_id: str) -> dict[str, Any] | None: ...

    def list_runs(self, limit: int) -> list[dict[str, Any]]: ...

    def update_run(
        self, run_id: str, *, expect_status: str | None = None, unless_status: str | None = None, **values: Any
    ) -> bool: ...

    def put_share_state(
        self, run_id: str, pass_number: int, worker: int, step: int, state: str, now: datetime
    ) -> None: ...

    def finish_share(self, run_id: str, pass_number: int, worker: int, state: str, now: datetime) -> bool: ...

    def share_state(self, run_id: str, pass_number: int, worker: int, step: int | None) -> str | None: ...


class SegmentRepository(SegmentStorage, RefreshRuns, Protocol):
    """The segmentation service's store where refreshes run too (the DynamoDB store)."""


class RunExecutions(Protocol):
    """The executions of the refresh's state machine, named by run id (loyalty.adapters.step_functions)."""

    def execution_arn(self, name: str) -> str: ...

    def start(self, name: str, job_input: Mapping[str, Any]) -> str: ...

    def status(self, arn: str) -> str | None: ...

    def is_running(self, arn: str) -> bool: ...
