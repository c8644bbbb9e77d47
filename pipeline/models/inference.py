"""Inference on a fitted model: df, tests and intervals, R², ICC, LRT, Holm.

Satterthwaite degrees of freedom follow lmerTest (Kuznetsova, Brockhoff & Christensen
2017) exactly: with ``phi = (theta, sigma)`` at the optimum,

* ``A = 2 H^+``, ``H`` the Hessian of the deviance in ``phi`` with beta profiled out
  (lmerTest's ``devfun_vp``; Moore-Penrose inverse over eigenvalues above 1e-8), the
  asymptotic covariance of ``phi``;
* ``J_i = d vcov(beta) / d phi_i`` (lmerTest's ``get_covbeta``, ``vcov(beta) = sigma^2
  (R_X' R_X)^-1``);
* for the contrast ``l`` (a unit vector for one coefficient):
  ``df = 2 (l' V l)^2 / (g' A g)``, ``g_i = l' J_i l``.

lmerTest differentiates ``devfun_vp`` numerically (numDeriv, Richardson extrapolation).
Here the Hessian comes from the analytic theta-gradient of the same function
(:meth:`Problem.deviance_and_gradient` with ``pwrss_weight = 1 / sigma^2``): the theta
block by central differences of that gradient, the sigma row in closed form
(``d/dsigma = -2 pwrss / sigma^3 + 2 (n - p_REML) / sigma``); ``2k + 2`` gradient calls
instead of about 66 factorisations (``k + 1 = 4`` parameters), and as close to the exact
Hessian as the Richardson values were (the df of the committed lmerTest fixtures agree
as before; ``tests/test_models.py`` also holds the two Hessians to each other).
``J`` keeps Richardson-extrapolated central differences of ``vcov(beta)`` in theta; its
sigma entry is exact (``2 sigma (R_X' R_X)^-1``).

References
----------
Kuznetsova, A., Brockhoff, P. B., & Christensen, R. H. B. (2017). lmerTest package:
Tests in linear mixed effects models. *Journal of Statistical Software, 82*(13).
Satterthwaite, F. E. (1946). *Biometrics Bulletin, 2*, 110-114.
Nakagawa, S., & Schielzeth, H. (2013). *Methods in Ecology and Evolution, 4*, 133-142.
Johnson, P. C. D. (2014). *Methods in Ecology and Evolution, 5*, 944-946.
Holm, S. (1979). *Scandinavian Journal of Statistics, 6*, 65-70.
R equivalents: ``lmerTest::contest1D``, ``MuMIn::r.squaredGLMM``, ``p.adjust(, "holm")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.distributions import chi2_sf, norm_ppf, norm_sf, t_ppf, t_sf
from pipeline.models.engine import Problem

#: Names written to ``df_method``.
DF_METHODS = {
    "satterthwaite": "Satterthwaite (lmerTest)",
    "kenward-roger": "Kenward-Roger (pbkrtest, lmerTest)",
    "wald": "Wald z (asymptotic normal)",
}
#: Eigenvalues of the deviance Hessian below this are treated as zero (lmerTest's tol).
EIGEN_TOLERANCE = 1e-8


#: Relative step of the central differences of the analytic gradient (of
#: ``max(|theta_i|, 0.1)``; lmerTest's numDeriv starts from 1e-4 of ``|x|`` as well).
GRADIENT_STEP = 1e-4


def varpar_hessian(problem: Problem, theta: np.ndarray, sigma: float, reml: bool,
                   step: float = GRADIENT_STEP) -> np.ndarray:
    """Hessian of lmerTest's ``devfun_vp`` at ``(theta, sigma)`` (see the module notes).

    ``devfun_vp = log|L|^2 + pwrss / sigma^2 + n log(2 pi sigma^2)`` (REML: ``+ log|R_X|^2
    - p log(2 pi sigma^2)``): its theta-gradient is the engine's analytic one with the
    weight ``1 / sigma^2`` on ``d pwrss``, the sigma derivatives are closed-form.
    """
    theta = np.asarray(theta, dtype=float)
    sigma = np.float64(sigma)    # numpy division: a zero sigma gives inf/nan, as before
    k = len(theta)
    weight = 1.0 / sigma**2
    out = np.empty((k + 1, k + 1))
    h = step * np.maximum(np.abs(theta), 0.1)
    points = []
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        points += [theta + e, theta - e]
    # the 2k shifted gradients as one batch (Problem.deviances_and_gradients)
    grads = problem.deviances_and_gradients(np.array(points), reml, pwrss_weight=weight)[1]
    for i in range(k):
        out[i, :k] = (grads[2 * i] - grads[2 * i + 1]) / (2.0 * h[i])
    # d pwrss / d theta: the gradient is linear in the weight
    with_rss = problem.deviance_and_gradient(theta, reml, pwrss_weight=1.0)[1]
    without = problem.deviance_and_gradient(theta, reml, pwrss_weight=0.0)[1]
    d_pwrss = with_rss - without
    pwrss = problem.factorize(theta).pwrss
    dof = problem.n - (problem.p if reml else 0)
    out[k, :k] = out[:k, k] = -2.0 * d_pwrss / sigma**3
    out[k, k] = 6.0 * pwrss / sigma**4 - 2.0 * dof / sigma**2
    return (out + out.T) / 2.0


def varpar_covariance(problem: Problem, theta: np.ndarray, sigma: float,
                      reml: bool) -> np.ndarray:
    """``A = 2 H^+``: asymptotic covariance of ``(theta, sigma)`` (lmerTest ``vcov_varpar``)."""
    hess = varpar_hessian(problem, theta, sigma, reml)
    values, vectors = np.linalg.eigh(hess)
    keep = values > EIGEN_TOLERANCE
    inv = (vectors[:, keep] / values[keep]) @ vectors[:, keep].T
    return 2.0 * inv


def vcov_jacobian(problem: Problem, theta: np.ndarray, sigma: float) -> np.ndarray:
    """``d vcov(beta) / d phi_i`` for every ``phi = (theta, sigma)``: ``(k, p, p)``."""
    varpar = np.append(np.asarray(theta, dtype=float), sigma)
    k = len(varpar)
    h0 = 1e-3 * np.maximum(np.abs(varpar), 0.1)
    out = np.empty((k, problem.p, problem.p))
    # vcov is sigma^2 (R_X' R_X)^-1: its sigma derivative is exact
    out[k - 1] = 2.0 / varpar[-1] * problem.vcov_beta_vp(varpar)
    # the theta derivatives: every shifted point in one batch (Problem.vcov_betas)
    points = []
    for i in range(k - 1):
        for h in (h0[i], h0[i] / 2):
            e = np.zeros(k)
            e[i] = h
            points += [varpar + e, varpar - e]
    if points:
        vcovs = problem.vcov_betas(np.array(points)).reshape(k - 1, 2, 2, problem.p,
                                                             problem.p)
        for i in range(k - 1):
            est = [(vcovs[i, j, 0] - vcovs[i, j, 1]) / (2 * h)
                   for j, h in enumerate((h0[i], h0[i] / 2))]
            out[i] = (4 * est[1] - est[0]) / 3
    return out


def satterthwaite_df(problem: Problem, theta: np.ndarray, sigma2: float, vcov: np.ndarray,
                     reml: bool) -> np.ndarray:
    """Satterthwaite df of every fixed effect (lmerTest's ``contest1D`` per coefficient).

    Parameters
    ----------
    problem
        The engine problem of the fit.
    theta, sigma2
        Optimum.
    vcov
        ``vcov(beta)`` at the optimum.
    reml
        Whether the fit is REML (the deviance differentiated is the one optimised).

    Returns
    -------
    numpy.ndarray
        One df per fixed effect.
    """
    sigma = float(np.sqrt(sigma2))
    a = varpar_covariance(problem, theta, sigma, reml)
    jac = vcov_jacobian(problem, theta, sigma)
    out = np.empty(problem.p)
    for j in range(problem.p):
        g = jac[:, j, j]
        denom = float(g @ a @ g)
        out[j] = 2.0 * vcov[j, j] ** 2 / denom if denom > 0 else np.inf
    return out


def tests_and_intervals(estimate: np.ndarray, std_error: np.ndarray, df: np.ndarray | None,
                        conf_level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                    np.ndarray]:
    """t (or z when ``df`` is None) statistics, two-sided p-values and intervals."""
    stat = estimate / std_error
    if df is None:
        p = 2.0 * norm_sf(np.abs(stat))
        crit = np.full_like(stat, norm_ppf(0.5 + conf_level / 2.0))
    else:
        p = 2.0 * t_sf(np.abs(stat), df)
        crit = t_ppf(0.5 + conf_level / 2.0, df)
    return stat, p, estimate - crit * std_error, estimate + crit * std_error


def r_squared(x: np.ndarray, beta: np.ndarray, z_by_factor: Sequence[np.ndarray],
              cov_by_factor: Sequence[np.ndarray], sigma2: float) -> tuple[float, float]:
    """Marginal and conditional R² (Nakagawa & Schielzeth 2013; Johnson 2014).

    ``var_fixed = var(X beta)``; the random part's variance is
    ``sum_f mean_i(z_fi' Sigma_f z_fi)`` over the rows (Johnson's extension for random
    slopes, covariances included); ``sigma2`` the residual variance.
    """
    varying = np.ptp(x, axis=0) > 0
    fixed = x[:, varying] @ beta[varying]
    var_fixed = float(np.var(fixed, ddof=1)) if varying.any() and len(fixed) > 1 else 0.0
    var_random = 0.0
    for z, cov in zip(z_by_factor, cov_by_factor, strict=True):
        var_random += float(np.mean(np.sum((z @ cov) * z, axis=1)))
    total = var_fixed + var_random + sigma2
    return var_fixed / total, (var_fixed + var_random) / total


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values, in the input order."""
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="mergesort")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def likelihood_ratio(loglik_reduced: float, loglik_full: float, df: int) -> tuple[float, float]:
    """Chi-square LRT statistic ``2 (l_full - l_reduced)`` and its p-value."""
    stat = 2.0 * (loglik_full - loglik_reduced)
    return stat, float(chi2_sf(max(stat, 0.0), df)) if df > 0 else float("nan")


def information_criteria(loglik: float, n_params: int, n_obs: int) -> tuple[float, float]:
    """AIC and BIC of an ML fit."""
    return -2.0 * loglik + 2.0 * n_params, -2.0 * loglik + n_params * np.log(n_obs)
