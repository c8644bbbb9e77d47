"""The one seam for running many independent replicates: serially, in worker processes, or on Dask.

Power analysis, the parametric bootstrap and the specification curve each run hundreds
to thousands of independent fits. They all go through :func:`run_replicates`, which runs
a plain, picklable function over a list of tasks

* serially in this process (``workers: 1``),
* in ``workers`` single-threaded local worker processes (``workers: auto`` takes every
  core, but only for a run long enough to repay starting them: see below), or
* on an existing Dask cluster given by its scheduler address (``scheduler:``), such as
  one started with dask-jobqueue on a university cluster,

and returns the results **in task order**. Randomness never comes from the executor:
every replicate carries its own :class:`numpy.random.SeedSequence` spawned from one seed
(:func:`replicate_seeds`), and each task runs with one BLAS thread, so the results are
byte-identical whatever the number of workers or the scheduler.

An interrupted run keeps the replicates already done: with ``checkpoint=`` every finished
result is appended as one JSON line to that file (flushed and synced in batches), under a
header that fingerprints the run's settings; a rerun with the same fingerprint skips the
replicates already there, a changed fingerprint starts afresh. A torn last line (the
process was killed while writing it) is ignored.

Local workers are *forked* from this process (on Linux): they inherit the imported
scientific stack and start in milliseconds. A Dask ``LocalCluster`` starts each worker as
a new interpreter that imports numpy, pandas, scipy ... again, measured here at 3-12 s
per worker on a 2-core machine, more than most of this project's runs take in all
(150 power replicates on 2 workers ran 1.1x faster than serially, the bootstrap's 200
refits slower). That is why local runs use :class:`concurrent.futures.ProcessPoolExecutor`
with the ``fork`` start method, and Dask only where it pays: a cluster given by
``parallel.scheduler`` (the same code then scales from a laptop to a cluster without
change, which a real power study of 10,000 replicates x 20 designs needs), and a
``LocalCluster`` on platforms without ``fork``. With ``auto``, the first replicates run
serially in this process and workers start only when the estimated serial time of the
rest (count x the mean time of those done) exceeds ``parallel.cluster_after_seconds``.
Which replicate runs where never changes a result.

R equivalent: ``simr::powerSim`` and ``lme4::bootMer`` run their replicates serially
(``bootMer(parallel = "multicore")`` forks locally, as here); neither resumes an
interrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import SettingsError

#: Results are plain JSON-able mappings: they are checkpointed as JSON lines and must
#: not depend on pickling details.
Result = dict[str, Any]
Task = Mapping[str, Any]

#: Checkpoint lines are synced to disk after this many results.
_SYNC_EVERY = 20


@dataclass(frozen=True)
class ExecutionSettings:
    """How replicates run (the ``parallel:`` block of params.yaml).

    Attributes
    ----------
    workers
        Number of local worker processes; 1 runs serially in this process.
    scheduler
        Address of an existing Dask scheduler (e.g. ``tcp://10.0.0.5:8786``); when given,
        ``workers`` is ignored and the cluster's workers are used.
    chunk_size
        Tasks sent to a worker at once (fewer round trips for cheap replicates); 0 lets
        :func:`run_replicates` choose.
    auto
        ``workers`` was ``auto``: start worker processes only for a long enough run.
    cluster_after_seconds
        With ``auto``: the estimated serial time of the remaining replicates above which
        worker processes (or, without ``fork``, the local Dask cluster) are started.
    """

    workers: int = 1
    scheduler: str | None = None
    chunk_size: int = 0
    auto: bool = False
    cluster_after_seconds: float = 1.0


def execution_settings(block: Mapping[str, Any] | None) -> ExecutionSettings:
    """Read and check the ``parallel:`` block of params.yaml.

    ``workers`` is a positive integer or ``auto`` (every core of this machine).

    Raises
    ------
    SettingsError
        Naming the setting, the rule and what to do.
    """
    block = dict(block or {})
    known = {"workers", "scheduler", "chunk_size", "cluster_after_seconds"}
    unknown = sorted(set(block) - known)
    if unknown:
        raise SettingsError(
            f"params.yaml: parallel.{unknown[0]} is not a setting (known: "
            f"{', '.join(sorted(known))}); remove it or correct its spelling.")
    workers_raw = block.get("workers", 1)
    if workers_raw == "auto":
        workers = max(1, os.cpu_count() or 1)
    elif isinstance(workers_raw, int) and not isinstance(workers_raw, bool) and workers_raw >= 1:
        workers = workers_raw
    else:
        raise SettingsError(
            f"params.yaml: parallel.workers is {workers_raw!r}; it must be a whole number "
            "of at least 1 (1 = serial) or `auto` (every core).")
    scheduler = block.get("scheduler") or None
    if scheduler is not None and not isinstance(scheduler, str):
        raise SettingsError(
            f"params.yaml: parallel.scheduler is {scheduler!r}; give the address of a "
            "running Dask scheduler as text (e.g. tcp://host:8786) or leave it empty.")
    chunk = block.get("chunk_size", 0)
    if not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 0:
        raise SettingsError(
            f"params.yaml: parallel.chunk_size is {chunk!r}; use a whole number >= 0 "
            "(0 = chosen automatically).")
    after = block.get("cluster_after_seconds", 1.0)
    if (not isinstance(after, (int, float)) or isinstance(after, bool) or after < 0
            or not np.isfinite(after)):
        raise SettingsError(
            f"params.yaml: parallel.cluster_after_seconds is {after!r}; use a number of "
            "seconds >= 0 (0 = always start the cluster with `workers: auto`).")
    return ExecutionSettings(workers=workers, scheduler=scheduler, chunk_size=chunk,
                             auto=workers_raw == "auto", cluster_after_seconds=float(after))


def replicate_seeds(seed: int, n: int) -> list[np.random.SeedSequence]:
    """One independent seed sequence per replicate, spawned from ``seed``.

    Replicate ``i`` gets the same stream however many replicates run, on whichever worker
    and in whatever order, so results do not depend on the executor.
    """
    return list(np.random.SeedSequence(int(seed)).spawn(int(n)))


def fingerprint(settings: Any) -> str:
    """A short hash of a run's settings (JSON with sorted keys), for checkpoints."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def code_fingerprint() -> str:
    """A short hash of the package's code (``pipeline/**/*.py`` and ``*.yaml``).

    Part of a checkpoint's run id: replicates computed by other code are never reused,
    so a resumed run gives the bytes a fresh run of the same code would give.
    """
    from pipeline.importrecord import not_used

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    with not_used():   # hashed, not run: not a file the stage depends on
        for path in sorted(p for pattern in ("**/*.py", "**/*.yaml")
                           for p in package.glob(pattern) if "__pycache__" not in p.parts):
            digest.update(path.relative_to(package).as_posix().encode("utf-8") + b"\n")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------


def read_checkpoint(path: Path, run_id: str) -> dict[int, Result]:
    """Results already done in an earlier, interrupted run with the same ``run_id``."""
    if not path.is_file():
        return {}
    done: dict[int, Result] = {}
    with path.open(encoding="utf-8") as fh:
        header = fh.readline()
        try:
            if json.loads(header).get("run") != run_id:
                return {}
        except (json.JSONDecodeError, AttributeError):
            return {}
        for line in fh:
            try:
                record = json.loads(line)
                done[int(record["index"])] = record["result"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                break  # a torn last line from a killed run: everything before it is good
    return done


class _CheckpointWriter:
    """Appends finished results as JSON lines; rewrites the file on a new run id."""

    def __init__(self, path: Path, run_id: str, done: Mapping[int, Result]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Rewrite what was read (drops a torn line), then append.
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="\n") as fh:
            fh.write(json.dumps({"run": run_id}) + "\n")
            for index in sorted(done):
                fh.write(json.dumps({"index": index, "result": done[index]},
                                    sort_keys=True) + "\n")
        os.replace(tmp, path)
        self._fh = path.open("a", encoding="utf-8", newline="\n")
        self._pending = 0

    def add(self, index: int, result: Result) -> None:
        self._fh.write(json.dumps({"index": index, "result": result}, sort_keys=True) + "\n")
        self._pending += 1
        if self._pending >= _SYNC_EVERY:
            self.sync()

    def sync(self) -> None:
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._pending = 0

    def close(self) -> None:
        self.sync()
        self._fh.close()


# --------------------------------------------------------------------------------------
# Execution
# --------------------------------------------------------------------------------------


def _run_chunk(func: Callable[[Task], Result], chunk: Sequence[tuple[int, Task]],
               shared: Mapping[str, Any] | None = None,
               limit: bool = True) -> list[tuple[int, Result]]:
    """Run tasks (each with ``shared`` added) with one BLAS thread: the same bits on every
    worker. ``limit=False`` when the caller already holds the limit (the serial paths
    take it once: setting it costs 2-4 ms, as much as a small refit)."""
    from contextlib import nullcontext

    from threadpoolctl import threadpool_limits

    if shared is None:
        shared = _FORKED_SHARED
    with threadpool_limits(limits=1) if limit else nullcontext():
        return [(index, func({**task, **shared} if shared else task))
                for index, task in chunk]


#: ``shared`` of the run in progress, inherited by forked workers (never pickled).
_FORKED_SHARED: Mapping[str, Any] = {}


def _chunks(items: Sequence[tuple[int, Task]], size: int) -> Iterator[list[tuple[int, Task]]]:
    for start in range(0, len(items), size):
        yield list(items[start:start + size])


def _progress(total: int, initial: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit="rep", file=sys.stderr,
                mininterval=0.5 if interactive else 10.0, disable=total == 0,
                dynamic_ncols=interactive)


def run_replicates(
    func: Callable[[Task], Result],
    tasks: Sequence[Task],
    settings: ExecutionSettings | None = None,
    *,
    desc: str = "replicates",
    checkpoint: str | Path | None = None,
    run_id: str = "",
    shared: Mapping[str, Any] | None = None,
) -> list[Result]:
    """Run ``func`` on every task and return the results in task order.

    Parameters
    ----------
    func
        A module-level (picklable) function of one task returning a JSON-able dict. It
        must take its randomness from the task (e.g. a seed from :func:`replicate_seeds`).
    tasks
        The tasks, each a mapping of plain values.
    settings
        Executor settings; default serial.
    desc
        Label of the progress bar.
    checkpoint
        A JSON-lines file to keep finished results in, so that an interrupted run resumes.
    run_id
        Fingerprint of the settings that produced ``tasks`` (see :func:`fingerprint`);
        checkpointed results of another run id are discarded.
    shared
        Entries added to every task when it runs, sent to each worker once instead of
        with every task (e.g. the fitted model a bootstrap refits: 0.6 MB pickled).

    Returns
    -------
    list of dict
        ``result[i]`` is ``func(tasks[i])``.
    """
    settings = settings or ExecutionSettings()
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    done = read_checkpoint(ckpt_path, run_id) if ckpt_path is not None else {}
    done = {i: r for i, r in done.items() if 0 <= i < len(tasks)}
    todo = [(i, t) for i, t in enumerate(tasks) if i not in done]
    writer = _CheckpointWriter(ckpt_path, run_id, done) if ckpt_path is not None else None
    bar = _progress(len(tasks), len(done), desc)
    results: dict[int, Result] = dict(done)

    def collect(pairs: Sequence[tuple[int, Result]]) -> None:
        for index, result in pairs:
            results[index] = result
            if writer is not None:
                writer.add(index, result)
        bar.update(len(pairs))

    shared = dict(shared or {})
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            if settings.scheduler is None and settings.workers > 1 and settings.auto:
                todo = _run_pilot(func, todo, settings.cluster_after_seconds, collect,
                                  shared=shared)
            if settings.scheduler is None and settings.workers <= 1:
                for pair in todo:
                    collect(_run_chunk(func, [pair], shared, limit=False))
                todo = []
        if not todo:
            pass
        elif settings.scheduler is None and _can_fork():
            _run_forked(func, todo, settings, collect, shared)
        else:
            _run_dask(func, todo, settings, collect, shared)
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    return [results[i] for i in range(len(tasks))]


def _run_pilot(func: Callable[[Task], Result], todo: Sequence[tuple[int, Task]],
               threshold: float,
               collect: Callable[[Sequence[tuple[int, Result]]], None],
               pilot: int = 3, shared: Mapping[str, Any] | None = None,
               ) -> list[tuple[int, Task]]:
    """Run replicates serially until the rest would take more than ``threshold`` seconds.

    After each of the first ``pilot`` replicates (and then after every replicate) the
    serial time of those left is estimated as their count x the mean time so far; as soon
    as it exceeds ``threshold`` the remaining tasks are returned for the cluster. A run
    that stays under it finishes here and returns nothing.
    """
    rest = list(todo)
    spent, done = 0.0, 0
    while rest:
        start = time.perf_counter()
        collect(_run_chunk(func, [rest.pop(0)], shared or {}, limit=False))
        spent += time.perf_counter() - start
        done += 1
        if done >= min(pilot, len(todo)) and len(rest) * spent / done > threshold:
            break
    return rest


def _can_fork() -> bool:
    """Whether local workers can be forked: Linux only (macOS's system libraries are not
    fork-safe, Windows has no fork)."""
    import multiprocessing

    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _die_with_parent(parent: int) -> None:
    """Worker start-up: end this worker when the stage that forked it ends, even by kill -9.

    A ``concurrent.futures`` worker waits for its next task forever; without this, a
    stage killed mid-run (``kill -9``, a full disk in another process) left its workers
    alive. Linux's ``PR_SET_PDEATHSIG`` has the kernel send SIGKILL to this process when
    its parent dies; a parent that died before the call is caught by the pid check.
    """
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool is not used there
        pass
    if os.getppid() != parent:
        os._exit(1)


@contextmanager
def alongside(func: Callable[[], object]) -> Iterator[None]:
    """Run ``func()`` in a forked process while the ``with`` body runs in this one.

    On leaving the body this waits for ``func`` and re-raises its exception here (a
    :class:`~pipeline.errors.PipelineError` keeps its message and exit status). If the body
    fails, that error wins once ``func`` has ended. ``func`` must be picklable (a
    module-level function or a :func:`functools.partial` of one) and must not write what
    the body reads. Without ``fork`` (not Linux) it simply runs first, in this process.

    Used by the ``report`` stage: the figures and tables are drawn on one core while the
    notebooks' kernels start and run on the other.
    """
    if not _can_fork():
        func()
        yield
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork"),
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
        future = pool.submit(func)
        try:
            yield
        finally:
            error = future.exception()  # waits; the body's own error, if any, propagates
        if error is not None:
            raise error


def _chunk_size(settings: ExecutionSettings, n_tasks: int, n_workers: int) -> int:
    """Tasks per round trip: ``chunk_size``, or about four chunks per worker (at most 50)."""
    return settings.chunk_size or max(1, min(50, n_tasks // (4 * n_workers) or 1))


def _run_forked(func: Callable[[Task], Result], todo: Sequence[tuple[int, Task]],
                settings: ExecutionSettings,
                collect: Callable[[Sequence[tuple[int, Result]]], None],
                shared: Mapping[str, Any]) -> None:
    """Run the tasks in ``settings.workers`` worker processes forked from this one; they
    inherit ``shared`` (set here before they start) instead of receiving it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    global _FORKED_SHARED
    context = multiprocessing.get_context("fork")
    size = _chunk_size(settings, len(todo), settings.workers)
    _FORKED_SHARED = shared
    try:
        with ProcessPoolExecutor(max_workers=settings.workers, mp_context=context,
                             initializer=_die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = [pool.submit(_run_chunk, func, chunk) for chunk in _chunks(todo, size)]
            try:
                for future in as_completed(futures):
                    collect(future.result())
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    finally:
        _FORKED_SHARED = {}


def _run_dask(func: Callable[[Task], Result], todo: Sequence[tuple[int, Task]],
              settings: ExecutionSettings,
              collect: Callable[[Sequence[tuple[int, Result]]], None],
              shared: Mapping[str, Any] | None = None) -> None:
    from dask.distributed import Client, LocalCluster, as_completed

    if settings.scheduler is not None:
        client = Client(settings.scheduler)
        cluster = None
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    else:
        # Single-threaded worker processes; no dashboard (no port to clash with).
        cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=1,
                               processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
        client = Client(cluster)
        n_workers = settings.workers
    size = _chunk_size(settings, len(todo), n_workers)
    try:
        # shared goes to every worker once (a future each task's chunk refers to).
        common = client.scatter([dict(shared)], broadcast=True)[0] if shared else None
        futures = [client.submit(_run_chunk, func, chunk, common, pure=False)
                   for chunk in _chunks(todo, size)]
        for future in as_completed(futures):
            collect(future.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
