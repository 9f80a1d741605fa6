"""Nowcast a quarterly series from monthly indicators with tsssm.DynamicFactor.

Simulated data: four monthly indicators driven by one common factor, and a quarterly growth rate
(stamped at quarter starts) that is the Mariano-Murasawa aggregate of a latent monthly growth
rate. The monthly data run one month into a quarter whose value is not published yet; the
model nowcasts it. Run: ``python examples/nowcast_monthly_quarterly.py``.
"""

import numpy as np
import pandas as pd

import tsssm


def simulate(seed=1, months=181):
    rng = np.random.default_rng(seed)
    f = np.zeros(months + 20)
    for t in range(1, months + 20):
        f[t] = 0.7 * f[t - 1] + rng.normal()
    f = f[20:]
    index = pd.date_range("2010-01-01", periods=months, freq="MS")
    monthly = {f"indicator{i}": pd.Series(lam * f + rng.normal(scale=0.7, size=months), index=index)
               for i, lam in enumerate([1.0, 0.8, 0.6, 0.4])}
    latent = np.concatenate([np.zeros(4), 0.8 * f + rng.normal(scale=0.4, size=months)])
    weights = np.array([1.0, 2.0, 3.0, 2.0, 1.0]) / 3.0
    growth = np.array([weights @ latent[t : t + 5][::-1] for t in range(months)])
    quarters = pd.date_range("2010-01-01", periods=months // 3, freq="QS")
    return monthly, pd.Series(0.5 + growth[2 : 3 * len(quarters) : 3], index=quarters, name="gdp")


def main():
    monthly, gdp = simulate()
    data = dict(monthly, gdp=gdp)  # a dict of Series: aligned on the monthly grid
    model = tsssm.DynamicFactor(k_factors=1, factor_order=1).fit(data)  # gdp: Mariano-Murasawa (default)
    print(f"log-likelihood {model.log_likelihood_:.4f}; gdp aggregation {model.frequencies_['gdp']['rule']}")
    nowcast = model.nowcast()
    print(nowcast.tail(4).round(3).to_string())
    current = nowcast.iloc[-1]
    print(f"nowcast of gdp for the quarter starting {nowcast.index[-1].date()}: {current['mean']:.3f} "
          f"(95% interval {current['lower_95']:.3f} to {current['upper_95']:.3f})")
    print(model.forecast(3).mean.round(3).to_string())


if __name__ == "__main__":
    main()
