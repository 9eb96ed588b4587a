"""Prediction in the segment refresh, on DynamoDB Local: pass one samples BG/NBD rows, the run fits the model and
publishes it with the cut points, pass two assigns prediction:churn-risk, and the API's member_prediction agrees
with the memberships member by member.

The 150 members are enrolled and buy through LoyaltyService on the in-memory points store (which
test_points_store_contract.py holds to the DynamoDB store, member item included); their member items, all the
refresh and member_prediction read, are then written to the test's table (no stream) with BatchWriteItem. Through the
DynamoDB store's transactions the seeding took about 45 s of the module's 59."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from loyalty.adapters.dynamodb.segment_store import SegmentStore
from loyalty.segments.assign import segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.prediction import PredictionModel, spend_row
from loyalty.segments.service import SegmentationService
from tests.integration.conftest import (
    PROFILED,
    Backend,
    Loyalty,
    dynamodb_client,
    make_loyalty,
    member_items,
    memory_loyalty,
    write_members,
)
from tests.integration.test_segment_refresh import (
    AS_OF,
    Harness,
    _memberships,
    harnesses,
    quick_retries,
    step_functions,
)

__all__ = ["harnesses", "quick_retries", "step_functions"]  # fixtures

CHURN_RISK = "prediction:churn-risk"


@pytest.fixture(scope="module", params=[pytest.param("dynamodb-local", marks=pytest.mark.dynamodb_local)])
def backend(request: pytest.FixtureRequest) -> Backend:
    return Backend("dynamodb-local", dynamodb_client(request.getfixturevalue("dynamodb_local").endpoint))


def _histories(members: int, seed: int, max_purchases: int = 4) -> list[list[int]]:
    """Days-ago of each member's purchases, drawn from BG/NBD itself (r 0.5, alpha 60 days, a 0.8, b 2.5; at most
    `max_purchases` each, to keep the test short), first purchase 20-700 days ago; one member in ten never bought."""
    rng = random.Random(seed)
    histories = []
    for _ in range(members):
        if rng.random() < 0.1:
            histories.append([])
            continue
        age = rng.randint(20, 700)
        rate, dropout = rng.gammavariate(0.5, 1 / 60), rng.betavariate(0.8, 2.5)
        days, moment = [age], 0.0
        while len(days) < max_purchases:
            moment += rng.expovariate(rate)
            if moment >= age:
                break
            days.append(age - int(moment))
            if rng.random() < dropout:
                break
        histories.append(days)
    return histories


@pytest.fixture
def loyalty(backend: Backend) -> Iterator[Loyalty]:
    """A fresh table without a stream (nothing here reads one; DynamoDB Local writes faster without)."""
    system = make_loyalty(backend, stream=False)
    yield system
    backend.client.delete_table(TableName=system.table)


def _populate(loyalty: Loyalty, members: int, seed: int = 2) -> list[str]:
    """Members with the histories of `_histories`, bought through the service on the in-memory points store, each
    member's purchases in order; their member items written to the loyalty table."""
    amounts = random.Random(seed)
    plans = [
        (index, days, [amounts.choice(["9.99", "25", "60", "120.50"]) for _ in days])
        for index, days in enumerate(_histories(members, seed))
    ]

    source = memory_loyalty()
    ids = []
    for index, days, spends in plans:
        member_id = source.enroll(f"predict-{seed}-{index}", consent=PROFILED)
        for n, (days_ago, amount) in enumerate(zip(days, spends, strict=True)):
            source.buy(
                member_id, amount, order_id=f"p-{seed}-{index}-{n}", occurred_at=AS_OF - timedelta(days=days_ago)
            )
        ids.append(member_id)
    write_members(loyalty, member_items(source, ids))
    return ids


def test_a_refresh_fits_the_model_and_churn_risk_is_member_predictions_verdict(
    loyalty: Loyalty, harnesses: Callable[..., Harness]
) -> None:
    started = time.perf_counter()
    ids = _populate(loyalty, 150)
    populated = time.perf_counter()
    harness = harnesses(loyalty, page_size=25)
    # When a refresh runs over 4 shares
    run = harness.run_to_end("run-predict", workers=4)
    refreshed = time.perf_counter()
    assert run["status"] == "complete"
    # Then the run fitted a model on the whole population (150 members are under the sample's cap) ...
    assert run["model"]
    model = PredictionModel.model_validate_json(run["model"])
    items = {member_id: loyalty.member_item(member_id) for member_id in ids}  # as the refresh left them
    purchasers = sum(1 for item in items.values() if item.get("purchase_count"))
    assert model.sample_members == purchasers and model.sample_rate_log2 == 0
    assert model.run_id == "run-predict" and model.time_unit == "days"
    # ... which the run's admin view shows
    assert harness.service.refresh_run("run-predict")["model"] == model.model_dump(mode="json")
    # ... and published it with the cut points, for the API between refreshes (which caches the configuration and
    # the published model, as it does by default: the run is over, nothing moves them now)
    api = SegmentationService(SegmentStore(loyalty.store), cache_seconds=600, clock=lambda: AS_OF)
    (published,) = api.published.get()
    assert published is not None and published.model == model
    # And prediction:churn-risk holds exactly the members member_prediction calls at risk
    config = SegmentationConfig()
    at_risk = with_spend = 0
    for member_id, item in items.items():
        verdict = api.member_prediction(member_id)
        assert (CHURN_RISK in _memberships(loyalty, member_id)) == verdict.churn_risk, member_id
        at_risk += verdict.churn_risk
        # and an expected spend where the member has enough history and the run fitted Gamma-Gamma
        enough = spend_row(item) is not None and model.gamma_gamma is not None
        assert (verdict.expected_spend_per_purchase is not None) == enough, member_id
        with_spend += enough
        # and a fresh re-evaluation with the published model agrees with the refresh
        assert api.evaluate(item, AS_OF) == set(item["segments"])
        without_model = segments_of(features_of(item, AS_OF, config), published.cut_points, config)
        assert set(item["segments"]) - {CHURN_RISK} == without_model
    assert 0 < at_risk < len(ids)
    # (Gamma-Gamma is not identified on this population, about 76 repeaters of at most 4 purchases: none published)
    assert with_spend == 0 if model.gamma_gamma is None else 0 < with_spend < len(ids)
    sizes = {row["segment_id"]: row["size"] for row in harness.service.catalog()}
    assert sizes[CHURN_RISK] == at_risk
    print(
        f"\n{len(ids)} members, {purchasers} purchasers, {at_risk} at risk, {with_spend} with an expected spend; "
        f"model {model.bgnbd}; "
        f"gamma-gamma {model.gamma_gamma}; populate {populated - started:.1f} s, refresh {refreshed - populated:.1f} s, checks {time.perf_counter() - refreshed:.1f} s"
    )
