"""How well each criterion recovers known episodes (simulated data with their truth).

Recall is the share of injected episodes that a criterion found (the rupture session
matched within ``tolerance`` sessions), among injected episodes that *could* be seen: the
rupture session and an earlier session were rated. Precision is the share of the
criterion's episodes that match an injected one. Precision depends on how common ruptures
are (the base rate): session-to-session noise produces drops of one or two SDs by chance
(regression to the mean), so liberal criteria find many episodes that no one injected.

References
----------
Gumz, A., et al. (2012). *BMC Medical Research Methodology, 12*, 10 (counts depend on the
criterion).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from pipeline.ruptures.criteria import Criterion


def recovery(episodes: pd.DataFrame, truth: pd.DataFrame, series: pd.DataFrame,
             criteria: Sequence[Criterion], scale: str = "total", rater: str = "client",
             tolerance: int = 0) -> pd.DataFrame:
    """Recall and precision of each criterion against injected episodes.

    Parameters
    ----------
    episodes
        Detected episodes (row level).
    truth
        Injected episodes: ``client_id, rupture_session, repaired`` (and
        ``repair_session``).
    series
        The long alliance series (to know which injected episodes were observable).
    criteria
        The criteria.
    scale, rater
        The series compared (the simulator drops goal, task and bond together).
    tolerance
        A detection matches when its rupture session is within this many sessions.

    Returns
    -------
    pandas.DataFrame
        ``criterion, n_injected, n_observable, n_detected, n_matched, recall,
        precision, status_agreement`` (share of matched episodes whose repaired /
        not-repaired status agrees with the truth, censored ones left out).
    """
    ser = series[(series["scale"] == scale) & (series["rater"] == rater)]
    # Observable: the rupture session was rated, and an earlier session too.
    rated = set(zip(ser["client_id"], ser["session"], strict=True))
    first = ser.groupby("client_id")["session"].min().to_dict()
    observable = [(c, r) in rated and first[c] < r
                  for c, r in zip(truth["client_id"], truth["rupture_session"], strict=True)]
    tr = truth.assign(observable=observable)
    ep = episodes[(episodes["scale"] == scale) & (episodes["rater"] == rater)]
    # Every criterion's detections against the truth in one merge (an inner merge keeps
    # the order of the detections, so each criterion's rows are as if merged alone).
    paired = ep.merge(tr, on="client_id", suffixes=("", "_true"))
    paired = paired[(paired["rupture_session"] - paired["rupture_session_true"]).abs()
                    <= tolerance]
    rows = []
    for crit in criteria:
        det = ep[ep["criterion"] == crit.name]
        merged = paired[paired["criterion"] == crit.name]
        matched_det = merged.drop_duplicates(["client_id", "rupture_session"])
        matched_true = merged[merged["observable"]].drop_duplicates(
            ["client_id", "rupture_session_true"])
        n_obs = int(tr["observable"].sum())
        known = matched_det[matched_det["status"] != "censored"]
        agree = ((known["status"] == "repaired") == known["repaired"].astype(bool))
        rows.append({
            "criterion": crit.name, "n_injected": len(tr), "n_observable": n_obs,
            "n_detected": len(det), "n_matched": len(matched_det),
            "recall": len(matched_true) / n_obs if n_obs else np.nan,
            "precision": len(matched_det) / len(det) if len(det) else np.nan,
            "status_agreement": float(agree.mean()) if len(known) else np.nan,
        })
    return pd.DataFrame(rows)


SCENARIOS: tuple[tuple[str, float, float], ...] = (
    ("deep_clear", 3.0, 1.0),
    ("very_deep", 6.0, 1.0),
    ("no_ruptures", 3.0, 0.0),
)
"""Benchmark scenarios: name, drop in within-client SDs, share of clients with an episode.

``deep_clear`` is the target of issue 12 (one-session drops of three within-client SDs,
every client one episode); ``no_ruptures`` measures false episodes on noise alone."""


def scenario_recovery(params: Mapping[str, Any], depth_sd: float, p_client: float,
                      seed: int | None = None) -> pd.DataFrame:
    """Recall, precision and false episodes of every criterion on one simulated scenario.

    The data come from the ``simulate:`` settings (``seed`` replaces its seed) with every
    session attended and rated, no unplanned endings, and rupture episodes of one session
    (``depth_sd`` within-client SDs of the total score, repaired at the next session) in a
    share ``p_client`` of clients. The criteria and rules are those of ``ruptures:``; the
    total score as rated by the client is compared.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`recovery` plus ``n_sessions`` (rated sessions) and
        ``false_per_100`` (unmatched episodes per 100 rated sessions).
    """
    import copy

    from pipeline.ruptures.criteria import load_criteria, load_rules, scale_reliability
    from pipeline.ruptures.detect import alliance_series, detect_episodes
    from pipeline.score import score_alliance
    from pipeline.simulation.dataset import simulate_alliance

    cfg = copy.deepcopy(dict(params["simulate"]))
    if seed is not None:
        cfg["seed"] = int(seed)
    cfg["ruptures"] = {**dict(cfg.get("ruptures") or {}), "enabled": True,
                       "p_client": float(p_client), "depth_sd": float(depth_sd),
                       "length_values": [1], "length_probs": [1.0], "p_repair": 1.0}
    cfg["endings"] = {**dict(cfg.get("endings") or {}), "enabled": False}
    cfg.update(p_attend=1.0, p_alliance_form=1.0, p_item_missing=0.0)
    # The alliance part of simulate_dataset (the same draws; no outcome is needed here).
    sim = simulate_alliance(cfg)
    alliance, inst = sim.alliance, sim.wai
    scored, _ = score_alliance(alliance, inst)
    series = alliance_series(scored, ["total"])
    criteria = load_criteria(params["ruptures"])
    rules = load_rules(params["ruptures"])
    which = next((c.reliability for c in criteria if c.kind == "rci"), "alpha")
    episodes, _ = detect_episodes(series, criteria, rules,
                                  scale_reliability(alliance, inst, which))
    injected = sim.ruptures.episodes
    truth = injected if len(injected) else pd.DataFrame(
        columns=["client_id", "rupture_session", "repaired", "repair_session"])
    table = recovery(episodes, truth, series, criteria)
    table["n_sessions"] = len(series)
    table["false_per_100"] = 100 * (table["n_detected"] - table["n_matched"]) / len(series)
    return table


def detection_benchmark(params: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`scenario_recovery` for every scenario of :data:`SCENARIOS` (with the seed of
    ``simulate:``): one row per scenario x criterion, columns ``scenario, depth_sd,
    p_client`` first. Aggregates only (counts and shares over simulated clients)."""
    parts = []
    for name, depth, share in SCENARIOS:
        t = scenario_recovery(params, depth, share)
        t.insert(0, "p_client", share)
        t.insert(0, "depth_sd", depth)
        t.insert(0, "scenario", name)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)
