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
