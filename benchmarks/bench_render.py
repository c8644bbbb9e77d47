"""Rendering the six reports with kernels forked from a zygote, and with fresh kernels.

The `report` stage renders every notebook in a kernel of its own. A fresh kernel is a new
interpreter that imports ipykernel, pandas, matplotlib and the plotting helpers (~2 s of
CPU each); a forked one (`pipeline/zygote.py`) is a copy of one process that imported
them once. This renders the shipped notebooks from the committed `results/` both ways,
alternating which goes first, in a new process each time (so imports are paid as the
stage pays them), and prints wall and CPU seconds (the render process and everything it
started: kernels, launchers, zygote) and the ratios within each run. The HTML of both
ways must be byte-identical; the benchmark stops if not. Nothing in the working copy is
touched (the reports go to a temporary folder).

Usage: ``python benchmarks/bench_render.py [--runs 2]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("overview", "psychometrics", "models", "sensitivity", "ruptures", "power")
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "PYTHONPATH": str(ROOT)}
RENDER = """
import sys
from pathlib import Path
from pipeline.report import render_many
out, fork = Path(sys.argv[1]), sys.argv[2] == "fork"
render_many([(Path("notebooks") / f"{n}.py", out / f"{n}.html") for n in sys.argv[3:]],
            {"params_file": "params.yaml"}, cwd=Path.cwd(), fork=fork)
"""


def render(out: Path, fork: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one rendering of :data:`NOTEBOOKS` into ``out``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", RENDER, str(out), "fork" if fork else "fresh",
                    *NOTEBOOKS], cwd=ROOT, env=ENV, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        for run in range(args.runs):
            order = (True, False) if run % 2 == 0 else (False, True)
            times = {}
            for fork in order:
                times[fork] = render(Path(tmp) / f"{run}-{fork}", fork)
            for name in NOTEBOOKS:
                forked = (Path(tmp) / f"{run}-True" / f"{name}.html").read_bytes()
                fresh = (Path(tmp) / f"{run}-False" / f"{name}.html").read_bytes()
                if forked != fresh:
                    sys.exit(f"{name}.html differs between forked and fresh kernels")
            (fw, fc), (nw, nc) = times[False], times[True]
            print(f"run {run + 1}: fresh kernels {fw:5.1f} s wall {fc:5.1f} s CPU | "
                  f"forked {nw:5.1f} s wall {nc:5.1f} s CPU | ratio wall {nw / fw:.2f} "
                  f"CPU {nc / fc:.2f} | {len(NOTEBOOKS)} reports byte-identical")


if __name__ == "__main__":
    main()
