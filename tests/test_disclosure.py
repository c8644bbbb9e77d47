"""Secondary suppression (pipeline/disclosure.py) and the tables it protects.

Every table here is built by hand; the expected cells follow the rule in the module's
docstring: within a published margin, no suppressed cell, or at least two that add up to
at least min_cell (smallest unsuppressed cell above 0 first, ties in table order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.describe import (
    attendance,
    distributions,
    publishable_k_anonymity,
    rater_agreement,
    suppress_counts,
)
from pipeline.disclosure import across, protect, unprotected, within
from pipeline.instruments import load_instrument
from pipeline.psychometrics import publishable_reliability
from pipeline.ruptures.endings import ending_counts, hazard_table
from pipeline.score import merge_scores, score_outcome, score_raters
from pipeline.validate import validate_inputs

ROOT = Path(__file__).resolve().parents[1]


def _protect(counts: list[int], primary: list[bool], min_cell: int = 5) -> list[bool]:
    frame = pd.DataFrame({"n": counts})
    out = protect(frame, pd.DataFrame({"n": primary}), within(frame, "n"), min_cell)
    return out["n"].tolist()


def _small(counts: list[int], min_cell: int = 5) -> list[bool]:
    return [0 < c < min_cell for c in counts]


# ------------------------------------------------------------------------- the rule


def test_one_suppressed_cell_is_recoverable_before_and_not_after() -> None:
    counts = [2, 40, 31, 7]                        # 80 clients; the 2 is 80 - 78
    frame = pd.DataFrame({"n": counts})
    primary = pd.DataFrame({"n": _small(counts)})
    assert unprotected(frame, primary, within(frame, "n"), 5) == [0]
    out = protect(frame, primary, within(frame, "n"), 5)
    assert out["n"].tolist() == [True, False, False, True]    # 7: the smallest other
    assert unprotected(frame, out, within(frame, "n"), 5) == []
    # what a reader can still work out: the two blanks together, 9 (>= 5)
    assert sum(c for c, s in zip(counts, out["n"], strict=True) if s) == 9


def test_nothing_suppressed_stays_so() -> None:
    assert _protect([12, 40, 31, 7], _small([12, 40, 31, 7])) == [False] * 4


def test_all_suppressed_stays_so_and_is_named_unprotected() -> None:
    counts = [1, 2, 1]                             # the total, 4, is itself small
    frame = pd.DataFrame({"n": counts})
    out = protect(frame, pd.DataFrame({"n": _small(counts)}), within(frame, "n"), 5)
    assert out["n"].tolist() == [True, True, True]
    assert unprotected(frame, out, within(frame, "n"), 5) == [0]


def test_suppressed_cells_already_adding_up_to_min_cell_need_nothing_more() -> None:
    assert _protect([3, 4, 50, 60], _small([3, 4, 50, 60])) == [True, True, False, False]
    # exactly min_cell is enough
    assert _protect([1, 4, 50], _small([1, 4, 50])) == [True, True, False]


def test_two_suppressed_cells_below_min_cell_take_a_third() -> None:
    # 1 + 2 = 3 < 5: the reader would learn that 3 clients are in the two groups
    assert _protect([1, 2, 60, 50], _small([1, 2, 60, 50])) == [True, True, False, True]


def test_ties_go_to_the_first_cell_in_the_table() -> None:
    assert _protect([2, 9, 9, 30], _small([2, 9, 9, 30])) == [True, True, False, False]
    assert _protect([9, 30, 2, 9], _small([9, 30, 2, 9])) == [True, False, True, False]


def test_zeros_are_never_added_and_the_smallest_count_above_0_is() -> None:
    assert _protect([3, 0, 0, 20, 40], _small([3, 0, 0, 20, 40])) == [
        True, False, False, True, False]
    # only a zero left beside the small cell: nothing can protect it (its total is 3)
    frame = pd.DataFrame({"n": [3, 0]})
    out = protect(frame, pd.DataFrame({"n": [True, False]}), within(frame, "n"), 5)
    assert out["n"].tolist() == [True, False]
    assert unprotected(frame, out, within(frame, "n"), 5) == [0]


def test_an_empty_table_has_no_margins() -> None:
    """No episodes (a constant alliance): the lengths table is empty, and so are its margins
    (pandas' row-wise join of no rows is a frame, not a series)."""
    empty = pd.DataFrame({"criterion": pd.Series([], dtype=str),
                          "scale": pd.Series([], dtype=str),
                          "n_episodes": pd.Series([], dtype=float)})
    assert within(empty, "n_episodes", by=["criterion", "scale"]) == []
    assert within(empty, "n_episodes") == []
    assert across(empty, ["n_episodes"]) == []


def test_margins_by_group_are_protected_separately() -> None:
    frame = pd.DataFrame({"g": ["a", "a", "a", "b", "b"], "n": [3, 10, 20, 30, 40]})
    margins = within(frame, "n", by=["g"])
    assert margins == [[(0, "n"), (1, "n"), (2, "n")], [(3, "n"), (4, "n")]]
    out = protect(frame[["n"]], pd.DataFrame({"n": _small(frame["n"].tolist())}), margins, 5)
    assert out["n"].tolist() == [True, True, False, False, False]


def test_overlapping_margins_are_checked_until_none_changes() -> None:
    # rows: a + b published per row; columns a and b: their totals published too.
    frame = pd.DataFrame({"a": [2, 8, 20], "b": [10, 30, 40]})
    primary = pd.DataFrame({"a": [True, False, False], "b": [False, False, False]})
    margins = [*across(frame, ["a", "b"]), *within(frame, "a"), *within(frame, "b")]
    out = protect(frame, primary, margins, 5)
    # row 0 takes b=10; column a takes 8; column b (now 10 alone) takes 30; row 1 is then
    # 8 and 30 hidden: fine.
    assert out.to_dict("list") == {"a": [True, True, False], "b": [True, True, False]}
    assert unprotected(frame, out, margins, 5) == []


def test_suppress_counts_blanks_secondary_counts_with_what_derives_from_them() -> None:
    # The shipped ruptures prevalence row (Gumz 2 SD, task): 46 episodes, 31 repaired,
    # 1 unrepaired, 14 censored, 96.875% repaired (31 of 32: the 1 came back twice).
    row = pd.DataFrame({"n_episodes": [46], "n_repaired": [31], "n_unrepaired": [1],
                        "n_censored": [14], "pct_repaired": [96.875]})
    parts = ["n_repaired", "n_unrepaired", "n_censored"]
    out = suppress_counts(row, {"n_episodes": [], "n_repaired": ["pct_repaired"],
                                "n_unrepaired": ["pct_repaired"], "n_censored": []}, 5,
                          margins=across(row, parts))
    assert out.loc[0, "n_repaired"] == 31 and out.loc[0, "n_episodes"] == 46
    assert np.isnan(out.loc[0, "n_unrepaired"]) and np.isnan(out.loc[0, "n_censored"])
    assert np.isnan(out.loc[0, "pct_repaired"])
    assert out.loc[0, "suppressed"] == "n_unrepaired n_censored"


# ------------------------------------------------------------------ the tables


def _scored(sessions_per_client: list[int]) -> pd.DataFrame:
    rows = [{"client_id": f"C{c}", "therapist_id": "T1", "session": s, "goal": 4.0,
             "task": 4.0, "bond": 4.0, "wellbeing": 20.0}
            for c, n in enumerate(sessions_per_client) for s in range(1, n + 1)]
    return pd.DataFrame(rows)


def test_attendance_leaves_out_the_smallest_other_bar() -> None:
    # 6 clients with 2 sessions, 1 with 3, 5 with 4: of the 12 clients in the models
    # the single bar of 1 would be 12 - 11.
    # Leaving out the 3- and 4-session bars is not enough: the sessions in the models
    # (23 = 3 a + 4 b, a + b = 6) give a = 1, so the 2-session bar goes too.
    att = attendance(_scored([2] * 6 + [3] + [4] * 5), min_cell=5)
    assert att["sessions"].tolist() == [2, 3, 4]
    assert att["clients"].isna().tolist() == [True, True, True]
    assert att["suppressed"].tolist() == [True, True, True]
    # two small bars that hold 5 together, but 3 a + 4 b = 18, a + b = 5 gives a = 2
    att = attendance(_scored([2] * 6 + [3] * 2 + [4] * 3), min_cell=5)
    assert att["suppressed"].tolist() == [True, True, True]
    # three blank bars whose sums have other solutions (a + b + c = 6, a + 2 b + 3 c = 12:
    # (0, 6, 0), (1, 4, 1), (2, 2, 2), (3, 0, 3)): nothing more left out
    att = attendance(_scored([1] * 2 + [2] * 2 + [3] * 2 + [4] * 6), min_cell=5)
    assert att["clients"].tolist()[3] == 6
    assert att["suppressed"].tolist() == [True, True, True, False]
    # no small bar: all drawn
    att = attendance(_scored([2] * 6 + [4] * 5), min_cell=5)
    assert att["clients"].tolist() == [6, 5] and not att["suppressed"].any()


def test_attendance_bars_cannot_be_solved_from_the_published_sessions() -> None:
    """Red-team (25 clients): bars 8, 8, 8 at 4, 5, 6 sessions and 1 client at 9. The 1
    and the 8 at 4 sessions were blank; the overview prints 25 clients and 129 client x
    sessions in the models, so 4 a + 9 b = 129 - 40 - 48 = 41 and a + b = 9 gave b = 1."""
    att = attendance(_scored([4] * 8 + [5] * 8 + [6] * 8 + [9]), min_cell=5)
    assert att["sessions"].tolist() == [4, 5, 6, 9]
    # the 5-session bar (8, first of the smallest) goes too: a + b + c = 17,
    # 4 a + 5 b + 9 c = 81 has c = 0 (a = 4, b = 13) as well as c = 1 (a = 8, b = 8)
    assert att["suppressed"].tolist() == [True, True, False, True]
    assert att["clients"].tolist()[2] == 8


def test_distributions_protect_each_variable_on_its_own() -> None:
    scored = _scored([1] * 20)
    scored["goal"] = [1.1] + [3.1] * 6 + [4.1] * 13   # bins 1.0: 1, 3.0: 6, 4.0: 13
    dist = distributions(scored, min_cell=5)
    goal = dist[dist["variable"] == "goal"].set_index("lower")
    assert goal.loc[1.0, "suppressed"] and goal.loc[3.0, "suppressed"]   # 6: the smallest
    assert goal.loc[4.0, "sessions"] == 13 and not goal.loc[4.0, "suppressed"]
    # the empty bins 1.25 ... 2.75 are blank too (below min_cell), as before
    assert goal["suppressed"].sum() == 1 + 7 + 1 + 3      # 1.0, 1.25-2.75, 3.0, 3.25-3.75
    task = dist[dist["variable"] == "task"]               # one bin of 20: nothing blank
    assert task["sessions"].tolist() == [20.0] and not task["suppressed"].any()


def test_k_anonymity_rare_row_is_not_the_total_minus_the_others() -> None:
    table = pd.DataFrame({"approach": ["CBT", "CBT", "humanistic", "humanistic", "psy"],
                          "modality": ["in person", "video", "in person", "video",
                                       "in person"],
                          "n_clients": [10, 2, 6, 1, 5]})
    out = publishable_k_anonymity(table, 5)
    # rare: 2 + 1 = 3 of 24; psy (5, the smallest shown) is held back with it
    assert out["approach"].tolist() == ["CBT", "humanistic", "psy", "(rare)"]
    assert out["n_clients"].tolist()[:2] == [10, 6]
    assert out["n_clients"].isna().tolist() == [False, False, True, True]
    assert out["n_combinations"].tolist() == [1, 1, 1, 2]
    assert out["suppressed"].tolist() == [False, False, True, True]
    # rare 1 beside a combination of exactly 5: the blanks add up to 6, and a reader
    # knowing rare <= 4 and the combination >= 5 gets 1 and 5 back; the next goes too.
    table = table.assign(n_clients=[10, 1, 5, 30, 20])
    out = publishable_k_anonymity(table, 5)
    assert out["approach"].tolist() == ["CBT", "humanistic", "humanistic", "psy", "(rare)"]
    assert out["n_clients"].isna().tolist() == [True, True, False, False, True]
    # rare row of 5 or more is shown: nothing to protect
    table = table.assign(n_clients=[10, 2, 6, 3, 5])
    out = publishable_k_anonymity(table, 5)
    assert out["n_clients"].tolist() == [10, 6, 5, 5]
    assert not out["suppressed"].any()
    # no rare combination: the table as it was
    table = table.assign(n_clients=[10, 7, 6, 8, 5])
    out = publishable_k_anonymity(table, 5)
    assert out["n_clients"].tolist() == [10, 7, 6, 8, 5] and not out["suppressed"].any()


def test_ending_counts_need_the_blanks_to_hold_min_cell() -> None:
    clients = pd.DataFrame({"client_id": [f"C{i}" for i in range(377)],
                            "ending": ["planned"] * 374 + ["unplanned"] * 1
                            + ["ongoing"] * 2})
    # unplanned 1 and ongoing 2 blank alone would give 377 - 374 = 3 for the two
    out = ending_counts(clients, 5)
    assert out["n_clients"].isna().tolist() == [True, True, True, False]
    assert out["n_clients"].tolist()[3] == 0


def test_ending_counts_never_hide_the_unplanned_count_the_model_publishes() -> None:
    """Red-team (25 clients): planned 15, unplanned 6, ongoing 4. The 6 was blanked to
    protect the 4, but the endings model prints "All 6 unplanned endings are in the model"
    (n_events), so 25 - 15 - 6 = 4 gave it back. Planned is blanked instead."""
    clients = pd.DataFrame({"client_id": [f"C{i}" for i in range(25)],
                            "ending": ["planned"] * 15 + ["unplanned"] * 6 + ["ongoing"] * 4})
    out = ending_counts(clients, 5).set_index("ending")["n_clients"]
    assert out.isna().tolist() == [True, False, True, False]
    assert out["unplanned"] == 6 and out["not given"] == 0
    # a reader can work out planned + ongoing = 25 - 6 = 19 only: two cells, >= 5
    # unplanned small: it is hidden itself (not published by the model), the full margin
    small = clients.assign(ending=["planned"] * 19 + ["unplanned"] * 3 + ["ongoing"] * 3)
    assert ending_counts(small, 5)["n_clients"].isna().tolist() == [False, True, True, False]


def test_hazard_events_are_protected_over_the_sessions() -> None:
    # 3 sessions; events 1, 6, 9 of 16 unplanned endings (published in endings_model)
    pp = pd.DataFrame({"client_id": [f"C{i}" for i in range(60)],
                       "session": [1] * 20 + [2] * 20 + [3] * 20,
                       "event": [1] + [0] * 19 + [1] * 6 + [0] * 14 + [1] * 9 + [0] * 11})
    out = hazard_table(pp, 5)
    assert out["events"].isna().tolist() == [True, True, False]
    assert out["hazard"].isna().tolist() == [True, True, False]
    assert out["at_risk"].tolist() == [20, 20, 20]


def test_rater_agreement_protects_the_sessions_under_the_pooled_row() -> None:
    rows = []
    for c in range(12):
        for s in ((1, 2) if c < 10 else (1,)):   # session 1: 12 pairs, session 2: 10
            for rater, v in (("client", 4.0 + (c % 3) * 0.25), ("therapist", 3.5 + (c % 2))):
                rows.append({"client_id": f"C{c}", "session": s, "rater": rater,
                             "goal": v + 0.1 * s})
    scored = pd.DataFrame(rows)
    out = rater_agreement(scored, 5, scales=["goal"])
    assert out["session"].tolist() == ["all", "1", "2"]
    assert not out["suppressed"].any()                     # nothing small
    small = scored[~((scored["session"] == 2) & (scored["client_id"].isin(
        [f"C{c}" for c in range(7)])))]                    # session 2: 3 pairs
    out = rater_agreement(small, 5, scales=["goal"]).set_index("session")
    assert out.loc["all", "n_pairs"] == 15 and not out.loc["all", "suppressed"]
    assert out.loc["2", "suppressed"] and out.loc["1", "suppressed"]   # 15 - 12 = 3
    assert np.isnan(out.loc["1", "mean_client"])


def test_reliability_sessions_are_protected_and_the_note_hides_n() -> None:
    table = pd.DataFrame({
        "instrument": "wai_sr", "scale": "goal",
        "subset": ["all", "session", "session", "session"], "session": [pd.NA, 1, 2, 3],
        "n": [70, 60, 7, 3], "n_items": 4, "alpha": [0.8, 0.8, np.nan, np.nan],
        "alpha_std": [0.8, 0.8, np.nan, np.nan], "omega_total": [0.8, 0.8, np.nan, np.nan],
        "note": ["", "", "n=7 < min_n=50: not estimated", "n=3 < min_n=50: not estimated"]})
    out = publishable_reliability(table, 5)
    assert out["n"].isna().tolist() == [False, False, True, True]   # 7 goes with the 3
    assert out["note"].tolist()[2:] == [
        "fewer than 5 forms (min_n=50): not estimated"] * 2
    assert out.loc[0, "n"] == 70 and out.loc[1, "n"] == 60


# --------------------------------------------------------- the shipped data set


@pytest.fixture(scope="module")
def shipped() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scored rows and the clients file of the shipped (simulated) data set."""
    data = ROOT / "data" / "simulated"
    wai, swemwbs = load_instrument("wai_sr"), load_instrument("swemwbs")
    checked = validate_inputs({"alliance": str(data / "alliance.csv"),
                               "outcome": str(data / "outcome.csv"),
                               "clients": str(data / "clients.csv")}, wai, swemwbs, {})
    alliance, _ = score_raters(checked.alliance, wai, None)
    outcome, _ = score_outcome(checked.outcome, swemwbs)
    scored = merge_scores(alliance[alliance["rater"] == "client"].drop(columns="rater"),
                          outcome)
    assert checked.clients is not None
    return scored, checked.clients


def test_shipped_tables_change_only_where_a_count_was_derivable(
        shipped: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    scored, clients = shipped
    # attendance: the three small bars (14, 15, 17 sessions) hold 5 of the 373 clients
    # together, so nothing more is left out (as before the rule).
    att = attendance(scored, 5)
    assert att.loc[att["suppressed"], "sessions"].tolist() == [14, 15, 17]
    assert att["clients"].dropna().astype(int).tolist() == [
        23, 28, 33, 40, 44, 44, 37, 37, 31, 22, 12, 10, 7]
    # endings: nothing small, nothing blank
    assert ending_counts(clients, 5)["n_clients"].tolist() == [232, 119, 26, 0]
    # distributions: goal's one small bin (1.0) was 2375 - 2374 = 1; task's (1.0) and
    # wellbeing's small bins too: the smallest shown bin of each now goes with them.
    dist = distributions(scored, 5)
    hidden = dist.loc[dist["suppressed"], ["variable", "lower"]].values.tolist()
    before = [["goal", 1.0], ["task", 1.0], ["bond", 1.25], ["bond", 1.5],
              ["wellbeing", 10.0], ["wellbeing", 31.0], ["wellbeing", 33.0],
              ["wellbeing", 34.0], ["wellbeing", 35.0]]        # the shipped results/
    added = [["goal", 1.25], ["task", 1.25], ["wellbeing", 9.0]]
    assert sorted(hidden) == sorted(before + added)
    assert dist.loc[~dist["suppressed"] & (dist["variable"] == "bond"), "sessions"].sum() \
        == 2368   # bond: two small bins (7 sessions together): unchanged
