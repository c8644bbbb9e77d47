"""Fitting models: one formula (:func:`fit`) or every model of the plan (:func:`fit_all`).

The flow for one model: the design (``design.py``) builds its rows, ``patsy`` its fixed
model matrix, the pre-fit checks (``checks.py``) decide what can be estimated, an engine
finds the optimum (``engine.py``, the default ``native``; or ``engine_statsmodels.py``),
and ``inference.py`` adds df, tests and R². Every model ends with a status (README,
"Results contract"): ``fitted``, ``singular``, ``not converged``, ``not estimable``,
``skipped`` or ``failed``; a model that fails never stops the others.
"""

from __future__ import annotations

import re
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import patsy

from pipeline.errors import NotEstimableError, PipelineError, SettingsError
from pipeline.labels import advised
from pipeline.models import inference
from pipeline.models.checks import check_settings, run_checks
from pipeline.models.design import model_data
from pipeline.models.engine import (
    DEFAULT_OPTIONS,
    Problem,
    covariances,
    group_codes,
    optimize_theta,
)
from pipeline.models.kenward_roger import kenward_roger
from pipeline.models.lags import far_words, gap_summary, gap_words, lag_gaps, lag_settings
from pipeline.models.spec import ModelPlan, ModelSpec, RandomPart, load_specs, parse_random
from pipeline.settings import over_defaults

#: Defaults of the ``model:`` block of params.yaml.
DEFAULT_SETTINGS: dict[str, Any] = {
    "engine": "native",                 # native | statsmodels
    "optimizer": DEFAULT_OPTIONS["optimizer"],
    "gradient_tolerance": DEFAULT_OPTIONS["gradient_tolerance"],
    "singular_tolerance": DEFAULT_OPTIONS["singular_tolerance"],
    "df_method": "satterthwaite",       # satterthwaite | kenward-roger | wald
    "conf_level": 0.95,
    "checks": {},
    "statsmodels_optimizers": ["powell", "nm", "lbfgs", "bfgs"],
    "diagnostics_for": ["primary"],
    "lag": {},
}
ENGINES = ("native", "statsmodels")
STATUSES = ("fitted", "singular", "not converged", "not estimable", "skipped", "failed")


def settings_from(params_model: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``model:`` block over the defaults, validated.

    Raises
    ------
    SettingsError
        Unknown keys, engines, optimizers or df methods.
    """
    given = {k: v for k, v in (params_model or {}).items() if v is not None}
    out = over_defaults(given, DEFAULT_SETTINGS, "model")
    if out["engine"] not in ENGINES:
        raise SettingsError(f"params.yaml model.engine: {out['engine']!r} is not one of "
                            f"{ENGINES}")
    if out["df_method"] not in inference.DF_METHODS:
        raise SettingsError(f"params.yaml model.df_method: {out['df_method']!r} is not one "
                            f"of {tuple(inference.DF_METHODS)}")
    if str(out["optimizer"]).lower() not in ("lbfgsb", "powell", "nelder-mead"):
        raise SettingsError(f"params.yaml model.optimizer: {out['optimizer']!r} is not one "
                            "of lbfgsb, powell, nelder-mead")
    out["checks"] = check_settings(out.get("checks"))
    out["lag"] = lag_settings(out.get("lag"))
    return out


@dataclass
class ModelFit:
    """One fit (REML or ML) of one formula and random part, engine-neutral.

    Attributes
    ----------
    engine
        ``native`` or ``statsmodels``.
    reml
        REML or ML.
    random
        The random part fitted (after any simplification).
    beta, vcov
        Fixed effects (project term names) and their covariance.
    df
        Degrees of freedom per term (``inf`` for Wald z).
    df_method
        Name of the df method (:data:`inference.DF_METHODS`).
    sigma2
        Residual variance.
    theta
        lme4's relative covariance factor parameters.
    loglik
        REML or ML log-likelihood.
    variances
        Component -> variance (covariances named ``cov_<a>_<b>``), residual last.
    ranef
        Component -> predicted random effects by level (a Series indexed by level).
    fitted, resid
        Conditional fitted values and residuals, in row order.
    r2
        Marginal and conditional R².
    converged, singular, messages
        lme4's checks.
    record
        The fit record (``records.py``): optimizer, evaluations, tolerances, checks.
    seconds
        Wall time (kept out of tracked outputs).
    """

    engine: str
    reml: bool
    random: RandomPart
    beta: pd.Series
    vcov: pd.DataFrame
    df: pd.Series
    df_method: str
    sigma2: float
    theta: np.ndarray
    loglik: float
    variances: dict[str, float]
    ranef: dict[str, pd.Series]
    fitted: np.ndarray
    resid: np.ndarray
    r2: tuple[float, float]
    converged: bool
    singular: bool
    messages: tuple[str, ...]
    record: dict[str, Any]
    n_obs: int
    seconds: float = 0.0
    problem: Problem | None = field(default=None, repr=False)

    @property
    def n_params(self) -> int:
        """Estimated parameters: fixed effects, theta and the residual variance."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def std_error(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.beta.index)


def _components(problem: Problem, random: RandomPart, theta: np.ndarray,
                sigma2: float) -> dict[str, float]:
    covs = covariances(problem, theta, sigma2)
    out: dict[str, float] = {}
    by_factor = {f.name: (f, c) for f, c in zip(problem.factors, covs, strict=True)}
    # components in the order the random part was written
    for term in random.terms:
        fac, cov = by_factor[term.factor]
        for col in term.columns:
            j = fac.columns.index(col)
            out[random.component(term.factor, col)] = float(cov[j, j])
    for term in random.terms:
        fac, cov = by_factor[term.factor]
        for a in range(len(term.columns)):
            for b in range(a + 1, len(term.columns)):
                ia, ib = fac.columns.index(term.columns[a]), fac.columns.index(term.columns[b])
                name = (f"cov_{random.component(term.factor, term.columns[a])}_"
                        f"{random.component(term.factor, term.columns[b])}")
                out[name] = float(cov[ia, ib])
    out["residual"] = float(sigma2)
    return out


def design_matrices(formula: str, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray,
                                                               list[str]]:
    """Outcome and fixed-effect model matrix of a formula (patsy; ``Intercept`` named so).

    Numeric columns go to patsy as numpy arrays, the others as the Series: patsy's missing
    value check on a pandas Series costs about 2 ms a column (a pandas reduction), most
    of the 16 ms this took on the shipped primary model (now about 4 ms). Same matrices
    (patsy reads the same values; categorical columns keep their Series and dtype).
    """
    plain = _plain_design(formula, data)
    if plain is not None:
        return plain
    columns = {c: (col.to_numpy() if isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiu"
                   else col) for c, col in data.items()}
    try:
        y, x = patsy.dmatrices(formula, columns, return_type="dataframe", NA_action="raise")
    except patsy.PatsyError as exc:
        raise NotEstimableError(f"formula {formula!r}: {exc}") from exc
    return (np.asarray(y, dtype=float).ravel(), np.asarray(x, dtype=float),
            [str(c) for c in x.columns])


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _plain_design(formula: str, data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray,
                                                             list[str]] | None:
    """:func:`design_matrices` of ``y ~ a + b + ...`` over numeric columns without
    patsy, or ``None`` for any other formula (then patsy builds it).

    Such a formula is, in patsy, the intercept column then each named column as float,
    in the formula's order; the same values are taken here directly (numpy's float
    conversion, as patsy's). It is the formula of every model the power analysis,
    bootstrap and specification curve fit, where patsy's parsing and evaluation
    (about 5 ms) cost more than a tenth of a replicate. Anything else -- an interaction,
    a transform, ``- 1``, a repeated or unknown name, a non-numeric column, a missing
    value (patsy's error message names it) -- goes to patsy.
    """
    lhs, sep, rhs = formula.partition("~")
    names = [t.strip() for t in rhs.split("+")]
    outcome = lhs.strip()
    if (not sep or not _NAME.fullmatch(outcome) or not all(_NAME.fullmatch(t) for t in names)
            or len(set(names)) < len(names) or outcome in names or len(data) == 0):
        return None
    columns = []
    for name in (outcome, *names):
        if name not in data.columns:
            return None
        col = data[name]
        if not (isinstance(col, pd.Series) and isinstance(col.dtype, np.dtype)
                and col.dtype.kind in "fiu"):
            return None
        values = col.to_numpy(dtype=float)
        if np.isnan(values).any():
            return None
        columns.append(values)
    x = np.empty((len(data), len(names) + 1))
    x[:, 0] = 1.0
    for j, values in enumerate(columns[1:], start=1):
        x[:, j] = values
    return columns[0].copy(), x, ["Intercept", *names]


def fit_formula(
    data: pd.DataFrame,
    formula: str,
    random: RandomPart,
    *,
    reml: bool = True,
    settings: Mapping[str, Any] | None = None,
    model: str = "model",
    start: np.ndarray | None = None,
    checked: bool = False,
    with_df: bool = True,
    data_kind: str = "complete",
) -> tuple[ModelFit, list[str]]:
    """Check and fit one model on prepared rows.

    Parameters
    ----------
    data
        Rows with every variable of the formula and the random part.
    formula
        Fixed part (patsy).
    random
        Random part.
    reml
        REML or ML.
    settings
        The ``model:`` block (see :func:`settings_from`).
    model
        Name used in messages.
    start
        Warm-start theta (e.g. of the REML fit for the ML refit).
    checked
        The random part has already been through the checks (skip them).
    with_df
        Compute the df of ``model.df_method`` (False: Wald z, e.g. for ML refits that
        only serve likelihood-ratio tests).
    data_kind
        How the rows were built (models.yaml's ``data:``; for the checks' messages).

    Returns
    -------
    tuple
        The fit and the simplifications the checks applied.

    Raises
    ------
    NotEstimableError
        From the pre-fit checks (or the engine).
    """
    conf = settings_from(settings)
    began = time.perf_counter()
    y, x, x_names = design_matrices(formula, data)
    simplifications: list[str] = []
    # each grouping column's labels hashed once, for the checks and the Problem
    groups = {f: group_codes(data[f].to_numpy()) for f in random.factors}
    if not checked:
        outcome = run_checks(model, data, y, x, x_names, random, conf["checks"], groups,
                             data_kind=data_kind)
        random, simplifications = outcome.random, outcome.simplifications
    columns = {c: data[c].to_numpy() for c in (*random.factors, *random.variables)}
    problem = Problem(y, x, x_names, random.terms, columns, groups)
    fit = _fit_problem(problem, random, data, formula, reml=reml, conf=conf, start=start,
                       with_df=with_df, simplified=bool(simplifications), began=began)
    return fit, simplifications


def refit(fit: ModelFit, y: np.ndarray, *, settings: Mapping[str, Any] | None = None,
          start: np.ndarray | None = None, with_df: bool = True) -> ModelFit:
    """The same model fitted to a new response (lme4's ``refit(object, newresp)``).

    Nothing but the response changes: the fixed-effect matrix, the grouping, the random
    part and REML/ML are ``fit``'s, and every sufficient statistic that does not involve
    ``y`` is reused (:meth:`Problem.with_response`); no formula is parsed and no pre-fit
    check is rerun (they do not involve ``y``, except "constant outcome", which the
    optimum then shows as a failed fit). The optimiser starts from ``fit.theta`` unless
    ``start`` is given: lme4's ``refit.merMod`` starts from the object's theta
    (``x0 <- rho$mkPar(rho$pp$theta)``, ``pp <- object@pp$copy()``; R/lmer.R of lme4), and
    ``bootMer`` refits each simulated response that way. lme4's convergence checks are
    run as in any fit. The result equals ``fit_formula`` on the same rows with ``y`` as
    the outcome, ``checked=True`` and the same start (``tests/test_models.py``).

    Parameters
    ----------
    fit
        A native-engine fit (it carries its :class:`Problem`).
    y
        New response, one value per row of ``fit`` (row order of its data).
    settings
        The ``model:`` block (optimizer, tolerances, df method); defaults otherwise.
    start
        Start theta (default ``fit.theta``).
    with_df
        Compute the df of ``model.df_method`` (False: Wald z).

    Raises
    ------
    ValueError
        ``y`` of the wrong length, or a fit without its problem (statsmodels engine).
    """
    if fit.problem is None or fit.engine != "native":
        raise ValueError("refit needs a fit of the native engine (with its Problem)")
    conf = settings_from(settings)
    if conf["engine"] != "native":
        raise ValueError("refit runs the native engine only")
    began = time.perf_counter()
    problem = fit.problem.with_response(y)
    theta0 = fit.theta if start is None else np.asarray(start, dtype=float)
    return _fit_problem(problem, fit.random, None, "", reml=fit.reml, conf=conf,
                        start=theta0, with_df=with_df,
                        simplified=fit.record.get("random") != fit.random.formula,
                        began=began)


def _fit_problem(problem: Problem, random: RandomPart, data: pd.DataFrame | None,
                 formula: str, *, reml: bool, conf: Mapping[str, Any],
                 start: np.ndarray | None, with_df: bool, simplified: bool,
                 began: float) -> ModelFit:
    """Optimise a built problem and assemble the :class:`ModelFit` (``fit_formula`` and
    :func:`refit`); ``data`` and ``formula`` serve the statsmodels engine only."""
    y, x, x_names = problem.y, problem.x, list(problem.x_names)
    options = {"optimizer": conf["optimizer"],
               "gradient_tolerance": conf["gradient_tolerance"],
               "singular_tolerance": conf["singular_tolerance"]}
    if conf["engine"] == "statsmodels":
        from pipeline.models.engine_statsmodels import fit_statsmodels

        assert data is not None
        sm = fit_statsmodels(data, formula, random, problem, reml=reml,
                             optimizers=conf["statsmodels_optimizers"],
                             gradient_tolerance=conf["gradient_tolerance"])
        theta, beta, vcov, loglik = sm["theta"], sm["beta"], sm["vcov"], sm["loglik"]
        converged, messages = sm["converged"], sm["messages"]
        fac = problem.factorize(theta)
        sigma2 = float(sm["sigma2"])
        singular = bool(np.any(problem.is_diagonal()
                               & (np.abs(theta) < conf["singular_tolerance"])))
        record = {"optimizer": sm["optimizer"], "evaluations": None,
                  "objective": -2.0 * loglik, "start": None,
                  "checks": {"converged": converged, "scaled_gradient": sm["gradient"],
                             "hessian_pd": None, "singular": singular},
                  "tolerances": {"gradient_tolerance": conf["gradient_tolerance"]}}
    else:
        ef = optimize_theta(problem, reml, options, start=start)
        theta, beta, vcov, loglik = ef.theta, ef.beta, ef.vcov, ef.loglik
        converged, singular, messages = ef.converged, ef.singular, ef.messages
        fac, sigma2 = ef.factorization, ef.sigma2
        record = {"optimizer": ef.optimizer, "evaluations": ef.evaluations,
                  "objective": ef.objective, "start": [float(v) for v in ef.start],
                  "checks": {"converged": ef.converged,
                             "max_gradient": float(ef.gradient),
                             "scaled_gradient": float(ef.scaled_gradient),
                             "hessian_pd": ef.hessian_pd, "singular": ef.singular},
                  "tolerances": ef.options}
    ranef_arrays = problem.random_effects(fac)
    fitted = problem.fitted(fac.beta, ranef_arrays)
    ranef: dict[str, pd.Series] = {}
    for f, b in zip(problem.factors, ranef_arrays, strict=True):
        for j, col in enumerate(f.columns):
            ranef[random.component(f.name, col)] = pd.Series(b[:, j], index=f.levels)
    variances = _components(problem, random, theta, sigma2)
    covs = covariances(problem, theta, sigma2)
    r2 = inference.r_squared(x, np.asarray(beta), [f.z for f in problem.factors], covs,
                             sigma2)
    method = conf["df_method"] if with_df else "wald"
    if method == "kenward-roger":
        # lmerTest computes Kenward-Roger for REML fits only and falls back to
        # Satterthwaite otherwise (with a warning); so here, and also where the dense
        # random-effect design would be too large (kenward_roger.MAX_RANDOM_EFFECTS)
        if not reml:
            messages = (*messages, "Kenward-Roger df are for REML fits: Satterthwaite df "
                                   "used (as lmerTest)")
            method = "satterthwaite"
        else:
            try:
                vcov, df = kenward_roger(problem, theta, sigma2, np.asarray(vcov))
            except NotEstimableError as exc:
                messages = (*messages, f"{exc}; Satterthwaite df used")
                method = "satterthwaite"
    if method == "satterthwaite":
        df = inference.satterthwaite_df(problem, theta, sigma2, np.asarray(vcov), reml)
    elif method == "wald":
        df = np.full(len(x_names), np.inf)
    record.update(theta=[float(v) for v in theta], reml=reml, engine=conf["engine"],
                  random=random.formula if not simplified else _formula(random),
                  n_obs=len(y), structure=problem.structure)
    fit = ModelFit(
        engine=conf["engine"], reml=reml, random=random,
        beta=pd.Series(np.asarray(beta, dtype=float), index=x_names),
        vcov=pd.DataFrame(np.asarray(vcov, dtype=float), index=x_names, columns=x_names),
        df=pd.Series(df, index=x_names), df_method=inference.DF_METHODS[method],
        sigma2=float(sigma2), theta=np.asarray(theta, dtype=float), loglik=float(loglik),
        variances=variances, ranef=ranef, fitted=fitted, resid=y - fitted, r2=r2,
        converged=bool(converged), singular=bool(singular), messages=tuple(messages),
        record=record, n_obs=len(y), seconds=time.perf_counter() - began, problem=problem)
    return fit


def _formula(random: RandomPart) -> str:
    from pipeline.models.spec import format_random

    return format_random(random.terms)


class _Settings(dict):  # type: ignore[type-arg]
    """Settings already validated by :func:`settings_from`."""


def fit(formula: str, random: str, data: pd.DataFrame, reml: bool = True,
        settings: Mapping[str, Any] | None = None,
        labels: Mapping[str, str] | None = None,
        start: np.ndarray | None = None, model: str = "model") -> ModelFit:
    """Fit one linear mixed model from a DataFrame (the public entry point).

    Parameters
    ----------
    formula
        Fixed part, e.g. ``"wellbeing ~ time + group"`` (patsy syntax).
    random
        Random part in lme4 notation, e.g. ``"(1 | therapist_id) + (1 | client_id)"``.
    data
        Rows; rows with a missing value in a variable used are dropped.
    reml
        REML (default) or ML.
    settings
        The ``model:`` block of params.yaml (defaults: native engine, Satterthwaite df).
    labels
        Grouping column -> component name (default: the column name).
    start
        Warm start: theta of a previous fit of the same random part (e.g. ``fit.theta``
        of the fit to the previous simulated data set in a power analysis).
    model
        The model's name in the checks' messages ("model <name>: ..."; one word, which
        ``report.reason_words`` drops).

    Returns
    -------
    ModelFit
        Estimates, SEs, df, variances, random effects, checks and the fit record;
        ``fit.record["simplification"]`` lists the check rules applied.

    Raises
    ------
    NotEstimableError
        When the pre-fit checks refuse the model (the message says why).

    Examples
    --------
    >>> fit("wellbeing ~ time", "(1 | therapist_id) + (1 | client_id)", data)  # doctest: +SKIP

    R equivalent: ``lmerTest::lmer(wellbeing ~ time + (1 | therapist_id) + (1 | client_id),
    data)``.
    """
    terms = parse_random(random, "pipeline.models.fit(random=...)")
    part = RandomPart("random", " ".join(random.split()), terms, dict(labels or {}))
    used = list(dict.fromkeys([*_variables(formula, data), *part.factors,
                               *part.variables]))
    rows = data.dropna(subset=[c for c in used if c in data.columns]).reset_index(drop=True)
    result, simplifications = fit_formula(rows, formula, part, reml=reml, settings=settings,
                                          start=start, model=model)
    result.record["simplification"] = simplifications
    return result


def _variables(formula: str, data: pd.DataFrame) -> list[str]:
    """Columns of ``data`` a formula mentions (for dropping incomplete rows)."""
    import re

    tokens = set(re.findall(r"[A-Za-z_][A-Za-z0-9_.]*", formula))
    return [c for c in data.columns if c in tokens]


# --------------------------------------------------------------------------------------
# Models of the plan
# --------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """A model of the plan: status, data, the fit as specified and its ML refit.

    Attributes
    ----------
    spec
        The model specification.
    status
        One of :data:`STATUSES`.
    reason
        Why a model is not estimable, skipped or failed (empty otherwise).
    simplification
        Simplification rules applied by the checks (``; ``-joined, empty otherwise).
    fit, ml
        The fit as specified and its ML refit (the same object for ML models).
    data
        The rows and predictors used.
    note
        Warnings (convergence, boundary).
    lag_gaps
        A lagged model with numbers: how far back its previous sessions lay
        (:func:`pipeline.models.lags.gap_summary`); empty otherwise.
    """

    spec: ModelSpec
    status: str
    fit: ModelFit | None = None
    ml: ModelFit | None = None
    data: pd.DataFrame | None = None
    n_input: int = 0
    n_missing: int = 0
    n_excluded: int = 0
    conf_level: float = 0.95
    plan: ModelPlan | None = None
    reason: str = ""
    simplification: str = ""
    note: str = ""
    lag_gaps: dict[str, Any] = field(default_factory=dict)
    seconds: float = field(default=0.0, compare=False)

    @property
    def name(self) -> str:
        """Model name."""
        return self.spec.name

    @property
    def converged(self) -> bool:
        """Both the fit and its ML refit passed lme4's convergence checks."""
        return bool(self.fit is not None and self.fit.converged
                    and (self.ml is None or self.ml.converged))

    @property
    def has_numbers(self) -> bool:
        """Whether estimates exist (even if not to be interpreted)."""
        return self.fit is not None


def _log(message: str) -> None:
    print(f"[models] {message}", file=sys.stderr, flush=True)


def too_few_clients(min_clients: int) -> str:
    """Why a model of fewer than ``report.min_cell`` clients gives no numbers (the count
    itself is not named: it is a small cell)."""
    return (f"fewer than report.min_cell = {min_clients} clients have the rows this model "
            "needs: its estimates would describe a group smaller than any count the reports "
            "may show")


def fit_model(
    scored: pd.DataFrame,
    clients: pd.DataFrame | None,
    spec: ModelSpec,
    settings: Mapping[str, Any] | None = None,
    *,
    plan: ModelPlan | None = None,
    refit_ml: bool = True,
    verbose: bool = False,
    min_level_clients: int = 1,
) -> FitResult:
    """Fit one model of the plan and its ML refit; never raises for the data's sake.

    ``min_level_clients`` (the fit stage passes ``report.min_cell``): fewer clients in the
    model's rows, or a client covariate with a level held by fewer clients, makes the
    model not estimable; a published estimate (for that level, or a moderation slope
    within it) would describe one or two clients (as in the ruptures outcome model).

    Returns
    -------
    FitResult
        With status ``skipped`` (covariate absent or with one level), ``not estimable``
        (a pre-fit check refused it; ``reason`` says why), ``failed`` (unexpected error),
        or ``fitted`` / ``singular`` / ``not converged``.
    """
    conf = _Settings(settings_from(settings))
    level = float(conf["conf_level"])
    began = time.perf_counter()
    for cov in spec.covariates:
        if clients is None or cov not in clients.columns:
            return FitResult(spec, "skipped", conf_level=level, plan=plan,
                             reason=f"client covariate {cov!r} not available")
    try:
        data = model_data(scored, clients, spec)
    except NotEstimableError as exc:
        return FitResult(spec, "not estimable", conf_level=level, plan=plan, reason=str(exc))
    common: dict[str, Any] = {
        "data": data, "n_input": int(data.attrs["n_input"]),
        "n_missing": int(data.attrs["n_missing"]),
        "n_excluded": int(data.attrs["n_excluded"]), "conf_level": level, "plan": plan,
    }
    if data["client_id"].nunique() < min_level_clients:
        return FitResult(spec, "not estimable", reason=too_few_clients(min_level_clients),
                         **common)
    for cov in spec.covariates:
        if data[cov].nunique() < 2:
            return FitResult(spec, "skipped", reason=f"client covariate {cov!r} has one level",
                             **common)
        per_level = data.groupby(cov, observed=True)["client_id"].nunique()
        small = int((per_level < min_level_clients).sum())
        if small:
            return FitResult(
                spec, "not estimable", reason=advised(
                    f"client covariate {cov!r}: {small} of its {len(per_level)} levels "
                    f"{'is' if small == 1 else 'are'} held by fewer than report.min_cell = "
                    f"{min_level_clients} clients of the rows used, so an estimate for "
                    f"{'it' if small == 1 else 'them'} would describe one or a few clients",
                    "merge rare levels into larger ones in the clients file (or leave the "
                    "covariate out)"), **common)
    try:
        fit_, simplifications = fit_formula(data, spec.formula, spec.random, reml=spec.reml,
                                            settings=conf, model=spec.name,
                                            data_kind=spec.data)
        ml = fit_ if not spec.reml else None
        if spec.reml and refit_ml:
            ml, _ = fit_formula(data, spec.formula, fit_.random, reml=False, settings=conf,
                                model=spec.name, start=fit_.theta, checked=True,
                                with_df=False)
    except NotEstimableError as exc:
        if verbose:
            _log(f"{spec.name}: not estimable: {exc}")
        return FitResult(spec, "not estimable", reason=str(exc), **common)
    except PipelineError:
        raise
    except Exception as exc:  # a model must never stop the others
        if verbose:
            _log(f"{spec.name}: FAILED: {type(exc).__name__}: {exc}\n"
                 + traceback.format_exc())
        return FitResult(spec, "failed", reason=f"{type(exc).__name__}: {exc}", **common)
    converged = fit_.converged and (ml is None or ml.converged)
    status = ("not converged" if not converged else "singular" if fit_.singular
              else "fitted")
    notes = list(fit_.messages)
    if ml is not None and ml is not fit_ and not ml.converged:
        notes.append("ML refit: " + "; ".join(ml.messages))
    fit_.record["simplification"] = simplifications
    # how far back the previous observed sessions lay (no pair count below report.min_cell)
    gaps = (gap_summary(lag_gaps(data), max(min_level_clients, 1), conf["lag"])
            if spec.data == "lagged" else {})
    result = FitResult(spec, status, fit=fit_, ml=ml, simplification="; ".join(simplifications),
                       note="; ".join(notes), lag_gaps=gaps,
                       seconds=time.perf_counter() - began, **common)
    if verbose:
        method = "REML" if spec.reml else "ML"
        _log(f"{spec.name}: {method} n={len(data)}, {fit_.record['optimizer']} "
             f"({fit_.record.get('evaluations')} evaluations, loglik {fit_.loglik:.6f}), "
             f"{status}, {result.seconds:.2f} s")
        for s in simplifications:
            _log(f"{spec.name}: simplification: {s}")
        if gaps:
            _log(f"{spec.name}: {gap_words(gaps, len(data), max(min_level_clients, 1))}")
            if far_words(gaps, conf["lag"]):
                _log(f"{spec.name}: WARNING: {far_words(gaps, conf['lag'])}")
    return result


def fit_all(
    scored: pd.DataFrame,
    clients: pd.DataFrame | None,
    settings: Mapping[str, Any] | None = None,
    *,
    specs: str | Path | ModelPlan | None = None,
    models: Sequence[str] | None = None,
    verbose: bool = True,
    min_level_clients: int = 1,
) -> list[FitResult]:
    """Fit every model of the plan (the entry point of ``python -m pipeline fit``).

    ``min_level_clients``: see :func:`fit_model`.

    Returns
    -------
    list of FitResult
        In the order of models.yaml; every model has a status, none raises (settings
        errors excepted: they are the user's to fix before anything is fitted).
    """
    from threadpoolctl import threadpool_limits

    conf = settings_from(settings)
    plan = specs if isinstance(specs, ModelPlan) else load_specs(specs)
    chosen = plan.models if models is None else tuple(plan.get(m) for m in models)
    fits: list[FitResult] = []
    with threadpool_limits(limits=1):
        for spec in chosen:
            fits.append(fit_model(scored, clients, spec, conf, plan=plan, verbose=verbose,
                                  min_level_clients=min_level_clients))
            if verbose and fits[-1].status in ("skipped", "not estimable", "failed"):
                _log(f"{spec.name}: {fits[-1].status} ({fits[-1].reason})")
    return fits


def require_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated settings (raises :class:`SettingsError`); for callers outside the package."""
    return settings_from(settings)
