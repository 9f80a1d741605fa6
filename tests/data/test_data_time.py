"""Time axis: grid inference and completion, irregular times, units, tz, future times."""

import numpy as np
import pandas as pd
import pytest

from tsssm.data import future_times, to_panel


def series(index, values=None):
    return pd.Series(np.arange(len(index), dtype=float) if values is None else values, index=index)


@pytest.mark.parametrize(
    ("freq", "periods"),
    [
        ("MS", 30),
        ("ME", 30),
        ("QS-JAN", 12),
        ("QE-DEC", 12),
        ("YS-JAN", 10),
        ("D", 40),
        ("h", 50),
        ("B", 30),
        ("W-SUN", 20),
    ],
)
def test_regular_with_holes_is_completed(freq, periods):
    full = pd.date_range("2001-01-01", periods=periods, freq=freq)
    holes = [2, 3, 7, periods - 2]
    y = series(full.delete(holes))
    y.index.freq = None
    panel, meta = to_panel(y)
    assert meta.regular and meta.freq == full.freqstr
    assert meta.indexes[0].equals(full) and meta.lengths == (periods,)
    np.testing.assert_array_equal(panel.times[0], np.arange(periods, dtype=float))
    mask = np.ones(periods, bool)
    mask[holes] = False
    np.testing.assert_array_equal(panel.mask[0, :, 0], mask)
    np.testing.assert_array_equal(panel.values[0, mask, 0], y.to_numpy())


def test_regular_without_freq_attribute_keeps_the_users_index():
    index = pd.DatetimeIndex(["2000-01-01", "2000-02-01", "2000-03-01", "2000-04-01"])
    _, meta = to_panel(series(index))
    assert meta.freq == "MS" and meta.regular
    assert meta.indexes[0].equals(index) and meta.indexes[0].freq is None


def test_numeric_holes_are_completed():
    y = series(pd.Index([0, 2, 3, 6]))
    panel, meta = to_panel(y)
    assert meta.regular and meta.step == 1
    assert list(meta.indexes[0]) == list(range(7))
    np.testing.assert_array_equal(panel.mask[0, :, 0], [1, 0, 1, 1, 0, 0, 1])
    y = series(pd.Index([0.0, 0.5, 2.0]))
    panel, meta = to_panel(y)
    np.testing.assert_array_equal(panel.times[0], np.arange(5.0))
    np.testing.assert_array_equal(meta.indexes[0], [0.0, 0.5, 1.0, 1.5, 2.0])


def test_irregular_datetime_keeps_real_gaps():
    index = pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-04 12:00", "2020-01-11 12:00"])
    panel, meta = to_panel(series(index))
    np.testing.assert_array_equal(panel.times[0], [0.0, 1.0, 3.5, 10.5])
    assert not meta.regular and meta.freq is None
    assert meta.time_unit == pd.Timedelta("1D") and meta.step == pd.Timedelta("1D")
    assert meta.indexes[0].equals(index) and meta.origin == index[0]


def test_irregular_default_unit_follows_the_median_gap():
    index = pd.DatetimeIndex(
        ["2020-01-01 00:00", "2020-01-01 02:18", "2020-01-01 03:00", "2020-01-01 07:00"]
    )
    panel, meta = to_panel(series(index))
    assert meta.time_unit == pd.Timedelta("1h") and meta.freq is None
    np.testing.assert_allclose(panel.times[0], [0.0, 2.3, 3.0, 7.0], rtol=1e-15)


@pytest.mark.parametrize(
    "unit", ["1h", pd.Timedelta(hours=1), "h", "60min", "1 hour", np.timedelta64(1, "h")]
)
def test_time_unit_override(unit):
    index = pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-04 12:00"])
    panel, meta = to_panel(series(index), time_unit=unit)
    np.testing.assert_array_equal(panel.times[0], [0.0, 24.0, 84.0])
    assert meta.time_unit == pd.Timedelta("1h")


def test_time_unit_override_on_a_regular_grid_keeps_the_grid():
    y = series(pd.date_range("2000-01-01", periods=3, freq="MS"))
    panel, meta = to_panel(y, time_unit="1D")
    np.testing.assert_array_equal(panel.times[0], [0.0, 31.0, 60.0])
    assert meta.freq == "MS" and not meta.regular
    times, indexes = future_times(meta, 1)
    assert indexes[0][0] == pd.Timestamp("2000-04-01") and times[0, 0] == 91.0


def test_numeric_time_unit_override():
    y = series(pd.Index([0.0, 0.5, 1.0]))
    panel, meta = to_panel(y, time_unit=0.25)
    np.testing.assert_array_equal(panel.times[0], [0.0, 2.0, 4.0])
    times, indexes = future_times(meta, 2)
    np.testing.assert_array_equal(indexes[0], [1.5, 2.0])
    np.testing.assert_array_equal(times[0], [6.0, 8.0])


def test_irregular_numeric_keeps_values():
    y = series(pd.Index([3.0, 4.0, 6.5, 13.5]))
    panel, meta = to_panel(y)
    np.testing.assert_array_equal(panel.times[0], [0.0, 1.0, 3.5, 10.5])
    assert meta.time_unit == 1.0 and meta.origin == 3.0 and not meta.regular


def test_sparse_grid_is_not_completed():
    # whole seconds, but far apart: completing a per-second grid would be mostly empty
    index = pd.Timestamp("2020-01-01") + pd.to_timedelta([0, 1, 600, 7200], unit="s")
    _, meta = to_panel(series(index))
    assert meta.freq is None and meta.lengths == (4,)
    assert meta.time_unit == pd.Timedelta("1min")


def test_tz_aware_index_across_dst():
    index = pd.date_range("2021-03-25", periods=8, freq="D", tz="Europe/Paris")
    y = series(index.delete(4))
    panel, meta = to_panel(y)
    assert meta.tz == "Europe/Paris" and meta.freq == "D" and meta.regular
    assert meta.indexes[0].equals(index)
    np.testing.assert_array_equal(panel.times[0], np.arange(8.0))
    times, future = future_times(meta, 2)
    assert list(future[0]) == list(
        pd.date_range(index[-1], periods=3, freq="D", tz="Europe/Paris")[1:]
    )
    np.testing.assert_array_equal(times[0], [8.0, 9.0])


def test_tz_aware_irregular_hours():
    index = pd.DatetimeIndex(
        ["2021-03-28 00:00", "2021-03-28 03:30", "2021-03-28 05:00"]
    ).tz_localize("Europe/Paris")
    panel, meta = to_panel(series(index))
    np.testing.assert_array_equal(
        panel.times[0], [0.0, 2.5, 4.0]
    )  # real elapsed hours (DST at 02:00)
    times, _ = future_times(
        meta, times=pd.DatetimeIndex(["2021-03-28 07:00"]).tz_localize("Europe/Paris")
    )
    np.testing.assert_array_equal(times, [[6.0]])


@pytest.mark.parametrize(
    ("freq", "first_future"),
    [
        ("MS", "2001-01-01"),
        ("ME", "2001-01-31"),
        ("YS-JAN", "2010-01-01"),
        ("D", "2000-01-13"),
        ("QE-DEC", "2003-03-31"),
    ],
)
def test_future_times_on_calendar_grids(freq, first_future):
    index = {
        "YS-JAN": pd.date_range("2000", periods=10, freq=freq),
        "QE-DEC": pd.date_range("2000-03-31", periods=12, freq=freq),
    }.get(freq, pd.date_range("2000-01-01", periods=12, freq=freq))
    _, meta = to_panel(series(index))
    times, indexes = future_times(meta, 3)
    n = len(index)
    np.testing.assert_array_equal(times, [[n, n + 1.0, n + 2.0]])
    assert indexes[0][0] == pd.Timestamp(first_future)
    assert indexes[0].equals(pd.date_range(first_future, periods=3, freq=freq))


def test_future_times_explicit_irregular_on_a_calendar_grid():
    index = pd.date_range("2000-01-01", periods=12, freq="MS")
    _, meta = to_panel(series(index))
    times, indexes = future_times(
        meta, times=pd.DatetimeIndex(["2001-01-01", "2001-01-16 12:00", "2001-03-01"])
    )
    np.testing.assert_allclose(times, [[12.0, 12.5, 14.0]])
    assert indexes[0][1] == pd.Timestamp("2001-01-16 12:00")


def test_future_times_numeric():
    _, meta = to_panel(series(pd.Index([10, 12, 14, 16])))
    times, indexes = future_times(meta, 2)
    np.testing.assert_array_equal(times, [[4.0, 5.0]])
    assert list(indexes[0]) == [18, 20] and indexes[0].dtype.kind == "i"
    times, indexes = future_times(meta, times=[17, 30.5])
    np.testing.assert_array_equal(times, [[3.5, 10.25]])


def test_future_times_irregular_explicit_and_by_unit():
    index = pd.DatetimeIndex(["2020-01-01", "2020-01-02", "2020-01-04 12:00"])
    _, meta = to_panel(series(index))
    times, indexes = future_times(
        meta, times=[pd.Timestamp("2020-01-05"), pd.Timestamp("2020-01-09 06:00")]
    )
    np.testing.assert_array_equal(times, [[4.0, 8.25]])
    times, indexes = future_times(meta, 2)
    np.testing.assert_array_equal(times, [[4.5, 5.5]])
    assert indexes[0][0] == pd.Timestamp("2020-01-05 12:00")


def test_future_times_continue_each_series_of_a_long_frame():
    df = pd.DataFrame(
        {
            "unique_id": ["a"] * 4 + ["b"] * 2,
            "ds": list(pd.date_range("2000-01-01", periods=4, freq="MS"))
            + list(pd.date_range("2000-06-01", periods=2, freq="MS")),
            "y": np.arange(6.0),
        }
    )
    panel, meta = to_panel(df)
    np.testing.assert_array_equal(panel.times, [[0, 1, 2, 3], [5, 6, 7, 8]])
    times, indexes = future_times(meta, 2)
    np.testing.assert_array_equal(times, [[4, 5], [7, 8]])
    assert indexes[1][0] == pd.Timestamp("2000-08-01")
    out = meta.frame(np.zeros((2, 2, 1)), indexes)
    assert list(out["unique_id"]) == ["a", "a", "b", "b"] and out["ds"].iloc[2] == pd.Timestamp(
        "2000-08-01"
    )


def test_single_observation():
    _, meta = to_panel(series(pd.DatetimeIndex(["2020-05-05"])))
    assert meta.regular and meta.time_unit == pd.Timedelta("1D")
    times, _ = future_times(meta, 2)
    np.testing.assert_array_equal(times, [[1.0, 2.0]])
