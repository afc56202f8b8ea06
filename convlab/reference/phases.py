"""The stride-phase grid: the layout on which direct and im2col read every kernel tap as one
contiguous range of columns, and the :class:`Plan` that cuts their work into chunks.

Phase ``r`` of the padded input (one per residue of the cell index modulo the stride, per
axis) holds cells ``p*s + r``, so tap ``m`` reads phase ``(m*d) % s`` at ``j + (m*d) // s``:
a strided convolution is a sum of stride-1 ones. On the flattened phase grid, output ``j``
sits at flat index ``q = sum_a j_a * grid_stride_a`` and tap ``m`` reads ``q + offset_m``,
so every tap sees all outputs through one contiguous range of columns::

    to_phases(x)    (..., *n) -> (S, ..., prod(grid))     S = prod(s); zero padded, one copy
    phase_layout()  per tap: (phase, offset); the grid; columns spanned by one plane's outputs

Outputs occupy the first ``out`` cells of each grid axis; the rest of the grid is computed
and cropped. The output gradient is spread onto the grid with zeros in those cells, and
``0 * inf`` is NaN: where the operand they meet is not finite, the passes leave the cropped
columns out (:func:`cropped`, :func:`clear`), so a NaN reaches exactly the sums that hold
it. Samples are taken a block at a time; small planes are flattened a few samples
per block into the columns, so that every product has at least ``MIN_COLUMNS`` columns.
Stride 1 without padding needs no copy at all: the input is its own phase.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from .._backend import get_array_module, workspace_limit
from .windows import taps

# Column chunk: an algorithm's per-chunk buffers stay in L2 cache.
CACHE_BYTES = 1 << 20
MIN_CHUNK = 256
# Samples whose planes are smaller are flattened together into the matrix columns.
MIN_COLUMNS = 1024


# ----------------------------------------------------------------------------- the grid

@dataclass(frozen=True)
class PhaseLayout:
    """Where each tap reads on the flattened phase grid (see the module docstring)."""

    grid: tuple    # cells per axis of every phase: ceil(padded / s)
    taps: tuple    # one (phase, flat offset) per tap, row-major tap order
    span: int      # flat columns from the first output of a plane to its last, inclusive

    @functools.cached_property
    def plane(self) -> int:
        return math.prod(self.grid)

    @functools.cached_property
    def phases(self) -> int:
        return max(p for p, _ in self.taps) + 1


@functools.lru_cache(maxsize=1024)
def phase_layout(geom) -> PhaseLayout:
    grid = tuple(-(-p // s) for p, s in zip(geom.padded_size, geom.stride))
    gstride = tuple(math.prod(grid[a + 1:]) for a in range(geom.nd))
    sstride = tuple(math.prod(geom.stride[a + 1:]) for a in range(geom.nd))
    layout = []
    for tap in taps(geom):
        cell = [m * d for m, d in zip(tap, geom.dilation)]
        phase = sum((c % s) * st for c, s, st in zip(cell, geom.stride, sstride))
        offset = sum((c // s) * st for c, s, st in zip(cell, geom.stride, gstride))
        layout.append((phase, offset))
    span = sum((o - 1) * st for o, st in zip(geom.out_size, gstride)) + 1
    return PhaseLayout(grid, tuple(layout), span)


@functools.lru_cache(maxsize=1024)
def trivial(geom):
    """Stride 1 and no padding: the input is its own (only) phase."""
    return all(s == 1 for s in geom.stride) and not any(lo or hi for lo, hi in geom.pad)


@functools.lru_cache(maxsize=1024)
def _phase_cuts(geom, grid):
    """:func:`_phase_slices` of every phase: made once per geometry."""
    return tuple(_phase_slices(geom, grid, phase) for phase in range(math.prod(geom.stride)))


def _phase_slices(geom, grid, phase):
    """For one phase: (its cells that hold input, the input cells they hold), per axis."""
    src, dst = [], []
    rem = phase
    for a in range(geom.nd):
        st = math.prod(geom.stride[a + 1:])
        r, rem = divmod(rem, st)
        s, (lo, _), n = geom.stride[a], geom.pad[a], geom.in_size[a]
        p0 = max(0, -(-(lo - r) // s))
        p1 = min(grid[a], (n - 1 + lo - r) // s + 1)
        if p1 <= p0:
            return None
        dst.append(slice(p0, p1))
        src.append(slice(p0 * s + r - lo, (p1 - 1) * s + r - lo + 1, s))
    return tuple(dst), tuple(src)


def to_phases(x, geom, layout, out=None):
    """``x (..., *n) -> (S, ..., prod(grid))``: zero padding and the phase split in one copy.
    ``out``: an earlier result of the same shape, reused (its padding cells are still zero)."""
    xp = get_array_module(x)
    nd = geom.nd
    lead = x.shape[:-nd]
    if trivial(geom):  # stride 1, no padding: the input is its only phase
        return x.reshape((1,) + lead + (layout.plane,))
    flat = (layout.phases,) + lead + (layout.plane,)
    if out is None or out.shape != flat:
        out = xp.zeros(flat, dtype=x.dtype)
    grid = out.reshape((layout.phases,) + lead + layout.grid)
    for phase, cut in enumerate(_phase_cuts(geom, layout.grid)[:layout.phases]):
        if cut is not None:
            grid[(phase, Ellipsis) + cut[0]] = x[(Ellipsis,) + cut[1]]
    return out


def from_phases(ph, geom, layout, out=None):
    """Adjoint of :func:`to_phases` for gradients: ``(S, ..., prod(grid)) -> (..., *n)``,
    written into ``out`` when given (each input cell lives in exactly one phase; padding
    cells are dropped)."""
    lead = ph.shape[1:-1]
    ph = ph.reshape(ph.shape[:-1] + layout.grid)
    if out is None:
        out = get_array_module(ph).zeros(lead + geom.in_size, dtype=ph.dtype)
    if trivial(geom):
        out[...] = ph[0]
        return out
    for phase, cut in enumerate(_phase_cuts(geom, layout.grid)[:layout.phases]):
        if cut is not None:
            out[(Ellipsis,) + cut[1]] = ph[(phase, Ellipsis) + cut[0]]
    return out


# ----------------------------------------------------------------------------- the plan

@dataclass(frozen=True)
class Plan:
    """How one pass runs on the grid: ``blocks`` of ``samples`` each, flattened into
    ``width`` columns; the first ``count`` columns of each block are computed, ``step`` at a
    time (:meth:`chunks`). The properties count the work those chunks do; the cost model
    (:mod:`convlab._cost`) reads them."""

    args: object
    layout: PhaseLayout
    blocks: int
    samples: int
    step: int
    count: int

    @functools.cached_property
    def width(self) -> int:
        return self.samples * self.layout.plane

    @functools.cached_property
    def columns(self) -> int:
        """Columns from a block's first output to its last, inclusive."""
        return (self.samples - 1) * self.layout.plane + self.layout.span

    def chunks(self):
        """``(block, first column, count)`` of every chunk, block by block."""
        for b in range(self.blocks):
            for c0, cn in self.column_chunks():
                yield b, c0, cn

    def column_chunks(self):
        """``(first column, count)`` of each chunk of one block."""
        for c0 in range(0, self.count, self.step):
            yield c0, min(self.step, self.count - c0)

    def block(self, b):
        """The samples of block ``b``."""
        return slice(b * self.samples, (b + 1) * self.samples)

    @functools.cached_property
    def one(self):
        """The plan of a single block: the passes run block by block."""
        return dataclasses.replace(self, blocks=1)

    @property
    def grid_is_output(self) -> bool:
        """One sample a block whose grid is its output: the grid's cells are the output's."""
        return self.samples == 1 and self.layout.grid == self.args.geom.out_size

    def counting(self, count):
        """The same plan computing ``count`` columns per block."""
        return dataclasses.replace(self, count=count)

    @property
    def computed(self) -> int:
        """Columns computed over all blocks."""
        return self.blocks * self.count

    @property
    def chunk_count(self) -> int:
        return self.blocks * -(-self.count // self.step)

    @property
    def copied_in(self) -> int:
        """Elements :func:`split` copies: none when the input is its own phase."""
        a = self.args
        if self.samples == 1 and trivial(a.geom):
            return 0
        return a.batch * a.in_channels * self.layout.plane * self.layout.phases

    @property
    def copied_out(self) -> int:
        """Elements :func:`outputs` copies: none when the grid is the output, one sample a block."""
        a = self.args
        if self.samples == 1 and self.layout.grid == a.geom.out_size:
            return 0
        return a.batch * a.out_channels * self.layout.plane


def plan(args, bytes_per_column=1, min_columns=MIN_CHUNK) -> Plan:
    """The plan of a pass whose chunk buffers take ``bytes_per_column``: chunks of about
    ``CACHE_BYTES`` (at least ``min_columns``, so that each library call has enough work),
    never over the workspace limit; every column from a block's first output to its last.
    Made once per shapes and limit (it depends on nothing else)."""
    return _plan(args, bytes_per_column, min_columns, workspace_limit())


@functools.lru_cache(maxsize=1024)
def _plan(args, bytes_per_column, min_columns, limit) -> Plan:
    bytes_per_column = max(1, bytes_per_column)
    layout = phase_layout(args.geom)
    want = -(-MIN_COLUMNS // layout.plane)
    n = args.batch
    samples = next((d for d in range(min(want, n), n + 1) if d and n % d == 0), 1)  # a divisor of N
    step = max(min_columns, CACHE_BYTES // bytes_per_column)
    step = max(1, min(step, limit // bytes_per_column))
    columns = (samples - 1) * layout.plane + layout.span
    return Plan(args, layout, n // samples, samples, step, columns)


def most(fixed, each, budget, cap):
    """The largest count ``c <= cap`` with ``fixed + c * each <= budget``, and at least 1: how
    many samples or channels a chunk of an algorithm's buffers may take under a budget."""
    return max(1, min(cap, (budget - fixed) // max(1, each)))


def spans(count, step):
    """``[(start, stop), ...]`` covering ``range(count)`` ``step`` at a time."""
    return [(a, min(a + step, count)) for a in range(0, count, step)]


# ----------------------------------------------------------------------------- to and from the grid
#
# The passes run block by block: each block's input is split into phases, and its output (or
# gradient) laid on the grid, in buffers of one block that the next block reuses, so that
# besides the result a pass holds one block of each (see docs/algorithms.md, memory).

def blocked(a, groups, p, nd):
    """``(N, C, *sp) -> (B, G, C_g, samples, *sp)`` (a view)."""
    a = a.reshape((p.blocks, p.samples, groups, a.shape[1] // groups) + a.shape[2:])
    return a.transpose((0, 2, 3, 1) + tuple(range(4, 4 + nd)))


def split(x, args, p, out=None):
    """``x (N, C, *n) -> (S, B, G, C_g, width)``: padded and split into stride phases (one
    copy, none for stride 1 without padding); ``out``: an earlier result to reuse."""
    ph = to_phases(blocked(x, args.groups, p, args.nd), args.geom, p.layout,
                   None if out is None else out.reshape(out.shape[:4] + (p.samples, p.layout.plane)))
    return ph.reshape(ph.shape[:4] + (p.width,))


def block_input(x, args, p, b, out=None):
    """Block ``b`` of ``x``, padded and split: ``(S, 1, G, C_g, width)``; ``out``: the
    previous block's, whose buffer is reused."""
    return split(x[p.block(b)], args, p.one, out)


def _grid(a, args, p):
    """``(B, G, R, width)`` -> ``(B, G, R, samples, *out)``: the output cells of the grid."""
    a = a.reshape(a.shape[:3] + (p.samples,) + p.layout.grid)
    return a[(Ellipsis,) + tuple(slice(0, o) for o in args.geom.out_size)]


def block_output(y, args, p, b, buf=None):
    """Where block ``b``'s outputs are computed on the grid, ``(1, G, K_g, width)``: ``y``'s
    own cells when the grid is the output, else ``buf`` (a new buffer when None), which
    :func:`store_output` moves into ``y (N, K, *out)``."""
    if p.grid_is_output:
        return y[p.block(b)].reshape((1, args.groups, y.shape[1] // args.groups, p.width))
    if buf is None:
        buf = get_array_module(y).empty((1, args.groups, y.shape[1] // args.groups, p.width), dtype=y.dtype)
    return buf


def store_output(y, z, args, p, b):
    """Block ``b``'s outputs on the grid ``z`` (:func:`block_output`) into ``y``."""
    if not p.grid_is_output:
        blocked(y[p.block(b)], args.groups, p.one, args.nd)[...] = _grid(z, args, p.one)


def block_gradient(gy, args, p, b, buf=None):
    """Block ``b`` of ``gy (N, K, *out)`` on the grid, ``(1, G, K_g, width)``, zeros in the
    cells past the outputs: a view when the grid is the output, else ``buf`` (reused: only
    output cells are written, so its other cells stay zero) or a new buffer."""
    src = blocked(gy[p.block(b)], args.groups, p.one, args.nd)
    if p.grid_is_output:
        return src.reshape(src.shape[:3] + (p.width,))  # no cells to fill: a view
    g = get_array_module(gy).zeros(src.shape[:3] + (p.width,), dtype=gy.dtype) if buf is None else buf
    _grid(g, args, p.one)[...] = src
    return g


def cropped(args, p, like):
    """``(width,)`` bool on ``like``'s device: True at a block's grid columns that hold no
    output (past the last output of an axis, and so between samples)."""
    inside = np.zeros(p.layout.grid, dtype=bool)
    inside[tuple(slice(0, o) for o in args.geom.out_size)] = True
    return get_array_module(like).asarray(~np.tile(inside.ravel(), p.samples))


def clear(a, crop, c0):
    """Zero the columns of chunk ``a`` (block columns ``c0 ..``) that ``crop`` marks (None: none)."""
    if crop is not None:
        a[..., crop[c0:c0 + a.shape[-1]]] = 0
    return a


def store_input_gradient(gx, gph, args, p, b):
    """Block ``b``'s phase gradients ``(S, 1, G, C_g, width)`` into ``gx (N, C, *n)``."""
    target = blocked(gx[p.block(b)], args.groups, p.one, args.nd)
    from_phases(gph.reshape(gph.shape[:4] + (p.samples, p.layout.plane)), args.geom, p.layout, target)
