"""The one place where tsssm decides on floating-point precision.

The classical (linear-Gaussian) family computes in float64, as statsmodels does, so that
likelihoods and forecasts agree with it to many digits. tsssm never flips JAX's global
``jax_enable_x64`` flag: every public entry point of the classical family runs its JAX code inside
:func:`float64`, a thread-local context, and converts results to NumPy before leaving it. Deep
families may compute in float32. Users who want float64 everywhere can still set
``JAX_ENABLE_X64=1`` themselves.
"""

from __future__ import annotations

import jax


def float64():
    """Context manager under which JAX creates float64 arrays (thread-local, restored on exit)."""
    return jax.enable_x64(True)
