"""Time and peak memory of validating and scoring a large alliance file (issue 10).

Usage, from the project root::

    .venv/bin/python benchmarks/bench_inputs.py                 # 2,000,000 rows
    .venv/bin/python benchmarks/bench_inputs.py --rows 200000 500000

For each size the script writes a WAI-SR alliance CSV (client x session rows, 12 items,
about 0.5% blank items, a few hundred therapists) and a matching outcome CSV of the same
size to a temporary folder, then runs in a fresh child process, one after the other:
reading (:func:`pipeline.read.read_table`), validation (:func:`pipeline.validate.validate_inputs`,
which reads both files again and runs the anonymisation guard and the schema) and scoring
(:func:`pipeline.score.score_alliance`). It prints the wall time of each step, the total
and the child's peak resident memory (``ru_maxrss``). Goal (issue 10): validate and score
2 million rows in under two minutes and 2 GB. Figures are printed, not written; nothing
is asserted (machines differ).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from pipeline.instruments import load_instrument
from pipeline.read import read_table
from pipeline.score import score_alliance
from pipeline.validate import validate_inputs

alliance, outcome = sys.argv[2], sys.argv[3]
wai, swemwbs = load_instrument("wai_sr"), load_instrument("swemwbs")
times = {}
t0 = time.perf_counter()
read_table(alliance)
times["read alliance"] = time.perf_counter() - t0
t0 = time.perf_counter()
checked = validate_inputs({"alliance": alliance, "outcome": outcome}, wai, swemwbs, {})
times["validate both files"] = time.perf_counter() - t0
t0 = time.perf_counter()
score_alliance(checked.alliance, wai)
times["score alliance"] = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"times": times, "peak_mb": peak}))
"""


def write_files(folder: Path, n_rows: int, seed: int = 1) -> tuple[Path, Path]:
    """Write an alliance and an outcome CSV of ``n_rows`` client x session rows each."""
    rng = np.random.default_rng(seed)
    sessions = 10
    n_clients = int(np.ceil(n_rows / sessions))
    client = np.repeat(np.arange(1, n_clients + 1), sessions)[:n_rows]
    session = np.tile(np.arange(1, sessions + 1), n_clients)[:n_rows]
    ids = np.char.add("C", np.char.zfill(client.astype(str), 7))
    therapist = np.char.add("T", np.char.zfill((client % 400 + 1).astype(str), 3))
    alliance = pd.DataFrame({"client_id": ids, "therapist_id": therapist, "session": session})
    for i in range(1, 13):
        items = rng.integers(1, 6, n_rows).astype(float)
        items[rng.random(n_rows) < 0.005] = np.nan
        alliance[f"wai_sr_{i}"] = pd.array(items).astype("Int64")
    outcome = pd.DataFrame({"client_id": ids, "session": session,
                            "swemwbs": np.round(rng.uniform(7, 35, n_rows), 2)})
    paths = folder / "alliance.csv", folder / "outcome.csv"
    alliance.to_csv(paths[0], index=False)
    outcome.to_csv(paths[1], index=False)
    return paths


def run(n_rows: int) -> dict[str, object]:
    """Write the files, run the child, return its figures plus the file size."""
    with tempfile.TemporaryDirectory(prefix="bench-inputs-") as tmp:
        alliance, outcome = write_files(Path(tmp), n_rows)
        size_mb = alliance.stat().st_size / 1e6
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(ROOT), str(alliance),
                              str(outcome)], capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures.update({"rows": n_rows, "alliance_mb": size_mb, "child_wall_s": wall})
    return figures


def main() -> None:
    """Print the figures for each size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000_000])
    args = parser.parse_args()
    for n in args.rows:
        f = run(n)
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in f["times"].items())
        validate_score = f["times"]["validate both files"] + f["times"]["score alliance"]
        print(f"{f['rows']:>10,} rows ({f['alliance_mb']:.0f} MB alliance CSV): {steps}; "
              f"validate + score {validate_score:.1f} s (goal < 120 s); peak memory "
              f"{f['peak_mb']:,.0f} MB (goal < 2,048 MB); child wall {f['child_wall_s']:.1f} s",
              flush=True)


if __name__ == "__main__":
    main()
