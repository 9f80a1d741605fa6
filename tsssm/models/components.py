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

**Time.** Every component gives its transition over a gap ``dt`` (in units of the data's time
unit) with :meth:`Component.transition`. The discrete-time components above (:class:`Level`,
:class:`Trend`, :class:`Seasonal`, :class:`Cycle`, :class:`Autoregressive`) are defined on a
grid of unit steps only; :meth:`Component.continuous` gives each one's continuous-time
counterpart (or a :class:`~tsssm.errors.DataError` when there is none):

==========================  =================================================================
discrete                    continuous-time counterpart (exact transition over any gap)
==========================  =================================================================
:class:`Level`              :class:`BrownianLevel` (the same model at ``dt = 1``)
:class:`Trend`              :class:`ContinuousTrend` (level + integrated random walk slope)
:class:`Seasonal` (trig.)   :class:`OscillatorSeasonal` (undamped stochastic oscillators)
:class:`Seasonal` (dummy)   none (use ``harmonics=``)
:class:`Cycle`              :class:`ContinuousCycle` (the same model at ``dt = 1``)
:class:`Autoregressive`     :class:`CAR` (continuous-time AR(p); OU for p = 1)
==========================  =================================================================

Variances of continuous-time components (``sigma2_level``, ``sigma2_trend``, ...) are diffusion
variances **per unit time**: over a gap ``dt`` a Brownian level moves with variance
``sigma2_level * dt``.
"""

from __future__ import annotations

import abc
import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from tsssm.errors import DataError
from tsssm.kernels import discretize
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


def _level_start(y, stochastic: bool) -> dict:
    return {"sigma2_level": float(np.var(np.diff(_observed(y))))} if stochastic else {}


def _trend_specs(stochastic_level: bool, stochastic_slope: bool) -> tuple:
    specs = (ParamSpec("sigma2_level"),) if stochastic_level else ()
    return specs + ((ParamSpec("sigma2_trend"),) if stochastic_slope else ())


def _trend_start(y, stochastic_level: bool, stochastic_slope: bool) -> dict:
    dv = float(np.var(np.diff(_observed(y))))
    out = {"sigma2_level": dv} if stochastic_level else {}
    return out | ({"sigma2_trend": dv / 100.0} if stochastic_slope else {})


def _cycle_specs(damped: bool, stochastic: bool, period_bounds: tuple) -> tuple:
    low, high = 2 * np.pi / period_bounds[1], 2 * np.pi / period_bounds[0]
    specs = (ParamSpec("sigma2_cycle"),) if stochastic else ()
    specs += (ParamSpec("frequency_cycle", "interval", bounds=(low, high)),)
    return specs + ((ParamSpec("damping_cycle", "unit"),) if damped else ())


def _cycle_start(y, damped: bool, stochastic: bool, period_bounds: tuple) -> dict:
    out = {"frequency_cycle": 2 * np.pi / np.sqrt(period_bounds[0] * period_bounds[1])}
    out |= {"sigma2_cycle": float(np.var(_observed(y))) / 10.0} if stochastic else {}
    return out | ({"damping_cycle": 0.7} if damped else {})


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

    #: True for components whose :meth:`transition` is exact over any gap ``dt``.
    continuous_time = False

    def transition(self, params: dict, dt) -> tuple:
        """``(F, Q)`` over the gap(s) ``dt`` (scalar or (T,) -> (T, n, n)).

        Discrete-time components have one step only: their matrices are broadcast over ``dt``,
        which must be 1 (the models never call this for them with other gaps).
        """
        block = self.block(params)
        shape = jnp.shape(dt) + block.transition.shape
        return jnp.broadcast_to(block.transition, shape), jnp.broadcast_to(block.transition_cov, shape)

    def continuous(self) -> "Component":
        """The continuous-time counterpart of this component (itself if it is one already).

        Raises
        ------
        DataError
            If the component has no continuous-time form.
        """
        if self.continuous_time:
            return self
        raise DataError(f"the component {type(self).__name__} has no continuous-time form, so it cannot model irregular timestamps")

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
        return _level_start(y, self.stochastic)

    def continuous(self):
        return BrownianLevel(self.stochastic)


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
        return _trend_specs(self.stochastic_level, self.stochastic_slope)

    def block(self, params):
        F = jnp.array([[1.0, 1.0], [0.0, 1.0]])
        q_level = _variance(self.stochastic_level, params, "sigma2_level")
        q_slope = _variance(self.stochastic_slope, params, "sigma2_trend")
        Q = jnp.diag(jnp.array([q_level, q_slope], dtype=F.dtype))
        return _diffuse_block(F, Q, jnp.array([1.0, 0.0]))

    def state_names(self):
        return ("level", "slope")

    def start_params(self, y):
        return _trend_start(y, self.stochastic_level, self.stochastic_slope)

    def continuous(self):
        return ContinuousTrend(self.stochastic_level, self.stochastic_slope)


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

    def continuous(self):
        if self.harmonics is None:
            raise DataError(
                f"the dummy seasonal (Seasonal(period={self.period})) has no continuous-time form, so it cannot model "
                "irregular timestamps; use the trigonometric seasonal (harmonics=h, e.g. UnobservedComponents("
                f"seasonal={self.period}, harmonics={max(1, self.period // 2)})), which becomes stochastic oscillators"
            )
        return OscillatorSeasonal(float(self.period), int(self.harmonics), self.stochastic, self.name)


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
        return _cycle_specs(self.damped, self.stochastic, self.period_bounds)

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
        return _cycle_start(y, self.damped, self.stochastic, self.period_bounds)

    def continuous(self):
        return ContinuousCycle(self.damped, self.stochastic, tuple(self.period_bounds))


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

    def continuous(self):
        return CAR(int(self.order))


# ---------------------------------------------------------------------------------------------
# Continuous-time components: exact transitions over any gap dt (in time units).


class ContinuousComponent(Component):
    """Abstract base of the continuous-time components: ``block`` is the transition over dt = 1."""

    continuous_time = True

    @abc.abstractmethod
    def transition(self, params: dict, dt) -> tuple:
        """Exact ``(F, Q)`` over the gap(s) ``dt`` (scalar or (T,) -> (T, n, n))."""

    @abc.abstractmethod
    def _initial(self, params: dict, dtype) -> tuple:
        """``(loading, init_mean, init_cov, diffuse)`` of the block."""

    def block(self, params):
        F, Q = self.transition(params, jnp.ones(()))
        loading, mean, cov, diffuse = self._initial(params, F.dtype)
        return Block(F, Q, loading, mean, cov, diffuse)


def _diffuse_start(n: int, loading, dtype) -> tuple:
    return jnp.asarray(loading, dtype), jnp.zeros(n, dtype), jnp.zeros((n, n), dtype), jnp.eye(n, dtype=dtype)


class BrownianLevel(ContinuousComponent):
    r"""Brownian (random-walk) level in continuous time: :math:`d\mu(t) = \sigma_{level}\,dW(t)`.

    Over a gap :math:`\Delta`: :math:`\mu(t + \Delta) = \mu(t) + \eta`,
    :math:`\eta \sim N(0, \sigma^2_{level}\Delta)`; ``sigma2_level`` is the variance per unit
    time. At :math:`\Delta = 1` this is :class:`Level`. Diffuse start.
    """

    stochastic: bool = True

    def param_specs(self):
        return (ParamSpec("sigma2_level"),) if self.stochastic else ()

    def transition(self, params, dt):
        return discretize.brownian(_variance(self.stochastic, params, "sigma2_level"), dt)

    def _initial(self, params, dtype):
        return _diffuse_start(1, [1.0], dtype)

    def state_names(self):
        return ("level",)

    def start_params(self, y):
        return _level_start(y, self.stochastic)


class ContinuousTrend(ContinuousComponent):
    r"""Level :math:`\mu` with a random-walk slope :math:`\nu` in continuous time.

    .. math::

        d\mu(t) = \nu(t)\,dt + \sigma_{level}\,dW_1(t), \qquad d\nu(t) = \sigma_{trend}\,dW_2(t),

    so over a gap :math:`\Delta` (see :func:`tsssm.kernels.discretize.integrated_random_walk`)

    .. math::

        F = \begin{pmatrix}1 & \Delta\\ 0 & 1\end{pmatrix}, \quad
        Q = \begin{pmatrix}\sigma^2_{level}\Delta + \sigma^2_{trend}\Delta^3/3 & \sigma^2_{trend}\Delta^2/2\\
                           \sigma^2_{trend}\Delta^2/2 & \sigma^2_{trend}\Delta\end{pmatrix}.

    ``stochastic_level=False`` is the integrated random walk (the continuous-time smooth trend,
    a cubic smoothing spline). Unlike :class:`Trend` on a unit grid, the level's noise here
    includes the integrated slope noise, so :math:`Q` is not diagonal at :math:`\Delta = 1`.
    Variances are per unit time. Diffuse start.
    """

    stochastic_level: bool = True
    stochastic_slope: bool = True

    def param_specs(self):
        return _trend_specs(self.stochastic_level, self.stochastic_slope)

    def transition(self, params, dt):
        q_level = _variance(self.stochastic_level, params, "sigma2_level")
        q_slope = _variance(self.stochastic_slope, params, "sigma2_trend")
        return discretize.integrated_random_walk(q_level, q_slope, dt)

    def _initial(self, params, dtype):
        return _diffuse_start(2, [1.0, 0.0], dtype)

    def state_names(self):
        return ("level", "slope")

    def start_params(self, y):
        return _trend_start(y, self.stochastic_level, self.stochastic_slope)


class OscillatorSeasonal(ContinuousComponent):
    r"""Seasonal pattern of ``period`` (in time units) as ``harmonics`` stochastic oscillators.

    For :math:`\omega_j = 2\pi j / \text{period}`, :math:`j = 1..h`,

    .. math::

        d\begin{pmatrix}\gamma_j\\ \gamma^*_j\end{pmatrix} =
        \omega_j\begin{pmatrix}0 & 1\\ -1 & 0\end{pmatrix}
        \begin{pmatrix}\gamma_j\\ \gamma^*_j\end{pmatrix} dt + \sigma_{name}\,dW_j(t),

    so over a gap :math:`\Delta` each pair rotates by :math:`\omega_j\Delta` and receives noise
    :math:`N(0, \sigma^2_{name}\Delta I_2)`; the observation loads every :math:`\gamma_j`. This is
    the continuous-time form of the trigonometric :class:`Seasonal` (equal to it at
    :math:`\Delta = 1` except at the Nyquist harmonic, whose starred state matters off the grid
    and is kept here). ``period`` may be any positive number; ``sigma2_<name>`` is per unit time.
    """

    period: float = 12.0
    harmonics: int = 1
    stochastic: bool = True
    name: str = "seasonal"

    def __check_init__(self):
        if not float(self.period) > 0.0:
            raise ValueError(f"OscillatorSeasonal period must be positive, got {self.period!r}")
        if int(self.harmonics) < 1:
            raise ValueError(f"harmonics must be >= 1, got {self.harmonics!r}")

    def param_specs(self):
        return (ParamSpec(f"sigma2_{self.name}"),) if self.stochastic else ()

    def transition(self, params, dt):
        q = _variance(self.stochastic, params, f"sigma2_{self.name}")
        parts = [
            discretize.damped_rotation(q, 2.0 * np.pi * j / float(self.period), 0.0, dt) for j in range(1, self.harmonics + 1)
        ]
        return block_diag_over_time([p[0] for p in parts]), block_diag_over_time([p[1] for p in parts])

    def _initial(self, params, dtype):
        return _diffuse_start(2 * self.harmonics, [1.0, 0.0] * self.harmonics, dtype)

    def state_names(self):
        return tuple(n for j in range(1, self.harmonics + 1) for n in (f"{self.name}[{j}]", f"{self.name}[{j}]*"))

    def start_params(self, y):
        return {f"sigma2_{self.name}": float(np.var(_observed(y))) / 100.0} if self.stochastic else {}


def block_diag_over_time(blocks: list) -> jnp.ndarray:
    """Block-diagonal stacking of (..., n_i, n_i) arrays with the same leading axes."""
    if len(blocks) == 1:
        return blocks[0]
    fn = jsl.block_diag
    for _ in range(blocks[0].ndim - 2):
        fn = jax.vmap(fn)
    return fn(*blocks)


class ContinuousCycle(ContinuousComponent):
    r"""Stochastic damped cycle in continuous time (a damped stochastic oscillator).

    .. math::

        d\begin{pmatrix}c\\ c^*\end{pmatrix} =
        \begin{pmatrix}-\lambda & \omega\\ -\omega & -\lambda\end{pmatrix}
        \begin{pmatrix}c\\ c^*\end{pmatrix} dt + \sigma_{cycle}\,dW(t),
        \qquad \rho = e^{-\lambda},

    so over a gap :math:`\Delta`: :math:`F = \rho^\Delta R(\omega\Delta)`,
    :math:`Q = \sigma^2_{cycle}(1 - \rho^{2\Delta}) / (-2\log\rho)\,I_2`
    (:func:`tsssm.kernels.discretize.damped_rotation`). Parameters keep the names and the
    meaning per unit time of :class:`Cycle`: ``frequency_cycle`` :math:`\omega` (radians per time
    unit, periods inside ``period_bounds`` time units), ``damping_cycle`` :math:`\rho \in (0, 1)`
    (amplitude kept after one time unit), ``sigma2_cycle`` (variance per unit time). The
    transition equals :class:`Cycle`'s at :math:`\Delta = 1`; the noise variance there is
    :math:`\sigma^2_{cycle}(1 - \rho^2)/(-2\log\rho)` rather than :math:`\sigma^2_{cycle}`.
    """

    damped: bool = True
    stochastic: bool = True
    period_bounds: tuple = (2.0, 50.0)

    def param_specs(self):
        return _cycle_specs(self.damped, self.stochastic, self.period_bounds)

    def transition(self, params, dt):
        decay = -jnp.log(params["damping_cycle"]) if self.damped else 0.0
        q = _variance(self.stochastic, params, "sigma2_cycle")
        return discretize.damped_rotation(q, params["frequency_cycle"], decay, dt)

    def _initial(self, params, dtype):
        return _diffuse_start(2, [1.0, 0.0], dtype)

    def state_names(self):
        return ("cycle", "cycle*")

    def start_params(self, y):
        return _cycle_start(y, self.damped, self.stochastic, self.period_bounds)


def car_drift(coefs) -> jnp.ndarray:
    r"""Companion drift matrix of :math:`x^{(p)} + a_1 x^{(p-1)} + \dots + a_p x` (state
    :math:`(x, x', \dots, x^{(p-1)})`): ones on the superdiagonal, last row :math:`-(a_p, \dots, a_1)`."""
    p = coefs.shape[0]
    A = jnp.zeros((p, p), coefs.dtype).at[:-1, 1:].set(jnp.eye(p - 1, dtype=coefs.dtype))
    return A.at[-1, :].set(-coefs[::-1])


class CAR(ContinuousComponent):
    r"""Continuous-time autoregression CAR(p) (CARMA(p, 0)); the Ornstein-Uhlenbeck process for p = 1.

    .. math::

        x^{(p)}(t) + a_1 x^{(p-1)}(t) + \dots + a_p x(t) = \sigma_{ar}\,\frac{dW(t)}{dt},

    in state form :math:`dX = A X\,dt + e_p\,\sigma_{ar}\,dW` with
    :math:`X = (x, x', \dots, x^{(p-1)})` and :math:`A` = :func:`car_drift`; the observation loads
    :math:`x`. Over a gap :math:`\Delta` the transition is the exact Van Loan discretisation
    (:func:`tsssm.kernels.discretize.van_loan`), in closed form for p = 1:
    :math:`F = e^{-a_1\Delta}`, :math:`Q = \sigma^2_{ar}(1 - e^{-2a_1\Delta})/(2a_1)`.
    The coefficients ``car`` (labelled ``car.a1`` ...) are constrained to a stable (Hurwitz)
    polynomial, so the process is stationary; it starts from its stationary distribution
    (the solution of :math:`A P + P A^\top + \sigma^2_{ar} e_p e_p^\top = 0`).
    ``sigma2_ar`` is the diffusion variance per unit time; :math:`1/a_1` is the OU time scale.
    """

    order: int = 1

    def __check_init__(self):
        if int(self.order) < 1:
            raise ValueError(f"CAR order must be >= 1, got {self.order!r}")

    def param_specs(self):
        labels = tuple(f"car.a{i + 1}" for i in range(self.order))
        return (ParamSpec("sigma2_ar"), ParamSpec("car", "hurwitz", (self.order,), labels=labels))

    def _diffusion(self, params):
        p = self.order
        return jnp.zeros((p, p), params["car"].dtype).at[-1, -1].set(params["sigma2_ar"])

    def transition(self, params, dt):
        coefs = params["car"]
        if self.order == 1:
            return discretize.ornstein_uhlenbeck(params["sigma2_ar"], coefs[0], dt)
        return discretize.van_loan(car_drift(coefs), self._diffusion(params), dt)

    def _initial(self, params, dtype):
        p = self.order
        coefs = params["car"]
        if p == 1:
            cov = jnp.reshape(params["sigma2_ar"] / (2.0 * coefs[0]), (1, 1))
        else:
            A = car_drift(coefs)
            eye = jnp.eye(p, dtype=A.dtype)
            lyap = jnp.kron(eye, A) + jnp.kron(A, eye)  # vec(A P + P A^T) for row-major vec
            cov = jnp.linalg.solve(lyap, -self._diffusion(params).reshape(-1)).reshape(p, p)
            cov = 0.5 * (cov + cov.T)
        loading = jnp.zeros(p, dtype).at[0].set(1.0)
        return loading, jnp.zeros(p, dtype), cov.astype(dtype), jnp.zeros((p, 0), dtype)

    def state_names(self):
        return ("ar",) + tuple(f"ar'{'' if i == 1 else i}" for i in range(1, self.order))

    def start_params(self, y):
        # (s + 1)^p: a time scale of one unit; for p = 1 the stationary variance is then var(y) / 2
        coefs = np.array([math.comb(self.order, k) for k in range(1, self.order + 1)], float)
        return {"sigma2_ar": float(np.var(_observed(y))), "car": coefs}
