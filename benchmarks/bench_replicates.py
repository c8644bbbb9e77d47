"""Per-refit cost of the replicate stages (bootstrap, specification curve, power), serially.

Usage, from the project root, after ``make repro`` (it reads ``data/interim/scored.csv``
and the fitted model's tables in ``results/``)::

    .venv/bin/python benchmarks/bench_replicates.py              # refit line + stages
    .venv/bin/python benchmarks/bench_replicates.py --refits 100 --no-r
    .venv/bin/python benchmarks/bench_replicates.py --no-stages --out /tmp/x

What is measured (CPU seconds of this process, one BLAS thread; never asserted in tests):

1. **refit**: the primary model on the shipped data, then ``--refits`` parametric
   bootstrap refits as the bootstrap stage does them (``pipeline.models.fitting.refit``:
   a new response, everything else reused, warm start from the fit's theta, lme4's
   checks), and for comparison the same refits as fresh fits of the rows
   (``fit_formula(..., checked=True)``, the bootstrap's path before the refit existed).
   When ``Rscript`` is on PATH, lme4's ``bootMer(fit, FUN, nsim, type = "parametric")``
   (which calls ``refit`` on each simulated response) on the same rows in the same run:
   printed per refit, and the ratio ours / lme4.
2. **stages**: the ``bootstrap``, ``speccurve`` and ``power`` stages' computations with
   ``parallel.workers: 1`` (no Dask, no checkpoint), CPU and wall seconds; with ``--out``
   their tables are written there (the same bytes as the stages write), e.g. to compare
   two versions of the code.

Goals of issue 13 (serial, this machine): bootstrap <= 4 s, specification curve <= 5 s,
power <= 10 s.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

R_BOOT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(client_id = "character", therapist_id = "character"))
fit <- lmer(as.formula(args[2]), data = d, REML = TRUE)
n <- as.integer(args[3])
set.seed(20261122)
t0 <- proc.time()
b <- suppressMessages(suppressWarnings(bootMer(
  fit, function(m) c(getME(m, "theta"), sigma(m)), nsim = n, type = "parametric")))
el <- proc.time() - t0
cat(sprintf("%.6f\n", (el[["user.self"]] + el[["sys.self"]]) / n))
"""


def _cpu() -> float:
    return time.process_time()


def refit_line(params: dict[str, Any], scored: pd.DataFrame, refits: int,
               use_r: bool) -> None:
    """Part 1: our per-refit time (refit path and fresh fits) and lme4's bootMer."""
    from pipeline.models import load_specs, model_data
    from pipeline.models.bootstrap import truth_of
    from pipeline.models.fitting import fit_formula, refit, settings_from
    from pipeline.simulation.outcome import simulate_outcome

    spec = load_specs().get("primary")
    conf = {**settings_from(params.get("model")), "df_method": "wald"}
    data = model_data(scored, None, spec)
    fit, _ = fit_formula(data, spec.formula, spec.random, reml=spec.reml, settings=conf)
    truth = truth_of(fit)
    rngs = np.random.SeedSequence(20261122).spawn(refits)
    ys = [simulate_outcome(data, truth, np.random.default_rng(s)) for s in rngs]
    began = _cpu()
    ours = [refit(fit, y, settings=conf) for y in ys]
    per_refit = (_cpu() - began) / refits
    began = _cpu()
    for y in ys:
        frame = data.copy()
        frame["wellbeing"] = y
        fit_formula(frame, spec.formula, fit.random, reml=spec.reml, settings=conf,
                    start=fit.theta, checked=True)
    per_fresh = (_cpu() - began) / refits
    failed = sum(not f.converged for f in ours)
    line = (f"refit   primary, {len(data):,} rows, {refits} refits: ours {per_refit * 1e3:.1f} ms "
            f"per refit (fresh fit of the rows {per_fresh * 1e3:.1f} ms), "
            f"{failed} not converged")
    rscript = shutil.which("Rscript")
    if use_r and rscript:
        with tempfile.TemporaryDirectory() as tmp:
            csv = Path(tmp) / "data.csv"
            script = Path(tmp) / "boot.R"
            data.to_csv(csv, index=False)
            script.write_text(R_BOOT)
            formula = f"{spec.formula} + {fit.random.formula}"
            out = subprocess.run([rscript, str(script), str(csv), formula, str(refits)],
                                 capture_output=True, text=True, check=True)
            lme4 = float(out.stdout.split()[-1])
        line += (f"; lme4 bootMer {lme4 * 1e3:.1f} ms per refit, ratio "
                 f"{per_refit / lme4:.3f}x")
    elif use_r:
        line += "; lme4 column skipped (no Rscript on PATH)"
    print(line, flush=True)


STAGES = ("bootstrap", "speccurve", "power")


def stage_lines(params: dict[str, Any], scored: pd.DataFrame, out: Path | None,
                stages: tuple[str, ...] = STAGES) -> None:
    """Part 2: the three replicate stages serially, CPU and wall seconds."""
    from pipeline.models.bootstrap import bootstrap_model
    from pipeline.models.fitting import settings_from
    from pipeline.outputs import write_csv
    from pipeline.parallel import ExecutionSettings
    from pipeline.power.run import power_stage
    from pipeline.speccurve import curve_settings, specification_curve

    serial = copy.deepcopy(params)
    serial["parallel"] = {"workers": 1}
    clients_file = ROOT / "data" / "interim" / "validated" / "clients.csv"
    clients = (pd.read_csv(clients_file, dtype={"client_id": str})
               if clients_file.is_file() else None)
    tables: dict[str, pd.DataFrame] = {}

    def timed(name: str, run: Any) -> None:
        if name not in stages:
            return
        cpu, wall = _cpu(), time.perf_counter()
        result = run()
        print(f"stage   {name:10s} {_cpu() - cpu:6.2f} s CPU {time.perf_counter() - wall:6.2f} s "
              "wall (serial)", flush=True)
        tables.update(result)

    timed("bootstrap", lambda: {"bootstrap": bootstrap_model(scored, clients, serial)})
    timed("speccurve", lambda: {"specification_curve": specification_curve(
        scored, curve_settings(serial.get("specification_curve")),
        settings_from(serial.get("model")), ExecutionSettings(workers=1))})
    with tempfile.TemporaryDirectory() as tmp:
        timed("power", lambda: power_stage(serial, ROOT / "results",
                                           Path(tmp) / "replicates.jsonl",
                                           scored=ROOT / "data" / "interim" / "scored.csv"))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        for name, table in tables.items():
            write_csv(table, out / f"{name}.csv")
        print(f"tables written to {out}", flush=True)


def main(argv: list[str] | None = None) -> int:
    from threadpoolctl import threadpool_limits

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--refits", type=int, default=50)
    parser.add_argument("--no-r", action="store_true", help="skip lme4's bootMer")
    parser.add_argument("--no-refit", action="store_true", help="skip the refit line")
    parser.add_argument("--no-stages", action="store_true", help="skip the stage lines")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--out", type=Path, help="write the stages' tables here")
    args = parser.parse_args(argv)
    scored_file = ROOT / "data" / "interim" / "scored.csv"
    if not scored_file.is_file():
        # not an error of `make bench` on a fresh clone: the other benchmarks still run
        print(f"bench_replicates skipped: {scored_file} is missing; run `make repro` first "
              "(the benchmark uses the shipped data as scored by the pipeline).",
              file=sys.stderr)
        return 0
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    scored = pd.read_csv(scored_file, dtype={"client_id": str, "therapist_id": str})
    with threadpool_limits(limits=1):
        if not args.no_refit:
            refit_line(params, scored, args.refits, not args.no_r)
        if not args.no_stages:
            stage_lines(params, scored, args.out, tuple(args.stages))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
