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


def _block_row_op(accumulate: bool) -> Any:
    """Typer of ``block_scale`` (``accumulate=False``) and ``block_axpy`` (``True``)."""

    def typer(typingctx: Any, acc: Any, table: Any, row: Any, col: Any, q: Any) -> Any:
        if not (isinstance(acc, types.Array) and acc.ndim == 1
                and isinstance(table, types.Array) and table.ndim == 2
                and acc.dtype == table.dtype and isinstance(acc.dtype, types.Float)
                and isinstance(row, types.Integer) and isinstance(col, types.Integer)
                and isinstance(q, (types.Float, types.Integer))):
            return None
        sig = types.void(acc, table, row, col, q)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            accty, tabty = signature.args[0], signature.args[1]
            acc_a = context.make_array(accty)(context, builder, args[0])
            tab_a = context.make_array(tabty)(context, builder, args[1])
            r = context.cast(builder, args[2], signature.args[2], types.intp)
            c = context.cast(builder, args[3], signature.args[3], types.intp)
            qv = context.cast(builder, args[4], signature.args[4], accty.dtype)
            elt = context.get_value_type(accty.dtype)
            vt = ir.VectorType(elt, _BLOCK_ELEMENTS)
            zero = context.get_constant(types.intp, 0)
            rp = builder.bitcast(cgutils.get_item_pointer(context, builder, tabty, tab_a, [r, c]),
                                 vt.as_pointer())
            ap = builder.bitcast(cgutils.get_item_pointer(context, builder, accty, acc_a, [zero]),
                                 vt.as_pointer())
            align = accty.dtype.bitwidth // 8
            rv = builder.load(rp, align=align)
            undef = ir.Constant(vt, ir.Undefined)
            i32 = ir.IntType(32)
            q1 = builder.insert_element(undef, qv, ir.Constant(i32, 0))
            qs = builder.shuffle_vector(q1, undef,
                                        ir.Constant(ir.VectorType(i32, _BLOCK_ELEMENTS),
                                                    [0] * _BLOCK_ELEMENTS))
            res = builder.fmul(rv, qs)
            if accumulate:
                res = builder.fadd(builder.load(ap, align=align), res)
            builder.store(res, ap, align=align)
            return context.get_dummy_value()

        return sig, codegen

    return typer


def _block_min_first(typingctx: Any, acc: Any) -> Any:
    """``(min(acc[:64]), first index reaching it)`` of a 1D float array, in vector registers."""
    if not (isinstance(acc, types.Array) and acc.ndim == 1
            and isinstance(acc.dtype, types.Float)):
        return None
    sig = types.Tuple((acc.dtype, types.intp))(acc)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        accty = signature.args[0]
        acc_a = context.make_array(accty)(context, builder, args[0])
        elt = context.get_value_type(accty.dtype)
        vt = ir.VectorType(elt, _BLOCK_ELEMENTS)
        zero = context.get_constant(types.intp, 0)
        ap = builder.bitcast(cgutils.get_item_pointer(context, builder, accty, acc_a, [zero]),
                             vt.as_pointer())
        v = builder.load(ap, align=accty.dtype.bitwidth // 8)
        suffix = f"v{_BLOCK_ELEMENTS}f{accty.dtype.bitwidth}"
        fmin = cgutils.get_or_insert_function(builder.module, ir.FunctionType(elt, [vt]),
                                              f"llvm.vector.reduce.fmin.{suffix}")
        m = builder.call(fmin, [v], fastmath=("nnan", "nsz"))
        undef = ir.Constant(vt, ir.Undefined)
        i32 = ir.IntType(32)
        m1 = builder.insert_element(undef, m, ir.Constant(i32, 0))
        ms = builder.shuffle_vector(m1, undef, ir.Constant(ir.VectorType(i32, _BLOCK_ELEMENTS),
                                                           [0] * _BLOCK_ELEMENTS))
        eq = builder.fcmp_ordered("==", v, ms)
        i64 = ir.IntType(64)
        bits = builder.bitcast(eq, i64)
        cttz = cgutils.get_or_insert_function(builder.module,
                                              ir.FunctionType(i64, [i64, ir.IntType(1)]),
                                              "llvm.cttz.i64")
        idx = builder.call(cttz, [bits, ir.Constant(ir.IntType(1), 1)])
        return context.make_tuple(builder, signature.return_type, [m, idx])

    return sig, codegen


prefetch_block: Any = intrinsic(_prefetch_block)
stack_empty: Any = intrinsic(_stack_empty)
#: ``block_scale(acc, table, row, col, q)``: ``acc[:64] = q * table[row, col:col + 64]``
block_scale: Any = intrinsic(_block_row_op(False))
#: ``block_axpy(acc, table, row, col, q)``: ``acc[:64] += q * table[row, col:col + 64]``
block_axpy: Any = intrinsic(_block_row_op(True))
#: ``block_min_first(acc) -> (value, index)``: minimum of ``acc[:64]`` and its first index
block_min_first: Any = intrinsic(_block_min_first)
