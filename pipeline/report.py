"""Rendering jupytext notebook sources into byte-stable HTML reports.

A report is made in three steps: the ``py:percent`` source is turned into a notebook with
fixed cell ids, papermill executes it with the given parameters, and nbconvert writes HTML
without code cells. What would otherwise change between identical runs (see
``shared/reference/reproducibility.md``) is removed on the way: papermill's run metadata,
nbclient's per-cell timings (``record_timing=False``), the random id of the injected
parameters cell, and stderr streams (warnings print absolute paths of the machine).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill as pm
from nbconvert import HTMLExporter

from pipeline.outputs import atomic_open

KERNEL = "python3"
#: Environment variable naming the folder whose ``results/`` a notebook reads. ``render``
#: sets it to the staging area (``build``) for the kernel it starts; unset (a student in
#: JupyterLab), notebooks read the project's own ``results/``.
RESULTS_ROOT_ENV = "ALLIANCE_RESULTS_ROOT"


def _normalise_source(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata.pop("jupytext", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"
    return nb


def clean_executed(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop everything from an executed notebook that differs between identical runs."""
    nb.metadata.pop("papermill", None)
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags:
            cell["id"] = "injected-parameters"
        elif not str(cell.get("id", "")).startswith("cell-"):
            cell["id"] = f"extra-{i:03d}"
        if cell.cell_type == "code":
            cell.outputs = [
                out for out in cell.outputs
                if not (out.get("output_type") == "stream" and out.get("name") == "stderr")
            ]
    return nb


def execute(source: str | Path, parameters: Mapping[str, Any], cwd: str | Path,
            timeout: int = 3600, results_root: str | Path | None = None
            ) -> nbformat.NotebookNode:
    """Execute a jupytext source with papermill and return the cleaned notebook.

    ``results_root`` (default: the project folder) is the folder whose ``results/`` the
    notebook reads, passed to the kernel as ``ALLIANCE_RESULTS_ROOT``.
    """
    nb = _normalise_source(jupytext.read(str(source)))
    # The kernel must be this environment's Python, not a "python3" kernel a user has
    # registered elsewhere: JUPYTER_PATH comes first in Jupyter's search path.
    env_share = str(Path(sys.prefix) / "share" / "jupyter")
    saved = {key: os.environ.get(key) for key in ("JUPYTER_PATH", "MPLBACKEND",
                                                   RESULTS_ROOT_ENV)}
    old = saved["JUPYTER_PATH"]
    os.environ["JUPYTER_PATH"] = env_share if not old else f"{env_share}{os.pathsep}{old}"
    # Figures must be embedded in the notebook, whatever backend the caller's shell set.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if results_root is None:
        os.environ.pop(RESULTS_ROOT_ENV, None)
    else:
        os.environ[RESULTS_ROOT_ENV] = str(Path(results_root).resolve())
    try:
        with tempfile.TemporaryDirectory(prefix="render-") as tmp:
            src = Path(tmp) / Path(source).with_suffix(".ipynb").name
            nbformat.write(nb, src)
            executed = pm.execute_notebook(
                str(src),
                str(Path(tmp) / "executed.ipynb"),
                parameters=dict(parameters),
                kernel_name=KERNEL,
                language="python",
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
                record_timing=False,
                execution_timeout=timeout,
            )
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return clean_executed(executed)


def to_html(nb: nbformat.NotebookNode, title: str) -> str:
    """Convert an executed notebook to HTML showing outputs and markdown, not code."""
    exporter = HTMLExporter(
        template_name="lab",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def render(source: str | Path, html_out: str | Path, parameters: Mapping[str, Any],
           cwd: str | Path, results_root: str | Path | None = None) -> Path:
    """Execute ``source`` and write its HTML report to ``html_out`` atomically.

    ``results_root``: the folder whose ``results/`` the notebook reads (the pipeline passes
    its staging area ``build``; see :mod:`pipeline.promote`).
    """
    nb = execute(source, parameters, cwd, results_root=results_root)
    html = to_html(nb, title=Path(html_out).stem)
    with atomic_open(html_out) as fh:
        fh.write(html)
    return Path(html_out)


SIMULATED_NOTICE = (
    "> **These data are SIMULATED.** They were generated by `pipeline/simulate.py` from a "
    "documented model with known true values (`data/simulated/truth.yaml`). They are not "
    "real clients, and no finding here is about real therapy."
)


def open_project(params_file: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Project folder and settings for a notebook.

    Parameters
    ----------
    params_file
        The settings file papermill passes in; ``None`` (a student running the notebook
        in JupyterLab) finds the project's own ``params.yaml`` above the current folder.

    Returns
    -------
    tuple
        The folder holding the ``results/`` to report (the project folder, or the
        staging area named by ``ALLIANCE_RESULTS_ROOT`` when the pipeline renders) and
        the settings.
    """
    from pipeline.config import find_project_root, load_params

    staged = os.environ.get(RESULTS_ROOT_ENV)
    if params_file is None:
        root = find_project_root()
        params = load_params(root / "params.yaml")
    else:
        path = Path(params_file).resolve()
        root, params = path.parent, load_params(path)
    return (Path(staged) if staged else root), params


def data_notice(params: Mapping[str, Any]) -> str:
    """First-screen Markdown saying what data a report is about (simulated or whose)."""
    if params["data"].get("simulated", False):
        return SIMULATED_NOTICE
    # File names only: a folder path can name a person or a machine.
    files = ", ".join(f"`{Path(params['data'][k]).name}`"
                      for k in ("alliance", "outcome", "clients") if params["data"].get(k))
    return f"Data: {files}."
