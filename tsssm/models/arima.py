r"""Seasonal ARIMA with a deterministic trend and regression on exogenous inputs (SARIMAX).

.. math::

    \phi(L)\,\Phi(L^s)\,\Delta^d \Delta_s^D\, w_t = A(t) + \theta(L)\,\Theta(L^s)\,\varepsilon_t,
    \qquad w_t = y_t - \beta^\top u_t, \quad \varepsilon_t \sim N(0, \sigma^2),

with :math:`\phi(L) = 1 - \phi_1 L - \dots - \phi_p L^p` (``ar``),
:math:`\Phi(L^s) = 1 - \Phi_1 L^s - \dots` (``ar_seasonal``),
:math:`\theta(L) = 1 + \theta_1 L + \dots + \theta_q L^q` (``ma``),
:math:`\Theta(L^s) = 1 + \Theta_1 L^s + \dots` (``ma_seasonal``), and the trend polynomial
:math:`A(t)` = ``intercept`` + ``drift`` :math:`\cdot t` (the terms that ``trend`` selects).

The state-space form is statsmodels' ``SARIMAX`` with ``simple_differencing=False``,
``hamilton_representation=False``, ``mle_regression=True`` and ``use_exact_diffuse=True``,
state for state:

* the state is ``[d differencing states, s*D seasonal-differencing states, r ARMA states]`` with
  ``r = max(p + sP, q + sQ + 1)``; the differencing states carry the integration, so the
  likelihood, predictions and forecasts are those of the undifferenced series (no observations are
  lost to differencing);
* the ARMA part is Harvey's representation of the expanded (multiplicative) polynomials:
  transition = companion matrix with the AR coefficients in its first column, selection
  ``(1, theta_1, ..., theta_{r-1})``, no observation noise;
* the trend enters as a time-varying *state intercept* of the first ARMA state:
  :math:`c_t = \text{intercept} + \text{drift}\,(\tau_t + \text{trend\_offset})`, with
  :math:`\tau_t` = ``times[t]`` and ``c_t`` moving the state from step t to t + 1. It is
  therefore a trend of the *differenced* series: with ``d = 1`` the
  ``intercept`` is a drift of the levels and ``"t"`` a quadratic trend of the levels, exactly as in
  statsmodels. ``intercept`` is the intercept of the ARMA recursion, not the mean (the mean of the
  stationary part is ``intercept / (1 - sum of the expanded AR coefficients)``);
* exogenous regressors enter the observation intercept :math:`d_t = \beta^\top u_t`
  (regression with ARIMA errors; ``beta_<name>``);
* the differencing states start diffuse (``InitialState.diffuse``), the ARMA states from their
  stationary distribution (discrete Lyapunov equation; its mean is
  :math:`(I - T)^{-1} c_0` when there is a trend, as statsmodels' ``"stationary"`` initialisation).

**Time.** ARIMA is a discrete-time model: consecutive rows are consecutive steps whatever the
gaps in ``times`` (irregular spacing is not modelled; put the data on a regular grid with NaN for
the missing steps). ``times`` enters only the time trend, as the regressor ``times + trend_offset``.
With the data layer's times (consecutive integers from 0 on a regular grid) and the default
``trend_offset=1`` this is statsmodels' ``1, 2, ..., nobs`` and, for forecasts (masked steps
appended, or a window of future times alone), its ``nobs + 1, ...``. A series whose times start
at ``k > 0`` gets the same model with the intercept shifted by ``drift * k`` (a
reparametrisation: same likelihood at the optimum).

**Likelihood constant.** The kernels' diffuse log-likelihood equals statsmodels' exact-diffuse
``loglike`` plus :math:`\tfrac12\log 2\pi` per diffuse state (``d + sD`` of them): statsmodels keeps
the constant of the observations used up by the diffuse states, tsssm does not.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from tsssm.kernels.kalman import InitialState, StateSpaceArrays
from tsssm.kernels.linalg import solve_discrete_lyapunov
from tsssm.models.constraints import ParamSpec

TRENDS = {"n": (), "c": ("intercept",), "t": ("drift",), "ct": ("intercept", "drift")}


class _Structure(NamedTuple):
    """The parameter-free part of the system (NumPy), fixed by the orders alone."""

    transition: np.ndarray  # (N, N) differencing blocks + companion super-diagonal, AR column zero
    design: np.ndarray  # (N,)
    num_diff: int  # d + s * D: diffuse states at the front
    num_arma: int  # r = max(p + sP, q + sQ + 1)


@functools.lru_cache(maxsize=128)
def _structure(p: int, d: int, q: int, P: int, D: int, Q: int, s: int) -> _Structure:
    """statsmodels' ``SARIMAX.initial_transition`` / ``initial_design`` (Harvey representation)."""
    r = max(p + P * s, q + Q * s + 1)
    kd = d + s * D
    N = kd + r
    F = np.zeros((N, N))
    # ARMA block: companion form, AR coefficients in the first column (set by the model)
    F[kd : kd + r - 1, kd + 1 : kd + r] = np.eye(r - 1)
    # seasonal differencing blocks
    if D > 0:
        block = np.zeros((s, s))
        block[1:, :-1] = np.eye(s - 1)
        block[0, -1] = 1.0
        for j in range(D):
            start, end = d + j * s, d + (j + 1) * s
            F[start:end, start:end] = block
            if j < D - 1:
                F[start, end + s - 1] = 1.0
            F[start, kd] = 1.0
    # regular differencing
    if d > 0:
        F[np.triu_indices(d)] = 1.0
        if D > 0:
            F[:d, d:kd] = ([0.0] * (s - 1) + [1.0]) * D
        F[:d, kd] = 1.0
    design = np.r_[[1.0] * d, ([0.0] * (s - 1) + [1.0]) * D, 1.0, [0.0] * (r - 1)]
    F.setflags(write=False)
    design.setflags(write=False)
    return _Structure(F, design, kd, r)


def _lag_polynomial(coefs, lag: int, sign: float, dtype):
    """Coefficients (1 + n*lag,) of ``1 + sign * sum_i coefs_i L^(i*lag)``."""
    coefs = jnp.asarray(coefs, dtype)
    n = coefs.shape[0]
    poly = jnp.zeros(1 + n * lag, dtype).at[0].set(1.0)
    if n:
        poly = poly.at[lag * np.arange(1, n + 1)].set(sign * coefs)
    return poly


def _poly_mul(a, b):
    """Product of two polynomials given by their coefficients in increasing degree."""
    idx = (np.arange(a.shape[0])[:, None] + np.arange(b.shape[0])[None, :]).ravel()
    return jnp.zeros(a.shape[0] + b.shape[0] - 1, a.dtype).at[idx].add(jnp.outer(a, b).ravel())


def _as_tuple_of_ints(values) -> tuple:
    return tuple(int(v) for v in values)


class ARIMAModel(eqx.Module):
    r"""SARIMAX(p, d, q)(P, D, Q, s) with trend and regression on exogenous inputs.

    ``order=(p, d, q)``, ``seasonal_order=(P, D, Q, s)``, ``trend`` one of ``"n"`` (none),
    ``"c"`` (``intercept``), ``"t"`` (``drift``), ``"ct"`` (both), ``exog`` the names of the
    regression inputs (columns of ``inputs``, coefficients ``beta_<name>``), ``trend_offset``
    added to ``times`` to form the time-trend regressor (1: statsmodels' ``1, 2, ...`` for times
    ``0, 1, ...``). See the module docstring for the state-space form (statsmodels' ``SARIMAX``,
    state for state) and for the meaning of ``times``.

    Parameters, in statsmodels' order: ``intercept``, ``drift``, ``beta_<name>``..., ``ar``
    (stationary, ``ar.L1``...), ``ma`` (invertible, ``ma.L1``...), ``ar_seasonal``
    (``ar.S.L<s>``...), ``ma_seasonal`` (``ma.S.L<s>``...), ``sigma2``. Signs as statsmodels:
    :math:`y^*_t = \sum_i \phi_i y^*_{t-i} + \varepsilon_t + \sum_j \theta_j \varepsilon_{t-j}`.
    """

    order: tuple = eqx.field(default=(1, 0, 0), converter=_as_tuple_of_ints, static=True)
    seasonal_order: tuple = eqx.field(default=(0, 0, 0, 0), converter=_as_tuple_of_ints, static=True)
    trend: str = eqx.field(default="n", static=True)
    exog: tuple = eqx.field(default=(), converter=tuple, static=True)
    trend_offset: int = eqx.field(default=1, static=True)

    def __check_init__(self):
        if len(self.order) != 3 or min(self.order) < 0:
            raise ValueError(f"order must be three non-negative integers (p, d, q), got {self.order!r}")
        if len(self.seasonal_order) != 4 or min(self.seasonal_order) < 0:
            raise ValueError(f"seasonal_order must be four non-negative integers (P, D, Q, s), got {self.seasonal_order!r}")
        P, D, Q, s = self.seasonal_order
        if (P or D or Q) and s < 2:
            raise ValueError(f"a seasonal ARIMA needs a seasonal period s >= 2, got seasonal_order={self.seasonal_order!r}")
        if self.trend not in TRENDS:
            raise ValueError(f"trend must be one of {sorted(TRENDS)}, got {self.trend!r}")
        if not all(isinstance(name, str) for name in self.exog):
            raise ValueError(f"exog must be a tuple of column names, got {self.exog!r}")

    # -- structure ---------------------------------------------------------------------------------

    def with_exog(self, exog) -> "ARIMAModel":
        """The same model with regression on the inputs named ``exog``."""
        return ARIMAModel(self.order, self.seasonal_order, self.trend, tuple(exog), self.trend_offset)

    @property
    def _seasonal(self):
        P, D, Q, s = self.seasonal_order
        return (P, D, Q, s if (P or D or Q) else 0)

    @property
    def structure(self) -> _Structure:
        p, d, q = self.order
        P, D, Q, s = self._seasonal
        return _structure(p, d, q, P, D, Q, s)

    @property
    def num_diffuse(self) -> int:
        """Number of diffuse (differencing) states, ``d + s * D``."""
        return self.structure.num_diff

    def param_specs(self) -> tuple[ParamSpec, ...]:
        p, _, q = self.order
        P, _, Q, s = self._seasonal
        specs = tuple(ParamSpec(name, "real") for name in TRENDS[self.trend])
        specs += tuple(ParamSpec(f"beta_{name}", "real") for name in self.exog)
        if p:
            specs += (ParamSpec("ar", "stationary", (p,), labels=tuple(f"ar.L{i}" for i in range(1, p + 1))),)
        if q:
            specs += (ParamSpec("ma", "invertible", (q,), labels=tuple(f"ma.L{i}" for i in range(1, q + 1))),)
        if P:
            labels = tuple(f"ar.S.L{i * s}" for i in range(1, P + 1))
            specs += (ParamSpec("ar_seasonal", "stationary", (P,), labels=labels),)
        if Q:
            labels = tuple(f"ma.S.L{i * s}" for i in range(1, Q + 1))
            specs += (ParamSpec("ma_seasonal", "invertible", (Q,), labels=labels),)
        return specs + (ParamSpec("sigma2", "positive"),)

    def state_names(self) -> tuple[str, ...]:
        d = self.order[1]
        _, D, _, s = self._seasonal
        st = self.structure
        names = [f"diff[{i}]" for i in range(d)]
        names += [f"seasonal_diff[{i}]" for i in range(s * D)]
        return tuple(names + [f"arma[{i}]" for i in range(st.num_arma)])

    # -- polynomials -------------------------------------------------------------------------------

    def polynomials(self, params: dict, dtype=None):
        """Expanded coefficients ``(ar (p + sP,), ma (q + sQ,))`` in statsmodels' signs.

        ``ar`` are the coefficients of :math:`y^*_{t-i}` on the right-hand side, ``ma`` those of
        :math:`\\varepsilon_{t-j}` (the ``reduced`` polynomials of statsmodels, without the 1).
        """
        p, _, q = self.order
        P, _, Q, s = self._seasonal
        if dtype is None:
            dtype = jnp.asarray(params["sigma2"]).dtype
        ar = _lag_polynomial(params["ar"] if p else [], 1, -1.0, dtype)
        if P:
            ar = _poly_mul(ar, _lag_polynomial(params["ar_seasonal"], s, -1.0, dtype))
        ma = _lag_polynomial(params["ma"] if q else [], 1, 1.0, dtype)
        if Q:
            ma = _poly_mul(ma, _lag_polynomial(params["ma_seasonal"], s, 1.0, dtype))
        return -ar[1:], ma[1:]

    def _trend_values(self, params: dict, times, dtype):
        """State intercept of the first ARMA state: (T,) for a time trend, () for a constant, None."""
        names = TRENDS[self.trend]
        if not names:
            return None
        if "drift" not in names:
            return jnp.asarray(params["intercept"], dtype)
        t = jnp.asarray(times, dtype) + self.trend_offset
        value = jnp.asarray(params["drift"], dtype) * t
        if "intercept" in names:
            value = value + jnp.asarray(params["intercept"], dtype)
        return value

    # -- the protocol ------------------------------------------------------------------------------

    def system(self, params: dict, times, inputs=None):
        st = self.structure
        kd, r = st.num_diff, st.num_arma
        N = kd + r
        dtype = jnp.asarray(params["sigma2"]).dtype
        num_steps = times.shape[0]
        sigma2 = jnp.asarray(params["sigma2"], dtype)

        ar, ma = self.polynomials(params, dtype)
        F = jnp.asarray(st.transition, dtype)
        if ar.shape[0]:
            F = F.at[kd : kd + ar.shape[0], kd].set(ar)
        selection = jnp.zeros(r, dtype).at[0].set(1.0)
        if ma.shape[0]:
            selection = selection.at[1 : 1 + ma.shape[0]].set(ma)
        selection = jnp.zeros(N, dtype).at[kd:].set(selection)
        Q = sigma2 * jnp.outer(selection, selection)

        trend = self._trend_values(params, times, dtype)
        if trend is None:
            c = jnp.zeros(N, dtype)
        elif trend.ndim == 0:
            c = jnp.zeros(N, dtype).at[kd].set(trend)
        else:
            c = jnp.zeros((num_steps, N), dtype).at[:, kd].set(trend)

        if self.exog:
            if inputs is None or inputs.shape[-1] != len(self.exog):
                got = None if inputs is None else inputs.shape
                raise ValueError(f"ARIMAModel with exog={self.exog!r} needs inputs of shape (T, {len(self.exog)}), got {got}")
            beta = jnp.stack([jnp.asarray(params[f"beta_{name}"], dtype) for name in self.exog])
            d = (jnp.asarray(inputs, dtype) @ beta)[:, None]
        else:
            d = jnp.zeros(1, dtype)
        arrays = StateSpaceArrays(F, Q, c, jnp.asarray(st.design, dtype)[None, :], jnp.zeros((1, 1), dtype), d)

        # ARMA block: stationary distribution; unit variance first so that sigma2 -> 0 is harmless
        F_arma = F[kd:, kd:]
        sel_arma = selection[kd:]
        cov_arma = sigma2 * solve_discrete_lyapunov(F_arma, jnp.outer(sel_arma, sel_arma))
        mean = jnp.zeros(N, dtype)
        if trend is not None:
            c0 = trend if trend.ndim == 0 else trend[0]
            rhs = jnp.zeros(r, dtype).at[0].set(c0)
            mean = mean.at[kd:].set(jnp.linalg.solve(jnp.eye(r, dtype=dtype) - F_arma, rhs))
        cov = jnp.zeros((N, N), dtype).at[kd:, kd:].set(cov_arma)
        diffuse = jnp.eye(N, kd, dtype=dtype)
        return arrays, InitialState(mean, cov, diffuse)

    def start_params(self, y, inputs=None) -> dict:
        """statsmodels' ``SARIMAX.start_params``, always stationary and invertible.

        On the differenced series (NaN rows dropped): OLS for ``beta``; then conditional sum of
        squares (a long AR fit for the residuals, then a regression on lagged values and lagged
        residuals: Hannan-Rissanen) for trend and non-seasonal ARMA, and separately for the
        seasonal ARMA; coefficients that are not stationary / invertible are replaced by zeros.
        Differences from statsmodels: the time-trend regressor is aligned with the step it
        belongs to, and without ARMA terms the variance is the mean square (statsmodels uses
        the plain sum of squares when there are regressors).
        """
        y = np.asarray(y, float)
        y = y.reshape(y.shape[0], -1)[:, 0]
        p, d, q = self.order
        P, D, Q, s = self._seasonal
        num_steps = y.shape[0]
        names = TRENDS[self.trend]
        t = np.arange(num_steps, dtype=float) + self.trend_offset - 1.0  # y*_t carries c_{t-1}; times 0, 1, ...
        columns = [np.ones(num_steps) if name == "intercept" else t for name in names]
        trend_data = np.stack(columns, axis=1) if columns else np.zeros((num_steps, 0))

        endog = _difference(y, d, D, s)
        trend_data = trend_data[num_steps - endog.shape[0] :]
        exog = None
        if self.exog:
            if inputs is None:
                raise ValueError(f"ARIMAModel with exog={self.exog!r} needs inputs to start from")
            exog = _difference(np.asarray(inputs, float).reshape(num_steps, -1), d, D, s)
        ok = np.isfinite(endog)
        if exog is not None:
            ok &= np.all(np.isfinite(exog), axis=1)
            exog = exog[ok]
        endog, trend_data = endog[ok], trend_data[ok]

        out = {}
        if self.exog:
            beta = np.linalg.pinv(exog) @ endog if endog.size else np.zeros(len(self.exog))
            endog = endog - exog @ beta
            out |= {f"beta_{name}": float(b) for name, b in zip(self.exog, beta)}

        trend, ar, ma, variance = _conditional_sum_squares(endog, list(range(1, p + 1)), list(range(1, q + 1)), trend_data)
        out |= {name: float(v) for name, v in zip(names, trend)}
        _, sar, sma, seasonal_variance = _conditional_sum_squares(
            endog, [s * i for i in range(1, P + 1)], [s * i for i in range(1, Q + 1)], None
        )
        if p:
            out["ar"] = ar if _is_stable(ar) else np.zeros(p)
        if q:
            out["ma"] = ma if _is_stable(-ma) else np.zeros(q)
        if P:
            out["ar_seasonal"] = sar if _is_stable(sar) else np.zeros(P)
        if Q:
            out["ma_seasonal"] = sma if _is_stable(-sma) else np.zeros(Q)
        if variance is None:
            if seasonal_variance is not None:
                variance = seasonal_variance
            else:
                variance = float(np.mean(endog**2)) if endog.size else 1.0
        out["sigma2"] = max(float(variance), 1e-10)
        return out


def _difference(x: np.ndarray, d: int, D: int, s: int) -> np.ndarray:
    """Seasonal then regular differences along axis 0 (statsmodels' ``tools.diff``); NaN propagates."""
    for _ in range(D):
        x = x[s:] - x[:-s]
    for _ in range(d):
        x = x[1:] - x[:-1]
    return x


def _is_stable(coefs: np.ndarray, threshold: float = 1.0 - 1e-10) -> bool:
    """Whether ``1 - sum_i coefs_i z^i`` has all its roots outside the unit circle."""
    coefs = np.asarray(coefs, float)
    if coefs.size == 0:
        return True
    if not np.all(np.isfinite(coefs)):
        return False
    companion = np.zeros((coefs.size, coefs.size))
    companion[0] = coefs
    companion[1:, :-1] = np.eye(coefs.size - 1)
    return bool(np.all(np.abs(np.linalg.eigvals(companion)) < threshold))


def _lags(x: np.ndarray, lags, start: int) -> np.ndarray:
    """Columns ``x[t - lag]`` for the rows ``t = start, ..., len(x) - 1``."""
    n = x.shape[0]
    return np.stack([x[start - lag : n - lag] for lag in lags], axis=1).reshape(n - start, len(lags))


def _conditional_sum_squares(endog, ar_lags, ma_lags, trend_data):
    """statsmodels' ``SARIMAX._conditional_sum_squares`` (Hannan-Rissanen style starting values).

    Returns ``(trend (k,), ar (len(ar_lags),), ma (len(ma_lags),), variance or None)``.
    """
    k_trend = 0 if trend_data is None else trend_data.shape[1]
    k_ar = max(ar_lags, default=0)
    k_ma = max(ma_lags, default=0)
    if k_ar + k_ma + k_trend == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0), None
    k = 2 * k_ma
    r = max(k + k_ma, k_ar)
    n = endog.shape[0]
    num_params = k_trend + len(ar_lags) + len(ma_lags)
    if n <= r or (k_ma and n <= k):
        params = np.zeros(num_params)
        residuals = endog - np.mean(endog) if n else np.ones(1)
    else:
        residuals = None
        if k_ma:
            Y = endog[k:]
            X = _lags(endog, range(1, k + 1), k)
            residuals = np.concatenate([np.full(k, np.nan), Y - X @ (np.linalg.pinv(X) @ Y)])
        Y = endog[r:]
        columns = []
        if k_trend:
            columns.append(trend_data[r:])
        if ar_lags:
            columns.append(_lags(endog, ar_lags, r))
        if ma_lags:
            columns.append(_lags(residuals, ma_lags, r))
        X = np.concatenate(columns, axis=1)
        params = np.linalg.pinv(X) @ Y
        residuals = Y - X @ params
    num_ma = len(ma_lags)
    if residuals.shape[0] > max(1, num_ma):
        variance = float(np.mean(residuals[num_ma:] ** 2))
    else:
        variance = float(np.var(endog)) if n else 1.0
    trend = params[:k_trend]
    ar = params[k_trend : k_trend + len(ar_lags)]
    ma = params[k_trend + len(ar_lags) :]
    return trend, ar, ma, variance
