r"""Variational learning of deep state-space models: ELBO, numpyro SVI training loop, particle filter.

Everything works on padded float32 batches (:class:`SequenceBatch`): ``y (B, T, D)``,
``mask (B, T, D)`` (True = observed), ``delta (B, T)`` (time gap before each step in units of the
typical training gap) and ``valid (B, T)`` (False on padding after a series' end).

ELBO (per series, Krishnan et al. 2017, with the structured guide of
:mod:`tsssm.models.deep_markov`):

.. math::

    \mathcal L = \sum_{k:\,\text{valid}} \mathbb E_q\big[\log p(y_k^{\text{obs}} \mid z_k)\big]
        - \beta\,\mathbb E_q\big[\mathrm{KL}\big(q(z_k \mid z_{k-1}, y_{k:T}) \,\|\,
        p(z_k \mid z_{k-1}, \delta_k)\big)\big]

estimated with one reparameterised trajectory from the guide; the per-step KL between the two
diagonal Gaussians is analytic given the sampled :math:`z_{k-1}`. :math:`\beta \le 1` is the KL
annealing factor (1 = the true ELBO). Masked entries contribute nothing (their values are never
read), padded steps contribute nothing and leave the latent state unchanged, and each step's noise
comes from ``fold_in(key_b, k)``, so padding a series never changes its ELBO estimate.

Training runs numpyro's :class:`~numpyro.infer.SVI` with ``Trace_ELBO``: each weight array of the
network is one ``numpyro.param`` site (registered outside any scan), and the structured ELBO above,
computed by a plain ``lax.scan``, enters the numpyro model as one ``numpyro.factor`` with an empty
numpyro guide (the guide's sampling lives inside the factor). This avoids
``numpyro.contrib.control_flow.scan`` and its known failure modes (see PITFALLS) while keeping
numpyro's optimiser plumbing. The annealing factor is an ordinary array argument: it never reaches
a numpyro handler, so it causes neither tracer errors nor recompilation.

Evaluation (:func:`particle_filter`) runs a sequential Monte Carlo filter with the guide as
proposal and multinomial resampling at each observed step; see its docstring.
"""

from __future__ import annotations

import math
import time
from functools import partial
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
from numpyro.infer import SVI, Trace_ELBO

from tsssm._config import jit, jit_options
from tsssm.inference.batching import (  # noqa: F401 (svi.as_batch)
    EarlyStopping,
    SequenceBatch,
    as_batch,
    chunks,
    epoch_order,
    run_epoch,
    with_empty,
)
from tsssm.inference.network_mle import network_from_leaves, network_leaves, split_network  # noqa: F401 (svi.network_*)
from tsssm.models.deep_markov import DeepMarkovNetwork, gaussian_kl


def _normal_logpdf(x, loc, scale):
    return jnp.sum(-0.5 * ((x - loc) / scale) ** 2 - jnp.log(scale) - 0.5 * math.log(2 * math.pi), axis=-1)


# ---------------------------------------------------------------------------------------- ELBO
def elbo_terms(net: DeepMarkovNetwork, y, mask, delta, valid, key):
    """Per-step expected log-likelihood and KL of one series (``(T,)`` each, 0 on padding)."""
    hs = net.guide_states(y, mask, delta, valid)
    steps = jnp.arange(y.shape[0])

    def step(z, inp):
        y_t, m_t, d_t, ok, h_t, t = inp
        q_loc, q_scale = net.combiner(z, h_t)
        z_new = q_loc + q_scale * jax.random.normal(jax.random.fold_in(key, t), q_loc.shape)
        p_loc, p_scale = net.transition(z, d_t)
        kl = gaussian_kl(q_loc, q_scale, p_loc, p_scale)
        ll = net.emission.log_prob(z_new, y_t, m_t)
        return jnp.where(ok, z_new, z), (jnp.where(ok, ll, 0.0), jnp.where(ok, kl, 0.0))

    _, (ll, kl) = jax.lax.scan(step, net.z0, (y, mask, delta, valid, hs, steps))
    return ll, kl


def batch_elbo_terms(net, batch: SequenceBatch, key):
    """:func:`elbo_terms` of every series of a batch: ``(B, T)`` each (series b uses ``split(key, B)[b]``)."""
    keys = jax.random.split(key, batch.y.shape[0])
    return jax.vmap(elbo_terms, in_axes=(None, 0, 0, 0, 0, 0))(net, *batch, keys)


@jit
def batch_elbo(net, batch: SequenceBatch, key):
    """Per-series ELBO estimates ``(B,)`` (beta = 1)."""
    ll, kl = batch_elbo_terms(net, batch, key)
    return jnp.sum(ll - kl, axis=1)


def _objective(net, batch, key, beta):
    ll, kl = batch_elbo_terms(net, batch, key)
    steps = jnp.maximum(jnp.sum(batch.valid), 1)
    return jnp.sum(ll - beta * kl) / steps, steps


# ------------------------------------------------------------------------------ numpyro SVI
def _param_names(count: int) -> list[str]:
    return [f"dmm.w{i:03d}" for i in range(count)]


def _svi_model(batch, beta, *, leaves, treedef, static, objective):
    # one param site per weight array, registered outside any scan (see PITFALLS: numpyro)
    params = [numpyro.param(name, leaf) for name, leaf in zip(_param_names(len(leaves)), leaves)]
    net = eqx.combine(jax.tree_util.tree_unflatten(treedef, params), static)
    value, _ = objective(net, batch, numpyro.prng_key(), beta)
    numpyro.factor("structured_elbo", value)


def _svi_guide(batch, beta):
    """Empty numpyro guide: the structured guide's sampling happens inside the model's factor."""


_COMPILED: dict = {}


def _compiled(leaves, treedef, static, learning_rate: float, clip_norm: float, batch, objective, weight_decay=0.0, lr_decay=1.0):
    """numpyro SVI object, compiled update and evaluation for one network structure and batch shape.

    Cached at module level (a few entries): refitting a network of the same structure on batches
    of the same shape (``clone(model).fit``, cross-validation) compiles nothing. The cached SVI
    model closes over the first network's weights only as unused ``numpyro.param`` defaults;
    each fit starts from its own weights through ``svi.init(..., init_params=...)``.
    """
    shapes = tuple((a.shape, str(a.dtype)) for a in batch) + tuple((x.shape, str(x.dtype)) for x in leaves)
    key = (objective, treedef, static, learning_rate, clip_norm, weight_decay, lr_decay, shapes)
    if key in _COMPILED:
        return _COMPILED[key]
    model = partial(_svi_model, leaves=leaves, treedef=treedef, static=static, objective=objective)
    schedule = learning_rate if lr_decay == 1.0 else optax.exponential_decay(learning_rate, 1, lr_decay)
    optimizer = numpyro.optim.optax_to_numpyro(
        optax.chain(optax.clip_by_global_norm(clip_norm), optax.add_decayed_weights(weight_decay), optax.adam(schedule))
    )
    svi = SVI(model, _svi_guide, optimizer, Trace_ELBO())
    names = _param_names(len(leaves))
    # jitted (and cached with the update): run eagerly, numpyro's init would trace the model anew and
    # compile each of its inner jitted pieces (scans, ODE solves) on every fit
    init = jax.jit(svi.init, **jit_options())
    state = init(jax.random.key(0), batch, jnp.float32(1.0), init_params=dict(zip(names, leaves)))
    update = jax.jit(svi.update, **jit_options()).lower(state, batch, jnp.float32(1.0)).compile()

    def to_net(params):
        return eqx.combine(jax.tree_util.tree_unflatten(treedef, [params[k] for k in names]), static)

    def evaluate(params, batch, key):
        value, steps = objective(to_net(params), batch, key, 1.0)
        return -value * steps, steps

    evaluate = jax.jit(evaluate, **jit_options())  # not compiled ahead: validation series may be padded to another length
    if len(_COMPILED) >= 8:
        _COMPILED.pop(next(iter(_COMPILED)))
    _COMPILED[key] = (svi, init, update, evaluate, to_net)
    return _COMPILED[key]


class FitResult(NamedTuple):
    network: eqx.Module
    history: list  # per epoch: dict(epoch, train, valid, seconds, beta)
    compile_seconds: float
    train_seconds: float
    num_updates: int
    sequence_steps: int  # valid (series x time) steps processed by the updates
    stopped: str
    train_elbo: float  # ELBO per valid step of the training series with the returned weights (one draw)


def kl_schedule(epoch: int, anneal_epochs: int, start: float) -> float:
    """KL annealing factor of an epoch: linear from ``start`` to 1 over ``anneal_epochs`` epochs (static)."""
    if anneal_epochs <= 0:
        return 1.0
    return float(min(1.0, start + (1.0 - start) * epoch / anneal_epochs))


def fit(
    net: eqx.Module,
    train,
    valid=None,
    *,
    batch_size: int = 16,
    max_epochs: int = 100,
    learning_rate: float = 3e-3,
    clip_norm: float = 10.0,
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
    kl_anneal_epochs: int = 0,
    kl_anneal_start: float = 0.1,
    patience: int = 10,
    max_seconds: float | None = None,
    seed: int = 0,
    verbose: bool | int = False,
    eval_every: int = 1,
    objective=None,
    name: str = "DeepMarkovModel",
) -> FitResult:
    """Maximise the ELBO of ``train`` with numpyro SVI (optax Adam after global-norm clipping).

    ``weight_decay`` adds ``weight_decay * w`` to the (clipped) gradient of every weight ``w`` (an
    L2 penalty on the per-step loss, as in Pyro's ClippedAdam); ``lr_decay`` multiplies the
    learning rate after every update (e.g. 0.9999).

    Minibatches hold a fixed number of series (``min(batch_size, N)``); the last one of an epoch is
    padded with empty (all-invalid) series, so the update compiles once. With ``valid`` the
    negative ELBO per step of the validation series is computed every ``eval_every`` epochs, the
    best weights are kept and training stops after ``patience`` evaluations without improvement
    (counted only after the KL annealing, during which the validation ELBO may get worse).
    ``max_seconds`` bounds the training time (checked after every update).

    ``objective(net, batch, key, beta) -> (annealed ELBO per valid step, valid steps)`` is the
    quantity maximised (default: the deep Markov model's structured ELBO); any batch type works
    whose fields share a leading series axis, with a ``valid (B, T)`` field and a ``take`` method
    (e.g. :class:`SequenceBatch`). ``name`` prefixes the progress lines.
    """
    objective = _objective if objective is None else objective
    rng = np.random.default_rng(seed)
    n = train.valid.shape[0]
    m = int(min(batch_size, n))
    padded_train = with_empty(train)
    leaves, treedef, static = split_network(net)
    names = _param_names(len(leaves))
    first = padded_train.take(np.arange(m))
    t0 = time.perf_counter()
    svi, init, update, evaluate, to_net = _compiled(
        leaves, treedef, static, float(learning_rate), float(clip_norm), first, objective, float(weight_decay), float(lr_decay)
    )
    compile_seconds = time.perf_counter() - t0
    state = init(jax.random.key(seed), first, jnp.float32(1.0), init_params=dict(zip(names, leaves)))

    def loss_of(data, params, eval_key) -> float:
        total, count = 0.0, 0
        padded = with_empty(data)
        for idx in chunks(data.valid.shape[0], m):
            value, steps = evaluate(params, padded.take(idx), eval_key)
            total += float(value)
            count += int(steps)
        return total / max(count, 1)

    history, tracker = [], EarlyStopping(patience)
    num_updates, seq_steps, stopped = 0, 0, "max_epochs"
    t_start = time.perf_counter()
    deadline = None if max_seconds is None else t_start + max_seconds
    eval_key = jax.random.key(seed + 1)
    for epoch in range(max_epochs):
        beta = jnp.float32(kl_schedule(epoch, kl_anneal_epochs, kl_anneal_start))
        result = run_epoch(
            lambda st, batch: update(st, batch, beta), state, padded_train, epoch_order(rng, n, m), m, epoch, deadline
        )
        state, train_loss = result.state, result.loss
        num_updates += result.updates
        seq_steps += result.steps
        stopped = "max_seconds" if result.out_of_time else stopped
        record = {"epoch": epoch, "train": train_loss, "beta": float(beta), "valid": None}
        if valid is not None and valid.valid.shape[0] and (epoch % eval_every == 0 or stopped != "max_epochs"):
            record["valid"] = loss_of(valid, svi.get_params(state), eval_key)
            # patience counts only once the KL weight has reached 1
            tracker.update(record["valid"], jax.device_get(svi.get_params(state)), count=epoch >= kl_anneal_epochs)
        record["seconds"] = time.perf_counter() - t_start
        history.append(record)
        if verbose and (epoch % max(int(verbose), 1) == 0 or stopped != "max_epochs"):
            val = "" if record["valid"] is None else f", valid -ELBO/step {record['valid']:.4f}"
            print(f"[{name}] epoch {epoch:4d}: train loss/step {train_loss:.4f}{val} "
                  f"(beta {float(beta):.2f}, {record['seconds']:.1f} s)", flush=True)
        reason = tracker.end_of_epoch(stopped, valid is not None)
        if reason is not None:
            stopped = reason
            break
    train_seconds = time.perf_counter() - t_start
    params = tracker.best_state if tracker.best_state is not None else svi.get_params(state)
    train_elbo = -loss_of(train, params, eval_key)
    return FitResult(
        to_net(params), history, compile_seconds, train_seconds, num_updates, seq_steps, stopped, train_elbo
    )


# ------------------------------------------------------------------------- particle filter
class FilterResult(NamedTuple):
    """Per series: ``log_increments (T,)`` (sum + ``pending`` = log p-hat(y)), the lead-``L``
    predictive log densities ``log_predictive (T,)`` (:func:`particle_filter`), one-step predictive
    ``pred_mean, pred_var (T, D)``, final particles ``z (K, Z)`` and normalised log weights ``(K,)``."""

    log_increments: jax.Array
    pending: jax.Array
    log_predictive: jax.Array
    pred_mean: jax.Array
    pred_var: jax.Array
    z: jax.Array
    log_weights: jax.Array


def particle_filter(net: DeepMarkovNetwork, y, mask, delta, valid, key, num_particles: int, lead: int = 1) -> FilterResult:
    r"""Sequential Monte Carlo over one series with the guide as proposal.

    Particles :math:`z_k^{(i)} \sim q(z_k \mid z_{k-1}^{(i)}, y_{k:T})` get incremental weights
    :math:`p(y_k \mid z_k) p(z_k \mid z_{k-1}) / q(z_k \mid z_{k-1}, y_{k:T})` and are resampled
    (multinomial) after every step with an observation. The log of the mean weight at step k,
    :math:`\log \hat p(y_k \mid y_{<k})`, is the per-step log predictive density estimate; the
    estimates of the steps since the previous observed step are added to it (steps without any
    observation report 0), so their sum is :math:`\log \hat p(y_{1:T})`, the log of an unbiased
    estimate of the likelihood: in expectation a lower bound on :math:`\log p(y_{1:T})` (like the
    importance-weighted bound), tight as K grows. The one-step predictive moments come from the
    weighted particles propagated through the transition (before :math:`y_k` is seen). The final
    particles and weights approximate the filtering distribution at the series' last step.

    ``log_predictive`` holds the lead-L predictive log density of the observed entries,

    .. math::

        \log \hat p(y_k \mid y_{\le k-L}) = \log \sum_i w_{k-L}^{(i)}\, p(y_k \mid \tilde z_k^{(i)}),
        \qquad \tilde z_{j}^{(i)} \sim p(z_j \mid \tilde z_{j-1}^{(i)}, \delta_j) \text{ for } j = k-L+1, \dots, k,

    where :math:`\tilde z_{k-L}^{(i)}` and :math:`w_{k-L}^{(i)}` are the filtered particles and
    normalised weights after step k - L (for k < L, the start :math:`z_0` with equal weights:
    the marginal :math:`p(y_k)`), propagated L steps through the transition without reweighting.
    With ``lead=1`` it is the per-step estimate above (``log_increments``). Steps without any
    observation report 0. The filter carries L - 1 propagated particle clouds, so a step costs
    L transitions per particle.
    """
    if lead < 1:
        raise ValueError(f"lead must be a positive integer, got {lead!r}")
    hs = net.guide_states(y, mask, delta, valid)
    K = num_particles
    steps = jnp.arange(y.shape[0])
    trans = jax.vmap(net.transition, in_axes=(0, None))
    comb = jax.vmap(net.combiner, in_axes=(0, None))
    moments = jax.vmap(net.emission.moments)
    log_prob = jax.vmap(net.emission.log_prob, in_axes=(0, None, None))

    def step(carry, inp):
        z, logw, pending, clouds, cloud_logw = carry
        y_t, m_t, d_t, ok, h_t, t = inp
        k1, k2, k3 = jax.random.split(jax.random.fold_in(key, t), 3)
        p_loc, p_scale = trans(z, d_t)
        w = jnp.exp(logw)[:, None]
        z_prior = p_loc + p_scale * jax.random.normal(k1, p_loc.shape)
        mu, var = moments(z_prior)
        pred_mean = jnp.sum(w * mu, axis=0)
        pred_var = jnp.maximum(jnp.sum(w * (var + mu**2), axis=0) - pred_mean**2, 0.0)
        q_loc, q_scale = comb(z, h_t)
        z_new = q_loc + q_scale * jax.random.normal(k2, q_loc.shape)
        log_inc = log_prob(z_new, y_t, m_t) + _normal_logpdf(z_new, p_loc, p_scale) - _normal_logpdf(z_new, q_loc, q_scale)
        lw = logw + log_inc
        inc = jax.nn.logsumexp(lw)
        lw = lw - inc
        observed = ok & jnp.any(m_t)
        idx = jax.random.categorical(k3, lw, shape=(K,))
        z_res = jnp.where(observed, z_new[idx], z_new)
        lw_res = jnp.where(observed, jnp.full((K,), -math.log(K)), lw)
        inc = jnp.where(ok, inc, 0.0)
        score = jnp.where(observed, inc + pending, 0.0)
        pending = jnp.where(observed, 0.0, pending + inc)
        if lead == 1:
            log_pred = score
        else:
            # clouds[j]: the filtered particles after step t-2-j, propagated to step t-1; one more
            # transition each, then the oldest (lead L) scores y_t and the newest is this step's prior draw
            c_loc, c_scale = jax.vmap(trans, in_axes=(0, None))(clouds, d_t)
            moved = c_loc + c_scale * jax.random.normal(jax.random.fold_in(k1, 1), c_loc.shape)
            lp = jax.nn.logsumexp(cloud_logw[-1] + log_prob(moved[-1], y_t, m_t))
            log_pred = jnp.where(observed, lp, 0.0)
            clouds = jnp.where(ok, jnp.concatenate([z_prior[None], moved[:-1]]), clouds)
            cloud_logw = jnp.where(ok, jnp.concatenate([logw[None], cloud_logw[:-1]]), cloud_logw)
        z = jnp.where(ok, z_res, z)
        logw = jnp.where(ok, lw_res, logw)
        return (z, logw, pending, clouds, cloud_logw), (score, log_pred, pred_mean, pred_var)

    z0 = jnp.broadcast_to(net.z0, (K, net.z0.shape[0]))
    logw0 = jnp.full((K,), -math.log(K), z0.dtype)
    clouds = jnp.broadcast_to(z0, (lead - 1, *z0.shape))
    cloud_logw = jnp.broadcast_to(logw0, (lead - 1, K))
    init = (z0, logw0, jnp.zeros((), z0.dtype), clouds, cloud_logw)
    (z, logw, pending, _, _), (scores, log_pred, pmean, pvar) = jax.lax.scan(step, init, (y, mask, delta, valid, hs, steps))
    return FilterResult(scores, pending, log_pred, pmean, pvar, z, logw)


@jit
def batch_filter(net, batch: SequenceBatch, key, num_particles: int, lead: int = 1) -> FilterResult:
    """:func:`particle_filter` of every series (series b uses ``split(key, B)[b]``)."""
    keys = jax.random.split(key, batch.y.shape[0])
    return jax.vmap(particle_filter, in_axes=(None, 0, 0, 0, 0, 0, None, None))(net, *batch, keys, num_particles, lead)


def rollout(net: DeepMarkovNetwork, z, log_weights, delta, key, num_draws: int):
    """Draw ``num_draws`` future paths of one series from its filtered particles.

    ``z (K, Z)``, ``log_weights (K,)`` from :func:`particle_filter`; ``delta (h,)`` the scaled gaps
    of the future steps. Returns ``draws (num_draws, h, D)`` of the observations and the emission
    means ``(num_draws, h, D)`` along the same latent paths.
    """
    k0, k1 = jax.random.split(key)
    zs = z[jax.random.categorical(k0, log_weights, shape=(num_draws,))]
    trans = jax.vmap(net.transition, in_axes=(0, None))
    sample = jax.vmap(net.emission.sample)
    moments = jax.vmap(net.emission.moments)

    def step(zc, inp):
        d, k = inp
        ka, kb = jax.random.split(k)
        loc, scale = trans(zc, d)
        zc = loc + scale * jax.random.normal(ka, loc.shape)
        return zc, (sample(zc, jax.random.split(kb, num_draws)), moments(zc)[0])

    _, (draws, means) = jax.lax.scan(step, zs, (delta, jax.random.split(k1, delta.shape[0])))
    return jnp.swapaxes(draws, 0, 1), jnp.swapaxes(means, 0, 1)


@jit
def batch_rollout(net, z, log_weights, delta, key, num_draws: int):
    """:func:`rollout` of every series: ``z (B, K, Z)``, ``delta (B, h)`` -> ``(B, num_draws, h, D)`` x 2."""
    keys = jax.random.split(key, z.shape[0])
    return jax.vmap(rollout, in_axes=(None, 0, 0, 0, 0, None))(net, z, log_weights, delta, keys, num_draws)
