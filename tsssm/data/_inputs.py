"""Exogenous inputs: bring ``X`` into one frame per series and align it with given times."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tsssm.data._checks import check_index, index_kind, numeric_array, numeric_block
from tsssm.data._panel import ID_COLUMN, TIME_COLUMN
from tsssm.errors import DataError


def input_frames(
    X, *, layout: str, series_ids: tuple, indexes: list, names: tuple | None = None
) -> list:
    """Split ``X`` into one frame of inputs per series, indexed by time.

    Parameters
    ----------
    X : pd.DataFrame, pd.Series or array_like
        A long frame (``unique_id``, ``ds``, input columns) when ``layout == "long"``; else a
        frame/Series indexed by time, or an array with one row per time: ``(n,)`` or
        ``(n, U)`` for one series, ``(B, n, U)`` for several.
    layout : str
        The layout of ``y`` (:attr:`PanelMeta.layout`).
    series_ids : tuple
        The ids of the series, in panel order.
    indexes : list of pd.Index
        Per series, the times that the rows of an array ``X`` stand for.
    names : tuple, optional
        Column names for an array ``X``; default ``x0, x1, ...``.

    Returns
    -------
    list of pd.DataFrame
        One per series (not yet validated beyond the layout).

    Raises
    ------
    DataError
        If ``X`` does not have the layout of ``y`` or an array has the wrong shape.
    """
    if layout == "long":
        if not isinstance(X, pd.DataFrame) or not {ID_COLUMN, TIME_COLUMN} <= set(X.columns):
            raise DataError(
                f"y is a long frame, so X must be a long frame with columns {ID_COLUMN!r}, "
                f"{TIME_COLUMN!r} and the input columns"
            )
        groups = dict(tuple(X.groupby(ID_COLUMN, sort=False)))
        absent = [series_id for series_id in series_ids if series_id not in groups]
        if absent:
            raise DataError(f"X has no rows for {ID_COLUMN} {absent[0]!r}")
        return [
            groups[series_id].set_index(TIME_COLUMN).drop(columns=ID_COLUMN)
            for series_id in series_ids
        ]
    if isinstance(X, pd.Series):
        X = X.to_frame("x0" if X.name is None else X.name)
    if isinstance(X, pd.DataFrame):
        if len(series_ids) != 1:
            raise DataError(
                f"y holds {len(series_ids)} series as an array, so X must be a (B, T, U) array"
            )
        return [X]
    array = numeric_array(X, "X")
    if array.ndim not in (1, 2, 3):
        raise DataError(f"X is a {array.ndim}-D array; pass (T,), (T, U) or (B, T, U)")
    if array.ndim < 3:
        array = array.reshape(1, array.shape[0], -1)
    if array.shape[0] != len(indexes):
        raise DataError(f"X holds {array.shape[0]} series but y holds {len(indexes)}")
    names = tuple(f"x{u}" for u in range(array.shape[2])) if names is None else names
    if len(names) != array.shape[2]:
        raise DataError(
            f"X has {array.shape[2]} input columns but the model was fit with {len(names)}"
        )
    for index in indexes:
        if array.shape[1] != len(index):
            raise DataError(
                f"X has {array.shape[1]} rows but there are {len(index)} times; pass one row "
                "per time"
            )
    return [
        pd.DataFrame(block, index=index, columns=list(names))
        for block, index in zip(array, indexes)
    ]


def align_inputs(
    frame: pd.DataFrame,
    columns: tuple,
    index: pd.Index,
    *,
    required: pd.Index,
    where: str,
    needed: str,
) -> np.ndarray:
    """Input values at the times ``index``.

    Parameters
    ----------
    frame : pd.DataFrame
        Inputs of one series, indexed by time (extra rows and columns are ignored).
    columns : tuple
        The input columns to take, in order.
    index : pd.Index
        The times to take them at; rows of ``frame`` absent from ``index`` give 0.0.
    required : pd.Index
        The times that ``frame`` must have a row for.
    where : str
        How to name ``frame`` in error messages.
    needed : str
        What a required time is, for the message (e.g. ``"a forecast time"``).

    Returns
    -------
    np.ndarray
        ``(len(index), len(columns))`` float64.

    Raises
    ------
    DataError
        If columns or required rows are missing, the time index is of another kind or time
        zone or not strictly increasing, or a used value is non-numeric, NaN or infinite.
    """
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise DataError(f"{where} is missing input column {missing[0]!r}; it needs {list(columns)}")
    kind, expected = index_kind(frame.index, f"{where}.index"), index_kind(index, "y")
    tz, expected_tz = str(getattr(frame.index, "tz", None)), str(getattr(index, "tz", None))
    if (kind, tz) != (expected, expected_tz):
        raise DataError(
            f"{where}.index holds {kind} times (tz {tz}) but y's are {expected} "
            f"(tz {expected_tz}); "
            "index X like y"
        )
    check_index(
        frame.index,
        f"{where}.index",
        sort_hint="sort with X.sort_index()",
        dedup_hint="drop repeats, e.g. X[~X.index.duplicated()]",
    )
    absent = required[~required.isin(frame.index)]
    if len(absent):
        raise DataError(
            f"{where} has no row for {absent[0]}, {needed} ({len(absent)} such times missing); "
            "X must cover them"
        )
    rows = frame.index.get_indexer(index)
    present = rows >= 0
    values = np.zeros((len(index), len(columns)))
    values[present] = numeric_block(
        frame[list(columns)].iloc[rows[present]], where, allow_nan=False
    )
    return values


def input_name(layout: str, series_ids: tuple, b: int) -> str:
    """How to call the inputs of series ``b`` in messages."""
    return f"X (unique_id {series_ids[b]!r})" if layout == "long" else "X"
