"""Every number a report prints goes through pipeline/tables.py at a kind's decimals.

The notebooks (``notebooks/*.py``) must not choose decimals themselves: no format spec
with a precision (``{v:.2f}``, ``"{:.2f}"``, ``{share:.0%}``), no ``round(...)`` whose
value is printed, no digits passed as a number to the formatter (``format_num(v, 3)``,
``formatted(..., decimals=...)``, ``Styler.format(precision=...)``). They call
``tables.number(v, kind)``, ``percent``, ``format_r``, ``format_p``, ``format_int`` or
``formatted(..., kinds=...)``, and ``pipeline/table_style.yaml`` gives each kind its
decimals. Counts (``{n:,}``) and settings echoed as given (``{alpha:g}``) are allowed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pandas as pd
import pytest

from pipeline import tables

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.py"))

#: a precision in a format spec: ".2f", ".0%", "+.2f", ",.0f", ".3"
_PRECISION = re.compile(r"\.\d")
#: the same inside a plain string used as a template: "{:.2f}", "{0:+.3f}"
_TEMPLATE = re.compile(r"\{[^{}]*:[^{}]*\.\d[^{}]*\}")
#: formatters whose second argument is a number of decimals
_DIGITS_ARG = {"format_num", "format_r", "format_interval", "formatted", "_range"}
#: keywords that pass decimals as numbers
_DIGITS_KEYWORDS = {"digits", "decimals", "precision"}


def _spec_text(spec: ast.expr | None) -> str:
    if spec is None:
        return ""
    if isinstance(spec, ast.JoinedStr):
        return "".join(v.value for v in spec.values
                       if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return ""


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""


def own_decimals(source: str) -> list[tuple[int, str]]:
    """``(line, what)`` for every place where this code formats a number itself."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    shown: set[str] = set()   # names printed in an f-string
    in_fstring: set[int] = set()  # ids of nodes inside an f-string's replacement field
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue):
            if _PRECISION.search(_spec_text(node.format_spec)):
                found.append((node.lineno, "format spec with a precision"))
            for inner in ast.walk(node.value):
                in_fstring.add(id(inner))
                if isinstance(inner, ast.Name):
                    shown.add(inner.id)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in in_fstring and _TEMPLATE.search(node.value)):
            found.append((node.lineno, "format template with a precision"))
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        if name == "round" and id(node) in in_fstring:
            found.append((node.lineno, "round() printed"))
        if name in _DIGITS_ARG and len(node.args) >= 2 and isinstance(
                node.args[1], ast.Constant) and isinstance(node.args[1].value, int):
            found.append((node.lineno, f"{name}() given decimals"))
        for keyword in node.keywords:
            if keyword.arg in _DIGITS_KEYWORDS:
                found.append((node.lineno, f"{name}({keyword.arg}=...)"))
    # round() assigned to a name that an f-string prints
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign)
                and any(isinstance(c, ast.Call) and _name(c.func) == "round"
                        for c in ast.walk(node.value))
                and any(isinstance(t, ast.Name) and t.id in shown for t in node.targets)):
            found.append((node.lineno, "round() printed"))
    return sorted(found)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_leave_decimals_to_the_style(notebook: Path) -> None:
    assert own_decimals(notebook.read_text(encoding="utf-8")) == []


def test_notebooks_found() -> None:
    assert {p.stem for p in NOTEBOOKS} >= {"models", "overview", "power", "psychometrics",
                                           "ruptures", "sensitivity"}


def test_scan_finds_each_way_of_choosing_decimals() -> None:
    source = '''
a = f"{v:.2f} and {share:.0%} and {d:+.2f} and {n:,.0f}"
styler.format({"mean": "{:.2f}"})
b = f"{round(100 * conf)}% CI"
level = round(100 * conf) if conf else 95
c = f"{level}% CI"
d = format_num(v, 3)
e = formatted(frame, 1)
f = formatted(frame, decimals={"pct": 1})
styler.format(precision=2)
'''
    assert own_decimals(source) == [
        (2, "format spec with a precision"), (2, "format spec with a precision"),
        (2, "format spec with a precision"), (2, "format spec with a precision"),
        (3, "format template with a precision"), (4, "round() printed"),
        (5, "round() printed"), (7, "format_num() given decimals"),
        (8, "formatted() given decimals"), (9, "formatted(decimals=...)"),
        (10, "format(precision=...)")]


def test_scan_leaves_counts_settings_and_computation_alone() -> None:
    source = '''
a = f"{n:,} clients, alpha = {alpha:g}, {number(v, 'points')}, {percent(s)}"
k = round(len(rows) * share)
head = rows.head(k)
b = f"{len(head):,} rows"
c = format_num(v, digits)
d = "3.5 points, 0.8 both"
'''
    assert own_decimals(source) == []


@pytest.fixture
def style(tmp_path, monkeypatch):
    """A table style whose kinds the test writes; the shipped one again afterwards."""
    def write(text: str) -> None:
        path = tmp_path / "table_style.yaml"
        path.write_text(text, encoding="utf-8")
        monkeypatch.setattr(tables, "STYLE", path)
        tables._style.cache_clear()

    tables._style.cache_clear()
    yield write
    monkeypatch.undo()
    tables._style.cache_clear()


def _shown() -> list[str]:
    frame = pd.DataFrame({"mean change": [0.12345, -0.5], "%": [12.345, 50.0]})
    cells = tables.formatted(frame, kinds={"mean change": "points", "%": "percent_table"})
    return [tables.number(0.12345, "points"), tables.number(0.1234, "points", signed=True),
            tables.percent(0.2549), tables.percent(12.345, "percent_table", scaled=True),
            tables.format_r(0.8612), tables.format_p(0.00042), tables.format_p(0.0456),
            tables.format_df(12.3456), tables.number(0.4, "simulated"),
            *cells["mean change"], *cells["%"]]


def test_the_shipped_kinds() -> None:
    tables._style.cache_clear()
    assert _shown() == ["0.12", "+0.12", "25%", "12.3%", ".86", "< .001", ".046", "12.3",
                        "0.400", "0.12", "\u22120.50", "12.3", "50.0"]


def test_a_changed_kind_changes_the_text(style) -> None:
    style("""
decimals:
  default: 2
  points: 3
  percent: 1
  percent_table: 0
  correlation: 3
  p_value: 4
  df: 2
  simulated: 1
no_leading_zero: [p_value, correlation]
interval: {max: 3, min_units: 2}
""")
    assert _shown() == ["0.123", "+0.123", "25.5%", "12%", ".861", ".0004", ".0456",
                        "12.35", "0.4", "0.123", "\u22120.500", "12", "50"]
    assert tables.format_p(0.00004) == "< .0001"


#: The kinds that cannot exceed 1 in absolute value: APA 7 (6.36) prints them without a
#: leading zero. The decision, with its reasons, is in pipeline/table_style.yaml.
BOUNDED = {"p_value", "correlation", "proportion", "power", "r_squared", "variance_share",
           "simulated_correlation"}


def test_the_kinds_without_a_leading_zero_are_the_bounded_statistics() -> None:
    tables._style.cache_clear()
    kinds = set(tables._style()["decimals"])
    assert BOUNDED <= kinds
    for kind in (k for k in kinds if tables.decimals(k) > 0):   # "0%": whole percentages
        text = tables.number(0.5, kind)
        assert text.startswith(".") == (kind in BOUNDED), (kind, text)
        assert tables.number(-0.25, kind).startswith("\u22120") == (kind not in BOUNDED)
    # more than 1 (a kind's own decimals), or 1: nothing to drop
    assert tables.number(1.0, "correlation") == "1.00"
    assert tables.number(-1.0, "correlation") == "\u22121.00"
    assert tables.number(0.45, "points") == "0.45"
    assert tables.number(0.05, "power", signed=True) == "+.05"


def test_every_formatter_follows_the_kinds_rule() -> None:
    """The rater-agreement r printed "0.45" in the overview's table and ".45" in the
    models report: the table went through formatted(kinds=...), the text through
    format_r, and only format_r dropped the zero."""
    tables._style.cache_clear()
    assert tables.format_r(0.45) == tables.number(0.45, "correlation") == ".45"
    frame = pd.DataFrame({"r": [0.45, -0.05], "mean": [0.45, -0.05], "kappa": [0.5, 1.0]})
    cells = tables.formatted(frame, kinds={"r": "correlation", "mean": "points",
                                           "kappa": "proportion"})
    assert cells.to_dict("list") == {"r": [".45", "\u2212.05"], "mean": ["0.45", "\u22120.05"],
                                     "kappa": [".50", "1.00"]}
    assert tables.formatted(frame[["r"]], kind="correlation")["r"].tolist() == [".45",
                                                                               "\u2212.05"]
    assert tables.with_interval(0.183, 0.094, 0.277, "variance_share") == (
        ".183", "[.094, .277]", 3)
    assert tables.with_interval(0.183, 0.094, 0.277, "variance") == (
        "0.183", "[0.094, 0.277]", 3)
    assert tables.format_interval(-0.41, 0.3, 2, "correlation") == "[\u2212.41, .30]"
    assert tables.format_p(0.0456) == ".046" and tables.format_p(0.0001) == "< .001"
    fit = tables.fit_table(pd.DataFrame({
        "model": ["primary"], "status": ["fitted"], "n_obs": [10], "n_clients": [5],
        "loglik": [-1.0], "loglik_ml": [-1.0], "aic": [1.0], "bic": [1.0],
        "r2_marginal": [0.1928], "r2_conditional": [0.7508], "optimizer": ["x"],
        "converged": [True]}))
    assert fit.loc[0, ["R\u00b2 marginal", "R\u00b2 conditional"]].tolist() == [".19", ".75"]


def test_a_kind_off_the_list_keeps_its_zero(style) -> None:
    style("""
decimals: {default: 2, correlation: 2, p_value: 3}
no_leading_zero: [p_value]
interval: {max: 3, min_units: 2}
""")
    assert tables.format_r(0.45) == "0.45" and tables.format_p(0.0456) == ".046"


#: Statistics a report's text names before a number that cannot exceed 1.
_BOUNDED_WORDS = (r"(?<![\w-])(?:r|p|R\u00b2(?: marginal| conditional)?|\u03b1|\u03c9|\u03ba|"
                  r"alpha|omega|kappa|power|recall|precision|ICC(?: therapist| client)?)")
_LEADING_ZERO_TEXT = re.compile(_BOUNDED_WORDS + r"\s*(?:=|of|<|>)?\s*[\u2212-]?0\.\d")
#: Table headers of such statistics (the cells below them are checked).
BOUNDED_HEADERS = re.compile(r"^(?:p|p \(Holm\)|r|R\u00b2.*|\u03b1|\u03c9|\u03ba|alpha|"
                             r"omega|reliability|kappa|jaccard|recall|precision|power|"
                             r"status agrees|ICC.*)(?:, .*)?$", re.I)
#: A cell holding a number (a row without one is a table's header row).
_NUMBER_CELL = re.compile(r"[\u2212+-]?[\d,]*\.?\d+%?|\u2013|< ?\.\d+|\[.*\]|.* to .*")


def leading_zeros(text: str, rows: list[list[str]]) -> list[str]:
    """Where a report prints a statistic bounded by 1 with a leading zero: in its text
    (``r = 0.45``, ``power 0.80``) and in table columns headed by such a statistic
    (``rows``: every table row's cells, header rows included)."""
    found = [m[0] for m in _LEADING_ZERO_TEXT.finditer(text)]
    header: list[str] = []
    for row in rows:
        if not any(_NUMBER_CELL.fullmatch(c) for c in row):
            header = row   # the header row of the next table
            continue
        for name, cell in zip(header, row, strict=False):
            if BOUNDED_HEADERS.match(name) and re.match(r"[\[\u2212-]?0\.\d", cell):
                found.append(f"{name}: {cell}")
    return found


def test_the_page_check_finds_leading_zeros() -> None:
    rows = [["Term", "b", "p"], ["Goal", "0.12", ".046"], ["Task", "0.50", "0.046"],
            ["rule", "recall", "precision"], ["Gumz", ".45", "[0.30, .50]"],
            ["rule", "recall, 3-SD drops", "false per 100 sessions"], ["V", "0.61", "0.8"],
            ["rule", "group", "mean change"], ["Gumz", "unrepaired", "0.30"]]
    assert leading_zeros("the ratings correlate r = 0.45 over; power 0.80 and r = .45; "
                         "0.45 points; p < .001", rows) == [
        "r = 0.4", "power 0.8", "p: 0.046", "precision: [0.30, .50]",
        "recall, 3-SD drops: 0.61"]
    assert leading_zeros("r = .45, power .80, a mean of 0.45", rows[:2]) == []


def test_a_kind_for_a_column_the_table_does_not_have_is_an_error() -> None:
    """The ruptures report renamed its columns before formatting ("kappa" -> "κ"), so its
    kinds named columns that were no longer there and were ignored (the recall/precision
    table's "false per 100 sessions" was a proportion)."""
    frame = pd.DataFrame({"\u03ba": [0.5]})
    with pytest.raises(ValueError, match="no column"):
        tables.formatted(frame, kinds={"kappa": "proportion"})
    with pytest.raises(ValueError, match="no column"):
        tables.formatted(frame, p_values=("p_value",))
    assert tables.formatted(frame, kinds={"\u03ba": "proportion"})["\u03ba"].tolist() == [".50"]


def test_time_zero_is_said_to_lie_before_the_data_when_nobody_was_rated_at_session_1(
        ) -> None:
    """time = session - 1: the models report said the intercept is wellbeing "at the first
    session (time 0)" also when the export started at session 3, where it is session 1,
    before any rated session (an extrapolation)."""
    import pandas as pd

    from pipeline.report import time_zero_words

    shipped = pd.DataFrame({"session": [1, 1, 2, 2], "variable": ["goal", "wellbeing"] * 2})
    assert time_zero_words(shipped) == "at the first session (time 0)"
    late = pd.DataFrame({"session": [1, 3, 4, 5], "variable": ["goal"] + ["wellbeing"] * 3})
    assert time_zero_words(late) == (
        "at session 1 (time 0, before the data: no wellbeing was rated before session 3, so "
        "this is an extrapolation)")
    assert time_zero_words(pd.DataFrame(columns=["session", "variable"])) == (
        "at the first session (time 0)")
