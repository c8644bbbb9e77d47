"""Thin command-line entry: one sub-command per pipeline step, called by ``dvc.yaml``.

Usage: ``python -m pipeline <step> [--params params.yaml]``. Each step reads its settings
from ``params.yaml``, calls the step's module, and writes its outputs atomically. A step
that finds bad input prints every problem to stderr and exits with status 2, writing
nothing.
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
from pipeline.outputs import write_csv

INTERIM = Path("data/interim")
VALIDATED = INTERIM / "validated"
SCORED = INTERIM / "scored.csv"
RESULTS = Path("results")


def log(step: str, message: str) -> None:
    """Print a progress line to stderr."""
    print(f"[{step}] {message}", file=sys.stderr, flush=True)


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


def cmd_validate(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.validate import validate_inputs

    alliance_inst, outcome_inst = _instruments(params)
    paths = {k: params["data"].get(k) or None for k in ("alliance", "outcome", "clients")}
    log("validate", "checking " + ", ".join(f"{k}={v}" for k, v in paths.items() if v))
    checked = validate_inputs(paths, alliance_inst, outcome_inst, params.get("validation", {}))
    for warning in checked.warnings:
        log("validate", f"WARNING: {warning}")
    out = Path(args.out)
    write_csv(checked.alliance, out / "alliance.csv", digits=None)
    write_csv(checked.outcome, out / "outcome.csv", digits=None)
    if checked.clients is not None:
        write_csv(checked.clients, out / "clients.csv", digits=None)
    else:
        (out / "clients.csv").unlink(missing_ok=True)
    write_csv(checked.checks, out / "checks.csv")
    if checked.k_anonymity is not None:
        write_csv(checked.k_anonymity, out / "k_anonymity.csv")
    else:
        (out / "k_anonymity.csv").unlink(missing_ok=True)
    log("validate", f"ok: {len(checked.alliance)} alliance rows, {len(checked.outcome)} outcome "
                    f"rows; wrote {out}")


def _read_validated(folder: Path) -> tuple[Any, Any, Any]:
    import pandas as pd

    dtype = {"client_id": str, "therapist_id": str}
    alliance = pd.read_csv(folder / "alliance.csv", dtype=dtype)
    outcome = pd.read_csv(folder / "outcome.csv", dtype=dtype)
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
                 f"{outcome_inst.key} ({len(outcome)} rows)")
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
    from pipeline.models import fit_all, settings_from, write_results

    scored = pd.read_csv(args.scored, dtype={"client_id": str, "therapist_id": str})
    clients_file = Path(args.validated) / "clients.csv"
    clients = (pd.read_csv(clients_file, dtype={"client_id": str})
               if clients_file.is_file() else None)
    settings = settings_from(params["model"])   # a settings error stops before any output
    log("fit", f"fitting models on {len(scored)} rows ({settings['engine']} engine)")
    fits = fit_all(scored, clients, settings)
    write_results(fits, args.out)
    wanted = set(settings.get("diagnostics_for") or ["primary"])
    diag = pd.concat([diagnostics(f) for f in fits if f.name in wanted], ignore_index=True)
    write_csv(diag, Path(args.out) / "diagnostics.csv")
    for f in fits:  # times go to stderr only: tracked outputs stay byte-identical
        log("fit", f"{f.name}: {f.status} in {f.seconds:.2f} s")
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

    stats = read("fit_statistics.csv").set_index("model")
    # only models whose numbers may be read reach figures and tables (results contract)
    readable = set(stats.index[stats["status"].isin(["fitted", "singular"])])
    coefs = read("coefficients.csv")
    coefs = coefs[coefs["model"].isin(readable)]
    made = [
        ("trajectories", figures.trajectories(read("describe/trajectories.csv"))),
        ("distributions", figures.distributions(read("describe/distributions.csv"))),
    ]
    if "primary" in readable:
        made += [
            ("coefficients_within_between", figures.coefficient_plot(coefs)),
            ("predicted_wellbeing", figures.predicted_wellbeing(coefs)),
            ("diagnostics_primary", figures.diagnostics(read("diagnostics.csv"))),
        ]
    sens = [m for m in params["report"]["sensitivity_models"] if m in readable]
    if "primary" in sens:
        made.append(("sensitivity", figures.sensitivity(coefs, sens)))
    if (results / "specification_curve.csv").is_file():
        made.append(("specification_curve",
                     figures.specification_curve(read("specification_curve.csv"))))
    if (results / "power.csv").is_file():
        target = float(read("power_target.csv")["target"].iloc[0])
        made.append(("power_curves", figures.power_curves(read("power.csv"), target)))
    if (results / "scoring" / "reliability.csv").is_file():
        made.append(("reliability", figures.reliability(
            read("scoring/reliability.csv"), read("scoring/floor_ceiling.csv"))))
    for name, (fig, data) in made:
        figures.save_figure(fig, data, figdir, name)
        log("publish", f"figure {figdir / name}.png/.svg/.csv")
    conf = float(params["model"].get("conf_level", 0.95))
    df_method = "; ".join(sorted(coefs["df_method"].dropna().unique()))
    prim = stats.loc["primary"] if "primary" in stats.index else None
    if prim is not None and "primary" in readable:
        note = (f"N = {int(prim['n_obs']):,} sessions, {int(prim['n_clients']):,} clients, "
                f"{int(prim['n_therapists']):,} therapists. ")
    else:
        reason = "" if prim is None else str(prim["reason"] or prim["warning"])
        note = f"Primary model {'not fitted' if prim is None else prim['status']}: {reason}. "
    note += (f"b = unstandardised coefficient; CI = confidence interval; "
             f"p-values: {df_method}.")
    if params["data"].get("simulated", False):
        note += " SIMULATED data."
    if "primary" in readable:
        tables.write_table(tables.coefficient_table(coefs, ["primary"], conf), tabdir,
                           "primary", "Table 1. Primary model: alliance and wellbeing, within "
                           "and between clients", note)
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
    table = specification_curve(scored, settings, fit_settings, execution)
    write_csv(table, Path(args.out))
    log("speccurve", f"{table['spec'].nunique()} specifications; wrote {args.out}")


def cmd_power(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.power.run import power_stage

    tables = power_stage(params, Path(args.results), Path(args.checkpoint), log=log)
    for name, frame in tables.items():
        write_csv(frame, Path(args.results) / f"{name}.csv")
        log("power", f"wrote {Path(args.results) / name}.csv")


def cmd_render(params: dict[str, Any], args: argparse.Namespace) -> None:
    from pipeline.report import render

    start = time.perf_counter()
    log("render", f"executing {args.notebook}")
    out = render(args.notebook, args.out, {"params_file": args.params}, cwd=Path.cwd())
    log("render", f"wrote {out} in {time.perf_counter() - start:.0f} s")


COMMANDS: dict[str, tuple[Callable[[dict[str, Any], argparse.Namespace], None], str]] = {
    "simulate": (cmd_simulate, "write the simulated default data set"),
    "validate": (cmd_validate, "read and validate the input files"),
    "score": (cmd_score, "score the instruments; psychometrics"),
    "describe": (cmd_describe, "aggregate description of the data"),
    "fit": (cmd_fit, "fit the mixed-effects models"),
    "publish": (cmd_publish, "figures (PNG, SVG, CSV) and APA tables (HTML, LaTeX, Markdown)"),
    "bootstrap": (cmd_bootstrap, "parametric bootstrap of variance components, ICC and R2"),
    "speccurve": (cmd_speccurve, "specification curve over the analytic choices"),
    "power": (cmd_power, "simulation-based power over the designs in params.yaml"),
    "render": (cmd_render, "render a notebook to an HTML report"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--params", default="params.yaml", help="settings file")
        if name == "simulate":
            p.add_argument("--out", default="data/simulated")
        if name == "validate":
            p.add_argument("--out", default=str(VALIDATED))
        if name in ("score", "describe", "fit", "bootstrap"):
            p.add_argument("--validated", default=str(VALIDATED))
        if name == "score":
            p.add_argument("--out", default=str(SCORED))
            p.add_argument("--results", default=str(RESULTS / "scoring"))
        if name in ("describe", "fit", "bootstrap", "speccurve"):
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
            p.add_argument("--figures", default="reports/figures")
            p.add_argument("--tables", default="reports/tables")
        if name == "power":
            p.add_argument("--results", default=str(RESULTS))
            p.add_argument("--checkpoint", default=str(INTERIM / "power" / "replicates.jsonl"),
                           help="finished replicates, kept so an interrupted run resumes")
        if name == "render":
            p.add_argument("--notebook", required=True, help="jupytext .py source")
            p.add_argument("--out", required=True, help="HTML file to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one pipeline step; return the process exit status."""
    args = build_parser().parse_args(argv)
    params = load_params(args.params)
    func, _ = COMMANDS[args.command]
    try:
        # One BLAS thread: results must not depend on the machine's core count.
        with threadpool_limits(limits=1):
            func(params, args)
    except Exception as exc:
        from pipeline.validate import InputError

        if isinstance(exc, InputError):
            print(str(exc), file=sys.stderr)
            print(f"[{args.command}] stopped: nothing was written; earlier results are "
                  "unchanged.", file=sys.stderr)
            return 2
        raise
    return 0
