"""Test set-up: the CUDA simulator where there is no GPU, and hypothesis profiles."""

import atexit
import os
import shutil
import signal
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, settings

# Numba reads this when numba.cuda is first imported: without a GPU the `cuda` tests
# run the real kernel code on Numba's CUDA simulator.
if "NUMBA_ENABLE_CUDASIM" not in os.environ and not os.path.exists("/dev/nvidiactl"):
    os.environ["NUMBA_ENABLE_CUDASIM"] = "1"

# A background job of a non-interactive shell (`pytest &`, some CI runners) starts with
# Ctrl-C ignored, which apply rightly leaves ignored; its tests send real Ctrl-Cs, as from
# a terminal, to this process and to the children it starts (which inherit the handler
# as SIG_DFL, so Python installs its own).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# torch.compile's on-disk caches are keyed on the graph, not on relukernels' fake
# implementations: a cache left by another version of the package could give a
# compiled graph the wrong output shapes. Each test run compiles afresh.
os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="relukernels-inductor-")
atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

settings.register_profile(
    "default",
    max_examples=150,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # the fixtures here set state that every example shares
    ],
)
settings.register_profile("thorough", parent=settings.get_profile("default"), max_examples=2000)
# A short, unshrunk run for a lent GPU, whose minutes are few.
settings.register_profile(
    "gpu",
    parent=settings.get_profile("default"),
    max_examples=40,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(params=["one thread", "Numba's threads at every size, rows of any length"])
def threading(request, monkeypatch):
    """Run the NumPy backend's rows loops in the calling thread, and on Numba's threads
    at every size, with an array leak's rows of any length."""
    if request.param != "one thread":
        from relukernels._backends import numpy as numpy_backend

        monkeypatch.setattr(numpy_backend, "PARALLEL_MIN_BYTES", 1)
        monkeypatch.setattr(numpy_backend, "MIN_ROW", 1)
