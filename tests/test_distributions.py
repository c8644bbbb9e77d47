"""pipeline.distributions gives scipy.stats' numbers bit for bit, without importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from pipeline.distributions import chi2_sf, norm_ppf, norm_sf, t_ppf, t_sf

X = np.array([-np.inf, -40.0, -3.2, -1.959963984540054, -0.5, -0.0, 0.0, 1e-300, 0.7,
              2.5, 8.0, 38.5, np.inf, np.nan])
Q = np.array([0.0, 1e-12, 0.025, 0.5, 0.8, 0.975, 1 - 1e-12, 1.0, -0.1, 1.1, np.nan])
DF = np.array([-1.0, 0.0, 0.3, 1.0, 2.0, 4.7, 30.0, 348.2, 1e6, np.inf, np.nan])


def same_bits(a: object, b: object) -> bool:
    """Equal bit for bit (so also 0.0 vs -0.0), NaN where the other is NaN (any payload)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    nan = np.isnan(a)
    return (a.shape == b.shape and np.array_equal(nan, np.isnan(b))
            and a[~nan].tobytes() == b[~nan].tobytes())


def test_normal_equals_scipy_stats() -> None:
    assert same_bits(norm_sf(X), stats.norm.sf(X))
    assert same_bits(norm_ppf(Q), stats.norm.ppf(Q))
    assert same_bits(norm_ppf(0.975), stats.norm.ppf(0.975))
    assert norm_ppf(0.975) == pytest.approx(1.959963984540054, abs=1e-15)


@pytest.mark.parametrize("df", DF)
def test_t_and_chi2_equal_scipy_stats(df: float) -> None:
    assert same_bits(t_sf(X, df), stats.t.sf(X, df))
    assert same_bits(t_ppf(Q, df), stats.t.ppf(Q, df))
    assert same_bits(chi2_sf(np.abs(X), df), stats.chi2.sf(np.abs(X), df))


def test_scalars_arrays_and_broadcasting() -> None:
    assert same_bits(t_ppf(0.975, 10), stats.t.ppf(0.975, 10))
    assert t_ppf(0.975, 10) == pytest.approx(2.228138851986273, abs=1e-12)  # R: qt(.975, 10)
    assert chi2_sf(3.841458820694124, 1) == pytest.approx(0.05, abs=1e-12)  # R: pchisq
    assert same_bits(t_sf(X[:, None], DF[None, :]), stats.t.sf(X[:, None], DF[None, :]))
    assert same_bits(t_ppf(0.975, DF), stats.t.ppf(0.975, DF))


def test_the_model_layer_does_not_import_scipy_stats() -> None:
    code = ("import sys, pipeline.models, pipeline.models.fitting, pipeline.describe, "
            "pipeline.diagnostics, pipeline.tables, pipeline.figures; "
            "print('scipy.stats' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
