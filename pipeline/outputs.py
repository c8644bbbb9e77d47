"""Deterministic, atomic writing of pipeline outputs.

Every file a stage writes goes through here, so that

* a failed run never leaves a half-written file: data go to a temporary file in the
  same folder, which is moved into place with :func:`os.replace` only when complete;
* files get the permissions of any newly created file (``0666`` less the umask, so
  ``0644`` under the usual umask 022), not the ``0600`` of :func:`tempfile.mkstemp`,
  so colleagues sharing a project folder can read fresh results;
* identical inputs give byte-identical files: rows are sorted by the caller, floats are
  rounded to a stated number of significant digits (``SIG_DIGITS``; well above the
  last-bit noise that differs between BLAS builds, far finer than any paper prints),
  line endings are ``\\n`` and JSON keys are sorted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic import atomic_open, current_umask, new_file_mode  # noqa: F401 (re-exported)

#: Significant digits kept in floats written to results files.
SIG_DIGITS = 10


def round_sig(values: pd.Series | np.ndarray, digits: int = SIG_DIGITS) -> np.ndarray:
    """Round floats to ``digits`` significant digits (NaN and inf pass through).

    Goes through the decimal text (``%.{digits}g``) so that each result is the float
    nearest to the rounded decimal and prints as that short decimal.
    """
    x = np.asarray(values, dtype=float)
    return np.array([float(f"{v:.{digits}g}") for v in x.ravel()], dtype=float).reshape(x.shape)


def tidy_for_output(frame: pd.DataFrame, digits: int = SIG_DIGITS) -> pd.DataFrame:
    """Round every float column to ``digits`` significant digits."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_float_dtype(out[col]):
            out[col] = round_sig(out[col].to_numpy(), digits)
    return out


#: First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV
#: injection"); tab and carriage return are included because some programs strip them.
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def _is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with an apostrophe.

    Parameters
    ----------
    frame
        Any table about to be written as CSV.

    Returns
    -------
    pandas.DataFrame
        A copy in which every text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
        carriage return, and that is not a number written as text (``-0.5`` stays), starts
        with ``'`` instead, which spreadsheets show as text. Numeric columns are unchanged.

    References
    ----------
    OWASP Foundation. *CSV Injection*. https://owasp.org/www-community/attacks/CSV_Injection
    """
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype != object and not pd.api.types.is_string_dtype(out[col]):
            continue
        values = out[col]
        try:
            candidates = values.str.startswith(FORMULA_STARTS, na=False).astype(bool)
        except AttributeError:  # an object column without text (e.g. all booleans)
            continue
        if not candidates.any():
            continue
        risky = candidates & ~values.map(
            lambda v: not isinstance(v, str) or _is_number_text(v)).astype(bool)
        if risky.any():
            out[col] = values.where(~risky, "'" + values.astype(str))
    names = [f"'{c}" if isinstance(c, str) and c.startswith(FORMULA_STARTS)
             and not _is_number_text(c) else c for c in out.columns]
    out.columns = pd.Index(names)
    return out


def write_csv(frame: pd.DataFrame, path: str | Path, digits: int | None = SIG_DIGITS) -> Path:
    """Write ``frame`` as CSV atomically, floats rounded to ``digits`` significant digits.

    Pass ``digits=None`` to keep full precision (intermediate data between stages). Text
    cells (and column names) that a spreadsheet would run as a formula are written with a
    leading apostrophe (:func:`neutralise_formulas`); numbers are never changed.
    """
    data = tidy_for_output(frame, digits) if digits is not None else frame
    data = neutralise_formulas(data)
    with atomic_open(path) as fh:
        data.to_csv(fh, index=False, lineterminator="\n")
    return Path(path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _round_tree(obj: Any, digits: int) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _round_tree(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_round_tree(v, digits) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(round_sig(np.array([obj]), digits)[0])
    return obj


def write_json(data: Mapping[str, Any], path: str | Path, digits: int = SIG_DIGITS) -> Path:
    """Write ``data`` as sorted, indented JSON atomically, floats rounded."""
    with atomic_open(path) as fh:
        json.dump(_round_tree(data, digits), fh, indent=2, sort_keys=True, default=_json_default)
        fh.write("\n")
    return Path(path)
