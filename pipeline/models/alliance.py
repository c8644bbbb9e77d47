"""The alliance itself: where it lives, how it changes over sessions, how therapists differ.

Two summaries of the alliance models of ``pipeline/models.yaml`` (plan group 5), one row per
subscale, computed from the fit stage's result tables (so a report never computes them):

* :func:`alliance_levels` from the unconditional three-level models
  ``alliance_levels_<k>`` (``k ~ 1``, therapist and client random intercepts): the
  therapist, client-within-therapist and session shares of the subscale's variance, and the
  range of therapist means the therapist variance implies (the middle 95% of therapists:
  ``mean +- 1.96 SD_therapist``, on the subscale's item-mean metric);
* :func:`alliance_change` from the growth models ``alliance_time_<k>`` (``k ~ time``, the
  primary model's random part): the average change per session with its interval, and the
  range of clients' own slopes the client slope variance implies (middle 95%).

A component the pre-fit checks dropped (one therapist; no client with three sessions) is
missing, not zero: its share and range are blank and ``simplification`` says why. A model
that is not estimable or did not converge gives a row with its status and reason and no
numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.models.design import SUBSCALES

#: The middle share of therapists (or of clients' slopes) a range from a variance covers.
COVERAGE = 0.95
_Z = 1.959963984540054   # standard normal quantile of (1 + COVERAGE) / 2
#: Model name prefixes of the two summaries.
LEVELS, CHANGE = "alliance_levels_", "alliance_time_"
_READABLE = ("fitted", "singular")
_COMMON = ["subscale", "model", "status", "reason", "simplification", "n_obs", "n_clients",
           "n_therapists"]
LEVELS_COLUMNS = [*_COMMON, "mean", "var_therapist", "var_client", "var_session",
                  "share_therapist", "share_client", "share_session", "sd_therapist",
                  "therapist_mean_low", "therapist_mean_high"]
CHANGE_COLUMNS = [*_COMMON, "intercept", "slope", "std_error", "df", "conf_low",
                  "conf_high", "conf_level", "p_value", "sd_client_slope",
                  "client_slope_low", "client_slope_high"]


def _base(stats: pd.DataFrame, model: str, subscale: str) -> tuple[dict[str, object], bool]:
    """The common columns of one model, and whether its numbers may be read."""
    row: dict[str, object] = {"subscale": subscale, "model": model,
                              "status": "not fitted", "reason": "", "simplification": ""}
    hit = stats[stats["model"] == model]
    if hit.empty:
        return row, False
    s = hit.iloc[0]
    reason = s.get("reason")
    if not isinstance(reason, str) or not reason:
        reason = s.get("warning") if s["status"] not in _READABLE else ""
    simple = s.get("simplification")
    row.update(status=s["status"], reason=reason if isinstance(reason, str) else "",
               simplification=simple if isinstance(simple, str) else "",
               n_obs=s.get("n_obs"), n_clients=s.get("n_clients"),
               n_therapists=s.get("n_therapists"))
    return row, s["status"] in _READABLE


def _variances(varcomp: pd.DataFrame, model: str) -> dict[str, float]:
    rows = varcomp[varcomp["model"] == model]
    return {str(c): float(v) for c, v in zip(rows["component"], rows["variance"], strict=True)}


def _term(coefs: pd.DataFrame, model: str, term: str) -> pd.Series | None:
    hit = coefs[(coefs["model"] == model) & (coefs["term"] == term)]
    return None if hit.empty else hit.iloc[0]


def alliance_levels(stats: pd.DataFrame, varcomp: pd.DataFrame,
                    coefs: pd.DataFrame) -> pd.DataFrame:
    """Where each subscale lives: variance shares and the implied range of therapist means.

    Parameters
    ----------
    stats, varcomp, coefs
        ``fit_statistics``, ``variance_components`` and ``coefficients`` of the fit stage.

    Returns
    -------
    pandas.DataFrame
        One row per subscale (:data:`LEVELS_COLUMNS`). ``share_*`` are the therapist,
        client (within therapist) and session (residual) variances over their sum;
        ``therapist_mean_low``/``_high`` = ``mean -+ 1.96 sd_therapist``, the range in
        which the model puts the mean ratings of the middle 95% of therapists (for a
        typical client mix). Blank where the model has no such component.
    """
    rows = []
    for k in SUBSCALES:
        model = LEVELS + k
        row, readable = _base(stats, model, k)
        if readable:
            v = _variances(varcomp, model)
            parts = {"therapist": v.get("therapist"), "client": v.get("client"),
                     "session": v.get("residual")}
            total = sum(x for x in parts.values() if x is not None)
            for name, value in parts.items():
                row[f"var_{name}"] = value
                row[f"share_{name}"] = value / total if value is not None and total > 0 else None
            icpt = _term(coefs, model, "Intercept")
            mean = None if icpt is None else float(icpt["estimate"])
            row["mean"] = mean
            if parts["therapist"] is not None and mean is not None:
                sd = float(np.sqrt(max(parts["therapist"], 0.0)))
                row.update(sd_therapist=sd, therapist_mean_low=mean - _Z * sd,
                           therapist_mean_high=mean + _Z * sd)
        rows.append(row)
    return _typed(pd.DataFrame(rows).reindex(columns=LEVELS_COLUMNS))


def alliance_change(stats: pd.DataFrame, varcomp: pd.DataFrame,
                    coefs: pd.DataFrame) -> pd.DataFrame:
    """How each subscale changes over sessions: the average slope and the clients' spread.

    Parameters
    ----------
    stats, varcomp, coefs
        ``fit_statistics``, ``variance_components`` and ``coefficients`` of the fit stage.

    Returns
    -------
    pandas.DataFrame
        One row per subscale (:data:`CHANGE_COLUMNS`): the fixed effect of ``time``
        (change per session, with its test and interval as in ``coefficients``), the
        intercept (the expected score at the first session), and
        ``client_slope_low``/``_high`` = ``slope -+ 1.96 sd_client_slope``, the range of
        the middle 95% of clients' own slopes (blank when the client slope was dropped).
    """
    rows = []
    for k in SUBSCALES:
        model = CHANGE + k
        row, readable = _base(stats, model, k)
        if readable:
            time, icpt = _term(coefs, model, "time"), _term(coefs, model, "Intercept")
            if icpt is not None:
                row["intercept"] = float(icpt["estimate"])
            if time is not None:
                slope = float(time["estimate"])
                row.update(slope=slope, std_error=time["std_error"],
                           df=time.get("df"), conf_low=time["conf_low"],
                           conf_high=time["conf_high"], conf_level=time["conf_level"],
                           p_value=time["p_value"])
                var = _variances(varcomp, model).get("client_time")
                if var is not None:
                    sd = float(np.sqrt(max(var, 0.0)))
                    row.update(sd_client_slope=sd, client_slope_low=slope - _Z * sd,
                               client_slope_high=slope + _Z * sd)
        rows.append(row)
    return _typed(pd.DataFrame(rows).reindex(columns=CHANGE_COLUMNS))


def _typed(table: pd.DataFrame) -> pd.DataFrame:
    """Counts as nullable integers, numbers as floats (blank = not available)."""
    for col in table.columns:
        if col in ("n_obs", "n_clients", "n_therapists"):
            table[col] = pd.to_numeric(table[col], errors="coerce").astype("Int64")
        elif col not in ("subscale", "model", "status", "reason", "simplification"):
            table[col] = pd.to_numeric(table[col], errors="coerce").astype(float)
    for col in ("reason", "simplification"):
        table[col] = table[col].fillna("")
    return table
