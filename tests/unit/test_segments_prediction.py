"""loyalty.segments.prediction (pure Python, API layer) against scipy and loyalty_analytics.bgnbd and gamma_gamma
(numpy/scipy)."""

from __future__ import annotations

import math
import random
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import special

from loyalty.adapters.memory.points_store import MemoryPointsStore
from loyalty.points.activities import Purchase, Refund
from loyalty.points.members import Enrollment
from loyalty.points.service import LoyaltyService
from loyalty.segments import prediction
from loyalty.segments.assign import segment_catalog, segments_of
from loyalty.segments.config import SegmentationConfig
from loyalty.segments.features import features_of
from loyalty.segments.prediction import (
    BgNbdParameters,
    GammaGammaParameters,
    PredictionConfig,
    PredictionModel,
    expected_next_purchase,
    expected_purchases,
    features_row,
    hyp2f1,
    item_row,
    member_prediction,
    probability_alive,
    spend_row,
)
from loyalty_analytics import bgnbd, gamma_gamma, rhythm

AS_OF = datetime(2026, 3, 15, 12, tzinfo=UTC)
CDNOW_DAYS = BgNbdParameters(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)
# Gamma-Gamma on CDNOW's repeat buyers, as published (Fader and Hardie; tests/integration/test_prediction_cdnow.py)
CDNOW_SPEND = GammaGammaParameters(p=6.25, q=3.74, v=15.44)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


def _random_case(rng: random.Random) -> tuple[BgNbdParameters, float, int, int, int]:
    params = BgNbdParameters(
        r=_log_uniform(rng, 0.02, 10),
        alpha=_log_uniform(rng, 0.5, 500),
        a=_log_uniform(rng, 0.02, 20),
        b=_log_uniform(rng, 0.05, 100),
    )
    age = rng.randint(0, 1500)
    x = rng.choice([0, rng.randint(1, 5), rng.randint(1, 60), rng.randint(1, 400)])
    t_x = 0 if x == 0 else rng.randint(0, age)
    horizon = rng.choice([0.5, 1, 7, 30, 90, 365, rng.uniform(0, 1000)])
    return params, horizon, x, t_x, age


def _relative(mine: float, reference: float) -> float:
    return abs(mine - reference) / abs(reference) if reference else abs(mine)


def test_hyp2f1_agrees_with_scipy_on_random_inputs() -> None:
    rng = random.Random(11)
    worst = 0.0
    for _ in range(5000):
        a, b, c, z = rng.uniform(-3, 10), rng.uniform(-3, 10), rng.uniform(0.5, 15), rng.uniform(0, 0.9)
        worst = max(worst, _relative(hyp2f1(a, b, c, z), float(special.hyp2f1(a, b, c, z))))
    assert worst < 1e-9


def test_hyp2f1_agrees_with_scipy_where_bgnbd_evaluates_it() -> None:
    # Euler's form of eq. 10: 2F1(a+b-1-r, a-1; a+b+x-1; z), z = t / (alpha + T + t)
    rng = random.Random(12)
    for _ in range(3000):
        params, horizon, x, _, age = _random_case(rng)
        r, alpha, a, b = params.r, params.alpha, params.a, params.b
        z = horizon / (alpha + age + horizon)
        if z >= 0.97:  # the series needs thousands of terms there; scipy transforms instead
            continue
        args = (a + b - 1 - r, a - 1, a + b + x - 1, z)
        assert hyp2f1(*args) == pytest.approx(float(special.hyp2f1(*args)), rel=1e-9, abs=1e-300), args


def test_hyp2f1_is_exact_where_scipy_is_not() -> None:
    # scipy's 2F1 loses digits (up to 2e-8 measured) for large a and z near 0.85; the series holds to mpmath.
    mpmath = pytest.importorskip("mpmath")
    rng = random.Random(13)
    for _ in range(300):
        a, b, c, z = rng.uniform(-5, 20), rng.uniform(-5, 20), rng.uniform(0.1, 30), rng.uniform(0, 0.95)
        assert hyp2f1(a, b, c, z) == pytest.approx(float(mpmath.hyp2f1(a, b, c, z)), rel=1e-11)


def test_hyp2f1_special_values() -> None:
    assert hyp2f1(1.0, 1.0, 2.0, 0.5) == pytest.approx(-math.log(0.5) / 0.5, rel=1e-15)  # -ln(1-z)/z
    assert hyp2f1(-2.0, 3.0, 4.0, 0.3) == pytest.approx(1 - 2 * 3 / 4 * 0.3 + 3 * 4 / (4 * 5) * 0.09, rel=1e-15)
    assert hyp2f1(2.5, 1.5, 3.0, 0.0) == 1.0
    with pytest.raises(ValueError, match="0 <= z < 1"):
        hyp2f1(1.0, 1.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="pole"):
        hyp2f1(1.0, 1.0, -2.0, 0.5)


def test_probability_alive_and_expected_purchases_agree_with_loyalty_analytics() -> None:
    rng = random.Random(21)
    for _ in range(3000):
        params, horizon, x, t_x, age = _random_case(rng)
        reference = bgnbd.BgNbdParams(params.r, params.alpha, params.a, params.b)
        alive = probability_alive(params, x, t_x, age)
        assert alive == pytest.approx(float(bgnbd.probability_alive(reference, x, t_x, age)), rel=1e-9, abs=1e-300)
        expected = expected_purchases(params, horizon, x, t_x, age)
        want = float(bgnbd.expected_purchases(reference, horizon, x, t_x, age))
        assert expected == pytest.approx(want, rel=1e-9, abs=1e-300), (params, horizon, x, t_x, age)


def test_the_removable_singularities_are_treated_as_in_loyalty_analytics() -> None:
    for a, b, x in ((1.0, 2.0, 3), (1.0 + 5e-8, 2.0, 0), (0.4, 0.6, 0), (0.4, 0.6 + 3e-8, 0)):
        params = BgNbdParameters(r=0.5, alpha=20.0, a=a, b=b)
        want = float(bgnbd.expected_purchases(bgnbd.BgNbdParams(0.5, 20.0, a, b), 90.0, x, 10 if x else 0, 100))
        assert expected_purchases(params, 90.0, x, 10 if x else 0, 100) == pytest.approx(want, rel=1e-9)


def test_one_time_buyers_are_alive_and_bad_rows_are_refused() -> None:
    assert probability_alive(CDNOW_DAYS, 0, 0, 400) == 1.0
    assert expected_purchases(CDNOW_DAYS, 0.0, 3, 10, 50) == 0.0
    for row in ((1, 20, 10), (-1, 0, 10), (1.5, 2, 10), (0, 3, 10)):
        with pytest.raises(ValueError, match=r"x must|t_x"):
            probability_alive(CDNOW_DAYS, *row)
    with pytest.raises(ValueError, match="negative"):
        expected_purchases(CDNOW_DAYS, -1.0, 1, 2, 10)


@settings(max_examples=200, deadline=None)
@given(
    first=st.dates(date(2020, 1, 1), date(2026, 3, 15)),
    span=st.integers(0, 2000),
    count=st.integers(0, 50),
)
def test_expected_next_purchase_is_loyalty_analytics_rhythm_from_a_summary(first: date, span: int, count: int) -> None:
    last = first + timedelta(days=span)
    mine = expected_next_purchase(first, last, count)
    if count < 2:
        assert mine is None
        return
    if count <= span + 1:  # the analytics rhythm counts purchase days, which must fit in the span
        reference = rhythm.purchase_rhythm_from_summary(first, last, count)
        assert reference is not None and mine == reference.expected_next
    assert mine is not None and last <= mine <= last + timedelta(days=span)


def test_expected_next_purchase_examples() -> None:
    assert expected_next_purchase(date(2026, 1, 1), date(2026, 3, 2), 3) == date(2026, 4, 1)  # 60 days / 2 gaps
    assert expected_next_purchase(date(2026, 1, 1), date(2026, 1, 4), 3) == date(2026, 1, 6)  # 1.5 rounds up
    assert expected_next_purchase(date(2026, 1, 1), date(2026, 1, 1), 1) is None


def _item(first_days_ago: int | None, last_days_ago: int | None, count: int, spend: str = "100") -> dict[str, object]:
    """A member item with `count` purchases worth `spend` in the as-of month's maps, and a record of its first
    purchase (worth 20) at `first_days_ago`: one of the maps' purchases only when that is in the as-of month."""
    item: dict[str, object] = {
        "member_id": "m-1",
        "enrolled_at": (AS_OF - timedelta(days=900)).isoformat(),
        "purchase_count": count,
        "tier": "Insider",
        "consent": {"profiling": True},  # prediction:churn-risk is behavioural: only with profiling consent
    }
    if first_days_ago is not None and last_days_ago is not None:
        item["first_purchase_at"] = (AS_OF - timedelta(days=first_days_ago)).isoformat()
        item["last_purchase_at"] = (AS_OF - timedelta(days=last_days_ago)).isoformat()
        item["spend_by_month"] = {f"{AS_OF:%Y-%m}": spend}
        item["purchases_by_month"] = {f"{AS_OF:%Y-%m}": count}
        item["first_purchase"] = {"order_id": "web-first", "at": item["first_purchase_at"], "amount": "20"}
    return item


def _model(params: BgNbdParameters = CDNOW_DAYS, spend: GammaGammaParameters | None = CDNOW_SPEND) -> PredictionModel:
    return PredictionModel(
        run_id="run-1",
        as_of=AS_OF.isoformat(),
        bgnbd=params,
        gamma_gamma=spend,
        sample_members=100,
        sample_repeaters=40,
        sample_rate_log2=0,
        log_likelihood=-1.0,
    )


def test_member_prediction_of_a_regular_who_stopped() -> None:
    item = _item(400, 300, 6)
    prediction = member_prediction(item, AS_OF, _model())
    assert item_row(item, AS_OF) == (5, 100, 400)
    assert prediction.probability_alive == pytest.approx(
        float(bgnbd.probability_alive(bgnbd.BgNbdParams(0.243, 4.414 * 7, 0.793, 2.426), 5, 100, 400))
    )
    assert prediction.probability_alive is not None and prediction.probability_alive < 0.5
    assert prediction.churn_risk is True
    assert prediction.expected_next_purchase == (AS_OF - timedelta(days=300)).date() + timedelta(days=20)
    assert prediction.expected_purchases_90d is not None and 0 < prediction.expected_purchases_90d < 1
    # the threshold is configuration
    strict = member_prediction(item, AS_OF, _model(), config=PredictionConfig(churn_risk_alive_below=0.01))
    assert strict.churn_risk is False


def test_member_prediction_without_model_or_purchase() -> None:
    no_model = member_prediction(_item(400, 300, 6), AS_OF, None)
    assert no_model.probability_alive is None and no_model.expected_purchases_90d is None
    assert no_model.churn_risk is False and no_model.expected_next_purchase is not None
    never = member_prediction(_item(None, None, 0), AS_OF, _model())
    assert never.model_dump() == {
        "probability_alive": None,
        "expected_purchases_90d": None,
        "expected_spend_per_purchase": None,
        "expected_spend_90d": None,
        "expected_next_purchase": None,
        "churn_risk": False,
    }
    once = member_prediction(_item(30, 30, 1), AS_OF, _model())
    assert once.probability_alive == 1.0 and once.churn_risk is False and once.expected_next_purchase is None


def _random_spend_case(rng: random.Random) -> tuple[GammaGammaParameters, int, float]:
    spend = GammaGammaParameters(
        p=_log_uniform(rng, 0.05, 50), q=1.0 + _log_uniform(rng, 1e-3, 50), v=_log_uniform(rng, 0.01, 1e4)
    )
    x = rng.choice([0, 1, rng.randint(1, 5), rng.randint(1, 60), rng.randint(1, 3000)])
    return spend, x, _log_uniform(rng, 0.01, 1e5)


def test_expected_spend_agrees_with_loyalty_analytics_gamma_gamma() -> None:
    rng = random.Random(31)
    worst = 0.0
    for _ in range(20_000):
        spend, x, mean = _random_spend_case(rng)
        reference = gamma_gamma.GammaGammaParams(spend.p, spend.q, spend.v)
        want = float(gamma_gamma.expected_average_spend(reference, x, mean))
        worst = max(worst, _relative(spend.expected_average_spend(x, mean), want))
    assert worst < 1e-9, worst


def test_expected_spend_with_the_published_cdnow_parameters() -> None:
    # Given the published CDNOW fit: the population mean is p v / (q - 1) = 96.5 / 2.74
    reference = gamma_gamma.GammaGammaParams(6.25, 3.74, 15.44)
    assert CDNOW_SPEND.expected_average_spend(0, 50.0) == pytest.approx(96.5 / 2.74, rel=1e-15)
    # and two repeat purchases of mean 20 are shrunk towards it: (96.5 + 6.25 x 2 x 20) / (6.25 x 2 + 2.74)
    assert CDNOW_SPEND.expected_average_spend(2, 20.0) == pytest.approx(346.5 / 15.24, rel=1e-15)
    for x in range(0, 60):
        for mean in (0.5, 3.0, 12.99, 20.0, 35.17, 64.2, 150.0, 1000.0):
            want = float(gamma_gamma.expected_average_spend(reference, x, mean))
            assert CDNOW_SPEND.expected_average_spend(x, mean) == pytest.approx(want, rel=1e-9, abs=0), (x, mean)
            # the more purchases, the closer to the member's own mean
            if x:
                closer = CDNOW_SPEND.expected_average_spend(x + 1, mean)
                assert abs(closer - mean) < abs(CDNOW_SPEND.expected_average_spend(x, mean) - mean)


def test_expected_spend_refuses_what_loyalty_analytics_refuses() -> None:
    no_mean = GammaGammaParameters(p=6.25, q=1.0, v=15.44)
    cases = [
        (CDNOW_SPEND, 1.5, 10.0, "x must", "frequency must be whole"),
        (CDNOW_SPEND, -1, 10.0, "x must", "frequency must not be negative"),
        (CDNOW_SPEND, 2, 0.0, "mean spend must be positive", "monetary_value must be positive"),
        (CDNOW_SPEND, 2, -5.0, "mean spend must be positive", "monetary_value must be positive"),
        (no_mean, 2, 10.0, "no mean", "no mean"),
    ]
    for spend, x, mean, mine, theirs in cases:
        with pytest.raises(ValueError, match=mine):
            spend.expected_average_spend(x, mean)
        with pytest.raises(ValueError, match=theirs):
            gamma_gamma.expected_average_spend(gamma_gamma.GammaGammaParams(spend.p, spend.q, spend.v), x, mean)


def test_expected_spend_needs_enough_history() -> None:
    # Given a regular with 6 purchases worth 300 in the months the item keeps
    item = _item(400, 300, 6, spend="300")
    # When the model has Gamma-Gamma
    prediction = member_prediction(item, AS_OF, _model())
    # Then they get Gamma-Gamma's expected spend for x = 5 repeat purchases of mean 300 / 6
    assert spend_row(item) == (5, 50.0)
    per_purchase = prediction.expected_spend_per_purchase
    assert per_purchase == pytest.approx(
        float(gamma_gamma.expected_average_spend(gamma_gamma.GammaGammaParams(6.25, 3.74, 15.44), 5, 50.0)),
        rel=1e-12,
    )
    assert 96.5 / 2.74 < per_purchase < 50.0  # between the population mean and their own
    assert prediction.expected_purchases_90d is not None
    assert prediction.expected_spend_90d == pytest.approx(prediction.expected_purchases_90d * per_purchase)
    # But not without enough history: one purchase, spend refunded to nothing, or no month kept
    refunded = _item(400, 300, 6, spend="0")
    too_old = {**item, "spend_by_month": {}, "purchases_by_month": {}}
    for short in (_item(30, 30, 1), refunded, too_old):
        thin = member_prediction(short, AS_OF, _model())
        assert thin.probability_alive is not None and thin.expected_purchases_90d is not None
        assert spend_row(short) is None
        assert thin.expected_spend_per_purchase is None and thin.expected_spend_90d is None
    # Nor when the run fitted no Gamma-Gamma (too few repeaters), or no model at all
    for model in (_model(spend=None), None):
        without = member_prediction(item, AS_OF, model)
        assert without.expected_spend_per_purchase is None and without.expected_spend_90d is None


@pytest.mark.parametrize(
    ("refunds", "row"),
    [
        ((), (2, 50.0)),
        ((("web-1", "50.00"),), (2, 50.0)),
        ((("web-3", "30.00"),), (2, 35.0)),
        ((("web-2", "40.00"),), (1, 60.0)),
        ((("web-1", "200.00"),), (1, 50.0)),
    ],
    ids=[
        "the-first-excluded",
        "the-first-partly-refunded",
        "a-repeat-partly-refunded",
        "a-repeat-refunded-in-full",
        "the-first-refunded-in-full",
    ],
)
def test_gamma_gammas_mean_spend_is_the_mean_of_the_repeat_purchases(
    refunds: tuple[tuple[str, str], ...], row: tuple[int, float]
) -> None:
    # Given a first purchase of 200, then repeat purchases of 40 and 60, written by the points service
    store = MemoryPointsStore(clock=lambda: AS_OF)
    service = LoyaltyService(store, cache_seconds=0, clock=lambda: AS_OF)
    member_id = str(service.enroll(Enrollment(external_id="cust-1")).body["member_id"])
    for order_id, amount, days_ago in (("web-1", 200, 100), ("web-2", 40, 50), ("web-3", 60, 10)):
        bought = Purchase(
            order_id=order_id, amount=Decimal(amount), currency="USD", occurred_at=AS_OF - timedelta(days=days_ago)
        )
        service.purchase(member_id, bought)
    # When some are refunded
    for number, (order_id, amount) in enumerate(refunds):
        service.refund(Refund(order_id=order_id, refund_id=f"rf-{number}", amount=Decimal(amount)))
    # Then (x, m) counts the purchases that still count, and m is the mean of the repeat ones: the first is left out
    # (a first purchase refunded in full is out of the maps already: m is then the mean of the purchases left)
    assert spend_row(store.member_item(member_id)) == row


def test_an_item_that_cannot_tell_its_first_purchase_apart_has_no_spend_row() -> None:
    # Given three purchases worth 300 in the as-of month, the first of them (10 days ago) worth 20
    item = _item(10, 5, 3, spend="300")
    assert spend_row(item) == (2, 140.0)
    # When the item keeps no record of its first purchase (written before it was kept), or a record of another one
    # (a purchase of such an item recorded itself), it cannot say which of its purchases are repeats
    unrecorded = {name: value for name, value in item.items() if name != "first_purchase"}
    of_another = {
        **item,
        "first_purchase": {"order_id": "web-2", "at": _item(5, 5, 3)["first_purchase_at"], "amount": "100"},
    }
    for unknown in (unrecorded, of_another):
        assert spend_row(unknown) is None
        assert member_prediction(unknown, AS_OF, _model()).expected_spend_per_purchase is None


def test_expected_spend_in_90_days_is_null_when_expected_purchases_are(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given expected purchases that only the analytics layer's quadrature could answer (NaN here)
    monkeypatch.setattr(prediction, "expected_purchases", lambda *_: math.nan)
    # When a member with enough history is predicted
    stuck = member_prediction(_item(400, 300, 6, spend="300"), AS_OF, _model())
    # Then the spend per purchase is still known, the 90-day spend is not
    assert stuck.expected_purchases_90d is None
    assert stuck.expected_spend_per_purchase is not None and stuck.expected_spend_90d is None


def test_the_churn_risk_segment_is_member_predictions_verdict() -> None:
    config = SegmentationConfig()
    rng = random.Random(5)
    seen = set()
    for _ in range(300):
        count = rng.choice([0, 1, 2, 3, 5, 10, 20])
        first = rng.randint(0, 700)
        last = rng.randint(0, first)
        item = _item(first if count else None, last if count else None, count)
        features = features_of(item, AS_OF, config)
        with_model = segments_of(features, None, config, _model())
        verdict = member_prediction(item, AS_OF, _model()).churn_risk
        seen.add(verdict)
        assert ("prediction:churn-risk" in with_model) == verdict
        assert features_row(features) == item_row(item, AS_OF)
        assert with_model - {"prediction:churn-risk"} == segments_of(features, None, config)  # model None: none
    assert seen == {True, False}
    assert "prediction:churn-risk" in segment_catalog(config)
