"""`make verify` on a tiny DVC project: real reruns and comparisons; the working copy untouched."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import verify as verify_mod
from pipeline.verify import code_stamp, main, provenance, rerun_pipeline, verify

BIN = Path(sys.executable).parent

GEN = '''import pathlib, sys, yaml
n = yaml.safe_load(open("params.yaml"))["n"]
out = pathlib.Path("out"); (out / "dir").mkdir(parents=True, exist_ok=True)
(out / "a.txt").write_text(f"n = {n}\\n")
(out / "dir" / "b.txt").write_text("b" * n + "\\n")
(out / "dir" / "c.txt").write_text("c\\n")
pathlib.Path("cached.txt").write_text(f"cached {n}\\n")
'''

DVC_YAML = '''stages:
  gen:
    cmd: python pipeline/gen.py
    deps:
      - pipeline/gen.py
      - data.txt
    params:
      - n
    outs:
      - out/a.txt:
          cache: false
      - out/dir:
          cache: false
      - cached.txt
'''


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=True)


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    (root / "pipeline").mkdir(parents=True)
    (root / "pipeline" / "gen.py").write_text(GEN)
    (root / "data.txt").write_text("input\n")
    (root / "params.yaml").write_text("n: 3\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    _run(["git", "init", "--quiet"], root)
    _run(["git", "config", "user.email", "t@example.org"], root)
    _run(["git", "config", "user.name", "t"], root)
    _run(["dvc", "init", "--quiet"], root)
    _run(["dvc", "config", "core.analytics", "false"], root)
    _run(["dvc", "repro", "--quiet"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "--quiet", "-m", "tiny project"], root)
    return root


def _status(root: Path) -> str:
    return _run(["git", "status", "--porcelain", "--ignored"], root).stdout


@pytest.mark.slow
def test_everything_reproduces_and_the_working_copy_is_untouched(project: Path) -> None:
    before = _status(project)
    mtimes = {p: p.stat().st_mtime_ns for p in project.rglob("*") if ".git" not in p.parts}
    text = io.StringIO()
    assert verify(project, out=text) == 0, text.getvalue()
    printed = text.getvalue()
    assert "OK: all 4 outputs reproduced byte for byte." in printed
    for path in ("out/a.txt", "out/dir/b.txt", "out/dir/c.txt", "cached.txt"):
        assert f"same     {path}" in printed
    assert "stage gen" in printed
    assert "code:     pipeline/gen.py (" in printed
    assert "inputs:   data.txt (" in printed
    assert "settings: n=3" in printed
    assert "Rerun: " in printed and "gen " in printed
    assert _status(project) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes


def test_one_changed_byte_in_the_working_copy_is_named(project: Path) -> None:
    target = project / "out" / "dir" / "b.txt"
    target.write_bytes(target.read_bytes().replace(b"b", b"x", 1))
    text = io.StringIO()
    assert verify(project, out=text) == 1
    printed = text.getvalue()
    assert "DIFFERS out/dir/b.txt: your working copy differs from the rerun" in printed
    assert "FAILED: 1 of 4 outputs" in printed
    assert target.read_bytes() == b"xbb\n"  # verify never repairs or overwrites


@pytest.mark.slow
def test_a_committed_output_that_the_code_does_not_make_is_named(project: Path) -> None:
    (project / "out" / "a.txt").write_text("n = 4\n")
    _run(["git", "commit", "--quiet", "-am", "edited by hand"], project)
    text = io.StringIO()
    assert verify(project, out=text) == 1
    assert "DIFFERS out/a.txt: rerun differs from the committed file" in text.getvalue()


@pytest.mark.slow
def test_missing_and_unexpected_outputs_are_named(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def rerun_then_lose_a_file(scratch: Path, log: Path) -> int:
        status = rerun_pipeline(scratch, log)
        (scratch / "out" / "dir" / "c.txt").unlink()
        (scratch / "out" / "dir" / "new.txt").write_text("new\n")
        (scratch / "cached.txt").write_text("changed\n")
        return status

    text = io.StringIO()
    assert verify(project, runner=rerun_then_lose_a_file, out=text) == 1
    printed = text.getvalue()
    assert "MISSING out/dir/c.txt: not produced by the rerun" in printed
    assert "DIFFERS out/dir/new.txt: produced by the rerun but not committed" in printed
    assert "DIFFERS cached.txt: rerun differs from the hash in dvc.lock" in printed


@pytest.mark.slow
def test_a_failing_rerun_exits_2_with_its_output(project: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "pipeline" / "gen.py").write_text("raise SystemExit('boom: gen broke')\n")
    _run(["git", "commit", "--quiet", "-am", "break the stage"], project)
    assert main(["--repo", str(project)]) == 2
    err = capsys.readouterr().err
    assert "dvc repro -f` failed in the scratch copy" in err
    assert "boom: gen broke" in err


def test_no_commit_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run(["git", "init", "--quiet"], tmp_path)
    assert main(["--repo", str(tmp_path)]) == 2
    assert "no commit to verify" in capsys.readouterr().err


def test_provenance_splits_code_inputs_and_settings() -> None:
    lock = {"stages": {"fit": {
        "deps": [{"path": "pipeline/model.py", "md5": "aa"}, {"path": "notebooks", "md5": "dd.dir"},
                 {"path": "data/interim/scored.csv", "md5": "bb"}],
        "params": {"params.yaml": {"model": {"conf_level": 0.95}}},
        "outs": [{"path": "results/coefficients.csv", "md5": "cc"}]}}}
    prov = provenance(lock)["results/coefficients.csv"]
    assert prov.stage == "fit"
    assert prov.code == [("pipeline/model.py", "aa"), ("notebooks", "dd.dir")]
    assert prov.inputs == [("data/interim/scored.csv", "bb")]
    assert prov.settings == {"model.conf_level": 0.95}


def test_code_stamp_follows_code_not_outputs(project: Path) -> None:
    stamp = code_stamp(project)
    assert len(stamp) == 12
    (project / "out" / "a.txt").write_text("anything\n")
    (project / "pipeline" / "__pycache__").mkdir()
    (project / "pipeline" / "__pycache__" / "gen.cpython-311.pyc").write_bytes(b"\0")
    assert code_stamp(project) == stamp
    (project / "pipeline" / "gen.py").write_text(GEN + "# changed\n")
    assert code_stamp(project) != stamp


def test_the_project_itself_lists_every_output_with_a_stage(root: Path) -> None:
    """Every output in this project's dvc.lock has a stage and its code deps are code."""
    import yaml

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    prov = provenance(lock)
    assert "results/coefficients.csv" in prov
    assert prov["results/coefficients.csv"].stage == "fit"
    assert all(p.code for p in prov.values())
    assert verify_mod.CODE_PREFIXES


def test_a_published_file_out_of_git_is_checked_against_its_staged_copy(
        tmp_path: Path) -> None:
    """reports/x.html is in git nowhere; the stage that staged it recorded its hash."""
    import hashlib

    from pipeline.verify import compare, current_stages

    rerun, work = tmp_path / "rerun", tmp_path / "work"
    for root in (rerun, work):
        (root / "reports").mkdir(parents=True)
        (root / "reports" / "t.csv").write_text("t\n")
    (rerun / "reports" / "x.html").write_text("<p>x</p>\n")
    good = hashlib.md5(b"<p>x</p>\n").hexdigest()
    lock = {"stages": {
        "report": {"deps": [], "outs": [{"path": "build/reports/x.html", "md5": good}]},
        "promote": {"deps": [], "outs": [{"path": "reports", "md5": "0.dir"}]},
        "render@old": {"deps": [], "outs": [{"path": "reports/old.html", "md5": "1"}]},
    }}
    lock = current_stages(lock, {"stages": {"report": {}, "promote": {}}})
    assert set(lock["stages"]) == {"report", "promote"}

    def committed(path: str) -> bytes | None:
        return b"t\n" if path == "reports/t.csv" else None

    checks = {c.path: c for c in compare(lock, lock, rerun, work, committed,
                                         ["reports/t.csv"])}
    assert checks["reports/x.html"].status == "same"
    assert checks["reports/x.html"].stage == "report"
    assert checks["reports/t.csv"].status == "same"
    (rerun / "reports" / "x.html").write_text("<p>y</p>\n")
    checks = {c.path: c for c in compare(lock, lock, rerun, work, committed,
                                         ["reports/t.csv"])}
    assert checks["reports/x.html"].status == "DIFFERS"
    assert "dvc.lock" in checks["reports/x.html"].detail
