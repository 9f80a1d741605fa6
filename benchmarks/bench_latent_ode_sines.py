r"""Latent ODE and SDE against neural, classical and naive baselines on irregularly sampled oscillations.

Two systems (``--system``).

``sines`` (default): deterministic sines. Each series is a sine with its own frequency (0.8-1.6 rad per unit), phase and amplitude (0.5-1.5),
observed with noise (sd 0.05) at 8-30 uniform random times in [0, 10]. Models are trained on
``--train`` series and evaluated on ``--test`` unseen series (the encoders are amortised):

* interpolation: 20% of each test series' observations are held out; the models condition on the
  rest and predict the held-out noiseless values;
* extrapolation: the models condition on all observations in [0, 10] and predict the noiseless
  values at 10 equally spaced times in (10, 15].

Models:

* ``tsssm.LatentODE`` (ODE-RNN encoder, diffrax Tsit5 decoder), trained for ``--seconds``;
* RNN-VAE (Rubanova et al.'s baseline, written here with equinox + optax): a backward GRU encoder
  over (value, time gap) gives q(z0); the decoder is a GRU started from z0 that reads the time
  gap before each requested time, with a linear read-out and a learned noise scale; trained on
  the same ELBO for the same wall-clock budget;
* carry-forward: the last observed value before each requested time.

Prints MSEs, training throughput and compile times.

``oscillator``: a stochastic oscillator, so that honest forecast intervals must widen with the
horizon. Each series is :math:`y = \sin\varphi(t) + \varepsilon`, :math:`\varepsilon \sim
\mathcal N(0, 0.1^2)`, whose phase diffuses, :math:`d\varphi = 1.2\,dt + 0.4\,dW` (simulated
exactly; random initial phase), observed at irregular times (gaps uniform in [0.2, 0.6]) in
[0, 10]. Every model reads the ``--series`` windows and forecasts each series at the irregular
future times ``OSCILLATOR_FUTURE`` in (10, 15]; the held-out noisy values there score the
intervals. Models:

* ``tsssm.LatentSDE`` and ``tsssm.LatentODE`` (z 4, widths 32, Adam 3e-3, batch 32), trained on
  the windows for ``--seconds`` each, 1000 forecast draws;
* classical continuous-time models fitted by maximum likelihood to each series' own window (tsssm
  fits irregular series one at a time): the Brownian local level (``tsssm.LocalLevel``, the
  baseline of the latent ODE's slow test) and a damped stochastic cycle
  (``UnobservedComponents("irregular", cycle=True)``, the linear model of an oscillation);
* naive: carrying the last value forward (no interval) and the series' climatology (its mean and
  the empirical quantiles of its own observations).

Prints the extrapolation MSE against the noiseless signal, the empirical coverage of the 80% and
95% forecast intervals of the held-out observations, mean interval widths, the 80% width at the
first and the last future time, training throughput and compile times. Run::

    python benchmarks/bench_latent_ode_sines.py                 # ~6 minutes on 2 cores
    python benchmarks/bench_latent_ode_sines.py --seconds 20    # quick smoke run
    python benchmarks/bench_latent_ode_sines.py --system oscillator               # ~6 minutes on 1 core
    python benchmarks/bench_latent_ode_sines.py --system oscillator --seconds 5   # quick smoke run
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

import tsssm
from tsssm.inference import latent

FUTURE = np.linspace(10.5, 15.0, 10)


def simulate(num_series: int, seed: int):
    """Long frame of the observations, the held-out (interpolation) rows, and the future truth ``(B, 10)``."""
    rng = np.random.default_rng(seed)
    observed, held_out, future = [], [], []
    for i in range(num_series):
        t = np.sort(rng.uniform(0.0, 10.0, rng.integers(8, 31)))
        w, phase, amp = rng.uniform(0.8, 1.6), rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.5)
        truth = amp * np.sin(w * t + phase)
        frame = pd.DataFrame({"unique_id": f"s{i:04d}", "ds": t, "y": truth + 0.05 * rng.normal(size=t.size),
                              "truth": truth})
        hold = np.zeros(t.size, bool)
        hold[rng.choice(np.arange(1, t.size), max(1, t.size // 5), replace=False)] = True
        observed.append(frame[~hold])
        held_out.append(frame[hold])
        future.append(amp * np.sin(w * FUTURE + phase))
    return pd.concat(observed, ignore_index=True), pd.concat(held_out, ignore_index=True), np.array(future)


# ---------------------------------------------------------------------------- RNN-VAE baseline
class RNNVAE(eqx.Module):
    encoder: eqx.nn.GRUCell
    to_z: eqx.nn.Linear
    from_z: eqx.nn.Linear
    decoder: eqx.nn.GRUCell
    out: eqx.nn.Linear
    log_scale: jax.Array

    def __init__(self, z_dim, hidden, key):
        k = jax.random.split(key, 5)
        self.encoder = eqx.nn.GRUCell(3, hidden, key=k[0])
        self.to_z = eqx.nn.Linear(hidden, 2 * z_dim, key=k[1])
        self.from_z = eqx.nn.Linear(z_dim, hidden, key=k[2])
        self.decoder = eqx.nn.GRUCell(1, hidden, key=k[3])
        self.out = eqx.nn.Linear(hidden, 1, key=k[4])
        self.log_scale = jnp.asarray(np.log(0.5), jnp.float32)  # not weakly typed: no recompilation after the first update

    def posterior(self, t, y, valid):
        gaps = jnp.diff(t, append=t[-1:])  # gap to the next observation (read backwards)

        def step(h, inp):
            yk, gk, ok = inp
            return jnp.where(ok, self.encoder(jnp.stack([yk, gk, 1.0]), h), h), None

        h, _ = jax.lax.scan(step, jnp.zeros(self.from_z.out_features), (y, gaps, valid), reverse=True)
        loc, raw = jnp.split(self.to_z(h), 2)
        return loc, jax.nn.softplus(raw) + 1e-3

    def decode(self, z0, times):
        gaps = jnp.diff(times, prepend=times[:1])

        def step(h, g):
            h = self.decoder(g[None], h)
            return h, self.out(h)[0]

        _, ys = jax.lax.scan(step, jnp.tanh(self.from_z(z0)), gaps)
        return ys


def rnn_loss(model, t, y, valid, key):
    def one(t, y, valid, key):
        loc, scale = model.posterior(t, y, valid)
        z0 = loc + scale * jax.random.normal(key, loc.shape)
        mean = model.decode(z0, t)
        s = jnp.exp(model.log_scale)
        ll = jnp.sum(jnp.where(valid, -0.5 * ((y - mean) / s) ** 2 - jnp.log(s) - 0.9189385, 0.0))
        kl = 0.5 * jnp.sum(scale**2 + loc**2 - 1.0 - 2 * jnp.log(scale))
        return ll - kl

    elbo = jax.vmap(one)(t, y, valid, jax.random.split(key, t.shape[0]))
    return -jnp.sum(elbo) / jnp.sum(valid)


def pad(frame: pd.DataFrame):
    groups = [g for _, g in frame.groupby("unique_id", sort=False)]
    T = max(len(g) for g in groups)
    t = np.zeros((len(groups), T), np.float32)
    y = np.zeros((len(groups), T), np.float32)
    valid = np.zeros((len(groups), T), bool)
    for b, g in enumerate(groups):
        n = len(g)
        t[b, :n], y[b, :n], valid[b, :n] = g["ds"], g["y"], True
        t[b, n:] = g["ds"].iloc[-1]
    return t, y, valid


def train_rnn_vae(frame, seconds, batch_size, seed):
    t, y, valid = pad(frame)
    model = RNNVAE(4, 32, jax.random.key(seed))
    optimizer = optax.chain(optax.clip_by_global_norm(10.0), optax.adam(3e-3))
    state = optimizer.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def update(model, state, batch, key):
        loss, grads = eqx.filter_value_and_grad(rnn_loss)(model, *batch, key)
        updates, state = optimizer.update(grads, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, updates), state, loss

    rng = np.random.default_rng(seed)
    n = t.shape[0]
    t0 = time.perf_counter()
    model, state, _ = update(model, state, (t[:batch_size], y[:batch_size], valid[:batch_size]), jax.random.key(0))
    compile_seconds = time.perf_counter() - t0
    start, updates, steps = time.perf_counter(), 0, 0
    while time.perf_counter() - start < seconds:
        order = rng.permutation(n)[: n - n % batch_size]
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            model, state, loss = update(model, state, (t[idx], y[idx], valid[idx]), jax.random.key(updates + 1))
            updates += 1
            steps += int(valid[idx].sum())
    jax.block_until_ready(loss)
    train_seconds = time.perf_counter() - start
    return model, {"compile": compile_seconds, "updates": updates, "series_per_s": updates * batch_size / train_seconds,
                   "steps_per_s": steps / train_seconds}


def rnn_predict(model, context, queries):
    """Posterior-mean z0 from the context; decode over the sorted union of context and query times."""
    t, y, valid = pad(context)
    out = []
    for b in range(t.shape[0]):
        n = int(valid[b].sum())
        loc, _ = model.posterior(jnp.asarray(t[b, :n]), jnp.asarray(y[b, :n]), jnp.ones(n, bool))
        grid = np.concatenate([t[b, :n], queries[b]])
        order = np.argsort(grid, kind="stable")
        decoded = np.asarray(model.decode(loc, jnp.asarray(grid[order])))
        values = np.empty_like(decoded)
        values[order] = decoded
        out.append(values[n:])
    return out


# -------------------------------------------------------------------------- latent ODE queries
def latent_ode_predict(model, context, queries, num_samples=200):
    """Mean of the latent ODE's predictive draws at per-series query times (inside or after the context).

    Uses the estimator's importance-weighted particles (``_evaluated``) and the ODE decoder directly,
    because ``forecast`` only asks for times after the end of every series.
    """
    result, panel, meta, _, _ = model._evaluated(context)
    first, last = model._ends(panel, meta.lengths)
    last = (last - first) / model.time_scale_  # on the series' clocks
    h = max(len(q) for q in queries)
    clock = np.stack([np.concatenate([q, np.full(h - len(q), q[-1])]) for q in queries])
    clock = (clock - first[:, None]) / model.time_scale_
    _, means, ok = latent.batch_forecast(model.network_, result, jnp.asarray(last, jnp.float32),
                                         jnp.asarray(clock, jnp.float32), jax.random.key(0), num_samples, 1)
    assert bool(np.all(ok))
    means = np.asarray(means, float).mean(axis=1)[..., 0] * model.scale_[0] + model.loc_[0]
    return [means[b, : len(q)] for b, q in enumerate(queries)]


def carry_forward(context, queries):
    out = []
    for (_, g), q in zip(context.groupby("unique_id", sort=False), queries):
        idx = np.searchsorted(g["ds"].to_numpy(), q, side="right") - 1
        out.append(g["y"].to_numpy()[np.maximum(idx, 0)])
    return out


def mse(predictions, truths):
    return float(np.mean(np.concatenate([(p - t) ** 2 for p, t in zip(predictions, truths)])))


def rate_text(value: float) -> str:
    """A throughput for the tables: ``-`` where it does not apply."""
    if not np.isfinite(value):
        return "-"
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def print_machine():
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        commit = "?"
    print(f"Machine: {platform.platform()}, Python {platform.python_version()}, jax {jax.__version__}, commit {commit}")


def run_sines(args):
    """The ``sines`` benchmark: interpolation and extrapolation MSE (see the module docstring)."""

    train_obs, train_hold, _ = simulate(args.train, seed=0)
    train = pd.concat([train_obs, train_hold]).sort_values(["unique_id", "ds"], kind="stable")[["unique_id", "ds", "y"]]
    test_obs, test_hold, future = simulate(args.test, seed=1)
    full_test = pd.concat([test_obs, test_hold]).sort_values(["unique_id", "ds"], kind="stable")
    hold_groups = [g for _, g in test_hold.groupby("unique_id", sort=False)]
    interp_queries = [g["ds"].to_numpy() for g in hold_groups]
    interp_truth = [g["truth"].to_numpy() for g in hold_groups]
    extrap_queries = [FUTURE] * args.test
    interp_context = test_obs[["unique_id", "ds", "y"]]
    extrap_context = full_test[["unique_id", "ds", "y"]]

    model = tsssm.LatentODE(z_dim=4, hidden_dim=32, dynamics_dim=32, emission_dim=32, batch_size=args.batch_size,
                            learning_rate=3e-3, max_epochs=100_000, max_seconds=args.seconds,
                            validation_fraction=0.0, random_state=0).fit(train)
    ode_rate = model.n_iter_ * args.batch_size / model.train_seconds_
    ode_steps = len(train) * len(model.history_) / model.train_seconds_
    ode = [latent_ode_predict(model, interp_context, interp_queries),
           latent_ode_predict(model, extrap_context, extrap_queries)]
    rnn_model, rnn_info = train_rnn_vae(train, args.seconds, args.batch_size, seed=0)
    rnn = [rnn_predict(rnn_model, interp_context, interp_queries), rnn_predict(rnn_model, extrap_context, extrap_queries)]
    naive = [carry_forward(interp_context, interp_queries), carry_forward(extrap_context, extrap_queries)]

    truths = [interp_truth, list(future)]
    rows = [
        ("latent ODE (tsssm.LatentODE)", *(mse(p, t) for p, t in zip(ode, truths)), ode_rate, ode_steps,
         model.compile_seconds_, model.n_iter_),
        ("RNN-VAE with time-gap inputs", *(mse(p, t) for p, t in zip(rnn, truths)), rnn_info["series_per_s"],
         rnn_info["steps_per_s"], rnn_info["compile"], rnn_info["updates"]),
        ("carry last value forward", *(mse(p, t) for p, t in zip(naive, truths)), np.nan, np.nan, np.nan, 0),
    ]
    print_machine()
    print(f"Data: {args.train} training / {args.test} test series, 8-30 irregular observations each; "
          f"training budget {args.seconds:.0f} s per model, batch {args.batch_size}")
    print()
    print("| model | interpolation MSE | extrapolation MSE | training series / s | training obs / s | compile s | updates |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, interp, extrap, rate, steps, comp, updates in rows:
        print(f"| {name} | {interp:.4f} | {extrap:.4f} | {rate_text(rate)} | {rate_text(steps)} | "
              f"{'-' if not np.isfinite(comp) else f'{comp:.1f}'} | {updates:,} |")
    print()
    print(f"extrapolation MSE ratio RNN-VAE / latent ODE: {rows[1][2] / rows[0][2]:.1f}x")



# ---------------------------------------------------------------- stochastic oscillator
OSCILLATOR_FUTURE = np.array([10.3, 10.8, 11.6, 12.5, 13.7, 15.0])
LEVELS = (0.8, 0.95)


def simulate_oscillator(num_series: int, seed: int, *, omega=1.2, phase_noise=0.4, noise=0.1, end=10.0,
                        future=OSCILLATOR_FUTURE):
    """Phase-diffusing oscillator :math:`y = \\sin\\varphi(t) + \\varepsilon`, :math:`d\\varphi = \\omega\\,dt + \\sigma\\,dW`.

    Simulated exactly at irregular times (gaps uniform in [0.2, 0.6], first time in [0, 0.3]) up to
    ``end`` and at the ``future`` times, with a uniform random initial phase and observation noise
    of sd ``noise``.

    Parameters
    ----------
    num_series, seed : int
    omega, phase_noise, noise, end : float
        :math:`\\omega`, :math:`\\sigma`, the observation noise sd and the end of the observed window.
    future : array (h,)
        Future times after ``end``.

    Returns
    -------
    observed : pandas.DataFrame
        Long frame (``unique_id``, ``ds``, ``y``) of the observations in [0, end].
    future_y, future_signal : ndarray (B, h)
        The noisy held-out observations and the noiseless signal at the ``future`` times.
    """
    rng = np.random.default_rng(seed)
    frames, future_y, future_signal = [], [], []
    for i in range(num_series):
        t = rng.uniform(0.0, 0.3) + np.cumsum(rng.uniform(0.2, 0.6, int(end / 0.2) + 1))
        t = t[t <= end]
        every = np.concatenate([t, future])
        gaps = np.diff(every, prepend=0.0)
        phase = rng.uniform(0.0, 2 * np.pi) + np.cumsum(omega * gaps + phase_noise * np.sqrt(gaps) * rng.normal(size=gaps.size))
        signal = np.sin(phase)
        y = signal + noise * rng.normal(size=signal.size)
        frames.append(pd.DataFrame({"unique_id": f"s{i:04d}", "ds": t, "y": y[: t.size]}))
        future_y.append(y[t.size :])
        future_signal.append(signal[t.size :])
    return pd.concat(frames, ignore_index=True), np.array(future_y), np.array(future_signal)


def forecast_bounds(fc: tsssm.Forecast, shape) -> tuple[np.ndarray, dict]:
    """Mean ``shape`` and ``{level: (lower, upper)}`` of a forecast's ``LEVELS`` intervals."""
    bounds = {}
    for level in LEVELS:
        frame = fc.interval(level)
        bounds[level] = tuple(frame.filter(like=side).to_numpy().reshape(shape) for side in ("lower", "upper"))
    return fc.mean.filter(like="y").to_numpy().reshape(shape), bounds


def interval_coverage(bounds: dict, observed: np.ndarray) -> dict:
    """Empirical coverage and width of forecast intervals.

    Parameters
    ----------
    bounds : dict of level -> (lower, upper), arrays (B, h)
        NaN rows (series without a forecast) are left out.
    observed : array (B, h)
        The held-out values.

    Returns
    -------
    dict of level -> (coverage, mean width, coverage per future time (h,), mean width per future time (h,))
    """
    out = {}
    for level, (lower, upper) in bounds.items():
        ok = np.isfinite(lower) & np.isfinite(upper)
        inside = np.where(ok, (observed >= lower) & (observed <= upper), np.nan)
        width = np.where(ok, upper - lower, np.nan)
        out[level] = (float(np.nanmean(inside)), float(np.nanmean(width)), np.nanmean(inside, axis=0),
                      np.nanmean(width, axis=0))
    return out


def per_series_classical(make, observed: pd.DataFrame, shape):
    """Fit ``make()`` by maximum likelihood to each series' own window and forecast ``OSCILLATOR_FUTURE``.

    Returns the :func:`forecast_bounds` of the panel (NaN rows for series whose fit failed with
    :class:`tsssm.NumericalError`), the number of failures and the seconds taken.
    """
    mean = np.full(shape, np.nan)
    bounds = {level: (np.full(shape, np.nan), np.full(shape, np.nan)) for level in LEVELS}
    failed, start = 0, time.perf_counter()
    for b, (_, part) in enumerate(observed.groupby("unique_id", sort=False)):
        try:
            fc = make().fit(part.set_index("ds")["y"]).forecast(times=OSCILLATOR_FUTURE)
        except tsssm.NumericalError:
            failed += 1
            continue
        m, bb = forecast_bounds(fc, (1, shape[1]))
        mean[b] = m[0]
        for level in LEVELS:
            bounds[level][0][b], bounds[level][1][b] = bb[level][0][0], bb[level][1][0]
    return mean, bounds, failed, time.perf_counter() - start


def climatology(observed: pd.DataFrame, shape):
    """Each series' mean and the empirical quantiles of its own observations, at every future time."""
    groups = observed.groupby("unique_id", sort=False)["y"]
    mean = np.repeat(groups.mean().to_numpy()[:, None], shape[1], axis=1)
    bounds = {}
    for level in LEVELS:
        lower, upper = (np.repeat(groups.quantile(q).to_numpy()[:, None], shape[1], axis=1)
                        for q in ((1 - level) / 2, (1 + level) / 2))
        bounds[level] = (lower, upper)
    return mean, bounds


def run_oscillator(args):
    """The ``oscillator`` benchmark: extrapolation MSE and forecast-interval calibration (module docstring)."""
    observed, future_y, future_signal = simulate_oscillator(args.series, seed=0)
    shape = future_y.shape
    groups = observed.groupby("unique_id", sort=False)["y"]
    settings = {"z_dim": 4, "hidden_dim": 32, "dynamics_dim": 32, "emission_dim": 32, "batch_size": args.batch_size,
                "learning_rate": 3e-3, "max_epochs": 100_000, "max_seconds": args.seconds, "validation_fraction": 0.0,
                "random_state": 0}
    rows = []  # name, mean, bounds, series / s, obs / s, compile s, total s, updates
    for name, model in (("latent SDE (tsssm.LatentSDE, dt 0.5)", tsssm.LatentSDE(dt=0.5, **settings)),
                        ("latent ODE (tsssm.LatentODE)", tsssm.LatentODE(**settings))):
        start = time.perf_counter()
        model.fit(observed)
        mean, bounds = forecast_bounds(model.forecast(times=OSCILLATOR_FUTURE, num_samples=1000), shape)
        rows.append((name, mean, bounds, model.n_iter_ * args.batch_size / model.train_seconds_,
                     len(observed) * len(model.history_) / model.train_seconds_, model.compile_seconds_,
                     time.perf_counter() - start, model.n_iter_))
    notes = []
    for name, make in (("damped stochastic cycle, MLE per series", lambda: tsssm.UnobservedComponents(
                            "irregular", cycle=True, cycle_period_bounds=(2.0, 20.0))),
                       ("local level (Brownian), MLE per series", tsssm.LocalLevel)):
        mean, bounds, failed, seconds = per_series_classical(make, observed, shape)
        if failed:
            notes.append(f"{name}: {failed} of {shape[0]} fits failed (NumericalError) and are left out")
        fitted = shape[0] - failed
        rows.append((name, mean, bounds, fitted / seconds, np.nan, np.nan, seconds, 0))
    last = np.repeat(groups.last().to_numpy()[:, None], shape[1], axis=1)
    nothing = {level: (np.full(shape, np.nan), np.full(shape, np.nan)) for level in LEVELS}
    rows.append(("carry last value forward", last, nothing, np.nan, np.nan, np.nan, np.nan, 0))
    rows.append(("series climatology (mean, empirical quantiles)", *climatology(observed, shape),
                 np.nan, np.nan, np.nan, np.nan, 0))

    print_machine()
    print(f"Data: {args.series} stochastic oscillators, {groups.size().min()}-{groups.size().max()} irregular "
          f"observations each in [0, 10], {shape[1]} held-out future times in (10, 15]; training budget "
          f"{args.seconds:.0f} s per deep model, batch {args.batch_size}")
    print()
    print("| model | extrapolation MSE | 80% coverage | 95% coverage | 80% width | 95% width | 80% width first / last "
          "time | training series / s | training obs / s | compile s | total s | updates |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, mean, bounds, rate, steps, comp, total, updates in rows:
        ok = np.all(np.isfinite(mean), axis=1)
        error = float(np.mean((mean[ok] - future_signal[ok]) ** 2))
        cov = interval_coverage(bounds, future_y) if np.isfinite(bounds[0.8][0]).any() else None
        cells = (["-"] * 5 if cov is None else
                 [f"{cov[0.8][0]:.3f}", f"{cov[0.95][0]:.3f}", f"{cov[0.8][1]:.2f}", f"{cov[0.95][1]:.2f}",
                  f"{cov[0.8][3][0]:.2f} / {cov[0.8][3][-1]:.2f}"])
        print(f"| {name} | {error:.4f} | {' | '.join(cells)} | {rate_text(rate)} | {rate_text(steps)} | "
              f"{'-' if not np.isfinite(comp) else f'{comp:.1f}'} | {'-' if not np.isfinite(total) else f'{total:.1f}'} "
              f"| {updates:,} |")
    print()
    print("Coverage by future time (80% / 95%), times " + ", ".join(f"{t:g}" for t in OSCILLATOR_FUTURE) + ":")
    for name, _, bounds, *_ in rows:
        if np.isfinite(bounds[0.8][0]).any():
            cov = interval_coverage(bounds, future_y)
            print(f"  {name}: " + ", ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(cov[0.8][2], cov[0.95][2])))
    for note in notes:
        print(note)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=("sines", "oscillator"), default="sines")
    parser.add_argument("--train", type=int, default=256, help="sines: training series")
    parser.add_argument("--test", type=int, default=128, help="sines: test series")
    parser.add_argument("--series", type=int, default=128, help="oscillator: series (each forecast from its own window)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="training budget per deep model (default 120 for sines, 60 for the oscillator)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 120.0 if args.system == "sines" else 60.0
    (run_sines if args.system == "sines" else run_oscillator)(args)


if __name__ == "__main__":
    main()
