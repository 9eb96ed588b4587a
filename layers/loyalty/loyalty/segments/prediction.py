"""Predictions for one member, in pure Python (this module ships in the API layer: no numpy, no scipy).

The refresh fits BG/NBD (and Gamma-Gamma) with loyalty_analytics on a sample of members and publishes the fitted
parameters (`PredictionModel`); this module applies them to one member item at a time, between refreshes and in
the refresh's pass two, with the same formulas as loyalty_analytics.bgnbd (tests hold the two within 1e-9):

- `probability_alive(params, x, t_x, T)`: FHL eq. 11, closed form;
- `expected_purchases(params, t, x, t_x, T)`: FHL eq. 10, with the Gauss hypergeometric series `hyp2f1`;
- `GammaGammaParameters.expected_average_spend(x, m)`: Gamma-Gamma's E[spend per purchase | x, m], as
  loyalty_analytics.gamma_gamma computes it;
- `expected_next_purchase(first, last, purchase_count)`: the member's own rhythm, last + mean gap;
- `member_prediction(member_item, as_of, model)`: all of them for one member item.

A member's BG/NBD row comes from the item's write-time aggregates, in days (docs/prediction.md, "In the refresh"):
x = purchase_count - 1, t_x = UTC days from the first purchase to the last, T = UTC days from the first purchase to
as-of. Time unit: days, so `alpha` is in days and horizons are in days. Gamma-Gamma's (x, m) is `spend_row`: the
same x, and m = `mean_spend_per_purchase` (the repeat purchases' mean), the pair the refresh fits the spend model on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loyalty.points import member_record as record
from loyalty.segments.features import MemberFeatures, _instant

HORIZON_DAYS = 90  # expected_purchases_90d
MIN_PURCHASES_FOR_CHURN_RISK = 2  # one-time buyers are always alive in BG/NBD (docs/prediction.md, Limits)
# hyp2f1 stops when the bound on what is left of the series is below this fraction of the sum (one ulp of 1.0).
HYP2F1_TOLERANCE = 2.0**-53
HYP2F1_MAX_TERMS = 1_000_000
# As in loyalty_analytics.bgnbd: removable singularities moved off, and the short-horizon series.
_POLE_WIDTH = 1e-7
_POLE_SHIFT = 1e-6
_SHORT_HORIZON = 0.05


class BgNbdParameters(BaseModel):
    """BG/NBD population parameters, time in days: purchase rate ~ Gamma(r, alpha), dropout ~ Beta(a, b)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    r: float = Field(gt=0, allow_inf_nan=False, description="Shape of the Gamma of purchase rates.")
    alpha: float = Field(gt=0, allow_inf_nan=False, description="Its rate, in days: mean rate r / alpha a day.")
    a: float = Field(gt=0, allow_inf_nan=False, description="Beta(a, b) of the dropout probability after a purchase.")
    b: float = Field(gt=0, allow_inf_nan=False)


class GammaGammaParameters(BaseModel):
    """Gamma-Gamma spend parameters: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    p: float = Field(gt=0, allow_inf_nan=False, description="Shape of the Gamma of one purchase's spend.")
    q: float = Field(gt=0, allow_inf_nan=False, description="Gamma(q, v) of its rate across members.")
    v: float = Field(gt=0, allow_inf_nan=False, description="Population mean spend per purchase: p v / (q - 1).")

    def expected_average_spend(self, x: int | float, mean_spend: float) -> float:
        """E[spend per purchase | x, m] = (p v + p x m) / (p x + q - 1) (Fader, Hardie and Lee 2005, "RFM and
        CLV"), the expression loyalty_analytics.gamma_gamma.expected_average_spend evaluates; the population mean
        p v / (q - 1) for x = 0. Refuses what that refuses: q <= 1 (no mean), a negative or fractional x, and
        m <= 0 with x >= 1."""
        if self.q <= 1.0:
            raise ValueError("q <= 1: the fitted spend distribution has no mean")
        if not (x >= 0 and x == math.floor(x)):
            raise ValueError(f"x must be a whole number of repeat purchases, got {x!r}")
        if not math.isfinite(mean_spend) or (x > 0 and mean_spend <= 0):
            raise ValueError(f"the mean spend must be positive and finite for x >= 1, got {mean_spend!r}")
        own = mean_spend if x > 0 else 0.0
        return (self.p * self.v + self.p * x * own) / (self.p * x + self.q - 1.0)


class PredictionModel(BaseModel):
    """What a refresh fitted, published with its cut points: the API predicts with it until the next refresh."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_unit: Literal["days"] = Field(default="days", description="The unit of BG/NBD's alpha and of horizons.")
    run_id: str = Field(description="The refresh that fitted the model.")
    as_of: str = Field(description="The moment the sample's rows are as of.")
    bgnbd: BgNbdParameters
    gamma_gamma: GammaGammaParameters | None = Field(
        default=None,
        description="Null when not fitted: too few repeaters with a positive mean spend in the sample, or a fit "
        "that did not converge or has q <= 1 (no mean).",
    )
    sample_members: int = Field(ge=0, description="Members in the fitted sample.")
    sample_repeaters: int = Field(ge=0, description="Members of the sample with a repeat purchase (x >= 1).")
    sample_rate_log2: int = Field(ge=0, description="The sample kept members whose hash is 0 mod 2^k; this is k.")
    log_likelihood: float = Field(description="The BG/NBD fit's log-likelihood, summed over the sample's members.")
    converged: bool = Field(default=True, description="The BG/NBD fit passed loyalty_analytics' convergence test.")
    fit_message: str = Field(default="converged", description="Why the BG/NBD fit did not converge, if it did not.")


class PredictionConfig(BaseModel):
    """Thresholds of the prediction segments (part of the segmentation document)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    churn_risk_alive_below: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="prediction:churn-risk: members with >= 2 purchases whose probability alive is below this.",
    )


class MemberPrediction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    probability_alive: float | None = Field(description="BG/NBD P(alive); null without a model or a purchase.")
    expected_purchases_90d: float | None = Field(description="BG/NBD expected purchases in the next 90 days.")
    expected_spend_per_purchase: float | None = Field(
        default=None,
        description="Gamma-Gamma's expected spend per future purchase, in purchase amounts' units (unrounded): "
        "(p v + p x m) / (p x + q - 1), x = purchase_count - 1, m = the mean net spend of the repeat purchases "
        "(the first excluded) over the months the member item keeps, in the program's base currency "
        "(docs/prediction.md). Null unless the model has Gamma-Gamma, x >= 1 and m > 0.",
    )
    expected_spend_90d: float | None = Field(
        default=None,
        description="expected_purchases_90d x expected_spend_per_purchase (undiscounted); null if either is.",
    )
    expected_next_purchase: date | None = Field(description="Last purchase + the member's mean gap (>= 2 purchases).")
    churn_risk: bool = Field(description="In prediction:churn-risk: >= 2 purchases and P(alive) below the threshold.")


# ---- the Gauss hypergeometric function ---------------------------------------------------------------------


def hyp2f1(a: float, b: float, c: float, z: float) -> float:
    """2F1(a, b; c; z) for 0 <= z < 1 by the Gauss series sum_n (a)_n (b)_n / ((c)_n n!) z^n.

    Term n+1 is term n times f(n) z, f(n) = (a+n)(b+n) / ((c+n)(n+1)), and f(n) tends to 1 monotonically once n is
    past the parameters. From then on every later ratio is at most rho = max(f(n) z, z), so what is left of the
    series is at most |term| rho / (1 - rho); the sum stops when that is at most HYP2F1_TOLERANCE (2^-53) of it.
    A terminating series (a or b a non-positive integer) stops at its last term. c a non-positive integer is a
    pole: ValueError. Slow near z = 1 (about 37 / -ln z terms), so more than HYP2F1_MAX_TERMS raises ArithmeticError.
    """
    if not 0.0 <= z < 1.0:
        raise ValueError(f"hyp2f1 needs 0 <= z < 1, got {z!r}")
    if c <= 0 and c == math.floor(c):
        raise ValueError(f"hyp2f1: c = {c!r} is a pole")
    if z == 0.0:
        return 1.0
    settled = math.ceil(max(abs(a), abs(b), abs(c))) + 1  # past every sign change of the Pochhammer factors
    total = 1.0
    term = 1.0
    for n in range(HYP2F1_MAX_TERMS):
        term *= (a + n) * (b + n) / ((c + n) * (n + 1)) * z
        total += term
        if term == 0.0:
            return total
        following = n + 1
        rho = max(z, abs((a + following) * (b + following) / ((c + following) * (following + 1))) * z)
        if following >= settled and rho < 1.0 and abs(term) * rho / (1.0 - rho) <= HYP2F1_TOLERANCE * abs(total):
            return total
        if not math.isfinite(total):
            raise OverflowError("hyp2f1 series overflowed")
    raise ArithmeticError(f"hyp2f1 series did not converge in {HYP2F1_MAX_TERMS} terms (z = {z!r})")


# ---- BG/NBD for one member ---------------------------------------------------------------------------------


def _check_row(x: int | float, t_x: float, T: float) -> None:
    if x < 0 or x != math.floor(x):
        raise ValueError(f"x must be a whole number of repeat purchases, got {x!r}")
    if not 0 <= t_x <= T:
        raise ValueError(f"need 0 <= t_x <= T, got t_x={t_x!r}, T={T!r}")
    if x == 0 and t_x != 0:
        raise ValueError("t_x must be 0 when x is 0")


def probability_alive(params: BgNbdParameters, x: int | float, t_x: float, T: float) -> float:
    """P(alive at T | x, t_x, T) = 1 / (1 + [x > 0] a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) (FHL eq. 11), with the
    odds taken in log space. Exactly 1 for x = 0."""
    _check_row(x, t_x, T)
    if x == 0:
        return 1.0
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_odds = math.log(a) - math.log(b + x - 1.0) + (r + x) * math.log1p((T - t_x) / (alpha + t_x))
    if log_odds > 0:
        odds_inverse = math.exp(-log_odds)
        return odds_inverse / (1.0 + odds_inverse)
    return 1.0 / (1.0 + math.exp(log_odds))


def expected_purchases(params: BgNbdParameters, t: float, x: int | float, t_x: float, T: float) -> float:
    """Expected purchases in (T, T + t] (FHL eq. 10), evaluated as loyalty_analytics.bgnbd does: a power series for
    short horizons, else Euler's transformation of the 2F1, else the direct form; each answer is checked against
    0 <= E / P(alive) <= (r + x) t / (alpha + T). NaN when none passes (only extreme parameters or horizons, which
    the analytics layer answers by quadrature)."""
    if not t >= 0:
        raise ValueError(f"the horizon t must not be negative, got {t!r}")
    alive = probability_alive(params, x, t_x, T)
    return alive * _given_alive(params.r, params.alpha, params.a, params.b, float(x), float(T), float(t))


def _given_alive(r: float, alpha: float, a: float, b: float, x: float, age: float, horizon: float) -> float:
    tau = horizon / (alpha + age)
    upper = (r + x) * tau
    if max(r + x, 1.0) * tau <= _SHORT_HORIZON:
        return _short_horizon_series(r + x, a, b + x, tau)

    def valid(value: float) -> bool:
        return math.isfinite(value) and 0.0 <= value <= upper * (1 + 1e-9)

    z = horizon / (alpha + age + horizon)
    a_eval = a + _POLE_SHIFT if abs(a - 1.0) < _POLE_WIDTH or (x == 0 and abs(a + b - 1.0) < _POLE_WIDTH) else a
    c = a_eval + b + x - 1.0
    log_1mz = math.log1p(-z)
    try:
        euler = math.exp((a_eval - 1.0) * log_1mz) * hyp2f1(a_eval + b - 1.0 - r, a_eval - 1.0, c, z)
        value = c / (a_eval - 1.0) * (1.0 - euler)
        if valid(value):
            return value
    except (ArithmeticError, ValueError):
        pass
    try:
        direct = math.exp((r + x) * log_1mz) * hyp2f1(r + x, b + x, c, z)
        value = c / (a_eval - 1.0) * (1.0 - direct)
        if valid(value):
            return value
    except (ArithmeticError, ValueError):
        pass
    return math.nan


def _short_horizon_series(shape: float, a: float, b_x: float, tau: float) -> float:
    """E[(1 - (1 + p tau)^-shape) / p], p ~ Beta(a, b_x), as a power series in tau (loyalty_analytics.bgnbd)."""
    term = shape * tau
    total = term
    for n in range(1, 14):
        term = -term * (shape + n) * (a + n - 1.0) * tau / ((n + 1.0) * (a + b_x + n - 1.0))
        total += term
    return total


# ---- from a member item ------------------------------------------------------------------------------------


def summary_row(purchase_count: int, days_since_first: int | None, recency_days: int | None) -> tuple[int, int, int]:
    """(x, t_x, T) in days from the item's aggregates as `features_of` reads them, or ValueError without a
    purchase. t_x = T - recency, clamped into [0, T] (and 0 for x = 0, the model's convention)."""
    if days_since_first is None or recency_days is None or purchase_count < 1:
        raise ValueError("no purchase: BG/NBD has no row for this member")
    x = purchase_count - 1
    age = days_since_first
    t_x = 0 if x == 0 else min(age, max(0, age - recency_days))
    return x, t_x, age


def features_row(features: MemberFeatures) -> tuple[int, int, int] | None:
    """The member's (x, t_x, T), None if they never purchased."""
    if features.days_since_first_purchase is None or features.recency_days is None or features.purchase_count < 1:
        return None
    return summary_row(features.purchase_count, features.days_since_first_purchase, features.recency_days)


def item_row(member_item: Mapping[str, Any], as_of: datetime) -> tuple[int, int, int] | None:
    """(x, t_x, T) of a member item: the same day counts as `features_of` (UTC dates, a date after as-of is 0)."""
    bought = record.aggregates_of(member_item)
    first, last, count = bought.first_purchase_at, bought.last_purchase_at, bought.purchase_count
    if first is None or last is None or count < 1:
        return None
    today = as_of.astimezone(UTC).date()
    since_first = max(0, (today - _instant(first, record.FIRST_PURCHASE_AT).date()).days)
    recency = max(0, (today - _instant(last, record.LAST_PURCHASE_AT).date()).days)
    return summary_row(count, since_first, recency)


def repeat_spend(member_item: Mapping[str, Any]) -> tuple[Decimal, int] | None:
    """The net spend (base currency) and the number of the member's repeat purchases in the months the monthly
    maps keep: the maps' totals less the first purchase, by the record the item keeps of it (`first_purchase`: its
    spend net of its refunds), when its month is in them and it still counts. A first purchase refunded in full is
    out of the maps already; so is one older than them. None on an item that keeps no record of its first
    purchase (written before the record was kept): its maps cannot tell the first purchase apart."""
    bought = record.aggregates_of(member_item)
    first = bought.first_purchase
    if first is None:
        return None
    spend = sum((Decimal(value) for value in bought.spend_by_month.values()), Decimal(0))
    purchases = sum(int(value) for value in bought.purchases_by_month.values())
    if not first.refunded and int(bought.purchases_by_month.get(record.month_key(first.at), 0)) > 0:
        spend, purchases = spend - first.amount, purchases - 1
    return spend, purchases


def mean_spend_per_purchase(member_item: Mapping[str, Any]) -> float:
    """Gamma-Gamma's m: the mean net spend of the member's repeat purchases, the first excluded as the model and
    the CDNOW summary's `zbar` define it (`repeat_spend`). 0 without a repeat purchase with positive net spend in the
    kept months, or when the item cannot tell its first purchase apart."""
    repeats = repeat_spend(member_item)
    if repeats is None:
        return 0.0
    spend, purchases = repeats
    return float(spend / purchases) if purchases > 0 and spend > 0 else 0.0


def spend_row(member_item: Mapping[str, Any]) -> tuple[int, float] | None:
    """Gamma-Gamma's (x, m) for a member item, as the refresh fits it: x = purchase_count - 1 (repeat purchases,
    lifetime, refunded-in-full orders not counted), m = `mean_spend_per_purchase` (the repeat purchases' mean).
    None without enough history: no repeat purchase, no positive net repeat spend in the months the maps keep
    (refunded, or every repeat purchase older than them), or an item that cannot tell its first purchase apart."""
    x = int(member_item.get(record.PURCHASE_COUNT, 0)) - 1
    mean_spend = mean_spend_per_purchase(member_item)
    if x < 1 or not (mean_spend > 0 and math.isfinite(mean_spend)):
        return None
    return x, mean_spend


def expected_spend_per_purchase(
    member_item: Mapping[str, Any], spend_model: GammaGammaParameters | None
) -> float | None:
    """Gamma-Gamma's expected spend per future purchase for a member with enough history (`spend_row`), None
    otherwise or without a spend model (or one with q <= 1, which has no mean: the refresh never publishes one)."""
    row = spend_row(member_item)
    if spend_model is None or row is None or spend_model.q <= 1.0:
        return None
    return spend_model.expected_average_spend(*row)


def is_churn_risk(features: MemberFeatures, model: PredictionModel | None, config: PredictionConfig) -> bool:
    """prediction:churn-risk: a model exists, >= 2 purchases, and P(alive) < config.churn_risk_alive_below."""
    if model is None or features.purchase_count < MIN_PURCHASES_FOR_CHURN_RISK:
        return False
    row = features_row(features)
    return row is not None and probability_alive(model.bgnbd, *row) < config.churn_risk_alive_below


def expected_next_purchase(first: date, last: date, purchase_count: int) -> date | None:
    """The member's own rhythm: last + (last - first) / (purchase_count - 1) days, rounded to the nearest day
    (halves up), as loyalty_analytics.rhythm's mean; None under 2 purchases."""
    if purchase_count < 2:
        return None
    gap = max(0, (last - first).days) / (purchase_count - 1)
    return last + timedelta(days=math.floor(gap + 0.5))


def member_prediction(
    member_item: Mapping[str, Any],
    as_of: datetime,
    model: PredictionModel | None,
    *,
    config: PredictionConfig | None = None,
) -> MemberPrediction:
    """Every prediction for one member item as of a moment. Without a model (no refresh fitted one yet), only the
    rhythm; without a purchase, nothing. Expected spend needs the model's Gamma-Gamma and enough history
    (`spend_row`). `churn_risk` is prediction:churn-risk's verdict (config's threshold)."""
    if as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware")
    config = config or PredictionConfig()
    row = item_row(member_item, as_of)
    if row is None:
        return MemberPrediction(
            probability_alive=None, expected_purchases_90d=None, expected_next_purchase=None, churn_risk=False
        )
    bought = record.aggregates_of(member_item)
    first = _instant(bought.first_purchase_at, record.FIRST_PURCHASE_AT).date()
    last = _instant(bought.last_purchase_at, record.LAST_PURCHASE_AT).date()
    count = bought.purchase_count
    alive = expected = spend = value = None
    if model is not None:
        alive = probability_alive(model.bgnbd, *row)
        expected = expected_purchases(model.bgnbd, HORIZON_DAYS, *row)
        expected = None if math.isnan(expected) else expected
        spend = expected_spend_per_purchase(member_item, model.gamma_gamma)
        value = None if expected is None or spend is None else expected * spend
    churn = alive is not None and count >= MIN_PURCHASES_FOR_CHURN_RISK and alive < config.churn_risk_alive_below
    return MemberPrediction(
        probability_alive=alive,
        expected_purchases_90d=expected,
        expected_spend_per_purchase=spend,
        expected_spend_90d=value,
        expected_next_purchase=expected_next_purchase(first, max(first, last), count),
        churn_risk=churn,
    )
