"""One power replicate: simulate a study, fit the model, keep each term's test.

Runs on Dask workers, so everything it needs travels in the task (plain values and a
:class:`numpy.random.SeedSequence`) and the model specification is read by name.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError, SettingsError
from pipeline.instruments import load_instrument
from pipeline.simulation.alliance import AllianceProcess
from pipeline.simulation.design import StudyDesign
from pipeline.simulation.outcome import ModelTruth
from pipeline.simulation.study import simulate_study

#: Statuses whose tests count; any other status is a failed replicate.
COUNTED = ("fitted", "singular")


@functools.lru_cache(maxsize=8)
def _spec(model: str) -> Any:
    from pipeline.model import load_specs

    return load_specs().get(model)


def check_model(model: str) -> None:
    """Refuse models the simulator cannot generate (lagged outcome, covariates)."""
    try:
        spec = _spec(model)
    except KeyError:
        raise SettingsError(f"params.yaml: power.model {model!r} is not a model of "
                            "pipeline/models.yaml.") from None
    if spec.data == "lagged" or spec.covariates:
        raise SettingsError(
            f"params.yaml: power.model {model!r} uses a lagged outcome or client covariates, "
            "which the simulator does not generate; choose e.g. `primary`.")


def fit_terms(spec: Any, data: pd.DataFrame, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Fit ``spec`` to ``data``; return the status and each term's estimate and p-value."""
    from scipy import stats

    from pipeline.model import build_model, fit_optimum

    model = build_model(spec.formula, data, spec.random)
    fit = fit_optimum(model, reml=spec.reml, random=spec.random,
                      optimizers=list(settings.get("optimizers", ["powell"])),
                      gradient_tolerance=float(settings.get("gradient_tolerance", 1e-3)))
    se = np.sqrt(np.diag(fit.fe_cov.to_numpy()))
    est = fit.fe_params.to_numpy()
    p = 2.0 * stats.norm.sf(np.abs(est / se))
    return {"status": "fitted" if fit.converged else "not converged",
            "terms": {str(t): {"estimate": float(e), "p_value": float(q)}
                      for t, e, q in zip(fit.fe_params.index, est, p, strict=True)}}


def power_replicate(task: Mapping[str, Any]) -> dict[str, Any]:
    """Simulate one study of ``task["design"]`` and test the model's terms.

    Returns
    -------
    dict
        ``status`` (a fit status, or ``failed: <reason>``), ``n_obs``, and per term the
        estimate and p-value (absent when the fit failed).
    """
    rng = np.random.default_rng(task["seed"])
    spec = _spec(task["model"])
    design = StudyDesign(**task["design"])
    process = AllianceProcess(**task["alliance"])
    truth = ModelTruth(fixed=task["truth"]["fixed"], sd=task["truth"]["sd"],
                       client_time_corr=task["truth"]["client_time_corr"])
    instrument = load_instrument(task["instrument"]) if task.get("instrument") else None

    def build(scored: pd.DataFrame) -> pd.DataFrame:
        from pipeline.model import model_data

        return model_data(scored, None, spec)

    data = simulate_study(design, process, truth, rng, build, instrument=instrument)
    try:
        fit = fit_terms(spec, data, task["fit_settings"])
    except (PipelineError, np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
        return {"status": f"failed: {type(exc).__name__}: {exc}", "n_obs": len(data),
                "terms": {}}
    return {"status": fit["status"], "n_obs": len(data), "terms": fit["terms"]}
