"""Training costs against the frameworks' own activations (benchmarks/RESULTS.md,
"Training"): PyTorch, float32, against ``F.leaky_relu(x, 0.01)`` (on the CPU, or on
CUDA from ``gpu_check.py``); JAX eager against ``jax.nn.leaky_relu``; NumPy's
``relu_backward`` against the two passes it fuses; and, for PyTorch, its own kernels
behind a Python ``autograd.Function``, the floor for any Python extension with
autograd; a PReLU with a trained slope per channel against ``F.prelu``. Side by side,
interleaved rounds, medians; the last column is time over the reference (lower is
faster):

    python benchmarks/training.py [--rounds 11]
"""

from __future__ import annotations

import argparse
import inspect
import statistics
import time
from typing import Any

import numpy as np

import relukernels as rk
from relukernels import _bench

SLOPE = 0.01


def _table(title: str, cases: list[_bench.Case], rounds: int) -> str:
    _bench.measure(cases, rounds)
    medians = {case.name: statistics.median(case.times) for case in cases}
    reference = cases[0].name
    lines = [f"**{title}**", "", "| case | µs/call | time / reference |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {t * 1e6:,.1f} | {t / medians[reference]:.2f} |" for name, t in medians.items()]
    return "\n".join(lines)


def _python_leaky_relu() -> Any:
    """PyTorch's own leaky_relu kernels behind a Python ``torch.autograd.Function``
    (as relukernels' is, signature bound once): what a Python extension pays before
    its kernels do anything, the floor under ``rk.relu`` with autograd."""
    import torch
    import torch.nn.functional as F

    class PythonLeakyRelu(torch.autograd.Function):
        @staticmethod
        def forward(x: Any) -> Any:
            return F.leaky_relu(x, SLOPE)

        @staticmethod
        def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            (x,) = ctx.saved_tensors
            return torch.ops.aten.leaky_relu_backward(grad, x, SLOPE, False)

    PythonLeakyRelu.forward.__signature__ = inspect.signature(PythonLeakyRelu.forward)
    return PythonLeakyRelu.apply


def torch_tables(rounds: int, device: str = "cpu") -> list[str]:
    """The PyTorch tables, on CPU or CUDA tensors."""
    import torch
    import torch.nn.functional as F

    python_leaky_relu = _python_leaky_relu()

    where = "CPU" if device == "cpu" else "CUDA"
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    tables = []
    for shape in ((4 * 1024 * 1024,), (256, 512)):
        x = torch.randn(*shape, device=device, requires_grad=True)
        grad = torch.randn(*shape, device=device)

        def step(activation, x=x, grad=grad):
            x.grad = None
            activation(x).backward(grad)
            synchronize()

        cases = [
            _bench.Case("F.leaky_relu forward+backward", lambda: step(lambda v: F.leaky_relu(v, SLOPE)), 0),
            _bench.Case("rk.relu forward+backward", lambda: step(lambda v: rk.relu(v, SLOPE)), 0),
            _bench.Case("leaky_relu in a Python autograd.Function", lambda: step(python_leaky_relu), 0),
        ]
        tables.append(_table(f"PyTorch {where}, {shape}", cases, rounds))
    small = torch.randn(1000, device=device)
    cases = [
        _bench.Case("F.leaky_relu(x, 0.01)", lambda: (F.leaky_relu(small, SLOPE), synchronize()), 0),
        _bench.Case("rk.relu(x, 0.01)", lambda: (rk.relu(small, SLOPE), synchronize()), 0),
    ]
    tables.append(_table(f"PyTorch {where}, 1,000-element forward", cases, rounds))

    def mlp(activation):
        torch.manual_seed(0)
        layers = [torch.nn.Linear(784, 512, device=device), torch.nn.Linear(512, 512, device=device),
                  torch.nn.Linear(512, 10, device=device)]
        parameters = [p for layer in layers for p in layer.parameters()]
        optimizer = torch.optim.SGD(parameters, lr=0.01)
        data, target = torch.randn(256, 784, device=device), torch.randint(0, 10, (256,), device=device)

        def one_step():
            optimizer.zero_grad()
            hidden = activation(layers[1](activation(layers[0](data))))
            F.cross_entropy(layers[2](hidden), target).backward()
            optimizer.step()
            synchronize()

        return one_step

    cases = [
        _bench.Case("SGD step with F.leaky_relu", mlp(lambda v: F.leaky_relu(v, SLOPE)), 0),
        _bench.Case("SGD step with rk.relu", mlp(lambda v: rk.relu(v, SLOPE)), 0),
        _bench.Case("SGD step, leaky_relu in a Python autograd.Function", mlp(python_leaky_relu), 0),
    ]
    tables.append(_table(f"PyTorch {where}, 784-512-512-10 MLP, batch 256", cases, rounds))

    x = torch.randn(64, 8, 12, 12, device=device, requires_grad=True)
    slopes = torch.full((8,), 0.25, device=device, requires_grad=True)
    grad = torch.randn(64, 8, 12, 12, device=device)

    def prelu_step(activation):
        x.grad = slopes.grad = None
        activation(x, slopes).backward(grad)
        synchronize()

    cases = [
        _bench.Case("F.prelu forward+backward", lambda: prelu_step(F.prelu), 0),
        _bench.Case("rk.relu(x, slopes.view(-1, 1, 1)) forward+backward",
                    lambda: prelu_step(lambda v, w: rk.relu(v, w.view(-1, 1, 1))), 0),
    ]
    tables.append(_table(f"PyTorch {where}, PReLU with a trained slope per channel, (64, 8, 12, 12)", cases, rounds))
    return tables


def backward_table(rounds: int) -> str:
    """The fused backward against the two passes it replaces, NumPy, 32M float32."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1 << 25, dtype=np.float32)
    grad = rng.standard_normal(1 << 25, dtype=np.float32)
    out = np.empty_like(x)
    cases = [
        _bench.Case("grad * rk.relu_dash(x, 0.1)", lambda: np.multiply(grad, rk.relu_dash(x, 0.1), out=out), 0),
        _bench.Case("rk.relu_backward(grad, x, 0.1, out=)", lambda: rk.relu_backward(grad, x, 0.1, out=out), 0),
    ]
    return _table("NumPy, 2**25 float32, backward", cases, rounds)


def jax_table(rounds: int) -> str:
    import jax

    x = jax.numpy.asarray(np.random.default_rng(0).standard_normal(1000).astype(np.float32))
    cases = [
        _bench.Case("jax.nn.leaky_relu(x, 0.01)", lambda: jax.nn.leaky_relu(x, SLOPE).block_until_ready(), 0),
        _bench.Case("rk.relu(x, 0.01)", lambda: rk.relu(x, SLOPE).block_until_ready(), 0),
    ]
    return _table("JAX CPU, eager, 1,000 float32", cases, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=11, help="interleaved rounds per table (default 11)")
    args = parser.parse_args()
    print(time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "\n")
    for table in (backward_table(args.rounds), *torch_tables(args.rounds), jax_table(args.rounds)):
        print(table, end="\n\n", flush=True)


if __name__ == "__main__":
    main()
