"""The time axis: regular-grid inference, grid completion and timestamps -> float times.

Functions that convert times take an ``axis``: any object with the attributes ``index_type``,
``origin``, ``time_unit`` and ``step`` (a :class:`TimeAxis` or a :class:`~tsssm.data.PanelMeta`).
"""

from __future__ import annotations

import functools
import numbers
import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from tsssm.errors import DataError

#: A grid is completed only if it has at most this many points per distinct observed time;
#: sparser data (e.g. event times recorded to the second) are treated as irregular.
MAX_FILL = 10

#: Candidate default units for irregular datetime data: the largest one <= the median gap.
_UNIT_LADDER = tuple(pd.Timedelta(1, unit) for unit in ("D", "h", "min", "s", "ms", "us", "ns"))

#: Relative tolerance for "this numeric gap is a whole multiple of the step".
_STEP_TOL = 1e-9


@functools.lru_cache(maxsize=64)
def _calendar_grid(start: pd.Timestamp, end: pd.Timestamp | None, freq: Any, periods: int | None = None) -> pd.DatetimeIndex:
    """``pd.date_range`` memoised: calendar offsets (months, years, business days) are generated
    element by element in pandas, which dominated a refit on the same index. The returned index
    is immutable, so sharing it is safe."""
    return pd.date_range(start, end, periods=periods, freq=freq)


class TimeAxis(NamedTuple):
    """The time axis shared by all series of a panel.

    Attributes
    ----------
    index_type : str
        ``"datetime"`` or ``"numeric"``.
    origin : pd.Timestamp or float
        Time 0.
    time_unit : pd.Timedelta, pd.DateOffset or float
        One unit of the float times.
    step : pd.DateOffset, pd.Timedelta, int or float
        One forecast step: the grid frequency/spacing when the data lie on a regular grid,
        else ``time_unit``.
    freq : str or None
        The pandas alias of the regular datetime grid, else None.
    grid : pd.Index or None
        The complete regular grid from the first to the last time of all series, else None.
    tz : str or None
        Time zone of a datetime axis.
    """

    index_type: str
    origin: Any
    time_unit: Any
    step: Any
    freq: str | None
    grid: pd.Index | None
    tz: str | None


def infer_axis(indexes: list[pd.Index], kind: str, time_unit: object = None) -> TimeAxis:
    """Infer the common time axis of validated, strictly increasing indexes of one kind.

    Parameters
    ----------
    indexes : list of pd.Index
        One index per series, all of kind ``kind``.
    kind : str
        ``"datetime"`` or ``"numeric"``.
    time_unit : str, pd.Timedelta, float, optional
        User override of the unit of the float times (see :func:`parse_time_unit`).

    Returns
    -------
    TimeAxis
    """
    union = (
        indexes[0] if len(indexes) == 1 else indexes[0].append(indexes[1:]).unique().sort_values()
    )
    unit = parse_time_unit(time_unit, kind)
    if kind == "datetime":
        step = _datetime_step(union)
        grid = None if step is None else _calendar_grid(union[0], union[-1], step)
        canonical = None if step is None else _infer_offset(grid)
        if canonical is not None:
            step = canonical  # pandas' own name for the grid, e.g. "W-SUN" rather than "7D"
        default = _default_datetime_unit(union, step)
        tz = None if union.tz is None else str(union.tz)
        freq = None if step is None else step.freqstr
        origin = union[0]
    else:
        step = _numeric_step(union)
        grid = None if step is None else _numeric_grid(union, step)
        default = 1.0 if step is None else float(step)
        tz, freq, origin = None, None, float(union[0])
    unit = default if unit is None else unit
    return TimeAxis(kind, origin, unit, unit if step is None else step, freq, grid, tz)


def parse_time_unit(time_unit: object, kind: str) -> pd.Timedelta | float | None:
    """Validate a user ``time_unit``.

    Parameters
    ----------
    time_unit : str, pd.Timedelta, datetime.timedelta, np.timedelta64, float or None
        For datetime data a fixed duration (``"1D"``, ``"1h"``, ``"15min"``, a Timedelta); for
        numeric data a positive number in index units.
    kind : str
        ``"datetime"`` or ``"numeric"``.

    Returns
    -------
    pd.Timedelta, float or None
        None when ``time_unit`` is None.

    Raises
    ------
    DataError
        If the unit is not a positive duration (datetime) or a positive number (numeric).
    """
    if time_unit is None:
        return None
    if kind == "numeric":
        if (
            isinstance(time_unit, numbers.Real)
            and not isinstance(time_unit, bool)
            and np.isfinite(time_unit)
            and time_unit > 0
        ):
            return float(time_unit)
        raise DataError(
            f"time_unit={time_unit!r} is not valid for a numeric index; pass a positive number "
            "(in index units)"
        )
    hint = "pass a positive fixed duration such as '1D', '1h', '15min' or a pd.Timedelta"
    if isinstance(time_unit, numbers.Number) and not isinstance(time_unit, np.timedelta64):
        raise DataError(f"time_unit={time_unit!r} has no unit; {hint}")
    duration = _alias_duration(time_unit, hint) if isinstance(time_unit, str) else time_unit
    try:
        unit = pd.Timedelta(duration)
    except (TypeError, ValueError) as err:
        raise DataError(f"time_unit={time_unit!r} is not a duration; {hint}") from err
    if pd.isna(unit) or unit <= pd.Timedelta(0):
        raise DataError(f"time_unit={time_unit!r} is not positive; {hint}")
    return unit


def _alias_duration(text: str, hint: str) -> pd.Timedelta | str:
    """A fixed-length pandas alias (``"h"``, ``"15min"``, ``"D"``) as a Timedelta; text that
    is no alias (``"1 day"``) is returned for ``pd.Timedelta`` to parse."""
    try:
        offset = to_offset(text)
    except ValueError:
        return text
    if not isinstance(offset, (pd.offsets.Tick, pd.offsets.Day)):
        raise DataError(f"time_unit={text!r} is a calendar frequency, not a fixed duration; {hint}")
    return pd.Timedelta(offset)


def to_float(axis: Any, index: pd.Index) -> np.ndarray:
    """Convert times to float64 in units of ``axis.time_unit`` since ``axis.origin``.

    A calendar unit (month, quarter, business day, local calendar day) counts grid steps from
    the origin, linearly interpolated between grid points for off-grid times. Numeric times
    that lie on a regular grid are snapped to exact multiples of the step.

    Parameters
    ----------
    axis : TimeAxis or PanelMeta
    index : pd.Index
        Times of the axis' kind, at or after the origin.

    Returns
    -------
    np.ndarray
        float64, same length as ``index``.
    """
    unit = axis.time_unit
    if axis.index_type == "numeric":
        offsets = index.to_numpy(dtype=np.float64) - axis.origin
        steps = offsets / axis.step
        whole = np.rint(steps)
        on_grid = np.abs(steps - whole) <= _STEP_TOL * np.maximum(1.0, np.abs(whole))
        return np.where(on_grid, whole * (axis.step / unit), offsets / unit)
    if isinstance(unit, pd.Timedelta):
        return np.asarray((index - axis.origin) / unit, dtype=np.float64)
    grid = _calendar_grid(axis.origin, index.max() + unit, unit)
    k = grid.searchsorted(index, side="right") - 1
    fraction = np.asarray((index - grid[k]) / (grid[k + 1] - grid[k]), dtype=np.float64)
    return k + fraction


def continue_index(axis: Any, last: Any, n: int) -> pd.Index:
    """The ``n`` times that follow ``last`` in steps of ``axis.step``.

    Parameters
    ----------
    axis : TimeAxis or PanelMeta
    last : pd.Timestamp or number
        The last time of a series.
    n : int
        Number of steps (0 gives an empty index).

    Returns
    -------
    pd.Index
        A DatetimeIndex (with the grid frequency when regular) or a numeric index.
    """
    if axis.index_type == "datetime":
        return _calendar_grid(last, None, axis.step, n + 1)[1:]
    return pd.Index(last + axis.step * np.arange(1, n + 1))


def complete_index(axis: TimeAxis, index: pd.Index) -> pd.Index:
    """Complete one series' index onto the regular grid between its first and last time.

    Parameters
    ----------
    axis : TimeAxis
    index : pd.Index
        A validated index whose times all lie on ``axis.grid`` (when it exists).

    Returns
    -------
    pd.Index
        ``index`` itself when the axis is irregular or nothing is missing, else the grid slice.
    """
    if axis.grid is None:
        return index
    first, last = axis.grid.searchsorted([index[0], index[-1]])
    if last - first + 1 == len(index):
        return index
    return axis.grid[first : last + 1].rename(index.name)


def _infer_offset(index: pd.DatetimeIndex) -> pd.DateOffset | None:
    """``pd.infer_freq`` as an offset (None if it cannot tell), without pandas' warnings."""
    if len(index) < 3:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3.1 announces a change of return type
        freq = pd.infer_freq(index)
    return None if freq is None else to_offset(freq)


def _datetime_step(index: pd.DatetimeIndex) -> pd.DateOffset | None:
    """The frequency of the regular grid that ``index`` lies on (holes allowed), else None.

    Tries the index's own ``freq``, then ``pd.infer_freq``, then candidate grids (month
    families, business days, whole calendar days, the smallest gap); among the candidates that
    contain every time and have at most ``MAX_FILL`` points per time, the coarsest wins.
    """
    if index.freq is not None:
        return index.freq
    inferred = _infer_offset(index)
    if inferred is not None or len(index) < 2:
        return inferred
    best, best_size = None, MAX_FILL * len(index) + 1
    for offset in _candidate_offsets(index):
        size = _grid_size(index, offset)
        if size >= best_size:
            continue
        grid = _calendar_grid(index[0], index[-1], offset)
        if len(grid) < best_size and index.isin(grid).all():
            best, best_size = offset, len(grid)
    return best


def _candidate_offsets(index: pd.DatetimeIndex) -> list[pd.DateOffset]:
    """Offsets whose grids might hold ``index``, most calendar-like first."""
    wall = index.tz_localize(None) if index.tz is not None else index
    candidates = []
    time_of_day = wall - wall.normalize()
    if (time_of_day == time_of_day[0]).all():
        month_start, month_end = wall.is_month_start.all(), wall.is_month_end.all()
        if month_start or month_end:
            gaps = np.diff(wall.year * 12 + wall.month)
            months = int(gaps.min())
            if (gaps % months == 0).all():
                candidates.append(_month_offset(months, wall[0].month, begin=month_start))
        if (wall.day_of_week < 5).all():
            candidates.append(pd.offsets.BDay())
        days, rest = divmod((wall[1:] - wall[:-1]).min(), pd.Timedelta(1, "D"))
        if days > 0 and rest == pd.Timedelta(0):
            candidates.append(pd.offsets.Day(days))
    candidates.append(to_offset((index[1:] - index[:-1]).min()))
    return candidates


def _month_offset(months: int, first_month: int, *, begin: bool) -> pd.DateOffset:
    """Offset of ``months`` calendar months anchored on month starts (``begin``) or ends."""
    if months % 12 == 0:
        kind = pd.offsets.YearBegin if begin else pd.offsets.YearEnd
        return kind(months // 12, month=first_month)
    if months == 3:
        kind = pd.offsets.QuarterBegin if begin else pd.offsets.QuarterEnd
        return kind(startingMonth=first_month)
    return (pd.offsets.MonthBegin if begin else pd.offsets.MonthEnd)(months)


def _grid_size(index: pd.DatetimeIndex, offset: pd.DateOffset) -> int:
    """Approximate number of grid points for fixed-length offsets, 0 when not cheap to tell."""
    if isinstance(offset, (pd.offsets.Tick, pd.offsets.Day)):
        return int((index[-1] - index[0]) / pd.Timedelta(offset)) + 1
    return 0


def _default_datetime_unit(index: pd.DatetimeIndex, step: pd.DateOffset | None):
    """Default unit: a fixed-length grid step as a Timedelta, a calendar step itself, or, for
    irregular data, the largest of 1 day, 1 h, 1 min, 1 s, ... not above the median gap."""
    if step is not None:
        return pd.Timedelta(step) if isinstance(step, pd.offsets.Tick) else step
    if len(index) < 2:
        return _UNIT_LADDER[0]
    median = pd.Series(index[1:] - index[:-1]).median()
    return next(unit for unit in _UNIT_LADDER if unit <= median)


def _numeric_step(index: pd.Index) -> int | float | None:
    """The smallest gap when every gap is a whole multiple of it (and the grid is not too
    sparse), else None. Integer for integer indexes."""
    if len(index) < 2:
        return None
    values = index.to_numpy(dtype=np.float64)
    gaps = np.diff(values)
    step = gaps.min()
    ratio = gaps / step
    if np.abs(ratio - np.rint(ratio)).max() > _STEP_TOL * ratio.max():
        return None
    if np.rint((values[-1] - values[0]) / step) + 1 > MAX_FILL * len(index):
        return None
    return int(step) if index.dtype.kind in "iu" else float(step)


def _numeric_grid(index: pd.Index, step: int | float) -> pd.Index:
    """The complete grid from ``index[0]`` in steps of ``step``, holding the original values
    exactly where they occur."""
    positions = np.rint((index.to_numpy(dtype=np.float64) - index[0]) / step).astype(np.int64)
    grid = index[0] + step * np.arange(positions[-1] + 1)
    grid[positions] = index.to_numpy()
    return pd.Index(grid, name=index.name)
