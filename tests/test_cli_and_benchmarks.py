"""The command line (demo, info, bench, plot) and the asv suite, run for real."""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import relukernels
from relukernels import _bench, cli
from relukernels.cli import main

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)``'s exit code (argparse's exits too), stdout and stderr."""
    try:
        code = main(argv)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_shows_every_backend_agreeing(capsys):
    assert main(["demo"]) == 0
    shown = capsys.readouterr().out
    assert "all backends agree" in shown
    for backend, row in [(None, "tutorial np.where"), (None, "numba cpu"), ("array_api_strict", "array-api-strict"),
                         ("torch", "torch cpu"), ("jax", "jax (float64)"), ("dask", "dask (2-element chunks)")]:
        if backend is None or importlib.util.find_spec(backend):
            assert shown.count(f" {row}  ") == 6, row  # relu and relu_dash rows of three examples


def test_info_lists_versions_and_backends(capsys):
    assert main(["info"]) == 0
    shown = capsys.readouterr().out
    for word in ("relukernels", "numba", "cupy", "torch", "jax", "dask", "GPU:"):
        assert word in shown


def test_bench_json_holds_every_backend_present(capsys, tmp_path):
    plot = tmp_path / "throughput.png"
    assert main(["bench", "--sizes", "1000,400000", "--rounds", "3", "--json", "--plot", str(plot)]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    cases = {row["case"] for row in result["rows"]}
    assert {"tutorial np.where", "rk relu out=", "rk relu_and_dash out="} <= cases
    if "torch" in _bench.available_backends():
        assert "torch leaky_relu out=" in cases
    assert {row["size"] for row in result["rows"]} == {1000, 400000}
    assert all(row["median_us"] > 0 and row["gb_per_s"] > 0 for row in result["rows"])
    assert plot.read_bytes().startswith(PNG_SIGNATURE) and plot.stat().st_size > 10_000
    assert f"wrote {plot}" in err  # stdout stays JSON


def test_bench_measures_against_the_fastest_copy(capsys):
    assert main(["bench", "--sizes", "400000", "--rounds", "3", "--backends", "numpy", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    copies = [row for row in rows if row["copy_candidate"]]
    import numba

    threads = numba.get_num_threads()
    assert {row["case"] for row in copies} == {
        "copy: np.copyto, 1 thread", "copy: numba loop, 1 thread",
        f"copy: np.copyto, {threads} threads", f"copy: numba prange, {threads} threads",
    }
    limit = max(row["gb_per_s"] for row in copies)
    assert max(row["vs_copy"] for row in copies) == 1.0
    for row in rows:
        assert row["vs_copy"] == pytest.approx(row["gb_per_s"] / limit)


def test_the_plain_progress_bar_draws_without_tqdm(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm fails
    screen = Terminal()
    bar = _bench.progress_bar(3, True, stream=screen, desc="measuring", unit="round", leave=False)
    for _ in range(3):
        bar.update()
    bar.close()
    assert bar.n == 3 and "measuring: 3/3 round (100%)" in screen.getvalue()
    quiet = Terminal()
    _bench.progress_bar(3, False, stream=quiet).update()
    assert quiet.getvalue() == ""


def test_version_and_help_for_every_command_and_option(capsys):
    assert _run(["--version"], capsys)[:2] == (0, f"relukernels {relukernels.__version__}\n")
    parser = cli._parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == {"demo", "info", "bench", "plot", "apply"}
    for name, sub in commands.choices.items():
        assert sub.description, name
        code, out, _ = _run([name, "-h"], capsys)
        assert code == 0 and sub.description in " ".join(out.split())
        for action in sub._actions:
            assert action.help, (name, action.dest)
            if action.default not in (None, False, argparse.SUPPRESS):
                assert "default" in action.help, (name, action.dest)


NO_SUCH = "/no/such/folder/x.png"
BAD_COMMAND_LINES = [
    ([], "a command is required: demo, info, bench, plot or apply"),
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["demo", "extra"], "unrecognized arguments: extra"),
    (["apply", "x.npy", "y.npy", "--bogus"], "unrecognized arguments: --bogus"),
    (["nosuch"], "invalid choice: 'nosuch'"),
    (["plot", NO_SUCH], "folder '/no/such/folder' does not exist"),
    (["plot", "out.txt"], "give a file name ending in .png"),
    (["plot", "--leak", "nan"], "--leak must be finite"),
    (["plot", "--leak", "lots"], "--leak takes a number"),
    (["bench", "--rounds", "0"], "--rounds must be at least 1"),
    (["bench", "--rounds", "many"], "--rounds takes a positive integer"),
    (["bench", "--sizes", "0"], "--sizes must be positive"),
    (["bench", "--sizes", "1e3,lots"], "--sizes takes integers"),
    (["bench", "--sizes", "1.5"], "--sizes takes integers separated by commas, got '1.5'"),
    (["bench", "--sizes", "1e6,2.5e-1"], "--sizes takes integers"),
    (["bench", "--sizes", "inf"], "--sizes takes integers"),
    (["bench", "--sizes", "1e19"], "need about"),
    (["bench", "--plot", NO_SUCH], "does not exist"),
    (["bench", "--plot", "throughput.svg"], "ending in .png"),
    (["bench", "--backends", "numpy,not-a-library"], "--backends takes numpy, torch and cupy, got 'not-a-library'"),
    (["bench", "--backends", ""], "--backends takes numpy, torch and cupy, got ''"),
    (["apply", "x.npy", "y.csv"], "give an output name ending in .npy"),
    (["apply", "x.npy", "y.npy", "--batch-size", "1"], "--batch-size must be at least 4K"),
    (["apply", "x.npy", "y.npy", "--batch-size", "inf"], "--batch-size takes bytes"),
    (["apply", "x.npy", "y.npy", "--leak", "nan"], "--leak must be finite"),
]


def test_sizes_are_whole_numbers_in_any_notation():
    assert cli._sizes("1e6,2000,2.5e3,1E3") == [1_000_000, 2000, 2500, 1000]


@pytest.mark.parametrize("argv, message", BAD_COMMAND_LINES)
def test_bad_input_is_one_line_exit_2_and_nothing_written(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np = pytest.importorskip("numpy")
    np.save("x.npy", np.linspace(-1, 1, 100))
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


@pytest.mark.parametrize("argv", [["plot", "relu.png"], ["bench", "--plot", "throughput.png"]])
def test_the_figures_without_matplotlib_say_what_to_install_before_measuring(argv, capsys, monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "matplotlib" else real(name, *rest)
    )
    monkeypatch.setattr(_bench, "run", lambda *args, **kwargs: pytest.fail("measured before checking"))
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(argv, capsys)
    assert (code, out) == (2, "") and err.endswith("error: needs matplotlib (pip install matplotlib)\n")
    assert not list(tmp_path.iterdir())


def test_a_missing_peer_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setattr(_bench, "available_backends", lambda: ["numpy"])
    code, _, err = _run(["bench", "--backends", "numpy,torch", "--json"], capsys)
    assert code == 2 and "not available here: torch (torch needs pip install torch)" in err


@pytest.mark.parametrize("command", [["info"], ["demo"], ["plot", "x.png"], ["apply", "x.npy", "y.npy"]])
def test_numba_that_cannot_start_is_one_line(command, tmp_path):
    """Numba refuses its own bad settings (``NUMBA_NUM_THREADS=0``) when it is imported."""
    done = subprocess.run([sys.executable, "-m", "relukernels", *command], capture_output=True, text=True,
                          env={**os.environ, "NUMBA_NUM_THREADS": "0"}, cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == "relukernels: error: Numba cannot start: Number of threads specified must be > 0."


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "relukernels", "plot", str(tmp_path / "no" / "x.png")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1


def test_plot_writes_the_tutorial_figure(tmp_path, capsys):
    path = tmp_path / "relu.png"
    assert main(["plot", str(path)]) == 0
    assert path.read_bytes().startswith(PNG_SIGNATURE) and path.stat().st_size > 10_000
    assert capsys.readouterr().out == f"wrote {path}\n"


@pytest.mark.skipif(
    shutil.which("asv") is None and not (Path(sys.executable).parent / "asv").exists(), reason="asv is not installed"
)
def test_asv_suite_checks_and_runs_a_subset(tmp_path):
    asv = shutil.which("asv") or str(Path(sys.executable).parent / "asv")
    env = {**os.environ, "HOME": str(tmp_path)}  # asv keeps its machine file in HOME
    config = json.loads((ROOT / "asv.conf.json").read_text())
    assert config["results_dir"] == "benchmarks/results" and "torch" in config["matrix"]["req"]
    # The committed results stay as they are: this run's machine file goes to tmp_path.
    config.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"), results_dir=str(tmp_path / "results"),
                  env_dir=str(tmp_path / "env"), html_dir=str(tmp_path / "html"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(config))
    committed = sorted((ROOT / "benchmarks" / "results").rglob("*"))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([asv, "--config", str(tmp_path / "asv.conf.json"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)

    assert run("machine", "--yes").returncode == 0
    check = run("check", "--python=same")
    assert check.returncode == 0 and "No problems found" in check.stdout, check.stdout + check.stderr
    quick = run("run", "--python=same", "--quick", "--dry-run", "--show-stderr", "-b", "Memory")
    assert quick.returncode == 0, quick.stdout + quick.stderr
    assert "rk numpy" in quick.stdout and "failed" not in quick.stdout
    assert sorted((ROOT / "benchmarks" / "results").rglob("*")) == committed
