"""convlab on Dask arrays: sliding-window ops on images larger than one process's memory.

``x`` is a ``dask.array.Array`` ``(N, C, *spatial)`` chunked along the batch and/or the
spatial axes, with NumPy or CuPy chunks; the result is a Dask array equal to the in-memory
op's (bit for bit where each block runs the same algorithm: see docs/dask.md). Every block
runs the public in-memory op (so CuPy chunks go through the engine's dispatch; adaptive pools,
which have no kernel, run the reference with the block's bins), on Dask's own scheduler or on
``dask.distributed``.

How a spatial axis is cut (input size ``n``, kernel span ``r = d*(k-1) + 1``, stride ``s``,
padding ``lo``/``hi``, output size ``o``). Output ``j`` reads input cells
``j*s - lo ... j*s - lo + r - 1`` and is anchored at cell ``p_j = j*s - lo + t`` with
``t = min(lo, r - 1)``: the halo, ``r - 1`` cells, is split by the padding into ``t``
cells before each chunk and ``r - 1 - t`` after it. Output ``j`` belongs to the chunk that
holds ``p_j`` (clipped to ``0 ... n-1``), so every window is computed exactly once and the
output chunks follow the input chunks divided by the stride. Each block calls the op on
the cells its windows read, with zero (or ``-inf`` for max) padding only where they run
past the array's true edges. Chunks shorter than the halo are merged into a neighbour
first (Dask can fetch a halo from the adjacent chunk only).
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("convlab.dask needs Dask: pip install 'convlab[dask]'") from exc

import convlab

from . import _params as P
from ._backend import get_array_module
from ._nd import family
from .reference import pool as ref_pool

# ----------------------------------------------------------------------------- planning


class _Cut:
    """What every axis plan has: input ``chunks`` (after merging), the halo ``depth``
    ``(before, after)`` each block receives, and the windows ``[j0, j1)`` of each chunk."""

    @property
    def out_chunks(self) -> tuple:
        return tuple(j1 - j0 for j0, j1 in self.windows)

    @property
    def starts(self) -> tuple:
        """First input cell of each chunk."""
        return tuple(int(v) for v in np.cumsum((0,) + self.chunks[:-1]))

    def block_start(self, i: int) -> int:
        """First input cell of chunk ``i`` with its halo (none at the true edges)."""
        return self.starts[i] - (self.depth[0] if i > 0 else 0)


@dataclass(frozen=True)
class AxisPlan(_Cut):
    """How one spatial axis of a sliding-window op is cut (see the module's docstring)."""

    n: int
    kernel: int
    stride: int
    dilation: int
    pad: tuple
    out: int
    chunks: tuple
    depth: tuple
    windows: tuple

    @property
    def span(self) -> int:
        return self.dilation * (self.kernel - 1) + 1

    def local(self, i: int):
        """The in-memory problem of chunk ``i``: input cells ``[c0, c1)``, the padding
        ``(lo, hi)`` around them and whether the last window overhangs (a pool's
        ``ceil_mode``); None when the chunk anchors no window."""
        j0, j1 = self.windows[i]
        if j0 == j1:
            return None
        lo, hi = self.pad
        r0, r1 = j0 * self.stride - lo, (j1 - 1) * self.stride - lo + self.span
        c0, c1 = max(r0, 0), min(r1, self.n)
        if r1 > self.n + hi:  # runs past the padding: only a ceil_mode pool's last window
            return c0, c1, (max(0, -r0), hi), True
        return c0, c1, (max(0, -r0), max(0, r1 - self.n)), False

    def too_short(self, i: int) -> bool:
        """Whether chunk ``i``'s in-memory problem spans fewer (padded) cells than one window
        (only a ``ceil_mode`` window that overhangs the padding, alone in its chunk)."""
        local = self.local(i)
        return local is not None and local[1] - local[0] + sum(local[2]) < self.span


@dataclass(frozen=True)
class BinPlan(_Cut):
    """How one spatial axis of an adaptive pool is cut: bin ``j`` covers cells
    ``bins[j] = [start, end)`` and belongs to the chunk holding ``start``; the halo is the
    longest bin less one, after each chunk."""

    n: int
    bins: tuple
    chunks: tuple
    depth: tuple
    windows: tuple

    def local(self, i: int):
        """Input cells ``[c0, c1)`` that the bins of chunk ``i`` read (no padding), or None."""
        j0, j1 = self.windows[i]
        if j0 == j1:
            return None
        return self.bins[j0][0], self.bins[j1 - 1][1], (0, 0), False


def merge_chunks(chunks, size: int) -> tuple:
    """Merge chunks shorter than ``size`` into their neighbours, keeping the other
    boundaries; one chunk when the axis itself is shorter."""
    out = []
    for c in chunks:
        if out and out[-1] < size:
            out[-1] += c
        else:
            out.append(c)
    if len(out) > 1 and out[-1] < size:
        tail = out.pop()
        out[-1] += tail
    return tuple(int(c) for c in out if c) or (0,)


def axis_plan(n, chunks, kernel, stride, dilation, pad, out) -> AxisPlan:
    lo, _ = pad
    span = dilation * (kernel - 1) + 1
    t = min(lo, span - 1)
    chunks = merge_chunks(chunks, max(t, span - 1 - t))
    while True:
        depth = (t, span - 1 - t) if len(chunks) > 1 else (0, 0)
        starts = np.cumsum((0,) + chunks[:-1])
        # window j is anchored at p_j = j*s - lo + t; chunk i holds the j with p_j in [a_i, a_{i+1})
        first = [0] + [min(out, -(-(int(a) + lo - t) // stride)) for a in starts[1:]]
        windows = tuple(zip(first, first[1:] + [out]))
        plan = AxisPlan(n, kernel, stride, dilation, tuple(pad), out, chunks, depth, windows)
        # a ceil_mode pool's last window may overhang the padding: the chunk that holds it
        # alone may then have fewer cells than the kernel spans; merge it with the one before
        short = [i for i in range(1, len(chunks)) if plan.too_short(i)]
        if not short:
            return plan
        i = short[0]
        chunks = chunks[:i - 1] + (chunks[i - 1] + chunks[i],) + chunks[i + 1:]


def bin_plan(n, chunks, bins) -> BinPlan:
    longest = max(e - b for b, e in bins)
    depth = (0, longest - 1)
    chunks = merge_chunks(chunks, longest - 1)
    if len(chunks) == 1:
        depth = (0, 0)
    starts = np.cumsum((0,) + chunks[:-1])
    first = [0] + [sum(1 for b, _ in bins if b < a) for a in starts[1:]]
    windows = tuple(zip(first, first[1:] + [len(bins)]))
    return BinPlan(n, tuple(bins), chunks, depth, windows)


@dataclass(frozen=True)
class Block:
    """One block's in-memory problem: the ``slices`` of its overlapped block that its windows
    read, the global index of their first cell (``origin``), its windows ``[j0, j1)``, the
    padding ``(lo, hi)`` it needs and whether a ``ceil_mode`` window overhangs; per axis."""

    slices: tuple
    origin: tuple
    windows: tuple
    pads: tuple
    ceil: bool


@dataclass(frozen=True)
class Plan:
    """The cut of every spatial axis of ``x (N, C, *spatial)``."""

    axes: tuple

    @property
    def nd(self) -> int:
        return len(self.axes)

    def depth(self) -> dict:
        return {2 + a: ax.depth for a, ax in enumerate(self.axes)}

    def local(self, loc):
        """The :class:`Block` at ``loc`` (its spatial chunk indices); None when it anchors no window."""
        parts = [ax.local(i) for ax, i in zip(self.axes, loc)]
        if any(p is None for p in parts):
            return None
        slices = tuple(slice(c0 - ax.block_start(i), c1 - ax.block_start(i))
                       for ax, i, (c0, c1, _, _) in zip(self.axes, loc, parts))
        return Block(slices, tuple(p[0] for p in parts), tuple(ax.windows[i] for ax, i in zip(self.axes, loc)),
                     tuple(p[2] for p in parts), any(p[3] for p in parts))


def make_plan(x, geom) -> Plan:
    return Plan(tuple(axis_plan(n, x.chunks[2 + a], k, s, d, pad, o) for a, (n, k, s, d, pad, o) in enumerate(
        zip(geom.in_size, geom.kernel, geom.stride, geom.dilation, geom.pad, geom.out_size))))


# ----------------------------------------------------------------------------- validation

def _check_dask(x, name="x"):
    if not isinstance(x, da.Array):
        raise TypeError(f"{name} must be a dask.array.Array, got {type(x).__name__}; for NumPy or CuPy arrays "
                        "call the op of convlab itself (or wrap with dask.array.from_array(x, chunks=...))")


def _standin(x):
    """An array of ``x``'s module, dtype and shape that takes no memory (a broadcast scalar),
    for the in-memory validators."""
    try:
        xp = get_array_module(x._meta)
    except TypeError:
        xp = np
    return xp.broadcast_to(xp.zeros((), dtype=x.dtype), x.shape)


def _prepare(x, nd):
    """Check that ``x`` is a Dask array of ``nd`` spatial dims with known chunks; its stand-in."""
    _check_dask(x)
    if x.ndim != nd + 2:
        raise ValueError(f"x must have {nd + 2} dims (N, C, *spatial) for a {nd}-d op, got shape {x.shape}")
    if any(math.isnan(c) for cs in x.chunks for c in cs):
        raise ValueError("x has unknown chunk sizes (NaN); call x.compute_chunk_sizes() first")
    return _standin(x)


def _check_in_memory(a, name):
    if isinstance(a, da.Array):
        raise TypeError(f"{name} must be a NumPy or CuPy array (it is small and is sent to every block), "
                        f"got a dask.array.Array; call {name}.compute() first")


def _channel_chunks(x, c_per_group, k_per_group, groups):
    """The output channel chunks of an op that maps each group of ``c_per_group`` input
    channels to ``k_per_group`` output channels (``K/groups`` per group of each channel chunk
    of ``x``) and their starts; ``ValueError`` when a channel chunk splits a group."""
    chunks = x.chunks[1]
    if any(c % c_per_group for c in chunks):
        fix = x.shape[1] if groups == 1 else (c_per_group,) * groups
        raise ValueError(f"x's channel chunks {chunks} split a group of C/groups={c_per_group} channels "
                         f"(groups={groups}, C={x.shape[1]}); every channel chunk must hold whole groups, "
                         f"e.g. x.rechunk({{1: {fix}}})")
    k_chunks = tuple(c // c_per_group * k_per_group for c in chunks)
    return k_chunks, _starts(k_chunks)


def _starts(chunks):
    """``(0, c0, c0 + c1, ...)``: where each chunk starts, and the end."""
    return tuple(int(v) for v in np.cumsum((0,) + tuple(chunks)))


def _output_channels(x, args):
    """:func:`_channel_chunks` of a convolution's arguments."""
    return _channel_chunks(x, args.in_channels // args.groups, args.out_channels // args.groups, args.groups)


# ----------------------------------------------------------------------------- the blockwise engine

def _sliding(x, plan, op, out_channel_chunks, dtypes):
    """Run ``op(block, info, channel_chunk_index)`` on each block's cells (``info`` its
    :class:`Block`): the blockwise form of a sliding-window op, with output chunks
    ``(N, out_channel_chunks, *out)``. ``op`` returns one array per entry of ``dtypes``;
    so does this, as Dask arrays that share the block tasks."""
    x = x.rechunk({2 + a: ax.chunks for a, ax in enumerate(plan.axes)})
    out_chunks = (x.chunks[0], out_channel_chunks) + tuple(ax.out_chunks for ax in plan.axes)
    metas = [x._meta.astype(dt) for dt in dtypes]

    def block(xb, block_info=None):
        loc = block_info[0]["chunk-location"]
        shape = (xb.shape[0], out_channel_chunks[loc[1]]) + tuple(ax.out_chunks[i] for ax, i in
                                                                  zip(plan.axes, loc[2:]))
        info = plan.local(loc[2:])
        if info is not None and 0 not in shape:
            return op(xb[(Ellipsis,) + info.slices], info, loc[1])
        # no window: empty outputs in the chunk's own array type, whatever it is
        empty = tuple(get_array_module(xb).zeros_like(xb, shape=shape, dtype=dt) for dt in dtypes)
        return empty if len(dtypes) > 1 else empty[0]

    y = da.map_overlap(block, x, depth=plan.depth(), boundary="none", trim=False, allow_rechunk=False,
                       chunks=out_chunks, dtype=dtypes[0], meta=metas[0])
    if len(dtypes) == 1:
        return y
    return tuple(y.map_blocks(operator.itemgetter(i), dtype=dt, meta=m) for i, (dt, m) in enumerate(zip(dtypes, metas)))


def _plane_index(idx, shape, origin, in_size):
    """Flat indices into a block's planes (cells ``shape`` from ``origin``) -> flat indices
    into the whole array's planes (``in_size``); -1 (a window of padding only) stays."""
    xp = get_array_module(idx)
    coords = xp.unravel_index(xp.maximum(idx, 0), shape)
    flat = xp.zeros_like(idx)
    for c, o, n in zip(coords, origin, in_size):
        flat *= n
        flat += c + o
    flat[idx < 0] = -1
    return flat


# ----------------------------------------------------------------------------- convolution

def _conv_setup(nd, x, w, b, stride, padding, dilation, groups):
    standin = _prepare(x, nd)
    _check_in_memory(w, "w")
    if b is not None:
        _check_in_memory(b, "b")
    args = P.conv_args(standin, w, b, stride, padding, dilation, groups, nd)
    return (args, make_plan(x, args.geom)) + _output_channels(x, args)


def _check_algorithm(nd, x, w, b, args, flip, algorithm):
    """Arguments the shapes do not settle (flip, the algorithm and whether it can serve this
    kernel) are checked now, by the in-memory op on one window, not at compute time."""
    xp = get_array_module(w)
    tiny = xp.zeros((1, args.in_channels) + args.geom.span, dtype=x.dtype)
    getattr(convlab, f"conv{nd}d")(tiny, w, b, args.geom.stride, 0, args.geom.dilation, args.groups,
                                   flip=flip, algorithm=algorithm)


def conv(nd, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False, algorithm="auto"):
    """{nd}-d convolution of a Dask array: ``convlab.conv{nd}d`` block by block.

    Shapes: ``x (N, C, {sp})`` a Dask array chunked along N and/or {sp} (each channel
    chunk must hold whole groups), ``w (K, C/groups, {ksp})`` and ``b (K,)`` in-memory
    arrays -> a Dask array ``(N, K, {osp})``::

        Z[n, k, j] = b[k] + sum_{{c, m}} V[n, g*C_g + c, j*s + m*d - lo] * K[k, c, m]

    Every parameter as ``convlab.conv{nd}d``. Each block runs ``algorithm`` on its own
    cells ("auto" decides per block); the result is bit for bit the in-memory one where
    the algorithm sums each output in an order independent of the array's extent.
    """
    args, plan, k_chunks, k_starts = _conv_setup(nd, x, w, b, stride, padding, dilation, groups)
    _check_algorithm(nd, x, w, b, args, flip, algorithm)
    fn = getattr(convlab, f"conv{nd}d")
    c_per_group = args.in_channels // args.groups

    def op(xb, blk, ci):
        k0, k1 = k_starts[ci], k_starts[ci + 1]
        return fn(xb, w[k0:k1], None if b is None else b[k0:k1], args.geom.stride, blk.pads, args.geom.dilation,
                  xb.shape[1] // c_per_group, flip=flip, algorithm=algorithm)

    return _sliding(x, plan, op, k_chunks, (x.dtype,))


def _rechunk_like(a, name, shape, chunks):
    _check_dask(a, name)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)} (the forward output's shape), got {a.shape}")
    return a.rechunk(chunks)


def conv_backward(nd, grad_y, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False,
                  algorithm="auto", split_every=None):
    """Backward pass of ``convlab.dask.conv{nd}d``: Dask arrays ``(grad_x, grad_w, grad_b)``.

    Shapes: ``grad_y (N, K, {osp})`` and ``x (N, C, {sp})`` Dask arrays, ``w (K, C/groups, {ksp})``
    -> ``grad_x`` like ``x`` (chunked like it), ``grad_w`` like ``w``, ``grad_b (K,)`` (None
    without ``b``). Each output block runs ``convlab.conv{nd}d_backward`` on its cells::

        grad_x = sum over blocks of the block's input gradient, added where halos overlap
        grad_w = sum over blocks of the block's weight gradient (a tree of ``split_every``)
        grad_b[k] = sum_{{n, j}} G[n, k, j]

    Compute ``grad_x`` and ``grad_w`` together (``dask.compute(gx, gw)``): both come from
    the same block tasks.
    """
    args, plan, k_chunks, k_starts = _conv_setup(nd, x, w, b, stride, padding, dilation, groups)
    _check_algorithm(nd, x, w, b, args, flip, algorithm)
    fn = getattr(convlab, f"conv{nd}d_backward")
    c_per_group = args.in_channels // args.groups
    x = x.rechunk({2 + a: ax.chunks for a, ax in enumerate(plan.axes)})
    out_chunks = (x.chunks[0], k_chunks) + tuple(ax.out_chunks for ax in plan.axes)
    gy = _rechunk_like(grad_y, "grad_y", (args.batch, args.out_channels) + args.geom.out_size, out_chunks)
    if gy.dtype != x.dtype:
        raise TypeError(f"grad_y has dtype {gy.dtype} but x has dtype {x.dtype}; cast one so they match")
    depth = plan.depth()
    # the overlapped blocks' extents: each block's input gradient covers its cells and halos
    ext_chunks = tuple(tuple(c + (ax.depth[0] if i else 0) + (ax.depth[1] if i < len(ax.chunks) - 1 else 0)
                             for i, c in enumerate(ax.chunks)) for ax in plan.axes)
    w_tail = tuple(w.shape[1:])

    def block(xb, gyb, block_info=None):
        loc = block_info[0]["chunk-location"]
        xp = get_array_module(xb)
        k0, k1 = k_starts[loc[1]], k_starts[loc[1] + 1]
        gx = xp.zeros_like(xb)  # the chunk's own array type
        info = plan.local(loc[2:])
        if info is None or 0 in gyb.shape:
            return gx, xp.zeros_like(xb, shape=(k1 - k0,) + w_tail)
        sel = (Ellipsis,) + info.slices
        gx[sel], gw, _ = fn(gyb, xb[sel], w[k0:k1], None, args.geom.stride, info.pads, args.geom.dilation,
                            xb.shape[1] // c_per_group, flip=flip, algorithm=algorithm)
        return gx, gw

    both = da.map_overlap(block, x, gy, depth=[depth, 0], boundary="none", trim=False, align_arrays=False,
                          allow_rechunk=False, chunks=x.chunks[:2] + ext_chunks, dtype=x.dtype, meta=x._meta)
    grad_x = _overlap_add(both.map_blocks(lambda t: t[0], dtype=x.dtype, meta=x._meta), plan, x.chunks)
    grad_w = _tree_sum(both, plan, k_chunks, w_tail, x.dtype, split_every)
    grad_b = gy.sum(axis=(0,) + tuple(range(2, 2 + nd)), split_every=split_every) if b is not None else None
    return grad_x, grad_w, grad_b


def _overlap_add(ext, plan, chunks):
    """Fold blocks that each cover their chunk plus halos back onto the chunks: a cell's
    value is the sum of every block's value for it (a block's halo reaches its neighbours only)."""
    # block i receives the high halo of block i-1 (depth[1] cells) and the low halo of block i+1
    swapped = {2 + a: ax.depth[::-1] for a, ax in enumerate(plan.axes)}

    def fold(eb, block_info=None):
        loc = block_info[0]["chunk-location"]
        for a, (ax, i) in enumerate(zip(plan.axes, loc[2:])):
            last = len(ax.chunks) - 1
            before, after = (ax.depth[1] if i else 0), (ax.depth[0] if i < last else 0)
            own_lo = ax.depth[0] if i else 0
            size = ax.chunks[i]
            core = _take(eb, 2 + a, before + own_lo, before + own_lo + size).copy()
            if before:
                _take(core, 2 + a, 0, before)[...] += _take(eb, 2 + a, 0, before)
            if after:
                _take(core, 2 + a, size - after, size)[...] += _take(eb, 2 + a, eb.shape[2 + a] - after,
                                                                   eb.shape[2 + a])
            eb = core
        return eb

    return da.map_overlap(fold, ext, depth=swapped, boundary="none", trim=False, allow_rechunk=False,
                          chunks=chunks, dtype=ext.dtype, meta=ext._meta)


def _take(a, axis, start, stop):
    return a[(slice(None),) * axis + (slice(start, stop),)]



def _tree_sum(both, plan, k_chunks, w_tail, dtype, split_every):
    """Sum the blocks' weight gradients: one array with an axis of blocks per axis of x
    (size-1 chunks), reduced by Dask as a tree."""
    nd = plan.nd
    nblocks = both.numblocks

    def take(t):
        gw = t[1]
        return gw.reshape((1, gw.shape[0]) + (1,) * nd + gw.shape[1:])

    chunks = (((1,) * nblocks[0]), k_chunks) + tuple((1,) * nblocks[2 + a] for a in range(nd)) + tuple(
        (c,) for c in w_tail)
    parts = both.map_blocks(take, chunks=chunks, new_axis=list(range(2 + nd, 2 + nd + len(w_tail))),
                            dtype=dtype, meta=both._meta)
    return parts.sum(axis=(0,) + tuple(range(2, 2 + nd)), split_every=split_every)


# ----------------------------------------------------------------------------- transposed

@dataclass(frozen=True)
class _Fold:
    """One axis of blocks that overlap their next neighbour by ``depth[1]`` cells, to be
    added back onto ``chunks`` (see :func:`_overlap_add`)."""

    chunks: tuple
    depth: tuple


def conv_transpose(nd, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                   algorithm="auto"):
    """{nd}-d transposed convolution of a Dask array: ``convlab.conv_transpose{nd}d`` block by block.

    Shapes: ``x (N, C_in, {sp})`` a Dask array (each channel chunk holds whole groups),
    ``w (C_in, C_out/groups, {ksp})`` and ``b (C_out,)`` in-memory -> ``(N, C_out, {osp})``,
    ``out = (n - 1)*s - lo - hi + d*(k - 1) + output_padding + 1`` per axis. Every parameter
    as ``convlab.conv_transpose{nd}d``.

    Input chunk ``[a, a + c)`` scatters to the cells ``a*s ... (a + c - 1)*s + d*(k-1)`` of the
    unpadded result (the in-memory op with no padding); neighbours overlap by
    ``d*(k-1) + 1 - s`` cells, which are added (so the result equals the in-memory one to
    rounding), then ``lo`` and ``hi`` are cut off the array's true edges.
    """
    standin = _prepare(x, nd)
    _check_in_memory(w, "w")
    if b is not None:
        _check_in_memory(b, "b")
    args = P.conv_transpose_args(standin, w, b, stride, padding, output_padding, groups, dilation, nd)
    geom = args.geom  # of the convolution it is the adjoint of: in_size is this op's output
    fn = getattr(convlab, f"conv_transpose{nd}d")
    tiny = get_array_module(w).zeros((1, args.out_channels) + (1,) * nd, dtype=x.dtype)
    fn(tiny, w, None, geom.stride, 0, 0, args.groups, geom.dilation, algorithm=algorithm)  # the algorithm serves?
    c_per_group = args.out_channels // args.groups
    k_chunks, _ = _channel_chunks(x, c_per_group, args.in_channels // args.groups, args.groups)
    c_starts = _starts(x.chunks[1])
    spans = tuple(d * (k - 1) + 1 for d, k in zip(geom.dilation, geom.kernel))
    folds, ext_chunks, x_chunks = [], [], []
    for a, (n, s, span, (lo, _)) in enumerate(zip(geom.out_size, geom.stride, spans, geom.pad)):
        halo = max(span - s, 0)
        chunks = merge_chunks(x.chunks[2 + a], -(-halo // s))  # Dask adds a halo from the adjacent chunk only
        halo = halo if len(chunks) > 1 else 0
        past = max(0, lo + geom.in_size[a] - (n - 1) * s - span)  # output_padding beyond hi: zeros
        core = tuple(c * s for c in chunks[:-1]) + (chunks[-1] * s + span - s + past,)
        folds.append(_Fold(core, (0, halo)))
        ext_chunks.append(tuple(c + halo for c in core[:-1]) + core[-1:])
        x_chunks.append(chunks)
    x = x.rechunk({2 + a: c for a, c in enumerate(x_chunks)})

    def block(xb, block_info=None):
        loc = block_info[0]["chunk-location"]
        c0, c1 = c_starts[loc[1]], c_starts[loc[1] + 1]
        y = fn(xb, w[c0:c1], None, geom.stride, 0, 0, xb.shape[1] // c_per_group, geom.dilation, algorithm=algorithm)
        # zeros after it up to its extent (a stride longer than the kernel, output_padding)
        shape = y.shape[:2] + tuple(ext[i] for ext, i in zip(ext_chunks, loc[2:]))
        if shape == y.shape:
            return y
        out = get_array_module(y).zeros_like(y, shape=shape)  # the chunk's own array type
        out[(Ellipsis,) + tuple(slice(0, n) for n in y.shape[2:])] = y
        return out

    ext = x.map_blocks(block, chunks=(x.chunks[0], k_chunks) + tuple(ext_chunks), dtype=x.dtype, meta=x._meta)
    full = _overlap_add(ext, Plan(tuple(folds)), ext.chunks[:2] + tuple(f.chunks for f in folds))
    y = full[(slice(None), slice(None)) + tuple(slice(lo, lo + n) for (lo, _), n in zip(geom.pad, geom.in_size))]
    return y if b is None else _add_bias(y, b, nd)


def _add_bias(y, b, nd):
    """``y + b`` over the channel axis, block by block (``b`` stays an in-memory array)."""
    starts = _starts(y.chunks[1])

    def add(yb, block_info=None):
        ci = block_info[0]["chunk-location"][1]
        return yb + b[starts[ci]:starts[ci + 1]].reshape((-1,) + (1,) * nd)

    return y.map_blocks(add, dtype=y.dtype, meta=y._meta)


# ----------------------------------------------------------------------------- unshared

def _unshared(nd, x, w, b, stride, padding, dilation, tiled):
    standin = _prepare(x, nd)
    _check_in_memory(w, "w")
    if b is not None:
        _check_in_memory(b, "b")
    args = P.local_args(standin, w, b, stride, padding, dilation, nd, tiled=tiled)
    k_chunks, _ = _channel_chunks(x, args.in_channels, args.out_channels, 1)
    return args, make_plan(x, args.geom), k_chunks


def local_conv(nd, x, w, b=None, stride=1, padding=0, dilation=1):
    """{nd}-d locally connected layer of a Dask array: ``convlab.local_conv{nd}d`` block by block.

    Shapes: ``x (N, C, {sp})`` a Dask array (one channel chunk), ``w (K, {osp}, C, {ksp})`` and
    ``b (K, {osp})`` in-memory -> ``(N, K, {osp})``; each block takes the kernels of its own
    output positions::

        Z[n, k, j] = b[k, j] + sum_{{c, m}} V[n, c, j*s + m*d - lo] * W[k, j, c, m]
    """
    args, plan, k_chunks = _unshared(nd, x, w, b, stride, padding, dilation, False)
    fn = getattr(convlab, f"local_conv{nd}d")

    def op(xb, blk, _ci):
        sel = (slice(None),) + tuple(slice(j0, j1) for j0, j1 in blk.windows)
        return fn(xb, w[sel], None if b is None else b[sel], args.geom.stride, blk.pads, args.geom.dilation)

    return _sliding(x, plan, op, k_chunks, (x.dtype,))


def tiled_conv(nd, x, w, b=None, stride=1, padding=0, dilation=1):
    """{nd}-d tiled convolution of a Dask array: ``convlab.tiled_conv{nd}d`` block by block.

    Shapes: ``x (N, C, {sp})`` a Dask array (one channel chunk), ``w (K, {tsp}, C, {ksp})`` and
    ``b (K,)`` in-memory -> ``(N, K, {osp})``; output ``j`` uses kernel ``j % t``, so a block
    whose first output is ``j0`` takes the tiles rolled by ``j0 % t``::

        Z[n, k, j] = b[k] + sum_{{c, m}} V[n, c, j*s + m*d - lo] * W[k, j % t, c, m]
    """
    args, plan, k_chunks = _unshared(nd, x, w, b, stride, padding, dilation, True)
    fn = getattr(convlab, f"tiled_conv{nd}d")
    xp = get_array_module(w)

    def op(xb, blk, _ci):
        wb = w
        for a, (j0, _) in enumerate(blk.windows):
            wb = xp.roll(wb, -(j0 % w.shape[1 + a]), axis=1 + a)
        return fn(xb, wb, b, args.geom.stride, blk.pads, args.geom.dilation)

    return _sliding(x, plan, op, k_chunks, (x.dtype,))


# ----------------------------------------------------------------------------- separable

def separable_conv(nd, x, factors, b=None, stride=1, padding=0, dilation=1, groups=None):
    """{nd}-d separable convolution of a Dask array: ``convlab.separable_conv{nd}d`` block by block.

    Shapes: ``x (N, C, {sp})`` a Dask array (each channel chunk holds whole groups),
    ``factors`` {nd} in-memory arrays ``(K, C/groups, k_a)``, ``b (K,)`` -> ``(N, K, {osp})``,
    equal to ``conv{nd}d`` with the kernel ``f_1 (x) ... (x) f_{nd}``.
    """
    standin = _prepare(x, nd)
    if not isinstance(factors, (list, tuple)):
        raise TypeError(f"factors must be a list of {nd} arrays (one 1-D factor per spatial axis), "
                        f"got {type(factors).__name__}")
    for a, f in enumerate(factors):
        _check_in_memory(f, f"factors[{a}]")
    if b is not None:
        _check_in_memory(b, "b")
    args = P.separable_args(standin, factors, b, stride, padding, dilation, groups, nd)
    c_per_group = args.in_channels // args.groups
    k_chunks, k_starts = _output_channels(x, args)
    fn = getattr(convlab, f"separable_conv{nd}d")

    def op(xb, blk, ci):
        k0, k1 = k_starts[ci], k_starts[ci + 1]
        return fn(xb, [f[k0:k1] for f in factors], None if b is None else b[k0:k1], args.geom.stride, blk.pads,
                  args.geom.dilation, xb.shape[1] // c_per_group)

    return _sliding(x, make_plan(x, args.geom), op, k_chunks, (x.dtype,))


# ----------------------------------------------------------------------------- pooling

def _pool(nd, x, name, kernel_size, stride, padding, dilation, ceil_mode, extra=(), kw=None, indices=False):
    """``convlab.{name}{nd}d(block, *extra, kernel_size, stride, pads, ceil_mode=, **kw)`` block by block;
    with ``indices``, also its flat indices, made global."""
    kw = kw or {}
    standin = _prepare(x, nd)
    geom = P.pool_args(standin, kernel_size, stride, padding, dilation, ceil_mode, nd)
    fn = getattr(convlab, f"{name}{nd}d")
    if indices:
        kw = dict(kw, return_indices=True)

    def op(xb, blk, _ci):
        out = fn(xb, *extra, geom.kernel, geom.stride, blk.pads, ceil_mode=blk.ceil, **kw)
        if indices:
            return out[0], _plane_index(out[1], xb.shape[2:], blk.origin, geom.in_size)
        return out

    return _sliding(x, make_plan(x, geom), op, x.chunks[1], (x.dtype, np.int64) if indices else (x.dtype,))


def max_pool(nd, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """{nd}-d max pooling of a Dask array ``x (N, C, {sp})`` -> ``(N, C, {osp})``, block by block::

        Y[n, c, j] = max_m V[n, c, j*s + m*d - lo]        (the padding holds -inf)

    Parameters as ``convlab.max_pool{nd}d``; ``return_indices=True`` also returns the int64
    flat index of each maximum into its whole input plane (a Dask array; compute it together
    with ``Y``, e.g. ``dask.compute(y, i)``, or the block tasks run twice).
    """
    indices = P.boolean(return_indices, "return_indices")
    return _pool(nd, x, "max_pool", kernel_size, stride, padding, dilation, ceil_mode, kw={"dilation": dilation},
                 indices=indices)


def avg_pool(nd, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
    """{nd}-d average pooling of a Dask array ``x (N, C, {sp})`` -> ``(N, C, {osp})``, block by block::

        Y[n, c, j] = sum_m V[n, c, j*s + m - lo] / D[j]

    Parameters (and the divisor ``D``) as ``convlab.avg_pool{nd}d``.
    """
    include = P.boolean(count_include_pad, "count_include_pad")
    divisor = P.divisor_override(divisor_override)
    return _pool(nd, x, "avg_pool", kernel_size, stride, padding, 1, ceil_mode,
                 kw={"count_include_pad": include, "divisor_override": divisor})


def lp_pool(nd, x, p, kernel_size, stride=None, padding=0, ceil_mode=False):
    """{nd}-d Lp pooling of a Dask array ``x (N, C, {sp})`` -> ``(N, C, {osp})``, block by block::

        Y[n, c, j] = (sum_m |V[n, c, j*s + m - lo]|^p)^(1/p)

    Parameters as ``convlab.lp_pool{nd}d``.
    """
    return _pool(nd, x, "lp_pool", kernel_size, stride, padding, 1, ceil_mode, (P.lp_norm(p),))


def _adaptive(nd, x, output_size, pool, indices):
    """``pool(block, bins)`` of :mod:`convlab.reference.pool` block by block, each block
    given its own bins (PyTorch's bins of the whole axis, shifted to the block's cells)."""
    bins = P.adaptive_args(_prepare(x, nd), output_size, nd)
    plan = Plan(tuple(bin_plan(n, cs, b) for n, cs, b in zip(x.shape[2:], x.chunks[2:], bins)))

    def op(xb, blk, _ci):
        local = tuple(tuple((s - o, e - o) for s, e in b[j0:j1]) for b, o, (j0, j1) in
                      zip(bins, blk.origin, blk.windows))
        out = pool(xb, local)
        if indices:
            return out[0], _plane_index(out[1], xb.shape[2:], blk.origin, x.shape[2:])
        return out[0] if isinstance(out, tuple) else out

    return _sliding(x, plan, op, x.chunks[1], (x.dtype, np.int64) if indices else (x.dtype,))


def adaptive_max_pool(nd, x, output_size, return_indices=False):
    """{nd}-d adaptive max pooling of a Dask array ``x (N, C, {sp})`` -> ``(N, C, {osp})``::

        Y[n, c, j] = max_{{i in bin j}} V[n, c, i]

    ``output_size`` and the bins as ``convlab.adaptive_max_pool{nd}d`` (PyTorch's); each bin
    belongs to the chunk holding its first cell and reads the cells after it, so chunks
    shorter than the longest bin are merged first. ``return_indices`` as in ``max_pool{nd}d``.
    """
    indices = P.boolean(return_indices, "return_indices")
    return _adaptive(nd, x, output_size, ref_pool.adaptive_max_pool, indices)


def adaptive_avg_pool(nd, x, output_size):
    """{nd}-d adaptive average pooling of a Dask array ``x (N, C, {sp})`` -> ``(N, C, {osp})``::

        Y[n, c, j] = mean_{{i in bin j}} V[n, c, i]

    ``output_size``, bins and chunks as ``adaptive_max_pool{nd}d``.
    """
    return _adaptive(nd, x, output_size, ref_pool.adaptive_avg_pool, False)


__all__ = (family(conv, "conv", globals()) + family(conv_backward, "conv", globals(), "_backward")
           + family(conv_transpose, "conv_transpose", globals())
           + family(local_conv, "local_conv", globals()) + family(tiled_conv, "tiled_conv", globals())
           + family(separable_conv, "separable_conv", globals())
           + family(max_pool, "max_pool", globals()) + family(avg_pool, "avg_pool", globals())
           + family(lp_pool, "lp_pool", globals())
           + family(adaptive_max_pool, "adaptive_max_pool", globals())
           + family(adaptive_avg_pool, "adaptive_avg_pool", globals())
           + ["AxisPlan", "BinPlan", "Block", "Plan", "axis_plan", "bin_plan", "make_plan", "merge_chunks"])
for _name in __all__:
    globals()[_name].__module__ = __name__
