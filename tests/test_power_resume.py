"""A power run killed with SIGKILL keeps its finished replicates and a rerun completes it,
with the same bytes as a run that was never interrupted."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

POWER = {"model": "primary", "replications": 40, "seed": 5, "alpha": 0.05,
         "designs": [{"therapists": 4, "clients_per_therapist": 3, "sessions": 4}],
         "effects": {"goal_within": 0.5}, "terms": ["goal_within"],
         "max_failed_share": 1.0,
         # given, so the test needs no scored data (else estimated from them)
         "alliance": {"mean": [3.7, 3.6, 3.9], "growth": 0.03, "therapist_sd": 0.2,
                      "client_sd": 0.5, "session_sd": 0.35, "client_corr": 0.6,
                      "session_corr": 0.5}}


def _project(folder: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["power"] = POWER
    params["parallel"] = {"workers": 1}
    folder.mkdir()
    (folder / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    (folder / "dvc.yaml").write_text("stages: {}\n", encoding="utf-8")
    results = folder / "build" / "results"   # the staging area the stages read and write
    results.mkdir(parents=True)
    for name in ("coefficients.csv", "variance_components.csv", "fit_statistics.csv"):
        shutil.copy(ROOT / "results" / name, results / name)
    return folder


def _power(folder: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipeline", "power"], cwd=folder, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) if path.is_file() else 0


def test_killed_power_run_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    killed = _project(tmp_path / "killed")
    ckpt = killed / "data" / "interim" / "power" / "replicates.jsonl"
    proc = _power(killed)
    deadline = time.monotonic() + 120
    while _lines(ckpt) < 1 + 22 and time.monotonic() < deadline:  # header + a sync batch
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _lines(ckpt) - 1
    assert 20 <= done < 40, done
    assert not (killed / "build" / "results" / "power.csv").exists()

    rerun = _power(killed)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    assert not ckpt.exists()  # a finished run leaves no checkpoint for a forced rerun

    clean = _project(tmp_path / "clean")
    once = _power(clean)
    _, err = once.communicate(timeout=300)
    assert once.returncode == 0, err.decode()
    for name in ("power.csv", "power_target.csv", "power_truth.csv"):
        staged = Path("build") / "results" / name
        assert (killed / staged).read_bytes() == (clean / staged).read_bytes()
