"""Where Numba's threads start to pay for the NumPy backend's rows loops: ``relu`` and
``relu_backward`` into ``out=``, float32, in the calling thread and on Numba's
threads, side by side, every round in a random order, medians. The numbers behind
``relukernels._backends.numpy.PARALLEL_MIN_BYTES`` (benchmarks/RESULTS.md, "Threads"):

    python benchmarks/threads.py [--rounds 11]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numba
import numpy as np

import relukernels as rk
from relukernels._backends import numpy as numpy_backend

SIZES = [1 << k for k in range(12, 24)]


def _time(call, threshold: int, repeats: int) -> float:
    numpy_backend.PARALLEL_MIN_BYTES = threshold
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="rounds per size (default 11)")
    rounds = parser.parse_args().rounds
    chosen = numpy_backend.PARALLEL_MIN_BYTES
    threads = numba.get_num_threads()  # starts Numba's threading layer
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Numba's {threads} threads, "
          f"layer {numba.threading_layer()!r}\n")
    print("| elements | relu, 1 thread (µs) | relu, threads | relu_backward, 1 thread | relu_backward, threads |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for size in SIZES:
        x, grad = rng.standard_normal((2, size), dtype=np.float32)
        out = np.empty_like(x)
        calls = {
            "relu": lambda x=x, out=out: rk.relu(x, 0.1, out=out),
            "relu_backward": lambda grad=grad, x=x, out=out: rk.relu_backward(grad, x, 0.1, out=out),
        }
        cases = [(name, threshold) for name in calls for threshold in (1 << 62, 1)]
        repeats = max(3, int(2e7 / size))
        times: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
        for name, threshold in cases:
            _time(calls[name], threshold, 1)  # compiled and warm
        for _ in range(rounds):
            random.shuffle(cases)
            for name, threshold in cases:
                times[name, threshold].append(_time(calls[name], threshold, repeats))
        cells = [f"{statistics.median(times[name, threshold]) * 1e6:,.1f}"
                 for name in calls for threshold in (1 << 62, 1)]
        print(f"| {size:,} | " + " | ".join(cells) + " |")
    numpy_backend.PARALLEL_MIN_BYTES = chosen


if __name__ == "__main__":
    main()
