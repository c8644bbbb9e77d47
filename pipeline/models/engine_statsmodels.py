"""The second engine: statsmodels' ``MixedLM``, kept so a reviewer can cross-check.

``model.engine: statsmodels`` in params.yaml fits every model with this engine (the
project's first fitter, moved here from ``pipeline/model.py``): every optimizer in
``model.statsmodels_optimizers`` is run, the best log-likelihood kept, Newton-polished
and its gradient checked. statsmodels needs one top-level group (the therapist) with
variance components nested in it, so it covers random parts whose coarsest factor has a
random intercept only and whose other terms are single, uncorrelated columns; a
correlated client slope inside therapists (statsmodels issue 8123) is refused as not
estimable with this engine. ``tests/test_models_engines.py`` holds the two engines to
each other on the lme4 fixtures.

The optimum is reported in the native engine's theta (sqrt of each variance over the
residual variance) so that the Satterthwaite df, random effects and R² are computed the
same way for both engines; estimates, SEs and the log-likelihood are statsmodels' own.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from scipy import linalg
from statsmodels.regression.mixed_linear_model import MixedLM

from pipeline.errors import NotEstimableError
from pipeline.models.engine import Problem
from pipeline.models.spec import RandomPart

DATA_KINDS = ("complete", "lagged", "detrended")
#: Log-likelihoods this close to the best count as a tie when naming the winner.
LOGLIK_TIE = 1e-4
#: |relative Cholesky parameter| below this is a variance at the boundary (as lme4).
BOUNDARY_THETA = 1e-4
#: Variances whose relative Cholesky parameter is below this are reported as 0.
ZERO_THETA = BOUNDARY_THETA
_MAX_NEWTON = 8


@dataclass(frozen=True)
class SmRandom:
    """A random part in statsmodels' shape: groups, re_formula, vc_formula."""

    name: str
    groups: str
    group_label: str
    re_formula: str
    vc_formula: Mapping[str, str]
    intercepts: tuple[str, ...] = ()
    lme4: str = ""
    description: str = ""


class FitError(RuntimeError):
    """Every optimizer failed on a model."""


@dataclass(frozen=True)
class Attempt:
    """One optimizer's run from the start values."""

    optimizer: str
    loglik: float
    reported_converged: bool
    seconds: float
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class OptimumFit:
    """A MixedLM fit at the (checked) optimum.

    Attributes
    ----------
    model
        The statsmodels model.
    result
        statsmodels results at ``theta`` (its ``converged`` is this fit's).
    reml
        REML (True) or ML.
    theta
        Relative Cholesky parameters (statsmodels' packed ``use_sqrt`` vector, lme4's
        theta).
    loglik
        REML or ML log-likelihood at the optimum.
    fe_params
        Fixed effects.
    fe_cov
        Their covariance ``sigma^2 (X' V^-1 X)^-1``.
    variances
        Variance components by name, ``residual`` last.
    optimizer
        The first optimizer (in list order) that reached the best log-likelihood within
        ``LOGLIK_TIE`` (``newton`` when the start was polished directly).
    converged
        Whether the gradient check passed.
    gradient_norm
        Max absolute Newton-scaled deviance gradient over the interior parameters (raw
        gradient if their Hessian is not positive definite) and, for parameters at the
        boundary, how steeply the deviance falls away from zero.
    newton_steps
        Newton steps taken in the polish.
    attempts
        Every optimizer's run.
    warnings
        Problems found (non-convergence, boundary, ...).
    seconds
        Wall time of the fit.
    """

    model: MixedLM
    result: Any
    reml: bool
    theta: np.ndarray
    loglik: float
    fe_params: pd.Series
    fe_cov: pd.DataFrame
    variances: dict[str, float]
    optimizer: str
    converged: bool
    gradient_norm: float
    newton_steps: int
    attempts: tuple[Attempt, ...]
    warnings: tuple[str, ...]
    seconds: float

    @property
    def n_params(self) -> int:
        """Number of estimated parameters (fixed, covariance and residual)."""
        return len(self.fe_params) + len(self.theta) + 1


def build_model(formula: str, data: pd.DataFrame, random: SmRandom) -> MixedLM:
    """Build the statsmodels MixedLM for a formula and random part.

    Parameters
    ----------
    formula
        Fixed part.
    data
        Model rows (no missing values in the variables used).
    random
        Random part.

    Returns
    -------
    MixedLM
        Unfitted model.
    """
    return smf.mixedlm(formula, data, groups=random.groups, re_formula=random.re_formula,
                       vc_formula=dict(random.vc_formula) or None)


def _deviance_derivatives(
    model: MixedLM, theta: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient (analytic) and Hessian (central differences) of ``-2 loglik(theta)``.

    Only the columns of ``free`` coordinates are differenced (the others are at the
    boundary, where a difference step would cross zero); the rest of the Hessian is 0.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grad = -2.0 * np.asarray(model.score(theta.copy()), dtype=float)
        k = len(theta)
        hess = np.zeros((k, k))
        for i in np.flatnonzero(free):
            step = 1e-5 * max(1.0, abs(theta[i]))
            e = np.zeros(k)
            e[i] = step
            g_up = -2.0 * np.asarray(model.score(theta + e), dtype=float)
            g_dn = -2.0 * np.asarray(model.score(theta - e), dtype=float)
            hess[:, i] = (g_up - g_dn) / (2.0 * step)
    sub = np.ix_(free, free)
    hess[sub] = (hess[sub] + hess[sub].T) / 2.0
    return grad, hess


def _loglike(model: MixedLM, theta: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(model.loglike(theta.copy()))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return -np.inf
    return value if np.isfinite(value) else -np.inf


def _gradient_check(
    grad: np.ndarray, hess: np.ndarray, theta: np.ndarray, free: np.ndarray
) -> tuple[float, bool]:
    """Optimality measure at ``theta`` and whether the free Hessian block is PD.

    For the free (interior) coordinates: max ``|L^-1 g|`` with ``H = L L'`` (lme4's scaled
    gradient), or max ``|g|`` when ``H`` is not positive definite. For coordinates at
    the boundary (``|theta| < BOUNDARY_THETA``): how steeply the deviance falls when
    moving away from zero, ``max(0, -g sign(theta))`` (0 at a boundary optimum).
    """
    parts = [0.0]
    pos_def = True
    idx = np.flatnonzero(free)
    if idx.size:
        g_free = grad[idx]
        try:
            chol = np.linalg.cholesky(hess[np.ix_(idx, idx)])
            parts.append(float(np.max(np.abs(linalg.solve_triangular(chol, g_free,
                                                                       lower=True)))))
        except np.linalg.LinAlgError:
            pos_def = False
            parts.append(float(np.max(np.abs(g_free))))
    for i in np.flatnonzero(~free):
        direction = np.sign(theta[i]) if theta[i] != 0 else -np.sign(grad[i])
        parts.append(max(0.0, float(-grad[i] * direction)))
    return max(parts), pos_def


def _newton_polish(model: MixedLM, theta: np.ndarray) -> tuple[np.ndarray, float, int, bool]:
    """Safeguarded Newton steps on the deviance over the interior coordinates.

    Returns the polished theta, the optimality measure of :func:`_gradient_check`, the
    number of steps taken and whether the interior Hessian is positive definite.
    """
    theta = np.asarray(theta, dtype=float).copy()
    loglik = _loglike(model, theta)
    steps = 0
    while True:
        free = np.abs(theta) >= BOUNDARY_THETA
        grad, hess = _deviance_derivatives(model, theta, free)
        norm, pos_def = _gradient_check(grad, hess, theta, free)
        if not pos_def or norm <= 1e-9 or steps >= _MAX_NEWTON or not free.any():
            break
        idx = np.flatnonzero(free)
        delta = np.zeros_like(theta)
        delta[idx] = linalg.cho_solve(linalg.cho_factor(hess[np.ix_(idx, idx)], lower=True),
                                      grad[idx])
        accepted = False
        for shrink in (1.0, 0.5, 0.25, 0.125, 0.0625):
            candidate = theta - shrink * delta
            value = _loglike(model, candidate)
            if value >= loglik - 1e-9:
                theta, loglik, accepted = candidate, value, True
                break
        if not accepted:
            break
        steps += 1
    return theta, norm, steps, pos_def


def _result_at(model: MixedLM, theta: np.ndarray, reml: bool) -> Any:
    """statsmodels results at ``theta`` without moving it (zero BFGS iterations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml, start_params=theta.copy(), method="bfgs", maxiter=0)


def _variances(model: MixedLM, result: Any, random: SmRandom,
               theta: np.ndarray) -> dict[str, float]:
    """Variance components by name; those at the boundary (tiny theta) set to 0."""
    out: dict[str, float] = {}
    k_re = model.k_re
    cov_re = np.asarray(result.cov_re, dtype=float)
    re_names = list(model.exog_re_names) if k_re > 1 else [random.group_label]
    # packed order: lower triangle of the Cholesky factor of cov_re, then sqrt(vcomp)
    tri = np.tril_indices(k_re)
    diag_pos = {int(i): int(j) for j, (i, c) in enumerate(zip(*tri, strict=True)) if i == c}
    for i in range(k_re):
        name = random.group_label if k_re == 1 else f"{random.group_label}_{re_names[i]}"
        small = abs(theta[diag_pos[i]]) < ZERO_THETA
        out[name] = 0.0 if small else float(cov_re[i, i])
    for i in range(k_re):
        for j in range(i):
            out[f"{random.group_label}_{re_names[j]}_{re_names[i]}_cov"] = float(cov_re[i, j])
    n_tri = len(tri[0])
    for j, name in enumerate(model.exog_vc.names):
        small = abs(theta[n_tri + j]) < ZERO_THETA
        out[str(name)] = 0.0 if small else float(result.vcomp[j])
    out["residual"] = float(result.scale)
    return out


def fit_optimum(
    model: MixedLM,
    *,
    reml: bool = True,
    optimizers: Sequence[str] = ("powell", "nm", "lbfgs", "bfgs"),
    gradient_tolerance: float = 1e-3,
    start: np.ndarray | None = None,
    polish_start_first: bool = False,
    random: SmRandom | None = None,
    maxiter: int | None = None,
) -> OptimumFit:
    """Fit a MixedLM with several optimizers, keep the best, polish and check it.

    Parameters
    ----------
    model
        An unfitted statsmodels MixedLM.
    reml
        REML (True) or ML.
    optimizers
        statsmodels optimizer names tried in turn (each from ``start``).
    gradient_tolerance
        Largest acceptable max absolute Newton-scaled deviance gradient.
    start
        Start values (packed relative Cholesky parameters); statsmodels' default if
        ``None``.
    polish_start_first
        Try Newton from ``start`` first and run the optimizers only if that does not pass
        the gradient check (used for ML refits started at the REML optimum).
    random
        Random part, for names of variance components (defaults to a generic one).
    maxiter
        Passed to statsmodels' fit when given.

    Returns
    -------
    OptimumFit
        The fit; ``converged`` is False (and a warning says so) when the gradient check
        fails at the best point found.

    Raises
    ------
    FitError
        When every optimizer raised an error.
    ValueError
        For optimizers MixedLM does not support.
    """
    began = time.perf_counter()
    for opt in optimizers:
        if opt.lower() in ("newton", "ncg"):
            raise ValueError(f"optimizer {opt!r} is not available for MixedLM")
    if random is None:
        random = SmRandom("generic", "groups", "group", "1", {}, ("group",), "")
    model.reml = reml
    attempts: list[Attempt] = []
    chosen: tuple[str, np.ndarray] | None = None
    polished: tuple[np.ndarray, float, int, bool] | None = None

    if polish_start_first and start is not None:
        t0 = time.perf_counter()
        polished = _newton_polish(model, np.asarray(start, dtype=float))
        attempts.append(Attempt("newton", _loglike(model, polished[0]),
                                polished[3] and polished[1] <= gradient_tolerance,
                                time.perf_counter() - t0))
        if polished[3] and polished[1] <= gradient_tolerance:
            chosen = ("newton", polished[0])
        else:
            polished = None

    if chosen is None:
        kwargs: dict[str, Any] = {} if maxiter is None else {"maxiter": int(maxiter)}
        candidates: list[tuple[str, float, np.ndarray]] = []
        for opt in optimizers:
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = model.fit(reml=reml, method=[opt],
                                    start_params=None if start is None else start.copy(),
                                    **kwargs)
                except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
                    attempts.append(Attempt(opt, -np.inf, False, time.perf_counter() - t0,
                                            (f"{type(exc).__name__}: {exc}",)))
                    continue
            messages = tuple(sorted({str(w.message).splitlines()[0] for w in caught}))
            theta = np.asarray(res.params_object.get_packed(use_sqrt=True, has_fe=False),
                               dtype=float)
            loglik = _loglike(model, theta)
            attempts.append(Attempt(opt, loglik, bool(res.converged),
                                    time.perf_counter() - t0, messages))
            if np.isfinite(loglik):
                candidates.append((opt, loglik, theta))
        if not candidates:
            raise FitError("every optimizer failed: "
                           + "; ".join(f"{a.optimizer}: {a.messages}" for a in attempts))
        best = max(candidates, key=lambda c: c[1])
        name = next(c[0] for c in candidates if c[1] >= best[1] - LOGLIK_TIE)
        chosen = (name, best[2])

    model.reml = reml
    theta, norm, steps, pos_def = polished if polished is not None else _newton_polish(
        model, chosen[1])
    converged = bool(norm <= gradient_tolerance and pos_def)
    notes: list[str] = []
    if norm > gradient_tolerance:
        notes.append(
            f"NOT CONVERGED: no optimizer reached the optimum (max scaled gradient "
            f"{norm:.3g} > {gradient_tolerance:g}; best: {chosen[0]}); do not use these "
            "estimates")
    if not pos_def:
        notes.append("NOT CONVERGED: the Hessian of the profiled deviance is not positive "
                     "definite at the best point (a saddle or a flat, unidentified "
                     "direction); do not use these estimates")

    result = _result_at(model, theta, reml)
    result._results.converged = converged
    k_fe = model.k_fe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hess, _ = model.hessian(result.params_object)
    names = list(model.exog_names[:k_fe])
    fe_cov = pd.DataFrame(-np.linalg.inv(hess[:k_fe, :k_fe]), index=names, columns=names)
    variances = _variances(model, result, random, theta)
    boundary = [n for n, v in variances.items() if n != "residual" and not n.endswith("_cov")
                and v < (BOUNDARY_THETA**2) * variances["residual"]]
    if boundary:
        notes.append("variance at the boundary (estimated as about zero): "
                     + ", ".join(boundary))
    return OptimumFit(
        model=model, result=result, reml=reml, theta=theta, loglik=_loglike(model, theta),
        fe_params=pd.Series(np.asarray(result.fe_params, dtype=float), index=names),
        fe_cov=fe_cov, variances=variances, optimizer=chosen[0], converged=converged,
        gradient_norm=norm, newton_steps=steps, attempts=tuple(attempts),
        warnings=tuple(notes), seconds=time.perf_counter() - began,
    )



def to_statsmodels(random: RandomPart) -> SmRandom:
    """statsmodels' shape of an lme4 random part, or NotEstimableError when it has none.

    The coarsest factor (fewest levels is not known here: the first factor written) must
    have a random intercept only; every other term must be one column.
    """
    factors = random.factors
    top = factors[0]
    top_terms = [t for t in random.terms if t.factor == top]
    if any(t.columns != ("(Intercept)",) for t in top_terms):
        raise NotEstimableError(
            f"the statsmodels engine cannot fit {random.formula!r}: the first grouping "
            "factor may only have a random intercept; use model.engine: native")
    vcs: dict[str, str] = {}
    for term in random.terms:
        if term.factor == top:
            continue
        if len(term.columns) > 1:
            raise NotEstimableError(
                f"the statsmodels engine cannot nest correlated random effects "
                f"{term.columns} of {term.factor} inside {top} (statsmodels issue 8123); "
                "use model.engine: native")
        col = term.columns[0]
        name = random.component(term.factor, col)
        vcs[name] = (f"0 + C({term.factor})" if col == "(Intercept)"
                     else f"0 + C({term.factor}):{col}")
    label = random.label(top)
    return SmRandom(name=random.name, groups=top, group_label=label, re_formula="1",
                    vc_formula=vcs, intercepts=random.intercepts, lme4=random.formula)


def fit_statsmodels(data: pd.DataFrame, formula: str, random: RandomPart, problem: Problem,
                    *, reml: bool, optimizers: Sequence[str],
                    gradient_tolerance: float) -> dict[str, Any]:
    """Fit with statsmodels and express the optimum in the native engine's theta.

    Returns
    -------
    dict
        ``theta`` (native layout), ``beta``, ``vcov``, ``sigma2``, ``loglik``,
        ``converged``, ``gradient``, ``optimizer``, ``messages``.
    """
    sm_random = to_statsmodels(random)
    model = build_model(formula, data.reset_index(drop=True), sm_random)
    fit = fit_optimum(model, reml=reml, optimizers=list(optimizers),
                      gradient_tolerance=gradient_tolerance, random=sm_random)
    sigma2 = float(fit.variances["residual"])
    theta = np.zeros(problem.n_theta)
    for pos, (fi, i, j) in enumerate(problem.theta_index):
        factor = problem.factors[fi]
        comp = random.component(factor.name, factor.columns[i])
        theta[pos] = np.sqrt(max(fit.variances.get(comp, 0.0), 0.0) / sigma2) if i == j else 0.0
    names = list(fit.fe_params.index)
    if names != list(problem.x_names):
        raise NotEstimableError(f"statsmodels named the fixed effects {names}, the design "
                                f"{list(problem.x_names)}")
    return {"theta": theta, "beta": fit.fe_params.to_numpy(), "vcov": fit.fe_cov.to_numpy(),
            "sigma2": sigma2, "loglik": fit.loglik, "converged": fit.converged,
            "gradient": fit.gradient_norm, "optimizer": fit.optimizer,
            "messages": fit.warnings}
