"""Pooling on the kernels of csrc/pool2d.cu (section 9.3), for CuPy arrays with 1 or 2 spatial dims.

The functions take an already-parsed :class:`convlab._params.Geometry` (kernel, stride,
dilation, ``(lo, hi)`` padding per axis and the output size, ceil_mode already applied), so the
public pooling API can call them after its own argument checks. Shapes: ``x (N, C, *n)`` ->
``y (N, C, *out)``; indices are int64 flat positions in each input plane (PyTorch's
convention). Window ``j`` covers input cells ``j*s - lo + m*d`` per axis:

- max: ``y[j] = max_m x[j*s - lo + m*d]`` (padding ignored; the first maximum in row-major
  window order wins ties, a NaN wins over numbers); backward sends ``grad_y[j]`` to that cell.
- avg: ``y[j] = sum_m x[...] / D[j]`` with ``D`` = ``divisor_override``, or the number of window
  cells inside the padded input (``count_include_pad``) or inside the input.
- lp: ``y[j] = (sum_m |x[...]|^p)^(1/p)``; backward ``grad_x = sign(x)|x|^(p-1) grad_y / y^(p-1)``,
  0 where ``y`` is 0.

Backward passes are gathers over the windows covering each input cell (no atomics).
"""
from __future__ import annotations

import math

from .._params import check_shape, lp_norm
from ._launch import on_device, ptr, require_kernels, same_device, version_arg, window_shape


def _check(x, geom, what):
    module = require_kernels(x, what, geom.nd)
    if x.ndim != geom.nd + 2 or tuple(x.shape[2:]) != tuple(geom.in_size):
        raise ValueError(f"{what}: x must have shape (N, C, *{geom.in_size}) for this geometry, got {tuple(x.shape)}")
    return module


def _forward(mode, x, geom, version, indices=False, count_include_pad=True, divisor=0, p=2.0):
    module = _check(x, geom, f"{mode}_pool")
    out_shape = tuple(x.shape[:2]) + tuple(geom.out_size)
    with on_device(x) as at:
        xp = at.xp
        y = xp.empty(out_shape, dtype=x.dtype)
        idx = xp.empty(out_shape, dtype=xp.int64) if indices else None
        if y.size:
            x = xp.ascontiguousarray(x)
            module.pool2d_forward(mode, version_arg(version), x.dtype.name, at.device, at.stream,
                                  y.data.ptr, x.data.ptr, ptr(idx), window_shape(math.prod(x.shape[:2]), geom),
                                  count_include_pad, divisor, p)
    return (y, idx) if indices else y


def _backward(mode, grad_y, x, geom, version, y=None, indices=None, count_include_pad=True, divisor=0, p=2.0):
    module = _check(x, geom, f"{mode}_pool backward")
    out_shape = tuple(x.shape[:2]) + tuple(geom.out_size)
    check_shape(grad_y, out_shape, "grad_y", " (the forward output's shape)")
    if grad_y.dtype != x.dtype:
        raise TypeError(f"grad_y has dtype {grad_y.dtype} but x has dtype {x.dtype}")
    if y is not None and y.dtype != x.dtype:
        raise TypeError(f"y has dtype {y.dtype} but x has dtype {x.dtype}")
    same_device(x, "x", grad_y=grad_y, y=y, indices=indices)
    with on_device(x) as at:
        xp = at.xp
        gx = xp.empty(x.shape, dtype=x.dtype)
        if gx.size:
            grad_y, x = xp.ascontiguousarray(grad_y), xp.ascontiguousarray(x)
            y = None if y is None else xp.ascontiguousarray(y)
            indices = None if indices is None else xp.ascontiguousarray(indices)
            module.pool2d_backward(mode, version_arg(version), x.dtype.name, at.device, at.stream,
                                   gx.data.ptr, grad_y.data.ptr, x.data.ptr, ptr(y), ptr(indices),
                                   window_shape(math.prod(x.shape[:2]), geom), count_include_pad, divisor, p)
    return gx


def _divisor(divisor_override):
    """The kernels' divisor argument: 0 for none (the value was checked by _params.divisor_override)."""
    return 0 if divisor_override is None else divisor_override


def max_pool2d(x, geom, return_indices=False, version=None):
    """``y``, or ``(y, indices)`` with ``return_indices``: the maximum of each window."""
    return _forward("max", x, geom, version, indices=return_indices)


def max_pool2d_backward(grad_y, x, geom, indices=None, version=None):
    """``grad_x``: each window's gradient goes to its maximum (recomputed when ``indices`` is None)."""
    if indices is None:
        indices = max_pool2d(x, geom, return_indices=True, version=version)[1]
    else:
        check_shape(indices, tuple(x.shape[:2]) + tuple(geom.out_size), "indices", " (the forward output's shape)")
        if indices.dtype.name != "int64":
            raise TypeError(f"indices must be int64, got {indices.dtype}")
    return _backward("max", grad_y, x, geom, version, indices=indices)


def avg_pool2d(x, geom, count_include_pad=True, divisor_override=None, version=None):
    """The mean of each window (see the module docstring for the divisor)."""
    return _forward("avg", x, geom, version, count_include_pad=bool(count_include_pad),
                    divisor=_divisor(divisor_override))


def avg_pool2d_backward(grad_y, x, geom, count_include_pad=True, divisor_override=None, version=None):
    """``grad_x[i] = sum over windows j covering i of grad_y[j] / D[j]``."""
    return _backward("avg", grad_y, x, geom, version, count_include_pad=bool(count_include_pad),
                     divisor=_divisor(divisor_override))


def lp_pool2d(x, p, geom, version=None):
    """``(sum |x|^p)^(1/p)`` over each window (L2 pooling is ``p=2``)."""
    return _forward("lp", x, geom, version, p=lp_norm(p))


def lp_pool2d_backward(grad_y, x, p, geom, y=None, version=None):
    """``grad_x``; ``y`` is the forward output (recomputed when None)."""
    p = lp_norm(p)
    if y is None:
        y = lp_pool2d(x, p, geom, version=version)
    else:
        check_shape(y, tuple(x.shape[:2]) + tuple(geom.out_size), "y", " (the forward output's shape)")
    return _backward("lp", grad_y, x, geom, version, y=y, p=p)
