"""Client covariates of a simulated data set (the clients file).

The therapeutic ``approach`` is a therapist's (each therapist one of :data:`APPROACHES`
with equal probability, so all their clients share it); the ``modality`` is a client's
(``video`` with probability :data:`P_VIDEO`, else ``in person``). Neither enters the
outcome: the shipped data's truth has no moderation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

APPROACHES: tuple[str, ...] = ("CBT", "psychodynamic", "humanistic")
P_VIDEO = 0.3


def client_covariates(clients: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """``client_id``, ``approach`` and ``modality`` for the clients of ``clients``.

    Parameters
    ----------
    clients
        One row per client with ``therapist_id`` and ``client_id`` (therapists in order
        of first appearance draw their approach in that order).
    rng
        Random generator.
    """
    therapists = pd.unique(clients["therapist_id"])
    approach = np.asarray(APPROACHES)[rng.integers(0, len(APPROACHES), len(therapists))]
    by_therapist = dict(zip(therapists, approach, strict=True))
    modality = np.where(rng.random(len(clients)) < P_VIDEO, "video", "in person")
    return pd.DataFrame({
        "client_id": clients["client_id"].to_numpy(),
        "approach": clients["therapist_id"].map(by_therapist).to_numpy(),
        "modality": modality,
    })
