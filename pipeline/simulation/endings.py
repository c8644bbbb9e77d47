"""Unplanned endings driven by the alliance, and data-collection cut-offs
(``simulate.endings``).

After each attended session before the planned last one, a client ends therapy
unplanned with probability ``logistic(intercept + within * w + between * b + time *
(s - 1))``, where ``w`` is the session's observed total alliance (the latent total when
no form was scored) minus the client's true expected total at that session, and ``b`` is
the client's true mean total minus the population mean. Sessions after an unplanned
ending are not attended. A share ``p_ongoing`` of clients is still in therapy when the
data are collected: their series stops after a random planned session (ending
``ongoing``); the others end ``planned``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

ENDINGS: tuple[str, ...] = ("planned", "unplanned", "ongoing")


@dataclass(frozen=True)
class Endings:
    """Which session rows remain, and how each client's therapy ended.

    Attributes
    ----------
    kept
        Per row: the session took place (not after an ending or the cut-off).
    ending
        Per client (order of the clients table): one of :data:`ENDINGS`.
    """

    kept: np.ndarray
    ending: np.ndarray


def draw_endings(cfg: Mapping[str, Any], clients: pd.DataFrame, rows: pd.DataFrame,
                 within: np.ndarray, between: np.ndarray,
                 rng: np.random.Generator) -> Endings:
    """Draw unplanned endings and cut-offs.

    Parameters
    ----------
    cfg
        The ``simulate.endings`` settings (``intercept``, ``within``, ``between``,
        optionally ``time`` and ``p_ongoing``).
    clients
        One row per client: ``client_id``, ``planned``.
    rows
        Attended session rows: ``client_id``, ``session``.
    within
        Per row: ``w`` of the module docstring.
    between
        Per row: ``b`` of the module docstring (constant within a client).
    rng
        Random generator.
    """
    n_c = len(clients)
    planned = clients["planned"].to_numpy(dtype=int)
    row_c = pd.Index(clients["client_id"].to_numpy()).get_indexer(rows["client_id"].to_numpy())
    session = rows["session"].to_numpy(dtype=int)
    ongoing = rng.random(n_c) < float(cfg.get("p_ongoing", 0.0))
    cut = np.where(ongoing, 1 + np.floor(rng.random(n_c) * planned).astype(int), planned)
    eta = (float(cfg["intercept"]) + float(cfg["within"]) * within
           + float(cfg["between"]) * between + float(cfg.get("time", 0.0)) * (session - 1))
    event = rng.random(len(session)) < 1.0 / (1.0 + np.exp(-eta))
    event &= (session < planned[row_c]) & (session <= cut[row_c])
    never = np.iinfo(np.int64).max
    first = np.full(n_c, never)
    np.minimum.at(first, row_c[event], session[event])
    kept = session <= np.minimum(first, cut)[row_c]
    ending = np.where(first < never, "unplanned", np.where(ongoing, "ongoing", "planned"))
    return Endings(kept=kept, ending=ending)


def endings_truth(cfg: Mapping[str, Any], ending: np.ndarray) -> dict[str, Any]:
    """The ``endings`` section of ``truth.yaml``: the hazard model and the counts."""
    levels, counts = np.unique(ending, return_counts=True)
    return {
        "description": "hazard of ending unplanned after a session: logistic(intercept + "
                       "within * w + between * b + time * (session - 1)); w = observed "
                       "total alliance minus the client's true expected total, b = the "
                       "client's true mean total minus the population mean",
        "coefficients": {k: float(cfg.get(k, 0.0))
                         for k in ("intercept", "within", "between", "time")},
        "counts": {str(k): int(v) for k, v in zip(levels, counts, strict=True)},
    }
