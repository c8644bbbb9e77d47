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
    segments,
    series_sd,
    thresholds,
)

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


def _repaired(score: float, pre: float, threshold: float, mode: str) -> bool:
    if mode == "pre_level":
        return bool(score >= pre - 1e-9)
    return bool(pre - score < threshold - 1e-9)


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
    # Segment id: a new segment after a gap of more than max_gap missed sessions.
    segment = segments(s, rules.max_gap) if len(s) else np.zeros(0, dtype=int)
    if dip is not None:
        dip_pre, contrast, m = dip_contrasts(s, x, rules.max_gap, dip[0], dip[1])
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
            if _repaired(x[j], pre, threshold, repair):
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
            # The repair session can be the pre-drop level of the next drop.
            i = repair_at + 1
        elif status == "unrepaired":
            i = j
        else:
            # Censored: skip to the next segment.
            nxt = np.flatnonzero(segment > segment[i])
            i = int(nxt[0]) + 1 if nxt.size else n
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
    sds = series_sd(series, rules.min_sessions_client_sd)
    info = series.groupby(list(SERIES_KEYS), sort=True).agg(
        therapist_id=("therapist_id", "first"), first_session=("session", "min"),
        last_session=("session", "max")).reset_index()
    groups = {key: g for key, g in series.groupby(list(SERIES_KEYS), sort=True)}
    rows: list[dict[str, Any]] = []
    applied = []
    for crit in criteria:
        crit_sds = sds
        if "within_clean" in crit.sd and crit.kind == "dip":
            crit_sds = sds.merge(
                clean_within_sd(series, crit.z, crit.before, crit.after, rules.max_gap),
                on=["rater", "scale"], how="left")
        thr = thresholds(crit_sds, crit, reliability).merge(info, on=list(SERIES_KEYS))
        thr = thr.merge(sds[[*SERIES_KEYS, "n_sessions"]], on=list(SERIES_KEYS))
        thr["criterion"] = crit.name
        applied.append(thr)
        for rec in thr.to_dict("records"):
            g = groups[(rec["client_id"], rec["rater"], rec["scale"])]
            found = detect_series(g["session"].to_numpy(), g["score"].to_numpy(),
                                  float(rec["threshold"]), rules, crit.repair,
                                  crit.repaired_only,
                                  (crit.before, crit.after) if crit.kind == "dip" else None,
                                  float(rec["min_drop"]))
            for ep in found:
                rows.append({
                    **{k: rec[k] for k in ("client_id", "therapist_id", "rater", "scale",
                                           "first_session", "last_session")},
                    "criterion": crit.name, "threshold": float(rec["threshold"]), **ep,
                })
    episodes = pd.DataFrame(rows, columns=list(EPISODE_COLUMNS))
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
