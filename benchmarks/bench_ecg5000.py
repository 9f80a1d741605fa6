"""Anomaly detection on ECG5000: the simple baselines every SSM family must match.

Run from the repository root::

    python benchmarks/bench_ecg5000.py

Protocol (the usual one): fit on the 292 normal beats of the UCR training split, score all 4,500
test beats (2,627 normal, 1,873 abnormal), report AUROC, AUPRC and the best point-wise F1
(no point adjustment) with :mod:`tsssm.anomaly`. Baselines, each scoring a whole beat:

- nearest neighbour: Euclidean distance to the k-th nearest normal training beat (k = 1, 5);
- PCA reconstruction: squared error of the beat's reconstruction from the leading principal
  components of the normal training beats (enough for 95% of their variance);
- isolation forest (scikit-learn, 200 trees, ``random_state=0``).

The SSM families (classical, deep Markov model, latent ODE, Chimera) join this table as they
land (issue 6); the bar they must clear is what these few lines reach.
"""

from __future__ import annotations

import platform
import time

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors

import tsssm
from tsssm import anomaly


def knn_scores(train: np.ndarray, test: np.ndarray, k: int) -> np.ndarray:
    distances, _ = NearestNeighbors(n_neighbors=k).fit(train).kneighbors(test)
    return distances[:, -1]


def pca_scores(train: np.ndarray, test: np.ndarray, variance: float = 0.95) -> np.ndarray:
    pca = PCA(n_components=variance, svd_solver="full").fit(train)
    reconstruction = pca.inverse_transform(pca.transform(test))
    return np.sum((test - reconstruction) ** 2, axis=1)


def isolation_forest_scores(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    forest = IsolationForest(n_estimators=200, random_state=0).fit(train)
    return -forest.score_samples(test)  # higher = more anomalous


def main():
    data = tsssm.datasets.load_ecg5000()
    normal_train = data.train.beats[data.train.labels == 0]
    test, labels = data.test.beats, data.test.labels
    methods = {
        "nearest neighbour (k=1)": lambda: knn_scores(normal_train, test, 1),
        "nearest neighbour (k=5)": lambda: knn_scores(normal_train, test, 5),
        "PCA reconstruction (95% variance)": lambda: pca_scores(normal_train, test),
        "isolation forest": lambda: isolation_forest_scores(normal_train, test),
    }
    print(f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print(f"ECG5000: {len(normal_train)} normal training beats; {len(test)} test beats, {labels.sum()} abnormal\n")
    print("| method | AUROC | AUPRC | best F1 | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, run in methods.items():
        start = time.perf_counter()
        scores = run()
        seconds = time.perf_counter() - start
        report = anomaly.detection_report(labels, scores)
        print(f"| {name} | {report['auroc']:.4f} | {report['auprc']:.4f} | {report['best_f1']:.4f} | {seconds:.2f} |")


if __name__ == "__main__":
    main()
