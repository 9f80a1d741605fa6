"""The steady-state switch of ``kalman.log_likelihood`` against the full recursion.

The oracle is the same function with ``steady_state=False`` (every step a full update), itself
checked against the dense joint Gaussian in test_kalman.py. The switch freezes the gain once the
predicted covariance changes by less than 1e-12 of its scale, so the two agree to ~1e-9
relative over a few thousand steps (round-off of the converged covariance, accumulated).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsssm.kernels import kalman
from tsssm.models.components import Level, Seasonal, Trend
from tsssm.models.lgssm import StructuralModel


def _series(T, seed, gaps):
    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.normal(size=T)) + 3 * np.sin(np.arange(T) * 2 * np.pi / 12) + rng.normal(size=T)
    mask = np.ones((T, 1), bool)
    for start, stop in gaps:
        mask[start:stop] = False
    y = np.where(mask[:, 0], y, np.nan)  # NaN in masked entries must not leak
    return jnp.asarray(y)[:, None], jnp.asarray(mask)


CASES = {
    "level": (StructuralModel((Level(),)), {"sigma2_irregular": 2.0, "sigma2_level": 0.5}),
    "trend+seasonal12": (
        StructuralModel((Trend(), Seasonal(12))),
        {"sigma2_irregular": 1.0, "sigma2_level": 0.3, "sigma2_trend": 0.01, "sigma2_seasonal": 0.05},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("gaps", [(), ((300, 340), (700, 701), (1990, 2000))])
def test_steady_state_switch_equals_full_recursion(name, gaps):
    model, params = CASES[name]
    params = {k: jnp.asarray(v) for k, v in params.items()}
    y, mask = _series(2000, 0, gaps)
    arrays, init = model.system(params, jnp.arange(2000.0), None)
    fast = kalman.log_likelihood(arrays, init, y, mask)
    full = kalman.log_likelihood(arrays, init, y, mask, steady_state=False)
    np.testing.assert_allclose(fast, full, rtol=1e-9)
    # Chunking is an implementation detail: a chunk length that does not divide T changes nothing.
    np.testing.assert_allclose(kalman.log_likelihood(arrays, init, y, mask, chunk=37), full, rtol=1e-9)


def test_derivatives_are_those_of_the_full_recursion():
    """Under differentiation the switch hands over to the full recursion (value and derivative),
    in reverse and forward mode and to second order; the value alone still takes the switch
    (round-off apart)."""
    model, params = CASES["trend+seasonal12"]
    y, mask = _series(1500, 1, ((400, 420),))

    def loglik(scale, steady):
        p = {k: jnp.asarray(v) * (scale if k == "sigma2_seasonal" else 1.0) for k, v in params.items()}
        arrays, init = model.system(p, jnp.arange(1500.0), None)
        return kalman.log_likelihood(arrays, init, y, mask, steady_state=steady)

    value, grad = jax.jit(jax.value_and_grad(loglik), static_argnums=1)(1.0, True)
    full_value, full_grad = jax.jit(jax.value_and_grad(loglik), static_argnums=1)(1.0, False)
    np.testing.assert_allclose(value, full_value, rtol=1e-13)
    np.testing.assert_allclose(grad, full_grad, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.jacfwd(loglik), static_argnums=1)(1.0, True), full_grad, rtol=1e-10)
    hessian = jax.jit(jax.hessian(loglik), static_argnums=1)
    np.testing.assert_allclose(hessian(1.0, True), hessian(1.0, False), rtol=1e-10)
    value_only = jax.jit(loglik, static_argnums=1)
    np.testing.assert_allclose(value_only(1.0, True), full_value, rtol=1e-9)
    # and the derivative is right: central difference of the full recursion
    step = 1e-5
    difference = (value_only(1.0 + step, False) - value_only(1.0 - step, False)) / (2 * step)
    np.testing.assert_allclose(grad, difference, rtol=1e-6)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("offset", ["observation_offset", "transition_offset"])
def test_time_varying_offsets_keep_the_switch_exact(name, offset):
    """Univariate series: the stacked recursion and the steady steps read the step's own offsets."""
    model, params = CASES[name]
    params = {k: jnp.asarray(v) for k, v in params.items()}
    y, mask = _series(1000, 2, ((500, 530),))
    arrays, init = model.system(params, jnp.arange(1000.0), None)
    width = getattr(arrays, offset).shape[-1]
    offsets = jnp.asarray(np.random.default_rng(3).normal(size=(1000, width)))
    arrays = arrays._replace(**{offset: offsets})
    np.testing.assert_allclose(
        kalman.log_likelihood(arrays, init, y, mask),
        kalman.log_likelihood(arrays, init, y, mask, steady_state=False),
        rtol=1e-9,
    )


def _random_multivariate(seed, T, N=4, D=3):
    """A stable time-invariant system with a constant state offset c and observation offsets."""
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(N, N))
    F = 0.9 * F / np.max(np.abs(np.linalg.eigvals(F)))
    A, B = rng.normal(size=(N, N)), rng.normal(size=(D, D))
    arrays = kalman.StateSpaceArrays(
        jnp.asarray(F), jnp.asarray(A @ A.T / N + 0.1 * np.eye(N)), jnp.asarray(rng.normal(size=N)),
        jnp.asarray(rng.normal(size=(D, N))), jnp.asarray(B @ B.T / D + 0.2 * np.eye(D)), jnp.asarray(rng.normal(size=D)),
    )
    init = kalman.InitialState(jnp.zeros(N), jnp.eye(N), jnp.zeros((N, 0)))
    y = jnp.asarray(rng.normal(size=(T, D)) + 2.0)
    mask = jnp.asarray(np.ones((T, D), bool)).at[500:520, 1].set(False)  # a partial gap mid-way
    return arrays, init, y, mask


@pytest.mark.parametrize("offsets", ["constant", "varying observation offset", "varying state offset"])
@pytest.mark.parametrize("chunk", [64, 20])
def test_multivariate_steady_state_equals_full_recursion(offsets, chunk):
    """D = 3 takes blocks of 8 (chunk 64) or 10 (chunk 20) steps in the block form; a varying c steps."""
    T = 1200
    arrays, init, y, mask = _random_multivariate(4, T)
    rng = np.random.default_rng(5)
    if offsets == "varying observation offset":
        arrays = arrays._replace(observation_offset=jnp.asarray(rng.normal(size=(T, 3))))
    if offsets == "varying state offset":
        arrays = arrays._replace(transition_offset=jnp.asarray(rng.normal(size=(T, 4))))
    fast = kalman.log_likelihood(arrays, init, y, mask, chunk=chunk)
    full = kalman.log_likelihood(arrays, init, y, mask, steady_state=False)
    np.testing.assert_allclose(fast, full, rtol=1e-10)


def test_steady_block_operators_match_the_step_recursion():
    """The block operators reproduce ``size`` closed-loop steps from any start and inputs."""
    arrays, _, _, _ = _random_multivariate(6, 10)
    rng = np.random.default_rng(7)
    F, H, c = arrays.transition, arrays.observation, arrays.transition_offset
    gain = jnp.asarray(rng.normal(size=(4, 3)) * 0.2)
    size = 5
    ops = kalman._steady_block(F, H, c, gain, size)
    a0, e = jnp.asarray(rng.normal(size=4)), jnp.asarray(rng.normal(size=(size, 3)))
    a, innovations = a0, []
    for j in range(size):
        v = e[j] - H @ a
        innovations.append(v)
        a = F @ (a + gain @ v) + c
    v_block = e.reshape(-1) - ops.convolution @ e.reshape(-1) - ops.to_innovation @ a0 - ops.offset_innovation
    np.testing.assert_allclose(v_block, jnp.concatenate(innovations), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ops.power @ a0 + ops.to_state @ e.reshape(-1) + ops.offset_state, a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T, gaps", [(2000, ((1300, 1302), (1700, 1750))), (2011, ()), (2011, ((2005, 2006),))])
def test_steady_tail_equals_full_recursion(T, gaps):
    """Once steady with every remaining step observed, the rest is taken in one go.

    Gaps after convergence delay the tail until the last of them; T = 2011 pads the last chunk
    (the padding must not count); a gap in the last chunk leaves no tail at all.
    """
    model, params = CASES["trend+seasonal12"]
    params = {k: jnp.asarray(v) for k, v in params.items()}
    y, mask = _series(T, 0, gaps)
    arrays, init = model.system(params, jnp.arange(float(T)), None)
    full = kalman.log_likelihood(arrays, init, y, mask, steady_state=False)
    np.testing.assert_allclose(kalman.log_likelihood(arrays, init, y, mask), full, rtol=1e-9)


def test_steady_tail_of_multivariate_series_with_varying_observation_offsets():
    arrays, init, y, mask = _random_multivariate(8, 1000)
    arrays = arrays._replace(observation_offset=jnp.asarray(np.random.default_rng(9).normal(size=(1000, 3))))
    full = kalman.log_likelihood(arrays, init, y, mask, steady_state=False)
    np.testing.assert_allclose(kalman.log_likelihood(arrays, init, y, mask), full, rtol=1e-10)


def test_switch_under_vmap_equals_each_series_full_recursion():
    """A batch of series (pooled likelihoods, per-draw values) runs the switch under ``vmap``:
    the series converge, meet gaps and reach their steady tail at different chunks."""
    model, params = CASES["level"]
    params = {k: jnp.asarray(v) for k, v in params.items()}
    series = [_series(1200, seed, gaps) for seed, gaps in [(5, ()), (6, ((700, 760),)), (7, ((1190, 1200),))]]
    y, mask = jnp.stack([s[0] for s in series]), jnp.stack([s[1] for s in series])
    arrays, init = model.system(params, jnp.arange(1200.0), None)
    batched = jax.jit(jax.vmap(lambda y, m: kalman.log_likelihood(arrays, init, y, m)))(y, mask)
    for b in range(3):
        full = kalman.log_likelihood(arrays, init, y[b], mask[b], steady_state=False)
        np.testing.assert_allclose(batched[b], full, rtol=1e-9)
