"""The common estimator API on the classical family: sklearn conventions, results, persistence."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import tsssm
from tsssm.models.components import Seasonal, Trend


@pytest.fixture(scope="module")
def nile():
    return tsssm.datasets.load_nile()


@pytest.fixture(scope="module")
def fitted(nile):
    return tsssm.LocalLevel(random_state=0).fit(nile)


def test_sklearn_conventions(nile):
    model = tsssm.UnobservedComponents("local linear trend", seasonal=4, fixed_params={"sigma2_trend": 0.0})
    params = model.get_params()
    assert params["level"] == "local linear trend" and params["seasonal"] == 4
    twin = clone(model)
    assert twin.get_params() == params and twin is not model
    twin.set_params(seasonal=None)
    assert twin.seasonal is None and model.seasonal == 4
    assert not hasattr(model, "params_")
    assert model.__sklearn_tags__().input_tags.allow_nan


def test_fit_returns_self_and_never_mutates_input(nile):
    y = nile.copy()
    y.iloc[5] = np.nan
    before = y.copy()
    model = tsssm.LocalLevel()
    assert model.fit(y) is model
    pd.testing.assert_series_equal(y, before)


def test_not_fitted_and_bad_arguments(nile, fitted):
    with pytest.raises(tsssm.NotFittedError):
        tsssm.LocalLevel().forecast(3)
    with pytest.raises(tsssm.DataError, match="horizon"):
        fitted.forecast(0)
    with pytest.raises(tsssm.DataError, match="horizon"):
        fitted.forecast()
    with pytest.raises(tsssm.DataError, match="level"):
        fitted.forecast(3).interval(1.5)
    with pytest.raises(tsssm.DataError, match="fixed_params"):
        tsssm.LocalLevel(fixed_params={"sigma2_nope": 1.0}).fit(nile)
    with pytest.raises(tsssm.DataError, match="level="):
        tsssm.UnobservedComponents("wiggly").fit(nile)
    with pytest.raises(tsssm.DataError, match="irregular"):  # LocalLevel takes them (continuous time)
        times = pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-04 07:00", "2020-01-09", "2020-01-10"])
        tsssm.ARIMA().fit(pd.Series([1.0, 2.0, 1.5, 1.7, 2.2], index=times))


def test_all_parameters_fixed_only_filters(nile, fitted):
    fixed = {k: float(v) for k, v in fitted.params_.items()}
    model = tsssm.LocalLevel(fixed_params=fixed).fit(nile)
    assert model.log_likelihood_ == pytest.approx(fitted.log_likelihood_, abs=1e-9)
    assert model.num_params_ == 0


def test_forecast_object(fitted):
    fc = fitted.forecast(5)
    assert list(fc.mean.columns) == ["volume"] and len(fc.mean) == 5
    assert fc.mean.index.equals(pd.date_range("1971", periods=5, freq="YS", name=fc.mean.index.name))
    q = fc.quantile(0.9)["volume"].to_numpy()
    assert np.all(q > fc.mean["volume"].to_numpy())
    frame = fc.to_frame()
    assert {"mean", "std", "lower_80", "upper_80", "lower_95", "upper_95"} <= set(frame.columns)
    assert np.all(frame["lower_95"] < frame["lower_80"]) and np.all(frame["upper_80"] < frame["upper_95"])
    # Joint draws reproduce the exact marginals (Monte Carlo: 4000 draws, 5 standard errors).
    fc = fitted.forecast(5, num_samples=4000)
    draws = fc.samples
    assert draws.shape == (4000, 5, 1)
    std = fc.std["volume"].to_numpy()
    np.testing.assert_array_less(np.abs(draws[:, :, 0].mean(0) - fc.mean["volume"].to_numpy()), 5 * std / np.sqrt(4000))
    np.testing.assert_allclose(draws[:, :, 0].std(0), std, rtol=0.08)


def test_sample_is_reproducible(fitted):
    a = fitted.sample(50, 4, random_state=1)
    b = fitted.sample(50, 4, random_state=1)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 4, 1)


def test_forecast_at_explicit_future_times(fitted):
    times = pd.DatetimeIndex(["1972-01-01", "1975-01-01"])
    fc = fitted.forecast(times=times)
    full = fitted.forecast(5)
    np.testing.assert_allclose(fc.std["volume"].to_numpy(), full.std["volume"].to_numpy()[[1, 4]], rtol=1e-12)


def test_summary_table(fitted):
    table = fitted.summary()
    assert list(table.index) == ["sigma2_irregular", "sigma2_level"]
    assert np.all(table["std_error"] > 0)
    # Observed-information standard errors of the Nile variances (finite-difference check of the Hessian is in tests/inference).
    assert table.loc["sigma2_irregular", "std_error"] == pytest.approx(3146, rel=0.02)
    assert table.attrs["log_likelihood"] == pytest.approx(fitted.log_likelihood_)
    assert fitted.aic_ == pytest.approx(-2 * fitted.log_likelihood_ + 4)
    # BIC counts n = observed values minus diffuse states (docs/classical.md): 100 - 1.
    assert fitted.bic_ == pytest.approx(-2 * fitted.log_likelihood_ + 2 * np.log(99))


def test_save_and_load_round_trip(tmp_path, fitted):
    path = fitted.save(tmp_path / "nile_model")
    loaded = tsssm.load(path)
    assert type(loaded) is type(fitted)
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_allclose(loaded.forecast(3).mean.to_numpy(), fitted.forecast(3).mean.to_numpy(), rtol=1e-12)
    assert loaded.forecast(3).mean.index.equals(fitted.forecast(3).mean.index)


def test_save_and_load_composed_components(tmp_path, nile):
    model = tsssm.UnobservedComponents(components=Trend(stochastic_level=False) + Seasonal(4, harmonics=1)).fit(nile)
    loaded = tsssm.load(model.save(tmp_path / "composed.npz"))
    assert loaded.log_likelihood_ == pytest.approx(model.log_likelihood_)
    np.testing.assert_allclose(loaded.smooth().to_numpy(), model.smooth().to_numpy(), rtol=1e-10)


def test_load_rejects_foreign_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(2))
    with pytest.raises(tsssm.DataError, match="not a tsssm model"):
        tsssm.load(path)


def test_score_on_new_data_and_anomaly_scores(nile, fitted):
    shocked = nile.copy()
    shocked.iloc[50] += 1500.0
    scores = fitted.score_samples(shocked)
    assert scores.idxmax() == nile.index[50]
    assert fitted.score(shocked) < fitted.score()


def test_multivariate_linear_gaussian_ssm_handles_partial_missing():
    rng = np.random.default_rng(0)
    T = 120
    x = np.cumsum(rng.normal(size=T))
    y = np.column_stack([x + 0.3 * rng.normal(size=T), 2.0 * x + 1.0 + 0.3 * rng.normal(size=T)])
    y[rng.random((T, 2)) < 0.15] = np.nan
    frame = pd.DataFrame(y, columns=["a", "b"], index=pd.date_range("2020-01-01", periods=T, freq="D"))
    model = tsssm.LinearGaussianSSM(state_dim=1).fit(frame)
    fc = model.forecast(4)
    assert list(fc.mean.columns) == ["a", "b"]
    assert np.all(np.isfinite(fc.mean.to_numpy()))
    # The two columns are tied by one latent random walk: the forecast keeps b ~ 2a + 1.
    np.testing.assert_allclose(fc.mean["b"], 2 * fc.mean["a"] + 1, atol=0.5)
    assert fc.interval(0.95).columns.nlevels == 2


def test_arima_with_exogenous_round_trip_and_standard_errors(tmp_path, nile):
    X = pd.DataFrame({"dam": (nile.index.year >= 1899).astype(float)}, index=nile.index)
    model = tsssm.ARIMA(order=(1, 0, 0)).fit(nile, X)
    # Parameters on very different scales (a variance of 1e4, an AR coefficient) still get
    # finite standard errors.
    assert np.all(np.isfinite(model.summary()["std_error"]))
    loaded = tsssm.load(model.save(tmp_path / "arima.npz"))
    future = pd.DataFrame({"dam": np.ones(3)}, index=pd.date_range("1971", periods=3, freq="YS"))
    np.testing.assert_allclose(loaded.forecast(3, X=future).mean, model.forecast(3, X=future).mean, rtol=1e-12)


def test_array_input_round_trips_with_its_integer_index(tmp_path, nile):
    model = tsssm.LocalLevel().fit(nile.to_numpy())
    loaded = tsssm.load(model.save(tmp_path / "array.npz"))
    assert loaded.forecast(2).mean.index.equals(model.forecast(2).mean.index)
    assert list(model.forecast(2).mean.index) == [100, 101]


def test_bundled_data_has_provenance():
    assert "public domain" in tsssm.datasets.describe("nile")
    with pytest.raises(ValueError, match="available"):
        tsssm.datasets.describe("nope")
