"""The alliance-only analysis (no outcome file): models, their summaries and the report.

Unit tests hold the alliance summaries (:mod:`pipeline.models.alliance`) to hand-computed
numbers; the end-to-end test runs validate ... publish on the real-shaped fixture
(tests/fixtures/realshape: two raters, WAI-S 1-7, two sessions per client, no therapist
id, no outcome, no clients file) and renders the models report.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import NotEstimableError
from pipeline.models import load_specs, model_data, prepare
from pipeline.models.alliance import alliance_change, alliance_levels
from pipeline.report import NEEDS_OUTCOME, skipped_tags
from pipeline.tables import alliance_change_table, alliance_levels_table, with_interval

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(__file__).parent / "fixtures" / "realshape"


def _scored(with_outcome: bool) -> pd.DataFrame:
    rows = pd.DataFrame({"client_id": ["a", "a", "b", "b"], "therapist_id": "t",
                         "session": [1, 2, 1, 2], "goal": [3.0, 4.0, 2.0, np.nan],
                         "task": 3.0, "bond": 4.0})
    if with_outcome:
        rows["wellbeing"] = [20.0, np.nan, 22.0, 23.0]
    return rows


def test_alliance_models_need_no_outcome_but_use_its_sessions_when_there_is_one() -> None:
    plan = load_specs()
    levels, primary = plan.get("alliance_levels_goal"), plan.get("primary")
    assert len(model_data(_scored(False), None, levels)) == 3       # b's session 2: no goal
    assert len(model_data(_scored(True), None, levels)) == 2        # ... and a's 2: no outcome
    with pytest.raises(NotEstimableError, match="no outcome file"):
        model_data(_scored(False), None, primary)
    with pytest.raises(NotEstimableError, match="no outcome file"):
        prepare(_scored(False), required=("wellbeing",))


def _tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    stats = pd.DataFrame({
        "model": ["alliance_levels_goal", "alliance_levels_task", "alliance_levels_bond",
                  "alliance_time_goal", "alliance_time_task", "alliance_time_bond"],
        "status": ["fitted", "fitted", "not estimable", "fitted", "singular", "failed"],
        "reason": ["", "", "a reason", "", "", "boom"],
        "simplification": ["", "therapist level dropped: 1 therapist", "", "", "", ""],
        "warning": "", "n_obs": 10, "n_clients": 5, "n_therapists": [2, 1, 2, 2, 2, 2]})
    varcomp = pd.DataFrame({
        "model": ["alliance_levels_goal"] * 3 + ["alliance_levels_task"] * 2
        + ["alliance_time_goal"] * 4,
        "component": ["therapist", "client", "residual", "client", "residual",
                      "therapist", "client", "client_time", "residual"],
        "variance": [0.04, 0.36, 0.6, 0.3, 0.2, 0.01, 0.2, 0.0025, 0.3]})
    coefs = pd.DataFrame({
        "model": ["alliance_levels_goal", "alliance_levels_task", "alliance_time_goal",
                  "alliance_time_goal", "alliance_time_task", "alliance_time_task"],
        "term": ["Intercept", "Intercept", "Intercept", "time", "Intercept", "time"],
        "estimate": [4.0, 3.5, 3.8, 0.02, 3.6, -0.01], "std_error": 0.01, "df": 20.0,
        "conf_low": [0, 0, 0, 0.01, 0, -0.03], "conf_high": [9, 9, 9, 0.03, 9, 0.01],
        "conf_level": 0.95, "p_value": [0.0, 0.0, 0.0, 0.001, 0.0, 0.4]})
    return stats, varcomp, coefs


def test_levels_shares_and_therapist_range_by_hand() -> None:
    levels = alliance_levels(*_tables()).set_index("subscale")
    goal, task, bond = levels.loc["goal"], levels.loc["task"], levels.loc["bond"]
    assert (goal["share_therapist"], goal["share_client"], goal["share_session"]) == \
        pytest.approx((0.04, 0.36, 0.6))
    # therapist SD 0.2: the middle 95% of therapist means is 4 -+ 1.96 * 0.2
    assert goal["sd_therapist"] == pytest.approx(0.2)
    assert (goal["therapist_mean_low"], goal["therapist_mean_high"]) == pytest.approx(
        (4 - 0.392, 4 + 0.392), abs=1e-4)
    # no therapist level (one therapist): blank, not 0%; the rest sums to one
    assert np.isnan(task["share_therapist"]) and np.isnan(task["therapist_mean_low"])
    assert task["share_client"] == pytest.approx(0.6)
    assert "1 therapist" in task["simplification"]
    assert bond["status"] == "not estimable" and bond["reason"] == "a reason"
    assert np.isnan(bond["share_client"])
    table = alliance_levels_table(levels.reset_index())
    assert table["Subscale"].tolist() == ["Goal", "Task"]        # readable models only
    assert table.iloc[0].tolist() == ["Goal", "4.00", "4%", "36%", "60%", "3.61 to 4.39"]
    assert table.iloc[1]["Therapist"] == "\u2014"


def test_change_slope_and_client_slope_range_by_hand() -> None:
    change = alliance_change(*_tables()).set_index("subscale")
    goal, task = change.loc["goal"], change.loc["task"]
    assert goal["slope"] == 0.02 and goal["intercept"] == 3.8
    # client slope SD 0.05: 0.02 -+ 1.96 * 0.05
    assert (goal["client_slope_low"], goal["client_slope_high"]) == pytest.approx(
        (0.02 - 0.098, 0.02 + 0.098), abs=1e-4)
    assert task["status"] == "singular" and np.isnan(task["client_slope_low"])
    assert change.loc["bond", "reason"] == "boom"
    table = alliance_change_table(change.reset_index())
    # the interval spans 0.02, two units of the second decimal: two decimals
    # (pipeline/table_style.yaml), for the slope and the clients' slopes alike
    assert table.iloc[0].tolist() == ["Goal", "3.80", "0.02", "[0.01, 0.03]", "20",
                                      ".001", "\u22120.08 to 0.12"]


def test_outcome_cells_are_skipped_only_without_an_outcome(tmp_path: Path) -> None:
    from tests.test_probes_shapes import _project

    alliance_only = _project(tmp_path / "a", REAL / "alliance.csv", None)
    assert skipped_tags({"params_file": str(alliance_only)}, ROOT) == {NEEDS_OUTCOME}
    assert skipped_tags({"params_file": "params.yaml"}, ROOT) == set()


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def alliance_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from pipeline.cli import main
    from pipeline.report import render_many
    from tests.test_probes_shapes import _project, _steps

    tmp = tmp_path_factory.mktemp("alliance_only")
    params_file = _project(tmp, REAL / "alliance.csv", None)
    results = _steps(params_file)
    p = ["--params", str(params_file)]
    interim = tmp / "interim"
    assert main(["fit", *p, "--validated", str(interim / "validated"),
                 "--scored", str(interim / "scored.csv"), "--out", str(results)]) == 0
    assert main(["publish", *p, "--results", str(results), "--tables",
                 str(tmp / "tables")]) == 0
    # every report that publishes figures, as the `report` stage renders them (no
    # specification curve or power table: those stages need the outcome models)
    render_many([(ROOT / "notebooks" / f"{name}.py", tmp / f"{name}.html")
                 for name in ("overview", "psychometrics", "models", "sensitivity", "power")],
                {"params_file": str(params_file)}, cwd=ROOT,
                figures_dir=tmp / "figures")
    return tmp, (tmp / "models.html").read_text()


def _text(page: str) -> str:
    body = re.sub(r"<style.*?</style>", "", page[page.index("<body"):], flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.mark.slow
def test_alliance_only_models_report(alliance_only: tuple[Path, str]) -> None:
    tmp, page = alliance_only
    text = _text(page)
    assert "Traceback" not in page and "output_error" not in page
    assert "There is no outcome in these data." in text
    # the outcome sections are gone, not a wall of notices
    assert "not estimable" not in text
    for heading in ("Within and between", "Secondary models", "Reading the intercept",
                    "Does the model fit?", "Does the within-client effect depend"):
        assert heading not in text
    assert "Curran" not in text and "Nickell" not in text   # their citations went with them
    # the shares printed are those of the results table, which are the variance ratios
    varcomp = pd.read_csv(tmp / "results" / "variance_components.csv")
    for k in ("goal", "task", "bond"):
        v = varcomp[varcomp["model"] == f"alliance_levels_{k}"].set_index("component")
        assert "therapist" not in v.index     # one therapist: the level was dropped
        share = v.loc["client", "variance"] / v["variance"].sum()
        match = re.search(rf"{k.capitalize()} : (\d+)% between clients and (\d+)% from "
                          "session to session", text)
        assert match, k
        assert int(match[1]) == round(100 * share)
        assert int(match[2]) == round(100 * (1 - share))
    assert "therapist differences cannot be estimated" in text
    assert "1 (lowest) to 7 (highest)" in text
    # alliance over sessions: two sessions per client, so one common slope, and it says so
    change = pd.read_csv(tmp / "results" / "alliance_change.csv")
    assert change["status"].eq("fitted").all() and change["sd_client_slope"].isna().all()
    assert "No client has three or more rated sessions" in text
    # printed at the decimals of the style's interval rule (tables.with_interval): the
    # same as the secondary table and Table 6
    slope, interval, _ = with_interval(*change.loc[0, ["slope", "conf_low", "conf_high"]])
    assert f"{slope} points per session" in text and f"CI {interval}" in text
    # both raters: agreement from the describe step's table
    agreement = pd.read_csv(tmp / "results" / "describe" / "rater_agreement.csv")
    goal = agreement[(agreement["scale"] == "goal") & (agreement["session"] == "all")].iloc[0]
    assert (f"Goal : clients rated {goal['mean_difference']:.2f} points higher than their "
            "therapists") in text
    # the pipeline wrote the figures and tables the reports show: the figures of the
    # alliance alone (NOTES, "Figures are drawn once"), none of the outcome's
    made = sorted(p.name for p in (tmp / "figures").iterdir())
    assert made == sorted(f"{name}.{ext}" for ext in ("csv", "png", "svg") for name in
                          ("alliance_shares", "distributions", "reliability", "trajectories"))
    for name in ("overview", "psychometrics", "sensitivity", "power"):
        page = (tmp / f"{name}.html").read_text()
        assert "Traceback" not in page and "output_error" not in page, name
    assert (tmp / "tables" / "alliance_levels.md").is_file()
    assert (tmp / "tables" / "alliance_change.md").is_file()
    assert not (tmp / "tables" / "primary.md").exists()
