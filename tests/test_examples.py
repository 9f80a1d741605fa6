"""Smoke-run the examples and the command line, as a user would."""

import os
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsssm import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_nile_co2_walkthrough_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["nile_co2_walkthrough.py", "--plots", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "nile_co2_walkthrough.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "-632.54" in out and "most surprising year" in out
    assert (tmp_path / "nile_forecast.png").stat().st_size > 0
    assert (tmp_path / "co2_forecast.png").stat().st_size > 0


def test_irregular_clinical_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["irregular_clinical.py", "--plots", str(tmp_path)])
    namespace = runpy.run_path(str(EXAMPLES / "irregular_clinical.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "components: ContinuousTrend, OscillatorSeasonal" in out
    # the injected tachycardic episode (row 60 of the simulated chart) is the most surprising entry
    spike = namespace["simulate_chart"]().index[60]
    assert f"most surprising measurement: {spike}" in out
    assert (tmp_path / "irregular_forecast.png").stat().st_size > 0


def test_cli_forecasts_bundled_nile(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TSSSM_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["forecast", "--horizon", "3", "--output", str(tmp_path / "fc.csv")]) == 0
    out = capsys.readouterr().out
    assert "log-likelihood -632.5456" in out and "lower_95" in out
    table = pd.read_csv(tmp_path / "fc.csv")
    assert len(table) == 3 and {"mean", "lower_80", "upper_95"} <= set(table.columns)


def test_cli_on_user_csv_with_bad_column(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TSSSM_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "data.csv"
    dates = pd.date_range("2020-01-01", periods=36, freq="MS")
    trend = np.linspace(10.0, 20.0, 36) + np.random.default_rng(0).normal(size=36)
    pd.DataFrame({"month": dates, "y": trend, "z": range(36)}).to_csv(path, index=False)
    assert cli.main(["forecast", str(path), "--column", "nope"]) == 2
    assert "--column 'nope'" in capsys.readouterr().err
    args = ["forecast", str(path), "--column", "y", "--model", "local-linear-trend", "--seasonal", "12", "--horizon", "4", "--plot", str(tmp_path / "p.png")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2023-01-01" in out and (tmp_path / "p.png").exists()
    assert cli.main(["forecast", str(path), "--column", "y", "--model", "arima", "--order", "1,1,0", "--horizon", "2"]) == 0
    assert "ar.L1" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["forecast", "--horizon", "0"]])
def test_cli_rejects_bad_horizon(argv, capsys):
    assert cli.main(argv) == 2
    assert "horizon" in capsys.readouterr().err


def test_nowcast_monthly_quarterly_runs(capsys):
    runpy.run_path(str(EXAMPLES / "nowcast_monthly_quarterly.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "mariano-murasawa" in out and "nowcast of gdp for the quarter starting 2025-01-01" in out


def _run_notebook(name: str, monkeypatch) -> str:
    """Execute ``examples/<name>`` with small settings (TSSSM_EXAMPLE_FAST=1) in a fresh kernel; its printed text."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root = EXAMPLES.parent
    monkeypatch.setenv("TSSSM_EXAMPLE_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel must import this checkout's tsssm, as the test process does
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code"), "strip the notebook's outputs"
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    return "\n".join(
        out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs if out.output_type == "stream"
    )


@pytest.mark.slow
def test_bayesian_structural_notebook_runs(monkeypatch):
    """Execute the notebook with tiny NUTS settings (TSSSM_EXAMPLE_FAST=1) in a fresh kernel.

    Marked slow: two NUTS fits in a fresh kernel take ~100 s on the shared 2-core machine,
    almost all of it compilation.
    """
    text = _run_notebook("bayesian_structural.ipynb", monkeypatch)
    assert "posterior mean:" in text and "Bayesian / plug-in" in text
    widths = [float(w) for w in text.split("Bayesian / plug-in:")[1].strip(" []\n").split()]
    assert min(widths) >= 1.0


@pytest.mark.slow  # default suite under 10 minutes on 2 cores; CI runs the slow tier too
def test_deep_markov_pendulum_runs(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["deep_markov_pendulum.py", "--plots", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "deep_markov_pendulum.py"), run_name="__main__")
    out = capsys.readouterr().out
    # the corrupted angle (41st time of held-out pendulum p25) is the most anomalous reading
    line = next(s for s in out.splitlines() if s.startswith("most anomalous reading"))
    assert "pendulum p25" in line and line.split("at t = ")[1].split(" s")[0] == line.split("corrupted at t = ")[1].split(" s")[0]
    density = float(next(s for s in out.splitlines() if s.startswith("held-out")).split(": ")[1].split()[0])
    # measured 0.307 nats per reading (a model that ignores the dynamics: about -1.6)
    assert density > 0.0
    assert (tmp_path / "dmm_pendulum_forecast.png").stat().st_size > 0


@pytest.mark.slow
def test_ecg5000_anomaly_notebook_runs(monkeypatch):
    """Execute the ECG5000 notebook on 600 test beats (TSSSM_EXAMPLE_FAST=1) in a fresh kernel.

    Marked slow: a fresh kernel, the pooled fit and three compiled scorers take 32-55 s on the
    shared 2-core machine.
    """
    text = _run_notebook("ecg5000_anomaly.ipynb", monkeypatch)
    # 600 of the 4,500 test beats: the full set gives AUROC 0.9930 (docs/benchmarks.md); a subset of
    # 600 moves it by about +-0.003 (its standard error), so 0.98 leaves a wide margin
    auroc = float(text.split("AUROC ")[1].split()[0])
    assert auroc > 0.98
    streamed = re.search(r"score of normal beats (\S+), of abnormal beats (\S+)", text)
    assert float(streamed.group(2)) > float(streamed.group(1))


@pytest.mark.slow
def test_chimera_multivariate_runs(tmp_path, capsys, monkeypatch):
    """Marked slow: ~30 s of CPU (mostly compiling the training step), more on a loaded machine."""
    monkeypatch.setattr(sys, "argv", ["chimera_multivariate.py", "--plots", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "chimera_multivariate.py"), run_name="__main__")
    out = capsys.readouterr().out
    line = next(s for s in out.splitlines() if s.startswith("most anomalous hour"))
    assert line.split(": ", 1)[1].split(" (")[0] == line.split("fault injected at ")[1].rstrip(")")
    densities = next(s for s in out.splitlines() if s.startswith("held-out")).split(": ")[1]
    chimera, baseline = (float(part.split()[-1]) for part in densities.split(", "))
    assert chimera < baseline - 2.0  # measured 1.40 vs 6.32 nats per hour
    assert (tmp_path / "chimera_forecast.png").stat().st_size > 0


@pytest.mark.slow
def test_latent_ode_pendulum_runs(tmp_path, capsys, monkeypatch):
    """Marked slow (~1 minute): compiling the latent ODE's training step alone takes 20-30 s on 2 cores.

    The default 300 epochs: after 60 the first reading of a pendulum (no history, so the prior
    predictive) still outscores the corrupted one."""
    monkeypatch.setattr(sys, "argv", ["latent_ode_pendulum.py", "--plots", str(tmp_path)])
    runpy.run_path(str(EXAMPLES / "latent_ode_pendulum.py"), run_name="__main__")
    out = capsys.readouterr().out
    # the corrupted angle (15th reading of held-out pendulum p26) is its most anomalous reading
    line = next(s for s in out.splitlines() if s.startswith("most anomalous reading of pendulum p26"))
    assert line.split(": t = ")[1].split(" s")[0] == line.split("corrupted at t = ")[1].split(" s")[0]
    assert "forecast of p00" in out
    assert (tmp_path / "latent_ode_pendulum_forecast.png").stat().st_size > 0
