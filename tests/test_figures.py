"""Figures: what is drawn is what is saved, byte-stable PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pandas as pd

from pipeline import figures


def _coefs() -> pd.DataFrame:
    rows = []
    for i, k in enumerate(("goal", "task", "bond")):
        for part, b in (("within", 0.5 + i / 10), ("between", 1.0 - i / 10)):
            rows.append({"model": "primary", "term": f"{k}_{part}", "estimate": b,
                         "std_error": 0.1, "conf_low": b - 0.2, "conf_high": b + 0.2,
                         "p_value": 0.01})
    return pd.DataFrame(rows)


def test_save_twice_is_byte_identical(tmp_path: Path) -> None:
    figures.apply_style()
    for out in ("a", "b"):
        fig, data = figures.coefficient_plot(_coefs())
        figures.save_figure(fig, data, tmp_path / out, "coef")
    for suffix in ("png", "svg", "csv"):
        a = (tmp_path / "a" / f"coef.{suffix}").read_bytes()
        assert a == (tmp_path / "b" / f"coef.{suffix}").read_bytes(), suffix
    svg = (tmp_path / "a" / "coef.svg").read_text()
    assert "<dc:date>" not in svg


def test_data_behind_the_figure_is_what_is_drawn() -> None:
    _fig, data = figures.predicted_wellbeing(_coefs(), span=1.0, points=3)
    goal = data[(data.subscale == "goal") & (data.part == "within")]
    assert goal["predicted_difference"].tolist() == [-0.5, 0.0, 0.5]
    # band = coefficient interval times the difference, ordered low to high
    assert goal["conf_low"].round(10).tolist() == [-0.7, 0.0, 0.3]
    assert goal["conf_high"].round(10).tolist() == [-0.3, 0.0, 0.7]


def test_suppressed_rows_are_not_drawn() -> None:
    traj = pd.DataFrame({
        "session": [1, 2, 1, 2, 1, 2, 1, 2],
        "variable": ["goal"] * 2 + ["task"] * 2 + ["bond"] * 2 + ["wellbeing"] * 2,
        "n": [10, None] * 4, "mean": [3.0, None] * 4, "sd": [1.0, None] * 4,
        "conf_low": [2.5, None] * 4, "conf_high": [3.5, None] * 4,
        "suppressed": [False, True] * 4,
    })
    _, data = figures.trajectories(traj)
    assert len(data) == 4 and not data["suppressed"].any()


def _diag(marginal: bool = True) -> pd.DataFrame:
    rows = [{"model": "primary", "plot": "qq", "component": comp, "x": q, "y": q * 1.1,
             "se": None, "n": 40} for comp in ("residual", "client") for q in (-1.0, 0.0, 1.0)]
    rows += [{"model": "primary", "plot": "residual_vs_fitted", "component": "residual",
              "x": x, "y": 0.1 * x, "se": None, "n": 10} for x in (1.0, 2.0, 3.0)]
    if marginal:
        rows += [{"model": "primary", "plot": "marginal_residual_vs_fitted",
                  "component": "marginal residual", "x": x, "y": 0.05, "se": 0.5, "n": 10}
                 for x in (1.0, 2.0, 3.0)]
    rows.append({"model": "other", "plot": "qq", "component": "residual", "x": 0.0, "y": 0.0,
                 "se": None, "n": 5})
    return pd.DataFrame(rows)


def test_diagnostics_draw_the_marginal_panel_with_intervals() -> None:
    fig, data = figures.diagnostics(_diag(), outcome_label="SWEMWBS")
    assert set(data["model"]) == {"primary"} and len(data) == 12
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 4
    titles = [ax.get_title() for ax in visible]
    assert titles[:2] == ["Residual (session) (n = 40)", "Client intercept (n = 40)"]
    marginal = visible[3]
    assert "marginal residual" in marginal.get_title()
    assert marginal.get_xlabel() == "fitted SWEMWBS (fixed part only)"
    # the 95% error bars span estimate +- 1.96 SE
    segments = marginal.collections[0].get_segments()
    assert [round(float(s[1][1] - s[0][1]), 6) for s in segments] == [1.96] * 3
    matplotlib.pyplot.close(fig)


def test_diagnostics_without_marginal_rows_draw_the_conditional_panel_only() -> None:
    fig, _ = figures.diagnostics(_diag(marginal=False))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 3 and "conditional" in visible[2].get_title()
    matplotlib.pyplot.close(fig)


def test_show_publishes_what_the_report_shows(tmp_path: Path, monkeypatch) -> None:
    """With the render step's folder set, the figure is saved and the saved PNG is shown
    (at the figure's own width); without it, it is shown inline and nothing is written."""
    import IPython.display

    from pipeline.report import FIGURES_DIR_ENV

    figures.apply_style()
    shown: list[object] = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    inline: list[bool] = []
    monkeypatch.setattr(figures.plt, "show", lambda: inline.append(True))
    monkeypatch.delenv(FIGURES_DIR_ENV, raising=False)
    figures.show(*figures.coefficient_plot(_coefs()), "coef")
    assert inline == [True] and shown == [] and not list(tmp_path.iterdir())
    matplotlib.pyplot.close("all")

    monkeypatch.setenv(FIGURES_DIR_ENV, str(tmp_path))
    fig, data = figures.coefficient_plot(_coefs())
    figures.show(fig, data, "coef")
    assert inline == [True]                      # not drawn a second time
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coef.csv", "coef.png", "coef.svg"]
    (image,) = shown
    assert isinstance(image, IPython.display.Image)
    assert image.data == (tmp_path / "coef.png").read_bytes()
    assert image.width == 750                    # 7.5 in at figure.dpi 100, as inline
    assert not matplotlib.pyplot.fignum_exists(fig.number)
    # the same drawing saved by hand gives the same bytes (one style, no kernel state)
    again = tmp_path / "again"
    figures.save_figure(*figures.coefficient_plot(_coefs()), again, "coef")
    for suffix in ("png", "svg", "csv"):
        assert (again / f"coef.{suffix}").read_bytes() == \
            (tmp_path / f"coef.{suffix}").read_bytes(), suffix


def test_long_instrument_names_are_wrapped_not_cut() -> None:
    name = "Short Warwick-Edinburgh Mental Wellbeing Scale"
    dist = pd.DataFrame({"variable": ["goal", "task", "bond", "wellbeing"],
                         "lower": [1.0, 1.0, 1.0, 7.0], "upper": [2.0, 2.0, 2.0, 8.0],
                         "sessions": [10, 10, 10, 10], "suppressed": [False] * 4})
    fig, _ = figures.distributions(dist, outcome_label=name)
    assert fig.axes[3].get_title() == "Short Warwick-Edinburgh\nMental Wellbeing Scale"
    matplotlib.pyplot.close(fig)
    traj = pd.DataFrame({"session": [1] * 4, "variable": ["goal", "task", "bond", "wellbeing"],
                         "mean": [3.0] * 4, "conf_low": [2.0] * 4, "conf_high": [4.0] * 4,
                         "suppressed": [False] * 4})
    fig, _ = figures.trajectories(traj, outcome_label=name, alliance_metric="1\u20135")
    assert fig.axes[1].get_title() == name and fig.axes[1].get_ylabel() == "mean score"
    assert fig.axes[0].get_ylabel() == "mean (1\u20135)"
    matplotlib.pyplot.close(fig)


def test_effect_axes_name_the_outcome_not_wellbeing() -> None:
    """A PHQ-9 analysis drew "change in wellbeing per point of alliance": the axes name
    the outcome the report passes (``report.outcome_noun``)."""
    fig, _ = figures.coefficient_plot(_coefs(), outcome_label="depression")
    assert fig.axes[0].get_xlabel() == "change in depression per point of alliance (CI)"
    fig, _ = figures.predicted_wellbeing(_coefs(), outcome_label="depression")
    assert fig.axes[0].get_ylabel() == "predicted difference in depression"
    fig, _ = figures.sensitivity(_coefs(), ["primary"], outcome_label="reversed depression")
    assert "change in reversed depression per point" in fig.axes[0].get_xlabel()


def _labels(ax, axis: str = "y") -> list[str]:
    """The tick labels of ``ax`` as drawn (after a draw, as in a saved file)."""
    ax.figure.canvas.draw()
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


def _power() -> pd.DataFrame:
    return pd.DataFrame([{"design": f"{n}x6x8", "therapists": n, "clients_per_therapist": 6,
                          "sessions": 8, "term": "goal_within", "power": p,
                          "conf_low": p - 0.1, "conf_high": p + 0.05, "alpha": 0.05}
                         for n, p in ((20, 0.55), (40, 0.82))])


def test_power_axis_and_legend_print_power_without_the_leading_zero() -> None:
    """APA 7 (6.36), as the tables print power (``tables.number(0.8, "power")`` is
    ``.80``, of 1 ``1.00``, of 0 ``.00``): the labels change, not where the ticks are."""
    fig, _ = figures.power_curves(_power(), 0.8)
    ax = fig.axes[0]
    assert _labels(ax) == [".00", ".20", ".40", ".60", ".80", "1.00"]
    assert [round(float(t), 10) for t in ax.get_yticks()] == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert _labels(ax, "x") == ["18", "21", "24", "27", "30", "33", "36", "39", "42"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["Goal (within client)", "target .8", "alpha .05"]
    matplotlib.pyplot.close(fig)


def test_reliability_axis_prints_alpha_as_the_tables_print_correlations() -> None:
    """Cronbach's alpha is of the ``correlation`` kind (``tables.format_r``): a true minus
    and no leading zero, ``1.00`` at 1; the ceiling panel (percentages) keeps its labels."""
    rel = pd.DataFrame({"subset": ["session"] * 3, "scale": ["goal"] * 3,
                        "session": [1, 2, 3], "n": [60] * 3, "alpha": [-0.3, 0.5, 0.9],
                        "omega_total": [0.4, 0.6, 0.9]})
    fc = pd.DataFrame({"scale": ["goal", "task"], "item_number": [1, 2],
                       "pct_ceiling": [20.0, 30.0]})
    fig, _ = figures.reliability(rel, fc)
    assert _labels(fig.axes[0]) == ["\u2212.40", "\u2212.20", ".00", ".20", ".40", ".60",
                                    ".80", "1.00"]
    assert _labels(fig.axes[1]) == ["0", "5", "10", "15", "20", "25", "30", "35"]
    matplotlib.pyplot.close(fig)


def test_bounded_ticks_get_more_decimals_only_when_the_ticks_need_them() -> None:
    fig, ax = matplotlib.pyplot.subplots()
    ax.set_ylim(0.88, 0.89)        # a tick every .002: two decimals would print .88 twice
    figures.kind_axis(ax, "correlation")
    assert _labels(ax) == [".880", ".882", ".884", ".886", ".888", ".890"]
    ax.set_ylim(-1, 1)
    assert _labels(ax) == ["\u22121.00", "\u2212.75", "\u2212.50", "\u2212.25", ".00",
                           ".25", ".50", ".75", "1.00"]
    matplotlib.pyplot.close(fig)


def test_coefficient_and_score_axes_keep_their_leading_zero() -> None:
    """Coefficients and scores can exceed 1: their labels stay matplotlib's (``0.5``), and
    ``kind_axis`` of a kind the style does not bound changes nothing."""
    fig, _ = figures.coefficient_plot(_coefs())
    assert _labels(fig.axes[0], "x") == ["\u22120.2", "0.0", "0.2", "0.4", "0.6", "0.8",
                                         "1.0", "1.2", "1.4"]
    fig, _ = figures.predicted_wellbeing(_coefs())
    assert _labels(fig.axes[0]) == ["\u22121.5", "\u22121.0", "\u22120.5", "0.0", "0.5",
                                    "1.0", "1.5"]
    fig, ax = matplotlib.pyplot.subplots()
    ax.set_xlim(0, 1)
    figures.kind_axis(ax, "points", "x")
    assert _labels(ax, "x") == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    matplotlib.pyplot.close("all")


def test_the_style_file_alone_decides_which_figure_axes_lose_the_zero(monkeypatch) -> None:
    """One rule for tables and figures: without ``power`` in ``no_leading_zero``
    (``pipeline/table_style.yaml``) the power axis keeps matplotlib's labels."""
    from pipeline import tables

    style = dict(tables._style())
    style["no_leading_zero"] = [k for k in style["no_leading_zero"] if k != "power"]
    monkeypatch.setattr(tables, "_style", lambda: style)
    fig, _ = figures.power_curves(_power(), 0.8)
    assert _labels(fig.axes[0]) == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
    assert "target 0.8" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    matplotlib.pyplot.close(fig)


def test_power_curves_save_twice_byte_identical(tmp_path: Path) -> None:
    figures.apply_style()
    for out in ("a", "b"):
        figures.save_figure(*figures.power_curves(_power(), 0.8), tmp_path / out, "power")
    for suffix in ("png", "svg"):
        assert (tmp_path / "a" / f"power.{suffix}").read_bytes() == \
            (tmp_path / "b" / f"power.{suffix}").read_bytes(), suffix


def test_variance_shares_are_percentages_as_the_tables_print_them() -> None:
    """Shares drawn as percentages follow the style's ``percent`` kind (``tables.percent``,
    as the alliance-levels table): whole per cents, no leading-zero rule."""
    levels = pd.DataFrame({"subscale": ["goal"], "status": ["fitted"],
                           "share_therapist": [0.05], "share_client": [0.554],
                           "share_session": [0.396]})
    fig, _ = figures.alliance_shares(levels)
    ax = fig.axes[0]
    assert _labels(ax, "x") == ["0%", "20%", "40%", "60%", "80%", "100%"]
    assert [t.get_text() for t in ax.texts] == ["55%", "40%"]   # 5% is too narrow to label
    matplotlib.pyplot.close(fig)
