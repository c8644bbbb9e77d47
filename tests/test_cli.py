"""The command-line steps: bad input exits 2 with every problem named and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.cli import main


def _params(tmp_path: Path, root: Path, **data: str) -> Path:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for key in ("alliance", "outcome", "clients"):
        params["data"][key] = str(root / params["data"][key])
    params["data"].update(data)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_validate_writes_normalised_inputs(tmp_path: Path, root: Path) -> None:
    out = tmp_path / "validated"
    assert main(["validate", "--params", str(_params(tmp_path, root)), "--out", str(out)]) == 0
    alliance = pd.read_csv(out / "alliance.csv")
    assert len(alliance) == len(pd.read_csv(root / "data/simulated/alliance.csv"))
    assert {"alliance.csv", "outcome.csv", "clients.csv", "checks.csv"} <= {
        p.name for p in out.iterdir()}


def test_bad_input_exits_2_names_everything_and_writes_nothing(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    alliance = pd.read_csv(root / "data/simulated/alliance.csv")
    alliance.loc[4, "wai_sr_3"] = 9  # out of the 1-5 range (data row 5)
    alliance["client_email"] = "someone@example.org"
    bad = tmp_path / "bad_alliance.csv"
    alliance.to_csv(bad, index=False)
    outcome = pd.read_csv(root / "data/simulated/outcome.csv")
    outcome.loc[0, "session"] = 0
    bad_outcome = tmp_path / "bad_outcome.csv"
    outcome.to_csv(bad_outcome, index=False)
    out = tmp_path / "validated"
    out.mkdir()
    (out / "alliance.csv").write_text("earlier result\n")
    params = _params(tmp_path, root, alliance=str(bad), outcome=str(bad_outcome))
    status = main(["validate", "--params", str(params), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    for needle in ("bad_alliance.csv", "wai_sr_3", "client_email", "bad_outcome.csv",
                   "session", "nothing was written"):
        assert needle in err, needle
    assert "someone@example.org" not in err
    assert (out / "alliance.csv").read_text() == "earlier result\n"
    assert [p.name for p in out.iterdir()] == ["alliance.csv"]


def test_no_clients_file_is_passed_through(tmp_path: Path, root: Path) -> None:
    """``data.clients: ""`` (no covariates): validate succeeds and writes no clients table."""
    out = tmp_path / "validated"
    params = _params(tmp_path, root, clients="")
    assert main(["validate", "--params", str(params), "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"alliance.csv", "outcome.csv", "checks.csv"} <= names
    assert "clients.csv" not in names and "k_anonymity.csv" not in names


def test_steps_write_into_the_staging_area_by_default() -> None:
    """Only `promote` writes results/ and reports/ (a failed stage cannot touch them)."""
    from pipeline.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["fit"]).out == "build/results"
    assert parser.parse_args(["describe"]).out == "build/results/describe"
    assert parser.parse_args(["score"]).results == "build/results/scoring"
    publish = parser.parse_args(["publish"])
    assert (publish.results, publish.tables) == ("build/results", "build/reports/tables")
    # the figures are saved by the reports that show them, into the staging area
    assert parser.parse_args(["render", "--notebook", "n.py", "--out", "x"]).figures is None
    dvc = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())
    for name, stage in dvc["stages"].items():
        body = stage.get("do", stage)
        for out in [*body.get("outs", []), *body.get("metrics", [])]:
            path = next(iter(out)) if isinstance(out, dict) else out
            assert not path.startswith(("results", "reports")) or name == "promote", path
    promote = dvc["stages"]["promote"]["outs"]
    assert all(spec["persist"] for out in promote for spec in out.values())


def test_notebooks_read_the_staged_results_when_rendered(
        tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`render` points the notebooks' `root / "results"` at build/ (ALLIANCE_RESULTS_ROOT)."""
    from pipeline.report import RESULTS_ROOT_ENV, open_project

    monkeypatch.delenv(RESULTS_ROOT_ENV, raising=False)
    assert open_project(root / "params.yaml")[0] == root
    monkeypatch.setenv(RESULTS_ROOT_ENV, str(tmp_path))
    folder, params = open_project(root / "params.yaml")
    assert folder == tmp_path and "data" in params


def test_dvc_lock_has_no_entries_of_removed_stages() -> None:
    """A stage removed from dvc.yaml by hand stays in dvc.lock until pruned; verify would
    otherwise check outputs that no stage makes any more."""
    root = Path(__file__).resolve().parents[1]
    stages = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    locked = set(yaml.safe_load((root / "dvc.lock").read_text())["stages"])
    assert locked == stages


def test_a_step_run_before_its_input_exists_says_so(
    tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`python -m pipeline power` before `fit` (by hand; DVC orders the steps): exit 2 and
    a message naming the missing file and what to run, no traceback."""
    params = _params(tmp_path, root)
    monkeypatch.chdir(tmp_path)
    status = main(["power", "--params", str(params)])
    err = capsys.readouterr().err
    assert status == 2
    assert "build/results/fit_statistics.csv is missing" in err
    assert "make repro" in err and "Traceback" not in err
    assert not (tmp_path / "build" / "results" / "power.csv").exists()
