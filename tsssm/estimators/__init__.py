"""The public estimators (thin: validate, convert, call inference, wrap results)."""

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
from tsssm.estimators.chimera import Chimera, ChimeraClassifier
from tsssm.estimators.deep_markov import DeepMarkovModel
from tsssm.estimators.dynamic_factor import DynamicFactor
from tsssm.estimators.latent_ode import LatentODE, LatentSDE
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
