"""The segment refresh's steps: what each task of the state machine statemachines/segment_refresh.asl.json does
(docs/refresh.md). Step Functions carries the run: it fans the shares out, waits for all of them, retries a failed
task and loops a continuation back; nothing here coordinates workers.

    begin        record the run (document snapshot, as-of) under the execution carrying it, take the one-run slot,
                 and hand out one share per worker: segment k of N of the MemberRoster scan
    scan         pass one for a share: its members' exact, mergeable RfmSummary and a bounded hash sample of BG/NBD
                 rows (BgNbdSample), page by page, of the members who consented to profiling (the others are
                 counted, and left out of both: docs/segments.md, "Profiling consent")
    merge        merge the shares' summaries into the global cut points, fit the prediction model on the merged
                 sample, publish both (the API scores members with them from then on), hand out pass two's shares
    score        pass two for a share: score its members, write only the memberships that changed (one transaction
                 per changed member, with its SegmentEntered/SegmentLeft events), sum sizes and KPIs
    finish       merge the shares' sums, write the size history and the KPIs, complete the run, free the slot

A share near its invocation's deadline stores its state so far and returns a continuation (the share with its next
step and where its scan stopped); the definition's Choice sends it back to the same task. A share's state is stored
in the table and the share returned is its pointer: a Map's results are all its shares' outputs in one payload, and
a state payload is capped at 256 KB, which the BG/NBD sample alone (about 100 KB per share) would break. Every task
is safe to run again: a state is stored per step and read from the step the input names, a finished share is
recorded once, and a membership write compares with the member's current segments, so a replayed page writes
nothing new.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from loyalty.core.errors import InvalidRequest, RefreshNotFound
from loyalty.core.instants import timestamp
from loyalty.segments.assign import is_profiled, segment_catalog, segments_given_rfm, segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import MemberFeatures, features_of
from loyalty.segments.kpis import KpiTable, kpi_groups, member_kpis
from loyalty.segments.ports import PublishedCutPoints, StaleMember
from loyalty.segments.prediction import (
    BgNbdParameters,
    GammaGammaParameters,
    PredictionModel,
    features_row,
    mean_spend_per_purchase,
)
from loyalty.segments.rfm import RfmCutPoints, RfmSummary
from loyalty.segments.service import FINISHED, SegmentationService, scheduled_run_id
from loyalty_analytics import bgnbd, gamma_gamma, rfm

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000  # items per Scan page (a page is also capped at 1 MB by DynamoDB)
RESERVE_SECONDS = 60.0  # checkpoint when less than this is left of the invocation
MAX_STALE_RETRIES = 3
SAMPLE_CAP = 3000  # BG/NBD rows a sample may hold (about 100 KB of JSON at the cap)
MIN_SAMPLE_MEMBERS = 100  # fewer sampled members than this, or fewer repeaters: no model this run
MIN_SAMPLE_REPEATERS = 20
MIN_GAMMA_GAMMA_MEMBERS = 20  # repeaters with a positive mean spend


def member_hash(member_id: str) -> int:
    """32 bits of SHA-256 of the member id: the sample keeps a member when this is 0 mod 2^k."""
    return int.from_bytes(hashlib.sha256(member_id.encode()).digest()[:4], "big")


@dataclass(frozen=True)
class BgNbdSample:
    """A bounded, mergeable, deterministic sample of BG/NBD rows: every member whose `member_hash` is 0 mod 2^k,
    with k the smallest that keeps at most `cap` rows. Adding a member or merging raises k (and drops the rows it
    no longer keeps) while there are more than `cap`; k only grows, and every k a part of the population needs is
    at most what the whole needs, so the sample is a function of the members alone: the same for 1 or N workers,
    in any order. Rows are (hash, x, t_x, T, mean spend per purchase), days."""

    k: int = 0
    rows: tuple[tuple[int, int, int, int, float], ...] = ()
    cap: int = SAMPLE_CAP

    def add(self, rows: Sequence[tuple[int, int, int, int, float]]) -> BgNbdSample:
        return BgNbdSample(
            self.k, self.rows + tuple(row for row in rows if row[0] % (1 << self.k) == 0), self.cap
        )._fit()

    def merge(self, other: BgNbdSample) -> BgNbdSample:
        k = max(self.k, other.k)
        cap = min(self.cap, other.cap)
        kept = tuple(row for row in self.rows + other.rows if row[0] % (1 << k) == 0)
        return BgNbdSample(k, kept, cap)._fit()

    def _fit(self) -> BgNbdSample:
        k, rows = self.k, self.rows
        while len(rows) > self.cap:
            k += 1
            rows = tuple(row for row in rows if row[0] % (1 << k) == 0)
        return BgNbdSample(k, tuple(sorted(rows)), self.cap)

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "cap": self.cap, "rows": [list(row) for row in self.rows]}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> BgNbdSample:
        rows = tuple((int(h), int(x), int(t_x), int(age), float(m)) for h, x, t_x, age, m in raw["rows"])
        return cls(int(raw["k"]), rows, int(raw["cap"]))


def sample_row(item: Mapping[str, Any], features: MemberFeatures) -> tuple[int, int, int, int, float] | None:
    """A member's sample row, None if they never purchased. The mean spend is rounded to cents."""
    row = features_row(features)
    if row is None:
        return None
    x, t_x, age = row
    return (member_hash(features.member_id), x, t_x, age, round(mean_spend_per_purchase(item), 2))


@dataclass
class ScanState:
    """Pass one's state for one worker: the RFM summary and the BG/NBD sample (None: a part state written before
    samples existed, then the run fits no model) of the members who consented to profiling, and how many members
    read had not (`unprofiled`). JSON: {"rfm": ..., "sample": ..., "unprofiled": n}; a bare RfmSummary is read as
    the old format, and a state without `unprofiled` as 0."""

    summary: RfmSummary = field(default_factory=RfmSummary)
    sample: BgNbdSample | None = field(default_factory=BgNbdSample)
    unprofiled: int = 0

    @property
    def members(self) -> int:
        """Every member read, profiled or not."""
        return self.summary.members + self.unprofiled

    def to_json(self) -> str:
        return json.dumps(
            {
                "rfm": json.loads(self.summary.to_json()),
                "sample": None if self.sample is None else self.sample.to_json(),
                "unprofiled": self.unprofiled,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> ScanState:
        raw = json.loads(text)
        if "rfm" not in raw:  # the format of a part written before samples
            return cls(RfmSummary.from_json(text), None)
        sample = BgNbdSample.from_json(raw["sample"]) if raw.get("sample") is not None else None
        return cls(RfmSummary.model_validate(raw["rfm"]), sample, int(raw.get("unprofiled", 0)))

    def merge(self, other: ScanState) -> ScanState:
        sample = None if self.sample is None or other.sample is None else self.sample.merge(other.sample)
        return ScanState(self.summary.merge(other.summary), sample, self.unprofiled + other.unprofiled)


def fit_model(sample: BgNbdSample | None, run_id: str, as_of: str) -> PredictionModel | None:
    """BG/NBD (days) on the merged sample's rows, grouped into distinct rows with weights; Gamma-Gamma on its
    repeaters with a positive mean spend when there are enough. None when the sample is missing or too small, or
    the BG/NBD fit failed (non-finite): no prediction segment this run. A fit that stopped short of the strict
    convergence test is used, with `converged` False and the reason on the model."""
    if sample is None:
        logger.warning("no BG/NBD sample for this run (parts of an older format): no prediction model")
        return None
    rows = sample.rows
    repeaters = sum(1 for row in rows if row[1] > 0)
    if len(rows) < MIN_SAMPLE_MEMBERS or repeaters < MIN_SAMPLE_REPEATERS:
        logger.info(
            "BG/NBD sample too small: no prediction model", extra={"members": len(rows), "repeaters": repeaters}
        )
        return None
    x = np.array([row[1] for row in rows], dtype=np.float64)
    t_x = np.array([row[2] for row in rows], dtype=np.float64)
    age = np.array([row[3] for row in rows], dtype=np.float64)
    try:
        fitted = bgnbd.fit(x, t_x, age)
    except ValueError as error:
        logger.warning("BG/NBD fit refused: %s; no prediction model", error)
        return None
    if not (np.all(np.isfinite(fitted.params.as_array())) and np.isfinite(fitted.log_likelihood)):
        logger.warning("BG/NBD fit failed: no prediction model", extra={"reason": fitted.message})
        return None
    if not fitted.converged:
        # On small samples the dropout Beta often drifts to a, b -> infinity with a / (a + b) steady (everyone the
        # same dropout probability): a flat ridge, not a failure; its predictions are stable. Used, and recorded.
        logger.warning("BG/NBD fit not converged; used", extra={"reason": fitted.message})
    spend = np.array([row[4] for row in rows], dtype=np.float64)
    gamma_gamma_params = None
    usable = (x > 0) & (spend > 0)
    if int(usable.sum()) >= MIN_GAMMA_GAMMA_MEMBERS:
        try:
            spend_fit = gamma_gamma.fit(x[usable], spend[usable])
        except ValueError as error:
            logger.warning("Gamma-Gamma fit refused: %s", error)
        else:
            params = spend_fit.params
            correlation = gamma_gamma.spend_frequency_correlation(x[usable], spend[usable])
            logger.info("Gamma-Gamma fit", extra={"converged": spend_fit.converged, "correlation": correlation})
            if spend_fit.converged and params.q > 1.0:
                gamma_gamma_params = GammaGammaParameters(p=params.p, q=params.q, v=params.v)
    p = fitted.params
    return PredictionModel(
        run_id=run_id,
        as_of=as_of,
        bgnbd=BgNbdParameters(r=p.r, alpha=p.alpha, a=p.a, b=p.b),
        gamma_gamma=gamma_gamma_params,
        sample_members=len(rows),
        sample_repeaters=repeaters,
        sample_rate_log2=sample.k,
        log_likelihood=fitted.log_likelihood,
        converged=fitted.converged,
        fit_message=fitted.message,
    )


@dataclass
class ScoringState:
    """Pass two's running totals for one worker: exact, so a checkpoint and a resume add up to one straight run."""

    members: int = 0
    changed_members: int = 0
    changes: int = 0
    stale_members: int = 0
    sizes: Counter[str] = field(default_factory=Counter)
    kpis: KpiTable = field(default_factory=KpiTable)

    def to_json(self) -> str:
        return json.dumps(
            {
                "members": self.members,
                "changed_members": self.changed_members,
                "changes": self.changes,
                "stale_members": self.stale_members,
                "sizes": dict(self.sizes),
                "kpis": self.kpis.to_json(),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ScoringState:
        raw = json.loads(text)
        return cls(
            members=raw["members"],
            changed_members=raw["changed_members"],
            changes=raw["changes"],
            stale_members=raw["stale_members"],
            sizes=Counter(raw["sizes"]),
            kpis=KpiTable.from_json(raw["kpis"]),
        )

    def merge(self, other: ScoringState) -> ScoringState:
        return ScoringState(
            members=self.members + other.members,
            changed_members=self.changed_members + other.changed_members,
            changes=self.changes + other.changes,
            stale_members=self.stale_members + other.stale_members,
            sizes=self.sizes + other.sizes,
            kpis=self.kpis.merge(other.kpis),
        )


@dataclass(frozen=True)
class _Run:
    run_id: str
    as_of: datetime
    workers: int
    config: SegmentationConfig
    cut_points: RfmCutPoints | None
    model: PredictionModel | None = None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> _Run:
        cut_points = json.loads(item["cut_points"]) if item.get("cut_points") else None
        return cls(
            run_id=str(item["run_id"]),
            as_of=datetime.fromisoformat(str(item["as_of"]).replace("Z", "+00:00")),
            workers=int(item["workers"]),
            config=SegmentationConfig.model_validate_json(item["config"]),
            cut_points=RfmCutPoints.model_validate(cut_points) if cut_points else None,
            model=PredictionModel.model_validate_json(item["model"]) if item.get("model") else None,
        )


def _rfm_inputs(features: Sequence[MemberFeatures]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    recency = np.fromiter((-1 if f.recency_days is None else f.recency_days for f in features), np.int32)
    frequency = np.fromiter((f.frequency for f in features), np.int32)
    money = rfm.money_buckets(np.fromiter((float(f.monetary) for f in features), np.float64))
    return recency, frequency, money


@dataclass(frozen=True)
class Share:
    """One worker's share of one pass (segment `worker` of `workers` of the roster scan) and how far it got: the
    input and the output of a Map iteration's task. `step` counts the invocations that stored a state for it (0:
    none yet); `start_key` is where its scan continues."""

    run_id: str
    pass_number: int
    worker: int
    workers: int
    step: int = 0
    start_key: dict[str, Any] | None = None
    done: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "pass": self.pass_number,
            "worker": self.worker,
            "workers": self.workers,
            "step": self.step,
            "start_key": self.start_key,
            "done": self.done,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Share:
        start_key = raw.get("start_key")
        return cls(
            run_id=str(raw["run_id"]),
            pass_number=int(raw["pass"]),
            worker=int(raw["worker"]),
            workers=int(raw["workers"]),
            step=int(raw.get("step", 0)),
            start_key=dict(start_key) if start_key else None,
            done=bool(raw.get("done", False)),
        )


def _shares(run_id: str, pass_number: int, workers: int) -> list[dict[str, Any]]:
    return [Share(run_id, pass_number, worker, workers).to_json() for worker in range(workers)]


class SegmentRefresh:
    """The refresh's steps. `time_left` says how many seconds the current invocation has left."""

    def __init__(
        self,
        service: SegmentationService,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        page_size: int = PAGE_SIZE,
        reserve_seconds: float = RESERVE_SECONDS,
        max_pages: int | None = None,
    ):
        self.service = service
        self.store = service.segments
        self._clock = clock
        self._page_size = page_size
        self._reserve = reserve_seconds
        self._max_pages = max_pages  # a step's page budget (tests force continuations with it)

    def handle(
        self,
        task: Mapping[str, Any],
        *,
        workers: int,
        still_running: Callable[[str], bool],
        time_left: Callable[[], float] = lambda: float("inf"),
    ) -> dict[str, Any]:
        """Run the step a task of the state machine names (`{"step": "scan", "share": {...}}`); its answer is the
        task's output. `workers` is the default number of shares of a scheduled run."""
        step = task.get("step")
        if step == "begin":
            return self.begin(task.get("event") or {}, str(task["execution"]), workers, still_running)
        if step == "scan":
            return self.scan(Share.from_json(task["share"]), time_left).to_json()
        if step == "merge":
            return self.merge(str(task["run_id"]), [Share.from_json(share) for share in task["shares"]])
        if step == "score":
            return self.score(Share.from_json(task["share"]), time_left).to_json()
        if step == "finish":
            return self.finish(str(task["run_id"]), [Share.from_json(share) for share in task["shares"]])
        raise InvalidRequest(f"no refresh step {step!r}", field="step")

    # ---- begin ------------------------------------------------------------------------------------------------

    def begin(
        self, event: Mapping[str, Any], execution: str, workers: int, still_running: Callable[[str], bool]
    ) -> dict[str, Any]:
        """Record the run under this execution and hand out pass one's shares. The execution's input is either a
        run the admin API recorded (`{"run_id": ...}`) or the nightly schedule's event (one run per UTC day, as of
        the moment it fired). `proceed` is False when the run belongs to another execution (a schedule delivered
        twice) or is over: this execution then ends without doing anything."""
        if event.get("run_id"):
            run_id = str(event["run_id"])
            item = self.store.get_run(run_id)
            if item is None:
                raise RefreshNotFound(f"no refresh {run_id!r} recorded for execution {execution}")
        else:
            fired = datetime.fromisoformat(str(event.get("time") or self._clock().isoformat()).replace("Z", "+00:00"))
            item, created = self.service.new_run(
                scheduled_run_id(fired),
                fired,
                workers,
                "schedule",
                execution_arn=execution,
                still_running=still_running,
            )
            run_id = str(item["run_id"])
            logger.info("segment refresh %s", "recorded" if created else "already recorded", extra={"run": run_id})
        if item.get("execution_arn") != execution or item["status"] in FINISHED:
            return {"run_id": run_id, "proceed": False, "shares": []}
        return {"run_id": run_id, "proceed": True, "shares": _shares(run_id, 1, int(item["workers"]))}

    # ---- the shares -------------------------------------------------------------------------------------------

    def _run(self, run_id: str) -> _Run:
        item = self.store.get_run(run_id)
        if item is None:
            raise RefreshNotFound(f"no refresh {run_id!r}")
        return _Run.of(item)

    def _pages(self, share: Share, time_left: Callable[[], float]) -> Any:
        """Yield (items, next_key, out_of_time) for this share, page by page."""
        pages = 0
        key = share.start_key
        while True:
            items, key = self.store.scan_roster(share.worker, share.workers, key, self._page_size)
            pages += 1
            out_of_time = time_left() < self._reserve or (self._max_pages is not None and pages >= self._max_pages)
            yield items, key, out_of_time
            if key is None or out_of_time:
                return

    def _state(self, share: Share) -> str | None:
        if share.step == 0:
            return None
        state = self.store.share_state(share.run_id, share.pass_number, share.worker, share.step)
        if state is None:
            raise RuntimeError(f"no state stored for step {share.step} of {share}")
        return state

    def _hand_on(self, share: Share, state: str, key: dict[str, Any] | None) -> Share:
        """The share's output: a continuation (state stored for the next step, where the scan stopped), or the
        share done (its final state recorded once)."""
        now = self._clock()
        if key is not None:
            step = share.step + 1
            self.store.put_share_state(share.run_id, share.pass_number, share.worker, step, state, now)
            return Share(share.run_id, share.pass_number, share.worker, share.workers, step, key)
        if not self.store.finish_share(share.run_id, share.pass_number, share.worker, state, now):
            logger.info("share already finished; its first final state stands", extra=share.to_json())
        return Share(share.run_id, share.pass_number, share.worker, share.workers, share.step, None, done=True)

    def scan(self, share: Share, time_left: Callable[[], float] = lambda: float("inf")) -> Share:
        """Pass one for a share, until it is done or the invocation runs short of time."""
        run = self._run(share.run_id)
        stored = self._state(share)
        scan = ScanState.from_json(stored) if stored else ScanState()
        for items, key, out_of_time in self._pages(share, time_left):
            if items:
                read = [(item, features_of(item, run.as_of, run.config)) for item in items]
                profiled = [(item, member) for item, member in read if is_profiled(member)]
                summary, sample = scan.summary, scan.sample
                if profiled:
                    summary = summary.merge(rfm.summarize(*_rfm_inputs([member for _, member in profiled])))
                    if sample is not None:
                        rows = (sample_row(item, member) for item, member in profiled)
                        sample = sample.add([row for row in rows if row is not None])
                scan = ScanState(summary, sample, scan.unprofiled + len(read) - len(profiled))
            if key is not None and out_of_time:
                return self._hand_on(share, scan.to_json(), key)
        return self._hand_on(share, scan.to_json(), None)

    def _final_states(self, shares: Sequence[Share], pass_number: int) -> list[str]:
        states = []
        for share in shares:
            if share.pass_number != pass_number or not share.done:
                raise InvalidRequest(f"share {share} is not a finished share of pass {pass_number}", field="shares")
            state = self.store.share_state(share.run_id, pass_number, share.worker, None)
            if state is None:
                raise RuntimeError(f"no final state recorded for {share}")
            states.append(state)
        return states

    def merge(self, run_id: str, shares: Sequence[Share]) -> dict[str, Any]:
        """Merge pass one's shares into the cut points, fit the model, publish both; hand out pass two's shares.
        A retried merge finds the run scoring and publishes what the first attempt recorded."""
        item = self.store.get_run(run_id)
        if item is None:
            raise RefreshNotFound(f"no refresh {run_id!r}")
        if item["status"] == "scanning":
            merged = ScanState()
            for state in self._final_states(shares, 1):
                merged = merged.merge(ScanState.from_json(state))
            cut_points = merged.summary.cut_points()
            model = fit_model(merged.sample, run_id, str(item["as_of"]))
            self.store.update_run(
                run_id,
                expect_status="scanning",
                status="scoring",
                cut_points=cut_points.model_dump_json() if cut_points else "",
                model=model.model_dump_json() if model else "",
                members_read=merged.members,
                members_without_profiling=merged.unprofiled,
            )
            item = self.store.get_run(run_id) or item
        run = _Run.of(item)
        if item["status"] == "scoring":
            self.service.publish_cut_points(
                PublishedCutPoints(run_id, timestamp(run.as_of), run.cut_points, model=run.model)
            )
        return {"run_id": run_id, "shares": _shares(run_id, 2, run.workers)}

    def score(self, share: Share, time_left: Callable[[], float] = lambda: float("inf")) -> Share:
        """Pass two for a share, until it is done or the invocation runs short of time."""
        run = self._run(share.run_id)
        stored = self._state(share)
        state = ScoringState.from_json(stored) if stored else ScoringState(kpis=KpiTable.of(run.as_of, run.config.kpis))
        source = f"refresh:{run.run_id}"
        for items, key, out_of_time in self._pages(share, time_left):
            if items:
                self._score_page(run, items, state, source)
            if key is not None and out_of_time:
                return self._hand_on(share, state.to_json(), key)
        return self._hand_on(share, state.to_json(), None)

    def _score_page(self, run: _Run, items: list[dict[str, Any]], state: ScoringState, source: str) -> None:
        features = [features_of(item, run.as_of, run.config) for item in items]
        rfm_segments: list[str | None] = [None] * len(items)
        if run.cut_points is not None:
            scores = rfm.score(*_rfm_inputs(features), run.cut_points)
            codes, names = rfm.segment_codes(scores, run.config.rfm_map)
            rfm_segments = [names[code] if code >= 0 else None for code in codes.tolist()]
        now = self._clock()
        for item, member, rfm_segment in zip(items, features, rfm_segments, strict=True):
            after = segments_given_rfm(member, rfm_segment, run.config, run.model)
            current: dict[str, Any] | None = item
            for attempt in range(MAX_STALE_RETRIES + 1):
                assert current is not None
                if set(current.get("segments") or ()) == after:
                    break
                try:
                    applied = self.store.apply(current, after, now, source)
                    state.changed_members += 1
                    state.changes += applied.changes
                    break
                except StaleMember:
                    # The member changed since the scan read them: read again and re-evaluate as of the run.
                    current = self.store.get_member_item(str(item["member_id"]))
                    if current is None or attempt == MAX_STALE_RETRIES:
                        state.stale_members += 1
                        current = None
                        break
                    member = features_of(current, run.as_of, run.config)
                    after = segments_of(member, run.cut_points, run.config, run.model)
            if current is None:
                continue
            state.members += 1
            state.sizes.update(after)
            state.kpis.add(kpi_groups(member.tier, after), member_kpis(current, run.as_of, run.config.kpis))

    # ---- finish -----------------------------------------------------------------------------------------------

    def finish(self, run_id: str, shares: Sequence[Share]) -> dict[str, Any]:
        """Sum pass two's shares, write the size history and the KPIs, complete the run and free the slot. A
        retried finish keeps the first attempt's completion moment, so it rewrites the same items."""
        item = self.store.get_run(run_id)
        if item is None:
            raise RefreshNotFound(f"no refresh {run_id!r}")
        if item["status"] == "scoring":
            self.store.update_run(run_id, expect_status="scoring", status="finishing", completed_at=self._clock())
            item = self.store.get_run(run_id) or item
        if item["status"] == "finishing":
            total = ScoringState()
            for state in self._final_states(shares, 2):
                total = total.merge(ScoringState.from_json(state))
            self._finish(item, total)
            item = self.store.get_run(run_id) or item
        self.store.release_slot(run_id)
        return {"run_id": run_id, "status": item["status"]}

    def _finish(self, item: Mapping[str, Any], total: ScoringState) -> None:
        run = _Run.of(item)
        completed_at = datetime.fromisoformat(str(item["completed_at"]).replace("Z", "+00:00"))
        catalog = segment_catalog(run.config)
        self.store.put_segment_sizes(
            run.run_id, completed_at, {segment: {"size": total.sizes.get(segment, 0)} for segment in catalog}
        )
        if total.kpis.periods is None:  # nobody at all: report zeros for the run's periods
            total.kpis = KpiTable.of(run.as_of, run.config.kpis)
        groups = {"all", *total.kpis.groups(), *(f"segment:{segment}" for segment in catalog)}
        reports = {group: total.kpis.report(group).model_dump(mode="json") for group in sorted(groups)}
        self.store.put_latest(
            {
                "run_id": run.run_id,
                "as_of": timestamp(run.as_of),
                "completed_at": completed_at,
                "sizes": json.dumps({segment: total.sizes.get(segment, 0) for segment in catalog}),
                "kpis": json.dumps(reports),
                "cut_points": run.cut_points.model_dump_json() if run.cut_points else "",
            }
        )
        self.store.update_run(
            run.run_id,
            expect_status="finishing",
            status="complete",
            members=total.members,
            changed_members=total.changed_members,
            changes=total.changes,
            stale_members=total.stale_members,
        )
