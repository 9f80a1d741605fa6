"""Every accepted layout of y converts to a Panel and maps back through PanelMeta.frame."""

import copy

import jax
import numpy as np
import pandas as pd
import pytest

from tsssm.data import Panel, PanelMeta, to_panel


def roundtrip(panel, meta):
    """The frame PanelMeta.frame builds from the observed values (NaN where masked)."""
    return meta.frame(np.where(panel.mask, panel.values, np.nan))


def check_shapes(panel, meta):
    B, T, D = panel.values.shape
    assert panel.times.shape == (B, T) and panel.mask.shape == (B, T, D)
    assert panel.times.dtype == np.float64 and panel.values.dtype == np.float64
    assert panel.mask.dtype == bool
    assert (panel.values[~panel.mask] == 0.0).all()
    assert (np.diff(panel.times, axis=1) > 0).all()
    assert len(meta.series_ids) == B and len(meta.columns) == D
    assert tuple(len(index) for index in meta.indexes) == meta.lengths
    assert max(meta.lengths) == T


@pytest.fixture
def monthly():
    index = pd.date_range("2000-01-01", periods=24, freq="MS")
    values = np.sin(np.arange(24.0))
    values[[3, 10]] = np.nan
    return pd.Series(values, index=index, name="sales")


def test_named_series_roundtrip(monthly):
    panel, meta = to_panel(monthly)
    check_shapes(panel, meta)
    assert meta.layout == "series" and meta.columns == ("sales",)
    assert meta.series_ids == (0,) and meta.index_type == "datetime" and meta.tz is None
    assert panel.inputs is None and meta.input_columns == ()
    assert not panel.mask[0, [3, 10], 0].any() and panel.mask.sum() == 22
    pd.testing.assert_series_equal(roundtrip(panel, meta)["sales"], monthly)


def test_unnamed_series_is_called_y():
    y = pd.Series([1.0, 2.0, np.nan, 4.0])
    panel, meta = to_panel(y)
    assert meta.columns == ("y",) and meta.index_type == "numeric"
    pd.testing.assert_series_equal(roundtrip(panel, meta)["y"], y, check_names=False)


def test_wide_frame_roundtrip():
    index = pd.date_range("2021-01-01", periods=10, freq="D", name="date")
    df = pd.DataFrame({"a": np.arange(10.0), "b": np.r_[np.nan, np.arange(9.0)]}, index=index)
    panel, meta = to_panel(df)
    check_shapes(panel, meta)
    assert (
        meta.layout == "frame" and meta.columns == ("a", "b") and panel.values.shape == (1, 10, 2)
    )
    assert meta.freq == "D" and meta.regular
    pd.testing.assert_frame_equal(roundtrip(panel, meta), df)


def test_tz_aware_frame_roundtrip():
    index = pd.date_range("2021-10-30 22:00", periods=8, freq="h", tz="Europe/Paris")  # DST ends
    df = pd.DataFrame({"load": np.arange(8.0)}, index=index)
    panel, meta = to_panel(df)
    assert meta.tz == "Europe/Paris" and meta.freq == "h" and meta.time_unit == pd.Timedelta("1h")
    np.testing.assert_array_equal(panel.times[0], np.arange(8.0))
    pd.testing.assert_frame_equal(roundtrip(panel, meta), df)
    long = df.reset_index(names="ds").assign(unique_id="s")[["unique_id", "ds", "load"]]
    panel, meta = to_panel(long)
    pd.testing.assert_frame_equal(roundtrip(panel, meta), long)


def test_integer_and_nullable_columns_become_float():
    df = pd.DataFrame(
        {
            "n": [1, 2, 3],
            "m": pd.array([1, None, 3], dtype="Int64"),
            "f": pd.array([0.5, 1.5, None], dtype="Float64"),
        }
    )
    panel, meta = to_panel(df)
    assert panel.values.dtype == np.float64
    np.testing.assert_array_equal(
        panel.mask[0], [[True, True, True], [True, False, True], [True, True, False]]
    )
    expected = pd.DataFrame({"n": [1.0, 2, 3], "m": [1.0, np.nan, 3], "f": [0.5, 1.5, np.nan]})
    pd.testing.assert_frame_equal(roundtrip(panel, meta), expected)


@pytest.mark.parametrize(
    "index",
    [
        pd.RangeIndex(5),
        pd.Index([10, 11, 12, 13, 14]),
        pd.Index([0.0, 0.5, 1.0, 1.5, 2.0]),
        pd.Index([0.0, 0.1, 0.2, 0.3, 0.4]),
    ],
    ids=["range", "int", "float", "float-inexact"],
)
def test_regular_numeric_index(index):
    y = pd.Series([1.0, 2, 3, 4, 5], index=index)
    panel, meta = to_panel(y)
    np.testing.assert_array_equal(panel.times[0], np.arange(5.0))
    assert meta.regular and meta.index_type == "numeric" and meta.freq is None
    assert meta.origin == index[0]
    pd.testing.assert_series_equal(roundtrip(panel, meta)["y"], y, check_names=False)


def test_long_frame_ragged_padding_and_roundtrip():
    a = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": pd.date_range("2000-01-01", periods=6, freq="MS"),
            "y": np.arange(6.0),
        }
    )
    b = pd.DataFrame(
        {
            "unique_id": "b",
            "ds": pd.date_range("2000-03-01", periods=3, freq="MS"),
            "y": [1.0, np.nan, 3.0],
        }
    )
    df = pd.concat([a, b], ignore_index=True)
    panel, meta = to_panel(df)
    check_shapes(panel, meta)
    assert meta.layout == "long" and meta.series_ids == ("a", "b") and meta.lengths == (6, 3)
    np.testing.assert_array_equal(panel.times, [np.arange(6.0), np.arange(2.0, 8.0)])
    np.testing.assert_array_equal(panel.mask[1, :, 0], [True, False, True, False, False, False])
    assert meta.regular and meta.freq == "MS"
    pd.testing.assert_frame_equal(roundtrip(panel, meta), df)


def test_long_frame_interleaved_rows_and_int_ids():
    ds = pd.Index([1.0, 1.0, 2.0, 2.0, 3.5])
    df = pd.DataFrame(
        {"unique_id": [7, 8, 7, 8, 7], "ds": ds, "u": [1.0, 2, 3, 4, 5], "v": [0.0, 1, 0, 1, 0]}
    )
    panel, meta = to_panel(df)
    assert meta.series_ids == (7, 8) and meta.columns == ("u", "v") and meta.lengths == (3, 2)
    np.testing.assert_array_equal(panel.values[:, :, 0], [[1, 3, 5], [2, 4, 0]])
    assert not meta.regular  # 1, 2, 3.5 is irregular
    np.testing.assert_array_equal(panel.times[0], [0.0, 1.0, 2.5])
    np.testing.assert_array_equal(
        panel.times[1], [0.0, 1.0, 2.0]
    )  # padding continues in steps of 1
    expected = df.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    pd.testing.assert_frame_equal(roundtrip(panel, meta), expected)


def test_long_frame_with_one_series_stays_long():
    df = pd.DataFrame(
        {"unique_id": "s", "ds": pd.date_range("2000", periods=3, freq="D"), "y": [1.0, 2, 3]}
    )
    panel, meta = to_panel(df)
    pd.testing.assert_frame_equal(roundtrip(panel, meta), df)


def test_dict_mixed_frequency_alignment():
    monthly = pd.Series(np.arange(12.0), index=pd.date_range("2000-01-01", periods=12, freq="MS"))
    quarterly = pd.Series(
        [10.0, 20.0, 30.0, 40.0], index=pd.date_range("2000-01-01", periods=4, freq="QS")
    )
    panel, meta = to_panel({"ip": monthly, "gdp": quarterly})
    check_shapes(panel, meta)
    assert (
        meta.layout == "dict" and meta.columns == ("ip", "gdp") and panel.values.shape == (1, 12, 2)
    )
    assert meta.freq == "MS" and meta.regular
    assert meta.column_freqs == ("MS", "QS-JAN")
    observed = panel.mask[0, :, 1]
    assert list(meta.indexes[0][observed]) == list(quarterly.index)
    np.testing.assert_array_equal(panel.values[0, observed, 1], quarterly.to_numpy())
    out = roundtrip(panel, meta)
    pd.testing.assert_series_equal(out["ip"], monthly, check_names=False, check_freq=False)
    pd.testing.assert_series_equal(
        out["gdp"].dropna(), quarterly, check_names=False, check_freq=False
    )


def test_dict_union_of_different_dates_is_kept_irregular():
    a = pd.Series([1.0, 2.0], index=pd.to_datetime(["2020-01-01", "2020-01-03"]))
    b = pd.Series([5.0], index=pd.to_datetime(["2020-01-02 06:00"]))
    panel, _ = to_panel({"a": a, "b": b})
    np.testing.assert_array_equal(panel.times[0], [0.0, 1.25, 2.0])
    np.testing.assert_array_equal(panel.mask[0], [[True, False], [False, True], [True, False]])


def test_list_of_series_is_keyed_by_name():
    a = pd.Series([1.0, 2.0, 3.0], name="a")
    _, meta = to_panel([a, pd.Series([4.0, 5.0, 6.0])])
    assert meta.layout == "dict" and meta.columns == ("a", "y1")


@pytest.mark.parametrize(
    ("shape", "columns"),
    [
        ((7,), ("y",)),
        ((7, 1), ("y0",)),
        ((7, 3), ("y0", "y1", "y2")),
        ((2, 7, 3), ("y0", "y1", "y2")),
    ],
)
def test_arrays(shape, columns):
    y = np.arange(np.prod(shape), dtype=float).reshape(shape)
    y.flat[4] = np.nan
    panel, meta = to_panel(y)
    check_shapes(panel, meta)
    B = shape[0] if len(shape) == 3 else 1
    assert meta.layout == "array" and meta.columns == columns and meta.series_ids == tuple(range(B))
    assert meta.time_unit == 1.0 and meta.origin == 0.0 and meta.regular
    np.testing.assert_array_equal(panel.times, np.tile(np.arange(7.0), (B, 1)))
    np.testing.assert_array_equal(np.where(panel.mask, panel.values, np.nan).reshape(shape), y)
    out = roundtrip(panel, meta)
    if B == 1:
        np.testing.assert_array_equal(out.to_numpy().reshape(shape), y)
        assert out.index.equals(pd.RangeIndex(7))
    else:
        assert list(out.columns) == ["unique_id", "ds", *columns]
        np.testing.assert_array_equal(out[list(columns)].to_numpy().reshape(shape), y)


def test_panel_is_a_pytree_and_meta_is_hashable(monthly):
    panel, meta = to_panel(monthly)
    leaves = jax.tree_util.tree_leaves(panel)
    assert len(leaves) == 3  # inputs=None is an empty subtree
    again = to_panel(monthly.copy())[1]
    assert isinstance(meta, PanelMeta) and isinstance(panel, Panel)
    assert meta == again and hash(meta) == hash(again)
    assert meta != to_panel(monthly.iloc[:-1])[1]


def test_frame_rejects_values_of_the_wrong_shape(monthly):
    _, meta = to_panel(monthly)
    with pytest.raises(ValueError, match="do not fit 1 series"):
        meta.frame(np.zeros((1, 5, 1)))


def test_inputs_are_never_mutated(monthly):
    wide = pd.DataFrame({"a": monthly, "b": monthly * 2})
    long = pd.DataFrame(
        {"unique_id": ["x"] * 3 + ["y"] * 2, "ds": [1, 2, 3, 1, 2], "v": [1.0, np.nan, 3, 4, 5]}
    )
    holes = monthly.drop(monthly.index[[5, 6]])
    array = np.array([[1.0, np.nan], [3.0, 4.0]])
    X = pd.DataFrame({"x": np.arange(24.0)}, index=monthly.index)
    inputs = [
        (monthly, X),
        (wide, None),
        (long, None),
        (holes, X),
        ({"m": monthly, "h": holes}, None),
    ]
    for y, x in inputs:
        before = copy.deepcopy((y, x))
        to_panel(y, x)
        for old, new in zip(before, (y, x)):
            if isinstance(old, dict):
                for key in old:
                    pd.testing.assert_series_equal(old[key], new[key])
            elif isinstance(old, pd.Series):
                pd.testing.assert_series_equal(old, new)
            elif isinstance(old, pd.DataFrame):
                pd.testing.assert_frame_equal(old, new)
    before = array.copy()
    to_panel(array)
    np.testing.assert_array_equal(array, before)
