"""Loaders for the small real datasets that ship with tsssm (files in the project's ``datasets/``).

Each dataset folder carries a ``SOURCE.txt`` with its provenance. Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

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


class LabelledBeats(NamedTuple):
    """Heartbeats of equal length with binary labels.

    Attributes
    ----------
    beats : np.ndarray
        float64 (n_beats, n_samples), one beat per row.
    labels : np.ndarray
        int (n_beats,): 0 normal, 1 abnormal.
    """

    beats: np.ndarray
    labels: np.ndarray

    def to_long(self) -> pd.DataFrame:
        """The beats as a long frame (``unique_id`` = beat number, ``ds`` = sample index, ``y``)."""
        n_beats, n_samples = self.beats.shape
        return pd.DataFrame(
            {
                "unique_id": np.repeat(np.arange(n_beats), n_samples),
                "ds": np.tile(np.arange(n_samples), n_beats),
                "y": self.beats.reshape(-1),
            }
        )


class ECG5000(NamedTuple):
    """The ECG5000 beats in the standard UCR split: ``train`` (500 beats) and ``test`` (4500)."""

    train: LabelledBeats
    test: LabelledBeats


def load_ecg5000() -> ECG5000:
    """ECG5000 heartbeats (UCR archive; record chf07 of PhysioNet's BIDMC CHF database).

    5000 beats of 140 samples, each z-normalised; label 0 is the normal class (UCR class 1),
    1 any abnormal class (2-5). The standard split is the UCR one: the first 500 beats are the
    training set (292 normal), the other 4500 the test set (2627 normal, 1873 abnormal). The
    usual anomaly-detection protocol trains on the normal training beats only and scores every
    test beat. Provenance: ``describe("ecg5000")``.

    Returns
    -------
    ECG5000
        ``train`` and ``test`` :class:`LabelledBeats`.
    """
    folder = data_dir() / "ecg5000"
    beats = np.load(folder / "ecg5000_all_signals_float32.npy", allow_pickle=False).astype(np.float64)
    labels = np.load(folder / "ecg5000_all_labels_binary.npy", allow_pickle=False).astype(np.int64)
    return ECG5000(LabelledBeats(beats[:500], labels[:500]), LabelledBeats(beats[500:], labels[500:]))


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
