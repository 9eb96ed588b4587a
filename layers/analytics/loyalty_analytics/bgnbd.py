"""BG/NBD: how many purchases a member will make, and whether they are still "alive".

Fader, Hardie and Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD model",
Marketing Science 24(2). While alive, a member buys at a Poisson rate lambda; after each repeat purchase they drop
out for good with probability p. Across members lambda ~ Gamma(shape r, rate alpha) and p ~ Beta(a, b).

Each member is summarised as (x, t_x, T): x repeat purchases (purchase periods after the first one), t_x the time
from the first purchase to the last, T the time from the first purchase to the end of observation
(`loyalty_analytics.summary` builds these). Time is in whatever unit the inputs use (the CDNOW benchmark uses
weeks; the refresh uses days): r, a and b do not depend on the unit, alpha scales with it (`with_time_scale`), and
`t` in `expected_purchases` is in the same unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import integrate, special

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

PARAMETER_NAMES = ("r", "alpha", "a", "b")
# The conditional expectation has removable singularities at a = 1 and (for x = 0) at a + b = 1: within
# _POLE_WIDTH of them it is evaluated with `a` moved by _POLE_SHIFT (relative effect on the result ~1e-6).
_POLE_WIDTH = 1e-7
_POLE_SHIFT = 1e-6
# Horizons with max(r + x, 1) * t / (alpha + T) at most this use a power series instead of the 2F1.
_SHORT_HORIZON = 0.05


@dataclass(frozen=True)
class BgNbdParams:
    """Population parameters: purchase rate ~ Gamma(r, alpha) (mean r/alpha per time unit), dropout ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        check_positive_parameters("BG/NBD", self, PARAMETER_NAMES)

    def with_time_scale(self, new_units_per_old_unit: float) -> BgNbdParams:
        """The same model with time measured in a finer (or coarser) unit: fitted in weeks, `with_time_scale(7)`
        gives the parameters for days. Only alpha changes (a rate per week is 7 times a rate per day)."""
        return BgNbdParams(self.r, self.alpha * new_units_per_old_unit, self.a, self.b)

    def as_array(self) -> FloatArray:
        return np.array([self.r, self.alpha, self.a, self.b], dtype=np.float64)


@dataclass(frozen=True)
class BgNbdFit:
    params: BgNbdParams
    log_likelihood: float  # total over all customers (weighted), at params
    converged: bool
    iterations: int  # L-BFGS-B iterations plus Newton polish steps
    n_customers: float  # total weight: the number of customers when there are no weights
    n_rows: int  # distinct rows the likelihood was evaluated on (after grouping)
    standard_errors: dict[str, float] = field(hash=False)  # asymptotic, from the observed information; NaN if none
    message: str = "converged"


def fit(
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    T: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    *,
    initial: BgNbdParams | None = None,
    group: bool = True,
) -> BgNbdFit:
    """Maximum-likelihood BG/NBD parameters for members summarised as (frequency, recency, T).

    Identical rows are collapsed into one row with a weight before fitting (`group=False` turns that off; it only
    changes the speed). How far that goes depends on the data: CDNOW's 2,357 members are 1,016 distinct rows, and
    all one-time buyers who joined on the same day share one. `weights` are counts of customers per row (they scale
    the standard errors)."""
    x, t_x, age = _summary_arrays(frequency, recency, T, broadcast=False)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("BG/NBD fit needs a non-empty one-dimensional summary (one row per customer)")
    row_weights = check_weights(weights, x.size)
    if group:
        (x, t_x, age), row_weights = group_rows((x, t_x, age), row_weights)
    if row_weights is None:
        row_weights = np.ones(x.size)
    total = float(row_weights.sum())
    repeats = float(np.dot(row_weights, x))
    if repeats == 0:
        raise ValueError("no customer has a repeat purchase: the purchase rate cannot be estimated")

    if initial is None:
        # Gamma(1, alpha) has mean 1/alpha: start at the pooled repeat rate, with a neutral dropout Beta(1, 1).
        initial = BgNbdParams(1.0, max(float(np.dot(row_weights, age)) / repeats, 1e-6), 1.0, 1.0)

    x_levels = _x_levels(x)

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        params = np.exp(log_params)
        rows, gradient_rows = _log_likelihood_rows(params, x, t_x, age, with_gradient=True, x_levels=x_levels)
        mean = float(np.dot(row_weights, rows)) / total
        gradient = (gradient_rows @ row_weights) / total * params
        if not np.isfinite(mean):
            return np.inf, np.zeros_like(params)
        return -mean, -gradient

    report = estimate_and_report(maximise(objective, np.log(initial.as_array())), PARAMETER_NAMES, total, int(x.size))
    return BgNbdFit(params=BgNbdParams(*report.pop("estimate")), **report)


def log_likelihood(
    params: BgNbdParams,
    frequency: npt.ArrayLike,
    recency: npt.ArrayLike,
    T: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
) -> float:
    """Total (weighted) log-likelihood of the summaries under `params` (FHL eq. 6, in log space)."""
    x, t_x, age = _summary_arrays(frequency, recency, T)
    rows, _ = _log_likelihood_rows(params.as_array(), x.ravel(), t_x.ravel(), age.ravel(), with_gradient=False)
    row_weights = check_weights(weights, rows.size)
    return float(rows.sum() if row_weights is None else np.dot(row_weights, rows))


def probability_alive(
    params: BgNbdParams, frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """P(still active at T | x, t_x, T) (FHL eq. 11). Exactly 1 when x = 0: in BG/NBD a member can only drop out
    right after a repeat purchase, so one-time buyers are never written off by this model (see docs/prediction.md).
    """
    r, alpha, a, b = params.as_array()
    x, t_x, age = _summary_arrays(frequency, recency, T)
    return np.asarray(special.expit(-_log_odds_dropped(r, alpha, a, b, x, t_x, age)), dtype=np.float64)


def expected_purchases(
    params: BgNbdParams, t: npt.ArrayLike, frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike
) -> FloatArray:
    """Expected number of repeat purchases in (T, T + t] given the member's (x, t_x, T) (FHL eq. 10).

    E = P(alive) * (a + b + x - 1) / (a - 1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z)],
    z = t / (alpha + T + t). For a new member (x = t_x = T = 0) it is the unconditional E[X(t)] (FHL eq. 9).
    How the hypergeometric term is kept in its safe region: see `_expected_purchases_given_alive`.
    """
    r, alpha, a, b = params.as_array()
    x, t_x, age = _summary_arrays(frequency, recency, T)
    horizon = as_float_array("t", t)
    if np.any(horizon < 0):
        raise ValueError("t (the prediction horizon) must not be negative")
    x, t_x, age, horizon = np.broadcast_arrays(x, t_x, age, horizon)
    alive = special.expit(-_log_odds_dropped(r, alpha, a, b, x, t_x, age))
    given_alive = _expected_purchases_given_alive(r, alpha, a, b, x, age, horizon)
    return np.asarray(alive * given_alive, dtype=np.float64)


def _expected_purchases_given_alive(
    r: float, alpha: float, a: float, b: float, x: FloatArray, age: FloatArray, horizon: FloatArray
) -> FloatArray:
    """E[purchases in (T, T+t] | alive at T, x] = (a+b+x-1)/(a-1) * [1 - (1-z)^(r+x) 2F1(r+x, b+x; a+b+x-1; z)].

    The same quantity is E[(1 - (1 + p tau)^-(r+x)) / p] for p ~ Beta(a, b + x), tau = t / (alpha + T), which gives
    the bounds 0 <= E <= (r + x) tau used to check every value. First valid answer wins:

    0. Short horizons (max(r + x, 1) tau <= 0.05): that expectation's power series in tau, whose terms shrink at
       least 20-fold each, so there is no cancellation (1 - 2F1 loses digits when the 2F1 is close to 1) and no
       pole at a = 1.
    1. Euler's transformation, 1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z): z is in [0, 1), inside the Gauss
       series' disc, and the upper parameters do not grow with x, so frequent buyers and long horizons do not
       overflow (the direct form's 2F1 grows like (1-z)^-(x+r+1-a)). Valid everywhere plausible fits land.
    2. The direct form (FHL eq. 10, as lifetimes computes it), for the rare points where 1 overflows (a in the
       hundreds, or t hundreds of times alpha + T).
    3. The Beta expectation by adaptive quadrature over the Beta's quantiles (slow, exact): what both closed forms
       leave out, in practice only extreme parameters or horizons.

    Removable singularities: at a = 1 and, for x = 0, at a + b = 1 the closed forms are 0/0; there `a` is moved by
    _POLE_SHIFT (relative effect on the result about 1e-6).
    """
    shape = x.shape
    x, age, horizon = x.ravel(), age.ravel(), horizon.ravel()
    tau = horizon / (alpha + age)
    upper = (r + x) * tau
    result = np.full(x.shape, np.nan)

    short = np.maximum(r + x, 1.0) * tau <= _SHORT_HORIZON
    result[short] = _short_horizon_series(r + x[short], a, b + x[short], tau[short])

    def valid(values: FloatArray, bound: FloatArray) -> npt.NDArray[np.bool_]:
        return np.isfinite(values) & (values >= 0) & (values <= bound * (1 + 1e-9))

    todo = np.flatnonzero(~short)
    if todo.size:
        xs, zs = x[todo], horizon[todo] / (alpha + age[todo] + horizon[todo])
        a_eval = np.full(todo.size, a)
        a_eval[(abs(a - 1.0) < _POLE_WIDTH) | ((xs == 0) & (abs(a + b - 1.0) < _POLE_WIDTH))] = a + _POLE_SHIFT
        c = a_eval + b + xs - 1.0
        log_1mz = np.log1p(-zs)
        with np.errstate(all="ignore"):
            f_euler = np.exp((a_eval - 1.0) * log_1mz) * special.hyp2f1(a_eval + b - 1.0 - r, a_eval - 1.0, c, zs)
            values = c / (a_eval - 1.0) * (1.0 - f_euler)
            retry = ~valid(values, upper[todo])
            if np.any(retry):
                f_direct = np.exp((r + xs[retry]) * log_1mz[retry]) * special.hyp2f1(
                    r + xs[retry], b + xs[retry], c[retry], zs[retry]
                )
                values[retry] = c[retry] / (a_eval[retry] - 1.0) * (1.0 - f_direct)
        result[todo] = values
        todo = todo[~valid(values, upper[todo])]
    if todo.size:
        # Slow path, once per distinct (x, tau) among the rows that need it.
        distinct, inverse = np.unique(np.column_stack([x[todo], tau[todo]]), axis=0, return_inverse=True)
        slow = np.array([_given_alive_by_quadrature(r + xi, a, b + xi, ti) for xi, ti in distinct])
        result[todo] = slow[inverse.reshape(-1)]
    return np.asarray(result, dtype=np.float64).reshape(shape)


def _short_horizon_series(shape: FloatArray, a: float, b_x: FloatArray, tau: FloatArray) -> FloatArray:
    """E[(1 - (1 + p tau)^-shape) / p], p ~ Beta(a, b_x), term by term: the binomial series of (1 + p tau)^-shape
    and E[p^n] = (a)_n / (a + b_x)_n give sum_{n>=1} (-1)^(n+1) (shape)_n (a)_(n-1) / (n! (a+b_x)_(n-1)) tau^n.
    With max(shape, 1) tau <= 0.05 each term is at most 1/20 of the one before: 14 terms reach 1e-16."""
    term = shape * tau
    total = term.copy()
    for n in range(1, 14):
        term = -term * (shape + n) * (a + n - 1.0) * tau / ((n + 1.0) * (a + b_x + n - 1.0))
        total += term
    return np.asarray(total, dtype=np.float64)


def _given_alive_by_quadrature(shape: float, a: float, b_x: float, tau: float) -> float:
    """E[(1 - (1 + p tau)^-shape) / p] for p ~ Beta(a, b_x) (shape = r + x, b_x = b + x), integrated over the
    Beta's quantiles u in (0, 1): the integrand is bounded by shape * tau and monotone, whatever a and b."""
    if tau == 0:
        return 0.0

    def integrand(u: float) -> float:
        p = float(special.betaincinv(a, b_x, u))
        return -math.expm1(-shape * math.log1p(p * tau)) / p if p > 0 else shape * tau

    # The integrand falls from shape * tau to about 1/p around p = 1/(shape * tau): tell QUADPACK where that is in
    # quantile space, or with a huge tau it can miss a sliver near u = 0 that holds most of the integral.
    knees = special.betainc(a, b_x, np.minimum(1.0, np.logspace(-3, 3, 7) / (shape * tau)))
    points = np.unique(knees[(knees > 1e-12) & (knees < 1.0 - 1e-12)])
    # full_output: QUADPACK's notes come back as data instead of warnings. An answer it cannot vouch for is NaN,
    # not a wrong number.
    value, error, *_ = integrate.quad(
        integrand, 0.0, 1.0, points=points if points.size else None, epsabs=0.0, epsrel=1e-10, limit=400, full_output=1
    )
    if not error <= 1e-6 * abs(value):
        return math.nan
    return float(value)


def _log_odds_dropped(
    r: float, alpha: float, a: float | FloatArray, b: float, x: FloatArray, t_x: FloatArray, age: FloatArray
) -> FloatArray:
    """log[P(dropped out at the last purchase) / P(alive)] = ln(a/(b+x-1)) + (r+x) ln((alpha+T)/(alpha+t_x)) for
    x > 0, and -inf for x = 0."""
    repeat = x > 0
    denominator = np.where(repeat, b + x - 1.0, 1.0)
    log_odds = np.log(a) - np.log(denominator) + (r + x) * np.log1p((age - t_x) / (alpha + t_x))
    return np.asarray(np.where(repeat, log_odds, -np.inf), dtype=np.float64)


def _log_likelihood_rows(
    params: FloatArray,
    x: FloatArray,
    t_x: FloatArray,
    age: FloatArray,
    *,
    with_gradient: bool,
    x_levels: tuple[FloatArray, npt.NDArray[np.intp]] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Per-row log-likelihood ln L = A1 + A2 + ln(exp(A3) + [x>0] exp(A4)), and its gradient in natural params.

    A1 = lnG(r+x) - lnG(r) + r ln(alpha);  A2 = lnG(a+b) + lnG(b+x) - lnG(b) - lnG(a+b+x)
    A3 = -(r+x) ln(alpha+T);               A4 = ln(a/(b+x-1)) - (r+x) ln(alpha+t_x)
    The sum of the two exponentials is taken with logaddexp, so nothing under- or overflows. The gamma and digamma
    terms depend on x alone: they are computed once per distinct x (`x_levels`: the distinct values and each row's
    index into them) and gathered, which takes most of the special-function work off the per-row cost.
    """
    r, alpha, a, b = (float(value) for value in params)
    levels, level_of = x_levels if x_levels is not None else _x_levels(x)
    repeat_level = levels > 0
    b_x_1_level = np.where(repeat_level, b + levels - 1.0, 1.0)
    gamma_terms = special.gammaln(r + levels) + special.gammaln(b + levels) - special.gammaln(a + b + levels)
    constant = -special.gammaln(r) + r * np.log(alpha) + special.gammaln(a + b) - special.gammaln(b)
    dropped_level = np.where(repeat_level, np.log(a) - np.log(b_x_1_level), -np.inf)

    log_alpha_age = np.log(alpha + age)
    log_alpha_tx = np.log(alpha + t_x)
    a3 = -(r + x) * log_alpha_age
    a4 = dropped_level[level_of] - (r + x) * log_alpha_tx  # -inf for x = 0: no A4 term
    tail = np.logaddexp(a3, a4)
    rows = np.asarray(gamma_terms[level_of] + constant + tail, dtype=np.float64)
    if not with_gradient:
        return rows, np.empty((4, 0))

    # Posterior weights of the two ways to have seen this history: still alive (A3) or dropped after t_x (A4).
    w3 = np.exp(a3 - tail)
    w4 = np.exp(a4 - tail)
    digamma_ab, digamma_abx = special.digamma(a + b), special.digamma(a + b + levels)
    d_r = (special.digamma(r + levels) - special.digamma(r) + np.log(alpha))[level_of]
    d_a = (digamma_ab - digamma_abx)[level_of]
    d_b = (digamma_ab + special.digamma(b + levels) - special.digamma(b) - digamma_abx)[level_of]
    gradient = np.empty((4, x.size))
    gradient[0] = d_r - w3 * log_alpha_age - w4 * log_alpha_tx
    gradient[1] = r / alpha - (r + x) * (w3 / (alpha + age) + w4 / (alpha + t_x))
    gradient[2] = d_a + w4 / a
    gradient[3] = d_b - w4 / b_x_1_level[level_of]
    return rows, gradient


def _x_levels(x: FloatArray) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    levels, level_of = np.unique(x, return_inverse=True)
    return levels, level_of.reshape(-1)


def _summary_arrays(
    frequency: npt.ArrayLike, recency: npt.ArrayLike, T: npt.ArrayLike, *, broadcast: bool = True
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validated float arrays; predictions broadcast them (a scalar T for everyone), a fit wants one row each."""
    x = as_float_array("frequency", frequency)
    t_x = as_float_array("recency", recency)
    age = as_float_array("T", T)
    mismatch = ValueError(f"frequency, recency and T must have the same shape, got {x.shape}, {t_x.shape}, {age.shape}")
    if not broadcast and not (x.shape == t_x.shape == age.shape):
        raise mismatch
    try:
        x, t_x, age = np.broadcast_arrays(x, t_x, age)
    except ValueError:
        raise mismatch from None
    check_whole_counts("frequency", x)
    if np.any(t_x < 0):
        raise ValueError(f"recency must not be negative (first bad row: {int(np.flatnonzero(t_x.ravel() < 0)[0])})")
    if np.any(t_x > age):
        bad = int(np.flatnonzero((t_x > age).ravel())[0])
        raise ValueError(
            f"recency must not exceed T (the last purchase is inside the observation; first bad row: {bad})"
        )
    if np.any((x == 0) & (t_x != 0)):
        bad = int(np.flatnonzero(((x == 0) & (t_x != 0)).ravel())[0])
        raise ValueError(f"recency must be 0 when frequency is 0 (no repeat purchase; first bad row: {bad})")
    return x, t_x, age
