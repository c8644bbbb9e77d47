"""Ruptures and outcome: wellbeing change in clients with repaired, unrepaired and no ruptures.

For each criterion, each client is put in one group by the episodes of their own
(client-rated) total alliance series: ``repaired`` (at least one repaired episode),
``unrepaired`` (episodes, none repaired, at least one unrepaired), ``censored`` (only
episodes whose outcome is unknown: left out of the model) or ``none``. The model is a
mixed model of each client's wellbeing change (last minus first rated session) on the
group, adjusted for the first wellbeing score and the number of sessions between the two
(longer therapies change more *and* give more chances to see an episode), with a random
intercept for the therapist (clients are nested in therapists). The formula and random
part are data (``ruptures.outcome`` in params.yaml).

**This is observational.** Clients are not assigned to repair: clients who repair may
differ in many ways (engagement, severity, therapist skill), and detection itself depends
on how many sessions a client has. The estimate says how groups differ, not what repair
causes.

Sanity check. The meta-analysis of Eubanks, Muran & Safran (2018) reported rupture repair
going with better outcome at about r = .29 (11 studies; a wide interval of roughly .10 to
.47; the figures here are approximate). :func:`repair_correlation` computes the
corresponding correlation in these data (repaired vs unrepaired among clients with an
episode, with the adjusted change) for comparison, never as a test.

References
----------
Eubanks, C. F., Muran, J. C., & Safran, J. D. (2018). Alliance rupture repair: a
meta-analysis. *Psychotherapy, 55*(4), 508-519.
Bates, D., et al. (2015). lme4. *Journal of Statistical Software, 67*(1). (R equivalent:
``lmer(change ~ repaired + unrepaired + baseline_c + span_c + (1 | therapist_id))``.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pipeline.distributions import norm_ppf

GROUPS = ("none", "repaired", "unrepaired", "censored")
"""Client groups by their episodes (``censored`` is left out of the model)."""


@dataclass(frozen=True)
class MixedFit:
    """What the adapter returns: status in the results contract and tidy coefficients."""

    status: str
    reason: str = ""
    coefficients: pd.DataFrame = field(default_factory=pd.DataFrame)
    variances: Mapping[str, float] = field(default_factory=dict)
    n_obs: int = 0
    n_groups: int = 0


def fit_mixed(data: pd.DataFrame, formula: str, random: Mapping[str, Any],
              settings: Mapping[str, Any]) -> MixedFit:
    """THE adapter to the mixed-model engine (the only place this package fits one).

    Parameters
    ----------
    data
        Model rows, no missing values in the variables used.
    formula
        Fixed part (patsy syntax), e.g. ``change ~ repaired + unrepaired``.
    random
        ``formula`` (random part in lme4 notation; default ``(1 | <groups>)``), ``groups``
        (the grouping column), ``group_label`` (its name in tables), ``reml`` (default
        true).
    settings
        The ``model:`` block of params.yaml (engine, df method, ``conf_level``).

    Returns
    -------
    MixedFit
        ``status`` is ``fitted``, ``singular`` (a variance at the boundary; numbers shown
        with a flag), ``not converged`` (numbers not to be interpreted), ``not estimable``
        (no numbers; ``reason`` says why) or ``failed``. ``coefficients`` has ``term,
        estimate, std_error, df, statistic, p_value, conf_low, conf_high, conf_level,
        df_method`` (Satterthwaite df unless ``model.df_method`` says otherwise).

    Notes
    -----
    Fits with :func:`pipeline.models.fit`, the project's engine (R: ``lmerTest::lmer``).
    """
    from pipeline.errors import PipelineError
    from pipeline.models import fit
    from pipeline.models.inference import tests_and_intervals

    groups = str(random.get("groups", "therapist_id"))
    label = str(random.get("group_label", "therapist"))
    part = str(random.get("formula") or f"(1 | {groups})")
    n_groups = int(data[groups].nunique()) if groups in data.columns else 0
    if n_groups < 2:
        return MixedFit("not estimable", f"{n_groups} {label}(s): the {label} variance is "
                        "not identified", n_obs=len(data), n_groups=n_groups)
    conf = float(settings.get("conf_level", 0.95))
    try:
        m = fit(formula, part, data, reml=bool(random.get("reml", True)), settings=settings,
                labels={groups: label}, model="ruptures_outcome")
    except PipelineError as exc:
        return MixedFit("not estimable", str(exc), n_obs=len(data), n_groups=n_groups)
    except (np.linalg.LinAlgError, ValueError, RuntimeError) as exc:
        # recorded per model, never stops the stage
        return MixedFit("failed", f"{type(exc).__name__}: {exc}", n_obs=len(data),
                        n_groups=n_groups)
    est, se, df = m.beta.to_numpy(), m.std_error.to_numpy(), m.df.to_numpy()
    stat, p, low, high = tests_and_intervals(est, se, None if np.isinf(df).all() else df, conf)
    coefs = pd.DataFrame({
        "term": list(m.beta.index), "estimate": est, "std_error": se, "df": df,
        "statistic": stat, "p_value": p, "conf_low": low, "conf_high": high,
        "conf_level": conf, "df_method": m.df_method,
    })
    status = "not converged" if not m.converged else "singular" if m.singular else "fitted"
    notes = [*m.messages, *m.record.get("simplification", [])]
    return MixedFit(status, "; ".join(notes), coefs, dict(m.variances), n_obs=m.n_obs,
                    n_groups=n_groups)


def client_groups(episodes: pd.DataFrame, applied: pd.DataFrame, criterion: str,
                  scale: str = "total", rater: str = "client") -> pd.DataFrame:
    """Each analysed client's group under one criterion (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        ``client_id, therapist_id, group``; clients whose series the criterion could not
        be applied to are left out.
    """
    sel = applied[(applied["criterion"] == criterion) & (applied["scale"] == scale)
                  & (applied["rater"] == rater) & applied["threshold"].notna()]
    ep = episodes[(episodes["criterion"] == criterion) & (episodes["scale"] == scale)
                  & (episodes["rater"] == rater)]
    status = ep.groupby("client_id")["status"].agg(set)

    def group(sts: Any) -> str:
        if not isinstance(sts, set):
            return "none"
        if "repaired" in sts:
            return "repaired"
        return "unrepaired" if "unrepaired" in sts else "censored"

    out = sel[["client_id", "therapist_id"]].drop_duplicates().copy()
    out["group"] = out["client_id"].map(status).map(group)
    return out.reset_index(drop=True)


def change_data(groups: pd.DataFrame, wellbeing: pd.DataFrame) -> pd.DataFrame:
    """Client-level model rows: wellbeing change, baseline, span and group indicators.

    Parameters
    ----------
    groups
        Output of :func:`client_groups`.
    wellbeing
        ``client_id, session, wellbeing`` (all scored outcome rows).

    Returns
    -------
    pandas.DataFrame
        Clients with two or more wellbeing scores and a group other than ``censored``:
        ``client_id, therapist_id, group, baseline, change, span, repaired, unrepaired,
        baseline_c, span_c`` (centred on the mean of these clients).
    """
    wb = wellbeing.dropna(subset=["wellbeing"]).sort_values(["client_id", "session"])
    per = wb.groupby("client_id").agg(
        n=("wellbeing", "size"), baseline=("wellbeing", "first"), last=("wellbeing", "last"),
        first_session=("session", "first"), last_session=("session", "last"))
    per = per[per["n"] >= 2]
    data = groups.merge(per.reset_index(), on="client_id")
    data = data[data["group"] != "censored"].copy()
    data["change"] = data["last"] - data["baseline"]
    data["span"] = (data["last_session"] - data["first_session"]).astype(float)
    data["repaired"] = (data["group"] == "repaired").astype(float)
    data["unrepaired"] = (data["group"] == "unrepaired").astype(float)
    data["baseline_c"] = data["baseline"] - data["baseline"].mean()
    data["span_c"] = data["span"] - data["span"].mean()
    cols = ["client_id", "therapist_id", "group", "baseline", "change", "span", "repaired",
            "unrepaired", "baseline_c", "span_c"]
    return data[cols].sort_values(["therapist_id", "client_id"]).reset_index(drop=True)


def group_table(data: pd.DataFrame, groups: pd.DataFrame, criterion: str,
                min_cell: int) -> pd.DataFrame:
    """Clients per group with their mean wellbeing change (small groups suppressed)."""
    rows = []
    for g in GROUPS:
        d = data[data["group"] == g]
        n_all = int((groups["group"] == g).sum())
        rows.append({"criterion": criterion, "group": g, "n_clients": n_all,
                     "n_in_model": len(d),
                     "mean_change": float(d["change"].mean()) if len(d) else np.nan,
                     "sd_change": float(d["change"].std()) if len(d) > 1 else np.nan})
    table = pd.DataFrame(rows)
    small = (table["n_in_model"] > 0) & (table["n_in_model"] < min_cell)
    table.loc[small, ["mean_change", "sd_change"]] = np.nan
    from pipeline.describe import suppress_counts
    from pipeline.disclosure import within

    # The groups add up to the clients with a series (n_clients) and to the model's
    # clients (n_in_model, outcome_models.csv): secondary suppression over the groups.
    return suppress_counts(table, {"n_clients": [], "n_in_model": ["mean_change",
                                                                   "sd_change"]}, min_cell,
                           margins=[*within(table, "n_clients"),
                                    *within(table, "n_in_model")])


def model_plan(data: pd.DataFrame, formula: str, min_cell: int) -> tuple[str, str, str]:
    """The formula to fit, the simplification applied, and why it cannot be fitted.

    A group with no client at all (e.g. no unrepaired episode under a V-shape rule, which
    only counts repaired ones) is dropped from the formula (its indicator would be a
    column of zeros) and the simplification is named. A group with 1 to ``min_cell - 1``
    clients makes the model not estimable: its estimate would describe too few clients.

    Returns
    -------
    (formula, simplification, reason)
        ``reason`` is "" when the model can be fitted.
    """
    n_rep, n_unrep = int(data["repaired"].sum()), int(data["unrepaired"].sum())
    n_none = len(data) - n_rep - n_unrep
    small = [name for name, n in (("repaired", n_rep), ("unrepaired", n_unrep),
                                  ("no rupture", n_none)) if 0 < n < min_cell]
    if small or n_none == 0 or n_rep + n_unrep == 0:
        what = (f"fewer than report.min_cell = {min_cell} clients in the group(s) "
                f"{', '.join(small)}: a group estimate would describe too few clients"
                if small else "all clients are in one group: nothing to compare")
        return formula, "", what
    lhs, rhs = formula.split("~", 1)
    terms = [t.strip() for t in rhs.split("+")]
    dropped = [g for g, n in (("repaired", n_rep), ("unrepaired", n_unrep))
               if n == 0 and g in terms]
    if not dropped:
        return formula, "", ""
    kept = [t for t in terms if t not in dropped]
    return (f"{lhs.strip()} ~ {' + '.join(kept)}",
            f"{' and '.join(dropped)} dropped: no client in that group", "")


def repair_correlation(data: pd.DataFrame, reference_r: float,
                       reference_interval: tuple[float, float], conf_level: float,
                       min_cell: int) -> dict[str, Any]:
    """Correlation of repair (vs no repair) with adjusted change, beside the meta-analysis.

    Among clients with an episode whose outcome is known (repaired or unrepaired), the
    point-biserial correlation of ``repaired`` with the wellbeing change adjusted (by
    OLS) for baseline and span; Fisher-z interval.

    Returns
    -------
    dict
        ``r, conf_low, conf_high, n_clients, reference_r, reference_low, reference_high,
        within_reference`` (bool) and ``note``.
    """
    d = data[data["group"].isin(["repaired", "unrepaired"])]
    out: dict[str, Any] = {"n_clients": len(d), "reference_r": reference_r,
                           "reference_low": reference_interval[0],
                           "reference_high": reference_interval[1]}
    n_rep = int(d["repaired"].sum())
    short = [group for group, n in (("repaired", n_rep), ("unrepaired", len(d) - n_rep))
             if n < min_cell]
    if short:
        # Which group is short, never its count (a count below min_cell is suppressed).
        return {**out, "r": np.nan, "conf_low": np.nan, "conf_high": np.nan,
                "within_reference": np.nan,
                "note": f"needs at least {min_cell} repaired and {min_cell} unrepaired "
                        f"clients; fewer than {min_cell} {' and '.join(short)}"}
    x = np.column_stack([np.ones(len(d)), d["baseline"], d["span"]])
    beta, *_ = np.linalg.lstsq(x, d["change"].to_numpy(dtype=float), rcond=None)
    resid = d["change"].to_numpy(dtype=float) - x @ beta
    r = float(np.corrcoef(d["repaired"], resid)[0, 1])
    zc = norm_ppf(0.5 + conf_level / 2) / np.sqrt(max(len(d) - 3, 1))
    lo, hi = np.tanh(np.arctanh(r) - zc), np.tanh(np.arctanh(r) + zc)
    inside = bool(reference_interval[0] <= r <= reference_interval[1])
    return {**out, "r": r, "conf_low": float(lo), "conf_high": float(hi),
            "within_reference": inside,
            "note": "" if inside else "outside the approximate meta-analytic range: read "
                    "with the criterion's precision and the observational design in mind"}
