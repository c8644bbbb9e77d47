"""Coverage of the parametric-bootstrap intervals of the variance components and ICCs.

Usage, from the project root::

    .venv/bin/python benchmarks/coverage_bootstrap.py                  # 20 data sets x 100
    .venv/bin/python benchmarks/coverage_bootstrap.py -n 100 -b 200 --workers 2

Each data set is simulated (pipeline/simulation) from the primary model with the true
values of ``simulate.wellbeing`` in params.yaml on the shipped design (30 therapists x 12
clients x 10 planned sessions, attendance as ``simulate.p_attend``); the primary model is
fitted and bootstrapped (``-b`` refits) and each percentile interval is checked against
the truth. Printed per quantity: coverage with its Monte-Carlo SE, the mean interval and
failed refits. Percentile intervals of variances from 30 therapists are known to
under-cover somewhat; the benchmark measures by how much. Figures are printed only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.models import load_specs, model_data  # noqa: E402
from pipeline.models.bootstrap import BootstrapSettings, parametric_bootstrap  # noqa: E402
from pipeline.models.fitting import fit_formula  # noqa: E402
from pipeline.parallel import ExecutionSettings  # noqa: E402
from pipeline.simulation.alliance import process_from_settings  # noqa: E402
from pipeline.simulation.design import StudyDesign  # noqa: E402
from pipeline.simulation.outcome import ModelTruth  # noqa: E402
from pipeline.simulation.study import simulate_study  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Simulate, fit, bootstrap and print coverage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--datasets", type=int, default=20)
    parser.add_argument("-b", "--boot", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    sim, wb = params["simulate"], params["simulate"]["wellbeing"]
    fixed = {"Intercept": wb["intercept"], "time": wb["time"],
             **{f"{k}_{p}": wb[f"{k}_{p}"] for k in ("goal", "task", "bond")
                for p in ("within", "between")}}
    sd = {"therapist": wb["therapist_sd"], "client": wb["client_sd"],
          "client_time": wb["client_time_sd"], "residual": wb["residual_sd"]}
    truth = ModelTruth(fixed=fixed, sd=sd)
    total = sd["therapist"] ** 2 + sd["client"] ** 2 + sd["residual"] ** 2
    true_values = {"sd_therapist": sd["therapist"], "sd_client": sd["client"],
                   "sd_client_time": sd["client_time"], "sd_residual": sd["residual"],
                   "icc_therapist": sd["therapist"] ** 2 / total,
                   "icc_client": sd["client"] ** 2 / total}
    process = process_from_settings(sim["alliance"], "simulate.alliance")
    design = StudyDesign(30, 12, 10, attendance=float(sim["p_attend"]))
    spec = load_specs().get("primary")
    rows = []
    began = time.perf_counter()
    for i in range(args.datasets):
        rng = np.random.default_rng([args.seed, i])
        data = simulate_study(design, process, truth, rng,
                              lambda s: model_data(s, None, spec))
        fit, _ = fit_formula(data, spec.formula, spec.random, reml=True)
        table = parametric_bootstrap(
            fit, data, spec, BootstrapSettings(replications=args.boot, seed=args.seed + i,
                                               max_failed_share=1.0),
            ExecutionSettings(workers=args.workers), {})
        table = table[table["quantity"].isin(list(true_values))].copy()
        table["truth"] = table["quantity"].map(true_values)
        table["covered"] = (table["conf_low"] <= table["truth"]) & (
            table["truth"] <= table["conf_high"])
        rows.append(table)
        print(f"{i + 1}/{args.datasets} data sets, {time.perf_counter() - began:.0f} s",
              file=sys.stderr, flush=True)
    allsets = pd.concat(rows, ignore_index=True)
    g = allsets.groupby("quantity", sort=False)
    cov = g["covered"].mean()
    summary = pd.DataFrame({"truth": g["truth"].first(), "coverage": cov,
                            "mc_se": np.sqrt(cov * (1 - cov) / args.datasets),
                            "mean_low": g["conf_low"].mean(), "mean_high": g["conf_high"].mean(),
                            "failed_refits": g["failed"].sum()})
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        print(summary.to_string())
    print(f"\n{args.datasets} data sets x {args.boot} bootstrap refits, nominal 95%; "
          f"{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
