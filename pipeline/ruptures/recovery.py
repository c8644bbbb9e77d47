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

from collections.abc import Sequence

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
    rated = ser.groupby("client_id")["session"].agg(list).to_dict()
    observable = []
    for rec in truth.itertuples(index=False):
        sess = rated.get(rec.client_id, [])
        observable.append(rec.rupture_session in sess
                          and any(s < rec.rupture_session for s in sess))
    tr = truth.assign(observable=observable)
    rows = []
    for crit in criteria:
        det = episodes[(episodes["criterion"] == crit.name) & (episodes["scale"] == scale)
                       & (episodes["rater"] == rater)]
        merged = det.merge(tr, on="client_id", suffixes=("", "_true"))
        merged = merged[(merged["rupture_session"] - merged["rupture_session_true"]).abs()
                        <= tolerance]
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
