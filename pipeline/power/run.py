"""Run a power analysis: every design x replicate through the parallel seam."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.parallel import ExecutionSettings, code_fingerprint, fingerprint, run_replicates
from pipeline.simulation.outcome import ModelTruth

from .replicate import COUNTED, check_model, power_replicate
from .settings import PowerSettings
from .summary import power_table, smallest_adequate
from .truth import reported_terms


class TooManyFailedFits(PipelineError):
    """More replicates failed than ``power.max_failed_share`` allows."""


def power_tasks(settings: PowerSettings, truth: ModelTruth,
                fit_settings: Mapping[str, Any], instrument: str | None) -> list[dict[str, Any]]:
    """One task per design x replicate, each with its own spawned seed sequence.

    Design ``d`` takes child ``d`` of ``SeedSequence(power.seed)``, and its replicate ``i``
    that child's child ``i``: adding replicates or designs at the end leaves the earlier
    replicates' data unchanged.
    """
    if settings.alliance is None:
        raise ValueError("power_tasks needs the alliance process (estimate_process)")
    root = np.random.SeedSequence(settings.seed)
    tasks = []
    for design, child in zip(settings.designs, root.spawn(len(settings.designs)), strict=True):
        for i, seed in enumerate(child.spawn(settings.replications)):
            tasks.append({
                "design": dict(design.__dict__), "replicate": i, "seed": seed,
                "model": settings.model, "alliance": dict(settings.alliance.__dict__),
                "truth": truth.as_dict(), "fit_settings": dict(fit_settings),
                "instrument": instrument if settings.level == "items" else None,
            })
    return tasks


def run_power(settings: PowerSettings, truth: ModelTruth, execution: ExecutionSettings,
              fit_settings: Mapping[str, Any], *, instrument: str | None = None,
              checkpoint: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate, fit and summarise.

    Returns
    -------
    power : pandas.DataFrame
        :func:`pipeline.power.summary.power_table`.
    adequate : pandas.DataFrame
        :func:`pipeline.power.summary.smallest_adequate` at ``settings.target``.

    Raises
    ------
    TooManyFailedFits
        When a design's failed share exceeds ``max_failed_share`` (the replicates done are
        kept in the checkpoint).
    """
    check_model(settings.model)
    terms = reported_terms(truth, settings.terms)
    tasks = power_tasks(settings, truth, fit_settings, instrument)
    run_id = fingerprint({"power": settings.as_dict(), "truth": truth.as_dict(),
                          "fit": dict(fit_settings), "instrument": instrument,
                          "code": code_fingerprint()})
    flat = run_replicates(power_replicate, tasks, execution, desc="power",
                          checkpoint=checkpoint, run_id=run_id)
    n = settings.replications
    by_design = [flat[d * n:(d + 1) * n] for d in range(len(settings.designs))]
    for design, reps in zip(settings.designs, by_design, strict=True):
        failed = [r["status"] for r in reps if r["status"] not in COUNTED]
        if len(failed) / n > settings.max_failed_share:
            raise TooManyFailedFits(
                f"power: {len(failed)} of {n} simulated studies of design {design.label} "
                f"could not be fitted (first reason: {failed[0]}), more than "
                f"power.max_failed_share = {settings.max_failed_share:g}. A power estimate "
                "from the rest would be biased: enlarge the design (more clients or "
                "sessions), or simplify power.model.")
    table = power_table(settings.designs, by_design, terms,
                        {t: float(truth.fixed[t]) for t in terms}, settings.alpha,
                        settings.model)
    return table, smallest_adequate(table, settings.target)


def truth_table(truth: ModelTruth, effects: Mapping[str, float],
                sources: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The true values simulated from, and where each came from (for the report).

    ``sources``: component -> where its SD came from (:func:`pipeline.power.truth.sd_source`;
    default ``fitted model``).
    """
    rows = [{"parameter": term, "kind": "fixed effect", "value": float(value),
             "source": "power.effects" if term in effects else "fitted model"}
            for term, value in truth.fixed.items()]
    rows += [{"parameter": name, "kind": "SD", "value": float(value),
              "source": (sources or {}).get(name, "fitted model")}
             for name, value in truth.sd.items()]
    rows.append({"parameter": "client_time_corr", "kind": "correlation",
                 "value": float(truth.client_time_corr), "source": "fitted model"})
    return pd.DataFrame(rows, columns=["parameter", "kind", "value", "source"])


def power_stage(params: Mapping[str, Any], results: Path, checkpoint: Path,
                log: Any = None, scored: Path | None = None) -> dict[str, pd.DataFrame]:
    """The ``power`` DVC stage: settings first, then true values, replicates, tables.

    Parameters
    ----------
    params
        All of params.yaml.
    results
        The results folder (reads the fitted model's tables from it).
    checkpoint
        JSON-lines file of finished replicates (kept outside DVC's outputs, so an
        interrupted run resumes).
    scored
        The scored rows (``data/interim/scored.csv``): without ``power.alliance`` the
        alliance process is estimated from the rows the power model uses
        (:mod:`pipeline.power.process`).

    Returns
    -------
    dict of DataFrame
        ``power``, ``power_target`` and ``power_truth`` tables (aggregates only);
        ``power_truth`` also holds the alliance process (kind ``alliance``) and where it
        came from.
    """
    from pipeline.models import load_specs
    from pipeline.models.fitting import settings_from
    from pipeline.parallel import execution_settings

    from .settings import power_settings
    from .summary import COLUMNS, TARGET_COLUMNS
    from .truth import ASSUMED, USABLE, planned_components, sd_source, truth_from_fit

    fit_settings = settings_from(params.get("model"))
    settings = power_settings(params.get("power"),
                              min_levels=int(fit_settings["checks"]["min_levels"]))
    execution = execution_settings(params.get("parallel"))
    check_model(settings.model)
    stats = pd.read_csv(results / "fit_statistics.csv")
    status_rows = stats.loc[stats["model"] == settings.model, "status"]
    status = str(status_rows.iloc[0]) if len(status_rows) else "absent"
    if status not in USABLE:
        # The model the power analysis simulates from was not estimated on these data
        # (e.g. no outcome file): nothing to simulate from. Empty tables; the report says
        # why from results/fit_statistics.csv.
        if log is not None:
            log("power", f"no power analysis: model {settings.model!r} is {status} on these "
                         "data")
        return {"power": pd.DataFrame(columns=COLUMNS),
                "power_target": pd.DataFrame(columns=TARGET_COLUMNS),
                "power_truth": pd.DataFrame(columns=["parameter", "kind", "value", "source"])}
    variance = pd.read_csv(results / "variance_components.csv")
    planned = planned_components(load_specs().get(settings.model))
    truth = truth_from_fit(settings.model, settings.effects,
                           pd.read_csv(results / "coefficients.csv"), variance, status,
                           sd=settings.sd, planned=planned)
    sources = {c: sd_source(c, variance, settings.model, settings.sd) for c in truth.sd}
    assumed = [c for c, where in sources.items() if where == ASSUMED]
    if assumed and log is not None:
        why = stats.loc[stats["model"] == settings.model, "simplification"].fillna("")
        log("power", f"WARNING: the fitted {settings.model!r} has no "
                     f"{' or '.join(assumed)} variance ({str(why.iloc[0]) or 'not estimated'});"
                     " the simulated studies get none (SD 0), which flatters the power of "
                     "the terms it bears on; set power.sd (e.g. {"
                     + ", ".join(f"{c}: <SD>" for c in assumed) + "}) for a realistic plan")
    instrument = (params.get("instruments") or {}).get("alliance")
    settings, process_rows = with_alliance_process(settings, fit_settings, scored, log)
    if log is not None:
        n = len(settings.designs) * settings.replications
        where = ("on the Dask cluster" if execution.scheduler
                 else "serial" if execution.workers == 1
                 else f"on {execution.workers} local workers if long enough"
                 if execution.auto else f"on {execution.workers} local workers")
        log("power", f"{len(settings.designs)} designs x {settings.replications} replicates "
                     f"= {n} fits of {settings.model!r}, {where}")
    table, target = run_power(settings, truth, execution, _plain(fit_settings),
                              instrument=str(instrument) if instrument else None,
                              checkpoint=checkpoint)
    return {"power": table, "power_target": target,
            "power_truth": pd.concat([truth_table(truth, settings.effects, sources),
                                      process_rows], ignore_index=True)}


def with_alliance_process(settings: PowerSettings, fit_settings: Mapping[str, Any],
                  scored: Path | None, log: Any) -> tuple[PowerSettings, pd.DataFrame]:
    """The settings with their alliance process (``power.alliance``, or estimated from
    the rows the power model uses), and the process as table rows."""
    import dataclasses

    from pipeline.models import load_specs, model_data

    from .process import estimate_process, process_table

    if settings.alliance is not None:
        return settings, process_table(settings.alliance, "power.alliance")
    if scored is None:
        raise ValueError("power_stage needs the scored rows to estimate the alliance process")
    rows = model_data(pd.read_csv(scored, dtype={"client_id": str, "therapist_id": str}),
                      None, load_specs().get(settings.model))
    process, notes = estimate_process(rows, fit_settings)
    source = "these data" + (f" ({'; '.join(notes)})" if notes else "")
    if log is not None:
        log("power", f"alliance process estimated from {len(rows)} rows of these data "
                     f"(session SD {process.session_sd:.3g}, client SD "
                     f"{process.client_sd:.3g}, therapist SD {process.therapist_sd:.3g})")
    return dataclasses.replace(settings, alliance=process), process_table(process, source)


def _plain(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Settings as plain JSON-able values (they fingerprint the checkpoint)."""
    import json

    return dict(json.loads(json.dumps(dict(settings), default=str)))
