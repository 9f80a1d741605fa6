"""Pooled panels: one parameter set shared by many series (``pooled=True``), and PhaseFactor.

Oracles:

- the joint log-likelihood of a pooled fit is, by definition, the sum of the single-series exact
  diffuse log-likelihoods at the same parameters (each single-series value itself tested against
  statsmodels elsewhere); only round-off separates the vmapped sum from the loop, so we assert
  1e-9 relative;
- PhaseFactor's Kalman log-likelihood of a fully observed beat equals the dense Gaussian density
  N(template, W W^T + sigma^2 I) of the whole beat (probabilistic PCA), computed with SciPy;
- on a panel simulated from known parameters the pooled MLE lies within 4 standard errors
  (inverse observed information of the joint likelihood) of the truth: with 3 parameters a
  failure of a correct estimator has probability below 2e-4.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import tsssm

TRUE = {"sigma2_irregular": 0.5, "sigma2_ar": 1.0, "ar": 0.7}


def _simulate_ar_panel(num_series, length, seed):
    """AR(1) + white noise series (the model UnobservedComponents('irregular', autoregressive=1))."""
    rng = np.random.default_rng(seed)
    phi, s2_ar, s2_irr = TRUE["ar"], TRUE["sigma2_ar"], TRUE["sigma2_irregular"]
    state = rng.normal(0.0, np.sqrt(s2_ar / (1 - phi**2)), num_series)
    out = np.empty((num_series, length))
    for t in range(length):
        out[:, t] = state + rng.normal(0.0, np.sqrt(s2_irr), num_series)
        state = phi * state + rng.normal(0.0, np.sqrt(s2_ar), num_series)
    return out


LENGTHS = (70, 100)


@pytest.fixture(scope="module")
def ragged_long():
    """40 series of 70 or 100 steps, one with a NaN block, as a long frame."""
    values = _simulate_ar_panel(40, 100, seed=7)
    frames = []
    for i in range(40):
        y = values[i, : LENGTHS[i % 2]].copy()
        if i == 3:
            y[10:15] = np.nan
        frames.append(pd.DataFrame({"unique_id": i, "ds": np.arange(len(y)), "y": y}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def pooled(ragged_long):
    return tsssm.UnobservedComponents("irregular", autoregressive=1, pooled=True).fit(ragged_long)


def test_pooled_log_likelihood_is_the_sum_of_single_series_ones(ragged_long, pooled):
    assert pooled.converged_ and isinstance(pooled.params_, dict)
    singles = []
    for _, frame in ragged_long.groupby("unique_id"):
        one = tsssm.UnobservedComponents("irregular", autoregressive=1, fixed_params=pooled.params_)
        singles.append(one.fit(frame.set_index("ds")["y"]).log_likelihood_)
    np.testing.assert_allclose(pooled.log_likelihood_, np.sum(singles), rtol=1e-9)
    # per-series scores of the fitted panel are those single-series log-likelihoods
    np.testing.assert_allclose(pooled.score().to_numpy(), singles, rtol=1e-9)
    assert pooled.nobs_ == int(ragged_long["y"].notna().sum())


def test_pooled_model_is_rebuilt_from_its_parameters(ragged_long, pooled, tmp_path):
    with pytest.raises(tsssm.DataError, match="fixed_params=params_"):
        pooled.save(tmp_path / "pooled.npz")
    rebuilt = tsssm.UnobservedComponents("irregular", autoregressive=1, pooled=True, fixed_params=pooled.params_)
    np.testing.assert_allclose(rebuilt.fit(ragged_long).log_likelihood_, pooled.log_likelihood_, rtol=1e-12)


def test_pooled_mle_recovers_the_parameters_within_standard_errors(pooled):
    table = pooled.summary()
    for name, key in (("sigma2_irregular", "sigma2_irregular"), ("sigma2_ar", "sigma2_ar"), ("ar.L1", "ar")):
        truth = TRUE[key]
        estimate, se = table.loc[name, "estimate"], table.loc[name, "std_error"]
        assert 0.0 < se < 0.2, name
        assert abs(estimate - truth) < 4.0 * se, (name, estimate, truth, se)


def test_pooled_model_scores_new_series_with_the_shared_parameters(pooled):
    new = _simulate_ar_panel(3, 70, seed=99)
    frame = pd.DataFrame({"unique_id": np.repeat([0, 1, 2], 70), "ds": np.tile(np.arange(70), 3), "y": new.reshape(-1)})
    scores = pooled.score_samples(frame)
    assert list(scores.columns) == ["unique_id", "ds", "score"] and len(scores) == 210
    oracle = tsssm.UnobservedComponents("irregular", autoregressive=1, fixed_params=pooled.params_).fit(pd.Series(new[1]))
    np.testing.assert_allclose(scores[scores.unique_id == 1]["score"].to_numpy(), oracle.score_samples().to_numpy(), rtol=1e-9)


@pytest.fixture(scope="module")
def beats():
    """Simulated beats from a 2-factor phase model: a bump template, two smooth loadings."""
    rng = np.random.default_rng(3)
    phase = np.linspace(0.0, 1.0, 30)
    template = np.exp(-0.5 * ((phase - 0.4) / 0.08) ** 2) - 0.3
    loadings = 0.5 * np.stack([np.sin(np.pi * phase), np.cos(2 * np.pi * phase)], axis=1)
    factors = rng.normal(size=(120, 2))
    return template + factors @ loadings.T + rng.normal(0.0, 0.1, (120, 30))


@pytest.fixture(scope="module")
def phase_model(beats):
    return tsssm.PhaseFactor(2).fit(beats[:100, :, None])


def test_phase_factor_likelihood_is_the_dense_ppca_density(beats, phase_model):
    model = phase_model
    assert model.converged_
    p = model.params_
    cov = p["loadings"] @ p["loadings"].T + p["sigma2_irregular"] * np.eye(30)
    dense = scipy.stats.multivariate_normal(p["template"], cov).logpdf(beats[:100])
    np.testing.assert_allclose(model.log_likelihood_, dense.sum(), rtol=1e-9)
    # the per-step scores of a beat add up to its negative log density
    new = beats[100:104] + np.linspace(0.0, 1.0, 30)  # drifting beats
    per_step = model.score_samples(new[:, :, None])
    totals = per_step.groupby("unique_id")["score"].sum().to_numpy()
    np.testing.assert_allclose(totals, -scipy.stats.multivariate_normal(p["template"], cov).logpdf(new), rtol=1e-9)
    # missing samples: the density of a beat is the dense marginal of its observed samples
    holed = new.copy()
    holed[0, 5:12] = holed[1, ::3] = np.nan
    got = phase_model.score(holed[:, :, None]).to_numpy()
    for b in range(4):
        seen = np.isfinite(holed[b])
        marginal = scipy.stats.multivariate_normal(p["template"][seen], cov[np.ix_(seen, seen)]).logpdf(holed[b, seen])
        np.testing.assert_allclose(got[b], marginal, rtol=1e-9)


def test_phase_factor_flags_an_abnormal_beat_where_it_departs(beats, phase_model):
    model = phase_model
    test = beats[100:].copy()
    test[5, 20:24] += 1.5  # a bump after the normal peak
    scores = tsssm.anomaly.panel_scores(model, test)
    assert np.argmax(tsssm.anomaly.series_scores(scores, how="max")) == 5
    assert 20 <= np.argmax(scores[5]) < 24


@pytest.mark.parametrize(
    "make, data, message",
    [
        (lambda: tsssm.PhaseFactor(), lambda b: b[0], "only many series identify"),
        (lambda: tsssm.PhaseFactor(pooled=False), lambda b: b[:, :, None], "pooled=True"),
        (lambda: tsssm.PhaseFactor(), lambda b: b[:, :, None] * np.ones((1, 1, 2)), "models one column"),
    ],
)
def test_phase_factor_bad_input_raises_data_error(beats, make, data, message):
    with pytest.raises(tsssm.DataError, match=message):
        make().fit(data(beats))


def test_phase_factor_rejects_phases_it_was_not_fitted_on(phase_model):
    with pytest.raises(tsssm.DataError, match="forecast reaches phase 30"):
        phase_model.forecast(1)
    longer = np.zeros((1, 35, 1))
    with pytest.raises(tsssm.DataError, match="0, 1, ..., 29"):
        phase_model.score_samples(longer)
    uneven = pd.DataFrame({"unique_id": 0, "ds": [0.0, 1.0, 1.37, 2.0, 3.0], "y0": np.zeros(5)})
    with pytest.raises(tsssm.DataError, match="irregular"):
        phase_model.score_samples(uneven)
