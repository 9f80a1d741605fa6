"""A nonlinear, irregularly sampled system: a deep Markov model of a damped pendulum.

Thirty swinging pendulums (different initial angles: small swings are nearly harmonic, large ones
are strongly nonlinear) carry an angle sensor and a gyroscope (angular rate), read at uneven
times 0.05-0.2 s apart, with noise and a few missing readings. ``tsssm.DeepMarkovModel`` learns
one transition network for 24 of them (the time gaps enter the transition), scores the other six,
forecasts one pendulum at uneven future times (fan chart) and flags a corrupted reading in a
held-out recording with ``score_samples``.

Run: ``python examples/deep_markov_pendulum.py [--plots DIR] [--epochs N]`` (about 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import tsssm


def simulate(num_series: int = 30, num_obs: int = 50, seed: int = 0) -> pd.DataFrame:
    """Long frame (``unique_id``, ``ds`` in seconds, ``angle``) of noisy, irregular pendulum readings."""
    rng = np.random.default_rng(seed)
    frames = []
    h = 0.01  # RK4 step of the simulation (s)
    for sid in range(num_series):
        times = np.cumsum(rng.uniform(0.05, 0.2, num_obs))  # not rounded: on a 0.01 grid tsssm would see a regular grid with holes
        state = np.array([rng.uniform(0.3, 2.8) * rng.choice([-1, 1]), 0.0])  # angle (rad), angular velocity

        def f(s):
            return np.array([s[1], -9.81 / 1.0 * np.sin(s[0]) - 0.1 * s[1]])

        t, states = 0.0, []
        for target in times:
            while t < target - 1e-9:
                k1 = f(state)
                k2 = f(state + h / 2 * k1)
                k3 = f(state + h / 2 * k2)
                k4 = f(state + h * k3)
                state = state + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
                t += h
            states.append(state.copy())
        states = np.array(states)
        angle = states[:, 0] + 0.05 * rng.normal(size=num_obs)  # angle sensor (rad)
        rate = states[:, 1] + 0.2 * rng.normal(size=num_obs)  # gyroscope (rad/s)
        angle[rng.uniform(size=num_obs) < 0.05] = np.nan
        rate[rng.uniform(size=num_obs) < 0.05] = np.nan
        frames.append(pd.DataFrame({"unique_id": f"p{sid:02d}", "ds": times, "angle": angle, "rate": rate}))
    return pd.concat(frames, ignore_index=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plots", type=Path, default=None, help="folder for the fan chart")
    parser.add_argument("--epochs", type=int, default=400)
    args = parser.parse_args(argv)

    data = simulate()
    ids = data["unique_id"].unique()
    train, test = data[data.unique_id.isin(ids[:24])], data[data.unique_id.isin(ids[24:])].copy()
    missing = int(data[["angle", "rate"]].isna().to_numpy().sum())
    print(f"{len(ids)} pendulums, {len(data)} times, gaps 0.05-0.2 s, {missing} missing readings")

    model = tsssm.DeepMarkovModel(
        z_dim=2, transition_dim=16, emission_dim=16, rnn_dim=16, batch_size=8, learning_rate=1e-2,
        max_epochs=args.epochs, kl_anneal_epochs=args.epochs // 3, kl_anneal_start=0.01, patience=40,
        random_state=0,
    ).fit(train)
    print(f"trained {model.n_iter_} SVI updates in {model.train_seconds_:.1f} s (+{model.compile_seconds_:.1f} s compile); "
          f"ELBO per step {model.elbo_:.3f} (standardised units)")
    readings = int(test[["angle", "rate"]].notna().to_numpy().sum())
    print(f"held-out log predictive density: {model.score(test).sum() / readings:.3f} nats per reading")

    future = train["ds"].max() + np.array([0.2, 0.5, 0.6, 1.0, 1.5, 2.0])
    fc = model.forecast(times=future, num_samples=300)
    first = fc.to_frame()
    first = first[first.unique_id == ids[0]]
    print(f"forecast of {ids[0]} at uneven future times:")
    print(first[["ds", "column", "mean", "lower_80", "upper_80"]].round(3).to_string(index=False))

    # a corrupted reading: the angle at the 41st time of a held-out pendulum is off by 1 rad
    corrupted = test.copy()
    row = corrupted.index[corrupted.unique_id == ids[25]][40]
    corrupted.loc[row, "angle"] += 1.0
    scores = model.score_samples(corrupted)
    worst = scores.loc[scores["score"].idxmax()]
    print(f"most anomalous reading: pendulum {worst.unique_id} at t = {worst.ds:.2f} s "
          f"(score {worst.score:.1f}; corrupted at t = {corrupted.loc[row, 'ds']:.2f} s)")

    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
        history = train[train.unique_id == ids[0]].set_index("ds")["angle"]
        sub = fc.mean[fc.mean.unique_id == ids[0]]  # long frame: unique_id, ds, angle, rate
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3.5))
        ax.plot(history.index, history.to_numpy(), ".-", color="0.2", lw=0.8, label="observed")
        draws = fc.samples[:, 0, :, 0]
        for level_ in (0.95, 0.8):
            lo, hi = np.quantile(draws, [(1 - level_) / 2, (1 + level_) / 2], axis=0)
            ax.fill_between(sub["ds"], lo, hi, color="C0", alpha=0.2, lw=0, label=f"{100 * level_:g}% interval")
        ax.plot(sub["ds"], sub["angle"], color="C0", label="mean")
        ax.set_xlabel("time (s)")
        ax.set_ylabel("angle (rad)")
        ax.legend(fontsize="small")
        fig.savefig(args.plots / "dmm_pendulum_forecast.png", dpi=100, bbox_inches="tight")
        plt.close(fig)
    return model


if __name__ == "__main__":
    main()
