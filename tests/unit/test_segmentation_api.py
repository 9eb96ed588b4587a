"""What the segmentation service adds for the API routes: the as-of moment of a run started by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from loyalty.adapters.dynamodb_store import LoyaltyStore
from loyalty.errors import InvalidRequest
from loyalty.segmentation import SegmentationService, manual_run_id

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def service() -> SegmentationService:
    return SegmentationService(LoyaltyStore(object(), "unused"), clock=lambda: NOW)


def test_a_run_started_by_hand_is_as_of_now_unless_told(service: SegmentationService) -> None:
    assert service.manual_as_of(None) == NOW


def test_a_given_as_of_is_kept_in_utc(service: SegmentationService) -> None:
    paris = datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=1)))

    assert service.manual_as_of(paris) == datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert service.manual_as_of(paris).tzinfo is UTC


def test_a_client_clock_a_little_ahead_is_tolerated(service: SegmentationService) -> None:
    assert service.manual_as_of(NOW + timedelta(minutes=5)) == NOW + timedelta(minutes=5)


@pytest.mark.parametrize(
    ("as_of", "reason"),
    [
        (NOW + timedelta(minutes=5, seconds=1), "as_of is in the future"),
        (datetime(1969, 12, 31, 23, 59, tzinfo=UTC), "as_of is before 1970"),
    ],
)
def test_an_as_of_out_of_range_is_refused_naming_it(service: SegmentationService, as_of: datetime, reason: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        service.manual_as_of(as_of)

    assert refused.value.status == 422
    assert refused.value.body()["errors"] == [{"field": "as_of", "reason": reason}]


def test_the_same_idempotency_key_names_the_same_run() -> None:
    assert manual_run_id("k-1") == manual_run_id("k-1") != manual_run_id("k-2")
    assert manual_run_id("k-1").startswith("manual-")
