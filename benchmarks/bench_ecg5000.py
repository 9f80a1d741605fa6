"""Anomaly detection on ECG5000: the model families next to simple baselines.

Run from the repository root::

    python benchmarks/bench_ecg5000.py                         # every method
    python benchmarks/bench_ecg5000.py --only "latent ODE"     # methods whose name contains a string
    python benchmarks/bench_ecg5000.py --only Chimera --chimera-seconds 300
    python benchmarks/bench_ecg5000.py --no-select             # the older protocol: choices fixed in advance

Protocol (the usual one): fit on the 292 normal beats of the UCR training split, score all 4,500
test beats (2,627 normal, 1,873 abnormal), report AUROC, AUPRC and the best point-wise F1
(no point adjustment) with :mod:`tsssm.anomaly`.

**Choices are made on a validation set, never on the test set** (default). The training split
has 500 beats: 292 normal, 208 abnormal. A fixed 20% of the normal training beats (58, seed 0)
is held out; every candidate setting of a method (``Method.candidates``: hyperparameters,
training budget) is fitted on the other 234 normal beats and scored on the validation set = the
58 held-out normal beats + the 208 abnormal training beats. For the state-space models, which
score every sample, the beat score's aggregation of the per-step scores is chosen there too,
among ``AGGREGATIONS``: the mean, the maximum, or the mean of the top 5 / 10 / 20% of a beat's
per-step scores; for the deep Markov model, also the lead L of its per-step scores
:math:`-\\log p(y_t \\mid y_{\\le t-L})` among ``DMM_LEADS`` (a scoring option: no refit). The
(setting, lead, aggregation) choice with the highest validation AUROC (the first listed on ties)
is then refitted on all 292 normal beats (``--no-refit`` keeps the fit on 234) and only that
choice is scored on the test set. ``--no-select`` instead fits the first candidate on the 292
normal beats and uses its first scoring (lead 1) and the mean per-step score (the choice fixed
in advance before this protocol existed).

Methods (``methods()``: name -> candidate settings, each ``fit(normal_beats) -> score(beats)``
or ``-> {scoring label: score}``, where ``score`` returns ``(beat_scores, per_step)``: one score
per beat for the baselines, per-step scores ``(beats, 140)`` for the state-space models):

- baselines, each scoring a whole beat: Euclidean distance to the k-th nearest normal training
  beat (k = 1, 5); squared error of the reconstruction from the principal components of the
  normal beats that hold 95% of their variance; isolation forest (scikit-learn, 200 trees);
- a baseline with per-step scores: an independent Gaussian per sample position fitted to the
  normal beats (mean and standard deviation of each of the 140 samples; no dynamics), whose
  per-step negative log densities are aggregated like a state-space model's;
- the classical family, one parameter set shared by all training beats (a pooled fit):
  ``tsssm.PhaseFactor`` (template + K = 2 factor loadings over the beat phase + white noise) and
  ``tsssm.UnobservedComponents`` with the mean normal beat as a known regressor plus AR(1) noise;
- ``tsssm.DeepMarkovModel`` (one network for all beats; trained with Adam for
  ``--dmm-seconds`` of wall clock, early stopping on 20% of the normal training beats it is
  given, particle-filter scores with lead L, see above);
- ``tsssm.LatentODE``, trained for ``--deep-seconds`` of wall clock with early stopping on 20%
  of the normal beats it is given;
- ``tsssm.Chimera``: an ensemble of three networks that differ only in ``random_state`` (each
  trained for ``--chimera-seconds``, early stopping as above), 2 layers, a Student-t predictive
  with ``lead`` 25 (the steps ahead of its predictive distribution). Single networks of this
  setting range from 0.96 to 0.996 in validation AUROC with the seed (docs/benchmarks.md), and
  the seed that wins on validation says nothing about the refit on all normal beats, which is
  another draw; the ensemble combines the draws instead of picking one. How the members'
  per-step scores combine (``anomaly.ensemble_scores``) is chosen on validation: the mixture of their
  predictive densities, the mean of their scores, or the largest score (the strictest member).
  Any estimator with
  ``fit``/``score_samples`` joins with one line: ``estimator_method(make)``.

A state-space model's per-step score is :math:`-\\log p(y_t \\mid y_{<t})` (with a lead L, for the
deep Markov model a scoring option and for Chimera a setting: :math:`-\\log p(y_t \\mid y_{\\le t-L})`).
Columns: the selected setting, lead and aggregation with their validation AUROC; test metrics;
fit seconds (the final fit); throughput = test beats per second of a second (warm, compiled) scoring pass; localisation =
share of the abnormal test beats whose highest per-step score lies in the 14-sample window (10%
of the beat) where the beat departs most from the mean normal training beat (largest summed
absolute difference); chance is about 10%.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy.stats import norm
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

import tsssm
from tsssm import anomaly

LOCALISATION_WINDOW = 14
VALIDATION_FRACTION = 0.2  # of the normal training beats, held out for the choices
VALIDATION_SEED = 0

#: Beat score from per-step scores: name -> keyword arguments of ``anomaly.series_scores``.
AGGREGATIONS = {
    "mean": {"how": "mean"},
    "max": {"how": "max"},
    "top 5%": {"how": "top", "top_fraction": 0.05},
    "top 10%": {"how": "top", "top_fraction": 0.10},
    "top 20%": {"how": "top", "top_fraction": 0.20},
}
WHOLE_BEAT = "whole beat"
#: Rules of ``anomaly.ensemble_scores`` and their labels in the tables.
ENSEMBLE_LABELS = {"mixture": "mixture density", "mean": "mean of scores", "max": "max of scores"}
#: Leads L of the deep Markov model's per-step scores -log p(y_t | y_<=t-L), chosen on validation.
DMM_LEADS = (1, 5, 10, 20)


@dataclass
class Method:
    """A method: its candidate settings (label -> ``fit(normal) -> score``), the first being the default."""

    candidates: dict[str, Callable]

    @classmethod
    def single(cls, fit):
        return cls({"": fit})


def knn_method(k: int):
    def fit(train):
        index = NearestNeighbors(n_neighbors=k).fit(train)
        return lambda test: (index.kneighbors(test)[0][:, -1], None)

    return fit


def pca_method(variance: float = 0.95):
    def fit(train):
        pca = PCA(n_components=variance, svd_solver="full").fit(train)
        return lambda test: (np.sum((test - pca.inverse_transform(pca.transform(test))) ** 2, axis=1), None)

    return fit


def position_gaussian_method(train):
    """An independent Gaussian per sample position of the normal beats (no dynamics): per-step scores
    :math:`-\\log \\mathcal N(y_t; \\bar y_t, s_t^2)`, aggregated like a state-space model's."""
    loc, scale = train.mean(axis=0), train.std(axis=0)
    return lambda test: (None, -norm.logpdf(test, loc, scale))


def isolation_forest_method(train):
    forest = IsolationForest(n_estimators=200, random_state=0).fit(train)
    return lambda test: (-forest.score_samples(test), None)  # higher = more anomalous


def estimator_method(make, scorings=None):
    """Any tsssm estimator: fit on the normal beats as a panel; its per-step scores of each beat.

    ``scorings`` (label -> keyword options of ``score_samples``, e.g. ``{"lead 5": {"lead": 5}}``)
    gives one scorer per option, chosen on validation like the aggregation.
    """

    def fit(train):
        model = make().fit(train[:, :, None])
        return {label: partial(_panel_scorer, model, options) for label, options in (scorings or {"": {}}).items()}

    return fit


def _panel_scorer(model, options, test):
    return None, anomaly.panel_scores(model, test, **options)


def ensemble_method(make, seeds):
    """One estimator fitted with several ``random_state`` s (a deep ensemble); one scorer per rule of
    ``anomaly.ensemble_scores`` (``ENSEMBLE_LABELS``), the rule chosen on validation like the aggregation."""

    def fit(train):
        members = [make(random_state=seed).fit(train[:, :, None]) for seed in seeds]
        last = {}  # the members' scores of the last array scored: every rule reuses them

        def member_scores(test):
            if last.get("test") is not test:
                last.update(test=test, scores=np.stack([anomaly.panel_scores(member, test) for member in members]))
            return last["scores"]

        return {label: partial(_combined, member_scores, rule) for rule, label in ENSEMBLE_LABELS.items()}

    return fit


def _combined(member_scores, rule, test):
    return None, anomaly.ensemble_scores(member_scores(test), rule=rule)


def template_regression_method(train):
    """Pooled UnobservedComponents: the mean normal beat as a known regressor, AR(1) + white noise."""
    template = train.mean(axis=0)

    def inputs(beats):
        return np.repeat(template[None, :, None], beats.shape[0], axis=0)

    model = tsssm.UnobservedComponents("irregular", autoregressive=1, pooled=True).fit(train[:, :, None], inputs(train))
    return lambda test: (None, anomaly.panel_scores(model, test, inputs(test)))


def beat_scores(scored, aggregation: str) -> np.ndarray:
    whole, per_step = scored
    return whole if per_step is None else anomaly.series_scores(per_step, **AGGREGATIONS[aggregation])


def aggregations_of(scored) -> tuple[str, ...]:
    return (WHOLE_BEAT,) if scored[1] is None else tuple(AGGREGATIONS)


def methods(dmm_seconds: float, deep_seconds: float, chimera_seconds: float) -> dict[str, Method]:
    def latent_ode(**kw):
        settings = {"z_dim": 8, "hidden_dim": 32, "dynamics_dim": 32, "emission_dim": 32, "batch_size": 32,
                    "max_epochs": 5000, "patience": 20, "max_seconds": deep_seconds, "num_particles": 16, "random_state": 0}
        return estimator_method(lambda: tsssm.LatentODE(**(settings | kw)))

    def dmm(**kw):
        settings = {"z_dim": 8, "transition_dim": 64, "emission_dim": 64, "rnn_dim": 64, "max_seconds": dmm_seconds,
                    "max_epochs": 5000, "patience": 100, "num_particles": 32, "random_state": 0}
        return estimator_method(lambda: tsssm.DeepMarkovModel(**(settings | kw)),
                                {f"lead {lead}": {"lead": lead} for lead in DMM_LEADS})

    def chimera_ensemble(seeds=(0, 1, 2)):
        settings = {"channels": 8, "state_dim": 4, "num_layers": 2, "batch_size": 32, "max_epochs": 5000,
                    "patience": 100, "max_seconds": chimera_seconds, "lead": 25, "likelihood": "student_t"}
        return ensemble_method(lambda **seed: tsssm.Chimera(**(settings | seed)), seeds)

    return {
        "nearest neighbour (k=1)": Method.single(knn_method(1)),
        "nearest neighbour (k=5)": Method.single(knn_method(5)),
        "PCA reconstruction (95% variance)": Method.single(pca_method()),
        "isolation forest": Method.single(isolation_forest_method),
        "per-sample Gaussian (no dynamics)": Method.single(position_gaussian_method),
        "classical: PhaseFactor K=2 (pooled)": Method.single(estimator_method(lambda: tsssm.PhaseFactor(2))),
        "classical: template regression + AR(1) (pooled)": Method.single(template_regression_method),
        f"deep Markov model ({dmm_seconds:.0f} s budget)": Method({
            "z 8, widths 64, Gaussian, 32 particles": dmm(),
            "z 8, widths 64, Student-t, 32 particles": dmm(likelihood="student_t"),
        }),
        f"Chimera ({chimera_seconds:.0f} s budget per network)": Method({
            "8 channels, 4 states, 2 layers, lead 25, Student-t, 3 seeds": chimera_ensemble(),
        }),
        f"latent ODE ({deep_seconds:.0f} s budget)": Method({
            "z 8, widths 32, Gaussian, 16 samples": latent_ode(),
            "z 8, widths 32, Student-t, 16 samples": latent_ode(likelihood="student_t"),
        }),
    }


def validation_split(train_beats, train_labels, fraction=VALIDATION_FRACTION, seed=VALIDATION_SEED):
    """Normal beats to fit on; validation beats (held-out normal + all abnormal training beats) and labels."""
    normal = np.flatnonzero(train_labels == 0)
    held = np.sort(np.random.default_rng(seed).permutation(normal)[: round(fraction * len(normal))])
    validation = np.concatenate([held, np.flatnonzero(train_labels == 1)])
    return train_beats[np.setdiff1d(normal, held)], train_beats[validation], train_labels[validation]


def scorers(fitted) -> dict[str, Callable]:
    """A fit's scorers by label: an estimator's scoring options, or the one scorer of the others."""
    return fitted if isinstance(fitted, dict) else {"": fitted}


def select(method: Method, fit_beats, val_beats, val_labels, log=print):
    """Fit every candidate on ``fit_beats``; the (setting, scoring, aggregation) of highest validation
    AUROC, its AUROC and the fitted scorer."""
    best = None
    for label, fit in method.candidates.items():
        start = time.perf_counter()
        fitted = scorers(fit(fit_beats))
        fit_seconds = time.perf_counter() - start
        for scoring, score in fitted.items():
            scored = score(val_beats)
            aurocs = {agg: anomaly.auroc(val_labels, beat_scores(scored, agg)) for agg in aggregations_of(scored)}
            log(f"    validation AUROC, {'; '.join(c for c in (label, scoring) if c) or 'default'} (fit {fit_seconds:.0f} s): "
                + ", ".join(f"{agg} {value:.4f}" for agg, value in aurocs.items()))
            for agg, value in aurocs.items():
                if best is None or value > best[3]:
                    best = (label, scoring, agg, value, score)
    return best


def departure_windows(beats: np.ndarray, template: np.ndarray, width: int = LOCALISATION_WINDOW) -> np.ndarray:
    """``[start, stop)`` of the ``width``-sample window where each beat departs most from ``template``."""
    departure = np.abs(beats - template)
    sums = np.stack([departure[:, s : s + width].sum(axis=1) for s in range(beats.shape[1] - width + 1)], axis=1)
    start = np.argmax(sums, axis=1)
    return np.stack([start, start + width], axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dmm-seconds", type=float, default=300.0, help="training budget of the deep Markov model")
    parser.add_argument("--deep-seconds", type=float, default=300.0, help="training budget of the latent ODE")
    parser.add_argument("--chimera-seconds", type=float, default=300.0, help="training budget of each Chimera network")
    parser.add_argument("--only", default=None,
                        help="run only the methods whose name contains this string (or one of several, comma-separated)")
    parser.add_argument("--no-select", action="store_true",
                        help="no validation: first candidate, mean per-step score, fitted on the 292 normal beats")
    parser.add_argument("--no-refit", action="store_true",
                        help="test the selected setting as fitted on the 234 non-validation normal beats")
    args = parser.parse_args(argv)

    data = tsssm.datasets.load_ecg5000()
    normal_train = data.train.beats[data.train.labels == 0]
    fit_beats, val_beats, val_labels = validation_split(data.train.beats, data.train.labels)
    test, labels = data.test.beats, data.test.labels
    abnormal = labels == 1
    windows = departure_windows(test[abnormal], normal_train.mean(axis=0))
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"ECG5000: {len(normal_train)} normal training beats; {len(test)} test beats, {labels.sum()} abnormal")
    if args.no_select:
        print("Choices fixed in advance (--no-select): first setting, mean per-step score, fit on all normal beats\n")
    else:
        print(f"Choices on validation: fit on {len(fit_beats)} normal beats, validation = {len(val_beats)} training beats "
              f"({int(val_labels.sum())} abnormal); the selected choice {'is not refitted' if args.no_refit else 'is refitted on all normal beats'}\n")
    rows = []
    for name, method in methods(args.dmm_seconds, args.deep_seconds, args.chimera_seconds).items():
        if args.only and not any(part.strip() in name for part in args.only.split(",")):
            continue
        print(f"  {name}", flush=True)
        setting = next(iter(method.candidates))
        start = time.perf_counter()
        if args.no_select:
            fitted, val_auroc = scorers(method.candidates[setting](normal_train)), float("nan")
            scoring, aggregation = next(iter(fitted)), None
            score = fitted[scoring]
        else:
            setting, scoring, aggregation, val_auroc, score = select(method, fit_beats, val_beats, val_labels)
            if not args.no_refit:
                start = time.perf_counter()
                score = scorers(method.candidates[setting](normal_train))[scoring]
        fit_seconds = time.perf_counter() - start
        scored = score(test)  # the first pass compiles
        start = time.perf_counter()
        score(test.copy())  # a new array: scorers may reuse the scores of the array they saw last
        throughput = len(test) / (time.perf_counter() - start)
        if aggregation is None:
            aggregation = aggregations_of(scored)[0]
        report = anomaly.detection_report(labels, beat_scores(scored, aggregation))
        per_step = scored[1]
        local = "n/a" if per_step is None else f"{anomaly.peak_in_window(per_step[abnormal], windows):.3f}"
        choice = "; ".join(c for c in (setting, scoring, aggregation) if c)
        rows.append(
            f"| {name} | {choice} | {'n/a' if np.isnan(val_auroc) else f'{val_auroc:.4f}'} | {report['auroc']:.4f} | {report['auprc']:.4f} "
            f"| {report['best_f1']:.4f} | {fit_seconds:.1f} | {throughput:,.0f} | {local} |"
        )
        print(rows[-1], flush=True)
    print("\n| method | choice | validation AUROC | AUROC | AUPRC | best F1 | fit s | beats/s | localisation |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nLoad average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
