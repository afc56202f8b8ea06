"""Small convolutions: the whole patch matrix in one gather, and one matrix product.

On small planes a convolution's arithmetic takes less time than the library calls around
it (microseconds each), so the path with the fewest calls wins. The patch matrix of
:mod:`.im2col`, for every sample at once, is one ``take`` from the input by a table made
once per shapes (a padding cell reads a zero); its rows are ordered (channel, tap), the
kernel's own layout, so the weight is a view (eq. 9.7/9.8 and 9.11-9.13)::

    cols[n, g, (c, m), j] = V_pad[n, g*C_g + c, j*s + m*d]        (C_g*prod(k)) x P, one take
    Z[n, g]               = K[g] @ cols[n, g]                     K[g]: K_g x (C_g*prod(k))
    dK[g]                 = sum_n G[n, g] @ cols[n, g].T
    dV_pad[n, g]          = fold(K[g].T @ G[n, g])                col2im: one add per tap

Every column is an output (no cropped grid cells), so a NaN or an infinity reaches exactly
the sums whose windows read it. Direct and im2col hand shapes whose patch is at most
``PATCH_ELEMENTS`` here, as they hand 1x1 kernels to :mod:`.pointwise`.
"""
from __future__ import annotations

import functools
import math
import sys

import numpy as np

from .._backend import get_array_module
from . import pointwise
from .groups import matmul
from .windows import cells, fold, unpad

# Patches this small cost less to copy whole than the calls of the chunked, per-tap passes.
PATCH_ELEMENTS = 8192


def rows(args) -> int:
    """Rows of one group's patch: ``C_g * prod(k)``."""
    return args.in_channels // args.groups * math.prod(args.geom.kernel)


def serves(args) -> bool:
    """A patch matrix of at most ``PATCH_ELEMENTS`` elements."""
    return args.batch * args.groups * rows(args) * math.prod(args.geom.out_size) <= PATCH_ELEMENTS


@functools.lru_cache(maxsize=1024)
def handler(args):
    """The module that direct and im2col hand ``args`` to, or ``None``: :mod:`.pointwise` for
    a 1x1 kernel without padding (no copy at all), else this one for a small patch."""
    return pointwise if pointwise.serves(args) else sys.modules[__name__] if serves(args) else None


def _columns(x, args):
    """``(N, G, C_g*prod(k), P)``: the patch matrix of every sample, one ``take`` from the
    input followed by one zero (what every padding cell reads) by :func:`_sources`."""
    xp = get_array_module(x)
    flat = xp.empty(x.size + 1, dtype=x.dtype)
    flat[:-1].reshape(x.shape)[...] = x
    flat[-1] = 0
    patch = (args.batch, args.groups, rows(args), math.prod(args.geom.out_size))
    return flat.take(xp.asarray(_sources(args))).reshape(patch)


@functools.lru_cache(maxsize=256)
def _sources(args):
    """``(N*C*prod(k)*P,)``: for each patch element, the flat index of the input cell it
    reads, or ``N*C*prod(n)`` (one past the input: a zero) for a padding cell (read-only)."""
    geom = args.geom
    padded = np.full((args.batch, args.in_channels) + geom.padded_size, args.batch * args.in_channels
                     * math.prod(geom.in_size), dtype=np.intp)
    inside = (Ellipsis,) + tuple(slice(lo, lo + n) for n, (lo, _) in zip(geom.in_size, geom.pad))
    padded[inside] = np.arange(padded[inside].size).reshape(padded[inside].shape)
    src = padded.reshape(-1).take(_cells(args))
    src.flags.writeable = False
    return src


def _weight(w, args):
    """``(K, C_g, *k) -> (G, K_g, C_g*prod(k))``: a view of a contiguous kernel."""
    return w.reshape(args.groups, args.out_channels // args.groups, rows(args))


def forward(x, w, args):
    z = matmul(_weight(w, args), _columns(x, args))  # (N, G, K_g, P)
    return z.reshape((args.batch, args.out_channels) + args.geom.out_size)


def grad_weight(gy, x, args):
    g = gy.reshape(args.batch, args.groups, args.out_channels // args.groups, math.prod(args.geom.out_size))
    gw = get_array_module(gy).matmul(g, _columns(x, args).swapaxes(-1, -2)).sum(axis=0)  # (G, K_g, R)
    return gw.reshape((args.out_channels, args.in_channels // args.groups) + args.geom.kernel)


def grad_input(gy, w, args):
    xp = get_array_module(gy)
    g = gy.reshape(args.batch, args.groups, args.out_channels // args.groups, math.prod(args.geom.out_size))
    d = matmul(_weight(w, args).swapaxes(-1, -2), g)  # (N, G, C_g*prod(k), P)
    return xp.ascontiguousarray((col2im if xp is np else col2im_taps)(d, args))


def col2im(d, args):
    """The adjoint of the patch (NumPy): ``(N, G, C_g*prod(k), P) -> (N, C, *n)`` in one
    ``np.add.at`` over the flat cell index of every patch element; each padded cell adds
    its taps in tap order, as :func:`col2im_taps` does."""
    geom = args.geom
    gpad = np.zeros((args.batch, args.in_channels) + geom.padded_size, dtype=d.dtype)
    np.add.at(gpad.reshape(-1), _cells(args), d.reshape(-1))
    return unpad(gpad, geom)


def col2im_taps(d, args):
    """:func:`col2im` for any array module: one add per tap (:func:`.windows.fold`)."""
    geom, nd = args.geom, args.nd
    d = d.reshape((args.batch, args.in_channels) + geom.kernel + geom.out_size)
    order = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))  # (N, C, *out, *k)
    return fold(d.transpose(order), geom, d.shape[:2])


@functools.lru_cache(maxsize=256)
def _cells(args):
    """``(N*C*prod(k)*P,)``: the flat cell of the padded input that each patch element reads,
    ``j*s + m*d`` in plane ``(n, c)``, in the patch's order (read-only, shared)."""
    geom = args.geom
    flat = np.zeros((1, 1), dtype=np.intp)
    for a in range(geom.nd):  # row-major over taps and over windows
        c = cells(geom, a)  # (out, k)
        flat = (flat[:, None, :, None] * geom.padded_size[a] + c.T[None, :, None, :]).reshape(
            flat.shape[0] * c.shape[1], flat.shape[1] * c.shape[0])
    planes = np.arange(args.batch * args.in_channels, dtype=np.intp) * math.prod(geom.padded_size)
    flat = (planes[:, None, None] + flat[None]).ravel()
    flat.flags.writeable = False
    return flat


def counts(args):
    """The work of :func:`forward`: ``(multiply-adds, patch elements, matrix products,
    copied elements)`` (the padded input, when there is padding, and the patch)."""
    n, c, k, g = args.batch, args.in_channels, args.out_channels, args.groups
    outs = math.prod(args.geom.out_size)
    patch = n * g * rows(args) * outs
    padded = 0 if args.geom.padded_size == args.geom.in_size else n * c * math.prod(args.geom.padded_size)
    return n * k * rows(args) * outs, patch, n * g, padded + patch
