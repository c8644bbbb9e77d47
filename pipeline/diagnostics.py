"""Model diagnostics as aggregate tables: residuals and random effects.

A diagnostic plot of a mixed model usually draws one point per session or per client.
Reports are shared, so here every diagnostic is reduced to aggregates before it leaves the
fit step: normal quantile-quantile points at fixed probabilities (not one point per row),
and mean residuals in bins of the fitted values (each bin pools the sessions with
similar fitted values).

Two residual-versus-fitted checks are made, because they answer different questions:

- *conditional* residuals ``y - X beta - Z b`` against conditional fitted values. The
  predicted random effects ``b`` are shrunk towards zero: a client's predicted intercept
  keeps only a share ``lambda < 1`` of the client's own mean deviation, and the rest,
  ``(1 - lambda)`` of it, stays in that client's residuals. Clients with high fitted values
  therefore carry positive residuals on average, so this plot slopes upwards even when the
  model is exactly right (an artefact of shrinkage, not misfit);
- *marginal* residuals ``y - X beta`` against marginal fitted values ``X beta``. No random
  effect is predicted, and the random effects are independent of ``X``, so in every bin of
  ``X beta`` the mean marginal residual is 0 in expectation when the fixed part is right.
  Its standard error comes from the model's marginal covariance
  ``V = Z G Z' + sigma^2 I`` (sessions of one client are correlated), less the part used
  up by estimating ``beta``: ``Var(w'r) = w'Vw - w'X Cov(beta) X'w`` for bin weights ``w``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.distributions import norm_ppf
from pipeline.models import FitResult
from pipeline.models.engine import covariances
from pipeline.models.fitting import ModelFit


def _qq(values: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised sample quantiles against standard normal quantiles."""
    values = values[np.isfinite(values)]
    sd = values.std(ddof=1)
    z = (values - values.mean()) / sd if sd > 0 else values - values.mean()
    m = min(n_points, len(z))
    probs = (np.arange(1, m + 1) - 0.5) / m
    return norm_ppf(probs), np.quantile(z, probs)


def random_effects(fit: FitResult) -> dict[str, np.ndarray]:
    """Predicted random effects (BLUPs) of a fitted model, by variance component.

    Returns
    -------
    dict
        Component name (``therapist``, ``client``, ``client_time``, ...) -> values, one per
        therapist or client (the engine returns them by group and component).
    """
    if fit.fit is None:
        return {}
    return {name: values.to_numpy(dtype=float) for name, values in fit.fit.ranef.items()}


def _bins(values: np.ndarray, n_bins: int, min_per_bin: int) -> np.ndarray:
    """Equal-count bins of ``values`` (ties broken by row order), each of ``min_per_bin``+."""
    n = len(values)
    k = max(1, min(n_bins, n // max(min_per_bin, 1)))
    ranks = pd.Series(values).rank(method="first").to_numpy()
    return np.asarray(pd.qcut(ranks, k, labels=False), dtype=int)


def marginal_bins(fit: ModelFit, n_bins: int = 20, min_per_bin: int = 5) -> pd.DataFrame:
    """Mean marginal residual ``y - X beta`` in equal-count bins of ``X beta``, with its SE.

    Parameters
    ----------
    fit
        One engine fit (``FitResult.fit``); its ``problem`` holds ``y``, ``X`` and the
        random-effect design.
    n_bins
        Number of bins (fewer when the rows do not fill ``n_bins`` bins of
        ``min_per_bin``).
    min_per_bin
        Fewest sessions in a bin (e.g. ``report.min_cell``): no bin is a single row.

    Returns
    -------
    DataFrame
        ``x`` (mean ``X beta``), ``y`` (mean marginal residual), ``se`` (its model-based
        standard error) and ``n`` (sessions), one row per bin.

    Notes
    -----
    ``se`` is ``sqrt(w'Vw - w'X Cov(beta) X'w)`` with ``w`` = 1/n on the bin's rows,
    ``V = sum_f Z_f G_f Z_f' + sigma^2 I`` the fitted marginal covariance and
    ``Cov(beta)`` the fixed effects' covariance: the covariance of GLS residuals (Searle,
    Casella & McCulloch, 1992). R: ``residuals(fit, type = "response", level = 0)``
    (nlme) or ``y - predict(fit, re.form = NA)`` (lme4), binned by hand.
    """
    problem = fit.problem
    if problem is None:
        raise ValueError("marginal_bins needs the fit's design (ModelFit.problem)")
    beta = fit.beta.reindex(problem.x_names).to_numpy(dtype=float)
    marginal = problem.x @ beta
    resid = problem.y - marginal
    bins = _bins(marginal, n_bins, min_per_bin)
    covs = covariances(problem, fit.theta, fit.sigma2)
    vcov = fit.vcov.reindex(index=problem.x_names, columns=problem.x_names).to_numpy()
    rows = []
    for b in range(int(bins.max()) + 1):
        rows_b = bins == b
        n = int(rows_b.sum())
        w = rows_b / n
        var = fit.sigma2 * float(w @ w)
        for factor, cov in zip(problem.factors, covs, strict=True):
            u = np.column_stack([np.bincount(factor.codes, weights=w * factor.z[:, j],
                                             minlength=factor.n_levels)
                                 for j in range(factor.z.shape[1])])
            var += float(np.sum((u @ cov) * u))
        xw = problem.x.T @ w
        var -= float(xw @ vcov @ xw)
        rows.append({"x": float(marginal[rows_b].mean()), "y": float(resid[rows_b].mean()),
                     "se": float(np.sqrt(max(var, 0.0))), "n": n})
    return pd.DataFrame(rows, columns=["x", "y", "se", "n"])


def diagnostics(fit: FitResult, n_points: int = 99, n_bins: int = 20,
                min_per_bin: int = 5) -> pd.DataFrame:
    """Aggregate residual and random-effect diagnostics of one fitted model.

    Parameters
    ----------
    fit
        A fitted model (``fit_all`` output).
    n_points
        Probabilities at which quantile-quantile points are computed.
    n_bins
        Bins of the fitted values (equal counts) for the residual-versus-fitted checks.
    min_per_bin
        Fewest sessions in a bin, and fewest values behind a quantile-quantile component
        (the fit step passes ``report.min_cell``).

    Returns
    -------
    DataFrame
        ``model, plot, component, x, y, se, n``: ``plot`` is ``qq`` (x = normal quantile,
        y = standardised sample quantile; ``component`` is ``residual`` or a random
        effect, ``n`` the number of values behind it), ``residual_vs_fitted`` (x = mean
        conditional fitted value in a bin, y = mean conditional residual, ``n`` sessions in
        the bin) or ``marginal_residual_vs_fitted`` (x = mean ``X beta`` in a bin, y = mean
        marginal residual ``y - X beta``, ``se`` its standard error; see
        :func:`marginal_bins`). ``se`` is empty for the other plots.

    References
    ----------
    Loy, A., & Hofmann, H. (2014). HLMdiag: A suite of diagnostics for hierarchical linear
    models in R. Journal of Statistical Software, 56(5).
    """
    columns = ["model", "plot", "component", "x", "y", "se", "n"]
    if fit.fit is None:
        return pd.DataFrame(columns=columns)
    resid = np.asarray(fit.fit.resid, dtype=float)
    fitted = np.asarray(fit.fit.fitted, dtype=float)
    rows = []
    # With fewer values than points each quantile IS one value (a therapist's or client's
    # standardised random effect); below min_per_bin values the component is left out, as
    # a small cell (3 therapists gave 3 points, one per therapist).
    for name, values in {"residual": resid, **random_effects(fit)}.items():
        if len(values) < min_per_bin:
            continue
        x, y = _qq(values, n_points)
        rows.append(pd.DataFrame({"plot": "qq", "component": name, "x": x, "y": y,
                                  "n": len(values)}))
    bins = _bins(fitted, n_bins, min_per_bin)
    binned = pd.DataFrame({"bin": bins, "fitted": fitted, "resid": resid}).groupby("bin").agg(
        x=("fitted", "mean"), y=("resid", "mean"), n=("resid", "size"))
    rows.append(binned.reset_index(drop=True).assign(plot="residual_vs_fitted",
                                                     component="residual"))
    rows.append(marginal_bins(fit.fit, n_bins, min_per_bin).assign(
        plot="marginal_residual_vs_fitted", component="marginal residual"))
    table = pd.concat(rows, ignore_index=True)
    table.insert(0, "model", fit.name)
    return table.reindex(columns=columns)


def marginal_words(marg: pd.DataFrame) -> str:
    """The marginal-residual bins of one model in a sentence for a student.

    ``marg``: its ``marginal_residual_vs_fitted`` rows of ``diagnostics.csv`` (``y``, the
    bin's mean residual; ``se``; ``n``, its sessions). E.g. "Marginal residuals: 19 of 20
    bins (of 114 to 115 sessions each) have a 95% interval that includes zero; by chance
    alone about 1 of 20 would not. The largest mean residual is 0.41 points." With fewer
    than 20 bins the expected count would round to "0 of 3": the rate is said instead.
    Numbers only: nothing to escape.
    """
    from pipeline.tables import counted, format_int, number

    bins = len(marg)
    outside = int(((marg["y"] / marg["se"]).abs() > 1.96).sum())
    low, high = int(marg["n"].min()), int(marg["n"].max())
    sizes = (counted(high, "session") if low == high
             else f"{low:,} to {counted(high, 'session')}")
    expected = (f"about {format_int(0.05 * bins)} of {bins}" if bins >= 20
                else "about 1 bin in 20")
    return (f"Marginal residuals: {bins - outside} of {counted(bins, 'bin')} (of {sizes} "
            f"each) have a 95% interval that includes zero; by chance alone {expected} "
            f"would not. The largest mean residual is "
            f"{number(float(marg['y'].abs().max()), 'points')} points.")
