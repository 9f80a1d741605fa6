"""Loaders for the small real datasets that ship with tsssm (files in the project's ``datasets/``).

Each dataset folder carries a ``SOURCE.txt`` with its provenance. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def data_dir() -> Path:
    """Folder of the bundled data: inside the installed package, or ``datasets/`` of a source checkout."""
    installed = Path(__file__).parent / "_bundled"
    return installed if installed.is_dir() else Path(__file__).resolve().parents[1] / "datasets"


def load_nile() -> pd.Series:
    """Annual flow of the Nile at Aswan, 1871-1970 (10^8 m^3), indexed by year-start dates.

    The classic example of the local level model (Durbin & Koopman 2012): the maximum-likelihood
    variances are about 15099 (irregular) and 1469 (level).
    """
    raw = pd.read_csv(data_dir() / "nile" / "nile.csv")
    index = pd.DatetimeIndex(pd.to_datetime(raw["year"].astype(str), format="%Y"), freq="YS-JAN", name="year")
    return pd.Series(raw["volume"].to_numpy(dtype=float), index=index, name="volume")


def load_jsb_chorales() -> dict[str, np.ndarray]:
    """JSB chorales piano rolls (Boulanger-Lewandowski et al. 2012), the deep Markov model benchmark.

    Returns a dict with ``"train"``, ``"valid"``, ``"test"``: uint8 arrays ``(N, T_max, 88)``
    (1 = key pressed, zero-padded after each chorale's end) and ``"train_lengths"``,
    ``"valid_lengths"``, ``"test_lengths"``: int arrays ``(N,)`` of true lengths (229 / 76 / 77
    chorales of 25-160 quarter-note steps). The split is the one of the Pyro/NumPyro examples;
    see ``describe("jsb_chorales")`` for provenance and the published test bounds (nats per step).
    """
    with np.load(data_dir() / "jsb_chorales" / "jsb_chorales_pianoroll.npz", allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def describe(name: str) -> str:
    """The provenance text (``SOURCE.txt``) of a bundled dataset, e.g. ``describe("nile")``."""
    path = data_dir() / name / "SOURCE.txt"
    if not path.exists():
        available = sorted(p.name for p in data_dir().iterdir() if p.is_dir())
        raise ValueError(f"no bundled dataset {name!r}; available: {available}")
    return path.read_text()
