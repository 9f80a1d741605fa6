"""Exact discretisation (tsssm.kernels.discretize) against independent oracles.

Oracles: SciPy's Pade ``scipy.linalg.expm`` for the matrix exponential, numerical quadrature
(``scipy.integrate.quad_vec``) of :math:`\\int_0^\\Delta e^{As} Q_c e^{A^\\top s} ds` for Van Loan's
covariance, and the textbook closed forms (Brownian motion, OU, integrated random walk, damped
oscillator). Tolerances: all float64; the Taylor exponential has truncation error < 1e-17 after
scaling and loses about log2(norm) bits in the squarings, so 1e-12 relative (1e-10 for norms up to
~100) sits well above round-off and many orders below any modelling mistake (a wrong sign or a
factor 2 in Q changes entries by O(1)).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
from numpy.testing import assert_allclose

from tsssm.kernels import discretize as dz

van_loan = jax.jit(dz.van_loan)  # compiled once per shape (the tests call it many times)
GAPS = np.array([0.0, 1e-9, 0.013, 0.5, 1.0, 2.7, 40.0])


def _stable(n, seed):
    rng = np.random.default_rng(seed)
    M = rng.normal(size=(n, n))
    return M - (np.max(np.real(np.linalg.eigvals(M))) + 0.3) * np.eye(n)


def _psd(n, seed):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(n, n))
    return B @ B.T


@pytest.mark.parametrize("scale", [1e-3, 0.5, 3.0, 30.0])
def test_expm_matches_scipy(scale):
    rng = np.random.default_rng(int(scale * 1000))
    for n in (1, 2, 5):
        a = rng.normal(size=(n, n)) * scale
        expected = scipy.linalg.expm(a)
        got = np.asarray(dz.expm(jnp.asarray(a)))
        assert_allclose(got, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())


def test_expm_batched_and_differentiable():
    a = np.stack([_stable(3, s) for s in range(4)])
    assert_allclose(np.asarray(dz.expm(jnp.asarray(a))), np.stack([scipy.linalg.expm(x) for x in a]), rtol=1e-12, atol=1e-14)
    # d/dt expm(A t) = A expm(A t) (the squaring loop has a fixed length, so reverse mode works)
    A = jnp.asarray(a[0])
    deriv = jax.jit(jax.jacfwd(lambda t: dz.expm(A * t)))(0.7)
    rev = jax.jit(jax.jacrev(lambda t: dz.expm(A * t)))(0.7)
    expected = a[0] @ scipy.linalg.expm(a[0] * 0.7)
    assert_allclose(np.asarray(deriv), expected, rtol=1e-10, atol=1e-12)
    assert_allclose(np.asarray(rev), expected, rtol=1e-10, atol=1e-12)


def test_van_loan_matches_quadrature():
    A, Qc = _stable(3, 1), _psd(3, 2)
    F, Q = van_loan(jnp.asarray(A), jnp.asarray(Qc), jnp.asarray(GAPS))
    for k, h in enumerate(GAPS):
        assert_allclose(np.asarray(F[k]), scipy.linalg.expm(A * h), rtol=1e-11, atol=1e-13)
        if h == 0.0:
            assert np.all(np.asarray(Q[k]) == 0.0)
            continue
        integrand = lambda s: scipy.linalg.expm(A * s) @ Qc @ scipy.linalg.expm(A * s).T  # noqa: E731
        expected, _ = scipy.integrate.quad_vec(integrand, 0.0, h, epsabs=1e-13, epsrel=1e-12)
        assert_allclose(np.asarray(Q[k]), expected, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(expected).max()))


def test_van_loan_scalar_equals_vector_entry():
    A, Qc = _stable(2, 3), _psd(2, 4)
    Fv, Qv = van_loan(jnp.asarray(A), jnp.asarray(Qc), jnp.asarray(GAPS))
    for k, h in enumerate(GAPS):
        F, Q = van_loan(jnp.asarray(A), jnp.asarray(Qc), h)
        assert F.shape == (2, 2)
        assert_allclose(np.asarray(F), np.asarray(Fv[k]), rtol=1e-14, atol=1e-15)  # vmap may reorder sums
        assert_allclose(np.asarray(Q), np.asarray(Qv[k]), rtol=1e-14, atol=1e-15)


def _closed_and_general():
    """(name, closed-form (F, Q) as a function of dt, drift A, diffusion L Qc L^T)."""
    q, ql, qs, theta, omega, lam = 0.7, 0.3, 0.05, 0.4, 2.0 * np.pi / 7.3, 0.25
    J = np.array([[0.0, 1.0], [-1.0, 0.0]])
    return [
        ("brownian", lambda dt: dz.brownian(q, dt), np.zeros((1, 1)), np.full((1, 1), q)),
        ("ou", lambda dt: dz.ornstein_uhlenbeck(q, theta, dt), np.full((1, 1), -theta), np.full((1, 1), q)),
        (
            "irw",
            lambda dt: dz.integrated_random_walk(ql, qs, dt),
            np.array([[0.0, 1.0], [0.0, 0.0]]),
            np.diag([ql, qs]),
        ),
        ("oscillator", lambda dt: dz.damped_rotation(q, omega, 0.0, dt), omega * J, q * np.eye(2)),
        ("damped", lambda dt: dz.damped_rotation(q, omega, lam, dt), omega * J - lam * np.eye(2), q * np.eye(2)),
    ]


@pytest.mark.parametrize("case", _closed_and_general(), ids=lambda c: c[0])
def test_closed_forms_equal_van_loan(case):
    _, closed, A, diffusion = case
    F, Q = closed(jnp.asarray(GAPS))
    Fv, Qv = van_loan(jnp.asarray(A), jnp.asarray(diffusion), jnp.asarray(GAPS))
    assert F.shape == Fv.shape == (len(GAPS),) + A.shape
    assert_allclose(np.asarray(F), np.asarray(Fv), rtol=1e-12, atol=1e-14)
    assert_allclose(np.asarray(Q), np.asarray(Qv), rtol=1e-11, atol=1e-14)


def test_textbook_values():
    """The closed forms themselves, written out (Brownian: F=1, Q=q dt; OU; IRW)."""
    dt = 2.5
    F, Q = dz.brownian(0.7, dt)
    assert_allclose([float(F[0, 0]), float(Q[0, 0])], [1.0, 0.7 * dt], rtol=1e-15)
    F, Q = dz.ornstein_uhlenbeck(0.7, 0.4, dt)
    assert_allclose([float(F[0, 0]), float(Q[0, 0])], [np.exp(-0.4 * dt), 0.7 * (1 - np.exp(-0.8 * dt)) / 0.8], rtol=1e-14)
    F, Q = dz.integrated_random_walk(0.3, 0.05, dt)
    assert_allclose(np.asarray(F), [[1.0, dt], [0.0, 1.0]], rtol=0)
    expected = [[0.3 * dt + 0.05 * dt**3 / 3, 0.05 * dt**2 / 2], [0.05 * dt**2 / 2, 0.05 * dt]]
    assert_allclose(np.asarray(Q), expected, rtol=1e-14)


@pytest.mark.parametrize("case", _closed_and_general() + [("car3", None, None, None)], ids=lambda c: c[0])
def test_semigroup(case):
    """Moving t0 -> t1 -> t2 equals moving t0 -> t2: F02 = F12 F01, Q02 = F12 Q01 F12^T + Q12."""
    name, closed, A, diffusion = case
    if closed is None:  # a general stable drift through the Van Loan path
        A, diffusion = _stable(3, 5), _psd(3, 6)
        closed = lambda dt: van_loan(jnp.asarray(A), jnp.asarray(diffusion), dt)  # noqa: E731
    d1, d2 = np.array([0.3, 1.0, 0.01, 2.5]), np.array([1.1, 1.0, 17.0, 0.0])
    F, Q = (np.asarray(a) for a in closed(jnp.asarray(np.concatenate([d1, d2, d1 + d2]))))
    for k in range(len(d1)):
        (F01, F12, F02), (Q01, Q12, Q02) = F[k :: len(d1)], Q[k :: len(d1)]
        assert_allclose(F02, F12 @ F01, rtol=1e-11, atol=1e-13)
        assert_allclose(Q02, F12 @ Q01 @ F12.T + Q12, rtol=1e-11, atol=1e-13)


def test_decay_integral_is_smooth_at_zero_decay():
    """OU with decay -> 0 tends to Brownian motion, with a finite derivative there."""
    dt = 3.0
    _, Q0 = dz.ornstein_uhlenbeck(1.0, 0.0, dt)
    _, Qs = dz.ornstein_uhlenbeck(1.0, 1e-10, dt)
    assert_allclose([float(Q0[0, 0]), float(Qs[0, 0])], [dt, dt], rtol=1e-9)
    grad = jax.grad(lambda th: dz.ornstein_uhlenbeck(1.0, th, dt)[1][0, 0])(0.0)
    assert np.isfinite(float(grad)) and abs(float(grad) + dt**2) < 1e-6  # d/dθ [(1-e^{-2θΔ})/(2θ)] at 0 = -Δ²
