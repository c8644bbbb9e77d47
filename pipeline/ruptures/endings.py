"""How therapy ended: a discrete-time survival model of unplanned ending on alliance.

With an ``ending`` column in the clients file (``planned``, ``unplanned``, ``ongoing``;
see ``data/README.md``), each client contributes one row per rated session while at risk
(a *person-period* table, Singer & Willett 2003): ``event = 1`` on the client's last rated
session when therapy ended unplanned, 0 otherwise. Planned endings and clients still in
therapy are censored after their last session (a cause-specific hazard of unplanned
ending). A logistic regression of ``event`` on the client's total alliance at that
session, split into the deviation from the mean of the client's *earlier* rated sessions
(within) and that earlier mean around the mean of clients (between), and on time,
estimates whether a weaker alliance raises the hazard of ending unplanned after that
session. The split uses earlier sessions only because a client's mean over all sessions
contains the very session before the ending: with few sessions (early dropouts) it pulls
half of a last-session drop into the "between" part. (On three simulated data sets with a
within effect of -1.5 per point, the person-mean split estimated -0.45 to +0.03; the
earlier-sessions split -1.10 to -1.41, intervals covering the truth;
``tests/test_ruptures_models.py`` checks one of them.) Standard errors are robust to
the clustering of clients in therapists (cluster-robust sandwich; the therapist level is
not modelled as a random effect). Formula as data: ``ruptures.endings.formula``.

Rules stated: the last session with an alliance rating stands for the last attended
session; a client's first rated session has no earlier sessions, so the model starts at
the second (endings right after the first rated session are counted in the hazard table,
not in the model).

Without an ``ending`` column, how therapy ended is unknown: the hazard of unplanned ending
cannot be estimated. :func:`last_session` then describes what the last rated session
alone can show: whether clients' alliance at their last session was lower than their own
usual level (which an unplanned ending would produce, but so could a planned one).

References
----------
Singer, J. D., & Willett, J. B. (2003). *Applied longitudinal data analysis: Modeling
change and event occurrence*. Oxford University Press. (R: ``glm(event ~ ..., family =
binomial)`` on a person-period data set; ``sandwich::vcovCL`` for clustered SEs.)
Sharf, J., Primavera, L. H., & Diener, M. J. (2010). Dropout and therapeutic alliance: a
meta-analysis of adult individual psychotherapy. *Psychotherapy, 47*(4), 637-645.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# The GLM class itself, not statsmodels.api (which imports every statsmodels subpackage:
# about 2 s of the stage's start-up). statsmodels.formula.api.glm is GLM.from_formula.
from statsmodels.genmod.families import Binomial
from statsmodels.genmod.generalized_linear_model import GLM

from pipeline.describe import suppress_counts
from pipeline.disclosure import within
from pipeline.distributions import norm_ppf, t_ppf
from pipeline.labels import advised
from pipeline.models.checks import DEFAULT_CHECKS, collinear_terms
from pipeline.ruptures.criteria import ZERO_SD

ENDINGS = ("planned", "unplanned", "ongoing")
"""Levels of the optional ``ending`` column of the clients file."""

RANK_TOLERANCE = float(DEFAULT_CHECKS["rank_tolerance"])
"""Pivoted-QR rank tolerance of the fixed effects (lme4's, as the mixed models)."""

NO_CHANGE_WITHIN = ("the alliance does not vary within any client (each client rated every "
                    "session alike), so a last session cannot differ from the client's usual "
                    "level: there is nothing to compare")
"""Note of :func:`last_session` when no client's score varies (the comparison is empty)."""


def person_period(series: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """One row per client x rated session at risk of an unplanned ending.

    Parameters
    ----------
    series
        Client-rated total alliance: ``client_id, therapist_id, session, score``.
    clients
        ``client_id, ending``; clients with a blank ending are left out.

    Returns
    -------
    pandas.DataFrame
        ``client_id, therapist_id, session, time`` (session - 1), ``alliance,
        alliance_within`` (minus the mean of the client's earlier rated sessions; NaN at
        the first), ``alliance_between`` (that earlier mean minus the mean of the client
        means), ``event``.
    """
    ends = clients.dropna(subset=["ending"])[["client_id", "ending"]]
    data = series.merge(ends, on="client_id").sort_values(["client_id", "session"])
    data = data.rename(columns={"score": "alliance"})
    # Mean of the earlier sessions: the expanding mean of the shifted scores, per client
    # (one grouped call; the same numbers as the expanding mean of each client alone).
    shifted = data.groupby("client_id")["alliance"].shift(1)
    earlier = (shifted.groupby(data["client_id"]).expanding().mean()
               .reset_index(level=0, drop=True).reindex(data.index))
    grand = float(data.groupby("client_id")["alliance"].mean().mean())
    data["alliance_within"] = data["alliance"] - earlier
    data["alliance_between"] = earlier - grand
    last = data.groupby("client_id")["session"].transform("max")
    data["event"] = ((data["session"] == last) & (data["ending"] == "unplanned")).astype(int)
    data["time"] = data["session"].astype(float) - 1.0
    cols = ["client_id", "therapist_id", "session", "time", "alliance", "alliance_within",
            "alliance_between", "event"]
    return data[cols].reset_index(drop=True)


def fit_endings(pp: pd.DataFrame, formula: str, conf_level: float,
                min_events: int) -> tuple[str, str, pd.DataFrame]:
    """Fit the discrete-time logistic hazard model.

    Parameters
    ----------
    pp
        Output of :func:`person_period`.
    formula
        e.g. ``event ~ alliance_within + alliance_between + time``.
    conf_level
        Interval level.
    min_events
        Fewest unplanned endings (and censored clients) needed (``report.min_cell``).

    Returns
    -------
    (status, reason, coefficients)
        ``status`` as in the results contract (``fitted``, ``not estimable``, ``not
        converged``, ``failed``); coefficients ``term, estimate, std_error, statistic,
        p_value, conf_low, conf_high, odds_ratio, or_low, or_high, conf_level,
        df_method``.
    """
    pp = pp.dropna(subset=["alliance_within", "alliance_between"])
    n_events = int(pp["event"].sum())
    n_clients = int(pp["client_id"].nunique())
    if n_events < min_events or n_clients - n_events < min_events:
        # the counts themselves are not named: they are below report.min_cell; but which
        # side is short is (the report read "fewer than 5 ended unplanned, or fewer than
        # 5 did not" when nobody, or everybody, ended unplanned)
        few = f"fewer than report.min_cell = {min_events}"
        events_short, others_short = n_events < min_events, n_clients - n_events < min_events
        side = ("no client" if n_events == 0 else "every client" if n_events == n_clients
                else f"{few} clients" if events_short else f"all but {few} clients")
        also = f", and {few} did not" if events_short and others_short and n_events else ""
        return ("not estimable", f"{side} in the model ended unplanned{also}: too few "
                f"{'unplanned endings' if events_short else 'other clients'} to estimate a "
                "hazard", pd.DataFrame())
    if pp["therapist_id"].nunique() < 2:
        return ("not estimable", "one therapist: clustered standard errors need several",
                pd.DataFrame())
    try:
        model = GLM.from_formula(formula, pp, family=Binomial())
    except Exception as exc:  # recorded, never stops the stage
        return "failed", f"{type(exc).__name__}: {exc}", pd.DataFrame()
    bad = collinear_terms(np.asarray(model.exog, dtype=float), list(model.exog_names),
                          RANK_TOLERANCE)
    if bad:
        # R's glm() would report NA for these coefficients; statsmodels' pseudo-inverse
        # would give numbers that mean nothing (or fail in the clustered covariance).
        return ("not estimable", advised(
            "the model's terms are rank deficient in the sessions at "
            f"risk: {'; '.join(bad)} (e.g. every client has the same number of rated "
            "sessions, so time does not vary)", "more varied data are needed"),
            pd.DataFrame())
    try:
        groups = pd.factorize(pp["therapist_id"])[0]
        res = model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    except Exception as exc:  # recorded, never stops the stage
        return "failed", f"{type(exc).__name__}: {exc}", pd.DataFrame()
    est, se = res.params, res.bse
    zc = norm_ppf(0.5 + conf_level / 2)
    coefs = pd.DataFrame({
        "term": list(est.index), "estimate": est.to_numpy(), "std_error": se.to_numpy(),
        "statistic": (est / se).to_numpy(), "p_value": res.pvalues.to_numpy(),
        "conf_low": (est - zc * se).to_numpy(), "conf_high": (est + zc * se).to_numpy(),
    })
    coefs["odds_ratio"] = np.exp(coefs["estimate"])
    coefs["or_low"] = np.exp(coefs["conf_low"])
    coefs["or_high"] = np.exp(coefs["conf_high"])
    coefs["conf_level"] = conf_level
    coefs["df_method"] = "Wald z, cluster-robust by therapist"
    converged = bool(getattr(res, "converged", True))
    return ("fitted" if converged else "not converged", "", coefs)


def events_in_model(n_events: int, n_in_model: int, min_cell: int) -> str:
    """How many of the unplanned endings the model has, in words, without a count below
    ``min_cell``: the ones left out ended at their first rated session (no earlier session
    to compare with).

    The report said "28 of the 32 unplanned endings are in the model ... The others (fewer
    than 5)": 4 by subtraction, with the 32 in the endings table above it. When fewer than
    ``min_cell`` are left out, the number in the model is not given either.

    Examples
    --------
    ``events_in_model(32, 28, 5)`` is "All but fewer than 5 of the 32 unplanned endings
    are in the model. The others ended at their first rated session, ...".
    """
    left_out = n_events - n_in_model
    first = (" ended at their first rated session, which has no earlier session to compare "
             "it with.")
    if left_out == 0:
        return f"All {n_events:,} unplanned endings are in the model."
    if left_out >= min_cell:
        return (f"{n_in_model:,} of the {n_events:,} unplanned endings are in the model. "
                f"The other {left_out:,}{first}")
    return (f"All but fewer than {min_cell} of the {n_events:,} unplanned endings are in the "
            f"model. The others{first}")


def ending_counts(clients: pd.DataFrame | None, min_cell: int) -> pd.DataFrame:
    """Clients by how therapy ended (small counts suppressed); empty without the column.

    The counts add up to the clients in the clients file, which the overview report
    shows: one blanked count alone would be that total minus the others (planned 348,
    unplanned blank, ongoing 26, not given 0 of 377: unplanned 3). So the rule of
    :mod:`pipeline.disclosure` blanks the smallest other counts above 0 until at least two
    are blank and the blank ones add up to ``min_cell`` or more (secondary suppression);
    ``suppressed`` names every blanked count.

    The unplanned count is not one of the counts blanked with a small one when it is
    ``min_cell`` or more: the endings model publishes it (``endings_model.csv``
    ``n_events``, "All 6 unplanned endings are in the model"), so blanking it hid nothing
    (planned 15, unplanned 6 blanked, ongoing 4 blanked of 25 gave 25 - 15 - 6 = 4). The
    margin is then the other counts, which add up to the total minus the unplanned ones.
    """
    if clients is None or "ending" not in clients.columns:
        return pd.DataFrame(columns=["ending", "n_clients", "suppressed"])
    counts = clients["ending"].fillna("not given").value_counts()
    levels = [*ENDINGS, "not given"]
    table = pd.DataFrame({"ending": levels,
                          "n_clients": [int(counts.get(k, 0)) for k in levels]})
    margins = within(table, "n_clients")
    unplanned = levels.index("unplanned")
    if int(counts.get("unplanned", 0)) >= min_cell:   # published as the model's events
        margins = [[cell for cell in margin if cell[0] != unplanned] for margin in margins]
    return suppress_counts(table, {"n_clients": []}, min_cell, margins=margins)


def last_session(series: pd.DataFrame, min_cell: int, conf_level: float) -> pd.DataFrame:
    """Alliance at each client's last rated session compared with their own usual level.

    Returns
    -------
    pandas.DataFrame
        One row: ``n_clients`` (with three or more rated sessions), ``mean_difference``
        (last session minus the mean of the client's other sessions, score points),
        ``conf_low, conf_high`` (t interval), ``share_lower`` (% of clients whose last
        session was below their usual level), ``suppressed`` and ``note``. When no
        client's score varies (range at most :data:`~pipeline.ruptures.criteria.ZERO_SD`)
        the differences are all 0 by construction: the numbers are left blank and the
        note (:data:`NO_CHANGE_WITHIN`) says why, instead of "+0.00 (0.00 to 0.00), 0%
        lower".
    """
    d = series.sort_values(["client_id", "session"])
    n = d.groupby("client_id")["score"].transform("size")
    d = d[n >= 3]
    spread = d.groupby("client_id")["score"].agg(lambda s: s.max() - s.min())
    if len(spread) and bool((spread <= ZERO_SD).all()):
        table = pd.DataFrame([{"n_clients": len(spread), "mean_difference": np.nan,
                               "conf_low": np.nan, "conf_high": np.nan,
                               "share_lower": np.nan}])
        table = suppress_counts(table, {"n_clients": []}, min_cell)
        return table.assign(note=NO_CHANGE_WITHIN)
    last = d.groupby("client_id").tail(1).set_index("client_id")["score"]
    total = d.groupby("client_id")["score"].agg(["sum", "size"])
    others = (total["sum"] - last) / (total["size"] - 1)
    diff = (last - others).dropna()
    k = len(diff)
    mean = float(diff.mean()) if k else np.nan
    half = (t_ppf(0.5 + conf_level / 2, k - 1) * diff.std(ddof=1) / np.sqrt(k)
            if k > 1 else np.nan)
    table = pd.DataFrame([{
        "n_clients": k, "mean_difference": mean, "conf_low": mean - half,
        "conf_high": mean + half,
        "share_lower": 100 * float((diff < 0).mean()) if k else np.nan,
    }])
    return suppress_counts(table, {"n_clients": ["mean_difference", "conf_low", "conf_high",
                                                 "share_lower"]}, min_cell).assign(note="")


def hazard_table(pp: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """Observed hazard of unplanned ending per session (clients at risk, events).

    The events add up to the unplanned endings (``endings_model.csv`` ``n_events``, in
    the report): secondary suppression over the sessions (:mod:`pipeline.disclosure`).
    """
    table = pp.groupby("session").agg(at_risk=("client_id", "size"),
                                      events=("event", "sum")).reset_index()
    table["hazard"] = table["events"] / table["at_risk"]
    table.loc[table["at_risk"] < min_cell, "hazard"] = np.nan
    return suppress_counts(table, {"at_risk": ["hazard"], "events": ["hazard"]}, min_cell,
                           margins=within(table, "events"))

