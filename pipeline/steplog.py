"""Progress lines for long steps: start, a heartbeat while running, end with time and memory.

A 2-million-row file once gave no output for twenty minutes. Each CLI step wraps its long
phases in :func:`phase`: it prints what starts (with the input sizes where known), then
every :data:`HEARTBEAT_SECONDS` a line saying it is still at it and for how long, and at
the end the elapsed time and the process's peak memory. The lines go to stderr with the
step's prefix, so DVC shows them as they come and logs stay greppable; no progress bar
(control characters would garble DVC's and CI's logs).
"""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: Seconds between "still running" lines of a long phase.
HEARTBEAT_SECONDS = 30.0


def log(step: str, message: str) -> None:
    """Print a progress line to stderr."""
    print(f"[{step}] {message}", file=sys.stderr, flush=True)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 1024 / 1024


def describe_files(paths: list[str | Path]) -> str:
    """``"a.csv (12.3 MB), b.csv (0.1 MB)"`` for the files that exist."""
    parts = []
    for path in paths:
        p = Path(path)
        if p.is_file():
            parts.append(f"{p.name} ({p.stat().st_size / 1e6:.1f} MB)")
    return ", ".join(parts)


@contextmanager
def phase(step: str, what: str, heartbeat: float = HEARTBEAT_SECONDS) -> Iterator[None]:
    """Log the start of ``what``, a heartbeat every ``heartbeat`` s, and the end.

    Parameters
    ----------
    step
        The CLI step (the line prefix).
    what
        What is being done, e.g. ``"reading and checking 3 files (310 MB)"``.
    heartbeat
        Seconds between "still ..." lines; 0 switches them off.
    """
    start = time.perf_counter()
    done = threading.Event()
    log(step, f"{what} ...")

    def beat() -> None:
        while not done.wait(heartbeat):
            log(step, f"still {what} ({time.perf_counter() - start:.0f} s, "
                      f"peak memory {peak_memory_mb():.0f} MB)")

    thread = threading.Thread(target=beat, daemon=True) if heartbeat > 0 else None
    if thread is not None:
        thread.start()
    try:
        yield
    finally:
        done.set()
        if thread is not None:
            thread.join()
    log(step, f"done {what} in {time.perf_counter() - start:.1f} s "
              f"(peak memory {peak_memory_mb():.0f} MB)")


__all__ = ["HEARTBEAT_SECONDS", "describe_files", "log", "peak_memory_mb", "phase"]
