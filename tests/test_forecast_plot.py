"""Forecast.plot: a fan chart per column, with the history given in any of the layouts fit accepts."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

import tsssm


@pytest.fixture(scope="module")
def two_column_forecast():
    rng = np.random.default_rng(0)
    index = pd.date_range("2020-01-01", periods=60, freq="D")
    levels = np.cumsum(rng.normal(size=(60, 2)), axis=0) + [0.0, 50.0]
    frame = pd.DataFrame(levels + rng.normal(size=(60, 2)), index=index, columns=["a", "b"])
    # all parameters fixed: the test is about the chart, not the fit
    fixed = {"transition": np.eye(2), "observation": np.eye(2), "obs_offset": np.zeros(2), "obs_cov": np.eye(2)}
    return frame, tsssm.LinearGaussianSSM(state_dim=2, fixed_params=fixed).fit(frame).forecast(5)


@pytest.mark.parametrize("layout", ["frame", "series", "array"])
def test_plot_draws_the_chosen_column_after_its_history(two_column_forecast, layout):
    frame, fc = two_column_forecast
    history = {"frame": frame, "series": frame["b"], "array": frame.to_numpy()}[layout]
    fig = fc.plot(history, column="b")
    ax = fig.axes[0]
    observed = next(line for line in ax.get_lines() if line.get_label() == "observed")
    np.testing.assert_allclose(observed.get_ydata(), frame["b"].to_numpy())
    mean = next(line for line in ax.get_lines() if line.get_label() == "mean")
    np.testing.assert_allclose(mean.get_ydata(), fc.mean["b"].to_numpy())
    assert ax.get_ylabel() == "b"
    matplotlib.pyplot.close(fig)


def test_plot_rejects_an_unknown_column(two_column_forecast):
    _, fc = two_column_forecast
    with pytest.raises(tsssm.DataError, match="not one of"):
        fc.plot(column="c")
