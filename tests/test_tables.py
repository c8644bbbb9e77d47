"""APA tables: formatting rules and byte-stable files in three formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.tables import (
    coefficient_table,
    format_num,
    format_p,
    format_r,
    formatted,
    styled,
    term_label,
    write_table,
)


def test_format_p_apa() -> None:
    assert format_p(0.0004) == "< .001"
    assert format_p(0.001) == ".001"
    assert format_p(0.0456) == ".046"
    assert format_p(0.5) == ".500"
    assert format_p(float("nan")) == ""


def test_format_num_true_minus() -> None:
    assert format_num(-0.126) == "\u22120.13"
    assert format_num(1.005, 1) == "1.0"
    assert format_num(np.nan) == ""


def test_a_number_that_rounds_to_zero_has_no_minus() -> None:
    """A CI bound of -0.004 printed "−0.00" (the every-item-alike shape; the shipped
    secondary table's "[−0.00, 0.02]"); zero has no sign, at any number of decimals."""
    assert format_num(-0.004) == "0.00"
    assert format_num(-0.0) == "0.00"
    assert format_num(-0.0004, 3) == "0.000"
    assert format_num(-0.005, 2) == "−0.01"      # rounds away from zero: keeps its sign
    assert format_num(-0.04, 1) == "0.0"
    assert format_num(-1e-12, 0) == "0"
    assert format_num(-0.0006, 3) == "−0.001"
    assert format_r(-0.001) == ".00"
    frame = formatted(pd.DataFrame({"b": [-0.001, 0.5]}))
    assert frame["b"].tolist() == ["0.00", "0.50"]


def test_term_labels() -> None:
    assert term_label("goal_within") == "Goal (within client)"
    assert term_label("bond_between") == "Bond (between clients)"
    assert term_label("C(modality)[T.video]") == "Modality: video"
    label = term_label("task_within:C(approach)[T.CBT]")
    assert label == "Task (within client) \u00d7 Approach: CBT"


COEFS = pd.DataFrame({
    "model": ["primary", "primary"], "term": ["Intercept", "goal_within"],
    "estimate": [21.04, -0.2], "std_error": [0.3, 0.05], "conf_low": [20.45, -0.298],
    "conf_high": [21.63, -0.102], "p_value": [1e-20, 0.0312],
})


def test_coefficient_table() -> None:
    table = coefficient_table(COEFS, ["primary"])
    assert list(table.columns) == ["Term", "b", "SE", "95% CI", "p"]
    assert table.loc[1].tolist() == ["Goal (within client)", "\u22120.20", "0.05",
                                     "[\u22120.30, \u22120.10]", ".031"]
    assert table.loc[0, "p"] == "< .001"


def test_write_table_three_formats_byte_stable(tmp_path: Path) -> None:
    table = coefficient_table(COEFS, ["primary"])
    a = write_table(table, tmp_path / "a", "primary", "Table 1. Primary", "N = 10.")
    b = write_table(table, tmp_path / "b", "primary", "Table 1. Primary", "N = 10.")
    assert [p.suffix for p in a] == [".html", ".tex", ".md"]
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()
    assert "\\toprule" in a[1].read_text()
    assert "| Goal (within client)" in a[2].read_text()
    assert "0.30 " in a[2].read_text()  # formatted strings kept as written (no "0.3")
    assert "<table" in a[0].read_text() and "Note." in a[0].read_text()


def test_styled_id_is_deterministic() -> None:
    frame = pd.DataFrame({"a": [1, 2]})
    assert styled(frame).to_html() == styled(frame.copy()).to_html()
    assert styled(frame).to_html() != styled(pd.DataFrame({"a": [1, 3]})).to_html()
