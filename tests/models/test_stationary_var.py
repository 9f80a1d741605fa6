"""The "stationary_var" parameter kind against statsmodels' constrain_stationary_multivariate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from statsmodels.tsa.statespace.tools import constrain_stationary_multivariate

from tsssm.models.constraints import ParamSpec, constrain, unconstrain


@pytest.mark.parametrize("k, p", [(1, 1), (1, 3), (2, 1), (2, 2), (3, 2)])
def test_stationary_var_matches_statsmodels_and_inverts(k, p):
    x = 1.5 * np.random.default_rng(10 * k + p).normal(size=(k, k * p))
    spec = ParamSpec("a", "stationary_var", (k, k * p))
    with jax.enable_x64(True):
        ours = np.asarray(constrain(spec, jnp.asarray(x)))
    expected, _ = constrain_stationary_multivariate(x, np.eye(k))
    np.testing.assert_allclose(ours, expected, atol=1e-12)  # same recursion: round-off only
    companion = np.zeros((k * p, k * p))
    companion[:k] = ours
    companion[k:, : k * (p - 1)] = np.eye(k * (p - 1))
    assert np.max(np.abs(np.linalg.eigvals(companion))) < 1.0
    np.testing.assert_allclose(unconstrain(spec, ours), x, atol=1e-9)
