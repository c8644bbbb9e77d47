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
