"""Exogenous inputs at fit time (to_panel) and for the forecast period (future_inputs)."""

import numpy as np
import pandas as pd
import pytest

from tsssm.data import future_inputs, future_times, to_panel
from tsssm.errors import DataError


@pytest.fixture
def monthly():
    index = pd.date_range("2000-01-01", periods=12, freq="MS")
    return pd.Series(np.arange(12.0), index=index, name="y")


def test_frame_inputs_follow_y(monthly):
    X = pd.DataFrame(
        {"price": np.arange(12.0) * 10, "promo": np.r_[np.zeros(6), np.ones(6)]},
        index=monthly.index,
    )
    panel, meta = to_panel(monthly, X)
    assert meta.input_columns == ("price", "promo") and panel.inputs.shape == (1, 12, 2)
    np.testing.assert_array_equal(panel.inputs[0], X.to_numpy())


def test_inputs_may_cover_more_times_than_y(monthly):
    longer = pd.date_range("1999-06-01", periods=30, freq="MS")
    X = pd.DataFrame({"x": np.arange(30.0)}, index=longer).iloc[
        ::-1
    ]  # order does not matter for lookup
    X = X.sort_index()
    panel, _ = to_panel(monthly, X)
    np.testing.assert_array_equal(panel.inputs[0, :, 0], np.arange(7.0, 19.0))


def test_series_and_array_inputs(monthly):
    panel, meta = to_panel(monthly, pd.Series(np.ones(12), index=monthly.index))
    assert meta.input_columns == ("x0",)
    panel, meta = to_panel(monthly, np.arange(24.0).reshape(12, 2))
    assert meta.input_columns == ("x0", "x1")
    np.testing.assert_array_equal(panel.inputs[0, :, 1], np.arange(1.0, 24.0, 2))


def test_inputs_on_a_completed_grid(monthly):
    y = monthly.drop(monthly.index[[4, 5]])
    panel, _ = to_panel(y, pd.DataFrame({"x": np.arange(10.0) + 1}, index=y.index))
    # the inserted (fully masked) months get 0.0 when X has no row for them
    np.testing.assert_array_equal(panel.inputs[0, :, 0], [1, 2, 3, 4, 0, 0, 5, 6, 7, 8, 9, 10])
    panel, _ = to_panel(y, pd.DataFrame({"x": np.arange(12.0)}, index=monthly.index))
    np.testing.assert_array_equal(panel.inputs[0, :, 0], np.arange(12.0))


def test_array_inputs_for_array_panels():
    y = np.zeros((3, 5, 2))
    X = np.arange(30.0).reshape(3, 5, 2)
    panel, meta = to_panel(y, X)
    np.testing.assert_array_equal(panel.inputs, X)
    _, indexes = future_times(meta, 2)
    np.testing.assert_array_equal(
        future_inputs(meta, np.ones((3, 2, 2)), indexes), np.ones((3, 2, 2))
    )


def test_long_inputs_padding_and_forecast():
    ds = pd.date_range("2000-01-01", periods=4, freq="D")
    y = pd.DataFrame(
        {"unique_id": ["a"] * 4 + ["b"] * 2, "ds": list(ds) + list(ds[:2]), "y": np.arange(6.0)}
    )
    X = y[["unique_id", "ds"]].assign(x=np.arange(6.0) + 1)
    before = X.copy(deep=True)
    panel, meta = to_panel(y, X)
    pd.testing.assert_frame_equal(X, before)
    np.testing.assert_array_equal(panel.inputs[:, :, 0], [[1, 2, 3, 4], [5, 6, 0, 0]])
    _, indexes = future_times(meta, 1)
    Xf = pd.DataFrame(
        {
            "ds": [indexes[1][0], indexes[0][0]],
            "unique_id": ["b", "a"],
            "x": [8.0, 7.0],
            "extra": 0.0,
        }
    )
    before = Xf.copy(deep=True)
    np.testing.assert_array_equal(future_inputs(meta, Xf, indexes), [[[7.0]], [[8.0]]])
    pd.testing.assert_frame_equal(Xf, before)
    with pytest.raises(DataError, match=r"X \(unique_id 'b'\) has no row for 2000-01-03"):
        future_inputs(meta, Xf.assign(ds=[indexes[0][0]] * 2), indexes)
    with pytest.raises(DataError, match="X has no rows for unique_id 'b'"):
        to_panel(y, X[X.unique_id == "a"])
    with pytest.raises(DataError, match="X must be a long frame"):
        to_panel(y, X.set_index("ds"))


def test_future_inputs(monthly):
    X = pd.DataFrame({"a": np.arange(12.0), "b": np.ones(12)}, index=monthly.index)
    _, meta = to_panel(monthly, X)
    _, indexes = future_times(meta, 3)
    Xf = pd.DataFrame({"b": [1.0, 2, 3], "a": [4.0, 5, 6]}, index=indexes[0])
    np.testing.assert_array_equal(future_inputs(meta, Xf, indexes)[0], [[4, 1], [5, 2], [6, 3]])
    np.testing.assert_array_equal(future_inputs(meta, np.ones((3, 2)), indexes), np.ones((1, 3, 2)))
    with pytest.raises(DataError, match=r"fit with exogenous inputs \['a', 'b'\]; pass X"):
        future_inputs(meta, None, indexes)
    with pytest.raises(DataError, match="missing input column 'a'"):
        future_inputs(meta, Xf[["b"]], indexes)
    with pytest.raises(DataError, match=r"has no row for 2001-03-01.*a forecast time"):
        future_inputs(meta, Xf.iloc[:2], indexes)
    with pytest.raises(DataError, match="X has 2 rows but there are 3 times"):
        future_inputs(meta, np.ones((2, 2)), indexes)
    with pytest.raises(DataError, match="X has 3 input columns but the model was fit with 2"):
        future_inputs(meta, np.ones((3, 3)), indexes)
    with pytest.raises(DataError, match=r"X column 'a' at row 2001-02-01.* missing value \(NaN\)"):
        future_inputs(meta, Xf.assign(a=[1.0, np.nan, 3.0]), indexes)
    with pytest.raises(
        DataError, match="X column 'b' at row 2001-01-01 00:00:00 has an infinite value"
    ):
        future_inputs(meta, Xf.assign(b=[np.inf, 1.0, 3.0]), indexes)
    with pytest.raises(DataError, match="X column 'a' at row 2001-02-01 00:00:00 has a missing"):
        future_inputs(meta, np.array([[1.0, 1], [np.nan, 1], [1, 1]]), indexes)
    with pytest.raises(DataError, match=r"X\.index holds numeric times"):
        future_inputs(meta, Xf.reset_index(drop=True), indexes)


def test_future_inputs_without_fit_inputs(monthly):
    _, meta = to_panel(monthly)
    _, indexes = future_times(meta, 2)
    assert future_inputs(meta, None, indexes) is None
    with pytest.raises(DataError, match="fit without exogenous inputs"):
        future_inputs(meta, np.ones((2, 1)), indexes)


@pytest.mark.parametrize(
    ("make_X", "message"),
    [
        (
            lambda y: pd.DataFrame({"x": np.ones(11)}, index=y.index[:11]),
            r"X has no row for 2000-12-01 00:00:00, a time of y \(1 such",
        ),
        (
            lambda y: pd.DataFrame({"x": np.ones(12)}, index=y.index.tz_localize("UTC")),
            r"tz UTC\) but y's are datetime \(tz None",
        ),
        (
            lambda y: pd.DataFrame({"x": [np.nan] + [1.0] * 11}, index=y.index),
            r"X column 'x' at row 2000-01-01.*missing value \(NaN\)",
        ),
        (lambda y: pd.DataFrame({"x": ["a"] * 12}, index=y.index), "X column 'x' has dtype str"),
        (
            lambda y: pd.DataFrame({"x": np.ones(12)}, index=y.index[::-1]),
            r"X.index is not increasing.*X.sort_index\(\)",
        ),
        (lambda y: np.ones(13), "X has 13 rows but there are 12 times"),
        (lambda y: np.ones((2, 12, 1)), "X holds 2 series but y holds 1"),
        (lambda y: pd.DataFrame(index=y.index), "X has no input columns"),
    ],
)
def test_bad_fit_inputs(monthly, make_X, message):
    with pytest.raises(DataError, match=message):
        to_panel(monthly, make_X(monthly))
