"""Parity of the classical estimators with statsmodels (the independent oracle).

Conventions: tsssm's exact diffuse log-likelihood equals statsmodels' ``use_exact_diffuse=True``
value plus 0.5*log(2*pi) per diffuse state (statsmodels keeps those constants; see
docs/classical.md). Forecasts, intervals and smoothed states are compared at the *same*
parameters, where both libraries compute the same closed-form Gaussian quantities, so the
tolerance is float64 round-off accumulated over a few hundred filter steps (rtol 1e-7).
Fitted parameters are compared with the published optimum or with the better of the two
optimisers' optima.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import tsssm

HALF_LOG_2PI = 0.5 * np.log(2 * np.pi)


@pytest.fixture(scope="module")
def nile():
    return tsssm.datasets.load_nile()


@pytest.fixture(scope="module")
def co2():
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    monthly = weekly.resample("MS").mean()
    return monthly.loc["1960":"1990"].rename("co2")


@pytest.fixture(scope="module")
def nile_fit(nile):
    return tsssm.LocalLevel().fit(nile)


def _sm_smoothed(y, params, **kwargs):
    mod = sm.tsa.UnobservedComponents(np.asarray(y, float), use_exact_diffuse=True, **kwargs)
    return mod, mod.smooth(np.asarray(params, float))


def test_nile_local_level_matches_published_mle(nile_fit):
    p = nile_fit.params_
    # Durbin & Koopman (2012), sec. 2.10: 15099 and 1469.1; log-likelihood -632.54 (their convention).
    assert p["sigma2_irregular"] == pytest.approx(15099.0, rel=2e-4)
    assert p["sigma2_level"] == pytest.approx(1469.1, rel=2e-4)
    assert nile_fit.log_likelihood_ == pytest.approx(-632.5456, abs=1e-3)
    assert nile_fit.converged_


def test_nile_loglik_and_forecast_equal_statsmodels_at_same_params(nile, nile_fit):
    params = [nile_fit.params_["sigma2_irregular"], nile_fit.params_["sigma2_level"]]
    mod, res = _sm_smoothed(nile, params, level="local level")
    assert nile_fit.log_likelihood_ == pytest.approx(res.llf + HALF_LOG_2PI, abs=1e-8)
    frame = res.get_forecast(8).summary_frame(alpha=0.05)
    fc = nile_fit.forecast(8)
    np.testing.assert_allclose(fc.mean["volume"].to_numpy(), frame["mean"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(fc.std["volume"].to_numpy(), frame["mean_se"].to_numpy(), rtol=1e-7)
    interval = fc.interval(0.95)
    np.testing.assert_allclose(interval["lower"].to_numpy(), frame["mean_ci_lower"].to_numpy(), rtol=1e-7)
    np.testing.assert_allclose(interval["upper"].to_numpy(), frame["mean_ci_upper"].to_numpy(), rtol=1e-7)
    assert list(fc.mean.index.year) == list(range(1971, 1979))


def test_nile_smoothed_state_and_predictions_equal_statsmodels(nile, nile_fit):
    params = [nile_fit.params_["sigma2_irregular"], nile_fit.params_["sigma2_level"]]
    _, res = _sm_smoothed(nile, params, level="local level")
    mean, std = nile_fit.smooth(return_std=True)
    np.testing.assert_allclose(mean["level"].to_numpy(), res.smoothed_state[0], rtol=1e-8)
    np.testing.assert_allclose(std["level"].to_numpy() ** 2, res.smoothed_state_cov[0, 0], rtol=1e-7)
    pred = nile_fit.predict()
    # statsmodels' exact diffuse one-step predictions: step 0 is diffuse (NaN here, infinite there).
    np.testing.assert_allclose(pred.mean["volume"].to_numpy()[1:], res.forecasts[0, 1:], rtol=1e-8)
    np.testing.assert_allclose(pred.std["volume"].to_numpy()[1:] ** 2, res.forecasts_error_cov[0, 0, 1:], rtol=1e-7)
    assert np.isnan(pred.mean["volume"].iloc[0])


def test_score_samples_sum_to_log_likelihood(nile_fit):
    scores = nile_fit.score_samples()
    assert np.isnan(scores.iloc[0])  # diffuse burn-in
    assert -np.nansum(scores.to_numpy()) == pytest.approx(nile_fit.log_likelihood_, abs=1e-8)
    assert nile_fit.score() == pytest.approx(nile_fit.log_likelihood_)


def test_co2_trend_seasonal_matches_statsmodels(co2):
    model = tsssm.UnobservedComponents("local linear trend", seasonal=12).fit(co2)
    names = ["sigma2_irregular", "sigma2_level", "sigma2_trend", "sigma2_seasonal"]
    smod = sm.tsa.UnobservedComponents(co2.to_numpy(), "local linear trend", seasonal=12, use_exact_diffuse=True)
    sm_fit = smod.fit(disp=0, maxiter=2000)
    num_diffuse = 13
    # Both maximise the same function: tsssm's optimum is at least as good as statsmodels'.
    assert model.log_likelihood_ >= sm_fit.llf + num_diffuse * HALF_LOG_2PI - 1e-6
    ours = [float(model.params_[n]) for n in names]
    # And statsmodels evaluates our optimum to the same value (same likelihood function).
    assert smod.loglike(np.array(ours)) + num_diffuse * HALF_LOG_2PI == pytest.approx(model.log_likelihood_, abs=1e-6)
    # The interior variances agree with statsmodels' optimum (the seasonal one sits near 0).
    np.testing.assert_allclose(ours[:2], sm_fit.params[:2], rtol=5e-3)
    res = smod.smooth(np.array(ours))
    frame = res.get_forecast(24).summary_frame(alpha=0.2)
    fc = model.forecast(24)
    np.testing.assert_allclose(fc.mean["co2"].to_numpy(), frame["mean"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(fc.interval(0.8)["upper"].to_numpy(), frame["mean_ci_upper"].to_numpy(), rtol=1e-8)
    assert fc.mean.index[0] == pd.Timestamp("1991-01-01")


def test_missing_block_matches_statsmodels(nile):
    y = nile.copy()
    y.iloc[20:35] = np.nan
    y.iloc[[60, 61, 75]] = np.nan
    model = tsssm.LocalLevel().fit(y)
    smod = sm.tsa.UnobservedComponents(y.to_numpy(), "local level", use_exact_diffuse=True)
    sm_fit = smod.fit(disp=0)
    assert model.log_likelihood_ >= sm_fit.llf + HALF_LOG_2PI - 1e-6
    params = [model.params_["sigma2_irregular"], model.params_["sigma2_level"]]
    res = smod.smooth(np.array(params))
    assert model.log_likelihood_ == pytest.approx(res.llf + HALF_LOG_2PI, abs=1e-8)
    np.testing.assert_allclose(model.smooth()["level"].to_numpy(), res.smoothed_state[0], rtol=1e-8)
    fc = model.forecast(5)
    np.testing.assert_allclose(fc.std["volume"].to_numpy(), res.get_forecast(5).se_mean, rtol=1e-7)
    # In-sample predictions inside the gap are multi-step forecasts from before it.
    pred = model.predict()
    np.testing.assert_allclose(pred.mean["volume"].to_numpy()[1:], res.forecasts[0, 1:], rtol=1e-8)


def test_regression_with_exogenous_matches_statsmodels(nile):
    rng = np.random.default_rng(3)
    X = pd.DataFrame({"dam": (nile.index.year >= 1899).astype(float), "noise": rng.normal(size=len(nile))}, index=nile.index)
    model = tsssm.UnobservedComponents("local level").fit(nile, X)
    smod = sm.tsa.UnobservedComponents(nile.to_numpy(), "local level", exog=X.to_numpy(), use_exact_diffuse=True)
    names = ["sigma2_irregular", "sigma2_level", "beta_dam", "beta_noise"]
    ours = np.array([float(model.params_[n]) for n in names])
    assert smod.loglike(ours) + HALF_LOG_2PI == pytest.approx(model.log_likelihood_, abs=1e-7)
    assert model.log_likelihood_ >= smod.fit(disp=0).llf + HALF_LOG_2PI - 1e-6
    future = pd.DataFrame({"dam": np.ones(3), "noise": [0.1, -0.2, 0.3]}, index=pd.date_range("1971", periods=3, freq="YS"))
    fc = model.forecast(3, X=future)
    expected = smod.smooth(ours).get_forecast(3, exog=future.to_numpy()).summary_frame()
    np.testing.assert_allclose(fc.mean["volume"].to_numpy(), expected["mean"].to_numpy(), rtol=1e-9)
    with pytest.raises(tsssm.DataError):
        model.forecast(3)


@pytest.fixture(scope="module")
def log_gdp():
    data = sm.datasets.macrodata.load_pandas().data
    index = pd.period_range("1959Q1", periods=len(data), freq="Q").to_timestamp(how="start")
    return pd.Series(np.log(data["realgdp"].to_numpy()), index=pd.DatetimeIndex(index, freq="QS-OCT"), name="log_gdp")


def test_arima_on_macro_series_matches_statsmodels(log_gdp):
    model = tsssm.ARIMA(order=(1, 1, 1), trend="c").fit(log_gdp)
    smod = sm.tsa.SARIMAX(log_gdp.to_numpy(), order=(1, 1, 1), trend="c", use_exact_diffuse=True)
    sm_fit = smod.fit(disp=0, maxiter=500)
    names = ["intercept", "ar", "ma", "sigma2"]
    ours = np.concatenate([np.ravel(model.params_[n]) for n in names])
    # Same likelihood function (one diffuse state), and our optimum is at least as good.
    assert smod.loglike(ours) + HALF_LOG_2PI == pytest.approx(model.log_likelihood_, abs=1e-6)
    assert model.log_likelihood_ >= sm_fit.llf + HALF_LOG_2PI - 1e-6
    # The optimum is interior but the ARMA(1,1) surface is flat along the AR/MA ridge, where
    # statsmodels' optimiser stops early: the estimates agree to a small fraction of a standard error.
    se = model.bse_.to_numpy()
    np.testing.assert_array_less(np.abs(ours - sm_fit.params), 0.1 * se)
    frame = smod.smooth(ours).get_forecast(8).summary_frame(alpha=0.05)
    fc = model.forecast(8)
    np.testing.assert_allclose(fc.mean["log_gdp"].to_numpy(), frame["mean"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(fc.interval(0.95)["lower"].to_numpy(), frame["mean_ci_lower"].to_numpy(), rtol=1e-8)
    assert fc.mean.index[0] == pd.Timestamp("2009-10-01")
    assert list(model.summary().index) == ["intercept", "ar.L1", "ma.L1", "sigma2"]


def test_seasonal_arima_with_missing_values_matches_statsmodels(co2):
    y = co2.loc["1975":"1990"].copy()
    y.iloc[30:42] = np.nan
    model = tsssm.ARIMA(order=(0, 1, 1), seasonal_order=(0, 1, 1, 12)).fit(y)
    smod = sm.tsa.SARIMAX(y.to_numpy(), order=(0, 1, 1), seasonal_order=(0, 1, 1, 12), use_exact_diffuse=True)
    ours = np.concatenate([np.ravel(model.params_[n]) for n in ["ma", "ma_seasonal", "sigma2"]])
    num_diffuse = 13
    assert smod.loglike(ours) + num_diffuse * HALF_LOG_2PI == pytest.approx(model.log_likelihood_, abs=1e-6)
    assert model.log_likelihood_ >= smod.fit(disp=0).llf + num_diffuse * HALF_LOG_2PI - 1e-6
    frame = smod.smooth(ours).get_forecast(12).summary_frame()
    np.testing.assert_allclose(model.forecast(12).mean["co2"].to_numpy(), frame["mean"].to_numpy(), rtol=1e-9)
