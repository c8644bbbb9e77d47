"""APA tables: formatting rules and byte-stable files in three formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.tables import (
    STYLE,
    alliance_change_table,
    bootstrap_table,
    coefficient_table,
    counted,
    decimals,
    format_num,
    format_p,
    format_r,
    formatted,
    interval_decimals,
    styled,
    term_label,
    with_interval,
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
    # the outcome column is called wellbeing whatever the questionnaire (PHQ-9, CORE-10)
    assert term_label("wellbeing_lag") == "Outcome (previous session)"


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


def test_decimals_are_the_style_files() -> None:
    text = STYLE.read_text(encoding="utf-8")
    assert "default: 2" in text and "variance: 3" in text and "likelihood: 1" in text
    assert (decimals(), decimals("variance"), decimals("likelihood")) == (2, 3, 1)
    assert format_num(0.12345) == "0.12"


def test_an_estimate_with_a_narrow_interval_gets_the_decimals_to_show_it() -> None:
    """The goal growth slope (shipped data) printed 0.01 [0.00, 0.02], SE 0.00, in the
    secondary table and 0.008 [−0.001, 0.017] in the models report's text: one rule
    (pipeline/table_style.yaml) now gives both 3 decimals."""
    # the interval spans fewer than 2 units of the 2nd decimal: 3 decimals, up to max 3
    assert interval_decimals(-0.000666, 0.016545) == 3
    assert interval_decimals(0.19, 0.25) == 2
    assert interval_decimals(0.10, 0.12) == 2          # exactly 2 units
    assert interval_decimals(0.10, 0.1199) == 3
    assert interval_decimals(0.0001, 0.0002) == 3      # never more than max
    assert interval_decimals(np.nan, 0.1) == 2 and interval_decimals(0.1, 0.1, "variance") == 3
    assert with_interval(0.00794, -0.000666, 0.016545) == ("0.008", "[\u22120.001, 0.017]", 3)
    assert with_interval(0.22, 0.19, 0.25) == ("0.22", "[0.19, 0.25]", 2)
    coefs = pd.concat([COEFS, pd.DataFrame({
        "model": ["primary"], "term": ["time"], "estimate": [0.00794],
        "std_error": [0.004366], "conf_low": [-0.000666], "conf_high": [0.016545],
        "p_value": [0.0704]})], ignore_index=True)
    table = coefficient_table(coefs, ["primary"])
    assert table.loc[2, ["b", "SE", "95% CI"]].tolist() == [
        "0.008", "0.004", "[\u22120.001, 0.017]"]
    assert table.loc[1, ["b", "SE"]].tolist() == ["\u22120.20", "0.05"]   # others keep 2
    change = pd.DataFrame({
        "subscale": ["goal", "task"], "status": ["fitted", "fitted"],
        "intercept": [3.547513, 3.4], "slope": [0.00794, 0.21], "conf_low": [-0.000666, 0.15],
        "conf_high": [0.016545, 0.27], "conf_level": 0.95, "df": [212.1, 30.0],
        "p_value": [0.0704, 1e-5], "client_slope_low": [-0.061996, 0.1],
        "client_slope_high": [0.077875, 0.3]})
    shown = alliance_change_table(change)
    assert shown.loc[0, ["First session", "Change per session", "95% CI"]].tolist() == [
        "3.55", "0.008", "[\u22120.001, 0.017]"]
    assert shown.loc[0, "Clients' own slopes (middle 95%)"] == "\u22120.062 to 0.078"
    assert shown.loc[1, ["Change per session", "95% CI"]].tolist() == ["0.21", "[0.15, 0.27]"]
    assert shown.loc[1, "Clients' own slopes (middle 95%)"] == "0.10 to 0.30"


def test_the_bootstrap_table_uses_the_one_number_formatter() -> None:
    """The models report formatted the bootstrap table itself (f"{v:.3f}"): ASCII minus,
    "-0.000" for a correlation that rounds to zero. Each quantity at its kind
    (pipeline/table_style.yaml): SDs at ``variance`` with their zero, the correlation at
    ``correlation`` and the ICC at ``variance_share``, both bounded by 1, without it
    (APA 7)."""
    boot = pd.DataFrame({"quantity": ["sd_therapist", "corr_client_time", "icc_therapist"],
                         "estimate": [1.468899, -0.0004, 0.183229],
                         "conf_low": [1.017563, -0.41, 0.094388],
                         "conf_high": [1.919127, 0.3, 0.277353], "conf_level": 0.95})
    table = bootstrap_table(boot)
    assert table.to_dict("list") == {
        "Quantity": ["SD therapist intercept", "Correlation client intercept, slope",
                     "ICC therapist"],
        "Estimate": ["1.469", ".00", ".183"],
        "95% bootstrap interval": ["[1.018, 1.919]", "[\u2212.41, .30]", "[.094, .277]"]}


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


def test_counts_take_their_noun_in_the_right_number() -> None:
    """One therapist's data: the models report said "1 therapists"."""
    assert counted(1, "therapist") == "1 therapist"
    assert counted(1.0, "session") == "1 session"
    assert counted(2294, "session") == "2,294 sessions"
    assert counted(0, "client") == "0 clients"
    assert counted(3, "analysis", "analyses") == "3 analyses"
