"""Reliability and correlations agree with R's psych; floor/ceiling counts by hand.

The reference values in ``tests/fixtures/psych/`` were produced once by
``Rscript tests/r/psych_reference.R`` (psych::alpha, psych::omega(nfactors = 1, fm =
"minres"), psych::statsBy) from the item files written by ``make_items.py``. R is not needed
to run these tests.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.instruments import load_instrument
from pipeline.psychometrics import (
    cronbach_alpha,
    floor_ceiling,
    one_factor_minres,
    reliability,
    subscale_correlations,
)
from pipeline.score import score_alliance

FIXTURES = Path(__file__).parent / "fixtures" / "psych"
# psych::fa stops its optimiser at a looser tolerance than scipy; agreement observed is
# about 1.5e-7 for omega. Alpha is closed-form and must agree to rounding error.
OMEGA_TOL = 1e-6
ALPHA_TOL = 1e-12


@pytest.fixture(scope="module")
def wai_items() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "items_wai_s.csv")


@pytest.fixture(scope="module")
def core_items() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "items_core10.csv")


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return pd.read_csv(FIXTURES / "psych_reliability.csv")


def test_fixture_records_r_versions() -> None:
    versions = json.loads((FIXTURES / "psych_session.json").read_text(encoding="utf-8"))
    assert {"R", "psych"} <= set(versions)


def test_reliability_matches_psych(
    wai_items: pd.DataFrame, core_items: pd.DataFrame, reference: pd.DataFrame
) -> None:
    ours = pd.concat(
        [
            reliability(wai_items, load_instrument("wai_s"), by_session=True, min_n=30),
            reliability(core_items, load_instrument("core10"), min_n=30),
        ],
        ignore_index=True,
    )
    key = ["instrument", "scale", "subset", "session"]
    ref = reference.assign(session=reference["session"].astype("Int64"))
    ours = ours.assign(session=ours["session"].astype("Int64"))
    merged = ref.merge(ours, on=key, suffixes=("_r", "_py"), how="outer", indicator=True)
    assert (merged["_merge"] == "both").all(), merged[[*key, "_merge"]]
    assert len(merged) == 13
    assert (merged["n_r"] == merged["n_py"]).all()
    assert (merged["n_items_r"] == merged["n_items_py"]).all()
    assert np.allclose(merged["alpha_r"], merged["alpha_py"], rtol=0, atol=ALPHA_TOL)
    assert np.allclose(merged["alpha_std_r"], merged["alpha_std_py"], rtol=0, atol=ALPHA_TOL)
    assert np.allclose(merged["omega_total_r"], merged["omega_total_py"], rtol=0, atol=OMEGA_TOL)
    assert (merged["note"] == "").all()


def test_reliability_uses_listwise_complete_cases(core_items: pd.DataFrame) -> None:
    out = reliability(core_items, load_instrument("core10"), min_n=30)
    assert out.loc[0, "n"] == len(core_items) - 5     # five rows have one blank item


def test_reliability_depends_on_the_reversed_key(wai_items: pd.DataFrame,
                                                 reference: pd.DataFrame) -> None:
    unreversed = dataclasses.replace(load_instrument("wai_s"), reversed=())
    out = reliability(wai_items, unreversed, min_n=30).set_index("scale")
    ref = reference.query("subset == 'all'").set_index("scale")
    assert out.loc["goal", "alpha"] < ref.loc["goal", "alpha"] - 0.3
    assert "negative loadings" in out.loc["goal", "note"]
    assert out.loc["task", "alpha"] == pytest.approx(ref.loc["task", "alpha"], abs=ALPHA_TOL)


def test_min_n_threshold(wai_items: pd.DataFrame) -> None:
    out = reliability(wai_items, load_instrument("wai_s"), by_session=True, min_n=61)
    per_session = out[out["subset"] == "session"]
    assert per_session["alpha"].isna().all() and per_session["omega_total"].isna().all()
    assert per_session["note"].str.contains("n=60 < min_n=61").all()
    assert out[out["subset"] == "all"]["alpha"].notna().all()
    # default: number of items + 1
    small = reliability(wai_items.head(4), load_instrument("wai_s"))
    assert small["alpha"].isna().all()
    assert reliability(wai_items.head(5), load_instrument("wai_s"))["alpha"].notna().all()


def test_min_n_per_session_turns_on_session_rows(wai_items: pd.DataFrame) -> None:
    # the call made by `python -m pipeline score` with params.yaml psychometrics settings
    out = reliability(wai_items, load_instrument("wai_s"), min_n_per_session=61)
    assert set(out["subset"]) == {"all", "session"}
    assert out.loc[out["subset"] == "session", "alpha"].isna().all()
    assert out.loc[out["subset"] == "all", "alpha"].notna().all()
    low = reliability(wai_items, load_instrument("wai_s"), min_n_per_session=60)
    assert low["alpha"].notna().all()


def test_alpha_only_skips_omega_and_keeps_alpha(wai_items: pd.DataFrame) -> None:
    inst = load_instrument("wai_s")
    both = reliability(wai_items, inst, by_session=True, min_n=30)
    alpha = reliability(wai_items, inst, by_session=True, min_n=30, omega=False)
    assert both["omega_total"].notna().any() and alpha["omega_total"].isna().all()
    pd.testing.assert_frame_equal(alpha.drop(columns=["omega_total", "note"]),
                                  both.drop(columns=["omega_total", "note"]))


def test_by_session_needs_session_column(wai_items: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="session"):
        reliability(wai_items.drop(columns="session"), load_instrument("wai_s"),
                    by_session=True, min_n=10)


def test_reliability_refuses_out_of_range_items(wai_items: pd.DataFrame) -> None:
    bad = wai_items.copy()
    bad.loc[5, "wai_s_4"] = 8
    with pytest.raises(ValueError, match="wai_s_4"):
        reliability(bad, load_instrument("wai_s"), min_n=10)


def test_cronbach_alpha_hand_example() -> None:
    # Two items: var 1, var 1, cov 0.5 -> alpha = 2 * (1 - 2 / 3) = 2/3.
    x = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0],
                  [1.0, 1.0], [-1.0, -1.0]])
    cov = np.cov(x, rowvar=False)
    expected = 2 * (1 - np.trace(cov) / cov.sum())
    assert cov[0, 1] == pytest.approx(0.4)
    assert cronbach_alpha(x)[0] == pytest.approx(expected)
    assert expected == pytest.approx(2 * (1 - 2.4 / 3.2))


@pytest.mark.filterwarnings("error")
def test_cronbach_alpha_computes_only_what_is_defined() -> None:
    """Constant items: numpy's "invalid value encountered in divide" reached the log of
    the ruptures step (its total-score alpha); now NaN, without a warning."""
    # items 1 and 3: var 1, cov 1; item 2 constant -> sum(C) = 4, tr(C) = 2,
    # alpha = 3/2 * (1 - 2/4) = 0.75; standardised alpha needs item 2's correlations
    x = np.array([[1.0, 2.0, 3.0], [2.0, 2.0, 4.0], [3.0, 2.0, 5.0]])
    alpha, alpha_std = cronbach_alpha(x)
    assert alpha == pytest.approx(0.75) and np.isnan(alpha_std)
    # every item constant: the total does not vary, alpha is not defined
    assert all(np.isnan(v) for v in cronbach_alpha(np.full((5, 4), 3.0)))


def test_minres_recovers_an_exact_one_factor_structure() -> None:
    lam = np.array([0.8, 0.7, 0.6, 0.5])
    r = np.outer(lam, lam)
    np.fill_diagonal(r, 1.0)
    assert np.allclose(one_factor_minres(r), lam, atol=1e-8)


def test_subscale_correlations_match_statsby(wai_items: pd.DataFrame) -> None:
    scored, _ = score_alliance(wai_items, load_instrument("wai_s"))
    ours = subscale_correlations(scored)
    ref = pd.read_csv(FIXTURES / "psych_statsby.csv")
    merged = ref.merge(ours, on=["level", "scale_1", "scale_2"], suffixes=("_r", "_py"))
    assert len(merged) == 6
    assert np.allclose(merged["r_r"], merged["r_py"], rtol=0, atol=1e-12)
    assert set(ours["n_clients"]) == {60}


def test_subscale_correlations_hand_example() -> None:
    # Client a: goal 1, 3 (mean 2), task 2, 4 (mean 3) -> deviations (-1, 1), (-1, 1).
    # Client b: goal 5, 5, task 1, 3 -> goal deviations 0, task -1, 1.
    # Client c: one row only, no within information.
    scored = pd.DataFrame({
        "client_id": ["a", "a", "b", "b", "c"],
        "session": [1, 2, 1, 2, 1],
        "goal": [1.0, 3.0, 5.0, 5.0, 2.0],
        "task": [2.0, 4.0, 1.0, 3.0, 6.0],
        "alliance_total": [9.0, 9.0, 9.0, 9.0, 9.0],
        "wellbeing": [20.0, 21.0, 22.0, 23.0, 24.0],
    })
    out = subscale_correlations(scored).set_index("level")
    # alliance_total and wellbeing are not subscales: excluded by default
    assert list(out["scale_2"]) == ["task", "task"]
    # within: x = (-1, 1, 0, 0), y = (-1, 1, -1, 1): sum xy = 2, sxx = 2, syy = 4
    assert out.loc["within", "r"] == pytest.approx(2 / np.sqrt(2 * 4))
    assert (out.loc["within", "n_obs"], out.loc["within", "n_clients"]) == (4, 2)
    # between: means goal (2, 5, 2), task (3, 2, 6)
    assert out.loc["between", "r"] == pytest.approx(np.corrcoef([2, 5, 2], [3, 2, 6])[0, 1])
    assert (out.loc["between", "n_obs"], out.loc["between", "n_clients"]) == (5, 3)


def test_floor_ceiling_counts_raw_responses() -> None:
    inst = load_instrument("core10")
    items = pd.DataFrame({f"core10_{i}": [0, 4, 4, 2, None] for i in range(1, 11)})
    items["core10_2"] = [0, 0, 0, 1, 1]               # reversed item: raw counts
    out = floor_ceiling(items, inst, keyed=False).set_index("item")
    assert out.loc["core10_1", ["n", "n_floor", "n_ceiling"]].tolist() == [4, 1, 2]
    assert out.loc["core10_1", "pct_ceiling"] == 50.0
    assert out.loc["core10_2", ["n", "n_floor", "n_ceiling"]].tolist() == [5, 3, 0]
    assert bool(out.loc["core10_2", "reversed"]) and not bool(out.loc["core10_1", "reversed"])
    assert len(out) == 10
    assert set(out["direction"]) == {"as answered"}


def test_floor_ceiling_counts_the_keyed_direction_by_default() -> None:
    """A reversed item's lowest printed answer is its best score: counted as ceiling."""
    inst = load_instrument("core10")
    items = pd.DataFrame({f"core10_{i}": [0, 4, 4, 2, None] for i in range(1, 11)})
    items["core10_2"] = [0, 0, 0, 1, 1]               # reversed: 0 scores 4
    out = floor_ceiling(items, inst).set_index("item")
    assert out.loc["core10_2", ["n", "n_floor", "n_ceiling"]].tolist() == [5, 0, 3]
    assert out.loc["core10_1", ["n_floor", "n_ceiling"]].tolist() == [1, 2]
    assert set(out["direction"]) == {"keyed"}


def test_floor_ceiling_names_subscales() -> None:
    inst = load_instrument("wai_sr")
    items = pd.DataFrame({c: [1, 5, 3] for c in inst.item_columns})
    out = floor_ceiling(items, inst).set_index("item_number")
    assert out.loc[8, "scale"] == "goal" and out.loc[1, "scale"] == "task"
    assert out["pct_floor"].eq(100 / 3).all()


def test_a_constant_item_is_named_in_words_not_as_a_python_list() -> None:
    from pipeline.psychometrics import _estimate

    block = pd.DataFrame({"wai_sr_1": [3.0, 4.0, 5.0] * 20, "wai_sr_4": [5.0] * 60,
                          "wai_sr_8": [5.0] * 60})
    out = _estimate(block, min_n=10)
    assert out["note"] == "no variance in wai_sr_4, wai_sr_8: not estimated"
    assert pd.isna(out["alpha"])
