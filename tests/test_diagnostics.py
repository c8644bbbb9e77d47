"""Diagnostics leave the fit step as aggregates only."""

from __future__ import annotations

import copy

import numpy as np

from pipeline.diagnostics import diagnostics, random_effects
from pipeline.models import fit_all
from pipeline.simulate import simulate


def test_diagnostics_are_aggregates(params: dict) -> None:
    cfg = copy.deepcopy(params["simulate"])
    cfg.update(n_therapists=8, clients_per_therapist=8, seed=3)
    sim = simulate(cfg)
    fits = fit_all(sim.scored, None, {"df_method": "wald"}, models=["primary"],
                   verbose=False)
    diag = diagnostics(fits[0], n_points=50, n_bins=10)
    re = random_effects(fits[0])
    assert set(re) == {"therapist", "client", "client_time"}
    assert len(re["therapist"]) == sim.scored["therapist_id"].nunique()
    assert len(re["client"]) == sim.scored["client_id"].nunique()
    qq = diag[diag["plot"] == "qq"]
    assert qq.groupby("component").size().to_dict() == {
        "residual": 50, "therapist": 8, "client": 50, "client_time": 50}
    rvf = diag[diag["plot"] == "residual_vs_fitted"]
    assert len(rvf) == 10
    assert rvf["n"].sum() == len(sim.scored) and rvf["n"].min() >= 5
    # conditional residuals average zero over all sessions
    assert abs(np.average(rvf["y"], weights=rvf["n"])) < 1e-6
