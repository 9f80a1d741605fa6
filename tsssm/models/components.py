r"""Structural (unobserved-components) building blocks of a univariate linear-Gaussian model.

Each component owns a block of the state vector and contributes to the observation

.. math::

    y_t = \sum_j z_j^\top x^{(j)}_t + \beta^\top u_t + \varepsilon_t, \qquad
    x^{(j)}_{t+1} = F_j x^{(j)}_t + \eta^{(j)}_t, \quad \eta^{(j)}_t \sim N(0, Q_j),

and components add up with ``+`` into a :class:`tsssm.models.lgssm.StructuralModel` whose
transition is block diagonal. On a regular grid each block reproduces the matching component of
statsmodels' ``UnobservedComponents`` (same matrices, same parameter meaning), with parameter
names written with underscores (``sigma2_level`` for ``sigma2.level``). Non-stationary blocks
start from a diffuse prior; the autoregressive block from its stationary distribution.
"""

from __future__ import annotations

import abc
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from tsssm.kernels.linalg import solve_discrete_lyapunov
from tsssm.models.constraints import ParamSpec


class Block(NamedTuple):
    """A component's share of the system: F, Q (n, n), loading z (n,), prior mean, cov, diffuse (n, k)."""

    transition: jnp.ndarray
    transition_cov: jnp.ndarray
    loading: jnp.ndarray
    init_mean: jnp.ndarray
    init_cov: jnp.ndarray
    diffuse: jnp.ndarray


def _diffuse_block(F, Q, loading) -> Block:
    n = F.shape[0]
    return Block(F, Q, loading, jnp.zeros(n), jnp.zeros((n, n)), jnp.eye(n))


def _variance(stochastic: bool, params: dict, name: str):
    return params[name] if stochastic else 0.0


def _observed(y: np.ndarray) -> np.ndarray:
    return y[np.isfinite(y)]


class Component(eqx.Module):
    """Abstract base: one block of the state with its own parameters."""

    @abc.abstractmethod
    def param_specs(self) -> tuple[ParamSpec, ...]:
        """The parameters this component needs."""

    @abc.abstractmethod
    def block(self, params: dict) -> Block:
        """The component's system matrices given constrained ``params`` (a dict by name)."""

    @abc.abstractmethod
    def state_names(self) -> tuple[str, ...]:
        """Names of the state entries this component owns."""

    @abc.abstractmethod
    def start_params(self, y: np.ndarray) -> dict:
        """Starting values for the optimiser from the observed series (NaN = missing)."""

    def __add__(self, other):
        from tsssm.models.lgssm import StructuralModel

        return StructuralModel((self,)) + other


class Level(Component):
    r"""Random-walk level: :math:`\mu_{t+1} = \mu_t + \eta_t`, :math:`\eta_t \sim N(0, \sigma^2_{level})`.

    With ``stochastic=False`` the level is a constant (estimated through the diffuse prior).
    """

    stochastic: bool = True

    def param_specs(self):
        return (ParamSpec("sigma2_level"),) if self.stochastic else ()

    def block(self, params):
        return _diffuse_block(jnp.eye(1), jnp.eye(1) * _variance(self.stochastic, params, "sigma2_level"), jnp.ones(1))

    def state_names(self):
        return ("level",)

    def start_params(self, y):
        return {"sigma2_level": float(np.var(np.diff(_observed(y))))} if self.stochastic else {}


class Trend(Component):
    r"""Local linear trend: level :math:`\mu` and slope :math:`\nu`.

    .. math::

        \mu_{t+1} = \mu_t + \nu_t + \eta_t, \quad \nu_{t+1} = \nu_t + \zeta_t,
        \quad \eta_t \sim N(0, \sigma^2_{level}), \ \zeta_t \sim N(0, \sigma^2_{trend}).

    ``stochastic_level=False`` gives the smooth trend (integrated random walk);
    both False a deterministic linear trend.
    """

    stochastic_level: bool = True
    stochastic_slope: bool = True

    def param_specs(self):
        specs = (ParamSpec("sigma2_level"),) if self.stochastic_level else ()
        return specs + ((ParamSpec("sigma2_trend"),) if self.stochastic_slope else ())

    def block(self, params):
        F = jnp.array([[1.0, 1.0], [0.0, 1.0]])
        q_level = _variance(self.stochastic_level, params, "sigma2_level")
        q_slope = _variance(self.stochastic_slope, params, "sigma2_trend")
        Q = jnp.diag(jnp.array([q_level, q_slope], dtype=F.dtype))
        return _diffuse_block(F, Q, jnp.array([1.0, 0.0]))

    def state_names(self):
        return ("level", "slope")

    def start_params(self, y):
        dv = float(np.var(np.diff(_observed(y))))
        out = {"sigma2_level": dv} if self.stochastic_level else {}
        return out | ({"sigma2_trend": dv / 100.0} if self.stochastic_slope else {})


def _rotation(angle: float):
    """2 x 2 rotation by ``angle``; at the Nyquist angle pi only the 1 x 1 block [-1] is identified."""
    c, s = np.cos(angle), np.sin(angle)
    if np.isclose(angle, np.pi):
        return -jnp.ones((1, 1))
    return jnp.array([[c, s], [-s, c]])


class Seasonal(Component):
    r"""Seasonal pattern of ``period`` s, in dummy or trigonometric form.

    Dummy form (``harmonics=None``), s - 1 states:
    :math:`\gamma_{t+1} = -\sum_{j=1}^{s-1} \gamma_{t+1-j} + \omega_t`,
    :math:`\omega_t \sim N(0, \sigma^2_{name})`.

    Trigonometric form with ``harmonics`` h, 2h states: for :math:`\lambda_j = 2\pi j / s`,

    .. math::

        \begin{pmatrix}\gamma_{j,t+1}\\ \gamma^*_{j,t+1}\end{pmatrix} =
        \begin{pmatrix}\cos\lambda_j & \sin\lambda_j\\ -\sin\lambda_j & \cos\lambda_j\end{pmatrix}
        \begin{pmatrix}\gamma_{j,t}\\ \gamma^*_{j,t}\end{pmatrix} + \omega_{j,t},
        \quad \omega_{j,t} \sim N(0, \sigma^2_{name} I_2),

    and the observation loads every :math:`\gamma_{j,t}` (statsmodels' ``freq_seasonal``). At the
    Nyquist frequency (:math:`j = s/2`) the starred state never reaches the observation, so it is
    left out (one state instead of two; the likelihood is unchanged).
    ``name`` prefixes the variance, so two seasonals can coexist (``name="weekly"``).
    """

    period: int = 12
    harmonics: int | None = None
    stochastic: bool = True
    name: str = "seasonal"

    def __check_init__(self):
        if int(self.period) < 2:
            raise ValueError(f"Seasonal period must be an integer >= 2, got {self.period!r}")
        if self.harmonics is not None and not 1 <= int(self.harmonics) <= self.period // 2:
            raise ValueError(f"harmonics must be between 1 and period // 2 = {self.period // 2}, got {self.harmonics}")

    @property
    def _variance_name(self):
        return f"sigma2_{self.name}"

    def param_specs(self):
        return (ParamSpec(self._variance_name),) if self.stochastic else ()

    def block(self, params):
        q = _variance(self.stochastic, params, self._variance_name)
        if self.harmonics is None:
            n = self.period - 1
            F = jnp.zeros((n, n)).at[0, :].set(-1.0).at[1:, :-1].set(jnp.eye(n - 1))
            Q = jnp.zeros((n, n)).at[0, 0].set(q)
            return _diffuse_block(F, Q, jnp.zeros(n).at[0].set(1.0))
        blocks = [_rotation(2.0 * np.pi * j / self.period) for j in range(1, self.harmonics + 1)]
        F = jsl.block_diag(*blocks)
        loading = jnp.concatenate([jnp.zeros(b.shape[0]).at[0].set(1.0) for b in blocks])
        return _diffuse_block(F, q * jnp.eye(F.shape[0]), loading)

    def state_names(self):
        if self.harmonics is None:
            return tuple(f"{self.name}[{i}]" for i in range(self.period - 1))
        names = []
        for j in range(1, self.harmonics + 1):
            names += [f"{self.name}[{j}]"] + ([] if 2 * j == self.period else [f"{self.name}[{j}]*"])
        return tuple(names)

    def start_params(self, y):
        return {self._variance_name: float(np.var(_observed(y))) / 100.0} if self.stochastic else {}


class Cycle(Component):
    r"""Stochastic, optionally damped, cycle.

    .. math::

        \begin{pmatrix}c_{t+1}\\ c^*_{t+1}\end{pmatrix} = \rho
        \begin{pmatrix}\cos\lambda & \sin\lambda\\ -\sin\lambda & \cos\lambda\end{pmatrix}
        \begin{pmatrix}c_t\\ c^*_t\end{pmatrix} + \kappa_t,
        \quad \kappa_t \sim N(0, \sigma^2_{cycle} I_2).

    The frequency :math:`\lambda` (``frequency_cycle``) is constrained to periods
    :math:`2\pi/\lambda` inside ``period_bounds`` (in time steps, default 2 to 50); the damping :math:`\rho \in (0, 1)` (``damping_cycle``) is estimated when ``damped=True``.
    """

    damped: bool = True
    stochastic: bool = True
    period_bounds: tuple = (2.0, 50.0)

    def param_specs(self):
        low, high = 2 * np.pi / self.period_bounds[1], 2 * np.pi / self.period_bounds[0]
        specs = (ParamSpec("sigma2_cycle"),) if self.stochastic else ()
        specs += (ParamSpec("frequency_cycle", "interval", bounds=(low, high)),)
        return specs + ((ParamSpec("damping_cycle", "unit"),) if self.damped else ())

    def block(self, params):
        lam = params["frequency_cycle"]
        rho = params["damping_cycle"] if self.damped else 1.0
        c, s = jnp.cos(lam), jnp.sin(lam)
        F = rho * jnp.stack([jnp.stack([c, s]), jnp.stack([-s, c])])
        Q = jnp.eye(2) * _variance(self.stochastic, params, "sigma2_cycle")
        return _diffuse_block(F, Q, jnp.array([1.0, 0.0]))

    def state_names(self):
        return ("cycle", "cycle*")

    def start_params(self, y):
        out = {"frequency_cycle": 2 * np.pi / np.sqrt(self.period_bounds[0] * self.period_bounds[1])}
        out |= {"sigma2_cycle": float(np.var(_observed(y))) / 10.0} if self.stochastic else {}
        return out | ({"damping_cycle": 0.7} if self.damped else {})


def companion(coefs):
    """Companion matrix of an AR polynomial with coefficients ``coefs`` (p,)."""
    p = coefs.shape[0]
    return jnp.zeros((p, p), coefs.dtype).at[0, :].set(coefs).at[1:, :-1].set(jnp.eye(p - 1))


class Autoregressive(Component):
    r"""Stationary AR(p) component in companion form, started from its stationary distribution.

    .. math::

        a_{t+1} = \phi_1 a_t + \dots + \phi_p a_{t-p+1} + \xi_t, \quad \xi_t \sim N(0, \sigma^2_{ar}).

    The coefficients (``ar``, labelled ``ar.L1`` ... ``ar.Lp``) are constrained to the
    stationary region.
    """

    order: int = 1

    def __check_init__(self):
        if int(self.order) < 1:
            raise ValueError(f"Autoregressive order must be >= 1, got {self.order!r}")

    def param_specs(self):
        labels = tuple(f"ar.L{i + 1}" for i in range(self.order))
        return (ParamSpec("sigma2_ar"), ParamSpec("ar", "stationary", (self.order,), labels=labels))

    def block(self, params):
        F = companion(params["ar"])
        Q = jnp.zeros_like(F).at[0, 0].set(params["sigma2_ar"])
        init_cov = solve_discrete_lyapunov(F, Q)
        return Block(F, Q, jnp.zeros(self.order).at[0].set(1.0), jnp.zeros(self.order), init_cov, jnp.zeros((self.order, 0)))

    def state_names(self):
        return tuple(f"ar[{i}]" for i in range(self.order))

    def start_params(self, y):
        return {"sigma2_ar": float(np.var(_observed(y))) / 2.0, "ar": np.zeros(self.order) + 0.1}
