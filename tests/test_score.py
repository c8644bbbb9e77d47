"""Hand-scored rows for every shipped instrument, and the scorer's safeguards.

Every expected value below was worked out by hand from the key in the instrument's
published source (its YAML's ``source``, listed in docs/references.yaml; the arithmetic is
written next to it), not by running the scorer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from pipeline.instruments import load_instrument
from pipeline.score import keyed_items, merge_scores, score_alliance, score_outcome

Cell = float | str | None


def frame(prefix: str, rows: Sequence[Sequence[Cell]], **ids: Sequence[object]) -> pd.DataFrame:
    """Item frame ``<prefix>_1..k`` from rows of item values (None / "" = blank)."""
    k = len(rows[0])
    data = pd.DataFrame(
        [[np.nan if v is None else v for v in r] for r in rows],
        columns=[f"{prefix}_{i}" for i in range(1, k + 1)],
    )
    for name, values in ids.items():
        data.insert(0, name, list(values))
    return data


def summary_counts(summary: pd.DataFrame, scale: str) -> tuple[int, int, int, int]:
    row = summary.set_index("scale").loc[scale]
    return (int(row.n_rows), int(row.n_complete), int(row.n_prorated), int(row.n_missing))


# ---------------------------------------------------------------------------- WAI-SR

WAI_SR_ROW = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2]


def test_wai_sr_hand_scored() -> None:
    inst = load_instrument("wai_sr")
    one_missing = list(WAI_SR_ROW)
    one_missing[6 - 1] = None                 # goal item 6 blank
    two_missing = list(one_missing)
    two_missing[4 - 1] = None                 # goal items 4 and 6 blank
    df = frame("wai_sr", [WAI_SR_ROW, one_missing, two_missing],
               client_id=["a", "a", "b"], session=[1, 2, 1])
    scored, summary = score_alliance(df, inst)
    # goal 4,6,8,11 = 4,1,3,1 -> 9/4; task 1,2,10,12 = 1,2,5,2 -> 10/4; bond 3,5,7,9 = 3,5,2,4
    assert scored.loc[0, ["goal", "task", "bond"]].tolist() == [2.25, 2.5, 3.5]
    assert scored.loc[0, "alliance_total"] == pytest.approx((2.25 + 2.5 + 3.5) / 3)
    assert scored.loc[1, "goal"] == pytest.approx((4 + 3 + 1) / 3)     # prorated mean
    assert np.isnan(scored.loc[2, "goal"]) and np.isnan(scored.loc[2, "alliance_total"])
    assert scored.loc[2, "task"] == 2.5
    # identifier columns in the canonical order, whatever their order in the input
    assert list(scored.columns) == ["client_id", "session", "goal", "task", "bond",
                                    "alliance_total"]
    assert summary_counts(summary, "goal") == (3, 1, 1, 1)
    assert summary_counts(summary, "task") == (3, 3, 0, 0)
    assert summary_counts(summary, "alliance_total") == (3, 1, 1, 1)
    assert set(summary.source) == {"items"}


# ----------------------------------------------------------------- WAI-S (and WAI-S-T)

# items 1..12; 4 and 10 reversed as 8 - x
WAI_S_ROW: list[Cell] = [7, 6, 5, 2, 4, 6, 3, 5, 1, 1, 7, 4]


@pytest.mark.parametrize("key", ["wai_s", "wai_s_t"])
def test_wai_s_hand_scored_with_reversed_and_blank_items(key: str) -> None:
    inst = load_instrument(key)
    blank_reversed = list(WAI_S_ROW)
    blank_reversed[4 - 1] = ""               # blank reversed item: must NOT become 8 - blank
    spaces = list(WAI_S_ROW)
    spaces[10 - 1] = "  "
    df = frame(key, [WAI_S_ROW, blank_reversed, spaces])
    scored, summary = score_alliance(df, inst)
    # goal: 8-2, 6, 8-1, 7 = 6,6,7,7 -> 26/4 = 6.5
    # task: 1,2,8,12 = 7,6,5,4 -> 5.5; bond: 3,5,7,9 = 5,4,3,1 -> 3.25
    assert scored.loc[0, ["goal", "task", "bond"]].tolist() == [6.5, 5.5, 3.25]
    assert scored.loc[0, "alliance_total"] == pytest.approx(15.25 / 3)
    # item 4 blank: goal = (6 + 7 + 7) / 3, not (8 + 6 + 7 + 7) / 4 = 7
    assert scored.loc[1, "goal"] == pytest.approx(20 / 3)
    # item 10 blank: goal = (6 + 6 + 7) / 3
    assert scored.loc[2, "goal"] == pytest.approx(19 / 3)
    assert summary_counts(summary, "goal") == (3, 1, 2, 0)


def test_wai_s_reversed_blank_stays_missing_in_keyed_items() -> None:
    inst = load_instrument("wai_s")
    row = list(WAI_S_ROW)
    row[4 - 1] = None
    keyed = keyed_items(frame("wai_s", [row]), inst)
    assert np.isnan(keyed.loc[0, "wai_s_4"])
    assert keyed.loc[0, "wai_s_10"] == 7          # 8 - 1


def test_therapist_form_ignores_client_columns() -> None:
    client = frame("wai_s", [WAI_S_ROW])
    with pytest.raises(ValueError, match="wai_s_t"):
        score_alliance(client, load_instrument("wai_s_t"))


@pytest.mark.parametrize("bad", [8, 0, 99, -9])
def test_out_of_range_item_raises_before_reversing(bad: int) -> None:
    rows = [list(WAI_S_ROW), list(WAI_S_ROW)]
    rows[1][10 - 1] = bad
    df = frame("wai_s", rows)
    df.index = ["r1", "r2"]
    with pytest.raises(ValueError, match=r"wai_s_10.*1-7.*row 'r2'"):
        score_alliance(df, load_instrument("wai_s"))


def test_non_numeric_item_raises() -> None:
    row = list(WAI_S_ROW)
    row[2] = "often"
    with pytest.raises(ValueError, match="wai_s_3: 1 non-numeric"):
        score_alliance(frame("wai_s", [row]), load_instrument("wai_s"))


def test_numeric_text_is_accepted() -> None:
    df = frame("wai_s", [[str(v) for v in WAI_S_ROW]])
    scored, _ = score_alliance(df, load_instrument("wai_s"))
    assert scored.loc[0, "goal"] == 6.5


def test_partial_item_columns_raise() -> None:
    df = frame("wai_s", [WAI_S_ROW]).drop(columns=["wai_s_12"])
    with pytest.raises(ValueError, match=r"11 of 12 item columns.*wai_s_12"):
        score_alliance(df, load_instrument("wai_s"))


# ---------------------------------------------------------------- WAI-36 (and therapist)


def wai36_row() -> list[Cell]:
    return [((i - 1) % 7) + 1 for i in range(1, 37)]     # 1..7 repeating


@pytest.mark.parametrize("key", ["wai36", "wai36_t"])
def test_wai36_hand_scored(key: str) -> None:
    inst = load_instrument(key)
    one = wai36_row()
    one[9 - 1] = None              # reversed goal item 9 blank (raw 2, keyed 6)
    two = list(one)
    two[3 - 1] = None              # two goal items missing: more than the rule allows
    scored, summary = score_alliance(frame(key, [wai36_row(), one, two]), inst)
    # goal keyed: 3R=5 6=6 9R=6 10R=5 12R=3 14=7 22=1 25=4 27R=2 30=2 32=4 34R=2 -> 47
    # task keyed: 2=2 4=4 7R=1 11R=4 13=6 15R=7 16=2 18=4 24=3 31R=5 33R=3 35=7 -> 48
    # bond keyed: 1R=7 5=5 8=1 17=3 19=5 20R=2 21=7 23=2 26=5 28=7 29R=7 36=1 -> 52
    assert scored.loc[0, "goal"] == pytest.approx(47 / 12)
    assert scored.loc[0, "task"] == pytest.approx(48 / 12)
    assert scored.loc[0, "bond"] == pytest.approx(52 / 12)
    assert scored.loc[0, "alliance_total"] == pytest.approx(147 / 36)
    assert scored.loc[1, "goal"] == pytest.approx((47 - 6) / 11)
    assert np.isnan(scored.loc[2, "goal"])
    assert summary_counts(summary, "goal") == (3, 1, 1, 1)


# --------------------------------------------------------------------- pre-scored


def test_prescored_alliance_passes_through() -> None:
    df = pd.DataFrame({"client_id": [1, 2], "goal": [4.0, 5.5], "task": [3.0, None],
                       "bond": [6.0, 7.0], "note": ["x", "y"]})
    scored, summary = score_alliance(df, load_instrument("wai_s"))
    assert scored["goal"].tolist() == [4.0, 5.5]
    assert scored.loc[0, "alliance_total"] == pytest.approx(13 / 3)
    assert np.isnan(scored.loc[1, "alliance_total"])
    assert "note" not in scored.columns
    assert set(summary.source) == {"pre-scored"}
    assert summary["n_prorated"].isna().all()


def test_prescored_alliance_on_sum_metric_is_refused() -> None:
    df = pd.DataFrame({"goal": [24.0], "task": [20.0], "bond": [18.0]})
    with pytest.raises(ValueError, match=r"goal.*1-7"):
        score_alliance(df, load_instrument("wai_s"))


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not an alliance"):
        score_alliance(pd.DataFrame({"x": [1]}), load_instrument("swemwbs"))
    with pytest.raises(ValueError, match="not an outcome"):
        score_outcome(pd.DataFrame({"x": [1]}), load_instrument("wai_sr"))


# ------------------------------------------------------------------------ outcomes


def test_swemwbs_conversion_ends_and_middle() -> None:
    rows: list[list[Cell]] = [
        [1] * 7,                       # raw 7  -> 7.00
        [5] * 7,                       # raw 35 -> 35.00
        [3] * 7,                       # raw 21 -> 19.25
        [1, 2, 3, 4, 5, 1, 2],         # raw 18 -> 17.43
        [5, 5, 5, None, 5, 5, 5],      # a missing item: raw sum undefined
    ]
    scored, summary = score_outcome(frame("swemwbs", rows), load_instrument("swemwbs"))
    assert scored["wellbeing"].iloc[:4].tolist() == [7.00, 35.00, 19.25, 17.43]
    assert np.isnan(scored["wellbeing"].iloc[4])
    assert summary_counts(summary, "wellbeing") == (5, 4, 0, 1)
    assert summary.loc[0, "direction"] == "higher_better"


def test_wemwbs_hand_scored() -> None:
    cyc: list[Cell] = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4]      # 15 + 15 + 10 = 40
    missing = list(cyc)
    missing[0] = None
    scored, _ = score_outcome(frame("wemwbs", [cyc, [5] * 14, missing]),
                              load_instrument("wemwbs"))
    assert scored["wellbeing"].iloc[:2].tolist() == [40, 70]
    assert np.isnan(scored["wellbeing"].iloc[2])


def test_who5_raw_times_four() -> None:
    rows: list[list[Cell]] = [[5, 4, 3, 2, 1], [0] * 5, [5] * 5, [5, 5, None, 5, 5]]
    scored, _ = score_outcome(frame("who5", rows), load_instrument("who5"))
    assert scored["wellbeing"].iloc[:3].tolist() == [60, 0, 100]      # 15 * 4, 0, 25 * 4
    assert np.isnan(scored["wellbeing"].iloc[3])


CORE10_ROW: list[Cell] = [4, 0, 1, 3, 2, 2, 1, 0, 3, 4]
# keyed: 4, 4-0=4, 4-1=3, 3, 2, 2, 1, 0, 3, 4 -> 26


def core10_rows() -> list[list[Cell]]:
    item5 = list(CORE10_ROW)
    item5[5 - 1] = None            # one missing: 10 * 24 / 9
    item2 = list(CORE10_ROW)
    item2[2 - 1] = ""              # blank reversed item: 10 * 22 / 9, not 26
    two = list(item5)
    two[7 - 1] = None              # two missing: not scored
    return [CORE10_ROW, item5, item2, two]


def test_core10_native_direction() -> None:
    scored, summary = score_outcome(
        frame("core10", core10_rows()), load_instrument("core10"), higher_is_better=False
    )
    w = scored["wellbeing"]
    assert w.iloc[0] == 26
    assert w.iloc[1] == pytest.approx(240 / 9)
    assert w.iloc[2] == pytest.approx(220 / 9)
    assert np.isnan(w.iloc[3])
    assert summary_counts(summary, "wellbeing") == (4, 1, 2, 1)
    assert summary.loc[0, "direction"] == "higher_worse"


def test_core10_reoriented_keeps_range() -> None:
    scored, summary = score_outcome(frame("core10", core10_rows()), load_instrument("core10"))
    w = scored["wellbeing"]
    assert w.iloc[0] == 40 - 26
    assert w.iloc[1] == pytest.approx(40 - 240 / 9)
    assert summary.loc[0, "direction"] == "higher_better"
    assert "40 - core10" in summary.loc[0, "metric"]


def test_phq9_mean_substitution() -> None:
    full: list[Cell] = [0, 1, 2, 3, 0, 1, 2, 3, 0]                 # 12
    two = [0, 1, 2, 3, 0, 1, 2, None, None]                        # 9 + 2 * 9/7 = 81/7
    three = [0, 1, 2, 3, 0, 1, None, None, None]
    inst = load_instrument("phq9")
    native, _ = score_outcome(frame("phq9", [full, two, three]), inst, higher_is_better=False)
    assert native["wellbeing"].iloc[0] == 12
    assert native["wellbeing"].iloc[1] == pytest.approx(81 / 7)
    assert np.isnan(native["wellbeing"].iloc[2])
    better, _ = score_outcome(frame("phq9", [full, two, three]), inst)
    assert better["wellbeing"].iloc[0] == 27 - 12
    assert better["wellbeing"].iloc[1] == pytest.approx(27 - 81 / 7)


def test_gad7_hand_scored() -> None:
    rows: list[list[Cell]] = [[3, 2, 1, 0, 1, 2, 3], [3, 2, 1, None, 1, 2, 3]]   # 12
    inst = load_instrument("gad7")
    native, _ = score_outcome(frame("gad7", rows), inst, higher_is_better=False)
    assert native["wellbeing"].iloc[0] == 12
    assert np.isnan(native["wellbeing"].iloc[1])
    better, _ = score_outcome(frame("gad7", rows), inst)
    assert better["wellbeing"].iloc[0] == 21 - 12


def test_outcome_out_of_range_item_raises() -> None:
    rows: list[list[Cell]] = [[0, 1, 2, 3, 0, 1, 2, 3, 4]]          # PHQ-9 items are 0-3
    with pytest.raises(ValueError, match=r"phq9_9.*0-3"):
        score_outcome(frame("phq9", rows), load_instrument("phq9"))


def test_prescored_outcome_passes_through_and_is_reoriented() -> None:
    df = pd.DataFrame({"client_id": [1, 1], "session": [1, 2], "core10": [11.0, None]})
    scored, summary = score_outcome(df, load_instrument("core10"))
    assert scored.loc[0, "wellbeing"] == 29
    assert np.isnan(scored.loc[1, "wellbeing"])
    assert list(scored.columns) == ["client_id", "session", "wellbeing"]
    assert summary.loc[0, "source"] == "pre-scored"
    df_sw = pd.DataFrame({"swemwbs": [19.25, 36.0]})
    with pytest.raises(ValueError, match=r"swemwbs.*7-35"):
        score_outcome(df_sw, load_instrument("swemwbs"))


def test_outcome_without_items_or_total_raises() -> None:
    with pytest.raises(ValueError, match="neither item columns"):
        score_outcome(pd.DataFrame({"client_id": [1]}), load_instrument("who5"))


# ------------------------------------------------------------------------- merging


def test_merge_scores_keeps_sessions_with_both_forms() -> None:
    alliance = pd.DataFrame({"client_id": ["a", "a", "b"], "therapist_id": ["t", "t", "u"],
                             "session": [2, 1, 1], "goal": [4.0, 3.0, 5.0]})
    outcome = pd.DataFrame({"client_id": ["a", "b", "b"], "therapist_id": ["x", "u", "u"],
                            "session": [1, 1, 2], "wellbeing": [20.0, 25.0, 26.0]})
    merged = merge_scores(alliance, outcome)
    assert list(merged.columns) == ["client_id", "therapist_id", "session", "goal", "wellbeing"]
    assert merged[["client_id", "session"]].values.tolist() == [["a", 1], ["b", 1]]
    assert merged["therapist_id"].tolist() == ["t", "u"]       # from the alliance frame
    assert merged["wellbeing"].tolist() == [20.0, 25.0]


def test_merge_scores_refuses_two_forms_per_session() -> None:
    alliance = pd.DataFrame({"client_id": ["a", "a"], "session": [1, 1],
                             "rater": ["client", "therapist"], "goal": [4.0, 3.0]})
    outcome = pd.DataFrame({"client_id": ["a"], "session": [1], "wellbeing": [20.0]})
    with pytest.raises(ValueError, match="2 alliance rows share"):
        merge_scores(alliance, outcome)
