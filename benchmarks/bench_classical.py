"""Speed of tsssm's classical family against statsmodels and dynamax: one markdown table.

Run from the repository root::

    pip install -e .[bench]
    python benchmarks/bench_classical.py            # full version (about 2-3 minutes on 2 cores)
    python benchmarks/bench_classical.py --quick    # smoke version (10,000 steps, fewer repeats)

Every timing is the median of several repeats after a warm-up call; JAX outputs are waited for
with ``block_until_ready``. Ratios are *peer time / tsssm time*: above 1 means tsssm is faster.
A measurement that fails (tsssm or a peer raising) shows up as ``failed: ...`` in its cell
instead of stopping the run.

Rows
----
1. Log-likelihood of a long simulated series (100,000 steps), warm: local level (1 state) and
   local linear trend + dummy seasonal 12 (13 states). tsssm: ``jax.jit`` of
   ``lambda params: tsssm.inference.mle.log_likelihood(model, params, data)`` in float64;
   statsmodels: ``UnobservedComponents(...).loglike(params)``; dynamax: ``jax.jit`` of
   ``lgssm_filter(params, y).marginal_loglik`` (a proper prior with variance 1e6 on the diffuse
   states, like statsmodels' approximate diffuse initialisation), also in float64.
   Compile time: ``jax.jit(...).lower(params).compile()`` of the same functions; tsssm's with
   the XLA options its own programs compile with (``tsssm._config.jit_options()``).
2. First fit of the Nile local level in a fresh Python process (only the fit call is timed:
   JAX tracing and compilation included; statsmodels' model construction included), without and
   with JAX's persistent compilation cache (a new cache directory: a first run fills it, later
   runs read it).
3. Refit, warm, on new data of the same shape (Nile plus noise, a new draw per repeat).
4. Fit + 10-step forecast (mean and 95% interval), warm, of monthly co2 (statsmodels' weekly
   Mauna Loa data averaged per month: 526 months, 5 of them missing), local linear trend +
   seasonal 12.

This script is a benchmark: it is never run as a timed test.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.signal
import statsmodels.api as sm

import tsssm
from tsssm._config import float64, jit_options
from tsssm.inference import mle
from tsssm.models.components import Level, Seasonal, Trend
from tsssm.models.lgssm import StructuralModel

try:  # dynamax is an optional peer (pip install -e .[bench])
    from dynamax.linear_gaussian_ssm import (
        ParamsLGSSM,
        ParamsLGSSMDynamics,
        ParamsLGSSMEmissions,
        ParamsLGSSMInitial,
        lgssm_filter,
    )

    DYNAMAX_ERROR = None
except Exception as exc:  # noqa: BLE001 - report whatever went wrong instead of failing
    DYNAMAX_ERROR = f"not available ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})"

# Parameters of the simulated series.
LL_PARAMS = {"sigma2_irregular": 1.0, "sigma2_level": 0.1}
LLTS_PARAMS = {"sigma2_irregular": 1.0, "sigma2_level": 0.1, "sigma2_trend": 1e-6, "sigma2_seasonal": 0.05}
DIFFUSE_VARIANCE = 1e6  # dynamax has no diffuse prior: a large proper one, as statsmodels' default


# ---------------------------------------------------------------------------- helpers
def _block(out):
    return jax.block_until_ready(out)


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        _block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _block(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"failed: {type(exc).__name__}" + (f": {text[-1][:100]}" if text else "")


def attempt(fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or a ``"failed: ..."`` string if it raises."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a benchmark reports failures, it does not stop
        return _error(exc)


def ok(x) -> bool:
    return isinstance(x, (int, float)) and np.isfinite(x)


def fmt_time(x) -> str:
    if isinstance(x, str):
        return x
    if not ok(x):
        return "n/a"
    if x < 1e-3:
        return f"{x * 1e6:.0f} us"
    if x < 1.0:
        return f"{x * 1e3:.3g} ms"
    return f"{x:.3g} s"


def fmt_ratio(peer, ours) -> str:
    return f"{peer / ours:.3g}x" if ok(peer) and ok(ours) else "—"


def met(condition) -> str:
    if condition is None:
        return "n/a"
    return "yes" if condition else "**no**"


# ---------------------------------------------------------------------------- simulated data
def simulate_local_level(num_steps: int, rng) -> np.ndarray:
    p = LL_PARAMS
    level = np.cumsum(rng.normal(0.0, np.sqrt(p["sigma2_level"]), num_steps))
    return level + rng.normal(0.0, np.sqrt(p["sigma2_irregular"]), num_steps)


def simulate_trend_seasonal(num_steps: int, rng) -> np.ndarray:
    p = LLTS_PARAMS
    slope = np.cumsum(rng.normal(0.0, np.sqrt(p["sigma2_trend"]), num_steps))
    level = np.cumsum(slope + rng.normal(0.0, np.sqrt(p["sigma2_level"]), num_steps))
    # dummy seasonal: gamma_t = -(gamma_{t-1} + ... + gamma_{t-11}) + omega_t, plus a fixed pattern
    omega = rng.normal(0.0, np.sqrt(p["sigma2_seasonal"]), num_steps)
    pattern = np.tile(np.arange(12) - 5.5, num_steps // 12 + 1)[:num_steps]
    seasonal = scipy.signal.lfilter([1.0], np.ones(12), omega) + pattern
    return level + seasonal + rng.normal(0.0, np.sqrt(p["sigma2_irregular"]), num_steps)


# ---------------------------------------------------------------------------- row 1: log-likelihood
def _compile_and_time(fn, args, repeats: int) -> dict:
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    compile_time = time.perf_counter() - start
    return {"compile": compile_time, "time": median_time(lambda: compiled(*args), repeats), "ll": float(compiled(*args))}


def _tsssm_loglik(y, model, params, repeats):
    T = y.shape[0]
    with float64():
        data = mle.SeriesData(jnp.arange(T, dtype=jnp.float64), jnp.asarray(y)[:, None], jnp.ones((T, 1), bool), None)
        jparams = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        fn = jax.jit(lambda p: mle.log_likelihood(model, p, data), **jit_options())
        return _compile_and_time(fn, (jparams,), repeats)


def _dynamax_loglik(y, model, params, repeats):
    if DYNAMAX_ERROR is not None:
        return {"time": DYNAMAX_ERROR, "compile": DYNAMAX_ERROR}
    T = y.shape[0]
    with float64():
        jparams = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        arrays, _ = model.system(jparams, jnp.arange(T, dtype=jnp.float64), None)
        F, Q, H, R = arrays.transition, arrays.transition_cov, arrays.observation, arrays.observation_cov
        N = F.shape[0]
        dparams = ParamsLGSSM(
            initial=ParamsLGSSMInitial(mean=jnp.zeros(N), cov=DIFFUSE_VARIANCE * jnp.eye(N)),
            dynamics=ParamsLGSSMDynamics(weights=F, bias=jnp.zeros(N), input_weights=jnp.zeros((N, 0)), cov=Q),
            emissions=ParamsLGSSMEmissions(weights=H, bias=jnp.zeros(1), input_weights=jnp.zeros((1, 0)), cov=R),
        )
        emissions = jnp.asarray(y)[:, None]
        fn = jax.jit(lambda p: lgssm_filter(p, emissions).marginal_loglik)
        return _compile_and_time(fn, (dparams,), repeats)


def _statsmodels_loglik(y, params, sm_kwargs, repeats):
    mod = sm.tsa.UnobservedComponents(y, **sm_kwargs)
    sm_params = np.array([params[name.replace(".", "_")] for name in mod.param_names])
    return {"time": median_time(lambda: mod.loglike(sm_params), repeats), "ll": float(mod.loglike(sm_params))}


def bench_loglik(y, model, params, sm_kwargs, repeats) -> dict:
    """Warm log-likelihood times (and compile times) of tsssm, statsmodels and dynamax on one series."""

    def guarded(fn, *args):
        out = attempt(fn, *args)
        return out if isinstance(out, dict) else {"time": out, "compile": out}

    return {
        "tsssm": guarded(_tsssm_loglik, y, model, params, repeats),
        "statsmodels": guarded(_statsmodels_loglik, y, params, sm_kwargs, repeats),
        "dynamax": guarded(_dynamax_loglik, y, model, params, repeats),
    }


# ---------------------------------------------------------------------------- row 2: fresh process
_TSSSM_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import jax
if sys.argv[1]:
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
import tsssm
t1 = time.perf_counter()
y = tsssm.datasets.load_nile()
t2 = time.perf_counter()
m = tsssm.LocalLevel().fit(y)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "fit": t3 - t2, "ll": m.log_likelihood_}))
"""

_STATSMODELS_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import pandas as pd
import statsmodels.api as sm
t1 = time.perf_counter()
raw = pd.read_csv(sys.argv[1])
index = pd.DatetimeIndex(pd.to_datetime(raw["year"].astype(str), format="%Y"), freq="YS-JAN", name="year")
y = pd.Series(raw["volume"].to_numpy(dtype=float), index=index, name="volume")
t2 = time.perf_counter()
res = sm.tsa.UnobservedComponents(y, "local level").fit(disp=0)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "fit": t3 - t2, "ll": float(res.llf)}))
"""


def _child(code: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_of_children(code: str, runs: int, *args: str) -> dict:
    results = [_child(code, *args) for _ in range(runs)]
    return {key: statistics.median(r[key] for r in results) for key in ("import", "fit")}


def bench_fresh(runs: int) -> dict:
    nile_csv = str(tsssm.datasets.data_dir() / "nile" / "nile.csv")
    out = {
        "tsssm": attempt(_median_of_children, _TSSSM_CHILD, runs, ""),
        "statsmodels": attempt(_median_of_children, _STATSMODELS_CHILD, runs, nile_csv),
    }
    with tempfile.TemporaryDirectory(prefix="tsssm-jax-cache-") as cache_dir:
        out["cache_cold"] = attempt(_median_of_children, _TSSSM_CHILD, 1, cache_dir)
        out["cache_warm"] = attempt(_median_of_children, _TSSSM_CHILD, runs, cache_dir)
        out["cache_entries"] = len(os.listdir(cache_dir))
    return out


def _get(result, key):
    """``result[key]`` of a dict result, or the failure string itself."""
    return result[key] if isinstance(result, dict) else result


# ---------------------------------------------------------------------------- rows 3 and 4: warm fits
def _time_each(fn, inputs) -> float:
    times = []
    for x in inputs:
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_refit(repeats: int) -> dict:
    nile = tsssm.datasets.load_nile()
    rng = np.random.default_rng(1)
    inputs = [nile + rng.normal(0.0, 30.0, len(nile)) for _ in range(repeats)]

    def ours(y):
        return tsssm.LocalLevel().fit(y)

    def peer(y):
        return sm.tsa.UnobservedComponents(y, "local level").fit(disp=0)

    out = {}
    for name, fn in (("tsssm", ours), ("statsmodels", peer)):
        warm = attempt(fn, nile)  # warm-up (compiles for tsssm)
        out[name] = warm if isinstance(warm, str) else attempt(_time_each, fn, inputs)
    return out


def load_co2_monthly() -> pd.Series:
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    return weekly.resample("MS").mean()


def bench_co2(repeats: int) -> dict:
    y = load_co2_monthly()

    def ours():
        m = tsssm.UnobservedComponents("local linear trend", seasonal=12).fit(y)
        fc = m.forecast(10)
        return m, fc.mean, fc.interval(0.95)

    def peer():
        res = sm.tsa.UnobservedComponents(y, "local linear trend", seasonal=12).fit(disp=0)
        return res, res.get_forecast(10).summary_frame(alpha=0.05)

    out = {}
    start = time.perf_counter()
    first = attempt(ours)
    out["tsssm_first"] = time.perf_counter() - start if not isinstance(first, str) else first
    out["tsssm"] = first if isinstance(first, str) else attempt(median_time, lambda: ours()[1:], repeats, warmup=0)
    out["statsmodels"] = attempt(median_time, lambda: peer()[1], repeats)
    second = attempt(peer)
    if not isinstance(first, str) and not isinstance(second, str):
        m, fc_ours, _ = first
        res, fc_peer = second
        out["check"] = (
            f"largest |forecast mean difference| {np.max(np.abs(fc_ours.to_numpy().ravel() - fc_peer['mean'].to_numpy())):.3g} ppm; "
            f"tsssm params { {k: float(f'{float(v):.4g}') for k, v in m.params_.items()} }, "
            f"statsmodels { {k: float(f'{float(v):.4g}') for k, v in zip(res.model.param_names, res.params)} }"
        )
    return out


# ---------------------------------------------------------------------------- report
def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def _tsssm_revision() -> str:
    root = Path(tsssm.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "tsssm"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {commit}" + (" + uncommitted changes under tsssm/" if dirty else "")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"Machine: {cores} CPU cores ({cpu}), {platform.system()} {platform.release()}, Python {platform.python_version()}; "
        f"load average at start (1/5/15 min) {_load()}\n"
        f"Versions: tsssm {tsssm.__version__} ({_tsssm_revision()}), jax {jax.__version__} ({jax.default_backend()}), "
        f"jaxlib {_version('jaxlib')}, statsmodels {_version('statsmodels')}, dynamax {_version('dynamax')}, "
        f"numpy {np.__version__}, scipy {_version('scipy')}, pandas {pd.__version__}"
    )


def build_rows(num_steps, ll, llts, fresh, refit, co2) -> list[list[str]]:
    steps = f"{num_steps:,}"
    rows = []
    for label, res in (
        (f"1a. log-lik, local level, {steps} steps (warm)", ll),
        (f"1b. log-lik, LLT + seasonal 12 (13 states), {steps} steps (warm)", llts),
    ):
        ours, peer, dyn = res["tsssm"]["time"], res["statsmodels"]["time"], res["dynamax"]["time"]
        sm_met = met(peer / ours >= 20) if ok(ours) and ok(peer) else "n/a"
        dyn_met = met(dyn >= ours) if ok(ours) and ok(dyn) else "n/a"
        rows.append([label, fmt_time(ours), fmt_time(peer), fmt_time(dyn), fmt_ratio(peer, ours), fmt_ratio(dyn, ours),
                     ">= 20x vs statsmodels; >= 1x vs dynamax", f"{sm_met} / {dyn_met}"])
    for label, res in (("1c. compile time of that log-lik, local level", ll), ("1d. compile time of that log-lik, 13 states", llts)):
        ours, dyn = res["tsssm"]["compile"], res["dynamax"]["compile"]
        rows.append([label, fmt_time(ours), "— (nothing to compile)", fmt_time(dyn), "—", fmt_ratio(dyn, ours), "(reported)", ""])

    peer_fit = _get(fresh["statsmodels"], "fit")
    for label, key, target in (
        ("2a. first Nile local-level fit, fresh process (compile included)", "tsssm", True),
        ("2b. same, persistent compilation cache, 1st run (cold cache)", "cache_cold", False),
        ("2c. same, persistent compilation cache, later run (warm cache)", "cache_warm", True),
    ):
        ours = _get(fresh[key], "fit")
        verdict = (met(peer_fit / ours >= 0.2) if ok(ours) and ok(peer_fit) else "n/a") if target else ""
        rows.append([label, fmt_time(ours), fmt_time(peer_fit), "—", fmt_ratio(peer_fit, ours), "—",
                     "within 5x of statsmodels (ratio >= 0.2)" if target else "(reported)", verdict])
    ours, peer = _get(fresh["tsssm"], "import"), _get(fresh["statsmodels"], "import")
    rows.append(["2d. `import` time, fresh process (not part of 2a-2c)", fmt_time(ours), fmt_time(peer), "—", fmt_ratio(peer, ours), "—", "(reported)", ""])

    ours, peer = refit["tsssm"], refit["statsmodels"]
    rows.append(["3. refit Nile local level on new data of the same shape (warm)", fmt_time(ours), fmt_time(peer), "—",
                 fmt_ratio(peer, ours), "—", "faster than statsmodels (> 1x)", met(peer > ours) if ok(ours) and ok(peer) else "n/a"])
    ours, peer = co2["tsssm"], co2["statsmodels"]
    rows.append(["4. co2 monthly, LLT + seasonal 12: fit + forecast(10) (warm)", fmt_time(ours), fmt_time(peer), "—",
                 fmt_ratio(peer, ours), "—", "(reported)", ""])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke version: 10,000 steps, fewer repeats")
    args = parser.parse_args(argv)
    quick = args.quick
    num_steps = 10_000 if quick else 100_000
    repeats_ll, repeats_13 = (3, 3) if quick else (7, 5)
    fresh_runs = 1 if quick else 3
    refits, co2_repeats = (5, 2) if quick else (15, 5)
    warnings.simplefilter("ignore")  # statsmodels' convergence/frequency chatter is not the point here

    header = machine()
    t_start = time.perf_counter()
    rng = np.random.default_rng(0)
    ll = bench_loglik(simulate_local_level(num_steps, rng), StructuralModel((Level(),)), LL_PARAMS, {"level": "local level"}, repeats_ll)
    llts = bench_loglik(
        simulate_trend_seasonal(num_steps, rng), StructuralModel((Trend(), Seasonal(12))), LLTS_PARAMS,
        {"level": "local linear trend", "seasonal": 12}, repeats_13,
    )
    fresh = bench_fresh(fresh_runs)
    refit = bench_refit(refits)
    co2 = bench_co2(co2_repeats)
    total = time.perf_counter() - t_start

    columns = ["benchmark", "tsssm", "statsmodels", "dynamax", "statsmodels / tsssm", "dynamax / tsssm", "target", "met"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] + ["---:"] * 5 + ["---", "---"]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in build_rows(num_steps, ll, llts, fresh, refit, co2)]

    print(header)
    print(
        f"Mode: {'quick' if quick else 'full'}; medians of {repeats_ll} calls (1a), {repeats_13} (1b), "
        f"{fresh_runs} fresh processes (2a, 2c; 2b is one), {refits} refits (3), {co2_repeats} fits (4)"
    )
    print()
    print("\n".join(lines))
    print()
    print("Notes:")

    def lls(res):
        return ", ".join(f"{name} {res[name]['ll']:.4f}" for name in ("tsssm", "statsmodels", "dynamax") if "ll" in res[name])

    print(f"- log-likelihoods at the simulation parameters (conventions differ: tsssm exact diffuse; statsmodels approximate "
          f"diffuse with the first terms dropped; dynamax prior variance {DIFFUSE_VARIANCE:g}, all terms): "
          f"local level {lls(ll)}; 13 states {lls(llts)}")
    print(f"- 2b/2c: the persistent cache directory held {fresh['cache_entries']} entries after the runs.")
    print(f"- 4: first (compiling) tsssm fit + forecast took {fmt_time(co2['tsssm_first'])}; {co2.get('check', 'no parity check (a fit failed)')}")
    print(f"- total benchmark wall time {total:.0f} s; load average at the end (1/5/15 min) {_load()}")


if __name__ == "__main__":
    main()
