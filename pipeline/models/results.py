"""Tidy result tables with the project's term and component names (README, "Results
contract"): ``coefficients.csv``, ``variance_components.csv``, ``fit_statistics.csv``,
``lr_tests.csv``, ``random_effects`` for diagnostics, ``metrics.json`` and the fit records.

No engine's naming reaches these tables: terms are the formula's (``Intercept``,
``goal_within``, ``C(approach)[T.CBT]``), components the project's (``therapist``,
``client``, ``client_time``, ``cov_client_client_time``, ``residual``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from pipeline.models.alliance import alliance_change, alliance_levels
from pipeline.models.lags import COLUMNS as LAG_COLUMNS
from pipeline.models.records import fit_records
from pipeline.models.spec import Comparison, load_specs
from pipeline.outputs import write_csv, write_json

if TYPE_CHECKING:
    from pipeline.models.fitting import FitResult

SUBSCALES: tuple[str, ...] = ("goal", "task", "bond")
#: Statuses whose numbers may be read (``singular`` with a flag).
WITH_NUMBERS = ("fitted", "singular", "not converged")

COEFFICIENT_COLUMNS = [
    "model", "plan", "term", "estimate", "std_error", "df", "statistic", "p_value",
    "conf_low", "conf_high", "conf_level", "df_method", "p_holm", "converged", "status",
]


def coefficients(fits: Sequence[FitResult]) -> pd.DataFrame:
    """Fixed effects of every model with numbers.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`COEFFICIENT_COLUMNS`: ``df`` (Satterthwaite, or empty for Wald z),
        ``statistic`` (t or z), ``p_value`` and the interval on those df, ``p_holm``
        (Holm across the family's terms, else empty); rows in model order, terms in
        formula order.
    """
    from pipeline.models import inference

    rows = []
    for fr in fits:
        if fr.fit is None:
            continue
        f = fr.fit
        est = f.beta.to_numpy()
        se = f.std_error.to_numpy()
        df = f.df.to_numpy()
        wald = not np.all(np.isfinite(df))
        stat, p, lo, hi = inference.tests_and_intervals(est, se, None if wald else df,
                                                        fr.conf_level)
        for i, term in enumerate(f.beta.index):
            rows.append({
                "model": fr.name, "plan": fr.spec.plan, "term": term,
                "estimate": float(est[i]), "std_error": float(se[i]),
                "df": np.nan if wald else float(df[i]), "statistic": float(stat[i]),
                "p_value": float(p[i]), "conf_low": float(lo[i]), "conf_high": float(hi[i]),
                "conf_level": fr.conf_level, "df_method": f.df_method, "p_holm": np.nan,
                "converged": fr.converged, "status": fr.status,
            })
    table = pd.DataFrame(rows, columns=COEFFICIENT_COLUMNS)
    families: dict[str, list[int]] = {}
    for fr in fits:
        if fr.fit is None or fr.spec.holm is None or fr.status not in ("fitted", "singular"):
            continue
        hit = table.index[(table["model"] == fr.name) & (table["term"] == fr.spec.holm_term)]
        families.setdefault(fr.spec.holm, []).extend(int(i) for i in hit)
    for members in families.values():
        table.loc[members, "p_holm"] = inference.holm(table.loc[members, "p_value"].to_numpy())
    return table


def variance_components(fits: Sequence[FitResult]) -> pd.DataFrame:
    """Variance components: model, component, variance, sd (empty for covariances),
    correlation (covariances only), converged, status."""
    rows = []
    for fr in fits:
        if fr.fit is None:
            continue
        v = fr.fit.variances
        for name, var in v.items():
            corr = np.nan
            sd = float(np.sqrt(max(var, 0.0)))
            if name.startswith("cov_"):
                sd = np.nan
                a, b = _cov_parts(name, v)
                denom = np.sqrt(v[a] * v[b]) if a and b else 0.0
                corr = float(var / denom) if denom > 0 else np.nan
            rows.append({"model": fr.name, "component": name, "variance": var, "sd": sd,
                         "correlation": corr, "converged": fr.converged,
                         "status": fr.status})
    return pd.DataFrame(rows, columns=["model", "component", "variance", "sd", "correlation",
                                       "converged", "status"])


def _cov_parts(name: str, variances: dict[str, float]) -> tuple[str, str]:
    rest = name[len("cov_"):]
    for a in variances:
        if rest.startswith(a + "_") and rest[len(a) + 1:] in variances:
            return a, rest[len(a) + 1:]
    return "", ""


FIT_STATISTICS_COLUMNS = [
    "model", "plan", "status", "reason", "simplification", "converged", "singular", "reml",
    "engine", "random", "n_obs", "n_clients", "n_therapists", "n_rows_input",
    "n_rows_missing", "n_rows_excluded", "n_params", "loglik", "loglik_ml", "aic", "bic",
    "r2_marginal", "r2_conditional", "icc_therapist", "icc_client", "optimizer",
    "ml_optimizer", "gradient_norm", "ml_gradient_norm", "warning", *LAG_COLUMNS,
]


def _gradient_out(value: Any) -> float:
    """Scaled gradient rounded to 1e-6 (below that it is numerical noise)."""
    return float(np.round(float(value), 6)) if value is not None else np.nan


def fit_statistics(fits: Sequence[FitResult]) -> pd.DataFrame:
    """One row per model of the plan, whatever its status (see the results contract).

    ``loglik`` is of the fit as specified (REML or ML); ``aic``/``bic`` from the ML
    refit; ``icc_therapist``/``icc_client`` the therapist and client shares of the
    intercept variance for models with ``icc: true`` (NaN for a level the pre-fit checks
    dropped, e.g. the therapist level with one therapist); ``gradient_norm`` lme4's max
    |scaled gradient|; ``warning`` what went wrong, if anything; the ``lag_*`` columns
    (a lagged model with numbers, else empty) how far back its previous observed sessions
    lay (:func:`pipeline.models.lags.gap_summary`).
    """
    from pipeline.models import inference

    rows = []
    for fr in fits:
        row: dict[str, Any] = {c: np.nan for c in FIT_STATISTICS_COLUMNS}
        row.update(model=fr.name, plan=fr.spec.plan, status=fr.status, reason=fr.reason,
                   simplification=fr.simplification, converged=fr.converged,
                   singular=bool(fr.fit is not None and fr.fit.singular), reml=fr.spec.reml,
                   engine="", random=fr.spec.random.formula, warning=fr.note,
                   optimizer="", ml_optimizer="")
        if fr.data is not None:
            row.update(n_rows_input=fr.n_input, n_rows_missing=fr.n_missing,
                       n_rows_excluded=fr.n_excluded)
        f = fr.fit
        if f is not None:
            data = fr.data
            assert data is not None
            row.update(
                engine=f.engine, random=f.record.get("random", fr.spec.random.formula),
                n_obs=f.n_obs, n_clients=data["client_id"].nunique(),
                n_therapists=data["therapist_id"].nunique(), n_params=f.n_params,
                loglik=f.loglik, r2_marginal=f.r2[0], r2_conditional=f.r2[1],
                optimizer=f.record["optimizer"],
                gradient_norm=_gradient_out(f.record["checks"]["scaled_gradient"]),
            )
            if fr.ml is not None:
                aic, bic = inference.information_criteria(fr.ml.loglik, fr.ml.n_params,
                                                          fr.ml.n_obs)
                row.update(loglik_ml=fr.ml.loglik, aic=aic, bic=bic,
                           ml_optimizer=fr.ml.record["optimizer"],
                           ml_gradient_norm=_gradient_out(
                               fr.ml.record["checks"]["scaled_gradient"]))
            if fr.spec.icc:
                v = f.variances
                parts = [v.get(c, 0.0) for c in dict.fromkeys(f.random.intercepts)]
                total = sum(parts) + v["residual"]
                # a level the checks dropped (one therapist) has no share, not a share of 0
                row["icc_therapist"] = v.get(fr.spec.random.label("therapist_id"), np.nan) / total
                row["icc_client"] = v.get(fr.spec.random.label("client_id"), np.nan) / total
            row.update(fr.lag_gaps)
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


def lr_tests(fits: Sequence[FitResult],
             comparisons: Sequence[Comparison] | None = None) -> pd.DataFrame:
    """Likelihood-ratio tests of nested models on their ML refits.

    Comparisons with a model that has no converged ML fit, was fitted on other rows or
    with another (simplified) random part are listed with a note and no test.
    """
    from pipeline.models import inference

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
            missing = [f"{f.name} is {f.status}" for f in (red, full)
                       if f.ml is None or f.data is None]
            row["note"] = f"not tested: {' and '.join(missing)}"
            rows.append(row)
            continue
        keys = ["client_id", "session"]
        if not red.data[keys].equals(full.data[keys]):
            row["note"] = "not tested: the models use different rows"
            rows.append(row)
            continue
        if red.ml.random.terms != full.ml.random.terms:
            row["note"] = "not tested: the models' random parts differ after simplification"
            rows.append(row)
            continue
        df = full.ml.n_params - red.ml.n_params
        stat, p = inference.likelihood_ratio(red.ml.loglik, full.ml.loglik, df)
        aic_r, bic_r = inference.information_criteria(red.ml.loglik, red.ml.n_params,
                                                      red.ml.n_obs)
        aic_f, bic_f = inference.information_criteria(full.ml.loglik, full.ml.n_params,
                                                      full.ml.n_obs)
        row.update(n_obs=full.ml.n_obs, df=df, loglik_reduced=red.ml.loglik,
                   loglik_full=full.ml.loglik, statistic=stat, p_value=p,
                   aic_reduced=aic_r, aic_full=aic_f, bic_reduced=bic_r, bic_full=bic_f,
                   converged=bool(red.ml.converged and full.ml.converged))
        if not row["converged"]:
            row["note"] = "an ML refit did not converge"
        rows.append(row)
    table = pd.DataFrame(rows, columns=LR_COLUMNS)
    table["n_obs"] = table["n_obs"].astype("Int64")
    table["df"] = table["df"].astype("Int64")
    return table


def random_effects(fit: FitResult) -> dict[str, np.ndarray]:
    """Predicted random effects by component (``therapist``, ``client``, ...)."""
    if fit.fit is None:
        return {}
    return {name: values.to_numpy() for name, values in fit.fit.ranef.items()}


def key_metrics(fits: Sequence[FitResult], model: str = "primary") -> dict[str, Any]:
    """Headline numbers for DVC metrics: the primary model's within-client effects.

    A model without numbers gives its status and reason only.
    """
    chosen = [f for f in fits if f.name == model]
    if not chosen:
        return {model: {"status": "not fitted"}}
    fr = chosen[0]
    out: dict[str, Any] = {"status": fr.status, "converged": fr.converged}
    if fr.status not in ("fitted", "singular"):
        out["reason"] = fr.reason or fr.note
        return {model: out}
    table = coefficients([fr])
    for k in SUBSCALES:
        hit = table[table["term"] == f"{k}_within"]
        if len(hit):
            row = hit.iloc[0]
            out[f"{k}_within"] = {c: float(row[c])
                                  for c in ("estimate", "conf_low", "conf_high")}
    return {model: out}


def write_results(fits: Sequence[FitResult], outdir: str | Path) -> list[Path]:
    """Write the result tables, metrics and fit records atomically.

    Returns
    -------
    list of pathlib.Path
        ``coefficients.csv``, ``variance_components.csv``, ``fit_statistics.csv``,
        ``alliance_levels.csv``, ``alliance_change.csv`` (:mod:`pipeline.models.alliance`),
        ``lr_tests.csv``, ``metrics.json``, ``fit_records.json`` (no times: byte-stable).
    """
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    coefs, varcomp, stats = coefficients(fits), variance_components(fits), fit_statistics(fits)
    return [
        write_csv(coefs, out / "coefficients.csv"),
        write_csv(varcomp, out / "variance_components.csv"),
        write_csv(stats, out / "fit_statistics.csv"),
        write_csv(alliance_levels(stats, varcomp, coefs), out / "alliance_levels.csv"),
        write_csv(alliance_change(stats, varcomp, coefs), out / "alliance_change.csv"),
        write_csv(lr_tests(fits), out / "lr_tests.csv"),
        write_json(key_metrics(fits), out / "metrics.json"),
        write_json(fit_records(fits), out / "fit_records.json"),
    ]


def read_results(folder: str | Path) -> dict[str, pd.DataFrame]:
    """The result tables for reports: ``coefficients``, ``fit_statistics``,
    ``variance_components``, with columns of the results contract that results written
    by an older version lack (``reason``, ``simplification``, ``df``, ``status``) added
    empty, so a report renders from either."""
    root = Path(folder)
    coefs = pd.read_csv(root / "coefficients.csv")
    stats = pd.read_csv(root / "fit_statistics.csv")
    varcomp = pd.read_csv(root / "variance_components.csv")
    for col in ("reason", "simplification"):
        if col not in stats.columns:
            stats[col] = ""
    stats[["reason", "simplification"]] = stats[["reason", "simplification"]].fillna("")
    if "df" not in coefs.columns:
        coefs["df"] = np.nan
    if "status" not in coefs.columns:
        coefs["status"] = coefs["model"].map(stats.set_index("model")["status"])
    return {"coefficients": coefs, "fit_statistics": stats, "variance_components": varcomp}
