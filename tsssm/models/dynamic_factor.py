r"""Dynamic factor model with aggregation of low-frequency columns (mixed frequency).

On the finest time grid (e.g. monthly), with :math:`z_{i,t} = (y_{i,t} - \bar y_i) / s_i` the
standardised column :math:`i`:

.. math::

    z^*_{i,t} &= \lambda_i^\top f_t + e_{i,t}
        && \text{(latent high-frequency value of column } i\text{)} \\
    z_{i,t} &= \sum_{j=0}^{w_i - 1} \omega_{i,j}\, z^*_{i,t-j}
        && \text{(what is observed at the rows where column } i \text{ is observed)} \\
    f_t &= A_1 f_{t-1} + \dots + A_p f_{t-p} + u_t, \quad u_t \sim N(0, I_k) \\
    e_{i,t} &= \rho_i e_{i,t-1} + a_{i,t}, \quad a_{i,t} \sim N(0, \sigma_i^2)
        \quad (\rho_i = 0 \text{ without AR(1) idiosyncratic errors})

The weights :math:`\omega_i` (window :math:`w_i`) come from the column's aggregation rule
(:data:`AGGREGATION_RULES`); a high-frequency column has :math:`\omega_i = (1)`.
The state stacks :math:`f_t, \dots, f_{t-L+1}` with :math:`L = \max(p, \max_i w_i)` and, per
column that needs them, :math:`e_{i,t}, \dots, e_{i,t-n_i+1}` (:math:`n_i = w_i` when the errors
are AR(1) or :math:`w_i > 1`); a high-frequency column with i.i.d. errors keeps
:math:`e_{i,t}` as observation noise instead. This is the state-space form of statsmodels'
``DynamicFactorMQ`` (Banbura & Modugno 2014; Mariano & Murasawa 2003), generalised to any
aggregation window. Every block starts from its stationary distribution (no diffuse states).

Identification: the factor innovations have unit covariance (statsmodels' ``DynamicFactorMQ``
leaves it free and the model unidentified; its likelihood is the same after the change of basis
:math:`f \to L^{-1} f`, :math:`\Lambda \to \Lambda L`, :math:`A_j \to L^{-1} A_j L` with
:math:`L L^\top` its factor covariance). With ``k > 1`` factors the loadings are still
identified only up to an orthogonal rotation (and signs); likelihoods, forecasts and nowcasts
are not affected.

The standardisation (:math:`\bar y_i, s_i`) is part of the model, fixed when it is built: the
system arrays map the standardised model back to the data's units
(:math:`H = \operatorname{diag}(s) H^{(z)}`, :math:`d = \bar y`), so likelihoods, predictions,
forecasts and smoothed observations are all in the user's units.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from tsssm.kernels.kalman import InitialState, StateSpaceArrays
from tsssm.models.constraints import ParamSpec

#: Aggregation rules of a low-frequency column with ``r`` high-frequency steps per period.
#: ``"sum"`` and ``"mean"`` are flows (the period total / average of the latent values),
#: ``"last"`` a stock (the period-end value) and ``"mariano-murasawa"`` the growth rate of a
#: period average of levels approximated by the (unnormalised) triangular weights
#: ``1, 2, ..., r, ..., 2, 1`` on the latent high-frequency growth rates (1, 2, 3, 2, 1 for
#: quarterly from monthly, as in statsmodels' ``DynamicFactorMQ``).
AGGREGATION_RULES = ("mariano-murasawa", "sum", "mean", "last")


def aggregation_weights(rule: str, ratio: int) -> tuple[float, ...]:
    """Weights :math:`\\omega_0, \\omega_1, \\dots` on lags 0, 1, ... of the latent values."""
    if rule == "last":
        return (1.0,)
    if rule == "sum":
        return (1.0,) * ratio
    if rule == "mean":
        return (1.0 / ratio,) * ratio
    if rule == "mariano-murasawa":
        return tuple(float(min(j + 1, 2 * ratio - 1 - j)) for j in range(2 * ratio - 1))
    raise ValueError(f"unknown aggregation rule {rule!r}; use one of {AGGREGATION_RULES}")


def stationary_covariance(F, Q, num_doublings: int = 60):
    r"""Solution of :math:`P = F P F^\top + Q` for a stable ``F`` by the doubling algorithm.

    :math:`P = \sum_j F^j Q F^{j\top}`, summed :math:`2^{60}` terms deep with matrix products only
    (no LAPACK call, smooth gradients); exact to round-off unless the spectral radius of ``F``
    is within about :math:`10^{-15}` of one.
    """

    def step(carry, _):
        P, A = carry
        return (P + A @ P @ A.T, A @ A), None

    (P, _), _ = jax.lax.scan(step, (Q, F), None, length=num_doublings)
    return 0.5 * (P + P.T)


class DynamicFactorModel(eqx.Module):
    r"""Dynamic factor model on the finest grid with per-column aggregation weights.

    See the module docstring for the equations.

    Parameters
    ----------
    columns : tuple of str
        Column names (labels of parameters and states).
    k_factors, factor_order : int
        Number of factors :math:`k` and VAR order :math:`p`.
    weights : tuple of tuple of float
        Per column, the aggregation weights :math:`\omega_{i,0}, \omega_{i,1}, \dots`.
    idiosyncratic_ar1 : bool
        AR(1) idiosyncratic errors (else i.i.d.).
    mean, scale : tuple of float
        The standardisation :math:`\bar y_i, s_i` of each column.

    Parameters of the likelihood: ``loadings`` (D, k) :math:`\Lambda`, ``factor_ar`` (k, k p)
    :math:`[A_1 \dots A_p]` (stationary), ``idio_ar`` (D,) :math:`\rho` in (-1, 1) (only with
    ``idiosyncratic_ar1``) and ``idio_var`` (D,) :math:`\sigma^2`, all on the standardised scale.
    """

    columns: tuple
    k_factors: int
    factor_order: int
    weights: tuple
    idiosyncratic_ar1: bool
    mean: tuple
    scale: tuple

    # ------------------------------------------------------------------ structure
    @property
    def num_lags(self) -> int:
        return max(self.factor_order, max(len(w) for w in self.weights))

    def idio_lags(self) -> tuple[int, ...]:
        """Number of idiosyncratic states per column (0: the error is observation noise)."""
        return tuple(len(w) if (self.idiosyncratic_ar1 or len(w) > 1) else 0 for w in self.weights)

    def param_specs(self):
        D, k, p = len(self.columns), self.k_factors, self.factor_order
        specs = (
            ParamSpec(
                "loadings", "real", (D, k), labels=tuple(f"loading.{c}.f{j}" for c in self.columns for j in range(k))
            ),
            ParamSpec(
                "factor_ar", "stationary_var", (k, k * p),
                labels=tuple(f"factor_ar.L{lag + 1}.f{i}.f{j}" for i in range(k) for lag in range(p) for j in range(k)),
            ),
        )
        if self.idiosyncratic_ar1:
            specs += (ParamSpec("idio_ar", "interval", (D,), (-1.0, 1.0), tuple(f"idio_ar.{c}" for c in self.columns)),)
        return specs + (ParamSpec("idio_var", "positive", (D,), labels=tuple(f"idio_var.{c}" for c in self.columns)),)

    def state_names(self):
        names = [f"f{j}.L{lag}" for lag in range(self.num_lags) for j in range(self.k_factors)]
        for c, n in zip(self.columns, self.idio_lags()):
            names += [f"idio.{c}.L{lag}" for lag in range(n)]
        return tuple(names)

    # ------------------------------------------------------------------ start values
    def start_params(self, y, inputs=None):
        """Principal components of the standardised high-frequency columns, then regressions.

        The factors start as the first ``k`` principal components (missing entries set to the
        mean), scaled to unit innovation variance; each column's loadings regress it on its
        aggregated factors at the rows where it is observed, and its error variance is the
        residual variance (at least 0.05).
        """
        y = np.asarray(y, float)
        D, k, p = y.shape[1], self.k_factors, self.factor_order
        z = (y - np.asarray(self.mean)) / np.asarray(self.scale)
        high = [i for i, w in enumerate(self.weights) if len(w) == 1] or list(range(D))
        filled = np.nan_to_num(z[:, high])
        _, _, vt = np.linalg.svd(filled - filled.mean(0), full_matrices=False)
        factors = filled @ vt[:k].T
        factors = factors / np.maximum(factors.std(0), 1e-8)
        phi = np.zeros((k, k * p))
        if factors.shape[0] > 2:
            lag1 = np.array([np.corrcoef(f[1:], f[:-1])[0, 1] for f in factors.T])
            phi[:, :k] = np.diag(np.clip(np.nan_to_num(lag1), -0.9, 0.9))
        innov_sd = np.sqrt(1.0 - np.diagonal(phi[:, :k]) ** 2)
        loadings, idio_var = np.zeros((D, k)), np.ones(D)
        for i, w in enumerate(self.weights):
            agg = sum(wj * np.roll(factors, j, axis=0) for j, wj in enumerate(w))
            ok = np.isfinite(z[:, i])
            ok[: len(w) - 1] = False
            if ok.sum() > k:
                coef, *_ = np.linalg.lstsq(agg[ok], z[ok, i], rcond=None)
                resid = z[ok, i] - agg[ok] @ coef
                loadings[i] = coef * innov_sd
                idio_var[i] = max(float(np.var(resid)) / float(np.sum(np.square(w))), 0.05)
        out = {"loadings": loadings, "factor_ar": phi, "idio_var": idio_var}
        if self.idiosyncratic_ar1:
            out["idio_ar"] = np.zeros(D)
        return out

    # ------------------------------------------------------------------ state-space form
    def system(self, params, times, inputs=None):
        k, L, p = self.k_factors, self.num_lags, self.factor_order
        loadings = jnp.asarray(params["loadings"])
        dtype = loadings.dtype
        D = len(self.columns)
        idio_var = params["idio_var"]
        idio_ar = params["idio_ar"] if self.idiosyncratic_ar1 else jnp.zeros(D, dtype)
        lags = self.idio_lags()

        # Factor block: companion form of the VAR(p), padded to L lags.
        Ff = jnp.zeros((k * L, k * L), dtype).at[:k, : k * p].set(params["factor_ar"])
        Ff = Ff.at[k:, : k * (L - 1)].set(jnp.eye(k * (L - 1), dtype=dtype))
        Qf = jnp.zeros((k * L, k * L), dtype).at[:k, :k].set(jnp.eye(k, dtype=dtype))
        F_blocks, Q_blocks, P_blocks = [Ff], [Qf], [stationary_covariance(Ff, Qf)]

        scale = jnp.asarray(self.scale, dtype)
        H_rows, R_diag = [], []
        for i, (w, n) in enumerate(zip(self.weights, lags)):
            w_arr = jnp.asarray(w, dtype)
            factor_row = jnp.zeros((L, k), dtype).at[: len(w)].set(w_arr[:, None] * loadings[i][None, :]).reshape(-1)
            idio_row = [jnp.zeros(m, dtype) if j != i else jnp.zeros(m, dtype).at[: len(w)].set(w_arr)
                        for j, m in enumerate(lags)]
            H_rows.append(jnp.concatenate([factor_row] + idio_row))
            R_diag.append(idio_var[i] if n == 0 else jnp.zeros((), dtype))
            if n:
                Fe = jnp.zeros((n, n), dtype).at[0, 0].set(idio_ar[i])
                Fe = Fe.at[1:, :-1].set(jnp.eye(n - 1, dtype=dtype))
                Qe = jnp.zeros((n, n), dtype).at[0, 0].set(idio_var[i])
                # Stationary AR(1) autocovariances: sigma^2 rho^|a-b| / (1 - rho^2).
                gap = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
                powers = jnp.concatenate([jnp.ones(1, dtype), jnp.cumprod(jnp.full(n - 1, idio_ar[i], dtype))])
                Pe = idio_var[i] / (1.0 - idio_ar[i] ** 2) * powers[gap]
                F_blocks.append(Fe)
                Q_blocks.append(Qe)
                P_blocks.append(Pe)
        F = jsl.block_diag(*F_blocks)
        Q = jsl.block_diag(*Q_blocks)
        H = scale[:, None] * jnp.stack(H_rows)
        R = jnp.diag(scale**2 * jnp.stack(R_diag))
        N = F.shape[0]
        arrays = StateSpaceArrays(F, Q, jnp.zeros(N, dtype), H, R, jnp.asarray(self.mean, dtype))
        init = InitialState(jnp.zeros(N, dtype), jsl.block_diag(*P_blocks), jnp.zeros((N, 0), dtype))
        return arrays, init
