"""One fit record per model, like MixedModels.jl's ``OptSummary``.

A record says how the optimum was reached and checked: engine, random part fitted,
theta at the optimum, objective (REML criterion or -2 log-likelihood), start, optimizer,
deviance evaluations, tolerances, lme4's checks (max |gradient|, max |scaled gradient|,
Hessian positive definite, ``isSingular``), simplifications, messages; the same for the
ML refit. Records go to ``results/fit_records.json``. Times are NOT recorded there (they
would break byte-identical reruns); the fit step prints them to stderr and the
benchmarks measure them.

R equivalent: ``fit@optinfo`` and ``lme4::isSingular``; Julia: ``fit.optsum``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.models.fitting import FitResult, ModelFit


def _record(fit: ModelFit) -> dict[str, Any]:
    rec = {k: v for k, v in fit.record.items() if k != "seconds"}
    rec["messages"] = list(fit.messages)
    rec["loglik"] = fit.loglik
    return rec


def fit_records(fits: Sequence[FitResult]) -> dict[str, Any]:
    """Fit records of every model (status and reason for models without a fit).

    Returns
    -------
    dict
        ``{model: {"status", "reason", "simplification", "fit": {...}, "ml_refit": {...}}}``.
    """
    out: dict[str, Any] = {}
    for fr in fits:
        entry: dict[str, Any] = {"status": fr.status, "reason": fr.reason,
                                 "simplification": fr.simplification}
        if fr.fit is not None:
            entry["fit"] = _record(fr.fit)
            if fr.ml is not None and fr.ml is not fr.fit:
                entry["ml_refit"] = _record(fr.ml)
        out[fr.name] = entry
    return out
