"""The one place where tsssm decides on floating-point precision and on how its programs compile.

The classical (linear-Gaussian) family computes in float64, as statsmodels does, so that
likelihoods and forecasts agree with it to many digits. tsssm never flips JAX's global
``jax_enable_x64`` flag: every public entry point of the classical family runs its JAX code inside
:func:`float64`, a thread-local context, and converts results to NumPy before leaving it. Deep
families may compute in float32. Users who want float64 everywhere can still set
``JAX_ENABLE_X64=1`` themselves.

Every program tsssm compiles goes through :func:`jit`, which passes :data:`COMPILER_OPTIONS` to
that program's compilation only (never to the process: ``XLA_FLAGS`` and JAX's settings are left
alone).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import numpy as np

#: XLA options for tsssm's own programs. XLA:CPU's MLIR fusion emitters (its default in
#: jaxlib 0.10) compiled tsssm's programs 2-3x slower than its LLVM IR emitters, for the same run
#: time and the same values to round-off (2-core box, jaxlib 0.10.2, compile / run of each
#: program, fusion emitters -> LLVM IR emitters): Nile local-level BFGS fit 0.75-0.83 s ->
#: 0.29-0.36 s / 2.6 ms both; its Hessian 0.71-0.85 s -> 0.41 s; LLT + seasonal 12 BFGS on 526
#: steps 2.0-2.2 s -> 1.0 s / 0.19-0.26 s both; 100,000-step log-likelihoods 1.0-1.2 s -> 0.65 s
#: (local level), 2.1-2.3 s -> 1.5 s (LLT + seasonal 12) / 0.6, 3.1-3.5 ms both. The option
#: names a CPU code generator; other backends ignore it.
COMPILER_OPTIONS = {"xla_cpu_use_fusion_emitters": False}


@functools.cache
def compiler_options() -> dict:
    """:data:`COMPILER_OPTIONS`, or ``{}`` where this jaxlib does not know them.

    Decided once per process by compiling a one-operation program with them (XLA rejects an
    unknown option at compile time, which would otherwise break every tsssm program).
    """
    try:
        jax.jit(lambda x: x + 1, compiler_options=COMPILER_OPTIONS)(np.float32(0))
    except jax.errors.JaxRuntimeError:
        return {}
    return dict(COMPILER_OPTIONS)


class _Jitted:
    """``equinox.filter_jit(fun, **jit_kwargs)``, with :func:`compiler_options` when it is a top-level
    program (JAX accepts options only there): called with traced arguments, inside another
    transformation, it is an ordinary nested jit. Both are made at their first call, so that
    importing tsssm compiles nothing."""

    def __init__(self, fun, jit_kwargs: dict):
        functools.update_wrapper(self, fun)
        self._fun, self._jit_kwargs, self._top, self._nested = fun, jit_kwargs, None, None

    def __call__(self, *args, **kwargs):
        if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((args, kwargs))):
            if self._nested is None:
                self._nested = eqx.filter_jit(self._fun, **self._jit_kwargs)
            return self._nested(*args, **kwargs)
        if self._top is None:
            self._top = eqx.filter_jit(self._fun, compiler_options=compiler_options(), **self._jit_kwargs)
        return self._top(*args, **kwargs)


def jit(fun=None, **jit_kwargs):
    """``equinox.filter_jit`` for tsssm's programs: arrays traced, everything else static, compiled
    with :func:`compiler_options`. Use as ``@jit`` or ``jit(fun, **jit_kwargs)``."""
    if fun is None:
        return functools.partial(jit, **jit_kwargs)
    return _Jitted(fun, jit_kwargs)


def float64():
    """Context manager under which JAX creates float64 arrays (thread-local, restored on exit)."""
    return jax.enable_x64(True)
