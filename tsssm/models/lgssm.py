r"""Linear-Gaussian state-space models: structural sums of components and a general learned SSM.

Every model here follows one small protocol used by :mod:`tsssm.inference` and the estimators:

``param_specs()``
    the parameters (:class:`~tsssm.models.constraints.ParamSpec`), in a fixed order;
``start_params(y, inputs)``
    starting values (a dict of constrained values) from the data, NaN = missing;
``system(params, times, inputs)``
    the kernels' :class:`~tsssm.kernels.kalman.StateSpaceArrays` and
    :class:`~tsssm.kernels.kalman.InitialState` for the time points ``times`` (T,) and exogenous
    ``inputs`` (T, U) or ``None``;
``state_names()``
    labels of the state entries.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from tsssm.kernels.kalman import InitialState, StateSpaceArrays
from tsssm.models.components import Component, block_diag_over_time
from tsssm.models.constraints import ParamSpec


def _regression_offset(params: dict, exog: tuple, inputs, dtype):
    """Observation offset :math:`d_t = \\beta^\\top u_t` (T, 1); a time-invariant zero without regressors."""
    if not exog:
        return jnp.zeros((1,), dtype)
    beta = jnp.stack([params[f"beta_{name}"] for name in exog])
    return (inputs @ beta)[:, None]


def _regression_specs(exog: tuple) -> tuple:
    return tuple(ParamSpec(f"beta_{name}", "real") for name in exog)


def _regression_start(y: np.ndarray, inputs) -> tuple[dict, np.ndarray]:
    """OLS start for the coefficients and the residual series the components start from."""
    if inputs is None or inputs.shape[1] == 0:
        return np.zeros(0), y
    ok = np.isfinite(y)
    beta = np.linalg.lstsq(inputs[ok], y[ok], rcond=None)[0]
    return beta, y - inputs @ beta


class StructuralModel(eqx.Module):
    r"""Sum of structural components plus irregular noise and regression on exogenous inputs.

    .. math::

        y_t = z^\top x_t + \beta^\top u_t + \varepsilon_t,
        \quad \varepsilon_t \sim N(0, \sigma^2_{irregular}),
        \qquad x_{t+1} = F x_t + \eta_t, \quad \eta_t \sim N(0, Q),

    with :math:`F, Q` block diagonal over ``components`` and :math:`z` their stacked loadings.
    ``exog`` names the regression inputs (coefficients ``beta_<name>``).

    When every component is a continuous-time one (:attr:`continuous_time`), ``system`` returns
    per-step :math:`F_t, Q_t` (leading time axis) over the gaps :math:`\Delta_t = t_{t+1} - t_t`
    of ``times``, so the likelihood is exact on any grid; otherwise the time-invariant one-step
    matrices (the data must be on a unit grid). :meth:`continuous` converts every component to
    its continuous-time counterpart.
    """

    components: tuple[Component, ...]
    irregular: bool = True
    exog: tuple[str, ...] = ()

    def __add__(self, other):
        if isinstance(other, StructuralModel):
            return StructuralModel(self.components + other.components, self.irregular and other.irregular, self.exog + other.exog)
        if isinstance(other, Component):
            return StructuralModel(self.components + (other,), self.irregular, self.exog)
        return NotImplemented

    @property
    def continuous_time(self) -> bool:
        """True when every component has an exact transition over any time gap."""
        return bool(self.components) and all(c.continuous_time for c in self.components)

    def continuous(self) -> "StructuralModel":
        """The same model with every component replaced by its continuous-time counterpart.

        Raises
        ------
        tsssm.DataError
            If a component has no continuous-time form (e.g. the dummy seasonal).
        """
        return StructuralModel(tuple(c.continuous() for c in self.components), self.irregular, self.exog)

    def with_exog(self, exog: tuple[str, ...]) -> "StructuralModel":
        """The same model with regression on the inputs named ``exog``."""
        return StructuralModel(self.components, self.irregular, tuple(exog))

    def param_specs(self):
        specs = (ParamSpec("sigma2_irregular"),) if self.irregular else ()
        for component in self.components:
            specs += component.param_specs()
        specs += _regression_specs(self.exog)
        names = [s.name for s in specs]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"two components share the parameter(s) {duplicated}: give them distinct names")
        return specs

    def state_names(self):
        return tuple(name for c in self.components for name in c.state_names())

    def start_params(self, y, inputs=None):
        y = np.asarray(y, float)[:, 0]
        beta, resid = _regression_start(y, inputs)
        out = {f"beta_{n}": b for n, b in zip(self.exog, beta)}
        for component in self.components:
            out |= component.start_params(resid)
        if self.irregular:
            out["sigma2_irregular"] = float(np.nanvar(resid))
        return out

    def system(self, params, times, inputs=None):
        blocks = [c.block(params) for c in self.components]
        if self.continuous_time:
            # F_t moves the state from times[t] to times[t + 1]; the last one is never used.
            dt = jnp.diff(times, append=times[-1:] + 1.0)
            moves = [c.transition(params, dt) for c in self.components]
            F = block_diag_over_time([m[0] for m in moves])
            Q = block_diag_over_time([m[1] for m in moves])
        else:
            F = jsl.block_diag(*[b.transition for b in blocks])
            Q = jsl.block_diag(*[b.transition_cov for b in blocks])
        H = jnp.concatenate([b.loading for b in blocks])[None, :]
        dtype = F.dtype
        R = jnp.reshape(params["sigma2_irregular"] if self.irregular else 0.0, (1, 1)).astype(dtype)
        d = _regression_offset(params, self.exog, inputs, dtype)
        arrays = StateSpaceArrays(F, Q, jnp.zeros(F.shape[-1], dtype), H, R, d)
        init = InitialState(
            jnp.concatenate([b.init_mean for b in blocks]),
            jsl.block_diag(*[b.init_cov for b in blocks]),
            jsl.block_diag(*[b.diffuse for b in blocks]),
        )
        return arrays, init


class LinearGaussianModel(eqx.Module):
    r"""General linear-Gaussian SSM whose matrices are all learned.

    .. math::

        y_t = H x_t + d + \varepsilon_t, \quad \varepsilon_t \sim N(0, R), \qquad
        x_{t+1} = F x_t + \eta_t, \quad \eta_t \sim N(0, I_k),

    with a diffuse prior on :math:`x_0`. The state noise has unit covariance to fix the scale of
    the state; the model is still identified only up to an orthogonal rotation of the state, so
    ``transition`` and ``observation`` are not unique (their likelihood, forecasts and
    predictions are).
    """

    state_dim: int
    obs_dim: int = 1

    def param_specs(self):
        k, D = self.state_dim, self.obs_dim
        return (
            ParamSpec("transition", "real", (k, k)),
            ParamSpec("observation", "real", (D, k)),
            ParamSpec("obs_offset", "real", (D,)),
            ParamSpec("obs_cov", "covariance", (D, D)),
        )

    def state_names(self):
        return tuple(f"x[{i}]" for i in range(self.state_dim))

    def start_params(self, y, inputs=None):
        y = np.asarray(y, float)
        k, D = self.state_dim, self.obs_dim
        scale = np.sqrt(np.nanvar(y, axis=0))
        rng = np.random.default_rng(0)
        observation = scale[:, None] * (np.eye(D, k) + 0.1 * rng.standard_normal((D, k))) / np.sqrt(k)
        return {
            "transition": 0.9 * np.eye(k),
            "observation": observation,
            "obs_offset": np.zeros(D),
            "obs_cov": np.diag(np.nanvar(y, axis=0) / 2.0),
        }

    def system(self, params, times, inputs=None):
        F = params["transition"]
        k = F.shape[0]
        arrays = StateSpaceArrays(
            F, jnp.eye(k, dtype=F.dtype), jnp.zeros(k, F.dtype), params["observation"], params["obs_cov"], params["obs_offset"]
        )
        return arrays, InitialState(jnp.zeros(k, F.dtype), jnp.zeros((k, k), F.dtype), jnp.eye(k, dtype=F.dtype))


class PhaseFactorModel(eqx.Module):
    r"""Factor model over the phase of short aligned series (heartbeats, cycles), as a state space.

    A series observed at phases :math:`\phi_t \in \{0, \dots, P - 1\}` (its times, e.g. the
    sample index within a beat) is a phase template plus a few factor loadings scaled by latent
    factors that are constant over the series, plus white noise:

    .. math::

        y_t = \mu_{\phi_t} + w_{\phi_t}^\top f + \varepsilon_t, \quad
        \varepsilon_t \sim N(0, \sigma^2), \qquad
        f_{t+1} = f_t, \quad f_0 \sim N(0, I_K).

    The template :math:`\mu` (``template``, (P,)), the loadings :math:`W` (``loadings``,
    (P, K)) and :math:`\sigma^2` (``sigma2_irregular``) are shared by all series of a panel (a
    pooled fit); each series has its own factors :math:`f`, integrated out by the Kalman filter.
    The joint density of a fully observed series is :math:`N(\mu, W W^\top + \sigma^2 I)`,
    probabilistic PCA (Tipping & Bishop 1999), whose maximum-likelihood solution is
    :meth:`panel_start`; the filter adds what PCA lacks: exact missing values, and the one-step
    predictive densities :math:`p(y_t \mid y_{<t})` that localise where a series departs from
    the normal shape. :math:`W` is identified up to an orthogonal rotation of the factors.
    """

    length: int
    num_factors: int = 2

    def param_specs(self):
        P, K = self.length, self.num_factors
        return (
            ParamSpec("sigma2_irregular"),
            ParamSpec("template", "real", (P,), labels=tuple(f"template[{p}]" for p in range(P))),
            ParamSpec("loadings", "real", (P, K)),
        )

    def state_names(self):
        return tuple(f"factor[{k}]" for k in range(self.num_factors))

    def start_params(self, y, inputs=None):
        """Template at the mean of ``y``, small fixed loadings, noise variance from ``y``.

        ``y`` is unaligned here (the protocol passes one series or series end to end); the
        aligned moment estimates of :meth:`panel_start` are the better start for a panel.
        """
        y = np.asarray(y, float)[:, 0]
        scale = float(np.nanstd(y)) or 1.0
        phases = np.arange(self.length)[:, None] / max(self.length - 1, 1)
        orders = np.arange(1, self.num_factors + 1)[None, :]
        return {
            "sigma2_irregular": scale**2 / 2.0,
            "template": np.full(self.length, float(np.nanmean(y))),
            "loadings": 0.1 * scale * np.cos(np.pi * orders * phases),
        }

    def panel_start(self, values: np.ndarray, phases: np.ndarray) -> dict:
        r"""Probabilistic PCA estimates from a panel: the maximum-likelihood solution for complete data.

        Parameters
        ----------
        values : array (B, T)
            One column per series, NaN where missing.
        phases : array (B, T) of int
            The phase of each value (entries with NaN values are ignored).

        Returns
        -------
        dict
            ``template`` = per-phase mean; with the eigenvalues :math:`\lambda_1 \ge \dots` and
            eigenvectors :math:`u_k` of the per-phase covariance (missing phases filled with the
            template), :math:`\sigma^2` = mean of the :math:`P - K` smallest eigenvalues and
            :math:`w_k = u_k \sqrt{\max(\lambda_k - \sigma^2, 0)}`.
        """
        B, P, K = values.shape[0], self.length, self.num_factors
        grid = np.full((B, P), np.nan)
        observed = np.isfinite(values)
        rows = np.broadcast_to(np.arange(B)[:, None], values.shape)
        grid[rows[observed], phases[observed]] = values[observed]
        template = np.nanmean(grid, axis=0)
        template = np.where(np.isfinite(template), template, float(np.nanmean(values)))
        centred = np.where(np.isfinite(grid), grid - template, 0.0)
        eigval, eigvec = np.linalg.eigh(centred.T @ centred / B)
        eigval, eigvec = eigval[::-1], eigvec[:, ::-1]
        sigma2 = max(float(np.mean(eigval[K:])), 1e-8 * float(np.mean(eigval)) + 1e-12)
        loadings = eigvec[:, :K] * np.sqrt(np.clip(eigval[:K] - sigma2, 0.0, None))
        return {"sigma2_irregular": sigma2, "template": template, "loadings": loadings}

    def system(self, params, times, inputs=None):
        phase = jnp.clip(jnp.round(times).astype(jnp.int32), 0, self.length - 1)
        loadings = params["loadings"]
        K, dtype = self.num_factors, loadings.dtype
        arrays = StateSpaceArrays(
            jnp.eye(K, dtype=dtype),
            jnp.zeros((K, K), dtype),
            jnp.zeros(K, dtype),
            loadings[phase][:, None, :],
            jnp.reshape(params["sigma2_irregular"], (1, 1)).astype(dtype),
            params["template"][phase][:, None],
        )
        return arrays, InitialState(jnp.zeros(K, dtype), jnp.eye(K, dtype=dtype), jnp.zeros((K, 0), dtype))
