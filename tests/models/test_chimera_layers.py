"""Chimera's layer against the loop oracle: both variate directions, real and complex heads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsssm.kernels import scan
from tsssm.kernels.scan import scan_2d_loop
from tsssm.models import chimera


def _reference_head(head, z, delta):
    """A head's output with its 2-D scan run cell by cell, once per variate direction: the states of
    the forward scan plus those of the scan from the last variate (``reverse_variates=True``)."""
    args, c = head.discretise(z, delta)
    forward = scan_2d_loop(*args)
    backward = scan_2d_loop(*args, reverse_variates=True)
    return head.read(z, c, forward[0] + backward[0], forward[1] + backward[1])


@pytest.mark.parametrize("num_variates", [1, 3])
def test_both_heads_match_the_cell_by_cell_scans_in_both_directions(num_variates):
    """One variate runs one direction counted twice, several run two: both equal the oracle. The
    trend head runs in real arithmetic, the seasonal head in complex. Float32 (the networks' dtype):
    the two summation orders differ by rounding only, ~1e-7 of values of order 1."""
    channels, states, T = 4, 3, 9
    net = chimera.ChimeraNetwork(num_variates, channels, states, 1, 2, key=jax.random.key(0))
    block = jax.tree_util.tree_map(lambda x: x[0] if isinstance(x, jax.Array) else x, net.blocks)
    (trend_initial, season_initial) = jax.tree_util.tree_map(lambda x: x[0], net.initial_state())
    z = jax.random.normal(jax.random.key(1), (num_variates, T, channels))
    delta = jnp.linspace(0.5, 2.0, T)
    for head, initial, kind in [(block.trend, trend_initial, jnp.floating), (block.season, season_initial, jnp.complexfloating)]:
        assert jnp.issubdtype(initial[0].dtype, kind)
        assert initial[0].shape[0] == (1 if num_variates == 1 else 2)  # directions scanned
        final, out = chimera._scan_both_directions(head, z, delta, initial, -1)
        np.testing.assert_allclose(out, _reference_head(head, z, delta), rtol=1e-5, atol=1e-5)
        assert final[0].shape == initial[0].shape


def test_default_time_scan_follows_the_backend():
    expected = "sequential" if jax.default_backend() == "cpu" else "associative"
    assert scan.default_time_scan() == expected


def test_network_builds_and_runs_with_float64_enabled():
    """Under JAX's x64 mode every weight is float64 (a float32 constant among them broke the complex
    transition of the seasonal head)."""
    from tsssm._config import float64

    with float64():
        net = chimera.ChimeraNetwork(2, 4, 3, 2, 2, key=jax.random.key(0))
        y = jax.random.normal(jax.random.key(1), (7, 2))
        out = net(y, jnp.ones((7, 2), bool), jnp.ones(7))
        assert out.dtype == jnp.float64 and out.shape == (7, 2, 2) and bool(jnp.all(jnp.isfinite(out)))
