"""Outcome and endings models recover what the simulator injected."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from pipeline.instruments import load_instrument
from pipeline.ruptures import endings as E
from pipeline.ruptures import outcome as O
from pipeline.ruptures.detect import alliance_series
from pipeline.score import score_alliance, score_outcome
from pipeline.simulation.dataset import simulate_dataset


def _true_groups(sim, wellbeing: pd.DataFrame) -> pd.DataFrame:
    """Each client's group from the injected truth, as observed in the data.

    Repaired only when a wellbeing score was rated at or after the repair session
    (otherwise the repair step cannot show), unrepaired when rated after the rupture;
    other injected clients are censored.
    """
    last = wellbeing.dropna(subset=["wellbeing"]).groupby("client_id")["session"].max()
    truth = sim.episodes.set_index("client_id")
    therapist = sim.alliance.groupby("client_id")["therapist_id"].first()

    def group(c: str) -> str:
        if c not in truth.index:
            return "none"
        rec = truth.loc[c]
        if rec["repaired"]:
            return "repaired" if last.get(c, 0) >= rec["repair_session"] else "censored"
        return "unrepaired" if last.get(c, 0) > rec["rupture_session"] else "censored"

    out = pd.DataFrame({"client_id": therapist.index, "therapist_id": therapist.to_numpy()})
    out["group"] = out["client_id"].map(group)
    return out


def test_outcome_model_recovers_the_injected_repair_effect(params: dict) -> None:
    """With the true groups, the repaired-vs-none contrast covers the injected 2.0 points.

    (Measured on the shipped settings: 1.61, 95% CI 0.84 to 2.38. With groups from a
    detection rule the contrast is diluted by its false positives and misses; see the
    report and benchmarks/ruptures_coverage.py.)
    """
    sim = simulate_dataset(params["simulate"])
    wb, _ = score_outcome(sim.outcome, load_instrument("swemwbs"))
    data = O.change_data(_true_groups(sim, wb), wb[["client_id", "session", "wellbeing"]])
    cfg = params["ruptures"]["outcome"]
    formula, simplification, reason = O.model_plan(data, cfg["formula"], 5)
    assert reason == "" and simplification == ""
    fit = O.fit_mixed(data, formula, cfg["random"], params["model"])
    assert fit.status in ("fitted", "singular")
    row = fit.coefficients.set_index("term").loc["repaired"]
    effect = params["simulate"]["ruptures"]["repair_effect"]
    assert row["conf_low"] <= effect <= row["conf_high"]
    assert row["estimate"] > 0


def test_adapter_reports_not_estimable_with_one_therapist() -> None:
    data = pd.DataFrame({"change": [1.0, 2.0, 3.0, 4.0], "repaired": [0.0, 1.0, 0.0, 1.0],
                         "therapist_id": ["T"] * 4})
    fit = O.fit_mixed(data, "change ~ repaired", {"groups": "therapist_id"}, {})
    assert fit.status == "not estimable" and "therapist" in fit.reason
    assert fit.coefficients.empty
    # one client per therapist (the checks' reason): named, not "model model: ..."
    one_each = data.assign(therapist_id=["T1", "T2", "T3", "T4"])
    fit = O.fit_mixed(one_each, "change ~ repaired", {"groups": "therapist_id"}, {})
    assert fit.status == "not estimable"
    assert fit.reason.startswith("model ruptures_outcome: 4 rows for 4 therapists"), fit.reason


def test_model_plan_drops_empty_groups_and_refuses_small_ones() -> None:
    base = pd.DataFrame({"repaired": [1.0] * 6 + [0.0] * 6, "unrepaired": [0.0] * 12})
    formula, simp, reason = O.model_plan(base, "change ~ repaired + unrepaired + span_c", 5)
    assert formula == "change ~ repaired + span_c" and "unrepaired" in simp and reason == ""
    small = base.copy()
    small.loc[:2, "unrepaired"], small.loc[:2, "repaired"] = 1.0, 0.0
    _, _, reason = O.model_plan(small, "change ~ repaired + unrepaired", 5)
    assert "fewer than report.min_cell = 5" in reason and "unrepaired" in reason


def test_endings_model_recovers_the_alliance_effects(params: dict) -> None:
    """Hazard of ending unplanned: within and between effects of the injected size.

    Endings only (no ruptures, whose lasting drops the within/between split cannot
    separate). Measured, seed 1: within -1.89 (95% CI -2.57 to -1.22), between -1.10
    (-1.79 to -0.42); truth -1.5 and -1.0.
    """
    cfg = copy.deepcopy(params["simulate"])
    cfg["ruptures"]["enabled"] = False
    cfg["seed"] = 1
    sim = simulate_dataset(cfg)
    scored, _ = score_alliance(sim.alliance, load_instrument("wai_sr"))
    pp = E.person_period(alliance_series(scored, ["total"]), sim.clients)
    status, reason, coefs = E.fit_endings(pp, params["ruptures"]["endings"]["formula"],
                                          0.95, 5)
    assert status == "fitted", reason
    c = coefs.set_index("term")
    truth = params["simulate"]["endings"]
    for term, key in (("alliance_within", "within"), ("alliance_between", "between")):
        assert c.loc[term, "estimate"] < 0
        assert c.loc[term, "conf_low"] <= truth[key] <= c.loc[term, "conf_high"], term


def test_person_period_rows_and_events() -> None:
    series = pd.DataFrame({"client_id": ["A"] * 3 + ["B"] * 2, "therapist_id": "T",
                           "session": [1, 2, 4, 1, 2], "score": [4.0, 3.0, 2.0, 4.0, 4.0]})
    clients = pd.DataFrame({"client_id": ["A", "B"], "ending": ["unplanned", "planned"]})
    pp = E.person_period(series, clients)
    assert pp["event"].tolist() == [0, 0, 1, 0, 0]
    a = pp[pp["client_id"] == "A"]
    assert np.isnan(a["alliance_within"].iloc[0])
    assert a["alliance_within"].iloc[2] == pytest.approx(2.0 - 3.5)
    status, reason, _ = E.fit_endings(pp, "event ~ alliance_within + time", 0.95, 5)
    assert status == "not estimable" and "fewer than report.min_cell" in reason


def test_without_ending_column_only_the_last_session_is_described() -> None:
    assert E.ending_counts(None, 5).empty
    series = pd.DataFrame({"client_id": np.repeat([f"C{i}" for i in range(6)], 3),
                           "therapist_id": "T", "session": np.tile([1, 2, 3], 6),
                           "score": np.tile([4.0, 4.0, 3.0], 6)})
    last = E.last_session(series, 5, 0.95).iloc[0]
    assert last["n_clients"] == 6 and last["mean_difference"] == pytest.approx(-1.0)
    assert last["share_lower"] == 100.0
    assert np.isnan(E.last_session(series.head(9), 5, 0.95).iloc[0]["mean_difference"])


def test_repair_correlation_names_the_short_group_not_its_count() -> None:
    # 6 repaired, 3 unrepaired clients: too few unrepaired for min_cell 5; the note says
    # which group, never how many (a count below min_cell is suppressed).
    data = pd.DataFrame({"group": ["repaired"] * 6 + ["unrepaired"] * 3,
                         "repaired": [1] * 6 + [0] * 3, "baseline": np.arange(9.0),
                         "span": [5.0] * 9, "change": np.linspace(-1, 2, 9)})
    out = O.repair_correlation(data, 0.29, (0.10, 0.47), 0.95, 5)
    assert np.isnan(out["r"])
    assert out["note"] == ("needs at least 5 repaired and 5 unrepaired clients; fewer than "
                           "5 unrepaired")
    assert "V-shape" not in out["note"] and "3" not in out["note"]


def test_endings_model_with_time_constant_in_the_sessions_at_risk_is_not_estimable() -> None:
    """Every client rated twice: only session 2 is at risk, so `time` is the intercept.

    statsmodels failed in the clustered covariance ("failed LinAlgError"); R's glm gives
    NA for `time`. Now a stated reason naming the term.
    """
    ids = [f"C{i:02d}" for i in range(12)]
    series = pd.DataFrame({"client_id": np.repeat(ids, 2),
                           "therapist_id": np.repeat(["T1", "T2"] * 6, 2),
                           "session": np.tile([1, 2], 12),
                           "score": np.tile([4.0, 3.0], 12) + np.repeat(np.arange(12) / 10, 2)})
    clients = pd.DataFrame({"client_id": ids, "ending": ["unplanned", "planned"] * 6})
    pp = E.person_period(series, clients)
    status, reason, coefs = E.fit_endings(pp, "event ~ alliance_within + alliance_between + time",
                                          0.95, 5)
    assert status == "not estimable" and coefs.empty
    # Both the within part (every client dropped by 1.0) and time are constant.
    assert ("rank deficient in the sessions at risk: Alliance (within client) and Time "
            "(session − 1) have the same value on every row (they do not vary)") in reason


def test_endings_in_the_model_never_give_a_small_count_by_subtraction() -> None:
    """The report said "28 of the 32 unplanned endings are in the model ... The others
    (fewer than 5)": 4 by subtraction (and 32 is in the endings table above)."""
    assert E.events_in_model(32, 32, 5) == "All 32 unplanned endings are in the model."
    assert E.events_in_model(40, 30, 5) == (
        "30 of the 40 unplanned endings are in the model. The other 10 ended at their first "
        "rated session, which has no earlier session to compare it with.")
    few = E.events_in_model(32, 28, 5)
    assert few == ("All but fewer than 5 of the 32 unplanned endings are in the model. The "
                   "others ended at their first rated session, which has no earlier session "
                   "to compare it with.")
    assert "28" not in few and "4" not in few


def test_one_small_ending_count_is_not_left_to_subtraction() -> None:
    """planned 348, unplanned blank, ongoing 26, not given 0 of the 377 clients the
    overview shows: unplanned = 3 by subtraction. The smallest other count goes too."""
    clients = pd.DataFrame({"client_id": [f"C{i}" for i in range(377)],
                            "ending": ["planned"] * 348 + ["unplanned"] * 3
                            + ["ongoing"] * 26})
    table = E.ending_counts(clients, 5).set_index("ending")
    assert table["n_clients"].isna().tolist() == [False, True, True, False]
    assert table.loc["planned", "n_clients"] == 348 and table.loc["not given", "n_clients"] == 0
    assert table["suppressed"].tolist() == ["", "n_clients", "n_clients", ""]
    # two small counts hide each other; none small: all shown; nobody unplanned: 0 shown
    two = clients.assign(ending=["planned"] * 370 + ["unplanned"] * 3 + ["ongoing"] * 4)
    assert E.ending_counts(two, 5)["n_clients"].isna().tolist() == [False, True, True, False]
    shipped = clients.assign(ending=["planned"] * 232 + ["unplanned"] * 119 + ["ongoing"] * 26)
    assert E.ending_counts(shipped, 5)["n_clients"].tolist() == [232, 119, 26, 0]
    nobody = clients.assign(ending="planned")
    assert E.ending_counts(nobody, 5)["n_clients"].tolist() == [377, 0, 0, 0]
    one_left = clients.assign(ending=["planned"] * 374 + ["unplanned"] * 3)
    # the only other count above 0 is blanked: 374 + 3 cannot be told apart from the table
    assert E.ending_counts(one_left, 5)["n_clients"].isna().tolist() == [True, True, False,
                                                                        False]


def test_endings_model_says_which_side_is_short() -> None:
    """Nobody (or everybody) ended unplanned: the reason read "fewer than 5 clients ended
    unplanned, or fewer than 5 did not", which leaves the reader to guess which."""
    series = pd.DataFrame({"client_id": np.repeat([f"C{i}" for i in range(12)], 4),
                           "therapist_id": np.repeat(["T1", "T2"], 24),
                           "session": np.tile([1, 2, 3, 4], 12),
                           "score": np.tile([4.0, 3.5, 3.0, 3.8], 12)})
    clients = pd.DataFrame({"client_id": [f"C{i}" for i in range(12)]})

    def reason(endings: list[str]) -> str:
        pp = E.person_period(series, clients.assign(ending=endings))
        status, why, _ = E.fit_endings(pp, "event ~ alliance_within + time", 0.95, 5)
        assert status == "not estimable"
        return why

    assert reason(["planned"] * 12) == ("no client in the model ended unplanned: too few "
                                        "unplanned endings to estimate a hazard")
    assert reason(["unplanned"] * 12) == ("every client in the model ended unplanned: too "
                                          "few other clients to estimate a hazard")
    assert reason(["unplanned"] * 3 + ["planned"] * 9) == (
        "fewer than report.min_cell = 5 clients in the model ended unplanned: too few "
        "unplanned endings to estimate a hazard")
    assert reason(["unplanned"] * 9 + ["ongoing"] * 3) == (
        "all but fewer than report.min_cell = 5 clients in the model ended unplanned: too "
        "few other clients to estimate a hazard")
