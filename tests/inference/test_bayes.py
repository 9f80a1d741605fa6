"""numpyro NUTS on the Kalman likelihood: priors, pointwise log-likelihood, posterior coverage."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats

import tsssm
from tsssm._config import float64
from tsssm.forecast import mixture_quantile
from tsssm.inference import bayes, mle
from tsssm.models.arima import ARIMAModel
from tsssm.models.components import Level, Trend
from tsssm.models.lgssm import LinearGaussianModel, StructuralModel


def _series(y, times=None):
    y = np.asarray(y, float).reshape(len(y), -1)
    mask = np.isfinite(y)
    times = np.arange(len(y), dtype=float) if times is None else np.asarray(times, float)
    return mle.SeriesData(jnp.asarray(times), jnp.asarray(np.where(mask, y, 0.0)), jnp.asarray(mask), None)


def _simulate_local_level(T, sigma2_irregular, sigma2_level, seed):
    rng = np.random.default_rng(seed)
    level = np.cumsum(rng.normal(0.0, np.sqrt(sigma2_level), T)) + 10.0
    return level + rng.normal(0.0, np.sqrt(sigma2_irregular), T)


@pytest.mark.parametrize(
    "model, params",
    [
        (StructuralModel((Level(),), True), {"sigma2_irregular": 15099.0, "sigma2_level": 1469.1}),
        (StructuralModel((Trend(True, True),), True), {"sigma2_irregular": 9000.0, "sigma2_level": 1000.0, "sigma2_trend": 20.0}),
        (ARIMAModel((1, 1, 1), (0, 0, 0, 0), "n"), {"ar": np.array([0.3]), "ma": np.array([-0.6]), "sigma2": 17000.0}),
    ],
    ids=["local-level", "local-linear-trend", "arima111"],
)
def test_pointwise_terms_sum_to_the_exact_diffuse_log_likelihood(model, params):
    y = tsssm.datasets.load_nile().to_numpy().copy()
    y[[0, 10, 11, 40]] = np.nan  # missing values, one of them in the diffuse burn-in
    data = _series(y)
    with float64():
        params = {k: jnp.asarray(v) for k, v in params.items()}
        terms = np.asarray(bayes.pointwise_log_likelihood(model, params, data))
        total = float(mle.log_likelihood(model, params, data))
    assert np.all(terms[~np.isfinite(y)] == 0.0)
    # the sum is exact up to round-off of two different recursions on ~100 terms of size ~6
    assert np.sum(terms) == pytest.approx(total, abs=1e-8)
    # after the burn-in, the terms are the one-step-ahead log predictive densities
    with float64():
        from tsssm.inference import posterior

        pred = posterior.predictions(model, params, data)
    density = np.asarray(pred.log_density)
    valid = np.asarray(pred.valid) & np.isfinite(y)
    np.testing.assert_allclose(terms[valid], density[valid], rtol=1e-12)


def test_local_level_burn_in_term_is_zero():
    """For a local level, M = 1: the first observation's share is -log|det M| = 0 (docs).

    It also absorbs the round-off between the lean likelihood recursion and the full filter
    (about 1e-6 on Nile's log-likelihood of -632, whose information sums reach ~1e8).
    """
    data = _series(tsssm.datasets.load_nile().to_numpy())
    with float64():
        terms = bayes.pointwise_log_likelihood(StructuralModel((Level(),), True), {"sigma2_irregular": 15099.0, "sigma2_level": 1469.1}, data)
    assert abs(float(terms[0])) < 1e-5


def test_priors_are_validated():
    layout = mle.ParamLayout.build(StructuralModel((Level(),), True).param_specs(), {"sigma2_irregular": 1.0})
    with pytest.raises(tsssm.DataError, match=r"\['sigma2_nope'\].*free parameters are \['sigma2_level'\]"):
        bayes.check_priors(layout, {"sigma2_nope": dist.HalfNormal(1.0)})
    with pytest.raises(tsssm.DataError, match="fixed by fixed_params"):
        bayes.check_priors(layout, {"sigma2_irregular": dist.HalfNormal(1.0)})
    with pytest.raises(tsssm.DataError, match="numpyro distribution"):
        bayes.check_priors(layout, {"sigma2_level": 3.0})
    arima = mle.ParamLayout.build(ARIMAModel((2, 0, 0), (0, 0, 0, 0), "c").param_specs(), None)
    with pytest.raises(tsssm.DataError, match="shape"):
        bayes.check_priors(arima, {"ar": dist.Uniform(-jnp.ones(3), jnp.ones(3))})
    expanded = bayes.check_priors(arima, {"ar": dist.Uniform(-0.5, 0.5)})["ar"]
    assert expanded.event_shape == (2,)


def test_default_priors_respect_the_constraints():
    """Prior draws of AR(3) and MA(2) polynomials are stationary / invertible; covariances are PD."""
    from numpyro.infer import Predictive

    model = ARIMAModel((3, 0, 2), (0, 0, 0, 0), "c")
    layout = mle.ParamLayout.build(model.param_specs(), None)
    scales = bayes.PriorScales(4.0, 3.0)
    with float64():
        draws = Predictive(lambda: bayes.prior_model(layout, {}, scales), num_samples=400)(jax.random.key(0))
    for name, sign in (("ar", 1.0), ("ma", -1.0)):
        coefs = np.asarray(draws[name])
        roots = [np.roots(np.r_[1.0, -sign * c][::-1]) for c in coefs]
        assert min(np.min(np.abs(r)) for r in roots) > 1.0
    assert np.all(np.asarray(draws["sigma2"]) > 0)
    # HalfCauchy(s2): the prior median of a variance is the data variance
    assert np.median(np.asarray(draws["sigma2"])) == pytest.approx(4.0, rel=0.25)
    lgssm = LinearGaussianModel(1, 2)
    layout = mle.ParamLayout.build(lgssm.param_specs(), None)
    with float64():
        draws = Predictive(lambda: bayes.prior_model(layout, {}, scales), num_samples=50)(jax.random.key(1))
    assert np.all(np.linalg.eigvalsh(np.asarray(draws["obs_cov"])) > 0)


def test_posterior_covers_true_local_level_parameters():
    """Simulated local level (T = 150, fixed seed): both true variances lie in the central 95% interval."""
    truth = {"sigma2_irregular": 1.0, "sigma2_level": 0.3}
    data = _series(_simulate_local_level(150, truth["sigma2_irregular"], truth["sigma2_level"], seed=3))
    with float64():
        result = bayes.fit(StructuralModel((Level(),), True), data, num_warmup=300, num_samples=300, num_chains=2, random_state=1)
    assert result.chain_method in ("vectorized", "parallel")
    assert int(np.sum(result.stats["diverging"])) == 0
    for name, value in truth.items():
        low, high = np.quantile(result.draws[name], [0.025, 0.975])
        assert low < value < high, (name, low, high)
    assert result.draws["sigma2_level"].shape == (2, 300)
    assert result.prior_draws["sigma2_level"].shape[:1] == (1,)


def test_mixture_quantile_matches_the_mixture_cdf():
    means = np.array([[0.0, 1.0], [3.0, 1.0], [1.0, 1.0]])[:, :, None]
    stds = np.array([[1.0, 1.0], [0.5, 2.0], [2.0, 1.0]])[:, :, None]
    for q in (0.025, 0.5, 0.9):
        x = mixture_quantile(means, stds, q)
        cdf = np.mean(scipy.stats.norm.cdf((x - means) / stds), axis=0)
        np.testing.assert_allclose(cdf, q, atol=1e-12)
    # one component: the Gaussian quantile
    np.testing.assert_allclose(mixture_quantile(means[:1], stds[:1], 0.975), means[0] + 1.959963984540054 * stds[0], rtol=1e-12)


@pytest.mark.slow
def test_simulation_based_calibration_local_level():
    """SBC (Talts et al. 2018): ranks of prior draws among posterior draws are uniform.

    Parameters are drawn from proper priors (the model's default HalfCauchy would give
    extreme series), data are simulated from them, and the rank of the true value among 99
    thinned posterior draws is recorded; 40 replications, 10 rank bins, chi-square test at 1%.
    """
    model = StructuralModel((Level(),), True)
    priors = {"sigma2_irregular": dist.LogNormal(0.0, 0.5), "sigma2_level": dist.LogNormal(-1.0, 0.5)}
    rng = np.random.default_rng(11)
    ranks = {k: [] for k in priors}
    for rep in range(40):
        truth = {k: float(np.exp(rng.normal(0.0 if k == "sigma2_irregular" else -1.0, 0.5))) for k in priors}
        data = _series(_simulate_local_level(60, truth["sigma2_irregular"], truth["sigma2_level"], seed=100 + rep))
        with float64():
            result = bayes.fit(model, data, priors=priors, num_warmup=300, num_samples=396, num_chains=2, random_state=rep, num_prior_draws=1)
        for k in priors:
            draws = result.draws[k].reshape(-1)[::8]  # 99 roughly independent draws
            ranks[k].append(int(np.sum(draws < truth[k])))
    for k, r in ranks.items():
        counts = np.bincount(np.minimum(np.asarray(r) // 10, 9), minlength=10)
        assert scipy.stats.chisquare(counts).pvalue > 0.01, (k, counts)
