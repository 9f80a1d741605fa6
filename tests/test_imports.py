"""``import tsssm`` stays short for classical work: the neural families and the anomaly helpers
are imported on first use (PEP 562 module ``__getattr__``), and still behave as ordinary
attributes."""

import json
import subprocess
import sys

import pytest

import tsssm

#: Modules a classical fit never needs; ``import tsssm`` must not import them.
HEAVY = ["optax", "diffrax", "sklearn.metrics", "tsssm.anomaly", "tsssm.estimators.chimera",
         "tsssm.estimators.deep_markov", "tsssm.estimators.latent_ode", "tsssm.inference.svi"]


def test_import_leaves_the_neural_families_and_anomaly_helpers_for_first_use():
    code = f"""
import json, sys
import tsssm
before = [m for m in {HEAVY!r} if m in sys.modules]
probed = tsssm._config.compiler_options.cache_info().currsize  # importing compiles nothing, not even the probe
names = [tsssm.DeepMarkovModel.__name__, tsssm.LatentSDE.__name__, tsssm.anomaly.__name__]
after = [m for m in {HEAVY!r} if m in sys.modules]
print(json.dumps({{"before": before, "probed": probed, "names": names, "after": after}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["before"] == [] and out["probed"] == 0
    assert out["names"] == ["DeepMarkovModel", "LatentSDE", "tsssm.anomaly"]
    assert {"optax", "diffrax", "tsssm.anomaly", "tsssm.estimators.deep_markov", "tsssm.estimators.latent_ode"} <= set(out["after"])


def test_lazy_names_behave_as_attributes():
    from tsssm import Chimera, LatentODE, anomaly  # noqa: F401 (the from-import form resolves them too)

    assert tsssm.Chimera is Chimera is tsssm.estimators.Chimera
    assert tsssm.LatentODE is LatentODE
    assert all(hasattr(tsssm, name) for name in tsssm.__all__)
    assert {"Chimera", "LatentSDE", "anomaly"} <= set(dir(tsssm)) and "DeepMarkovModel" in dir(tsssm.estimators)
    assert tsssm.anomaly is anomaly and anomaly.auroc([0, 1, 0], [0.1, 0.9, 0.2]) == 1.0
    with pytest.raises(AttributeError, match="no attribute 'NotAModel'"):
        tsssm.NotAModel
    with pytest.raises(AttributeError, match="no attribute 'NotAModel'"):
        tsssm.estimators.NotAModel
