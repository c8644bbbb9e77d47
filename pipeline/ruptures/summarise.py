"""Aggregates of the episodes, with small cells suppressed, for ``results/ruptures/``.

Every function takes the row-level episode and series tables and returns a tidy table of
counts, shares, medians or means. A count below ``min_cell`` (``report.min_cell``) is
blanked together with what was computed from it (:func:`pipeline.describe.suppress_counts`);
a zero is shown. Nothing here names a client or a therapist.

References
----------
Cohen, J. (1960). A coefficient of agreement for nominal scales. *Educational and
Psychological Measurement, 20*(1), 37-46. (R: ``irr::kappa2``.)
Jaccard, P. (1912). The distribution of the flora in the alpine zone. *New Phytologist,
11*(2), 37-50.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations, pairwise
from typing import Any, cast

import numpy as np
import pandas as pd

from pipeline.describe import suppress_counts, suppress_linked
from pipeline.disclosure import LinkedCell, across, tag, within
from pipeline.distributions import t_ppf
from pipeline.ruptures.criteria import Criterion, Rules
from pipeline.ruptures.detect import STATUSES

GROUP = ["criterion", "rater", "scale"]
#: repaired + unrepaired + censored = episodes (shown beside them).
STATUS_COUNTS = [f"n_{s}" for s in STATUSES]
#: The prevalence table's counts and what is computed from each, blanked with it. The
#: share repaired is repaired / (repaired + unrepaired), so it goes with either count
#: (31 of 32 gave the blank unrepaired 1).
PREVALENCE_COUNTS: dict[str, list[str]] = {
    "n_clients_with_episode": ["pct_clients"], "n_episodes": [],
    "n_repaired": ["pct_repaired"], "n_unrepaired": ["pct_repaired"], "n_censored": [],
    "n_not_applicable": [],
}
#: The four counts of an agreement row (they add up to its n_clients); kappa is a
#: function of them (with their total and the other two it gives a blanked one back).
AGREEMENT_COUNTS = ["n_both", "n_only_a", "n_only_b", "n_neither"]
#: Rupture sessions found by both rules, by a only, by b only: behind the Jaccard index
#: (agreement_counts), never published (blank_jaccard).
JACCARD_SESSIONS = ("sessions_both", "sessions_only_a", "sessions_only_b")
#: A course cell's count and what is computed from it.
COURSE_VALUES = ["n", "mean", "sd", "conf_low", "conf_high"]


def _order(frame: pd.DataFrame, criteria: Sequence[Criterion]) -> pd.DataFrame:
    """Rows in criterion order (as in params.yaml), then rater, then total/goal/task/bond."""
    order = {c.name: i for i, c in enumerate(criteria)}
    scale_order = {"total": 0, "goal": 1, "task": 2, "bond": 3}
    keyed = frame.assign(_c=frame["criterion"].map(order), _s=frame["scale"].map(scale_order))
    return keyed.sort_values(["_c", "rater", "_s"], kind="mergesort").drop(
        columns=["_c", "_s"]).reset_index(drop=True)


def prevalence_counts(episodes: pd.DataFrame, applied: pd.DataFrame,
                      criteria: Sequence[Criterion], min_cell: int) -> pd.DataFrame:
    """How many clients have at least one episode, and how many episodes were repaired
    (counts not yet blanked; shares and medians over fewer than ``min_cell`` are).

    Returns
    -------
    pandas.DataFrame
        Per criterion x rater x scale: ``label, n_series`` (clients whose series the
        criterion could be applied to), ``n_not_applicable``, ``median_threshold``
        (points), ``n_clients_with_episode, pct_clients, n_episodes, n_repaired,
        n_unrepaired, n_censored, pct_repaired`` (repaired among episodes whose outcome is
        known, i.e. not censored), ``median_depth, median_length, q1_length, q3_length``
        (sessions, repaired episodes).
    """
    labels = {c.name: c.label for c in criteria}
    ok = applied[applied["threshold"].notna()]
    base = applied.groupby(GROUP).agg(n_all=("client_id", "size")).join(
        ok.groupby(GROUP).agg(n_series=("client_id", "size"),
                              median_threshold=("threshold", "median")), how="left")
    base["n_series"] = base["n_series"].fillna(0).astype(int)
    base["n_not_applicable"] = base["n_all"] - base["n_series"]
    ep = episodes.groupby(GROUP)
    counts = pd.DataFrame({
        "n_clients_with_episode": ep["client_id"].nunique(),
        "n_episodes": ep.size(),
        "median_depth": ep["depth"].median(),
    })
    for status in STATUSES:
        counts[f"n_{status}"] = episodes[episodes["status"] == status].groupby(GROUP).size()
    rep = episodes[episodes["status"] == "repaired"].groupby(GROUP)["length"]
    counts["median_length"] = rep.median()
    counts["q1_length"] = rep.quantile(0.25)
    counts["q3_length"] = rep.quantile(0.75)
    table = base.join(counts, how="left").reset_index()
    for col in ("n_clients_with_episode", "n_episodes", *[f"n_{s}" for s in STATUSES]):
        table[col] = table[col].fillna(0).astype(int)
    table["pct_clients"] = 100 * table["n_clients_with_episode"] / table["n_series"].where(
        table["n_series"] > 0)
    known = table["n_repaired"] + table["n_unrepaired"]
    table["pct_repaired"] = 100 * table["n_repaired"] / known.where(known > 0)
    # Shares from fewer than min_cell episodes are not shown (they would single out few).
    table.loc[(known > 0) & (known < min_cell), "pct_repaired"] = np.nan
    table.loc[table["n_repaired"] < min_cell, ["median_length", "q1_length", "q3_length"]] = (
        np.nan)
    table.loc[table["n_episodes"] < min_cell, "median_depth"] = np.nan
    table.insert(1, "label", table["criterion"].map(labels))
    return _order(table.drop(columns="n_all"), criteria)


def prevalence(episodes: pd.DataFrame, applied: pd.DataFrame,
               criteria: Sequence[Criterion], min_cell: int) -> pd.DataFrame:
    """How many clients have at least one episode, and how many episodes were repaired.

    Returns
    -------
    pandas.DataFrame
        :func:`prevalence_counts` with the small counts blanked (secondary suppression
        within each row, on its own; :func:`published` protects it with the tables that
        break its counts down).
    """
    table = prevalence_counts(episodes, applied, criteria, min_cell)
    return suppress_counts(table, PREVALENCE_COUNTS, min_cell,
                           margins=across(table, STATUS_COUNTS))


def lengths_counts(episodes: pd.DataFrame, criteria: Sequence[Criterion],
                   rules: Rules) -> pd.DataFrame:
    """Counts of repaired episodes by length (sessions from the drop to the repair)."""
    rows = []
    for key, g in episodes.groupby(GROUP):
        r = g[g["status"] == "repaired"]
        for length in range(1, rules.window + 1):
            rows.append({**dict(zip(GROUP, key, strict=True)), "length": length,
                         "n_episodes": int((r["length"] == length).sum())})
    return _order(pd.DataFrame(rows, columns=[*GROUP, "length", "n_episodes"]), criteria)


def lengths(episodes: pd.DataFrame, criteria: Sequence[Criterion], rules: Rules,
            min_cell: int) -> pd.DataFrame:
    """Counts of repaired episodes by length, small ones blanked: the lengths add up to
    the repaired episodes (prevalence), a margin of each criterion x rater x scale."""
    table = lengths_counts(episodes, criteria, rules)
    return suppress_counts(table, {"n_episodes": []}, min_cell,
                           margins=within(table, "n_episodes", by=GROUP))


def timing_counts(episodes: pd.DataFrame, criteria: Sequence[Criterion],
                  bins: Sequence[int]) -> pd.DataFrame:
    """Where in therapy ruptures start: by session number and by third of the series.

    Parameters
    ----------
    bins
        Lower edges of the session-number bins (e.g. ``[2, 5, 9]`` gives 2-4, 5-8, 9+).

    Returns
    -------
    pandas.DataFrame
        ``criterion, rater, scale, kind`` (``session`` or ``third``), ``period``,
        ``n_episodes``. The third is the rupture's position between the
        series' first and last observed session (early, middle, late).
    """
    edges = sorted(int(b) for b in bins)
    labels = [f"{a}-{b - 1}" if b - 1 > a else f"{a}" for a, b in pairwise(edges)]
    labels.append(f"{edges[-1]}+")
    rows = []
    for key, g in episodes.groupby(GROUP):
        base = dict(zip(GROUP, key, strict=True))
        idx = np.searchsorted(edges, g["rupture_session"].to_numpy(), side="right") - 1
        for i, lab in enumerate(labels):
            rows.append({**base, "kind": "session", "period": lab,
                         "n_episodes": int((idx == i).sum())})
        span = (g["last_session"] - g["first_session"]).replace(0, np.nan)
        pos = (g["rupture_session"] - g["first_session"]) / span
        third = np.minimum((pos * 3).fillna(2).astype(int), 2)
        for i, lab in enumerate(("early", "middle", "late")):
            rows.append({**base, "kind": "third", "period": lab,
                         "n_episodes": int((third == i).sum())})
    return _order(pd.DataFrame(rows, columns=[*GROUP, "kind", "period", "n_episodes"]),
                  criteria)


def timing(episodes: pd.DataFrame, criteria: Sequence[Criterion], bins: Sequence[int],
           min_cell: int) -> pd.DataFrame:
    """:func:`timing_counts` with small counts blanked: each kind's periods add up to the
    episodes (prevalence), a margin (``suppressed`` names the blanked count)."""
    table = timing_counts(episodes, criteria, bins)
    return suppress_counts(table, {"n_episodes": []}, min_cell,
                           margins=within(table, "n_episodes", by=[*GROUP, "kind"]))


def cohen_kappa(a: np.ndarray, b: np.ndarray) -> float:
    """Cohen's kappa of two binary ratings of the same units (NaN when undefined)."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.size == 0:
        return float("nan")
    po = float(np.mean(a == b))
    pa, pb = a.mean(), b.mean()
    pe = float(pa * pb + (1 - pa) * (1 - pb))
    return float("nan") if pe >= 1 else (po - pe) / (1 - pe)


def agreement_counts(episodes: pd.DataFrame, applied: pd.DataFrame,
                     criteria: Sequence[Criterion]) -> pd.DataFrame:
    """Agreement between every pair of criteria on the same rater x scale.

    Returns
    -------
    pandas.DataFrame
        ``rater, scale, criterion_a, criterion_b, n_clients`` (series both could be
        applied to), ``n_both, n_only_a, n_only_b, n_neither`` (clients with at least one
        episode), ``kappa`` (Cohen's kappa of "has an episode") and ``jaccard`` (rupture
        sessions found by both / found by either); and the rupture-session counts behind
        the Jaccard index (:data:`JACCARD_SESSIONS`; for :func:`blank_jaccard`, never
        published).
    """
    rows = []
    names = [c.name for c in criteria]
    ok = applied[applied["threshold"].notna()]
    for (rater, scale), g in ok.groupby(["rater", "scale"]):
        sub = episodes[(episodes["rater"] == rater) & (episodes["scale"] == scale)]
        # Per criterion: clients it applies to, clients with an episode, and the
        # (client, rupture session) pairs it found.
        applies = {n: set(c) for n, c in g.groupby("criterion")["client_id"]}
        found = {n: set(c) for n, c in sub.groupby("criterion")["client_id"]}
        sessions = {n: set(zip(e["client_id"], e["rupture_session"], strict=True))
                    for n, e in sub.groupby("criterion")}
        for a, b in combinations(names, 2):
            clients = sorted(applies.get(a, set()) & applies.get(b, set()))
            if not clients:
                continue
            with_a, with_b = found.get(a, set()), found.get(b, set())
            has_a = np.array([c in with_a for c in clients], dtype=bool)
            has_b = np.array([c in with_b for c in clients], dtype=bool)
            sa, sb = sessions.get(a, set()), sessions.get(b, set())
            union = sa | sb
            rows.append({
                "rater": rater, "scale": scale, "criterion_a": a, "criterion_b": b,
                "n_clients": len(clients), "n_both": int((has_a & has_b).sum()),
                "n_only_a": int((has_a & ~has_b).sum()), "n_only_b": int((~has_a & has_b).sum()),
                "n_neither": int((~has_a & ~has_b).sum()),
                "kappa": cohen_kappa(has_a, has_b),
                "jaccard": len(sa & sb) / len(union) if union else np.nan,
                "sessions_both": len(sa & sb), "sessions_only_a": len(sa - sb),
                "sessions_only_b": len(sb - sa),
            })
    return pd.DataFrame(rows, columns=["rater", "scale", "criterion_a", "criterion_b",
                                       "n_clients", "n_both", "n_only_a", "n_only_b",
                                       "n_neither", "kappa", "jaccard", *JACCARD_SESSIONS])


def blank_jaccard(table: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """The agreement table without its session counts, the Jaccard index blanked where
    it would give back a count of fewer than ``min_cell`` rupture sessions.

    Each rule's rupture sessions are its episodes, published in the prevalence table
    (``n_episodes``, one rupture session each): with ``|A|``, ``|B|`` and
    ``J = |A & B| / |A | B|`` the reader gets ``|A & B| = J (|A| + |B|) / (1 + J)`` and
    with it ``|A - B|`` and ``|B - A|``. Where any of the three is 1 to ``min_cell`` - 1,
    the index is blank (named in ``suppressed``).
    """
    counts = table[list(JACCARD_SESSIONS)].to_numpy(dtype=float)
    small = pd.Series(((counts > 0) & (counts < min_cell)).any(axis=1), index=table.index)
    small &= table["jaccard"].notna()
    out = table.drop(columns=list(JACCARD_SESSIONS))
    if small.any():
        out["jaccard"] = out["jaccard"].where(~small)
        if "suppressed" in out.columns:
            out.loc[small, "suppressed"] = (out.loc[small, "suppressed"].fillna("").astype(str)
                                            + " jaccard").str.strip()
    return out


def agreement(episodes: pd.DataFrame, applied: pd.DataFrame, criteria: Sequence[Criterion],
              min_cell: int) -> pd.DataFrame:
    """:func:`agreement_counts` with small counts blanked: the four counts add up to
    n_clients, shown beside them (secondary suppression within each row); kappa goes with
    any of them."""
    table = agreement_counts(episodes, applied, criteria)
    return blank_jaccard(suppress_counts(table, {c: ["kappa"] for c in AGREEMENT_COUNTS},
                                         min_cell, margins=across(table, AGREEMENT_COUNTS)),
                         min_cell)


def course(episodes: pd.DataFrame, series: pd.DataFrame, wellbeing: pd.DataFrame,
           criteria: Sequence[Criterion], min_cell: int, conf_level: float, before: int,
           after: int, scale: str = "total", rater: str = "client") -> pd.DataFrame:
    """:func:`course_counts` with the cells of fewer than ``min_cell`` episodes blanked
    (``suppressed``)."""
    table = course_counts(episodes, series, wellbeing, criteria, conf_level, before, after,
                          scale, rater)
    return _blank_course(table, table["n"] < min_cell)


def course_counts(episodes: pd.DataFrame, series: pd.DataFrame, wellbeing: pd.DataFrame,
                  criteria: Sequence[Criterion], conf_level: float, before: int,
                  after: int, scale: str = "total", rater: str = "client") -> pd.DataFrame:
    """Average alliance and wellbeing around an episode, aligned on the rupture session.

    Scores are deviations from the client's own mean over all their sessions, so the
    course shows the change around the episode rather than differences between clients.

    Parameters
    ----------
    episodes
        Row-level episodes.
    series
        Long alliance series (:func:`pipeline.ruptures.detect.alliance_series`).
    wellbeing
        ``client_id, session, wellbeing``.
    before, after
        Session offsets shown (``-before`` ... ``after``; 0 = the rupture session).

    Returns
    -------
    pandas.DataFrame
        ``criterion, status, variable`` (``alliance`` or ``wellbeing``), ``offset, n``
        (episodes with a score at that offset), ``mean, sd, conf_low, conf_high``
        (t interval; episodes treated as independent). At offset 0 the alliance ``n``
        of a status is that status's count in the prevalence table (scale and rater as
        here): every episode has its rupture session's score.
    """
    alli = series[(series["scale"] == scale) & (series["rater"] == rater)]
    alli = alli.assign(dev=alli["score"] - alli.groupby("client_id")["score"].transform("mean"))
    wb = wellbeing.dropna(subset=["wellbeing"])
    wb = wb.assign(dev=wb["wellbeing"] - wb.groupby("client_id")["wellbeing"].transform("mean"))
    sources = {"alliance": alli[["client_id", "session", "dev"]],
               "wellbeing": wb[["client_id", "session", "dev"]]}
    ep = episodes[(episodes["scale"] == scale) & (episodes["rater"] == rater)]
    ep = ep[["criterion", "status", "client_id", "rupture_session"]]
    # The scores of every episode at each offset, per variable: one merge for all
    # criteria and statuses (an inner merge keeps the episodes' order, and a group keeps
    # its rows' order, so each cell's values come in the order of a merge of its own).
    cells: dict[tuple[str, str, str, int], np.ndarray] = {}
    for variable, src in sources.items():
        merged = ep.merge(src, on="client_id")
        merged["offset"] = merged["session"] - merged["rupture_session"]
        merged = merged[merged["offset"].between(-before, after)]
        for key, cell in merged.groupby(["criterion", "status", "offset"], sort=False)["dev"]:
            name, status, offset = cast(tuple[Any, Any, Any], key)
            cells[(str(name), str(status), variable, int(offset))] = cell.to_numpy(
                dtype=float)
    empty = np.zeros(0)
    rows = []
    for crit in criteria:
        for status in STATUSES:
            for variable in sources:
                for offset in range(-before, after + 1):
                    vals = cells.get((crit.name, status, variable, offset), empty)
                    n = len(vals)
                    rows.append({"criterion": crit.name, "status": status,
                                 "variable": variable, "offset": offset, "n": n,
                                 "mean": float(vals.mean()) if n else np.nan,
                                 "sd": float(vals.std(ddof=1)) if n > 1 else np.nan})
    table = pd.DataFrame(rows, columns=["criterion", "status", "variable", "offset", "n",
                                        "mean", "sd"])
    # t interval, computed for every cell at once (the same values as cell by cell).
    n_all = table["n"].to_numpy()
    half = np.full(len(table), np.nan)
    some = n_all > 1
    half[some] = (t_ppf(0.5 + conf_level / 2, n_all[some] - 1)
                  * table["sd"].to_numpy()[some] / np.sqrt(n_all[some]))
    table["conf_low"] = table["mean"] - half
    table["conf_high"] = table["mean"] + half
    return table


def _blank_course(table: pd.DataFrame, hidden: pd.Series) -> pd.DataFrame:
    """The course with the cells ``hidden`` blanked (n and what is computed from it)."""
    out = table.copy()
    out.loc[hidden.to_numpy(), COURSE_VALUES] = np.nan
    out["suppressed"] = hidden.to_numpy(dtype=bool)
    return out


def detectability(applied: pd.DataFrame, criteria: Sequence[Criterion], rules: Rules,
                  min_cell: int) -> pd.DataFrame:
    """What the data allow: series by number of observed sessions, and what each can show.

    Returns
    -------
    pandas.DataFrame
        Per rater (scale ``total``): ``sessions`` (``1``, ``2``, ``3+``), ``n_clients``,
        ``can_show`` (plain words) and ``suppressed``.
    """
    per = applied[(applied["scale"] == "total")].drop_duplicates(["client_id", "rater"])
    rows = []
    texts = {
        "1": "nothing: a drop needs a session before it",
        "2": "a drop at session 2 at most, never its repair (always censored); no V shape "
             "and no sudden dip (both need a session after the drop); no own SD (the "
             "sample SDs are used)",
        "3+": "drops, repairs, V shapes and sudden dips (within the repair window)",
    }
    for rater, g in per.groupby("rater"):
        n = g["n_sessions"]
        for label, mask in (("1", n == 1), ("2", n == 2), ("3+", n >= 3)):
            rows.append({"rater": rater, "sessions": label, "n_clients": int(mask.sum()),
                         "can_show": texts[label]})
    table = pd.DataFrame(rows, columns=["rater", "sessions", "n_clients", "can_show"])
    # The three rows of a rater add up to its clients with a series: secondary suppression.
    return suppress_counts(table, {"n_clients": []}, min_cell,
                           margins=within(table, "n_clients", by=["rater"]))


def thresholds_table(applied: pd.DataFrame, criteria: Sequence[Criterion],
                     reliability: dict[str, float], min_cell: int) -> pd.DataFrame:
    """How each criterion decides, in numbers: the drop it requires (median and range).

    Returns
    -------
    pandas.DataFrame
        Per criterion x rater x scale: ``label, kind, k, z, sd, repair, reliability``
        (the value used by ``rci``), ``n_series, median_threshold, q1_threshold,
        q3_threshold`` (points; shown only over at least ``min_cell`` series; for
        ``dip`` criteria the threshold is ``z`` times the SD, which the dip contrast must
        reach times ``sqrt(1 + 1/m)``), ``median_min_drop`` (the reliable drop a ``dip``
        also needs; 0 for the other kinds) and ``note`` (why some series could not be
        analysed).
    """
    info = {c.name: c for c in criteria}
    rows = []
    for key, g in applied.groupby(GROUP, sort=False):
        crit, rater, scale = (str(k) for k in key)
        c = info[crit]
        ok = g["threshold"].dropna()
        notes = sorted({str(x) for x in g["note"] if isinstance(x, str) and x})
        enough = len(ok) >= min_cell
        rows.append({
            "criterion": crit, "rater": rater, "scale": scale, "label": c.label,
            "kind": c.kind, "k": c.k if c.kind in ("sd", "v_shape") else np.nan,
            "z": c.z if c.kind in ("rci", "dip") else np.nan,
            "sd": "+".join(c.sd) + f" ({c.combine})" if c.kind != "rci" else "baseline",
            "repair": c.repair,
            "reliability": (reliability.get(scale, np.nan)
                            if c.kind == "rci" or (c.kind == "dip" and c.rci_z is not None)
                            else np.nan),
            "n_series": len(ok),
            "median_threshold": float(ok.median()) if enough else np.nan,
            "median_min_drop": (float(g.loc[ok.index, "min_drop"].median())
                                if enough and "min_drop" in g.columns else np.nan),
            "q1_threshold": float(ok.quantile(0.25)) if enough else np.nan,
            "q3_threshold": float(ok.quantile(0.75)) if enough else np.nan,
            "note": "; ".join(notes),
        })
    return _order(pd.DataFrame(rows), criteria)


def published(episodes: pd.DataFrame, applied: pd.DataFrame, series: pd.DataFrame,
              wellbeing: pd.DataFrame, criteria: Sequence[Criterion], rules: Rules,
              bins: Sequence[int], min_cell: int, conf_level: float, before: int,
              after: int) -> dict[str, pd.DataFrame]:
    """``prevalence``, ``lengths``, ``timing``, ``agreement`` and ``course``, their small
    counts blanked together (:func:`linked_margins`): no count blanked in one of them can
    be worked out from the cells of another.

    Each table is the one its own function returns (:func:`prevalence`, :func:`lengths`,
    :func:`timing`, :func:`agreement`, :func:`course`), with the further blanks the links
    need. A blank is added in the table that breaks prevalence down rather than in
    prevalence wherever either protects (prevalence's counts are the ``last`` cells).
    """
    tables = {
        "prevalence": prevalence_counts(episodes, applied, criteria, min_cell),
        "lengths": lengths_counts(episodes, criteria, rules),
        "timing": timing_counts(episodes, criteria, bins),
        "agreement": agreement_counts(episodes, applied, criteria),
        "course": course_counts(episodes, series, wellbeing, criteria, conf_level, before,
                                after),
    }
    counts: dict[str, dict[str, list[str]]] = {
        "prevalence": PREVALENCE_COUNTS, "lengths": {"n_episodes": []},
        "timing": {"n_episodes": []}, "agreement": {c: ["kappa"] for c in AGREEMENT_COUNTS},
        "course": {"n": COURSE_VALUES[1:]}}
    prev = tables["prevalence"]
    last = [("prevalence", r, c) for r in range(len(prev)) for c in PREVALENCE_COUNTS]
    out = suppress_linked({name: (table, counts[name]) for name, table in tables.items()},
                          linked_margins(tables), min_cell, last)
    crs = tables["course"]
    hidden = (out["course"]["suppressed"] != "").to_numpy() | (crs["n"] < min_cell).to_numpy()
    # Every course n of a status is at most that status's count (episodes with a score
    # at that offset): a shown n bounds a blank count from below (8 at offset 0 beside
    # a blank 8). Where the count is blank, its status's course is blank throughout.
    shown = out["prevalence"]
    shown = shown[(shown["rater"] == "client") & (shown["scale"] == "total")]
    for status in STATUSES:
        blank = set(shown.loc[shown[f"n_{status}"].isna(), "criterion"])
        hidden |= ((crs["status"] == status) & crs["criterion"].isin(blank)).to_numpy()
    out["course"] = _blank_course(crs, pd.Series(hidden, index=crs.index))
    out["agreement"] = blank_jaccard(out["agreement"], min_cell)
    return out


def linked_margins(tables: Mapping[str, pd.DataFrame]) -> list[list[LinkedCell]]:
    """The margins of the ruptures tables (:func:`pipeline.disclosure.protect_linked`),
    within each table and across them.

    Within: repaired + unrepaired + censored = episodes (prevalence, each row); the lengths
    of a criterion x rater x scale, and each kind of its timing periods, add up to a
    prevalence count; the four counts of an agreement row add up to its ``n_clients``.

    Across (``tables`` as :func:`published` builds them, counts not blanked):

    * lengths rows = ``n_repaired`` (a breakdown), and lengths rows + ``n_unrepaired`` +
      ``n_censored`` = ``n_episodes`` (the substitution);
    * each kind of timing periods = ``n_episodes`` (a breakdown);
    * agreement of criteria a and b on the clients both apply to: when that is every
      client a applies to (``n_clients`` = a's ``n_series``), ``n_both + n_only_a`` = a's
      ``n_clients_with_episode`` (a breakdown) and a's ``n_clients_with_episode +
      n_only_b + n_neither`` = ``n_clients`` (the other row of the 2 x 2 table); the same
      for b. Then one shown cell of a row gives the others back, and a row with a blank
      has all four blank;
    * course ``n`` at offset 0 of the alliance (client, total score) = the prevalence
      count of that status (an identity). (Every other course ``n`` of the status is at
      most that count, a bound rather than a margin: :func:`published` blanks the
      status's whole course where the count is blank.)
    """
    prev, lens, tim = tables["prevalence"], tables["lengths"], tables["timing"]
    agr, crs = tables["agreement"], tables["course"]
    margins = [*tag("prevalence", across(prev, STATUS_COUNTS)),
               *tag("lengths", within(lens, "n_episodes", by=GROUP)),
               *tag("timing", within(tim, "n_episodes", by=[*GROUP, "kind"])),
               *tag("agreement", across(agr, AGREEMENT_COUNTS))]
    row_of = {tuple(k): i for i, k in enumerate(prev[GROUP].itertuples(index=False))}
    n_series = prev["n_series"].to_numpy()

    def rows(frame: pd.DataFrame, keys: list[str]) -> dict[tuple[Any, ...], list[int]]:
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i, k in enumerate(frame[keys].itertuples(index=False)):
            groups.setdefault(tuple(k), []).append(i)
        return groups

    for key, idx in rows(lens, GROUP).items():
        r = row_of[key]
        parts: list[LinkedCell] = [("lengths", i, "n_episodes") for i in idx]
        margins.append([*parts, ("prevalence", r, "n_repaired")])
        margins.append([*parts, ("prevalence", r, "n_unrepaired"),
                        ("prevalence", r, "n_censored")])
    for key, idx in rows(tim, [*GROUP, "kind"]).items():
        margins.append([*[("timing", i, "n_episodes") for i in idx],
                        ("prevalence", row_of[key[:3]], "n_episodes")])
    for i, row in enumerate(agr.itertuples(index=False)):
        for own, other, crit in (("n_only_a", "n_only_b", row.criterion_a),
                                 ("n_only_b", "n_only_a", row.criterion_b)):
            r = row_of[(crit, row.rater, row.scale)]
            if row.n_clients != n_series[r]:
                continue   # pairs on fewer clients than crit applies to: no equation
            found: LinkedCell = ("prevalence", r, "n_clients_with_episode")
            margins.append([("agreement", i, "n_both"), ("agreement", i, own), found])
            margins.append([found, ("agreement", i, other), ("agreement", i, "n_neither")])
    at_zero = rows(crs[(crs["variable"] == "alliance") & (crs["offset"] == 0)],
                   ["criterion", "status"])
    offset0 = crs.index[(crs["variable"] == "alliance") & (crs["offset"] == 0)]
    for (crit, status), idx in at_zero.items():
        total = row_of.get((crit, "client", "total"))
        if total is not None:
            margins.append([("prevalence", total, f"n_{status}"),
                            ("course", int(offset0[idx[0]]), "n")])
    return margins
