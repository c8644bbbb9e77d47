"""The outcome generated from a mixed model's parameters.

Given the rows and predictors a model uses (built by the project's own design code from
simulated alliance), the outcome is

    y = X beta + u_t + u_c + v_c * time + e

with ``u_t ~ N(0, therapist_sd^2)``; ``(u_c, v_c)`` bivariate normal with SDs
``client_sd``, ``client_time_sd`` and correlation ``client_time_corr`` (0 for the plan's
uncorrelated slope); ``e ~ N(0, residual_sd^2)``. A component whose SD is 0 is absent.
This is lme4's ``simulate()`` of a fitted ``lmer`` model with new random effects
(``re.form = NA``), for the random parts of the analysis plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import SettingsError

#: Variance components a truth may give, with their meaning.
COMPONENTS: dict[str, str] = {
    "therapist": "SD of the therapist random intercept",
    "client": "SD of the client random intercept",
    "client_time": "SD of the client random slope on time",
    "residual": "residual SD",
}


@dataclass(frozen=True)
class ModelTruth:
    """True values of a model: fixed effects by term, SDs by component.

    Attributes
    ----------
    fixed
        Term -> coefficient (``Intercept`` for the intercept; other terms are columns of
        the model's data).
    sd
        Component (see :data:`COMPONENTS`) -> standard deviation.
    client_time_corr
        Correlation of the client intercept and slope (0 in the primary model).
    """

    fixed: Mapping[str, float]
    sd: Mapping[str, float]
    client_time_corr: float = 0.0
    extra: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain mapping (for truth files and checkpoints fingerprints)."""
        return {"fixed": dict(self.fixed), "sd": dict(self.sd),
                "client_time_corr": self.client_time_corr}


def check_truth(truth: ModelTruth, where: str) -> None:
    """Refuse unknown components, negative SDs and impossible correlations."""
    unknown = sorted(set(truth.sd) - set(COMPONENTS))
    if unknown:
        raise SettingsError(f"{where}: variance component {unknown[0]!r} is not known "
                            f"(known: {', '.join(COMPONENTS)}).")
    for name, value in truth.sd.items():
        if not np.isfinite(value) or value < 0:
            raise SettingsError(f"{where}: the SD of {name} is {value}; an SD is >= 0.")
    if "residual" not in truth.sd or truth.sd["residual"] <= 0:
        raise SettingsError(f"{where}: a residual SD above 0 is required.")
    if not -1 < truth.client_time_corr < 1:
        raise SettingsError(f"{where}: client_time_corr must lie strictly between -1 and 1.")


def fixed_part(data: pd.DataFrame, fixed: Mapping[str, float]) -> np.ndarray:
    """``X beta`` for terms that are ``Intercept`` or numeric columns of ``data``."""
    eta = np.zeros(len(data))
    for term, value in fixed.items():
        if term == "Intercept":
            eta += float(value)
            continue
        if term not in data.columns or not pd.api.types.is_numeric_dtype(data[term]):
            raise SettingsError(
                f"the model term {term!r} is not a numeric column of the simulated data; "
                "simulation supports models whose fixed terms are the intercept and numeric "
                "predictors (e.g. the primary model).")
        eta += float(value) * data[term].to_numpy(dtype=float)
    return eta


def simulate_outcome(data: pd.DataFrame, truth: ModelTruth,
                     rng: np.random.Generator) -> np.ndarray:
    """Draw the outcome for the rows of ``data`` (``therapist_id``, ``client_id``, ``time``).

    Random effects are drawn per therapist and per client in sorted id order.
    """
    sd = {name: float(truth.sd.get(name, 0.0)) for name in COMPONENTS}
    y = fixed_part(data, truth.fixed)
    # sorted levels and each row's level (as np.unique(..., return_inverse=True), by
    # hashing instead of sorting the rows: 3 ms less per draw at 2,300 rows)
    t_index, t_codes = pd.factorize(data["therapist_id"].to_numpy(), sort=True)
    c_index, c_codes = pd.factorize(data["client_id"].to_numpy(), sort=True)
    y += rng.normal(0.0, sd["therapist"], len(t_codes))[t_index]
    # The 2x2 Cholesky factor written out: u = sd_c z1, v = sd_s (rho z1 + sqrt(1-rho^2) z2)
    # (no LAPACK call, so the same draws on every machine, also for a zero SD).
    rho = float(truth.client_time_corr)
    z = rng.standard_normal((len(c_codes), 2))
    u_c = sd["client"] * z[:, 0]
    v_c = sd["client_time"] * (rho * z[:, 0] + np.sqrt(1.0 - rho**2) * z[:, 1])
    time = data["time"].to_numpy(dtype=float)
    y += u_c[c_index] + v_c[c_index] * time
    y += rng.normal(0.0, sd["residual"], len(data))
    return y
