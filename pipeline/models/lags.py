"""How far back the lagged model's "previous observed session" lay.

The lagged model (``data: lagged`` in models.yaml, :func:`pipeline.models.design.add_lags`)
pairs each session with the client's previous *observed* session, however far back: with
sessions 2, 10 and 25 the pairs are 10 <- 2 and 25 <- 10, gaps of 8 and 15 sessions. A
lagged coefficient then means "the alliance at some earlier session" rather than "at the
session before". This module summarises the gaps (session minus previous session) of the
rows a lagged model is fitted on, for ``results/fit_statistics.csv`` (columns
:data:`COLUMNS`), the run log and the models report, and says when they are far
(``model.lag`` in params.yaml).

Only aggregates leave it, and none that rests on fewer than ``report.min_cell`` pairs: a
share whose complement is a small count of pairs, and a quantile with fewer pairs at or
beyond it, are blank (the largest gap, one client's value, is never given).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import SettingsError
from pipeline.settings import over_defaults

#: Defaults of ``model.lag`` in params.yaml.
DEFAULT_LAG: dict[str, Any] = {
    "far_gap": 2,           # a previous session more than this many sessions back is far
    "max_far_share": 0.1,   # more pairs than this share far back: the lag is flagged
}
#: The upper quantile reported (column ``lag_gap_p90``).
UPPER_QUANTILE = 0.9
#: Columns of ``fit_statistics.csv`` (empty for a model that is not lagged or has no fit).
COLUMNS: tuple[str, ...] = (
    "lag_gap_1_share", "lag_gap_median", "lag_gap_p90", "lag_gap_longer_median",
    "lag_far_share", "lag_far",
)


def lag_settings(block: Mapping[str, Any] | None) -> dict[str, Any]:
    """``model.lag`` over :data:`DEFAULT_LAG`, checked.

    Raises
    ------
    SettingsError
        Unknown keys, a ``far_gap`` below 1 or a ``max_far_share`` outside [0, 1].
    """
    out = over_defaults(dict(block or {}), DEFAULT_LAG, "model.lag")
    far = out["far_gap"]
    if isinstance(far, bool) or not isinstance(far, int) or far < 1:
        raise SettingsError(f"params.yaml model.lag.far_gap: {far!r}; give a whole number of "
                            "sessions of at least 1, e.g. 2")
    share = out["max_far_share"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise SettingsError(f"params.yaml model.lag.max_far_share: {share!r}; give a "
                            "proportion from 0 to 1, e.g. 0.1")
    return {"far_gap": int(far), "max_far_share": float(share)}


def lag_gaps(data: pd.DataFrame) -> np.ndarray:
    """Session minus previous observed session of every row of a lagged model
    (``session`` and ``session_lag`` of :func:`pipeline.models.design.add_lags`)."""
    return (data["session"].to_numpy(dtype=float)
            - data["session_lag"].to_numpy(dtype=float))


def _quantile(gaps: np.ndarray, q: float, min_cell: int) -> float:
    """The ``q`` quantile as an observed gap (inverse of the empirical distribution: at
    least ``q`` of the pairs lie at or below it); NaN when fewer than ``min_cell`` pairs
    lie at or beyond it, or at or below it (it would be a few pairs' value)."""
    if gaps.size == 0:
        return float("nan")
    value = float(np.quantile(gaps, q, method="inverted_cdf"))
    enough = min(int((gaps >= value).sum()), int((gaps <= value).sum())) >= min_cell
    return value if enough else float("nan")


def _share(count: int, n: int, min_cell: int) -> float:
    """``count / n``; NaN when ``count`` or ``n - count`` is a small cell (1 to
    ``min_cell - 1``: the share and the number of pairs, which is published, would give
    it back)."""
    small = [0 < k < min_cell for k in (count, n - count)]
    return float("nan") if n == 0 or any(small) else count / n


def gap_summary(gaps: np.ndarray, min_cell: int,
                settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The columns :data:`COLUMNS` for one lagged model's gaps.

    Parameters
    ----------
    gaps
        :func:`lag_gaps` of the rows the model is fitted on.
    min_cell
        ``report.min_cell``: no share whose complement, or whose own count, is a smaller
        count of pairs (but at least 1), and no quantile with fewer pairs at or beyond it.
    settings
        ``model.lag`` (:func:`lag_settings`).

    Returns
    -------
    dict
        ``lag_gap_1_share`` (pairs whose previous session was the one just before; blank
        when 1 to ``min_cell - 1`` pairs were, or lay further back), ``lag_gap_median`` and
        ``lag_gap_p90`` (observed gaps: the median and 90th percentile, inverse empirical
        distribution), ``lag_gap_longer_median`` (the median gap of the pairs further back
        than one session; blank when fewer than ``min_cell`` are), ``lag_far_share``
        (pairs more than ``far_gap`` sessions back; blank as the first) and
        ``lag_far`` (that share above ``max_far_share``).
    """
    conf = lag_settings(settings)
    gaps = np.asarray(gaps, dtype=float)
    n = int(gaps.size)
    longer = gaps[gaps > 1]
    n_far = int((gaps > conf["far_gap"]).sum())
    return {
        "lag_gap_1_share": _share(n - int(longer.size), n, min_cell),
        "lag_gap_median": _quantile(gaps, 0.5, min_cell),
        "lag_gap_p90": _quantile(gaps, UPPER_QUANTILE, min_cell),
        "lag_gap_longer_median": (_quantile(longer, 0.5, min_cell)
                                  if longer.size >= min_cell else float("nan")),
        "lag_far_share": _share(n_far, n, min_cell),
        "lag_far": bool(n and n_far / n > conf["max_far_share"]),
    }


def _num(value: Any) -> float:
    """A table cell as a float; NaN when blank or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _share_words(share: float) -> str:
    """A share as a whole percentage that never rounds a part to all or none."""
    from pipeline.tables import percent

    if 0.995 <= share < 1:
        return "over 99%"
    if 0 < share < 0.005:
        return "under 1%"
    return percent(share)


def _sessions(gap: float) -> str:
    return f"{gap:g} session" + ("" if gap == 1 else "s")


def gap_words(row: Mapping[str, Any], n_pairs: int, min_cell: int) -> str:
    """How far back the previous observed session lay, in a sentence for a student.

    ``row``: a lagged model's row of ``fit_statistics.csv`` (:data:`COLUMNS`);
    ``n_pairs``: its ``n_obs``. E.g. "In 96% of the 1,200 pairs the previous observed
    session was the session just before; in the others it lay a median of 3 sessions
    back (in 90% of the pairs at most 1 session back)." Numbers only: nothing to escape.
    """
    from pipeline.tables import counted

    share, median = _num(row.get("lag_gap_1_share")), _num(row.get("lag_gap_median"))
    longer, upper = _num(row.get("lag_gap_longer_median")), _num(row.get("lag_gap_p90"))
    pairs = counted(n_pairs, "pair")
    just_before = "the previous observed session was the session just before"
    if share == 1:
        return f"In all {pairs} {just_before}: no session in between went unrated."
    if share == 0:
        text = f"In none of the {pairs} was the previous observed session the one just before"
    elif np.isfinite(share):
        text = f"In {_share_words(share)} of the {pairs} {just_before}"
    # the share is blank when the pairs with a gap of 1, or the others, are fewer than
    # min_cell; a published median (>= min_cell pairs on each side of it) says which
    elif median == 1:
        text = f"In all but a few of the {pairs} (fewer than {min_cell}) {just_before}"
    elif np.isfinite(median):
        text = f"In only a few of the {pairs} (fewer than {min_cell}) {just_before}"
    else:
        text = (f"Of the {pairs}, how many had the session just before as their previous "
                f"observed session is not shown (fewer than {min_cell} pairs had it, or "
                f"fewer than {min_cell} did not)")
    if np.isfinite(longer):
        text += f"; in the others it lay a median of {_sessions(longer)} back"
    if np.isfinite(upper) and upper > 1:
        text += (f" (in {_share_words(UPPER_QUANTILE)} of the pairs at most "
                 f"{_sessions(upper)} back)")
    return text + "."


def far_words(row: Mapping[str, Any], settings: Mapping[str, Any] | None = None) -> str:
    """When the gaps are far (``lag_far``): what the lag then means and what to do; ``""``
    otherwise. ``settings``: ``model.lag`` (:func:`lag_settings`)."""
    if str(row.get("lag_far")).strip().lower() not in ("true", "1", "1.0"):
        return ""
    conf = lag_settings(settings)
    share = _num(row.get("lag_far_share"))
    # a blank share (a small count of pairs, or of the others) is not named
    how_many = (_share_words(share) if np.isfinite(share)
                else f"more than {_share_words(conf['max_far_share'])}")
    return (
        f"The previous observed session often lay far back: in {how_many} of the pairs it "
        f"was more than {_sessions(conf['far_gap'])} earlier (model.lag.far_gap), "
        f"against the {_share_words(conf['max_far_share'])} that model.lag.max_far_share "
        "accepts. The lagged coefficients then do not describe the session before: they "
        "ask whether the alliance at the last rated session, however long ago, goes with "
        "the outcome now, and an effect that lasts a session or two is diluted by the long "
        "gaps. Read them that way. If sessions are numbered by week or by date, number "
        "them by attended session (data/README.md, the session_numbering check); if forms "
        "are missing at sessions that took place, a model of consecutive sessions only "
        "would be a deviation from the analysis plan, to be reported as such.")
