"""State and predictive distributions of a linear-Gaussian model at given parameters.

Module-level jitted functions (compiled once per model structure and data shape) that the
estimators call after fitting. Forecasts use the same functions: the horizon is appended to the
data as fully-missing steps, so the one-step "predictions" there are the exact multi-step
predictive distributions and the simulation smoother gives joint draws over the horizon.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from tsssm._config import jit
from tsssm.inference.mle import TRACE_COUNTS, SeriesData
from tsssm.kernels import kalman


class Predictions(NamedTuple):
    """One-step-ahead predictive moments of y (T, D), (T, D, D), ``valid`` (T,) and log-density (T,)."""

    mean: jax.Array
    cov: jax.Array
    valid: jax.Array
    log_density: jax.Array


@jit
def predictions(model, params: dict, data: SeriesData) -> Predictions:
    """One-step-ahead predictive distribution of every y_t given y before t.

    ``valid`` is False (and the log-density NaN) while the diffuse initial states are not yet
    identified by the data.
    """
    arrays, init = model.system(params, data.times, data.inputs)
    result = kalman.kalman_filter(arrays, init, data.values, data.mask)
    moments = kalman.observation_moments(arrays, kalman.collapse_predicted(result))
    log_density = kalman.predictive_log_density(result, arrays, data.values, data.mask)
    return Predictions(moments.mean, moments.cov, moments.valid, log_density)


@jit
def smoothed_states(model, params: dict, data: SeriesData) -> kalman.Moments:
    """Posterior moments of the states given all observed data: mean (T, N), cov (T, N, N)."""
    arrays, init = model.system(params, data.times, data.inputs)
    result = kalman.kalman_filter(arrays, init, data.values, data.mask)
    return kalman.rts_smoother(arrays, result, data.mask)


@jit
def smoothed_observations(model, params: dict, data: SeriesData) -> kalman.Moments:
    """Moments of every y_t (T, D), (T, D, D) given all observed data (smoothed states pushed
    through the observation equation, observation noise included).

    At fully missing steps appended after the data (a horizon) these are the predictive moments;
    at a missing entry inside the data, the interpolation of that entry.
    """
    return kalman.observation_moments(model.system(params, data.times, data.inputs)[0], smoothed_states(model, params, data))


@jit
def observation_draws(model, params: dict, data: SeriesData, key, num_draws: int):
    """Joint posterior-predictive draws of y (num_draws, T, D) given the observed entries.

    At masked steps (a forecast horizon) these are draws from the joint predictive distribution.
    """
    arrays, init = model.system(params, data.times, data.inputs)
    key_states, key_noise = jax.random.split(key)
    states = kalman.simulation_smoother(key_states, arrays, init, data.values, data.mask, num_draws)
    H = jnp.broadcast_to(arrays.observation, data.values.shape[:1] + arrays.observation.shape[-2:])
    R = jnp.broadcast_to(arrays.observation_cov, data.values.shape[:1] + arrays.observation_cov.shape[-2:])
    d = jnp.broadcast_to(arrays.observation_offset, data.values.shape)
    noise_scale = jax.vmap(kalman.psd_sqrt)(R)
    eps = jax.random.normal(key_noise, (num_draws,) + data.values.shape, data.values.dtype)
    return jnp.einsum("tdn,stn->std", H, states) + d + jnp.einsum("tde,ste->std", noise_scale, eps)


@jit
def initial_filter_state(model, params: dict, data: SeriesData) -> kalman.FilterState:
    """The filter state before the first step of ``data`` (the model's initial state)."""
    return kalman.initial_filter_state(model.system(params, data.times, data.inputs)[1])


@jit
def filter_window(model, params: dict, state: kalman.FilterState, data: SeriesData, keep):
    """:func:`tsssm.kernels.kalman.filter_window` for a window of ``data`` (W steps; ``keep`` (W,)).

    Compiled once per model structure and window shape, so a long recording scored window by
    window compiles once (counted in ``TRACE_COUNTS["filter_window"]``). For time-invariant
    transitions only: the transition after the window's last step is not known from its times.
    """
    TRACE_COUNTS["filter_window"] += 1
    arrays, _ = model.system(params, data.times, data.inputs)
    return kalman.filter_window(arrays, state, data.values, data.mask, keep)
