r"""Chimera (2-D selective state-space network) estimators: a probabilistic forecaster and a classifier.

Network: :mod:`tsssm.models.chimera`; scans: :mod:`tsssm.kernels.scan`; training:
:mod:`tsssm.inference.network_mle`; user guide: ``docs/chimera.md``. One set of network weights is
shared by all series of a panel.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import ClassifierMixin

from tsssm._config import jit
from tsssm.data import future_times
from tsssm.errors import DataError
from tsssm.estimators._sequence import SequenceEstimator, SequenceForecaster
from tsssm.forecast import Forecast
from tsssm.inference import network_mle
from tsssm.inference.batching import SequenceBatch, chunks, take, with_empty
from tsssm.models import chimera

#: Series per jitted evaluation call (scores, predictions, forecasts): bounds memory on large panels.
EVAL_CHUNK = 16


@jit
def _batch_params(net, batch):
    return jax.vmap(chimera.predictive_params, in_axes=(None, 0, 0, 0))(net, batch.y, batch.mask, batch.delta)


class _ForecastInputs(NamedTuple):
    """Per series: the scaled history (``y, mask, delta``), its ``length``, the future gaps and a key."""

    y: np.ndarray
    mask: np.ndarray
    delta: np.ndarray
    length: np.ndarray
    future_delta: np.ndarray
    key_data: np.ndarray


@jit
def _batch_paths(net, inputs: _ForecastInputs, num_paths: int):
    keys = jax.random.wrap_key_data(inputs.key_data)
    fn = partial(chimera.forecast_paths, num_paths=num_paths)
    return jax.vmap(fn, in_axes=(None, 0, 0, 0, 0, 0, 0))(net, *inputs[:5], keys)


@jit
def _batch_pooled(net, batch):
    return jax.vmap(chimera.pooled_features, in_axes=(None, 0, 0, 0, 0))(net, *batch)


def _in_chunks(fn, batch, *args):
    """``fn(chunk, *args)`` over chunks of :data:`EVAL_CHUNK` series (padded: one compilation), concatenated."""
    size = min(EVAL_CHUNK, len(batch[0]))
    padded = with_empty(batch)
    parts = [jax.device_get(fn(take(padded, idx), *args)) for idx in chunks(len(batch[0]), size)]
    num = len(batch[0])
    return jax.tree_util.tree_map(lambda *p: np.concatenate(p)[:num], *parts)


def _windows(batch: SequenceBatch, window: int | None) -> SequenceBatch:
    """Cut every series into consecutive windows of ``window`` steps (the last one padded); keep those with data."""
    if window is None:
        return batch
    B, T = batch.valid.shape
    T_pad = -(-T // window) * window
    padded = [np.concatenate([a, np.zeros((B, T_pad - T) + a.shape[2:], a.dtype)], axis=1) for a in batch]
    cut = SequenceBatch(*(a.reshape((B * T_pad // window, window) + a.shape[2:]) for a in padded))
    keep = np.any(cut.mask & cut.valid[:, :, None], axis=(1, 2))
    return cut.take(np.flatnonzero(keep))


class _ChimeraBase(SequenceEstimator):
    """Hyperparameters, network construction, training and persistence shared by both Chimera estimators."""

    def __init__(
        self,
        *,
        channels=16,
        state_dim=8,
        num_layers=2,
        max_epochs=100,
        batch_size=16,
        learning_rate=3e-3,
        clip_norm=1.0,
        validation_fraction=0.2,
        patience=20,
        max_seconds=None,
        time_unit=None,
        verbose=False,
        random_state=None,
    ):
        self.channels = channels
        self.state_dim = state_dim
        self.num_layers = num_layers
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.max_seconds = max_seconds
        self.time_unit = time_unit
        self.verbose = verbose
        self.random_state = random_state

    def _template(self, num_outputs: int, key, **options) -> chimera.ChimeraNetwork:
        return chimera.ChimeraNetwork(
            len(self.meta_.columns), self.channels, self.state_dim, self.num_layers, num_outputs, key=key, **options
        )

    def _train(self, batch, loss, num_outputs: int):
        """Train a new network on the series of ``batch`` (validation split by ``validation_fraction``)."""
        seed = self._seed()
        train_idx, val_idx = self._validation_split(len(batch[0]), self.validation_fraction, np.random.default_rng(seed))
        result = network_mle.fit(
            self._template(num_outputs, jax.random.key(seed)), loss, take(batch, train_idx),
            take(batch, val_idx) if len(val_idx) else None, batch_size=self.batch_size,
            max_epochs=self.max_epochs, learning_rate=self.learning_rate, clip_norm=self.clip_norm,
            patience=self.patience, max_seconds=self.max_seconds, seed=seed, verbose=self.verbose,
            name=type(self).__name__,
        )
        self._record_fit(result)
        self.train_loss_ = result.train_loss

    def _state_for_saving(self):
        document, arrays = self._common_state()
        document["fit_info"] = [self.compile_seconds_, self.train_seconds_, self.n_iter_, self.stopped_, self.train_loss_]
        return document, arrays

    def _restore(self, document, arrays):
        leaves = self._restore_common(document, arrays)
        template = self._template(leaves[-1].shape[0], jax.random.key(0))  # the read-out bias is the last leaf
        self._set_network(network_mle.network_from_leaves(template, leaves))
        self.compile_seconds_, self.train_seconds_, self.n_iter_, self.stopped_, self.train_loss_ = document["fit_info"]


class Chimera(SequenceForecaster, _ChimeraBase):
    r"""Probabilistic forecaster with a Chimera-style 2-D selective state-space network (Behrouz et al., NeurIPS 2024).

    Each step's predictive distribution comes from the network run over the history, across
    time and across the columns (variates):

    .. math::

        y_{t,v} \mid y_{<t} \sim \mathcal N(\mu_{t,v}, \sigma_{t,v}^2)
        \ \text{or}\ t_{\nu_{t,v}}(\mu_{t,v}, \sigma_{t,v}), \qquad
        (\mu, \sigma, \nu)_{t,\cdot} = \mathrm{head}\big(\mathrm{Chimera}(y_{<t})\big),

    where the network (:mod:`tsssm.models.chimera`) stacks blocks of two input-dependent 2-D SSM
    heads (trend and seasonal, different discretisations, gated) with a state moving along time and
    one moving along the variates in both directions. It is causal in time: the prediction of step t
    never sees :math:`y_t` or later. Trained by maximum likelihood (Adam, minibatches of series or
    of windows), on standardised columns; every output is in the units of the data. Forecasts
    sample recursively: every path draws the next step from the predictive distribution and
    feeds the draw back in (all columns jointly, with the future time gaps), carrying the
    network's scan states from step to step.

    With ``lead`` :math:`\ell > 1` the network predicts :math:`\ell` steps ahead instead:
    :math:`y_{t,v} \mid y_{\le t-\ell}`, trained on that target. On smooth signals a one-step
    forecaster leans on :math:`y_{t-1}` and sees little of a change of shape; an :math:`\ell`-step
    forecaster has to know the shape, which makes its scores the better anomaly detector (ECG
    beats: ``docs/benchmarks.md``).

    Parameters
    ----------
    likelihood : {"gaussian", "student_t"}
        Predictive distribution per step and column (Student-t: learned, input-dependent degrees
        of freedom > 2).
    lead : int
        Steps ahead of the predictive distribution: step t is predicted from the steps up to
        t - lead (default 1, the one-step-ahead predictive; ``score`` is then the log-likelihood).
    channels, state_dim, num_layers : int
        Width H of the network, states N per channel and head, number of blocks.
    window : int, optional
        Train on consecutive windows of this many steps cut from every series (for few long
        series; longer than ``lead``); None trains on whole series. Predictions and scores always
        use the whole history.
    max_epochs, batch_size : int
        Passes over the training windows; windows (or series) per minibatch (fixed: the last
        minibatch is padded, so nothing recompiles).
    learning_rate, clip_norm : float
        Adam step size; global gradient-norm clipping.
    validation_fraction : float
        Fraction of the windows (or series) held out for early stopping (only with at least 4).
    patience : int
        Epochs without improvement of the validation loss before training stops.
    max_seconds : float, optional
        Wall-clock budget of the training loop (compilation excluded).
    time_unit : optional
        Unit of the float times (see :func:`tsssm.data.to_panel`).
    verbose : bool or int
        Print progress every epoch (``True``) or every ``verbose`` epochs.
    random_state : int, optional
        Seed of initialisation, validation split, minibatch order and of forecast draws.

    Fitted attributes
    -----------------
    network_ : tsssm.models.chimera.ChimeraNetwork
    params_ : dict of str -> ndarray
        The weight arrays (``w000``, ...; the order of :func:`tsssm.inference.network_mle.network_leaves`).
    history_ : pandas.DataFrame
        Per epoch: mean training loss and validation loss (negative log predictive density per
        observed value, standardised units), seconds.
    train_loss_ : float
        Mean negative log predictive density per observed training value with the final weights
        (standardised units).
    loc_, scale_ : ndarray (D,)
        Standardisation of the columns.
    time_scale_ : float
        The median time gap of the training data (gaps enter the network in this unit).
    compile_seconds_, train_seconds_ : float
    n_iter_ : int
        Number of Adam updates.
    """

    def __init__(
        self,
        *,
        likelihood="gaussian",
        lead=1,
        channels=16,
        state_dim=8,
        num_layers=2,
        window=None,
        max_epochs=100,
        batch_size=16,
        learning_rate=3e-3,
        clip_norm=1.0,
        validation_fraction=0.2,
        patience=20,
        max_seconds=None,
        time_unit=None,
        verbose=False,
        random_state=None,
    ):
        super().__init__(
            channels=channels, state_dim=state_dim, num_layers=num_layers, max_epochs=max_epochs,
            batch_size=batch_size, learning_rate=learning_rate, clip_norm=clip_norm,
            validation_fraction=validation_fraction, patience=patience, max_seconds=max_seconds,
            time_unit=time_unit, verbose=verbose, random_state=random_state,
        )
        self.likelihood = likelihood
        self.lead = lead
        self.window = window

    def _template(self, num_outputs: int, key) -> chimera.ChimeraNetwork:
        return super()._template(num_outputs, key, lead=int(self.lead))

    def fit(self, y, X=None):
        """Train on ``y``: a Series, wide or long frame, or an array ``(T,)``, ``(T, D)``, ``(B, T, D)``; returns ``self``."""
        if self.likelihood not in chimera.LIKELIHOODS:
            raise DataError(f"likelihood must be one of {chimera.LIKELIHOODS}, got {self.likelihood!r}")
        if self.window is not None and (not isinstance(self.window, (int, np.integer)) or self.window < 2):
            raise DataError(f"window must be None or an int >= 2, got {self.window!r}")
        if isinstance(self.lead, bool) or not isinstance(self.lead, (int, np.integer)) or self.lead < 1:
            raise DataError(f"lead must be an int >= 1 (steps ahead of the predictive distribution), got {self.lead!r}")
        if self.window is not None and self.window <= self.lead:
            raise DataError(
                f"window ({self.window}) must be longer than lead ({self.lead}): a training window sees "
                "its first `lead` steps only as targets; raise window or lower lead"
            )
        panel, meta = self._to_panel(y, X)
        self._set_scaling(panel, meta)
        batch, _ = self._batch(panel, meta.lengths)
        self._train(_windows(batch, self.window), chimera.batch_nll, chimera.num_outputs(self.likelihood))
        return self

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, y=None, X=None):
        """Raw predictive parameters ``(B, T, D, k)`` of every step, with the data they belong to."""
        _, meta, batch, log_jac = self._prepare(y, X)
        return _in_chunks(lambda chunk: _batch_params(self.network_, chunk), batch), meta, batch, log_jac

    def _log_density(self, y, X):
        """``(B, T)`` log predictive density of each step's observed values in the units of the data."""
        raw, meta, batch, log_jac = self._evaluate(y, X)
        lp = chimera.log_prob(jnp.asarray(raw), jnp.asarray(batch.y), jnp.asarray(batch.mask))
        return np.asarray(lp, float).sum(axis=2) - log_jac, meta

    def score_samples(self, y=None, X=None):
        r"""Per-step anomaly score :math:`-\log p(y_t \mid y_{\le t-\ell})` (higher = more anomalous).

        :math:`\ell` is ``lead`` (1: :math:`-\log p(y_t \mid y_{<t})`). The negative log
        predictive density of the observed values of each step (summed over the columns), in the
        units of the data; 0 at steps with nothing observed. A Series for one series, a long
        frame (``unique_id``, ``ds``, ``score``) for a panel.
        """
        log_density, meta = self._log_density(y, X)
        return self._per_step_frame(-log_density, meta)

    def score(self, y=None, X=None):
        r"""Sum of the log predictive densities :math:`\sum_t \log p(y_t \mid y_{\le t-\ell})`, in the units of the data.

        With ``lead`` :math:`\ell = 1` this is the log-likelihood :math:`\log p(y)`; with
        :math:`\ell > 1` it is a sum of :math:`\ell`-step predictive densities (a scoring rule,
        not a likelihood). A float for one series, a Series per ``unique_id`` for a panel.
        """
        log_density, meta = self._log_density(y, X)
        return self._per_series_total(log_density.sum(axis=1), meta)

    def predict(self, y=None, X=None, *, levels=(0.8, 0.95)) -> Forecast:
        """``lead``-step-ahead predictive means and standard deviations (of the training data, or of ``y``).

        Intervals of the returned forecast are Gaussian with these moments (for Student-t
        predictions, a moment-matched approximation).
        """
        raw, meta, batch, _ = self._evaluate(y, X)
        mean, var = chimera.moments(jnp.asarray(raw))
        return self._predictive(meta, batch.valid, mean, var, levels)

    # ------------------------------------------------------------------ forecasting
    def _draw(self, horizon, times, num_samples, seed):
        self._check_fitted()
        self._check_horizon(horizon, times)
        panel, meta, batch, _ = self._prepare()
        future_t, indexes = future_times(meta, horizon, times=times)
        lengths = np.asarray(meta.lengths)
        last = np.asarray(panel.times, float)[np.arange(len(lengths)), lengths - 1]
        future_delta = np.diff(np.concatenate([last[:, None], future_t], axis=1), axis=1) / self.time_scale_
        keys = jax.random.key_data(jax.random.split(jax.random.key(seed), len(lengths)))
        inputs = _ForecastInputs(
            batch.y, batch.mask, batch.delta, lengths.astype(np.int32), future_delta.astype(np.float32), np.asarray(keys)
        )
        draws, means = _in_chunks(lambda chunk: _batch_paths(self.network_, chunk, int(num_samples)), inputs)
        draws = np.asarray(draws, float) * self.scale_ + self.loc_  # (B, n, h, D)
        means = np.asarray(means, float) * self.scale_ + self.loc_
        return indexes, np.moveaxis(draws, 1, 0), means.mean(axis=1)


class ChimeraClassifier(ClassifierMixin, _ChimeraBase):
    r"""Sequence classifier (and encoder) with the Chimera network: ``fit(X, y)``, ``predict``, ``predict_proba``.

    The network of :class:`Chimera` without the time shift reads each whole series; its
    last-layer features are averaged over all variates and valid times (:meth:`transform`, an
    embedding of width ``channels``) and a linear read-out gives the class logits,
    :math:`p(c \mid x) = \operatorname{softmax}(W \bar h + b)_c`. Trained by minimising the
    cross-entropy (Adam, minibatches of series, early stopping on held-out series).

    ``X`` is a panel: a ``(B, T, D)`` array (``X[..., None]`` for univariate series), a long frame
    (one class per ``unique_id``), or a dict of Series; ``y`` one label per series. Series may have
    different lengths and missing values. Parameters are those of :class:`Chimera` without
    ``likelihood`` and ``window``.

    Fitted attributes
    -----------------
    classes_ : ndarray
        The class labels (sorted), the columns of :meth:`predict_proba`.
    network_, params_, history_, train_loss_, loc_, scale_, time_scale_ :
        As for :class:`Chimera` (losses are cross-entropies per series).
    """

    def fit(self, X, y):
        """Train on the series of ``X`` with labels ``y`` (one per series); returns ``self``."""
        panel, meta = self._to_panel(X, None)
        labels = np.asarray(y)
        if labels.ndim != 1 or len(labels) != len(meta.series_ids):
            raise DataError(
                f"y must hold one label per series: X has {len(meta.series_ids)} series, y has shape {labels.shape}; "
                "pass univariate series as a (B, T, 1) array (X[..., None]) or a long frame"
            )
        self.classes_, codes = np.unique(labels, return_inverse=True)
        if len(self.classes_) < 2:
            raise DataError(f"y must hold at least two classes, got only {self.classes_.tolist()}")
        self._set_scaling(panel, meta)
        batch, _ = self._batch(panel, meta.lengths)
        self._train(chimera.LabelledBatch(*batch, codes.astype(np.int32)), chimera.batch_cross_entropy, len(self.classes_))
        return self

    def transform(self, X):
        """Embeddings ``(B, channels)`` of the series of ``X``: the pooled last-layer features."""
        _, _, batch, _ = self._prepare(X, None)
        return np.asarray(_in_chunks(lambda chunk: _batch_pooled(self.network_, chunk), batch), float)

    def predict_proba(self, X):
        """Class probabilities ``(B, len(classes_))``."""
        logits = chimera.pooled_readout(self.network_, jnp.asarray(self.transform(X), jnp.float32))
        return np.asarray(jax.nn.softmax(logits, axis=-1), float)

    def predict(self, X):
        """The most probable class of each series."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def _state_for_saving(self):
        document, arrays = super()._state_for_saving()
        arrays["classes"] = self.classes_.astype(str) if self.classes_.dtype == object else self.classes_
        return document, arrays

    def _restore(self, document, arrays):
        super()._restore(document, arrays)
        self.classes_ = np.asarray(arrays["classes"])
