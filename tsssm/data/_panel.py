"""The :class:`Panel` pytree and its static :class:`PanelMeta`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from tsssm.errors import DataError

#: Column names of the long (statsforecast-style) format.
ID_COLUMN = "unique_id"
TIME_COLUMN = "ds"


class Panel(NamedTuple):
    """B series on a common padded time axis; a JAX pytree because it is a NamedTuple.

    Attributes
    ----------
    times : np.ndarray
        ``(B, T)`` float64, time in units of ``meta.time_unit`` since ``meta.origin``; strictly
        increasing along each row (padding continues each series' grid).
    values : np.ndarray
        ``(B, T, D)`` float64; 0.0 wherever ``mask`` is False.
    mask : np.ndarray
        ``(B, T, D)`` bool, True where the value was observed.
    inputs : np.ndarray or None
        ``(B, T, U)`` float64 exogenous regressors (0.0 at padding), or None.
    """

    times: np.ndarray
    values: np.ndarray
    mask: np.ndarray
    inputs: np.ndarray | None


@dataclass(frozen=True, eq=False)
class PanelMeta:
    """Static description of a :class:`Panel`: how its arrays map back to pandas objects.

    Kept out of the pytree so that it never triggers recompilation. Equality compares every
    field (indexes with ``Index.equals``); the hash covers every field except ``indexes``.

    Attributes
    ----------
    layout : str
        The input layout: ``"series"``, ``"frame"``, ``"long"``, ``"dict"`` or ``"array"``.
    columns : tuple
        The D value-column labels (``"y"`` for an unnamed Series or a 1-D array,
        ``"y0", "y1", ...`` for 2-D/3-D arrays, the dict keys for a dict).
    input_columns : tuple
        The U exogenous column labels (``"x0", ...`` for arrays), ``()`` without inputs.
    series_ids : tuple
        The B series ids: the ``unique_id`` values of a long frame in order of first
        appearance, ``0 .. B-1`` for a 3-D array, ``(0,)`` for a single series.
    index_type : str
        ``"datetime"`` or ``"numeric"``.
    freq : str or None
        pandas alias of the regular (completed) datetime grid, e.g. ``"MS"``, ``"YS-JAN"``,
        ``"D"``; None for irregular or numeric time.
    time_unit : pd.Timedelta, pd.DateOffset or float
        One unit of ``Panel.times``.
    origin : pd.Timestamp or float
        Time 0: the earliest time of all series.
    step : pd.DateOffset, pd.Timedelta, int or float
        One forecast step: the grid frequency (regular datetime) or spacing (regular numeric),
        else ``time_unit``.
    indexes : tuple of pd.Index
        Per series, the time index that outputs use (the completed grid when holes were
        filled); ``len(indexes[b]) == lengths[b]``.
    lengths : tuple of int
        ``T_b``, the unpadded length of each series.
    regular : bool
        True when every series' times are consecutive integers (``k, k+1, k+2, ...``).
    tz : str or None
        Time zone of a datetime index.
    column_freqs : tuple
        Per value column, the pandas alias of the grid it was observed on (differs between
        columns of a mixed-frequency dict), None where irregular or numeric.
    """

    layout: str
    columns: tuple
    input_columns: tuple
    series_ids: tuple
    index_type: str
    freq: str | None
    time_unit: Any
    origin: Any
    step: Any
    indexes: tuple
    lengths: tuple
    regular: bool
    tz: str | None
    column_freqs: tuple

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PanelMeta):
            return NotImplemented
        if len(self.indexes) != len(other.indexes) or not all(
            a.equals(b) for a, b in zip(self.indexes, other.indexes)
        ):
            return False
        return self._hashable() == other._hashable()

    def __hash__(self) -> int:
        return hash(self._hashable())

    def _hashable(self) -> tuple:
        return tuple(getattr(self, f.name) for f in fields(self) if f.name != "indexes")

    def frame(self, values: np.ndarray, indexes: tuple | None = None) -> pd.DataFrame:
        """Map ``(B, n, D)`` values back to a DataFrame shaped like the input.

        Parameters
        ----------
        values : array_like
            ``(B, n, D)``; for series b only the first ``len(indexes[b])`` rows are used
            (padding is dropped).
        indexes : sequence of pd.Index, optional
            Per-series time index of the rows, default ``self.indexes`` (pass the future
            indexes from :func:`~tsssm.data.future_times` for forecasts).

        Returns
        -------
        pd.DataFrame
            Wide (index ``indexes[0]``, columns ``self.columns``) for one series that did not
            come in long format; otherwise long, with columns ``unique_id``, ``ds`` and
            ``self.columns`` and one block of rows per series.

        Raises
        ------
        DataError
            If the shape of ``values`` does not match the indexes and columns.
        """
        values = np.asarray(values, dtype=np.float64)
        indexes = self.indexes if indexes is None else tuple(indexes)
        lengths = [len(index) for index in indexes]
        expected = (len(indexes), max(lengths), len(self.columns))
        if (
            values.ndim != 3
            or values.shape[0] != expected[0]
            or values.shape[1] < expected[1]
            or values.shape[2] != expected[2]
        ):
            raise DataError(
                f"values of shape {values.shape} do not fit {expected[0]} series of up to "
                f"{expected[1]} times and {expected[2]} columns"
            )
        blocks = [values[b, :n] for b, n in enumerate(lengths)]
        if len(indexes) == 1 and self.layout != "long":
            return pd.DataFrame(blocks[0], index=indexes[0], columns=list(self.columns))
        long = {
            ID_COLUMN: pd.Index(list(self.series_ids)).repeat(lengths),
            TIME_COLUMN: indexes[0].append(list(indexes[1:])),
        }
        long.update(zip(self.columns, np.concatenate(blocks).T))
        return pd.DataFrame(long)
