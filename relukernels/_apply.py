"""Stream a ``.npy`` file through the kernels to another, in batches, CPU or GPU.

Memory stays bounded by the batch size whatever the file's size: each batch of the
input and of the output is memory-mapped on its own and unmapped once done. The output
is written to a hidden temporary file beside it (its full size reserved first, so a
full disk shows up at once rather than as a crash mid-run) and renamed into place only
when complete: an interrupted run never leaves a partial file under the output name,
and removes its temporary file. One killed outright (SIGKILL, a crash) cannot; the
next run to the same output removes it once its process is gone.

On the GPU, batches go through pinned host buffers on two CUDA streams, so that one
batch's copy to the device, its kernel and the previous batch's copy back overlap. The
GPU path uses only Numba's CUDA API, so it also runs on Numba's CUDA simulator.
"""

from __future__ import annotations

import errno
import glob
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from . import _validate

OPS = ("relu", "relu_dash", "both")
DEFAULT_BATCH_BYTES = 64 << 20


class ApplyError(Exception):
    """A problem with the files or options, explained in one line."""


@dataclass(frozen=True)
class Report:
    """What one ``apply_file`` call did."""

    elements: int
    bytes_moved: int  # read plus written
    seconds: float
    device: str

    @property
    def gb_per_s(self) -> float:
        return self.bytes_moved / self.seconds / 1e9 if self.seconds else math.inf


@dataclass(frozen=True)
class _Npy:
    """The layout of a ``.npy`` file: where the data starts and what it holds."""

    path: Path
    offset: int
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def size(self) -> int:
        return math.prod(self.shape)


def apply_file(
    src: str | os.PathLike,
    dst: str | os.PathLike | tuple[str | os.PathLike, str | os.PathLike],
    *,
    leak: int | float = 0,
    op: str = "relu",
    device: str = "auto",
    batch_bytes: int = DEFAULT_BATCH_BYTES,
    overwrite: bool = False,
    in_place: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Apply ``op`` to the array in ``src`` and save the result as ``.npy`` in ``dst``.

    Parameters
    ----------
    src : path
        A ``.npy`` file of a real floating or integer dtype.
    dst : path, or a pair of paths for ``op="both"``
        Where the result goes (``relu``'s first, then ``relu_dash``'s); names end in
        ``.npy``.
    leak : int or float
        As in :func:`relukernels.relu` (an int keeps an integer file's dtype).
    op : {"relu", "relu_dash", "both"}
    device : {"auto", "cpu", "cuda"}
        ``auto`` uses a GPU when Numba finds one, never its CUDA simulator (which
        ``cuda`` takes under ``NUMBA_ENABLE_CUDASIM=1``: slow, for tests).
    batch_bytes : int
        Input bytes per batch; memory use stays near a few batches.
    overwrite, in_place : bool
        Allow replacing an existing output, or writing over the input.
    progress : callable, optional
        Called with the number of elements done and the total after each batch.

    Returns
    -------
    Report
        Elements, bytes read and written, seconds and the device used.
    """
    if op not in OPS:
        raise ApplyError(f"--op must be one of {', '.join(OPS)}, not {op!r}")
    leak = _validate.leak(leak)
    # op="both" takes dst as its pair of paths (two of them: checked just below)
    paths = cast("Iterable[str | os.PathLike[str]]", dst if op == "both" else (dst,))
    targets = [Path(p) for p in paths]
    if op == "both" and len(targets) != 2:
        raise ApplyError("--op both writes two outputs: give two output paths")
    source = _read_header(Path(src))
    a, out_dtype = _validate.numpy_result(source.dtype, leak)
    _check_targets(source.path, targets, overwrite, in_place)
    use_gpu = _choose_device(device)
    batch = max(1, batch_bytes // source.dtype.itemsize)
    temporaries: list[Path] = []  # each listed before it is made: an interrupt while it is made removes it too
    outputs: list[_Npy] = []
    started = time.perf_counter()
    try:
        for target in targets:
            _remove_stale_partials(target)
            temporaries.append(_partial_path(target))
            outputs.append(_start_output(temporaries[-1], target, source, out_dtype))
        run = _run_gpu if use_gpu else _run_cpu
        report_done = (lambda done: progress(done, source.size)) if progress else (lambda done: None)
        run(source, outputs, op, a, batch, report_done)
        for output, target in zip(outputs, targets, strict=True):
            with open(output.path, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(output.path, target)
    except BaseException:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    moved = source.size * (source.dtype.itemsize + len(targets) * out_dtype.itemsize)
    return Report(source.size, moved, seconds, "cuda" if use_gpu else "cpu")


def _read_header(path: Path) -> _Npy:
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if reader is None:
                raise ApplyError(f"{path}: unsupported .npy format version {version}")
            shape, fortran_order, dtype = reader(handle)
            offset = handle.tell()
    except FileNotFoundError:
        raise ApplyError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ApplyError(f"{path}: is a directory, not a .npy file") from None
    except PermissionError:
        raise ApplyError(f"{path}: not readable (permission denied)") from None
    except ValueError as error:
        raise ApplyError(f"{path}: not a .npy file ({error})") from None
    try:
        _validate.dtype_rule(np, dtype)
    except TypeError:
        raise ApplyError(
            f"{path}: dtype {dtype} is not supported; apply takes real floating or integer arrays"
        ) from None
    expected = offset + math.prod(shape) * dtype.itemsize
    if path.stat().st_size < expected:
        raise ApplyError(f"{path}: truncated: {path.stat().st_size} bytes, the header promises {expected}")
    return _Npy(path, offset, tuple(shape), dtype, fortran_order)


def _check_targets(src: Path, targets: list[Path], overwrite: bool, in_place: bool) -> None:
    if len(targets) == 2 and targets[0].resolve() == targets[1].resolve():
        raise ApplyError("the two outputs of --op both must be different files")
    for target in targets:
        if target.suffix.lower() != ".npy":
            raise ApplyError(f"{target}: apply writes .npy files; give an output name ending in .npy")
        if target.is_dir():
            raise ApplyError(f"{target}: is a directory; give the name of a .npy file to write")
        if target.resolve() == src.resolve():
            if not in_place:
                raise ApplyError(f"{target}: is the input; pass --in-place to replace it")
        elif target.exists() and not overwrite:
            raise ApplyError(f"{target}: exists; pass --overwrite to replace it")
        folder = target.parent
        if not folder.is_dir():
            raise ApplyError(f"{folder}: output directory does not exist")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ApplyError(f"{folder}: output directory is not writeable")


def _choose_device(device: str) -> bool:
    """True for the GPU: ``cuda`` takes what Numba finds, its CUDA simulator included;
    ``auto`` only a real GPU (the simulator runs each element in Python)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ApplyError(f"--device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return False
    try:
        from numba import config, cuda

        found = cuda.is_available()
        simulated = bool(config.ENABLE_CUDASIM)
    except Exception:  # numba-cuda missing or broken: no GPU for us
        found = simulated = False
    if device == "cuda" and not found:
        raise ApplyError("--device cuda: no CUDA GPU found (is numba-cuda installed, is a driver loaded?)")
    return found and (device == "cuda" or not simulated)


def _partial_prefix(target: Path) -> str:
    """The name of ``target``'s hidden temporary files on this host, but for the id of
    the process that writes one (``_partial_path``)."""
    return f".{target.name}.partial-{socket.gethostname()}-"


def _partial_path(target: Path) -> Path:
    """This process's temporary file for ``target``: named after the host and process,
    so that a later run can tell when the process is gone."""
    return target.parent / f"{_partial_prefix(target)}{os.getpid()}"


def _remove_stale_partials(target: Path) -> None:
    """Remove temporary files of ``target`` left by runs on this host whose process is
    gone (killed outright, or crashed). Those of other hosts, which may share the
    folder on a network file system, and of living processes are left alone."""
    prefix = _partial_prefix(target)
    for path in target.parent.glob(glob.escape(prefix) + "*"):
        pid = path.name[len(prefix):]
        if pid.isdigit() and not _process_exists(int(pid)):
            path.unlink(missing_ok=True)


def _process_exists(pid: int) -> bool:
    """Whether process ``pid`` exists (anyone's); True where that cannot be asked
    harmlessly (on Windows, ``os.kill`` ends the process)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def _start_output(temporary: Path, target: Path, source: _Npy, dtype: np.dtype) -> _Npy:
    """``temporary``, a ``.npy`` file for ``target`` with its header written and its
    data space reserved (``_reserve``)."""
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": source.fortran_order, "shape": source.shape,
    }
    data_bytes = source.size * dtype.itemsize
    try:
        with open(temporary, "wb") as handle:
            np.lib.format.write_array_header_2_0(handle, header)
            data_start = handle.tell()
            _reserve(handle.fileno(), temporary.parent, data_start, data_bytes)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise ApplyError(
                f"{target.parent}: no room for {data_bytes:,} bytes ({os.strerror(error.errno)})"
            ) from None
        raise ApplyError(f"{temporary}: cannot write ({error.strerror or error})") from None
    return _Npy(temporary, data_start, source.shape, dtype, source.fortran_order)


def _reserve(fd: int, folder: Path, start: int, length: int) -> None:
    """Reserve ``length`` bytes of file ``fd`` (in ``folder``) from ``start``, so that a
    full disk fails here rather than mid-run, where a memory-mapped write to a full
    disk kills the process (SIGBUS).

    ``os.posix_fallocate`` where the system has it and the file system supports it.
    Elsewhere (macOS, Windows) the file is extended without allocating, once the file
    system's free space is checked: a full disk still fails here, but one filled by
    others during the run is not guarded against. Raises ``OSError`` (``ENOSPC`` for
    too little space)."""
    if length == 0:
        return
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, start, length)
            return
        except OSError as error:
            if error.errno != errno.EOPNOTSUPP:
                raise  # else the file system cannot allocate (musl does not emulate it): extend the file
    if shutil.disk_usage(folder).free < length:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.ftruncate(fd, start + length)


def _batch_map(path: Path, header_bytes: int, dtype: np.dtype, start: int, count: int,
               mode: Literal["r", "r+"]) -> np.memmap:
    """Elements ``start .. start+count`` of a file's data, mapped on their own."""
    return np.memmap(path, dtype=dtype, mode=mode, offset=header_bytes + start * dtype.itemsize, shape=(count,))


def _run_cpu(source: _Npy, outputs: list[_Npy], op: str, a: int | float, batch: int,
             progress: Callable[[int], None]) -> None:
    import relukernels as rk

    for start in range(0, source.size, batch):
        count = min(batch, source.size - start)
        x = _batch_map(source.path, source.offset, source.dtype, start, count, "r")
        outs = [_batch_map(out.path, out.offset, out.dtype, start, count, "r+") for out in outputs]
        if op == "both":
            rk.relu_and_dash(x, a, out=tuple(outs))
        else:
            getattr(rk, op)(x, a, out=outs[0])
        for out in outs:
            out.flush()
        del x, outs  # unmap: the pages leave this process
        progress(start + count)


def _run_gpu(source: _Npy, outputs: list[_Npy], op: str, a: int | float, batch: int,
             progress: Callable[[int], None]) -> None:
    """Two slots, each with a stream, pinned buffers and device buffers: while slot
    k's batch is copied in, computed and copied out, the host reads the next batch and
    writes the previous one."""
    from numba import cuda

    from ._backends import _numba_cuda

    dtype = outputs[0].dtype
    kernel_op = "relu_and_dash" if op == "both" else op
    leak_scalar = dtype.type(a)
    batch = min(batch, max(source.size, 1))
    slots = [_Slot(cuda, batch, source.dtype, dtype, len(outputs)) for _ in range(2)]

    def finish(slot: _Slot) -> None:
        if slot.pending is None:
            return
        start, count = slot.pending
        slot.stream.synchronize()
        for output, host in zip(outputs, slot.host_out, strict=True):
            out = _batch_map(output.path, output.offset, dtype, start, count, "r+")
            out[:] = host[:count]
            out.flush()
            del out
        slot.pending = None
        progress(start + count)

    number = -1
    for number, start in enumerate(range(0, source.size, batch)):
        slot = slots[number % 2]
        finish(slot)  # this slot's previous batch: written out, buffers free again
        count = min(batch, source.size - start)
        x = _batch_map(source.path, source.offset, source.dtype, start, count, "r")
        slot.host_in[:count] = x
        del x
        device_in = slot.device_in[:count]
        device_out = tuple(d[:count] for d in slot.device_out)
        device_in.copy_to_device(slot.host_in[:count], stream=slot.stream)
        # The buffers are whole allocations sliced from their start: contiguous and
        # aligned, as the quads kernel needs.
        _numba_cuda.launch(kernel_op, "quads", device_in, leak_scalar, device_out, slot.stream)
        for device, host in zip(device_out, slot.host_out, strict=True):
            device.copy_to_host(host[:count], stream=slot.stream)
        slot.pending = (start, count)
    finish(slots[(number + 1) % 2])  # the older of the two batches in flight first
    finish(slots[number % 2])


class _Slot:
    """One of the GPU path's two pipelines: a stream, pinned host buffers, device
    buffers, and the (start, count) of the batch in flight, if any."""

    def __init__(self, cuda: Any, batch: int, in_dtype: np.dtype, out_dtype: np.dtype, outputs: int) -> None:
        self.stream = cuda.stream()
        self.host_in = cuda.pinned_array(batch, in_dtype)
        self.host_out = [cuda.pinned_array(batch, out_dtype) for _ in range(outputs)]
        self.device_in = cuda.device_array(batch, in_dtype)
        self.device_out = [cuda.device_array(batch, out_dtype) for _ in range(outputs)]
        self.pending: tuple[int, int] | None = None
