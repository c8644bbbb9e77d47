"""Tests of pipeline/models/: spec, design, checks, engine against lme4/lmerTest, tables.

The lme4 / lmerTest reference values are fixtures made by
``tests/fixtures/lme4/make_fixtures.py`` (which runs ``tests/r/lme4_reference.R``) on
FROZEN data files; R is not needed to run these tests.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import linalg

from pipeline import models as M
from pipeline.errors import NotEstimableError, SettingsError, SpecError
from pipeline.labels import without_advice
from pipeline.models import checks
from pipeline.models.checks import _clearly_full_rank, collinear_terms, run_checks
from pipeline.models.engine import (
    GRAD_DIRECT_MIN,
    Problem,
    ReTerm,
    _Counter,
    fd_derivatives,
    optimize_theta,
)
from pipeline.models.fitting import design_matrices, fit_formula

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lme4"
#: Frozen data sets; ``missing`` has the holes of real exports (blank scores, clients with
#: one or no complete row), so that R's rows and centring are held to ours.
DATASETS = ("default", "large_therapist", "zero_therapist", "missing")
DEGENERATE = ("one_therapist", "two_sessions")
#: Models fitted in lme4 by tests/r/lme4_reference.R.
REFERENCE_MODELS = ("primary", "growth", "total_alliance", "alliance_levels_goal", "sens_ml",
                    "sens_correlated")
#: Models whose rows or predictors the R script builds itself in base R (lags, detrending,
#: min_sessions, the therapist / client split), fitted on every frozen data set.
BUILT_MODELS = ("lagged", "sens_detrended", "sens_min3", "therapist_vs_client")
#: Models of the client covariates of the frozen clients_<dataset>.csv files.
MODERATION_MODELS = ("approach_main", "moderation_approach", "modality_main",
                     "moderation_modality")
WITH_CLIENTS = ("default", "zero_therapist", "large_therapist", "missing")
#: Models that differ from the primary model's data by the formula only (complete rows),
#: fitted in R on every data set, the degenerate ones included.
FORMULA_MODELS = ("goal_only", "task_only", "bond_only", "alliance_levels_task",
                  "alliance_levels_bond", "alliance_time_goal", "alliance_time_task",
                  "alliance_time_bond")
PRIMARY_TERMS = ["Intercept", "time", "goal_within", "task_within", "bond_within",
                 "goal_between", "task_between", "bond_between"]


def read_data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / f"data_{name}.csv",
                       dtype={"client_id": str, "therapist_id": str})


def read_clients(name: str) -> pd.DataFrame:
    """A frozen clients fixture, read as the fit stage reads clients.csv."""
    return pd.read_csv(FIXTURES / f"clients_{name}.csv", dtype={"client_id": str})


@pytest.fixture(scope="module")
def plan() -> M.ModelPlan:
    return M.load_specs()


@pytest.fixture(scope="module")
def lme4() -> dict[str, pd.DataFrame]:
    return {part: pd.read_csv(FIXTURES / f"lme4_{part}.csv")
            for part in ("fixed", "varcomp", "fit", "refusals", "unchecked")}


@pytest.fixture(scope="module")
def reference_fits(plan: M.ModelPlan) -> dict[tuple[str, str], M.FitResult]:
    """Our fits of the lme4 reference models on the fixture data sets (no ML refits)."""
    fits = {}
    for dataset in (*DATASETS, *DEGENERATE):
        data = read_data(dataset)
        models = REFERENCE_MODELS if dataset in DATASETS else ("primary", "sens_correlated")
        for name in models:
            fits[dataset, name] = M.fit_model(data, None, plan.get(name), {},
                                              refit_ml=False)
    return fits


@pytest.fixture(scope="module")
def stage_fits(plan: M.ModelPlan) -> dict[tuple[str, str], M.FitResult]:
    """The lagged, detrended, min-3, therapist/client, moderation and formula-only models
    fitted as the fit stage fits them: fit_all on the scored rows and the clients table,
    with the model settings of params.yaml (the formula-only ones on the degenerate data
    sets too)."""
    params = yaml.safe_load((FIXTURES.parents[2] / "params.yaml").read_text(encoding="utf-8"))
    settings = M.settings_from(params["model"])
    fits = {}
    for dataset in (*DATASETS, *DEGENERATE):
        clients = read_clients(dataset) if dataset in WITH_CLIENTS else None
        names = FORMULA_MODELS + (BUILT_MODELS if dataset in DATASETS else ()) + (
            MODERATION_MODELS if clients is not None else ())
        for fr in M.fit_all(read_data(dataset), clients, settings, specs=plan, models=names,
                            verbose=False):
            fits[dataset, fr.name] = fr
    return fits


@pytest.fixture(scope="module")
def all_fits(reference_fits, stage_fits) -> dict[tuple[str, str], M.FitResult]:
    return {**reference_fits, **stage_fits}


# --------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------


def small_scored() -> pd.DataFrame:
    """Two therapists, three clients; one row misses wellbeing."""
    return pd.DataFrame({
        "client_id": ["C1", "C1", "C1", "C2", "C2", "C3", "C3"],
        "therapist_id": ["T1", "T1", "T1", "T1", "T1", "T2", "T2"],
        "session": [1, 2, 3, 1, 3, 1, 2],
        "goal": [3.0, 4.0, 5.0, 2.0, 4.0, 1.0, 5.0],
        "task": [3.0, 4.0, 5.0, 2.0, 4.0, 1.0, 5.0],
        "bond": [4.0] * 7,
        "wellbeing": [20.0, 21.0, 22.0, 18.0, 19.0, 15.0, np.nan],
    })


def test_prepare_hand_computed() -> None:
    out = M.prepare(small_scored())
    assert out.attrs["n_input"] == 7 and out.attrs["n_missing"] == 1
    assert list(out["client_id"]) == ["C1", "C1", "C1", "C2", "C2", "C3"]
    np.testing.assert_array_equal(out["time"], [0, 1, 2, 0, 2, 0])
    np.testing.assert_allclose(out["goal_within"], [-1, 0, 1, -1, 1, 0])
    np.testing.assert_allclose(out["goal_between"],
                               [4 / 3, 4 / 3, 4 / 3, 1 / 3, 1 / 3, -5 / 3])
    np.testing.assert_allclose(out["goal_therapist"], [5 / 6] * 5 + [-5 / 3])
    np.testing.assert_allclose(out["goal_client"], [0.5, 0.5, 0.5, -0.5, -0.5, 0.0])
    np.testing.assert_allclose(out[["bond_within", "bond_between"]], 0.0)
    np.testing.assert_allclose(out["total"], (2 * out["goal"] + 4) / 3)


@pytest.mark.parametrize("change, message", [
    (lambda d: pd.concat([d, d.iloc[[0]]]), "more than once"),
    (lambda d: d.assign(therapist_id=["T1", "T2", "T1", "T1", "T1", "T2", "T2"]),
     "more than one therapist"),
    (lambda d: d.drop(columns="bond"), "columns missing"),
])
def test_prepare_rejects(change, message: str) -> None:
    with pytest.raises(NotEstimableError, match=message):
        M.prepare(change(small_scored()))


def _prepare_by_sorting(scored: pd.DataFrame) -> pd.DataFrame:
    """prepare's rows as pandas' stable sort orders them (the rule prepare follows)."""
    need = ["client_id", "therapist_id", "session", "goal", "task", "bond", "wellbeing"]
    kept = scored[scored[need].notna().all(axis=1)]
    return kept.sort_values(["therapist_id", "client_id", "session"],
                            kind="mergesort").reset_index(drop=True)


@pytest.mark.parametrize("ids", ["text", "numbers", "mixed"])
def test_prepare_orders_rows_as_a_stable_sort(ids: str) -> None:
    """Rows already in order are kept as they are, others sorted (stable, by therapist,
    client, session); numeric and mixed-type labels as pandas sorts them; the same
    bits whatever order the rows came in."""
    base = read_data("default")
    if ids == "numbers":
        base = base.assign(client_id=pd.factorize(base["client_id"])[0] * 7 % 1000,
                           therapist_id=pd.factorize(base["therapist_id"])[0])
    elif ids == "mixed":   # object labels of two types: sorted by pandas' rule
        base = base.assign(therapist_id=[1 if t == base["therapist_id"].iloc[0] else str(t)
                                         for t in base["therapist_id"]])
    shuffled = base.sample(frac=1.0, random_state=3).reset_index(drop=True)
    for frame in (base, shuffled):
        out = M.prepare(frame)
        expected = _prepare_by_sorting(frame)
        pd.testing.assert_frame_equal(out[expected.columns], expected)
    a, b = M.prepare(base), M.prepare(base.iloc[::-1])
    assert a["goal_within"].to_numpy().tobytes() == b["goal_within"].to_numpy().tobytes()


def test_lags_detrending_min_sessions(plan: M.ModelPlan) -> None:
    data = M.prepare(small_scored())
    lagged = M.add_lags(data)
    assert list(lagged["client_id"]) == ["C1", "C1", "C2"]
    np.testing.assert_allclose(lagged["wellbeing_lag"], [20, 21, 18])
    np.testing.assert_allclose(M.detrend_within(data)["goal_within"], 0.0, atol=1e-12)
    sub = M.model_data(small_scored(), None, plan.get("sens_min3"))
    assert set(sub["client_id"]) == {"C1"} and sub.attrs["n_excluded"] == 3


def test_holm() -> None:
    np.testing.assert_allclose(M.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])


# --------------------------------------------------------------------------------------
# Specifications
# --------------------------------------------------------------------------------------


def test_random_parts_are_parsed(plan: M.ModelPlan) -> None:
    primary = plan.get("primary").random
    assert primary.terms == (ReTerm("therapist_id", ("(Intercept)",)),
                             ReTerm("client_id", ("(Intercept)",)),
                             ReTerm("client_id", ("time",)))
    corr = plan.get("sens_correlated").random
    assert corr.terms == (ReTerm("therapist_id", ("(Intercept)",)),
                          ReTerm("client_id", ("(Intercept)", "time")))
    assert M.parse_random("(1 + time || client_id)") == (
        ReTerm("client_id", ("(Intercept)",)), ReTerm("client_id", ("time",)))
    assert M.parse_random("(time | g)") == (ReTerm("g", ("(Intercept)", "time")),)
    assert plan.get("primary").random.component("client_id", "time") == "client_time"


@pytest.mark.parametrize("text", ["1 | g", "(1 | a/b)", "(x^2 | g)", "(0 | g)", ""])
def test_bad_random_parts_are_refused(text: str) -> None:
    with pytest.raises(SpecError):
        M.parse_random(text)


def test_specs_reject_unknown_keys(tmp_path: Path) -> None:
    raw = yaml.safe_load(M.SPEC_PATH.read_text(encoding="utf-8"))
    raw["models"]["primary"]["fomula"] = "typo"
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(SpecError, match=r"models.yaml, model primary: unknown key\(s\) "
                                        r"\['fomula'\]"):
        M.load_specs(path)


def test_settings_are_validated() -> None:
    with pytest.raises(SettingsError, match=r"model\.engine"):
        M.settings_from({"engine": "lme5"})
    with pytest.raises(SettingsError, match="unknown key"):
        M.settings_from({"optimizers": ["powell"]})
    with pytest.raises(SettingsError, match=r"model\.checks"):
        M.settings_from({"checks": {"one_level": "maybe"}})


def _patsy_design(formula: str, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    import patsy

    y, x = patsy.dmatrices(formula, data, return_type="dataframe", NA_action="raise")
    return np.asarray(y, dtype=float).ravel(), np.asarray(x, dtype=float), list(x.columns)


def test_design_matrices_without_patsy_equal_patsy(plan: M.ModelPlan) -> None:
    """Formulas ``y ~ a + b`` of numeric columns skip patsy (fitting._plain_design): the
    same names, order, values (bit for bit) and memory layout as patsy's matrices, for
    every such formula of models.yaml; anything else still goes to patsy."""
    from pipeline.models.fitting import _plain_design

    data = M.prepare(read_data("default"))
    data["session_int"] = data["session"].astype(int)      # integers become floats
    formulas = [spec.formula for spec in plan.models
                if spec.data == "complete" and not spec.covariates]
    formulas.append("wellbeing ~ session_int\n + goal_within")
    plain = [f for f in formulas if _plain_design(f, data) is not None]
    assert "wellbeing ~ session_int\n + goal_within" in plain and len(plain) >= 3
    for formula in plain:
        y, x, names = design_matrices(formula, data)
        py, px, pnames = _patsy_design(formula, data)
        assert names == pnames and names[0] == "Intercept"
        assert np.array_equal(y, py) and np.array_equal(x, px)
        assert x.flags.c_contiguous == px.flags.c_contiguous
    # not plain: interaction, transform, no intercept, repeated term, text column, NaN
    with_nan = data.assign(goal_within=data["goal_within"].where(data.index > 0))
    for formula, frame in [("wellbeing ~ time * goal_within", data),
                           ("wellbeing ~ np.log(session)", data),
                           ("wellbeing ~ time - 1", data),
                           ("wellbeing ~ time + time", data),
                           ("wellbeing ~ client_id", data),
                           ("wellbeing ~ goal_within", with_nan)]:
        assert _plain_design(formula, frame) is None, formula
    with pytest.raises(NotEstimableError, match="missing"):
        design_matrices("wellbeing ~ goal_within", with_nan)


# --------------------------------------------------------------------------------------
# Engine: exactness
# --------------------------------------------------------------------------------------


def _problem(data: pd.DataFrame, random: str, formula: str) -> Problem:
    y, x, names = design_matrices(formula, data)
    terms = M.parse_random(random)
    cols = {c: data[c].to_numpy() for c in ("therapist_id", "client_id", "time")}
    return Problem(y, x, names, terms, cols)


def test_blocked_equals_dense_factorisation() -> None:
    """The nested blocked Cholesky gives the dense factorisation's deviance exactly."""
    data = M.prepare(read_data("zero_therapist"))
    data = data[data["therapist_id"].isin(sorted(data["therapist_id"].unique())[:6])]
    for random in ("(1 | therapist_id) + (1 | client_id) + (0 + time | client_id)",
                   "(1 | therapist_id) + (1 + time | client_id)"):
        nested = _problem(data, random, "wellbeing ~ time + goal_within")
        assert nested.structure == "nested"
        dense = _problem(data, random, "wellbeing ~ time + goal_within")
        dense.structure = "dense"
        dense._prepare()
        rng = np.random.default_rng(1)
        for _ in range(3):
            theta = np.abs(rng.normal(size=nested.n_theta)) + 0.1
            theta[~nested.is_diagonal()] *= -1
            for reml in (True, False):
                assert nested.deviance(theta, reml) == pytest.approx(
                    dense.deviance(theta, reml), rel=1e-10)
                # the optimiser's shortcut equals the full blocked factor
                assert nested.quick_deviance(theta, reml) == pytest.approx(
                    nested.factorize(theta).deviance(nested.n, nested.p, reml), rel=1e-12)
        fac_n, fac_d = nested.factorize(theta), dense.factorize(theta)
        for b_n, b_d in zip(nested.random_effects(fac_n), dense.random_effects(fac_d),
                            strict=True):
            np.testing.assert_allclose(b_n, b_d, rtol=1e-8, atol=1e-10)


def test_deviance_derivatives_match_finite_differences(reference_fits) -> None:
    """At the optimum: the profiled deviance is flat, and the (theta, sigma) deviance is
    flat in sigma at sigma-hat (its analytic minimiser), by central differences."""
    fit = reference_fits["default", "primary"].fit
    problem = fit.problem
    h = 1e-4
    for i in range(problem.n_theta):
        e = np.zeros(problem.n_theta)
        e[i] = h
        g = (problem.deviance(fit.theta + e, True)
             - problem.deviance(fit.theta - e, True)) / (2 * h)
        assert abs(g) < 1e-3
    vp = np.append(fit.theta, np.sqrt(fit.sigma2))
    e = np.zeros(len(vp))
    e[-1] = 1e-5
    g_sigma = (problem.deviance_vp(vp + e, True) - problem.deviance_vp(vp - e, True)) / 2e-5
    assert abs(g_sigma) < 1e-3
    # the (theta, sigma) deviance at sigma-hat equals the profiled deviance
    assert problem.deviance_vp(vp, True) == pytest.approx(problem.deviance(fit.theta, True),
                                                          abs=1e-8)


@pytest.mark.parametrize("random", [
    "(1 | therapist_id) + (1 | client_id) + (0 + time | client_id)",   # 3-level, uncorr.
    "(1 | therapist_id) + (1 + time | client_id)",                     # 3-level, correlated
    "(1 | client_id) + (0 + time | client_id)",                        # 2-level, uncorr.
    "(1 + time | client_id)",                                          # 2-level, correlated
])
@pytest.mark.parametrize("structure", ["blocked", "dense"])
def test_analytic_gradient_matches_central_differences(random: str, structure: str) -> None:
    """Problem.deviance_gradient equals central differences of the deviance at several
    thetas (REML and ML), for the blocked factor and the dense one; and the deviance that
    comes with it equals Problem.deviance."""
    data = M.prepare(read_data("zero_therapist"))
    data = data[data["therapist_id"].isin(sorted(data["therapist_id"].unique())[:8])]
    problem = _problem(data, random, "wellbeing ~ time + goal_within")
    assert problem.structure == ("nested" if "therapist" in random else "one")
    if structure == "dense":
        problem.structure = "dense"
        problem._prepare()
    rng = np.random.default_rng(3)
    h = 1e-5
    for draw in range(6):
        theta = np.abs(rng.normal(size=problem.n_theta)) + 0.05
        theta[~problem.is_diagonal()] *= -0.5
        # a diagonal element just below GRAD_DIRECT_MIN (the path without Lambda^-1) and
        # just above it (Lambda^-1 nearly at its least well conditioned)
        if draw >= 2:
            theta[np.flatnonzero(problem.is_diagonal())[draw % 2]] = (
                0.3 if draw < 4 else 3.0) * GRAD_DIRECT_MIN
        for reml in (True, False):
            grad = problem.deviance_gradient(theta, reml)
            central = np.array([(problem.deviance(theta + h * e, reml)
                                 - problem.deviance(theta - h * e, reml)) / (2 * h)
                                for e in np.eye(problem.n_theta)])
            np.testing.assert_allclose(grad, central, rtol=1e-6,
                                       atol=1e-6 * max(1.0, float(np.max(np.abs(central)))))
            value, grad2 = problem.deviance_and_gradient(theta, reml)
            assert value == pytest.approx(problem.deviance(theta, reml), rel=1e-12)
            np.testing.assert_array_equal(grad, grad2)


def test_analytic_and_finite_difference_optimisers_agree(reference_fits) -> None:
    """L-BFGS-B with the analytic gradient (and the polish's Hessian from it) and with
    forward differences (polish by deriv12), on scaled theta and not, reach the same
    optimum (REML and ML) and the same checks."""
    problem = reference_fits["default", "primary"].fit.problem
    for reml in (True, False):
        exact = optimize_theta(problem, reml)
        for other in ({"analytic_gradient": False}, {"scale_theta": False},
                      {"analytic_gradient": False, "scale_theta": False}):
            fd = optimize_theta(problem, reml, other)
            assert exact.objective == pytest.approx(fd.objective, abs=1e-7)
            np.testing.assert_allclose(exact.theta, fd.theta, atol=1e-5)
            assert exact.converged and fd.converged
            assert exact.singular == fd.singular


def test_theta_scale_is_the_rms_of_each_random_effect_column(reference_fits) -> None:
    """Problem.theta_scale: 1 for intercepts, the root mean square of time for a time
    slope (row of the Lambda template the theta sits in)."""
    fit = reference_fits["default", "primary"].fit
    problem, rows = fit.problem, reference_fits["default", "primary"].data
    rms_time = float(np.sqrt(np.mean(rows["time"].to_numpy(dtype=float) ** 2)))
    expected = [rms_time if problem.factors[fi].columns[i] == "time" else 1.0
                for fi, i, _ in problem.theta_index]
    np.testing.assert_allclose(problem.theta_scale(), expected, rtol=1e-12)
    assert sorted(expected)[-1] == pytest.approx(rms_time) and rms_time > 2


def test_hessian_from_the_analytic_gradient_matches_deriv12(reference_fits) -> None:
    """The polish's Hessian (central differences of the analytic gradient) equals lme4's
    deriv12 Hessian of the deviance (the checks' one) at the optimum and off it."""
    fit = reference_fits["default", "primary"].fit
    problem = fit.problem
    for reml in (True, False):
        f = _Counter(problem, reml)
        for theta in (fit.theta, fit.theta * 1.3):
            idx = np.arange(problem.n_theta)
            _, fd = fd_derivatives(f, theta)
            np.testing.assert_allclose(f.gradient_hessian(theta, idx), fd, rtol=1e-3,
                                       atol=1e-4 * float(np.max(np.abs(fd))))


def test_balanced_one_way_anova_has_the_closed_form_optimum() -> None:
    """REML of y_ij = mu + a_i + e_ij, balanced: s2_a = (MSB - MSW) / n, s2_e = MSW."""
    rng = np.random.default_rng(7)
    groups, n = 12, 5
    a = rng.normal(0, 2.0, groups)
    y = 10 + np.repeat(a, n) + rng.normal(0, 1.0, groups * n)
    data = pd.DataFrame({"y": y, "g": np.repeat([f"g{i:02d}" for i in range(groups)], n)})
    means = data.groupby("g")["y"].mean()
    msb = n * float(np.sum((means - y.mean()) ** 2)) / (groups - 1)
    msw = float(np.sum((y - data["g"].map(means)) ** 2)) / (groups * (n - 1))
    fit = M.fit("y ~ 1", "(1 | g)", data)
    assert fit.variances["g"] == pytest.approx((msb - msw) / n, rel=1e-6)
    assert fit.variances["residual"] == pytest.approx(msw, rel=1e-6)
    assert fit.beta["Intercept"] == pytest.approx(y.mean(), rel=1e-12)
    # balanced case: the intercept's Satterthwaite df is exactly groups - 1
    assert fit.df["Intercept"] == pytest.approx(groups - 1, rel=1e-4)
    warm = M.fit("y ~ 1", "(1 | g)", data, start=fit.theta)
    assert warm.loglik == pytest.approx(fit.loglik, abs=1e-9)
    assert warm.record["start"] == pytest.approx(list(fit.theta))


def test_warm_start_reaches_the_same_optimum(reference_fits) -> None:
    fit = reference_fits["default", "primary"].fit
    warm = optimize_theta(fit.problem, True, start=fit.theta)
    assert warm.objective == pytest.approx(-2 * fit.loglik, abs=1e-8)
    assert warm.evaluations < fit.record["evaluations"]


# --------------------------------------------------------------------------------------
# Agreement with lme4 and lmerTest
# --------------------------------------------------------------------------------------


REFERENCE_CASES = [(d, m) for d in DATASETS for m in REFERENCE_MODELS] + [
    (d, m) for d in DEGENERATE for m in ("primary", "sens_correlated")] + [
    (d, m) for d in DATASETS for m in BUILT_MODELS] + [
    (d, m) for d in WITH_CLIENTS for m in MODERATION_MODELS] + [
    (d, m) for d in (*DATASETS, *DEGENERATE) for m in FORMULA_MODELS]


@pytest.mark.parametrize("dataset, name", REFERENCE_CASES)
def test_agrees_with_lme4(all_fits, lme4, dataset: str, name: str) -> None:
    fr = all_fits[dataset, name]
    assert fr.status in ("fitted", "singular"), fr.reason or fr.note
    ours = M.coefficients([fr]).set_index("term")
    ref = lme4["fixed"].query("dataset == @dataset and model == @name").set_index("term")
    if fr.spec.covariates:   # patsy puts C(x) and its interactions elsewhere than R
        assert sorted(ours.index) == sorted(ref.index)
        ours = ours.loc[ref.index]
    assert list(ours.index) == list(ref.index)
    # fixed effects within 0.01 of lme4's SE; SEs within 1 %
    assert ((ours["estimate"] - ref["estimate"]).abs() / ref["std_error"]).max() < 0.01
    assert (ours["std_error"] / ref["std_error"] - 1).abs().max() < 0.01
    # lmerTest's Satterthwaite df within 2 %, p-values within 1e-3
    assert (ours["df"] / ref["df"] - 1).abs().max() < 0.02
    assert (ours["p_value"] - ref["p_value"]).abs().max() < 1e-3
    # variance components within 1 % (zero ones within 1e-6 of the residual variance)
    comps = M.variance_components([fr]).set_index("component")["variance"]
    ref_vc = lme4["varcomp"].query("dataset == @dataset and model == @name")
    ref_vc = ref_vc.set_index("component")["variance"]
    assert sorted(comps.index) == sorted(ref_vc.index)
    tol = np.maximum(0.01 * ref_vc.abs(), 1e-6 * ref_vc["residual"])
    assert ((comps[ref_vc.index] - ref_vc).abs() <= tol).all()
    ref_fit = lme4["fit"].query("dataset == @dataset and model == @name").iloc[0]
    assert fr.fit.loglik == pytest.approx(ref_fit["loglik"], abs=1e-4)
    assert fr.fit.loglik >= ref_fit["loglik"] - 1e-6  # never a worse optimum than lme4
    assert fr.fit.n_obs == ref_fit["n_obs"]
    # isSingular agrees, except where lme4's optimiser stopped a hair off the boundary
    # (a variance below 1e-6 of the residual's, where our optimum sits at zero)
    near_zero = bool((ref_vc.drop("residual") < 1e-6 * ref_vc["residual"]).any())
    assert fr.fit.singular == bool(ref_fit["singular"]) or (fr.fit.singular and near_zero)
    stats_row = M.fit_statistics([fr]).iloc[0]
    assert stats_row["r2_marginal"] == pytest.approx(ref_fit["r2_marginal"], abs=1e-4)
    assert stats_row["r2_conditional"] == pytest.approx(ref_fit["r2_conditional"], abs=1e-4)
    # the random part fitted is the one the R script fitted (simplified on degenerate data)
    assert fr.fit.record["random"] == ref_fit["random"]


def test_lme4_reference_rows_are_the_models_rows(plan, stage_fits, lme4) -> None:
    """R built each model's rows on its own: the counts left out by lags and min_sessions
    agree with ours (n_obs is compared above), every model of BUILT_MODELS,
    MODERATION_MODELS and FORMULA_MODELS has a reference on every data set it is tested
    on, and every model of pipeline/models.yaml has one on the frozen data sets."""
    fit = lme4["fit"].set_index(["dataset", "model"])
    for dataset in DATASETS:
        names = {spec.name for spec in plan.models
                 if dataset in WITH_CLIENTS or not spec.covariates}
        assert names <= set(fit.loc[dataset].index), dataset
        assert {(dataset, name) for name in names} <= set(REFERENCE_CASES)
    for (dataset, name), fr in stage_fits.items():
        n_rows = len(read_data(dataset))
        assert fr.n_input == n_rows
        assert fit.loc[(dataset, name), "n_obs"] == n_rows - fr.n_missing - fr.n_excluded
    default = fit.loc["default", "n_obs"]
    assert default["lagged"] == len(read_data("default")) - read_data(
        "default")["client_id"].nunique()   # every client's first row has no previous one
    assert default["sens_min3"] < default["primary"]


def test_missing_fixture_has_the_holes_of_real_exports(lme4) -> None:
    """data_missing.csv has every kind of hole the lme4 references are meant to cover,
    in a realistic share, and R kept exactly the complete rows in every model of the
    outcome and of the alliance alone (the sessions with an outcome, as models.yaml says),
    which are fewer than the sessions with an alliance score."""
    data = read_data("missing")
    scores = data[["goal", "task", "bond"]]
    incomplete = data[["goal", "task", "bond", "wellbeing"]].isna().any(axis=1)
    assert 0.05 <= incomplete.mean() <= 0.15
    assert (data["wellbeing"].isna() & scores.notna().all(axis=1)).sum() >= 20
    assert (scores.isna().all(axis=1) & data["wellbeing"].notna()).sum() >= 20
    assert (scores.isna().sum(axis=1) == 1).sum() >= 20   # one subscale missing
    quarters = (scores * 4 - (scores * 4).round()).abs() > 1e-9   # prorated: 3 of 4 items
    assert (quarters.any(axis=1) & ~incomplete).sum() >= 20
    complete = data[~incomplete]
    per_client = complete.groupby("client_id").size()
    assert (per_client == 1).sum() >= 3   # one rated session (within parts 0)
    assert data["client_id"].nunique() - len(per_client) >= 2   # no complete row at all
    n_obs = lme4["fit"].query("dataset == 'missing'").set_index("model")["n_obs"]
    with_outcome = ["primary", "growth", "total_alliance", "sens_ml", "sens_correlated",
                    "sens_detrended", "therapist_vs_client", *FORMULA_MODELS,
                    "alliance_levels_goal"]
    assert (n_obs[with_outcome] == len(complete)).all()
    assert len(complete) < scores.notna().all(axis=1).sum()
    assert n_obs["lagged"] == len(complete) - len(per_client)
    assert n_obs["sens_min3"] == per_client[per_client >= 3].sum()
    clients = read_clients("missing")
    for covariate in ("approach", "modality"):   # blank covariate: left out of its models
        kept = complete["client_id"].isin(clients.loc[clients[covariate].notna(),
                                                      "client_id"])
        assert n_obs[f"{covariate}_main"] == kept.sum() < len(complete)
        assert n_obs[f"moderation_{covariate}"] == kept.sum()


@pytest.mark.parametrize("dataset", WITH_CLIENTS)
def test_clients_fixture_holds_only_categories(dataset: str) -> None:
    """The frozen clients fixture: one row per client of the data set, approach shared by
    a therapist's clients, blank cells only where datasets.yaml's clients_blank says, and
    nothing but categories the anonymity rules accept."""
    from pipeline.anonymity import check_covariates, load_rules

    clients = read_clients(dataset)
    assert list(clients.columns) == ["client_id", "approach", "modality"]
    data = read_data(dataset)
    assert sorted(clients["client_id"]) == sorted(data["client_id"].unique())
    config = yaml.safe_load((FIXTURES / "datasets.yaml").read_text(encoding="utf-8"))
    blank = config[dataset].get("clients_blank") or {}
    for covariate in ("approach", "modality"):
        assert sorted(clients.loc[clients[covariate].isna(), "client_id"]) == sorted(
            blank.get(covariate, []))
    clients = clients.fillna({"approach": "CBT", "modality": "video"})  # levels it has
    approach = data.merge(clients, on="client_id").groupby("therapist_id")["approach"]
    assert (approach.nunique() == 1).all()
    assert set(clients["approach"]) == {"CBT", "humanistic", "psychodynamic"}
    assert set(clients["modality"]) == {"in person", "video"}
    problems, continuous = check_covariates(clients, ["approach", "modality"],
                                            f"clients_{dataset}.csv", load_rules())
    assert problems == [] and continuous == []


def test_degenerate_data_are_simplified_as_documented(reference_fits, lme4) -> None:
    """lme4 refuses the full model on these data; our checks drop the level and say so."""
    one = reference_fits["one_therapist", "primary"]
    assert one.simplification.startswith("therapist level dropped: 1 therapist")
    refusal = lme4["refusals"].query("dataset == 'one_therapist' and model == 'primary'")
    assert "grouping factors must have > 1 sampled level" in refusal["message"].iloc[0]
    # with lme4's checks off, the therapist variance is arbitrary at the same likelihood
    unchecked = lme4["unchecked"].query("dataset == 'one_therapist' and model == 'primary'")
    assert unchecked["loglik"].iloc[0] == pytest.approx(one.fit.loglik, abs=1e-3)
    assert unchecked["intercept_se"].iloc[0] > 2 * one.fit.std_error["Intercept"]
    two = reference_fits["two_sessions", "primary"]
    assert "client random slope on time dropped" in two.simplification
    refusal = lme4["refusals"].query("dataset == 'two_sessions' and model == 'sens_correlated'")
    assert "number of observations" in refusal["message"].iloc[0]


@pytest.mark.parametrize("dataset", DEGENERATE)
def test_formula_models_simplified_where_lme4_says_why(stage_fits, lme4, dataset: str) -> None:
    """Each formula-only model our checks simplify on a degenerate data set has lme4's
    answer to its full random part: with one therapist lme4 refuses, and with its checks
    off reaches our likelihood (the therapist variance is not identified); with two
    sessions per client lme4 fits the uncorrelated slope without error, never below our
    likelihood, and for goal and bond over sessions the slope's variance is zero there
    (singular: the same likelihood as the model without it)."""
    refusals = lme4["refusals"].query("dataset == @dataset").set_index("model")
    unchecked = lme4["unchecked"].query("dataset == @dataset").set_index("model")
    simplified = {name for name in FORMULA_MODELS if stage_fits[dataset, name].simplification}
    assert simplified == set(refusals.index) & set(FORMULA_MODELS)
    assert simplified == set(unchecked.index) & set(FORMULA_MODELS)
    for name in sorted(simplified):
        fr, message, full = stage_fits[dataset, name], refusals.loc[name, "message"], \
            unchecked.loc[name]
        if dataset == "one_therapist":
            assert fr.simplification.startswith("therapist level dropped: 1 therapist")
            assert "grouping factors must have > 1 sampled level" in message
            assert full["loglik"] == pytest.approx(fr.fit.loglik, abs=1e-6)
        else:
            assert "client random slope on time dropped" in fr.simplification
            assert message == "fitted without error"
            assert full["loglik"] >= fr.fit.loglik - 1e-6
            if full["singular"]:
                assert full["client_time_variance"] == 0.0
                assert full["loglik"] == pytest.approx(fr.fit.loglik, abs=1e-6)
    if dataset == "one_therapist":
        assert simplified == set(FORMULA_MODELS)
    else:   # no random slope in the models of where the alliance lives: nothing to drop
        assert simplified == set(FORMULA_MODELS) - {"alliance_levels_task",
                                                     "alliance_levels_bond"}
        singular = set(unchecked.index[unchecked["singular"]]) & simplified
        assert singular == {"alliance_time_goal", "alliance_time_bond"}


def test_singular_fit_is_flagged(reference_fits) -> None:
    fr = reference_fits["zero_therapist", "primary"]
    comps = M.variance_components([fr]).set_index("component")["variance"]
    assert fr.status == "singular" and fr.fit.singular and fr.converged
    assert comps["therapist"] == 0.0
    assert fr.fit.record["checks"]["singular"]


def test_parameter_recovery(reference_fits) -> None:
    truth = yaml.safe_load((FIXTURES / "datasets.yaml").read_text(encoding="utf-8"))
    wb = truth["default"]["simulate"]["wellbeing"]
    table = M.coefficients([reference_fits["default", "primary"]]).set_index("term")
    assert list(table.index) == PRIMARY_TERMS
    for term in PRIMARY_TERMS:
        true = wb["intercept" if term == "Intercept" else term]
        assert abs((table.loc[term, "estimate"] - true) / table.loc[term, "std_error"]) < 3


def test_statsmodels_engine_agrees_with_native(reference_fits, plan: M.ModelPlan) -> None:
    """The second engine reaches the same optimum on the fixtures (reviewer's cross-check)."""
    data = read_data("default")
    native = reference_fits["default", "primary"]
    sm = M.fit_model(data, None, plan.get("primary"),
                     {"engine": "statsmodels", "statsmodels_optimizers": ["powell"]},
                     refit_ml=False)
    assert sm.fit.engine == "statsmodels" and sm.converged
    assert sm.fit.loglik == pytest.approx(native.fit.loglik, abs=1e-4)
    a, b = M.coefficients([native]).set_index("term"), M.coefficients([sm]).set_index("term")
    assert ((a["estimate"] - b["estimate"]).abs() / a["std_error"]).max() < 0.01
    assert (a["std_error"] / b["std_error"] - 1).abs().max() < 0.01
    assert (a["df"] / b["df"] - 1).abs().max() < 0.02
    corr = M.fit_model(data, None, plan.get("sens_correlated"), {"engine": "statsmodels"},
                       refit_ml=False)
    assert corr.status == "not estimable" and "statsmodels issue 8123" in corr.reason


# --------------------------------------------------------------------------------------
# Pre-fit checks: every error path
# --------------------------------------------------------------------------------------


def _check(data: pd.DataFrame, formula: str, random: str, **settings):
    y, x, names = design_matrices(formula, data)
    part = M.RandomPart("r", random, M.parse_random(random),
                        {"therapist_id": "therapist", "client_id": "client"})
    return run_checks("m", data, y, x, names, part, settings)


@pytest.fixture(scope="module")
def small() -> pd.DataFrame:
    data = M.prepare(read_data("zero_therapist"))
    return data[data["therapist_id"].isin(sorted(data["therapist_id"].unique())[:3])]


def test_check_one_level(small: pd.DataFrame) -> None:
    one = small[small["therapist_id"] == small["therapist_id"].iloc[0]]
    out = _check(one, "wellbeing ~ time", "(1 | therapist_id) + (1 | client_id)")
    assert out.random.factors == ("client_id",)
    assert out.simplifications == [
        "therapist level dropped: 1 therapist: a therapist variance is not identified "
        "(lme4: grouping factors must have > 1 sampled level)"]
    with pytest.raises(NotEstimableError, match="model m: 1 therapist"):
        _check(one, "wellbeing ~ time", "(1 | therapist_id) + (1 | client_id)",
               one_level="refuse")
    one_client = one[one["client_id"] == one["client_id"].iloc[0]]
    with pytest.raises(NotEstimableError, match="1 client"):
        _check(one_client, "wellbeing ~ time", "(1 | client_id)")


def test_check_same_grouping(small: pd.DataFrame) -> None:
    """Every therapist with one client: lme4 fits (1 | therapist) + (1 | client) and
    splits the sum of the two variances arbitrarily (on such data: "unable to evaluate
    scaled gradient" for two of the three alliance_levels models, an arbitrary 0.16/0.51
    split for the third); the pipeline reported those splits as therapist shares."""
    one_each = small.assign(therapist_id="T" + small["client_id"].astype(str))
    out = _check(one_each, "wellbeing ~ time", "(1 | therapist_id) + (1 + time | client_id)")
    assert out.random.formula == "(1 + time | client_id)"
    assert out.simplifications == [
        "therapist level dropped: each therapist has exactly one client (and each client "
        "one therapist), so the therapist and client variances cannot be told apart: only "
        "their sum is identified (lme4 fits an arbitrary split); the client variance "
        "includes the therapist variance"]
    with pytest.raises(NotEstimableError, match="model m: each therapist has exactly one "
                                                "client") as caught:
        _check(one_each, "wellbeing ~ time", "(1 | therapist_id) + (1 | client_id)",
               same_grouping="refuse")
    assert "model.checks.same_grouping: drop" in str(caught.value)
    # the slope-less factor goes, whichever is named first
    out = _check(one_each, "wellbeing ~ time", "(1 + time | client_id) + (1 | therapist_id)")
    assert out.random.formula == "(1 + time | client_id)"
    # one therapist with two clients is enough to tell them apart (lme4 fits both)
    first, second = sorted(one_each["client_id"].unique())[:2]
    shared = one_each.assign(therapist_id=one_each["therapist_id"].where(
        one_each["client_id"] != second, "T" + str(first)))
    out = _check(shared, "wellbeing ~ time", "(1 | therapist_id) + (1 | client_id)")
    assert out.random.factors == ("therapist_id", "client_id") and not out.simplifications
    # the shipped shape: several clients per therapist, nothing dropped
    assert not _check(small, "wellbeing ~ time",
                      "(1 | therapist_id) + (1 | client_id)").simplifications
    # level codes as the engine gives them need not be dense (a label without rows)
    y, x, names = design_matrices("wellbeing ~ time", one_each)
    random = "(1 | therapist_id) + (1 | client_id)"
    part = M.RandomPart("r", random, M.parse_random(random),
                        {"therapist_id": "therapist", "client_id": "client"})
    c_codes, c_labels = pd.factorize(one_each["client_id"])
    t_codes = 2 * c_codes           # every other therapist label unused
    groups = {"client_id": (c_codes, np.asarray(c_labels)),
              "therapist_id": (t_codes, np.arange(2 * len(c_labels)))}
    out = run_checks("m", one_each, y, x, names, part, {}, groups)
    assert out.random.factors == ("client_id",)


def test_check_few_sessions(small: pd.DataFrame) -> None:
    two = small.groupby("client_id").head(2)
    out = _check(two, "wellbeing ~ time", "(1 | therapist_id) + (1 + time | client_id)")
    assert out.random.formula == "(1 | therapist_id) + (1 | client_id)"
    assert "client random slope on time dropped" in out.simplifications[0]
    with pytest.raises(NotEstimableError, match="cannot be told from the residual"):
        _check(two, "wellbeing ~ time", "(1 | client_id) + (0 + time | client_id)",
               few_sessions="refuse")


def test_check_observations_against_random_effects(small: pd.DataFrame) -> None:
    first = small.groupby("client_id").head(1)
    with pytest.raises(NotEstimableError, match="number of levels of each grouping factor"):
        _check(first, "wellbeing ~ 1", "(1 | therapist_id) + (1 | client_id)")
    two = small.groupby("client_id").head(2)
    with pytest.raises(NotEstimableError, match="number of observations <= number of "
                                                "random effects"):
        _check(two, "wellbeing ~ 1", "(1 | therapist_id) + (1 + time | client_id)",
               slope_min_rows=2)


def test_check_rank_deficient_and_constant(small: pd.DataFrame) -> None:
    data = small.assign(twice_goal=2 * small["goal_within"])
    with pytest.raises(NotEstimableError, match=r"rank deficient: Twice goal is a "
                                                r"combination of Goal \(within client\)"):
        _check(data, "wellbeing ~ goal_within + twice_goal", "(1 | client_id)")
    with pytest.raises(NotEstimableError, match="outcome is constant"):
        _check(small.assign(wellbeing=3.0), "wellbeing ~ time", "(1 | client_id)")


def test_check_rank_deficiency_by_design_names_the_cause(small: pd.DataFrame) -> None:
    """therapist_vs_client with one client per therapist said only "Total alliance (client
    within therapist) is zero on every row": right, but not why (design_causes.yaml)."""
    one_each = M.disaggregate(small.assign(therapist_id="T" + small["client_id"].astype(str)))
    assert not one_each["total_client"].any()
    with pytest.raises(NotEstimableError) as err:
        _check(one_each, "wellbeing ~ time + total_within + total_client + total_therapist",
               "(1 | therapist_id) + (1 | client_id)")
    assert str(err.value) == (
        "model m: the fixed effects are rank deficient: Total alliance (client within "
        "therapist) is zero on every row (it does not vary), because every therapist has "
        "exactly one client in these rows, so each client's mean is their therapist's mean "
        "and the client-within-therapist part is zero by construction: these data cannot "
        "tell the therapist part of the alliance from the client part (with one client per "
        "therapist they are the same client means), so the model's question, whether a "
        "therapist's mean or a client's deviation from it goes with the outcome, has no "
        "answer here. For the analyst: this split needs therapists with two or more clients "
        "each; the total alliance model (total_alliance) asks the between-client question "
        "without it")
    # the report's words: the reason and what it means, not the advice
    from pipeline.report import reason_words
    assert reason_words(str(err.value)).endswith("has no answer here")
    # zero for another reason (the column set to 0 with several clients per therapist):
    # no design cause is named
    with pytest.raises(NotEstimableError) as err:
        _check(M.disaggregate(small).assign(total_client=0.0),
               "wellbeing ~ time + total_within + total_client", "(1 | client_id)")
    assert "because" not in str(err.value)
    assert "is zero on every row (it does not vary). For the analyst: remove" in str(err.value)


def test_check_rank_deficiency_with_one_therapist_names_the_cause(small: pd.DataFrame
                                                                   ) -> None:
    """therapist_vs_client on data of one therapist (red-team, 8 clients of T01) said
    "Total alliance (therapist mean) is zero on every row (it does not vary)" without the
    design cause: the one-therapist entry of design_causes.yaml, which has no ``outer``."""
    one = M.disaggregate(small.assign(therapist_id="T01"))
    assert np.max(np.abs(one["total_therapist"])) <= checks.ROUNDING_RESIDUE
    assert one["total_client"].abs().max() > 0.1   # several clients: that part varies
    with pytest.raises(NotEstimableError) as err:
        _check(one, "wellbeing ~ time + total_within + total_client + total_therapist",
               "(1 | client_id)", min_levels=1)
    message = str(err.value)
    assert ("(it does not vary), because all the clients in these rows have one therapist "
            "(or the data have no therapist_id), so the therapist's mean is the overall mean "
            "and the therapist part is zero by construction: with one therapist there is no "
            "difference between therapists to relate to the outcome") in message
    assert message.endswith("For the analyst: this split needs several therapists (at "
                            "least model.checks.min_levels); the total alliance model "
                            "(total_alliance) asks the between-client question without it")
    # rounding residue (1.7e-17 on every row) is the same design
    residue = one.assign(total_therapist=1.7e-17)
    x = residue[["time", "total_therapist"]].to_numpy()
    assert checks.design_cause(residue, x, ["time", "total_therapist"]) is not None
    # two therapists: no cause named even if the column were zero
    two = one.assign(therapist_id=np.where(one["client_id"].astype(str) < "C0010", "T1", "T2"))
    assert two["therapist_id"].nunique() == 2
    assert checks.design_cause(two, x, ["time", "total_therapist"]) is None


def test_detrended_model_on_two_sessions_per_client_names_the_cause() -> None:
    """sens_detrended on an export with two sessions per client (red-team): "Goal (within
    client), ... zero on every row" without saying that a client's own line through two
    sessions fits them exactly; the entry applies to detrended rows only."""
    data = read_data("zero_therapist")
    first_two = data[data.groupby("client_id")["session"].rank(method="first") <= 2]
    assert first_two.groupby("client_id")["session"].nunique().max() == 2
    fits = M.fit_all(first_two, None, {"df_method": "wald"}, models=["sens_detrended"],
                     verbose=False)
    fit = fits[0]
    assert fit.status == "not estimable" and not fit.has_numbers
    assert ("because every client has at most two sessions in these rows, and a client's "
            "own straight line through two sessions fits them exactly, so the scores minus "
            "each client's trend are zero by construction: these data cannot show whether "
            "a session whose alliance lies above the client's own trend goes with the "
            "outcome") in fit.reason
    assert fit.reason.endswith("For the analyst: removing each client's trend needs clients "
                               "with three or more sessions; read the primary model's "
                               "within-client effects for these data")
    # the same zero columns in rows not built by detrending: no cause named
    names = ["time", "goal_within"]
    rows = first_two.assign(goal_within=0.0, time=first_two["session"] - 1.0)
    x = rows[names].to_numpy()
    assert checks.design_cause(rows, x, names, "complete") is None
    assert checks.design_cause(rows, x, names, "detrended") is not None
    # clients with three or more sessions: a zero detrended part is not this design: no cause
    all_rows = data.assign(goal_within=0.0, time=data["session"] - 1.0)
    assert all_rows.groupby("client_id")["session"].nunique().max() > 2
    assert checks.design_cause(all_rows, all_rows[names].to_numpy(), names,
                               "detrended") is None


def test_check_a_column_of_rounding_residue_is_named_as_not_varying(small: pd.DataFrame
                                                                    ) -> None:
    """A therapist mean centred with one therapist is 1e-17 or so on every row, not 0: it
    was named bare ("rank deficient: Total alliance (therapist mean)."), a sentence
    without a verb, because its coefficient on the intercept was below 1e-8."""
    data = small.assign(total_therapist=1.7e-17, goal_twice=2.0 * small["goal_within"])
    with pytest.raises(NotEstimableError) as err:
        _check(data, "wellbeing ~ time + total_therapist", "(1 | client_id)")
    assert ("rank deficient: Total alliance (therapist mean) has the same value on every "
            "row (it does not vary). For the analyst: remove") in str(err.value)
    with pytest.raises(NotEstimableError) as err:
        _check(data.assign(total_therapist=4.2), "wellbeing ~ time + total_therapist",
               "(1 | client_id)")
    assert "Total alliance (therapist mean) has the same value on every row" in str(err.value)


def test_check_fewer_rows_than_fixed_effects_says_so_first(small: pd.DataFrame) -> None:
    """With no more rows than fixed effects the matrix is rank deficient whatever the
    data; the reason named "Intercept is a combination of" all eight other terms."""
    few = small.head(4)
    with pytest.raises(NotEstimableError,
                       match=r"model m: 4 rows for 5 fixed effects: a model needs more rows "
                             r"than fixed effects"):
        _check(few, "wellbeing ~ time + goal_within + task_within + bond_within",
               "(1 | client_id)", min_levels=1, one_level="drop")


def test_each_checks_advice_follows_its_reason_for_the_log_only(small: pd.DataFrame) -> None:
    """The checks' advice ("Remove one of the collinear terms ...") reached the reports;
    now every message that says what to do says it after labels.FOR_THE_ANALYST, which
    the log and fit_statistics.csv keep and report.reason_words cuts off."""
    from pipeline.labels import FOR_THE_ANALYST, advice_of
    from pipeline.report import reason_words

    two = small.groupby("client_id").head(2)
    one = small[small["therapist_id"] == small["therapist_id"].iloc[0]]
    cases = [
        (small.assign(twice_goal=2 * small["goal_within"]), "wellbeing ~ goal_within + "
         "twice_goal", "(1 | client_id)", {}, "remove one of the collinear terms (e.g. a "
         "covariate with one level within the rows used, or a predictor that does not vary)"),
        (small.assign(wellbeing=3.0), "wellbeing ~ time", "(1 | client_id)", {},
         "check the scoring of the outcome"),
        (one, "wellbeing ~ time", "(1 | therapist_id)", {"one_level": "refuse"},
         "fit it on data with at least 2 therapists"),
        (two, "wellbeing ~ time", "(1 | client_id) + (0 + time | client_id)",
         {"few_sessions": "refuse"}, "use data with more rows per client or set "
         "model.checks.few_sessions: drop"),
        (small.groupby("client_id").head(1), "wellbeing ~ 1",
         "(1 | therapist_id) + (1 | client_id)", {}, "more rows per client are needed"),
        (two, "wellbeing ~ time", "(1 | therapist_id) + (1 + time | client_id)",
         {"slope_min_rows": 2}, "simplify the random part or add data"),
    ]
    for data, formula, random, settings, advice in cases:
        with pytest.raises(NotEstimableError) as caught:
            _check(data, formula, random, **settings)
        message = str(caught.value)
        assert message.count(FOR_THE_ANALYST) == 1 and advice_of(message) == advice
        words = reason_words(message)
        assert message.startswith("model m: " + words + ". " + FOR_THE_ANALYST), message
        assert advice not in words and not words.endswith(".")


@pytest.mark.filterwarnings("error")
def test_check_outcome_constant_within_every_client(small: pd.DataFrame,
                                                    plan: M.ModelPlan) -> None:
    """Each client always gave the same rating: the residual variance goes to 0 and the
    likelihood has no maximum. The fit divided by zero (numpy warnings) and failed with
    "LinAlgError: Eigenvalues did not converge" (a traceback in the log; the bootstrap
    step stopped with it) or "did not converge"; now not estimable, saying why."""
    flat = small.assign(goal=small.groupby("client_id")["goal"].transform("mean"))
    with pytest.raises(NotEstimableError, match=re.escape(
            "the outcome does not vary within any client (each client's rows all have the "
            "same value)")):
        _check(flat, "goal ~ 1", "(1 | therapist_id) + (1 | client_id)")
    # one client that varies is enough
    one = flat["client_id"] == flat["client_id"].iloc[0]
    varied = flat.assign(goal=flat["goal"].where(~one, flat["goal"] + np.arange(len(flat))))
    assert _check(varied, "goal ~ 1", "(1 | therapist_id) + (1 | client_id)").random
    fit = M.fit_model(flat, None, plan.get("alliance_levels_goal"), {"df_method": "wald"},
                      verbose=False)
    assert fit.status == "not estimable" and "does not vary within any client" in fit.reason


# --------------------------------------------------------------------------------------
# fit_all, statuses and the result files
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run() -> list[M.FitResult]:
    data = read_data("zero_therapist")
    clients = pd.DataFrame({"client_id": sorted(data["client_id"].unique())})
    clients["modality"] = np.where(np.arange(len(clients)) % 2 == 0, "in person", "video")
    names = ["primary", "growth", "goal_only", "task_only", "bond_only", "lagged",
             "modality_main", "moderation_modality", "moderation_approach"]
    return M.fit_all(data, clients, {"df_method": "wald"}, models=names, verbose=False)


def test_tables(small_run: list[M.FitResult]) -> None:
    coefs = M.coefficients(small_run)
    assert (coefs["df_method"] == "Wald z (asymptotic normal)").all()
    assert coefs["df"].isna().all()
    holm_rows = coefs[coefs["p_holm"].notna()]
    assert list(zip(holm_rows["model"], holm_rows["term"], strict=True)) == [
        ("goal_only", "goal_within"), ("task_only", "task_within"), ("bond_only", "bond_within")]
    stats_table = M.fit_statistics(small_run).set_index("model")
    assert set(stats_table["status"]) <= set(M.STATUSES)
    assert stats_table.loc["moderation_approach", "status"] == "skipped"
    assert "approach" in stats_table.loc["moderation_approach", "reason"]
    primary = next(f for f in small_run if f.name == "primary")
    assert primary.ml is not None and not primary.ml.reml
    assert stats_table.loc["primary", "aic"] == pytest.approx(
        -2 * primary.ml.loglik + 2 * primary.ml.n_params)
    lr = M.lr_tests(small_run).set_index("comparison")
    assert lr.loc["alliance_vs_growth", "df"] == 6
    assert lr.loc["moderation_modality", "df"] == 3


def test_a_covariate_level_of_few_clients_makes_its_models_not_estimable() -> None:
    """A level held by 1-2 clients: its coefficient (and moderation slopes) would describe
    those clients; with min_level_clients (the fit stage: report.min_cell) no numbers."""
    data = read_data("zero_therapist")
    ids = sorted(data["client_id"].unique())
    clients = pd.DataFrame({"client_id": ids, "modality": "video"})
    clients.loc[:1, "modality"] = "phone"                     # 2 clients
    clients.loc[2:len(ids) // 2, "modality"] = "in person"
    names = ["modality_main", "moderation_modality"]
    refused = M.fit_all(data, clients, {"df_method": "wald"}, models=names, verbose=False,
                        min_level_clients=5)
    for fit in refused:
        assert fit.status == "not estimable" and not fit.has_numbers, fit.name
        assert fit.reason == (
            "client covariate 'modality': 1 of its 3 levels is held by fewer than "
            "report.min_cell = 5 clients of the rows used, so an estimate for it would "
            "describe one or a few clients. For the analyst: merge rare levels into larger "
            "ones in the clients file (or leave the covariate out)")
        # the reports show the reason, not the advice (labels.without_advice)
        assert without_advice(fit.reason).endswith("would describe one or a few clients")
    assert M.coefficients(refused).empty
    # at the threshold (2 clients, min 2) the models are fitted as before
    kept = M.fit_all(data, clients, {"df_method": "wald"}, models=names, verbose=False,
                     min_level_clients=2)
    assert all(f.status in ("fitted", "singular") for f in kept)
    terms = set(M.coefficients(kept)["term"])
    assert "C(modality)[T.phone]" in terms


def test_a_model_of_fewer_clients_than_min_cell_shows_no_numbers() -> None:
    """Two clients: a fitted model's estimates (and its n_clients) described two people."""
    data = read_data("zero_therapist")
    few = data[data["client_id"].isin(sorted(data["client_id"].unique())[:4])]
    fits = M.fit_all(few, None, {"df_method": "wald"}, models=["growth", "total_alliance"],
                     verbose=False, min_level_clients=5)
    assert [f.status for f in fits] == ["not estimable", "not estimable"]
    assert fits[0].reason == (
        "fewer than report.min_cell = 5 clients have the rows this model needs: its "
        "estimates would describe a group smaller than any count the reports may show")
    stats = M.fit_statistics(fits)
    assert stats["n_clients"].isna().all() and M.coefficients(fits).empty
    kept = M.fit_all(few, None, {"df_method": "wald"}, models=["growth"], verbose=False,
                     min_level_clients=4)
    assert kept[0].has_numbers


def test_a_failing_model_stops_nothing(plan: M.ModelPlan) -> None:
    """One therapist and a constant outcome: statuses, reasons, no exception."""
    data = read_data("one_therapist").assign(goal=3.0)
    fits = M.fit_all(data, None, {"df_method": "wald"},
                     models=["primary", "growth", "alliance_levels_goal"], verbose=False)
    by = {f.name: f for f in fits}
    assert by["growth"].status in ("fitted", "singular")
    assert by["growth"].simplification.startswith("therapist level dropped")
    assert by["primary"].status == "not estimable"
    assert ("the fixed effects are rank deficient: Goal (within client) and Goal (between "
            "clients) are zero on every row (they do not vary). For the analyst: remove one of "
            "the collinear terms") in by["primary"].reason
    assert by["alliance_levels_goal"].status == "not estimable"
    assert "outcome is constant" in by["alliance_levels_goal"].reason
    assert not (M.coefficients(fits)["model"] == "alliance_levels_goal").any()


def test_write_results_is_deterministic(small_run: list[M.FitResult], tmp_path: Path) -> None:
    first = M.write_results(small_run, tmp_path / "a")
    second = M.write_results(small_run, tmp_path / "b")
    assert [p.name for p in first] == ["coefficients.csv", "variance_components.csv",
                                       "fit_statistics.csv", "alliance_levels.csv",
                                       "alliance_change.csv", "lr_tests.csv", "metrics.json",
                                       "fit_records.json"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    records = json.loads((tmp_path / "a" / "fit_records.json").read_text(encoding="utf-8"))
    rec = records["primary"]["fit"]
    assert {"theta", "objective", "evaluations", "optimizer", "tolerances", "checks"} <= set(rec)
    assert "seconds" not in json.dumps(records)
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["primary"]["goal_within"]) == {"estimate", "conf_low", "conf_high"}


def test_restart_from_the_boundary() -> None:
    """A loose stop leaves the lagged model's client slope next to zero, where the deviance
    is flat (even in theta); the restart (lme4's restart_edge) finds the optimum."""
    spec = M.load_specs().get("lagged")
    data = M.model_data(read_data("default"), None, spec)
    y, x, names = design_matrices(spec.formula, data)
    problem = Problem(y, x, names, spec.random.terms,
                      {c: data[c].to_numpy() for c in ("therapist_id", "client_id", "time")})
    loose = optimize_theta(problem, True, {"gtol": 1e-3, "ftol": 1e-9})
    tight = optimize_theta(problem, True, {"optimizer": "powell"})
    assert loose.objective == pytest.approx(tight.objective, abs=1e-6)
    assert loose.theta[1] > 0.01 and loose.converged and not loose.singular


def test_restart_edge_probes_close_to_the_boundary(monkeypatch, lme4) -> None:
    """On data_missing's alliance_time_task L-BFGS-B stops with the client slope's theta
    at ~1e-7; the deviance falls off zero to a shallow minimum at theta 0.007 (lme4's
    optimum). A single probe at 0.01 (the engine before) stepped over it and returned a
    singular fit 5.7e-4 below lme4's log-likelihood (time's df 939 against lmerTest's
    93); the probes at 1e-3 and 1e-2 restart it off the boundary to lme4's optimum."""
    import pipeline.models.engine as engine

    ref = lme4["fit"].query("dataset == 'missing' and model == 'alliance_time_task'")
    ref_loglik = float(ref["loglik"].iloc[0])
    spec = M.load_specs().get("alliance_time_task")
    data = M.model_data(read_data("missing"), None, spec)
    fit, _ = fit_formula(data, spec.formula, spec.random, with_df=False)
    slope = fit.theta[1]   # client intercept, client slope, therapist
    assert not fit.singular and slope == pytest.approx(0.00697, abs=2e-5)
    assert fit.loglik == pytest.approx(ref_loglik, abs=1e-6)
    monkeypatch.setattr(engine, "EDGE_PROBES", (1e-2,))
    before, _ = fit_formula(data, spec.formula, spec.random, with_df=False)
    assert before.singular and before.theta[1] == 0.0
    assert before.loglik < ref_loglik - 5e-4


def test_collinear_terms_decides_like_pivoted_qr_of_the_rows() -> None:
    """The rank check (cross-product first, pivoted QR when that cannot decide) decides as
    a pivoted QR of the whole scaled model matrix (lme4's rule): exact and near (1e-10)
    combinations and a zero column are found, columns 1e-6 and 1e-2 away from a
    combination are kept (the first through the QR, the second by the cross-product)."""
    rng = np.random.default_rng(11)
    n = 500
    t, u = rng.normal(size=n), rng.normal(size=n)
    one = np.ones(n)
    names = ["Intercept", "t", "u", "v"]
    cases = [(np.column_stack([one, t, u, 2 * t - u + 1]), 1),
             (np.column_stack([one, t, u, t + 1e-10 * rng.normal(size=n)]), 1),
             (np.column_stack([one, t, u, t + 1e-6 * rng.normal(size=n)]), 0),
             (np.column_stack([one, t, u, t + 1e-2 * rng.normal(size=n)]), 0),
             (np.column_stack([one, t, u, np.zeros(n)]), 1),
             (np.column_stack([one, t, 2 * t, 3 * t + 1]), 2)]
    for x, dropped in cases:
        named = collinear_terms(x, names, 1e-7)
        assert len(named) == dropped
        scale = np.sqrt(np.sum(x * x, axis=0))
        scale[scale == 0] = 1.0
        diag = np.abs(np.diag(linalg.qr(x / scale, mode="economic", pivoting=True)[1]))
        assert int(np.sum(diag > 1e-7 * diag[0])) == x.shape[1] - dropped
    assert collinear_terms(cases[4][0], names, 1e-7) == [
        "V is zero on every row (it does not vary)"]
    assert not _clearly_full_rank(cases[2][0], 1e-7) and _clearly_full_rank(cases[3][0], 1e-7)


def test_lbfgsb_stopped_early_is_restarted_to_the_optimum() -> None:
    """On a simulated data set (the primary model's rows of an earlier shipped data set,
    frozen in tests/fixtures/engine/lbfgsb_restart.csv), L-BFGS-B on scaled theta stops on
    its relative-reduction rule far from the optimum (deviance 11101.96 against 11062.65,
    Hessian not positive definite there); the polish cannot settle, L-BFGS-B is restarted,
    and the fit reaches the optimum of the unscaled run and converges."""
    from pipeline.models.fitting import fit_formula

    data = pd.read_csv(Path(__file__).parent / "fixtures" / "engine" / "lbfgsb_restart.csv",
                       dtype={"therapist_id": str, "client_id": str},
                       float_precision="round_trip")
    spec = M.load_specs().get("primary")
    fit, _ = fit_formula(data, spec.formula, spec.random, reml=True,
                         settings={"df_method": "wald"}, model="primary")
    assert fit.problem is not None
    unscaled = optimize_theta(fit.problem, True, {"scale_theta": False})
    assert fit.converged and unscaled.converged
    assert -2 * fit.loglik == pytest.approx(unscaled.objective, abs=1e-7)
    assert -2 * fit.loglik == pytest.approx(11062.65, abs=0.01)
    np.testing.assert_allclose(fit.theta, unscaled.theta, rtol=1e-5)


@pytest.mark.parametrize("dataset", ["default", "large_therapist"])
def test_kenward_roger_agrees_with_pbkrtest(plan: M.ModelPlan, dataset: str) -> None:
    """df_method: kenward-roger gives lmerTest's Kenward-Roger SEs (pbkrtest's adjusted
    covariance) and df (pbkrtest's Lb_ddf): tests/r/kr_reference.R, lme4_kr.csv."""
    ref_all = pd.read_csv(FIXTURES / "lme4_kr.csv").query("dataset == @dataset")
    data = read_data(dataset)
    for name in ("primary", "growth", "sens_correlated"):
        fr = M.fit_model(data, None, plan.get(name), {"df_method": "kenward-roger"},
                         refit_ml=False)
        assert fr.fit is not None and fr.fit.df_method.startswith("Kenward-Roger")
        ref = ref_all.query("model == @name").set_index("term")
        assert list(fr.fit.beta.index) == list(ref.index)
        assert ((fr.fit.beta - ref["estimate"]).abs() / ref["std_error"]).max() < 0.01
        np.testing.assert_allclose(fr.fit.std_error, ref["std_error"], rtol=1e-4)
        np.testing.assert_allclose(fr.fit.df, ref["df"], rtol=1e-5)
        # the adjustment is real: SEs at least the unadjusted ones, df not Satterthwaite's
        plain = M.fit_model(data, None, plan.get(name), {}, refit_ml=False).fit
        assert plain is not None
        assert (fr.fit.std_error >= plain.std_error * (1 - 1e-9)).all()
        assert not np.allclose(fr.fit.df, plain.df, rtol=1e-3)


def test_kenward_roger_falls_back_to_satterthwaite_as_lmertest(
        plan: M.ModelPlan, monkeypatch: pytest.MonkeyPatch) -> None:
    """ML fits (lmerTest refuses Kenward-Roger for them) and designs above the size limit
    get Satterthwaite df, named so, with a note saying why."""
    data = read_data("default")
    ml = M.fit_model(data, None, plan.get("sens_ml"), {"df_method": "kenward-roger"},
                     refit_ml=False)
    assert ml.fit is not None and ml.fit.df_method == "Satterthwaite (lmerTest)"
    assert "Kenward-Roger df are for REML fits" in ml.note
    from pipeline.models import kenward_roger

    monkeypatch.setattr(kenward_roger, "MAX_RANDOM_EFFECTS", 10)
    big = M.fit_model(data, None, plan.get("primary"), {"df_method": "kenward-roger"},
                      refit_ml=False)
    assert big.fit is not None and big.fit.df_method == "Satterthwaite (lmerTest)"
    assert "more than the 10 the method is computed for here" in big.note


@pytest.mark.parametrize("dataset, name", [("default", "primary"),
                                           ("zero_therapist", "sens_correlated"),
                                           ("large_therapist", "sens_ml")])
def test_satterthwaite_hessian_from_the_analytic_gradient(reference_fits, dataset: str,
                                                          name: str) -> None:
    """The Hessian of lmerTest's devfun_vp from central differences of the analytic
    gradient (and closed-form sigma entries) equals Richardson-extrapolated second
    differences of the deviance itself (lmerTest's numDeriv way, the previous method)."""
    from pipeline.models.engine import richardson_derivatives
    from pipeline.models.inference import varpar_hessian

    fit = reference_fits[dataset, name].fit
    sigma = float(np.sqrt(fit.sigma2))
    ours = varpar_hessian(fit.problem, fit.theta, sigma, fit.reml)
    _, numeric = richardson_derivatives(
        lambda v: fit.problem.deviance_vp(v, fit.reml), np.append(fit.theta, sigma))
    np.testing.assert_allclose(ours, numeric, rtol=1e-4,
                               atol=1e-5 * float(np.max(np.abs(numeric))))


# --------------------------------------------------------------------------------------
# Refit with a new response (lme4's refit(), the bootstrap's path)
# --------------------------------------------------------------------------------------


def _fresh_and_refit(fr: M.FitResult, y: np.ndarray,
                     settings: dict | None = None) -> tuple[M.ModelFit, M.ModelFit]:
    from pipeline.models.fitting import fit_formula, refit

    data = fr.data.copy()
    data["wellbeing"] = y
    fresh, _ = fit_formula(data, fr.spec.formula, fr.fit.random, reml=fr.fit.reml,
                           settings=settings, start=fr.fit.theta, checked=True)
    return fresh, refit(fr.fit, y, settings=settings)


def _assert_same_fit(fresh: M.ModelFit, again: M.ModelFit) -> None:
    # bit for bit: the refit's statistics are computed by the same operations
    np.testing.assert_array_equal(again.theta, fresh.theta)
    assert again.loglik == fresh.loglik
    np.testing.assert_array_equal(again.beta.to_numpy(), fresh.beta.to_numpy())
    np.testing.assert_array_equal(again.vcov.to_numpy(), fresh.vcov.to_numpy())
    np.testing.assert_array_equal(again.df.to_numpy(), fresh.df.to_numpy())
    assert again.variances == fresh.variances
    assert again.r2 == fresh.r2
    assert (again.converged, again.singular, again.messages) == (
        fresh.converged, fresh.singular, fresh.messages)
    assert {k: v for k, v in again.record.items()} == fresh.record
    np.testing.assert_array_equal(again.fitted, fresh.fitted)


@pytest.mark.parametrize("dataset, name", [("default", "primary"),
                                           ("large_therapist", "sens_correlated"),
                                           ("one_therapist", "primary")])
def test_refit_equals_a_fresh_fit(reference_fits, dataset: str, name: str) -> None:
    from pipeline.models.bootstrap import truth_of
    from pipeline.simulation.outcome import simulate_outcome

    fr = reference_fits[dataset, name]
    truth = truth_of(fr.fit)
    for seed in range(3):
        y = simulate_outcome(fr.data, truth, np.random.default_rng(seed))
        fresh, again = _fresh_and_refit(fr, y)
        assert fresh.converged
        _assert_same_fit(fresh, again)
        # a different optimum than the original fit's: the response did change
        assert abs(again.loglik - fr.fit.loglik) > 1e-3
    # the original problem is untouched, and its own response gives the fit back
    assert fr.fit.problem.deviance(fr.fit.theta, fr.fit.reml) == pytest.approx(
        -2 * fr.fit.loglik, abs=1e-9)
    again = M.fitting.refit(fr.fit, fr.fit.problem.y)
    assert again.loglik == pytest.approx(fr.fit.loglik, abs=1e-9)


def test_refit_singular_not_converged_and_failed_as_a_fresh_fit(reference_fits) -> None:
    from pipeline.models.bootstrap import truth_of
    from pipeline.simulation.outcome import ModelTruth, simulate_outcome

    fr = reference_fits["default", "primary"]
    truth = truth_of(fr.fit)
    # no therapist and no slope variance in the truth: a singular refit
    flat = ModelTruth(truth.fixed, {**truth.sd, "therapist": 0.0, "client_time": 0.0})
    singular = 0
    for seed in range(4):
        y = simulate_outcome(fr.data, flat, np.random.default_rng(seed))
        fresh, again = _fresh_and_refit(fr, y)
        _assert_same_fit(fresh, again)
        singular += again.singular
    assert singular >= 1
    # a gradient tolerance no optimum meets: not converged, by the same check
    y = simulate_outcome(fr.data, truth, np.random.default_rng(9))
    fresh, again = _fresh_and_refit(fr, y, {"gradient_tolerance": 1e-14})
    assert not again.converged
    _assert_same_fit(fresh, again)
    # a constant response (residual variance 0): both fail the same way, an error the
    # bootstrap counts as a failed refit
    y = np.full(fr.fit.n_obs, 30.0)
    with pytest.raises(np.linalg.LinAlgError) as fresh_err, np.errstate(all="ignore"):
        _fresh_and_refit(fr, y)
    with pytest.raises(np.linalg.LinAlgError) as refit_err, np.errstate(all="ignore"):
        M.fitting.refit(fr.fit, y)
    assert str(refit_err.value) == str(fresh_err.value)
    with pytest.raises(ValueError, match="new response"):
        M.fitting.refit(fr.fit, y[:-1])


@pytest.mark.parametrize("dataset, name", [("default", "primary"),
                                           ("zero_therapist", "sens_correlated"),
                                           ("one_therapist", "primary")])
def test_batched_evaluations_equal_one_at_a_time(reference_fits, dataset: str,
                                                 name: str) -> None:
    """Problem.deviances, deviances_and_gradients and vcov_betas (lme4's checks, the
    polish's Hessian, the Satterthwaite Jacobian) equal the one-point evaluations to
    rounding, also at a point with a Lambda diagonal below GRAD_DIRECT_MIN (evaluated
    one by one)."""
    from pipeline.models.engine import fd_points

    fit = reference_fits[dataset, name].fit
    problem, reml = fit.problem, fit.reml
    diag = problem.is_diagonal()
    inside = np.maximum(fit.theta, 0.05 * diag)
    points = np.array([*fd_points(inside), np.where(diag, 1e-4, inside), 0.7 * inside])
    one = np.array([problem.deviance(x, reml) for x in points])
    np.testing.assert_allclose(problem.deviances(points, reml), one, rtol=1e-12)
    values, grads = problem.deviances_and_gradients(points, reml)
    singles = [problem.deviance_and_gradient(x, reml) for x in points]
    np.testing.assert_allclose(values, [v for v, _ in singles], rtol=1e-12)
    for g, (value, single) in zip(grads, singles, strict=True):
        # near the optimum the gradient is a difference of terms of the deviance's size
        np.testing.assert_allclose(g, single, rtol=1e-9, atol=1e-12 * abs(value))
    varpars = np.column_stack([points, np.full(len(points), np.sqrt(fit.sigma2))])
    for batched, v in zip(problem.vcov_betas(varpars), varpars, strict=True):
        np.testing.assert_allclose(batched, problem.vcov_beta_vp(v), rtol=1e-10)
