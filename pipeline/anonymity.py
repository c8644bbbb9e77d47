"""Anonymisation guard: refuse input data that identifies people.

Two kinds of evidence are checked, both kept as data in ``anonymity_rules.yaml``:

* column **names** that announce identifying data (``first_name``, ``email``,
  ``date_of_birth``, ``nhs_number``, ``notes`` ...);
* column **content**: e-mail addresses, phone numbers, UK postcodes, US ZIP codes,
  10-digit numbers such as NHS numbers, US social security numbers, calendar dates
  (as text or stored as dates), personal names and free text.

A refused column can be allowed only by listing its name in ``validation.allow_columns``
in ``params.yaml``. Messages name the file, column, rule and example row numbers, never a
cell's value.

The module also builds the k-anonymity table of client covariates: how many clients share
each combination of covariate values.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline import yamlfile
from pipeline.read import Problem, is_date_like

RULES_PATH = Path(__file__).with_name("anonymity_rules.yaml")
"""The shipped rules file."""

ID_COLUMNS: tuple[str, ...] = ("client_id", "therapist_id")
"""Columns that content rules with ``scope: ids`` apply to."""

MISSING_LABEL = "(missing)"
"""How a missing covariate value is shown in the k-anonymity table."""

Scope = Literal["all", "ids", "other"]


@dataclass(frozen=True)
class NameRule:
    """Refuse a column whose (word-split, lower-case) name matches one of ``patterns``."""

    kind: str
    label: str
    patterns: tuple[re.Pattern[str], ...]

    @property
    def rule(self) -> str:
        """Rule identifier used in problems, e.g. ``name:email_address``."""
        return f"name:{self.kind}"


@dataclass(frozen=True)
class ContentRule:
    """Refuse a column whose values match ``patterns`` (see ``anonymity_rules.yaml``)."""

    kind: str
    label: str
    patterns: tuple[re.Pattern[str], ...]
    match: Literal["full", "search"] = "full"
    scope: Scope = "all"
    min_distinct: int = 1
    min_share: float = 0.0

    @property
    def rule(self) -> str:
        """Rule identifier used in problems, e.g. ``content:email_address``."""
        return f"content:{self.kind}"

    def matches(self, texts: pd.Series) -> pd.Series:
        """Boolean mask: which of ``texts`` (strings, no missing values) match."""
        hit = pd.Series(False, index=texts.index)
        for pattern in self.patterns:
            test = pattern.fullmatch if self.match == "full" else pattern.search
            hit |= texts.map(lambda t, test=test: test(t) is not None).astype(bool)
        return hit


@dataclass(frozen=True)
class CovariateRules:
    """What a client covariate's values must look like to be published (see the YAML)."""

    max_levels: int = 20
    max_length: int = 40
    level_pattern: re.Pattern[str] = re.compile(r"[^\W_][\w .,/&+()'-]*")
    name_like: re.Pattern[str] | None = None


@dataclass(frozen=True)
class AnonymityRules:
    """All name and content rules, as loaded from a rules file."""

    names: tuple[NameRule, ...]
    content: tuple[ContentRule, ...]
    source: str = ""
    header: tuple[str, ...] = ()
    covariates: CovariateRules = CovariateRules()


def _compile(patterns: Any, where: str) -> tuple[re.Pattern[str], ...]:
    if isinstance(patterns, str):
        patterns = [patterns]
    if not isinstance(patterns, Sequence) or not patterns:
        raise ValueError(f"{where}: give a regex under 'pattern' or a list under 'patterns'")
    try:
        return tuple(re.compile(str(p)) for p in patterns)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regex ({exc})") from exc


def load_rules(path: str | Path | None = None) -> AnonymityRules:
    """Load anonymisation rules from YAML.

    Parameters
    ----------
    path
        A rules file with the layout of the shipped ``pipeline/anonymity_rules.yaml``
        (used when ``None``).

    Returns
    -------
    AnonymityRules

    Raises
    ------
    ValueError
        If the file is malformed (unknown field, invalid regex, bad threshold).
    """
    rules_path = Path(path) if path else RULES_PATH
    with rules_path.open(encoding="utf-8") as fh:
        raw = yamlfile.safe_load(fh) or {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{rules_path}: expected a YAML mapping")
    names = []
    for kind, spec in (raw.get("column_names") or {}).items():
        where = f"{rules_path}: column_names.{kind}"
        names.append(
            NameRule(str(kind), str(spec.get("label", kind)), _compile(spec.get("patterns"), where))
        )
    content = []
    allowed = {"label", "pattern", "patterns", "match", "scope", "min_distinct", "min_share"}
    for kind, spec in (raw.get("content") or {}).items():
        where = f"{rules_path}: content.{kind}"
        unknown = set(spec) - allowed
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
        match = spec.get("match", "full")
        scope = spec.get("scope", "all")
        if match not in ("full", "search") or scope not in ("all", "ids", "other"):
            raise ValueError(f"{where}: match must be full/search, scope all/ids/other")
        rule = ContentRule(
            kind=str(kind),
            label=str(spec.get("label", kind)),
            patterns=_compile(spec.get("patterns", spec.get("pattern")), where),
            match=match,
            scope=scope,
            min_distinct=int(spec.get("min_distinct", 1)),
            min_share=float(spec.get("min_share", 0.0)),
        )
        if rule.min_distinct < 1 or not 0.0 <= rule.min_share <= 1.0:
            raise ValueError(f"{where}: min_distinct must be >= 1 and min_share in [0, 1]")
        content.append(rule)
    kinds = {r.kind for r in content}
    header = tuple(str(k) for k in (raw.get("header_rules") or ()))
    if set(header) - kinds:
        raise ValueError(f"{rules_path}: header_rules names unknown content rules "
                         f"{sorted(set(header) - kinds)}")
    cov = raw.get("covariates") or {}
    unknown = set(cov) - {"max_levels", "max_length", "level_pattern", "name_like"}
    if unknown:
        raise ValueError(f"{rules_path}: covariates: unknown field(s) {sorted(unknown)}")
    where = f"{rules_path}: covariates"
    covariates = CovariateRules(
        max_levels=int(cov.get("max_levels", 20)),
        max_length=int(cov.get("max_length", 40)),
        level_pattern=_compile(cov.get("level_pattern", r"[^\W_][\w .,/&+()'-]*"), where)[0],
        name_like=_compile(cov["name_like"], where)[0] if cov.get("name_like") else None,
    )
    if covariates.max_levels < 1 or covariates.max_length < 1:
        raise ValueError(f"{where}: max_levels and max_length must be >= 1")
    return AnonymityRules(tuple(names), tuple(content), str(rules_path), header, covariates)


# ------------------------------------------------------------------------------ helpers


def name_words(column: str) -> str:
    """Lower-case a column name and split it into words separated by single spaces.

    ``"DateOfBirth"`` -> ``"date of birth"``, ``"client-E_mail"`` -> ``"client e mail"``,
    ``"NHSNumber"`` -> ``"nhs number"``.
    """
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", str(column))
    return " ".join(re.split(r"[^0-9a-z]+", text.lower())).strip()


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def value_texts(series: pd.Series) -> pd.Series:
    """Each non-missing cell as text, as a reader sees it (``12.0`` -> ``"12"``).

    Parameters
    ----------
    series
        Any column.

    Returns
    -------
    pandas.Series
        Strings, same index, missing cells dropped.
    """
    present = series.dropna()
    uniques = pd.unique(present)
    lookup = {u: _text(u) for u in uniques}
    return present.map(lookup).astype(object)


def _date_cells(series: pd.Series) -> pd.Series:
    """Boolean mask of cells stored as dates or times (not text that looks like one)."""
    if pd.api.types.is_datetime64_any_dtype(series) or isinstance(
        series.dtype, pd.PeriodDtype
    ):
        return series.notna()
    if series.dtype != object:
        return pd.Series(False, index=series.index)
    # Decide on the distinct values (few per column for items, codes and categories).
    present = series.dropna()
    dates = [u for u in pd.unique(present) if is_date_like(u)]
    if not dates:
        return pd.Series(False, index=series.index)
    return series.map(is_date_like).astype(bool)


def _cells(n: int) -> str:
    return "1 cell looks" if n == 1 else f"{n} cells look"


def _allow_hint(column: str) -> str:
    return (
        f"If you have checked that '{column}' identifies nobody, list it under "
        "validation.allow_columns in params.yaml."
    )


# ------------------------------------------------------------------------------- checks


def check_column_names(
    columns: Sequence[str], rules: AnonymityRules,
    source_names: Mapping[str, str] | None = None,
) -> list[tuple[str, NameRule]]:
    """Columns whose name matches a name rule (all matching rules per column).

    Parameters
    ----------
    columns
        Column names.
    rules
        Loaded rules.
    source_names
        Optional column -> name as written in the file (before normalising); both are
        checked, so ``NHSNumber`` is still read as "nhs number" after lower-casing.

    Returns
    -------
    list of (column, rule)
    """
    hits = []
    for column in columns:
        spellings = {name_words(column)}
        if source_names and column in source_names:
            spellings.add(name_words(source_names[column]))
        for rule in rules.names:
            if any(p.search(words) for p in rule.patterns for words in spellings):
                hits.append((column, rule))
    return hits


@dataclass(frozen=True)
class _ColumnTexts:
    """A column's non-missing cells as text, and its distinct texts (computed once)."""

    texts: pd.Series
    uniques: pd.Series

    @classmethod
    def of(cls, series: pd.Series) -> _ColumnTexts:
        texts = value_texts(series)
        return cls(texts, pd.Series(pd.unique(texts), dtype=object))

    def hits(self, rule: ContentRule, index: pd.Index) -> pd.Series:
        none = pd.Series(False, index=index)
        if self.texts.empty:
            return none
        matched = set(self.uniques[rule.matches(self.uniques).to_numpy()])
        if len(matched) < rule.min_distinct:
            return none
        hit = self.texts.isin(matched)
        if not hit.any() or hit.mean() < rule.min_share:
            return none
        return hit.reindex(index, fill_value=False)


def check_column_content(series: pd.Series, rule: ContentRule) -> pd.Series:
    """Cells of ``series`` that make ``rule`` refuse the column.

    Parameters
    ----------
    series
        One column (any dtype).
    rule
        A content rule; its ``scope`` is not applied here.

    Returns
    -------
    pandas.Series
        Boolean mask over ``series``: all False when the column passes the rule (also
        when some cells match but fewer than ``min_distinct`` different values, or less
        than ``min_share`` of the non-missing cells).
    """
    return _ColumnTexts.of(series).hits(rule, series.index)


def _applies(rule: ContentRule, column: str, contract: Collection[str]) -> bool:
    if rule.scope == "ids":
        return column in ID_COLUMNS
    if rule.scope == "other":
        return column not in contract
    return True


def check_anonymity(
    frame: pd.DataFrame,
    file: str,
    rules: AnonymityRules,
    *,
    allow_columns: Collection[str] = (),
    contract_columns: Collection[str] = (),
    max_examples: int = 5,
    row_note: str = "",
    value_labels: Mapping[str, Mapping[Any, str]] | None = None,
    source_names: Mapping[str, str] | None = None,
) -> list[Problem]:
    """Problems for every column that names or holds identifying data.

    Parameters
    ----------
    frame
        One input table, index = data row number (as from :func:`pipeline.read.read_table`).
    file
        The file's name as the user gave it (for messages).
    rules
        Loaded rules (:func:`load_rules`).
    allow_columns
        Column names the user has checked and allowed (``validation.allow_columns``),
        compared with the frame's column names and with ``source_names``; they are not
        checked at all.
    contract_columns
        Columns that belong to the input contract (ids, session, items, scores); rules with
        ``scope: other`` skip them.
    max_examples
        Number of example row numbers per problem.
    row_note
        What a data row number means in this file.
    value_labels
        SPSS/Stata value labels by column (code -> label); checked with the content rules.
    source_names
        Column -> name as written in the file, when ``frame``'s names were normalised;
        used for the name rules and in messages.

    Returns
    -------
    list of Problem
        One per (column, rule) hit, ordered by column then rule. Messages never contain a
        cell value.
    """
    allowed = set(allow_columns)
    contract = set(contract_columns)
    source = dict(source_names or {})
    problems: list[Problem] = []
    columns = [c for c in frame.columns if c not in allowed and source.get(c) not in allowed]
    name_hits: dict[str, list[NameRule]] = {}
    for column, name_rule in check_column_names(columns, rules, source):
        name_hits.setdefault(column, []).append(name_rule)
    for column in columns:
        shown = source.get(column, column)
        for name_rule in name_hits.get(column, []):
            problems.append(
                Problem(
                    file, shown, [], name_rule.rule,
                    f"the column name suggests {name_rule.label}. Identifying data must not "
                    "enter the pipeline: remove the column from the export. "
                    + _allow_hint(shown),
                )
            )
        series = frame[column]
        dates = _date_cells(series)
        if dates.any():
            rows = list(series.index[dates.to_numpy()])
            problems.append(
                Problem(
                    file, shown, rows[:max_examples], "content:calendar_date",
                    f"{len(rows)} cell{'s' if len(rows) != 1 else ''} stored as calendar dates, "
                    "which identify people. "
                    "Replace dates by session numbers (or days since the first session) and "
                    "remove dates of birth (an age band is usually enough). "
                    + _allow_hint(shown),
                    count=len(rows), row_note=row_note,
                )
            )
            continue
        texts = _ColumnTexts.of(series)
        for rule in rules.content:
            if not _applies(rule, column, contract):
                continue
            hit = texts.hits(rule, series.index)
            if hit.any():
                rows = list(series.index[hit.to_numpy()])
                problems.append(
                    Problem(
                        file, shown, rows[:max_examples], rule.rule,
                        f"{_cells(len(rows))} like {rule.label}; values are not shown. "
                        "Remove the column, or replace the values by codes, before loading. "
                        + _allow_hint(shown),
                        count=len(rows), row_note=row_note,
                    )
                )
        labels = (value_labels or {}).get(column)
        if labels:
            label_texts = pd.Series([str(v) for v in labels.values()], dtype=object)
            for rule in rules.content:
                if _applies(rule, column, contract) and check_column_content(
                    label_texts, rule
                ).any():
                    problems.append(
                        Problem(
                            file, shown, [], f"{rule.rule}:value_labels",
                            f"the value labels stored with this column look like "
                            f"{rule.label}; labels are not shown. Remove the value labels "
                            "(in SPSS: Variable View, Values; in Stata: label drop) before "
                            "exporting. " + _allow_hint(shown),
                        )
                    )
    return problems


def check_headers(
    columns: Sequence[str], file: str, rules: AnonymityRules,
) -> list[Problem]:
    """Problems for column names that are themselves identifiers (an e-mail address ...).

    Parameters
    ----------
    columns
        Column names as written in the file, in file order.
    file
        The file's name as the user gave it.
    rules
        Loaded rules; ``rules.header`` names the content rules applied to headers.

    Returns
    -------
    list of Problem
        Rule ``header:<kind>``; the column is named by its position only ("column 4"),
        never by its name, so the identifier is not copied into any message or table.
    """
    wanted = [r for r in rules.content if r.kind in set(rules.header)]
    problems = []
    for j, column in enumerate(columns, start=1):
        text = pd.Series([str(column).strip()], dtype=object)
        for rule in wanted:
            if rule.matches(text).any():
                problems.append(Problem(
                    file, f"column {j} (name not shown)", [], f"header:{rule.kind}",
                    f"the name of column {j} of the header row looks like {rule.label}. A "
                    "header must be a variable name: rename the column (allow_columns cannot "
                    "allow an identifying name).",
                ))
    return problems


def check_covariates(
    frame: pd.DataFrame,
    covariates: Sequence[str],
    file: str,
    rules: AnonymityRules,
    *,
    declared: Mapping[str, Sequence[Any]] | None = None,
    allow_columns: Collection[str] = (),
    max_examples: int = 5,
    row_note: str = "",
    source_names: Mapping[str, str] | None = None,
) -> tuple[list[Problem], list[str]]:
    """Check that every client covariate holds categories that may be published.

    Covariate values end up in published aggregates (the k-anonymity table, model terms
    such as ``approach: CBT``), so they are held to a stricter standard than other
    columns: a covariate passes only when its levels are declared
    (``validation.covariate_levels``) or look like categories (``rules.covariates``: few
    levels, short, letters/digits/simple punctuation, not shaped like "First Last" names,
    not starting with a spreadsheet formula character).

    Parameters
    ----------
    frame
        The clients table (value labels already applied to the covariates).
    covariates
        Covariate columns to check.
    file
        The file's name as the user gave it.
    rules
        Loaded rules.
    declared
        Column -> the levels the user declared (compared as text); a value outside the
        list is refused, and no other check applies.
    allow_columns
        Columns (names as in ``frame`` or as written in the file) not checked.
    max_examples, row_note, source_names
        As in :func:`check_anonymity`.

    Returns
    -------
    (problems, continuous)
        ``problems`` with rules ``covariate:undeclared_level``, ``covariate:too_many_levels``,
        ``covariate:not_a_category`` and ``covariate:name_like`` (never a value);
        ``continuous`` lists numeric covariates with more than ``max_levels`` values:
        cleared for the models, but their values are not published in the k-anonymity
        table.
    """
    cov_rules = rules.covariates
    declared = {str(k): [_text(v) for v in vals] for k, vals in (declared or {}).items()}
    source = dict(source_names or {})
    problems: list[Problem] = []
    continuous: list[str] = []

    def problem(shown: str, hit: pd.Series, rule: str, message: str) -> None:
        rows = list(hit.index[hit.to_numpy()])
        problems.append(Problem(file, shown, rows[:max_examples], rule, message,
                                count=len(rows), row_note=row_note))

    for column in covariates:
        shown = source.get(column, column)
        if column not in frame.columns or column in allow_columns or shown in allow_columns:
            continue
        texts = value_texts(frame[column])
        if texts.empty:
            continue
        how = (f"If the values identify nobody, declare the levels under "
               f"validation.covariate_levels.{column} in params.yaml, or list the column "
               "under validation.allow_columns.")
        if column in declared:
            bad = ~texts.isin(declared[column])
            if bad.any():
                problem(shown, bad, "covariate:undeclared_level",
                        f"{_cells(int(bad.sum()))} like values outside the levels declared "
                        f"under validation.covariate_levels.{column}; values are not shown. "
                        "Correct the values or the declaration.")
            continue
        numeric = pd.to_numeric(texts, errors="coerce").notna().all()
        uniques = pd.unique(texts)
        if len(uniques) > cov_rules.max_levels:
            if numeric:
                continuous.append(column)
                continue
            problem(shown, pd.Series(True, index=texts.index), "covariate:too_many_levels",
                    f"{len(uniques)} different values: more than the {cov_rules.max_levels} a "
                    "category may have (rules file, covariates.max_levels), so the values may "
                    "identify clients. Group them into a few categories before loading. "
                    + how)
            continue
        if numeric:
            continue
        shape = texts.map(lambda t: len(t) > cov_rules.max_length
                          or cov_rules.level_pattern.fullmatch(t) is None).astype(bool)
        if shape.any():
            problem(shown, shape, "covariate:not_a_category",
                    f"{_cells(int(shape.sum()))} not like a category (longer than "
                    f"{cov_rules.max_length} characters, or other characters than letters, "
                    "digits and simple punctuation, or starting with =, +, - or @ as a "
                    "spreadsheet formula does); values are not shown. " + how)
        if cov_rules.name_like is not None:
            named = texts.map(
                lambda t, p=cov_rules.name_like: p.fullmatch(t) is not None).astype(bool)
            if named.any():
                problem(shown, named, "covariate:name_like",
                        f"{_cells(int(named.sum()))} like \"First Last\" names of people; "
                        "category labels such as \"Person Centred\" have the same shape. "
                        "Write categories in lower case or as codes. " + how)
    return problems, continuous


# ----------------------------------------------------------------------- k-anonymity


def k_anonymity_table(clients: pd.DataFrame, covariates: Sequence[str]) -> pd.DataFrame:
    """How many clients share each combination of client covariates.

    Parameters
    ----------
    clients
        One row per client (validated clients file).
    covariates
        Covariate columns to combine (e.g. ``["approach", "modality"]``).

    Returns
    -------
    pandas.DataFrame
        One row per combination that occurs: the covariates (as text; a missing value
        shows as ``"(missing)"``) and ``n_clients``, sorted by the covariate values. No
        client ids and no other row content. Empty (only ``n_clients``) when there are
        no covariates.
    """
    covariates = list(covariates)
    if not covariates or clients.empty:
        return pd.DataFrame({**{c: pd.Series(dtype=object) for c in covariates},
                             "n_clients": pd.Series(dtype="int64")})
    combos = pd.DataFrame(index=clients.index)
    for column in covariates:
        texts = value_texts(clients[column])
        combos[column] = texts.reindex(clients.index).fillna(MISSING_LABEL).astype(str)
    table = combos.groupby(covariates, sort=True).size().rename("n_clients").reset_index()
    return table.astype({"n_clients": "int64"}).reset_index(drop=True)


def rare_combinations(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """Rows of a :func:`k_anonymity_table` shared by fewer than ``k`` clients."""
    return table[table["n_clients"] < k].reset_index(drop=True)


__all__ = [
    "RULES_PATH",
    "AnonymityRules",
    "ContentRule",
    "CovariateRules",
    "NameRule",
    "check_anonymity",
    "check_column_content",
    "check_column_names",
    "check_covariates",
    "check_headers",
    "k_anonymity_table",
    "load_rules",
    "name_words",
    "rare_combinations",
    "value_texts",
]
