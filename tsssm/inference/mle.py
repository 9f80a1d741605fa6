r"""Maximum-likelihood estimation of linear-Gaussian state-space models.

The objective is the exact (diffuse) log-likelihood of :func:`tsssm.kernels.kalman.log_likelihood`.
Free parameters live in one unconstrained vector :math:`\theta`; each
:class:`~tsssm.models.constraints.ParamSpec` maps its slice to the constrained value. BFGS
with Armijo backtracking minimises :math:`-\log L(\theta) / n` entirely inside one jitted
``while_loop`` that traces the objective once: it is compiled once per model structure and data
shape, so a refit on new data of the same shape costs only the iterations. If it stops short of
a stationary point, SciPy's BFGS on the same jitted value-and-gradient takes over from there.
Gradients are forward-mode for a handful of parameters, reverse-mode above
(:data:`FORWARD_GRADIENT_MAX_PARAMS`). Standard errors come from the inverse of the observed
information, the Hessian of
:math:`-\log L` with respect to the *constrained* free parameters at the optimum.

Panels of series are fitted in two ways: :func:`fit_many` gives every series its own
parameters; :func:`fit_pooled` gives all of them one shared parameter vector and maximises the
joint log-likelihood of independent series,
:math:`\log L(\theta) = \sum_b \log L_b(\theta)` (:func:`pooled_log_likelihood`), with the
same BFGS, polishing and standard errors as a single series.
"""

from __future__ import annotations

import collections
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from tsssm._config import jit
from tsssm.errors import ConvergenceWarning, DataError, NumericalError
from tsssm.kernels import kalman
from tsssm.models.constraints import ParamSpec, constrain, unconstrain, unconstrained_shape


class ParamLayout(eqx.Module):
    """How the free parameters of a model sit in the flat vector; fixed ones are held aside.

    ``free`` and ``fixed`` are tuples of :class:`ParamSpec` (static); ``fixed_values`` holds the
    constrained values of the fixed parameters (dynamic, so changing them does not recompile).
    """

    free: tuple = eqx.field(static=True)
    fixed: tuple = eqx.field(static=True)
    fixed_values: dict

    @classmethod
    def build(cls, specs: tuple[ParamSpec, ...], fixed_params: dict | None) -> "ParamLayout":
        fixed_params = dict(fixed_params or {})
        names = [s.name for s in specs]
        unknown = sorted(set(fixed_params) - set(names))
        if unknown:
            raise DataError(f"fixed_params names {unknown} are not parameters of this model; its parameters are {names}")
        fixed = tuple(s for s in specs if s.name in fixed_params)
        values = {}
        for s in fixed:
            value = np.asarray(fixed_params[s.name], float)
            if value.shape != tuple(s.shape):
                raise DataError(f"fixed_params[{s.name!r}] must have shape {tuple(s.shape)}, got {value.shape}")
            values[s.name] = jnp.asarray(value)
        return cls(tuple(s for s in specs if s.name not in fixed_params), fixed, values)

    @property
    def size(self) -> int:
        return int(sum(np.prod(unconstrained_shape(s), dtype=int) for s in self.free))

    def constrained(self, theta) -> dict:
        """Unconstrained flat vector -> dict of constrained values (fixed ones included)."""
        out, start = dict(self.fixed_values), 0
        for s in self.free:
            shape = unconstrained_shape(s)
            size = int(np.prod(shape, dtype=int))
            out[s.name] = constrain(s, theta[start : start + size].reshape(shape))
            start += size
        return out

    def unconstrained(self, params: dict) -> np.ndarray:
        """Dict of constrained values -> unconstrained flat vector of the free parameters."""
        parts = [np.ravel(unconstrain(s, params[s.name])) for s in self.free]
        return np.concatenate(parts) if parts else np.zeros(0)

    def flat_constrained(self, params: dict) -> np.ndarray:
        """The free parameters' constrained values as one flat vector (for standard errors)."""
        parts = [np.ravel(np.asarray(params[s.name], float)) for s in self.free]
        return np.concatenate(parts) if parts else np.zeros(0)

    def from_flat_constrained(self, flat) -> dict:
        out, start = dict(self.fixed_values), 0
        for s in self.free:
            size = int(np.prod(s.shape, dtype=int))
            out[s.name] = flat[start : start + size].reshape(s.shape)
            start += size
        return out

    def labels(self) -> list[str]:
        """One label per element of the free constrained vector."""
        out = []
        for s in self.free:
            size = int(np.prod(s.shape, dtype=int))
            if size == 1 and not s.shape:
                out.append(s.name)
            elif s.labels:
                out.extend(s.labels)
            else:
                out.extend(f"{s.name}[{','.join(map(str, idx))}]" for idx in np.ndindex(*s.shape))
        return out


class SeriesData(NamedTuple):
    """One series as the kernels see it: times (T,), values (T, D), mask (T, D), inputs (T, U) or None."""

    times: jax.Array
    values: jax.Array
    mask: jax.Array
    inputs: jax.Array | None


#: Series length from which :func:`log_likelihood` takes the kernel's steady-state switch (see
#: its docstring for the trade-off).
STEADY_STATE_MIN_STEPS = 100_000
# Largest max |gradient| of the mean negative log-likelihood (unconstrained scale) accepted as an
# optimum when round-off stops the search before ``gtol``; SciPy's BFGS takes over above it.
CONVERGED_GRADIENT = 1e-4


def log_likelihood(model, params: dict, data: SeriesData) -> jax.Array:
    """Exact diffuse log-likelihood of ``data`` under ``model`` with constrained ``params``.

    Series of at least ``STEADY_STATE_MIN_STEPS`` steps take the kernel's steady-state switch for
    the value; derivatives (fits, NUTS, standard errors) always come from the plain recursion
    (:func:`tsssm.kernels.kalman.log_likelihood`), so the switch only changes value-only calls
    (``score``, a fit with every parameter fixed, per-draw likelihoods). It runs much faster
    per step but compiles slower, which pays back on long series or repeated calls. Measured on
    the 2-core box (compiled with :func:`tsssm._config.compiler_options`), compile and warm run
    of the value, plain recursion vs switch:

    ============================  ===================  ====================
    model, steps                  plain: compile, run  switch: compile, run
    ============================  ===================  ====================
    local level, 100,000          0.1 s, 2.5 ms        0.6 s, 0.4-1.0 ms
    LLT + seasonal 12, 20,000     0.2 s, 51 ms         1.1 s, 2.0 ms
    LLT + seasonal 12, 100,000    0.2 s, 255 ms        1.1 s, 2.4-2.9 ms
    ============================  ===================  ====================
    """
    arrays, init = model.system(params, data.times, data.inputs)
    steady = data.values.shape[0] >= STEADY_STATE_MIN_STEPS
    return kalman.log_likelihood(arrays, init, data.values, data.mask, steady_state=steady)


def pooled_log_likelihood(model, params: dict, data: SeriesData) -> jax.Array:
    r"""Joint log-likelihood of independent series sharing ``params``: :math:`\sum_b \log L_b`.

    ``data`` arrays carry a leading series axis B (series padded at the end with masked steps,
    which change no series' likelihood); each series has its own initial state (diffuse parts
    integrated out per series) and the per-series :func:`log_likelihood` values are summed.
    """
    return jnp.sum(jax.vmap(lambda d: log_likelihood(model, params, d))(data))


#: Gradients with at most this many free parameters are taken in forward mode (one pass that
#: carries one tangent per parameter): the program has no reverse scan, so it compiles 1.5-2.5x
#: faster (Nile local level: 2.9 s -> 1.1 s under load) and runs faster for the local level.
#: Above it, reverse mode, whose cost does not grow with the parameters: with 4 parameters and 13
#: states (co2's trend + seasonal) forward mode ran the BFGS ~1.6x slower.
FORWARD_GRADIENT_MAX_PARAMS = 3
#: The observed information is a forward-over-forward Hessian up to this many free parameters
#: (about 3x faster to compile than forward-over-reverse for the local level); above it the
#: k^2 tangents cost more than the reverse pass saves.
FORWARD_HESSIAN_MAX_PARAMS = 3


def _value_and_grad(fn, theta):
    """``(fn(theta), grad fn(theta))`` for a scalar ``fn`` of a flat vector; see :data:`FORWARD_GRADIENT_MAX_PARAMS`."""
    if theta.shape[0] <= FORWARD_GRADIENT_MAX_PARAMS:

        def value_twice(t):  # the value rides along as the (unbatched) auxiliary output
            value = fn(t)
            return value, value

        grad, value = jax.jacfwd(value_twice, has_aux=True)(theta)
        return value, grad
    return jax.value_and_grad(fn)(theta)


class _BFGSState(NamedTuple):
    x: jax.Array  # accepted point
    value: jax.Array
    grad: jax.Array
    inv_hess: jax.Array
    direction: jax.Array
    step: jax.Array  # trial step length along ``direction``
    iterations: jax.Array
    evaluations: jax.Array
    stalled: jax.Array  # the last accepted step decreased the objective only by round-off


def _bfgs_loop(model, layout: ParamLayout, theta0, data: SeriesData, scale, maxiter, gtol, loglik=log_likelihood):
    """BFGS with Armijo backtracking, as one ``while_loop`` (jitted by :func:`_bfgs`, vmapped by :func:`_bfgs_many`).

    Each pass of the loop evaluates the objective and its gradient at exactly one trial point
    and either accepts it (BFGS update of the inverse Hessian, new direction) or halves the
    step. The objective is traced once, which keeps compilation short: this is the program a
    user waits for on a first fit. ``loglik(model, params, data)`` is the objective's
    log-likelihood (:func:`log_likelihood`, or :func:`pooled_log_likelihood` for a pooled panel;
    static: one compilation per function). Returns ``(theta, iterations, value, gradient)``.
    """

    def value_and_grad(th):
        return _value_and_grad(lambda t: -loglik(model, layout.constrained(t), data) / scale, th)

    n = theta0.shape[0]
    eye = jnp.eye(n, dtype=theta0.dtype)
    inf = jnp.asarray(jnp.inf, theta0.dtype)

    def keep_going(st: _BFGSState):
        not_done = (st.iterations == 0) | (jnp.max(jnp.abs(st.grad)) >= gtol)
        budget = (st.iterations < maxiter) & (st.evaluations < 20 * maxiter)
        return not_done & budget & (st.step > 1e-12) & ~st.stalled

    def body(st: _BFGSState) -> _BFGSState:
        trial = st.x + st.step * st.direction
        value, grad = value_and_grad(trial)
        slope = st.direction @ st.grad
        first = st.iterations == 0
        accept = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & (first | (value <= st.value + 1e-4 * st.step * slope))
        s_vec, y_vec = trial - st.x, grad - st.grad
        sy = s_vec @ y_vec
        curved = sy > 1e-10 * jnp.sqrt((s_vec @ s_vec) * (y_vec @ y_vec))
        # Scale the first inverse Hessian by the curvature seen on the first step (Nocedal &
        # Wright, eq. 6.20); before any step, move a unit distance along the steepest descent.
        scaled = eye * sy / jnp.maximum(y_vec @ y_vec, 1e-300)
        base = jnp.where((st.iterations == 1) & curved, scaled, st.inv_hess)
        rho = 1.0 / jnp.where(curved, sy, 1.0)
        left = eye - rho * jnp.outer(s_vec, y_vec)
        updated = left @ base @ left.T + rho * jnp.outer(s_vec, s_vec)
        unit = eye / jnp.maximum(jnp.linalg.norm(grad), 1e-12)
        inv_hess = jnp.where(first, unit, jnp.where(curved, updated, base))
        new_direction = -inv_hess @ grad
        new_direction = jnp.where(new_direction @ grad < 0, new_direction, -unit @ grad)
        stalled = ~first & (st.value - value <= 1e-14 * (1.0 + jnp.abs(value)))
        accepted = _BFGSState(
            trial, value, grad, inv_hess, new_direction, jnp.ones_like(st.step), st.iterations + 1, st.evaluations + 1, stalled
        )
        backtracked = st._replace(step=0.5 * st.step, evaluations=st.evaluations + 1)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), accepted, backtracked)

    start = _BFGSState(theta0, inf, jnp.zeros_like(theta0), eye, jnp.zeros_like(theta0), jnp.ones((), theta0.dtype),
                       jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), jnp.asarray(False))
    final = jax.lax.while_loop(keep_going, body, start)
    return final.x, final.iterations, final.value, final.grad


_bfgs = jit(_bfgs_loop)

#: How often each batched program was traced (each trace is one compilation); read by the tests.
TRACE_COUNTS: collections.Counter = collections.Counter()


@jit
def _bfgs_many(model, layout: ParamLayout, theta0, data: SeriesData, scale, maxiter, gtol):
    """:func:`_bfgs_loop` vmapped over a leading series axis of ``theta0``, ``data`` and ``scale``.

    Under ``vmap`` the loop runs until the slowest series stops; finished series keep their
    state (the batched ``while_loop`` selects per series).
    """
    TRACE_COUNTS["bfgs_many"] += 1
    return jax.vmap(lambda th, d, s: _bfgs_loop(model, layout, th, d, s, maxiter, gtol))(theta0, data, scale)


@jit
def over_series(fn, model, params: dict, data: SeriesData, *batched, **static):
    """``fn(model, params_b, data_b, *batched_b, **static)`` for every series b, as one vmapped program.

    ``params`` holds per-series stacked values (leading axis B), ``data`` arrays have a leading
    axis B, and so does every array in ``batched`` (e.g. one random key per series). ``fn`` is a
    module-level function (static: one compilation per function, model and shape).
    """
    TRACE_COUNTS[getattr(fn, "__name__", "over_series")] += 1
    return jax.vmap(lambda p, d, *b: fn(model, p, d, *b, **static))(params, data, *batched)


@jit
def _constrained(layout: ParamLayout, theta):
    """``layout.constrained`` compiled once (eagerly it would compile every small operation)."""
    return layout.constrained(theta)


@jit
def _objective(model, layout: ParamLayout, theta, data: SeriesData, scale, loglik=log_likelihood):
    """Mean negative log-likelihood and its gradient in the unconstrained space."""

    def nll(th):
        return -loglik(model, layout.constrained(th), data) / scale

    return _value_and_grad(nll, theta)


@jit
def _observed_information(model, layout: ParamLayout, flat, data: SeriesData, loglik=log_likelihood):
    """Hessian of -log L with respect to the free constrained parameters."""
    def nll(c):
        return -loglik(model, layout.from_flat_constrained(c), data)

    if flat.shape[0] <= FORWARD_HESSIAN_MAX_PARAMS:
        return jax.jacfwd(jax.jacfwd(nll))(flat)
    return jax.hessian(nll)(flat)


@jit
def _log_likelihood_jit(model, params, data):
    return log_likelihood(model, params, data)


@jit
def _loglik_jit(model, params, data, loglik):
    return loglik(model, params, data)


class MLEResult(NamedTuple):
    """Outcome of :func:`fit`: constrained ``params``, ``log_likelihood``, optimiser diagnostics."""

    params: dict
    log_likelihood: float
    converged: bool
    iterations: int
    message: str


def fit(model, data: SeriesData, *, fixed_params=None, start_params=None, maxiter: int = 1000) -> MLEResult:
    """Maximise the exact diffuse log-likelihood over the free parameters of ``model``.

    Parameters
    ----------
    model : a model following the protocol of :mod:`tsssm.models.lgssm`.
    data : SeriesData
    fixed_params : dict, optional
        Parameters held at the given constrained values. With all of them fixed, no optimisation
        runs: the result just evaluates the likelihood.
    start_params : dict, optional
        Constrained starting values; defaults to ``model.start_params``.
    maxiter : int
        Maximum BFGS iterations.
    """
    layout = ParamLayout.build(model.param_specs(), fixed_params)
    theta0, nobs = _start(model, layout, data, fixed_params, start_params)
    return _maximise(model, layout, data, theta0, nobs, maxiter, log_likelihood)


def fit_pooled(model, data: SeriesData, lengths, *, fixed_params=None, start_params=None, maxiter: int = 1000) -> MLEResult:
    r"""Maximise the joint log-likelihood of B independent series that share one parameter vector.

    .. math::

        \hat\theta = \arg\max_\theta \sum_{b=1}^{B} \log L_b(\theta)

    where :math:`\log L_b` is the exact diffuse log-likelihood of series b (its own Kalman filter
    and initial state), evaluated for all series at once by :func:`pooled_log_likelihood`.

    Parameters
    ----------
    model : a model following the protocol of :mod:`tsssm.models.lgssm`.
    data : SeriesData
        Arrays with a leading series axis, series b in its first ``lengths[b]`` steps (the rest is
        masked padding, which changes no likelihood).
    lengths : sequence of int
        Unpadded length of each series.
    fixed_params, start_params : dict, optional
        As in :func:`fit`. Starting values default to ``model.start_params`` of the series
        concatenated in time, with one missing step between consecutive series.
    maxiter : int
        Maximum BFGS iterations.

    Returns
    -------
    MLEResult
        The shared parameters and the joint log-likelihood.
    """
    layout = ParamLayout.build(model.param_specs(), fixed_params)
    # the series end to end, one masked step after each: what the model's start_params sees
    pieces = [pad_series(data, int(n) + 1, [b]) for b, n in enumerate(lengths)]
    joined = SeriesData(*(None if field[0] is None else np.concatenate([f[0] for f in field]) for field in zip(*pieces)))
    theta0, nobs = _start(model, layout, joined, fixed_params, start_params)
    return _maximise(model, layout, data, theta0, nobs, maxiter, pooled_log_likelihood)


def _maximise(model, layout: ParamLayout, data: SeriesData, theta0, nobs: int, maxiter: int, loglik) -> MLEResult:
    """The BFGS of :func:`fit` and :func:`fit_pooled` from ``theta0`` (objective ``-loglik / nobs``)."""
    scale = jax.device_put(np.float64(nobs))  # device_put: jnp.asarray would compile a conversion
    if layout.size == 0:
        params = _constrained(layout, jnp.zeros(0))
        ll = float(_loglik_jit(model, params, data, loglik))
        _check_finite(ll)
        return MLEResult(_to_numpy(params), ll, True, 0, "all parameters fixed")
    theta, iterations, value, grad = _bfgs(model, layout, jax.device_put(np.asarray(theta0, float)), data, scale, maxiter, GTOL, loglik)
    theta, iterations, value, grad_norm, message = _polish(
        model, layout, data, scale, theta0, (theta, iterations, value, grad), maxiter, loglik
    )
    ll = -value * nobs
    _check_finite(ll, nobs)
    converged = grad_norm < CONVERGED_GRADIENT
    if not converged:
        warnings.warn(
            f"maximum-likelihood optimisation did not converge ({message}; max |gradient| {grad_norm:.2g}); "
            "try other start_params= or a larger maxiter=",
            ConvergenceWarning,
            stacklevel=4,
        )
    return MLEResult(_to_numpy(_constrained(layout, jax.device_put(np.asarray(theta, float)))), ll, converged, iterations, message)


GTOL = 1e-7


def _start(model, layout: ParamLayout, data: SeriesData, fixed_params, start_params) -> tuple[np.ndarray, int]:
    """Unconstrained starting point and number of observed values of one (unpadded) series."""
    start = model.start_params(np.where(np.asarray(data.mask), np.asarray(data.values), np.nan), _np_or_none(data.inputs))
    start |= dict(start_params or {})
    start |= dict(fixed_params or {})
    return layout.unconstrained(start), max(int(np.sum(np.asarray(data.mask))), 1)


def _polish(model, layout: ParamLayout, data: SeriesData, scale, theta0, bfgs_out, maxiter: int, loglik=log_likelihood):
    """Accept the jitted BFGS result, or let SciPy's BFGS take over where it stopped short.

    Returns ``(theta, iterations, value, max |gradient|, message)``; raises
    :class:`NumericalError` if the objective is not finite at ``theta0``.
    """
    theta, iterations, value, grad = bfgs_out
    theta, iterations, value, message = np.asarray(theta), int(iterations), float(value), "BFGS converged"
    grad_norm = float(np.max(np.abs(grad))) if np.isfinite(value) else np.inf
    if grad_norm < CONVERGED_GRADIENT:
        return theta, iterations, value, grad_norm, message

    # Rare: the jitted BFGS stopped far from a stationary point (or left the finite region). SciPy's BFGS takes over; this
    # compiles the value-and-gradient separately, so the common path does not pay for it.
    def fun(th):
        value, grad = _objective(model, layout, jnp.asarray(th), data, scale, loglik)
        value, grad = float(value), np.asarray(grad, float)
        if not np.isfinite(value) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(grad)
        return value, grad

    if not np.isfinite(fun(theta0)[0]):
        raise NumericalError("the log-likelihood is not finite at the starting values; pass start_params= or check the data scale")
    start_again = theta if np.isfinite(fun(theta)[0]) else theta0
    res = scipy.optimize.minimize(fun, start_again, jac=True, method="BFGS", options={"maxiter": maxiter, "gtol": GTOL})
    theta, iterations, message = res.x, iterations + int(res.nit), f"BFGS, then SciPy BFGS: {res.message}"
    value, grad = fun(theta)
    return theta, iterations, value, float(np.max(np.abs(grad))), message


# ---------------------------------------------------------------------- many series
#: Default number of series in one vmapped batch.
BATCH_SIZE = 256
MIN_BUCKET_LENGTH = 8


def bucket_length(n: int) -> int:
    """Padded length for a series of ``n`` steps: the smallest ``2**k`` or ``3 * 2**(k-1)`` >= n.

    The padded lengths form a short geometric ladder (8, 12, 16, 24, 32, 48, ...), so that a
    panel of ragged series compiles once per rung it uses, while padding wastes at most a third.
    """
    size = MIN_BUCKET_LENGTH
    while size < n:
        size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
    return size


def bucket_batch(n: int, batch_size: int = BATCH_SIZE) -> int:
    """Padded number of series of a batch of ``n``: the next power of two, at most ``batch_size``."""
    return min(1 << max(int(n) - 1, 0).bit_length(), int(batch_size))


def pad_series(data: SeriesData, length: int, take=None) -> SeriesData:
    """Series ``take`` of a padded batch (leading axis B) cut or extended to ``length`` steps.

    Steps added past the end are masked, with values and inputs 0 and times continuing by one
    unit per step; with trailing masked steps the Kalman filter gives the same likelihood and
    the same predictions at every earlier step.
    """
    take = np.arange(np.asarray(data.times).shape[0]) if take is None else np.asarray(take)
    times, values, mask = (np.asarray(a)[take] for a in data[:3])
    inputs = None if data.inputs is None else np.asarray(data.inputs)[take]
    extra = length - times.shape[1]
    if extra <= 0:
        return SeriesData(times[:, :length], values[:, :length], mask[:, :length], None if inputs is None else inputs[:, :length])
    more = times[:, -1:] + np.arange(1, extra + 1, dtype=float)
    pad = ((0, 0), (0, extra), (0, 0))
    return SeriesData(
        np.concatenate([times, more], axis=1),
        np.pad(values, pad),
        np.pad(mask, pad),
        None if inputs is None else np.pad(inputs, pad),
    )


def batches(lengths, batch_size: int = BATCH_SIZE):
    """Split series into vmapped batches by :func:`bucket_length`.

    Yields ``(members, length, size)``: the indexes of the series of one batch, their padded
    length and the padded batch size (``>= len(members)``; the first member fills the rest).
    """
    lengths = np.asarray(lengths)
    buckets = np.array([bucket_length(int(n)) for n in lengths])
    for length in np.unique(buckets):
        members = np.flatnonzero(buckets == length)
        for first in range(0, len(members), batch_size):
            part = members[first : first + batch_size]
            yield part, int(length), bucket_batch(len(part), batch_size)


def map_series(fn, model, params: dict, data: SeriesData, lengths, *batched, batch_size: int = BATCH_SIZE, **static) -> list:
    """``fn(model, params_b, data_b, *batched_b, **static)`` for every series, batched like :func:`fit_many`.

    Parameters
    ----------
    fn : callable
        A module-level function of one series (e.g. :func:`tsssm.inference.posterior.predictions`).
    model : the model shared by all series.
    params : dict
        Per-series parameters stacked along a leading axis B.
    data : SeriesData
        Arrays with a leading axis B, series b in its first ``lengths[b]`` steps.
    lengths : sequence of int
        The steps of each series that ``fn`` must see; the rest is masked padding.
    *batched : array_like
        Further per-series arguments with a leading axis B (e.g. random keys).
    batch_size : int
        Most series in one vmapped program.
    **static
        Static keyword arguments of ``fn``.

    Returns
    -------
    list
        Per series, ``fn``'s output (NumPy arrays) at the padded length of its bucket: cut it to
        the steps you need.
    """
    out: list = [None] * len(lengths)
    for members, length, size in batches(lengths, batch_size):
        take = np.concatenate([members, np.full(size - len(members), members[0])])
        batch = SeriesData(*(None if a is None else jnp.asarray(a) for a in pad_series(data, length, take)))
        batch_params = {k: jnp.asarray(np.asarray(v)[take]) for k, v in params.items()}
        extra = [(a if isinstance(a, jax.Array) else jnp.asarray(a))[take] for a in batched]
        result = jax.tree_util.tree_map(np.asarray, over_series(fn, model, batch_params, batch, *extra, **static))
        for i, b in enumerate(members):
            out[b] = jax.tree_util.tree_map(lambda a, i=i: a[i], result)
    return out


def fit_many(
    model, data: SeriesData, lengths, *, fixed_params=None, start_params=None, maxiter: int = 1000,
    batch_size: int = BATCH_SIZE,
) -> list[MLEResult]:
    """:func:`fit` for B series at once: one vmapped, jitted BFGS per batch of similar lengths.

    Parameters
    ----------
    model : a model following the protocol of :mod:`tsssm.models.lgssm` (one structure for all).
    data : SeriesData
        Arrays with a leading series axis: times (B, T), values/mask (B, T, D), inputs (B, T, U)
        or None; series b occupies its first ``lengths[b]`` steps (the rest is masked padding).
    lengths : sequence of int
        Unpadded length of each series.
    fixed_params, start_params : dict, optional
        As in :func:`fit`, shared by all series.
    maxiter : int
        Maximum BFGS iterations per series.
    batch_size : int
        Most series in one vmapped program.

    Returns
    -------
    list of MLEResult
        One per series, in input order. Each series gets its own parameters and its own starting
        values (``model.start_params`` of its own data). A series whose jitted BFGS stopped short
        is polished by SciPy's BFGS alone; a series whose log-likelihood is not finite at its start
        comes back with ``converged=False``, NaN parameters and log-likelihood.

    Notes
    -----
    Series are grouped by :func:`bucket_length` and cut into batches of at most ``batch_size``
    padded to :func:`bucket_batch` series, so compilation happens once per (length, batch)
    bucket used, not once per series.
    """
    layout = ParamLayout.build(model.param_specs(), fixed_params)
    lengths = [int(n) for n in lengths]
    results: list = [None] * len(lengths)
    unpadded = [pad_series(data, n, [b]) for b, n in enumerate(lengths)]
    starts = [_start(model, layout, SeriesData(*(None if a is None else a[0] for a in d)), fixed_params, start_params) for d in unpadded]
    for members, length, size in batches(lengths, batch_size):
        take = np.concatenate([members, np.full(size - len(members), members[0])])
        batch = SeriesData(*(None if a is None else jnp.asarray(a) for a in pad_series(data, length, take)))
        nobs = np.array([starts[b][1] for b in take], float)
        scale = jnp.asarray(nobs)
        if layout.size == 0:
            params = _constrained(layout, jnp.zeros(0))
            stacked = jax.tree_util.tree_map(lambda v, size=size: jnp.broadcast_to(v, (size,) + jnp.shape(v)), params)
            lls = np.asarray(over_series(_log_likelihood_jit, model, stacked, batch))
            for i, b in enumerate(members):
                results[b] = MLEResult(_to_numpy(params), float(lls[i]), bool(np.isfinite(lls[i])), 0, "all parameters fixed")
            continue
        theta0 = np.stack([starts[b][0] for b in take])
        out = [np.asarray(a) for a in _bfgs_many(model, layout, jnp.asarray(theta0), batch, scale, maxiter, GTOL)]
        for i, b in enumerate(members):
            one = SeriesData(*(None if a is None else a[i] for a in batch))
            try:
                theta, iterations, value, grad_norm, message = _polish(
                    model, layout, one, scale[i], theta0[i], tuple(a[i] for a in out), maxiter
                )
            except NumericalError as exc:
                nan = {k: np.full(np.shape(v), np.nan) for k, v in _to_numpy(_constrained(layout, jnp.asarray(theta0[i]))).items()}
                results[b] = MLEResult(nan, np.nan, False, 0, str(exc))
                continue
            params = _to_numpy(_constrained(layout, jnp.asarray(theta)))
            ll = -value * nobs[i]
            results[b] = MLEResult(params, ll, bool(grad_norm < CONVERGED_GRADIENT and np.isfinite(ll)), iterations, message)
    return results


def standard_errors(
    model, params: dict, data: SeriesData, fixed_params=None, loglik=log_likelihood
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, estimates and standard errors of the free parameters (inverse observed information).

    ``loglik`` is :func:`log_likelihood` for one series, :func:`pooled_log_likelihood` for a
    pooled panel (``data`` with a leading series axis).

    Standard errors are NaN where the information matrix is not positive definite, e.g. for a
    variance estimated at its zero boundary or for parameters identified only up to rotation.
    """
    layout = ParamLayout.build(model.param_specs(), fixed_params)
    flat = layout.flat_constrained(params)
    if flat.size == 0:
        return [], flat, flat
    info = np.asarray(_observed_information(model, layout, jnp.asarray(flat), data, loglik))
    info = 0.5 * (info + info.T)
    diag = np.diagonal(info)
    if not (np.all(np.isfinite(info)) and np.all(diag > 0)):
        return layout.labels(), flat, np.full(flat.shape, np.nan)
    # Judge definiteness on the scale-free (correlation-like) matrix: parameters in very
    # different units (a variance of 1e4 next to an AR coefficient) must not look singular.
    scale = 1.0 / np.sqrt(diag)
    eigval = np.linalg.eigvalsh(info * scale[:, None] * scale[None, :])
    if eigval.min() <= 1e-10:
        return layout.labels(), flat, np.full(flat.shape, np.nan)
    cov = np.linalg.inv(info)
    return layout.labels(), flat, np.sqrt(np.clip(np.diagonal(cov), 0.0, None))


#: A Gaussian log density above this many nats per observed value means a variance collapsed
#: to (numerically) zero: the likelihood is unbounded there, not maximised.
MAX_LOG_DENSITY_PER_VALUE = 300.0


def _check_finite(ll: float, nobs: int = 1):
    if not np.isfinite(ll):
        raise NumericalError("the log-likelihood is not finite at the estimated parameters (a covariance may not be positive definite)")
    if ll > MAX_LOG_DENSITY_PER_VALUE * max(nobs, 1):
        raise NumericalError(
            f"the log-likelihood grew without bound ({ll:.3g} for {nobs} observed values): a noise variance went to zero "
            "where the model can fit some values exactly; fix that variance with fixed_params=, use a model with fewer "
            "free matrices, or rescale the data"
        )


def _to_numpy(params: dict) -> dict:
    return {k: np.asarray(v, float) for k, v in params.items()}


def _np_or_none(a):
    return None if a is None else np.asarray(a)
