"""Streaming scores of a long recording (tsssm.anomaly.StreamingScorer).

Oracle: one pass of ``score_samples`` over the whole recording at the fitted parameters. The
streaming filter runs the same floating-point operations in the same order, only split into
windows (the carried state is the scan's carry), so the scores agree to round-off; we assert
1e-10 relative. Compilation: a Python-side counter in the jitted window function
(``mle.TRACE_COUNTS["filter_window"]``) counts traces.
"""

import numpy as np
import pandas as pd
import pytest

import tsssm
from tsssm import anomaly
from tsssm.inference import mle

PREFIX = 150


@pytest.fixture(scope="module")
def recording():
    """A local level + AR(1) + regression on one input, 600 steps, with a NaN block and a spike."""
    rng = np.random.default_rng(11)
    n = 600
    x = np.sin(np.arange(n) / 9.0)
    level = np.cumsum(rng.normal(0.0, 0.1, n))
    ar = np.zeros(n)
    for t in range(1, n):
        ar[t] = 0.6 * ar[t - 1] + rng.normal(0.0, 0.5)
    y = level + ar + 2.0 * x + rng.normal(0.0, 0.3, n)
    y[300:310] = np.nan
    y[450] += 6.0
    index = pd.RangeIndex(n)
    return pd.Series(y, index=index, name="y"), pd.DataFrame({"x": x}, index=index)


@pytest.fixture(scope="module")
def fitted(recording):
    y, X = recording
    return tsssm.UnobservedComponents("local level", autoregressive=1).fit(y.iloc[:PREFIX], X.iloc[:PREFIX])


def test_streaming_scores_equal_one_pass_scores_and_compile_once(recording, fitted):
    y, X = recording
    one_pass = fitted.score_samples(y, X).to_numpy()[PREFIX:]
    before = mle.TRACE_COUNTS["filter_window"]
    scorer = anomaly.StreamingScorer(fitted, window=64)
    pieces = [(PREFIX, 250), (250, 583), (583, 600)]  # uneven pieces: windows padded at every piece's end
    streamed = np.concatenate([scorer.update(y.to_numpy()[a:b], X.to_numpy()[a:b]) for a, b in pieces])
    np.testing.assert_allclose(streamed, one_pass, rtol=1e-10, atol=1e-12)
    assert np.all(streamed[300 - PREFIX : 310 - PREFIX] == 0.0)  # nothing observed: score 0
    assert np.argmax(streamed) == 450 - PREFIX
    assert scorer.steps_ == 450 and scorer.windows_ == 3 + 2 + 6 + 1
    # a second scorer of the same model and window shape reuses the compiled program
    again = anomaly.StreamingScorer(fitted, window=64)
    np.testing.assert_allclose(again.update(y.to_numpy()[PREFIX:], X.to_numpy()[PREFIX:]), one_pass, rtol=1e-10, atol=1e-12)
    assert mle.TRACE_COUNTS["filter_window"] - before <= 1


def test_streaming_bad_input_raises_data_error(recording, fitted):
    y, X = recording
    scorer = anomaly.StreamingScorer(fitted, window=64)
    with pytest.raises(tsssm.DataError, match="exogenous inputs"):
        scorer.update(y.to_numpy()[PREFIX:200])
    with pytest.raises(tsssm.DataError, match="X must be finite"):
        scorer.update(y.to_numpy()[PREFIX:200], X.to_numpy()[:10])
    with pytest.raises(tsssm.DataError, match="infinite"):
        scorer.update(np.array([1.0, np.inf]), np.zeros(2))
    with pytest.raises(tsssm.DataError, match="window"):
        anomaly.StreamingScorer(fitted, window=0)
    # parameters fixed: the panel "fit" only filters (no optimiser to compile)
    fixed = {"sigma2_irregular": 1.0, "sigma2_level": 0.1}
    panel = tsssm.LocalLevel(fixed_params=fixed).fit(np.random.default_rng(0).normal(size=(2, 20, 1)))
    with pytest.raises(tsssm.DataError, match="one series"):
        anomaly.StreamingScorer(panel)
    with pytest.raises(tsssm.DataError, match="Kalman filter state"):
        anomaly.StreamingScorer(tsssm.DeepMarkovModel())
