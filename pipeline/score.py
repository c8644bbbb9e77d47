"""Score alliance and outcome questionnaires from item columns, following an instrument key.

Every scoring fact (items, valid range, reversed items, subscales, missing-item rule,
conversion table, multiplier, direction) comes from the :class:`~pipeline.instruments.Instrument`
loaded from its YAML file; nothing instrument-specific is written in this module.

Order of operations for item data (both scorers):

1. Item columns ``<item_prefix>_<n>`` are coerced to numbers; blank cells become missing,
   any other non-numeric text is an error.
2. Item ranges are checked **before** reversing, so an out-of-range code (e.g. ``99`` for
   "missing", or ``8`` from a reversed blank) raises instead of being silently reversed.
3. Reversed items become ``item_min + item_max - x``; a missing item stays missing.
4. The instrument's missing-item rule is applied (prorated mean / prorated sum).

References
----------
Horvath, A. O., & Greenberg, L. S. (1989). Development and validation of the Working
Alliance Inventory. *Journal of Counseling Psychology, 36*(2), 223-233.

Hatcher, R. L., & Gillaspy, J. A. (2006). Development and validation of a revised short
version of the Working Alliance Inventory. *Psychotherapy Research, 16*(1), 12-25.

Stewart-Brown, S. et al. (2009). Internal construct validity of the Warwick-Edinburgh Mental
Well-being Scale (WEMWBS): a Rasch analysis. *Health and Quality of Life Outcomes, 7*, 15.

Kroenke, K., Spitzer, R. L., & Williams, J. B. W. (2001). The PHQ-9. *Journal of General
Internal Medicine, 16*(9), 606-613.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.instruments import Instrument

ID_COLUMNS: tuple[str, ...] = ("client_id", "therapist_id", "session", "rater")
"""Identifier columns carried from the input into the scored frame, when present."""

TOTAL_COLUMN = "alliance_total"
"""Name of the overall alliance score added by :func:`score_alliance`."""

OUTCOME_COLUMN = "wellbeing"
"""Name of the outcome score column added by :func:`score_outcome`."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "instrument",
    "scale",
    "n_rows",
    "n_complete",
    "n_prorated",
    "n_missing",
    "source",
    "direction",
    "metric",
)
"""Columns of the tidy summary frames returned by the scorers."""

_MAX_EXAMPLES = 5


# --------------------------------------------------------------------------- items


def _has_items(df: pd.DataFrame, inst: Instrument) -> bool:
    """Whether ``df`` holds the instrument's item columns (all of them, or none).

    Raises
    ------
    ValueError
        If only some of the item columns are present (usually a wrong prefix or a
        truncated export), naming the missing ones.
    """
    cols = inst.item_columns
    present = [c for c in cols if c in df.columns]
    if not present:
        return False
    if len(present) < len(cols):
        absent = [c for c in cols if c not in df.columns]
        raise ValueError(
            f"{inst.key}: {len(present)} of {len(cols)} item columns present; "
            f"missing {absent[:_MAX_EXAMPLES]}{' ...' if len(absent) > _MAX_EXAMPLES else ''}"
        )
    return True


def _to_numeric(series: pd.Series, label: str) -> pd.Series:
    """Coerce one column to float; blank text becomes NaN, other text is an error."""
    if pd.api.types.is_bool_dtype(series):
        raise ValueError(f"{label}: boolean values are not valid item responses")
    if pd.api.types.is_numeric_dtype(series):
        return series.astype(float)
    text = series.astype("string").str.strip()
    blank = text.isna() | (text == "")
    numbers = pd.to_numeric(text.mask(blank), errors="coerce")
    bad = numbers.isna() & ~blank
    if bad.any():
        examples = ", ".join(f"row {i!r}: {series[i]!r}" for i in series.index[bad][:_MAX_EXAMPLES])
        raise ValueError(f"{label}: {int(bad.sum())} non-numeric value(s), e.g. {examples}")
    return numbers.astype(float)


def _check_range(values: pd.Series, lo: float, hi: float, label: str, what: str) -> None:
    """Raise a ValueError naming the column and example rows with values outside [lo, hi]."""
    bad = values.notna() & ((values < lo) | (values > hi))
    if bad.any():
        examples = ", ".join(
            f"row {i!r}: {values[i]:g}" for i in values.index[bad][:_MAX_EXAMPLES]
        )
        raise ValueError(
            f"{label}: {int(bad.sum())} value(s) outside the valid range {lo:g}-{hi:g} "
            f"{what}, e.g. {examples}. Recode missing-value codes to blank/NaN."
        )


def validate_items(df: pd.DataFrame, inst: Instrument) -> pd.DataFrame:
    """Return the instrument's item columns as floats, range-checked, NOT reversed.

    Parameters
    ----------
    df
        Frame holding all item columns ``<item_prefix>_1`` ... ``<item_prefix>_<n_items>``.
    inst
        Instrument key.

    Returns
    -------
    pandas.DataFrame
        Item columns in item order, float dtype, blanks as NaN; same index as ``df``.

    Raises
    ------
    ValueError
        If an item column is missing, holds non-numeric text, or holds a value outside
        ``[item_min, item_max]`` (the message names the column and example rows).
    """
    if not _has_items(df, inst):
        raise ValueError(f"{inst.key}: no item columns {inst.item_columns[0]} ... in the data")
    out = pd.DataFrame(index=df.index)
    for col in inst.item_columns:
        values = _to_numeric(df[col], col)
        _check_range(values, inst.item_min, inst.item_max, col, f"for {inst.key} items "
                     "(checked before reversing)")
        out[col] = values
    return out


def reverse_items(items: pd.DataFrame, inst: Instrument) -> pd.DataFrame:
    """Reverse the instrument's reversed items as ``item_min + item_max - x``.

    Parameters
    ----------
    items
        Output of :func:`validate_items` (range already checked).
    inst
        Instrument key.

    Returns
    -------
    pandas.DataFrame
        Copy of ``items`` with reversed items recoded; missing values stay missing.
    """
    out = items.copy()
    for i in inst.reversed:
        col = f"{inst.item_prefix}_{i}"
        out[col] = inst.item_min + inst.item_max - out[col]
    return out


def keyed_items(df: pd.DataFrame, inst: Instrument) -> pd.DataFrame:
    """Validated and reversed item columns, ready for scoring or reliability analysis.

    Parameters
    ----------
    df
        Frame holding all item columns of ``inst``.
    inst
        Instrument key.

    Returns
    -------
    pandas.DataFrame
        :func:`reverse_items` applied to :func:`validate_items`.
    """
    return reverse_items(validate_items(df, inst), inst)


def _prorated(block: pd.DataFrame, max_missing: int, how: str) -> tuple[pd.Series, pd.Series]:
    """Prorated mean or sum of ``block`` rows, missing when more than ``max_missing`` absent.

    For a sum the prorated value is ``k * sum(answered) / n_answered``, which equals
    substituting the mean of the answered items for each missing item.

    Returns
    -------
    (score, n_missing_items)
    """
    k = block.shape[1]
    n_answered = block.notna().sum(axis=1)
    n_missing = k - n_answered
    total = block.sum(axis=1, min_count=1)
    if how == "mean":
        score = total / n_answered
    else:
        score = pd.Series(
            np.where(n_missing == 0, total, total * k / n_answered.replace(0, np.nan)),
            index=block.index,
        )
    return score.where(n_missing <= max_missing), n_missing


def _summary_row(
    inst: Instrument,
    scale: str,
    score: pd.Series,
    n_complete: int | None,
    n_prorated: int | None,
    source: str,
    direction: str,
    metric: str,
) -> dict[str, object]:
    return {
        "instrument": inst.key,
        "scale": scale,
        "n_rows": len(score),
        "n_complete": n_complete,
        "n_prorated": n_prorated,
        "n_missing": int(score.isna().sum()),
        "source": source,
        "direction": direction,
        "metric": metric,
    }


def _summary_frame(rows: Sequence[dict[str, object]]) -> pd.DataFrame:
    out = pd.DataFrame(list(rows), columns=list(SUMMARY_COLUMNS))
    for col in ("n_rows", "n_complete", "n_prorated", "n_missing"):
        out[col] = out[col].astype("Int64")
    return out


def _id_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in ID_COLUMNS if c in df.columns]].copy()


# ------------------------------------------------------------------------- alliance


def score_alliance(df: pd.DataFrame, inst: Instrument) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score an alliance questionnaire into its subscales and an overall score.

    Parameters
    ----------
    df
        One row per completed questionnaire. Either the item columns
        ``<item_prefix>_<n>`` (all of them), or -- when no item column is present --
        pre-scored subscale columns named as the instrument's subscales (``goal``,
        ``task``, ``bond``) on the item-mean metric, which are range-checked and passed
        through. Item columns take precedence when both are present.
    inst
        Alliance instrument key (``kind: alliance``).

    Returns
    -------
    scored : pandas.DataFrame
        The identifier columns present among ``client_id, therapist_id, session, rater``
        (in that order),
        one column per subscale and ``alliance_total``; same index as ``df``.
        Subscales are on the item-mean metric (e.g. 1-7 for the WAI-S) when the key says
        ``score: mean`` (all shipped alliance keys), so forms and subscales with
        prorated items stay comparable. A subscale with more missing items than
        ``missing.max_missing_per_subscale`` is NaN; otherwise it is the mean of its
        answered items (prorated mean).
        ``alliance_total`` is the unweighted mean of the subscale scores, and NaN if any
        subscale is NaN. With equal-length subscales and no missing items it equals the
        mean of all items; averaging subscales instead of items keeps each alliance
        component's weight fixed when an item is prorated.
    summary : pandas.DataFrame
        Tidy counts, one row per subscale and for ``alliance_total``: ``instrument,
        scale, n_rows, n_complete`` (scored with no item missing), ``n_prorated`` (scored
        with at least one item missing), ``n_missing`` (not scored), plus ``source``
        (``"items"`` or ``"pre-scored"``), ``direction`` and ``metric``. For pre-scored
        input ``n_complete`` counts non-missing scores and ``n_prorated`` is unknown (NA).

    Raises
    ------
    ValueError
        If an item or pre-scored value is out of range, an item holds non-numeric text,
        only some item columns are present, or neither items nor subscale columns exist.

    Notes
    -----
    No official missing-item rule exists for the WAI; the shipped keys use the documented
    project choice of at most one missing item per subscale (see each YAML file).

    References
    ----------
    Tracey, T. J., & Kokotovic, A. M. (1989). Factor structure of the Working Alliance
    Inventory. *Psychological Assessment, 1*(3), 207-210.
    """
    if inst.kind != "alliance":
        raise ValueError(f"{inst.key} is an {inst.kind} instrument, not an alliance instrument")
    scored = _id_frame(df)
    names = list(inst.subscales)
    rows: list[dict[str, object]] = []
    lo, hi = inst.item_min, inst.item_max
    direction = inst.direction

    if _has_items(df, inst):
        items = keyed_items(df, inst)
        max_missing = int(inst.missing.get("max_missing_per_subscale", 0))
        missing_counts = {}
        for name in names:
            cols = [f"{inst.item_prefix}_{i}" for i in inst.subscales[name]]
            score, n_miss = _prorated(items[cols], max_missing, inst.score)
            scored[name] = score
            missing_counts[name] = n_miss
            n_complete = int((n_miss == 0).sum())
            rows.append(
                _summary_row(
                    inst, name, score, n_complete, int(score.notna().sum()) - n_complete,
                    "items", direction, _metric_label(inst, len(cols)),
                )
            )
        sub = scored[names]
        total = sub.mean(axis=1).where(sub.notna().all(axis=1))
        all_items = pd.concat(missing_counts, axis=1).sum(axis=1) == 0
        n_complete = int((total.notna() & all_items).sum())
        rows.append(
            _summary_row(
                inst, TOTAL_COLUMN, total, n_complete, int(total.notna().sum()) - n_complete,
                "items", direction, f"mean of subscale scores ({', '.join(names)})",
            )
        )
    else:
        absent = [n for n in names if n not in df.columns]
        if absent:
            raise ValueError(
                f"{inst.key}: neither item columns ({inst.item_columns[0]} ...) nor pre-scored "
                f"subscale columns {names} found (missing {absent})"
            )
        for name in names:
            values = _to_numeric(df[name], name)
            metric_lo, metric_hi = (lo, hi) if inst.score == "mean" else _sum_range(inst, name)
            _check_range(
                values, metric_lo, metric_hi, name,
                f"for pre-scored {inst.key} subscales ({_metric_label(inst, None)})",
            )
            scored[name] = values
            rows.append(
                _summary_row(
                    inst, name, values, int(values.notna().sum()), None, "pre-scored",
                    direction, _metric_label(inst, None),
                )
            )
        sub = scored[names]
        total = sub.mean(axis=1).where(sub.notna().all(axis=1))
        rows.append(
            _summary_row(
                inst, TOTAL_COLUMN, total, int(total.notna().sum()), None, "pre-scored",
                direction, f"mean of subscale scores ({', '.join(names)})",
            )
        )
    scored[TOTAL_COLUMN] = total
    return scored, _summary_frame(rows)


def as_form(df: pd.DataFrame, source: Instrument, target: Instrument) -> pd.DataFrame:
    """Rename ``source``'s item columns to ``target``'s (same items, another form's key).

    In the long layout of ``data/README.md`` client and therapist ratings share the item
    columns named after the client form (``wai_s_1`` ...); therapist rows are scored with
    the therapist form's key, whose items are ``wai_s_t_1`` ....

    Parameters
    ----------
    df
        Rows holding ``source``'s item columns.
    source, target
        Two forms with the same number of items.

    Returns
    -------
    pandas.DataFrame
        A copy with the item columns renamed; other columns unchanged.
    """
    if source.n_items != target.n_items:
        raise ValueError(f"{source.key} and {target.key} have different numbers of items")
    return df.rename(columns=dict(zip(source.item_columns, target.item_columns, strict=True)))


def score_raters(
    df: pd.DataFrame, client: Instrument, therapist: Instrument | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score client- and therapist-rated alliance rows, each with its own form's key.

    Parameters
    ----------
    df
        Validated alliance rows. With a ``rater`` column (``client`` / ``therapist``),
        rows rated by the therapist are scored with ``therapist`` (when given) from the
        same item columns; without one, every row is a client rating.
    client
        The client form (``instruments.alliance``), e.g. ``wai_s``.
    therapist
        The therapist form (``instruments.alliance_therapist``), e.g. ``wai_s_t``;
        ``None`` scores therapist rows with the client key (and says so in ``summary``).

    Returns
    -------
    scored : pandas.DataFrame
        As :func:`score_alliance`, with a ``rater`` column (``client`` when the input has
        none), rows in the input order.
    summary : pandas.DataFrame
        :func:`score_alliance`'s summary per form, with a ``rater`` column.

    Notes
    -----
    The analysis plan models client-rated alliance; therapist ratings are described and
    compared with the client's (``pipeline.describe.rater_agreement``).
    """
    raters = (df["rater"].astype(str).str.strip().str.lower() if "rater" in df.columns
              else pd.Series("client", index=df.index))
    parts, summaries = [], []
    for rater in sorted(raters.unique()):
        rows = df[raters == rater]
        inst = client
        if rater == "therapist" and therapist is not None:
            inst = therapist
            if _has_items(rows, client):
                rows = as_form(rows, client, therapist)
        scored, summary = score_alliance(rows, inst)
        scored["rater"] = rater
        summary.insert(0, "rater", rater)
        parts.append(scored)
        summaries.append(summary)
    out = pd.concat(parts).loc[df.index]
    ids = [c for c in ID_COLUMNS if c in out.columns]
    return out[ids + [c for c in out.columns if c not in ids]], pd.concat(
        summaries, ignore_index=True)


def therapist_form(instruments: Mapping[str, Any]) -> Instrument | None:
    """The therapist form of the alliance instrument, from the ``instruments:`` settings.

    Parameters
    ----------
    instruments
        The ``instruments:`` block of ``params.yaml``.

    Returns
    -------
    Instrument or None
        ``instruments.alliance_therapist`` when set; otherwise the registered
        ``<alliance>_t`` form (``wai_s_t`` for ``wai_s``, ``wai36_t`` for ``wai36``) when
        it exists in ``instruments.paths`` or the shipped registry; else ``None``
        (therapist rows, if any, are then scored with the client key and a warning).
    """
    from pipeline.instruments import available_instruments, load_instrument

    paths = list(instruments.get("paths") or [])
    key = str(instruments.get("alliance_therapist") or "")
    if not key:
        guess = f"{instruments['alliance']}_t"
        if guess in available_instruments() or any(
            (Path(p) / f"{guess}.yaml").is_file() for p in paths
        ):
            key = guess
    return load_instrument(key, paths) if key else None


def _sum_range(inst: Instrument, subscale: str) -> tuple[float, float]:
    k = len(inst.subscales[subscale])
    return k * inst.item_min, k * inst.item_max


def _metric_label(inst: Instrument, k: int | None) -> str:
    if inst.score == "mean":
        return f"item mean {inst.item_min:g}-{inst.item_max:g}"
    if k is None:
        return "item sum"
    return f"item sum {k * inst.item_min:g}-{k * inst.item_max:g}"


# -------------------------------------------------------------------------- outcome


def outcome_range(inst: Instrument) -> tuple[float, float]:
    """Lowest and highest possible reported score of an outcome instrument.

    The reported score is the raw total (sum or item mean), passed through the
    conversion table when there is one, then multiplied by ``multiplier``.

    Parameters
    ----------
    inst
        Outcome instrument key.

    Returns
    -------
    (min_total, max_total)
        E.g. ``(7.0, 35.0)`` for SWEMWBS, ``(0.0, 100.0)`` for WHO-5, ``(0.0, 40.0)`` for
        CORE-10.
    """
    if inst.conversion:
        lo, hi = min(inst.conversion.values()), max(inst.conversion.values())
    elif inst.score == "sum":
        lo, hi = inst.n_items * inst.item_min, inst.n_items * inst.item_max
    else:
        lo, hi = inst.item_min, inst.item_max
    return lo * inst.multiplier, hi * inst.multiplier


def _convert(raw: pd.Series, inst: Instrument) -> pd.Series:
    """Map whole raw totals through the instrument's conversion table."""
    if inst.conversion is None:
        return raw
    present = raw.dropna()
    if not np.allclose(present, np.round(present)):
        raise ValueError(f"{inst.key}: conversion table needs whole raw totals")
    lookup = pd.Series(inst.conversion, dtype=float)
    keys = present.round().astype(int)
    unknown = sorted(set(keys) - set(lookup.index))
    if unknown:
        raise ValueError(f"{inst.key}: raw totals {unknown} are not in the conversion table")
    return keys.map(lookup).reindex(raw.index).astype(float)


def score_outcome(
    df: pd.DataFrame, inst: Instrument, higher_is_better: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score an outcome (wellbeing or symptom) questionnaire into one ``wellbeing`` column.

    Parameters
    ----------
    df
        One row per completed questionnaire. Either all item columns
        ``<item_prefix>_<n>``, or -- when no item column is present -- a pre-scored
        column named after the instrument key (e.g. ``swemwbs``, ``core10``) holding the
        instrument's *reported* score (after any conversion table and multiplier, in the
        instrument's own direction), which is range-checked and passed through.
    inst
        Outcome instrument key (``kind: outcome``).
    higher_is_better
        If True (default) and the instrument runs ``higher_worse`` (CORE-10, PHQ-9,
        GAD-7), the score is reoriented as ``max_total + min_total - score`` so that
        higher means better while the range stays the same (e.g. CORE-10 ``40 - total``,
        PHQ-9 ``27 - total``). If False the instrument's own direction is kept. The
        ``direction`` and ``metric`` columns of the summary state which one applies.

    Returns
    -------
    scored : pandas.DataFrame
        The identifier columns present among ``client_id, therapist_id, session, rater``
        (in that order)
        and ``wellbeing``; same index as ``df``.
        From items: reversed items are recoded, the raw total is the item sum (or mean,
        per ``score``), with up to ``missing.max_missing`` missing items prorated as
        ``n_items * sum(answered) / n_answered`` (identical to substituting the mean of
        the answered items, ``method: mean_substitute``); more missing items give NaN.
        The raw total is then converted (``conversion``, e.g. SWEMWBS Rasch metric) and
        multiplied (``multiplier``, e.g. WHO-5 x4 -> 0-100).
    summary : pandas.DataFrame
        One tidy row: ``instrument, scale ("wellbeing"), n_rows, n_complete, n_prorated,
        n_missing, source, direction, metric``.

    Raises
    ------
    ValueError
        For out-of-range or non-numeric items or pre-scored values, partial item sets,
        raw totals missing from the conversion table, or when neither items nor a
        pre-scored column are present.

    References
    ----------
    Barkham, M. et al. (2013). The CORE-10. *Counselling and Psychotherapy Research,
    13*(1), 3-13.

    Topp, C. W. et al. (2015). The WHO-5 Well-Being Index: a systematic review of the
    literature. *Psychotherapy and Psychosomatics, 84*(3), 167-176.
    """
    if inst.kind != "outcome":
        raise ValueError(f"{inst.key} is an {inst.kind} instrument, not an outcome instrument")
    scored = _id_frame(df)
    lo, hi = outcome_range(inst)
    n_complete: int | None
    n_prorated: int | None
    if _has_items(df, inst):
        items = keyed_items(df, inst)
        max_missing = int(inst.missing.get("max_missing", 0))
        raw, n_miss = _prorated(items, max_missing, inst.score)
        score = _convert(raw, inst) if inst.conversion else raw
        score = score * inst.multiplier
        n_complete = int((n_miss == 0).sum())
        n_prorated = int(score.notna().sum()) - n_complete
        source = "items"
    elif inst.key in df.columns:
        score = _to_numeric(df[inst.key], inst.key)
        _check_range(score, lo, hi, inst.key, f"for the pre-scored {inst.key} total")
        n_complete, n_prorated, source = int(score.notna().sum()), None, "pre-scored"
    else:
        raise ValueError(
            f"{inst.key}: neither item columns ({inst.item_columns[0]} ...) nor a pre-scored "
            f"'{inst.key}' column found"
        )
    metric = f"{inst.key} score {lo:g}-{hi:g}"
    direction = inst.direction
    if inst.direction == "higher_worse" and higher_is_better:
        score = (hi + lo) - score
        metric = f"{hi + lo:g} - {inst.key} score (reoriented; range {lo:g}-{hi:g})"
        direction = "higher_better"
    scored[OUTCOME_COLUMN] = score
    summary = _summary_frame(
        [
            _summary_row(
                inst, OUTCOME_COLUMN, score, n_complete, n_prorated, source, direction, metric
            )
        ]
    )
    return scored, summary


# -------------------------------------------------------------------------- merging


def merge_scores(
    alliance_scored: pd.DataFrame,
    outcome_scored: pd.DataFrame,
    on: Sequence[str] = ("client_id", "session"),
) -> pd.DataFrame:
    """Match scored alliance and outcome rows: one row per client x session with both forms.

    Parameters
    ----------
    alliance_scored
        First output of :func:`score_alliance`.
    outcome_scored
        First output of :func:`score_outcome`.
    on
        Key columns present in both frames.

    Returns
    -------
    pandas.DataFrame
        Inner join on ``on``: the alliance identifier and score columns, then
        ``wellbeing``; sorted by ``on`` and numbered from 0. Identifier columns of the
        outcome frame other than the keys (e.g. ``therapist_id``) are taken from the
        alliance frame.

    Raises
    ------
    ValueError
        If a key is missing or either frame has more than one row per key (for example
        client and therapist alliance ratings of the same session in one frame).
    """
    keys = list(on)
    for name, frame in (("alliance", alliance_scored), ("outcome", outcome_scored)):
        absent = [k for k in keys if k not in frame.columns]
        if absent:
            raise ValueError(f"merge_scores: {name} scores lack key columns {absent}")
        dup = frame.duplicated(subset=keys, keep=False)
        if dup.any():
            raise ValueError(
                f"merge_scores: {int(dup.sum())} {name} rows share a {' x '.join(keys)} key "
                "(one scored form per key is expected; score each rater separately)"
            )
    extra_ids = [c for c in ID_COLUMNS if c in outcome_scored.columns and c not in keys]
    merged = alliance_scored.merge(
        outcome_scored.drop(columns=extra_ids), on=keys, how="inner", validate="one_to_one"
    )
    return merged.sort_values(keys, kind="stable").reset_index(drop=True)


def unscorable(alliance: pd.DataFrame, outcome: pd.DataFrame | None,
               files: Mapping[str, str], alliance_inst: Instrument,
               outcome_inst: Instrument | None) -> None:
    """Stop when no client-rated alliance row, or no outcome row, could be scored.

    Every item blank (or more blanks than the instrument's missing rule allows on every
    row) left nothing to analyse: the models were all "not estimable" and the ruptures
    step stopped with a traceback.

    Raises
    ------
    pipeline.read.InputError
        Naming the file, the instrument's missing rule and what to do.
    """
    from pipeline.read import InputError, Problem

    problems = []
    subscales = [c for c in alliance_inst.subscales if c in alliance.columns]
    if not alliance[subscales].notna().any(axis=None):
        problems.append(Problem(
            files["alliance"], ", ".join(subscales), [], "nothing_scorable",
            f"no client-rated row could be scored with {alliance_inst.key}: every row has more "
            f"blank items than its missing-item rule allows ({dict(alliance_inst.missing)}). "
            "Check that the export holds the answers (not an empty template) and that "
            "instruments.alliance names the questionnaire that was used."))
    if outcome is not None and outcome_inst is not None and not outcome["wellbeing"].notna().any():
        problems.append(Problem(
            files["outcome"], outcome_inst.key, [], "nothing_scorable",
            f"no row could be scored with {outcome_inst.key}: every row has more blank items "
            f"than its missing-item rule allows ({dict(outcome_inst.missing)}). Check the "
            "export and instruments.outcome, or set data.outcome: \"\" for an alliance-only "
            "analysis."))
    if problems:
        raise InputError(problems)
