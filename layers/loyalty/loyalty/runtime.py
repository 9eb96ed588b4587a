"""Composition root: one boto3 client and one service per container, built on first use (not at import),
so a cold start pays only for the imports, and tests can build their own with any client."""

from __future__ import annotations

from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from loyalty.adapters.dynamodb.points_store import LoyaltyStore
from loyalty.adapters.dynamodb.table import on_conflict_retried
from loyalty.core.observability import count_conflict_retried
from loyalty.core.ports import EventBus
from loyalty.core.settings import settings
from loyalty.points.service import LoyaltyService

if TYPE_CHECKING:
    from loyalty.adapters.step_functions import JobExecutions
    from loyalty.points.expiry import PointsExpiry
    from loyalty.points.tier_review import TierReview
    from loyalty.segments.refresh import SegmentRefresh
    from loyalty.segments.service import SegmentationService

on_conflict_retried(count_conflict_retried)  # every transaction retried on a conflict is counted (a metric)


@cache
def client(service_name: str) -> Any:
    config = Config(
        retries={"mode": "standard", "max_attempts": 5},
        max_pool_connections=64,
        connect_timeout=2,
        read_timeout=settings().aws_read_timeout_seconds,
    )
    return boto3.session.Session().client(service_name, config=config)  # type: ignore[call-overload]


@lru_cache(maxsize=1)
def loyalty_service() -> LoyaltyService:
    config = settings()
    return LoyaltyService(
        LoyaltyStore(client("dynamodb"), config.table_name), cache_seconds=config.config_cache_seconds
    )


@lru_cache(maxsize=1)
def segmentation_service() -> SegmentationService:
    # Imported here: the members API serves two segment routes, and need not build the segment configuration
    # models on every cold start for them.
    from loyalty.adapters.dynamodb.segment_store import SegmentStore
    from loyalty.segments.service import SegmentationService

    config = settings()
    store = SegmentStore(LoyaltyStore(client("dynamodb"), config.table_name))
    return SegmentationService(store, cache_seconds=config.config_cache_seconds)


@lru_cache(maxsize=1)
def refresh_executions() -> JobExecutions:
    """The executions of the segment refresh's state machine (run now starts one; status reads them)."""
    from loyalty.adapters.step_functions import JobExecutions

    return JobExecutions(client("stepfunctions"), settings().refresh_state_machine_arn)


def segment_refresh() -> SegmentRefresh:
    """The refresh's steps, as the state machine's tasks run them (the analytics layer's function alone). Built per
    task, light (the service below is built once per container), so the page size and time reserve are read from
    the settings as they are now."""
    from loyalty.segments.refresh import SegmentRefresh

    config = settings()
    return SegmentRefresh(
        segmentation_service(), page_size=config.refresh_page_size, reserve_seconds=config.refresh_reserve_seconds
    )


def tier_review() -> TierReview:
    """The scheduled tier review's steps (statemachines/tier_review.asl.json), on the points service's store."""
    from loyalty.points.tier_review import TierReview

    service = loyalty_service()
    return TierReview(service.store, service.program.get, shares=settings().tier_review_shares)


def points_expiry() -> PointsExpiry:
    """The daily points expiry's steps (statemachines/points_expiry.asl.json), on the points service's store."""
    from loyalty.points.expiry import PointsExpiry

    service = loyalty_service()
    return PointsExpiry(service.store, service.program.get, shares=settings().expiry_shares)


@lru_cache(maxsize=1)
def event_publisher() -> EventBus:
    """Domain events out, on the program's bus (only the stream's publisher imports it)."""
    from loyalty.adapters.eventbridge import EventPublisher

    return EventPublisher(client("events"), settings().event_bus_name)


def reset() -> None:
    """Forget clients and services (tests and the local stack call this after changing the environment)."""
    client.cache_clear()
    loyalty_service.cache_clear()
    segmentation_service.cache_clear()
    event_publisher.cache_clear()
    refresh_executions.cache_clear()
    settings.cache_clear()
