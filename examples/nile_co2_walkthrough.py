"""Walkthrough of the classical family on two real series: the Nile (local level) and co2.

Run it as a script: ``python examples/nile_co2_walkthrough.py [--plots DIR]``. It fits the
models, prints the parameter tables, compares the fit with statsmodels, forecasts with
intervals, shows the smoothed level, and scores the observations for anomalies. The test suite
runs it (``tests/test_examples.py``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import statsmodels.api as sm

import tsssm


def nile(plots: Path | None) -> None:
    y = tsssm.datasets.load_nile()
    model = tsssm.LocalLevel().fit(y)
    print("Nile, local level model")
    print(model.summary().round(2).to_string())
    print(f"log-likelihood {model.log_likelihood_:.4f}  (Durbin & Koopman: -632.54)   AIC {model.aic_:.2f}")

    # The same model in statsmodels, evaluated at tsssm's estimates (exact diffuse start).
    reference = sm.tsa.UnobservedComponents(y.to_numpy(), "local level", use_exact_diffuse=True)
    params = [float(model.params_["sigma2_irregular"]), float(model.params_["sigma2_level"])]
    print(f"statsmodels at these parameters: {reference.loglike(params):.4f} (+0.919 per diffuse state)")

    fc = model.forecast(10)
    print(fc.to_frame().head().to_string(index=False, float_format="{:.1f}".format))

    level = model.smooth()["level"]
    print(f"smoothed level fell from {level.iloc[:25].mean():.0f} (1871-95) to {level.iloc[-25:].mean():.0f} (1946-70)")
    scores = model.score_samples()
    print(f"most surprising year: {scores.idxmax().year} (score {scores.max():.2f})")

    # Missing values are handled exactly: drop a block and the filter bridges it.
    gappy = y.copy()
    gappy.iloc[40:60] = np.nan
    refit = tsssm.LocalLevel().fit(gappy)
    print(f"with 20 years missing: sigma2_level {float(refit.params_['sigma2_level']):.0f}")
    if plots is not None:
        fc.plot(history=y).savefig(plots / "nile_forecast.png", dpi=100, bbox_inches="tight")


def co2(plots: Path | None) -> None:
    weekly = sm.datasets.co2.load_pandas().data["co2"]
    y = weekly.resample("MS").mean().loc["1965":"1990"].rename("co2")  # months without data stay NaN
    model = tsssm.UnobservedComponents("local linear trend", seasonal=12).fit(y)
    print("\nco2, local linear trend + seasonal(12)")
    print(model.summary()[["estimate", "std_error"]].to_string())
    fc = model.forecast(24)
    print(fc.interval(0.95).head(3).round(2).to_string())
    states = model.smooth()
    print(f"seasonal amplitude {states['seasonal[0]'].max() - states['seasonal[0]'].min():.2f} ppm")
    if plots is not None:
        fc.plot(history=y.loc["1985":]).savefig(plots / "co2_forecast.png", dpi=100, bbox_inches="tight")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plots", type=Path, help="folder for the forecast figures (needs matplotlib)")
    args = parser.parse_args(argv)
    if args.plots is not None:
        import matplotlib

        matplotlib.use("Agg")
        args.plots.mkdir(parents=True, exist_ok=True)
    nile(args.plots)
    co2(args.plots)


if __name__ == "__main__":
    main()
