"""Throughput of simulation-based power: replicates per second, serial and on Dask.

Usage, from the project root::

    .venv/bin/python benchmarks/bench_power.py                 # shipped design, 40 reps
    .venv/bin/python benchmarks/bench_power.py --replications 100 --workers 1 2

For the shipped design (30 therapists x 12 clients x 10 planned sessions, 90%
attendance) it times the primary model's power replicates serially and on a Dask
LocalCluster of each worker count (CPU seconds of this process and wall time), prints
replicates per second and the scaling ratio against serial, checks that the results are
identical, times the default ``power`` settings of params.yaml once (serially), and
prints a plan for a paper-sized study (10,000 replicates x 20 designs on 100 cores) from
the measured cost per replicate. With ``Rscript`` on PATH it also times the same number
of lme4 + lmerTest fits of the same design in R for the per-replicate ratio. Figures are
printed, not written; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.parallel import ExecutionSettings  # noqa: E402
from pipeline.power.run import run_power  # noqa: E402
from pipeline.power.settings import power_settings  # noqa: E402
from pipeline.power.truth import truth_from_fit  # noqa: E402

R_LOOP = r"""
suppressMessages({library(lme4); library(lmerTest); library(MASS)})
args <- commandArgs(trailingOnly = TRUE); n <- as.integer(args[1])
set.seed(1); nt <- 30; npc <- 12; ns <- 10; nc <- nt * npc
eq <- function(sd, r) { m <- matrix(r, 3, 3); diag(m) <- 1; m * sd^2 }
t0 <- proc.time()[["elapsed"]]
for (r in seq_len(n)) {
  cl <- rep(seq_len(nc), each = ns); th <- rep(seq_len(nt), each = npc * ns)
  s <- rep(seq_len(ns), nc); keep <- s == 1 | runif(length(s)) < 0.9
  cl <- cl[keep]; th <- th[keep]; s <- s[keep]; time <- s - 1; n_r <- length(s)
  A <- matrix(c(3.7, 3.6, 3.9), n_r, 3, byrow = TRUE) + 0.03 * time +
    mvrnorm(nt, rep(0, 3), eq(0.2, 0.6))[th, ] + mvrnorm(nc, rep(0, 3), eq(0.5, 0.6))[cl, ] +
    mvrnorm(n_r, rep(0, 3), eq(0.35, 0.5))
  d <- data.frame(therapist_id = factor(th), client_id = factor(cl), time = time)
  for (j in 1:3) { k <- c("goal", "task", "bond")[j]; cm <- ave(A[, j], cl)
    d[[paste0(k, "_within")]] <- A[, j] - cm
    d[[paste0(k, "_between")]] <- cm - mean(tapply(A[, j], cl, mean)) }
  d$wellbeing <- 21 + 0.15 * time + 0.8 * d$goal_within + 0.6 * d$task_within +
    0.4 * d$bond_within + 1.2 * d$goal_between + 0.8 * d$task_between +
    0.5 * d$bond_between + rnorm(nt, 0, 1)[th] + rnorm(nc, 0, 2.5)[cl] +
    rnorm(nc, 0, 0.1)[cl] * time + rnorm(n_r, 0, 2)
  fit <- suppressMessages(suppressWarnings(lmer(wellbeing ~ time + goal_within + task_within +
    bond_within + goal_between + task_between + bond_between + (1 | therapist_id) +
    (1 | client_id) + (0 + time | client_id), data = d, REML = TRUE)))
  p <- summary(fit)$coefficients[, "Pr(>|t|)"]
}
cat(sprintf("%.6f\n", proc.time()[["elapsed"]] - t0))
"""


def _truth(params: dict, effects: dict) -> object:
    return truth_from_fit("primary", effects,
                          pd.read_csv(ROOT / "results" / "coefficients.csv"),
                          pd.read_csv(ROOT / "results" / "variance_components.csv"))


def time_design(params: dict, n: int, workers: int) -> tuple[float, float, pd.DataFrame]:
    sim = params["simulate"]
    block = {"designs": [{"therapists": 30, "clients_per_therapist": 12, "sessions": 10,
                          "attendance": float(sim["p_attend"])}],
             "replications": n, "seed": 11, "terms": ["goal_within"], "max_failed_share": 1.0}
    settings = power_settings(block, sim["alliance"])
    truth = _truth(params, {})
    cpu0, wall0 = time.process_time(), time.perf_counter()
    table, _ = run_power(settings, truth, ExecutionSettings(workers=workers), {})
    return time.process_time() - cpu0, time.perf_counter() - wall0, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-r", action="store_true", help="skip the lme4 loop")
    parser.add_argument("--no-default", action="store_true",
                        help="skip timing the default power settings")
    args = parser.parse_args()
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    n = args.replications
    print(f"shipped design 30 x 12 x 10 (attendance {params['simulate']['p_attend']}), "
          f"{n} replicates of the primary model")
    serial_rate = None
    reference = None
    for w in args.workers:
        cpu, wall, table = time_design(params, n, w)
        rate = n / wall
        serial_rate = serial_rate or rate
        same = reference is None or table.to_csv() == reference.to_csv()
        reference = reference if reference is not None else table
        print(f"  workers {w}: {wall:7.1f} s wall, {cpu:7.1f} s CPU here, {rate:5.2f} rep/s,"
              f" scaling x{rate / serial_rate:.2f}, identical to serial: {same}")
    per_rep = 1.0 / serial_rate
    if shutil.which("Rscript") and not args.no_r:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "loop.R"
            script.write_text(R_LOOP, encoding="utf-8")
            out = subprocess.run(["Rscript", str(script), str(n)], capture_output=True,
                                 text=True, check=True)
        r_per = float(out.stdout.split()[-1]) / n
        print(f"  lme4 + lmerTest loop in R: {r_per:.3f} s per replicate; ours serial "
              f"{per_rep:.3f} s = x{per_rep / r_per:.2f} of R's time")
    if not args.no_default:
        settings = power_settings(params["power"], params["simulate"]["alliance"])
        truth = _truth(params, settings.effects)
        wall0 = time.perf_counter()
        run_power(settings, truth, ExecutionSettings(workers=1), {})
        total = len(settings.designs) * settings.replications
        print(f"default power settings ({len(settings.designs)} designs x "
              f"{settings.replications} replicates = {total}): "
              f"{time.perf_counter() - wall0:.1f} s serial")
    fits = 10_000 * 20
    hours = fits * per_rep / 100 / 3600
    print(f"paper plan: 10,000 replicates x 20 designs = {fits:,} fits of the shipped design;"
          f" at {per_rep:.3f} s each on 100 single-threaded Dask workers about "
          f"{hours:.1f} h (+ scheduling overhead; larger designs cost more per fit)")
    print(json.dumps({"per_replicate_s": round(per_rep, 4)}))


if __name__ == "__main__":
    main()
