"""Coverage of the primary model's 95% intervals over simulated data sets.

Usage, from the project root::

    .venv/bin/python benchmarks/coverage.py                 # 50 replications
    .venv/bin/python benchmarks/coverage.py -n 200 --seed 1

Each replication simulates a data set from the ``simulate:`` settings of params.yaml with
seed ``seed + i`` (injected ruptures and endings switched off), fits the primary model
with :func:`pipeline.models.fit_model` (REML, the native engine, Satterthwaite df, no ML
refit) and records whether each fixed
effect's interval (``model.conf_level``) covers the true value. Printed per term:
coverage with its Monte Carlo standard error, mean bias, the empirical SD of the
estimates and the mean reported SE (their ratio should be near 1), and the number of
fits that did not converge (they are counted, not dropped silently).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import models as M  # noqa: E402
from pipeline.simulation.dataset import simulate_dataset  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Run the replications and print the coverage table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--replications", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first data set")
    args = parser.parse_args(argv)

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    settings = params["model"]
    spec = M.load_specs().get("primary")
    truth_values = params["simulate"]["wellbeing"]
    rows = []
    n_not_converged = 0
    began = time.perf_counter()
    for i in range(args.replications):
        config = copy.deepcopy(params["simulate"])
        config["seed"] = args.seed + i
        # The primary model's truth holds exactly only without the injected rupture-repair
        # step and endings (see benchmarks/ruptures_coverage.py for those).
        for extra in ("ruptures", "endings"):
            if extra in config:
                config[extra] = {**config[extra], "enabled": False}
        fit = M.fit_model(simulate_dataset(config).scored, None, spec, settings, refit_ml=False)
        n_not_converged += not fit.converged
        table = M.coefficients([fit])
        table["truth"] = [truth_values["intercept" if t == "Intercept" else t]
                          for t in table["term"]]
        table["replication"] = i
        rows.append(table)
        if (i + 1) % 10 == 0 or i + 1 == args.replications:
            print(f"{i + 1}/{args.replications} fits, {time.perf_counter() - began:.0f} s",
                  file=sys.stderr, flush=True)
    allfits = pd.concat(rows, ignore_index=True)
    allfits["covered"] = ((allfits["conf_low"] <= allfits["truth"])
                          & (allfits["truth"] <= allfits["conf_high"]))
    grouped = allfits.groupby("term", sort=False)
    n = args.replications
    summary = pd.DataFrame({
        "truth": grouped["truth"].first(),
        "coverage": grouped["covered"].mean(),
        "mc_se": np.sqrt(grouped["covered"].mean() * (1 - grouped["covered"].mean()) / n),
        "mean_bias": grouped["estimate"].mean() - grouped["truth"].first(),
        "sd_estimates": grouped["estimate"].std(ddof=1),
        "mean_se": grouped["std_error"].mean(),
    })
    summary["se_ratio"] = summary["mean_se"] / summary["sd_estimates"]
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        print(summary.to_string())
    overall = allfits["covered"].mean()
    print(f"\n{n} replications, nominal {settings.get('conf_level', 0.95):.0%}; all terms "
          f"pooled {overall:.3f}; not converged: {n_not_converged}; "
          f"{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
