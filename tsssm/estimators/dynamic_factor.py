r"""Dynamic factor model for (mixed-frequency) panels: :class:`DynamicFactor`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.stats

from tsssm._config import float64
from tsssm.data import PanelMeta, future_times
from tsssm.data._mixed import low_frequency_columns, move_to_period_ends, period_grid_times
from tsssm.errors import DataError
from tsssm.estimators.base import frame_from_arrays
from tsssm.estimators.classical import StateSpaceEstimator
from tsssm.inference import mle, posterior
from tsssm.models.dynamic_factor import AGGREGATION_RULES, DynamicFactorModel, aggregation_weights

#: Aggregation of a low-frequency column when ``aggregation`` does not name it: the convention of
#: statsmodels' ``DynamicFactorMQ`` (quarterly growth rates of monthly-frequency latent growth rates).
DEFAULT_AGGREGATION = "mariano-murasawa"


class DynamicFactor(StateSpaceEstimator):
    r"""Dynamic factor model; columns may be observed at different frequencies (nowcasting).

    On the finest time grid of the data (e.g. monthly), with each column standardised
    (:math:`z_{i,t} = (y_{i,t} - \bar y_i) / s_i`, sample mean and standard deviation of its
    observed values):

    .. math::

        z^*_{i,t} &= \lambda_i^\top f_t + e_{i,t}, \qquad
        z_{i,t} = \sum_{j=0}^{w_i-1} \omega_{i,j}\, z^*_{i,t-j} \\
        f_t &= A_1 f_{t-1} + \dots + A_p f_{t-p} + u_t, \quad u_t \sim N(0, I_k) \\
        e_{i,t} &= \rho_i e_{i,t-1} + a_{i,t}, \quad a_{i,t} \sim N(0, \sigma^2_i)
        \quad (\rho_i = 0 \text{ unless } \texttt{idiosyncratic\_ar1})

    :math:`z^*_{i,t}` is the latent high-frequency value of column :math:`i` and
    :math:`\omega_i` its aggregation weights: a column observed on the finest grid has
    :math:`\omega_i = (1)`; a low-frequency column (e.g. quarterly next to monthly columns,
    :math:`r = 3` grid steps per period) is tied to the latent values of its period by its rule:

    ======================  =====================================  =====================================
    rule                    weights on lags 0, 1, ... (r = 3)       meaning
    ======================  =====================================  =====================================
    ``"mariano-murasawa"``  1, 2, 3, 2, 1                           growth rate of a period average of
                                                                    levels, from high-frequency growth
                                                                    rates (**default**, as statsmodels'
                                                                    ``DynamicFactorMQ``)
    ``"sum"``               1, 1, 1                                 flow: period total
    ``"mean"``              1/3, 1/3, 1/3                           flow: period average
    ``"last"``              1                                       stock: period-end value
    ======================  =====================================  =====================================

    The state holds enough lags of the factors (and of the idiosyncratic errors of aggregated
    columns) for every window. A low-frequency value is matched to the period-end row of the
    grid: a value stamped at the period start (``QS``) is moved to the period's last grid row
    (e.g. 2000-01-01 -> 2000-03-01), a period-end stamp (``QE``) stays.

    Parameters
    ----------
    k_factors : int
        Number of factors :math:`k`.
    factor_order : int
        Order :math:`p` of the factor VAR (constrained to be stationary).
    aggregation : dict, optional
        ``{column: rule}`` for low-frequency columns, rules as above; a low-frequency column not
        named gets ``"mariano-murasawa"``. A column of a wide frame that is observed only every
        few rows (e.g. quarterly values in a monthly frame, NaN between) is treated as low
        frequency when named here (its frequency is inferred from its observed times); pass a
        dict of Series to be explicit.
    idiosyncratic_ar1 : bool
        AR(1) idiosyncratic errors (statsmodels' default); default i.i.d.
    standardize : bool
        Standardise the columns before fitting (results always come back in the data's units).
    **kwargs
        Shared options of :class:`~tsssm.estimators.classical.StateSpaceEstimator`.

    Notes
    -----
    The factor innovations have unit covariance (identification); with ``k_factors > 1`` the
    loadings are identified only up to an orthogonal rotation. Parameters (on the standardised
    scale): ``loadings`` (D, k), ``factor_ar`` (k, k p), ``idio_ar`` (D,), ``idio_var`` (D,).
    Every state is stationary, so the log-likelihood is the ordinary one (no diffuse states),
    in the data's units (statsmodels reports the standardised data's:
    :math:`\ell_{\text{tsssm}} = \ell_{\text{statsmodels}} - \sum_i n_i \log s_i`).

    Outputs follow the data's grid: in :meth:`predict`, :meth:`forecast` and
    :meth:`smooth_observations`, a low-frequency column at a row means the aggregate of the
    window ending at that row, which is its observable at its period-end rows.
    :meth:`nowcast` reads one low-frequency column per period, including the current one.

    Fitted attributes (besides the shared ones)
    -------------------------------------------
    frequencies_ : dict
        Per low-frequency column: ``freq``, ``ratio`` (grid steps per period), ``rule``,
        ``weights``, ``start_stamped``, and the ``stamps`` of its observed values with their
        period-end grid times ``ends``.
    standardization_ : pandas.DataFrame
        ``mean`` and ``std`` per column.
    """

    def __init__(
        self,
        k_factors=1,
        factor_order=1,
        aggregation=None,
        *,
        idiosyncratic_ar1=False,
        standardize=True,
        method="mle",
        fixed_params=None,
        start_params=None,
        maxiter=1000,
        time_unit=None,
        random_state=None,
        num_samples=1000,
        num_warmup=1000,
        num_chains=4,
        priors=None,
    ):
        self.k_factors = k_factors
        self.factor_order = factor_order
        self.aggregation = aggregation
        self.idiosyncratic_ar1 = idiosyncratic_ar1
        self.standardize = standardize
        super().__init__(
            method=method, fixed_params=fixed_params, start_params=start_params, maxiter=maxiter, time_unit=time_unit,
            random_state=random_state, num_samples=num_samples, num_warmup=num_warmup, num_chains=num_chains, priors=priors,
        )

    # ------------------------------------------------------------------ data
    def _aggregation_spec(self, meta: PanelMeta) -> dict:
        spec = dict(self.aggregation or {})
        unknown = [c for c in spec if c not in meta.columns]
        if unknown:
            raise DataError(f"aggregation names column(s) {unknown} that are not in the data; its columns are {list(meta.columns)}")
        bad = {c: r for c, r in spec.items() if r not in AGGREGATION_RULES}
        if bad:
            raise DataError(f"unknown aggregation rule(s) {bad}; use one of {list(AGGREGATION_RULES)}")
        return spec

    def _prepare(self, y, X=None):
        """Data on the finest grid with low-frequency values at their period-end rows."""
        data, meta = super()._series(y, X)
        if meta.input_columns:
            raise DataError("DynamicFactor does not take exogenous inputs X")
        spec = self._aggregation_spec(meta)
        known = getattr(self, "frequencies_", None)
        infer = tuple(spec) + tuple(known or ())
        lows = low_frequency_columns(meta, data.mask, infer=infer)
        high = [c for c in spec if c not in lows]
        if high:
            raise DataError(
                f"aggregation names column(s) {high}, but they are observed at the grid frequency ({meta.freq}); "
                "aggregation applies to lower-frequency columns: pass a dict of Series with their own frequencies"
            )
        values, mask = move_to_period_ends(meta, data.values, data.mask, lows)
        layout = {
            c: {
                "freq": info.freq, "ratio": info.ratio, "rule": spec.get(c, DEFAULT_AGGREGATION),
                "weights": aggregation_weights(spec.get(c, DEFAULT_AGGREGATION), info.ratio),
                "start_stamped": info.start_stamped, "stamps": info.stamps, "ends": info.ends,
            }
            for c, info in lows.items()
        }
        return mle.SeriesData(data.times, values, mask, None), meta, layout

    def _series(self, y, X=None):
        data, meta, _ = self._prepare(y, X)
        return data, meta

    def _build_model(self, num_columns, exog):
        """DynamicFactor's model depends on the data (column frequencies and scales): see :meth:`_model_for`.

        The layout-only hook of the other classical estimators serves their many-series path,
        which DynamicFactor (one panel of columns, not many series) does not take.
        """
        raise DataError(
            "DynamicFactor models the columns of one panel (a wide frame or a dict of Series), not many "
            "separate series; fit it on one wide frame"
        )

    def _model_for(self, data, meta, layout=None):
        if layout is None:
            layout = self.frequencies_
        k, p = self.k_factors, self.factor_order
        if not (isinstance(k, (int, np.integer)) and k >= 1 and isinstance(p, (int, np.integer)) and p >= 1):
            raise DataError(f"k_factors and factor_order must be positive integers, got {k!r} and {p!r}")
        values = np.where(data.mask, data.values, np.nan)
        counts = data.mask.sum(0)
        if np.any(counts < 2):
            raise DataError(f"every column needs at least two observed values; counts {dict(zip(meta.columns, counts.tolist()))}")
        if self.standardize:
            mean, std = np.nanmean(values, 0), np.nanstd(values, 0, ddof=1)
            if np.any(std <= 0):
                raise DataError(f"constant column(s) {[c for c, s in zip(meta.columns, std) if s <= 0]}: drop them")
        else:
            mean, std = np.zeros(len(meta.columns)), np.ones(len(meta.columns))
        weights = tuple(tuple(layout[c]["weights"]) if c in layout else (1.0,) for c in meta.columns)
        return DynamicFactorModel(
            tuple(str(c) for c in meta.columns), int(k), int(p), weights, bool(self.idiosyncratic_ar1),
            tuple(float(m) for m in mean), tuple(float(s) for s in std),
        )

    # ------------------------------------------------------------------ fit
    def fit(self, y, X=None):
        """Estimate the parameters (exact maximum likelihood, or NUTS with ``method="nuts"``); returns ``self``.

        With ``method="nuts"`` the default priors are scaled to the standardised data (unit
        variance) when ``standardize=True``.
        """
        self._check_method()
        self._clear_posterior()
        for name in ("frequencies_",):
            self.__dict__.pop(name, None)
        data, meta, layout = self._prepare(y, X)
        model = self._model_for(data, meta, layout)
        if self.method == "nuts":
            self._fit_nuts(model, meta, data)
        else:
            with float64():
                result = mle.fit(
                    model, self._jax(data), fixed_params=self.fixed_params, start_params=self.start_params,
                    maxiter=self.maxiter,
                )
            self._set_fitted(model, meta, data, result.params, result.log_likelihood, result.converged)
        self.frequencies_ = layout
        self.standardization_ = pd.DataFrame({"mean": model.mean, "std": model.scale}, index=list(meta.columns))
        return self

    def _prior_scales(self, model, data):
        if not self.standardize:
            return super()._prior_scales(model, data)
        from tsssm.inference.bayes import PriorScales

        return PriorScales(1.0, 1.0)

    # ------------------------------------------------------------------ outputs
    def smooth_observations(self, *, return_std=False):
        """Posterior means of every column at every row given all the data (wide frame).

        A low-frequency column's value at a row is its aggregate over the window ending there
        (its observable at period-end rows); missing entries of high-frequency columns are
        interpolated. With ``return_std=True`` also the posterior standard deviations.
        """
        self._check_fitted()
        with float64():
            moments = posterior.smoothed_observations(self.model_, self.params_, self._jax(self.data_))
            mean, cov = np.asarray(moments.mean), np.asarray(moments.cov)
        frame = self.meta_.frame(mean[None])
        if not return_std:
            return frame
        return frame, self.meta_.frame(np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))[None])

    def nowcast(self, column=None, *, level=0.95) -> pd.DataFrame:
        """Estimates of a low-frequency column per period, from the first observed one to the
        period that contains the last row of the data (the current one), given all the data.

        Returns a frame indexed by the column's own period stamps (as given, e.g. quarter
        starts for ``QS`` data) with ``mean``, ``std``, the bounds of the central ``level``
        interval and ``observed`` (the value, NaN where not yet observed). For an observed
        period the estimate equals the observation unless the column has observation noise;
        for the current period it is the nowcast from the high-frequency data so far.
        """
        self._check_fitted()
        lows = self.frequencies_
        if not lows:
            raise DataError("the data has no low-frequency column to nowcast")
        if column is None:
            if len(lows) > 1:
                raise DataError(f"several low-frequency columns {list(lows)}: choose one with column=")
            column = next(iter(lows))
        if column not in lows:
            raise DataError(f"column {column!r} is not a low-frequency column; those are {list(lows)}")
        info, meta = lows[column], self.meta_
        d = list(meta.columns).index(column)
        grid = meta.indexes[0]
        # Stamps of every period from the first observed one to the one holding the last row.
        candidates = pd.date_range(info["stamps"][0], periods=len(grid) // info["ratio"] + 3, freq=info["freq"])
        ends = pd.DatetimeIndex([period_grid_times(meta.freq, info["freq"], t)[-1] for t in candidates])
        keep = np.arange(len(ends)) <= np.searchsorted(ends, grid[-1])
        stamps, ends = candidates[keep], ends[keep]
        horizon = int(max(0, len(pd.date_range(grid[-1], ends[-1], freq=meta.freq)) - 1))
        if horizon:
            data, future_index, _ = self._extended(horizon, None, None)
            index = grid.append(future_index[0])
        else:
            data, index = self.data_, grid
        with float64():
            moments = posterior.smoothed_observations(self.model_, self.params_, self._jax(data))
            mean = np.asarray(moments.mean)[:, d]
            std = np.sqrt(np.clip(np.asarray(moments.cov)[:, d, d], 0.0, None))
        rows = index.get_indexer(ends)
        observed = np.full(len(rows), np.nan)
        in_data = rows < len(grid)
        ok = np.zeros(len(rows), bool)
        ok[in_data] = self.data_.mask[rows[in_data], d]
        observed[ok] = self.data_.values[rows[ok], d]
        z = float(scipy.stats.norm.ppf(0.5 + level / 2))
        pct = f"{round(100 * level):d}"
        return pd.DataFrame(
            {
                "mean": mean[rows], "std": std[rows], f"lower_{pct}": mean[rows] - z * std[rows],
                f"upper_{pct}": mean[rows] + z * std[rows], "observed": observed,
            },
            index=pd.DatetimeIndex(stamps, name=column),
        )

    # ------------------------------------------------------------------ persistence
    def _state_for_saving(self):
        # Save the data as given (low-frequency values at their own stamps) and the rules.
        values, mask = np.array(self.data_.values), np.array(self.data_.mask)
        grid = self.meta_.indexes[0]
        for c, info in self.frequencies_.items():
            d = list(self.meta_.columns).index(c)
            moved = values[grid.get_indexer(info["ends"]), d]
            values[:, d], mask[:, d] = 0.0, False
            rows = grid.get_indexer(info["stamps"])
            values[rows, d], mask[rows, d] = moved, True
        saved = self.data_
        self.data_ = mle.SeriesData(saved.times, values, mask, saved.inputs)
        try:
            document, arrays = super()._state_for_saving()
        finally:
            self.data_ = saved
        document["frequencies"] = {str(c): {"rule": i["rule"], "freq": i["freq"]} for c, i in self.frequencies_.items()}
        return document, arrays

    def _restore(self, document, arrays):
        # The saved frame is wide: name the low-frequency columns so that their frequency is inferred again.
        self.frequencies_ = {c: {} for c in document["frequencies"]}
        data, meta, layout = self._prepare(frame_from_arrays(document["y"], arrays, "y"))
        self.frequencies_ = layout
        model = self._model_for(data, meta, layout)
        params = {k[len("param.") :]: v for k, v in arrays.items() if k.startswith("param.")}
        if not self._restore_bayes(document, arrays, model, meta, data):
            self._set_fitted(model, meta, data, params, document["log_likelihood"], document["converged"])
        self.standardization_ = pd.DataFrame({"mean": model.mean, "std": model.scale}, index=list(meta.columns))
