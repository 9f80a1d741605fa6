r"""Exact discretisation of linear time-invariant SDEs over (possibly uneven) time gaps.

The continuous-time model

.. math::

    dx(t) = A\,x(t)\,dt + L\,dW(t), \qquad \operatorname{Cov}[dW] = Q_c\,dt,

observed at times :math:`t_0 < t_1 < \dots` has the exact discrete-time transition

.. math::

    x(t + \Delta) = F(\Delta)\,x(t) + \eta, \quad \eta \sim N(0, Q(\Delta)), \qquad
    F(\Delta) = e^{A\Delta}, \quad
    Q(\Delta) = \int_0^\Delta e^{As}\,L Q_c L^\top e^{A^\top s}\,ds .

:func:`van_loan` computes both from one matrix exponential of a ``2n x 2n`` block matrix
(Van Loan 1978): with

.. math::

    \exp\!\left(\begin{pmatrix}-A & L Q_c L^\top\\ 0 & A^\top\end{pmatrix}\Delta\right)
    = \begin{pmatrix}G_{11} & G_{12}\\ 0 & G_{22}\end{pmatrix},
    \qquad F = G_{22}^\top, \quad Q = F\,G_{12}.

:func:`expm` is a pure-JAX scaling-and-squaring Taylor exponential (no LAPACK call: batched LU
factorisations, which ``jax.scipy.linalg.expm`` uses under ``vmap``, deadlocked XLA's CPU thread
pool in this project, see ``docs/dev/design.md``); it is differentiable and vmappable. The
closed forms (:func:`brownian`, :func:`integrated_random_walk`, :func:`damped_rotation`) are the
cheap paths the models use; the tests check them against :func:`van_loan`.

Every function takes ``dt`` as a scalar or a vector of gaps ``(T,)`` and then returns arrays with
a leading axis ``(T, n, n)`` (the kernels' time axis).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsssm.kernels.linalg import symmetrize

#: Taylor degree after scaling to 1-norm <= 1: the truncation error is below 1/19! ~ 8e-18.
_TAYLOR_DEGREE = 18
#: Largest number of squarings (1-norms up to 2**60); fixed so that the loop is differentiable.
_MAX_SQUARINGS = 60
#: Largest number of gap doublings in :func:`van_loan` (|A| * gap up to 2**40 ~ 1e12).
_MAX_DOUBLINGS = 40


def _taylor(x: jax.Array) -> jax.Array:
    """Degree-18 Taylor polynomial of exp(x) by Horner's rule (accurate for 1-norms <= 1)."""
    eye = jnp.eye(x.shape[0], dtype=x.dtype)
    out = eye
    for k in range(_TAYLOR_DEGREE, 0, -1):  # I + X (I + X/2 (I + X/3 (...)))
        out = eye + (x @ out) / k
    return out


def _expm_one(a: jax.Array) -> jax.Array:
    norm = jnp.max(jnp.sum(jnp.abs(a), axis=0))
    squarings = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(norm, 1e-300))), 0, _MAX_SQUARINGS)
    out = _taylor(a * jnp.exp2(-squarings))

    def square(i, m):
        return jnp.where(i < squarings, m @ m, m)

    return jax.lax.fori_loop(0, _MAX_SQUARINGS, square, out)


def expm(a: jax.Array) -> jax.Array:
    """Matrix exponential of ``a`` (..., n, n) by scaling and squaring of a degree-18 Taylor series."""
    fn = _expm_one
    for _ in range(a.ndim - 2):
        fn = jax.vmap(fn)
    return fn(a)


def _over_gaps(fn, dt):
    """Apply ``fn(dt_scalar) -> (F, Q)`` to a scalar or, vectorised, to each entry of a vector."""
    dt = jnp.asarray(dt)
    if dt.ndim == 0:
        return fn(dt)
    return jax.vmap(fn)(dt)


def van_loan(A: jax.Array, L_Qc_L: jax.Array, dt) -> tuple[jax.Array, jax.Array]:
    r"""Exact discretisation ``(F, Q)`` of :math:`dx = A x\,dt + L\,dW` over the gap(s) ``dt``.

    Parameters
    ----------
    A : (n, n) drift matrix.
    L_Qc_L : (n, n) diffusion :math:`L Q_c L^\top` (covariance per unit time).
    dt : scalar or (T,) gaps (>= 0).

    Returns
    -------
    F, Q : (n, n) each, or (T, n, n) for a vector ``dt``.
    """
    n = A.shape[0]
    # Q is linear in the diffusion: scale it to unit norm so that only A and the gap set the size
    # of the block, and scale Q back at the end.
    scale = jnp.max(jnp.sum(jnp.abs(L_Qc_L), axis=0))
    scale = jnp.where(scale > 0, scale, 1.0)
    top = jnp.concatenate([-A, L_Qc_L / scale], axis=1)
    bottom = jnp.concatenate([jnp.zeros_like(A), A.T], axis=1)
    block = jnp.concatenate([top, bottom], axis=0)
    size = jnp.max(jnp.sum(jnp.abs(block), axis=0))

    def one(h):
        # The Van Loan step is taken over h / 2^k with |block| h / 2^k <= 1 (a plain Taylor series,
        # no squaring), then doubled back k times: F(2h) = F(h)^2, Q(2h) = F(h) Q(h) F(h)^T + Q(h),
        # sums of PSD terms. Exponentiating the block over the whole gap instead mixes e^{-Ah}
        # with e^{Ah} and F @ G12 cancels catastrophically for long gaps.
        doublings = jnp.clip(jnp.ceil(jnp.log2(jnp.maximum(size * h, 1e-300))), 0, _MAX_DOUBLINGS)
        G = _taylor(block * (h * jnp.exp2(-doublings)))
        F = G[n:, n:].T
        Q = symmetrize(F @ G[:n, n:])

        def double(i, carry):
            F, Q = carry
            doubled = (F @ F, symmetrize(F @ Q @ F.T + Q))
            return jax.tree_util.tree_map(lambda new, old: jnp.where(i < doublings, new, old), doubled, carry)

        F, Q = jax.lax.fori_loop(0, _MAX_DOUBLINGS, double, (F, Q))
        return F, Q * scale

    return _over_gaps(one, dt)


def brownian(q, dt) -> tuple[jax.Array, jax.Array]:
    r"""Brownian motion :math:`dx = \sqrt{q}\,dW`: :math:`F = 1`, :math:`Q = q\,\Delta` (1 x 1)."""
    dt = jnp.asarray(dt)
    Q = (q * dt)[..., None, None]
    return jnp.ones_like(Q), Q


def integrated_random_walk(q_level, q_slope, dt) -> tuple[jax.Array, jax.Array]:
    r"""Level :math:`\mu` and slope :math:`\nu` with :math:`d\mu = \nu\,dt + \sqrt{q_\mu}\,dW_1`,
    :math:`d\nu = \sqrt{q_\nu}\,dW_2`:

    .. math::

        F = \begin{pmatrix}1 & \Delta\\ 0 & 1\end{pmatrix}, \quad
        Q = \begin{pmatrix}q_\mu\Delta + q_\nu\Delta^3/3 & q_\nu\Delta^2/2\\
                           q_\nu\Delta^2/2 & q_\nu\Delta\end{pmatrix}.
    """
    dt = jnp.asarray(dt)
    one, zero = jnp.ones_like(dt), jnp.zeros_like(dt)
    F = jnp.stack([jnp.stack([one, dt], -1), jnp.stack([zero, one], -1)], -2)
    off = q_slope * dt**2 / 2.0
    Q = jnp.stack(
        [jnp.stack([q_level * dt + q_slope * dt**3 / 3.0, off], -1), jnp.stack([off, q_slope * dt], -1)], -2
    )
    return F, Q


def damped_rotation(q, frequency, decay, dt) -> tuple[jax.Array, jax.Array]:
    r"""Stochastic (damped) oscillator :math:`dc = (-\lambda I + \omega J)\,c\,dt + \sqrt{q}\,dW`,
    :math:`J = \begin{pmatrix}0 & 1\\ -1 & 0\end{pmatrix}`, :math:`W` 2-D:

    .. math::

        F = e^{-\lambda\Delta}\begin{pmatrix}\cos\omega\Delta & \sin\omega\Delta\\
            -\sin\omega\Delta & \cos\omega\Delta\end{pmatrix}, \quad
        Q = q\,\frac{1 - e^{-2\lambda\Delta}}{2\lambda}\,I_2

    (:math:`Q = q\,\Delta\,I_2` at :math:`\lambda = 0`). ``decay`` is :math:`\lambda \ge 0`,
    ``frequency`` :math:`\omega` in radians per unit time. With ``frequency = 0`` and one of the two
    coordinates this is the Ornstein-Uhlenbeck process (see :func:`ornstein_uhlenbeck`).
    """
    dt = jnp.asarray(dt)
    c, s = jnp.cos(frequency * dt), jnp.sin(frequency * dt)
    rho = jnp.exp(-decay * dt)
    F = rho[..., None, None] * jnp.stack([jnp.stack([c, s], -1), jnp.stack([-s, c], -1)], -2)
    var = q * _decay_integral(decay, dt)
    return F, var[..., None, None] * jnp.eye(2, dtype=F.dtype)


def ornstein_uhlenbeck(q, decay, dt) -> tuple[jax.Array, jax.Array]:
    r"""OU process :math:`dx = -\theta x\,dt + \sqrt{q}\,dW`: :math:`F = e^{-\theta\Delta}`,
    :math:`Q = q\,(1 - e^{-2\theta\Delta}) / (2\theta)` (1 x 1)."""
    dt = jnp.asarray(dt)
    F = jnp.exp(-decay * dt)[..., None, None]
    return F, (q * _decay_integral(decay, dt))[..., None, None]


def _decay_integral(decay, dt):
    r""":math:`\int_0^\Delta e^{-2\lambda s} ds = (1 - e^{-2\lambda\Delta}) / (2\lambda)`, stable as
    :math:`\lambda \to 0` (``-expm1(-x) / x`` with a series below 1e-8) and differentiable there."""
    x = 2.0 * decay * dt
    small = jnp.abs(x) < 1e-8
    safe = jnp.where(small, 1.0, x)
    ratio = jnp.where(small, 1.0 - x / 2.0, -jnp.expm1(-safe) / safe)
    return dt * ratio
