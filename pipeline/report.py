"""Rendering jupytext notebook sources into byte-stable HTML reports.

A report is made in three steps: the ``py:percent`` source is turned into a notebook with
fixed cell ids, papermill executes it with the given parameters, and nbconvert writes HTML
without code cells. What would otherwise change between identical runs (see
``docs/reproducibility.md``) is removed on the way: papermill's run metadata,
nbclient's per-cell timings (``record_timing=False``), the random id of the injected
parameters cell, and stderr streams (warnings print absolute paths of the machine).
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.atomic import atomic_open

if TYPE_CHECKING:  # the Jupyter stack is imported where it is used: reading the data
    # notice (open_project, data_notice) from a notebook or the index stage stays fast.
    import nbformat
    import pandas as pd
    from jupyter_client.manager import KernelManager

KERNEL = "python3"
#: Environment variable naming the folder whose ``results/`` a notebook reads. ``render``
#: sets it to the staging area (``build``) for the kernel it starts; unset (a student in
#: JupyterLab), notebooks read the project's own ``results/``.
RESULTS_ROOT_ENV = "ALLIANCE_RESULTS_ROOT"
#: Environment variable naming the folder where the reports save the figures they show
#: (PNG, SVG and CSV; :func:`pipeline.figures.show`). ``render_many`` sets it for its
#: kernels when given ``figures_dir``; unset (JupyterLab), figures are only shown.
FIGURES_DIR_ENV = "ALLIANCE_FIGURES_DIR"


#: Cell tag of a notebook cell about the outcome: the cell is left out of the report when
#: the analysis has no outcome (the notebook says once, in its own words, what is skipped).
NEEDS_OUTCOME = "needs-outcome"


#: Cell tags of cells that read one fitted model's numbers: such a cell is left out of the
#: report when that model has none (not estimable, not converged) in the
#: ``fit_statistics.csv`` the kernels read; the notebook says once, in its words, why and
#: what is left out. Which model each tag needs is :func:`tagged_models`.
NEEDS_PRIMARY = "needs-primary"   # the primary model (models and sensitivity reports)
NEEDS_POWER = "needs-power"       # the model power simulates from, ``power.model``
#: Statuses of ``fit_statistics.csv`` whose numbers the reports read.
READABLE = ("fitted", "singular")


def tagged_models(params: Mapping[str, Any]) -> dict[str, str]:
    """The model (a key of ``pipeline/models.yaml``) each model tag needs, for these
    settings: ``needs-primary`` the primary model, ``needs-power`` ``power.model``."""
    power = params.get("power") or {}
    return {NEEDS_PRIMARY: "primary", NEEDS_POWER: str(power.get("model") or "primary")}


def has_outcome(params: Mapping[str, Any]) -> bool:
    """Whether the settings name an outcome file and instrument (else: alliance-only)."""
    return bool(params["data"].get("outcome")) and bool(params["instruments"].get("outcome"))


def skipped_tags(parameters: Mapping[str, Any], cwd: str | Path,
                 results_root: str | Path | None = None) -> set[str]:
    """Cell tags left out of the reports for these settings (``params_file``, as passed to
    the notebooks; default the project's ``params.yaml`` in ``cwd``) and these results
    (``results_root``/results, default the settings file's folder, as
    :func:`open_project` reads them): ``needs-outcome`` when there is no outcome, a model
    tag (:func:`tagged_models`) when its model has no numbers. A notebook rendered without
    a settings file (not a report of this pipeline) keeps every cell."""
    from pipeline.config import load_params

    path = Path(parameters.get("params_file") or "params.yaml")
    path = path if path.is_absolute() else Path(cwd) / path
    if not path.is_file():
        return set()
    params = load_params(path)
    skip = set() if has_outcome(params) else {NEEDS_OUTCOME}
    stats = Path(results_root or path.parent) / "results" / "fit_statistics.csv"
    return skip | {tag for tag, model in tagged_models(params).items()
                   if not model_readable(stats, model)}


def model_readable(fit_statistics: str | Path, model: str = "primary") -> bool:
    """Whether ``model`` has numbers to read (``fitted`` or ``singular``); True when the
    table or the model's row is absent (the notebook then says what is missing itself)."""
    import csv

    path = Path(fit_statistics)
    if not path.is_file():
        return True
    with path.open(newline="", encoding="utf-8") as fh:
        status = next((row.get("status") for row in csv.DictReader(fh)
                       if row.get("model") == model), None)
    return status is None or status in READABLE


def _normalise_source(nb: nbformat.NotebookNode,
                      skip: set[str] | frozenset[str] = frozenset()) -> nbformat.NotebookNode:
    nb.cells = [c for c in nb.cells if not skip & set(c.get("metadata", {}).get("tags", []))]
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


#: Modules a kernel imports while it waits for its notebook (the reports import them).
#: Importing them early changes no output and binds no name in the notebook; it moves the
#: import time off the critical path, because the next report's kernel starts while the
#: current one runs. A module that does not exist is skipped.
PRELOAD = ("pandas", "matplotlib.pyplot", "pipeline.figures", "pipeline.tables",
           "pipeline.report", "pipeline.references", "pipeline.models")


@contextmanager
def _kernel_environment(results_root: str | Path | None = None,
                        figures_dir: str | Path | None = None) -> Iterator[None]:
    """Kernel settings that must hold while kernels start (restored afterwards)."""
    # The kernel must be this environment's Python, not a "python3" kernel a user has
    # registered elsewhere: JUPYTER_PATH comes first in Jupyter's search path.
    env_share = str(Path(sys.prefix) / "share" / "jupyter")
    saved = {key: os.environ.get(key) for key in ("JUPYTER_PATH", "MPLBACKEND",
                                                   RESULTS_ROOT_ENV, FIGURES_DIR_ENV)}
    old = saved["JUPYTER_PATH"]
    os.environ["JUPYTER_PATH"] = env_share if not old else f"{env_share}{os.pathsep}{old}"
    # Figures must be embedded in the notebook, whatever backend the caller's shell set.
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if results_root is None:
        os.environ.pop(RESULTS_ROOT_ENV, None)
    else:
        os.environ[RESULTS_ROOT_ENV] = str(Path(results_root).resolve())
    if figures_dir is None:
        os.environ.pop(FIGURES_DIR_ENV, None)
    else:
        os.environ[FIGURES_DIR_ENV] = str(Path(figures_dir).resolve())
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@functools.cache
def _closing_kernel_manager() -> type[KernelManager]:
    """``KernelManager`` that stops its clients' channels when it shuts its kernel down.

    papermill hands nbclient our kernel manager, and nbclient then leaves the channels of
    the client it made open (it closes them only for a manager of its own): four ZeroMQ
    sockets a report, closed by the garbage collector later with a ResourceWarning.
    """
    from jupyter_client.manager import KernelManager

    class ClosingKernelManager(KernelManager):
        def client(self, **kwargs: Any) -> Any:
            kc = super().client(**kwargs)
            self.__dict__.setdefault("_our_clients", []).append(kc)
            return kc

        def shutdown_kernel(self, now: bool = False, restart: bool = False) -> None:
            for kc in self.__dict__.pop("_our_clients", []):
                kc.stop_channels()
            super().shutdown_kernel(now=now, restart=restart)

    return ClosingKernelManager


def _start_kernel(cwd: str | Path, folder: str | Path, index: int,
                  preload: Sequence[str] = PRELOAD,
                  zygote_socket: str | None = None) -> KernelManager:
    """Start a kernel that talks over Unix sockets in ``folder`` and preloads modules.

    IPC transport instead of TCP: nothing listens on a network port, and jupyter_client's
    "Kernel is running over TCP without encryption" warning does not arise. With
    ``zygote_socket`` the kernel is forked from that zygote (:mod:`pipeline.zygote`).
    """
    from pipeline.zygote import kernel_manager

    base = _closing_kernel_manager()
    kwargs: dict[str, Any] = {"kernel_name": KERNEL, "transport": "ipc",
                              "ip": str(Path(folder) / f"kernel-{index}")}
    km = (kernel_manager(zygote_socket, base=base, **kwargs) if zygote_socket
          else base(**kwargs))
    # One expression statement ending in ";": IPython shows nothing and binds no name.
    line = (f"[__import__(m) for m in {tuple(preload)!r} "
            "if __import__('importlib.util').util.find_spec(m)];")
    km.start_kernel(cwd=str(cwd), extra_arguments=[f"--IPKernelApp.exec_lines={line}"])
    return km


def _run(nb: nbformat.NotebookNode, name: str, parameters: Mapping[str, Any],
         km: KernelManager | None, folder: str | Path,
         timeout: int) -> nbformat.NotebookNode:
    import nbformat
    import papermill as pm

    src = Path(folder) / f"{name}.ipynb"
    nbformat.write(nb, src)
    executed = pm.execute_notebook(
        str(src),
        str(Path(folder) / f"{name}.executed.ipynb"),
        parameters=dict(parameters),
        kernel_name=KERNEL,
        language="python",
        # No ``cwd`` here: the kernel was started in ``cwd`` already, and papermill's
        # ``cwd`` is a process-wide ``os.chdir`` that two reports rendering at once (threads)
        # interleave, leaving this process in a temporary folder (seen on CI).
        cwd=None,
        progress_bar=False,
        log_output=False,
        # Written once, at the end: saving the notebook at every cell (papermill's default,
        # for watching a long run) cost this process ~0.5 s of JSON a report.
        request_save_on_cell_execute=False,
        record_timing=False,
        execution_timeout=timeout,
        km=km,
    )
    return clean_executed(executed)


def execute(source: str | Path, parameters: Mapping[str, Any], cwd: str | Path,
            timeout: int = 3600) -> nbformat.NotebookNode:
    """Execute a jupytext source with papermill and return the cleaned notebook."""
    import jupytext

    nb = _normalise_source(jupytext.read(str(source)), skipped_tags(parameters, cwd))
    with _kernel_environment(), tempfile.TemporaryDirectory(prefix="render-") as tmp:
        km = _start_kernel(cwd, tmp, 0)
        try:
            return _run(nb, Path(source).stem, parameters, km, tmp, timeout)
        finally:
            km.shutdown_kernel(now=True)


@functools.cache
def _exporter() -> Any:
    """One HTML exporter per process (loading its templates is most of a small report's
    conversion time); it keeps no state between notebooks."""
    from nbconvert import HTMLExporter

    return HTMLExporter(
        # nbconvert's `lab` template with the figures' alternative text
        # (pipeline/templates/alliance)
        extra_template_basedirs=[str(Path(__file__).with_name("templates"))],
        template_name="alliance",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )


_EXPORT_LOCK = threading.Lock()


def to_html(nb: nbformat.NotebookNode, title: str) -> str:
    """Convert an executed notebook to HTML showing outputs and markdown, not code."""
    with _EXPORT_LOCK:  # one exporter, whose preprocessors are not made for threads
        body, _ = _exporter().from_notebook_node(nb, resources={"metadata": {"name": title}})
    return str(body)


def render(source: str | Path, html_out: str | Path, parameters: Mapping[str, Any],
           cwd: str | Path, results_root: str | Path | None = None,
           figures_dir: str | Path | None = None) -> Path:
    """Execute ``source`` and write its HTML report to ``html_out`` atomically.

    ``results_root``: the folder whose ``results/`` the notebook reads (the pipeline passes
    its staging area ``build``; see :mod:`pipeline.promote`). ``figures_dir``: where the
    report saves the figures it shows (see :func:`render_many`).
    """
    return render_many([(source, html_out)], parameters, cwd, results_root=results_root,
                       figures_dir=figures_dir)[0]


def render_many(jobs: Sequence[tuple[str | Path, str | Path]], parameters: Mapping[str, Any],
                cwd: str | Path, timeout: int = 3600,
                progress: Callable[[str], None] | None = None, ahead: int = 3,
                results_root: str | Path | None = None,
                meanwhile: Callable[[], None] | None = None,
                concurrent: int = 2, fork: bool = True,
                figures_dir: str | Path | None = None) -> list[Path]:
    """Render several notebooks in one process, each in a fresh kernel started ahead.

    Every report still gets its own kernel (no state passes between reports), but the
    next kernels start, and import :data:`PRELOAD`, while the current reports run,
    ``concurrent`` reports run at once, and the papermill/nbconvert machinery is imported
    once instead of once per report. The HTML is byte-identical to rendering each report
    alone (``tests/test_report.py``).

    Parameters
    ----------
    jobs
        ``(jupytext source, HTML file to write)`` pairs, rendered in this order.
    parameters
        Papermill parameters passed to every notebook.
    cwd
        Working folder of the kernels (the project root).
    timeout
        Seconds a cell may run.
    progress
        Called with one line per report written (e.g. a logger).
    ahead
        Kernels started ahead of the report that runs (more overlap, more memory: about
        150 MB per kernel).
    results_root
        The folder whose ``results/`` the notebooks read, passed to the kernels as
        ``ALLIANCE_RESULTS_ROOT`` (default: the project folder).
    meanwhile
        Work for this process while the first kernels start; it must not write what the
        notebooks read.
    concurrent
        Reports executed at the same time (each in its own kernel; threads here only
        wait for the kernels): a kernel runs one report on one core, so two keep a
        2-core machine busy. The bytes do not depend on it (tested).
    fork
        Fork the kernels of two or more reports from one process that imported
        ipykernel and :data:`PRELOAD` once (:mod:`pipeline.zygote`; Linux), instead of
        starting each as a new interpreter (~2 s of CPU each). Each report still has a
        process of its own; the bytes do not depend on it (tested).
    figures_dir
        Where the reports save the figures they show, as PNG, SVG and CSV (passed to the
        kernels as ``ALLIANCE_FIGURES_DIR``; :func:`pipeline.figures.show`): the ``report``
        stage's published figures. ``None``: figures are only shown in the reports.

    Returns
    -------
    list of Path
        The HTML files written.
    """
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import nullcontext

    import jupytext

    from pipeline import zygote

    skip = skipped_tags(parameters, cwd, results_root)
    written: dict[int, Path] = {}
    lock = threading.Lock()
    failed = threading.Event()
    if figures_dir is not None:
        Path(figures_dir).mkdir(parents=True, exist_ok=True)
    with _kernel_environment(results_root, figures_dir), \
            tempfile.TemporaryDirectory(prefix="render-") as tmp, \
            (zygote.zygote(tmp, cwd, PRELOAD) if fork and len(jobs) > 1 and zygote.available()
             else nullcontext(None)) as zygote_socket:
        kernels: dict[int, KernelManager] = {}  # started, not yet used
        started: set[int] = set()
        handed = [0]  # reports handed to a worker so far

        def start(j: int) -> None:
            if j < len(jobs) and j not in started:
                started.add(j)
                kernels[j] = _start_kernel(cwd, tmp, j, zygote_socket=zygote_socket)

        def kernel_for(i: int) -> KernelManager:
            # Report i's kernel, and those of the next ``ahead`` reports started now, so
            # their start-up and imports overlap with the reports that run before them.
            with lock:
                for j in range(i, i + ahead + 1):
                    start(j)
                return kernels.pop(i)

        def next_report() -> int | None:
            with lock:
                if failed.is_set() or handed[0] >= len(jobs):
                    return None
                handed[0] += 1
                return handed[0] - 1

        def worker() -> None:
            while (i := next_report()) is not None:
                source, html_out = jobs[i]
                begun = time.perf_counter()
                km = kernel_for(i)
                try:
                    nb = _normalise_source(jupytext.read(str(source)), skip)
                    executed = _run(nb, Path(source).stem, parameters, km, tmp, timeout)
                except BaseException:
                    failed.set()
                    raise
                finally:
                    km.shutdown_kernel(now=True)
                html = to_html(executed, title=Path(html_out).stem)
                with atomic_open(html_out) as fh:
                    fh.write(html)
                written[i] = Path(html_out)
                if progress is not None:
                    progress(f"wrote {html_out} in {time.perf_counter() - begun:.0f} s")

        try:
            for j in range(ahead + 1):
                start(j)
            if meanwhile is not None:
                meanwhile()
            # ``concurrent`` reports run at once, each in its own kernel process; this
            # process only waits for them and converts the results to HTML.
            with ThreadPoolExecutor(max_workers=max(1, concurrent)) as pool:
                for future in [pool.submit(worker) for _ in range(max(1, concurrent))]:
                    future.result()
        finally:
            for km in kernels.values():
                km.shutdown_kernel(now=True)
    return [written[i] for i in sorted(written)]


SIMULATED_NOTICE = (
    "> **These data are SIMULATED.** They were generated by `pipeline/simulation/` from a "
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
    # File names only: a folder path can name a person or a machine. Names are escaped:
    # a file called "x`<script>...`.csv" must not put markup into the report.
    files = ", ".join(f"<code>{escape(Path(params['data'][k]).name)}</code>"
                      for k in ("alliance", "outcome", "clients") if params["data"].get(k))
    return f"Data: {files}."


# Characters with a meaning in HTML or Markdown, written as numeric entities by :func:`escape`.
_INERT = {c: f"&#{ord(c)};" for c in "&<>\"'`*_[]{}()#+-.!|~\\$"}


def escape(text: object) -> str:
    """Text from the user (file names, column names, levels, keys) made inert for a report.

    HTML special characters become entities (``<script>`` shows as text) and so do the
    characters Markdown would interpret (a backtick cannot open a code span, ``*`` cannot
    start emphasis), so the text is shown exactly as written in a Markdown cell or in HTML.

    Parameters
    ----------
    text
        Anything; converted with ``str``.

    Returns
    -------
    str
    """
    return "".join(_INERT.get(c, c) for c in str(text))


#: The "model <name>: " that a pre-fit check's message starts with (for the log); the
#: reports name the model themselves, by its title (a specification curve's key such as
#: ``person_mean|lag0|none|reml|min1`` is no name for a reader).
_MODEL_PREFIX = re.compile(r"^model [^\s:]+: ")


def reason_words(reason: object) -> str:
    """A model's reason (``fit_statistics.csv`` and the like) as a reader reads it.

    The checks write their reasons once, with the project's term labels
    (:mod:`pipeline.labels`), so the CSVs and the reports agree; here the leading
    ``model <name>: `` is dropped, and so is the advice to the analyst
    (``pipeline.labels.without_advice``: "For the analyst: remove one of the collinear
    terms ..." is for the run log, where the analyst acts; a report says what is wrong
    and what the pipeline did, as a paper would). Not escaped: pass it through
    :func:`escape` in Markdown (``styled`` tables escape their cells). A missing reason
    is ``""``.
    """
    from pipeline.labels import without_advice

    if not isinstance(reason, str):
        return ""
    return _MODEL_PREFIX.sub("", without_advice(reason.strip()))


def time_zero_words(trajectories: pd.DataFrame, variable: str = "wellbeing") -> str:
    """Where ``time = session - 1`` is 0, in words: ``"at the first session (time 0)"``,
    or, when no ``variable`` was rated at session 1 (an export that starts at the third
    session), that session 1 lies before the data (the intercept is an extrapolation).

    ``trajectories`` is ``results/describe/trajectories.csv`` (a row per session and
    variable present, suppressed or not); only session numbers are read, no count.
    """
    rows = trajectories[trajectories["variable"] == variable] if len(trajectories) else None
    if rows is None or not len(rows):
        return "at the first session (time 0)"
    first = float(rows["session"].astype(float).min())
    if not first > 1:
        return "at the first session (time 0)"
    return (f"at session 1 (time 0, before the data: no {variable} was rated before session "
            f"{first:g}, so this is an extrapolation)")


def not_fitted_words(status: object, reason: object, warning: object = None) -> str:
    """``"not estimable: <reason>"`` for a model without numbers (not escaped).

    ``status`` as ``fit_statistics.csv`` writes it: ``not converged`` and ``skipped`` keep
    their word, every other status without numbers reads ``not estimable``; the reason
    falls back on ``warning`` when empty.
    """
    label = status if status in ("not converged", "skipped") else "not estimable"
    words = reason_words(reason) or reason_words(warning)
    return f"{label}: {words}" if words else str(label)


def together(names: Sequence[str], reasons: Sequence[str]) -> str:
    """Reasons said once for the names that share them: ``"Goal, task and bond: <reason>"``
    when all three failed alike, ``"Goal and task: <r1>; bond: <r2>"`` otherwise (groups in
    the order of their first name). ``names`` are labels (the first keeps its capital, the
    others are lower-cased); ``reasons`` are used as given (escape them for Markdown)."""
    groups: dict[str, list[str]] = {}
    for i, (name, reason) in enumerate(zip(names, reasons, strict=True)):
        groups.setdefault(reason, []).append(name if i == 0 else name[:1].lower() + name[1:])
    parts = []
    for reason, members in groups.items():
        who = (members[0] if len(members) == 1
               else f"{', '.join(members[:-1])} and {members[-1]}")
        parts.append(f"{who}: {reason}")
    return "; ".join(parts)


def alliance_metric(inst: Any) -> str:
    """How the alliance scores read, from the instrument key (never hard-coded).

    E.g. ``"item mean, 1 (lowest) to 7 (highest) on the Working Alliance Inventory - Short
    form (client)"``.
    """
    how = "item mean" if inst.score == "mean" else "item sum"
    return (f"{how}, {inst.item_min:g} (lowest) to {inst.item_max:g} (highest) on the "
            f"{escape(inst.name)}")


def outcome_description(inst: Any | None, higher_is_better: bool = True) -> str:
    """One sentence on the outcome measure: its name, metric and direction, or its absence."""
    if inst is None:
        return ("No outcome file was given: this is an alliance-only analysis, so nothing "
                "about change in an outcome is reported.")
    from pipeline.score import outcome_range

    lo, hi = outcome_range(inst)
    turned = inst.direction == "higher_worse" and higher_is_better
    if inst.direction == "higher_better":
        direction = "higher = better"
    elif turned:
        direction = (f"higher = worse on the questionnaire, turned round here ({hi + lo:g} "
                     "minus the score) so that higher = better in every table")
    else:
        direction = "higher = worse"
    return (f"The outcome is the **{escape(inst.name)}** (<code>{escape(inst.key)}</code>), "
            f"scored {lo:g}\u2013{hi:g}, {direction}.")


def outcome_turned(inst: Any | None, higher_is_better: bool = True) -> bool:
    """Whether the scorer turned the outcome round (a higher = worse questionnaire, with
    ``instruments.outcome_higher_is_better``), as :func:`pipeline.score.score_outcome`."""
    return inst is not None and inst.direction == "higher_worse" and higher_is_better


def outcome_noun(inst: Any | None, higher_is_better: bool = True,
                 escaped: bool = True) -> str:
    """What the reports call the outcome in running text, from the instrument's
    ``construct`` (never the fixed word "wellbeing"): ``"wellbeing"`` (SWEMWBS),
    ``"depression"`` (PHQ-9 kept higher = worse), ``"reversed depression"`` (turned
    round), ``"the outcome"`` without a construct or an outcome. Escaped for Markdown
    unless ``escaped=False`` (figure labels)."""
    if inst is None or not inst.construct:
        return "the outcome"
    noun = escape(inst.construct) if escaped else str(inst.construct)
    return f"reversed {noun}" if outcome_turned(inst, higher_is_better) else noun


def outcome_label(params: Mapping[str, Any], escaped: bool = True) -> str:
    """:func:`outcome_noun` of the outcome the settings name (``instruments.outcome``,
    ``instruments.outcome_higher_is_better``); ``"the outcome"`` without one."""
    if not has_outcome(params):
        return "the outcome"
    from pipeline.instruments import load_instrument

    cfg = params["instruments"]
    inst = load_instrument(cfg["outcome"], cfg.get("paths") or [])
    return outcome_noun(inst, bool(cfg.get("outcome_higher_is_better", True)), escaped)


def outcome_higher_worse(params: Mapping[str, Any]) -> bool:
    """Whether the outcome, as analysed, runs higher = worse: a symptom questionnaire
    (``direction: higher_worse``) kept in its own direction
    (``instruments.outcome_higher_is_better: false``). Its expected link with the alliance
    is then negative."""
    if not has_outcome(params):
        return False
    from pipeline.instruments import load_instrument

    cfg = params["instruments"]
    inst = load_instrument(cfg["outcome"], cfg.get("paths") or [])
    return inst.direction == "higher_worse" and not cfg.get("outcome_higher_is_better", True)


def outcome_reading(inst: Any | None, higher_is_better: bool = True) -> str:
    """One sentence on the sign of a coefficient of the outcome: what a positive (or
    negative) alliance effect means on this questionnaire's scale. ``""`` without an
    outcome."""
    if inst is None:
        return ""
    what = escape(inst.construct) if inst.construct else "the outcome"
    name = escape(inst.name)
    if inst.direction == "higher_better":
        return (f"Higher scores on the {name} mean more {what} (better), so a **positive** "
                "coefficient means that a stronger alliance goes with a better outcome.")
    if outcome_turned(inst, higher_is_better):
        return (f"Higher scores on the {name} mean more {what} (worse); the scores were "
                "turned round (maximum plus minimum minus the score), so here higher = "
                "better and a **positive** coefficient means that a stronger alliance goes "
                f"with less {what}.")
    return (f"Higher scores on the {name} mean more {what} (worse), and they are kept that "
            "way, so a **negative** coefficient means that a stronger alliance goes with "
            f"less {what} (a better outcome), a positive one with more.")


def outcome_key_text(inst: Any) -> str:
    """How the outcome questionnaire was scored, from its key: items and answer range,
    sum or mean, reversed items, the missing-item rule (prorating), any multiplier.

    E.g. CORE-10: ``"10 items answered 0–4, summed; items 2, 3 are reversed (scored as 4
    minus the answer). Missing items: with up to 1 blank item the total is prorated (10 ×
    the sum of the answered items / their number); with more it is missing."``
    """
    how = "summed" if inst.score == "sum" else "averaged"
    rev = list(inst.reversed)
    reversed_text = (
        f"item{'s' if len(rev) > 1 else ''} {', '.join(map(str, rev))} "
        f"{'are' if len(rev) > 1 else 'is'} reversed (scored as "
        f"{inst.item_min + inst.item_max:g} minus the answer)" if rev else
        "no item is reversed")
    allowed = int(inst.missing.get("max_missing", 0))
    if allowed == 0:
        missing = "a blank item leaves the score missing."
    else:
        what = "total" if inst.score == "sum" else "mean"
        rule = (f"{inst.n_items} \u00d7 the sum of the answered items / their number"
                if inst.score == "sum" else "the mean of the answered items")
        missing = (f"with up to {allowed} blank item{'s' if allowed > 1 else ''} the {what} "
                   f"is prorated ({rule}); with more it is missing.")
    text = (f"{inst.n_items} items answered {inst.item_min:g}\u2013{inst.item_max:g}, {how}; "
            f"{reversed_text}. Missing items: {missing}")
    if inst.multiplier != 1:
        text += f" The raw score is multiplied by {inst.multiplier:g}."
    return text


def top_share(dist: pd.DataFrame, lo: float, hi: float, top_fraction: float,
              variables: tuple[str, ...] = ("goal", "task", "bond")) -> float:
    """Share of the (unsuppressed) binned session scores in the top part of the scale.

    Parameters
    ----------
    dist
        ``results/describe/distributions.csv``.
    lo, hi
        The scale's range.
    top_fraction
        The top part, as a fraction of the range (e.g. 0.25: the top quarter).
    variables
        Which variables to pool.

    Returns
    -------
    float
        Sessions in bins whose lower edge is at or above ``hi - top_fraction * (hi - lo)``,
        divided by all shown sessions; NaN when nothing is shown.
    """
    shown = dist[dist["variable"].isin(variables) & ~dist["suppressed"].astype(bool)]
    total = float(shown["sessions"].sum())
    if total == 0:
        return float("nan")
    cut = hi - top_fraction * (hi - lo)
    return float(shown.loc[shown["lower"] >= cut - 1e-9, "sessions"].sum()) / total
