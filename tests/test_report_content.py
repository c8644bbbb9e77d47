"""What the reports show, beyond "every cell ran" (nbval --nbval-lax).

The notebooks are rendered from the committed results (as the `render` stage does) and the
HTML is read back as a reader sees it: the primary model's numbers in models.html are
those of results/coefficients.csv in the APA format of pipeline/tables.py; every
author-year citation of a report is in the report's own reference list, hence in
docs/references.yaml; no table prints True/False.
"""

from __future__ import annotations

import base64
import html as html_mod
import re
import struct
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.references import cited_keys, load_bibliography
from pipeline.report import render, render_many
from pipeline.tables import coefficient_table

NOTEBOOKS = ("overview", "psychometrics", "models", "sensitivity", "ruptures", "power")


def _text(fragment: str) -> str:
    return html_mod.unescape(re.sub(r"<[^>]+>", " ", fragment))


def table_rows(page: str) -> list[list[str]]:
    """Cells of every table row of an HTML page, as text."""
    rows = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S):
        cells = re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row, flags=re.S)
        rows.append([" ".join(_text(c).split()) for c in cells])
    return rows


def body_and_references(page: str) -> tuple[str, list[str]]:
    """Readable text of a report before its References heading, and the entries after."""
    parts = re.split(r"<h2[^>]*>\s*References", page, maxsplit=1)
    assert len(parts) == 2, "the report has no References section"
    # Drop embedded images and styles: only what a reader reads.
    body = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", parts[0], flags=re.S)
    body = re.sub(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+", "", body)
    entries = [" ".join(_text(e).split())
               for e in re.findall(r"<p[^>]*>(.*?)</p>", parts[1], flags=re.S)]
    return _text(body), entries


#: The published figures each report draws (``pipeline.figures.show``), in the order shown.
SHOWN = {"overview": ["trajectories", "distributions"], "psychometrics": ["reliability"],
         "models": ["coefficients_within_between", "predicted_wellbeing",
                    "diagnostics_primary", "alliance_shares"],
         "sensitivity": ["sensitivity", "specification_curve"], "ruptures": [],
         "power": ["power_curves"]}


@pytest.fixture(scope="module")
def rendered(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reports rendered from the committed results as the `report` stage does, with
    the figures they show saved into ``figures/`` beside them."""
    out = tmp_path_factory.mktemp("reports")
    jobs = [(root / "notebooks" / f"{n}.py", out / f"{n}.html") for n in NOTEBOOKS]
    render_many(jobs, {"params_file": str(root / "params.yaml")}, cwd=root,
                figures_dir=out / "figures")
    return out


@pytest.fixture(scope="module")
def reports(rendered: Path) -> dict[str, str]:
    return {n: (rendered / f"{n}.html").read_text(encoding="utf-8") for n in NOTEBOOKS}


def embedded_images(page: str) -> list[tuple[bytes, str | None]]:
    """Every PNG embedded in a page, with its ``width`` attribute."""
    found = []
    for tag in re.findall(r"<img [^>]*>", page):
        data = re.search(r'src="data:image/png;base64,([^"]+)"', tag)
        if data:
            width = re.search(r'width="(\d+)"', tag)
            found.append((base64.b64decode(data[1]), width[1] if width else None))
    return found


@pytest.mark.slow
def test_published_figures_are_the_pictures_the_reports_show(
        root: Path, rendered: Path, reports: dict[str, str]) -> None:
    """Each figure file is drawn once, by the report cell that shows it: the report embeds
    the published PNG's very bytes (at the figure's width in inches x 100 px, as the
    inline figure was), and the committed files are those the reports make."""
    names = [n for shown in SHOWN.values() for n in shown]
    made = sorted(p.name for p in (rendered / "figures").iterdir())
    assert made == sorted(f"{n}.{ext}" for n in names for ext in ("csv", "png", "svg"))
    for report, shown in SHOWN.items():
        images = embedded_images(reports[report])
        published = [(rendered / "figures" / f"{n}.png").read_bytes() for n in shown]
        assert [png for png, _ in images if png in published] == published, report
        for png, width in images:
            if png in published:
                pixels = struct.unpack(">I", png[16:20])[0]   # PNG header: width at 150 dpi
                assert width is not None and int(width) == round(pixels / 1.5), report
    for name in names:
        for ext in ("png", "svg", "csv"):
            made_file = rendered / "figures" / f"{name}.{ext}"
            assert made_file.read_bytes() == \
                (root / "reports" / "figures" / f"{name}.{ext}").read_bytes(), made_file.name


@pytest.mark.slow
def test_figure_labels_follow_the_instruments(root: Path, rendered: Path,
                                              params: dict) -> None:
    """The published trajectories and distributions name the outcome by its instrument and
    the alliance by its metric, as the overview report does (not the generic defaults)."""
    from pipeline.instruments import load_instrument

    cfg = params["instruments"]
    outcome = load_instrument(cfg["outcome"], cfg.get("paths") or [])
    alliance = load_instrument(cfg["alliance"], cfg.get("paths") or [])
    for name in ("trajectories", "distributions"):
        # text is drawn as paths; matplotlib keeps each line's text as an SVG comment
        svg = (rendered / "figures" / f"{name}.svg").read_text(encoding="utf-8")
        text = " ".join(re.findall(r"<!-- (.*?) -->", svg))
        assert all(word in text.split() for word in outcome.name.split()), name
        assert "wellbeing" not in text.split(), name
    text = " ".join(re.findall(r"<!-- (.*?) -->", (rendered / "figures" /
                                                   "trajectories.svg").read_text()))
    assert f"mean ({alliance.item_min:g}\u2013{alliance.item_max:g})" in text
    assert "item-mean metric" not in text


@pytest.mark.slow
def test_primary_model_numbers_in_models_html_equal_the_results(
        root: Path, params: dict, reports: dict[str, str]) -> None:
    coefs = pd.read_csv(root / "results" / "coefficients.csv")
    expected = coefficient_table(coefs, ["primary"], float(params["model"]["conf_level"]))
    rows = table_rows(reports["models"])
    header = list(expected.columns)
    assert header in rows, f"no table with the APA header {header} in models.html"
    start = rows.index(header)
    shown = rows[start + 1: start + 1 + len(expected)]
    assert shown == expected.to_numpy().tolist()


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_reports_cite_only_what_their_reference_list_has(reports: dict[str, str],
                                                         name: str) -> None:
    body, entries = body_and_references(reports[name])
    assert entries, f"{name}.html has an empty reference list"
    bib = load_bibliography()
    keys, unmatched = cited_keys(body, bib)
    assert not unmatched, f"{name}.html cites works not in docs/references.yaml: {unmatched}"
    for key in keys:
        work = bib.works[key]
        head = f"{work['authors'][0]}"
        assert any(e.startswith(head) and f"({work['year']})" in e for e in entries), (
            f"{name}.html cites {key} but its reference list does not include it")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_no_table_prints_python_values_or_raw_names(reports: dict[str, str], name: str) -> None:
    cells = [c for row in table_rows(reports[name]) for c in row]
    for bad in ("True", "False", "nan", "std_error", "goal_within", "p_value",
                "alliance_within", "conf_low", "n_clients", "within_clean (max)"):
        assert bad not in cells, f"{name}.html prints '{bad}' in a table"
    # Numbers as the tables module writes them: no float printed at pandas' six decimals.
    raw = [c for c in cells if re.fullmatch(r"-?\d+\.\d{4,}", c)]
    assert not raw, f"{name}.html prints unrounded numbers in a table: {raw[:5]}"
    assert "shared/reference" not in reports[name]
    assert "SIMULATED" in body_and_references(reports[name])[0][:3000]


SOURCE = '''# %% [markdown]
# # Tiny

# %% tags=["parameters"]
answer = 0

# %%
import matplotlib.pyplot as plt
plt.plot([1, 2], [answer, 1]); plt.show()
print("answer", answer)
'''


def test_rendering_together_gives_the_bytes_of_rendering_alone(tmp_path: Path) -> None:
    sources = []
    for name in ("one", "two"):
        path = tmp_path / f"{name}.py"
        path.write_text(SOURCE.replace("Tiny", name))
        sources.append(path)
    together = render_many([(s, tmp_path / "together" / f"{s.stem}.html") for s in sources],
                           {"answer": 7}, cwd=tmp_path)
    for source, html_file in zip(sources, together, strict=True):
        alone = render(source, tmp_path / "alone" / f"{source.stem}.html", {"answer": 7},
                       cwd=tmp_path)
        assert html_file.read_bytes() == alone.read_bytes()
        assert "answer 7" in html_file.read_text()


def test_concurrent_rendering_gives_the_same_bytes_and_stops_on_a_failure(
        tmp_path: Path) -> None:
    import papermill

    here = Path.cwd()
    sources = []
    for name in ("one", "two", "three"):
        path = tmp_path / f"{name}.py"
        path.write_text(SOURCE.replace("Tiny", name))
        sources.append(path)
    two = render_many([(s, tmp_path / "two" / f"{s.stem}.html") for s in sources],
                      {"answer": 3}, cwd=tmp_path, concurrent=2, ahead=0)
    one = render_many([(s, tmp_path / "one" / f"{s.stem}.html") for s in sources],
                      {"answer": 3}, cwd=tmp_path, concurrent=1, ahead=2)
    assert [p.name for p in two] == ["one.html", "two.html", "three.html"]
    assert [p.read_bytes() for p in two] == [p.read_bytes() for p in one]
    # Rendering never moves this process: papermill's cwd is a process-wide chdir that
    # concurrent threads interleave (it once left CI's pytest worker in a temp folder).
    assert Path.cwd() == here
    broken = tmp_path / "broken.py"
    broken.write_text(SOURCE + '\n# %%\nraise RuntimeError("forced failure")\n')
    with pytest.raises(papermill.PapermillExecutionError, match="forced failure"):
        render_many([(broken, tmp_path / "x" / "broken.html"),
                     (sources[0], tmp_path / "x" / "one.html")],
                    {"answer": 3}, cwd=tmp_path, concurrent=2)
    assert not (tmp_path / "x" / "broken.html").exists()


def test_models_report_gives_the_alliance_shares_intervals(root: Path,
                                                           reports: dict[str, str]) -> None:
    """Each alliance_levels_* model bootstrapped (results/bootstrap.csv) has its therapist
    and client shares with their percentile interval in models.html, and the primary
    model's bootstrap table holds only the primary model's rows."""
    boot = pd.read_csv(root / "results" / "bootstrap.csv")
    text = " ".join(_text(reports["models"]).split())
    shares = boot[boot["model"].str.startswith("alliance_levels_")]
    assert set(shares["model"]) == {"alliance_levels_goal", "alliance_levels_task",
                                    "alliance_levels_bond"}
    for (model, quantity), row in shares.set_index(["model", "quantity"]).iterrows():
        if quantity not in ("icc_therapist", "icc_client"):
            continue
        name = "therapist share" if quantity == "icc_therapist" else "client share"
        expected = (f"{name} {row['estimate']:.0%} (95% interval {row['conf_low']:.0%} to "
                    f"{row['conf_high']:.0%})")
        assert expected in text, (model, expected)
    primary_rows = [r for r in table_rows(reports["models"])
                    if r and r[0] in ("SD therapist intercept", "ICC therapist")]
    assert len(primary_rows) == 2, primary_rows


def test_every_figure_has_alternative_text(reports: dict[str, str]) -> None:
    """Each picture in a report says in words what it shows (the front page's line for a
    published figure, pipeline/index.yaml), not nbconvert's "No description" placeholder."""
    from pipeline.figures import describe

    for name, page in reports.items():
        tags = re.findall(r"<img [^>]*>", page)
        assert tags, name
        for tag in tags:
            alt = re.search(r'alt="([^"]*)"', tag)
            assert alt and len(alt.group(1)) > 20, (name, tag[:80])
            assert "No description" not in alt.group(1), name
    assert f'alt="{html_mod.escape(describe("trajectories"), quote=True)}"' in reports[
        "overview"]


@pytest.mark.slow
def test_the_ruptures_reports_intervals_are_labelled_at_the_settings_level(
        root: Path, tmp_path: Path) -> None:
    """The course paragraph (and the last-session line, shown when the endings model
    cannot be fitted) said "95%" whatever ``model.conf_level`` the stage computed their
    intervals at. (Lines whose results record their level, e.g. the outcome models',
    keep the results' 95% here: the committed results were computed at 95%.)"""
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["model"]["conf_level"] = 0.9
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "ruptures.html"
    render_many([(root / "notebooks" / "ruptures.py", out)],
                {"params_file": str(params_file)}, cwd=root, results_root=root)
    text = _text(out.read_text(encoding="utf-8"))
    assert "mean, with 90% intervals" in text and "mean, with 95%" not in text


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_section_shows_something_and_bounded_numbers_have_no_leading_zero(
        reports: dict[str, str], name: str) -> None:
    """A heading with nothing computed under it (tests/test_report_shapes.py has the
    degenerate data), and a statistic that cannot exceed 1 printed with its leading zero
    (the rater-agreement r was "0.45" in the overview's table and ".45" in the models
    report's text; pipeline/table_style.yaml ``no_leading_zero``)."""
    from tests.test_report_numbers import leading_zeros
    from tests.test_report_shapes import empty_sections

    page = reports[name]
    assert empty_sections(page) == []
    text = " ".join(_text(re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page, flags=re.S))
                    .split())
    assert leading_zeros(text, table_rows(page)) == []
