"""The one place where tsssm decides on floating-point precision and on how its programs compile.

The classical (linear-Gaussian) family computes in float64, as statsmodels does, so that
likelihoods and forecasts agree with it to many digits. tsssm never flips JAX's global
``jax_enable_x64`` flag: every public entry point of the classical family runs its JAX code inside
:func:`float64`, a thread-local context, and converts results to NumPy before leaving it. Deep
families may compute in float32. Users who want float64 everywhere can still set
``JAX_ENABLE_X64=1`` themselves.

Every program tsssm compiles goes through :func:`jit` (or ``jax.jit(..., **jit_options())``),
which passes :data:`COMPILER_OPTIONS` to that program's compilation only (never to the process:
``XLA_FLAGS`` and JAX's settings are left alone).
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


try:  # is a trace running? JAX has no public question for it (jax 0.10)
    from jax._src.core import trace_state_clean as _trace_state_clean
except ImportError:  # pragma: no cover - without it, traced arguments are the sign
    _trace_state_clean = None


@functools.cache
def compiler_options() -> dict:
    """:data:`COMPILER_OPTIONS`, or ``{}`` where this JAX does not take them.

    Decided once per process by compiling a one-operation program with them (XLA rejects an
    unknown option at compile time, which would otherwise break every tsssm program; a JAX
    before 0.4.36 has no ``compiler_options`` at all).
    """
    try:
        jax.jit(lambda x: x + 1, compiler_options=COMPILER_OPTIONS)(np.float32(0))
    except (jax.errors.JaxRuntimeError, TypeError):
        return {}
    return dict(COMPILER_OPTIONS)


def jit_options() -> dict:
    """Keyword arguments for ``jax.jit`` / ``equinox.filter_jit`` of a top-level tsssm program:
    ``{"compiler_options": ...}``, or ``{}`` where :func:`compiler_options` is empty."""
    options = compiler_options()
    return {"compiler_options": options} if options else {}


def _inside_a_trace(args, kwargs) -> bool:
    if _trace_state_clean is not None:
        return not _trace_state_clean()
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves((args, kwargs)))


class _Jitted:
    """``equinox.filter_jit(fun, **jit_kwargs)``, with :func:`jit_options` when it is a top-level
    program (JAX takes compiler options only there): called inside another transformation
    (``jit``, ``vmap``, ``grad``, ``scan``, ...), it is an ordinary nested jit. Both are made at
    their first call, so that importing tsssm compiles nothing. For module-level functions (it
    does not bind ``self``)."""

    def __init__(self, fun, jit_kwargs: dict):
        functools.update_wrapper(self, fun)
        self._fun, self._jit_kwargs, self._top, self._nested = fun, jit_kwargs, None, None

    def __call__(self, *args, **kwargs):
        if _inside_a_trace(args, kwargs):
            if self._nested is None:
                self._nested = eqx.filter_jit(self._fun, **self._jit_kwargs)
            return self._nested(*args, **kwargs)
        if self._top is None:
            self._top = eqx.filter_jit(self._fun, **jit_options(), **self._jit_kwargs)
        return self._top(*args, **kwargs)


def jit(fun=None, **jit_kwargs):
    """``equinox.filter_jit`` for tsssm's programs: arrays traced, everything else static, compiled
    with :func:`jit_options`. Use as ``@jit`` or ``jit(fun, **jit_kwargs)``."""
    if fun is None:
        return functools.partial(jit, **jit_kwargs)
    return _Jitted(fun, jit_kwargs)


def float64():
    """Context manager under which JAX creates float64 arrays (thread-local, restored on exit)."""
    return jax.enable_x64(True)
