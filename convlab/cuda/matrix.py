"""im2col and col2im on the kernels of csrc/im2col.cu, for CuPy arrays with 1 or 2 spatial dims.

Layout as :func:`convlab.im2col` (PyTorch's unfold): ``x (N, C, *n)`` <-> ``cols (N, C*prod(k), prod(out))``
with ``cols[n, c*prod(k) + m, j] = x_pad[n, c, j*s + m*d]``; col2im is the adjoint, a gather.
"""
from __future__ import annotations

import math

from ._launch import on_device, require_kernels, version_arg, window_shape


def im2col(x, geom, version=None):
    """The patch matrix of ``x (N, C, *n)`` for the windows of ``geom``."""
    module = require_kernels(x, "im2col", geom.nd)
    n, c = x.shape[:2]
    with on_device(x) as at:
        xp = at.xp
        cols = xp.empty((n, c * math.prod(geom.kernel), math.prod(geom.out_size)), dtype=x.dtype)
        if cols.size:
            x = xp.ascontiguousarray(x)
            module.im2col(version_arg(version), x.dtype.name, at.device, at.stream, cols.data.ptr,
                          x.data.ptr, window_shape(n * c, geom))
    return cols


def col2im(cols, geom, n, c, version=None):
    """``(N, C, *geom.in_size)``: each column summed back onto the window it came from."""
    module = require_kernels(cols, "col2im", geom.nd)
    with on_device(cols) as at:
        xp = at.xp
        x = xp.empty((n, c) + tuple(geom.in_size), dtype=cols.dtype)
        if x.size:
            cols = xp.ascontiguousarray(cols)
            module.col2im(version_arg(version), cols.dtype.name, at.device, at.stream, x.data.ptr,
                          cols.data.ptr, window_shape(n * c, geom))
    return x
