r"""Associative-scan (time-parallel) Kalman filter and smoother.

Drop-in versions of :func:`tsssm.kernels.kalman.kalman_filter`,
:func:`tsssm.kernels.kalman.log_likelihood` and :func:`tsssm.kernels.kalman.rts_smoother` with the
same signatures and result types, built on :func:`jax.lax.associative_scan` following
Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers",
IEEE Trans. Automatic Control 66(1). The model, the masking of missing entries and the diffuse
(augmented) initialisation are those of :mod:`tsssm.kernels.kalman`; read its module docstring
first.

**When to use it.** The sequential filter does :math:`T` dependent steps; these versions do
:math:`O(T)` total work in :math:`O(\log T)` dependent levels, but each unit of that work is an
:math:`N \times N` element combination costing several Kalman steps (10-20 times the flops
for a 13-state model with 13 diffuse columns). That pays off only where many cores run one level
at once: long series (tens of thousands of steps and more) on a GPU/TPU. On a small CPU it loses,
and it compiles much more slowly, because :func:`jax.lax.associative_scan` traces the combination
about :math:`2\log_2 T` times. Measured with ``jax.jit`` on the 2-core development box (float64,
shared with other jobs; "steady" is the sequential default with its steady-state switch, "full"
its plain recursion):

===============================  ============  =================  ===================
function, model                  version       compile (wall)     warm run
===============================  ============  =================  ===================
log-lik., local level, T = 1e5   steady        0.7 s              3.1 ms
log-lik., local level, T = 1e5   full          0.2 s              2.1 ms
log-lik., local level, T = 1e5   parallel      3.1 s              6.8 ms
log-lik., 13 states, T = 1e4     steady        0.9 s              7-9 ms
log-lik., 13 states, T = 1e4     full          0.3 s              23 ms
log-lik., 13 states, T = 1e4     parallel      9-10 s             310-490 ms
value+grad, local level, 1e5     steady        3.5 s              27 ms
value+grad, local level, 1e5     full          0.7 s              240 ms
value+grad, local level, 1e5     parallel      10 s               54 ms
value+grad, 13 states, 1e4       steady        4.2 s              100 ms
value+grad, 13 states, 1e4       parallel      17 s               0.9-1.0 s
===============================  ============  =================  ===================

Keep it opt-in; on CPUs, for short series, and for many series (``vmap`` over the series instead
of over time) use :mod:`tsssm.kernels.kalman`.

**Filter.** For :math:`t \ge 1` the element :math:`a_t = (A_t, b_t, C_t, \eta_t, J_t)` describes
:math:`p(x_t \mid x_{t-1}, y_t) = N(A_t x_{t-1} + b_t, C_t)` and the likelihood
:math:`p(y_t \mid x_{t-1}) \propto N_I(x_{t-1}; \eta_t, J_t)` (information form):

.. math::

    S_t &= H_t Q_{t-1} H_t^\top + R_t, \qquad K_t = Q_{t-1} H_t^\top S_t^{-1}, \qquad
    e_t = y_t - d_t - H_t c_{t-1}, \\
    A_t &= (I - K_t H_t) F_{t-1}, \qquad b_t = c_{t-1} + K_t e_t, \qquad
    C_t = (I - K_t H_t) Q_{t-1}, \\
    \eta_t &= F_{t-1}^\top H_t^\top S_t^{-1} e_t, \qquad
    J_t = F_{t-1}^\top H_t^\top S_t^{-1} H_t F_{t-1},

all evaluated from one solve with :math:`S_t` (see :func:`_filter_element`).
The first element is the filtered prior, :math:`a_0 = (0, m_{0|0}, P_{0|0}, 0, 0)`, computed by the
ordinary measurement update. Elements combine (``i`` earlier, ``j`` later) as

.. math::

    M &= I + C_i J_j, \\
    A_{ij} &= A_j M^{-1} A_i, \qquad b_{ij} = A_j M^{-1} (b_i + C_i \eta_j) + b_j, \qquad
    C_{ij} = A_j M^{-1} C_i A_j^\top + C_j, \\
    \eta_{ij} &= A_i^\top M^{-\top} (\eta_j - J_j b_i) + \eta_i, \qquad
    J_{ij} = A_i^\top M^{-\top} J_j A_i + J_i,

and the prefix combination up to ``t`` holds the filtered moments in its ``(b, C)``. The only
inverses are :math:`S_t^{-1}` (Cholesky) and :math:`M^{-1}` (one LU with partial pivoting per
combination, reused for :math:`M^{-\top}`; a division for a scalar state). :math:`M` is always
invertible: :math:`C_i J_j` is similar to the PSD :math:`C_i^{1/2} J_j C_i^{1/2}`, so every
eigenvalue of :math:`M` is at least 1, whatever the rank of :math:`Q` or of the predicted
covariances. No predicted covariance is ever inverted, so singular :math:`Q` (deterministic
states), unit roots and the exact-diffuse start :math:`P_0 = 0` work.
Limitation: :math:`S_t` above uses :math:`Q_{t-1}`, not the predicted covariance, so observed
entries need :math:`H_t Q_{t-1} H_t^\top + R_t` positive definite (the sequential filter needs
:math:`H_t P_{t|t-1} H_t^\top + R_t`); this holds whenever the observed block of :math:`R_t` is
positive definite. Noise-free observations of noise-free states give NaN here.

**Diffuse augmentation.** :math:`b` and :math:`\eta` are linear in the prior mean, the offsets and
the data, and :math:`A, C, J` do not depend on them, so :math:`b_t` and :math:`\eta_t` are carried
as ``(N, 1 + K)`` matrices exactly like the sequential filter's mean matrix: column 0 holds the data
and offset part, columns ``1..K`` the diffuse directions (zero data, zero offsets; they enter through
:math:`m_{0|0}`). After the scan the predicted moments, innovations, :math:`S_t`, information and
``log_norm`` are computed for all ``t`` at once from the filtered moments (no recursion left), and
the likelihood is :func:`tsssm.kernels.kalman.diffuse_log_likelihood` of their sums.

**Smoother.** The paper's RTS elements :math:`E_t = P_{t|t} F_t^\top P_{t+1|t}^{-1}` need the
inverse of the predicted covariance, which is singular at least at the exact-diffuse start
(:math:`P_0 = 0`) and whenever :math:`Q` is. We therefore use the same element algebra
:math:`(E, g, L)`, with the composition

.. math::

    E_{ij} = E_i E_j, \qquad g_{ij} = E_i g_j + g_i, \qquad L_{ij} = E_i L_j E_i^\top + L_i

(``i`` earlier, ``j`` later, scanned backwards), on the backward information recursion of
Durbin & Koopman that :func:`tsssm.kernels.kalman.rts_smoother` runs:
:math:`r_{t-1} = H_t^\top S_t^{-1} v_t + L_t^\top r_t`,
:math:`N_{t-1} = H_t^\top S_t^{-1} H_t + L_t^\top N_t L_t`, :math:`r_{T-1} = 0, N_{T-1} = 0`, with
:math:`L_t = F_t(I - P_{t|t-1} H_t^\top S_t^{-1} H_t)`. Its elements are
:math:`E_t = L_t^\top`, :math:`g_t = H_t^\top S_t^{-1} v_t` (``(N, 1 + K)``, augmented) and
:math:`L_t^{el} = H_t^\top S_t^{-1} H_t`; the suffix combination from ``t`` gives
:math:`(r_{t-1}, N_{t-1})` and :math:`\hat x_t = m_{t|t-1} + P_{t|t-1} r_{t-1}`,
:math:`V_t = P_{t|t-1} - P_{t|t-1} N_{t-1} P_{t|t-1}`. No inverse other than :math:`S_t^{-1}`.

All functions are pure JAX (jit, vmap and grad work) and compute in the dtype of their inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from tsssm.kernels.kalman import (
    FilterResult,
    InitialState,
    Moments,
    StateSpaceArrays,
    _augmented_initial,
    _collapse,
    _innovation_solver,
    _masked_observation,
    _predict,
    _time_step,
    _update,
    diffuse_log_likelihood,
    symmetrize,
)

__all__ = ["kalman_filter", "log_likelihood", "rts_smoother"]

_NUM_TRANSITION_FIELDS = 3  # F, Q, c come first in StateSpaceArrays, then H, R, d


def _step_arrays(arrays: StateSpaceArrays, num_steps: int):
    """Per-step views for ``vmap`` over time.

    Returns ``(current, previous, at)``: ``current`` holds the time-varying arrays (``None`` for the
    time-invariant ones) for steps ``0..T-1``; ``previous`` pairs the transition arrays of step
    ``t - 1`` with the observation arrays of step ``t`` for ``t = 1..T-1``; ``at`` (from
    :func:`tsssm.kernels.kalman._time_step`) fills the time-invariant arrays back in.
    """
    scanned, at = _time_step(arrays, num_steps)
    previous = tuple(
        None if s is None else (s[:-1] if i < _NUM_TRANSITION_FIELDS else s[1:]) for i, s in enumerate(scanned)
    )
    return scanned, previous, at


def _filter_element(a: StateSpaceArrays, y, mask, num_aug: int):
    r"""Packed element :math:`[C_t | J_t | \eta_t | b_t | A_t]` (N, 3N + 2(1+K)) for ``t >= 1``.

    ``a`` pairs step t-1's F, Q, c with step t's H, R, d. One solve
    :math:`[X_Q | X_F | x_e] = S_t^{-1} [H Q | H F | e_t]` (Cholesky, or a division when D = 1,
    via :func:`tsssm.kernels.kalman._innovation_solver`) gives everything:
    :math:`A_t = F - (HQ)^\top X_F`, :math:`b_t = c + (HQ)^\top x_e`,
    :math:`C_t = Q - (HQ)^\top X_Q`, :math:`\eta_t = (HF)^\top x_e`, :math:`J_t = (HF)^\top X_F`.
    """
    F, Q, c = a.transition, a.transition_cov, a.transition_offset
    n = F.shape[0]
    Hm, Rm, ym = _masked_observation(a.observation, a.observation_cov, a.observation_offset, y, mask)
    HQ, HF = Hm @ Q, Hm @ F
    solve, _ = _innovation_solver(symmetrize(HQ @ Hm.T + Rm))
    X = solve(jnp.concatenate([HQ, HF, (ym - Hm @ c)[:, None]], axis=1))
    QX = HQ.T @ X  # [K H Q | K H F | K e]
    FX = HF.T @ X[:, n:]  # [J | eta]
    C, A, b0 = symmetrize(Q - QX[:, :n]), F - QX[:, n : 2 * n], c + QX[:, 2 * n]
    J, eta0 = symmetrize(FX[:, :n]), FX[:, n]
    pad = jnp.zeros((n, num_aug - 1), F.dtype)
    return jnp.concatenate([C, J, eta0[:, None], pad, b0[:, None], pad, A], axis=1)


def _unpack_filter(x):
    """Split a packed filter element ``[C | J | eta | b | A]`` into ``(C, J, eta, b, A)``.

    The order puts side by side the blocks that the combination multiplies by one matrix
    (``[J | eta]`` by ``C``, ``[b | A]`` by ``J``), which saves concatenations.
    """
    n = x.shape[-2]
    num_aug = (x.shape[-1] - 3 * n) // 2
    return jnp.split(x, (n, 2 * n, 2 * n + num_aug, 2 * n + 2 * num_aug), axis=-1)


@jax.custom_jvp
def _inverse(M: jax.Array) -> jax.Array:
    """``M^{-1}`` (LU with partial pivoting) with the derivative ``-M^{-1} dM M^{-1}``.

    The custom rule keeps the gradient to matrix products instead of differentiating through
    the LU factorisation (a smaller program to compile for ``jax.grad``).
    """
    return jnp.linalg.inv(M)


@_inverse.defjvp
def _inverse_jvp(primals, tangents):
    (M,), (dM,) = primals, tangents
    Minv = _inverse(M)
    return Minv, -Minv @ dM @ Minv


def _filter_combine(earlier, later):
    r"""Associative operator :math:`a_i \otimes a_j` on one pair of packed filter elements.

    :math:`M = I + C_i J_j` is inverted once and serves both :math:`M^{-1}` and
    :math:`M^{-\top}` (module docstring); its eigenvalues are at least 1, so the explicit inverse
    is well conditioned whenever :math:`C_i J_j` is moderate. Elements are packed into one array
    because the associative scan's slicing and interleaving is emitted once per array and level;
    one array instead of five cut the compile time of the scan by up to 40%.
    """
    C1, J1, e1, b1, A1 = _unpack_filter(earlier)
    C2, J2, e2, b2, A2 = _unpack_filter(later)
    n, num_aug = A1.shape[0], b1.shape[1]
    CJe = C1 @ later[:, n : 2 * n + num_aug]  # [C_i J_j | C_i eta_j]
    M = jnp.eye(n, dtype=A1.dtype) + CJe[:, :n]
    Minv = 1.0 / M if n == 1 else _inverse(M)  # scalar state (local level): a division
    X = (A2 @ Minv) @ jnp.concatenate([C1, b1 + CJe[:, n:], A1], axis=1)
    C, b, A = symmetrize(X[:, :n] @ A2.T + C2), X[:, n : n + num_aug] + b2, X[:, n + num_aug :]
    JbA = J2 @ earlier[:, 2 * n + num_aug :]  # [J_j b_i | J_j A_i]
    Z = (Minv @ A1).T @ jnp.concatenate([JbA[:, num_aug:], e2 - JbA[:, :num_aug]], axis=1)
    J, eta = symmetrize(Z[:, :n] + J1), Z[:, n:] + e1
    return jnp.concatenate([C, J, eta, b, A], axis=1)


def _filtered_moments(arrays: StateSpaceArrays, init: InitialState, y, mask):
    """Filtered augmented means (T, N, 1+K) and covariances (T, N, N) by the associative scan."""
    num_steps = y.shape[0]
    current, previous, at = _step_arrays(arrays, num_steps)
    mean0, cov0 = _augmented_initial(init)
    a0 = at(tuple(None if s is None else s[0] for s in current))
    f_mean0, f_cov0, *_ = _update(mean0, cov0, y[0], mask[0], a0.observation, a0.observation_cov, a0.observation_offset)
    if num_steps == 1:
        return f_mean0[None], f_cov0[None]
    zero = jnp.zeros_like(f_cov0)
    first = jnp.concatenate([f_cov0, zero, jnp.zeros_like(f_mean0), f_mean0, zero], axis=1)
    num_aug = mean0.shape[1]
    rest = jax.vmap(lambda s, y_t, m_t: _filter_element(at(s), y_t, m_t, num_aug))(previous, y[1:], mask[1:])
    elems = jnp.concatenate([first[None], rest], axis=0)
    covs, _, _, means, _ = _unpack_filter(jax.lax.associative_scan(jax.vmap(_filter_combine), elems))
    return means, covs


def kalman_filter(arrays: StateSpaceArrays, init: InitialState, y: jax.Array, mask: jax.Array) -> FilterResult:
    r"""Augmented Kalman filter by an associative scan over time.

    Same contract as :func:`tsssm.kernels.kalman.kalman_filter`. The filtered moments come from
    the prefix combinations of the elements :math:`(A_t, b_t, C_t, \eta_t, J_t)` (module
    docstring); then, for all ``t`` at once,

    .. math::

        m_{t|t-1} = F_{t-1} m_{t-1|t-1} + c_{t-1} e_0^\top, \quad
        P_{t|t-1} = F_{t-1} P_{t-1|t-1} F_{t-1}^\top + Q_{t-1}, \quad
        V_t = [y_t - d_t, 0] - H_t m_{t|t-1}, \quad S_t = H_t P_{t|t-1} H_t^\top + R_t,

    with :math:`(m_{0|-1}, P_{0|-1}) = ([m_0, B], P_0)`, information :math:`V_t^\top S_t^{-1} V_t`
    and :math:`\ell_t = -\tfrac12(n_t \log 2\pi + \log|S_t|)`, missing entries masked as in the
    sequential filter.

    Parameters
    ----------
    arrays : StateSpaceArrays
        System arrays, each with or without a leading time axis of length T.
    init : InitialState
        Prior of the first state: mean (N,), proper covariance (N, N), diffuse directions (N, K).
    y : jax.Array
        Observations (T, D); entries where ``mask`` is False are ignored (NaN allowed).
    mask : jax.Array
        Boolean (T, D), True where observed.

    Returns
    -------
    FilterResult
        Augmented predicted/filtered means (T, N, 1+K) and covariances (T, N, N), innovations
        (T, D, 1+K), innovation covariances (T, D, D) (identity rows for missing entries),
        information (T, 1+K, 1+K) and ``log_norm`` (T,).
    """
    num_steps = y.shape[0]
    f_means, f_covs = _filtered_moments(arrays, init, y, mask)
    current, previous, at = _step_arrays(arrays, num_steps)
    mean0, cov0 = _augmented_initial(init)
    if num_steps > 1:
        pred_rest = jax.vmap(lambda s, m, P: _predict(m, P, *at(s)[:3]))(previous, f_means[:-1], f_covs[:-1])
        p_means = jnp.concatenate([mean0[None], pred_rest[0]], axis=0)
        p_covs = jnp.concatenate([cov0[None], pred_rest[1]], axis=0)
    else:
        p_means, p_covs = mean0[None], cov0[None]

    def innovation(s, mean, cov, y_t, m_t):
        # The sequential measurement update; its filtered moments are unused and dropped by jit.
        a = at(s)
        return _update(mean, cov, y_t, m_t, a.observation, a.observation_cov, a.observation_offset)[2:]

    innov, S, info, log_norm = jax.vmap(innovation)(current, p_means, p_covs, y, mask)
    return FilterResult(p_means, p_covs, f_means, f_covs, innov, S, info, log_norm)


def log_likelihood(
    arrays: StateSpaceArrays,
    init: InitialState,
    y: jax.Array,
    mask: jax.Array,
    *,
    steady_state: bool = True,
    chunk: int = 32,
) -> jax.Array:
    r"""Exact (diffuse) log-likelihood of ``y`` (T, D) from the associative-scan filter.

    .. math::

        \log L = \sum_t \ell_t - \tfrac12\left(G_{00} - G_{0\delta} G_{\delta\delta}^{-1}
                 G_{\delta 0} + \log|G_{\delta\delta}|\right) + \tfrac{K}{2}\log 2\pi,
        \qquad G = \sum_t V_t^\top S_t^{-1} V_t,

    the same quantity as :func:`tsssm.kernels.kalman.log_likelihood`, with the same arguments.
    Under ``jax.jit`` the unused per-step outputs of :func:`kalman_filter` are dropped.

    Parameters
    ----------
    arrays, init, y, mask
        As for :func:`kalman_filter`.
    steady_state, chunk
        Accepted so that the two implementations can be swapped; ignored. They tune the
        sequential version's steady-state switch, which changes its result only by round-off;
        every step of the associative scan is a full update.

    Returns
    -------
    jax.Array
        Scalar log-likelihood.
    """
    del steady_state, chunk
    result = kalman_filter(arrays, init, y, mask)
    return diffuse_log_likelihood(jnp.sum(result.information, axis=0), jnp.sum(result.log_norm))


def _smoother_element(a: StateSpaceArrays, pred_cov, innov, S, mask):
    r"""Packed backward element :math:`[E_t | L_t | g_t] = [L_t^\top | H_t^\top S_t^{-1} H_t | H_t^\top S_t^{-1} v_t]`.

    With :math:`W_t = H_t^\top S_t^{-1} H_t`, :math:`L_t = F_t(I - K_t H_t) = F_t(I - P_{t|t-1} W_t)`.
    """
    Hm = a.observation * mask[:, None].astype(S.dtype)
    n = Hm.shape[1]
    solve, _ = _innovation_solver(S)
    X = Hm.T @ solve(jnp.concatenate([Hm, innov], axis=1))
    W, g = symmetrize(X[:, :n]), X[:, n:]
    L = a.transition - a.transition @ (pred_cov @ W)
    return jnp.concatenate([L.T, W, g], axis=1)


def _smoother_combine(later, earlier):
    r"""Backward operator: ``later`` is the suffix from t+1, ``earlier`` the element at t.

    :math:`E = E_t E_{t+1:}`, :math:`g = E_t g_{t+1:} + g_t`, :math:`L = E_t L_{t+1:} E_t^\top + L_t`.
    """
    n = later.shape[0]
    E1, W1 = earlier[:, :n], earlier[:, n : 2 * n]
    X = E1 @ later
    W = symmetrize(X[:, n : 2 * n] @ E1.T + W1)
    return jnp.concatenate([X[:, :n], W, X[:, 2 * n :] + earlier[:, 2 * n :]], axis=1)


def rts_smoother(arrays: StateSpaceArrays, result: FilterResult, mask: jax.Array) -> Moments:
    r"""Smoothed state moments given all the data, by a reverse associative scan.

    Same contract and output as :func:`tsssm.kernels.kalman.rts_smoother`: the backward
    information recursion :math:`(r_{t-1}, N_{t-1})` is computed for all ``t`` as suffix
    combinations of the elements :math:`(E_t, g_t, L_t) = (L_t^\top, H_t^\top S_t^{-1} v_t,
    H_t^\top S_t^{-1} H_t)` (module docstring), then

    .. math::

        \hat x_t = m_{t|t-1} + P_{t|t-1} r_{t-1}, \qquad
        V_t = P_{t|t-1} - P_{t|t-1} N_{t-1} P_{t|t-1},

    on the augmented means, and the diffuse vector is set to its posterior given all the data.
    No predicted covariance is inverted, so singular ones are fine.

    Parameters
    ----------
    arrays : StateSpaceArrays
        The system arrays the filter ran with.
    result : FilterResult
        Output of :func:`kalman_filter` (either implementation).
    mask : jax.Array
        Boolean (T, D), True where observed.

    Returns
    -------
    Moments
        Smoothed means (T, N), covariances (T, N, N) and ``valid`` (T,) (False if the diffuse
        directions are not identified by all the data).
    """
    num_steps = result.log_norm.shape[0]
    current, _, at = _step_arrays(arrays, num_steps)
    elems = jax.vmap(lambda s, P, v, S, m: _smoother_element(at(s), P, v, S, m))(
        current, result.predicted_cov, result.innovation, result.innovation_cov, mask
    )
    suffix = jax.lax.associative_scan(jax.vmap(_smoother_combine), elems, reverse=True)
    n = elems.shape[-2]
    N_prev, r_prev = suffix[..., n : 2 * n], suffix[..., 2 * n :]
    P = result.predicted_cov
    means = result.predicted_mean + P @ r_prev
    covs = symmetrize(P - P @ N_prev @ P)
    total = jnp.sum(result.information, axis=0)
    total = jnp.broadcast_to(total, (num_steps,) + total.shape)
    return _collapse(means, covs, total)
