"""Pooling (section 9.3) on the windowing primitive: max, average, Lp, maxout, adaptive.

Every function takes ``x`` of shape ``(..., *n)`` whose trailing ``geom.nd`` axes are pooled
(``geom`` is a :class:`convlab._params.Geometry`) and returns ``(..., *out)``. With ``P_j``
the in-range cells of window ``j`` (padding never counts)::

    max:  Y[j] = max_{i in P_j} V[i]
    avg:  Y[j] = sum_{i in P_j} V[i] / divisor[j]
    Lp:   Y[j] = (sum_{i in P_j} |V[i]|^p)^(1/p)

The max and the sums run over kernel taps without a padded copy of the input: each tap
reads only its in-range cells (:func:`.windows.tap_boxes`), which is the same as padding
with the identity of the reduction (``-inf``, 0); their adjoints add back onto the same
cells. The planes (the leading axes) are taken a chunk at a time, so that a chunk's output
stays in cache while every tap passes over it. A max pool over few windows instead gathers
all of them at once from a copy padded with ``-inf`` (:func:`_argmax_at_once`), where the
calls of a pass per tap would cost more than the arithmetic. Maxout is a max pool over the
channel axis, one reduction over an axis of its pieces. Adaptive pools have bins of
varying size (``convlab._params.adaptive_bins``) rather than sliding windows, so they loop
over their output cells instead, unless their bins have one size and one stride: then they
are the plain pool (bins that tile the input reduce a copy laid out window by window).
"""
from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from .. import _parallel
from .._backend import get_array_module
from .._params import Geometry
from .._protocol import all_finite
from .windows import cells, covers, pad, tap_boxes


# Planes per chunk: a chunk's input and output stay in L2 while the taps pass over them.
CACHE_BYTES = 1 << 20
# Inputs this large are pooled on every core, a chunk per thread.
PARALLEL_BYTES = 4 << 20
# Max pools with at most this many windows (over all planes) read every window at once: one
# copy of the windows, one argmax and one max, in place of a pass per tap over chunks, whose
# per-call cost is all a small call has (the crossing point: 1000 windows of 2x2, 2800 of 3x3).
SMALL_WINDOWS = 1024

def _compiled_adds():
    """SciPy's sparse CSR-to-dense loop, ``y[row, col] += v`` row by row, compiled and run
    without the GIL; ``None`` when this SciPy lacks it (a private function) or it does not
    add as tested here, on a row that sends two values to one cell."""
    try:
        from scipy.sparse._sparsetools import csr_todense
        y = np.zeros((1, 2), dtype=np.float32)
        csr_todense(1, 2, np.array([0, 2], dtype=np.int64), np.array([1, 1], dtype=np.int64),
                    np.array([1, 2], dtype=np.float32), y)
    except Exception:  # pragma: no cover - depends on the SciPy version
        return None
    return csr_todense if y.tolist() == [[0.0, 3.0]] else None


_csr_add = _compiled_adds()


def _lead(a, geom):
    return tuple(a.shape[:a.ndim - geom.nd])


def _outer(vectors, xp, dtype):
    """The outer product of one vector per spatial axis, shape ``(*out,)``, in ``xp``."""
    grid = np.ones((), dtype=np.int64)
    for v in vectors:
        grid = np.multiply.outer(grid, v)
    return xp.asarray(grid, dtype=dtype)


# ----------------------------------------------------------------------------- the tap loop

def _planes(a, geom):
    """``(..., *sp) -> (P, *sp)``: the leading axes as one axis of planes."""
    lead = a.ndim - geom.nd
    return a.reshape((math.prod(a.shape[:lead]),) + tuple(a.shape[lead:]))  # not -1: a plane may be empty


def _chunks(planes, a, plane_cells):
    """Plane ranges ``(p0, p1)`` whose ``plane_cells`` cells per plane (input and output) stay
    in cache (NumPy; one chunk on a GPU)."""
    if get_array_module(a) is not np:
        return [(0, planes)]
    per_plane = plane_cells * a.itemsize
    step = max(1, CACHE_BYTES // max(1, per_plane))
    return [(p0, min(planes, p0 + step)) for p0 in range(0, planes, step)]


def _plane_cells(geom):
    return math.prod(geom.in_size) + math.prod(geom.out_size)


def _each(fn, chunks, nbytes):
    """``fn(p0, p1)`` for every chunk. The chunks write disjoint planes and NumPy's loops
    release the GIL, so inputs over ``PARALLEL_BYTES`` use every core (:mod:`convlab._parallel`)."""
    def run(group):
        for chunk in group:
            fn(*chunk)

    if nbytes < PARALLEL_BYTES:
        run(chunks)
    else:
        _parallel.map_groups(run, chunks)


def _reduce(x, geom, op, identity, ordered=False, then=None):
    """``y[j] = op`` over the in-range cells of window ``j`` (``identity`` where there is none),
    taps in row-major order when ``ordered`` (sums: the rounding of a float sum depends on it).
    ``then(xc, yc, p0, p1)`` runs on each chunk of planes right after it, while it is in cache."""
    xp = get_array_module(x)
    xf = _planes(x, geom)
    y = xp.empty((xf.shape[0],) + geom.out_size, dtype=x.dtype)
    boxes = tap_boxes(geom)
    first = next((t for t, box in enumerate(boxes) if covers(box, geom)), None)
    if ordered and first:
        first = None

    def chunk(p0, p1):
        xc, yc = xf[p0:p1], y[p0:p1]
        if first is None:
            yc.fill(identity)
        else:  # a tap that reads no padding starts the reduction: one pass fewer
            yc[...] = xc[boxes[first][0]]
        for t, box in enumerate(boxes):
            if box is not None and t != first:
                src, dst = box
                op(yc[dst], xc[src], out=yc[dst])
        if then is not None:
            then(xc, yc, p0, p1)

    _each(chunk, _chunks(xf.shape[0], x, _plane_cells(geom)), x.nbytes)
    return y.reshape(_lead(x, geom) + geom.out_size)


@functools.lru_cache(maxsize=256)
def _spread_plan(geom):
    """``(assigns, unwritten, read)`` for :func:`_spread`: per tap, whether no earlier tap
    (row-major) reads any of its cells, so that it can assign them rather than add to them;
    the flat indices into a plane of the cells no assigning tap writes, which start at 0;
    and ``(*n,)``, whether any window reads each cell."""
    read, written, assigns = np.zeros(geom.in_size, bool), np.zeros(geom.in_size, bool), []
    for box in tap_boxes(geom):
        assigns.append(box is not None and not read[box[0]].any())
        if box is not None:
            read[box[0]] = True
            written[box[0]] |= assigns[-1]
    return tuple(assigns), np.flatnonzero(~written), read


def _spread(gy, geom, per_tap=None, scale=None):
    """The adjoint of :func:`_reduce`'s reads: ``gx[i] = sum`` over the windows ``j`` and taps
    that read cell ``i`` of ``per_tap(t, g[j])`` (default ``g[j]``), without padding;
    ``g = gy / scale`` (each chunk divided once, in cache) when ``scale`` is given. A tap
    whose cells no earlier tap reads assigns them instead of adding (the same sum, in the
    same order), so only the cells no such tap writes are zeroed first (none where windows
    tile the input; the last row and column for 3x3/2 pad 1 on an even size)."""
    xp = get_array_module(gy)
    g = _planes(gy, geom)
    gx = xp.empty((g.shape[0],) + geom.in_size, dtype=gy.dtype)
    assigns, unwritten, _ = _spread_plan(geom)
    size = math.prod(geom.in_size)
    few = 8 * unwritten.size < size  # else zeroing the whole chunk is cheaper than picking cells
    unwritten = xp.asarray(unwritten)

    def chunk(p0, p1):
        gc, gxc = g[p0:p1], gx[p0:p1]
        if few:
            gxc.reshape(p1 - p0, size)[:, unwritten] = 0
        else:
            gxc.fill(0)
        if scale is not None:
            gc = gc / scale
        for t, box in enumerate(tap_boxes(geom)):
            if box is not None:
                src, dst = box
                value = gc[dst] if per_tap is None else per_tap(t, p0, p1, dst)
                if assigns[t]:
                    gxc[src] = value
                else:
                    gxc[src] += value

    _each(chunk, _chunks(g.shape[0], gy, _plane_cells(geom)), gx.nbytes)
    return gx.reshape(_lead(gy, geom) + geom.in_size)


# ----------------------------------------------------------------------------- max

def max_pool(x, geom):
    """Largest value in each window (NaN counts as the largest); padding never wins."""
    return _reduce(x, geom, get_array_module(x).maximum, -np.inf)


def _in_input(geom, axis):
    """``(out, k)`` table along one axis: does tap ``m`` of window ``j`` read an input cell
    (rather than padding)?"""
    lo = geom.pad[axis][0]
    c = cells(geom, axis)
    return (c >= lo) & (c < lo + geom.in_size[axis])


@functools.lru_cache(maxsize=256)
def _first_inside(geom):
    """``(T, none)``: the flat tap index (row-major over the kernel) of the first in-range
    cell of each window, and whether the window has no in-range cell at all (``T`` is 0 there;
    ``none`` is None where every window has one). Made once per geometry (read-only)."""
    flat, none = np.zeros((), dtype=np.int64), np.zeros((), dtype=bool)
    for a in range(geom.nd):
        inside = _in_input(geom, a)
        flat = np.add.outer(flat * geom.kernel[a], inside.argmax(axis=1))  # argmax of a bool: the first True
        none = np.logical_or.outer(none, ~inside.any(axis=1))
    flat.flags.writeable = none.flags.writeable = False
    return flat, (none if none.any() else None)


def max_pool_argmax(x, geom, plane=False):
    """``(Y, T)``: the max of each window and the flat tap index ``T`` (row-major over the
    kernel; the smallest unsigned integer type that holds it) of its FIRST maximum (the first
    NaN where the window holds one, as ``Y`` is NaN there). Padding never wins; a window
    whose ``Y`` is ``-inf`` points to its first in-range tap. ``plane=True`` gives
    :func:`plane_index` of ``T`` instead (int64, -1 for a window with no input cell), made
    from each chunk while it is in cache.

    The taps pass in row-major order and each window keeps the last tap that raised its
    running max: a tie does not raise it, so the earliest of equal maxima stays; a NaN
    raises a max that is not NaN yet, and nothing raises a NaN. Each tap's strided cells
    are copied once, so that the compare and the max read them contiguously.

    Small inputs (:data:`SMALL_WINDOWS`) take :func:`_argmax_at_once` instead."""
    if x.size * _windows_per_cell(geom) <= SMALL_WINDOWS:
        return _argmax_at_once(x, geom, plane)
    xp = get_array_module(x)
    xf = _planes(x, geom)
    index_type = np.min_scalar_type(math.prod(geom.kernel) - 1)
    y = xp.empty((xf.shape[0],) + geom.out_size, dtype=x.dtype)
    arg = xp.empty(y.shape, dtype=index_type)
    index = xp.empty(y.shape, dtype=np.int64) if plane else arg
    boxes = tuple((t, box) for t, box in enumerate(tap_boxes(geom)) if box is not None)
    first, none = _first_inside(geom)
    first = xp.asarray(first, dtype=index_type)
    none = None if none is None else xp.asarray(none)

    def chunk(p0, p1):
        xc, yc, ac = xf[p0:p1], y[p0:p1], arg[p0:p1]
        values, raised, codes = (xp.empty(yc.shape, dtype=d) for d in (x.dtype, bool, index_type))

        def run(nan):
            yc.fill(-xp.inf)
            ac.fill(0)  # also the code of a window never raised: its max is -inf, fixed below
            for t, (src, dst) in boxes:
                v = values[dst]
                v[...] = xc[src]
                up = xp.greater(v, yc[dst], out=raised[dst])
                if nan:
                    up |= xp.isnan(v) & ~xp.isnan(yc[dst])
                xp.maximum(yc[dst], v, out=yc[dst])
                xp.maximum(ac[dst], xp.multiply(up, index_type.type(t), out=codes[dst]), out=ac[dst])

        run(False)
        if yc.size and bool(xp.isnan(yc.max())):  # a NaN in a window makes its max NaN
            run(True)
        if yc.size and not bool(yc.min() > -xp.inf):
            xp.copyto(ac, xp.broadcast_to(first, ac.shape), where=xp.equal(yc, -xp.inf, out=raised))
        if plane:
            ic = plane_index(ac, geom, out=index[p0:p1])
            if none is not None:
                xp.copyto(ic, -1, where=xp.broadcast_to(none, ic.shape))

    _each(chunk, _chunks(xf.shape[0], x, _plane_cells(geom)), x.nbytes)
    shape = _lead(x, geom) + geom.out_size
    return y.reshape(shape), index.reshape(shape)


def _argmax_at_once(x, geom, plane):
    """:func:`max_pool_argmax` on a copy of all the windows ``(..., *out, prod(kernel))``,
    gathered from the input padded with ``-inf`` by one ``take`` of :func:`_window_cells` (a
    view of the windows costs more to make than a tiny pool's arithmetic): ``argmax`` gives
    the first maximum (the first NaN where there is one) and ``max`` the value. Only where
    padding ties a ``-inf`` maximum can it come first; those windows point to their first
    in-range tap, as the tap loop's do."""
    xp = get_array_module(x)
    gather = _window_cells(geom)
    w = pad(x, geom, -np.inf).reshape(_lead(x, geom) + (math.prod(geom.padded_size),))
    w = w.take(gather if xp is np else xp.asarray(gather), axis=-1)
    arg, y = w.argmax(axis=-1), w.max(axis=-1)
    none = None
    if geom.padded_size != geom.in_size:  # only padding ties a maximum before the input's cells
        first, none = _first_inside(geom)
        if y.size and not bool(y.min() > -xp.inf):
            arg = xp.where(y == -xp.inf, xp.asarray(first), arg)
    if not plane:
        return y, arg.astype(np.min_scalar_type(math.prod(geom.kernel) - 1))
    index = plane_index(arg, geom)
    if none is not None:
        xp.copyto(index, -1, where=xp.broadcast_to(xp.asarray(none), index.shape))
    return y, index


@functools.lru_cache(maxsize=256)
def _index_tables(geom, padded=False):
    """``(of_window, of_tap)``: the flat index into an input plane (into a padded one, as
    :func:`.windows.pad` makes it, when ``padded``) of tap 0 of each window ``(*out,)``, and
    the offset of each tap from it (flat over the kernel, row-major). Made once per geometry."""
    of_window, of_tap = np.zeros((), dtype=np.int64), np.zeros((), dtype=np.int64)
    for a in range(geom.nd):
        n, lo = (geom.padded_size[a], 0) if padded else (geom.in_size[a], geom.pad[a][0])
        of_window = np.add.outer(of_window * n, np.arange(geom.out_size[a]) * geom.stride[a] - lo)
        of_tap = np.add.outer(of_tap * n, np.arange(geom.kernel[a]) * geom.dilation[a])
    return of_window, of_tap.ravel()


@functools.lru_cache(maxsize=256)
def _windows_per_cell(geom):
    """Windows per input cell."""
    return math.prod(geom.out_size) / max(1, math.prod(geom.in_size))


@functools.lru_cache(maxsize=256)
def _window_cells(geom):
    """``(*out, prod(kernel))``: the flat index into a padded plane of the cell that each tap
    of each window reads (read-only)."""
    of_window, of_tap = _index_tables(geom, padded=True)
    table = np.add.outer(of_window, of_tap)
    table.flags.writeable = False
    return table


def plane_index(arg, geom, out=None):
    """Flat index into each input plane (row-major over ``*n``) of the cell that tap ``arg``
    of window ``j`` reads: ``i = j*s + m*d - lo`` per axis (PyTorch's ``return_indices``).
    The flat index is linear in ``i``, so it splits into a part of the window ``j`` and a
    part of the tap ``m``: a small table for each, one lookup and one add."""
    xp = get_array_module(arg)
    of_window, of_tap = _index_tables(geom)
    if xp is not np:
        of_window, of_tap = xp.asarray(of_window), xp.asarray(of_tap)
    return xp.add(of_tap.take(arg), of_window, out=out)


def _select(hit, g, finite):
    """``g`` where ``hit``, else 0 (``g`` broadcast against ``hit``): a product by the mask when
    ``g`` is finite, several times cheaper than a select over a random mask; a select where
    it is not, since 0 * inf is NaN."""
    return g * hit if finite else get_array_module(g).where(hit, g, 0)


def max_pool_grad(gy, x, geom):
    """Adjoint of :func:`max_pool` at ``x``: the whole of ``gy[j]`` goes to the first maximum
    of window ``j``. Written as one add per tap: for a fixed tap the windows read distinct
    cells, so each cell gathers from the windows whose winner it is, with no collisions
    (the form a GPU kernel gathers from)."""
    arg = _planes(max_pool_argmax(x, geom)[1], geom)
    g = _planes(gy, geom)
    finite = all_finite(gy)
    return _spread(gy, geom, lambda t, p0, p1, dst: _select(arg[p0:p1][dst] == t, g[p0:p1][dst], finite))


# ----------------------------------------------------------------------------- sums, average

def scatter_planes(gy, index, in_size):
    """The adjoint of gathering by plane index: ``gx[n, c, index[n, c, j]] += gy[n, c, j]``,
    ``gy`` and ``index`` of shape ``(N, C, *out)``, ``gx`` of shape ``(N, C, *in_size)``
    (index -1, a window with no input cell, adds nothing). Max-pool backward from the
    forward's indices, without a second argmax. An index outside ``[-1, prod(in_size))`` is a
    ``ValueError``: the largest index of a chunk, as unsigned (where -1 is the largest of
    all), is its one test when no index is -1, a reduction that also brings the indices into
    cache for the adds.

    A chunk of planes at a time, so that its indices, gradients and sums stay in cache, the
    chunks on every core. The adds are SciPy's compiled CSR-to-dense loop, a plane's windows
    being a row (the windows in order, as ``np.add.at``, but without holding the GIL), or
    ``np.add.at`` without it; on CuPy arrays one ``bincount`` of the flat cells."""
    xp = get_array_module(gy)
    planes, cells, outs = gy.shape[0] * gy.shape[1], math.prod(in_size), math.prod(gy.shape[2:])
    g, idx = gy.reshape(planes, outs), index.reshape(planes, outs)
    gx = xp.empty((planes, cells), dtype=gy.dtype)

    def chunk(p0, p1):
        ic, gc, gxc, keep = idx[p0:p1], g[p0:p1], gx[p0:p1], None
        if ic.size and int(ic.view(np.uint64).max()) >= cells:
            inside = (ic >= -1) & (ic < cells)
            if not bool(inside.all()):
                plane, j = (int(v) for v in xp.argwhere(~inside)[0])
                raise ValueError(f"indices must lie in [-1, {cells}) (flat indices into planes of size "
                                 f"{tuple(in_size)}): window {j} of plane {p0 + plane} holds {int(ic[plane, j])}")
            keep = ic >= 0  # -1: a window with no input cell
        if xp is np and _csr_add is not None:  # a plane's windows are a row: in order, as np.add.at
            starts = _row_starts(p1 - p0, outs) if keep is None else np.concatenate(
                (np.zeros(1, dtype=np.int64), np.cumsum(keep.sum(axis=1))))
            gxc.fill(0)
            _csr_add(p1 - p0, cells, starts, ic if keep is None else ic[keep], gc if keep is None else gc[keep], gxc)
            return
        flat = ic + xp.arange(p1 - p0, dtype=np.int64)[:, None] * cells
        flat, gk = (flat, gc) if keep is None else (flat[keep], gc[keep])
        if xp is np:
            gxc.fill(0)
            np.add.at(gxc.reshape(-1), flat.ravel(), gk.ravel())
        else:
            gxc[...] = xp.bincount(flat.ravel(), weights=gk.ravel(), minlength=gxc.size).reshape(gxc.shape)

    # twice the planes of a chunk of the other pools: their fewer calls save more than the L2
    # misses cost (8% less CPU over 64 planes of 112 x 112)
    chunks = _chunks(planes, gy, (cells + outs) // 2)
    if len(chunks) == 1:
        chunk(0, planes)
    else:
        _each(chunk, chunks, gx.nbytes)
    return gx.reshape(gy.shape[:2] + tuple(in_size))


@functools.lru_cache(maxsize=64)
def _row_starts(count, outs):
    """Where each of ``count`` planes of ``outs`` windows starts among them, and their end:
    the row pointers of a CSR matrix whose rows are the planes (read-only)."""
    starts = np.arange(count + 1, dtype=np.int64) * outs
    starts.flags.writeable = False
    return starts


def sum_pool(x, geom):
    """Sum of each window, the padding holding 0."""
    return _reduce(x, geom, get_array_module(x).add, 0, ordered=True)


def sum_pool_grad(gy, geom):
    """Adjoint of :func:`sum_pool`: every cell of window ``j`` receives ``gy[j]``."""
    return _spread(gy, geom)


def avg_divisor(geom, count_include_pad, divisor_override, xp, dtype):
    """What each window's sum is divided by (PyTorch's rule): ``divisor_override`` if given,
    else the window's cells inside the padded input (``count_include_pad``; a ``ceil_mode``
    window running past the padding is clipped) or inside the input, shape ``(*out,)``."""
    if divisor_override is not None:
        return xp.asarray(divisor_override, dtype=dtype)
    counts = []
    for a in range(geom.nd):
        (lo, hi), n = geom.pad[a], geom.in_size[a]
        inside = cells(geom, a) < lo + n + hi if count_include_pad else _in_input(geom, a)
        counts.append(inside.sum(axis=1))
    return _outer(counts, xp, dtype)


def avg_pool(x, geom, count_include_pad=True, divisor_override=None):
    """:func:`sum_pool` over :func:`avg_divisor`, each chunk divided while it is in cache."""
    xp = get_array_module(x)
    divisor = avg_divisor(geom, count_include_pad, divisor_override, xp, x.dtype)
    return _reduce(x, geom, xp.add, 0, ordered=True, then=lambda xc, yc, p0, p1: xp.divide(yc, divisor, out=yc))


def avg_pool_grad(gy, geom, count_include_pad=True, divisor_override=None):
    xp = get_array_module(gy)
    return _spread(gy, geom, scale=avg_divisor(geom, count_include_pad, divisor_override, xp, gy.dtype))


# ----------------------------------------------------------------------------- Lp

def lp_pool(x, p, geom):
    """``(sum |x|^p)^(1/p)`` over each window; ``p = inf`` is the max of ``|x|``."""
    xp = get_array_module(x)
    if math.isinf(p):
        return max_pool(xp.abs(x), geom)
    if p == 2:  # the same values as the powers, without their cost
        return xp.sqrt(sum_pool(x * x, geom))
    return sum_pool(xp.abs(x) ** p, geom) ** (1.0 / p)


def lp_pool_grad(gy, x, p, geom):
    """Adjoint of :func:`lp_pool` at ``x``. With ``Y = S^(1/p)`` and ``S = sum |x|^p``::

        dY[j]/dx[i] = sign(x[i]) |x[i]|^(p-1) * Y[j]^(1-p)        (0 where Y[j] = 0)

    so the gradient is the sum-pool adjoint of ``gy * Y^(1-p)`` times ``sign(x)|x|^(p-1)``
    (taken as 0 at ``x = 0``; NaN stays NaN). A non-finite cell that no window reads gets
    0, as every cell outside the windows, not ``0 * inf``."""
    xp = get_array_module(gy)
    if math.isinf(p):
        return xp.sign(x) * max_pool_grad(gy, xp.abs(x), geom)
    y = lp_pool(x, p, geom)
    per_window = xp.where(y != 0, gy * xp.where(y != 0, y, 1) ** (1.0 - p), 0)
    if p == 2:
        per_cell = x  # sign(x) |x|^1
    else:
        ax = xp.abs(x)
        per_cell = xp.where(ax != 0, xp.sign(x) * xp.where(ax != 0, ax, 1) ** (p - 1.0), 0)
    grad = sum_pool_grad(per_window, geom)
    grad *= per_cell
    read = _spread_plan(geom)[2]
    if not read.all() and not all_finite(per_cell):  # a non-finite cell no window reads gets 0, not 0 * inf
        grad = xp.where(xp.asarray(read), grad, 0)
    return grad


# ----------------------------------------------------------------------------- maxout

def _pieces(a, geom):
    """``(N, C, *sp) -> (N, C/pieces, pieces, *sp)`` (a view of a contiguous ``a``)."""
    pieces = geom.kernel[0]
    return a.reshape(a.shape[:1] + (a.shape[1] // pieces, pieces) + a.shape[2:])


def maxout(x, geom):
    """Max over each group of ``pieces`` consecutive channels (``geom``: the 1-d window over
    the channel axis, kernel = stride = pieces): the groups are an axis of their own, and
    one reduction over it takes the max (NaN counts as the largest)."""
    return _pieces(x, geom).max(axis=2)


def maxout_grad(gy, x, geom):
    """Adjoint of :func:`maxout`: each group's gradient goes to its first maximum (the first
    NaN where there is one), found piece by piece against the group's max: a pass over each
    piece's planes, where an ``argmax`` over the short pieces axis walks it cell by cell."""
    xp = get_array_module(gy)
    xg = _pieces(x, geom)
    y = xg.max(axis=2)
    nan = xp.isnan(y)
    nan = nan if bool(nan.any()) else None
    finite = all_finite(gy)
    gx = xp.empty(xg.shape, dtype=gy.dtype)
    taken = xp.zeros(y.shape, dtype=bool)
    for q in range(xg.shape[2]):
        hit = xg[:, :, q] == y
        if nan is not None:
            hit |= nan & xp.isnan(xg[:, :, q])
        hit &= ~taken
        gx[:, :, q] = _select(hit, gy, finite)
        taken |= hit
    return gx.reshape(x.shape)


# ----------------------------------------------------------------------------- adaptive

def _bins(bins):
    """``(j, slices)`` for every output cell ``j`` of an adaptive pool with per-axis ``bins``."""
    for j in itertools.product(*(range(len(b)) for b in bins)):
        yield j, (Ellipsis,) + tuple(slice(*b[jj]) for b, jj in zip(bins, j))


@functools.lru_cache(maxsize=256)
def _uniform(bins):
    """The geometry of a plain pool when the bins of every axis have one size and one
    stride (an input size that is a multiple of the output's, or equal to it), else
    ``None``: such an adaptive pool is that pool, whose passes sweep taps, not bins."""
    kernel, stride = [], []
    for b in bins:
        sizes, steps = {e - s for s, e in b}, {q[0] - p[0] for p, q in zip(b, b[1:])}
        if len(sizes) > 1 or len(steps) > 1 or 0 in steps:  # bins that repeat a cell are no pool
            return None
        kernel.append(sizes.pop())
        stride.append(steps.pop() if steps else kernel[-1])
    nd = len(bins)
    return Geometry(tuple(b[-1][1] for b in bins), tuple(kernel), tuple(stride), (1,) * nd, ((0, 0),) * nd,
                    tuple(len(b) for b in bins))


def _tiles(geom):
    """Whether the windows of ``geom`` tile its input: kernel = stride, no padding, no
    remainder; the input is then ``(..., o_1, k_1, o_2, k_2, ...)``, one window per ``o``."""
    return all(k == s and o * k == n and lo == hi == 0
               for k, s, o, n, (lo, hi) in zip(geom.kernel, geom.stride, geom.out_size, geom.in_size, geom.pad))


def _as_tiles(a, geom):
    """``(..., *n) -> (..., *out, prod(kernel))`` for windows that tile the input (a copy)."""
    nd, lead = geom.nd, a.shape[:a.ndim - geom.nd]
    t = a.reshape(lead + tuple(v for o, k in zip(geom.out_size, geom.kernel) for v in (o, k)))
    order = tuple(range(len(lead))) + tuple(len(lead) + 2 * i for i in range(nd)) + tuple(
        len(lead) + 2 * i + 1 for i in range(nd))
    t = get_array_module(a).ascontiguousarray(t.transpose(order))
    return t.reshape(lead + geom.out_size + (math.prod(geom.kernel),))


def _from_tiles(t, geom, lead):
    """The inverse of :func:`_as_tiles`: ``(..., *out, prod(kernel)) -> (..., *n)``."""
    nd, nl = geom.nd, len(lead)
    t = t.reshape(lead + geom.out_size + geom.kernel)
    order = tuple(range(nl)) + tuple(v for i in range(nd) for v in (nl + i, nl + nd + i))
    return get_array_module(t).ascontiguousarray(t.transpose(order)).reshape(lead + geom.in_size)


def adaptive_avg_pool(x, bins):
    """Mean over each bin: ``Y[j] = mean(V[start_j : end_j])`` per axis (PyTorch's bins)."""
    geom = _uniform(bins)
    if geom and _tiles(geom):
        return _as_tiles(x, geom).mean(axis=-1)
    if geom:
        return avg_pool(x, geom)
    xp, nd = get_array_module(x), len(bins)
    y = xp.empty(x.shape[:-nd] + tuple(len(b) for b in bins), dtype=x.dtype)
    for j, sl in _bins(bins):
        y[(Ellipsis,) + j] = x[sl].mean(axis=tuple(range(-nd, 0)))
    return y


def adaptive_avg_pool_grad(gy, in_size, bins):
    geom = _uniform(bins)
    if geom and _tiles(geom):
        size = math.prod(geom.kernel)
        tiles = get_array_module(gy).broadcast_to((gy / size)[..., None], gy.shape + (size,))
        return _from_tiles(tiles, geom, gy.shape[:gy.ndim - geom.nd])
    if geom:
        return avg_pool_grad(gy, geom)
    xp, nd = get_array_module(gy), len(bins)
    gx = xp.zeros(gy.shape[:-nd] + tuple(in_size), dtype=gy.dtype)
    for j, sl in _bins(bins):
        window = gx[sl]
        window += (gy[(Ellipsis,) + j] / math.prod(window.shape[-nd:])).reshape(window.shape[:-nd] + (1,) * nd)
    return gx


def _window_argmax(win, nd):
    """Flat row-major index of the first maximum of each window ``(..., *w)`` (NaN is the max)."""
    return win.reshape(win.shape[:-nd] + (math.prod(win.shape[-nd:]),)).argmax(axis=-1)


def adaptive_max_pool(x, bins):
    """``(Y, I)``: the max over each bin and the flat index ``I`` into each input plane of its
    first maximum in row-major order (PyTorch's ``return_indices``)."""
    geom = _uniform(bins)
    if geom and _tiles(geom):
        t = _as_tiles(x, geom)
        return t.max(axis=-1), plane_index(t.argmax(axis=-1), geom)  # argmax: the first max (or NaN)
    if geom:
        return max_pool_argmax(x, geom, plane=True)
    xp, nd = get_array_module(x), len(bins)
    shape = x.shape[:-nd] + tuple(len(b) for b in bins)
    y = xp.empty(shape, dtype=x.dtype)
    idx = xp.empty(shape, dtype=np.int64)
    for j, sl in _bins(bins):
        win = x[sl]
        k = _window_argmax(win, nd)
        y[(Ellipsis,) + j] = win.max(axis=tuple(range(-nd, 0)))
        m = xp.unravel_index(k, win.shape[-nd:])
        flat = 0
        for a in range(nd):
            flat = flat * x.shape[x.ndim - nd + a] + sl[1 + a].start + m[a]
        idx[(Ellipsis,) + j] = flat
    return y, idx


def adaptive_max_pool_grad(gy, x, bins):
    """Adjoint of :func:`adaptive_max_pool`: ``gy[j]`` goes to the first maximum of bin ``j``."""
    geom = _uniform(bins)
    if geom and _tiles(geom):
        xp = get_array_module(gy)
        t = _as_tiles(x, geom)
        hit = xp.arange(t.shape[-1]) == t.argmax(axis=-1)[..., None]
        g = gy[..., None]
        return _from_tiles(_select(hit, g, all_finite(gy)), geom, gy.shape[:gy.ndim - geom.nd])
    if geom:
        return max_pool_grad(gy, x, geom)
    xp, nd = get_array_module(gy), len(bins)
    gx = xp.zeros(x.shape, dtype=gy.dtype)
    for j, sl in _bins(bins):
        win = x[sl]
        k = _window_argmax(win, nd)
        size = math.prod(win.shape[-nd:])
        one_hot = xp.arange(size) == k[..., None]
        window = gx[sl]
        window += xp.where(one_hot, gy[(Ellipsis,) + j][..., None], 0).reshape(win.shape)  # not 0 * NaN
    return gx
