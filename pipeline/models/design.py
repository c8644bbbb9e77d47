"""Each model's rows and predictors, built from the scored data (and again from new data).

The design is kept apart from the engine so that the same construction can be applied to
new or simulated data (power analysis, bootstrap, another site's data): call
:func:`model_data` with the model's :class:`~pipeline.models.spec.ModelSpec`.

``complete``: rows with every model variable, ``time = session - 1`` and the Curran &
Bauer (2011) person-mean disaggregation; ``lagged``: each row paired with the client's
previous observed row (Falkenström et al. 2013); ``detrended``: within-client alliance
with each client's linear trend removed (Falkenström et al. 2017); ``min_sessions``:
clients with fewer complete rows left out before the predictors are computed.

References
----------
Curran, P. J., & Bauer, D. J. (2011). *Annual Review of Psychology, 62*, 583-619.
Falkenström, F., Granström, F., & Holmqvist, R. (2013). *Journal of Counseling
Psychology, 60*, 317-328.
Falkenström, F., Finkel, S., Sandell, R., Rubel, J. A., & Holmqvist, R. (2017). *Journal
of Consulting and Clinical Psychology, 85*, 537-549.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.errors import NotEstimableError
from pipeline.models.spec import ModelSpec

SUBSCALES: tuple[str, ...] = ("goal", "task", "bond")
#: Alliance scores disaggregated by :func:`prepare` (``total`` = mean of the subscales).
ALLIANCE: tuple[str, ...] = (*SUBSCALES, "total")
#: The outcome score's column (absent in an alliance-only analysis: no outcome file).
OUTCOME = "wellbeing"
#: Columns every model needs; rows missing any of them are left out. The outcome is also
#: needed when the data have it (see :func:`prepare`).
MODEL_VARIABLES: tuple[str, ...] = (
    "client_id", "therapist_id", "session", *SUBSCALES,
)


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
        One row per client x session with at least :data:`MODEL_VARIABLES`, and
        :data:`OUTCOME` unless the analysis is alliance-only.
    covariates
        Client-level covariates (``client_id`` plus e.g. ``approach``, ``modality``),
        merged on ``client_id``; columns already in ``scored`` are not taken again.
    required
        Further columns (e.g. covariates, or :data:`OUTCOME` for a model of the outcome) a
        row must have to be kept.

    Returns
    -------
    pandas.DataFrame
        The rows with every variable of :data:`MODEL_VARIABLES` and ``required``, and the
        outcome when ``scored`` has an outcome column (so that every model of one run,
        those of the alliance alone included, describes the same sessions), sorted
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
    NotEstimableError
        When a column is absent, a client x session occurs twice, or a client has more
        than one therapist (client ids must be unique across therapists).

    References
    ----------
    Curran, P. J., & Bauer, D. J. (2011). *Annual Review of Psychology, 62*, 583-619.
    """
    data = scored.copy()
    if covariates is not None:
        if covariates["client_id"].duplicated().any():
            raise NotEstimableError("the clients table has duplicated client_id values")
        extra = [c for c in covariates.columns if c != "client_id" and c not in data.columns]
        data = data.merge(covariates[["client_id", *extra]], on="client_id", how="left",
                          validate="many_to_one")
    outcome = [OUTCOME] if OUTCOME in data.columns or OUTCOME in required else []
    need = list(dict.fromkeys([*MODEL_VARIABLES, *outcome, *required]))
    absent = [c for c in need if c not in data.columns]
    if absent == [OUTCOME]:
        raise NotEstimableError("no outcome scores (no outcome file was given): the model "
                                f"needs {OUTCOME!r}")
    if absent:
        raise NotEstimableError(f"columns missing for the model: {absent}")
    n_input = len(data)
    complete = data[need].notna().all(axis=1)
    if not complete.all():
        data = data[complete]
    # the checks and the sort on integer codes of the labels (one hashing pass each
    # instead of a groupby per check): the same decisions as pandas' duplicated/nunique
    c_codes, _ = pd.factorize(data["client_id"].to_numpy(), sort=True)
    t_codes, _ = pd.factorize(data["therapist_id"].to_numpy(), sort=True)
    s_codes, s_levels = pd.factorize(data["session"].to_numpy(), sort=True)
    pairs = c_codes.astype(np.int64) * max(len(s_levels), 1) + s_codes
    if len(np.unique(pairs)) < len(pairs):
        raise NotEstimableError("a client x session occurs more than once")
    first_therapist = np.empty(c_codes.max() + 1 if len(c_codes) else 0, dtype=np.int64)
    first_therapist[c_codes] = t_codes
    if np.any(first_therapist[c_codes] != t_codes):
        raise NotEstimableError("a client has more than one therapist; client ids must be unique "
                         "across therapists")
    if not _sorted_by(data, ("therapist_id", "client_id", "session"),
                      (t_codes, c_codes, s_codes)):
        data = data.sort_values(["therapist_id", "client_id", "session"], kind="mergesort")
    data = data.reset_index(drop=True)
    data["time"] = data["session"].astype(float) - 1.0
    data["total"] = data[list(SUBSCALES)].astype(float).mean(axis=1)
    data = disaggregate(data)
    data.attrs.update(n_input=n_input, n_missing=n_input - len(data))
    return data


def _sorted_by(data: pd.DataFrame, columns: Sequence[str],
               codes: Sequence[np.ndarray]) -> bool:
    """Whether the rows are already in the order of a stable sort by ``columns`` (then
    :func:`prepare` leaves them as they are: the sort would not move a row).

    ``codes`` are each column's ``pd.factorize(sort=True)`` codes, which order the rows
    as pandas' sort does when a column's labels are all numbers or all text; for labels of
    mixed types this answers False (the caller sorts).
    """
    for name in columns:
        values = data[name].to_numpy()
        if values.dtype.kind not in "iuf" and pd.api.types.infer_dtype(
                values, skipna=False) != "string":
            return False
    if len(data) < 2:
        return True
    # lexicographic order of consecutive rows: the first column that differs decides
    undecided = np.ones(len(data) - 1, dtype=bool)
    for code in codes:
        step = np.diff(code.astype(np.int64))
        if np.any(undecided & (step < 0)):
            return False
        undecided &= step == 0
    return True


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
    # each row's client and therapist as positions in the sorted levels (the index order
    # of the group means below), so that spreading a mean over rows is one take
    c_codes, c_levels = pd.factorize(out["client_id"].to_numpy(), sort=True)
    t_codes, t_levels = pd.factorize(out["therapist_id"].to_numpy(), sort=True)
    new: dict[str, np.ndarray] = {}
    # every score's client and therapist means in one groupby each (pandas computes each
    # column on its own, as a groupby of that column alone: the same values)
    client_means = by_client[list(scores)].mean()
    therapist_means = client_means.groupby(client_therapist).mean()
    for k in scores:
        client_mean = client_means[k]
        grand = float(client_mean.mean())
        therapist_mean = therapist_means[k]
        if (np.array_equal(client_mean.index.to_numpy(), c_levels)
                and np.array_equal(therapist_mean.index.to_numpy(), t_levels)):
            cm = client_mean.to_numpy(dtype=float)[c_codes]
            tm = therapist_mean.to_numpy(dtype=float)[t_codes]
        else:   # e.g. labels of mixed types: look each row up, as pandas' map
            cm = out["client_id"].map(client_mean).to_numpy(dtype=float)
            tm = out["therapist_id"].map(therapist_mean).to_numpy(dtype=float)
        new[f"{k}_between"] = cm - grand
        new[f"{k}_within"] = out[k].to_numpy(dtype=float) - cm
        new[f"{k}_therapist"] = tm - grand
        new[f"{k}_client"] = cm - tm
    # columns already there (a second disaggregation) keep their place; the others are
    # appended in one step (one column at a time was most of the cost at 2,000 rows)
    for name in [c for c in new if c in out.columns]:
        out[name] = new.pop(name)
    if new:
        attrs = dict(out.attrs)
        out = pd.concat([out, pd.DataFrame(new, index=out.index)], axis=1)
        out.attrs = attrs
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
    outcome = [OUTCOME] if OUTCOME in out.columns else []
    for col in [*(f"{k}_within" for k in scores), *outcome, "session"]:
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
    uses_outcome = re.search(rf"\b{OUTCOME}", spec.formula) is not None
    data = prepare(scored, clients if spec.covariates else None,
                   required=(*spec.covariates, *([OUTCOME] if uses_outcome else [])))
    attrs = dict(data.attrs)
    n_complete = len(data)
    if spec.min_sessions is not None:
        counts = data.groupby("client_id")["session"].transform("size")
        kept = data[counts >= spec.min_sessions].reset_index(drop=True)
        if kept.empty:
            raise NotEstimableError(
                f"model {spec.name}: no client has at least {spec.min_sessions} complete "
                "sessions (min_sessions in models.yaml)")
        data = disaggregate(kept)
    if spec.data == "lagged":
        data = add_lags(data)
    elif spec.data == "detrended":
        data = detrend_within(data)
    data.attrs = {**attrs, "n_excluded": n_complete - len(data)}
    return data

