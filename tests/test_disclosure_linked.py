"""Secondary suppression across linked tables (pipeline/disclosure.py, "Linked tables").

A count blanked in one published table must not come back from the cells of another: the
lengths of the repaired episodes add up to prevalence's n_repaired, the agreement of two
criteria to each one's clients with an episode, the course at offset 0 to the episodes of
each status. The hand-made tables are worked out by hand from the rule; the shipped ones
are the simulated data set's (the values in results/ruptures/ before the rule).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.describe import suppress_linked
from pipeline.disclosure import (
    LinkedCell,
    across,
    protect_linked,
    tag,
    unprotected_linked,
    within,
)
from pipeline.instruments import load_instrument
from pipeline.ruptures import summarise as S
from pipeline.ruptures.criteria import load_criteria, load_rules, scale_reliability
from pipeline.ruptures.detect import alliance_series, detect_episodes
from pipeline.score import score_alliance, score_outcome
from pipeline.validate import validate_inputs

ROOT = Path(__file__).resolve().parents[1]


def _episodes_and_lengths(repaired: int, unrepaired: int, censored: int,
                          lengths: list[int]) -> tuple[dict[str, pd.DataFrame],
                                                       list[list[LinkedCell]]]:
    """One prevalence row and its lengths rows, with the margins the ruptures stage uses:
    the row's parts, the lengths, lengths = n_repaired, lengths + the others = episodes."""
    prev = pd.DataFrame({"n_repaired": [repaired], "n_unrepaired": [unrepaired],
                         "n_censored": [censored]})
    lens = pd.DataFrame({"n_episodes": lengths})
    parts: list[LinkedCell] = [("lengths", i, "n_episodes") for i in range(len(lengths))]
    margins = [*tag("prevalence", across(prev, ["n_repaired", "n_unrepaired", "n_censored"])),
               *tag("lengths", within(lens, "n_episodes")),
               [*parts, ("prevalence", 0, "n_repaired")],
               [*parts, ("prevalence", 0, "n_unrepaired"), ("prevalence", 0, "n_censored")]]
    return {"prevalence": prev, "lengths": lens}, margins


def _small(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    return {name: (t > 0) & (t < 5) for name, t in tables.items()}


def test_blank_repaired_count_comes_back_from_the_lengths_before_and_not_after() -> None:
    # 23 episodes: 20 repaired (lengths 8, 7, 5), 3 unrepaired, 0 censored. Prevalence
    # alone blanks the 3 and the 20 (3 would be 23 - 20); the lengths add up to 20.
    tables, margins = _episodes_and_lengths(20, 3, 0, [8, 7, 5])
    alone = {"prevalence": protect_linked({"p": tables["prevalence"]},
                                          {"p": _small(tables)["prevalence"]},
                                          tag("p", across(tables["prevalence"], [
                                              "n_repaired", "n_unrepaired", "n_censored"])),
                                          5)["p"],
             "lengths": _small(tables)["lengths"]}
    assert alone["prevalence"].iloc[0].tolist() == [True, True, False]
    assert alone["lengths"]["n_episodes"].tolist() == [False, False, False]
    # the breakdown (8 + 7 + 5 = the blank 20) and the substitution (8 + 7 + 5 + blank +
    # 0 = 23: the blank 3) give both back
    assert unprotected_linked(tables, alone, margins, 5) == [2, 3]
    out = protect_linked(tables, _small(tables), margins, 5)
    # the breakdown takes the 5 (smallest length), the lengths' own margin then the 7:
    # the reader learns 7 + 5 = 12 and 12 + 3 = 15, no blank on its own
    assert out["prevalence"].iloc[0].tolist() == [True, True, False]
    assert out["lengths"]["n_episodes"].tolist() == [False, True, True]
    assert unprotected_linked(tables, out, margins, 5) == []


def test_blank_length_comes_back_from_a_shown_repaired_count_as_before() -> None:
    # a shown n_repaired (21) is the lengths' published total: 2 would be 21 - 19
    tables, margins = _episodes_and_lengths(21, 10, 12, [13, 6, 2])
    out = protect_linked(tables, _small(tables), margins, 5)
    assert out["prevalence"].iloc[0].tolist() == [False, False, False]
    assert out["lengths"]["n_episodes"].tolist() == [False, True, True]


def test_nothing_linked_recoverable_changes_nothing() -> None:
    tables, margins = _episodes_and_lengths(40, 10, 12, [20, 12, 8])
    out = protect_linked(tables, _small(tables), margins, 5)
    assert not out["prevalence"].to_numpy().any() and not out["lengths"].to_numpy().any()
    # and a blank already protected within each table needs nothing more
    tables, margins = _episodes_and_lengths(40, 3, 4, [20, 12, 8])
    out = protect_linked(tables, _small(tables), margins, 5)
    assert out["prevalence"].iloc[0].tolist() == [False, True, True]   # 3 + 4 = 7
    assert out["lengths"]["n_episodes"].tolist() == [False, False, False]


def test_single_table_protect_is_protect_linked_with_one_table() -> None:
    frame = pd.DataFrame({"a": [2, 8, 20], "b": [10, 30, 40]})
    primary = pd.DataFrame({"a": [True, False, False], "b": [False, False, False]})
    margins = [*across(frame, ["a", "b"]), *within(frame, "a"), *within(frame, "b")]
    out = protect_linked({"t": frame}, {"t": primary}, tag("t", margins), 5)["t"]
    assert out.to_dict("list") == {"a": [True, True, False], "b": [True, True, False]}


def test_last_cells_are_chosen_only_when_nothing_else_can_be() -> None:
    # the other row of a 2 x 2 agreement table: a's clients with an episode (10, in the
    # prevalence table) + only b (2, blank) + neither (300) = the clients (312).
    prev = pd.DataFrame({"n_clients_with_episode": [10]})
    agr = pd.DataFrame({"n_only_b": [2], "n_neither": [300]})
    margin: list[LinkedCell] = [("prevalence", 0, "n_clients_with_episode"),
                                ("agreement", 0, "n_only_b"), ("agreement", 0, "n_neither")]
    tables = {"prevalence": prev, "agreement": agr}
    plain = protect_linked(tables, _small(tables), [margin], 5)
    assert plain["prevalence"].iloc[0, 0] and not plain["agreement"].iloc[0, 1]  # 10 < 300
    late = protect_linked(tables, _small(tables), [margin], 5, last=[margin[0]])
    assert not late["prevalence"].iloc[0, 0] and late["agreement"].iloc[0, 1]
    # with nothing else to take, a last cell is taken
    agr0 = agr.assign(n_neither=0)
    tables0 = {"prevalence": prev, "agreement": agr0}
    late = protect_linked(tables0, _small(tables0), [margin], 5, last=[margin[0]])
    assert late["prevalence"].iloc[0, 0]


def test_suppress_linked_blanks_what_derives_from_each_count() -> None:
    tables, margins = _episodes_and_lengths(20, 3, 0, [8, 7, 5])
    prev = tables["prevalence"].assign(pct_repaired=100 * 20 / 23)
    out = suppress_linked({"prevalence": (prev, {"n_repaired": ["pct_repaired"],
                                                 "n_unrepaired": ["pct_repaired"],
                                                 "n_censored": []}),
                           "lengths": (tables["lengths"], {"n_episodes": []})},
                          margins, 5)
    assert out["prevalence"]["pct_repaired"].isna().tolist() == [True]
    assert out["prevalence"].loc[0, "suppressed"] == "n_repaired n_unrepaired"
    assert out["lengths"]["suppressed"].tolist() == ["", "n_episodes", "n_episodes"]
    assert out["lengths"]["n_episodes"].tolist()[0] == 8


# --------------------------------------------------------- the shipped data set


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict[str, pd.DataFrame]]:
    """The ruptures tables of the shipped data set: protected together (``linked``) and
    each on its own (``alone``, as before the rule), and their counts (``counts``)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    cfg = params["ruptures"]
    data = ROOT / "data" / "simulated"
    wai, swemwbs = load_instrument("wai_sr"), load_instrument("swemwbs")
    checked = validate_inputs({"alliance": str(data / "alliance.csv"),
                               "outcome": str(data / "outcome.csv"),
                               "clients": str(data / "clients.csv")}, wai, swemwbs, {})
    criteria, rules = load_criteria(cfg), load_rules(cfg)
    scored, _ = score_alliance(checked.alliance, wai)
    series = alliance_series(scored, [str(s) for s in cfg["scales"]])
    reliability = scale_reliability(checked.alliance, wai, which="alpha",
                                    override=cfg.get("reliability_override") or {})
    episodes, applied = detect_episodes(series, criteria, rules, reliability)
    assert checked.outcome is not None
    outcome, _ = score_outcome(checked.outcome, swemwbs)
    wellbeing = outcome[["client_id", "session", "wellbeing"]]
    bins, before, after = cfg["timing_bins"], cfg["course"]["before"], cfg["course"]["after"]
    linked = S.published(episodes, applied, series, wellbeing, criteria, rules, bins, 5,
                         0.95, before, after)
    alone = {"prevalence": S.prevalence(episodes, applied, criteria, 5),
             "lengths": S.lengths(episodes, criteria, rules, 5),
             "timing": S.timing(episodes, criteria, bins, 5),
             "agreement": S.agreement(episodes, applied, criteria, 5),
             "course": S.course(episodes, series, wellbeing, criteria, 5, 0.95, before,
                                after)}
    counts = {"prevalence": S.prevalence_counts(episodes, applied, criteria, 5),
              "lengths": S.lengths_counts(episodes, criteria, rules),
              "timing": S.timing_counts(episodes, criteria, bins),
              "agreement": S.agreement_counts(episodes, applied, criteria),
              "course": S.course_counts(episodes, series, wellbeing, criteria, 0.95, before,
                                        after)}
    return {"linked": linked, "alone": alone, "counts": counts}


def _row(table: pd.DataFrame, **key: str) -> pd.DataFrame:
    mask = np.logical_and.reduce([table[k] == v for k, v in key.items()])
    return table[mask]


def test_shipped_sudden_dip_bond_prevalence_and_lengths(
        shipped: dict[str, dict[str, pd.DataFrame]]) -> None:
    # 87 episodes: 83 repaired (lengths 67, 13, 3), 1 unrepaired, 3 censored. Prevalence
    # blanks 1 + 3 = 4 and the 83 with them; the lengths blank the 3 and the 13. The
    # lengths' sum is 67 + a blank 16, so the blank 83 does not come back: the rule adds
    # nothing here (the reader learns 13 + 3 + 1 + 3 = 20 = 87 - 67).
    key = {"criterion": "sudden_dip", "rater": "client", "scale": "bond"}
    counts = _row(shipped["counts"]["prevalence"], **key).iloc[0]
    assert counts[["n_episodes", "n_repaired", "n_unrepaired", "n_censored"]].tolist() == [
        87, 83, 1, 3]
    assert _row(shipped["counts"]["lengths"], **key)["n_episodes"].tolist() == [67, 13, 3]
    for version in ("linked", "alone"):
        prev = _row(shipped[version]["prevalence"], **key).iloc[0]
        assert prev["n_episodes"] == 87
        assert prev[["n_repaired", "n_unrepaired", "n_censored", "pct_repaired"]].isna().all()
        lens = _row(shipped[version]["lengths"], **key)["n_episodes"]
        assert lens.isna().tolist() == [False, True, True] and lens.iloc[0] == 67


def test_shipped_agreement_rows_with_a_blank_are_blank_throughout(
        shipped: dict[str, dict[str, pd.DataFrame]]) -> None:
    # Before: Gumz 1 SD and the reliable drop on bond showed 195 both and 153 neither,
    # blanking only a 28 and a 1. Gumz 1 SD found 223 clients and the reliable drop 196
    # (prevalence), so the blanks were 223 - 195 = 28 and 196 - 195 = 1.
    prev = shipped["alone"]["prevalence"].set_index(["criterion", "rater", "scale"])
    key = {"rater": "client", "scale": "bond", "criterion_a": "gumz_1sd",
           "criterion_b": "reliable_drop"}
    before = _row(shipped["alone"]["agreement"], **key).iloc[0]
    assert before[["n_both", "n_neither"]].tolist() == [195, 153]
    a = prev.loc[("gumz_1sd", "client", "bond"), "n_clients_with_episode"]
    b = prev.loc[("reliable_drop", "client", "bond"), "n_clients_with_episode"]
    assert (a - before["n_both"], b - before["n_both"]) == (28, 1)
    after = _row(shipped["linked"]["agreement"], **key).iloc[0]
    cells = ["n_both", "n_only_a", "n_only_b", "n_neither", "kappa"]
    assert after[cells].isna().all() and after["n_clients"] == 377
    assert after["suppressed"] == "n_both n_only_a n_only_b n_neither"
    # the eight rows that had a blank are now blank throughout; no other row changed
    # (rows whose Jaccard index alone is blank, S.blank_jaccard, are the same either way)
    had = shipped["alone"]["agreement"]["suppressed"].str.contains("n_")
    assert int(had.sum()) == 8
    assert (shipped["linked"]["agreement"].loc[had, cells].isna().all(axis=None))
    pd.testing.assert_frame_equal(shipped["linked"]["agreement"][~had],
                                  shipped["alone"]["agreement"][~had])


def test_shipped_course_of_a_blank_status_is_blank(
        shipped: dict[str, dict[str, pd.DataFrame]]) -> None:
    # Sudden dip, total score: 3 unrepaired and 8 censored, both blank in prevalence; the
    # course showed 8 censored episodes at offset 0 (every episode has its rupture
    # session's score), so 8 and 81 - 70 - 8 = 3 came back; the other offsets (6, 7, 7, 6
    # and wellbeing 5, 7, 7, 8, 5) bounded the 8 from below.
    prev = _row(shipped["linked"]["prevalence"], criterion="sudden_dip", rater="client",
                scale="total").iloc[0]
    assert prev["n_repaired"] == 70 and prev[["n_unrepaired", "n_censored"]].isna().all()
    before = _row(shipped["alone"]["course"], criterion="sudden_dip", status="censored")
    assert before["n"].fillna(-1).tolist() == [6, 7, 7, 8, 6, -1, -1, -1, -1,   # -1: blank
                                               5, 7, 7, 8, 5, -1, -1, -1, -1]
    after = _row(shipped["linked"]["course"], criterion="sudden_dip", status="censored")
    assert after["suppressed"].all() and after[S.COURSE_VALUES].isna().all(axis=None)
    # nothing else in the course changed
    crs_a, crs_l = shipped["alone"]["course"], shipped["linked"]["course"]
    other = ~((crs_a["criterion"] == "sudden_dip") & (crs_a["status"] == "censored"))
    pd.testing.assert_frame_equal(crs_l[other], crs_a[other])


def test_shipped_prevalence_lengths_timing_unchanged_and_every_margin_holds(
        shipped: dict[str, dict[str, pd.DataFrame]]) -> None:
    for name in ("prevalence", "lengths", "timing"):
        pd.testing.assert_frame_equal(shipped["linked"][name], shipped["alone"][name])
    cols = {"prevalence": list(S.PREVALENCE_COUNTS), "lengths": ["n_episodes"],
            "timing": ["n_episodes"], "agreement": S.AGREEMENT_COUNTS, "course": ["n"]}
    counts = {k: shipped["counts"][k][c].astype(float) for k, c in cols.items()}
    margins = S.linked_margins(shipped["counts"])
    hidden = {v: {k: shipped[v][k][c].isna() & (counts[k] > 0) for k, c in cols.items()}
              for v in ("linked", "alone")}
    assert unprotected_linked(counts, hidden["linked"], margins, 5) == []
    broken = unprotected_linked(counts, hidden["alone"], margins, 5)
    # before: all four 2 x 2 margins of the three rows blanking only a and only b (each
    # had one blank), two of the five rows blanking both and only b (a's clients with an
    # episode = both + only a; a's other row = only b + neither), and the course's
    # identity at offset 0: 3 * 4 + 5 * 2 + 1
    assert len(broken) == 23
    assert all(any(cell[0] in ("agreement", "course") for cell in margins[i]) for i in broken)


def test_jaccard_that_would_give_back_a_small_count_of_sessions_is_blank() -> None:
    """Rule A found 40 rupture sessions, rule B 42 (their episodes, in prevalence): a
    Jaccard index of 38 / 44 gives back 38 shared sessions, 2 found by A only and 4 by B
    only (J (|A| + |B|) / (1 + J) = 38); 2 and 4 are below min_cell. With 30 shared and
    10 / 12 found by one rule only, it is shown; the session counts are never published."""
    table = pd.DataFrame({
        "criterion_a": ["a", "a"], "criterion_b": ["b", "c"],
        "jaccard": [38 / 44, 30 / 52], "suppressed": ["", "n_only_b n_neither"],
        "sessions_both": [38, 30], "sessions_only_a": [2, 10], "sessions_only_b": [4, 12]})
    j = 38 / 44
    assert round(j * (40 + 42) / (1 + j)) == 38
    out = S.blank_jaccard(table, 5)
    assert list(out.columns) == ["criterion_a", "criterion_b", "jaccard", "suppressed"]
    assert np.isnan(out.loc[0, "jaccard"]) and out.loc[0, "suppressed"] == "jaccard"
    assert out.loc[1, "jaccard"] == 30 / 52
    assert out.loc[1, "suppressed"] == "n_only_b n_neither"
    # zero sessions found by one rule only give nothing small back: shown
    nested = table.assign(sessions_only_a=[0, 0], sessions_only_b=[0, 0])
    assert S.blank_jaccard(nested, 5)["jaccard"].notna().all()


def test_shipped_jaccard_blank_exactly_where_a_session_count_is_small(
        shipped: dict[str, dict[str, pd.DataFrame]]) -> None:
    raw = shipped["counts"]["agreement"]
    sessions = raw[list(S.JACCARD_SESSIONS)].to_numpy()
    small = ((sessions > 0) & (sessions < 5)).any(axis=1) & raw["jaccard"].notna().to_numpy()
    assert int(small.sum()) == 9          # on the shipped data
    published = shipped["linked"]["agreement"]
    assert not set(S.JACCARD_SESSIONS) & set(published.columns)
    blank = published["jaccard"].isna().to_numpy()
    assert (blank == (small | raw["jaccard"].isna().to_numpy())).all()
    assert (published.loc[small, "suppressed"].str.endswith("jaccard")).all()
