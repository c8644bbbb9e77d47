"""Rupture-repair episodes in each series of session-by-session alliance ratings.

A *series* is one client's ratings of one score (``total``, ``goal``, ``task``, ``bond``)
by one rater (``client``, or ``therapist`` when the data have therapist ratings), in
session order, sessions without a score left out.

The rules, stated once (numbers in ``ruptures.rules``, see
:class:`~pipeline.ruptures.criteria.Rules`):

1. **Drop.** At observed session ``s`` (not the first of a segment) the pre-drop level is
   the mean of up to ``pre_sessions`` previous observed sessions of the segment. A
   rupture starts at ``s`` when ``pre - score(s) >= threshold`` (the criterion's drop, in
   score points). ``depth`` is ``pre - score(s)``.
2. **Missed sessions.** Observed sessions more than ``max_gap + 1`` session numbers
   apart are in different segments: no drop is read across such a gap, and an episode
   still open at the gap is *censored* there (we do not know what happened). Shorter gaps
   are bridged: the comparison skips the missed sessions.
3. **Repair.** The first later observed session within ``window`` session numbers of the
   rupture whose score meets the criterion's repair rule (back at the pre-drop level, or no
   longer a drop of the threshold's size) is the ``repair_session``; ``length`` is
   ``repair_session - rupture_session`` in session numbers (missed sessions count).
4. **Unrepaired or censored.** Without a repair in the window, the episode is
   *unrepaired* when the segment has an observed session after the window closed, and
   *censored* otherwise: **the last sessions of a series cannot show a repair yet**, so a
   drop near the end is never called unrepaired. A drop at a series' last session is
   always censored.
5. **Several episodes.** Scanning resumes after the repair session (repaired), after the
   window (unrepaired); a censored episode ends the segment.
6. **V shape.** Under a ``v_shape`` criterion only repaired episodes are kept (a V needs
   the return); with fewer than three observed sessions no V can be seen.
7. **Dip.** Under a ``dip`` criterion rule 1 reads: the pre-drop level is the mean of up
   to the criterion's ``before`` previous sessions of the segment, and a rupture starts at
   ``s`` when the dip contrast (mean of those and of up to ``after`` following sessions of
   the segment, ``m`` in all, minus ``score(s)``) is at least ``threshold *
   sqrt(1 + 1/m)`` and the drop from the pre-drop level is at least ``min_drop`` (the
   reliable drop, when the criterion asks for one). The last session of a segment has no
   session after it and cannot start a dip. Rules 2-5 apply unchanged.

References
----------
Stiles, W. B., et al. (2004). *Journal of Counseling Psychology, 51*(1), 81-92.
Gumz, A., et al. (2012). *BMC Medical Research Methodology, 12*, 10.
Singer, J. D., & Willett, J. B. (2003). *Applied longitudinal data analysis*. Oxford
University Press (censoring).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.ruptures.criteria import (
    SCALES,
    SERIES_KEYS,
    Criterion,
    Rules,
    clean_within_sd,
    dip_contrasts,
    series_sd,
    thresholds,
)
from pipeline.ruptures.windows import range_sums, segment_bounds

EPISODE_COLUMNS: tuple[str, ...] = (
    "client_id", "therapist_id", "rater", "criterion", "scale", "rupture_session",
    "repair_session", "status", "depth", "length", "pre_level", "rupture_score",
    "threshold", "first_session", "last_session",
)
"""Columns of the row-level episode table (``data/interim/episodes.csv``)."""

STATUSES = ("repaired", "unrepaired", "censored")
"""Repair status of an episode."""


def alliance_series(scored: pd.DataFrame, scales: Sequence[str] = SCALES) -> pd.DataFrame:
    """Long table of every series: one row per client x rater x scale x scored session.

    Parameters
    ----------
    scored
        Scored alliance rows (:func:`pipeline.score.score_alliance`): ``client_id``,
        ``therapist_id``, ``session``, optional ``rater``, ``goal``, ``task``, ``bond`` and
        ``alliance_total``.
    scales
        Scores to build series from (``total`` is ``alliance_total``).

    Returns
    -------
    pandas.DataFrame
        ``client_id, therapist_id, rater, scale, session, score``, missing scores left
        out; ``rater`` is ``client`` when the data have no rater column.
    """
    data = scored.copy()
    if "rater" not in data.columns:
        data["rater"] = "client"
    data = data.rename(columns={"alliance_total": "total"})
    unknown = [s for s in scales if s not in data.columns]
    if unknown:
        raise ValueError(f"alliance scores {unknown} are not in the scored data")
    long = data.melt(id_vars=["client_id", "therapist_id", "rater", "session"],
                     value_vars=list(scales), var_name="scale", value_name="score")
    long = long.dropna(subset=["score"])
    long["session"] = long["session"].astype(int)
    return long.sort_values([*SERIES_KEYS, "session"], kind="mergesort").reset_index(drop=True)


STATUS_CODES = {0: "repaired", 1: "unrepaired", 2: "censored"}
"""Codes of :data:`STATUSES` in :func:`detect_rows`."""


def _repaired(score: np.ndarray, pre: np.ndarray, threshold: np.ndarray,
              mode: str) -> np.ndarray:
    if mode == "pre_level":
        return score >= pre - 1e-9
    return pre - score < threshold - 1e-9


def detect_rows(series_id: np.ndarray, sessions: np.ndarray, scores: np.ndarray,
                threshold: np.ndarray, rules: Rules, repair: str = "pre_level",
                repaired_only: bool = False, dip: tuple[int, int] | None = None,
                min_drop: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Episodes of many series at once (the rules of this module's docstring).

    Parameters
    ----------
    series_id
        Series of each row; the rows of one series are adjacent and their sessions
        increasing (not checked here: :func:`detect_series` checks one series).
    sessions, scores
        Observed session numbers and their scores (no missing values).
    threshold
        Each row's drop threshold in score points (its series'); NaN or <= 0: the
        criterion does not apply and the series has no episode.
    rules, repair, repaired_only, dip
        As for :func:`detect_series`.
    min_drop
        Each row's reliable drop also required (``dip``); ``None``: 0.

    Returns
    -------
    dict of numpy.ndarray
        One entry per episode, in row order: ``row`` (rupture row), ``repair_row`` (-1
        unless repaired), ``status`` (codes of :data:`STATUS_CODES`), ``pre_level``,
        ``depth``.
    """
    s = np.asarray(sessions, dtype=np.int64)
    x = np.asarray(scores, dtype=float)
    thr = np.asarray(threshold, dtype=float)
    n = len(x)
    pos = np.arange(n)
    start, end = segment_bounds(series_id, s, rules.max_gap)
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(thr) & (thr > 0)
    pre = np.full(n, np.nan)
    if dip is None:
        # Rule 1: the mean of up to pre_sessions previous sessions of the segment.
        lo = np.maximum(start, pos - rules.pre_sessions)
        at = np.flatnonzero((pos > start) & usable)
        pre[at] = range_sums(x, lo[at], at) / (at - lo[at])
        hit = pre[at] - x[at] >= thr[at] - 1e-9
    else:
        # Rule 7: the dip contrast, and the reliable drop from the pre-drop level.
        dip_pre, contrast, m = dip_contrasts(s, x, rules.max_gap, dip[0], dip[1], series_id)
        at = np.flatnonzero((m > 0) & usable)
        pre[at] = dip_pre[at]
        need = np.zeros(n) if min_drop is None else np.asarray(min_drop, dtype=float)
        hit = ((contrast[at] >= thr[at] * np.sqrt(1.0 + 1.0 / m[at]) - 1e-9)
               & (pre[at] - x[at] >= need[at] - 1e-9))
    found = at[hit]
    # Rules 3-4: the first session within the window back at the repair level, else
    # unrepaired (a session after the window) or censored (the segment ends first).
    k_found = len(found)
    status = np.full(k_found, 2, dtype=np.int64)
    repair_row = np.full(k_found, -1, dtype=np.int64)
    resume = end[found].copy()  # censored: the rest of the segment is skipped
    open_ = np.ones(k_found, dtype=bool)
    for step in range(1, rules.window + 2):
        j = found + step
        open_ &= j < end[found]
        jj = np.minimum(j, max(n - 1, 0))
        beyond = open_ & (s[jj] - s[found] > rules.window)
        status[beyond] = 1
        resume[beyond] = j[beyond]
        open_ &= ~beyond
        back = open_ & _repaired(x[jj], pre[found], thr[found], repair)
        status[back] = 0
        repair_row[back] = j[back]
        resume[back] = j[back] + 1
        open_ &= ~back
    # Rule 5: scanning resumes after an episode; a later drop inside it is not a new one.
    chosen = []
    nxt = 0
    for k, (row, res) in enumerate(zip(found.tolist(), resume.tolist(), strict=True)):
        if row >= nxt:
            chosen.append(k)
            nxt = res
    pick = np.asarray(chosen, dtype=np.int64)
    if repaired_only:
        pick = pick[status[pick] == 0]
    rows = found[pick]
    return {"row": rows, "repair_row": repair_row[pick], "status": status[pick],
            "pre_level": pre[rows], "depth": pre[rows] - x[rows]}


def detect_series(sessions: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray,
                  threshold: float, rules: Rules, repair: str = "pre_level",
                  repaired_only: bool = False, dip: tuple[int, int] | None = None,
                  min_drop: float = 0.0) -> list[dict[str, Any]]:
    """Episodes of one series (the rules of this module's docstring).

    Parameters
    ----------
    sessions
        Observed session numbers, increasing.
    scores
        The scores at those sessions (no missing values).
    threshold
        Drop in score points needed for a rupture (positive).
    rules
        Missed-session, pre-level and window rules.
    repair
        ``pre_level`` or ``below_threshold``.
    repaired_only
        Keep only repaired episodes (V shape).
    dip
        ``(before, after)`` for a ``dip`` criterion (rule 7): the drop test is the dip
        contrast against ``threshold * sqrt(1 + 1/m)``; ``None`` for the other kinds.
    min_drop
        Drop from the pre-drop level also required (``dip`` with ``rci_z``).

    Returns
    -------
    list of dict
        ``rupture_session, repair_session`` (None unless repaired), ``status``,
        ``depth``, ``length`` (None unless repaired), ``pre_level``, ``rupture_score``.
    """
    s = np.asarray(sessions, dtype=int)
    x = np.asarray(scores, dtype=float)
    if len(s) != len(x) or np.any(np.diff(s) <= 0):
        raise ValueError("sessions must be increasing and match the scores")
    if not np.isfinite(threshold) or threshold <= 0:
        return []
    n = len(s)
    found = detect_rows(np.zeros(n, dtype=np.int64), s, x, np.full(n, float(threshold)),
                        rules, repair, repaired_only, dip, np.full(n, float(min_drop)))
    episodes: list[dict[str, Any]] = []
    for i, r, code, pre, depth in zip(found["row"].tolist(), found["repair_row"].tolist(),
                                      found["status"].tolist(), found["pre_level"].tolist(),
                                      found["depth"].tolist(), strict=True):
        episodes.append({
            "rupture_session": int(s[i]),
            "repair_session": None if r < 0 else int(s[r]),
            "status": STATUS_CODES[code],
            "depth": depth,
            "length": None if r < 0 else int(s[r] - s[i]),
            "pre_level": pre,
            "rupture_score": float(x[i]),
        })
    return episodes


def detect_episodes(series: pd.DataFrame, criteria: Sequence[Criterion], rules: Rules,
                    reliability: Mapping[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every episode of every series under every criterion.

    Parameters
    ----------
    series
        Output of :func:`alliance_series`.
    criteria
        The criteria (:func:`pipeline.ruptures.criteria.load_criteria`).
    rules
        Shared rules.
    reliability
        Scale -> reliability for the ``rci`` criteria.

    Returns
    -------
    episodes : pandas.DataFrame
        Row-level, :data:`EPISODE_COLUMNS` (private: ``data/interim/episodes.csv``).
    applied : pandas.DataFrame
        One row per series x criterion: ``client_id, therapist_id, rater, scale,
        criterion, n_sessions, first_session, last_session, threshold, min_drop, note``
        (also row-level; the summaries aggregate it).
    """
    keys = list(SERIES_KEYS)
    sds = series_sd(series, rules.min_sessions_client_sd)
    # One row per series, in the sorted key order of sds.
    info = series.groupby(keys, sort=True).agg(
        therapist_id=("therapist_id", "first"), first_session=("session", "min"),
        last_session=("session", "max")).reset_index()
    info = info.merge(sds[[*keys, "n_sessions"]], on=keys)
    # Every series at once: rows sorted by series, then session; series k of the flat
    # table is row k of sds and info (both sorted by the same keys).
    flat = series.sort_values([*keys, "session"], kind="mergesort")
    sid = flat.groupby(keys, sort=True).ngroup().to_numpy()
    if not (sds[keys].reset_index(drop=True).equals(info[keys])):
        raise AssertionError("series variability and series info are not aligned")
    sessions = flat["session"].to_numpy(dtype=np.int64)
    scores = flat["score"].to_numpy(dtype=float)
    extra = info.drop(columns=keys)
    parts: list[pd.DataFrame] = []
    applied = []
    for crit in criteria:
        crit_sds = sds
        if "within_clean" in crit.sd and crit.kind == "dip":
            crit_sds = sds.merge(
                clean_within_sd(series, crit.z, crit.before, crit.after, rules.max_gap),
                on=["rater", "scale"], how="left")
        # thresholds keeps the rows of crit_sds (a left merge keeps those of sds).
        thr = pd.concat([thresholds(crit_sds, crit, reliability).reset_index(drop=True),
                         extra], axis=1)
        thr["criterion"] = crit.name
        applied.append(thr)
        row_thr = thr["threshold"].to_numpy(dtype=float)[sid]
        row_min = thr["min_drop"].to_numpy(dtype=float)[sid]
        found = detect_rows(sid, sessions, scores, row_thr, rules, crit.repair,
                            crit.repaired_only,
                            (crit.before, crit.after) if crit.kind == "dip" else None,
                            row_min)
        if not len(found["row"]):
            continue
        rows, rep = found["row"], found["repair_row"]
        per = thr.iloc[sid[rows]].reset_index(drop=True)
        repaired = rep >= 0
        repair_session = np.where(repaired, sessions[np.maximum(rep, 0)], 0).astype(np.int64)
        parts.append(pd.DataFrame({
            **{k: per[k] for k in ("client_id", "therapist_id", "rater", "scale")},
            "criterion": crit.name,
            "rupture_session": sessions[rows],
            "repair_session": pd.arrays.IntegerArray(repair_session, ~repaired),
            "status": np.array([STATUS_CODES[c] for c in found["status"].tolist()],
                               dtype=object),
            "depth": found["depth"],
            "length": pd.arrays.IntegerArray(repair_session - np.where(
                repaired, sessions[rows], 0), ~repaired),
            "pre_level": found["pre_level"],
            "rupture_score": scores[rows],
            "threshold": per["threshold"].to_numpy(dtype=float),
            "first_session": per["first_session"],
            "last_session": per["last_session"],
        })[list(EPISODE_COLUMNS)])
    if parts:
        episodes = pd.concat(parts, ignore_index=True)
    else:
        episodes = pd.DataFrame([], columns=list(EPISODE_COLUMNS))
        for col in ("repair_session", "length"):
            episodes[col] = episodes[col].astype("Int64")
    order = {c.name: i for i, c in enumerate(criteria)}
    episodes = episodes.assign(_o=episodes["criterion"].map(order)).sort_values(
        ["_o", "scale", "rater", "client_id", "rupture_session"], kind="mergesort"
    ).drop(columns="_o").reset_index(drop=True)
    applied_df = pd.concat(applied, ignore_index=True)[
        ["client_id", "therapist_id", "rater", "scale", "criterion", "n_sessions",
         "first_session", "last_session", "threshold", "min_drop", "note"]]
    return episodes, applied_df
