"""The promote step: all-or-nothing replacement of results/ and reports/, resumable.

Interruptions are real: a child process runs the promotion and SIGKILLs itself at a named
point (after the n-th file copied, after the copies are complete, after the journal is
written, after the first folder is swapped, after the journal is removed). A full disk is
a real (small) tmpfs when the tests run as root, else that test is skipped.
"""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipeline.outputs import write_csv
from pipeline.promote import WORKDIR, PromoteError, promote, recover, seed_staging

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tree(base: Path, tag: str, n: int = 5, size: int = 2000) -> None:
    for target in ("results", "reports"):
        for i in range(n):
            sub = base / target / ("sub" if i % 2 else "")
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"{target}_{i}.csv").write_text(f"{tag},{i}\n" * (size // 8))


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    _tree(tmp_path, "old")
    _tree(tmp_path / "build", "new", n=6)
    return tmp_path


def _state(project: Path) -> dict[str, dict[str, str]]:
    return {t: _snapshot(project / t) for t in ("results", "reports")}


def test_promote_replaces_both_folders(project: Path) -> None:
    new = {t: _snapshot(project / "build" / t) for t in ("results", "reports")}
    counts = promote("build", project)
    assert counts == {"results": 6, "reports": 6}
    assert _state(project) == new
    assert not (project / WORKDIR).exists()
    assert _snapshot(project / "build" / "results") == new["results"]  # staging kept


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_promoted_files_follow_the_umask(project: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        promote("build", project)
        write_csv(__import__("pandas").DataFrame({"a": [1]}), project / "x.csv")
    finally:
        os.umask(old)
    files = [p for p in (project / "results").rglob("*") if p.is_file()]
    assert files and {p.stat().st_mode & 0o777 for p in files} == {mode}
    assert (project / "x.csv").stat().st_mode & 0o777 == mode


def test_missing_staged_folder_changes_nothing(project: Path) -> None:
    before = _state(project)
    import shutil

    shutil.rmtree(project / "build" / "reports")
    with pytest.raises(PromoteError, match="missing"):
        promote("build", project)
    assert _state(project) == before


KILLER = textwrap.dedent("""
    import os, signal, sys
    import pipeline.promote as pr
    event, nth, fallback = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    if fallback:
        pr._exchange = lambda a, b: False   # a file system without RENAME_EXCHANGE
    seen = {"n": 0}
    def hook(name, path):
        if name == event:
            seen["n"] += 1
            if seen["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
    pr.promote("build", sys.argv[1], hook=hook)
""")


def _killed_promote(project: Path, event: str, nth: int = 1, fallback: bool = False) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", KILLER, str(project), event, str(nth),
                             "1" if fallback else "0"], env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr


@pytest.mark.parametrize(
    ("event", "nth", "fallback", "committed"),
    [
        ("copied", 1, False, False),       # first file copied
        ("copied", 9, False, False),       # in the middle of the second folder
        ("prepared", 1, False, False),     # copies complete, journal not yet written
        ("journaled", 1, False, True),     # decided, nothing swapped yet
        ("swapped", 1, False, True),       # results/ swapped, reports/ not yet
        ("committed", 1, False, True),     # journal gone, old trees not yet removed
        ("half-renamed", 1, True, True),   # two-rename fallback: results/ moved away
    ],
)
def test_kill_at_any_point_keeps_old_or_finishes_new(
        project: Path, event: str, nth: int, fallback: bool, committed: bool) -> None:
    old = _state(project)
    new = {t: _snapshot(project / "build" / t) for t in ("results", "reports")}
    _killed_promote(project, event, nth, fallback)
    mid = {t: _snapshot(project / t) if (project / t).exists() else None
           for t in ("results", "reports")}
    if not committed:
        assert mid == old, "an uncommitted promotion changed the published outputs"
    else:
        # Each folder is wholly old or wholly new (or, only in the fallback's window
        # between two renames, absent with the old tree kept under .promote/).
        for target in ("results", "reports"):
            allowed = [old[target], new[target]] + ([None] if fallback else [])
            assert mid[target] in allowed
    # Rolled forward when the journal was written and still there; an uncommitted
    # promotion's copies are dropped; after "committed" only old trees remain to delete.
    assert recover(project) == (committed and event != "committed")
    assert _state(project) == (new if committed else old)
    assert not (project / WORKDIR).exists()
    # The rerun finishes the job in every case.
    promote("build", project)
    assert _state(project) == new


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                            capture_output=True, check=False)
    return result.returncode == 0


def test_full_disk_while_preparing_changes_nothing(tmp_path: Path) -> None:
    """A real full disk: a 2 MiB tmpfs holding the project (needs root; else skipped)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("cannot mount a tmpfs (not root or no CAP_SYS_ADMIN): full-disk test "
                    "skipped")
    try:
        rng = __import__("random").Random(1)
        for target, n in (("results", 2), ("reports", 1)):
            (disk / target).mkdir()
            for i in range(n):
                (disk / target / f"old_{i}.bin").write_bytes(rng.randbytes(100_000))
        for target in ("results", "reports"):
            (disk / "build" / target).mkdir(parents=True)
            for i in range(3):
                (disk / "build" / target / f"new_{i}.bin").write_bytes(rng.randbytes(120_000))
        filler = disk / "filler"
        free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
        filler.write_bytes(b"\0" * max(free - 400_000, 0))  # room for ~half the new copies
        before = _state(disk)
        with pytest.raises(OSError) as info:
            promote("build", disk)
        assert info.value.errno == errno.ENOSPC
        assert _state(disk) == before
        assert not (disk / WORKDIR).exists()
        filler.unlink()  # space freed: the rerun finishes
        promote("build", disk)
        assert _state(disk) == {t: _snapshot(disk / "build" / t)
                                for t in ("results", "reports")}
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_seed_staging_fills_only_a_missing_staging_area(project: Path) -> None:
    import shutil

    shutil.rmtree(project / "build")
    assert seed_staging("build", project) == ["results", "reports"]
    assert _snapshot(project / "build" / "results") == _snapshot(project / "results")
    (project / "results" / "extra.csv").write_text("x\n")
    assert seed_staging("build", project) == []  # an existing staging area is left alone
