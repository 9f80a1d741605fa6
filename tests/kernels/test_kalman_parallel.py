"""The associative-scan filter/smoother (kalman_parallel) against the sequential one (kalman).

Both are exact algorithms for the same quantities, so they may differ only by rounding. Every
case compares all FilterResult fields, the log-likelihood and the smoothed moments; two cases (a
random time-varying model with missing entries and the Nile local level) also compare the
gradient of the log-likelihood with respect to every system array and the prior.

Tolerances: rtol 1e-9 on the log-likelihood; 1e-8 on the filter and smoother outputs and 1e-7 on
gradients, with absolute parts scaled by the largest entry of each array. Both algorithms are
exact, so they differ by float64 rounding only (~1e-16 per operation), amplified by the order of
summation, by well-conditioned solves (Cholesky of S_t; LU of I + C J, whose eigenvalues are >= 1)
and by the diffuse likelihood's cancellation G_00 - G_0d G_dd^-1 G_d0 (about 3 digits on the Nile
data). Observed relative differences of the log-likelihood are 5e-16..6e-14 on these cases and
3e-12 on a 13-state series of 10,000 steps; gradients differ by <= 2e-13. So 1e-9 leaves a wide
margin while any algorithmic slip (a wrong offset, mask row or time shift) moves the
log-likelihood by far more than 1e-6 relative.

Compile time dominates (the associative scan takes seconds to compile, its gradient ~10 s): each
model shape is compiled once per implementation as one jitted function returning filter, smoother
and log-likelihood; further cases (missing patterns, shifted offsets) reuse those shapes.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import tsssm._config
from tsssm.kernels import kalman as seq
from tsssm.kernels import kalman_parallel as par
from tsssm.kernels.kalman import InitialState, StateSpaceArrays


@pytest.fixture(autouse=True)
def _float64():
    with tsssm._config.float64():
        yield


def _bundle(module, **ll_options):
    def run(arrays, init, y, mask):
        result = module.kalman_filter(arrays, init, y, mask)
        smoothed = module.rts_smoother(arrays, result, mask)
        return result, smoothed, module.log_likelihood(arrays, init, y, mask, **ll_options)

    return jax.jit(run)


# The sequential oracle runs its full recursion: its steady-state switch (the default) agrees with
# it to round-off (tests/kernels/test_kalman_steady_state.py) and compiles 2-4 times slower.
PARALLEL = _bundle(par)
SEQUENTIAL = _bundle(seq, steady_state=False)
GRAD_PARALLEL = jax.jit(jax.grad(par.log_likelihood, argnums=(0, 1)))
GRAD_SEQUENTIAL = jax.jit(jax.grad(functools.partial(seq.log_likelihood, steady_state=False), argnums=(0, 1)))


def _close(actual, desired, rtol=1e-8, what=""):
    actual, desired = np.asarray(actual), np.asarray(desired)
    scale = max(1.0, float(np.max(np.abs(desired)))) if desired.size else 1.0
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=what)


def _sym(g):
    return 0.5 * (g + np.swapaxes(g, -1, -2))


def _compare(arrays, init, y, mask, grad=False):
    """Run both implementations and compare everything; return the (sequential) log-likelihood.

    ``grad=True`` also compares the gradient of the log-likelihood with respect to every system
    array and the prior (compiling a gradient of the associative scan costs ~10 s, so only some
    cases do).
    """
    y = jnp.asarray(y)
    mask = jnp.asarray(mask, bool)
    r_par, s_par, ll_par = PARALLEL(arrays, init, y, mask)
    r_seq, s_seq, ll_seq = SEQUENTIAL(arrays, init, y, mask)
    for name in seq.FilterResult._fields:
        _close(getattr(r_par, name), getattr(r_seq, name), what=name)
    assert np.isfinite(float(ll_seq))
    np.testing.assert_allclose(float(ll_par), float(ll_seq), rtol=1e-9)
    np.testing.assert_array_equal(np.asarray(s_par.valid), np.asarray(s_seq.valid))
    _close(s_par.mean, s_seq.mean, what="smoothed mean")
    _close(s_par.cov, s_seq.cov, what="smoothed cov")
    if grad:
        _compare_grads(GRAD_PARALLEL(arrays, init, y, mask), GRAD_SEQUENTIAL(arrays, init, y, mask))
    return float(ll_seq)


def _compare_grads(par_grads, seq_grads):
    (ga_par, gi_par), (ga_seq, gi_seq) = par_grads, seq_grads
    # Covariance arguments: only symmetric perturbations are meaningful (the two implementations
    # use different, equally valid, algebra for an asymmetric input), so compare symmetric parts.
    for name, gp, gs in zip(StateSpaceArrays._fields, ga_par, ga_seq, strict=True):
        gp, gs = np.asarray(gp), np.asarray(gs)
        if name in ("transition_cov", "observation_cov"):
            gp, gs = _sym(gp), _sym(gs)
        _close(gp, gs, rtol=1e-7, what=f"grad {name}")
    _close(gi_par.mean, gi_seq.mean, rtol=1e-7, what="grad init mean")
    _close(_sym(np.asarray(gi_par.cov)), _sym(np.asarray(gi_seq.cov)), rtol=1e-7, what="grad init cov")
    _close(gi_par.diffuse, gi_seq.diffuse, rtol=1e-7, what="grad init diffuse")


# ---------------------------------------------------------------- random stable models


def _random_model(rng, T, N, D, varying):
    """Random stable model; ``varying`` names the arrays that get a time axis."""

    def stable_F():
        a = rng.normal(size=(N, N))
        return 0.9 * a / np.max(np.abs(np.linalg.eigvals(a)))

    def spd(n, scale):
        b = rng.normal(size=(n, n))
        return scale * (b @ b.T / n + 0.1 * np.eye(n))

    makers = {
        "transition": stable_F,
        "transition_cov": lambda: spd(N, 0.5),
        "transition_offset": lambda: rng.normal(size=N),
        "observation": lambda: rng.normal(size=(D, N)),
        "observation_cov": lambda: spd(D, 0.3),
        "observation_offset": lambda: rng.normal(size=D),
    }
    out = {}
    for name, make in makers.items():
        out[name] = np.stack([make() for _ in range(T)]) if name in varying else make()
    return StateSpaceArrays(**{k: jnp.asarray(v) for k, v in out.items()})


def _simulate(arrays, init, T, seed):
    _, obs = seq.simulate(jax.random.key(seed), arrays, init, T)
    return obs


def _random_case():
    """N = 3, D = 2, T = 16, one diffuse direction; F, Q, c, R, d vary over time, H does not."""
    rng = np.random.default_rng(1)
    T, N, D = 16, 3, 2
    varying = ("transition", "transition_cov", "transition_offset", "observation_cov", "observation_offset")
    arrays = _random_model(rng, T, N, D, varying=varying)
    init = InitialState(jnp.asarray(rng.normal(size=N)), 0.5 * jnp.eye(N), jnp.asarray(rng.normal(size=(N, 1))))
    return arrays, init, np.array(_simulate(arrays, init, T, 2)), rng


@pytest.mark.parametrize("pattern", ["all_observed", "partial_and_full", "long_gap"])
def test_random_time_varying_missing_diffuse(pattern):
    arrays, init, y, rng = _random_case()
    T, D = y.shape
    mask = np.ones((T, D), bool)
    if pattern == "partial_and_full":
        mask[rng.random((T, D)) < 0.25] = False  # partially observed vectors
        mask[[3, 8, 9, T - 1]] = False  # fully missing steps, including the last
    elif pattern == "long_gap":
        mask[5:11] = False
        mask[0, 1] = False
    y[~mask] = np.nan  # missing entries may hold anything, NaN included
    _compare(arrays, init, y, mask, grad=pattern == "partial_and_full")


def test_offsets_matter():
    """A guard that the offsets are really exercised: the likelihood moves when c or d move."""
    arrays, init, y, _ = _random_case()
    mask = jnp.ones(y.shape, bool)
    ll = float(PARALLEL(arrays, init, y, mask)[2])
    for shifted in (
        arrays._replace(transition_offset=arrays.transition_offset + 1.0),
        arrays._replace(observation_offset=arrays.observation_offset - 1.0),
    ):
        ll_shifted = float(PARALLEL(shifted, init, y, mask)[2])
        assert abs(ll - ll_shifted) > 1.0
        np.testing.assert_allclose(ll_shifted, float(SEQUENTIAL(shifted, init, y, mask)[2]), rtol=1e-9)


@pytest.mark.parametrize("num_steps", [1, 3])
def test_short_time_invariant_series_without_diffuse(num_steps):
    """T = 1 (no scan at all) and T = 3; K = 0; time-invariant arrays with offsets."""
    rng = np.random.default_rng(5)
    arrays = _random_model(rng, num_steps, 3, 2, varying=())
    init = InitialState(jnp.asarray(rng.normal(size=3)), jnp.eye(3), jnp.zeros((3, 0)))
    y = np.array(_simulate(arrays, init, num_steps, 6))
    mask = np.ones(y.shape, bool)
    mask[-1, 0] = False
    _compare(arrays, init, y, mask)


def test_time_axis_length_is_checked():
    rng = np.random.default_rng(5)
    arrays = _random_model(rng, 4, 3, 2, varying=("transition",))
    init = InitialState(jnp.zeros(3), jnp.eye(3), jnp.zeros((3, 0)))
    with pytest.raises(ValueError, match="time axis"):
        par.kalman_filter(arrays, init, jnp.zeros((5, 2)), jnp.ones((5, 2), bool))


# ---------------------------------------------------------------- structural (unit-root) models


def _nile():
    from statsmodels.datasets import nile

    return nile.load_pandas().data["volume"].to_numpy(dtype=float, copy=True)


def _local_level(sigma2_eps, sigma2_eta):
    arrays = StateSpaceArrays(
        jnp.eye(1), jnp.full((1, 1), sigma2_eta), jnp.zeros(1), jnp.eye(1), jnp.full((1, 1), sigma2_eps), jnp.zeros(1)
    )
    return arrays, InitialState(jnp.zeros(1), jnp.zeros((1, 1)), jnp.eye(1))


def test_nile_local_level_diffuse():
    y = _nile()[:, None]
    arrays, init = _local_level(15099.0, 1469.1)
    ll = _compare(arrays, init, y, np.ones_like(y, bool), grad=True)  # grad: the scalar-state path
    np.testing.assert_allclose(ll, -632.5456, atol=5e-4)  # Durbin & Koopman's exact diffuse value
    # the sequential default (steady-state switch) agrees too; the parallel version accepts (and
    # ignores) the switch's keywords, so the two can be swapped
    mask = jnp.ones(y.shape, bool)
    np.testing.assert_allclose(float(jax.jit(seq.log_likelihood)(arrays, init, jnp.asarray(y), mask)), ll, rtol=1e-9)
    with_options = functools.partial(par.log_likelihood, steady_state=True, chunk=8)
    assert jax.eval_shape(with_options, arrays, init, jnp.asarray(y), mask).shape == ()


def test_nile_local_level_missing_blocks():
    """Durbin & Koopman's fig. 2.5 gaps (t = 21..40 and 61..80) plus the first observation."""
    y = _nile()[:, None]
    mask = np.ones_like(y, bool)
    mask[20:40] = mask[60:80] = False
    mask[0] = False
    y[~mask] = np.nan
    arrays, init = _local_level(15099.0, 1469.1)
    _compare(arrays, init, y, mask)


def _trend_seasonal(period, q_level, q_slope, q_seasonal, r):
    """Local linear trend + dummy seasonal: N = 2 + period - 1 states, singular Q, fully diffuse."""
    s = period - 1
    N = 2 + s
    F = np.zeros((N, N))
    F[:2, :2] = [[1.0, 1.0], [0.0, 1.0]]
    F[2, 2:] = -1.0
    F[3:, 2:-1] = np.eye(s - 1)
    Q = np.zeros((N, N))
    Q[0, 0], Q[1, 1], Q[2, 2] = q_level, q_slope, q_seasonal
    H = np.zeros((1, N))
    H[0, 0] = H[0, 2] = 1.0
    arrays = StateSpaceArrays(
        jnp.asarray(F), jnp.asarray(Q), jnp.zeros(N), jnp.asarray(H), jnp.full((1, 1), r), jnp.zeros(1)
    )
    return arrays, InitialState(jnp.zeros(N), jnp.zeros((N, N)), jnp.eye(N))


def test_local_linear_trend_seasonal4_singular_q_with_offsets():
    """Deterministic slope (Q of rank 2 of 5), K = 5 diffuse states, nonzero c and d, gaps."""
    arrays, init = _trend_seasonal(4, 0.5, 0.0, 0.2, 1.0)
    arrays = arrays._replace(
        transition_offset=jnp.array([0.3, 0.0, -0.2, 0.0, 0.1]), observation_offset=jnp.array([5.0])
    )
    T = 32
    sim_arrays = arrays._replace(transition_cov=arrays.transition_cov.at[1, 1].set(0.01))
    y = np.array(_simulate(sim_arrays, init._replace(mean=jnp.arange(5.0)), T, 3))
    mask = np.ones_like(y, bool)
    mask[[7, 8, 20, 21, 22, 23, T - 2]] = False
    _compare(arrays, init, y, mask)


@pytest.mark.slow  # ~16 s; the smaller trend + seasonal cases above cover the same code in the default suite
def test_trend_seasonal12_13_states():
    """13 states (trend + seasonal 12), T = 200: must run (and compile) promptly and agree."""
    arrays, init = _trend_seasonal(12, 0.3, 0.01, 0.1, 1.0)
    T = 200
    y = np.array(_simulate(arrays, init._replace(mean=jnp.linspace(-2.0, 2.0, 13)), T, 4)) + 100.0
    mask = np.ones_like(y, bool)
    mask[[0, 30, 31, 150]] = False
    _compare(arrays, init, y, mask)
