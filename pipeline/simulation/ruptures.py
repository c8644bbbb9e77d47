"""Rupture-repair episodes injected into a simulated alliance (``simulate.ruptures``).

Each client has one episode with probability ``p_client`` (clients with too few planned
sessions have none). At the rupture session ``r`` (uniform over the planned sessions from
2 on) the latent goal, task and bond all drop by ``depth_sd`` times the within-client SD
of the *total* score (:func:`sigma_total`), so the observed total drops by ``depth_sd``
within-client SDs. With probability ``p_repair`` the episode is repaired: the drop lasts
``length`` sessions (drawn from ``length_values`` with ``length_probs``) and the alliance
is back at its usual level at the repair session ``r + length``, which is a planned
session; an unrepaired drop lasts to the end of therapy (at least one planned session
follows it). The outcome gains ``repair_effect`` points from the repair session on, and
``unrepaired_effect`` points from the rupture session on in unrepaired episodes.

The episodes are the truth that ``pipeline/ruptures/recovery.py`` scores detection
against (``truth.yaml``: ``ruptures.episodes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.simulation.alliance import AllianceProcess

EPISODE_COLUMNS: tuple[str, ...] = ("client_id", "rupture_session", "repaired", "length",
                                    "repair_session", "depth_points")
"""Columns of :attr:`Ruptures.episodes` (one row per injected episode)."""


@dataclass(frozen=True)
class Ruptures:
    """The injected episodes and their effect on each session row.

    Attributes
    ----------
    drop
        Per row: points subtracted from the latent goal, task and bond.
    outcome_shift
        Per row: points added to the outcome.
    episodes
        One row per episode, columns :data:`EPISODE_COLUMNS`.
    """

    drop: np.ndarray
    outcome_shift: np.ndarray
    episodes: pd.DataFrame


def sigma_total(process: AllianceProcess, n_items: int = 12) -> float:
    """Within-client SD of the scored total alliance implied by the alliance process.

    ``sqrt(session_sd^2 (1 + 2 session_corr) / 3 + (item_sd^2 + 1/12) / n_items)``: the
    session deviation of the mean of three equicorrelated subscales plus the item noise
    (with the variance of rounding to whole answers, 1/12) averaged over the ``n_items``
    items of the total (12 for the WAI-SR). Clipping at the ends of the answer scale is
    ignored, so this is approximate.
    """
    sd, corr, item = process.session_sd, process.session_corr, process.item_sd
    return float(np.sqrt(sd**2 * (1 + 2 * corr) / 3 + (item**2 + 1 / 12) / n_items))


def inject_ruptures(cfg: Mapping[str, Any], clients: pd.DataFrame, rows: pd.DataFrame,
                    drop_points: float, rng: np.random.Generator) -> Ruptures:
    """Draw one episode per client or none, and its effect on the session rows.

    Parameters
    ----------
    cfg
        The ``simulate.ruptures`` settings.
    clients
        One row per client: ``client_id``, ``planned``.
    rows
        Session rows: ``client_id``, ``session``.
    drop_points
        Depth of a drop in points of the latent subscales.
    rng
        Random generator (draws per client, in the order of ``clients``).
    """
    n_c = len(clients)
    planned = clients["planned"].to_numpy(dtype=int)
    ids = clients["client_id"].to_numpy()
    values = np.asarray(cfg.get("length_values", [1]), dtype=int)
    probs = np.asarray(cfg.get("length_probs", [1.0] * len(values)), dtype=float)
    has = rng.random(n_c) < float(cfg["p_client"])
    repaired = rng.random(n_c) < float(cfg["p_repair"])
    length = rng.choice(values, size=n_c, p=probs / probs.sum())
    u = rng.random(n_c)
    last = np.where(repaired, planned - length, planned - 1)
    has &= last >= 2
    start = 2 + np.floor(u * np.maximum(last - 1, 1)).astype(int)
    row_c = pd.Index(ids).get_indexer(rows["client_id"].to_numpy())
    session = rows["session"].to_numpy(dtype=int)
    r = start[row_c]
    end = np.where(repaired, start + length, np.iinfo(np.int64).max)[row_c]
    in_drop = has[row_c] & (session >= r) & (session < end)
    shift = np.zeros(len(rows))
    shift[has[row_c] & repaired[row_c] & (session >= end)] = float(cfg.get("repair_effect", 0.0))
    shift[has[row_c] & ~repaired[row_c] & (session >= r)] = float(
        cfg.get("unrepaired_effect", 0.0))
    idx = np.flatnonzero(has)
    episodes = pd.DataFrame({
        "client_id": ids[idx],
        "rupture_session": start[idx],
        "repaired": repaired[idx],
        "length": np.where(repaired[idx], length[idx], np.nan),
        "repair_session": np.where(repaired[idx], start[idx] + length[idx], np.nan),
        "depth_points": float(drop_points),
    }, columns=list(EPISODE_COLUMNS))
    return Ruptures(drop=np.where(in_drop, float(drop_points), 0.0), outcome_shift=shift,
                    episodes=episodes)


def no_ruptures(n_rows: int) -> Ruptures:
    """No episode: no drop, no outcome shift, an empty episode table."""
    return Ruptures(drop=np.zeros(n_rows), outcome_shift=np.zeros(n_rows),
                    episodes=pd.DataFrame(columns=list(EPISODE_COLUMNS)))


def rupture_truth(cfg: Mapping[str, Any], sigma: float, episodes: pd.DataFrame) -> dict[str, Any]:
    """The ``ruptures`` section of ``truth.yaml``: settings, counts and every episode."""
    rows = [{
        "client_id": str(rec["client_id"]),
        "rupture_session": int(rec["rupture_session"]),
        "repaired": bool(rec["repaired"]),
        "repair_session": (None if pd.isna(rec["repair_session"])
                           else int(rec["repair_session"])),
    } for rec in episodes.to_dict("records")]
    return {
        "description": "injected rupture-repair episodes (one per client at most); the "
                       "latent goal, task and bond all drop by drop_points from the rupture "
                       "session until the repair session (to the end when unrepaired)",
        "sigma_total_within": sigma,
        "drop_points": float(cfg["depth_sd"]) * sigma,
        "repair_effect": float(cfg.get("repair_effect", 0.0)),
        "unrepaired_effect": float(cfg.get("unrepaired_effect", 0.0)),
        "counts": {"episodes": len(episodes),
                   "repaired": int(episodes["repaired"].astype(bool).sum()),
                   "unrepaired": int((~episodes["repaired"].astype(bool)).sum())},
        "episodes": rows,
    }
