"""Loaders for the small real datasets that ship with tsssm (files in the project's ``datasets/``).

Each dataset folder carries a ``SOURCE.txt`` with its provenance. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

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


def describe(name: str) -> str:
    """The provenance text (``SOURCE.txt``) of a bundled dataset, e.g. ``describe("nile")``."""
    path = data_dir() / name / "SOURCE.txt"
    if not path.exists():
        available = sorted(p.name for p in data_dir().iterdir() if p.is_dir())
        raise ValueError(f"no bundled dataset {name!r}; available: {available}")
    return path.read_text()
