"""The ``ruptures`` step: read validated data, detect, summarise, model, write.

``python -m pipeline ruptures`` calls :func:`run`. Inputs are the validated tables
(``data/interim/validated/``); outputs are the row-level episodes
(``data/interim/episodes.csv``, private), aggregate tables in ``results/ruptures/`` and
two figures (PNG, SVG, CSV) in ``reports/ruptures/``. ``detection_benchmark.csv`` holds
each criterion's recall, precision and false episodes on simulated scenarios with known
one-session drops (:func:`pipeline.ruptures.recovery.detection_benchmark`), whatever the
data analysed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline import yamlfile
from pipeline.outputs import write_csv, write_json
from pipeline.ruptures import endings as E
from pipeline.ruptures import outcome as O
from pipeline.ruptures import summarise as S
from pipeline.ruptures.criteria import load_criteria, load_rules, scale_reliability
from pipeline.ruptures.detect import alliance_series, detect_episodes
from pipeline.ruptures.recovery import detection_benchmark, recovery


def _log(message: str) -> None:
    print(f"[ruptures] {message}", file=sys.stderr, flush=True)


def _read(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None]:
    dtype = {"client_id": str, "therapist_id": str}
    alliance = pd.read_csv(folder / "alliance.csv", dtype=dtype)
    # No outcome file (an alliance-only analysis): episodes are still detected and
    # described; the outcome models say why they cannot be estimated.
    outcome_file = folder / "outcome.csv"
    outcome = pd.read_csv(outcome_file, dtype=dtype) if outcome_file.is_file() else None
    path = folder / "clients.csv"
    clients = pd.read_csv(path, dtype=dtype) if path.is_file() else None
    return alliance, outcome, clients


def _truth_episodes(params: Mapping[str, Any]) -> pd.DataFrame | None:
    """Injected episodes from truth.yaml beside simulated data (None otherwise)."""
    if not params["data"].get("simulated", False):
        return None
    path = Path(params["data"]["alliance"]).parent / "truth.yaml"
    if not path.is_file():
        return None
    truth = yamlfile.safe_load(path.read_text(encoding="utf-8")) or {}
    eps = (truth.get("ruptures") or {}).get("episodes")
    if not eps:
        return None
    return pd.DataFrame(eps).astype({"client_id": str})


def _check_settings(cfg: Mapping[str, Any], names: list[str]) -> None:
    """Refuse settings the step would fail on, before anything is written."""
    from pipeline.errors import SettingsError

    fig = str(cfg.get("figure_criterion", names[0]))
    if fig not in names:
        raise SettingsError(f"params.yaml: ruptures.figure_criterion is {fig!r}, which is not "
                            f"a criterion under ruptures.criteria ({', '.join(names)}).")
    scales = [str(s) for s in cfg.get("scales", ["total"])]
    if "total" not in scales or not set(scales) <= {"total", "goal", "task", "bond"}:
        raise SettingsError("params.yaml: ruptures.scales must include total and name only "
                            "total, goal, task, bond.")
    for key, lhs in (("outcome", "change"), ("endings", "event")):
        formula = str((cfg.get(key) or {}).get("formula", ""))
        if "~" not in formula or formula.split("~", 1)[0].strip() != lhs:
            raise SettingsError(f"params.yaml: ruptures.{key}.formula must read "
                                f"'{lhs} ~ ...' (see pipeline/ruptures/{key}.py), not "
                                f"{formula!r}.")
    for key in ("before", "after"):
        value = (cfg.get("course") or {}).get(key)
        if not isinstance(value, int) or value < 0:
            raise SettingsError(f"params.yaml: ruptures.course.{key} must be a whole number "
                                "of sessions, 0 or more.")


def _blank_small(table: pd.DataFrame, counts: list[str], min_cell: int) -> pd.DataFrame:
    """Counts of clients or events below ``min_cell`` blanked (as every published count)."""
    from pipeline.describe import suppress_counts

    out = suppress_counts(table, {c: [] for c in counts}, min_cell)
    if "suppressed" in table.columns:   # the table's own flags stay as they were
        out["suppressed"] = table["suppressed"]
    else:
        out = out.drop(columns="suppressed")
    return out.astype({c: "Int64" for c in counts})   # whole numbers stay whole in the CSV


def run(params: Mapping[str, Any], validated: Path, episodes_out: Path, results: Path,
        figures_dir: Path, instruments: tuple[Any, Any]) -> None:
    """Run the step and write every output (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    from pipeline.report import outcome_label
    from pipeline.score import score_alliance, score_outcome

    cfg = params["ruptures"]
    min_cell = int(params["report"]["min_cell"])
    model_settings = dict(params.get("model") or {})
    conf = float(model_settings.get("conf_level", 0.95))
    criteria = load_criteria(cfg)
    rules = load_rules(cfg)
    _check_settings(cfg, [c.name for c in criteria])
    alliance_inst, outcome_inst = instruments
    alliance, outcome, clients = _read(validated)

    scored, _ = score_alliance(alliance, alliance_inst)
    series = alliance_series(scored, [str(s) for s in cfg.get("scales", ["total"])])
    reliability = scale_reliability(
        alliance, alliance_inst,
        which=next((c.reliability for c in criteria if c.kind == "rci"), "alpha"),
        override=cfg.get("reliability_override") or {})
    episodes, applied = detect_episodes(series, criteria, rules, reliability)
    write_csv(episodes, episodes_out)
    n_series = len(applied[["client_id", "rater", "scale"]].drop_duplicates())
    _log(f"{len(episodes)} episodes in {n_series} series under {len(criteria)} criteria; "
         f"row-level table: {episodes_out}")

    has_outcome = outcome is not None and outcome_inst is not None
    if outcome is not None and outcome_inst is not None:
        o_scored, _ = score_outcome(outcome, outcome_inst, higher_is_better=bool(
            params["instruments"].get("outcome_higher_is_better", True)))
        wellbeing = o_scored[["client_id", "session", "wellbeing"]]
    else:
        wellbeing = pd.DataFrame({"client_id": pd.Series(dtype=str),
                                  "session": pd.Series(dtype="int64"),
                                  "wellbeing": pd.Series(dtype=float)})

    # prevalence, lengths, timing, agreement and course are protected together: the
    # others break prevalence's counts down (pipeline.ruptures.summarise.linked_margins).
    linked = S.published(episodes, applied, series, wellbeing, criteria, rules,
                         cfg.get("timing_bins", [2, 5, 9]), min_cell, conf,
                         int(cfg["course"]["before"]), int(cfg["course"]["after"]))
    out: dict[str, pd.DataFrame] = {
        "thresholds": S.thresholds_table(applied, criteria, reliability, min_cell),
        "prevalence": linked["prevalence"],
        "lengths": linked["lengths"],
        "timing": linked["timing"],
        "agreement": linked["agreement"],
        "detectability": S.detectability(applied, criteria, rules, min_cell),
        "course": linked["course"],
    }

    # The two figures need only these tables: drawn in a forked process while this one
    # fits the models and runs the detection benchmark (1.4 s of drawing on another core).
    labels = {c.name: c.label for c in criteria}
    fig_crit = str(cfg.get("figure_criterion", criteria[0].name))
    figures_done = _meanwhile(_draw_figures, out["prevalence"], out["course"], fig_crit,
                              labels.get(fig_crit, ""), figures_dir, has_outcome,
                              outcome_label(params, escaped=False))

    # --- outcome ---------------------------------------------------------------------
    ocfg = cfg["outcome"]
    models, coefs, groups_out, corr = [], [], [], []
    for crit in criteria:
        groups = O.client_groups(episodes, applied, crit.name)
        data = O.change_data(groups, wellbeing)
        groups_out.append(O.group_table(data, groups, crit.name, min_cell))
        formula, simplification, reason = O.model_plan(data, str(ocfg["formula"]), min_cell)
        if not has_outcome:
            reason = "no outcome file: wellbeing change cannot be computed"
        fit = (O.MixedFit("not estimable", reason, n_obs=len(data)) if reason else
               O.fit_mixed(data, formula, ocfg["random"], model_settings))
        models.append({"criterion": crit.name, "model": f"outcome_{crit.name}",
                       "formula": formula, "random": str(ocfg["random"].get("formula", "")),
                       "status": fit.status, "reason": fit.reason,
                       "simplification": simplification, "n_clients": fit.n_obs,
                       "n_therapists": fit.n_groups,
                       **{f"var_{k}": v for k, v in fit.variances.items()}})
        if not fit.coefficients.empty:
            coefs.append(fit.coefficients.assign(criterion=crit.name, status=fit.status))
        r = O.repair_correlation(data, float(ocfg["reference_r"]),
                                 tuple(ocfg["reference_interval"]), conf, min_cell)
        corr.append({"criterion": crit.name, **r})
        _log(f"outcome model ({crit.name}): {fit.status}" + (f": {fit.reason}" if fit.reason
                                                              else ""))
    out["outcome_models"] = _blank_small(pd.DataFrame(models), ["n_clients"], min_cell)
    out["outcome_groups"] = pd.concat(groups_out, ignore_index=True)
    out["outcome_coefficients"] = (pd.concat(coefs, ignore_index=True) if coefs else
                                   pd.DataFrame(columns=["criterion", "term", "estimate"]))
    out["repair_correlation"] = pd.DataFrame(corr)

    # --- endings -----------------------------------------------------------------------
    total = series[(series["scale"] == "total") & (series["rater"] == "client")]
    out["endings_counts"] = E.ending_counts(clients, min_cell)
    out["last_session"] = E.last_session(total, min_cell, conf)
    has_ending = clients is not None and "ending" in clients.columns
    if has_ending:
        assert clients is not None
        pp = E.person_period(total, clients)
        status, reason, ecoefs = E.fit_endings(pp, str(cfg["endings"]["formula"]), conf,
                                               min_cell)
        out["endings_hazard"] = E.hazard_table(pp, min_cell)
    else:
        status, reason, ecoefs = ("not estimable", "no ending column in the clients file: how "
                                  "therapy ended is unknown", pd.DataFrame())
        pp = pd.DataFrame()
    out["endings_model"] = pd.DataFrame([{
        "model": "unplanned_ending", "formula": str(cfg["endings"]["formula"]),
        "status": status, "reason": reason, "n_person_periods": len(pp),
        "n_in_model": int(pp["alliance_within"].notna().sum()) if len(pp) else 0,
        "n_clients": int(pp["client_id"].nunique()) if len(pp) else 0,
        "n_events": int(pp["event"].sum()) if len(pp) else 0,
        "n_events_in_model": (int(pp.loc[pp["alliance_within"].notna(), "event"].sum())
                              if len(pp) else 0)}])
    out["endings_model"] = _blank_small(out["endings_model"], ["n_clients", "n_events",
                                                               "n_events_in_model"], min_cell)
    if not ecoefs.empty:
        out["endings_coefficients"] = ecoefs
    _log(f"endings model: {status}" + (f": {reason}" if reason else ""))

    truth = _truth_episodes(params)
    if truth is not None:
        out["recovery"] = recovery(episodes, truth, series, criteria)
    # How the rules behave on simulated data with known one-session drops (the simulate:
    # settings, whatever the data): recall, precision and false episodes per criterion.
    out["detection_benchmark"] = detection_benchmark(params)
    _log("detection benchmark on simulated scenarios done")

    # Counts of clients the summaries carry beside their own suppressed counts (how many
    # clients have a series, or enter a correlation): blanked below min_cell as well (a
    # criterion with one client with an episode published n_clients 1).
    for name, counts in (("thresholds", ["n_series"]), ("prevalence", ["n_series"]),
                         ("agreement", ["n_clients"]), ("repair_correlation", ["n_clients"])):
        if name in out and set(counts) <= set(out[name].columns):
            out[name] = _blank_small(out[name], counts, min_cell)

    results.mkdir(parents=True, exist_ok=True)
    for stale in results.glob("*.csv"):
        if stale.stem not in out:
            stale.unlink()
    for name, table in out.items():
        write_csv(table, results / f"{name}.csv")
    write_json({"reliability": reliability,
                "criteria": [c.name for c in criteria],
                "simulated": bool(params["data"].get("simulated", False)),
                "has_ending": bool(has_ending)}, results / "meta.json")
    _log(f"wrote {results}/ ({len(out)} tables)")

    figures_done()
    _log(f"figures in {figures_dir}/")


def _draw_figures(prevalence: pd.DataFrame, course: pd.DataFrame, criterion: str,
                  label: str, figures_dir: Path, with_outcome: bool = True,
                  outcome_label: str = "wellbeing") -> None:
    """The stage's two figures (PNG, SVG and the CSV of what is drawn); without an outcome
    the course figure has the alliance panel only."""
    from pipeline import figures
    from pipeline.ruptures import plots

    figures.apply_style()
    made = [("ruptures_prevalence", plots.prevalence(prevalence)),
            ("ruptures_course", plots.course(course, criterion, label,
                                             n_episodes=plots.episodes_found(prevalence,
                                                                             criterion),
                                             with_outcome=with_outcome,
                                             outcome_label=outcome_label))]
    for name, (fig, data) in made:
        figures.save_figure(fig, data, figures_dir, name)


def _meanwhile(func: Callable[..., None], *args: Any) -> Callable[[], None]:
    """Start ``func(*args)`` in a process forked from this one; return the function that
    waits for it and raises if it failed (its traceback is printed by the child).

    The child has the parent's memory (imports, tables): nothing is pickled, and what it
    writes is what this process would write. It ends with the stage even on kill -9
    (``pipeline.parallel._die_with_parent``). Where fork is unavailable (not Linux),
    ``func`` runs here and now.
    """
    from pipeline.parallel import _can_fork

    if not _can_fork():
        func(*args)
        return lambda: None
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(
        target=_child, args=(func, args, os.getpid()), daemon=True)
    child.start()

    def wait() -> None:
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"ruptures: {func.__name__} failed in its worker process "
                               f"(exit code {child.exitcode}; its traceback is above)")
    return wait


def _child(func: Callable[..., None], args: tuple[Any, ...], parent: int) -> None:
    from pipeline.parallel import _die_with_parent

    _die_with_parent(parent)
    func(*args)
