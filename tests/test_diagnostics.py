"""Diagnostics leave the fit step as aggregates only, and the marginal check is calibrated."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from pipeline.diagnostics import diagnostics, marginal_bins, marginal_words, random_effects
from pipeline.models import ModelFit, fit_all
from pipeline.models.engine import covariances
from pipeline.simulation.dataset import simulate_dataset


def _primary(params: dict, seed: int, n_therapists: int = 8, per: int = 8) -> tuple:
    """Data simulated from the primary model's structure, and its primary fit."""
    cfg = copy.deepcopy(params["simulate"])
    cfg.update(n_therapists=n_therapists, clients_per_therapist=per, seed=seed)
    sim = simulate_dataset(cfg)
    fits = fit_all(sim.scored, None, {"df_method": "wald"}, models=["primary"],
                   verbose=False)
    return sim, fits[0]


def test_diagnostics_are_aggregates(params: dict) -> None:
    cfg = copy.deepcopy(params["simulate"])
    cfg.update(n_therapists=8, clients_per_therapist=8, seed=3)
    sim = simulate_dataset(cfg)
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
    marg = diag[diag["plot"] == "marginal_residual_vs_fitted"]
    assert len(marg) == 10 and marg["n"].sum() == len(sim.scored) and marg["se"].gt(0).all()
    assert diag.loc[diag["plot"] != "marginal_residual_vs_fitted", "se"].isna().all()
    assert rvf["n"].sum() == len(sim.scored) and rvf["n"].min() >= 5
    # conditional residuals average zero over all sessions
    assert abs(np.average(rvf["y"], weights=rvf["n"])) < 1e-6


def test_marginal_residuals_are_flat_where_conditional_ones_slope(params: dict) -> None:
    """On data from the fitted model's own structure, binned marginal residuals lie within
    3 SE of 0 in every bin, while the conditional ones rise with the fitted values
    (shrinkage leaves part of each client's deviation in their residuals)."""
    sim, fit = _primary(params, seed=3)
    diag = diagnostics(fit, n_points=50, n_bins=10)
    marg = diag[diag["plot"] == "marginal_residual_vs_fitted"]
    z = marg["y"] / marg["se"]
    assert z.abs().max() < 3, z.round(2).tolist()
    cond = diag[diag["plot"] == "residual_vs_fitted"]
    slope = np.polyfit(cond["x"], cond["y"], 1)[0]
    assert slope > 0.02, slope
    # marginal residual + marginal fitted value = observed outcome, bin by bin
    assert np.isclose(float((marg["x"] + marg["y"]) @ marg["n"]), sim.scored["wellbeing"].sum())


def test_marginal_standard_errors_are_calibrated(params: dict) -> None:
    """Over 20 simulated data sets (100 bins), z = mean residual / SE has mean ~0, SD ~1."""
    z = []
    for seed in range(20):
        _, fit = _primary(params, seed=100 + seed, n_therapists=6, per=6)
        bins = marginal_bins(fit.fit, n_bins=5, min_per_bin=5)
        z += list(bins["y"] / bins["se"])
    z_arr = np.asarray(z)
    assert len(z_arr) == 100
    assert abs(z_arr.mean()) < 0.3, z_arr.mean()
    assert 0.7 < z_arr.std() < 1.3, z_arr.std()


def _dense_se(fit: ModelFit, rows: np.ndarray) -> float:
    """sqrt(w'(V - X Cov(beta) X')w) with V built as a dense n x n matrix."""
    problem = fit.problem
    assert problem is not None
    n = problem.n
    v = fit.sigma2 * np.eye(n)
    for factor, cov in zip(problem.factors, covariances(problem, fit.theta, fit.sigma2),
                           strict=True):
        k = factor.z.shape[1]
        z = np.zeros((n, factor.n_levels * k))
        for j in range(k):
            z[np.arange(n), factor.codes * k + j] = factor.z[:, j]
        v += z @ np.kron(np.eye(factor.n_levels), cov) @ z.T
    w = rows / rows.sum()
    xw = problem.x.T @ w
    return float(np.sqrt(w @ v @ w - xw @ fit.vcov.to_numpy() @ xw))


def test_marginal_standard_error_equals_the_dense_formula(params: dict) -> None:
    _, fit = _primary(params, seed=4, n_therapists=5, per=6)
    bins = marginal_bins(fit.fit, n_bins=4, min_per_bin=5)
    problem = fit.fit.problem
    marginal = problem.x @ fit.fit.beta.to_numpy()
    order = np.argsort(marginal, kind="stable")
    edges = np.cumsum(bins["n"].to_numpy())
    for b, stop in enumerate(edges):
        rows = np.zeros(problem.n)
        rows[order[stop - bins["n"].iloc[b]:stop]] = 1.0
        assert np.isclose(bins["se"].iloc[b], _dense_se(fit.fit, rows), rtol=1e-8)
        assert np.isclose(bins["y"].iloc[b], (problem.y - marginal)[rows == 1].mean())


def test_no_bin_is_smaller_than_min_per_bin(params: dict) -> None:
    sim, fit = _primary(params, seed=3)
    diag = diagnostics(fit, n_points=50, n_bins=20, min_per_bin=100)
    for plot in ("residual_vs_fitted", "marginal_residual_vs_fitted"):
        binned = diag[diag["plot"] == plot]
        assert len(binned) == len(sim.scored) // 100
        assert binned["n"].min() >= 100 and binned["n"].sum() == len(sim.scored)


def test_a_random_effect_of_fewer_values_than_min_per_bin_has_no_qq_points(
        params: dict) -> None:
    """Three therapists: their QQ 'quantiles' were the three therapists' own standardised
    random effects. Below min_per_bin values a component is left out, like a small cell."""
    sim, fit = _primary(params, seed=3, n_therapists=3, per=8)
    assert sim.scored["therapist_id"].nunique() == 3
    n_clients = sim.scored["client_id"].nunique()   # 29: more than 5, fewer than 50 points
    qq = diagnostics(fit, n_points=50, n_bins=10, min_per_bin=5)
    qq = qq[qq["plot"] == "qq"]
    assert qq.groupby("component").size().to_dict() == {
        "residual": 50, "client": n_clients, "client_time": n_clients}
    assert set(diagnostics(fit, n_points=50, n_bins=10, min_per_bin=3)
               .query("plot == 'qq'")["component"]) == {
        "residual", "therapist", "client", "client_time"}


def test_marginal_words_on_the_shipped_fit(root) -> None:
    """The sentence under the diagnostics figure, from the committed results."""
    diag = pd.read_csv(root / "results" / "diagnostics.csv")
    marg = diag[(diag["model"] == "primary") & (diag["plot"] == "marginal_residual_vs_fitted")]
    assert marginal_words(marg) == (
        "Marginal residuals: 20 of 20 bins (of 114 to 115 sessions each) have a 95% interval "
        "that includes zero; by chance alone about 1 of 20 would not. The largest mean "
        "residual is 0.52 points.")


def test_marginal_words_with_few_bins_of_one_size() -> None:
    """A small export: 3 bins of 5 sessions. Not "about 0 of 3", not "5 to 5 sessions";
    the bin with |y / se| = 2.5 is outside its interval."""
    marg = pd.DataFrame({"y": [0.2, -1.0, 0.4], "se": [0.5, 0.4, 0.5], "n": [5, 5, 5]})
    assert marginal_words(marg) == (
        "Marginal residuals: 2 of 3 bins (of 5 sessions each) have a 95% interval that "
        "includes zero; by chance alone about 1 bin in 20 would not. The largest mean "
        "residual is 1.00 points.")
    one = marginal_words(marg.iloc[:1])
    assert one.startswith("Marginal residuals: 1 of 1 bin (of 5 sessions each)")
