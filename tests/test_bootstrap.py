"""Parametric bootstrap: percentile intervals, failed refits counted, settings checked."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import SettingsError
from pipeline.models import load_specs
from pipeline.models.bootstrap import (
    BootstrapSettings,
    TooManyFailedRefits,
    bootstrap_settings,
    bootstrap_table,
    parametric_bootstrap,
    truth_of,
)
from pipeline.models.fitting import fit_formula
from pipeline.parallel import ExecutionSettings
from pipeline.simulation.alliance import AllianceProcess
from pipeline.simulation.design import StudyDesign
from pipeline.simulation.outcome import ModelTruth
from pipeline.simulation.study import simulate_study

PROCESS = AllianceProcess(mean=(3.7, 3.6, 3.9), growth=0.03, therapist_sd=0.2, client_sd=0.5,
                          session_sd=0.35, client_corr=0.6, session_corr=0.5)
TRUTH = ModelTruth({"Intercept": 21.0, "time": 0.15, "goal_within": 0.8, "task_within": 0.6,
                    "bond_within": 0.4, "goal_between": 1.2, "task_between": 0.8,
                    "bond_between": 0.5},
                   {"therapist": 1.0, "client": 2.5, "client_time": 0.2, "residual": 2.0},
                   client_time_corr=-0.3)


def _fitted(model: str, seed: int = 4) -> tuple[Any, pd.DataFrame, Any]:
    from pipeline.models import model_data

    spec = load_specs().get(model)
    data = simulate_study(StudyDesign(15, 8, 8), PROCESS, TRUTH, np.random.default_rng(seed),
                          lambda s: model_data(s, None, spec))
    fit, _ = fit_formula(data, spec.formula, spec.random, reml=spec.reml, model=model)
    return fit, data, spec


def test_bootstrap_intervals_of_the_primary_model() -> None:
    fit, data, spec = _fitted("primary")
    table = parametric_bootstrap(fit, data, spec, BootstrapSettings(replications=30, seed=5),
                                 ExecutionSettings(workers=1), {}).set_index("quantity")
    assert set(table.index) >= {"sd_therapist", "sd_client", "sd_residual", "icc_therapist",
                                "icc_client", "r2_marginal", "r2_conditional"}
    assert "corr_client_time" not in table.index  # uncorrelated slope: not estimated
    assert (table["replications"] == 30).all()
    assert (table["conf_low"] < table["conf_high"]).all()
    # The residual SD is well determined: its interval is narrow and holds the estimate.
    res = table.loc["sd_residual"]
    assert res["conf_low"] < res["estimate"] < res["conf_high"]
    assert res["conf_high"] - res["conf_low"] < 0.3
    # The truth (2.0) is within a generous distance of the interval.
    assert res["conf_low"] - 0.2 < 2.0 < res["conf_high"] + 0.2


def test_truth_of_a_correlated_fit_carries_the_correlation() -> None:
    fit, _, _ = _fitted("sens_correlated")
    truth = truth_of(fit)
    cov = fit.variances["cov_client_client_time"]
    expected = cov / np.sqrt(fit.variances["client"] * fit.variances["client_time"])
    assert truth.client_time_corr == pytest.approx(expected)
    assert truth.sd["residual"] == pytest.approx(np.sqrt(fit.variances["residual"]))
    assert truth.fixed["goal_within"] == pytest.approx(float(fit.beta["goal_within"]))


def test_percentiles_and_failures_from_replicates() -> None:
    reps = [{"status": "fitted", "sd_residual": float(v), "r2_marginal": 0.1,
             **{q: np.nan for q in ("sd_therapist", "sd_client", "sd_client_time",
                                    "corr_client_time", "icc_therapist", "icc_client",
                                    "r2_conditional")}}
            for v in range(1, 101)]
    reps += [{"status": "not converged"}] * 5
    estimate = {"sd_residual": 50.0, "r2_marginal": 0.1, "sd_therapist": np.nan,
                "sd_client": np.nan, "sd_client_time": np.nan, "corr_client_time": np.nan,
                "icc_therapist": np.nan, "icc_client": np.nan, "r2_conditional": np.nan}
    table = bootstrap_table("m", estimate, reps, BootstrapSettings(conf_level=0.9))
    row = table.set_index("quantity").loc["sd_residual"]
    assert row["conf_low"] == pytest.approx(np.quantile(np.arange(1, 101), 0.05))
    assert row["conf_high"] == pytest.approx(np.quantile(np.arange(1, 101), 0.95))
    assert row["failed"] == 5 and row["replications"] == 105
    with pytest.raises(TooManyFailedRefits, match="5 of 105 refits") as caught:
        bootstrap_table("m", estimate, reps, BootstrapSettings(max_failed_share=0.01))
    # the run stops before the reports: the message named "the models report", which this
    # run does not make (reports/ is the last run's); it names where to look and what to set
    message = str(caught.value)
    assert "models report" not in message
    for where in ("build/results/fit_statistics.csv", "bootstrap.model",
                  "bootstrap.max_failed_share", "reports/ still holds the last run's"):
        assert where in message, where


@pytest.mark.parametrize(("block", "message"), [
    ({"replications": 5}, "bootstrap.replications"),
    ({"conf_level": 95}, "not a percentage"),
    ({"seed": -1}, "bootstrap.seed"),
    ({"reps": 100}, "bootstrap.reps is not a setting"),
    ({"alliance_levels": "yes"}, "bootstrap.alliance_levels is 'yes'"),
])
def test_bad_bootstrap_settings(block: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        bootstrap_settings(block)


def test_a_model_that_cannot_be_estimated_gives_an_empty_table() -> None:
    from pipeline.models.bootstrap import bootstrap_model

    scored = pd.DataFrame({"client_id": ["C1", "C1", "C2", "C2"],
                           "therapist_id": ["T1"] * 4, "session": [1, 2, 1, 2],
                           "goal": [3.0, 3.5, 4.0, 4.5], "task": [3.0, 3.2, 4.1, 4.0],
                           "bond": [3.3, 3.5, 4.2, 4.4], "wellbeing": [20.0, 21, 22, 23]})
    table = bootstrap_model(scored, None, {"bootstrap": {"replications": 10, "seed": 1}})
    assert table.empty and list(table.columns)[:3] == ["model", "quantity", "estimate"]
    assert table.attrs["note"]


def test_the_alliance_shares_are_bootstrapped_beside_the_model() -> None:
    """bootstrap.alliance_levels (default): the three alliance_levels_* models get rows
    (SDs and shares; no R², which is 0 or the shares for a model without predictors), and
    the main model's rows are the same bytes with or without them (each model its own
    seed)."""
    from pipeline.models.bootstrap import ALLIANCE_LEVELS, bootstrap_model

    _, data, _ = _fitted("primary", seed=7)
    scored = data[["client_id", "therapist_id", "session", "goal", "task", "bond",
                   "wellbeing"]]
    block = {"replications": 20, "seed": 3}
    params = {"bootstrap": block, "parallel": {"workers": 1}}
    both = bootstrap_model(scored, None, params)
    alone = bootstrap_model(scored, None, {**params,
                                           "bootstrap": {**block, "alliance_levels": False}})
    assert list(dict.fromkeys(both["model"])) == ["primary", *ALLIANCE_LEVELS]
    assert set(alone["model"]) == {"primary"}
    pd.testing.assert_frame_equal(both[both["model"] == "primary"].reset_index(drop=True),
                                  alone)
    goal = both[both["model"] == "alliance_levels_goal"].set_index("quantity")
    assert list(goal.index) == ["sd_therapist", "sd_client", "sd_residual", "icc_therapist",
                                "icc_client"]
    assert (goal["conf_low"] <= goal["estimate"]).all()
    assert (goal["estimate"] <= goal["conf_high"]).all()
    # the simulated process's client share of goal: 0.5^2 / (0.2^2 + 0.5^2 + 0.35^2) = 0.606
    true_share = 0.5**2 / (0.2**2 + 0.5**2 + 0.35**2)
    assert goal.loc["icc_client", "conf_low"] < true_share < goal.loc["icc_client", "conf_high"]


def test_a_model_of_fewer_clients_than_min_cell_is_not_bootstrapped() -> None:
    from pipeline.models.bootstrap import bootstrap_model

    _, data, _ = _fitted("primary")
    few = data[data["client_id"].isin(sorted(set(data["client_id"]))[:4])]
    scored = few[["client_id", "therapist_id", "session", "goal", "task", "bond", "wellbeing"]]
    table = bootstrap_model(scored, None, {"bootstrap": {"replications": 10, "seed": 1},
                                           "report": {"min_cell": 5}})
    assert table.empty
    assert table.attrs["note"].startswith(
        "primary: not estimable: fewer than report.min_cell = 5 clients have the rows")
