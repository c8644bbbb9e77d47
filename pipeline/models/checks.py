"""lme4's pre-fit checks, in ONE place for every model and every branch of the project.

Each check either passes, applies a documented simplification rule (recorded in the
model's ``simplification`` and shown in the report), or raises
:class:`~pipeline.errors.NotEstimableError` whose message names the model, the reason and
what to do (the advice after :data:`pipeline.labels.FOR_THE_ANALYST`,
:func:`pipeline.labels.advised`: the log and the results tables carry it, the reports show
the reason only). Thresholds and rules are data: ``model.checks`` in params.yaml
(defaults in :data:`DEFAULT_CHECKS`).

=======================  ==========================================  =====================
check                    lme4 (``lmerControl``)                      here
=======================  ==========================================  =====================
constant outcome         (fits, sigma = 0 ...)                       not estimable
outcome constant within  (fits, sigma -> 0, convergence warnings)    not estimable
every level of a factor
grouping factor < 2      ``check.nlev.gtr.1``: error "grouping       ``one_level: drop``:
levels                   factors must have > 1 sampled level"        drop that level's
                                                                     terms (simplification)
                                                                     or ``refuse``
two grouping factors     (fits; the two variances are not           ``same_grouping: drop``:
that group the rows      identified, only their sum: an arbitrary    drop the outer factor
alike (each therapist    split, often "unable to evaluate scaled     (simplification) or
has one client)          gradient")                                  ``refuse``
random slopes with at    (fits; slope variance unidentified          ``few_sessions: drop``:
most 2 rows per client   from the residual)                          drop the slope
                                                                     (simplification) or
                                                                     ``refuse``
n <= levels              ``check.nobs.vs.nlev``: error               not estimable
n <= random effects of   ``check.nobs.vs.nRE``: error                not estimable
one term
n <= fixed effects       (rank-deficient X: drops columns)           not estimable, saying
                                                                     so before the rank
rank-deficient X         drops columns with a message                not estimable, naming
                                                                     the collinear terms
                                                                     and a design cause
                                                                     (design_causes.yaml)
=======================  ==========================================  =====================

R equivalent: ``lme4:::checkNlevels``, ``lme4:::checkZdims``, ``lme4:::chkRank.drop.cols``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg

from pipeline.errors import NotEstimableError, SettingsError
from pipeline.labels import advised, term_label
from pipeline.models.spec import RandomPart
from pipeline.settings import over_defaults

#: Defaults of ``model.checks`` in params.yaml.
DEFAULT_CHECKS: dict[str, Any] = {
    "min_levels": 2,            # a grouping factor needs at least this many levels
    "one_level": "drop",        # drop | refuse: what to do with a factor below min_levels
    "slope_min_rows": 3,        # a random slope needs some level with at least this many rows
    "few_sessions": "drop",     # drop | refuse: what to do when no level has that many
    "same_grouping": "drop",    # drop | refuse: two factors grouping the rows alike
    "rank_tolerance": 1e-7,     # relative tolerance of the pivoted QR rank (lme4: 1e-7)
}
_RULES = ("drop", "refuse")
#: Terms zero on every row by the study's design, and the cause the rank check names.
DESIGN_CAUSES = Path(__file__).with_name("design_causes.yaml")
#: A centred column whose every entry is at most this in size is zero by design (a mean
#: minus itself leaves ~1e-17 of floating-point rounding on scores of a few points).
ROUNDING_RESIDUE = 1e-10


@dataclass
class CheckOutcome:
    """What the checks decided.

    Attributes
    ----------
    random
        The random part to fit (simplified when a rule applied).
    simplifications
        One sentence per rule applied.
    """

    random: RandomPart
    simplifications: list[str] = field(default_factory=list)


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """``model.checks`` merged over the defaults, validated.

    Raises
    ------
    SettingsError
        Unknown keys or rules.
    """
    out = over_defaults(dict(settings or {}), DEFAULT_CHECKS, "model.checks")
    for key in ("one_level", "few_sessions", "same_grouping"):
        if out[key] not in _RULES:
            raise SettingsError(f"params.yaml model.checks.{key}: {out[key]!r} is not one of "
                                f"{_RULES}")
    return out


def _plural(label: str, n: int) -> str:
    return f"{n} {label}" + ("" if n == 1 else "s")


def collinear_terms(x: np.ndarray, names: list[str], tol: float) -> list[str]:
    """Describe the linearly dependent columns of ``x`` (empty when full rank).

    Pivoted QR as lme4's ``chkRank.drop.cols``; each dropped column is named, with the
    names the reports show (:func:`pipeline.labels.term_label`), with the kept columns it
    is a combination of; the columns that are zero on every row are named together, e.g.
    ``"Goal (within client) and Goal (between clients) are zero on every row (they do not
    vary)"``, and so are the columns with one value on every row (a multiple of the
    intercept, e.g. a therapist mean with one therapist: ``"... has the same value on
    every row (it does not vary)"``). That QR of the whole ``n x p`` matrix is run only when
    :func:`_clearly_full_rank` cannot rule a deficiency out from the ``p x p``
    cross-product (a tenth of the cost at 300k rows), so every decision is the QR's.
    """
    if x.shape[1] == 0 or _clearly_full_rank(x, tol):
        return []
    scale = np.sqrt(np.sum(x * x, axis=0))
    scale[scale == 0] = 1.0
    _, r, piv = linalg.qr(x / scale, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > tol * diag[0])) if diag.size and diag[0] > 0 else 0
    if rank == x.shape[1]:
        return []
    kept, dropped = list(piv[:rank]), list(piv[rank:])
    constant = {k for k in kept if np.ptp(x[:, k]) == 0}
    zero, flat, out = [], [], []
    for j in sorted(dropped):
        if not np.any(x[:, j]):
            zero.append(term_label(names[j]))
            continue
        # Coefficients on the scaled columns (norm 1), so that a column of rounding
        # residue (a centred therapist mean with one therapist: 1e-17 on every row) is
        # named by what it is a combination of, not by the size of its numbers.
        coef, *_ = np.linalg.lstsq(x[:, kept] / scale[kept], x[:, j] / scale[j], rcond=None)
        with_ = [k for k, c in zip(kept, coef, strict=True) if abs(c) > 1e-8]
        if not with_ or set(with_) <= constant:
            flat.append(term_label(names[j]))  # a multiple of the intercept: constant
            continue
        out.append(f"{term_label(names[j])} is a combination of "
                   f"{_and([term_label(names[k]) for k in with_])}")
    if flat:
        out.insert(0, f"{_and(flat)} has the same value on every row (it does not vary)"
                   if len(flat) == 1 else
                   f"{_and(flat)} have the same value on every row (they do not vary)")
    if zero:
        out.insert(0, f"{_and(zero)} is zero on every row (it does not vary)" if len(zero) == 1
                   else f"{_and(zero)} are zero on every row (they do not vary)")
    return out


def _and(words: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _clearly_full_rank(x: np.ndarray, tol: float) -> bool:
    """A sufficient condition for the pivoted QR of ``x`` (columns scaled to norm 1) to
    keep every column: its smallest singular value ``s`` above ``tol``.

    Every diagonal entry of a triangular ``R`` is at least ``s`` in size (the diagonal
    holds its eigenvalues), and the first is 1 (the largest scaled column norm), so
    ``s > tol`` gives ``|r_ii| > tol |r_11|`` for all ``i``. ``s^2`` is the smallest
    eigenvalue of the scaled cross-product; it is trusted only above ``max((100 tol)^2,
    1e-9)``, far above the rounding of a cross-product over 300k rows (at most ``n eps``,
    about 3e-11); anything below goes to the QR itself.
    """
    xtx = x.T @ x
    norms = np.sqrt(np.diag(xtx))
    if not np.all(norms > 0):
        return False
    smallest = float(np.linalg.eigvalsh(xtx / np.outer(norms, norms))[0])
    return smallest > max((100.0 * tol) ** 2, 1e-9)


def _codes(factor: str, data: pd.DataFrame,
           groups: Mapping[str, tuple[np.ndarray, np.ndarray]] | None) -> np.ndarray:
    """Level index of every row of a grouping factor."""
    if groups is not None and factor in groups:
        return np.asarray(groups[factor][0])
    return np.asarray(pd.factorize(data[factor])[0])


def _same_grouping(random: RandomPart, data: pd.DataFrame,
                   groups: Mapping[str, tuple[np.ndarray, np.ndarray]] | None
                   ) -> list[tuple[str, str]]:
    """Pairs ``(outer, inner)`` of grouping factors that partition the rows alike (a
    one-to-one map between their levels, e.g. every therapist has one client).

    Of such a pair the factor with fewer random-effect columns is ``outer`` (the one
    dropped), the earlier-named one on a tie (``(1 | therapist_id) + (1 | client_id)``:
    the therapist). Factors with one level are left to the ``min_levels`` check.
    """
    factors = random.factors
    codes = {f: _codes(f, data, groups) for f in factors}
    size = {f: int(c.max()) + 1 if c.size else 0 for f, c in codes.items()}
    # levels present (codes need not be dense)
    n_levels = {f: int(np.count_nonzero(np.bincount(c, minlength=size[f]))) if c.size else 0
                for f, c in codes.items()}
    width = {f: sum(len(t.columns) for t in random.terms if t.factor == f) for f in factors}
    out = []
    for i, a in enumerate(factors):
        for b in factors[i + 1:]:
            if n_levels[a] != n_levels[b] or n_levels[a] < 2:
                continue
            pairs = np.unique(codes[a].astype(np.int64) * size[b] + codes[b])
            if pairs.size != n_levels[a]:
                continue
            out.append((b, a) if width[b] < width[a] else (a, b))
    return out


@functools.lru_cache(maxsize=1)
def _design_causes() -> tuple[dict[str, str], ...]:
    """The entries of :data:`DESIGN_CAUSES` (read once)."""
    from pipeline import yamlfile

    raw = yamlfile.safe_load(DESIGN_CAUSES.read_text(encoding="utf-8")) or {}
    return tuple({k: " ".join(str(v).split()) for k, v in entry.items()}
                 for entry in raw.values())


def design_cause(data: pd.DataFrame, x: np.ndarray, x_names: list[str],
                 data_kind: str = "complete") -> tuple[str, str, str] | None:
    """Why a fixed-effect column is zero on every row, when the study's design makes it so.

    An entry of :data:`DESIGN_CAUSES` applies when one of its terms is a column of ``x``
    that is zero on every row (up to :data:`ROUNDING_RESIDUE`) and each ``outer`` level
    of the rows holds exactly one ``inner`` level (every therapist has one client: a
    client's mean is their therapist's mean, so ``total_client`` is 0 by construction);
    an entry without ``outer`` applies when the rows hold one ``inner`` level (one
    therapist: ``total_therapist`` is 0). ``at_most`` allows that many ``inner`` levels
    (two sessions per client leave nothing of a detrended ``goal_within``), and an entry
    with ``data`` applies only to models whose rows are built that way (``data_kind``,
    models.yaml's ``data:``).

    Returns
    -------
    tuple or None
        ``(cause, meaning, advice)`` of the first entry that applies.
    """
    for entry in _design_causes():
        outer, inner = entry.get("outer", ""), entry["inner"]
        if (outer and outer not in data.columns) or inner not in data.columns or data.empty:
            continue
        if entry.get("data", data_kind) != data_kind:
            continue
        # zero, or rounding residue of a centred mean (1e-17: collinear_terms names it as
        # having "the same value on every row")
        zero = [j for j, name in enumerate(x_names)
                if re.search(entry["terms"], name)
                and np.max(np.abs(x[:, j]), initial=0.0) <= ROUNDING_RESIDUE]
        per_group = (data.groupby(outer, sort=False)[inner].nunique().max() if outer
                     else data[inner].nunique())
        if zero and int(per_group) <= int(entry.get("at_most", 1)):
            return entry["cause"], entry["meaning"], entry["advice"]
    return None


def run_checks(model: str, data: pd.DataFrame, y: np.ndarray, x: np.ndarray,
               x_names: list[str], random: RandomPart,
               settings: Mapping[str, Any] | None = None,
               groups: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
               data_kind: str = "complete") -> CheckOutcome:
    """Run every pre-fit check of one model.

    Parameters
    ----------
    model
        Model name (named in every message).
    data
        The model's rows (grouping columns and random-effect variables).
    y, x, x_names
        Outcome, fixed-effect model matrix and its column names.
    random
        The specified random part.
    settings
        ``model.checks`` of params.yaml.
    groups
        Grouping factor -> (level index of every row, level labels), as
        ``engine.group_codes`` makes them; factors not given are counted from ``data``.
    data_kind
        How the rows were built (models.yaml's ``data:``): which design causes of a rank
        deficiency can apply (:func:`design_cause`).

    Returns
    -------
    CheckOutcome
        The random part to fit and the simplifications applied.

    Raises
    ------
    NotEstimableError
        When the model cannot be estimated; the message says why and what to do.
    """
    conf = check_settings(settings)
    n = len(y)
    if n == 0:
        raise NotEstimableError(f"model {model}: no rows with every model variable")
    if np.ptp(y) == 0:
        raise NotEstimableError(
            advised(f"model {model}: the outcome is constant ({y[0]:g}) on all {n} rows, so "
                    "there is no variance to model", "check the scoring of the outcome"))
    outcome = CheckOutcome(random)

    def n_levels(factor: str) -> int:
        if groups is not None and factor in groups:
            return len(groups[factor][1])
        return int(data[factor].nunique())

    def most_rows(factor: str) -> int:
        if groups is not None and factor in groups:
            return int(np.bincount(groups[factor][0]).max())
        return int(data.groupby(factor).size().max())

    # grouping factors with too few levels
    for factor in random.factors:
        levels = n_levels(factor)
        if levels >= int(conf["min_levels"]):
            continue
        label = random.label(factor)
        reason = (f"{_plural(label, levels)}: a {label} variance is not identified (lme4: "
                  "grouping factors must have > 1 sampled level)")
        rest = set(outcome.random.factors) - {factor}
        if conf["one_level"] == "refuse" or not rest:
            raise NotEstimableError(advised(
                f"model {model}: {reason}",
                f"fit it on data with at least {conf['min_levels']} {label}s"))
        outcome.random = outcome.random.without(factors={factor})
        outcome.simplifications.append(f"{label} level dropped: {reason}")
    # two grouping factors that group the rows alike (every therapist has one client)
    for outer, inner in _same_grouping(outcome.random, data, groups):
        if outer not in outcome.random.factors or inner not in outcome.random.factors:
            continue
        o_label, i_label = random.label(outer), random.label(inner)
        reason = (f"each {o_label} has exactly one {i_label} (and each {i_label} one "
                  f"{o_label}), so the {o_label} and {i_label} variances cannot be told "
                  f"apart: only their sum is identified (lme4 fits an arbitrary split)")
        if conf["same_grouping"] == "refuse":
            raise NotEstimableError(advised(
                f"model {model}: {reason}",
                f"use data where some {o_label}s have several {i_label}s, or set "
                "model.checks.same_grouping: drop"))
        outcome.random = outcome.random.without(factors={outer})
        outcome.simplifications.append(
            f"{o_label} level dropped: {reason}; the {i_label} variance includes the "
            f"{o_label} variance")
    # random slopes without levels that have enough rows
    for factor in outcome.random.factors:
        slopes = {c for t in outcome.random.terms if t.factor == factor
                  for c in t.columns if c != "(Intercept)"}
        if not slopes:
            continue
        most = most_rows(factor)
        if most >= int(conf["slope_min_rows"]):
            continue
        label = random.label(factor)
        names = ", ".join(sorted(slopes))
        reason = (f"no {label} has more than {most} rows, so a {label} slope on {names} "
                  "cannot be told from the residual")
        if conf["few_sessions"] == "refuse":
            raise NotEstimableError(advised(
                f"model {model}: {reason}",
                f"use data with more rows per {label} or set model.checks.few_sessions: drop"))
        outcome.random = outcome.random.without(columns=slopes, within=factor)
        outcome.simplifications.append(f"{label} random slope on {names} dropped: {reason}")
    if not outcome.random.terms:
        raise NotEstimableError(f"model {model}: no random effect is left after the checks")
    # observations against levels and random effects (lme4 check.nobs.vs.*), per term
    for term in outcome.random.terms:
        levels = n_levels(term.factor)
        label = random.label(term.factor)
        if n <= levels:
            raise NotEstimableError(advised(
                f"model {model}: {n} rows for {_plural(label, levels)}: the {label} variance "
                "cannot be told from the residual (lme4: number of levels of each grouping "
                "factor must be < number of observations)",
                f"more rows per {label} are needed"))
        q = levels * len(term.columns)
        if n <= q:
            raise NotEstimableError(advised(
                f"model {model}: {n} rows for {q} random effects of "
                f"({' + '.join(term.columns)} | {term.factor}) (lme4: number of observations "
                "<= number of random effects)", "simplify the random part or add data"))
    # an outcome constant within every level of a factor leaves no residual variance
    for factor in outcome.random.factors:
        if groups is not None and factor in groups:
            codes = np.asarray(groups[factor][0])
        else:
            codes = pd.factorize(data[factor])[0]
        first = np.full(int(codes.max()) + 1, np.nan)
        first[codes] = y    # one row's value of each level
        if np.array_equal(first[codes], y):
            label = random.label(factor)
            raise NotEstimableError(
                f"model {model}: the outcome does not vary within any {label} (each "
                f"{label}'s rows all have the same value), so no variance is left for the "
                "residual and the likelihood has no maximum (the residual variance goes to "
                "0); a mixed model needs some variation within each grouping level")
    # fixed effects; too few rows first: with no more rows than fixed effects the matrix
    # is rank deficient whatever the data, and naming combinations would hide the cause
    if n <= x.shape[1]:
        raise NotEstimableError(advised(
            f"model {model}: {n} rows for {x.shape[1]} fixed effects: a model needs more rows "
            "than fixed effects (else no degrees of freedom are left for the residual)",
            "add data or simplify the model"))
    bad = collinear_terms(x, x_names, float(conf["rank_tolerance"]))
    if bad:
        reason = f"model {model}: the fixed effects are rank deficient: {'; '.join(bad)}"
        cause = design_cause(data, x, x_names, data_kind)
        if cause is not None:
            because, meaning, advice = cause
            raise NotEstimableError(advised(f"{reason}, because {because}: {meaning}",
                                            advice))
        raise NotEstimableError(advised(
            reason,
            "remove one of the collinear terms (e.g. a covariate with one level within the "
            "rows used, or a predictor that does not vary)"))
    return outcome
