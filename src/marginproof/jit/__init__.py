"""Compiled-kernel support: small numba extensions (``ext``: LLVM intrinsics the kernels need
and numba does not expose)."""
