"""Four consecutive elements behind a pointer in one memory access.

``load_quad(pointer, j)`` returns elements ``4j .. 4j+3`` of a ``CPointer`` to
global memory as a tuple and ``store_quad(pointer, j, values)`` writes them. On a
GPU they compile to one vector load or store (``ld.global.v4.f32`` for float32, two
``v2`` accesses for 8-byte dtypes), which is how PyTorch's elementwise kernels reach
the copy bandwidth; the caller must make sure the pointer is aligned to four
elements. Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) they are the
plain Python below, which states what the compiled versions do (there the pointer is
any object indexed by element).
"""

from __future__ import annotations

from typing import Any

from numba import config

if config.ENABLE_CUDASIM:

    def load_quad(pointer: Any, j: int) -> tuple:
        start = 4 * j
        return pointer[start], pointer[start + 1], pointer[start + 2], pointer[start + 3]

    def store_quad(pointer: Any, j: int, values: tuple) -> None:
        start = 4 * j
        pointer[start], pointer[start + 1], pointer[start + 2], pointer[start + 3] = values

else:
    from llvmlite import ir
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    _GLOBAL_MEMORY = 1  # NVPTX address space: loads and stores become ld.global / st.global

    def _quad_pointer(context: Any, builder: Any, pointer_type: Any, pointer: Any, j: Any) -> tuple[Any, int]:
        """A global-memory pointer to the quad, and its alignment in bytes."""
        first = builder.gep(pointer, [builder.mul(j, ir.Constant(j.type, 4))])
        vector = ir.VectorType(context.get_value_type(pointer_type.dtype), 4)
        quad = builder.addrspacecast(builder.bitcast(first, vector.as_pointer()), vector.as_pointer(_GLOBAL_MEMORY))
        return quad, 4 * context.get_abi_sizeof(context.get_value_type(pointer_type.dtype))

    @intrinsic
    def load_quad(typingctx: Any, pointer: Any, j: Any) -> Any:
        if not isinstance(pointer, types.CPointer):
            return None
        signature = types.UniTuple(pointer.dtype, 4)(pointer, types.intp)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            pointer, alignment = _quad_pointer(context, builder, sig.args[0], args[0], args[1])
            vector = builder.load(pointer, align=alignment)
            values = [builder.extract_element(vector, ir.Constant(ir.IntType(32), k)) for k in range(4)]
            return context.make_tuple(builder, sig.return_type, values)

        return signature, codegen

    @intrinsic
    def store_quad(typingctx: Any, pointer: Any, j: Any, values: Any) -> Any:
        if not isinstance(pointer, types.CPointer):
            return None
        signature = types.void(pointer, types.intp, types.UniTuple(pointer.dtype, 4))

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            pointer, alignment = _quad_pointer(context, builder, sig.args[0], args[0], args[1])
            vector = ir.Constant(pointer.type.pointee, ir.Undefined)
            for k in range(4):
                vector = builder.insert_element(
                    vector, builder.extract_value(args[2], k), ir.Constant(ir.IntType(32), k)
                )
            builder.store(vector, pointer, align=alignment)
            return context.get_dummy_value()

        return signature, codegen
