"""The ``relukernels`` command: ``demo``, ``info``, ``bench``, ``plot`` and ``apply``."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import sys
import warnings
from typing import Any, Callable

import numpy as np

import relukernels as rk
from relukernels._backends import generic
from relukernels._ops import RELU_AND_DASH
from relukernels._bench import has_gpu

TUTORIAL_EXAMPLES = [
    ("In [4]", [[0.2], [0.5], [1.2], [-2.3], [0]], 0),
    ("In [5], no leak", [[0.11], [-2.2], [0], [50.2], [33.5], [-0.6]], 0),
    ("In [7], leak = 0.1", [[-0.5], [0], [1], [2], [3], [4.5]], 0.1),
]


def _seed(x: np.ndarray, leak: float) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's two functions, verbatim."""
    return np.where(x <= 0, leak * x, x), np.where(x <= 0, leak, 1)


def _demo_backends() -> dict[str, Callable[[np.ndarray, float], tuple[Any, Any]]]:
    """Every way this machine can compute the examples, each giving NumPy results."""
    backends: dict[str, Callable[[np.ndarray, float], tuple[Any, Any]]] = {
        "seed np.where": _seed,
        "numba cpu": lambda x, a: rk.relu_and_dash(x, a),
        "numpy ufuncs": lambda x, a: rk.ufuncs.relu_and_dash(x, a),
        "formula (numpy)": lambda x, a: tuple(generic.formulas(RELU_AND_DASH, np, x, a)),
    }
    if importlib.util.find_spec("array_api_strict"):
        import array_api_strict as xp

        backends["array-api-strict"] = lambda x, a: tuple(np.asarray(r) for r in rk.relu_and_dash(xp.asarray(x), a))
    if importlib.util.find_spec("torch"):
        import torch

        backends["torch cpu"] = lambda x, a: tuple(r.numpy() for r in rk.relu_and_dash(torch.from_numpy(x), a))
    if has_gpu():
        import cupy

        backends["cupy (cuda kernels)"] = lambda x, a: tuple(r.get() for r in rk.relu_and_dash(cupy.asarray(x), a))
    return backends


def demo(_: argparse.Namespace) -> int:
    """The tutorial's three examples through every backend, side by side."""
    backends = _demo_backends()
    agree = True
    for title, values, leak in TUTORIAL_EXAMPLES:
        x = np.array(values, dtype=float).ravel()
        results = {name: backend(x, leak) for name, backend in backends.items()}
        reference = results["numba cpu"]
        print(f"\ntutorial example {title}")
        print(f"  {'x':>8} | " + " | ".join(f"{name:>20}" for name in results))
        for i, value in enumerate(x):
            cells = [f"{float(r[0][i]):>9.4g} {float(r[1][i]):>10.4g}" for r in results.values()]
            print(f"  {value:>8.4g} | " + " | ".join(cells))
        for name, (y, dy) in results.items():
            same = np.array_equal(y, reference[0]) and np.array_equal(dy, reference[1])
            agree &= same
            if not same:
                print(f"  !! {name} differs from the numba kernels")
    print("\ncolumns: relu(x) then relu_dash(x) for each backend")
    print("all backends agree" if agree else "BACKENDS DISAGREE")
    return 0 if agree else 1


def info(_: argparse.Namespace) -> int:
    """Versions, threading and which backend each installed library would use."""
    from relukernels._backends.numpy import PARALLEL_MIN_SIZE, num_threads

    print(f"relukernels {rk.__version__}")
    for name in ("numpy", "numba", "numba-cuda", "array-api-compat"):
        print(f"  {name:18} {_version(name)}")
    print(
        f"CPU: NumPy arrays run Numba loops; arrays of {PARALLEL_MIN_SIZE:,} elements or more "
        f"are split over {num_threads()} threads (RELUKERNELS_NUM_THREADS)"
    )
    print("backends (library: installed version -> backend):")
    routes = {
        "cupy": "CUDA kernels (numba.cuda), on CuPy's current stream",
        "torch": "CPU: Numba loops on zero-copy views; CUDA: CUDA kernels; autograd",
        "jax": "formula in jax.numpy (works under jit and grad)",
        "dask": "lazily per chunk, on the chunks' kernels; distributed works",
        "array-api-strict": "formula in array_api_strict",
    }
    for package, route in routes.items():
        version = _version(package)
        print(f"  {package:18} {version:12} -> {route if version != 'not installed' else '-'}")
    print(f"GPU: {_gpu_summary()}")
    return 0


def _version(distribution: str) -> str:
    candidates = [distribution] + [f"{distribution}-cuda{v}x" for v in (12, 13)]
    for candidate in candidates:
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _gpu_summary() -> str:
    if not importlib.util.find_spec("numba.cuda"):
        return "numba-cuda not installed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from numba import cuda

        if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
            return "Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1)"
        if not cuda.is_available():
            return "none found"
        names = [(d.id, d.name.decode() if isinstance(d.name, bytes) else d.name) for d in cuda.list_devices()]
    return ", ".join(f"{number}: {name}" for number, name in names)


def bench(args: argparse.Namespace) -> int:
    """Time relukernels against the copy limit, the seed formula and peers."""
    from relukernels import _bench

    available = _bench.available_backends()
    groups = args.backends or available
    missing = sorted(set(groups) - set(available))
    if missing:
        print(f"relukernels bench: not available here: {', '.join(missing)}", file=sys.stderr)
        return 2
    result = _bench.run(args.sizes, args.dtype, groups, args.rounds, show_progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_bench.format_table(result))
    if args.plot:
        _bench.plot(result, args.plot)
    return 0


def plot(args: argparse.Namespace) -> int:
    """The tutorial's figure, computed with relukernels, to a PNG."""
    from relukernels._figure import tutorial_figure

    if importlib.util.find_spec("matplotlib") is None:
        print("relukernels plot: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return 2
    tutorial_figure(args.output, args.leak)
    print(f"wrote {args.output}")
    return 0


def apply(args: argparse.Namespace) -> int:
    """Stream a .npy file through the kernels into another: one line on failure."""
    from relukernels._apply import ApplyError, apply_file

    if len(args.outputs) != (2 if args.op == "both" else 1):
        print(f"relukernels apply: error: --op {args.op} takes {2 if args.op == 'both' else 1} output path(s)",
              file=sys.stderr)
        return 2
    bar = _ApplyProgress(quiet=args.quiet)
    try:
        report = apply_file(
            args.input,
            tuple(args.outputs) if args.op == "both" else args.outputs[0],
            leak=args.leak,
            op=args.op,
            device=args.device,
            batch_bytes=args.batch_size,
            overwrite=args.overwrite,
            in_place=args.in_place,
            progress=bar,
        )
    except ApplyError as error:
        print(f"relukernels apply: error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError, TypeError) as error:
        print(f"relukernels apply: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("relukernels apply: interrupted; no output was written", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if not args.quiet:
        print(
            f"{args.op}: {report.elements:,} elements, {report.bytes_moved / 1e9:.3f} GB read and written "
            f"in {report.seconds:.2f} s ({report.gb_per_s:.2f} GB/s) on {report.device} -> {', '.join(args.outputs)}"
        )
    return 0


class _ApplyProgress:
    """apply's progress bar (see ``_bench.progress_bar``), made at the first report,
    when the total is known."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None

    def __call__(self, done: int, total: int) -> None:
        from relukernels._bench import progress_bar

        if self.bar is None:
            self.bar = progress_bar(total, not self.quiet, desc="apply", unit="el", unit_scale=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _byte_size(text: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = text.upper().rstrip("B").rstrip("I"), ""
    if number and number[-1] in "KMG":
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"--batch-size takes bytes such as 4096, 64M or 1G, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError("--batch-size must be positive")
    return value


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(float(part)) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes integers separated by commas, got {text!r}")
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--sizes must be positive")
    return sizes


class _OneLineErrors(argparse.ArgumentParser):
    """Bad options get one line on stderr (and exit 2), not the whole usage text."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relukernels", description=rk.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineErrors)
    commands.add_parser("demo", help="the tutorial's examples through every backend").set_defaults(func=demo)
    commands.add_parser("info", help="versions, threads, backends, GPU").set_defaults(func=info)
    bench_parser = commands.add_parser("bench", help="throughput against copy, seed formula and peers")
    bench_parser.add_argument("--sizes", type=_sizes, default=[1000, 1_000_000, 32_000_000], help="e.g. 1e3,1e6")
    bench_parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"])
    bench_parser.add_argument("--backends", type=lambda s: s.split(","), help="numpy,torch,cupy (default: all here)")
    bench_parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds; medians are reported")
    bench_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench_parser.add_argument("--plot", metavar="FILE.png", help="also draw throughput against size")
    bench_parser.set_defaults(func=bench)
    plot_parser = commands.add_parser("plot", help="the tutorial's figure: ReLU, leaky ReLU and derivatives")
    plot_parser.add_argument("output", nargs="?", default="relu.png", help="PNG file (default relu.png)")
    plot_parser.add_argument("--leak", type=float, default=0.1)
    plot_parser.set_defaults(func=plot)
    apply_parser = commands.add_parser("apply", help="stream a .npy file through the kernels into another")
    apply_parser.add_argument("input", help="a .npy file")
    apply_parser.add_argument("outputs", nargs="+", metavar="output", help="a .npy path (two for --op both)")
    apply_parser.add_argument("--leak", type=float, default=0.0)
    apply_parser.add_argument("--op", choices=["relu", "relu_dash", "both"], default="relu")
    apply_parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    apply_parser.add_argument("--batch-size", type=_byte_size, default="64M", help="input bytes per batch (64M)")
    apply_parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    apply_parser.add_argument("--in-place", action="store_true", help="allow the output to be the input")
    apply_parser.add_argument("--quiet", action="store_true", help="no progress bar, no final line")
    apply_parser.set_defaults(func=apply)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
