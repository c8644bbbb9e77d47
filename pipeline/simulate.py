"""Seeded simulator of session-level alliance and wellbeing data, in the input contract.

Real session-level alliance data are confidential, so the project ships a SIMULATED data
set made by :func:`simulate` from the settings under ``simulate:`` in ``params.yaml``.

The data-generating model
-------------------------
Therapists ``t``, clients ``c`` nested in therapists, sessions ``s = 1, 2, ...``.

*Attendance.* Each client plans ``n_c`` sessions (Poisson, truncated to
``[sessions_min, sessions_max]``); session 1 is always attended, later ones with
probability ``p_attend``. At an attended session the alliance form and the outcome form
are each returned with probability ``p_alliance_form`` / ``p_outcome_form``, and each
item is left blank with probability ``p_item_missing``.

*Alliance (WAI-SR, 12 items, 1-5).* For subscale ``k`` in goal, task, bond a latent
score ``mean_k + growth * (s - 1) + a_tk + a_ck + e_csk``, with therapist, client and
session effects normal with SDs ``therapist_sd``, ``client_sd``, ``session_sd`` and
correlations ``client_corr`` (therapist and client level) and ``session_corr`` between
subscales. Each item of subscale ``k`` is the latent score plus ``N(0, item_sd)``, rounded
and clipped to 1-5. Scored subscales are item means (a subscale with more than one blank
item of four is missing, otherwise the mean of the answered items).

*Wellbeing (SWEMWBS metric).* The analysis model of ``analysis-plan.md`` holds exactly,
conditional on the *scored* alliance: with ``time = s - 1`` and the person-mean
disaggregation computed on the rows the primary model uses,

    wellbeing* = intercept + time_b * time + sum_k (b_within_k * k_within + b_between_k * k_between)
                 + u_t + u_c + v_c * time + e

with ``u_t ~ N(0, therapist_sd)``, ``u_c ~ N(0, client_sd)``, ``v_c ~ N(0, client_time_sd)``,
``e ~ N(0, residual_sd)``, independent. ``wellbeing*`` is then rounded to the nearest
metric score of the SWEMWBS conversion table, whose raw sum is split at random into seven
items of 1-5. This rounding adds a small amount of extra residual noise (about 0.2 SD
units of the metric near the middle of the scale), which is part of the simulated truth.

*Rupture-repair episodes* (``simulate.ruptures``, off unless ``enabled: true``). Each
client has one episode with probability ``p_client`` (clients with fewer than three
planned sessions have none). At the rupture session ``r`` (uniform over the planned
sessions from 2 on) the latent goal, task and bond all drop by ``depth_sd`` times the
within-client SD of the *total* score (``sigma_total`` below), so the observed total drops
by ``depth_sd`` within-client SDs. With probability ``p_repair`` the episode is repaired:
the drop lasts ``length`` sessions (drawn from ``length_values`` with ``length_probs``)
and the alliance is back at its usual level at the repair session ``r + length``; an
unrepaired drop lasts to the end of therapy. Wellbeing (below) gains ``repair_effect``
points from the repair session on, and ``unrepaired_effect`` points from the rupture
session on in unrepaired episodes. ``sigma_total`` is the model's within-client SD of the
scored total, ``sqrt(session_sd^2 (1 + 2 session_corr) / 3 + (item_sd^2 + 1/12) / 12)``
(the ``1/12`` is the variance added by rounding items; clipping at the scale ends is
ignored, so it is approximate).

*Unplanned endings* (``simulate.endings``, off unless ``enabled: true``). After each
attended session before the planned last one, a client ends therapy unplanned with
probability ``logistic(intercept + within * w + between * b + time * (s - 1))``, where
``w`` is the observed total alliance of that session (the latent total when no form was
scored) minus the client's true expected total at that session, and ``b`` is the client's
true mean total minus the population mean (therapist plus client effects). Sessions
after an unplanned ending are not attended. A share ``p_ongoing`` of clients is still in
therapy when the data are collected: their series stops after a random planned session
(ending ``ongoing``); the others end ``planned``. The clients file then has an ``ending``
column (planned, unplanned, ongoing).

Both draw from their own random streams (seeded ``[seed, 12]`` and ``[seed, 13]``), so
the base data stay identical when they are off, and wellbeing is generated after them,
conditional on the scored alliance of the sessions that remain (as above).

The true values are the ``simulate:`` settings; :func:`write_simulated` writes them with
the realised counts to ``truth.yaml`` beside the data (with every injected episode under
``ruptures.episodes``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from pipeline.instruments import Instrument, load_instrument
from pipeline.outputs import atomic_open, write_csv

SUBSCALES = ("goal", "task", "bond")


@dataclass(frozen=True)
class SimulatedData:
    """Simulated input files and the truth that generated them."""

    alliance: pd.DataFrame
    outcome: pd.DataFrame
    clients: pd.DataFrame
    truth: dict[str, Any]
    #: The scored rows the generating model conditioned on (client_id, therapist_id,
    #: session, goal, task, bond, wellbeing), for tests of scoring and recovery.
    scored: pd.DataFrame
    #: Injected rupture episodes (one row per episode; empty when ruptures are off):
    #: client_id, rupture_session, repaired, length, repair_session, depth_points.
    episodes: pd.DataFrame = field(default_factory=pd.DataFrame)


def _corr_cov(sd: float, corr: float, k: int = 3) -> np.ndarray:
    c = np.full((k, k), corr)
    np.fill_diagonal(c, 1.0)
    return c * sd**2


def _split_raw_sum(
    raw: np.ndarray, n_items: int, lo: int, hi: int, rng: np.random.Generator
) -> np.ndarray:
    """Split raw sums into ``n_items`` integer items in ``[lo, hi]`` uniformly over slots."""
    width = hi - lo
    extra = raw - n_items * lo
    # Each item has ``width`` slots; the first ``extra`` slots of a random order are filled.
    order = np.argsort(rng.random((len(raw), n_items * width)), axis=1)
    filled = order < extra[:, None]
    return lo + filled.reshape(len(raw), n_items, width).sum(axis=2)


def simulate(config: Mapping[str, Any]) -> SimulatedData:
    """Simulate alliance, outcome and client files from the ``simulate:`` settings.

    Parameters
    ----------
    config
        The ``simulate:`` block of ``params.yaml`` (see there for every key).

    Returns
    -------
    SimulatedData
        ``alliance`` (client_id, therapist_id, session, wai_sr_1..12), ``outcome``
        (client_id, session, swemwbs_1..7), ``clients`` (client_id, approach, modality)
        and ``truth`` (the generating values and realised counts).
    """
    rng = np.random.default_rng(int(config["seed"]))
    wai: Instrument = load_instrument("wai_sr")
    swem: Instrument = load_instrument("swemwbs")
    al, wb = config["alliance"], config["wellbeing"]

    # --- design: therapists, clients, sessions ---------------------------------------
    n_t = int(config["n_therapists"])
    width_t = max(2, len(str(n_t)))
    therapists = np.array([f"T{i + 1:0{width_t}d}" for i in range(n_t)])
    approaches = np.array(["CBT", "psychodynamic", "humanistic"])
    approach_t = approaches[rng.integers(0, len(approaches), n_t)]
    n_c_t = np.maximum(3, rng.poisson(float(config["clients_per_therapist"]), n_t))
    n_c = int(n_c_t.sum())
    width_c = max(4, len(str(n_c)))
    client_t = np.repeat(np.arange(n_t), n_c_t)
    clients = np.array([f"C{i + 1:0{width_c}d}" for i in range(n_c)])
    modality = np.where(rng.random(n_c) < 0.3, "video", "in person")
    planned = np.clip(
        rng.poisson(float(config["sessions_mean"]), n_c),
        int(config["sessions_min"]),
        int(config["sessions_max"]),
    )
    row_c = np.repeat(np.arange(n_c), planned)
    session = np.concatenate([np.arange(1, p + 1) for p in planned])
    attended = (session == 1) | (rng.random(len(session)) < float(config["p_attend"]))
    row_c, session = row_c[attended], session[attended]
    row_t = client_t[row_c]
    n = len(session)
    time = (session - 1).astype(float)

    # --- alliance: latent subscales, then items --------------------------------------
    mean = np.asarray(al["mean"], dtype=float)
    a_t = rng.multivariate_normal(
        np.zeros(3), _corr_cov(al["therapist_sd"], al["client_corr"]), n_t
    )
    a_c = rng.multivariate_normal(np.zeros(3), _corr_cov(al["client_sd"], al["client_corr"]), n_c)
    e_s = rng.multivariate_normal(np.zeros(3), _corr_cov(al["session_sd"], al["session_corr"]), n)
    latent = mean + float(al["growth"]) * time[:, None] + a_t[row_t] + a_c[row_c] + e_s
    seed = int(config["seed"])
    rup_cfg = dict(config.get("ruptures") or {})
    end_cfg = dict(config.get("endings") or {})
    wb_shift = np.zeros(n)
    episodes = pd.DataFrame(columns=list(EPISODE_COLUMNS))
    if rup_cfg.get("enabled", False):
        drop_rows, wb_shift, episodes = _inject_ruptures(
            rup_cfg, al, planned, clients, row_c, session, seed)
        latent = latent - drop_rows[:, None]
    lo, hi = int(wai.item_min), int(wai.item_max)
    items = np.empty((n, wai.n_items))
    for k, name in enumerate(SUBSCALES):
        for item in wai.subscales[name]:
            noise = rng.normal(0.0, float(al["item_sd"]), n)
            items[:, item - 1] = np.clip(np.rint(latent[:, k] + noise), lo, hi)
    has_alliance = rng.random(n) < float(config["p_alliance_form"])
    has_outcome = rng.random(n) < float(config["p_outcome_form"])
    p_miss = float(config["p_item_missing"])
    items[rng.random(items.shape) < p_miss] = np.nan
    swem_missing = (rng.random((n, swem.n_items)) < p_miss).any(axis=1)

    # Scored alliance (item means, at most one blank item per subscale).
    max_missing = int(wai.missing.get("max_missing_per_subscale", 0))
    scored = np.empty((n, 3))
    for k, name in enumerate(SUBSCALES):
        cols = items[:, [i - 1 for i in wai.subscales[name]]]
        n_blank = np.isnan(cols).sum(axis=1)
        with np.errstate(invalid="ignore"):
            m = np.nanmean(np.where(n_blank[:, None] == cols.shape[1], 0.0, cols), axis=1)
        scored[:, k] = np.where(n_blank <= max_missing, m, np.nan)

    # --- unplanned endings: sessions after the ending are not attended ---------------
    kept = np.ones(n, dtype=bool)
    ending = None
    if end_cfg.get("enabled", False):
        observed_total = np.where(has_alliance, scored.mean(axis=1), np.nan)
        observed_total = np.where(np.isnan(observed_total), latent.mean(axis=1), observed_total)
        true_client = (a_t[row_t] + a_c[row_c]).mean(axis=1)
        expected = float(mean.mean()) + float(al["growth"]) * time + true_client
        kept, ending = _endings(end_cfg, planned, row_c, session,
                                observed_total - expected, true_client, seed)
        has_alliance &= kept
        has_outcome &= kept

    # --- wellbeing, conditional on the scored alliance of the rows the model uses -----
    used = has_alliance & has_outcome & ~swem_missing & ~np.isnan(scored).any(axis=1)
    sums = np.zeros((n_c, 3))
    counts = np.bincount(row_c[used], minlength=n_c).astype(float)
    for k in range(3):
        sums[:, k] = np.bincount(row_c[used], weights=scored[used, k], minlength=n_c)
    with np.errstate(invalid="ignore", divide="ignore"):
        client_mean = sums / counts[:, None]
    has_rows = counts > 0
    grand = client_mean[has_rows].mean(axis=0)
    between = np.where(has_rows[:, None], client_mean - grand, 0.0)
    within = np.where(used[:, None], scored - client_mean[row_c], 0.0)
    u_t = rng.normal(0.0, float(wb["therapist_sd"]), n_t)
    u_c = rng.normal(0.0, float(wb["client_sd"]), n_c)
    v_c = rng.normal(0.0, float(wb["client_time_sd"]), n_c)
    e = rng.normal(0.0, float(wb["residual_sd"]), n)
    latent_wb = float(wb["intercept"]) + float(wb["time"]) * time + u_t[row_t] + u_c[row_c]
    latent_wb = latent_wb + v_c[row_c] * time + e + wb_shift
    for k, name in enumerate(SUBSCALES):
        latent_wb += float(wb[f"{name}_within"]) * within[:, k]
        latent_wb += float(wb[f"{name}_between"]) * between[row_c, k]
    assert swem.conversion is not None
    raw_values = np.array(sorted(swem.conversion))
    metric_values = np.array([swem.conversion[r] for r in raw_values])
    nearest = np.abs(latent_wb[:, None] - metric_values[None, :]).argmin(axis=1)
    raw = raw_values[nearest]
    swem_items = _split_raw_sum(raw, swem.n_items, int(swem.item_min), int(swem.item_max), rng)
    swem_items = swem_items.astype(float)
    blank = rng.random(swem_items.shape) < p_miss
    # Rows flagged earlier as having a blank SWEMWBS item get at least one blank.
    first_blank = rng.integers(0, swem.n_items, n)
    blank[swem_missing, first_blank[swem_missing]] = True
    blank[~swem_missing] = False
    swem_items[blank] = np.nan

    # --- assemble the three files ------------------------------------------------------
    ids = pd.DataFrame({"client_id": clients[row_c], "session": session})
    alliance = pd.concat(
        [
            pd.DataFrame(
                {"client_id": clients[row_c], "therapist_id": therapists[row_t], "session": session}
            ),
            pd.DataFrame(items, columns=wai.item_columns).astype("Int64"),
        ],
        axis=1,
    )[has_alliance].reset_index(drop=True)
    outcome = pd.concat(
        [ids, pd.DataFrame(swem_items, columns=swem.item_columns).astype("Int64")], axis=1
    )[has_outcome].reset_index(drop=True)
    client_df = pd.DataFrame(
        {"client_id": clients, "approach": approach_t[client_t], "modality": modality}
    )
    if ending is not None:
        client_df["ending"] = ending
    truth: dict[str, Any] = {
        "description": "SIMULATED data: true values of the data-generating model "
        "(pipeline/simulate.py). Not real clients.",
        "primary_model": {
            "fixed": {
                "intercept": float(wb["intercept"]),
                "time": float(wb["time"]),
                **{f"{k}_within": float(wb[f"{k}_within"]) for k in SUBSCALES},
                **{f"{k}_between": float(wb[f"{k}_between"]) for k in SUBSCALES},
            },
            "sd": {
                "therapist": float(wb["therapist_sd"]),
                "client": float(wb["client_sd"]),
                "client_time": float(wb["client_time_sd"]),
                "residual": float(wb["residual_sd"]),
            },
        },
        "counts": {
            "therapists": n_t,
            "clients": n_c,
            "attended_sessions": int(kept.sum()),
            "alliance_rows": len(alliance),
            "outcome_rows": len(outcome),
            "rows_complete_for_primary_model": int(used.sum()),
        },
        "settings": _plain(config),
    }
    if rup_cfg.get("enabled", False):
        truth["primary_model"]["note"] = (
            "with ruptures injected, wellbeing also has the repair step below, which the "
            "primary model leaves out: its truth holds only approximately")
        truth["ruptures"] = _rupture_truth(rup_cfg, al, episodes)
    if ending is not None:
        levels, counts_e = np.unique(ending, return_counts=True)
        truth["endings"] = {
            "description": "hazard of ending unplanned after a session: logistic(intercept + "
                           "within * w + between * b + time * (session - 1)); w = observed "
                           "total alliance minus the client's true expected total, b = the "
                           "client's true mean total minus the population mean",
            "coefficients": {k: float(end_cfg[k]) for k in ("intercept", "within", "between",
                                                            "time")},
            "counts": {str(k): int(v) for k, v in zip(levels, counts_e, strict=True)},
        }
    scored_df = pd.DataFrame(
        {
            "client_id": clients[row_c],
            "therapist_id": therapists[row_t],
            "session": session,
            **{name: scored[:, k] for k, name in enumerate(SUBSCALES)},
            "wellbeing": metric_values[nearest],
        }
    )[used].reset_index(drop=True)
    return SimulatedData(
        alliance=alliance, outcome=outcome, clients=client_df, truth=truth, scored=scored_df,
        episodes=episodes,
    )


EPISODE_COLUMNS = ("client_id", "rupture_session", "repaired", "length", "repair_session",
                   "depth_points")
"""Columns of :attr:`SimulatedData.episodes` (the injected truth)."""


def sigma_total(alliance: Mapping[str, Any]) -> float:
    """Within-client SD of the scored total alliance implied by the ``alliance`` settings.

    ``sqrt(session_sd^2 (1 + 2 session_corr) / 3 + (item_sd^2 + 1/12) / 12)``: the session
    deviation of the mean of three correlated subscales plus the item noise (with the
    variance of rounding to whole answers, 1/12) averaged over the 12 items of the WAI-SR.
    Clipping at the ends of the answer scale is ignored, so this is approximate.
    """
    sd, corr, item = (float(alliance[k]) for k in ("session_sd", "session_corr", "item_sd"))
    return float(np.sqrt(sd**2 * (1 + 2 * corr) / 3 + (item**2 + 1 / 12) / 12))


def _inject_ruptures(
    cfg: Mapping[str, Any], al: Mapping[str, Any], planned: np.ndarray, clients: np.ndarray,
    row_c: np.ndarray, session: np.ndarray, seed: int,
) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """Per-row alliance drop and wellbeing shift of the injected episodes, and the truth."""
    rng = np.random.default_rng([seed, 12])
    n_c = len(planned)
    drop = float(cfg["depth_sd"]) * sigma_total(al)
    values = np.asarray(cfg.get("length_values", [1]), dtype=int)
    probs = np.asarray(cfg.get("length_probs", [1.0] * len(values)), dtype=float)
    has = rng.random(n_c) < float(cfg["p_client"])
    repaired = rng.random(n_c) < float(cfg["p_repair"])
    length = rng.choice(values, size=n_c, p=probs / probs.sum())
    u = rng.random(n_c)
    # Repaired: the repair session r + length is a planned session; unrepaired: at least
    # one planned session follows the rupture.
    last = np.where(repaired, planned - length, planned - 1)
    has &= last >= 2
    start = 2 + np.floor(u * np.maximum(last - 1, 1)).astype(int)
    r = start[row_c]
    end = np.where(repaired, start + length, np.iinfo(np.int64).max)[row_c]
    in_drop = has[row_c] & (session >= r) & (session < end)
    drop_rows = np.where(in_drop, drop, 0.0)
    wb = np.zeros(len(session))
    after_repair = has[row_c] & repaired[row_c] & (session >= end)
    after_unrepaired = has[row_c] & ~repaired[row_c] & (session >= r)
    wb[after_repair] = float(cfg.get("repair_effect", 0.0))
    wb[after_unrepaired] = float(cfg.get("unrepaired_effect", 0.0))
    idx = np.flatnonzero(has)
    episodes = pd.DataFrame({
        "client_id": clients[idx],
        "rupture_session": start[idx],
        "repaired": repaired[idx],
        "length": np.where(repaired[idx], length[idx], np.nan),
        "repair_session": np.where(repaired[idx], start[idx] + length[idx], np.nan),
        "depth_points": drop,
    })
    return drop_rows, wb, episodes


def _endings(
    cfg: Mapping[str, Any], planned: np.ndarray, row_c: np.ndarray, session: np.ndarray,
    within: np.ndarray, between: np.ndarray, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows kept after unplanned endings and data-collection cut-offs; each client's ending."""
    rng = np.random.default_rng([seed, 13])
    n_c = len(planned)
    ongoing = rng.random(n_c) < float(cfg.get("p_ongoing", 0.0))
    cut = np.where(ongoing, 1 + np.floor(rng.random(n_c) * planned).astype(int), planned)
    eta = (float(cfg["intercept"]) + float(cfg["within"]) * within
           + float(cfg["between"]) * between + float(cfg.get("time", 0.0)) * (session - 1))
    event = rng.random(len(session)) < 1.0 / (1.0 + np.exp(-eta))
    event &= (session < planned[row_c]) & (session <= cut[row_c])
    first = np.full(n_c, np.iinfo(np.int64).max)
    np.minimum.at(first, row_c[event], session[event])
    stop = np.minimum(first, cut)
    kept = session <= stop[row_c]
    ending = np.where(first < np.iinfo(np.int64).max, "unplanned",
                      np.where(ongoing, "ongoing", "planned"))
    return kept, ending


def _rupture_truth(cfg: Mapping[str, Any], al: Mapping[str, Any],
                   episodes: pd.DataFrame) -> dict[str, Any]:
    rows = []
    for rec in episodes.to_dict("records"):
        rows.append({
            "client_id": str(rec["client_id"]),
            "rupture_session": int(rec["rupture_session"]),
            "repaired": bool(rec["repaired"]),
            "repair_session": (None if pd.isna(rec["repair_session"])
                               else int(rec["repair_session"])),
        })
    return {
        "description": "injected rupture-repair episodes (one per client at most); the "
                       "latent goal, task and bond all drop by drop_points from the rupture "
                       "session until the repair session (to the end when unrepaired)",
        "sigma_total_within": sigma_total(al),
        "drop_points": float(cfg["depth_sd"]) * sigma_total(al),
        "repair_effect": float(cfg.get("repair_effect", 0.0)),
        "unrepaired_effect": float(cfg.get("unrepaired_effect", 0.0)),
        "counts": {"episodes": len(episodes),
                   "repaired": int(episodes["repaired"].sum()),
                   "unrepaired": int((~episodes["repaired"].astype(bool)).sum())},
        "episodes": rows,
    }


def _plain(obj: Any) -> Any:
    """Turn a (possibly DVC/OmegaConf-like) mapping into plain dicts and lists."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


def write_simulated(data: SimulatedData, outdir: str | Path) -> list[Path]:
    """Write ``alliance.csv``, ``outcome.csv``, ``clients.csv`` and ``truth.yaml``."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (
        ("alliance", data.alliance),
        ("outcome", data.outcome),
        ("clients", data.clients),
    ):
        written.append(write_csv(frame, out / f"{name}.csv", digits=None))
    path = out / "truth.yaml"
    with atomic_open(path) as fh:
        yaml.safe_dump(data.truth, fh, sort_keys=False, allow_unicode=True)
    written.append(path)
    return written
