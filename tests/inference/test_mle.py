"""Maximum-likelihood machinery: constraints, parameter layout, optimum and observed information."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import statsmodels.api as sm

import tsssm
from tsssm._config import float64
from tsssm.inference import mle
from tsssm.models.components import Autoregressive, Cycle, Level, Seasonal, Trend
from tsssm.models.constraints import ParamSpec, constrain, unconstrain
from tsssm.models.lgssm import StructuralModel

HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


@pytest.mark.parametrize(
    "spec, value",
    [
        (ParamSpec("v"), 3.7),
        (ParamSpec("u", "unit"), 0.25),
        (ParamSpec("i", "interval", bounds=(0.1, 2.0)), 1.3),
        (ParamSpec("ar", "stationary", (3,)), np.array([0.5, -0.3, 0.2])),
        (ParamSpec("ma", "invertible", (2,)), np.array([0.4, 0.1])),
        (ParamSpec("c", "covariance", (2, 2)), np.array([[2.0, 0.3], [0.3, 0.5]])),
    ],
)
def test_constraints_round_trip(spec, value):
    with float64():
        back = np.asarray(constrain(spec, jnp.asarray(unconstrain(spec, value))))
    np.testing.assert_allclose(back, value, rtol=1e-10, atol=1e-12)


def test_stationary_map_always_gives_stationary_polynomials():
    rng = np.random.default_rng(0)
    with float64():
        for _ in range(50):
            phi = np.asarray(constrain(ParamSpec("ar", "stationary", (4,)), jnp.asarray(3 * rng.normal(size=4))))
            roots = np.roots(np.r_[1.0, -phi])
            assert np.all(np.abs(roots) < 1.0)


def test_layout_with_fixed_parameters():
    specs = StructuralModel((Trend(), Autoregressive(2))).param_specs()
    layout = mle.ParamLayout.build(specs, {"sigma2_trend": 0.0})
    assert [s.name for s in layout.free] == ["sigma2_irregular", "sigma2_level", "sigma2_ar", "ar"]
    assert layout.labels() == ["sigma2_irregular", "sigma2_level", "sigma2_ar", "ar.L1", "ar.L2"]
    with pytest.raises(tsssm.DataError, match="shape"):
        mle.ParamLayout.build(specs, {"ar": 0.5})


def test_observed_information_matches_finite_differences():
    """The autodiff Hessian behind the standard errors equals a central-difference Hessian."""
    y = tsssm.datasets.load_nile().to_numpy()
    model = StructuralModel((Level(),))
    with float64():
        data = mle.SeriesData(jnp.arange(100.0), jnp.asarray(y)[:, None], jnp.ones((100, 1), bool), None)
        result = mle.fit(model, data)
        labels, estimate, se = mle.standard_errors(model, result.params, data)

        def nll(v):
            return -float(mle.log_likelihood(model, {"sigma2_irregular": v[0], "sigma2_level": v[1]}, data))

        h = estimate * 1e-3
        hess = np.zeros((2, 2))
        for i in range(2):
            for j in range(2):
                ei, ej = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
                hess[i, j] = (nll(estimate + ei + ej) - nll(estimate + ei - ej) - nll(estimate - ei + ej) + nll(estimate - ei - ej)) / (4 * h[i] * h[j])
    # Central differences with a 1e-3 relative step: truncation error ~1e-6 relative.
    np.testing.assert_allclose(se, np.sqrt(np.diag(np.linalg.inv(hess))), rtol=1e-4)
    assert labels == ["sigma2_irregular", "sigma2_level"]


@pytest.mark.parametrize(
    "components, sm_kwargs, params",
    [
        (
            Trend() + Cycle(),
            dict(level="lltrend", cycle=True, damped_cycle=True, stochastic_cycle=True),
            dict(sigma2_irregular=15000.0, sigma2_level=100.0, sigma2_trend=5.0, sigma2_cycle=300.0, frequency_cycle=0.5, damping_cycle=0.8),
        ),
        (
            Level() + Autoregressive(2),
            dict(level="llevel", autoregressive=2),
            dict(sigma2_irregular=15000.0, sigma2_level=1000.0, sigma2_ar=300.0, ar=np.array([0.5, -0.2])),
        ),
        (
            Level() + Seasonal(4, harmonics=2),
            dict(level="llevel", freq_seasonal=[{"period": 4, "harmonics": 2}]),
            dict(sigma2_irregular=15000.0, sigma2_level=1000.0, sigma2_seasonal=30.0),
        ),
        (
            Level() + Seasonal(5),
            dict(level="llevel", seasonal=5),
            dict(sigma2_irregular=15000.0, sigma2_level=1000.0, sigma2_seasonal=30.0),
        ),
    ],
    ids=["trend+cycle", "level+ar2", "level+trig-seasonal", "level+dummy-seasonal"],
)
def test_components_have_statsmodels_likelihood(components, sm_kwargs, params):
    """Every component is the same model as statsmodels' (all parameters fixed: fit only filters)."""
    y = tsssm.datasets.load_nile()
    model = tsssm.UnobservedComponents(components=components, fixed_params=params).fit(y)
    reference = sm.tsa.UnobservedComponents(y.to_numpy(), use_exact_diffuse=True, **sm_kwargs)
    flat = np.concatenate([np.ravel(v) for v in params.values()])
    _, init = model.model_.system({k: jnp.asarray(v) for k, v in model.params_.items()}, jnp.arange(100.0))
    num_diffuse = init.diffuse.shape[1]
    assert model.log_likelihood_ == pytest.approx(reference.loglike(flat) + num_diffuse * HALF_LOG_2PI, abs=1e-7)
    # and the smoothed states agree where the state vectors line up (the first state: level)
    np.testing.assert_allclose(model.smooth().iloc[:, 0], reference.smooth(flat).smoothed_state[0], rtol=1e-7)


def test_an_unbounded_likelihood_is_an_error_not_a_result():
    """Two random walks, a free 2-state model: a noise variance collapses and the exact diffuse
    likelihood grows without bound; the fit must say so instead of reporting ~1e20."""
    rng = np.random.default_rng(0)
    walks = np.cumsum(rng.normal(size=(60, 2)), axis=0) + [0.0, 50.0]
    with pytest.raises(tsssm.NumericalError, match="without bound"), warnings.catch_warnings():
        warnings.simplefilter("ignore", tsssm.ConvergenceWarning)
        tsssm.LinearGaussianSSM(state_dim=2).fit(walks)


def test_long_series_take_the_steady_state_switch_and_agree(monkeypatch):
    """From ``STEADY_STATE_MIN_STEPS`` steps the value takes the kernel's steady-state switch,
    one step shorter the plain recursion; both are the exact likelihood, so on the same
    series they agree to the switch's round-off (rtol 1e-9, see test_kalman_steady_state.py)."""
    monkeypatch.setattr(mle, "STEADY_STATE_MIN_STEPS", 3000)  # the rule, on a test-sized series
    T = 3000
    switches = []
    kernel = mle.kalman.log_likelihood

    def spy(*args, steady_state, **kwargs):
        switches.append(steady_state)
        return kernel(*args, steady_state=steady_state, **kwargs)

    monkeypatch.setattr(mle.kalman, "log_likelihood", spy)
    rng = np.random.default_rng(4)
    y = np.cumsum(rng.normal(size=T)) + 2 * np.sin(np.arange(T) * 2 * np.pi / 12) + rng.normal(size=T)
    model = StructuralModel((Trend(), Seasonal(12)))
    with float64():
        data = mle.SeriesData(jnp.arange(T, dtype=jnp.float64), jnp.asarray(y)[:, None], jnp.ones((T, 1), bool), None)
        params = {k: jnp.asarray(v) for k, v in
                  {"sigma2_irregular": 1.0, "sigma2_level": 0.5, "sigma2_trend": 1e-4, "sigma2_seasonal": 0.02}.items()}
        switched = float(jax.jit(lambda p: mle.log_likelihood(model, p, data))(params))
        monkeypatch.setattr(mle, "STEADY_STATE_MIN_STEPS", 3001)
        plain = float(jax.jit(lambda p: mle.log_likelihood(model, p, data))(params))
    assert switches == [True, False]
    np.testing.assert_allclose(switched, plain, rtol=1e-9)
