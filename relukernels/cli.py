"""The ``relukernels`` command: ``demo``, ``info``, ``bench``, ``plot`` and ``apply``."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import json
import math
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

import relukernels as rk
from relukernels._backends import generic
from relukernels._bench import has_gpu
from relukernels._ops import RELU_AND_DASH

TUTORIAL_EXAMPLES = [
    ("In [4]", [[0.2], [0.5], [1.2], [-2.3], [0]], 0),
    ("In [5], no leak", [[0.11], [-2.2], [0], [50.2], [33.5], [-0.6]], 0),
    ("In [7], leak = 0.1", [[-0.5], [0], [1], [2], [3], [4.5]], 0.1),
]


def _tutorial(x: np.ndarray, leak: float) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's two functions, verbatim."""
    return np.where(x <= 0, leak * x, x), np.where(x <= 0, leak, 1)


def _demo_backends() -> dict[str, Callable[[np.ndarray, float], tuple[Any, ...]]]:
    """Every way this machine can compute the examples, each giving NumPy results
    (``relu``'s, then ``relu_dash``'s)."""
    backends: dict[str, Callable[[np.ndarray, float], tuple[Any, ...]]] = {
        "tutorial np.where": _tutorial,
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
    if importlib.util.find_spec("jax"):
        backends["jax (float64)"] = _jax_relu_and_dash
    if importlib.util.find_spec("dask"):
        import dask.array as da

        backends["dask (2-element chunks)"] = lambda x, a: tuple(
            np.asarray(r) for r in da.compute(*rk.relu_and_dash(da.from_array(x, chunks=2), a))
        )
    if has_gpu():
        import cupy

        backends["cupy (cuda kernels)"] = lambda x, a: tuple(r.get() for r in rk.relu_and_dash(cupy.asarray(x), a))
    return backends


def _jax_relu_and_dash(x: np.ndarray, leak: float) -> tuple[np.ndarray, ...]:
    """relu_and_dash on a JAX array, in float64 like the others (JAX's default is
    float32; 64-bit is switched on for this call only)."""
    import jax

    # jax.enable_x64 from JAX 0.6, jax.experimental's before (gone from the JAX that mypy reads)
    enable_x64 = (jax.enable_x64 if hasattr(jax, "enable_x64")
                  else jax.experimental.enable_x64)  # type: ignore[attr-defined]
    with enable_x64(True):
        return tuple(np.asarray(r) for r in rk.relu_and_dash(jax.numpy.asarray(x), leak))


def demo(_: argparse.Namespace) -> int:
    """The tutorial's three examples through every backend, one row per backend."""
    backends = _demo_backends()
    width = max(map(len, backends)) + 2
    agree = True
    for title, values, leak in TUTORIAL_EXAMPLES:
        x = np.array(values, dtype=float).ravel()
        results = {name: backend(x, leak) for name, backend in backends.items()}
        reference = results["numba cpu"]
        print(f"\ntutorial example {title}")
        print(f"  {'':10}{'x':>{width}}" + "".join(f"{value:>9.4g}" for value in x))
        for part, label in enumerate(("relu", "relu_dash")):
            for row, (name, result) in enumerate(results.items()):
                cells = "".join(f"{float(value):>9.4g}" for value in np.asarray(result[part]).ravel())
                print(f"  {label if row == 0 else '':10}{name:>{width}}{cells}")
        for name, (y, dy) in results.items():
            same = np.array_equal(y, reference[0]) and np.array_equal(dy, reference[1])
            agree &= same
            if not same:
                print(f"  !! {name} differs from the numba kernels")
    print(f"\n{len(backends)} backends: {', '.join(backends)}")
    print("all backends agree (0 and -0 count as equal: the contract leaves a zero's sign open)" if agree
          else "BACKENDS DISAGREE")
    return 0 if agree else 1


def info(_: argparse.Namespace) -> int:
    """Versions, threading and which backend each installed library would use."""
    import numba

    from relukernels._backends.numpy import PARALLEL_MIN_BYTES

    print(f"relukernels {rk.__version__}")
    for name in ("numpy", "numba", "numba-cuda", "array-api-compat"):
        print(f"  {name:18} {_version(name)}")
    threads = numba.get_num_threads()  # starts Numba's threading layer, which the next line names
    print(
        "CPU: NumPy arrays run Numba loops; calls on contiguous arrays that move "
        f"{PARALLEL_MIN_BYTES >> 10:,} KiB or more run on Numba's {threads} threads (NUMBA_NUM_THREADS), "
        f"threading layer {numba.threading_layer()!r} "
        f"(NUMBA_THREADING_LAYER={numba.config.THREADING_LAYER})"
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


INSTALL_HINTS = {"torch": "pip install torch", "cupy": 'a CUDA GPU and pip install "relukernels[cuda12]"'}
BENCH_ARRAYS = 6  # x, y, dy, torch's and the tutorial formula's results, its temporary: the most alive at once
TABLE_SIZES = [1_000, 10_000, 100_000, 1_000_000, 4_000_000, 32_000_000]
PLOT_SIZES = [m * 10**e for e in range(3, 8) for m in (1, 2, 5)] + [10**8]  # 1e3, 2e3, 5e3, ... 1e8


def bench(args: argparse.Namespace) -> int:
    """Time relukernels against the copy limit, the tutorial's formula and peers."""
    from relukernels import _bench

    available = _bench.available_backends()
    groups = args.backends or available
    missing = sorted(set(groups) - set(available))
    if missing:
        needs = "; ".join(f"{name} needs {INSTALL_HINTS[name]}" for name in missing)
        print(f"relukernels bench: error: not available here: {', '.join(missing)} ({needs})", file=sys.stderr)
        return 2
    if args.plot and not _has_matplotlib("bench --plot"):
        return 2
    sizes = args.sizes or (PLOT_SIZES if args.plot else TABLE_SIZES)
    needed = BENCH_ARRAYS * max(sizes) * np.dtype(args.dtype).itemsize
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if needed > memory:
        print(f"relukernels bench: error: {max(sizes):,} elements need about {needed / 1e9:,.1f} GB, "
              f"this machine has {memory / 1e9:,.1f} GB", file=sys.stderr)
        return 2
    try:
        result = _bench.run(sizes, args.dtype, groups, args.rounds, show_progress=True)
    except MemoryError:
        print(f"relukernels bench: error: not enough free memory for {max(sizes):,} elements", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else _bench.format_table(result))
    if args.plot:
        try:
            _bench.plot(result, args.plot)
        except OSError as error:
            print(f"relukernels bench: error: cannot write {args.plot}: {error.strerror or error}", file=sys.stderr)
            return 2
        print(f"wrote {args.plot}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _has_matplotlib(command: str) -> bool:
    """Whether matplotlib is installed; if not, says so in one line on stderr."""
    if importlib.util.find_spec("matplotlib") is None:
        print(f"relukernels {command}: error: needs matplotlib (pip install matplotlib)", file=sys.stderr)
        return False
    return True


def plot(args: argparse.Namespace) -> int:
    """The tutorial's figure, computed with relukernels, to a PNG."""
    from relukernels._figure import tutorial_figure

    if not _has_matplotlib("plot"):
        return 2
    try:
        tutorial_figure(args.output, args.leak)
    except OSError as error:
        print(f"relukernels plot: error: cannot write {args.output}: {error.strerror or error}", file=sys.stderr)
        return 2
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
    failure: tuple[str, int] | None = None  # the last line and the exit status
    try:
        with bar.interrupts_between_batches():
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
    except (ApplyError, OSError, ValueError, TypeError) as error:
        failure = f"error: {error}", 2
    except KeyboardInterrupt:
        failure = "interrupted; no output was written", 130
    except _Terminated:
        failure = "terminated (SIGTERM); no output was written", 128 + signal.SIGTERM
    finally:
        bar.close()  # before the last line, which then starts a line of its own
    if failure is not None:
        print(f"relukernels apply: {failure[0]}", file=sys.stderr)
        return failure[1]
    if not args.quiet:
        elements = f"{report.elements:,} element{'' if report.elements == 1 else 's'}"
        print(
            f"{args.op}: {elements}, {report.bytes_moved / 1e9:.3f} GB read and written "
            f"in {report.seconds:.2f} s ({report.gb_per_s:.2f} GB/s) on {report.device} -> {', '.join(args.outputs)}"
        )
    return 0


class _Terminated(BaseException):
    """SIGTERM, raised between batches as ``KeyboardInterrupt`` is for SIGINT."""


_STOPS: dict[int, type[BaseException]] = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: _Terminated}
"""The signals that stop apply, and what each raises."""


class _ApplyProgress:
    """apply's progress bar (see ``_bench.progress_bar``), made at the first report,
    when the total is known; and where Ctrl-C or SIGTERM stops the run
    (``interrupts_between_batches``)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.stop: type[BaseException] | None = None

    @contextlib.contextmanager
    def interrupts_between_batches(self) -> Iterator[None]:
        """Ctrl-C (SIGINT) and SIGTERM (``kill``, ``timeout``, batch schedulers) noted,
        and raised at the next report, between batches: as ``KeyboardInterrupt`` and
        ``_Terminated``. Raised where they land, they can land in Numba's compiler (a
        ctypes callback from LLVM), which prints them and drops them, and the run went
        on to write its output. A second signal raises at once; one after the last
        batch stops nothing (the output is complete). Each only where it would stop the
        process at all: in the main thread, and where Python's default handles it
        (not where it is ignored: ``trap '' INT``, a background job's SIGINT)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def note(signum: int, frame: Any) -> None:
            if self.stop is not None:
                raise _STOPS[signum]
            self.stop = _STOPS[signum]

        defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        previous: dict[signal.Signals, Any] = {}
        for signum, default in defaults.items():
            if signal.getsignal(signum) is default:
                previous[signum] = signal.signal(signum, note)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __call__(self, done: int, total: int) -> None:
        from relukernels._bench import progress_bar

        if self.stop is not None:
            raise self.stop
        if self.bar is None:
            self.bar = progress_bar(total, not self.quiet, desc="apply", unit="el", unit_scale=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


MIN_BATCH_BYTES = 4096


def _byte_size(text: str) -> int:
    """``--batch-size``: bytes, with an optional K, M or G (binary) suffix."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = text.upper().rstrip("B").rstrip("I"), ""
    if number and number[-1] in "KMG":
        number, unit = number[:-1], number[-1]
    try:
        value = int(float(number) * units[unit])
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"--batch-size takes bytes such as 4096, 64M or 1G, got {text!r}") from None
    if value < MIN_BATCH_BYTES:
        raise argparse.ArgumentTypeError(
            f"--batch-size must be at least 4K ({MIN_BATCH_BYTES} bytes), got {text!r}: smaller batches "
            "spend their time on per-batch work, not on the data"
        )
    return value


def _sizes(text: str) -> list[int]:
    """``--sizes``: element counts separated by commas, whole numbers (``1e6`` allowed,
    ``1.5`` refused)."""
    refused = argparse.ArgumentTypeError(f"--sizes takes integers separated by commas, got {text!r}")
    try:
        counts = [float(part) for part in text.split(",")]
    except ValueError:
        raise refused from None
    if not all(count.is_integer() for count in counts):  # 1.5, nan, inf
        raise refused
    sizes = [int(count) for count in counts]
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes must be positive, got {text!r}")
    return sizes


def _backends(text: str) -> list[str]:
    """``--backends``: names among numpy, torch and cupy, separated by commas."""
    names = text.split(",")
    unknown = [name for name in names if name != "numpy" and name not in INSTALL_HINTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"--backends takes numpy, torch and cupy, got {', '.join(map(repr, unknown))}")
    return names


def _number(option: str, convert: Callable[[str], Any], kind: str, valid: Callable[[Any], bool],
            rule: str) -> Callable[[str], Any]:
    """An argparse type for ``option``: ``convert(text)``, refused unless ``valid``."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes {kind}, got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{option} must be {rule}, got {text!r}")
        return value

    return parse


_rounds = _number("--rounds", int, "a positive integer", lambda rounds: rounds >= 1, "at least 1")
def _int_or_float(text: str) -> int | float:
    """A number as Python reads it: ``2`` an int (an integer file keeps its dtype), ``2.0``
    or ``0.1`` a float (an integer file becomes float64, as NumPy promotes it)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


_leak = _number("--leak", _int_or_float, "a number", lambda v: isinstance(v, int) or math.isfinite(v), "finite")


def _png(text: str) -> str:
    """A PNG file to write: named ``*.png``, in a folder that exists and is writeable."""
    path = Path(text)
    if path.suffix.lower() != ".png":
        raise argparse.ArgumentTypeError(f"{text!r}: the figure is a PNG; give a file name ending in .png")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: folder {str(folder)!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r}: cannot write there")
    return text


class _OneLineErrors(argparse.ArgumentParser):
    """Bad options get one line on stderr (and exit 2), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _parser() -> argparse.ArgumentParser:
    """The command line: every command and option with its help and default."""
    parser = _OneLineErrors(prog="relukernels", description=rk.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"relukernels {rk.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command", parser_class=_OneLineErrors)

    def command(name: str, summary: str, function: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=f"{summary}.")
        sub.set_defaults(func=function)
        return sub

    command("demo", "the tutorial's examples through every backend installed here, side by side", demo)
    command("info", "versions, threads, which backend each installed library gets, GPUs", info)
    bench_parser = command(
        "bench", "time per call and GB/s against the copy limit, the tutorial's formula and peers", bench
    )
    bench_parser.add_argument(
        "--sizes", type=_sizes, metavar="N,N,...",
        help="element counts, e.g. 1e3,1e6 (default: 1e3,1e4,1e5,1e6,4e6,32e6; "
        f"with --plot {len(PLOT_SIZES)} sizes from 1e3 to 1e8: 1, 2, 5 in each decade)",
    )
    bench_parser.add_argument("--dtype", default="float32", choices=["float16", "float32", "float64"],
                              help="element type (default: %(default)s)")
    bench_parser.add_argument("--backends", type=_backends, metavar="NAME,...",
                              help="numpy, torch, cupy (default: all installed here)")
    bench_parser.add_argument("--rounds", type=_rounds, default=7,
                              help="interleaved rounds; medians are reported (default: %(default)s)")
    bench_parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench_parser.add_argument("--plot", metavar="FILE.png", type=_png,
                              help="also draw GB/s and the fraction of the copy limit against size")
    plot_parser = command("plot", "the tutorial's figure, ReLU and leaky ReLU and their derivatives, to a PNG "
                          "(needs matplotlib)", plot)
    plot_parser.add_argument("output", nargs="?", default="relu.png", type=_png, help="PNG file (default: %(default)s)")
    plot_parser.add_argument("--leak", type=_leak, default=0.1, help="the leaky curve's slope (default: %(default)s)")
    apply_parser = command("apply", "stream a .npy file through the kernels into another .npy file", apply)
    apply_parser.add_argument("input", help="a .npy file of a real floating or integer dtype")
    apply_parser.add_argument("outputs", nargs="+", metavar="output",
                              help="a .npy path (two for --op both: relu's, then relu_dash's)")
    apply_parser.add_argument("--leak", type=_leak, default=0,
                              help="slope for x <= 0; an integer keeps an integer file's dtype (default: %(default)s)")
    apply_parser.add_argument("--op", choices=["relu", "relu_dash", "both"], default="relu",
                              help="what to compute (default: %(default)s)")
    apply_parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                              help="auto takes a GPU when Numba finds one (default: %(default)s)")
    apply_parser.add_argument("--batch-size", type=_byte_size, default="64M",
                              help="input bytes per batch, at least 4K (default: %(default)s)")
    apply_parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    apply_parser.add_argument("--in-place", action="store_true", help="allow the output to be the input")
    apply_parser.add_argument("--quiet", action="store_true", help="no progress bar, no final line")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input or environment is one line on stderr and exit 2."""
    parser = _parser()
    # Unknown options first: argparse itself would report a missing command instead.
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("a command is required: demo, info, bench, plot or apply")
    try:
        import numba  # noqa: F401  (Numba's own settings, such as NUMBA_NUM_THREADS, fail here)
    except Exception as error:  # noqa: BLE001
        print(f"relukernels: error: Numba cannot start: {error}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"relukernels {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
