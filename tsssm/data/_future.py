"""The forecast period: future times and exogenous inputs for them."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd

from tsssm.data._checks import check_index, index_kind
from tsssm.data._inputs import align_inputs, input_frames, input_name
from tsssm.data._panel import PanelMeta
from tsssm.data._time import continue_index, to_float
from tsssm.errors import DataError


def future_times(
    meta: PanelMeta, horizon: int | None = None, *, times=None
) -> tuple[np.ndarray, tuple]:
    """Times of the forecast period, continuing each series.

    Parameters
    ----------
    meta : PanelMeta
        From :func:`~tsssm.data.to_panel`.
    horizon : int, optional
        Number of steps ahead: steps of ``meta.step`` (the grid frequency for regular datetime
        data, the grid spacing for regular numeric data, ``meta.time_unit`` for irregular data).
    times : pd.DatetimeIndex or array_like, optional
        Explicit future times instead of ``horizon``, the same for every series: strictly
        increasing, after every series' last time, of the kind (and time zone) of the data;
        may be irregular.

    Returns
    -------
    times : np.ndarray
        ``(B, h)`` float64 in units of ``meta.time_unit`` since ``meta.origin``.
    indexes : tuple of pd.Index
        The future time index of each series.

    Raises
    ------
    DataError
        If not exactly one of ``horizon`` and ``times`` is given, ``horizon`` is not a
        positive int, or ``times`` are of the wrong kind, not increasing or not in the future.
    """
    if (horizon is None) == (times is None):
        raise DataError(
            "pass exactly one of horizon (number of steps) and times (explicit future times)"
        )
    if times is None:
        if not isinstance(horizon, numbers.Integral) or isinstance(horizon, bool) or horizon <= 0:
            raise DataError(
                "horizon must be a positive int (number of steps of "
                f"{meta.freq or meta.step}); got {horizon!r}"
            )
        indexes = tuple(
            continue_index(meta, index[-1], int(horizon)).rename(index.name)
            for index in meta.indexes
        )
    else:
        future = _given_times(meta, times)
        for series_id, index in zip(meta.series_ids, meta.indexes):
            if future[0] <= index[-1]:
                series = f" of series {series_id!r}" if len(meta.indexes) > 1 else ""
                raise DataError(
                    f"times must all be after the last time{series} ({index[-1]}); the first "
                    f"given is {future[0]}"
                )
        indexes = tuple(future.rename(index.name) for index in meta.indexes)
    flat = to_float(meta, indexes[0].append(list(indexes[1:])))
    return flat.reshape(len(indexes), -1), indexes


def future_inputs(meta: PanelMeta, X, indexes: tuple) -> np.ndarray | None:
    """Validate exogenous inputs for the forecast period.

    Parameters
    ----------
    meta : PanelMeta
        From :func:`~tsssm.data.to_panel`.
    X : pd.DataFrame, pd.Series, array_like or None
        Inputs in the layout used at fit time, with the columns ``meta.input_columns``: a frame
        whose index covers the forecast times (a long frame for long data), or an array with
        one row per forecast time (``(B, h, U)`` for a 3-D ``y``).
    indexes : tuple of pd.Index
        The future indexes from :func:`future_times`.

    Returns
    -------
    np.ndarray or None
        ``(B, h, U)`` float64, or None for a model fit without inputs.

    Raises
    ------
    DataError
        If inputs are needed and ``X`` is None, ``X`` is given to a model fit without inputs,
        columns or times are missing, an array has the wrong shape, or values are NaN/inf.
    """
    if not meta.input_columns:
        if X is not None:
            raise DataError(
                "X was given but the model was fit without exogenous inputs; pass X=None"
            )
        return None
    if X is None:
        raise DataError(
            f"the model was fit with exogenous inputs {list(meta.input_columns)}; pass X for "
            "the forecast period"
        )
    frames = input_frames(
        X,
        layout=meta.layout,
        series_ids=meta.series_ids,
        indexes=list(indexes),
        names=meta.input_columns,
    )
    inputs = np.zeros((len(indexes), max(len(index) for index in indexes), len(meta.input_columns)))
    for b, (frame, index) in enumerate(zip(frames, indexes)):
        inputs[b, : len(index)] = align_inputs(
            frame,
            meta.input_columns,
            index,
            required=index,
            where=input_name(meta.layout, meta.series_ids, b),
            needed="a forecast time",
        )
    return inputs


def _given_times(meta: PanelMeta, times) -> pd.Index:
    """Explicit future times as a validated, strictly increasing index of the data's kind."""
    try:
        index = pd.Index(times)
    except TypeError as err:
        raise DataError(f"times must be a sequence of times; got {type(times).__name__}") from err
    if len(index) == 0:
        raise DataError("times is empty; pass at least one future time")
    kind = index_kind(index, "times")
    tz = None if kind == "numeric" else index.tz
    if (kind, str(tz)) != (meta.index_type, str(meta.tz)):
        raise DataError(
            f"times are {kind} (tz {tz}) but the data's times are {meta.index_type} (tz "
            f"{meta.tz}); pass times like the data's index"
        )
    check_index(
        index,
        "times",
        sort_hint="pass them in increasing order",
        dedup_hint="pass each time once",
    )
    return index
