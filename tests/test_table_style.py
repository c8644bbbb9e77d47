"""One table style and one figure style: labels, decimals, p-format, integers, legends."""

from __future__ import annotations

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
    rounded,
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


def test_rounded_tables_show_counts_decimals_and_dashes() -> None:
    """Counts whole, other numbers to two decimals, missing as an en dash (the ruptures
    report's thresholds table showed "nan" and six decimals)."""
    frame = pd.DataFrame({"rule": ["Gumz 1 SD", "RCI <a>"], "reliability": [np.nan, 0.873],
                          "clients": [40, 40], "median drop needed": [0.4968574462, 1.2]})
    assert _cells(rounded(frame).to_html()) == [
        "Gumz 1 SD", "\u2013", "40", "0.50", "RCI &lt;a&gt;", "0.87", "40", "1.20"]
