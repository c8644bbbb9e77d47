"""Small matrices of every level at once, stored *level-last* (the engine's hot loop).

The deviance and its gradient need, for every client (tens of thousands of levels), the
same few operations on tiny matrices: ``Lambda' S_g Lambda``, 2 x 2 inverses, ``B_g Z'W_g``.
Stored the usual way, ``(G, a, b)``, each such product is either numpy's stacked
``matmul`` (a Python-free loop, but one tiny matrix at a time) or strided slices; both
were measured 2-3 times slower than this layout at 40k clients. Here a stack of ``a x b``
matrices is an array of shape ``(a, b, G)``: entry ``(i, j)`` of every level is one
contiguous vector of length ``G``, so

* a product of two stacks is ``a * b * c`` whole-vector multiply-adds (``k <= 3`` here),
* multiplying every level by the same small matrix (a Lambda template) on the left is one
  BLAS product over the reshaped ``(a, b * G)`` array,
* sums over levels (``sum_g X_g' Y_g``) are BLAS products of ``(m, G)`` rows,
* transposing every level (``swap``) is a free view, and
* sums over the clients of each therapist are one ``np.add.reduceat`` along the last axis
  (the clients are ordered by therapist, see ``Problem._structure``).

No compiled code: numpy only (numba is not in the environment).
"""

from __future__ import annotations

import numpy as np


def from_stacked(s: np.ndarray) -> np.ndarray:
    """``(G, a, b)`` -> level-last ``(a, b, G)`` (a contiguous copy)."""
    return np.ascontiguousarray(np.moveaxis(s, 0, -1))


def swap(x: np.ndarray) -> np.ndarray:
    """Every level transposed (a view)."""
    return np.swapaxes(x, 0, 1)


def left(lam: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``lam' X_g`` for every level: one BLAS product (``x`` is ``(k, ..., G)``)."""
    k = x.shape[0]
    out = lam.T @ np.ascontiguousarray(x).reshape(k, -1)
    return out.reshape((lam.shape[1], *x.shape[1:]))


def right(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``X_g lam`` for every level (``x`` is ``(a, k, G)``); zero entries of ``lam`` (a
    diagonal template, the common case) cost nothing."""
    a, k, g = x.shape
    out = np.zeros((a, lam.shape[1], g))
    for j in range(k):
        for b in range(lam.shape[1]):
            if lam[j, b] != 0.0:
                out[:, b] += lam[j, b] * x[:, j]
    return out


def congruent(lam: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``lam' S_g lam`` for every level."""
    return right(left(lam, s), lam)


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``A_g B_g`` for every level: ``a`` is ``(i, j, G)``, ``b`` is ``(j, ..., G)``
    (``b`` may carry a middle dimension, e.g. the ``m`` columns of ``Z'W``)."""
    ni, nj = a.shape[0], a.shape[1]
    out = np.empty((ni, *b.shape[1:]))
    tmp = np.empty(b.shape[1:])
    for i in range(ni):
        np.multiply(a[i, 0], b[0], out=out[i])
        for j in range(1, nj):
            np.multiply(a[i, j], b[j], out=tmp)
            out[i] += tmp
    return out


def add_identity(a: np.ndarray) -> np.ndarray:
    """``A_g + I`` in place; returns ``a``."""
    for i in range(a.shape[0]):
        a[i, i] += 1.0
    return a


def inv_logdet(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverses and log-determinants of SPD levels (closed form for 1 x 1 and 2 x 2;
    larger ones through numpy's stacked routines). A level that is not positive definite
    gives NaN or raises ``LinAlgError`` (the caller treats both as an infinite deviance)."""
    k = a.shape[0]
    if k == 1:
        return 1.0 / a, np.log(a[0, 0])
    if k == 2:
        det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
        inv = np.empty_like(a)
        np.divide(a[1, 1], det, out=inv[0, 0])
        np.divide(a[0, 0], det, out=inv[1, 1])
        np.divide(a[0, 1], det, out=inv[0, 1])
        inv[0, 1] *= -1.0
        inv[1, 0] = inv[0, 1]
        return inv, np.log(det)
    stacked = np.moveaxis(a, -1, 0)
    chol = np.linalg.cholesky(stacked)
    logdet = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    return from_stacked(np.linalg.inv(stacked)), logdet


def gram(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_g X_g' Y_g`` for ``x`` ``(k, m, G)`` and ``y`` ``(k, n, G)``: ``(m, n)``."""
    out = np.zeros((x.shape[1], y.shape[1]))
    for i in range(x.shape[0]):
        out += x[i] @ y[i].T
    return out


def level_sum(x: np.ndarray) -> np.ndarray:
    """``sum_g X_g``."""
    return x.sum(axis=-1)


def trace_sum(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sum_g X_g Y_g`` for ``x`` ``(a, j, G)`` and ``y`` ``(j, b, G)``: ``(a, b)``."""
    return np.einsum("ajg,jbg->ab", x, y)
