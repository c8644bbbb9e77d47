"""Tests of pipeline/model.py: data preparation, the robust fitter against lme4, tables.

The lme4 reference values are fixtures made by ``tests/fixtures/lme4/make_fixtures.py``
(which runs ``tests/r/lme4_reference.R``); R is not needed to run these tests.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
import yaml

from pipeline import model as M
from pipeline.simulate import simulate

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "lme4"
DATASETS = ("default", "large_therapist", "zero_therapist")
#: Models fitted in lme4 by tests/r/lme4_reference.R.
REFERENCE_MODELS = ("primary", "growth", "total_alliance", "alliance_levels_goal", "sens_ml")
PRIMARY_TERMS = ["Intercept", "time", "goal_within", "task_within", "bond_within",
                 "goal_between", "task_between", "bond_between"]


def read_data(name: str) -> pd.DataFrame:
    return pd.read_csv(FIXTURES / f"data_{name}.csv",
                       dtype={"client_id": str, "therapist_id": str})


@pytest.fixture(scope="module")
def settings(params: dict) -> dict:
    return dict(params["model"])


@pytest.fixture(scope="module")
def plan() -> M.ModelPlan:
    return M.load_specs()


@pytest.fixture(scope="module")
def lme4() -> dict[str, pd.DataFrame]:
    return {part: pd.read_csv(FIXTURES / f"lme4_{part}.csv")
            for part in ("fixed", "varcomp", "fit")}


@pytest.fixture(scope="module")
def reference_fits(plan: M.ModelPlan, settings: dict) -> dict[tuple[str, str], M.FitResult]:
    """Our fits of the lme4 reference models on the three fixture data sets."""
    fits = {}
    for dataset in DATASETS:
        data = read_data(dataset)
        for name in REFERENCE_MODELS:
            fits[dataset, name] = M.fit_model(data, None, plan.get(name), settings,
                                              refit_ml=False)
    return fits


# --------------------------------------------------------------------------------------
# prepare() and the data constructions
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
    # client means of goal: C1 4, C2 3, C3 1 (its session 2 is dropped); mean of means 8/3
    np.testing.assert_allclose(out["goal_within"], [-1, 0, 1, -1, 1, 0])
    np.testing.assert_allclose(out["goal_between"],
                               [4 / 3, 4 / 3, 4 / 3, 1 / 3, 1 / 3, -5 / 3])
    # therapist means of client means: T1 3.5, T2 1
    np.testing.assert_allclose(out["goal_therapist"], [5 / 6] * 5 + [-5 / 3])
    np.testing.assert_allclose(out["goal_client"], [0.5, 0.5, 0.5, -0.5, -0.5, 0.0])
    np.testing.assert_allclose(out["goal_between"], out["goal_therapist"] + out["goal_client"])
    # bond is constant: no within or between variation
    np.testing.assert_allclose(out[["bond_within", "bond_between"]], 0.0)
    # total = (goal + task + bond) / 3 = (2 goal + 4) / 3
    np.testing.assert_allclose(out["total"], (2 * out["goal"] + 4) / 3)
    np.testing.assert_allclose(out["total_within"], 2 * out["goal_within"] / 3)
    np.testing.assert_allclose(out["total_between"], 2 * out["goal_between"] / 3)


def test_prepare_covariates_and_required() -> None:
    clients = pd.DataFrame({"client_id": ["C1", "C2", "C3"],
                            "approach": ["CBT", None, "CBT"]})
    out = M.prepare(small_scored(), clients, required=["approach"])
    assert out.attrs["n_missing"] == 3  # C2's two rows and C3's row without wellbeing
    assert set(out["client_id"]) == {"C1", "C3"}
    # the disaggregation uses only the rows kept: grand mean of client means (4 + 1) / 2
    np.testing.assert_allclose(out.loc[out["client_id"] == "C3", "goal_between"], [-1.5])


@pytest.mark.parametrize("change, message", [
    (lambda d: pd.concat([d, d.iloc[[0]]]), "more than once"),
    (lambda d: d.assign(therapist_id=["T1", "T2", "T1", "T1", "T1", "T2", "T2"]),
     "more than one therapist"),
    (lambda d: d.drop(columns="bond"), "columns missing"),
])
def test_prepare_rejects(change, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        M.prepare(change(small_scored()))


def test_lags_and_detrending() -> None:
    data = M.prepare(small_scored())
    lagged = M.add_lags(data)
    assert list(lagged["client_id"]) == ["C1", "C1", "C2"]
    np.testing.assert_allclose(lagged["wellbeing_lag"], [20, 21, 18])
    np.testing.assert_allclose(lagged["goal_within_lag"], [-1, 0, -1])
    np.testing.assert_allclose(lagged["session_lag"], [1, 2, 1])
    # goal is linear in time for every client: nothing is left after detrending
    detrended = M.detrend_within(data)
    np.testing.assert_allclose(detrended["goal_within"], 0.0, atol=1e-12)
    np.testing.assert_allclose(detrended["goal_between"], data["goal_between"])


def test_model_data_min_sessions(plan: M.ModelPlan) -> None:
    data = M.model_data(small_scored(), None, plan.get("sens_min3"))
    assert set(data["client_id"]) == {"C1"}
    assert data.attrs["n_missing"] == 1 and data.attrs["n_excluded"] == 3
    np.testing.assert_allclose(data["goal_between"], 0.0)  # recomputed on C1 alone


def test_holm() -> None:
    np.testing.assert_allclose(M.holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(M.holm([0.5, 0.9]), [1.0, 1.0])


# --------------------------------------------------------------------------------------
# Specifications
# --------------------------------------------------------------------------------------


def test_specs_cover_the_plan(plan: M.ModelPlan) -> None:
    assert plan.models[0].name == "primary"
    assert {m.plan for m in plan.models} == {"primary", "1", "2", "3", "4", "5", "6", "7"}
    primary = plan.get("primary")
    assert primary.reml and primary.data == "complete"
    assert primary.random.lme4 == "(1 | therapist_id) + (1 | client_id) + (0 + time | client_id)"
    holm_members = [m.name for m in plan.models if m.holm == "subscale_alone"]
    assert holm_members == ["goal_only", "task_only", "bond_only"]
    assert {c.reduced for c in plan.comparisons} >= {"growth", "total_alliance"}


def test_specs_reject_unknown_keys(tmp_path: Path) -> None:
    raw = yaml.safe_load(M.SPEC_PATH.read_text(encoding="utf-8"))
    raw["models"]["primary"]["fomula"] = "typo"
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ValueError, match="unknown keys"):
        M.load_specs(path)


# --------------------------------------------------------------------------------------
# Agreement with lme4
# --------------------------------------------------------------------------------------


def test_fixture_data_match_the_simulator() -> None:
    """R read exactly what the simulator makes from the configurations in datasets.yaml."""
    from tests.fixtures.lme4.make_fixtures import scored_csv_text

    datasets = yaml.safe_load((FIXTURES / "datasets.yaml").read_text(encoding="utf-8"))
    assert tuple(datasets) == DATASETS
    for name, entry in datasets.items():
        stored = (FIXTURES / f"data_{name}.csv").read_bytes()
        made = scored_csv_text(entry["simulate"]).encode("utf-8")
        assert hashlib.sha256(made).hexdigest() == hashlib.sha256(stored).hexdigest(), name


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_agrees_with_lme4(reference_fits, lme4, dataset: str, name: str) -> None:
    fit = reference_fits[dataset, name]
    assert fit.converged, fit.note
    ours = M.coefficients([fit]).set_index("term")
    ref = lme4["fixed"].query("dataset == @dataset and model == @name").set_index("term")
    assert list(ours.index) == list(ref.index)
    # fixed effects within 0.01 of lme4's standard error; standard errors within 1 %
    assert ((ours["estimate"] - ref["estimate"]).abs() / ref["std_error"]).max() < 0.01
    assert (ours["std_error"] / ref["std_error"] - 1).abs().max() < 0.01
    # variance components within 1 % (zero ones within 1e-6 of the residual variance)
    comps = M.variance_components([fit]).set_index("component")["variance"]
    ref_vc = lme4["varcomp"].query("dataset == @dataset and model == @name")
    ref_vc = ref_vc.set_index("component")["variance"]
    assert sorted(comps.index) == sorted(ref_vc.index)
    tol = np.maximum(0.01 * ref_vc, 1e-6 * ref_vc["residual"])
    assert ((comps[ref_vc.index] - ref_vc).abs() <= tol).all()
    # log-likelihood as close as lme4's own optimum (ours may be a hair higher)
    ref_fit = lme4["fit"].query("dataset == @dataset and model == @name").iloc[0]
    assert fit.fit is not None
    assert fit.fit.loglik == pytest.approx(ref_fit["loglik"], abs=1e-4)
    assert len(fit.data) == ref_fit["n_obs"]
    # R2 (Nakagawa & Schielzeth; Johnson), written out independently in the R script
    stats_row = M.fit_statistics([fit]).iloc[0]
    assert stats_row["r2_marginal"] == pytest.approx(ref_fit["r2_marginal"], abs=1e-4)
    assert stats_row["r2_conditional"] == pytest.approx(ref_fit["r2_conditional"], abs=1e-4)


def test_statsmodels_default_optimizer_fails_on_large_therapist_variance(lme4) -> None:
    """The reason for the robust fitter: statsmodels' default stops far from the optimum."""
    data = M.prepare(read_data("large_therapist"))
    random = M.load_specs().get("primary").random
    model = smf.mixedlm(M.load_specs().get("primary").formula, data, groups="therapist_id",
                        re_formula="1", vc_formula=dict(random.vc_formula))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        default = model.fit(reml=True)
    ref = lme4["fit"].query("dataset == 'large_therapist' and model == 'primary'").iloc[0]
    ref_se = lme4["fixed"].query(
        "dataset == 'large_therapist' and model == 'primary' and term == 'time'")
    assert default.llf < ref["loglik"] - 10
    assert default.bse["time"] > 2 * float(ref_se["std_error"].iloc[0])


def test_non_convergence_is_marked(plan: M.ModelPlan, settings: dict,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the other optimizers and the Newton polish, the fit is flagged, not hidden."""
    monkeypatch.setattr(M, "_MAX_NEWTON", 0)
    fit = M.fit_model(read_data("large_therapist"), None, plan.get("primary"),
                      {**settings, "optimizers": ["bfgs"]}, refit_ml=False)
    assert fit.status == "not converged" and not fit.converged
    assert "NOT CONVERGED" in fit.note
    assert not M.coefficients([fit])["converged"].any()
    row = M.fit_statistics([fit]).iloc[0]
    assert not row["converged"] and "NOT CONVERGED" in row["warning"]
    assert row["gradient_norm"] > settings["gradient_tolerance"]


def test_boundary_variance_is_reported_as_zero(reference_fits) -> None:
    fit = reference_fits["zero_therapist", "primary"]
    comps = M.variance_components([fit]).set_index("component")["variance"]
    assert comps["therapist"] == 0.0
    assert "boundary" in fit.note and fit.converged


def test_parameter_recovery(reference_fits) -> None:
    """Default data: estimates within 3 SE of the simulation truth, SDs near theirs."""
    truth = yaml.safe_load((FIXTURES / "datasets.yaml").read_text(encoding="utf-8"))
    wb = truth["default"]["simulate"]["wellbeing"]
    fit = reference_fits["default", "primary"]
    table = M.coefficients([fit]).set_index("term")
    assert list(table.index) == PRIMARY_TERMS
    for term in PRIMARY_TERMS:
        true = wb["intercept" if term == "Intercept" else term]
        z = (table.loc[term, "estimate"] - true) / table.loc[term, "std_error"]
        assert abs(z) < 3, (term, z)
    sd = M.variance_components([fit]).set_index("component")["sd"]
    assert sd["residual"] == pytest.approx(wb["residual_sd"], rel=0.1)
    assert sd["client"] == pytest.approx(wb["client_sd"], rel=0.25)
    assert sd["therapist"] == pytest.approx(wb["therapist_sd"], rel=0.6)
    assert sd["client_time"] == pytest.approx(wb["client_time_sd"], rel=0.5)


# --------------------------------------------------------------------------------------
# fit_all and the result files
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(settings: dict) -> list[M.FitResult]:
    data = read_data("zero_therapist")
    clients = simulate(yaml.safe_load((FIXTURES / "datasets.yaml").read_text(
        encoding="utf-8"))["zero_therapist"]["simulate"]).clients
    names = ["primary", "growth", "goal_only", "task_only", "bond_only", "lagged",
             "modality_main", "moderation_modality"]
    return M.fit_all(data, clients, settings, models=names, verbose=False)


def test_tables(small_run: list[M.FitResult]) -> None:
    coefs = M.coefficients(small_run)
    assert list(coefs["model"].unique()) == [f.name for f in small_run]
    assert (coefs["df_method"] == "Wald z (asymptotic normal)").all()
    holm_rows = coefs[coefs["p_holm"].notna()]
    assert list(zip(holm_rows["model"], holm_rows["term"], strict=True)) == [
        ("goal_only", "goal_within"), ("task_only", "task_within"), ("bond_only", "bond_within")]
    assert (holm_rows["p_holm"] >= holm_rows["p_value"]).all()
    inside = (coefs["conf_low"] < coefs["estimate"]) & (coefs["estimate"] < coefs["conf_high"])
    assert inside.all()
    lagged = coefs[coefs["model"] == "lagged"]["term"].tolist()
    assert "wellbeing_lag" in lagged and "goal_within_lag" in lagged

    stats_table = M.fit_statistics(small_run).set_index("model")
    assert stats_table["converged"].all()
    assert stats_table.loc["primary", "n_obs"] == len(read_data("zero_therapist"))
    icc = stats_table["icc_therapist"].to_dict()
    assert icc["growth"] >= 0 and np.isnan(icc["primary"])
    # AIC/BIC come from the ML refit
    primary = next(f for f in small_run if f.name == "primary")
    assert primary.ml is not None and not primary.ml.reml
    assert stats_table.loc["primary", "aic"] == pytest.approx(
        -2 * primary.ml.loglik + 2 * primary.ml.n_params)

    lr = M.lr_tests(small_run).set_index("comparison")
    assert lr.loc["alliance_vs_growth", "df"] == 6
    assert lr["statistic"].to_dict()["alliance_vs_growth"] > 0
    assert lr.loc["moderation_modality", "df"] == 3
    assert "subscales_vs_total" not in lr.index  # total_alliance was not fitted


def test_moderation_is_skipped_without_covariates(settings: dict) -> None:
    fits = M.fit_all(read_data("zero_therapist"), None, settings,
                     models=["moderation_approach"], verbose=False)
    assert fits[0].status == "skipped" and "approach" in fits[0].note
    row = M.fit_statistics(fits).iloc[0]
    assert row["status"] == "skipped" and not row["converged"]


def test_write_results_is_deterministic(small_run: list[M.FitResult], tmp_path: Path) -> None:
    first = M.write_results(small_run, tmp_path / "a")
    second = M.write_results(small_run, tmp_path / "b")
    assert [p.name for p in first] == ["coefficients.csv", "variance_components.csv",
                                       "fit_statistics.csv", "lr_tests.csv", "metrics.json"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes()
    assert not list((tmp_path / "a").glob(".*tmp"))
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["primary"]) == {"converged", "goal_within", "task_within", "bond_within"}
    assert set(metrics["primary"]["goal_within"]) == {"estimate", "conf_low", "conf_high"}
    # 10 significant digits at most
    coefs = (tmp_path / "a" / "coefficients.csv").read_text(encoding="utf-8")
    digits = [len(x.replace("-", "").replace(".", "").split("e")[0].lstrip("0"))
              for line in coefs.splitlines()[1:] for x in line.split(",")[3:9]]
    assert max(digits) <= 10
