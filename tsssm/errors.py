"""Exceptions and warnings raised by tsssm.

Every error that comes from the user's input is a :class:`DataError`, a subclass of
:class:`ValueError`, whose message names the offending column, row or argument and says how to
fix it. Numerical trouble detected inside compiled code comes back as a status flag and is turned
into a :class:`NumericalError` or a :class:`ConvergenceWarning` at the Python boundary.
"""

from __future__ import annotations


class DataError(ValueError):
    """Input data or an argument cannot be used; the message says where and how to fix it."""


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted estimator was called before ``fit``."""


class NumericalError(ArithmeticError):
    """A computation produced non-finite values (e.g. a covariance that is not positive definite)."""


class ConvergenceWarning(UserWarning):
    """The optimiser stopped before meeting its convergence criterion."""
