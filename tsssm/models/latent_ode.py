r"""Networks of the latent neural ODE (Rubanova, Chen & Duvenaud 2019) and latent SDE (Li et al. 2020).

Both families share the encoder and the emission. For one series observed at times
:math:`0 = t_1 \le \dots \le t_T` (measured from its first time, in units of the median gap of
the training data):

**Encoder (ODE-RNN, backwards in time).** A hidden state runs from the last observation to the
first: between observations it follows a learned ODE :math:`\dot h = \phi(h)` over the gap
(``encoder_steps`` hand-written RK4 steps; inside the scan a hand-written step is several times
faster than a diffrax solve, see PITFALLS), and at each observation a GRU cell reads the values
(missing entries set to 0) and the observation mask:

.. math::

    h_k = \mathrm{GRU}\big([y_k \odot m_k, m_k],\ \mathrm{RK4}_\phi(h_{k+1}, t_{k+1} - t_k)\big).

:math:`h_k` summarises :math:`y_{k:T}`; the posterior of the initial latent state is
:math:`q(z_1 \mid y_{1:T}) = \mathcal N(\mu(h_1), \operatorname{diag}\sigma(h_1)^2)`.

**Latent ODE decoder.** :math:`\dot z = f_\theta(z)` (an autonomous MLP with tanh activations),
integrated by diffrax from :math:`t_1` to every query time, and
:math:`y_k \mid z(t_k) \sim \mathcal N(\eta(z(t_k)), \operatorname{diag}s^2)` with an MLP
:math:`\eta` and a learned scale per column (:class:`tsssm.models.deep_markov.Emission`; a
Student-t with learned degrees of freedom instead of the Gaussian with ``likelihood="student_t"``).

**Latent SDE.** Prior :math:`dz = f_\theta(z)\,dt + g\,dW` and posterior
:math:`dz = f_\psi(z, h_k)\,dt + g\,dW` on :math:`(t_{k-1}, t_k]` (the posterior drift sees the
encoder's summary of the observations still to come, as in Li et al.), with one diagonal,
state-independent diffusion :math:`g = \operatorname{softplus}(\gamma) + 10^{-3}` shared by both.
The KL divergence between the two path measures is
:math:`\tfrac12 \int |(f_\psi - f_\theta)/g|^2 dt`, accumulated along the simulated posterior path
(:func:`euler_maruyama`).

Everything here works on one series; :mod:`tsssm.inference.latent` vmaps over series and
particles. Networks compute in float32 (like the deep Markov model's).
"""

from __future__ import annotations

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp

from tsssm.models.deep_markov import MIN_SCALE, Emission

SOLVERS = {"tsit5": dfx.Tsit5, "dopri5": dfx.Dopri5, "bosh3": dfx.Bosh3, "heun": dfx.Heun, "euler": dfx.Euler}
ADAPTIVE = ("tsit5", "dopri5", "bosh3", "heun")
ADJOINTS = {"recursive": dfx.RecursiveCheckpointAdjoint, "backsolve": dfx.BacksolveAdjoint}


def rk4(flow, h, span, steps: int):
    """``steps`` classical Runge-Kutta steps of :math:`\\dot h = \\phi(h)` over ``span`` (a scalar)."""
    dt = span / steps
    for _ in range(steps):
        k1 = flow(h)
        k2 = flow(h + 0.5 * dt * k1)
        k3 = flow(h + 0.5 * dt * k2)
        k4 = flow(h + dt * k3)
        h = h + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
    return h


class ODERNNEncoder(eqx.Module):
    """Backward ODE-RNN: per observation time k, a summary ``h_k`` of ``y_{k:T}`` (see the module docstring)."""

    cell: eqx.nn.GRUCell
    flow: eqx.nn.MLP
    h0: jax.Array
    steps: int = eqx.field(static=True)

    def __init__(self, obs_dim: int, hidden: int, steps: int, *, key):
        k1, k2 = jax.random.split(key)
        self.cell = eqx.nn.GRUCell(2 * obs_dim, hidden, key=k1)
        self.flow = eqx.nn.MLP(hidden, hidden, hidden, 1, activation=jnp.tanh, key=k2)
        self.h0 = jnp.zeros(hidden)
        self.steps = steps

    def __call__(self, times, y, mask, valid):
        """``(T, hidden)`` states; ``times (T,)`` nondecreasing, ``y, mask (T, D)``, ``valid (T,)``.

        Padding (``valid`` False) leaves the state unchanged, so it never changes the result.
        """
        features = jnp.concatenate([jnp.where(mask, y, 0.0), mask.astype(y.dtype)], axis=1)

        def step(carry, inp):
            h, t_next = carry
            x, t, ok = inp
            h_new = self.cell(x, rk4(self.flow, h, t_next - t, self.steps))
            return (jnp.where(ok, h_new, h), jnp.where(ok, t, t_next)), jnp.where(ok, h_new, h)

        _, hs = jax.lax.scan(step, (self.h0, times[-1]), (features, times, valid), reverse=True)
        return hs


class _Posterior(eqx.Module):
    """:math:`q(z_1 \\mid y_{1:T})` from the encoder's first state."""

    encoder: ODERNNEncoder
    head: eqx.nn.Linear

    def __call__(self, times, y, mask, valid):
        """Mean and standard deviation of ``z_1`` ``(Z,)`` each, and the encoder states ``(T, H)``."""
        hs = self.encoder(times, y, mask, valid)
        loc, raw = jnp.split(self.head(hs[0]), 2)
        return loc, jax.nn.softplus(raw) + MIN_SCALE, hs


def _posterior(obs_dim, z_dim, hidden, encoder_steps, key):
    k1, k2 = jax.random.split(key)
    return _Posterior(ODERNNEncoder(obs_dim, hidden, encoder_steps, key=k1), eqx.nn.Linear(hidden, 2 * z_dim, key=k2))


def _dynamics(n_in, z_dim, width, key):
    return eqx.nn.MLP(n_in, z_dim, width, 2, activation=jnp.tanh, key=key)


class LatentODENetwork(eqx.Module):
    """Encoder, latent dynamics and emission of a latent ODE, plus the (static) solver settings.

    Parameters
    ----------
    obs_dim, z_dim : int
        Observed columns D and latent dimension Z.
    hidden_dim, dynamics_dim, emission_dim : int
        Widths of the encoder (GRU and its ODE), the dynamics MLP and the emission MLP.
    encoder_steps : int
        RK4 steps of the encoder's ODE per gap.
    solver : {"tsit5", "dopri5", "bosh3", "heun", "euler"}
    rtol, atol : float
        Tolerances of the adaptive step-size controller (used when ``dt`` is None).
    dt : float or None
        Fixed step (in units of the median training gap) instead of adaptive steps.
    max_steps : int
        Most solver steps per solve; a solve that needs more fails (see :meth:`trajectory`).
    adjoint : {"recursive", "backsolve"}
        How gradients flow through the solve: diffrax's checkpointed backpropagation through the
        solver (exact gradients of the discretised solve) or the continuous adjoint.
    likelihood : {"gaussian", "student_t"}
        Emission distribution per column (:class:`tsssm.models.deep_markov.Emission`).
    key : jax.random key
    """

    posterior: _Posterior
    dynamics: eqx.nn.MLP
    emission: Emission
    solver: str = eqx.field(static=True)
    rtol: float = eqx.field(static=True)
    atol: float = eqx.field(static=True)
    dt: float | None = eqx.field(static=True)
    max_steps: int = eqx.field(static=True)
    adjoint: str = eqx.field(static=True)

    def __init__(self, obs_dim, z_dim, hidden_dim, dynamics_dim, emission_dim, encoder_steps, *,
                 solver="tsit5", rtol=1e-3, atol=1e-4, dt=None, max_steps=1024, adjoint="recursive",
                 likelihood="gaussian", key):
        k = jax.random.split(key, 3)
        self.posterior = _posterior(obs_dim, z_dim, hidden_dim, encoder_steps, k[0])
        self.dynamics = _dynamics(z_dim, z_dim, dynamics_dim, k[1])
        self.emission = Emission(z_dim, emission_dim, obs_dim, likelihood, key=k[2])
        self.solver, self.rtol, self.atol, self.dt = solver, float(rtol), float(atol), dt
        self.max_steps, self.adjoint = int(max_steps), adjoint

    def trajectory(self, z0, ts):
        """Solve :math:`\\dot z = f_\\theta(z)` from ``z(0) = z0`` to the nondecreasing times ``ts (n,)``.

        Returns ``(n, Z)`` states and a bool, False when the solve failed (e.g. ``max_steps``
        reached); the states after a failure are not finite.
        """
        return solve_ode(_autonomous, self.dynamics, z0, ts, self.solver, self.rtol, self.atol, self.dt,
                         self.max_steps, self.adjoint)


def _autonomous(t, z, field):
    return field(z)


def solve_ode(vector_field, args, z0, ts, solver, rtol, atol, dt, max_steps, adjoint):
    """``vector_field(t, z, args)`` integrated by diffrax from time 0 to every time of ``ts``.

    Parameters go through ``args`` (what diffrax's continuous adjoint needs). Returns ``(n, Z)``
    states and a success flag (``throw=False``: a failed solve is reported, never raised inside jit).
    """
    adaptive = dt is None
    solution = dfx.diffeqsolve(
        dfx.ODETerm(vector_field), SOLVERS[solver](), t0=jnp.zeros((), ts.dtype), t1=ts[-1],
        dt0=None if adaptive else jnp.asarray(dt, ts.dtype), y0=z0, args=args, saveat=dfx.SaveAt(ts=ts),
        stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol) if adaptive else dfx.ConstantStepSize(),
        max_steps=max_steps, adjoint=ADJOINTS[adjoint](), throw=False,
    )
    return solution.ys, solution.result == dfx.RESULTS.successful


class LatentSDENetwork(eqx.Module):
    """Encoder, prior and posterior drifts, diffusion and emission of a latent SDE.

    Parameters are those of :class:`LatentODENetwork` without the solver settings (``likelihood``
    included); the SDE is simulated by :func:`euler_maruyama` with ``substeps`` equal steps per gap (static).
    """

    posterior: _Posterior
    prior_drift: eqx.nn.MLP
    posterior_drift: eqx.nn.MLP
    raw_diffusion: jax.Array
    emission: Emission
    substeps: int = eqx.field(static=True)

    def __init__(self, obs_dim, z_dim, hidden_dim, dynamics_dim, emission_dim, encoder_steps, substeps, *,
                 likelihood="gaussian", key):
        k = jax.random.split(key, 4)
        self.posterior = _posterior(obs_dim, z_dim, hidden_dim, encoder_steps, k[0])
        self.prior_drift = _dynamics(z_dim, z_dim, dynamics_dim, k[1])
        self.posterior_drift = _dynamics(z_dim + hidden_dim, z_dim, dynamics_dim, k[2])
        self.raw_diffusion = jnp.full((z_dim,), -1.0)  # g = softplus(-1) ~ 0.31
        self.emission = Emission(z_dim, emission_dim, obs_dim, likelihood, key=k[3])
        self.substeps = int(substeps)

    def diffusion(self):
        """The diagonal diffusion :math:`g` ``(Z,)``."""
        return jax.nn.softplus(self.raw_diffusion) + MIN_SCALE

    def drift_posterior(self, z, context):
        return self.posterior_drift(jnp.concatenate([z, context]))


def euler_maruyama(posterior_drift, prior_drift, diffusion, z0, times, contexts, key, substeps: int):
    r"""Simulate the posterior SDE on a per-series time grid and accumulate the path KL.

    On each gap :math:`(t_{k-1}, t_k]` (``times (T,)`` nondecreasing; the first gap and padding
    gaps are 0) ``substeps`` Euler-Maruyama steps of size :math:`\delta = (t_k - t_{k-1})/n` of
    :math:`dz = f_q(z, c_k)\,dt + g\,dW` are taken, with :math:`u = (f_q - f_p)/g` and

    .. math::

        \mathrm{KL}_k = \sum \tfrac12 |u|^2 \delta, \qquad
        \log\frac{dP}{dQ}\Big|_k = \sum \big(-u \cdot \Delta W - \tfrac12 |u|^2 \delta\big).

    The second is the exact log density ratio of the discretised prior and posterior paths (the
    importance weight behind scores); its expectation under the posterior is minus the first.

    Parameters
    ----------
    posterior_drift : callable ``(z (Z,), c (C,)) -> (Z,)``
    prior_drift : callable ``z -> (Z,)``
    diffusion : array (Z,)
    z0 : array (Z,)
        State at ``times[0]``.
    contexts : array (T, C)
        ``c_k``, the posterior drift's context on the gap ending at ``t_k``.
    key : jax.random key
        Step n of gap k uses ``fold_in(fold_in(key, k), n)``.
    substeps : int

    Returns
    -------
    zs : array (T, Z)
        States at the observation times.
    kl, log_ratio : arrays (T,)
        Per gap.
    """
    gaps = jnp.diff(times, prepend=times[:1])

    def gap(z, inp):
        span, c, k = inp
        dt = span / substeps
        sqrt_dt = jnp.sqrt(jnp.where(dt > 0, dt, 1.0)) * (dt > 0)
        gap_key = jax.random.fold_in(key, k)

        def step(carry, n):
            z, kl, log_ratio = carry
            fq = posterior_drift(z, c)
            u = (fq - prior_drift(z)) / diffusion
            dw = sqrt_dt * jax.random.normal(jax.random.fold_in(gap_key, n), z.shape, z.dtype)
            half_u2 = 0.5 * jnp.sum(u**2) * dt
            return (z + fq * dt + diffusion * dw, kl + half_u2, log_ratio - jnp.sum(u * dw) - half_u2), None

        zero = jnp.zeros((), z.dtype)
        (z, kl, log_ratio), _ = jax.lax.scan(step, (z, zero, zero), jnp.arange(substeps))
        return z, (z, kl, log_ratio)

    _, out = jax.lax.scan(gap, z0, (gaps, contexts, jnp.arange(times.shape[0])))
    return out
