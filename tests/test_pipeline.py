"""End to end, as a reviewer and a researcher use it: on a fresh clone of the committed repo.

These tests clone HEAD (so they check what is committed, not the working tree), run the
DVC pipeline there with this environment's tools, and check that

* `dvc repro -f` reproduces every committed output byte for byte (`git status` clean),
  i.e. the committed dvc.lock is a manifest that holds;
* a bad input file stops `dvc repro` with a message naming the file, the column and the
  rule, and leaves every earlier result and report exactly as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _snapshot(folder: Path) -> dict[str, str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory, root: Path) -> tuple[Path, dict[str, str]]:
    head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=root,
                          capture_output=True, text=True, check=False)
    if head.returncode != 0:
        pytest.skip("no commit yet to clone")
    dest = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "--quiet", str(root), str(dest)], check=True)
    # dvc.yaml runs .venv/bin/python: lend the clone this environment.
    (dest / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONHASHSEED="0", MPLBACKEND="Agg")  # reports must embed figures anyway
    return dest, env


@pytest.fixture(scope="module")
def forced_run(clone: tuple[Path, dict[str, str]]
               ) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`dvc repro -f` in the clone, every process recording the project files it used
    (pipeline/importrecord.py)."""
    repo, env = clone
    records = repo.parent / "used-files"
    result = _run(["dvc", "repro", "-f"], repo, {**env, "PIPELINE_RECORD_IMPORTS": str(records)})
    return result, records


#: Files a stage may use without declaring them: the recorder itself (inert unless
#: PIPELINE_RECORD_IMPORTS is set).
_UNDECLARED_OK = {"pipeline/importrecord.py"}


def _notebook_imports(repo: Path) -> list[str]:
    """The pipeline modules the report notebooks import (their kernels record nothing)."""
    import ast

    names: set[str] = set()
    for notebook in sorted((repo / "notebooks").glob("*.py")):
        for node in ast.walk(ast.parse(notebook.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
                # `from pipeline import figures`: the name may be a module itself
                names.add(str(node.module))
                names.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("pipeline"))
    return sorted(names)


def test_every_stage_declares_the_code_it_runs(
        clone: tuple[Path, dict[str, str]],
        forced_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    """Each file of pipeline/ or notebooks/ a stage imported or read is among its deps.

    Otherwise editing that file would leave the stage's outputs stale: DVC reruns a stage
    only when a declared dependency changed, and only `make verify` would notice."""
    repo, env = clone
    result, records = forced_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # what the report kernels import, recorded as the report stage
    modules = _notebook_imports(repo)
    assert "pipeline.figures" in modules
    script = ("import importlib\n"
              f"for name in {modules!r}:\n"
              "    try:\n"
              "        importlib.import_module(name)\n"
              "    except ImportError:\n"
              "        pass  # a class or function imported from a module, not a module\n")
    imported = _run([sys.executable, "-c", script], repo,
                    {**env, "PIPELINE_RECORD_IMPORTS": str(records), "DVC_STAGE": "report",
                     "PYTHONPATH": str(repo)})
    assert imported.returncode == 0, imported.stderr[-2000:]
    stages = yaml.safe_load((repo / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    used: dict[str, set[str]] = {}
    for record in records.glob("*.txt"):
        used.setdefault(record.name.split(".")[0], set()).update(record.read_text().split())
    assert set(stages) - {"promote"} <= set(used), sorted(set(stages) - set(used))
    assert "pipeline/models/engine.py" in used["fit"]      # the recorder sees lazy imports
    assert "pipeline/models.yaml" in used["fit"]            # ... and files read
    undeclared = {}
    for stage, files in sorted(used.items()):
        if stage not in stages:
            continue        # `python -m pipeline.progress` itself
        deps = [str(d).rstrip("/") for d in stages[stage].get("deps", [])]
        missing = sorted(f for f in files - _UNDECLARED_OK
                         if f.split("/")[0] in ("pipeline", "notebooks")
                         and not any(f == d or f.startswith(d + "/") for d in deps))
        if missing:
            undeclared[stage] = missing
    assert not undeclared, f"dvc.yaml: stages use files they do not declare: {undeclared}"


def test_repro_force_reproduces_every_output(
        clone: tuple[Path, dict[str, str]],
        forced_run: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    repo, env = clone
    result, _ = forced_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    status = _run(["git", "status", "--porcelain"], repo, env).stdout
    assert status == "", f"outputs differ from the committed manifest:\n{status}"
    assert (repo / "reports" / "overview.html").is_file()
    assert (repo / "reports" / "models.html").is_file()
    coefs = pd.read_csv(repo / "results" / "coefficients.csv")
    primary = set(coefs.loc[coefs["model"] == "primary", "term"])
    assert {"time", "goal_within", "task_within", "bond_within", "goal_between",
            "task_between", "bond_between"} <= primary


def test_bad_input_stops_the_run_and_keeps_results(clone: tuple[Path, dict[str, str]]) -> None:
    repo, env = clone
    if not (repo / "reports" / "overview.html").is_file():
        assert _run(["dvc", "repro"], repo, env).returncode == 0
    before = {d: _snapshot(repo / d) for d in ("results", "reports")}
    bad_dir = repo / "mine"
    bad_dir.mkdir(exist_ok=True)
    alliance = pd.read_csv(repo / "data/simulated/alliance.csv")
    alliance.insert(3, "client_email", [f"client{i}@example.org" for i in range(len(alliance))])
    alliance.to_csv(bad_dir / "alliance.csv", index=False)
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["data"]["alliance"] = "mine/alliance.csv"
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        result = _run(["dvc", "repro"], repo, env)
    finally:
        params_file.write_text(original)
        shutil.rmtree(bad_dir)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "mine/alliance.csv" in out
    assert "client_email" in out
    assert "client0@example.org" not in out  # identifying content is never echoed
    after = {d: _snapshot(repo / d) for d in ("results", "reports")}
    assert after == before


def _ensure_reports(repo: Path, env: dict[str, str]) -> None:
    if not (repo / "reports" / "overview.html").is_file():
        result = _run(["dvc", "repro"], repo, env)
        assert result.returncode == 0, result.stderr[-3000:]


def test_outputs_disclose_no_identifier(clone: tuple[Path, dict[str, str]]) -> None:
    """No client or therapist id of the input data appears in any result, table or report."""
    import re

    repo, env = clone
    _ensure_reports(repo, env)
    alliance = pd.read_csv(repo / "data/simulated/alliance.csv", dtype=str)
    ids = set(alliance["client_id"]) | set(alliance["therapist_id"])
    pattern = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(map(re.escape, sorted(ids))) +
                         r")(?![A-Za-z0-9])")
    data_uri = re.compile(r"data:[a-z/+]+;base64,[A-Za-z0-9+/=]+")
    scanned = 0
    for folder in ("results", "reports"):
        for path in sorted((repo / folder).rglob("*")):
            if not path.is_file() or path.suffix == ".png":
                continue
            text = data_uri.sub("", path.read_text(encoding="utf-8", errors="replace"))
            found = pattern.findall(text)
            assert not found, f"{path.relative_to(repo)} shows identifiers {sorted(set(found))[:5]}"
            scanned += 1
    assert scanned >= 10


def test_reports_load_in_a_browser_with_every_image(clone: tuple[Path, dict[str, str]]) -> None:
    """Open each HTML report in headless Chromium as a reader would; every image renders."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (`make test` installs it as root)")
    from playwright.sync_api import sync_playwright

    repo, env = clone
    _ensure_reports(repo, env)
    reports = sorted((repo / "reports").glob("*.html"))
    assert reports
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        page = browser.new_page()
        # The reports need nothing from the network; block it so a closed network cannot hang.
        page.route("http*://**", lambda route: route.abort())
        for report in reports:
            page.goto(report.as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
            )
            assert len(images) >= 1, f"{report.name}: expected figures, found none"
            broken = [i for i, (done, width) in enumerate(images) if not done or width == 0]
            assert not broken, f"{report.name}: images {broken} did not render"
            assert "SIMULATED" in page.inner_text("body")
        browser.close()
