"""tsssm.anomaly against slow, obviously correct computations, and the bundled ECG5000 data."""

import numpy as np
import pandas as pd
import pytest

import tsssm
from tsssm import anomaly


def _example(seed=0, n=300):
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < 0.3).astype(int)
    scores = rng.normal(size=n) + 1.2 * labels
    scores[:10] = np.round(scores[:10])  # some ties
    scores[10:14] = scores[0]
    return labels, scores


def test_auroc_equals_the_pairwise_count():
    """AUROC = P(score of a random positive > that of a random negative) + half the ties."""
    labels, scores = _example()
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert anomaly.auroc(labels, scores) == pytest.approx(pairs / (pos.size * neg.size), rel=1e-12)


def test_auprc_equals_average_precision_over_ranks():
    """Average precision = mean over positives of the precision at their score's threshold."""
    labels, scores = _example(1)
    precisions = [np.mean(labels[scores >= s]) for s in scores[labels == 1]]
    assert anomaly.auprc(labels, scores) == pytest.approx(np.mean(precisions), rel=1e-12)


def test_best_f1_equals_a_brute_force_search():
    labels, scores = _example(2)
    f1s = []
    for threshold in np.unique(scores):
        flagged = scores >= threshold
        tp = np.sum(flagged & (labels == 1))
        f1s.append(2 * tp / (flagged.sum() + labels.sum()))
    f1, threshold = anomaly.best_f1(labels, scores)
    assert f1 == pytest.approx(max(f1s), rel=1e-12)
    flagged = scores >= threshold
    assert 2 * np.sum(flagged & (labels == 1)) / (flagged.sum() + labels.sum()) == pytest.approx(f1, rel=1e-12)


def test_thresholds_flag_the_requested_share():
    scores = np.random.default_rng(3).normal(size=10_000)
    threshold = anomaly.threshold_from_contamination(scores, 0.05)
    assert np.mean(scores > threshold) == pytest.approx(0.05, abs=1e-3)
    assert anomaly.threshold_from_normal(scores, 0.99) == pytest.approx(np.quantile(scores, 0.99))


def test_series_scores_ignore_nan_and_match_manual_aggregates():
    scores = np.array([[np.nan, 1.0, 2.0, 3.0, 10.0], [np.nan, np.nan, 0.0, 0.0, 1.0]])
    np.testing.assert_allclose(anomaly.series_scores(scores), [4.0, 1.0 / 3.0])
    np.testing.assert_allclose(anomaly.series_scores(scores, how="max"), [10.0, 1.0])
    np.testing.assert_allclose(anomaly.series_scores(scores, how="top", top_fraction=0.5), [6.5, 1.0])
    frame = pd.DataFrame({"unique_id": ["a"] * 5 + ["b"] * 5, "score": scores.reshape(-1)})
    by_id = anomaly.series_scores(frame, how="max")
    assert by_id.to_dict() == {"a": 10.0, "b": 1.0}


def test_ensemble_scores_against_the_mixture_density_and_by_hand():
    """Two Gaussian members: the mixture rule is -log of the equal-weight mixture density, computed
    directly; the mean and max rules by hand; NaN (no score) stays NaN."""
    from scipy.stats import norm

    y = np.linspace(-4.0, 6.0, 41).reshape(1, -1)
    members = [(0.0, 1.0), (2.0, 0.5)]
    scores = [-norm.logpdf(y, loc, scale) for loc, scale in members]
    scores[0][0, 5] = scores[1][0, 5] = np.nan
    density = 0.5 * norm.pdf(y, 0.0, 1.0) + 0.5 * norm.pdf(y, 2.0, 0.5)
    mixture = anomaly.ensemble_scores(scores, rule="mixture")
    np.testing.assert_allclose(np.delete(mixture, 5), np.delete(-np.log(density), 5), rtol=1e-12)
    np.testing.assert_allclose(anomaly.ensemble_scores(scores, rule="mean"), (scores[0] + scores[1]) / 2)
    np.testing.assert_allclose(anomaly.ensemble_scores(scores, rule="max"), np.maximum(scores[0], scores[1]))
    assert np.isnan(mixture[0, 5])
    # the mixture is never stricter than its strictest member, the mean in between
    finite = ~np.isnan(mixture)
    assert np.all(mixture[finite] <= anomaly.ensemble_scores(scores, rule="mean")[finite] + 1e-12)
    np.testing.assert_allclose(anomaly.ensemble_scores(scores[:1]), scores[0])  # one member: its own scores


@pytest.mark.parametrize(
    "members, rule, message",
    [
        ([np.zeros((2, 3))], "median", "rule must be one of"),
        ([], "mixture", "at least one member"),
        ([np.zeros((2, 3)), np.zeros((2, 4))], "mixture", "differ in shape"),
        ([np.zeros(3), np.array([0.0, np.nan, 0.0])], "mean", "NaN at different entries"),
    ],
)
def test_ensemble_scores_bad_input_raises_data_error(members, rule, message):
    with pytest.raises(tsssm.DataError, match=message):
        anomaly.ensemble_scores(members, rule=rule)


def test_peak_in_window_counts_peaks_inside_the_labelled_windows():
    scores = np.zeros((3, 20))
    scores[0, 5] = scores[1, 12] = scores[2, 19] = 1.0
    windows = [(4, 8), (4, 8), (15, 19)]
    assert anomaly.peak_in_window(scores, windows) == pytest.approx(1 / 3)
    assert anomaly.peak_in_window(scores, windows, margin=1) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: anomaly.auroc([0, 0, 0], [1.0, 2.0, 3.0]), "only one class"),
        (lambda: anomaly.auroc([0, 1, 1], [1.0, np.nan, 3.0]), "non-finite"),
        (lambda: anomaly.auroc([0, 1], [1.0, 2.0, 3.0]), "differ in length"),
        (lambda: anomaly.auroc([0, 2, 1], [1.0, 2.0, 3.0]), "0 \\(normal\\) or 1"),
        (lambda: anomaly.threshold_from_contamination([1.0, 2.0], 0.7), "contamination"),
        (lambda: anomaly.series_scores(np.zeros((2, 3)), how="median"), "aggregation"),
        (lambda: anomaly.series_scores(np.full((2, 3), np.nan)), "no score"),
        (lambda: anomaly.peak_in_window(np.zeros((2, 3)), [(0, 1)]), "windows must have shape"),
    ],
)
def test_bad_input_raises_data_error(call, message):
    with pytest.raises(tsssm.DataError, match=message):
        call()


def test_ecg5000_is_bundled_with_the_standard_split():
    data = tsssm.datasets.load_ecg5000()
    assert data.train.beats.shape == (500, 140) and data.test.beats.shape == (4500, 140)
    # the published UCR class counts: train 292 normal; test 2627 normal, 1873 abnormal
    assert (data.train.labels == 0).sum() == 292
    assert (data.test.labels == 0).sum() == 2627 and data.test.labels.sum() == 1873
    # every beat is z-normalised (std sqrt(139/140) with ddof=0, as the provenance file says)
    np.testing.assert_allclose(data.test.beats.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(data.test.beats.std(axis=1), np.sqrt(139 / 140), rtol=1e-4)
    assert "UCR" in tsssm.datasets.describe("ecg5000")
    long = data.train.to_long()
    assert long.shape == (500 * 140, 3) and long["y"].iloc[140] == data.train.beats[1, 0]


def test_the_guide_example_runs():
    """docs/anomaly.md's code block runs as written and gives a sensible detector."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "anomaly.md").read_text()
    code = text.split("```python")[1].split("```")[0]
    scope = {}
    exec(compile(code, "docs/anomaly.md", "exec"), scope)
    report = scope["report"]
    # the pooled PhaseFactor on all 4,500 test beats: AUROC 0.9930 as the guide (and
    # docs/benchmarks.md) says; the fit is deterministic (closed-form start, BFGS), so only the
    # optimiser's stopping point moves it, by far less than 1e-3
    assert report["auroc"] == pytest.approx(0.9930, abs=1e-3) and report["positives"] == 1873
    assert scope["per_step"].shape == (4500, 140)
    # the 99% quantile of the normal training beats' scores flags mostly abnormal beats
    flags, labels = scope["flags"], scope["data"].test.labels
    assert flags[labels == 1].mean() > 0.8 and flags[labels == 0].mean() < 0.05


class _SquaredDeviation:
    """A stand-in estimator: per-step score (y - 1)^2, returned in one of the layouts estimators use."""

    def __init__(self, layout):
        self.layout = layout

    def score_samples(self, y):
        values = np.asarray(y, float)[..., 0]
        scores = (values - 1.0) ** 2
        if self.layout == "array":
            return scores
        if self.layout == "series":
            return pd.Series(scores[0])
        ragged = [scores[b, : scores.shape[1] - b] for b in range(len(scores))]  # series b is b steps shorter
        ids = ["c", "a", "b"][: len(ragged)]  # not sorted: the order of appearance is kept
        return pd.DataFrame({"unique_id": np.repeat(ids, [len(r) for r in ragged]), "score": np.concatenate(ragged)})


@pytest.mark.parametrize("layout", ["array", "frame"])
def test_panel_scores_turn_any_estimators_scores_into_series_by_time(layout):
    beats = np.arange(12, dtype=float).reshape(3, 4)
    beats_before = beats.copy()
    scores = anomaly.panel_scores(_SquaredDeviation(layout), beats)
    expected = (beats - 1.0) ** 2
    if layout == "frame":
        expected[1, 3:] = expected[2, 2:] = np.nan
    np.testing.assert_array_equal(scores, expected)
    np.testing.assert_array_equal(beats, beats_before)  # the caller's data is not modified
    one = anomaly.panel_scores(_SquaredDeviation("series"), beats[:1])
    np.testing.assert_array_equal(one, expected[:1])


def test_panel_scores_bad_input_raises_data_error():
    with pytest.raises(tsssm.DataError, match="array \\(series, time\\)"):
        anomaly.panel_scores(_SquaredDeviation("array"), np.zeros(5))
