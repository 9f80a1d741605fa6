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
