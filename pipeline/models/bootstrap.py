"""Parametric bootstrap of a fitted model's variance components, ICCs and R².

Each replicate draws a new outcome from the fitted model on the model's own rows and
predictors (new random effects and residuals, the estimated fixed effects and variance
components), refits the model from the estimate (a warm start) and keeps the variance
components, the therapist and client shares of the intercept variance (ICC) and the
marginal and conditional R². Percentile intervals over the replicates that converged;
failed refits are counted, never dropped silently.

R equivalent: ``lme4::bootMer(fit, FUN, nsim, type = "parametric")`` with
``confint(..., type = "perc")``; Julia: ``MixedModels.parametricbootstrap``.

References
----------
Davison, A. C., & Hinkley, D. V. (1997). *Bootstrap methods and their application*.
Cambridge University Press (chapter 5: percentile intervals).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError, SettingsError
from pipeline.parallel import ExecutionSettings, fingerprint, run_replicates
from pipeline.simulation.outcome import COMPONENTS, ModelTruth, simulate_outcome

#: Quantities bootstrapped, in table order.
QUANTITIES: tuple[str, ...] = (
    "sd_therapist", "sd_client", "sd_client_time", "sd_residual", "corr_client_time",
    "icc_therapist", "icc_client", "r2_marginal", "r2_conditional",
)


@dataclass(frozen=True)
class BootstrapSettings:
    """The ``bootstrap:`` block of params.yaml."""

    model: str = "primary"
    replications: int = 200
    seed: int = 0
    conf_level: float = 0.95
    max_failed_share: float = 0.2
    alliance_levels: bool = True


def bootstrap_settings(block: Mapping[str, Any] | None) -> BootstrapSettings:
    """Read and check the ``bootstrap:`` block (SettingsError naming the setting)."""
    block = dict(block or {})
    known = set(BootstrapSettings.__dataclass_fields__)
    unknown = sorted(set(block) - known)
    if unknown:
        raise SettingsError(f"params.yaml: bootstrap.{unknown[0]} is not a setting (known: "
                            f"{', '.join(sorted(known))}).")
    reps = block.get("replications", 200)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 10:
        raise SettingsError(f"params.yaml: bootstrap.replications is {reps!r}; give a whole "
                            "number of at least 10 (1,000 or more for a paper).")
    seed = block.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise SettingsError(f"params.yaml: bootstrap.seed is {seed!r}; give a whole number "
                            ">= 0.")
    level = block.get("conf_level", 0.95)
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.5 <= level < 1:
        raise SettingsError(f"params.yaml: bootstrap.conf_level is {level!r}; give a "
                            "proportion such as 0.95 (not a percentage).")
    share = block.get("max_failed_share", 0.2)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise SettingsError(f"params.yaml: bootstrap.max_failed_share is {share!r}; give a "
                            "proportion from 0 to 1.")
    model = block.get("model", "primary")
    if not isinstance(model, str) or not model:
        raise SettingsError("params.yaml: bootstrap.model must name a model of models.yaml.")
    levels = block.get("alliance_levels", True)
    if not isinstance(levels, bool):
        raise SettingsError(f"params.yaml: bootstrap.alliance_levels is {levels!r}; give "
                            "true or false.")
    return BootstrapSettings(model=model, replications=reps, seed=seed,
                             conf_level=float(level), max_failed_share=float(share),
                             alliance_levels=levels)


def truth_of(fit: Any) -> ModelTruth:
    """The fitted model as a :class:`ModelTruth` (fixed effects, SDs, correlation).

    Raises
    ------
    SettingsError
        When the fit has variance components the simulator cannot draw.
    """
    variances = dict(fit.variances)
    cov = variances.pop("cov_client_client_time", 0.0)
    unknown = sorted(set(variances) - set(COMPONENTS))
    if unknown:
        raise SettingsError(
            f"the bootstrap simulates therapist and client random parts only; this model has "
            f"the component {unknown[0]!r}. Choose a model such as `primary` in "
            "bootstrap.model.")
    sd = {k: float(np.sqrt(max(v, 0.0))) for k, v in variances.items()}
    denom = sd.get("client", 0.0) * sd.get("client_time", 0.0)
    corr = float(np.clip(cov / denom, -0.999, 0.999)) if denom > 0 else 0.0
    return ModelTruth(fixed={str(k): float(v) for k, v in fit.beta.items()}, sd=sd,
                      client_time_corr=corr)


def summaries(fit: Any) -> dict[str, float]:
    """The bootstrapped quantities of one fit."""
    v = fit.variances
    intercepts = [v.get("therapist", 0.0), v.get("client", 0.0)]
    total = sum(intercepts) + v["residual"]
    sd_c, sd_t = np.sqrt(v.get("client", 0.0)), np.sqrt(v.get("client_time", 0.0))
    cov = v.get("cov_client_client_time")
    corr = float(cov / (sd_c * sd_t)) if cov is not None and sd_c * sd_t > 0 else np.nan
    return {
        "sd_therapist": float(np.sqrt(v.get("therapist", np.nan))),
        "sd_client": float(sd_c) if "client" in v else np.nan,
        "sd_client_time": float(sd_t) if "client_time" in v else np.nan,
        "sd_residual": float(np.sqrt(v["residual"])),
        "corr_client_time": corr,
        "icc_therapist": float(v.get("therapist", 0.0) / total),
        "icc_client": float(v.get("client", 0.0) / total),
        "r2_marginal": float(fit.r2[0]), "r2_conditional": float(fit.r2[1]),
    }


def bootstrap_replicate(task: Mapping[str, Any]) -> dict[str, Any]:
    """Draw a new outcome from the fitted model on the same rows and refit.

    With the native engine the refit is :func:`pipeline.models.fitting.refit` (lme4's
    ``refit(object, newresp)``, as ``bootMer``): the fitted model's design, grouping and
    every statistic not involving the outcome are reused, the optimiser starts from the
    fit's theta, and lme4's checks run as in any fit; it equals a fresh ``fit_formula``
    of the same rows (tested). The statsmodels engine refits from the rows.
    """
    from pipeline.models.fitting import fit_formula, refit

    rng = np.random.default_rng(task["seed"])
    truth = ModelTruth(**task["truth"])
    base = task.get("fit")
    try:
        if base is not None and base.engine == "native":
            y = simulate_outcome(task["data"], truth, rng)
            fit = refit(base, y, settings=task["settings"], start=np.asarray(task["start"]),
                        with_df=False)
        else:
            data = task["data"].copy()
            data[task["outcome"]] = simulate_outcome(data, truth, rng)
            fit, _ = fit_formula(data, task["formula"], task["random"], reml=task["reml"],
                                 settings=task["settings"], start=np.asarray(task["start"]),
                                 checked=True)
    except (PipelineError, np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
        return {"status": f"failed: {type(exc).__name__}: {exc}"}
    if not fit.converged:
        return {"status": "not converged"}
    return {"status": "singular" if fit.singular else "fitted", **summaries(fit)}


def parametric_bootstrap(fit: Any, data: pd.DataFrame, spec: Any,
                         settings: BootstrapSettings, execution: ExecutionSettings,
                         fit_settings: Mapping[str, Any]) -> pd.DataFrame:
    """Percentile intervals of :data:`QUANTITIES` for a fitted model.

    Parameters
    ----------
    fit
        The model fitted to ``data`` (a :class:`pipeline.models.fitting.ModelFit`).
    data
        The model's rows and predictors.
    spec
        The model specification (formula, random part, REML).
    settings, execution, fit_settings
        Bootstrap, parallel and ``model:`` settings.

    Returns
    -------
    pandas.DataFrame
        model, quantity, estimate (of the fit), conf_low, conf_high, conf_level,
        replications, failed, singular, boot_mean, boot_sd.
    """
    truth = truth_of(fit)
    # Wald df are enough here: the refits' fixed-effect tests are not used.
    refit_settings = {**dict(fit_settings), "df_method": "wald"}
    outcome = spec.formula.split("~", 1)[0].strip()
    seeds = model_seed(settings.seed, spec.name, settings.model).spawn(settings.replications)
    tasks = [{"seed": s} for s in seeds]
    # What every refit shares goes to each worker once (the fit is ~0.6 MB pickled).
    shared = {"data": data, "truth": truth.as_dict(), "outcome": outcome,
              "formula": spec.formula, "random": fit.random, "reml": spec.reml,
              "settings": refit_settings, "start": [float(t) for t in fit.theta],
              "fit": fit}
    run_id = fingerprint({"model": spec.name, "bootstrap": settings.__dict__})
    reps = run_replicates(bootstrap_replicate, tasks, execution, desc="bootstrap",
                          run_id=run_id, shared=shared)
    return bootstrap_table(spec.name, summaries(fit), reps, settings,
                           intercept_only=spec.formula.split("~", 1)[1].strip() == "1")


def model_seed(seed: int, model: str, main: str) -> np.random.SeedSequence:
    """The seed sequence of one bootstrapped model: ``bootstrap.seed`` itself for the main
    model (``bootstrap.model``), and ``[seed, crc32(name)]`` for any other, so each model's
    refits depend on the seed and its own name only (not on which others are bootstrapped).
    """
    import zlib

    if model == main:
        return np.random.SeedSequence(seed)
    return np.random.SeedSequence([seed, zlib.crc32(model.encode("utf-8"))])


class TooManyFailedRefits(PipelineError):
    """More bootstrap refits failed than ``bootstrap.max_failed_share`` allows."""


def bootstrap_table(model: str, estimate: Mapping[str, float],
                    reps: Sequence[Mapping[str, Any]],
                    settings: BootstrapSettings, intercept_only: bool = False) -> pd.DataFrame:
    """Percentile intervals from replicate results (see :func:`parametric_bootstrap`);
    ``intercept_only``: a model without predictors (no R² rows)."""
    ok = [r for r in reps if r["status"] in ("fitted", "singular")]
    failed = len(reps) - len(ok)
    if reps and failed / len(reps) > settings.max_failed_share:
        first = next(r["status"] for r in reps if r["status"] not in ("fitted", "singular"))
        raise TooManyFailedRefits(
            f"bootstrap: {failed} of {len(reps)} refits of model {model!r} failed (first: "
            f"{first}), more than bootstrap.max_failed_share = {settings.max_failed_share:g}; "
            "intervals from the rest would be biased, so no report is made from this run "
            "(reports/ still holds the last run's). Look at the model's status in "
            "build/results/fit_statistics.csv and its [models] line in this log (a model "
            "that does not converge or is singular on the data will fail its refits too), "
            "then choose another bootstrap.model (or bootstrap.alliance_levels: false), or "
            "raise bootstrap.max_failed_share in params.yaml.")
    singular = sum(r["status"] == "singular" for r in reps)
    tail = (1.0 - settings.conf_level) / 2.0
    rows = []
    for q in QUANTITIES:
        if q.startswith("r2_") and intercept_only:
            continue   # no predictors: R² marginal is 0 by construction, conditional = ICCs
        values = np.array([r[q] for r in ok], dtype=float)
        values = values[np.isfinite(values)]
        value = float(estimate.get(q, np.nan))
        if not np.isfinite(value) or len(values) == 0:
            continue
        low, high = np.quantile(values, [tail, 1.0 - tail])
        rows.append({"model": model, "quantity": q, "estimate": value,
                     "conf_low": float(low), "conf_high": float(high),
                     "conf_level": settings.conf_level, "replications": len(reps),
                     "failed": failed, "singular": singular,
                     "boot_mean": float(values.mean()),
                     "boot_sd": float(values.std(ddof=1)) if len(values) > 1 else np.nan})
    return pd.DataFrame(rows, columns=["model", "quantity", "estimate", "conf_low",
                                       "conf_high", "conf_level", "replications", "failed",
                                       "singular", "boot_mean", "boot_sd"])


#: Models bootstrapped besides ``bootstrap.model`` when ``bootstrap.alliance_levels`` is on:
#: where goal, task and bond live (therapist, client and session shares).
ALLIANCE_LEVELS: tuple[str, ...] = ("alliance_levels_goal", "alliance_levels_task",
                                    "alliance_levels_bond")


def bootstrap_model(scored: pd.DataFrame, clients: pd.DataFrame | None,
                    params: Mapping[str, Any]) -> pd.DataFrame:
    """The ``bootstrap`` stage: settings first, then refit each model and bootstrap it.

    The models are ``bootstrap.model`` and, with ``bootstrap.alliance_levels`` (the
    default), the three models of where the alliance lives (:data:`ALLIANCE_LEVELS`), so
    that their therapist and client shares have intervals in every run, alliance-only
    runs included. A model that cannot be estimated as specified on these data has no
    rows; the reasons are in ``attrs["note"]`` (``model: reason; ...``), so that the
    report can say so.
    """
    from pipeline.models import load_specs

    settings = bootstrap_settings(params.get("bootstrap"))
    try:
        load_specs().get(settings.model)
    except KeyError:
        raise SettingsError(f"params.yaml: bootstrap.model {settings.model!r} is not a model "
                            "of pipeline/models.yaml.") from None
    names = [settings.model, *(m for m in ALLIANCE_LEVELS
                               if settings.alliance_levels and m != settings.model)]
    tables, notes = [], []
    for name in names:
        table = _bootstrap_one(name, scored, clients, params, settings)
        if "note" in table.attrs:
            notes.append(f"{name}: {table.attrs['note']}")
        tables.append(table)
    # the models with intervals only (pandas warns that empty tables will count towards
    # the columns' dtypes; they add no rows)
    filled = [t for t in tables if len(t)]
    out = pd.concat(filled, ignore_index=True) if filled else tables[0]
    out.attrs = {"note": "; ".join(notes)} if notes else {}
    return out


def _bootstrap_one(name: str, scored: pd.DataFrame, clients: pd.DataFrame | None,
                   params: Mapping[str, Any], settings: BootstrapSettings) -> pd.DataFrame:
    """Fit one model and bootstrap it (an empty table with ``attrs["note"]`` if it cannot
    be estimated as specified)."""
    from pipeline.models import load_specs, model_data
    from pipeline.models.fitting import fit_formula, settings_from
    from pipeline.parallel import execution_settings

    execution = execution_settings(params.get("parallel"))
    fit_settings = settings_from(params.get("model"))
    spec = load_specs().get(name)
    empty = bootstrap_table(spec.name, {}, [], settings)
    if any(clients is None or c not in clients.columns for c in spec.covariates):
        empty.attrs["note"] = "a client covariate of the model is absent"
        return empty
    try:
        data = model_data(scored, clients, spec)
        min_clients = int((params.get("report") or {}).get("min_cell", 1))
        if data["client_id"].nunique() < min_clients:
            from pipeline.models.fitting import too_few_clients

            empty.attrs["note"] = f"not estimable: {too_few_clients(min_clients)}"
            return empty
        fit, simplified = fit_formula(data, spec.formula, spec.random, reml=spec.reml,
                                      settings=fit_settings, model=spec.name)
    except PipelineError as exc:
        empty.attrs["note"] = f"not estimable: {exc}"
        return empty
    if simplified or not fit.converged:
        empty.attrs["note"] = ("not estimable as specified: " + "; ".join(simplified)
                               if simplified else "the model did not converge")
        return empty
    return parametric_bootstrap(fit, data, spec, settings, execution, fit_settings)
