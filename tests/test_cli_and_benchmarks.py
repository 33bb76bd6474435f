"""The command line (demo, info, bench, plot) and the asv suite, run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from relukernels import _bench
from relukernels.cli import main

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_demo_shows_every_backend_agreeing(capsys):
    assert main(["demo"]) == 0
    shown = capsys.readouterr().out
    assert "all backends agree" in shown
    assert "seed np.where" in shown and "numba cpu" in shown


def test_info_lists_versions_and_backends(capsys):
    assert main(["info"]) == 0
    shown = capsys.readouterr().out
    for word in ("relukernels", "numba", "cupy", "torch", "jax", "dask", "GPU:"):
        assert word in shown


def test_bench_json_holds_every_backend_present(capsys, tmp_path):
    plot = tmp_path / "throughput.png"
    assert main(["bench", "--sizes", "1000,20000", "--rounds", "3", "--json", "--plot", str(plot)]) == 0
    result = json.loads(capsys.readouterr().out)
    cases = {row["case"] for row in result["rows"]}
    assert {"numpy copyto", "seed np.where", "rk relu out=", "rk relu_and_dash out="} <= cases
    if "torch" in _bench.available_backends():
        assert "torch leaky_relu out=" in cases
    assert {row["size"] for row in result["rows"]} == {1000, 20000}
    assert all(row["median_us"] > 0 and row["gb_per_s"] > 0 for row in result["rows"])
    assert plot.read_bytes().startswith(PNG_SIGNATURE) and plot.stat().st_size > 10_000


def test_bench_refuses_a_missing_backend(capsys):
    assert main(["bench", "--sizes", "1000", "--backends", "numpy,not-a-library"]) == 2
    assert "not-a-library" in capsys.readouterr().err


def test_plot_writes_the_tutorial_figure(tmp_path, capsys):
    path = tmp_path / "relu.png"
    assert main(["plot", str(path)]) == 0
    assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000


@pytest.mark.skipif(shutil.which("asv") is None and not (Path(sys.executable).parent / "asv").exists(), reason="asv is not installed")
def test_asv_suite_checks_and_runs_a_subset(tmp_path):
    asv = shutil.which("asv") or str(Path(sys.executable).parent / "asv")
    env = {**os.environ, "HOME": str(tmp_path)}  # asv keeps its machine file in HOME
    run = lambda *args: subprocess.run([asv, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert run("machine", "--yes").returncode == 0
    check = run("check", "--python=same")
    assert check.returncode == 0 and "No problems found" in check.stdout, check.stdout + check.stderr
    quick = run("run", "--python=same", "--quick", "--dry-run", "--show-stderr", "-b", "Memory")
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert "rk numpy" in quick.stdout and "failed" not in quick.stdout
