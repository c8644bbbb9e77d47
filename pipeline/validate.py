"""Check the input files against the input contract before any number is computed.

The contract is documented in ``data/README.md``. :func:`validate_inputs` reads the
alliance, outcome and (optional) clients files, runs the anonymisation guard
(:mod:`pipeline.anonymity`), validates every file against a pandera schema declared from
the instrument definitions, cross-checks the files, and returns normalised frames plus a
tidy table of the checks. Every problem in every file is collected before anything is
raised, so a researcher sees the whole list at once. Input files are only read.

Rules (``Problem.rule``) raised here, all fatal:

``file_not_found``, ``unsupported_format``, ``empty_file``, ``no_data_rows``,
``unreadable_file``, ``duplicate_column`` (from :func:`pipeline.read.read_table`);
``missing_column``, ``unknown_item``, ``missing_value``, ``not_a_number``,
``not_whole_number``, ``session_below_1``, ``out_of_range``, ``invalid_rater``,
``duplicate_row``, ``several_therapists``, ``ids_do_not_match``, ``invalid_setting``,
``missing_path``; and the anonymisation rules ``name:<kind>`` and ``content:<kind>``.

Counted and reported as warnings (not fatal, no row dropped): outcome or client rows
whose client has no alliance rows, alliance clients without outcome rows or without a
clients row, unused columns, pre-scored columns ignored because items are present,
alliance rows by a rater other than the instrument's form, rare covariate combinations
(k-anonymity), unknown settings, session numbers that mostly jump by two or more (weeks
or days rather than counted sessions).
"""

from __future__ import annotations

import difflib
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pipeline.anonymity import (
    check_anonymity,
    check_covariates,
    check_headers,
    k_anonymity_table,
    load_rules,
    rare_combinations,
    value_texts,
)
from pipeline.errors import SettingsError
from pipeline.instruments import Instrument, available_instruments, load_instrument
from pipeline.read import InputError, Problem, read_table
from pipeline.score import outcome_range

ROLES: tuple[str, ...] = ("alliance", "outcome", "clients")
"""The input files, in the order they are checked and reported."""

RATERS: tuple[str, ...] = ("client", "therapist")
"""Allowed values of the optional ``rater`` column (after lower-casing)."""

ASSUMED_THERAPIST = "one_therapist"
"""``therapist_id`` given to every row when the alliance file has no therapist_id column."""

ENDINGS: tuple[str, ...] = ("planned", "unplanned", "ongoing")
"""Allowed values of the optional ``ending`` column of the clients file (lower-cased)."""

DEFAULT_SETTINGS: dict[str, Any] = {
    "allow_columns": [],
    "k_anonymity": 5,
    "max_examples": 5,
    "covariates": None,
    "anonymity_rules": None,
    "covariate_levels": None,
    "max_session": 1000,
}
"""Defaults of the ``validation:`` block of ``params.yaml``.

``allow_columns``
    Column names the anonymisation guard refused that the user has checked are safe.
``k_anonymity``
    Warn when fewer than this many clients share a combination of covariates.
``max_examples``
    Example row numbers named per problem.
``covariates``
    Client covariates to keep from the clients file; ``None`` keeps every column other
    than ``client_id`` (and the contract's id columns).
``anonymity_rules``
    Path of a rules file replacing ``pipeline/anonymity_rules.yaml``; ``None`` = shipped.
``covariate_levels``
    Covariate -> list of its levels, declared by the user as safe to publish; the values
    must be exactly these (``None``: levels must look like categories, see
    :func:`pipeline.anonymity.check_covariates`).
``max_session``
    Largest session number accepted; a larger one is refused as ``session_too_large``
    (a typing error, a date or a code; ``1e20`` would overflow a whole number).
"""

RULE_TEXT: dict[str, str] = {
    "missing_column": "required columns present",
    "unknown_item": "no item columns beyond the instrument's items",
    "missing_value": "ids, session and rater given in every row",
    "not_a_number": "numbers where numbers are expected",
    "not_whole_number": "session is a whole number",
    "session_below_1": "session is 1 or more",
    "session_too_large": "session is not above validation.max_session",
    "out_of_range": "values inside the instrument's range",
    "invalid_rater": "rater is client or therapist",
    "invalid_ending": "ending (clients file, optional) is planned, unplanned or ongoing",
    "duplicate_row": "one row per key (client x session [x rater]; client in clients file)",
    "several_therapists": "each client has exactly one therapist",
    "ids_written_differently": "client ids written the same way in every file",
    "no_client_ratings": "some alliance rows are the client's ratings",
    "no_common_sessions": "some client x session has both a client alliance rating and an outcome",
    "anonymity_names": "no column name announcing identifying data",
    "anonymity_content": "no identifying content",
    "anonymity_headers": "no column name that is itself an identifier",
    "covariate_categories": "covariate values are declared or look like categories",
}
"""Short descriptions of the checks, used in the ``checks`` table."""


@dataclass
class ValidatedInputs:
    """Normalised, validated inputs.

    Attributes
    ----------
    alliance
        ``client_id, therapist_id, session`` [``rater``] then either the item columns
        (``wai_sr_1`` ...) or the pre-scored subscales (``goal, task, bond``).
    outcome
        ``client_id, session`` then either the item columns or the pre-scored total
        (named after the instrument, e.g. ``swemwbs``); ``None`` without an outcome file
        (an alliance-only analysis).
    clients
        ``client_id`` and the covariates, or ``None`` without a clients file.
    checks
        Tidy table ``check, file, status, n, detail``: every check run, per file, with
        ``status`` in ``pass``/``warn``/``fail``/``info`` and ``n`` the number of rows
        (or columns, for the anonymisation checks) concerned. Counts only, never row
        content; ``file`` is the role (alliance/outcome/clients), not a path.
    warnings
        Human-readable warnings (no row content, no paths).
    k_anonymity
        Combinations of client covariates with ``n_clients`` (see
        :func:`pipeline.anonymity.k_anonymity_table`); ``None`` without covariates.

    Notes
    -----
    Ids are strings, ``session`` is int64, item and score columns are float64 (NaN =
    missing item), numeric covariates float64 and other covariates strings. Rows are
    sorted by ``client_id, session`` (and ``rater``) and numbered from 0; the original
    row order carries no meaning.
    """

    alliance: pd.DataFrame
    outcome: pd.DataFrame | None
    clients: pd.DataFrame | None
    checks: pd.DataFrame
    warnings: list[str]
    k_anonymity: pd.DataFrame | None = None


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class _Settings:
    allow_columns: tuple[str, ...]
    k_anonymity: int
    max_examples: int
    covariates: tuple[str, ...] | None
    anonymity_rules: str | None
    covariate_levels: dict[str, tuple[str, ...]]
    max_session: int


def _settings(raw: Mapping[str, Any] | None, problems: list[Problem],
              notes: list[str]) -> _Settings:
    raw = dict(raw or {})
    unknown = sorted(set(raw) - set(DEFAULT_SETTINGS))
    if unknown:
        notes.append(
            f"params.yaml validation: unknown setting(s) {', '.join(unknown)} ignored "
            f"(known: {', '.join(DEFAULT_SETTINGS)})"
        )
    merged = {**DEFAULT_SETTINGS, **{k: v for k, v in raw.items() if v is not None}}

    def bad(key: str, why: str) -> None:
        problems.append(
            Problem("params.yaml", f"validation.{key}", [], "invalid_setting", why)
        )

    def names(key: str) -> tuple[str, ...] | None:
        value = merged[key]
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, Sequence):
            bad(key, "must be a list of column names, e.g. [age_band].")
            return ()
        return tuple(_column_name(v) for v in value)

    def positive(key: str) -> int:
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            bad(key, f"must be a whole number of 1 or more (default {DEFAULT_SETTINGS[key]}).")
            return int(DEFAULT_SETTINGS[key])
        return int(value)

    levels_raw = merged["covariate_levels"] or {}
    levels: dict[str, tuple[str, ...]] = {}
    if not isinstance(levels_raw, Mapping):
        bad("covariate_levels", "must map covariate names to lists of levels, e.g. "
            "{approach: [CBT, psychodynamic]}.")
    else:
        for key, values in levels_raw.items():
            if isinstance(values, str) or not isinstance(values, Sequence) or not values:
                bad("covariate_levels", f"'{key}' must list its levels, e.g. [CBT, humanistic].")
                continue
            levels[_column_name(key)] = tuple(str(v).strip() for v in values)
    rules = merged["anonymity_rules"]
    if rules is not None and not Path(str(rules)).is_file():
        bad("anonymity_rules", "names a rules file that does not exist.")
        rules = None
    return _Settings(
        allow_columns=names("allow_columns") or (),
        k_anonymity=positive("k_anonymity"),
        max_examples=positive("max_examples"),
        covariates=names("covariates"),
        anonymity_rules=str(rules) if rules else None,
        covariate_levels=levels,
        max_session=positive("max_session"),
    )


# ------------------------------------------------------------------------------ helpers


def _column_name(name: Any) -> str:
    """Normalise a column name: lower case; spaces, hyphens and dots become ``_``."""
    return re.sub(r"[\s.\-]+", "_", str(name).strip().lower()).strip("_")


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _number(value: Any) -> float:
    if isinstance(value, bool | np.bool_):
        return np.nan
    if isinstance(value, int | float | np.integer | np.floating):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return np.nan
    return np.nan


def as_numbers(series: pd.Series) -> pd.Series:
    """Parse a column as numbers; cells that are not numbers become NaN.

    Parameters
    ----------
    series
        Text (CSV) or stored numbers (other formats).

    Returns
    -------
    pandas.Series
        float64, same index. Text is parsed after stripping spaces (``"4"``, ``"4.0"``,
        ``" 4 "``); booleans, dates and other text (``"four"``, ``"4,5"``) become NaN.
    """
    if pd.api.types.is_bool_dtype(series):
        return pd.Series(np.nan, index=series.index)
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64")
    uniques = pd.unique(series.dropna())
    lookup = {u: _number(u) for u in uniques}
    return series.map(lookup).astype("float64")


def _stripped(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        return text if text else np.nan
    return value


def _blank_to_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Strip surrounding spaces from text cells; a cell left empty becomes missing.

    Works on the distinct values of each column (a few per item column), so a
    two-million-row file costs one hash lookup per cell.
    """
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            values = out[column]
            uniques = pd.unique(values.dropna())
            lookup = {u: _stripped(u) for u in uniques}
            if any(lookup[u] is not u for u in uniques):
                out[column] = values.map(lookup)
    return out


def _parse_numbers(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Store text columns whose every cell is a number as float64 (speed only).

    Only contract columns that must be numbers (session, items, scores) are parsed, and
    only when no cell would be lost: a column with any non-number stays text, so the
    ``not_a_number`` check still names its rows. Checks on float columns are vectorised,
    which matters for files of millions of rows.
    """
    out = frame
    for column in columns:
        series = frame[column]
        if series.dtype != object:
            continue
        numbers = as_numbers(series)
        if int(numbers.notna().sum()) == int(series.notna().sum()):
            if out is frame:
                out = frame.copy()
            out[column] = numbers
    return out


def _id_series(series: pd.Series) -> pd.Series:
    return value_texts(series).reindex(series.index)


def _duplicate_mask(frame: pd.DataFrame, keys: Sequence[str]) -> pd.Series:
    if not set(keys) <= set(frame.columns):
        # A key column is missing: reported as missing_column; checking duplicates on the
        # remaining keys would only report every row again.
        return pd.Series(True, index=frame.index)
    key = pd.DataFrame({k: _id_series(frame[k]) if k != "session" else as_numbers(frame[k])
                        for k in keys})
    # A row whose key is blank or not a number is reported as such (missing_value,
    # not_a_number); counting it as a copy of every other such row only repeated that
    # (sessions given as dates were "272 duplicate rows").
    return ~key.duplicated(keep=False) | key.isna().any(axis=1)


#: Said where client ids look numbered within each therapist (client 1 of one therapist
#: and client 1 of another): copies of client x session and clients with two therapists.
IDS_PER_THERAPIST = (
    "The alliance file uses the same client_id under several therapists, as when clients "
    "are numbered "
    "within each therapist (client 1 of one therapist and client 1 of another). Every "
    "client needs one id, unique across therapists and the same in every file (e.g. the "
    "therapist and client ids joined, T01-1); the outcome and clients files have no "
    "therapist_id to tell such clients apart."
)


def _ids_per_therapist(frame: pd.DataFrame, keys: Sequence[str]) -> bool:
    """Whether the rows that share their key (client x session) differ in therapist_id:
    client ids numbered within each therapist rather than copies of the same session."""
    if "therapist_id" not in frame.columns or "therapist_id" in keys:
        return False
    copies = ~_duplicate_mask(frame, keys)
    if not copies.any() or _one_therapist_mask(frame).all():
        return False
    still = ~_duplicate_mask(frame, [*keys, "therapist_id"])
    return int(still.sum()) * 2 < int(copies.sum())   # most copies told apart by therapist


def _one_therapist_mask(frame: pd.DataFrame) -> pd.Series:
    if not {"client_id", "therapist_id"} <= set(frame.columns):
        return pd.Series(True, index=frame.index)
    ids = pd.DataFrame({c: _id_series(frame[c]) for c in ("client_id", "therapist_id")})
    n = ids.groupby("client_id", dropna=True)["therapist_id"].transform("nunique")
    return ~(n > 1).reindex(frame.index, fill_value=False)


# -------------------------------------------------------------------------- file specs


@dataclass
class _Spec:
    """What one file must contain, decided from the instrument and the columns present."""

    role: str
    ids: list[str]
    keys: list[str]
    session: bool
    rater: bool
    numbers: dict[str, tuple[float, float, str]]
    one_therapist: bool = False
    ending: bool = False
    covariates: list[str] = field(default_factory=list)
    expectation: str = ""
    notes: list[str] = field(default_factory=list)
    extra_problems: list[tuple[str, str, str]] = field(default_factory=list)
    instrument: str = ""
    assumed_therapist: bool = False
    max_session: float = np.inf

    @property
    def columns(self) -> list[str]:
        """Output columns in order."""
        out = list(self.ids)
        if self.session:
            out.append("session")
        if self.rater:
            out.append("rater")
        if self.ending:
            out.append("ending")
        return out + list(self.numbers) + list(self.covariates)


def _item_mode(columns: Sequence[str], items: Sequence[str], scores: Sequence[str]) -> bool:
    """Items are used when any item column is present or no score column is."""
    return any(c in columns for c in items) or not any(c in columns for c in scores)


def _unknown_items(columns: Sequence[str], inst: Instrument) -> list[str]:
    pattern = re.compile(rf"{re.escape(inst.item_prefix.lower())}_?(\d+)")
    known = set(inst.item_columns)
    return [c for c in columns if pattern.fullmatch(c) and c not in known]


def _items_spec(spec: _Spec, columns: Sequence[str], inst: Instrument,
                scores: dict[str, tuple[float, float, str]]) -> None:
    items = inst.item_columns
    if _item_mode(columns, items, list(scores)):
        what = f"{inst.name} item range"
        spec.numbers = {c: (inst.item_min, inst.item_max, what) for c in items}
        ignored = [c for c in scores if c in columns]
        if ignored:
            spec.notes.append(
                f"{spec.role} file: pre-scored column(s) {', '.join(ignored)} ignored because "
                f"the item columns are present (scores are recomputed from the items)"
            )
    else:
        spec.numbers = dict(scores)
    for column in _unknown_items(columns, inst):
        spec.extra_problems.append((
            column, "unknown_item",
            f"the column looks like an item of {inst.key}, but {inst.name} has "
            f"{inst.n_items} items ({items[0]} to {items[-1]}). Is the instrument under "
            "instruments: in params.yaml the one that was administered? Otherwise rename "
            "or remove the column.",
        ))


def _alliance_spec(columns: Sequence[str], inst: Instrument) -> _Spec:
    spec = _Spec("alliance", ["client_id", "therapist_id"], ["client_id", "session"], True,
                 "rater" in columns, {}, one_therapist=True, instrument=inst.key)
    near_miss = difflib.get_close_matches("therapist_id", list(columns), n=1, cutoff=0.75)
    if "therapist_id" not in columns and not near_miss:
        # No therapist id at all (not a misspelt one): one therapist is assumed and said.
        spec.ids = ["client_id"]
        spec.one_therapist = False
        spec.assumed_therapist = True
    if spec.rater:
        spec.keys.append("rater")
    scores: dict[str, tuple[float, float, str]] = {}
    for name, its in inst.subscales.items():
        lo, hi = inst.item_min, inst.item_max
        if inst.score == "sum":
            lo, hi = len(its) * lo, len(its) * hi
        scores[name] = (lo, hi, f"pre-scored {inst.key} {name} range")
    _items_spec(spec, columns, inst, scores)
    spec.expectation = (
        f"The alliance file needs client_id, therapist_id, session and either the item "
        f"columns {inst.item_columns[0]} ... {inst.item_columns[-1]} or the pre-scored "
        f"{', '.join(inst.subscales)}."
    )
    return spec


def _outcome_spec(columns: Sequence[str], inst: Instrument) -> _Spec:
    spec = _Spec("outcome", ["client_id"], ["client_id", "session"], True, False, {},
                 instrument=inst.key)
    lo, hi = outcome_range(inst)
    _items_spec(spec, columns, inst, {inst.key: (lo, hi, f"{inst.name} score range")})
    spec.expectation = (
        f"The outcome file needs client_id, session and either the item columns "
        f"{inst.item_columns[0]} ... {inst.item_columns[-1]} or the pre-scored total "
        f"{inst.key}."
    )
    return spec


def _clients_spec(columns: Sequence[str], covariates: Sequence[str] | None) -> _Spec:
    spec = _Spec("clients", ["client_id"], ["client_id"], False, False, {},
                 ending="ending" in columns)
    if covariates is None:
        reserved = {"client_id", "therapist_id", "session", "rater", "ending"}
        spec.covariates = [c for c in columns if c not in reserved]
    else:
        spec.covariates = [c for c in covariates if c != "ending"]
    spec.expectation = (
        "The clients file needs client_id and the covariates"
        + (f" {', '.join(covariates)}" if covariates else "")
        + " (validation.covariates in params.yaml)."
    )
    return spec


# ------------------------------------------------------------------------------ schema


def _check(fn: Callable[[Any], pd.Series], name: str) -> pa.Check:
    return pa.Check(fn, name=name, ignore_na=True)


def _is_whole(s: pd.Series) -> pd.Series:
    x = as_numbers(s)
    return (x % 1 == 0) | x.isna()


def _not_below_1(s: pd.Series) -> pd.Series:
    return ~(as_numbers(s) < 1)


def _not_above(limit: float) -> Callable[[pd.Series], pd.Series]:
    def check(s: pd.Series) -> pd.Series:
        return ~(as_numbers(s) > limit)

    return check


def _is_rater(s: pd.Series) -> pd.Series:
    return s.map(lambda v: str(v).strip().lower() in RATERS).astype(bool)


def _is_ending(s: pd.Series) -> pd.Series:
    return s.map(lambda v: str(v).strip().lower() in ENDINGS).astype(bool)


def _in_range(lo: float, hi: float) -> Callable[[pd.Series], pd.Series]:
    def check(s: pd.Series) -> pd.Series:
        x = as_numbers(s)
        return ~((x < lo) | (x > hi))

    return check


def _unique_rows(keys: Sequence[str]) -> Callable[[pd.DataFrame], pd.Series]:
    def check(frame: pd.DataFrame) -> pd.Series:
        return _duplicate_mask(frame, keys)

    return check


def build_schema(spec: _Spec) -> pa.DataFrameSchema:
    """Declare the pandera schema of one input file.

    Parameters
    ----------
    spec
        What the file must contain (from the instrument definition and the columns
        present; see ``_alliance_spec``, ``_outcome_spec``, ``_clients_spec``).

    Returns
    -------
    pandera.DataFrameSchema
        Columns are validated as read (text or stored numbers): every check parses
        numbers itself, so a non-number is reported once under ``not_a_number`` and the
        other checks of that cell pass.
    """
    is_number = _check(lambda s: as_numbers(s).notna(), "not_a_number")
    columns: dict[str, pa.Column] = {}
    for name in spec.ids:
        columns[name] = pa.Column(nullable=False, required=True)
    if spec.session:
        columns["session"] = pa.Column(
            nullable=False,
            checks=[
                is_number,
                _check(_is_whole, "not_whole_number"),
                _check(_not_below_1, "session_below_1"),
                _check(_not_above(spec.max_session), "session_too_large"),
            ],
        )
    if spec.rater:
        columns["rater"] = pa.Column(
            nullable=False,
            checks=[_check(_is_rater, "invalid_rater")],
        )
    if spec.ending:
        columns["ending"] = pa.Column(nullable=True,
                                      checks=[_check(_is_ending, "invalid_ending")])
    for name, (lo, hi, _) in spec.numbers.items():
        columns[name] = pa.Column(
            nullable=True,
            checks=[is_number, _check(_in_range(lo, hi), "out_of_range")],
        )
    for name in spec.covariates:
        columns[name] = pa.Column(nullable=True, required=True)
    checks = [_check(_unique_rows(spec.keys), "duplicate_row")]
    if spec.one_therapist:
        checks.append(_check(_one_therapist_mask, "several_therapists"))
    return pa.DataFrameSchema(columns, checks=checks, strict=False, name=f"{spec.role} file")


# ----------------------------------------------------------------------------- messages


def _message(rule: str, column: str | None, n: int, spec: _Spec,
             ids_per_therapist: bool = False) -> str:
    one = n == 1
    rows, have = ("1 row", "has") if one else (f"{n} rows", "have")
    if rule == "missing_value":
        return f"{rows} {have} no {column}. Every row needs one; fill it in or delete the row."
    if rule == "not_a_number" and column == "session":
        return (
            f"{rows} {have} a session that is not a number. Sessions are numbered 1, 2, 3, "
            "... per client; if your export gives session dates, number each client's "
            "sessions in date order and leave the dates out (dates identify people)."
        )
    if rule == "not_a_number":
        return (
            f"{rows} {have} something other than a number in this column (text, a "
            "missing-value code written as text, or a decimal comma). Use digits with a "
            "decimal point; leave a missing answer blank."
        )
    if rule == "not_whole_number":
        return f"{rows} {have} a session that is not a whole number. Sessions are 1, 2, 3, ..."
    if rule == "session_below_1":
        return (
            f"{rows} {have} a session below 1. Sessions are counted from 1; if your export "
            "counts from 0, add 1 to every session."
        )
    if rule == "out_of_range":
        lo, hi, what = spec.numbers[str(column)]
        return (
            f"{rows} {have} a value outside the {what} {lo:g} to {hi:g}. Look for "
            "missing-value codes such as -99 or 999 (leave missing answers blank), a "
            "different answer scale, or the wrong instrument under instruments: in params.yaml."
        )
    if rule == "session_too_large":
        return (
            f"{rows} {have} a session number above {spec.max_session:g} "
            "(validation.max_session). Such a number is usually a date, a code or a typing "
            "error (1e20 would not even fit a whole number). Correct the session, or raise "
            "validation.max_session in params.yaml if the therapy really was that long."
        )
    if rule == "invalid_rater":
        return f"{rows} {have} a rater other than {' or '.join(RATERS)}."
    if rule == "invalid_ending":
        return (f"{rows} {have} an ending other than {', '.join(ENDINGS)}. Recode it (e.g. "
                "dropout as unplanned), or leave it blank when unknown (data/README.md).")
    if rule == "duplicate_row":
        key = " x ".join(spec.keys)
        # ids numbered within each therapist: not copies, one id for several clients
        advice = (IDS_PER_THERAPIST if ids_per_therapist else
                  "Delete exact copies; otherwise correct the session (or rater) of the rows.")
        return (
            f"{rows} {'shares its' if one else 'share their'} {key} with another row; each "
            f"{key} may appear once. {advice}"
        )
    if rule == "several_therapists":
        return (
            f"{rows} {'belongs' if one else 'belong'} to clients recorded with more than one "
            "therapist_id. The models need each client seen by one therapist"
            + (". " + IDS_PER_THERAPIST if ids_per_therapist else
               ": correct the therapist_id, or give the client a separate client_id per "
               "therapist.")
        )
    return RULE_TEXT.get(rule, rule)


def registered_instrument_hint(present: Sequence[str], role: str,
                               configured: str) -> str:
    """Name the registered instrument whose item columns the file has, if not the configured one.

    Parameters
    ----------
    present
        The file's (normalised) column names.
    role
        ``"alliance"`` or ``"outcome"`` (the instrument kind, and the ``instruments:`` key).
    configured
        The instrument key set in ``params.yaml``.

    Returns
    -------
    str
        E.g. ``"The file has the item columns of the Working Alliance Inventory - Short form
        (client) (wai_s_1 ... wai_s_12): set instruments.alliance: wai_s in params.yaml."``,
        or ``""`` when no other registered instrument has at least half its items present.
    """
    columns = set(present)
    best: tuple[float, str, Instrument] | None = None
    for key in available_instruments():
        if key == configured:
            continue
        try:
            inst = load_instrument(key)
        except Exception:  # a broken registry file is reported where it is used
            continue
        if inst.kind != role:
            continue
        share = sum(c in columns for c in inst.item_columns) / inst.n_items
        if share >= 0.5 and (best is None or share > best[0]):
            best = (share, key, inst)
    if best is None:
        return ""
    _, key, inst = best
    return (f"The file has the item columns of {inst.name} ({inst.item_columns[0]} ... "
            f"{inst.item_columns[-1]}): set instruments.{role}: {key} in params.yaml.")


def _header_row(frame: pd.DataFrame, missing: Sequence[str], look: int = 20) -> int | None:
    """The data row (from 1) that holds the missing column names, when the file's header
    is not its first row (a title or blank rows above it, as spreadsheet exports have)."""
    wanted = set(missing)
    for label, row in frame.head(look).iterrows():   # the index holds data row numbers
        names = {_column_name(v) for v in row if isinstance(v, str) and v.strip()}
        if len(wanted & names) >= max(1, (len(wanted) + 1) // 2):
            return int(str(label))
    return None


def _missing_columns_problem(file: str, missing: list[str], present: Sequence[str],
                             spec: _Spec, frame: pd.DataFrame | None = None) -> Problem:
    header = _header_row(frame, missing) if frame is not None else None
    if header is not None:
        return Problem(
            file, ", ".join(missing), [header], "missing_column",
            f"required column{'s' if len(missing) > 1 else ''} missing from the first row: "
            f"{', '.join(missing)}. The column names are in data row {header}: the header "
            "must be the file's first row. Delete the rows above it (a title, notes or "
            "blank rows) and export again.")
    other = ""
    if spec.role in ("alliance", "outcome") and spec.instrument:
        other = registered_instrument_hint(present, spec.role, spec.instrument)
    if other:
        text = (f"required column{'s' if len(missing) > 1 else ''} missing: "
                f"{', '.join(missing)}. {other}")
        return Problem(file, ", ".join(missing), [], "missing_column", text)
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, list(present), n=1, cutoff=0.75)
        if close:
            hints.append(f"'{close[0]}' for {name}?")
    text = (
        f"required column{'s' if len(missing) > 1 else ''} missing: {', '.join(missing)}. "
        + spec.expectation
    )
    if hints:
        text += " Did you mean " + "; ".join(hints) + " (rename the column)."
    return Problem(file, ", ".join(missing), [], "missing_column", text)


# ------------------------------------------------------------------------------- state


@dataclass
class _Run:
    """Problems, checks and warnings collected over all files."""

    max_examples: int
    problems: list[Problem] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the alliance file uses one client_id under several therapists (ids numbered within
    #: each therapist): said again where the outcome or clients file has copies
    ids_per_therapist: bool = False

    def check(self, check: str, file: str, status: str, n: int, detail: str) -> None:
        self.rows.append(
            {"check": check, "file": file, "status": status, "n": int(n), "detail": detail}
        )

    def problem(self, file: str, column: str | None, rows: Sequence[Any], rule: str,
                message: str, row_note: str = "") -> None:
        ordered = sorted(int(r) for r in rows)
        self.problems.append(
            Problem(file, column, ordered[: self.max_examples], rule, message,
                    count=len(ordered), row_note=row_note)
        )

    def warn(self, check: str, file: str, n: int, text: str) -> None:
        self.warnings.append(text)
        self.check(check, file, "warn", n, text)

    def table(self) -> pd.DataFrame:
        columns = ["check", "file", "status", "n", "detail"]
        return pd.DataFrame(self.rows, columns=columns).astype({"n": "int64"})


@dataclass
class _File:
    role: str
    path: str
    frame: pd.DataFrame
    spec: _Spec
    row_note: str


# --------------------------------------------------------------------------- per file


def _prepare(role: str, path: str, run: _Run) -> pd.DataFrame | None:
    """Read one file, normalise column names and drop blank rows (counted)."""
    try:
        raw = read_table(path)
    except InputError as exc:
        run.problems.extend(exc.problems)
        for p in exc.problems:
            run.check(p.rule, role, "fail", 0, p.message)
        return None
    for note in raw.attrs.get("notes", []):
        run.warn("how_read", role, 0, f"{role} file: {note}")
    renamed = {c: _column_name(c) for c in raw.columns}
    names = list(renamed.values())
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        sources = [c for c in raw.columns if renamed[c] in clashes]
        run.problem(
            path, ", ".join(sources), [], "duplicate_column",
            f"columns {', '.join(sources)} become the same name after ignoring case, spaces "
            "and hyphens. Rename or delete the copies.",
        )
        run.check("duplicate_column", role, "fail", len(sources), "column names unique")
        return None
    frame = _blank_to_missing(raw.rename(columns=renamed))
    frame.attrs = dict(raw.attrs)
    frame.attrs["value_labels"] = {
        renamed.get(k, k): v for k, v in raw.attrs.get("value_labels", {}).items()
    }
    frame.attrs["source_names"] = {new: old for old, new in renamed.items() if old != new}
    n_renamed = sum(1 for old, new in renamed.items() if old != new)
    if n_renamed:
        run.check("column_names_normalised", role, "info", n_renamed,
                  "column names matched ignoring case, spaces, hyphens and dots")
    blank = frame.isna().all(axis=1)
    run.check("rows_read", role, "info", int((~blank).sum()), "data rows read")
    if blank.any():
        run.check("blank_rows", role, "info", int(blank.sum()), "blank rows ignored")
    kept = frame[~blank]
    kept.attrs = frame.attrs
    return kept


def _schema_problems(item: _File, run: _Run) -> None:
    """Validate one file with its pandera schema; turn failure cases into problems."""
    frame, spec, path = item.frame, item.spec, item.path
    for column, rule, message in spec.extra_problems:
        run.problem(path, column, [], rule, message)
    if spec.role != "clients":
        n_unknown = len(spec.extra_problems)
        run.check("unknown_item", spec.role, "fail" if n_unknown else "pass", n_unknown,
                  RULE_TEXT["unknown_item"])
    schema = build_schema(spec)
    failures = pd.DataFrame(columns=["schema_context", "column", "check", "failure_case", "index"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        failures = exc.failure_cases
    missing = failures.loc[failures["check"] == "column_in_dataframe", "failure_case"]
    missing_columns = [str(c) for c in missing]
    if missing_columns:
        run.problems.append(
            _missing_columns_problem(path, missing_columns, list(frame.columns), spec, frame)
        )
    run.check("missing_column", spec.role, "fail" if missing_columns else "pass",
              len(missing_columns), RULE_TEXT["missing_column"])
    counts: dict[str, int] = {}
    column_order = {c: i for i, c in enumerate(spec.columns)}
    column_failures = failures[failures["schema_context"] == "Column"].copy()
    column_failures["rule"] = column_failures["check"].replace({"not_nullable": "missing_value"})
    column_failures["order"] = column_failures["column"].map(column_order)
    for (_, failed_column, failed_rule), group in column_failures.groupby(
        ["order", "column", "rule"], sort=True
    ):
        name, rule = str(failed_column), str(failed_rule)
        rows = sorted({int(i) for i in group["index"].dropna()})
        run.problem(path, name, rows, rule, _message(rule, name, len(rows), spec),
                    item.row_note)
        counts[rule] = counts.get(rule, 0) + len(rows)
    frame_checks: list[tuple[str, Callable[[pd.DataFrame], pd.Series], str]] = [
        ("duplicate_row", _unique_rows(spec.keys), ", ".join(spec.keys)),
    ]
    if spec.one_therapist:
        frame_checks.append(("several_therapists", _one_therapist_mask,
                             "client_id, therapist_id"))
    failed = set(failures.loc[failures["schema_context"] == "DataFrameSchema", "check"])
    if "duplicate_row" in failed and _ids_per_therapist(frame, spec.keys):
        run.ids_per_therapist = True
    for rule, mask_fn, column in frame_checks:
        if rule in failed:
            rows = list(frame.index[~mask_fn(frame).to_numpy()])
            message = _message(rule, column, len(rows), spec,
                               ids_per_therapist=run.ids_per_therapist)
            run.problem(path, column, rows, rule, message, item.row_note)
            counts[rule] = len(rows)
    rules = ["missing_value"]
    if spec.session:
        rules += ["not_whole_number", "session_below_1", "session_too_large"]
    if spec.session or spec.numbers:
        rules.insert(1, "not_a_number")
    if spec.numbers:
        rules.append("out_of_range")
    if spec.rater:
        rules.append("invalid_rater")
    if spec.ending:
        rules.append("invalid_ending")
    rules += [rule for rule, _, _ in frame_checks]
    for rule in rules:
        n = counts.get(rule, 0)
        run.check(rule, spec.role, "fail" if n else "pass", n, RULE_TEXT[rule])


def _anonymity(item: _File, run: _Run, settings: _Settings, rules: Any) -> None:
    spec = item.spec
    contract = set(spec.ids) | set(spec.numbers) | {"session", "rater"}
    source = item.frame.attrs.get("source_names") or {}
    headers = [str(source.get(c, c)) for c in item.frame.columns]
    header_problems = check_headers(headers, item.path, rules)
    refused = [item.frame.columns[int(p.column.split()[1]) - 1] for p in header_problems
               if p.column]
    item.frame.attrs["refused_headers"] = sorted(set(refused))
    run.problems.extend(header_problems)
    run.check("anonymity_headers", spec.role, "fail" if refused else "pass",
              len(set(refused)), RULE_TEXT["anonymity_headers"])
    problems = check_anonymity(
        item.frame, item.path, rules,
        allow_columns=(*settings.allow_columns, *refused),
        contract_columns=contract,
        max_examples=settings.max_examples,
        row_note=item.row_note,
        value_labels=item.frame.attrs.get("value_labels"),
        source_names=item.frame.attrs.get("source_names"),
    )
    run.problems.extend(problems)
    by_name = {p.column for p in problems if p.rule.startswith("name:")}
    by_content = {p.column for p in problems if p.rule.startswith("content:")}
    run.check("anonymity_names", spec.role, "fail" if by_name else "pass", len(by_name),
              RULE_TEXT["anonymity_names"])
    run.check("anonymity_content", spec.role, "fail" if by_content else "pass",
              len(by_content), RULE_TEXT["anonymity_content"])
    if spec.covariates:
        labels = item.frame.attrs.get("value_labels", {})
        # A column already refused by a name or content rule is reported once, not twice.
        done = by_name | by_content
        present = [c for c in spec.covariates if c in item.frame.columns and c not in refused
                   and str(source.get(c, c)) not in done]
        labelled = pd.DataFrame({c: _covariate(item.frame[c], labels.get(c)) for c in present},
                                index=item.frame.index)
        cov_problems, continuous = check_covariates(
            labelled, present, item.path, rules,
            declared=settings.covariate_levels,
            allow_columns=settings.allow_columns,
            max_examples=settings.max_examples,
            row_note=item.row_note,
            source_names=source,
        )
        item.frame.attrs["continuous"] = continuous
        run.problems.extend(cov_problems)
        failed = {p.column for p in cov_problems}
        run.check("covariate_categories", spec.role, "fail" if failed else "pass",
                  len(failed), RULE_TEXT["covariate_categories"])


def _unused_columns(item: _File, run: _Run) -> None:
    keep = set(item.spec.columns) | set(item.frame.attrs.get("refused_headers", []))
    unused = [c for c in item.frame.columns if c not in keep]
    if unused:
        run.warn(
            "unused_columns", item.role, len(unused),
            f"{item.role} file: {len(unused)} column(s) not part of the input contract, not "
            f"used: {', '.join(unused)}",
        )
    for note in item.spec.notes:
        run.warn("prescored_ignored", item.role, 0, note)


# --------------------------------------------------------------------------- normalise


def _normalise(item: _File) -> pd.DataFrame:
    spec, frame = item.spec, item.frame
    out = pd.DataFrame(index=frame.index)
    for column in spec.columns:
        if column in spec.ids:
            out[column] = _id_series(frame[column]).astype(object)
        elif column == "session":
            out[column] = as_numbers(frame[column]).astype("int64")
        elif column in ("rater", "ending"):
            out[column] = frame[column].map(
                lambda v: str(v).strip().lower() if pd.notna(v) else v)
        elif column in spec.numbers:
            out[column] = as_numbers(frame[column])
        else:
            out[column] = _covariate(frame[column],
                                     frame.attrs.get("value_labels", {}).get(column))
    if spec.assumed_therapist:
        out.insert(1, "therapist_id", ASSUMED_THERAPIST)
    order = [c for c in ("client_id", "session", "rater") if c in out.columns]
    return out.sort_values(order, kind="mergesort").reset_index(drop=True)


def _covariate(series: pd.Series, labels: Mapping[Any, str] | None) -> pd.Series:
    """A covariate: SPSS/Stata codes replaced by their labels; numbers kept if all are."""
    if labels:
        series = series.map(lambda v: labels.get(v, v) if pd.notna(v) else v)
    numbers = as_numbers(series)
    if numbers.notna().sum() == series.notna().sum():
        return numbers
    return value_texts(series).reindex(series.index).astype(object)


# ------------------------------------------------------------------------- cross-file


def _id_key(text: str) -> str:
    """An id with case, surrounding spaces and the leading zeros of digit runs ignored."""
    return re.sub(r"(?<!\d)0+(?=\d)", "", text.strip().casefold())


def _written_differently(orphans: pd.Series, alliance_ids: set[str]) -> pd.Series:
    """Which ids absent from the alliance file match one of its ids up to :func:`_id_key`."""
    keys = {_id_key(str(i)) for i in alliance_ids}
    return orphans.map(lambda v: _id_key(str(v)) in keys).astype(bool)


def _cross_checks(files: Mapping[str, _File], run: _Run) -> None:
    """Client ids across files: counted and warned about, fatal only if none match."""
    alliance = files.get("alliance")
    if alliance is None or "client_id" not in alliance.frame.columns:
        return
    alliance_ids = set(_id_series(alliance.frame["client_id"]).dropna())
    for role in ("outcome", "clients"):
        other = files.get(role)
        if other is None or "client_id" not in other.frame.columns:
            continue
        ids = _id_series(other.frame["client_id"])
        orphan = ids.notna() & ~ids.isin(alliance_ids)
        n_rows, n_clients = int(orphan.sum()), int(ids[orphan].nunique())
        near = _written_differently(ids[orphan], alliance_ids)
        if near.any():
            rows = list(ids[orphan][near].index)
            run.problem(
                other.path, "client_id", rows, "ids_written_differently",
                f"{_n(int(ids[orphan][near].nunique()), 'client_id')} of the {role} file "
                "match a client_id of the alliance file only when leading zeros, case or "
                "spaces are ignored (e.g. 7 and 007, or c12 and C12): those clients would "
                "silently lose their " + ("outcome" if role == "outcome" else "covariates")
                + ". Write the ids the same way in every file (a spreadsheet drops leading "
                "zeros: format the id column as text before exporting).",
                other.row_note,
            )
            run.check("ids_written_differently", role, "fail", len(rows),
                      RULE_TEXT["ids_written_differently"])
            continue
        if alliance_ids and n_rows and n_rows == int(ids.notna().sum()):
            run.problem(
                other.path, "client_id", [], "ids_do_not_match",
                f"none of the {_n(n_clients, 'client')} of the {role} file has a client_id "
                "that occurs in the alliance file. Are the ids written the same way in both "
                "files (same prefix, leading zeros, case)?",
            )
            run.check("ids_do_not_match", role, "fail", n_rows, "client ids match alliance")
            continue
        if n_rows:
            run.warn(
                "no_alliance_rows", role, n_rows,
                f"{role} file: {_n(n_rows, 'row')} ({_n(n_clients, 'client')}) of clients "
                "with no alliance rows; kept, but they cannot enter the alliance models",
            )
        else:
            run.check("no_alliance_rows", role, "pass", 0, "every client has alliance rows")
        absent = len(alliance_ids - set(ids.dropna()))
        check = "no_outcome_rows" if role == "outcome" else "no_clients_row"
        if absent and role == "outcome":
            run.warn(check, "alliance", absent,
                     f"alliance file: {_n(absent, 'client')} without outcome rows; they "
                     "cannot enter the models")
        elif absent:
            run.warn(check, "clients", absent,
                     f"clients file: no row for {_n(absent, 'client')} of the alliance file; "
                     "their covariates are missing")
        else:
            run.check(check, "alliance" if role == "outcome" else "clients", "pass", 0,
                      f"every alliance client has {role} data")


def _analysable(files: Mapping[str, _File], run: _Run) -> None:
    """Something to analyse: client ratings, and sessions with both alliance and outcome.

    Checked only when every other check passed (otherwise it would repeat them). Without
    either, every later step had nothing to work with (describe stopped with a traceback).
    """
    alliance = files.get("alliance")
    if alliance is None or run.problems:
        return
    frame = alliance.frame
    by_client = pd.Series(True, index=frame.index)
    if "rater" in frame.columns:
        by_client = frame["rater"].map(lambda v: str(v).strip().lower() == "client")
        if not by_client.any():
            run.problem(
                alliance.path, "rater", [], "no_client_ratings",
                "no row is rated by the client (rater = client): every rating is the "
                "therapist's. The analysis plan's models use the clients' ratings (therapist "
                "ratings are compared with them). Add the clients' ratings; if these rows ARE "
                "the clients' ratings, set their rater to client.")
            run.check("no_client_ratings", "alliance", "fail", len(frame),
                      RULE_TEXT["no_client_ratings"])
            return
    outcome = files.get("outcome")
    if outcome is None:
        return

    def pairs(item: _File) -> pd.DataFrame:
        return pd.DataFrame({"client_id": _id_series(item.frame["client_id"]),
                             "session": as_numbers(item.frame["session"])})

    common = pairs(alliance)[by_client.to_numpy()].merge(
        pairs(outcome).drop_duplicates(), on=["client_id", "session"])
    if common.empty:
        run.problem(
            outcome.path, "session", [], "no_common_sessions",
            "no client x session of the outcome file has a client's alliance rating of the "
            "same session: the models relate the alliance at a session to the outcome at "
            "that session. Are the sessions numbered the same way in both files (e.g. the "
            "outcome counted from 0, or a baseline numbered differently)?")
        run.check("no_common_sessions", "outcome", "fail", len(outcome.frame),
                  RULE_TEXT["no_common_sessions"])


def _rater_form(item: _File, inst: Instrument, run: _Run,
                therapist: Instrument | None = None) -> None:
    if not item.spec.rater or not inst.rater:
        return
    raters = item.frame["rater"].map(lambda v: str(v).strip().lower())
    other = raters.ne(inst.rater) & item.frame["rater"].notna()
    if therapist is not None and inst.rater == "client":
        n = int(raters.eq("therapist").sum())
        run.check("rater_form", "alliance", "info", n,
                  f"therapist-rated rows scored with the therapist form {therapist.key}")
        other &= raters.ne("therapist")
    if other.any():
        run.warn(
            "rater_form", "alliance", int(other.sum()),
            f"alliance file: {int(other.sum())} rows are rated by someone other than the "
            f"{inst.rater}, but {inst.key} is the {inst.rater} form; they are scored with "
            "its key. Use a separate run with the matching instrument if that is wrong",
        )


def session_steps(frame: pd.DataFrame) -> np.ndarray:
    """The steps between each client's consecutive session numbers (1 = the next session).

    One value per client x session (raters alike); rows whose session is not a whole
    number of at least 1 are left out (reported by their own rules).
    """
    if not {"client_id", "session"} <= set(frame.columns):
        return np.array([], dtype=float)
    rows = pd.DataFrame({"client_id": _id_series(frame["client_id"]),
                         "session": as_numbers(frame["session"])}).dropna()
    rows = rows[(rows["session"] >= 1) & (rows["session"] % 1 == 0)].drop_duplicates()
    rows = rows.sort_values(["client_id", "session"])
    steps = rows.groupby("client_id", sort=False)["session"].diff().dropna()
    return steps.to_numpy(dtype=float)


def _session_numbering(item: _File, run: _Run) -> None:
    """Warn when most steps between a client's consecutive sessions skip a number.

    Sessions are counted 1, 2, 3, ... (data/README.md); a missed session leaves a gap of
    one now and then. When the median step is two or more, the numbers are more likely
    weeks, days or appointment slots: time = session - 1 would then give the change per
    week (a weekly-numbered fortnightly therapy halves every change "per session"), and
    the rupture windows and bridged gaps would count weeks.
    """
    steps = session_steps(item.frame)
    if not len(steps) or float(np.median(steps)) < 2:
        run.check("session_numbering", "alliance", "pass", 0,
                  "consecutive sessions mostly numbered one apart")
        return
    jumps = int((steps >= 2).sum())
    run.warn(
        "session_numbering", "alliance", jumps,
        f"alliance file: the session number jumps by two or more between most consecutive "
        f"rated sessions of a client ({jumps:,} of {len(steps):,} steps; median step "
        f"{float(np.median(steps)):g}). Sessions must be counted 1, 2, 3, ... in order: if "
        "these numbers are weeks, days or appointment slots, the change per session, the "
        "lagged model and the rupture windows are computed per week (or day). Number each "
        "client's sessions in order; if many sessions were really missed, this warning can "
        "be ignored",
    )


def _k_anonymity(clients: pd.DataFrame, covariates: Sequence[str], k: int,
                 run: _Run, continuous: Sequence[str] = ()) -> pd.DataFrame | None:
    if continuous:
        run.check("k_anonymity_withheld", "clients", "info", len(continuous),
                  f"{len(continuous)} numeric covariate(s) with many different values: used "
                  "in the models, values not tabulated")
    covariates = [c for c in covariates if c not in set(continuous)]
    if not covariates:
        return None
    table = k_anonymity_table(clients, covariates)
    rare = rare_combinations(table, k)
    if len(rare):
        run.warn(
            "k_anonymity", "clients", int(rare["n_clients"].sum()),
            f"clients file: {len(rare)} of {len(table)} combinations of "
            f"{' x '.join(covariates)} are shared by fewer than {k} clients "
            f"({int(rare['n_clients'].sum())} clients in all). Such clients could be singled "
            "out: merge rare categories, or do not publish tables split by these covariates",
        )
    else:
        run.check("k_anonymity", "clients", "pass", 0,
                  f"every combination of covariates shared by at least {k} clients")
    return table


# ------------------------------------------------------------------------------- main


def validate_inputs(
    paths: Mapping[str, str | None],
    alliance_instrument: Instrument,
    outcome_instrument: Instrument | None,
    settings: Mapping[str, Any] | None = None,
    therapist_instrument: Instrument | None = None,
    progress: Callable[[str], None] | None = None,
) -> ValidatedInputs:
    """Read, check and normalise the input files.

    Parameters
    ----------
    paths
        ``{"alliance": ..., "outcome": ..., "clients": ...}``; ``outcome`` and ``clients``
        may be ``None`` or ``""`` (no such file: an alliance-only analysis, no
        covariates).
    alliance_instrument, outcome_instrument
        The instruments named in ``params.yaml`` (:func:`pipeline.instruments.load_instrument`);
        ``outcome_instrument`` may be ``None`` when there is no outcome file.
    settings
        The ``validation:`` block of ``params.yaml``; see :data:`DEFAULT_SETTINGS`.
    therapist_instrument
        The therapist form used for rows with ``rater`` = ``therapist`` (e.g. ``wai_s_t``
        beside ``wai_s``). Its items are read from the same columns as the client form's
        (one layout for both raters, see ``data/README.md``), so it must have the same
        number of items and answer range.
    progress
        Called with a short line after each long step (file read, guard, schema), so a
        file of millions of rows does not run silently; e.g. the CLI's logger.

    Returns
    -------
    ValidatedInputs

    Raises
    ------
    InputError
        With every problem found in every file (``str()`` is the report to show). Its
        ``checks`` attribute holds the checks table so far.
    SettingsError
        When the therapist form does not fit the client form's columns.
    """
    if therapist_instrument is not None and (
        therapist_instrument.n_items != alliance_instrument.n_items
        or (therapist_instrument.item_min, therapist_instrument.item_max)
        != (alliance_instrument.item_min, alliance_instrument.item_max)
    ):
        raise SettingsError(
            f"params.yaml instruments.alliance_therapist: {therapist_instrument.key} has "
            f"{therapist_instrument.n_items} items on "
            f"{therapist_instrument.item_min:g}-{therapist_instrument.item_max:g}, but "
            f"{alliance_instrument.key} has {alliance_instrument.n_items} on "
            f"{alliance_instrument.item_min:g}-{alliance_instrument.item_max:g} [rule "
            "therapist_form]. Both forms are read from the same item columns: choose the "
            "therapist form of the same questionnaire."
        )
    def say(message: str) -> None:
        if progress is not None:
            progress(message)

    notes: list[str] = []
    setting_problems: list[Problem] = []
    cfg = _settings(settings, setting_problems, notes)
    run = _Run(cfg.max_examples, problems=setting_problems)
    for note in notes:
        run.warn("settings", "params.yaml", 0, note)
    rules = load_rules(cfg.anonymity_rules)
    def outcome_spec(cols: Sequence[str]) -> _Spec:
        if outcome_instrument is None:
            raise SettingsError("params.yaml instruments.outcome: an outcome file is named "
                                "but no outcome instrument [rule missing_setting]. Name the "
                                "questionnaire's key, e.g. swemwbs.")
        return _outcome_spec(cols, outcome_instrument)

    specs: dict[str, Callable[[Sequence[str]], _Spec]] = {
        "alliance": lambda cols: _alliance_spec(cols, alliance_instrument),
        "outcome": outcome_spec,
        "clients": lambda cols: _clients_spec(cols, cfg.covariates),
    }
    files: dict[str, _File] = {}
    for role in ROLES:
        path = paths.get(role)
        if not path:
            if role == "outcome":
                run.check("no_outcome_file", "outcome", "info", 0,
                          "no outcome file: an alliance-only analysis")
            elif role != "clients":
                run.problem("params.yaml", f"data.{role}", [], "missing_path",
                            f"no {role} file is named under data: in params.yaml.")
            continue
        step = time.perf_counter()
        frame = _prepare(role, str(path), run)
        if frame is None:
            continue
        say(f"{role} file read: {len(frame):,} rows, {frame.shape[1]} columns "
            f"({time.perf_counter() - step:.1f} s)")
        spec = specs[role](list(frame.columns))
        spec.max_session = float(cfg.max_session)
        frame = _parse_numbers(frame, [c for c in (["session"] if spec.session else [])
                                       + list(spec.numbers) if c in frame.columns])
        item = _File(role, str(path), frame, spec, str(frame.attrs.get("row_note", "")))
        step = time.perf_counter()
        _anonymity(item, run, cfg, rules)
        say(f"{role} file: anonymisation guard done ({time.perf_counter() - step:.1f} s)")
        step = time.perf_counter()
        _schema_problems(item, run)
        _unused_columns(item, run)
        say(f"{role} file: contract checks done ({time.perf_counter() - step:.1f} s)")
        files[role] = item
    present = {c for item in files.values() for c in item.frame.columns}
    for name in cfg.allow_columns:
        if name not in present:
            run.warn("allow_columns", "params.yaml", 0,
                     f"validation.allow_columns lists '{name}', which no input file has")
    if "alliance" in files:
        _rater_form(files["alliance"], alliance_instrument, run, therapist_instrument)
        _session_numbering(files["alliance"], run)
        if files["alliance"].spec.assumed_therapist:
            run.warn("no_therapist_id", "alliance", 0,
                     "alliance file: no therapist_id column, so all clients are assumed to be "
                     "seen by one therapist; differences between therapists cannot be "
                     "estimated")
    _cross_checks(files, run)
    _analysable(files, run)
    if run.problems:
        read_notes = [r["detail"] for r in run.rows if r["check"] == "how_read"]
        raise InputError(run.problems, checks=run.table(), notes=read_notes)
    alliance = _normalise(files["alliance"])
    outcome = _normalise(files["outcome"]) if "outcome" in files else None
    clients = _normalise(files["clients"]) if "clients" in files else None
    table = None
    if clients is not None:
        table = _k_anonymity(clients, files["clients"].spec.covariates, cfg.k_anonymity, run,
                             files["clients"].frame.attrs.get("continuous", []))
    return ValidatedInputs(alliance, outcome, clients, run.table(), run.warnings, table)


__all__ = [
    "DEFAULT_SETTINGS",
    "RATERS",
    "ROLES",
    "InputError",
    "Problem",
    "ValidatedInputs",
    "as_numbers",
    "build_schema",
    "validate_inputs",
]
