"""The segmentation items of the loyalty table (docs/refresh.md): the segmentation document, the cut points the last
refresh published, memberships and their events, refresh runs and the states their shares hand on, and size history.

Membership changes are the one write that must be exactly once: a member's segment set lives on the member item
(`segments`, `segments_version`), and each change is ONE transaction that moves that set, puts or deletes the
membership items (the `SegmentMembers` index) and puts one SegmentEntered / SegmentLeft event item per change, all
pinned to the member's `revision` (the facts the segments were computed from) and `segments_version`. A writer with
a stale view loses the transaction and nothing is written, so two evaluators racing on one member can never both
emit the same change. The transaction also records that revision as `segments_revision`: a member item whose
`segments_revision` equals its `revision` holds the segments of the facts it carries (member_record.is_settled).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from loyalty.adapters.dynamodb.points_store import ROSTER_INDEX, LoyaltyStore, member_key
from loyalty.adapters.dynamodb.table import (
    TTL_ATTRIBUTE,
    Cancelled,
    decode_cursor,
    encode_cursor,
    from_item,
    key,
    to_item,
)
from loyalty.core import ids
from loyalty.core.errors import ConfigVersionConflict, InvalidRequest, RefreshInProgress
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
from loyalty.segments.prediction import PredictionModel
from loyalty.segments.rfm import RfmCutPoints

MEMBERSHIP_INDEX = "SegmentMembers"  # its hash key is "<segment id>#<membership_shard>", its range key the member id
SEGMENT_EVENT_TTL_SECONDS = 7 * 24 * 3600  # event items only exist to reach the stream
SHARE_STATE_TTL_SECONDS = 30 * 24 * 3600  # a refresh's share states outlive its run only to be looked at


class SegmentStore:
    """Segmentation's share of the loyalty table (loyalty.segments.ports: SegmentStorage and RefreshRuns). Built on
    the LoyaltyStore's client, table and transactions."""

    def __init__(self, store: LoyaltyStore):
        self._store = store
        self._io = store.table
        self._client = store.client
        self._table = store.table_name

    # ---- the segmentation document ---------------------------------------------------------------------

    def get_config(self) -> SegmentationConfig:
        """The stored document, or the defaults (version 1) when none was ever stored."""
        item = self._io.get(key("SEGMENTS", "CONFIG"))
        return SegmentationConfig.model_validate_json(item["document"]) if item else SegmentationConfig()

    def put_config(self, config: SegmentationConfig, *, replaces: int | None) -> None:
        """Store `config` if the stored version is still `replaces` (None: nothing stored yet, or version 1 of the
        defaults). A lost race raises ConfigVersionConflict; the caller reads again and reapplies its change."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Item": {
                **key("SEGMENTS", "CONFIG"),
                **to_item({"version": config.version, "document": config.model_dump_json()}),
            },
        }
        if replaces is None or replaces == 1:
            request["ConditionExpression"] = "attribute_not_exists(PK) OR version = :v"
            request["ExpressionAttributeValues"] = {":v": {"N": "1"}}
        else:
            request["ConditionExpression"] = "version = :v"
            request["ExpressionAttributeValues"] = {":v": {"N": str(replaces)}}
        try:
            self._client.put_item(**request)
        except self._client.exceptions.ConditionalCheckFailedException:
            raise ConfigVersionConflict("the segmentation document changed meanwhile; read it again") from None

    # ---- cut points ---------------------------------------------------------------------------------------

    def get_cut_points(self) -> PublishedCutPoints | None:
        item = self._io.get(key("SEGMENTS", "CUTPOINTS"))
        if item is None:
            return None
        raw = json.loads(item["cut_points"]) if item.get("cut_points") else None
        cut_points = RfmCutPoints.model_validate(raw) if raw else None
        model = PredictionModel.model_validate_json(item["model"]) if item.get("model") else None
        return PublishedCutPoints(run_id=item["run_id"], as_of=item["as_of"], cut_points=cut_points, model=model)

    def put_cut_points(self, published: PublishedCutPoints) -> None:
        cut_points = published.cut_points.model_dump_json() if published.cut_points else ""
        model = published.model.model_dump_json() if published.model else ""
        values = {"run_id": published.run_id, "as_of": published.as_of, "cut_points": cut_points, "model": model}
        self._client.put_item(TableName=self._table, Item={**key("SEGMENTS", "CUTPOINTS"), **to_item(values)})

    # ---- memberships ---------------------------------------------------------------------------------------

    def apply(self, member: Mapping[str, Any], after: Iterable[str], now: datetime, source: str) -> AppliedChange:
        """Move the member from the segments on `member` (the item as read) to `after`. Raises StaleMember when the
        member's revision or segments moved since `member` was read; nothing is written then."""
        before = record.stored_segments(member)
        change = AppliedChange.between(str(member[record.MEMBER_ID]), before, after)
        member_id = change.member_id
        revision = record.revision_of(member)
        version = record.segments_version_of(member)
        for part, segments in change.parts(before):
            items = [self._member_segments_update(member_id, segments, revision, version, now)]
            for segment, joins in part:
                items.append(
                    self._membership_put(member_id, segment, now)
                    if joins
                    else self._membership_delete(member_id, segment)
                )
                items.append(self._event_put(member_id, segment, joins, now, source))
            try:
                self._io.transact(items)
            except Cancelled:
                raise StaleMember(f"member {member_id} changed while its segments were evaluated") from None
            version += 1
        return change

    def _member_segments_update(
        self, member_id: str, segments: list[str], revision: int, version: int, now: datetime
    ) -> dict[str, Any]:
        names = {
            "#segments": record.SEGMENTS,
            "#version": record.SEGMENTS_VERSION,
            "#revision": record.REVISION,
            "#evaluated": record.SEGMENTS_EVALUATED_AT,
            "#settled": record.SEGMENTS_REVISION,
        }
        values: dict[str, Any] = {
            ":segments": {"L": [{"S": s} for s in segments]},
            ":next": {"N": str(version + 1)},
            ":at": {"S": timestamp(now)},
            ":revision": {"N": str(revision)},
        }
        revision_condition = "#revision = :revision" if revision else "attribute_not_exists(#revision)"
        if version:
            version_condition = "#version = :version"
            values[":version"] = {"N": str(version)}
        else:
            version_condition = "attribute_not_exists(#version)"
        return {
            "Update": {
                "TableName": self._table,
                "Key": member_key(member_id),
                "UpdateExpression": (
                    "SET #segments = :segments, #version = :next, #evaluated = :at, #settled = :revision"
                ),
                "ConditionExpression": f"attribute_exists(PK) AND {revision_condition} AND {version_condition}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }

    def _membership_put(self, member_id: str, segment_id: str, now: datetime) -> dict[str, Any]:
        values = {
            "member_id": member_id,
            "segment_id": segment_id,
            "entered_at": now,
            "segment_shard": f"{segment_id}#{membership_shard(member_id):02d}",
            "segment_member": member_id,
        }
        return {
            "Put": {
                "TableName": self._table,
                "Item": {**key(f"MEMBER#{member_id}", f"SEGMENT#{segment_id}"), **to_item(values)},
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def _membership_delete(self, member_id: str, segment_id: str) -> dict[str, Any]:
        return {
            "Delete": {
                "TableName": self._table,
                "Key": key(f"MEMBER#{member_id}", f"SEGMENT#{segment_id}"),
                "ConditionExpression": "attribute_exists(PK)",
            }
        }

    def _event_put(self, member_id: str, segment_id: str, entered: bool, now: datetime, source: str) -> dict[str, Any]:
        event_id = ids.ulid()
        values = {
            "event_id": event_id,
            "event_type": EventType.SEGMENT_ENTERED if entered else EventType.SEGMENT_LEFT,
            "member_id": member_id,
            "segment_id": segment_id,
            "occurred_at": now,
            "source": source,
            TTL_ATTRIBUTE: int(now.timestamp()) + SEGMENT_EVENT_TTL_SECONDS,
        }
        return {
            "Put": {
                "TableName": self._table,
                "Item": {**key(f"MEMBER#{member_id}", f"SEGEVENT#{event_id}"), **to_item(values)},
                "ConditionExpression": "attribute_not_exists(PK)",
            }
        }

    def memberships_of(self, member_id: str) -> list[Membership]:
        """The member's segments with the moment each was entered: one Query in the member's partition."""
        found: list[Membership] = []
        request: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": f"MEMBER#{member_id}"}, ":prefix": {"S": "SEGMENT#"}},
        }
        while True:
            page = self._client.query(**request)
            for raw in page.get("Items", []):
                item = from_item(raw)
                found.append(Membership(member_id, str(item["segment_id"]), str(item["entered_at"])))
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def members_of(self, segment_id: str, limit: int, cursor: str | None) -> tuple[list[Membership], str | None]:
        """A page of a segment's members from the SegmentMembers index, shard by shard (member id order within a
        shard). The cursor names the shard and the last member id returned."""
        shard: int = 0
        after: str | None = None
        if cursor:
            decoded = decode_cursor(cursor)
            raw_shard, raw_after = decoded.get("shard"), decoded.get("after")
            if not isinstance(raw_shard, int) or not 0 <= raw_shard < MEMBERSHIP_SHARDS:
                raise InvalidRequest("cursor is not one this API returned", field="cursor")
            if not isinstance(raw_after, str | None):
                raise InvalidRequest("cursor is not one this API returned", field="cursor")
            shard, after = raw_shard, raw_after
        found: list[Membership] = []
        while shard < MEMBERSHIP_SHARDS:
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": MEMBERSHIP_INDEX,
                "KeyConditionExpression": "segment_shard = :shard" + (" AND segment_member > :after" if after else ""),
                "ExpressionAttributeValues": {":shard": {"S": f"{segment_id}#{shard:02d}"}},
                "Limit": limit - len(found),
            }
            if after:
                request["ExpressionAttributeValues"][":after"] = {"S": after}
            page = self._client.query(**request)
            for raw in page.get("Items", []):
                item = from_item(raw)
                found.append(Membership(str(item["segment_member"]), segment_id, str(item.get("entered_at", ""))))
            if len(found) >= limit:
                last = found[-1].member_id
                if "LastEvaluatedKey" in page or shard + 1 < MEMBERSHIP_SHARDS:
                    return found, encode_cursor({"shard": shard, "after": last})
                return found, None
            if "LastEvaluatedKey" in page:
                after = str(from_item(page["LastEvaluatedKey"])["segment_member"])
                continue
            shard, after = shard + 1, None
        return found, None

    # ---- the roster scan (refresh only) -----------------------------------------------------------------

    def scan_roster(
        self, worker: int, workers: int, start_key: dict[str, Any] | None, page_size: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of this worker's share of the member items (the sparse MemberRoster index: member items only,
        never ledger entries). Returns the plain items and the key to continue from (None: share finished)."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": ROSTER_INDEX,
            "Segment": worker,
            "TotalSegments": workers,
            "Limit": page_size,
        }
        if start_key:
            request["ExclusiveStartKey"] = start_key
        page = self._client.scan(**request)
        return [from_item(raw) for raw in page.get("Items", [])], page.get("LastEvaluatedKey")

    def get_member_item(self, member_id: str) -> dict[str, Any] | None:
        return self._io.get(member_key(member_id))

    # ---- refresh runs ------------------------------------------------------------------------------------------

    def create_run(self, run: dict[str, Any], *, still_running: Callable[[str], bool]) -> tuple[dict[str, Any], bool]:
        """Record a new run and take the one-run-at-a-time slot (`SEGMENTS` / `ACTIVE_REFRESH`, naming the run and
        its execution), or return the run already recorded under this id (created False).

        The slot is released by the run's last task. A run whose execution ended without getting there (it failed,
        timed out or was stopped) leaves it held; Step Functions is asked, through `still_running(execution arn)`,
        whether that execution still runs: if it does, RefreshInProgress; if not, the slot is taken over (on the
        condition that it still names that run) and the abandoned run is recorded as failed."""
        run_id = run["run_id"]
        held: dict[str, Any] | None = None
        for _ in range(3):
            slot: dict[str, Any] = {
                "Put": {
                    "TableName": self._table,
                    "Item": {
                        **key("SEGMENTS", "ACTIVE_REFRESH"),
                        **to_item(
                            {"run_id": run_id, "execution_arn": run["execution_arn"], "started_at": run["started_at"]}
                        ),
                    },
                    "ConditionExpression": "attribute_not_exists(PK)",
                }
            }
            if held is not None:
                slot["Put"]["ConditionExpression"] = "run_id = :held"
                slot["Put"]["ExpressionAttributeValues"] = {":held": {"S": str(held["run_id"])}}
            items = [
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {**self._run_key(run_id), **to_item(run)},
                        "ConditionExpression": "attribute_not_exists(PK)",
                    }
                },
                {
                    "Put": {
                        "TableName": self._table,
                        "Item": {**key("REFRESHES", f"{run['started_at']}#{run_id}"), **to_item({"run_id": run_id})},
                    }
                },
                slot,
            ]
            try:
                self._io.transact(items)
            except Cancelled as cancelled:
                existing = self.get_run(run_id)
                if existing is not None:
                    return existing, False
                if not cancelled.failed(2):
                    raise
                held = self.active_run()
                if held is None:
                    continue  # released meanwhile: try again for a free slot
                if still_running(str(held.get("execution_arn") or "")):
                    raise RefreshInProgress(
                        f"refresh {held['run_id']} is still running", details={"run_id": held["run_id"]}
                    ) from None
                self.update_run(str(held["run_id"]), unless_status="complete", status="failed")
                continue
            if held is not None:
                self.update_run(str(held["run_id"]), unless_status="complete", status="failed")
            return run, True
        raise RefreshInProgress("the refresh slot kept changing hands; retry")

    def active_run(self) -> dict[str, Any] | None:
        """The run that holds the one-run-at-a-time slot, if any: {run_id, execution_arn, started_at}."""
        return self._io.get(key("SEGMENTS", "ACTIVE_REFRESH"))

    def release_slot(self, run_id: str) -> None:
        # A run that took the slot over from this one keeps it: the condition leaves theirs alone.
        with contextlib.suppress(self._client.exceptions.ConditionalCheckFailedException):
            self._client.delete_item(
                TableName=self._table,
                Key=key("SEGMENTS", "ACTIVE_REFRESH"),
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": {"S": run_id}},
            )

    @staticmethod
    def _run_key(run_id: str) -> dict[str, Any]:
        return key(f"REFRESH#{run_id}", "RUN")

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        return self._io.get(self._run_key(run_id))

    def list_runs(self, limit: int) -> list[dict[str, Any]]:
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "REFRESHES"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        runs = (self.get_run(str(from_item(raw)["run_id"])) for raw in page.get("Items", []))
        return [run for run in runs if run is not None]

    def update_run(
        self, run_id: str, *, expect_status: str | None = None, unless_status: str | None = None, **values: Any
    ) -> bool:
        """SET `values` on the run; with `expect_status`, only if the run is in that status; with `unless_status`,
        only if it is not. True if written."""
        names = {f"#a{i}": name for i, name in enumerate(values)}
        encoded = to_item({f":v{i}": value for i, value in enumerate(values.values())})
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._run_key(run_id),
            "UpdateExpression": "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": encoded,
            "ConditionExpression": "attribute_exists(PK)",
        }
        for status, condition, placeholder in (
            (expect_status, " AND #status = :expected", ":expected"),
            (unless_status, " AND #status <> :unless", ":unless"),
        ):
            if status is not None:
                request["ConditionExpression"] += condition
                request["ExpressionAttributeNames"]["#status"] = "status"
                request["ExpressionAttributeValues"][placeholder] = {"S": status}
        try:
            self._client.update_item(**request)
            return True
        except self._client.exceptions.ConditionalCheckFailedException:
            return False

    # ---- a share's state (what a Map iteration returns a pointer to) -----------------------------------------

    @staticmethod
    def _share_key(run_id: str, pass_number: int, worker: int, step: int | None) -> dict[str, Any]:
        suffix = "DONE" if step is None else f"{step:06d}"
        return key(f"REFRESH#{run_id}", f"PART#{pass_number}#{worker:04d}#{suffix}")

    def put_share_state(self, run_id: str, pass_number: int, worker: int, step: int, state: str, now: datetime) -> None:
        """A share's state after `step` steps, for its continuation. One item per step: a task retried after writing
        it writes the same step again, and never overwrites the state its own input points at."""
        values = {"run_id": run_id, "state": state, TTL_ATTRIBUTE: int(now.timestamp()) + SHARE_STATE_TTL_SECONDS}
        self._client.put_item(
            TableName=self._table, Item={**self._share_key(run_id, pass_number, worker, step), **to_item(values)}
        )

    def finish_share(self, run_id: str, pass_number: int, worker: int, state: str, now: datetime) -> bool:
        """A share's final state, and the run's count of finished shares of the pass (its progress), in one
        transaction: a retried task finds the state recorded and counts nothing twice. False when it was."""
        values = {"run_id": run_id, "state": state, TTL_ATTRIBUTE: int(now.timestamp()) + SHARE_STATE_TTL_SECONDS}
        put = {
            "TableName": self._table,
            "Item": {**self._share_key(run_id, pass_number, worker, None), **to_item(values)},
            "ConditionExpression": "attribute_not_exists(PK)",
        }
        count = {
            "TableName": self._table,
            "Key": self._run_key(run_id),
            "UpdateExpression": "ADD #done :one",
            "ExpressionAttributeNames": {"#done": f"pass{pass_number}_done"},
            "ExpressionAttributeValues": {":one": {"N": "1"}},
            "ConditionExpression": "attribute_exists(PK)",
        }
        try:
            self._io.transact([{"Put": put}, {"Update": count}])
            return True
        except Cancelled:
            return False

    def share_state(self, run_id: str, pass_number: int, worker: int, step: int | None) -> str | None:
        """The state stored after `step` steps of a share (None: its final state)."""
        item = self._io.get(self._share_key(run_id, pass_number, worker, step))
        return str(item["state"]) if item else None

    # ---- results -------------------------------------------------------------------------------------------

    def put_segment_sizes(self, run_id: str, completed_at: datetime, sizes: dict[str, dict[str, Any]]) -> None:
        """One history item per segment per run (SEGMENT#<id> / SIZE#<completed_at>#<run_id>)."""
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        **key(f"SEGMENT#{segment_id}", f"SIZE#{timestamp(completed_at)}#{run_id}"),
                        **to_item({"segment_id": segment_id, "run_id": run_id, "as_of": completed_at, **entry}),
                    }
                }
            }
            for segment_id, entry in sorted(sizes.items())
        ]
        for start in range(0, len(requests), 25):
            pending = {self._table: requests[start : start + 25]}
            for _ in range(8):
                unprocessed = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not unprocessed:
                    break
                pending = unprocessed

    def size_history(self, segment_id: str, limit: int) -> list[dict[str, Any]]:
        page = self._client.query(
            TableName=self._table,
            KeyConditionExpression="PK = :pk AND begins_with(SK, :prefix)",
            ExpressionAttributeValues={":pk": {"S": f"SEGMENT#{segment_id}"}, ":prefix": {"S": "SIZE#"}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [from_item(raw) for raw in page.get("Items", [])]

    def put_latest(self, values: dict[str, Any]) -> None:
        self._client.put_item(TableName=self._table, Item={**key("SEGMENTS", "LATEST"), **to_item(values)})

    def get_latest(self) -> dict[str, Any] | None:
        return self._io.get(key("SEGMENTS", "LATEST"))
