"""Kenward-Roger adjusted covariance and degrees of freedom of the fixed effects.

The method of Kenward & Roger (1997) as pbkrtest implements it (``vcovAdj``, ``Lb_ddf``;
Halekoh & Højsgaard 2014) and lmerTest reports it (``ddf = "Kenward-Roger"``: each
coefficient's SE from the adjusted covariance, its df from ``Lb_ddf``). pbkrtest writes
the marginal covariance linearly, ``Sigma = sum_r gamma_r G_r``: one ``G_r = Z_a Z_b' +
Z_b Z_a'`` (or ``Z_a Z_a'``) per variance and covariance of each random-effect term, and
``G = I`` for the residual. With ``S = Sigma^-1``, ``Phi = (X'SX)^-1`` (lme4's vcov),

* ``P_r = -X'S G_r S X``, ``Q_rs = X'S G_r S G_s S X``,
  ``K_rs = tr(G_r S G_s S)``,
* ``IE2_rs = K_rs - 2 tr(Phi Q_rs) + tr(Phi P_r Phi P_s)``, ``W = 2 IE2^-1``,
* ``U = sum_rs W_rs (Q_rs - P_r Phi P_s)``, adjusted ``Phi_A = Phi + 2 Phi U Phi``,
* for a contrast ``L`` (one row here): ``A1``, ``A2`` from ``Theta Phi P_r Phi`` and the
  df ``4 + (q + 2) / (q rho - 1)`` (``Lb_ddf``, transcribed below).

Here ``G_r = Z E_r Z'`` with ``E_r`` a pattern on one factor's block of the random
effects, so everything is computed from ``q x q`` and ``n x q`` products (``S`` by the
Woodbury identity through the engine's ``Lambda``), never an ``n x n`` matrix; the dense
``Z`` limits the method to ``MAX_RANDOM_EFFECTS`` random effects.

References
----------
Kenward, M. G., & Roger, J. H. (1997). Small sample inference for fixed effects from
restricted maximum likelihood. *Biometrics, 53*, 983-997.
Halekoh, U., & Højsgaard, S. (2014). A Kenward-Roger approximation and parametric
bootstrap methods for tests in linear mixed models - the R package pbkrtest. *Journal of
Statistical Software, 59*(9).
R equivalent: ``lmerTest::contest1D(fit, L, ddf = "Kenward-Roger")``.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg

from pipeline.errors import NotEstimableError
from pipeline.labels import advised
from pipeline.models.engine import Problem

#: Largest number of random effects (columns of the dense Z) the method is run for.
MAX_RANDOM_EFFECTS = 6000


def _design(problem: Problem, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                           list[np.ndarray]]:
    """Dense ``Z`` (n x q), the block-diagonal ``Lambda`` (q x q) and the ``E_r``."""
    lams = problem.lambdas(np.asarray(theta, dtype=float))
    blocks, lam_blocks, offsets = [], [], []
    at = 0
    for fac, lam in zip(problem.factors, lams, strict=True):
        g, k = fac.n_levels, fac.k
        zf = np.zeros((problem.n, g * k))
        rows = np.arange(problem.n)
        for j in range(k):
            zf[rows, fac.codes * k + j] = fac.z[:, j]
        blocks.append(zf)
        lam_blocks.append(np.kron(np.eye(g), lam))
        offsets.append(at)
        at += g * k
    z = np.hstack(blocks)
    lam_full = linalg.block_diag(*lam_blocks)
    patterns = []
    for fac, start in zip(problem.factors, offsets, strict=True):
        g, k = fac.n_levels, fac.k
        for term in fac.terms:
            # pbkrtest: VarCorr's lower triangle per term, column-major
            for b_ in range(len(term)):
                for a_ in range(b_, len(term)):
                    ee = np.zeros((k, k))
                    ee[term[a_], term[b_]] = ee[term[b_], term[a_]] = 1.0
                    e = np.zeros((at, at))
                    e[start:start + g * k, start:start + g * k] = np.kron(np.eye(g), ee)
                    patterns.append(e)
    return z, lam_full, patterns


def adjusted_vcov(problem: Problem, theta: np.ndarray, sigma2: float,
                  vcov: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """pbkrtest's ``vcovAdj``: ``Phi_A`` and the ``P_r`` and ``W`` that ``Lb_ddf`` needs.

    ``vcov`` is lme4's ``vcov`` of the REML fit at ``theta`` (``Phi``).
    """
    q_total = sum(f.n_levels * f.k for f in problem.factors)
    if q_total > MAX_RANDOM_EFFECTS:
        raise NotEstimableError(advised(
            f"Kenward-Roger df: {q_total} random effects, more than the "
            f"{MAX_RANDOM_EFFECTS} the method is computed for here",
            "set model.df_method: satterthwaite"))
    x = problem.x
    z, lam, patterns = _design(problem, theta)
    # S Y = (Y - Z Lambda A^-1 Lambda' Z' Y) / sigma2, A = Lambda' Z'Z Lambda + I
    zl = z @ lam
    a = zl.T @ zl + np.eye(lam.shape[0])
    chol = linalg.cho_factor(a, lower=True)

    def s_times(y: np.ndarray) -> np.ndarray:
        return (y - zl @ linalg.cho_solve(chol, zl.T @ y)) / sigma2

    tt = s_times(x)                         # S X
    t2 = s_times(tt)                        # S S X
    sz = s_times(z)                         # S Z
    c, c2 = z.T @ tt, z.T @ t2              # Z'SX, Z'SSX
    k1, k2 = z.T @ sz, sz.T @ sz            # Z'SZ, Z'SSZ
    # tr(S S) from the Woodbury form: (n - 2 tr(H) + tr(H H)) / sigma2^2 with
    # H = Z Lambda A^-1 Lambda' Z', tr(H^m) = tr((A^-1 Lambda'Z'Z Lambda)^m)
    m = linalg.cho_solve(chol, zl.T @ zl)
    tr_ss = (problem.n - 2.0 * np.trace(m) + float(np.sum(m * m.T))) / sigma2 ** 2
    r_count = len(patterns) + 1            # the residual's G = I last
    ec = [e @ c for e in patterns]          # E_r Z'SX
    ek = [e @ k1 for e in patterns]         # E_r Z'SZ
    pp = [-(c.T @ e_c) for e_c in ec] + [-(tt.T @ tt)]

    def qq(r: int, s: int) -> np.ndarray:
        res = r_count - 1
        if r < res and s < res:
            return ec[r].T @ k1 @ ec[s]
        if r < res:
            return ec[r].T @ c2
        if s < res:
            return c2.T @ ec[s]
        return tt.T @ t2

    def ktrace(r: int, s: int) -> float:
        res = r_count - 1
        if r < res and s < res:
            return float(np.sum(ek[r] * ek[s].T))
        if r < res:
            return float(np.sum(patterns[r] * k2))
        if s < res:
            return float(np.sum(patterns[s] * k2))
        return float(tr_ss)

    phi = np.asarray(vcov, dtype=float)
    ie2 = np.empty((r_count, r_count))
    q_mats: dict[tuple[int, int], np.ndarray] = {}
    for r in range(r_count):
        for s in range(r, r_count):
            q_mats[r, s] = qq(r, s)
            ie2[r, s] = ie2[s, r] = (ktrace(r, s) - 2.0 * float(np.sum(phi * q_mats[r, s]))
                                     + float(np.sum((phi @ pp[r]) * (pp[s] @ phi))))
    values = np.linalg.eigvalsh(ie2)
    w = 2.0 * (np.linalg.inv(ie2) if np.min(np.abs(values)) > 1e-10
               else np.linalg.pinv(ie2))
    w = (w + w.T) / 2.0
    u = np.zeros_like(phi)
    for r in range(r_count):
        for s in range(r, r_count):
            term = w[r, s] * (q_mats[r, s] - pp[r] @ phi @ pp[s])
            u += term if r == s else term + term.T
    return phi + 2.0 * phi @ u @ phi, pp, w


def contrast_df(l_row: np.ndarray, vcov: np.ndarray, pp: list[np.ndarray],
                w: np.ndarray) -> float:
    """pbkrtest's ``Lb_ddf`` for one contrast (``q = 1``)."""
    l_ = np.asarray(l_row, dtype=float).reshape(1, -1)
    theta = l_.T @ np.linalg.solve(l_ @ vcov @ l_.T, l_)
    tv = theta @ vcov
    a1 = a2 = 0.0
    for i in range(len(pp)):
        for j in range(i, len(pp)):
            e = 1.0 if i == j else 2.0
            ui = tv @ pp[i] @ vcov
            uj = tv @ pp[j] @ vcov
            a1 += e * w[i, j] * float(np.trace(ui)) * float(np.trace(uj))
            a2 += e * w[i, j] * float(np.sum(ui * uj.T))
    q = 1.0
    b = (a1 + 6.0 * a2) / (2.0 * q)
    g = ((q + 1.0) * a1 - (q + 4.0) * a2) / ((q + 2.0) * a2)
    c1 = g / (3.0 * q + 2.0 * (1.0 - g))
    c2 = (q - g) / (3.0 * q + 2.0 * (1.0 - g))
    c3 = (q + 2.0 - g) / (3.0 * q + 2.0 * (1.0 - g))
    v0 = 1.0 + c1 * b
    v1 = 1.0 - c2 * b
    v2 = 1.0 - c3 * b
    v0 = 0.0 if abs(v0) < 1e-10 else v0
    ratio = 1.0 if abs(1.0 - a2 / q) < 1e-14 and abs(v1) < 1e-14 else (1.0 - a2 / q) / v1
    rho = ratio ** 2 * v0 / v2 / q
    return float(4.0 + (q + 2.0) / (q * rho - 1.0))


def kenward_roger(problem: Problem, theta: np.ndarray, sigma2: float,
                  vcov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted covariance of the fixed effects and each coefficient's df (REML fits)."""
    adj, pp, w = adjusted_vcov(problem, theta, sigma2, vcov)
    p = problem.p
    df = np.array([contrast_df(np.eye(p)[j], np.asarray(vcov, dtype=float), pp, w)
                   for j in range(p)])
    return adj, df
