"""Independent oracles for :mod:`tsssm.kernels.kalman`.

Every kernel output is checked against :mod:`tests.reference.dense_gaussian`, which builds the joint
Gaussian of all states and observations densely and conditions on the observed entries (no Kalman
recursion anywhere); diffuse priors are checked against the ``kappa -> infinity`` limit of a proper
``N(0, kappa I)`` prior on the diffuse vector.

Tolerances
----------
* ``RTOL``/``ATOL`` (proper prior): both sides are float64 linear algebra on small, well-conditioned
  problems (noise covariances have eigenvalues >= 0.05, values O(1..100)); observed discrepancies
  are <= 5e-15 relative to 1 + |value|, so 1e-10 leaves five orders of margin for other platforms
  and BLAS summation orders while still catching any algebraic slip.
* ``DIFFUSE_TOL`` (kappa-limit oracle): the dense oracle at large kappa conditions matrices with
  condition number ~kappa, so it loses digits to cancellation, while small kappa is not converged;
  :func:`~tests.reference.dense_gaussian.diffuse_limit` Richardson-extrapolates over a grid of kappa
  and estimates its own error. ``test_kappa_oracle_is_converged`` asserts that estimate is below
  ``DIFFUSE_TOL / 2`` (relative to 1 + |value|) on every compared entry (observed: <= 1.3e-8), and
  comparisons use rtol = atol = ``DIFFUSE_TOL`` = 1e-7 (observed kernel-oracle gaps: <= 5e-9
  relative to 1 + |value|).
* Identities between kernel outputs (lean vs full likelihood, masked garbage, appended steps, vmap)
  hold up to round-off of the same float64 arithmetic: 1e-12 .. 1e-10.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from tests.reference.dense_gaussian import (
    dense_log_marginal,
    dense_posterior,
    diffuse_limit,
    diffuse_log_marginal,
    system_at,
)
from tsssm.kernels import kalman

RTOL, ATOL = 1e-10, 1e-10
DIFFUSE_TOL = 1e-7
DIFFUSE_RTOL = DIFFUSE_ATOL = DIFFUSE_TOL
KAPPA = 1e5  # fixed kappa for diffuse_log_marginal (finite differences want a smooth oracle)
FIELDS = kalman.StateSpaceArrays._fields
ALL = FIELDS


# ----------------------------------------------------------------------------------------------
# Random models
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    N: int
    D: int
    T: int
    K: int = 0  # number of diffuse directions
    varying: tuple = ()  # which system arrays get a leading time axis
    seed: int = 0
    missing_steps: tuple = ()  # fully missing steps (besides random missing entries)
    diffuse_basis: str = "random"  # "random": B random, P0 full rank; "unit": B = e_1..e_K, P0 = 0 there
    p_missing: float = 0.25
    builder: str = "random"  # or a structured model: "deterministic", "local_level"

    def __str__(self):
        return self.name


CASES = [
    Case("N1D1-invariant", 1, 1, 12, seed=0, missing_steps=(3, -1)),
    Case("N3D2-varying", 3, 2, 16, varying=ALL, seed=1, missing_steps=(5, 6, -2, -1)),
    Case("N4D3-mixed", 4, 3, 10, varying=("transition", "observation_cov", "observation_offset"), seed=2,
         missing_steps=(4,)),
    Case("N1D1-diffuse1", 1, 1, 12, K=1, seed=3, missing_steps=(0, 5)),
    Case("N3D2-varying-diffuse1", 3, 2, 16, K=1, varying=ALL, seed=4, missing_steps=(0, 7, -1)),
    Case("N4D3-diffuse2", 4, 3, 10, K=2, seed=5, missing_steps=(1,), diffuse_basis="unit"),
    Case("N3D1-mixed-diffuse2", 3, 1, 20, K=2, varying=("transition", "observation", "transition_cov"), seed=6,
         missing_steps=(0, 2, -1)),
    # Structured models with the shapes of the random cases above (so no extra jit compilations):
    # singular transition covariance (deterministic slope and regression coefficient) ...
    Case("deterministic-proper", 3, 2, 16, varying=ALL, seed=7, missing_steps=(4, -1), builder="deterministic"),
    # ... and with them diffuse and zero proper prior variance: every predicted covariance is singular
    Case("deterministic-diffuse2", 3, 1, 20, K=2, varying=("transition", "observation", "transition_cov"), seed=8,
         missing_steps=(1,), p_missing=0.1, builder="deterministic"),
    # local level, diffuse level: identified by its first observation with dE[y]/d delta = 1
    Case("local-level-diffuse1", 1, 1, 12, K=1, seed=9, missing_steps=(0, 5), builder="local_level"),
]
PROPER = [c for c in CASES if c.K == 0]
DIFFUSE = [c for c in CASES if c.K > 0]
BY_NAME = {c.name: c for c in CASES}


def _psd(rng, n, scale, floor):
    a = rng.normal(size=(n, n))
    return scale * a @ a.T / n + floor * np.eye(n)


def _stable(F):
    """Cap the spectral radius at 1 so that the state (and the oracle's covariances) stay O(1)."""
    return F / max(1.0, np.max(np.abs(np.linalg.eigvals(F))))


def _sqrt(a):
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return v * np.sqrt(np.maximum(w, 0.0))


def make_system(case: Case):
    """NumPy system arrays, prior (m0, P0, B), data y and mask for ``case`` (deterministic)."""
    rng = np.random.default_rng(case.seed)
    N, D, T, K = case.N, case.D, case.T, case.K
    if case.builder != "random":
        arrays, m0, P0, B = _STRUCTURED[case.builder](rng, case)
        arrays = kalman.StateSpaceArrays(  # give the listed arrays a time axis (if they lack one)
            *(np.broadcast_to(a, (T,) + a.shape).copy() if f in case.varying and a.ndim == nd else a
              for f, a, nd in zip(FIELDS, arrays, (2, 2, 1, 2, 2, 1)))
        )
        assert B.shape == (N, K) and arrays.observation.shape[-2:] == (D, N)
        return _finish(rng, case, arrays, m0, P0, B)
    makers = {
        "transition": lambda: _stable(0.3 * np.eye(N) + 0.6 * rng.normal(size=(N, N)) / np.sqrt(N)),
        "transition_cov": lambda: _psd(rng, N, 0.3, 0.05),
        "transition_offset": lambda: 0.3 * rng.normal(size=N),
        "observation": lambda: rng.normal(size=(D, N)),
        "observation_cov": lambda: _psd(rng, D, 0.3, 0.2),
        "observation_offset": lambda: rng.normal(size=D),
    }
    arrays = kalman.StateSpaceArrays(
        *(np.stack([makers[f]() for _ in range(T)]) if f in case.varying else makers[f]() for f in FIELDS)
    )
    m0 = rng.normal(size=N)
    if K == 0:
        P0, B = _psd(rng, N, 1.0, 0.1), np.zeros((N, 0))
    elif case.diffuse_basis == "random":
        P0, B = _psd(rng, N, 0.5, 0.0), rng.normal(size=(N, K))
    else:
        B = np.eye(N)[:, :K]
        P0 = np.zeros((N, N))
        P0[K:, K:] = _psd(rng, N - K, 1.0, 0.1)
    return _finish(rng, case, arrays, m0, P0, B)


def _finish(rng, case, arrays, m0, P0, B):
    """Simulate y (with a random diffuse vector) and draw the mask."""
    T, D, K = case.T, case.D, case.K
    y, _ = simulate_numpy(rng, arrays, m0 + B @ (3.0 * rng.normal(size=K)), P0, T)
    mask = rng.random((T, D)) >= case.p_missing
    for s in case.missing_steps:
        mask[s] = False
    return arrays, m0, P0, B, y, mask


def _deterministic(rng, case):
    """x = (level, slope, beta): level a random walk with drift slope, slope and beta constant, so
    Q = diag(q, 0, 0) is singular; y_t = level_t + u_t beta (+ slope, when D = 2) with a regressor u_t.
    Proper: P0 full rank. Diffuse (K = 2): slope and beta diffuse, P0 = diag(p, 0, 0)."""
    T, D = case.T, case.D
    u = rng.normal(size=T)
    rows = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]][:D]
    H = np.stack([np.array(rows) * np.array([1.0, 1.0, ut]) for ut in u])
    arrays = kalman.StateSpaceArrays(
        np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), np.diag([0.3, 0.0, 0.0]),
        np.array([0.1, 0.0, 0.0]), H, 0.5 * np.eye(D), np.full(D, 0.2),
    )
    m0 = np.array([1.0, 0.2, -0.5])
    if case.K == 0:
        return arrays, m0, np.diag([1.0, 0.1, 1.0]), np.zeros((3, 0))
    return arrays, m0, np.diag([1.0, 0.0, 0.0]), np.eye(3)[:, 1:]


def _local_level(rng, case):
    arrays = kalman.StateSpaceArrays(np.eye(1), [[0.5]], np.zeros(1), np.eye(1), [[1.3]], np.zeros(1))
    return kalman.StateSpaceArrays(*(np.asarray(a, float) for a in arrays)), np.zeros(1), np.zeros((1, 1)), np.ones((1, 1))


_STRUCTURED = {"deterministic": _deterministic, "local_level": _local_level}


def simulate_numpy(rng, arrays, m0, P0, T):
    N = m0.shape[0]
    x = m0 + _sqrt(P0) @ rng.normal(size=N)
    ys, xs = [], []
    for t in range(T):
        F, Q, c, H, R, d = system_at(arrays, t)
        xs.append(x)
        ys.append(H @ x + d + _sqrt(R) @ rng.normal(size=H.shape[0]))
        x = F @ x + c + _sqrt(Q) @ rng.normal(size=N)
    return np.array(ys), np.array(xs)


def to_jax(arrays, m0, P0, B, y, mask):
    """JAX inputs; call under float64 (the autouse fixture)."""
    ja = kalman.StateSpaceArrays(*(jnp.asarray(a, jnp.float64) for a in arrays))
    init = kalman.InitialState(jnp.asarray(m0, jnp.float64), jnp.asarray(P0, jnp.float64), jnp.asarray(B, jnp.float64))
    return ja, init, jnp.asarray(y, jnp.float64), jnp.asarray(mask, bool)


# ----------------------------------------------------------------------------------------------
# Kernel pipeline (one jit per input shape) and cached oracle results
# ----------------------------------------------------------------------------------------------


@jax.jit
def pipeline(arrays, init, y, mask):
    res = kalman.kalman_filter(arrays, init, y, mask)
    predicted = kalman.collapse_predicted(res)
    return dict(
        loglik=kalman.log_likelihood(arrays, init, y, mask),
        loglik_from_filter=kalman.diffuse_log_likelihood(jnp.sum(res.information, 0), jnp.sum(res.log_norm)),
        filtered=kalman.collapse_filtered(res),
        predicted=predicted,
        smoothed=kalman.rts_smoother(arrays, res, mask),
        predictive=kalman.predictive_log_density(res, arrays, y, mask),
        predicted_obs=kalman.observation_moments(arrays, predicted),
        result=res,
    )


def _scaled(arrays, theta, xp):
    """Q * exp(theta0), R * exp(theta1), F + theta2 * E_00 (works for NumPy and JAX)."""
    F = arrays.transition
    E = np.zeros(F.shape[-2:])
    E[0, 0] = 1.0
    return arrays._replace(
        transition=F + theta[2] * E,
        transition_cov=arrays.transition_cov * xp.exp(theta[0]),
        observation_cov=arrays.observation_cov * xp.exp(theta[1]),
    )


@functools.partial(jax.jit, static_argnames=("steady_state", "chunk"))
def grad_wrt_theta(theta, arrays, init, y, mask, steady_state=True, chunk=64):
    """Gradient of the lean log-likelihood w.r.t. the parameters of :func:`_scaled`."""
    return jax.grad(
        lambda th: kalman.log_likelihood(_scaled(arrays, th, jnp), init, y, mask, steady_state=steady_state, chunk=chunk)
    )(theta)


# jitted once per input shape: eager grad/vmap of a scan would recompile on every call
simulation_smoother = jax.jit(kalman.simulation_smoother, static_argnums=5)
grad_wrt_data = jax.jit(jax.grad(kalman.log_likelihood, argnums=2))
lean_log_likelihood = jax.jit(kalman.log_likelihood, static_argnames=("steady_state", "chunk"))


def run_kernel(arrays, m0, P0, B, y, mask):
    return jax.tree.map(np.asarray, pipeline(*to_jax(arrays, m0, P0, B, y, mask)))


@functools.cache
def system(name):
    return make_system(BY_NAME[name])


@functools.cache
def kernel_out(name):
    return run_kernel(*system(name))


@functools.cache
def oracle(name):
    arrays, m0, P0, B, y, mask = system(name)
    if B.shape[1] == 0:
        return dense_posterior(arrays, m0, P0, y, mask)
    return diffuse_limit(arrays, m0, P0, B, y, mask)


def expected(case):
    """``(oracle DenseResult, valid_filtered, valid_predicted, valid_all, rtol, atol)`` for a case."""
    orc = oracle(case.name)
    T = case.T
    if case.K == 0:
        ones = np.ones(T, bool)
        return orc, ones, ones, True, RTOL, ATOL
    return orc.limit, orc.identified_filtered, orc.identified_predicted, orc.identified_all, DIFFUSE_RTOL, DIFFUSE_ATOL


# ----------------------------------------------------------------------------------------------
# Sanity of the test set-up itself
# ----------------------------------------------------------------------------------------------


def test_cases_cover_the_interesting_patterns():
    partial = full_missing = False
    for case in CASES:
        *_, mask = system(case.name)
        n = mask.sum(1)
        partial |= bool(np.any((n > 0) & (n < case.D)))
        full_missing |= bool(np.any(n == 0))
    assert partial and full_missing
    # some diffuse case is unidentified for a while (valid must be False there)
    assert any(not oracle(c.name).identified_filtered[:2].all() for c in DIFFUSE)


@pytest.mark.parametrize("case", DIFFUSE, ids=str)
def test_kappa_oracle_is_converged(case):
    """The oracle's own error estimate is well below the comparison tolerance where a limit exists."""
    orc = oracle(case.name)
    lim, err = orc.limit, orc.error
    vf, vp = orc.identified_filtered, orc.identified_predicted

    def small(e, x):
        return np.all(np.asarray(e) <= 0.5 * DIFFUSE_TOL * (1.0 + np.abs(x)))

    assert small(err.log_marginal, lim.log_marginal)
    assert small(err.smoothed_mean, lim.smoothed_mean) and small(err.smoothed_cov, lim.smoothed_cov)
    assert small(err.filtered_mean[vf], lim.filtered_mean[vf]) and small(err.filtered_cov[vf], lim.filtered_cov[vf])
    assert small(err.predicted_mean[vp], lim.predicted_mean[vp])
    assert small(err.predicted_cov[vp], lim.predicted_cov[vp])
    assert small(err.predictive_logpdf[vp], lim.predictive_logpdf[vp])
    assert small(err.predictive_obs_mean[vp], lim.predictive_obs_mean[vp])
    assert small(err.predictive_obs_cov[vp], lim.predictive_obs_cov[vp])
    # and it really is a limit: the same entries at a single moderate kappa are already close
    single = diffuse_limit(*system(case.name), kappas=[1e5])
    assert_allclose(single.limit.smoothed_mean, lim.smoothed_mean, rtol=1e-5, atol=1e-5)


def test_nile_diffuse_likelihood_convention():
    """Kernel, kappa-limit oracle and statsmodels (+ 0.5 log 2 pi per diffuse state) agree on Nile."""
    sm = pytest.importorskip("statsmodels.api")
    y = sm.datasets.nile.load_pandas().data["volume"].to_numpy()
    params = (15099.0, 1469.1)
    arrays = kalman.StateSpaceArrays(np.eye(1), [[params[1]]], np.zeros(1), np.eye(1), [[params[0]]], np.zeros(1))
    arrays = kalman.StateSpaceArrays(*(np.asarray(a, float) for a in arrays))
    m0, P0, B = np.zeros(1), np.zeros((1, 1)), np.ones((1, 1))
    mask = np.ones((100, 1), bool)
    out = run_kernel(arrays, m0, P0, B, y[:, None], mask)
    # kappa relative to the data scale (variances ~1e4): 1e9 gives an extrapolation error ~1e-12
    orc = diffuse_limit(arrays, m0, P0, B, y[:, None], mask, kappas=[1e9], per_step=False)
    ucm = sm.tsa.UnobservedComponents(y, "local level", use_exact_diffuse=True)
    sm_ll = ucm.loglike(list(params))
    assert_allclose(out["loglik"], -632.5456, atol=5e-5)  # the value quoted in kalman.py, to its digits
    assert_allclose(out["loglik"], sm_ll + 0.5 * np.log(2 * np.pi), rtol=1e-11)
    assert_allclose(orc.limit.log_marginal, sm_ll + 0.5 * np.log(2 * np.pi), rtol=1e-10)
    assert_allclose(out["loglik"], orc.limit.log_marginal, rtol=1e-10)
    # smoothed level and its variance against statsmodels and the oracle (scale ~1e3: relative tolerances)
    smooth = ucm.smooth(list(params))
    assert_allclose(out["smoothed"].mean[:, 0], smooth.smoothed_state[0], rtol=1e-9)
    assert_allclose(out["smoothed"].cov[:, 0, 0], smooth.smoothed_state_cov[0, 0], rtol=1e-8)
    assert_allclose(out["smoothed"].mean, orc.limit.smoothed_mean, rtol=1e-8)
    assert_allclose(out["smoothed"].cov, orc.limit.smoothed_cov, rtol=1e-6)
    assert_array_equal(out["filtered"].valid, np.ones(100, bool))
    assert_array_equal(out["predicted"].valid, np.arange(100) > 0)


# ----------------------------------------------------------------------------------------------
# Likelihood, filter, smoother, predictive densities against the dense oracle
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=str)
def test_log_likelihood(case):
    out = kernel_out(case.name)
    exp, *_, rtol, atol = expected(case)
    assert_allclose(out["loglik"], exp.log_marginal, rtol=rtol, atol=atol)
    assert_allclose(out["loglik_from_filter"], exp.log_marginal, rtol=rtol, atol=atol)
    # the lean scan and the full filter do the same arithmetic
    assert_allclose(out["loglik"], out["loglik_from_filter"], rtol=1e-13)


def _long_invariant_system(D, K, T=150, seed=21):
    """Time-invariant F, Q, H, R (the steady-state switch applies) with time-varying offsets."""
    rng = np.random.default_rng(seed)
    N = 2
    arrays = kalman.StateSpaceArrays(
        np.array([[0.8, 0.3], [-0.2, 0.5]]), _psd(rng, N, 0.3, 0.05), 0.3 * rng.normal(size=(T, N)),
        rng.normal(size=(D, N)), _psd(rng, D, 0.3, 0.2), rng.normal(size=(T, D)),
    )
    m0, B = rng.normal(size=N), rng.normal(size=(N, K))
    P0 = _psd(rng, N, 1.0, 0.1)
    y, _ = simulate_numpy(rng, arrays, m0 + B @ rng.normal(size=K), P0, T)
    mask = np.ones((T, D), bool)
    mask[40:44, 0] = False  # a (partially) missing block in one chunk: back to full updates there
    mask[100] = False  # a fully missing step
    y[~mask] = np.nan  # documented as allowed
    return arrays, m0, P0, B, y, mask


@pytest.mark.parametrize("D,K", [(2, 0), (1, 1)])
def test_steady_state_switch_of_lean_likelihood(D, K):
    """Long time-invariant series: the chunked steady-state scan (mean-only updates once the
    covariance has converged, chunk = 16) equals the full recursion and the dense oracle.

    Covariances converge geometrically (|eig F| <= 0.8), to 1e-12 within ~60 steps, so most of the
    150 steps run through the fast branch; the switch is meant to change nothing but round-off.
    """
    arrays, m0, P0, B, y, mask = _long_invariant_system(D, K)
    ja, init, jy, jm = to_jax(arrays, m0, P0, B, y, mask)
    values = {
        (ss, ch): float(lean_log_likelihood(ja, init, jy, jm, steady_state=ss, chunk=ch))
        for ss, ch in [(True, 16), (False, 64)]
    }
    full = values[(False, 64)]
    for v in values.values():
        assert_allclose(v, full, rtol=1e-11)
    # (gradients through the switch vs the full recursion: tests/kernels/test_kalman_steady_state.py)
    if K == 0:
        assert_allclose(full, dense_log_marginal(arrays, m0, P0, y, mask), rtol=RTOL)
    else:
        # delta is weakly identified here (stationary F: it only shows in the first steps), so the
        # O(1/kappa^2) remainder of the two-point extrapolation is ~4e3/kappa^2: use kappa = 3e6
        # (remainder ~4e-10) and check convergence against kappa = 3e5 (remainder ~4e-8 < 1e-9 * 125)
        oracle_ll = diffuse_log_marginal(arrays, m0, P0, B, y, mask, kappa=3e6)
        assert_allclose(diffuse_log_marginal(arrays, m0, P0, B, y, mask, kappa=3e5), oracle_ll, rtol=1e-9)
        assert_allclose(full, oracle_ll, rtol=1e-9)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_filter_result_conventions(case):
    """The documented layout of FilterResult, checked with NumPy from its own fields."""
    res = kernel_out(case.name)["result"]
    arrays, m0, P0, B, y, mask = system(case.name)
    T, D, K = case.T, case.D, case.K
    assert res.predicted_mean.shape == (T, case.N, 1 + K) and res.innovation.shape == (T, D, 1 + K)
    assert_allclose(res.predicted_mean[0], np.column_stack([m0, B]), rtol=0, atol=0)
    assert_allclose(res.predicted_cov[0], P0, rtol=0, atol=0)
    for t in range(T):
        F, Q, c, H, R, d = system_at(arrays, t)
        miss = ~mask[t]
        V, S = res.innovation[t], res.innovation_cov[t]
        assert np.all(V[miss] == 0.0)
        assert_allclose(S[np.ix_(miss, miss)], np.eye(miss.sum()), rtol=0, atol=0)
        assert np.all(S[np.ix_(miss, ~miss)] == 0.0)
        obs = mask[t]
        target = np.zeros((obs.sum(), 1 + K))
        target[:, 0] = y[t, obs] - d[obs]
        assert_allclose(V[obs], target - H[obs] @ res.predicted_mean[t], rtol=1e-12, atol=1e-12)
        assert_allclose(S[np.ix_(obs, obs)], (H @ res.predicted_cov[t] @ H.T + R)[np.ix_(obs, obs)], rtol=1e-12, atol=1e-12)
        assert_allclose(res.information[t], V.T @ np.linalg.solve(S, V), rtol=1e-10, atol=1e-10)
        log_norm = -0.5 * (obs.sum() * np.log(2 * np.pi) + np.linalg.slogdet(S)[1])
        assert_allclose(res.log_norm[t], log_norm, rtol=1e-12, atol=1e-12)
        if t + 1 < T:  # the time update: the offset enters column 0 only
            expected_mean = F @ res.filtered_mean[t]
            expected_mean[:, 0] += c
            assert_allclose(res.predicted_mean[t + 1], expected_mean, rtol=1e-12, atol=1e-12)
            assert_allclose(res.predicted_cov[t + 1], F @ res.filtered_cov[t] @ F.T + Q, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_filtered_and_predicted_moments(case):
    out = kernel_out(case.name)
    exp, vf, vp, _, rtol, atol = expected(case)
    assert_array_equal(out["filtered"].valid, vf)
    assert_array_equal(out["predicted"].valid, vp)
    f, p = out["filtered"], out["predicted"]
    assert_allclose(f.mean[vf], exp.filtered_mean[vf], rtol=rtol, atol=atol)
    assert_allclose(f.cov[vf], exp.filtered_cov[vf], rtol=rtol, atol=atol)
    assert_allclose(p.mean[vp], exp.predicted_mean[vp], rtol=rtol, atol=atol)
    assert_allclose(p.cov[vp], exp.predicted_cov[vp], rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_smoothed_moments(case):
    out = kernel_out(case.name)
    exp, _, _, valid_all, rtol, atol = expected(case)
    assert valid_all
    s = out["smoothed"]
    assert_array_equal(s.valid, np.ones(case.T, bool))
    assert_allclose(s.mean, exp.smoothed_mean, rtol=rtol, atol=atol)
    assert_allclose(s.cov, exp.smoothed_cov, rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_predictive_log_density(case):
    out = kernel_out(case.name)
    exp, _, vp, _, rtol, atol = expected(case)
    *_, mask = system(case.name)
    lp = out["predictive"]
    assert np.all(np.isnan(lp[~vp]))
    assert_allclose(lp[vp], exp.predictive_logpdf[vp], rtol=rtol, atol=atol)
    assert np.all(lp[vp & ~mask.any(1)] == 0.0)
    if case.K == 0:  # chain rule: the one-step densities multiply to the joint density
        assert_allclose(np.sum(lp), out["loglik"], rtol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_observation_moments(case):
    """``observation_moments`` of the predicted states = moments of y_t given the observed y before t."""
    out = kernel_out(case.name)
    exp, _, vp, _, rtol, atol = expected(case)
    obs = out["predicted_obs"]
    assert_allclose(obs.mean[vp], exp.predictive_obs_mean[vp], rtol=rtol, atol=atol)
    assert_allclose(obs.cov[vp], exp.predictive_obs_cov[vp], rtol=rtol, atol=atol)


@pytest.mark.parametrize("case", [c for c in DIFFUSE if c.D == 1], ids=str)
def test_predictive_sum_vs_diffuse_likelihood(case):
    """With one observation per step, the NaN (burn-in) steps hold exactly K observed values y_A.

    Then p_flat(y) = p_flat(y_A) p(rest | y_A) and p_flat(y_A) = 1 / |det M_A|, M_A = dE[y_A]/d delta,
    so nansum(predictive) = log L + log|det M_A|.
    """
    out = kernel_out(case.name)
    orc = oracle(case.name)
    *_, mask = system(case.name)
    lp = out["predictive"]
    burn_in = np.isnan(lp)
    assert mask[burn_in].sum() == case.K
    M_A = orc.delta_sensitivity[burn_in][mask[burn_in]]  # (K, K)
    log_det = np.linalg.slogdet(M_A)[1]
    assert_allclose(np.nansum(lp), out["loglik"] + log_det, rtol=1e-10)


def test_predictive_sum_equals_diffuse_loglik_local_level():
    """The docstring's statement: diffuse level identified by its first observation (dE[y]/d delta = 1),
    so the NaN-free predictive densities sum to the diffuse log-likelihood exactly."""
    out = kernel_out("local-level-diffuse1")
    *_, mask = system("local-level-diffuse1")
    lp = out["predictive"]
    first = np.argmax(mask[:, 0])
    assert_array_equal(np.isnan(lp), np.arange(12) <= first)
    assert_allclose(np.nansum(lp), out["loglik"], rtol=1e-12)


@pytest.mark.parametrize("name", ["deterministic-proper", "deterministic-diffuse2"])
def test_singular_transition_cov(name):
    """Q = diag(q, 0, 0); with the diffuse prior every predicted covariance (given delta) has rank 1,
    yet the Durbin-Koopman smoother (which never inverts it) is finite; the generic tests above
    compare these cases' filter and smoother with the oracle."""
    out = kernel_out(name)
    arrays, *_ = system(name)
    assert np.linalg.matrix_rank(arrays.transition_cov[0]) == 1
    if name.endswith("diffuse2"):
        ranks = [np.linalg.matrix_rank(P, tol=1e-10) for P in out["result"].predicted_cov]
        assert max(ranks) == 1
    for leaf in jax.tree.leaves(out["smoothed"]):
        assert np.all(np.isfinite(leaf))


# ----------------------------------------------------------------------------------------------
# Simulation smoother
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["N3D2-varying-diffuse1"])
def test_simulation_smoother_moments(name):
    """Empirical moments of 4000 posterior draws against the dense joint posterior of all states.

    Monte Carlo tolerance: 5 standard errors per entry. For the mean, SE = sqrt(Sigma_ii / n); for a
    sample covariance of Gaussian draws, SE(S_ij) = sqrt((Sigma_ii Sigma_jj + Sigma_ij^2) / n). With
    ~(48 + 48*49/2) ~ 1200 compared entries, P(any |z| > 5) < 1200 * 5.7e-7 < 1e-3 (and the key is fixed).
    The full cross-time covariance is checked, not only the marginal ones the smoother returns.
    """
    case = BY_NAME[name]
    arrays, m0, P0, B, y, mask = system(name)
    n = 4000
    y = np.where(mask, y, np.nan)  # missing entries may hold NaN
    draws = simulation_smoother(jax.random.key(42), *to_jax(arrays, m0, P0, B, y, mask), n)
    draws = np.asarray(draws).reshape(n, -1)
    exp, *_ = expected(case)
    mean, cov = exp.joint_mean, exp.joint_cov
    sd = np.sqrt(np.diag(cov))
    emp_mean = draws.mean(0)
    assert np.all(np.abs(emp_mean - mean) <= 5 * sd / np.sqrt(n))
    emp_cov = np.cov(draws, rowvar=False)
    se = np.sqrt((np.outer(sd**2, sd**2) + cov**2) / n)
    assert np.all(np.abs(emp_cov - cov) <= 5 * se + 1e-12)
    # and the marginal moments the smoother returns are those of the oracle
    s = kernel_out(name)["smoothed"]
    assert_allclose(s.mean.reshape(-1), mean, rtol=1e-6, atol=DIFFUSE_ATOL)


# ----------------------------------------------------------------------------------------------
# Invariances
# ----------------------------------------------------------------------------------------------


def _assert_tree_close(a, b, rtol=1e-12, atol=1e-12):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, z in zip(la, lb):
        assert_allclose(x, z, rtol=rtol, atol=atol, equal_nan=True)


@pytest.mark.parametrize("garbage", ["huge", "random", "nan"])
@pytest.mark.parametrize("case", [BY_NAME["N4D3-mixed"], BY_NAME["N3D1-mixed-diffuse2"]], ids=str)
def test_mask_invariance(case, garbage):
    """Whatever sits in the masked entries of y (NaN included, as documented), nothing changes."""
    arrays, m0, P0, B, y, mask = system(case.name)
    rng = np.random.default_rng(99)
    junk = {"huge": np.full(y.shape, 1e6), "random": 1e3 * rng.normal(size=y.shape), "nan": np.full(y.shape, np.nan)}
    y2 = np.where(mask, y, junk[garbage])
    _assert_tree_close(run_kernel(arrays, m0, P0, B, y2, mask), kernel_out(case.name))
    ja, init, jy, jm = to_jax(arrays, m0, P0, B, y2, mask)
    # the gradient w.r.t. the data is finite, exactly zero on masked entries, and unchanged elsewhere
    g = np.asarray(grad_wrt_data(ja, init, jy, jm))
    g_ref = np.asarray(grad_wrt_data(*to_jax(arrays, m0, P0, B, y, mask)))
    assert np.all(np.isfinite(g)) and np.all(g[~mask] == 0.0)
    assert_allclose(g, g_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [BY_NAME["N3D2-varying"], BY_NAME["N3D2-varying-diffuse1"]], ids=str)
def test_appended_missing_steps_are_forecasts(case):
    """Mask the last h steps: the log-likelihood is that of the first T - h steps alone, and the
    predicted moments there are the h-step forecasts, F and Q iterated by hand."""
    arrays, m0, P0, B, y, mask = system(case.name)
    h = 4
    T = case.T - h
    short = kalman.StateSpaceArrays(*(a[:T] if f in case.varying else a for f, a in zip(FIELDS, arrays)))
    ll_short = lean_log_likelihood(*to_jax(short, m0, P0, B, y[:T], mask[:T]))
    long_mask = mask.copy()
    long_mask[T:] = False
    out = run_kernel(arrays, m0, P0, B, y, long_mask)
    assert_allclose(out["loglik"], ll_short, rtol=1e-12)
    m, P = out["filtered"].mean[T - 1], out["filtered"].cov[T - 1]  # filtering never looks ahead
    for t in range(T, T + h):
        F, Q, c, *_ = system_at(arrays, t - 1)
        m, P = F @ m + c, F @ P @ F.T + Q
        for moments in (out["predicted"], out["filtered"], out["smoothed"]):  # nothing to learn from
            assert_allclose(moments.mean[t], m, rtol=1e-10, atol=1e-10)
            assert_allclose(moments.cov[t], P, rtol=1e-10, atol=1e-10)
        _, _, _, H, R, d = system_at(arrays, t)
        assert_allclose(out["predicted_obs"].mean[t], H @ m + d, rtol=1e-10, atol=1e-10)
        assert_allclose(out["predicted_obs"].cov[t], H @ P @ H.T + R, rtol=1e-10, atol=1e-10)
    assert np.all(out["predictive"][T:] == 0.0)


def test_time_axis_length_is_checked():
    arrays, m0, P0, B, y, mask = system("N3D2-varying")
    ja, init, jy, jm = to_jax(arrays, m0, P0, B, y, mask)
    with pytest.raises(ValueError, match="time axis"):
        kalman.log_likelihood(ja, init, jy[:-1], jm[:-1])


# ----------------------------------------------------------------------------------------------
# Gradients and vmap
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["N1D1-invariant", "N3D2-varying-diffuse1"])
def test_gradient_matches_finite_difference_of_oracle(name):
    """jax.grad of the kernel likelihood vs central differences of the dense (kappa-limit) density.

    Central difference error: h^2/6 |f'''| + eps |f| / h. Proper: h = 1e-5 -> ~1e-10 + 1e-10; tol 1e-6.
    Diffuse: the oracle itself is only good to ~1e-9, so h = 1e-3 -> ~1e-6 + 1e-6; tol 3e-5 abs.
    """
    arrays, m0, P0, B, y, mask = system(name)
    theta0 = np.array([0.1, -0.2, 0.05])
    grad = np.asarray(grad_wrt_theta(jnp.asarray(theta0), *to_jax(arrays, m0, P0, B, y, mask)))
    if B.shape[1] == 0:
        f, h, atol = (lambda th: dense_log_marginal(_scaled(arrays, th, np), m0, P0, y, mask)), 1e-5, 1e-6
    else:
        f, h, atol = (lambda th: diffuse_log_marginal(_scaled(arrays, th, np), m0, P0, B, y, mask, kappa=KAPPA)), 1e-3, 3e-5
    fd = np.array([(f(theta0 + h * e) - f(theta0 - h * e)) / (2 * h) for e in np.eye(3)])
    assert_allclose(grad, fd, rtol=1e-6, atol=atol)


def test_vmap_equals_loop():
    """vmap over a batch of series (different data, masks and parameters) equals a Python loop."""
    arrays, m0, P0, B, y, mask = system("N3D2-varying-diffuse1")
    rng = np.random.default_rng(5)
    ys = np.stack([y, y + rng.normal(size=y.shape), y[::-1].copy()])
    masks = np.stack([mask, rng.random(mask.shape) > 0.3, mask[::-1].copy()])
    masks[:, 0] = False  # keep a burn-in step in each series
    scales = np.array([1.0, 0.5, 2.0])
    batched = kalman.StateSpaceArrays(
        *(np.stack([a * (s if f == "transition_cov" else 1.0) for s in scales]) for f, a in zip(FIELDS, arrays))
    )
    vout = jax.tree.map(np.asarray, batched_core(*to_jax(batched, m0, P0, B, ys, masks)))
    for i in range(3):
        one = kalman.StateSpaceArrays(*(a[i] for a in batched))
        lout = run_kernel(one, m0, P0, B, ys[i], masks[i])  # same shapes as the case: compiled already
        lout = {k: lout[k] for k in vout}
        # batched and unbatched XLA kernels may sum in a different order: round-off only
        _assert_tree_close(jax.tree.map(lambda a: a[i], vout), lout, rtol=1e-10, atol=1e-10)


@jax.jit
def batched_core(arrays, init, y, mask):
    """Filter, lean likelihood and smoother, vmapped over system arrays, data and masks."""

    def one(a, y1, m1):
        res = kalman.kalman_filter(a, init, y1, m1)
        return dict(loglik=kalman.log_likelihood(a, init, y1, m1), result=res, smoothed=kalman.rts_smoother(a, res, m1))

    return jax.vmap(one)(arrays, y, mask)
