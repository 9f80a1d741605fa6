"""Continuous-time components and the structural model on irregular time grids.

Oracles:

* the whole model's SDE written out by hand (drift A and diffusion L Qc L^T, block diagonal over
  components), discretised by one Van Loan exponential (itself tested against quadrature in
  tests/kernels/test_discretize.py): the per-step F_t, Q_t of ``StructuralModel.system`` must equal it;
* the dense joint-Gaussian log-density (tests/reference/dense_gaussian.py) of the observations
  on the same irregular grid, for a proper prior (exact) and for the diffuse prior (kappa limit);
* the discrete-time components, which the continuous ones must equal at dt = 1 where the models
  coincide (level, cycle, seasonal rotations).

Tolerances are float64 round-off with margin: the Kalman and dense computations differ only in
the order of operations (1e-9 absolute on log-likelihoods of size ~50-100); the diffuse oracle
carries its own extrapolation-error estimate.
"""

from __future__ import annotations

import pathlib
import sys

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from numpy.testing import assert_allclose

_ROOT = pathlib.Path(__file__).absolute().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import tsssm  # noqa: E402
from tests.reference.dense_gaussian import dense_log_marginal, diffuse_limit  # noqa: E402
from tsssm._config import float64  # noqa: E402
from tsssm.kernels import discretize, kalman  # noqa: E402
from tsssm.models import components as C  # noqa: E402
from tsssm.models.constraints import ParamSpec, constrain, unconstrain  # noqa: E402
from tsssm.models.lgssm import StructuralModel  # noqa: E402


@pytest.fixture(autouse=True)
def _float64():
    with float64():
        yield


@eqx.filter_jit
def _system(model, params, times):
    """``model.system`` compiled as a whole (op-by-op dispatch of the Van Loan loops is slow)."""
    return model.system(params, times)


@eqx.filter_jit
def _loglik(model, params, times, y, mask):
    return kalman.log_likelihood(*model.system(params, times), y, mask)


PARAMS = {
    "sigma2_irregular": 0.4,
    "sigma2_level": 0.3,
    "sigma2_trend": 0.02,
    "sigma2_seasonal": 0.05,
    "sigma2_cycle": 0.2,
    "frequency_cycle": 2 * np.pi / 9.0,
    "damping_cycle": 0.8,
    "sigma2_ar": 0.9,
    "car": np.array([1.1, 0.6]),
}
PERIOD = 7.3


def _model():
    return StructuralModel(
        (C.ContinuousTrend(), C.OscillatorSeasonal(PERIOD, 2), C.ContinuousCycle(), C.CAR(2))
    )


def _params():
    return {k: jnp.asarray(v) for k, v in PARAMS.items()}


def _times(num, seed=0):
    gaps = np.random.default_rng(seed).exponential(1.3, num)
    return np.concatenate([[0.0], np.cumsum(gaps[1:])]) + 2.0


def _sde():
    """Drift and diffusion of _model(), written from the equations in the docstrings."""
    p = PARAMS
    J = np.array([[0.0, 1.0], [-1.0, 0.0]])
    w = [2 * np.pi * j / PERIOD for j in (1, 2)]
    lam = -np.log(p["damping_cycle"])
    a1, a2 = p["car"]
    blocks_A = [
        np.array([[0.0, 1.0], [0.0, 0.0]]),
        w[0] * J,
        w[1] * J,
        p["frequency_cycle"] * J - lam * np.eye(2),
        np.array([[0.0, 1.0], [-a2, -a1]]),
    ]
    blocks_D = [
        np.diag([p["sigma2_level"], p["sigma2_trend"]]),
        p["sigma2_seasonal"] * np.eye(2),
        p["sigma2_seasonal"] * np.eye(2),
        p["sigma2_cycle"] * np.eye(2),
        np.diag([0.0, p["sigma2_ar"]]),
    ]
    return scipy.linalg.block_diag(*blocks_A), scipy.linalg.block_diag(*blocks_D)


def test_system_equals_van_loan_of_the_whole_sde():
    times = _times(12)
    arrays, init = _system(_model(), _params(), jnp.asarray(times))
    A, D = _sde()
    F, Q = discretize.van_loan(jnp.asarray(A), jnp.asarray(D), jnp.asarray(np.diff(times)))
    assert arrays.transition.shape == (12, 10, 10) and arrays.transition_cov.shape == (12, 10, 10)
    assert_allclose(np.asarray(arrays.transition[:-1]), np.asarray(F), rtol=1e-11, atol=1e-13)
    assert_allclose(np.asarray(arrays.transition_cov[:-1]), np.asarray(Q), rtol=1e-10, atol=1e-13)
    assert_allclose(np.asarray(arrays.observation), [[1, 0, 1, 0, 1, 0, 1, 0, 1, 0]])
    # diffuse: trend (2) + seasonal (4) + cycle (2); CAR(2) from its stationary law
    assert init.diffuse.shape == (10, 8)
    P = np.asarray(init.cov)[8:, 8:]
    A_car = A[8:, 8:]
    assert_allclose(A_car @ P + P @ A_car.T + D[8:, 8:], 0.0, atol=1e-13)


def test_car_stationary_covariance_is_the_long_gap_limit():
    params = {"sigma2_ar": jnp.asarray(0.9), "car": jnp.asarray([1.4, 1.1, 0.3])}
    car = C.CAR(3)
    _, Q_long = eqx.filter_jit(car.transition)(params, 400.0)
    assert_allclose(np.asarray(car.block(params).init_cov), np.asarray(Q_long), rtol=1e-9, atol=1e-12)
    # p = 1: OU, stationary variance q / (2 theta)
    ou = C.CAR(1).block({"sigma2_ar": jnp.asarray(0.9), "car": jnp.asarray([0.3])})
    assert_allclose(float(ou.init_cov[0, 0]), 0.9 / 0.6, rtol=1e-14)
    assert_allclose(float(ou.transition[0, 0]), np.exp(-0.3), rtol=1e-14)


def _proper(init):
    N = init.mean.shape[0]
    return np.asarray(init.mean), np.asarray(init.cov) + 2.0 * np.asarray(init.diffuse) @ np.asarray(init.diffuse).T, N


def _data(T, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(T, 1)).cumsum(0) * 0.3 + rng.normal(size=(T, 1))
    mask = rng.uniform(size=(T, 1)) > 0.15
    mask[:3] = True
    return y, mask


def test_log_likelihood_equals_dense_gaussian_proper_prior():
    """Proper prior (diffuse directions given variance 2): exact equality with the dense density."""
    times = _times(25, seed=1)
    y, mask = _data(25, seed=2)
    arrays, init = _system(_model(), _params(), jnp.asarray(times))
    m0, P0, N = _proper(init)
    proper = kalman.InitialState(jnp.asarray(m0), jnp.asarray(P0), jnp.zeros((N, 0)))
    ll = float(kalman.log_likelihood(arrays, proper, jnp.asarray(y), jnp.asarray(mask)))
    assert_allclose(ll, dense_log_marginal(arrays, m0, P0, y, mask), rtol=0, atol=1e-9)


def test_log_likelihood_equals_dense_gaussian_diffuse_prior():
    model = StructuralModel((C.ContinuousTrend(), C.CAR(1)))
    params = {"sigma2_irregular": jnp.asarray(0.4), "sigma2_level": jnp.asarray(0.3),
              "sigma2_trend": jnp.asarray(0.02), "sigma2_ar": jnp.asarray(0.9), "car": jnp.asarray([0.7])}
    times = _times(20, seed=3)
    y, mask = _data(20, seed=4)
    arrays, init = _system(model, params, jnp.asarray(times))
    ll = float(kalman.log_likelihood(arrays, init, jnp.asarray(y), jnp.asarray(mask)))
    oracle = diffuse_limit(arrays, init.mean, init.cov, init.diffuse, y, mask, per_step=False)
    assert oracle.identified_all
    assert abs(ll - oracle.limit.log_marginal) <= max(1e-7, 10 * oracle.error.log_marginal)


def test_inserting_missing_times_changes_nothing():
    """Fully missing time points split a gap in two; by the semigroup property the likelihood is unchanged."""
    times = _times(30, seed=5)
    y, mask = _data(30, seed=6)
    model, params = _model(), _params()
    ll = float(_loglik(model, params, jnp.asarray(times), jnp.asarray(y), jnp.asarray(mask)))
    rng = np.random.default_rng(7)
    extra = np.sort(rng.uniform(times[0] + 0.01, times[-1] + 3.0, 15))
    all_times = np.concatenate([times, extra])
    order = np.argsort(all_times, kind="stable")
    y2 = np.concatenate([y, np.zeros((15, 1))])[order]
    mask2 = np.concatenate([mask, np.zeros((15, 1), bool)])[order]
    ll2 = float(_loglik(model, params, jnp.asarray(all_times[order]), jnp.asarray(y2), jnp.asarray(mask2)))
    assert_allclose(ll2, ll, rtol=0, atol=1e-10)


def test_continuous_components_equal_discrete_ones_at_unit_gaps():
    p = _params()
    assert_allclose(C.BrownianLevel().block(p).transition_cov, C.Level().block(p).transition_cov, rtol=1e-15)
    assert_allclose(C.ContinuousCycle().block(p).transition, C.Cycle().block(p).transition, rtol=1e-14, atol=1e-15)
    # trigonometric seasonal: the same rotations (period 12, harmonics 1..5; 6 is the Nyquist one)
    discrete = C.Seasonal(12, 5).block(p).transition
    assert_allclose(C.OscillatorSeasonal(12.0, 5).block(p).transition, discrete, rtol=1e-14, atol=1e-15)
    # the continuous trend's level noise includes the integrated slope noise
    Q = np.asarray(C.ContinuousTrend().block(p).transition_cov)
    assert_allclose(Q, [[0.3 + 0.02 / 3, 0.01], [0.01, 0.02]], rtol=1e-14)


def test_conversions_and_errors():
    model = StructuralModel((C.Trend(False, True), C.Seasonal(12, 2, name="yearly"), C.Cycle(), C.Autoregressive(2)))
    cont = model.continuous()
    assert cont.continuous_time and not model.continuous_time
    assert [type(c).__name__ for c in cont.components] == ["ContinuousTrend", "OscillatorSeasonal", "ContinuousCycle", "CAR"]
    assert [s.name for s in cont.param_specs()] == [s.name for s in model.param_specs() if s.name != "ar"] + ["car"]
    with pytest.raises(tsssm.DataError, match="dummy seasonal.*harmonics="):
        StructuralModel((C.Level(), C.Seasonal(7))).continuous()


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_hurwitz_constraint(p):
    spec = ParamSpec("car", "hurwitz", (p,))
    rng = np.random.default_rng(p)
    for _ in range(5):
        coefs = np.asarray(constrain(spec, jnp.asarray(rng.normal(size=p) * 2)))
        roots = np.roots(np.concatenate([[1.0], coefs]))
        assert np.all(roots.real < 0)
        assert_allclose(np.asarray(constrain(spec, jnp.asarray(unconstrain(spec, coefs)))), coefs, rtol=1e-8)
