"""Tests for pipeline.read: every format, the row numbering, and unreadable files."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.read import InputError, Problem, read_table

BAD = Path(__file__).parent / "bad_inputs"
GOOD = BAD / "good"


def _as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells as the text a reader sees (12.0 -> "12"), to compare formats."""
    def text(v: object) -> object:
        if v is None or (isinstance(v, float) and pd.isna(v)):
            return None
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        return str(v)

    return frame.map(text)


def _problem(exc: pytest.ExceptionInfo[InputError]) -> Problem:
    assert len(exc.value.problems) == 1
    return exc.value.problems[0]


# ------------------------------------------------------------------------------ formats


def test_csv_is_read_as_text_with_data_row_numbers() -> None:
    frame = read_table(GOOD / "alliance.csv")
    assert list(frame.columns[:3]) == ["client_id", "therapist_id", "session"]
    assert frame.index[0] == 1 and frame.index.name == "row"
    assert all(pd.api.types.is_object_dtype(t) for t in frame.dtypes)
    assert frame.attrs["row_note"] == "data row N = line N+1 of the file"
    lines = (GOOD / "alliance.csv").read_text().splitlines()
    # data row 3 is line 4 of the file
    assert ",".join(str(v) for v in frame.loc[3]) == lines[3]


@pytest.mark.parametrize(
    ("name", "note"),
    [
        ("alliance.xlsx", "data row N = row N+1 of sheet 'data'"),
        ("alliance.parquet", "data row N = the N-th row of the table"),
    ],
)
def test_binary_alliance_formats_match_the_csv(name: str, note: str) -> None:
    csv = read_table(GOOD / "alliance.csv").iloc[::-1].reset_index(drop=True)
    other = read_table(GOOD / name)
    assert other.attrs["row_note"] == note
    assert other.index[0] == 1
    pd.testing.assert_frame_equal(_as_text(other).reset_index(drop=True), _as_text(csv))


@pytest.mark.parametrize(
    ("name", "note"),
    [("outcome.sav", "case N in SPSS"), ("outcome.dta", "observation N in Stata")],
)
def test_spss_and_stata_match_the_csv(name: str, note: str) -> None:
    csv = read_table(GOOD / "outcome.csv")
    other = read_table(GOOD / name)
    assert note in other.attrs["row_note"]
    # codes, not value labels; the SPSS user-missing code -9 is missing
    pd.testing.assert_frame_equal(_as_text(other), _as_text(csv), check_dtype=False)


def test_value_labels_are_kept_in_attrs() -> None:
    frame = read_table(GOOD / "clients.sav")
    assert frame["approach"].tolist()[:1] == [1.0]
    assert frame.attrs["value_labels"]["approach"] == {1.0: "CBT", 2.0: "humanistic"}
    assert read_table(GOOD / "clients.dta").attrs["value_labels"]["modality"][2] == "video"


def test_leading_zeros_semicolons_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "ids.csv"
    path.write_bytes("\ufeffclient_id;session\n007;1\n010;2\n".encode())
    frame = read_table(path)
    assert frame["client_id"].tolist() == ["007", "010"]
    assert any("';'" in note for note in frame.attrs["notes"])


def test_tsv_and_na_texts(tmp_path: Path) -> None:
    path = tmp_path / "t.tsv"
    path.write_text("client_id\tsession\tx\nC1\t1\tNA\nC2\t2\t \n")
    frame = read_table(path)
    assert frame["x"].isna().iloc[0]
    assert frame.attrs["notes"] == []


def test_windows_1252_is_read_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("client_id,approach\nC1,th\xe9rapie\n".encode("cp1252"))
    frame = read_table(path)
    assert frame.loc[1, "approach"] == "thérapie"
    assert "Windows-1252" in frame.attrs["notes"][0]


def test_blank_lines_keep_the_line_numbering(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("client_id,session\nC1,1\n\nC1,2\n")
    frame = read_table(path)
    assert frame.loc[3, "session"] == "2"  # line 4
    assert frame.loc[2].isna().all()


def test_trailing_empty_column_is_dropped_and_unnamed_data_kept(tmp_path: Path) -> None:
    path = tmp_path / "trailing.csv"
    path.write_text("client_id,session,\nC1,1,\nC2,2,\n")
    assert list(read_table(path).columns) == ["client_id", "session"]
    path.write_text("client_id,,session\nC1,x,1\n")
    assert list(read_table(path).columns) == ["client_id", "<unnamed column 2>", "session"]


def test_parquet_index_is_kept_as_a_column(tmp_path: Path) -> None:
    path = tmp_path / "indexed.parquet"
    pd.DataFrame({"session": [1, 2]}, index=pd.Index(["C1", "C2"], name="client_id")).to_parquet(
        path
    )
    frame = read_table(path)
    assert list(frame.columns) == ["client_id", "session"]


def test_workbook_with_several_sheets_reads_the_first_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "two.xlsx"
    with pd.ExcelWriter(path) as writer:
        pd.DataFrame({"client_id": ["C1"], "session": [1]}).to_excel(
            writer, sheet_name="main", index=False
        )
        pd.DataFrame({"code": [1]}).to_excel(
            writer, sheet_name="codebook", index=False
        )
    frame = read_table(path)
    assert list(frame.columns) == ["client_id", "session"]
    assert "only the first, 'main'" in frame.attrs["notes"][0]


def test_read_does_not_change_the_file() -> None:
    before = {p: p.read_bytes() for p in GOOD.iterdir()}
    for path in GOOD.iterdir():
        read_table(path)
    assert {p: p.read_bytes() for p in GOOD.iterdir()} == before


# ------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "rule", "text"),
    [
        ("alliance_empty_file.csv", "empty_file", "the file is empty"),
        ("alliance_no_data_rows.csv", "no_data_rows", "no data rows"),
        ("alliance_unreadable_file.csv", "unreadable_file", "Expected 15 fields in line 3"),
        ("alliance_unreadable_file.xlsx", "unreadable_file", "Excel workbook"),
        ("alliance_unsupported_format.json", "unsupported_format", "'.json'"),
        ("alliance_duplicate_column.csv", "duplicate_column", "session"),
        ("does_not_exist.csv", "file_not_found", "not found"),
    ],
)
def test_bad_files_raise_an_input_error_naming_the_file(name: str, rule: str, text: str) -> None:
    path = BAD / name
    with pytest.raises(InputError) as exc:
        read_table(path)
    problem = _problem(exc)
    assert problem.rule == rule
    assert problem.file == str(path)
    assert text in problem.message
    assert str(path) in str(exc.value)
    assert f"rule {rule}" in str(exc.value)


@pytest.mark.parametrize("suffix", [".sav", ".dta", ".parquet"])
def test_corrupt_binary_files_are_unreadable(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"broken{suffix}"
    path.write_text("not really a data file\n")
    with pytest.raises(InputError) as exc:
        read_table(path)
    assert _problem(exc).rule == "unreadable_file"


def test_whitespace_only_file_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "spaces.csv"
    path.write_text("  \n\n")
    with pytest.raises(InputError) as exc:
        read_table(path)
    assert _problem(exc).rule == "empty_file"


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        read_table(tmp_path)
    assert "a folder" in _problem(exc).message


@pytest.mark.skipif(importlib.util.find_spec("xlrd") is not None, reason="xlrd installed")
def test_old_excel_needs_xlrd(tmp_path: Path) -> None:
    path = tmp_path / "old.xls"
    path.write_bytes(b"\xd0\xcf\x11\xe0")
    with pytest.raises(InputError) as exc:
        read_table(path)
    problem = _problem(exc)
    assert problem.rule == "unsupported_format" and "xlsx" in problem.message


# ------------------------------------------------------------------------ error objects


def test_problem_lists_examples_and_the_total() -> None:
    problem = Problem("a.csv", "session", [9, 3], "session_below_1", "bad", count=12,
                      row_note="data row N = line N+1 of the file")
    assert problem.rows == [3, 9]
    assert problem.where() == (
        "data rows 3, 9 and 10 more (12 rows in all); data row N = line N+1 of the file"
    )
    assert Problem("a.csv", None, [4], "r", "m").where() == "data row 4"
    assert Problem("a.csv", None, [], "r", "m").count == 0


def test_input_error_lists_every_problem_grouped_by_file() -> None:
    problems = [
        Problem("a.csv", "x", [2], "rule_one", "first"),
        Problem("b.csv", None, [], "rule_two", "second"),
        Problem("a.csv", "y", [5, 6], "rule_three", "third"),
    ]
    text = str(InputError(problems))
    assert text.startswith("The input data cannot be used: 3 problems in 2 files.")
    assert text.index("a.csv:") < text.index("column 'y'") < text.index("b.csv:")
    for needle in ("1. column 'x', rule rule_one: first", "where: data row 2",
                   "3. rule rule_two: second", "2. column 'y', rule rule_three: third",
                   "data rows 5, 6"):
        assert needle in text


def test_make_files_reproduces_the_committed_files(tmp_path: Path) -> None:
    sys.path.insert(0, str(BAD))
    try:
        import make_files
    finally:
        sys.path.remove(str(BAD))
    make_files.main([str(tmp_path)])
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(
        p.relative_to(BAD) for p in BAD.rglob("*")
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    )
    assert made == committed
    changed = [str(p) for p in made if (tmp_path / p).read_bytes() != (BAD / p).read_bytes()]
    assert changed == [], "run python tests/bad_inputs/make_files.py and commit the files"
