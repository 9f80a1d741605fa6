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

