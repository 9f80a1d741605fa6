"""tsssm: probabilistic time series with state-space models, on JAX.

One scikit-learn-like API over the model families::

    import tsssm
    y = tsssm.datasets.load_nile()
    model = tsssm.LocalLevel().fit(y)
    fc = model.forecast(10)
    fc.mean, fc.interval(0.95)

The classical family computes in float64 without touching JAX's global settings
(see :mod:`tsssm._config`). The neural families and :mod:`tsssm.anomaly` are imported on first
use, which keeps ``import tsssm`` short for classical work.
"""

import importlib

from tsssm import datasets
from tsssm.errors import ConvergenceWarning, DataError, NotFittedError, NumericalError
from tsssm.estimators import (
    ARIMA,
    DynamicFactor,
    LinearGaussianSSM,
    LocalLevel,
    LocalLinearTrend,
    PhaseFactor,
    UnobservedComponents,
    fit_many,
    load,
)
from tsssm.estimators import LAZY_ESTIMATORS as _LAZY_ESTIMATORS
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


def __getattr__(name):
    if name == "anomaly":
        return importlib.import_module("tsssm.anomaly")
    if name in _LAZY_ESTIMATORS:
        value = globals()[name] = getattr(importlib.import_module("tsssm.estimators"), name)
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
