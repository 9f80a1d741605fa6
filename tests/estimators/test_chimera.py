"""tsssm.Chimera and tsssm.ChimeraClassifier: learning, causality, padding, forecasts, persistence, errors."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone

import tsssm
from tsssm.errors import DataError, NotFittedError

TINY = dict(channels=8, state_dim=4, num_layers=1, batch_size=8, learning_rate=1e-2)


def seasonal_ar(length, seed):
    """Three columns: AR(1) noise (phi 0.7) around a shared period-12 seasonal pattern of different phases."""
    rng = np.random.default_rng(seed)
    noise = np.zeros((length, 3))
    for t in range(1, length):
        noise[t] = 0.7 * noise[t - 1] + 0.3 * rng.normal(size=3)
    angle = 2 * np.pi * np.arange(length) / 12
    season = 2.0 * np.stack([np.sin(angle), 0.5 * np.sin(angle), np.cos(angle)], axis=1)
    index = pd.date_range("2020-01-01", periods=length, freq="D")
    return pd.DataFrame(noise + season + [10.0, -5.0, 0.0], index=index, columns=["a", "b", "c"])


@pytest.fixture(scope="module")
def fitted():
    data = seasonal_ar(240, seed=0)
    model = tsssm.Chimera(likelihood="student_t", window=40, max_epochs=30, random_state=0, **TINY).fit(data.iloc[:200])
    return model, data


def test_learns_the_seasonal_ar_series(fitted):
    """Held-out negative log predictive density per step (3 values): far below a Gaussian fitted to
    the training columns (the series mean), and the training loss fell."""
    model, data = fitted
    history = model.history_
    assert list(history.columns) == ["epoch", "train", "valid", "seconds"] and len(history) == 30
    assert history["valid"].min() < 0.6 * history["valid"].iloc[0]
    scores = model.score_samples(data)
    assert isinstance(scores, pd.Series) and scores.index.equals(data.index)
    held_out = scores.iloc[200:].mean()
    train, test = data.iloc[:200], data.iloc[200:]
    baseline = -stats.norm.logpdf(test, train.mean(), train.std()).sum(axis=1).mean()
    # measured: Chimera ~1.6 nats per step, the series-mean Gaussian ~4.8
    assert held_out < baseline - 2.0, (held_out, baseline)
    assert model.score(data) == pytest.approx(-scores.sum(), rel=1e-9)


def test_predictions_are_causal(fitted):
    """Changing the data after row t changes no prediction of rows <= t + 1 (row t + 1 is predicted from
    rows <= t), and does change the next one."""
    model, data = fitted
    base = model.predict(data).mean
    changed = data.copy()
    changed.iloc[120:] += 50.0
    changed.iloc[150, 1] = np.nan
    moved = model.predict(changed).mean
    pd.testing.assert_frame_equal(moved.iloc[:121], base.iloc[:121])
    assert np.all(np.abs(moved.iloc[121].to_numpy() - base.iloc[121].to_numpy()) > 1e-3)


@pytest.mark.slow  # default suite under 10 minutes on 2 cores; CI runs the slow tier too
def test_padded_panel_equals_individual_series(fitted):
    """A ragged long frame (padded internally, scored in one batch) scores each series exactly as alone."""
    model, data = fitted
    short = data.iloc[:201].copy()  # 201 rows: the shape of the forecast test's history (one compilation)
    short.iloc[[10, 11], 0] = np.nan
    parts = [frame.rename_axis("ds").reset_index().assign(unique_id=sid) for sid, frame in [("long", data), ("short", short)]]
    panel = model.score_samples(pd.concat(parts, ignore_index=True))
    assert list(panel.columns) == ["unique_id", "ds", "score"] and len(panel) == 240 + 201
    for sid, frame in [("long", data), ("short", short)]:
        alone = model.score_samples(frame).to_numpy()
        np.testing.assert_allclose(panel.loc[panel["unique_id"] == sid, "score"].to_numpy(), alone, rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # default suite under 10 minutes on 2 cores; CI runs the slow tier too
def test_forecast_continues_the_one_step_prediction(fitted, tmp_path):
    """Recursive sampling carries the scan's states: its first step has exactly the one-step predictive
    location of the full network run on the history; intervals widen and follow the season."""
    model, data = fitted
    fc = model.forecast(6, num_samples=200)
    assert fc.samples.shape == (200, 6, 3) and fc.mean.index.equals(data.index[200:206])
    history = pd.concat([data.iloc[:200], pd.DataFrame(np.nan, index=data.index[200:201], columns=data.columns)])
    one_step = model.predict(history).mean.iloc[-1]
    np.testing.assert_allclose(fc.mean.iloc[0].to_numpy(), one_step.to_numpy(), rtol=1e-4, atol=1e-4)
    lower, upper = fc.quantile(0.05), fc.quantile(0.95)
    assert np.all(lower.to_numpy() < upper.to_numpy())
    covered = ((lower <= data.iloc[200:206]) & (data.iloc[200:206] <= upper)).to_numpy().mean()
    assert covered >= 0.7
    assert model.sample(200, 6).shape == (200, 6, 3)

    path = model.save(tmp_path / "chimera.npz")
    loaded = tsssm.load(path)
    assert isinstance(loaded, tsssm.Chimera) and loaded.get_params() == model.get_params()
    for k, v in model.params_.items():
        np.testing.assert_array_equal(loaded.params_[k], v)
    pd.testing.assert_frame_equal(loaded.forecast(6, num_samples=200).mean, fc.mean)
    pd.testing.assert_frame_equal(loaded.history_, model.history_, check_dtype=False)


def test_lead_predicts_ahead_and_forecasts_directly(tmp_path):
    """With lead 3, the prediction of row t sees only rows <= t - 3 (data changed from row 120 on
    moves no prediction before row 123, and moves row 123); the first 3 forecast steps need no
    draws: their means are the network's predictions of the rows after the history; a saved
    model keeps its lead, also when loaded by a fresh process."""
    data = seasonal_ar(160, seed=1)
    model = tsssm.Chimera(lead=3, max_epochs=3, random_state=0, **TINY).fit(data.iloc[:150])
    base = model.predict(data).mean
    changed = data.copy()
    changed.iloc[120:] += 50.0
    moved = model.predict(changed).mean
    pd.testing.assert_frame_equal(moved.iloc[:123], base.iloc[:123])
    assert np.all(np.abs(moved.iloc[123].to_numpy() - base.iloc[123].to_numpy()) > 1e-3)

    fc = model.forecast(5, num_samples=50)
    future = pd.DataFrame(np.nan, index=data.index[150:155], columns=data.columns)
    direct = model.predict(pd.concat([data.iloc[:150], future])).mean.iloc[150:153]
    np.testing.assert_allclose(fc.mean.iloc[:3].to_numpy(), direct.to_numpy(), rtol=1e-4, atol=1e-4)
    assert fc.samples.shape == (50, 5, 3) and np.all(np.isfinite(fc.samples))
    assert model.score(data) == pytest.approx(-model.score_samples(data).sum(), rel=1e-9)
    path = model.save(tmp_path / "lead.npz")
    loaded = tsssm.load(path)
    assert loaded.lead == 3
    pd.testing.assert_frame_equal(loaded.predict(data).mean, base)
    # a process that has not imported the neural families yet loads it too (they import on first use)
    code = "import sys, tsssm; fresh = 'tsssm.estimators.chimera' not in sys.modules; m = tsssm.load(sys.argv[1]); print(fresh, type(m).__name__, m.lead)"
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "Chimera", "3"]


def test_clear_errors(fitted):
    model, data = fitted
    y = data["a"]
    with pytest.raises(DataError, match="columns"):
        model.score_samples(data[["a", "b"]])
    with pytest.raises(DataError, match="horizon"):
        model.forecast()
    with pytest.raises(DataError, match="horizon"):
        model.forecast(0)
    with pytest.raises(DataError, match="likelihood"):
        tsssm.Chimera(likelihood="poisson").fit(y)
    with pytest.raises(DataError, match="window"):
        tsssm.Chimera(window=1).fit(y)
    for lead in (0, 1.5, True):
        with pytest.raises(DataError, match="lead"):
            tsssm.Chimera(lead=lead).fit(y)
    with pytest.raises(DataError, match="longer than lead"):
        tsssm.Chimera(lead=10, window=10).fit(y)
    with pytest.raises(DataError, match="exogenous"):
        tsssm.Chimera().fit(y, X=y)
    with pytest.raises(DataError, match="inf"):
        tsssm.Chimera().fit(y.replace(y.iloc[3], np.inf))
    with pytest.raises(NotFittedError):
        tsssm.Chimera().score_samples(y)
    with pytest.raises(DataError, match="one label per series"):
        tsssm.ChimeraClassifier().fit(np.zeros((4, 10, 1)), [0, 1])
    with pytest.raises(DataError, match="two classes"):
        tsssm.ChimeraClassifier().fit(np.zeros((4, 10, 1)), np.zeros(4))
    assert clone(model).get_params() == model.get_params()


@pytest.mark.slow
def test_univariate_irregular_series_with_gaps_is_reproducible():
    """Marked slow: a univariate network (V = 1) compiles its own training step (~20 s here)."""
    rng = np.random.default_rng(1)
    times = np.cumsum(rng.uniform(0.5, 1.5, 60))  # irregular sampling: the gaps scale the time steps
    y = pd.Series(np.sin(times / 3.0) + 0.1 * rng.normal(size=60), index=times, name="v")
    y.iloc[[5, 6, 30]] = np.nan
    first = tsssm.Chimera(**dict(TINY, max_epochs=2, random_state=3)).fit(y)
    assert first.time_scale_ == pytest.approx(np.median(np.diff(times)))
    again = clone(first).fit(y)
    for k, v in first.params_.items():
        np.testing.assert_array_equal(again.params_[k], v)
    scores = first.score_samples()
    assert scores.index.equals(y.index) and scores.iloc[30] == 0.0 and np.all(np.isfinite(scores))
    fc = first.forecast(times=[times[-1] + 0.5, times[-1] + 3.0], num_samples=20)
    assert fc.samples.shape == (20, 2, 1)
    assert tsssm.Chimera(**dict(TINY, max_epochs=1)).fit(y.to_numpy()).meta_.columns == ("y",)  # an array (T,)


@pytest.mark.slow
def test_classifier_separates_sines_from_noise(tmp_path):
    """Ragged univariate panel with missing values: sines (class "sine") vs white noise ("noise").

    Marked slow: the classifier compiles its own training step.
    """
    rng = np.random.default_rng(0)
    lengths = rng.integers(30, 41, size=32)
    X = np.full((32, 40, 1), np.nan)
    labels = np.array(["sine", "noise"] * 16)
    for b, n in enumerate(lengths):
        t = np.arange(n)
        X[b, :n, 0] = np.sin(t / 2.0 + rng.uniform(0, 6)) if labels[b] == "sine" else rng.normal(size=n)
        X[b, rng.integers(0, n)] = np.nan
    clf = tsssm.ChimeraClassifier(**dict(TINY, max_epochs=40), random_state=0).fit(X[:24], labels[:24])
    assert list(clf.classes_) == ["noise", "sine"]
    proba = clf.predict_proba(X[24:])
    assert proba.shape == (8, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert clf.score(X[24:], labels[24:]) >= 0.85
    assert clf.transform(X[24:]).shape == (8, 8)
    loaded = tsssm.load(clf.save(tmp_path / "clf.npz"))
    np.testing.assert_array_equal(loaded.predict(X[24:]), clf.predict(X[24:]))
