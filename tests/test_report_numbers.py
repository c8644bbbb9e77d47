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
interval: {max: 3, min_units: 2}
""")
    assert _shown() == ["0.123", "+0.123", "25.5%", "12%", ".861", ".0004", ".0456",
                        "12.35", "0.4", "0.123", "\u22120.500", "12", "50"]
    assert tables.format_p(0.00004) == "< .0001"
