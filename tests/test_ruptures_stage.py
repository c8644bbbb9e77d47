"""The ruptures step end to end: aggregates only in results, suppression, thin data."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.cli import main
from pipeline.describe import suppress_counts
from pipeline.ruptures.criteria import load_criteria
from pipeline.ruptures.summarise import prevalence
from pipeline.simulation.dataset import simulate_dataset, write_simulated


def _run(tmp_path: Path, params: dict, transform=None, clients_ending: bool = True) -> Path:
    """Simulate a small data set, optionally change it, validate it and run the step."""
    cfg = copy.deepcopy(params)
    cfg["simulate"].update(n_therapists=8, clients_per_therapist=8)
    sim = simulate_dataset(cfg["simulate"])
    data = tmp_path / "data"
    write_simulated(sim, data)
    if transform is not None:
        for name in ("alliance", "outcome"):
            frame = pd.read_csv(data / f"{name}.csv", dtype={"client_id": str})
            transform(frame).to_csv(data / f"{name}.csv", index=False)
    if not clients_ending:
        clients = pd.read_csv(data / "clients.csv")
        clients.drop(columns="ending").to_csv(data / "clients.csv", index=False)
    for key in ("alliance", "outcome", "clients"):
        cfg["data"][key] = str(data / f"{key}.csv")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(cfg))
    validated = tmp_path / "validated"
    assert main(["validate", "--params", str(params_file), "--out", str(validated)]) == 0
    assert main(["ruptures", "--params", str(params_file), "--validated", str(validated),
                 "--episodes", str(tmp_path / "interim" / "episodes.csv"),
                 "--out", str(tmp_path / "results"),
                 "--figures", str(tmp_path / "figures")]) == 0
    return tmp_path


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory: pytest.TempPathFactory, params: dict) -> Path:
    return _run(tmp_path_factory.mktemp("ruptures"), params)


def test_row_level_episodes_only_in_interim(shipped_run: Path) -> None:
    episodes = pd.read_csv(shipped_run / "interim" / "episodes.csv", dtype=str)
    for column in ("client_id", "criterion", "scale", "rupture_session", "repair_session",
                   "depth", "length", "status"):
        assert column in episodes.columns
    assert episodes["status"].isin(["repaired", "unrepaired", "censored"]).all()
    unrepaired = episodes[episodes["status"] != "repaired"]
    assert unrepaired["repair_session"].isna().all()
    ids = set(episodes["client_id"]) | set(episodes["therapist_id"])
    assert len(ids) > 10
    outputs = [p for d in ("results", "figures") for p in (shipped_run / d).rglob("*")
               if p.is_file()]
    assert {p.name for p in outputs} >= {"prevalence.csv", "agreement.csv", "course.csv",
                                          "ruptures_course.png", "ruptures_course.svg",
                                          "ruptures_course.csv", "endings_model.csv"}
    for path in outputs:
        if path.suffix in (".csv", ".json", ".svg"):
            text = path.read_text(encoding="utf-8")
            leaked = [i for i in ids
                      if re.search(rf"(?<![A-Za-z0-9]){re.escape(i)}(?![A-Za-z0-9])", text)]
            assert not leaked, (path.name, leaked[:3])


def test_counts_below_min_cell_are_suppressed(shipped_run: Path, params: dict) -> None:
    min_cell = int(params["report"]["min_cell"])
    results = shipped_run / "results"
    for name, cols in (("prevalence", ["n_clients_with_episode", "n_episodes", "n_repaired",
                                       "n_unrepaired", "n_censored"]),
                       ("lengths", ["n_episodes"]), ("timing", ["n_episodes"]),
                       ("agreement", ["n_both", "n_only_a", "n_only_b", "n_neither"]),
                       ("outcome_groups", ["n_clients", "n_in_model"]),
                       ("endings_counts", ["n_clients"])):
        table = pd.read_csv(results / f"{name}.csv")
        for col in cols:
            shown = table[col].dropna()
            assert not ((shown > 0) & (shown < min_cell)).any(), (name, col)
    course = pd.read_csv(results / "course.csv")
    assert (course["n"].dropna() >= min_cell).all()
    assert course.loc[course["suppressed"], "mean"].isna().all()


def test_model_tables_of_few_clients_blank_their_counts(tmp_path: Path, params: dict) -> None:
    """Four clients: the outcome and endings model tables published n_clients 4, the
    endings reason named "2 unplanned endings among 4 clients", and the rule summaries
    the number of clients with a series (4)."""
    def four_clients(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["client_id"].isin(sorted(set(frame["client_id"]))[:4])]

    results = _run(tmp_path, params, transform=four_clients) / "results"
    models = pd.read_csv(results / "outcome_models.csv")
    assert (models["status"] == "not estimable").all() and models["n_clients"].isna().all()
    endings = pd.read_csv(results / "endings_model.csv").iloc[0]
    assert endings["status"] == "not estimable"
    for col in ("n_clients", "n_events_in_model"):
        assert np.isnan(endings[col]), col
    assert endings["reason"] == (
        "fewer than report.min_cell = 5 clients in the model ended unplanned, and fewer "
        "than report.min_cell = 5 did not: too few unplanned endings to estimate a hazard")
    for name, col in (("thresholds", "n_series"), ("prevalence", "n_series"),
                      ("agreement", "n_clients"), ("repair_correlation", "n_clients")):
        shown = pd.read_csv(results / f"{name}.csv")[col].dropna()
        assert not ((shown > 0) & (shown < 5)).any(), (name, col)
    assert pd.read_csv(results / "thresholds.csv")["n_series"].isna().all()  # 4 clients


def test_prevalence_suppresses_small_groups_and_their_shares() -> None:
    crit = load_criteria({"criteria": {"x": {"kind": "sd"}}})
    applied = pd.DataFrame({"client_id": list("ABCDEFG"), "rater": "client", "scale": "total",
                            "criterion": "x", "threshold": 0.5, "note": ""})
    episodes = pd.DataFrame({"client_id": ["A", "B"], "rater": "client", "scale": "total",
                             "criterion": "x", "status": ["repaired", "unrepaired"],
                             "depth": [1.0, 1.0], "length": [1, None]})
    table = prevalence(episodes, applied, crit, min_cell=5).iloc[0]
    assert table["n_series"] == 7
    assert pd.isna(table["n_clients_with_episode"]) and pd.isna(table["pct_clients"])
    assert pd.isna(table["pct_repaired"]) and pd.isna(table["median_length"])
    assert "n_clients_with_episode" in table["suppressed"]
    zero = suppress_counts(pd.DataFrame({"n": [0, 3, 7]}), {"n": []}, 5)
    assert zero["n"].tolist()[0] == 0 and pd.isna(zero["n"].tolist()[1])


def test_recovery_and_meta_written_for_simulated_data(shipped_run: Path) -> None:
    rec = pd.read_csv(shipped_run / "results" / "recovery.csv")
    crits = {"gumz_1sd", "gumz_2sd", "reliable_drop", "v_shape", "sudden_dip"}
    assert set(rec["criterion"]) == crits
    assert rec["recall"].between(0, 1).all()
    bench = pd.read_csv(shipped_run / "results" / "detection_benchmark.csv")
    assert set(bench["scenario"]) == {"deep_clear", "very_deep", "no_ruptures"}
    assert set(bench["criterion"]) == crits
    assert (bench.loc[bench["scenario"] == "no_ruptures", "n_matched"] == 0).all()
    meta = json.loads((shipped_run / "results" / "meta.json").read_text())
    assert meta["has_ending"] and meta["simulated"]
    assert set(meta["reliability"]) == {"goal", "task", "bond", "total"}


def test_two_sessions_per_client_says_what_cannot_be_detected(
        tmp_path: Path, params: dict, capsys: pytest.CaptureFixture[str]) -> None:
    out = _run(tmp_path, params, transform=lambda f: f[f["session"] <= 2],
               clients_ending=False)
    # the log gives each model's status, then after a colon why
    err = capsys.readouterr().err
    assert "[ruptures] endings model: not estimable: no ending column" in err
    assert "[ruptures] outcome model (v_shape): not estimable: " in err
    results = out / "results"
    det = pd.read_csv(results / "detectability.csv").set_index("sessions")
    assert det.loc["3+", "n_clients"] == 0
    assert "never its repair" in det.loc["2", "can_show"]
    prev = pd.read_csv(results / "prevalence.csv")
    v = prev[prev["criterion"] == "v_shape"]
    assert (v["n_episodes"].fillna(0) == 0).all()
    rep = prev[prev["criterion"] != "v_shape"]
    assert (rep["n_repaired"].fillna(0) == 0).all()
    models = pd.read_csv(results / "outcome_models.csv")
    assert (models["status"] == "not estimable").all()
    endings = pd.read_csv(results / "endings_model.csv").iloc[0]
    assert endings["status"] == "not estimable" and "no ending column" in endings["reason"]
    assert not (results / "endings_coefficients.csv").exists()


def test_prescored_alliance_has_no_reliable_change_criterion(tmp_path: Path,
                                                             params: dict) -> None:
    def prescore(frame: pd.DataFrame) -> pd.DataFrame:
        if "wai_sr_1" not in frame.columns:
            return frame
        from pipeline.instruments import load_instrument
        from pipeline.score import score_alliance

        scored, _ = score_alliance(frame, load_instrument("wai_sr"))
        return scored[["client_id", "therapist_id", "session", "goal", "task", "bond"]]

    out = _run(tmp_path, params, transform=prescore)
    thr = pd.read_csv(out / "results" / "thresholds.csv")
    rci = thr[thr["criterion"] == "reliable_drop"]
    assert rci["median_threshold"].isna().all()
    assert rci["note"].str.contains("reliability unknown").all()
    assert thr[thr["criterion"] == "gumz_1sd"]["median_threshold"].notna().all()


def test_bad_setting_exits_2_naming_it_and_writes_nothing(
    tmp_path: Path, params: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = copy.deepcopy(params)
    cfg["ruptures"]["figure_criterion"] = "nonsense"
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "results"
    status = main(["ruptures", "--params", str(params_file),
                   "--episodes", str(tmp_path / "episodes.csv"), "--out", str(out),
                   "--figures", str(tmp_path / "figures")])
    err = capsys.readouterr().err
    assert status == 2
    assert "ruptures.figure_criterion" in err and "nonsense" in err
    assert "Traceback" not in err
    assert not (tmp_path / "episodes.csv").exists() and not out.exists()


def _write_marker(path: Path) -> None:
    path.write_text("drawn in the child", encoding="utf-8")


def _fail(path: Path) -> None:
    raise ValueError(f"cannot draw {path.name}")


def test_figures_drawn_meanwhile_are_waited_for_and_failures_raise(tmp_path: Path) -> None:
    """The figures are drawn in a forked process (stage._meanwhile): its files exist once
    the stage waits for it, and a failure there fails the stage instead of passing
    silently."""
    from pipeline.ruptures.stage import _meanwhile

    marker = tmp_path / "figure.txt"
    wait = _meanwhile(_write_marker, marker)
    wait()
    assert marker.read_text(encoding="utf-8") == "drawn in the child"
    wait = _meanwhile(_fail, tmp_path / "other.png")
    with pytest.raises(RuntimeError, match="_fail failed in its worker process"):
        wait()
