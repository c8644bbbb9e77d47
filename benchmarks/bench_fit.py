"""Time the primary model fit against lme4 on simulated data of increasing size.

Usage, from the project root::

    .venv/bin/python benchmarks/bench_fit.py                       # 25 ... 1600 therapists
    .venv/bin/python benchmarks/bench_fit.py --therapists 25 100 --no-r

Clients per therapist stay at the ``simulate:`` value of params.yaml (12 on average), so
the number of therapists (statsmodels' groups) grows with the data. For each size the
script times, in this process, building the model data and statsmodels model, and the
robust fit (every optimizer of ``model.optimizers`` plus the Newton polish and gradient
check, :func:`pipeline.model.fit_optimum`); when ``Rscript`` is on PATH it fits the same
model to the same rows in lme4 (default ``lmer`` settings, REML) and prints the ratios of
the times. It also prints the largest difference between the two sets of estimates in
units of lme4's standard errors. Figures are printed, not written.
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

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import model as M  # noqa: E402
from pipeline.simulate import simulate  # noqa: E402

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1], colClasses = c(client_id = "character", therapist_id = "character"))
f <- wellbeing ~ time + goal_within + task_within + bond_within + goal_between +
  task_between + bond_between + (1 | therapist_id) + (1 | client_id) + (0 + time | client_id)
elapsed <- system.time(fit <- lmer(f, data = d, REML = TRUE))[["elapsed"]]
est <- fixef(fit)
se <- sqrt(diag(as.matrix(vcov(fit))))
out <- data.frame(term = sub("^\\(Intercept\\)$", "Intercept", names(est)),
                  estimate = est, std_error = se)
write.csv(out, args[2], row.names = FALSE)
cat(sprintf("%.6f %.8f\n", elapsed, as.numeric(logLik(fit))))
"""

COLUMNS = ["client_id", "therapist_id", "session", "time", "wellbeing",
           *(f"{k}_{p}" for k in M.SUBSCALES for p in ("within", "between"))]


def run_lme4(data: pd.DataFrame, workdir: Path) -> tuple[float, float, pd.DataFrame]:
    """Fit the primary model in lme4; return fit seconds, REML loglik, coefficients."""
    data_path, out_path, script = (workdir / "data.csv", workdir / "coef.csv",
                                   workdir / "fit.R")
    data[COLUMNS].to_csv(data_path, index=False)
    script.write_text(R_SCRIPT, encoding="utf-8")
    done = subprocess.run(["Rscript", str(script), str(data_path), str(out_path)],
                          check=True, capture_output=True, text=True)
    seconds, loglik = (float(x) for x in done.stdout.split())
    return seconds, loglik, pd.read_csv(out_path).set_index("term")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--therapists", type=int, nargs="+", default=[25, 100, 400, 1600],
                        help="numbers of therapists (data sizes) to time")
    parser.add_argument("--no-r", action="store_true", help="skip lme4 even if R is there")
    args = parser.parse_args(argv)

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    settings = params["model"]
    spec = M.load_specs().get("primary")
    use_r = shutil.which("Rscript") is not None and not args.no_r
    if not use_r:
        print("Rscript not found or --no-r: timing statsmodels only", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_therapists in args.therapists:
            config = copy.deepcopy(params["simulate"])
            config["n_therapists"] = n_therapists
            scored = simulate(config).scored
            t0 = time.perf_counter()
            data = M.model_data(scored, None, spec)
            model = M.build_model(spec.formula, data, spec.random)
            build = time.perf_counter() - t0
            fit = M.fit_optimum(model, reml=True, optimizers=settings["optimizers"],
                                gradient_tolerance=settings["gradient_tolerance"],
                                random=spec.random)
            row = {
                "therapists": n_therapists, "clients": data["client_id"].nunique(),
                "rows": len(data), "build_s": build, "fit_s": fit.seconds,
                "total_s": build + fit.seconds,
                **{f"{a.optimizer}_s": a.seconds for a in fit.attempts},
                "optimizer": fit.optimizer, "converged": fit.converged,
            }
            if use_r:
                r_seconds, r_loglik, r_coef = run_lme4(data, Path(tmp))
                ours = pd.Series(fit.fe_params)
                row.update(
                    lme4_s=r_seconds, ratio_total=(build + fit.seconds) / r_seconds,
                    ratio_one_optimizer=min(a.seconds for a in fit.attempts) / r_seconds,
                    loglik_diff=fit.loglik - r_loglik,
                    max_diff_in_se=float(((ours - r_coef["estimate"]).abs()
                                          / r_coef["std_error"]).max()),
                )
            rows.append(row)
            print(" ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.3g}".format):
        print(table.to_string(index=False))
    print("\nratio_total: our build + robust fit (all optimizers, polish, check) / lme4 lmer;"
          "\nratio_one_optimizer: the fastest single statsmodels optimizer / lme4 lmer.")


if __name__ == "__main__":
    main()
