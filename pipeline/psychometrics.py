"""Psychometric checks of scored questionnaires: reliability, subscale correlations, floor/ceiling.

All functions take item data with the instrument's item columns ``<item_prefix>_<n>`` (raw,
as administered: they are validated and reversed here through :func:`pipeline.score.keyed_items`)
or scored frames from :mod:`pipeline.score`, and return tidy DataFrames.

References
----------
Cronbach, L. J. (1951). Coefficient alpha and the internal structure of tests.
*Psychometrika, 16*(3), 297-334.

McDonald, R. P. (1999). *Test theory: A unified treatment*. Mahwah, NJ: Erlbaum.

Revelle, W. (2024). *psych: Procedures for Psychological, Psychometric, and Personality
Research* (R package; functions ``alpha``, ``omega``, ``fa``, ``statsBy``).
https://CRAN.R-project.org/package=psych

Revelle, W., & Zinbarg, R. E. (2009). Coefficients alpha, beta, omega, and the glb:
comments on Sijtsma. *Psychometrika, 74*(1), 145-154.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from pipeline.instruments import Instrument
from pipeline.score import (
    ID_COLUMNS,
    OUTCOME_COLUMN,
    TOTAL_COLUMN,
    keyed_items,
    validate_items,
)

PSI_LOWER = 0.005
"""Lower bound on uniquenesses in the minres fit, the bound used by ``psych::fa``."""

RELIABILITY_COLUMNS: tuple[str, ...] = (
    "instrument",
    "scale",
    "subset",
    "session",
    "n",
    "n_items",
    "alpha",
    "alpha_std",
    "omega_total",
    "note",
)


def _scales(inst: Instrument) -> dict[str, list[str]]:
    """Scale name -> item columns: the subscales, or the whole instrument for outcomes."""
    numbers = inst.subscales or {inst.key: tuple(range(1, inst.n_items + 1))}
    return {name: [f"{inst.item_prefix}_{i}" for i in its] for name, its in numbers.items()}


def cronbach_alpha(x: np.ndarray) -> tuple[float, float]:
    """Raw and standardised Cronbach's alpha of complete item data.

    Parameters
    ----------
    x
        ``(n, k)`` array of keyed (reversed where needed) item scores, no missing values.

    Returns
    -------
    (alpha, alpha_std)
        ``k/(k-1) * (1 - tr(C)/sum(C))`` on the covariance matrix ``C`` (psych's
        ``raw_alpha``) and the same on the correlation matrix (psych's ``std.alpha``).
        Only what is defined is computed: ``alpha`` is NaN when the total score does not
        vary (``sum(C) = 0``, e.g. every item constant), ``alpha_std`` when some item
        does not vary (its correlations are undefined). Callers say why in words
        (:func:`reliability` notes the items without variance).

    References
    ----------
    Cronbach, L. J. (1951). *Psychometrika, 16*(3), 297-334.
    """
    k = x.shape[1]
    cov = np.cov(x, rowvar=False)
    total = float(cov.sum())
    alpha = k / (k - 1) * (1.0 - np.trace(cov) / total) if total > 0 else np.nan
    alpha_std = np.nan
    if np.all(np.diag(cov) > 0):
        cor = np.corrcoef(x, rowvar=False)
        alpha_std = k / (k - 1) * (1.0 - k / cor.sum())
    return float(alpha), float(alpha_std)


def one_factor_minres(r: np.ndarray) -> np.ndarray:
    """Loadings of a one-factor minimum-residual (minres / ULS) fit to a correlation matrix.

    Minimises the sum of squared off-diagonal residuals ``r_ij - l_i l_j``, the criterion of
    ``psych::fa(fm = "minres")``, with uniquenesses bounded below by ``PSI_LOWER`` as in psych
    (``|l_i| <= sqrt(1 - PSI_LOWER)``).

    Parameters
    ----------
    r
        ``(k, k)`` correlation matrix, ``k >= 3``.

    Returns
    -------
    numpy.ndarray
        ``k`` loadings, signed so that their sum is positive.

    References
    ----------
    Harman, H. H., & Jones, W. H. (1966). Factor analysis by minimizing residuals (minres).
    *Psychometrika, 31*(3), 351-368.
    """
    k = r.shape[0]
    iu = np.triu_indices(k, 1)
    rows, cols = iu
    target = r[iu]

    def residuals(lam: np.ndarray) -> np.ndarray:
        return target - lam[rows] * lam[cols]

    def jacobian(lam: np.ndarray) -> np.ndarray:
        jac = np.zeros((target.size, k))
        idx = np.arange(target.size)
        jac[idx, rows] = -lam[cols]
        jac[idx, cols] = -lam[rows]
        return jac

    bound = np.sqrt(1.0 - PSI_LOWER)
    # Start from one principal-axis step with squared multiple correlations as communalities.
    reduced = r.copy()
    smc = 1.0 - 1.0 / np.diag(np.linalg.pinv(r))
    np.fill_diagonal(reduced, np.clip(smc, PSI_LOWER, 1.0 - PSI_LOWER))
    values, vectors = np.linalg.eigh(reduced)
    start = vectors[:, -1] * np.sqrt(max(values[-1], PSI_LOWER))
    start = np.clip(start * np.sign(start.sum() or 1.0), -0.99 * bound, 0.99 * bound)
    fit = least_squares(
        residuals, start, jac=jacobian, bounds=(-bound, bound),
        xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=10_000,
    )
    lam = fit.x
    return lam if lam.sum() >= 0 else -lam


def omega_total(x: np.ndarray) -> tuple[float, np.ndarray]:
    """McDonald's omega total from a one-factor minres model, as ``psych::omega(nfactors=1)``.

    ``omega_t = (V_t - sum(u2)) / V_t`` with ``V_t`` the sum of all elements of the item
    correlation matrix and ``u2 = 1 - l^2`` the uniquenesses of the one-factor fit.

    Parameters
    ----------
    x
        ``(n, k)`` complete keyed item data, ``k >= 3``.

    Returns
    -------
    (omega_total, loadings)

    Notes
    -----
    ``psych::omega`` flips items with negative general-factor loadings (``flip = TRUE``);
    this function does not, because reversing is the instrument key's job: negative
    loadings are reported by :func:`reliability` instead.

    References
    ----------
    McDonald, R. P. (1999). *Test theory: A unified treatment*. Erlbaum.
    """
    r = np.corrcoef(x, rowvar=False)
    lam = one_factor_minres(r)
    vt = r.sum()
    return float((vt - np.sum(1.0 - lam**2)) / vt), lam


def _estimate(block: pd.DataFrame, min_n: int, omega: bool = True) -> dict[str, object]:
    complete = block.dropna()
    n, k = complete.shape
    out: dict[str, object] = {
        "n": n, "n_items": k, "alpha": np.nan, "alpha_std": np.nan,
        "omega_total": np.nan, "note": "",
    }
    if n < min_n:
        out["note"] = f"n={n} < min_n={min_n}: not estimated"
        return out
    x = complete.to_numpy(dtype=float)
    constant = [c for c, sd in zip(complete.columns, x.std(axis=0), strict=True) if sd == 0]
    if constant:
        out["note"] = f"no variance in {', '.join(map(str, constant))}: not estimated"
        return out
    out["alpha"], out["alpha_std"] = cronbach_alpha(x)
    if not omega:
        return out
    if k >= 3:
        out["omega_total"], lam = omega_total(x)
        negative = [c for c, v in zip(complete.columns, lam, strict=True) if v < 0]
        if negative:
            out["note"] = f"negative loadings {negative}: check the reversed-item key"
    else:
        out["note"] = "omega needs at least 3 items"
    return out


def reliability(
    items_df: pd.DataFrame,
    inst: Instrument,
    by_session: bool = False,
    min_n: int | None = None,
    min_n_per_session: int | None = None,
    session_col: str = "session",
    omega: bool = True,
) -> pd.DataFrame:
    """Cronbach's alpha and McDonald's omega total per (sub)scale, overall and per session.

    Parameters
    ----------
    items_df
        Raw item columns of ``inst`` (validated and reversed here); a ``session`` column
        is needed when ``by_session``.
    inst
        Instrument key; alliance instruments are analysed per subscale, outcome
        instruments as one scale named after the key.
    by_session
        Also estimate within each session value (repeated measures are not independent
        across sessions, so the all-rows estimate pools over them).
    min_n
        Smallest number of complete cases for which a row is estimated; smaller groups get
        NaN estimates and a note. Pass the project's threshold (e.g. from ``params.yaml``).
        ``None`` uses the smallest n for which the item correlation matrix can be of full
        rank, the number of items in the scale plus one.
    min_n_per_session
        Threshold for the per-session rows (``psychometrics.min_n_per_session`` in
        ``params.yaml``); ``None`` uses ``min_n``. Giving it also turns on the per-session
        estimates, as ``by_session=True`` does.
    session_col
        Name of the session column.
    omega
        ``False`` skips omega (``omega_total`` NaN, no loading note): for callers that
        need alpha only (its one-factor fit is most of the cost).

    Returns
    -------
    pandas.DataFrame
        Columns ``instrument, scale, subset ("all" | "session"), session, n, n_items,
        alpha, alpha_std, omega_total, note``. Estimates use listwise-complete cases of
        each scale's items. ``alpha`` is raw (covariance) alpha and ``alpha_std``
        standardised alpha, as ``psych::alpha``; ``omega_total`` follows
        ``psych::omega(nfactors = 1, fm = "minres")``.

    References
    ----------
    Cronbach, L. J. (1951). *Psychometrika, 16*(3), 297-334.

    Revelle, W., & Zinbarg, R. E. (2009). *Psychometrika, 74*(1), 145-154.
    """
    keyed = keyed_items(items_df, inst)
    by_session = by_session or min_n_per_session is not None
    if by_session and session_col not in items_df.columns:
        raise ValueError(f"per-session reliability needs a {session_col!r} column")
    rows: list[dict[str, object]] = []
    for scale, cols in _scales(inst).items():
        threshold = len(cols) + 1 if min_n is None else int(min_n)
        per_session = threshold if min_n_per_session is None else int(min_n_per_session)
        groups: list[tuple[str, object, pd.DataFrame, int]] = [
            ("all", pd.NA, keyed[cols], threshold)
        ]
        if by_session:
            sessions = items_df[session_col]
            for value in sorted(sessions.dropna().unique()):
                groups.append(("session", value, keyed.loc[sessions == value, cols], per_session))
        for subset, session, block, n_needed in groups:
            rows.append(
                {"instrument": inst.key, "scale": scale, "subset": subset, "session": session,
                 **_estimate(block, n_needed, omega)}
            )
    out = pd.DataFrame(rows, columns=list(RELIABILITY_COLUMNS))
    out[["n", "n_items"]] = out[["n", "n_items"]].astype("Int64")
    return out


def publishable_reliability(table: pd.DataFrame, min_cell: int) -> pd.DataFrame:
    """The reliability table as it may be published: small form counts hidden.

    ``n`` below ``min_cell`` is blanked (:func:`pipeline.describe.suppress_counts`), and
    so is the note's ``n=3 < min_n=50`` (it read "n=3" beside the blank). The sessions'
    forms of one instrument and scale add up to its "all" row: secondary suppression
    over the session rows (:mod:`pipeline.disclosure`).

    Parameters
    ----------
    table
        Output of :func:`reliability` (several instruments may be stacked).
    min_cell
        ``report.min_cell``.

    Returns
    -------
    DataFrame
        Same columns, ``n`` as float with blanks, and ``suppressed``.
    """
    from pipeline.describe import suppress_counts

    frame = table.reset_index(drop=True)
    sessions = frame[frame["subset"] == "session"]
    margins = [[(int(p), "n") for p in g.index]
               for _, g in sessions.groupby(["instrument", "scale"], sort=False)]
    out = suppress_counts(frame, {"n": []}, min_cell, margins=margins)
    hidden = out["suppressed"] != ""
    out.loc[hidden, "note"] = out.loc[hidden, "note"].astype(str).str.replace(
        r"^n=\d+ < (min_n=\d+)", rf"fewer than {min_cell} forms (\1)", regex=True)
    return out


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def subscale_correlations(
    scored: pd.DataFrame,
    scales: Sequence[str] | None = None,
    client_col: str = "client_id",
) -> pd.DataFrame:
    """Within-client and between-client correlations of alliance subscales.

    Parameters
    ----------
    scored
        Output of :func:`pipeline.score.score_alliance` (one row per client and session).
    scales
        Score columns to correlate; by default every numeric column that is neither an
        identifier nor ``alliance_total`` nor ``wellbeing`` (i.e. the instrument's
        subscales, also in the merged frame of :func:`pipeline.score.merge_scores`).
        Pass e.g. ``["goal", "task", "bond", "wellbeing"]`` to include the outcome.
    client_col
        Client identifier column.

    Returns
    -------
    pandas.DataFrame
        Columns ``level ("within" | "between"), scale_1, scale_2, r, n_obs, n_clients``,
        one row per pair and level. Each pair uses the rows where both scores are present.
        *Within*: Pearson correlation of person-mean-centred scores (pooled within-client
        correlation, ``rwg`` of ``psych::statsBy``); clients with a single row carry no
        within information and are excluded from ``n_obs``/``n_clients``. *Between*:
        Pearson correlation of the client means (unweighted, ``rbg`` of
        ``psych::statsBy``). These are descriptive: no correction of degrees of freedom.

    References
    ----------
    Curran, P. J., & Bauer, D. J. (2011). The disaggregation of within-person and
    between-person effects in longitudinal models of change. *Annual Review of Psychology,
    62*, 583-619.

    Pedhazur, E. J. (1997). *Multiple regression in behavioral research* (3rd ed.),
    ch. 16 (within- and between-group correlations). Harcourt Brace.
    """
    if client_col not in scored.columns:
        raise ValueError(f"subscale_correlations needs a {client_col!r} column")
    if scales is None:
        scales = [
            c for c in scored.columns
            if c not in (*ID_COLUMNS, TOTAL_COLUMN, OUTCOME_COLUMN)
            and pd.api.types.is_numeric_dtype(scored[c])
        ]
    rows: list[dict[str, object]] = []
    for a, b in combinations(scales, 2):
        pair = scored[[client_col, a, b]].dropna()
        sizes = pair.groupby(client_col)[a].transform("size")
        repeated = pair[sizes >= 2]
        centred = repeated[[a, b]] - repeated.groupby(client_col)[[a, b]].transform("mean")
        rows.append({
            "level": "within", "scale_1": a, "scale_2": b,
            "r": _pearson(centred[a].to_numpy(), centred[b].to_numpy()),
            "n_obs": len(repeated), "n_clients": repeated[client_col].nunique(),
        })
        means = pair.groupby(client_col)[[a, b]].mean()
        rows.append({
            "level": "between", "scale_1": a, "scale_2": b,
            "r": _pearson(means[a].to_numpy(), means[b].to_numpy()),
            "n_obs": len(pair), "n_clients": len(means),
        })
    return pd.DataFrame(rows, columns=["level", "scale_1", "scale_2", "r", "n_obs", "n_clients"])


def floor_ceiling(items_df: pd.DataFrame, inst: Instrument, keyed: bool = True) -> pd.DataFrame:
    """Count responses at the lowest and highest scored value, per item.

    Parameters
    ----------
    items_df
        Raw item columns of ``inst`` (validated here, and reversed when ``keyed``).
    inst
        Instrument key.
    keyed
        Count on the keyed (scored) direction, the default: for a reversed item the
        "floor" is the answer that scores lowest (the highest printed option), so floor
        always means the worst score and ceiling the best. ``False`` counts the response
        options as printed. The ``direction`` column says which.

    Returns
    -------
    pandas.DataFrame
        Columns ``instrument, item, item_number, scale, reversed, direction, n, n_floor,
        n_ceiling, pct_floor, pct_ceiling``; ``n`` counts answered items and percentages
        are of ``n``; ``direction`` is ``"keyed"`` or ``"as answered"``.

    References
    ----------
    Terwee, C. B. et al. (2007). Quality criteria were proposed for measurement properties
    of health status questionnaires. *Journal of Clinical Epidemiology, 60*(1), 34-42.
    """
    items = keyed_items(items_df, inst) if keyed else validate_items(items_df, inst)
    scale_of = {c: name for name, cols in _scales(inst).items() for c in cols}
    rows = []
    for number, col in enumerate(inst.item_columns, start=1):
        values = items[col].dropna()
        n = len(values)
        n_floor = int((values == inst.item_min).sum())
        n_ceiling = int((values == inst.item_max).sum())
        rows.append({
            "instrument": inst.key, "item": col, "item_number": number,
            "scale": scale_of.get(col, ""), "reversed": number in inst.reversed,
            "direction": "keyed" if keyed else "as answered", "n": n,
            "n_floor": n_floor, "n_ceiling": n_ceiling,
            "pct_floor": 100.0 * n_floor / n if n else np.nan,
            "pct_ceiling": 100.0 * n_ceiling / n if n else np.nan,
        })
    return pd.DataFrame(rows)
