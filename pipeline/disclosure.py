"""Secondary (complementary) suppression: a blanked count must not be derivable.

A count below ``report.min_cell`` is blanked where the aggregate is made (primary
suppression, :func:`pipeline.describe.suppress_counts`). When the table's total, or the
total of one of its groups, is published too (in the table or anywhere in the reports),
a single blanked count is that total minus the others: 3 = 377 - 374. This module holds
the one rule that decides which further counts are blanked so that no blanked count, and
no total of blanked counts below ``min_cell``, can be worked out from what is shown.

The rule
--------
A *margin* is a set of cells whose sum is published (or follows from what is published):
the bars of a bar chart whose total number of clients is printed, the rows of a
frequency table with its total, the parts of a row that add up to another column of it.
Within every margin, after suppression,

* either no cell is suppressed,
* or at least two cells are suppressed **and** the suppressed cells add up to at least
  ``min_cell``.

With one suppressed cell the reader gets it by subtraction. With two or more, the reader
gets their sum only; the sum condition makes that sum itself a group of at least
``min_cell`` (and a mean over the suppressed cells, which a published pooled mean can
give away, a mean over at least ``min_cell``).

Where a margin breaks the rule, its unsuppressed cells with a count above 0 are added one
at a time, smallest count first (ties: the cell that comes first in the table), until it
holds; margins are checked again until none changes, since a cell added for one margin
can sit in another. A zero is never added: it discloses nobody and adds nothing to the
sum. When every cell of a margin above 0 is suppressed and the rule still fails, the
margin's total itself is below ``min_cell`` (or one cell holds it all); nothing inside the
table can protect it, and :func:`unprotected` names such margins (the total must then not
be published, which is its publisher's job: the total's own primary suppression).

This is the threshold rule with secondary cell suppression for frequency tables
(Hundepool, A., Domingo-Ferrer, J., Franconi, L., Giessing, S., Schulte Nordholt, E.,
Spicer, K. & de Wolf, P.-P. (2012). *Statistical Disclosure Control*. Wiley, chapter 5,
"Frequency tables", and chapter 4 on secondary cell suppression). R's ``sdcTable`` does
the same with
``primarySuppression(type = "freq", maxN = min_cell - 1)`` and
``protectTable(method = "SIMPLEHEURISTIC")``; its heuristics choose the secondary cells
by their own cost, so the cells chosen can differ where several choices protect. For a
table with one margin (a one-way table and its total: every table this project
publishes) the rule is exact: the reader learns nothing about the suppressed cells beyond
their sum. For overlapping margins (a two-way table with row and column totals) it is the
usual per-margin check, not a full linear-programming audit of the cells' bounds.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import pandas as pd

#: A cell of a table: (row position, count column).
Cell = tuple[int, str]


def _breaks_rule(cells: Sequence[tuple[int, int]], counts: np.ndarray,
                 suppressed: np.ndarray, min_cell: int) -> bool:
    """Whether the margin ``cells`` breaks the rule (see the module's docstring)."""
    hidden = [counts[r, c] for r, c in cells if suppressed[r, c]]
    return bool(hidden) and (len(hidden) < 2 or float(sum(hidden)) < min_cell)


def _positions(frame: pd.DataFrame,
               margins: Sequence[Sequence[Cell]]) -> list[list[tuple[int, int]]]:
    """Margins as (row, column) positions in ``frame``."""
    column = {name: i for i, name in enumerate(frame.columns)}
    return [[(row, column[name]) for row, name in cells] for cells in margins]


def protect(counts: pd.DataFrame, primary: pd.DataFrame, margins: Sequence[Sequence[Cell]],
            min_cell: int) -> pd.DataFrame:
    """The cells to suppress, primary and secondary, so that no margin breaks the rule.

    Parameters
    ----------
    counts
        The table's counts (unsuppressed, whole numbers); the columns that margins name.
    primary
        Same shape and columns: ``True`` where a count is already suppressed.
    margins
        Each margin is the list of cells whose sum is published (see :func:`within` and
        :func:`across` to build them).
    min_cell
        ``report.min_cell``.

    Returns
    -------
    DataFrame
        ``primary`` with the secondary suppressions added (``True`` = suppressed).

    Examples
    --------
    Bars 2, 40, 31, 7 of 80 clients with the 2 suppressed: the 7 is suppressed too
    (2 + 7 = 9 >= 5; the reader learns 9, not the 2).
    """
    values = counts.to_numpy(dtype=float)
    suppressed = primary.to_numpy(dtype=bool).copy()
    cells_of = _positions(counts, margins)
    changed = True
    while changed:
        changed = False
        for cells in cells_of:
            while _breaks_rule(cells, values, suppressed, min_cell):
                free = [(values[r, c], i, (r, c)) for i, (r, c) in enumerate(cells)
                        if not suppressed[r, c] and values[r, c] > 0]
                if not free:
                    break   # the margin's total is itself small: see unprotected()
                _, _, (row, col) = min(free)
                suppressed[row, col] = True
                changed = True
    return pd.DataFrame(suppressed, index=primary.index, columns=primary.columns)


def unprotected(counts: pd.DataFrame, suppressed: pd.DataFrame,
                margins: Sequence[Sequence[Cell]], min_cell: int) -> list[int]:
    """Positions (in ``margins``) of the margins that still break the rule."""
    values, hidden = counts.to_numpy(dtype=float), suppressed.to_numpy(dtype=bool)
    return [i for i, cells in enumerate(_positions(counts, margins))
            if _breaks_rule(cells, values, hidden, min_cell)]


def within(frame: pd.DataFrame, column: str, by: Sequence[str] = ()) -> list[list[Cell]]:
    """Margins of one count column over rows: all rows (``by`` empty) or each group of rows
    with equal values of ``by`` (e.g. the bins of each variable) adds up to a published
    total."""
    if frame.empty:   # (no episodes): no margin; pandas' row-wise agg of no rows is a frame
        return []
    positions = pd.Series(np.arange(len(frame)), index=frame.index)
    if not by:
        return [[(int(p), column) for p in positions]] if len(frame) else []
    groups: dict[Hashable, list[Cell]] = {}
    keys = frame[list(by)].astype(str).agg("\x1f".join, axis=1)
    for key, p in zip(keys, positions, strict=True):
        groups.setdefault(key, []).append((int(p), column))
    return list(groups.values())


def across(frame: pd.DataFrame, parts: Sequence[str]) -> list[list[Cell]]:
    """Margins within each row: the columns ``parts`` add up to a column published beside
    them (e.g. repaired + unrepaired + censored = episodes)."""
    return [[(p, c) for c in parts] for p in range(len(frame))]
