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
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from pipeline.config import load_params
from pipeline.errors import PipelineError
from pipeline.outputs import write_csv
from pipeline.progress import describe_files, log, phase
from pipeline.promote import STAGING

INTERIM = Path("data/interim")
VALIDATED = INTERIM / "validated"
SCORED = INTERIM / "scored.csv"
#: Stages write results and reports into the staging area; ``promote`` publishes them.
RESULTS = STAGING / "results"
REPORTS = STAGING / "reports"
#: Steps that read input data: they also check that the files named in params.yaml exist.
READS_DATA = frozenset({"inputs", "validate"})


def _instruments(params: dict[str, Any]) -> tuple[Any, Any]:
    from pipeline.instruments import load_instrument

    cfg = params["instruments"]
    paths = cfg.get("paths") or []
    return load_instrument(cfg["alliance"], paths), load_instrument(cfg["outcome"], paths)


def cmd_simulate(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.simulate import simulate, write_simulated

    data = simulate(params["simulate"])
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
                                  params.get("validation", {}))
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
    from pipeline.psychometrics import floor_ceiling, reliability, subscale_correlations
    from pipeline.score import merge_scores, score_alliance, score_outcome

    alliance_inst, outcome_inst = _instruments(params)
    alliance, outcome, _ = _read_validated(Path(args.validated))
    log("score", f"scoring {alliance_inst.key} ({len(alliance)} rows) and "
                 f"{outcome_inst.key} ({0 if outcome is None else len(outcome)} rows)")
    n_rows = len(alliance) + (0 if outcome is None else len(outcome))
    with phase("score", f"scoring {n_rows} rows"):
        a_scored, a_summary = score_alliance(alliance, alliance_inst)
        o_scored, o_summary = score_outcome(
            outcome, outcome_inst,
            higher_is_better=bool(params["instruments"].get("outcome_higher_is_better", True)),
        )
    if "rater" in a_scored.columns:
        # The analysis plan models client-rated alliance; other raters' forms are scored
        # (and counted in the summary) but not matched to the outcome.
        others = a_scored["rater"] != "client"
        log("score", f"{int(others.sum())} alliance rows rated by someone other than the "
                     "client are left out of the models")
        a_scored = a_scored[~others].drop(columns="rater")
    scored = merge_scores(a_scored, o_scored)
    write_csv(scored, args.out, digits=None)
    results = Path(args.results)
    min_cell = int(params["report"]["min_cell"])
    summary = pd.concat([a_summary, o_summary], ignore_index=True)
    write_csv(suppress_counts(summary, {"n_prorated": [], "n_missing": []}, min_cell),
              results / "scoring.csv")
    if set(alliance_inst.item_columns) <= set(alliance.columns):
        min_n = int(params["psychometrics"]["min_n_per_session"])
        write_csv(reliability(alliance, alliance_inst, min_n_per_session=min_n),
                  results / "reliability.csv")
        fc = floor_ceiling(alliance, alliance_inst)
        write_csv(suppress_counts(fc, {"n_floor": ["pct_floor"],
                                       "n_ceiling": ["pct_ceiling"]}, min_cell),
                  results / "floor_ceiling.csv")
    write_csv(subscale_correlations(scored), results / "subscale_correlations.csv")
    log("score", f"wrote {args.out} ({len(scored)} client x session rows) and {results}/")


def cmd_describe(params: dict[str, Any], args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.describe import (
        alliance_outcome_correlations,
        attendance,
        data_counts,
        distributions,
        suppress_counts,
        trajectories,
    )

    alliance, outcome, clients = _read_validated(Path(args.validated))
    scored = pd.read_csv(args.scored, dtype={"client_id": str, "therapist_id": str})
    min_cell = int(params["report"]["min_cell"])
    conf = float(params["model"].get("conf_level", 0.95))
    out = Path(args.out)
    write_csv(data_counts(alliance, outcome, scored, clients), out / "data_counts.csv")
    write_csv(attendance(scored, min_cell), out / "attendance.csv")
    write_csv(trajectories(scored, min_cell, conf), out / "trajectories.csv")
    write_csv(distributions(scored, min_cell), out / "distributions.csv")
    low, high = params["report"]["plausible_r"]
    write_csv(alliance_outcome_correlations(scored, (float(low), float(high))),
              out / "alliance_outcome_correlations.csv")
    folder = Path(args.validated)
    write_csv(pd.read_csv(folder / "checks.csv"), out / "checks.csv")
    k_file = folder / "k_anonymity.csv"
    if k_file.is_file():
        k_table = pd.read_csv(k_file)
        write_csv(suppress_counts(k_table, {"n_clients": []}, min_cell), out / "k_anonymity.csv")
    log("describe", f"wrote {out}/: data_counts, attendance, trajectories, distributions")


def cmd_fit(params: dict[str, Any], args: argparse.Namespace) -> None:
    import pandas as pd

    from pipeline.diagnostics import diagnostics
    from pipeline.model import fit_all, write_results

    scored = pd.read_csv(args.scored, dtype={"client_id": str, "therapist_id": str})
    clients_file = Path(args.validated) / "clients.csv"
    clients = (pd.read_csv(clients_file, dtype={"client_id": str})
               if clients_file.is_file() else None)
    log("fit", f"fitting models on {len(scored)} rows")
    with phase("fit", "fitting the models of pipeline/models.yaml"):
        fits = fit_all(scored, clients, params["model"])
    write_results(fits, args.out)
    wanted = set(params["model"].get("diagnostics_for") or ["primary"])
    diag = pd.concat([diagnostics(f) for f in fits if f.name in wanted], ignore_index=True)
    write_csv(diag, Path(args.out) / "diagnostics.csv")
    log("fit", f"wrote {args.out}/")


def cmd_publish(params: dict[str, Any], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from pipeline import figures, tables

    figures.apply_style()
    results, figdir, tabdir = Path(args.results), Path(args.figures), Path(args.tables)

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(results / name)

    coefs = read("coefficients.csv")
    made = [
        ("trajectories", figures.trajectories(read("describe/trajectories.csv"))),
        ("distributions", figures.distributions(read("describe/distributions.csv"))),
        ("coefficients_within_between", figures.coefficient_plot(coefs)),
        ("predicted_wellbeing", figures.predicted_wellbeing(coefs)),
        ("diagnostics_primary", figures.diagnostics(read("diagnostics.csv"))),
        ("sensitivity", figures.sensitivity(coefs, list(params["report"]["sensitivity_models"]))),
    ]
    if (results / "scoring" / "reliability.csv").is_file():
        made.append(("reliability", figures.reliability(
            read("scoring/reliability.csv"), read("scoring/floor_ceiling.csv"))))
    for name, (fig, data) in made:
        figures.save_figure(fig, data, figdir, name)
        log("publish", f"figure {figdir / name}.png/.svg/.csv")
    stats = read("fit_statistics.csv").set_index("model")
    conf = float(params["model"].get("conf_level", 0.95))
    df_method = "; ".join(sorted(coefs["df_method"].dropna().unique()))
    prim = stats.loc["primary"]
    note = (f"N = {int(prim['n_obs']):,} sessions, {int(prim['n_clients']):,} clients, "
            f"{int(prim['n_therapists']):,} therapists. b = unstandardised coefficient; "
            f"CI = confidence interval; p-values: {df_method}.")
    if params["data"].get("simulated", False):
        note += " SIMULATED data."
    tables.write_table(tables.coefficient_table(coefs, ["primary"], conf), tabdir, "primary",
                       "Table 1. Primary model: alliance and wellbeing, within and between "
                       "clients", note)
    others = [m for m in dict.fromkeys(coefs["model"]) if m != "primary"]
    if others:
        tables.write_table(tables.coefficient_table(coefs, others, conf), tabdir, "secondary",
                           "Table 2. Secondary and sensitivity models: fixed effects", note)
    tables.write_table(tables.variance_table(read("variance_components.csv")), tabdir,
                       "variance_components", "Table 3. Variance components", note)
    tables.write_table(tables.fit_table(read("fit_statistics.csv")), tabdir, "fit_statistics",
                       "Table 4. Model fit", note + " LL = log-likelihood of the fit as "
                       "specified (REML unless the model is ML) and of its ML refit; AIC and "
                       "BIC from the ML refit; R\u00b2 after Nakagawa & Schielzeth (2013) and "
                       "Johnson (2014).")
    log("publish", f"tables in {tabdir}/ (html, tex, md)")


def cmd_render(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.report import render

    start = time.perf_counter()
    log("render", f"executing {args.notebook} on {args.results_root}/results")
    out = render(args.notebook, args.out, {"params_file": args.params}, cwd=Path.cwd(),
                 results_root=args.results_root)
    log("render", f"wrote {out} in {time.perf_counter() - start:.0f} s")


def cmd_promote(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.promote import TARGETS, promote

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


COMMANDS: dict[str, tuple[Callable[[dict[str, Any], argparse.Namespace], None], str]] = {
    "simulate": (cmd_simulate, "write the simulated default data set"),
    "inputs": (cmd_inputs, "hash the input files named in params.yaml into a manifest"),
    "validate": (cmd_validate, "read and validate the input files"),
    "score": (cmd_score, "score the instruments; psychometrics"),
    "describe": (cmd_describe, "aggregate description of the data"),
    "fit": (cmd_fit, "fit the mixed-effects models"),
    "publish": (cmd_publish, "figures (PNG, SVG, CSV) and APA tables (HTML, LaTeX, Markdown)"),
    "render": (cmd_render, "render a notebook to an HTML report"),
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
        if name == "validate":
            p.add_argument("--out", default=str(VALIDATED))
            p.add_argument("--manifest", default=None,
                           help="input manifest written by the inputs step (dvc.yaml passes "
                                "it): stop if an input changed since it was hashed")
        if name in ("score", "describe", "fit"):
            p.add_argument("--validated", default=str(VALIDATED))
        if name == "score":
            p.add_argument("--out", default=str(SCORED))
            p.add_argument("--results", default=str(RESULTS / "scoring"))
        if name in ("describe", "fit"):
            p.add_argument("--scored", default=str(SCORED))
        if name == "describe":
            p.add_argument("--out", default=str(RESULTS / "describe"))
        if name == "fit":
            p.add_argument("--out", default=str(RESULTS))
        if name == "publish":
            p.add_argument("--results", default=str(RESULTS))
            p.add_argument("--figures", default=str(REPORTS / "figures"))
            p.add_argument("--tables", default=str(REPORTS / "tables"))
        if name == "render":
            p.add_argument("--notebook", required=True, help="jupytext .py source")
            p.add_argument("--out", required=True, help="HTML file to write")
            p.add_argument("--results-root", default=str(STAGING),
                           help="folder whose results/ the notebook reads")
        if name in ("promote", "seed-staging"):
            p.add_argument("--staging", default=str(STAGING))
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
    return 0
