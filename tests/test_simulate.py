"""The shipped simulated data set: made by pipeline/simulation/, deterministic, in the input
contract, scored and built by the project's own code, and shipped as generated."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.instruments import load_instrument
from pipeline.models import fit_all, load_specs, model_data
from pipeline.simulation.covariates import APPROACHES, client_covariates
from pipeline.simulation.dataset import STREAMS, simulate_dataset, write_simulated
from pipeline.simulation.design import (
    Caseload,
    attended_sessions,
    caseload_clients,
)
from pipeline.simulation.items import outcome_items, reportable_scores, split_raw_sum


@pytest.fixture(scope="module")
def sim(params: dict):
    return simulate_dataset(params["simulate"])


def test_same_seed_same_data(params: dict, sim) -> None:
    again = simulate_dataset(params["simulate"])
    pd.testing.assert_frame_equal(sim.alliance, again.alliance)
    pd.testing.assert_frame_equal(sim.outcome, again.outcome)
    pd.testing.assert_frame_equal(sim.clients, again.clients)
    assert sim.truth == again.truth
    other = copy.deepcopy(params["simulate"])
    other["seed"] += 1
    assert not sim.scored["wellbeing"].equals(simulate_dataset(other).scored["wellbeing"])


def test_shipped_files_are_the_simulators_output(sim, root: Path, tmp_path: Path) -> None:
    """data/simulated/ is exactly what `python -m pipeline simulate` writes from params.yaml."""
    write_simulated(sim, tmp_path)
    for name in ("alliance.csv", "outcome.csv", "clients.csv", "truth.yaml"):
        assert (tmp_path / name).read_bytes() == (root / "data/simulated" / name).read_bytes(), name


def test_shape_like_real_data(params: dict, sim) -> None:
    counts = sim.truth["counts"]
    assert counts["therapists"] == params["simulate"]["n_therapists"]
    assert 100 <= counts["clients"] <= 999
    assert counts["attended_sessions"] >= 2000
    per_client = sim.alliance.groupby("client_id")["session"].agg(["count", "max"])
    # uneven lengths and missed sessions (gaps in the session numbers)
    assert per_client["count"].nunique() > 5
    assert (per_client["count"] < per_client["max"]).mean() > 0.3
    # contract columns
    assert list(sim.alliance.columns[:3]) == ["client_id", "therapist_id", "session"]
    assert [f"wai_sr_{i}" for i in range(1, 13)] == list(sim.alliance.columns[3:])
    assert [f"swemwbs_{i}" for i in range(1, 8)] == list(sim.outcome.columns[2:])
    ending = {"ending"} if (params["simulate"].get("endings") or {}).get("enabled") else set()
    assert set(sim.clients.columns) == {"client_id", "approach", "modality"} | ending
    items = sim.alliance.iloc[:, 3:].to_numpy(dtype=float)
    assert np.nanmin(items) >= 1 and np.nanmax(items) <= 5
    assert np.isnan(items).any()  # a few blank items, as in real data
    # each client has one therapist
    assert sim.alliance.groupby("client_id")["therapist_id"].nunique().max() == 1
    # the realised shares of the settings (5% forms not returned, 0.5% items blank)
    assert counts["alliance_rows"] / counts["attended_sessions"] == pytest.approx(
        params["simulate"]["p_alliance_form"], abs=0.02)
    assert np.isnan(items).mean() == pytest.approx(params["simulate"]["p_item_missing"],
                                                   abs=0.002)


def test_truth_written_beside_data(root: Path, params: dict) -> None:
    truth = yaml.safe_load((root / "data/simulated/truth.yaml").read_text())
    assert "SIMULATED" in truth["description"] and "pipeline/simulation/" in truth["description"]
    fixed = truth["primary_model"]["fixed"]
    wb = params["simulate"]["wellbeing"]
    assert fixed == {k: wb[k] for k in ("intercept", "time", "goal_within", "task_within",
                                        "bond_within", "goal_between", "task_between",
                                        "bond_between")}
    assert truth["primary_model"]["sd"] == {
        "therapist": wb["therapist_sd"], "client": wb["client_sd"],
        "client_time": wb["client_time_sd"], "residual": wb["residual_sd"]}


def test_outcome_conditions_on_the_projects_scoring_and_design(sim) -> None:
    """Scoring the written files (pipeline.score) and building the primary model's
    predictors from them (pipeline.models.model_data) gives exactly the rows and
    predictors the outcome was generated from; their count is the one in truth.yaml."""
    built = model_data(sim.scored, None, load_specs().get("primary"))
    columns = ["client_id", "therapist_id", "session", "time", "wellbeing",
               *(f"{k}_{w}" for k in ("goal", "task", "bond") for w in ("within", "between"))]
    pd.testing.assert_frame_equal(built[columns], sim.predictors[columns])
    assert len(built) == sim.truth["counts"]["rows_complete_for_primary_model"]


def test_wellbeing_items_sum_to_the_metric_score(sim) -> None:
    """The SWEMWBS items of each complete row convert back, through the instrument's table,
    to the score the generator drew for that row."""
    conv = load_instrument("swemwbs").conversion
    assert conv is not None
    merged = sim.outcome.merge(sim.predictors[["client_id", "session", "wellbeing"]],
                               on=["client_id", "session"])
    raw = merged[[f"swemwbs_{i}" for i in range(1, 8)]].sum(axis=1).astype(int)
    np.testing.assert_allclose(raw.map(conv).to_numpy(), merged["wellbeing"].to_numpy())


def test_reportable_scores_are_the_conversion_table() -> None:
    swem = load_instrument("swemwbs")
    assert swem.conversion is not None
    raw, score = reportable_scores(swem)
    assert raw.tolist() == list(range(7, 36))
    assert score.tolist() == [swem.conversion[r] for r in range(7, 36)]
    # A plain sum score (PHQ-9, 0-3, higher = worse) is reoriented as the scorer does.
    phq = load_instrument("phq9")
    raw, score = reportable_scores(phq)
    assert raw.tolist() == list(range(0, 28))
    assert score.tolist() == [27.0 - r for r in range(0, 28)]


def test_outcome_items_round_to_the_nearest_score() -> None:
    swem = load_instrument("swemwbs")
    assert swem.conversion is not None
    items, score = outcome_items(np.array([7.0, 35.0, 20.0, 100.0]), swem,
                                 np.random.default_rng(1))
    # 7.00 and 35.00 are the table's ends; 20.0 lies between 19.98 (raw 22) and 20.73
    # (raw 23), nearer the first; 100 is above the top.
    assert score.tolist() == [7.0, 35.0, 19.98, 35.0]
    assert items.sum(axis=1).tolist() == [7.0, 35.0, 22.0, 35.0]
    parts = split_raw_sum(np.full(4000, 21), 7, 1, 5, np.random.default_rng(2))
    assert (parts.sum(axis=1) == 21).all() and parts.min() >= 1 and parts.max() <= 5
    # uniform over slots: every item has the same mean, 3
    assert np.allclose(parts.mean(axis=0), 3.0, atol=0.06)


def test_caseload_and_covariates() -> None:
    case = Caseload(therapists=40, clients_per_therapist=2.0, sessions_mean=6.0,
                    sessions_min=3, sessions_max=8, attendance=0.5)
    rng = np.random.default_rng(3)
    clients = caseload_clients(case, rng)
    assert clients.groupby("therapist_id").size().min() >= 3  # at least 3 clients
    assert clients["planned"].between(3, 8).all()
    rows = attended_sessions(clients, case.attendance, rng)
    assert rows.groupby("client_id")["session"].min().eq(1).all()  # session 1 attended
    later = rows[rows["session"] > 1]
    planned_later = int((clients["planned"] - 1).sum())
    assert len(later) / planned_later == pytest.approx(0.5, abs=0.04)
    cov = client_covariates(clients, np.random.default_rng(4))
    joined = cov.merge(clients, on="client_id")
    assert joined.groupby("therapist_id")["approach"].nunique().max() == 1
    assert set(cov["approach"]) <= set(APPROACHES)
    assert set(cov["modality"]) == {"video", "in person"}


def test_streams_keep_their_draws_when_a_step_is_switched_off(params: dict) -> None:
    """Each step has its own child of SeedSequence(seed): without endings the design and
    the covariates are unchanged."""
    assert len(set(STREAMS)) == len(STREAMS)
    off = copy.deepcopy(params["simulate"])
    off["endings"]["enabled"] = False
    a, b = simulate_dataset(params["simulate"]), simulate_dataset(off)
    pd.testing.assert_frame_equal(a.clients.drop(columns="ending"), b.clients)
    assert a.truth["counts"]["clients"] == b.truth["counts"]["clients"]
    assert b.truth["counts"]["attended_sessions"] > a.truth["counts"]["attended_sessions"]


def test_primary_model_recovers_the_truth_without_ruptures_and_endings(params: dict) -> None:
    """Without the injected steps the primary model holds exactly (up to the SWEMWBS
    rounding): every fixed effect of the fit lies within 2.5 standard errors of its
    true value, and the residual and client SDs within 10%."""
    cfg = copy.deepcopy(params["simulate"])
    cfg["ruptures"]["enabled"] = False
    cfg["endings"]["enabled"] = False
    sim = simulate_dataset(cfg)
    fit = fit_all(sim.scored, None, params["model"], models=["primary"], verbose=False)[0]
    assert fit.status == "fitted"
    truth = sim.truth["primary_model"]
    z = {}
    for key, value in truth["fixed"].items():
        term = "Intercept" if key == "intercept" else key
        z[key] = (fit.fit.beta[term] - value) / fit.fit.std_error[term]
    assert max(abs(v) for v in z.values()) < 2.5, z
    sd = {name: float(np.sqrt(v)) for name, v in fit.fit.variances.items()}
    assert sd["residual"] == pytest.approx(truth["sd"]["residual"], rel=0.1)
    assert sd["client"] == pytest.approx(truth["sd"]["client"], rel=0.1)
