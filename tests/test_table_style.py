"""One table style and one figure style: labels, decimals, p-format, integers, legends."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd

from pipeline import figures
from pipeline.tables import (
    coefficient_table,
    component_label,
    estimates_by_model,
    format_df,
    lr_table,
    styled,
    variance_table,
    yes_no,
)


def test_lr_df_are_integers_and_p_is_apa() -> None:
    lr = pd.DataFrame({"comparison": ["a_vs_b"], "df": [6.0], "statistic": [342.2174],
                       "p_value": [7e-71], "aic_reduced": [13955.535], "aic_full": [13625.3178]})
    table = lr_table(lr, {"a_vs_b": "Do a add to b?"})
    assert table.iloc[0].tolist() == ["Do a add to b?", "6", "342.22", "< .001",
                                      "13955.5, 13625.3"]


def test_df_column_when_the_engine_gives_satterthwaite_df() -> None:
    coefs = pd.DataFrame({"model": ["primary"] * 2, "term": ["Intercept", "goal_between"],
                          "estimate": [21.0, 1.2], "std_error": [0.3, 0.4],
                          "conf_low": [20.4, 0.4], "conf_high": [21.6, 2.0],
                          "p_value": [1e-9, 0.004], "df": [27.83, 350.0]})
    table = coefficient_table(coefs, ["primary"])
    assert list(table.columns) == ["Term", "b", "SE", "95% CI", "df", "p"]
    assert table["df"].tolist() == ["27.8", "350"]
    assert format_df(float("inf")) == ""


def test_flags_never_print_true() -> None:
    assert [yes_no(v) for v in (True, False, "True", "False", np.True_)] == [
        "yes", "no", "yes", "no", "yes"]


def test_variance_components_and_estimates_use_labels() -> None:
    vc = pd.DataFrame({"model": ["primary"] * 2, "component": ["client_time", "residual"],
                       "variance": [0.0123, 4.0], "sd": [0.111, 2.0]})
    table = variance_table(vc, ["primary"])
    assert table["Component"].tolist() == ["Client slope on time", "Residual (session)"]
    assert table["Variance"].tolist() == ["0.012", "4.000"]
    assert component_label("therapist") == "Therapist intercept"
    coefs = pd.DataFrame({"model": ["primary", "sens_ml"], "term": ["goal_within"] * 2,
                          "estimate": [1.0422, -0.5]})
    wide = estimates_by_model(coefs, ["primary", "sens_ml"], ["goal_within"])
    assert wide.iloc[0].tolist() == ["Goal (within client)", "1.04", "\u22120.50"]


def _traj() -> pd.DataFrame:
    rows = [{"session": s, "variable": v, "n": 50, "mean": 3.0 + s / 10, "sd": 1.0,
             "conf_low": 2.8, "conf_high": 3.4, "suppressed": False}
            for s in range(1, 6) for v in ("goal", "task", "bond", "wellbeing")]
    return pd.DataFrame(rows)


def test_session_axes_show_whole_sessions_only() -> None:
    fig, _ = figures.trajectories(_traj())
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), ticks
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["Goal", "Task",
                                                                             "Bond"]


def test_ceiling_chart_has_a_legend_and_sensitivity_uses_term_labels() -> None:
    rel = pd.DataFrame({"subset": ["session"] * 3, "scale": ["goal", "task", "bond"],
                        "session": [1, 1, 1], "n": [60] * 3, "alpha": [0.8, 0.7, 0.9],
                        "omega_total": [0.8, 0.7, 0.9]})
    fc = pd.DataFrame({"scale": ["goal", "task"], "item_number": [1, 2],
                       "pct_ceiling": [20.0, 30.0]})
    fig, _ = figures.reliability(rel, fc)
    legend = fig.axes[1].get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["Goal", "Task"]
    coefs = pd.DataFrame([{"model": m, "term": f"{k}_{p}", "estimate": 0.5, "conf_low": 0.1,
                           "conf_high": 0.9}
                          for m in ("primary", "sens_ml") for k in ("goal", "task", "bond")
                          for p in ("within", "between")])
    fig, _ = figures.sensitivity(coefs, ["primary", "sens_ml"])
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "Goal (within client)" in labels and "goal_within" not in labels
    colours = {h.lines[0].get_color() for h in fig.axes[0].containers}
    assert colours == {figures.PALETTE[0], figures.PALETTE[1]}


def test_models_are_named_by_their_titles_not_their_keys() -> None:
    from pipeline.models import load_specs
    from pipeline.tables import model_label

    plan = load_specs()
    assert model_label("primary", plan) == "Primary model"
    assert model_label("sens_ml", plan) == "Primary model by maximum likelihood"
    assert model_label("sens_min3") == "Clients with at least three sessions"
    coefs = pd.DataFrame({"model": ["primary", "sens_ml"], "term": ["goal_within"] * 2,
                          "estimate": [1.0, 2.0]})
    wide = estimates_by_model(coefs, ["primary", "sens_ml"], ["goal_within"],
                              labels={m: model_label(m, plan) for m in ("primary", "sens_ml")})
    assert wide.columns.tolist() == ["Term", "Primary model",
                                     "Primary model by maximum likelihood"]
    coefs = pd.DataFrame([{"model": m, "term": f"{k}_{p}", "estimate": 0.5, "conf_low": 0.1,
                           "conf_high": 0.9}
                          for m in ("primary", "sens_ml") for k in ("goal", "task", "bond")
                          for p in ("within", "between")])
    fig, _ = figures.sensitivity(coefs, ["primary", "sens_ml"],
                                 {m: model_label(m, plan) for m in ("primary", "sens_ml")})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["Primary model", "Primary model by maximum\nlikelihood"]
    assert figures.choice_label("random_slope", "correlated") == "client slope on time: correlated"
    assert figures.choice_label("estimation", "reml") == "estimation: REML"


def test_rupture_offsets_are_whole_sessions() -> None:
    from pipeline.ruptures.plots import course

    rows = [{"criterion": "dip", "variable": v, "status": "repaired", "offset": o, "n": 20,
             "mean": 0.1 * o, "conf_low": -0.5, "conf_high": 0.5, "suppressed": False}
            for v in ("alliance", "wellbeing") for o in range(-1, 2)]
    fig, _ = course(pd.DataFrame(rows), "dip")
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert all(float(t).is_integer() for t in ticks), ticks


def test_report_tables_format_counts_decimals_p_and_suppressed_cells() -> None:
    from pipeline.tables import formatted

    frame = pd.DataFrame({"rule": ["A", "B"], "n": [1234.0, np.nan], "pct": [53.846154, 100.0],
                          "r": [0.286254, -0.05], "p": [6e-19, 0.6027763],
                          "flag": [True, False], "note": ["", np.nan]})
    table = formatted(frame, 2, decimals={"pct": 1}, p_values=("p",))
    assert table.to_numpy().tolist() == [
        ["A", "1,234", "53.8", "0.29", "< .001", "yes", ""],
        ["B", "\u2013", "100.0", "\u22120.05", ".603", "no", ""]]


def test_rupture_variability_sources_are_named_in_words() -> None:
    from pipeline.ruptures.criteria import sd_label

    assert sd_label("client+between (max)") == \
        "larger of client's own SD and SD between clients"
    assert sd_label("within_clean (max)") == "within-client SD without the dips"
    assert sd_label("baseline") == "SD of first-session scores (RCI)"


def test_power_curves_use_the_subscale_colours_and_a_dashed_between_part() -> None:
    rows = [{"design": f"{n}x6x8", "therapists": n, "clients_per_therapist": 6, "sessions": 8,
             "term": term, "power": 0.5, "conf_low": 0.4, "conf_high": 0.6, "alpha": 0.05}
            for n in (20, 40) for term in ("goal_within", "bond_within", "goal_between")]
    fig, _ = figures.power_curves(pd.DataFrame(rows), 0.8)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    assert lines["Goal (within client)"].get_color() == figures.COLORS["goal"]
    assert lines["Bond (within client)"].get_color() == figures.COLORS["bond"]
    assert lines["Goal (between clients)"].get_color() == figures.COLORS["goal"]
    assert lines["Goal (between clients)"].get_linestyle() == "--"
    assert lines["Goal (within client)"].get_linestyle() == "-"
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend[:3] == ["Goal (within client)", "Bond (within client)",
                          "Goal (between clients)"]


def test_correlations_and_reliabilities_have_no_leading_zero() -> None:
    from pipeline.tables import format_r

    assert [format_r(v) for v in (0.8612, -0.0512, 1.0, float("nan"))] == [
        ".86", "\u2212.05", "1.00", ""]


def test_interval_labels_follow_the_confidence_level_of_the_results() -> None:
    coefs = pd.DataFrame([{"model": "primary", "term": f"{k}_{p}", "estimate": 0.5,
                           "std_error": 0.1, "conf_low": 0.3, "conf_high": 0.7,
                           "conf_level": 0.9}
                          for k in ("goal", "task", "bond") for p in ("within", "between")])
    fig, _ = figures.coefficient_plot(coefs)
    assert fig.axes[0].get_xlabel() == "change in wellbeing per point of alliance (90% CI)"
    fig, _ = figures.sensitivity(coefs, ["primary"])
    assert fig.axes[0].get_xlabel().endswith("(90% CI)")
    assert figures.ci_label(coefs.drop(columns="conf_level")) == "CI"


def test_tables_of_many_models_name_them_by_their_titles() -> None:
    coefs = pd.DataFrame({"model": ["primary", "sens_ml", "not_in_plan"],
                          "term": ["goal_within"] * 3, "estimate": [1.0, 2.0, 3.0],
                          "std_error": [0.1] * 3, "conf_low": [0.8] * 3, "conf_high": [1.2] * 3,
                          "p_value": [0.01] * 3})
    table = coefficient_table(coefs, ["primary", "sens_ml", "not_in_plan"])
    assert table["Model"].tolist() == ["Primary model", "Primary model by maximum likelihood",
                                       "not_in_plan"]
    vc = pd.DataFrame({"model": ["sens_min3"], "component": ["residual"], "variance": [4.0],
                       "sd": [2.0]})
    assert variance_table(vc)["Model"].tolist() == ["Clients with at least three sessions"]


def test_rupture_prevalence_legend_uses_the_labels_of_the_other_figures() -> None:
    from pipeline.ruptures.plots import prevalence

    rows = [{"criterion": "gumz_1sd", "label": "Gumz 1 SD", "rater": "client", "scale": s,
             "n_series": 100, "pct_clients": 40.0} for s in ("total", "goal", "task", "bond")]
    fig, _ = prevalence(pd.DataFrame(rows))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "Total alliance", "Goal", "Task", "Bond"]


def _cells(html: str) -> list[str]:
    import re

    return re.findall(r"<td [^>]*>(.*?)</td>", html, flags=re.S)


def test_a_later_format_of_some_columns_keeps_every_cell_escaped() -> None:
    """pandas' ``format({"n": ...})`` resets every column's formatter, escaping included:
    the overview's warnings table showed a column named ``<script>...`` as live markup."""
    frame = pd.DataFrame({"detail": ["not used: notiz_<script>alert(1)</script>"], "n": [3.0]})
    html = styled(frame).format({"n": lambda v: f"{v:,.0f}"}).to_html()
    assert "<script>" not in html
    assert _cells(html) == ["not used: notiz_&lt;script&gt;alert(1)&lt;/script&gt;", "3"]


def test_report_tables_show_counts_decimals_dashes_and_escaped_text() -> None:
    """Counts whole, other numbers to two decimals, missing as an en dash (the ruptures
    report's thresholds table showed "nan" and six decimals), text escaped."""
    from pipeline.tables import formatted

    frame = pd.DataFrame({"rule": ["Gumz 1 SD", "RCI <a>"], "reliability": [np.nan, 0.873],
                          "clients": [40, 40], "median drop needed": [0.4968574462, 1.2]})
    assert _cells(styled(formatted(frame)).to_html()) == [
        "Gumz 1 SD", "\u2013", "40", "0.50", "RCI &lt;a&gt;", "0.87", "40", "1.20"]


def test_apa_table_files_escape_cells_for_html_latex_and_markdown(tmp_path: Path) -> None:
    """A '95% CI' header cut the LaTeX row short (% starts a comment); a covariate level
    with & or _ broke the .tex; '<' was raw in the HTML; '|' split a Markdown cell."""
    from pipeline.tables import write_table

    table = pd.DataFrame({"Term": ["Approach: CBT & group_1", "Time (session \u2212 1)"],
                          "95% CI": ["[\u22120.50, 0.20]", "[0.1, 0.2]"],
                          "p": ["< .001", ".016"], "Note": ["a|b", ""]})
    html_file, tex_file, md_file = write_table(table, tmp_path, "t", "Table 9. R\u00b2 test",
                                               "A <em>note</em>.")
    tex = tex_file.read_text(encoding="utf-8")
    assert r"Term & 95\% CI & p & Note \\" in tex
    assert r"Approach: CBT \& group\_1 & [$-$0.50, 0.20] & \textless{} .001 & a|b \\" in tex
    assert r"\caption{Table 9. R\textsuperscript{2} test}" in tex
    assert "\u2212" not in tex
    page = html_file.read_text(encoding="utf-8")
    assert "CBT &amp; group_1" in page and "&lt; .001" in page and "<em>note</em>" in page
    assert r"a\|b" in md_file.read_text(encoding="utf-8")
