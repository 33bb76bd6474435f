"""The GPU check, in one call on a lent machine (see README, "On a GPU").

1. The `cuda` and `gpu` tests with real CuPy and PyTorch CUDA (autograd, torch.compile,
   array leaks, relu_backward).
2. Where the time of a small call goes (host wall-clock per call), and the kernel
   kinds (quads, flat, strided) on the same 2**28 elements.
3. The bandwidth table: relukernels on CuPy against a device-to-device copy, CuPy's
   own `where` formula, a CuPy ElementwiseKernel and PyTorch, float32 at 2**10,
   2**20, 2**26 and 2**28 elements; CUDA events, warm-up, medians.
4. Fused calls: relu_and_dash against two calls, relu_backward against
   `grad * relu_dash`, 2**28 float32.
5. Training against PyTorch CUDA's leaky_relu (benchmarks/training.py's tables).
6. `apply` on a 4 GiB file, GPU and CPU, beside `dd` of the same file.
7. The asv suite's GPU series, into $OUT/asv-results (when asv is importable).

Writes gpu_check.json (and the pytest log) to $OUT when set. Installs nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("OUT", ROOT / "benchmarks"))


def section(title: str) -> None:
    print(f"\n=== {title} ({time.strftime('%H:%M:%S')})", flush=True)


def versions() -> dict:
    import cupy
    import numba
    import numpy

    found = {"python": platform.python_version(), "numpy": numpy.__version__, "numba": numba.__version__,
             "cupy": cupy.__version__}
    for name in ("numba_cuda", "torch"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = "not installed"
    found["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return found


def run_tests(timeout: int) -> int:
    """The tests, streamed to the console and to $OUT/gpu_pytest.log."""
    command = [
        sys.executable, "-m", "pytest", "-m", "cuda or gpu", "-v", "--maxfail=5", "--tb=short",
        "-p", "no:cacheprovider", "-rs", "--timeout=120",
    ]
    environment = {**os.environ, "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "gpu")}
    with (OUT / "gpu_pytest.log").open("w") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        deadline = time.monotonic() + timeout
        for line in process.stdout:
            log.write(line)
            print(line, end="", flush=True)
            if time.monotonic() > deadline:
                process.kill()
                print(f"-- tests stopped after {timeout} s", flush=True)
                break
        return process.wait()


def _host_microseconds(calls: dict) -> dict:
    """Median host microseconds per call of each callable (15 batches of 200 calls)."""
    import cupy

    result = {}
    for name, call in calls.items():
        for _ in range(200):
            call()
        cupy.cuda.get_current_stream().synchronize()
        samples = []
        for _ in range(15):
            start = time.perf_counter()
            for _ in range(200):
                call()
            samples.append((time.perf_counter() - start) / 200 * 1e6)
            cupy.cuda.get_current_stream().synchronize()
        result[name] = sorted(samples)[len(samples) // 2]
        print(f"  {name:44} {result[name]:8.1f} µs", flush=True)
    return result


def launch_breakdown() -> dict:
    """Host microseconds per call at 1,024 float32 elements, for each layer of the call."""
    import cupy
    import numpy as np
    from numba import cuda

    import relukernels as rk
    from relukernels._backends import _numba_cuda
    from relukernels._backends import cuda as cuda_backend

    x = cupy.random.default_rng(1).standard_normal(1024, dtype=cupy.float32)
    y = cupy.empty_like(x)
    dx, dy = cuda.as_cuda_array(x), cuda.as_cuda_array(y)
    pointers = [x.data.ptr, y.data.ptr]
    layouts = (cuda_backend._CupyArrays.view(x)[1], cuda_backend._CupyArrays.view(y)[1])
    [(kind, raw)] = cuda_backend._plan(layouts, cuda_backend._aligned(pointers, layouts))
    stream = _numba_cuda.stream_for(0, cupy.cuda.get_current_stream().ptr)
    elementwise = cupy.ElementwiseKernel("float32 x, float32 a", "float32 y", "y = x <= 0 ? a * x : x", "ew")
    a = np.float32(0.1)
    numba_stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)

    def enter_device() -> None:
        with x.device:
            pass

    return _host_microseconds({
        "rk.relu(x, 0.1, out=y)": lambda: rk.relu(x, 0.1, out=y),
        "rk.relu(x, 0.1)": lambda: rk.relu(x, 0.1),
        "cupy ElementwiseKernel(out=y)": lambda: elementwise(x, a, y),
        "cupy.where formula": lambda: cupy.where(x <= 0, a * x, x),
        "_numba_cuda.launch, device arrays ready": (
            lambda: _numba_cuda.launch("relu", "quads", dx, a, (dy,), numba_stream)
        ),
        f"launch_raw ({kind}), arguments ready": (
            lambda: _numba_cuda.launch_raw("relu", kind, a, pointers, raw, stream, 0)
        ),
        "_plan (cached) and _aligned": lambda: cuda_backend._plan(layouts, cuda_backend._aligned(pointers, layouts)),
        "_CupyArrays.view(x)": lambda: cuda_backend._CupyArrays.view(x),
        "with x.device": enter_device,
        "cupy.cuda.get_current_stream().ptr": lambda: cupy.cuda.get_current_stream().ptr,
        "cupy.empty_like(x)": lambda: cupy.empty_like(x),
        "numba as_cuda_array(x)": lambda: cuda.as_cuda_array(x, sync=False),
    })


def kernel_kinds() -> dict:
    """The three kernels on the same 2**28 float32 elements, timed by the bench harness
    (CUDA events, interleaved rounds, medians) beside a device-to-device copy: the quads
    kernel's vector accesses against the flat kernel's scalar ones."""
    import cupy
    import numpy as np

    from relukernels import _bench
    from relukernels._backends import _numba_cuda

    n = 1 << 28
    x = cupy.random.default_rng(2).standard_normal(n, dtype=cupy.float32)
    y = cupy.empty_like(x)
    pointers = [x.data.ptr, y.data.ptr]
    flat = (_numba_cuda.RawArray(0, (n,), (4,), x.dtype),) * 2
    four_d = (_numba_cuda.RawArray(0, (1, 1, 1 << 14, 1 << 14), (0, 0, 1 << 16, 4), x.dtype),) * 2
    stream = _numba_cuda.stream_for(0, cupy.cuda.get_current_stream().ptr)
    a = np.float32(0.1)

    def kernel(kind: str, arrays: tuple) -> _bench.Case:
        launch = lambda: _numba_cuda.launch_raw("relu", kind, a, pointers, arrays, stream, 0)  # noqa: E731
        return _bench.Case(f"{kind} kernel", launch, 2 * x.nbytes, "cuda")

    cases = [
        _bench.Case("copy: cupy device to device", lambda: y.data.copy_from_device_async(x.data, x.nbytes),
                    2 * x.nbytes, "cuda", copy=True),
        kernel("quads", flat),
        kernel("flat", flat),
        kernel("strided", four_d),
    ]
    _bench.measure(cases, rounds=7)
    result = {"dtype": "float32", "rows": _bench._rows(cases, n)}
    print(_bench.format_table(result), flush=True)
    return result


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    report: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    section("versions")
    report["versions"] = versions()
    print(json.dumps(report["versions"]))
    section("pytest -m 'cuda or gpu' with real CuPy")
    report["pytest_returncode"] = run_tests(timeout=int(os.environ.get("GPU_TEST_TIMEOUT", "240")))
    steps = (
        ("launch cost breakdown, 1,024 float32", launch_breakdown),
        ("kernel kinds, 2**28 float32", kernel_kinds),
        ("bandwidth, float32", bandwidth),
        ("fused calls, 2**28 float32", fused_calls),
        ("training against PyTorch CUDA", training),
        ("apply: a 4 GiB float32 file, GPU and CPU", apply_check),
        ("asv GPU series", asv_gpu_series),
    )
    for title, step in steps:
        section(title)
        try:
            report[step.__name__] = step()
        except Exception as error:  # report and go on: every minute on the lent GPU counts
            print(f"{title} failed: {type(error).__name__}: {error}", flush=True)
        (OUT / "gpu_check.json").write_text(json.dumps(report, indent=2))
    return report["pytest_returncode"]


def fused_calls() -> dict:
    """``relu_and_dash`` against two calls, ``relu_backward`` against the two passes it
    fuses, into preallocated outputs (the bench harness: CUDA events, medians)."""
    import cupy

    import relukernels as rk
    from relukernels import _bench

    n = 1 << 28
    rng = cupy.random.default_rng(3)
    x, grad = rng.standard_normal(n, dtype=cupy.float32), rng.standard_normal(n, dtype=cupy.float32)
    y, dy = cupy.empty_like(x), cupy.empty_like(x)
    cases = [
        _bench.Case("copy: cupy device to device", lambda: y.data.copy_from_device_async(x.data, x.nbytes),
                    2 * x.nbytes, "cuda", copy=True),
        _bench.Case("relu then relu_dash", lambda: (rk.relu(x, 0.1, out=y), rk.relu_dash(x, 0.1, out=dy)),
                    4 * x.nbytes, "cuda"),
        _bench.Case("relu_and_dash", lambda: rk.relu_and_dash(x, 0.1, out=(y, dy)), 3 * x.nbytes, "cuda"),
        _bench.Case("grad * relu_dash", lambda: cupy.multiply(grad, rk.relu_dash(x, 0.1), out=y),
                    5 * x.nbytes, "cuda"),
        _bench.Case("relu_backward(out=)", lambda: rk.relu_backward(grad, x, 0.1, out=y), 3 * x.nbytes, "cuda"),
    ]
    _bench.measure(cases, rounds=7)
    result = {"dtype": "float32", "rows": _bench._rows(cases, n)}
    print(_bench.format_table(result), flush=True)
    return result


def training() -> dict:
    """benchmarks/training.py's PyTorch tables on CUDA tensors."""
    if importlib.util.find_spec("torch") is None:
        return {"skipped": "PyTorch is not installed"}
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import training as tables

    result = tables.torch_tables(rounds=7, device="cuda")
    print("\n\n".join(result), flush=True)
    return {"tables": result}


def asv_gpu_series() -> dict:
    """The asv suite's CUDA series on this machine and commit, written under
    $OUT/asv-results to be committed into benchmarks/results/."""
    if importlib.util.find_spec("asv") is None:
        return {"skipped": "asv is not importable: carry its wheels (README, On a GPU)"}
    import shutil

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    machine = os.environ.get("ASV_MACHINE", "nvidia-h200")
    asv = [sys.executable, "-m", "asv"]
    subprocess.run([*asv, "machine", "--machine", machine, "--yes"], cwd=ROOT, check=True)
    done = subprocess.run(
        [*asv, "run", "--python=same", "--machine", machine, "--set-commit-hash", commit,
         "--bench", "cupy|cuda", "--show-stderr"],
        cwd=ROOT, capture_output=True, text=True, timeout=int(os.environ.get("ASV_TIMEOUT", "240")),
    )
    print(done.stdout[-4000:], done.stderr[-2000:], flush=True)
    source = ROOT / "benchmarks" / "results" / machine
    if source.exists():
        shutil.copytree(source, OUT / "asv-results" / machine, dirs_exist_ok=True)
    return {"returncode": done.returncode, "machine": machine, "commit": commit}


def apply_check() -> dict:
    """``apply`` end to end on a 4 GiB file, next to the host<->device copy bandwidth."""
    import cupy
    import numpy as np

    from relukernels import apply_file

    folder = Path(os.environ.get("APPLY_DIR", "/tmp/relukernels-apply"))
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "x.npy"
    n = (4 << 30) // 4
    data = np.lib.format.open_memmap(source, mode="w+", dtype=np.float32, shape=(n,))
    step = 1 << 26
    for start in range(0, n, step):
        data[start : start + step] = np.random.default_rng(start).standard_normal(min(step, n - start), np.float32)
    data.flush()
    del data
    result: dict = {"file_bytes": n * 4}
    pinned = cupy.cuda.alloc_pinned_memory(1 << 30)
    host = np.frombuffer(pinned, np.uint8, 1 << 30)
    device = cupy.empty(1 << 30, cupy.uint8)
    for name, copy in (("h2d", lambda: device.set(host)), ("d2h", lambda: device.get(out=host))):
        copy()
        start = time.perf_counter()
        for _ in range(5):
            copy()
        cupy.cuda.Device().synchronize()
        result[f"{name}_gb_per_s"] = 5 * (1 << 30) / (time.perf_counter() - start) / 1e9
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()  # the file's read and write through the page cache, as apply's are
    subprocess.run(["dd", f"if={source}", f"of={folder / 'dd.npy'}", "bs=64M", "status=none"], check=True)
    result["dd_gb_per_s"] = n * 4 / (time.perf_counter() - start) / 1e9
    (folder / "dd.npy").unlink()
    for device_name in ("cuda", "cpu"):
        target = folder / f"y-{device_name}.npy"
        report = apply_file(source, target, leak=0.1, device=device_name, batch_bytes=256 << 20, overwrite=True)
        result[device_name] = {"seconds": report.seconds, "gb_per_s": report.gb_per_s, "device": report.device}
    a, b = np.load(folder / "y-cuda.npy", mmap_mode="r"), np.load(folder / "y-cpu.npy", mmap_mode="r")
    result["outputs_equal"] = all(
        np.array_equal(a[i : i + (1 << 24)], b[i : i + (1 << 24)]) for i in range(0, n, 1 << 24)
    )
    print(json.dumps(result, indent=1))
    for path in folder.iterdir():
        path.unlink()
    return result


def bandwidth() -> dict:
    from relukernels import _bench

    groups = ["cupy"] + (["torch"] if importlib.util.find_spec("torch") else [])
    result = _bench.run([2**10, 2**20, 2**26, 2**28], "float32", groups, rounds=7, show_progress=False)
    print(_bench.format_table(result))
    return result


if __name__ == "__main__":
    sys.exit(main())
