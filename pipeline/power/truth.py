"""The true values a power analysis simulates from.

Fixed effects: ``power.effects`` where given, the fitted model's estimates otherwise.
Variance components: ``power.sd`` where given, the fitted model's otherwise
(``results/variance_components.csv``). A model that was not estimated on the data gives
no defaults, and the message says so.

Rule for a component the planned studies have but the fit could not estimate (the checks
dropped it: one therapist gives no therapist variance, :mod:`pipeline.models.checks`):
its SD is 0 unless ``power.sd`` gives it, and the truth table says so in its ``source``
(:data:`ASSUMED`), as do the stage's log and the power report. The simulated studies then
have no such variance, which flatters the power of the terms it bears on (a therapist
variance widens the between-client effects' intervals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from pipeline.errors import SettingsError
from pipeline.simulation.outcome import COMPONENTS, ModelTruth, check_truth

#: Fit statuses whose estimates may serve as true values.
USABLE = ("fitted", "singular")

#: ``source`` of an SD the fit could not estimate and ``power.sd`` did not give.
ASSUMED = "not estimated on these data: 0 assumed (set power.sd)"


def truth_from_fit(model: str, effects: Mapping[str, float], coefficients: pd.DataFrame,
                   variance: pd.DataFrame, status: str = "fitted",
                   sd: Mapping[str, float] | None = None,
                   planned: Sequence[str] = ()) -> ModelTruth:
    """Combine ``effects`` and ``sd`` with the fitted model's estimates.

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
    sd
        Component -> SD from ``power.sd`` (overrides the fit's).
    planned
        The variance components of the planned model (:func:`planned_components`): one
        the fit lacks and ``sd`` does not give is 0 (the module's rule).

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
    fitted = {str(c): float(s) for c, s in zip(comps["component"], comps["sd"], strict=True)
              if c in COMPONENTS}
    foreign = sorted(set(sd or {}) - set(planned)) if planned else []
    if foreign:
        raise SettingsError(
            f"params.yaml: power.sd names {foreign[0]!r}, which model {model!r} does not "
            f"have (its components: {', '.join(planned)}).")
    chosen = {**fitted, **dict(sd or {})}
    sds = {c: chosen.get(c, 0.0) for c in [*planned, *chosen] if c in COMPONENTS}
    extra = sorted(set(comps["component"]) - set(COMPONENTS) - {"client_time_corr"})
    if extra:
        raise SettingsError(
            f"power.model {model!r} has the variance component {extra[0]!r}, which the "
            "simulator cannot draw; choose a model with therapist and client random parts.")
    corr_rows = comps[comps["component"] == "client_time_corr"]
    corr = float(corr_rows["sd"].iloc[0]) if not corr_rows.empty else 0.0
    truth = ModelTruth(fixed=fixed, sd=sds, client_time_corr=corr)
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


def planned_components(spec: Any) -> tuple[str, ...]:
    """The variance components of a model specification's random part, and
    ``residual`` (``therapist``, ``client``, ``client_time`` for the primary model)."""
    random = spec.random
    return (*(random.component(t.factor, c) for t in random.terms for c in t.columns),
            "residual")


def sd_source(component: str, variance: pd.DataFrame, model: str,
              sd: Mapping[str, float]) -> str:
    """Where a true SD came from: ``power.sd``, the fitted model, or :data:`ASSUMED`."""
    if component in sd:
        return "power.sd"
    fitted = variance.loc[variance["model"] == model, "component"].astype(str)
    return "fitted model" if component in set(fitted) else ASSUMED
