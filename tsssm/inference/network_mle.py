r"""Maximum-likelihood training of sequence networks with optax Adam on fixed-shape minibatches.

The network is an equinox module; ``loss(net, batch) -> (total, count)`` is a module-level
function giving the summed negative log-likelihood of a minibatch and the number of terms in it
(observed entries, or labelled series). Each update takes an Adam step (after global-norm
clipping) on ``total / max(count, 1)``. Minibatches always hold the same number of series (see
:mod:`tsssm.inference.batching`), so the update compiles once per network structure and
minibatch shape; compiled updates are cached at module level (``clone(model).fit`` on data of the
same shape compiles nothing).
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from tsssm._config import jit
from tsssm.inference.batching import EarlyStopping, chunks, epoch_order, run_epoch, take, with_empty


def split_network(net):
    """Weight arrays of ``net`` (a list, fixed order), their tree structure, and the static rest."""
    params, static = eqx.partition(net, eqx.is_inexact_array)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    return leaves, treedef, static


def network_leaves(net) -> list:
    """The weight arrays of ``net`` in a fixed order (what ``save`` writes)."""
    return split_network(net)[0]


def network_from_leaves(template, leaves):
    """A network shaped like ``template`` with the given weight arrays (order of :func:`network_leaves`)."""
    _, treedef, static = split_network(template)
    return eqx.combine(jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in leaves]), static)


@lru_cache(maxsize=8)
def _optimizer(learning_rate: float, clip_norm: float) -> optax.GradientTransformation:
    """One optimiser object per setting, so that it hashes equal across fits (no recompilation)."""
    return optax.chain(optax.clip_by_global_norm(clip_norm), optax.adam(learning_rate))


def _mean_loss(net, batch, loss):
    total, count = loss(net, batch)
    return total / jnp.maximum(count, 1)


@jit
def _update(net, opt_state, batch, loss, optimizer):
    value, grads = eqx.filter_value_and_grad(_mean_loss)(net, batch, loss)
    updates, opt_state = optimizer.update(grads, opt_state, eqx.filter(net, eqx.is_inexact_array))
    return eqx.apply_updates(net, updates), opt_state, value


@jit
def _evaluate(net, batch, loss):
    return loss(net, batch)


def evaluate(net, data, loss, size: int) -> float:
    """``sum(total) / sum(count)`` of ``loss`` over all series of ``data``, in minibatches of ``size``."""
    total, count = 0.0, 0.0
    padded = with_empty(data)
    for idx in chunks(len(data[0]), size):
        t, c = _evaluate(net, take(padded, idx), loss)
        total, count = total + float(t), count + float(c)
    return total / max(count, 1.0)


class TrainResult(NamedTuple):
    network: eqx.Module
    history: list  # per epoch: dict(epoch, train, valid, seconds)
    compile_seconds: float
    train_seconds: float
    num_updates: int
    stopped: str  # "max_epochs", "early_stopping" or "max_seconds"
    train_loss: float  # mean loss over the training series with the returned weights


def fit(
    net,
    loss,
    train,
    valid=None,
    *,
    batch_size: int = 16,
    max_epochs: int = 100,
    learning_rate: float = 3e-3,
    clip_norm: float = 1.0,
    patience: int = 20,
    max_seconds: float | None = None,
    seed: int = 0,
    verbose: bool | int = False,
    name: str = "network",
) -> TrainResult:
    """Minimise ``loss`` over the series of ``train`` (a batch NamedTuple), with early stopping on ``valid``.

    Minibatches hold ``min(batch_size, N)`` series in a new random order each epoch. With
    ``valid`` the mean validation loss is computed after every epoch, the best weights are kept,
    and training stops after ``patience`` epochs without improvement. ``max_seconds`` bounds the
    training time (compilation excluded; checked after every update).
    """
    rng = np.random.default_rng(seed)
    # strongly typed weights: a weakly typed leaf would become strong after the first update and recompile it
    net = jax.tree_util.tree_map(lambda x: jnp.array(x, dtype=x.dtype) if eqx.is_array(x) else x, net)
    n = len(train[0])
    m = int(min(batch_size, n))
    padded = with_empty(train)
    optimizer = _optimizer(float(learning_rate), float(clip_norm))
    opt_state = optimizer.init(eqx.filter(net, eqx.is_inexact_array))
    t0 = time.perf_counter()
    # compile (and discard) one update, so that the time of compilation is reported on its own
    jax.block_until_ready(_update(net, opt_state, take(padded, np.arange(m)), loss, optimizer))
    compile_seconds = time.perf_counter() - t0

    history, tracker = [], EarlyStopping(patience)
    num_updates, stopped = 0, "max_epochs"
    t_start = time.perf_counter()
    deadline = None if max_seconds is None else t_start + max_seconds

    def step(state, batch):
        net, opt_state = state
        net, opt_state, value = _update(net, opt_state, batch, loss, optimizer)
        return (net, opt_state), value

    for epoch in range(max_epochs):
        result = run_epoch(step, (net, opt_state), padded, epoch_order(rng, n, m), m, epoch, deadline)
        (net, opt_state), train_loss = result.state, result.loss
        num_updates += result.updates
        stopped = "max_seconds" if result.out_of_time else stopped
        record = {"epoch": epoch, "train": train_loss, "valid": None}
        has_valid = valid is not None and len(valid[0]) > 0
        if has_valid:
            record["valid"] = evaluate(net, valid, loss, m)
            tracker.update(record["valid"], net)
        record["seconds"] = time.perf_counter() - t_start
        history.append(record)
        if verbose and (epoch % max(int(verbose), 1) == 0 or stopped != "max_epochs"):
            val = "" if record["valid"] is None else f", valid {record['valid']:.4f}"
            print(f"[{name}] epoch {epoch:4d}: train loss {train_loss:.4f}{val} ({record['seconds']:.1f} s)", flush=True)
        reason = tracker.end_of_epoch(stopped, has_valid)
        if reason is not None:
            stopped = reason
            break
    train_seconds = time.perf_counter() - t_start
    net = tracker.best_state if tracker.best_state is not None else net
    return TrainResult(
        net, history, compile_seconds, train_seconds, num_updates, stopped, evaluate(net, train, loss, m)
    )
