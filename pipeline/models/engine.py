"""The project's own linear mixed-model engine, in lme4's formulation.

Why the project has its own engine
----------------------------------
No Python library reaches lme4's optimum at lme4's speed for the nested models of the
analysis plan: statsmodels' ``MixedLM`` stops short of the REML optimum with its default
optimizers (SEs five times too large on one of our fixture data sets), is about 20 times
slower than lme4 once several optimizers are run to be safe, and cannot nest a client
slope correlated with the client intercept inside therapists (statsmodels issue 8123);
pymer4 calls R. This module evaluates lme4's profiled deviance (Bates, Mächler, Bolker &
Walker 2015, section 3) with a blocked Cholesky factorisation that exploits the nesting
of clients in therapists, so that after one pass over the rows every evaluation costs
O(number of groups), and optimises it as lme4 does (bounded, from lme4's start values).

Formulation
-----------
With random effects ``b = Lambda_theta u``, ``u ~ N(0, sigma^2 I)``, the penalised
least-squares problem has the sparse Cholesky factor ``L L' = Lambda' Z'Z Lambda + I``.
Writing ``W = [X y]`` and ``r = L^-1 Lambda' Z'W``, the Schur complement
``M = W'W - r'r`` has the upper Cholesky factor ``[[R_X, c_beta], [0, r_y]]``: ``R_X``
is lme4's ``RX``, ``beta = R_X^-1 c_beta`` and ``r_y^2`` is the penalised residual sum of
squares. The profiled deviances are (JSS 67(1), eqs. 34 and 41)::

    ML:   log|L|^2 + n (1 + log(2 pi r_y^2 / n))
    REML: log|L|^2 + log|R_X|^2 + (n - p) (1 + log(2 pi r_y^2 / (n - p)))

Blocks
------
When there are two grouping factors and the finer (clients) is nested in the coarser
(therapists), order ``u`` as [clients, therapists]. Each client's block of
``Lambda' Z'Z Lambda + I`` is a small ``k x k`` matrix coupled only to its own therapist,
so the factor is: ``L_c = chol(A_cc)`` for every client (closed form for k <= 2, batched
over clients), ``L_tc = A_tc L_c^-T``, and for every therapist the Schur complement
``S_t = A_tt - sum_c L_tc L_tc'`` with ``L_t = chol(S_t)``. There is no fill-in. The same
with one grouping factor (no therapist block). Any other structure (crossed factors,
three or more factors) uses a dense factorisation of the full ``q x q`` matrix, limited to
``DENSE_LIMIT`` random effects.

References
----------
Bates, D., Mächler, M., Bolker, B., & Walker, S. (2015). Fitting linear mixed-effects
models using lme4. *Journal of Statistical Software, 67*(1), 1-48.
Bates, D. et al. MixedModels.jl (``OptSummary``, blocked ``BlockedSparse`` factors).
R equivalent: ``lme4::lmer`` with ``lmerControl()`` defaults; ``lme4::isSingular``.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import linalg, optimize, sparse
from scipy.linalg.lapack import dtrtrs as _DTRTRS

from pipeline.errors import NotEstimableError
from pipeline.models import levelwise as lw
from pipeline.models.terms import ReTerm

#: Largest number of random effects factorised densely (crossed or deeper structures).
DENSE_LIMIT = 4000
#: Smallest diagonal element of Lambda for which the gradient uses Lambda^-1 (below it,
#: ``I - A^-1`` would lose digits to cancellation: its entries scale as theta^2).
GRAD_DIRECT_MIN = 1e-3
#: The Newton polish keeps its Hessian after a step whose predicted decrease of the
#: deviance was below this (the quadratic regime), instead of computing it afresh.
KEEP_HESSIAN = 1e-4
#: Values at which a diagonal theta that ended at (or next to) zero is probed: lower
#: deviance at one of them restarts the optimiser off the boundary (lme4's restart_edge
#: probes 1e-5, where the fall of a deviance even in theta is below our threshold 1e-8;
#: 0.01 alone steps over minima below ~0.007).
EDGE_PROBES = (1e-3, 1e-2)
#: Step of the finite-difference gradient used by L-BFGS-B.
FD_STEP = 1e-7
#: Default settings of the optimiser and the checks (params.yaml ``model`` overrides).
DEFAULT_OPTIONS: dict[str, Any] = {
    "optimizer": "lbfgsb",          # lbfgsb | powell | nelder-mead
    "ftol": 1e-10,                  # relative tolerance on the deviance (L-BFGS-B)
    "gtol": 1e-10,                  # projected-gradient tolerance (L-BFGS-B): tight, as the
                                    # deviance is even in a diagonal theta (flat at 0)
    "maxfev": 5000,                 # deviance evaluations at most (per optimiser run)
    "newton_polish": True,          # Newton steps at the optimum (see _newton)
    "analytic_gradient": True,      # L-BFGS-B with Problem.deviance_gradient (else forward
                                    # finite differences); also the polish's Hessian
    "scale_theta": True,            # L-BFGS-B on theta * Problem.theta_scale()
    "gradient_tolerance": 2e-3,     # lme4 check.conv.grad (scaled gradient)
    "singular_tolerance": 1e-4,     # lme4 isSingular tol
}


# --------------------------------------------------------------------------------------
# Problem: design, random-effect structure, sufficient statistics
# --------------------------------------------------------------------------------------


@dataclass
class Factor:
    """A grouping factor with every random-effect column of its terms.

    Attributes
    ----------
    name
        Grouping column.
    levels
        Level labels (sorted), length ``G``.
    codes
        Row -> level index, length ``n``.
    columns
        Random-effect columns of this factor over all its terms (``k`` of them).
    z
        ``(n, k)`` values of those columns.
    terms
        The factor's terms, each a tuple of positions in ``columns``.
    """

    name: str
    levels: np.ndarray
    codes: np.ndarray
    columns: tuple[str, ...]
    z: np.ndarray
    terms: tuple[tuple[int, ...], ...]

    @property
    def n_levels(self) -> int:
        """Number of levels ``G``."""
        return len(self.levels)

    @property
    def k(self) -> int:
        """Random effects per level."""
        return len(self.columns)


def group_codes(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Level index (int64) of every row and the sorted level labels: one hashing pass
    (``pd.factorize``), not a sort of the rows."""
    codes, levels = pd.factorize(np.asarray(labels), sort=True)
    return codes.astype(np.int64), np.asarray(levels)


def _lower_tri_positions(k: int) -> list[tuple[int, int]]:
    """lme4's order of a ``k x k`` lower-triangular block: column-major."""
    return [(i, j) for j in range(k) for i in range(j, k)]


class Problem:
    """A linear mixed model ready for deviance evaluations.

    Parameters
    ----------
    y
        Response, length ``n``.
    x
        Fixed-effect model matrix ``(n, p)`` (full column rank; see ``checks.py``).
    x_names
        Column names of ``x``.
    terms
        Random-effect terms; their order gives theta's order after lme4's rule (terms of
        factors with more levels first, stable).
    data_columns
        Mapping of column name -> values for the grouping factors and random-effect
        variables (length ``n`` each).
    groups
        :func:`group_codes` of grouping factors already coded (e.g. by the pre-fit
        checks), so that the labels of 300k rows are hashed once.

    Notes
    -----
    One pass over the rows computes every cross-product the deviance needs; the rows are
    not touched again until the random effects are predicted.
    """

    def __init__(self, y: np.ndarray, x: np.ndarray, x_names: Sequence[str],
                 terms: Sequence[ReTerm], data_columns: dict[str, np.ndarray],
                 groups: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        self.y = np.asarray(y, dtype=float)
        self.x = np.asarray(x, dtype=float)
        self.x_names = tuple(x_names)
        self.n, self.p = self.x.shape
        # group terms by factor; order factors by decreasing number of levels (lme4)
        factor_names = list(dict.fromkeys(t.factor for t in terms))
        self.factors: list[Factor] = []
        for name in factor_names:
            codes, levels = (groups[name] if groups is not None and name in groups
                             else group_codes(data_columns[name]))
            cols: list[str] = []
            blocks: list[tuple[int, ...]] = []
            for term in (t for t in terms if t.factor == name):
                idx = []
                for c in term.columns:
                    if c in cols:
                        raise NotEstimableError(
                            f"random-effect column {c!r} appears twice for {name!r}")
                    cols.append(c)
                    idx.append(len(cols) - 1)
                blocks.append(tuple(idx))
            z = np.column_stack([
                np.ones(self.n) if c == "(Intercept)" else
                np.asarray(data_columns[c], dtype=float) for c in cols])
            self.factors.append(Factor(name, levels, codes,
                                       tuple(cols), z,
                                       tuple(blocks)))
        self.factors.sort(key=lambda f: -f.n_levels)
        # theta layout: factor order, then term order, each block column-major
        self.theta_index: list[tuple[int, int, int]] = []  # (factor, row, col)
        lower: list[float] = []
        for fi, fac in enumerate(self.factors):
            for block in fac.terms:
                for i, j in _lower_tri_positions(len(block)):
                    self.theta_index.append((fi, block[i], block[j]))
                    lower.append(0.0 if i == j else -np.inf)
        self.lower = np.asarray(lower)
        self.n_theta = len(lower)
        # per factor, the entries (col, row) of its gradient matrix that are thetas
        self._theta_entries = [sorted({(col, row) for f, row, col in self.theta_index
                                       if f == fi}) for fi in range(len(self.factors))]
        self.structure = self._structure()
        self._indicators: list[sparse.csr_matrix] = []   # see with_response
        self._prepare()

    # ---- structure ----------------------------------------------------------------

    def _structure(self) -> str:
        if len(self.factors) == 1:
            return "one"
        if len(self.factors) == 2:
            fine, coarse = self.factors
            parent = np.full(fine.n_levels, -1, dtype=np.int64)
            parent[fine.codes] = coarse.codes
            if np.array_equal(parent[fine.codes], coarse.codes):
                # order the fine levels by their parent, so that each coarse level's
                # children are contiguous (sums over children are one reduceat)
                order = np.lexsort((np.arange(fine.n_levels), parent))
                inverse = np.empty_like(order)
                inverse[order] = np.arange(len(order))
                fine.codes = inverse[fine.codes]
                fine.levels = fine.levels[order]
                return "nested"
        q = sum(f.n_levels * f.k for f in self.factors)
        if q > DENSE_LIMIT:
            raise NotEstimableError(
                f"random-effect structure with {len(self.factors)} non-nested grouping "
                f"factors and {q} random effects: the engine factorises such structures "
                f"densely only up to {DENSE_LIMIT} random effects")
        return "dense"

    def _prepare(self) -> None:
        """The one pass over the rows: sufficient statistics of every block."""
        w = np.column_stack([self.x, self.y])
        self.ww = w.T @ w
        self.yy = float(self.y @ self.y)
        if self.structure in ("one", "nested"):
            fine = self.factors[0]
            kf, m = fine.k, w.shape[1]
            nested = self.structure == "nested"
            # every fine-level cross-product in one sparse pass: z_f' [z_f, W, z_c]
            right = np.column_stack([fine.z, w, *([self.factors[1].z] if nested else [])])
            crosses = _group_cross(fine.codes, fine.z, right, fine.n_levels)
            self.f_zz = np.ascontiguousarray(crosses[:, :, :kf])
            self.f_zw = np.ascontiguousarray(crosses[:, :, kf:kf + m])
            self.f_wz = np.ascontiguousarray(np.swapaxes(self.f_zw, 1, 2))
            if nested:
                coarse = self.factors[1]
                parent = np.empty(fine.n_levels, dtype=np.int64)
                parent[fine.codes] = coarse.codes
                self.parent = parent
                self.starts = np.searchsorted(parent, np.arange(coarse.n_levels))
                kc = coarse.k
                crosses_c = _group_cross(coarse.codes, coarse.z,
                                         np.column_stack([coarse.z, w]), coarse.n_levels)
                self.c_zz = np.ascontiguousarray(crosses_c[:, :, :kc])
                self.c_zw = np.ascontiguousarray(crosses_c[:, :, kc:])
                self.c_wz = np.ascontiguousarray(np.swapaxes(self.c_zw, 1, 2))
                self.cf_zz = np.ascontiguousarray(np.swapaxes(crosses[:, :, kf + m:], 1, 2))
                self.v_cc = lw.from_stacked(self.c_zz)
                self.v_cw = lw.from_stacked(self.c_zw)
                self.v_cf = lw.from_stacked(self.cf_zz)
            # the same statistics level-last, for the optimiser's evaluations (see
            # levelwise.py; the stacked ones serve the full factorisation)
            self.v_ff = lw.from_stacked(self.f_zz)
            self.v_fw = lw.from_stacked(self.f_zw)
        else:
            self.z_dense = self._dense_z()
            self.d_zz = self.z_dense.T @ self.z_dense
            self.d_zw = self.z_dense.T @ w

    def with_response(self, y: np.ndarray) -> Problem:
        """The same model with a new response (lme4's ``refit(object, newresp)``,
        MixedModels.jl's ``refit!(m, y)``).

        Everything that does not involve ``y`` is shared with this problem (``X``, ``Z``,
        the grouping, the level order, ``Z'Z``, ``X'Z``, ``X'X``); only ``W'W`` and the
        ``y`` column of every ``Z'W`` block are recomputed, by the same operations as in
        :meth:`_prepare` (so a refit evaluates bit for bit the deviance a problem built
        afresh from the same rows would). The returned problem must not be mutated.
        """
        y = np.asarray(y, dtype=float)
        if y.shape != self.y.shape:
            raise ValueError(f"new response has {y.size} values for {self.n} rows")
        new = copy.copy(self)
        new.y = y
        # the group indicators, made once and shared by every refit (immutable)
        if not self._indicators:
            self._indicators.extend(_indicator(f.codes, f.n_levels) for f in self.factors)
        w = np.column_stack([self.x, y])
        new.ww = w.T @ w
        new.yy = float(y @ y)
        if self.structure in ("one", "nested"):
            fine = self.factors[0]
            f_zw = self.f_zw.copy()
            f_zw[:, :, -1] = _group_cross(fine.codes, fine.z, y[:, None], fine.n_levels,
                                          self._indicators[0])[:, :, 0]
            new.f_zw = f_zw
            new.f_wz = np.ascontiguousarray(np.swapaxes(f_zw, 1, 2))
            new.v_fw = lw.from_stacked(f_zw)
            if self.structure == "nested":
                coarse = self.factors[1]
                c_zw = self.c_zw.copy()
                c_zw[:, :, -1] = _group_cross(coarse.codes, coarse.z, y[:, None],
                                              coarse.n_levels, self._indicators[1])[:, :, 0]
                new.c_zw = c_zw
                new.c_wz = np.ascontiguousarray(np.swapaxes(c_zw, 1, 2))
                new.v_cw = lw.from_stacked(c_zw)
        else:
            new.d_zw = self.z_dense.T @ w
        return new

    def _dense_z(self) -> np.ndarray:
        blocks = []
        for fac in self.factors:
            zf = np.zeros((self.n, fac.n_levels * fac.k))
            for j in range(fac.k):
                zf[np.arange(self.n), fac.codes * fac.k + j] = fac.z[:, j]
            blocks.append(zf)
        return np.hstack(blocks)

    # ---- Lambda -------------------------------------------------------------------

    def lambdas(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per factor, the ``k x k`` template of Lambda (the same for every level)."""
        out = [np.zeros((f.k, f.k)) for f in self.factors]
        for value, (fi, i, j) in zip(theta, self.theta_index, strict=True):
            out[fi][i, j] = value
        return out

    def theta_scale(self) -> np.ndarray:
        """Per theta, the root mean square of the random-effect column it multiplies.

        A theta at row ``i`` of a Lambda template scales ``z_i``, so the deviance's
        curvature in it grows with ``z_i``'s size (a slope on sessions 0-19 has about 40
        times the curvature of an intercept). L-BFGS-B is not scale invariant; it runs on
        ``theta * scale`` (the optimum is the same)."""
        out = np.empty(self.n_theta)
        for t, (fi, i, _j) in enumerate(self.theta_index):
            rms = float(np.sqrt(np.mean(self.factors[fi].z[:, i] ** 2)))
            out[t] = rms if rms > 0 else 1.0
        return out

    def start(self) -> np.ndarray:
        """lme4's start: 1 on the diagonal of each block, 0 off the diagonal."""
        return np.where(np.isfinite(self.lower), 1.0, 0.0)

    def is_diagonal(self) -> np.ndarray:
        """Which theta entries are diagonal elements of Lambda."""
        return np.isfinite(self.lower)

    # ---- factorisation ------------------------------------------------------------

    def factorize(self, theta: np.ndarray) -> Factorization:
        """Blocked Cholesky at ``theta`` (see the module docstring)."""
        lams = self.lambdas(np.asarray(theta, dtype=float))
        if self.structure == "dense":
            return self._factorize_dense(lams)
        fine = self.factors[0]
        lf = lams[0]
        a_ff = _between(lf, self.f_zz, lf)
        a_ff[:, np.arange(fine.k), np.arange(fine.k)] += 1.0
        l_f = _chol_batched(a_ff)
        r_f = _fsolve_batched(l_f, _left_times(lf, self.f_wz))
        logdet = 2.0 * float(np.sum(np.log(np.diagonal(l_f, axis1=1, axis2=2))))
        m = self.ww - _gram(r_f)
        fac = Factorization(theta=np.asarray(theta, dtype=float).copy(), lambdas=lams,
                            l_f=l_f, r_f=r_f)
        if self.structure == "nested":
            coarse = self.factors[1]
            lc = lams[1]
            a_cf = _between(lc, self.cf_zz, lf)                     # (G_f, k_c, k_f)
            # L_cf = A_cf L_f^-T  <=>  L_f L_cf' = A_cf'
            l_cf = np.swapaxes(_fsolve_batched(l_f, np.swapaxes(a_cf, 1, 2)), 1, 2)
            s_c = _between(lc, self.c_zz, lc)
            s_c[:, np.arange(coarse.k), np.arange(coarse.k)] += 1.0
            s_c -= np.add.reduceat(_outer_rows(l_cf, l_cf), self.starts, axis=0)
            rhs_c = _left_times(lc, self.c_wz)
            rhs_c -= np.add.reduceat(_small_matmul(l_cf, r_f), self.starts, axis=0)
            l_c = _chol_batched(s_c)
            r_c = _fsolve_batched(l_c, rhs_c)
            logdet += 2.0 * float(np.sum(np.log(np.diagonal(l_c, axis1=1, axis2=2))))
            m -= _gram(r_c)
            fac.l_cf, fac.l_c, fac.r_c = l_cf, l_c, r_c
        fac.logdet_l = logdet
        fac.finish(m, self.p)
        return fac

    def _factorize_dense(self, lams: list[np.ndarray]) -> Factorization:
        lam = linalg.block_diag(*[np.kron(np.eye(f.n_levels), lt)
                                  for f, lt in zip(self.factors, lams, strict=True)])
        a = lam.T @ self.d_zz @ lam + np.eye(lam.shape[0])
        chol = np.linalg.cholesky(a)
        r = _trsolve(chol, lam.T @ self.d_zw, lower=True)
        fac = Factorization(theta=np.zeros(0), lambdas=lams, dense_l=chol, dense_r=r,
                            dense_lambda=lam)
        fac.logdet_l = 2.0 * float(np.sum(np.log(np.diag(chol))))
        fac.finish(self.ww - r.T @ r, self.p)
        return fac

    # ---- deviances ----------------------------------------------------------------

    def deviance(self, theta: np.ndarray, reml: bool) -> float:
        """Profiled deviance (REML criterion or -2 ML log-likelihood) at ``theta``."""
        try:
            with np.errstate(all="ignore"):
                if self.structure == "dense":
                    value = self.factorize(theta).deviance(self.n, self.p, reml)
                else:
                    value = self.quick_deviance(np.asarray(theta, dtype=float), reml)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf
        # a block that lost positive definiteness in rounding gives NaN: treat as +inf
        return value if np.isfinite(value) else np.inf

    def quick_deviance(self, theta: np.ndarray, reml: bool) -> float:
        """The profiled deviance without the factor itself (for the optimiser).

        With ``B_g = Lambda A_g^-1 Lambda'`` for each client block, the clients' part of
        ``r'r`` is ``sum_g (Z'W)_g' B_g (Z'W)_g`` and, for nested factors, the coupling
        to a therapist ``Lambda_c' sum_g S_cf,g B_g (Z'W)_g``, so that no triangular
        solves over the (G, k, p + 1) right-hand sides are needed; ``log|L|^2`` is
        ``sum_g log|A_g| + sum_t log|S_t|``. Equal to :meth:`factorize`'s deviance
        (``tests/test_models.py`` holds them to each other and to a dense factor).
        """
        lams = self.lambdas(theta)
        lf = lams[0]
        a = lw.add_identity(lw.congruent(lf, self.v_ff))
        a_inv, logdet_g = lw.inv_logdet(a)
        logdet = float(np.sum(logdet_g))
        b = lw.congruent(lf.T, a_inv)                          # Lambda A^-1 Lambda'
        m = self.ww - lw.gram(self.v_fw, lw.matmul(b, self.v_fw))
        if self.structure == "nested":
            lc = lams[1]
            t = lw.matmul(self.v_cf, b)                        # S_cf B: (k_c, k_f, G)
            s_c = self.v_cc - np.add.reduceat(lw.matmul(t, lw.swap(self.v_cf)),
                                              self.starts, axis=-1)
            s_c = lw.add_identity(lw.congruent(lc, s_c))
            rhs = self.v_cw - np.add.reduceat(lw.matmul(t, self.v_fw), self.starts, axis=-1)
            rhs = lw.left(lc, rhs)
            s_inv, logdet_c = lw.inv_logdet(s_c)
            logdet += float(np.sum(logdet_c))
            m -= lw.gram(rhs, lw.matmul(s_inv, rhs))
        m = (m + m.T) / 2.0
        p = self.p
        upper = np.linalg.cholesky(m[:p, :p]).T
        c_beta = _trsolve(upper, m[:p, p], trans="T")
        pwrss = float(m[p, p] - c_beta @ c_beta)
        if not pwrss > 0:
            return np.inf
        if reml:
            nmp = self.n - p
            logdet_rx = 2.0 * float(np.sum(np.log(np.abs(np.diag(upper)))))
            return float(logdet + logdet_rx + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp)))
        return float(logdet + self.n * (1.0 + np.log(2.0 * np.pi * pwrss / self.n)))

    def deviances(self, thetas: np.ndarray, reml: bool) -> np.ndarray:
        """:meth:`deviance` at many points at once (the rows of ``thetas``).

        The same algebra as :meth:`quick_deviance` with the points as one more array
        axis, so that a batch costs about one evaluation's Python overhead (at a few
        hundred clients that overhead, not arithmetic, is most of an evaluation). Values
        agree with :meth:`deviance` to rounding (BLAS sums in another order: about 1e-15
        relative), so the batch serves lme4's finite-difference checks
        (:func:`fd_derivatives` through :class:`_Counter`), never the optimiser's path.
        A point whose blocks are not positive definite gives ``inf``; dense structures,
        and a batch in which a factorisation fails, are evaluated one by one.
        """
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        if self.structure == "dense" or len(thetas) == 1:
            return np.array([self.deviance(t, reml) for t in thetas])
        try:
            with np.errstate(all="ignore"):
                values = self._batch_deviances(thetas, reml)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.array([self.deviance(t, reml) for t in thetas])
        values[~np.isfinite(values)] = np.inf
        return values

    def _batch_deviances(self, thetas: np.ndarray, reml: bool) -> np.ndarray:
        """:meth:`deviances` for the blocked structures."""
        m, logdet = self._batch_schur(thetas)
        p = self.p
        low = np.linalg.cholesky(m[:, :p, :p])
        c_beta = np.linalg.solve(low, m[:, :p, p:])[..., 0]
        pwrss = m[:, p, p] - np.sum(c_beta * c_beta, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            if reml:
                nmp = self.n - p
                logdet_rx = 2.0 * np.sum(np.log(np.abs(np.diagonal(low, axis1=1, axis2=2))),
                                         axis=1)
                out = logdet + logdet_rx + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp))
            else:
                out = logdet + self.n * (1.0 + np.log(2.0 * np.pi * pwrss / self.n))
        return np.where(pwrss > 0, out, np.inf)

    def vcov_betas(self, varpars: np.ndarray) -> np.ndarray:
        """:meth:`vcov_beta_vp` at many ``(theta, sigma)`` points at once (rows of
        ``varpars``): ``(B, p, p)``; equal to it to rounding (see :meth:`deviances`).
        For the Satterthwaite Jacobian; dense structures one point at a time."""
        varpars = np.atleast_2d(np.asarray(varpars, dtype=float))
        if self.structure == "dense":
            return np.array([self.vcov_beta_vp(v) for v in varpars])
        m, _ = self._batch_schur(varpars[:, :-1])
        p = self.p
        return (varpars[:, -1] ** 2)[:, None, None] * np.linalg.inv(m[:, :p, :p])

    def _batch_schur(self, thetas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Schur complements ``M = W'W - r'r`` ``(B, p + 1, p + 1)`` and
        ``log|L|^2`` ``(B,)`` at every point; per-level arrays are
        ``(a, b, batch, level)``."""
        nb = len(thetas)
        per_point = [self.lambdas(t) for t in thetas]
        lf = np.stack([lams[0] for lams in per_point])                 # (B, k, k)
        g = self.factors[0].n_levels
        a = np.einsum("bai,acg,bcj->ijbg", lf, self.v_ff, lf)
        a_inv, logdet_g = _batch_inv_logdet(lw.add_identity(a))
        logdet = logdet_g.sum(axis=-1)
        bmat = np.einsum("bia,acbg,bjc->ijbg", lf, a_inv, lf)          # Lambda A^-1 Lambda'
        # sum_g (Z'W)_g' B_g (Z'W)_g: one BLAS product over (column, level) pairs
        y = np.einsum("klbg,lng->knbg", bmat, self.v_fw)
        k, m_cols = self.v_fw.shape[:2]
        right = np.ascontiguousarray(np.moveaxis(y, 3, 1)).reshape(k * g, m_cols * nb)
        left = np.ascontiguousarray(np.swapaxes(self.v_fw, 0, 1)).reshape(m_cols, k * g)
        m = self.ww[None] - np.moveaxis((left @ right).reshape(m_cols, m_cols, nb), 2, 0)
        if self.structure == "nested":
            lc = np.stack([lams[1] for lams in per_point])
            t = np.einsum("ijg,jkbg->ikbg", self.v_cf, bmat)           # S_cf B
            s_c = self.v_cc[:, :, None, :] - np.add.reduceat(
                np.einsum("ijbg,kjg->ikbg", t, self.v_cf), self.starts, axis=-1)
            s_c = lw.add_identity(np.einsum("bai,acbg,bcj->ijbg", lc, s_c, lc))
            rhs = self.v_cw[:, :, None, :] - np.add.reduceat(
                np.einsum("ijbg,jng->inbg", t, self.v_fw), self.starts, axis=-1)
            rhs = np.einsum("bai,anbg->inbg", lc, rhs)
            s_inv, logdet_c = _batch_inv_logdet(s_c)
            logdet = logdet + logdet_c.sum(axis=-1)
            m = m - _batch_gram(rhs, np.einsum("klbg,lnbg->knbg", s_inv, rhs))
        return (m + np.swapaxes(m, 1, 2)) / 2.0, logdet

    def deviance_gradient(self, theta: np.ndarray, reml: bool) -> np.ndarray:
        """Analytic gradient of the profiled deviance with respect to ``theta``.

        With ``A = Lambda' Z'Z Lambda + I``, ``U = A^-1 Lambda' Z'W`` (the modes of ``u``
        for every column of ``W = [X y]``) and ``Q = Z'W - Z'Z Lambda U``, the Schur
        complement ``M = W'(I + Z Lambda Lambda' Z')^-1 W`` has ``dM = -(Q' dLambda U +
        U' dLambda' Q)``, and ``d log|A| = 2 tr(A^-1 Lambda' Z'Z dLambda)``. With
        ``v = [-beta; 1]`` (``M_XX beta = M_Xy``, so beta's own change drops out):
        ``d pwrss = v' dM v`` and ``d log|R_X|^2 = tr(M_XX^-1 dM_XX)``. Every term is
        ``tr(G dLambda)`` with ``dLambda`` the same template in every level, so the
        derivative for theta at ``(row, col)`` of a factor's template is the sum over its
        levels of ``G_g[col, row]``; only the diagonal (level) blocks of ``G`` are needed,
        and with nesting those follow from the blocks of ``A^-1`` by one Schur
        complement per therapist (the deviance as in Bates et al. 2015, section 3; its
        derivative by matrix calculus on that form). Equal to central differences of
        :meth:`deviance` (``tests/test_models.py``).

        Parameters
        ----------
        theta
            Point (inside or on the bounds).
        reml
            REML criterion (True) or ML deviance.

        Returns
        -------
        numpy.ndarray
            ``d deviance / d theta``, length ``n_theta``.
        """
        return self.deviance_and_gradient(theta, reml)[1]

    def deviance_and_gradient(self, theta: np.ndarray, reml: bool,
                              pwrss_weight: float | None = None) -> tuple[float, np.ndarray]:
        """The profiled deviance and :meth:`deviance_gradient` from one pass over the
        blocks (the deviance equals :meth:`deviance` to rounding; ``inf`` and a zero
        gradient where a block is not positive definite).

        With ``pwrss_weight = w`` the gradient is instead ``d log|L|^2 (+ d log|R_X|^2
        for REML) + w d pwrss``: with ``w = 1 / sigma^2`` the theta-gradient of
        :meth:`deviance_vp` at that sigma (the profiled deviance's own weight is
        ``(n - p) / pwrss`` or ``n / pwrss``, so that the deviance returned is unchanged).
        """
        theta = np.asarray(theta, dtype=float)
        lams = self.lambdas(theta)
        try:
            with np.errstate(all="ignore"):
                if self.structure == "dense":
                    grads, value = self._gradient_blocks_dense(lams, reml, pwrss_weight)
                else:
                    grads, value = self._gradient_blocks(lams, reml, pwrss_weight)
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            return np.inf, np.zeros(self.n_theta)
        out = np.empty(self.n_theta)
        for t, (fi, row, col) in enumerate(self.theta_index):
            out[t] = grads[fi][col, row]
        if not (np.isfinite(value) and np.all(np.isfinite(out))):
            return np.inf, np.zeros(self.n_theta)
        return value, out

    def deviances_and_gradients(self, thetas: np.ndarray, reml: bool,
                                pwrss_weight: float | None = None
                                ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`deviance_and_gradient` at many points at once (rows of ``thetas``).

        The per-level algebra of :meth:`_gradient_blocks` with the points as one more
        array axis (as :meth:`deviances`), then :meth:`_gradient_direct` per point. Equal
        to the one-point results to rounding (about 1e-14 relative); used for the Newton
        polish's finite-difference Hessian (:meth:`_Counter.gradient_hessian`). Points
        where a diagonal of Lambda is below ``GRAD_DIRECT_MIN``, dense structures and a
        batch whose blocks fail are evaluated one by one. ``pwrss_weight`` as in
        :meth:`deviance_and_gradient` (the Satterthwaite Hessian).
        """
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        diag = self.is_diagonal()
        direct = np.all(np.abs(thetas[:, diag]) >= GRAD_DIRECT_MIN, axis=1)
        values = np.empty(len(thetas))
        grads = np.empty((len(thetas), self.n_theta))
        done = np.zeros(len(thetas), dtype=bool)
        if self.structure != "dense" and direct.sum() > 1:
            try:
                with np.errstate(all="ignore"):
                    v, g = self._batch_gradients(thetas[direct], reml, pwrss_weight)
                values[direct], grads[direct], done[direct] = v, g, True
            except (np.linalg.LinAlgError, FloatingPointError, ValueError):
                pass
        for i in np.flatnonzero(~done):
            values[i], grads[i] = self.deviance_and_gradient(thetas[i], reml, pwrss_weight)
        return values, grads

    def _batch_gradients(self, thetas: np.ndarray, reml: bool,
                         pwrss_weight: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`deviances_and_gradients` for blocked structures, every Lambda diagonal
        at least ``GRAD_DIRECT_MIN``; arrays ``(a, b, batch, level)``."""
        per_point = [self.lambdas(t) for t in thetas]
        lf = np.stack([lams[0] for lams in per_point])
        a = np.einsum("bai,acg,bcj->ijbg", lf, self.v_ff, lf)
        a_inv, logdet_a = _batch_inv_logdet(lw.add_identity(a))
        logdet = logdet_a.sum(axis=-1)
        rf = np.einsum("bai,amg->imbg", lf, self.v_fw)               # Lambda_f' Z_f'W
        nested = self.structure == "nested"
        if nested:
            lc = np.stack([lams[1] for lams in per_point])
            cpl = np.einsum("bai,ajg,bjk->ikbg", lc, self.v_cf, lf)   # A_cf per client
            cai = np.einsum("ijbg,jkbg->ikbg", cpl, a_inv)            # A_cf A_ff^-1
            s = lw.add_identity(np.einsum("bai,acg,bcj->ijbg", lc, self.v_cc, lc))
            s -= np.add.reduceat(np.einsum("ijbg,kjbg->ikbg", cai, cpl), self.starts,
                                 axis=-1)
            s_inv, logdet_s = _batch_inv_logdet(s)
            logdet = logdet + logdet_s.sum(axis=-1)
            rc = np.einsum("bai,amg->imbg", lc, self.v_cw)
            uc = np.einsum("ijbt,jmbt->imbt", s_inv, rc - np.add.reduceat(
                np.einsum("ijbg,jmbg->imbg", cai, rf), self.starts, axis=-1))
            ucp = uc[..., self.parent]
            uf = np.einsum("ijbg,jmbg->imbg", a_inv,
                           rf - np.einsum("jibg,jmbg->imbg", cpl, ucp))
            ainv_fc = -np.einsum("jibg,jkbg->ikbg", cai, s_inv[..., self.parent])
            ainv_ff = a_inv - np.einsum("ijbg,jkbg->ikbg", ainv_fc, cai)
            m = (self.ww[None] - np.einsum("kmbg,knbg->bmn", rf, uf)
                 - np.einsum("kmbg,knbg->bmn", rc, uc))
        else:
            uf = np.einsum("ijbg,jmbg->imbg", a_inv, rf)
            ainv_ff = a_inv
            m = self.ww[None] - np.einsum("kmbg,knbg->bmn", rf, uf)
        ainv_ff_sum = ainv_ff.sum(axis=-1)
        s_inv_sum = s_inv.sum(axis=-1) if nested else None
        values = np.empty(len(thetas))
        out = np.empty((len(thetas), self.n_theta))
        for b, lams in enumerate(per_point):
            v, coef, mxx_inv, values[b] = self._scale(m[b], reml, float(logdet[b]))
            if pwrss_weight is not None:
                coef = float(pwrss_weight)
            sums = [ainv_ff_sum[:, :, b]]
            us = [uf[:, :, b, :]]
            if nested:
                assert s_inv_sum is not None
                sums.append(s_inv_sum[:, :, b])
                us.append(uc[:, :, b, :])
            grads = self._gradient_direct(lams, sums, us, v, coef, mxx_inv, reml)
            for t, (fi, row, col) in enumerate(self.theta_index):
                out[b, t] = grads[fi][col, row]
        if not (np.all(np.isfinite(values)) and np.all(np.isfinite(out))):
            raise ValueError("a point of the batch is not positive definite")
        return values, out

    def _scale(self, m: np.ndarray, reml: bool,
               logdet: float) -> tuple[np.ndarray, float, np.ndarray, float]:
        """From the Schur complement ``M`` and ``log|L|^2``: ``v = [-beta; 1]``, the
        coefficient of ``d pwrss`` in the deviance, ``M_XX^-1`` (zero for ML) and the
        deviance."""
        p = self.p
        m = (m + m.T) / 2.0
        upper = np.linalg.cholesky(m[:p, :p]).T
        c_beta = _trsolve(upper, m[:p, p], trans="T")
        pwrss = float(m[p, p] - c_beta @ c_beta)
        if not pwrss > 0:
            raise ValueError("penalised residual sum of squares not positive")
        rxi = _trsolve(upper, np.eye(p))
        mxx_inv = rxi @ rxi.T
        v = np.append(-(rxi @ c_beta), 1.0)
        dof = (self.n - p) if reml else self.n
        value = logdet + dof * (1.0 + np.log(2.0 * np.pi * pwrss / dof))
        if reml:
            value += 2.0 * float(np.sum(np.log(np.abs(np.diag(upper)))))
        return v, dof / pwrss, (mxx_inv if reml else np.zeros((p, p))), float(value)

    def _gradient_blocks(self, lams: list[np.ndarray], reml: bool,
                         pwrss_weight: float | None = None) -> tuple[list[np.ndarray], float]:
        """Per factor, ``sum_levels G_g`` (see :meth:`deviance_gradient`), blocked; every
        per-client quantity is level-last (``levelwise.py``)."""
        p = self.p
        lf = lams[0]
        zff, zfw = self.v_ff, self.v_fw
        a_inv, logdet_a = lw.inv_logdet(lw.add_identity(lw.congruent(lf, zff)))
        logdet = float(np.sum(logdet_a))
        rf = lw.left(lf, zfw)                                      # Lambda_f' Z_f'W
        nested = self.structure == "nested"
        if nested:
            lc = lams[1]
            zcc, zcw, zcf = self.v_cc, self.v_cw, self.v_cf
            cpl = lw.right(lw.left(lc, zcf), lf)                   # A_cf per client
            cai = lw.matmul(cpl, a_inv)                            # A_cf A_ff^-1
            s = lw.add_identity(lw.congruent(lc, zcc))
            s -= np.add.reduceat(lw.matmul(cai, lw.swap(cpl)), self.starts, axis=-1)
            s_inv, logdet_s = lw.inv_logdet(s)
            logdet += float(np.sum(logdet_s))
            rc = lw.left(lc, zcw)
            uc = lw.matmul(s_inv, rc - np.add.reduceat(lw.matmul(cai, rf), self.starts,
                                                       axis=-1))
            ucp = uc[..., self.parent]
            uf = lw.matmul(a_inv, rf - lw.matmul(lw.swap(cpl), ucp))
        else:
            uf = lw.matmul(a_inv, rf)
        m = self.ww - lw.gram(rf, uf)
        if nested:
            m -= lw.gram(rc, uc)
        v, coef, mxx_inv, value = self._scale(m, reml, logdet)
        if pwrss_weight is not None:
            coef = float(pwrss_weight)
        lam_diag = np.concatenate([np.diag(lt) for lt in lams])
        if nested:
            # blocks of A^-1 on the diagonal: [[A_ff^-1 + F S^-1 F', -F S^-1], ...] with
            # F = A_ff^-1 A_fc (the Schur complement per therapist)
            ainv_fc = -lw.matmul(lw.swap(cai), s_inv[..., self.parent])   # (k_f, k_c, G)
            ainv_ff = a_inv - lw.matmul(ainv_fc, cai)
        else:
            ainv_ff = a_inv
        if np.min(np.abs(lam_diag)) >= GRAD_DIRECT_MIN:
            return self._gradient_direct(
                lams, [lw.level_sum(ainv_ff)] + ([lw.level_sum(s_inv)] if nested else []),
                [uf] + ([uc] if nested else []), v, coef, mxx_inv, reml), value
        # Q = Z'W - Z'Z Lambda U
        qf = zfw - lw.matmul(lw.right(zff, lf), uf)
        if nested:
            qf -= lw.matmul(lw.right(lw.swap(zcf), lc), ucp)
            qc = zcw - lw.matmul(lw.right(zcc, lc), uc)
            qc -= np.add.reduceat(lw.matmul(lw.right(zcf, lf), uf), self.starts, axis=-1)

        def rss_terms(u: np.ndarray, q: np.ndarray) -> np.ndarray:
            # sum_g of -coef (U_g v)(Q_g v)' - U_gX M_XX^-1 Q_gX', times 2, from the
            # cross-products C_ij = sum_g U_g[i]' Q_g[j] (one BLAS product per pair)
            k = u.shape[0]
            out = np.empty((k, k))
            for i in range(k):
                for j in range(k):
                    c = u[i] @ q[j].T
                    out[i, j] = -coef * float(v @ c @ v)
                    if reml:
                        out[i, j] -= float(np.sum(mxx_inv * c[:p, :p]))
            return 2.0 * out

        # diagonal blocks of A^-1 Lambda' Z'Z, summed over levels
        g1f = lw.trace_sum(lw.right(ainv_ff, lf.T), zff)
        if nested:
            g1f += lw.trace_sum(lw.right(ainv_fc, lc.T), zcf)
            g1c = (lw.trace_sum(lw.right(s_inv, lc.T), zcc)
                   + lw.trace_sum(lw.right(lw.swap(ainv_fc), lf.T), lw.swap(zcf)))
            return [2.0 * g1f + rss_terms(uf, qf), 2.0 * g1c + rss_terms(uc, qc)], value
        return [2.0 * g1f + rss_terms(uf, qf)], value

    def _gradient_direct(self, lams: list[np.ndarray], ainv_sums: list[np.ndarray],
                         us: list[np.ndarray], v: np.ndarray, coef: float,
                         mxx_inv: np.ndarray, reml: bool) -> list[np.ndarray]:
        """:meth:`_gradient_blocks` when every Lambda template is invertible.

        From ``A U = Lambda' Z'W``: ``Lambda' Q = U``, so ``Q_g = Lambda^-T U_g`` level by
        level, and ``A^-1 Lambda' Z'Z = (I - A^-1) Lambda^-1``, so that only the sums of
        the diagonal blocks of ``A^-1`` (``ainv_sums``, per factor) and the Gram products
        ``sum_g U_g[i]' U_g[l]`` are needed (no pass to form ``Q``). Used only when every
        diagonal element of Lambda is at least ``GRAD_DIRECT_MIN`` (well conditioned);
        held to central differences in the tests either way.

        Only the entries ``(col, row)`` of a theta are completed (uncorrelated terms of
        one factor have no theta between them), and terms with a zero entry of
        ``Lambda^-1`` are left out of the sums (they add exact zeros: same bits).
        """
        p = self.p
        out_all = []
        for fi, (fac, lam, ainv_sum, u) in enumerate(
                zip(self.factors, lams, ainv_sums, us, strict=False)):
            k = fac.k
            lam_inv = _trsolve(lam, np.eye(k), lower=True)
            grams: dict[tuple[int, int], np.ndarray] = {}
            out = 2.0 * ((fac.n_levels * np.eye(k) - ainv_sum) @ lam_inv)
            for i, j in self._theta_entries[fi]:
                c: Any = 0
                for l_ in range(k):
                    if lam_inv[l_, j] != 0.0:
                        if (i, l_) not in grams:
                            grams[i, l_] = u[i] @ u[l_].T
                        c = c + lam_inv[l_, j] * grams[i, l_]
                out[i, j] -= 2.0 * coef * float(v @ c @ v)
                if reml:
                    out[i, j] -= 2.0 * float(np.sum(mxx_inv * c[:p, :p]))
            out_all.append(out)
        return out_all

    def _gradient_blocks_dense(self, lams: list[np.ndarray], reml: bool,
                               pwrss_weight: float | None = None
                               ) -> tuple[list[np.ndarray], float]:
        """Per factor, ``sum_levels G_g`` from the dense factorisation."""
        p = self.p
        lam = linalg.block_diag(*[np.kron(np.eye(f.n_levels), lt)
                                  for f, lt in zip(self.factors, lams, strict=True)])
        a = lam.T @ self.d_zz @ lam + np.eye(lam.shape[0])
        a_inv = np.linalg.inv(a)
        logdet = 2.0 * float(np.sum(np.log(np.diag(np.linalg.cholesky(a)))))
        u = a_inv @ (lam.T @ self.d_zw)
        m = self.ww - (lam.T @ self.d_zw).T @ u
        v, coef, mxx_inv, value = self._scale(m, reml, logdet)
        if pwrss_weight is not None:
            coef = float(pwrss_weight)
        q = self.d_zw - self.d_zz @ lam @ u
        g = 2.0 * (a_inv @ lam.T @ self.d_zz) - 2.0 * coef * np.outer(u @ v, q @ v)
        if reml:
            g -= 2.0 * (u[:, :p] @ mxx_inv @ q[:, :p].T)
        out, at = [], 0
        for f in self.factors:
            size = f.n_levels * f.k
            blocks = np.diagonal(g[at:at + size, at:at + size].reshape(
                f.n_levels, f.k, f.n_levels, f.k), axis1=0, axis2=2)   # (k, k, G)
            out.append(blocks.sum(axis=2))
            at += size
        return out, value

    def deviance_vp(self, varpar: np.ndarray, reml: bool) -> float:
        """Deviance in ``(theta, sigma)`` with beta profiled, as lmerTest's ``devfun_vp``.

        ``log|L|^2 + pwrss / sigma^2 + n log(2 pi sigma^2)`` plus, for REML,
        ``log|R_X|^2 - p log(2 pi sigma^2)``.
        """
        theta, sigma2 = varpar[:-1], varpar[-1] ** 2
        fac = self.factorize(theta)
        dev = fac.logdet_l + fac.pwrss / sigma2 + self.n * np.log(2 * np.pi * sigma2)
        if reml:
            dev += fac.logdet_rx - self.p * np.log(2 * np.pi * sigma2)
        return float(dev)

    def vcov_beta_vp(self, varpar: np.ndarray) -> np.ndarray:
        """``sigma^2 (R_X' R_X)^-1`` at ``(theta, sigma)`` (lmerTest's ``get_covbeta``)."""
        fac = self.factorize(varpar[:-1])
        rxi = _trsolve(fac.rx, np.eye(self.p))
        return float(varpar[-1] ** 2) * (rxi @ rxi.T)

    # ---- random effects -----------------------------------------------------------

    def random_effects(self, fac: Factorization) -> list[np.ndarray]:
        """Conditional modes ``b`` per factor, each ``(G, k)`` (lme4 ``ranef``)."""
        v_beta = np.append(-fac.beta, 1.0)   # r[:, X] (-beta) + r[:, y]
        if self.structure == "dense":
            assert fac.dense_r is not None and fac.dense_l is not None
            assert fac.dense_lambda is not None
            v = fac.dense_r @ v_beta
            u = _trsolve(fac.dense_l.T, v, lower=False)
            b = fac.dense_lambda @ u
            out, at = [], 0
            for f in self.factors:
                size = f.n_levels * f.k
                out.append(b[at:at + size].reshape(f.n_levels, f.k))
                at += size
            return out
        assert fac.r_f is not None and fac.l_f is not None
        v_f = fac.r_f @ v_beta                          # (G_f, k_f)
        if self.structure == "nested":
            assert fac.r_c is not None and fac.l_c is not None and fac.l_cf is not None
            v_c = fac.r_c @ v_beta
            u_c = _bsolve_batched(fac.l_c, v_c)
            v_f = v_f - np.einsum("gki,gk->gi", fac.l_cf, u_c[self.parent])
            u_f = _bsolve_batched(fac.l_f, v_f)
            return [u_f @ fac.lambdas[0].T, u_c @ fac.lambdas[1].T]
        return [_bsolve_batched(fac.l_f, v_f) @ fac.lambdas[0].T]

    def fitted(self, beta: np.ndarray, ranef: list[np.ndarray]) -> np.ndarray:
        """Conditional fitted values ``X beta + Z b``."""
        out = self.x @ beta
        for fac, b in zip(self.factors, ranef, strict=True):
            out += np.sum(fac.z * b[fac.codes], axis=1)
        return out


@dataclass
class Factorization:
    """The blocked factor at one theta and what follows from it."""

    theta: np.ndarray
    lambdas: list[np.ndarray]
    l_f: np.ndarray | None = None
    r_f: np.ndarray | None = None
    l_cf: np.ndarray | None = None
    l_c: np.ndarray | None = None
    r_c: np.ndarray | None = None
    dense_l: np.ndarray | None = None
    dense_r: np.ndarray | None = None
    dense_lambda: np.ndarray | None = None
    logdet_l: float = 0.0
    rx: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    beta: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pwrss: float = 0.0
    logdet_rx: float = 0.0

    def finish(self, m: np.ndarray, p: int) -> None:
        """Cholesky of the Schur complement ``M``: R_X, beta, penalised RSS."""
        m = (m + m.T) / 2.0
        upper = np.linalg.cholesky(m[:p, :p]).T
        c_beta = _trsolve(upper, m[:p, p], trans="T")
        self.rx = upper
        self.beta = _trsolve(upper, c_beta)
        self.pwrss = max(float(m[p, p] - c_beta @ c_beta), 1e-300)
        self.logdet_rx = 2.0 * float(np.sum(np.log(np.abs(np.diag(upper)))))

    def deviance(self, n: int, p: int, reml: bool) -> float:
        """Profiled deviance (see the module docstring)."""
        if reml:
            nmp = n - p
            return float(self.logdet_l + self.logdet_rx
                         + nmp * (1.0 + np.log(2.0 * np.pi * self.pwrss / nmp)))
        return float(self.logdet_l + n * (1.0 + np.log(2.0 * np.pi * self.pwrss / n)))

    def sigma2(self, n: int, p: int, reml: bool) -> float:
        """Residual variance ``pwrss / (n - p)`` (REML) or ``pwrss / n`` (ML)."""
        return self.pwrss / (n - p if reml else n)


# --------------------------------------------------------------------------------------
# Small batched linear algebra for the full factorisation, stacked (G, a, b) (the
# optimiser's evaluations use the level-last forms of levelwise.py)
# --------------------------------------------------------------------------------------


def _indicator(codes: np.ndarray, n_groups: int) -> sparse.csr_matrix:
    """The ``G x n`` sparse group indicator of :func:`_group_cross`."""
    n = len(codes)
    return sparse.csr_matrix((np.ones(n), (codes, np.arange(n))), shape=(n_groups, n))


def _group_cross(codes: np.ndarray, a: np.ndarray, b: np.ndarray, n_groups: int,
                 indicator: sparse.csr_matrix | None = None) -> np.ndarray:
    """``sum_{rows in g} a_i b_i'`` for every group: ``(G, ka, kb)``.

    One product of the sparse group indicator (``G x n``) with the row-wise products
    (``n x ka kb``): the sums run over each group's rows in row order, as ``np.bincount``
    did per column pair (measured 1.6x faster at 300k rows than ``ka kb`` bincounts).
    """
    n, ka, kb = len(codes), a.shape[1], b.shape[1]
    if indicator is None:
        indicator = _indicator(codes, n_groups)
    products = (a[:, :, None] * b[:, None, :]).reshape(n, ka * kb)
    return np.asarray(indicator @ products).reshape(n_groups, ka, kb)


def _trsolve(a: np.ndarray, b: np.ndarray, trans: int | str = 0,
             lower: bool = False) -> np.ndarray:
    """``scipy.linalg.solve_triangular(a, b, trans, lower)`` without its argument checks.

    The same LAPACK call (``dtrtrs``) with the same arguments as scipy 1.17's
    ``_solve_triangular`` (a C-ordered ``a`` is passed transposed with ``lower`` and
    ``trans`` flipped), so the same bits; the checks (finite values, shapes, array-API
    dispatch) cost about 40 microseconds a call, a fifth of a deviance gradient at a
    few hundred clients. For float64 inputs only (the engine's).
    """
    t = {"N": 0, "T": 1}.get(trans, trans) if isinstance(trans, str) else int(trans)
    if b.size == 0 or a.dtype != np.float64 or b.dtype != np.float64:
        return linalg.solve_triangular(a, b, trans=t, lower=lower)
    if a.flags.f_contiguous:
        x, info = _DTRTRS(a, b, lower=lower, trans=t)
    else:
        x, info = _DTRTRS(a.T, b, lower=not lower, trans=not t)
    if info > 0:
        raise np.linalg.LinAlgError(f"singular matrix: resolution failed at diagonal {info - 1}")
    if info < 0:
        raise ValueError(f"illegal value in {-info}-th argument of internal trtrs")
    return np.asarray(x)


def _between(left: np.ndarray, s: np.ndarray, right: np.ndarray | None) -> np.ndarray:
    """``left' S_g right`` for every group (``right=None``: ``left' S_g``), as two BLAS
    products over the stacked groups (the Lambda templates are shared by all groups)."""
    g, a, b = s.shape
    t = s if right is None else (s.reshape(g * a, b) @ right).reshape(g, a, right.shape[1])
    c = t.shape[2]
    # (left' t_g)' = t_g' left, computed for all groups at once
    u = (np.swapaxes(t, 1, 2).reshape(g * c, a) @ left).reshape(g, c, left.shape[1])
    return np.swapaxes(u, 1, 2)


def _left_times(left: np.ndarray, s_t: np.ndarray) -> np.ndarray:
    """``left' S_g`` for every group from the stored transposes ``S_g'`` (contiguous), as
    one BLAS product without copies; returned as a ``(G, k, m)`` view."""
    g, m, a = s_t.shape
    return np.swapaxes((s_t.reshape(g * m, a) @ left).reshape(g, m, left.shape[1]), 1, 2)


def _gram(r: np.ndarray) -> np.ndarray:
    """``sum_g r_g' r_g`` as BLAS products (one per row of the small blocks)."""
    out = np.zeros((r.shape[2], r.shape[2]))
    for j in range(r.shape[1]):
        rows = r[:, j, :]
        out += rows.T @ rows
    return out


def _outer_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a_g b_g'`` for every group (small blocks; a loop over the inner dimension)."""
    out = a[:, :, None, 0] * b[:, None, :, 0]
    for j in range(1, a.shape[2]):
        out += a[:, :, None, j] * b[:, None, :, j]
    return out


def _small_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a_g b_g`` for every group (small blocks; a loop over the inner dimension, or
    numpy's stacked matmul where that was measured faster: several rows times a wide
    right-hand side, e.g. ``(G, 2, 2) @ (G, 2, 9)``)."""
    if a.shape[1] > 1 and b.shape[2] > 4:
        return np.matmul(a, b)
    out = a[:, :, 0, None] * b[:, None, 0, :]
    for j in range(1, a.shape[2]):
        out += a[:, :, j, None] * b[:, None, j, :]
    return out


def _chol_batched(a: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of small SPD matrices."""
    k = a.shape[1]
    if k == 1:
        return np.sqrt(a)
    if k == 2:
        out = np.zeros_like(a)
        l11 = np.sqrt(a[:, 0, 0])
        l21 = a[:, 1, 0] / l11
        out[:, 0, 0] = l11
        out[:, 1, 0] = l21
        out[:, 1, 1] = np.sqrt(a[:, 1, 1] - l21 * l21)
        return out
    return np.linalg.cholesky(a)


def _fsolve_batched(low: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``L X = B`` for every group (L lower triangular)."""
    k = low.shape[1]
    if k == 1:
        return np.ascontiguousarray(b / low)
    if k == 2:
        out = np.empty(b.shape)   # C order, so that later row slices are BLAS-friendly
        out[:, 0] = b[:, 0] / low[:, 0, 0, None]
        out[:, 1] = (b[:, 1] - low[:, 1, 0, None] * out[:, 0]) / low[:, 1, 1, None]
        return out
    return np.linalg.solve(low, b)


def _bsolve_batched(low: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Solve ``L' x = v`` for every group (one right-hand side each)."""
    return np.linalg.solve(np.swapaxes(low, 1, 2), v[..., None])[..., 0]


def _batch_inv_logdet(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`levelwise.inv_logdet` of ``(k, k, B, G)`` levels: inverses and ``(B, G)``
    log-determinants."""
    k, _, nb, g = a.shape
    inv, logdet = lw.inv_logdet(a.reshape(k, k, nb * g))
    return inv.reshape(k, k, nb, g), np.asarray(logdet).reshape(nb, g)


def _batch_gram(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_g X_g' Y_g`` for every batch point: ``x`` ``(k, m, B, G)``, ``y``
    ``(k, n, B, G)`` -> ``(B, m, n)``."""
    return np.einsum("kmbg,knbg->bmn", x, y)


# --------------------------------------------------------------------------------------
# Optimisation, convergence checks, singular fits
# --------------------------------------------------------------------------------------


@dataclass
class EngineFit:
    """What one optimisation of a :class:`Problem` found (an ``OptSummary``).

    Attributes
    ----------
    theta
        Relative covariance factor parameters at the optimum (lme4's ``getME(, "theta")``).
    objective
        Profiled deviance there (REML criterion or -2 log-likelihood).
    reml
        Criterion optimised.
    beta, sigma2
        Fixed effects and residual variance.
    vcov
        ``sigma^2 (R_X' R_X)^-1``.
    evaluations
        Deviance evaluations (optimiser, polish and checks).
    optimizer
        Optimiser used (``+newton`` when polished).
    start
        Start theta.
    converged, gradient, scaled_gradient, hessian_pd, singular, messages
        lme4's checks: max |scaled gradient| (``solve(chol(H), g)``) within
        ``gradient_tolerance``, Hessian positive definite, ``isSingular``.
    seconds
        Wall time (never written to tracked results).
    """

    theta: np.ndarray
    objective: float
    reml: bool
    beta: np.ndarray
    sigma2: float
    vcov: np.ndarray
    evaluations: int
    optimizer: str
    start: np.ndarray
    converged: bool
    gradient: float
    scaled_gradient: float
    hessian_pd: bool
    singular: bool
    messages: tuple[str, ...]
    options: dict[str, Any]
    seconds: float
    factorization: Factorization = field(repr=False, compare=False,
                                         default=None)  # type: ignore[assignment]

    @property
    def loglik(self) -> float:
        """Log-likelihood (REML or ML) at the optimum."""
        return -0.5 * self.objective


class _Counter:
    """Deviance function that counts its evaluations."""

    def __init__(self, problem: Problem, reml: bool) -> None:
        self.problem, self.reml, self.count = problem, reml, 0
        self.gradients = 0   # analytic gradient evaluations
        self.cache: dict[bytes, float] = {}
        self.derivatives: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
        self.gradient_cache: dict[bytes, np.ndarray] = {}

    def __call__(self, theta: np.ndarray) -> float:
        x = np.asarray(theta, dtype=float)
        key = x.tobytes()
        if key not in self.cache:   # the same point is never evaluated twice
            self.count += 1
            self.cache[key] = self.problem.deviance(x, self.reml)
        return self.cache[key]

    def with_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Deviance and analytic gradient (:meth:`Problem.deviance_and_gradient`); the
        deviance is remembered like :meth:`__call__`'s."""
        x = np.asarray(theta, dtype=float)
        value, grad = self.problem.deviance_and_gradient(x, self.reml)
        self.gradients += 1
        key = x.tobytes()
        if key not in self.cache:
            self.count += 1
            self.cache[key] = value
        # remembered for :meth:`gradient` (the polish starts where L-BFGS-B stopped);
        # a copy, as the optimiser's wrapper edits the returned array at the bounds
        self.gradient_cache.setdefault(key, grad.copy())
        return self.cache[key], grad

    def derivs(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient and Hessian by :func:`fd_derivatives` (remembered per point); the
        points it needs and that are not remembered are evaluated as one batch
        (:meth:`Problem.deviances`), each still counted as an evaluation."""
        key = np.asarray(theta, dtype=float).tobytes()
        if key not in self.derivatives:
            self.evaluate_many(fd_points(np.asarray(theta, dtype=float)))
            self.derivatives[key] = fd_derivatives(self, theta)
        return self.derivatives[key]

    def gradients_many(self, points: Sequence[np.ndarray]) -> None:
        """Evaluate and remember the deviance and analytic gradient at every point whose
        gradient is not yet remembered, as one batch (:meth:`Problem.deviances_and_gradients`)."""
        todo: dict[bytes, np.ndarray] = {}
        for x in points:
            key = x.tobytes()
            if key not in self.gradient_cache:
                todo[key] = x
        if len(todo) < 2:
            return
        values, grads = self.problem.deviances_and_gradients(np.array(list(todo.values())),
                                                             self.reml)
        for key, value, grad in zip(todo, values, grads, strict=True):
            self.gradients += 1
            if key not in self.cache:
                self.count += 1
                self.cache[key] = float(value) if np.isfinite(value) else np.inf
            self.gradient_cache[key] = grad

    def evaluate_many(self, points: Sequence[np.ndarray]) -> None:
        """Evaluate and remember the deviance at every point not yet remembered."""
        todo: dict[bytes, np.ndarray] = {}
        for x in points:
            key = x.tobytes()
            if key not in self.cache:
                todo[key] = x
        if not todo:
            return
        values = self.problem.deviances(np.array(list(todo.values())), self.reml)
        for key, value in zip(todo, values, strict=True):
            self.count += 1
            self.cache[key] = float(value)

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """The analytic gradient (remembered per point, like the deviance)."""
        x = np.asarray(theta, dtype=float)
        key = x.tobytes()
        if key not in self.gradient_cache:
            self.gradient_cache[key] = self.with_gradient(x)[1]
        return self.gradient_cache[key]

    def gradient_hessian(self, theta: np.ndarray, idx: np.ndarray,
                         step: float = 1e-4) -> np.ndarray:
        """Hessian over the parameters ``idx`` by central differences of the analytic
        gradient (``2 len(idx)`` gradient calls, each about two deviance evaluations,
        against ``1 + 2k^2`` evaluations of :func:`fd_derivatives`). The step is
        ``deriv12``'s; crossing zero in a diagonal theta is harmless (the deviance is
        smooth and even there)."""
        x = np.asarray(theta, dtype=float)
        points = []
        for i in idx:
            e = np.zeros_like(x)
            e[i] = step
            points += [x + e, x - e]
        self.gradients_many(points)
        cols = []
        for i in idx:
            e = np.zeros_like(x)
            e[i] = step
            cols.append((self.gradient(x + e)[idx] - self.gradient(x - e)[idx]) / (2 * step))
        h = np.array(cols).reshape(len(idx), len(idx))
        return (h + h.T) / 2.0


def fd_points(x: np.ndarray, step: float = 1e-4) -> list[np.ndarray]:
    """Every point :func:`fd_derivatives` evaluates, built by the same arithmetic (so
    that their bytes, the keys of :class:`_Counter`'s memory, are the same)."""
    k = len(x)
    out = [x]
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = step
        out += [x + ei, x - ei]
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = step
            out += [x + ei + ej, x + ei - ej, x - ei + ej, x - ei - ej]
    return out


def fd_derivatives(f: Any, x: np.ndarray, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of ``f`` by central differences (lme4's ``deriv12``).

    Parameters
    ----------
    f
        Scalar function of a vector.
    x
        Point.
    step
        Absolute step ``delta`` (lme4 uses 1e-4).

    Returns
    -------
    tuple of numpy.ndarray
        ``(gradient, hessian)``.
    """
    x = np.asarray(x, dtype=float)
    k = len(x)
    f0 = f(x)
    grad = np.empty(k)
    hess = np.empty((k, k))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = step
        fp, fm = f(x + ei), f(x - ei)
        grad[i] = (fp - fm) / (2 * step)
        hess[i, i] = (fp - 2 * f0 + fm) / step**2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = step
            hess[i, j] = hess[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                                       + f(x - ei - ej)) / (4 * step**2)
    return grad, hess


def richardson_derivatives(f: Any, x: np.ndarray, rel: float = 1e-3,
                           order: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian by central differences with Richardson extrapolation.

    Used for the Satterthwaite computations, where lmerTest uses ``numDeriv::hessian``
    (also Richardson-extrapolated central differences). Steps ``h = rel * max(|x|, 0.1)``
    and ``h / 2``.
    """
    x = np.asarray(x, dtype=float)
    h0 = rel * np.maximum(np.abs(x), 0.1)

    def once(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(x)
        f0 = f(x)
        grad, hess = np.empty(k), np.empty((k, k))
        for i in range(k):
            ei = np.zeros(k)
            ei[i] = h[i]
            fp, fm = f(x + ei), f(x - ei)
            grad[i] = (fp - fm) / (2 * h[i])
            hess[i, i] = (fp - 2 * f0 + fm) / h[i] ** 2
            for j in range(i):
                ej = np.zeros(k)
                ej[j] = h[j]
                hess[i, j] = hess[j, i] = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej)
                                           + f(x - ei - ej)) / (4 * h[i] * h[j])
        return grad, hess

    g1, h1 = once(h0)
    if order < 2:
        return g1, h1
    g2, h2 = once(h0 / 2)
    return (4 * g2 - g1) / 3, (4 * h2 - h1) / 3


def _checks(f: _Counter, theta: np.ndarray, lower: np.ndarray, diag: np.ndarray,
            options: dict[str, Any]) -> tuple[float, float, bool, bool]:
    """lme4's convergence checks at ``theta``.

    Returns max |gradient|, max |scaled gradient| over the free parameters, whether the
    Hessian of the free parameters is positive definite, and ``isSingular``.
    """
    tol = float(options["singular_tolerance"])
    singular = bool(np.any(diag & (np.abs(theta) < tol)))
    at_bound = diag & (theta <= tol)
    free = ~at_bound
    grad, hess = f.derivs(theta)
    # at a boundary optimum only a gradient pointing outwards is allowed
    outward = float(np.max(np.maximum(0.0, -grad[at_bound]), initial=0.0))
    idx = np.flatnonzero(free)
    if not idx.size:
        return outward, outward, True, singular
    g = grad[idx]
    h = hess[np.ix_(idx, idx)]
    try:
        chol = np.linalg.cholesky((h + h.T) / 2)
        scaled = float(np.max(np.abs(_trsolve(chol, g, lower=True))))
        pd_ = True
    except np.linalg.LinAlgError:
        scaled, pd_ = float(np.max(np.abs(g))), False
    return float(max(np.max(np.abs(g)), outward)), max(scaled, outward), pd_, singular


def _newton(f: _Counter, theta: np.ndarray, lower: np.ndarray, diag: np.ndarray,
            steps: int = 6, analytic: bool = True) -> tuple[np.ndarray, bool]:
    """Safeguarded Newton steps over the interior parameters; returns the point and
    whether it settled (predicted decrease below 1e-10, or at the deviance's rounding).

    With ``analytic``: the analytic gradient and a Hessian from central differences of
    it. The Hessian is kept after a step whose predicted decrease ``g' H^-1 g`` was
    below ``KEEP_HESSIAN`` (then the step was in the quadratic regime, the Hessian hardly
    changes, and the next test of the predicted decrease needs only the new gradient; a
    step that then fails to lower the deviance has met its rounding, about 1e-7 at 300k
    rows, and ends the polish); otherwise it is computed afresh (far
    from the optimum, e.g. after L-BFGS-B stopped early in its line search, these are
    full Newton steps). Without: gradient and Hessian of :func:`fd_derivatives` at every
    point (no analytic derivative anywhere, for comparison).
    """
    theta = theta.copy()
    value = f(theta)
    kept: tuple[bytes, np.ndarray] | None = None    # (free set, Hessian over it)
    settled = False
    for _ in range(steps):
        free = ~(diag & (theta < 1e-6))
        idx = np.flatnonzero(free)
        if not idx.size:
            settled = True
            break
        fresh = False
        if analytic:
            g = f.gradient(theta)[idx]
            if kept is None or kept[0] != idx.tobytes():
                kept, fresh = (idx.tobytes(), f.gradient_hessian(theta, idx)), True
            h = kept[1]
        else:
            grad, hess = f.derivs(theta)
            g, h, fresh = grad[idx], hess[np.ix_(idx, idx)], True
        try:
            delta = linalg.cho_solve(linalg.cho_factor((h + h.T) / 2, lower=True), g)
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            break
        if np.max(np.abs(delta)) < 1e-10 or float(g @ delta) < 1e-10:
            settled = True
            break   # predicted decrease below 1e-10: at the optimum
        if float(g @ delta) > KEEP_HESSIAN:
            kept = None
        improved = False
        for shrink in (1.0, 0.5, 0.25, 0.125):
            cand = theta.copy()
            cand[idx] -= shrink * delta
            cand = np.maximum(cand, lower)
            val = f(cand)
            if val <= value:
                improved = val < value - 1e-13
                theta, value = cand, val
                break
        if not improved:
            if fresh or float(g @ delta) <= KEEP_HESSIAN:
                settled = float(g @ delta) <= KEEP_HESSIAN
                break       # no decrease left above the deviance's rounding
            kept = None     # the kept Hessian failed: once more with a fresh one
    return theta, settled


def optimize_theta(problem: Problem, reml: bool, options: dict[str, Any] | None = None,
                   start: np.ndarray | None = None) -> EngineFit:
    """Minimise the profiled deviance and run lme4's checks.

    Parameters
    ----------
    problem
        The model.
    reml
        REML criterion (True) or ML deviance.
    options
        Keys of :data:`DEFAULT_OPTIONS`.
    start
        Warm start (e.g. a previous fit's theta); lme4's start when ``None``.

    Returns
    -------
    EngineFit
        The optimum and its checks.

    Notes
    -----
    lme4 minimises with bobyqa (derivative-free, bounded). Here L-BFGS-B (bounds:
    diagonal of each Lambda block >= 0) is the default, with the analytic gradient
    (:meth:`Problem.deviance_and_gradient`, about 1.7 deviance evaluations' cost, against
    ``k + 1`` evaluations for forward differences; ``analytic_gradient: False`` restores
    those); a diagonal theta on its bound gets the forward difference there, since the
    deviance is even in it (exact derivative 0). On the fixture data and at 43k rows it
    reached lme4's optimum with the fewest evaluations (a damped Newton method from
    lme4's start was tried and stalled at a false boundary point);
    Powell and Nelder-Mead (bounded) can be chosen. L-BFGS-B runs on ``theta *
    Problem.theta_scale()`` (``scale_theta``; 18 instead of 32 gradient calls at 318k
    rows). A few Newton steps (Hessian from central differences of the analytic
    gradient) then polish the optimum so that every optimiser agrees to many digits;
    where they cannot settle, L-BFGS-B had stopped early and is restarted from there.
    lme4's checks use ``deriv12`` (:func:`fd_derivatives`) at the final point, as lme4.
    """
    opts = {**DEFAULT_OPTIONS, **(options or {})}
    began = time.perf_counter()
    f = _Counter(problem, reml)
    x0 = problem.start() if start is None else np.maximum(np.asarray(start, float),
                                                          problem.lower)
    lower, diag = problem.lower, problem.is_diagonal()
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    method = str(opts["optimizer"]).lower()
    messages: list[str] = []
    if f(x0) == np.inf:
        raise NotEstimableError("the deviance cannot be evaluated at the start values")
    scale = problem.theta_scale() if opts["scale_theta"] else np.ones(len(x0))

    def run(x_start: np.ndarray) -> Any:
        if method == "lbfgsb":
            # without the analytic gradient, forward differences (k + 1 evaluations per
            # gradient): measured faster to the same optimum than central ones; the
            # Newton polish settles the last digits
            forward = True
            h = np.full(len(x0), FD_STEP)

            def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
                x = np.maximum(x, lower)
                if opts["analytic_gradient"]:
                    fx, g = f.with_gradient(x)
                    if not np.isfinite(fx):
                        return fx, g
                    # the deviance is even in a diagonal theta, so its derivative at the
                    # bound 0 is exactly 0 (a stationary point the optimiser would accept
                    # although the deviance may fall off it): there, as before, the
                    # forward difference, whose sign says whether moving off helps
                    for b in np.flatnonzero(diag & (x <= lower + h)):
                        e = np.zeros_like(x)
                        e[b] = h[b]
                        g[b] = (f(x + e) - fx) / h[b]
                    return fx, g
                fx = f(x)
                # one-sided differences at a bound, central inside
                g = np.empty_like(x)
                for i in range(len(x)):
                    e = np.zeros_like(x)
                    e[i] = h[i]
                    if forward or (np.isfinite(lower[i]) and x[i] - h[i] < lower[i]):
                        g[i] = (f(x + e) - fx) / h[i]
                    else:
                        g[i] = (f(x + e) - f(x - e)) / (2 * h[i])
                return fx, g

            def scaled(phi: np.ndarray) -> tuple[float, np.ndarray]:
                fx, g = fun(phi / scale)
                return fx, g / scale

            res = optimize.minimize(scaled, x_start * scale, jac=True, method="L-BFGS-B",
                                    bounds=bounds,
                                    options={"ftol": float(opts["ftol"]),
                                             "gtol": float(opts.get("gtol", 1e-10)),
                                             "maxfun": int(opts["maxfev"]), "maxls": 40})
            res.x = res.x / scale
        elif method == "powell":
            res = optimize.minimize(f, x_start, method="Powell", bounds=bounds,
                                    options={"ftol": float(opts["ftol"]), "xtol": 1e-8,
                                             "maxfev": int(opts["maxfev"])})
        elif method in ("nelder-mead", "nelder_mead", "nm"):
            res = optimize.minimize(f, x_start, method="Nelder-Mead", bounds=bounds,
                                    options={"fatol": float(opts["ftol"]), "xatol": 1e-8,
                                             "maxfev": int(opts["maxfev"]), "adaptive": True})
        else:
            raise ValueError(f"unknown optimizer {method!r}")
        return res

    res = run(x0)
    # lme4's restart_edge: a diagonal theta left at (or next to) zero although the
    # deviance falls when moving off it is restarted from 0.5 there (the deviance is
    # even in such a theta, so its gradient vanishes at zero and can stop an optimiser).
    # Moving off is probed at EDGE_PROBES: one probe at 0.01 stepped over a shallow
    # minimum at 0.007 (data_missing's alliance_time_task: lme4's deviance 1.1e-3 lower)
    x_end = np.maximum(np.asarray(res.x, dtype=float), lower)
    edge = diag & (x_end < float(opts["singular_tolerance"]))
    f_end = f(x_end)
    for k in np.flatnonzero(edge):   # only where moving off the boundary helps
        probes = np.repeat(x_end[None, :], len(EDGE_PROBES), axis=0)
        probes[:, k] = EDGE_PROBES
        edge[k] = any(f(probe) < f_end - 1e-8 for probe in probes)
    if edge.any():
        bumped = x_end.copy()
        bumped[edge] = 0.5
        again = run(bumped)
        if f(np.maximum(again.x, lower)) < f_end - 1e-10:
            res = again
            messages.append("restarted from the boundary (lme4's restart_edge)")
    theta = np.maximum(np.asarray(res.x, dtype=float), lower)
    if not res.success:
        messages.append(f"{method}: {res.message}")
    name = method
    if opts["newton_polish"]:
        analytic = bool(opts["analytic_gradient"])
        polished, settled = _newton(f, theta, lower, diag, analytic=analytic)
        # L-BFGS-B can stop far from the optimum on its relative-reduction rule after a
        # poor line search (seen on the shipped data's primary model, and from some
        # starts): where the polish cannot settle there (Hessian not positive definite,
        # no decrease), L-BFGS-B starts again from that point with a fresh memory
        for _ in range(2 if method == "lbfgsb" else 0):
            if settled:
                break
            point = polished if f(polished) <= f(theta) else theta
            again = np.maximum(np.asarray(run(point).x, dtype=float), lower)
            if not f(again) < f(point) - 1e-10:
                break
            theta = again
            polished, settled = _newton(f, theta, lower, diag, analytic=analytic)
        if f(polished) <= f(theta):
            theta = polished
        name += "+newton"
    # a diagonal element near zero is put on the boundary when the deviance is no worse
    # there (bobyqa lands exactly on the bound; gradient methods stop a hair inside)
    for i in np.flatnonzero(diag & (theta < float(opts["singular_tolerance"]))):
        snapped = theta.copy()
        snapped[i] = 0.0
        if f(snapped) <= f(theta) + 1e-10:
            theta = snapped
    grad, scaled, pd_, singular = _checks(f, theta, lower, diag, opts)
    tol = float(opts["gradient_tolerance"])
    converged = bool(scaled <= tol and pd_)
    if scaled > tol:
        messages.append(f"Model failed to converge with max|grad| = {scaled:.3g} "
                        f"(tol = {tol:g})")
    if not pd_:
        messages.append("Model failed to converge: Hessian of the deviance is not "
                        "positive definite")
    if singular:
        messages.append("boundary (singular) fit: see isSingular")
    fac = problem.factorize(theta)
    objective = fac.deviance(problem.n, problem.p, reml)
    sigma2 = fac.sigma2(problem.n, problem.p, reml)
    rxi = _trsolve(fac.rx, np.eye(problem.p))
    return EngineFit(
        theta=theta, objective=objective, reml=reml, beta=fac.beta.copy(), sigma2=sigma2,
        vcov=sigma2 * (rxi @ rxi.T), evaluations=f.count, optimizer=name,
        start=np.asarray(x0, dtype=float), converged=converged, gradient=grad,
        scaled_gradient=scaled, hessian_pd=pd_, singular=singular,
        messages=tuple(messages),
        options={k: opts[k] for k in sorted(DEFAULT_OPTIONS)},
        seconds=time.perf_counter() - began, factorization=fac,
    )


def covariances(problem: Problem, theta: np.ndarray, sigma2: float) -> list[np.ndarray]:
    """Per factor, the covariance matrix ``sigma^2 Lambda Lambda'`` of its random effects."""
    return [sigma2 * (lt @ lt.T) for lt in problem.lambdas(np.asarray(theta, dtype=float))]
