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
            timeout: int = 3600) -> nbformat.NotebookNode:
    """Execute a jupytext source with papermill and return the cleaned notebook."""
    nb = _normalise_source(jupytext.read(str(source)))
    # The kernel must be this environment's Python, not a "python3" kernel a user has
    # registered elsewhere: JUPYTER_PATH comes first in Jupyter's search path.
    env_share = str(Path(sys.prefix) / "share" / "jupyter")
    saved = {key: os.environ.get(key) for key in ("JUPYTER_PATH", "MPLBACKEND")}
    old = saved["JUPYTER_PATH"]
    os.environ["JUPYTER_PATH"] = env_share if not old else f"{env_share}{os.pathsep}{old}"
    # Figures must be embedded in the notebook, whatever backend the caller's shell set.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
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
           cwd: str | Path) -> Path:
    """Execute ``source`` and write its HTML report to ``html_out`` atomically."""
    nb = execute(source, parameters, cwd)
    html = to_html(nb, title=Path(html_out).stem)
    with atomic_open(html_out) as fh:
        fh.write(html)
    return Path(html_out)
