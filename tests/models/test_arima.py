"""ARIMAModel against statsmodels' SARIMAX (exact diffuse initialisation) at fixed parameters.

The oracle is ``SARIMAX(..., use_exact_diffuse=True)`` (simple_differencing=False,
Harvey representation, mle_regression=True), whose state vector is the same as ours state for
state, so system matrices, predictions, forecasts and smoothed states compare entry by entry.

Tolerances: both sides run float64 Kalman recursions on the same system, in a different order of
operations (statsmodels' univariate exact-diffuse filter with its P_inf/P_* split vs our augmented
filter; a doubling Lyapunov solve vs statsmodels' direct one), so only rounding separates them.
Measured: predicted/forecast/smoothed moments agree to <= 5e-14 relative, log-likelihoods to
<= 3e-9 absolute (on |ll| ~ 130..700; the largest on the 13-diffuse-state airline model, where the
diffuse log-determinant is taken of a 13 x 13 information matrix built from levels ~ 350 with
innovations ~ 0.3). The tolerances below sit 100-1000x above that noise and many orders below any
modelling mistake (e.g. shifting the time trend by one step moves these log-likelihoods by 5e-3
and 6e-2; a wrong sign, lag, diffuse constant or initial covariance by much more).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import statsmodels.api as sm
from statsmodels.tsa.arima_process import arma_acovf
from statsmodels.tsa.statespace.sarimax import SARIMAX

from tsssm._config import float64
from tsssm.kernels import kalman
from tsssm.kernels.linalg import solve_discrete_lyapunov
from tsssm.models.arima import ARIMAModel
from tsssm.models.constraints import constrain, unconstrain

HORIZON = 12


# --------------------------------------------------------------------------------------- data


@functools.cache
def _macro():
    return sm.datasets.macrodata.load_pandas().data


@functools.cache
def _co2_monthly() -> np.ndarray:
    # weekly -> monthly means (pandas 3 alias "MS"); five months have no data and stay NaN
    return sm.datasets.co2.load_pandas().data["co2"].resample("MS").mean().to_numpy()


class Case(NamedTuple):
    model: ARIMAModel
    y: np.ndarray  # (T,), NaN = missing
    inputs: np.ndarray | None  # (T, U)
    params: dict


def _case(name: str) -> Case:
    mac = _macro()
    infl = mac["infl"].to_numpy()
    if name == "arma11_c_infl":
        params = dict(intercept=0.25, ar=[0.93], ma=[-0.58], sigma2=5.2)
        return Case(ARIMAModel((1, 0, 1), trend="c"), infl, None, params)
    if name == "arima211_t_loggdp":  # time trend of the differenced series: quadratic in levels
        params = dict(drift=1.5e-5, ar=[0.53, 0.16], ma=[-0.19], sigma2=7e-5)
        return Case(ARIMAModel((2, 1, 1), trend="t"), np.log(mac["realgdp"].to_numpy()), None, params)
    if name == "airline_co2":
        params = dict(ar=[0.2], ma=[-0.55], ma_seasonal=[-0.85], sigma2=0.09)
        return Case(ARIMAModel((1, 1, 1), (0, 1, 1, 12)), _co2_monthly(), None, params)
    if name == "sarima_ct_infl":  # seasonal AR and MA on quarterly data, intercept + drift
        params = dict(intercept=0.35, drift=-6e-4, ar=[0.6], ar_seasonal=[0.8], ma_seasonal=[-0.77], sigma2=6.1)
        return Case(ARIMAModel((1, 0, 0), (1, 0, 1, 4), trend="ct"), infl, None, params)
    if name == "exog_logcons":  # regression with ARIMA errors on log disposable income
        x = np.log(mac[["realdpi", "realgovt"]].to_numpy())
        params = dict(intercept=0.006, beta_dpi=0.33, beta_govt=-0.02, ar=[-0.08], ma=[0.11], sigma2=3.9e-5)
        model = ARIMAModel((1, 1, 1), trend="c").with_exog(("dpi", "govt"))
        return Case(model, np.log(mac["realcons"].to_numpy()), x, params)
    if name == "nan_block_airline":  # NaN inside the diffuse start, a 30-month block, and scattered
        y = _co2_monthly().copy()
        y[[3, 200, 201, 350]] = np.nan
        y[100:130] = np.nan
        params = dict(ar=[0.2], ma=[-0.55], ma_seasonal=[-0.85], sigma2=0.09)
        return Case(ARIMAModel((1, 1, 1), (0, 1, 1, 12)), y, None, params)
    raise KeyError(name)


CASES = ["arma11_c_infl", "arima211_t_loggdp", "airline_co2", "sarima_ct_infl", "exog_logcons", "nan_block_airline"]


# ------------------------------------------------------------------------------ statsmodels side


def _sm_model(case: Case, num_steps: int | None = None) -> SARIMAX:
    T = case.y.shape[0] if num_steps is None else num_steps
    m = case.model
    exog = None if case.inputs is None else case.inputs[:T]
    return SARIMAX(
        case.y[:T], exog=exog, order=m.order, seasonal_order=m.seasonal_order, trend=m.trend, use_exact_diffuse=True
    )


def _sm_params(mod: SARIMAX, case: Case) -> np.ndarray:
    """Our parameter dict as statsmodels' parameter vector (names as in ``mod.param_names``)."""
    params = case.params
    exog_names = list(mod.exog_names or [])
    s = mod.seasonal_periods
    out = []
    for name in mod.param_names:
        if name.startswith("ar.S.L"):
            out.append(params["ar_seasonal"][int(name[6:]) // s - 1])
        elif name.startswith("ma.S.L"):
            out.append(params["ma_seasonal"][int(name[6:]) // s - 1])
        elif name.startswith("ar.L"):
            out.append(params["ar"][int(name[4:]) - 1])
        elif name.startswith("ma.L"):
            out.append(params["ma"][int(name[4:]) - 1])
        elif name in exog_names:
            out.append(params[f"beta_{case.model.exog[exog_names.index(name)]}"])
        else:
            out.append(params[name])
    return np.asarray(out, float)


# ------------------------------------------------------------------------------------ tsssm side


@eqx.filter_jit
def _system(model, params, times, inputs=None):
    return model.system(params, times, inputs)


@eqx.filter_jit
def _run(model, params, y, mask, inputs):
    """Everything we compare, in one compiled function per model structure and length."""
    times = jnp.arange(y.shape[0], dtype=y.dtype)
    arrays, init = model.system(params, times, inputs)
    y0 = jnp.where(mask, y, 0.0)
    result = kalman.kalman_filter(arrays, init, y0, mask)
    predicted = kalman.observation_moments(arrays, kalman.collapse_predicted(result))
    smoothed = kalman.rts_smoother(arrays, result, mask)
    loglike = kalman.log_likelihood(arrays, init, y0, mask)
    return loglike, predicted, smoothed, arrays, init


def _tsssm(case: Case, num_steps: int | None = None):
    """Run on the first ``num_steps`` observations plus masked steps up to the full length."""
    T = case.y.shape[0]
    y = case.y.copy()
    if num_steps is not None:
        y[num_steps:] = np.nan
    with float64():
        params = {k: jnp.asarray(v, jnp.float64) for k, v in case.params.items()}
        inputs = None if case.inputs is None else jnp.asarray(case.inputs, jnp.float64)
        yy = jnp.asarray(y, jnp.float64).reshape(T, 1)
        out = _run(case.model, params, yy, jnp.isfinite(yy), inputs)
        return jax.tree.map(np.asarray, out)


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return _case(request.param)


# ---------------------------------------------------------------------------------------- tests


def test_system_matrices_equal_statsmodels(case):
    mod = _sm_model(case)
    mod.update(_sm_params(mod, case))
    ssm = mod.ssm
    _, _, _, arrays, init = _tsssm(case)
    T = case.y.shape[0]
    np.testing.assert_allclose(arrays.transition, ssm.transition[:, :, 0], atol=1e-14)
    selection = ssm.selection[:, :, 0]
    np.testing.assert_allclose(arrays.transition_cov, selection @ ssm.state_cov[:, :, 0] @ selection.T, rtol=1e-13, atol=0)
    np.testing.assert_allclose(arrays.observation, ssm.design[:, :, 0], atol=0)
    np.testing.assert_allclose(arrays.observation_cov, ssm.obs_cov[:, :, 0], atol=0)
    c = np.broadcast_to(arrays.transition_offset, (T, arrays.transition.shape[0]))
    np.testing.assert_allclose(c, np.broadcast_to(ssm.state_intercept.T, c.shape), rtol=1e-13, atol=1e-300)
    d = np.broadcast_to(arrays.observation_offset, (T, 1))
    np.testing.assert_allclose(d, np.broadcast_to(ssm.obs_intercept.T, d.shape), rtol=1e-13, atol=1e-300)
    # statsmodels' initialisation: mean, diffuse part P_inf and stationary part P_*
    mean, p_inf, p_star = ssm.initialization(model=ssm)
    np.testing.assert_allclose(init.mean, mean, rtol=1e-10, atol=1e-300)
    np.testing.assert_allclose(init.diffuse @ init.diffuse.T, p_inf, atol=0)
    np.testing.assert_allclose(init.cov, p_star, rtol=1e-9, atol=1e-12 * np.abs(p_star).max())
    assert case.model.num_diffuse == init.diffuse.shape[1]
    assert len(case.model.state_names()) == arrays.transition.shape[0] == mod.k_states


def test_log_likelihood_equals_statsmodels_exact_diffuse(case):
    """Ours = statsmodels' exact-diffuse loglike + 0.5 log(2 pi) per diffuse (differencing) state."""
    mod = _sm_model(case)
    expected = mod.loglike(_sm_params(mod, case)) + 0.5 * math.log(2 * math.pi) * case.model.num_diffuse
    loglike = _tsssm(case)[0]
    np.testing.assert_allclose(loglike, expected, rtol=1e-11, atol=5e-8)


def test_one_step_predictions_and_smoother_equal_statsmodels(case):
    mod = _sm_model(case)
    res = mod.smooth(_sm_params(mod, case), cov_type="none")
    _, predicted, smoothed, _, _ = _tsssm(case)
    valid = predicted.valid
    # we are undefined exactly while the diffuse states are not identified; statsmodels then
    # reports its (P_inf-free) diffuse-period moments, which are not comparable
    assert not valid[: case.model.num_diffuse].any() and valid[-1]
    pred = res.get_prediction()
    scale = np.nanstd(case.y)
    np.testing.assert_allclose(predicted.mean[valid, 0], pred.predicted_mean[valid], rtol=1e-11, atol=1e-11 * scale)
    np.testing.assert_allclose(predicted.cov[valid, 0, 0], pred.var_pred_mean[valid], rtol=1e-11)
    # smoothed states and covariances (the state vectors coincide)
    np.testing.assert_allclose(smoothed.mean, res.smoothed_state.T, rtol=1e-11, atol=1e-11 * scale)
    cov_sm = np.moveaxis(res.smoothed_state_cov, -1, 0)
    np.testing.assert_allclose(smoothed.cov, cov_sm, rtol=1e-9, atol=1e-11 * np.abs(cov_sm).max())


def test_forecasts_equal_statsmodels(case):
    """h-step forecasts: append HORIZON fully masked steps (and the future exog) to the last fit."""
    T = case.y.shape[0]
    n = T - HORIZON
    mod = _sm_model(case, n)
    res = mod.filter(_sm_params(mod, case), cov_type="none")
    exog = None if case.inputs is None else case.inputs[n:]
    fc = res.get_forecast(HORIZON, exog=exog)
    _, predicted, _, _, _ = _tsssm(case, n)
    scale = np.nanstd(case.y)
    np.testing.assert_allclose(predicted.mean[n:, 0], fc.predicted_mean, rtol=1e-11, atol=1e-11 * scale)
    np.testing.assert_allclose(predicted.cov[n:, 0, 0], fc.var_pred_mean, rtol=1e-11)
    assert predicted.valid[n:].all()


def test_start_params_match_statsmodels_and_are_admissible(case):
    m = case.model
    y = case.y[:, None]
    start = m.start_params(y, case.inputs)
    assert set(start) == {spec.name for spec in m.param_specs()}
    for spec in m.param_specs():
        value = np.asarray(start[spec.name], float)
        assert value.shape == spec.shape and np.all(np.isfinite(value)), spec.name
        if spec.kind in ("stationary", "invertible"):
            sign = 1.0 if spec.kind == "stationary" else -1.0
            assert _max_inverse_root(sign * value) < 1.0, spec.name
    assert start["sigma2"] > 0
    if "drift" in start:  # we align the time-trend regressor with its step; statsmodels does not
        return
    mod = _sm_model(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = mod.start_params
    got = _sm_params(mod, Case(m, case.y, case.inputs, start))
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-12)


def _dense_arma_log_likelihood(x, ar, ma, sigma2):
    """Exact Gaussian log-density of a zero-mean ARMA sample from its Toeplitz covariance."""
    acov = arma_acovf(np.r_[1.0, -np.asarray(ar)], np.r_[1.0, ma], nobs=x.shape[0], sigma2=sigma2)
    chol = scipy.linalg.cho_factor(scipy.linalg.toeplitz(acov), lower=True)
    log_det = 2.0 * np.sum(np.log(np.diagonal(chol[0])))
    return -0.5 * (x.shape[0] * math.log(2 * math.pi) + log_det + x @ scipy.linalg.cho_solve(chol, x))


def test_log_likelihood_equals_dense_oracle():
    """Independent of statsmodels' filter: the diffuse likelihood of an ARIMA equals the exact
    likelihood of the differenced series (differencing has unit Jacobian), computed densely.

    (At these settings statsmodels' own ARMA(1, 3) value is 5e-8 off the dense one, because it
    switches to a steady-state gain once its filter has converged; ours is 1e-12 off.)
    """
    # airline on co2, its 5 empty months filled by interpolation: ll(y) == ll(Delta Delta_12 y)
    case = _case("airline_co2")
    y = case.y.copy()
    idx = np.arange(y.shape[0])
    y[~np.isfinite(y)] = np.interp(idx[~np.isfinite(y)], idx[np.isfinite(y)], y[np.isfinite(y)])
    x = np.diff(y[12:] - y[:-12])
    p = case.params
    ma = np.convolve(np.r_[1.0, p["ma"]], np.r_[1.0, np.zeros(11), p["ma_seasonal"]])[1:]
    expected = _dense_arma_log_likelihood(x, p["ar"], ma, p["sigma2"])
    np.testing.assert_allclose(_tsssm(Case(case.model, y, None, p))[0], expected, rtol=1e-12, atol=1e-8)
    # stationary ARMA(1, 3) on demeaned inflation: no diffuse state at all
    infl = _macro()["infl"].to_numpy()
    params = dict(ar=[0.5], ma=[-0.3, -0.15, -0.1], sigma2=5.0)
    got = _tsssm(Case(ARIMAModel((1, 0, 3)), infl - infl.mean(), None, params))[0]
    expected = _dense_arma_log_likelihood(infl - infl.mean(), [0.5], params["ma"], 5.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9)


def test_time_trend_follows_times():
    """The drift regressor is ``times + trend_offset``: a window of future times alone gives the
    same system as the tail of the full call (what a forecast from a filtered end state needs)."""
    case = _case("sarima_ct_infl")
    with float64():
        params = {k: jnp.asarray(v, jnp.float64) for k, v in case.params.items()}
        times = jnp.arange(20.0)
        full, _ = _system(case.model, params, times)
        tail, _ = _system(case.model, params, times[15:])
        np.testing.assert_allclose(np.asarray(tail.transition_offset), np.asarray(full.transition_offset)[15:], rtol=1e-15)
        c = np.asarray(full.transition_offset)[:, case.model.num_diffuse]
        np.testing.assert_allclose(c, 0.35 - 6e-4 * (np.arange(20) + 1), rtol=1e-14)


# ---------------------------------------------------------------------- structure and constraints


def _max_inverse_root(coefs) -> float:
    """Largest |root| of z^p - c_1 z^(p-1) - ... - c_p (< 1 iff 1 - sum c_i L^i is stable)."""
    coefs = np.atleast_1d(np.asarray(coefs, float))
    return float(np.max(np.abs(np.roots(np.r_[1.0, -coefs])))) if coefs.size else 0.0


def test_param_specs_follow_statsmodels_names():
    m = ARIMAModel((2, 1, 1), (1, 1, 2, 12), trend="ct", exog=("x",))
    specs = m.param_specs()
    assert [s.name for s in specs] == ["intercept", "drift", "beta_x", "ar", "ma", "ar_seasonal", "ma_seasonal", "sigma2"]
    labels = [label for s in specs for label in (s.labels or (s.name,))]
    mod = SARIMAX(np.zeros(60), exog=np.zeros((60, 1)), order=(2, 1, 1), seasonal_order=(1, 1, 2, 12), trend="ct")
    assert labels == ["intercept", "drift", "beta_x"] + mod.param_names[3:]
    assert [s.kind for s in specs[3:7]] == ["stationary", "invertible", "stationary", "invertible"]
    assert m.num_diffuse == 13 and len(m.state_names()) == 13 + 26 == mod.k_states
    assert ARIMAModel((1, 0, 0)).with_exog(["a", "b"]).exog == ("a", "b")
    for bad in (dict(order=(1, 0)), dict(seasonal_order=(1, 0, 0, 1)), dict(trend="x"), dict(order=(-1, 0, 0))):
        with pytest.raises(ValueError):
            ARIMAModel(**bad)


@pytest.mark.parametrize("kind", ["stationary", "invertible"])
def test_constraint_round_trips_and_ma_sign(kind):
    """'invertible' gives statsmodels' MA sign: 1 + theta_1 L + ... has its roots outside the circle."""
    from tsssm.models.constraints import ParamSpec

    rng = np.random.default_rng(0)
    sign = 1.0 if kind == "stationary" else -1.0
    constrain_jit = jax.jit(constrain, static_argnums=0)
    with float64():
        for p in (1, 3, 13):
            spec = ParamSpec("ar", kind, (p,))
            x = rng.standard_normal(p)
            value = np.asarray(constrain_jit(spec, jnp.asarray(x)))
            assert _max_inverse_root(sign * value) < 1.0
            # the inverse Durbin-Levinson recursion divides by 1 - r_k^2: mildly ill-conditioned
            np.testing.assert_allclose(unconstrain(spec, value), x, rtol=1e-8, atol=1e-8)
            np.testing.assert_allclose(np.asarray(constrain_jit(spec, jnp.asarray(unconstrain(spec, value)))), value, atol=1e-12)
    # MA(1): theta in (-1, 1) with statsmodels' sign, e.g. 0.5 round-trips to 0.5
    spec = ParamSpec("ma", kind, (1,))
    with float64():
        assert np.asarray(constrain_jit(spec, jnp.asarray(unconstrain(spec, [0.5]))))[0] == pytest.approx(0.5)


def test_lyapunov_doubling_large_seasonal_state():
    """Weekly SARIMA(1,0,1)(1,0,1,52): 54 ARMA states (the Kronecker solve would be 2916 x 2916)."""
    m = ARIMAModel((1, 0, 1), (1, 0, 1, 52))
    params = dict(ar=[0.7], ma=[0.3], ar_seasonal=[0.95], ma_seasonal=[-0.4], sigma2=2.0)
    with float64():
        arrays, init = _system(m, {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}, jnp.arange(5.0))
        F, Q, P = (np.asarray(a) for a in (arrays.transition, arrays.transition_cov, init.cov))
        # and the dense Kronecker-product solve of vec(P) = (I - F x F)^-1 vec(Q) on a 3 x 3 corner
        F3, Q3 = 0.5 * F[:3, :3], Q[:3, :3]
        dense = np.linalg.solve(np.eye(9) - np.kron(F3, F3), Q3.ravel()).reshape(3, 3)
        np.testing.assert_allclose(solve_discrete_lyapunov(jnp.asarray(F3), jnp.asarray(Q3)), dense, rtol=1e-12)
    assert P.shape == (54, 54)
    np.testing.assert_allclose(P, scipy.linalg.solve_discrete_lyapunov(F, Q), rtol=1e-9, atol=1e-9 * np.abs(P).max())
    np.testing.assert_allclose(P, F @ P @ F.T + Q, rtol=1e-10, atol=1e-12 * np.abs(P).max())


def test_gradient_of_log_likelihood_is_finite():
    case = _case("sarima_ct_infl")  # every kind of parameter but exog: trend, AR, seasonal AR/MA
    specs = case.model.param_specs()
    y = case.y[:120]
    with float64():
        yy = jnp.asarray(np.nan_to_num(y), jnp.float64)[:, None]
        mask = jnp.asarray(np.isfinite(y))[:, None]
        x = {s.name: jnp.asarray(unconstrain(s, case.params[s.name])) for s in specs}

        def loglike(x):
            params = {s.name: constrain(s, x[s.name]) for s in specs}
            arrays, init = case.model.system(params, jnp.arange(120.0))
            return kalman.log_likelihood(arrays, init, yy, mask)

        grad = jax.jit(jax.grad(loglike))(x)
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grad.values())
