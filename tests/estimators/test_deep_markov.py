"""tsssm.DeepMarkovModel: the estimator API, persistence, and a nonlinear system where it must beat
the classical family."""

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

import tsssm
from tsssm import anomaly
from tsssm.errors import DataError

R = 3.7  # logistic map x' = R x (1 - x): chaotic, so linear models predict it badly


def logistic_panel(num_series, length, seed):
    """Noisy logistic map (process noise 0.01, observation noise 0.02): ``(B, T, 1)`` values and the states."""
    rng = np.random.default_rng(seed)
    z = np.zeros((num_series, length))
    z[:, 0] = rng.uniform(0.1, 0.9, num_series)
    for t in range(1, length):
        z[:, t] = np.clip(R * z[:, t - 1] * (1 - z[:, t - 1]) + 0.01 * rng.normal(size=num_series), 0.01, 0.99)
    return (z + 0.02 * rng.normal(size=z.shape))[..., None], z


TINY = dict(z_dim=2, transition_dim=16, emission_dim=16, rnn_dim=16, batch_size=8, learning_rate=1e-2)


@pytest.fixture(scope="module")
def logistic():
    y, z = logistic_panel(40, 50, seed=0)
    model = tsssm.DeepMarkovModel(
        **TINY, max_epochs=150, kl_anneal_epochs=50, kl_anneal_start=0.01, patience=50, random_state=0
    ).fit(y[:32])
    return model, y, z


def test_training_improves_the_elbo(logistic):
    model, _, _ = logistic
    history = model.history_
    assert list(history.columns) == ["epoch", "train", "beta", "valid", "seconds"]
    assert len(history) == 150 and model.n_iter_ == 150 * 4  # 26 training series -> 4 padded batches of 8
    # standardised data: a model that ignores the dynamics sits at the N(0, 1) entropy, 1.42 nats/step;
    # the first epoch is worse than that, the trained one far better
    assert history["valid"].iloc[0] > 1.42 and history["valid"].iloc[-1] < 0.5
    assert model.elbo_ > -0.5


def test_beats_classical_models_on_held_out_series(logistic):
    """Held-out log predictive density per step: DMM (trained on other series) vs ARIMA(2,0,0) and
    the local level, both fitted by maximum likelihood on the held-out series themselves."""
    model, y, _ = logistic
    held_out = y[32:]
    steps = held_out.shape[0] * held_out.shape[1]
    dmm = model.score(held_out).sum() / steps
    arima = tsssm.ARIMA(order=(2, 0, 0)).fit(held_out).score().sum() / steps
    level = tsssm.LocalLevel().fit(held_out).score().sum() / steps
    # measured: DMM ~1.8 nats/step, ARIMA ~0.5, local level ~0.1; the margin of 0.8 nats/step is
    # many times the spread between seeds of the particle estimate (~0.05)
    assert dmm > max(arima, level) + 0.8, (dmm, arima, level)
    per_step = model.score_samples(held_out)
    assert list(per_step.columns) == ["unique_id", "ds", "score"] and len(per_step) == steps
    np.testing.assert_allclose(per_step.groupby("unique_id")["score"].sum().to_numpy(), -model.score(held_out).to_numpy(), rtol=1e-9)


def test_forecast_and_predict_follow_the_map(logistic):
    model, y, z = logistic
    fc = model.forecast(3, num_samples=200)
    assert fc.samples.shape == (200, 32, 3, 1) and len(fc.mean) == 32 * 3
    step1 = fc.mean.groupby("unique_id").nth(0)["y0"].to_numpy()
    truth = R * z[:32, -1] * (1 - z[:32, -1])
    naive = np.median(np.abs(y[:32, -1, 0] - truth))
    # one step ahead the map is nearly deterministic: the forecast mean is within ~0.05 of it, the
    # last value (a random walk's forecast) is ~0.3 off
    assert np.median(np.abs(step1 - truth)) < 0.1 < naive
    lo, hi = fc.quantile(0.05)["y0"].to_numpy(), fc.quantile(0.95)["y0"].to_numpy()
    assert np.all(lo <= hi) and np.mean((lo[::3] <= truth) & (truth <= hi[::3])) > 0.7
    pred = model.predict().mean["y0"].to_numpy().reshape(32, 50)
    err = np.median(np.abs(pred[:, 5:] - z[:32, 5:]))
    assert err < 0.1 < np.median(np.abs(y[:32, 4:-1, 0] - z[:32, 5:]))


def _ragged_long_frame():
    rng = np.random.default_rng(3)
    parts = []
    for sid, n in [("a", 30), ("b", 22), ("c", 17)]:
        t = np.cumsum(rng.uniform(0.5, 2.0, n))  # irregular sampling
        v = np.sin(t) + 0.1 * rng.normal(size=n)
        v[[3, 7]] = np.nan
        parts.append(pd.DataFrame({"unique_id": sid, "ds": t, "y": v}))
    return pd.concat(parts, ignore_index=True)


@pytest.mark.slow  # default suite under 10 minutes on 2 cores; CI runs the slow tier too
def test_ragged_irregular_panel_with_missing_values(tmp_path):
    """Student-t emission on a ragged, irregular long frame with NaNs: layout, masking, persistence."""
    df = _ragged_long_frame()
    kw = dict(TINY, likelihood="student_t", max_epochs=3, num_particles=8, random_state=1)
    model = tsssm.DeepMarkovModel(**kw).fit(df)
    assert model.time_scale_ == pytest.approx(np.median(np.concatenate(
        [np.diff(g["ds"].to_numpy()) for _, g in df.groupby("unique_id", sort=False)])), rel=1e-12)
    scores = model.score_samples()
    assert len(scores) == len(df) and list(scores.columns) == ["unique_id", "ds", "score"]
    assert np.all(scores["score"].to_numpy()[df["y"].isna().to_numpy()] == 0.0)
    np.testing.assert_allclose(scores.groupby("unique_id", sort=False)["score"].sum(), -model.score(), rtol=1e-9)
    fc = model.forecast(times=[100.0, 100.5, 103.0], num_samples=50)
    assert fc.samples.shape == (50, 3, 3, 1) and fc.mean.shape == (9, 3)

    # reproducible: the same random_state gives the same weights
    again = tsssm.DeepMarkovModel(**kw).fit(df)
    for k, v in model.params_.items():
        np.testing.assert_array_equal(again.params_[k], v)

    # save / load: identical scores and forecasts, no pickle
    path = model.save(tmp_path / "dmm.npz")
    loaded = tsssm.load(path)
    assert loaded.get_params() == model.get_params()
    pd.testing.assert_frame_equal(loaded.score_samples(), scores)
    pd.testing.assert_frame_equal(loaded.forecast(times=[100.0, 100.5, 103.0], num_samples=50).mean, fc.mean)
    pd.testing.assert_frame_equal(loaded.history_, model.history_, check_dtype=False)


@pytest.mark.slow  # default suite under 10 minutes on 2 cores; CI runs the slow tier too
def test_single_series_bernoulli_and_errors():
    rng = np.random.default_rng(0)
    index = pd.date_range("2024-01-01", periods=40, freq="D")
    binary = pd.DataFrame((rng.uniform(size=(40, 2)) < 0.3).astype(float), index=index, columns=["k1", "k2"])
    model = tsssm.DeepMarkovModel(likelihood="bernoulli", **dict(TINY, max_epochs=2, num_particles=8), random_state=0)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(DataError, match="0/1 data"):
        clone(model).fit(binary * 2.0)
    model.fit(binary)
    s = model.score_samples()
    assert isinstance(s, pd.Series) and s.index.equals(index) and np.all(s > 0)  # a pmf: -log p > 0
    # two columns of a ~0.3 Bernoulli: an untrained-ish model is within a few nats of the entropy 1.2
    assert 0.5 < -model.score() / 40 < 3.0
    fc = model.forecast(4, num_samples=30)
    assert set(np.unique(fc.samples)) <= {0.0, 1.0} and fc.samples.shape == (30, 4, 2)
    assert np.all((fc.mean.to_numpy() > 0) & (fc.mean.to_numpy() < 1))
    assert model.sample(30, 4, random_state=3).shape == (30, 4, 2)  # shapes of the forecast: no new compilation
    with pytest.raises(DataError, match="columns"):
        model.score(binary[["k1"]])
    with pytest.raises(DataError, match="horizon"):
        model.forecast()


def test_bundled_jsb_chorales():
    data = tsssm.datasets.load_jsb_chorales()
    assert {k: v.shape for k, v in data.items() if not k.endswith("lengths")} == {
        "train": (229, 129, 88), "valid": (76, 144, 88), "test": (77, 160, 88)}
    # 4,725 test time steps: the denominator of the published nats-per-step numbers
    assert data["test_lengths"].sum() == 4725 and data["train_lengths"].sum() == 13807
    assert set(np.unique(data["train"])) == {0, 1}
    assert "6.93" in tsssm.datasets.describe("jsb_chorales")


def test_scores_with_a_lead(logistic):
    """score_samples(lead=L) scores -log p(y_k | y_<=k-L); the chaotic map forgets its past within a few steps."""
    model, y, _ = logistic
    held_out = y[32:36]
    one = anomaly.panel_scores(model, held_out)
    np.testing.assert_array_equal(anomaly.panel_scores(model, held_out, lead=1), one)
    ten = anomaly.panel_scores(model, held_out, lead=10)
    assert ten.shape == one.shape and np.all(np.isfinite(ten))
    # measured: -1.85 nats/step one step ahead, -0.14 ten steps ahead (close to the spread of the
    # map's invariant distribution); a lead that did nothing would give equal means up to ~0.05
    assert np.mean(ten) > np.mean(one) + 1.0
    with pytest.raises(DataError, match="lead"):
        model.score_samples(held_out, lead=0)
