"""Goal, task and bond at therapist, client and session level.

The alliance process: for subscale ``k`` (goal, task, bond) of client ``c`` of therapist
``t`` at session ``s``

    a_ck(s) = mean_k + growth * (s - 1) + u_tk + u_ck + e_csk

with therapist, client and session effects normal with SDs ``therapist_sd``,
``client_sd``, ``session_sd`` and correlation ``client_corr`` between subscales at the
therapist and client levels and ``session_corr`` at the session level (the settings of
``simulate.alliance`` in params.yaml). At score level the subscales are these latent
values; at item level each item is the latent value of its subscale plus ``N(0, item_sd)``,
rounded and clipped to the instrument's answer range, written in the direction it is
answered (reversed items mirrored), and scored by :func:`pipeline.score.score_alliance`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import SettingsError
from pipeline.instruments import Instrument

SUBSCALES: tuple[str, ...] = ("goal", "task", "bond")


@dataclass(frozen=True)
class AllianceProcess:
    """Parameters of the alliance process (see the module docstring)."""

    mean: tuple[float, float, float]
    growth: float
    therapist_sd: float
    client_sd: float
    session_sd: float
    client_corr: float
    session_corr: float
    item_sd: float = 0.5


def process_from_settings(block: Mapping[str, Any], where: str) -> AllianceProcess:
    """Read an alliance process (``simulate.alliance``-shaped block) from settings."""
    try:
        mean = tuple(float(m) for m in block["mean"])
        if len(mean) != 3:
            raise ValueError
        values = {k: float(block[k]) for k in ("growth", "therapist_sd", "client_sd",
                                               "session_sd", "client_corr", "session_corr")}
        item_sd = float(block.get("item_sd", 0.5))
    except (KeyError, TypeError, ValueError) as exc:
        raise SettingsError(
            f"params.yaml: {where} needs mean (three numbers: goal, task, bond), growth, "
            "therapist_sd, client_sd, session_sd, client_corr and session_corr as numbers "
            f"({type(exc).__name__}: {exc}).") from None
    for key in ("therapist_sd", "client_sd", "session_sd"):
        if values[key] < 0:
            raise SettingsError(f"params.yaml: {where}.{key} is negative; an SD is >= 0.")
    for key in ("client_corr", "session_corr"):
        if not -0.5 < values[key] < 1:
            raise SettingsError(f"params.yaml: {where}.{key} = {values[key]} must lie in "
                                "(-0.5, 1) for three equally correlated subscales.")
    return AllianceProcess(mean=(mean[0], mean[1], mean[2]), item_sd=item_sd, **values)


def _equicorrelated(sd: float, corr: float) -> np.ndarray:
    c = np.full((3, 3), corr)
    np.fill_diagonal(c, 1.0)
    return c * sd**2


@dataclass(frozen=True)
class LatentAlliance:
    """The parts of the latent goal, task and bond of each row (rows x 3 arrays).

    ``trend`` = ``mean_k + growth * (s - 1)``; ``therapist`` and ``client`` = the row's
    therapist and client effects; ``session`` = the session deviation.
    """

    trend: np.ndarray
    therapist: np.ndarray
    client: np.ndarray
    session: np.ndarray

    @property
    def latent(self) -> np.ndarray:
        """The latent scores, ``trend + therapist + client + session``."""
        return self.trend + self.therapist + self.client + self.session


def latent_parts(rows: pd.DataFrame, process: AllianceProcess,
                 rng: np.random.Generator) -> LatentAlliance:
    """The parts of the latent alliance of each row (``therapist_id``, ``client_id``,
    ``session``).

    Therapists and clients draw their effects in sorted id order, so the same design and
    seed give the same values.
    """
    t_codes, t_index = np.unique(rows["therapist_id"].to_numpy(), return_inverse=True)
    c_codes, c_index = np.unique(rows["client_id"].to_numpy(), return_inverse=True)
    zero = np.zeros(3)
    u_t = rng.multivariate_normal(zero, _equicorrelated(process.therapist_sd,
                                                        process.client_corr), len(t_codes))
    u_c = rng.multivariate_normal(zero, _equicorrelated(process.client_sd,
                                                        process.client_corr), len(c_codes))
    e = rng.multivariate_normal(zero, _equicorrelated(process.session_sd,
                                                      process.session_corr), len(rows))
    time = rows["session"].to_numpy(dtype=float) - 1.0
    trend = np.asarray(process.mean) + process.growth * time[:, None]
    return LatentAlliance(trend=trend, therapist=u_t[t_index], client=u_c[c_index], session=e)


def latent_alliance(rows: pd.DataFrame, process: AllianceProcess,
                    rng: np.random.Generator) -> np.ndarray:
    """Latent goal, task, bond for each row (``therapist_id``, ``client_id``, ``session``);
    see :func:`latent_parts`."""
    return latent_parts(rows, process, rng).latent


def alliance_items(latent: np.ndarray, instrument: Instrument, item_sd: float,
                   rng: np.random.Generator) -> pd.DataFrame:
    """Item answers of an alliance instrument from latent subscale scores.

    Each item is its subscale's latent score plus ``N(0, item_sd)``, rounded and clipped
    to the answer range; reversed items are written as answered (mirrored), so scoring
    with the instrument's key recovers the keyed direction.
    """
    lo, hi = float(instrument.item_min), float(instrument.item_max)
    items = np.empty((len(latent), instrument.n_items))
    for k, name in enumerate(SUBSCALES):
        for item in instrument.subscales[name]:
            keyed = np.clip(np.rint(latent[:, k] + rng.normal(0.0, item_sd, len(latent))),
                            lo, hi)
            items[:, item - 1] = lo + hi - keyed if item in instrument.reversed else keyed
    return pd.DataFrame(items, columns=instrument.item_columns)


def alliance_scores(rows: pd.DataFrame, process: AllianceProcess, rng: np.random.Generator,
                    instrument: Instrument | None = None) -> pd.DataFrame:
    """Goal, task and bond for each row, as latent scores or scored from simulated items.

    Parameters
    ----------
    rows
        Session rows (``therapist_id``, ``client_id``, ``session``).
    process
        The alliance process.
    rng
        Random generator.
    instrument
        ``None``: the subscales are the latent scores. An alliance instrument: items are
        simulated and scored with :func:`pipeline.score.score_alliance` (item-mean metric).

    Returns
    -------
    pandas.DataFrame
        ``rows`` with ``goal``, ``task`` and ``bond`` added (same index).
    """
    latent = latent_alliance(rows, process, rng)
    out = rows.copy()
    if instrument is None:
        for k, name in enumerate(SUBSCALES):
            out[name] = latent[:, k]
        return out
    from pipeline.score import score_alliance

    items = alliance_items(latent, instrument, process.item_sd, rng)
    items.index = rows.index
    form = pd.concat([rows[["client_id", "therapist_id", "session"]], items], axis=1)
    scored, _ = score_alliance(form, instrument)
    for name in SUBSCALES:
        out[name] = scored[name].to_numpy(dtype=float)
    return out
