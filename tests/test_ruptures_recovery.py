"""Recall and precision of every criterion on simulated data with known episodes.

"Deep clear" data (issue 12's target): every client has one rupture, a drop of three
within-client SDs (sigma) of the total score lasting one session, then back; every
session attended and rated (seed of params.yaml, 377 clients, about ten sessions each).
The scenarios are those of :func:`pipeline.ruptures.recovery.detection_benchmark`, so the
report shows the same numbers.

Why the published rules cannot all reach 0.8/0.8 (normal noise, sigma known): a rule
that compares a session with the mean of the two before it has a contrast with SD
``sigma * sqrt(1 + 1/2) = 1.22 sigma``. With about eight candidate sessions per client and
one true drop, precision 0.8 allows about 0.2 false episodes per client, i.e. a false
rate of about 2.5% per session, which needs a threshold of 2.4 sigma; the recall of a
3-sigma drop is then ``Phi((3 - 2.4) / 1.22) = 0.69``. Lowering the threshold to reach
recall 0.8 (2 sigma) lets through 5% of noise sessions: precision about 0.7. So no
threshold on the drop from the pre-drop level reaches both; the sudden-dip contrast (the
session against three before AND three after, SD ``sigma * sqrt(1 + 1/6) = 1.08 sigma``)
does, with an SD that the drops do not inflate. The measured values of the published
rules are asserted within a Monte-Carlo band: the mean over seeds 1-5 and the params
seed, plus or minus 0.08 (about four standard errors with 377 episodes).
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd
import pytest

from pipeline.config import load_params
from pipeline.ruptures.recovery import scenario_recovery
from tests.conftest import ROOT

CRITERIA = ("gumz_1sd", "gumz_2sd", "reliable_drop", "v_shape", "sudden_dip")
BAND = 0.08


@lru_cache(maxsize=4)
def measured(depth_sd: float, p_client: float) -> pd.DataFrame:
    """Recall, precision and false positives per 100 rated sessions per criterion."""
    params = load_params(ROOT / "params.yaml")
    return scenario_recovery(params, depth_sd, p_client).set_index("criterion")


def test_sudden_dip_finds_deep_clear_ruptures() -> None:
    """Issue 12: recall and precision >= 0.8 for one-session drops of three SDs."""
    rec = measured(3.0, 1.0)
    assert rec.loc["sudden_dip", "recall"] >= 0.8
    assert rec.loc["sudden_dip", "precision"] >= 0.8


def test_sudden_dip_finds_very_deep_ruptures() -> None:
    rec = measured(6.0, 1.0)
    assert rec.loc["sudden_dip", "recall"] >= 0.95
    assert rec.loc["sudden_dip", "precision"] >= 0.85


# Measured on deep clear data (mean over seeds 1-5 and the params seed); why each misses
# 0.8 on one side:
#   gumz_1sd: threshold 1 x max(client SD, between-client SD) ~ 1.3 sigma: recall fine,
#     but noise dips of that size are common (~5 per 100 sessions): precision ~0.6.
#   gumz_2sd: 2 x the same ~ 2.6 sigma (the between-client SD, 0.43 points, is 1.3
#     within-client SDs, and a client's own SD is inflated by its rupture): recall ~0.45.
#   reliable_drop: the RCI threshold (~0.45 points ~ 1.4 sigma with alpha ~0.90): as 1 SD.
#   v_shape: 1-SD drop AND a return to the pre-drop level within three sessions, which
#     noise misses about one time in five: recall ~0.61, precision ~0.7.
PUBLISHED = {
    "gumz_1sd": (0.81, 0.61),
    "gumz_2sd": (0.45, 0.93),
    "reliable_drop": (0.81, 0.58),
    "v_shape": (0.61, 0.69),
}


@pytest.mark.parametrize("criterion", sorted(PUBLISHED))
def test_published_rules_on_deep_clear_ruptures_measured_values(criterion: str) -> None:
    rec = measured(3.0, 1.0)
    recall, precision = PUBLISHED[criterion]
    assert rec.loc[criterion, "recall"] == pytest.approx(recall, abs=BAND)
    assert rec.loc[criterion, "precision"] == pytest.approx(precision, abs=BAND)


def test_published_rules_miss_the_target_on_one_side() -> None:
    """The trade-off the report explains: each published rule is below 0.8 on one side."""
    rec = measured(3.0, 1.0)
    assert rec.loc["gumz_2sd", "recall"] < 0.6 and rec.loc["gumz_2sd", "precision"] > 0.85
    for crit in ("gumz_1sd", "reliable_drop"):
        assert rec.loc[crit, "precision"] < 0.7, crit
    assert max(rec.loc["v_shape", ["recall", "precision"]]) < 0.8


def test_every_criterion_finds_deep_ruptures_better_than_shallow_ones() -> None:
    deep, shallow = measured(3.0, 1.0), measured(1.0, 1.0)
    for crit in CRITERIA:
        assert deep.loc[crit, "recall"] > shallow.loc[crit, "recall"] + 0.2, crit
        assert deep.loc[crit, "precision"] > shallow.loc[crit, "precision"], crit


def test_without_injected_ruptures_every_episode_is_a_false_positive() -> None:
    """The false-positive rate on data without ruptures (regression to the mean).

    Measured per 100 rated sessions (params seed): gumz_1sd 8.9, gumz_2sd 0.8,
    reliable_drop 7.6, v_shape 4.7, sudden_dip 3.4. Stricter rules produce fewer.
    """
    null = measured(3.0, 0.0)
    assert (null["n_matched"] == 0).all()
    assert null.loc["gumz_2sd", "false_per_100"] < 2.0
    assert null.loc["gumz_2sd", "false_per_100"] < null.loc["gumz_1sd", "false_per_100"]
    assert null.loc["gumz_1sd", "false_per_100"] < 15.0
    assert null.loc["sudden_dip", "false_per_100"] < 5.0
    assert null.loc["sudden_dip", "false_per_100"] < null.loc["reliable_drop",
                                                              "false_per_100"]


def test_repair_status_of_matched_episodes_agrees_with_the_truth() -> None:
    rec = measured(3.0, 1.0)
    for crit in CRITERIA:
        assert rec.loc[crit, "status_agreement"] >= 0.8, crit
