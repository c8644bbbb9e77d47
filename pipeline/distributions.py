"""Normal, t and chi-squared tail probabilities and quantiles, without ``scipy.stats``.

The pipeline needs five functions of three distributions (p-values, critical values).
``import scipy.stats`` costs about 1 s in every process that does it (it builds the
docstrings of a hundred distributions), and every DVC stage, notebook kernel and worker
is a new process. These are the very special functions ``scipy.stats`` evaluates
(scipy 1.17, ``_continuous_distns.py``: ``norm._sf`` is ``ndtr(-x)``, ``norm._ppf`` is
``ndtri``, ``t._sf`` is ``stdtr(df, -x)``, ``t._ppf`` is ``stdtrit``, ``chi2._sf`` is
``chdtrc``), with the same rule for invalid parameters (``df <= 0`` gives NaN), so the
results are bit for bit those of ``scipy.stats`` (``tests/test_distributions.py``).

R equivalents: ``pnorm(x, lower.tail = FALSE)``, ``qnorm``, ``pt(x, df, lower.tail =
FALSE)``, ``qt``, ``pchisq(x, df, lower.tail = FALSE)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import special

__all__ = ["chi2_sf", "norm_ppf", "norm_sf", "t_ppf", "t_sf"]


def _with_df(values: Any, df: Any, func: Any) -> Any:
    """``func(df, values)`` where ``df > 0``, NaN elsewhere; a scalar for scalar input."""
    values, df = np.broadcast_arrays(np.asarray(values, dtype=float),
                                     np.asarray(df, dtype=float))
    out = np.full(values.shape, np.nan)
    ok = df > 0
    out[ok] = func(df[ok], values[ok])
    return out[()] if out.ndim == 0 else out


def _upper_tail(lower: float, tail: Any) -> Any:
    """An upper-tail function with scipy.stats' rule at the ends of the support
    ``(lower, inf)``: 1 at or below ``lower``, 0 at infinity."""
    def sf(df: Any, x: Any) -> Any:
        inner = (x > lower) & (x < np.inf)
        out = np.where(x <= lower, 1.0, np.where(x == np.inf, 0.0, np.nan))
        out[inner] = tail(df[inner], x[inner])
        return out
    return sf


def norm_sf(x: Any) -> Any:
    """Upper tail of the standard normal, ``P(Z > x)`` (``scipy.stats.norm.sf``)."""
    return special.ndtr(-np.asarray(x, dtype=float))


def norm_ppf(q: Any) -> Any:
    """Quantile of the standard normal (``scipy.stats.norm.ppf``)."""
    return special.ndtri(np.asarray(q, dtype=float))


def t_sf(x: Any, df: Any) -> Any:
    """Upper tail of Student's t with ``df`` degrees of freedom (``scipy.stats.t.sf``)."""
    return _with_df(x, df, _upper_tail(-np.inf, lambda d, v: special.stdtr(d, -v)))


def _t_quantile(df: Any, q: Any) -> Any:
    # scipy.stats sets the ends of the support itself (stdtrit(0.3, 0) is +inf, not -inf)
    # and gives NaN outside [0, 1].
    inner = (q > 0) & (q < 1)
    out = np.where(q == 0, -np.inf, np.where(q == 1, np.inf, np.nan))
    out[inner] = special.stdtrit(df[inner], q[inner])
    return out


def t_ppf(q: Any, df: Any) -> Any:
    """Quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    return _with_df(q, df, _t_quantile)


def chi2_sf(x: Any, df: Any) -> Any:
    """Upper tail of the chi-squared distribution (``scipy.stats.chi2.sf``)."""
    return _with_df(x, df, _upper_tail(0.0, special.chdtrc))
