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

import html
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from pipeline.ruptures import plots
from pipeline.ruptures.endings import NO_CHANGE_WITHIN, last_session
from tests.test_probes_quiet import _run_every_step, _shape

ROOT = Path(__file__).resolve().parents[1]


def _text(page: str) -> str:
    body = re.sub(r"<(style|script)[^>]*>.*?</\1>", " ", page[page.index("<body"):],
                  flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


def _axes_text(fig: plt.Figure) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in ax.texts)


# ----------------------------------------------------------------- the pieces, fast


def _series(scores: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"client_id": c, "session": s + 1, "score": v}
                         for c, values in scores.items() for s, v in enumerate(values)])


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


# ------------------------------------------------------------- the rendered reports


def _render(tmp: Path, monkeypatch: pytest.MonkeyPatch, shape: str,
            names: tuple[str, ...]) -> dict[str, str]:
    """Run every step on ``shape``, render ``names``; stderr/error outputs are failures."""
    import pipeline.report as report

    monkeypatch.setattr("pipeline.parallel._can_fork", lambda: False)
    params_file = _shape(tmp, shape)
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
    pages = {n: _text((tmp / f"{n}.html").read_text(encoding="utf-8")) for n in names}
    for name, text in pages.items():
        for bad in (r"\bnan\b", r"\bNaN\b", r"\bNone\b", r"\binf\b", "Traceback",
                    r"\[\]", "alliance_total", r"\+0\.00 points"):
            assert not re.search(bad, text), f"{name}: {bad}"
    return pages


@pytest.mark.slow
def test_constant_alliance_reports_say_what_cannot_be_computed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pages = _render(tmp_path, monkeypatch, "constant_alliance", ("ruptures", "models"))
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
