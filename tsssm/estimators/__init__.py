"""The public estimators (thin: validate, convert, call inference, wrap results).

The neural families (:class:`Chimera`, :class:`ChimeraClassifier`, :class:`DeepMarkovModel`,
:class:`LatentODE`, :class:`LatentSDE`) are imported on first use: they pull in optax, diffrax
and numpyro's SVI, which a classical fit never needs.
"""

import importlib

from tsssm.estimators.base import BaseForecaster, load
from tsssm.estimators.classical import (
    ARIMA,
    LinearGaussianSSM,
    LocalLevel,
    LocalLinearTrend,
    PhaseFactor,
    StateSpaceEstimator,
    UnobservedComponents,
)
from tsssm.estimators.dynamic_factor import DynamicFactor
from tsssm.estimators.many import ManyResult, fit_chunk, fit_many

__all__ = [
    "ARIMA",
    "BaseForecaster",
    "Chimera",
    "ChimeraClassifier",
    "DeepMarkovModel",
    "DynamicFactor",
    "LatentODE",
    "LatentSDE",
    "LinearGaussianSSM",
    "LocalLevel",
    "LocalLinearTrend",
    "ManyResult",
    "PhaseFactor",
    "StateSpaceEstimator",
    "UnobservedComponents",
    "fit_chunk",
    "fit_many",
    "load",
]

#: Estimators imported on first access (PEP 562), by the module that defines them.
LAZY_ESTIMATORS = {
    "Chimera": "tsssm.estimators.chimera",
    "ChimeraClassifier": "tsssm.estimators.chimera",
    "DeepMarkovModel": "tsssm.estimators.deep_markov",
    "LatentODE": "tsssm.estimators.latent_ode",
    "LatentSDE": "tsssm.estimators.latent_ode",
}


def __getattr__(name):
    if name not in LAZY_ESTIMATORS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(LAZY_ESTIMATORS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(LAZY_ESTIMATORS))
