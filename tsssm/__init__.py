"""tsssm: probabilistic time series with state-space models, on JAX.

One scikit-learn-like API over the model families::

    import tsssm
    y = tsssm.datasets.load_nile()
    model = tsssm.LocalLevel().fit(y)
    fc = model.forecast(10)
    fc.mean, fc.interval(0.95)

The classical family computes in float64 without touching JAX's global settings
(see :mod:`tsssm._config`).
"""

from tsssm import anomaly, datasets
from tsssm.errors import ConvergenceWarning, DataError, NotFittedError, NumericalError
from tsssm.estimators import (
    ARIMA,
    Chimera,
    ChimeraClassifier,
    DeepMarkovModel,
    DynamicFactor,
    LatentODE,
    LatentSDE,
    LinearGaussianSSM,
    LocalLevel,
    LocalLinearTrend,
    PhaseFactor,
    UnobservedComponents,
    fit_many,
    load,
)
from tsssm.forecast import Forecast
from tsssm.models import components

__version__ = "0.1.0"

__all__ = [
    "ARIMA",
    "Chimera",
    "ChimeraClassifier",
    "ConvergenceWarning",
    "DataError",
    "DeepMarkovModel",
    "DynamicFactor",
    "Forecast",
    "LatentODE",
    "LatentSDE",
    "LinearGaussianSSM",
    "LocalLevel",
    "LocalLinearTrend",
    "NotFittedError",
    "NumericalError",
    "PhaseFactor",
    "UnobservedComponents",
    "anomaly",
    "components",
    "datasets",
    "fit_many",
    "load",
]
