"""Read one input table, whatever format a researcher's export came in.

The format is chosen by the file extension (see :data:`READERS`). Every reader returns
the file's table unchanged in content, with one convention that the validation messages
rely on: the index holds the **data row number**, counted from 1 at the first row below
the header. What that number is in the original file (a line of a CSV file, a row of a
spreadsheet, a case in SPSS ...) is written in ``frame.attrs["row_note"]``.

Input files are only ever opened for reading.

This module also defines the project's input error (:class:`Problem`,
:class:`InputError`), because reading is the first thing that can go wrong;
:mod:`pipeline.validate` re-exports both.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError

#: Spreadsheet error values (Excel, LibreOffice, SPSS's ``#NULL!``): a cell that holds one
#: has no value, so it is read as missing in every text and spreadsheet format and counted
#: in the notes of :func:`read_table` (``frame.attrs["error_cells"]``).
ERROR_TEXTS: tuple[str, ...] = (
    "#NULL!", "#N/A", "#VALUE!", "#DIV/0!", "#REF!", "#NAME?", "#NUM!", "#SPILL!",
    "#CALC!", "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#UNKNOWN!", "#CONNECT!", "#BUSY!",
)

#: Cell texts read as missing in CSV/TSV files (besides an empty cell).
NA_TEXTS: tuple[str, ...] = ("NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", *ERROR_TEXTS)

#: Byte-order marks recognised at the start of a text file, longest first, with the codec
#: that reads the rest (Excel's "Unicode text" export is UTF-16 LE with a BOM).
BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)

#: Leading bytes of container formats that are sometimes renamed to ``.csv``.
MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "a zip archive (or an Excel .xlsx workbook, which is one)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Excel .xls workbook (or another "
     "Microsoft Office file)"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"PAR1", "a Parquet file"),
    (b"$FL2", "an SPSS .sav file"),
    (b"$FL3", "an SPSS .zsav file"),
    (b"%PDF", "a PDF document"),
    (b"SQLite format 3", "an SQLite database"),
)

#: Delimiters recognised in delimited text files, in order of preference.
DELIMITERS: tuple[str, ...] = (",", ";", "\t", "|")


# ------------------------------------------------------------------------------- errors


@dataclass
class Problem:
    """One thing wrong with an input file.

    Attributes
    ----------
    file
        The file as the user named it (path from ``params.yaml``), or ``params.yaml``
        for a problem with the settings.
    column
        The column concerned, several columns joined by ``", "``, or ``None`` for a
        problem with the whole file.
    rows
        Example data row numbers (at most ``validation.max_examples``), ascending. Data
        row N is the N-th row below the header: line N+1 of a CSV file, spreadsheet row
        N+1 in Excel, case N in SPSS, observation N in Stata (see ``row_note``).
    rule
        Short identifier of the rule that failed, e.g. ``out_of_range`` or
        ``content:email_address``; ``data/README.md`` lists them all.
    message
        What is wrong and how to fix it. Never contains a cell's value.
    count
        Total number of rows concerned (``rows`` holds only examples). Defaults to
        ``len(rows)``.
    row_note
        What a data row number means in this file, e.g. ``"data row N = line N+1 of
        the file"``.
    """

    file: str
    column: str | None
    rows: list[int]
    rule: str
    message: str
    count: int = 0
    row_note: str = ""

    def __post_init__(self) -> None:
        self.rows = sorted(int(r) for r in self.rows)
        self.count = max(int(self.count), len(self.rows))

    def where(self) -> str:
        """Describe the rows concerned, e.g. ``"rows 3, 8 and 4 more (6 rows; ...)"``."""
        if not self.rows:
            return ""
        shown = ", ".join(str(r) for r in self.rows)
        more = self.count - len(self.rows)
        text = f"data row{'s' if self.count > 1 else ''} {shown}"
        if more > 0:
            text += f" and {more} more ({self.count} rows in all)"
        if self.row_note:
            text += f"; {self.row_note}"
        return text

    def __str__(self) -> str:
        column = f", column '{self.column}'" if self.column else ""
        where = self.where()
        text = f"{self.file}{column} [rule {self.rule}]: {self.message}"
        return f"{text}\n    where: {where}" if where else text


class InputError(PipelineError):
    """The input data cannot be used; ``str()`` lists every problem found.

    Parameters
    ----------
    problems
        All problems found (not just the first).
    checks
        Optional tidy table of the checks run so far (see
        :class:`pipeline.validate.ValidatedInputs`).
    notes
        Warnings gathered before the failure (how each file was read: encoding,
        delimiter, spreadsheet error cells), printed after the problems so that they are
        not lost when validation fails.
    """

    def __init__(self, problems: Sequence[Problem], checks: pd.DataFrame | None = None,
                 notes: Sequence[str] = ()) -> None:
        self.problems: list[Problem] = list(problems)
        self.checks = checks
        self.notes: list[str] = list(notes)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        n = len(self.problems)
        files = list(dict.fromkeys(p.file for p in self.problems))
        lines = [
            f"The input data cannot be used: {n} problem{'s' if n != 1 else ''} in "
            f"{len(files)} file{'s' if len(files) != 1 else ''}. The input files were not "
            "changed. Cell values are never shown here; open the file at the rows named.",
        ]
        i = 0
        for file in files:
            lines.append("")
            lines.append(f"{file}:")
            for p in self.problems:
                if p.file != file:
                    continue
                i += 1
                column = f"column '{p.column}', " if p.column else ""
                lines.append(f"  {i}. {column}rule {p.rule}: {p.message}")
                where = p.where()
                if where:
                    lines.append(f"     where: {where}")
        if self.notes:
            # How the files were read (encoding, delimiter, error cells): often the cause.
            lines.append("")
            lines.append("How the files were read (may explain the problems above):")
            lines.extend(f"  - {note}" for note in self.notes)
        return "\n".join(lines)


def _fail(path: str | Path, rule: str, message: str) -> InputError:
    return InputError([Problem(str(path), None, [], rule, message)])


# ------------------------------------------------------------------------------ readers


def _number_rows(frame: pd.DataFrame) -> pd.DataFrame:
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    return frame


def _header_body(raw: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Split a header-less frame into header (its first row) and body, checking names."""
    if raw.shape[0] == 0:
        raise _fail(path, "empty_file", "the file is empty: it has no header and no rows.")
    names: list[str] = []
    for j, value in enumerate(raw.iloc[0].tolist()):
        blank = value is None or (isinstance(value, float) and np.isnan(value))
        name = "" if blank else str(value).strip()
        if isinstance(value, float) and not blank and value.is_integer():
            name = str(int(value))
        names.append(name if name else f"<unnamed column {j + 1}>")
    body = raw.iloc[1:].reset_index(drop=True)
    body.columns = pd.Index(names)
    # A column without a header and without values is an artefact of the export
    # (a trailing delimiter or a formatted empty spreadsheet column): drop it.
    keep = [
        j
        for j, name in enumerate(names)
        if not (name.startswith("<unnamed column") and body.iloc[:, j].isna().all())
    ]
    body = body.iloc[:, keep]
    return _number_rows(body.infer_objects())


def _sniff_delimiter(first_line: str, default: str) -> str:
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > counts.get(default, 0) else default


def _not_text(path: Path, head: bytes) -> None:
    """Refuse a file whose first bytes show it is a binary container, not a text table."""
    for magic, what in MAGIC:
        if head.startswith(magic):
            raise _fail(
                path, "unsupported_format",
                f"this is {what}, not a CSV/text table, although its name ends in "
                f"'{path.suffix}'. Unpack or export the table itself (CSV UTF-8, or keep the "
                "workbook's own extension such as .xlsx) and name that file in params.yaml.",
            )


def _utf16_without_bom(head: bytes) -> str | None:
    """``utf-16-le``/``-be`` when every other byte of the start is NUL (ASCII in UTF-16)."""
    sample = head[:200]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    if odd.count(0) > 0.9 * len(odd) and even.count(0) == 0:
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) == 0:
        return "utf-16-be"
    return None


def decode_text(path: Path, raw_bytes: bytes) -> tuple[str, list[str]]:
    """Decode a text table: byte-order mark first, then UTF-8, then Windows-1252.

    Parameters
    ----------
    path
        The file (for messages).
    raw_bytes
        Its content.

    Returns
    -------
    (text, notes)
        The decoded text without the byte-order mark, and notes for the validation
        report saying how it was read when it was not plain UTF-8.

    Raises
    ------
    InputError
        ``unsupported_format`` when the bytes are a zip/Excel/PDF/... container;
        ``unreadable_file`` when a byte-order mark promises an encoding the bytes break.
    """
    _not_text(path, raw_bytes[:16])
    notes: list[str] = []
    for bom, codec in BOMS:
        if raw_bytes.startswith(bom):
            try:
                text = raw_bytes[len(bom):].decode(codec)
            except UnicodeDecodeError as exc:
                raise _fail(
                    path, "unreadable_file",
                    f"the file starts with a {codec.upper()} byte-order mark but is not valid "
                    f"{codec.upper()} ({_first_line(exc)}). Re-save it as CSV UTF-8.",
                ) from exc
            if codec != "utf-8":
                notes.append(f"read as {codec.upper()} (byte-order mark found; Excel's "
                             "'Unicode text' export). CSV UTF-8 is preferred")
            return text, notes
    codec16 = _utf16_without_bom(raw_bytes)
    if codec16:
        try:
            text = raw_bytes.decode(codec16)
            notes.append(f"read as {codec16.upper()} without a byte-order mark. CSV UTF-8 is "
                         "preferred")
            return text, notes
        except UnicodeDecodeError:
            pass
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError:
        text = raw_bytes.decode("cp1252", errors="replace")
        notes.append("not valid UTF-8: read as Windows-1252 (save as CSV UTF-8 to avoid this)")
    if "\x00" in text:
        raise _fail(
            path, "unreadable_file",
            "the file holds NUL bytes, so it is not a text table (a binary file, or text in "
            "an encoding that could not be recognised). Export it again as CSV UTF-8.",
        )
    return text, notes


def _count_errors(body: pd.DataFrame, names: Sequence[str], frame: pd.DataFrame,
                  notes: list[str]) -> None:
    """Note how many cells of ``body`` (raw cells, columns ``names``) held error values.

    The counts per column go to ``frame.attrs["error_cells"]``; the cells themselves are
    already missing in ``frame``.
    """
    codes = set(ERROR_TEXTS)
    found: dict[str, int] = {}
    for j, column in enumerate(names):
        if j >= body.shape[1] or column not in frame.columns:
            continue
        n = int(body.iloc[:, j].map(lambda v: isinstance(v, str) and v.strip() in codes).sum())
        if n:
            found[str(column)] = n
    if found:
        total = sum(found.values())
        notes.append(
            f"{total} cell{'s' if total != 1 else ''} held spreadsheet error values such as "
            "#NULL!, #N/A or #VALUE!, read as missing (by column: "
            + ", ".join(f"{c} {n}" for c, n in sorted(found.items())) + ")"
        )
    frame.attrs["error_cells"] = found


def _read_delimited(path: Path, default_delimiter: str) -> pd.DataFrame:
    raw_bytes = path.read_bytes()
    text, notes = decode_text(path, raw_bytes)
    if not text.strip():
        raise _fail(path, "empty_file", "the file is empty: it has no header and no rows.")
    first_line = text.splitlines()[0]
    delimiter = _sniff_delimiter(first_line, default_delimiter)
    if delimiter != default_delimiter:
        notes.append(f"columns are separated by {delimiter!r}")
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_values=["", *NA_TEXTS],
            skip_blank_lines=False,
        )
    except (pd.errors.ParserError, csv.Error, ValueError) as exc:
        raise _fail(
            path,
            "unreadable_file",
            "the file cannot be read as a delimited text table "
            f"({type(exc).__name__}: {_first_line(exc)}). Check that every row has the same "
            "number of fields as the header and that quotes are balanced.",
        ) from exc
    frame = _header_body(raw, path)
    frame.attrs["row_note"] = "data row N = line N+1 of the file"
    _count_error_texts(text, delimiter, frame, notes)
    frame.attrs["notes"] = notes
    return frame


def _count_error_texts(text: str, delimiter: str, frame: pd.DataFrame,
                       notes: list[str]) -> None:
    """Count spreadsheet error values in a text file (already read as missing)."""
    frame.attrs["error_cells"] = {}
    if "#" not in text:
        return
    cells = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, dtype=str,
                        keep_default_na=False, na_values=[], skip_blank_lines=False)
    names = [str(v).strip() for v in cells.iloc[0]]
    _count_errors(cells.iloc[1:], names, frame, notes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_csv(path: Path) -> pd.DataFrame:
    return _read_delimited(path, ",")


def _read_tsv(path: Path) -> pd.DataFrame:
    return _read_delimited(path, "\t")


def _read_excel(path: Path) -> pd.DataFrame:
    engine: Literal["xlrd", "openpyxl"] = "xlrd" if path.suffix.lower() == ".xls" else "openpyxl"
    if engine == "xlrd":
        try:
            import xlrd  # noqa: F401
        except ImportError as exc:
            raise _fail(
                path,
                "unsupported_format",
                "old-style Excel .xls files need the 'xlrd' package, which the project does "
                "not install. Open the file in Excel or LibreOffice and save it as .xlsx "
                "or CSV.",
            ) from exc
    try:
        sheets = pd.ExcelFile(path, engine=engine)
        sheet = sheets.sheet_names[0]
        raw = sheets.parse(sheet, header=None, dtype=object)
    except (ValueError, KeyError, OSError, zipfile.BadZipFile) as exc:
        raise _fail(
            path,
            "unreadable_file",
            f"the file cannot be read as an Excel workbook ({type(exc).__name__}: "
            f"{_first_line(exc)}). Re-save it from Excel as .xlsx, or export CSV.",
        ) from exc
    codes = set(ERROR_TEXTS)
    errors = raw.map(lambda v: isinstance(v, str) and v.strip() in codes)
    errors.iloc[0] = False
    frame = _header_body(raw.mask(errors), path)
    frame.attrs["row_note"] = f"data row N = row N+1 of sheet '{sheet}'"
    notes: list[str] = []
    names = ["" if pd.isna(v) else str(v).strip() for v in raw.iloc[0]] if len(raw) else []
    _count_errors(raw.iloc[1:], names, frame, notes)
    if len(sheets.sheet_names) > 1:
        notes.append(
            f"the workbook has {len(sheets.sheet_names)} sheets; only the first, '{sheet}', "
            "was read"
        )
    frame.attrs["notes"] = notes
    return frame


def _read_stat(path: Path) -> pd.DataFrame:
    import pyreadstat

    spss = path.suffix.lower() in (".sav", ".zsav")
    reader = pyreadstat.read_sav if spss else pyreadstat.read_dta
    try:
        # Codes, not labels: value labels are kept in attrs and applied only to
        # covariates (item answers must stay numbers). User-missing codes become missing.
        frame, meta = reader(str(path), apply_value_formats=False, user_missing=False)
    except Exception as exc:  # pyreadstat raises its own exception types
        kind = "an SPSS .sav" if spss else "a Stata .dta"
        raise _fail(
            path,
            "unreadable_file",
            f"the file cannot be read as {kind} file ({type(exc).__name__}: "
            f"{_first_line(exc)}). Re-save it from {'SPSS' if spss else 'Stata'}, or export CSV.",
        ) from exc
    frame = _number_rows(frame.copy())
    frame.attrs["row_note"] = (
        "data row N = case N in SPSS Data View" if spss else "data row N = observation N in Stata"
    )
    frame.attrs["value_labels"] = {
        str(k): dict(v) for k, v in (meta.variable_value_labels or {}).items()
    }
    frame.attrs["notes"] = []
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many exception types for a bad file
        raise _fail(
            path,
            "unreadable_file",
            f"the file cannot be read as Parquet ({type(exc).__name__}: {_first_line(exc)}).",
        ) from exc
    if not isinstance(frame.index, pd.RangeIndex):
        # A named index (e.g. client_id saved as the index) is data: keep it as columns.
        frame = frame.reset_index()
    frame = _number_rows(frame)
    frame.attrs["row_note"] = "data row N = the N-th row of the table"
    frame.attrs["notes"] = []
    return frame


#: Readers by lower-case file extension.
READERS: dict[str, Callable[[Path], pd.DataFrame]] = {
    ".csv": _read_csv,
    ".txt": _read_csv,
    ".tsv": _read_tsv,
    ".tab": _read_tsv,
    ".parquet": _read_parquet,
    ".pq": _read_parquet,
    ".xlsx": _read_excel,
    ".xlsm": _read_excel,
    ".xls": _read_excel,
    ".sav": _read_stat,
    ".zsav": _read_stat,
    ".dta": _read_stat,
}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one input table, choosing the reader by the file extension.

    Parameters
    ----------
    path
        A ``.csv``/``.txt`` (comma, or semicolon/tab/pipe when the header uses one),
        ``.tsv``/``.tab``, ``.parquet``/``.pq``, ``.xlsx``/``.xlsm`` (first sheet),
        ``.xls`` (needs ``xlrd``), ``.sav``/``.zsav`` (SPSS) or ``.dta`` (Stata) file.

    Returns
    -------
    pandas.DataFrame
        The table with its column names as written (surrounding spaces removed), index =
        data row number (1 = first row below the header). Text files are read as text
        (every cell a string, empty cells and ``NA``-like texts missing), so ids keep
        their leading zeros; binary formats keep their stored types (SPSS/Stata: codes,
        user-missing values missing, date variables as dates). ``attrs`` holds
        ``row_note`` (what a data row number is in this file), ``notes`` (how the file
        was read, for the validation report) and, for SPSS/Stata, ``value_labels``.

    Raises
    ------
    InputError
        If the file does not exist, its extension is not supported, it is empty, has a
        header but no data rows, has two columns with the same name, or cannot be
        parsed. The message names the file.
    """
    p = Path(path)
    if not p.is_file():
        what = "a folder, not a file" if p.is_dir() else "not found"
        raise _fail(
            path, "file_not_found",
            f"the file is {what}. Check the path under data: in params.yaml (paths are "
            "relative to the project folder).",
        )
    reader = READERS.get(p.suffix.lower())
    if reader is None:
        known = ", ".join(sorted(READERS))
        raise _fail(
            path,
            "unsupported_format",
            f"the extension '{p.suffix or '(none)'}' is not a supported format ({known}). "
            "Export the table to CSV or one of these formats.",
        )
    if p.stat().st_size == 0:
        raise _fail(path, "empty_file", "the file is empty (0 bytes).")
    frame = reader(p)
    frame.columns = pd.Index([str(c).strip() for c in frame.columns])
    duplicated = sorted({c for c in frame.columns if list(frame.columns).count(c) > 1})
    if duplicated:
        raise _fail(
            path,
            "duplicate_column",
            f"{len(duplicated)} column name(s) appear more than once: "
            f"{', '.join(duplicated)}. Each column needs its own name; delete or rename the "
            "copies.",
        )
    if len(frame) == 0 or frame.isna().all(axis=None):
        raise _fail(
            path,
            "no_data_rows",
            "the file has a header but no data rows. Was the right sheet or file exported?",
        )
    return frame


def is_date_like(value: Any) -> bool:
    """True for date, time and datetime objects (as stored by Excel, SPSS, Stata, Parquet)."""
    return isinstance(value, dt.date | dt.time | np.datetime64 | pd.Timestamp)


__all__ = ["READERS", "InputError", "Problem", "is_date_like", "read_table"]
