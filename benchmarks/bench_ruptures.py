"""Time of the ``ruptures`` stage on the shipped data, and of its episode detector.

Usage, from the project root (after ``make repro``, which writes the validated tables the
stage reads)::

    .venv/bin/python benchmarks/bench_ruptures.py            # 3 repeats
    .venv/bin/python benchmarks/bench_ruptures.py --repeats 5

Prints, each as the minimum over the repeats (wall seconds):

1. ``python -m pipeline ruptures`` as DVC runs it, in a fresh process, writing into a
   temporary folder (issue 13's goal: the stage in at most 4 s);
2. the imports alone in a fresh process (the start-up floor of the command);
3. detecting every episode of the shipped series under every criterion, with the
   vectorised detector (:func:`pipeline.ruptures.detect.detect_episodes`) and with the
   per-series loop it replaced (kept as the reference in
   ``tests/test_ruptures_vectorised.py``), in this same process, and the ratio.

Nothing is asserted (machines differ; under load from other processes the absolute times
are noisy, the ratio in one run less so).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VALIDATED = ROOT / "data" / "interim" / "validated"
IMPORTS = ("import pipeline.cli, pipeline.ruptures.stage, pipeline.figures, "
           "pipeline.ruptures.plots, pipeline.models")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONHASHSEED="0")
    return env


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=_env(), check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def stage_times(repeats: int) -> tuple[float, float]:
    """Minimum wall time of the stage and of its imports, each in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        stage = [sys.executable, "-m", "pipeline", "ruptures", "--out", str(out / "results"),
                 "--figures", str(out / "figures"), "--episodes", str(out / "episodes.csv")]
        runs = [_timed(stage) for _ in range(repeats)]
    imports = [_timed([sys.executable, "-c", IMPORTS]) for _ in range(repeats)]
    return min(runs), min(imports)


def detector_times(repeats: int) -> tuple[float, float, int]:
    """Minimum wall time of the vectorised detector and of the per-series reference."""
    import pandas as pd

    from pipeline.config import load_params
    from pipeline.instruments import load_instrument
    from pipeline.ruptures.criteria import load_criteria, load_rules, scale_reliability
    from pipeline.ruptures.detect import alliance_series, detect_episodes
    from pipeline.score import score_alliance
    from tests.test_ruptures_vectorised import _ref_clean_within_sd, _ref_detect_series

    params = load_params(ROOT / "params.yaml")
    cfg = params["ruptures"]
    inst = load_instrument(params["instruments"]["alliance"])
    alliance = pd.read_csv(VALIDATED / "alliance.csv",
                           dtype={"client_id": str, "therapist_id": str})
    scored, _ = score_alliance(alliance, inst)
    series = alliance_series(scored, [str(s) for s in cfg["scales"]])
    criteria, rules = load_criteria(cfg), load_rules(cfg)
    reliability = scale_reliability(alliance, inst)
    keys = ["client_id", "rater", "scale"]

    def reference(applied: pd.DataFrame) -> int:
        found = 0
        for crit in criteria:
            if crit.kind == "dip":  # the SD the old code iterated series by series
                _ref_clean_within_sd(series, crit.z, crit.before, crit.after, rules.max_gap)
            recs = applied[applied["criterion"] == crit.name].to_dict("records")
            thr: dict[Any, dict[Any, Any]] = {(r["client_id"], r["rater"], r["scale"]): r
                                              for r in recs}
            for key, g in series.groupby(keys, sort=True):
                rec = thr[key]
                found += len(_ref_detect_series(
                    g["session"].to_numpy(), g["score"].to_numpy(), float(rec["threshold"]),
                    rules, crit.repair, crit.repaired_only,
                    (crit.before, crit.after) if crit.kind == "dip" else None,
                    float(rec["min_drop"])))
        return found

    fast, slow = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        episodes, applied = detect_episodes(series, criteria, rules, reliability)
        fast.append(time.perf_counter() - start)
        start = time.perf_counter()
        n_ref = reference(applied)
        slow.append(time.perf_counter() - start)
    if n_ref != len(episodes):
        raise SystemExit(f"the reference found {n_ref} episodes, the detector "
                         f"{len(episodes)}: run tests/test_ruptures_vectorised.py")
    return min(fast), min(slow), len(episodes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if not (VALIDATED / "alliance.csv").is_file():
        print(f"bench_ruptures: {VALIDATED} is missing; run `make repro` (or `python -m "
              "pipeline inputs` and `python -m pipeline validate --manifest "
              "data/interim/inputs.json`) first.", file=sys.stderr)
        return 2
    stage, imports = stage_times(args.repeats)
    print(f"ruptures stage (python -m pipeline ruptures, shipped data): {stage:.2f} s wall "
          f"(min of {args.repeats}); imports alone {imports:.2f} s, the rest "
          f"{stage - imports:.2f} s")
    fast, slow, n = detector_times(args.repeats)
    print(f"episode detection ({n} episodes, every series and criterion): vectorised "
          f"{fast:.3f} s, per-series reference {slow:.3f} s, {slow / fast:.0f}x faster "
          "(same run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
