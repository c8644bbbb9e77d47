"""Aggregate descriptions of the data that went in: counts, attendance, trajectories.

Every function returns a tidy DataFrame of aggregates only. Cells built from fewer than
``min_cell`` clients are suppressed (values blanked, ``suppressed`` set) so that reports,
which people share, never show a figure that could point to one client.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

VARIABLES = ("goal", "task", "bond", "wellbeing")


def data_counts(alliance: pd.DataFrame, outcome: pd.DataFrame, scored: pd.DataFrame,
                clients: pd.DataFrame | None = None) -> pd.DataFrame:
    """Counts of therapists, clients and sessions at each step from input to model.

    Parameters
    ----------
    alliance, outcome
        Validated alliance and outcome rows.
    scored
        Scored client x session rows (alliance matched to outcome).
    clients
        Validated client file, if any.

    Returns
    -------
    DataFrame
        Columns ``item`` and ``count``.
    """
    model_vars = ["goal", "task", "bond", "wellbeing"]
    complete = scored.dropna(subset=model_vars)
    rows = [
        ("therapists", alliance["therapist_id"].nunique()),
        ("clients with alliance ratings", alliance["client_id"].nunique()),
        ("alliance rows (client x session)", len(alliance)),
        ("outcome rows (client x session)", len(outcome)),
        ("client x sessions with both forms", len(scored)),
        ("client x sessions complete for the models", len(complete)),
        ("clients in the models", complete["client_id"].nunique()),
        ("therapists in the models", complete["therapist_id"].nunique()),
    ]
    if clients is not None:
        rows.append(("clients in the clients file", clients["client_id"].nunique()))
    return pd.DataFrame(rows, columns=["item", "count"])


def suppress_small(frame: pd.DataFrame, count_col: str, min_cell: int,
                   value_cols: list[str] | None = None) -> pd.DataFrame:
    """Blank the values of rows whose ``count_col`` is below ``min_cell``.

    The count itself is blanked too; a ``suppressed`` column says which rows were.
    """
    out = frame.copy()
    small = out[count_col] < min_cell
    cols = value_cols if value_cols is not None else [c for c in out.columns if c != count_col]
    num = [c for c in cols if pd.api.types.is_numeric_dtype(out[c])]
    out[count_col] = out[count_col].astype(float)
    out.loc[small, [count_col, *num]] = np.nan
    out["suppressed"] = small
    return out


def attendance(scored: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """How many clients had each number of complete sessions (small cells suppressed)."""
    per_client = scored.dropna(subset=list(VARIABLES)).groupby("client_id").size()
    table = per_client.value_counts().sort_index().rename_axis("sessions").reset_index(
        name="clients"
    )
    return suppress_small(table, "clients", min_cell, value_cols=[])


def trajectories(scored: pd.DataFrame, min_cell: int, conf_level: float = 0.95) -> pd.DataFrame:
    """Mean of goal, task, bond and wellbeing at each session, with t intervals.

    Returns
    -------
    DataFrame
        One row per session x variable: ``session, variable, n, mean, sd, conf_low,
        conf_high, suppressed``; sessions with fewer than ``min_cell`` clients suppressed.
    """
    rows = []
    for var in VARIABLES:
        grouped = scored.dropna(subset=[var]).groupby("session")[var]
        agg = grouped.agg(["count", "mean", "std"]).reset_index()
        se = agg["std"] / np.sqrt(agg["count"])
        tcrit = stats.t.ppf(0.5 + conf_level / 2, np.maximum(agg["count"] - 1, 1))
        rows.append(pd.DataFrame({
            "session": agg["session"].astype(int),
            "variable": var,
            "n": agg["count"].astype(int),
            "mean": agg["mean"],
            "sd": agg["std"],
            "conf_low": agg["mean"] - tcrit * se,
            "conf_high": agg["mean"] + tcrit * se,
        }))
    table = pd.concat(rows, ignore_index=True).sort_values(["variable", "session"])
    return suppress_small(table.reset_index(drop=True), "n", min_cell,
                          value_cols=["mean", "sd", "conf_low", "conf_high"])


def distributions(scored: pd.DataFrame, min_cell: int, bin_width: float = 0.25,
                  wellbeing_bin_width: float = 1.0) -> pd.DataFrame:
    """Binned counts of every session's goal, task, bond and wellbeing scores.

    Parameters
    ----------
    scored
        Scored client x session rows.
    min_cell
        Bins with fewer sessions than this are suppressed.
    bin_width, wellbeing_bin_width
        Bin widths on the alliance item-mean metric and on the wellbeing metric. Bins are
        left-closed: ``[lower, upper)``, the last bin also holds the maximum.

    Returns
    -------
    DataFrame
        ``variable, lower, upper, sessions, suppressed``.
    """
    rows = []
    for var in VARIABLES:
        values = scored[var].dropna().to_numpy(dtype=float)
        if values.size == 0:
            continue
        width = wellbeing_bin_width if var == "wellbeing" else bin_width
        lo = np.floor(values.min() / width) * width
        hi = np.floor(values.max() / width) * width + width
        edges = np.round(np.arange(lo, hi + width / 2, width), 10)
        counts, _ = np.histogram(values, bins=edges)
        rows.append(pd.DataFrame({"variable": var, "lower": edges[:-1], "upper": edges[1:],
                                  "sessions": counts}))
    table = pd.concat(rows, ignore_index=True)
    return suppress_small(table, "sessions", min_cell, value_cols=[])


def suppress_counts(frame: pd.DataFrame, columns: dict[str, list[str]],
                    min_cell: int) -> pd.DataFrame:
    """Blank each count below ``min_cell`` (and the columns derived from it), cell by cell.

    Parameters
    ----------
    frame
        A table of counts.
    columns
        Count column -> columns computed from it (e.g. a percentage), blanked with it.
    min_cell
        Smallest count shown. A zero is shown: it discloses nobody.

    Returns
    -------
    DataFrame
        A copy with the small counts blanked and a ``suppressed`` column naming the
        blanked count columns of each row ("" when none).
    """
    out = frame.copy()
    flags = pd.Series([""] * len(out), index=out.index, dtype=object)
    for count, derived in columns.items():
        small = (out[count] > 0) & (out[count] < min_cell)
        out[count] = out[count].astype(float)
        out.loc[small, [count, *derived]] = np.nan
        flags[small] = [f"{f} {count}".strip() for f in flags[small]]
    out["suppressed"] = flags
    return out


def alliance_outcome_correlations(scored: pd.DataFrame,
                                  plausible: tuple[float, float]) -> pd.DataFrame:
    """Correlations of each alliance score with wellbeing, with a plausibility flag.

    Meta-analyses put the client-rated alliance-outcome correlation near r = .28
    (Flückiger et al., 2018; Horvath et al., 2011). A correlation far outside
    ``plausible`` (e.g. .1 to .4), or below zero, more often means a scoring problem (an
    unreversed item, a symptom scale read as wellbeing) than a finding, so it is flagged.

    Parameters
    ----------
    scored
        Scored client x session rows with ``goal``, ``task``, ``bond`` (and
        ``alliance_total`` when present) and ``wellbeing``.
    plausible
        ``(low, high)`` range of correlations not flagged.

    Returns
    -------
    DataFrame
        ``score, level, r, n, plausible, note``; ``level`` is ``sessions`` (all
        sessions pooled), ``between`` (client means; ``n`` clients) or ``within``
        (deviations from each client's own mean).
    """
    low, high = plausible
    scores = [c for c in ("goal", "task", "bond", "alliance_total") if c in scored.columns]
    rows = []
    for score in scores:
        d = scored[["client_id", score, "wellbeing"]].dropna()
        means = d.groupby("client_id")[[score, "wellbeing"]].transform("mean")
        client_means = d.groupby("client_id")[[score, "wellbeing"]].mean()
        within = d[[score, "wellbeing"]] - means
        for level, frame in (("sessions", d), ("between", client_means), ("within", within)):
            r = float(np.corrcoef(frame[score], frame["wellbeing"])[0, 1])
            ok = bool(low <= r <= high) if level != "within" else True
            note = "" if ok else (
                f"outside {low:g} to {high:g}, far from the published r of about .28: check "
                "the scoring keys (reversed items) and the direction of the outcome measure")
            rows.append({"score": score, "level": level, "r": r, "n": len(frame),
                         "plausible": ok, "note": note})
    return pd.DataFrame(rows)
