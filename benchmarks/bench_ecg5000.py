"""Anomaly detection on ECG5000: the model families next to simple baselines.

Run from the repository root::

    python benchmarks/bench_ecg5000.py                      # every method
    python benchmarks/bench_ecg5000.py --dmm-seconds 300    # the deep Markov model's training budget
    python benchmarks/bench_ecg5000.py --only Chimera --deep-seconds 240
    python benchmarks/bench_ecg5000.py --only PhaseFactor   # methods whose name contains a string

Protocol (the usual one): fit on the 292 normal beats of the UCR training split, score all 4,500
test beats (2,627 normal, 1,873 abnormal), report AUROC, AUPRC and the best point-wise F1
(no point adjustment) with :mod:`tsssm.anomaly`.

Methods (``METHODS``: name -> ``fit(normal_beats) -> score(beats)``, where ``score`` returns one
score per beat and, for the state-space models, per-step scores ``(beats, 140)``):

- baselines, each scoring a whole beat: Euclidean distance to the k-th nearest normal training
  beat (k = 1, 5); squared error of the reconstruction from the principal components of the
  normal beats that hold 95% of their variance; isolation forest (scikit-learn, 200 trees);
- the classical family, one parameter set shared by all training beats (a pooled fit):
  ``tsssm.PhaseFactor`` (template + K = 2 factor loadings over the beat phase + white noise) and
  ``tsssm.UnobservedComponents`` with the mean normal beat as a known regressor plus AR(1) noise;
- ``tsssm.DeepMarkovModel`` (one network for all beats: z 8, hidden widths 64, trained with
  Adam for ``--dmm-seconds`` of wall clock, early stopping on 20% of the normal training beats
  held out, 32 particles for the scores); its beat score is the maximum per-step score;
- ``tsssm.Chimera`` (8 channels, 4 states, 1 layer) and ``tsssm.LatentODE`` (z 8, widths 32, 16
  importance samples for the scores), each trained for ``--deep-seconds`` of wall clock with early
  stopping on 20% of the normal training beats; any estimator with ``fit``/``score_samples``
  joins with one line: ``estimator_method(make)``.

A state-space model's beat score is (unless said otherwise) the mean over the beat of the per-step score
:math:`-\\log p(y_t \\mid y_{<t})`. Columns: fit seconds; throughput = test beats per second of
a second (warm, compiled) scoring pass; localisation = share of the abnormal test beats whose
highest per-step score lies in the 14-sample window (10% of the beat) where the beat departs
most from the mean normal training beat (largest summed absolute difference); chance is about
10%.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

import tsssm
from tsssm import anomaly

LOCALISATION_WINDOW = 14


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


def isolation_forest_method(train):
    forest = IsolationForest(n_estimators=200, random_state=0).fit(train)
    return lambda test: (-forest.score_samples(test), None)  # higher = more anomalous


def estimator_method(make, how: str = "mean"):
    """Any tsssm estimator: fit on the normal beats as a panel, score each beat by its per-step scores."""

    def fit(train):
        model = make().fit(train[:, :, None])

        def score(test):
            per_step = anomaly.panel_scores(model, test)
            return anomaly.series_scores(per_step, how=how), per_step

        return score

    return fit


def template_regression_method(train):
    """Pooled UnobservedComponents: the mean normal beat as a known regressor, AR(1) + white noise."""
    template = train.mean(axis=0)

    def inputs(beats):
        return np.repeat(template[None, :, None], beats.shape[0], axis=0)

    model = tsssm.UnobservedComponents("irregular", autoregressive=1, pooled=True).fit(train[:, :, None], inputs(train))

    def score(test):
        per_step = anomaly.panel_scores(model, test, inputs(test))
        return anomaly.series_scores(per_step), per_step

    return score


def methods(dmm_seconds: float, deep_seconds: float) -> dict:
    return {
        "nearest neighbour (k=1)": knn_method(1),
        "nearest neighbour (k=5)": knn_method(5),
        "PCA reconstruction (95% variance)": pca_method(),
        "isolation forest": isolation_forest_method,
        "classical: PhaseFactor K=2 (pooled)": estimator_method(lambda: tsssm.PhaseFactor(2)),
        "classical: template regression + AR(1) (pooled)": template_regression_method,
        f"deep Markov model ({dmm_seconds:.0f} s training, beat score = max)": estimator_method(
            lambda: tsssm.DeepMarkovModel(
                z_dim=8, transition_dim=64, emission_dim=64, rnn_dim=64, max_seconds=dmm_seconds, max_epochs=5000,
                patience=100, num_particles=32, random_state=0,
            ),
            how="max",
        ),
        # small networks for the CPU (docs/chimera.md); beat score = mean per-step score, fixed in advance
        f"Chimera ({deep_seconds:.0f} s training)": estimator_method(
            lambda: tsssm.Chimera(
                channels=8, state_dim=4, num_layers=1, batch_size=32, max_epochs=5000, patience=20,
                max_seconds=deep_seconds, random_state=0,
            )
        ),
        f"latent ODE ({deep_seconds:.0f} s training)": estimator_method(
            lambda: tsssm.LatentODE(
                z_dim=8, hidden_dim=32, dynamics_dim=32, emission_dim=32, batch_size=32, max_epochs=5000, patience=20,
                max_seconds=deep_seconds, num_particles=16, random_state=0,
            )
        ),
    }


def departure_windows(beats: np.ndarray, template: np.ndarray, width: int = LOCALISATION_WINDOW) -> np.ndarray:
    """``[start, stop)`` of the ``width``-sample window where each beat departs most from ``template``."""
    departure = np.abs(beats - template)
    sums = np.stack([departure[:, s : s + width].sum(axis=1) for s in range(beats.shape[1] - width + 1)], axis=1)
    start = np.argmax(sums, axis=1)
    return np.stack([start, start + width], axis=1)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dmm-seconds", type=float, default=300.0, help="training budget of the deep Markov model")
    parser.add_argument("--deep-seconds", type=float, default=300.0, help="training budget of Chimera and the latent ODE")
    parser.add_argument("--only", default=None, help="run only the methods whose name contains this string")
    args = parser.parse_args(argv)

    data = tsssm.datasets.load_ecg5000()
    normal_train = data.train.beats[data.train.labels == 0]
    test, labels = data.test.beats, data.test.labels
    abnormal = labels == 1
    windows = departure_windows(test[abnormal], normal_train.mean(axis=0))
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"ECG5000: {len(normal_train)} normal training beats; {len(test)} test beats, {labels.sum()} abnormal\n")
    print("| method | AUROC | AUPRC | best F1 | fit s | beats/s | localisation |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, fit in methods(args.dmm_seconds, args.deep_seconds).items():
        if args.only and args.only not in name:
            continue
        start = time.perf_counter()
        score = fit(normal_train)
        fit_seconds = time.perf_counter() - start
        beat_scores, per_step = score(test)  # first pass compiles
        start = time.perf_counter()
        score(test)
        throughput = len(test) / (time.perf_counter() - start)
        report = anomaly.detection_report(labels, beat_scores)
        local = "n/a" if per_step is None else f"{anomaly.peak_in_window(per_step[abnormal], windows):.3f}"
        print(
            f"| {name} | {report['auroc']:.4f} | {report['auprc']:.4f} | {report['best_f1']:.4f} | {fit_seconds:.1f} "
            f"| {throughput:,.0f} | {local} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
