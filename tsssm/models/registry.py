"""Names of the model building blocks, so that saved estimators can rebuild them from JSON."""

from __future__ import annotations

import dataclasses

from tsssm.models import arima, components, lgssm

_CLASSES = {
    cls.__name__: cls
    for cls in (
        components.Level,
        components.Trend,
        components.Seasonal,
        components.Cycle,
        components.Autoregressive,
        components.BrownianLevel,
        components.ContinuousTrend,
        components.OscillatorSeasonal,
        components.ContinuousCycle,
        components.CAR,
        lgssm.StructuralModel,
        arima.ARIMAModel,
    )
}


def is_registered(value) -> bool:
    return type(value).__name__ in _CLASSES and isinstance(value, _CLASSES[type(value).__name__])


def fields(value) -> dict:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def build(name: str, values: dict):
    return _CLASSES[name](**values)
