"""Low-frequency columns on a finer grid (mixed frequency): their periods and period-end rows.

A dict of Series with different frequencies is aligned on the finest grid by :func:`to_panel`;
each low-frequency value sits at the row of its own timestamp. A value stamped at the *start*
of its period (``QS``, ``YS``, ``MS`` ...) is about the whole period, so models that tie it to
the latent high-frequency values of the period need it at the period's *last* grid row. This
module finds, per low-frequency column, the number of grid steps per period (``ratio``) and the
period-end row of every observed value.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd

from tsssm.data._panel import PanelMeta
from tsssm.errors import DataError


class LowFrequencyColumn(NamedTuple):
    """One low-frequency column: its frequency alias, grid steps per period, stamping convention,
    and per observed value the user's timestamp (``stamps``) and its period-end grid time (``ends``)."""

    column: str
    freq: str
    ratio: int
    start_stamped: bool
    stamps: pd.DatetimeIndex
    ends: pd.DatetimeIndex


def _start_stamped(offset) -> bool:
    return "Begin" in type(offset).__name__


def period_grid_times(grid_freq: str, freq: str, stamp: pd.Timestamp) -> pd.DatetimeIndex:
    """The grid times inside the period of ``freq`` stamped ``stamp`` (start or end stamp)."""
    offset = pd.tseries.frequencies.to_offset(freq)
    if _start_stamped(offset):
        return pd.date_range(stamp, stamp + offset, freq=grid_freq, inclusive="left")
    return pd.date_range(stamp - offset, stamp, freq=grid_freq, inclusive="right")


def low_frequency_columns(meta: PanelMeta, mask: np.ndarray, infer: tuple = ()) -> dict[str, LowFrequencyColumn]:
    """Columns of a single regular datetime series observed on a coarser grid than ``meta.freq``.

    ``mask`` is ``(T, D)``. A column's frequency is ``meta.column_freqs`` (set for a dict of
    Series); for the columns named in ``infer`` whose recorded frequency is the grid's (e.g. a
    quarterly column of a wide monthly frame, NaN between quarters) it is inferred from the
    times where the column is observed.

    Raises
    ------
    DataError
        If a column's periods do not hold a constant whole number of grid steps, or a period
        ends after the last row of the grid.
    """
    out: dict[str, LowFrequencyColumn] = {}
    if meta.index_type != "datetime" or meta.freq is None:
        return out
    grid = meta.indexes[0]
    for d, (column, freq) in enumerate(zip(meta.columns, meta.column_freqs)):
        stamps = grid[np.asarray(mask[:, d], bool)]
        if (freq is None or freq == meta.freq) and column in infer and len(stamps) >= 3:
            with warnings.catch_warnings():  # pandas 3.1 warns that infer_freq will return an offset
                warnings.simplefilter("ignore")
                inferred = pd.infer_freq(stamps)
            freq = getattr(inferred, "freqstr", inferred)
        if freq is None or freq == meta.freq:
            continue
        periods = [period_grid_times(meta.freq, freq, t) for t in stamps]
        ratios = sorted({len(p) for p in periods})
        if len(ratios) != 1:
            raise DataError(
                f"column {column!r} ({freq}) has periods of {ratios} steps of the {meta.freq} grid; mixed frequency "
                "needs a whole, constant number of grid steps per period (e.g. monthly within quarterly)"
            )
        if ratios[0] <= 1:
            continue
        ends = pd.DatetimeIndex([p[-1] for p in periods])
        late = ends > grid[-1]
        if late.any():
            raise DataError(
                f"column {column!r}: the period stamped {stamps[late][0]} ends at {ends[late][0]}, after the last row "
                f"of the grid ({grid[-1]}); extend the high-frequency columns to the period end (NaN is fine) or drop "
                "that value"
            )
        out[column] = LowFrequencyColumn(column, freq, ratios[0], _start_stamped(pd.tseries.frequencies.to_offset(freq)), stamps, ends)
    return out


def move_to_period_ends(meta: PanelMeta, values: np.ndarray, mask: np.ndarray, columns: dict) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``values``/``mask`` (T, D) with each low-frequency value at its period-end row."""
    values, mask = np.array(values, float), np.array(mask, bool)
    grid = meta.indexes[0]
    for column, info in columns.items():
        d = list(meta.columns).index(column)
        source = grid.get_indexer(info.stamps)
        target = grid.get_indexer(info.ends)
        moved = values[source, d]
        values[:, d], mask[:, d] = 0.0, False
        values[target, d], mask[target, d] = moved, True
    return values, mask
