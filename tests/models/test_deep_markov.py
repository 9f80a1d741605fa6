"""Deep Markov model networks, ELBO and particle filter (tsssm.models.deep_markov, tsssm.inference.svi)."""

from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
import scipy.stats

from tests.reference.dense_gaussian import condition, gaussian_logpdf, joint_moments
from tsssm.inference import svi
from tsssm.models.deep_markov import DeepMarkovNetwork, Emission, GatedTransition, gaussian_kl

D, Z, T = 3, 2, 12
K = 16  # particles: one value everywhere, so that the filter compiles once per batch shape
_terms = eqx.filter_jit(svi.batch_elbo_terms)


def _net(likelihood="gaussian", seed=0):
    return DeepMarkovNetwork(D, Z, 8, 8, 8, likelihood, key=jax.random.key(seed))


def _batch(B=2, seed=0, missing=0.3):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(B, T, D))
    mask = rng.uniform(size=y.shape) > missing
    delta = rng.uniform(0.5, 2.0, size=(B, T))
    return svi.as_batch(y, mask, delta, np.ones((B, T), bool))


@pytest.mark.parametrize("likelihood", ["gaussian", "student_t", "bernoulli"])
def test_emission_log_prob_matches_scipy_on_observed_entries(likelihood):
    em = Emission(Z, 8, D, likelihood, key=jax.random.key(1))
    z = jnp.array([0.3, -1.2], jnp.float32)
    y = np.array([1.0, 0.0, 1.0], np.float32) if likelihood == "bernoulli" else np.array([0.4, -2.0, 3.5], np.float32)
    mask = np.array([True, False, True])
    eta = np.asarray(em.location(z), float)
    scale = np.exp(np.asarray(em.log_scale, float)) + 1e-3
    if likelihood == "gaussian":
        ref = scipy.stats.norm.logpdf(y, eta, scale)
    elif likelihood == "student_t":
        df = 2.0 + np.log1p(np.exp(np.asarray(em.raw_df, float)))
        ref = scipy.stats.t.logpdf(y, df, eta, scale)
    else:
        ref = scipy.stats.bernoulli.logpmf(y, 1.0 / (1.0 + np.exp(-eta)))
    # float32 networks: agreement to ~1e-6 relative
    np.testing.assert_allclose(float(em.log_prob(z, y, mask)), ref[mask].sum(), rtol=1e-5)
    garbage = np.where(mask, y, np.nan).astype(np.float32)
    assert float(em.log_prob(z, garbage, mask)) == float(em.log_prob(z, y, mask))


def test_gaussian_kl_matches_numpyro():
    rng = np.random.default_rng(0)
    ql, pl = rng.normal(size=(2, 4))
    qs, ps = rng.uniform(0.2, 2.0, size=(2, 4))
    ref = dist.kl_divergence(dist.Normal(ql, qs), dist.Normal(pl, ps)).sum()
    np.testing.assert_allclose(float(gaussian_kl(ql, qs, pl, ps)), float(ref), rtol=1e-10)


def test_transition_starts_close_to_linear_identity():
    tr = GatedTransition(Z, 8, key=jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(tr.linear.weight), np.zeros((Z, Z)))  # linear part z + delta (A z + b) = z
    z = jnp.array([0.5, -0.25])
    loc, scale = tr(z, jnp.float32(1.0))
    gate = jax.nn.sigmoid(tr.gate_out(jax.nn.relu(tr.gate_hidden(jnp.concatenate([z, jnp.ones(1)])))))
    assert loc.shape == scale.shape == (Z,) and np.all(np.asarray(scale) > 0)
    # bias -2 at initialisation: the gate gives the nonlinear proposal a small weight (~0.12)
    assert np.all(np.asarray(gate) < 0.35)


def test_shapes_and_masked_entries_do_not_change_the_elbo():
    net, batch = _net(), _batch()
    ll, kl = _terms(net, batch, jax.random.key(0))
    assert ll.shape == kl.shape == (2, T) and np.all(np.asarray(kl) >= 0)
    assert net.guide_states(batch.y[0], batch.mask[0], batch.delta[0], batch.valid[0]).shape == (T, 8)
    garbage = batch._replace(y=np.where(batch.mask, batch.y, 1e6 * np.random.default_rng(1).normal(size=batch.y.shape)).astype(np.float32))
    nan = batch._replace(y=np.where(batch.mask, batch.y, np.nan).astype(np.float32))
    ref = np.asarray(svi.batch_elbo(net, batch, jax.random.key(5)))
    # masked values are never read: identical to the last bit
    np.testing.assert_array_equal(np.asarray(svi.batch_elbo(net, garbage, jax.random.key(5))), ref)
    np.testing.assert_array_equal(np.asarray(svi.batch_elbo(net, nan, jax.random.key(5))), ref)
    f_ref = svi.batch_filter(net, batch, jax.random.key(2), K)
    f_nan = svi.batch_filter(net, nan, jax.random.key(2), K)
    np.testing.assert_array_equal(np.asarray(f_nan.log_increments), np.asarray(f_ref.log_increments))


def test_padding_a_series_changes_nothing():
    net, batch = _net(), _batch(B=2)
    extra = 5
    rng = np.random.default_rng(9)
    padded = svi.as_batch(
        np.concatenate([batch.y, rng.normal(size=(2, extra, D)) * 100], axis=1),
        np.concatenate([batch.mask, np.ones((2, extra, D), bool)], axis=1),
        np.concatenate([batch.delta, rng.uniform(size=(2, extra))], axis=1),
        np.concatenate([batch.valid, np.zeros((2, extra), bool)], axis=1),
    )
    ll, kl = _terms(net, batch, jax.random.key(4))
    llp, klp = _terms(net, padded, jax.random.key(4))
    # same per-step noise (fold_in of the step), padding ignored by the backward GRU: equal up to
    # float32 reassociation in the differently shaped computation
    np.testing.assert_allclose(np.asarray(llp)[:, :T], np.asarray(ll), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(klp)[:, :T], np.asarray(kl), rtol=1e-5, atol=1e-5)
    assert np.all(np.asarray(llp)[:, T:] == 0) and np.all(np.asarray(klp)[:, T:] == 0)
    f = svi.batch_filter(net, batch, jax.random.key(3), K)
    fp = svi.batch_filter(net, padded, jax.random.key(3), K)
    np.testing.assert_allclose(np.asarray(fp.log_increments)[:, :T], np.asarray(f.log_increments), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(fp.z), np.asarray(f.z), rtol=1e-5, atol=1e-5)


def _zeroed(lin):
    """A copy of the linear layer ``lin`` with zero weight and bias."""
    return eqx.tree_at(lambda m: (m.weight, m.bias), lin, (jnp.zeros_like(lin.weight), jnp.zeros_like(lin.bias)))


def _latent_free_network():
    """Network whose guide equals its prior and whose emission ignores z: log p(y) is known exactly."""
    net = _net()
    s = 0.7
    tr = net.transition
    # gate = 1: the transition mean is the proposal, which is 0
    tr = eqx.tree_at(lambda m: m.gate_out, tr, eqx.tree_at(lambda m: m.bias, _zeroed(tr.gate_out), jnp.full((Z,), 60.0)))
    tr = eqx.tree_at(lambda m: m.proposal_out, tr, _zeroed(tr.proposal_out))
    bias = float(np.log(np.expm1(s - 1e-3)))
    tr = eqx.tree_at(lambda m: m.scale, tr, eqx.tree_at(lambda m: m.bias, _zeroed(tr.scale), jnp.full((Z,), bias)))
    cb = net.combiner
    cb = eqx.tree_at(lambda m: m.hidden_to_loc, cb, _zeroed(cb.hidden_to_loc))
    cb = eqx.tree_at(lambda m: m.hidden_to_scale, cb, eqx.tree_at(lambda m: m.bias, _zeroed(cb.hidden_to_scale), jnp.full((Z,), bias)))
    em = net.emission
    em = eqx.tree_at(lambda m: m.out, em, eqx.tree_at(lambda m: m.bias, _zeroed(em.out), jnp.array([0.5, -1.0, 2.0])))
    return eqx.tree_at(lambda n: (n.transition, n.combiner, n.emission), net, (tr, cb, em))


def test_particle_filter_and_elbo_are_exact_when_guide_equals_prior():
    net, batch = _latent_free_network(), _batch(B=2)
    scale = np.exp(np.asarray(net.emission.log_scale, float)) + 1e-3
    ref = np.where(batch.mask, scipy.stats.norm.logpdf(batch.y, [0.5, -1.0, 2.0], scale), 0.0).sum(axis=2)
    f = svi.batch_filter(net, batch, jax.random.key(0), K)
    # every weight ratio p/q is exactly 1: the per-step estimates are the exact log densities
    np.testing.assert_allclose(np.asarray(f.log_increments), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(svi.batch_elbo(net, batch, jax.random.key(1))), ref.sum(axis=1), rtol=1e-5)
    # predictive moments: mean = emission location, variance = its scale^2
    np.testing.assert_allclose(np.asarray(f.pred_mean)[0, 3], [0.5, -1.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(f.pred_var)[0, 3], scale**2, rtol=1e-4)


def _linear_gaussian_network(A, b, q, C, d, r, z0):
    """Network of the linear-Gaussian model z_k = z_{k-1} + delta_k (A z_{k-1} + b) + q eps,
    y_k = C z_k + d + r eps', started at ``z0``: gate 0 (bias -60), constant transition scale,
    and an emission MLP that is linear through relu(x) - relu(-x). The guide ignores the data
    (zero GRU: h = 0) and proposes about N(z_{k-1}, 0.4^2) (the combiner's tanh of 0.01 z is
    linear to 1e-4 relative): close to the prior, so the importance weights stay even."""
    net = _net(seed=5)
    tr = net.transition
    tr = eqx.tree_at(lambda m: m.gate_out, tr, eqx.tree_at(lambda m: m.bias, _zeroed(tr.gate_out), jnp.full((Z,), -60.0)))
    tr = eqx.tree_at(lambda m: (m.linear.weight, m.linear.bias), tr, (jnp.asarray(A, jnp.float32), jnp.asarray(b, jnp.float32)))
    tr = eqx.tree_at(lambda m: m.scale, tr, eqx.tree_at(lambda m: m.bias, _zeroed(tr.scale), jnp.full((Z,), np.log(np.expm1(q - 1e-3)))))
    em = net.emission
    H = np.zeros((8, Z))
    H[:Z], H[Z : 2 * Z] = np.eye(Z), -np.eye(Z)  # hidden1: (relu(z), relu(-z)); hidden2 passes them on
    em = eqx.tree_at(lambda m: (m.hidden1.weight, m.hidden1.bias), em, (jnp.asarray(H, jnp.float32), jnp.zeros(8)))
    em = eqx.tree_at(lambda m: (m.hidden2.weight, m.hidden2.bias), em, (jnp.eye(8), jnp.zeros(8)))
    out = np.zeros((D, 8))
    out[:, :Z], out[:, Z : 2 * Z] = C, -np.asarray(C)
    em = eqx.tree_at(lambda m: (m.out.weight, m.out.bias, m.log_scale), em, (jnp.asarray(out, jnp.float32), jnp.asarray(d, jnp.float32), jnp.full((D,), np.log(r - 1e-3))))
    cb = net.combiner
    eps = 0.01
    cb = eqx.tree_at(lambda m: (m.z_to_hidden.weight, m.z_to_hidden.bias), cb, (eps * jnp.eye(8, Z), jnp.zeros(8)))
    cb = eqx.tree_at(lambda m: (m.hidden_to_loc.weight, m.hidden_to_loc.bias), cb, ((2 / eps) * jnp.eye(Z, 8), jnp.zeros(Z)))
    cb = eqx.tree_at(lambda m: m.hidden_to_scale, cb, eqx.tree_at(lambda m: m.bias, _zeroed(cb.hidden_to_scale), jnp.full((Z,), np.log(np.expm1(0.4 - 1e-3)))))
    rnn = jax.tree.map(jnp.zeros_like, net.rnn)
    return eqx.tree_at(lambda n: (n.transition, n.emission, n.combiner, n.rnn, n.z0), net, (tr, em, cb, rnn, jnp.asarray(z0, jnp.float32)))


def _dense_lead_predictive(A, b, q, C, d, r, z0, y, mask, delta, lead):
    """Oracle: log p(y_k^obs | y_j^obs, j <= k - lead) of the linear-Gaussian model, by dense
    conditioning of the joint Gaussian of all states and observations (no recursion)."""
    eye = np.eye(Z)
    arrays = SimpleNamespace(
        # transition[t] maps step t to t + 1 with the gap delta[t + 1] (the last one is unused)
        transition=np.stack([eye + delta[min(t + 1, T - 1)] * A for t in range(T)]),
        transition_cov=q**2 * eye,
        transition_offset=np.stack([delta[min(t + 1, T - 1)] * b for t in range(T)]),
        observation=C, observation_cov=r**2 * np.eye(D), observation_offset=d,
    )
    mu, cov, _ = joint_moments(arrays, z0 + delta[0] * (A @ z0 + b), q**2 * eye, T)
    index = T * Z + np.arange(T * D).reshape(T, D)  # position of y_{t, d} in the joint vector
    out = np.zeros(T)
    for k in range(T):
        past = slice(0, max(k - lead + 1, 0))  # the steps j <= k - lead
        mean, var = condition(mu, cov, index[k][mask[k]], index[past][mask[past]], y[past][mask[past]])
        out[k] = gaussian_logpdf(y[k][mask[k]], mean, var)
    return out


@pytest.mark.parametrize(("lead", "tolerance"), [(3, 0.2), (20, 0.08)])
def test_lead_predictive_density_matches_the_dense_oracle_of_a_linear_gaussian_model(lead, tolerance):
    """With lead L the filter reports log p(y_k | y_{<=k-L}); for L >= k + 1 (here L = 20 > T) the
    marginal log p(y_k). A linear-Gaussian network has these in closed form (dense conditioning)."""
    A = np.array([[-0.1, 0.3], [-0.3, -0.1]])  # a damped rotation
    b, z0 = np.array([0.05, -0.02]), np.array([1.0, -0.5])
    C = np.array([[1.0, 0.5], [-0.4, 1.0], [0.3, 0.3]])
    d = np.array([0.2, -0.1, 0.0])
    q, r = 0.3, 0.8
    net = _linear_gaussian_network(A, b, q, C, d, r, z0)
    batch = _batch(B=1, seed=3, missing=0.3)
    rng = np.random.default_rng(4)
    delta, z, y = np.asarray(batch.delta[0], float), z0, np.zeros((T, D))
    for k in range(T):  # data drawn from the model itself
        z = z + delta[k] * (A @ z + b) + q * rng.normal(size=Z)
        y[k] = C @ z + d + r * rng.normal(size=D)
    mask = np.asarray(batch.mask[0]).copy()
    mask[5] = False  # a step with nothing observed: its score is 0
    ref = _dense_lead_predictive(A, b, q, C, d, r, z0, y, mask, delta, lead)
    copies = 4  # independent filters (series b uses its own key), 2048 particles each
    batch = svi.as_batch(np.repeat(y[None], copies, 0), np.repeat(mask[None], copies, 0),
                         np.repeat(delta[None], copies, 0), np.ones((copies, T), bool))
    got = np.asarray(svi.batch_filter(net, batch, jax.random.key(0), 2048, lead).log_predictive, float)
    assert np.all(got[:, 5] == 0.0) and ref[5] == 0.0
    # Monte Carlo error of the mean of the 4 estimates, largest over the 12 steps, measured for
    # keys 0-9: at most 0.12 (lead 3, the filtered particles carry the filter's error) and 0.05
    # (lead 20: the prior only). A lead off by one moves steps by up to 0.25 (3 vs 4) and 0.13
    # (20 vs 4).
    np.testing.assert_allclose(got.mean(axis=0), ref, atol=tolerance)


def test_lead_one_is_the_one_step_score_and_leads_leave_the_filter_unchanged():
    net, batch = _net(seed=4), _batch(B=2, missing=0.5)
    one = svi.batch_filter(net, batch, jax.random.key(0), K)
    three = svi.batch_filter(net, batch, jax.random.key(0), K, 3)
    np.testing.assert_array_equal(np.asarray(one.log_predictive), np.asarray(one.log_increments))
    # the lead's clouds draw their own noise: the filter itself is identical to the last bit
    for name in ("log_increments", "pending", "pred_mean", "pred_var", "z", "log_weights"):
        np.testing.assert_array_equal(np.asarray(getattr(three, name)), np.asarray(getattr(one, name)))
    assert not np.allclose(np.asarray(three.log_predictive), np.asarray(one.log_predictive))
    with pytest.raises(ValueError, match="lead"):
        svi.batch_filter(net, batch, jax.random.key(0), K, 0)


def test_particle_bound_is_tighter_than_the_elbo_and_sums_up():
    net, batch = _net(seed=4), _batch(B=2, missing=0.5)
    batch = batch._replace(mask=batch.mask.copy())
    batch.mask[0, 4] = False  # a step with nothing observed reports 0; its estimate moves to step 5
    f = svi.batch_filter(net, batch, jax.random.key(0), K)
    inc = np.asarray(f.log_increments)
    assert inc[0, 4] == 0.0 and np.all(np.isfinite(inc))
    elbo = np.mean([np.asarray(svi.batch_elbo(net, batch, jax.random.key(i))) for i in range(20)], axis=0)
    # SMC with 16 particles vs a 20-draw ELBO average: the particle bound is the tighter one; the
    # gap of this untrained network (about 4 nats per series) is far above the Monte Carlo error
    assert np.all(inc.sum(axis=1) + np.asarray(f.pending) > elbo + 0.5)


def test_rollout_shapes_and_weights():
    net = _net()
    z = jnp.stack([jnp.zeros((4, Z)), jnp.ones((4, Z))])
    logw = jnp.log(jnp.array([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]) + 1e-30)  # all weight on one particle
    draws, means = svi.batch_rollout(net, z, logw, jnp.ones((2, 5)), jax.random.key(0), 7)
    assert draws.shape == means.shape == (2, 7, 5, D)
    assert np.all(np.isfinite(np.asarray(draws)))


def test_network_leaves_round_trip():
    net = _net()
    leaves = svi.network_leaves(net)
    other = svi.network_from_leaves(_net(seed=1), [np.asarray(x) for x in leaves])
    batch = _batch()
    np.testing.assert_array_equal(
        np.asarray(svi.batch_elbo(other, batch, jax.random.key(0))), np.asarray(svi.batch_elbo(net, batch, jax.random.key(0)))
    )


def test_fit_with_validation_series_of_another_length():
    net, train = _net(), _batch(B=2)
    rng = np.random.default_rng(2)
    valid = svi.as_batch(rng.normal(size=(3, T + 5, D)), np.ones((3, T + 5, D), bool), np.ones((3, T + 5)),
                         np.arange(T + 5)[None, :] < np.array([[T + 5], [T], [4]]))
    result = svi.fit(net, train, valid, batch_size=2, max_epochs=3, learning_rate=1e-3, seed=0)
    assert [h["epoch"] for h in result.history] == [0, 1, 2] and result.num_updates == 3
    assert all(np.isfinite(h["valid"]) for h in result.history) and result.stopped == "max_epochs"
    # a network of the same structure on batches of the same shape reuses the compiled update
    again = svi.fit(_net(seed=1), train, valid, batch_size=2, max_epochs=1, learning_rate=1e-3, seed=0)
    assert again.compile_seconds < 0.1


def test_fit_weight_decay_and_learning_rate_decay():
    """With a huge L2 weight the gradient is ``weight_decay * w`` almost exactly (the ELBO's is
    clipped to norm 10), so Adam moves every weight by ``lr * sign(w)`` per update (its first
    steps are normalised), and by ``lr * lr_decay`` on the second update: after two updates
    ``|w|`` shrinks by ``lr * (1 + lr_decay)``. Weights with ``|w| > 1e-3`` change their gradient by
    under 1% between the updates (lr 1e-5), hence the tolerance."""
    net, train = _net(), _batch(B=2)
    lr, decay = 1e-5, 0.5
    result = svi.fit(net, train, batch_size=2, max_epochs=2, learning_rate=lr, weight_decay=1e6, lr_decay=decay, seed=0)
    assert result.num_updates == 2
    before = np.concatenate([np.ravel(x) for x in svi.network_leaves(net)])
    after = np.concatenate([np.ravel(x) for x in svi.network_leaves(result.network)])
    big = np.abs(before) > 1e-3
    np.testing.assert_allclose((np.abs(before) - np.abs(after))[big], lr * (1 + decay), rtol=0.02)
