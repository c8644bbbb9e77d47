"""Degenerate data sets run through every step without a Python warning in the log.

The project's bar: no warning a user cannot act on. numpy, pandas and statsmodels warnings
("invalid value encountered in divide" from Cronbach's alpha of constant items, pandas'
FutureWarning on concatenating empty tables, divide by zero in the Satterthwaite df of a
fit whose residual variance is 0) reached the log on such data; each is fixed where it
arose (only what is defined is computed, and the outputs say in words why a statistic is
absent). Each shape runs validate ... publish from a scratch project, serially and in this
process (no forked worker whose warnings would not be seen here), with every warning
recorded.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.ruptures.criteria import NO_VARIATION
from tests.test_probes_messy import _practice

ROOT = Path(__file__).resolve().parents[1]
REAL = Path(__file__).parent / "fixtures" / "realshape"
ITEMS = [f"wai_sr_{i}" for i in range(1, 13)]

Frames = tuple[pd.DataFrame, pd.DataFrame]


def _constant(alliance: pd.DataFrame, outcome: pd.DataFrame) -> Frames:
    return alliance.assign(**dict.fromkeys(ITEMS, 4)), outcome


def _client_constant(alliance: pd.DataFrame, outcome: pd.DataFrame) -> Frames:
    """Each client gives the same answers at every session (clients differ)."""
    first = alliance.groupby("client_id")[ITEMS].transform("first")
    return alliance.assign(**{c: first[c] for c in ITEMS}), outcome


def _collinear(alliance: pd.DataFrame, outcome: pd.DataFrame) -> Frames:
    """Every item of a form the same answer: goal = task = bond, reliability 1."""
    answer = alliance[ITEMS].mean(axis=1).round().astype(int)
    return alliance.assign(**dict.fromkeys(ITEMS, answer)), outcome


def _two_sessions(alliance: pd.DataFrame, outcome: pd.DataFrame) -> Frames:
    return alliance[alliance["session"] <= 2], outcome[outcome["session"] <= 2]


#: name -> (change of the practice's files, therapists (0: no therapist_id), clients file)
SHAPES: dict[str, tuple[Callable[[pd.DataFrame, pd.DataFrame], Frames], int, bool]] = {
    "constant_alliance": (_constant, 0, True),
    "client_constant": (_client_constant, 6, True),
    "collinear": (_collinear, 6, False),
    "two_sessions": (_two_sessions, 6, False),
}


def _params(folder: Path, data: dict[str, str], **instruments: str) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"] = {**data, "simulated": False}
    params["instruments"].update(instruments)
    params["bootstrap"]["replications"] = 10
    params["parallel"]["workers"] = 1
    params["power"]["replications"] = 5
    params["power"]["designs"] = params["power"]["designs"][:1]
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder / "params.yaml"


def _shape(folder: Path, name: str) -> Path:
    if name == "realshape":  # one therapist, two raters, no outcome, one covariate level
        return _params(folder, {"alliance": str(REAL / "alliance.csv"), "outcome": "",
                                "clients": str(REAL / "clients.csv")},
                       alliance="wai_s", outcome="")
    change, therapists, with_clients = SHAPES[name]
    paths = _practice(folder / "data")
    alliance, outcome = (pd.read_csv(p) for p in paths)
    alliance = alliance.drop(columns=[c for c in alliance.columns if c.startswith("<")])
    if therapists:
        number = alliance["client_id"].str[1:].astype(int) % therapists
        alliance["therapist_id"] = "T" + number.astype(str)
    alliance, outcome = change(alliance, outcome)
    alliance.to_csv(paths[0], index=False)
    outcome.to_csv(paths[1], index=False)
    clients = ""
    if with_clients:  # one covariate with one level; endings for the hazard model
        ids = sorted(set(alliance["client_id"]))
        frame = pd.DataFrame({"client_id": ids, "approach": ["cbt", "pdt"] * (len(ids) // 2),
                              "modality": "in person",
                              "ending": ["planned", "unplanned", "ongoing"] * (len(ids) // 3)})
        clients = str(folder / "data" / "clients.csv")
        frame.to_csv(clients, index=False)
    return _params(folder, {"alliance": str(paths[0]), "outcome": str(paths[1]),
                            "clients": clients})


def _run_every_step(params_file: Path) -> list[str]:
    """validate ... publish; the warnings raised, as text."""
    from pipeline.cli import main

    root = params_file.parent
    interim, results = root / "interim", root / "results"
    p = ["--params", str(params_file)]
    v = ["--validated", str(interim / "validated")]
    s = ["--scored", str(interim / "scored.csv")]
    steps = [
        ["validate", *p, "--out", str(interim / "validated")],
        ["score", *p, *v, "--out", str(interim / "scored.csv"),
         "--results", str(results / "scoring")],
        ["describe", *p, *v, *s, "--out", str(results / "describe")],
        ["fit", *p, *v, *s, "--out", str(results)],
        ["ruptures", *p, *v, "--episodes", str(interim / "episodes.csv"),
         "--out", str(results / "ruptures"), "--figures", str(root / "figures")],
        ["bootstrap", *p, *v, *s, "--out", str(results / "bootstrap.csv")],
        ["speccurve", *p, *s, "--out", str(results / "specification_curve.csv")],
        ["power", *p, *s, "--results", str(results),
         "--checkpoint", str(interim / "power.jsonl")],
        ["publish", *p, "--results", str(results), "--tables", str(root / "tables")],
    ]
    import gc

    with warnings.catch_warnings():  # garbage of earlier tests in this process is not ours
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for argv in steps:
            assert main(argv) == 0, argv[0]
    return [f"{w.category.__name__}: {w.message} ({Path(w.filename).name}:{w.lineno})"
            for w in caught]


@pytest.mark.slow
@pytest.mark.parametrize("name", [*SHAPES, "realshape"])
def test_a_degenerate_data_set_runs_every_step_without_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # every step in this process: a forked child's warnings would not be recorded here
    monkeypatch.setattr("pipeline.parallel._can_fork", lambda: False)
    params_file = _shape(tmp_path, name)
    assert _run_every_step(params_file) == []
    results = tmp_path / "results"
    thresholds = pd.read_csv(results / "ruptures" / "thresholds.csv")
    shown = thresholds["median_threshold"].dropna()
    assert (shown > 0).all()      # a threshold of 0 would count any fall as a rupture
    if name == "constant_alliance":
        # no rupture threshold can be set, and the table says why
        assert thresholds["median_threshold"].isna().all()
        assert (thresholds["note"] == NO_VARIATION).all()
        meta = json.loads((results / "ruptures" / "meta.json").read_text())
        assert meta["reliability"] == {}          # was {"total": NaN}
        rel = pd.read_csv(results / "scoring" / "reliability.csv")
        overall = rel[rel["subset"] == "all"]
        assert overall["alpha"].isna().all()
        assert overall["note"].str.startswith("no variance in wai_sr_").all()
    if name == "client_constant":
        stats = pd.read_csv(results / "fit_statistics.csv").set_index("model")
        for model in ("alliance_levels_goal", "alliance_time_bond"):
            assert stats.loc[model, "status"] == "not estimable"
            assert "does not vary within any client" in str(stats.loc[model, "reason"])
        # the gumz rules still have the SD between clients; the sudden dip has none
        by = thresholds.set_index(["criterion", "scale"])
        median = by["median_threshold"].to_dict()
        assert median[("gumz_1sd", "goal")] > 0
        for scale in ("total", "goal"):
            assert np.isnan(median[("sudden_dip", scale)])
            assert by.loc[("sudden_dip", scale), "note"] == NO_VARIATION
    if name == "collinear":  # every item alike: reliability 1, no measurement error
        rci = thresholds[thresholds["criterion"] == "reliable_drop"]
        assert rci["median_threshold"].isna().all()
        assert rci["note"].str.startswith("reliability 1").all()


@pytest.mark.slow
def test_the_ruptures_report_says_why_no_threshold_can_be_set(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant alliance: the report showed "median drop needed 0.00" for every rule."""
    import html
    import re

    from pipeline.report import render

    monkeypatch.setattr("pipeline.parallel._can_fork", lambda: False)
    params_file = _shape(tmp_path, "constant_alliance")
    assert _run_every_step(params_file) == []
    page = render(ROOT / "notebooks" / "ruptures.py", tmp_path / "ruptures.html",
                  {"params_file": str(params_file)}, cwd=ROOT).read_text()
    assert "Traceback" not in page and "output_error" not in page
    body = re.sub(r"<style.*?</style>", "", page[page.index("<body"):], flags=re.S)
    text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))
    assert ("No rupture threshold can be set for any rule or score (blank in the table): "
            "the scores do not vary") in text
    assert NO_VARIATION in text                      # the table's note column
    assert "not available: no item data, or items that do not vary" in text
