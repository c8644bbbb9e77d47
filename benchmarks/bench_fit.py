"""CPU time, memory and agreement of the native engine against lme4, measured in one run.

Usage, from the project root::

    .venv/bin/python benchmarks/bench_fit.py                     # 3k, 43k, 344k rows + stage
    .venv/bin/python benchmarks/bench_fit.py --sizes small medium --no-stage
    .venv/bin/python benchmarks/bench_fit.py --no-r              # ours only

What is measured (CPU time, one BLAS thread; never asserted in tests):

1. **Primary model** on simulated data from params.yaml's ``simulate:`` block scaled up
   (``small``: 30 therapists x 12 clients, about 3k rows; ``medium``: 125 x 40, about 43k;
   ``large``: 1,000 x 40, about 344k). Each of our fits runs in a fresh child process
   (so its peak resident memory is its own): design matrices, the one pass over the rows,
   the pre-fit checks, the optimisation, lme4's convergence checks. Satterthwaite df are
   timed separately. When ``Rscript`` is on PATH, lme4's ``lmer`` (default settings,
   REML) fits the same rows in the same run; printed: CPU ratio ours / lme4, and the
   log-likelihood difference and the largest difference of the estimates in lme4 SEs.
2. **The fit stage**: every model of models.yaml and its ML refit on the shipped-size
   data (``fit_all``, with Satterthwaite df), against lme4 fitting the same models on
   the same rows and refitting them by ML (``refitML``), CPU time of both.
3. **Growth**: the slope of log CPU time on log rows over the sizes run.

Goals of issue 9: <= 0.2x lme4 at 43k rows, <= 0.1x at 344k, log-likelihood within 1e-4
of lme4's, the whole stage in less CPU time than lme4's, peak memory at 344k < 1 GB.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import models as M  # noqa: E402
from pipeline.simulation.dataset import simulate_dataset  # noqa: E402

SIZES = {"small": (30, 12), "medium": (125, 40), "large": (1000, 40)}
PRIMARY_R = ("wellbeing ~ time + goal_within + task_within + bond_within + goal_between + "
             "task_between + bond_between + (1 | therapist_id) + (1 | client_id) + "
             "(0 + time | client_id)")

R_FIT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(client_id = "character", therapist_id = "character"))
f <- as.formula(args[3])
t0 <- proc.time()
fit <- lmer(f, data = d, REML = TRUE)
el <- proc.time() - t0
est <- fixef(fit)
se <- sqrt(diag(as.matrix(vcov(fit))))
write.csv(data.frame(term = sub("^\\(Intercept\\)$", "Intercept", names(est)),
                     estimate = est, std_error = se), args[2], row.names = FALSE)
cat(sprintf("%.6f %.10f\n", el[["user.self"]] + el[["sys.self"]], as.numeric(logLik(fit))))
"""

R_STAGE = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
manifest <- read.csv(args[1], stringsAsFactors = FALSE)
data <- lapply(manifest$data, function(p)
  read.csv(p, colClasses = c(client_id = "character", therapist_id = "character")))
cpu <- 0
for (i in seq_len(nrow(manifest))) {
  t0 <- proc.time()
  fit <- suppressMessages(suppressWarnings(lmer(as.formula(manifest$formula[i]),
                                                 data = data[[i]],
                                                 REML = as.logical(manifest$reml[i]))))
  if (isREML(fit)) ml <- suppressMessages(suppressWarnings(refitML(fit)))
  el <- proc.time() - t0
  cpu <- cpu + el[["user.self"]] + el[["sys.self"]]
}
cat(sprintf("%.6f\n", cpu))
"""


def worker(path: str) -> None:
    """Fit the primary model to a CSV in this (child) process; print JSON figures."""
    from pipeline.models import inference
    from pipeline.models.fitting import fit_formula

    data = pd.read_csv(path, dtype={"client_id": str, "therapist_id": str})
    spec = M.load_specs().get("primary")
    t0 = time.process_time()
    fit, _ = fit_formula(data, spec.formula, spec.random, reml=True,
                         settings={"df_method": "wald"}, model="primary")
    cpu = time.process_time() - t0
    t1 = time.process_time()
    assert fit.problem is not None
    inference.satterthwaite_df(fit.problem, fit.theta, fit.sigma2, fit.vcov.to_numpy(), True)
    df_cpu = time.process_time() - t1
    print(json.dumps({
        "cpu": cpu, "df_cpu": df_cpu, "loglik": fit.loglik,
        "evaluations": fit.record["evaluations"], "converged": fit.converged,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "estimate": fit.beta.to_dict(),
    }))


def run_ours(path: Path) -> dict:
    """One fit in a fresh interpreter (clean peak-memory figure)."""
    done = subprocess.run([sys.executable, __file__, "--worker", str(path)], check=True,
                          capture_output=True, text=True, cwd=ROOT)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_lme4(path: Path, workdir: Path) -> tuple[float, float, pd.DataFrame]:
    """lme4's CPU seconds, REML log-likelihood and coefficients for the primary model."""
    script, out = workdir / "fit.R", workdir / "coef.csv"
    script.write_text(R_FIT, encoding="utf-8")
    done = subprocess.run(["Rscript", str(script), str(path), str(out), PRIMARY_R],
                          check=True, capture_output=True, text=True)
    cpu, loglik = (float(x) for x in done.stdout.split())
    return cpu, loglik, pd.read_csv(out).set_index("term")


def stage(params: dict, use_r: bool, workdir: Path) -> dict:
    """Every model and its ML refit: ours (fit_all) against lme4 (lmer + refitML)."""
    scored = simulate_dataset(copy.deepcopy(params["simulate"]))
    settings = M.settings_from(params["model"])
    t0 = time.process_time()
    fits = M.fit_all(scored.scored, scored.clients, settings, verbose=False)
    ours = time.process_time() - t0
    out = {"models": len(fits), "ours_cpu": ours,
           "statuses": sorted({f.status for f in fits})}
    if not use_r:
        return out
    rows = []
    for fr in fits:
        if fr.fit is None or fr.data is None:
            continue
        path = workdir / f"stage_{fr.name}.csv"
        fr.data.to_csv(path, index=False)
        formula = (fr.spec.formula.replace("C(", "factor(") + " + "
                   + fr.fit.record["random"])
        rows.append({"model": fr.name, "data": str(path), "formula": formula,
                     "reml": "TRUE" if fr.spec.reml else "FALSE"})
    manifest = workdir / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    script = workdir / "stage.R"
    script.write_text(R_STAGE, encoding="utf-8")
    done = subprocess.run(["Rscript", str(script), str(manifest)], check=True,
                          capture_output=True, text=True)
    out["lme4_cpu"] = float(done.stdout.split()[-1])
    out["ratio"] = ours / out["lme4_cpu"]
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--no-r", action="store_true", help="skip lme4 even if R is there")
    parser.add_argument("--no-stage", action="store_true", help="skip the fit-stage timing")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    use_r = shutil.which("Rscript") is not None and not args.no_r
    if not use_r:
        print("Rscript not found or --no-r: timing the native engine only", file=sys.stderr)
    spec = M.load_specs().get("primary")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for size in args.sizes:
            n_therapists, per = SIZES[size]
            config = copy.deepcopy(params["simulate"])
            config.update(n_therapists=n_therapists, clients_per_therapist=per)
            # The primary model's data shape without injected ruptures and early endings
            # (sizes comparable with earlier runs: ~3k, ~40k, ~320k rows).
            for extra in ("ruptures", "endings"):
                if isinstance(config.get(extra), dict):
                    config[extra] = {**config[extra], "enabled": False}
            data = M.model_data(simulate_dataset(config).scored, None, spec)
            path = workdir / f"{size}.csv"
            data.to_csv(path, index=False)
            ours = run_ours(path)
            row = {"size": size, "rows": len(data), "clients": data["client_id"].nunique(),
                   "therapists": data["therapist_id"].nunique(), "ours_cpu": ours["cpu"],
                   "df_cpu": ours["df_cpu"], "evaluations": ours["evaluations"],
                   "peak_mb": ours["maxrss_mb"], "converged": ours["converged"]}
            if use_r:
                r_cpu, r_loglik, r_coef = run_lme4(path, workdir)
                est = pd.Series(ours["estimate"])
                row.update(lme4_cpu=r_cpu, ratio=ours["cpu"] / r_cpu,
                           loglik_diff=ours["loglik"] - r_loglik,
                           max_diff_in_se=float(((est - r_coef["estimate"]).abs()
                                                 / r_coef["std_error"]).max()))
            rows.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), file=sys.stderr, flush=True)
        table = pd.DataFrame(rows)
        with pd.option_context("display.width", 200, "display.max_columns", 30,
                               "display.float_format", "{:.4g}".format):
            print(table.to_string(index=False))
        if len(table) > 1:
            slope = np.polyfit(np.log(table["rows"]), np.log(table["ours_cpu"]), 1)[0]
            print(f"\nCPU time grows as rows^{slope:.2f} (log-log slope over the sizes run)")
        if not args.no_stage:
            st = stage(params, use_r, workdir)
            print("\nfit stage (every model + ML refit, Satterthwaite df): "
                  + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in st.items()))
    print("\nours_cpu: our fit (design, checks, optimisation, lme4's convergence checks), "
          "CPU s;\ndf_cpu: Satterthwaite df on top; ratio: ours_cpu / lme4 lmer CPU s; "
          "peak_mb: our process's peak resident memory.")


if __name__ == "__main__":
    main()
