"""Specification curve: the within-client alliance effects under every reasonable choice.

Process research makes analytic choices that can change the answer (Falkenström et al.
2017 showed it for detrending). The specification curve (Simonsohn, Simmons & Nelson
2020) fits the model under every combination of the choices below -- each a list in
``specification_curve:`` of params.yaml -- and reports every specification's
within-client goal, task and bond estimates with intervals:

=================  ====================================================================
choice             options
=================  ====================================================================
``within``         ``person_mean`` (deviation from the client's mean, the plan) or
                   ``detrended`` (residual of the client's own line on time)
``lag``            0 (alliance at the same session) or 1 (at the client's previous
                   session, adjusting for the previous wellbeing: the ``lagged`` model)
``random_slope``   ``none``, ``uncorrelated`` (the plan) or ``correlated``: random parts
                   of models.yaml named in ``random_parts``
``estimation``     ``reml`` or ``ml``
``min_sessions``   clients with at least this many complete sessions (1 = all)
=================  ====================================================================

The fixed part of each specification is the formula of the model named in ``formulas``
for its lag (``primary`` for lag 0, ``lagged`` for lag 1), so no formula is written twice.
A specification the data cannot support (e.g. a slope with two sessions per client) is
kept with its status and reason, never dropped.

R equivalent: ``specr::specr()`` over ``lmer`` models.

References
----------
Simonsohn, U., Simmons, J. P., & Nelson, L. D. (2020). Specification curve analysis.
*Nature Human Behaviour, 4*, 1208-1214.
Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
models of individual change in psychotherapy process research. *Journal of Consulting and
Clinical Psychology, 85*, 537-549.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError, SettingsError
from pipeline.parallel import ExecutionSettings, run_replicates

CHOICES: dict[str, tuple[Any, ...]] = {
    "within": ("person_mean", "detrended"),
    "lag": (0, 1),
    "random_slope": ("none", "uncorrelated", "correlated"),
    "estimation": ("reml", "ml"),
}
COLUMNS = ["spec", "within", "lag", "random_slope", "estimation", "min_sessions", "term",
           "estimate", "std_error", "df", "conf_low", "conf_high", "p_value", "status",
           "reason", "n_obs", "n_clients"]


@dataclass(frozen=True)
class CurveSettings:
    """The ``specification_curve:`` block."""

    within: tuple[str, ...]
    lag: tuple[int, ...]
    random_slope: tuple[str, ...]
    estimation: tuple[str, ...]
    min_sessions: tuple[int, ...]
    terms: tuple[str, ...]
    formulas: Mapping[int, str]
    random_parts: Mapping[str, str]


def curve_settings(block: Mapping[str, Any] | None) -> CurveSettings:
    """Read and check ``specification_curve:`` (SettingsError naming the setting)."""
    if not isinstance(block, Mapping):
        raise SettingsError("params.yaml: the specification_curve: block is missing or not a "
                            "mapping.")
    known = {*CHOICES, "min_sessions", "terms", "formulas", "random_parts"}
    unknown = sorted(set(block) - known)
    if unknown:
        raise SettingsError(f"params.yaml: specification_curve.{unknown[0]} is not a "
                            f"setting (known: {', '.join(sorted(known))}).")
    values: dict[str, tuple[Any, ...]] = {}
    for key, allowed in CHOICES.items():
        given = block.get(key)
        if not isinstance(given, list) or not given or any(v not in allowed for v in given):
            raise SettingsError(
                f"params.yaml: specification_curve.{key} is {given!r}; give a non-empty list "
                f"drawn from {list(allowed)}.")
        values[key] = tuple(dict.fromkeys(given))
    mins = block.get("min_sessions")
    if (not isinstance(mins, list) or not mins
            or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mins)):
        raise SettingsError(f"params.yaml: specification_curve.min_sessions is {mins!r}; give "
                            "a list of whole numbers >= 1 (1 = every client).")
    terms = block.get("terms")
    if not isinstance(terms, list) or not terms or not all(isinstance(t, str) for t in terms):
        raise SettingsError("params.yaml: specification_curve.terms must list within-client "
                            "terms, e.g. [goal_within, task_within, bond_within].")
    formulas = block.get("formulas") or {}
    parts = block.get("random_parts") or {}
    for lag in values["lag"]:
        if not isinstance(formulas.get(lag), str):
            raise SettingsError(f"params.yaml: specification_curve.formulas has no model for "
                                f"lag {lag}; map each lag to a model of models.yaml, e.g. "
                                "{0: primary, 1: lagged}.")
    for slope in values["random_slope"]:
        if not isinstance(parts.get(slope), str):
            raise SettingsError(f"params.yaml: specification_curve.random_parts has no random "
                                f"part for {slope!r}; name one of models.yaml's random_parts.")
    return CurveSettings(within=values["within"], lag=values["lag"],
                         random_slope=values["random_slope"],
                         estimation=values["estimation"],
                         min_sessions=tuple(dict.fromkeys(mins)), terms=tuple(terms),
                         formulas={int(k): str(v) for k, v in formulas.items()},
                         random_parts={str(k): str(v) for k, v in parts.items()})


def specifications(settings: CurveSettings) -> list[dict[str, Any]]:
    """Every combination of the choices, in a fixed order, each with its label."""
    out = []
    for within, lag, slope, est, mins in itertools.product(
            settings.within, settings.lag, settings.random_slope, settings.estimation,
            settings.min_sessions):
        label = f"{within}|lag{lag}|{slope}|{est}|min{mins}"
        out.append({"spec": label, "within": within, "lag": lag, "random_slope": slope,
                    "estimation": est, "min_sessions": mins})
    return out


def spec_data(scored: pd.DataFrame, spec: Mapping[str, Any],
              prepared: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows and predictors of one specification, with the project's design functions.

    Complete rows and the person-mean split; then clients with fewer than
    ``min_sessions`` complete rows are left out and the split recomputed; then the
    within-client part is detrended when asked; then each row is paired with the
    client's previous row for lag 1 (so a lagged detrended predictor is the previous
    session's detrended deviation). ``prepared``: the first step's result, the same for
    every specification (:func:`prepared_rows`), when already computed.
    """
    from pipeline.models import add_lags, detrend_within, disaggregate

    data = prepared if prepared is not None else prepared_rows(scored)
    if spec["min_sessions"] > 1:
        counts = data.groupby("client_id")["session"].transform("size")
        data = disaggregate(data[counts >= spec["min_sessions"]].reset_index(drop=True))
    if spec["within"] == "detrended":
        data = detrend_within(data)
    if spec["lag"] == 1:
        data = add_lags(data)
    return data


def prepared_rows(scored: pd.DataFrame) -> pd.DataFrame:
    """Complete rows with the outcome and the person-mean split (every specification's
    first step)."""
    from pipeline.models import prepare

    return prepare(scored, required=("wellbeing",))


def fit_specification(task: Mapping[str, Any]) -> dict[str, Any]:
    """Fit one specification; the within-client terms' estimates, or the reason it failed."""
    from pipeline.models.fitting import fit_formula
    from pipeline.models.inference import tests_and_intervals

    spec = task["spec"]
    try:
        data = spec_data(task["scored"], spec, task.get("prepared"))
    except PipelineError as exc:   # e.g. no outcome column: nothing to fit
        return {"n_obs": 0, "n_clients": 0, "status": "not estimable", "reason": str(exc),
                "terms": {}}
    base = {"n_obs": len(data), "n_clients": int(data["client_id"].nunique())}
    if base["n_clients"] < task.get("min_clients", 1):
        from pipeline.models.fitting import too_few_clients

        return {"n_obs": len(data), "n_clients": None, "status": "not estimable",
                "reason": too_few_clients(task["min_clients"]), "terms": {}}
    try:
        fit, simplified = fit_formula(data, task["formula"], task["random"],
                                      reml=spec["estimation"] == "reml",
                                      settings=task["settings"], model=spec["spec"])
    except PipelineError as exc:
        return {**base, "status": "not estimable", "reason": str(exc), "terms": {}}
    except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
        return {**base, "status": "failed", "reason": f"{type(exc).__name__}: {exc}",
                "terms": {}}
    if simplified:
        return {**base, "status": "not estimable",
                "reason": "only a simplified model could be fitted: " + "; ".join(simplified),
                "terms": {}}
    status = ("not converged" if not fit.converged
              else "singular" if fit.singular else "fitted")
    df = fit.df.to_numpy()
    _, p, low, high = tests_and_intervals(fit.beta.to_numpy(), fit.std_error.to_numpy(),
                                             None if np.isinf(df).all() else df,
                                             task["conf_level"])
    terms = {}
    for i, name in enumerate(fit.beta.index):
        terms[str(name)] = {"estimate": float(fit.beta.iloc[i]),
                            "std_error": float(fit.std_error.iloc[i]), "df": float(df[i]),
                            "conf_low": float(low[i]), "conf_high": float(high[i]),
                            "p_value": float(p[i])}
    return {**base, "status": status, "reason": "", "terms": terms}


def specification_curve(scored: pd.DataFrame, settings: CurveSettings,
                        fit_settings: Mapping[str, Any],
                        execution: ExecutionSettings | None = None,
                        min_clients: int = 1) -> pd.DataFrame:
    """Fit every specification and tabulate the within-client terms.

    A specification whose rows hold fewer than ``min_clients`` clients (the stage passes
    ``report.min_cell``) is not estimable, its count not shown.

    Parameters
    ----------
    scored
        Scored client x session rows (client_id, therapist_id, session, goal, task,
        bond, wellbeing).
    settings
        The choices (see the module docstring).
    fit_settings
        The ``model:`` block of params.yaml (engine, df method, conf_level).

    Returns
    -------
    pandas.DataFrame
        :data:`COLUMNS`, one row per specification x term; for lag 1 the term
        ``goal_within`` is the coefficient of ``goal_within_lag``. Rows without numbers
        keep the status and reason.
    """
    from pipeline.models import load_specs

    plan = load_specs()
    formulas = {}
    for lag in settings.lag:
        try:
            formulas[lag] = plan.get(settings.formulas[lag]).formula
        except KeyError:
            raise SettingsError(f"params.yaml: specification_curve.formulas names "
                                f"{settings.formulas[lag]!r}, not a model of models.yaml."
                                ) from None
    parts = {}
    for slope in settings.random_slope:
        name = settings.random_parts[slope]
        if name not in plan.random_parts:
            raise SettingsError(f"params.yaml: specification_curve.random_parts names "
                                f"{name!r}, not a random part of models.yaml (known: "
                                f"{', '.join(plan.random_parts)}).")
        parts[slope] = plan.random_parts[name]
    specs = specifications(settings)
    conf_level = float(fit_settings.get("conf_level", 0.95))
    try:    # once for all specifications (an error is met again, and reported, by each)
        prepared: pd.DataFrame | None = prepared_rows(scored)
    except PipelineError:
        prepared = None
    tasks = [{"spec": s, "scored": scored, "prepared": prepared,
              "formula": formulas[s["lag"]],
              "random": parts[s["random_slope"]], "settings": dict(fit_settings),
              "conf_level": conf_level, "min_clients": int(min_clients)} for s in specs]
    results = run_replicates(fit_specification, tasks, execution, desc="specifications")
    return curve_table(specs, results, settings.terms)


def curve_table(specs: Sequence[Mapping[str, Any]], results: Sequence[Mapping[str, Any]],
                terms: Sequence[str]) -> pd.DataFrame:
    """One row per specification x term (see :func:`specification_curve`)."""
    rows = []
    blank = dict.fromkeys(("estimate", "std_error", "df", "conf_low", "conf_high", "p_value"),
                          np.nan)
    for spec, res in zip(specs, results, strict=True):
        for term in terms:
            name = f"{term}_lag" if spec["lag"] == 1 else term
            values = res["terms"].get(name)
            if values is not None:
                status, reason = res["status"], ""
            elif res["terms"]:
                status, reason = "absent", f"{name} is not a term of the model"
            else:
                status, reason = res["status"], res["reason"]
            rows.append({**spec, "term": term, **(values or blank), "status": status,
                         "reason": reason, "n_obs": res["n_obs"],
                         "n_clients": res["n_clients"]})
    return pd.DataFrame(rows, columns=COLUMNS)
