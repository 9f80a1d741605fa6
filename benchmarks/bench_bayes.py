"""NUTS on the Nile local level: tsssm's ``method="nuts"`` vs the same model written in numpyro.

tsssm integrates the level out with the Kalman filter (exact diffuse likelihood,
``numpyro.factor``), so NUTS moves in 2 dimensions. The peer is the model as a numpyro user
writes it with ``numpyro.contrib.control_flow.scan``: the 100 levels are latent sample sites
(centred parametrisation), the first level has a wide ``Normal(mean(y), 10 sd(y))`` prior in
place of the diffuse one, and the two variances have the same ``HalfCauchy(var(y))`` priors as
tsssm's defaults.

Both run 4 chains x (1000 warm-up + 1000 draws) with the same chain method (``vectorized``
unless ``--parallel``, which calls ``numpyro.set_host_device_count(4)`` first). "cold" is the first
fit in the process (compilation included), "warm" a second fit with a new seed. ESS is arviz's
bulk ESS of each variance; ESS/s divides it by the warm wall time. tsssm's wall time includes
everything ``fit`` does (prior draws for ``to_arviz``, the log-likelihood at the posterior mean).

Run: ``python benchmarks/bench_bayes.py`` (add ``--parallel`` for one device per chain).
"""

from __future__ import annotations

import argparse
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--parallel", action="store_true", help="one host device per chain (chain_method='parallel')")
parser.add_argument("--warmup", type=int, default=1000)
parser.add_argument("--samples", type=int, default=1000)
parser.add_argument("--chains", type=int, default=4)
args = parser.parse_args()

import numpyro  # noqa: E402

if args.parallel:
    numpyro.set_host_device_count(args.chains)

import arviz as az  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.contrib.control_flow import scan  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402

import tsssm  # noqa: E402
from tsssm.inference.bayes import choose_chain_method  # noqa: E402

y = tsssm.datasets.load_nile()
values = y.to_numpy()
variance, mean, sd = float(np.var(values)), float(np.mean(values)), float(np.std(values))
chain_method = choose_chain_method(args.chains)


def peer_model(obs):
    sigma2_irregular = numpyro.sample("sigma2_irregular", dist.HalfCauchy(variance))
    sigma2_level = numpyro.sample("sigma2_level", dist.HalfCauchy(variance))
    level0 = numpyro.sample("level0", dist.Normal(mean, 10.0 * sd))

    def step(level, y_t):
        numpyro.sample("y", dist.Normal(level, jnp.sqrt(sigma2_irregular)), obs=y_t)
        return numpyro.sample("level", dist.Normal(level, jnp.sqrt(sigma2_level))), None

    scan(step, level0, obs)


def run_tsssm(seed):
    start = time.perf_counter()
    model = tsssm.LocalLevel(
        method="nuts", num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains, random_state=seed
    ).fit(y)
    wall = time.perf_counter() - start
    return wall, {k: v for k, v in model.posterior_.items()}, model.num_divergences_


def run_peer(seed):
    start = time.perf_counter()
    with jax.enable_x64(True):  # same precision as tsssm
        mcmc = MCMC(NUTS(peer_model), num_warmup=args.warmup, num_samples=args.samples, num_chains=args.chains,
                    chain_method=chain_method, progress_bar=False)
        mcmc.run(jax.random.key(seed), jnp.asarray(values), extra_fields=("diverging",))
        samples = mcmc.get_samples(group_by_chain=True)
        draws = {k: np.asarray(samples[k]) for k in ("sigma2_irregular", "sigma2_level")}
        divergences = int(np.sum(np.asarray(mcmc.get_extra_fields()["diverging"])))
    return time.perf_counter() - start, draws, divergences


rows = {}
for name, fn in (("tsssm (Kalman, marginal)", run_tsssm), ("numpyro scan (latent levels)", run_peer)):
    cold, _, _ = fn(0)
    warm, draws, divergences = fn(1)
    ess = {k: float(az.ess(v[None] if v.ndim == 1 else v, method="bulk")) for k, v in draws.items()}
    means = {k: float(np.mean(v)) for k, v in draws.items()}
    rows[name] = dict(cold=cold, warm=warm, ess=ess, means=means, divergences=divergences)

print(f"NUTS, Nile local level, {args.chains} chains x ({args.warmup} warm-up + {args.samples} draws), "
      f"chain_method={chain_method}, jax {jax.__version__}, numpyro {numpyro.__version__}, {jax.local_device_count()} device(s)")
print()
print("| implementation | cold s | warm s | bulk ESS sigma2_irregular | bulk ESS sigma2_level | ESS/s irregular (warm) "
      "| ESS/s level (warm) | post. mean irregular | post. mean level | divergences |")
print("|---|---|---|---|---|---|---|---|---|---|")
for name, r in rows.items():
    e, m = r["ess"], r["means"]
    print(f"| {name} | {r['cold']:.1f} | {r['warm']:.1f} | {e['sigma2_irregular']:.0f} | {e['sigma2_level']:.0f} | "
          f"{e['sigma2_irregular'] / r['warm']:.0f} | {e['sigma2_level'] / r['warm']:.0f} | {m['sigma2_irregular']:.0f} | "
          f"{m['sigma2_level']:.0f} | {r['divergences']} |")
a, b = rows.values()
print()
print(f"ratios tsssm / peer: warm wall time {a['warm'] / b['warm']:.2f}x, cold {a['cold'] / b['cold']:.2f}x; "
      f"ESS/s sigma2_irregular {(a['ess']['sigma2_irregular'] / a['warm']) / (b['ess']['sigma2_irregular'] / b['warm']):.1f}x, "
      f"sigma2_level {(a['ess']['sigma2_level'] / a['warm']) / (b['ess']['sigma2_level'] / b['warm']):.1f}x")
sys.exit(0)
