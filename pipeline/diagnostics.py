"""Model diagnostics as aggregate tables: residuals and random effects.

A diagnostic plot of a mixed model usually draws one point per session or per client.
Reports are shared, so here every diagnostic is reduced to aggregates before it leaves the
fit step: normal quantile-quantile points at fixed probabilities (not one point per row),
and mean residuals in bins of the fitted values (each bin holds many sessions).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from pipeline.models import FitResult


def _qq(values: np.ndarray, n_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Standardised sample quantiles against standard normal quantiles."""
    values = values[np.isfinite(values)]
    sd = values.std(ddof=1)
    z = (values - values.mean()) / sd if sd > 0 else values - values.mean()
    m = min(n_points, len(z))
    probs = (np.arange(1, m + 1) - 0.5) / m
    return stats.norm.ppf(probs), np.quantile(z, probs)


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


def diagnostics(fit: FitResult, n_points: int = 99, n_bins: int = 20) -> pd.DataFrame:
    """Aggregate residual and random-effect diagnostics of one fitted model.

    Parameters
    ----------
    fit
        A fitted model (``fit_all`` output).
    n_points
        Probabilities at which quantile-quantile points are computed.
    n_bins
        Bins of the fitted values (equal counts) for the residual-versus-fitted check.

    Returns
    -------
    DataFrame
        ``model, plot, component, x, y, n``: ``plot`` is ``qq`` (x = normal quantile,
        y = standardised sample quantile; ``component`` is ``residual`` or a random
        effect, ``n`` the number of values behind it) or ``residual_vs_fitted`` (x = mean
        fitted value in a bin, y = mean conditional residual, ``n`` sessions in the bin).

    References
    ----------
    Loy, A., & Hofmann, H. (2014). HLMdiag: A suite of diagnostics for hierarchical linear
    models in R. Journal of Statistical Software, 56(5).
    """
    if fit.fit is None:
        return pd.DataFrame(columns=["model", "plot", "component", "x", "y", "n"])
    resid = np.asarray(fit.fit.resid, dtype=float)
    fitted = np.asarray(fit.fit.fitted, dtype=float)
    rows = []
    x, y = _qq(resid, n_points)
    rows.append(pd.DataFrame({"plot": "qq", "component": "residual", "x": x, "y": y,
                              "n": len(resid)}))
    for name, values in random_effects(fit).items():
        x, y = _qq(values, n_points)
        rows.append(pd.DataFrame({"plot": "qq", "component": name, "x": x, "y": y,
                                  "n": len(values)}))
    bins = pd.qcut(pd.Series(fitted).rank(method="first"), n_bins, labels=False)
    binned = pd.DataFrame({"bin": bins, "fitted": fitted, "resid": resid}).groupby("bin").agg(
        x=("fitted", "mean"), y=("resid", "mean"), n=("resid", "size"))
    rows.append(binned.reset_index(drop=True).assign(plot="residual_vs_fitted",
                                                     component="residual"))
    table = pd.concat(rows, ignore_index=True)
    table.insert(0, "model", fit.name)
    return table[["model", "plot", "component", "x", "y", "n"]]
