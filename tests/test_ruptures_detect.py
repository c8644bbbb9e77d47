"""Rupture detection rules on hand-made series, and the criteria's thresholds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import SettingsError
from pipeline.ruptures.criteria import (
    NO_VARIATION,
    Criterion,
    Rules,
    clean_within_sd,
    dip_contrasts,
    load_criteria,
    load_rules,
    scale_reliability,
    series_sd,
    thresholds,
)
from pipeline.ruptures.detect import alliance_series, detect_episodes, detect_series

RULES = Rules(max_gap=2, pre_sessions=1, window=3, min_sessions_client_sd=3)


def one(sessions: list[int], scores: list[float], threshold: float = 1.0,
        repair: str = "pre_level", rules: Rules = RULES, v: bool = False) -> list[dict]:
    return detect_series(sessions, scores, threshold, rules, repair, v)


def test_repaired_episode_start_depth_length() -> None:
    (ep,) = one([1, 2, 3, 4, 5], [4, 4, 2.5, 3, 4.2])
    assert ep["status"] == "repaired"
    assert (ep["rupture_session"], ep["repair_session"], ep["length"]) == (3, 5, 2)
    assert ep["depth"] == pytest.approx(1.5)
    assert ep["pre_level"] == 4 and ep["rupture_score"] == 2.5


def test_unrepaired_needs_a_session_after_the_window() -> None:
    (ep,) = one([1, 2, 3, 4, 5, 6, 7], [4, 4, 2, 2, 2, 2, 2])
    assert ep["status"] == "unrepaired"
    assert ep["repair_session"] is None and ep["length"] is None


def test_last_sessions_are_censored_not_unrepaired() -> None:
    # The window (3 sessions) has not closed when the ratings stop.
    (ep,) = one([1, 2, 3, 4, 5, 6], [4, 4, 2, 2, 2, 2])
    assert ep["status"] == "censored"
    # A drop at the very last session is always censored.
    (ep,) = one([1, 2, 3], [4, 4, 2])
    assert ep["status"] == "censored" and ep["rupture_session"] == 3


def test_missed_sessions_bridged_up_to_max_gap() -> None:
    # Sessions 3 and 4 missed (gap of 2 <= max_gap): the drop is read across the gap and
    # the repair at session 6 is 1 session after the rupture at 5.
    (ep,) = one([1, 2, 5, 6], [4, 4, 2, 4])
    assert (ep["rupture_session"], ep["repair_session"], ep["status"]) == (5, 6, "repaired")
    # Missed sessions count in the length.
    (ep,) = one([1, 2, 3, 6], [4, 4, 2, 4])
    assert ep["length"] == 3


def test_long_gap_splits_the_series_and_censors_an_open_episode() -> None:
    # Gap of 3 missed sessions (> max_gap = 2): no drop is read from 2 to 6.
    assert one([1, 2, 6, 7], [4, 4, 2, 2]) == []
    # An episode open at a long gap is censored there, even if the score is back later.
    (ep,) = one([1, 2, 3, 8, 9], [4, 4, 2, 4, 4])
    assert ep["status"] == "censored" and ep["rupture_session"] == 3


def test_repair_outside_the_window_is_unrepaired() -> None:
    (ep,) = one([1, 2, 3, 4, 5, 6, 7], [4, 4, 2, 2, 2, 2, 4])
    assert ep["status"] == "unrepaired"


def test_repair_rules_differ() -> None:
    series = ([1, 2, 3, 4, 5, 6, 7], [4, 4, 2.5, 3.5, 3.5, 3.5, 3.5])
    (strict,) = one(*series, threshold=1.0, repair="pre_level")
    (lenient,) = one(*series, threshold=1.0, repair="below_threshold")
    assert strict["status"] == "unrepaired"  # never back at 4
    assert lenient["status"] == "repaired" and lenient["repair_session"] == 4  # 0.5 < 1


def test_v_shape_keeps_only_repaired_and_needs_three_sessions() -> None:
    assert one([1, 2, 3, 4, 5, 6, 7], [4, 4, 2, 2, 2, 2, 2], v=True) == []
    assert one([1, 2], [4, 2], v=True) == []
    (ep,) = one([1, 2, 3], [4, 2, 4], v=True)
    assert ep["status"] == "repaired"


def test_several_episodes_and_pre_level_over_previous_sessions() -> None:
    eps = one([1, 2, 3, 4, 5, 6, 7], [4, 2, 4, 4, 2, 4, 4])
    assert [e["rupture_session"] for e in eps] == [2, 5]
    two = Rules(pre_sessions=2, window=3, max_gap=2)
    (ep,) = one([1, 2, 3, 4], [4, 3.5, 2.6, 4], threshold=1.0, rules=two)
    assert ep["rupture_session"] == 3 and ep["pre_level"] == pytest.approx(3.75)
    # With the previous session alone as the pre-drop level, 3.5 -> 2.6 is no drop of 1.
    assert one([1, 2, 3, 4], [4, 3.5, 2.6, 4], threshold=1.0) == []


def test_no_threshold_no_episode_and_bad_sessions_refused() -> None:
    assert one([1, 2, 3], [4, 1, 4], threshold=float("nan")) == []
    with pytest.raises(ValueError):
        one([1, 3, 2], [4, 1, 4])


def _long(rows: dict[str, list[float]], rater: str = "client") -> pd.DataFrame:
    frames = []
    for client, scores in rows.items():
        frames.append(pd.DataFrame({"client_id": client, "therapist_id": "T1", "rater": rater,
                                    "scale": "total", "session": range(1, len(scores) + 1),
                                    "score": scores}))
    return pd.concat(frames, ignore_index=True)


def test_sd_threshold_takes_the_stricter_of_client_and_between() -> None:
    data = _long({"A": [4, 4, 4, 4, 3], "B": [2, 2.1, 2, 2.1, 2], "C": [3, 3, 3, 3, 3]})
    sds = series_sd(data, min_sessions=3)
    crit = Criterion("g", "g", "sd", "below_threshold", k=2.0, sd=("client", "between"))
    thr = thresholds(sds, crit, {}).set_index("client_id")["threshold"]
    between = float(data.groupby("client_id")["score"].mean().std())
    client_a = float(np.std([4, 4, 4, 4, 3], ddof=1))
    assert thr["A"] == pytest.approx(2 * max(between, client_a))
    assert thr["C"] == pytest.approx(2 * between)  # own SD 0: the between SD is stricter


def test_client_sd_needs_enough_sessions() -> None:
    sds = series_sd(_long({"A": [4, 2], "B": [3, 3.5]}), min_sessions=3)
    assert sds["client"].isna().all()
    crit = Criterion("g", "g", "sd", "below_threshold", sd=("client",))
    thr = thresholds(sds, crit, {})
    assert thr["threshold"].isna().all() and thr["note"].str.contains("no SD").all()


def test_rci_threshold_follows_jacobson_truax() -> None:
    data = _long({"A": [4, 4, 4], "B": [3, 3, 3], "C": [2, 2, 2]})
    sds = series_sd(data, 3)
    crit = Criterion("r", "r", "rci", "below_threshold", z=1.96)
    thr = thresholds(sds, crit, {"total": 0.8})["threshold"]
    assert thr.iloc[0] == pytest.approx(1.96 * 1.0 * np.sqrt(2) * np.sqrt(0.2))
    unknown = thresholds(sds, crit, {})
    assert unknown["threshold"].isna().all()
    assert unknown["note"].str.contains("reliability unknown").all()


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("level", [4.0, 3.7 + 1 / 3])  # the second: a mean of means
def test_no_threshold_when_the_scores_do_not_vary(level: float) -> None:
    """Constant alliance gave thresholds of 0 (a fall of any size would count), shown as
    0.00 in the thresholds table; now blank, with the reason."""
    data = _long({"A": [level] * 5, "B": [level] * 5, "C": [level] * 5})
    sds = series_sd(data, 3)
    criteria = [Criterion("g", "g", "sd", "below_threshold", k=1.0),
                Criterion("p", "p", "v_shape", "pre_level", sd=("pooled_within",)),
                Criterion("r", "r", "rci", "below_threshold", z=1.96),
                Criterion("d", "d", "dip", "below_threshold", z=1.7, sd=("within_clean",),
                          rci_z=1.96)]
    sds = sds.merge(clean_within_sd(data, 1.7, 3, 3, max_gap=2), on=["rater", "scale"])
    assert sds["within_clean"].iloc[0] == pytest.approx(0.0, abs=1e-12)  # was NaN
    for crit in criteria:
        thr = thresholds(sds, crit, {"total": 0.8})
        assert thr["threshold"].isna().all(), crit.kind
        assert (thr["note"] == NO_VARIATION).all(), crit.kind
    # each client constant, clients different: the between-client SD still sets one
    data = _long({"A": [4.0] * 5, "B": [3.0] * 5})
    sds = series_sd(data, 3)
    gumz = thresholds(sds, criteria[0], {})
    assert gumz["threshold"].tolist() == pytest.approx([np.std([4, 3], ddof=1)] * 2)
    assert (gumz["note"] == "").all()
    pooled = thresholds(sds, criteria[1], {})
    assert pooled["threshold"].isna().all() and (pooled["note"] == NO_VARIATION).all()


def test_no_reliable_drop_threshold_with_a_reliability_of_1() -> None:
    sds = series_sd(_long({"A": [4, 4, 4], "B": [3, 3, 3], "C": [2, 2, 2]}), 3)
    crit = Criterion("r", "r", "rci", "below_threshold", z=1.96)
    thr = thresholds(sds, crit, {"total": 1.0})
    assert thr["threshold"].isna().all()
    assert thr["note"].str.startswith("reliability 1 (the items always agree").all()


@pytest.mark.filterwarnings("error")
def test_scale_reliability_of_items_that_do_not_vary_is_absent_not_nan() -> None:
    """The total's alpha of constant items warned (numpy: invalid value in divide) and was
    written to meta.json as NaN."""
    from pipeline.instruments import load_instrument

    inst = load_instrument("wai_sr")
    items = pd.DataFrame({c: [3] * 20 for c in inst.item_columns})
    assert scale_reliability(items, inst) == {}
    assert scale_reliability(items, inst, which="omega_total") == {}


def test_detect_episodes_per_rater_and_series() -> None:
    data = pd.concat([_long({"A": [4, 4, 2, 4, 4, 4]}), _long({"A": [4, 4, 4, 4, 4, 4]},
                                                              rater="therapist")])
    crit = Criterion("fixed", "fixed", "rci", "pre_level")
    episodes, applied = detect_episodes(data, [crit], RULES, {"total": 0.0})
    # Baseline SD of a single client is undefined: the criterion cannot be applied.
    assert episodes.empty and applied["threshold"].isna().all()
    data2 = pd.concat([data, _long({"B": [2, 2, 2, 2, 2, 2]})])
    episodes, _ = detect_episodes(data2, [crit], RULES, {"total": 0.9})
    assert list(episodes["rater"]) == ["client"]
    assert episodes.loc[0, "rupture_session"] == 3 and episodes.loc[0, "repair_session"] == 4


def test_alliance_series_from_scored_rows() -> None:
    scored = pd.DataFrame({"client_id": ["A", "A"], "therapist_id": ["T", "T"],
                           "session": [1, 2], "goal": [4.0, np.nan], "task": [4.0, 3.0],
                           "bond": [4.0, 3.0], "alliance_total": [4.0, np.nan]})
    long = alliance_series(scored)
    assert set(long["rater"]) == {"client"}
    assert len(long[long["scale"] == "total"]) == 1  # missing scores are left out
    with pytest.raises(ValueError):
        alliance_series(scored.drop(columns="bond"))


def test_settings_errors_name_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"ruptures\.criteria\.x\.kind"):
        load_criteria({"criteria": {"x": {"kind": "magic"}}})
    with pytest.raises(SettingsError, match=r"ruptures\.criteria\.x\.sd"):
        load_criteria({"criteria": {"x": {"kind": "sd", "sd": ["nonsense"]}}})
    with pytest.raises(SettingsError, match="unknown keys"):
        load_criteria({"criteria": {"x": {"kind": "sd", "treshold": 1}}})
    with pytest.raises(SettingsError, match=r"ruptures\.criteria is empty"):
        load_criteria({"criteria": {}})
    with pytest.raises(SettingsError, match=r"ruptures\.rules"):
        load_rules({"rules": {"window": 0}})


def test_shipped_criteria_load(params: dict) -> None:
    crits = load_criteria(params["ruptures"])
    assert {c.kind for c in crits} == {"sd", "rci", "v_shape", "dip"}
    assert {c.name: c.k for c in crits if c.kind == "sd"} == {"gumz_1sd": 1.0, "gumz_2sd": 2.0}
    assert all(c.plain for c in crits)


def test_dip_contrast_uses_sessions_before_and_after_within_a_segment() -> None:
    pre, contrast, m = dip_contrasts(np.array([1, 2, 3, 4, 5, 9]),
                                     np.array([4.0, 4.2, 2.0, 3.8, 4.0, 1.0]),
                                     max_gap=2, before=3, after=3)
    assert m.tolist() == [0, 4, 4, 4, 0, 0]  # ends of a segment have no side; 9 is cut off
    assert pre[2] == pytest.approx(4.1)
    assert contrast[2] == pytest.approx(np.mean([4.0, 4.2, 3.8, 4.0]) - 2.0)


def test_dip_criterion_needs_a_contrast_and_a_reliable_drop() -> None:
    sessions, scores = [1, 2, 3, 4, 5, 6], [4.0, 4.0, 3.0, 4.0, 4.0, 4.0]
    # contrast 1.0 against threshold 0.5 * sqrt(1 + 1/5): a dip, repaired at session 4.
    found = detect_series(sessions, scores, 0.5, RULES, "below_threshold", dip=(3, 3))
    assert [(e["rupture_session"], e["repair_session"]) for e in found] == [(3, 4)]
    assert detect_series(sessions, scores, 0.5, RULES, "below_threshold", dip=(3, 3),
                         min_drop=1.5) == []  # not a reliable drop
    assert detect_series(sessions, scores, 1.0, RULES, "below_threshold", dip=(3, 3)) == []
    # A drop at the last session has nothing after it: no dip, whatever its depth.
    assert detect_series([1, 2, 3], [4.0, 4.0, 1.0], 0.1, RULES, dip=(3, 3)) == []


def test_clean_within_sd_is_not_inflated_by_the_dips() -> None:
    rng = np.random.default_rng(1)
    rows = {f"C{i}": list(3.5 + rng.normal(0, 0.3, 10)) for i in range(200)}
    for scores in rows.values():
        scores[5] -= 1.0  # a one-session drop of 3.3 SDs in every client
    data = _long(rows)
    pooled = float(series_sd(data, 3)["pooled_within"].iloc[0])
    clean = float(clean_within_sd(data, 1.7, 3, 3, max_gap=2)["within_clean"].iloc[0])
    assert pooled > 0.4  # inflated by a third
    assert clean == pytest.approx(0.3, abs=0.03)


def test_dip_settings() -> None:
    crit = load_criteria({"criteria": {"d": {"kind": "dip", "z": 1.7, "rci_z": 1.96}}})[0]
    assert crit.sd == ("within_clean",) and (crit.before, crit.after) == (3, 3)
    with pytest.raises(SettingsError, match=r"within_clean is defined for dip"):
        load_criteria({"criteria": {"x": {"kind": "sd", "sd": ["within_clean"]}}})
    with pytest.raises(SettingsError, match=r"ruptures\.criteria\.d: before and after"):
        load_criteria({"criteria": {"d": {"kind": "dip", "after": 0}}})
