"""Aggregate descriptions: right numbers, small cells suppressed."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.describe import attendance, data_counts, suppress_small, trajectories


def _scored() -> pd.DataFrame:
    rows = []
    # 6 clients with 2 sessions, 1 client with 3 sessions
    for c in range(7):
        for s in range(1, 3 + (c == 6)):
            rows.append({"client_id": f"C{c}", "therapist_id": f"T{c % 2}", "session": s,
                         "goal": 3.0 + s, "task": 3.0, "bond": 4.0, "wellbeing": 20.0 + c})
    return pd.DataFrame(rows)


def test_trajectories_hand_computed() -> None:
    traj = trajectories(_scored(), min_cell=5)
    s1 = traj[(traj.variable == "wellbeing") & (traj.session == 1)].iloc[0]
    assert s1["n"] == 7
    assert s1["mean"] == 23.0
    assert np.isclose(s1["sd"], np.std(np.arange(20, 27), ddof=1))
    # t interval with 6 df: 2.446912 * sd / sqrt(7)
    assert np.isclose(s1["conf_high"] - s1["mean"], 2.446912 * s1["sd"] / np.sqrt(7), rtol=1e-6)
    goal2 = traj[(traj.variable == "goal") & (traj.session == 2)].iloc[0]
    assert goal2["mean"] == 5.0
    # session 3 has one client: suppressed, nothing of it shown
    s3 = traj[(traj.variable == "wellbeing") & (traj.session == 3)].iloc[0]
    assert s3["suppressed"] and np.isnan(s3["mean"]) and np.isnan(s3["n"])


def test_attendance_suppresses_small_groups() -> None:
    att = attendance(_scored(), min_cell=5).set_index("sessions")
    assert np.isnan(att.loc[3, "clients"]) and att.loc[3, "suppressed"]
    # the 6 would give the 1 back (7 clients in the models): left out with it
    assert np.isnan(att.loc[2, "clients"]) and att.loc[2, "suppressed"]


def test_counts() -> None:
    scored = _scored()
    scored.loc[0, "wellbeing"] = np.nan
    alliance = scored[["client_id", "therapist_id", "session"]]
    counts = data_counts(alliance, alliance, scored).set_index("item")["count"]
    assert counts["therapists"] == 2
    assert counts["client x sessions with both forms"] == 15
    assert counts["client x sessions complete for the models"] == 14


def test_suppress_small_keeps_large() -> None:
    frame = pd.DataFrame({"n": [4, 5], "mean": [1.0, 2.0]})
    out = suppress_small(frame, "n", 5)
    assert out["suppressed"].tolist() == [True, False]
    assert out["mean"].isna().tolist() == [True, False]


def test_alliance_outcome_correlations_flag_a_wrong_sign() -> None:
    from pipeline.describe import alliance_outcome_correlations

    rng = np.random.default_rng(1)
    n_clients, n_sessions = 40, 6
    client = np.repeat(np.arange(n_clients), n_sessions)
    goal = rng.normal(0, 1, n_clients)[client] + rng.normal(0, 1, client.size)
    wellbeing = 0.3 * goal + rng.normal(0, 1, client.size)
    scored = pd.DataFrame({"client_id": client.astype(str), "goal": goal,
                           "wellbeing": wellbeing})
    ok = alliance_outcome_correlations(scored, (0.0, 0.5)).set_index("level")
    assert np.isclose(ok.loc["sessions", "r"], np.corrcoef(goal, wellbeing)[0, 1])
    assert ok.loc["between", "n"] == n_clients
    assert ok.loc["sessions", "plausible"] and ok.loc["within", "plausible"]
    scored["wellbeing"] = -scored["wellbeing"]  # e.g. a symptom scale read as wellbeing
    flipped = alliance_outcome_correlations(scored, (0.0, 0.5)).set_index("level")
    assert not flipped.loc["sessions", "plausible"]
    assert "direction of the outcome" in flipped.loc["sessions", "note"]


def test_a_symptom_outcome_kept_higher_worse_expects_a_negative_correlation() -> None:
    """PHQ-9 kept higher = worse (instruments.outcome_higher_is_better: false): r of about
    -.3 is the published link, not a scoring problem; +.3 is then the suspicious one."""
    from pipeline.describe import alliance_outcome_correlations

    rng = np.random.default_rng(1)
    n_clients, n_sessions = 40, 6
    client = np.repeat(np.arange(n_clients), n_sessions)
    goal = rng.normal(0, 1, n_clients)[client] + rng.normal(0, 1, client.size)
    symptoms = -0.3 * goal + rng.normal(0, 1, client.size)
    scored = pd.DataFrame({"client_id": client.astype(str), "goal": goal,
                           "wellbeing": symptoms})
    kept = alliance_outcome_correlations(scored, (0.0, 0.5),
                                         higher_worse=True).set_index("level")
    assert kept.loc["sessions", "r"] < -0.1
    assert kept.loc["sessions", "plausible"]
    assert kept.loc["sessions", "note"] == ""
    # read as higher = better (the old rule) the same data were flagged
    assert not alliance_outcome_correlations(scored, (0.0, 0.5)).set_index(
        "level").loc["sessions", "plausible"]
    scored["wellbeing"] = -scored["wellbeing"]
    wrong = alliance_outcome_correlations(scored, (0.0, 0.5),
                                          higher_worse=True).set_index("level")
    assert not wrong.loc["sessions", "plausible"]
    assert "outside -0.5 to 0 (the outcome is higher = worse)" in wrong.loc["sessions", "note"]
