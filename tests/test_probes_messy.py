"""A small messy export of one practice: one therapist, items with an outcome.

Red-team probes of a user's own data (2026-11-23): the steps run from a scratch project on
a generated data set shaped like a small practice's export (one therapist, no
``therapist_id`` column, 3-8 sessions per client); the models report must say why a
model's intervals are absent, and must not quote the shipped data's design.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_COLUMN = "<script>alert(1)</script>"


def _practice(folder: Path, n_clients: int = 24, seed: int = 5) -> tuple[Path, Path]:
    """WAI-SR and SWEMWBS items of one therapist's clients (no therapist_id column)."""
    rng = np.random.default_rng(seed)
    alliance, outcome = [], []
    for c in range(1, n_clients + 1):
        level = rng.normal(0, 0.5)
        for s in range(1, int(rng.integers(3, 9)) + 1):
            latent = 3.7 + level + 0.03 * s + rng.normal(0, 0.35)
            items = np.clip(np.round(latent + rng.normal(0, 0.5, 12)), 1, 5)
            alliance.append({"client_id": f"P{c:02d}", "session": s,
                             **{f"wai_sr_{i + 1}": int(v) for i, v in enumerate(items)}})
            wb = np.clip(np.round(3 + 0.4 * (latent - 3.7) + rng.normal(0, 0.7, 7)), 1, 5)
            outcome.append({"client_id": f"P{c:02d}", "session": s,
                            **{f"swemwbs_{i + 1}": int(v) for i, v in enumerate(wb)}})
    folder.mkdir(parents=True)
    paths = folder / "alliance.csv", folder / "outcome.csv"
    # a column outside the contract whose name is markup (it is named in a warning)
    pd.DataFrame(alliance).assign(**{HOSTILE_COLUMN: 1}).to_csv(paths[0], index=False)
    pd.DataFrame(outcome).to_csv(paths[1], index=False)
    return paths


def _params(tmp: Path, alliance: Path, outcome: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {"alliance": str(alliance), "outcome": str(outcome), "clients": "",
                      "simulated": False}
    params["bootstrap"]["replications"] = 20
    params["parallel"]["workers"] = 1
    (tmp / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp / "params.yaml"


def _text(page: str) -> str:
    body = re.sub(r"<style.*?</style>", "", page[page.index("<body"):], flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture(scope="module")
def one_therapist(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The models report's HTML (the overview's is written beside it)."""
    from pipeline.cli import main
    from pipeline.report import render_many
    from tests.test_probes_shapes import _steps

    tmp = tmp_path_factory.mktemp("one_therapist")
    params_file = _params(tmp, *_practice(tmp / "data"))
    results = _steps(params_file)
    p = ["--params", str(params_file), "--validated", str(tmp / "interim" / "validated"),
         "--scored", str(tmp / "interim" / "scored.csv")]
    assert main(["fit", *p, "--out", str(results)]) == 0
    assert main(["bootstrap", *p, "--out", str(results / "bootstrap.csv")]) == 0
    render_many([(ROOT / "notebooks" / f"{name}.py", tmp / f"{name}.html")
                 for name in ("models", "overview")],
                {"params_file": str(params_file)}, cwd=ROOT)
    return tmp, (tmp / "models.html").read_text()


@pytest.mark.slow
def test_one_therapist_report_says_why_there_are_no_bootstrap_intervals(
        one_therapist: tuple[Path, str]) -> None:
    """The bootstrap refuses a simplified fit; the report said only that the table was
    "absent or empty (the bootstrap stage writes it)", as if the stage had not run."""
    tmp, page = one_therapist
    assert "Traceback" not in page and "output_error" not in page
    stats = pd.read_csv(tmp / "results" / "fit_statistics.csv").set_index("model")
    assert stats.loc["primary", "status"] in ("fitted", "singular")
    assert stats.loc["primary", "simplification"].startswith("therapist level dropped: 1 ")
    assert len(pd.read_csv(tmp / "results" / "bootstrap.csv")) == 0
    text = _text(page)
    assert ("No bootstrap intervals: the model primary could only be fitted after a "
            "simplification (therapist level dropped: 1 therapist") in text
    assert "the bootstrap refits a model exactly as specified" in text
    assert "absent or empty" not in text
    # the shipped data's design is not quoted as if it were the user's
    assert "30 therapists" not in text


@pytest.mark.slow
def test_a_column_name_that_is_markup_is_shown_as_text(one_therapist: tuple[Path, str]) -> None:
    """The unused-columns warning names the column; the overview's warnings table showed it
    as live markup (a ``<script>`` element in the report)."""
    tmp, _ = one_therapist
    overview = (tmp / "overview.html").read_text()
    assert "Traceback" not in overview and "output_error" not in overview
    assert "<script>alert(1)" not in overview
    assert f"not used: {HOSTILE_COLUMN}" in _text(overview)


@pytest.mark.parametrize("blank", ["alliance", "outcome"])
def test_a_file_with_nothing_scorable_stops_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], blank: str) -> None:
    """Every item blank: validation passed (a blank item is allowed), every model was "not
    estimable" and the ruptures step stopped with a traceback (KeyError 'criterion')."""
    from pipeline.cli import main

    alliance, outcome = _practice(tmp_path / "data")
    path = alliance if blank == "alliance" else outcome
    frame = pd.read_csv(path)
    items = [c for c in frame.columns if re.fullmatch(r"(wai_sr|swemwbs)_\d+", c)]
    frame.assign(**dict.fromkeys(items, np.nan)).to_csv(path, index=False)
    params_file = _params(tmp_path, alliance, outcome)
    p = ["--params", str(params_file)]
    validated = tmp_path / "interim" / "validated"
    assert main(["validate", *p, "--out", str(validated)]) == 0
    code = main(["score", *p, "--validated", str(validated),
                 "--out", str(tmp_path / "interim" / "scored.csv"),
                 "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    key = "wai_sr" if blank == "alliance" else "swemwbs"
    assert f"{path}:" in err and "rule nothing_scorable" in err
    assert f"could be scored with {key}: every row has more blank items than its " in err
    assert not (tmp_path / "interim" / "scored.csv").exists()
