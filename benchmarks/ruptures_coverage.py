"""Coverage of the injected repair and ending effects over simulated data sets (issue 12).

Usage, from the project root::

    .venv/bin/python benchmarks/ruptures_coverage.py            # 20 replications
    .venv/bin/python benchmarks/ruptures_coverage.py -n 100 --seed 1

Each replication simulates a data set from the ``simulate:`` settings of params.yaml with
seed ``seed + i`` and records

* the outcome model's ``repaired`` coefficient (wellbeing change, repaired vs no rupture;
  :mod:`pipeline.ruptures.outcome` through its adapter ``fit_mixed``) with the clients'
  TRUE groups (injected episodes whose repair, or rupture, was followed by a rated
  wellbeing score): does its interval cover ``simulate.ruptures.repair_effect``?
* the same coefficient with the groups found by each detection criterion (total score,
  client ratings): how far detection errors dilute it;
* with ruptures switched off (endings only), the endings model's within and between
  coefficients: do their intervals cover ``simulate.endings.within`` / ``between``?

Printed: per quantity the truth, mean estimate, coverage with its Monte Carlo SE, mean
reported SE and the SD of the estimates; fits that were not estimable are counted.
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

from pipeline.instruments import load_instrument  # noqa: E402
from pipeline.ruptures import endings as E  # noqa: E402
from pipeline.ruptures import outcome as O  # noqa: E402
from pipeline.ruptures.criteria import (  # noqa: E402
    load_criteria,
    load_rules,
    scale_reliability,
)
from pipeline.ruptures.detect import alliance_series, detect_episodes  # noqa: E402
from pipeline.score import score_alliance, score_outcome  # noqa: E402
from pipeline.simulation.dataset import simulate_dataset  # noqa: E402


def true_groups(sim, wellbeing: pd.DataFrame) -> pd.DataFrame:
    """Clients' groups from the injected truth, as far as the data can show them."""
    last = wellbeing.dropna(subset=["wellbeing"]).groupby("client_id")["session"].max()
    truth = sim.episodes.set_index("client_id")
    therapist = sim.alliance.groupby("client_id")["therapist_id"].first()

    def group(c: str) -> str:
        if c not in truth.index:
            return "none"
        rec = truth.loc[c]
        if rec["repaired"]:
            return "repaired" if last.get(c, 0) >= rec["repair_session"] else "censored"
        return "unrepaired" if last.get(c, 0) > rec["rupture_session"] else "censored"

    out = pd.DataFrame({"client_id": therapist.index, "therapist_id": therapist.to_numpy()})
    out["group"] = out["client_id"].map(group)
    return out


def _row(label: str, truth: float, fit: O.MixedFit | None, coefs: pd.DataFrame | None,
         term: str) -> dict[str, object]:
    table = fit.coefficients if fit is not None else coefs
    if table is None or table.empty or term not in set(table["term"]):
        return {"quantity": label, "truth": truth, "estimate": np.nan, "std_error": np.nan,
                "covered": np.nan}
    r = table.set_index("term").loc[term]
    return {"quantity": label, "truth": truth, "estimate": r["estimate"],
            "std_error": r["std_error"],
            "covered": float(r["conf_low"] <= truth <= r["conf_high"])}


def main(argv: list[str] | None = None) -> None:
    """Run the replications and print the summary table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--replications", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="seed of the first data set")
    args = parser.parse_args(argv)

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    rcfg = params["ruptures"]
    ocfg = rcfg["outcome"]
    criteria = load_criteria(rcfg)
    rules = load_rules(rcfg)
    wai, swem = load_instrument("wai_sr"), load_instrument("swemwbs")
    effect = float(params["simulate"]["ruptures"]["repair_effect"])
    ends = params["simulate"]["endings"]
    rows = []
    began = time.perf_counter()
    for i in range(args.replications):
        config = copy.deepcopy(params["simulate"])
        config["seed"] = args.seed + i
        sim = simulate_dataset(config)
        wb, _ = score_outcome(sim.outcome, swem)
        wb = wb[["client_id", "session", "wellbeing"]]
        data = O.change_data(true_groups(sim, wb), wb)
        formula, _, reason = O.model_plan(data, ocfg["formula"], 5)
        fit = None if reason else O.fit_mixed(data, formula, ocfg["random"], params["model"])
        rows.append({**_row("repaired | true groups", effect, fit, None, "repaired"),
                     "replication": i})
        scored, _ = score_alliance(sim.alliance, wai)
        series = alliance_series(scored, ["total"])
        episodes, applied = detect_episodes(series, criteria, rules,
                                            scale_reliability(sim.alliance, wai))
        for crit in criteria:
            data = O.change_data(O.client_groups(episodes, applied, crit.name), wb)
            formula, _, reason = O.model_plan(data, ocfg["formula"], 5)
            fit = None if reason else O.fit_mixed(data, formula, ocfg["random"],
                                                  params["model"])
            rows.append({**_row(f"repaired | {crit.name}", effect, fit, None, "repaired"),
                         "replication": i})
        config["ruptures"]["enabled"] = False
        sim = simulate_dataset(config)
        scored, _ = score_alliance(sim.alliance, wai)
        pp = E.person_period(alliance_series(scored, ["total"]), sim.clients)
        _, _, coefs = E.fit_endings(pp, rcfg["endings"]["formula"], 0.95, 5)
        for term, key in (("alliance_within", "within"), ("alliance_between", "between")):
            rows.append({**_row(f"endings {term}", float(ends[key]), None, coefs, term),
                         "replication": i})
        if (i + 1) % 5 == 0 or i + 1 == args.replications:
            print(f"{i + 1}/{args.replications}, {time.perf_counter() - began:.0f} s",
                  file=sys.stderr, flush=True)
    allrows = pd.DataFrame(rows)
    g = allrows.groupby("quantity", sort=False)
    cov = g["covered"].mean()
    n_fit = g["covered"].count()
    summary = pd.DataFrame({
        "truth": g["truth"].first(), "mean_estimate": g["estimate"].mean(),
        "coverage": cov, "mc_se": np.sqrt(cov * (1 - cov) / n_fit),
        "mean_se": g["std_error"].mean(), "sd_estimates": g["estimate"].std(ddof=1),
        "fitted": n_fit, "not_estimable": g["covered"].size() - n_fit,
    })
    with pd.option_context("display.width", 200, "display.float_format", "{:.3g}".format):
        print(summary.to_string())


if __name__ == "__main__":
    main()
