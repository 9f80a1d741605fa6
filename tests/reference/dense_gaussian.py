"""Slow, obviously-correct dense-Gaussian oracle for linear-Gaussian state-space models.

Nothing here runs a Kalman recursion. The whole vector ``z = (x_0, ..., x_{T-1}, y_0, ..., y_{T-1})``
is written as an explicit affine map of independent Gaussian noises,

    x_0 = m0 + xi,                      xi    ~ N(0, P0)
    x_{t+1} = F_t x_t + c_t + eta_t,    eta_t ~ N(0, Q_t)
    y_t = H_t x_t + d_t + eps_t,        eps_t ~ N(0, R_t)

so ``z = mu + L w`` with ``w`` block-diagonal; its covariance is ``L W L^T``. Every quantity the
kernels return is then a textbook Gaussian conditional of ``z`` given the observed entries of ``y``:

* log marginal density of the observed entries;
* smoothed moments ``x_t | y_obs`` (and the joint posterior of all states);
* filtered ``x_t | y_obs(<= t)`` and predicted ``x_t | y_obs(< t)`` moments;
* one-step-ahead predictive log-densities ``log p(y_obs,t | y_obs(< t))``.

Diffuse prior ``x_0 = m0 + B delta + xi`` with a flat prior on ``delta``: :func:`diffuse_limit`
evaluates the proper oracle with ``delta ~ N(0, kappa I)`` and takes ``kappa -> infinity``. The
flat prior is the limit of ``(2 pi kappa)^{K/2} N(delta; 0, kappa I)``, so the diffuse
log-likelihood is ``lim [log p_kappa(y) + (K/2) log(2 pi kappa)]``. Every quantity that has a
limit is analytic in ``1/kappa``, so the limit is taken by Richardson extrapolation from
``kappa`` and ``2 kappa`` (error O(1/kappa^2) instead of O(1/kappa)); a second extrapolation
from ``2 kappa`` and ``4 kappa`` gives an estimate of the remaining error. :func:`diffuse_limit`
scans kappa over a grid and keeps, entry by entry, the value with the smallest estimated error
(large kappa loses digits to cancellation in the dense conditioning, small kappa is not converged).

Identifiability of ``delta`` (the kernels' ``valid`` flag) is decided independently: ``delta`` is
identified by a set of observations iff the sensitivity of their mean to ``delta`` has rank K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)
_NAMES = ("transition", "transition_cov", "transition_offset", "observation", "observation_cov", "observation_offset")
_STATIC_NDIM = (2, 2, 1, 2, 2, 1)


def system_at(arrays, t: int):
    """``(F, Q, c, H, R, d)`` at step t as float64 NumPy arrays (time-invariant arrays broadcast)."""
    out = []
    for name, nd in zip(_NAMES, _STATIC_NDIM):
        a = np.asarray(getattr(arrays, name), dtype=np.float64)
        out.append(a[t] if a.ndim == nd + 1 else a)
    return tuple(out)


def joint_moments(arrays, mean0, cov0, num_steps: int, diffuse=None):
    """Mean and covariance of ``z = (x_0..x_{T-1}, y_0..y_{T-1})``, plus ``dmu/ddelta`` (T*(N+D), K).

    Built from the explicit map ``z = mu + L w`` with a loop over (t, s) pairs; O((T(N+D))^2).
    """
    mean0 = np.asarray(mean0, np.float64)
    cov0 = np.asarray(cov0, np.float64)
    N = mean0.shape[0]
    D = system_at(arrays, 0)[3].shape[0]
    T = num_steps
    K = 0 if diffuse is None else np.asarray(diffuse).shape[1]
    systems = [system_at(arrays, t) for t in range(T)]

    # Noise vector w = (xi, eta_0..eta_{T-2}, eps_0..eps_{T-1}) and its block-diagonal covariance.
    num_w = N + (T - 1) * N + T * D
    W = np.zeros((num_w, num_w))
    W[:N, :N] = cov0
    for t in range(T - 1):
        i = N + t * N
        W[i : i + N, i : i + N] = systems[t][1]
    for t in range(T):
        i = N + (T - 1) * N + t * D
        W[i : i + D, i : i + D] = systems[t][4]

    # Phi[t][s] = F_{t-1} ... F_s (state transition from step s to step t), Phi[t][t] = I.
    Phi = [[None] * T for _ in range(T)]
    for s in range(T):
        Phi[s][s] = np.eye(N)
        for t in range(s + 1, T):
            Phi[t][s] = systems[t - 1][0] @ Phi[t - 1][s]

    dim = T * (N + D)
    mu = np.zeros(dim)
    L = np.zeros((dim, num_w))
    sens = np.zeros((dim, K))
    # States: x_t = Phi[t][0] (m0 + B delta + xi) + sum_{s<t} Phi[t][s+1] (c_s + eta_s).
    for t in range(T):
        rows = slice(t * N, (t + 1) * N)
        mu[rows] = Phi[t][0] @ mean0 + sum((Phi[t][s + 1] @ systems[s][2] for s in range(t)), np.zeros(N))
        L[rows, :N] = Phi[t][0]
        for s in range(t):
            L[rows, N + s * N : N + (s + 1) * N] = Phi[t][s + 1]
        if K:
            sens[rows] = Phi[t][0] @ np.asarray(diffuse, np.float64)
    # Observations: y_t = H_t x_t + d_t + eps_t.
    for t in range(T):
        H, d = systems[t][3], systems[t][5]
        rows = slice(T * N + t * D, T * N + (t + 1) * D)
        xrows = slice(t * N, (t + 1) * N)
        mu[rows] = H @ mu[xrows] + d
        L[rows] = H @ L[xrows]
        L[rows, N + (T - 1) * N + t * D : N + (T - 1) * N + (t + 1) * D] = np.eye(D)
        sens[rows] = H @ sens[xrows]
    return mu, L @ W @ L.T, sens


def gaussian_logpdf(x, mean, cov) -> float:
    """log N(x; mean, cov) via a Cholesky factor; 0 for an empty vector."""
    n = x.shape[0]
    if n == 0:
        return 0.0
    chol = np.linalg.cholesky(0.5 * (cov + cov.T))
    z = np.linalg.solve(chol, x - mean)
    return float(-0.5 * (n * LOG_2PI + 2.0 * np.sum(np.log(np.diag(chol))) + z @ z))


def condition(mu, cov, target, given, values):
    """Moments of ``z[target] | z[given] = values`` (plain Gaussian conditioning)."""
    if len(given) == 0:
        return mu[target].copy(), cov[np.ix_(target, target)].copy()
    S = cov[np.ix_(given, given)]
    C = cov[np.ix_(target, given)]
    gain = np.linalg.solve(S, C.T).T
    mean = mu[target] + gain @ (values - mu[given])
    out = cov[np.ix_(target, target)] - gain @ C.T
    return mean, 0.5 * (out + out.T)


@dataclass
class DenseResult:
    """All oracle quantities; ``*_cov`` are (T, N, N), ``predictive_logpdf`` is (T,)."""

    log_marginal: float
    smoothed_mean: np.ndarray
    smoothed_cov: np.ndarray
    filtered_mean: np.ndarray
    filtered_cov: np.ndarray
    predicted_mean: np.ndarray
    predicted_cov: np.ndarray
    predictive_logpdf: np.ndarray
    predictive_obs_mean: np.ndarray  # (T, D) mean of the whole y_t given y_obs(< t)
    predictive_obs_cov: np.ndarray  # (T, D, D)
    joint_mean: np.ndarray  # (T*N,) posterior mean of all states stacked
    joint_cov: np.ndarray  # (T*N, T*N) posterior covariance of all states stacked


def dense_posterior(arrays, mean0, cov0, y, mask, per_step: bool = True) -> DenseResult:
    """Every conditional of the proper-prior model, by dense conditioning.

    ``per_step=False`` skips the filtered, predicted and predictive quantities (NaN), which cost
    one conditioning per step.
    """
    y = np.asarray(y, np.float64)
    mask = np.asarray(mask, bool)
    T, D = y.shape
    N = np.asarray(mean0).shape[0]
    mu, cov, _ = joint_moments(arrays, mean0, cov0, T)
    obs_index = T * N + np.arange(T * D).reshape(T, D)

    def observed(upto):  # indices and values of the observed y_s for s < upto
        sel = mask[:upto]
        return obs_index[:upto][sel], y[:upto][sel]

    all_idx, all_val = observed(T)
    log_marginal = gaussian_logpdf(all_val, mu[all_idx], cov[np.ix_(all_idx, all_idx)])
    states = np.arange(T * N)
    joint_mean, joint_cov = condition(mu, cov, states, all_idx, all_val)

    def conditionals(upto_of_t):
        means, covs = np.zeros((T, N)), np.zeros((T, N, N))
        for t in range(T):
            idx, val = observed(upto_of_t(t))
            means[t], covs[t] = condition(mu, cov, np.arange(t * N, (t + 1) * N), idx, val)
        return means, covs

    if per_step:
        filtered_mean, filtered_cov = conditionals(lambda t: t + 1)
        predicted_mean, predicted_cov = conditionals(lambda t: t)
    else:
        filtered_mean = predicted_mean = np.full((T, N), np.nan)
        filtered_cov = predicted_cov = np.full((T, N, N), np.nan)
    predictive = np.zeros(T) if per_step else np.full(T, np.nan)
    obs_mean, obs_cov = np.full((T, D), np.nan), np.full((T, D, D), np.nan)
    for t in range(T if per_step else 0):
        idx, val = observed(t)
        obs_mean[t], obs_cov[t] = condition(mu, cov, obs_index[t], idx, val)
        sel = mask[t]
        predictive[t] = gaussian_logpdf(y[t][sel], obs_mean[t][sel], obs_cov[t][np.ix_(sel, sel)])
    smoothed_mean = joint_mean.reshape(T, N)
    smoothed_cov = np.stack([joint_cov[t * N : (t + 1) * N, t * N : (t + 1) * N] for t in range(T)])
    return DenseResult(
        log_marginal,
        smoothed_mean,
        smoothed_cov,
        filtered_mean,
        filtered_cov,
        predicted_mean,
        predicted_cov,
        predictive,
        obs_mean,
        obs_cov,
        joint_mean,
        joint_cov,
    )


def dense_log_marginal(arrays, mean0, cov0, y, mask) -> float:
    """Just the log density of the observed entries of y (cheaper than :func:`dense_posterior`)."""
    y = np.asarray(y, np.float64)
    mask = np.asarray(mask, bool)
    T, D = y.shape
    N = np.asarray(mean0).shape[0]
    mu, cov, _ = joint_moments(arrays, mean0, cov0, T)
    idx = (T * N + np.arange(T * D).reshape(T, D))[mask]
    return gaussian_logpdf(y[mask], mu[idx], cov[np.ix_(idx, idx)])


def diffuse_log_marginal(arrays, mean0, cov0, diffuse, y, mask, kappa: float = 1e6) -> float:
    """Kappa-limit of ``log p_kappa(y) + (K/2) log(2 pi kappa)`` (Richardson from kappa, 2 kappa)."""
    B = np.asarray(diffuse, np.float64)
    K = B.shape[1]

    def at(k):
        cov = np.asarray(cov0, np.float64) + k * B @ B.T
        return dense_log_marginal(arrays, mean0, cov, y, mask) + 0.5 * K * np.log(2.0 * np.pi * k)

    return 2.0 * at(2.0 * kappa) - at(kappa)


@dataclass
class DiffuseResult:
    """Kappa-limit of :class:`DenseResult` plus identifiability flags and an error estimate."""

    limit: DenseResult
    error: DenseResult  # estimated absolute error of each entry of ``limit`` (see diffuse_limit)
    identified_filtered: np.ndarray  # (T,) delta identified by y_obs(<= t)
    identified_predicted: np.ndarray  # (T,) delta identified by y_obs(< t)
    identified_all: bool
    delta_sensitivity: np.ndarray  # (T, D, K): d E[y_t] / d delta


def diffuse_limit(arrays, mean0, cov0, diffuse, y, mask, kappas=None, per_step: bool = True) -> DiffuseResult:
    """The flat-prior limit of :func:`dense_posterior` with prior cov ``cov0 + kappa B B^T``.

    ``log_marginal`` includes the ``(K/2) log(2 pi kappa)`` correction (see the module docstring).
    For each ``kappa`` in ``kappas`` (default ``10^2 .. 10^9.5``, half-decade steps) the limit is
    extrapolated twice, from (kappa, 2 kappa) and from (2 kappa, 4 kappa); their difference
    estimates the error. Too small a kappa leaves truncation error, too large a one loses digits
    to cancellation, so every entry takes the kappa whose error estimate (the worst over it and
    its two grid neighbours, to avoid lucky agreements) is smallest; ``error`` holds that estimate.
    Quantities that diverge (states not identified yet) have no limit; consult the flags.
    """
    B = np.asarray(diffuse, np.float64)
    K = B.shape[1]
    cov0 = np.asarray(cov0, np.float64)
    mask = np.asarray(mask, bool)
    kappas = 10.0 ** np.arange(2.0, 10.0, 0.5) if kappas is None else np.asarray(kappas, np.float64)

    def at(k):
        res = dense_posterior(arrays, mean0, cov0 + k * B @ B.T, y, mask, per_step=per_step)
        res.log_marginal += 0.5 * K * np.log(2.0 * np.pi * k)
        return res

    fields = list(DenseResult.__dataclass_fields__)
    limits, errors = {f: [] for f in fields}, {f: [] for f in fields}
    for k in kappas:
        r1, r2, r4 = at(k), at(2.0 * k), at(4.0 * k)
        for f in fields:
            a, b, c = (np.asarray(getattr(r, f), np.float64) for r in (r1, r2, r4))
            e12, e24 = 2.0 * b - a, 2.0 * c - b  # f(kappa) = f_inf + a / kappa + O(kappa^-2)
            limits[f].append(e24)
            errors[f].append(np.abs(e24 - e12))
    best, best_err = {}, {}
    for f in fields:
        lim, err = np.stack(limits[f]), np.stack(errors[f])
        err = np.where(np.isfinite(err), err, np.inf)
        padded = np.concatenate([err[:1], err, err[-1:]])
        robust = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
        j = np.argmin(robust, axis=0)
        best[f] = np.take_along_axis(lim, j[None], 0)[0]
        best_err[f] = np.take_along_axis(robust, j[None], 0)[0]
    limit = DenseResult(**{f: best[f] if best[f].ndim else float(best[f]) for f in fields})
    error = DenseResult(**{f: best_err[f] if best_err[f].ndim else float(best_err[f]) for f in fields})

    T, D = np.asarray(y).shape
    N = B.shape[0]
    _, _, sens = joint_moments(arrays, mean0, cov0, T, diffuse=B)
    ysens = sens[T * N :].reshape(T, D, K)

    def identified(upto):
        rows = ysens[:upto][mask[:upto]]
        return bool(rows.shape[0] >= K and np.linalg.matrix_rank(rows) == K)

    return DiffuseResult(
        limit=limit,
        error=error,
        identified_filtered=np.array([identified(t + 1) for t in range(T)]),
        identified_predicted=np.array([identified(t) for t in range(T)]),
        identified_all=identified(T),
        delta_sensitivity=ysens,
    )
