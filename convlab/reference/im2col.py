"""im2col convolution: gather every window into a patch matrix, then one matrix product.

The patch matrix of sample ``n`` and group ``g`` has one column per output position
``j`` and one row per (channel, tap) pair::

    cols[n, g, (c, m), j] = V_pad[n, g*C_g + c, j*s + m*d]         (C_g*prod(k)) x P
    Z[n, g]               = K_mat[g] @ cols[n, g]                  K_mat[g]: K_g x (C_g*prod(k))

Backward: ``dK_mat[g] = sum_n G[n, g] @ cols[n, g].T`` and ``dcols = K_mat[g].T @ G[n, g]``,
folded back onto the input (col2im, the adjoint of the gather).

:func:`patch_matrix` builds this matrix exactly (PyTorch's ``unfold``, used by
:func:`convlab.im2col`). The algorithm builds the same rows, ordered (tap, channel), on the
columns of the flattened phase grid (:mod:`.phases`) that direct uses: each tap's rows are
one contiguous range of the phase array, so the gather is a block copy per tap. The
matrix is ``prod(k)`` times the input, so it is built in column chunks that stay in
cache (:class:`.phases.Plan`) and under the workspace limit
(:func:`convlab.set_workspace_limit`); each chunk's product is written straight into the
output. Small planes, where the grid's cropped cells would waste work, gather only the
outputs' columns instead (:func:`exact_columns`). Each of the two column layouts is a
class (:class:`Ranges`, :class:`Gathers`) with the gather, its adjoint, and the mapping of
the output and its gradient to the columns; the passes are written once against either.
"""
from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np

from .._backend import get_array_module, workspace_limit
from .._protocol import all_finite, plain
from . import patches, small
from .groups import matmul, tap_weights
from .phases import (MIN_CHUNK, block_gradient, block_input, block_output, blocked, clear, cropped, plan,
                     store_input_gradient, store_output)
from .windows import add_tap, taps, windows


COPY_ELEMENTS = 8192
EXACT_WASTE = 1.2
EXACT_ROWS = 32


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


def _kernel_matrix(w, args):
    """``(K, C_g, *k) -> (G, K_g, taps*C_g)``, rows of the patch ordered (tap, channel)."""
    xp = get_array_module(w)
    wt = tap_weights(w, args)  # (taps, G, K_g, C_g)
    return xp.ascontiguousarray(wt.transpose(1, 2, 0, 3)).reshape(wt.shape[1], wt.shape[2], wt.shape[0] * wt.shape[3])


def exact_columns(args, p):
    """The patch's columns within a block: ``None`` for every grid column from the first
    output to the last (a contiguous range: block copies), or the index of the outputs'
    columns only (gathered, several times slower per element than a block copy). Gathering
    pays when the grid's cropped cells would add more than ``EXACT_WASTE`` to the work
    (small planes) and each saved column saves a product with enough rows (``K_g``)."""
    waste = p.columns / max(1, p.samples * math.prod(args.geom.out_size))
    if waste <= EXACT_WASTE or (waste - 1) * (args.out_channels // args.groups) < EXACT_ROWS:
        return None
    grid = p.layout.grid
    cells = np.ravel_multi_index(np.indices(args.geom.out_size).reshape(args.nd, -1), grid)
    return (np.arange(p.samples)[:, None] * p.layout.plane + cells[None, :]).ravel()


def column_plan(args, itemsize):
    """The plan of all three passes (chunks whose patch stays in cache) and the exact column
    index (NumPy, read-only, see :func:`exact_columns`) or ``None``; made once per shapes."""
    return _column_plan(args, itemsize, workspace_limit())


@functools.lru_cache(maxsize=256)
def _column_plan(args, itemsize, limit):
    rows = args.in_channels * math.prod(args.geom.kernel)
    # Each tap's copy moves C_g rows: enough columns that a copy is not all call overhead.
    wide = max(MIN_CHUNK, COPY_ELEMENTS // max(1, args.in_channels // args.groups))
    # A column holds the patch's rows, and in col2im one tap's gathered rows, their sum and
    # the column's index (:class:`Gathers`), all under the workspace limit.
    p = plan(args, (rows + 2 * args.in_channels) * itemsize + 8, wide)
    idx = exact_columns(args, p)
    if idx is None:
        return p, None
    idx.flags.writeable = False  # shared by every call with these shapes
    return p.counting(idx.size), idx


class Ranges:
    """The patch's columns are every grid column from a block's first output to its last:
    each tap's rows are one contiguous range of a phase, moved by block copies. Arrays hold
    one block (:func:`.phases.block_input`)."""

    def __init__(self, args, p):
        self.args, self.p, self.width = args, p, p.width

    def gather(self, dst, ph, t, c0, cn):
        """Tap ``t``'s patch rows of the block ``ph``, columns ``c0 .. c0+cn``, into ``dst``."""
        phase, off = self.p.layout.taps[t]
        dst[...] = ph[phase, 0, :, :, c0 + off:c0 + off + cn]

    def scatter(self, gph, rows, t, c0, cn):
        """Adjoint of :meth:`gather`: add ``rows`` onto the block's phase gradient ``gph``."""
        phase, off = self.p.layout.taps[t]
        gph[phase, 0, :, :, c0 + off:c0 + off + cn] += rows

    def gradient(self, gy, b, buf=None):
        """Block ``b`` of the output gradient, ``(1, G, K_g, width)``, in the patch's column order."""
        return block_gradient(gy, self.args, self.p, b, buf)

    def output(self, y, b, buf=None):
        """Where block ``b``'s outputs are computed, ``(1, G, K_g, width)`` (:meth:`store` puts them in ``y``)."""
        return block_output(y, self.args, self.p, b, buf)

    def store(self, y, z, b):
        store_output(y, z, self.args, self.p, b)

    def cropped(self, like):
        """The columns that hold no output (:func:`.phases.cropped`)."""
        return cropped(self.args, self.p, like)


class Gathers:
    """The patch's columns are the outputs' columns only (``idx``, on the operands' device):
    gathered, so no product is spent on the grid's cropped cells."""

    def __init__(self, args, p, idx):
        self.args, self.p, self.idx, self.width = args, p, idx, idx.size

    def gather(self, dst, ph, t, c0, cn):
        phase, off = self.p.layout.taps[t]
        get_array_module(ph).take(ph[phase, 0], self.idx[c0:c0 + cn] + off, axis=-1, out=dst)

    def scatter(self, gph, rows, t, c0, cn):
        phase, off = self.p.layout.taps[t]
        target = gph[phase, 0]
        target[..., self.idx[c0:c0 + cn] + off] += rows  # distinct columns within one tap: exact

    def gradient(self, gy, b, buf=None):
        g = blocked(gy[self.p.block(b)], self.args.groups, self.p.one, self.args.nd)
        if self.p.samples == 1:
            return g.reshape(g.shape[:3] + (self.width,))  # a view
        if buf is None:
            buf = get_array_module(gy).empty(g.shape[:3] + (self.width,), dtype=gy.dtype)
        buf.reshape(g.shape)[...] = g
        return buf

    def output(self, y, b, buf=None):
        a = self.args
        if self.p.samples == 1:  # the columns are the sample's output cells in order
            return y[self.p.block(b)].reshape((1, a.groups, a.out_channels // a.groups, self.width))
        if buf is None:
            buf = get_array_module(y).empty((1, a.groups, a.out_channels // a.groups, self.width), dtype=y.dtype)
        return buf

    def store(self, y, z, b):
        a, p = self.args, self.p
        if p.samples > 1:
            blocked(y[p.block(b)], a.groups, p.one, a.nd)[...] = z.reshape(z.shape[:3] + (p.samples,) + a.geom.out_size)

    def cropped(self, like):
        return None  # every column is an output


def _columns(args, like):
    """The column layout of the patch for operands like ``like``, from :func:`column_plan`."""
    p, idx = column_plan(args, like.itemsize)
    return Ranges(args, p) if idx is None else Gathers(args, p, get_array_module(like).asarray(idx))


def _fill(cols, ph, cl, c0, cn):
    """Patch rows ``(G, taps*C_g, cn)`` of the block ``ph``, columns ``c0 .. c0+cn``: a copy per tap."""
    cg = ph.shape[3]
    for t in range(len(cl.p.layout.taps)):
        cl.gather(cols[:, t * cg:(t + 1) * cg, :cn], ph, t, c0, cn)
    return cols[..., :cn]


def _buffer(shape, like, chunk, buf):
    """A reusable chunk buffer ``shape + (chunk,)`` (the first chunk is the largest)."""
    return get_array_module(like).empty(shape + (chunk,), dtype=like.dtype) if buf is None else buf


def forward(x, w, args):
    xp = get_array_module(x)
    cl = _columns(args, x)
    p = cl.p
    wmat = _kernel_matrix(w, args)
    y = xp.empty((args.batch, args.out_channels) + args.geom.out_size, dtype=x.dtype)
    ph = z = cols = None
    for b in range(p.blocks):
        ph = block_input(x, args, p, b, ph)
        z = cl.output(y, b, z)
        for c0, cn in p.column_chunks():
            cols = _buffer((args.groups, wmat.shape[2]), x, cn, cols)
            matmul(wmat, _fill(cols, ph, cl, c0, cn), out=z[0, :, :, c0:c0 + cn])
        cl.store(y, z, b)
    return y


def _weight_chunks(gy, x, args, cl, crop):
    """``(G, K_g, taps*C_g)``: the output gradient times the patch, chunk by chunk."""
    xp = get_array_module(gy)
    p = cl.p
    rows = len(p.layout.taps) * (args.in_channels // args.groups)
    gw = xp.zeros((args.groups, args.out_channels // args.groups, rows), dtype=gy.dtype)
    ph = g = cols = None
    for b in range(p.blocks):
        ph = block_input(x, args, p, b, ph)
        g = cl.gradient(gy, b, g)
        for c0, cn in p.column_chunks():
            cols = _buffer((args.groups, rows), gy, cn, cols)
            gw += xp.matmul(g[0, :, :, c0:c0 + cn], clear(_fill(cols, ph, cl, c0, cn), crop, c0).swapaxes(-1, -2))
    return gw


def grad_weight(gy, x, args):
    xp = get_array_module(gy)
    cl = _columns(args, gy)
    groups, kg, cg = args.groups, args.out_channels // args.groups, args.in_channels // args.groups
    gw = _weight_chunks(gy, x, args, cl, None)
    crop = None if all_finite(gw) else cl.cropped(gy)
    if crop is not None:  # maybe a non-finite cell of x met the zeros of the cropped columns
        gw = _weight_chunks(gy, x, args, cl, crop)
    gw = gw.reshape(groups, kg, len(cl.p.layout.taps), cg).transpose(0, 1, 3, 2)
    return xp.ascontiguousarray(gw).reshape((args.out_channels, cg) + args.geom.kernel)


def grad_input(gy, w, args):
    xp = get_array_module(gy)
    cl = _columns(args, gy)
    p = cl.p
    wmat_t = _kernel_matrix(w, args).swapaxes(-1, -2)  # (G, taps*C_g, K_g)
    crop = None if all_finite(w) else cl.cropped(gy)  # inf * 0 on the cropped columns is NaN
    cg = args.in_channels // args.groups
    gx = xp.zeros((args.batch, args.in_channels) + args.geom.in_size, dtype=gy.dtype)
    gph = xp.empty((p.layout.phases, 1, args.groups, cg, p.width), dtype=gy.dtype)
    g = dcols = None
    for b in range(p.blocks):
        g = cl.gradient(gy, b, g)
        gph[...] = 0
        for c0, cn in p.column_chunks():
            dcols = _buffer(wmat_t.shape[:2], gy, cn, dcols)
            d = clear(matmul(wmat_t, g[0, :, :, c0:c0 + cn], out=dcols[..., :cn]), crop, c0)
            for t in range(len(p.layout.taps)):  # col2im: each tap's rows back onto its columns
                cl.scatter(gph, d[:, t * cg:(t + 1) * cg], t, c0, cn)
        store_input_gradient(gx, gph, args, p, b)
    return gx


def supports(args):
    return None  # every convolution


def _strided_grad_input(gy, w, args):
    """col2im on the channel-last layout where a channel run is long, else on the phases."""
    return (patches.grad_input if patches.long_runs(args, gy.itemsize) else grad_input)(gy, w, args)


# Strided layers: the forward pass and the weight gradient read patches from a channel-last
# copy, and the input gradient adds them back there when a group's channels make long runs.
_CHANNEL_LAST = SimpleNamespace(forward=patches.forward, grad_weight=patches.grad_weight,
                                grad_input=_strided_grad_input)


def prepare(x, w, args):
    """A 1x1 kernel without padding has the input itself as its patch matrix (:mod:`.pointwise`),
    a small patch is made whole in one copy (:mod:`.small`); strided layers build their
    patches from a channel-last copy (:mod:`.patches`)."""
    run = small.handler(args) or (_CHANNEL_LAST if patches.serves(args) else None)
    return plain(__name__, "im2col", x, w, args, run=run)
