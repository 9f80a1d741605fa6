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
    LOG_2PI,
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


def _whiten(S: jax.Array, rhs: jax.Array):
    r"""``(L^{-1} rhs, log|S|)`` for the lower Cholesky factor :math:`L` of ``S`` (D, D).

    Everything the elements need from :math:`S^{-1}` is a product of whitened blocks
    (:math:`X^\top S^{-1} Y = (L^{-1}X)^\top (L^{-1}Y)`), so one factorisation and one
    triangular solve serve all of them. Under ``vmap`` LAPACK is called once per matrix, which
    dominated the run time for scalar observations; ``D = 1`` therefore uses a square root.
    """
    if S.shape[-1] == 1:
        root = jnp.sqrt(S[0, 0])
        return rhs / root, 2.0 * jnp.log(root)
    chol = jnp.linalg.cholesky(S)
    return jsl.solve_triangular(chol, rhs, lower=True), 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def _filter_element(a: StateSpaceArrays, y, mask, num_aug: int):
    r"""Packed element :math:`[A_t | C_t | J_t | b_t | \eta_t]` (N, 3N + 2(1+K)) for ``t >= 1``.

    ``a`` pairs step t-1's F, Q, c with step t's H, R, d. With :math:`L L^\top = S_t`,
    :math:`U = L^{-1} H_t Q_{t-1}`, :math:`V = L^{-1} H_t F_{t-1}`, :math:`w = L^{-1} e_t`:
    :math:`A_t = F - U^\top V`, :math:`b_t = c + U^\top w`, :math:`C_t = Q - U^\top U`,
    :math:`\eta_t = V^\top w`, :math:`J_t = V^\top V`.
    """
    F, Q, c = a.transition, a.transition_cov, a.transition_offset
    n = F.shape[0]
    Hm, Rm, ym = _masked_observation(a.observation, a.observation_cov, a.observation_offset, y, mask)
    HQ = Hm @ Q
    S = symmetrize(HQ @ Hm.T + Rm)
    white, _ = _whiten(S, jnp.concatenate([HQ, Hm @ F, (ym - Hm @ c)[:, None]], axis=1))
    U, V, w = white[:, :n], white[:, n : 2 * n], white[:, 2 * n :]
    UV = U.T @ jnp.concatenate([V, w, U], axis=1)
    A, b0, C = F - UV[:, :n], c + UV[:, n], symmetrize(Q - UV[:, n + 1 :])
    VV = V.T @ jnp.concatenate([V, w], axis=1)
    J, eta0 = symmetrize(VV[:, :n]), VV[:, n]
    pad = jnp.zeros((n, num_aug - 1), F.dtype)
    return jnp.concatenate([A, C, J, b0[:, None], pad, eta0[:, None], pad], axis=1)


def _unpack_filter(x):
    """Split a packed filter element into ``(A, C, J, b, eta)``."""
    n = x.shape[-2]
    num_aug = (x.shape[-1] - 3 * n) // 2
    cuts = (n, 2 * n, 3 * n, 3 * n + num_aug)
    return jnp.split(x, cuts, axis=-1)


@jax.custom_jvp
def _inverse(M: jax.Array) -> jax.Array:
    """``M^{-1}`` (LU with partial pivoting) with the plain derivative ``-M^{-1} dM M^{-1}``.

    The custom rule keeps the gradient down to matrix products; differentiating through the
    LU factorisation itself made compiling ``jax.grad`` of the filter about twice as slow.
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
    because the associative scan's slicing and interleaving is traced once per array and level;
    one array instead of five roughly halves the compile time.
    """
    A1, C1, J1, b1, e1 = _unpack_filter(earlier)
    A2, C2, J2, b2, e2 = _unpack_filter(later)
    n = A1.shape[0]
    M = jnp.eye(n, dtype=A1.dtype) + C1 @ J2
    Minv = 1.0 / M if n == 1 else _inverse(M)  # scalar state (local level): a division
    X = A2 @ (Minv @ jnp.concatenate([A1, C1, b1 + C1 @ e2], axis=1))
    A, C, b = X[:, :n], symmetrize(X[:, n : 2 * n] @ A2.T + C2), X[:, 2 * n :] + b2
    JAb = J2 @ jnp.concatenate([A1, b1], axis=1)
    rhs = jnp.concatenate([JAb[:, :n], e2 - JAb[:, n:]], axis=1)
    Z = A1.T @ (Minv.T @ rhs)
    J, eta = symmetrize(Z[:, :n] + J1), Z[:, n:] + e1
    return jnp.concatenate([A, C, J, b, eta], axis=1)


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
    first = jnp.concatenate([zero, f_cov0, zero, f_mean0, jnp.zeros_like(f_mean0)], axis=1)
    num_aug = mean0.shape[1]
    rest = jax.vmap(lambda s, y_t, m_t: _filter_element(at(s), y_t, m_t, num_aug))(previous, y[1:], mask[1:])
    elems = jnp.concatenate([first[None], rest], axis=0)
    _, covs, _, means, _ = _unpack_filter(jax.lax.associative_scan(jax.vmap(_filter_combine), elems))
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

    innov, S, info, log_norm = jax.vmap(lambda s, *rest: _innovation(at(s), *rest))(current, p_means, p_covs, y, mask)
    return FilterResult(p_means, p_covs, f_means, f_covs, innov, S, info, log_norm)


def _innovation(a: StateSpaceArrays, mean, cov, y, mask):
    """Innovation matrix, its covariance, information and log normaliser of one step.

    The quantities of :func:`tsssm.kernels.kalman._update` (same masking), computed with one
    whitening solve because they are evaluated for all steps at once.
    """
    Hm, Rm, ym = _masked_observation(a.observation, a.observation_cov, a.observation_offset, y, mask)
    target = jnp.concatenate([ym[:, None], jnp.zeros((ym.shape[0], mean.shape[1] - 1), ym.dtype)], axis=1)
    innovation = target - Hm @ mean
    S = symmetrize(Hm @ (cov @ Hm.T) + Rm)
    white, log_det = _whiten(S, innovation)
    log_norm = -0.5 * (jnp.sum(mask) * LOG_2PI + log_det)
    return innovation, S, white.T @ white, log_norm


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
    r"""Packed backward element :math:`[E_t | L_t | g_t] = [L_t^\top | H_t^\top S_t^{-1} H_t | H_t^\top S_t^{-1} v_t]`.

    With :math:`W_t = H_t^\top S_t^{-1} H_t`, :math:`L_t = F_t(I - K_t H_t) = F_t(I - P_{t|t-1} W_t)`.
    """
    Hm = a.observation * mask[:, None].astype(S.dtype)
    n = Hm.shape[1]
    white, _ = _whiten(S, jnp.concatenate([Hm, innov], axis=1))
    X = white[:, :n].T @ white
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
