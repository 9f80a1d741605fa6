r"""Kalman filter, smoother and simulation smoother for linear-Gaussian state-space models.

The model, with a leading time axis on every system array (or none, for a time-invariant array):

.. math::

    y_t &= H_t x_t + d_t + \varepsilon_t, \qquad \varepsilon_t \sim N(0, R_t) \\
    x_{t+1} &= F_t x_t + c_t + \eta_t, \qquad \eta_t \sim N(0, Q_t) \\
    x_0 &= m_0 + B\,\delta + \xi, \qquad \xi \sim N(0, P_0), \quad \delta \sim \text{flat}

``mask[t, i] = False`` marks :math:`y_{t,i}` as missing: its row of :math:`H_t` and
:math:`R_t` drop out of the update exactly, so partially observed vectors are handled exactly.

**Diffuse initialisation (augmented filter).** The columns of :math:`B` (``InitialState.diffuse``,
shape ``(N, K)``) span the directions with an improper flat prior. Every state mean is affine in
:math:`\delta`, so the filter carries a mean *matrix* with ``1 + K`` columns: column 0 is the mean
at :math:`\delta = 0`, columns ``1..K`` its sensitivity to :math:`\delta` (de Jong's augmented
Kalman filter). The covariances do not depend on :math:`\delta`. Each step adds
:math:`V_t^\top S_t^{-1} V_t` to an information matrix :math:`G` (``V_t`` the ``D x (1+K)``
innovation matrix), and integrating :math:`\delta` out against the flat prior gives

.. math::

    \log L = \sum_t \ell_t - \tfrac12\left(G_{00} - G_{0\delta} G_{\delta\delta}^{-1} G_{\delta 0}
             + \log|G_{\delta\delta}|\right) + \tfrac{K}{2}\log 2\pi,

with :math:`\ell_t = -\tfrac12(n_t \log 2\pi + \log|S_t|)`. This is the exact diffuse
log-likelihood of Durbin & Koopman (2012, sec. 7.2) without the constants of the observations
used up by the diffuse states (e.g. -632.5456 on the Nile data at the textbook estimates).
Conditional on the data seen so far, :math:`\delta \sim N(-G_{\delta\delta}^{-1} G_{\delta 0},
G_{\delta\delta}^{-1})`: :func:`collapse_predicted`, :func:`collapse_filtered` and
:func:`rts_smoother` use this to return the ordinary moments.

All functions are pure JAX, jit- and vmap-friendly, and compute in the dtype of their inputs
(float64 under :func:`tsssm._config.float64`). The private step functions (``_update``,
``_predict``, ``_masked_observation``, ``_time_step``, ...) are shared with
:mod:`tsssm.kernels.kalman_parallel`: change their signatures in both places.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from tsssm.kernels.linalg import spd_inverse, symmetrize

LOG_2PI = 1.8378770664093453


class StateSpaceArrays(NamedTuple):
    """System arrays; each may have a leading time axis of length T or none (time-invariant).

    ``transition`` F (N, N), ``transition_cov`` Q (N, N), ``transition_offset`` c (N,),
    ``observation`` H (D, N), ``observation_cov`` R (D, D), ``observation_offset`` d (D,).
    ``F_t, Q_t, c_t`` move the state from step t to step t + 1.
    """

    transition: jax.Array
    transition_cov: jax.Array
    transition_offset: jax.Array
    observation: jax.Array
    observation_cov: jax.Array
    observation_offset: jax.Array


_STATIC_NDIM = StateSpaceArrays(2, 2, 1, 2, 2, 1)


class InitialState(NamedTuple):
    """Prior of the first state: ``mean`` (N,), proper ``cov`` (N, N), ``diffuse`` directions (N, K)."""

    mean: jax.Array
    cov: jax.Array
    diffuse: jax.Array


class FilterResult(NamedTuple):
    """Everything the forward pass produces; ``K`` is the number of diffuse directions.

    Means are augmented matrices ``(..., N, 1 + K)`` (see the module docstring).
    ``predicted_*[t]`` is the state at step t given y before t; ``filtered_*[t]`` given y up to t.
    ``innovation`` (T, D, 1 + K) and ``innovation_cov`` (T, D, D) have missing entries zeroed
    (their covariance rows are set to the identity). ``information[t]`` is
    :math:`V_t^\\top S_t^{-1} V_t` and ``log_norm[t]`` is :math:`\\ell_t`.
    """

    predicted_mean: jax.Array
    predicted_cov: jax.Array
    filtered_mean: jax.Array
    filtered_cov: jax.Array
    innovation: jax.Array
    innovation_cov: jax.Array
    information: jax.Array
    log_norm: jax.Array


class Moments(NamedTuple):
    """Gaussian moments with a validity flag (False while the diffuse prior is not yet identified)."""

    mean: jax.Array
    cov: jax.Array
    valid: jax.Array


def _time_step(arrays: StateSpaceArrays, num_steps: int):
    """Split the arrays into the time-varying ones (scanned) and the time-invariant ones (closed over)."""
    varying = tuple(a.ndim == nd + 1 for a, nd in zip(arrays, _STATIC_NDIM))
    for a, nd in zip(arrays, _STATIC_NDIM):
        if a.ndim == nd + 1 and a.shape[0] != num_steps:
            raise ValueError(f"time axis of a system array has length {a.shape[0]}, expected {num_steps}")
    scanned = tuple(a if v else None for a, v in zip(arrays, varying))

    def at(sliced):
        return StateSpaceArrays(*(s if v else a for s, a, v in zip(sliced, arrays, varying)))

    return scanned, at


def _mm(a, b):
    """Matrix product as a broadcast multiply and sum (fused into a loop by XLA, not a library call)."""
    return jnp.sum(a[..., :, :, None] * b[..., None, :, :], axis=-2)


def _masked_observation(H, R, d, y, mask):
    """Zero the rows of missing entries: H and y rows vanish, R becomes the identity there.

    Missing entries of ``y`` may hold anything, NaN included.
    """
    m = mask.astype(H.dtype)
    Hm = H * m[:, None]
    Rm = R * (m[:, None] * m[None, :]) + jnp.diag(1.0 - m)
    ym = jnp.where(mask, y - d, 0.0)
    return Hm, Rm, ym


def _innovation_solver(S):
    """``(solve, log_det)`` for the innovation covariance S (D, D).

    A scalar division when D == 1 (the common univariate case: no LAPACK call inside the scan),
    a Cholesky factorisation otherwise.
    """
    if S.shape[0] == 1:
        return (lambda b: b / S[0, 0]), jnp.log(S[0, 0])
    chol = jnp.linalg.cholesky(S)
    return (lambda b: jsl.cho_solve((chol, True), b)), 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def _update(mean, cov, y, mask, H, R, d):
    """Measurement update of the augmented mean (N, 1+K) and covariance.

    Symmetric form :math:`P - K S K^\top` (as :math:`P - K (P H^\top)^\top`), re-symmetrised;
    in float64 it agrees with the Joseph form to round-off on every test model and costs a
    fraction of it inside the scan.
    """
    Hm, Rm, ym = _masked_observation(H, R, d, y, mask)
    num_aug = mean.shape[1]
    target = jnp.concatenate([ym[:, None], jnp.zeros((ym.shape[0], num_aug - 1), ym.dtype)], axis=1)
    innovation = target - _mm(Hm, mean)
    PHt = _mm(cov, Hm.T)
    S = symmetrize(_mm(Hm, PHt) + Rm)
    solve, log_det = _innovation_solver(S)
    gain = solve(PHt.T).T
    filtered_mean = mean + _mm(gain, innovation)
    filtered_cov = symmetrize(cov - _mm(gain, PHt.T))
    information = innovation.T @ solve(innovation)
    log_norm = -0.5 * (jnp.sum(mask) * LOG_2PI + log_det)
    return filtered_mean, filtered_cov, innovation, S, information, log_norm


def _predict(mean, cov, F, Q, c):
    """Time update of the augmented mean; the offset enters column 0 only."""
    predicted_mean = _mm(F, mean)
    predicted_mean = predicted_mean.at[:, 0].add(c)
    return predicted_mean, symmetrize(_mm(_mm(F, cov), F.T) + Q)


def _augmented_initial(init: InitialState):
    return jnp.concatenate([init.mean[:, None], init.diffuse], axis=1), init.cov


def kalman_filter(arrays: StateSpaceArrays, init: InitialState, y: jax.Array, mask: jax.Array) -> FilterResult:
    """Run the augmented Kalman filter over ``y`` (T, D) with observation mask (T, D).

    Returns the full :class:`FilterResult`; use :func:`log_likelihood` when only the
    likelihood is needed (it stores nothing per step).
    """
    return _filter_scan(arrays, _augmented_initial(init), y, mask)[1]


def _filter_scan(arrays: StateSpaceArrays, start, y, mask, keep=None):
    """The filter's scan from the augmented predicted ``start = (mean, cov)``.

    With ``keep`` (T,) bool, steps where it is False leave the carried state unchanged (padding
    of a fixed-shape window; their ``mask`` must be False). Returns ``((mean, cov), FilterResult)``
    where ``(mean, cov)`` is the prediction for the step after the last kept one.
    """
    scanned, at = _time_step(arrays, y.shape[0])

    def step(carry, xs):
        mean, cov = carry
        sliced, y_t, m_t, k_t = xs
        a = at(sliced)
        f_mean, f_cov, innov, S, info, log_norm = _update(
            mean, cov, y_t, m_t, a.observation, a.observation_cov, a.observation_offset
        )
        next_mean, next_cov = _predict(f_mean, f_cov, a.transition, a.transition_cov, a.transition_offset)
        if k_t is not None:
            next_mean, next_cov = jnp.where(k_t, next_mean, mean), jnp.where(k_t, next_cov, cov)
        out = FilterResult(mean, cov, f_mean, f_cov, innov, S, info, log_norm)
        return (next_mean, next_cov), out

    return jax.lax.scan(step, start, (scanned, y, mask, keep))


class FilterState(NamedTuple):
    """The filter between two stretches of data (streaming): the augmented predicted ``mean``
    (N, 1 + K) and ``cov`` (N, N) of the next step, and the ``information`` (1 + K, 1 + K) summed
    over every step so far."""

    mean: jax.Array
    cov: jax.Array
    information: jax.Array


def initial_filter_state(init: InitialState) -> FilterState:
    """The :class:`FilterState` before any data."""
    mean, cov = _augmented_initial(init)
    return FilterState(mean, cov, jnp.zeros((mean.shape[1], mean.shape[1]), cov.dtype))


def filter_window(arrays: StateSpaceArrays, state: FilterState, y, mask, keep) -> tuple[FilterState, jax.Array]:
    r"""Filter one fixed-shape window (W steps) from ``state``; per-step log predictive densities.

    Steps with ``keep`` False are padding (their ``mask`` must be False): they change nothing
    and get density 0. Filtering a series window by window, carrying the returned state, gives
    exactly the per-step :func:`predictive_log_density` of one pass over the whole series
    (NaN during the diffuse burn-in), because the augmented filter's state and the summed
    information are all that one step passes to the next.
    """
    (mean, cov), result = _filter_scan(arrays, (state.mean, state.cov), y, mask, keep)
    density = predictive_log_density(result, arrays, y, mask, state.information)
    return FilterState(mean, cov, state.information + jnp.sum(result.information, axis=0)), density


def diffuse_log_likelihood(information_sum: jax.Array, log_norm_sum: jax.Array) -> jax.Array:
    """Integrate the diffuse directions out of the summed information matrix (see module docstring)."""
    num_diffuse = information_sum.shape[0] - 1
    quad = information_sum[0, 0]
    if num_diffuse == 0:
        return log_norm_sum - 0.5 * quad
    G_dd = information_sum[1:, 1:]
    G_d0 = information_sum[1:, 0]
    chol = jnp.linalg.cholesky(symmetrize(G_dd))
    half = jsl.solve_triangular(chol, G_d0, lower=True)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
    return log_norm_sum - 0.5 * (quad - half @ half + log_det) + 0.5 * num_diffuse * LOG_2PI


class _LeanCarry(NamedTuple):
    """State of :func:`log_likelihood`'s scan (see its docstring)."""

    mean: jax.Array  # (N, 1 + K) augmented predicted mean
    cov: jax.Array  # (N, N) predicted covariance
    info_sum: jax.Array  # (1 + K, 1 + K)
    norm_sum: jax.Array
    collapsed: jax.Array  # bool: delta integrated into mean/cov, columns 1..K zero
    steady: jax.Array  # bool: the predicted covariance has converged


class _CollapsedCarry(NamedTuple):
    """State of the full updates after the diffuse vector is folded in (see :func:`log_likelihood`)."""

    mean: jax.Array  # (N,) predicted mean
    cov: jax.Array  # (N, N) predicted covariance
    quad: jax.Array  # sum of v' S^-1 v over the steps so far
    norm_sum: jax.Array  # sum of -0.5 (D_t log 2 pi + log det S_t)
    steady: jax.Array  # bool: the predicted covariance has converged


class _SteadyState(NamedTuple):
    """What the mean-only updates need once the covariance has converged (all entries observed)."""

    inv_S: jax.Array  # (D, D) inverse innovation covariance
    log_det_S: jax.Array
    gain: jax.Array  # (N, D) Kalman gain
    blocks: _SteadyBlock | None  # operators over a block of steps (None: step by step)


class _SteadyBlock(NamedTuple):
    r"""Operators that advance the steady-state mean recursion by ``b`` steps at once.

    With the steady gain :math:`K` the predicted mean follows the closed loop

    .. math::

        a_{t+1} = L a_t + G e_t + c, \qquad v_t = e_t - H a_t, \qquad
        L = F (I - K H), \quad G = F K, \quad e_t = y_t - d_t,

    so over a block of ``b`` steps starting at :math:`a_0`

    .. math::

        v_j = e_j - H L^j a_0 - \sum_{i<j} H L^{j-1-i} (G e_i + c), \qquad
        a_b = L^b a_0 + \sum_{i<b} L^{b-1-i} (G e_i + c).

    These are a few small matrix-vector products per block instead of ``b`` sequential steps
    (stacked: ``e`` and ``v`` are the block's ``b`` vectors of length D, flattened).
    """

    to_innovation: jax.Array  # (bD, N): rows H L^j
    convolution: jax.Array  # (bD, bD): lower block-Toeplitz, blocks H L^{j-1-i} G
    to_state: jax.Array  # (N, bD): blocks L^{b-1-i} G
    power: jax.Array  # (N, N): L^b
    offset_innovation: jax.Array  # (bD,): sum_{i<j} H L^{j-1-i} c
    offset_state: jax.Array  # (N,): sum_{i<b} L^{b-1-i} c


class _Stacked(NamedTuple):
    r"""Constant operands of the stacked univariate recursion (:func:`_stacked_step`).

    With one observed column :math:`h` (``H = h^\top``) and invariant ``F, Q``, the filter
    carries one ``(N, N + 2)`` array :math:`X = [P \mid a \mid k]`, with :math:`k = P h`, and one
    step is

    .. math::

        s = h^\top k + r, \quad v = y - d - h^\top a, \quad
        [P_f \mid a_f] = [P \mid a] - k\,[k^\top \mid -v] / s, \\
        X' = F\,[P_f \mid a_f]\; \begin{bmatrix} F^\top & 0 & F^\top h \\ 0 & 1 & 0 \end{bmatrix}
             + [Q \mid c \mid Q h],

    so that :math:`X' = [F P_f F^\top + Q \mid F a_f + c \mid P' h]`: two fused products a step
    instead of separate ones for the gain, the mean and the covariance. XLA:CPU then emits few
    enough kernels for the loop body to run them inline on the calling thread (see
    :func:`_chunks`), about twice as fast for 13 states.
    """

    right: jax.Array  # (N + 1, N + 2)
    offset: jax.Array  # (N, N + 2); column N holds the state offset c


def _stacked_operands(F, Q, h, c) -> _Stacked:
    N = F.shape[0]
    right = jnp.zeros((N + 1, N + 2), F.dtype).at[:N, :N].set(F.T).at[:N, N + 1].set(F.T @ h).at[N, N].set(1.0)
    return _Stacked(right, jnp.concatenate([Q, c[:, None], (Q @ h)[:, None]], axis=1))


def _stacked_step(stacked, F, h, r, ops: _Stacked, y_t, observed, d_t):
    r"""One step of the stacked univariate recursion: ``(X', v^2 / s, log s)`` (see :class:`_Stacked`).

    A missing observation (``observed`` False) leaves :math:`[P \mid a]` unfiltered and adds
    nothing (``s = 1``, ``v = 0``).
    """
    N = F.shape[0]
    proj = jnp.sum(h[:, None] * stacked[:, N:], axis=0)  # [h'a, h'k]
    k = stacked[:, N + 1]
    s = jnp.where(observed, proj[1] + r, 1.0)
    v = jnp.where(observed, y_t - d_t - proj[0], 0.0)
    row = jnp.concatenate([jnp.where(observed, k, 0.0), -v[None]]) / s
    filtered = stacked[:, : N + 1] - k[:, None] * row[None, :]
    return _mm(_mm(F, filtered), ops.right) + ops.offset, v * v / s, jnp.log(s)


def _steady_block(F, H, c, gain, size: int) -> _SteadyBlock:
    """:class:`_SteadyBlock` for a block of ``size`` steps (powers of L by doubling)."""
    N, D = gain.shape
    closed = F - F @ gain @ H
    powers, top = jnp.eye(N, dtype=F.dtype)[None], closed  # [L^0 .. L^{n-1}] and L^n
    while powers.shape[0] < size + 1:
        powers, top = jnp.concatenate([powers, top @ powers]), top @ top
    powers = powers[: size + 1]
    G = F @ gain
    impulse = jnp.einsum("dn,knm,me->kde", H, powers[:size], G)  # H L^k G, k = 0..b-1
    lag = jnp.arange(size)[:, None] - 1 - jnp.arange(size)[None, :]  # j - 1 - i
    convolution = jnp.where((lag >= 0)[:, :, None, None], impulse[jnp.clip(lag, 0)], 0.0)
    through = jnp.cumsum(powers[:size] @ c, axis=0)  # row j: sum_{k<=j} L^k c
    before = jnp.concatenate([jnp.zeros((1, N), F.dtype), through[:-1]])  # row j: sum_{k<j} L^k c
    return _SteadyBlock(
        to_innovation=jnp.einsum("dn,knm->kdm", H, powers[:size]).reshape(size * D, N),
        convolution=convolution.transpose(0, 2, 1, 3).reshape(size * D, size * D),
        to_state=jnp.einsum("knm,md->nkd", powers[size - 1 :: -1], G).reshape(N, size * D),
        power=powers[size],
        offset_innovation=(before @ H.T).reshape(size * D),
        offset_state=through[-1],
    )


def _steady_block_size(chunk: int, obs_dim: int) -> int:
    """Largest divisor of ``chunk`` whose block keeps the convolution at most 32 x 32 (for D <= 32)."""
    return max(b for b in range(1, chunk + 1) if chunk % b == 0 and b * obs_dim <= max(32, obs_dim))


def _collapse_carry(mean, cov, info_sum):
    """Fold the posterior of delta (given the data so far) into the mean and covariance.

    Afterwards the diffuse columns are zero and stay zero, so the information about delta stops
    changing; the final :func:`diffuse_log_likelihood` of the summed information is unchanged
    by the collapse (the later innovations are exactly the collapsed filter's).
    """
    delta_mean, delta_cov, valid = _delta_posterior(info_sum)
    sens = mean[:, 1:]  # already zero once folded
    folded_mean = jnp.zeros_like(mean).at[:, 0].set(mean[:, 0] + sens @ delta_mean)
    folded_cov = symmetrize(cov + sens @ delta_cov @ sens.T)
    return jnp.where(valid, folded_mean, mean), jnp.where(valid, folded_cov, cov), valid


#: Steps per inner scan of :func:`log_likelihood` without the steady-state switch.
PLAIN_CHUNK = 16


#: The steady-state switch of :func:`log_likelihood` takes the covariance as converged when one
#: step changes no entry by more than this fraction of its largest entry.
STEADY_TOLERANCE = 1e-12


def _converged(next_cov, cov, observed) -> jax.Array:
    """True when a fully observed step moved the predicted covariance by round-off only."""
    change = jnp.max(jnp.abs(next_cov - cov))
    return jnp.all(observed) & (change <= STEADY_TOLERANCE * jnp.max(jnp.abs(next_cov)))


def _chunks(xs, chunk: int):
    """Split the leading time axis of every array in ``xs`` into ``(num_chunks, chunk, ...)``.

    The tail is padded with zeros; a zero (False) mask makes the padded steps missing, so they
    add nothing to the likelihood. Scanning over chunks with an inner scan per chunk keeps the
    buffers each inner loop touches small: XLA:CPU then runs the loop body's kernels one after
    the other on the calling thread instead of handing each to its thread pool, which costs
    microseconds per step in reverse mode (where the body reads the stored forward pass).
    """
    num_steps = jax.tree_util.tree_leaves(xs)[0].shape[0]
    num_chunks = -(-num_steps // chunk)
    pad = num_chunks * chunk - num_steps

    def split(x):
        x = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)]) if pad else x
        return x.reshape((num_chunks, chunk) + x.shape[1:])

    return jax.tree_util.tree_map(split, xs)


def log_likelihood(
    arrays: StateSpaceArrays,
    init: InitialState,
    y: jax.Array,
    mask: jax.Array,
    *,
    steady_state: bool = True,
    chunk: int = 32,
) -> jax.Array:
    """Exact (diffuse) log-likelihood of ``y`` (T, D); a lean scan that stores nothing per step.

    With ``steady_state=True`` (the default) and time-invariant ``F, Q, H, R`` (the offsets may
    vary), the filter runs over chunks of ``chunk`` steps. Once the diffuse vector is identified
    (and folded into the state) and the predicted covariance has converged (max change below
    ``STEADY_TOLERANCE`` of its largest entry), a chunk without missing entries takes cheap mean-only updates
    with the steady-state gain (whole blocks of steps per matrix product, see
    :class:`_SteadyBlock`, when the state offset ``c`` is constant); a chunk with a missing entry
    goes back to full updates until the covariance converges again. This is statsmodels'
    steady-state switch; the result differs from the full recursion only by the converged
    covariance's round-off. Once the filter is steady and every remaining step is observed, all
    the remaining blocks are taken at once: only their block-to-block mean recursion stays
    sequential.

    **Derivatives** of this function (``jax.grad``, ``jax.jvp``, ...) are those of the full
    recursion (``steady_state=False``): under differentiation the value is the full recursion's
    too. The switch's branches and loops would compile 5-10x slower in reverse mode for no gain
    at the lengths fits see (``docs/dev/design.md``).

    Cost on the 2-core development box (LLT + seasonal 12, 13 states, 100,000 steps, about 3 ms
    in all): the first chunk with the 13 diffuse columns, ~2,900 full updates at ~0.5 us each
    until the covariance converges (one observed column: the stacked recursion of
    :class:`_Stacked`), then the remaining ~97,000 steps in one go at ~7 ns each. A chunk of 32
    steps measured faster than 16, 48 or 64 (the first chunk and the convergence check are per
    chunk).
    """
    scanned, _ = _time_step(arrays, y.shape[0])
    if steady_state and all(scanned[i] is None for i in (0, 1, 3, 4)):  # F, Q, H, R invariant
        return _switched_log_likelihood(arrays, init, y, mask, chunk)
    return _lean_log_likelihood(arrays, init, y, mask, False, chunk)


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _switched_log_likelihood(arrays, init, y, mask, chunk):
    return _lean_log_likelihood(arrays, init, y, mask, True, chunk)


@_switched_log_likelihood.defjvp
def _full_recursion_derivative(chunk, primals, tangents):
    return jax.jvp(lambda *args: _lean_log_likelihood(*args, False, chunk), primals, tangents)


def _lean_log_likelihood(arrays, init, y, mask, switch: bool, chunk: int) -> jax.Array:
    """:func:`log_likelihood` with (``switch``) or without the steady-state switch."""
    scanned, at = _time_step(arrays, y.shape[0])
    mean0, cov0 = _augmented_initial(init)
    num_aug = mean0.shape[1]
    dtype = cov0.dtype
    D = y.shape[1]

    def full(carry: _LeanCarry, xs) -> _LeanCarry:
        sliced, y_t, m_t = xs
        a = at(sliced)
        f_mean, f_cov, _, _, info, log_norm = _update(
            carry.mean, carry.cov, y_t, m_t, a.observation, a.observation_cov, a.observation_offset
        )
        next_mean, next_cov = _predict(f_mean, f_cov, a.transition, a.transition_cov, a.transition_offset)
        # (with the switch this runs only until the diffuse vector is folded in: never steady)
        return carry._replace(mean=next_mean, cov=next_cov, info_sum=carry.info_sum + info, norm_sum=carry.norm_sum + log_norm)

    def collapsed(carry: _CollapsedCarry, xs, check: bool) -> _CollapsedCarry:
        """One full update once the diffuse vector is folded in: vector mean, no augmented columns.

        With ``check`` (the last step of a chunk) the covariance is re-symmetrised and tested for
        convergence; the steps before it skip both, which keeps the loop body small (round-off
        asymmetry over one chunk stays at the level of a few ulps).
        """
        sliced, y_t, m_t = xs
        a = at(sliced)
        Hm, Rm, ym = _masked_observation(a.observation, a.observation_cov, a.observation_offset, y_t, m_t)
        v = ym - jnp.sum(Hm * carry.mean, axis=1)
        PHt = _mm(carry.cov, Hm.T)
        solve, log_det = _innovation_solver(symmetrize(_mm(Hm, PHt) + Rm))
        gain = solve(PHt.T).T
        filtered_mean = carry.mean + jnp.sum(gain * v, axis=1)
        next_mean = jnp.sum(a.transition * filtered_mean, axis=1) + a.transition_offset
        next_cov = _mm(_mm(a.transition, carry.cov - _mm(gain, PHt.T)), a.transition.T) + a.transition_cov
        steady = jnp.asarray(False)
        if check:
            next_cov = symmetrize(next_cov)
            steady = _converged(next_cov, carry.cov, m_t)
        return _CollapsedCarry(
            mean=next_mean,
            cov=next_cov,
            quad=carry.quad + jnp.sum(v * solve(v)),
            norm_sum=carry.norm_sum - 0.5 * (jnp.sum(m_t) * LOG_2PI + log_det),
            steady=steady,
        )

    stacked_path = D == 1 and switch  # the collapsed updates as _Stacked steps
    if stacked_path:  # their operands, built once
        F, h, r = arrays.transition, arrays.observation[0], arrays.observation_cov[0, 0]
        N = F.shape[0]
        constant_c = arrays.transition_offset if scanned[2] is None else jnp.zeros(N, dtype)  # varying: set per step
        ops = _stacked_operands(F, arrays.transition_cov, h, constant_c)

    def stacked_run(carry: _CollapsedCarry, run_xs) -> _CollapsedCarry:
        """The collapsed recursion with one observed column, as :class:`_Stacked` steps."""

        def step(state, xs):
            stacked, sums = state
            sliced, y_t, m_t = xs
            a = at(sliced)
            step_ops = ops if scanned[2] is None else ops._replace(offset=ops.offset.at[:, N].set(a.transition_offset))
            stacked, quad, log_s = _stacked_step(stacked, F, h, r, step_ops, y_t[0], m_t[0], a.observation_offset[0])
            return (stacked, sums + jnp.stack([quad, -0.5 * (m_t[0] * LOG_2PI + log_s)])), None

        head = jax.tree_util.tree_map(lambda x: x[:-1], run_xs)
        last = jax.tree_util.tree_map(lambda x: x[-1], run_xs)
        start = jnp.concatenate([carry.cov, carry.mean[:, None], (carry.cov @ h)[:, None]], axis=1)
        state = jax.lax.scan(step, (start, jnp.zeros(2, dtype)), head)[0]
        before = state[0][:, :N]
        (stacked, sums), _ = step(state, last)
        next_cov = symmetrize(stacked[:, :N])
        return _CollapsedCarry(stacked[:, N], next_cov, sums[0], sums[1], _converged(next_cov, before, last[2]))

    def collapsed_run(carry: _CollapsedCarry, run_xs) -> _CollapsedCarry:
        """:func:`collapsed` over a run of steps, checking convergence at the last one."""
        if stacked_path:
            return stacked_run(carry, run_xs)
        head = jax.tree_util.tree_map(lambda x: x[:-1], run_xs)
        last = jax.tree_util.tree_map(lambda x: x[-1], run_xs)
        carry = jax.lax.scan(lambda c, x: (collapsed(c, x, False), None), carry, head)[0]
        return collapsed(carry, last, True)

    carry0 = _LeanCarry(
        mean0, cov0, jnp.zeros((num_aug, num_aug), dtype), jnp.zeros((), dtype), jnp.asarray(num_aug == 1), jnp.asarray(False)
    )
    xs = (scanned, y, mask)
    if not switch:
        # nested scans over short chunks: see _chunks
        chunk_body = lambda c, xs_c: (jax.lax.scan(lambda c, x: (full(c, x), None), c, xs_c)[0], None)
        final, _ = jax.lax.scan(chunk_body, carry0, _chunks(xs, PLAIN_CHUNK))
        return diffuse_log_likelihood(final.info_sum, final.norm_sum)

    # offsets c constant: whole blocks at once (_SteadyBlock); c varying: step by step
    block_size = _steady_block_size(chunk, D) if scanned[2] is None else None

    def steady_state_of(cov: jax.Array) -> _SteadyState:
        """Gain and innovation precision of the converged predicted covariance, all observed."""
        H, R = arrays.observation, arrays.observation_cov
        inv_S, log_det_S, _ = spd_inverse(symmetrize(H @ cov @ H.T + R))
        gain = cov @ H.T @ inv_S
        blocks = None if block_size is None else _steady_block(arrays.transition, H, arrays.transition_offset, gain, block_size)
        return _SteadyState(inv_S, log_det_S, gain, blocks)

    def block_run(mean, ops: _SteadyState, e, active):
        """Mean-only steady-state updates over whole blocks of ``block_size`` steps.

        ``e`` (num_blocks, block_size * D) are the data minus their offsets; blocks where
        ``active`` is False leave the mean unchanged. Only the block-to-block mean recursion is
        sequential: the products with the data of every block are taken at once, outside it.
        Returns the final mean and the innovations (num_blocks * block_size, D).
        """
        blk = ops.blocks
        drive = e @ blk.to_state.T + blk.offset_state

        def advance(mean, xs):
            u, on = xs
            return jnp.where(on, jnp.sum(blk.power * mean, axis=1) + u, mean), mean

        final_mean, starts = jax.lax.scan(advance, mean, (drive, active))
        v = e - e @ blk.convolution.T - starts @ blk.to_innovation.T - blk.offset_innovation
        return final_mean, v.reshape(-1, D)

    def block_data(sliced, y_run):
        """The data of a run of whole blocks minus their offsets, one row per block."""
        offset = arrays.observation_offset if sliced[5] is None else sliced[5]
        return (y_run - offset).reshape(-1, block_size * D)

    def fast_blocks(carry: _LeanCarry, ops: _SteadyState, chunk_xs):
        """Mean-only steady-state updates over a chunk, ``block_size`` steps per product."""
        e = block_data(chunk_xs[0], chunk_xs[1])
        final_mean, v = block_run(carry.mean[:, 0], ops, e, jnp.ones(e.shape[0], bool))
        return final_mean, jnp.sum((v @ ops.inv_S) * v)

    def fast_steps(carry: _LeanCarry, ops: _SteadyState, chunk_xs):
        """Mean-only steady-state updates over a chunk, one step at a time (varying offsets)."""

        def body(state, xs):
            mean, quad = state
            sliced, y_t, _ = xs
            a = at(sliced)
            v = y_t - a.observation_offset - a.observation @ mean
            next_mean = a.transition @ (mean + ops.gain @ v) + a.transition_offset
            return (next_mean, quad + v @ ops.inv_S @ v), None

        return jax.lax.scan(body, (carry.mean[:, 0], jnp.zeros((), dtype)), chunk_xs)[0]

    def with_steady_steps(carry: _LeanCarry, ops: _SteadyState, mean, quad, num_steps) -> _LeanCarry:
        return carry._replace(
            mean=carry.mean.at[:, 0].set(mean),  # the diffuse columns are zero by now
            info_sum=carry.info_sum.at[0, 0].add(quad),
            norm_sum=carry.norm_sum - 0.5 * num_steps * (D * LOG_2PI + ops.log_det_S),
        )

    def run_chunk(carry: _LeanCarry, ops: _SteadyState, chunk_xs):
        def fast_chunk(carry, ops):
            mean, quad = (fast_steps if block_size is None else fast_blocks)(carry, ops, chunk_xs)
            return with_steady_steps(carry, ops, mean, quad, chunk), ops

        def full_chunk(collapsing):
            def run(carry, ops):
                if collapsing:
                    carry = jax.lax.scan(lambda c, x: (full(c, x), None), carry, chunk_xs)[0]
                else:  # the diffuse columns are zero: the lean collapsed recursion
                    zero = jnp.zeros((), dtype)
                    start = _CollapsedCarry(carry.mean[:, 0], carry.cov, zero, zero, carry.steady)
                    lean = collapsed_run(start, chunk_xs)
                    carry = carry._replace(
                        mean=carry.mean.at[:, 0].set(lean.mean),
                        cov=lean.cov,
                        info_sum=carry.info_sum.at[0, 0].add(lean.quad),
                        norm_sum=carry.norm_sum + lean.norm_sum,
                        steady=lean.steady,
                    )
                if collapsing:  # fold delta in once the chunk's data identify it
                    mean, cov, valid = _collapse_carry(carry.mean, carry.cov, carry.info_sum)
                    carry = carry._replace(mean=mean, cov=cov, collapsed=valid)
                # the steady-state operators are recomputed when a full chunk ends converged
                return carry, jax.lax.cond(carry.steady, lambda: steady_state_of(carry.cov), lambda: ops)

            return run

        # 0: steady and fully observed -> mean-only; 1: full updates; 2: full updates, then an
        # attempt to fold the diffuse vector in (only until that has happened)
        branch = jnp.where(carry.steady & jnp.all(chunk_xs[2]), 0, jnp.where(carry.collapsed, 1, 2))
        return jax.lax.switch(branch, [fast_chunk, full_chunk(False), full_chunk(True)], carry, ops)

    ops0 = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), jax.eval_shape(steady_state_of, cov0))
    chunked = _chunks(xs, chunk)
    num_chunks = chunked[1].shape[0]
    real = _chunks(jnp.ones(y.shape[0], bool), chunk)  # False on the padding of the last chunk
    # observed_from[i]: every step from chunk i to the end is fully observed
    chunk_observed = jnp.all(chunked[2] | ~real[..., None], axis=(1, 2)).astype(jnp.int32)
    observed_from = jax.lax.cummin(chunk_observed, reverse=True).astype(bool)
    tail_possible = block_size is not None

    def keep_going(state):
        i, _, _, tail_from = state
        return (i < num_chunks) & (tail_from == num_chunks)

    def next_chunk(state):
        i, carry, ops, tail_from = state
        chunk_xs = jax.tree_util.tree_map(lambda x: x[i], chunked)
        if not tail_possible:
            return (i + 1, *run_chunk(carry, ops, chunk_xs), tail_from)
        tail_now = carry.steady & observed_from[i]
        carry, ops = jax.lax.cond(tail_now, lambda c, o: (c, o), lambda c, o: run_chunk(c, o, chunk_xs), carry, ops)
        return i + 1, carry, ops, jnp.where(tail_now, i, tail_from)

    start = (jnp.asarray(0), carry0, ops0, jnp.asarray(num_chunks))
    _, final, ops, tail_from = jax.lax.while_loop(keep_going, next_chunk, start)
    if tail_possible:

        def steady_tail(carry: _LeanCarry) -> _LeanCarry:
            """Every step from chunk ``tail_from`` on: steady and fully observed, all blocks at once."""
            sliced, y_all, _ = jax.tree_util.tree_map(lambda x: x.reshape((-1,) + x.shape[2:]), chunked)
            e = block_data(sliced, y_all)
            first_block = tail_from * (chunk // block_size)
            mean, v = block_run(carry.mean[:, 0], ops, e, jnp.arange(e.shape[0]) >= first_block)
            counted = (jnp.arange(v.shape[0]) >= first_block * block_size) & real.reshape(-1)
            quad = jnp.sum(jnp.where(counted[:, None], (v @ ops.inv_S) * v, 0.0))
            return with_steady_steps(carry, ops, mean, quad, jnp.sum(counted))

        final = jax.lax.cond(tail_from < num_chunks, steady_tail, lambda carry: carry, final)
    return diffuse_log_likelihood(final.info_sum, final.norm_sum)


def _delta_posterior(information: jax.Array):
    """Posterior of the diffuse vector from a summed information matrix (..., 1+K, 1+K).

    Returns ``(delta_mean (..., K), delta_cov (..., K, K), valid (...))``; ``valid`` is False
    while the information about ``delta`` is still singular (too few observations so far).
    """
    G_dd = symmetrize(information[..., 1:, 1:])
    G_d0 = information[..., 1:, 0]
    num_diffuse = G_dd.shape[-1]
    if num_diffuse == 0:
        batch = information.shape[:-2]
        return G_d0, G_dd, jnp.ones(batch, bool)
    # The inverse is taken of a matrix made safe where the rank check fails, so that gradients
    # stay finite (no NaN * 0 through the ``where`` of the callers).
    inv, _, valid = spd_inverse(G_dd)
    return -jnp.einsum("...ij,...j->...i", inv, G_d0), inv, valid


def _collapse(mean_aug: jax.Array, cov: jax.Array, information: jax.Array) -> Moments:
    """Combine augmented means (..., N, 1+K) with the posterior of delta into ordinary moments."""
    delta_mean, delta_cov, valid = _delta_posterior(information)
    sens = mean_aug[..., 1:]
    mean = mean_aug[..., 0] + jnp.einsum("...nk,...k->...n", sens, delta_mean)
    cov = cov + jnp.einsum("...nk,...kl,...ml->...nm", sens, delta_cov, sens)
    return Moments(mean, symmetrize(cov), valid)


def _exclusive_cumsum(x: jax.Array) -> jax.Array:
    return jnp.cumsum(x, axis=0) - x


def collapse_predicted(result: FilterResult, information_before=0.0) -> Moments:
    """One-step-ahead state moments given y before t; ``valid`` False during the diffuse burn-in.

    ``information_before`` is the information summed over data before ``result`` (streaming).
    """
    information = _exclusive_cumsum(result.information) + information_before
    return _collapse(result.predicted_mean, result.predicted_cov, information)


def collapse_filtered(result: FilterResult) -> Moments:
    """Filtered state moments given y up to t; ``valid`` False during the diffuse burn-in."""
    return _collapse(result.filtered_mean, result.filtered_cov, jnp.cumsum(result.information, axis=0))


def observation_moments(arrays: StateSpaceArrays, state: Moments) -> Moments:
    """Moments of :math:`y_t = H_t x_t + d_t + \\varepsilon_t` given state moments (T, N)."""
    num_steps = state.mean.shape[0]
    H = jnp.broadcast_to(arrays.observation, (num_steps,) + arrays.observation.shape[-2:])
    mean = jnp.einsum("tdn,tn->td", H, state.mean) + arrays.observation_offset
    cov = jnp.einsum("tdn,tnm,tem->tde", H, state.cov, H) + arrays.observation_cov
    return Moments(mean, symmetrize(cov), state.valid)


def predictive_log_density(
    result: FilterResult, arrays: StateSpaceArrays, y: jax.Array, mask: jax.Array, information_before=0.0
):
    r"""Per-step one-step-ahead log predictive density of the observed entries of y (T,).

    ``information_before``: as in :func:`collapse_predicted`.

    Steps where the diffuse prior is not yet identified get NaN; steps with no observation get 0.
    Summed over the valid steps this equals the diffuse log-likelihood plus
    :math:`\log|\det M|`, where :math:`M` maps the diffuse vector to the first observations
    that identify it (1 for a local level or a local linear trend).
    """
    pred = observation_moments(arrays, collapse_predicted(result, information_before))
    m = mask.astype(y.dtype)
    resid = jnp.where(mask, y - pred.mean, 0.0)
    cov = pred.cov * (m[:, :, None] * m[:, None, :]) + jax.vmap(jnp.diag)(1.0 - m)
    inv, log_det, _ = spd_inverse(symmetrize(cov))
    quad = jnp.einsum("ti,tij,tj->t", resid, inv, resid)
    logpdf = -0.5 * (jnp.sum(m, axis=-1) * LOG_2PI + log_det + quad)
    return jnp.where(pred.valid, logpdf, jnp.nan)


def rts_smoother(arrays: StateSpaceArrays, result: FilterResult, mask: jax.Array) -> Moments:
    r"""Smoothed state moments given all the data (Durbin & Koopman's backward recursion).

    Uses :math:`r_{t-1} = H_t^\top S_t^{-1} v_t + L_t^\top r_t`,
    :math:`N_{t-1} = H_t^\top S_t^{-1} H_t + L_t^\top N_t L_t` with
    :math:`L_t = F_t (I - K_t H_t)`, which never inverts a predicted covariance (so singular
    ones, e.g. from deterministic components, are fine). The recursion runs on the augmented
    means; the diffuse vector is then set to its posterior given all the data.
    """
    num_steps = result.log_norm.shape[0]
    scanned, at = _time_step(arrays, num_steps)

    def step(carry, xs):
        r, Nmat = carry
        sliced, pred_mean, pred_cov, innov, S, m_t = xs
        a = at(sliced)
        Hm = a.observation * m_t[:, None].astype(S.dtype)
        solve, _ = _innovation_solver(S)
        Sinv_H = solve(Hm)
        gain = pred_cov @ Sinv_H.T
        L = a.transition @ (jnp.eye(pred_cov.shape[0], dtype=S.dtype) - gain @ Hm)
        r_prev = Hm.T @ solve(innov) + L.T @ r
        N_prev = symmetrize(Hm.T @ Sinv_H + L.T @ Nmat @ L)
        smoothed_mean = pred_mean + pred_cov @ r_prev
        smoothed_cov = symmetrize(pred_cov - pred_cov @ N_prev @ pred_cov)
        return (r_prev, N_prev), (smoothed_mean, smoothed_cov)

    N = result.predicted_cov.shape[-1]
    r0 = jnp.zeros((N, result.predicted_mean.shape[-1]), result.predicted_cov.dtype)
    N0 = jnp.zeros((N, N), result.predicted_cov.dtype)
    xs = (scanned, result.predicted_mean, result.predicted_cov, result.innovation, result.innovation_cov, mask)
    _, (means, covs) = jax.lax.scan(step, (r0, N0), xs, reverse=True)
    total = jnp.sum(result.information, axis=0)
    total = jnp.broadcast_to(total, (num_steps,) + total.shape)
    return _collapse(means, covs, total)


def psd_sqrt(a: jax.Array) -> jax.Array:
    """A matrix ``L`` with ``L @ L.T == a`` for a symmetric PSD ``a`` (eigenvalues clipped at 0)."""
    if a.shape[-1] == 1:  # no LAPACK call for the common scalar case
        return jnp.sqrt(jnp.maximum(a, 0.0))
    eigval, eigvec = jnp.linalg.eigh(symmetrize(a))
    return eigvec * jnp.sqrt(jnp.maximum(eigval, 0.0))[..., None, :]


def simulate(key, arrays: StateSpaceArrays, init: InitialState, num_steps: int):
    """Draw ``(states (T, N), observations (T, D))`` from the model with the diffuse vector at 0."""
    scanned, at = _time_step(arrays, num_steps)
    key_init, key_steps = jax.random.split(key)
    N = init.mean.shape[0]
    x0 = init.mean + psd_sqrt(init.cov) @ jax.random.normal(key_init, (N,), init.cov.dtype)

    def step(x, xs):
        sliced, k = xs
        a = at(sliced)
        k_obs, k_state = jax.random.split(k)
        D = a.observation.shape[0]
        y = a.observation @ x + a.observation_offset
        y = y + psd_sqrt(a.observation_cov) @ jax.random.normal(k_obs, (D,), x.dtype)
        x_next = a.transition @ x + a.transition_offset
        x_next = x_next + psd_sqrt(a.transition_cov) @ jax.random.normal(k_state, (N,), x.dtype)
        return x_next, (x, y)

    _, (states, obs) = jax.lax.scan(step, x0, (scanned, jax.random.split(key_steps, num_steps)))
    return states, obs


def smoothed_mean(arrays: StateSpaceArrays, init: InitialState, y: jax.Array, mask: jax.Array) -> jax.Array:
    """Posterior mean of the states (T, N) given the observed entries of ``y``."""
    return rts_smoother(arrays, kalman_filter(arrays, init, y, mask), mask).mean


def simulation_smoother(key, arrays: StateSpaceArrays, init: InitialState, y, mask, num_draws: int):
    r"""Draws ``(num_draws, T, N)`` from the posterior of the states given the observed y.

    Durbin & Koopman's (2002) mean-correction method: simulate :math:`(x^+, y^+)` from the model,
    then :math:`\tilde x = \hat x(y) + x^+ - \hat x(y^+)`. It needs only smoothed means, so it is
    exact for singular covariances; the diffuse vector of :math:`x^+` may be 0 because the
    smoothing error does not depend on it. Fully missing steps (e.g. a forecast horizon appended
    as masked rows) give draws from the joint predictive distribution.
    """
    base = smoothed_mean(arrays, init, y, mask)

    def one(k):
        states, obs = simulate(k, arrays, init, y.shape[0])
        return base + states - smoothed_mean(arrays, init, obs, mask)

    return jax.vmap(one)(jax.random.split(key, num_draws))
