"""The reports read honestly on degenerate data, not only on the shipped simulated data.

``test_probes_quiet.py`` runs every step on five degenerate shapes; here the reports that
showed defects on them are rendered (every report was rendered on every shape once, by
hand: no cell raised and no kernel wrote to stderr) and read as a reader reads them. What
was wrong: on constant alliance the last-session line said "+0.00 points (95% CI 0.00 to
0.00); 0% rated it lower" (each client constant: "-0.00 ...; 25% rated it lower", from
rounding), the episode figures were empty axes, the invented-series text described a
figure that was not drawn, the models report said "Therapists account for 0%" with one
therapist (the level had been dropped) and "The shares above are point estimates" with
no share above; on the real-shaped fixture (two raters, no outcome) tables printed
``alliance_total`` and the ruptures report showed its wellbeing section without an
outcome, and an empty average-course figure (every episode censored).
"""

from __future__ import annotations

import gc
import html
import re
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline import models as M
from pipeline.labels import FOR_THE_ANALYST, advised, without_advice
from pipeline.models.checks import collinear_terms
from pipeline.report import (
    NEEDS_POWER,
    NEEDS_PRIMARY,
    escape,
    not_fitted_words,
    reason_words,
    skipped_tags,
    tagged_models,
    together,
)
from pipeline.ruptures import plots
from pipeline.ruptures.endings import NO_CHANGE_WITHIN, last_session
from pipeline.tables import lr_not_tested, lr_table
from tests.test_models import read_clients, read_data
from tests.test_probes_quiet import _run_every_step, _shape
from tests.test_report_content import table_rows
from tests.test_report_numbers import leading_zeros

ROOT = Path(__file__).resolve().parents[1]


def _text(page: str) -> str:
    body = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page[page.index("<body"):],
                  flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def _axes_text(fig: plt.Figure) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


_CELL = re.compile(r'<div class="jp-Cell (jp-MarkdownCell|jp-CodeCell)([^"]*)"')
_HEADING = re.compile(r"<h([1-3])[^>]*>(.*?)</h\1>", re.S)


def _shows_something(fragment: str) -> bool:
    """Whether an HTML fragment has text, a table or a figure for a reader."""
    if re.search(r"<(img|table|svg)\b", fragment):
        return True
    text = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", fragment, flags=re.S)
    return bool(html.unescape(re.sub(r"<[^>]+>", " ", text)).replace("\u00b6", "").strip())


def empty_sections(page: str) -> list[str]:
    """The sections (h2/h3 to the next h1-h3) of a rendered report with nothing under
    their heading, or whose computed part shows nothing: code cells (the report's
    results) that all gave no output, under a heading with only its explanation.
    Each section must show its content or say in a sentence why it cannot."""
    body = page[page.index("<body"):]
    starts = [(m.start(), m[1] == "jp-CodeCell", "jp-mod-noOutputs" in m[2])
              for m in _CELL.finditer(body)]
    sections: list[dict] = []
    for i, (start, code, no_output) in enumerate(starts):
        cell = body[start:starts[i + 1][0] if i + 1 < len(starts) else len(body)]
        pieces = _HEADING.split(cell)     # text, level, title, text, level, title, ...
        if code and sections:
            sections[-1]["code"] += 1
            sections[-1]["output"] += not no_output
        if sections and (not code or not no_output) and _shows_something(pieces[0]):
            sections[-1]["shown"] = True
        for k in range(1, len(pieces), 3):
            title = " ".join(html.unescape(re.sub(r"<[^>]+>", "", pieces[k + 1]))
                             .replace("\u00b6", "").split())
            sections.append({"title": title, "level": int(pieces[k]), "code": 0,
                             "output": 0, "shown": _shows_something(pieces[k + 2])})
    found = []
    for sec in sections:
        if sec["level"] == 1:
            continue
        if not sec["shown"]:
            found.append(f"{sec['title']}: nothing under the heading")
        elif sec["code"] and not sec["output"]:
            found.append(f"{sec['title']}: its results show nothing")
    return found


# ----------------------------------------------------------------- the pieces, fast


def _series(scores: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"client_id": c, "session": s + 1, "score": v}
                         for c, values in scores.items() for s, v in enumerate(values)])


def _page(*cells: tuple[str, str]) -> str:
    """A rendered report as nbconvert writes it (inputs hidden): ("md", html) cells and
    ("code", output html or "") cells."""
    out = []
    for kind, inner in cells:
        if kind == "md":
            out.append('<div class="jp-Cell jp-MarkdownCell jp-Notebook-cell">'
                       f'<div class="jp-RenderedMarkdown">{inner}</div></div>')
        elif inner:
            out.append('<div class="jp-Cell jp-CodeCell jp-Notebook-cell jp-mod-noInput">'
                       f'<div class="jp-OutputArea">{inner}</div></div>')
        else:
            out.append('<div class="jp-Cell jp-CodeCell jp-Notebook-cell jp-mod-noOutputs '
                       'jp-mod-noInput">\n</div>')
    return "<html><body>" + "\n".join(out) + "</body></html>"


def test_an_empty_section_is_found() -> None:
    """On constant alliance the models report's "How much do therapists differ?" kept its
    heading and explanation with nothing computed under it."""
    head = '<h3 id="x">How much do therapists differ?<a class="anchor-link">\u00b6</a></h3>'
    explained = ("md", head + "<p>The therapist variance is easier to read as a range.</p>")
    nxt = ("md", "<h3>The alliance over sessions</h3><p>Growth models.</p>")
    assert empty_sections(_page(explained, ("code", ""), nxt)) == [
        "How much do therapists differ?: its results show nothing"]
    assert empty_sections(_page(("md", head), nxt)) == [
        "How much do therapists differ?: nothing under the heading"]
    assert empty_sections(_page(("md", "<h2>A</h2>"), ("md", "<h3>B</h3><p>b</p>"))) == [
        "A: nothing under the heading"]
    # a result, a sentence saying why there is none, a table or a figure: not empty
    for shown in ("<p>No alliance model could be estimated.</p>", "<table></table>",
                  '<img src="data:image/png;base64,AA==">'):
        assert empty_sections(_page(explained, ("code", shown), nxt)) == []
    # prose without results (an explanation, a section of subsections), and a cell of
    # helpers without output beside a cell with output: not empty
    assert empty_sections(_page(("md", "<h2>Within and between</h2><p>Two parts.</p>"),
                                ("md", "<h2>Results</h2><p>Read so.</p>"), ("code", ""),
                                ("code", "<p>b = 0.12</p>"))) == []
    # the title heading (h1) needs nothing of its own
    assert empty_sections(_page(("md", "<h1>Report</h1>"), nxt)) == []


def test_last_session_says_why_when_no_client_varies() -> None:
    # each client constant (clients differ); 4.1 + rounding: totals differ by ~1e-16
    flat = _series({f"c{i}": [3 + i / 10 + 1e-16 * (s % 2) for s in range(4)]
                    for i in range(6)})
    row = last_session(flat, 5, 0.95).iloc[0]
    assert row["n_clients"] == 6 and row["note"] == NO_CHANGE_WITHIN
    assert np.isnan(row[["mean_difference", "conf_low", "conf_high", "share_lower"]]
                    .astype(float)).all()
    # one client varies: the comparison is computed, by hand
    varied = _series({**{f"c{i}": [4.0, 4.0, 4.0] for i in range(5)}, "v": [4.0, 5.0, 3.0]})
    row = last_session(varied, 5, 0.95).iloc[0]
    assert row["note"] == "" and row["mean_difference"] == pytest.approx(-1.5 / 6)
    assert row["share_lower"] == pytest.approx(100 / 6)


def test_episode_figures_say_in_words_that_nothing_was_found() -> None:
    prev = pd.DataFrame({"criterion": ["gumz_1sd", "gumz_1sd"], "label": ["Gumz 1 SD"] * 2,
                         "rater": "client", "scale": ["total", "goal"], "n_series": 0,
                         "n_episodes": [0.0, 0.0], "pct_clients": [np.nan, np.nan]})
    fig, data = plots.prevalence(prev)
    assert data.empty and plots.NO_EPISODES in _axes_text(fig)
    plt.close(fig)
    suppressed = prev.assign(n_episodes=[np.nan, 3.0])        # blank: fewer than min_cell
    fig, _ = plots.prevalence(suppressed)
    assert "suppressed" in _axes_text(fig) and plots.NO_EPISODES not in _axes_text(fig)
    plt.close(fig)
    assert plots.episodes_found(prev, "gumz_1sd") == 0
    assert plots.episodes_found(suppressed, "gumz_1sd") is None
    course = pd.DataFrame({"criterion": "gumz_1sd", "status": "censored",
                           "variable": "alliance", "offset": [0], "n": [9.0], "mean": [-1.0],
                           "sd": [0.1], "conf_low": [-1.1], "conf_high": [-0.9],
                           "suppressed": [False]})
    for n_episodes, words in ((0, plots.NO_EPISODES), (9, "Too few repaired or unrepaired")):
        fig, data = plots.course(course, "gumz_1sd", n_episodes=n_episodes)
        assert data.empty and words in _axes_text(fig)
        plt.close(fig)
    # something to draw: no message
    fig, data = plots.course(course.assign(status="repaired"), "gumz_1sd", n_episodes=9)
    assert len(data) == 1 and _axes_text(fig) == ""
    plt.close(fig)


def test_course_figure_of_an_alliance_only_run_has_the_alliance_panel_only(
        tmp_path: Path) -> None:
    """An alliance-only run drew an empty "Wellbeing around an episode" panel."""
    from pipeline.ruptures.stage import _draw_figures

    rows = [{"criterion": "gumz_1sd", "status": status, "variable": "alliance",
             "offset": offset, "n": 9.0, "mean": -0.5 * (offset == 0), "sd": 0.1,
             "conf_low": -0.6, "conf_high": 0.1, "suppressed": False}
            for status in ("repaired", "unrepaired") for offset in (-1, 0, 1)]
    course = pd.DataFrame(rows)
    fig, data = plots.course(course, "gumz_1sd", "Gumz 1 SD", n_episodes=9,
                             with_outcome=False)
    assert len(fig.axes) == 1 and len(data) == 6
    assert fig.axes[0].get_title() == "Alliance around an episode (Gumz 1 SD)"
    plt.close(fig)
    # with an outcome: both panels, as before (the wellbeing one says it has nothing)
    fig, _ = plots.course(course, "gumz_1sd", "Gumz 1 SD", n_episodes=9)
    assert [ax.get_title() for ax in fig.axes][1] == "Wellbeing around an episode"
    plt.close(fig)
    # a PHQ-9 run titled and labelled the panel "wellbeing"
    fig, _ = plots.course(course, "gumz_1sd", "Gumz 1 SD", n_episodes=9,
                          outcome_label="depression")
    assert fig.axes[1].get_title() == "Depression around an episode"
    assert fig.axes[1].get_ylabel() == "depression (deviation from the client's mean)"
    plt.close(fig)
    # the stage's declared output is still written, with the one panel
    prev = pd.DataFrame({"criterion": ["gumz_1sd"], "label": ["Gumz 1 SD"], "rater": "client",
                         "scale": ["total"], "n_series": 9, "n_episodes": [9.0],
                         "pct_clients": [40.0]})
    _draw_figures(prev, course, "gumz_1sd", "Gumz 1 SD", tmp_path, with_outcome=False)
    svg = (tmp_path / "ruptures_course.svg").read_text(encoding="utf-8")
    texts = " ".join(re.findall(r"<!-- (.*?) -->", svg))
    assert "Alliance around an episode" in texts and "Wellbeing" not in texts
    assert set(pd.read_csv(tmp_path / "ruptures_course.csv")["variable"]) == {"alliance"}


def test_reasons_read_in_words_and_user_text_stays_escaped() -> None:
    """Reasons showed raw term names and keys ("goal_within (zero on every row)",
    "C(approach)[T.pdt]", "model person_mean|lag0|none|reml|min1: ...")."""
    x = np.column_stack([np.ones(6), np.arange(6.0), np.zeros(6), np.zeros(6)])
    names = ["Intercept", "time", "goal_within", "goal_within:C(approach)[T.<b>pdt</b>]"]
    assert collinear_terms(x, names, 1e-7) == [
        "Goal (within client) and Goal (within client) \u00d7 Approach: <b>pdt</b> are zero "
        "on every row (they do not vary)"]
    reason = ("model person_mean|lag0|none|reml|min1: the fixed effects are rank deficient: "
              "Goal (within client) \u00d7 Approach: <b>pdt</b> is zero on every row")
    assert reason_words(reason).startswith("the fixed effects are rank deficient: Goal")
    assert reason_words(np.nan) == ""
    words = not_fitted_words("not estimable", reason)
    assert words.startswith("not estimable: the fixed effects") and "person_mean" not in words
    assert "<b>" not in escape(words) and "&#60;b&#62;pdt" in escape(words)
    assert not_fitted_words("failed", np.nan, "RuntimeError: x") == "not estimable: RuntimeError: x"
    assert not_fitted_words("skipped", "client covariate 'modality' has one level") == (
        "skipped: client covariate 'modality' has one level")
    # the advice to the analyst is in the message (the log, fit_statistics.csv), not in
    # the report's words
    message = advised("model growth: the outcome is constant (4) on all 130 rows, so "
                      "there is no variance to model", "check the scoring of the outcome")
    assert message == ("model growth: the outcome is constant (4) on all 130 rows, so there "
                       "is no variance to model. For the analyst: check the scoring of the "
                       "outcome")
    assert not_fitted_words("not estimable", message) == (
        "not estimable: the outcome is constant (4) on all 130 rows, so there is no "
        "variance to model")
    assert without_advice("no advice here. Really.") == "no advice here. Really."


def test_one_reason_for_goal_task_and_bond_is_said_once() -> None:
    """The alliance-levels and growth summaries said "goal: <reason>; task: <reason>;
    bond: <reason>" with one and the same reason."""
    why = "not estimable: the outcome is constant"
    assert together(["Goal", "Task", "Bond"], [why] * 3) == f"Goal, task and bond: {why}"
    assert together(["Goal", "Task", "Bond"], [why, "not converged", why]) == (
        f"Goal and bond: {why}; task: not converged")
    assert together(["Goal"], ["skipped"]) == "Goal: skipped"
    assert together(["Goal", "Task"], ["skipped", "skipped"]) == "Goal and task: skipped"


def test_a_comparison_with_a_model_that_is_not_estimable_says_why() -> None:
    """A covariate level held by fewer than report.min_cell clients: the moderation models
    are not estimable, and the likelihood-ratio table printed a row of empty cells."""
    clients = read_clients("default")
    rare = clients["client_id"].isin(clients["client_id"].iloc[:3])
    clients.loc[rare, "approach"] = "<b>rare</b>"
    fits = M.fit_all(read_data("default"), clients, {"df_method": "wald"},
                     models=["growth", "primary", "approach_main", "moderation_approach"],
                     verbose=False, min_level_clients=5)
    stats = M.fit_statistics(fits)
    status = dict(zip(stats["model"], stats["status"], strict=True))
    assert status["approach_main"] == status["moderation_approach"] == "not estimable"
    lr = M.lr_tests(fits)
    by = lr.set_index("comparison")
    assert by.loc["moderation_approach", "note"] == (
        "not tested: approach_main is not estimable and moderation_approach is not estimable")
    assert by.loc["alliance_vs_growth", "statistic"] > 0
    described = {c.name: c.description for c in M.load_specs().comparisons}
    table = lr_table(lr, described)
    assert table["Comparison"].tolist() == [described["alliance_vs_growth"]]   # no empty row
    assert lr_not_tested(lr, described, stats) == [
        f"\u201c{described['moderation_approach']}\u201d could not be tested: the model "
        "\u201cPrimary model plus therapeutic approach (reference for the moderation test)"
        "\u201d and the model \u201cWithin-client alliance by therapeutic approach\u201d are "
        "not estimable (see above)."]
    # without the statuses, the table's own note
    assert lr_not_tested(lr, described) == [
        f"\u201c{described['moderation_approach']}\u201d could not be tested: "
        "approach_main is not estimable and moderation_approach is not estimable."]


def test_the_primary_models_sections_are_left_out_when_it_has_no_numbers(
        tmp_path: Path) -> None:
    params_file = _shape(tmp_path, "constant_alliance")
    parameters = {"params_file": str(params_file)}
    assert skipped_tags(parameters, ROOT) == set()          # no results yet: keep all
    (tmp_path / "results").mkdir()
    stats = tmp_path / "results" / "fit_statistics.csv"
    for status, skipped in (("fitted", set()), ("singular", set()),
                            ("not estimable", {NEEDS_PRIMARY, NEEDS_POWER}),
                            ("not converged", {NEEDS_PRIMARY, NEEDS_POWER})):
        pd.DataFrame({"model": ["growth", "primary"], "status": ["fitted", status]}).to_csv(
            stats, index=False)
        assert skipped_tags(parameters, ROOT) == skipped, status
    # the power report's sections follow power.model, whichever model it names
    settings = yaml.safe_load(params_file.read_text(encoding="utf-8"))
    settings["power"]["model"] = "growth"
    other = tmp_path / "params_growth.yaml"
    other.write_text(yaml.safe_dump(settings), encoding="utf-8")
    assert tagged_models(settings) == {NEEDS_PRIMARY: "primary", NEEDS_POWER: "growth"}
    assert skipped_tags({"params_file": str(other)}, ROOT) == {NEEDS_PRIMARY}
    pd.DataFrame({"model": ["growth", "primary"], "status": ["not estimable", "fitted"]}
                 ).to_csv(stats, index=False)
    assert skipped_tags({"params_file": str(other)}, ROOT) == {NEEDS_POWER}
    # the staging area the pipeline renders from, not the settings file's folder
    staged = tmp_path / "build"
    (staged / "results").mkdir(parents=True)
    pd.DataFrame({"model": ["primary"], "status": ["fitted"]}).to_csv(
        staged / "results" / "fit_statistics.csv", index=False)
    assert skipped_tags(parameters, ROOT, staged) == set()


# ------------------------------------------------------------- the rendered reports


def _render(tmp: Path, monkeypatch: pytest.MonkeyPatch, shape: str,
            names: tuple[str, ...]) -> dict[str, str]:
    """Run every step on ``shape``, render ``names``; stderr/error outputs are failures."""
    import pipeline.report as report

    monkeypatch.setattr("pipeline.parallel._can_fork", lambda: False)
    params_file = _shape(tmp, shape)
    with warnings.catch_warnings():  # sockets an earlier render's kernels left behind
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert _run_every_step(params_file) == []
    streams: list[str] = []
    clean = report.clean_executed

    def keep_streams(nb):  # type: ignore[no-untyped-def]  # the kernels' stderr and errors
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error" or out.get("name") == "stderr":
                    streams.append(str(out.get("text") or out.get("evalue")))
        return clean(nb)

    monkeypatch.setattr(report, "clean_executed", keep_streams)
    jobs = [(ROOT / "notebooks" / f"{n}.py", tmp / f"{n}.html") for n in names]
    report.render_many(jobs, {"params_file": str(params_file)}, cwd=ROOT)
    assert streams == []
    raw = {n: (tmp / f"{n}.html").read_text(encoding="utf-8") for n in names}
    pages = {n: _text(page) for n, page in raw.items()}
    for name, page in raw.items():
        # every section shows its content or says why it cannot
        assert empty_sections(page) == [], name
        # statistics that cannot exceed 1 without a leading zero (APA 7)
        assert leading_zeros(pages[name], table_rows(page)) == [], name
    for name, text in pages.items():
        # the checks' advice is for the analyst (the run log), not for the report
        assert FOR_THE_ANALYST not in text and "Remove one of" not in text, name
        for bad in (r"\bnan\b", r"\bNaN\b", r"\bNone\b", r"\binf\b", "Traceback",
                    r"\[\]", "alliance_total", r"\+0\.00 points", r"[-\u2212]0\.0+\b",
                    # raw term names and keys in reasons; "model primary: ..." prefixes
                    r"\b(goal|task|bond|total)_(within|between|client|therapist)\b",
                    r"\[T\.", r"person_mean\|", r"\bmodel [a-z_]+:"):
            assert not re.search(bad, text), f"{name}: {bad}"
    return pages


@pytest.mark.slow
def test_constant_alliance_reports_say_what_cannot_be_computed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = _render(tmp_path, monkeypatch, "constant_alliance",
                    ("overview", "psychometrics", "ruptures", "models", "sensitivity",
                     "power"))
    rup, models = pages["ruptures"], pages["models"]
    assert "0% rated it lower" not in rup and "0.00 to 0.00" not in rup
    assert f"Among clients with three or more rated sessions, {NO_CHANGE_WITHIN}." in rup
    assert ("No illustration: no rule has a threshold for the total score in these data"
            in rup)
    assert (f"{plots.NO_EPISODES} under any rule or score, so there is no figure" in rup)
    assert "No rupture episode was found under Gumz 1 SD" in rup
    # the stage's figures (declared outputs, always written) say it in their axes
    for name in ("ruptures_prevalence", "ruptures_course"):
        svg = (tmp_path / "figures" / f"{name}.svg").read_text(encoding="utf-8")
        assert "No rupture episodes were found" in " ".join(re.findall(r"<!-- (.*?) -->", svg))
    # one therapist (no therapist_id): the growth model has no therapist level
    assert "Therapists account for" not in models
    assert "The therapists' share of the variance in wellbeing cannot be estimated" in models
    assert "The shares above are point estimates" not in models   # there is no share above
    stats = pd.read_csv(tmp_path / "results" / "fit_statistics.csv")
    growth = stats[stats["model"] == "growth"].iloc[0]
    assert pd.isna(growth["icc_therapist"]) and 0 < growth["icc_client"] < 1
    # the primary model is not estimable: said once, in words, and its sections left out
    # (they showed their headings and explanations with nothing under them)
    zero = ("the fixed effects are rank deficient: Goal (within client), Task (within "
            "client), Bond (within client), Goal (between clients), Task (between clients) "
            "and Bond (between clients) are zero on every row (they do not vary)")
    assert f"The primary model could not be estimated on these data: {zero}." in models
    for heading in ("Reading the intercept and time", "Within- versus between-client effects",
                    "What the effects mean in points of the outcome",
                    "How much varies between therapists", "A parametric bootstrap",
                    "Does the model fit?"):
        assert heading not in models
    assert "Secondary models" in models and "Within and between: two different" in models
    # the moderation model's reason with the project's labels (the level is the user's)
    assert "Goal (within client) \u00d7 Approach: pdt" in models
    # no comparison could be made: no table of empty cells, a sentence each
    assert "AIC (reduced, full)" not in models
    assert ("\u201cDo goal, task and bond (within and between) improve on time alone?\u201d "
            "could not be tested: the primary model is not estimable (see above).") in models
    assert ("could not be tested: the model \u201cPrimary model plus modality (reference for "
            "the moderation test)\u201d and the model \u201cWithin-client alliance by modality "
            "(in person, video)\u201d were skipped (see above)") in models
    sens, power = pages["sensitivity"], pages["power"]
    assert f"not estimable: {zero}" in sens and "Effects side by side" not in sens
    # the reasons of lag 0 and lag 1, without the checks' advice to the analyst
    assert (f"No specification could be estimated on these data: {zero}; the fixed effects "
            "are rank deficient: Goal (within client, previous session)") in sens
    assert sens.count("rank deficient") == 5 + 2     # five models' statuses; lag 0 and lag 1
    assert f"the primary model is not estimable: {zero}." in power
    # the power report's sections read the simulation from power.model (here the primary
    # model): left out, said once which (they showed headings with nothing under them)
    assert power.count("No power analysis on these data") == 1
    assert "The sections that read the simulation (what was simulated" in power
    for heading in ("What was simulated", "The alliance process.", "Power by design",
                    "Failed and singular fits.", "The smallest design that reaches",
                    "References"):
        assert heading not in power, heading
    assert "Planning a real study" in power
    # goal, task and bond fail alike (the alliance is constant): the reason once for all
    # three, where and over sessions (it was "goal: ...; task: ...; bond: ..." each time)
    assert models.count("Goal, task and bond: not estimable: the outcome is constant") == 2
    assert "No alliance model could be estimated. Goal, task and bond" in models
    # the sections that read the alliance models say why they are empty, and the right why
    assert ("No range of therapists' mean ratings can be given: no alliance model could be "
            "estimated on these data (see above).") in models
    assert "No intervals: there is no share to bootstrap" in models
    assert "had to be simplified" not in models
    assert ("No rupture episode was found under any rule, so no episode has a start or a "
            "length to show.") in rup
    assert "No growth model of the alliance could be estimated. Goal, task and bond" in models
    assert "task: not estimable" not in models


@pytest.mark.slow
def test_real_shaped_reports_name_scores_in_words_and_skip_the_outcome(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = _render(tmp_path, monkeypatch, "realshape", ("overview", "psychometrics",
                                                         "ruptures"))
    rup = pages["ruptures"]
    assert "total (therapist)" in pages["psychometrics"]
    assert "Alliance-only analysis: no outcome file was given" in rup
    assert "Ruptures and outcome" not in rup and "Sanity check" not in rup
    # two sessions per client: every episode is censored, nothing to draw
    assert "Too few repaired or unrepaired episodes to draw the average course" in rup
    # alliance-only: the course is of the alliance alone (the figure had an empty
    # wellbeing panel); the stage's figure is written with the alliance panel only
    assert "Alliance and wellbeing of clients" not in rup
    assert "The alliance of clients (alliance-only analysis: no outcome to draw)" in rup
    svg = (tmp_path / "figures" / "ruptures_course.svg").read_text(encoding="utf-8")
    texts = " ".join(re.findall(r"<!-- (.*?) -->", svg))
    assert "Alliance around an episode" in texts and "Wellbeing" not in texts
