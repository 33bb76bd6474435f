"""The speed measures of the "fast at every size" work, before and after a change, in
one command (benchmarks/RESULTS.md, "Speed at every size"):

    python benchmarks/speed_bars.py [--rounds 15] [--before PATH] [--json FILE]

Each measure is the ratio of two calls' times (or, against the copy limit, of speeds),
the median over rounds of the ratio taken within each round; every round times each
call of a group once, in a new random order, so that a noisy machine and what ran
just before (another library's threads still spinning) hit all calls alike. The copy
limit is the fastest of ``np.copyto`` and a compiled copy loop, in one thread and on
all cores, in the same round. The first result in a fresh process is timed against
``import numba`` in whole processes, alternating. float32 throughout.

With ``--before PATH`` (a checkout of an earlier commit, e.g. from ``git worktree
add``), the same measures run on it too, in a child process with that checkout first
on ``sys.path``, alternating with this checkout, and the table shows both.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

SLOPE = 0.1
TRAINING_SLOPE = 0.01
SIZES = [1_000, 10_000, 100_000, 1_000_000, 4_000_000, 32_000_000]


def _calls_per_sample(call: Callable[[], Any]) -> int:
    start = time.perf_counter()
    call()
    return int(min(max(2e-3 / max(time.perf_counter() - start, 1e-7), 1), 20_000))


def _rounds(cases: dict[str, Callable[[], Any]], rounds: int) -> list[dict[str, float]]:
    """Each case's time per call (seconds) in every round, the cases in a random order."""
    calls = {}
    for name, call in cases.items():
        call()
        calls[name] = _calls_per_sample(call)
    order, times = list(cases), []
    for _ in range(rounds):
        random.shuffle(order)
        round_times = {}
        for name in order:
            start = time.perf_counter()
            for _ in range(calls[name]):
                cases[name]()
            round_times[name] = (time.perf_counter() - start) / calls[name]
        times.append(round_times)
    return times


def _median_ratio(times: list[dict[str, float]], numerator: Callable[[dict], float],
                  denominator: Callable[[dict], float]) -> float:
    return statistics.median(numerator(t) / denominator(t) for t in times)


def _copy_cases(x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[], Any]]:
    """The copy limit's candidates: np.copyto and a compiled loop, one thread and all."""
    from concurrent.futures import ThreadPoolExecutor

    import numba

    def loop(a, b):
        for i in numba.prange(a.shape[0]):
            b[i] = a[i]

    serial, parallel = numba.njit(loop), numba.njit(parallel=True)(loop)
    threads = numba.get_num_threads()
    pool = ThreadPoolExecutor(threads)
    step = -(-x.size // threads)
    chunks = [(lo, min(lo + step, x.size)) for lo in range(0, x.size, step)]

    def copyto_threads() -> None:
        for future in [pool.submit(np.copyto, y[lo:hi], x[lo:hi]) for lo, hi in chunks]:
            future.result()

    return {"copy np.copyto": lambda: np.copyto(y, x), "copy loop": lambda: serial(x, y),
            "copy prange": lambda: parallel(x, y), "copy np.copyto threads": copyto_threads}


def by_size(rounds: int) -> dict[str, float]:
    """rk.relu(out=) against torch's leaky_relu(out=) and the copy limit, and
    relu_backward(out=) against torch's leaky_relu_backward, at each size."""
    import torch

    import relukernels as rk

    results = {}
    rng = np.random.default_rng(0)
    for n in SIZES:
        x, g = rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)
        y, dx = np.empty_like(x), np.empty_like(x)
        tx, ty, tg, tdx = (torch.from_numpy(a) for a in (x, y, g, dx))
        backward = torch.ops.aten.leaky_relu_backward.grad_input
        # Each lambda binds this size's arrays as defaults, so that the ``del`` below
        # leaves no name for a later call to find.
        cases = {
            "rk relu out=": lambda x=x, y=y: rk.relu(x, SLOPE, out=y),
            "torch leaky_relu out=": lambda tx=tx, ty=ty: torch._C._nn.leaky_relu(tx, SLOPE, out=ty),
            "rk relu_backward out=": lambda g=g, x=x, dx=dx: rk.relu_backward(g, x, SLOPE, out=dx),
            "torch leaky_relu_backward out=": (
                lambda backward=backward, tg=tg, tx=tx, tdx=tdx: backward(tg, tx, SLOPE, False, grad_input=tdx)
            ),
            **_copy_cases(x, y),
        }
        times = _rounds(cases, rounds)
        copies = [name for name in cases if name.startswith("copy")]
        results[f"relu out= time / torch, {n:.0e}"] = _median_ratio(
            times, lambda t: t["rk relu out="], lambda t: t["torch leaky_relu out="])
        results[f"relu speed / copy limit, {n:.0e}"] = _median_ratio(
            times, lambda t, copies=copies: min(t[c] for c in copies), lambda t: t["rk relu out="])
        results[f"relu_backward out= time / torch, {n:.0e}"] = _median_ratio(
            times, lambda t: t["rk relu_backward out="], lambda t: t["torch leaky_relu_backward out="])
        del x, g, y, dx, tx, ty, tg, tdx, cases
    return results


def small_calls(rounds: int) -> dict[str, float]:
    """1,000 elements: the public call against NumPy's maximum, the bare ufunc, the
    seed's formula, and a torch tensor against F.leaky_relu."""
    import torch

    import relukernels as rk
    from relukernels import ufuncs

    x = np.random.default_rng(1).standard_normal(1000, dtype=np.float32)
    y = np.empty_like(x)
    a = np.float32(SLOPE)
    t = torch.from_numpy(x.copy())
    cases = {
        "maximum": lambda: np.maximum(x, 0),
        "maximum out=": lambda: np.maximum(x, 0, out=y),
        "rk relu": lambda: rk.relu(x, SLOPE),
        "rk relu out=": lambda: rk.relu(x, SLOPE, out=y),
        "ufunc out=": lambda: ufuncs.relu(x, a, out=y),
        "seed": lambda: np.where(x <= 0, SLOPE * x, x),
        "F.leaky_relu": lambda: torch.nn.functional.leaky_relu(t, TRAINING_SLOPE),
        "rk relu torch": lambda: rk.relu(t, TRAINING_SLOPE),
    }
    times = _rounds(cases, rounds)
    return {
        "1e3 rk.relu / np.maximum": _median_ratio(times, lambda t: t["rk relu"], lambda t: t["maximum"]),
        "1e3 rk.relu out= / np.maximum out=": _median_ratio(times, lambda t: t["rk relu out="],
                                                            lambda t: t["maximum out="]),
        "1e3 ufunc out= / np.maximum out=": _median_ratio(times, lambda t: t["ufunc out="],
                                                          lambda t: t["maximum out="]),
        "1e3 rk.relu / tutorial np.where": _median_ratio(times, lambda t: t["rk relu"], lambda t: t["seed"]),
        "1e3 torch rk.relu / F.leaky_relu": _median_ratio(times, lambda t: t["rk relu torch"],
                                                          lambda t: t["F.leaky_relu"]),
    }


def ufuncs_and_containers(rounds: int) -> dict[str, float]:
    """1e6 elements: the bare ufunc and a pandas Series against NumPy's maximum."""
    import pandas as pd

    import relukernels as rk
    from relukernels import ufuncs

    x = np.random.default_rng(2).standard_normal(1_000_000, dtype=np.float32)
    y = np.empty_like(x)
    series = pd.Series(x)
    cases = {
        "maximum out=": lambda: np.maximum(x, 0, out=y),
        "ufunc out=": lambda: ufuncs.relu(x, np.float32(SLOPE), out=y),
        "series maximum": lambda: np.maximum(series, 0),
        "series rk.relu": lambda: rk.relu(series, SLOPE),
    }
    times = _rounds(cases, rounds)
    return {
        "1e6 ufunc out= / np.maximum out=": _median_ratio(times, lambda t: t["ufunc out="],
                                                          lambda t: t["maximum out="]),
        "1e6 pandas rk.relu / np.maximum": _median_ratio(times, lambda t: t["series rk.relu"],
                                                          lambda t: t["series maximum"]),
    }


def layouts(rounds: int) -> dict[str, float]:
    """Layouts and leaks that must not get slower: an (N, 1) column, every other
    element, a transpose (each against np.maximum on the same view), and a (64, 1, 1)
    PReLU leak against a number leak, on (8, 64, 32, 32) and (32, 64, 128, 128)."""
    import relukernels as rk

    rng = np.random.default_rng(3)
    column = rng.standard_normal((1_000_000, 4), dtype=np.float32)[:, :1]
    strided = rng.standard_normal(2_000_000, dtype=np.float32)[::2]
    transposed = rng.standard_normal((1000, 1000), dtype=np.float32).T
    images = rng.standard_normal((8, 64, 32, 32), dtype=np.float32)
    large = rng.standard_normal((32, 64, 128, 128), dtype=np.float32)
    slopes = rng.uniform(0, 0.3, (64, 1, 1)).astype(np.float32)
    cases = {
        "column rk": lambda: rk.relu(column, SLOPE), "column maximum": lambda: np.maximum(column, 0),
        "strided rk": lambda: rk.relu(strided, SLOPE), "strided maximum": lambda: np.maximum(strided, 0),
        "transposed rk": lambda: rk.relu(transposed, SLOPE), "transposed maximum": lambda: np.maximum(transposed, 0),
        "prelu leak": lambda: rk.relu(images, slopes), "number leak": lambda: rk.relu(images, SLOPE),
        "large prelu leak": lambda: rk.relu(large, slopes), "large number leak": lambda: rk.relu(large, SLOPE),
    }
    times = _rounds(cases, rounds)
    return {
        **{f"{kind} view rk.relu / np.maximum": _median_ratio(times, lambda t, k=kind: t[f"{k} rk"],
                                                             lambda t, k=kind: t[f"{k} maximum"])
           for kind in ("column", "strided", "transposed")},
        "(8,64,32,32) PReLU leak / number leak": _median_ratio(times, lambda t: t["prelu leak"],
                                                               lambda t: t["number leak"]),
        "(32,64,128,128) PReLU leak / number leak": _median_ratio(times, lambda t: t["large prelu leak"],
                                                                  lambda t: t["large number leak"]),
    }


def training(rounds: int) -> dict[str, float]:
    """PyTorch on the CPU against F.leaky_relu: forward+backward of 4M elements and of
    (256, 512), and an SGD step of a 784-512-512-10 MLP, batch 256."""
    import torch
    import torch.nn.functional as F

    import relukernels as rk

    results = {}
    for shape in ((4 * 1024 * 1024,), (256, 512)):
        x = torch.randn(*shape, requires_grad=True)
        grad = torch.randn(*shape)

        def step(activation, x=x, grad=grad):
            x.grad = None
            activation(x).backward(grad)

        times = _rounds({"torch": lambda: step(lambda v: F.leaky_relu(v, TRAINING_SLOPE)),
                         "rk": lambda: step(lambda v: rk.relu(v, TRAINING_SLOPE))}, rounds)
        results[f"torch forward+backward {shape} / F.leaky_relu"] = _median_ratio(
            times, lambda t: t["rk"], lambda t: t["torch"])

    def mlp(activation):
        torch.manual_seed(0)
        layers = [torch.nn.Linear(784, 512), torch.nn.Linear(512, 512), torch.nn.Linear(512, 10)]
        optimizer = torch.optim.SGD([p for layer in layers for p in layer.parameters()], lr=0.01)
        data, target = torch.randn(256, 784), torch.randint(0, 10, (256,))

        def one_step():
            optimizer.zero_grad()
            hidden = activation(layers[1](activation(layers[0](data))))
            F.cross_entropy(layers[2](hidden), target).backward()
            optimizer.step()

        return one_step

    times = _rounds({"torch": mlp(lambda v: F.leaky_relu(v, TRAINING_SLOPE)),
                     "rk": mlp(lambda v: rk.relu(v, TRAINING_SLOPE))}, rounds)
    results["MLP SGD step / F.leaky_relu"] = _median_ratio(times, lambda t: t["rk"], lambda t: t["torch"])
    return results


def memory() -> dict[str, float]:
    """Peak bytes NumPy allocates during one allocating call on 1e7 elements, over x.nbytes."""
    import relukernels as rk

    x = np.random.default_rng(4).standard_normal(10_000_000, dtype=np.float32)
    rk.relu(x, SLOPE)
    tracemalloc.start()
    rk.relu(x, SLOPE)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"peak allocation of rk.relu / x.nbytes": peak / x.nbytes}


def first_result(runs: int, path: str) -> dict[str, float]:
    """A fresh process's first result against ``import numba``, whole processes,
    alternating, the median of the pairs' ratios."""
    env = {**os.environ, "PYTHONPATH": path}
    first = [sys.executable, "-c", "import numpy as np, relukernels as rk; rk.relu(np.ones(3, np.float32), 0.1)"]
    numba = [sys.executable, "-c", "import numba"]
    ratios = []
    for run in range(runs + 1):
        times = []
        for command in (first, numba):
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True)
            times.append(time.perf_counter() - start)
        if run:  # the first pair warms the disk cache and Numba's kernel cache
            ratios.append(times[0] / times[1])
    return {"first result / import numba": statistics.median(ratios)}


def measure(rounds: int, path: str) -> dict[str, float]:
    results: dict[str, float] = {}
    for group in (by_size, small_calls, ufuncs_and_containers, layouts, training):
        results.update(group(rounds))
    results.update(memory())
    results.update(first_result(max(5, rounds // 2), path))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per group (default 15)")
    parser.add_argument("--before", help="a checkout of the earlier commit to measure too")
    parser.add_argument("--json", help="write the figures here as well")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # PYTHONPATH names the checkout
        print(json.dumps(measure(args.rounds, os.environ["PYTHONPATH"])))
        return
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    checkouts = {"after": str(Path(__file__).resolve().parent.parent)}
    if args.before:
        checkouts = {"before": str(Path(args.before).resolve()), **checkouts}
    figures: dict[str, dict[str, float]] = {}
    for label, path in checkouts.items():  # one after the other: each measures side by side within itself
        done = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(args.rounds)],
                              env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"the {label} checkout failed:\n{done.stderr}")
        figures[label] = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{started}–{time.strftime('%H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, rounds {args.rounds}\n")
    print("| measure | " + " | ".join(figures) + " |")
    print("| --- | " + " | ".join("---:" for _ in figures) + " |")
    for name in figures["after"]:
        print(f"| {name} | " + " | ".join(f"{f[name]:.2f}" if name in f else "" for f in figures.values()) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
