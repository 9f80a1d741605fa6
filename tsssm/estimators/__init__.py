"""The public estimators (thin: validate, convert, call inference, wrap results)."""

from tsssm.estimators.base import BaseForecaster, load
from tsssm.estimators.classical import (
    ARIMA,
    LinearGaussianSSM,
    LocalLevel,
    LocalLinearTrend,
    StateSpaceEstimator,
    UnobservedComponents,
)

__all__ = [
    "ARIMA",
    "BaseForecaster",
    "LinearGaussianSSM",
    "LocalLevel",
    "LocalLinearTrend",
    "StateSpaceEstimator",
    "UnobservedComponents",
    "load",
]
