"""Simulation from a model: designs, alliance (scores and items), outcome from the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import SettingsError
from pipeline.instruments import load_instrument
from pipeline.models import prepare
from pipeline.simulation.alliance import (
    AllianceProcess,
    alliance_items,
    alliance_scores,
    latent_alliance,
    process_from_settings,
)
from pipeline.simulation.design import StudyDesign, design_from_settings, session_rows
from pipeline.simulation.outcome import ModelTruth, check_truth, simulate_outcome
from pipeline.simulation.study import simulate_study

PROCESS = AllianceProcess(mean=(3.7, 3.6, 3.9), growth=0.03, therapist_sd=0.2, client_sd=0.5,
                          session_sd=0.35, client_corr=0.6, session_corr=0.5, item_sd=0.5)


def test_balanced_design_has_every_planned_session() -> None:
    rows = session_rows(StudyDesign(3, 4, 5), np.random.default_rng(1))
    assert len(rows) == 3 * 4 * 5
    assert rows["client_id"].nunique() == 12
    assert rows.groupby("client_id")["therapist_id"].nunique().max() == 1
    assert rows.groupby("therapist_id")["client_id"].nunique().tolist() == [4, 4, 4]
    assert rows["has_alliance"].all() and rows["has_outcome"].all()


def test_attendance_keeps_every_first_session() -> None:
    rows = session_rows(StudyDesign(10, 10, 10, attendance=0.5), np.random.default_rng(2))
    assert (rows["session"] == 1).sum() == 100
    later = rows[rows["session"] > 1]
    assert len(later) / (100 * 9) == pytest.approx(0.5, abs=0.05)


@pytest.mark.parametrize(("block", "message"), [
    ({"therapists": 0, "clients_per_therapist": 2, "sessions": 2}, "therapists"),
    ({"therapists": 2, "clients_per_therapist": 2.5, "sessions": 2}, "clients_per_therapist"),
    ({"therapists": 2, "clients_per_therapist": 2, "sessions": 2, "attendance": 0},
     "attendance"),
    ({"therapists": 2, "clients_per_therapist": 2, "sessions": 2, "clinics": 2}, "clinics"),
])
def test_bad_designs_name_the_setting(block: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        design_from_settings(block, "power.designs[0]")


def test_latent_alliance_has_the_stated_variance_structure() -> None:
    rows = session_rows(StudyDesign(200, 20, 6), np.random.default_rng(3))
    latent = latent_alliance(rows, PROCESS, np.random.default_rng(4))
    frame = rows[["therapist_id", "client_id", "session"]].assign(goal=latent[:, 0],
                                                                  bond=latent[:, 2])
    # Growth: the mean rises by 0.03 a session.
    slope = np.polyfit(frame["session"], frame["goal"], 1)[0]
    assert slope == pytest.approx(0.03, abs=0.01)
    # Session-level SD: within-client deviations after removing the client mean and growth.
    detrended = frame["goal"] - 0.03 * (frame["session"] - 1)
    within = detrended - detrended.groupby(frame["client_id"]).transform("mean")
    assert within.std() * np.sqrt(6 / 5) == pytest.approx(0.35, rel=0.05)
    # Session-level correlation between subscales.
    within_bond = (frame["bond"] - 0.03 * (frame["session"] - 1))
    within_bond = within_bond - within_bond.groupby(frame["client_id"]).transform("mean")
    assert np.corrcoef(within, within_bond)[0, 1] == pytest.approx(0.5, abs=0.05)


def test_items_are_written_as_answered_and_scored_with_the_key() -> None:
    wai_s = load_instrument("wai_s")  # 1-7, items 4 and 10 reversed
    assert wai_s.reversed
    latent = np.tile([6.5, 6.5, 6.5], (2000, 1))
    items = alliance_items(latent, wai_s, 0.3, np.random.default_rng(5))
    for item in range(1, wai_s.n_items + 1):
        mean = items[f"{wai_s.item_prefix}_{item}"].mean()
        if item in wai_s.reversed:
            assert mean < 2.0  # a strong alliance is a low answer on a reversed item
        else:
            assert mean > 6.0
    rows = session_rows(StudyDesign(20, 10, 4), np.random.default_rng(6))
    high = AllianceProcess(mean=(6.0, 6.0, 6.0), growth=0.0, therapist_sd=0.1, client_sd=0.3,
                           session_sd=0.2, client_corr=0.5, session_corr=0.5, item_sd=0.3)
    scored = alliance_scores(rows, high, np.random.default_rng(7), instrument=wai_s)
    for name in ("goal", "task", "bond"):
        assert scored[name].mean() == pytest.approx(6.0, abs=0.15)
        assert scored[name].between(1, 7).all()


def test_process_settings_are_checked() -> None:
    block = {"mean": [3.7, 3.6, 3.9], "growth": 0.03, "therapist_sd": 0.2, "client_sd": 0.5,
             "session_sd": 0.35, "client_corr": 0.6, "session_corr": 0.5}
    assert process_from_settings(block, "power.alliance").client_sd == 0.5
    with pytest.raises(SettingsError, match="mean"):
        process_from_settings({**block, "mean": [3.7]}, "power.alliance")
    with pytest.raises(SettingsError, match="client_corr"):
        process_from_settings({**block, "client_corr": 1.2}, "power.alliance")


def test_truth_is_checked() -> None:
    with pytest.raises(SettingsError, match="clinic"):
        check_truth(ModelTruth({"Intercept": 1}, {"residual": 1, "clinic": 1}), "power")
    with pytest.raises(SettingsError, match="residual"):
        check_truth(ModelTruth({"Intercept": 1}, {"client": 1}), "power")
    with pytest.raises(SettingsError, match="not a numeric column"):
        simulate_outcome(pd.DataFrame({"therapist_id": ["T1"], "client_id": ["C1"],
                                       "time": [0.0]}),
                         ModelTruth({"mood": 1.0}, {"residual": 1.0}),
                         np.random.default_rng(0))


def test_outcome_moments_match_the_truth() -> None:
    """Marginal variance components of y - X beta by moments on a large balanced design."""
    n_t, n_c, n_s = 400, 10, 5
    data = session_rows(StudyDesign(n_t, n_c, n_s), np.random.default_rng(8))
    data["time"] = data["session"] - 1.0
    truth = ModelTruth({"Intercept": 20.0, "time": 0.5},
                       {"therapist": 1.0, "client": 2.0, "client_time": 0.3, "residual": 1.5},
                       client_time_corr=-0.4)
    resid = simulate_outcome(data, truth, np.random.default_rng(9)) - 20.0 - 0.5 * data["time"]
    first = resid[data["session"] == 1]
    # At time 0 the variance is therapist + client + residual.
    assert first.var() == pytest.approx(1.0 + 4.0 + 2.25, rel=0.05)
    # The client slope: var(y_t4 - y_t0) = 16 * 0.09 + 2 * 2.25.
    by_client = resid.groupby(data["client_id"])
    change = by_client.nth(4).to_numpy() - by_client.nth(0).to_numpy()
    assert change.var() == pytest.approx(16 * 0.09 + 2 * 2.25, rel=0.06)
    # Covariance of intercept and slope: cov(y_t0, y_t4 - y_t0) = 4 * rho * 2 * 0.3 - 2.25.
    cov = np.cov(by_client.nth(0).to_numpy(), change)[0, 1]
    assert cov == pytest.approx(4 * -0.4 * 2.0 * 0.3 - 2.25, abs=0.15)


def test_simulated_study_goes_through_the_projects_design_code() -> None:
    truth = ModelTruth({"Intercept": 21.0, "time": 0.15, "goal_within": 0.8,
                        "goal_between": 1.2},
                       {"therapist": 1.0, "client": 2.5, "client_time": 0.1, "residual": 2.0})
    design = StudyDesign(6, 5, 4, attendance=0.8, p_alliance_form=0.9)
    data = simulate_study(design, PROCESS, truth, np.random.default_rng(10), prepare)
    assert {"goal_within", "goal_between", "time", "wellbeing"} <= set(data.columns)
    # Person-mean disaggregation on the rows used: within sums to 0 per client.
    sums = data.groupby("client_id")["goal_within"].sum()
    assert np.allclose(sums, 0.0, atol=1e-12)
    again = simulate_study(design, PROCESS, truth, np.random.default_rng(10), prepare)
    pd.testing.assert_frame_equal(data, again)
