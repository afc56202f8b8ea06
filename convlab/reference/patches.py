"""im2col on the channel-last layout, for strided convolutions.

The patch of output position ``j`` of sample ``n`` holds its window's cells, rows ordered
(tap, channel) as the channel-last input holds them::

    P[(n, j), (m, c)] = V_pad[n, j*s + m*d, g*C_g + c]              (cols x prod(k)*C_g)
    Z[n, g*K_g + k, j] = K_mat[g] @ P[(n, j)]^T                      K_mat[g]: K_g x prod(k)*C_g

In the channel-last copy ``(N, *padded, C)`` (:mod:`.layout`) one window row is a run of
``k_last * C_g`` values (contiguous when there is one group and no dilation), so the patches
of a chunk of output rows are one strided view, copied in long runs whatever the stride:
no stride phases and no per-tap copies of ``C_g`` rows, which is what :mod:`.im2col`'s
phase layout costs on strided layers (most on few channels: the 7x7/2 stem). The
products write the ``(N, K, *out)`` output in place.

The weight gradient (eq. 9.11-9.13) reads the same patches::

    dK_mat[g] = sum over chunks of G[n, g] @ P                     (K_g x prod(k)*C_g)

The input gradient (col2im) adds the rows of ``G^T @ K_mat`` back onto a channel-last
gradient, one strided add per tap (a tap's windows read distinct cells), each moving runs
of ``C_g`` values: on the stem's 3 channels that is 2.4x slower than :mod:`.im2col`'s phase
layout, on 128 channels 1.2x faster, so it serves only runs of at least ``RUN_BYTES``
(:func:`long_runs`). A sample's chunks run in order on one core, because neighbouring
rows' windows overlap.

Chunks are output rows of the first spatial axis of one sample; they run on every core.
"""
from __future__ import annotations

import itertools
import math

import numpy as np

from .. import _parallel
from .._backend import as_strided, get_array_module, workspace_limit
from .groups import matmul
from .layout import channel_first, channel_last
from .phases import most, spans

CACHE_BYTES = 1 << 20
MIN_COLUMNS = 256
RUN_BYTES = 512


def serves(args) -> bool:
    """Strided convolutions (:mod:`.pointwise` takes 1x1 kernels first)."""
    return any(s > 1 for s in args.geom.stride)


def long_runs(args, itemsize) -> bool:
    """Whether a group's channels make runs of ``RUN_BYTES`` for the input gradient's adds."""
    return args.in_channels // args.groups * itemsize >= RUN_BYTES


def _blocks(args, itemsize):
    """Samples ``(b0, b1)`` whose channel-last copy takes at most half the workspace limit
    (one sample at least); the other half is the chunks'."""
    per_sample = args.in_channels * math.prod(args.geom.padded_size) * itemsize
    return spans(args.batch, most(0, per_sample, workspace_limit() // 2, args.batch))


def _chunks(args, itemsize, n):
    """``(n, r0, r1)`` for ``n`` samples: output rows ``r0:r1`` (first spatial axis) of one
    sample, whose patches stay in cache yet give each product ``MIN_COLUMNS`` columns,
    enough chunks for every worker, and all workers' patches within half the workspace limit."""
    geom, workers = args.geom, _parallel.workers()
    row = math.prod(geom.out_size[1:])
    per_col = math.prod(geom.kernel) * (args.in_channels // args.groups) * itemsize
    want = max(MIN_COLUMNS, CACHE_BYTES // max(1, per_col))
    want = min(want, -(-n * row * geom.out_size[0] // workers))
    want = max(1, min(want, workspace_limit() // 2 // workers // max(1, per_col)))
    rows = max(1, want // max(1, row))
    return [(i, r0, min(geom.out_size[0], r0 + rows)) for i in range(n) for r0 in range(0, geom.out_size[0], rows)]


def _windows(xt, args, n, r0, r1, g, writeable=False):
    """The windows of output rows ``r0:r1`` of sample ``n``, group ``g``, in the channel-last
    ``xt``: a strided view ``(r1 - r0, *out[1:], *k, C_g)`` (windows overlap when ``k > s``)."""
    geom, nd = args.geom, args.nd
    cg = args.in_channels // args.groups
    base = xt[n, r0 * geom.stride[0]:, ..., g * cg:(g + 1) * cg]
    sp = base.strides[:nd]
    return as_strided(base, (r1 - r0,) + geom.out_size[1:] + geom.kernel + (cg,),
                      tuple(st * s for st, s in zip(sp, geom.stride)) + tuple(st * d for st, d in zip(sp, geom.dilation))
                      + base.strides[-1:], writeable)


def _patches(xt, args, n, r0, r1, g):
    """The patch matrix of output rows ``r0:r1`` of sample ``n``, group ``g``:
    ``(cols, prod(k)*C_g)``, one copy of its windows."""
    p = get_array_module(xt).ascontiguousarray(_windows(xt, args, n, r0, r1, g))
    return p.reshape(math.prod(p.shape[:args.nd]), math.prod(p.shape[args.nd:]))


def _kernel_matrix(w, args):
    """``(K, C_g, *k) -> (G, K_g, prod(k)*C_g)``, columns ordered (tap, channel)."""
    xp = get_array_module(w)
    nd = args.nd
    wm = xp.ascontiguousarray(w.transpose((0,) + tuple(range(2, 2 + nd)) + (1,)))
    return wm.reshape(args.groups, args.out_channels // args.groups, math.prod(wm.shape[1:]))


def _each_block(fn, x, args, itemsize):
    """``fn(group, xt, b0)`` on every core for each block of samples: ``xt`` its channel-last
    copy, ``group`` chunks ``(i, r0, r1)`` of its sample ``b0 + i``; the groups' results, in order."""
    xp = get_array_module(x)
    results = []
    for b0, b1 in _blocks(args, itemsize):
        xt = channel_last(x[b0:b1], tuple(lo for lo, _ in args.geom.pad), args.geom.padded_size)
        results += _parallel.map_groups(lambda group: fn(group, xt, b0), _chunks(args, itemsize, b1 - b0), xp,
                                        blas=True)
    return results


def _columns(a, args, n, r0, r1, g):
    """Output channels of group ``g``, columns of rows ``r0:r1`` of sample ``n``: ``(K_g, cols)`` of ``a (N, K, P)``."""
    kg, row = args.out_channels // args.groups, math.prod(args.geom.out_size[1:])
    return a[n, g * kg:(g + 1) * kg, r0 * row:r1 * row]


def forward(x, w, args):
    xp = get_array_module(x)
    wm = _kernel_matrix(w, args)
    y = xp.empty((args.batch, args.out_channels, math.prod(args.geom.out_size)), dtype=x.dtype)

    def run(group, xt, b0):
        for i, r0, r1 in group:
            for g in range(args.groups):
                matmul(wm[g], _patches(xt, args, i, r0, r1, g).T, out=_columns(y, args, b0 + i, r0, r1, g))

    _each_block(run, x, args, x.itemsize)
    return y.reshape((args.batch, args.out_channels) + args.geom.out_size)


def grad_weight(gy, x, args):
    xp = get_array_module(gy)
    g2 = gy.reshape(gy.shape[:2] + (math.prod(args.geom.out_size),))
    kg, cg = args.out_channels // args.groups, args.in_channels // args.groups

    def run(group, xt, b0):
        acc = xp.zeros((args.groups, kg, math.prod(args.geom.kernel) * cg), dtype=gy.dtype)
        for i, r0, r1 in group:
            for g in range(args.groups):
                acc[g] += xp.matmul(_columns(g2, args, b0 + i, r0, r1, g), _patches(xt, args, i, r0, r1, g))
        return acc

    gw = sum(_each_block(run, x, args, gy.itemsize))
    gw = gw.reshape((args.out_channels,) + args.geom.kernel + (cg,)).transpose((0, args.nd + 1) + tuple(range(1, args.nd + 1)))
    return xp.ascontiguousarray(gw)


def grad_input(gy, w, args):
    """col2im: ``dV_t[(n, j*s + m*d)] += (G[n, g]^T @ K_mat[g])[(j, m)]``, tap by tap."""
    xp = get_array_module(gy)
    geom, nd = args.geom, args.nd
    wm = _kernel_matrix(w, args)
    g2 = gy.reshape(gy.shape[:2] + (math.prod(geom.out_size),))
    gx = xp.empty((args.batch, args.in_channels) + geom.in_size, dtype=gy.dtype)
    taps = [(Ellipsis,) + tap + (slice(None),) for tap in np.ndindex(*geom.kernel)]

    def run(group, gt, b0):
        for chunks in group:  # one sample's chunks, in order: their windows overlap
            for i, r0, r1 in chunks:
                for g in range(args.groups):
                    view = _windows(gt, args, i, r0, r1, g, writeable=True)
                    d = matmul(_columns(g2, args, b0 + i, r0, r1, g).T, wm[g]).reshape(view.shape)
                    for tap in taps:  # a tap's cells are distinct: one add each
                        view[tap] += d[tap]

    for b0, b1 in _blocks(args, gy.itemsize):
        gt = xp.zeros((b1 - b0,) + geom.padded_size + (args.in_channels,), dtype=gy.dtype)
        by_sample = [list(c) for _, c in itertools.groupby(_chunks(args, gy.itemsize, b1 - b0), key=lambda c: c[0])]
        _parallel.map_groups(lambda group: run(group, gt, b0), by_sample, xp, blas=True)
        channel_first(gt, tuple(lo for lo, _ in geom.pad), geom.in_size, out=gx[b0:b1])
    return gx


def counts(args, itemsize):
    """The work of :func:`forward` in :mod:`.im2col`'s features: ``(multiply-adds, patch
    elements, matrix products, copied elements)`` (the channel-last input and the patches)."""
    geom = args.geom
    cols = args.batch * math.prod(geom.out_size)
    rows = math.prod(geom.kernel) * (args.in_channels // args.groups)
    products = sum(len(_chunks(args, itemsize, b1 - b0)) for b0, b1 in _blocks(args, itemsize)) * args.groups
    return (cols * rows * args.out_channels, cols * rows * args.groups, products,
            args.batch * args.in_channels * math.prod(geom.padded_size))

