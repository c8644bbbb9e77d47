"""Which of the project's own files a process used: for the test that ``dvc.yaml``'s deps
cover them.

DVC reruns a stage only when one of its declared ``deps`` changed. A stage that imports a
module (or reads a YAML file of rules) missing from its deps keeps stale outputs after that
file is edited, and nothing fails until a reviewer's ``make verify``. With the environment
variable ``PIPELINE_RECORD_IMPORTS`` set to a folder, every process that imports
:mod:`pipeline` writes, when it ends, one file ``<folder>/<stage>.<pid>.txt`` listing the
files below the project root that it imported or opened (``pipeline/models/engine.py``,
``pipeline/table_style.yaml`` ...). ``<stage>`` is ``DVC_STAGE``, which DVC sets for a
stage's command and every process it starts (notebook kernels included); ``none`` outside
DVC. ``tests/test_pipeline.py`` runs ``dvc repro -f`` with it and compares.

Imported modules are read from ``sys.modules`` at exit; other files through Python's
audit hook on ``open`` (PEP 578), so a lazily imported module or a file read only on some
paths is seen when, and only when, the run took that path. Worker processes forked for
replicates leave through ``os._exit`` and record nothing; their parent ran the first
replicates itself (``parallel.workers: auto``) and imported the same code. Notebook
kernels are not recorded either (they are ended from outside); the test adds what the
notebooks import.

Off (nothing installed, no cost) unless the variable is set.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ENV = "PIPELINE_RECORD_IMPORTS"
#: The project root: the folder holding the ``pipeline`` package.
ROOT = Path(__file__).resolve().parents[1]
_paused = [0]


@contextmanager
def not_used() -> Iterator[None]:
    """Files opened inside are read as bytes, not used (e.g. hashed by
    :func:`pipeline.parallel.code_fingerprint`): not recorded."""
    _paused[0] += 1
    try:
        yield
    finally:
        _paused[0] -= 1


def _below_root(path: str | os.PathLike[str]) -> str | None:
    try:
        rel = Path(os.path.abspath(os.fspath(path))).relative_to(ROOT)
    except (TypeError, ValueError):
        return None
    if "__pycache__" in rel.parts or rel.parts[:1] == ("build",):
        return None
    return rel.as_posix()


def install(folder: str) -> None:
    """Record this process's (and its forked children's) files into ``folder``."""
    opened: set[str] = set()

    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and not _paused[0] and isinstance(args[0], str | os.PathLike):
            rel = _below_root(args[0])  # type: ignore[arg-type]
            if rel is not None:
                opened.add(rel)

    def write() -> None:
        files = set(opened)
        for module in list(sys.modules.values()):
            name = getattr(module, "__file__", None)
            rel = _below_root(name) if name else None
            if rel is not None:
                files.add(rel)
        stage = os.environ.get("DVC_STAGE", "none").replace("/", "_").replace(":", "_")
        out = Path(folder) / f"{stage}.{os.getpid()}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join(f"{f}\n" for f in sorted(files)), encoding="utf-8")

    sys.addaudithook(hook)
    atexit.register(write)
