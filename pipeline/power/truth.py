"""The true values a power analysis simulates from.

Fixed effects: ``power.effects`` where given, the fitted model's estimates otherwise.
Variance components: the fitted model's (``results/variance_components.csv``). A model
that was not estimated on the data gives no defaults: then every term and the variance
components must come from the settings, and the message says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from pipeline.errors import SettingsError
from pipeline.simulation.outcome import COMPONENTS, ModelTruth, check_truth

#: Fit statuses whose estimates may serve as true values.
USABLE = ("fitted", "singular")


def truth_from_fit(model: str, effects: Mapping[str, float], coefficients: pd.DataFrame,
                   variance: pd.DataFrame, status: str = "fitted") -> ModelTruth:
    """Combine ``effects`` with the fitted model's estimates.

    Parameters
    ----------
    model
        Model name.
    effects
        Term -> true value from ``power.effects``.
    coefficients, variance
        ``results/coefficients.csv`` and ``results/variance_components.csv``.
    status
        The model's fit status (``results/fit_statistics.csv``).

    Returns
    -------
    ModelTruth
        Every term of the fitted model; SDs by component.
    """
    coefs = coefficients[coefficients["model"] == model]
    comps = variance[variance["model"] == model]
    if status not in USABLE or coefs.empty or comps.empty:
        raise SettingsError(
            f"power.model {model!r} has no usable fit on these data (status: {status}); "
            "its estimates cannot serve as true values. Choose a model that was fitted "
            "(see the models report) or give every term in power.effects.")
    unknown = sorted(set(effects) - set(coefs["term"]))
    if unknown:
        raise SettingsError(
            f"params.yaml: power.effects names {unknown[0]!r}, which is not a term of model "
            f"{model!r} (its terms: {', '.join(coefs['term'])}).")
    fixed = {str(t): float(effects.get(t, e)) for t, e in zip(coefs["term"], coefs["estimate"],
                                                              strict=True)}
    sd = {str(c): float(s) for c, s in zip(comps["component"], comps["sd"], strict=True)
          if c in COMPONENTS}
    extra = sorted(set(comps["component"]) - set(COMPONENTS) - {"client_time_corr"})
    if extra:
        raise SettingsError(
            f"power.model {model!r} has the variance component {extra[0]!r}, which the "
            "simulator cannot draw; choose a model with therapist and client random parts.")
    corr_rows = comps[comps["component"] == "client_time_corr"]
    corr = float(corr_rows["sd"].iloc[0]) if not corr_rows.empty else 0.0
    truth = ModelTruth(fixed=fixed, sd=sd, client_time_corr=corr)
    check_truth(truth, f"the fitted model {model!r}")
    return truth


def reported_terms(truth: ModelTruth, terms: Sequence[str]) -> tuple[str, ...]:
    """The terms whose power is reported: ``terms``, or every term but the intercept."""
    chosen = tuple(terms) or tuple(t for t in truth.fixed if t != "Intercept")
    unknown = [t for t in chosen if t not in truth.fixed]
    if unknown:
        raise SettingsError(f"params.yaml: power.terms names {unknown[0]!r}, which is not a "
                            f"term of the model (its terms: {', '.join(truth.fixed)}).")
    return chosen
