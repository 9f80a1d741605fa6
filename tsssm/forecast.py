"""The :class:`Forecast` result: predictive distributions over future (or in-sample) times.

A forecast holds, per series and time, either Gaussian marginals (mean and standard deviation,
from the classical family) or draws (from families that sample), and returns everything as
frames shaped like the data the model was fitted on (wide in, wide out; long in, long out).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from tsssm.errors import DataError


def _check_level(level: float) -> float:
    if not 0.0 < float(level) < 1.0:
        raise DataError(f"interval level must lie strictly between 0 and 1 (e.g. 0.95), got {level!r}")
    return float(level)


def _check_quantile(q: float) -> float:
    if not 0.0 < float(q) < 1.0:
        raise DataError(f"quantile must lie strictly between 0 and 1, got {q!r}")
    return float(q)


class Forecast:
    """Predictive distribution of a fitted model over a set of time points.

    Parameters
    ----------
    meta : tsssm.data.PanelMeta
        Layout of the data the model was fitted on; outputs follow it.
    indexes : tuple of pandas.Index
        The time points of each series.
    mean : ndarray (B, h, D)
        Predictive means.
    std : ndarray (B, h, D), optional
        Predictive standard deviations of Gaussian marginals. Without it, quantiles come from
        the draws.
    mixture : tuple of ndarray, optional
        ``(means, stds)``, each ``(K, B, h, D)``: every marginal is an equal-weight mixture of K
        Gaussians (e.g. one per posterior draw of a Bayesian fit). ``mean`` and ``std`` are then
        the mixture's moments (law of total variance) and quantiles solve the mixture's CDF
        exactly (:func:`mixture_quantile`); ``mean``/``std`` arguments are ignored.
    sampler : callable, optional
        ``sampler(num_samples, seed) -> ndarray (num_samples, B, h, D)``: joint draws (across
        time and columns), made on first access of :attr:`samples`.
    num_samples : int
        How many draws :attr:`samples` holds.
    levels : sequence of float
        Default interval levels of :meth:`to_frame` and :meth:`plot`.
    """

    def __init__(
        self,
        meta,
        indexes,
        mean,
        std=None,
        *,
        sampler: Callable | None = None,
        samples=None,
        mixture=None,
        num_samples: int = 1000,
        levels: Sequence[float] = (0.8, 0.95),
        random_state=None,
    ):
        self._meta = meta
        self._indexes = tuple(indexes)
        self._mixture = None
        if mixture is not None:
            means, stds = (np.asarray(a, float) for a in mixture)
            self._mixture = (means, stds)
            mean = np.mean(means, axis=0)
            std = np.sqrt(np.maximum(np.mean(stds**2 + means**2, axis=0) - mean**2, 0.0))
        self._mean = np.asarray(mean, float)
        self._std = None if std is None else np.asarray(std, float)
        self._sampler = sampler
        self._samples = None if samples is None else np.asarray(samples, float)
        self._num_samples = int(num_samples)
        self._seed = 0 if random_state is None else int(np.random.default_rng(random_state).integers(2**31))
        self.levels = tuple(_check_level(level) for level in levels)
        if self._std is None and self._samples is None and sampler is None:
            raise ValueError("a Forecast needs standard deviations or draws")

    def _frame(self, values) -> pd.DataFrame:
        return self._meta.frame(values, self._indexes)

    @property
    def index(self) -> pd.Index:
        """Time points of the first series (all of them: :attr:`indexes`)."""
        return self._indexes[0]

    @property
    def indexes(self) -> tuple:
        return self._indexes

    @property
    def mean(self) -> pd.DataFrame:
        """Predictive means, shaped like the fitted data."""
        return self._frame(self._mean)

    @property
    def std(self) -> pd.DataFrame:
        """Predictive standard deviations (Gaussian families) or the draws' standard deviation."""
        return self._frame(self._std if self._std is not None else np.std(self._draws(), axis=0))

    def _draws(self) -> np.ndarray:
        """All draws, ``(num_samples, B, h, D)`` (made on first use)."""
        if self._samples is None:
            if self._sampler is None:
                raise AttributeError("this forecast carries no draws")
            self._samples = np.asarray(self._sampler(self._num_samples, self._seed), float)
        return self._samples

    @property
    def samples(self) -> np.ndarray:
        """Joint predictive draws, ``(num_samples, h, D)`` for one series, ``(num_samples, B, h, D)`` for a panel."""
        draws = self._draws()
        return draws[:, 0] if draws.shape[1] == 1 else draws

    def _quantile_array(self, q: float) -> np.ndarray:
        q = _check_quantile(q)
        if self._mixture is not None:
            return mixture_quantile(*self._mixture, q)
        if self._std is not None:
            return self._mean + scipy.stats.norm.ppf(q) * self._std
        return np.quantile(self._draws(), q, axis=0)

    def quantile(self, q: float) -> pd.DataFrame:
        """The ``q``-quantile of each predictive marginal."""
        return self._frame(self._quantile_array(q))

    def interval(self, level: float = 0.95) -> pd.DataFrame:
        """Central ``level`` interval: columns ``lower``/``upper`` (one series column) or
        a (column, bound) MultiIndex (several columns)."""
        level = _check_level(level)
        lower = self.quantile((1.0 - level) / 2.0)
        upper = self.quantile((1.0 + level) / 2.0)
        return _combine_bounds(lower, upper, self._meta.columns)

    def to_frame(self, levels: Sequence[float] | None = None) -> pd.DataFrame:
        """Tidy frame: one row per time (and series and column) with ``mean``, ``std`` and
        ``lower_<pct>``/``upper_<pct>`` per interval level. The time column keeps the index's
        name (``time`` when it has none)."""
        levels = self.levels if levels is None else tuple(_check_level(lv) for lv in levels)
        parts = {"mean": self._mean, "std": self._std if self._std is not None else np.std(self._draws(), axis=0)}
        for level in levels:
            pct = f"{100 * level:g}"
            parts[f"lower_{pct}"] = self._quantile_array((1.0 - level) / 2.0)
            parts[f"upper_{pct}"] = self._quantile_array((1.0 + level) / 2.0)
        frames = []
        for name, values in parts.items():
            long = _stack_columns(self._frame(values), self._meta)
            frames.append(long.rename(columns={"value": name}))
        keys = [c for c in frames[0].columns if c not in parts]
        out = frames[0]
        for frame in frames[1:]:
            out[frame.columns[-1]] = frame[frame.columns[-1]].to_numpy()
        return out.reset_index(drop=True)[keys + list(parts)]

    def plot(self, history=None, *, levels: Sequence[float] | None = None, ax=None, column=None):
        """Fan chart of the first series: mean and intervals, after ``history`` if given.

        Needs matplotlib (``pip install tsssm[plot]``). Returns the matplotlib figure.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("Forecast.plot needs matplotlib: pip install 'tsssm[plot]'") from exc
        levels = self.levels if levels is None else levels
        column = self._meta.columns[0] if column is None else column
        if column not in self._meta.columns:
            raise DataError(f"column {column!r} is not one of {list(self._meta.columns)}")
        j = self._meta.columns.index(column)
        if ax is None:
            fig, ax = plt.subplots(figsize=(8, 3.5))
        else:
            fig = ax.figure
        x = self._indexes[0]
        if history is not None:
            if isinstance(history, pd.DataFrame) and column in history:
                hist = history[column]
            else:  # a Series, or an array / frame whose columns follow the model's
                values = np.asarray(history).reshape(len(history), -1)
                hist = pd.Series(values[:, j if values.shape[1] > 1 else 0], index=getattr(history, "index", None))
            ax.plot(hist.index, hist.to_numpy(), color="0.2", lw=1, label="observed")
        for level in sorted(levels, reverse=True):
            lo = self._quantile_array((1 - level) / 2)[0, :, j]
            hi = self._quantile_array((1 + level) / 2)[0, :, j]
            ax.fill_between(x, lo, hi, color="C0", alpha=0.15 + 0.2 * (1 - level), lw=0, label=f"{100 * level:g}% interval")
        ax.plot(x, self._mean[0, :, j], color="C0", lw=1.5, label="mean")
        ax.set_ylabel(str(column))
        ax.legend(loc="best", fontsize="small")
        return fig

    def __repr__(self):
        B, h, D = self._mean.shape
        kind = "Gaussian mixture" if self._mixture is not None else "Gaussian" if self._std is not None else "sampled"
        return f"Forecast({kind}, series={B}, steps={h}, columns={list(self._meta.columns)})"


def mixture_quantile(means, stds, q: float, iterations: int = 64) -> np.ndarray:
    """The ``q``-quantile of equal-weight Gaussian mixtures (components on axis 0), by bisection.

    The quantile lies between the smallest and the largest component quantile; 64 halvings of
    that bracket reach round-off. NaN components (e.g. a diffuse burn-in step) give NaN.
    """
    means, stds = np.asarray(means, float), np.maximum(np.asarray(stds, float), 1e-300)
    z = scipy.stats.norm.ppf(q)
    low, high = np.min(means + z * stds, axis=0), np.max(means + z * stds, axis=0)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        below = np.mean(scipy.stats.norm.cdf((mid - means) / stds), axis=0) < q
        low, high = np.where(below, mid, low), np.where(below, high, mid)
    return 0.5 * (low + high)


def _combine_bounds(lower: pd.DataFrame, upper: pd.DataFrame, columns) -> pd.DataFrame:
    value_cols = [c for c in lower.columns if c in columns]
    keys = [c for c in lower.columns if c not in columns]
    if len(value_cols) == 1:
        out = lower[keys].copy()
        out["lower"] = lower[value_cols[0]].to_numpy()
        out["upper"] = upper[value_cols[0]].to_numpy()
        return out
    both = pd.concat({"lower": lower[value_cols], "upper": upper[value_cols]}, axis=1)
    both = both.swaplevel(axis=1).sort_index(axis=1, level=0, sort_remaining=False)
    if keys:
        both.index = pd.MultiIndex.from_frame(lower[keys])
    return both


def _stack_columns(frame: pd.DataFrame, meta) -> pd.DataFrame:
    """Wide or long frame of values -> rows of (keys..., column, value)."""
    value_cols = [c for c in frame.columns if c in meta.columns]
    keys = [c for c in frame.columns if c not in meta.columns]
    if not keys:
        name = frame.index.name if frame.index.name is not None else "time"
        frame = frame.rename_axis(name).reset_index()
        keys = [name]
    return frame.melt(id_vars=keys, value_vars=value_cols, var_name="column", value_name="value")
