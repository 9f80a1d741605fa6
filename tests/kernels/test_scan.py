"""Selective scans: the associative versions against the step-by-step loops (values and gradients)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tsssm.kernels.scan import TIME_SCANS, scan_2d, scan_2d_loop, selective_scan, selective_scan_loop


def _random(key, shape, count, complex_=False):
    """``count`` arrays of ``shape``: decays of modulus < 1 (first half of the keys) and inputs."""
    keys = jax.random.split(key, count)
    out = []
    for i, k in enumerate(keys):
        kr, ki = jax.random.split(k)
        x = jax.random.uniform(kr, shape, minval=-0.95, maxval=0.95) if i < count - 2 else jax.random.normal(kr, shape)
        if complex_:
            x = x * jnp.exp(1j * jax.random.uniform(ki, shape, maxval=2 * np.pi))
        out.append(x)
    return out


def _loss(fn, *args, **kw):
    """A scalar that touches every output with distinct weights (so gradients are informative)."""
    outs = fn(*args, **kw)
    outs = outs if isinstance(outs, tuple) else (outs,)
    total = 0.0
    for j, h in enumerate(outs):
        w = jnp.cos(jnp.arange(h.size, dtype=jnp.float64) * (0.37 + j)).reshape(h.shape)
        total = total + jnp.sum(w * jnp.real(h)) + jnp.sum(jnp.abs(h) ** 2) * 0.1
    return total


@pytest.mark.parametrize("method", TIME_SCANS)
@pytest.mark.parametrize(("shape", "reverse"), [((1,), False), ((13, 2), True)])
def test_selective_scan_matches_loop(shape, reverse, method):
    a, b = _random(jax.random.key(shape[0]), shape, 2)
    a = jnp.abs(a)
    fast = jax.jit(selective_scan, static_argnames=("reverse", "method"))(a, b, reverse=reverse, method=method)
    np.testing.assert_allclose(fast, selective_scan_loop(a, b, reverse=reverse), rtol=1e-12, atol=1e-12)
    scan = partial(selective_scan, method=method)
    g_fast = jax.jit(jax.grad(lambda a, b: _loss(scan, a, b, reverse=reverse), argnums=(0, 1)))(a, b)
    g_loop = jax.jit(jax.grad(lambda a, b: _loss(selective_scan_loop, a, b, reverse=reverse), argnums=(0, 1)))(a, b)
    for gf, gl in zip(g_fast, g_loop):
        np.testing.assert_allclose(gf, gl, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("method", TIME_SCANS)
def test_selective_scan_by_hand(method):
    a = jnp.array([0.5, 2.0, -1.0])
    b = jnp.array([1.0, 1.0, 3.0])
    np.testing.assert_allclose(selective_scan(a, b, method=method), [1.0, 3.0, 0.0])
    np.testing.assert_allclose(selective_scan(a, b, reverse=True, method=method), [4.5, 7.0, 3.0])


def test_unknown_time_scan_is_refused():
    with pytest.raises(ValueError, match="associative"):
        selective_scan(jnp.ones(3), jnp.ones(3), method="parallel")


@pytest.mark.parametrize("time_scan", TIME_SCANS)
@pytest.mark.parametrize(
    ("shape", "reverse_variates"), [((1, 5), False), ((3, 1), True), ((5, 9, 2, 2), True)]
)
def test_scan_2d_matches_loop_values_and_gradients(shape, reverse_variates, time_scan):
    args = _random(jax.random.key(sum(shape)), shape, 6)
    kw = dict(reverse_variates=reverse_variates)
    fast_kw = kw | dict(time_scan=time_scan)
    fast, loop = jax.jit(partial(scan_2d, **fast_kw))(*args), jax.jit(partial(scan_2d_loop, **kw))(*args)
    for f, s in zip(fast, loop):
        np.testing.assert_allclose(f, s, rtol=1e-12, atol=1e-12)
    g_fast = jax.jit(jax.grad(lambda *a: _loss(scan_2d, *a, **fast_kw), argnums=tuple(range(6))))(*args)
    g_loop = jax.jit(jax.grad(lambda *a: _loss(scan_2d_loop, *a, **kw), argnums=tuple(range(6))))(*args)
    for gf, gl in zip(g_fast, g_loop):
        np.testing.assert_allclose(gf, gl, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("time_scan", TIME_SCANS)
def test_scan_2d_complex_and_jitted(time_scan):
    args = _random(jax.random.key(5), (3, 8, 2), 6, complex_=True)
    fast = jax.jit(scan_2d, static_argnames=("reverse_variates", "time_scan"))(*args, reverse_variates=True, time_scan=time_scan)
    loop = scan_2d_loop(*args, reverse_variates=True)
    for f, s in zip(fast, loop):
        assert f.dtype == jnp.complex128
        np.testing.assert_allclose(f, s, rtol=1e-12, atol=1e-12)


def test_scan_2d_by_hand_and_causal_in_time():
    """Without coupling the two states are separate 1-D recurrences; with it, a change at time t
    reaches every later time of every later variate and nothing earlier in time."""
    V, T = 3, 5
    ones, zeros = jnp.ones((V, T)), jnp.zeros((V, T))
    u = jnp.zeros((V, T)).at[0, 0].set(1.0)
    scan = jax.jit(scan_2d)
    h1, h2 = scan(0.5 * ones, zeros, zeros, 0.5 * ones, u, u)
    np.testing.assert_allclose(h1[0], 0.5 ** jnp.arange(T))
    np.testing.assert_allclose(h2[:, 0], 0.5 ** jnp.arange(V))
    args = _random(jax.random.key(9), (V, T), 6)
    base = scan(*args)
    bumped = scan(*args[:4], args[4].at[1, 2].add(1.0), args[5].at[1, 2].add(1.0))
    for b0, b1 in zip(base, bumped):
        np.testing.assert_array_equal(b0[:, :2], b1[:, :2])  # earlier times: untouched
        np.testing.assert_array_equal(b0[0], b1[0])  # the variate before v = 1: untouched
    d1, d2 = (np.abs(np.asarray(b1 - b0)) for b0, b1 in zip(base, bumped))
    # the time state carries the change along time, the variate state hands it to the next variate
    assert np.all(d1[1, 2:] > 0) and np.all(d1[2:, 3:] > 0) and np.all(d1[2:, 2] == 0)
    assert np.all(d2[1:, 2] > 0) and np.all(d2[2:, 3:] > 0) and np.all(d2[1, 3:] == 0)


def test_scan_2d_in_chunks_of_time():
    """Scanning times [0, 4) and then [4, 8) from the first chunk's last column equals one scan (the
    fast version and the loop, one variate direction each)."""
    args = _random(jax.random.key(11), (4, 8, 3), 6)
    zeros = (jnp.zeros((4, 3)), jnp.zeros((4, 3)))
    fast = [partial(scan_2d, time_scan=method) for method in TIME_SCANS]
    for fn, rev in [(fast[0], True), (fast[1], True), (scan_2d_loop, False)]:
        fn = jax.jit(partial(fn, reverse_variates=rev))
        whole = fn(*args, initial=zeros)
        first = fn(*(a[:, :4] for a in args), initial=zeros)
        second = fn(*(a[:, 4:] for a in args), initial=(first[0][:, -1], first[1][:, -1]))
        for w, f, s in zip(whole, first, second):
            np.testing.assert_allclose(jnp.concatenate([f, s], axis=1), w, rtol=1e-12, atol=1e-12)
