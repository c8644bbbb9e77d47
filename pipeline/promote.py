"""Promoting a finished run from the staging area: an atomic, journaled, resumable swap.

Why (see NOTES.md): DVC deletes a stage's outputs before it runs the stage, so a failure,
a full disk or ``kill -9`` in any stage used to leave ``results/`` half new and half
missing. Now every stage writes into the **staging area** ``build/`` (same layout:
``build/results/``, ``build/reports/``), which DVC may delete and rewrite freely; the
last stage, ``promote``, is the only writer of ``results/`` and ``reports/`` (declared
``persist: true`` so DVC never deletes them) and replaces them as follows:

1. **prepare** — copy ``build/results`` and ``build/reports`` into ``.promote/new/``
   (new files, each fsync'ed; this is the only step that needs disk space, and a full
   disk here fails before anything visible changed);
2. **commit** — write the journal ``.promote/journal.json`` atomically (temp file,
   fsync, rename): from this instant the promotion is decided;
3. **apply** — for each target, exchange the directory with its prepared copy in one
   ``renameat2(RENAME_EXCHANGE)`` system call (Linux; elsewhere two renames), so each of
   ``results/`` and ``reports/`` is at every instant either wholly old or wholly new;
4. **finish** — delete the journal, then the old trees.

An interruption before step 2 leaves ``results/`` and ``reports/`` untouched and a stale
``.promote/`` that the next promotion removes. An interruption after step 2 is rolled
**forward** by :func:`recover`, which every ``python -m pipeline`` step calls first (and
``make repro`` before DVC): a target whose directory is already the prepared one (same
device and inode as in the journal) is skipped, the others are exchanged. The only
window in which the two targets disagree is between the two exchanges of step 3 (two
system calls, microseconds) and it is closed by the next run.

The same idea in R would be ``targets``' ``tar_make()`` writing to ``_targets/`` and a
final ``file.rename``; DVC has no such step, hence this module.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipeline.atomic import atomic_open, new_file_mode
from pipeline.errors import PipelineError

#: Where stages write; DVC tracks these as the stages' outputs.
STAGING = Path("build")
#: Folders promoted from the staging area into the project (in this order).
TARGETS: tuple[str, ...] = ("results", "reports")
#: Scratch folder of a promotion (prepared copies, the journal, old trees).
WORKDIR = Path(".promote")
JOURNAL = "journal.json"
_RENAME_EXCHANGE = 2  # from <linux/fs.h>
_AT_FDCWD = -100

#: Called after each file copied and after each step; tests use it to inject faults.
Hook = Callable[[str, Path], None]


class PromoteError(PipelineError):
    """The staging area cannot be promoted (e.g. a stage's outputs are missing)."""


def _no_hook(event: str, path: Path) -> None:
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file(src: Path, dst: Path) -> None:
    """Copy bytes into a new file with the mode of any new file (umask), fsync'ed."""
    mode = new_file_mode()
    with src.open("rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())


def copy_tree(src: Path, dst: Path, hook: Hook = _no_hook) -> int:
    """Copy the folder ``src`` to the new folder ``dst`` (files only, no links); file count."""
    n = 0
    dst.mkdir(parents=True)
    for folder, dirs, files in os.walk(src):
        dirs.sort()
        here = Path(folder)
        out = dst / here.relative_to(src)
        out.mkdir(exist_ok=True)
        for name in sorted(files):
            _copy_file(here / name, out / name)
            n += 1
            hook("copied", out / name)
        _fsync_dir(out)
    return n


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directory entries atomically (Linux renameat2); False if unsupported."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # file system without RENAME_EXCHANGE: fall back to two renames
    raise OSError(err, os.strerror(err), str(a))


def _identity(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino]


def _apply(root: Path, journal: dict[str, Any], hook: Hook) -> None:
    work = root / WORKDIR
    for target, ident in journal["targets"].items():
        live, new = root / target, work / "new" / target
        if live.exists() and _identity(live) == ident:
            continue  # already exchanged before an interruption
        if not live.exists():
            new.rename(live)
        elif not _exchange(live, new):
            old = work / "old" / target
            old.parent.mkdir(parents=True, exist_ok=True)
            live.rename(old)
            hook("half-renamed", live)
            new.rename(live)
        hook("swapped", live)
    _fsync_dir(root)
    (work / JOURNAL).unlink()
    _fsync_dir(work)
    hook("committed", work)
    shutil.rmtree(work)


def recover(root: str | Path = ".", hook: Hook = _no_hook) -> bool:
    """Finish a promotion interrupted after its commit point; drop an uncommitted one.

    Returns
    -------
    bool
        True when an interrupted promotion was completed (rolled forward).
    """
    base = Path(root)
    work = base / WORKDIR
    if not work.exists():
        return False
    journal_file = work / JOURNAL
    if journal_file.is_file():
        journal = json.loads(journal_file.read_text(encoding="utf-8"))
        _apply(base, journal, hook)
        return True
    shutil.rmtree(work)  # prepared copies of a promotion that never committed
    return False


def promote(staging: str | Path = STAGING, root: str | Path = ".",
            targets: Sequence[str] = TARGETS, hook: Hook = _no_hook) -> dict[str, int]:
    """Replace each ``root/<target>`` by a copy of ``staging/<target>``, all or nothing.

    Parameters
    ----------
    staging
        The staging folder the stages wrote (``build``).
    root
        The project folder.
    targets
        Sub-folders to promote.
    hook
        Fault-injection point for tests: called with ``(event, path)`` after each file
        copied and after each step.

    Returns
    -------
    dict
        Files promoted per target.

    Raises
    ------
    PromoteError
        When a staged folder is missing (a stage did not run); nothing is changed.
    OSError
        E.g. a full disk while preparing; nothing visible is changed and the prepared
        copies are removed.
    """
    base, stage = Path(root), Path(root) / staging
    recover(base, hook)
    missing = [t for t in targets if not (stage / t).is_dir()]
    if missing:
        raise PromoteError(
            f"{stage}: the staged folder(s) {', '.join(missing)} are missing, so the run is "
            "incomplete and nothing was promoted (results/ and reports/ are unchanged). Run "
            "`dvc repro` (or `make repro`) to run the stages that write them.")
    work = base / WORKDIR
    counts: dict[str, int] = {}
    try:
        for target in targets:
            counts[target] = copy_tree(stage / target, work / "new" / target, hook)
        hook("prepared", work)
        journal = {"targets": {t: _identity(work / "new" / t) for t in targets}}
        with atomic_open(work / JOURNAL) as fh:
            json.dump(journal, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        if not (work / JOURNAL).is_file():
            shutil.rmtree(work, ignore_errors=True)
        raise
    _fsync_dir(work)
    hook("journaled", work)
    _apply(base, journal, hook)
    return counts


def seed_staging(staging: str | Path = STAGING, root: str | Path = ".",
                 targets: Sequence[str] = TARGETS) -> list[str]:
    """Fill a missing staging folder from the promoted outputs (e.g. on a fresh clone).

    Only an optimisation: DVC compares each staged output with the hash recorded in
    ``dvc.lock`` and reruns any stage whose seeded copy does not match, so a seed can
    never stand in for a result it is not byte for byte. Without it, a fresh clone would
    refit every model although the committed ``results/`` are exactly what ``fit`` makes.

    Returns
    -------
    list of str
        The targets seeded (those whose staging folder did not exist).
    """
    base, stage = Path(root), Path(root) / staging
    seeded = []
    for target in targets:
        if (base / target).is_dir() and not (stage / target).exists():
            tmp = stage / f".{target}.seed"
            shutil.rmtree(tmp, ignore_errors=True)
            copy_tree(base / target, tmp)
            tmp.rename(stage / target)
            seeded.append(target)
    return seeded


__all__ = ["STAGING", "TARGETS", "WORKDIR", "PromoteError", "copy_tree", "promote", "recover",
           "seed_staging"]
