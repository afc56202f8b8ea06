"""im2col convolution: gather every window into a patch matrix, then one matrix product.

The patch matrix of sample ``n`` and group ``g`` has one column per output position
``j`` and one row per (channel, tap) pair::

    cols[n, g, (c, m), j] = V_pad[n, g*C_g + c, j*s + m*d]         (C_g*prod(k)) x P
    Z[n, g]               = K_mat[g] @ cols[n, g]                  K_mat[g]: K_g x (C_g*prod(k))

Backward: ``dK_mat[g] = sum_n G[n, g] @ cols[n, g].T`` and ``dcols = K_mat[g].T @ G[n, g]``,
folded back onto the input (col2im, the adjoint of the gather).

The patch matrix is ``prod(k)`` times the input, so it is built in chunks (samples, then
rows of the first output axis) that each stay under the workspace limit
(:func:`convlab.set_workspace_limit`); the smallest chunk is one output row of one sample.
"""
from __future__ import annotations

import dataclasses
import math

from .._backend import get_array_module, workspace_limit
from .direct import grouped_weight, split_groups
from .windows import add_tap, pad, taps, unpad, windows


def _chunks(args, itemsize):
    """Yield ``(batch slice, first row, sub-geometry)`` for patch-matrix chunks under the limit."""
    geom = args.geom
    out0, rest = geom.out_size[0], math.prod(geom.out_size[1:])
    per_row = args.in_channels * math.prod(geom.kernel) * rest * itemsize
    limit = workspace_limit()
    if per_row * out0 <= limit:
        nb, rows = max(1, limit // (per_row * out0)), out0
    else:
        nb, rows = 1, max(1, limit // per_row)
    for n0 in range(0, args.batch, nb):
        for r0 in range(0, out0, rows):
            sub = dataclasses.replace(geom, out_size=(min(rows, out0 - r0),) + geom.out_size[1:])
            yield slice(n0, n0 + nb), r0, sub


def _row_view(a, r0, geom):
    """Grouped padded input ``(nb, G, C_g, *padded)`` (or its gradient) from the first
    cell that output row ``r0`` reads."""
    return a[:, :, :, r0 * geom.stride[0]:]


def patch_matrix(xg, sub):
    """``(nb, G, C_g, *padded) -> (nb, G, C_g*prod(k), P)``: one copy, the workspace."""
    nb, groups, cg = xg.shape[:3]
    win = windows(xg, sub)  # (nb, G, C_g, *out, *k)
    nd = sub.nd
    order = (0, 1, 2) + tuple(range(3 + nd, 3 + 2 * nd)) + tuple(range(3, 3 + nd))
    return win.transpose(order).reshape(nb, groups, cg * math.prod(sub.kernel), math.prod(sub.out_size))


def col2im_into(gpadg, dcols, sub):
    """Adjoint of :func:`patch_matrix`: add ``dcols`` onto the padded gradient in place."""
    nb, groups, cg = gpadg.shape[:3]
    d = dcols.reshape((nb, groups, cg) + sub.kernel + sub.out_size)
    for tap in taps(sub):
        add_tap(gpadg, d[(slice(None),) * 3 + tuple(tap)], tap, sub)


def _out_rows(a, r0, sub):
    return a[(slice(None), slice(None), slice(None), slice(r0, r0 + sub.out_size[0]))]


def forward(x, w, args):
    xp = get_array_module(x)
    geom, groups = args.geom, args.groups
    xg = split_groups(pad(x, geom), groups)
    wmat = grouped_weight(w, groups).reshape(groups, args.out_channels // groups, -1)
    y = xp.empty((args.batch, groups, wmat.shape[1]) + geom.out_size, dtype=x.dtype)
    for nsl, r0, sub in _chunks(args, x.itemsize):
        cols = patch_matrix(_row_view(xg[nsl], r0, sub), sub)
        yc = xp.matmul(wmat, cols)
        _out_rows(y[nsl], r0, sub)[...] = yc.reshape(yc.shape[:3] + sub.out_size)
    return y.reshape((args.batch, args.out_channels) + geom.out_size)


def grad_weight(gy, x, args):
    xp = get_array_module(gy)
    geom, groups = args.geom, args.groups
    kg = args.out_channels // groups
    xg = split_groups(pad(x, geom), groups)
    gyg = gy.reshape((args.batch, groups, kg) + geom.out_size)
    gw = xp.zeros((groups, kg, (args.in_channels // groups) * math.prod(geom.kernel)), dtype=gy.dtype)
    for nsl, r0, sub in _chunks(args, x.itemsize):
        cols = patch_matrix(_row_view(xg[nsl], r0, sub), sub)
        g = _out_rows(gyg[nsl], r0, sub).reshape(cols.shape[:2] + (kg, cols.shape[3]))
        gw += xp.matmul(g, cols.swapaxes(-1, -2)).sum(axis=0)
    return gw.reshape((args.out_channels, args.in_channels // groups) + geom.kernel)


def grad_input(gy, w, args):
    xp = get_array_module(gy)
    geom, groups = args.geom, args.groups
    wmat = grouped_weight(w, groups).reshape(groups, args.out_channels // groups, -1)
    kg, cg = wmat.shape[1], args.in_channels // groups
    gyg = gy.reshape((args.batch, groups, kg) + geom.out_size)
    gpad = xp.zeros((args.batch, groups, cg) + geom.padded_size, dtype=gy.dtype)
    for nsl, r0, sub in _chunks(args, gy.itemsize):
        g = _out_rows(gyg[nsl], r0, sub)
        g = g.reshape(g.shape[:3] + (-1,))
        dcols = xp.matmul(wmat.swapaxes(-1, -2), g)
        col2im_into(_row_view(gpad[nsl], r0, sub), dcols, sub)
    return xp.ascontiguousarray(unpad(gpad, geom)).reshape((args.batch, args.in_channels) + geom.in_size)
