"""Many series and long series: two markdown tables.

Run from the repository root::

    python benchmarks/bench_many.py                  # full: 1,000 x 500 fits; T = 1e3, 1e4, 1e5
    python benchmarks/bench_many.py --quick          # smoke: 50 x 100 fits; T = 1e3, 1e4
    python benchmarks/bench_many.py --device gpu     # run the JAX parts on a GPU (statsmodels stays on CPU)

Table 1, many series: fit a local level to each of B simulated series of length T.
tsssm: ``tsssm.LocalLevel().fit(values)`` with ``values`` of shape (B, T, 1) -- one vmapped,
jitted BFGS per padded bucket, SciPy polishing only for series that stop short. The first call
includes tracing and compilation; "warm" is the median of refits on new draws of the same shape
(compile = first - warm). statsmodels: a loop of ``UnobservedComponents(y, "local
level").fit(disp=0)``. The table also reports how far apart the estimates are (statsmodels uses
an approximate diffuse prior, so they differ slightly).

Table 2, long series: exact diffuse log-likelihood of one local-level series of T steps at fixed
parameters, sequential ``lax.scan`` filter (:mod:`tsssm.kernels.kalman`) vs associative scan
(:mod:`tsssm.kernels.kalman_parallel`), compile time (``jit(...).lower(...).compile()``) and warm
time (median of repeats, ``block_until_ready``). The two must agree; the difference is printed.

Ratios are *slower / faster*. This script is never run as a timed test.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings


def _parse():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke version")
    parser.add_argument("--device", default=None, help="JAX platform to use: cpu, gpu (default: JAX's choice)")
    parser.add_argument("--series", type=int, default=None, help="number of series of table 1")
    parser.add_argument("--length", type=int, default=None, help="length of the series of table 1")
    parser.add_argument("--skip-statsmodels", action="store_true", help="only time tsssm in table 1")
    return parser.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.device:
    os.environ["JAX_PLATFORMS"] = ARGS.device

import jax
import numpy as np

import tsssm
from tsssm._config import float64
from tsssm.kernels import kalman, kalman_parallel
from tsssm.models.components import Level
from tsssm.models.lgssm import StructuralModel


def simulate(rng, B: int, T: int) -> np.ndarray:
    """(B, T, 1) local-level series with variances drawn per series."""
    sigma_level = rng.uniform(0.1, 1.0, (B, 1, 1))
    level = np.cumsum(rng.normal(0.0, 1.0, (B, T, 1)) * sigma_level, axis=1)
    return level + rng.normal(0.0, 1.0, (B, T, 1))


def many_series(B: int, T: int, repeats: int, with_statsmodels: bool) -> list:
    rng = np.random.default_rng(0)
    values = simulate(rng, B, T)
    start = time.perf_counter()
    first_fit = tsssm.LocalLevel().fit(values)
    first = time.perf_counter() - start
    warm = []
    for _ in range(repeats):
        again = simulate(rng, B, T)
        start = time.perf_counter()
        tsssm.LocalLevel().fit(again)
        warm.append(time.perf_counter() - start)
    warm_t = statistics.median(warm)
    rows = [
        ("tsssm vmapped fit, first call (compile included)", first, None),
        ("tsssm vmapped fit, compile (first - warm)", first - warm_t, None),
        ("tsssm vmapped fit, warm", warm_t, None),
    ]
    converged = int(first_fit.converged_.sum())
    notes = [f"tsssm: {converged}/{B} series converged"]
    if with_statsmodels:
        import statsmodels.api as sm

        est = np.empty((B, 2))
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for b in range(B):
                res = sm.tsa.UnobservedComponents(values[b, :, 0], "local level").fit(disp=0)
                est[b] = res.params  # sigma2.irregular, sigma2.level
        sm_t = time.perf_counter() - start
        rows.append(("statsmodels loop of UnobservedComponents(...).fit(disp=0)", sm_t, sm_t / warm_t))
        ours = first_fit.params_[["sigma2_irregular", "sigma2_level"]].to_numpy()
        rel = np.abs(ours - est) / np.maximum(np.abs(est), 1e-3)
        notes.append(
            f"estimates vs statsmodels: median relative difference {np.median(rel):.1e}, 95th percentile "
            f"{np.quantile(rel, 0.95):.1e} (statsmodels: approximate diffuse prior)"
        )
        rows[0] = rows[0][:2] + (sm_t / first,)
    return rows, notes


def long_series(lengths, repeats: int) -> list:
    model = StructuralModel((Level(),), True)
    params = {"sigma2_irregular": 1.0, "sigma2_level": 0.1}
    rows = []
    rng = np.random.default_rng(1)
    for T in lengths:
        y = simulate(rng, 1, T)[0]
        with float64():
            arrays, init = model.system({k: jax.numpy.asarray(v) for k, v in params.items()}, jax.numpy.arange(T, dtype=float))
            yj, mj = jax.numpy.asarray(y), jax.numpy.ones((T, 1), bool)
            out = {}
            for name, kernel in (("sequential", kalman.log_likelihood), ("associative scan", kalman_parallel.log_likelihood)):
                fn = jax.jit(lambda a, i, yy, mm, k=kernel: k(a, i, yy, mm))
                start = time.perf_counter()
                compiled = fn.lower(arrays, init, yj, mj).compile()
                compile_t = time.perf_counter() - start
                value = compiled(arrays, init, yj, mj).block_until_ready()
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    compiled(arrays, init, yj, mj).block_until_ready()
                    times.append(time.perf_counter() - start)
                out[name] = (compile_t, statistics.median(times), float(value))
        seq, par = out["sequential"], out["associative scan"]
        rows.append((T, seq, par, abs(seq[2] - par[2])))
    return rows


def main():
    args = ARGS
    B = args.series or (50 if args.quick else 1000)
    T = args.length or (100 if args.quick else 500)
    lengths = (1_000, 10_000) if args.quick else (1_000, 10_000, 100_000)
    repeats = 3 if args.quick else 5
    device = jax.devices()[0]
    print(f"machine: {platform.node()} ({os.cpu_count()} CPUs), python {sys.version.split()[0]}, jax {jax.__version__}, "
          f"device {device.platform}: {device.device_kind}, tsssm {tsssm.__version__}")
    print()
    rows, notes = many_series(B, T, repeats, not args.skip_statsmodels)
    print(f"### Local level fit of {B:,} series x {T} steps")
    print()
    print("| what | seconds | statsmodels / this |")
    print("|---|---:|---:|")
    for what, seconds, ratio in rows:
        print(f"| {what} | {seconds:.3f} | {'' if ratio is None else f'{ratio:.1f}x'} |")
    print()
    for note in notes:
        print(f"- {note}")
    print()
    print("### Log-likelihood of one local-level series: sequential vs associative scan")
    print()
    print("| T | sequential compile (s) | sequential warm (ms) | parallel compile (s) | parallel warm (ms) | "
          "parallel / sequential (warm) | abs. difference |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for T_, seq, par, diff in long_series(lengths, repeats):
        print(f"| {T_:,} | {seq[0]:.2f} | {1e3 * seq[1]:.2f} | {par[0]:.2f} | {1e3 * par[1]:.2f} | "
              f"{par[1] / seq[1]:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
