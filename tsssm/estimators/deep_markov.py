r"""The deep Markov model (deep Kalman filter) estimator, trained by stochastic variational inference.

Model, guide and ELBO: :mod:`tsssm.models.deep_markov` and :mod:`tsssm.inference.svi`; user guide:
``docs/deep_markov.md``. One set of network weights is shared by all series of a panel (a global
model); each series keeps its own latent trajectory.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from tsssm.data import future_times
from tsssm.errors import DataError
from tsssm.estimators._sequence import VariationalForecaster
from tsssm.forecast import Forecast
from tsssm.inference import svi
from tsssm.models.deep_markov import LIKELIHOODS, DeepMarkovNetwork


class DeepMarkovModel(VariationalForecaster):
    r"""Deep Markov model (Krishnan, Shalit & Sontag 2017) with a structured variational guide.

    .. math::

        z_k \mid z_{k-1} \sim \mathcal N(\mu_\theta(z_{k-1}, \delta_k), \operatorname{diag}\sigma_\theta^2(z_{k-1}, \delta_k)),
        \qquad y_k \mid z_k \sim p_{\text{emission}}(\cdot \mid \mathrm{MLP}(z_k)),

    where :math:`\mu_\theta` gates a linear map and an MLP proposal and :math:`\delta_k` is the
    time gap before step k divided by the median gap of the training data (so irregular sampling
    enters the transition). The guide :math:`q(z_k \mid z_{k-1}, y_{k:T})` is a backward GRU
    with a combiner network. Training maximises the ELBO with numpyro SVI (Adam, gradient
    clipping, minibatches of series, optional KL annealing, early stopping on held-out series).
    Forecasts: latent paths start from the filtered particles at the end of each series and follow
    the learned transition (with the future time gaps); observations are drawn from the emission,
    and the forecast mean averages the emission means over the paths.

    Parameters
    ----------
    likelihood : {"gaussian", "student_t", "bernoulli"}
        Emission distribution per column: Gaussian with a learned scale, Student-t with learned
        scale and degrees of freedom (> 2), or Bernoulli (0/1 data, e.g. piano rolls).
    z_dim, transition_dim, emission_dim, rnn_dim : int
        Latent dimension; hidden widths of the transition, emission and guide (GRU) networks.
    max_epochs : int
        Passes over the training series.
    batch_size : int
        Series per minibatch (fixed; the last minibatch is padded with empty series).
    learning_rate, clip_norm : float
        Adam step size; global gradient-norm clipping.
    kl_anneal_epochs : int
        Epochs over which the KL weight rises linearly from ``kl_anneal_start`` to 1 (0 = off).
    kl_anneal_start : float
    validation_fraction : float
        Fraction of the series held out for early stopping (only with at least 4 series).
    patience : int
        Epochs without improvement of the validation ELBO before training stops.
    max_seconds : float, optional
        Wall-clock budget of the training loop (compilation excluded).
    num_particles : int
        Particles of the filter behind ``score``, ``score_samples``, ``predict`` and ``forecast``.
    time_unit : optional
        Unit of the float times (see :func:`tsssm.data.to_panel`).
    verbose : bool or int
        Print progress every epoch (``True``) or every ``verbose`` epochs.
    random_state : int, optional
        Seed of initialisation, minibatch order, training noise and all evaluation draws. With
        None, training is not reproducible; evaluation then uses seed 0.

    Fitted attributes
    -----------------
    network_ : DeepMarkovNetwork
    params_ : dict of str -> ndarray
        The weight arrays (``w000``, ``w001``, ...; the order of :func:`tsssm.inference.svi.network_leaves`).
    history_ : pandas.DataFrame
        Per epoch: train loss per step (negative annealed ELBO), validation negative ELBO per
        step, KL weight, seconds.
    elbo_ : float
        ELBO per valid step of the training series (validation series excluded) with the final
        weights (beta = 1, one guide draw, standardised units).
    loc_, scale_ : ndarray (D,)
        Standardisation of the columns (0 and 1 for Bernoulli).
    time_scale_ : float
        The median time gap :math:`\bar\Delta` of the training data.
    max_delta_ : float
        The largest training gap in units of ``time_scale_`` (at least 1): forecasts cross longer
        gaps in equal sub-steps no longer than this.
    compile_seconds_, train_seconds_ : float
    n_iter_ : int
        Number of SVI updates.
    """

    def __init__(
        self,
        *,
        likelihood="gaussian",
        z_dim=4,
        transition_dim=32,
        emission_dim=32,
        rnn_dim=32,
        max_epochs=200,
        batch_size=16,
        learning_rate=3e-3,
        clip_norm=10.0,
        kl_anneal_epochs=0,
        kl_anneal_start=0.1,
        validation_fraction=0.2,
        patience=20,
        max_seconds=None,
        num_particles=64,
        time_unit=None,
        verbose=False,
        random_state=None,
    ):
        self.likelihood = likelihood
        self.z_dim = z_dim
        self.transition_dim = transition_dim
        self.emission_dim = emission_dim
        self.rnn_dim = rnn_dim
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.clip_norm = clip_norm
        self.kl_anneal_epochs = kl_anneal_epochs
        self.kl_anneal_start = kl_anneal_start
        self.validation_fraction = validation_fraction
        self.patience = patience
        self.max_seconds = max_seconds
        self.num_particles = num_particles
        self.time_unit = time_unit
        self.verbose = verbose
        self.random_state = random_state

    # ------------------------------------------------------------------ fit
    def fit(self, y, X=None):
        """Train on ``y``: a Series, wide or long frame, or an array ``(T,)``, ``(T, D)``, ``(B, T, D)``; returns ``self``."""
        if self.likelihood not in LIKELIHOODS:
            raise DataError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        panel, meta = self._to_panel(y, X)
        values = np.asarray(panel.values, float)
        if self.likelihood == "bernoulli":
            _, observed = self._observed(panel, meta.lengths)
            bad = observed & (values != 0.0) & (values != 1.0)
            if bad.any():
                b, t, d = np.argwhere(bad)[0]
                raise DataError(
                    f"likelihood='bernoulli' needs 0/1 data, but column {meta.columns[d]!r} of series "
                    f"{meta.series_ids[b]!r} holds {values[b, t, d]!r} at row {t}; use likelihood='gaussian'"
                )
        self._set_scaling(panel, meta, standardise=self.likelihood != "bernoulli")
        batch, _ = self._batch(panel, meta.lengths)

        self._train(batch, values.shape[2])
        return self

    def _template(self, obs_dim: int, key) -> DeepMarkovNetwork:
        return DeepMarkovNetwork(
            obs_dim, self.z_dim, self.transition_dim, self.emission_dim, self.rnn_dim, self.likelihood, key=key
        )

    # ------------------------------------------------------------------ filtering
    def _filtered(self, y=None, X=None, num_particles=None, lead=1):
        panel, meta, batch, log_jac = self._prepare(y, X)
        K = int(num_particles or self.num_particles)
        result = svi.batch_filter(self.network_, batch, jax.random.key(self._eval_seed(2)), K, lead)
        return jax.device_get(result), meta, panel, batch, log_jac

    def score_samples(self, y=None, X=None, *, lead=1):
        r"""Per-step anomaly score :math:`-\log \hat p(y_k \mid y_{\le k-L})` (higher = more anomalous).

        With ``lead`` L = 1 (default), the one-step score :math:`-\log \hat p(y_k \mid y_{<k})`:
        the particle-filter estimate (:func:`tsssm.inference.svi.particle_filter`); steps with
        nothing observed report 0 and their contribution moves to the next observed step, so the
        scores of a series add up to minus its :meth:`score`. With L > 1, the filtered particles
        after step k - L are propagated L steps through the learned transition without
        reweighting, and the score is minus the log of their weighted mean emission density of
        :math:`y_k`,

        .. math::

            -\log \sum_i w_{k-L}^{(i)}\, p(y_k \mid \tilde z_k^{(i)}),

        (for k < L, the prior: :math:`-\log \hat p(y_k)`); 0 at steps with nothing observed. A
        one-step predictor of a smooth signal sees little of a change of shape, because
        :math:`y_{k-1}` already explains most of :math:`y_k`; a longer lead scores how well the
        model's dynamics predict the series from further back. Scores are in the units of the data
        (the standardisation's Jacobian is included). Scoring costs about L times the transitions
        of the one-step filter.

        Parameters
        ----------
        y, X : optional
            Data of the fitted layout (default: the training data); ``X`` must be None.
        lead : int
            The lead L >= 1 of the predictive density.

        Returns
        -------
        pandas.Series or pandas.DataFrame
            A Series for one series, a long frame (``unique_id``, ``ds``, ``score``) for a panel.
        """
        if isinstance(lead, bool) or not isinstance(lead, (int, np.integer)) or lead < 1:
            raise DataError(f"lead must be a positive integer (1 = one step ahead), got {lead!r}")
        res, meta, _, _, log_jac = self._filtered(y, X, lead=int(lead))
        scores = log_jac - np.asarray(res.log_predictive, float)  # log_jac is 0 where nothing is observed
        return self._per_step_frame(scores, meta)

    def score(self, y=None, X=None):
        r"""Log predictive density of ``y``: :math:`\log \hat p(y)` from the particle filter.

        The log of an unbiased estimate of the likelihood with ``num_particles`` particles and the
        guide as proposal: in expectation a lower bound on :math:`\log p(y)` (like the
        importance-weighted bound), tighter than the ELBO and tight as the particles grow. In the
        units of the data. A float for one series, a Series per ``unique_id`` for a panel.
        """
        res, meta, _, _, log_jac = self._filtered(y, X)
        totals = np.sum(np.asarray(res.log_increments, float), axis=1) + np.asarray(res.pending, float)
        return self._per_series_total(totals - np.sum(log_jac, axis=1), meta)

    def predict(self, y=None, X=None, *, levels=(0.8, 0.95)) -> Forecast:
        """One-step-ahead predictive means and standard deviations (of the training data, or of ``y``).

        Moments of the particle approximation of :math:`p(y_k \\mid y_{<k})`; intervals of the
        returned forecast use a Gaussian approximation with these moments.
        """
        res, meta, _, batch, _ = self._filtered(y, X)
        return self._predictive(meta, batch.valid, res.pred_mean, res.pred_var, levels)

    # ------------------------------------------------------------------ forecasting
    def _draw(self, horizon, times, num_samples, seed):
        self._check_horizon(horizon, times)
        res, meta, panel, _, _ = self._filtered()
        future_t, indexes = future_times(meta, horizon, times=times)
        lengths = np.asarray(meta.lengths)
        last = np.asarray(panel.times, float)[np.arange(len(lengths)), lengths - 1]
        gaps = np.diff(np.concatenate([last[:, None], future_t], axis=1), axis=1) / self.time_scale_
        # gaps longer than any gap of the training data are crossed in equal sub-steps no longer
        # than the largest training gap: the transition network is never asked to extrapolate in delta
        substeps = np.maximum(np.ceil(gaps / self.max_delta_ - 1e-9), 1).astype(int)  # (B, h)
        rows = np.cumsum(substeps, axis=1) - 1
        delta = np.ones((len(lengths), int(substeps.sum(axis=1).max())))
        for b in range(len(lengths)):
            fine = np.repeat(gaps[b] / substeps[b], substeps[b])
            delta[b, : len(fine)] = fine
        draws, means = svi.batch_rollout(
            self.network_, jnp.asarray(res.z), jnp.asarray(res.log_weights), jnp.asarray(delta, jnp.float32),
            jax.random.key(seed), int(num_samples),
        )
        pick = np.arange(len(lengths))[:, None]
        draws = np.asarray(draws, float)[pick, :, rows].transpose(0, 2, 1, 3) * self.scale_ + self.loc_  # (B, n, h, D)
        means = np.asarray(means, float)[pick, :, rows].transpose(0, 2, 1, 3) * self.scale_ + self.loc_
        return indexes, np.moveaxis(draws, 1, 0), means.mean(axis=1)
