"""Item answers of simulated questionnaires, through the instrument registry.

Alliance items come from :func:`pipeline.simulation.alliance.alliance_items`. This module
adds what a returned form looks like in practice and the outcome's items:

* :func:`blank_items` -- items left blank at random;
* :func:`reportable_scores` -- every score an outcome instrument can report, with the
  raw item sum it comes from, found by scoring one form per raw sum with the project's
  own :func:`pipeline.score.score_outcome` (so a conversion table, multiplier or
  direction in the instrument's YAML is honoured, nothing is copied here);
* :func:`outcome_items` -- a latent outcome rounded to the nearest reportable score,
  whose raw sum is split at random into items (each item has ``item_max - item_min``
  unit slots; the first slots of a random order are filled).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.errors import SettingsError
from pipeline.instruments import Instrument


def blank_items(items: pd.DataFrame, p_blank: float, rng: np.random.Generator) -> pd.DataFrame:
    """A copy of ``items`` with each cell blank (NaN) with probability ``p_blank``."""
    values = items.to_numpy(dtype=float, copy=True)
    values[rng.random(values.shape) < p_blank] = np.nan
    return pd.DataFrame(values, columns=items.columns, index=items.index)


def _fill(raw: np.ndarray, n_items: int, lo: int, hi: int, order: np.ndarray) -> np.ndarray:
    """Items whose slots ranked below ``raw - n_items * lo`` in ``order`` are filled."""
    width = hi - lo
    filled = order < (raw - n_items * lo)[:, None]
    return lo + filled.reshape(len(raw), n_items, width).sum(axis=2)


def split_raw_sum(raw: np.ndarray, n_items: int, lo: int, hi: int,
                  rng: np.random.Generator) -> np.ndarray:
    """Split raw sums into ``n_items`` whole items in ``[lo, hi]``, uniformly over slots."""
    order = np.argsort(rng.random((len(raw), n_items * (hi - lo))), axis=1)
    return _fill(np.asarray(raw, dtype=int), n_items, lo, hi, order)


def as_answered(keyed: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Keyed item values written as answered: reversed items mirrored in the answer range."""
    out = np.array(keyed, dtype=float, copy=True)
    lo, hi = float(instrument.item_min), float(instrument.item_max)
    for item in instrument.reversed:
        out[:, item - 1] = lo + hi - out[:, item - 1]
    return out


def _whole_range(instrument: Instrument) -> tuple[int, int]:
    lo, hi = float(instrument.item_min), float(instrument.item_max)
    if lo != int(lo) or hi != int(hi):
        raise SettingsError(f"instrument {instrument.key}: simulating items needs whole "
                            f"answer codes; its range is {lo:g}-{hi:g}.")
    return int(lo), int(hi)


def reportable_scores(instrument: Instrument) -> tuple[np.ndarray, np.ndarray]:
    """Keyed raw item sums of an outcome instrument and the score each is reported as.

    Returns
    -------
    raw, score : numpy.ndarray
        Every raw sum from ``n_items * item_min`` to ``n_items * item_max`` and its score
        by :func:`pipeline.score.score_outcome` (higher = better).
    """
    from pipeline.score import OUTCOME_COLUMN, score_outcome

    lo, hi = _whole_range(instrument)
    n = instrument.n_items
    raw = np.arange(n * lo, n * hi + 1)
    # Slots in their natural order: the first items fill first (any split has the sum).
    order = np.tile(np.arange(n * (hi - lo)), (len(raw), 1))
    forms = pd.DataFrame(as_answered(_fill(raw, n, lo, hi, order), instrument),
                         columns=instrument.item_columns)
    scored, _ = score_outcome(forms, instrument)
    return raw, scored[OUTCOME_COLUMN].to_numpy(dtype=float)


def outcome_items(latent: np.ndarray, instrument: Instrument,
                  rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """Items of an outcome form whose score is the reportable score nearest ``latent``.

    Returns
    -------
    items : pandas.DataFrame
        The instrument's item columns (whole answers, reversed items as answered), one
        row per value of ``latent``.
    score : numpy.ndarray
        The score the items are reported as (the nearest reportable score; on ties the
        one from the smaller raw sum).
    """
    raw_values, scores = reportable_scores(instrument)
    nearest = np.abs(np.asarray(latent, dtype=float)[:, None] - scores[None, :]).argmin(axis=1)
    lo, hi = _whole_range(instrument)
    keyed = split_raw_sum(raw_values[nearest], instrument.n_items, lo, hi, rng)
    return (pd.DataFrame(as_answered(keyed, instrument), columns=instrument.item_columns),
            scores[nearest])
