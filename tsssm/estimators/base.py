"""What every tsssm estimator shares: scikit-learn conventions, validation, and save/load.

Estimators store keyword hyperparameters in ``__init__`` and nothing else; ``fit`` returns
``self`` and sets fitted attributes ending in ``_``; ``get_params``/``set_params``/``clone``
come from :class:`sklearn.base.BaseEstimator`.

Saved models are one ``.npz`` file written with ``allow_pickle=False``: a JSON document (class,
hyperparameters, fitted parameters, layout of the training data) plus plain arrays. Loading never
unpickles anything, so a model file from an untrusted source cannot run code.
"""

from __future__ import annotations

import abc
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from tsssm.errors import DataError, NotFittedError

FORMAT_VERSION = 1
_REGISTRY: dict[str, type] = {}


class BaseForecaster(BaseEstimator, abc.ABC):
    """Base class of the public estimators (see the API in ``docs/dev/design.md``)."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not getattr(cls, "__abstractmethods__", None):
            _REGISTRY[cls.__name__] = cls

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        tags.non_deterministic = False
        return tags

    def _check_fitted(self):
        if not hasattr(self, "params_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: call fit(y) first")

    @staticmethod
    def _check_horizon(horizon, times):
        if horizon is None and times is None:
            raise DataError("give a horizon (number of steps, e.g. forecast(12)) or explicit future times=")
        if horizon is not None and times is not None:
            raise DataError("give either a horizon or times=, not both")

    # ------------------------------------------------------------------ persistence
    @abc.abstractmethod
    def _state_for_saving(self) -> tuple[dict, dict]:
        """(JSON-able dict, dict of arrays) describing the fitted state."""

    @abc.abstractmethod
    def _restore(self, document: dict, arrays: dict) -> None:
        """Set the fitted state from what :meth:`_state_for_saving` wrote."""

    def save(self, path) -> Path:
        """Write the fitted estimator to ``path`` (a ``.npz`` file: JSON + arrays, no pickle)."""
        self._check_fitted()
        document, arrays = self._state_for_saving()
        document = {"format": "tsssm", "version": FORMAT_VERSION, "class": type(self).__name__, **document}
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        payload = {f"array:{k}": np.asarray(v) for k, v in arrays.items()}
        payload["document"] = np.array(json.dumps(document))
        with open(path, "wb") as fh:
            np.savez(fh, **payload)
        return path


def load(path):
    """Load an estimator written by ``save`` (no pickle is ever read)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no saved model at {path}")
    with np.load(path, allow_pickle=False) as npz:
        if "document" not in npz:
            raise DataError(f"{path} is not a tsssm model file (no 'document' entry)")
        document = json.loads(str(npz["document"]))
        arrays = {k[len("array:") :]: npz[k] for k in npz.files if k.startswith("array:")}
    if document.get("format") != "tsssm" or document.get("version") != FORMAT_VERSION:
        raise DataError(f"{path} was written by an incompatible tsssm version ({document.get('version')})")
    if document["class"] not in _REGISTRY:  # an estimator of a family not imported yet registers on import
        import tsssm.estimators

        getattr(tsssm.estimators, document["class"], None)
    cls = _REGISTRY.get(document["class"])
    if cls is None:
        raise DataError(f"{path} holds an unknown estimator class {document['class']!r}")
    estimator = cls(**decode_params(document["hyperparameters"]))
    estimator._restore(document, arrays)
    return estimator


# ---------------------------------------------------------------------- JSON helpers
def encode_params(params: dict) -> dict:
    """Hyperparameters -> JSON-able values (tuples, NumPy scalars, model components)."""
    return {k: _encode(v) for k, v in params.items()}


def decode_params(params: dict) -> dict:
    return {k: _decode(v) for k, v in params.items()}


def _encode(value):
    from tsssm.models import registry

    if isinstance(value, (np.generic,)):
        return value.item()
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist()}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {"__dict__": {str(k): _encode(v) for k, v in value.items()}}
    if registry.is_registered(value):
        return {"__module__": type(value).__name__, "fields": _encode(registry.fields(value))}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise DataError(f"cannot save a hyperparameter of type {type(value).__name__}: {value!r}")


def _decode(value):
    from tsssm.models import registry

    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        return np.asarray(value["__array__"], float)
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__dict__" in value:
        return {k: _decode(v) for k, v in value["__dict__"].items()}
    if "__module__" in value:
        return registry.build(value["__module__"], _decode(value["fields"]))
    raise DataError(f"unreadable saved value {value!r}")


def frame_to_arrays(frame: pd.DataFrame | pd.Series, prefix: str) -> tuple[dict, dict]:
    """A training frame -> (JSON description, arrays) that :func:`frame_from_arrays` inverts."""
    is_series = isinstance(frame, pd.Series)
    df = frame.to_frame() if is_series else frame
    index = df.index
    doc = {"series": is_series, "columns": [str(c) for c in df.columns], "index_name": index.name}
    arrays = {f"{prefix}.values": df.to_numpy(dtype=float) if _all_numeric(df) else None}
    if isinstance(index, pd.DatetimeIndex):
        doc["index"] = {"kind": "datetime", "tz": str(index.tz) if index.tz is not None else None, "freq": index.freqstr}
        naive = index.tz_localize(None) if index.tz is not None else index
        arrays[f"{prefix}.index"] = naive.as_unit("ns").asi8
    else:
        doc["index"] = {"kind": "numeric", "integer": bool(pd.api.types.is_integer_dtype(index))}
        arrays[f"{prefix}.index"] = np.asarray(index)
    if arrays[f"{prefix}.values"] is None:  # long frames carry id and time columns
        doc["long"] = True
        arrays.pop(f"{prefix}.values")
        for col in df.columns:
            values = df[col]
            if pd.api.types.is_datetime64_any_dtype(values):
                doc.setdefault("datetime_columns", []).append(str(col))
                arrays[f"{prefix}.col.{col}"] = values.to_numpy().astype("datetime64[ns]").astype(np.int64)
            elif pd.api.types.is_numeric_dtype(values):
                arrays[f"{prefix}.col.{col}"] = values.to_numpy()
            else:
                arrays[f"{prefix}.col.{col}"] = values.astype(str).to_numpy().astype(str)
    return doc, arrays


def frame_from_arrays(doc: dict, arrays: dict, prefix: str):
    spec = doc["index"]
    raw = arrays[f"{prefix}.index"]
    if spec["kind"] == "datetime":
        index = pd.DatetimeIndex(raw.astype("datetime64[ns]"))
        if spec["tz"]:
            index = index.tz_localize(spec["tz"])
        if spec.get("freq"):
            index = pd.DatetimeIndex(index, freq=spec["freq"])
    elif spec.get("integer") and np.array_equal(raw, np.arange(len(raw))):
        index = pd.RangeIndex(len(raw))
    else:
        index = pd.Index(raw)
    index.name = doc["index_name"]
    if doc.get("long"):
        data = {}
        for col in doc["columns"]:
            values = arrays[f"{prefix}.col.{col}"]
            data[col] = pd.to_datetime(values.astype("datetime64[ns]")) if col in doc.get("datetime_columns", []) else values
        return pd.DataFrame(data, index=index)
    frame = pd.DataFrame(arrays[f"{prefix}.values"], index=index, columns=doc["columns"])
    return frame.iloc[:, 0] if doc["series"] else frame


def _all_numeric(df: pd.DataFrame) -> bool:
    return all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in df.dtypes)
