"""Estimators on irregular timestamps: continuous-time models chosen automatically.

Oracles: parameters of models simulated exactly on an irregular grid (closed-form transitions in
NumPy, independent of the library); the local level's closed-form forecast variance
(filtered variance + sigma2_level * gap + sigma2_irregular); invariance of the likelihood to
inserted missing times; the discrete path on regular data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tsssm

UNIT = pd.Timedelta("1h")


def _irregular_index(n, seed, mean_gap_hours=1.0):
    gaps = np.random.default_rng(seed).exponential(mean_gap_hours, n)
    gaps = np.maximum(gaps, 0.02)  # at least 72 s apart, so the times stay distinct at ns resolution
    return pd.Timestamp("2024-03-01") + pd.to_timedelta(np.cumsum(gaps), unit="h"), gaps


@pytest.fixture(scope="module")
def level_series():
    """Brownian level (0.5 per hour) + noise (1.0), 400 observations ~1 h apart on average."""
    index, gaps = _irregular_index(400, seed=11)
    rng = np.random.default_rng(12)
    level = 50.0 + np.cumsum(rng.normal(0.0, np.sqrt(0.5 * gaps)))
    return pd.Series(level + rng.normal(0.0, 1.0, 400), index=index, name="hr")


@pytest.fixture(scope="module")
def level_fit(level_series):
    return tsssm.LocalLevel(time_unit="1h").fit(level_series)


def test_local_level_recovers_parameters(level_fit):
    """With n = 400 the standard errors are ~10-15%: the truth must lie within 3 of them."""
    assert type(level_fit.model_.components[0]).__name__ == "BrownianLevel"
    assert level_fit.converged_
    se = level_fit.bse_
    for name, truth in {"sigma2_level": 0.5, "sigma2_irregular": 1.0}.items():
        est = float(level_fit.params_[name])
        assert abs(est - truth) < 3.0 * se[name], (name, est, se[name])
        assert se[name] < 0.25 * truth  # and the data are informative


def test_ornstein_uhlenbeck_recovered_through_autoregressive():
    """OU (theta 0.4 per hour, sigma2 0.8 per hour) + small noise, simulated exactly; n = 500.

    ``UnobservedComponents("irregular", autoregressive=1)`` becomes a CAR(1) = OU on irregular data.
    Tolerance: 3 standard errors (~10-20% here)."""
    index, gaps = _irregular_index(500, seed=21)
    rng = np.random.default_rng(22)
    theta, q, r = 0.4, 0.8, 0.05
    x = np.empty(500)
    x[0] = rng.normal(0.0, np.sqrt(q / (2 * theta)))
    for k in range(1, 500):
        f = np.exp(-theta * gaps[k])
        x[k] = f * x[k - 1] + rng.normal(0.0, np.sqrt(q * (1 - f * f) / (2 * theta)))
    y = pd.Series(x + rng.normal(0.0, np.sqrt(r), 500), index=index)
    model = tsssm.UnobservedComponents("irregular", autoregressive=1, time_unit="1h").fit(y)
    assert type(model.model_.components[0]).__name__ == "CAR"
    se = model.bse_
    assert abs(float(model.params_["car"][0]) - theta) < 3.0 * se["car.a1"]
    assert abs(float(model.params_["sigma2_ar"]) - q) < 3.0 * se["sigma2_ar"]


def test_forecast_at_irregular_future_times_matches_closed_form(level_fit, level_series):
    last = level_series.index[-1]
    future = pd.DatetimeIndex([last + pd.Timedelta(h, "h") for h in (0.5, 3.0, 10.25)])
    fc = level_fit.forecast(times=future)
    assert fc.mean.index.equals(future)
    mean, std = level_fit.smooth(return_std=True)
    q, r = float(level_fit.params_["sigma2_level"]), float(level_fit.params_["sigma2_irregular"])
    np.testing.assert_allclose(fc.mean["hr"].to_numpy(), mean["level"].iloc[-1], rtol=1e-12)
    expected = np.sqrt(std["level"].iloc[-1] ** 2 + q * np.array([0.5, 3.0, 10.25]) + r)
    np.testing.assert_allclose(fc.to_frame()["std"].to_numpy(), expected, rtol=1e-10)
    # joint draws (simulation smoother over the time-varying system): 1000 draws estimate a
    # standard deviation with relative error ~ 1/sqrt(2000) = 2.2%; 10% is 4.5 of those
    draws = fc.samples
    assert draws.shape == (1000, 3, 1)
    np.testing.assert_allclose(draws[:, :, 0].std(axis=0), expected, rtol=0.1)
    # an int horizon counts steps of the time unit
    h = level_fit.forecast(3).mean.index
    assert list(h - last) == [UNIT, 2 * UNIT, 3 * UNIT]


def test_inserted_missing_times_change_nothing(level_series, level_fit):
    fixed = {k: float(v) for k, v in level_fit.params_.items()}
    base = tsssm.LocalLevel(time_unit="1h", fixed_params=fixed).fit(level_series)
    extra = level_series.index[:-1] + (level_series.index[1:] - level_series.index[:-1]) / 3
    padded = pd.concat([level_series, pd.Series(np.nan, index=extra[::7])]).sort_index()
    more = tsssm.LocalLevel(time_unit="1h", fixed_params=fixed).fit(padded)
    assert len(padded) > len(level_series)
    assert more.log_likelihood_ == pytest.approx(base.log_likelihood_, abs=1e-10)
    assert base.log_likelihood_ == pytest.approx(level_fit.log_likelihood_, abs=1e-8)


def test_regular_data_keep_the_discrete_models():
    nile = tsssm.datasets.load_nile()
    model = tsssm.LocalLinearTrend(fixed_params={"sigma2_irregular": 15000.0, "sigma2_level": 1500.0, "sigma2_trend": 1.0}).fit(nile)
    assert type(model.model_.components[0]).__name__ == "Trend"
    assert not model.model_.continuous_time


def test_save_load_irregular(tmp_path, level_fit):
    path = level_fit.save(tmp_path / "ll")
    loaded = tsssm.load(path)
    assert type(loaded.model_.components[0]).__name__ == "BrownianLevel"
    assert loaded.log_likelihood_ == pytest.approx(level_fit.log_likelihood_, abs=1e-12)
    pd.testing.assert_frame_equal(loaded.forecast(2).mean, level_fit.forecast(2).mean)


def test_errors(level_series, level_fit):
    with pytest.raises(tsssm.DataError, match=r"ARIMA is a discrete-time model.*UnobservedComponents\(autoregressive=2\)"):
        tsssm.ARIMA(order=(2, 0, 0)).fit(level_series)
    with pytest.raises(tsssm.DataError, match="dummy seasonal.*harmonics="):
        tsssm.UnobservedComponents(seasonal=24).fit(level_series)
    with pytest.raises(tsssm.DataError, match="LinearGaussianSSM is a discrete-time model"):
        tsssm.LinearGaussianSSM().fit(level_series)
    # without time_unit= the unit is inferred (largest of 1 D, 1 h, 1 min, ... below the median gap):
    hours = pd.Series([1.0, 2.0, 1.5, 1.7, 2.2, 1.9], index=pd.Timestamp("2024-01-01") + pd.to_timedelta([0, 2, 5, 6.5, 9, 12], unit="h"))
    minutes = pd.Series(hours.to_numpy(), index=pd.Timestamp("2024-01-01") + pd.to_timedelta([0, 2, 5, 6.5, 9, 12], unit="min"))
    fitted = tsssm.LocalLevel(fixed_params={"sigma2_irregular": 1.0, "sigma2_level": 0.5}).fit(hours)
    assert fitted.meta_.time_unit == UNIT
    with pytest.raises(tsssm.DataError, match="time unit.*pass time_unit="):
        fitted.score(minutes)
    regular = level_series.iloc[:50].reset_index(drop=True)  # numeric 0..49: a regular grid
    fitted = tsssm.LocalLevel(fixed_params={"sigma2_irregular": 1.0, "sigma2_level": 0.5}).fit(regular)
    with pytest.raises(tsssm.DataError, match="regular grid"):
        fitted.forecast(times=[50.5, 52.0])
    with pytest.raises(tsssm.DataError, match="irregular"):
        fitted.score(pd.Series(regular.to_numpy()[:5], index=[0.0, 1.0, 2.5, 4.0, 7.25], name="hr"))


def test_exogenous_inputs_at_irregular_future_times():
    """Regression on X with uneven future times: the level forecast is the same at both times
    (a random walk), so the difference of the means is beta * the difference of the inputs."""
    rng = np.random.default_rng(31)
    index, _ = _irregular_index(80, seed=32, mean_gap_hours=2.0)
    X = pd.DataFrame({"dose": rng.normal(size=80)}, index=index)
    y = pd.Series(np.cumsum(rng.normal(size=80)) * 0.3 + 2.0 * X["dose"].to_numpy() + rng.normal(size=80), index=index, name="y")
    model = tsssm.LocalLevel(time_unit="1h").fit(y, X)
    future = pd.DatetimeIndex([index[-1] + pd.Timedelta(h, "h") for h in (1.5, 4.0)])
    fc = model.forecast(times=future, X=pd.DataFrame({"dose": [1.0, 0.0]}, index=future))
    means = fc.mean["y"].to_numpy()
    assert means[0] - means[1] == pytest.approx(float(model.params_["beta_dose"]), abs=1e-10)
    with pytest.raises(tsssm.DataError, match="X"):
        model.forecast(times=future)
