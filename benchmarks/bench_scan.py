"""The 2-D selective scan: fast version vs the cell-by-cell loop reference, scaling with T and V.

Run from the repository root::

    python benchmarks/bench_scan.py            # T = 64 .. 4096 at V = 8; V = 1 .. 64 at T = 1024
    python benchmarks/bench_scan.py --quick    # smaller grid (smoke)
    python benchmarks/bench_scan.py --device gpu

Both functions come from :mod:`tsssm.kernels.scan`: ``scan_2d`` (a ``lax.scan`` over variates whose
body runs an associative scan over time) and ``scan_2d_loop`` (one ``fori_loop`` over the V x T
cells). Inputs are random float32 arrays ``(V, T, S)`` with S = 64 independent channels x states
(as in a Chimera layer with 16 channels x 4 states), decays of modulus < 1. Each function is
jitted; "compile" is ``jit(f).lower(...).compile()``, "warm" the median of repeated calls with
``block_until_ready``. The loop copies its carried grids, so it is far slower than a plain
sequential recursion; the table therefore also times ``sequential`` (below: a ``lax.scan`` over
variates with a ``lax.scan`` over time inside, the natural step-by-step implementation). The
loop is skipped (-) beyond V x T = 8192 cells. All versions must agree (the largest difference to
the fast version is printed). Ratios = other / fast. This script is never run as a timed test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time


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

from tsssm.kernels.scan import scan_2d, scan_2d_loop


def inputs(V: int, T: int, S: int, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 6)
    decays = [jax.random.uniform(k, (V, T, S), jnp.float32, -0.45, 0.45) for k in keys[:4]]
    return (*decays, *(jax.random.normal(k, (V, T, S), jnp.float32) for k in keys[4:]))


def sequential(a1, a2, a3, a4, u1, u2):
    """The 2-D recurrence step by step: ``lax.scan`` over variates, ``lax.scan`` over time inside."""

    def column(prev, inp):
        h1_up, h2_up = prev
        a1v, a2v, a3v, a4v, u1v, u2v = inp

        def cell(left, x):
            h1_left, h2_left = left
            a1t, a2t, a3t, a4t, u1t, u2t, h1u, h2u = x
            h2 = a3t * h1u + a4t * h2u + u2t
            h1 = a1t * h1_left + a2t * h2_left + u1t
            return (h1, h2), (h1, h2)

        zero = jnp.zeros_like(u1v[0])
        _, (h1, h2) = jax.lax.scan(cell, (zero, zero), (a1v, a2v, a3v, a4v, u1v, u2v, h1_up, h2_up))
        return (h1, h2), (h1, h2)

    zero = jnp.zeros_like(u1[0])
    return jax.lax.scan(column, (zero, zero), (a1, a2, a3, a4, u1, u2))[1]


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
    c_fast, w_fast, fast = timed(scan_2d, args, repeats)
    c_seq, w_seq, seq = timed(sequential, args, repeats)
    diff = max(float(jnp.max(jnp.abs(f - s))) for f, s in zip(fast, seq))
    loop_cells = "- | - | -"
    if V * T <= 8192:
        c_loop, w_loop, loop = timed(scan_2d_loop, args, 3)
        diff = max([diff] + [float(jnp.max(jnp.abs(f - s))) for f, s in zip(fast, loop)])
        loop_cells = f"{w_loop * 1e3:.1f} | {w_loop / w_fast:.0f} | {c_loop:.2f}"
    return (f"| {V} | {T} | {w_fast * 1e3:.3f} | {c_fast:.2f} | {w_seq * 1e3:.3f} | {w_seq / w_fast:.1f} | "
            f"{c_seq:.2f} | {loop_cells} | {diff:.1e} |")


def main(args) -> None:
    S = args.channels
    lengths = [64, 256, 1024] if args.quick else [64, 256, 1024, 4096]
    variates = [1, 4, 16] if args.quick else [1, 4, 16, 64]
    print(f"jax {jax.__version__} on {jax.devices()[0].platform} ({platform.processor() or platform.machine()}), "
          f"{os.cpu_count()} CPUs; S = {S}, float32\n")
    header = ("| V | T | fast warm (ms) | fast compile (s) | sequential warm (ms) | sequential / fast | "
              "sequential compile (s) | loop warm (ms) | loop / fast | loop compile (s) | max diff |\n"
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("Scaling with the length T (V = 8):\n")
    print(header)
    for T in lengths:
        print(row(8, T, S, repeats=20), flush=True)
    print(f"\nScaling with the number of variates V (T = {lengths[-2]}):\n")
    print(header)
    for V in variates:
        print(row(V, lengths[-2], S, repeats=20), flush=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main(ARGS)
