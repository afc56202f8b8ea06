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
gradient is spread onto the same grid with zeros in those cells.
"""
from __future__ import annotations


from .._backend import get_array_module
from .._protocol import plain
from . import pointwise
from .groups import matmul, tap_weights
from .phases import input_gradient, outputs, plan, split, spread_gradient


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
    gph = xp.zeros((p.layout.phases, p.blocks) + wt.shape[1:3] + (p.width,), dtype=gy.dtype)
    tmp = None
    for b, c0, cn in p.chunks():
        tmp = xp.empty(wt.shape[1:3] + (cn,), dtype=gy.dtype) if tmp is None else tmp
        for t, (phase, off) in enumerate(p.layout.taps):
            gph[phase, b, :, :, c0 + off:c0 + off + cn] += matmul(wt[t], g[b, :, :, c0:c0 + cn], out=tmp[..., :cn])
    return input_gradient(gph, args, p)


def grad_weight(gy, x, args):
    xp = get_array_module(gy)
    p = plan(args)
    ph = split(x, args, p)
    g = spread_gradient(gy, args, p)[..., :p.columns]
    groups, kg, cg = g.shape[1], g.shape[2], ph.shape[3]
    gw = xp.empty((groups, kg, cg, len(p.layout.taps)), dtype=gy.dtype)
    for t, (phase, off) in enumerate(p.layout.taps):
        gw[..., t] = xp.matmul(g, ph[phase, ..., off:off + p.columns].swapaxes(-1, -2)).sum(axis=0)
    return gw.reshape((args.out_channels, cg) + args.geom.kernel)


# ----------------------------------------------------------------------------- protocol

def supports(args):
    return None  # every convolution


def prepare(x, w, args, note=""):
    """Direct sums look at nothing: NaN and infinity stay inside the windows that read them,
    so the algorithms that mix a window with its neighbours hand such operands here. A 1x1
    kernel without padding is one tap: the batched product of :mod:`.pointwise`."""
    return plain(__name__, "direct", x, w, args, note, run=pointwise if pointwise.serves(args) else None)
