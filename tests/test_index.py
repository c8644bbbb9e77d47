"""The front page lists every report, figure and table, and carries a date-free code stamp."""

from __future__ import annotations

from pathlib import Path

from pipeline.index import build_index, load_descriptions, notebook_title, report_sources
from pipeline.verify import code_stamp


def test_every_published_figure_and_table_has_a_line(root: Path) -> None:
    desc = load_descriptions()
    figures = {p.stem for folder in ("figures", "ruptures")
               for p in (root / "reports" / folder).glob("*.png")}
    tables = {p.stem for p in (root / "reports" / "tables").glob("*.html")}
    assert figures and figures <= set(desc["figures"]), sorted(figures - set(desc["figures"]))
    assert tables and tables <= set(desc["tables"]), sorted(tables - set(desc["tables"]))


def test_front_page(root: Path, params: dict) -> None:
    sources = report_sources(root / "notebooks", load_descriptions()["reports_order"])
    assert [s.stem for s in sources][:4] == ["overview", "psychometrics", "models", "sensitivity"]
    page = build_index(root, params, sources, root / "reports" / "figures",
                       root / "reports" / "tables", more_figures=[root / "reports" / "ruptures"])
    for source in sources:
        assert f'href="{source.stem}.html"' in page
        assert notebook_title(source) in page
    assert 'href="figures/trajectories.csv"' in page
    assert 'href="tables/primary.tex"' in page
    assert "SIMULATED" in page
    assert code_stamp(root) in page
    assert "data/simulated/alliance.csv" not in page  # input files by name, not their folder
    assert "http" not in page  # self-contained: no scripts, fonts or links off the page
    assert '<img src="figures/trajectories.png"' in page
    # the ruptures stage's figures (reports/ruptures/) are listed too, with their lines
    assert 'href="ruptures/ruptures_course.svg"' in page
    assert load_descriptions()["figures"]["ruptures_prevalence"].split()[0] in page


def test_user_values_are_escaped(root: Path, params: dict, tmp_path: Path) -> None:
    mine = {**params, "data": {**params["data"], "simulated": False,
                               "alliance": "<img src=x>.csv"}}
    page = build_index(root, mine, [], tmp_path, tmp_path)
    assert "<img" not in page
    assert "&lt;img src=x&gt;.csv" in page


def test_an_alliance_only_run_describes_the_figures_it_drew(root: Path, params: dict,
                                                            tmp_path: Path) -> None:
    """The front page said "Alliance and wellbeing around a rupture session" (and the
    trajectories "goal, task, bond and wellbeing") in alliance-only runs, whose figures
    have the alliance panel only; the line is the figure's alt text in the reports too."""
    from pipeline.figures import describe

    for name in ("ruptures_course", "trajectories", "distributions", "reliability"):
        (tmp_path / f"{name}.png").write_bytes(b"")
    alone = {**params, "data": {**params["data"], "outcome": ""}}
    page = build_index(root, alone, [], tmp_path, tmp_path)
    with_wb = build_index(root, params, [], tmp_path, tmp_path)
    assert "and wellbeing" not in page.split("<h2>Figures</h2>")[1].split("<h2>Tables")[0]
    assert ("Alliance around a rupture session (deviation from each client&#x27;s mean), "
            "repaired and unrepaired episodes, with intervals (alliance-only analysis: no "
            "outcome).") in page
    assert "Mean goal, task and bond at each session" in page
    assert ("Alliance and wellbeing around a rupture session" in with_wb
            and "Mean goal, task, bond and wellbeing at each session" in with_wb)
    assert describe("ruptures_course", with_outcome=False).startswith(
        "Alliance around a rupture session")
    assert describe("ruptures_course") == (
        "Alliance and wellbeing around a rupture session (deviation from each client's "
        "mean), repaired and unrepaired episodes, with intervals.")
    # a figure with one line has it in both kinds of run
    assert describe("reliability", with_outcome=False) == describe("reliability")


def test_a_symptom_outcome_is_named_on_the_front_page(root: Path, params: dict,
                                                      tmp_path: Path) -> None:
    """A PHQ-9 run's front page said "Working alliance and wellbeing" and "Mean goal, task,
    bond and wellbeing at each session": the outcome is named by its construct."""
    from pipeline.figures import describe

    for name in ("ruptures_course", "trajectories", "coefficients_within_between"):
        (tmp_path / f"{name}.png").write_bytes(b"")
    phq9 = {**params, "instruments": {**params["instruments"], "outcome": "phq9",
                                      "outcome_higher_is_better": False}}
    page = build_index(root, phq9, [], tmp_path, tmp_path)
    assert "<title>Working alliance and depression: reports, figures and tables</title>" in page
    assert "Mean goal, task, bond and depression at each session" in page
    assert "Alliance and depression around a rupture session" in page
    assert "effects of goal, task and bond on depression," in page
    assert "wellbeing" not in page
    turned = {**phq9, "instruments": {**phq9["instruments"], "outcome_higher_is_better": True}}
    assert "Working alliance and reversed depression" in build_index(root, turned, [],
                                                                       tmp_path, tmp_path)
    assert describe("trajectories", outcome="anxiety") == (
        "Mean goal, task, bond and anxiety at each session, with confidence intervals.")
