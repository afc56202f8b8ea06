"""The pooling family (section 9.3): max, average, Lp, maxout and adaptive pools, forward and backward.

All public ``*_pool{1,2,3}d*`` functions are made from the generic functions here; they
validate with :mod:`convlab._params` and compute with :mod:`convlab.reference.pool`.
Semantics follow PyTorch (``torch.nn.functional``) wherever it has the op.
"""
from __future__ import annotations

import math

import numpy as np

from . import _params as P
from ._backend import get_array_module, kernels_unavailable
from ._nd import family
from .reference import pool as ref


def _contiguous(a):
    return get_array_module(a).ascontiguousarray(a)


def _kernel(x, geom):
    """:mod:`convlab.cuda.pool` when a CUDA kernel serves this pool (a CuPy array the built
    extension can take, 1 or 2 spatial dims), else None: the reference runs, on the GPU too."""
    if isinstance(x, np.ndarray) or kernels_unavailable(x, geom.nd) is not None:  # NumPy: no reason to spell out
        return None
    from .cuda import pool as cuda_pool

    return cuda_pool


def _grad_y(grad_y, x, out_size):
    P.check_grad_y(grad_y, x, tuple(x.shape[:2]) + tuple(out_size))


# ----------------------------------------------------------------------------- max

def max_pool(nd, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """{nd}-d max pooling: the largest value in each (strided, dilated, padded) window.

    Shapes: ``x (N, C, {sp})`` -> ``(N, C, {osp})``; with ``return_indices=True`` also the
    int64 flat index of each maximum into its input plane (row-major over ``{sp}``, as PyTorch).

    Section 9.3 with stride ``s``, dilation ``d`` and padding ``lo`` (the padding holds ``-inf``
    and never wins)::

        Y[n, c, j] = max_m V[n, c, j*s + m*d - lo]

    ``stride`` defaults to ``kernel_size``; ``padding`` (ints or ``(lo, hi)`` pairs) is at most
    half the kernel. ``ceil_mode`` rounds the output size up, dropping a window that would
    start in the high padding. Output size per axis:
    ``floor_or_ceil((n + lo + hi - d*(k-1) - 1) / s) + 1``. The backward pass gives each
    window's gradient to its FIRST maximum in row-major window order; NaN counts as the
    largest value. A window that holds no input cell (only possible with dilation) gives
    ``-inf``, index ``-1`` and no gradient.
    """
    geom = P.pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, nd)
    indices = P.boolean(return_indices, "return_indices")
    kernel = _kernel(x, geom)
    if kernel:
        return kernel.max_pool2d(x, geom, return_indices=indices)
    if indices:
        return ref.max_pool_argmax(x, geom, plane=True)
    return ref.max_pool(x, geom)


def max_pool_backward(nd, grad_y, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                      indices=None):
    """Backward pass of ``max_pool{nd}d``: ``grad_x`` like ``x``.

    Shapes: ``grad_y (N, C, {osp})``, ``x (N, C, {sp})``. The whole of ``grad_y[n, c, j]``
    goes to the first maximum (row-major window order) of window ``j``; the others get 0.
    ``indices`` (the forward's ``return_indices``, shaped like ``grad_y``) saves finding the
    maxima again: ``grad_x[n, c, indices[n, c, j]] += grad_y[n, c, j]`` (-1, a window with no
    input cell, adds nothing; an index outside ``[-1, prod(in_size))`` is a ``ValueError``).
    """
    geom = P.pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, nd)
    _grad_y(grad_y, x, geom.out_size)
    if indices is not None:
        return ref.scatter_planes(grad_y, P.pool_indices(indices, grad_y), geom.in_size)
    kernel = _kernel(x, geom)
    if kernel:
        return kernel.max_pool2d_backward(grad_y, x, geom)
    return _contiguous(ref.max_pool_grad(grad_y, x, geom))


# ----------------------------------------------------------------------------- average

def avg_pool(nd, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
    """{nd}-d average pooling.

    Shapes: ``x (N, C, {sp})`` -> ``(N, C, {osp})``::

        Y[n, c, j] = sum_m V[n, c, j*s + m - lo] / D[j]        (V is 0 in the padding)

    ``D[j]`` is ``divisor_override`` when given, else the number of the window's cells
    inside the padded input (``count_include_pad=True``; a ``ceil_mode`` window that runs
    past the padding counts only the cells up to its end) or inside the input itself.
    Other parameters as ``max_pool{nd}d`` (no dilation, as PyTorch).
    """
    geom = P.pool_args(x, kernel_size, stride, padding, 1, ceil_mode, nd)
    include = P.boolean(count_include_pad, "count_include_pad")
    divisor = P.divisor_override(divisor_override)
    kernel = _kernel(x, geom)
    if kernel:
        return kernel.avg_pool2d(x, geom, include, divisor)
    return ref.avg_pool(x, geom, include, divisor)


def avg_pool_backward(nd, grad_y, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                      count_include_pad=True, divisor_override=None):
    """Backward pass of ``avg_pool{nd}d``: ``grad_x[i] = sum_{{j, m : j*s + m - lo = i}} grad_y[j] / D[j]``.

    Shapes: ``grad_y (N, C, {osp})``, ``x (N, C, {sp})`` -> ``grad_x`` like ``x``.
    """
    geom = P.pool_args(x, kernel_size, stride, padding, 1, ceil_mode, nd)
    _grad_y(grad_y, x, geom.out_size)
    include = P.boolean(count_include_pad, "count_include_pad")
    divisor = P.divisor_override(divisor_override)
    kernel = _kernel(x, geom)
    if kernel:
        return kernel.avg_pool2d_backward(grad_y, x, geom, include, divisor)
    return _contiguous(ref.avg_pool_grad(grad_y, geom, include, divisor))


# ----------------------------------------------------------------------------- Lp

def lp_pool(nd, x, p, kernel_size, stride=None, padding=0, ceil_mode=False):
    """{nd}-d Lp pooling: the p-norm of each window (L2 pooling is ``p=2``; ``p=inf`` the max of ``|x|``).

    Shapes: ``x (N, C, {sp})`` -> ``(N, C, {osp})``::

        Y[n, c, j] = (sum_m |V[n, c, j*s + m - lo]|^p)^(1/p)        (V is 0 in the padding)

    ``p`` must be > 0. Unlike PyTorch's ``lp_pool`` (which raises ``x`` to the power ``p``
    without ``|.|`` and rescales a partial ``ceil_mode`` window by ``prod(k)/cells``), every
    window here is the plain p-norm of its cells; padding is supported.
    """
    p = P.lp_norm(p)
    geom = P.pool_args(x, kernel_size, stride, padding, 1, ceil_mode, nd)
    kernel = _kernel(x, geom)
    if kernel and math.isfinite(p):  # the kernel has no p = inf
        return kernel.lp_pool2d(x, p, geom)
    return ref.lp_pool(x, p, geom)


def lp_pool_backward(nd, grad_y, x, p, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Backward pass of ``lp_pool{nd}d``: ``grad_x`` like ``x``.

    ``dY[j]/dV[i] = sign(V[i]) |V[i]|^(p-1) / Y[j]^(p-1)`` for each cell ``i`` of window ``j``;
    0 where the window is all zero (``Y[j] = 0``) and at ``V[i] = 0``.
    """
    p = P.lp_norm(p)
    geom = P.pool_args(x, kernel_size, stride, padding, 1, ceil_mode, nd)
    _grad_y(grad_y, x, geom.out_size)
    kernel = _kernel(x, geom)
    if kernel and math.isfinite(p):
        return kernel.lp_pool2d_backward(grad_y, x, p, geom)
    return _contiguous(ref.lp_pool_grad(grad_y, x, p, geom))


# ----------------------------------------------------------------------------- maxout

def maxout(x, pieces):
    """Maxout (Fig. 9.9): pooling across groups of ``pieces`` consecutive channels.

    Shapes: ``x (N, C, *spatial)`` with 0 to 3 spatial dims -> ``(N, C/pieces, *spatial)``::

        Y[n, c, i] = max_{0 <= q < pieces} V[n, c*pieces + q, i]

    ``pieces`` must divide ``C``.
    """
    geom = P.maxout_args(x, pieces)
    return _contiguous(ref.maxout(x, geom))


def maxout_backward(grad_y, x, pieces):
    """Backward pass of :func:`maxout`: each ``grad_y[n, c, i]`` goes to the first maximum of
    its group of channels. Shapes: ``grad_y (N, C/pieces, *spatial)``, ``x (N, C, *spatial)``."""
    geom = P.maxout_args(x, pieces)
    P.check_grad_y(grad_y, x, (x.shape[0], geom.out_size[0]) + tuple(x.shape[2:]))
    return _contiguous(ref.maxout_grad(grad_y, x, geom))


# ----------------------------------------------------------------------------- adaptive

def adaptive_max_pool(nd, x, output_size, return_indices=False):
    """{nd}-d adaptive max pooling (section 9.7): any input size to a fixed ``output_size``.

    Shapes: ``x (N, C, {sp})`` -> ``(N, C, {osp})`` with ``output_size`` an int or one entry
    per axis (``None`` keeps that axis). Bin ``i`` of an axis of size ``n`` pooled to ``o``
    covers cells ``floor(i*n/o) <= cell < ceil((i+1)*n/o)`` (PyTorch's bins)::

        Y[n, c, j] = max_{{i in bin j}} V[n, c, i]

    ``return_indices=True`` also returns the flat index of each maximum into its input plane.
    """
    bins = P.adaptive_args(x, output_size, nd)
    y, idx = ref.adaptive_max_pool(x, bins)
    return (y, idx) if P.boolean(return_indices, "return_indices") else y


def adaptive_max_pool_backward(nd, grad_y, x, output_size, *, indices=None):
    """Backward pass of ``adaptive_max_pool{nd}d``: each bin's gradient goes to its first maximum
    (found again, or read from the forward's ``indices``, as in ``max_pool{nd}d_backward``).
    Shapes: ``grad_y (N, C, {osp})``, ``x (N, C, {sp})`` -> ``grad_x`` like ``x``."""
    bins = P.adaptive_args(x, output_size, nd)
    _grad_y(grad_y, x, tuple(len(b) for b in bins))
    if indices is not None:
        in_size = tuple(x.shape[2:])
        return ref.scatter_planes(grad_y, P.pool_indices(indices, grad_y), in_size)
    return ref.adaptive_max_pool_grad(grad_y, x, bins)


def adaptive_avg_pool(nd, x, output_size):
    """{nd}-d adaptive average pooling: the mean over each of PyTorch's bins (see
    ``adaptive_max_pool{nd}d``). Shapes: ``x (N, C, {sp})`` -> ``(N, C, {osp})``."""
    bins = P.adaptive_args(x, output_size, nd)
    return ref.adaptive_avg_pool(x, bins)


def adaptive_avg_pool_backward(nd, grad_y, x, output_size):
    """Backward pass of ``adaptive_avg_pool{nd}d``: each cell of bin ``j`` receives
    ``grad_y[j] / |bin j|``. Shapes: ``grad_y (N, C, {osp})``, ``x (N, C, {sp})``."""
    bins = P.adaptive_args(x, output_size, nd)
    _grad_y(grad_y, x, tuple(len(b) for b in bins))
    return ref.adaptive_avg_pool_grad(grad_y, tuple(x.shape[2:]), bins)


__all__ = (family(max_pool, "max_pool", globals()) + family(max_pool_backward, "max_pool", globals(), "_backward")
           + family(avg_pool, "avg_pool", globals()) + family(avg_pool_backward, "avg_pool", globals(), "_backward")
           + family(lp_pool, "lp_pool", globals()) + family(lp_pool_backward, "lp_pool", globals(), "_backward")
           + family(adaptive_max_pool, "adaptive_max_pool", globals())
           + family(adaptive_max_pool_backward, "adaptive_max_pool", globals(), "_backward")
           + family(adaptive_avg_pool, "adaptive_avg_pool", globals())
           + family(adaptive_avg_pool_backward, "adaptive_avg_pool", globals(), "_backward")
           + ["maxout", "maxout_backward"])
