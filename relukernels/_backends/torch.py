"""PyTorch tensors: CPU tensors on the NumPy kernels through zero-copy views, CUDA
tensors on the CUDA kernels on PyTorch's current stream, autograd kept working.

A tensor that requires grad goes through a ``torch.autograd.Function`` whose backward
multiplies by ``relu_dash``. Dtypes NumPy lacks (bfloat16), and integer tensors with a
fractional leak (PyTorch promotes them to its default float, not to float64), take the
contract's formula in PyTorch's own operations.
"""

from __future__ import annotations

import sys
from typing import Any


from .. import _validate
from . import RunBackend, generic
from .cuda import CudaBackend, numpy_dtype
from .numpy import NumpyBackend

_NUMPY = NumpyBackend()
_CUDA = CudaBackend()


class TorchBackend(RunBackend):
    """``torch.Tensor`` (and subclasses such as ``nn.Parameter``), CPU or CUDA."""

    name = "torch"

    def accepts(self, x: Any) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(x, torch.Tensor)

    def relu(self, x: Any, leak: int | float, out: Any) -> Any:
        if _tracks_grad(x):
            _refuse_out(out)
            return _relu_function().apply(x, leak)
        return super().relu(x, leak, out)

    def relu_dash(self, x: Any, leak: int | float, out: Any) -> Any:
        if _tracks_grad(x):
            _refuse_out(out)
            x = x.detach()  # the derivative of a step is zero almost everywhere: no graph
        return super().relu_dash(x, leak, out)

    def relu_and_dash(self, x: Any, leak: int | float, out: Any) -> tuple[Any, Any]:
        if _tracks_grad(x):
            _refuse_out(out)
            return _relu_function().apply(x, leak), self.relu_dash(x, leak, None)
        return super().relu_and_dash(x, leak, out)

    def run(self, op: str, x: Any, leak: int | float, outs: tuple, names: tuple) -> list:
        """``op`` without autograd: the CUDA or NumPy kernels, else PyTorch's operations."""
        import torch

        x_dtype = numpy_dtype(x.dtype)
        kernels_apply = x_dtype is not None and _validate.numpy_result(x_dtype, leak)[1] == x_dtype
        if not kernels_apply:
            return _formula(op, x, leak, outs, names)
        for out, name in zip(outs, names):
            if out is not None:
                _check_out(out, x, x.dtype, name)
        if x.is_cuda:
            return _CUDA.run(op, x, leak, outs, names)
        results = [torch.empty_like(x) if out is None else out for out in outs]
        _NUMPY.run(op, x.detach().numpy(), leak, tuple(r.detach().numpy() for r in results), names)
        return results


def _tracks_grad(x: Any) -> bool:
    import torch

    return x.requires_grad and torch.is_grad_enabled()


def _refuse_out(out: Any) -> None:
    if out is not None:
        raise TypeError(
            "out= cannot be used when x requires grad: autograd cannot follow a write into "
            "out (call it under torch.no_grad(), or without out=)"
        )


def _check_out(out: Any, x: Any, dtype: Any, name: str) -> None:
    """Check a caller's ``out`` for a result of torch ``dtype``: the contract's checks,
    and no autograd history to break."""
    import torch

    _validate.out_array(
        out,
        name=name,
        expected_type=torch.Tensor,
        shape=tuple(x.shape),
        dtype=dtype,
        device=x.device,
        device_of=_device,
    )
    if out.requires_grad and torch.is_grad_enabled():
        raise TypeError(f"{name} requires grad; autograd cannot follow a write into it")


def _formula(op: str, x: Any, leak: int | float, outs: tuple, names: tuple) -> list:
    """The contract's formula in PyTorch's operations, written into ``outs`` if given."""
    import array_api_compat.torch as xp

    results = [formula(xp, x, leak) for formula in generic.FORMULAS[op]]
    for result, out, name in zip(results, outs, names):
        if out is not None:
            _check_out(out, x, result.dtype, name)
    return [result if out is None else out.copy_(result) for result, out in zip(results, outs)]


def _device(tensor: Any) -> Any:
    return tensor.device


_BACKEND = TorchBackend()
_RELU_FUNCTION = None


def _relu_function() -> Any:
    """``torch.autograd.Function`` for relu, built on first use (importing torch)."""
    global _RELU_FUNCTION
    if _RELU_FUNCTION is None:
        import torch

        class Relu(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, x: Any, leak: int | float) -> Any:
                ctx.save_for_backward(x)
                ctx.leak = leak
                return _BACKEND.run("relu", x.detach(), leak, (None,), ("out",))[0]

            @staticmethod
            def backward(ctx: Any, grad: Any) -> tuple[Any, None]:
                (x,) = ctx.saved_tensors
                dash = _BACKEND.run("relu_dash", x.detach(), ctx.leak, (None,), ("out",))[0]
                return grad * dash, None

        _RELU_FUNCTION = Relu
    return _RELU_FUNCTION
