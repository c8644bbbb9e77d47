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
    from pipeline.models import load_specs

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
    """Fit ``spec`` to ``data`` with the project's engine; each term's estimate and p.

    The status follows the results contract: ``fitted``, ``singular`` (a variance at the
    boundary; the tests stand), ``not converged``; p-values use the model's df method
    (Satterthwaite by default), as the models report does.
    """
    from pipeline.models.fitting import fit_formula
    from pipeline.models.inference import tests_and_intervals

    fit, simplified = fit_formula(data, spec.formula, spec.random, reml=spec.reml,
                                  settings=settings, model=spec.name)
    if simplified:
        # The checks fitted a simpler model than the one planned: not a test of its terms.
        return {"status": "failed: not estimable as planned (" + "; ".join(simplified) + ")",
                "terms": {}}
    est = fit.beta.to_numpy()
    df = fit.df.to_numpy()
    _, p, _, _ = tests_and_intervals(est, fit.std_error.to_numpy(),
                                     None if np.isinf(df).all() else df, 0.95)
    status = ("not converged" if not fit.converged
              else "singular" if fit.singular else "fitted")
    return {"status": status,
            "terms": {str(t): {"estimate": float(e), "p_value": float(q)}
                      for t, e, q in zip(fit.beta.index, est, p, strict=True)}}


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
        from pipeline.models import model_data

        return model_data(scored, None, spec)

    data = simulate_study(design, process, truth, rng, build, instrument=instrument)
    try:
        fit = fit_terms(spec, data, task["fit_settings"])
    except (PipelineError, np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
        return {"status": f"failed: {type(exc).__name__}: {exc}", "n_obs": len(data),
                "terms": {}}
    return {"status": fit["status"], "n_obs": len(data), "terms": fit["terms"]}
