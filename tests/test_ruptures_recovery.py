"""Recall and precision of every criterion on simulated data with known episodes.

"Deep clear" data: every client has one rupture, a drop of three within-client SDs of the
total score (goal, task and bond together) lasting one session, then back; every session
attended and rated. The measured values (seed 20261122, 372 clients) are in the xfail
reasons and in the final report: where a criterion does NOT reach the 0.8 asked for in
issue 12, the test is a strict xfail naming why, so that it fails the day it passes.
"""

from __future__ import annotations

import copy
from functools import lru_cache

import pandas as pd
import pytest

from pipeline.config import load_params
from pipeline.instruments import load_instrument
from pipeline.ruptures.criteria import load_criteria, load_rules, scale_reliability
from pipeline.ruptures.detect import alliance_series, detect_episodes
from pipeline.ruptures.recovery import recovery
from pipeline.simulate import simulate
from tests.conftest import ROOT

CRITERIA = ("gumz_1sd", "gumz_2sd", "reliable_drop", "v_shape")


@lru_cache(maxsize=4)
def measured(depth_sd: float, p_client: float) -> pd.DataFrame:
    """Recall, precision and false positives per 100 rated sessions per criterion."""
    params = load_params(ROOT / "params.yaml")
    cfg = copy.deepcopy(params["simulate"])
    cfg["ruptures"].update(enabled=True, p_client=p_client, depth_sd=depth_sd,
                           length_values=[1], length_probs=[1.0], p_repair=1.0)
    cfg["endings"]["enabled"] = False
    cfg.update(p_attend=1.0, p_alliance_form=1.0, p_item_missing=0.0)
    sim = simulate(cfg)
    inst = load_instrument("wai_sr")
    from pipeline.score import score_alliance

    scored, _ = score_alliance(sim.alliance, inst)
    series = alliance_series(scored, ["total"])
    criteria = load_criteria(params["ruptures"])
    episodes, _ = detect_episodes(series, criteria, load_rules(params["ruptures"]),
                                  scale_reliability(sim.alliance, inst))
    truth = sim.episodes if len(sim.episodes) else pd.DataFrame(
        columns=["client_id", "rupture_session", "repaired", "repair_session"])
    table = recovery(episodes, truth, series, criteria)
    table["false_per_100"] = 100 * (table["n_detected"] - table["n_matched"]) / len(series)
    return table.set_index("criterion")


def _xfail(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=reason)


@pytest.mark.parametrize("criterion", [
    "gumz_1sd",
    pytest.param("gumz_2sd", marks=_xfail(
        "recall 0.48: the 2-SD threshold uses the between-client SD (0.49 points on the "
        "total vs a within-client SD of 0.33), so it asks for ~3 within-client SDs")),
    "reliable_drop",
    pytest.param("v_shape", marks=_xfail(
        "recall 0.67: the return must reach the pre-drop level (mean of two sessions), "
        "which noise misses about half the time per session")),
])
def test_deep_clear_ruptures_recall(criterion: str) -> None:
    assert measured(3.0, 1.0).loc[criterion, "recall"] >= 0.8


@pytest.mark.parametrize("criterion", [
    pytest.param("gumz_1sd", marks=_xfail(
        "precision 0.60: noise alone gives ~5 drops of one between-client SD per 100 "
        "sessions; with one rupture per ~9 sessions that is 0.4 false per true episode")),
    "gumz_2sd",
    pytest.param("reliable_drop", marks=_xfail(
        "precision 0.57: the RCI threshold (0.47 points) is about 1.4 within-client SDs")),
    pytest.param("v_shape", marks=_xfail(
        "precision 0.68: noise dips followed by a return (regression to the mean)")),
])
def test_deep_clear_ruptures_precision(criterion: str) -> None:
    assert measured(3.0, 1.0).loc[criterion, "precision"] >= 0.8


def test_every_criterion_finds_deep_ruptures_better_than_shallow_ones() -> None:
    deep, shallow = measured(3.0, 1.0), measured(1.0, 1.0)
    for crit in CRITERIA:
        assert deep.loc[crit, "recall"] > shallow.loc[crit, "recall"] + 0.2, crit
        assert deep.loc[crit, "precision"] > shallow.loc[crit, "precision"], crit


def test_without_injected_ruptures_every_episode_is_a_false_positive() -> None:
    """The false-positive rate on data without ruptures (regression to the mean).

    Measured per 100 rated sessions: gumz_1sd 9.3, gumz_2sd 0.7, reliable_drop 6.5,
    v_shape 5.5. Stricter rules must produce fewer.
    """
    null = measured(3.0, 0.0)
    assert (null["n_matched"] == 0).all()
    assert null.loc["gumz_2sd", "false_per_100"] < 2.0
    assert null.loc["gumz_2sd", "false_per_100"] < null.loc["gumz_1sd", "false_per_100"]
    assert null.loc["gumz_1sd", "false_per_100"] < 15.0


def test_repair_status_of_matched_episodes_agrees_with_the_truth() -> None:
    rec = measured(3.0, 1.0)
    for crit in CRITERIA:
        assert rec.loc[crit, "status_agreement"] >= 0.8, crit
