"""DVC's lock table after an interrupted run: repaired before ``make repro`` starts DVC.

DVC records which outputs each running command reads and writes in ``.dvc/tmp/rwlock``,
a JSON file it rewrites in place (truncate, then write) at the start and end of every
stage. A run killed at that moment (``kill -9``, a closed terminal, a full disk) leaves
the file empty or cut off, and every later DVC command then stops with "Unable to read
RWLock-file '.dvc/tmp/rwlock'. JSON structure is corrupted" until the file is deleted
by hand (DVC issue 7615; DVC's own advice is to remove the file). The table only
describes commands that are running; a corrupt one describes none that can still finish.

:func:`repair_rwlock` removes a corrupt table while holding the guard DVC itself takes
to edit it (``.dvc/tmp/rwlock.lock``, a ``zc.lockfile`` lock: DVC's default, without
``core.hardlink_lock``), so it never races a DVC process that is writing it; a table that
reads as JSON is never touched. Written here because DVC offers no repair command.
"""

from __future__ import annotations

import json
from pathlib import Path

#: DVC's lock table and the guard DVC holds while editing it (dvc/rwlock.py).
RWLOCK = Path(".dvc") / "tmp" / "rwlock"
GUARD = Path(".dvc") / "tmp" / "rwlock.lock"


def _corrupt(path: Path) -> bool:
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return False
    except (ValueError, UnicodeDecodeError):
        return True
    return False


def repair_rwlock(root: str | Path = ".") -> bool:
    """Remove DVC's lock table under ``root`` when it is not readable JSON.

    Returns
    -------
    bool
        True when a corrupt table was removed; False when there was none, it was
        readable, or a DVC process held its guard (then DVC is editing it: left alone).
    """
    import zc.lockfile  # DVC's dependency, and the lock DVC takes for the same file

    path, guard = Path(root) / RWLOCK, Path(root) / GUARD
    if not _corrupt(path):
        return False
    try:
        lock = zc.lockfile.LockFile(str(guard))
    except zc.lockfile.LockError:
        return False
    try:
        if not _corrupt(path):  # rewritten in between by a DVC process that has finished
            return False
        path.unlink()
        return True
    finally:
        lock.close()
