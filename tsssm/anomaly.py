r"""Anomaly scores, thresholds and detection metrics, shared by every model family.

One convention everywhere: **a higher score is more anomalous**. Every estimator's
``score_samples`` returns per-time scores :math:`s_t = -\log p(y_t \mid y_{<t})` (the negative
log predictive density); :func:`series_scores` turns them into one score per series (e.g. one
heartbeat per series); thresholds come from an expected contamination rate
(:func:`threshold_from_contamination`) or from scores of data known to be normal
(:func:`threshold_from_normal`).

Metrics (:func:`detection_report`): AUROC and AUPRC (threshold-free), the best F1 over all
thresholds computed point-wise (**no point adjustment**: point-adjusted F1, which counts a whole
labelled segment as found once any point in it is flagged, inflates results and is not
reported here), and :func:`peak_in_window`, the fraction of single-anomaly series whose highest
score falls inside the labelled window.

Panels of short series (one heartbeat per series): :func:`panel_scores` collects any fitted
estimator's per-step scores as an array (series, time), :func:`series_scores` reduces them to
one score per series; :func:`ensemble_scores` combines the per-step scores of several fits of one
model (e.g. seeds of a deep network). Long recordings: :class:`StreamingScorer` scores new data window by
window with a classical model fitted on a normal prefix, carrying the Kalman filter state, so
that it compiles once however many windows it sees.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import logsumexp
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from tsssm._config import float64
from tsssm.errors import DataError, NotFittedError
from tsssm.estimators.classical import StateSpaceEstimator
from tsssm.estimators.dynamic_factor import DynamicFactor
from tsssm.inference import mle, posterior

SERIES_AGGREGATIONS = ("mean", "max", "top")


def series_scores(scores, *, how: str = "mean", top_fraction: float = 0.1):
    """One score per series from per-time scores (NaN entries, e.g. a diffuse burn-in, ignored).

    Parameters
    ----------
    scores : array (B, T) or pd.DataFrame
        Per-time scores of B series (NaN where there is none), or a long frame with columns
        ``unique_id`` and ``score`` (what a panel's ``score_samples`` returns).
    how : {"mean", "max", "top"}
        Average, maximum, or average of the ``top_fraction`` largest scores of each series (a
        short abnormal stretch inside a long normal series stands out in "top" and "max").
    top_fraction : float
        Fraction of the time steps that "top" averages (at least one step).

    Returns
    -------
    np.ndarray (B,) for an array; pd.Series indexed by ``unique_id`` for a frame.
    """
    if how not in SERIES_AGGREGATIONS:
        raise DataError(f"how={how!r} is not a series aggregation; use one of {list(SERIES_AGGREGATIONS)}")
    if not 0.0 < top_fraction <= 1.0:
        raise DataError(f"top_fraction must lie in (0, 1], got {top_fraction!r}")
    if isinstance(scores, pd.DataFrame):
        missing = [c for c in ("unique_id", "score") if c not in scores.columns]
        if missing:
            raise DataError(f"a frame of scores needs the columns {missing}; pass a panel's score_samples() output")
        return scores.groupby("unique_id", sort=False)["score"].agg(
            lambda s: _aggregate(s.to_numpy(dtype=float)[None], how, top_fraction)[0]
        )
    array = np.asarray(scores, dtype=float)
    if array.ndim != 2:
        raise DataError(f"scores must be an array (series, time) or a long frame, got shape {array.shape}")
    return _aggregate(array, how, top_fraction)


def panel_scores(estimator, y, X=None, **options) -> np.ndarray:
    """Per-step scores ``(B, T)`` of a panel of short series (e.g. one heartbeat per series).

    Works with any fitted estimator whose ``score_samples(y)`` returns per-step scores, higher
    = more anomalous: a long frame (``unique_id``, ``ds``, ``score``) for a panel, a Series for
    one series, or an array ``(B, T)``.

    Parameters
    ----------
    estimator : fitted estimator
        E.g. ``tsssm.PhaseFactor``, a classical estimator fitted with ``pooled=True``,
        ``tsssm.DeepMarkovModel``.
    y : array (B, T) or (B, T, D), or a long DataFrame
        A 2-D array holds B univariate series of T steps (rows are series, unlike the ``(T, D)``
        layout of one multivariate series that the estimators read from a 2-D array).
    X : optional
        Exogenous inputs, passed on to ``score_samples``.
    **options
        Keyword options of the estimator's ``score_samples``, e.g. ``lead=10`` for
        ``tsssm.DeepMarkovModel``.

    Returns
    -------
    np.ndarray (B, T)
        Row b holds the scores of the b-th series (array order, or the order of first appearance
        of ``unique_id`` in a frame), NaN past its end and where the model gives none.
    """
    if isinstance(y, pd.DataFrame):
        data = y
    else:
        data = np.asarray(y, dtype=float)
        if data.ndim == 2:
            data = data[:, :, None]
        if data.ndim != 3:
            raise DataError(
                f"y must be an array (series, time) or (series, time, columns), or a long frame; got shape {data.shape}"
            )
    scores = estimator.score_samples(data, **options) if X is None else estimator.score_samples(data, X, **options)
    if isinstance(scores, pd.Series):
        return scores.to_numpy(dtype=float)[None, :]
    if isinstance(scores, pd.DataFrame):
        missing = [c for c in ("unique_id", "score") if c not in scores.columns]
        if missing:
            raise DataError(f"score_samples of {type(estimator).__name__} returned a frame without the columns {missing}")
        rows = [g.to_numpy(dtype=float) for _, g in scores.groupby("unique_id", sort=False)["score"]]
        out = np.full((len(rows), max(len(r) for r in rows)), np.nan)
        for b, row in enumerate(rows):
            out[b, : len(row)] = row
        return out
    array = np.asarray(scores, dtype=float)
    if array.ndim != 2:
        raise DataError(
            f"score_samples of {type(estimator).__name__} returned shape {array.shape}; panel_scores needs per-step scores "
            "per series (a long frame, a Series or an array (series, time))"
        )
    return array


#: Rules of :func:`ensemble_scores`.
ENSEMBLE_RULES = ("mixture", "mean", "max")


def ensemble_scores(member_scores, *, rule: str = "mixture") -> np.ndarray:
    r"""Per-step scores of an ensemble from its members' per-step scores :math:`s_{m,t} = -\log p_m(y_t \mid \cdot)`.

    For several fits of one model that differ only in their random initialisation (a deep
    ensemble: the anomaly scores of deep networks can depend on the seed more than their
    held-out likelihood does):

    - ``"mixture"``: :math:`-\log \frac1M \sum_m p_m(y_t \mid \cdot)`, the negative log density of the
      equal-weight mixture of the members' predictive distributions (the ensemble's predictive);
      a step is as unsurprising as the member that explains it best makes it;
    - ``"mean"``: :math:`\frac1M \sum_m s_{m,t}` (minus the log of the geometric mean of the densities);
    - ``"max"``: :math:`\max_m s_{m,t}`, the strictest member at each step.

    Choose the rule on held-out data, like the aggregation of :func:`series_scores`.

    Parameters
    ----------
    member_scores : sequence of arrays, all of one shape (e.g. ``(B, T)`` from :func:`panel_scores`)
        One array of per-step scores per member; NaN (no score) must sit at the same entries in
        every member.
    rule : {"mixture", "mean", "max"}

    Returns
    -------
    np.ndarray
        The ensemble's scores, of the members' shape (NaN where theirs are).
    """
    if rule not in ENSEMBLE_RULES:
        raise DataError(f"rule must be one of {ENSEMBLE_RULES}, got {rule!r}")
    arrays = [np.asarray(m, dtype=float) for m in member_scores]
    if not arrays:
        raise DataError("ensemble_scores needs the scores of at least one member")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise DataError(f"the members' scores differ in shape: {sorted(shapes)}; score the same data with every member")
    stacked = np.stack(arrays)
    missing = np.isnan(stacked)
    if np.any(missing.any(axis=0) != missing.all(axis=0)):
        raise DataError("the members' scores are NaN at different entries; score the same data with every member")
    if rule == "mean":
        return stacked.mean(axis=0)
    if rule == "max":
        return stacked.max(axis=0)
    return -(logsumexp(-stacked, axis=0) - np.log(len(arrays)))


def _aggregate(array: np.ndarray, how: str, top_fraction: float) -> np.ndarray:
    empty = np.all(np.isnan(array), axis=1)
    if np.any(empty):
        raise DataError(f"series {np.flatnonzero(empty)[:10].tolist()} have no score at any time step")
    if how == "mean":
        return np.nanmean(array, axis=1)
    if how == "max":
        return np.nanmax(array, axis=1)
    ordered = -np.sort(-np.where(np.isnan(array), -np.inf, array), axis=1)  # descending, NaN last
    counts = np.sum(~np.isnan(array), axis=1)
    keep = np.maximum(1, np.floor(top_fraction * counts).astype(int))
    ranks = np.arange(array.shape[1])[None, :]
    return np.sum(np.where(ranks < keep[:, None], ordered, 0.0), axis=1) / keep


def threshold_from_contamination(scores, contamination: float) -> float:
    """Threshold that flags a fraction ``contamination`` of ``scores`` (their upper quantile)."""
    if not 0.0 < contamination < 0.5:
        raise DataError(f"contamination must lie in (0, 0.5), got {contamination!r}")
    return float(np.quantile(_finite(scores, "scores"), 1.0 - contamination))


def threshold_from_normal(normal_scores, quantile: float = 0.99) -> float:
    """Threshold at a ``quantile`` of the scores of data known to be normal (e.g. a training set)."""
    if not 0.5 <= quantile < 1.0:
        raise DataError(f"quantile must lie in [0.5, 1), got {quantile!r}")
    return float(np.quantile(_finite(normal_scores, "normal_scores"), quantile))


def auroc(labels, scores) -> float:
    """Area under the ROC curve (1 = abnormal ranked above every normal; 0.5 = chance)."""
    labels, scores = _checked(labels, scores)
    return float(roc_auc_score(labels, scores))


def auprc(labels, scores) -> float:
    """Area under the precision-recall curve (average precision); chance level = share of positives."""
    labels, scores = _checked(labels, scores)
    return float(average_precision_score(labels, scores))


def best_f1(labels, scores) -> tuple[float, float]:
    """Best point-wise F1 over all thresholds, and the threshold reaching it (flag: score >= threshold)."""
    labels, scores = _checked(labels, scores)
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    best = int(np.argmax(f1[:-1]))  # the last point (recall 0) has no threshold
    return float(f1[best]), float(thresholds[best])


def peak_in_window(scores, windows, *, margin: int = 0) -> float:
    """Fraction of series whose highest score lies inside their labelled anomaly window.

    Parameters
    ----------
    scores : array (B, T) or sequence of 1-D arrays
        Per-time scores of each series (NaN ignored).
    windows : array (B, 2)
        ``[start, stop)`` time indexes of the one labelled anomaly of each series.
    margin : int
        Steps of tolerance on both sides of the window.
    """
    rows = [np.asarray(s, dtype=float) for s in scores]
    windows = np.asarray(windows, dtype=int)
    if windows.shape != (len(rows), 2):
        raise DataError(f"windows must have shape ({len(rows)}, 2) (start, stop per series), got {windows.shape}")
    if np.any(windows[:, 1] <= windows[:, 0]):
        raise DataError("every window needs stop > start")
    hits = []
    for row, (start, stop) in zip(rows, windows):
        if np.all(np.isnan(row)):
            raise DataError("a series has no score at any time step")
        peak = int(np.nanargmax(row))
        hits.append(start - margin <= peak < stop + margin)
    return float(np.mean(hits))


def detection_report(labels, scores) -> dict:
    """AUROC, AUPRC, best F1 (with its threshold) and counts, as a dict."""
    labels, scores = _checked(labels, scores)
    f1, threshold = best_f1(labels, scores)
    return {
        "auroc": auroc(labels, scores),
        "auprc": auprc(labels, scores),
        "best_f1": f1,
        "best_f1_threshold": threshold,
        "n": int(labels.size),
        "positives": int(labels.sum()),
    }


def _finite(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size == 0:
        raise DataError(f"{name} is empty")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise DataError(
            f"{name} holds {bad.size} non-finite values (first at positions {bad[:5].tolist()}); drop them or "
            "aggregate per series with series_scores, which ignores NaN"
        )
    return array


def _checked(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    scores = _finite(scores, "scores")
    labels = np.asarray(labels).reshape(-1)
    if labels.shape != scores.shape:
        raise DataError(f"labels ({labels.size}) and scores ({scores.size}) differ in length")
    if not np.isin(labels, (0, 1)).all():
        raise DataError("labels must be 0 (normal) or 1 (anomalous)")
    if labels.min() == labels.max():
        raise DataError("labels hold only one class; the metrics need both normal (0) and anomalous (1) examples")
    return labels.astype(int), scores


class StreamingScorer:
    r"""Per-step scores of a long recording, window by window, carrying the Kalman filter state.

    Fit a classical estimator on a normal prefix of the recording, then feed the rest to
    :meth:`update` in pieces of any length as it arrives. Each piece is cut into windows of
    ``window`` steps (the last one padded with masked steps that leave the state unchanged) and
    every window goes through one compiled program
    (:func:`tsssm.inference.posterior.filter_window`): a recording of any length compiles
    once. The filter state (predicted state mean and covariance, and the information about
    diffuse initial states) passes from each window to the next, so the scores are exactly
    those of one pass of ``score_samples`` over the prefix and everything fed so far:

    .. math::

        s_t = -\log p(y_t \mid y_{1:t-1}; \hat\theta),

    0 at steps with nothing observed, NaN while diffuse initial states are not identified.

    Parameters
    ----------
    estimator : fitted classical estimator
        ``UnobservedComponents``, ``LocalLevel``, ``ARIMA``, ``LinearGaussianSSM``, ... fitted by
        maximum likelihood on one series on a regular grid (time-invariant transitions); its
        training data is the prefix that the scorer filters first.
    window : int
        Steps per compiled window.

    Attributes
    ----------
    state : tsssm.kernels.kalman.FilterState
        The filter after the last step seen.
    steps_ : int
        Steps fed to :meth:`update` so far.
    windows_ : int
        Windows filtered so far (the prefix's included).
    """

    def __init__(self, estimator, window: int = 256):
        if not isinstance(estimator, StateSpaceEstimator):
            raise DataError(
                f"StreamingScorer carries a Kalman filter state, which {type(estimator).__name__} does not have: pass a "
                "classical estimator (UnobservedComponents, ARIMA, LinearGaussianSSM, ...) or score windows with "
                "the estimator's score_samples"
            )
        if not hasattr(estimator, "params_"):
            raise NotFittedError(f"this {type(estimator).__name__} is not fitted yet: fit it on the normal prefix first")
        if not isinstance(estimator.params_, dict) or np.ndim(estimator.data_.values) != 2:
            raise DataError(
                "StreamingScorer continues one series: fit the estimator on one series (the normal prefix), not a panel"
            )
        if estimator.method != "mle":
            raise DataError(f"StreamingScorer uses plug-in parameters: fit with method='mle', not {estimator.method!r}")
        if getattr(estimator.model_, "continuous_time", False):
            raise DataError(
                "the estimator was fitted on irregular timestamps (a continuous-time model); StreamingScorer needs a "
                "regular grid: resample the recording onto one (missing steps may stay NaN)"
            )
        if isinstance(estimator, DynamicFactor) and estimator.frequencies_:
            raise DataError(
                f"StreamingScorer feeds values on the model's grid as they come; the low-frequency columns "
                f"{list(estimator.frequencies_)} of this DynamicFactor are placed at their period ends when it reads a "
                "frame, which a stream does not do: score the recording with score_samples"
            )
        if int(window) < 1:
            raise DataError(f"window must be a positive number of steps, got {window!r}")
        self.window = int(window)
        self._model = estimator.model_
        self._params = {k: np.asarray(v, float) for k, v in estimator.params_.items()}
        prefix = estimator.data_
        self._num_columns = prefix.values.shape[1]
        self._num_inputs = None if prefix.inputs is None else prefix.inputs.shape[1]
        self._time = 0
        self.steps_ = 0
        self.windows_ = 0
        first = self._window(np.zeros((0, self._num_columns)), np.zeros((0, self._num_columns), bool), self._empty_inputs(0))
        with float64():
            self.state = posterior.initial_filter_state(self._model, self._params, first[0])
        self._filter(np.asarray(prefix.values, float), np.asarray(prefix.mask, bool), prefix.inputs)

    def _empty_inputs(self, n):
        return None if self._num_inputs is None else np.zeros((n, self._num_inputs))

    def _window(self, values, mask, inputs):
        """One padded window: (SeriesData, keep)."""
        n, W = values.shape[0], self.window
        keep = np.arange(W) < n
        pad = ((0, W - n), (0, 0))
        data = mle.SeriesData(
            self._time + np.arange(W, dtype=float),
            np.pad(np.where(mask, values, 0.0), pad),
            np.pad(mask, pad),
            None if inputs is None else np.pad(np.asarray(inputs, float), pad),
        )
        return data, keep

    def _filter(self, values, mask, inputs) -> np.ndarray:
        scores = []
        for start in range(0, values.shape[0], self.window):
            stop = min(start + self.window, values.shape[0])
            data, keep = self._window(values[start:stop], mask[start:stop], None if inputs is None else inputs[start:stop])
            with float64():
                self.state, density = posterior.filter_window(self._model, self._params, self.state, data, keep)
            scores.append(-np.asarray(density, float)[: stop - start])
            self._time += stop - start
            self.windows_ += 1
        return np.concatenate(scores) if scores else np.zeros(0)

    def update(self, values, X=None) -> np.ndarray:
        r"""Scores of the next steps of the recording.

        Parameters
        ----------
        values : array (n,) or (n, D)
            The next n observations, continuing the grid (NaN = missing).
        X : array (n, U), optional
            Their exogenous inputs (required when the estimator was fitted with ``X``).

        Returns
        -------
        np.ndarray (n,)
            :math:`-\log p(y_t \mid y_{<t})` per step.
        """
        values = np.asarray(values, dtype=float)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or values.shape[1] != self._num_columns:
            raise DataError(
                f"values must have shape (n,) or (n, {self._num_columns}) (the columns the model was fitted on), got "
                f"{np.shape(values)}"
            )
        if np.isinf(values).any():
            row = int(np.argwhere(np.isinf(values))[0, 0])
            raise DataError(f"values hold infinite entries (first at row {row}); use NaN for missing values")
        inputs = None
        if self._num_inputs is not None:
            if X is None:
                raise DataError(
                    f"the model was fitted with {self._num_inputs} exogenous inputs: pass X of shape (n, {self._num_inputs})"
                )
            inputs = np.asarray(X, dtype=float)
            inputs = inputs[:, None] if inputs.ndim == 1 else inputs
            if inputs.shape != (values.shape[0], self._num_inputs) or not np.isfinite(inputs).all():
                raise DataError(
                    f"X must be finite with shape ({values.shape[0]}, {self._num_inputs}), got shape {np.shape(X)}"
                )
        elif X is not None:
            raise DataError("X was given, but the model was fitted without exogenous inputs")
        scores = self._filter(values, np.isfinite(values), inputs)
        self.steps_ += values.shape[0]
        return scores
