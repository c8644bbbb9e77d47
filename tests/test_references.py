"""The bibliography, the reference lists of the reports, and citation finding."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import SettingsError
from pipeline.references import (
    citation,
    cited_keys,
    find_citations,
    format_reference,
    instrument_keys,
    load_bibliography,
    reference_list,
)


def test_every_instrument_file_has_its_source_in_the_bibliography(root: Path) -> None:
    bib = load_bibliography()
    keys = {p.stem for p in (root / "pipeline" / "instruments").glob("*.yaml")}
    assert keys <= set(bib.instruments), sorted(keys - set(bib.instruments))


def test_apa_article_and_book() -> None:
    bib = load_bibliography()
    assert format_reference(bib.works["curran_bauer_2011"]) == (
        "Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and "
        "between-person effects in longitudinal models of change. *Annual Review of "
        "Psychology, 62*, 583–619. https://doi.org/10.1146/annurev.psych.093008.100356")
    assert format_reference(bib.works["mcdonald_1999"]) == (
        "McDonald, R. P. (1999). *Test theory: A unified treatment*. Lawrence Erlbaum "
        "Associates.")
    # A title ending in a question mark takes no full stop after it (APA 7).
    assert "Are productive relationships U-shaped or V-shaped? *Journal of Counseling" in \
        format_reference(bib.works["stiles_2004"])
    assert citation(bib.works["falkenstrom_2013"]) == "Falkenström et al., 2013"
    assert citation(bib.works["nickell_1981"]) == "Nickell, 1981"


def test_reference_list_sorted_and_unknown_key_refused() -> None:
    text = reference_list(["nickell_1981", "bates_2015", "nickell_1981"])
    assert text.startswith("## References\n\nBates, D.")
    assert text.count("Nickell, S. (1981)") == 1
    with pytest.raises(SettingsError, match="no_such_2020"):
        reference_list(["no_such_2020"])


def test_instrument_keys_follow_the_settings() -> None:
    params = {"instruments": {"alliance": "wai36", "outcome": "phq9"}}
    assert instrument_keys(params) == ["horvath_greenberg_1989", "kroenke_2001"]
    assert instrument_keys({"instruments": {"alliance": "my_own", "outcome": "x"}}) == []


def test_find_citations_in_the_forms_the_reports_use() -> None:
    text = ("apart (Curran & Bauer, 2011); as in Baldwin, Wampold and Imel (2007); "
            "(Falkenström et al., 2013) and (Nickell,\n1981). Python 3.11, 2019.3, seed 20261122;"
            " Flückiger, Del Re, Wampold & Horvath 2018.")
    assert find_citations(text) == {("curran", 2011), ("baldwin", 2007),
                                    ("falkenstrom", 2013), ("nickell", 1981),
                                    ("fluckiger", 2018)}
    keys, unmatched = cited_keys(text + " Smith (1999).")
    assert {"curran_bauer_2011", "baldwin_2007", "fluckiger_2018"} <= keys
    assert unmatched == {("smith", 1999)}


def test_bad_bibliography_names_the_entry(tmp_path: Path) -> None:
    bad = tmp_path / "refs.yaml"
    bad.write_text("works:\n  x_2000:\n    authors: [\"X, Y.\"]\n    year: 2000\n"
                   "    title: T\ninstruments:\n  wai_sr: missing_key\n")
    with pytest.raises(SettingsError) as err:
        load_bibliography(bad)
    assert "x_2000: missing journal" in str(err.value)
    assert "instruments.wai_sr" in str(err.value)


@pytest.mark.parametrize("doc", ["README.md", "docs/analysis-plan.md", "docs/reproducibility.md"])
def test_docs_cite_only_works_in_the_bibliography(root: Path, doc: str) -> None:
    _, unmatched = cited_keys((root / doc).read_text(encoding="utf-8"))
    assert not unmatched, f"{doc} cites works not in docs/references.yaml: {sorted(unmatched)}"


def test_nothing_points_at_the_team_folder(root: Path) -> None:
    """The repository links only to its own files (no ../shared/reference)."""
    files = [root / "README.md", *(root / "docs").glob("*.md"), *(root / "notebooks").glob("*.py"),
             *(root / "pipeline").rglob("*.py"), *(root / "pipeline").rglob("*.yaml"),
             root / "params.yaml", root / "dvc.yaml", root / "Makefile"]
    for path in files:
        assert "shared/reference" not in path.read_text(encoding="utf-8"), path.name
