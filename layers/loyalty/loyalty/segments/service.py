"""The segmentation service: what the admin routes, the member route and the segment-events function call.

It keeps a member's segments fresh between refreshes (re-evaluation with the last published RFM cut points), owns
the segmentation document marketers change without a deploy, and answers membership, size and KPI questions from
the index and the refresh's results; never by scanning. The refresh itself is loyalty.segments.refresh.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from loyalty.core.caching import TtlCache
from loyalty.core.errors import (
    ConfigVersionConflict,
    ConsentRequired,
    InvalidRequest,
    MemberNotFound,
    RefreshNotFound,
    SegmentNotFound,
    StoreContention,
    invalid_document,
)
from loyalty.core.instants import EARLIEST, timestamp
from loyalty.points.member_record import consent_of, revision_of
from loyalty.segments.assign import segment_catalog, segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.ports import (
    AppliedChange,
    Membership,
    PublishedCutPoints,
    RunExecutions,
    SegmentRepository,
    StaleMember,
)
from loyalty.segments.prediction import MemberPrediction, PredictionModel, member_prediction
from loyalty.segments.rules import SegmentDefinition

MAX_REEVALUATIONS = 5
MANUAL_AS_OF_AHEAD = timedelta(minutes=5)  # a run started by hand may be as of a moment this far past our clock


class SupersededImage(StaleMember):
    """A re-evaluation from a stream image lost its write to a change of the member's facts made after that image.
    The change that moved the member is a later record of the same stream, with a newer image, and that record
    re-evaluates the member: the caller acknowledges this one (docs/refresh.md, "Fresh between refreshes")."""

    def __init__(self, member_id: str, image_revision: int, current_revision: int):
        super().__init__(
            f"member {member_id} moved from revision {image_revision} to {current_revision} while its segments were "
            "evaluated; the record of that change re-evaluates it",
            details={"member_id": member_id, "image_revision": image_revision, "current_revision": current_revision},
        )
        self.member_id = member_id
        self.image_revision = image_revision
        self.current_revision = current_revision


FINISHED = ("complete", "failed")
ENDED_EXECUTION = ("FAILED", "TIMED_OUT", "ABORTED")


class SegmentationService:
    """Built on its storage port (loyalty.segments.ports): the DynamoDB store in the functions (loyalty.runtime),
    the in-memory store in unit tests."""

    def __init__(
        self,
        segments: SegmentRepository,
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.segments = segments
        self._clock = clock
        self.config = TtlCache(self.segments.get_config, cache_seconds)
        self.published = TtlCache(lambda: (self.segments.get_cut_points(),), cache_seconds)

    # ---- fresh between refreshes -------------------------------------------------------------------------

    def reevaluate(
        self, member_item: Mapping[str, Any], *, source: str = "activity", later_changes_follow: bool = False
    ) -> AppliedChange:
        """Re-evaluate a member from their item (a stream image or a read) and write what changed, exactly once.

        A write that loses its condition (the member's facts moved, or another evaluator wrote first) is followed by
        a consistent read of the member. With `later_changes_follow` (the stream consumer: every later change of the
        member's facts reaches it as a later record, with its own image) a read that shows newer facts than the image
        raises SupersededImage: that later record re-evaluates the member, so this one is done. Otherwise, and when
        only the segments moved at the same revision, the member is evaluated again from the read, up to
        MAX_REEVALUATIONS times; then StaleMember."""
        member_id = str(member_item["member_id"])
        image_revision = revision_of(member_item)
        item: dict[str, Any] = dict(member_item)
        for _ in range(MAX_REEVALUATIONS):
            now = self._clock()
            after = self.evaluate(item, now)
            try:
                return self.segments.apply(item, after, now, source)
            except (StaleMember, StoreContention):
                fresh = self.segments.get_member_item(member_id)
            if fresh is None:  # erased meanwhile: nothing to keep fresh
                return AppliedChange(member_id, (), ())
            if later_changes_follow and revision_of(fresh) > image_revision:
                raise SupersededImage(member_id, image_revision, revision_of(fresh))
            item = fresh
        raise StaleMember(
            f"member {member_id}: segments not written in {MAX_REEVALUATIONS} evaluations, the last at revision "
            f"{revision_of(item)}",
            details={"member_id": member_id, "image_revision": image_revision, "current_revision": revision_of(item)},
        )

    def evaluate(self, member_item: Mapping[str, Any], as_of: datetime) -> set[str]:
        config = self.config.get()
        (published,) = self.published.get()
        cut_points = published.cut_points if published is not None else None
        model = published.model if published is not None else None
        return segments_of(features_of(member_item, as_of, config), cut_points, config, model)

    # ---- the segmentation document ---------------------------------------------------------------------

    def document(self) -> SegmentationConfig:
        return self.segments.get_config()

    def replace_document(self, document: Mapping[str, Any], if_version: int) -> SegmentationConfig:
        """Replace the whole document (thresholds, RFM map, rule segments). `if_version` must be the stored
        version: a marketer never silently overwrites a colleague's change."""
        current = self.segments.get_config()
        if current.version != if_version:
            raise ConfigVersionConflict(
                f"the document is at version {current.version}, not {if_version}; read it again",
                details={"version": current.version},
            )
        try:
            config = SegmentationConfig.model_validate({**document, "version": current.version + 1})
        except ValidationError as error:
            raise invalid_document(error) from None
        self.segments.put_config(config, replaces=current.version)
        self.config.clear()
        return config

    def put_rule_segment(self, document: Mapping[str, Any]) -> tuple[SegmentDefinition, bool]:
        """Create or replace one marketer-defined segment; (definition, created). Applied at once to members as
        their events arrive, and to everyone at the next refresh."""
        definition = SegmentDefinition.parse(dict(document))  # InvalidRule: a 422 naming every problem
        for _ in range(MAX_REEVALUATIONS):
            current = self.segments.get_config()
            others = [d for d in current.rule_segments if d.segment_id != definition.segment_id]
            created = len(others) == len(current.rule_segments)
            previous = next((d for d in current.rule_segments if d.segment_id == definition.segment_id), None)
            stored = definition.model_copy(update={"version": (previous.version + 1) if previous else 1})
            config = current.model_copy(update={"version": current.version + 1, "rule_segments": (*others, stored)})
            try:
                config = SegmentationConfig.model_validate(config.model_dump(mode="json"))  # limits hold
            except ValidationError as error:
                raise invalid_document(error) from None
            try:
                self.segments.put_config(config, replaces=current.version)
            except ConfigVersionConflict:
                continue
            self.config.clear()
            return stored, created
        raise ConfigVersionConflict("the segmentation document kept changing; retry")

    def delete_rule_segment(self, segment_id: str) -> None:
        for _ in range(MAX_REEVALUATIONS):
            current = self.segments.get_config()
            kept = tuple(d for d in current.rule_segments if d.segment_id != segment_id)
            if len(kept) == len(current.rule_segments):
                raise SegmentNotFound(f"no rule segment {segment_id!r}", field="segment_id")
            config = current.model_copy(update={"version": current.version + 1, "rule_segments": kept})
            try:
                self.segments.put_config(config, replaces=current.version)
            except ConfigVersionConflict:
                continue
            self.config.clear()
            return
        raise ConfigVersionConflict("the segmentation document kept changing; retry")

    # ---- membership, sizes, KPIs ---------------------------------------------------------------------

    def known_segment(self, segment_id: str) -> None:
        if segment_id not in segment_catalog(self.segments.get_config()):
            raise SegmentNotFound(f"no segment {segment_id!r}", field="segment_id")

    def member_segments(self, member_id: str) -> list[Membership]:
        return sorted(self.segments.memberships_of(member_id), key=lambda m: m.segment_id)

    def segment_members(self, segment_id: str, limit: int, cursor: str | None) -> tuple[list[Membership], str | None]:
        self.known_segment(segment_id)
        return self.segments.members_of(segment_id, limit, cursor)

    def catalog(self) -> list[dict[str, Any]]:
        """Every segment the document can assign, with its size and KPIs at the last refresh (0 if empty)."""
        config = self.segments.get_config()
        latest = self.segments.get_latest() or {}
        sizes = json.loads(latest.get("sizes") or "{}")
        kpis = json.loads(latest.get("kpis") or "{}")
        names = _segment_names(config)
        return [
            {
                "segment_id": segment_id,
                "name": names.get(segment_id, segment_id),
                "size": int(sizes.get(segment_id, 0)),
                "kpis": kpis.get(f"segment:{segment_id}"),
                "as_of": latest.get("as_of"),
                "run_id": latest.get("run_id"),
            }
            for segment_id in segment_catalog(config)
        ]

    def segment(self, segment_id: str, history: int) -> dict[str, Any]:
        config = self.segments.get_config()
        if segment_id not in segment_catalog(config):
            raise SegmentNotFound(f"no segment {segment_id!r}", field="segment_id")
        definition = next(
            (d.document() for d in config.rule_segments if f"rule:{d.segment_id}" == segment_id),
            None,
        )
        sizes = [
            {"run_id": h["run_id"], "as_of": h["as_of"], "size": int(h["size"])}
            for h in self.segments.size_history(segment_id, history)
        ]
        return {
            "segment_id": segment_id,
            "name": _segment_names(config).get(segment_id, segment_id),
            "definition": definition,
            "size": sizes[0]["size"] if sizes else 0,
            "history": sizes,
        }

    def analytics(self) -> dict[str, Any]:
        """KPIs overall, per tier and per segment, from the last completed refresh."""
        latest = self.segments.get_latest()
        if latest is None:
            return {"run_id": None, "as_of": None, "overall": None, "tiers": {}, "segments": {}}
        kpis: dict[str, Any] = json.loads(latest.get("kpis") or "{}")
        return {
            "run_id": latest["run_id"],
            "as_of": latest["as_of"],
            "overall": kpis.get("all"),
            "tiers": {k.removeprefix("tier:"): v for k, v in sorted(kpis.items()) if k.startswith("tier:")},
            "segments": {k.removeprefix("segment:"): v for k, v in sorted(kpis.items()) if k.startswith("segment:")},
        }

    # ---- refresh runs (started here, carried out by the state machine's tasks: loyalty.segments.refresh) --------

    def refresh_run(self, run_id: str, executions: RunExecutions | None = None) -> dict[str, Any]:
        run = self.segments.get_run(run_id)
        if run is None:
            raise RefreshNotFound(f"no refresh {run_id!r}", field="run_id")
        return public_run(run, _execution_status(run, executions))

    def refresh_runs(self, limit: int, executions: RunExecutions | None = None) -> list[dict[str, Any]]:
        return [public_run(run, _execution_status(run, executions)) for run in self.segments.list_runs(limit)]

    def new_run(
        self,
        run_id: str,
        as_of: datetime,
        workers: int,
        requested_by: str,
        *,
        execution_arn: str = "",
        still_running: Callable[[str], bool] = lambda _arn: True,
    ) -> tuple[dict[str, Any], bool]:
        """Record a run (snapshotting the document, so every share segments by the same rules) under the execution
        that carries it, and take the one-run-at-a-time slot. (run, created): the same run id again returns the
        recorded run. `still_running` asks Step Functions whether the execution of the run holding the slot still
        runs (without it, a held slot is taken to be in use)."""
        now = self._clock()
        config = self.segments.get_config()
        run = {
            "run_id": run_id,
            "status": "scanning",
            "as_of": timestamp(as_of),
            "workers": workers,
            "requested_by": requested_by,
            "started_at": timestamp(now),
            "execution_arn": execution_arn,
            "config": config.model_dump_json(),
            "config_version": config.version,
            "pass1_done": 0,
            "pass2_done": 0,
        }
        return self.segments.create_run(run, still_running=still_running)

    def start_refresh(
        self, executions: RunExecutions, run_id: str, as_of: datetime, workers: int, requested_by: str
    ) -> tuple[dict[str, Any], bool]:
        """Record a run and start its execution (named by the run id), or return the run already recorded under
        `run_id` (created False). A run recorded but not yet carried (its start died before StartExecution) is
        started again; Step Functions runs one execution per name, so a repeated start runs nothing twice."""
        arn = executions.execution_arn(run_id)
        run, created = self.new_run(
            run_id, as_of, workers, requested_by, execution_arn=arn, still_running=executions.is_running
        )
        if run.get("execution_arn") == arn and run["status"] not in FINISHED:
            executions.start(run_id, {"run_id": run_id})
        return public_run(run), created

    def publish_cut_points(self, published: PublishedCutPoints) -> None:
        self.segments.put_cut_points(published)
        self.published.clear()

    # ---- predictions (docs/prediction.md) ---------------------------------------------------------------------

    def member_prediction(self, member_id: str) -> MemberPrediction:
        """The member's predictions now, from their item (one GetItem) and the last published model (cached):
        probability alive and expected purchases in 90 days (None until a refresh has fitted a model), expected spend
        per purchase and in 90 days (None also without a Gamma-Gamma fit or enough history), the expected next
        purchase from their own rhythm, and prediction:churn-risk's verdict. Unknown member: MemberNotFound; a
        member who has not consented to profiling: ConsentRequired (409), since a prediction is profiling (docs/
        members.md)."""
        item = self.segments.get_member_item(member_id)
        if item is None:
            raise MemberNotFound(f"member {member_id} not found", field="member_id")
        if not consent_of(item).profiling:
            raise ConsentRequired(
                f"member {member_id} has not consented to profiling: no prediction is made for them",
                details={"consent": "profiling"},
            )
        (published,) = self.published.get()
        model = published.model if published is not None else None
        return member_prediction(item, self._clock(), model, config=self.config.get().prediction)

    # ---- what the API routes add (functions/admin_api, functions/members_api) ------------------------------

    def manual_as_of(self, requested: datetime | None) -> datetime:
        """The as-of moment of a run started by hand: now when not given; a moment more than a few minutes past
        our clock (a client clock ahead of ours) or before 1970 is refused, naming `as_of`."""
        now = self._clock()
        if requested is None:
            return now
        if requested > now + MANUAL_AS_OF_AHEAD:
            raise InvalidRequest("as_of is in the future", field="as_of")
        if requested < EARLIEST:
            raise InvalidRequest("as_of is before 1970", field="as_of")
        return requested.astimezone(UTC)

    def segments_of_member(self, member_id: str) -> list[Membership]:
        """member_segments for the member route: an unknown member is a 404, as on the member's other routes. Only
        an empty answer costs the extra read (every evaluated member who consented to profiling is in a lifecycle
        stage; one who has not may be in no segment at all)."""
        found = self.member_segments(member_id)
        if not found and self.segments.get_member_item(member_id) is None:
            raise MemberNotFound(f"member {member_id} not found", field="member_id")
        return found


def manual_run_id(idempotency_key: str) -> str:
    """A run started by hand is named by its Idempotency-Key, so a retried request finds the same run."""
    return "manual-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def scheduled_run_id(moment: datetime) -> str:
    """One scheduled run per UTC day, however often the schedule's event is delivered."""
    return f"scheduled-{moment.astimezone(UTC):%Y-%m-%d}"


_PUBLIC_RUN_FIELDS = (
    "run_id",
    "status",
    "as_of",
    "workers",
    "requested_by",
    "started_at",
    "completed_at",
    "config_version",
    "pass1_done",
    "pass2_done",
    "members",
    "members_read",
    "members_without_profiling",
    "changed_members",
    "changes",
    "stale_members",
)


def _execution_status(run: Mapping[str, Any], executions: RunExecutions | None) -> str | None:
    """What Step Functions says of an unfinished run's execution (None: not asked, or no such execution)."""
    if executions is None or run.get("status") in FINISHED or not run.get("execution_arn"):
        return None
    return executions.status(str(run["execution_arn"]))


def public_run(run: Mapping[str, Any], execution_status: str | None = None) -> dict[str, Any]:
    """A run item as the admin API shows it: progress and counts, the RFM cut points and the prediction model the
    run fitted at the end of pass one (`model`: null before then, and when it fitted none; docs/prediction.md).
    The record's status is kept by the run's tasks; a run whose execution ended without finishing it (failed after
    its retries, timed out, stopped) is shown as failed."""
    public = {name: run.get(name) for name in _PUBLIC_RUN_FIELDS}
    if execution_status in ENDED_EXECUTION and public["status"] not in FINISHED:
        public["status"] = "failed"
    for name in (
        "workers",
        "config_version",
        "pass1_done",
        "pass2_done",
        "members",
        "members_read",
        "members_without_profiling",
        "changed_members",
        "changes",
        "stale_members",
    ):
        value = public[name]
        if value is not None:
            public[name] = int(value)
    public["cut_points"] = json.loads(run["cut_points"]) if run.get("cut_points") else None
    model = run.get("model")  # the refresh writes the PredictionModel's JSON, or "" when it fitted none
    public["model"] = PredictionModel.model_validate_json(model).model_dump(mode="json") if model else None
    return public


def _segment_names(config: SegmentationConfig) -> dict[str, str]:
    names = {f"rfm:{s.segment_id}": s.name for s in config.rfm_map.segments}
    names.update({f"rule:{d.segment_id}": d.name for d in config.rule_segments})
    for segment_id in segment_catalog(config):
        if segment_id not in names:
            names[segment_id] = segment_id.split(":", 1)[1].replace("-", " ").capitalize()
    return names
