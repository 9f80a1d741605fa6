"""Many series beyond one machine: split a panel into chunks of series and map one function over them.

:func:`fit_chunk` is the unit of work: a long frame of some series in, one frame out. It fits
the chunk with the vmapped estimator path (one compilation per padded-length bucket, see
:mod:`tsssm.estimators._panel`). :func:`fit_many` cuts the series into chunks and maps
:func:`fit_chunk` over them, locally in a loop or on a ``dask.distributed`` cluster
(``client.map`` and ``client.gather``: dask schedules, tsssm never does). The same function
can be handed to Spark's ``groupBy(...).applyInPandas`` or Ray. Because it lives in an
importable module, a worker compiles each bucket once and reuses it for every later chunk.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import clone

from tsssm.data._panel import ID_COLUMN, TIME_COLUMN
from tsssm.errors import DataError

#: Columns that :func:`fit_chunk` adds to the parameters of each series.
FIT_COLUMNS = ("log_likelihood", "converged", "nobs", "aic", "bic")


class ManyResult(NamedTuple):
    """What :func:`fit_many` returns.

    Attributes
    ----------
    params : pd.DataFrame
        One row per series (index ``unique_id``): the estimated parameters, then
        ``log_likelihood``, ``converged``, ``nobs``, ``aic``, ``bic``.
    forecast : pd.DataFrame or None
        With ``horizon=``: :meth:`tsssm.Forecast.to_frame` of every series (``unique_id``,
        ``ds``, ``column``, ``mean``, ``std``, interval bounds), else None.
    """

    params: pd.DataFrame
    forecast: pd.DataFrame | None


def fit_chunk(y: pd.DataFrame, estimator, horizon: int | None = None, levels=(0.8, 0.95)) -> pd.DataFrame:
    """Fit ``estimator`` to every series of the long frame ``y``; one frame out.

    Parameters
    ----------
    y : pd.DataFrame
        Long frame (``unique_id``, ``ds``, value columns) holding whole series.
    estimator : a classical tsssm estimator (unfitted template; it is cloned, never changed).
    horizon : int, optional
        Also forecast this many steps ahead of each series' own last time.
    levels : sequence of float
        Interval levels of the forecast.

    Returns
    -------
    pd.DataFrame
        Without ``horizon``: one row per series with ``unique_id``, the parameters and
        :data:`FIT_COLUMNS`. With ``horizon``: the forecast rows (``unique_id``, ``ds``,
        ``column``, ``mean``, ``std``, bounds) with the series' parameter and fit columns
        repeated on each row (one frame, as Spark's ``applyInPandas`` wants).
    """
    model = clone(estimator).fit(y)
    if not getattr(model, "panel_", False):
        raise DataError(f"{type(estimator).__name__} did not fit y as a panel; pass a long frame with {ID_COLUMN!r}")
    fit = model.params_.copy()
    for name in FIT_COLUMNS:
        fit[name] = getattr(model, name + "_")
    fit = fit.reset_index()
    if horizon is None:
        return fit
    forecast = model.forecast(horizon, levels=levels).to_frame()
    return forecast.merge(fit, on=ID_COLUMN, how="left", validate="many_to_one")


def fit_many(
    y, estimator, *, horizon: int | None = None, levels=(0.8, 0.95), client=None, chunk_size: int = 256
) -> ManyResult:
    """Fit ``estimator`` to many series, chunk by chunk, locally or on a dask cluster.

    Parameters
    ----------
    y : pd.DataFrame or array_like
        Long frame (``unique_id``, ``ds``, value columns) or a ``(B, T, D)`` array (series ids
        ``0 .. B-1``, times ``0 .. T-1``, columns ``y0 ...``; NaN = missing).
    estimator : a classical tsssm estimator, e.g. ``tsssm.LocalLevel()`` (a template: cloned
        per chunk).
    horizon : int, optional
        Also forecast each series this many steps ahead.
    levels : sequence of float
        Interval levels of the forecast.
    client : dask.distributed.Client, optional
        Map the chunks with ``client.map`` and collect them with ``client.gather``. Without it,
        the chunks run one after the other in this process (the same function, the same
        numbers).
    chunk_size : int
        Series per chunk (per task). Each chunk is one vmapped fit per padded-length bucket;
        a few hundred series per chunk amortise the per-task overhead.

    Returns
    -------
    ManyResult
        ``params`` (one row per series, in the order of first appearance in ``y``) and
        ``forecast`` (None without ``horizon``).

    Raises
    ------
    DataError
        For bad data (as ``estimator.fit``), a frame that is not long, or ``chunk_size < 1``.
    """
    if not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise DataError(f"chunk_size must be a positive int, got {chunk_size!r}")
    chunks = _chunks(_long_frame(y), int(chunk_size))
    if client is None:
        parts = [fit_chunk(chunk, estimator, horizon, levels) for chunk in chunks]
    else:
        futures = client.map(fit_chunk, chunks, estimator=estimator, horizon=horizon, levels=levels, pure=False)
        parts = client.gather(futures)
    frame = pd.concat(parts, ignore_index=True)
    if horizon is None:
        return ManyResult(frame.set_index(ID_COLUMN), None)
    fit_cols = [ID_COLUMN] + [c for c in parts[0].columns if c not in _forecast_columns(parts[0])]
    params = frame[fit_cols].drop_duplicates(ID_COLUMN).set_index(ID_COLUMN)
    return ManyResult(params, frame[_forecast_columns(parts[0])])


def _forecast_columns(part: pd.DataFrame) -> list:
    """The forecast columns of a :func:`fit_chunk` frame with a horizon: up to ``std``'s bounds."""
    cols = list(part.columns)
    last = max(i for i, c in enumerate(cols) if c in ("mean", "std") or str(c).startswith(("lower_", "upper_")))
    return cols[: last + 1]


def _long_frame(y) -> pd.DataFrame:
    """A long frame as given, or a ``(B, T, D)`` array as a long frame."""
    if isinstance(y, pd.DataFrame):
        if ID_COLUMN not in y.columns:
            raise DataError(
                f"fit_many needs a long frame with columns {ID_COLUMN!r}, {TIME_COLUMN!r} and values, or a (B, T, D) "
                "array; for one series call estimator.fit(y)"
            )
        return y
    values = np.asarray(y, dtype=float)
    if values.ndim != 3:
        raise DataError(f"fit_many takes a long frame or a (B, T, D) array, got an array of shape {values.shape}")
    B, T, D = values.shape
    frame = pd.DataFrame({ID_COLUMN: np.repeat(np.arange(B), T), TIME_COLUMN: np.tile(np.arange(T), B)})
    for d in range(D):
        frame[f"y{d}"] = values[:, :, d].ravel()
    return frame


def _chunks(y: pd.DataFrame, chunk_size: int) -> list:
    """Whole series, ``chunk_size`` ids per chunk, in order of first appearance."""
    codes, _ = pd.factorize(y[ID_COLUMN])
    if np.any(codes < 0):
        raise DataError(f"y has a missing {ID_COLUMN!r}; drop those rows")
    return [part for _, part in y.groupby(codes // chunk_size, sort=True)]
