"""What the segmentation service adds for the API routes: the as-of moment of a run started by hand, and a run as
the admin API shows it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from loyalty.adapters.memory.segment_store import InMemorySegmentStore
from loyalty.core.errors import InvalidRequest
from loyalty.segments.prediction import BgNbdParameters, GammaGammaParameters, PredictionModel
from loyalty.segments.service import SegmentationService, manual_run_id, public_run

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def service() -> SegmentationService:
    return SegmentationService(InMemorySegmentStore(), clock=lambda: NOW)  # type: ignore[arg-type]


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


def _stored_run(**values: object) -> dict[str, object]:
    run: dict[str, object] = {"run_id": "run-1", "status": "scanning", "as_of": "2026-03-15T00:00:00Z", "workers": 2}
    run["started_at"] = "2026-03-15T00:00:01Z"
    return {**run, **values}


def test_a_run_shows_the_prediction_model_it_fitted() -> None:
    model = PredictionModel(
        run_id="run-1",
        as_of="2026-03-15T00:00:00Z",
        bgnbd=BgNbdParameters(r=0.5, alpha=60.0, a=0.8, b=2.5),
        gamma_gamma=GammaGammaParameters(p=6.25, q=3.74, v=15.44),
        sample_members=150,
        sample_repeaters=70,
        sample_rate_log2=0,
        log_likelihood=-812.5,
        converged=False,
        fit_message="gradient still 3.9e-06",
    )

    shown = public_run(_stored_run(status="scoring", model=model.model_dump_json()))["model"]

    assert shown == model.model_dump(mode="json")
    assert shown["gamma_gamma"] == {"p": 6.25, "q": 3.74, "v": 15.44}
    assert (shown["converged"], shown["fit_message"]) == (False, "gradient still 3.9e-06")


def test_a_run_without_a_model_shows_null() -> None:
    assert public_run(_stored_run())["model"] is None  # pass one not finished
    assert public_run(_stored_run(status="complete", model=""))["model"] is None  # the sample was too small


def test_a_model_stored_before_the_convergence_fields_reads_with_their_defaults() -> None:
    older = {
        "run_id": "run-0",
        "as_of": "2026-01-01T00:00:00Z",
        "bgnbd": {"r": 0.5, "alpha": 60.0, "a": 0.8, "b": 2.5},
        "gamma_gamma": None,
        "sample_members": 120,
        "sample_repeaters": 40,
        "sample_rate_log2": 0,
        "log_likelihood": -700.0,
    }

    shown = public_run(_stored_run(model=json.dumps(older)))["model"]

    assert shown == {**older, "time_unit": "days", "converged": True, "fit_message": "converged"}
