r"""Estimators of the classical linear-Gaussian family.

Every class here builds a linear-Gaussian state-space model (:mod:`tsssm.models`), fits it by
exact diffuse maximum likelihood (:mod:`tsssm.inference.mle`) and answers every question of the
common API with the Kalman filter and smoother, in float64 (:mod:`tsssm._config`).

Irregular timestamps: :class:`UnobservedComponents` (and so :class:`LocalLevel` and
:class:`LocalLinearTrend`) replaces every component by its exact continuous-time counterpart
(:meth:`tsssm.models.components.Component.continuous`, ``docs/irregular.md``); :class:`ARIMA` and
:class:`LinearGaussianSSM` need a regular grid and raise a :class:`~tsssm.errors.DataError`.

Diffuse initialisation: non-stationary states (levels, slopes, seasonals, integrated ARIMA
states) start from an improper flat prior, handled exactly by the augmented Kalman filter. The
log-likelihood is the exact diffuse one of Durbin & Koopman (2012), without the
:math:`\tfrac12\log 2\pi` constants of the observations that identify the diffuse states: it
reads -632.5456 on the Nile data at the textbook estimates. statsmodels' ``use_exact_diffuse=True``
reports :math:`0.5 \log(2\pi) \approx 0.919` less per diffuse state; its default approximate
diffuse initialisation gives yet another number. Information criteria use
:math:`n = ` observed values minus diffuse states.
"""

from __future__ import annotations

import abc
import math

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.stats

from tsssm._config import float64
from tsssm.data import PanelMeta, future_inputs, future_times, to_panel
from tsssm.errors import DataError
from tsssm.estimators._bayes import BayesMixin
from tsssm.estimators._panel import PanelMixin, _num_diffuse
from tsssm.estimators.base import BaseForecaster, encode_params, frame_from_arrays, frame_to_arrays
from tsssm.forecast import Forecast
from tsssm.inference import mle, posterior
from tsssm.models.arima import ARIMAModel
from tsssm.models.components import Autoregressive, Cycle, Level, Seasonal, Trend
from tsssm.models.lgssm import LinearGaussianModel, PhaseFactorModel, StructuralModel


class StateSpaceEstimator(BayesMixin, PanelMixin, BaseForecaster):
    """Common behaviour of the classical estimators; subclasses only say which model to build.

    Parameters (shared by every subclass)
    -------------------------------------
    method : {"mle", "nuts"}
        Estimation method: exact diffuse maximum likelihood, or the Bayesian posterior by
        numpyro's NUTS (one series only; see ``docs/bayesian.md``). A NUTS fit answers
        ``forecast``, ``predict``, ``smooth``, ``score_samples`` and ``sample`` by integrating over
        up to 200 thinned posterior draws, and offers ``to_arviz()``.
    fixed_params : dict, optional
        Parameters held at given values, e.g. ``{"sigma2_level": 0.0}``. With every parameter
        fixed, ``fit`` only runs the filter.
    start_params : dict, optional
        Starting values for the optimiser.
    maxiter : int
        Maximum optimiser iterations.
    pooled : bool
        Panels (a long frame, several series): with ``False`` (default) every series gets its own
        parameters; with ``True`` all series share one parameter set, estimated by maximising
        their joint log-likelihood, the sum of the series' log-likelihoods (each series keeps its
        own Kalman filter and initial state; :func:`tsssm.inference.mle.fit_pooled`). A pooled model
        scores and predicts *new* series (e.g. test heartbeats) with the shared parameters, has
        standard errors and a ``summary()``. No effect on a single series.
    time_unit : str, pandas.Timedelta or float, optional
        Unit of the float times (see ``docs/irregular.md``). On irregular timestamps the model is
        continuous-time and its variances are per unit of time, seasonal periods and cycle
        period bounds in time units, and ``forecast(h)`` steps ``h`` units ahead. If omitted, an
        irregular DatetimeIndex gets the largest of 1 day, 1 h, 1 min, 1 s, ... not above its
        median gap, an irregular numeric index 1.0; pass it explicitly to fix the meaning of
        the parameters.
    random_state : int, optional
        Seed of the draws made by ``forecast(...).samples`` and ``sample`` (and of NUTS).
    num_samples, num_warmup, num_chains : int
        NUTS draws kept per chain, warm-up (adaptation) iterations per chain, and chains
        (``method="nuts"`` only). Chains run in parallel when JAX sees a device per chain
        (``numpyro.set_host_device_count``), else vectorized.
    priors : dict, optional
        ``{name: numpyro distribution}`` replacing default priors (``method="nuts"`` only); see
        :mod:`tsssm.inference.bayes` for the defaults and conventions.

    Fitted attributes
    -----------------
    params_ : dict of name -> ndarray
        Estimated (and fixed) parameters, constrained (panels fitted with ``pooled=False``: a
        DataFrame, one row per series; see ``docs/many_series.md``).
    log_likelihood_ : float
        Exact diffuse log-likelihood at ``params_`` (pooled panels: summed over the series).
    aic_, bic_ : float
    nobs_ : int
        Number of observed values.
    converged_ : bool
        MLE: the optimiser converged; NUTS: no divergent transition and every split R-hat < 1.05.
    model_ : the state-space model (``tsssm.models``).
    posterior_ : dict of name -> ndarray (chains, draws, ...)
        NUTS fits: constrained posterior draws of the free parameters (``params_`` holds their
        means, and ``log_likelihood_``/``aic_``/``bic_`` are evaluated there).
    sample_stats_ : dict of name -> ndarray (chains, draws)
        NUTS fits: ``diverging``, ``energy``, ``lp``, ``n_steps``, ``acceptance_rate``, ``step_size``.
    num_divergences_ : int
        NUTS fits: number of divergent transitions after warm-up.
    """

    def __init__(
        self, *, method="mle", fixed_params=None, start_params=None, maxiter=1000, pooled=False, time_unit=None,
        random_state=None, num_samples=1000, num_warmup=1000, num_chains=4, priors=None,
    ):
        self.method = method
        self.fixed_params = fixed_params
        self.start_params = start_params
        self.maxiter = maxiter
        self.pooled = pooled
        self.time_unit = time_unit
        self.random_state = random_state
        self.num_samples = num_samples
        self.num_warmup = num_warmup
        self.num_chains = num_chains
        self.priors = priors

    @abc.abstractmethod
    def _build_model(self, num_columns: int, exog: tuple[str, ...]):
        """The model (protocol of :mod:`tsssm.models.lgssm`) for this data."""

    # ------------------------------------------------------------------ data
    def _to_panel(self, y, X=None):
        return to_panel(y, X, time_unit=self.time_unit)

    def _series(self, y, X=None) -> tuple[mle.SeriesData, PanelMeta]:
        return self._single(*self._to_panel(y, X))

    def _single(self, panel, meta: PanelMeta) -> tuple[mle.SeriesData, PanelMeta]:
        """The one series of a converted ``panel`` (a DataError if it holds a panel of series)."""
        if self._wants_panel(meta):
            raise DataError(
                f"this {type(self).__name__} was fitted on one series, but the data hold {len(meta.series_ids)} series "
                "(a long frame or a 3-D array); fit the model on that panel instead"
            )
        inputs = None if panel.inputs is None else panel.inputs[0]
        data = mle.SeriesData(panel.times[0], panel.values[0], panel.mask[0], inputs)
        return data, meta

    def _model_for(self, data: mle.SeriesData, meta: PanelMeta):
        """The model for this data: continuous-time when the grid is irregular."""
        model = self._build_model(len(meta.columns), tuple(meta.input_columns))
        return model if meta.regular else self._continuous(model)

    def _continuous(self, model):
        """The continuous-time version of ``model`` for irregular timestamps (a DataError if none)."""
        raise DataError(
            f"the timestamps are irregular, but {type(self).__name__} is a discrete-time model that needs a regular "
            "grid; use tsssm.UnobservedComponents (its level, trend, trigonometric seasonal, cycle and "
            "autoregressive components have exact continuous-time forms), or resample onto a regular grid "
            "(missing steps may stay NaN)"
        )

    def _check_same_layout(self, meta: PanelMeta):
        if meta.columns != self.meta_.columns or meta.input_columns != self.meta_.input_columns:
            raise DataError(
                f"the data has columns {list(meta.columns)} (inputs {list(meta.input_columns)}), but the model was "
                f"fitted on {list(self.meta_.columns)} (inputs {list(self.meta_.input_columns)})"
            )
        if not meta.regular and not _continuous_time(self.model_):
            raise DataError(
                "the timestamps are irregular, but the model was fitted on a regular grid with discrete-time components; "
                "refit on this data (irregular data give the continuous-time model) or resample it onto the grid"
            )
        if _continuous_time(self.model_) and meta.time_unit != self.meta_.time_unit:
            raise DataError(
                f"the data's time unit is {meta.time_unit!r}, but the model was fitted with time unit "
                f"{self.meta_.time_unit!r} (its variances are per unit time); pass time_unit={self.meta_.time_unit!r}"
            )

    @staticmethod
    def _jax(data: mle.SeriesData) -> mle.SeriesData:
        # device_put, not jnp.asarray: no conversion program to compile on a first fit
        return mle.SeriesData(*(None if a is None else jax.device_put(np.asarray(a)) for a in data))

    # ------------------------------------------------------------------ fit
    def fit(self, y, X=None):
        """Estimate the parameters from ``y`` (and exogenous ``X``); returns ``self``."""
        self._check_method()
        self._clear_posterior()
        panel, meta = self._to_panel(y, X)
        if self._wants_panel(meta):
            if self.method == "nuts":
                raise DataError(
                    f"method='nuts' fits one series; the data hold {len(meta.series_ids)} series (a panel). Fit each "
                    "series on its own (df[df.unique_id == id]) or use method='mle' for the panel"
                )
            return self._fit_pooled(panel, meta) if self.pooled else self._fit_panel(panel, meta)
        self.panel_ = self.pooled_ = False
        data, meta = self._single(panel, meta)
        model = self._model_for(data, meta)
        if self.method == "nuts":
            self._fit_nuts(model, meta, data)
            return self
        with float64():
            result = mle.fit(
                model, self._jax(data), fixed_params=self.fixed_params, start_params=self.start_params, maxiter=self.maxiter
            )
        self._set_fitted(model, meta, data, result.params, result.log_likelihood, result.converged)
        return self

    def _set_fitted(self, model, meta, data, params, log_likelihood, converged, num_series=1):
        """Fitted attributes of one parameter set (one series, or ``num_series`` pooled ones)."""
        self.model_ = model
        self.meta_ = meta
        self.data_ = data
        self.params_ = {k: np.asarray(v, float) for k, v in params.items()}
        self.log_likelihood_ = float(log_likelihood)
        self.converged_ = bool(converged)
        self.nobs_ = int(np.sum(data.mask))
        layout = mle.ParamLayout.build(model.param_specs(), self.fixed_params)
        num_params = int(layout.flat_constrained(self.params_).size)
        num_inputs = None if data.inputs is None else data.inputs.shape[-1]
        n_effective = self.nobs_ - num_series * _num_diffuse(model, num_inputs)
        self.num_params_ = num_params
        self.aic_ = -2.0 * self.log_likelihood_ + 2.0 * num_params
        self.bic_ = -2.0 * self.log_likelihood_ + num_params * math.log(max(n_effective, 1))
        self._bse = None

    # ------------------------------------------------------------------ predictive distributions
    def _extended(self, horizon, times, X) -> tuple[mle.SeriesData, tuple, np.ndarray]:
        """Training data followed by the horizon as masked steps; returns it, the future indexes
        and the positions of the requested future times in the extended arrays."""
        self._check_horizon(horizon, times)
        meta, data = self.meta_, self.data_
        future_t, indexes = future_times(meta, horizon, times=times)
        if _continuous_time(self.model_):
            # exact transitions over any gap: the future times are appended as they are
            grid, rows = future_t[0], len(data.times) + np.arange(future_t.shape[1])
            inputs = self._future_inputs(data, X, indexes)
        else:
            steps = future_t[0] - data.times[-1]
            if np.any(np.abs(steps - np.round(steps)) > 1e-9):
                raise DataError(
                    f"{type(self).__name__} was fitted on a regular grid (a discrete-time model): future times must lie "
                    f"on its grid (whole steps after the last observation), got step offsets {steps[:5].tolist()}...; "
                    "models fitted on irregular timestamps (continuous time) forecast at any times"
                )
            steps = np.round(steps).astype(int)
            grid = data.times[-1] + np.arange(1, int(steps.max()) + 1, dtype=float)
            rows = len(data.times) - 1 + steps
            if data.inputs is not None and len(grid) != len(steps):
                raise DataError("a model with exogenous inputs needs consecutive future steps (a horizon), not gaps")
            inputs = self._future_inputs(data, X, indexes)
        num_future = len(grid)
        D = data.values.shape[1]
        extended = mle.SeriesData(
            np.concatenate([data.times, grid]),
            np.concatenate([data.values, np.zeros((num_future, D))]),
            np.concatenate([data.mask, np.zeros((num_future, D), bool)]),
            inputs,
        )
        return extended, indexes, rows

    def _future_inputs(self, data, X, indexes):
        """Training inputs followed by the validated future ones (None without exogenous inputs)."""
        if data.inputs is None:
            if X is not None:
                raise DataError("X was given for the forecast, but the model was fitted without exogenous inputs")
            return None
        return np.concatenate([data.inputs, future_inputs(self.meta_, X, indexes)[0]], axis=0)

    def forecast(self, horizon=None, *, times=None, X=None, levels=(0.8, 0.95), num_samples=1000):
        """Predictive distribution ``horizon`` steps ahead (or at explicit future ``times``).

        A step is one period of the data's grid (regular data) or one ``time_unit`` (irregular
        data). ``times`` (a DatetimeIndex, or numbers for a numeric index) may be uneven for a
        model fitted on irregular data (continuous time); a model fitted on a regular grid
        forecasts at grid points only.

        Returns a :class:`tsssm.Forecast` with exact Gaussian marginals and joint draws
        (made on first access of ``.samples``). After ``method="nuts"`` the marginals are
        mixtures over up to 200 posterior draws (parameter uncertainty included) and the
        draws cycle through those posterior draws.
        """
        self._check_fitted()
        if self._is_panel():
            return self._forecast_panel(horizon, times, X, levels, num_samples)
        extended, indexes, rows = self._extended(horizon, times, X)
        if self._is_bayes():
            return self._bayes_forecast(extended, indexes, rows, levels, num_samples)
        with float64():
            pred = posterior.predictions(self.model_, self.params_, self._jax(extended))
            mean = np.asarray(pred.mean)[rows]
            std = np.sqrt(np.clip(np.diagonal(np.asarray(pred.cov), axis1=1, axis2=2)[rows], 0.0, None))
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise DataError(
                "the forecast is not finite: the data do not identify the model's initial states "
                "(too few observations for its diffuse states?)"
            )
        model, params = self.model_, self.params_

        def sampler(num, seed):
            with float64():
                draws = posterior.observation_draws(model, params, self._jax(extended), jax.random.key(seed), num)
                return np.asarray(draws)[:, rows][:, None]

        return Forecast(
            self.meta_, indexes, mean[None], std[None], sampler=sampler, num_samples=num_samples, levels=levels,
            random_state=self.random_state,
        )

    def sample(self, num_samples, horizon=None, *, times=None, X=None, random_state=None):
        """Joint draws ``(num_samples, h, D)`` from the fitted predictive distribution."""
        fc = self.forecast(horizon, times=times, X=X, num_samples=num_samples)
        if random_state is not None:
            fc._seed = int(np.random.default_rng(random_state).integers(2**31))
        return fc.samples

    def _data_or_fitted(self, y=None, X=None):
        if y is None:
            return self.data_, self.meta_
        data, meta = self._series(y, X)
        self._check_same_layout(meta)
        return data, meta

    def _predictions(self, y=None, X=None):
        self._check_fitted()
        data, meta = self._data_or_fitted(y, X)
        with float64():
            pred = posterior.predictions(self.model_, self.params_, self._jax(data))
            pred = posterior.Predictions(*(np.asarray(a) for a in pred))
        return pred, data, meta

    def predict(self, y=None, X=None, *, levels=(0.8, 0.95)) -> Forecast:
        """In-sample one-step-ahead predictive distribution (of the training data, or of ``y``).

        Steps before the data identify the diffuse initial states have no proper predictive
        distribution: their mean and standard deviation are NaN.
        """
        self._check_fitted()
        if self._is_panel():
            return self._predict_panel(y, X, levels)
        if self._is_bayes():
            data, meta = self._data_or_fitted(y, X)
            return self._bayes_predict(data, meta, levels)
        pred, _, meta = self._predictions(y, X)
        std = np.sqrt(np.clip(np.diagonal(pred.cov, axis1=1, axis2=2), 0.0, None))
        mean = np.where(pred.valid[:, None], pred.mean, np.nan)
        std = np.where(pred.valid[:, None], std, np.nan)
        return Forecast(meta, meta.indexes, mean[None], std[None], levels=levels)

    def score_samples(self, y=None, X=None) -> pd.Series:
        """Per-time negative log predictive density (higher = more anomalous).

        One value per time step: :math:`-\\log p(y_t \\mid y_{<t})` over the observed entries of
        :math:`y_t` (0 where nothing is observed; NaN during the diffuse burn-in). After
        ``method="nuts"``, :math:`-\\log` of the predictive density averaged over up to 200
        posterior draws.
        """
        self._check_fitted()
        if self._is_panel():
            return self._score_samples_panel(y, X)
        if self._is_bayes():
            data, meta = self._data_or_fitted(y, X)
            return pd.Series(self._bayes_score_samples(data), index=meta.indexes[0], name="score")
        pred, _, meta = self._predictions(y, X)
        return pd.Series(-pred.log_density, index=meta.indexes[0], name="score")

    def score(self, y=None, X=None) -> float:
        """Total log predictive density (exact diffuse log-likelihood) of ``y`` at the fitted parameters."""
        self._check_fitted()
        if self._is_panel():
            return self._score_panel(y, X)
        if y is None:
            return self.log_likelihood_
        data, meta = self._series(y, X)
        self._check_same_layout(meta)
        with float64():
            return float(mle._log_likelihood_jit(self.model_, self.params_, self._jax(data)))

    def smooth(self, *, return_std=False):
        """Smoothed states: DataFrame (time x state) of posterior means given all the data.

        With ``return_std=True`` also the posterior standard deviations. After
        ``method="nuts"``, the mixture over up to 200 posterior draws (mean and total std).
        """
        self._check_fitted()
        if self._is_panel():
            return self._smooth_panel(return_std)
        if self._is_bayes():
            mean, std = self._bayes_smooth()
        else:
            with float64():
                moments = posterior.smoothed_states(self.model_, self.params_, self._jax(self.data_))
                mean, cov = np.asarray(moments.mean), np.asarray(moments.cov)
            std = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
        names = list(self.model_.state_names())
        index = self.meta_.indexes[0]
        mean_df = pd.DataFrame(mean, index=index, columns=names)
        if not return_std:
            return mean_df
        return mean_df, pd.DataFrame(std, index=index, columns=names)

    # ------------------------------------------------------------------ reporting
    def _standard_errors(self):
        if self._is_panel() and not self._is_pooled():
            self._not_for_panels("summary() / bse_ (standard errors)")
        if self._bse is None:
            loglik = mle.pooled_log_likelihood if self._is_pooled() else mle.log_likelihood
            with float64():
                self._bse = mle.standard_errors(self.model_, self.params_, self._jax(self.data_), self.fixed_params, loglik)
        return self._bse

    @property
    def bse_(self) -> pd.Series:
        """Standard errors of the free parameters (inverse observed information)."""
        self._check_fitted()
        labels, _, se = self._standard_errors()
        return pd.Series(se, index=labels, name="std_error")

    def summary(self) -> pd.DataFrame:
        """Parameter table: estimate, standard error, z, p-value and 95% confidence bounds.

        After ``method="nuts"``: ``arviz.summary`` of the posterior (mean, sd, 94% HDI, MCSE,
        bulk and tail ESS, R-hat).
        """
        self._check_fitted()
        if self._is_bayes():
            return self._bayes_summary()
        labels, estimate, se = self._standard_errors()
        z = estimate / se
        table = pd.DataFrame(
            {
                "estimate": estimate,
                "std_error": se,
                "z": z,
                "p_value": 2.0 * scipy.stats.norm.sf(np.abs(z)),
                "lower_95": estimate - 1.959963984540054 * se,
                "upper_95": estimate + 1.959963984540054 * se,
            },
            index=pd.Index(labels, name="parameter"),
        )
        for name, value in (self.fixed_params or {}).items():
            table.loc[name] = [float(np.asarray(value))] + [np.nan] * 5
        table.attrs.update(log_likelihood=self.log_likelihood_, aic=self.aic_, bic=self.bic_, nobs=self.nobs_)
        return table

    # ------------------------------------------------------------------ persistence
    def _state_for_saving(self):
        if self._is_panel():
            self._not_for_panels("save()")
        frame = self.meta_.frame(np.where(self.data_.mask, self.data_.values, np.nan)[None])
        doc, arrays = frame_to_arrays(frame, "y")
        x_doc = None
        if self.data_.inputs is not None:
            x_frame = pd.DataFrame(self.data_.inputs, index=frame.index, columns=list(self.meta_.input_columns))
            x_doc, x_arrays = frame_to_arrays(x_frame, "X")
            arrays |= x_arrays
        arrays |= {f"param.{k}": v for k, v in self.params_.items()}
        document = {
            "hyperparameters": encode_params(self.get_params(deep=False)),
            "y": doc,
            "X": x_doc,
            "log_likelihood": self.log_likelihood_,
            "converged": self.converged_,
        }
        if self._is_bayes():
            document |= {"method": "nuts", "chain_method": self.chain_method_}
            arrays |= self._bayes_arrays()
        return document, arrays

    def _restore(self, document, arrays):
        y = frame_from_arrays(document["y"], arrays, "y")
        X = None if document["X"] is None else frame_from_arrays(document["X"], arrays, "X")
        data, meta = self._series(y, X)
        model = self._model_for(data, meta)
        params = {k[len("param.") :]: v for k, v in arrays.items() if k.startswith("param.")}
        if not self._restore_bayes(document, arrays, model, meta, data):
            self._set_fitted(model, meta, data, params, document["log_likelihood"], document["converged"])


def _continuous_time(model) -> bool:
    """True for models whose transitions are exact over any time gap."""
    return bool(getattr(model, "continuous_time", False))


def _univariate(estimator, num_columns: int):
    if num_columns != 1:
        raise DataError(
            f"{type(estimator).__name__} models one column, got {num_columns}; select a column (df['y']) "
            "or use tsssm.LinearGaussianSSM for multivariate data"
        )


_LEVEL_SPECS = {
    # name: (level component or None, irregular)
    "irregular": (None, True),
    "fixed intercept": (Level(stochastic=False), False),
    "deterministic constant": (Level(stochastic=False), True),
    "local level": (Level(), True),
    "random walk": (Level(), False),
    "fixed slope": (Trend(False, False), False),
    "deterministic trend": (Trend(False, False), True),
    "local linear deterministic trend": (Trend(True, False), True),
    "random walk with drift": (Trend(True, False), False),
    "local linear trend": (Trend(True, True), True),
    "smooth trend": (Trend(False, True), True),
    "random trend": (Trend(False, True), False),
}


class UnobservedComponents(StateSpaceEstimator):
    r"""Structural time-series model: level/trend + seasonal + cycle + AR + regression + noise.

    .. math::

        y_t = \mu_t + \gamma_t + c_t + a_t + \beta^\top u_t + \varepsilon_t

    Parameters
    ----------
    level : str or bool
        Trend specification, one of statsmodels' names: ``"local level"`` (default),
        ``"local linear trend"``, ``"smooth trend"``, ``"random walk"``, ``"random walk with
        drift"``, ``"deterministic constant"``, ``"deterministic trend"``, ``"local linear
        deterministic trend"``, ``"fixed intercept"``, ``"fixed slope"``, ``"random trend"``,
        ``"irregular"``; ``True`` means ``"local level"``, ``False`` ``"irregular"``.
    seasonal : int, optional
        Period of a seasonal component.
    harmonics : int, optional
        If given, the seasonal is trigonometric with this many harmonics, else dummy.
    stochastic_seasonal : bool
    cycle : bool
        Add a stochastic damped cycle (:class:`tsssm.models.components.Cycle`).
    cycle_period_bounds : tuple
        Bounds of the cycle's period, in time steps.
    autoregressive : int, optional
        Order of an AR component.
    components : StructuralModel or Component, optional
        Components composed with ``+`` (e.g. ``Trend() + Seasonal(12)``); overrides the above.
        Irregular noise and regression on ``X`` are added as usual.
    **kwargs
        Shared options of :class:`StateSpaceEstimator`.

    Exogenous columns passed as ``X`` to ``fit`` enter as a regression with coefficients
    ``beta_<column>``.

    On irregular timestamps every component becomes its continuous-time counterpart (Brownian
    level, integrated-random-walk trend, stochastic-oscillator seasonal of period ``seasonal``
    time units, damped stochastic oscillator cycle, CAR(p) for ``autoregressive=p``) with exact
    transitions over each gap; the dummy seasonal (no ``harmonics``) has none and raises a
    :class:`~tsssm.errors.DataError`. See ``docs/irregular.md``.
    """

    def __init__(
        self,
        level="local level",
        *,
        seasonal=None,
        harmonics=None,
        stochastic_seasonal=True,
        cycle=False,
        cycle_period_bounds=(2.0, 50.0),
        autoregressive=None,
        components=None,
        method="mle",
        fixed_params=None,
        start_params=None,
        maxiter=1000,
        pooled=False,
        time_unit=None,
        random_state=None,
        num_samples=1000,
        num_warmup=1000,
        num_chains=4,
        priors=None,
    ):
        self.level = level
        self.seasonal = seasonal
        self.harmonics = harmonics
        self.stochastic_seasonal = stochastic_seasonal
        self.cycle = cycle
        self.cycle_period_bounds = cycle_period_bounds
        self.autoregressive = autoregressive
        self.components = components
        super().__init__(
            method=method, fixed_params=fixed_params, start_params=start_params, maxiter=maxiter, pooled=pooled,
            time_unit=time_unit, random_state=random_state, num_samples=num_samples, num_warmup=num_warmup,
            num_chains=num_chains, priors=priors,
        )

    def _structure(self) -> StructuralModel:
        if self.components is not None:
            comps = self.components
            return comps if isinstance(comps, StructuralModel) else StructuralModel((comps,))
        level = {True: "local level", False: "irregular"}.get(self.level, self.level)
        if level not in _LEVEL_SPECS:
            raise DataError(f"level={self.level!r} is not a known trend specification; use one of {sorted(_LEVEL_SPECS)}")
        level_component, irregular = _LEVEL_SPECS[level]
        parts = [] if level_component is None else [level_component]
        if self.seasonal is not None:
            parts.append(Seasonal(int(self.seasonal), self.harmonics, self.stochastic_seasonal))
        if self.cycle:
            parts.append(Cycle(period_bounds=tuple(self.cycle_period_bounds)))
        if self.autoregressive:
            parts.append(Autoregressive(int(self.autoregressive)))
        if not parts and not irregular:
            raise DataError("the model has no components: choose a level or add seasonal/cycle/autoregressive")
        return StructuralModel(tuple(parts), irregular)

    def _build_model(self, num_columns, exog):
        _univariate(self, num_columns)
        return self._structure().with_exog(exog)

    def _continuous(self, model):
        return model.continuous()


class LocalLevel(UnobservedComponents):
    r"""Local level model: :math:`y_t = \mu_t + \varepsilon_t`, :math:`\mu_{t+1} = \mu_t + \eta_t`.

    Parameters ``sigma2_irregular`` (:math:`\varepsilon`) and ``sigma2_level`` (:math:`\eta`).
    Options as :class:`StateSpaceEstimator`.
    """

    def __init__(
        self, *, method="mle", fixed_params=None, start_params=None, maxiter=1000, pooled=False, time_unit=None,
        random_state=None, num_samples=1000, num_warmup=1000, num_chains=4, priors=None,
    ):
        super().__init__(
            "local level", method=method, fixed_params=fixed_params, start_params=start_params, maxiter=maxiter,
            pooled=pooled, time_unit=time_unit, random_state=random_state, num_samples=num_samples, num_warmup=num_warmup,
            num_chains=num_chains, priors=priors,
        )


class LocalLinearTrend(UnobservedComponents):
    r"""Local linear trend model: level :math:`\mu_t` with a random-walk slope :math:`\nu_t`.

    .. math::

        y_t = \mu_t + \varepsilon_t, \quad \mu_{t+1} = \mu_t + \nu_t + \eta_t, \quad
        \nu_{t+1} = \nu_t + \zeta_t

    Parameters ``sigma2_irregular``, ``sigma2_level`` and ``sigma2_trend``.
    Options as :class:`StateSpaceEstimator`.
    """

    def __init__(
        self, *, method="mle", fixed_params=None, start_params=None, maxiter=1000, pooled=False, time_unit=None,
        random_state=None, num_samples=1000, num_warmup=1000, num_chains=4, priors=None,
    ):
        super().__init__(
            "local linear trend", method=method, fixed_params=fixed_params, start_params=start_params, maxiter=maxiter,
            pooled=pooled, time_unit=time_unit, random_state=random_state, num_samples=num_samples, num_warmup=num_warmup,
            num_chains=num_chains, priors=priors,
        )


class LinearGaussianSSM(StateSpaceEstimator):
    r"""General linear-Gaussian SSM with ``state_dim`` latent states and learned matrices.

    .. math::

        y_t = H x_t + d + \varepsilon_t, \ \varepsilon_t \sim N(0, R), \qquad
        x_{t+1} = F x_t + \eta_t, \ \eta_t \sim N(0, I)

    Works with several observed columns (D > 1), each possibly missing at any time. ``F``
    (``transition``), ``H`` (``observation``), ``d`` (``obs_offset``) and ``R`` (``obs_cov``)
    are estimated; the state has a diffuse prior. See
    :class:`tsssm.models.lgssm.LinearGaussianModel` for identification.
    """

    def __init__(
        self, state_dim=1, *, method="mle", fixed_params=None, start_params=None, maxiter=1000, pooled=False,
        time_unit=None, random_state=None, num_samples=1000, num_warmup=1000, num_chains=4, priors=None,
    ):
        self.state_dim = state_dim
        super().__init__(
            method=method, fixed_params=fixed_params, start_params=start_params, maxiter=maxiter, pooled=pooled,
            time_unit=time_unit, random_state=random_state, num_samples=num_samples, num_warmup=num_warmup,
            num_chains=num_chains, priors=priors,
        )

    def _build_model(self, num_columns, exog):
        if exog:
            raise DataError("LinearGaussianSSM does not take exogenous inputs X; use UnobservedComponents or ARIMA")
        if int(self.state_dim) < 1:
            raise DataError(f"state_dim must be a positive integer, got {self.state_dim!r}")
        return LinearGaussianModel(int(self.state_dim), num_columns)


class PhaseFactor(StateSpaceEstimator):
    r"""Factor model over the phase of many short aligned series (heartbeats), fitted pooled.

    .. math::

        y_{b,t} = \mu_{\phi_{b,t}} + w_{\phi_{b,t}}^\top f_b + \varepsilon_{b,t}, \quad
        \varepsilon_{b,t} \sim N(0, \sigma^2), \quad f_b \sim N(0, I_K),

    where the phase :math:`\phi_{b,t}` of an observation is its time in series b (the sample
    index within a beat: ``ds`` = 0, 1, ..., P - 1 in a long frame, or the position in a
    ``(B, T, 1)`` array). The template :math:`\mu` (``template``), the loadings :math:`W`
    (``loadings``, P x K) and ``sigma2_irregular`` are shared by all series and estimated by
    maximising the joint log-likelihood of the panel (``pooled=True``), starting from the
    probabilistic-PCA solution; each series' factors :math:`f_b` are integrated out by its own
    Kalman filter (:class:`tsssm.models.lgssm.PhaseFactorModel`). ``score_samples`` of new
    series gives :math:`-\log p(y_{b,t} \mid y_{b,<t})`, which localises where a beat leaves the
    normal shape; ``tsssm.anomaly.series_scores`` turns it into one score per beat.

    Parameters
    ----------
    num_factors : int
        Number of latent factors K.
    pooled : bool
        Must be True: the per-phase parameters are only identified across many series.
    fixed_params, start_params, maxiter, random_state
        As for :class:`StateSpaceEstimator` (maximum likelihood only: ``method="nuts"`` fits one
        series; the phases are grid steps, so there is no ``time_unit``).
    """

    def __init__(self, num_factors=2, *, fixed_params=None, start_params=None, maxiter=1000, pooled=True, random_state=None):
        self.num_factors = num_factors
        super().__init__(
            fixed_params=fixed_params, start_params=start_params, maxiter=maxiter, pooled=pooled, random_state=random_state
        )

    def _build_model(self, num_columns, exog):
        raise DataError(
            "PhaseFactor learns one value per phase, which only many series identify: fit it on a panel of aligned "
            "series (a long frame with unique_id and ds = 0, 1, ... per series, or an array (series, time, 1)), "
            "not on one series"
        )

    def _panel_model(self, data, meta):
        _univariate(self, len(meta.columns))
        if meta.input_columns:
            raise DataError("PhaseFactor does not take exogenous inputs X; pass X=None")
        if not self.pooled:
            raise DataError("PhaseFactor shares its template and loadings across the series: pass pooled=True")
        if int(self.num_factors) < 0:
            raise DataError(f"num_factors must be a non-negative integer, got {self.num_factors!r}")
        phases = _phases(data, meta)
        return PhaseFactorModel(int(phases.max()) + 1, int(self.num_factors))

    def _pooled_start(self, model, data, meta):
        values = np.where(data.mask[..., 0], data.values[..., 0], np.nan)
        return model.panel_start(values, _phases(data, meta)) | dict(self.start_params or {})

    def _panel_data(self, y, X):
        data, meta, params = super()._panel_data(y, X)
        if y is not None:
            _phases(data, meta, self.model_.length)
        return data, meta, params

    def forecast(self, horizon=None, *, times=None, X=None, levels=(0.8, 0.95), num_samples=1000):
        """Predictive distribution of the rest of each beat (phases up to the last fitted one).

        As :meth:`StateSpaceEstimator.forecast`; a DataError for phases past the fitted ones,
        where the model says nothing.
        """
        self._check_fitted()
        self._check_horizon(horizon, times)
        future_t, _ = future_times(self.meta_, horizon, times=times)
        if np.max(future_t) > self.model_.length - 1:
            raise DataError(
                f"PhaseFactor models phases 0 to {self.model_.length - 1}, but the forecast reaches phase "
                f"{int(np.max(future_t))}: forecast the rest of shorter (partial) beats only"
            )
        return super().forecast(horizon, times=times, X=X, levels=levels, num_samples=num_samples)


def _phases(data: mle.SeriesData, meta: PanelMeta, limit: int | None = None) -> np.ndarray:
    """Integer phases (B, T) of a regular panel's times (0 on padding); a DataError past ``limit``.

    :func:`tsssm.data.to_panel` puts a regular panel on the integer grid 0, 1, ... from its first
    timestamp (irregular panels are rejected before this), so the times are whole numbers.
    """
    times = np.asarray(data.times, float)
    valid = np.arange(times.shape[1])[None, :] < np.asarray(meta.lengths)[:, None]
    phases = np.where(valid, np.round(times), 0).astype(int)
    if limit is not None and np.any(phases >= limit):
        b, t = np.argwhere(phases >= limit)[0]
        raise DataError(
            f"PhaseFactor reads each series' times as phases 0, 1, ..., {limit - 1} (those it was fitted on), but "
            f"series {meta.series_ids[b]!r} reaches phase {phases[b, t]} at row {t}; score beats of at most {limit} "
            "samples, with ds = 0, 1, ... (the sample index)"
        )
    return phases


class ARIMA(StateSpaceEstimator):
    r"""Seasonal ARIMA(p, d, q)(P, D, Q, s) with optional trend and regression on ``X``.

    .. math::

        \phi(L)\Phi(L^s)\,\Delta^d \Delta_s^D (y_t - \beta^\top u_t) = \tau_t
        + \theta(L)\Theta(L^s)\,\varepsilon_t, \qquad \varepsilon_t \sim N(0, \sigma^2)

    in the state-space form of statsmodels' ``SARIMAX`` (differencing kept in the state, so
    forecasts come back in levels and missing values are handled exactly). The differencing
    states start diffuse and the ARMA states from their stationary distribution.

    Parameters
    ----------
    order : (p, d, q)
    seasonal_order : (P, D, Q, s)
    trend : {"n", "c", "t", "ct"}, optional
        Trend polynomial of the *differenced* series (statsmodels' meaning): with d = 1, ``"c"``
        is a drift in levels. Default: ``"c"`` without differencing, ``"n"`` with it.
    **kwargs
        Shared options of :class:`StateSpaceEstimator`.

    Parameters are named ``ar`` (``ar.L1`` ...), ``ma``, ``ar_seasonal``, ``ma_seasonal``,
    ``sigma2``, ``intercept``, ``drift`` and ``beta_<column>``; AR polynomials are constrained to
    be stationary and MA polynomials invertible.
    """

    def __init__(
        self,
        order=(1, 0, 0),
        seasonal_order=(0, 0, 0, 0),
        trend=None,
        *,
        method="mle",
        fixed_params=None,
        start_params=None,
        maxiter=1000,
        pooled=False,
        time_unit=None,
        random_state=None,
        num_samples=1000,
        num_warmup=1000,
        num_chains=4,
        priors=None,
    ):
        self.order = order
        self.seasonal_order = seasonal_order
        self.trend = trend
        super().__init__(
            method=method, fixed_params=fixed_params, start_params=start_params, maxiter=maxiter, pooled=pooled,
            time_unit=time_unit, random_state=random_state, num_samples=num_samples, num_warmup=num_warmup,
            num_chains=num_chains, priors=priors,
        )

    def _build_model(self, num_columns, exog):
        _univariate(self, num_columns)
        order, seasonal_order = tuple(self.order), tuple(self.seasonal_order)
        if len(order) != 3 or len(seasonal_order) != 4:
            raise DataError(f"order must be (p, d, q) and seasonal_order (P, D, Q, s), got {self.order!r}, {self.seasonal_order!r}")
        trend = self.trend
        if trend is None:
            trend = "c" if order[1] == 0 and seasonal_order[1] == 0 else "n"
        try:
            return ARIMAModel(order, seasonal_order, trend, exog=tuple(exog))
        except ValueError as exc:
            raise DataError(str(exc)) from exc

    def _continuous(self, model):
        p = max(1, int(tuple(self.order)[0]))
        raise DataError(
            "the timestamps are irregular, but ARIMA is a discrete-time model (its lags need a regular grid); use "
            f"tsssm.UnobservedComponents(autoregressive={p}), whose autoregressive component becomes a "
            f"continuous-time CAR({p}) (Ornstein-Uhlenbeck for order 1) on irregular data, or resample onto a "
            "regular grid (missing steps may stay NaN)"
        )
