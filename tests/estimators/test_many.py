"""Many series: panel fits of the classical estimators, fit_many locally and on dask.

The oracle of a panel fit is the single-series fit of each series (itself tested against
statsmodels in test_statsmodels_parity.py). Both start from the same starting values (computed
from each series' own data) and minimise the same objective: trailing masked padding adds
exactly zero to the log-likelihood and its gradient. The only differences are round-off in the
vmapped arithmetic, so parameters agree to ~1e-8 relative (the BFGS stops at max |gradient| <
1e-7 of the mean negative log-likelihood, and even a different stopping iterate moves an
interior optimum by far less than 1e-6); we assert 1e-6.
"""

import numpy as np
import pandas as pd
import pytest

import tsssm
from tsssm.inference import mle

LENGTHS = (60, 45, 80, 52, 33)


@pytest.fixture(scope="module")
def long_df():
    """Ragged monthly series with different start and end dates, a NaN block in one of them."""
    rng = np.random.default_rng(42)
    frames = []
    for i, n in enumerate(LENGTHS):
        ds = pd.date_range("2000-01-01", periods=n, freq="MS") + pd.DateOffset(months=5 * i)
        level = np.cumsum(rng.normal(0.0, 0.4 + 0.1 * i, n))
        y = level + rng.normal(0.0, 1.0, n)
        if i == 2:
            y[20:26] = np.nan
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=0).sort_values(["unique_id", "ds"])


@pytest.fixture(scope="module")
def panel_fit(long_df):
    return tsssm.LocalLevel(random_state=0).fit(long_df)


def _one(long_df, sid):
    return long_df[long_df.unique_id == sid].set_index("ds")["y"]


def test_per_series_parameters_equal_single_series_fits(long_df, panel_fit):
    ids = list(panel_fit.params_.index)
    assert ids == [f"s{i}" for i in range(len(LENGTHS))]
    assert list(panel_fit.params_.columns) == ["sigma2_irregular", "sigma2_level"]
    assert panel_fit.converged_.all()
    for sid in ids:
        single = tsssm.LocalLevel().fit(_one(long_df, sid))
        got = panel_fit.params_.loc[sid]
        for name, value in single.params_.items():
            np.testing.assert_allclose(got[name], value, rtol=1e-6)
        np.testing.assert_allclose(panel_fit.log_likelihood_[sid], single.log_likelihood_, rtol=0, atol=1e-6)
        np.testing.assert_allclose(panel_fit.aic_[sid], single.aic_, atol=1e-6)
        np.testing.assert_allclose(panel_fit.bic_[sid], single.bic_, atol=1e-6)
        assert panel_fit.nobs_[sid] == single.nobs_


@pytest.mark.slow  # default suite under 10 minutes on 2 cores; CI runs the slow tier too
def test_long_in_long_out_and_own_forecast_origin(long_df, panel_fit):
    fc = panel_fit.forecast(4)
    mean = fc.mean
    assert list(mean.columns) == ["unique_id", "ds", "y"] and len(mean) == 4 * len(LENGTHS)
    for sid in panel_fit.params_.index:
        y = _one(long_df, sid)
        single = tsssm.LocalLevel(random_state=0).fit(y)
        rows = mean[mean.unique_id == sid]
        # each series continues from its own last month
        expected_ds = pd.date_range(y.index[-1], periods=5, freq="MS")[1:]
        assert list(rows.ds) == list(expected_ds)
        ref = single.forecast(4)
        np.testing.assert_allclose(rows.y.to_numpy(), ref.mean.to_numpy().ravel(), rtol=1e-6)
        std = fc.std
        np.testing.assert_allclose(std[std.unique_id == sid].y.to_numpy(), ref.std.to_numpy().ravel(), rtol=1e-6)
        # in-sample predictions and scores: long frames on the series' own times
        pred = panel_fit.predict().mean
        got = pred[pred.unique_id == sid]
        assert list(got.ds) == list(y.index)
        np.testing.assert_allclose(got.y.to_numpy(), single.predict().mean.to_numpy().ravel(), rtol=1e-6, equal_nan=True)
        scores = panel_fit.score_samples()
        np.testing.assert_allclose(
            scores[scores.unique_id == sid].score.to_numpy(), single.score_samples().to_numpy(), rtol=1e-6, atol=1e-9,
            equal_nan=True,
        )
    tidy = fc.to_frame()
    assert {"unique_id", "ds", "mean", "lower_95", "upper_95"} <= set(tidy.columns)
    draws = fc.samples
    assert draws.shape == (1000, len(LENGTHS), 4, 1)
    # joint draws agree with the Gaussian marginals: 1000 draws give the mean to ~0.1 sd (3.5 sd bound)
    z = (draws.mean(axis=0) - fc._mean) / (fc._std / np.sqrt(1000))
    assert np.all(np.abs(z) < 4.5)


def test_score_on_new_panel_and_subset(long_df, panel_fit):
    subset = long_df[long_df.unique_id.isin(["s3", "s1"])]
    score = panel_fit.score(subset)
    assert list(score.index) == ["s1", "s3"]  # first appearance in the sorted frame
    np.testing.assert_allclose(score.to_numpy(), panel_fit.log_likelihood_[["s1", "s3"]].to_numpy(), atol=1e-8)
    states = panel_fit.smooth()
    assert list(states.columns) == ["unique_id", "ds", "level"] and len(states) == sum(LENGTHS)


def test_array_panel_and_compilations_are_bounded():
    rng = np.random.default_rng(7)
    B, T = 12, 40
    values = np.cumsum(rng.normal(0, 0.5, (B, T, 1)), axis=1) + rng.normal(0, 1, (B, T, 1))
    before = mle.TRACE_COUNTS["bfgs_many"]
    model = tsssm.LocalLevel().fit(values)
    first = mle.TRACE_COUNTS["bfgs_many"] - before
    assert first <= 1  # one bucket (length 48, batch 16): at most one new compilation
    assert list(model.params_.index) == list(range(B))
    # ragged lengths 25..40 fall into the buckets 32 and 48: at most two more programs, whatever the data
    frames = [
        pd.DataFrame({"unique_id": b, "ds": np.arange(n), "y": values[b, :n, 0] + 1.0})
        for b, n in enumerate(rng.integers(25, 41, size=B))
    ]
    tsssm.LocalLevel().fit(pd.concat(frames))
    second = mle.TRACE_COUNTS["bfgs_many"] - before
    assert second <= 3
    # new data with the same buckets: no new compilation at all
    tsssm.LocalLevel().fit(pd.concat(frames).assign(y=lambda d: d.y * 2.0))
    assert mle.TRACE_COUNTS["bfgs_many"] - before == second
    assert mle.bucket_length(33) == 48 and mle.bucket_length(32) == 32 and mle.bucket_length(500) == 512


def test_fit_many_local_equals_panel_fit_and_dask(long_df, panel_fit):
    distributed = pytest.importorskip("distributed")
    local = tsssm.fit_many(long_df, tsssm.LocalLevel(), horizon=3, chunk_size=2)
    assert list(local.params.index) == list(panel_fit.params_.index)
    np.testing.assert_allclose(local.params[["sigma2_irregular", "sigma2_level"]], panel_fit.params_, rtol=1e-6)
    np.testing.assert_allclose(local.params.log_likelihood, panel_fit.log_likelihood_, atol=1e-6)
    assert local.params.converged.all()
    np.testing.assert_allclose(local.forecast["mean"], panel_fit.forecast(3).to_frame()["mean"], rtol=1e-6)
    # Threads, not processes: robust on two cores, and both workers share this process' compiled programs.
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        remote = tsssm.fit_many(long_df, tsssm.LocalLevel(), horizon=3, chunk_size=2, client=client)
        only_params = tsssm.fit_many(long_df, tsssm.LocalLevel(), chunk_size=2, client=client)
    # the same function on the same chunks: bit-for-bit the same numbers
    pd.testing.assert_frame_equal(remote.params, local.params, check_exact=True)
    pd.testing.assert_frame_equal(remote.forecast, local.forecast, check_exact=True)
    assert only_params.forecast is None
    pd.testing.assert_frame_equal(only_params.params, local.params, check_exact=True)


def test_panel_errors(long_df, panel_fit):
    with pytest.raises(tsssm.DataError, match="panel"):
        panel_fit.summary()
    with pytest.raises(tsssm.DataError, match="panel"):
        panel_fit.save("/tmp/never_written.npz")
    with pytest.raises(tsssm.DataError, match="were not in the data"):
        panel_fit.score(long_df.assign(unique_id=long_df.unique_id + "_new"))
    with pytest.raises(tsssm.DataError, match="one column"):
        tsssm.LocalLevel().fit(long_df.assign(z=1.0))
    with pytest.raises(tsssm.DataError, match="long frame"):
        tsssm.fit_many(pd.DataFrame({"y": [1.0, 2.0]}), tsssm.LocalLevel())
    with pytest.raises(tsssm.DataError, match="chunk_size"):
        tsssm.fit_many(long_df, tsssm.LocalLevel(), chunk_size=0)
    with pytest.raises(tsssm.DataError, match="fitted on one series"):
        tsssm.LocalLevel().fit(_one(long_df, "s0")).score(long_df)
