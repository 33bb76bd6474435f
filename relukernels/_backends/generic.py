"""The seed formula in any array-API namespace: the fallback backend and the test oracle.

``relu`` and ``relu_dash`` are the tutorial's ``np.where`` formulas with the contract's
two precisions: ``leak`` is cast to the input's floating dtype before the product, and
with ``leak == 0`` the result is an exact zero (so ``relu(-inf) == 0``, not NaN).
"""

from __future__ import annotations

from typing import Any

from .. import _validate


def relu(xp: Any, x: Any, leak: int | float) -> Any:
    """``where(x <= 0, leak * x, x)``, exact zeros when ``leak`` is zero in ``x``'s dtype."""
    value, keeps_dtype = _validate.dtype_rule(xp, x.dtype).resolve(leak)
    if value == 0:
        return xp.where(x <= 0, xp.zeros_like(x), x)
    a = xp.asarray(value, dtype=x.dtype, device=_device(x)) if keeps_dtype else value
    return xp.where(x <= 0, a * x, x)


def relu_dash(xp: Any, x: Any, leak: int | float) -> Any:
    """``where(x <= 0, leak, 1)`` in the dtype that ``relu`` gives."""
    value, keeps_dtype = _validate.dtype_rule(xp, x.dtype).resolve(leak)
    dtype = x.dtype if keeps_dtype else (value * x).dtype
    a = xp.asarray(value, dtype=dtype, device=_device(x))
    return xp.where(x <= 0, a, xp.ones_like(x, dtype=dtype))


FORMULAS = {"relu": (relu,), "relu_dash": (relu_dash,), "relu_and_dash": (relu, relu_dash)}
"""The formulas behind each public operation, in the order of its results."""


def _device(x: Any) -> Any:
    import array_api_compat

    return array_api_compat.device(x)


class GenericBackend:
    """Any array-API namespace (array-api-strict, JAX, ...), through its own operations."""

    name = "array-api"

    def __init__(self) -> None:
        self._namespaces: dict[type, Any] = {}

    def accepts(self, x: Any) -> bool:
        import array_api_compat

        return array_api_compat.is_array_api_obj(x)

    def namespace(self, x: Any) -> Any:
        """The array-API namespace of ``x``, cached per exact type."""
        try:
            return self._namespaces[type(x)]
        except KeyError:
            import array_api_compat

            xp = self._namespaces[type(x)] = array_api_compat.array_namespace(x)
            return xp

    def relu(self, x: Any, leak: int | float, out: Any) -> Any:
        xp = self.namespace(x)
        return self._write(x, [(relu(xp, x, leak), out, "out")])[0]

    def relu_dash(self, x: Any, leak: int | float, out: Any) -> Any:
        xp = self.namespace(x)
        return self._write(x, [(relu_dash(xp, x, leak), out, "out")])[0]

    def relu_and_dash(self, x: Any, leak: int | float, out: Any) -> tuple[Any, Any]:
        xp = self.namespace(x)
        y_out, dy_out = _validate.out_pair(out) or (None, None)
        y, dy = relu(xp, x, leak), relu_dash(xp, x, leak)
        return tuple(self._write(x, [(y, y_out, "out[0]"), (dy, dy_out, "out[1]")]))

    @staticmethod
    def _write(x: Any, results: list[tuple[Any, Any, str]]) -> list[Any]:
        """Check every ``out`` first, then copy each result into its ``out``."""
        for result, out, name in results:
            if out is not None:
                _validate.out_array(
                    out,
                    name=name,
                    expected_type=type(x),
                    shape=result.shape,
                    dtype=result.dtype,
                    device=_device(x),
                    device_of=_device,
                )
        for result, out, name in results:
            if out is not None:
                try:
                    out[...] = result
                except (TypeError, ValueError, NotImplementedError) as error:
                    raise TypeError(
                        f"{name}: {type(out).__name__} arrays cannot be written in place"
                    ) from error
        return [result if out is None else out for result, out, _ in results]
