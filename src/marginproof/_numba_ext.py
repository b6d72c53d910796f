"""Small numba extensions the compiled kernels need and numba does not expose.

``prefetch_block(a, row)`` issues software prefetches (LLVM ``llvm.prefetch``, read, keep in all
cache levels) for the first 64 elements of row ``row`` of a C-contiguous 2D array. Kernels that
gather rows of a table at random (the grid kernel reads the scenario P&L row of each position)
call it a few positions ahead, so the row arrives from L3 while earlier rows are summed: the
hardware prefetchers cannot guess random row indices. It has no effect on results.
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types as _types
from numba.core import cgutils as _cgutils
from numba.extending import intrinsic

# numba ships no type hints: treat its modules as dynamically typed
types: Any = _types
cgutils: Any = _cgutils

_CACHE_LINE_BYTES = 64
_BLOCK_ELEMENTS = 64


def _prefetch_block(typingctx: Any, arr: Any, row: Any) -> Any:
    """Prefetch ``arr[row, :64]`` into cache (2D C-contiguous float array, integer row)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(row, types.Integer)):
        return None
    n_lines = max(1, _BLOCK_ELEMENTS * arr.dtype.bitwidth // 8 // _CACHE_LINE_BYTES)
    sig = types.void(arr, row)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        r = context.cast(builder, args[1], signature.args[1], types.intp)
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [r, zero])
        i8p = ir.IntType(8).as_pointer()
        p8 = builder.bitcast(ptr, i8p)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        for line in range(n_lines):
            addr = builder.gep(p8, [ir.Constant(ir.IntType(64), line * _CACHE_LINE_BYTES)])
            # rw = 0 (read), locality = 3 (keep), cache type = 1 (data)
            builder.call(fn, [addr, ir.Constant(i32, 0), ir.Constant(i32, 3),
                              ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


def _stack_empty(typingctx: Any, size: Any, dtype: Any) -> Any:
    """Uninitialised scratch buffer of ``size`` elements on the stack, as a raw pointer.

    Wrap it with ``numba.carray(ptr, (size,))``. Unlike ``np.empty`` (a heap allocation that
    LLVM cannot look through), a constant-size stack buffer indexed with constants after loop
    unrolling is promoted to registers. The buffer lives until the enclosing compiled function
    returns; ``size`` must be a literal or a module-level integer constant (it is allocated
    in the function's entry block).
    """
    if isinstance(dtype, types.DType):
        elem = dtype.dtype  # an array's .dtype
    elif isinstance(dtype, types.NumberClass):
        elem = dtype.instance_type  # np.float64 and the like
    else:
        return None
    if not isinstance(size, types.IntegerLiteral):
        return None
    n = int(size.literal_value)
    sig = types.CPointer(elem)(size, dtype)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        ty = context.get_value_type(elem)
        return cgutils.alloca_once(builder, ty, size=ir.Constant(ir.IntType(64), n))

    return sig, codegen


prefetch_block: Any = intrinsic(_prefetch_block)
stack_empty: Any = intrinsic(_stack_empty)
