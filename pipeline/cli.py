"""Thin command-line entry: one sub-command per pipeline step, called by ``dvc.yaml``.

Usage: ``python -m pipeline <step> [--params params.yaml]``. Each step

1. finishes a promotion of an earlier run that was interrupted after its commit point
   (:func:`pipeline.promote.recover`);
2. reads ``params.yaml`` and checks every setting against ``pipeline/params_schema.yaml``
   (and, for the steps that read data, that the files named exist) before any data are
   read;
3. calls the step's module and writes its outputs atomically into the staging area
   ``build/`` (``results/`` and ``reports/`` are written only by ``promote``, the last
   stage, so a failure anywhere leaves the last good run's outputs byte for byte as they
   were).

Every error a user can cause (:class:`pipeline.errors.PipelineError`: bad data, settings,
instrument files) is printed without a traceback and the step exits with status 2,
having written nothing.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from pipeline.config import load_params
from pipeline.errors import PipelineError
from pipeline.promote import STAGING
from pipeline.steplog import describe_files, log, phase

INTERIM = Path("data/interim")
VALIDATED = INTERIM / "validated"
SCORED = INTERIM / "scored.csv"
#: Stages write results and reports into the staging area; ``promote`` publishes them.
RESULTS = STAGING / "results"
REPORTS = STAGING / "reports"
#: Steps that read input data: they also check that the files named in params.yaml exist.
READS_DATA = frozenset({"inputs", "validate", "prepare"})


def write_csv(frame: Any, path: str | Path, **kwargs: Any) -> Path:
    """:func:`pipeline.outputs.write_csv`, imported when first used: ``inputs`` and
    ``promote`` need no pandas, and its import (0.6 s) was most of their run."""
    from pipeline.outputs import write_csv as write

    return write(frame, path, **kwargs)


def _instruments(params: dict[str, Any]) -> tuple[Any, Any]:
    """The alliance instrument, and the outcome instrument (None without an outcome file)."""
    from pipeline.instruments import load_instrument

    cfg = params["instruments"]
    paths = cfg.get("paths") or []
    outcome = (load_instrument(cfg["outcome"], paths)
               if params["data"].get("outcome") and cfg.get("outcome") else None)
    return load_instrument(cfg["alliance"], paths), outcome


def _therapist_form(params: dict[str, Any]) -> Any:
    from pipeline.score import therapist_form

    return therapist_form(params["instruments"])


def cmd_simulate(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.simulation.dataset import simulate_dataset, write_simulated

    data = simulate_dataset(params["simulate"])
    for path in write_simulated(data, args.out):
        log("simulate", f"wrote {path}")
    log("simulate", "counts: " + ", ".join(f"{k} {v}" for k, v in data.truth["counts"].items()))


def cmd_inputs(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.inputs import write_manifest

    files = [params["data"].get(k) for k in ("alliance", "outcome", "clients")]
    with phase("inputs", f"hashing {describe_files([f for f in files if f])}"):
        manifest = write_manifest(params, args.out)
    given = [f"{role}={entry['path']}" for role, entry in manifest["data"].items() if entry]
    absent = [role for role, entry in manifest["data"].items() if not entry]
    log("inputs", "hashed " + ", ".join(given)
        + (f"; not given: {', '.join(absent)}" if absent else "") + f"; wrote {args.out}")


def cmd_validate(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.inputs import check_unchanged
    from pipeline.validate import validate_inputs

    if args.manifest:
        check_unchanged(params, args.manifest)
    alliance_inst, outcome_inst = _instruments(params)
    paths = {k: params["data"].get(k) or None for k in ("alliance", "outcome", "clients")}
    log("validate", "checking " + ", ".join(f"{k}={v}" for k, v in paths.items() if v))
    sizes = describe_files([v for v in paths.values() if v])
    with phase("validate", f"reading and checking {sizes}"):
        checked = validate_inputs(paths, alliance_inst, outcome_inst,
                                  params.get("validation", {}),
                                  therapist_instrument=_therapist_form(params),
                                  progress=lambda message: log("validate", message))
    for warning in checked.warnings:
        log("validate", f"WARNING: {warning}")
    out = Path(args.out)
    write_csv(checked.alliance, out / "alliance.csv", digits=None)
    if checked.outcome is not None:
        write_csv(checked.outcome, out / "outcome.csv", digits=None)
    else:
        (out / "outcome.csv").unlink(missing_ok=True)
    if checked.clients is not None:
        write_csv(checked.clients, out / "clients.csv", digits=None)
    else:
        (out / "clients.csv").unlink(missing_ok=True)
    write_csv(checked.checks, out / "checks.csv")
    if checked.k_anonymity is not None:
        write_csv(checked.k_anonymity, out / "k_anonymity.csv")
    else:
        (out / "k_anonymity.csv").unlink(missing_ok=True)
    n_outcome = "no" if checked.outcome is None else str(len(checked.outcome))
    log("validate", f"ok: {len(checked.alliance)} alliance rows, {n_outcome} outcome "
                    f"rows; wrote {out}")


def _read_validated(folder: Path) -> tuple[Any, Any, Any]:
    import pandas as pd

    dtype = {"client_id": str, "therapist_id": str}
    alliance = pd.read_csv(folder / "alliance.csv", dtype=dtype)
    outcome_file = folder / "outcome.csv"
    outcome = pd.read_csv(outcome_file, dtype=dtype) if outcome_file.is_file() else None
    clients_file = folder / "clients.csv"
    clients = pd.read_csv(clients_file, dtype=dtype) if clients_file.is_file() else None
    return alliance, outcome, clients


def cmd_score(params: dict[str, Any], args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.describe import suppress_counts
    from pipeline.disclosure import across
    from pipeline.psychometrics import (
        floor_ceiling,
        publishable_reliability,
        reliability,
        subscale_correlations,
    )
    from pipeline.score import as_form, merge_scores, score_outcome, score_raters, unscorable

    alliance_inst, outcome_inst = _instruments(params)
    therapist_inst = _therapist_form(params)
    alliance, outcome, _ = _read_validated(Path(args.validated))
    log("score", f"scoring {alliance_inst.key} ({len(alliance)} rows)"
                 + (f" and {outcome_inst.key} ({len(outcome)} rows)"
                    if outcome is not None and outcome_inst is not None else "; no outcome"))
    n_rows = len(alliance) + (0 if outcome is None else len(outcome))
    with phase("score", f"scoring {n_rows} rows"):
        a_all, a_summary = score_raters(alliance, alliance_inst, therapist_inst)
    summaries = [a_summary.drop(columns="rater").assign(
        scale=a_summary["scale"].where(a_summary["rater"] == "client",
                                       a_summary["scale"] + " (" + a_summary["rater"] + ")"))]
    # The analysis plan models client-rated alliance; therapist ratings are scored with
    # their own key and described (describe: rater_summary, rater_agreement).
    others = a_all["rater"] != "client"
    if others.any():
        log("score", f"{int(others.sum())} therapist-rated alliance rows scored with "
                     f"{therapist_inst.key if therapist_inst else alliance_inst.key}; "
                     "left out of the models")
    a_scored = a_all[~others].drop(columns="rater")
    if outcome is not None and outcome_inst is not None:
        o_scored, o_summary = score_outcome(
            outcome, outcome_inst,
            higher_is_better=bool(params["instruments"].get("outcome_higher_is_better", True)),
        )
        unscorable(a_scored, o_scored, params["data"], alliance_inst, outcome_inst)
        scored = merge_scores(a_scored, o_scored)
        summaries.append(o_summary)
    else:
        unscorable(a_scored, None, params["data"], alliance_inst, None)
        scored = a_scored.sort_values(["client_id", "session"], kind="stable").reset_index(
            drop=True)
    write_csv(scored, args.out, digits=None)
    results = Path(args.results)
    min_cell = int(params["report"]["min_cell"])
    summary = pd.concat(summaries, ignore_index=True)
    counts = ["n_rows", "n_complete", "n_prorated", "n_missing"]
    # complete + prorated + missing = rows, shown beside them: secondary suppression.
    write_csv(suppress_counts(summary, {c: [] for c in counts}, min_cell,
                              margins=across(summary, counts[1:])),
              results / "scoring.csv")
    if set(alliance_inst.item_columns) <= set(alliance.columns):
        min_n = int(params["psychometrics"]["min_n_per_session"])
        raters = (alliance["rater"] if "rater" in alliance.columns
                  else pd.Series("client", index=alliance.index))
        rel, fc = [], []
        for rater, rows in alliance.groupby(raters, sort=True):
            inst = alliance_inst
            if rater == "therapist" and therapist_inst is not None:
                inst, rows = therapist_inst, as_form(rows, alliance_inst, therapist_inst)
            rel.append(reliability(rows, inst, min_n_per_session=min_n))
            fc.append(floor_ceiling(rows, inst))
        write_csv(publishable_reliability(pd.concat(rel, ignore_index=True), min_cell),
                  results / "reliability.csv")
        write_csv(suppress_counts(pd.concat(fc, ignore_index=True),
                                  {"n": [], "n_floor": ["pct_floor"],
                                   "n_ceiling": ["pct_ceiling"]}, min_cell),
                  results / "floor_ceiling.csv")
    correlations = subscale_correlations(scored)
    write_csv(suppress_counts(correlations, {"n_clients": ["r", "n_obs"]}, min_cell),
              results / "subscale_correlations.csv")
    log("score", f"wrote {args.out} ({len(scored)} client x session rows) and {results}/")


def cmd_describe(params: dict[str, Any], args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.describe import (
        alliance_outcome_correlations,
        attendance,
        check_conf_level,
        data_counts,
        distributions,
        publishable_checks,
        publishable_k_anonymity,
        rater_agreement,
        rater_summary,
        trajectories,
    )
    from pipeline.report import outcome_higher_worse
    from pipeline.score import score_raters

    conf = check_conf_level(params["model"].get("conf_level", 0.95))
    alliance, outcome, clients = _read_validated(Path(args.validated))
    scored = pd.read_csv(args.scored, dtype={"client_id": str, "therapist_id": str})
    min_cell = int(params["report"]["min_cell"])
    out = Path(args.out)
    write_csv(data_counts(alliance, outcome, scored, clients, min_cell), out / "data_counts.csv")
    write_csv(attendance(scored, min_cell), out / "attendance.csv")
    write_csv(trajectories(scored, min_cell, conf), out / "trajectories.csv")
    write_csv(distributions(scored, min_cell), out / "distributions.csv")
    low, high = params["report"]["plausible_r"]
    alliance_inst, _ = _instruments(params)
    write_csv(alliance_outcome_correlations(scored, (float(low), float(high)), min_cell,
                                            higher_worse=outcome_higher_worse(params)),
              out / "alliance_outcome_correlations.csv")
    raters, _ = score_raters(alliance, alliance_inst, _therapist_form(params))
    write_csv(rater_summary(raters, min_cell), out / "rater_summary.csv")
    write_csv(rater_agreement(raters, min_cell, conf), out / "rater_agreement.csv")
    folder = Path(args.validated)
    write_csv(publishable_checks(pd.read_csv(folder / "checks.csv"), min_cell),
              out / "checks.csv")
    k_file = folder / "k_anonymity.csv"
    if k_file.is_file():
        k_table = pd.read_csv(k_file, dtype=str, keep_default_na=False).astype(
            {"n_clients": "int64"})
        write_csv(publishable_k_anonymity(k_table, min_cell), out / "k_anonymity.csv")
    else:
        (out / "k_anonymity.csv").unlink(missing_ok=True)
    log("describe", f"wrote {out}/: data_counts, attendance, trajectories, distributions, "
                    "raters")


def cmd_fit(params: dict[str, Any], args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.diagnostics import diagnostics
    from pipeline.models import fit_all, settings_from, write_results

    scored = pd.read_csv(args.scored, dtype={"client_id": str, "therapist_id": str})
    clients_file = Path(args.validated) / "clients.csv"
    clients = (pd.read_csv(clients_file, dtype={"client_id": str})
               if clients_file.is_file() else None)
    settings = settings_from(params["model"])   # a settings error stops before any output
    # no diagnostic bin and no covariate level of a model holds fewer clients
    min_cell = int(params["report"]["min_cell"])
    log("fit", f"fitting models on {len(scored)} rows ({settings['engine']} engine)")
    with phase("fit", "fitting the models of pipeline/models.yaml"):
        fits = fit_all(scored, clients, settings, min_level_clients=min_cell)
    write_results(fits, args.out)
    wanted = set(settings.get("diagnostics_for") or ["primary"])
    diag = pd.concat([diagnostics(f, min_per_bin=min_cell) for f in fits if f.name in wanted],
                     ignore_index=True)
    write_csv(diag, Path(args.out) / "diagnostics.csv")
    for f in fits:  # times go to stderr only: tracked outputs stay byte-identical
        log("fit", f"{f.name}: {f.status} in {f.seconds:.2f} s")
    log("fit", f"wrote {args.out}/")


def cmd_publish(params: dict[str, Any], args: argparse.Namespace) -> None:
    # The APA tables. The figures are drawn by the report cells that show them
    # (pipeline.figures.show, saved by the render step into reports/figures/).
    import pandas as pd

    from pipeline import tables
    from pipeline.report import outcome_label

    results, tabdir = Path(args.results), Path(args.tables)

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(results / name)

    stats = read("fit_statistics.csv").set_index("model")
    # only models whose numbers may be read reach the tables (results contract)
    readable = set(stats.index[stats["status"].isin(["fitted", "singular"])])
    coefs = read("coefficients.csv")
    coefs = coefs[coefs["model"].isin(readable)]
    levels_file, change_file = results / "alliance_levels.csv", results / "alliance_change.csv"
    levels = read("alliance_levels.csv") if levels_file.is_file() else pd.DataFrame()
    change = read("alliance_change.csv") if change_file.is_file() else pd.DataFrame()
    conf = float(params["model"].get("conf_level", 0.95))
    df_method = "; ".join(sorted(coefs["df_method"].dropna().unique()))
    prim = stats.loc["primary"] if "primary" in stats.index else None
    if prim is not None and "primary" in readable:
        sizes = stats.loc[["primary"], ["n_obs", "n_clients", "n_therapists"]]
        n_obs, n_clients, n_therapists = (int(v) for v in sizes.to_numpy(dtype=float)[0])
        note = (f"N = {n_obs:,} sessions, {n_clients:,} clients, "
                f"{n_therapists:,} therapists. ")
    else:
        reason = "" if prim is None else str(prim.get("reason") or prim.get("warning") or "")
        note = f"Primary model {'not fitted' if prim is None else prim['status']}: {reason}. "
    note += (f"b = unstandardised coefficient; CI = confidence interval; "
             f"p-values: {df_method}.")
    if params["data"].get("simulated", False):
        note += " SIMULATED data."
    if "primary" in readable:
        tables.write_table(tables.coefficient_table(coefs, ["primary"], conf), tabdir,
                           "primary", f"Table 1. Primary model: alliance and "
                           f"{outcome_label(params, escaped=False)}, within and between "
                           "clients", note)
    others = [m for m in dict.fromkeys(coefs["model"]) if m != "primary"]
    if others:
        tables.write_table(tables.coefficient_table(coefs, others, conf), tabdir, "secondary",
                           "Table 2. Secondary and sensitivity models: fixed effects", note)
    varcomp = read("variance_components.csv")
    tables.write_table(tables.variance_table(varcomp[varcomp["model"].isin(readable)]), tabdir,
                       "variance_components", "Table 3. Variance components", note)
    tables.write_table(tables.fit_table(read("fit_statistics.csv")), tabdir, "fit_statistics",
                       "Table 4. Model fit", note + " LL = log-likelihood of the fit as "
                       "specified (REML unless the model is ML) and of its ML refit; AIC and "
                       "BIC from the ML refit; R\u00b2 after Nakagawa & Schielzeth (2013) and "
                       "Johnson (2014).")
    simulated = " SIMULATED data." if params["data"].get("simulated", False) else ""
    if len(levels) and levels["status"].isin(["fitted", "singular"]).any():
        tables.write_table(
            tables.alliance_levels_table(levels), tabdir, "alliance_levels",
            "Table 5. Where the alliance lives: shares of each subscale's variance",
            "Three-level models without predictors (alliance_levels_* in "
            "pipeline/models.yaml), client ratings. Shares: therapist, client (within "
            "therapist) and session (residual) variance over their sum. Therapist means: "
            "mean \u00b1 1.96 SD of the therapist intercepts, the range of the middle 95% of "
            "therapists' mean ratings. \u2014 = the level is not in the model (see the models "
            "report)." + simulated)
    if len(change) and change["status"].isin(["fitted", "singular"]).any():
        tables.write_table(
            tables.alliance_change_table(change), tabdir, "alliance_change",
            "Table 6. The alliance over sessions: change per session",
            "Growth models of each subscale on time = session \u2212 1 (alliance_time_* in "
            "pipeline/models.yaml), client ratings; random parts as the primary model's, "
            "after the pre-fit checks. First session: expected score at time 0. Clients' own "
            "slopes: change per session \u00b1 1.96 SD of the client slopes (middle 95%); "
            "\u2014 = no client slope in the model. p-values: " + df_method + "."
            + simulated)
    log("publish", f"tables in {tabdir}/ (html, tex, md)")


def cmd_bootstrap(params: dict[str, Any], args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.models.bootstrap import bootstrap_model

    scored = pd.read_csv(args.scored, dtype={"client_id": str, "therapist_id": str})
    clients_file = Path(args.validated) / "clients.csv"
    clients = (pd.read_csv(clients_file, dtype={"client_id": str})
               if clients_file.is_file() else None)
    table = bootstrap_model(scored, clients, params)
    if "note" in table.attrs:
        log("bootstrap", f"no intervals: {table.attrs['note']}")
    out = Path(args.out)
    write_csv(table, out)
    log("bootstrap", f"wrote {out}")


def cmd_speccurve(params: dict[str, Any], args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.models.fitting import settings_from
    from pipeline.parallel import execution_settings
    from pipeline.speccurve import curve_settings, specification_curve

    settings = curve_settings(params.get("specification_curve"))
    fit_settings = settings_from(params.get("model"))
    execution = execution_settings(params.get("parallel"))
    scored = pd.read_csv(args.scored, dtype={"client_id": str, "therapist_id": str})
    table = specification_curve(scored, settings, fit_settings, execution,
                                min_clients=int(params["report"]["min_cell"]))
    write_csv(table, Path(args.out))
    log("speccurve", f"{table['spec'].nunique()} specifications; wrote {args.out}")


def cmd_power(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.power.run import power_stage

    tables = power_stage(params, Path(args.results), Path(args.checkpoint), log=log,
                         scored=Path(args.scored))
    for name, frame in tables.items():
        write_csv(frame, Path(args.results) / f"{name}.csv")
        log("power", f"wrote {Path(args.results) / name}.csv")
    # The checkpoint is for resuming an interrupted run; once the tables are written it
    # has done its job, and a forced rerun (`dvc repro -f`, `make verify`) must refit.
    Path(args.checkpoint).unlink(missing_ok=True)


def cmd_ruptures(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.ruptures.stage import run

    run(params, Path(args.validated), Path(args.episodes), Path(args.out), Path(args.figures),
        _instruments(params))


def cmd_render(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.report import render_many

    # One notebook: --out is the HTML file; several: --out is a folder of <name>.html.
    sources = [Path(n) for n in args.notebook]
    if len(sources) == 1 and str(args.out).endswith(".html"):
        jobs = [(sources[0], Path(args.out))]
    else:
        jobs = [(src, Path(args.out) / f"{src.stem}.html") for src in sources]
    start = time.perf_counter()
    log("render", "executing " + ", ".join(str(s) for s in sources)
        + f" on {args.results_root}/results")
    render_many(jobs, {"params_file": args.params}, cwd=Path.cwd(),
                progress=lambda line: log("render", line), results_root=args.results_root,
                figures_dir=args.figures or None)
    log("render", f"{len(jobs)} report(s) in {time.perf_counter() - start:.0f} s")


def cmd_index(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.index import build_index, load_descriptions, report_sources
    from pipeline.outputs import atomic_open

    desc = load_descriptions()
    sources = report_sources(args.notebooks, list(desc.get("reports_order") or []))
    page = build_index(Path.cwd(), params, sources, args.figures, args.tables, desc,
                       more_figures=args.more_figures)
    with atomic_open(args.out) as fh:
        fh.write(page)
    log("index", f"wrote {args.out} ({len(sources)} reports)")


def cmd_promote(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.promote import TARGETS, promote

    if args.front_page:
        _steps(params, args, [("index", ["--out", str(Path(args.staging) / "reports" /
                                                      "index.html")])])
    start = time.perf_counter()
    with phase("promote", f"promoting {args.staging}/ into "
               + " and ".join(f"{t}/" for t in TARGETS), heartbeat=10):
        counts = promote(args.staging, ".", TARGETS)
    log("promote", "replaced " + ", ".join(f"{t}/ ({n} files)" for t, n in counts.items())
        + f" from {args.staging}/ in {time.perf_counter() - start:.1f} s")


def cmd_seed_staging(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.promote import seed_staging

    seeded = seed_staging(args.staging, ".")
    if seeded:
        log("seed-staging", f"copied {', '.join(seeded)} into {args.staging}/ (DVC checks "
                            "each against dvc.lock and reruns what does not match)")


def _steps(params: dict[str, Any], args: argparse.Namespace,
           steps: Sequence[tuple[str, Sequence[str]]]) -> None:
    """Run several steps in this process, each with its own defaults plus ``extra`` args.

    The DVC stages ``prepare`` and ``report`` are such compositions: each step stays a
    command of its own (``python -m pipeline score``), but one process and one DVC stage
    instead of three save their start-up (about 1.5 s each: Python, pandas, DVC's checks).
    """
    parser = build_parser()
    for name, extra in steps:
        sub = parser.parse_args([name, "--params", args.params, *extra])
        COMMANDS[name][0](params, sub)


def cmd_prepare(params: dict[str, Any], args: argparse.Namespace) -> None:
    manifest = ["--manifest", args.manifest] if args.manifest else []
    _steps(params, args, [("validate", manifest), ("score", []), ("describe", [])])


def cmd_report(params: dict[str, Any], args: argparse.Namespace) -> None:
    # publish (the tables) runs in a forked process while the notebooks' kernels start
    # and run: the notebooks read results/, never what publish writes. The figures are
    # saved by the notebooks themselves, each by the cell that shows it.
    from pipeline.parallel import alongside

    parser = build_parser()
    publish = parser.parse_args(["publish", "--params", args.params])
    render = parser.parse_args(["render", "--params", args.params, "--out", str(REPORTS),
                                "--figures", str(REPORTS / "figures"),
                                "--notebook", *args.notebook])
    with alongside(functools.partial(cmd_publish, params, publish)):
        cmd_render(params, render)


COMMANDS: dict[str, tuple[Callable[[dict[str, Any], argparse.Namespace], None], str]] = {
    "simulate": (cmd_simulate, "write the simulated default data set"),
    "inputs": (cmd_inputs, "hash the input files named in params.yaml into a manifest"),
    "prepare": (cmd_prepare, "validate, score and describe in one process (a DVC stage)"),
    "validate": (cmd_validate, "read and validate the input files"),
    "score": (cmd_score, "score the instruments; psychometrics"),
    "describe": (cmd_describe, "aggregate description of the data"),
    "fit": (cmd_fit, "fit the mixed-effects models"),
    "publish": (cmd_publish, "APA tables (HTML, LaTeX, Markdown)"),
    "ruptures": (cmd_ruptures, "rupture-repair episodes, outcome and endings (aggregates)"),
    "bootstrap": (cmd_bootstrap, "parametric bootstrap of variance components, ICC and R2"),
    "speccurve": (cmd_speccurve, "specification curve over the analytic choices"),
    "power": (cmd_power, "simulation-based power over the designs in params.yaml"),
    "report": (cmd_report, "publish, render and index in one process (a DVC stage)"),
    "render": (cmd_render, "render a notebook to an HTML report"),
    "index": (cmd_index, "front page reports/index.html: every report, figure and table"),
    "promote": (cmd_promote, "replace results/ and reports/ by the staged run, all or nothing"),
    "seed-staging": (cmd_seed_staging, "fill a missing build/ from results/ and reports/"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--params", default="params.yaml", help="settings file")
        if name == "simulate":
            p.add_argument("--out", default="data/simulated")
        if name == "inputs":
            p.add_argument("--out", default="data/interim/inputs.json")
        if name == "prepare":
            p.add_argument("--manifest", default=None,
                           help="input manifest written by the inputs step (see validate)")
        if name == "report":
            p.add_argument("--notebook", required=True, nargs="+",
                           help="jupytext .py sources of the reports, in order")
        if name == "validate":
            p.add_argument("--out", default=str(VALIDATED))
            p.add_argument("--manifest", default=None,
                           help="input manifest written by the inputs step (dvc.yaml passes "
                                "it): stop if an input changed since it was hashed")
        if name == "ruptures":
            p.add_argument("--validated", default=str(VALIDATED))
            p.add_argument("--episodes", default=str(INTERIM / "episodes.csv"))
            p.add_argument("--out", default=str(RESULTS / "ruptures"))
            p.add_argument("--figures", default=str(REPORTS / "ruptures"))
        if name in ("score", "describe", "fit", "bootstrap"):
            p.add_argument("--validated", default=str(VALIDATED))
        if name == "score":
            p.add_argument("--out", default=str(SCORED))
            p.add_argument("--results", default=str(RESULTS / "scoring"))
        if name in ("describe", "fit", "bootstrap", "speccurve", "power"):
            p.add_argument("--scored", default=str(SCORED))
        if name == "bootstrap":
            p.add_argument("--out", default=str(RESULTS / "bootstrap.csv"))
        if name == "speccurve":
            p.add_argument("--out", default=str(RESULTS / "specification_curve.csv"))
        if name == "describe":
            p.add_argument("--out", default=str(RESULTS / "describe"))
        if name == "fit":
            p.add_argument("--out", default=str(RESULTS))
        if name == "publish":
            p.add_argument("--results", default=str(RESULTS))
            p.add_argument("--tables", default=str(REPORTS / "tables"))
        if name == "index":
            p.add_argument("--notebooks", default="notebooks")
            p.add_argument("--figures", default=str(REPORTS / "figures"))
            p.add_argument("--more-figures", nargs="*", default=[str(REPORTS / "ruptures")],
                           help="other figure folders in reports/ (default: the ruptures "
                                "stage's)")
            p.add_argument("--tables", default=str(REPORTS / "tables"))
            p.add_argument("--out", default=str(REPORTS / "index.html"))
        if name == "power":
            p.add_argument("--results", default=str(RESULTS))
            p.add_argument("--checkpoint", default=str(INTERIM / "power" / "replicates.jsonl"),
                           help="finished replicates, kept so an interrupted run resumes")
        if name == "render":
            p.add_argument("--notebook", required=True, nargs="+",
                           help="jupytext .py source(s), rendered in one process")
            p.add_argument("--out", required=True,
                           help="HTML file to write (one notebook) or folder (several)")
            p.add_argument("--results-root", default=str(STAGING),
                           help="folder whose results/ the notebooks read")
            p.add_argument("--figures", default=None,
                           help="folder where the reports save the figures they show (PNG, "
                                "SVG, CSV); the report step passes build/reports/figures")
        if name in ("promote", "seed-staging"):
            p.add_argument("--staging", default=str(STAGING))
        if name == "promote":
            p.add_argument("--front-page", action="store_true",
                           help="write the front page (the index step) into the staging "
                                "area first")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one pipeline step; return the process exit status.

    0 on success; 2 (:attr:`PipelineError.exit_status`) for any error the user can fix
    (message on stderr, no traceback, nothing written). Any other exception propagates
    with its traceback; it, too, cannot touch ``results/`` or ``reports/`` (only
    ``promote`` writes there).
    """
    from pipeline.promote import recover
    from pipeline.settings import check_settings

    args = build_parser().parse_args(argv)
    func, _ = COMMANDS[args.command]
    try:
        if recover("."):
            log(args.command, "finished the promotion of an earlier run that was interrupted")
        params = load_params(args.params)
        check_settings(params, check_files=args.command in READS_DATA)
        # One BLAS thread: results must not depend on the machine's core count.
        with threadpool_limits(limits=1):
            func(params, args)
    except PipelineError as exc:
        print(str(exc), file=sys.stderr)
        print(f"[{args.command}] stopped: nothing was written; earlier results and reports "
              "are unchanged.", file=sys.stderr)
        return exc.exit_status
    except FileNotFoundError as exc:
        # A step run by hand before the step that makes its input (DVC orders them).
        if not exc.filename or not _made_by_the_pipeline(Path(str(exc.filename))):
            raise
        print(f"{args.command}: {exc.filename} is missing. It is written by an earlier step "
              "of the pipeline; run `make repro` (or `dvc repro`), which runs the steps in "
              "order, before running this step on its own.", file=sys.stderr)
        print(f"[{args.command}] stopped: nothing was written; earlier results and reports "
              "are unchanged.", file=sys.stderr)
        return PipelineError.exit_status
    return 0


def _made_by_the_pipeline(path: Path) -> bool:
    """Whether ``path`` lies in a folder the pipeline's own steps write (the staging
    area, the row-level intermediates): the user did not name it."""
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return False
    return any(relative.is_relative_to(folder) for folder in (STAGING, INTERIM))
