"""Atomic file writing with the permissions of any new file (no numpy/pandas: cheap to import).

:func:`atomic_open` writes to a temporary file beside the target and moves it into place
with :func:`os.replace` only when complete, so a failed or killed writer never leaves a
half-written file. The file gets ``0666`` less the umask (``0644`` under the usual umask
022), not the ``0600`` of :func:`tempfile.mkstemp`, so colleagues sharing a project folder
can read fresh results. A writer killed with SIGKILL leaves its ``.<name>.*.tmp`` file
behind; ``.gitignore`` and ``.dvcignore`` ignore that pattern.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permission bits :func:`open` gives a new file: ``0o666`` less the umask."""
    return 0o666 & ~current_umask()


@contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; move it onto ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **kwargs) as fh:
            os.fchmod(fh.fileno(), new_file_mode())  # mkstemp makes 0600
            yield fh
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["atomic_open", "current_umask", "new_file_mode"]
