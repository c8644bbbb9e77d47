"""A lock table an interrupted DVC run left unreadable is removed before ``make repro``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.dvclock import GUARD, RWLOCK, repair_rwlock

ROOT = Path(__file__).resolve().parents[1]
TABLE = '{"read": {}, "write": {}}'


def _table(root: Path, text: str) -> Path:
    path = root / RWLOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.mark.parametrize("text", ["", '{"read": {"data/x.csv": [{"pid": 12, "cmd": "dvc'])
def test_an_unreadable_table_is_removed(tmp_path: Path, text: str) -> None:
    path = _table(tmp_path, text)
    assert repair_rwlock(tmp_path) is True
    assert not path.exists()


def test_a_readable_table_or_none_is_left_alone(tmp_path: Path) -> None:
    assert repair_rwlock(tmp_path) is False
    path = _table(tmp_path, TABLE)
    assert repair_rwlock(tmp_path) is False
    assert path.read_text() == TABLE


def test_a_table_whose_guard_a_dvc_process_holds_is_left_alone(tmp_path: Path) -> None:
    path = _table(tmp_path, "")
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, zc.lockfile; lock = zc.lockfile.LockFile(sys.argv[1]); "
         "print('held', flush=True); sys.stdin.read()", str(tmp_path / GUARD)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert repair_rwlock(tmp_path) is False
        assert path.exists()
    finally:
        holder.communicate("")
    assert repair_rwlock(tmp_path) is True


def test_make_repros_command_runs_where_plain_dvc_refuses(tmp_path: Path) -> None:
    """Real DVC: after an empty table (a run killed while DVC rewrote it) `dvc repro`
    stops with DVC's error; `python -m pipeline.progress dvc repro` (make repro) says
    what it removed and runs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}

    def run(*cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(cmd), cwd=tmp_path, env=env, capture_output=True,
                              text=True, check=False)

    assert run("git", "init", "-q").returncode == 0
    assert run("dvc", "init", "-q").returncode == 0
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  copy:\n    cmd: cp a.txt b.txt\n    deps: [a.txt]\n    outs: [b.txt]\n")
    (tmp_path / "a.txt").write_text("alliance\n")
    _table(tmp_path, "")
    refused = run("dvc", "repro")
    assert refused.returncode != 0 and "JSON structure is corrupted" in refused.stderr
    done = run(sys.executable, "-m", "pipeline.progress", "dvc", "repro")
    assert done.returncode == 0, done.stderr
    assert "removed DVC's lock table .dvc/tmp/rwlock" in done.stderr
    assert (tmp_path / "b.txt").read_text() == "alliance\n"
