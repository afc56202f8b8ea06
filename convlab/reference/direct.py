"""Direct convolution: a sum over kernel taps, one matrix product per tap.

With the input split into ``G`` groups of ``C_g`` channels and the output into groups of
``K_g``, each tap ``m`` contributes (eq. 9.7 regrouped)::

    Z[n, g, :, j] += K[g, :, :, m] @ V_pad[n, g, :, j*s + m*d]      (K_g x C_g) @ (C_g x P)

Backward (eq. 9.11-9.13)::

    dV_pad[n, g, :, j*s + m*d] += K[g, :, :, m].T @ G[n, g, :, j]
    dK[g, :, :, m]              = sum_n G[n, g] @ V_pad[n, g, :, j*s + m*d].T

The input is read through its stride phases (:func:`~convlab.reference.windows.to_phases`),
flattened: then ``V_pad[..., j*s + m*d]`` for all outputs is one contiguous range of
columns, ``phase_m[:, q + offset_m]``, which BLAS reads in place. Outputs are computed on
the whole phase grid (the cells past the last output of each axis are cropped) in column
chunks whose accumulator stays in cache; the output gradient is spread onto the same grid
with zeros in those cells. Samples are taken one block at a time; small planes are
flattened a few samples per block into the columns (:func:`plan`), so that every product
has at least ``MIN_COLUMNS`` columns. Stride 1 without padding needs no copy at all: the
input is its own phase.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .._backend import get_array_module, workspace_limit
from .._protocol import plain
from .windows import PhaseLayout, from_phases, phase_layout, to_phases

# Column chunk: the accumulator and one tap's product for a chunk stay in L2 cache.
CACHE_BYTES = 1 << 20
MIN_CHUNK = 256
# Samples whose planes are smaller are flattened together into the matrix columns.
MIN_COLUMNS = 1024


def split_groups(a, groups):
    """``(N, C, *sp) -> (N, G, C/G, *sp)`` (a view)."""
    return a.reshape(a.shape[:1] + (groups, a.shape[1] // groups) + a.shape[2:])


def grouped_weight(w, groups):
    """``(K, C_g, *k) -> (G, K_g, C_g, *k)`` (a view)."""
    return w.reshape((groups, w.shape[0] // groups) + w.shape[1:])


def tap_weights(w, args):
    """``(K, C_g, *k) -> (taps, G, K_g, C_g)``, contiguous."""
    xp = get_array_module(w)
    wg = grouped_weight(w, args.groups)
    wg = wg.reshape(wg.shape[:3] + (math.prod(args.geom.kernel),))
    return xp.ascontiguousarray(wg.transpose(3, 0, 1, 2))


def matmul(a, b, out=None):
    """Batched matrix product ``a @ b``. Over an inner axis of length 1 it is an outer
    product, done as a broadcast multiply: BLAS calls with one inner term are slow."""
    xp = get_array_module(a)
    if a.shape[-1] == 1:
        return xp.multiply(a, b, out=out)
    return xp.matmul(a, b, out=out)


def all_finite(*arrays):
    """True when no array holds NaN or infinity (algorithms that mix a window's inputs with
    their neighbours' check it, to keep NaN inside the windows that read it)."""
    return all(bool(get_array_module(a).isfinite(a).all()) for a in arrays)


# ----------------------------------------------------------------------------- layout

@dataclass(frozen=True)
class Plan:
    """The matrix layout: ``blocks`` of ``samples`` each, flattened into ``width`` columns."""

    layout: PhaseLayout
    blocks: int
    samples: int

    @property
    def width(self) -> int:
        return self.samples * self.layout.plane

    @property
    def columns(self) -> int:
        """Columns from a block's first output to its last, inclusive: the ones computed."""
        return (self.samples - 1) * self.layout.plane + self.layout.span


def plan(args) -> Plan:
    layout = phase_layout(args.geom)
    want = -(-MIN_COLUMNS // layout.plane)
    n = args.batch
    samples = next((d for d in range(min(want, n), n + 1) if d and n % d == 0), 1)  # a divisor of N
    return Plan(layout, n // samples, samples)


def blocked(a, groups, p, nd):
    """``(N, C, *sp) -> (B, G, C_g, samples, *sp)`` (a view)."""
    a = a.reshape((p.blocks, p.samples, groups, a.shape[1] // groups) + a.shape[2:])
    return a.transpose((0, 2, 3, 1) + tuple(range(4, 4 + nd)))


def unblocked(a, p, nd):
    """``(B, G, R, samples, *sp) -> (N, G*R, *sp)``, contiguous."""
    xp = get_array_module(a)
    a = xp.ascontiguousarray(a.transpose((0, 3, 1, 2) + tuple(range(4, 4 + nd))))
    return a.reshape((p.blocks * p.samples, a.shape[2] * a.shape[3]) + a.shape[4:])


def phases(x, args, p):
    """``x (N, C, *n) -> (S, B, G, C_g, width)``: padded and split into stride phases (one
    copy, none for stride 1 without padding)."""
    ph = to_phases(blocked(x, args.groups, p, args.nd), args.geom, p.layout)
    return ph.reshape(ph.shape[:4] + (p.width,))


def _grid(a, args, p):
    """``(B, G, R, width)`` -> ``(B, G, R, samples, *out)``: the output cells of the grid."""
    a = a.reshape(a.shape[:3] + (p.samples,) + p.layout.grid)
    return a[(Ellipsis,) + tuple(slice(0, o) for o in args.geom.out_size)]


def outputs(z, args, p):
    """``(B, G, K_g, width)`` on the grid -> ``(N, K, *out)``."""
    return unblocked(_grid(z, args, p), p, args.nd)


def spread_gradient(gy, args, p):
    """``(N, K, *out) -> (B, G, K_g, width)`` with zeros in the grid cells past the outputs."""
    xp = get_array_module(gy)
    src = blocked(gy, args.groups, p, args.nd)
    if p.samples == 1 and p.layout.grid == args.geom.out_size:
        return src.reshape(src.shape[:3] + (p.width,))  # no cells to fill: a view
    g = xp.zeros(src.shape[:3] + (p.width,), dtype=gy.dtype)
    _grid(g, args, p)[...] = src
    return g


def input_gradient(gph, args, p):
    """``(S, B, G, C_g, width)`` phase gradients -> ``(N, C, *n)``."""
    gx = from_phases(gph.reshape(gph.shape[:4] + (p.samples, p.layout.plane)), args.geom, p.layout)
    return unblocked(gx, p, args.nd)


def column_chunks(columns, bytes_per_column, min_columns=MIN_CHUNK):
    """``(first column, count)`` chunks of about ``CACHE_BYTES`` (at least ``min_columns``, so
    that each library call has enough work), never over the workspace limit."""
    bytes_per_column = max(1, bytes_per_column)
    step = max(min_columns, CACHE_BYTES // bytes_per_column)
    step = max(1, min(step, workspace_limit() // bytes_per_column))
    for c0 in range(0, columns, step):
        yield c0, min(step, columns - c0)


# ----------------------------------------------------------------------------- algorithm

def block_chunks(p, count, bytes_per_column, min_columns=MIN_CHUNK):
    """``(block, first column, count)``: each block's first ``count`` columns in :func:`column_chunks`."""
    for b in range(p.blocks):
        for c0, cn in column_chunks(count, bytes_per_column, min_columns):
            yield b, c0, cn


def forward(x, w, args):
    xp = get_array_module(x)
    p = plan(args)
    ph = phases(x, args, p)
    wt = tap_weights(w, args)  # (taps, G, K_g, C_g)
    z = xp.empty((p.blocks,) + wt.shape[1:3] + (p.width,), dtype=x.dtype)
    tmp = None
    for b, c0, cn in block_chunks(p, p.columns, 2 * args.out_channels * x.itemsize):
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
    p = plan(args)
    g = spread_gradient(gy, args, p)
    wt = tap_weights(w, args).swapaxes(-1, -2)  # (taps, G, C_g, K_g)
    gph = xp.zeros((p.layout.phases, p.blocks) + wt.shape[1:3] + (p.width,), dtype=gy.dtype)
    tmp = None
    for b, c0, cn in block_chunks(p, p.columns, (args.in_channels + args.out_channels) * gy.itemsize):
        tmp = xp.empty(wt.shape[1:3] + (cn,), dtype=gy.dtype) if tmp is None else tmp
        for t, (phase, off) in enumerate(p.layout.taps):
            gph[phase, b, :, :, c0 + off:c0 + off + cn] += matmul(wt[t], g[b, :, :, c0:c0 + cn], out=tmp[..., :cn])
    return input_gradient(gph, args, p)


def grad_weight(gy, x, args):
    xp = get_array_module(gy)
    p = plan(args)
    ph = phases(x, args, p)
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
    so the algorithms that mix a window with its neighbours hand such operands here."""
    return plain(__name__, "direct", x, w, args, note)
