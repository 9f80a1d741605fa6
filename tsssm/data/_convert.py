"""``to_panel``: every accepted input layout -> one :class:`Panel` plus its :class:`PanelMeta`."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from tsssm.data._checks import check_index, index_kind, numeric_array, numeric_block
from tsssm.data._inputs import align_inputs, input_frames, input_name
from tsssm.data._panel import ID_COLUMN, TIME_COLUMN, Panel, PanelMeta
from tsssm.data._time import TimeAxis, complete_index, continue_index, infer_axis, to_float
from tsssm.errors import DataError

_SORT_WIDE = "sort with y.sort_index()"
_DEDUP_WIDE = (
    "drop or aggregate repeats, e.g. y[~y.index.duplicated()] or y.groupby(level=0).mean()"
)
_SORT_LONG = f"sort with df.sort_values([{ID_COLUMN!r}, {TIME_COLUMN!r}])"
_DEDUP_LONG = (
    f"drop or aggregate repeats, e.g. df.drop_duplicates([{ID_COLUMN!r}, {TIME_COLUMN!r}])"
)


class _Part(NamedTuple):
    """One series as given: validated time index, ``(len(index), D)`` values (NaN = missing)."""

    index: pd.Index
    values: np.ndarray


class _Split(NamedTuple):
    """An input taken apart into series, before the time axis is inferred."""

    layout: str
    kind: str
    columns: tuple
    series_ids: tuple
    parts: list
    column_freqs: tuple | None


def to_panel(y, X=None, *, time_unit=None) -> tuple[Panel, PanelMeta]:
    """Convert user data to a :class:`Panel` and its static :class:`PanelMeta`.

    Parameters
    ----------
    y : pd.Series, pd.DataFrame, dict or list of pd.Series, or array_like
        - ``pd.Series`` / wide ``pd.DataFrame`` with a DatetimeIndex (regular or irregular,
          tz-aware allowed) or a numeric index; several columns give D > 1.
        - long ``pd.DataFrame`` with columns ``unique_id``, ``ds`` and value columns: one
          series per ``unique_id`` (rows of a series in increasing ``ds``).
        - dict (or list) of ``pd.Series``, possibly of different frequencies: one series whose
          columns are aligned on the union of their times.
        - array ``(T,)``, ``(T, D)`` or ``(B, T, D)``: times ``0 .. T-1``.

        NaN marks a missing value.
    X : pd.DataFrame, pd.Series, array_like, optional
        Exogenous inputs in the layout of ``y``: a frame whose index covers every time of ``y``
        (a long frame with ``unique_id``, ``ds`` and the input columns when ``y`` is long), or
        an array with one row per row of ``y`` (``(B, T, U)`` for a 3-D ``y``). Must be finite.
    time_unit : str, pd.Timedelta or float, optional
        Unit of ``Panel.times``. For datetime data a fixed duration (``"1D"``, ``"1h"``, a
        Timedelta); for numeric data a positive number in index units. Default: one grid
        step for regular data (so times are 0, 1, 2, ...); for irregular datetime data the
        largest of 1 day, 1 hour, 1 minute, 1 second, ... not above the median gap; 1.0 for
        irregular numeric data.

    Returns
    -------
    panel : Panel
        ``times (B, T)``, ``values``/``mask (B, T, D)``, ``inputs (B, T, U)`` or None.
    meta : PanelMeta
        Everything needed to map model outputs back to pandas.

    Raises
    ------
    DataError
        For unsupported types or bad data; the message names the column, row or argument.

    Notes
    -----
    Data whose times all lie on one regular grid with some grid points absent (monthly data
    with a few months missing, integers with gaps) are completed onto the grid: the inserted
    times are fully masked, and ``meta.indexes`` holds the completed grid. Irregular times are
    kept as they are. Series of a long frame are padded at the end to a common length with
    masked values and times that continue each series' grid.
    """
    split = _split(y)
    axis = infer_axis([part.index for part in split.parts], split.kind, time_unit)
    indexes = tuple(complete_index(axis, part.index) for part in split.parts)
    lengths = tuple(len(index) for index in indexes)
    values, mask = _fill(split.parts, indexes, len(split.columns))
    empty = np.flatnonzero(~mask.any(axis=(0, 1)))
    if empty.size:
        raise DataError(
            f"y column {split.columns[empty[0]]!r} has no observed values (all NaN); drop it"
        )
    times = _padded_times(axis, indexes, max(lengths))
    inputs, input_columns = _fit_inputs(X, split, indexes)
    meta = PanelMeta(
        layout=split.layout,
        columns=split.columns,
        input_columns=input_columns,
        series_ids=split.series_ids,
        index_type=axis.index_type,
        freq=axis.freq,
        time_unit=axis.time_unit,
        origin=axis.origin,
        step=axis.step,
        indexes=indexes,
        lengths=lengths,
        regular=all(_consecutive(row[:n]) for row, n in zip(times, lengths)),
        tz=axis.tz,
        column_freqs=split.column_freqs or (axis.freq,) * len(split.columns),
    )
    return Panel(times, values, mask, inputs), meta


def _split(y) -> _Split:
    """Dispatch on the type of ``y``."""
    if isinstance(y, pd.Series):
        return _split_frame(y.to_frame("y" if y.name is None else y.name), "series")
    if isinstance(y, pd.DataFrame):
        if ID_COLUMN in y.columns or TIME_COLUMN in y.columns:
            return _split_long(y)
        return _split_frame(y, "frame")
    if isinstance(y, dict):
        return _split_dict(y)
    if isinstance(y, (list, tuple)) and y and all(isinstance(s, pd.Series) for s in y):
        return _split_dict(_name_series(y))
    if isinstance(y, (np.ndarray, list, tuple)) or hasattr(y, "__array__"):
        return _split_array(y)
    raise DataError(
        f"y of type {type(y).__name__} is not supported; pass a pd.Series, a wide or long "
        "pd.DataFrame, a dict of pd.Series or a numpy array"
    )


def _split_frame(frame: pd.DataFrame, layout: str) -> _Split:
    """A Series (as a one-column frame) or a wide frame: one series, D = number of columns."""
    if frame.shape[1] == 0:
        raise DataError("y has no value columns")
    if len(frame) == 0:
        raise DataError("y is empty (no rows)")
    if frame.columns.has_duplicates:
        raise DataError(
            f"y has a duplicate column {frame.columns[frame.columns.duplicated()][0]!r}; "
            "rename or drop it"
        )
    kind = index_kind(frame.index, "y.index")
    check_index(frame.index, "y.index", sort_hint=_SORT_WIDE, dedup_hint=_DEDUP_WIDE)
    part = _Part(frame.index, numeric_block(frame, "y"))
    return _Split(layout, kind, tuple(frame.columns), (0,), [part], None)


def _split_long(frame: pd.DataFrame) -> _Split:
    """A long frame: one series per ``unique_id`` in order of first appearance."""
    missing = [name for name in (ID_COLUMN, TIME_COLUMN) if name not in frame.columns]
    if missing:
        raise DataError(
            f"long-format y is missing column {missing[0]!r}; it needs {ID_COLUMN!r} (series "
            f"id), {TIME_COLUMN!r} (time) and value columns (for one series you can instead "
            f"pass a frame indexed by time)"
        )
    columns = tuple(name for name in frame.columns if name not in (ID_COLUMN, TIME_COLUMN))
    if not columns:
        raise DataError(
            f"long-format y has no value columns besides {ID_COLUMN!r} and {TIME_COLUMN!r}"
        )
    if len(frame) == 0:
        raise DataError("y is empty (no rows)")
    no_id = np.flatnonzero(frame[ID_COLUMN].isna().to_numpy())
    if no_id.size:
        raise DataError(
            f"y has a missing {ID_COLUMN!r} at row {frame.index[no_id[0]]}; drop that row"
        )
    ds = pd.Index(frame[TIME_COLUMN])
    kind = index_kind(ds, f"column {TIME_COLUMN!r}")
    values = numeric_block(frame[list(columns)], "y")
    codes, ids = pd.factorize(frame[ID_COLUMN])
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(ids) + 1))
    parts = []
    for b, series_id in enumerate(ids):
        rows = order[bounds[b] : bounds[b + 1]]
        index = ds[rows]
        check_index(
            index,
            f"{TIME_COLUMN!r} of series {series_id!r}",
            sort_hint=_SORT_LONG,
            dedup_hint=_DEDUP_LONG,
            rows=frame.index[rows],
        )
        parts.append(_Part(index, values[rows]))
    return _Split("long", kind, columns, tuple(ids.tolist()), parts, None)


def _split_dict(series: dict) -> _Split:
    """A dict of Series: one series whose columns are aligned on the union of their times."""
    if not series:
        raise DataError("y is an empty dict; pass at least one pd.Series")
    kinds, tzs = {}, {}
    for key, s in series.items():
        if not isinstance(s, pd.Series):
            raise DataError(f"y[{key!r}] is a {type(s).__name__}, not a pd.Series")
        if len(s) == 0:
            raise DataError(f"y[{key!r}] is empty (no rows)")
        where = f"y[{key!r}].index"
        kinds[key] = index_kind(s.index, where)
        check_index(s.index, where, sort_hint=_SORT_WIDE, dedup_hint=_DEDUP_WIDE)
        tzs[key] = getattr(s.index, "tz", None)
    first = next(iter(series))
    for key in series:
        if (kinds[key], str(tzs[key])) != (kinds[first], str(tzs[first])):
            raise DataError(
                f"y[{key!r}] has {_describe(kinds[key], tzs[key])} times but y[{first!r}] has "
                f"{_describe(kinds[first], tzs[first])} times; use one kind of index and one "
                "time zone (tz_convert / tz_localize)"
            )
    own = [s.index for s in series.values()]
    union = own[0].append(own[1:]).unique().sort_values()
    values = np.full((len(union), len(series)), np.nan)
    for d, (key, s) in enumerate(series.items()):
        values[union.get_indexer(s.index), d] = numeric_block(s.to_frame(), f"y[{key!r}]")[:, 0]
    column_freqs = tuple(infer_axis([index], kinds[first]).freq for index in own)
    part = _Part(union, values)
    return _Split("dict", kinds[first], tuple(series), (0,), [part], column_freqs)


def _name_series(series: list | tuple) -> dict:
    """Key a list of Series by their names (``y<i>`` when unnamed)."""
    keys = [f"y{i}" if s.name is None else s.name for i, s in enumerate(series)]
    duplicated = pd.Index(keys).duplicated()
    if duplicated.any():
        raise DataError(
            f"y holds two Series named {keys[np.flatnonzero(duplicated)[0]]!r}; rename them or "
            "pass a dict"
        )
    return dict(zip(keys, series))


def _split_array(array) -> _Split:
    """An array ``(T,)``, ``(T, D)`` or ``(B, T, D)`` on times 0 .. T-1."""
    values = numeric_array(array, "y")
    if values.ndim not in (1, 2, 3):
        raise DataError(
            f"y is a {values.ndim}-D array of shape {values.shape}; pass (T,), (T, D) or (B, T, D)"
        )
    columns = ("y",) if values.ndim == 1 else tuple(f"y{d}" for d in range(values.shape[-1]))
    if values.ndim < 3:
        values = values.reshape(1, values.shape[0], -1)
    index = pd.RangeIndex(values.shape[1])
    parts = [_Part(index, block) for block in values]
    return _Split("array", "numeric", columns, tuple(range(len(parts))), parts, None)


def _describe(kind: str, tz) -> str:
    return "numeric" if kind == "numeric" else f"datetime (tz {tz})"


def _fill(parts: list, indexes: tuple, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Scatter each series onto its (completed) index; padded and missing entries are masked."""
    shape = (len(parts), max(len(index) for index in indexes), n_columns)
    values, mask = np.zeros(shape), np.zeros(shape, dtype=bool)
    for b, (part, index) in enumerate(zip(parts, indexes)):
        rows = index.get_indexer(part.index)
        observed = ~np.isnan(part.values)
        mask[b, rows] = observed
        values[b, rows] = np.where(observed, part.values, 0.0)
    return values, mask


def _padded_times(axis: TimeAxis, indexes: tuple, length: int) -> np.ndarray:
    """``(B, length)`` float times; each series' grid continues past its end as padding."""
    padded = [
        index
        if len(index) == length
        else index.append(continue_index(axis, index[-1], length - len(index)))
        for index in indexes
    ]
    return to_float(axis, padded[0].append(padded[1:])).reshape(len(indexes), length)


def _consecutive(times: np.ndarray) -> bool:
    """Whether ``times`` are consecutive integers ``k, k+1, ...``."""
    return bool(
        times[0] == np.rint(times[0]) and np.array_equal(times, times[0] + np.arange(len(times)))
    )


def _fit_inputs(X, split: _Split, indexes: tuple) -> tuple[np.ndarray | None, tuple]:
    """``(B, T, U)`` inputs at the (completed) times of ``y``, 0.0 at padding; and their names.

    ``X`` must cover every time ``y`` was given at; at times inserted to complete a grid it
    is used where it has a row and 0.0 elsewhere (those rows of ``y`` are fully masked).
    """
    if X is None:
        return None, ()
    frames = input_frames(
        X,
        layout=split.layout,
        series_ids=split.series_ids,
        indexes=[part.index for part in split.parts],
    )
    columns = tuple(frames[0].columns)
    if not columns:
        raise DataError("X has no input columns")
    if len(set(columns)) != len(columns):
        raise DataError(f"X has duplicate input columns {list(columns)}; rename them")
    inputs = np.zeros((len(indexes), max(len(index) for index in indexes), len(columns)))
    for b, (frame, index, part) in enumerate(zip(frames, indexes, split.parts)):
        inputs[b, : len(index)] = align_inputs(
            frame,
            columns,
            index,
            required=part.index,
            where=input_name(split.layout, split.series_ids, b),
            needed="a time of y",
        )
    return inputs, columns
