"""The shipped SIMULATED data set, made from the ``simulate:`` settings of params.yaml.

Real session-level alliance data are confidential, so the project ships a simulated data
set in the input contract. It is made by the simulation package, step by step, so that
the data pass through the project's own scoring and design building:

1. *Design* (:mod:`~pipeline.simulation.design`): therapists with a Poisson number of
   clients (at least 3), each client with a truncated-Poisson number of planned
   sessions; session 1 is attended, later ones with probability ``p_attend``.
2. *Covariates* (:mod:`~pipeline.simulation.covariates`): ``approach`` and ``modality``.
3. *Alliance* (:mod:`~pipeline.simulation.alliance`): latent goal, task and bond with
   therapist, client and session effects (``simulate.alliance``).
4. *Ruptures* (:mod:`~pipeline.simulation.ruptures`, ``simulate.ruptures``): episodes
   that lower the latent alliance and shift the outcome.
5. *Items*: WAI-SR answers from the latent scores (each item = its subscale's latent
   score + ``N(0, item_sd)``, rounded and clipped), each blank with probability
   ``p_item_missing``; an attended session has an alliance / outcome form with
   probability ``p_alliance_form`` / ``p_outcome_form``. The alliance is scored by
   :func:`pipeline.score.score_alliance` (the instrument's missing-item rule).
6. *Endings* (:mod:`~pipeline.simulation.endings`, ``simulate.endings``): unplanned
   endings driven by the scored alliance; later sessions are not attended.
7. *Outcome* (:mod:`~pipeline.simulation.outcome`): the primary model of
   ``pipeline/models.yaml`` holds exactly, conditional on the predictors that
   :func:`pipeline.models.model_data` builds from the scored rows it will use (rows with
   both forms whose alliance and outcome can be scored), with the fixed effects and SDs
   of ``simulate.wellbeing``, plus the ruptures' shift. Outcome forms of sessions
   without a usable alliance form get the same model with ``within = 0`` (and the
   client's ``between``, 0 when the client has no usable row).
8. *Outcome items* (:mod:`~pipeline.simulation.items`): the outcome rounded to the
   nearest SWEMWBS score, its raw sum split at random into seven items, items blank with
   probability ``p_item_missing`` (decided before step 7, so the rows the model uses are
   known). The rounding adds a little residual noise (about 0.2 SD units of the metric
   near the middle of the scale), which is part of the simulated truth.

Each step draws from its own random stream (children of ``SeedSequence(seed)``, see
:data:`STREAMS`), so switching ruptures or endings off leaves the other draws unchanged,
and the same settings give the same bytes. The true values (the settings) and the
realised counts go to ``truth.yaml`` beside the data.
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
from pipeline.simulation.alliance import (
    SUBSCALES,
    alliance_items,
    latent_parts,
    process_from_settings,
)
from pipeline.simulation.covariates import client_covariates
from pipeline.simulation.design import attended_sessions, caseload_clients, caseload_from_settings
from pipeline.simulation.endings import draw_endings, endings_truth
from pipeline.simulation.items import blank_items, outcome_items
from pipeline.simulation.outcome import ModelTruth, check_truth, simulate_outcome
from pipeline.simulation.ruptures import (
    EPISODE_COLUMNS,
    Ruptures,
    inject_ruptures,
    no_ruptures,
    rupture_truth,
    sigma_total,
)

ALLIANCE_INSTRUMENT = "wai_sr"
"""The alliance form of the shipped data (client-rated WAI-SR, 12 items, 1-5)."""
OUTCOME_INSTRUMENT = "swemwbs"
"""The outcome form of the shipped data (SWEMWBS, 7 items, 1-5, Rasch metric)."""
MODEL = "primary"
"""The model of ``pipeline/models.yaml`` whose truth is ``simulate.wellbeing``."""

STREAMS: tuple[str, ...] = ("design", "covariates", "alliance", "ruptures", "items", "forms",
                            "endings", "outcome")
"""Random streams, child ``i`` of ``SeedSequence(seed)`` for the ``i``-th name."""

#: ``simulate.wellbeing`` key -> model term, and -> variance component.
FIXED_TERMS: dict[str, str] = {
    "intercept": "Intercept", "time": "time",
    **{f"{k}_{w}": f"{k}_{w}" for w in ("within", "between") for k in SUBSCALES},
}
SD_COMPONENTS: dict[str, str] = {"therapist_sd": "therapist", "client_sd": "client",
                                 "client_time_sd": "client_time", "residual_sd": "residual"}


@dataclass(frozen=True)
class SimulatedData:
    """Simulated input files, the truth that generated them, and the model's rows."""

    alliance: pd.DataFrame
    outcome: pd.DataFrame
    clients: pd.DataFrame
    truth: dict[str, Any]
    #: The rows the outcome was generated for, as the project scores them from the
    #: files (client_id, therapist_id, session, goal, task, bond, wellbeing).
    scored: pd.DataFrame
    #: The primary model's rows and predictors the outcome was conditioned on
    #: (:func:`pipeline.models.model_data` of ``scored``), with the drawn ``wellbeing``.
    predictors: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Injected rupture episodes, columns :data:`~pipeline.simulation.ruptures.EPISODE_COLUMNS`.
    episodes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=list(EPISODE_COLUMNS)))


def model_truth(wellbeing: Mapping[str, Any]) -> ModelTruth:
    """The primary model's truth from ``simulate.wellbeing``."""
    truth = ModelTruth(fixed={term: float(wellbeing[key]) for key, term in FIXED_TERMS.items()},
                       sd={comp: float(wellbeing[key]) for key, comp in SD_COMPONENTS.items()})
    check_truth(truth, "params.yaml: simulate.wellbeing")
    return truth


def _streams(seed: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(STREAMS))
    return {name: np.random.default_rng(child)
            for name, child in zip(STREAMS, children, strict=True)}


def _scorable_outcome(blank: np.ndarray, instrument: Instrument) -> np.ndarray:
    """Rows whose outcome form the instrument's missing-item rule scores, given the blanks."""
    from pipeline.score import OUTCOME_COLUMN, score_outcome

    probe = np.where(blank, np.nan, float(instrument.item_min))
    scored, _ = score_outcome(pd.DataFrame(probe, columns=instrument.item_columns), instrument)
    return scored[OUTCOME_COLUMN].notna().to_numpy()


def _outcome_predictors(rows: pd.DataFrame, design: pd.DataFrame,
                        truth: ModelTruth) -> pd.DataFrame:
    """Every outcome row with the model's predictors: the design's for the rows it uses,
    ``within = 0`` and the client's ``between`` (0 without usable rows) for the others."""
    terms = [t for t in truth.fixed if t != "Intercept"]
    out = rows[["therapist_id", "client_id", "session"]].copy()
    out["time"] = out["session"].astype(float) - 1.0
    used = design.set_index(["client_id", "session"])
    key = pd.MultiIndex.from_frame(out[["client_id", "session"]])
    for term in terms:
        if term == "time":
            continue
        value = used[term].reindex(key).to_numpy(dtype=float)
        if term.endswith("_between"):
            by_client = design.groupby("client_id")[term].first()
            value = out["client_id"].map(by_client).to_numpy(dtype=float)
        out[term] = np.nan_to_num(value, nan=0.0)
    return out


@dataclass(frozen=True)
class AllianceDraw:
    """Steps 1-6 of :func:`simulate_dataset`: the caseload, the alliance as answered, the
    injected ruptures and the endings, with the random streams in the state they leave.

    ``rows`` are every planned-and-attended session (``ids`` its keys), ``kept`` those
    before an unplanned ending; ``has_alliance`` / ``has_outcome`` the returned forms
    (already limited to ``kept``); ``swem_blank`` the outcome blanks drawn in step 5.
    """

    rng: dict[str, np.random.Generator]
    wai: Instrument
    swem: Instrument
    clients: pd.DataFrame
    rows: pd.DataFrame
    ids: pd.DataFrame
    covariates: pd.DataFrame
    wai_items: pd.DataFrame
    alliance_scored: pd.DataFrame | None
    swem_blank: np.ndarray
    has_alliance: np.ndarray
    has_outcome: np.ndarray
    kept: np.ndarray
    ending: np.ndarray | None
    ruptures: Ruptures
    sigma: float

    def subscale_scores(self) -> np.ndarray:
        """Goal, task and bond of every drawn row as the project scores them (``rows``
        order, before forms and endings)."""
        scored = self.alliance_scored
        if scored is None:
            from pipeline.score import score_alliance

            scored, _ = score_alliance(pd.concat([self.ids, self.wai_items], axis=1), self.wai)
        return scored[list(SUBSCALES)].to_numpy(dtype=float)

    @property
    def alliance(self) -> pd.DataFrame:
        """The alliance file: client_id, therapist_id, session, WAI-SR items (Int64)."""
        alliance = pd.concat([self.ids, self.wai_items.astype("Int64")],
                             axis=1)[self.has_alliance]
        return alliance.reset_index(drop=True)


def simulate_alliance(config: Mapping[str, Any]) -> AllianceDraw:
    """Steps 1-6 of :func:`simulate_dataset` alone (no outcome): the same draws, so the
    alliance file and injected episodes are those :func:`simulate_dataset` returns for
    the same settings. For studies of the alliance rules (the rupture benchmark)."""
    from pipeline.score import score_alliance

    rng = _streams(int(config["seed"]))
    wai, swem = load_instrument(ALLIANCE_INSTRUMENT), load_instrument(OUTCOME_INSTRUMENT)
    process = process_from_settings(config["alliance"], "simulate.alliance")
    p_blank = float(config["p_item_missing"])
    rup_cfg = dict(config.get("ruptures") or {})
    end_cfg = dict(config.get("endings") or {})

    # 1-2. design and covariates
    clients = caseload_clients(caseload_from_settings(config), rng["design"])
    rows = attended_sessions(clients, float(config["p_attend"]), rng["design"])
    covariates = client_covariates(clients, rng["covariates"])
    n = len(rows)

    # 3-4. latent alliance, lowered by injected ruptures
    parts = latent_parts(rows, process, rng["alliance"])
    sigma = sigma_total(process, wai.n_items)
    ruptures = (inject_ruptures(rup_cfg, clients, rows, float(rup_cfg["depth_sd"]) * sigma,
                                rng["ruptures"])
                if rup_cfg.get("enabled", False) else no_ruptures(n))
    latent = parts.latent - ruptures.drop[:, None]

    # 5. items as answered, blanks, returned forms
    wai_items = blank_items(alliance_items(latent, wai, process.item_sd, rng["items"]),
                            p_blank, rng["items"])
    swem_blank = rng["items"].random((n, swem.n_items)) < p_blank
    has_alliance = rng["forms"].random(n) < float(config["p_alliance_form"])
    has_outcome = rng["forms"].random(n) < float(config["p_outcome_form"])
    ids = rows[["client_id", "therapist_id", "session"]]

    # 6. unplanned endings: later sessions are not attended
    ending = None
    kept = np.ones(n, dtype=bool)
    alliance_scored = None  # scored here only when the endings need it
    if end_cfg.get("enabled", False):
        alliance_scored, _ = score_alliance(pd.concat([ids, wai_items], axis=1), wai)
        person = (parts.therapist + parts.client).mean(axis=1)
        expected = parts.trend.mean(axis=1) + person
        observed = np.where(has_alliance,
                            alliance_scored["alliance_total"].to_numpy(dtype=float), np.nan)
        observed = np.where(np.isnan(observed), latent.mean(axis=1), observed)
        endings = draw_endings(end_cfg, clients, rows, observed - expected, person,
                               rng["endings"])
        kept, ending = endings.kept, endings.ending
    has_alliance &= kept
    has_outcome &= kept
    return AllianceDraw(rng=rng, wai=wai, swem=swem, clients=clients, rows=rows, ids=ids,
                        covariates=covariates,
                        wai_items=wai_items, alliance_scored=alliance_scored,
                        swem_blank=swem_blank,
                        has_alliance=has_alliance, has_outcome=has_outcome, kept=kept,
                        ending=ending, ruptures=ruptures, sigma=sigma)


def simulate_dataset(config: Mapping[str, Any]) -> SimulatedData:
    """Simulate alliance, outcome and client files from the ``simulate:`` settings.

    Parameters
    ----------
    config
        The ``simulate:`` block of ``params.yaml`` (see there for every key).

    Returns
    -------
    SimulatedData
        ``alliance`` (client_id, therapist_id, session, wai_sr_1..12), ``outcome``
        (client_id, session, swemwbs_1..7), ``clients`` (client_id, approach, modality,
        and ``ending`` when endings are simulated), ``truth``, ``scored``, ``predictors``
        and ``episodes``.
    """
    from pipeline.models import load_specs, model_data
    from pipeline.score import merge_scores, score_alliance, score_outcome

    # 1-6. design, covariates, alliance, ruptures, items and forms, endings
    draw = simulate_alliance(config)
    rng, clients, rows, ids = draw.rng, draw.clients, draw.rows, draw.ids
    subscales, swem_blank, ruptures = draw.subscale_scores(), draw.swem_blank, draw.ruptures
    has_alliance, has_outcome, kept = draw.has_alliance, draw.has_outcome, draw.kept
    ending, sigma, covariates = draw.ending, draw.sigma, draw.covariates
    wai, swem = draw.wai, draw.swem
    truth = model_truth(config["wellbeing"])
    rup_cfg = dict(config.get("ruptures") or {})
    end_cfg = dict(config.get("endings") or {})

    # 7. the outcome, conditional on the primary model's predictors of the rows it uses
    used = (has_alliance & has_outcome & _scorable_outcome(swem_blank, swem)
            & ~np.isnan(subscales).any(axis=1))
    spec = load_specs().get(MODEL)
    conditioned = ids[used].assign(**{k: subscales[used, i] for i, k in enumerate(SUBSCALES)})
    # The outcome is drawn after the predictors exist; a placeholder keeps the design
    # code's complete-row filter from dropping rows for a missing outcome.
    design = model_data(conditioned.assign(wellbeing=0.0).reset_index(drop=True), None, spec)
    outcome_rows = rows[has_outcome]
    frame = _outcome_predictors(outcome_rows, design, truth)
    latent_wb = simulate_outcome(frame, truth, rng["outcome"])
    latent_wb += ruptures.outcome_shift[has_outcome]

    # 8. outcome items, with the blanks decided in step 5
    swem_items, reported = outcome_items(latent_wb, swem, rng["outcome"])
    swem_values = swem_items.to_numpy(dtype=float)
    swem_values[swem_blank[has_outcome]] = np.nan

    # --- the three files -----------------------------------------------------------
    alliance = draw.alliance
    outcome = pd.concat([
        outcome_rows[["client_id", "session"]].reset_index(drop=True),
        pd.DataFrame(swem_values, columns=swem.item_columns).astype("Int64"),
    ], axis=1)
    client_df = covariates.copy()
    if ending is not None:
        client_df["ending"] = ending

    # --- what the project scores from the files, and the model's rows ---------------
    scored_a, _ = score_alliance(alliance, wai)
    scored_o, _ = score_outcome(outcome, swem)
    scored = merge_scores(scored_a, scored_o)
    scored = scored.dropna(subset=[*SUBSCALES, "wellbeing"])
    scored = scored[["client_id", "therapist_id", "session", *SUBSCALES, "wellbeing"]]
    scored = scored.reset_index(drop=True)
    wellbeing = pd.Series(reported, index=pd.MultiIndex.from_frame(
        outcome_rows[["client_id", "session"]]))
    design["wellbeing"] = wellbeing.reindex(
        pd.MultiIndex.from_frame(design[["client_id", "session"]])).to_numpy()

    truth_doc = _truth(config, truth, counts={
        "therapists": int(clients["therapist_id"].nunique()),
        "clients": len(clients),
        "attended_sessions": int(kept.sum()),
        "alliance_rows": len(alliance),
        "outcome_rows": len(outcome),
        "rows_complete_for_primary_model": len(design),
    })
    if rup_cfg.get("enabled", False):
        truth_doc["primary_model"]["note"] = (
            "with ruptures injected, wellbeing also has the repair step below, which the "
            "primary model leaves out: its truth holds only approximately")
        truth_doc["ruptures"] = rupture_truth(rup_cfg, sigma, ruptures.episodes)
    if ending is not None:
        truth_doc["endings"] = endings_truth(end_cfg, ending)
    return SimulatedData(alliance=alliance, outcome=outcome, clients=client_df,
                         truth=truth_doc, scored=scored, predictors=design,
                         episodes=ruptures.episodes)


def _truth(config: Mapping[str, Any], truth: ModelTruth,
           counts: dict[str, int]) -> dict[str, Any]:
    wb = config["wellbeing"]
    return {
        "description": "SIMULATED data: true values of the data-generating model "
                       "(pipeline/simulation/). Not real clients.",
        "primary_model": {
            "fixed": {key: float(wb[key]) for key in FIXED_TERMS},
            "sd": {comp: float(truth.sd[comp]) for comp in SD_COMPONENTS.values()},
        },
        "counts": counts,
        "settings": _plain(config),
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
    for name, frame in (("alliance", data.alliance), ("outcome", data.outcome),
                        ("clients", data.clients)):
        written.append(write_csv(frame, out / f"{name}.csv", digits=None))
    path = out / "truth.yaml"
    with atomic_open(path) as fh:
        yaml.safe_dump(data.truth, fh, sort_keys=False, allow_unicode=True)
    written.append(path)
    return written
