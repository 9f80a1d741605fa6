"""Suite-wide settings, applied before any test module imports JAX.

XLA's CPU runtime has intermittent hangs in ``block_until_ready`` on small machines (jax-ml/jax
issue 25861: asynchronous CPU dispatch; reports of the multi-threaded Eigen pool wedging). Here a
batched LU deadlocked in jaxlib's ``ParallelBatchMap`` (fixed in the kernels: see
docs/dev/design.md). The suite also runs with both features off, which costs little at these
sizes, and pytest's faulthandler dumps the stacks of any test still running after 5 minutes.
"""

import os

_flag = "--xla_cpu_multi_thread_eigen=false"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()

import jax  # noqa: E402

jax.config.update("jax_cpu_enable_async_dispatch", False)

import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Drop JAX's compiled programs after each test module.

    With every module's programs kept alive, one process of the full suite held hundreds of
    compiled executables, and XLA then crashed (segmentation fault, reproducible) while
    compiling the co2 walkthrough's Hessian in tests/test_examples.py; the same tests pass in a
    smaller process. Modules share few programs, so recompiling them costs little.
    """
    yield
    jax.clear_caches()
