"""Bad input raises DataError (a ValueError) naming the column / row / argument and the fix."""

import numpy as np
import pandas as pd
import pytest

from tsssm.data import future_times, to_panel
from tsssm.errors import DataError

MONTHS = pd.date_range("2000-01-01", periods=6, freq="MS")


def long_frame(ds, ids=("a",) * 4, y=(1.0, 2.0, 3.0, 4.0)):
    return pd.DataFrame({"unique_id": list(ids), "ds": ds, "y": list(y)})


BAD_Y = {
    "duplicate timestamp": (
        pd.Series(np.ones(4), index=MONTHS[[0, 1, 1, 2]]),
        r"y.index has a duplicate time 2000-02-01 00:00:00 at row 2; "
        r".*y\[~y.index.duplicated\(\)\]",
    ),
    "non-monotonic": (
        pd.Series(np.ones(4), index=MONTHS[[0, 2, 1, 3]]),
        r"y.index is not increasing: row 2 \(2000-02-01 00:00:00\) comes after "
        r"2000-03-01 00:00:00; sort with y.sort_index\(\)",
    ),
    "NaT in index": (
        pd.Series(np.ones(3), index=pd.DatetimeIndex(["2000-01-01", None, "2000-01-03"])),
        "missing time .* at row 1",
    ),
    "NaN in numeric index": (
        pd.Series(np.ones(3), index=[0.0, np.nan, 2.0]),
        "missing time .* at row 1",
    ),
    "all-missing column": (
        pd.DataFrame({"a": np.ones(6), "b": np.nan}, index=MONTHS),
        "y column 'b' has no observed values \\(all NaN\\); drop it",
    ),
    "inf": (
        pd.Series([1.0, np.inf, 2.0], name="z"),
        "y column 'z' at row 1 has an infinite value; replace it with a finite number or NaN",
    ),
    "-inf in a frame": (
        pd.DataFrame({"a": [1.0, 2.0], "b": [0.0, -np.inf]}, index=MONTHS[:2]),
        "y column 'b' at row 2000-02-01 00:00:00 has an infinite",
    ),
    "object column": (
        pd.DataFrame({"a": np.ones(6), "b": ["x"] * 6}, index=MONTHS),
        "y column 'b' has dtype str, not real numbers; convert it with pd.to_numeric",
    ),
    "object dtype": (pd.Series([1, "a", 2.0], dtype=object), "y column 'y' has dtype object"),
    "bool column": (
        pd.Series([True, False]),
        "y column 'y' is boolean; convert it with .astype\\(float\\)",
    ),
    "empty series": (pd.Series([], dtype=float), "y is empty \\(no rows\\)"),
    "empty frame": (pd.DataFrame({"a": []}, dtype=float), "y is empty"),
    "no columns": (pd.DataFrame(index=MONTHS), "y has no value columns"),
    "duplicate columns": (
        pd.DataFrame(np.ones((6, 2)), index=MONTHS, columns=["a", "a"]),
        "duplicate column 'a'",
    ),
    "string index": (
        pd.Series([1.0, 2.0], index=["2000-01-01", "2000-02-01"]),
        "y.index has dtype str; .*pd.to_datetime",
    ),
    "period index": (
        pd.Series([1.0, 2.0], index=pd.period_range("2000-01", periods=2, freq="M")),
        "PeriodIndex; convert it with .to_timestamp\\(\\)",
    ),
    "multiindex": (
        pd.Series([1.0, 2.0], index=pd.MultiIndex.from_tuples([("a", 1), ("a", 2)])),
        "MultiIndex; pass several series as a long frame",
    ),
    "long without unique_id": (
        pd.DataFrame({"ds": MONTHS, "y": 1.0}),
        "long-format y is missing column 'unique_id'",
    ),
    "long without ds": (
        pd.DataFrame({"unique_id": "a", "y": np.ones(3)}),
        "long-format y is missing column 'ds'",
    ),
    "long without values": (
        pd.DataFrame({"unique_id": "a", "ds": MONTHS}),
        "no value columns besides",
    ),
    "long unsorted": (
        long_frame(MONTHS[[0, 1, 3, 2]]),
        r"'ds' of series 'a' is not increasing: row 3 .*df.sort_values\(\['unique_id', 'ds'\]\)",
    ),
    "long duplicate": (
        long_frame(MONTHS[[0, 1, 1, 2]]),
        r"duplicate time 2000-02-01 00:00:00 at row 2; .*drop_duplicates",
    ),
    "long string ds": (
        long_frame(["2000-01-01"] * 4),
        "column 'ds' has dtype str; .*pd.to_datetime",
    ),
    "long missing id": (
        long_frame(MONTHS[:4], ids=["a", None, "a", "a"]),
        "missing 'unique_id' at row 1",
    ),
    "4-D array": (
        np.ones((2, 3, 4, 5)),
        r"y is a 4-D array of shape \(2, 3, 4, 5\); pass \(T,\), \(T, D\) or \(B, T, D\)",
    ),
    "0-D array": (np.float64(3.0), "y is a 0-D array"),
    "empty array": (np.ones((0, 3)), r"y is empty \(shape \(0, 3\)\)"),
    "bool array": (np.array([True, False]), "y has dtype bool, not real numbers"),
    "inf in array": (
        np.array([[1.0, 2.0], [np.inf, 1.0]]),
        r"y at position \(1, 0\) has an infinite value",
    ),
    "unsupported type": ("abc", "y of type str is not supported; pass a pd.Series"),
    "unsupported set": ({1.0, 2.0}, "y of type set is not supported"),
    "empty dict": ({}, "y is an empty dict"),
    "dict of lists": ({"a": [1.0, 2.0]}, r"y\['a'\] is a list, not a pd.Series"),
    "dict mixed kinds": (
        {"a": pd.Series([1.0], index=MONTHS[:1]), "b": pd.Series([1.0])},
        r"y\['b'\] has numeric times but y\['a'\] has datetime \(tz None\) times",
    ),
    "dict mixed tz": (
        {
            "a": pd.Series([1.0], index=MONTHS[:1]),
            "b": pd.Series([1.0], index=MONTHS[:1].tz_localize("UTC")),
        },
        r"y\['b'\] has datetime \(tz UTC\) times .*tz_localize",
    ),
    "dict unsorted member": (
        {"a": pd.Series([1.0, 2.0], index=MONTHS[[1, 0]])},
        r"y\['a'\].index is not increasing",
    ),
    "list of same-named series": (
        [pd.Series([1.0], name="a"), pd.Series([2.0], name="a")],
        "two Series named 'a'",
    ),
}


@pytest.mark.parametrize(("y", "message"), BAD_Y.values(), ids=BAD_Y.keys())
def test_bad_y(y, message):
    with pytest.raises(DataError, match=message):
        to_panel(y)


@pytest.mark.parametrize(
    ("y", "unit", "message"),
    [
        (
            pd.Series([1.0, 2.0], index=MONTHS[:2]),
            3.0,
            "time_unit=3.0 has no unit; pass a positive fixed duration",
        ),
        (
            pd.Series([1.0, 2.0], index=MONTHS[:2]),
            "MS",
            "time_unit='MS' is a calendar frequency, not a fixed duration",
        ),
        (pd.Series([1.0, 2.0], index=MONTHS[:2]), "soon", "time_unit='soon' is not a duration"),
        (pd.Series([1.0, 2.0], index=MONTHS[:2]), "-1D", "time_unit='-1D' is not positive"),
        (
            pd.Series([1.0, 2.0]),
            "1D",
            "time_unit='1D' is not valid for a numeric index; pass a positive number",
        ),
        (pd.Series([1.0, 2.0]), 0.0, "time_unit=0.0 is not valid"),
    ],
)
def test_bad_time_unit(y, unit, message):
    with pytest.raises(DataError, match=message):
        to_panel(y, time_unit=unit)


@pytest.fixture
def meta():
    return to_panel(pd.Series(np.ones(6), index=MONTHS))[1]


@pytest.mark.parametrize("horizon", [0, -3, 2.0, "3", True, None])
def test_bad_horizon(meta, horizon):
    message = (
        "pass exactly one of horizon"
        if horizon is None
        else "horizon must be a positive int \\(number of steps of MS\\)"
    )
    with pytest.raises(DataError, match=message):
        future_times(meta, horizon)


def test_horizon_accepts_numpy_ints(meta):
    times, _ = future_times(meta, np.int64(2))
    np.testing.assert_array_equal(times, [[6.0, 7.0]])


@pytest.mark.parametrize(
    ("times", "message"),
    [
        (
            pd.DatetimeIndex(["2000-06-01", "2000-08-01"]),
            r"after the last time \(2000-06-01 00:00:00\); the first given is 2000-06-01",
        ),
        (
            pd.DatetimeIndex(["2000-09-01", "2000-08-01"]),
            "times is not increasing: row 1 .*pass them in increasing order",
        ),
        (pd.DatetimeIndex(["2000-09-01", "2000-09-01"]), "times has a duplicate time"),
        (
            pd.DatetimeIndex(["2000-09-01"]).tz_localize("UTC"),
            r"times are datetime \(tz UTC\) but the data's times are datetime \(tz None\)",
        ),
        ([7.0, 8.0], "times are numeric"),
        (["2000-09-01"], "times has dtype str; .*pd.to_datetime"),
        ([], "times is empty"),
        (5, "times must be a sequence of times; got int"),
    ],
)
def test_bad_future_times(meta, times, message):
    with pytest.raises(DataError, match=message):
        future_times(meta, times=times)


def test_both_horizon_and_times(meta):
    with pytest.raises(DataError, match="pass exactly one of horizon"):
        future_times(meta, 2, times=pd.DatetimeIndex(["2001-01-01"]))


def test_long_future_times_must_follow_every_series():
    df = pd.DataFrame({"unique_id": ["a", "a", "b"], "ds": [1.0, 2.0, 5.0], "y": [1.0, 2.0, 3.0]})
    _, meta = to_panel(df)
    with pytest.raises(DataError, match=r"after the last time of series 'b' \(5.0\)"):
        future_times(meta, times=[3.0, 4.0])


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)
