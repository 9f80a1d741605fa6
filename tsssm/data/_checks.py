"""Validation of user-supplied indexes and value blocks; every failure is a :class:`DataError`."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tsssm.errors import DataError


def index_kind(index: pd.Index, where: str) -> str:
    """Classify a time index as ``"datetime"`` or ``"numeric"``.

    Parameters
    ----------
    index : pd.Index
        The time index (or the ``ds`` column wrapped in an index).
    where : str
        How to name the index in an error message, e.g. ``"y.index"``.

    Returns
    -------
    str
        ``"datetime"`` for a :class:`pandas.DatetimeIndex`, ``"numeric"`` for an int/float index.

    Raises
    ------
    DataError
        For any other index type (period, string, timedelta, boolean, MultiIndex).
    """
    if isinstance(index, pd.DatetimeIndex):
        return "datetime"
    if isinstance(index, pd.MultiIndex):
        raise DataError(
            f"{where} is a MultiIndex; pass several series as a long frame with columns "
            "'unique_id', 'ds' and the value columns (e.g. df.reset_index())"
        )
    if isinstance(index, pd.PeriodIndex):
        raise DataError(f"{where} is a PeriodIndex; convert it with .to_timestamp()")
    dtype = index.dtype
    if pd.api.types.is_numeric_dtype(dtype) and not (
        pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_complex_dtype(dtype)
    ):
        return "numeric"
    raise DataError(
        f"{where} has dtype {dtype}; time must be datetimes (convert with pd.to_datetime) "
        "or numbers"
    )


def check_index(
    index: pd.Index,
    where: str,
    *,
    sort_hint: str,
    dedup_hint: str,
    rows: pd.Index | None = None,
) -> None:
    """Check that a time index has no missing entries and is strictly increasing.

    Parameters
    ----------
    index : pd.Index
        A datetime or numeric index (see :func:`index_kind`).
    where : str
        How to name the index in error messages.
    sort_hint, dedup_hint : str
        The fix suggested for unsorted and for repeated times.
    rows : pd.Index, optional
        Row labels to report instead of positions (used for long frames).

    Raises
    ------
    DataError
        Naming the first missing, out-of-order or repeated time and its row.
    """

    def row(i: int) -> object:
        return i if rows is None else rows[i]

    missing = np.flatnonzero(pd.isna(index))
    if missing.size:
        raise DataError(
            f"{where} has a missing time (NaT/NaN) at row {row(missing[0])}; drop that row"
        )
    if index.dtype.kind == "f" and not np.isfinite(index.to_numpy()).all():
        bad = np.flatnonzero(~np.isfinite(index.to_numpy()))[0]
        raise DataError(f"{where} has a non-finite time at row {row(bad)}; drop that row")
    earlier = np.flatnonzero(np.asarray(index[1:] < index[:-1])) + 1
    if earlier.size:
        i = earlier[0]
        raise DataError(
            f"{where} is not increasing: row {row(i)} ({index[i]}) comes after "
            f"{index[i - 1]}; {sort_hint}"
        )
    repeated = np.flatnonzero(np.asarray(index[1:] == index[:-1])) + 1
    if repeated.size:
        i = repeated[0]
        raise DataError(f"{where} has a duplicate time {index[i]} at row {row(i)}; {dedup_hint}")


def numeric_block(frame: pd.DataFrame, where: str, *, allow_nan: bool = True) -> np.ndarray:
    """Convert the columns of a frame to a fresh float64 array, missing values as NaN.

    Parameters
    ----------
    frame : pd.DataFrame
        Columns of numbers (NumPy or nullable dtypes); never modified.
    where : str
        How to name the frame in error messages (``"y"``, ``"X"``).
    allow_nan : bool, default True
        Whether missing values are allowed (they are not in exogenous inputs).

    Returns
    -------
    np.ndarray
        ``(len(frame), n_columns)`` float64 copy.

    Raises
    ------
    DataError
        If a column is not numeric (object, string, boolean, datetime, complex), holds +/-inf,
        or holds NaN when ``allow_nan`` is False.
    """
    for name, dtype in frame.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype):
            raise DataError(
                f"{where} column {name!r} is boolean; convert it with .astype(float) if it "
                "means 0/1"
            )
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
            raise DataError(
                f"{where} column {name!r} has dtype {dtype}, not real numbers; convert it "
                "with pd.to_numeric or drop it"
            )
    values = frame.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    _check_finite(
        values,
        allow_nan,
        lambda i, j: f"{where} column {frame.columns[j]!r} at row {frame.index[i]}",
    )
    return values


def numeric_array(array: object, where: str) -> np.ndarray:
    """Convert an array-like of real numbers to a fresh float64 array (NaN = missing).

    Parameters
    ----------
    array : array_like
        Numbers; NaN marks missing values.
    where : str
        How to name the array in error messages.

    Returns
    -------
    np.ndarray
        float64 copy with the same shape.

    Raises
    ------
    DataError
        If the array is empty, not made of real numbers (bool, object, str, complex) or holds
        +/-inf.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "iuf":
        raise DataError(
            f"{where} has dtype {array.dtype}, not real numbers; convert it with .astype(float)"
        )
    if array.size == 0:
        raise DataError(f"{where} is empty (shape {array.shape})")
    values = np.array(array, dtype=np.float64)
    _check_finite(values, True, lambda *pos: f"{where} at position {pos}")
    return values


def _check_finite(values: np.ndarray, allow_nan: bool, locate) -> None:
    """Raise a DataError at the first +/-inf (and NaN unless ``allow_nan``) in ``values``;
    ``locate(*position)`` names the place."""
    bad = np.isinf(values) if allow_nan else ~np.isfinite(values)
    if not bad.any():
        return
    position = tuple(int(i) for i in np.argwhere(bad)[0])
    if np.isinf(values[position]):
        what, fix = "an infinite value", "replace it with a finite number"
        if allow_nan:
            fix += " or NaN (missing)"
    else:
        what, fix = "a missing value (NaN)", "inputs must be observed at every time used"
    raise DataError(f"{locate(*position)} has {what}; {fix}")
