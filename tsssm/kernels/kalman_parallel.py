r"""Associative-scan (time-parallel) Kalman filter and smoother.

Drop-in versions of :func:`tsssm.kernels.kalman.kalman_filter`,
:func:`tsssm.kernels.kalman.log_likelihood` and :func:`tsssm.kernels.kalman.rts_smoother` with the
same signatures and result types, built on :func:`jax.lax.associative_scan` following
Särkkä & García-Fernández (2021), "Temporal parallelization of Bayesian smoothers",
IEEE Trans. Automatic Control 66(1). The model, the masking of missing entries and the diffuse
(augmented) initialisation are those of :mod:`tsssm.kernels.kalman`; read its module docstring
first.

**When to use it.** The sequential filter does :math:`O(T)` dependent steps; these versions do
:math:`O(T)` total work (about 2-4 times more floating-point operations) in :math:`O(\log T)`
dependent levels. That pays off only where many cores can run one level at once: long series
(tens of thousands of steps and more) on a GPU/TPU. On a small CPU (the 2-core development box)
the sequential scan is usually faster and compiles much faster: the associative scan is traced
:math:`\approx 2\log_2 T` times and each trace holds batched LU solves. Keep it opt-in, and for
short series or many series (vmap over the series instead) prefer the sequential kernels.

**Filter.** For :math:`t \ge 1` the element :math:`a_t = (A_t, b_t, C_t, \eta_t, J_t)` describes
:math:`p(x_t \mid x_{t-1}, y_t) = N(A_t x_{t-1} + b_t, C_t)` and the likelihood
:math:`p(y_t \mid x_{t-1}) \propto N_I(x_{t-1}; \eta_t, J_t)` (information form):

.. math::

    S_t &= H_t Q_{t-1} H_t^\top + R_t, \qquad K_t = Q_{t-1} H_t^\top S_t^{-1}, \qquad
    e_t = y_t - d_t - H_t c_{t-1}, \\
    A_t &= (I - K_t H_t) F_{t-1}, \qquad b_t = c_{t-1} + K_t e_t, \qquad
    C_t = (I - K_t H_t) Q_{t-1} (I - K_t H_t)^\top + K_t R_t K_t^\top, \\
    \eta_t &= F_{t-1}^\top H_t^\top S_t^{-1} e_t, \qquad
    J_t = F_{t-1}^\top H_t^\top S_t^{-1} H_t F_{t-1}.

The first element is the filtered prior, :math:`a_0 = (0, m_{0|0}, P_{0|0}, 0, 0)`, computed by the
ordinary measurement update. Elements combine (``i`` earlier, ``j`` later) as

.. math::

    M &= I + C_i J_j, \\
    A_{ij} &= A_j M^{-1} A_i, \qquad b_{ij} = A_j M^{-1} (b_i + C_i \eta_j) + b_j, \qquad
    C_{ij} = A_j M^{-1} C_i A_j^\top + C_j, \\
    \eta_{ij} &= A_i^\top M^{-\top} (\eta_j - J_j b_i) + \eta_i, \qquad
    J_{ij} = A_i^\top M^{-\top} J_j A_i + J_i,

and the prefix combination up to ``t`` holds the filtered moments in its ``(b, C)``. The only
inverses are :math:`S_t^{-1}` (Cholesky) and :math:`M^{-1}` (one LU per combination, reused for
:math:`M^{-\top}`). :math:`M` is always invertible: :math:`C_i J_j` is similar to the PSD
:math:`C_i^{1/2} J_j C_i^{1/2}`, so every eigenvalue of :math:`M` is at least 1, whatever the rank
of :math:`Q` or of the predicted covariances. No predicted covariance is ever inverted, so singular
:math:`Q` (deterministic states), unit roots and the exact-diffuse start :math:`P_0 = 0` work.
Limitation: :math:`S_t` above uses :math:`Q_{t-1}`, not the predicted covariance, so observed
entries need :math:`H_t Q_{t-1} H_t^\top + R_t` positive definite; this holds whenever the
observed block of :math:`R_t` is (missing entries are masked as in the sequential filter, which
makes their rows of :math:`S_t` the identity).

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
import jax.scipy.linalg as jsl

from tsssm.kernels.kalman import (
    FilterResult,
    InitialState,
    Moments,
    StateSpaceArrays,
    _augmented_initial,
    _collapse,
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
    r"""Element :math:`(A_t, b_t, C_t, \eta_t, J_t)` for ``t >= 1``; ``a`` pairs step t-1's F, Q, c with step t's H, R, d."""
    F, Q, c = a.transition, a.transition_cov, a.transition_offset
    Hm, Rm, ym = _masked_observation(a.observation, a.observation_cov, a.observation_offset, y, mask)
    resid = ym - Hm @ c
    HQ = Hm @ Q
    S = symmetrize(HQ @ Hm.T + Rm)
    chol = jnp.linalg.cholesky(S)
    gain = jsl.cho_solve((chol, True), HQ).T  # Q H^T S^{-1}
    IKH = jnp.eye(Q.shape[0], dtype=Q.dtype) - gain @ Hm
    A = IKH @ F
    b0 = c + gain @ resid
    C = symmetrize(IKH @ Q @ IKH.T + gain @ Rm @ gain.T)
    HF = Hm @ F
    eta0 = HF.T @ jsl.cho_solve((chol, True), resid)
    J = symmetrize(HF.T @ jsl.cho_solve((chol, True), HF))
    pad = jnp.zeros((F.shape[0], num_aug - 1), F.dtype)
    return A, jnp.concatenate([b0[:, None], pad], axis=1), C, jnp.concatenate([eta0[:, None], pad], axis=1), J


def _filter_combine(earlier, later):
    r"""Associative operator :math:`a_i \otimes a_j` on one pair of filter elements (module docstring)."""
    A1, b1, C1, e1, J1 = earlier
    A2, b2, C2, e2, J2 = later
    n, num_aug = b1.shape
    lu = jsl.lu_factor(jnp.eye(n, dtype=C1.dtype) + C1 @ J2)
    X = jsl.lu_solve(lu, jnp.concatenate([A1, b1 + C1 @ e2, C1], axis=1))
    XA, Xb, XC = X[:, :n], X[:, n : n + num_aug], X[:, n + num_aug :]
    A = A2 @ XA
    b = A2 @ Xb + b2
    C = symmetrize(A2 @ XC @ A2.T + C2)
    Z = jsl.lu_solve(lu, jnp.concatenate([e2 - J2 @ b1, J2 @ A1], axis=1), trans=1)
    eta = A1.T @ Z[:, :num_aug] + e1
    J = symmetrize(A1.T @ Z[:, num_aug:] + J1)
    return A, b, C, eta, J


def _filtered_moments(arrays: StateSpaceArrays, init: InitialState, y, mask):
    """Filtered augmented means (T, N, 1+K) and covariances (T, N, N) by the associative scan."""
    num_steps = y.shape[0]
    current, previous, at = _step_arrays(arrays, num_steps)
    mean0, cov0 = _augmented_initial(init)
    a0 = at(tuple(None if s is None else s[0] for s in current))
    f_mean0, f_cov0, *_ = _update(mean0, cov0, y[0], mask[0], a0.observation, a0.observation_cov, a0.observation_offset)
    n = cov0.shape[0]
    zero = jnp.zeros((n, n), cov0.dtype)
    first = (zero, f_mean0, f_cov0, jnp.zeros_like(f_mean0), zero)
    first = tuple(x[None] for x in first)
    if num_steps == 1:
        return first[1], first[2]
    num_aug = mean0.shape[1]
    rest = jax.vmap(lambda s, y_t, m_t: _filter_element(at(s), y_t, m_t, num_aug))(previous, y[1:], mask[1:])
    elems = tuple(jnp.concatenate([f, r], axis=0) for f, r in zip(first, rest))
    _, means, covs, _, _ = jax.lax.associative_scan(jax.vmap(_filter_combine), elems)
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
        Observations (T, D); entries where ``mask`` is False are ignored (may be NaN-free garbage).
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

    def update(s, m, P, y_t, m_t):
        a = at(s)
        _, _, innov, S, info, log_norm = _update(
            m, P, y_t, m_t, a.observation, a.observation_cov, a.observation_offset
        )
        return innov, S, info, log_norm

    innov, S, info, log_norm = jax.vmap(update)(current, p_means, p_covs, y, mask)
    return FilterResult(p_means, p_covs, f_means, f_covs, innov, S, info, log_norm)


def log_likelihood(arrays: StateSpaceArrays, init: InitialState, y: jax.Array, mask: jax.Array) -> jax.Array:
    r"""Exact (diffuse) log-likelihood of ``y`` (T, D) from the associative-scan filter.

    .. math::

        \log L = \sum_t \ell_t - \tfrac12\left(G_{00} - G_{0\delta} G_{\delta\delta}^{-1}
                 G_{\delta 0} + \log|G_{\delta\delta}|\right) + \tfrac{K}{2}\log 2\pi,
        \qquad G = \sum_t V_t^\top S_t^{-1} V_t,

    the same quantity as :func:`tsssm.kernels.kalman.log_likelihood` (same arguments). Under
    ``jax.jit`` the unused per-step outputs of :func:`kalman_filter` are dropped by the compiler.

    Returns
    -------
    jax.Array
        Scalar log-likelihood.
    """
    result = kalman_filter(arrays, init, y, mask)
    return diffuse_log_likelihood(jnp.sum(result.information, axis=0), jnp.sum(result.log_norm))


def _smoother_element(a: StateSpaceArrays, pred_cov, innov, S, mask):
    r"""Backward element :math:`(E_t, g_t, L_t) = (L_t^\top, H_t^\top S_t^{-1} v_t, H_t^\top S_t^{-1} H_t)`."""
    Hm = a.observation * mask[:, None].astype(S.dtype)
    chol = jnp.linalg.cholesky(S)
    Sinv_H = jsl.cho_solve((chol, True), Hm)
    gain = pred_cov @ Sinv_H.T
    L = a.transition @ (jnp.eye(pred_cov.shape[0], dtype=S.dtype) - gain @ Hm)
    g = Hm.T @ jsl.cho_solve((chol, True), innov)
    W = symmetrize(Hm.T @ Sinv_H)
    return L.T, g, W


def _smoother_combine(later, earlier):
    r"""Backward operator: ``later`` is the suffix from t+1, ``earlier`` the element at t.

    :math:`E = E_t E_{t+1:}`, :math:`g = E_t g_{t+1:} + g_t`, :math:`L = E_t L_{t+1:} E_t^\top + L_t`.
    """
    E2, g2, W2 = later
    E1, g1, W1 = earlier
    return E1 @ E2, E1 @ g2 + g1, symmetrize(E1 @ W2 @ E1.T + W1)


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
    _, r_prev, N_prev = jax.lax.associative_scan(jax.vmap(_smoother_combine), elems, reverse=True)
    P = result.predicted_cov
    means = result.predicted_mean + P @ r_prev
    covs = symmetrize(P - P @ N_prev @ P)
    total = jnp.sum(result.information, axis=0)
    total = jnp.broadcast_to(total, (num_steps,) + total.shape)
    return _collapse(means, covs, total)
