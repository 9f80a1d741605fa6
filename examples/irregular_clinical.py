"""Irregularly sampled vital sign: a continuous-time local linear trend + daily rhythm.

A simulated patient's heart rate is charted at uneven times (every 1-8 hours, denser at night
shifts, with a few long gaps). tsssm sees the real gaps: ``UnobservedComponents`` fitted on
irregular timestamps uses the continuous-time versions of its components (Brownian level with an
integrated-random-walk slope, a stochastic-oscillator daily rhythm), whose likelihood is exact
for any spacing. We then forecast at the times of the next planned measurements and flag the
most surprising chart entry.

Run: ``python examples/irregular_clinical.py [--plots DIR]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import tsssm


def simulate_chart(seed: int = 3, num: int = 120) -> pd.Series:
    """Heart rate (bpm) at uneven times: slow drift + 24 h rhythm + measurement noise."""
    rng = np.random.default_rng(seed)
    gaps = rng.choice([1.0, 2.0, 4.0, 6.0, 8.0], size=num, p=[0.2, 0.3, 0.25, 0.15, 0.1])
    gaps = gaps + rng.uniform(-0.4, 0.4, num)  # charted a little off the hour
    gaps[[40, 85]] = [20.0, 14.0]  # two long gaps (patient off the ward)
    hours = np.cumsum(gaps)
    level, slope, values = 78.0, 0.0, []
    previous = 0.0
    for t in hours:
        dt = t - previous
        previous = t
        slope += rng.normal(0.0, np.sqrt(2e-6 * dt))
        level += slope * dt + rng.normal(0.0, np.sqrt(0.2 * dt))
        rhythm = 6.0 * np.sin(2 * np.pi * t / 24.0)
        values.append(level + rhythm + rng.normal(0.0, 2.0))
    values = np.array(values)
    values[60] += 25.0  # a tachycardic episode (anomaly)
    index = pd.Timestamp("2025-02-03 08:00") + pd.to_timedelta(hours, unit="h")
    return pd.Series(values, index=index.round("min"), name="heart_rate")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plots", type=Path, default=None, help="folder for a forecast plot")
    args = parser.parse_args(argv)

    y = simulate_chart()
    gaps_h = np.diff(y.index.to_numpy()) / np.timedelta64(1, "h")
    print(f"{len(y)} measurements over {gaps_h.sum() / 24:.1f} days; gaps from {gaps_h.min():.1f} h to {gaps_h.max():.1f} h")

    # time_unit="1h": variances are per hour and the seasonal period is 24 (hours).
    model = tsssm.UnobservedComponents(
        "local linear trend", seasonal=24, harmonics=1, time_unit="1h", random_state=0
    ).fit(y)
    print("components:", ", ".join(type(c).__name__ for c in model.model_.components))
    print(f"log-likelihood {model.log_likelihood_:.3f}")
    for name, value in model.params_.items():
        print(f"  {name:18s} {float(value):.4g}")

    # the next planned measurements: in 30 min, 3 h and 12 h
    last = y.index[-1]
    future = pd.DatetimeIndex([last + pd.Timedelta(h, "h") for h in (0.5, 3.0, 12.0)])
    fc = model.forecast(times=future)
    table = fc.to_frame().set_index("time")[["mean", "lower_95", "upper_95"]]
    print(table.round(1).to_string())

    scores = model.score_samples()
    worst = scores.idxmax()
    print(f"most surprising measurement: {worst} ({y[worst]:.0f} bpm, score {scores.max():.1f})")

    if args.plots is not None:
        import matplotlib

        matplotlib.use("Agg")
        args.plots.mkdir(parents=True, exist_ok=True)
        fig = fc.plot(history=y)
        fig.savefig(args.plots / "irregular_forecast.png")


if __name__ == "__main__":
    main()
