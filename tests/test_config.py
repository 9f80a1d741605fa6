"""tsssm._config: the XLA options tsssm's programs compile with, and the fallback where a jaxlib
does not know them."""

import jax
import numpy as np
import pytest

import tsssm
from tsssm import _config
from tsssm._config import float64
from tsssm.inference import mle


def test_programs_compile_with_the_options_this_jaxlib_accepts(monkeypatch):
    if _config.compiler_options() != _config.COMPILER_OPTIONS:
        pytest.skip("this jaxlib does not know tsssm's compiler options (the fallback is tested below)")
    assert _config.jit_options() == {"compiler_options": _config.COMPILER_OPTIONS}

    _config.compiler_options.cache_clear()
    monkeypatch.setattr(_config, "COMPILER_OPTIONS", {"xla_cpu_no_such_option": True})
    try:
        assert _config.compiler_options() == {}  # an unknown option is dropped, not an error in every program
        assert _config.jit_options() == {}
        doubled = _config.jit(lambda x: 2 * x)
        assert float(doubled(np.float32(1.5))) == 3.0
    finally:
        _config.compiler_options.cache_clear()


def test_jit_passes_the_options_to_the_compilation(monkeypatch):
    """An option XLA does not know fails the compilation: proof that ``jit`` hands them over."""
    monkeypatch.setattr(_config, "compiler_options", lambda: {"xla_cpu_no_such_option": True})
    with pytest.raises(jax.errors.JaxRuntimeError, match="xla_cpu_no_such_option"):
        _config.jit(lambda x: 3 * x)(np.float32(1.0))


def test_values_equal_those_of_the_default_compilation():
    """The Nile log-likelihood and its gradient away from the optimum, compiled with tsssm's
    options and with XLA's defaults (the LLVM IR and the MLIR fusion emitters): equal to round-off."""
    fitted = tsssm.LocalLevel().fit(tsssm.datasets.load_nile())
    assert fitted.log_likelihood_ == pytest.approx(-632.5456251, abs=1e-6)
    with float64():
        data = fitted._jax(fitted.data_)
        params = fitted._jax_params({k: 1.5 * v for k, v in fitted.params_.items()})

        def value_and_grad(p):
            return jax.value_and_grad(lambda q: mle.log_likelihood(fitted.model_, q, data))(p)

        ours = _config.jit(value_and_grad)(params)
        default = jax.jit(value_and_grad)(params)
    np.testing.assert_allclose(float(ours[0]), float(default[0]), rtol=1e-14)
    for name in params:  # bit-identical on the development box; 1e-12 leaves room for other CPUs
        assert abs(float(ours[1][name])) > 1e-6
        np.testing.assert_allclose(float(ours[1][name]), float(default[1][name]), rtol=1e-12)


def test_inside_another_transformation_it_is_a_nested_jit():
    """JAX accepts compiler options on top-level programs only: while a trace runs, ``jit`` stages
    an ordinary nested jit, with traced arguments or with constants only (closed over, in a
    ``scan`` body, in a ``cond`` branch)."""
    double = _config.jit(lambda x: 2.0 * x)
    three = np.float32(3.0)
    assert float(jax.jit(lambda x: double(x) + 1.0)(np.float32(1.0))) == 3.0
    np.testing.assert_array_equal(np.asarray(jax.vmap(double)(np.arange(3.0))), [0.0, 2.0, 4.0])
    assert float(jax.grad(lambda x: double(x) ** 2)(np.float32(1.5))) == 12.0
    assert float(jax.jit(lambda x: x + double(three))(np.float32(1.0))) == 7.0
    carry, _ = jax.lax.scan(lambda c, _: (c + double(three), None), np.float32(0.0), None, length=2)
    assert float(carry) == 12.0
    assert float(jax.lax.cond(True, lambda: double(three), lambda: three)) == 6.0
    assert float(double(np.float32(4.0))) == 8.0  # and top-level again afterwards
