"""Simulation-based power: against an independent R calculation, type-I error, failed fits
counted, byte-identical across worker counts, settings checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.errors import SettingsError
from pipeline.parallel import ExecutionSettings
from pipeline.power.run import TooManyFailedFits, run_power
from pipeline.power.settings import power_settings
from pipeline.power.summary import smallest_adequate
from pipeline.power.truth import truth_from_fit
from pipeline.simulation.outcome import ModelTruth

FIXTURES = Path(__file__).parent / "fixtures" / "power"
ALLIANCE = {"mean": [3.7, 3.6, 3.9], "growth": 0.03, "therapist_sd": 0.2, "client_sd": 0.5,
            "session_sd": 0.35, "client_corr": 0.6, "session_corr": 0.5}
TRUTH = ModelTruth(
    fixed={"Intercept": 21.0, "time": 0.15, "goal_within": 0.5, "task_within": 0.0,
           "bond_within": 0.3, "goal_between": 1.2, "task_between": 0.8, "bond_between": 0.5},
    sd={"therapist": 1.0, "client": 2.5, "client_time": 0.1, "residual": 2.0})


def _settings(**overrides: Any) -> Any:
    block = {"designs": [{"therapists": 4, "clients_per_therapist": 3, "sessions": 4}],
             "replications": 6, "seed": 3, **overrides}
    return power_settings(block, ALLIANCE)


def test_power_equals_an_independent_lme4_calculation() -> None:
    """The R fixture (power_reference.R: R's RNG, lme4, lmerTest) and ours agree within
    Monte-Carlo error for every term; the null term's rejection rate is alpha."""
    cfg = yaml.safe_load((FIXTURES / "design.yaml").read_text(encoding="utf-8"))
    reference = pd.read_csv(FIXTURES / "power_reference.csv").set_index("term")
    n = 150
    settings = power_settings({"designs": [cfg["design"]], "replications": n,
                               "seed": cfg["seed"], "alpha": cfg["alpha"]}, cfg["alliance"])
    truth = ModelTruth(fixed=cfg["truth"]["fixed"], sd=cfg["truth"]["sd"])
    table, _ = run_power(settings, truth, ExecutionSettings(workers=1), {})
    ours = table.set_index("term")
    assert (ours["failed"] <= 0.1 * n).all()
    for term, row in reference.iterrows():
        counted = n - int(ours.loc[term, "failed"])
        r_counted = int(row["replications"] - row["failed"])
        p_ours, p_r = float(ours.loc[term, "power"]), float(row["power"])
        pooled = (p_ours * counted + p_r * r_counted) / (counted + r_counted)
        se = np.sqrt(pooled * (1 - pooled) * (1 / counted + 1 / r_counted))
        assert abs(p_ours - p_r) <= 3.5 * max(se, 0.01), (term, p_ours, p_r)
    # Type-I error: task_within has no effect.
    null = float(ours.loc["task_within", "power"])
    assert abs(null - 0.05) <= 3 * np.sqrt(0.05 * 0.95 / n)
    # The power rises with the effect: time (0.15 per session) is detected more often
    # than bond_within (0.3 on a small within-client SD).
    assert ours.loc["time", "power"] > ours.loc["task_within", "power"]


def test_results_are_byte_identical_with_one_or_two_workers(tmp_path: Path) -> None:
    settings = _settings(replications=8)
    one, _ = run_power(settings, TRUTH, ExecutionSettings(workers=1), {})
    two, _ = run_power(settings, TRUTH, ExecutionSettings(workers=2, chunk_size=2), {})
    one.to_csv(tmp_path / "one.csv", index=False)
    two.to_csv(tmp_path / "two.csv", index=False)
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    assert (one["replications"] == 8).all()


def test_adding_replicates_keeps_the_earlier_ones(tmp_path: Path) -> None:
    """Replicate i of a design has the same data however many replicates run."""
    from pipeline.power.run import power_tasks

    few = power_tasks(_settings(replications=3), TRUTH, {}, None)
    many = power_tasks(_settings(replications=9), TRUTH, {}, None)
    assert [t["seed"].generate_state(2).tolist() for t in few] == [
        t["seed"].generate_state(2).tolist() for t in many[:3]]


def test_failed_fits_are_counted_and_too_many_stop_the_run() -> None:
    # One session per client: a client slope on time cannot be estimated.
    settings = _settings(designs=[{"therapists": 4, "clients_per_therapist": 3,
                                   "sessions": 1}], replications=3)
    with pytest.raises(TooManyFailedFits, match=r"3 of 3 simulated studies of design 4x3x1"):
        run_power(settings, TRUTH, ExecutionSettings(), {})
    lenient = _settings(designs=[{"therapists": 4, "clients_per_therapist": 3,
                                  "sessions": 1}], replications=3, max_failed_share=1.0)
    table, target = run_power(lenient, TRUTH, ExecutionSettings(), {})
    assert (table["failed"] == 3).all()
    assert table["power"].isna().all()
    assert (target["design"] == "").all()


def test_smallest_adequate_design() -> None:
    table = pd.DataFrame({
        "term": ["goal_within"] * 3, "design": ["big", "small", "mid"],
        "therapists": [40, 10, 20], "clients_per_therapist": [10, 10, 10],
        "sessions": [10, 10, 10], "power": [0.95, 0.5, 0.85]})
    best = smallest_adequate(table, 0.8).iloc[0]
    assert best["design"] == "mid" and best["planned_sessions"] == 2000
    none = smallest_adequate(table.assign(power=0.1), 0.8).iloc[0]
    assert none["design"] == "" and np.isnan(none["planned_sessions"])


def test_truth_from_the_fitted_model_and_settings() -> None:
    coefs = pd.DataFrame({"model": "primary", "term": ["Intercept", "time", "goal_within"],
                          "estimate": [20.0, 0.1, 0.7]})
    comps = pd.DataFrame({"model": "primary",
                          "component": ["therapist", "client", "client_time", "residual"],
                          "sd": [1.0, 2.0, 0.1, 2.0]})
    truth = truth_from_fit("primary", {"goal_within": 0.3}, coefs, comps)
    assert truth.fixed == {"Intercept": 20.0, "time": 0.1, "goal_within": 0.3}
    assert truth.sd["client"] == 2.0
    with pytest.raises(SettingsError, match="'mood', which is not a term"):
        truth_from_fit("primary", {"mood": 0.3}, coefs, comps)
    with pytest.raises(SettingsError, match="no usable fit"):
        truth_from_fit("primary", {}, coefs, comps, status="not estimable")


@pytest.mark.parametrize(("block", "message"), [
    ({"designs": [], "replications": 5, "seed": 1}, "power.designs"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 0, "seed": 1}, "power.replications"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "alpha": 5}, "power.alpha"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5}, "power.seed"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}] * 2,
      "replications": 5, "seed": 1}, "same design"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "replicates": 9}, "power.replicates is not a setting"),
    ({"designs": [{"therapists": 2, "clients_per_therapist": 2, "sessions": 2}],
      "replications": 5, "seed": 1, "effects": {"goal_within": "big"}}, "power.effects"),
])
def test_bad_power_settings_name_the_setting(block: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        power_settings(block, ALLIANCE)


def test_clopper_pearson_equals_r_binom_test() -> None:
    """R 4.x: binom.test(7, 20)$conf.int, binom.test(0, 10), binom.test(10, 10)."""
    from pipeline.power.summary import clopper_pearson

    assert clopper_pearson(7, 20) == pytest.approx((0.1539092047845412, 0.5921885345328282),
                                                   abs=1e-12)
    assert clopper_pearson(0, 10) == pytest.approx((0.0, 0.3084971078187607), abs=1e-12)
    assert clopper_pearson(10, 10) == pytest.approx((0.6915028921812392, 1.0), abs=1e-12)
    assert clopper_pearson(37, 100, 0.9) == pytest.approx(
        (0.2893553674409980, 0.4565659065200737), abs=1e-12)
    low, high = clopper_pearson(0, 0)
    assert np.isnan(low) and np.isnan(high)
