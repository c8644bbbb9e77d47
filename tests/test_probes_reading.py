"""Probe kind 4, reading: UTF-16 exports, renamed archives, spreadsheet error values."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pandas as pd
import pytest

from pipeline.instruments import load_instrument
from pipeline.read import ERROR_TEXTS, InputError, read_table
from pipeline.validate import validate_inputs

TEXT = "client_id,therapist_id,session,wai_sr_1\nC1,T1,1,3\nC2,T1,1,#NULL!\nC3,T1,1,#DIV/0!\n"


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-8"])
def test_excel_unicode_text_with_bom_is_read(tmp_path: Path, codec: str) -> None:
    bom = {"utf-16-le": b"\xff\xfe", "utf-16-be": b"\xfe\xff", "utf-8": b"\xef\xbb\xbf"}[codec]
    path = tmp_path / "a.csv"
    path.write_bytes(bom + TEXT.replace(",", "\t").encode(codec))
    frame = read_table(path)
    assert list(frame.columns) == ["client_id", "therapist_id", "session", "wai_sr_1"]
    assert frame["client_id"].tolist() == ["C1", "C2", "C3"]
    notes = " ".join(frame.attrs["notes"])
    assert ("UTF-16" in notes) == codec.startswith("utf-16")


def test_utf16_without_bom_is_recognised(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(TEXT.encode("utf-16-le"))
    assert read_table(path)["session"].tolist() == ["1", "1", "1"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_zip_renamed_csv_says_zip_not_missing_column(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"alliance{suffix}"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("alliance.csv", TEXT)
    with pytest.raises(InputError) as exc:
        read_table(path)
    problem = exc.value.problems[0]
    assert problem.rule == "unsupported_format"
    assert "zip archive" in problem.message and "not a CSV" in problem.message


@pytest.mark.parametrize("code", ERROR_TEXTS)
def test_spreadsheet_error_values_are_missing_and_counted(tmp_path: Path, code: str) -> None:
    path = tmp_path / "a.csv"
    path.write_text(TEXT.replace("#NULL!", code).replace("#DIV/0!", code))
    frame = read_table(path)
    assert frame["wai_sr_1"].isna().tolist() == [False, True, True]
    assert frame.attrs["error_cells"] == {"wai_sr_1": 2}
    assert any("error values" in n for n in frame.attrs["notes"])


def test_excel_error_cells_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "a.xlsx"
    pd.DataFrame({"client_id": ["C1", "C2"], "x": ["#NULL!", 3]}).to_excel(path, index=False)
    assert read_table(path)["x"].isna().tolist() == [True, False]


def test_encoding_note_is_kept_when_validation_fails(tmp_path: Path) -> None:
    """A file that fails still says how it was read (the note often explains the failure)."""
    path = tmp_path / "alliance.csv"
    path.write_bytes(b"\xff\xfe" + "client_id\tsession\nC1\t1\n".encode("utf-16-le"))
    outcome = tmp_path / "outcome.csv"
    outcome.write_text("client_id,session,swemwbs\nC1,1,20\n")
    with pytest.raises(InputError) as exc:
        validate_inputs({"alliance": str(path), "outcome": str(outcome)},
                        load_instrument("wai_sr"), load_instrument("swemwbs"))
    text = str(exc.value)
    assert "missing_column" in text
    assert "UTF-16-LE" in text and "How the files were read" in text


def test_validation_reports_progress_per_step() -> None:
    """Long steps say what they did (a 2-million-row file must not run silently)."""
    good = Path(__file__).parent / "bad_inputs" / "good"
    lines: list[str] = []
    validate_inputs({k: str(good / f"{k}.csv") for k in ("alliance", "outcome", "clients")},
                    load_instrument("wai_sr"), load_instrument("swemwbs"), {},
                    progress=lines.append)
    assert lines[0].startswith("alliance file read: 20 rows")
    assert sum("anonymisation guard done" in line for line in lines) == 3
