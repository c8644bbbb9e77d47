"""The parallel seam: same results whatever the executor, resumable, checked settings."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.errors import SettingsError
from pipeline.parallel import (
    ExecutionSettings,
    execution_settings,
    fingerprint,
    read_checkpoint,
    replicate_seeds,
    run_replicates,
)


def ols_replicate(task: dict[str, Any]) -> dict[str, Any]:
    """A small replicate with real floating-point work: OLS slope on simulated data."""
    rng = np.random.default_rng(task["seed"])
    x = rng.normal(size=200)
    y = 0.3 * x + rng.normal(size=200)
    design = np.column_stack([np.ones_like(x), x])
    beta = np.linalg.lstsq(design, y, rcond=None)[0]
    return {"index": task["index"], "slope": float(beta[1]), "draw": int(rng.integers(1 << 30))}


def failing_after(task: dict[str, Any]) -> dict[str, Any]:
    if task["index"] >= task["stop_at"]:
        raise RuntimeError("interrupted")
    return ols_replicate(task)


def _tasks(n: int, seed: int = 7, **extra: Any) -> list[dict[str, Any]]:
    return [{"index": i, "seed": s, **extra} for i, s in enumerate(replicate_seeds(seed, n))]


def test_seeds_do_not_depend_on_the_number_of_replicates() -> None:
    few = [s.generate_state(2).tolist() for s in replicate_seeds(11, 3)]
    many = [s.generate_state(2).tolist() for s in replicate_seeds(11, 10)]
    assert few == many[:3]
    assert len({tuple(s) for s in many}) == 10


def shared_replicate(task: dict[str, Any]) -> dict[str, Any]:
    """Uses an entry that only ``shared`` provides."""
    out = ols_replicate(task)
    return {**out, "scaled": out["slope"] * task["scale"], "rows": len(task["table"])}


def pid_replicate(task: dict[str, Any]) -> dict[str, Any]:
    return {"pid": os.getpid()}


def test_one_worker_and_two_workers_give_identical_bytes() -> None:
    tasks = _tasks(40)
    serial = run_replicates(ols_replicate, tasks, ExecutionSettings(workers=1))
    forked = run_replicates(ols_replicate, tasks, ExecutionSettings(workers=2, chunk_size=3))
    assert json.dumps(serial, sort_keys=True) == json.dumps(forked, sort_keys=True)
    assert [r["index"] for r in forked] == list(range(40))
    # The replicates are really different draws, and the estimator is sane.
    slopes = np.array([r["slope"] for r in serial])
    assert len(set(slopes)) == 40
    assert abs(slopes.mean() - 0.3) < 0.05


def test_two_workers_run_in_forked_processes_of_this_one() -> None:
    pids = run_replicates(pid_replicate, _tasks(8), ExecutionSettings(workers=2, chunk_size=1))
    workers = {r["pid"] for r in pids}
    assert os.getpid() not in workers and 1 <= len(workers) <= 2


def test_shared_entries_reach_every_task_on_every_executor() -> None:
    import logging

    from dask.distributed import LocalCluster

    tasks = _tasks(9)
    shared = {"scale": 2.5, "table": list(range(1000))}
    inline = [shared_replicate({**t, **shared}) for t in tasks]
    assert run_replicates(shared_replicate, tasks, shared=shared) == inline
    forked = run_replicates(shared_replicate, tasks, ExecutionSettings(workers=2, chunk_size=2),
                            shared=shared)
    assert forked == inline and inline[0]["scaled"] == 2.5 * inline[0]["slope"]
    auto = execution_settings({"workers": "auto", "cluster_after_seconds": 0})
    assert run_replicates(shared_replicate, tasks, auto, shared=shared) == inline
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        remote = run_replicates(shared_replicate, tasks,
                                ExecutionSettings(scheduler=cluster.scheduler_address),
                                shared=shared)
    assert remote == inline
    assert "scale" not in tasks[0]  # the caller's tasks are not modified


def test_without_fork_a_local_dask_cluster_gives_the_same_bytes(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import pipeline.parallel as parallel

    monkeypatch.setattr(parallel, "_can_fork", lambda: False)
    tasks = _tasks(12)
    local = run_replicates(ols_replicate, tasks, ExecutionSettings(workers=2, chunk_size=4))
    assert json.dumps(local, sort_keys=True) == json.dumps(
        run_replicates(ols_replicate, tasks), sort_keys=True)


def test_interrupted_run_keeps_done_replicates_and_resumes(tmp_path: Path) -> None:
    ckpt = tmp_path / "power.jsonl"
    run = fingerprint({"seed": 7, "n": 12})
    with pytest.raises(RuntimeError, match="interrupted"):
        run_replicates(failing_after, _tasks(12, stop_at=5), checkpoint=ckpt, run_id=run)
    done = read_checkpoint(ckpt, run)
    assert sorted(done) == [0, 1, 2, 3, 4]
    # A torn line from a kill -9 in the middle of a write is ignored.
    with ckpt.open("a", encoding="utf-8") as fh:
        fh.write('{"index": 5, "resu')
    assert sorted(read_checkpoint(ckpt, run)) == [0, 1, 2, 3, 4]
    # Resuming: tasks 0-4 are not run again (stop_at=0 would fail on any of them).
    resumed = run_replicates(failing_after, _tasks(12, stop_at=0)[:5] + _tasks(12, stop_at=99)[5:],
                             checkpoint=ckpt, run_id=run)
    fresh = run_replicates(ols_replicate, _tasks(12))
    assert json.dumps(resumed, sort_keys=True) == json.dumps(fresh, sort_keys=True)


def test_checkpoint_of_other_settings_is_discarded(tmp_path: Path) -> None:
    ckpt = tmp_path / "power.jsonl"
    run_replicates(ols_replicate, _tasks(4), checkpoint=ckpt, run_id="a")
    assert sorted(read_checkpoint(ckpt, "a")) == [0, 1, 2, 3]
    assert read_checkpoint(ckpt, "b") == {}
    with pytest.raises(RuntimeError):
        run_replicates(failing_after, _tasks(4, stop_at=0), checkpoint=ckpt, run_id="b")


@pytest.mark.parametrize(("block", "message"), [
    ({"workers": 0}, "parallel.workers"),
    ({"workers": "two"}, "parallel.workers"),
    ({"workers": True}, "parallel.workers"),
    ({"scheduler": 8786}, "parallel.scheduler"),
    ({"chunk_size": -1}, "parallel.chunk_size"),
    ({"worker": 2}, "parallel.worker is not a setting"),
    ({"cluster_after_seconds": -1}, "parallel.cluster_after_seconds"),
    ({"cluster_after_seconds": "soon"}, "parallel.cluster_after_seconds"),
])
def test_bad_settings_name_the_setting(block: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        execution_settings(block)


def test_settings_defaults_and_auto() -> None:
    assert execution_settings(None) == ExecutionSettings(workers=1)
    assert execution_settings({"workers": "auto"}).workers >= 1
    assert execution_settings({"scheduler": "tcp://127.0.0.1:8786"}).scheduler == (
        "tcp://127.0.0.1:8786")


def test_auto_keeps_a_short_run_serial_and_hands_a_long_one_to_the_cluster() -> None:
    from pipeline.parallel import _run_pilot

    auto = execution_settings({"workers": "auto", "cluster_after_seconds": 5})
    assert auto.auto and auto.cluster_after_seconds == 5.0
    assert not execution_settings({"workers": 2}).auto
    tasks = list(enumerate(_tasks(10)))
    got: list[tuple[int, Any]] = []
    # Any positive cost x 7 replicates left exceeds 0 s: the pilot's 3 run here, 7 go on.
    left = _run_pilot(ols_replicate, tasks, 0.0, got.extend)
    assert [i for i, _ in got] == [0, 1, 2] and [i for i, _ in left] == list(range(3, 10))
    got.clear()
    # No run of 10 OLS fits takes a day: all of them run here, none is left for a cluster.
    assert _run_pilot(ols_replicate, tasks, 86_400.0, got.extend) == []
    assert [i for i, _ in got] == list(range(10))
    assert [r for _, r in got] == run_replicates(ols_replicate, [t for _, t in tasks])


def test_an_existing_dask_cluster_gives_the_same_results() -> None:
    import logging

    from dask.distributed import LocalCluster

    tasks = _tasks(10)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None, silence_logs=logging.ERROR) as cluster:
        remote = run_replicates(ols_replicate, tasks,
                                ExecutionSettings(scheduler=cluster.scheduler_address))
    assert remote == run_replicates(ols_replicate, tasks)


KILLED_RUN = '''
import os, sys, time
from pathlib import Path
from pipeline.parallel import ExecutionSettings, run_replicates

def slow(task):
    with open(task["pids"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    time.sleep(0.2)
    return {"i": task["i"]}

if __name__ == "__main__":
    tasks = [{"i": i, "pids": sys.argv[1]} for i in range(400)]
    run_replicates(slow, tasks, ExecutionSettings(workers=2, chunk_size=1))
'''


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc")
def test_workers_end_when_their_stage_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    script, pids = tmp_path / "run.py", tmp_path / "pids.txt"
    script.write_text(KILLED_RUN)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, str(script), str(pids)],
                            env={**os.environ, "PYTHONPATH": str(root)})
    deadline = time.monotonic() + 60
    workers: set[int] = set()
    while len(workers) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
        if pids.is_file():
            workers = {int(x) for x in pids.read_text().split()}
    assert len(workers) == 2 and proc.pid not in workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [p for p in workers if _alive(p)]
    for pid in survivors:  # do not leave them behind when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "workers outlived the killed stage"


def _write_pid_after(path: str, wait_for: str) -> None:
    """Wait until the body has written ``wait_for`` (so both ran at once), then write the pid."""
    import time

    for _ in range(500):
        if Path(wait_for).exists():
            break
        time.sleep(0.01)
    Path(path).write_text(f"{os.getpid()} {Path(wait_for).exists()}")


def _raise_settings_error() -> None:
    raise SettingsError("params.yaml: report.min_cell must be a whole number; set it to 5")


def test_alongside_runs_beside_the_body_and_passes_its_error_on(tmp_path: Path) -> None:
    import functools

    from pipeline.parallel import alongside

    out, flag = tmp_path / "pid", tmp_path / "body-ran"
    with alongside(functools.partial(_write_pid_after, str(out), str(flag))):
        flag.write_text("yes")  # the other process waits for this: they overlap
    pid, saw_body = out.read_text().split()  # written before alongside returned
    assert int(pid) != os.getpid() and saw_body == "True"

    with pytest.raises(SettingsError, match=r"report\.min_cell") as caught:
        with alongside(_raise_settings_error):
            pass
    assert caught.value.exit_status == 2

    # The body's own error wins over the other process's.
    with pytest.raises(KeyError, match="body"):
        with alongside(_raise_settings_error):
            raise KeyError("body")
