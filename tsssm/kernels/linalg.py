"""Small dense linear-algebra kernels shared by the models (pure JAX)."""

from __future__ import annotations

import jax

from tsssm.kernels.kalman import symmetrize


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
