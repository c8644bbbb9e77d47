"""Simulated ruptures and endings, and the optional `ending` column of the clients file."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest

from pipeline.instruments import load_instrument
from pipeline.simulation.alliance import process_from_settings
from pipeline.simulation.dataset import simulate_alliance, simulate_dataset
from pipeline.simulation.ruptures import sigma_total
from pipeline.validate import InputError, validate_inputs

GOOD = Path(__file__).parent / "bad_inputs" / "good"


def test_switched_off_the_simulator_makes_the_data_it_made_before(params: dict) -> None:
    """New settings off (or absent): identical files to the simulator without them."""
    off = copy.deepcopy(params["simulate"])
    off["ruptures"]["enabled"] = False
    off["endings"]["enabled"] = False
    absent = {k: v for k, v in params["simulate"].items() if k not in ("ruptures", "endings")}
    a, b = simulate_dataset(off), simulate_dataset(absent)
    pd.testing.assert_frame_equal(a.alliance, b.alliance)
    pd.testing.assert_frame_equal(a.outcome, b.outcome)
    pd.testing.assert_frame_equal(a.clients, b.clients)
    assert "ruptures" not in b.truth and "ending" not in b.clients.columns


def test_alliance_part_alone_draws_what_the_full_simulation_draws(params: dict) -> None:
    """The rupture benchmark simulates the alliance only: the same file and episodes."""
    cfg = copy.deepcopy(params["simulate"])
    cfg.update(n_therapists=6, clients_per_therapist=6)
    full, alone = simulate_dataset(cfg), simulate_alliance(cfg)
    pd.testing.assert_frame_equal(alone.alliance, full.alliance)
    pd.testing.assert_frame_equal(alone.ruptures.episodes, full.episodes)
    assert len(full.episodes) > 0 and "ending" in full.clients.columns
    assert alone.ending is not None and (alone.ending == full.clients["ending"]).all()


def test_injected_episodes_are_the_truth(params: dict) -> None:
    sim = simulate_dataset(params["simulate"])
    cfg = params["simulate"]["ruptures"]
    eps = sim.episodes
    assert len(eps) == sim.truth["ruptures"]["counts"]["episodes"] > 0
    assert (eps["rupture_session"] >= 2).all()
    rep = eps[eps["repaired"]]
    assert (rep["repair_session"] == rep["rupture_session"] + rep["length"]).all()
    assert eps.loc[~eps["repaired"], "repair_session"].isna().all()
    share = len(rep) / len(eps)
    assert abs(share - cfg["p_repair"]) < 0.15
    drop = sim.truth["ruptures"]["drop_points"]
    process = process_from_settings(params["simulate"]["alliance"], "simulate.alliance")
    assert drop == pytest.approx(cfg["depth_sd"] * sigma_total(process))
    assert len(sim.truth["ruptures"]["episodes"]) == len(eps)


def test_injected_drop_shows_in_the_scored_total(params: dict) -> None:
    cfg = copy.deepcopy(params["simulate"])
    cfg["ruptures"].update(p_client=1.0, length_values=[1], length_probs=[1.0], p_repair=1.0)
    cfg["endings"]["enabled"] = False
    sim = simulate_dataset(cfg)
    scored = sim.scored.assign(total=sim.scored[["goal", "task", "bond"]].mean(axis=1))
    merged = scored.merge(sim.episodes, on="client_id")
    at = merged[merged["session"] == merged["rupture_session"]]["total"].mean()
    other = merged[merged["session"] != merged["rupture_session"]]["total"].mean()
    drop = sim.truth["ruptures"]["drop_points"]
    assert at - other == pytest.approx(-drop, abs=0.15)


def test_endings_truncate_series_and_label_clients(params: dict) -> None:
    sim = simulate_dataset(params["simulate"])
    ending = sim.clients.set_index("client_id")["ending"]
    assert set(ending) == {"planned", "unplanned", "ongoing"}
    assert sim.truth["endings"]["counts"] == ending.value_counts().to_dict()
    last = sim.alliance.groupby("client_id")["session"].max()
    # Unplanned endings come earlier than planned ones on average.
    assert last[ending[ending == "unplanned"].index.intersection(last.index)].mean() < \
        last[ending[ending == "planned"].index.intersection(last.index)].mean()


def _clients(tmp_path: Path, values: list[object]) -> str:
    clients = pd.read_csv(GOOD / "clients.csv")
    clients["ending"] = (values * len(clients))[: len(clients)]
    path = tmp_path / "clients.csv"
    clients.to_csv(path, index=False)
    return str(path)


def _validate(clients: str):
    paths = {"alliance": str(GOOD / "alliance.csv"), "outcome": str(GOOD / "outcome.csv"),
             "clients": clients}
    return validate_inputs(paths, load_instrument("wai_sr"), load_instrument("swemwbs"),
                           {"allow_columns": [], "k_anonymity": 5, "max_examples": 5})


def test_ending_column_is_accepted_normalised_and_not_a_covariate(tmp_path: Path) -> None:
    checked = _validate(_clients(tmp_path, ["Planned", " unplanned", "ongoing", None]))
    assert checked.clients is not None
    assert set(checked.clients["ending"].dropna()) == {"planned", "unplanned", "ongoing"}
    if checked.k_anonymity is not None:
        assert "ending" not in checked.k_anonymity.columns


def test_unknown_ending_is_refused_with_file_column_and_rule(tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        _validate(_clients(tmp_path, ["planned", "dropout"]))
    text = str(err.value)
    assert "ending" in text and "planned, unplanned, ongoing" in text and "clients.csv" in text
