r"""Chimera-style network: stacked input-dependent 2-D selective state-space blocks over time x variates.

Reference: A. Behrouz, M. Santacatterina, R. Zabih, "Chimera: Effectively Modeling Multivariate
Time Series with 2-Dimensional State Space Models", NeurIPS 2024.

One series is a grid :math:`x_{v,t}` of V variates by T times. Each position is embedded to H
channels, :math:`x_{v,t} = W_{\text{in}} [\tilde y_{v,t}, m_{v,t}] + e_v` (value with missing
entries set to 0, observation mask, and a learned embedding :math:`e_v` of the variate). A block
applies two 2-D SSM heads to the layer-normalised input :math:`z` and mixes them with a
data-dependent gate:

.. math::

    o = g \odot \mathrm{SSM}_{\text{trend}}(z) + (1 - g) \odot \mathrm{SSM}_{\text{season}}(z),
    \qquad g = \operatorname{sigmoid}(W_g z + b_g), \qquad x \leftarrow x + W_o \operatorname{gelu}(o).

A head, per channel :math:`d` and state :math:`n` (N states per channel), is the 2-D recurrence of
:mod:`tsssm.kernels.scan` with selective, zero-order-hold discretised parameters:

.. math::

    \Delta^{(1)}_{v,t} &= \operatorname{softplus}(W_1 z_{v,t} + b_1)\,\delta_t, \qquad
    \Delta^{(2)}_{v,t} = \operatorname{softplus}(W_2 z_{v,t} + b_2), \\
    \bar A^{(1)} &= e^{\Delta^{(1)} A_1}, \quad \bar A^{(4)} = e^{\Delta^{(2)} A_4}, \quad
    \bar A^{(2)} = (1 - |\bar A^{(1)}|) \tanh c_2, \quad \bar A^{(3)} = (1 - |\bar A^{(4)}|) \tanh c_3, \\
    u^{(1)} &= \frac{\bar A^{(1)} - 1}{A_1} B^{(1)}_{v,t}\, z_{v,t,d}, \qquad
    u^{(2)} = \frac{\bar A^{(4)} - 1}{A_4} B^{(2)}_{v,t}\, z_{v,t,d}, \\
    \mathrm{SSM}(z)_{v,t,d} &= \operatorname{Re} \sum_n \Big[ C^{(1)}_{v,t,n} \big(h^{(1)\rightarrow}
        + h^{(1)\leftarrow}\big) + C^{(2)}_{v,t,n} \big(h^{(2)\rightarrow} + h^{(2)\leftarrow}\big)
        \Big]_{v,t,d,n} + s_d z_{v,t,d},

with :math:`B^{(i)}_{v,t} = W_{B_i} z_{v,t}`, :math:`C^{(i)}_{v,t} = W_{C_i} z_{v,t}` (Mamba-style
selection: B, C and the step sizes depend on the input), :math:`\rightarrow / \leftarrow` the
recurrence with the variates scanned forwards and backwards, and :math:`\delta_t` the time gap
before step t in units of the typical gap (1 on a regular grid).

Choices where the paper leaves room (or where this implementation departs from it):

- **Two heads, two discretisations.** The trend head has real modes, S4D-Real initialisation
  :math:`A_n = -(n + 1)`, and small initial steps (log-uniform in [1e-3, 1e-1]): slowly decaying,
  smoothing memory. The seasonal head has complex oscillatory modes, S4D-Lin initialisation
  :math:`A_n = -\tfrac12 + i \pi n`, and larger, coarser steps (log-uniform in [1e-2, 1]), so
  its modes start at frequencies :math:`\pi n \Delta` that cover short and long periods. The paper
  gives the heads different discretisations without fixing these ranges.
- **Stability by construction.** The coupling weights are bounded so that
  :math:`|\bar A^{(1)}| + |\bar A^{(2)}| < 1` and :math:`|\bar A^{(3)}| + |\bar A^{(4)}| < 1`
  (row sums of the 2-D transition below 1), which makes the 2-D recurrence stable for any input;
  :math:`c_2, c_3` are learned per channel and state and do not depend on the input.
- **Both variate directions share parameters** and their states are summed before the output map.
- **Irregular time.** :math:`\Delta^{(1)}` is multiplied by the scaled time gap, the continuous-
  time reading of zero-order hold; the paper assumes a regular grid.
- **Probabilistic output.** The paper's decoder outputs point forecasts; here a linear head maps the
  last layer to a Gaussian or Student-t predictive distribution per variate and time, and the
  inputs are shifted by ``lead`` steps (default 1) so that the output at row t depends on
  :math:`y_{\le t-\text{lead}}` only (:func:`predictive_params`).

Everything here works on one series (arrays ``(T, V)``); networks compute in float32.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats

from tsssm.kernels.scan import scan_2d

LIKELIHOODS = ("gaussian", "student_t")
MIN_SCALE = 1e-3
TREND_STEPS = (1e-3, 1e-1)
SEASON_STEPS = (1e-2, 1.0)


def _dense(layer: eqx.nn.Linear, x):
    """A linear layer on the last axis of ``x`` (any leading axes)."""
    return x @ layer.weight.T + layer.bias


def _inverse_softplus(x):
    return x + jnp.log(-jnp.expm1(-x))


def _step_bias(key, shape, low, high):
    """Biases whose softplus is log-uniform in ``[low, high]`` (Mamba's step-size initialisation)."""
    steps = jnp.exp(jax.random.uniform(key, shape, minval=math.log(low), maxval=math.log(high)))
    return _inverse_softplus(steps)


class SelectiveHead2D(eqx.Module):
    r"""Parameters of one input-dependent 2-D SSM head (module docstring).

    :meth:`discretise` gives the per-position arrays of the 2-D scan, :meth:`read` the head's
    output from the scanned states; :func:`_scan_both_directions` runs the head's scans over the
    variates in both directions as one (vmapped) :func:`~tsssm.kernels.scan.scan_2d` call.
    """

    log_decay: jax.Array  # (2, H, N): log of -Re A for the time (A_1) and variate (A_4) modes
    frequency: jax.Array | None  # (2, H, N): Im A of the oscillatory head; None for the real head
    coupling: jax.Array  # (2, H, N): c_2, c_3
    steps: eqx.nn.Linear  # H -> 2H: pre-softplus step sizes of the time and variate directions
    selection: eqx.nn.Linear  # H -> 4N: B^(1), B^(2), C^(1), C^(2)
    skip: jax.Array  # (H,)

    def __init__(self, channels: int, state_dim: int, oscillatory: bool, *, key):
        k = jax.random.split(key, 3)
        n = jnp.arange(state_dim, dtype=float)  # the default float dtype, as the other weights (float64 under x64)
        shape = (2, channels, state_dim)
        if oscillatory:  # S4D-Lin
            self.log_decay = jnp.full(shape, math.log(0.5))
            self.frequency = jnp.broadcast_to(math.pi * n, shape)
        else:  # S4D-Real
            self.log_decay = jnp.log(jnp.broadcast_to(n + 1.0, shape))
            self.frequency = None
        self.coupling = jnp.full(shape, 0.1)
        low, high = SEASON_STEPS if oscillatory else TREND_STEPS
        steps = eqx.nn.Linear(channels, 2 * channels, key=k[0])
        self.steps = eqx.tree_at(
            lambda m: (m.weight, m.bias), steps, (0.1 * steps.weight, _step_bias(k[1], (2 * channels,), low, high))
        )
        self.selection = eqx.nn.Linear(channels, 4 * state_dim, key=k[2])
        self.skip = jnp.ones(channels)

    def discretise(self, z, delta):
        """Arrays ``(a1, a2, a3, a4, u1, u2)``, each ``(V, T, H, N)`` (complex for the oscillatory head, real for
        the trend head), and ``C^(1), C^(2)`` ``(V, T, N)``."""
        channels = z.shape[-1]
        raw = jax.nn.softplus(_dense(self.steps, z))
        step_t = raw[..., :channels, None] * delta[None, :, None, None]  # (V, T, H, 1)
        step_v = raw[..., channels:, None]
        b1, b2, c1, c2 = jnp.split(_dense(self.selection, z), 4, axis=-1)  # (V, T, N) each
        decay = -jnp.exp(self.log_decay)
        A = decay if self.frequency is None else jax.lax.complex(decay, self.frequency)  # real trend: real arithmetic
        a1, a4 = jnp.exp(step_t * A[0]), jnp.exp(step_v * A[1])
        a2 = (1.0 - jnp.abs(a1)) * jnp.tanh(self.coupling[0])
        a3 = (1.0 - jnp.abs(a4)) * jnp.tanh(self.coupling[1])
        x = z[..., None]  # (V, T, H, 1)
        u1 = (a1 - 1.0) / A[0] * b1[:, :, None, :] * x
        u2 = (a4 - 1.0) / A[1] * b2[:, :, None, :] * x
        return (a1, a2.astype(a1.dtype), a3.astype(a1.dtype), a4, u1, u2), (c1, c2)

    def read(self, z, c, h1, h2):
        """Output ``(V, T, H)`` from the states ``(V, T, H, N)`` summed over both variate directions."""
        c1, c2 = c
        out = jnp.einsum("vtn,vthn->vth", c1, jnp.real(h1)) + jnp.einsum("vtn,vthn->vth", c2, jnp.real(h2))
        return out + self.skip * z


def _directions(num_variates: int) -> int:
    """Variate directions scanned: 2 (forwards and backwards), 1 for a single variate (they coincide)."""
    return 1 if num_variates == 1 else 2


def _scan_both_directions(head: SelectiveHead2D, z, delta, initial, last):
    """Run one head's 2-D scan with the variates scanned forwards and backwards; states summed.

    The directions ride on a leading axis: the backward one scans the reversed variates, its
    arrays discretised from ``z[::-1]`` (discretisation acts per position, so this equals
    reversing the discretised arrays; reversing the real input instead of the complex outputs
    spares copies of the largest arrays). With one variate both directions have the same
    inputs and states, so one is run and counted twice. ``initial`` holds the states before the
    first time, ``(h1, h2)`` each ``(directions, V, H, N)``; returns the states at row ``last``
    (same layout) and the head's output ``(V, T, H)``.
    """
    zs = jnp.stack([z, z[::-1]])[: _directions(z.shape[0])]
    args, (c1, c2) = jax.vmap(head.discretise, in_axes=(0, None))(zs, delta)
    h1, h2 = jax.vmap(lambda *a: scan_2d(*a[:6], initial=a[6:]))(*args, *initial)
    final = (h1[:, :, last], h2[:, :, last])
    both = tuple(h[0] + h[-1, ::-1] for h in (h1, h2))
    return final, head.read(z, (c1[0], c2[0]), *both)


class ChimeraBlock(eqx.Module):
    """Layer norm, trend and seasonal heads mixed by a data-dependent gate, output map, residual."""

    norm: eqx.nn.LayerNorm
    trend: SelectiveHead2D
    season: SelectiveHead2D
    gate: eqx.nn.Linear
    out: eqx.nn.Linear

    def __init__(self, channels: int, state_dim: int, *, key):
        k = jax.random.split(key, 4)
        self.norm = eqx.nn.LayerNorm(channels)
        self.trend = SelectiveHead2D(channels, state_dim, False, key=k[0])
        self.season = SelectiveHead2D(channels, state_dim, True, key=k[1])
        self.gate = eqx.nn.Linear(channels, channels, key=k[2])
        self.out = eqx.nn.Linear(channels, channels, key=k[3])

    def __call__(self, x, delta, initial, last):
        """``x (V, T, H)`` -> the block's output and the 2-D scan's states at row ``last``."""
        z = jax.vmap(jax.vmap(self.norm))(x)
        g = jax.nn.sigmoid(_dense(self.gate, z))
        trend_final, trend = _scan_both_directions(self.trend, z, delta, initial[0], last)
        season_final, season = _scan_both_directions(self.season, z, delta, initial[1], last)
        return x + _dense(self.out, jax.nn.gelu(g * trend + (1.0 - g) * season)), (trend_final, season_final)


class ChimeraNetwork(eqx.Module):
    """Embedding, ``num_layers`` :class:`ChimeraBlock` s and a read-out, for series of ``num_variates`` columns.

    Parameters
    ----------
    num_variates : int
        V, the number of columns.
    channels, state_dim, num_layers : int
        H channels per position, N states per channel and head, number of blocks.
    num_outputs : int
        Width of the read-out per position (distribution parameters, or class logits after pooling).
    key : jax.random key
    lead : int
        Steps between the last input a prediction sees and the step it predicts
        (:func:`predictive_params`); unused by the classifier.
    """

    embed: eqx.nn.Linear
    variate_embedding: jax.Array
    blocks: ChimeraBlock  # num_layers blocks stacked on a leading axis (an unrolled scan over layers)
    norm: eqx.nn.LayerNorm
    readout: eqx.nn.Linear
    lead: int = eqx.field(static=True)

    def __init__(self, num_variates, channels, state_dim, num_layers, num_outputs, *, key, lead: int = 1):
        self.lead = lead
        k = jax.random.split(key, 4)
        self.embed = eqx.nn.Linear(2, channels, key=k[0])
        self.variate_embedding = 0.1 * jax.random.normal(k[1], (num_variates, channels))
        self.blocks = eqx.filter_vmap(lambda kk: ChimeraBlock(channels, state_dim, key=kk))(
            jax.random.split(k[3], num_layers)
        )
        self.norm = eqx.nn.LayerNorm(channels)
        self.readout = eqx.nn.Linear(channels, num_outputs, key=k[2])

    def initial_state(self):
        """Zero states of every layer's 2-D scans before the first time.

        Per head (trend, season) a pair ``(h1, h2)`` of arrays ``(L, directions, V, H, N)``:
        layers, variate directions (forwards, backwards; one for a single variate), variates,
        channels, states; real for the trend head, complex for the seasonal one.
        """
        L, V, N = self.blocks.trend.log_decay.shape[0], self.variate_embedding.shape[0], self.blocks.trend.log_decay.shape[-1]
        shape = (L, _directions(V), V, self.variate_embedding.shape[1], N)
        real = jnp.zeros(shape, self.variate_embedding.dtype)
        complex_ = jnp.zeros(shape, jnp.result_type(self.variate_embedding.dtype, jnp.complex64))
        return (real, real), (complex_, complex_)

    def features(self, y, mask, delta, state=None, last=-1):
        """Last-layer features ``(V, T, H)`` of inputs ``y, mask (T, V)`` and gaps ``delta (T,)``.

        ``state`` (from :meth:`initial_state` or a previous call) holds the time-boundary states of
        every layer; the states at row ``last`` come back with the features, so a series can be
        run in pieces (one row at a time when forecasting).
        """
        inputs = jnp.stack([jnp.where(mask, y, 0.0), mask.astype(y.dtype)], axis=-1)  # (T, V, 2)
        x = _dense(self.embed, jnp.swapaxes(inputs, 0, 1)) + self.variate_embedding[:, None, :]
        params, static = eqx.partition(self.blocks, eqx.is_array)

        def layer(h, inp):
            block_params, initial = inp
            return eqx.combine(block_params, static)(h, delta, initial, last)

        x, final = jax.lax.scan(layer, x, (params, self.initial_state() if state is None else state), unroll=True)
        return jax.vmap(jax.vmap(self.norm))(x), final

    def readout_params(self, features):
        """Read-out ``(T, V, num_outputs)`` of features ``(V, T, H)``."""
        return jnp.swapaxes(_dense(self.readout, features), 0, 1)

    def __call__(self, y, mask, delta):
        """Read-out ``(T, V, num_outputs)`` at every position (row t sees inputs up to row t)."""
        return self.readout_params(self.features(y, mask, delta)[0])


def num_outputs(likelihood: str) -> int:
    """Distribution parameters per variate: location and scale (and degrees of freedom)."""
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
    return 2 if likelihood == "gaussian" else 3


def predictive_params(net: ChimeraNetwork, y, mask, delta):
    r"""Raw parameters ``(T, V, k)`` of :math:`p(y_t \mid y_{\le t-\ell})` for every row t of one series.

    :math:`\ell` is ``net.lead`` (1: the one-step-ahead predictive :math:`p(y_t \mid y_{<t})`).
    The inputs are shifted by :math:`\ell` steps (row t is fed :math:`y_{t-\ell}`, the first
    :math:`\ell` rows all-missing rows), so the read-out at row t, which sees inputs up to row t,
    predicts :math:`y_t` from :math:`y_{\le t-\ell}`. ``delta (T,)`` holds the gap before each
    row (the time axis of the scan is that of the predicted steps).
    """
    return net(*_shift(y, mask, net.lead), delta)


def _loc_scale_df(raw):
    loc = raw[..., 0]
    scale = jax.nn.softplus(raw[..., 1]) + MIN_SCALE
    df = 2.0 + jax.nn.softplus(raw[..., 2]) if raw.shape[-1] == 3 else None
    return loc, scale, df


def log_prob(raw, y, mask):
    """Log density of the observed entries (``(T, V)``; 0 where ``mask`` is False)."""
    loc, scale, df = _loc_scale_df(raw)
    y = jnp.where(mask, y, loc)
    lp = jstats.norm.logpdf(y, loc, scale) if df is None else jstats.t.logpdf(y, df, loc, scale)
    return jnp.where(mask, lp, 0.0)


def moments(raw):
    """Predictive mean and variance (``(..., V)`` each)."""
    loc, scale, df = _loc_scale_df(raw)
    var = scale**2 if df is None else scale**2 * df / (df - 2.0)
    return loc, var


def sample(raw, key):
    """One draw per position."""
    loc, scale, df = _loc_scale_df(raw)
    noise = jax.random.normal(key, loc.shape) if df is None else jax.random.t(key, df, loc.shape)
    return loc + scale * noise


def _shift(y, mask, lead: int):
    """Inputs of :func:`predictive_params`: row t holds :math:`y_{t-lead}` (the first ``lead`` rows: nothing observed)."""
    return (
        jnp.concatenate([jnp.zeros_like(y[:lead]), y[:-lead]]),
        jnp.concatenate([jnp.zeros_like(mask[:lead]), mask[:-lead]]),
    )


def sequence_nll(net: ChimeraNetwork, y, mask, delta, valid):
    """Negative log predictive density of the observed valid entries of one series, and their number."""
    observed = mask & valid[:, None]
    lp = log_prob(predictive_params(net, y, mask, delta), y, observed)
    return -jnp.sum(lp), jnp.sum(observed)


def batch_nll(net: ChimeraNetwork, batch):
    """:func:`sequence_nll` summed over a :class:`~tsssm.inference.batching.SequenceBatch`: ``(total, count)``."""
    total, count = jax.vmap(sequence_nll, in_axes=(None, 0, 0, 0, 0))(net, *batch)
    return jnp.sum(total), jnp.sum(count)


def forecast_paths(net: ChimeraNetwork, y, mask, delta, length, future_delta, key, num_paths: int):
    r"""Draws of the next ``h`` steps of one series by recursive sampling.

    The history (rows ``< length`` of ``y, mask (T, V)``, gaps ``delta (T,)``) is run once; then
    the future steps are taken one row at a time, carrying the 2-D scan's time-boundary states:
    step t is drawn from :math:`p(y_t \mid y_{\le t-\ell})` (:math:`\ell` = ``net.lead``), its
    input being the observed row :math:`y_{t-\ell}` while that lies in the history and the path's
    own draw of it after. With :math:`\ell = 1` the paths are joint draws of the network's
    sequential model; with :math:`\ell > 1` the draws of steps less than :math:`\ell` apart are
    conditionally independent given the earlier ones (each step has the network's marginal,
    the dependence between them is not modelled). ``future_delta (h,)`` holds the gaps before
    the future steps. Returns draws and the predictive locations along the paths, each
    ``(num_paths, h, V)``.
    """
    lead = net.lead
    shifted_y, shifted_mask = _shift(y, mask, lead)
    _, state = net.features(shifted_y, shifted_mask, delta, last=length - 1)
    # the inputs of the first `lead` future steps: rows length - lead ... length - 1 (none before row 0)
    padded_y, padded_mask = (jnp.concatenate([jnp.zeros_like(a[:lead]), a]) for a in (y, mask))
    recent = tuple(jax.lax.dynamic_slice_in_dim(a, length, lead) for a in (padded_y, padded_mask))

    def path(key):
        def step(carry, inp):
            state, recent_y, recent_mask = carry
            d, k = inp
            features, state = net.features(recent_y[:1], recent_mask[:1], d[None], state=state, last=0)
            raw = net.readout_params(features)[0]
            draw = sample(raw, k)
            recent_y = jnp.concatenate([recent_y[1:], draw[None]])
            recent_mask = jnp.concatenate([recent_mask[1:], jnp.ones_like(recent_mask[:1])])
            return (state, recent_y, recent_mask), (draw, moments(raw)[0])

        return jax.lax.scan(step, (state, *recent), (future_delta, jax.random.split(key, future_delta.shape[0])))[1]

    return jax.vmap(path)(jax.random.split(key, num_paths))


def pooled_features(net: ChimeraNetwork, y, mask, delta, valid):
    """Last-layer features of one series averaged over the variates and the valid times: ``(H,)``."""
    features, _ = net.features(y, mask, delta)  # (V, T, H)
    weights = valid.astype(features.dtype)[None, :, None]
    return jnp.sum(features * weights, axis=(0, 1)) / jnp.maximum(jnp.sum(weights) * features.shape[0], 1.0)


def pooled_readout(net: ChimeraNetwork, pooled):
    """Class logits of pooled features (any leading axes)."""
    return _dense(net.readout, pooled)


def batch_cross_entropy(net: ChimeraNetwork, batch):
    """Summed cross-entropy of the labelled series of a :class:`LabelledBatch` and their number."""
    pooled = jax.vmap(pooled_features, in_axes=(None, 0, 0, 0, 0))(net, batch.y, batch.mask, batch.delta, batch.valid)
    logits = pooled_readout(net, pooled)
    present = jnp.any(batch.valid, axis=1)  # filler series of a minibatch have no valid step
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch.label[:, None], axis=1)[:, 0]
    return jnp.sum(jnp.where(present, nll, 0.0)), jnp.sum(present)


class LabelledBatch(NamedTuple):
    """A :class:`~tsssm.inference.batching.SequenceBatch` with an integer class ``label (B,)`` per series."""

    y: jax.Array
    mask: jax.Array
    delta: jax.Array
    valid: jax.Array
    label: jax.Array
