"""`dvc plots show` draws every figure CSV declared under `plots:` in dvc.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml


def test_dvc_plots_show_renders_every_declared_plot(root: Path, tmp_path: Path) -> None:
    declared = [next(iter(p)) for p in yaml.safe_load((root / "dvc.yaml").read_text())["plots"]]
    assert "reports/figures/trajectories.csv" in declared
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["dvc", "plots", "show", "--json", "-o", str(tmp_path / "plots")],
                          cwd=root, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert not shown.get("errors"), shown.get("errors")
    rendered = shown["data"]
    assert set(declared) <= set(rendered), sorted(set(declared) - set(rendered))
    for name in declared:
        spec = rendered[name][0]["content"]
        assert spec["data"]["values"], f"{name}: no data drawn"
        assert "<DVC_METRIC" not in json.dumps(spec), f"{name}: template anchor left unfilled"
