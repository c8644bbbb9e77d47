"""The project's bibliography and the reference list at the end of each report.

Every work a report or a document cites is an entry of ``docs/references.yaml``. A report
names the keys it cites and ends with :func:`reference_list`, which renders them in APA 7
style (authors, year, title, journal, volume, issue, pages, DOI), sorted by first author
and year. :func:`find_citations` finds author-year citations in any text ("Curran & Bauer,
2011", "Falkenström et al. (2013)", "Baldwin, Wampold and Imel (2007)"), so a test can
check that a report cites nothing that its list (and the bibliography) lacks.

References
----------
American Psychological Association (2020). *Publication manual of the American
Psychological Association* (7th ed.), chapters 8 (in-text citations) and 9 (reference
list). The R equivalent is a CSL style applied by ``rmarkdown``/``citeproc``; this module
covers only the two entry types the project needs (journal article, book).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline import yamlfile
from pipeline.errors import SettingsError

BIBLIOGRAPHY = Path(__file__).resolve().parents[1] / "docs" / "references.yaml"
REQUIRED = ("authors", "year", "title")


@dataclass(frozen=True)
class Bibliography:
    """Works by key, and the key of the work behind each questionnaire's scoring key."""

    works: dict[str, dict[str, Any]]
    instruments: dict[str, str] = field(default_factory=dict)
    source: str = "docs/references.yaml"


def load_bibliography(path: str | Path | None = None) -> Bibliography:
    """Read and check the bibliography file.

    Parameters
    ----------
    path
        A YAML file with ``works`` (key -> entry) and ``instruments`` (questionnaire key ->
        work key); default ``docs/references.yaml`` of this project.

    Raises
    ------
    SettingsError
        An entry lacks authors, year or title, an article lacks its journal, a book its
        publisher, or an instrument points at a key that is not a work.
    """
    file = Path(path) if path else BIBLIOGRAPHY
    name = file.name if path else "docs/references.yaml"
    with file.open(encoding="utf-8") as fh:
        data = yamlfile.safe_load(fh) or {}
    works = data.get("works") or {}
    problems = []
    for key, work in works.items():
        missing = [f for f in REQUIRED if not work.get(f)]
        kind = work.get("type", "article")
        if kind == "article" and not work.get("journal"):
            missing.append("journal")
        if kind in ("book", "software") and not work.get("publisher"):
            missing.append("publisher")
        if missing:
            problems.append(f"{key}: missing {', '.join(missing)}")
    instruments = {str(k): str(v) for k, v in (data.get("instruments") or {}).items()}
    problems += [f"instruments.{k}: '{v}' is not a work" for k, v in instruments.items()
                 if v not in works]
    if problems:
        raise SettingsError(
            f"{name}: every work needs authors, year, title and a journal (article) or a "
            "publisher (book); fix these entries: " + "; ".join(problems))
    return Bibliography(works=dict(works), instruments=instruments, source=name)


def _surname(author: str) -> str:
    return author.split(",")[0].strip()


def _join_authors(authors: list[str]) -> str:
    """APA 7 reference-list authors: up to 20, the last after an ampersand."""
    if len(authors) == 1:
        return authors[0]
    if len(authors) > 20:
        return ", ".join(authors[:19]) + ", … " + authors[-1]
    return ", ".join(authors[:-1]) + ", & " + authors[-1]


def citation(work: Mapping[str, Any]) -> str:
    """APA 7 parenthetical form without the parentheses, e.g. ``Curran & Bauer, 2011``."""
    names = [_surname(a) for a in work["authors"]]
    if len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} & {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {work['year']}"


def format_reference(work: Mapping[str, Any]) -> str:
    """One reference-list entry in APA 7 style, as Markdown (italics with ``*``)."""
    title = str(work["title"]).strip().rstrip(".")
    # APA: a title ending in "?" or "!" takes no further full stop.
    stop = "" if title.endswith(("?", "!")) else "."
    head = f"{_join_authors(list(work['authors']))} ({work['year']})."
    if work.get("type", "article") == "article":
        where = f"*{work['journal']}"
        if work.get("volume") is not None:
            where += f", {work['volume']}*"
            if work.get("issue") is not None:
                where += f"({work['issue']})"
        else:
            where += "*"
        if work.get("pages"):
            where += f", {work['pages']}"
        text = f"{head} {title}{stop} {where}."
    else:
        text = f"{head} *{title}*{stop} {work['publisher']}."
    if work.get("doi"):
        text += f" https://doi.org/{work['doi']}"
    elif work.get("url"):
        text += f" {work['url']}"
    return text


def _sort_key(work: Mapping[str, Any]) -> tuple[str, ...]:
    return (*(_fold(_surname(a)) for a in work["authors"]), str(work["year"]))


def instrument_keys(params: Mapping[str, Any], bib: Bibliography | None = None) -> list[str]:
    """Bibliography keys of the alliance and outcome questionnaires named in ``params``.

    A questionnaire of the user's own (not in the bibliography) adds nothing: its YAML file
    carries its own ``source``.
    """
    bib = bib or load_bibliography()
    chosen = [params.get("instruments", {}).get(k) for k in ("alliance", "outcome")]
    return [bib.instruments[c] for c in chosen if c in bib.instruments]


def reference_list(keys: Iterable[str], bib: Bibliography | None = None,
                   heading: str = "References") -> str:
    """The Markdown reference list of a report: a heading and one paragraph per work.

    Parameters
    ----------
    keys
        Bibliography keys the report cites (duplicates are ignored).
    bib
        The bibliography (default: ``docs/references.yaml``).
    heading
        Section heading (a level-2 Markdown heading).

    Raises
    ------
    SettingsError
        A key is not in the bibliography.
    """
    bib = bib or load_bibliography()
    wanted = list(dict.fromkeys(keys))
    unknown = [k for k in wanted if k not in bib.works]
    if unknown:
        raise SettingsError(
            f"{bib.source}: the report cites {', '.join(unknown)}, which the bibliography "
            "does not have; add the work there or cite one that is")
    works = sorted((bib.works[k] for k in wanted), key=_sort_key)
    entries = "\n\n".join(format_reference(w) for w in works)
    return f"## {heading}\n\n{entries}\n"


def _fold(text: str) -> str:
    """Case- and accent-insensitive form of a name (Flückiger == Fluckiger)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


_NAME = r"(?:(?:De|Del|Della|Van|Von|Le|La|Da|Di|Du)\s+)?[A-Z\u00c0-\u00de][\w\u2019'\-]+"
_CITE = re.compile(
    rf"(?P<names>{_NAME}(?:(?:,\s+|\s+(?:&|and)\s+|,\s+(?:&|and)\s+){_NAME})*"
    rf"(?:\s+et\s+al\.)?),?\s+\(?(?P<year>(?:18|19|20)\d\d)[a-z]?\b(?!\.\d)"
)


def find_citations(text: str) -> set[tuple[str, int]]:
    """Author-year citations in ``text`` as (first author's surname, year) pairs.

    Recognises the forms the reports use: ``Curran & Bauer, 2011``, ``Curran and Bauer
    (2011)``, ``Falkenström et al., 2013``, ``Baldwin, Wampold and Imel (2007)``, ``Nickell
    1981``. Surnames are returned accent- and case-folded.
    """
    flat = re.sub(r"\s+", " ", text)
    found = set()
    for match in _CITE.finditer(flat):
        first = re.split(r",|\s+(?:&|and|et)\s", match["names"])[0]
        found.add((_fold(first), int(match["year"])))
    return found


def cited_keys(text: str, bib: Bibliography | None = None) -> tuple[set[str], set[tuple[str, int]]]:
    """Bibliography keys cited in ``text``, and the citations no work matches."""
    bib = bib or load_bibliography()
    index: dict[tuple[str, int], list[str]] = {}
    for key, work in bib.works.items():
        index.setdefault((_fold(_surname(work["authors"][0])), int(work["year"])), []).append(key)
    keys: set[str] = set()
    unmatched: set[tuple[str, int]] = set()
    for cite in find_citations(text):
        if cite in index:
            keys.update(index[cite])
        else:
            unmatched.add(cite)
    return keys, unmatched
