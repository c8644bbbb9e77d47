"""How long the whole pipeline takes: a fresh clone's `make repro`, and `dvc repro -f`.

Issue 13's goals: a fresh clone's `make repro` (environment installed) under 60 s, and a
forced rerun `dvc repro -f` on the shipped data under 30 s without the `fit` stage.
This clones HEAD into a temporary folder (the environment linked, not reinstalled), runs

1. `compileall`, `python -m pipeline seed-staging` + `dvc repro`, as `make repro` does on a
   fresh clone;
2. `dvc repro -f` twice, each stage's wall time read from `pipeline.progress`'s lines;

and prints the times per stage, the totals with and without `fit`, the CPU time of the
stages' processes, and two floors measured in the same run: `python -c "import pandas"`
(what any stage pays to start) and `dvc repro -f` of ten stages that do nothing (DVC's own
cost). The machine's load average is printed first: on a busy machine the wall times are
not the goal's. Nothing in the working copy is touched.

Usage: ``python benchmarks/bench_repro.py [--runs 2]``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0",
       "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
_DONE = re.compile(r"^stage (?P<stage>\S+): done in (?P<seconds>[\d.]+) s$")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(command: list[str], cwd: Path) -> tuple[float, float, dict[str, float]]:
    """Wall time, CPU time of the child processes, and per-stage wall times."""
    cpu0, start = _children_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.progress", *command], cwd=cwd,
                          env={**ENV, "PYTHONPATH": str(cwd)}, capture_output=True,
                          text=True)
    wall, cpu = time.perf_counter() - start, _children_cpu() - cpu0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    stages = {m["stage"]: float(m["seconds"])
              for m in map(_DONE.match, proc.stdout.splitlines()) if m}
    return wall, cpu, stages


def floors(tmp: Path) -> tuple[float, float]:
    """`import pandas` in a new process, and DVC's own cost for ten empty stages."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import pandas"], check=True, env=ENV)
    pandas = time.perf_counter() - start
    repo = tmp / "empty-stages"
    repo.mkdir()
    dvc = str(ROOT / ".venv" / "bin" / "dvc")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=repo, check=True, env=ENV)
    lines = ["stages:"]
    for i in range(10):
        (repo / f"in{i}.txt").write_text(str(i))
        dep = f"      - out{i - 1}.txt\n" if i else ""
        lines.append(f"  s{i}:\n    cmd: echo {i} > out{i}.txt\n    deps:\n      - in{i}.txt\n"
                     f"{dep}    outs:\n      - out{i}.txt:\n          cache: false")
    (repo / "dvc.yaml").write_text("\n".join(lines) + "\n")
    subprocess.run([dvc, "repro", "-q"], cwd=repo, check=True, env=ENV,
                   capture_output=True)
    start = time.perf_counter()
    subprocess.run([dvc, "repro", "-f", "-q"], cwd=repo, check=True, env=ENV,
                   capture_output=True)
    return pandas, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="forced reruns to time")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-repro-") as folder:
        tmp = Path(folder)
        clone = tmp / "clone"
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)],
                       check=True)
        (clone / ".venv").symlink_to(ROOT / ".venv")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "compileall", "-q", "pipeline"], cwd=clone,
                       env=ENV, check=True)  # as `make repro` does
        subprocess.run([sys.executable, "-m", "pipeline", "seed-staging"], cwd=clone,
                       env={**ENV, "PYTHONPATH": str(clone)}, check=True,
                       capture_output=True)
        _, _, stages = run(["dvc", "repro"], clone)
        fresh = time.perf_counter() - start
        print(f"fresh clone, `make repro` without the install: {fresh:.1f} s "
              f"(stages run: {', '.join(stages) or 'none'})")
        runs = []
        for i in range(args.runs):
            for ckpt in (clone / "data" / "interim" / "power").glob("*.jsonl"):
                ckpt.unlink()
            runs.append(run(["dvc", "repro", "-f"], clone))
            status = subprocess.run(["git", "status", "--porcelain"], cwd=clone,
                                    capture_output=True, text=True).stdout.strip()
            print(f"dvc repro -f, run {i + 1}: outputs "
                  + ("byte-identical to the commit" if not status else f"differ:\n{status}"))
        pandas, empty = floors(tmp)
    names = list(runs[0][2])
    print(f"\n{'stage':<12}" + "".join(f"{f'run {i + 1}':>9}" for i in range(len(runs))))
    for name in names:
        print(f"{name:<12}" + "".join(f"{r[2].get(name, float('nan')):>8.1f}s" for r in runs))
    for label, key in (("total", None), ("w/o fit", "fit")):
        print(f"{label:<12}" + "".join(
            f"{r[0] - (r[2].get(key, 0.0) if key else 0.0):>8.1f}s" for r in runs))
    print(f"{'CPU (all)':<12}" + "".join(f"{r[1]:>8.1f}s" for r in runs))
    print(f"\nfloors in this run: `import pandas` {pandas:.2f} s per process; "
          f"DVC alone, 10 empty stages: {empty:.2f} s")
    best = min(r[0] - r[2].get("fit", 0.0) for r in runs)
    print(f"goal `dvc repro -f` without fit < 30 s: best {best:.1f} s "
          f"({'met' if best < 30 else 'not met'})")


if __name__ == "__main__":
    main()
