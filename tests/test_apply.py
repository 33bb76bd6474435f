"""``relukernels apply``: files through the kernels in batches, safely, CPU and GPU."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import relukernels as rk
from relukernels._apply import ApplyError, apply_file
from strategies import leaks_for, strided_arrays

DTYPES = [np.dtype(c) for c in ("f2", "f4", "f8", "i2", "u1")]


def _expected(x, op, leak):
    if op == "both":
        return list(rk.relu_and_dash(x, leak))
    return [getattr(rk, op)(x, leak)]


def _outputs(folder: Path, op: str) -> list[Path]:
    return [folder / "y.npy", folder / "dy.npy"] if op == "both" else [folder / "y.npy"]


@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_cpu_batches_equal_the_in_memory_result(tmp_path_factory, data):
    x = data.draw(strided_arrays(dtypes=DTYPES, max_dims=3, max_side=9))
    leak = data.draw(leaks_for(x.dtype))
    op = data.draw(st.sampled_from(["relu", "relu_dash", "both"]))
    batch_elements = data.draw(st.integers(1, 40))
    folder = tmp_path_factory.mktemp("apply")
    np.save(folder / "x.npy", x)
    outputs = _outputs(folder, op)
    report = apply_file(folder / "x.npy", tuple(outputs) if op == "both" else outputs[0], leak=leak, op=op,
                        device="cpu", batch_bytes=batch_elements * x.dtype.itemsize)
    assert report.elements == x.size and report.device == "cpu"
    for path, want in zip(outputs, _expected(x, op, leak), strict=True):
        got = np.load(path)
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, strict=True)
    assert sorted(p.name for p in folder.iterdir()) == sorted(["x.npy", *(p.name for p in outputs)])


@pytest.mark.cuda
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("op", ["relu", "both"])
def test_gpu_batches_on_numba_cuda(tmp_path, op):
    """The pinned-buffer, two-stream path (on the simulator when there is no GPU)."""
    x = np.random.default_rng(3).standard_normal((7, 13)).astype(np.float32)
    x[::3, ::4] = -np.inf
    np.save(tmp_path / "x.npy", x)
    outputs = _outputs(tmp_path, op)
    report = apply_file(tmp_path / "x.npy", tuple(outputs) if op == "both" else outputs[0], leak=0.1, op=op,
                        device="cuda", batch_bytes=10 * 4)
    assert report.device == "cuda"
    for path, want in zip(outputs, _expected(x, op, 0.1), strict=True):
        np.testing.assert_array_equal(np.load(path), want, strict=True)


def _python(code: str, *args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _cli(*args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "relukernels", "apply", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=300, **kwargs)


PEAK_RSS = """
    import resource, sys
    from relukernels import apply_file
    apply_file(sys.argv[1], sys.argv[2], leak=0.1, device="cpu", batch_bytes=4 << 20)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
"""


@pytest.mark.slow
def test_peak_memory_follows_the_batch_not_the_file(tmp_path):
    small, large = tmp_path / "small.npy", tmp_path / "large.npy"
    np.save(small, np.ones(1000, np.float32))
    data = np.lib.format.open_memmap(large, mode="w+", dtype=np.float32, shape=(80 << 20,))  # 320 MiB
    data[:] = -1.5
    data.flush()
    del data
    peaks = []
    for source in (small, large):
        done = _python(PEAK_RSS, str(source), str(tmp_path / f"out-{source.name}"))
        out, err = done.communicate(timeout=300)
        assert done.returncode == 0, err
        peaks.append(int(out.split()[-1]) * 1024)
    assert peaks[1] - peaks[0] < 64 << 20, f"peak RSS grew by {(peaks[1] - peaks[0]) >> 20} MiB for a 320 MiB file"
    assert np.load(tmp_path / "out-large.npy", mmap_mode="r")[-1] == np.float32(-0.15)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_leaves_no_output(tmp_path, how):
    """Ctrl-C and SIGTERM (``kill``, ``timeout``, batch schedulers): one line, a
    non-zero exit, nothing but the input left. SIGKILL cannot be caught: the hidden
    temporary stays, until the next run to the same output removes it."""
    source, target = tmp_path / "x.npy", tmp_path / "y.npy"
    data = np.lib.format.open_memmap(source, mode="w+", dtype=np.float32, shape=(16 << 20,))
    data[:] = np.linspace(-1, 1, data.size, dtype=np.float32)
    data.flush()
    del data
    run = subprocess.Popen([sys.executable, "-m", "relukernels", "apply", str(source), str(target),
                            "--device", "cpu", "--batch-size", "4K", "--quiet"],  # 16,384 batches: seconds
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".y.npy.partial-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.1)  # into the batches; the whole run takes seconds, so it is still going
    run.send_signal(how)
    _, err = run.communicate(timeout=60)
    assert not target.exists()
    if how == signal.SIGKILL:
        assert run.returncode == -signal.SIGKILL and len(list(tmp_path.glob(".y.npy.partial-*"))) == 1
    else:
        assert run.returncode == 128 + how
        assert err.endswith("; no output was written\n") and len(err.splitlines()) == 1, err
        assert ("interrupted" if how == signal.SIGINT else "terminated") in err
        assert not list(tmp_path.glob(".y.npy.partial-*"))
    again = _cli(str(source), str(target), "--device", "cpu", "--quiet", "--overwrite")
    assert again.returncode == 0, again.stderr
    np.testing.assert_array_equal(np.load(target), rk.relu(np.load(source)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy", "y.npy"]


def test_only_the_temporaries_of_gone_processes_are_removed(tmp_path):
    """A later run removes the temporary files of its output left by processes of this
    host that no longer exist; not those of living processes, nor other hosts'."""
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 10))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    stale = tmp_path / f".y.npy.partial-{host}-{gone.pid}"
    living = tmp_path / f".y.npy.partial-{host}-{os.getpid()}"
    elsewhere = tmp_path / f".y.npy.partial-elsewhere.example-{gone.pid}"
    other_output = tmp_path / f".z.npy.partial-{host}-{gone.pid}"
    for path in (stale, living, elsewhere, other_output):
        path.write_bytes(b"left behind")
    done = _cli("x.npy", "y.npy", "--quiet", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not stale.exists() and living.exists() and elsewhere.exists() and other_output.exists()


def test_a_ctrl_c_while_space_is_reserved_leaves_no_temporary(tmp_path, monkeypatch):
    """The temporary is removed even when the interrupt lands while its space is being
    reserved (a real SIGINT, sent from inside the reservation: it cannot be timed from
    outside)."""
    reserve = os.posix_fallocate

    def ctrl_c_while_reserving(fd: int, offset: int, length: int) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        reserve(fd, offset, length)

    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 1000))
    monkeypatch.setattr(os, "posix_fallocate", ctrl_c_while_reserving)
    with pytest.raises(KeyboardInterrupt):
        apply_file(tmp_path / "x.npy", tmp_path / "y.npy", device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


INTERRUPT_IN_A_CALLBACK = """
import ctypes, os, signal
from relukernels.cli import _ApplyProgress

# Numba's compiler calls back into Python from LLVM through ctypes, and Python drops
# a KeyboardInterrupt raised inside such a callback
ctrl_c = ctypes.CFUNCTYPE(None)(lambda: os.kill(os.getpid(), signal.SIGINT))
progress = _ApplyProgress(quiet=True)
with progress.interrupts_between_batches():
    ctrl_c()
    try:
        progress(1, 2)
    except KeyboardInterrupt:
        print("raised at the next batch")
    try:
        os.kill(os.getpid(), signal.SIGINT)
        print("the second was not raised at once")
    except KeyboardInterrupt:
        print("the second raised at once")
print("handler restored:", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # trap '' INT, a background job: stays ignored
with progress.interrupts_between_batches():
    print("ignored stays ignored:", signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
"""


def test_a_ctrl_c_inside_a_compiler_callback_still_stops_apply():
    run = _python(INTERRUPT_IN_A_CALLBACK)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 0, err
    assert out.splitlines() == [
        "raised at the next batch", "the second raised at once", "handler restored: True",
        "ignored stays ignored: True",
    ]
    assert "Exception ignored" not in err


def _no_gpu_env() -> dict:
    return {"NUMBA_ENABLE_CUDASIM": "0"}


@pytest.fixture
def files(tmp_path):
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 100))
    np.save(tmp_path / "complex.npy", np.ones(3, np.complex64))
    np.save(tmp_path / "bool.npy", np.ones(3, bool))
    np.save(tmp_path / "object.npy", np.array([1, "a"], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not numpy at all")
    (tmp_path / "existing.npy").write_bytes(b"keep me")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "folder.npy").mkdir()
    return tmp_path


BAD = [
    (["missing.npy", "y.npy"], "no such file"),
    ([".", "y.npy"], "is a directory"),
    (["text.npy", "y.npy"], "not a .npy file"),
    (["complex.npy", "y.npy"], "dtype complex64 is not supported"),
    (["bool.npy", "y.npy"], "dtype bool is not supported"),
    (["object.npy", "y.npy"], "dtype object is not supported"),
    (["x.npy", "existing.npy"], "exists; pass --overwrite"),
    (["x.npy", "x.npy"], "is the input; pass --in-place"),
    (["x.npy", "no-such-dir/y.npy"], "output directory does not exist"),
    (["x.npy", "a-file/y.npy"], "output directory does not exist"),
    (["x.npy", "folder.npy"], "folder.npy: is a directory"),
    (["x.npy", "folder.npy", "--overwrite"], "folder.npy: is a directory"),
    (["x.npy", "y.npy", "folder.npy", "--op", "both", "--overwrite"], "folder.npy: is a directory"),
    (["x.npy", "y.npy", "--op", "both"], "takes 2 output path"),
    (["x.npy", "y.npy", "--batch-size", "lots"], "--batch-size takes bytes"),
    (["x.npy", "y.npy", "--batch-size", "4095"], "--batch-size must be at least 4K"),
    (["x.npy", "y.csv"], "apply writes .npy files; give an output name ending in .npy"),
    (["x.npy", "y.npy", "dy.txt", "--op", "both"], "dy.txt: apply writes .npy files"),
    (["x.npy", "y.npy", "--leak", "nan"], "--leak must be finite"),
]


@pytest.mark.parametrize("args, message", BAD)
def test_bad_input_is_one_line_and_exit_2(files, args, message):
    done = _cli(*args, cwd=files)
    assert done.returncode == 2
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (files / "existing.npy").read_bytes() == b"keep me"
    assert not list(files.glob(".*partial*"))


def test_auto_never_takes_the_cuda_simulator(files):
    """Under NUMBA_ENABLE_CUDASIM=1 Numba "finds" a GPU, its simulator, which runs each
    element in Python: ``auto`` takes the CPU (``cuda`` would take the simulator)."""
    done = _cli("x.npy", "y.npy", "--device", "auto", cwd=files, env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert done.returncode == 0, done.stderr
    assert " on cpu -> y.npy" in done.stdout


def test_the_final_line_counts_elements_in_words(files):
    np.save(files / "one.npy", np.array([-2.0]))
    done = _cli("one.npy", "y1.npy", "--device", "cpu", cwd=files)
    assert done.returncode == 0 and done.stdout.startswith("relu: 1 element, "), done.stdout + done.stderr
    done = _cli("x.npy", "y100.npy", "--device", "cpu", cwd=files)
    assert done.returncode == 0 and done.stdout.startswith("relu: 100 elements, "), done.stdout + done.stderr


def test_no_gpu_for_device_cuda(files):
    if os.path.exists("/dev/nvidiactl"):
        pytest.skip("this machine has a GPU")
    done = _cli("x.npy", "y.npy", "--device", "cuda", cwd=files, env=_no_gpu_env())
    assert done.returncode == 2 and "no CUDA GPU found" in done.stderr and "Traceback" not in done.stderr


def test_disk_full_is_reported_before_anything_is_written(files):
    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    np.save(files / "big.npy", np.zeros(100_000))
    done = _cli("big.npy", "y.npy", cwd=files, preexec_fn=limit_file_size)
    assert done.returncode == 2 and "no room" in done.stderr and "Traceback" not in done.stderr
    assert not (files / "y.npy").exists() and not list(files.glob(".*partial*"))


def test_in_place_and_overwrite(files):
    x = np.load(files / "x.npy")
    assert _cli("x.npy", "x.npy", "--in-place", "--leak", "0.5", cwd=files).returncode == 0
    np.testing.assert_array_equal(np.load(files / "x.npy"), rk.relu(x, 0.5))
    done = _cli("x.npy", "existing.npy", "--overwrite", cwd=files)
    assert done.returncode == 0 and "GB/s" in done.stdout
    np.testing.assert_array_equal(np.load(files / "existing.npy"), rk.relu(rk.relu(x, 0.5)))


def test_python_entry_point_errors(tmp_path):
    with pytest.raises(ApplyError, match="no such file"):
        apply_file(tmp_path / "nothing.npy", tmp_path / "y.npy")
    np.save(tmp_path / "x.npy", np.ones(3))
    with pytest.raises(ApplyError, match="--op must be one of"):
        apply_file(tmp_path / "x.npy", tmp_path / "y.npy", op="sigmoid")
    with pytest.raises(ApplyError, match="give an output name ending in .npy"):
        apply_file(tmp_path / "x.npy", tmp_path / "y.csv")
    assert not (tmp_path / "y.csv").exists()


def test_progress_reports_elements_done_and_the_total(tmp_path):
    source = tmp_path / "x.npy"
    np.save(source, np.arange(-500, 500, dtype=np.float32))
    calls = []
    apply_file(source, tmp_path / "y.npy", leak=0.1, device="cpu", batch_bytes=256 * 4,
               progress=lambda done, total: calls.append((done, total)))
    assert calls == [(256, 1000), (512, 1000), (768, 1000), (1000, 1000)]
