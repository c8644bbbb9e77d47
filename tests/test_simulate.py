"""The seeded simulator: deterministic, in the input contract, and shipped as generated."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pipeline.simulate import simulate, write_simulated


def test_same_seed_same_data(params: dict) -> None:
    a = simulate(params["simulate"])
    b = simulate(params["simulate"])
    pd.testing.assert_frame_equal(a.alliance, b.alliance)
    pd.testing.assert_frame_equal(a.outcome, b.outcome)
    other = copy.deepcopy(params["simulate"])
    other["seed"] += 1
    c = simulate(other)
    assert not a.scored["wellbeing"].equals(c.scored["wellbeing"])


def test_shipped_files_are_the_simulators_output(params: dict, root: Path, tmp_path: Path) -> None:
    """data/simulated/ is exactly what `python -m pipeline simulate` writes from params.yaml."""
    write_simulated(simulate(params["simulate"]), tmp_path)
    for name in ("alliance.csv", "outcome.csv", "clients.csv", "truth.yaml"):
        assert (tmp_path / name).read_bytes() == (root / "data/simulated" / name).read_bytes(), name


def test_shape_like_real_data(params: dict) -> None:
    sim = simulate(params["simulate"])
    counts = sim.truth["counts"]
    assert 10 <= counts["therapists"] <= 99
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


def test_truth_written_beside_data(root: Path, params: dict) -> None:
    truth = yaml.safe_load((root / "data/simulated/truth.yaml").read_text())
    assert "SIMULATED" in truth["description"]
    fixed = truth["primary_model"]["fixed"]
    assert fixed["goal_within"] == params["simulate"]["wellbeing"]["goal_within"]
    assert set(fixed) == {"intercept", "time", "goal_within", "task_within", "bond_within",
                          "goal_between", "task_between", "bond_between"}


def test_wellbeing_items_sum_to_the_metric_score(params: dict) -> None:
    """The SWEMWBS items of each complete row convert back to the scored wellbeing."""
    from pipeline.instruments import load_instrument

    sim = simulate(params["simulate"])
    conv = load_instrument("swemwbs").conversion
    assert conv is not None
    merged = sim.outcome.merge(sim.scored, on=["client_id", "session"])
    raw = merged[[f"swemwbs_{i}" for i in range(1, 8)]].sum(axis=1).astype(int)
    np.testing.assert_allclose(raw.map(conv).to_numpy(), merged["wellbeing"].to_numpy())
