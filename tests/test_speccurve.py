"""Specification curve: every combination, the plan's own specification equals the primary
model, specifications the data cannot support are kept with their reason."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import SettingsError
from pipeline.models import load_specs, model_data
from pipeline.models.fitting import fit_formula
from pipeline.simulation.alliance import AllianceProcess
from pipeline.simulation.design import StudyDesign
from pipeline.simulation.outcome import ModelTruth
from pipeline.simulation.study import simulate_study
from pipeline.speccurve import (
    curve_settings,
    spec_data,
    specification_curve,
    specifications,
)

BLOCK: dict[str, Any] = {
    "within": ["person_mean", "detrended"], "lag": [0, 1],
    "random_slope": ["none", "uncorrelated", "correlated"], "estimation": ["reml", "ml"],
    "min_sessions": [1, 3], "terms": ["goal_within", "task_within", "bond_within"],
    "formulas": {0: "primary", 1: "lagged"},
    "random_parts": {"none": "therapist_client", "uncorrelated": "therapist_client_slope",
                     "correlated": "therapist_client_corr_slope"},
}
PROCESS = AllianceProcess(mean=(3.7, 3.6, 3.9), growth=0.03, therapist_sd=0.2, client_sd=0.5,
                          session_sd=0.35, client_corr=0.6, session_corr=0.5)
TRUTH = ModelTruth({"Intercept": 21.0, "time": 0.15, "goal_within": 0.8, "task_within": 0.6,
                    "bond_within": 0.4, "goal_between": 1.2, "task_between": 0.8,
                    "bond_between": 0.5},
                   {"therapist": 1.0, "client": 2.5, "client_time": 0.15, "residual": 2.0})


def _scored(sessions: int, seed: int = 1) -> pd.DataFrame:
    from pipeline.models import prepare

    data = simulate_study(StudyDesign(8, 6, sessions), PROCESS, TRUTH,
                          np.random.default_rng(seed), prepare)
    return data[["client_id", "therapist_id", "session", "goal", "task", "bond", "wellbeing"]]


def test_every_combination_once() -> None:
    specs = specifications(curve_settings(BLOCK))
    assert len(specs) == 2 * 2 * 3 * 2 * 2
    assert len({s["spec"] for s in specs}) == len(specs)


def test_the_plans_specification_is_the_primary_model() -> None:
    scored = _scored(6)
    block = {**BLOCK, "within": ["person_mean"], "lag": [0], "random_slope": ["uncorrelated"],
             "estimation": ["reml"], "min_sessions": [1]}
    curve = specification_curve(scored, curve_settings(block), {}).set_index("term")
    spec = load_specs().get("primary")
    fit, _ = fit_formula(model_data(scored, None, spec), spec.formula, spec.random)
    for term in ("goal_within", "task_within", "bond_within"):
        assert curve.loc[term, "estimate"] == pytest.approx(float(fit.beta[term]), rel=1e-10)
        assert curve.loc[term, "df"] == pytest.approx(float(fit.df[term]), rel=1e-8)


def test_lagged_detrended_predictor_is_the_previous_detrended_deviation() -> None:
    scored = _scored(5)
    spec = {"within": "detrended", "lag": 1, "min_sessions": 1}
    lagged = spec_data(scored, spec)
    plain = spec_data(scored, {"within": "detrended", "lag": 0, "min_sessions": 1})
    client = plain["client_id"].iloc[0]
    own = plain[plain["client_id"] == client].sort_values("session")
    mine = lagged[lagged["client_id"] == client].sort_values("session")
    assert np.allclose(mine["goal_within_lag"].to_numpy(), own["goal_within"].to_numpy()[:-1])
    # Detrended deviations have no linear trend left within a client.
    slope = np.polyfit(own["time"], own["goal_within"], 1)[0]
    assert abs(slope) < 1e-10


def test_specifications_the_data_cannot_support_keep_their_reason() -> None:
    scored = _scored(2)  # two sessions per client: no slope, little lag
    block = {**BLOCK, "within": ["person_mean"], "lag": [0], "estimation": ["reml"],
             "random_slope": ["none", "uncorrelated"], "min_sessions": [1, 3]}
    curve = specification_curve(scored, curve_settings(block), {})
    slope = curve[curve["random_slope"] == "uncorrelated"]
    assert (slope["status"] == "not estimable").all()
    assert slope["estimate"].isna().all()
    assert slope["reason"].str.len().gt(0).all()
    fine = curve[(curve["random_slope"] == "none") & (curve["min_sessions"] == 1)]
    assert fine["status"].isin(["fitted", "singular"]).all()
    assert fine["estimate"].notna().all()
    # No client has three sessions: that subset has no rows to fit.
    assert curve[curve["min_sessions"] == 3]["estimate"].isna().all()


@pytest.mark.parametrize(("change", "message"), [
    ({"lag": [2]}, "specification_curve.lag"),
    ({"within": []}, "specification_curve.within"),
    ({"min_sessions": [0]}, "specification_curve.min_sessions"),
    ({"formulas": {0: "primary"}}, "no model for lag 1"),
    ({"random_parts": {"none": "therapist_client"}}, "no random part for 'uncorrelated'"),
    ({"lags": [0]}, "specification_curve.lags is not a setting"),
])
def test_bad_settings_name_the_setting(change: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        curve_settings({**BLOCK, **change})


def test_a_specification_of_fewer_clients_than_min_clients_shows_no_numbers() -> None:
    """Its estimates and its n_clients would describe a group below report.min_cell."""
    scored = _scored(4)
    few = scored[scored["client_id"].isin(sorted(set(scored["client_id"]))[:4])]
    block = {**BLOCK, "within": ["person_mean"], "lag": [0], "estimation": ["reml"],
             "random_slope": ["none"], "min_sessions": [1]}
    curve = specification_curve(few, curve_settings(block), {}, min_clients=5)
    assert (curve["status"] == "not estimable").all() and curve["estimate"].isna().all()
    assert curve["n_clients"].isna().all() and (curve["n_obs"] == len(few)).all()
    assert curve["reason"].str.startswith("fewer than report.min_cell = 5 clients").all()
    fitted = specification_curve(few, curve_settings(block), {}, min_clients=4)
    assert (fitted["n_clients"] == 4).all()
    assert not fitted["reason"].fillna("").str.contains("report.min_cell").any()
