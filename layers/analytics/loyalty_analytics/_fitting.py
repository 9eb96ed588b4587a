"""Shared machinery for the maximum-likelihood fits: input checks, collapsing identical rows, and the optimiser.

The models are fitted on log-parameters (every parameter is positive), by L-BFGS-B with the analytic gradient, then
polished by a few Newton steps on a Hessian taken by central differences of that gradient. The polish brings the
gradient down to rounding level, so two fits of the same likelihood (grouped or not) agree to many digits, and the
same Hessian gives the standard errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize

FloatArray = npt.NDArray[np.float64]

# Log-parameters live in [-LOG_BOUND, LOG_BOUND]: about 2e-9 to 5e8, far beyond any plausible estimate. A fit that
# ends on the bound is reported as not converged (the likelihood wants a degenerate model).
LOG_BOUND = 20.0
# What "converged" means: the largest partial derivative of the mean log-likelihood per customer (with respect to
# the log-parameters) is below this after the polish.
GRADIENT_TOLERANCE = 1e-6

Objective = Callable[[FloatArray], tuple[float, FloatArray]]


def as_float_array(name: str, values: npt.ArrayLike) -> FloatArray:
    """A float64 copy of the input, refusing NaN and infinities by name."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numbers: {error}") from None
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite numbers (first bad row: {_first(~np.isfinite(array))})")
    return array


def check_whole_counts(name: str, values: FloatArray) -> None:
    if np.any(values < 0):
        raise ValueError(f"{name} must not be negative (first bad row: {_first(values < 0)})")
    fractional = values != np.floor(values)
    if np.any(fractional):
        raise ValueError(f"{name} must be whole numbers of repeat purchases (first bad row: {_first(fractional)})")


def check_weights(weights: npt.ArrayLike | None, size: int) -> FloatArray | None:
    if weights is None:
        return None
    array = as_float_array("weights", weights)
    if array.shape != (size,):
        raise ValueError(f"weights must have one entry per row ({size}), got shape {array.shape}")
    if np.any(array < 0):
        raise ValueError(f"weights must not be negative (first bad row: {_first(array < 0)})")
    if not np.any(array > 0):
        raise ValueError("weights are all zero: nothing to fit")
    return array


def group_rows(columns: Sequence[FloatArray], weights: FloatArray | None) -> tuple[list[FloatArray], FloatArray]:
    """Collapse identical rows into distinct rows with summed weights (a count when weights is None).

    The log-likelihood is a sum over customers of a function of their row, so customers with the same row contribute
    the same term: evaluating it once per distinct row, times its weight, gives the same sum with far less work.
    """
    # One integer key per row, built column by column from each column's rank among its distinct values and
    # re-compressed after each column (so it never overflows): 1-D sorts, several times faster than np.unique(axis=0).
    key = np.zeros(columns[0].shape[0], dtype=np.int64)
    for column in columns:
        values, codes = np.unique(column, return_inverse=True)
        _, key = np.unique(key * values.size + codes.reshape(-1), return_inverse=True)
        key = key.reshape(-1)
    size = int(key.max()) + 1 if key.size else 0
    summed = np.bincount(key, weights=weights, minlength=size).astype(np.float64)
    # Any row of a group represents it (they are identical), so whichever write lands last is fine.
    representative = np.empty(size, dtype=np.int64)
    representative[key] = np.arange(key.size)
    keep = summed > 0
    return [np.ascontiguousarray(column[representative[keep]]) for column in columns], summed[keep]


@dataclass(frozen=True)
class Optimum:
    log_params: FloatArray
    mean_log_likelihood: float
    converged: bool
    iterations: int
    message: str
    # Hessian of the mean negative log-likelihood with respect to the log-parameters (None if not positive definite).
    hessian: FloatArray | None


def maximise(objective: Objective, start: FloatArray) -> Optimum:
    """Minimise `objective` (mean negative log-likelihood and its gradient, both in log-parameters)."""
    bounds = [(-LOG_BOUND, LOG_BOUND)] * start.size
    result = optimize.minimize(
        objective,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 2000, "ftol": 1e-13, "gtol": 1e-8},
    )
    point = np.clip(np.asarray(result.x, dtype=np.float64), -LOG_BOUND, LOG_BOUND)
    value, gradient = objective(point)
    iterations = int(result.nit)

    hessian = _hessian(objective, point)
    for _ in range(6):
        if _max_abs(gradient) < 1e-12 or not _positive_definite(hessian):
            break
        step = np.linalg.solve(hessian, -gradient)
        improved = False
        for _halving in range(20):
            candidate = np.clip(point + step, -LOG_BOUND, LOG_BOUND)
            candidate_value, candidate_gradient = objective(candidate)
            if (
                np.isfinite(candidate_value)
                and candidate_value <= value + 1e-13 * max(1.0, abs(value))
                and _max_abs(candidate_gradient) < _max_abs(gradient)
            ):
                point, value, gradient, improved = candidate, candidate_value, candidate_gradient, True
                break
            step = step / 2.0
        if not improved:
            break
        iterations += 1
        hessian = _hessian(objective, point)

    definite = _positive_definite(hessian)
    on_bound = bool(np.any(np.abs(point) >= LOG_BOUND - 1e-9))
    small_gradient = _max_abs(gradient) < GRADIENT_TOLERANCE
    if on_bound:
        message = "a parameter reached its bound (exp(+/-20)): the data push the model to a degenerate corner"
    elif not small_gradient:
        message = f"gradient still {_max_abs(gradient):.3g} after {iterations} iterations ({result.message})"
    elif not definite:
        message = "stationary point, but the Hessian is not positive definite (parameters not identified)"
    else:
        message = "converged"
    return Optimum(
        log_params=point,
        mean_log_likelihood=-value,
        converged=small_gradient and definite and not on_bound and bool(np.isfinite(value)),
        iterations=iterations,
        message=message,
        hessian=hessian if definite else None,
    )


def standard_errors(params: FloatArray, optimum: Optimum, total_weight: float) -> FloatArray:
    """Asymptotic standard errors of the (natural) parameters, by the delta method from the log-parameter Hessian.

    The Hessian is of the mean log-likelihood, so the observed information is Hessian x number of customers (the
    weights are read as counts). NaN when the Hessian is not positive definite.
    """
    if optimum.hessian is None:
        return np.full(params.shape, np.nan)
    covariance = np.linalg.inv(optimum.hessian * total_weight)
    return np.asarray(params * np.sqrt(np.clip(np.diag(covariance), 0.0, None)), dtype=np.float64)


def _hessian(objective: Objective, point: FloatArray, step: float = 1e-4) -> FloatArray:
    size = point.size
    hessian = np.empty((size, size))
    for i in range(size):
        shift = np.zeros(size)
        shift[i] = step
        _, forward = objective(point + shift)
        _, backward = objective(point - shift)
        hessian[:, i] = (forward - backward) / (2.0 * step)
    return np.asarray((hessian + hessian.T) / 2.0, dtype=np.float64)


def _positive_definite(matrix: FloatArray) -> bool:
    if not np.all(np.isfinite(matrix)):
        return False
    return bool(np.all(np.linalg.eigvalsh(matrix) > 0))


def _max_abs(values: FloatArray) -> float:
    return float(np.max(np.abs(values)))


def _first(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(np.ravel(mask))[0])


def estimate_and_report(optimum: Optimum, names: Sequence[str], total_weight: float, n_rows: int) -> dict[str, Any]:
    """What every fit reports beside its parameters, from the optimiser's result: the natural-scale estimate
    (under "estimate"), total log-likelihood, convergence, counts and standard errors by parameter name."""
    estimate = np.exp(optimum.log_params)
    errors = standard_errors(estimate, optimum, total_weight)
    return {
        "estimate": tuple(float(value) for value in estimate),
        "log_likelihood": optimum.mean_log_likelihood * total_weight,
        "converged": optimum.converged,
        "iterations": optimum.iterations,
        "n_customers": total_weight,
        "n_rows": n_rows,
        "standard_errors": {name: float(error) for name, error in zip(names, errors, strict=True)},
        "message": optimum.message,
    }


def check_positive_parameters(model: str, params: object, names: Sequence[str]) -> None:
    """Every named parameter of a model is a positive finite number (what the likelihoods are defined for)."""
    for name in names:
        value = getattr(params, name)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"{model} parameter {name} must be a positive finite number, got {value!r}")
