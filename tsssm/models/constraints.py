r"""Parameter specifications and the maps between constrained and unconstrained values.

Optimisers and samplers work on an unconstrained real vector; models see constrained values.
Each :class:`ParamSpec` names one parameter, its shape and its constraint ``kind``:

====================  ========================================================================
kind                  constrained value from unconstrained :math:`x`
====================  ========================================================================
``"real"``            :math:`x`
``"positive"``        :math:`x^2` (variances; reaches the zero boundary, as in statsmodels)
``"unit"``            :math:`1 / (1 + e^{-x})`, in (0, 1)
``"interval"``        :math:`a + (b - a) / (1 + e^{-x})`, in (a, b) given by ``bounds``
``"stationary"``      AR coefficients of a stationary AR(p): partial autocorrelations
                      :math:`r_k = x_k / \sqrt{1 + x_k^2}` mapped by the Durbin-Levinson recursion
                      (Monahan 1984), so every unconstrained vector is a stationary polynomial
``"invertible"``      the same map with the sign convention of MA polynomials
``"stationary_var"``  coefficients ``[A_1 ... A_p]`` (shape ``(k, k p)``) of a stationary VAR(p)
                      with unit innovation covariance: each ``k x k`` block :math:`X_s` gives a
                      partial autocorrelation :math:`P_s = (I + X_s X_s^\top)^{-1/2} X_s` (singular
                      values below 1), mapped to the coefficients by the multivariate
                      Durbin-Levinson recursion of Ansley & Kohn (1986), as statsmodels'
                      ``constrain_stationary_multivariate`` does
``"hurwitz"``         coefficients :math:`a_1..a_p` of a stable (Hurwitz) polynomial
                      :math:`s^p + a_1 s^{p-1} + \dots + a_p` (every root in the left half-plane):
                      the product of quadratic factors :math:`s^2 + e^{x_{2k}} s + e^{x_{2k+1}}`
                      and, for odd p, a linear factor :math:`s + e^{x_{p-1}}`
``"covariance"``      a covariance matrix :math:`L L^\top`, :math:`L` lower triangular with
                      :math:`\exp` on its diagonal; unconstrained shape ``(n (n + 1) / 2,)``
====================  ========================================================================
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.optimize

from tsssm._config import jit


class ParamSpec(NamedTuple):
    """One model parameter: ``name``, constraint ``kind``, constrained ``shape``, ``bounds``.

    ``labels`` name the elements of a vector parameter in tables (e.g. ``ar.L1``).
    """

    name: str
    kind: str = "positive"
    shape: tuple = ()
    bounds: tuple = (0.0, 1.0)
    labels: tuple = ()


def _pacf_to_ar(pacf):
    """Durbin-Levinson: partial autocorrelations (p,) -> AR coefficients (p,) of a stationary AR(p)."""
    phi = jnp.zeros((0,), pacf.dtype)
    for k in range(pacf.shape[0]):
        r = pacf[k]
        phi = jnp.concatenate([phi - r * phi[::-1], r[None]])
    return phi


def _ar_to_pacf(phi):
    """Inverse of :func:`_pacf_to_ar` (NumPy; used only to start the optimiser)."""
    phi = np.asarray(phi, float)
    pacf = np.zeros_like(phi)
    for k in range(phi.shape[0] - 1, -1, -1):
        r = phi[k]
        pacf[k] = r
        if k:
            phi = (phi[:k] + r * phi[:k][::-1]) / (1.0 - r * r)
    return pacf


def _chol_solve_t(factor, b):
    """``factor^{-T} b`` for a lower-triangular ``factor``."""
    return jsl.solve_triangular(factor, b, lower=True, trans="T")


def _var_from_pacf(pacf: list):
    r"""Multivariate Durbin-Levinson (Ansley & Kohn 1986): partial autocorrelations -> VAR blocks.

    ``pacf`` holds p matrices (k, k) with singular values below 1. The recursion runs with the
    innovation variance :math:`c I` (:math:`c = (p + k)^{10}`, statsmodels' choice, which keeps
    the intermediate factorisations well conditioned) and the coefficients are finally
    transformed to unit innovation covariance.
    """
    order, k = len(pacf), pacf[0].shape[0]
    eye = jnp.eye(k, dtype=pacf[0].dtype)
    error_variance = eye * float(order + k) ** 10
    forward_var, backward_var = [error_variance], [error_variance]
    factor = jnp.linalg.cholesky(error_variance)
    forward_fac, backward_fac = [factor], [factor]
    forwards, backwards = [], []
    for s in range(order):
        prev_f, prev_b = forwards, backwards
        new_f = forward_fac[s] @ _chol_solve_t(backward_fac[s], pacf[s].T).T
        new_b = backward_fac[s] @ _chol_solve_t(forward_fac[s], pacf[s]).T
        tmp = new_f @ backward_var[s]
        forwards = [prev_f[j] - new_f @ prev_b[s - (j + 1)] for j in range(s)] + [new_f]
        backwards = [prev_b[j] - new_b @ prev_f[s - (j + 1)] for j in range(s)] + [new_b]
        forward_var.append(forward_var[s] - tmp @ forwards[s].T)
        backward_var.append(backward_var[s] - backwards[s] @ forward_var[s] @ backwards[s].T)
        forward_fac.append(jnp.linalg.cholesky(forward_var[s + 1]))
        backward_fac.append(jnp.linalg.cholesky(backward_var[s + 1]))
    # Change of basis to unit innovation covariance: T = chol(I) chol(Sigma)^{-1}.
    transform = jsl.solve_triangular(forward_fac[-1], eye, lower=True)
    inv_transform = forward_fac[-1]
    return [transform @ f @ inv_transform for f in forwards]


def _constrain_var(x):
    k = x.shape[0]
    order = x.shape[1] // k
    eye = jnp.eye(k, dtype=x.dtype)
    pacf = []
    for s in range(order):
        block = x[:, s * k : (s + 1) * k]
        chol = jnp.linalg.cholesky(eye + block @ block.T)
        pacf.append(jsl.solve_triangular(chol, block, lower=True))
    return jnp.concatenate(_var_from_pacf(pacf), axis=1)


def _var_residual(z, value):
    """``constrain(z) - value`` for the stationary-VAR map, flattened (``value`` fixes the shape)."""
    return jnp.ravel(_constrain_var(z.reshape(value.shape)) - value)


# compiled once per VAR shape: the least squares below calls them at every iteration
_var_residual_jit = jit(_var_residual)
_var_residual_jacobian = jit(jax.jacfwd(_var_residual))


def _unconstrain_var(value: np.ndarray) -> np.ndarray:
    """Numerical inverse of the ``"stationary_var"`` map (least squares; used only for starting values)."""
    if not np.any(value):
        return np.zeros_like(value)
    with jax.enable_x64(True):
        target = jnp.asarray(value, jnp.float64)
        res = scipy.optimize.least_squares(
            lambda z: np.asarray(_var_residual_jit(jnp.asarray(z), target)), np.zeros(value.size),
            jac=lambda z: np.asarray(_var_residual_jacobian(jnp.asarray(z), target)),
            xtol=1e-14, ftol=1e-14, gtol=1e-14,
        )
    if np.max(np.abs(res.fun)) > 1e-6:
        raise ValueError("the VAR coefficients are not stationary (or too close to a unit root) to start from")
    return res.x.reshape(value.shape)
def _hurwitz_from_factors(x):
    """Unconstrained (p,) -> coefficients a_1..a_p of a product of stable quadratic/linear factors."""
    p = x.shape[0]
    poly = jnp.ones((1,), x.dtype)
    for k in range(0, p - 1, 2):
        poly = jnp.convolve(poly, jnp.stack([jnp.ones((), x.dtype), jnp.exp(x[k]), jnp.exp(x[k + 1])]))
    if p % 2:
        poly = jnp.convolve(poly, jnp.stack([jnp.ones((), x.dtype), jnp.exp(x[p - 1])]))
    return poly[1:]


def _hurwitz_to_factors(coefs) -> np.ndarray:
    """Inverse of :func:`_hurwitz_from_factors` (NumPy; roots grouped in pairs, the last one alone)."""
    coefs = np.asarray(coefs, float)
    p = coefs.shape[0]
    roots = np.roots(np.concatenate([[1.0], coefs]))
    scale = np.maximum(np.abs(roots), 1e-300)
    upper = roots[roots.imag > 1e-7 * scale]  # one root of each complex-conjugate pair
    reals = np.sort(roots[np.abs(roots.imag) <= 1e-7 * scale].real)
    factors = [(-2.0 * r.real, abs(r) ** 2) for r in upper]
    factors += [(-(reals[k] + reals[k + 1]), reals[k] * reals[k + 1]) for k in range(0, len(reals) - 1, 2)]
    out = np.zeros(p)
    for k, (b, c) in enumerate(factors):
        out[2 * k], out[2 * k + 1] = np.log(max(b, 1e-12)), np.log(max(c, 1e-12))
    if p % 2:
        out[p - 1] = np.log(max(-reals[-1], 1e-12))
    return out


def constrain(spec: ParamSpec, x):
    """Map an unconstrained array to the constrained value of ``spec``."""
    kind = spec.kind
    if kind == "real":
        return x
    if kind == "positive":
        return x**2
    if kind == "unit":
        return 1.0 / (1.0 + jnp.exp(-x))
    if kind == "interval":
        low, high = spec.bounds
        return low + (high - low) / (1.0 + jnp.exp(-x))
    if kind in ("stationary", "invertible"):
        phi = _pacf_to_ar(x / jnp.sqrt(1.0 + x**2))
        return phi if kind == "stationary" else -phi
    if kind == "stationary_var":
        return _constrain_var(x)
    if kind == "hurwitz":
        return _hurwitz_from_factors(x)
    if kind == "covariance":
        n = spec.shape[0]
        rows, cols = np.tril_indices(n)
        L = jnp.zeros((n, n), x.dtype).at[rows, cols].set(x)
        L = L.at[np.diag_indices(n)].set(jnp.exp(jnp.diagonal(L)))
        return L @ L.T
    raise ValueError(f"unknown parameter kind {kind!r}")


def unconstrain(spec: ParamSpec, value) -> np.ndarray:
    """Map a constrained value to an unconstrained array (NumPy; the inverse of :func:`constrain`)."""
    value = np.asarray(value, float)
    kind = spec.kind
    if kind == "real":
        return value
    if kind == "positive":
        return np.sqrt(np.maximum(value, 0.0))
    if kind in ("unit", "interval"):
        low, high = (0.0, 1.0) if kind == "unit" else spec.bounds
        u = np.clip((value - low) / (high - low), 1e-12, 1 - 1e-12)
        return np.log(u / (1 - u))
    if kind in ("stationary", "invertible"):
        r = np.clip(_ar_to_pacf(value if kind == "stationary" else -value), -0.999999, 0.999999)
        return r / np.sqrt(1.0 - r**2)
    if kind == "stationary_var":
        return _unconstrain_var(value)
    if kind == "hurwitz":
        return _hurwitz_to_factors(value)
    if kind == "covariance":
        L = np.linalg.cholesky(value)
        L[np.diag_indices(L.shape[0])] = np.log(np.diagonal(L))
        return L[np.tril_indices(L.shape[0])]
    raise ValueError(f"unknown parameter kind {kind!r}")


def unconstrained_shape(spec: ParamSpec) -> tuple:
    """Shape of the unconstrained array behind ``spec``."""
    if spec.kind == "covariance":
        n = spec.shape[0]
        return (n * (n + 1) // 2,)
    return tuple(spec.shape)

