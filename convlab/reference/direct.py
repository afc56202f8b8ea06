"""Direct convolution: a sum over kernel taps, one matrix product per tap.

With the input split into ``G`` groups of ``C_g`` channels and the output into groups of
``K_g``, each tap ``m`` contributes (eq. 9.7 regrouped)::

    Z[n, g, :, j] += K[g, :, :, m] @ V_pad[n, g, :, j*s + m*d]      (K_g x C_g) @ (C_g x P)

Backward (eq. 9.11-9.13)::

    dV_pad[n, g, :, j*s + m*d] += K[g, :, :, m].T @ G[n, g, :, j]
    dK[g, :, :, m]              = sum_n G[n, g] @ V_pad[n, g, :, j*s + m*d].T

The input is read on its stride-phase grid (:mod:`.phases`), where ``V_pad[..., j*s + m*d]``
for all outputs is one contiguous range of columns, ``phase_m[:, q + offset_m]``, which
BLAS reads in place. Outputs are computed on the whole grid (its cells past the last output
of each axis are cropped) in column chunks whose accumulator stays in cache; the output
gradient is spread onto the same grid with zeros in those cells, which non-finite
operands must not meet (:func:`.phases.cropped`).
"""
from __future__ import annotations


from .._backend import get_array_module
from .._protocol import all_finite, plain
from . import small
from .groups import matmul, tap_weights
from .phases import block_gradient, block_input, block_output, clear, cropped, plan, store_input_gradient, store_output


def forward_plan(args, itemsize):
    """The forward pass's plan: a chunk's accumulator and one tap's product stay in cache."""
    return plan(args, 2 * args.out_channels * itemsize)


def forward(x, w, args):
    xp = get_array_module(x)
    p = forward_plan(args, x.itemsize)
    wt = tap_weights(w, args)  # (taps, G, K_g, C_g)
    y = xp.empty((args.batch, args.out_channels) + args.geom.out_size, dtype=x.dtype)
    ph = z = tmp = None
    for b in range(p.blocks):
        ph = block_input(x, args, p, b, ph)
        z = block_output(y, args, p, b, z)
        for c0, cn in p.column_chunks():
            acc = z[0, :, :, c0:c0 + cn]
            tmp = xp.empty(wt.shape[1:3] + (cn,), dtype=x.dtype) if tmp is None else tmp
            for t, (phase, off) in enumerate(p.layout.taps):
                cols = ph[phase, 0, :, :, c0 + off:c0 + off + cn]
                if t == 0:
                    matmul(wt[t], cols, out=acc)
                else:
                    acc += matmul(wt[t], cols, out=tmp[..., :cn])
        store_output(y, z, args, p, b)
    return y


def grad_input(gy, w, args):
    xp = get_array_module(gy)
    p = plan(args, (args.in_channels + args.out_channels) * gy.itemsize)
    wt = tap_weights(w, args).swapaxes(-1, -2)  # (taps, G, C_g, K_g)
    crop = None if all_finite(w) else cropped(args, p, gy)  # inf * 0 on the cropped cells is NaN
    gx = xp.zeros((args.batch, args.in_channels) + args.geom.in_size, dtype=gy.dtype)
    gph = xp.empty((p.layout.phases, 1) + wt.shape[1:3] + (p.width,), dtype=gy.dtype)
    g = tmp = None
    for b in range(p.blocks):
        g = block_gradient(gy, args, p, b, g)
        gph[...] = 0
        for c0, cn in p.column_chunks():
            tmp = xp.empty(wt.shape[1:3] + (cn,), dtype=gy.dtype) if tmp is None else tmp
            for t, (phase, off) in enumerate(p.layout.taps):
                prod = clear(matmul(wt[t], g[0, :, :, c0:c0 + cn], out=tmp[..., :cn]), crop, c0)
                gph[phase, 0, :, :, c0 + off:c0 + off + cn] += prod
        store_input_gradient(gx, gph, args, p, b)
    return gx


def _weight_taps(gy, x, args, p, crop):
    """``(G, K_g, C_g, taps)``: per tap, the output gradient times the columns it read,
    summed over the blocks."""
    xp = get_array_module(gy)
    # one contiguous (G, K_g, C_g) matrix per tap: the first block's products are written
    # in place, the others added (a sum into a strided tap slice costs a pass of its own)
    gw = xp.zeros((len(p.layout.taps), args.groups, args.out_channels // args.groups,
                   args.in_channels // args.groups), dtype=gy.dtype)
    ph = g = None
    for b in range(p.blocks):
        ph = block_input(x, args, p, b, ph)
        g = block_gradient(gy, args, p, b, g)
        gc = g[0, :, :, :p.columns]
        for t, (phase, off) in enumerate(p.layout.taps):
            cols = ph[phase, 0, :, :, off:off + p.columns]
            cols = cols if crop is None else xp.where(crop, 0, cols)
            if b == 0:
                xp.matmul(gc, cols.swapaxes(-1, -2), out=gw[t])
            else:
                gw[t] += xp.matmul(gc, cols.swapaxes(-1, -2))
    return xp.moveaxis(gw, 0, -1)


def grad_weight(gy, x, args):
    p = plan(args)
    gw = _weight_taps(gy, x, args, p, None)
    if not all_finite(gw):  # maybe a non-finite cell of x met the zeros of the cropped columns
        gw = _weight_taps(gy, x, args, p, cropped(args, p, gy)[:p.columns])
    return get_array_module(gw).ascontiguousarray(gw).reshape((args.out_channels, args.in_channels // args.groups)
                                                                  + args.geom.kernel)


# ----------------------------------------------------------------------------- protocol

def supports(args):
    return None  # every convolution


def prepare(x, w, args, note=""):
    """Direct sums look at nothing: NaN and infinity stay inside the windows that read them,
    so the algorithms that mix a window with its neighbours hand such operands here. A 1x1
    kernel without padding is one tap: the batched product of :mod:`.pointwise`; a small
    patch is one copy and one product (:mod:`.small`)."""
    return plain(__name__, "direct", x, w, args, note, run=small.handler(args))
