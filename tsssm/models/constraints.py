r"""Parameter specifications and the maps between constrained and unconstrained values.

Optimisers and samplers work on an unconstrained real vector; models see constrained values.
Each :class:`ParamSpec` names one parameter, its shape and its constraint ``kind``:

================  ========================================================================
kind              constrained value from unconstrained :math:`x`
================  ========================================================================
``"real"``        :math:`x`
``"positive"``    :math:`x^2` (variances; reaches the zero boundary, as in statsmodels)
``"unit"``        :math:`1 / (1 + e^{-x})`, in (0, 1)
``"interval"``    :math:`a + (b - a) / (1 + e^{-x})`, in (a, b) given by ``bounds``
``"stationary"``  AR coefficients of a stationary AR(p): partial autocorrelations
                  :math:`r_k = x_k / \sqrt{1 + x_k^2}` mapped by the Durbin-Levinson recursion
                  (Monahan 1984), so every unconstrained vector is a stationary polynomial
``"invertible"``  the same map with the sign convention of MA polynomials
``"hurwitz"``     coefficients :math:`a_1..a_p` of a stable (Hurwitz) polynomial
                  :math:`s^p + a_1 s^{p-1} + \dots + a_p` (every root in the left half-plane):
                  the product of quadratic factors :math:`s^2 + e^{x_{2k}} s + e^{x_{2k+1}}`
                  and, for odd p, a linear factor :math:`s + e^{x_{p-1}}`
``"covariance"``  a covariance matrix :math:`L L^\top`, :math:`L` lower triangular with
                  :math:`\exp` on its diagonal; unconstrained shape ``(n (n + 1) / 2,)``
================  ========================================================================
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


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

