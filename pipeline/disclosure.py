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

Linked tables
-------------
A margin may span cells of several tables published together
(:func:`protect_linked`; cells are ``(table, row, column)``). Three kinds arise:

* **A breakdown**: the rows of one table add up to a *cell* of another, not to a fixed
  number (the lengths of the repaired episodes add up to ``n_repaired`` in the prevalence
  table). The cell is a member of the margin: ``parts + [total]``. With the total shown,
  the rule is the parts' own; with it blank, a blank part must stand beside it, or the
  parts' sum gives it back (and a shown total with one blank part gives the part back).
  The sum condition is then met by the total's own size, and what keeps the total hidden
  is its own margin in its own table (e.g. repaired + unrepaired + censored = episodes).
* **A substitution**: the total of a breakdown is itself a part of a margin of its own
  table; the reader can put the breakdown in its place (lengths + unrepaired + censored =
  episodes): a margin of cells of both tables, protected like any other.
* **An identity** (the same count printed in two tables) is a margin of two cells: both
  shown or both blank.

Which cell is blanked next is the same rule over all the linked margins at once (the
smallest shown count above 0 of the margin; ties: the cell listed first), with one
addition: cells passed as ``last`` (the headline table's counts, which the other tables
break down) are chosen only when no other cell of the margin can be. A blank is then
added in the breakdown rather than in the headline wherever either protects.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd

#: A cell of a table: (row position, count column).
Cell = tuple[int, str]
#: A cell of one of several linked tables: (table name, row position, count column).
LinkedCell = tuple[str, int, str]


def _breaks_rule(cells: Sequence[int], counts: np.ndarray, suppressed: np.ndarray,
                 min_cell: int) -> bool:
    """Whether the margin ``cells`` (flat positions) breaks the rule (module docstring)."""
    hidden = [counts[i] for i in cells if suppressed[i]]
    return bool(hidden) and (len(hidden) < 2 or float(sum(hidden)) < min_cell)


class _Flat:
    """The count cells of several tables laid end to end (table order, then row-major)."""

    def __init__(self, counts: Mapping[str, pd.DataFrame]) -> None:
        self.names = list(counts)
        self.offset: dict[str, int] = {}
        self.column: dict[str, dict[str, int]] = {}
        size = 0
        for name, frame in counts.items():
            self.offset[name] = size
            self.column[name] = {c: i for i, c in enumerate(frame.columns)}
            size += frame.size
        self.width = {name: frame.shape[1] for name, frame in counts.items()}

    def position(self, cell: LinkedCell) -> int:
        table, row, col = cell
        return self.offset[table] + row * self.width[table] + self.column[table][col]

    def flatten(self, frames: Mapping[str, pd.DataFrame], dtype: type) -> np.ndarray:
        return np.concatenate([frames[n].to_numpy(dtype=dtype).ravel() for n in self.names]
                              or [np.zeros(0, dtype=dtype)])

    def unflatten(self, values: np.ndarray,
                  like: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        out = {}
        for name in self.names:
            frame = like[name]
            part = values[self.offset[name]:self.offset[name] + frame.size]
            out[name] = pd.DataFrame(part.reshape(frame.shape), index=frame.index,
                                     columns=frame.columns)
        return out


def protect_linked(counts: Mapping[str, pd.DataFrame], primary: Mapping[str, pd.DataFrame],
                   margins: Sequence[Sequence[LinkedCell]], min_cell: int,
                   last: Collection[LinkedCell] = ()) -> dict[str, pd.DataFrame]:
    """:func:`protect` over several tables whose margins may span them (see "Linked
    tables" in the module's docstring).

    Parameters
    ----------
    counts, primary
        Per table name: its counts and its primary suppressions (as for :func:`protect`).
    margins
        Each margin is a list of ``(table, row, column)`` cells (:func:`tag` lifts the
        margins of one table; a breakdown lists its total cell last).
    last
        Cells chosen for secondary suppression only when no other cell of a margin can be.

    Returns
    -------
    dict
        Per table name: ``primary`` with the secondary suppressions added.
    """
    flat = _Flat(counts)
    values = flat.flatten(counts, float)
    suppressed = flat.flatten(primary, bool).copy()
    cells_of = [[flat.position(c) for c in cells] for cells in margins]
    late = {flat.position(c) for c in last}
    changed = True
    while changed:
        changed = False
        for cells in cells_of:
            while _breaks_rule(cells, values, suppressed, min_cell):
                free = [(p in late, values[p], i, p) for i, p in enumerate(cells)
                        if not suppressed[p] and values[p] > 0]
                if not free:
                    break   # the margin's total is itself small: see unprotected()
                suppressed[min(free)[3]] = True
                changed = True
    return flat.unflatten(suppressed, primary)


def unprotected_linked(counts: Mapping[str, pd.DataFrame],
                       suppressed: Mapping[str, pd.DataFrame],
                       margins: Sequence[Sequence[LinkedCell]], min_cell: int) -> list[int]:
    """Positions (in ``margins``) of the linked margins that still break the rule."""
    flat = _Flat(counts)
    values, hidden = flat.flatten(counts, float), flat.flatten(suppressed, bool)
    return [i for i, cells in enumerate(margins)
            if _breaks_rule([flat.position(c) for c in cells], values, hidden, min_cell)]


def tag(table: str, margins: Sequence[Sequence[Cell]]) -> list[list[LinkedCell]]:
    """The margins of one table as linked margins (cells named by ``table``)."""
    return [[(table, row, col) for row, col in cells] for cells in margins]


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
    return protect_linked({"": counts}, {"": primary}, tag("", margins), min_cell)[""].astype(
        bool)


def unprotected(counts: pd.DataFrame, suppressed: pd.DataFrame,
                margins: Sequence[Sequence[Cell]], min_cell: int) -> list[int]:
    """Positions (in ``margins``) of the margins that still break the rule."""
    return unprotected_linked({"": counts}, {"": suppressed}, tag("", margins), min_cell)


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
