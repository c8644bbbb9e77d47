"""Aggregate descriptions of the data that went in: counts, attendance, trajectories.

Every function returns a tidy DataFrame of aggregates only. Cells built from fewer than
``min_cell`` clients are suppressed (values blanked, ``suppressed`` set) so that reports,
which people share, never show a figure that could point to one client.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.disclosure import Cell, LinkedCell, protect, protect_linked, tag, within
from pipeline.distributions import t_ppf
from pipeline.errors import SettingsError

VARIABLES = ("goal", "task", "bond", "wellbeing")
SCALES = ("goal", "task", "bond", "alliance_total")
ASSUMED_THERAPIST = "one_therapist"  # pipeline.validate.ASSUMED_THERAPIST


def check_conf_level(conf_level: float, setting: str = "model.conf_level") -> float:
    """Return ``conf_level`` if it is a proportion strictly between 0 and 1.

    Raises
    ------
    SettingsError
        For ``95`` (a percentage), ``0``, ``1`` or anything else outside (0, 1): such a
        level would give blank or meaningless intervals without any other sign.
    """
    try:
        value = float(conf_level)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 < value < 1.0:
        raise SettingsError(
            f"params.yaml {setting}: {conf_level!r} is not a confidence level [rule "
            "conf_level_between_0_and_1]. Write it as a proportion, e.g. 0.95 for 95%."
        )
    return value


def _present(scored: pd.DataFrame) -> list[str]:
    """The variables of ``VARIABLES`` in ``scored`` with at least one value."""
    return [v for v in VARIABLES if v in scored.columns and scored[v].notna().any()]


def data_counts(alliance: pd.DataFrame, outcome: pd.DataFrame | None, scored: pd.DataFrame,
                clients: pd.DataFrame | None = None,
                min_cell: int | None = None) -> pd.DataFrame:
    """Counts of therapists, clients and sessions at each step from input to model.

    Parameters
    ----------
    alliance
        Validated alliance rows (all raters).
    outcome
        Validated outcome rows, or ``None`` without an outcome file.
    scored
        Scored client-rated client x session rows (matched to the outcome when there is
        one).
    clients
        Validated client file, if any.
    min_cell
        Counts from 1 to ``min_cell - 1`` are blanked (``None``: nothing blanked).

    Returns
    -------
    DataFrame
        Columns ``item``, ``count`` and ``note`` (why a count is blank, or what was
        assumed, e.g. one therapist when the file had no therapist_id).
    """
    rows: list[tuple[str, float, str]] = []
    assumed = bool((alliance["therapist_id"] == ASSUMED_THERAPIST).all())
    rows.append(("therapists", alliance["therapist_id"].nunique(),
                 "assumed: the alliance file has no therapist_id" if assumed else ""))
    rows.append(("clients with alliance ratings", alliance["client_id"].nunique(), ""))
    if "rater" in alliance.columns:
        for rater in ("client", "therapist"):
            rows.append((f"alliance rows rated by the {rater} (client x session)",
                         int((alliance["rater"] == rater).sum()), ""))
    else:
        rows.append(("alliance rows (client x session)", len(alliance), ""))
    variables = [v for v in VARIABLES if v in scored.columns]
    complete = scored.dropna(subset=variables)
    if outcome is None:
        rows.append(("outcome rows (client x session)", np.nan, "no outcome file"))
        rows.append(("client x sessions with complete alliance scores", len(complete), ""))
    else:
        rows.append(("outcome rows (client x session)", len(outcome), ""))
        rows.append(("client x sessions with both forms", len(scored), ""))
        rows.append(("client x sessions complete for the models", len(complete), ""))
    rows.append(("clients in the models", complete["client_id"].nunique(), ""))
    rows.append(("therapists in the models", complete["therapist_id"].nunique(), ""))
    if clients is not None:
        rows.append(("clients in the clients file", clients["client_id"].nunique(), ""))
    table = pd.DataFrame(rows, columns=["item", "count", "note"])
    table["count"] = table["count"].astype(float)
    if min_cell is not None:
        small = (table["count"] > 0) & (table["count"] < min_cell)
        table.loc[small, "count"] = np.nan
        hidden = f"fewer than {min_cell} (report.min_cell): not shown"
        table.loc[small, "note"] = [f"{n}; {hidden}" if n else hidden
                                    for n in table.loc[small, "note"]]
    table["count"] = table["count"].round().astype("Int64")
    return table


def suppress_small(frame: pd.DataFrame, count_col: str, min_cell: int,
                   value_cols: list[str] | None = None,
                   margins: Sequence[Sequence[Cell]] = ()) -> pd.DataFrame:
    """Blank the values of rows whose ``count_col`` is below ``min_cell``.

    The count itself is blanked too; a ``suppressed`` column says which rows were.
    ``margins`` (:func:`pipeline.disclosure.within` over ``frame``) are the groups of rows
    whose counts add up to a published total: further rows are blanked so that no blanked
    count can be worked out by subtraction (:func:`pipeline.disclosure.protect`).
    """
    out = frame.copy()
    small = out[count_col] < min_cell
    if margins:
        counts = out[[count_col]].astype(float).reset_index(drop=True)
        small = pd.Series(protect(counts, small.to_frame(count_col).reset_index(drop=True),
                                  margins, min_cell)[count_col].to_numpy(), index=out.index)
    cols = value_cols if value_cols is not None else [c for c in out.columns if c != count_col]
    num = [c for c in cols if pd.api.types.is_numeric_dtype(out[c])]
    out[count_col] = out[count_col].astype(float)
    out.loc[small, [count_col, *num]] = np.nan
    out["suppressed"] = small
    return out


def attendance(scored: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """How many clients had each number of complete sessions (small cells suppressed).

    The bars add up to the clients in the models, which the overview prints (data
    counts): a bar below ``min_cell`` is blanked with enough others that none is that
    total minus the shown bars (:mod:`pipeline.disclosure`).
    """
    per_client = scored.dropna(subset=_present(scored)).groupby("client_id").size()
    table = per_client.value_counts().sort_index().rename_axis("sessions").reset_index(
        name="clients"
    )
    out = suppress_small(table, "clients", min_cell, value_cols=[],
                         margins=within(table, "clients"))
    # The bars times their sessions also add up to a published total: the client x
    # sessions complete for the models (data counts, every model's n_obs). With two bars
    # blank, the two sums are two equations: 4 a + 9 b = 41, a + b = 9 gave b = 1 (25
    # clients, 129 sessions). Blank the smallest other bar until no small bar is pinned.
    counts = table["clients"].to_numpy(dtype=int)
    sessions = table["sessions"].to_numpy(dtype=int)
    hidden = out["suppressed"].to_numpy(dtype=bool).copy()
    while _pinned_by_sessions(counts, sessions, hidden, min_cell):
        free = [(counts[i], i) for i in range(len(counts)) if not hidden[i] and counts[i] > 0]
        if not free:
            break
        hidden[min(free)[1]] = True
    out["clients"] = np.where(hidden, np.nan, counts.astype(float))
    out["suppressed"] = hidden
    return out


#: Largest (hidden clients + 1) x (hidden sessions + 1) x bars searched by
#: :func:`_pinned_by_sessions`; above it the check is skipped (NOTES.md).
MAX_PINNED_SEARCH = 20_000_000


def _pinned_by_sessions(counts: np.ndarray, sessions: np.ndarray, hidden: np.ndarray,
                        min_cell: int) -> bool:
    """Whether a reader who knows the blank bars' clients (total minus the shown bars) and
    their sessions (total sessions minus the shown bars') can tell that some blank bar
    below ``min_cell`` holds 1 to ``min_cell - 1`` clients: every whole-number solution of
    the two sums gives it such a count."""
    idx = [i for i in range(len(counts)) if hidden[i]]
    small = [i for i in idx if 0 < counts[i] < min_cell]
    if not small:
        return False
    total = int(counts[idx].sum())
    weight = int((counts[idx] * sessions[idx]).sum())
    if (total + 1) * (weight + 1) * len(idx) * (total + 1) > MAX_PINNED_SEARCH:
        return False
    for i in small:
        reach = np.zeros((total + 1, weight + 1), dtype=bool)
        reach[0, 0] = True
        for j in idx:
            if j == i:
                continue
            step = np.zeros_like(reach)
            for v in range(total + 1):
                w = v * int(sessions[j])
                if w > weight:
                    break
                step[v:, w:] |= reach[:total + 1 - v, :weight + 1 - w]
            reach = step
        values = [v for v in range(total + 1) if v * int(sessions[i]) <= weight
                  and reach[total - v, weight - v * int(sessions[i])]]
        if all(0 < v < min_cell for v in values):
            return True
    return False


def trajectories(scored: pd.DataFrame, min_cell: int, conf_level: float = 0.95) -> pd.DataFrame:
    """Mean of goal, task, bond and wellbeing at each session, with t intervals.

    Returns
    -------
    DataFrame
        One row per session x variable: ``session, variable, n, mean, sd, conf_low,
        conf_high, suppressed, note``; sessions with fewer than ``min_cell`` clients
        suppressed; ``note`` says why an interval is blank when it is not suppressed
        (fewer than two values). Only the variables present (no ``wellbeing`` without an
        outcome file).

    Raises
    ------
    SettingsError
        If ``conf_level`` is not between 0 and 1 (e.g. ``95``).
    """
    conf_level = check_conf_level(conf_level)
    rows = []
    for var in _present(scored):
        grouped = scored.dropna(subset=[var]).groupby("session")[var]
        agg = grouped.agg(["count", "mean", "std"]).reset_index()
        se = agg["std"] / np.sqrt(agg["count"])
        tcrit = t_ppf(0.5 + conf_level / 2, np.maximum(agg["count"] - 1, 1))
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
    out = suppress_small(table.reset_index(drop=True), "n", min_cell,
                         value_cols=["mean", "sd", "conf_low", "conf_high"])
    blank = ~out["suppressed"] & out["conf_low"].isna()
    out["note"] = np.where(blank, "interval needs two or more values", "")
    out.loc[out["suppressed"], "note"] = f"fewer than {min_cell} clients: suppressed"
    return out


def distributions(scored: pd.DataFrame, min_cell: int, bin_width: float = 0.25,
                  wellbeing_bin_width: float = 1.0) -> pd.DataFrame:
    """Binned counts of every session's goal, task, bond and wellbeing scores.

    Parameters
    ----------
    scored
        Scored client x session rows.
    min_cell
        Bins with fewer sessions than this are suppressed, and with them, per variable,
        the smallest other bins needed so that none can be worked out from the
        variable's number of sessions (:mod:`pipeline.disclosure`).
    bin_width, wellbeing_bin_width
        Bin widths on the alliance item-mean metric and on the wellbeing metric. Bins are
        left-closed: ``[lower, upper)``, the last bin also holds the maximum.

    Returns
    -------
    DataFrame
        ``variable, lower, upper, sessions, suppressed``.
    """
    rows = []
    for var in _present(scored):
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
    if not rows:
        return pd.DataFrame(columns=["variable", "lower", "upper", "sessions", "suppressed"])
    table = pd.concat(rows, ignore_index=True)
    # A variable's bins add up to its scored sessions, which are published (data counts,
    # the psychometrics report's scoring table): secondary suppression per variable.
    return suppress_small(table, "sessions", min_cell, value_cols=[],
                          margins=within(table, "sessions", by=["variable"]))


def suppress_counts(frame: pd.DataFrame, columns: dict[str, list[str]],
                    min_cell: int, margins: Sequence[Sequence[Cell]] = ()) -> pd.DataFrame:
    """Blank each count below ``min_cell`` (and the columns derived from it), cell by cell.

    Parameters
    ----------
    frame
        A table of counts.
    columns
        Count column -> columns computed from it (e.g. a percentage), blanked with it.
    min_cell
        Smallest count shown. A zero is shown: it discloses nobody.
    margins
        Cells of ``frame`` whose counts add up to a published total
        (:func:`pipeline.disclosure.within`, :func:`pipeline.disclosure.across`): further
        counts are blanked (secondary suppression, :func:`pipeline.disclosure.protect`)
        so that no blanked count can be worked out by subtraction.

    Returns
    -------
    DataFrame
        A copy with the small counts blanked and a ``suppressed`` column naming the
        blanked count columns of each row ("" when none).
    """
    return suppress_linked({"": (frame, columns)}, tag("", margins), min_cell)[""]


def suppress_linked(tables: Mapping[str, tuple[pd.DataFrame, dict[str, list[str]]]],
                    margins: Sequence[Sequence[LinkedCell]], min_cell: int,
                    last: Collection[LinkedCell] = ()) -> dict[str, pd.DataFrame]:
    """:func:`suppress_counts` for tables published together whose margins span them.

    ``tables`` maps a name to ``(frame, columns)`` as for :func:`suppress_counts`;
    ``margins`` are ``(name, row position, count column)`` cells
    (:func:`pipeline.disclosure.protect_linked`, whose ``last`` cells are blanked only
    when nothing else in a margin can be). Returns each table blanked, with its
    ``suppressed`` column.
    """
    counts = {name: frame[list(columns)].astype(float).reset_index(drop=True)
              for name, (frame, columns) in tables.items()}
    primary = {name: (c > 0) & (c < min_cell) for name, c in counts.items()}
    hidden = protect_linked(counts, primary, margins, min_cell, last) if margins else primary
    result = {}
    for name, (frame, columns) in tables.items():
        out = frame.copy()
        flags = pd.Series([""] * len(out), index=out.index, dtype=object)
        for count, derived in columns.items():
            small = pd.Series(hidden[name][count].to_numpy(dtype=bool), index=out.index)
            out[count] = out[count].astype(float)
            out.loc[small, [count, *derived]] = np.nan
            flags[small] = pd.Series([f"{f} {count}".strip() for f in flags[small]],
                                     index=flags.index[small], dtype=object)
        out["suppressed"] = flags
        result[name] = out
    return result


def alliance_outcome_correlations(scored: pd.DataFrame,
                                  plausible: tuple[float, float],
                                  min_cell: int | None = None,
                                  higher_worse: bool = False) -> pd.DataFrame:
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
    min_cell
        A correlation over fewer clients than this is suppressed (``r`` and ``n``
        blank, ``note`` says why); ``None``: nothing suppressed.
    higher_worse
        The outcome is scored higher = worse (a symptom measure kept in its own direction):
        the expected correlation is then negative, so ``-r`` is held to ``plausible``.

    Returns
    -------
    DataFrame
        ``score, level, r, n, plausible, note``; ``level`` is ``sessions`` (all
        sessions pooled), ``between`` (client means; ``n`` clients) or ``within``
        (deviations from each client's own mean). Empty without a ``wellbeing`` column
        (no outcome file). A score or outcome without variance gives a blank ``r`` and a
        note instead of a number.
    """
    low, high = plausible
    columns = ["score", "level", "r", "n", "plausible", "note"]
    if "wellbeing" not in scored.columns or scored["wellbeing"].notna().sum() == 0:
        return pd.DataFrame(columns=columns)
    scores = [c for c in ("goal", "task", "bond", "alliance_total") if c in scored.columns]
    rows = []
    for score in scores:
        d = scored[["client_id", score, "wellbeing"]].dropna()
        means = d.groupby("client_id")[[score, "wellbeing"]].transform("mean")
        client_means = d.groupby("client_id")[[score, "wellbeing"]].mean()
        within = d[[score, "wellbeing"]] - means
        n_clients = len(client_means)
        for level, frame in (("sessions", d), ("between", client_means), ("within", within)):
            n: float = len(frame)
            if min_cell is not None and n_clients < min_cell:
                rows.append({"score": score, "level": level, "r": np.nan, "n": np.nan,
                             "plausible": True,
                             "note": f"fewer than {min_cell} clients: suppressed"})
                continue
            x, y = frame[score].to_numpy(float), frame["wellbeing"].to_numpy(float)
            if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
                rows.append({"score": score, "level": level, "r": np.nan, "n": n,
                             "plausible": True,
                             "note": "not computed: fewer than 3 values or no variance"})
                continue
            r = float(np.corrcoef(x, y)[0, 1])
            sign = -1.0 if higher_worse else 1.0
            ok = bool(low <= sign * r <= high) if level != "within" else True
            expected = (f"{0.0 - high:g} to {0.0 - low + 0.0:g} (the outcome is higher = "
                        "worse), far from the published r of about -.28" if higher_worse else
                        f"{low:g} to {high:g}, far from the published r of about .28")
            note = "" if ok else (
                f"outside {expected}: check the scoring keys (reversed items) and the "
                "direction of the outcome measure")
            rows.append({"score": score, "level": level, "r": r, "n": n,
                         "plausible": ok, "note": note})
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- two raters


def rater_summary(scored: pd.DataFrame, min_cell: int,
                  scales: Sequence[str] = SCALES) -> pd.DataFrame:
    """Mean and SD of each alliance score by rater (client, therapist), all sessions pooled.

    Parameters
    ----------
    scored
        Output of :func:`pipeline.score.score_raters` (a ``rater`` column).
    min_cell
        Rows from fewer clients than this are suppressed.
    scales
        Score columns to describe.

    Returns
    -------
    DataFrame
        ``rater, scale, n_forms, n_clients, mean, sd, suppressed``.
    """
    rows = []
    for (rater, ), group in scored.groupby(["rater"], sort=True):
        for scale in [c for c in scales if c in group.columns]:
            values = group[["client_id", scale]].dropna()
            rows.append({"rater": rater, "scale": scale, "n_forms": len(values),
                         "n_clients": values["client_id"].nunique(),
                         "mean": values[scale].mean() if len(values) else np.nan,
                         "sd": values[scale].std() if len(values) > 1 else np.nan})
    table = pd.DataFrame(rows, columns=["rater", "scale", "n_forms", "n_clients", "mean", "sd"])
    out = suppress_small(table, "n_clients", min_cell, value_cols=["n_forms", "mean", "sd"])
    return out


def rater_agreement(scored: pd.DataFrame, min_cell: int, conf_level: float = 0.95,
                    scales: Sequence[str] = SCALES) -> pd.DataFrame:
    """Agreement of client and therapist ratings of the same session.

    For every score, client and therapist ratings of the same client x session are
    paired. Reported per session and pooled over sessions: the number of pairs and
    clients, the Pearson correlation of the two ratings, both means, and the mean
    difference (client minus therapist) with its SD and a paired-t interval.

    Parameters
    ----------
    scored
        Output of :func:`pipeline.score.score_raters` (``client_id, session, rater`` and
        the scores).
    min_cell
        Rows with fewer pairs or fewer clients than this are suppressed (every number
        blanked), and with them, per scale, the smallest other session rows needed so that
        none can be worked out from the pooled row (:mod:`pipeline.disclosure`).
    conf_level
        Level of the interval of the mean difference, between 0 and 1.
    scales
        Score columns to compare.

    Returns
    -------
    DataFrame
        ``scale, session ("all" or the session number), n_pairs, n_clients, r,
        mean_client, mean_therapist, mean_difference, sd_difference, conf_low, conf_high,
        suppressed, note``. Empty when there are no therapist ratings. The pooled rows
        treat sessions of one client as independent pairs (a descriptive summary, not a
        test).

    References
    ----------
    Bland, J. M., & Altman, D. G. (1986). Statistical methods for assessing agreement
    between two methods of clinical measurement. *The Lancet, 327*(8476), 307-310.

    Tryon, G. S., Blackwell, S. C., & Hammel, E. F. (2007). A meta-analytic examination of
    client-therapist perspectives of the working alliance. *Psychotherapy Research,
    17*(6), 629-642.

    R equivalent: ``cor.test(client, therapist)`` and ``t.test(client, therapist,
    paired = TRUE)`` on the paired scores.
    """
    conf_level = check_conf_level(conf_level)
    columns = ["scale", "session", "n_pairs", "n_clients", "r", "mean_client",
               "mean_therapist", "mean_difference", "sd_difference", "conf_low", "conf_high",
               "suppressed", "note"]
    if "rater" not in scored.columns or not (scored["rater"] == "therapist").any():
        return pd.DataFrame(columns=columns)
    keys = ["client_id", "session"]
    rows = []
    for scale in [c for c in scales if c in scored.columns]:
        wide = scored.pivot_table(index=keys, columns="rater", values=scale, aggfunc="first")
        if not {"client", "therapist"} <= set(wide.columns):
            continue
        pairs = wide[["client", "therapist"]].dropna().reset_index()
        groups = [("all", pairs)] + [(f"{k:g}", g) for k, g in pairs.groupby("session")]
        for session, g in groups:
            c, t = g["client"].to_numpy(float), g["therapist"].to_numpy(float)
            n = len(g)
            d = c - t
            row: dict[str, object] = {
                "scale": scale, "session": session, "n_pairs": n,
                "n_clients": g["client_id"].nunique(),
                "r": np.nan, "mean_client": c.mean() if n else np.nan,
                "mean_therapist": t.mean() if n else np.nan,
                "mean_difference": d.mean() if n else np.nan,
                "sd_difference": d.std(ddof=1) if n > 1 else np.nan,
                "conf_low": np.nan, "conf_high": np.nan, "note": "",
            }
            if n >= 3 and np.ptp(c) > 0 and np.ptp(t) > 0:
                row["r"] = float(np.corrcoef(c, t)[0, 1])
            else:
                row["note"] = "r not computed: fewer than 3 pairs or no variance"
            if n > 1:
                half = t_ppf(0.5 + conf_level / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)
                row["conf_low"] = d.mean() - half
                row["conf_high"] = d.mean() + half
            rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in columns if c != "suppressed"])
    values = ["n_clients", "r", "mean_client", "mean_therapist", "mean_difference",
              "sd_difference", "conf_low", "conf_high"]
    # A row is shown only when both its pairs and its clients reach min_cell.
    table["smallest"] = np.minimum(table["n_pairs"], table["n_clients"])
    # The sessions' pairs add up to the pooled row's (and its means are their weighted
    # means): secondary suppression over each scale's session rows.
    per_session = table.reset_index(drop=True)
    margins = [[(int(p), "smallest") for p in g.index]
               for _, g in per_session[per_session["session"] != "all"].groupby(
                   "scale", sort=False)]
    out = suppress_small(table, "smallest", min_cell, value_cols=["n_pairs", *values],
                         margins=margins)
    out.loc[out["suppressed"], "note"] = f"fewer than {min_cell} pairs or clients: suppressed"
    return out[columns]


# ------------------------------------------------------------- publishing checks


def publishable_k_anonymity(table: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """The k-anonymity table as it may be published: rare combinations pooled.

    A combination of covariate values shared by fewer than ``min_cell`` clients is not
    shown with its values (that would say such a client exists): all of them are pooled
    into one row whose values read ``(rare)``, with the number of such combinations and
    their clients (blank when below ``min_cell``).

    The rows add up to the clients in the clients file, which the overview prints (data
    counts, checks): a blank "(rare)" count alone would be that total minus the others
    (3 = 377 - 374). So the rule of :mod:`pipeline.disclosure` blanks the client count of
    the smallest shown combination too (its values stay: they are shared by at least
    ``min_cell`` clients). Rounding the total instead was not chosen: the number of
    clients is printed in several places (data counts, the checks' rows read, the models'
    sample sizes) and a reader needs it exact.

    Parameters
    ----------
    table
        Output of :func:`pipeline.anonymity.k_anonymity_table`.
    min_cell
        Smallest number of clients shown.

    Returns
    -------
    DataFrame
        The covariate columns, ``n_clients``, ``n_combinations`` and ``suppressed``
        (``True`` where the count is not shown: the "(rare)" row below ``min_cell`` and a
        row blanked with it).
    """
    covariates = [c for c in table.columns if c != "n_clients"]
    common = table[table["n_clients"] >= min_cell].copy()
    common["n_combinations"] = 1
    rare = table[table["n_clients"] < min_cell]
    out = common
    if len(rare):
        pooled: dict[str, object] = {c: "(rare)" for c in covariates}
        pooled.update({"n_clients": int(rare["n_clients"].sum()),
                       "n_combinations": len(rare)})
        out = pd.concat([common, pd.DataFrame([pooled])], ignore_index=True)
    out = out.reset_index(drop=True)
    counts = out["n_clients"].astype(float)
    hidden = suppress_small(out, "n_clients", min_cell, value_cols=[],
                            margins=within(out, "n_clients"))["suppressed"]
    # Unlike a blank bar, these blanks say what they hold: the "(rare)" row has 1 to
    # min_cell - 1 clients, a combination shown with its values min_cell or more. So
    # rare = S - (the blanked combinations) is exact when S - k * min_cell = 1 (k blanked
    # combinations: rare 1 beside a combination of exactly min_cell): blank the next
    # smallest combination too, until the rare count has at least two possible values.
    if bool(hidden.iloc[-1]) and str(out.iloc[-1, 0]) == "(rare)":
        while (float(counts[hidden].sum()) - (int(hidden.sum()) - 1) * min_cell <= 1
               and bool((~hidden).any())):
            mask = hidden.to_numpy(dtype=bool).copy()
            free = np.flatnonzero(~mask)
            mask[free[np.argmin(counts.to_numpy()[free])]] = True   # ties: first in table
            hidden = pd.Series(mask, index=hidden.index)
    out["n_clients"] = counts.where(~hidden).round().astype("Int64")
    out["suppressed"] = hidden
    return out


_COUNT_WORDS = (r"(rows?|clients?|therapists?|sessions?|combinations?|cells?|forms?|pairs?)")


def publishable_checks(checks: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """The validation checks table as it may be published: small counts hidden.

    ``n`` from 1 to ``min_cell - 1`` is blanked, and so is every such count of rows,
    clients, therapists, sessions or combinations written in ``detail``
    (``"2 clients"`` becomes ``"fewer than 5 clients"``).

    Parameters
    ----------
    checks
        ``check, file, status, n, detail`` (:class:`pipeline.validate.ValidatedInputs`).
    min_cell
        Smallest count shown.

    Returns
    -------
    DataFrame
        Same columns; ``n`` as float with blanks.
    """
    out = checks.copy()
    small = (out["n"] > 0) & (out["n"] < min_cell)
    out["n"] = out["n"].astype(float)
    out.loc[small, "n"] = np.nan
    pattern = re.compile(rf"\b(\d+)( of \d+)? {_COUNT_WORDS}\b")

    def hide(text: object) -> object:
        if not isinstance(text, str):
            return text
        return pattern.sub(
            lambda m: (f"fewer than {min_cell} {m.group(3)}" if 0 < int(m.group(1)) < min_cell
                       else m.group(0)), text)

    out["detail"] = out["detail"].map(hide)
    return out
