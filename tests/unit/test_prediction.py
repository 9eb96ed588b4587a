"""BG/NBD and Gamma-Gamma: the behaviour the segment refresh relies on, checked against independent computations
(numerical integration, finite differences, simulation from known parameters) rather than against the code itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from loyalty_analytics import bgnbd, gamma_gamma
from loyalty_analytics.bgnbd import BgNbdParams
from loyalty_analytics.gamma_gamma import GammaGammaParams

# The published CDNOW estimates (weeks), a realistic point to test predictions at.
CDNOW = BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)

# Rows that stress the likelihood: brand new, one-time buyer, repeat at time 0, a heavy buyer, a very old member.
EDGE_X = np.array([0, 0, 1, 1, 2, 5, 30, 200, 1000], dtype=float)
EDGE_TX = np.array([0, 0, 0, 0.5, 99, 10, 59, 150, 1999], dtype=float)
EDGE_T = np.array([0, 50, 50, 0.5, 100, 52, 60, 300, 2000], dtype=float)

log_parameter = st.floats(min_value=-3.0, max_value=3.0, allow_nan=False)


def simulate_bgnbd(params: BgNbdParams, T: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Draw (x, t_x, T) from the BG/NBD story itself: lambda ~ Gamma(r, alpha), p ~ Beta(a, b), purchases at rate
    lambda, dropout after each repeat purchase with probability p. Given N(T) = n Poisson events in (0, T], the
    customer sees min(n, K) of them (K ~ Geometric(p): the repeat purchase after which they leave), and the k-th of n
    uniform event times is T * Beta(k, n - k + 1)."""
    rate = rng.gamma(params.r, 1.0 / params.alpha, T.size)
    dropout = rng.beta(params.a, params.b, T.size)
    events = rng.poisson(rate * T)
    last_before_leaving = rng.geometric(dropout)
    x = np.minimum(events, last_before_leaving)
    t_x = np.zeros(T.size)
    seen = x > 0
    t_x[seen] = T[seen] * rng.beta(x[seen], events[seen] - x[seen] + 1)
    return x.astype(float), t_x, T


def expected_purchases_by_integration(params: BgNbdParams, t: float, x: float, t_x: float, T: float) -> float:
    """FHL eq. 10 without any hypergeometric function. Integrating lambda out of the posterior analytically leaves
    E = P(alive) * E[(1 - (1 + p tau)^-(r+x)) / p] over p ~ Beta(a, b + x), tau = t / (alpha + T), with
    P(alive) from the ratio of the likelihood's two terms. The p integral is done by QUADPACK in p itself."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    shape, tau = r + x, t / (alpha + T)

    def integrand(p: float) -> float:
        g = -math.expm1(-shape * math.log1p(p * tau)) / p if p > 0 else shape * tau
        return g * math.exp((a - 1) * math.log(p) + (b + x - 1) * math.log1p(-p) - special.betaln(a, b + x))

    mean = a / (a + b + x)
    value, _ = integrate.quad(integrand, 0, 1, points=[mean / 10, mean, min(0.99, 10 * mean)], limit=200)
    dropped_over_alive = a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** shape if x > 0 else 0.0
    return value / (1 + dropped_over_alive)


# --- probability alive -------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(r=log_parameter, alpha=log_parameter, a=log_parameter, b=log_parameter)
def test_probability_alive_is_a_probability_for_any_parameters(r: float, alpha: float, a: float, b: float) -> None:
    params = BgNbdParams(10**r, 10**alpha, 10**a, 10**b)

    alive = bgnbd.probability_alive(params, EDGE_X, EDGE_TX, EDGE_T)

    assert np.all((alive >= 0) & (alive <= 1))


def test_one_time_buyers_are_certainly_alive() -> None:
    """BG/NBD lets members drop out only right after a repeat purchase, so x = 0 means alive, however long ago."""
    alive = bgnbd.probability_alive(CDNOW, [0, 0, 0], [0, 0, 0], [0, 10, 500])

    assert np.array_equal(alive, [1.0, 1.0, 1.0])


def test_probability_alive_falls_the_longer_a_repeat_buyer_stays_silent() -> None:
    T = np.linspace(20, 200, 50)

    alive = bgnbd.probability_alive(CDNOW, 4, 20.0, T)

    assert np.all(np.diff(alive) < 0)
    assert alive[0] > 0.7 and alive[-1] < 0.05


def test_probability_alive_is_one_when_the_last_purchase_is_now() -> None:
    """x > 0 and t_x = T: the odds of having dropped are a / (b + x - 1), not 0; more purchases, more alive."""
    alive = bgnbd.probability_alive(CDNOW, [1, 5, 20], [30, 30, 30], [30, 30, 30])

    expected = 1 / (1 + CDNOW.a / (CDNOW.b + np.array([1, 5, 20]) - 1))
    assert np.allclose(alive, expected, rtol=1e-12)
    assert np.all(np.diff(alive) > 0)


# --- expected purchases ------------------------------------------------------------------------------------------


def test_expected_purchases_are_zero_at_no_horizon_and_grow_with_it() -> None:
    horizons = np.array([0, 0.5, 1, 4, 13, 26, 52, 104, 520, 5200], dtype=float)

    for x, t_x, T in [(0, 0, 0), (0, 0, 30), (2, 30.43, 38.86), (26, 30.86, 31.0), (3, 2.0, 39.0)]:
        expected = bgnbd.expected_purchases(CDNOW, horizons, x, t_x, T)

        assert expected[0] == 0
        assert np.all(np.diff(expected) > 0), (x, t_x, T, expected)


@settings(max_examples=150, deadline=None)
@given(r=log_parameter, alpha=log_parameter, a=log_parameter, b=log_parameter, t=st.floats(min_value=-2, max_value=4))
def test_expected_purchases_are_finite_and_within_their_bounds_for_any_parameters(
    r: float, alpha: float, a: float, b: float, t: float
) -> None:
    """0 <= E <= P(alive) * (r + x) * t / (alpha + T): the posterior mean purchase rate times the horizon."""
    params = BgNbdParams(10**r, 10**alpha, 10**a, 10**b)
    horizon = 10**t

    expected = bgnbd.expected_purchases(params, horizon, EDGE_X, EDGE_TX, EDGE_T)

    alive = bgnbd.probability_alive(params, EDGE_X, EDGE_TX, EDGE_T)
    bound = alive * (params.r + EDGE_X) * horizon / (params.alpha + EDGE_T)
    assert np.all(np.isfinite(expected))
    assert np.all((expected >= 0) & (expected <= bound * (1 + 1e-8)))


@pytest.mark.parametrize(
    "params",
    [CDNOW, BgNbdParams(1.0, 4.0, 1.8, 2.5), BgNbdParams(2.0, 30.0, 0.3, 8.0), BgNbdParams(0.6, 0.5, 3.0, 40.0)],
    ids=["cdnow", "a>1", "small-a", "large-b"],
)
@pytest.mark.parametrize(
    ("x", "t_x", "T"), [(0, 0, 0), (0, 0, 35), (1, 5, 38), (3, 10, 40), (20, 39, 40), (200, 300, 310)]
)
def test_expected_purchases_match_direct_numerical_integration(
    params: BgNbdParams, x: float, t_x: float, T: float
) -> None:
    horizons = [0.1, 1.0, 10.0, 52.0, 500.0]

    expected = bgnbd.expected_purchases(params, horizons, x, t_x, T)

    reference = [expected_purchases_by_integration(params, t, x, t_x, T) for t in horizons]
    assert np.allclose(expected, reference, rtol=1e-7, atol=0)


def test_a_new_members_expectation_is_fhl_equation_9() -> None:
    """For x = t_x = T = 0 the conditional expectation is the unconditional E[X(t)] =
    (a+b-1)/(a-1) [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))], here in its textbook (direct) form."""
    r, alpha, a, b = CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b
    t = np.array([1.0, 13.0, 52.0, 78.0])

    expected = bgnbd.expected_purchases(CDNOW, t, 0, 0, 0)

    textbook = (
        (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * special.hyp2f1(r, b, a + b - 1, t / (alpha + t)))
    )
    assert np.allclose(expected, textbook, rtol=1e-12)


@pytest.mark.parametrize(
    ("r", "a", "b", "x", "t", "direct_form_works", "reference"),
    [
        (0.5, 300.0, 0.02, 1, 1e4, True, 1.003364189639992),
        (0.5, 0.05, 500.0, 0, 1e4, False, 372.61082032389436),
        (0.5, 0.05, 500.0, 1, 1e5, False, 10143.414156297029),
        (2.0, 800.0, 100.0, 200, 1e5, False, None),
    ],
)
def test_horizons_far_beyond_the_members_age_fall_back_instead_of_overflowing(
    r: float, a: float, b: float, x: int, t: float, direct_form_works: bool, reference: float | None
) -> None:
    """Where the Euler-transformed 2F1 overflows (t hundreds of times alpha + T, here z > 0.998), the direct form
    answers, and where that overflows too, quadrature over the Beta. References: mpmath at 60 digits (Euler form),
    which QUADPACK matched to 1e-10; without one, the bound E <= P(alive) (r + x) t / (alpha + T)."""
    alpha, T = 3.0, 10.0
    z, c = t / (alpha + T + t), a + b + x - 1
    upper = (r + x) * t / (alpha + T)
    with np.errstate(all="ignore"):
        euler = c / (a - 1) * (1 - (1 - z) ** (a - 1) * special.hyp2f1(a + b - 1 - r, a - 1, c, z))
        direct = c / (a - 1) * (1 - (1 - z) ** (r + x) * special.hyp2f1(r + x, b + x, c, z))
    params = BgNbdParams(r, alpha, a, b)

    t_x = T if x > 0 else 0.0  # a repeat buyer whose last purchase is just now

    expected = float(bgnbd.expected_purchases(params, t, x, t_x, T))

    alive = float(bgnbd.probability_alive(params, x, t_x, T))
    assert not (np.isfinite(euler) and 0 <= euler <= upper), "the Euler form alone would fail here"
    assert (np.isfinite(direct) and 0 <= direct <= upper) == direct_form_works
    assert 0 < expected <= alive * upper
    if reference is not None:
        assert expected == pytest.approx(alive * reference, rel=1e-8)


@pytest.mark.parametrize(("a", "b", "x"), [(1.06, 687.0, 0), (0.983, 713.0, 0), (1.0, 2.0, 3), (0.793, 2.426, 40)])
def test_tiny_horizons_keep_full_precision_even_next_to_a_equals_one(a: float, b: float, x: int) -> None:
    """1 - 2F1 cancels when the horizon is tiny against alpha + T, and (a+b+x-1)/(a-1) magnifies that near a = 1
    (the closed form was off by 2e-5 at a = 1.06, b = 687). Short horizons use the power series in tau instead:
    E / P(alive) = k tau - k (k+1) a tau^2 / (2 (a+b+x)) + O(tau^3), k = r + x."""
    params = BgNbdParams(0.4, 10.0, a, b)
    T, t = 40.0, 1e-4
    k, tau = params.r + x, t / (params.alpha + T)

    expected = float(bgnbd.expected_purchases(params, t, x, 0.0 if x == 0 else 30.0, T))

    alive = float(bgnbd.probability_alive(params, x, 0.0 if x == 0 else 30.0, T))
    two_terms = k * tau - k * (k + 1) * a * tau**2 / (2 * (a + b + x))
    assert expected == pytest.approx(alive * two_terms, rel=1e-11)


def test_short_horizon_series_and_closed_form_meet_at_the_threshold() -> None:
    """Either side of max(r + x, 1) t / (alpha + T) = 0.05 the two methods answer; they must agree there."""
    alpha, T = 4.414, 0.0
    threshold_t = 0.05 * (alpha + T)
    below, above = bgnbd.expected_purchases(CDNOW, [threshold_t * (1 - 1e-12), threshold_t * (1 + 1e-12)], 0, 0, T)

    assert above == pytest.approx(below, rel=1e-10)


@pytest.mark.parametrize("x", [0, 1, 7])
def test_removable_singularity_at_a_equals_one_is_smooth(x: int) -> None:
    def at(a: float) -> float:
        return float(bgnbd.expected_purchases(BgNbdParams(0.5, 5.0, a, 2.0), 26.0, x, 10.0 * (x > 0), 30.0))

    exactly_one = at(1.0)

    assert math.isfinite(exactly_one)
    assert exactly_one == pytest.approx((at(1.0 - 1e-4) + at(1.0 + 1e-4)) / 2, rel=1e-6)


def test_removable_singularity_at_a_plus_b_equals_one_is_smooth_for_new_members() -> None:
    def at(b: float) -> float:
        return float(bgnbd.expected_purchases(BgNbdParams(0.5, 5.0, 0.4, b), 26.0, 0, 0, 30.0))

    exactly = at(0.6)

    assert math.isfinite(exactly) and exactly > 0
    assert exactly == pytest.approx((at(0.6 - 1e-4) + at(0.6 + 1e-4)) / 2, rel=1e-6)


def test_predictions_broadcast_over_members_and_horizons() -> None:
    x, t_x, T = np.array([0.0, 2.0, 5.0]), np.array([0.0, 20.0, 35.0]), np.array([38.0, 38.0, 38.0])

    grid = bgnbd.expected_purchases(CDNOW, np.array([[13.0], [52.0]]), x, t_x, T)

    assert grid.shape == (2, 3)
    assert np.all(grid[1] > grid[0])


# --- likelihood and fit ------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(r=log_parameter, alpha=log_parameter, a=log_parameter, b=log_parameter)
def test_log_likelihood_is_finite_across_a_broad_parameter_range(r: float, alpha: float, a: float, b: float) -> None:
    params = BgNbdParams(10**r, 10**alpha, 10**a, 10**b)

    value = bgnbd.log_likelihood(params, EDGE_X, EDGE_TX, EDGE_T)

    assert math.isfinite(value)


def test_log_likelihood_matches_the_paper_formula_computed_naively() -> None:
    """FHL eq. 6 term by term in plain floats (fine at these moderate values): the log-space version agrees."""
    r, alpha, a, b = CDNOW.r, CDNOW.alpha, CDNOW.a, CDNOW.b
    rows = [(0, 0.0, 38.0), (2, 30.43, 38.86), (7, 29.43, 38.86), (1, 1.71, 38.86)]
    naive = 0.0
    for x, t_x, T in rows:
        common = math.gamma(r + x) * alpha**r / math.gamma(r) * special.beta(a, b + x) / special.beta(a, b)
        dropped = a / (b + x - 1) * (alpha + t_x) ** -(r + x) if x > 0 else 0.0
        naive += math.log(common * ((alpha + T) ** -(r + x) + dropped))

    value = bgnbd.log_likelihood(CDNOW, *zip(*rows, strict=True))

    assert value == pytest.approx(naive, rel=1e-12)


def test_bgnbd_gradient_matches_finite_differences() -> None:
    x, t_x, T = EDGE_X[1:], EDGE_TX[1:], EDGE_T[1:]
    point = np.array([0.7, 3.0, 1.3, 2.2])

    _, gradient = bgnbd._log_likelihood_rows(point, x, t_x, T, with_gradient=True)

    for i in range(4):
        step = np.zeros(4)
        step[i] = 1e-6 * point[i]
        up, _ = bgnbd._log_likelihood_rows(point + step, x, t_x, T, with_gradient=False)
        down, _ = bgnbd._log_likelihood_rows(point - step, x, t_x, T, with_gradient=False)
        assert np.allclose(gradient[i], (up - down) / (2 * step[i]), rtol=1e-6, atol=1e-8)


@pytest.fixture(scope="module")
def simulated_members() -> tuple[BgNbdParams, tuple[np.ndarray, ...]]:
    """20,000 members from known parameters, observed 52 to 104 weeks. (At CDNOW's own parameters and 20k members,
    a and b have standard errors of 5-6%, so a 10% check would be under 2 standard errors: these are identified
    well enough that 10% is about 3.)"""
    true = BgNbdParams(r=1.0, alpha=4.0, a=0.8, b=2.5)
    rng = np.random.default_rng(20240601)
    T = rng.integers(52, 105, 20_000).astype(float)
    return true, simulate_bgnbd(true, T, rng)


def test_fit_recovers_the_parameters_it_was_simulated_from(
    simulated_members: tuple[BgNbdParams, tuple[np.ndarray, ...]],
) -> None:
    true, (x, t_x, T) = simulated_members

    fitted = bgnbd.fit(x, t_x, T)

    assert fitted.converged, fitted.message
    for name in bgnbd.PARAMETER_NAMES:
        estimate, actual, error = getattr(fitted.params, name), getattr(true, name), fitted.standard_errors[name]
        assert abs(estimate - actual) < 0.10 * actual, (name, estimate, actual)
        assert abs(estimate - actual) < 4 * error, (name, estimate, actual, error)


def test_fitting_in_days_instead_of_weeks_only_rescales_alpha(
    simulated_members: tuple[BgNbdParams, tuple[np.ndarray, ...]],
) -> None:
    _, (x, t_x, T) = simulated_members
    weeks = bgnbd.fit(x[:5000], t_x[:5000], T[:5000])

    days = bgnbd.fit(x[:5000], 7 * t_x[:5000], 7 * T[:5000])

    assert np.allclose(days.params.as_array(), weeks.params.with_time_scale(7).as_array(), rtol=1e-6)


def test_standard_errors_come_from_the_curvature_of_the_log_likelihood(
    simulated_members: tuple[BgNbdParams, tuple[np.ndarray, ...]],
) -> None:
    """Independent of the fit's log-parameter Hessian: the observed information in natural parameters by second
    differences of the public log_likelihood, inverted."""
    _, (x, t_x, T) = simulated_members
    x, t_x, T = x[:3000], t_x[:3000], T[:3000]
    fitted = bgnbd.fit(x, t_x, T)
    theta = fitted.params.as_array()
    h = 1e-3 * theta

    def ll(values: np.ndarray) -> float:
        return bgnbd.log_likelihood(BgNbdParams(*values), x, t_x, T)

    information = np.empty((4, 4))
    for i in range(4):
        for j in range(4):
            ei, ej = np.eye(4)[i] * h[i], np.eye(4)[j] * h[j]
            second = ll(theta + ei + ej) - ll(theta + ei - ej) - ll(theta - ei + ej) + ll(theta - ei - ej)
            information[i, j] = -second / (4 * h[i] * h[j])
    reference = np.sqrt(np.diag(np.linalg.inv(information)))

    assert np.allclose([fitted.standard_errors[n] for n in bgnbd.PARAMETER_NAMES], reference, rtol=1e-3)


def test_grouped_weighted_and_row_by_row_fits_agree() -> None:
    rng = np.random.default_rng(7)
    x, t_x, T = simulate_bgnbd(CDNOW, rng.integers(20, 40, 3000).astype(float), rng)
    t_x = np.round(t_x)  # whole weeks: many identical rows
    distinct, counts = np.unique(np.column_stack([x, t_x, T]), axis=0, return_counts=True)

    grouped = bgnbd.fit(x, t_x, T)
    row_by_row = bgnbd.fit(x, t_x, T, group=False)
    weighted = bgnbd.fit(distinct[:, 0], distinct[:, 1], distinct[:, 2], weights=counts, group=False)

    assert grouped.n_rows == len(distinct) < 3000 == row_by_row.n_rows
    assert grouped.n_customers == row_by_row.n_customers == 3000
    for other in (row_by_row, weighted):
        assert np.allclose(grouped.params.as_array(), other.params.as_array(), rtol=1e-8)
        assert grouped.log_likelihood == pytest.approx(other.log_likelihood, rel=1e-10)


@pytest.mark.parametrize(
    ("frequency", "recency", "T", "message"),
    [
        ([], [], [], "non-empty"),
        ([1, -1], [1, 0], [2, 2], "frequency must not be negative"),
        ([1.5], [1], [2], "whole numbers"),
        ([1], [3], [2], "must not exceed T"),
        ([1], [-1], [2], "recency must not be negative"),
        ([0], [1], [2], "recency must be 0 when frequency is 0"),
        ([1, 2], [1], [2, 3], "same shape"),
        ([1, float("nan")], [1, 1], [2, 2], "finite"),
        ([0, 0], [0, 0], [5, 9], "no customer has a repeat purchase"),
        (["a"], [1], [2], "must be numbers"),
    ],
)
def test_fit_refuses_invalid_summaries_with_a_clear_reason(
    frequency: list[float], recency: list[float], T: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        bgnbd.fit(frequency, recency, T)


def test_parameters_must_be_positive() -> None:
    with pytest.raises(ValueError, match="alpha must be a positive"):
        BgNbdParams(0.2, 0.0, 0.7, 2.0)


# --- Gamma-Gamma -------------------------------------------------------------------------------------------------


def test_gamma_gamma_recovers_the_parameters_it_was_simulated_from() -> None:
    """Spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, v): the mean of x purchases is Gamma(p x, x nu). p and v
    trade off against each other (their SEs are 2-5% here), the population mean p v / (q - 1) much less so."""
    true = GammaGammaParams(p=2.0, q=5.0, v=40.0)
    rng = np.random.default_rng(11)
    x = rng.geometric(0.6, 20_000).astype(float)
    nu = rng.gamma(true.q, 1.0 / true.v, x.size)
    mean_spend = rng.gamma(true.p * x, 1.0 / nu) / x

    fitted = gamma_gamma.fit(x, mean_spend)

    assert fitted.converged, fitted.message
    for name in gamma_gamma.PARAMETER_NAMES:
        estimate, actual, error = getattr(fitted.params, name), getattr(true, name), fitted.standard_errors[name]
        assert abs(estimate - actual) < 4 * error and abs(estimate - actual) < 0.15 * actual, (name, estimate)
    assert fitted.params.population_mean_spend == pytest.approx(true.population_mean_spend, rel=0.03)


def test_gamma_gamma_gradient_matches_finite_differences() -> None:
    x, spend = np.array([1.0, 2.0, 5.0, 40.0]), np.array([12.0, 30.5, 8.25, 19.0])
    point = np.array([3.0, 2.5, 12.0])

    _, gradient = gamma_gamma._log_likelihood_rows(point, x, spend)

    for i in range(3):
        step = np.zeros(3)
        step[i] = 1e-6 * point[i]
        up, _ = gamma_gamma._log_likelihood_rows(point + step, x, spend)
        down, _ = gamma_gamma._log_likelihood_rows(point - step, x, spend)
        assert np.allclose(gradient[i], (up - down) / (2 * step[i]), rtol=1e-6, atol=1e-9)


def test_expected_spend_shrinks_own_average_towards_the_population_mean() -> None:
    params = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    population = params.population_mean_spend

    spend = gamma_gamma.expected_average_spend(params, [0, 1, 5, 50, 5000], [0.0, 100.0, 100.0, 100.0, 100.0])

    assert spend[0] == pytest.approx(population, rel=1e-12)
    assert np.all(np.diff(spend[1:]) > 0)  # more purchases, closer to their own 100
    assert population < spend[1] < 100 and spend[-1] == pytest.approx(100, rel=1e-3)


def test_expected_spend_refuses_a_distribution_without_a_mean() -> None:
    with pytest.raises(ValueError, match="no mean"):
        gamma_gamma.expected_average_spend(GammaGammaParams(2.0, 0.9, 10.0), [1], [20.0])


def test_gamma_gamma_ignores_one_time_buyers_and_refuses_non_positive_spend() -> None:
    x, spend = np.array([0, 1, 2, 3, 1, 4], dtype=float), np.array([0, 10, 20, 15, 12, 30.0])
    with_one_timers = gamma_gamma.fit(x, spend)
    without = gamma_gamma.fit(x[x > 0], spend[x > 0])

    assert with_one_timers.n_customers == 5
    assert np.allclose(with_one_timers.params.as_array(), without.params.as_array(), rtol=1e-10)
    with pytest.raises(ValueError, match="monetary_value must be positive"):
        gamma_gamma.fit([1, 2], [10.0, 0.0])
    with pytest.raises(ValueError, match="no customer has a repeat purchase"):
        gamma_gamma.fit([0, 0], [0.0, 0.0])


def test_spend_frequency_correlation_is_pearson_among_repeat_buyers() -> None:
    x = np.array([0, 1, 2, 3, 4], dtype=float)
    spend = np.array([999.0, 10.0, 20.0, 30.0, 40.0])  # the one-time buyer's value is ignored

    assert gamma_gamma.spend_frequency_correlation(x, spend) == pytest.approx(1.0)
    assert gamma_gamma.spend_frequency_correlation(x, spend[::-1] * [1, 1, 1, 1, 1]) == pytest.approx(
        np.corrcoef(x[1:], spend[::-1][1:])[0, 1]
    )
