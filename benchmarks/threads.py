"""Where the NumPy backend's threads start to pay: ``relu`` and ``relu_backward``
into ``out=``, float32, run in the calling thread and on chunks in the thread pool,
side by side, interleaved rounds, medians. The numbers behind
``relukernels._backends.numpy.PARALLEL_MIN_SIZE`` (benchmarks/RESULTS.md, "Threads"):

    python benchmarks/threads.py [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import relukernels as rk
from relukernels._backends import numpy as numpy_backend

SIZES = [1 << k for k in range(17, 24)]


def _median_time(call, size: int, threshold: int, rounds: int) -> float:
    numpy_backend.PARALLEL_MIN_SIZE = threshold
    repeats = max(3, int(2e7 / size))
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(repeats):
            call()
        times.append((time.perf_counter() - start) / repeats)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per case (default 7)")
    rounds = parser.parse_args().rounds
    chosen = numpy_backend.PARALLEL_MIN_SIZE
    threads = numpy_backend.num_threads()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {threads} threads in the pool\n")
    print("| elements | relu, 1 thread (µs) | relu, pool | relu_backward, 1 thread | relu_backward, pool |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    rng = np.random.default_rng(0)
    for size in SIZES:
        x, grad = rng.standard_normal((2, size), dtype=np.float32)
        out = np.empty_like(x)
        cells = []
        for call in (lambda: rk.relu(x, 0.1, out=out), lambda: rk.relu_backward(grad, x, 0.1, out=out)):
            call()
            one = _median_time(call, size, size + 1, rounds)
            pool = _median_time(call, size, 1, rounds)
            cells += [f"{one * 1e6:,.0f}", f"{pool * 1e6:,.0f}"]
        print(f"| {size:,} | " + " | ".join(cells) + " |")
    numpy_backend.PARALLEL_MIN_SIZE = chosen


if __name__ == "__main__":
    main()
