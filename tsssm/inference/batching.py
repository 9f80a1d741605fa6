"""Padded batches of series for the neural families, and the fixed-shape minibatches they train on.

A batch is a NamedTuple of arrays with a leading series axis. Every minibatch has the same
number of series: the last one of an epoch (or of an evaluation pass) is filled up with an
all-invalid series appended to the data, so a jitted update or evaluation compiles once.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import jax
import numpy as np


class SequenceBatch(NamedTuple):
    """Padded series: ``y (B, T, D)`` float32, ``mask (B, T, D)`` bool, ``delta (B, T)`` float32,
    ``valid (B, T)`` bool."""

    y: np.ndarray
    mask: np.ndarray
    delta: np.ndarray
    valid: np.ndarray

    def take(self, index) -> SequenceBatch:
        return take(self, index)


def as_batch(y, mask, delta, valid) -> SequenceBatch:
    """Cast to the dtypes the networks expect (float32 values, bool masks)."""
    return SequenceBatch(
        np.asarray(y, np.float32), np.asarray(mask, bool), np.asarray(delta, np.float32), np.asarray(valid, bool)
    )


def take(batch, index):
    """The series ``index`` of any batch NamedTuple."""
    return type(batch)(*(np.asarray(a)[index] for a in batch))


def with_empty(batch):
    """``batch`` with one all-zero (all-invalid) series appended at index ``B``: the filler of minibatches."""
    return type(batch)(*(np.concatenate([a, np.zeros_like(a[:1])]) for a in batch))


def epoch_order(rng: np.random.Generator, num: int, size: int) -> np.ndarray:
    """A random order of ``num`` series, filled up with the filler index ``num`` to a multiple of ``size``."""
    return np.concatenate([rng.permutation(num), np.full((-num) % size, num)])


def chunks(num: int, size: int):
    """Index arrays of ``size`` series covering ``0..num-1`` in order (filler index ``num`` at the end)."""
    for start in range(0, num, size):
        idx = np.arange(start, start + size)
        yield np.where(idx < num, idx, num)


class EpochResult(NamedTuple):
    state: object
    loss: float  # mean training loss of the epoch's updates
    updates: int
    steps: int  # valid (series x time) steps processed
    out_of_time: bool


def run_epoch(update, state, padded, order, size: int, epoch: int, deadline: float | None = None) -> EpochResult:
    """``state, loss = update(state, minibatch)`` over the minibatches ``order`` of ``padded`` (``size`` series each).

    Stops early once ``time.perf_counter()`` passes ``deadline``; raises ``FloatingPointError``
    when the mean loss is not finite.
    """
    losses, steps, out_of_time = [], 0, False
    for start in range(0, len(order), size):
        batch = take(padded, order[start : start + size])
        state, loss = update(state, batch)
        losses.append(loss)
        steps += int(np.sum(batch.valid))
        if deadline is not None and time.perf_counter() > deadline:
            out_of_time = True
            break
    mean = float(np.mean(jax.device_get(losses)))
    if not np.isfinite(mean):
        raise FloatingPointError(f"the training loss became {mean} at epoch {epoch}: lower learning_rate or clip_norm")
    return EpochResult(state, mean, len(losses), steps, out_of_time)


class EarlyStopping:
    """Keeps the best state seen by validation loss and counts evaluations without improvement.

    An improvement is a loss lower than the best by more than a relative 1e-6.
    """

    def __init__(self, patience: int):
        self.patience = patience
        self.best = np.inf
        self.best_state = None
        self.bad = 0

    def update(self, loss: float, state, count: bool = True) -> None:
        """Record a validation ``loss`` of ``state``; a non-improvement counts only if ``count``."""
        if not np.isfinite(self.best) or loss < self.best - 1e-6 * abs(self.best):
            self.best, self.best_state, self.bad = loss, state, 0
        elif count:
            self.bad += 1

    @property
    def exhausted(self) -> bool:
        return self.bad >= self.patience

    def end_of_epoch(self, stopped: str, has_valid: bool) -> str | None:
        """The reason to stop after this epoch (``stopped`` if the epoch ran out of time), or None."""
        if stopped != "max_epochs":
            return stopped
        return "early_stopping" if has_valid and self.exhausted else None
