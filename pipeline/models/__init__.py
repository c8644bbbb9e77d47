"""Mixed models of the analysis plan: one concept per module.

=========================  ==============================================================
module                     what
=========================  ==============================================================
``spec``                   models.yaml read and checked; lme4 random parts parsed
``design``                 each model's rows and predictors (reusable on new data)
``checks``                 lme4's pre-fit checks and the documented simplification rules
``engine``                 the project's engine: profiled REML/ML deviance in lme4's theta,
                           blocked Cholesky for nested factors, optimisation and checks
``engine_statsmodels``     statsmodels' MixedLM as a second engine (cross-check)
``inference``              Satterthwaite df (lmerTest), tests, intervals, R², LRT, Holm
``fitting``                one formula (:func:`fit`) or the whole plan (:func:`fit_all`)
``results``                tidy tables with the project's names; ``write_results``
``records``                one fit record per model (like MixedModels.jl's OptSummary)
``alliance``               where the alliance lives, its change over sessions, therapist
                           differences (summaries of the alliance models' results)
=========================  ==============================================================

Public entry points::

    from pipeline.models import fit, fit_all, write_results, load_specs
    m = fit("wellbeing ~ time + group", "(1 | therapist_id) + (1 | client_id)", frame)
    m.beta, m.std_error, m.df, m.variances, m.converged, m.singular, m.record
"""

import importlib
from typing import TYPE_CHECKING, Any

# The names below are imported when first used (PEP 562), not with the package: reading
# the model plan or the result tables must not import the engine (scipy's optimisers and
# sparse matrices, ~0.7 s in every notebook kernel and stage that only reads them).
_EXPORTS: dict[str, str] = {
    "ALLIANCE": "design",
    "Comparison": "spec",
    "DEFAULT_SETTINGS": "fitting",
    "FitResult": "fitting",
    "MODEL_VARIABLES": "design",
    "ModelFit": "fitting",
    "ModelPlan": "spec",
    "ModelSpec": "spec",
    "RandomPart": "spec",
    "SPEC_PATH": "spec",
    "STATUSES": "fitting",
    "SUBSCALES": "design",
    "add_lags": "design",
    "coefficients": "results",
    "detrend_within": "design",
    "disaggregate": "design",
    "fit": "fitting",
    "fit_all": "fitting",
    "fit_model": "fitting",
    "fit_statistics": "results",
    "holm": "inference",
    "key_metrics": "results",
    "load_specs": "spec",
    "lr_tests": "results",
    "model_data": "design",
    "parse_random": "spec",
    "prepare": "design",
    "random_effects": "results",
    "settings_from": "fitting",
    "variance_components": "results",
    "write_results": "results",
}

if TYPE_CHECKING:
    from pipeline.models.design import (
        ALLIANCE,
        MODEL_VARIABLES,
        SUBSCALES,
        add_lags,
        detrend_within,
        disaggregate,
        model_data,
        prepare,
    )
    from pipeline.models.fitting import (
        DEFAULT_SETTINGS,
        STATUSES,
        FitResult,
        ModelFit,
        fit,
        fit_all,
        fit_model,
        settings_from,
    )
    from pipeline.models.inference import holm
    from pipeline.models.results import (
        coefficients,
        fit_statistics,
        key_metrics,
        lr_tests,
        random_effects,
        variance_components,
        write_results,
    )
    from pipeline.models.spec import (
        SPEC_PATH,
        Comparison,
        ModelPlan,
        ModelSpec,
        RandomPart,
        load_specs,
        parse_random,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pipeline.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pipeline.models.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "ALLIANCE", "DEFAULT_SETTINGS", "MODEL_VARIABLES", "SPEC_PATH", "STATUSES", "SUBSCALES",
    "Comparison", "FitResult", "ModelFit", "ModelPlan", "ModelSpec", "RandomPart",
    "add_lags", "coefficients", "detrend_within", "disaggregate", "fit", "fit_all",
    "fit_model", "fit_statistics", "holm", "key_metrics", "load_specs", "lr_tests",
    "model_data", "parse_random", "prepare", "random_effects", "settings_from",
    "variance_components", "write_results",
]
