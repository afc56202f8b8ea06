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
from . import pointwise
from .groups import matmul, tap_weights
from .phases import clear, cropped, input_gradient, outputs, plan, split, spread_gradient


def forward_plan(args, itemsize):
    """The forward pass's plan: a chunk's accumulator and one tap's product stay in cache."""
    return plan(args, 2 * args.out_channels * itemsize)


def forward(x, w, args):
    xp = get_array_module(x)
    p = forward_plan(args, x.itemsize)
    ph = split(x, args, p)
    wt = tap_weights(w, args)  # (taps, G, K_g, C_g)
    z = xp.empty((p.blocks,) + wt.shape[1:3] + (p.width,), dtype=x.dtype)
    tmp = None
    for b, c0, cn in p.chunks():
        acc = z[b, :, :, c0:c0 + cn]
        tmp = xp.empty(wt.shape[1:3] + (cn,), dtype=x.dtype) if tmp is None else tmp
        for t, (phase, off) in enumerate(p.layout.taps):
            cols = ph[phase, b, :, :, c0 + off:c0 + off + cn]
            if t == 0:
                matmul(wt[t], cols, out=acc)
            else:
                acc += matmul(wt[t], cols, out=tmp[..., :cn])
    return outputs(z, args, p)


def grad_input(gy, w, args):
    xp = get_array_module(gy)
    p = plan(args, (args.in_channels + args.out_channels) * gy.itemsize)
    g = spread_gradient(gy, args, p)
    wt = tap_weights(w, args).swapaxes(-1, -2)  # (taps, G, C_g, K_g)
    crop = None if all_finite(w) else cropped(args, p, gy)  # inf * 0 on the cropped cells is NaN
    gph = xp.zeros((p.layout.phases, p.blocks) + wt.shape[1:3] + (p.width,), dtype=gy.dtype)
    tmp = None
    for b, c0, cn in p.chunks():
        tmp = xp.empty(wt.shape[1:3] + (cn,), dtype=gy.dtype) if tmp is None else tmp
        for t, (phase, off) in enumerate(p.layout.taps):
            prod = clear(matmul(wt[t], g[b, :, :, c0:c0 + cn], out=tmp[..., :cn]), crop, c0)
            gph[phase, b, :, :, c0 + off:c0 + off + cn] += prod
    return input_gradient(gph, args, p)


def _weight_taps(g, ph, p, crop):
    """``(G, K_g, C_g, taps)``: per tap, the output gradient times the columns it read."""
    xp = get_array_module(g)
    gw = xp.empty(g.shape[1:3] + (ph.shape[3], len(p.layout.taps)), dtype=g.dtype)
    for t, (phase, off) in enumerate(p.layout.taps):
        cols = ph[phase, ..., off:off + p.columns]
        cols = cols if crop is None else xp.where(crop, 0, cols)
        gw[..., t] = xp.matmul(g, cols.swapaxes(-1, -2)).sum(axis=0)
    return gw


def grad_weight(gy, x, args):
    p = plan(args)
    ph = split(x, args, p)
    g = spread_gradient(gy, args, p)[..., :p.columns]
    gw = _weight_taps(g, ph, p, None)
    if not all_finite(gw):  # maybe a non-finite cell of x met the zeros of the cropped columns
        gw = _weight_taps(g, ph, p, cropped(args, p, gy)[:p.columns])
    return gw.reshape((args.out_channels, ph.shape[3]) + args.geom.kernel)


# ----------------------------------------------------------------------------- protocol

def supports(args):
    return None  # every convolution


def prepare(x, w, args, note=""):
    """Direct sums look at nothing: NaN and infinity stay inside the windows that read them,
    so the algorithms that mix a window with its neighbours hand such operands here. A 1x1
    kernel without padding is one tap: the batched product of :mod:`.pointwise`."""
    return plain(__name__, "direct", x, w, args, note, run=pointwise if pointwise.serves(args) else None)
