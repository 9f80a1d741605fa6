r"""Selective (input-dependent, diagonal) linear recurrences: the 1-D scan and the 2-D scan.

Pure JAX, elementwise in every trailing axis (channels, state size; real or complex).

**1-D selective scan.** Along a leading time axis,

.. math::

    h_t = a_t \odot h_{t-1} + b_t, \qquad h_{-1} = 0,

(``reverse=True`` runs from the end: :math:`h_t = a_t \odot h_{t+1} + b_t`). The pairs
:math:`(a_t, b_t)` compose associatively, :math:`(a, b) \circ (a', b') = (a a', a' b + b')`, so
:func:`selective_scan` can run as a :func:`jax.lax.associative_scan` (``method="associative"``:
:math:`O(T)` work, :math:`O(\log T)` depth, for accelerators) or as a :func:`jax.lax.scan`
(``"sequential"``: :math:`T` steps). The default is sequential on a CPU backend and associative
elsewhere: on CPU the associative scan's strided passes over the arrays (about :math:`2 \log_2 T`
of them) cost more than they parallelise (measured in ``benchmarks/bench_scan.py`` and
``docs/benchmarks.md``). :func:`selective_scan_loop` is the step-by-step reference of the tests.

**2-D selective scan** (the Roesser-type recurrence of Chimera, Behrouz et al. 2024, eq. 5), on
a grid of variates :math:`v = 1..V` by times :math:`t = 1..T` with two coupled states, one moving
along time and one along variates:

.. math::

    h^{(1)}_{v,t} &= a^{(1)}_{v,t} \odot h^{(1)}_{v,t-1} + a^{(2)}_{v,t} \odot h^{(2)}_{v,t-1}
        + u^{(1)}_{v,t}, \\
    h^{(2)}_{v,t} &= a^{(3)}_{v,t} \odot h^{(1)}_{v-1,t} + a^{(4)}_{v,t} \odot h^{(2)}_{v-1,t}
        + u^{(2)}_{v,t},

with zero boundaries (:math:`h_{0,t} = 0`; :math:`h_{v,0} = 0` unless initial time-boundary states
are given, which lets a long grid be scanned in chunks of time, the last column of one chunk being
the boundary of the next). ``reverse_variates=True`` runs the variate
direction from the last variate (:math:`v-1` becomes :math:`v+1`). Every state depends only on
inputs at earlier or equal times, so the recurrence is causal in time whichever way the
variates are scanned.

:func:`scan_2d` is the fast version: a :func:`jax.lax.scan` over variates whose body, given the
previous variate's whole time column, computes :math:`h^{(2)}_{v,\cdot}` in one vectorised step and
:math:`h^{(1)}_{v,\cdot}` with the 1-D scan over time (``time_scan``: associative or sequential):
:math:`O(VT)` work, :math:`O(V \log T)` depth when associative. :func:`scan_2d_loop` visits the cells one at a time (a single
``fori_loop`` over :math:`V T` cells) and is the oracle of the tests.

All arrays are ``(V, T, ...)`` (2-D) or ``(T, ...)`` (1-D) with identical shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


#: Ways to run the recurrence along time: see :func:`selective_scan`.
TIME_SCANS = ("associative", "sequential")


def _compose(earlier, later):
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def default_time_scan() -> str:
    """``"sequential"`` on a CPU backend, ``"associative"`` on accelerators (see the module docstring)."""
    return "sequential" if jax.default_backend() == "cpu" else "associative"


def selective_scan(a, b, *, reverse: bool = False, method: str | None = None):
    r"""All states of :math:`h_t = a_t h_{t-1} + b_t` (:math:`h_{-1} = 0`) along axis 0.

    Parameters
    ----------
    a, b : Array ``(T, ...)``
        Per-step decay and input, same shape (real or complex).
    reverse : bool
        Run from the last step: :math:`h_t = a_t h_{t+1} + b_t`.
    method : {"associative", "sequential"}, optional
        :func:`jax.lax.associative_scan` (:math:`O(\log T)` depth) or :func:`jax.lax.scan`
        (:math:`T` steps); both :math:`O(T)` work, same values up to rounding. Default:
        :func:`default_time_scan`.

    Returns
    -------
    Array ``(T, ...)``
    """
    method = default_time_scan() if method is None else method
    if method == "associative":
        return jax.lax.associative_scan(_compose, (a, b), reverse=reverse)[1]
    if method != "sequential":
        raise ValueError(f"method must be one of {TIME_SCANS} or None, got {method!r}")

    def step(h, ab):
        h = ab[0] * h + ab[1]
        return h, h

    return jax.lax.scan(step, jnp.zeros_like(b[0]), (a, b), reverse=reverse)[1]


def selective_scan_loop(a, b, *, reverse: bool = False):
    """Reference for :func:`selective_scan`: one step at a time in a ``fori_loop``."""
    T = a.shape[0]

    def body(i, carry):
        h, out = carry
        t = T - 1 - i if reverse else i
        h = a[t] * h + b[t]
        return h, out.at[t].set(h)

    return jax.lax.fori_loop(0, T, body, (jnp.zeros_like(b[0]), jnp.zeros_like(b)))[1]


def _shift_time(x, first):
    """``x[t-1]`` at row t, ``first`` at row 0."""
    return jnp.concatenate([first[None], x[:-1]], axis=0)


def scan_2d(a1, a2, a3, a4, u1, u2, *, initial=None, reverse_variates: bool = False, time_scan: str | None = None):
    r"""The 2-D selective scan (module docstring): ``(h1, h2)``, each ``(V, T, ...)``.

    Parameters
    ----------
    a1, a2 : Array ``(V, T, ...)``
        Weights of :math:`h^{(1)}_{v,t-1}` and :math:`h^{(2)}_{v,t-1}` in the time state.
    a3, a4 : Array ``(V, T, ...)``
        Weights of :math:`h^{(1)}_{v-1,t}` and :math:`h^{(2)}_{v-1,t}` in the variate state.
    u1, u2 : Array ``(V, T, ...)``
        Inputs of the time and the variate state.
    initial : tuple of Array ``(V, ...)``, optional
        The states :math:`(h^{(1)}_{v,0}, h^{(2)}_{v,0})` before the first time (zero if None).
    reverse_variates : bool
        Scan the variates from the last one.
    time_scan : {"associative", "sequential"}, optional
        How each column is scanned over time (``method`` of :func:`selective_scan`).
    """
    if initial is None:
        initial = (jnp.zeros_like(u1[:, 0]), jnp.zeros_like(u2[:, 0]))

    def column(prev, inp):
        h1_prev, h2_prev = prev
        a1v, a2v, a3v, a4v, u1v, u2v, h1_0, h2_0 = inp
        h2 = a3v * h1_prev + a4v * h2_prev + u2v
        b = a2v * _shift_time(h2, h2_0) + u1v
        h1 = selective_scan(a1v, b.at[0].add(a1v[0] * h1_0), method=time_scan)
        return (h1, h2), (h1, h2)

    zero = jnp.zeros_like(u1[0])
    _, (h1, h2) = jax.lax.scan(column, (zero, zero), (a1, a2, a3, a4, u1, u2, *initial), reverse=reverse_variates)
    return h1, h2


def scan_2d_loop(a1, a2, a3, a4, u1, u2, *, initial=None, reverse_variates: bool = False):
    """Reference for :func:`scan_2d`: the cells one by one (variate-major order) in a ``fori_loop``."""
    V, T = a1.shape[:2]
    h1_0, h2_0 = (jnp.zeros_like(u1[:, 0]), jnp.zeros_like(u2[:, 0])) if initial is None else initial
    step = 1 if reverse_variates else -1  # where the variate state comes from: v - 1 (or v + 1)

    def cell(k, hs):
        h1, h2 = hs
        i, t = k // T, k % T
        v = V - 1 - i if reverse_variates else i
        has_left, has_up = t > 0, i > 0
        left1 = jnp.where(has_left, h1[v, jnp.maximum(t - 1, 0)], h1_0[v])
        left2 = jnp.where(has_left, h2[v, jnp.maximum(t - 1, 0)], h2_0[v])
        up = jnp.clip(v + step, 0, V - 1)
        up1 = jnp.where(has_up, h1[up, t], 0.0)
        up2 = jnp.where(has_up, h2[up, t], 0.0)
        new1 = a1[v, t] * left1 + a2[v, t] * left2 + u1[v, t]
        new2 = a3[v, t] * up1 + a4[v, t] * up2 + u2[v, t]
        return h1.at[v, t].set(new1), h2.at[v, t].set(new2)

    return jax.lax.fori_loop(0, V * T, cell, (jnp.zeros_like(u1), jnp.zeros_like(u2)))
