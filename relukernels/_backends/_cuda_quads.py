"""Four consecutive elements of a 1-d C-contiguous array in one memory access.

``load_quad(array, j)`` returns elements ``4j .. 4j+3`` as a tuple and
``store_quad(array, j, values)`` writes them. On a GPU they compile to one vector
load or store (``ld.global.v4.f32`` for float32, two ``v2`` accesses for 8-byte
dtypes), which is how PyTorch's elementwise kernels reach the copy bandwidth; the
caller must make sure the array's data are aligned to four elements. Under Numba's
CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) they are the plain Python below, which
states what the compiled versions do.
"""

from __future__ import annotations

from typing import Any

from numba import config

if config.ENABLE_CUDASIM:

    def load_quad(array: Any, j: int) -> tuple:
        start = 4 * j
        return array[start], array[start + 1], array[start + 2], array[start + 3]

    def store_quad(array: Any, j: int, values: tuple) -> None:
        start = 4 * j
        array[start], array[start + 1], array[start + 2], array[start + 3] = values

else:
    from llvmlite import ir
    from numba.cuda import types
    from numba.cuda.extending import intrinsic

    _GLOBAL_MEMORY = 1  # NVPTX address space: loads and stores become ld.global / st.global

    def _quad_pointer(context: Any, builder: Any, array_type: Any, array: Any, j: Any) -> tuple[Any, int]:
        """A global-memory pointer to the quad, and its alignment in bytes."""
        data = context.make_array(array_type)(context, builder, value=array).data
        first = builder.gep(data, [builder.mul(j, ir.Constant(j.type, 4))])
        vector = ir.VectorType(context.get_value_type(array_type.dtype), 4)
        pointer = builder.addrspacecast(builder.bitcast(first, vector.as_pointer()), vector.as_pointer(_GLOBAL_MEMORY))
        return pointer, 4 * context.get_abi_sizeof(context.get_value_type(array_type.dtype))

    @intrinsic
    def load_quad(typingctx: Any, array: Any, j: Any) -> Any:
        signature = types.UniTuple(array.dtype, 4)(array, types.intp)

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            pointer, alignment = _quad_pointer(context, builder, sig.args[0], args[0], args[1])
            vector = builder.load(pointer, align=alignment)
            values = [builder.extract_element(vector, ir.Constant(ir.IntType(32), k)) for k in range(4)]
            return context.make_tuple(builder, sig.return_type, values)

        return signature, codegen

    @intrinsic
    def store_quad(typingctx: Any, array: Any, j: Any, values: Any) -> Any:
        signature = types.void(array, types.intp, types.UniTuple(array.dtype, 4))

        def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
            pointer, alignment = _quad_pointer(context, builder, sig.args[0], args[0], args[1])
            vector = ir.Constant(pointer.type.pointee, ir.Undefined)
            for k in range(4):
                vector = builder.insert_element(vector, builder.extract_value(args[2], k), ir.Constant(ir.IntType(32), k))
            builder.store(vector, pointer, align=alignment)
            return context.get_dummy_value()

        return signature, codegen
