r"""Networks of the deep Markov model (deep Kalman filter), Krishnan, Shalit & Sontag (AAAI 2017).

Generative model, for one series with observation times :math:`t_1 < \dots < t_T` and gaps
:math:`\Delta_k = t_k - t_{k-1}` (:math:`\Delta_1` is the typical gap of the training data):

.. math::

    z_0 &= \text{learned vector (also the guide's } z_0\text{)}, \\
    z_k \mid z_{k-1} &\sim \mathcal N\big(\mu_\theta(z_{k-1}, \delta_k),
        \operatorname{diag}\sigma^2_\theta(z_{k-1}, \delta_k)\big), \\
    \mu_\theta(z, \delta) &= (1 - g)\odot (z + \delta\,(A z + b)) + g \odot h, \quad
        g = \operatorname{sigmoid}(\mathrm{MLP}_g([z, \delta])), \;
        h = \mathrm{MLP}_h([z, \delta]), \\
    \sigma_\theta(z, \delta) &= \operatorname{softplus}(W_\sigma [\operatorname{relu}(h), \delta] + c) + 10^{-3}, \\
    y_{k,d} \mid z_k &\sim p_{\text{emission}}(\,\cdot \mid \eta_d(z_k)), \quad
        \eta = \mathrm{MLP}_e(z_k)

with :math:`\delta_k = \Delta_k / \bar\Delta` the gap in units of the typical training gap
:math:`\bar\Delta` (1 on a regular grid). The gate :math:`g` mixes a linear transition with a
nonlinear proposal, as in the paper. The linear part is an Euler step of a linear ODE over the
gap (on a regular grid, :math:`\delta = 1`, it is the paper's :math:`(I + A) z + b`), so it can
follow linear dynamics at any spacing. :math:`A` and :math:`b` start at 0 and the gate's bias at
-2, so an untrained network is close to a linear random walk.

Emissions (``likelihood``): ``"gaussian"`` (mean :math:`\eta_d`, learned scale per column),
``"student_t"`` (location :math:`\eta_d`, learned scale and degrees of freedom
:math:`\nu_d = 2 + \operatorname{softplus}(\cdot) > 2` per column), ``"bernoulli"`` (logits
:math:`\eta_d`, for binary data such as piano rolls).

Guide (structured, amortised, as in the paper's "ST-R" variant): a backward GRU over the
observations gives :math:`h^{\text{rnn}}_k` (a summary of :math:`y_{k:T}`; its input at step k is
the observed values with missing entries set to 0, the observation mask, and :math:`\delta_k`),
and a combiner gives

.. math::

    q(z_k \mid z_{k-1}, y_{k:T}) = \mathcal N\big(W_\mu c_k, \operatorname{diag}
        \operatorname{softplus}(W_s c_k)^2\big), \quad
    c_k = \tfrac12\big(\tanh(W_z z_{k-1} + b_z) + h^{\text{rnn}}_k\big).

Everything here works on one series (arrays ``(T, D)``); :mod:`tsssm.inference.svi` vmaps over
series. Networks compute in float32.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.stats as jstats

LIKELIHOODS = ("gaussian", "student_t", "bernoulli")
MIN_SCALE = 1e-3


def _mlp_layer(key, n_in, n_out):
    return eqx.nn.Linear(n_in, n_out, key=key)


class GatedTransition(eqx.Module):
    r"""Gated transition :math:`p(z_k \mid z_{k-1}, \delta_k)` (see the module docstring)."""

    gate_hidden: eqx.nn.Linear
    gate_out: eqx.nn.Linear
    proposal_hidden: eqx.nn.Linear
    proposal_out: eqx.nn.Linear
    linear: eqx.nn.Linear
    scale: eqx.nn.Linear

    def __init__(self, z_dim: int, hidden: int, *, key):
        k = jax.random.split(key, 6)
        self.gate_hidden = _mlp_layer(k[0], z_dim + 1, hidden)
        gate_out = _mlp_layer(k[1], hidden, z_dim)
        self.gate_out = eqx.tree_at(lambda m: m.bias, gate_out, jnp.full((z_dim,), -2.0))
        self.proposal_hidden = _mlp_layer(k[2], z_dim + 1, hidden)
        self.proposal_out = _mlp_layer(k[3], hidden, z_dim)
        linear = _mlp_layer(k[4], z_dim, z_dim)
        self.linear = eqx.tree_at(lambda m: (m.weight, m.bias), linear, (jnp.zeros((z_dim, z_dim)), jnp.zeros(z_dim)))
        self.scale = _mlp_layer(k[5], z_dim + 1, z_dim)

    def __call__(self, z, delta):
        """Mean and standard deviation of ``z_k`` given ``z_{k-1}`` (``(Z,)``) and the scaled gap."""
        zd = jnp.concatenate([z, delta[None]])
        gate = jax.nn.sigmoid(self.gate_out(jax.nn.relu(self.gate_hidden(zd))))
        proposal = self.proposal_out(jax.nn.relu(self.proposal_hidden(zd)))
        loc = (1.0 - gate) * (z + delta * self.linear(z)) + gate * proposal
        scale = jax.nn.softplus(self.scale(jnp.concatenate([jax.nn.relu(proposal), delta[None]]))) + MIN_SCALE
        return loc, scale


class Emission(eqx.Module):
    r"""Emission :math:`p(y_k \mid z_k)`: an MLP gives the location (or logits) per column."""

    hidden1: eqx.nn.Linear
    hidden2: eqx.nn.Linear
    out: eqx.nn.Linear
    log_scale: jax.Array
    raw_df: jax.Array
    likelihood: str = eqx.field(static=True)

    def __init__(self, z_dim: int, hidden: int, obs_dim: int, likelihood: str, *, key):
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        k = jax.random.split(key, 3)
        self.hidden1 = _mlp_layer(k[0], z_dim, hidden)
        self.hidden2 = _mlp_layer(k[1], hidden, hidden)
        self.out = _mlp_layer(k[2], hidden, obs_dim)
        self.log_scale = jnp.full((obs_dim,), jnp.log(0.5))
        self.raw_df = jnp.full((obs_dim,), 1.0)  # nu = 2 + softplus(1) ~ 3.3
        self.likelihood = likelihood

    def location(self, z):
        """Location (Gaussian, Student-t) or logits (Bernoulli), ``(D,)``."""
        return self.out(jax.nn.relu(self.hidden2(jax.nn.relu(self.hidden1(z)))))

    def _scale(self):
        return jnp.exp(self.log_scale) + MIN_SCALE

    def _df(self):
        return 2.0 + jax.nn.softplus(self.raw_df)

    def log_prob(self, z, y, mask):
        """Log density of the observed entries of ``y`` (``(D,)``; entries where ``mask`` is False,
        whatever their value, contribute exactly 0)."""
        eta = self.location(z)
        y = jnp.where(mask, y, 0.0)
        if self.likelihood == "gaussian":
            lp = jstats.norm.logpdf(y, eta, self._scale())
        elif self.likelihood == "student_t":
            lp = jstats.t.logpdf(y, self._df(), eta, self._scale())
        else:
            lp = y * jax.nn.log_sigmoid(eta) + (1.0 - y) * jax.nn.log_sigmoid(-eta)
        return jnp.sum(jnp.where(mask, lp, 0.0))

    def moments(self, z):
        """Mean and variance of ``y_k`` given ``z_k`` (``(D,)`` each)."""
        eta = self.location(z)
        if self.likelihood == "gaussian":
            return eta, jnp.broadcast_to(self._scale() ** 2, eta.shape)
        if self.likelihood == "student_t":
            df = self._df()
            return eta, jnp.broadcast_to(self._scale() ** 2 * df / (df - 2.0), eta.shape)
        p = jax.nn.sigmoid(eta)
        return p, p * (1.0 - p)

    def sample(self, z, key):
        """One draw of ``y_k`` given ``z_k``."""
        eta = self.location(z)
        if self.likelihood == "gaussian":
            return eta + self._scale() * jax.random.normal(key, eta.shape)
        if self.likelihood == "student_t":
            return eta + self._scale() * jax.random.t(key, self._df(), eta.shape)
        return jax.random.bernoulli(key, jax.nn.sigmoid(eta)).astype(eta.dtype)


class Combiner(eqx.Module):
    r"""Combiner of the guide: :math:`q(z_k \mid z_{k-1}, h^{\text{rnn}}_k)`."""

    z_to_hidden: eqx.nn.Linear
    hidden_to_loc: eqx.nn.Linear
    hidden_to_scale: eqx.nn.Linear

    def __init__(self, z_dim: int, rnn_dim: int, *, key):
        k = jax.random.split(key, 3)
        self.z_to_hidden = _mlp_layer(k[0], z_dim, rnn_dim)
        self.hidden_to_loc = _mlp_layer(k[1], rnn_dim, z_dim)
        self.hidden_to_scale = _mlp_layer(k[2], rnn_dim, z_dim)

    def __call__(self, z_prev, h_rnn):
        c = 0.5 * (jnp.tanh(self.z_to_hidden(z_prev)) + h_rnn)
        return self.hidden_to_loc(c), jax.nn.softplus(self.hidden_to_scale(c)) + MIN_SCALE


class DeepMarkovNetwork(eqx.Module):
    """All the networks of a deep Markov model and its guide (one pytree of float32 weights).

    Parameters
    ----------
    obs_dim : int
        D, number of observed columns.
    z_dim, transition_dim, emission_dim, rnn_dim : int
        Latent dimension and hidden widths of the transition, emission and guide networks.
    likelihood : {"gaussian", "student_t", "bernoulli"}
    key : jax.random key
    """

    transition: GatedTransition
    emission: Emission
    combiner: Combiner
    rnn: eqx.nn.GRUCell
    z0: jax.Array
    h0: jax.Array

    def __init__(self, obs_dim, z_dim, transition_dim, emission_dim, rnn_dim, likelihood, *, key):
        k = jax.random.split(key, 4)
        self.transition = GatedTransition(z_dim, transition_dim, key=k[0])
        self.emission = Emission(z_dim, emission_dim, obs_dim, likelihood, key=k[1])
        self.combiner = Combiner(z_dim, rnn_dim, key=k[2])
        self.rnn = eqx.nn.GRUCell(2 * obs_dim + 1, rnn_dim, key=k[3])
        self.z0 = jnp.zeros(z_dim)
        self.h0 = jnp.zeros(rnn_dim)

    @property
    def z_dim(self) -> int:
        return self.z0.shape[0]

    def guide_states(self, y, mask, delta, valid):
        """Backward GRU over one series: ``(T, rnn_dim)`` summaries of ``y_{k:T}``.

        ``y, mask`` are ``(T, D)``, ``delta, valid`` ``(T,)``; steps with ``valid`` False (padding
        after the end of the series) leave the state unchanged, so padding never changes it.
        """
        features = jnp.concatenate([jnp.where(mask, y, 0.0), mask.astype(y.dtype), delta[:, None]], axis=1)

        def step(h, inp):
            x, ok = inp
            h_new = self.rnn(x, h)
            h = jnp.where(ok, h_new, h)
            return h, h

        _, hs = jax.lax.scan(step, self.h0, (features, valid), reverse=True)
        return hs


def gaussian_kl(q_loc, q_scale, p_loc, p_scale):
    r""":math:`\mathrm{KL}(\mathcal N(q) \,\|\, \mathcal N(p))` of diagonal Gaussians, summed over the last axis."""
    ratio = (q_scale / p_scale) ** 2
    return 0.5 * jnp.sum(ratio + ((q_loc - p_loc) / p_scale) ** 2 - 1.0 - jnp.log(ratio), axis=-1)
