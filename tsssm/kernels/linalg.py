"""Small dense linear-algebra kernels shared by the kernels and the models (pure JAX).

:func:`spd_inverse` uses only elementwise JAX operations, no LAPACK custom call: jaxlib 0.10's
batched CPU LAPACK kernels (``ParallelBatchMap``) were seen to deadlock in this project's test
suite (a batched LU waiting forever on XLA's intra-op thread pool), and for the small matrices of
the Kalman kernels a Gauss-Jordan sweep is as fast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def symmetrize(a: jax.Array) -> jax.Array:
    """Return ``(a + a^T) / 2`` over the last two axes."""
    return 0.5 * (a + jnp.swapaxes(a, -1, -2))


def spd_inverse(a: jax.Array, rtol: float = 1e-9):
    r"""Inverse, log-determinant and rank check of symmetric positive semi-definite ``a`` (..., n, n).

    Gauss-Jordan elimination without pivoting, which is stable for positive definite matrices.
    The k-th pivot is the Schur complement :math:`1 / (a^{-1})_{kk}`; ``valid`` is False where a
    pivot is not above ``rtol`` times its diagonal entry (numerically singular). Where invalid,
    the returned inverse is that of the matrix with the failing pivots replaced by 1 (finite,
    so gradients through a ``where`` stay finite) and the log-determinant is meaningless.
    """
    n = a.shape[-1]
    eye = jnp.eye(n, dtype=a.dtype)
    diag = jnp.diagonal(a, axis1=-2, axis2=-1)

    def sweep(k, carry):
        work, inv, log_det, valid = carry
        onehot = (jnp.arange(n) == k).astype(a.dtype)
        pivot = jnp.einsum("...ij,i,j->...", work, onehot, onehot)
        d_k = diag @ onehot
        ok = pivot > rtol * jnp.maximum(d_k, jnp.finfo(a.dtype).tiny)
        safe = jnp.where(ok, pivot, 1.0)
        row_w = jnp.einsum("...ij,i->...j", work, onehot) / safe[..., None]
        row_i = jnp.einsum("...ij,i->...j", inv, onehot) / safe[..., None]
        column = jnp.einsum("...ij,j->...i", work, onehot) * (1.0 - onehot)
        keep = 1.0 - onehot
        work = work * keep[:, None] + onehot[:, None] * row_w[..., None, :] - column[..., :, None] * row_w[..., None, :]
        inv = inv * keep[:, None] + onehot[:, None] * row_i[..., None, :] - column[..., :, None] * row_i[..., None, :]
        return work, inv, log_det + jnp.log(safe), valid & ok

    batch = a.shape[:-2]
    start = (a, jnp.broadcast_to(eye, a.shape), jnp.zeros(batch, a.dtype), jnp.ones(batch, bool))
    _, inv, log_det, valid = jax.lax.fori_loop(0, n, sweep, start)
    return symmetrize(inv), log_det, valid


def solve_discrete_lyapunov(F, Q, num_doublings: int = 48):
    r"""Solve :math:`P = F P F^\top + Q` for a stable ``F`` by doubling (Smith's method).

    After ``k`` doublings :math:`P_k = \sum_{j < 2^k} F^j Q F^{j\top}`, so the error is of the order
    of :math:`\rho(F)^{2^k}`; 48 doublings reach machine precision for spectral radii up to
    :math:`1 - 10^{-12}`. Costs ``O(k n^3)`` (the Kronecker solve costs ``O(n^6)``), is exact for
    nilpotent ``F`` (pure MA) and differentiable (a fixed-length loop).
    """

    def body(_, carry):
        A, P = carry
        return A @ A, symmetrize(P + A @ P @ A.T)

    _, P = jax.lax.fori_loop(0, num_doublings, body, (F, symmetrize(Q)))
    return P
