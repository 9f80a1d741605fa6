r"""Bayesian inference for linear-Gaussian state-space models: numpyro NUTS on the Kalman likelihood.

The numpyro model (:func:`numpyro_model`) draws every free parameter of a
:class:`~tsssm.inference.mle.ParamLayout` from a prior on its *constrained* value and adds the
exact diffuse log-likelihood of :func:`tsssm.inference.mle.log_likelihood` with
``numpyro.factor``: the latent states are integrated out by the Kalman filter, so NUTS moves only
in the (low-dimensional) parameter space.

Default priors (``s2`` is the sample variance of the observed values, averaged over columns,
``rms`` their root mean square; :class:`PriorScales`):

====================  ========================================================================
kind                  default prior
====================  ========================================================================
``"positive"``        ``HalfCauchy(s2)`` on the variance itself (weakly informative, finite
                      density at the zero boundary, heavy tail)
``"real"``            ``Normal(0, 10 rms)``
``"unit"``            ``Uniform(0, 1)``
``"interval"``        ``Uniform(a, b)`` on the parameter's bounds
``"stationary"``,     ``Uniform(-1, 1)`` on each partial autocorrelation, mapped to the
``"invertible"``      coefficients by Durbin-Levinson: uniform over the stationary
                      (invertible) region in the PACF parametrisation (Jones 1987)
``"covariance"``      ``LKJCholesky(n, 1)`` on the correlations (uniform over correlation
                      matrices) and ``HalfCauchy(s2)`` on each variance
``"stationary_var"``  ``Normal(0, 1)`` on the unconstrained blocks of the Ansley-Kohn map
                      (:mod:`tsssm.models.constraints`)
``"hurwitz"``         ``Normal(0, 2)`` on the logarithms of the factor coefficients
                      (:mod:`tsssm.models.constraints`)
====================  ========================================================================

A user prior (``priors={"sigma2_level": dist.HalfNormal(100.0)}``) is a numpyro distribution on
the constrained value, of the parameter's shape (a scalar distribution is expanded), with its
support inside the parameter's constraint. Two exceptions, where the constraint has no simple
support: a prior for a ``"stationary"``/``"invertible"`` parameter is a distribution of its
partial autocorrelations (support within (-1, 1)); ``"stationary_var"`` and ``"hurwitz"``
parameters take a distribution of their unconstrained vector.

Pointwise log-likelihood (:func:`pointwise_log_likelihood`): the term of an observed time point
is its one-step-ahead log predictive density :math:`\log p(y_t \mid y_{<t})`. The first
observations identify the diffuse initial states and have no proper predictive density; they
share equally the remainder :math:`\log L - \sum_{\text{other } t} \log p(y_t \mid y_{<t})`
(:math:`= -\log|\det M|` of :func:`tsssm.kernels.kalman.predictive_log_density`, 0 for a local
level or a local linear trend), so that the terms sum to the exact diffuse log-likelihood.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS, Predictive
from numpyro.infer.util import unconstrain_fn

from tsssm._config import jit
from tsssm.errors import DataError, NumericalError
from tsssm.inference import mle
from tsssm.kernels import kalman
from tsssm.models.constraints import ParamSpec, _pacf_to_ar, constrain, unconstrained_shape

#: Posterior draws that ``forecast``/``predict``/``smooth``/``score_samples`` integrate over
#: (evenly thinned from all chains).
MAX_DRAWS = 200


class PriorScales(NamedTuple):
    """Data scales of the default priors: ``variance`` (of the observed values) and ``rms``."""

    variance: float
    rms: float

    @classmethod
    def from_data(cls, data: mle.SeriesData) -> "PriorScales":
        values, mask = np.asarray(data.values, float), np.asarray(data.mask, bool)
        observed = np.where(mask, values, np.nan)
        variance = np.nanvar(observed, axis=0)
        variance = float(np.nanmean(np.where(np.isfinite(variance) & (variance > 0), variance, np.nan)))
        rms = float(np.sqrt(np.nanmean(observed**2)))
        variance = variance if np.isfinite(variance) and variance > 0 else 1.0
        return cls(variance, rms if np.isfinite(rms) and rms > 0 else 1.0)


def _site(name: str, suffix: str) -> str:
    return f"{name}__{suffix}"


def default_prior(spec: ParamSpec, scales: PriorScales) -> dist.Distribution:
    """The default prior of ``spec`` (see the module docstring), on the sampled quantity."""
    shape = tuple(spec.shape)
    kind = spec.kind
    if kind == "positive":
        base = dist.HalfCauchy(scales.variance)
    elif kind == "real":
        base = dist.Normal(0.0, 10.0 * scales.rms)
    elif kind == "unit":
        base = dist.Uniform(0.0, 1.0)
    elif kind == "interval":
        base = dist.Uniform(*map(float, spec.bounds))
    elif kind in ("stationary", "invertible"):
        base = dist.Uniform(-1.0, 1.0)
    elif kind == "stationary_var":
        base, shape = dist.Normal(0.0, 1.0), unconstrained_shape(spec)
    elif kind == "hurwitz":
        base = dist.Normal(0.0, 2.0)
    else:  # covariance: built in _sample_param
        raise ValueError(kind)
    return _expand(base, shape)


def _expand(d: dist.Distribution, shape: tuple) -> dist.Distribution:
    full = tuple(d.batch_shape) + tuple(d.event_shape)
    if full == tuple(shape):
        return d.to_event(len(d.batch_shape)) if d.batch_shape else d
    if full == ():
        return d.expand(shape).to_event(len(shape)) if shape else d
    raise ValueError(f"shape {full}, expected {tuple(shape)}")


def check_priors(layout: mle.ParamLayout, priors: dict | None) -> dict:
    """Validate user ``priors`` against the free parameters of ``layout``; returns them expanded."""
    priors = dict(priors or {})
    names = [s.name for s in layout.free]
    unknown = sorted(set(priors) - set(names))
    if unknown:
        fixed = sorted(set(unknown) & {s.name for s in layout.fixed})
        hint = f" ({fixed} are fixed by fixed_params)" if fixed else ""
        raise DataError(f"priors names {unknown} are not free parameters of this model{hint}; its free parameters are {names}")
    out = {}
    for spec in layout.free:
        if spec.name not in priors:
            continue
        prior = priors[spec.name]
        if not isinstance(prior, dist.Distribution):
            raise DataError(
                f"priors[{spec.name!r}] must be a numpyro distribution (e.g. numpyro.distributions.HalfNormal(100.0)), "
                f"got {type(prior).__name__}"
            )
        shape = unconstrained_shape(spec) if spec.kind in ("stationary_var", "hurwitz") else tuple(spec.shape)
        try:
            out[spec.name] = _expand(prior, shape)
        except ValueError as exc:
            raise DataError(f"priors[{spec.name!r}] has {exc}: the parameter's shape (or a scalar distribution)") from None
    return out


def _sample_param(spec: ParamSpec, prior: dist.Distribution | None, scales: PriorScales):
    """numpyro sample site(s) for one parameter; returns its constrained value."""
    name, kind = spec.name, spec.kind
    if kind == "covariance":
        if prior is not None:
            return numpyro.sample(name, prior)
        n = spec.shape[0]
        variances = numpyro.sample(_site(name, "variances"), _expand(dist.HalfCauchy(scales.variance), (n,)))
        corr = numpyro.sample(_site(name, "corr_cholesky"), dist.LKJCholesky(n, 1.0))
        factor = jnp.sqrt(variances)[:, None] * corr
        return numpyro.deterministic(name, factor @ factor.T)
    prior = default_prior(spec, scales) if prior is None else prior
    if kind in ("stationary", "invertible"):
        pacf = numpyro.sample(_site(name, "pacf"), prior)
        phi = _pacf_to_ar(pacf)
        return numpyro.deterministic(name, phi if kind == "stationary" else -phi)
    if kind in ("stationary_var", "hurwitz"):
        x = numpyro.sample(_site(name, "unconstrained"), prior)
        return numpyro.deterministic(name, constrain(spec, x))
    return numpyro.sample(name, prior)


def prior_model(layout: mle.ParamLayout, priors: dict, scales: PriorScales) -> dict:
    """Draw every free parameter from its prior; returns all constrained parameters (fixed included)."""
    params = dict(layout.fixed_values)
    for spec in layout.free:
        params[spec.name] = _sample_param(spec, priors.get(spec.name), scales)
    return params


def numpyro_model(model, layout: mle.ParamLayout, data: mle.SeriesData, priors: dict, scales: PriorScales):
    """Priors on the free parameters plus the exact diffuse log-likelihood as a ``numpyro.factor``."""
    params = prior_model(layout, priors, scales)
    numpyro.factor("log_likelihood", mle.log_likelihood(model, params, data))


def _sampled_start(spec: ParamSpec, value, prior_given: bool, scales: PriorScales) -> dict:
    """Values of the sample sites of ``spec`` at the constrained ``value`` (for the initial point)."""
    value = np.asarray(value, float)
    name, kind = spec.name, spec.kind
    if kind == "positive":
        return {name: np.maximum(value, 1e-3 * scales.variance)}
    if kind in ("stationary", "invertible"):
        from tsssm.models.constraints import unconstrain

        x = unconstrain(spec, value)
        return {_site(name, "pacf"): np.clip(x / np.sqrt(1.0 + x**2), -0.95, 0.95)}
    if kind in ("stationary_var", "hurwitz"):
        from tsssm.models.constraints import unconstrain

        return {_site(name, "unconstrained"): unconstrain(spec, value)}
    if kind == "covariance" and not prior_given:
        sd = np.sqrt(np.maximum(np.diagonal(value), 1e-3 * scales.variance))
        corr = value / np.outer(np.sqrt(np.maximum(np.diagonal(value), 1e-300)), np.sqrt(np.maximum(np.diagonal(value), 1e-300)))
        corr = 0.9 * corr + 0.1 * np.eye(len(sd))
        return {_site(name, "variances"): sd**2, _site(name, "corr_cholesky"): np.linalg.cholesky(corr)}
    if kind in ("unit", "interval"):
        low, high = (0.0, 1.0) if kind == "unit" else spec.bounds
        return {name: np.clip(value, low + 0.01 * (high - low), high - 0.01 * (high - low))}
    return {name: value}


def choose_chain_method(num_chains: int) -> str:
    """``"parallel"`` when JAX sees a device per chain, else ``"vectorized"``.

    On CPU, JAX sees one device unless ``numpyro.set_host_device_count(n)`` (or
    ``XLA_FLAGS=--xla_force_host_platform_device_count=n``) ran before JAX started. Without it,
    ``"vectorized"`` (all chains in one vmapped program) was faster than ``"sequential"`` on the
    2-core development machine (``docs/bayesian.md``).
    """
    if num_chains <= 1:
        return "sequential"
    return "parallel" if jax.local_device_count() >= num_chains else "vectorized"


class NUTSResult(NamedTuple):
    """Outcome of :func:`fit`.

    ``draws``: free parameter name -> constrained draws ``(chains, draws, *shape)``;
    ``stats``: sample statistics ``(chains, draws)`` named as arviz names them
    (``diverging``, ``energy``, ``lp``, ``n_steps``, ``acceptance_rate``, ``step_size``);
    ``prior_draws``: name -> ``(1, num_prior, *shape)``; ``chain_method`` used.
    """

    draws: dict
    stats: dict
    prior_draws: dict
    chain_method: str


_STAT_NAMES = {
    "diverging": "diverging",
    "energy": "energy",
    "potential_energy": "lp",
    "num_steps": "n_steps",
    "accept_prob": "acceptance_rate",
    "adapt_state.step_size": "step_size",
}


def fit(
    model,
    data: mle.SeriesData,
    *,
    fixed_params=None,
    priors=None,
    start_params=None,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    random_state=None,
    chain_method: str | None = None,
    scales: PriorScales | None = None,
    num_prior_draws: int = 500,
    progress_bar: bool = False,
) -> NUTSResult:
    """Posterior draws of the free parameters of ``model`` by NUTS (call under :func:`tsssm._config.float64`).

    Parameters
    ----------
    model : a model following the protocol of :mod:`tsssm.models.lgssm`.
    data : SeriesData
        One series (JAX arrays).
    fixed_params : dict, optional
        Parameters held at given constrained values (not sampled).
    priors : dict, optional
        Name -> numpyro distribution, overriding the defaults (module docstring).
    start_params : dict, optional
        Constrained values near which the chains start (default ``model.start_params``; each
        chain is jittered in the unconstrained space).
    num_warmup, num_samples, num_chains : int
    random_state : int, optional
    chain_method : {"parallel", "vectorized", "sequential"}, optional
        Default :func:`choose_chain_method`.
    scales : PriorScales, optional
        Scales of the default priors (default: from ``data``).
    num_prior_draws : int
        Draws from the prior (for ``to_arviz``'s ``prior`` group).

    Returns
    -------
    NUTSResult
    """
    layout = mle.ParamLayout.build(model.param_specs(), fixed_params)
    if layout.size == 0:
        raise DataError("every parameter is fixed by fixed_params: there is nothing to sample; use method='mle'")
    priors = check_priors(layout, priors)
    scales = PriorScales.from_data(data) if scales is None else scales
    chain_method = choose_chain_method(num_chains) if chain_method is None else chain_method
    seed = int(np.random.default_rng(random_state).integers(2**31))
    key_init, key_run, key_prior = jax.random.split(jax.random.key(seed), 3)

    np_data = mle.SeriesData(*(None if a is None else np.asarray(a) for a in data))
    start = model.start_params(np.where(np_data.mask, np_data.values, np.nan), np_data.inputs)
    start |= dict(start_params or {})
    sites = {}
    for spec in layout.free:
        sites |= _sampled_start(spec, start[spec.name], spec.name in priors, scales)
    args = (model, layout, data, priors, scales)
    unconstrained = unconstrain_fn(numpyro_model, args, {}, {k: jnp.asarray(v) for k, v in sites.items()})
    keys = jax.random.split(key_init, len(unconstrained))
    init = {
        k: v + 0.1 * jax.random.normal(kk, (num_chains,) + jnp.shape(v), jnp.result_type(float))
        for kk, (k, v) in zip(keys, sorted(unconstrained.items()))
    }
    if num_chains == 1:
        init = {k: v[0] for k, v in init.items()}

    mcmc = MCMC(
        # few parameters: forward-mode gradients (see mle.FORWARD_GRADIENT_MAX_PARAMS)
        NUTS(numpyro_model, forward_mode_differentiation=layout.size <= mle.FORWARD_GRADIENT_MAX_PARAMS),
        num_warmup=int(num_warmup), num_samples=int(num_samples), num_chains=int(num_chains),
        chain_method=chain_method, progress_bar=progress_bar,
    )
    mcmc.run(key_run, *args, init_params=init, extra_fields=tuple(_STAT_NAMES))
    samples = mcmc.get_samples(group_by_chain=True)
    draws = {s.name: np.asarray(samples[s.name], float) for s in layout.free}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    stats = {_STAT_NAMES[k]: np.asarray(v) for k, v in extra.items()}
    stats["lp"] = -stats["lp"]
    if not all(np.all(np.isfinite(v)) for v in draws.values()):
        raise NumericalError("NUTS produced non-finite parameter draws; check the priors and the data scale")

    prior_fn = Predictive(lambda: prior_model(layout, priors, scales), num_samples=int(num_prior_draws))
    prior_all = prior_fn(key_prior)
    prior_draws = {s.name: np.asarray(prior_all[s.name], float)[None] for s in layout.free}
    return NUTSResult(draws, stats, prior_draws, chain_method)


# ---------------------------------------------------------------------- functions of the draws
def thinned_indexes(num_chains: int, num_draws: int, max_draws: int = MAX_DRAWS) -> np.ndarray:
    """Evenly spaced positions in the chain-major flattened draws, at most ``max_draws`` of them."""
    total = num_chains * num_draws
    if total <= max_draws:
        return np.arange(total)
    return np.unique(np.linspace(0, total - 1, max_draws).round().astype(int))


def flat_draws(draws: dict, fixed_values: dict, take=None) -> dict:
    """Draws ``(chains, draws, ...)`` -> ``(n, ...)`` (rows ``take``), fixed parameters broadcast."""
    flat = {k: np.reshape(v, (-1,) + v.shape[2:]) for k, v in draws.items()}
    if take is not None:
        flat = {k: v[take] for k, v in flat.items()}
    n = len(next(iter(flat.values())))
    for k, v in fixed_values.items():
        flat[k] = np.broadcast_to(np.asarray(v, float), (n,) + np.shape(v))
    return flat


@jit
def over_draws(fn, model, params: dict, data: mle.SeriesData, *batched, **static):
    """``fn(model, params_k, data, *batched_k, **static)`` for every draw k (leading axis of ``params``), vmapped."""
    return jax.vmap(lambda p, *b: fn(model, p, data, *b, **static))(params, *batched)


def pointwise_log_likelihood(model, params: dict, data: mle.SeriesData) -> jax.Array:
    """Per-step log-likelihood terms (T,) that sum to the exact diffuse log-likelihood.

    Observed steps get their one-step-ahead log predictive density; the observed steps of the
    diffuse burn-in share the remainder equally (module docstring); unobserved steps get 0.
    """
    arrays, init = model.system(params, data.times, data.inputs)
    result = kalman.kalman_filter(arrays, init, data.values, data.mask)
    density = kalman.predictive_log_density(result, arrays, data.values, data.mask)
    total = mle.log_likelihood(model, params, data)
    observed = jnp.any(data.mask, axis=-1)
    burn_in = observed & jnp.isnan(density)
    proper = jnp.where(observed & ~burn_in, density, 0.0)
    share = (total - jnp.sum(proper)) / jnp.maximum(jnp.sum(burn_in), 1)
    return jnp.where(burn_in, share, proper)


def total_log_likelihood(model, params: dict, data: mle.SeriesData) -> jax.Array:
    return mle.log_likelihood(model, params, data)


__all__ = [
    "MAX_DRAWS",
    "NUTSResult",
    "PriorScales",
    "check_priors",
    "choose_chain_method",
    "default_prior",
    "fit",
    "flat_draws",
    "numpyro_model",
    "over_draws",
    "pointwise_log_likelihood",
    "prior_model",
    "thinned_indexes",
]
