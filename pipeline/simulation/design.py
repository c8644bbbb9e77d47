"""The session skeleton of a study design.

R equivalent: the design part of ``simr::extend`` / ``lme4::simulate`` on a new data
frame (``expand.grid`` of therapists, clients and sessions).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import SettingsError


@dataclass(frozen=True)
class StudyDesign:
    """A planned study.

    Attributes
    ----------
    therapists
        Number of therapists (at least 1).
    clients_per_therapist
        Clients each therapist sees (exactly; a planning design is balanced).
    sessions
        Planned sessions per client (at least 1).
    attendance
        Probability that a planned session after the first is attended (session 1
        always is).
    p_alliance_form, p_outcome_form
        Probability that an attended session has an alliance / outcome form.
    name
        Label, e.g. ``20x8x10``.
    """

    therapists: int
    clients_per_therapist: int
    sessions: int
    attendance: float = 1.0
    p_alliance_form: float = 1.0
    p_outcome_form: float = 1.0
    name: str = ""

    @property
    def label(self) -> str:
        """``name`` or ``<therapists>x<clients_per_therapist>x<sessions>``."""
        return self.name or f"{self.therapists}x{self.clients_per_therapist}x{self.sessions}"


_DESIGN_KEYS = {"therapists", "clients_per_therapist", "sessions", "attendance",
                "p_alliance_form", "p_outcome_form", "name"}


def design_from_settings(block: Mapping[str, Any], where: str) -> StudyDesign:
    """Read one design from settings, naming ``where`` (e.g. ``power.designs[2]``) on error."""
    if not isinstance(block, Mapping):
        raise SettingsError(f"params.yaml: {where} must be a mapping with therapists, "
                            "clients_per_therapist and sessions.")
    unknown = sorted(set(block) - _DESIGN_KEYS)
    if unknown:
        raise SettingsError(f"params.yaml: {where}.{unknown[0]} is not a design setting "
                            f"(known: {', '.join(sorted(_DESIGN_KEYS))}).")
    values: dict[str, Any] = {}
    for key in ("therapists", "clients_per_therapist", "sessions"):
        value = block.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise SettingsError(f"params.yaml: {where}.{key} is {value!r}; give a whole "
                                "number of at least 1.")
        values[key] = value
    for key in ("attendance", "p_alliance_form", "p_outcome_form"):
        value = block.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
            raise SettingsError(f"params.yaml: {where}.{key} is {value!r}; give a "
                                "probability above 0 and at most 1.")
        values[key] = float(value)
    return StudyDesign(name=str(block.get("name", "")), **values)


def session_rows(design: StudyDesign, rng: np.random.Generator) -> pd.DataFrame:
    """Attended sessions of a design, with which forms were returned.

    Returns
    -------
    pandas.DataFrame
        ``therapist_id``, ``client_id``, ``session``, ``has_alliance``, ``has_outcome``;
        sorted by therapist, client and session. Ids are ``T01``..., ``C0001``... (client
        ids unique across therapists).
    """
    n_t, n_per, n_s = design.therapists, design.clients_per_therapist, design.sessions
    n_c = n_t * n_per
    therapists = np.array([f"T{i + 1:0{max(2, len(str(n_t)))}d}" for i in range(n_t)])
    clients = np.array([f"C{i + 1:0{max(4, len(str(n_c)))}d}" for i in range(n_c)])
    client_t = np.repeat(np.arange(n_t), n_per)
    row_c = np.repeat(np.arange(n_c), n_s)
    session = np.tile(np.arange(1, n_s + 1), n_c)
    attended = (session == 1) | (rng.random(len(session)) < design.attendance)
    row_c, session = row_c[attended], session[attended]
    n = len(session)
    return pd.DataFrame({
        "therapist_id": therapists[client_t[row_c]],
        "client_id": clients[row_c],
        "session": session,
        "has_alliance": rng.random(n) < design.p_alliance_form,
        "has_outcome": rng.random(n) < design.p_outcome_form,
    })


@dataclass(frozen=True)
class Caseload:
    """A naturalistic caseload, as in routine-practice data (the shipped data set).

    Attributes
    ----------
    therapists
        Number of therapists.
    clients_per_therapist
        Poisson mean of the clients a therapist sees (at least ``min_clients`` each).
    sessions_mean, sessions_min, sessions_max
        Planned sessions per client: Poisson with mean ``sessions_mean``, clipped to
        ``[sessions_min, sessions_max]``.
    attendance
        Probability that a planned session after the first is attended.
    min_clients
        Fewest clients a therapist has.
    """

    therapists: int
    clients_per_therapist: float
    sessions_mean: float
    sessions_min: int
    sessions_max: int
    attendance: float = 1.0
    min_clients: int = 3


def caseload_from_settings(block: Mapping[str, Any]) -> Caseload:
    """The caseload of a ``simulate:``-shaped block (types are checked by the schema)."""
    return Caseload(
        therapists=int(block["n_therapists"]),
        clients_per_therapist=float(block["clients_per_therapist"]),
        sessions_mean=float(block["sessions_mean"]),
        sessions_min=int(block["sessions_min"]),
        sessions_max=int(block["sessions_max"]),
        attendance=float(block["p_attend"]),
    )


def _ids(prefix: str, n: int, min_width: int) -> np.ndarray:
    return np.array([f"{prefix}{i + 1:0{max(min_width, len(str(n)))}d}" for i in range(n)])


def caseload_clients(caseload: Caseload, rng: np.random.Generator) -> pd.DataFrame:
    """Therapists, their clients and each client's planned sessions.

    Returns
    -------
    pandas.DataFrame
        One row per client: ``therapist_id``, ``client_id`` (``T01``..., ``C0001``...,
        client ids unique across therapists) and ``planned`` (planned sessions).
    """
    n_t = caseload.therapists
    therapists = _ids("T", n_t, 2)
    n_c_t = np.maximum(caseload.min_clients, rng.poisson(caseload.clients_per_therapist, n_t))
    n_c = int(n_c_t.sum())
    planned = np.clip(rng.poisson(caseload.sessions_mean, n_c), caseload.sessions_min,
                      caseload.sessions_max)
    return pd.DataFrame({"therapist_id": np.repeat(therapists, n_c_t),
                         "client_id": _ids("C", n_c, 4), "planned": planned})


def attended_sessions(clients: pd.DataFrame, attendance: float,
                      rng: np.random.Generator) -> pd.DataFrame:
    """Attended sessions of the planned ones (session 1 always, later ones with
    probability ``attendance``).

    Returns
    -------
    pandas.DataFrame
        ``therapist_id``, ``client_id``, ``session``, ``planned``; in client and session
        order, numbered from 0.
    """
    planned = clients["planned"].to_numpy(dtype=int)
    row_c = np.repeat(np.arange(len(clients)), planned)
    session = np.concatenate([np.arange(1, p + 1) for p in planned]) if len(planned) else \
        np.zeros(0, dtype=int)
    attended = (session == 1) | (rng.random(len(session)) < attendance)
    row_c, session = row_c[attended], session[attended]
    return pd.DataFrame({
        "therapist_id": clients["therapist_id"].to_numpy()[row_c],
        "client_id": clients["client_id"].to_numpy()[row_c],
        "session": session,
        "planned": planned[row_c],
    })
