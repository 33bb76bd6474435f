"""The NumPy front door, measured: the numbers behind benchmarks/RESULTS.md's table
"NumPy front door" (ufuncs, array leaks, strided layouts, small calls, first call).

Each group of cases is timed side by side (interleaved rounds, medians) and reported
as ratios to the group's reference, so that a noisy machine hits all alike:

    python benchmarks/front_door.py [--rounds 11]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import relukernels as rk
from relukernels import _bench, ufuncs

LEAK = 0.1


def _medians(cases: list[_bench.Case], rounds: int) -> dict[str, float]:
    _bench.measure(cases, rounds)
    return {case.name: statistics.median(case.times) for case in cases}


def _table(title: str, medians: dict[str, float], reference: str, note: str = "") -> str:
    lines = [f"**{title}**{note}", "", "| case | µs/call | time / reference |", "| --- | ---: | ---: |"]
    for name, seconds in medians.items():
        lines.append(f"| {name} | {seconds * 1e6:,.1f} | {seconds / medians[reference]:.2f} |")
    return "\n".join(lines)


def large(rounds: int) -> str:
    """32M float32, contiguous: against the copy limit; a PReLU leak against a scalar one."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1 << 25).astype(np.float32)
    y = np.empty_like(x)
    cases = _bench.copy_limit_cases(x, y) + [
        _bench.Case("rk.relu(x, 0.1, out=y)", lambda: rk.relu(x, LEAK, out=y), 2 * x.nbytes),
        _bench.Case("ufuncs.relu(x, 0.1, out=y), bare ufunc", lambda: ufuncs.relu(x, LEAK, out=y), 2 * x.nbytes),
        _bench.Case("np.maximum(x, 0, out=y)", lambda: np.maximum(x, 0, out=y), 2 * x.nbytes),
    ]
    medians = _medians(cases, rounds)
    limit = min(v for k, v in medians.items() if k.startswith("copy:"))
    medians = {"copy limit (fastest copy)": limit, **medians}
    part = _table("32M float32 (128 MiB), contiguous", medians, "copy limit (fastest copy)")
    x4 = x.reshape(32, 64, 128, 128)
    y4 = y.reshape(x4.shape)
    leak = rng.uniform(0, 0.3, (64, 1, 1)).astype(np.float32)
    cases = [
        _bench.Case("rk.relu(x, 0.1, out=y), scalar leak", lambda: rk.relu(x4, LEAK, out=y4), 2 * x.nbytes),
        _bench.Case("rk.relu(x, leak (64,1,1), out=y)", lambda: rk.relu(x4, leak, out=y4), 2 * x.nbytes),
        _bench.Case("ufuncs.relu(x, leak (64,1,1), out=y), bare ufunc", lambda: ufuncs.relu(x4, leak, out=y4),
                    2 * x.nbytes),
    ]
    medians = _medians(cases, rounds)
    return part + "\n\n" + _table("(32, 64, 128, 128) float32, PReLU leak", medians,
                                  "rk.relu(x, 0.1, out=y), scalar leak")


def small(rounds: int) -> str:
    """1,000 float32: the cost of a call."""
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    y = np.empty_like(x)
    zero = np.float32(0)
    cases = [
        _bench.Case("np.maximum(x, 0, out=y)", lambda: np.maximum(x, 0, out=y), 2 * x.nbytes),
        _bench.Case("rk.relu(x, out=y)", lambda: rk.relu(x, out=y), 2 * x.nbytes),
        _bench.Case("rk.relu(x, 0.1, out=y)", lambda: rk.relu(x, LEAK, out=y), 2 * x.nbytes),
        _bench.Case("rk.relu(x, 0.1)", lambda: rk.relu(x, LEAK), 2 * x.nbytes),
        _bench.Case("ufuncs.relu(x, 0.0, out=y), bare ufunc", lambda: ufuncs.relu(x, 0.0, out=y), 2 * x.nbytes),
        _bench.Case("ufuncs.relu(x, float32 0, out=y), bare ufunc", lambda: ufuncs.relu(x, zero, out=y), 2 * x.nbytes),
    ]
    return _table("1,000 float32", _medians(cases, rounds), "np.maximum(x, 0, out=y)")


def strided(rounds: int) -> str:
    """Strided layouts, each against np.maximum on the same view."""
    rng = np.random.default_rng(2)
    column = rng.standard_normal((1_000_000, 4)).astype(np.float32)[:, :1]
    every_other = rng.standard_normal(2_000_000).astype(np.float32)[::2]
    transposed = rng.standard_normal((1000, 1000)).astype(np.float32).T
    parts = []
    for title, x in (("(N, 1) column of (1M, 4)", column), ("x[::2], 1M", every_other),
                     ("(1000, 1000).T into a C-order out", transposed)):
        y = np.empty(x.shape, x.dtype)
        cases = [
            _bench.Case("np.maximum(x, 0, out=y)", lambda x=x, y=y: np.maximum(x, 0, out=y), 2 * x.nbytes),
            _bench.Case("rk.relu(x, out=y)", lambda x=x, y=y: rk.relu(x, out=y), 2 * x.nbytes),
            _bench.Case("rk.relu(x, 0.1, out=y)", lambda x=x, y=y: rk.relu(x, LEAK, out=y), 2 * x.nbytes),
            _bench.Case("ufuncs.relu(x, 0.1, out=y), bare ufunc", lambda x=x, y=y: ufuncs.relu(x, LEAK, out=y),
                        2 * x.nbytes),
        ]
        parts.append(_table(title, _medians(cases, rounds), "np.maximum(x, 0, out=y)"))
    return "\n\n".join(parts)


def containers(rounds: int) -> str:
    """A pandas Series of 1M float32, through the ufunc protocol."""
    import pandas as pd

    series = pd.Series(np.random.default_rng(3).standard_normal(1_000_000).astype(np.float32))
    cases = [
        _bench.Case("np.maximum(series, 0)", lambda: np.maximum(series, 0), 8 * len(series)),
        _bench.Case("rk.relu(series, 0.1)", lambda: rk.relu(series, LEAK), 8 * len(series)),
        _bench.Case("rk.relu(series.to_numpy(), 0.1), bare array", lambda: rk.relu(series.to_numpy(), LEAK),
                    8 * len(series)),
    ]
    return _table("pandas Series, 1M float32", _medians(cases, rounds), "np.maximum(series, 0)")


FIRST_RESULT = "import numpy as np, relukernels as rk; rk.relu(np.ones(3, np.float32), 0.1)"
CONTAINER_FIRST = "import numpy as np, pandas as pd, relukernels as rk; rk.relu(pd.Series([1.0, -1.0]), 0.1)"


def first_call(runs: int) -> str:
    """A fresh process's first result, warm disk cache, against `import numba` alone."""
    scripts = {
        "python -c 'import numba'": "import numba",
        "first rk.relu on a NumPy array": FIRST_RESULT,
        "import pandas; first rk.relu on a Series": CONTAINER_FIRST,
        "import pandas, numba": "import pandas, numba",
    }
    for code in scripts.values():  # warm the disk caches (Numba's and the OS's)
        subprocess.run([sys.executable, "-c", code], check=True)
    times: dict[str, list[float]] = {name: [] for name in scripts}
    for _ in range(runs):
        for name, code in scripts.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return _table(f"A fresh process, wall time (median of {runs})", medians, "python -c 'import numba'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds per group (default 11)")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; NumPy {np.__version__}; threads {rk._backends.numpy.num_threads()}\n")
    parts = (large(args.rounds), small(args.rounds), strided(args.rounds), containers(args.rounds),
             first_call(args.rounds))
    for part in parts:
        print(part, end="\n\n", flush=True)


if __name__ == "__main__":
    main()
