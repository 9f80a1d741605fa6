r"""Variational learning and importance-weighted evaluation of latent ODE and latent SDE models.

Batches (:class:`LatentBatch`) hold per-series time grids: ``times (B, T)`` measured from each
series' first time in units of the median training gap, with padding after a series' end set to
its last time (so a padded grid asks the solver for nothing new), ``y, mask (B, T, D)`` and
``valid (B, T)``.

ELBO of one series (Rubanova et al. 2019; Li et al. 2020 for the SDE), one reparameterised draw:

.. math::

    \mathcal L = \sum_{k:\,\text{valid}} \log p(y_k^{\text{obs}} \mid z(t_k))
        - \beta\,\Big[\mathrm{KL}\big(q(z_1 \mid y_{1:T}) \,\|\, \mathcal N(0, I)\big)
        + \underbrace{\textstyle\int \tfrac12 |(f_\psi - f_\theta)/g|^2 dt}_{\text{SDE only}}\Big].

Training reuses :func:`tsssm.inference.svi.fit` (numpyro SVI with optax Adam, fixed-shape
minibatches compiled once, KL annealing, early stopping) with the objectives
:func:`ode_objective` and :func:`sde_objective`.

Evaluation draws K particles (:math:`z_1` from the guide, and for the SDE a posterior path) with
importance weights :math:`w = p(z_1)/q(z_1) \cdot dP/dQ(\text{path})`, and reads the
likelihood, per-step predictive densities and forecasts from them (:func:`sequential_scores`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from tsssm._config import jit
from tsssm.models.deep_markov import gaussian_kl
from tsssm.models.latent_ode import LatentODENetwork, LatentSDENetwork, euler_maruyama


class LatentBatch(NamedTuple):
    """Padded series on their own time grids (see the module docstring); float32 and bool."""

    times: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    valid: np.ndarray

    def take(self, index) -> LatentBatch:
        return LatentBatch(*(np.asarray(a)[index] for a in self))


def as_batch(times, y, mask, valid) -> LatentBatch:
    return LatentBatch(np.asarray(times, np.float32), np.asarray(y, np.float32), np.asarray(mask, bool),
                       np.asarray(valid, bool))


def _std_normal_logpdf(z):
    return -0.5 * jnp.sum(z**2, axis=-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def _normal_logpdf(z, loc, scale):
    return _std_normal_logpdf((z - loc) / scale) - jnp.sum(jnp.log(scale), axis=-1)


def _emission_terms(net, zs, y, mask, valid):
    """Per-step log-likelihood ``(T,)`` and emission means and variances ``(T, D)`` along a path."""
    observed = mask & valid[:, None]
    ll = jax.vmap(net.emission.log_prob)(zs, y, observed)
    mean, var = jax.vmap(net.emission.moments)(zs)
    return ll, mean, var


# --------------------------------------------------------------------------- paths
class Paths(NamedTuple):
    """Latent paths of one series: ``z (T, Z)``, initial log weight :math:`\\log p(z_1)/q(z_1)`,
    per-gap path KL and log density ratio ``(T,)`` (0 for the ODE), and ``ok`` (solve succeeded)."""

    z: jax.Array
    log_w0: jax.Array
    kl0: jax.Array
    kl_path: jax.Array
    log_ratio: jax.Array
    ok: jax.Array


def ode_paths(net: LatentODENetwork, times, y, mask, valid, key, num: int) -> Paths:
    """``num`` posterior draws of the latent ODE path of one series (leading axis ``num``)."""
    loc, scale, _ = net.posterior(times, y, mask, valid)
    z0 = loc + scale * jax.random.normal(key, (num, loc.shape[0]), loc.dtype)
    zs, ok = jax.vmap(net.trajectory, in_axes=(0, None))(z0, times)
    zeros = jnp.zeros((num, times.shape[0]), zs.dtype)
    log_w0 = _std_normal_logpdf(z0) - _normal_logpdf(z0, loc, scale)
    kl0 = jnp.broadcast_to(gaussian_kl(loc, scale, jnp.zeros_like(loc), jnp.ones_like(scale)), (num,))
    return Paths(zs, log_w0, kl0, zeros, zeros, ok)


def sde_paths(net: LatentSDENetwork, times, y, mask, valid, key, num: int, substeps: int) -> Paths:
    """``num`` posterior paths of the latent SDE of one series, ``substeps`` Euler-Maruyama steps per gap."""
    loc, scale, hs = net.posterior(times, y, mask, valid)
    k0, k1 = jax.random.split(key)
    z0 = loc + scale * jax.random.normal(k0, (num, loc.shape[0]), loc.dtype)

    def one(z, k):
        return euler_maruyama(net.drift_posterior, net.prior_drift, net.diffusion(), z, times, hs, k, substeps)

    zs, kl, log_ratio = jax.vmap(one)(z0, jax.random.split(k1, num))
    log_w0 = _std_normal_logpdf(z0) - _normal_logpdf(z0, loc, scale)
    kl0 = jnp.broadcast_to(gaussian_kl(loc, scale, jnp.zeros_like(loc), jnp.ones_like(scale)), (num,))
    return Paths(zs, log_w0, kl0, kl, log_ratio, jnp.all(jnp.isfinite(zs), axis=(1, 2)))


def _paths(net, times, y, mask, valid, key, num, substeps):
    if isinstance(net, LatentSDENetwork):
        return sde_paths(net, times, y, mask, valid, key, num, substeps)
    return ode_paths(net, times, y, mask, valid, key, num)


# ---------------------------------------------------------------------------- ELBO
def elbo_terms(net, times, y, mask, valid, key):
    """Per-step log-likelihood ``(T,)`` and total KL (scalar) of one series, one posterior draw
    (a latent SDE takes the ``substeps`` it was built with)."""
    substeps = net.substeps if isinstance(net, LatentSDENetwork) else 1
    paths = _paths(net, times, y, mask, valid, key, 1, substeps)
    ll, _, _ = _emission_terms(net, paths.z[0], y, mask, valid)
    return ll, paths.kl0[0] + jnp.sum(paths.kl_path[0])


def batch_elbo_terms(net, batch: LatentBatch, key):
    """:func:`elbo_terms` of every series (series b uses ``split(key, B)[b]``): ``(B, T)`` and ``(B,)``."""
    keys = jax.random.split(key, batch.times.shape[0])
    return jax.vmap(elbo_terms, in_axes=(None, 0, 0, 0, 0, 0))(net, *batch, keys)


def objective(net, batch: LatentBatch, key, beta):
    """Annealed ELBO per valid step of a minibatch, and the number of valid steps (for :func:`svi.fit`)."""
    ll, kl = batch_elbo_terms(net, batch, key)
    steps = jnp.maximum(jnp.sum(batch.valid), 1)
    return (jnp.sum(ll) - beta * jnp.sum(kl)) / steps, steps


# ------------------------------------------------------------------- importance weights
class Evaluation(NamedTuple):
    """Per series: ``scores (T,)`` (:math:`-\\log \\hat p(y_k \\mid y_{<k})`, 0 where nothing is
    observed), one-step predictive ``pred_mean, pred_var (T, D)``, the particles' latent states at
    the last valid time ``z_last (K, Z)``, their initial states ``z_first (K, Z)``, final normalised
    log weights ``(K,)`` and ``ok`` (every solve succeeded)."""

    scores: jax.Array
    pred_mean: jax.Array
    pred_var: jax.Array
    z_last: jax.Array
    z_first: jax.Array
    log_weights: jax.Array
    ok: jax.Array


def sequential_scores(log_w0, log_ratio, ll, mean, var, observed):
    r"""Per-step predictive densities and moments from importance-weighted particles.

    With :math:`A_k^{(i)} = \log w_0^{(i)} + \sum_{j \le k} (\log r_j^{(i)} + \ell_j^{(i)})` (the
    log weight after step k; :math:`r` the path density ratio, :math:`\ell` the log-likelihood),
    the log predictive density of step k is :math:`L_k - L_{k'}` with
    :math:`L_k = \log \frac1K \sum_i e^{A_k^{(i)}}`, :math:`k'` the previous observed step and
    :math:`L_0 = 0`; so the per-step terms add up to :math:`L_T`, the log of the importance
    sampling estimate of :math:`p(y_{1:T})` (unbiased for the likelihood, a lower bound in
    expectation for its log). The predictive moments at step k use the weights before
    :math:`y_k` is seen.

    Parameters
    ----------
    log_w0 : (K,)
    log_ratio, ll : (K, T)
    mean, var : (K, T, D)
        Emission moments along each particle's path.
    observed : (T,) bool
        Steps with at least one observed entry.

    Returns
    -------
    scores (T,), pred_mean (T, D), pred_var (T, D), final normalised log weights (K,)
    """
    K = log_w0.shape[0]
    before = log_w0[:, None] + jnp.cumsum(log_ratio + ll, axis=1) - ll  # (K, T): weights before y_k
    after = before + ll
    L = jax.nn.logsumexp(after, axis=0) - math.log(K)

    def carry_previous(prev, inp):
        L_k, obs = inp
        return jnp.where(obs, L_k, prev), prev

    _, previous = jax.lax.scan(carry_previous, jnp.zeros((), L.dtype), (L, observed))
    scores = jnp.where(observed, previous - L, 0.0)
    w = jax.nn.softmax(before, axis=0)[:, :, None]  # (K, T, 1)
    pred_mean = jnp.sum(w * mean, axis=0)
    pred_var = jnp.maximum(jnp.sum(w * (var + mean**2), axis=0) - pred_mean**2, 0.0)
    return scores, pred_mean, pred_var, jax.nn.log_softmax(after[:, -1])


def evaluate(net, times, y, mask, valid, key, num_particles: int, substeps: int) -> Evaluation:
    """Importance-weighted evaluation of one series with ``num_particles`` particles (see
    :func:`sequential_scores`); a latent SDE takes ``substeps`` Euler-Maruyama steps per gap."""
    paths = _paths(net, times, y, mask, valid, key, num_particles, substeps)
    ll, mean, var = jax.vmap(_emission_terms, in_axes=(None, 0, None, None, None))(net, paths.z, y, mask, valid)
    observed = valid & jnp.any(mask, axis=1)
    scores, pmean, pvar, logw = sequential_scores(paths.log_w0, paths.log_ratio, ll, mean, var, observed)
    last = jnp.maximum(jnp.sum(valid) - 1, 0)
    ok = jnp.all(paths.ok) & jnp.all(jnp.isfinite(scores))
    return Evaluation(scores, pmean, pvar, paths.z[:, last], paths.z[:, 0], logw, ok)


@jit
def batch_evaluate(net, batch: LatentBatch, key, num_particles: int, substeps: int) -> Evaluation:
    """:func:`evaluate` of every series (series b uses ``split(key, B)[b]``)."""
    keys = jax.random.split(key, batch.times.shape[0])
    return jax.vmap(evaluate, in_axes=(None, 0, 0, 0, 0, 0, None, None))(net, *batch, keys, num_particles, substeps)


# ------------------------------------------------------------------------ forecasting
def _emit(net, zs, key):
    """Draws ``(n, h, D)`` and emission means ``(n, h, D)`` along latent paths ``zs (n, h, Z)``."""
    keys = jax.random.split(key, zs.shape[0] * zs.shape[1]).reshape(zs.shape[0], zs.shape[1])
    draws = jax.vmap(jax.vmap(net.emission.sample))(zs, keys)
    return draws, jax.vmap(jax.vmap(net.emission.location))(zs)


def ode_forecast(net: LatentODENetwork, evaluation: Evaluation, future, key, num_draws: int):
    """Draws of one series at ``future (h,)`` times (on the series' own clock) from its particles.

    Initial states are resampled with the final importance weights; each drawn latent path is
    solved from time 0 through the future times. Returns draws and emission means
    ``(num_draws, h, D)`` and the success flag of the solves.
    """
    k0, k1 = jax.random.split(key)
    z0 = evaluation.z_first[jax.random.categorical(k0, evaluation.log_weights, shape=(num_draws,))]
    zs, ok = jax.vmap(net.trajectory, in_axes=(0, None))(z0, future)
    draws, means = _emit(net, zs, k1)
    return draws, means, jnp.all(ok)


def sde_forecast(net: LatentSDENetwork, evaluation: Evaluation, last_time, future, key, num_draws: int, substeps: int):
    """Draws of one series at ``future (h,)`` times: prior SDE paths from its resampled final states.

    Each path starts at a particle's state at ``last_time`` (resampled with the final importance
    weights) and follows the prior SDE with fresh Brownian increments (``substeps`` steps per gap).
    """
    k0, k1, k2 = jax.random.split(key, 3)
    z = evaluation.z_last[jax.random.categorical(k0, evaluation.log_weights, shape=(num_draws,))]
    grid = jnp.concatenate([last_time[None], future])
    no_context = jnp.zeros((grid.shape[0], 0), z.dtype)

    def prior_path(z0, k):
        zs, _, _ = euler_maruyama(lambda zz, c: net.prior_drift(zz), net.prior_drift, net.diffusion(), z0, grid,
                                  no_context, k, substeps)
        return zs[1:]

    zs = jax.vmap(prior_path)(z, jax.random.split(k1, num_draws))
    draws, means = _emit(net, zs, k2)
    return draws, means, jnp.all(jnp.isfinite(zs))


@jit
def batch_forecast(net, evaluation: Evaluation, last_time, future, key, num_draws: int, substeps: int):
    """Forecast draws of every series: ``future (B, h)``, ``last_time (B,)`` -> ``(B, num_draws, h, D)`` x 2, ok ``(B,)``."""
    keys = jax.random.split(key, future.shape[0])
    if isinstance(net, LatentSDENetwork):
        return jax.vmap(sde_forecast, in_axes=(None, 0, 0, 0, 0, None, None))(
            net, evaluation, last_time, future, keys, num_draws, substeps)
    return jax.vmap(ode_forecast, in_axes=(None, 0, 0, 0, None))(net, evaluation, future, keys, num_draws)
