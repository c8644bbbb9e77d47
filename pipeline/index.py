"""The front page ``reports/index.html``: every report, figure and table in one place.

The page lists each report (its title, read from the notebook source), each figure (PNG,
SVG and the CSV of the numbers drawn) and each APA table (HTML, LaTeX, Markdown) with one
line on what it shows (``pipeline/index.yaml``), the data notice, the input files (names and
content hashes, never folders) and settings they came from, and a date-free **code stamp**
(:func:`pipeline.verify.code_stamp`). A commit hash is not used: the page is itself a
committed output, and a commit cannot contain its own hash (``docs/reproducibility.md``).

Everything that comes from the user (file names, settings) is HTML-escaped.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline import yamlfile
from pipeline.errors import SettingsError
from pipeline.report import data_notice, has_outcome, outcome_label
from pipeline.verify import code_stamp

DESCRIPTIONS = Path(__file__).with_name("index.yaml")
_TITLE = re.compile(r"^# # (?P<title>.+)$", re.MULTILINE)

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; line-height: 1.45; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; }
.notice { border-left: 4px solid #DD8452; background: #fdf3ec; padding: 0.6rem 1rem; }
table { border-collapse: collapse; width: 100%; } td, th { text-align: left;
  vertical-align: top; padding: 0.3rem 0.6rem; border-bottom: 1px solid #ddd; }
code { background: #f4f4f4; padding: 0 0.2rem; } .stamp { font-family: monospace; }
"""


@functools.cache
def load_descriptions(path: str | Path = DESCRIPTIONS) -> dict[str, Any]:
    """The one-line descriptions of figures and tables and the settings to show (read
    once per process; do not modify the result)."""
    with Path(path).open(encoding="utf-8") as fh:
        data = yamlfile.safe_load(fh) or {}
    for key in ("figures", "tables", "settings"):
        if key not in data:
            raise SettingsError(f"{Path(path).name}: the key '{key}' is missing; it lists "
                                "the front page's descriptions (see the file's comments)")
    return data


def figure_line(name: str, with_outcome: bool = True,
                descriptions: Mapping[str, Any] | None = None,
                outcome: str = "wellbeing") -> str:
    """The one line on what figure ``name`` shows, as drawn: a figure with two lines in
    ``pipeline/index.yaml`` (``with_outcome``, ``alliance_only``) has the one of this run;
    ``figure <name>`` when the file has none. ``{outcome}`` in a line becomes ``outcome``
    (what the outcome measures: ``report.outcome_noun``)."""
    desc = descriptions if descriptions is not None else load_descriptions()
    entry = desc["figures"].get(name, f"figure {name}")
    if isinstance(entry, Mapping):
        entry = entry["with_outcome" if with_outcome else "alliance_only"]
    return " ".join(str(entry).split()).replace("{outcome}", outcome)


def report_sources(folder: str | Path, order: list[str]) -> list[Path]:
    """Notebook sources in ``folder`` in reading order (``order`` first, then by name)."""
    found = {p.stem: p for p in Path(folder).glob("*.py")}
    first = [found[name] for name in order if name in found]
    return first + sorted(p for name, p in found.items() if name not in order)


def notebook_title(source: str | Path) -> str:
    """The first Markdown heading (``# # Title``) of a jupytext notebook source."""
    match = _TITLE.search(Path(source).read_text(encoding="utf-8"))
    return match["title"].strip() if match else Path(source).stem


def _md(text: str) -> str:
    """Escape ``text`` and render the two Markdown marks the notices use (bold, code)."""
    out = html.escape(text).removeprefix("&gt; ")
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _setting(params: Mapping[str, Any], dotted: str) -> Any:
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in _flat(f"{prefix}.{k}", v)]
    return [(prefix, value)]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows(cells: list[list[str]]) -> str:
    return "\n".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in cells)


def build_index(root: str | Path, params: Mapping[str, Any], reports: Sequence[str | Path],
                figures_dir: str | Path, tables_dir: str | Path,
                descriptions: Mapping[str, Any] | None = None,
                more_figures: Sequence[str | Path] = ()) -> str:
    """HTML of the front page.

    Parameters
    ----------
    root
        Project folder (input files and the code stamp are read relative to it).
    params
        The settings (``params.yaml``).
    reports
        Notebook sources of the reports, in reading order; each links to ``<stem>.html``.
    figures_dir, tables_dir
        Folders written by the ``report`` stage (linked relative to ``reports/``).
    descriptions
        As :func:`load_descriptions` returns (default: ``pipeline/index.yaml``).
    more_figures
        Other folders of figures beside ``figures_dir`` in ``reports/`` (the ``ruptures``
        stage's ``reports/ruptures``), listed after it and linked by their folder name.

    Returns
    -------
    str
        A complete, self-contained HTML page (no scripts, no network).
    """
    root = Path(root)
    desc = descriptions if descriptions is not None else load_descriptions()
    figures_dir, tables_dir = Path(figures_dir), Path(tables_dir)
    esc = html.escape
    with_outcome = has_outcome(params)   # the figures of an alliance-only run differ
    noun = outcome_label(params, escaped=False)   # wellbeing, depression, the outcome

    report_rows = [[f'<a href="{esc(Path(s).stem)}.html">{esc(Path(s).stem)}.html</a>',
                    esc(notebook_title(s))] for s in reports]
    figure_rows = []
    for folder in (figures_dir, *(Path(f) for f in more_figures)):
        # figures_dir is linked as figures/ (its name in reports/), the others by their name.
        href = "figures" if folder == figures_dir else esc(folder.name)
        for name in sorted({p.stem for p in folder.glob("*.png")}):
            links = " · ".join(f'<a href="{href}/{esc(name)}.{ext}">{ext.upper()}</a>'
                               for ext in ("png", "svg", "csv")
                               if (folder / f"{name}.{ext}").is_file())
            thumb = (f'<a href="{href}/{esc(name)}.png"><img src="{href}/{esc(name)}.png" '
                     f'alt="{esc(name)}" width="180"></a>')
            figure_rows.append([thumb, f"<code>{esc(name)}</code><br>{links}",
                                esc(figure_line(name, with_outcome, desc, noun))])
    table_rows = []
    for name in sorted({p.stem for p in tables_dir.glob("*.html")}):
        links = " · ".join(f'<a href="tables/{esc(name)}.{ext}">{label}</a>'
                           for ext, label in (("html", "HTML"), ("tex", "LaTeX"),
                                              ("md", "Markdown"))
                           if (tables_dir / f"{name}.{ext}").is_file())
        table_rows.append([f"<code>{esc(name)}</code>", links,
                           esc(desc["tables"].get(name, f"table {name}"))])

    data_rows = []
    for key in ("alliance", "outcome", "clients"):
        file = params.get("data", {}).get(key)
        if file and (root / file).is_file():
            data_rows.append([esc(key), f"<code>{esc(Path(file).name)}</code>",
                              f'<span class="stamp">{_sha256(root / file)[:12]}</span>'])
    setting_rows = []
    for dotted in desc["settings"]:
        for key, value in _flat(dotted, _setting(params, dotted)):
            if key.startswith("data.") and isinstance(value, str) and value:
                value = Path(value).name  # file names only: a folder can name a person
            shown = value if isinstance(value, str) else json.dumps(value)
            setting_rows.append([f"<code>{esc(key)}</code>", esc(shown)])

    stamp = code_stamp(root)
    title = esc(f"Working alliance and {noun}: reports, figures and tables" if with_outcome
                else "Working alliance: reports, figures and tables")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<p class="notice">{_md(data_notice(params))}</p>
<p>Start with the overview, then the models. Each report ends with the works it cites. The
analysis plan the reports follow is in <a href="../docs/analysis-plan.md">docs/analysis-plan.md</a>;
how the outputs are kept byte-stable, and how to check them, is in
<a href="../docs/reproducibility.md">docs/reproducibility.md</a>.</p>

<h2>Reports</h2>
<table>
<tr><th>report</th><th>what it shows</th></tr>
{_rows(report_rows)}
</table>

<h2>Figures</h2>
<p>Each figure as PNG and SVG, with the numbers drawn as CSV (redraw it, or
<code>dvc plots show</code>).</p>
<table>
<tr><th></th><th>figure</th><th>what it shows</th></tr>
{_rows(figure_rows)}
</table>

<h2>Tables</h2>
<p>APA tables, each as HTML, LaTeX and Markdown.</p>
<table>
<tr><th>table</th><th>files</th><th>what it shows</th></tr>
{_rows(table_rows)}
</table>

<h2>Where it came from</h2>
<p>Input files (name and the first 12 hex digits of their SHA-256):</p>
<table>
<tr><th>input</th><th>file</th><th>content hash</th></tr>
{_rows(data_rows)}
</table>
<p>Settings (<code>params.yaml</code>):</p>
<table>
<tr><th>setting</th><th>value</th></tr>
{_rows(setting_rows)}
</table>
<p>Code stamp: <span class="stamp">{stamp}</span>, a SHA-256 of the package, its rules and the
notebook sources. It changes only when that code changes (a commit
hash would change this page with every commit); <code>make verify</code> prints the same
stamp, reruns the whole pipeline in a scratch copy and says for every output whether it came
out byte for byte the same.</p>
</body>
</html>
"""
