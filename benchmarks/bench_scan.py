"""The 2-D selective scan: associative vs sequential time scan vs the loop reference; a Chimera training step.

Run from the repository root::

    python benchmarks/bench_scan.py            # T = 64 .. 4096 at V = 8; V = 1 .. 64 at T = 1024; training steps
    python benchmarks/bench_scan.py --quick    # smaller grid (smoke)
    python benchmarks/bench_scan.py --device gpu

**Kernel tables.** ``scan_2d`` of :mod:`tsssm.kernels.scan` (a ``lax.scan`` over variates whose
body scans each time column) with its two time scans, ``time_scan="associative"``
(``lax.associative_scan``) and ``"sequential"`` (``lax.scan``), against ``scan_2d_loop`` (one
``fori_loop`` over the V x T cells, the tests' oracle; skipped beyond V x T = 8192 cells).
Inputs are random float32 arrays ``(V, T, S)`` with S = 64 independent channels x states (as in
a Chimera layer with 16 channels x 4 states), decays of modulus < 1. Each function is jitted;
"compile" is ``jit(f).lower(...).compile()``, "warm" the median of repeated calls with
``block_until_ready``. All versions must agree (the largest difference is printed).

**Training step table.** One Adam step (value and gradient of the negative log-likelihood,
clipping, update) of a ``ChimeraNetwork`` (8 channels, 4 states, Student-t read-out, lead 25) on
a minibatch of 32 univariate series of 140 steps (the ECG5000 setting of
``bench_ecg5000.py``), with 1 and 2 layers, for each time scan (the network takes the default
time scan, :func:`tsssm.kernels.scan.default_time_scan`, which this script replaces for the
comparison). Best of 5 rounds of 5 steps. Never run as a timed test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from functools import partial


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke version")
    parser.add_argument("--device", default=None, help="JAX platform to use: cpu, gpu (default: JAX's choice)")
    parser.add_argument("--channels", type=int, default=64, help="independent channels x states S")
    return parser.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.device:
    os.environ["JAX_PLATFORMS"] = ARGS.device

import jax
import jax.numpy as jnp
import numpy as np

import equinox as eqx

from tsssm.inference import network_mle
from tsssm.inference.batching import SequenceBatch
from tsssm.kernels import scan
from tsssm.kernels.scan import TIME_SCANS, scan_2d, scan_2d_loop
from tsssm.models import chimera


def inputs(V: int, T: int, S: int, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 6)
    decays = [jax.random.uniform(k, (V, T, S), jnp.float32, -0.45, 0.45) for k in keys[:4]]
    return (*decays, *(jax.random.normal(k, (V, T, S), jnp.float32) for k in keys[4:]))


def timed(fn, args, repeats: int):
    """(compile seconds, warm median seconds, outputs) of a jitted ``fn``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return compile_s, statistics.median(times), out


def row(V: int, T: int, S: int, repeats: int) -> str:
    args = inputs(V, T, S)
    (c_assoc, w_assoc, assoc), (c_seq, w_seq, seq) = (
        timed(partial(scan_2d, time_scan=method), args, repeats) for method in TIME_SCANS
    )
    diff = max(float(jnp.max(jnp.abs(f - s))) for f, s in zip(assoc, seq))
    loop_cells = "- | -"
    if V * T <= 8192:
        _, w_loop, loop = timed(scan_2d_loop, args, 3)
        diff = max([diff] + [float(jnp.max(jnp.abs(f - s))) for f, s in zip(seq, loop)])
        loop_cells = f"{w_loop * 1e3:.1f} | {w_loop / w_seq:.0f}"
    return (f"| {V} | {T} | {w_assoc * 1e3:.3f} | {c_assoc:.2f} | {w_seq * 1e3:.3f} | {c_seq:.2f} | "
            f"{w_assoc / w_seq:.1f} | {loop_cells} | {diff:.1e} |")


def training_step(num_layers: int, time_scan: str, batch_size: int = 32, length: int = 140):
    """(compile seconds, best milliseconds per Adam step) of a small Chimera network (module docstring)."""
    scan.default_time_scan = lambda: time_scan  # the network's scans take this time scan ...
    jax.clear_caches()  # ... once the compiled update of the other one is forgotten
    net = chimera.ChimeraNetwork(1, 8, 4, num_layers, chimera.num_outputs("student_t"), key=jax.random.key(0), lead=25)
    rng = np.random.default_rng(0)
    batch = SequenceBatch(rng.normal(size=(batch_size, length, 1)).astype(np.float32), np.ones((batch_size, length, 1), bool),
                          np.ones((batch_size, length), np.float32), np.ones((batch_size, length), bool))
    optimizer = network_mle._optimizer(3e-3, 10.0)
    state = optimizer.init(eqx.filter(net, eqx.is_inexact_array))
    t0 = time.perf_counter()
    jax.block_until_ready(network_mle._update(net, state, batch, chimera.batch_nll, optimizer))
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(5):
            out = network_mle._update(net, state, batch, chimera.batch_nll, optimizer)
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / 5)
    return compile_s, best * 1e3


def main(args) -> None:
    S = args.channels
    lengths = [64, 256, 1024] if args.quick else [64, 256, 1024, 4096]
    variates = [1, 4, 16] if args.quick else [1, 4, 16, 64]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}), "
          f"{os.cpu_count()} CPUs; S = {S}, float32; default time scan: {scan.default_time_scan()}\n")
    header = ("| V | T | associative warm (ms) | associative compile (s) | sequential warm (ms) | sequential compile (s) | "
              "associative / sequential | loop warm (ms) | loop / sequential | max diff |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("Scaling with the length T (V = 8):\n")
    print(header)
    for T in lengths:
        print(row(8, T, S, repeats=20), flush=True)
    print(f"\nScaling with the number of variates V (T = {lengths[-2]}):\n")
    print(header)
    for V in variates:
        print(row(V, lengths[-2], S, repeats=20), flush=True)
    print("\nChimera training step (Adam, 32 univariate series x 140 steps, 8 channels, 4 states):\n")
    print("| layers | time scan | compile (s) | ms / step |\n|---:|---|---:|---:|")
    for num_layers in (1, 2):
        for method in TIME_SCANS:
            compile_s, ms = training_step(num_layers, method)
            print(f"| {num_layers} | {method} | {compile_s:.1f} | {ms:.0f} |", flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main(ARGS)
