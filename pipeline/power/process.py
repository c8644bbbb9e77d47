"""The alliance process of a power analysis, estimated from the user's own data.

A power analysis draws goal, task and bond for every simulated study from the three-level
process of :mod:`pipeline.simulation.alliance`. The power of the within-client effects
depends on how much the alliance varies from session to session within clients, that of
the between effects on how much it varies between clients and therapists, and the power
of each subscale's effect on how strongly the subscales move together (collinear
predictors have larger standard errors). So the process is taken from the data the power
model was fitted to, unless ``power.alliance`` gives it:

* **mean and growth**: for each subscale ``k`` the mixed model
  ``k ~ time + (1 | therapist_id) + (1 | client_id)`` (REML, the project's engine; its
  random part is ``therapist_client`` of models.yaml): the intercept is the subscale's
  mean at the first session, and ``growth`` is the mean of the three slopes on time;
* **SDs**: the same fits' therapist, client and residual (session) variances, pooled over
  the subscales as the root of their mean (the process has one SD per level);
* **session correlation**: the pooled within-client correlation of each pair of
  subscales after removing the fixed time trend (deviations from each client's own
  mean), averaged over the three pairs;
* **client correlation** (the process uses one correlation for the therapist and client
  levels): by the method of moments from the client means. A client mean ``m_k``
  (time trend removed) has ``Cov(m_k, m_l) = rho_b s_kl + rho_s e_k e_l h``, where
  ``s_kl`` is the product of the two subscales' therapist-plus-client SDs, ``e_k`` the
  session SDs, ``rho_s`` the session correlation and ``h`` the mean of ``1 / n_c`` over
  clients; ``rho_b`` is solved for each pair and averaged.

Both correlations are kept inside ``(-0.45, 0.99)``, where the equicorrelated process is
defined. A level the checks drop (one therapist: :mod:`pipeline.models.checks`) gets SD 0
and is named in the table. A subscale model that does not converge stops the power stage
with a message asking for ``power.alliance``.

R equivalent of one subscale's fit: ``lmer(goal ~ time + (1 | therapist_id) +
(1 | client_id), data)``; the correlations as ``psych::statsBy``'s ``rwg`` (within).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from pipeline.errors import NotEstimableError, PipelineError
from pipeline.simulation.alliance import SUBSCALES, AllianceProcess

#: The random part (a key of ``random_parts`` in models.yaml) of each subscale's model.
RANDOM_PART = "therapist_client"
#: Correlations are kept in this open range (equicorrelated 3 x 3 matrices need > -0.5).
CORR_RANGE = (-0.45, 0.99)
#: Table columns (``results/power_truth.csv`` takes these rows with kind ``alliance``).
PARAMETERS: dict[str, str] = {
    "alliance_mean_goal": "Goal at the first session",
    "alliance_mean_task": "Task at the first session",
    "alliance_mean_bond": "Bond at the first session",
    "alliance_growth": "Change per session",
    "alliance_therapist_sd": "SD between therapists",
    "alliance_client_sd": "SD between clients",
    "alliance_session_sd": "SD between sessions",
    "alliance_client_corr": "Correlation of subscales (therapists, clients)",
    "alliance_session_corr": "Correlation of subscales (sessions)",
}


class ProcessNotEstimable(PipelineError):
    """The alliance process cannot be estimated from the data (give ``power.alliance``)."""


def _clip(r: float) -> float:
    return float(min(max(r, CORR_RANGE[0]), CORR_RANGE[1]))


def estimate_process(rows: pd.DataFrame, fit_settings: Mapping[str, Any] | None = None,
                     item_sd: float = 0.5) -> tuple[AllianceProcess, list[str]]:
    """Estimate the alliance process from the rows a power model was fitted to.

    Parameters
    ----------
    rows
        ``client_id``, ``therapist_id``, ``time`` and the subscales (e.g. the output of
        :func:`pipeline.models.model_data` for the power model).
    fit_settings
        The ``model:`` block (optimizer, checks).
    item_sd
        Kept as given: item noise is not identified from scores.

    Returns
    -------
    tuple
        The process and notes (levels the checks dropped), for the report.

    Raises
    ------
    ProcessNotEstimable
        When a subscale's model is not estimable or does not converge.
    """
    from pipeline.models import load_specs
    from pipeline.models.fitting import fit_formula

    random = load_specs().random_parts[RANDOM_PART]
    said: dict[str, list[str]] = {}  # simplification -> the subscales it applies to
    mean, slope = np.zeros(3), np.zeros(3)
    var = {level: np.zeros(3) for level in ("therapist", "client", "residual")}
    for i, k in enumerate(SUBSCALES):
        try:
            fit, simplified = fit_formula(rows, f"{k} ~ time", random, reml=True,
                                          settings=fit_settings, model=f"alliance process "
                                          f"({k})", with_df=False)
        except NotEstimableError as exc:
            raise ProcessNotEstimable(
                f"power: the alliance process cannot be estimated from these data ({k}: "
                f"{exc}); give it in params.yaml as power.alliance (mean, growth, "
                "therapist_sd, client_sd, session_sd, client_corr, session_corr).") from None
        if not fit.converged:
            raise ProcessNotEstimable(
                f"power: the model of {k} over sessions (for the alliance process) did not "
                "converge on these data; give the process in params.yaml as power.alliance "
                "(mean, growth, therapist_sd, client_sd, session_sd, client_corr, "
                "session_corr).")
        for s in simplified:
            said.setdefault(s, []).append(k)
        mean[i], slope[i] = float(fit.beta["Intercept"]), float(fit.beta["time"])
        for level in var:
            var[level][i] = float(fit.variances.get(level, 0.0))
    growth = float(slope.mean())
    sd = {level: np.sqrt(v) for level, v in var.items()}
    # the subscales with the fixed time trend removed, and each client's mean of them
    detrended = rows[list(SUBSCALES)].to_numpy(dtype=float) - np.outer(
        rows["time"].to_numpy(dtype=float), slope)
    codes, _ = pd.factorize(rows["client_id"].to_numpy(), sort=True)
    n = np.bincount(codes).astype(float)
    sums = np.stack([np.bincount(codes, weights=detrended[:, j]) for j in range(3)], axis=1)
    means = sums / n[:, None]
    within = detrended - means[codes]
    h = float(np.mean(1.0 / n))
    session_r, client_r = [], []
    for a, b in itertools.combinations(range(3), 2):
        denom = np.sqrt((within[:, a] ** 2).sum() * (within[:, b] ** 2).sum())
        r_s = float((within[:, a] * within[:, b]).sum() / denom) if denom > 0 else 0.0
        session_r.append(r_s)
        cov_means = float(np.cov(means[:, a], means[:, b], ddof=1)[0, 1]) if len(n) > 1 else 0.0
        level_sd = np.sqrt((var["therapist"][a] + var["client"][a])
                           * (var["therapist"][b] + var["client"][b]))
        rest = cov_means - r_s * sd["residual"][a] * sd["residual"][b] * h
        client_r.append(rest / level_sd if level_sd > 0 else 0.0)
    process = AllianceProcess(
        mean=(float(mean[0]), float(mean[1]), float(mean[2])), growth=growth,
        therapist_sd=float(np.sqrt(var["therapist"].mean())),
        client_sd=float(np.sqrt(var["client"].mean())),
        session_sd=float(np.sqrt(var["residual"].mean())),
        client_corr=_clip(float(np.mean(client_r))),
        session_corr=_clip(float(np.mean(session_r))), item_sd=item_sd)
    # a reason shared by the subscales is said once: "goal, task and bond: ..."
    notes = [f"{_and(ks)}: {s}" for s, ks in said.items()]
    return process, notes


def _and(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def process_table(process: AllianceProcess, source: str) -> pd.DataFrame:
    """The process as rows of ``results/power_truth.csv`` (kind ``alliance``)."""
    values = [*process.mean, process.growth, process.therapist_sd, process.client_sd,
              process.session_sd, process.client_corr, process.session_corr]
    return pd.DataFrame({"parameter": list(PARAMETERS), "kind": "alliance",
                         "value": [float(v) for v in values], "source": source})
