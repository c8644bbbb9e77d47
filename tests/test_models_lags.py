"""How far back the lagged model's previous observed session lay (pipeline/models/lags.py):
hand-made data with hand-counted gaps, suppression of small counts of pairs, the columns of
fit_statistics.csv, the log and the sentences of the models report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import models as M
from pipeline.errors import SettingsError
from pipeline.models.lags import (
    COLUMNS,
    far_words,
    gap_summary,
    gap_words,
    lag_gaps,
    lag_settings,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lme4"


def _client(client: str, therapist: str, sessions: list[int],
            missing_outcome: tuple[int, ...] = ()) -> pd.DataFrame:
    rng = np.random.default_rng(len(client) + sum(sessions))
    n = len(sessions)
    return pd.DataFrame({
        "client_id": client, "therapist_id": therapist, "session": sessions,
        "goal": rng.normal(4, 1, n), "task": rng.normal(4, 1, n), "bond": rng.normal(4, 1, n),
        "wellbeing": [np.nan if s in missing_outcome else v
                      for s, v in zip(sessions, rng.normal(20, 3, n), strict=True)],
    })


@pytest.fixture(scope="module")
def hand_made() -> pd.DataFrame:
    """61 pairs, counted by hand: ten clients with sessions 1-6 (50 pairs of gap 1); X
    with sessions 2, 10, 25 (gaps 8 and 15); Y every second session 1-11 (five gaps of 2);
    Z at 1, 4, 7 (3 and 3); W at 1-4 without the outcome at 3 (its observed sessions 1, 2,
    4: gaps 1 and 2); V one session (no pair). Gap 1: 51 pairs; longer: 2, 2, 2, 2, 2, 2,
    3, 3, 8, 15."""
    parts = [_client(f"C{i:02d}", f"T{i % 3}", [1, 2, 3, 4, 5, 6]) for i in range(10)]
    parts += [_client("X", "T0", [2, 10, 25]), _client("Y", "T1", [1, 3, 5, 7, 9, 11]),
              _client("Z", "T2", [1, 4, 7]), _client("W", "T0", [1, 2, 3, 4], (3,)),
              _client("V", "T1", [5])]
    return pd.concat(parts, ignore_index=True)


def test_the_gaps_are_those_of_the_lagged_model_rows(hand_made: pd.DataFrame) -> None:
    rows = M.model_data(hand_made, None, M.load_specs().get("lagged"))
    assert len(rows) == 61
    gaps = pd.Series(lag_gaps(rows), index=rows["client_id"])
    assert list(gaps["X"]) == [8.0, 15.0]           # 2 -> 10 -> 25
    assert list(gaps["W"]) == [1.0, 2.0]            # session 3 has no outcome: 4 <- 2
    assert list(gaps["Y"]) == [2.0] * 5
    assert "V" not in gaps.index                     # one session: no pair
    assert int((gaps == 1).sum()) == 51


def test_gap_summary_hand_counted(hand_made: pd.DataFrame) -> None:
    gaps = lag_gaps(M.model_data(hand_made, None, M.load_specs().get("lagged")))
    got = gap_summary(gaps, 5)
    assert got["lag_gap_1_share"] == pytest.approx(51 / 61)
    assert got["lag_gap_median"] == 1.0     # the 31st of 61 sorted gaps
    assert got["lag_gap_p90"] == 2.0        # the 55th: 51 ones, then six 2s
    assert got["lag_gap_longer_median"] == 2.0   # the 5th of the ten longer gaps
    # more than 2 sessions back: 3, 3, 8, 15, four pairs < min_cell: blank, not flagged
    assert np.isnan(got["lag_far_share"]) and got["lag_far"] is False
    assert gap_summary(gaps, 3)["lag_far_share"] == pytest.approx(4 / 61)
    # far = more than 1 session back: ten pairs, 16% > 10%: flagged
    far = gap_summary(gaps, 5, {"far_gap": 1})
    assert far["lag_far_share"] == pytest.approx(10 / 61) and far["lag_far"] is True
    assert set(got) == set(COLUMNS)


def test_the_2_10_25_client_alone() -> None:
    """Sessions 2 -> 10 -> 25: the previous session 8 and 15 sessions back."""
    got = gap_summary(np.array([8.0, 15.0]), 1)
    assert got == {"lag_gap_1_share": 0.0, "lag_gap_median": 8.0, "lag_gap_p90": 15.0,
                   "lag_gap_longer_median": 8.0, "lag_far_share": 1.0, "lag_far": True}
    # with report.min_cell = 5 every number rests on fewer than 5 pairs: all blank
    small = gap_summary(np.array([8.0, 15.0]), 5)
    assert all(np.isnan(small[c]) for c in COLUMNS if c != "lag_far")
    assert small["lag_far"] is True
    assert far_words(small).startswith(
        "The previous observed session often lay far back: in more than 10% of the pairs "
        "it was more than 2 sessions earlier (model.lag.far_gap), against the 10% that "
        "model.lag.max_far_share accepts.")


def test_small_counts_of_pairs_are_blank() -> None:
    """Three of 100 pairs further back: their share (97%) would give the 3 back from the
    published number of pairs, and their median would be one or two clients' gap."""
    got = gap_summary(np.array([1.0] * 97 + [3.0, 4.0, 9.0]), 5)
    assert np.isnan(got["lag_gap_1_share"]) and np.isnan(got["lag_gap_longer_median"])
    assert got["lag_gap_median"] == 1.0 and got["lag_gap_p90"] == 1.0
    assert np.isnan(got["lag_far_share"]) and got["lag_far"] is False
    # a quantile is an observed gap, blank with fewer than min_cell pairs at or beyond it
    upper = gap_summary(np.array([1.0] * 88 + [2.0] * 8 + [7.0, 7.0, 7.0, 30.0]), 5)
    assert upper["lag_gap_p90"] == 2.0       # the 90th of 100: 12 pairs at 2 or more
    # the 9th of 10 gaps is 6, with two pairs at 6 or more
    assert np.isnan(gap_summary(np.array([1.0] * 8 + [6.0, 30.0]), 5)["lag_gap_p90"])


def test_gap_words(hand_made: pd.DataFrame) -> None:
    gaps = lag_gaps(M.model_data(hand_made, None, M.load_specs().get("lagged")))
    assert gap_words(gap_summary(gaps, 5), 61, 5) == (
        "In 84% of the 61 pairs the previous observed session was the session just before; "
        "in the others it lay a median of 2 sessions back (in 90% of the pairs at most 2 "
        "sessions back).")
    assert gap_words(gap_summary(np.ones(40), 5), 40, 5) == (
        "In all 40 pairs the previous observed session was the session just before: no "
        "session in between went unrated.")
    few = gap_summary(np.array([1.0] * 97 + [3.0, 4.0, 9.0]), 5)
    assert gap_words(few, 100, 5) == (
        "In all but a few of the 100 pairs (fewer than 5) the previous observed session "
        "was the session just before.")
    # 3 of 100 pairs just before: the share and the longer median blank, the median 4
    rare = gap_summary(np.array([1.0] * 3 + [4.0] * 50 + [6.0] * 47), 5)
    assert np.isnan(rare["lag_gap_1_share"]) and rare["lag_gap_median"] == 4.0
    assert gap_words(rare, 100, 5).startswith(
        "In only a few of the 100 pairs (fewer than 5) the previous observed session was the "
        "session just before")
    # 4 of 7 pairs just before (a majority), 3 not: every number blank; neither "a few"
    # nor "all but a few" may be said
    both = gap_summary(np.array([1.0] * 4 + [2.0, 3.0, 5.0]), 5)
    assert np.isnan(both["lag_gap_1_share"]) and np.isnan(both["lag_gap_median"])
    assert gap_words(both, 7, 5) == (
        "Of the 7 pairs, how many had the session just before as their previous observed "
        "session is not shown (fewer than 5 pairs had it, or fewer than 5 did not).")
    rounding = gap_summary(np.array([1.0] * 996 + [2.0] * 5), 5)
    assert gap_words(rounding, 1001, 5).startswith("In over 99% of the 1,001 pairs")
    assert far_words(gap_summary(np.ones(40), 5)) == ""


def test_lag_settings() -> None:
    assert lag_settings(None) == {"far_gap": 2, "max_far_share": 0.1}
    with pytest.raises(SettingsError, match=r"model\.lag\.far_gap: 0; give a whole number"):
        lag_settings({"far_gap": 0})
    with pytest.raises(SettingsError, match=r"model\.lag\.max_far_share: 10"):
        lag_settings({"max_far_share": 10})
    with pytest.raises(SettingsError, match=r"model\.lag: unknown key\(s\) \['far'\]"):
        M.settings_from({"lag": {"far": 3}})


def test_fit_statistics_carry_the_gaps_of_the_rows_fitted(capsys: pytest.CaptureFixture[str]
                                                          ) -> None:
    """The fit stage's path: fit_model (min_level_clients = report.min_cell), then
    fit_statistics; the gaps are recomputed here from the complete rows of the scored
    data with a plain groupby, independently of add_lags."""
    data = pd.read_csv(FIXTURES / "data_missing.csv",
                       dtype={"client_id": str, "therapist_id": str})
    plan = M.load_specs()
    lagged = M.fit_model(data, None, plan.get("lagged"), {}, refit_ml=False, verbose=True,
                         min_level_clients=5)
    primary = M.fit_model(data, None, plan.get("primary"), {}, refit_ml=False)
    assert lagged.status in ("fitted", "singular")
    complete = data.dropna(subset=["goal", "task", "bond", "wellbeing"]).sort_values(
        ["client_id", "session"])
    independent = complete.groupby("client_id")["session"].diff().dropna().to_numpy()
    assert len(independent) == lagged.fit.n_obs
    stats = M.fit_statistics([lagged, primary]).set_index("model")
    expected = gap_summary(independent, 5)
    for column in COLUMNS:
        got, want = stats.loc["lagged", column], expected[column]
        assert (np.isnan(want) and pd.isna(got)) if isinstance(want, float) and np.isnan(
            want) else got == pytest.approx(want), column
        assert pd.isna(stats.loc["primary", column]), column
    assert 0 < expected["lag_gap_1_share"] < 1
    log = capsys.readouterr().err
    assert f"[models] lagged: {gap_words(expected, lagged.fit.n_obs, 5)}" in log
