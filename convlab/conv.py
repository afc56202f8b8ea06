"""The convolution family: conv, its backward pass, and the transposed convolution.

All public ``conv{1,2,3}d*`` functions are made from the generic functions here; the
algorithms they dispatch to live in :mod:`convlab.reference` (and :mod:`convlab.cuda.conv`
for CuPy arrays) and each provides ``forward(x, w, args)``, ``grad_input(gy, w, args)`` and
``grad_weight(gy, x, args)``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

from . import _params as P
from ._backend import get_array_module
from ._nd import family
from .cuda import conv as cuda
from .reference import direct, im2col, naive

ALGORITHMS = {"naive": naive, "direct": direct, "im2col": im2col, "cuda": cuda}
PLANNED = ("fft", "separable", "winograd")
CHOICES = ("auto",) + tuple(ALGORITHMS) + PLANNED


def _algorithm(name, args, x):
    if not isinstance(name, str):
        raise TypeError(f"algorithm must be a string, one of {CHOICES}, got {name!r}")
    if name == "auto":
        return ALGORITHMS[_choose(args, x).algorithm]
    if name in ALGORITHMS:
        return ALGORITHMS[name]
    if name in PLANNED:
        raise ValueError(f"algorithm={name!r} is not available yet in this build; use one of "
                         f"{('auto',) + tuple(ALGORITHMS)}")
    raise ValueError(f"unknown algorithm {name!r}; expected one of {CHOICES}")


def _flip(w, nd):
    return w[(Ellipsis,) + (slice(None, None, -1),) * nd]


def _bias_view(b, nd):
    return b.reshape((1, -1) + (1,) * nd)


def _sum_bias_grad(gy, nd):
    return gy.sum(axis=(0,) + tuple(range(2, 2 + nd)))


# ----------------------------------------------------------------------------- choice

@dataclass(frozen=True)
class Choice:
    """What ``algorithm="auto"`` runs for a convolution, and why."""

    algorithm: str
    reason: str


_measured: dict = {}


def _choose(args, x=None):
    if x is not None and cuda.unavailable(args, x) is None:
        return Choice("cuda", "CuPy arrays and the CUDA extension: the implicit-GEMM kernels of csrc/conv2d.cu")
    geom = args.geom
    cg = args.in_channels // args.groups
    return Choice("im2col", f"{cg} channels x {math.prod(geom.kernel)} taps per group: one BLAS product "
                            "per patch-matrix chunk beats a product per tap")


def choose_algorithm(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, *,
                     dtype="float32", measure=False) -> Choice:
    """What ``algorithm="auto"`` would use for ``conv`` with these shapes, and why.

    ``x_shape`` is ``(N, C, *n)`` and ``w_shape`` ``(K, C/groups, *k)``; the number of
    spatial dims is taken from them. With ``measure=True`` each candidate algorithm is
    timed once on random data of these shapes and the fastest is cached per shape.
    """
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    nd = len(x_shape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"x_shape must have 3 to 5 dims (N, C, *spatial), got {x_shape}")
    args = P.conv_shape_args(x_shape, w_shape, stride, padding, dilation, groups, nd)
    if not measure:
        return _choose(args)
    import numpy as np

    key = (x_shape, w_shape, args.geom, groups, np.dtype(dtype).str)
    if key not in _measured:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(x_shape).astype(dtype)
        w = rng.standard_normal(w_shape).astype(dtype)
        times = {}
        for name in ("direct", "im2col"):
            t0 = time.perf_counter()
            ALGORITHMS[name].forward(x, w, args)
            times[name] = time.perf_counter() - t0
        best = min(times, key=times.get)
        _measured[key] = Choice(best, "measured: " + ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in times.items()))
    return _measured[key]


# ----------------------------------------------------------------------------- convolution

def conv(nd, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False, algorithm="auto"):
    """{nd}-d convolution (cross-correlation unless ``flip=True``) with stride, padding, dilation, groups.

    Shapes: ``x (N, C, {sp})``, ``w (K, C/groups, {ksp})``, ``b (K,)`` -> ``(N, K, {osp})``.

    Eq. 9.7/9.8 of the book with batch, groups, stride ``s``, dilation ``d`` and zero
    padding ``lo`` (``V`` is zero outside the input, ``g`` the group of channel ``k``)::

        Z[n, k, j] = b[k] + sum_{{c, m}} V[n, g*C_g + c, j*s + m*d - lo] * K[k, c, m]

    ``flip=True`` flips the kernel on every spatial axis: true convolution, eq. 9.1-9.4.
    ``padding``: int, per-dim ints, per-dim ``(lo, hi)`` pairs, ``"valid"``, ``"same"``
    (output ``ceil(n/s)``, odd extra pad at the end) or ``"full"`` (``d*(k-1)`` each side).
    Output size per axis: ``floor((n + lo + hi - d*(k-1) - 1) / s) + 1``.
    ``algorithm``: ``"auto"``, ``"naive"`` (the loop oracle), ``"direct"``, ``"im2col"``, ``"cuda"``
    (CuPy arrays, 1-d and 2-d; ``"auto"`` picks it when the CUDA extension is built).
    """
    args = P.conv_args(x, w, b, stride, padding, dilation, groups, nd)
    algo = _algorithm(algorithm, args, x)
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be a bool, got {flip!r}")
    y = algo.forward(x, _flip(w, nd) if flip else w, args)
    if b is not None:
        y += _bias_view(b, nd)
    return y


def conv_backward(nd, grad_y, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *,
                  flip=False, algorithm="auto"):
    """Backward pass of ``conv{nd}d``: ``(grad_x, grad_w, grad_b)``; ``grad_b`` is None without ``b``.

    Shapes: ``grad_y (N, K, {osp})`` (the forward output's shape), ``x (N, C, {sp})``,
    ``w (K, C/groups, {ksp})`` -> ``grad_x`` like ``x``, ``grad_w`` like ``w``, ``grad_b (K,)``.

    Eq. 9.11-9.13 with ``G = dL/dZ``::

        grad_w[k, c, m]    = sum_{{n, j}} G[n, k, j] V[n, g*C_g + c, j*s + m*d - lo]
        grad_x[n, g*C_g + c, i] = sum_{{k in g, j, m : j*s + m*d - lo = i}} G[n, k, j] K[k, c, m]
        grad_b[k]          = sum_{{n, j}} G[n, k, j]
    """
    args = P.conv_args(x, w, b, stride, padding, dilation, groups, nd)
    P.check_grad_y(grad_y, x, (args.batch, args.out_channels) + args.geom.out_size)
    algo = _algorithm(algorithm, args, x)
    wf = _flip(w, nd) if flip else w
    gx = algo.grad_input(grad_y, wf, args)
    gw = algo.grad_weight(grad_y, x, args)
    if flip:
        gw = get_array_module(gw).ascontiguousarray(_flip(gw, nd))
    gb = _sum_bias_grad(grad_y, nd) if b is not None else None
    return gx, gw, gb


# ----------------------------------------------------------------------------- transposed

def conv_transpose(nd, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                   algorithm="auto"):
    """{nd}-d transposed convolution: the adjoint of ``conv{nd}d`` (the book's h(K, H, s), section 9.5).

    Shapes (PyTorch's layout): ``x (N, C_in, {sp})``, ``w (C_in, C_out/groups, {ksp})``,
    ``b (C_out,)`` -> ``(N, C_out, {osp})`` with, per axis,
    ``out = (n - 1)*s - lo - hi + d*(k - 1) + output_padding + 1``.

    It is the input gradient of the convolution that maps ``(N, C_out, *out)`` to
    ``(N, C_in, *n)`` with weight ``w``::

        Y[n, g*C_g + c, i] = b[c'] + sum_{{k in g, j, m : j*s + m*d - lo = i}} X[n, k, j] W[k, c, m]

    ``padding`` is an int, per-dim ints or per-dim ``(lo, hi)`` pairs; ``output_padding``
    (smaller than the stride or the dilation) adds cells at the high end of each axis.
    """
    args = P.conv_transpose_args(x, w, b, stride, padding, output_padding, groups, dilation, nd)
    y = _algorithm(algorithm, args, x).grad_input(x, w, args)
    if b is not None:
        y += _bias_view(b, nd)
    return y


def conv_transpose_backward(nd, grad_y, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                            dilation=1, *, algorithm="auto"):
    """Backward pass of ``conv_transpose{nd}d``: ``(grad_x, grad_w, grad_b)``.

    Shapes: ``grad_y (N, C_out, {osp})``, ``x (N, C_in, {sp})``, ``w (C_in, C_out/groups, {ksp})``.
    The input gradient is the forward convolution of ``grad_y`` with ``w``; the weight
    gradient is the convolution's weight gradient with the roles of input and output
    exchanged::

        grad_x = conv(grad_y, w)            grad_w[k, c, m] = sum_{{n, j}} X[n, k, j] G[n, g*C_g + c, j*s + m*d - lo]
    """
    args = P.conv_transpose_args(x, w, b, stride, padding, output_padding, groups, dilation, nd)
    P.check_grad_y(grad_y, x, (args.batch, args.in_channels) + args.geom.in_size)
    algo = _algorithm(algorithm, args, x)
    gx = algo.forward(grad_y, w, args)
    gw = algo.grad_weight(x, grad_y, args)
    gb = _sum_bias_grad(grad_y, nd) if b is not None else None
    return gx, gw, gb


__all__ = (family(conv, "conv", globals()) + family(conv_backward, "conv", globals(), "_backward")
           + family(conv_transpose, "conv_transpose", globals())
           + family(conv_transpose_backward, "conv_transpose", globals(), "_backward")
           + ["choose_algorithm", "Choice"])
