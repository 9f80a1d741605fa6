"""Deep Markov model on the JSB chorales: test bound in nats per time step, throughput, compile time.

Trains :class:`tsssm.models.deep_markov.DeepMarkovNetwork` (Bernoulli emission over the 88 piano
keys) with :func:`tsssm.inference.svi.fit` on the training split for a wall-clock budget, with
early stopping on the validation split, and reports on the test split:

- the negative ELBO (one guide trajectory per chorale, averaged over ``--elbo-draws`` draws) and
- the negative particle-filter bound (log of the SMC likelihood estimate, ``--particles``),

both summed over the 88 keys and all test chorales and divided by the number of test time steps
(4725): the convention of the published numbers (Krishnan et al. 2017: 6.93; Pyro's DMM example:
6.87). Lower is better.

    python benchmarks/bench_dmm_jsb.py --minutes 15          # default sizes (see --help)
    python benchmarks/bench_dmm_jsb.py --quick               # ~1-2 min smoke run, tiny networks
    python benchmarks/bench_dmm_jsb.py --paper --minutes 60  # Pyro's sizes: z 100, transition 200, emission 100, rnn 600
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time

import jax
import numpy as np

import tsssm
from tsssm.inference import svi
from tsssm.models.deep_markov import DeepMarkovNetwork

PUBLISHED = {"Krishnan et al. 2017 (DMM)": 6.93, "Pyro DMM example": 6.87}


def split(data, name) -> svi.SequenceBatch:
    y = data[name].astype(np.float32)
    lengths = data[f"{name}_lengths"]
    valid = np.arange(y.shape[1])[None, :] < lengths[:, None]
    mask = np.broadcast_to(valid[:, :, None], y.shape)
    return svi.as_batch(y, mask, np.ones(valid.shape), valid)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=15.0, help="training budget (wall clock, compilation excluded)")
    p.add_argument("--quick", action="store_true", help="tiny networks, 1 minute")
    p.add_argument("--paper", action="store_true", help="Pyro's network sizes (slow on CPU)")
    p.add_argument("--z-dim", type=int, default=32)
    p.add_argument("--transition-dim", type=int, default=64)
    p.add_argument("--emission-dim", type=int, default=64)
    p.add_argument("--rnn-dim", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=20)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 penalty added to the gradient (per-step loss)")
    p.add_argument("--lr-decay", type=float, default=1.0, help="learning-rate factor per update")
    p.add_argument("--patience", type=int, default=10, help="validation checks (every 5 epochs) without improvement")
    p.add_argument("--anneal-epochs", type=int, default=40)
    p.add_argument("--anneal-start", type=float, default=0.2)
    p.add_argument("--particles", type=int, default=64)
    p.add_argument("--elbo-draws", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.z_dim, args.transition_dim, args.emission_dim, args.rnn_dim = 1.0, 8, 16, 16, 32
        args.particles, args.elbo_draws = 16, 1
    if args.paper:
        args.z_dim, args.transition_dim, args.emission_dim, args.rnn_dim = 100, 200, 100, 600

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
    commit += " + uncommitted changes" if dirty else ""
    data = tsssm.datasets.load_jsb_chorales()
    train, valid, test = split(data, "train"), split(data, "valid"), split(data, "test")
    net = DeepMarkovNetwork(
        88, args.z_dim, args.transition_dim, args.emission_dim, args.rnn_dim, "bernoulli", key=jax.random.key(args.seed)
    )
    sizes = f"z {args.z_dim}, transition {args.transition_dim}, emission {args.emission_dim}, rnn {args.rnn_dim}"
    print(f"training ({sizes}) for up to {args.minutes:g} min ...", flush=True)
    result = svi.fit(
        net, train, valid, batch_size=args.batch_size, max_epochs=100_000, learning_rate=args.lr, clip_norm=10.0,
        weight_decay=args.weight_decay, lr_decay=args.lr_decay,
        kl_anneal_epochs=args.anneal_epochs, kl_anneal_start=args.anneal_start, patience=args.patience,
        max_seconds=60.0 * args.minutes, seed=args.seed, verbose=10, eval_every=5,
    )
    steps = int(test.valid.sum())
    t0 = time.perf_counter()
    elbos = [float(np.sum(np.asarray(svi.batch_elbo(result.network, test, jax.random.key(100 + i))))) for i in range(args.elbo_draws)]
    eval_elbo_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    filt = svi.batch_filter(result.network, test, jax.random.key(7), args.particles)
    smc = float(np.sum(np.asarray(filt.log_increments)) + np.sum(np.asarray(filt.pending)))
    eval_smc_s = time.perf_counter() - t0
    neg_elbo = -np.mean(elbos) / steps
    neg_smc = -smc / steps
    epochs = len(result.history)
    best_valid = min((h["valid"] for h in result.history if h["valid"] is not None), default=float("nan"))

    print()
    print(f"Machine: {os.cpu_count()} CPU cores, {platform.platform()}, Python {platform.python_version()}; "
          f"load average at end {os.getloadavg()[0]:.2f}")
    print(f"Versions: tsssm {tsssm.__version__} (commit {commit}), jax {jax.__version__} ({jax.default_backend()})")
    print(f"Networks: {sizes}; batch {args.batch_size} chorales, Adam lr {args.lr:g} (x {args.lr_decay:g} per update), "
          f"L2 {args.weight_decay:g}, patience {args.patience}, clip 10, "
          f"KL annealing {args.anneal_start:g} -> 1 over {args.anneal_epochs} epochs; budget {args.minutes:g} min")
    print()
    print("| quantity | value |")
    print("|---|---:|")
    print(f"| test negative ELBO, nats / time step (mean of {args.elbo_draws} draws) | **{neg_elbo:.3f}** |")
    print(f"| test negative particle-filter bound ({args.particles} particles), nats / time step | **{neg_smc:.3f}** |")
    for name, value in PUBLISHED.items():
        print(f"| published: {name} | {value:.2f} |")
    print(f"| best validation negative ELBO, nats / step | {best_valid:.3f} |")
    print(f"| training: epochs / SVI updates / stop reason | {epochs} / {result.num_updates} / {result.stopped} |")
    print(f"| training time (compilation excluded) | {result.train_seconds:.0f} s |")
    print(f"| throughput (chorales x time steps per second, training) | {result.sequence_steps / result.train_seconds:,.0f} |")
    print(f"| compile time of the SVI update | {result.compile_seconds:.1f} s |")
    print(f"| test evaluation: ELBO x{args.elbo_draws} / particle filter (compile included) | {eval_elbo_s:.1f} s / {eval_smc_s:.1f} s |")
    return neg_elbo, neg_smc


if __name__ == "__main__":
    main()
