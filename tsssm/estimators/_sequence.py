"""What the neural sequence estimators (deep Markov model, latent ODE/SDE, Chimera) share: data, scaling, training, outputs, saving.

They train one set of network weights for all series of a panel on padded float32 batches
(:class:`tsssm.inference.batching.SequenceBatch`) of standardised values, with time gaps in units
of the median gap of the training data; every output is mapped back to the user's units and
layout here.
"""

from __future__ import annotations

import abc

import jax
import numpy as np
import pandas as pd

from tsssm.data import PanelMeta, to_panel
from tsssm.data._panel import ID_COLUMN, TIME_COLUMN
from tsssm.errors import DataError
from tsssm.estimators.base import BaseForecaster, encode_params, frame_from_arrays, frame_to_arrays
from tsssm.forecast import Forecast
from tsssm.inference import network_mle, svi
from tsssm.inference.batching import SequenceBatch, as_batch


class SequenceEstimator(BaseForecaster):
    """Base of the neural sequence estimators (abstract: subclasses implement fit, saving, restoring).

    Subclasses have the hyperparameters ``time_unit`` and ``random_state``.
    """

    # ------------------------------------------------------------------ data
    def _seed(self) -> int:
        """The training seed drawn from ``random_state``."""
        return int(np.random.default_rng(self.random_state).integers(2**31))

    def _eval_seed(self, salt: int) -> int:
        base = self.random_state if isinstance(self.random_state, (int, np.integer)) else 0
        return int(base) * 7919 + salt

    def _to_panel(self, y, X):
        if X is not None:
            raise DataError(f"{type(self).__name__} takes no exogenous inputs (X) yet; pass X=None")
        return to_panel(y, time_unit=self.time_unit)

    def _check_same_layout(self, meta: PanelMeta):
        arrays = "array" in (meta.layout, self.meta_.layout)
        if (len(meta.columns) != len(self.meta_.columns)) if arrays else (meta.columns != self.meta_.columns):
            raise DataError(
                f"the data has columns {list(meta.columns)}, but the model was fitted on {list(self.meta_.columns)}"
            )
        if meta.time_unit != self.meta_.time_unit:
            raise DataError(
                f"the data's time unit is {meta.time_unit!r}, but the model was fitted with time unit "
                f"{self.meta_.time_unit!r}; pass time_unit={self.meta_.time_unit!r}"
            )

    @staticmethod
    def _observed(panel, lengths) -> tuple[np.ndarray, np.ndarray]:
        """``valid (B, T)`` (inside each series) and the observed entries ``(B, T, D)``."""
        T = np.asarray(panel.times).shape[1]
        valid = np.arange(T)[None, :] < np.asarray(lengths, int)[:, None]
        return valid, np.asarray(panel.mask, bool) & valid[:, :, None]

    def _set_scaling(self, panel, meta: PanelMeta, standardise: bool = True):
        """Column standardisation (``loc_``, ``scale_``) and time scale (``time_scale_``, ``max_delta_``)."""
        values = np.asarray(panel.values, float)
        valid, observed = self._observed(panel, meta.lengths)
        if standardise:
            obs = np.where(observed, values, np.nan)
            loc, scale = np.nanmean(obs, axis=(0, 1)), np.nanstd(obs, axis=(0, 1))
            scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        else:
            loc, scale = np.zeros(values.shape[2]), np.ones(values.shape[2])
        gaps = np.diff(np.asarray(panel.times, float), axis=1)[valid[:, 1:]]
        gaps = gaps[gaps > 0]
        self.loc_, self.scale_ = loc, scale
        self.time_scale_ = float(np.median(gaps)) if gaps.size else 1.0
        self.max_delta_ = max(float(np.max(gaps)) / self.time_scale_, 1.0) if gaps.size else 1.0
        self.meta_, self.panel_data_ = meta, panel

    def _standardised(self, panel, lengths):
        """``valid (B, T)``, observed ``mask (B, T, D)``, scaled values ``(B, T, D)`` (0 where not
        observed) and the ``(B, T)`` log-Jacobian of the scaling per step."""
        valid, mask = self._observed(panel, lengths)
        y = np.where(mask, (np.asarray(panel.values, float) - self.loc_) / self.scale_, 0.0)
        return valid, mask, y, np.sum(np.where(mask, np.log(self.scale_), 0.0), axis=2)

    def _batch(self, panel, lengths) -> tuple[SequenceBatch, np.ndarray]:
        """Panel -> scaled float32 batch and the ``(B, T)`` log-Jacobian of the scaling per step."""
        times = np.asarray(panel.times, float)
        valid, mask, y, log_jac = self._standardised(panel, lengths)
        gaps = np.diff(times, axis=1, prepend=times[:, :1] - self.time_scale_)
        delta = np.where(valid, gaps / self.time_scale_, 1.0)
        return as_batch(y, mask, delta, valid), log_jac

    def _prepare(self, y=None, X=None):
        """The fitted data (``y=None``) or new data of the fitted layout: panel, meta, batch, log-Jacobian."""
        self._check_fitted()
        if y is None:
            panel, meta = self.panel_data_, self.meta_
        else:
            panel, meta = self._to_panel(y, X)
            self._check_same_layout(meta)
        batch, log_jac = self._batch(panel, meta.lengths)
        return panel, meta, batch, log_jac

    @staticmethod
    def _validation_split(num: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Sorted indexes of training and validation series (no validation below 4 series)."""
        n_val = round(fraction * num) if num >= 4 and fraction > 0 else 0
        order = rng.permutation(num)
        n_val = min(n_val, num - 1)
        return np.sort(order[n_val:]), np.sort(order[:n_val])

    # ------------------------------------------------------------------ training
    def _set_network(self, net):
        self.network_ = net
        self.params_ = {f"w{i:03d}": np.asarray(x) for i, x in enumerate(network_mle.network_leaves(net))}

    def _record_fit(self, result):
        """Set the network and the fitted attributes every training loop reports (svi or network_mle)."""
        self._set_network(result.network)
        self.history_ = pd.DataFrame(result.history)
        self.compile_seconds_ = result.compile_seconds
        self.train_seconds_ = result.train_seconds
        self.n_iter_ = result.num_updates
        self.stopped_ = result.stopped

    # ------------------------------------------------------------------ outputs
    @staticmethod
    def _per_series(meta: PanelMeta) -> bool:
        return meta.layout == "long" or len(meta.series_ids) > 1

    def _per_step_frame(self, scores, meta: PanelMeta):
        """``(B, T)`` per-step scores -> a Series (one series) or a long frame (``unique_id, ds, score``)."""
        if not self._per_series(meta):
            return pd.Series(scores[0, : meta.lengths[0]], index=meta.indexes[0], name="score")
        lengths = list(meta.lengths)
        return pd.DataFrame({
            ID_COLUMN: pd.Index(list(meta.series_ids)).repeat(lengths),
            TIME_COLUMN: meta.indexes[0].append(list(meta.indexes[1:])),
            "score": np.concatenate([s[:n] for s, n in zip(scores, lengths)]),
        })

    def _predictive(self, meta: PanelMeta, valid, pred_mean, pred_var, levels) -> Forecast:
        """One-step predictive moments ``(B, T, D)`` (scaled units) -> a Gaussian :class:`Forecast`."""
        valid = np.asarray(valid)[:, :, None]
        mean = np.where(valid, np.asarray(pred_mean, float) * self.scale_ + self.loc_, np.nan)
        std = np.where(valid, np.sqrt(np.asarray(pred_var, float)) * self.scale_, np.nan)
        return Forecast(meta, meta.indexes, mean, std, levels=levels)

    def _per_series_total(self, totals, meta: PanelMeta):
        """``(B,)`` totals -> a float (one series) or a Series per ``unique_id``."""
        if not self._per_series(meta):
            return float(totals[0])
        return pd.Series(totals, index=pd.Index(list(meta.series_ids), name=ID_COLUMN), name="score")

    # ------------------------------------------------------------------ persistence
    def _common_state(self):
        """The training data, scaling, hyperparameters and history, as (JSON document, arrays)."""
        panel = self.panel_data_
        doc, arrays = frame_to_arrays(self.meta_.frame(np.where(panel.mask, panel.values, np.nan)), "y")
        arrays |= {f"param.{k}": v for k, v in self.params_.items()}
        arrays |= {"loc": self.loc_, "scale": self.scale_}
        document = {
            "hyperparameters": encode_params(self.get_params(deep=False)),
            "y": doc,
            "time_scale": self.time_scale_,
            "max_delta": self.max_delta_,
            "history": self.history_.to_dict(orient="list"),
        }
        return document, arrays

    def _restore_common(self, document, arrays) -> list:
        """Set what :meth:`_common_state` wrote; returns the saved weight arrays in order."""
        panel, meta = self._to_panel(frame_from_arrays(document["y"], arrays, "y"), None)
        self.meta_, self.panel_data_ = meta, panel
        self.loc_, self.scale_ = np.asarray(arrays["loc"], float), np.asarray(arrays["scale"], float)
        self.time_scale_ = float(document["time_scale"])
        self.max_delta_ = float(document["max_delta"])
        self.history_ = pd.DataFrame(document["history"])
        return [arrays[k] for k in sorted(k for k in arrays if k.startswith("param."))]


class SequenceForecaster(SequenceEstimator):
    """A sequence estimator that forecasts by drawing joint future paths (``_draw``)."""

    @abc.abstractmethod
    def _draw(self, horizon, times, num_samples: int, seed: int):
        """Future time indexes, draws ``(num_samples, B, h, D)`` and means ``(B, h, D)`` in the units of the data."""

    def forecast(self, horizon=None, *, times=None, X=None, levels=(0.8, 0.95), num_samples=1000) -> Forecast:
        """Predictive distribution ``horizon`` steps ahead (or at explicit future ``times``, any gaps).

        From ``num_samples`` joint draws of the future (how they are drawn: the class docstring);
        the mean averages the predictive means along the drawn paths, quantiles come from the draws.
        """
        self._check_fitted()
        if X is not None:
            raise DataError(f"{type(self).__name__} takes no exogenous inputs (X) yet; pass X=None")
        indexes, draws, mean = self._draw(horizon, times, num_samples, self._eval_seed(3))
        return Forecast(self.meta_, indexes, mean, samples=draws, num_samples=num_samples, levels=levels)

    def sample(self, num_samples, horizon=None, *, times=None, random_state=None):
        """Joint draws ``(num_samples, h, D)`` (``(num_samples, B, h, D)`` for a panel) of the future."""
        self._check_fitted()
        seed = self._eval_seed(3) if random_state is None else int(np.random.default_rng(random_state).integers(2**31))
        _, draws, _ = self._draw(horizon, times, num_samples, seed)
        return draws[:, 0] if draws.shape[1] == 1 else draws


class VariationalForecaster(SequenceForecaster):
    """A sequence forecaster whose network (``_template(obs_dim, key)``) is trained on the ELBO by
    :func:`tsssm.inference.svi.fit` (deep Markov model, latent ODE/SDE).

    Subclasses have the training hyperparameters of :func:`svi.fit` and ``validation_fraction``.
    """

    def _train(self, batch, obs_dim: int, **fit_kwargs):
        """Split off validation series, train a fresh network with :func:`svi.fit`, set the fitted attributes."""
        seed = self._seed()
        train_idx, val_idx = self._validation_split(len(batch.valid), self.validation_fraction, np.random.default_rng(seed))
        train, val = batch.take(train_idx), (batch.take(val_idx) if len(val_idx) else None)
        result = svi.fit(
            self._template(obs_dim, jax.random.key(seed)), train, val, batch_size=self.batch_size,
            max_epochs=self.max_epochs, learning_rate=self.learning_rate, clip_norm=self.clip_norm,
            kl_anneal_epochs=self.kl_anneal_epochs, kl_anneal_start=self.kl_anneal_start, patience=self.patience,
            max_seconds=self.max_seconds, seed=seed, verbose=self.verbose, name=type(self).__name__, **fit_kwargs,
        )
        self._record_fit(result)
        self.elbo_ = result.train_elbo

    def _state_for_saving(self):
        document, arrays = self._common_state()
        document |= {"elbo": self.elbo_, "fit_info": [self.compile_seconds_, self.train_seconds_, self.n_iter_, self.stopped_]}
        return document, arrays

    def _restore(self, document, arrays):
        leaves = self._restore_common(document, arrays)
        template = self._template(len(self.meta_.columns), jax.random.key(0))
        self._set_network(network_mle.network_from_leaves(template, leaves))
        self.elbo_ = float(document["elbo"])
        self.compile_seconds_, self.train_seconds_, self.n_iter_, self.stopped_ = document["fit_info"]
