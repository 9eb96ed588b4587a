"""Logs, metrics and traces: the one set-up every handler uses (docs/observability.md).

- `logger`: Powertools' JSON logger, service from POWERTOOLS_SERVICE_NAME (template.yaml's Globals).
- `invocation(...)`: the decorator that puts the Lambda context (function name, request id, cold start) and the
  correlation id on every line of one invocation. The keys are held per thread, not on the process's one logger: the
  local stack runs every function in one process, many requests at once, and each line must name its own function.
- `metrics`: CloudWatch metrics as EMF lines on stdout, namespace ServerlessLoyalty, flushed by each handler's
  `@metrics.log_metrics`; the business metrics below are counted from what a handler was answered (an Outcome), never
  inside the domain, and a metric is only ever added with a value.
- `api_tracer()`: X-Ray for the API functions only (its SDK costs a cold start the event functions need not pay).
"""

from __future__ import annotations

import functools
import json
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from loyalty.core import correlation
from loyalty.core.idempotency import Outcome

if TYPE_CHECKING:
    from aws_lambda_powertools import Tracer

NAMESPACE = "ServerlessLoyalty"
CORRELATION_HEADER = "x-correlation-id"

logger = Logger()
metrics = Metrics(namespace=NAMESPACE)
# An invocation with nothing to count (a read, a batch with no change) is the common case, not a mistake: Powertools
# emits nothing for it, and need not warn each time either.
warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)


def _one_at_a_time(provider: Any) -> None:
    """Lambda runs one invocation per process; the local stack runs many at once in one process, where a flush could
    find the metric set emptied by another invocation's flush between its check and its serialisation (Powertools
    then raises "Must contain at least one metric", and the request would fail). Adding and flushing are made atomic
    with one lock: uncontended in Lambda, a few hundred nanoseconds."""
    lock = threading.RLock()
    add, flush = provider.add_metric, provider.flush_metrics

    def add_metric(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return add(*args, **kwargs)

    def flush_metrics(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return flush(*args, **kwargs)

    provider.add_metric, provider.flush_metrics = add_metric, flush_metrics


_one_at_a_time(metrics.provider)

Handler = TypeVar("Handler", bound=Callable[[Any, Any], Any])

# ---- logs and the correlation id ---------------------------------------------------------------------------------


def from_api_request(event: Mapping[str, Any]) -> str | None:
    """An API request's correlation id: the caller's X-Correlation-Id when it is a valid one, else API Gateway's
    request id."""
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    sent = correlation.valid(headers.get(CORRELATION_HEADER))
    return sent or correlation.valid((event.get("requestContext") or {}).get("requestId"))


def from_bus_event(event: Mapping[str, Any]) -> str | None:
    """An EventBridge event's correlation id: its id."""
    return correlation.valid(event.get("id"))


def invocation(correlation_id: Callable[[Mapping[str, Any]], str | None] | None = None) -> Callable[[Handler], Handler]:
    """Log every line of an invocation with the Lambda context's keys (as Powertools' inject_lambda_context names
    them) and the correlation id `correlation_id(event)` finds, which is also carried for the store to write onto
    the items of the change (loyalty.core.correlation). Stream handlers, whose records each carry their own, pass
    none here and wrap each record in `carrying`."""

    def decorate(handler: Handler) -> Handler:
        cold = [True]  # per loaded copy of the handler: the local stack's containers each have their own

        @functools.wraps(handler)
        def run(event: Any, context: Any) -> Any:
            keys: dict[str, Any] = {"cold_start": cold[0], **build_lambda_context_model(context).__dict__}
            cold[0] = False
            found = correlation_id(event) if correlation_id is not None and isinstance(event, Mapping) else None
            logger.thread_safe_clear_keys()
            logger.thread_safe_append_keys(**keys)
            try:
                with carrying(found):
                    return handler(event, context)
            finally:
                logger.thread_safe_clear_keys()

        return run  # type: ignore[return-value]

    return decorate


@contextmanager
def carrying(correlation_id: str | None) -> Iterator[str | None]:
    """Carry `correlation_id` (None: none) for the block: on the log lines, and on the items the store writes."""
    previous = logger.thread_safe_get_current_keys().get(correlation.ATTRIBUTE)
    with correlation.correlated(correlation_id) as carried:
        logger.thread_safe_append_keys(correlation_id=carried)  # None: the line carries no correlation_id
        try:
            yield carried
        finally:
            logger.thread_safe_append_keys(correlation_id=previous)


# ---- tracing -----------------------------------------------------------------------------------------------------


@cache
def api_tracer() -> Tracer:
    """X-Ray for the API functions (template.yaml: Tracing: Active). Built on first use: constructing a Tracer loads
    the X-Ray SDK, so only the functions that trace pay for it. Off outside Lambda and wherever
    POWERTOOLS_TRACE_DISABLED is true (the tests and the local stack). Only botocore is patched: the AWS calls are
    what a trace of these functions is for."""
    from aws_lambda_powertools import Tracer

    return Tracer(patch_modules=("botocore",))


# ---- business metrics --------------------------------------------------------------------------------------------

POINTS_EARNED = "PointsEarned"
POINTS_REDEEMED = "PointsRedeemed"
POINTS_REVERSED = "PointsReversed"
REDEMPTION_REFUSED = "RedemptionRefused"
IDEMPOTENT_REPLAY = "IdempotentReplay"
TRANSACTION_CONFLICT_RETRIED = "TransactionConflictRetried"
SEGMENT_CHANGES = "SegmentChanges"
REFRESH_MEMBERS_PER_SECOND = "RefreshMembersPerSecond"
REFRESH_RUN_DURATION = "RefreshRunDuration"

_POINTS_OF_KIND = {
    "earn": POINTS_EARNED,
    "bonus": POINTS_EARNED,
    "redeem": POINTS_REDEEMED,
    "reversal": POINTS_REVERSED,
}
# The refusals a redemption can answer with (their error codes): a fixed set, so the dimension stays small.
REFUSAL_REASONS = frozenset({"insufficient_points", "reward_not_found", "member_not_found"})
# The API's idempotent writes, by (method, resource): the operation they are counted under.
API_OPERATIONS = {
    ("POST", "/v1/members"): "enroll",
    ("POST", "/v1/members/{member_id}/activities"): "activity",
    ("POST", "/v1/members/{member_id}/redemptions"): "redemption",
    ("POST", "/v1/admin/segment-refreshes"): "segment_refresh",
}


def _count(name: str, value: int | float, unit: MetricUnit = MetricUnit.Count, **dimensions: str) -> None:
    """One metric with its own dimensions (besides service), printed at once: the handler's metrics all share the
    dimensions of the one EMF line `log_metrics` flushes, so a metric with a dimension of its own goes on its own
    line."""
    if not value:
        return
    service = metrics.provider.service
    default = {"service": str(service)} if service else None
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE, default_dimensions=default) as metric:
        for dimension, dimension_value in dimensions.items():
            metric.add_dimension(name=dimension, value=dimension_value)


def record_outcome(operation: str, outcome: Outcome) -> None:
    """Count what an idempotent write answered: a replay (and nothing else: it changed nothing), the points a new
    ledger entry moved, or why a redemption was refused. `operation` names the write (purchase, refund, activity,
    redemption, enroll, segment_refresh), a small fixed set."""
    if outcome.replayed:
        _count(IDEMPOTENT_REPLAY, 1, operation=operation)
        return
    entry = outcome.body.get("entry")
    if 200 <= outcome.status < 300 and isinstance(entry, Mapping):
        name = _POINTS_OF_KIND.get(str(entry.get("kind")))
        points = abs(int(entry.get("points") or 0))
        if name is not None and points:
            metrics.add_metric(name=name, unit=MetricUnit.Count, value=points)
    elif operation == "redemption" and outcome.status >= 400 and outcome.body.get("code") in REFUSAL_REASONS:
        _count(REDEMPTION_REFUSED, 1, reason=str(outcome.body["code"]))


def record_api_answer(event: Mapping[str, Any], answer: Mapping[str, Any]) -> None:
    """Count an API answer to one of the idempotent writes (API_OPERATIONS) as its Outcome: its status, its
    Idempotent-Replayed header and its body are what the caller was told, so the routes themselves count nothing."""
    operation = API_OPERATIONS.get((str(event.get("httpMethod") or "").upper(), str(event.get("resource") or "")))
    if operation is None:
        return
    headers = {str(name).lower(): str(value) for name, value in (answer.get("headers") or {}).items()}
    for name, values in (answer.get("multiValueHeaders") or {}).items():  # where Powertools' REST resolver puts them
        headers.setdefault(str(name).lower(), str(values[0]) if values else "")
    try:
        body = json.loads(answer.get("body") or "{}")
    except (TypeError, ValueError):
        return
    if isinstance(body, dict):
        replayed = headers.get("idempotent-replayed", "").lower() == "true"
        record_outcome(operation, Outcome(int(answer.get("statusCode") or 0), body, replayed))


def count_conflict_retried() -> None:
    """A transaction retried after a TransactionConflict (the composition root connects this to the table)."""
    metrics.add_metric(name=TRANSACTION_CONFLICT_RETRIED, unit=MetricUnit.Count, value=1)


def record_segment_changes(entered: int, left: int) -> None:
    """Segment entries and exits written by one invocation, by direction."""
    _count(SEGMENT_CHANGES, entered, change="entered")
    _count(SEGMENT_CHANGES, left, change="left")


def record_refresh_run(members: int, seconds: float) -> None:
    """A finished segment refresh: its duration, and the members it segmented per second of it."""
    if seconds > 0:
        metrics.add_metric(name=REFRESH_RUN_DURATION, unit=MetricUnit.Seconds, value=seconds)
        if members:
            metrics.add_metric(name=REFRESH_MEMBERS_PER_SECOND, unit=MetricUnit.CountPerSecond, value=members / seconds)
