"""Gamma-Gamma: what a member's purchases will be worth on average.

Fader, Hardie and Lee (2005), "RFM and CLV: using iso-value curves for customer base analysis", Journal of
Marketing Research 42(4); Fader and Hardie (2013), "The Gamma-Gamma Model of Monetary Value". Each purchase of a
member is worth Gamma(p, nu); across members nu ~ Gamma(q, v). A member's observed average over x purchases,
m = z-bar, is all the model needs. Their expected average spend shrinks m towards the population mean
p v / (q - 1), more so the fewer purchases they made.

Assumption: spend per purchase is independent of how often the member buys (check with
`spend_frequency_correlation`, close to 0; CDNOW gives 0.11). "Enough history" means at least one repeat purchase
(x >= 1): the model is fitted on those members only, with m the mean of their repeat purchases (first excluded);
members with x = 0 get the population mean. Money is in whatever currency unit the inputs use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import special

from loyalty_analytics._fitting import (
    FloatArray,
    as_float_array,
    check_positive_parameters,
    check_weights,
    check_whole_counts,
    estimate_and_report,
    group_rows,
    maximise,
)

PARAMETER_NAMES = ("p", "q", "v")


@dataclass(frozen=True)
class GammaGammaParams:
    """Spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v) across members; population mean p v / (q - 1)."""

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        check_positive_parameters("Gamma-Gamma", self, PARAMETER_NAMES)

    @property
    def population_mean_spend(self) -> float:
        """E[spend per purchase] across members; infinite when q <= 1 (too heavy a tail to have a mean)."""
        return self.p * self.v / (self.q - 1.0) if self.q > 1.0 else float("inf")

    def as_array(self) -> FloatArray:
        return np.array([self.p, self.q, self.v], dtype=np.float64)


@dataclass(frozen=True)
class GammaGammaFit:
    params: GammaGammaParams
    log_likelihood: float
    converged: bool
    iterations: int
    n_customers: float  # members with x >= 1 (total weight)
    n_rows: int
    standard_errors: dict[str, float] = field(hash=False)
    message: str = "converged"


def fit(
    frequency: npt.ArrayLike,
    monetary_value: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    *,
    initial: GammaGammaParams | None = None,
    group: bool = True,
) -> GammaGammaFit:
    """Maximum-likelihood Gamma-Gamma parameters from members' (x, mean repeat spend). Rows with x = 0 are ignored
    (they carry no spend information); rows with x >= 1 must have a positive mean spend."""
    x, spend = _spend_arrays(frequency, monetary_value, broadcast=False)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("Gamma-Gamma fit needs a non-empty one-dimensional summary (one row per customer)")
    row_weights = check_weights(weights, x.size)
    repeat = x > 0
    if not np.any(repeat):
        raise ValueError("no customer has a repeat purchase: Gamma-Gamma needs x >= 1 to see spend")
    x, spend = x[repeat], spend[repeat]
    row_weights = None if row_weights is None else row_weights[repeat]
    if group:
        (x, spend), row_weights = group_rows((x, spend), row_weights)
    if row_weights is None:
        row_weights = np.ones(x.size)
    keep = row_weights > 0
    x, spend, row_weights = x[keep], spend[keep], row_weights[keep]
    if x.size == 0:
        raise ValueError("every customer with a repeat purchase has weight 0: nothing to fit")
    total = float(row_weights.sum())

    if initial is None:
        # p = 1, q = 2 makes the population mean v: start it at the observed mean spend.
        initial = GammaGammaParams(1.0, 2.0, float(np.dot(row_weights, spend)) / total)

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        rows, gradient_rows = _log_likelihood_rows(params, x, spend)
        mean = float(np.dot(row_weights, rows)) / total
        if not np.isfinite(mean):
            return np.inf, np.zeros_like(params)
        return -mean, -(gradient_rows @ row_weights) / total * params

    report = estimate_and_report(maximise(objective, np.log(initial.as_array())), PARAMETER_NAMES, total, int(x.size))
    return GammaGammaFit(params=GammaGammaParams(*report.pop("estimate")), **report)


def expected_average_spend(
    params: GammaGammaParams, frequency: npt.ArrayLike, monetary_value: npt.ArrayLike
) -> FloatArray:
    """E[spend per purchase | x, m] = (p v + p x m) / (p x + q - 1): a weighted average of the population mean
    p v / (q - 1) (weight (q - 1) / (p x + q - 1)) and the member's own mean m. For x = 0, the population mean."""
    if params.q <= 1.0:
        raise ValueError(f"q = {params.q:.4g} <= 1: the fitted spend distribution has no mean; do not use it")
    x, spend = _spend_arrays(frequency, monetary_value)
    own = np.where(x > 0, spend, 0.0)
    p, q, v = params.p, params.q, params.v
    return np.asarray((p * v + p * x * own) / (p * x + q - 1.0), dtype=np.float64)


def spend_frequency_correlation(
    frequency: npt.ArrayLike, monetary_value: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> float:
    """Pearson correlation of x and mean spend among members with x >= 1: the independence check (near 0 is fine;
    a strong correlation means the Gamma-Gamma averages should not be trusted)."""
    x, spend = _spend_arrays(frequency, monetary_value)
    row_weights = check_weights(weights, x.size)
    repeat = x > 0
    w = np.ones(int(repeat.sum())) if row_weights is None else row_weights[repeat]
    xs, ms = x[repeat], spend[repeat]
    if xs.size < 2:
        return float("nan")
    dx = xs - np.average(xs, weights=w)
    dm = ms - np.average(ms, weights=w)
    denominator = np.sqrt(np.dot(w, dx * dx) * np.dot(w, dm * dm))
    return float(np.dot(w, dx * dm) / denominator) if denominator > 0 else float("nan")


def _log_likelihood_rows(params: FloatArray, x: FloatArray, spend: FloatArray) -> tuple[FloatArray, FloatArray]:
    """ln f(m | x) = lnG(px+q) - lnG(px) - lnG(q) + q ln v + (px-1) ln m + px ln x - (px+q) ln(xm+v), and its
    gradient in (p, q, v)."""
    p, q, v = (float(value) for value in params)
    px = p * x
    log_spend = np.log(spend)
    log_total = np.log(x * spend + v)
    rows = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * log_spend
        + px * np.log(x)
        - (px + q) * log_total
    )
    digamma_all = special.digamma(px + q)
    gradient = np.empty((3, x.size))
    gradient[0] = x * (digamma_all - special.digamma(px) + log_spend + np.log(x) - log_total)
    gradient[1] = digamma_all - special.digamma(q) + np.log(v) - log_total
    gradient[2] = q / v - (px + q) / (x * spend + v)
    return np.asarray(rows, dtype=np.float64), gradient


def _spend_arrays(
    frequency: npt.ArrayLike, monetary_value: npt.ArrayLike, *, broadcast: bool = True
) -> tuple[FloatArray, FloatArray]:
    x = as_float_array("frequency", frequency)
    spend = as_float_array("monetary_value", monetary_value)
    mismatch = ValueError(f"frequency and monetary_value must have the same shape, got {x.shape}, {spend.shape}")
    if not broadcast and x.shape != spend.shape:
        raise mismatch
    try:
        x, spend = np.broadcast_arrays(x, spend)
    except ValueError:
        raise mismatch from None
    check_whole_counts("frequency", x)
    bad = (x > 0) & (spend <= 0)
    if np.any(bad):
        raise ValueError(
            "monetary_value must be positive for customers with repeat purchases (refunds netting to zero? leave "
            f"those customers out; first bad row: {int(np.flatnonzero(bad.ravel())[0])})"
        )
    return x, spend
