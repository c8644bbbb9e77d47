"""The detector over all series at once equals the rules applied one series at a time.

``_ref_*`` below are the per-series implementations the stage used before it was
vectorised (a Python loop over sessions), kept as the reference: on random series with
missed sessions, long gaps, ties and thresholds met exactly, the vectorised code must give
the same episodes and the same floating-point numbers, bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from pipeline.ruptures.criteria import (
    Criterion,
    Rules,
    clean_within_sd,
    dip_contrasts,
)
from pipeline.ruptures.detect import detect_episodes, detect_rows, detect_series
from pipeline.ruptures.windows import gather_sums, range_sums, segment_bounds

# --- the per-series reference (the implementation before vectorisation) -----------------


def _ref_segments(sessions: np.ndarray, max_gap: int) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(np.diff(sessions) > max_gap + 1)]).astype(int)


def _ref_dip_contrasts(sessions: np.ndarray, scores: np.ndarray, max_gap: int, before: int,
                       after: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(sessions, dtype=int)
    x = np.asarray(scores, dtype=float)
    seg = _ref_segments(s, max_gap) if len(s) else np.zeros(0, dtype=int)
    n = len(x)
    pre = np.full(n, np.nan)
    contrast = np.full(n, np.nan)
    m = np.zeros(n, dtype=int)
    for i in range(n):
        same = seg == seg[i]
        lo = max(int(np.argmax(same)), i - before)
        hi = min(int(n - np.argmax(same[::-1])), i + 1 + after)
        if lo >= i or hi <= i + 1:
            continue
        nb = np.concatenate([x[lo:i], x[i + 1:hi]])
        pre[i] = x[lo:i].mean()
        contrast[i] = nb.mean() - x[i]
        m[i] = len(nb)
    return pre, contrast, m


def _ref_repaired(score: float, pre: float, threshold: float, mode: str) -> bool:
    if mode == "pre_level":
        return bool(score >= pre - 1e-9)
    return bool(pre - score < threshold - 1e-9)


def _ref_detect_series(sessions: Any, scores: Any, threshold: float, rules: Rules,
                       repair: str = "pre_level", repaired_only: bool = False,
                       dip: tuple[int, int] | None = None,
                       min_drop: float = 0.0) -> list[dict[str, Any]]:
    s = np.asarray(sessions, dtype=int)
    x = np.asarray(scores, dtype=float)
    if not np.isfinite(threshold) or threshold <= 0:
        return []
    segment = _ref_segments(s, rules.max_gap) if len(s) else np.zeros(0, dtype=int)
    if dip is not None:
        dip_pre, contrast, m = _ref_dip_contrasts(s, x, rules.max_gap, dip[0], dip[1])
    episodes: list[dict[str, Any]] = []
    i, n = 1, len(s)
    while i < n:
        if segment[i] != segment[i - 1]:
            i += 1
            continue
        if dip is None:
            lo = i - 1
            while lo > 0 and segment[lo - 1] == segment[i] and i - lo < rules.pre_sessions:
                lo -= 1
            pre = float(x[lo:i].mean())
            found = pre - x[i] >= threshold - 1e-9
        else:
            pre = float(dip_pre[i])
            found = bool(m[i] > 0
                         and contrast[i] >= threshold * np.sqrt(1.0 + 1.0 / m[i]) - 1e-9
                         and pre - x[i] >= min_drop - 1e-9)
        depth = pre - x[i]
        if not found:
            i += 1
            continue
        status, repair_at, j = "censored", None, i + 1
        while j < n and segment[j] == segment[i]:
            if s[j] - s[i] > rules.window:
                status = "unrepaired"
                break
            if _ref_repaired(x[j], pre, threshold, repair):
                status, repair_at = "repaired", j
                break
            j += 1
        episode = {
            "rupture_session": int(s[i]),
            "repair_session": None if repair_at is None else int(s[repair_at]),
            "status": status,
            "depth": float(depth),
            "length": None if repair_at is None else int(s[repair_at] - s[i]),
            "pre_level": pre,
            "rupture_score": float(x[i]),
        }
        if status == "repaired" or not repaired_only:
            episodes.append(episode)
        if repair_at is not None:
            i = repair_at + 1
        elif status == "unrepaired":
            i = j
        else:
            nxt = np.flatnonzero(segment > segment[i])
            i = int(nxt[0]) + 1 if nxt.size else n
    return episodes


def _ref_clean_within_sd(series: pd.DataFrame, z: float, before: int, after: int,
                         max_gap: int, max_iter: int = 100) -> pd.DataFrame:
    rows = []
    for (rater, scale), grp in series.groupby(["rater", "scale"], sort=True):
        parts = [(g["score"].to_numpy(dtype=float),
                  *_ref_dip_contrasts(g["session"].to_numpy(), g["score"].to_numpy(),
                                      max_gap, before, after))
                 for _, g in grp.groupby("client_id", sort=True)]
        sd = np.nan
        for _ in range(max_iter):
            ss, dof = 0.0, 0
            for x, _pre, contrast, m in parts:
                keep = np.ones(len(x), dtype=bool)
                if np.isfinite(sd):
                    with np.errstate(invalid="ignore", divide="ignore"):
                        keep &= ~(contrast >= z * sd * np.sqrt(1.0 + 1.0 / m))
                if keep.sum() >= 2:
                    xx = x[keep]
                    ss += float(((xx - xx.mean()) ** 2).sum())
                    dof += len(xx) - 1
            new = float(np.sqrt(ss / dof)) if dof > 0 else np.nan
            if not np.isfinite(new) or (np.isfinite(sd) and abs(new - sd) < 1e-9):
                sd = new
                break
            sd = new
        rows.append({"rater": rater, "scale": scale, "within_clean": sd})
    return pd.DataFrame(rows, columns=["rater", "scale", "within_clean"])


# --- random series -----------------------------------------------------------------------


def _random_series(rng: np.random.Generator, n_clients: int, step: float = 0.25,
                   ) -> pd.DataFrame:
    """Series of 1-16 sessions with missed sessions, long gaps and tied scores (a grid of
    ``step`` points, so drops equal to a threshold on the grid occur)."""
    frames = []
    for c in range(n_clients):
        n = int(rng.integers(1, 17))
        gaps = rng.choice([1, 1, 1, 1, 2, 3, 4, 6], size=n)
        sessions = np.cumsum(gaps)
        level = rng.uniform(2.5, 4.5)
        scores = np.round((level + rng.normal(0, 0.5, n)) / step) * step
        scores[rng.random(n) < 0.15] -= 1.0  # dips
        for rater in ("client", "therapist"):
            frames.append(pd.DataFrame({
                "client_id": f"C{c:03d}", "therapist_id": f"T{c % 5}", "rater": rater,
                "scale": "total", "session": sessions,
                "score": scores if rater == "client" else scores[::-1].copy()}))
    return pd.concat(frames, ignore_index=True)


RULE_SETS = [Rules(max_gap=2, pre_sessions=1, window=3),
             Rules(max_gap=0, pre_sessions=2, window=1),
             Rules(max_gap=1, pre_sessions=3, window=4),
             Rules(max_gap=3, pre_sessions=2, window=2)]


@pytest.mark.parametrize("seed", range(6))
def test_vectorised_detector_equals_the_per_series_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = _random_series(rng, 60)
    rules = RULE_SETS[seed % len(RULE_SETS)]
    keys = ["client_id", "rater", "scale"]
    sid = data.groupby(keys, sort=True).ngroup().to_numpy()
    n_series = int(sid.max()) + 1
    # Thresholds on the score grid (ties), some NaN or 0 (criterion not applicable).
    thr = rng.choice([0.25, 0.5, 0.75, 1.0, np.nan, 0.0], size=n_series)
    min_drop = rng.choice([0.0, 0.25, 0.5], size=n_series)
    for repair in ("pre_level", "below_threshold"):
        for v_shape in (False, True):
            for dip in (None, (3, 3), (1, 2), (2, 1)):
                got = detect_rows(sid, data["session"].to_numpy(), data["score"].to_numpy(),
                                  thr[sid], rules, repair, v_shape, dip, min_drop[sid])
                expected = []
                for k, (_, g) in enumerate(data.groupby(keys, sort=True)):
                    first = int(np.flatnonzero(sid == k)[0])
                    for ep in _ref_detect_series(g["session"], g["score"], float(thr[k]),
                                                 rules, repair, v_shape, dip,
                                                 float(min_drop[k])):
                        row = first + int(np.flatnonzero(g["session"].to_numpy()
                                                         == ep["rupture_session"])[0])
                        expected.append((row, ep["status"], ep["pre_level"], ep["depth"],
                                         ep["repair_session"]))
                sessions = data["session"].to_numpy()
                mine = [(r, ["repaired", "unrepaired", "censored"][c], p, d,
                         None if rr < 0 else int(sessions[rr]))
                        for r, c, p, d, rr in zip(got["row"].tolist(),
                                                  got["status"].tolist(),
                                                  got["pre_level"].tolist(),
                                                  got["depth"].tolist(),
                                                  got["repair_row"].tolist(), strict=True)]
                assert mine == expected, (repair, v_shape, dip)
    assert len(expected) > 10  # the comparison saw episodes


@pytest.mark.parametrize("seed", range(4))
def test_dip_contrasts_and_clean_sd_equal_the_reference_bit_for_bit(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    data = _random_series(rng, 80, step=0.01)
    for before, after, max_gap in ((3, 3, 2), (1, 1, 0), (2, 5, 1), (6, 6, 3)):
        keys = ["client_id", "rater", "scale"]
        sid = data.groupby(keys, sort=True).ngroup().to_numpy()
        pre, contrast, m = dip_contrasts(data["session"].to_numpy(), data["score"].to_numpy(),
                                         max_gap, before, after, sid)
        parts = [_ref_dip_contrasts(g["session"].to_numpy(), g["score"].to_numpy(), max_gap,
                                    before, after) for _, g in data.groupby(keys, sort=True)]
        np.testing.assert_array_equal(pre, np.concatenate([p[0] for p in parts]))
        np.testing.assert_array_equal(contrast, np.concatenate([p[1] for p in parts]))
        np.testing.assert_array_equal(m, np.concatenate([p[2] for p in parts]))
        got = clean_within_sd(data, 1.7, before, after, max_gap)
        ref = _ref_clean_within_sd(data, 1.7, before, after, max_gap)
        assert got["within_clean"].tolist() == ref["within_clean"].tolist()
        assert got[["rater", "scale"]].equals(ref[["rater", "scale"]])


def test_detect_episodes_equals_the_per_series_loop() -> None:
    rng = np.random.default_rng(7)
    data = _random_series(rng, 50, step=0.01)
    rules = Rules(max_gap=2, pre_sessions=2, window=3, min_sessions_client_sd=3)
    crits = [Criterion("g1", "g1", "sd", "below_threshold", k=1.0),
             Criterion("v", "v", "v_shape", "pre_level", k=1.0),
             Criterion("r", "r", "rci", "below_threshold", z=1.96),
             Criterion("d", "d", "dip", "below_threshold", z=1.7, sd=("within_clean",),
                       rci_z=1.96)]
    episodes, applied = detect_episodes(data, crits, rules, {"total": 0.85})
    rows = []
    for crit in crits:
        recs = applied[applied["criterion"] == crit.name].to_dict("records")
        thr: dict[Any, dict[Any, Any]] = {(r["client_id"], r["rater"], r["scale"]): r
                                          for r in recs}
        for key, g in data.groupby(["client_id", "rater", "scale"], sort=True):
            rec = thr[key]
            for ep in _ref_detect_series(
                    g["session"], g["score"], float(rec["threshold"]), rules, crit.repair,
                    crit.repaired_only,
                    (crit.before, crit.after) if crit.kind == "dip" else None,
                    float(rec["min_drop"])):
                rows.append((crit.name, *key, ep["rupture_session"], ep["repair_session"],
                             ep["status"], ep["depth"], ep["length"], ep["pre_level"],
                             ep["rupture_score"], float(rec["threshold"])))
    order = {c.name: i for i, c in enumerate(crits)}
    rows.sort(key=lambda r: (order[r[0]], r[3], r[2], r[1], r[4]))
    mine = [(r["criterion"], r["client_id"], r["rater"], r["scale"], r["rupture_session"],
             None if pd.isna(r["repair_session"]) else int(r["repair_session"]),
             r["status"], r["depth"], None if pd.isna(r["length"]) else int(r["length"]),
             r["pre_level"], r["rupture_score"], r["threshold"])
            for r in episodes.to_dict("records")]
    assert mine == rows
    assert {c.name for c in crits} == set(episodes["criterion"])
    assert str(episodes["repair_session"].dtype) == "Int64"
    assert str(episodes["length"].dtype) == "Int64"
    assert episodes["rupture_session"].dtype == np.int64


# --- edge cases, hand-computed ---------------------------------------------------------

RULES = Rules(max_gap=2, pre_sessions=1, window=3, min_sessions_client_sd=3)


def test_series_of_one_or_two_sessions() -> None:
    assert detect_series([1], [4.0], 1.0, RULES) == []
    assert detect_series([], [], 1.0, RULES) == []
    (ep,) = detect_series([1, 2], [4.0, 3.0], 1.0, RULES)  # exactly the threshold: a drop
    assert (ep["rupture_session"], ep["status"], ep["depth"]) == (2, "censored", 1.0)
    assert detect_series([1, 2], [4.0, 3.25], 1.0, RULES) == []
    # Two sessions further apart than max_gap + 1: two segments, nothing to compare.
    assert detect_series([1, 5], [4.0, 1.0], 1.0, RULES) == []
    # No dip without sessions on both sides.
    assert detect_series([1, 2], [4.0, 1.0], 0.1, RULES, dip=(3, 3)) == []


def test_ties_with_the_pre_level_count_as_repair() -> None:
    # Back exactly at the pre-drop level (4.0) two sessions later: repaired, length 2.
    (ep,) = detect_series([1, 2, 3, 4], [4.0, 3.0, 3.5, 4.0], 1.0, RULES, "pre_level")
    assert (ep["repair_session"], ep["length"], ep["status"]) == (4, 2, "repaired")
    # Still exactly one threshold below: not repaired under below_threshold.
    (ep,) = detect_series([1, 2, 3, 4, 5, 6], [4.0, 3.0, 3.0, 3.0, 3.0, 3.0], 1.0, RULES,
                          "below_threshold")
    assert ep["status"] == "unrepaired"


def test_missed_sessions_in_the_window_and_the_scan_after_an_episode() -> None:
    # Sessions 1 2 4 7 8: 4 -> 7 misses two sessions (bridged). Drop at 2 (4 -> 2.5),
    # session 4 still down, 7 is beyond the window (7 - 2 > 3): unrepaired, and the scan
    # resumes at 7, which is no drop from 2.5; 8 drops from 7's 4.0 by 2.0, censored.
    sessions, scores = [1, 2, 4, 7, 8], [4.0, 2.5, 2.5, 4.0, 2.0]
    eps = detect_series(sessions, scores, 1.0, RULES)
    assert [(e["rupture_session"], e["status"], e["pre_level"]) for e in eps] == [
        (2, "unrepaired", 4.0), (8, "censored", 4.0)]
    # pre_sessions 2: the level before session 8 is the mean of 2.5 and 4.0 (a drop of
    # 1.25); session 2 has one previous session only.
    two = Rules(max_gap=2, pre_sessions=2, window=3)
    eps = detect_series(sessions, scores, 1.0, two)
    assert [(e["rupture_session"], e["pre_level"], e["depth"]) for e in eps] == [
        (2, 4.0, 1.5), (8, 3.25, 1.25)]


def test_segment_bounds_split_series_and_long_gaps() -> None:
    start, end = segment_bounds(np.array([0, 0, 0, 1, 1, 2]), np.array([1, 2, 6, 1, 3, 5]),
                                max_gap=2)
    # Series 0: sessions 1 2 | 6 (gap of 3 missed); series 1: 1 3; series 2: 5.
    assert start.tolist() == [0, 0, 2, 3, 3, 5]
    assert end.tolist() == [2, 2, 3, 5, 5, 6]
    s0, e0 = segment_bounds(np.zeros(0, dtype=int), np.zeros(0, dtype=int), 2)
    assert len(s0) == 0 and len(e0) == 0


def test_window_sums_by_hand() -> None:
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    assert range_sums(x, np.array([0, 1, 3, 2]), np.array([2, 4, 3, 5])).tolist() == [
        3.0, 14.0, 0.0, 28.0]
    index = np.array([[0, 1, 4], [2, 3, 0]])
    valid = np.array([[True, False, True], [False, False, False]])
    assert gather_sums(x, index, valid).tolist() == [17.0, 0.0]


def test_window_sums_follow_numpys_order_of_addition() -> None:
    # Pairwise summation from 8 elements on: 1e16 + 1 + ... is not the running sum.
    x = np.array([1e16] + [1.0] * 15 + [-1e16])
    got = range_sums(x, np.array([0]), np.array([17]))[0]
    assert got == x.sum()
    running = 0.0
    for v in x:
        running += v
    assert running != x.sum()  # the two orders differ here, so the check above bites
