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


def test_steady_state_gradient_equals_full_recursion():
    model, params = CASES["trend+seasonal12"]
    y, mask = _series(1500, 1, ((400, 420),))

    def loglik(scale, steady):
        p = {k: jnp.asarray(v) * (scale if k == "sigma2_level" else 1.0) for k, v in params.items()}
        arrays, init = model.system(p, jnp.arange(1500.0), None)
        return kalman.log_likelihood(arrays, init, y, mask, steady_state=steady)

    g_fast = jax.grad(loglik)(1.0, True)
    g_full = jax.grad(loglik)(1.0, False)
    np.testing.assert_allclose(g_fast, g_full, rtol=1e-7)


def test_time_varying_offsets_keep_the_switch_exact():
    model, params = CASES["level"]
    params = {k: jnp.asarray(v) for k, v in params.items()}
    y, mask = _series(1000, 2, ())
    arrays, init = model.system(params, jnp.arange(1000.0), None)
    offsets = jnp.asarray(np.random.default_rng(3).normal(size=(1000, 1)))
    arrays = arrays._replace(observation_offset=offsets)
    np.testing.assert_allclose(
        kalman.log_likelihood(arrays, init, y, mask),
        kalman.log_likelihood(arrays, init, y, mask, steady_state=False),
        rtol=1e-9,
    )
