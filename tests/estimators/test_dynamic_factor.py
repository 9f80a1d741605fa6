"""DynamicFactor: mixed-frequency dynamic factor model.

Oracles: statsmodels' ``DynamicFactorMQ`` (log-likelihood and one-step predictions at the same
parameters, after the change of basis to unit factor innovation covariance and the Jacobian of
the standardisation), a dense joint-Gaussian likelihood written from the model's definition
(latent monthly values -> aggregation matrix; no state-space form), and nowcast accuracy on
simulated data with a fixed seed.
"""

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import tsssm

MM = np.array([1.0, 2.0, 3.0, 2.0, 1.0])


def simulate(seed=0, months=240, n_monthly=4, phi=0.7, q_noise=0.3):
    """Monthly indicators driven by one AR(1) factor; the quarterly column is the Mariano-Murasawa
    aggregate (weights 1,2,3,2,1 / 3) of a latent monthly growth rate, stamped at quarter starts."""
    rng = np.random.default_rng(seed)
    f = np.zeros(months + 20)
    for t in range(1, months + 20):
        f[t] = phi * f[t - 1] + rng.normal()
    f = f[20:]
    lam = np.linspace(1.0, 0.4, n_monthly)
    idx = pd.date_range("2000-01-01", periods=months, freq="MS")
    monthly = {f"m{i}": pd.Series(1.0 + i + lam[i] * f + rng.normal(scale=0.7, size=months), index=idx) for i in range(n_monthly)}
    latent = np.concatenate([np.zeros(4), 0.8 * f + rng.normal(scale=q_noise, size=months)])
    agg = np.array([MM @ latent[t : t + 5][::-1] for t in range(months)]) / 3.0
    gdp = pd.Series(2.0 + agg[2::3], index=pd.date_range("2000-01-01", periods=months // 3, freq="QS"), name="gdp")
    return monthly, gdp


@pytest.fixture(scope="module")
def panel():
    monthly, gdp = simulate()
    monthly = {k: v.copy() for k, v in monthly.items()}
    monthly["m1"].iloc[30:42] = np.nan  # a block of missing monthly values
    return monthly, gdp


def _statsmodels_model(panel, **kwargs):
    monthly, gdp = panel
    return sm.tsa.DynamicFactorMQ(pd.DataFrame(monthly), endog_quarterly=gdp.to_frame(), **kwargs)


def _jacobian(mod):
    """log-lik(data units) = log-lik(standardised) - sum_i n_i log s_i."""
    n = np.sum(~np.isnan(np.asarray(mod.endog)), axis=0)
    return float(np.sum(n * np.log(np.asarray(mod._endog_std))))


def _to_tsssm(mod, sm_params, k, p, ar1):
    """statsmodels' parameters -> tsssm's (unit factor innovation covariance)."""
    D = mod.k_endog
    i = 0
    loadings = sm_params[i : i + D * k].reshape(D, k); i += D * k
    A = sm_params[i : i + k * k * p].reshape(k, k * p); i += k * k * p
    chol = np.zeros((k, k)); chol[np.tril_indices(k)] = sm_params[i : i + k * (k + 1) // 2]; i += k * (k + 1) // 2
    inv = np.linalg.inv(chol)
    out = {
        "loadings": loadings @ chol,
        "factor_ar": np.concatenate([inv @ A[:, j * k : (j + 1) * k] @ chol for j in range(p)], axis=1),
    }
    if ar1:
        out["idio_ar"] = sm_params[i : i + D]; i += D
    out["idio_var"] = sm_params[i : i + D]
    return out


@pytest.mark.parametrize("k, p, ar1", [(1, 1, False), (2, 2, True)])
def test_loglik_and_predictions_equal_dynamic_factor_mq_at_same_params(panel, k, p, ar1):
    # One block of k factors (statsmodels' integer ``factors=k`` would make k independent blocks).
    mod = _statsmodels_model(panel, factors=1, factor_multiplicities=k, factor_orders=p, idiosyncratic_ar1=ar1)
    params = np.array(mod.start_params)
    if k > 1:  # a non-diagonal factor covariance exercises the change of basis
        params[mod._p["factor_cov"]] = [1.3, 0.4, 0.8]
    res = mod.smooth(params)
    ours = tsssm.DynamicFactor(k, p, idiosyncratic_ar1=ar1, fixed_params=_to_tsssm(mod, params, k, p, ar1))
    ours.fit(dict(panel[0], gdp=panel[1]))
    # Same Gaussian quantities computed two ways over 240 steps: float64 round-off only.
    assert ours.log_likelihood_ == pytest.approx(res.llf - _jacobian(mod), abs=1e-7)
    predicted = res.predict()  # statsmodels returns them in the data's units
    ours_pred = ours.predict().mean
    np.testing.assert_allclose(ours_pred[list(panel[0])].to_numpy(), predicted[list(panel[0])].to_numpy(), rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(ours_pred["gdp"].to_numpy(), predicted["gdp"].to_numpy(), rtol=1e-8, atol=1e-8)


def test_fitted_loglik_reaches_dynamic_factor_mq_em_optimum(panel):
    mod = _statsmodels_model(panel, factors=1, factor_orders=1, idiosyncratic_ar1=False)
    em = mod.fit(disp=False, maxiter=500, tolerance=1e-8)
    ours = tsssm.DynamicFactor().fit(dict(panel[0], gdp=panel[1]))
    assert ours.converged_
    # ``em.llf`` is not the log-likelihood at ``em.params`` (statsmodels 0.15 reports -1266.97
    # there, 4.4 above its own ``loglike(em.params)``), so compare exact log-likelihoods.
    sm_ll = mod.loglike(np.asarray(em.params)) - _jacobian(mod)
    # Same likelihood, two optimisers: BFGS (to a zero gradient) must not end below EM's
    # final point; EM stops slowly near the optimum, so it may end a little below.
    assert ours.log_likelihood_ >= sm_ll - 1e-6
    assert ours.log_likelihood_ - sm_ll < 1.0
    print(f"log-lik tsssm {ours.log_likelihood_:.6f}, DynamicFactorMQ (EM) {sm_ll:.6f}")


def _dense_loglik(y_months, gdp_rows, gdp_values, params, weights, mean, std):
    """Log-density of the observed standardised entries from the latent monthly covariance.

    One AR(1) factor (unit innovations), i.i.d. idiosyncratic errors; the latent series start
    len(weights) - 1 months before the sample (stationary), the quarterly observable is the
    weighted sum of its latent monthly values over the window ending at its row.
    """
    T, M = y_months.shape
    lag = len(weights) - 1
    n = T + lag
    phi = params["factor_ar"][0, 0]
    gap = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    cov_f = phi**gap / (1 - phi**2)
    lam = params["loadings"][:, 0]
    sig = params["idio_var"]
    D = M + 1
    # Latent z*_{i,t} for all columns, stacked column-major: index i * n + t.
    cov = np.kron(np.outer(lam, lam), cov_f) + np.kron(np.diag(sig), np.eye(n))
    rows, values = [], []
    for i in range(M):
        for t in range(T):
            if np.isfinite(y_months[t, i]):
                r = np.zeros(D * n); r[i * n + lag + t] = 1.0
                rows.append(r); values.append((y_months[t, i] - mean[i]) / std[i])
    for t, v in zip(gdp_rows, gdp_values):
        r = np.zeros(D * n)
        for j, w in enumerate(weights):
            r[M * n + lag + t - j] = w
        rows.append(r); values.append((v - mean[M]) / std[M])
    A, z = np.array(rows), np.array(values)
    S = A @ cov @ A.T
    sign, logdet = np.linalg.slogdet(S)
    quad = z @ np.linalg.solve(S, z)
    jacobian = sum(np.isfinite(y_months[:, i]).sum() * np.log(std[i]) for i in range(M)) + len(gdp_values) * np.log(std[M])
    return -0.5 * (len(z) * np.log(2 * np.pi) + logdet + quad) - jacobian


@pytest.mark.parametrize("rule, weights", [("sum", [1, 1, 1]), ("mean", [1 / 3] * 3), ("last", [1]), ("mariano-murasawa", MM)])
def test_aggregation_rules_match_dense_gaussian_oracle(rule, weights):
    monthly, gdp = simulate(seed=3, months=48, n_monthly=2)
    monthly["m0"].iloc[5:9] = np.nan
    params = {"loadings": np.array([[0.8], [0.5], [0.6]]), "factor_ar": np.array([[0.6]]), "idio_var": np.array([0.4, 0.5, 0.3])}
    m = tsssm.DynamicFactor(aggregation={"gdp": rule}, fixed_params=params).fit(dict(monthly, gdp=gdp))
    y = pd.DataFrame(monthly).to_numpy()
    gdp_rows = np.arange(len(gdp)) * 3 + 2  # quarter-start stamps tie to the quarter's third month
    mean, std = m.standardization_["mean"].to_numpy(), m.standardization_["std"].to_numpy()
    expected = _dense_loglik(y, gdp_rows, gdp.to_numpy(), params, np.asarray(weights, float), mean, std)
    assert m.log_likelihood_ == pytest.approx(expected, abs=1e-8)


def test_nowcast_beats_period_end_model_on_simulated_data():
    monthly, gdp = simulate(seed=11, months=360, q_noise=0.5)
    data = dict(monthly, gdp=gdp)
    rmse = {}
    for rule in ("mariano-murasawa", "last"):
        m = tsssm.DynamicFactor(aggregation={"gdp": rule}).fit(data)
        pred = m.predict().mean["gdp"]
        # One-step predictions at the quarter-end rows: the nowcast made with the quarter's
        # first two months of indicators, before the quarterly value arrives.
        ends = pred.index[2::3]
        err = pred.loc[ends].to_numpy()[8:] - gdp.to_numpy()[8:]
        rmse[rule] = float(np.sqrt(np.mean(err**2)))
    print(f"nowcast RMSE over 112 quarters: aggregated {rmse['mariano-murasawa']:.4f}, period-end only {rmse['last']:.4f}")
    assert rmse["mariano-murasawa"] < 0.85 * rmse["last"]


def test_nowcast_of_current_quarter_and_outputs(panel):
    monthly, gdp = panel
    cut = {k: v.iloc[:-1] for k, v in monthly.items()}  # data end in the second month of the last quarter
    m = tsssm.DynamicFactor().fit(dict(cut, gdp=gdp.iloc[:-1]))
    now = m.nowcast()
    assert now.index[-1] == gdp.index[-1] and np.isnan(now["observed"].iloc[-1])
    observed = now.dropna(subset=["observed"])
    # Aggregated columns carry no observation noise: at observed quarters the estimate is the value.
    np.testing.assert_allclose(observed["mean"], observed["observed"], atol=1e-6)
    assert now["std"].iloc[-1] > 0.0 and np.all(observed["std"] < 1e-3)
    # The current quarter's nowcast is the forecast of the gdp column at the quarter-end month.
    fc = m.forecast(1)
    assert now["mean"].iloc[-1] == pytest.approx(fc.mean["gdp"].iloc[0], rel=1e-8)
    assert now["std"].iloc[-1] == pytest.approx(fc.std["gdp"].iloc[0], rel=1e-6)
    assert list(m.smooth_observations().columns) == list(m.meta_.columns)
    scores = m.score_samples()
    assert len(scores) == len(m.meta_.indexes[0]) and np.all(np.isfinite(scores))
    assert m.score() == pytest.approx(scores.sum() * -1, rel=1e-9)


def test_save_load_round_trip(panel, tmp_path):
    m = tsssm.DynamicFactor().fit(dict(panel[0], gdp=panel[1]))
    path = m.save(tmp_path / "dfm")
    back = tsssm.load(path)
    assert back.log_likelihood_ == m.log_likelihood_
    before, after = m.nowcast(), back.nowcast()
    assert list(after.index) == list(before.index)
    np.testing.assert_allclose(after.to_numpy(), before.to_numpy(), rtol=1e-10)
    assert back.score() == pytest.approx(m.score(), rel=1e-12)


@pytest.mark.parametrize(
    "aggregation, message",
    [({"nope": "sum"}, "not in the data"), ({"gdp": "median"}, "unknown aggregation rule"), ({"m0": "sum"}, "grid frequency")],
)
def test_bad_aggregation_spec_raises_data_error(panel, aggregation, message):
    with pytest.raises(tsssm.DataError, match=message):
        tsssm.DynamicFactor(aggregation=aggregation).fit(dict(panel[0], gdp=panel[1]))


def test_other_bad_inputs_raise_data_error(panel):
    data = dict(panel[0], gdp=panel[1])
    with pytest.raises(tsssm.DataError, match="positive integers"):
        tsssm.DynamicFactor(k_factors=0).fit(data)
    late = pd.concat([panel[1], pd.Series([1.0], index=[pd.Timestamp("2020-01-01")])])
    with pytest.raises(tsssm.DataError, match="after the last row"):
        tsssm.DynamicFactor().fit(dict(panel[0], gdp=late))


@pytest.mark.slow
def test_nuts_fit_on_mixed_frequency_panel(panel):
    """The Bayesian fit takes the same mixed-frequency data as the MLE: its posterior mean of the
    log-likelihood sits below the MLE optimum, draws are finite and the nowcast carries them."""
    monthly, gdp = panel
    data = dict(monthly, gdp=gdp)
    mle_fit = tsssm.DynamicFactor().fit(data)
    bayes = tsssm.DynamicFactor(method="nuts", num_samples=150, num_warmup=150, num_chains=1, random_state=0).fit(data)
    assert all(np.all(np.isfinite(d)) for d in bayes.posterior_.values())
    assert bayes.log_likelihood_ <= mle_fit.log_likelihood_ + 1e-6
    # the loading of the first monthly column is identified up to sign: compare magnitudes
    name = next(k for k in bayes.posterior_ if "loading" in k)
    np.testing.assert_allclose(np.abs(bayes.params_[name]), np.abs(mle_fit.params_[name]), rtol=0.3, atol=0.1)
    fc = bayes.forecast(3)
    assert np.all(np.isfinite(fc.mean.to_numpy())) and np.all(fc.std.to_numpy() > 0)
