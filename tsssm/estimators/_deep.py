"""What the deep (variationally trained) estimators share: data checks, seeds, training, outputs, saving."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from tsssm.data import PanelMeta, to_panel
from tsssm.data._panel import ID_COLUMN, TIME_COLUMN
from tsssm.errors import DataError
from tsssm.estimators.base import encode_params, frame_from_arrays, frame_to_arrays
from tsssm.forecast import Forecast
from tsssm.inference import svi


def column_scaling(values, observed):
    """Mean and standard deviation ``(D,)`` of the observed entries of ``values (B, T, D)`` (scale 1 where undefined or 0)."""
    obs = np.where(observed, values, np.nan)
    loc = np.nanmean(obs, axis=(0, 1))
    scale = np.nanstd(obs, axis=(0, 1))
    return loc, np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


def positive_gaps(times, valid):
    """The positive time gaps between consecutive valid steps of ``times (B, T)``, flattened."""
    gaps = np.diff(np.asarray(times, float), axis=1)[np.asarray(valid)[:, 1:]]
    return gaps[gaps > 0]


class DeepEstimatorMixin:
    """Helpers of :class:`~tsssm.DeepMarkovModel`, :class:`~tsssm.LatentODE` and :class:`~tsssm.LatentSDE`.

    Subclasses define ``_template(obs_dim, key)`` (an untrained network of their hyperparameters)
    and ``_draw(horizon, times, num_samples, seed) -> (future indexes, draws (n, B, h, D), means
    (B, h, D))`` in the user's units, and use the attributes ``random_state``, ``time_unit``, ``validation_fraction`` and the
    training hyperparameters of :func:`tsssm.inference.svi.fit`.
    """

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
    def _per_series(meta: PanelMeta) -> bool:
        return meta.layout == "long" or len(meta.series_ids) > 1

    def _standardised(self, panel, lengths):
        """``valid (B, T)``, observed ``mask (B, T, D)``, standardised values ``(B, T, D)`` (0 where not
        observed) and the ``(B, T)`` log-Jacobian of the standardisation per step."""
        T = np.asarray(panel.times).shape[1]
        valid = np.arange(T)[None, :] < np.asarray(lengths, int)[:, None]
        mask = np.asarray(panel.mask, bool) & valid[:, :, None]
        y = np.where(mask, (np.asarray(panel.values, float) - self.loc_) / self.scale_, 0.0)
        return valid, mask, y, np.sum(np.where(mask, np.log(self.scale_), 0.0), axis=2)

    # ------------------------------------------------------------------ training
    def _train(self, batch, obs_dim: int, **fit_kwargs):
        """Split off validation series, train a fresh network with :func:`svi.fit`, set the fitted attributes."""
        seed = int(np.random.default_rng(self.random_state).integers(2**31))
        rng = np.random.default_rng(seed)
        B = batch.valid.shape[0]
        n_val = round(self.validation_fraction * B) if B >= 4 and self.validation_fraction > 0 else 0
        n_val = min(n_val, B - 1)
        order = rng.permutation(B)
        train, val = batch.take(np.sort(order[n_val:])), (batch.take(np.sort(order[:n_val])) if n_val else None)
        net = self._template(obs_dim, jax.random.key(seed))
        result = svi.fit(
            net, train, val, batch_size=self.batch_size, max_epochs=self.max_epochs,
            learning_rate=self.learning_rate, clip_norm=self.clip_norm, kl_anneal_epochs=self.kl_anneal_epochs,
            kl_anneal_start=self.kl_anneal_start, patience=self.patience, max_seconds=self.max_seconds,
            seed=seed, verbose=self.verbose, name=type(self).__name__, **fit_kwargs,
        )
        self._set_network(result.network)
        self.history_ = pd.DataFrame(result.history)
        self.compile_seconds_ = result.compile_seconds
        self.train_seconds_ = result.train_seconds
        self.n_iter_ = result.num_updates
        self.stopped_ = result.stopped
        self.elbo_ = result.train_elbo

    def _set_network(self, net):
        self.network_ = net
        self.params_ = {f"w{i:03d}": np.asarray(x) for i, x in enumerate(svi.network_leaves(net))}

    # ------------------------------------------------------------------ outputs
    def _scores_output(self, scores, meta: PanelMeta):
        """Per-step scores ``(B, T)`` -> a Series (one series) or a long frame (``unique_id``, ``ds``, ``score``)."""
        if not self._per_series(meta):
            return pd.Series(scores[0, : meta.lengths[0]], index=meta.indexes[0], name="score")
        lengths = list(meta.lengths)
        return pd.DataFrame({
            ID_COLUMN: pd.Index(list(meta.series_ids)).repeat(lengths),
            TIME_COLUMN: meta.indexes[0].append(list(meta.indexes[1:])),
            "score": np.concatenate([s[:n] for s, n in zip(scores, lengths)]),
        })

    def _totals_output(self, totals, meta: PanelMeta):
        """Per-series totals ``(B,)`` -> a float (one series) or a Series per ``unique_id``."""
        if not self._per_series(meta):
            return float(totals[0])
        return pd.Series(totals, index=pd.Index(list(meta.series_ids), name=ID_COLUMN), name="score")

    def _predictive(self, meta: PanelMeta, valid, pred_mean, pred_var, levels) -> Forecast:
        """One-step predictive moments ``(B, T, D)`` (standardised units) -> a Gaussian :class:`Forecast`."""
        valid = np.asarray(valid)[:, :, None]
        mean = np.where(valid, np.asarray(pred_mean, float) * self.scale_ + self.loc_, np.nan)
        std = np.where(valid, np.sqrt(np.asarray(pred_var, float)) * self.scale_, np.nan)
        return Forecast(meta, meta.indexes, mean, std, levels=levels)

    # ------------------------------------------------------------------ forecasting
    def forecast(self, horizon=None, *, times=None, X=None, levels=(0.8, 0.95), num_samples=1000) -> Forecast:
        """Predictive distribution ``horizon`` steps ahead (or at explicit future ``times``, any gaps).

        Latent paths start from the particles at the end of each series and follow the learned
        dynamics over the future time gaps (see the class's documentation); observations are drawn
        from the emission. The mean averages the emission means over the paths; quantiles come
        from the draws.
        """
        self._check_fitted()
        if X is not None:
            raise DataError(f"{type(self).__name__} takes no exogenous inputs (X) yet; pass X=None")
        self._check_horizon(horizon, times)
        indexes, draws, mean = self._draw(horizon, times, num_samples, self._eval_seed(3))
        return Forecast(self.meta_, indexes, mean, samples=draws, num_samples=num_samples, levels=levels)

    def sample(self, num_samples, horizon=None, *, times=None, random_state=None):
        """Joint draws ``(num_samples, h, D)`` (``(num_samples, B, h, D)`` for a panel) of the future."""
        self._check_fitted()
        self._check_horizon(horizon, times)
        seed = self._eval_seed(3) if random_state is None else int(np.random.default_rng(random_state).integers(2**31))
        _, draws, _ = self._draw(horizon, times, num_samples, seed)
        return draws[:, 0] if draws.shape[1] == 1 else draws

    # ------------------------------------------------------------------ persistence
    def _common_state(self):
        """JSON document and arrays shared by the deep estimators: training data, weights, scaling, history."""
        panel = self.panel_data_
        doc, arrays = frame_to_arrays(self.meta_.frame(np.where(panel.mask, panel.values, np.nan)), "y")
        arrays |= {f"param.{k}": v for k, v in self.params_.items()}
        arrays |= {"loc": self.loc_, "scale": self.scale_}
        document = {
            "hyperparameters": encode_params(self.get_params(deep=False)),
            "y": doc,
            "time_scale": self.time_scale_,
            "elbo": self.elbo_,
            "history": self.history_.to_dict(orient="list"),
            "fit_info": [self.compile_seconds_, self.train_seconds_, self.n_iter_, self.stopped_],
        }
        return document, arrays

    def _restore_common(self, document, arrays):
        """Inverse of :meth:`_common_state`; returns the rebuilt panel and meta."""
        panel, meta = self._to_panel(frame_from_arrays(document["y"], arrays, "y"), None)
        self.meta_, self.panel_data_ = meta, panel
        self.loc_, self.scale_ = np.asarray(arrays["loc"], float), np.asarray(arrays["scale"], float)
        self.time_scale_ = float(document["time_scale"])
        names = sorted(k for k in arrays if k.startswith("param."))
        template = self._template(len(meta.columns), jax.random.key(0))
        self._set_network(svi.network_from_leaves(template, [arrays[k] for k in names]))
        self.elbo_ = float(document["elbo"])
        self.history_ = pd.DataFrame(document["history"])
        self.compile_seconds_, self.train_seconds_, self.n_iter_, self.stopped_ = document["fit_info"]
        return panel, meta
