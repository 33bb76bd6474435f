"""Concurrency, the on-disk kernel cache, and a light import: each in real processes
and threads, nothing mocked."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import oracle
import relukernels as rk
from relukernels._backends import numpy as numpy_backend

PACKAGE = Path(rk.__file__).parent


def test_eight_threads_at_once_on_large_arrays():
    """Eight threads call at once: one at a time runs on Numba's threads, the others
    in their own."""
    rng = np.random.default_rng(8)
    size = numpy_backend.PARALLEL_MIN_BYTES // 2 + 12345
    inputs = [rng.standard_normal(size).astype(dtype) for dtype in (np.float32, np.float64) * 4]
    leaks = [0.0, 0.1, 0.2, 0, -1.5, 3.0, 0.01, 1e-3]
    results: dict[int, tuple] = {}
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            results[i] = (rk.relu(inputs[i], leaks[i]), rk.relu_and_dash(inputs[i], leaks[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, (y, (y2, dy)) in results.items():
        expected = oracle.relu(inputs[i], leaks[i])
        np.testing.assert_array_equal(y, expected, strict=True)
        np.testing.assert_array_equal(y2, expected, strict=True)
        np.testing.assert_array_equal(dy, oracle.relu_dash(inputs[i], leaks[i]), strict=True)


def _run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _zipped_package(tmp_path: Path) -> Path:
    """The package as a zip archive: a package directory nobody can write, root included."""
    archive = tmp_path / "relukernels.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in PACKAGE.rglob("*.py"):
            zipped.write(path, path.relative_to(PACKAGE.parent))
    return archive


FIRST_CALL = """
    import sys, warnings
    sys.path.insert(0, {archive!r})
    import numpy as np
    import relukernels as rk
    assert rk.__file__.startswith({archive!r}), rk.__file__
    x = np.array([-2.0, 0.5, -np.inf], np.float32)
    print(rk.relu(x, 0.5).tolist(), rk.relu_and_dash(x)[1].tolist())
"""


def test_first_call_from_a_read_only_package_caches_in_the_user_directory(tmp_path):
    archive = _zipped_package(tmp_path)
    cache_home = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache_home), "HOME": str(tmp_path), "PYTHONPATH": ""}
    env.pop("NUMBA_CACHE_DIR", None)
    done = _run_python(FIRST_CALL.format(archive=str(archive)), env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("]")[0] == "[-1.0, 0.5, -inf"
    assert list(cache_home.rglob("*.nbi")), "no kernel was cached in the user directory"
    again = _run_python(FIRST_CALL.format(archive=str(archive)), env, tmp_path)
    assert again.returncode == 0 and again.stdout == done.stdout, again.stderr


def test_first_call_with_no_writeable_cache_anywhere_still_computes(tmp_path):
    archive = _zipped_package(tmp_path)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the cache directory would be")
    env = {"XDG_CACHE_HOME": str(blocker / "cache"), "HOME": str(blocker), "PYTHONPATH": ""}
    calls_on_every_route = """
    big = np.linspace(-1, 1, 1 << 18, dtype=np.float32)
    rk.relu(big, 0.1), rk.relu(big[::2], 0.1), rk.relu_backward(big, big, 0.1), rk.relu(big.astype(np.float16))
    rk.relu(np.arange(-3, 3), 2), rk.relu_dash(x, np.float32([0.5]))
    """
    done = _run_python(FIRST_CALL.format(archive=str(archive)) + calls_on_every_route, env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("]")[0] == "[-1.0, 0.5, -inf"
    warned = [line for line in done.stderr.splitlines() if "Warning" in line]
    assert len(warned) == 1 and "compiling in memory" in warned[0], done.stderr


def test_import_is_light():
    """No Numba, CUDA, CuPy, torch, JAX or Dask until an array of theirs arrives."""
    code = """
        import sys
        import relukernels as rk
        heavy = ["numba", "numba.cuda", "cupy", "torch", "jax", "dask", "array_api_compat"]
        print([m for m in heavy if m in sys.modules])
        rk.relu([1.0, -1.0])
        print([m for m in heavy if m in sys.modules])
    """
    done = _run_python(code, {}, Path.cwd())
    assert done.returncode == 0, done.stderr
    before, after = done.stdout.splitlines()
    assert before == "[]"
    assert after == "['numba']"


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # JAX's threads, when JAX was imported
def test_a_large_call_in_a_forked_child_after_the_parent_used_the_threads():
    """GNU OpenMP (Numba's ``omp`` layer) kills a forked child on its first parallel
    region: the child must run its large calls in its own thread."""
    x = np.random.default_rng(9).standard_normal(numpy_backend.PARALLEL_MIN_BYTES // 2).astype(np.float32)
    expected = rk.relu(x, 0.1)  # on Numba's threads: the layer has started
    import numba

    assert numba.threading_layer() in ("omp", "tbb", "workqueue")
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the result is right
        code = 1
        try:
            right = np.array_equal(rk.relu(x, 0.1), expected) and np.array_equal(rk.relu_and_dash(x, 0.1)[0], expected)
            code = 0 if right else 3
        finally:
            os._exit(code)
    for _ in range(600):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung for 60 s on a large call")


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")
def test_multiprocessing_fork_workers():
    """As PyTorch's DataLoader workers do: fork after the parent used the kernels."""
    import multiprocessing

    x = np.linspace(-1, 1, numpy_backend.PARALLEL_MIN_BYTES // 2)
    expected = rk.relu(x, 0.2)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap_async(rk.relu, [(x, 0.2)] * 2, chunksize=1).get(timeout=60)
    for result in results:
        np.testing.assert_array_equal(result, expected, strict=True)


LAYER_CHECK = """
    import os, threading
    import numba
    import numpy as np
    import relukernels as rk
    from relukernels._backends.numpy import PARALLEL_MIN_BYTES

    numba.set_num_threads(2)
    x = np.linspace(-1, 1, PARALLEL_MIN_BYTES // 2)
    expected = np.where(x <= 0, 0.1 * x, x)
    assert np.array_equal(rk.relu(x, 0.1), expected)
    failures = []

    def work():
        for _ in range(20):
            if not np.array_equal(rk.relu(x, 0.1), expected):
                failures.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pid = os.fork()
    if pid == 0:
        os._exit(0 if np.array_equal(rk.relu(x, 0.1), expected) else 3)
    child = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    print(numba.threading_layer(), numba.config.THREADING_LAYER, numba.get_num_threads(), len(failures), child)
"""


@pytest.mark.parametrize("layer", ["default", "omp", "workqueue", "tbb"])
def test_threads_forks_and_the_users_numba_settings_under_each_threading_layer(layer):
    """Calls from four threads at once and a large call in a forked child work under
    every layer Numba can load here (``workqueue`` aborts on concurrent use; GNU
    OpenMP kills forked children), and the layer and thread count stay the user's."""
    import numba

    if layer == "tbb":
        try:
            numba.np.ufunc.parallel._check_tbb_version_compatible()
        except ImportError:
            pytest.skip("Numba's TBB layer cannot load here (no libtbb.so.12 on the loader's path)")
    if layer == "omp":
        try:
            import numba.np.ufunc.omppool  # noqa: F401
        except ImportError:
            pytest.skip("Numba's OpenMP layer cannot load here")
    done = _run_python(LAYER_CHECK, {"NUMBA_THREADING_LAYER": layer}, Path.cwd())
    assert done.returncode == 0, done.stderr
    used, configured, threads, failures, child = done.stdout.split()
    assert configured == layer and (layer == "default" or used == layer)
    assert (threads, failures, child) == ("2", "0", "0")
    assert "Terminating" not in done.stderr


def test_a_formula_edit_recompiles_every_cached_kernel(tmp_path):
    """Numba's disk cache checks only the compiled function's own file: every cached
    kernel lives in _kernels.py with the formulas, so an edit there reaches them all."""
    copy = tmp_path / "relukernels"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    code = """
        import numpy as np
        import relukernels as rk
        from relukernels import ufuncs
        x = np.array([-2.0, 3.0])
        print(rk.relu(x, 0.5).tolist(), rk.relu(x[::-1], 0.5).tolist(), ufuncs.relu(x, 0.5).tolist(),
              rk.relu_backward(np.ones(2), x, 0.5).tolist())
    """
    env = {"PYTHONPATH": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    before = _run_python(code, env, tmp_path)
    assert before.returncode == 0, before.stderr
    assert before.stdout.split() == "[-1.0, 3.0] [3.0, -1.0] [-1.0, 3.0] [0.5, 1.0]".split()
    kernels = copy / "_kernels.py"
    source = kernels.read_text()
    edited = source.replace("scaled = a * (x if a != 0 else a)", "scaled = 2 * a * (x if a != 0 else a)")
    edited = edited.replace("return g * a if", "return 3 * g * a if")
    assert edited.count("2 * a") == 1 and edited.count("3 * g") == 1
    kernels.write_text(edited)
    after = _run_python(code, env, tmp_path)
    assert after.returncode == 0, after.stderr
    assert after.stdout.split() == "[-2.0, 3.0] [3.0, -2.0] [-2.0, 3.0] [1.5, 1.0]".split()
