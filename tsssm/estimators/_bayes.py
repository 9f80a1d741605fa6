r"""Bayesian fits (``method="nuts"``) of the classical estimators: the posterior side of
:class:`~tsssm.estimators.classical.StateSpaceEstimator`.

``fit`` draws the free parameters by NUTS (:mod:`tsssm.inference.bayes`). Afterwards every
predictive question integrates over the posterior: the answers at up to
:data:`tsssm.inference.bayes.MAX_DRAWS` (200) draws, evenly thinned from all chains, are computed
in one vmapped program and mixed with equal weights:

- ``forecast``/``predict``: each marginal is a mixture of the per-draw Gaussians (mean and std
  from the law of total variance, quantiles solved exactly from the mixture's CDF); joint
  ``samples`` cycle through the draws, one simulation-smoother path per draw and sample;
- ``score_samples``: :math:`-\log \frac1K \sum_k p(y_t \mid y_{<t}, \theta_k)`;
- ``smooth``: mixture mean and standard deviation of the smoothed states.

``params_`` is the posterior mean of every free parameter (so that code written for a point
estimate keeps working); ``log_likelihood_``, ``aic_``, ``bic_`` and ``score`` are evaluated at it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from tsssm._config import float64
from tsssm.errors import DataError
from tsssm.forecast import Forecast
from tsssm.inference import bayes, mle, posterior

METHODS = ("mle", "nuts")


class BayesMixin:
    """NUTS fits and posterior-integrated answers (see the module docstring)."""

    def _is_bayes(self) -> bool:
        return getattr(self, "posterior_", None) is not None

    def _check_method(self):
        if self.method not in METHODS:
            raise DataError(f"method={self.method!r} is not available for {type(self).__name__}; use one of {list(METHODS)}")

    def _prior_scales(self, model, data):
        """Scales of the default priors; the data's own unless the model rescales it."""
        return bayes.PriorScales.from_data(data)

    # ------------------------------------------------------------------ fit
    def _fit_nuts(self, model, meta, data):
        """Sample the posterior and set the fitted attributes (``params_`` = posterior mean)."""
        with float64():
            result = bayes.fit(
                model, self._jax(data), fixed_params=self.fixed_params, priors=self.priors, start_params=self.start_params,
                num_warmup=self.num_warmup, num_samples=self.num_samples, num_chains=self.num_chains,
                random_state=self.random_state, scales=self._prior_scales(model, data),
            )
        self._set_posterior(model, meta, data, result.draws, result.stats, result.prior_draws, result.chain_method)

    def _set_posterior(self, model, meta, data, draws, stats, prior_draws, chain_method):
        layout = mle.ParamLayout.build(model.param_specs(), self.fixed_params)
        mean = {k: np.mean(v, axis=(0, 1)) for k, v in draws.items()}
        params = {k: np.asarray(v, float) for k, v in layout.fixed_values.items()} | mean
        with float64():
            ll = float(mle._log_likelihood_jit(model, params, self._jax(data)))
        from numpyro.diagnostics import split_gelman_rubin

        rhat = [np.max(split_gelman_rubin(v)) for v in draws.values()] if next(iter(draws.values())).shape[1] >= 4 else [np.nan]
        converged = bool(np.nanmax(rhat) < 1.05) if np.any(np.isfinite(rhat)) else False
        self._set_fitted(model, meta, data, params, ll, converged and not np.any(stats.get("diverging", False)))
        self.posterior_ = {k: np.asarray(v, float) for k, v in draws.items()}
        self.sample_stats_ = {k: np.asarray(v) for k, v in stats.items()}
        self._prior_draws = {k: np.asarray(v, float) for k, v in prior_draws.items()}
        self.chain_method_ = chain_method
        self.num_divergences_ = int(np.sum(stats.get("diverging", 0)))
        self._idata = None

    def _clear_posterior(self):
        for name in ("posterior_", "sample_stats_", "_prior_draws", "chain_method_", "num_divergences_", "_idata"):
            self.__dict__.pop(name, None)

    # ------------------------------------------------------------------ draws
    def _draw_params(self, max_draws: int = bayes.MAX_DRAWS) -> dict:
        """Up to ``max_draws`` posterior draws, stacked (fixed parameters broadcast), as NumPy arrays
        (turn them into JAX arrays inside :func:`tsssm._config.float64`)."""
        chains, num = next(iter(self.posterior_.values())).shape[:2]
        layout = mle.ParamLayout.build(self.model_.param_specs(), self.fixed_params)
        take = bayes.thinned_indexes(chains, num, max_draws)
        flat = bayes.flat_draws(self.posterior_, {k: np.asarray(v) for k, v in layout.fixed_values.items()}, take)
        return flat

    @staticmethod
    def _jax_params(params: dict) -> dict:
        return {k: jnp.asarray(v) for k, v in params.items()}

    def _over_draws(self, fn, data, *batched, **static):
        with float64():
            params = self._jax_params(self._draw_params())
            out = bayes.over_draws(fn, self.model_, params, self._jax(data), *batched, **static)
            return jax.tree_util.tree_map(np.asarray, out)

    @staticmethod
    def _marginal_std(cov):
        return np.sqrt(np.clip(np.diagonal(cov, axis1=-2, axis2=-1), 0.0, None))

    # ------------------------------------------------------------------ predictive answers
    def _bayes_forecast(self, extended, indexes, rows, levels, num_samples) -> Forecast:
        pred = self._over_draws(posterior.predictions, extended)
        means, stds = pred.mean[:, rows], self._marginal_std(pred.cov)[:, rows]
        if not (np.all(np.isfinite(means)) and np.all(np.isfinite(stds))):
            raise DataError(
                "the forecast is not finite: the data do not identify the model's initial states "
                "(too few observations for its diffuse states?)"
            )

        def sampler(num, seed):
            params = self._draw_params()
            K = len(next(iter(params.values())))
            per_draw = -(-int(num) // K)
            keys = jax.random.split(jax.random.key(seed), K)
            with float64():
                draws = bayes.over_draws(
                    posterior.observation_draws, self.model_, self._jax_params(params), self._jax(extended), keys,
                    num_draws=per_draw,
                )
                draws = np.asarray(draws)[:, :, rows]  # (K, per_draw, h, D)
            # interleave so that any leading subset of the samples mixes all posterior draws
            draws = np.swapaxes(draws, 0, 1).reshape((K * per_draw,) + draws.shape[2:])[:num]
            return draws[:, None]

        return Forecast(
            self.meta_, indexes, None, mixture=(means[:, None], stds[:, None]), sampler=sampler, num_samples=num_samples,
            levels=levels, random_state=self.random_state,
        )

    def _bayes_predict(self, data, meta, levels) -> Forecast:
        pred = self._over_draws(posterior.predictions, data)
        valid = pred.valid[0][:, None]
        means = np.where(valid, pred.mean, np.nan)
        stds = np.where(valid, self._marginal_std(pred.cov), np.nan)
        return Forecast(meta, meta.indexes, None, mixture=(means[:, None], stds[:, None]), levels=levels)

    def _bayes_score_samples(self, data) -> np.ndarray:
        """Per-time :math:`-\\log` of the posterior-averaged one-step predictive density."""
        pred = self._over_draws(posterior.predictions, data)
        log_density = pred.log_density  # (K, T)
        top = np.max(log_density, axis=0)
        safe = np.where(np.isfinite(top), top, 0.0)
        return -(safe + np.log(np.mean(np.exp(log_density - safe), axis=0)))

    def _bayes_smooth(self):
        moments = self._over_draws(posterior.smoothed_states, self.data_)
        mean = np.mean(moments.mean, axis=0)
        var = np.mean(np.diagonal(moments.cov, axis1=-2, axis2=-1) + moments.mean**2, axis=0) - mean**2
        return mean, np.sqrt(np.clip(var, 0.0, None))

    # ------------------------------------------------------------------ arviz
    def to_arviz(self):
        """The posterior as an :class:`arviz.InferenceData` (``method="nuts"`` fits only).

        Groups: ``posterior`` (constrained parameters by name; vector parameters get a
        ``<name>_dim`` dimension with their labels), ``sample_stats``, ``log_likelihood``
        (variable ``y``, dims ``(chain, draw, time)``: one term per observed time point, the
        one-step-ahead log predictive density; the observations that identify the diffuse
        initial states share the remainder so that the terms sum to the exact diffuse
        log-likelihood, see :mod:`tsssm.inference.bayes`), ``posterior_predictive`` (``y``
        replicated at the observed time points: for each of up to 200 thinned draws, a state
        path from the simulation smoother plus fresh observation noise; one chain),
        ``observed_data`` and ``prior`` (draws of the parameters from their priors).
        ``time`` coordinates are the data's timestamps; with several columns ``y`` has a
        further ``column`` dimension.
        """
        self._check_fitted()
        if not self._is_bayes():
            raise DataError(
                f"to_arviz() needs a Bayesian fit: this {type(self).__name__} was fitted with method={self.method!r}; "
                "refit with method='nuts'"
            )
        if self._idata is None:
            self._idata = self._build_arviz()
        return self._idata

    def _build_arviz(self):
        import arviz as az

        specs = {s.name: s for s in self.model_.param_specs()}
        coords, dims = {}, {}
        for name, draws in self.posterior_.items():
            spec = specs[name]
            if draws.ndim == 3 and spec.labels and len(spec.labels) == draws.shape[2]:
                coords[f"{name}_dim"] = list(spec.labels)
                dims[name] = [f"{name}_dim"]
        data, meta = self.data_, self.meta_
        observed = np.any(data.mask, axis=1)
        times = meta.indexes[0][observed]
        coords["time"] = times
        D = data.values.shape[1]
        y_dims = ["time"] if D == 1 else ["time", "column"]
        if D > 1:
            coords["column"] = [str(c) for c in meta.columns]
        dims["y"] = y_dims

        chains, num = next(iter(self.posterior_.values())).shape[:2]
        layout = mle.ParamLayout.build(self.model_.param_specs(), self.fixed_params)
        fixed = {k: np.asarray(v) for k, v in layout.fixed_values.items()}
        all_params = bayes.flat_draws(self.posterior_, fixed)
        pointwise = []
        chunk = 1000
        with float64():
            for start in range(0, chains * num, chunk):
                part = {k: jnp.asarray(v[start : start + chunk]) for k, v in all_params.items()}
                pointwise.append(np.asarray(bayes.over_draws(bayes.pointwise_log_likelihood, self.model_, part, self._jax(data))))
        log_lik = np.concatenate(pointwise)[:, observed].reshape(chains, num, -1)

        values = np.where(data.mask, data.values, np.nan)[observed]
        params = self._draw_params()
        K = len(next(iter(params.values())))
        keys = jax.random.split(jax.random.key(int(np.random.default_rng(self.random_state).integers(2**31))), K)
        with float64():
            replicated = np.asarray(
                bayes.over_draws(
                    posterior.observation_draws, self.model_, self._jax_params(params), self._jax(data), keys, num_draws=1
                )
            )[:, 0][:, observed]
        if D == 1:
            values, replicated = values[:, 0], replicated[..., 0]
        idata = az.from_dict(
            posterior=self.posterior_,
            sample_stats=self.sample_stats_,
            log_likelihood={"y": log_lik},
            posterior_predictive={"y": replicated[None]},
            observed_data={"y": values},
            prior=self._prior_draws,
            coords=coords,
            dims=dims,
            attrs={"inference_library": "numpyro", "tsssm_model": type(self).__name__, "chain_method": self.chain_method_},
        )
        return idata

    def _bayes_summary(self, hdi_prob: float = 0.94) -> pd.DataFrame:
        import arviz as az

        table = az.summary(self.to_arviz(), var_names=list(self.posterior_), hdi_prob=hdi_prob)
        table.index.name = "parameter"
        table.attrs.update(
            log_likelihood=self.log_likelihood_, nobs=self.nobs_, num_divergences=self.num_divergences_,
            method="nuts", note="log_likelihood at the posterior mean",
        )
        return table

    # ------------------------------------------------------------------ persistence
    def _bayes_arrays(self) -> dict:
        if not self._is_bayes():
            return {}
        out = {f"draw.{k}": v for k, v in self.posterior_.items()}
        out |= {f"stat.{k}": v for k, v in self.sample_stats_.items()}
        out |= {f"prior.{k}": v for k, v in self._prior_draws.items()}
        return out

    def _restore_bayes(self, document, arrays, model, meta, data):
        if document.get("method") != "nuts":
            return False
        pick = lambda prefix: {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}  # noqa: E731
        self._set_posterior(model, meta, data, pick("draw."), pick("stat."), pick("prior."), document.get("chain_method"))
        return True
