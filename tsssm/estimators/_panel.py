"""Many series through the classical estimators: the panel side of :class:`StateSpaceEstimator`.

A long frame (``unique_id``, ``ds``, values) or a ``(B, T, D)`` array fits every series at once,
either with independent parameters per series (the default: the jitted BFGS is vmapped over
series batched by padded length, :func:`tsssm.inference.mle.fit_many`) or, with ``pooled=True``,
with one parameter set shared by all series (their joint log-likelihood is maximised,
:func:`tsssm.inference.mle.fit_pooled`). The predictive questions are answered the same way for
both (:func:`tsssm.inference.mle.map_series`, with the shared parameters repeated per series);
a pooled model also answers them for series it was not fitted on. Results come back long, keyed
by ``unique_id``.

Series are padded at the end (the layout of :func:`tsssm.data.to_panel`): the Kalman filter is
causal, so trailing masked steps change neither the likelihood nor any earlier prediction, and
each series forecasts from its own last time.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from tsssm._config import float64
from tsssm.data import future_inputs, future_times
from tsssm.data._panel import ID_COLUMN, TIME_COLUMN
from tsssm.errors import ConvergenceWarning, DataError
from tsssm.forecast import Forecast
from tsssm.inference import mle, posterior


class PanelMixin:
    """Panel (many-series) methods of :class:`tsssm.estimators.classical.StateSpaceEstimator`."""

    def _is_panel(self) -> bool:
        return getattr(self, "panel_", False)

    def _is_pooled(self) -> bool:
        return getattr(self, "pooled_", False)

    @staticmethod
    def _wants_panel(meta) -> bool:
        """A long frame, or several series: a panel."""
        return meta.layout == "long" or len(meta.series_ids) > 1

    # ------------------------------------------------------------------ fit
    def _panel_setup(self, panel, meta):
        """The panel's data (leading series axis) and the model for it."""
        if not meta.regular:
            raise DataError(
                f"the series of this panel have irregular timestamps; {type(self).__name__} fits panels on a regular "
                "grid only (for now): fit each irregular series on its own (it gets the continuous-time model), "
                "or resample the panel onto a regular grid (missing steps may stay NaN)"
            )
        data = mle.SeriesData(panel.times, panel.values, panel.mask, panel.inputs)
        return data, self._panel_model(data, meta)

    def _panel_model(self, data, meta):
        """The model shared (in structure) by the series of a panel."""
        return self._build_model(len(meta.columns), tuple(meta.input_columns))

    def _pooled_start(self, model, data, meta) -> dict | None:
        """Starting values of a pooled fit (the user's ``start_params``; subclasses may add moment estimates)."""
        return self.start_params

    def _fit_pooled(self, panel, meta):
        data, model = self._panel_setup(panel, meta)
        start = self._pooled_start(model, data, meta)
        with float64():
            data = self._jax(data)
            result = mle.fit_pooled(
                model, data, meta.lengths, fixed_params=self.fixed_params, start_params=start, maxiter=self.maxiter
            )
        data = mle.SeriesData(*(None if a is None else np.asarray(a) for a in data))
        self.panel_ = self.pooled_ = True
        self._set_fitted(model, meta, data, result.params, result.log_likelihood, result.converged, len(meta.series_ids))
        self._stacked = self._panel_params(meta.series_ids)
        return self

    def _fit_panel(self, panel, meta):
        data, model = self._panel_setup(panel, meta)
        with float64():
            results = mle.fit_many(
                model, data, meta.lengths, fixed_params=self.fixed_params, start_params=self.start_params,
                maxiter=self.maxiter,
            )
        layout_all = mle.ParamLayout.build(model.param_specs(), None)
        ids = pd.Index(list(meta.series_ids), name=ID_COLUMN)
        table = np.stack([layout_all.flat_constrained(r.params) for r in results])
        self.panel_, self.pooled_ = True, False
        self.model_ = model
        self.meta_ = meta
        self.data_ = data
        self.params_ = pd.DataFrame(table, index=ids, columns=layout_all.labels())
        self._stacked = {k: np.stack([np.asarray(r.params[k], float) for r in results]) for k in results[0].params}
        self.log_likelihood_ = pd.Series([r.log_likelihood for r in results], index=ids, name="log_likelihood")
        self.converged_ = pd.Series([r.converged for r in results], index=ids, name="converged")
        self.nobs_ = pd.Series(np.sum(panel.mask, axis=(1, 2)), index=ids, name="nobs")
        free = mle.ParamLayout.build(model.param_specs(), self.fixed_params)
        self.num_params_ = int(sum(int(np.prod(s.shape, dtype=int)) for s in free.free))
        num_inputs = None if panel.inputs is None else panel.inputs.shape[-1]
        n_effective = np.maximum(self.nobs_.to_numpy() - _num_diffuse(model, num_inputs), 1)
        self.aic_ = (-2.0 * self.log_likelihood_ + 2.0 * self.num_params_).rename("aic")
        self.bic_ = (-2.0 * self.log_likelihood_ + self.num_params_ * np.log(n_effective)).rename("bic")
        self._bse = None
        failed = [i for i, ok in zip(meta.series_ids, self.converged_) if not ok]
        if failed:
            warnings.warn(
                f"maximum-likelihood optimisation did not converge for {len(failed)} of {len(ids)} series "
                f"(unique_id {failed[:5]}{' ...' if len(failed) > 5 else ''}); see converged_ and log_likelihood_, "
                "try other start_params= or a larger maxiter=",
                ConvergenceWarning,
                stacklevel=3,
            )
        return self

    # ------------------------------------------------------------------ helpers
    def _panel_params(self, series_ids) -> dict:
        """Stacked per-series parameters for ``series_ids`` (fitted ids, any order or subset;
        any ids for a pooled model, whose shared parameters are repeated)."""
        if self._is_pooled():
            num = len(series_ids)
            return {k: np.broadcast_to(v, (num,) + np.shape(v)) for k, v in self.params_.items()}
        position = pd.Index(list(self.meta_.series_ids)).get_indexer(list(series_ids))
        if np.any(position < 0):
            unknown = [s for s, p in zip(series_ids, position) if p < 0]
            raise DataError(
                f"series {unknown[:5]} were not in the data the model was fitted on; fit them first "
                f"(fitted unique_id: {list(self.meta_.series_ids)[:5]} ...)"
            )
        return {k: v[position] for k, v in self._stacked.items()}

    def _panel_data(self, y, X):
        """Fitted data (y=None) or new data with the fitted layout: (data, meta, params)."""
        if y is None:
            return self.data_, self.meta_, self._stacked
        panel, meta = self._to_panel(y, X)
        self._check_same_layout(meta)
        data = mle.SeriesData(panel.times, panel.values, panel.mask, panel.inputs)
        return data, meta, self._panel_params(meta.series_ids)

    def _panel_map(self, fn, params, data, lengths, *batched, **static):
        with float64():
            return mle.map_series(fn, self.model_, params, data, lengths, *batched, **static)

    def _long(self, meta, blocks: list, columns) -> pd.DataFrame:
        """Per-series ``(len(index_b), k)`` blocks -> long frame ``unique_id``, ``ds``, columns."""
        lengths = [len(index) for index in meta.indexes]
        out = {
            ID_COLUMN: pd.Index(list(meta.series_ids)).repeat(lengths),
            TIME_COLUMN: meta.indexes[0].append(list(meta.indexes[1:])),
        }
        out.update(zip(columns, np.concatenate([np.asarray(b)[:n] for b, n in zip(blocks, lengths)]).T))
        return pd.DataFrame(out)

    # ------------------------------------------------------------------ predictive distributions
    def _forecast_panel(self, horizon, times, X, levels, num_samples):
        self._check_horizon(horizon, times)
        meta, data = self.meta_, self.data_
        lengths = np.asarray(meta.lengths)
        future_t, indexes = future_times(meta, horizon, times=times)
        last = np.asarray(data.times)[np.arange(len(lengths)), lengths - 1]
        steps = future_t - last[:, None]
        if np.any(np.abs(steps - np.round(steps)) > 1e-9):
            raise DataError(
                f"{type(self).__name__} is a discrete-time model: future times must lie on its grid "
                "(whole steps after each series' last observation)"
            )
        steps = np.round(steps).astype(int)
        num_future = steps.max(axis=1)
        extended = mle.pad_series(data, data.times.shape[1] + int(num_future.max()))
        if data.inputs is not None:
            if np.any(num_future != steps.shape[1]):
                raise DataError("a model with exogenous inputs needs consecutive future steps (a horizon), not gaps")
            future_x = future_inputs(meta, X, indexes)
            inputs = np.array(extended.inputs)
            for b, n in enumerate(lengths):
                inputs[b, n : n + steps.shape[1]] = future_x[b, : steps.shape[1]]
            extended = extended._replace(inputs=inputs)
        elif X is not None:
            raise DataError("X was given for the forecast, but the model was fitted without exogenous inputs")
        rows = lengths[:, None] - 1 + steps  # (B, h)
        ext_lengths = lengths + num_future
        preds = self._panel_map(posterior.predictions, self._stacked, extended, ext_lengths)
        mean = np.stack([p.mean[r] for p, r in zip(preds, rows)])
        std = np.stack([np.sqrt(np.clip(np.diagonal(p.cov[r], axis1=1, axis2=2), 0.0, None)) for p, r in zip(preds, rows)])
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            bad = [s for s, m in zip(meta.series_ids, np.isfinite(mean).all(axis=(1, 2))) if not m]
            raise DataError(
                f"the forecast of series {bad[:5]} is not finite: the data do not identify the model's initial "
                "states (too few observations for its diffuse states?) or the fit failed"
            )
        params, panel_map = self._stacked, self._panel_map

        def sampler(num, seed):
            keys = jax.random.split(jax.random.key(seed), len(lengths))
            draws = panel_map(posterior.observation_draws, params, extended, ext_lengths, keys, num_draws=num)
            return np.stack([d[:, r] for d, r in zip(draws, rows)], axis=1)  # (num, B, h, D)

        return Forecast(
            meta, indexes, mean, std, sampler=sampler, num_samples=num_samples, levels=levels,
            random_state=self.random_state,
        )

    def _predictions_panel(self, y, X):
        data, meta, params = self._panel_data(y, X)
        preds = self._panel_map(posterior.predictions, params, data, meta.lengths)
        return preds, meta

    def _predict_panel(self, y, X, levels):
        preds, meta = self._predictions_panel(y, X)
        T = max(meta.lengths)
        mean = np.full((len(preds), T, len(meta.columns)), np.nan)
        std = np.full_like(mean, np.nan)
        for b, (p, n) in enumerate(zip(preds, meta.lengths)):
            valid = p.valid[:n, None]
            mean[b, :n] = np.where(valid, p.mean[:n], np.nan)
            std[b, :n] = np.where(valid, np.sqrt(np.clip(np.diagonal(p.cov[:n], axis1=1, axis2=2), 0.0, None)), np.nan)
        return Forecast(meta, meta.indexes, mean, std, levels=levels)

    def _score_samples_panel(self, y, X) -> pd.DataFrame:
        preds, meta = self._predictions_panel(y, X)
        return self._long(meta, [-p.log_density[:, None] for p in preds], ["score"])

    def _score_panel(self, y, X) -> pd.Series:
        if y is None and not self._is_pooled():
            return self.log_likelihood_.rename("score")
        data, meta, params = self._panel_data(y, X)
        lls = self._panel_map(mle._log_likelihood_jit, params, data, meta.lengths)
        return pd.Series(np.asarray(lls, float), index=pd.Index(list(meta.series_ids), name=ID_COLUMN), name="score")

    def _smooth_panel(self, return_std):
        moments = self._panel_map(posterior.smoothed_states, self._stacked, self.data_, self.meta_.lengths)
        names = list(self.model_.state_names())
        mean = self._long(self.meta_, [m.mean for m in moments], names)
        if not return_std:
            return mean
        std = [np.sqrt(np.clip(np.diagonal(m.cov, axis1=1, axis2=2), 0.0, None)) for m in moments]
        return mean, self._long(self.meta_, std, names)

    def _not_for_panels(self, what: str):
        workaround = (
            "keep params_ and rebuild the model later with fixed_params=params_ (the fit then only filters)"
            if self._is_pooled()
            else "fit one series (df[df.unique_id == id]) for it"
        )
        raise DataError(
            f"{what} is not available for a model fitted on {len(self.meta_.series_ids)} series (a panel) yet; {workaround}"
        )



@functools.lru_cache(maxsize=256)
def _num_diffuse(model, num_inputs: int | None) -> int:
    """Number of diffuse initial states of ``model`` (from shapes alone: traced once, never compiled)."""
    params = {s.name: jax.ShapeDtypeStruct(tuple(s.shape), jnp.float64) for s in model.param_specs()}
    times = jax.ShapeDtypeStruct((1,), jnp.float64)
    inputs = None if num_inputs is None else jax.ShapeDtypeStruct((1, num_inputs), jnp.float64)
    with float64():
        _, init = jax.eval_shape(model.system, params, times, inputs)
    return int(init.diffuse.shape[1])
