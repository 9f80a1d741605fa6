"""Shared fixtures for the kernel tests: float64 for every test, repo root importable."""

from __future__ import annotations

import pathlib
import sys

import pytest

_ROOT = pathlib.Path(__file__).absolute().parents[2]
if str(_ROOT) not in sys.path:  # so that ``tests.reference`` and ``tsssm`` import without PYTHONPATH
    sys.path.insert(0, str(_ROOT))

from tsssm._config import float64  # noqa: E402


@pytest.fixture(autouse=True)
def _float64():
    """Run every kernel test under tsssm's thread-local float64 context (never the global flag)."""
    with float64():
        yield
