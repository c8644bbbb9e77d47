"""Windows of sessions in a flat table of many series, and exact sums over them.

The rupture rules look, for every observed session, at a few sessions around it in the
same *segment* (:mod:`pipeline.ruptures.detect`, rule 2). Here every series is one block
of a flat array (rows sorted by series, then session), and each session's window is a
set of row positions, so the rules run over all series at once instead of one series at a
time.

The sums over windows are bit for bit those numpy gives for each window on its own
(``values[window].sum()``, hence ``.mean()``): numpy adds the elements of one array in a
fixed order (pairwise from eight elements on), and a row-wise ``numpy.add.reduce`` over a
C-contiguous ``(rows, length)`` block adds each row in that same order. Windows are
therefore summed in blocks of equal length. This keeps the thresholds and episodes
byte-identical to those computed one series at a time.
"""

from __future__ import annotations

import numpy as np


def segment_bounds(series_id: np.ndarray, sessions: np.ndarray,
                   max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """First row and one past the last row of each row's segment.

    Parameters
    ----------
    series_id
        Series of each row (rows of one series adjacent, sessions increasing in it).
    sessions
        Session numbers.
    max_gap
        Missed sessions bridged: a new segment starts at a new series or after a jump of
        more than ``max_gap + 1`` session numbers.

    Returns
    -------
    start, end : numpy.ndarray
        Row positions (``end`` exclusive), one per row.
    """
    n = len(sessions)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    s = np.asarray(sessions, dtype=np.int64)
    sid = np.asarray(series_id)
    new = np.ones(n, dtype=bool)
    new[1:] = (sid[1:] != sid[:-1]) | (np.diff(s) > max_gap + 1)
    first = np.flatnonzero(new)
    seg = np.cumsum(new) - 1
    stops = np.append(first[1:], n)
    return first[seg], stops[seg]


def gather_sums(values: np.ndarray, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Sum of ``values`` over each row's valid positions, in column order.

    Parameters
    ----------
    values
        Flat float array.
    index
        ``(rows, width)`` positions into ``values``.
    valid
        ``(rows, width)``: which positions belong to the row's window.

    Returns
    -------
    numpy.ndarray
        One sum per row, equal to ``values[index[r][valid[r]]].sum()`` (0 for an empty
        window).
    """
    rows = index.shape[0]
    out = np.zeros(rows, dtype=float)
    if rows == 0:
        return out
    counts = valid.sum(axis=1)
    # Valid positions first, in their order (a stable sort of "not valid").
    order = np.argsort(~valid, axis=1, kind="stable")
    compact = np.take_along_axis(index, order, axis=1)
    for length in np.unique(counts):
        if length == 0:
            continue
        pick = counts == length
        out[pick] = np.add.reduce(values[compact[pick, :length]], axis=1)
    return out


def range_sums(values: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Sum of ``values[start:stop]`` for each pair, as numpy sums each slice on its own.

    Parameters
    ----------
    values
        Flat float array.
    starts, stops
        Slice bounds (``stops >= starts``).

    Returns
    -------
    numpy.ndarray
        One sum per slice (0 for an empty slice).
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(stops, dtype=np.int64) - starts
    out = np.zeros(len(starts), dtype=float)
    for length in np.unique(lengths):
        if length <= 0:
            continue
        pick = lengths == length
        block = starts[pick][:, None] + np.arange(length)
        out[pick] = np.add.reduce(values[block], axis=1)
    return out
