"""Dask arrays: lazy, chunk by chunk, on the local schedulers and on a real cluster of
worker processes, one of which is killed mid-computation."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oracle
import relukernels as rk
from strategies import leaks_for, strided_arrays

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")


@st.composite
def chunked(draw):
    x = draw(strided_arrays(dtypes=[np.dtype(c) for c in ("f2", "f4", "f8", "i4")], max_dims=3, max_side=8))
    chunks = tuple(draw(st.integers(1, max(n, 1))) for n in x.shape)
    leak = draw(leaks_for(x.dtype))
    return x, chunks, leak


@settings(max_examples=60)
@given(chunked(), st.sampled_from(["threads", "sync"]))
def test_local_schedulers_match_the_oracle(case, scheduler):
    x_np, chunks, leak = case
    x = da.from_array(x_np, chunks=chunks)
    y, dy = rk.relu(x, leak), rk.relu_dash(x, leak)
    assert isinstance(y, da.Array) and y.chunks == x.chunks
    with np.errstate(all="ignore"):
        expected = oracle.relu(x_np, leak), oracle.relu_dash(x_np, leak)
    for result, want in zip(dask.compute(y, dy, scheduler=scheduler), expected, strict=True):
        np.testing.assert_array_equal(result, want, strict=True)
    both = dask.compute(*rk.relu_and_dash(x, leak), scheduler=scheduler)
    for result, want in zip(both, expected, strict=True):
        np.testing.assert_array_equal(result, want, strict=True)


def test_relu_and_dash_reads_each_chunk_once():
    """Computed together, the two results run one relu_and_dash task per chunk."""
    from dask.callbacks import Callback

    x = da.from_array(np.linspace(-2, 2, 100), chunks=7)
    executed = []
    with Callback(pretask=lambda key, dsk, state: executed.append(key)):
        dask.compute(*rk.relu_and_dash(x, 0.1), scheduler="threads")
    fused = [key for key in executed if isinstance(key, tuple) and str(key[0]).startswith("relu_and_dash-")]
    assert sorted(key[1] for key in fused) == list(range(x.numblocks[0]))


def test_out_is_refused():
    x = da.ones(4, chunks=2)
    with pytest.raises(TypeError, match="out"):
        rk.relu(x, out=x)


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            yield client


def test_local_cluster_of_worker_processes(client):
    x_np = np.random.default_rng(1).standard_normal((400, 300)).astype(np.float32)
    x = da.from_array(x_np, chunks=(100, 75))
    y, dy = client.compute(rk.relu_and_dash(x, 0.2), sync=True)
    np.testing.assert_array_equal(y, oracle.relu(x_np, 0.2), strict=True)
    np.testing.assert_array_equal(dy, oracle.relu_dash(x_np, 0.2), strict=True)


def test_a_killed_worker_loses_nothing(client):
    """Kill one worker process mid-run: the scheduler recomputes its chunks elsewhere."""
    x_np = np.random.default_rng(2).standard_normal(40 * 1000)
    x = da.from_array(x_np, chunks=1000)
    slow = x.map_blocks(lambda block: (time.sleep(0.15), block)[1], dtype=x.dtype)
    future = client.compute(rk.relu(slow, 0.1))
    time.sleep(1.0)
    assert not future.done()
    victim = next(iter(client.run(os.getpid).values()))
    os.kill(victim, signal.SIGKILL)
    result = future.result(timeout=120)
    np.testing.assert_array_equal(result, oracle.relu(x_np, 0.1), strict=True)
