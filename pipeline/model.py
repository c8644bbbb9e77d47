"""Mixed models of the analysis plan, fitted at the true optimum and reported tidily.

The models themselves (formulas, random parts, REML or ML, which rows and predictors)
are data in ``pipeline/models.yaml``; this module builds each model's data, fits it with
statsmodels' :class:`~statsmodels.regression.mixed_linear_model.MixedLM`, makes sure the
optimum is reached, and turns the fits into tables.

Reaching the optimum
--------------------
statsmodels' default gradient optimizers can stop far short of the REML optimum, most
visibly when the therapist variance is large (the plan measured standard errors five
times too large; ``tests/test_model.py`` keeps such a data set). :func:`fit_optimum`
therefore

1. fits the model once with every optimizer in ``model.optimizers`` (params.yaml),
2. keeps the best log-likelihood (the winner recorded is the first optimizer in the list
   within ``1e-4`` of it, so that the label does not hang on noise in the last digits),
3. polishes that point with a few safeguarded Newton steps on the profiled deviance
   (analytic gradient from statsmodels, Hessian by central differences of it), so that
   every optimizer that found the optimum gives the same numbers to many digits, and
4. checks the gradient there: the Newton-scaled gradient ``L^{-1} g`` (``H = L L'``, ``g``
   and ``H`` the gradient and Hessian of the deviance ``-2 loglik`` with respect to the
   relative Cholesky parameters, as lme4's convergence check) must not exceed
   ``model.gradient_tolerance`` in absolute value.

A fit that fails the check is kept but marked: ``converged`` is false in every table and a
warning says why. Fixed-effect covariances are ``sigma^2 (X' V^-1 X)^-1`` at the optimum,
the covariance lme4 and nlme report; p-values and intervals are Wald z.

References
----------
Baldwin, S. A., Wampold, B. E., & Imel, Z. E. (2007). Untangling the alliance-outcome
correlation. *Journal of Consulting and Clinical Psychology, 75*, 842-852.
Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
models using lme4. *Journal of Statistical Software, 67*(1).
Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
between-person effects in longitudinal models of change. *Annual Review of Psychology,
62*, 583-619.
Falkenström, F., Granström, F., & Holmqvist, R. (2013). Therapeutic alliance predicts
symptomatic improvement session by session. *Journal of Counseling Psychology, 60*,
317-328.
Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). Dynamic
models of individual change in psychotherapy process research. *Journal of Consulting and
Clinical Psychology, 85*, 537-549.
Holm, S. (1979). A simple sequentially rejective multiple test procedure. *Scandinavian
Journal of Statistics, 6*, 65-70.
Johnson, P. C. D. (2014). Extension of Nakagawa & Schielzeth's R2GLMM to random slopes
models. *Methods in Ecology and Evolution, 5*, 944-946.
Nakagawa, S., & Schielzeth, H. (2013). A general and simple method for obtaining R2 from
generalized linear mixed-effects models. *Methods in Ecology and Evolution, 4*, 133-142.
"""

from __future__ import annotations

import copy
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
import yaml
from scipy import linalg, stats
from statsmodels.regression.mixed_linear_model import MixedLM

from pipeline.outputs import write_csv, write_json

SUBSCALES: tuple[str, ...] = ("goal", "task", "bond")
#: Alliance scores disaggregated by :func:`prepare` (``total`` = mean of the subscales).
ALLIANCE: tuple[str, ...] = (*SUBSCALES, "total")
#: Columns every model needs; rows missing any of them are left out.
MODEL_VARIABLES: tuple[str, ...] = (
    "client_id", "therapist_id", "session", *SUBSCALES, "wellbeing",
)
#: The p-value and interval method, written to ``df_method``.
DF_METHOD = "Wald z (asymptotic normal)"
#: Default model specifications.
SPEC_PATH = Path(__file__).with_name("models.yaml")
#: Settings used when ``params.yaml`` leaves them out.
DEFAULT_SETTINGS: dict[str, Any] = {
    "optimizers": ["powell", "nm", "lbfgs", "bfgs"],
    "gradient_tolerance": 1e-3,
    "conf_level": 0.95,
}
#: Data constructions a model may ask for (``data:`` in models.yaml).
DATA_KINDS = ("complete", "lagged", "detrended")
#: Log-likelihoods this close to the best count as a tie when naming the winner.
LOGLIK_TIE = 1e-4
#: |relative Cholesky parameter| below this is a variance at the boundary (as lme4).
BOUNDARY_THETA = 1e-4
#: Variances whose relative Cholesky parameter is below this are reported as 0.
ZERO_THETA = BOUNDARY_THETA
_MAX_NEWTON = 8


# --------------------------------------------------------------------------------------
# Model specifications
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomPart:
    """Random part of a model (statsmodels groups / re_formula / vc_formula).

    Attributes
    ----------
    name
        Key in ``random_parts`` of models.yaml.
    groups
        Column of the statsmodels groups (the therapist).
    group_label
        Name of the group random intercept in the tables.
    re_formula
        statsmodels ``re_formula`` for random effects at the group level.
    vc_formula
        statsmodels variance components nested in the groups (name -> formula).
    intercepts
        Components that are random intercepts (used for ICCs).
    lme4
        The same random part in lme4 notation (documentation and the R reference).
    description
        Plain-language description.
    """

    name: str
    groups: str
    group_label: str
    re_formula: str
    vc_formula: Mapping[str, str]
    intercepts: tuple[str, ...]
    lme4: str
    description: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """One model of models.yaml (see the comments at the top of that file)."""

    name: str
    plan: str
    title: str
    description: str
    formula: str
    random: RandomPart
    reml: bool = True
    data: str = "complete"
    min_sessions: int | None = None
    covariates: tuple[str, ...] = ()
    holm: str | None = None
    holm_term: str | None = None
    icc: bool = False

    @property
    def outcome(self) -> str:
        """Left-hand side of the formula."""
        return self.formula.split("~", 1)[0].strip()


@dataclass(frozen=True)
class Comparison:
    """A likelihood-ratio test between two nested models (ML refits)."""

    name: str
    reduced: str
    full: str
    description: str = ""


@dataclass(frozen=True)
class ModelPlan:
    """All model specifications and comparisons of one models.yaml."""

    models: tuple[ModelSpec, ...]
    comparisons: tuple[Comparison, ...]
    random_parts: Mapping[str, RandomPart]

    def get(self, name: str) -> ModelSpec:
        """Return the model called ``name``."""
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(f"no model {name!r} in the model specifications")


_MODEL_KEYS = {
    "plan", "title", "description", "formula", "random", "reml", "data", "min_sessions",
    "covariates", "holm", "holm_term", "icc",
}
_RANDOM_KEYS = {"description", "groups", "group_label", "re_formula", "vc_formula",
                "intercepts", "lme4"}


def load_specs(path: str | Path | None = None) -> ModelPlan:
    """Read and check the model specifications.

    Parameters
    ----------
    path
        A models.yaml file; ``None`` reads ``pipeline/models.yaml``.

    Returns
    -------
    ModelPlan
        Models in file order, comparisons and random parts.

    Raises
    ------
    ValueError
        On unknown keys, unknown random parts or data kinds, and comparisons that name
        unknown models or models with different random parts or data.
    """
    raw = yaml.safe_load(Path(path or SPEC_PATH).read_text(encoding="utf-8"))
    parts: dict[str, RandomPart] = {}
    for name, entry in raw["random_parts"].items():
        unknown = set(entry) - _RANDOM_KEYS
        if unknown:
            raise ValueError(f"random part {name}: unknown keys {sorted(unknown)}")
        vcs = {str(k): str(v) for k, v in (entry.get("vc_formula") or {}).items()}
        label = str(entry.get("group_label", entry["groups"]))
        parts[name] = RandomPart(
            name=name,
            groups=str(entry["groups"]),
            group_label=label,
            re_formula=str(entry.get("re_formula", "1")),
            vc_formula=vcs,
            intercepts=tuple(str(c) for c in entry.get("intercepts", [label])),
            lme4=str(entry.get("lme4", "")),
            description=str(entry.get("description", "")),
        )
    models = []
    for name, entry in raw["models"].items():
        unknown = set(entry) - _MODEL_KEYS
        if unknown:
            raise ValueError(f"model {name}: unknown keys {sorted(unknown)}")
        if entry["random"] not in parts:
            raise ValueError(f"model {name}: unknown random part {entry['random']!r}")
        kind = str(entry.get("data", "complete"))
        if kind not in DATA_KINDS:
            raise ValueError(f"model {name}: data must be one of {DATA_KINDS}, not {kind!r}")
        if bool(entry.get("holm")) != bool(entry.get("holm_term")):
            raise ValueError(f"model {name}: give both holm and holm_term, or neither")
        min_sessions = entry.get("min_sessions")
        models.append(ModelSpec(
            name=str(name),
            plan=str(entry.get("plan", "")),
            title=str(entry.get("title", name)),
            description=" ".join(str(entry.get("description", "")).split()),
            formula=" ".join(str(entry["formula"]).split()),
            random=parts[entry["random"]],
            reml=bool(entry.get("reml", True)),
            data=kind,
            min_sessions=None if min_sessions is None else int(min_sessions),
            covariates=tuple(str(c) for c in entry.get("covariates", []) or []),
            holm=entry.get("holm"),
            holm_term=entry.get("holm_term"),
            icc=bool(entry.get("icc", False)),
        ))
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ValueError("model names must be unique")
    comparisons = []
    for entry in raw.get("comparisons", []) or []:
        comp = Comparison(name=str(entry["name"]), reduced=str(entry["reduced"]),
                          full=str(entry["full"]),
                          description=" ".join(str(entry.get("description", "")).split()))
        for side in (comp.reduced, comp.full):
            if side not in names:
                raise ValueError(f"comparison {comp.name}: unknown model {side!r}")
        red, full = models[names.index(comp.reduced)], models[names.index(comp.full)]
        if (red.random.name, red.data, red.min_sessions) != (
                full.random.name, full.data, full.min_sessions):
            raise ValueError(f"comparison {comp.name}: models differ in random part or data")
        comparisons.append(comp)
    return ModelPlan(models=tuple(models), comparisons=tuple(comparisons), random_parts=parts)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


def prepare(
    scored: pd.DataFrame,
    covariates: pd.DataFrame | None = None,
    *,
    required: Sequence[str] = (),
) -> pd.DataFrame:
    """Complete rows, ``time`` and the person-mean disaggregation of alliance.

    Parameters
    ----------
    scored
        One row per client x session with at least :data:`MODEL_VARIABLES`.
    covariates
        Client-level covariates (``client_id`` plus e.g. ``approach``, ``modality``),
        merged on ``client_id``; columns already in ``scored`` are not taken again.
    required
        Further columns (e.g. covariates) a row must have to be kept.

    Returns
    -------
    pandas.DataFrame
        The rows with every variable of :data:`MODEL_VARIABLES` and ``required``, sorted
        by therapist, client and session, with ``time = session - 1``, ``total`` (mean of
        goal, task, bond) and for ``k`` in goal, task, bond, total (Curran & Bauer 2011),
        computed on these rows:

        * ``k_between`` = client mean of k - mean over clients of the client means,
        * ``k_within`` = k - client mean of k,
        * ``k_therapist`` = therapist's mean of their clients' means - mean of client
          means, and ``k_client`` = client mean - that therapist mean (so
          ``k_between = k_therapist + k_client``).

        ``attrs["n_input"]`` holds the number of input rows and ``attrs["n_missing"]`` the
        number left out for missing values.

    Raises
    ------
    ValueError
        When a column is absent, a client x session occurs twice, or a client has more
        than one therapist (client ids must be unique across therapists).

    References
    ----------
    Curran, P. J., & Bauer, D. J. (2011). *Annual Review of Psychology, 62*, 583-619.
    """
    data = scored.copy()
    if covariates is not None:
        if covariates["client_id"].duplicated().any():
            raise ValueError("the clients table has duplicated client_id values")
        extra = [c for c in covariates.columns if c != "client_id" and c not in data.columns]
        data = data.merge(covariates[["client_id", *extra]], on="client_id", how="left",
                          validate="many_to_one")
    need = [*MODEL_VARIABLES, *[c for c in required if c not in MODEL_VARIABLES]]
    absent = [c for c in need if c not in data.columns]
    if absent:
        raise ValueError(f"columns missing for the model: {absent}")
    n_input = len(data)
    data = data[data[need].notna().all(axis=1)]
    if data.duplicated(["client_id", "session"]).any():
        raise ValueError("a client x session occurs more than once")
    if (data.groupby("client_id")["therapist_id"].nunique() > 1).any():
        raise ValueError("a client has more than one therapist; client ids must be unique "
                         "across therapists")
    data = data.sort_values(["therapist_id", "client_id", "session"], kind="mergesort")
    data = data.reset_index(drop=True)
    data["time"] = data["session"].astype(float) - 1.0
    data["total"] = data[list(SUBSCALES)].astype(float).mean(axis=1)
    data = disaggregate(data)
    data.attrs.update(n_input=n_input, n_missing=n_input - len(data))
    return data


def disaggregate(data: pd.DataFrame, scores: Sequence[str] = ALLIANCE) -> pd.DataFrame:
    """Add the person-mean disaggregation of ``scores`` (see :func:`prepare`).

    Parameters
    ----------
    data
        Rows a model uses, with ``client_id``, ``therapist_id`` and the scores.
    scores
        Columns to disaggregate.

    Returns
    -------
    pandas.DataFrame
        A copy with ``k_within``, ``k_between``, ``k_client`` and ``k_therapist``.
    """
    out = data.copy()
    by_client = out.groupby("client_id", sort=True)
    client_therapist = by_client["therapist_id"].first()
    for k in scores:
        client_mean = by_client[k].mean()
        grand = float(client_mean.mean())
        therapist_mean = client_mean.groupby(client_therapist).mean()
        cm = out["client_id"].map(client_mean).astype(float)
        tm = out["therapist_id"].map(therapist_mean).astype(float)
        out[f"{k}_between"] = cm - grand
        out[f"{k}_within"] = out[k].astype(float) - cm
        out[f"{k}_therapist"] = tm - grand
        out[f"{k}_client"] = cm - tm
    return out


def add_lags(data: pd.DataFrame, scores: Sequence[str] = ALLIANCE) -> pd.DataFrame:
    """Pair each row with the client's previous observed row.

    Parameters
    ----------
    data
        Output of :func:`prepare` (sorted by client and session).
    scores
        Alliance scores whose ``k_within`` is lagged.

    Returns
    -------
    pandas.DataFrame
        Rows that have a previous row, with ``k_within_lag``, ``wellbeing_lag`` and
        ``session_lag``; the disaggregation columns themselves are unchanged (client
        means over all the client's complete rows).
    """
    out = data.copy()
    by_client = out.groupby("client_id", sort=False)
    for col in [*(f"{k}_within" for k in scores), "wellbeing", "session"]:
        out[f"{col}_lag"] = by_client[col].shift(1)
    out = out[out["session_lag"].notna()].reset_index(drop=True)
    out.attrs = dict(data.attrs)
    return out


def detrend_within(data: pd.DataFrame, scores: Sequence[str] = ALLIANCE) -> pd.DataFrame:
    """Replace ``k_within`` by the residual of each client's own OLS line of k on time.

    Parameters
    ----------
    data
        Output of :func:`prepare`.
    scores
        Scores to detrend.

    Returns
    -------
    pandas.DataFrame
        A copy; for a client whose times do not vary the residual is ``k_within``.

    References
    ----------
    Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017).
    *Journal of Consulting and Clinical Psychology, 85*, 537-549.
    """
    out = data.copy()
    by_client = out.groupby("client_id", sort=False)
    t_c = out["time"] - by_client["time"].transform("mean")
    sxx = (t_c**2).groupby(out["client_id"], sort=False).transform("sum")
    for k in scores:
        y_c = out[f"{k}_within"]
        sxy = (t_c * y_c).groupby(out["client_id"], sort=False).transform("sum")
        slope = np.where(sxx > 0, sxy / sxx.where(sxx > 0, 1.0), 0.0)
        out[f"{k}_within"] = y_c - slope * t_c
    out.attrs = dict(data.attrs)
    return out


def model_data(
    scored: pd.DataFrame, clients: pd.DataFrame | None, spec: ModelSpec
) -> pd.DataFrame:
    """Build the rows and predictors a model uses.

    Parameters
    ----------
    scored
        Scored client x session rows.
    clients
        Client covariates or ``None``.
    spec
        The model.

    Returns
    -------
    pandas.DataFrame
        As :func:`prepare`, with ``min_sessions``, ``lagged`` or ``detrended`` applied;
        ``attrs`` has ``n_input``, ``n_missing`` and ``n_excluded`` (rows left out by the
        model's design: too few sessions, no previous row).
    """
    data = prepare(scored, clients if spec.covariates else None, required=spec.covariates)
    attrs = dict(data.attrs)
    n_complete = len(data)
    if spec.min_sessions is not None:
        counts = data.groupby("client_id")["session"].transform("size")
        data = disaggregate(data[counts >= spec.min_sessions].reset_index(drop=True))
    if spec.data == "lagged":
        data = add_lags(data)
    elif spec.data == "detrended":
        data = detrend_within(data)
    data.attrs = {**attrs, "n_excluded": n_complete - len(data)}
    return data


# --------------------------------------------------------------------------------------
# Fitting at the optimum
# --------------------------------------------------------------------------------------


class FitError(RuntimeError):
    """Every optimizer failed on a model."""


@dataclass(frozen=True)
class Attempt:
    """One optimizer's run from the start values."""

    optimizer: str
    loglik: float
    reported_converged: bool
    seconds: float
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class OptimumFit:
    """A MixedLM fit at the (checked) optimum.

    Attributes
    ----------
    model
        The statsmodels model.
    result
        statsmodels results at ``theta`` (its ``converged`` is this fit's).
    reml
        REML (True) or ML.
    theta
        Relative Cholesky parameters (statsmodels' packed ``use_sqrt`` vector, lme4's
        theta).
    loglik
        REML or ML log-likelihood at the optimum.
    fe_params
        Fixed effects.
    fe_cov
        Their covariance ``sigma^2 (X' V^-1 X)^-1``.
    variances
        Variance components by name, ``residual`` last.
    optimizer
        The first optimizer (in list order) that reached the best log-likelihood within
        ``LOGLIK_TIE`` (``newton`` when the start was polished directly).
    converged
        Whether the gradient check passed.
    gradient_norm
        Max absolute Newton-scaled deviance gradient over the interior parameters (raw
        gradient if their Hessian is not positive definite) and, for parameters at the
        boundary, how steeply the deviance falls away from zero.
    newton_steps
        Newton steps taken in the polish.
    attempts
        Every optimizer's run.
    warnings
        Problems found (non-convergence, boundary, ...).
    seconds
        Wall time of the fit.
    """

    model: MixedLM
    result: Any
    reml: bool
    theta: np.ndarray
    loglik: float
    fe_params: pd.Series
    fe_cov: pd.DataFrame
    variances: dict[str, float]
    optimizer: str
    converged: bool
    gradient_norm: float
    newton_steps: int
    attempts: tuple[Attempt, ...]
    warnings: tuple[str, ...]
    seconds: float

    @property
    def n_params(self) -> int:
        """Number of estimated parameters (fixed, covariance and residual)."""
        return len(self.fe_params) + len(self.theta) + 1


def build_model(formula: str, data: pd.DataFrame, random: RandomPart) -> MixedLM:
    """Build the statsmodels MixedLM for a formula and random part.

    Parameters
    ----------
    formula
        Fixed part.
    data
        Model rows (no missing values in the variables used).
    random
        Random part.

    Returns
    -------
    MixedLM
        Unfitted model.
    """
    return smf.mixedlm(formula, data, groups=random.groups, re_formula=random.re_formula,
                       vc_formula=dict(random.vc_formula) or None)


def _deviance_derivatives(
    model: MixedLM, theta: np.ndarray, free: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient (analytic) and Hessian (central differences) of ``-2 loglik(theta)``.

    Only the columns of ``free`` coordinates are differenced (the others are at the
    boundary, where a difference step would cross zero); the rest of the Hessian is 0.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        grad = -2.0 * np.asarray(model.score(theta.copy()), dtype=float)
        k = len(theta)
        hess = np.zeros((k, k))
        for i in np.flatnonzero(free):
            step = 1e-5 * max(1.0, abs(theta[i]))
            e = np.zeros(k)
            e[i] = step
            g_up = -2.0 * np.asarray(model.score(theta + e), dtype=float)
            g_dn = -2.0 * np.asarray(model.score(theta - e), dtype=float)
            hess[:, i] = (g_up - g_dn) / (2.0 * step)
    sub = np.ix_(free, free)
    hess[sub] = (hess[sub] + hess[sub].T) / 2.0
    return grad, hess


def _loglike(model: MixedLM, theta: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = float(model.loglike(theta.copy()))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            return -np.inf
    return value if np.isfinite(value) else -np.inf


def _gradient_check(
    grad: np.ndarray, hess: np.ndarray, theta: np.ndarray, free: np.ndarray
) -> tuple[float, bool]:
    """Optimality measure at ``theta`` and whether the free Hessian block is PD.

    For the free (interior) coordinates: max ``|L^-1 g|`` with ``H = L L'`` (lme4's scaled
    gradient), or max ``|g|`` when ``H`` is not positive definite. For coordinates at
    the boundary (``|theta| < BOUNDARY_THETA``): how steeply the deviance falls when
    moving away from zero, ``max(0, -g sign(theta))`` (0 at a boundary optimum).
    """
    parts = [0.0]
    pos_def = True
    idx = np.flatnonzero(free)
    if idx.size:
        g_free = grad[idx]
        try:
            chol = np.linalg.cholesky(hess[np.ix_(idx, idx)])
            parts.append(float(np.max(np.abs(linalg.solve_triangular(chol, g_free,
                                                                       lower=True)))))
        except np.linalg.LinAlgError:
            pos_def = False
            parts.append(float(np.max(np.abs(g_free))))
    for i in np.flatnonzero(~free):
        direction = np.sign(theta[i]) if theta[i] != 0 else -np.sign(grad[i])
        parts.append(max(0.0, float(-grad[i] * direction)))
    return max(parts), pos_def


def _newton_polish(model: MixedLM, theta: np.ndarray) -> tuple[np.ndarray, float, int, bool]:
    """Safeguarded Newton steps on the deviance over the interior coordinates.

    Returns the polished theta, the optimality measure of :func:`_gradient_check`, the
    number of steps taken and whether the interior Hessian is positive definite.
    """
    theta = np.asarray(theta, dtype=float).copy()
    loglik = _loglike(model, theta)
    steps = 0
    while True:
        free = np.abs(theta) >= BOUNDARY_THETA
        grad, hess = _deviance_derivatives(model, theta, free)
        norm, pos_def = _gradient_check(grad, hess, theta, free)
        if not pos_def or norm <= 1e-9 or steps >= _MAX_NEWTON or not free.any():
            break
        idx = np.flatnonzero(free)
        delta = np.zeros_like(theta)
        delta[idx] = linalg.cho_solve(linalg.cho_factor(hess[np.ix_(idx, idx)], lower=True),
                                      grad[idx])
        accepted = False
        for shrink in (1.0, 0.5, 0.25, 0.125, 0.0625):
            candidate = theta - shrink * delta
            value = _loglike(model, candidate)
            if value >= loglik - 1e-9:
                theta, loglik, accepted = candidate, value, True
                break
        if not accepted:
            break
        steps += 1
    return theta, norm, steps, pos_def


def _result_at(model: MixedLM, theta: np.ndarray, reml: bool) -> Any:
    """statsmodels results at ``theta`` without moving it (zero BFGS iterations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(reml=reml, start_params=theta.copy(), method="bfgs", maxiter=0)


def _variances(model: MixedLM, result: Any, random: RandomPart,
               theta: np.ndarray) -> dict[str, float]:
    """Variance components by name; those at the boundary (tiny theta) set to 0."""
    out: dict[str, float] = {}
    k_re = model.k_re
    cov_re = np.asarray(result.cov_re, dtype=float)
    re_names = list(model.exog_re_names) if k_re > 1 else [random.group_label]
    # packed order: lower triangle of the Cholesky factor of cov_re, then sqrt(vcomp)
    tri = np.tril_indices(k_re)
    diag_pos = {int(i): int(j) for j, (i, c) in enumerate(zip(*tri, strict=True)) if i == c}
    for i in range(k_re):
        name = random.group_label if k_re == 1 else f"{random.group_label}_{re_names[i]}"
        small = abs(theta[diag_pos[i]]) < ZERO_THETA
        out[name] = 0.0 if small else float(cov_re[i, i])
    for i in range(k_re):
        for j in range(i):
            out[f"{random.group_label}_{re_names[j]}_{re_names[i]}_cov"] = float(cov_re[i, j])
    n_tri = len(tri[0])
    for j, name in enumerate(model.exog_vc.names):
        small = abs(theta[n_tri + j]) < ZERO_THETA
        out[str(name)] = 0.0 if small else float(result.vcomp[j])
    out["residual"] = float(result.scale)
    return out


def fit_optimum(
    model: MixedLM,
    *,
    reml: bool = True,
    optimizers: Sequence[str] = DEFAULT_SETTINGS["optimizers"],
    gradient_tolerance: float = DEFAULT_SETTINGS["gradient_tolerance"],
    start: np.ndarray | None = None,
    polish_start_first: bool = False,
    random: RandomPart | None = None,
    maxiter: int | None = None,
) -> OptimumFit:
    """Fit a MixedLM with several optimizers, keep the best, polish and check it.

    Parameters
    ----------
    model
        An unfitted statsmodels MixedLM.
    reml
        REML (True) or ML.
    optimizers
        statsmodels optimizer names tried in turn (each from ``start``).
    gradient_tolerance
        Largest acceptable max absolute Newton-scaled deviance gradient.
    start
        Start values (packed relative Cholesky parameters); statsmodels' default if
        ``None``.
    polish_start_first
        Try Newton from ``start`` first and run the optimizers only if that does not pass
        the gradient check (used for ML refits started at the REML optimum).
    random
        Random part, for names of variance components (defaults to a generic one).
    maxiter
        Passed to statsmodels' fit when given.

    Returns
    -------
    OptimumFit
        The fit; ``converged`` is False (and a warning says so) when the gradient check
        fails at the best point found.

    Raises
    ------
    FitError
        When every optimizer raised an error.
    ValueError
        For optimizers MixedLM does not support.
    """
    began = time.perf_counter()
    for opt in optimizers:
        if opt.lower() in ("newton", "ncg"):
            raise ValueError(f"optimizer {opt!r} is not available for MixedLM")
    if random is None:
        random = RandomPart("generic", "groups", "group", "1", {}, ("group",), "")
    model.reml = reml
    attempts: list[Attempt] = []
    chosen: tuple[str, np.ndarray] | None = None
    polished: tuple[np.ndarray, float, int, bool] | None = None

    if polish_start_first and start is not None:
        t0 = time.perf_counter()
        polished = _newton_polish(model, np.asarray(start, dtype=float))
        attempts.append(Attempt("newton", _loglike(model, polished[0]),
                                polished[3] and polished[1] <= gradient_tolerance,
                                time.perf_counter() - t0))
        if polished[3] and polished[1] <= gradient_tolerance:
            chosen = ("newton", polished[0])
        else:
            polished = None

    if chosen is None:
        kwargs: dict[str, Any] = {} if maxiter is None else {"maxiter": int(maxiter)}
        candidates: list[tuple[str, float, np.ndarray]] = []
        for opt in optimizers:
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    res = model.fit(reml=reml, method=[opt],
                                    start_params=None if start is None else start.copy(),
                                    **kwargs)
                except (np.linalg.LinAlgError, ValueError, FloatingPointError) as exc:
                    attempts.append(Attempt(opt, -np.inf, False, time.perf_counter() - t0,
                                            (f"{type(exc).__name__}: {exc}",)))
                    continue
            messages = tuple(sorted({str(w.message).splitlines()[0] for w in caught}))
            theta = np.asarray(res.params_object.get_packed(use_sqrt=True, has_fe=False),
                               dtype=float)
            loglik = _loglike(model, theta)
            attempts.append(Attempt(opt, loglik, bool(res.converged),
                                    time.perf_counter() - t0, messages))
            if np.isfinite(loglik):
                candidates.append((opt, loglik, theta))
        if not candidates:
            raise FitError("every optimizer failed: "
                           + "; ".join(f"{a.optimizer}: {a.messages}" for a in attempts))
        best = max(candidates, key=lambda c: c[1])
        name = next(c[0] for c in candidates if c[1] >= best[1] - LOGLIK_TIE)
        chosen = (name, best[2])

    model.reml = reml
    theta, norm, steps, pos_def = polished if polished is not None else _newton_polish(
        model, chosen[1])
    converged = bool(norm <= gradient_tolerance and pos_def)
    notes: list[str] = []
    if norm > gradient_tolerance:
        notes.append(
            f"NOT CONVERGED: no optimizer reached the optimum (max scaled gradient "
            f"{norm:.3g} > {gradient_tolerance:g}; best: {chosen[0]}); do not use these "
            "estimates")
    if not pos_def:
        notes.append("NOT CONVERGED: the Hessian of the profiled deviance is not positive "
                     "definite at the best point (a saddle or a flat, unidentified "
                     "direction); do not use these estimates")

    result = _result_at(model, theta, reml)
    result._results.converged = converged
    k_fe = model.k_fe
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hess, _ = model.hessian(result.params_object)
    names = list(model.exog_names[:k_fe])
    fe_cov = pd.DataFrame(-np.linalg.inv(hess[:k_fe, :k_fe]), index=names, columns=names)
    variances = _variances(model, result, random, theta)
    boundary = [n for n, v in variances.items() if n != "residual" and not n.endswith("_cov")
                and v < (BOUNDARY_THETA**2) * variances["residual"]]
    if boundary:
        notes.append("variance at the boundary (estimated as about zero): "
                     + ", ".join(boundary))
    return OptimumFit(
        model=model, result=result, reml=reml, theta=theta, loglik=_loglike(model, theta),
        fe_params=pd.Series(np.asarray(result.fe_params, dtype=float), index=names),
        fe_cov=fe_cov, variances=variances, optimizer=chosen[0], converged=converged,
        gradient_norm=norm, newton_steps=steps, attempts=tuple(attempts),
        warnings=tuple(notes), seconds=time.perf_counter() - began,
    )


# --------------------------------------------------------------------------------------
# Models of the plan
# --------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """A model of the plan: its data, REML (or ML) fit and ML refit.

    Attributes
    ----------
    spec
        The model specification.
    status
        ``fitted``, ``not converged``, ``skipped`` (e.g. covariate absent) or ``failed``.
    fit
        The fit as specified (REML unless ``reml: false``); ``None`` unless fitted.
    ml
        The maximum-likelihood refit (the same object for ML models).
    data
        The rows and predictors used.
    n_input, n_missing, n_excluded
        Input rows, rows left out for missing values, rows left out by design.
    conf_level
        Confidence level of the intervals.
    plan
        The model plan the spec came from (for the comparisons).
    note
        Why a model was skipped or failed.
    """

    spec: ModelSpec
    status: str
    fit: OptimumFit | None = None
    ml: OptimumFit | None = None
    data: pd.DataFrame | None = None
    n_input: int = 0
    n_missing: int = 0
    n_excluded: int = 0
    conf_level: float = 0.95
    plan: ModelPlan | None = None
    note: str = ""
    seconds: float = field(default=0.0, compare=False)

    @property
    def name(self) -> str:
        """Model name."""
        return self.spec.name

    @property
    def converged(self) -> bool:
        """True when the fit (and its ML refit, if any) passed the gradient check."""
        return bool(self.fit is not None and self.fit.converged
                    and (self.ml is None or self.ml.converged))


def _settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    out = dict(DEFAULT_SETTINGS)
    out.update({k: v for k, v in (settings or {}).items() if v is not None})
    out["optimizers"] = [str(o) for o in out["optimizers"]]
    return out


def _log(message: str) -> None:
    print(f"[model] {message}", file=sys.stderr, flush=True)


def fit_model(
    scored: pd.DataFrame,
    clients: pd.DataFrame | None,
    spec: ModelSpec,
    settings: Mapping[str, Any] | None = None,
    *,
    plan: ModelPlan | None = None,
    refit_ml: bool = True,
    verbose: bool = False,
) -> FitResult:
    """Fit one model of the plan, and its ML refit.

    Parameters
    ----------
    scored
        Scored client x session rows.
    clients
        Client covariates or ``None``.
    spec
        The model.
    settings
        The ``model:`` block of params.yaml (``optimizers``, ``gradient_tolerance``,
        ``conf_level``, optionally ``maxiter``).
    plan
        The plan the spec belongs to (kept for the comparisons).
    refit_ml
        Refit by ML (for AIC, BIC and likelihood-ratio tests).
    verbose
        Print a progress line to stderr.

    Returns
    -------
    FitResult
        ``status`` is ``skipped`` when a covariate is absent or has a single level.
    """
    conf = _settings(settings)
    began = time.perf_counter()
    for cov in spec.covariates:
        if clients is None or cov not in clients.columns:
            return FitResult(spec, "skipped", conf_level=float(conf["conf_level"]), plan=plan,
                             note=f"client covariate {cov!r} not available")
    data = model_data(scored, clients, spec)
    common: dict[str, Any] = {
        "data": data, "n_input": int(data.attrs["n_input"]),
        "n_missing": int(data.attrs["n_missing"]), "n_excluded": int(data.attrs["n_excluded"]),
        "conf_level": float(conf["conf_level"]), "plan": plan,
    }
    for cov in spec.covariates:
        if data[cov].nunique() < 2:
            return FitResult(spec, "skipped", note=f"client covariate {cov!r} has one level",
                             **common)
    model = build_model(spec.formula, data, spec.random)
    options = {"optimizers": conf["optimizers"],
               "gradient_tolerance": float(conf["gradient_tolerance"]),
               "random": spec.random, "maxiter": conf.get("maxiter")}
    fit = fit_optimum(model, reml=spec.reml, **options)
    if not spec.reml or not refit_ml:
        ml = fit if not spec.reml else None
    else:
        ml = fit_optimum(copy.copy(model), reml=False, start=fit.theta,
                         polish_start_first=True, **options)
    status = "fitted" if fit.converged and (ml is None or ml.converged) else "not converged"
    result = FitResult(spec, status, fit=fit, ml=ml, note="; ".join(fit.warnings),
                       seconds=time.perf_counter() - began, **common)
    if verbose:
        method = "REML" if spec.reml else "ML"
        ml_part = f", ML refit {ml.optimizer}" if ml is not None and ml is not fit else ""
        flag = "converged" if result.converged else "NOT CONVERGED"
        _log(f"{spec.name}: {method} n={len(data)}, best {fit.optimizer} (loglik "
             f"{fit.loglik:.6f}){ml_part}, {flag}, {result.seconds:.1f} s")
        for note in fit.warnings:
            _log(f"{spec.name}: {note}")
    return result


def fit_all(
    scored: pd.DataFrame,
    clients: pd.DataFrame | None,
    settings: Mapping[str, Any] | None = None,
    *,
    specs: str | Path | ModelPlan | None = None,
    models: Sequence[str] | None = None,
    verbose: bool = True,
) -> list[FitResult]:
    """Fit every model of the plan (the entry point of ``python -m pipeline fit``).

    Parameters
    ----------
    scored
        Scored client x session rows (client_id, therapist_id, session, goal, task,
        bond, wellbeing).
    clients
        Client covariates (client_id, approach, modality, ...) or ``None``.
    settings
        The ``model:`` block of params.yaml.
    specs
        A models.yaml path or loaded plan; default ``pipeline/models.yaml``.
    models
        Names of the models to fit (default: all, in file order).
    verbose
        Print one progress line per model to stderr.

    Returns
    -------
    list of FitResult
        In the order of models.yaml. A failure of the primary model is raised; other
        models that fail are returned with ``status = "failed"``.
    """
    from threadpoolctl import threadpool_limits

    plan = specs if isinstance(specs, ModelPlan) else load_specs(specs)
    chosen = plan.models if models is None else tuple(plan.get(m) for m in models)
    fits: list[FitResult] = []
    with threadpool_limits(limits=1):
        for spec in chosen:
            try:
                fits.append(fit_model(scored, clients, spec, settings, plan=plan,
                                      verbose=verbose))
            except Exception as exc:  # a secondary model must not stop the others
                if spec.name == "primary":
                    raise
                if verbose:
                    _log(f"{spec.name}: FAILED: {exc}")
                fits.append(FitResult(spec, "failed", plan=plan,
                                      conf_level=float(_settings(settings)["conf_level"]),
                                      note=f"{type(exc).__name__}: {exc}"))
            if verbose and fits[-1].status == "skipped":
                _log(f"{spec.name}: skipped ({fits[-1].note})")
    return fits


# --------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values.

    Parameters
    ----------
    p_values
        Unadjusted p-values of one family.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values in the input order.
    """
    p = np.asarray(p_values, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="mergesort")
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out


def coefficients(fits: Sequence[FitResult]) -> pd.DataFrame:
    """Fixed effects of every fitted model.

    Parameters
    ----------
    fits
        Output of :func:`fit_all`.

    Returns
    -------
    pandas.DataFrame
        model, plan, term, estimate, std_error, statistic (z), p_value, conf_low,
        conf_high, conf_level, p_holm (Holm across the family's terms, else NaN),
        df_method, converged; rows in model order (models.yaml), terms in formula order.
    """
    rows = []
    for fr in fits:
        if fr.fit is None:
            continue
        est = fr.fit.fe_params
        se = np.sqrt(np.diag(fr.fit.fe_cov.to_numpy()))
        z = est.to_numpy() / se
        crit = stats.norm.ppf(0.5 + fr.conf_level / 2.0)
        for i, term in enumerate(est.index):
            rows.append({
                "model": fr.name, "plan": fr.spec.plan, "term": term,
                "estimate": float(est.iloc[i]), "std_error": float(se[i]),
                "statistic": float(z[i]), "p_value": float(2.0 * stats.norm.sf(abs(z[i]))),
                "conf_low": float(est.iloc[i] - crit * se[i]),
                "conf_high": float(est.iloc[i] + crit * se[i]),
                "conf_level": fr.conf_level, "p_holm": np.nan, "df_method": DF_METHOD,
                "converged": fr.converged,
            })
    table = pd.DataFrame(rows, columns=[
        "model", "plan", "term", "estimate", "std_error", "statistic", "p_value", "conf_low",
        "conf_high", "conf_level", "p_holm", "df_method", "converged"])
    families: dict[str, list[int]] = {}
    for fr in fits:
        if fr.fit is None or fr.spec.holm is None:
            continue
        hit = table.index[(table["model"] == fr.name) & (table["term"] == fr.spec.holm_term)]
        families.setdefault(fr.spec.holm, []).extend(int(i) for i in hit)
    for members in families.values():
        table.loc[members, "p_holm"] = holm(table.loc[members, "p_value"].to_numpy())
    return table


def variance_components(fits: Sequence[FitResult]) -> pd.DataFrame:
    """Variance components of every fitted model.

    Parameters
    ----------
    fits
        Output of :func:`fit_all`.

    Returns
    -------
    pandas.DataFrame
        model, component (therapist, client, client_time, ..., residual), variance, sd
        (NaN for covariances), converged. Variances at the boundary are 0.
    """
    rows = []
    for fr in fits:
        if fr.fit is None:
            continue
        for name, var in fr.fit.variances.items():
            sd = np.nan if name.endswith("_cov") else float(np.sqrt(max(var, 0.0)))
            rows.append({"model": fr.name, "component": name, "variance": var, "sd": sd,
                         "converged": fr.converged})
    return pd.DataFrame(rows, columns=["model", "component", "variance", "sd", "converged"])


def r_squared(fit: OptimumFit) -> tuple[float, float]:
    """Marginal and conditional R² (Nakagawa & Schielzeth 2013; Johnson 2014).

    Parameters
    ----------
    fit
        A fitted model.

    Returns
    -------
    tuple of float
        ``(r2_marginal, r2_conditional)`` with the fixed-part variance ``var(X b)``, the
        random-part variance ``mean_i(z_i' Sigma z_i)`` over the rows (Johnson's
        extension for random slopes) and the residual variance.
    """
    model = fit.model
    exog = np.asarray(model.exog, dtype=float)
    varying = np.ptp(exog, axis=0) > 0  # constant columns add nothing but rounding noise
    fixed = exog[:, varying] @ fit.fe_params.to_numpy()[varying]
    var_fixed = float(np.var(fixed, ddof=1)) if varying.any() and len(fixed) > 1 else 0.0
    cov_re = np.asarray(fit.result.cov_re, dtype=float)
    z_re = np.asarray(model.exog_re, dtype=float)
    var_random = float(np.mean(np.sum((z_re @ cov_re) * z_re, axis=1))) if model.k_re else 0.0
    n = len(fixed)
    for j, name in enumerate(model.exog_vc.names):
        sq = sum(float(np.sum(np.asarray(mat, dtype=float) ** 2))
                 for mat in model.exog_vc.mats[j])
        var_random += fit.variances[str(name)] * sq / n
    total = var_fixed + var_random + fit.variances["residual"]
    return var_fixed / total, (var_fixed + var_random) / total


def _ic(fit: OptimumFit) -> tuple[float, float]:
    k, n = fit.n_params, fit.model.nobs
    return -2.0 * fit.loglik + 2.0 * k, -2.0 * fit.loglik + k * np.log(n)


FIT_STATISTICS_COLUMNS = [
    "model", "plan", "status", "reml", "n_obs", "n_clients", "n_therapists", "n_rows_input",
    "n_rows_missing", "n_rows_excluded", "n_params", "loglik", "loglik_ml", "aic", "bic",
    "r2_marginal", "r2_conditional", "icc_therapist", "icc_client", "optimizer",
    "ml_optimizer", "converged", "gradient_norm", "ml_gradient_norm", "warning",
]


def _gradient_out(value: float) -> float:
    """Gradient norm rounded to 1e-6 (below that it is numerical noise)."""
    return float(np.round(value, 6))


def fit_statistics(fits: Sequence[FitResult]) -> pd.DataFrame:
    """One row per model: sizes, likelihoods, AIC/BIC (ML), R², ICCs, optimizer.

    Parameters
    ----------
    fits
        Output of :func:`fit_all`.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`FIT_STATISTICS_COLUMNS`. ``loglik`` is of the fit as specified
        (REML or ML); ``aic``/``bic`` are from the ML refit (BIC with the number of
        rows); ``icc_therapist``/``icc_client`` are the therapist and client shares of
        the intercept variance (at time 0) for models with ``icc: true``;
        ``gradient_norm`` is rounded to 1e-6; ``warning`` says what went wrong, if
        anything.
    """
    rows = []
    for fr in fits:
        row: dict[str, Any] = {c: np.nan for c in FIT_STATISTICS_COLUMNS}
        row.update(model=fr.name, plan=fr.spec.plan, status=fr.status, reml=fr.spec.reml,
                   converged=fr.converged, warning=fr.note, optimizer="", ml_optimizer="")
        if fr.data is not None:
            row.update(n_rows_input=fr.n_input, n_rows_missing=fr.n_missing,
                       n_rows_excluded=fr.n_excluded)
        fit = fr.fit
        if fit is not None:
            data = fr.data
            assert data is not None
            r2m, r2c = r_squared(fit)
            row.update(
                n_obs=len(data), n_clients=data["client_id"].nunique(),
                n_therapists=data["therapist_id"].nunique(), n_params=fit.n_params,
                loglik=fit.loglik, r2_marginal=r2m, r2_conditional=r2c,
                optimizer=fit.optimizer, gradient_norm=_gradient_out(fit.gradient_norm),
            )
            if fr.ml is not None:
                aic, bic = _ic(fr.ml)
                row.update(loglik_ml=fr.ml.loglik, aic=aic, bic=bic,
                           ml_optimizer=fr.ml.optimizer,
                           ml_gradient_norm=_gradient_out(fr.ml.gradient_norm))
                if not fr.ml.converged:
                    row["warning"] = "; ".join(
                        x for x in (row["warning"], "ML refit: " + "; ".join(fr.ml.warnings))
                        if x)
            if fr.spec.icc:
                v = fit.variances
                parts = [v.get(c, 0.0) for c in fr.spec.random.intercepts]
                total = sum(parts) + v["residual"]
                label = fr.spec.random.group_label
                row["icc_therapist"] = v.get(label, 0.0) / total
                row["icc_client"] = v.get("client", 0.0) / total
        rows.append(row)
    table = pd.DataFrame(rows, columns=FIT_STATISTICS_COLUMNS)
    for col in ("n_obs", "n_clients", "n_therapists", "n_rows_input", "n_rows_missing",
                "n_rows_excluded", "n_params"):
        table[col] = table[col].astype("Int64")
    return table


LR_COLUMNS = [
    "comparison", "reduced", "full", "n_obs", "df", "loglik_reduced", "loglik_full",
    "statistic", "p_value", "aic_reduced", "aic_full", "bic_reduced", "bic_full",
    "converged", "note",
]


def lr_tests(
    fits: Sequence[FitResult], comparisons: Sequence[Comparison] | None = None
) -> pd.DataFrame:
    """Likelihood-ratio tests of nested models on their ML refits.

    Parameters
    ----------
    fits
        Output of :func:`fit_all`.
    comparisons
        Comparisons to make; default those of the plan the fits came from.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`LR_COLUMNS`; ``statistic = 2 (loglik_full - loglik_reduced)``,
        chi-square with ``df`` = difference in numbers of fixed effects. Comparisons with
        a model that was not fitted, or fitted on other rows, are listed with a note and
        no test.
    """
    if comparisons is None:
        plan = next((f.plan for f in fits if f.plan is not None), None)
        comparisons = plan.comparisons if plan is not None else load_specs().comparisons
    by_name = {f.name: f for f in fits}
    rows = []
    for comp in comparisons:
        row: dict[str, Any] = {c: np.nan for c in LR_COLUMNS}
        row.update(comparison=comp.name, reduced=comp.reduced, full=comp.full,
                   converged=False, note="")
        red, full = by_name.get(comp.reduced), by_name.get(comp.full)
        if red is None or full is None:
            continue
        if red.ml is None or full.ml is None or red.data is None or full.data is None:
            row["note"] = "not tested: a model was not fitted"
            rows.append(row)
            continue
        keys = ["client_id", "session"]
        if not red.data[keys].equals(full.data[keys]):
            row["note"] = "not tested: the models use different rows"
            rows.append(row)
            continue
        stat = 2.0 * (full.ml.loglik - red.ml.loglik)
        df = full.ml.n_params - red.ml.n_params
        aic_r, bic_r = _ic(red.ml)
        aic_f, bic_f = _ic(full.ml)
        row.update(n_obs=len(full.data), df=df, loglik_reduced=red.ml.loglik,
                   loglik_full=full.ml.loglik, statistic=stat,
                   p_value=float(stats.chi2.sf(max(stat, 0.0), df)) if df > 0 else np.nan,
                   aic_reduced=aic_r, aic_full=aic_f, bic_reduced=bic_r, bic_full=bic_f,
                   converged=bool(red.ml.converged and full.ml.converged))
        if not row["converged"]:
            row["note"] = "an ML refit did not converge"
        rows.append(row)
    table = pd.DataFrame(rows, columns=LR_COLUMNS)
    table["n_obs"] = table["n_obs"].astype("Int64")
    table["df"] = table["df"].astype("Int64")
    return table


def optimizer_attempts(fits: Sequence[FitResult]) -> pd.DataFrame:
    """Every optimizer's run (model, fit, optimizer, loglik, reported convergence, s).

    Parameters
    ----------
    fits
        Output of :func:`fit_all`.

    Returns
    -------
    pandas.DataFrame
        For reports and diagnostics (timings make it unfit for versioned results).
    """
    rows = []
    for fr in fits:
        for label, fit in (("specified", fr.fit), ("ml_refit", fr.ml)):
            if fit is None or (label == "ml_refit" and fit is fr.fit):
                continue
            for a in fit.attempts:
                rows.append({"model": fr.name, "fit": label, "optimizer": a.optimizer,
                             "loglik": a.loglik, "reported_converged": a.reported_converged,
                             "kept": a.optimizer == fit.optimizer, "seconds": a.seconds,
                             "messages": "; ".join(a.messages)})
    return pd.DataFrame(rows, columns=["model", "fit", "optimizer", "loglik",
                                       "reported_converged", "kept", "seconds", "messages"])


def key_metrics(fits: Sequence[FitResult], model: str = "primary") -> dict[str, Any]:
    """Headline numbers for DVC metrics: the primary model's within-client effects.

    Parameters
    ----------
    fits
        Output of :func:`fit_all`.
    model
        Model whose within-client subscale effects are reported.

    Returns
    -------
    dict
        ``{model: {"converged": bool, "goal_within": {"estimate", "conf_low",
        "conf_high"}, "task_within": {...}, "bond_within": {...}}}``.
    """
    table = coefficients([f for f in fits if f.name == model])
    if table.empty:
        raise KeyError(f"model {model!r} was not fitted")
    out: dict[str, Any] = {"converged": bool(table["converged"].iloc[0])}
    for k in SUBSCALES:
        row = table[table["term"] == f"{k}_within"].iloc[0]
        out[f"{k}_within"] = {c: float(row[c]) for c in ("estimate", "conf_low", "conf_high")}
    return {model: out}


def write_results(fits: Sequence[FitResult], outdir: str | Path) -> list[Path]:
    """Write the result tables and metrics atomically.

    Parameters
    ----------
    fits
        Output of :func:`fit_all`.
    outdir
        Folder for ``coefficients.csv``, ``variance_components.csv``,
        ``fit_statistics.csv``, ``lr_tests.csv`` and ``metrics.json``.

    Returns
    -------
    list of pathlib.Path
        The files written (floats to 10 significant digits; rows in model order).
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    return [
        write_csv(coefficients(fits), out / "coefficients.csv"),
        write_csv(variance_components(fits), out / "variance_components.csv"),
        write_csv(fit_statistics(fits), out / "fit_statistics.csv"),
        write_csv(lr_tests(fits), out / "lr_tests.csv"),
        write_json(key_metrics(fits), out / "metrics.json"),
    ]
