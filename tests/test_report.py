"""Rendering notebooks to HTML is byte-stable and shows no code, timings or stderr."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.report import execute, render

SOURCE = '''# %% [markdown]
# # A tiny report

# %% tags=["parameters"]
answer = 0

# %%
import sys
import matplotlib.pyplot as plt
print("answer is", answer)
print("noise on stderr", sys.executable, file=sys.stderr)
plt.plot([1, 2, 3], [answer, 1, 2])
plt.show()

# %%
import pandas as pd
from pipeline.tables import styled
styled(pd.DataFrame({"term": ["time"], "estimate": [0.15]}))
'''


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("nb") / "tiny.py"
    path.write_text(SOURCE)
    return path


def test_render_twice_is_byte_identical(source: Path, tmp_path: Path) -> None:
    a = render(source, tmp_path / "a" / "tiny.html", {"answer": 42}, cwd=tmp_path)
    b = render(source, tmp_path / "b" / "tiny.html", {"answer": 42}, cwd=tmp_path)
    html = a.read_text()
    assert a.read_bytes() == b.read_bytes()
    assert "answer is 42" in html
    assert "data:image/png;base64" in html  # figures are embedded
    assert "noise on stderr" not in html  # stderr (paths of this machine) is dropped
    assert "print(" not in html  # code is hidden
    assert "0.15" in html  # the styled table is there (its id is not random)


def test_executed_notebook_has_no_run_metadata(source: Path, tmp_path: Path) -> None:
    nb = execute(source, {"answer": 1}, cwd=tmp_path)
    assert "papermill" not in nb.metadata
    ids = [cell["id"] for cell in nb.cells]
    assert "injected-parameters" in ids
    for cell in nb.cells:
        assert "execution" not in cell.metadata
        assert "papermill" not in cell.metadata


def test_notice_says_simulated_or_names_files_without_folders(root: Path) -> None:
    from pipeline.report import data_notice, open_project

    project, params = open_project(root / "params.yaml")
    assert project == root
    assert "SIMULATED" in data_notice(params)
    own = {"data": {"alliance": "/home/alice/study/wai.sav", "outcome": "out.csv",
                    "clients": "", "simulated": False}}
    notice = data_notice(own)
    assert "SIMULATED" not in notice
    import html

    assert "<code>wai.sav</code>" in html.unescape(notice) and "alice" not in notice


def test_the_notebook_machinery_imports_without_rfc3987_syntax() -> None:
    """pyproject's uv override keeps rfc3987-syntax out of the environment: importing it
    costs 2.7 s (it builds Earley parsers) in every process that reads a notebook, for a
    JSON-schema format nothing here uses. Without it, nbformat still validates notebooks."""
    import subprocess
    import sys

    probe = ("import sys, nbformat, jupytext, papermill; "
             "nb = nbformat.v4.new_notebook(); nbformat.validate(nb); "
             "print('rfc3987_syntax' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_outcome_words_follow_the_instrument_and_its_direction() -> None:
    """A PHQ-9 analysis was written up as "wellbeing" with no word on the sign: the noun
    comes from the instrument's construct and the reading sentence from its direction."""
    from pipeline.instruments import load_instrument
    from pipeline.report import outcome_noun, outcome_reading

    phq9, swemwbs = load_instrument("phq9"), load_instrument("swemwbs")
    assert outcome_noun(swemwbs) == "wellbeing"
    assert outcome_noun(phq9, higher_is_better=False) == "depression"
    assert outcome_noun(phq9, higher_is_better=True, escaped=False) == "reversed depression"
    assert outcome_noun(None) == "the outcome"
    kept = outcome_reading(phq9, higher_is_better=False)
    assert "a **negative** coefficient means that a stronger alliance goes with less " \
           "depression (a better outcome)" in kept
    turned = outcome_reading(phq9, higher_is_better=True)
    assert "here higher = better and a **positive** coefficient" in turned
    assert "a **positive** coefficient" in outcome_reading(swemwbs)
    assert outcome_reading(None) == ""


def test_the_outcome_key_is_described_with_its_reversed_items_and_missing_rule() -> None:
    """The psychometrics report showed the alliance key only: a CORE-10 reader was not told
    that items 2 and 3 are reversed or that one blank item is prorated."""
    from pipeline.instruments import load_instrument
    from pipeline.report import outcome_key_text

    assert outcome_key_text(load_instrument("core10")) == (
        "10 items answered 0\u20134, summed; items 2, 3 are reversed (scored as 4 minus the "
        "answer). Missing items: with up to 1 blank item the total is prorated (10 \u00d7 the "
        "sum of the answered items / their number); with more it is missing.")
    assert "with up to 2 blank items the total is prorated (9 \u00d7" in outcome_key_text(
        load_instrument("phq9"))
    assert outcome_key_text(load_instrument("swemwbs")) == (
        "7 items answered 1\u20135, summed; no item is reversed. Missing items: a blank item "
        "leaves the score missing.")
    assert outcome_key_text(load_instrument("who5")).endswith(
        "The raw score is multiplied by 4.")
