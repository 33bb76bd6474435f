"""Side-by-side throughput measurements: relukernels against the copy limit, the tutorial's
formula and peers, interleaved in one process so that a noisy machine hits all alike.

Each case is one call on arrays made beforehand; every round times each case once, in
a new random order (what ran just before a case, such as another library's threads
still spinning, then varies), and a case's time is its median over the rounds. Its
throughput counts bytes read plus bytes written. GPU cases time with CUDA events
around a batch of calls on the current stream.
"""

from __future__ import annotations

import functools
import importlib.util
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

import relukernels as rk

LEAK = 0.1
TUTORIAL = "tutorial np.where"
PEER = {"cpu": "torch leaky_relu out=", "cuda": "torch cuda leaky_relu out="}


@dataclass
class Case:
    """One timed call: ``run()`` moves ``bytes_moved`` bytes on ``device``."""

    name: str
    run: Callable[[], Any]
    bytes_moved: int
    device: str = "cpu"
    times: list[float] = field(default_factory=list)
    copy: bool = False  # a candidate for the copy limit


def _copy_loop(x, y):
    for i in range(x.shape[0]):
        y[i] = x[i]


@functools.cache
def _compiled_copy_loops() -> tuple[Callable[[np.ndarray, np.ndarray], None], Callable[[np.ndarray, np.ndarray], None]]:
    """``_copy_loop`` compiled, and the same loop over ``numba.prange`` on Numba's own
    thread pool; once per process (Numba then keeps one per dtype)."""
    import numba

    def parallel_copy_loop(x, y):
        for i in numba.prange(x.shape[0]):
            y[i] = x[i]

    return numba.njit(nogil=True)(_copy_loop), numba.njit(nogil=True, parallel=True)(parallel_copy_loop)


def copy_limit_cases(x: np.ndarray, y: np.ndarray) -> list[Case]:
    """The candidates for the copy limit of 1-d ``x`` into ``y``: ``np.copyto`` and a
    compiled copy loop, each in one thread and in one thread per core (the loop over
    ``prange`` on Numba's threads, ``np.copyto`` on chunks in a thread pool). The limit
    is the fastest of them, measured in the same run."""
    import numba

    loop, parallel_loop = _compiled_copy_loops()
    threads = numba.get_num_threads()
    chunks = _chunks(x.size, threads)
    pool = _copy_pool(threads)

    def threaded_copyto() -> None:
        for future in [pool.submit(np.copyto, y[lo:hi], x[lo:hi]) for lo, hi in chunks]:
            future.result()

    return [  # prange first: its OpenMP threads spin for a while after each call, slowing what runs next
        Case(f"copy: numba prange, {threads} threads", lambda: parallel_loop(x, y), 2 * x.nbytes, copy=True),
        Case("copy: np.copyto, 1 thread", lambda: np.copyto(y, x), 2 * x.nbytes, copy=True),
        Case("copy: numba loop, 1 thread", lambda: loop(x, y), 2 * x.nbytes, copy=True),
        Case(f"copy: np.copyto, {threads} threads", threaded_copyto, 2 * x.nbytes, copy=True),
    ]


def _chunks(length: int, pieces: int) -> list[tuple[int, int]]:
    step = -(-length // pieces)
    return [(lo, min(lo + step, length)) for lo in range(0, length, step)]


@functools.cache
def _copy_pool(threads: int) -> Any:
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(threads, thread_name_prefix="relukernels-bench")


def _tutorial_relu(x: np.ndarray, leak: float) -> np.ndarray:
    return np.where(x <= 0, leak * x, x)


def available_backends() -> list[str]:
    """The comparison groups this machine can run."""
    groups = ["numpy"]
    if importlib.util.find_spec("torch"):
        groups.append("torch")
    if has_gpu():
        groups.append("cupy")
    return groups


def has_gpu() -> bool:
    """Whether CuPy is installed and sees a GPU (importing CuPy only if installed)."""
    if not importlib.util.find_spec("cupy"):
        return False
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # any CUDA failure means: no usable GPU here
        return False


def cpu_cases(n: int, dtype: np.dtype, groups: list[str]) -> list[Case]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(n).astype(dtype)
    y, dy = np.empty_like(x), np.empty_like(x)
    b = x.nbytes
    cases = [
        *copy_limit_cases(x, y),
        Case(TUTORIAL, lambda: _tutorial_relu(x, LEAK), 2 * b),
        Case("numpy maximum out=", lambda: np.maximum(x, 0, out=y), 2 * b),
        Case("rk relu(leak=0) out=", lambda: rk.relu(x, out=y), 2 * b),
        Case("rk relu out=", lambda: rk.relu(x, LEAK, out=y), 2 * b),
        Case("rk relu", lambda: rk.relu(x, LEAK), 2 * b),
        Case("rk relu_dash out=", lambda: rk.relu_dash(x, LEAK, out=dy), 2 * b),
        Case("rk relu + relu_dash out=", lambda: (rk.relu(x, LEAK, out=y), rk.relu_dash(x, LEAK, out=dy)), 4 * b),
        Case("rk relu_and_dash out=", lambda: rk.relu_and_dash(x, LEAK, out=(y, dy)), 3 * b),
    ]
    if "torch" in groups:
        import torch

        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        cases += [
            Case("torch leaky_relu out=", lambda: torch._C._nn.leaky_relu(tx, LEAK, out=ty), 2 * b),
            Case("torch leaky_relu", lambda: torch.nn.functional.leaky_relu(tx, LEAK), 2 * b),
            Case("rk torch relu out=", lambda: rk.relu(tx, LEAK, out=ty), 2 * b),
            Case("rk torch relu", lambda: rk.relu(tx, LEAK), 2 * b),
        ]
    return cases


def gpu_cases(n: int, dtype: np.dtype, groups: list[str]) -> list[Case]:
    import cupy

    x = cupy.random.default_rng(0).standard_normal(n, dtype=np.float64).astype(dtype)
    y = cupy.empty_like(x)
    b = x.nbytes
    typename = np.dtype(dtype).name if dtype != np.float16 else "float16"
    elementwise = cupy.ElementwiseKernel(
        f"{typename} x, {typename} a", f"{typename} y", "y = x <= 0 ? a * x : x", "leaky_relu_ew"
    )
    a = dtype.type(LEAK)
    cases = [
        Case("copy: cupy device to device", lambda: y.data.copy_from_device_async(x.data, b), 2 * b, "cuda", copy=True),
        Case("cupy where formula", lambda: cupy.where(x <= 0, a * x, x), 2 * b, "cuda"),
        Case("cupy ElementwiseKernel out=", lambda: elementwise(x, a, y), 2 * b, "cuda"),
        Case("rk cupy relu out=", lambda: rk.relu(x, LEAK, out=y), 2 * b, "cuda"),
        Case("rk cupy relu", lambda: rk.relu(x, LEAK), 2 * b, "cuda"),
        Case("rk cupy relu_and_dash", lambda: rk.relu_and_dash(x, LEAK), 3 * b, "cuda"),
    ]
    if "torch" in groups:
        import torch

        tx = torch.as_tensor(x, device="cuda")
        ty = torch.empty_like(tx)
        cases += [
            Case("torch cuda leaky_relu out=", lambda: torch._C._nn.leaky_relu(tx, LEAK, out=ty), 2 * b, "cuda"),
            Case("torch cuda leaky_relu", lambda: torch.nn.functional.leaky_relu(tx, LEAK), 2 * b, "cuda"),
        ]
    return cases


def _calls_per_sample(case: Case) -> int:
    """Enough calls that one sample lasts about 2 ms (timer and launch noise)."""
    start = time.perf_counter()
    _time_once(case, 1)
    elapsed = max(time.perf_counter() - start, 1e-7)
    return int(min(max(2e-3 / elapsed, 1), 10_000))


def _time_once(case: Case, calls: int) -> float:
    if case.device == "cuda":
        import cupy

        stream = cupy.cuda.get_current_stream()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record(stream)
        for _ in range(calls):
            case.run()
        end.record(stream)
        end.synchronize()
        return cupy.cuda.get_elapsed_time(start, end) / 1e3 / calls
    start_time = time.perf_counter()
    for _ in range(calls):
        case.run()
    return (time.perf_counter() - start_time) / calls


def measure(cases: list[Case], rounds: int, progress: Callable[[], None] = lambda: None) -> None:
    """Time every case ``rounds`` times, interleaved: each round runs every case once,
    in a random order."""
    calls = {}
    for case in list(cases):
        try:
            case.run()  # warm-up: compilation, allocation, caches
        except Exception as error:  # a broken peer must not hide the others' numbers
            print(f"relukernels bench: {case.name} failed and is left out: {error!r}", file=sys.stderr)
            cases.remove(case)
            continue
        calls[case.name] = _calls_per_sample(case)
    order = list(cases)
    for _ in range(rounds):
        random.shuffle(order)
        for case in order:
            case.times.append(_time_once(case, calls[case.name]))
        progress()


def peak_allocation(function: Callable[[], Any]) -> int:
    """Peak bytes that NumPy allocated during one call (tracemalloc sees NumPy's heap)."""
    function()
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def run(sizes: list[int], dtype: str, groups: list[str], rounds: int, show_progress: bool) -> dict:
    """Measure every case at every size; returns rows ready for a table or JSON."""
    dtype_ = np.dtype(dtype)
    rows = []
    suites = [make for group, make in (("numpy", cpu_cases), ("cupy", gpu_cases)) if group in groups]
    bar = progress_bar(len(sizes) * rounds * len(suites), show_progress, desc="measuring", unit="round", leave=False)
    for n in sizes:
        for make_cases in suites:
            cases = make_cases(n, dtype_, groups)
            measure(cases, rounds, bar.update)
            rows += _rows(cases, n)
            del cases  # free this size's arrays before the next are made
    bar.close()
    result = {"dtype": dtype_.name, "rows": rows}
    if "numpy" in groups:
        x = np.random.default_rng(0).standard_normal(sizes[-1]).astype(dtype_)
        result["peak_allocation"] = {
            "size": sizes[-1],
            "x_nbytes": x.nbytes,
            "rk relu": peak_allocation(lambda: rk.relu(x, LEAK)),
            TUTORIAL: peak_allocation(lambda: _tutorial_relu(x, LEAK)),
        }
    return result


def _rows(cases: list[Case], n: int) -> list[dict]:
    """One row per case; ``vs_copy`` is its throughput over the copy limit, the
    fastest of the copy candidates at this size."""
    medians = {c.name: statistics.median(c.times) for c in cases}
    rates = {c.name: c.bytes_moved / medians[c.name] for c in cases}
    limit = max(rates[c.name] for c in cases if c.copy)
    tutorial = medians.get(TUTORIAL)
    peer = next((c for c in cases if c.name == PEER[c.device]), None)
    peer_rate = rates[peer.name] if peer else None
    return [
        {
            "case": case.name,
            "device": case.device,
            "size": n,
            "copy_candidate": case.copy,
            "median_us": medians[case.name] * 1e6,
            "gb_per_s": rates[case.name] / 1e9,
            "vs_copy": rates[case.name] / limit,
            "speedup_vs_tutorial": (tutorial / medians[case.name]) if tutorial else None,
            "time_vs_torch": peer_rate / rates[case.name] if peer_rate else None,
            "samples": len(case.times),
        }
        for case in cases
    ]


class _NoBar:
    n = 0

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class _PlainBar:
    """A one-line counter on a terminal, for machines without tqdm: ``desc: n/total``,
    redrawn in place at most ten times a second."""

    def __init__(self, total: int, stream: TextIO, desc: str = "", unit: str = "it", leave: bool = True,
                 **_: Any) -> None:
        self.n, self.total, self.stream, self.leave = 0, total, stream, leave
        self.label, self.unit, self.drawn = f"{desc}: " if desc else "", unit, 0.0
        self._draw()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self.drawn > 0.1 or self.n >= self.total:
            self._draw()

    def close(self) -> None:
        self._draw()
        self.stream.write("\n" if self.leave else "\r\033[K")
        self.stream.flush()

    def _draw(self) -> None:
        percent = 100 * self.n / self.total if self.total else 100
        self.stream.write(f"\r{self.label}{self.n:,}/{self.total:,} {self.unit} ({percent:.0f}%)")
        self.stream.flush()
        self.drawn = time.monotonic()


def progress_bar(total: int, show: bool, stream: TextIO | None = None, **options: Any) -> Any:
    """A progress bar on ``stream`` (standard error by default) when ``show`` and the
    stream is a terminal: tqdm's (with tqdm's ``options``) where tqdm is installed, else
    a plain counter; otherwise one that draws nothing. All have ``n``, ``update`` and
    ``close``."""
    stream = stream or sys.stderr
    if not show or not stream.isatty():
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _PlainBar(total, stream, **options)
    return tqdm(total=total, file=stream, **options)


def format_table(result: dict) -> str:
    """The rows as a Markdown table, then the peak allocation. The column against
    PyTorch is there when PyTorch was measured."""
    with_torch = any(row["time_vs_torch"] for row in result["rows"])
    lines = [
        f"dtype {result['dtype']}; medians; GB/s counts bytes read + written; 'vs copy' is "
        "throughput over the copy limit (the fastest of the 'copy:' rows at that size and "
        "device, 1.00 for the limit itself); "
        + ("'time / torch out=' is the time over PyTorch's leaky_relu(out=) on the same device; " if with_torch else "")
        + "'× np.where' is the speed-up over the tutorial's np.where.",
        "",
        "| size | case | µs/call | GB/s | vs copy |" + (" time / torch out= |" if with_torch else "") + " × np.where |",
        "| ---: | --- | ---: | ---: | ---: |" + (" ---: |" if with_torch else "") + " ---: |",
    ]
    for row in result["rows"]:
        speedup = f"{row['speedup_vs_tutorial']:.1f}" if row["speedup_vs_tutorial"] else ""
        torch = f" {row['time_vs_torch']:.2f} |" if row["time_vs_torch"] else " |"
        lines.append(
            f"| {row['size']:,} | {row['case']} | {row['median_us']:,.1f} | "
            f"{row['gb_per_s']:.1f} | {row['vs_copy']:.2f} |{torch if with_torch else ''} {speedup} |"
        )
    memory = result.get("peak_allocation")
    if memory:
        lines += [
            "",
            f"Peak allocation of one out-of-place call, {memory['size']:,} elements, "
            f"in units of x.nbytes: rk relu {memory['rk relu'] / memory['x_nbytes']:.2f}, "
            f"tutorial np.where {memory[TUTORIAL] / memory['x_nbytes']:.2f}",
        ]
    return "\n".join(lines)


MARKERS = "osD^vP*Xh<>p"


def plot(result: dict, path: str) -> None:
    """Two panels against size: GB/s (log-log) with the copy limit drawn as the limit,
    and each case's fraction of that limit; dotted verticals where the arrays
    outgrow the L2 and L3 caches and where relukernels starts using threads."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in result["rows"] if not row["copy_candidate"]]
    figure, (rates, fractions) = plt.subplots(2, 1, figsize=(12, 9), sharex=True, height_ratios=(3, 2),
                                              layout="constrained")
    for device in dict.fromkeys(row["device"] for row in result["rows"]):
        limits = _limits(result["rows"], device)
        rates.plot(list(limits), list(limits.values()), color="black", linewidth=3.5, alpha=0.35,
                   label=f"copy limit, {device}: fastest copy measured at each size")
    fractions.axhline(1.0, color="black", linewidth=3.5, alpha=0.35)
    colours = plt.get_cmap("tab10")
    for number, name in enumerate(dict.fromkeys(row["case"] for row in rows)):
        own = [row for row in rows if row["case"] == name]
        style = {
            "color": colours(number % 10),
            "marker": MARKERS[number % len(MARKERS)],
            "linestyle": "-" if name.startswith("rk ") else "--",
            "linewidth": 2 if name.startswith("rk ") else 1.2,
            "markersize": 5,
            "label": name,
        }
        sizes = [row["size"] for row in own]
        rates.plot(sizes, [row["gb_per_s"] for row in own], **style)
        fractions.plot(sizes, [row["vs_copy"] for row in own], **style)
    itemsize = np.dtype(result["dtype"]).itemsize
    for axes in (rates, fractions):
        for elements, text in _landmarks(itemsize):
            axes.axvline(elements, color="grey", linestyle=":", linewidth=1)
            if axes is fractions:
                axes.annotate(text, (elements, 1), xycoords=("data", "axes fraction"), xytext=(3, -3),
                              textcoords="offset points", rotation=90, va="top", fontsize=7, color="dimgrey")
        axes.grid(True, which="both", alpha=0.25)
    rates.set(xscale="log", yscale="log", ylabel="GB/s (bytes read + written)",
              title=f"relukernels throughput, {result['dtype']}, medians")
    fractions.set(xlabel="elements", ylabel="fraction of the copy limit")
    fractions.set_ylim(bottom=0)
    figure.legend(*rates.get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _limits(rows: list[dict], device: str) -> dict[int, float]:
    """Size -> GB/s of the fastest copy candidate on ``device``."""
    limits: dict[int, float] = {}
    for row in rows:
        if row["copy_candidate"] and row["device"] == device:
            limits[row["size"]] = max(limits.get(row["size"], 0.0), row["gb_per_s"])
    return limits


def _landmarks(itemsize: int) -> list[tuple[int, str]]:
    """Sizes (elements) where something changes on this machine: x and y together
    outgrow the L2 and the L3 cache (Linux's sysfs), and the NumPy backend starts
    splitting arrays over threads."""
    import numba

    from ._backends.numpy import PARALLEL_MIN_BYTES

    marks = [(PARALLEL_MIN_BYTES // (2 * itemsize), f"{numba.get_num_threads()} threads from here")]
    for level in (2, 3):
        for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
            if (index / "level").read_text().strip() == str(level):
                size = (index / "size").read_text().strip()
                kib = int(size.rstrip("K")) if size.endswith("K") else int(size) >> 10
                marks.append((kib * 1024 // (2 * itemsize), f"x + y fill L{level} ({kib:,} KiB)"))
    return marks
