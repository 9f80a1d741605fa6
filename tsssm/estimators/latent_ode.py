r"""Latent neural ODE and latent SDE estimators, trained by maximising the ELBO.

Networks: :mod:`tsssm.models.latent_ode`; ELBO, importance-weighted scores and forecasts:
:mod:`tsssm.inference.latent`; user guide: ``docs/latent_ode.md``. One set of weights is shared
by all series of a panel; each series has its own time grid (irregular sampling is the native
case) and its own latent path, which starts at the series' first time.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from tsssm.data import PanelMeta, future_times
from tsssm.errors import DataError, NumericalError
from tsssm.estimators._sequence import VariationalForecaster
from tsssm.forecast import Forecast
from tsssm.inference import latent
from tsssm.models.latent_ode import (
    ADAPTIVE,
    ADJOINTS,
    SOLVERS,
    LatentODENetwork,
    LatentSDENetwork,
)

_SHARED_DOC = r"""
    likelihood : {"gaussian", "student_t"}
        Emission distribution per column: Gaussian with a learned scale, or Student-t with a
        learned scale and degrees of freedom (> 2; heavier tails, so a few badly fitted training
        values weigh less).
    z_dim : int
        Latent dimension Z.
    hidden_dim : int
        Width of the ODE-RNN encoder (GRU state and its ODE).
    dynamics_dim, emission_dim : int
        Hidden widths of the drift MLPs (two tanh layers) and of the emission MLP.
    encoder_steps : int
        RK4 steps of the encoder's ODE per gap between observations.
    max_epochs, batch_size : int
        Passes over the training series; series per minibatch (fixed: the last minibatch of an
        epoch is padded with empty series, so the training step compiles once).
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
        Importance-sampling particles behind ``score``, ``score_samples``, ``predict`` and the
        initial states of ``forecast``.
    time_unit : optional
        Unit of float times (see :func:`tsssm.data.to_panel`).
    verbose : bool or int
        Print progress every epoch (``True``) or every ``verbose`` epochs.
    random_state : int, optional
        Seed of initialisation, minibatch order, training noise and all evaluation draws.

    Fitted attributes
    -----------------
    network_ : eqx.Module
    params_ : dict of str -> ndarray
        The weight arrays (``w000``, ...).
    history_ : pandas.DataFrame
        Per epoch: train loss per step (negative annealed ELBO), validation negative ELBO per
        step, KL weight, seconds.
    elbo_ : float
        ELBO per valid step of the training series with the final weights (standardised units).
    loc_, scale_ : ndarray (D,)
        Standardisation of the columns.
    time_scale_ : float
        The median time gap of the training data: the model's unit of time.
    max_gap_ : float
        The largest training gap in units of ``time_scale_``.
    compile_seconds_, train_seconds_ : float
    n_iter_ : int
        Number of Adam updates.

    Notes
    -----
    Training reuses :func:`tsssm.inference.svi.fit`: numpyro SVI drives optax Adam on the ELBO,
    which enters the numpyro model as one factor. That loop already gives fixed-shape minibatches
    compiled once (and cached across fits of the same structure), KL annealing, early stopping on
    held-out series and progress output, so both deep families train the same way.
    Networks compute in float32 on standardised data with time measured in units of
    ``time_scale_`` from each series' first time; every output is in the user's units.
"""


#: Emission distributions of the latent ODE and SDE (standardised real-valued data).
LIKELIHOODS = ("gaussian", "student_t")


class _LatentDynamics(VariationalForecaster):
    """Everything the latent ODE and SDE estimators share (data, training, scores, forecasts)."""

    def _set_hyperparameters(self, values: dict):
        for name, value in values.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    def _check_hyperparameters(self):
        for name in ("z_dim", "hidden_dim", "dynamics_dim", "emission_dim", "encoder_steps", "batch_size",
                     "num_particles"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise DataError(f"{name} must be a positive int, got {value!r}")
        if self.likelihood not in LIKELIHOODS:
            raise DataError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")

    @property
    def max_gap_(self) -> float:
        return self.max_delta_

    # ------------------------------------------------------------------ data
    @staticmethod
    def _ends(panel, lengths):
        """First and last times ``(B,)`` of each series."""
        times = np.asarray(panel.times, float)
        return times[:, 0], times[np.arange(len(times)), np.asarray(lengths, int) - 1]

    def _batch(self, panel, lengths):
        """Panel -> float32 batch on each series' own clock and the ``(B, T)`` log-Jacobian of the scaling."""
        valid, mask, y, log_jac = self._standardised(panel, lengths)
        first, last = self._ends(panel, lengths)
        clock = (np.where(valid, np.asarray(panel.times, float), last[:, None]) - first[:, None]) / self.time_scale_
        return latent.as_batch(clock, y, mask, valid), log_jac

    def fit(self, y, X=None):
        """Train on ``y``: a Series, wide or long frame, or an array ``(T,)``, ``(T, D)``, ``(B, T, D)``; returns ``self``."""
        self._check_hyperparameters()
        panel, meta = self._to_panel(y, X)
        self._set_scaling(panel, meta)
        batch, _ = self._batch(panel, meta.lengths)
        try:
            self._train(batch, np.asarray(panel.values).shape[2], objective=latent.objective)
        except FloatingPointError as err:
            raise NumericalError(f"{err}; {self._solver_hint()}") from err
        return self

    # ------------------------------------------------------------------ evaluation
    def _evaluated(self, y=None, X=None):
        panel, meta, batch, log_jac = self._prepare(y, X)
        gaps = np.diff(batch.times, axis=1)
        substeps = self._substeps(float(gaps.max()) if gaps.size else 0.0)
        result = latent.batch_evaluate(self.network_, batch, jax.random.key(self._eval_seed(2)),
                                       int(self.num_particles), substeps)
        result = jax.device_get(result)
        self._raise_on_failure(result.ok, meta, "scoring the data")
        return result, panel, meta, batch, log_jac

    def _raise_on_failure(self, ok, meta: PanelMeta, what: str):
        failed = [sid for sid, good in zip(meta.series_ids, np.asarray(ok)) if not good]
        if failed:
            raise NumericalError(f"{what} failed for series {failed[:5]}: {self._solver_hint()}")

    def score_samples(self, y=None, X=None):
        r"""Per-step anomaly score :math:`-\log \hat p(y_k \mid y_{<k})` (higher = more anomalous).

        Importance-sampling estimate (:func:`tsssm.inference.latent.sequential_scores`) in the
        units of the data; 0 at steps with nothing observed. The scores of a series add up to
        minus its :meth:`score`. A Series for one series, a long frame (``unique_id``, ``ds``,
        ``score``) for a panel.
        """
        result, _, meta, _, log_jac = self._evaluated(y, X)
        return self._per_step_frame(np.asarray(result.scores, float) + log_jac, meta)

    def score(self, y=None, X=None):
        r"""Log predictive density :math:`\log \hat p(y)`: the importance-weighted estimate with
        ``num_particles`` particles and the encoder's posterior as proposal.

        The log of an unbiased estimate of the likelihood, so in expectation a lower bound on
        :math:`\log p(y)` (the importance-weighted bound), tighter than the ELBO. In the units of
        the data. A float for one series, a Series per ``unique_id`` for a panel.
        """
        result, _, meta, _, log_jac = self._evaluated(y, X)
        return self._per_series_total(-np.sum(np.asarray(result.scores, float) + log_jac, axis=1), meta)

    def predict(self, y=None, X=None, *, levels=(0.8, 0.95)) -> Forecast:
        """One-step-ahead predictive means and standard deviations (of the training data, or of ``y``).

        Moments of the particles weighted by the observations before each step; intervals use a
        Gaussian approximation with these moments.
        """
        result, _, meta, batch, _ = self._evaluated(y, X)
        return self._predictive(meta, batch.valid, result.pred_mean, result.pred_var, levels)

    # ------------------------------------------------------------------ forecasting
    def _draw(self, horizon, times, num_samples, seed):
        self._check_horizon(horizon, times)
        result, panel, meta, _, _ = self._evaluated()
        future, indexes = future_times(meta, horizon, times=times)
        first, last = self._ends(panel, meta.lengths)
        last = (last - first) / self.time_scale_  # on the series' clocks
        clock = (future - first[:, None]) / self.time_scale_
        gaps = np.diff(np.concatenate([last[:, None], clock], axis=1), axis=1)
        draws, means, ok = latent.batch_forecast(
            self.network_, result, jnp.asarray(last, jnp.float32), jnp.asarray(clock, jnp.float32),
            jax.random.key(seed), int(num_samples), self._substeps(float(gaps.max())),
        )
        self._raise_on_failure(jax.device_get(ok), meta, "forecasting")
        draws = np.asarray(draws, float) * self.scale_ + self.loc_  # (B, n, h, D)
        means = np.asarray(means, float) * self.scale_ + self.loc_
        return indexes, np.moveaxis(draws, 1, 0), means.mean(axis=1)


class LatentODE(_LatentDynamics):
    r"""Latent neural ODE (Rubanova, Chen & Duvenaud 2019) with an ODE-RNN encoder.

    .. math::

        z(t_1) \sim \mathcal N(0, I), \qquad \dot z = f_\theta(z), \qquad
        y_k \mid z(t_k) \sim \mathcal N\big(\eta(z(t_k)), \operatorname{diag} s^2\big),

    with :math:`f_\theta` an MLP solved by diffrax from each series' first time to its
    observation (and forecast) times, and the amortised posterior
    :math:`q(z(t_1) \mid y_{1:T}) = \mathcal N(\mu, \operatorname{diag}\sigma^2)` from a backward
    ODE-RNN encoder. Training maximises the ELBO
    :math:`\mathbb E_q[\sum_k \log p(y_k \mid z(t_k))] - \mathrm{KL}(q \,\|\, \mathcal N(0, I))`
    with one reparameterised draw per series and step.

    Parameters
    ----------
    solver : {"tsit5", "dopri5", "bosh3", "heun", "euler"}
        diffrax solver of the latent ODE.
    rtol, atol : float
        Tolerances of the adaptive step-size controller (when ``dt`` is None).
    dt : float, optional
        A fixed step in units of ``time_scale_`` instead of adaptive steps (needed for "euler").
    max_steps : int
        Most solver steps per solve. A solve that needs more fails: in training this raises
        :class:`tsssm.NumericalError`, in scoring and forecasting too (naming the series).
    adjoint : {"recursive", "backsolve"}
        Gradients through the solve: diffrax's checkpointed backpropagation (default; exact
        gradients of the discretised solve) or the continuous adjoint (less memory, measured
        5-9x slower here; needs ``max_steps`` of at least the steps plus the number of times).
    """ + _SHARED_DOC

    def __init__(
        self,
        *,
        likelihood="gaussian",
        z_dim=4,
        hidden_dim=32,
        dynamics_dim=32,
        emission_dim=32,
        encoder_steps=1,
        solver="tsit5",
        rtol=1e-3,
        atol=1e-4,
        dt=None,
        max_steps=1024,
        adjoint="recursive",
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
        self._set_hyperparameters(locals())

    def _check_hyperparameters(self):
        super()._check_hyperparameters()
        if self.solver not in SOLVERS:
            raise DataError(f"solver must be one of {tuple(SOLVERS)}, got {self.solver!r}")
        if self.adjoint not in ADJOINTS:
            raise DataError(f"adjoint must be one of {tuple(ADJOINTS)}, got {self.adjoint!r}")
        if self.dt is None and self.solver not in ADAPTIVE:
            raise DataError(f"solver={self.solver!r} has no error estimate: pass a fixed step dt= or an adaptive "
                            f"solver {ADAPTIVE}")
        if self.dt is not None and not self.dt > 0:
            raise DataError(f"dt must be positive (or None for adaptive steps), got {self.dt!r}")

    def _template(self, obs_dim: int, key) -> LatentODENetwork:
        return LatentODENetwork(
            obs_dim, self.z_dim, self.hidden_dim, self.dynamics_dim, self.emission_dim, self.encoder_steps,
            solver=self.solver, rtol=self.rtol, atol=self.atol, dt=self.dt, max_steps=self.max_steps,
            adjoint=self.adjoint, likelihood=self.likelihood, key=key,
        )

    def _substeps(self, max_gap: float) -> int:
        return 1  # the ODE solver chooses its own steps

    def _solver_hint(self) -> str:
        return (f"the latent ODE solve did not finish (or gave non-finite values); raise max_steps (now "
                f"{self.max_steps}), loosen rtol/atol, pass a fixed dt, or lower learning_rate")


class LatentSDE(_LatentDynamics):
    r"""Latent SDE (Li, Wong, Chen & Duvenaud 2020) with an ODE-RNN encoder.

    .. math::

        \text{prior: } dz = f_\theta(z)\,dt + g\,dW, \qquad
        \text{posterior: } dz = f_\psi(z, h_k)\,dt + g\,dW \ \text{ on } (t_{k-1}, t_k],
        \qquad y_k \mid z(t_k) \sim \mathcal N\big(\eta(z(t_k)), \operatorname{diag} s^2\big),

    with :math:`z(t_1)` from :math:`\mathcal N(0, I)` (prior) or the encoder's
    :math:`q(z(t_1) \mid y_{1:T})` (posterior), :math:`h_k` the encoder's summary of
    :math:`y_{k:T}` and :math:`g` a learned diagonal diffusion shared by both. The ELBO is
    :math:`\mathbb E_Q[\sum_k \log p(y_k \mid z(t_k))] - \mathrm{KL}(q(z(t_1)) \,\|\, \mathcal N(0, I))
    - \mathbb E_Q \int \tfrac12 |(f_\psi - f_\theta)/g|^2 dt`, the last term accumulated along the
    simulated path. Forecasts follow the prior SDE with fresh Brownian paths, so their intervals
    include the process noise.

    Paths are simulated by a hand-written Euler-Maruyama ``lax.scan``
    (:func:`tsssm.models.latent_ode.euler_maruyama`): measured 4-7x faster than diffrax's SDE
    solve on this kind of problem (see PITFALLS), with every gap split into the same number of
    equal steps so that batches keep one shape.

    Parameters
    ----------
    dt : float
        Largest Euler-Maruyama step, in units of ``time_scale_``: every gap is split into
        ``ceil(max_gap / dt)`` equal steps (``substeps_``; the largest gap of the data at hand),
        so the cost grows with the ratio of the longest to the median gap.
    """ + _SHARED_DOC + r"""
    substeps_ : int
        Euler-Maruyama steps per gap in training.
    """

    def __init__(
        self,
        *,
        likelihood="gaussian",
        z_dim=4,
        hidden_dim=32,
        dynamics_dim=32,
        emission_dim=32,
        encoder_steps=1,
        dt=0.25,
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
        self._set_hyperparameters(locals())

    def _check_hyperparameters(self):
        super()._check_hyperparameters()
        if self.dt is None or not self.dt > 0:
            raise DataError(f"dt (the largest Euler-Maruyama step) must be positive, got {self.dt!r}")

    @property
    def substeps_(self) -> int:
        return self._substeps(self.max_gap_)

    def _substeps(self, max_gap: float) -> int:
        return max(math.ceil(max_gap / self.dt - 1e-9), 1)

    def _template(self, obs_dim: int, key) -> LatentSDENetwork:
        return LatentSDENetwork(
            obs_dim, self.z_dim, self.hidden_dim, self.dynamics_dim, self.emission_dim, self.encoder_steps,
            self.substeps_, likelihood=self.likelihood, key=key,
        )

    def _solver_hint(self) -> str:
        return f"the latent SDE paths became non-finite; lower dt (now {self.dt}) or learning_rate"
