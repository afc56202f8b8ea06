"""Winograd's minimal filtering F(m, 3): ``m`` outputs of a 3-tap correlation from
``m + 2`` inputs with ``m + 2`` multiplications instead of ``3m`` (Lavin and Gray, 2016).

For one input tile ``d`` (``m + 2`` cells) and kernel ``g`` (3 taps)::

    y = A^T [ (G g) . (B^T d) ]                         (. is the elementwise product)

and in ``nd`` dimensions the transforms act along every axis, e.g. in 2-D
``Y = A^T [ (G g G^T) . (B^T d B) ] A``. With channels, the elementwise products at each
of the ``(m + 2)^nd`` transform points become a matrix product over channels::

    M[xi, g] = V[xi, g] @ U[xi, g]         V: (N*tiles x C_g) transformed input tiles
                                           U: (C_g x K_g) transformed kernels

The transforms are built from interpolation points (:func:`transforms`). F(2, 3) uses the
points 0, 1, -1, inf; F(4, 3) adds 2 and -2 and saves more multiplications (36 instead of
144 per 4x4 output tile in 2-D); F(6, 3) adds 1/2 and -1/2 (64 instead of 324 per 6x6
tile). Larger tiles hold larger constants, so their float32 error is larger, and their
Kronecker transforms cost more per output (measured in docs/algorithms.md).
:func:`tile_size` picks ``m``: 4 for 1-D and 2-D unless the planes give too few tiles, 2
for 3-D, where the error of the 216-point F(4x4x4, 3x3x3) transform grows too large; never
6, which was slower.

How it runs: the input is copied once into a channel-last layout ``(N, *n, C)``, where each
cell of a tile is a contiguous run of ``C`` values; chunks of tiles that stay in cache are
gathered into ``(points, tiles, C)``, transformed on all axes at once by one product with
the Kronecker matrix ``B^T (x) B^T``, multiplied by ``U`` (one product per point), and
transformed back by ``A^T (x) A^T`` into a channel-last output, copied to ``(N, K, *out)``
at the end. Every step is a BLAS product or a copy; the chunks run on every core.

Only 3-tap kernels on every axis with stride 1 and dilation 1 are served. The transforms
mix a tile's inputs, so a NaN or infinity would reach every output of its tile: inputs that
are not finite go to the direct algorithm, where they stay inside their windows. The input
gradient is a Winograd correlation of the fully padded output gradient with the flipped
kernel, input and output channels exchanged. The weight gradient is the direct sums
(see :meth:`Tiles.grad_weight`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .. import _parallel
from .._backend import as_strided, get_array_module, workspace_limit
from .._params import conv_shape_args
from .._protocol import Prepared, all_finite, dtype_of, ready
from . import direct
from .groups import grouped_weight, matmul
from .layout import channel_first, channel_last
from .phases import most, spans

CACHE_BYTES = 2 << 20
MIN_TILES = 128

# The finite interpolation points of F(m, 3), m + 1 of them; the point at infinity is the
# (m + 2)-th. Halves rather than +-3 keep the constants of F(6, 3) small.
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, 2, -2), 6: (0, 1, -1, 2, -2, Fraction(1, 2), Fraction(-1, 2))}


def _monic(roots):
    """Coefficients of ``prod_r (x - r)``, lowest power first, exact."""
    c = [Fraction(1)]
    for r in roots:
        c = [below - r * same for same, below in zip(c + [0], [0] + c)]  # x c(x) - r c(x)
    return c


def transforms(points):
    """``(B^T, G, A^T)`` of F(m, 3) from its ``m + 1`` finite ``points`` p_i and the point at
    infinity (Cook and Toom; Lavin and Gray): ``(m+2) x (m+2)``, ``(m+2) x 3``, ``m x (m+2)``.

    The full convolution ``c = a * g`` of ``m`` values ``a`` with 3 taps ``g`` is the product of
    polynomials ``c(x) = a(x) g(x)`` of degree ``m + 1``, fixed by its values at the finite points
    and its leading coefficient (its "value at infinity")::

        c = W^-1 [ (E_3 g) . (E_m a) ],   E_q rows (1, p_i, ..., p_i^(q-1)) and (0, ..., 0, 1),  W = E_(m+2)

    The correlation ``y_i = sum_j g_j d_(i+j)`` is the transpose of this map in ``a``::

        y = E_m^T [ (E_3 g) . (W^-T d) ]

    Row ``i`` of ``W^-T`` holds the coefficients of the Lagrange polynomial
    ``prod_(j != i) (x - p_j) / N_i``, ``N_i = prod_(j != i) (p_i - p_j)``, and its last row those
    of ``prod_j (x - p_j)``. Each point's row of ``B^T``, row of ``G`` and column of ``A^T`` may be
    scaled by any three factors whose product is 1; the scaling chosen here:

        B^T row i:     coefficients of prod_(j != i) (x - p_j)     (infinity: of prod_j (x - p_j))
        G row i:       (1, p_i, p_i^2) / N_i                      (infinity: (0, 0, 1))
        A^T column i:  (1, p_i, ..., p_i^(m-1))                   (infinity: (0, ..., 0, 1))

    ``B^T`` monic and ``A^T`` the powers of the points hold only dyadic fractions for points
    such as 0, +-1, +-2, +-1/2, which binary floating point stores exactly, so every rounded
    constant (``1/N_i``: 1/6, 2/9, 1/90, 32/45, ...) is in ``G``, which is applied to the kernel
    only. Moving a power of two between a point's rows would change no rounding."""
    pts = [Fraction(p) for p in points]
    if len(pts) < 2 or len(set(pts)) < len(pts):
        raise ValueError(f"points must be at least 2 distinct finite numbers, got {tuple(points)}")
    m = len(pts) - 1
    bt, g, at = [], [], [[Fraction(0)] * (m + 2) for _ in range(m)]
    for i, p in enumerate(pts):
        others = pts[:i] + pts[i + 1:]
        n_i = math.prod((p - q for q in others), start=Fraction(1))
        bt.append(_monic(others) + [Fraction(0)])
        g.append([p ** k / n_i for k in range(3)])
        for k in range(m):
            at[k][i] = p ** k
    bt.append(_monic(pts))
    g.append([Fraction(0), Fraction(0), Fraction(1)])
    at[-1][-1] = Fraction(1)
    return tuple(np.array(t, dtype=float) for t in (bt, g, at))


# (B^T, G, A^T) for F(m, 3).
TRANSFORMS = {m: transforms(p) for m, p in POINTS.items()}


def supports(args):
    """Why Winograd cannot compute this convolution, or ``None`` when it can."""
    geom = args.geom
    if any(k != 3 for k in geom.kernel):
        return (f"algorithm='winograd' implements F(m, 3) only: it needs a 3-tap kernel on every axis, "
                f"got kernel {geom.kernel}")
    if any(s != 1 for s in geom.stride):
        return f"algorithm='winograd' needs stride 1 (its output tiles are contiguous), got stride {geom.stride}"
    if any(d != 1 for d in geom.dilation):
        return f"algorithm='winograd' needs dilation 1, got dilation {geom.dilation}"
    return None


def tile_size(args):
    """Outputs per tile and axis: 4 (F(4, 3)) in 1-D and 2-D when that gives every worker
    ``MIN_TILES`` tiles, else 2 (F(2, 3)); 2 in 3-D.

    Each point's product reads the whole transformed kernel (``points x K x C_g``) for a
    chunk of tiles; with fewer tiles than that (small planes: 32 F(4, 3) tiles at N = 8 on
    7x7) it is read for little work, and F(2, 3)'s four times more tiles and 16/36 of the
    transformed kernel are faster (docs/algorithms.md). The rule counts the machine's workers,
    so a layer may take a different tile (and round differently, within the documented
    bounds) on a machine with more cores. F(6, 3) is reachable by ``tile=6``
    only: it measured slower than F(4, 3) on every ResNet-50 3x3 layer."""
    if args.nd > 2:
        return 2
    tiles = args.batch * math.prod(_tiles_per_axis(args, 4))
    return 4 if tiles >= MIN_TILES * _parallel.workers() else 2


@functools.lru_cache(maxsize=None)
def _kron(m, which, nd):
    """Transform ``which`` of F(m, 3) (0: B^T, 1: G, 2: A^T) on all ``nd`` axes of a tile at
    once: the Kronecker product of ``nd`` copies, ``(p^nd x q^nd)``, cells in row-major order."""
    mat = np.ones((1, 1))
    for _ in range(nd):
        mat = np.kron(mat, TRANSFORMS[m][which])
    return mat


def _tiles_per_axis(args, m):
    return tuple(-(-o // m) for o in args.geom.out_size)


def _sample_blocks(args, m, itemsize):
    """Samples ``(n0, n1)`` whose channel-last copies (input and output on whole tiles) take
    at most half the workspace limit (one sample at least); the other half is the chunks'."""
    tiles = _tiles_per_axis(args, m)
    per_sample = (math.prod(t * m + 2 for t in tiles) * args.in_channels
                  + math.prod(t * m for t in tiles) * args.out_channels) * itemsize
    return spans(args.batch, most(0, per_sample, workspace_limit() // 2, args.batch))


def _plan(args, m, itemsize, n):
    """Chunks ``(n0, n1, r0, r1, k0, k1)`` of ``n`` samples: samples ``n0:n1``, tile rows
    ``r0:r1`` of the first spatial axis, output channels ``k0:k1``. A chunk's transformed
    tiles stay in cache, yet its products have about ``MIN_TILES`` columns or more (each
    reads the transformed kernel once; the cut is evened out, which may take a few below);
    there are chunks for every worker, cut as evenly as their count allows (the last may be
    smaller), and all workers' chunks together take at most half the workspace limit."""
    nd, workers = args.nd, _parallel.workers()
    tiles = _tiles_per_axis(args, m)
    points = (m + 2) ** nd
    per_tile = (2 * points * args.in_channels + (points + m ** nd) * args.out_channels) * itemsize
    row, rows = math.prod(tiles[1:]), tiles[0]  # tiles in one tile row; tile rows of a sample
    want = max(MIN_TILES, CACHE_BYTES // per_tile)
    want = min(want, -(-n * row * rows // workers))
    want = max(1, min(want, workspace_limit() // 2 // workers // per_tile))
    # Steps no larger than ``want`` that cut as evenly as the count of pieces allows: the
    # chunks are dealt round-robin, and uneven ones (tile rows 9 + 5 of 14) would leave one
    # worker waiting.
    if want >= row * rows:  # whole samples
        step = _even(n, want // (row * rows))
        chunks = [(n0, min(n, n0 + step), 0, rows) for n0 in range(0, n, step)]
    else:
        step = _even(rows, max(1, want // row))  # tile rows of one sample
        chunks = [(n0, n0 + 1, r0, min(rows, r0 + step)) for n0 in range(n) for r0 in range(0, rows, step)]
    kg = args.out_channels // args.groups
    if n * row * rows >= workers * MIN_TILES or args.groups > 1 or kg < 2 * workers:
        return [c + (0, kg) for c in chunks]
    # Few tiles (a small plane): the chunks split the output channels instead, so that each
    # worker reads only its part of the transformed kernel (36 x 512 x 512 at 512@7).
    whole = [(0, n, 0, rows)]
    kb = -(-kg // workers)
    return [c + (k0, min(kg, k0 + kb)) for c in whole for k0 in range(0, kg, kb)]


def _even(total, step):
    """The smallest step that cuts ``total`` into as many pieces as ``step`` does."""
    return -(-total // -(-total // step))


def _gather(at, m, span, tiles, chunk):
    """The tiles of ``chunk`` from a channel-last ``at (N, *sp, C)``: ``(span^nd, cols, C)``,
    tile ``t`` holding cells ``m*t + q`` (overlapping when ``span > m``), columns ordered
    (sample, tile...). One copy: the layout of the products."""
    xp = get_array_module(at)
    nd = len(tiles)
    n0, n1, r0, r1 = chunk
    base = at[n0:n1, r0 * m:]
    sp = base.strides[1:1 + nd]
    view = as_strided(base, (span,) * nd + (n1 - n0, r1 - r0) + tiles[1:] + base.shape[-1:],
                      sp + base.strides[:1] + tuple(s * m for s in sp) + base.strides[-1:])
    d = xp.ascontiguousarray(view)
    return d.reshape((span ** nd, math.prod(d.shape[nd:-1]), d.shape[-1]))


def _flat(a):
    """``(points, ...) -> (points, rest)``: the operand of a transform's product."""
    return a.reshape(a.shape[0], math.prod(a.shape[1:]))


def _by_group(a, groups):
    """``(points, cols, G*X) -> (points, G, cols, X)`` (a view)."""
    return a.reshape(a.shape[:2] + (groups, a.shape[2] // groups)).transpose(0, 2, 1, 3)


def _point_weights(w, args, m):
    """``U = G g G^T`` at every point: ``(K, C_g, 3...) -> (points, G, C_g, K_g)`` (a view).
    One product with the Kronecker matrix, its columns split over the workers."""
    xp = get_array_module(w)
    gk = xp.asarray(_kron(m, 1, args.nd), dtype=w.dtype)
    w9 = w.reshape(w.shape[0] * w.shape[1], math.prod(w.shape[2:])).T  # (3^nd, K*C_g)
    u = xp.empty((gk.shape[0], w9.shape[1]), dtype=w.dtype)

    def run(group):
        for c0, c1 in group:
            xp.matmul(gk, w9[:, c0:c1], out=u[:, c0:c1])

    _parallel.map_groups(run, spans(w9.shape[1], max(1, -(-w9.shape[1] // _parallel.workers()))), xp, blas=True)
    return u.reshape((gk.shape[0], args.groups, args.out_channels // args.groups, w.shape[1])).swapaxes(-1, -2)


def _correlate(x, w, args, m, lo=None, size=None):
    """The stride-1 correlation of ``x`` with 3-tap kernels ``w``, tile by tile::

        Y = A^T [ U . (B^T d B) ] A,    U = G g G^T

    summed over input channels as one product per transform point: the outputs from ``lo``
    (default 0), ``size`` of them (default all) per axis. Each transform acts on all axes
    of a tile at once (one product with a Kronecker matrix), on chunks of tiles that stay in
    cache, one chunk per thread; the tiles are read from and written to channel-last copies
    of a block of samples."""
    xp = get_array_module(x)
    geom, nd, groups = args.geom, args.nd, args.groups
    lo, size = (0,) * nd if lo is None else lo, geom.out_size if size is None else size
    tiles = _tiles_per_axis(args, m)
    points = (m + 2) ** nd
    ut = _point_weights(w, args, m)
    bk, ak = (xp.asarray(_kron(m, which, nd), dtype=x.dtype) for which in (0, 2))
    y = xp.empty((args.batch, args.out_channels) + tuple(size), dtype=x.dtype)
    for b0, b1 in _sample_blocks(args, m, x.itemsize):
        xt = channel_last(x[b0:b1], tuple(p for p, _ in geom.pad), tuple(t * m + 2 for t in tiles))
        yt = xp.empty((b1 - b0,) + tuple(t * m for t in tiles) + (args.out_channels,), dtype=x.dtype)
        # yt as (*m, N, *tiles, G, K_g): output cell i of tile t on each axis.
        blocked = yt.reshape((b1 - b0,) + tuple(v for t in tiles for v in (t, m)) + yt.shape[-1:])
        blocked = blocked.transpose(tuple(range(2, 2 * nd + 1, 2)) + (0,) + tuple(range(1, 2 * nd, 2)) + (2 * nd + 1,))
        blocked = blocked.reshape(blocked.shape[:-1] + (groups, args.out_channels // groups))  # a view

        def run(group):
            for n0, n1, r0, r1, k0, k1 in group:
                d = _gather(xt, m, m + 2, tiles, (n0, n1, r0, r1))  # (points, cols, C)
                v = xp.matmul(bk, _flat(d)).reshape(d.shape)
                mm = matmul(_by_group(v, groups), ut[..., k0:k1])  # (points, G, cols, k1 - k0)
                mm = xp.ascontiguousarray(mm.transpose(0, 2, 1, 3))  # (points, cols, G, k1 - k0)
                dst = blocked[(slice(None),) * nd + (slice(n0, n1), slice(r0, r1)) + (Ellipsis, slice(k0, k1))]
                dst[...] = xp.matmul(ak, _flat(mm)).reshape(dst.shape)

        _parallel.map_groups(run, _plan(args, m, x.itemsize, b1 - b0), xp, blas=True)
        del xt
        channel_first(yt, lo, size, out=y[b0:b1])
    return y


@dataclass(frozen=True)
class Tiles:
    """Winograd's passes with ``m`` outputs per tile and axis."""

    m: int

    def forward(self, x, w, args):
        return _correlate(x, w, args, self.m)

    def grad_input(self, gy, w, args):
        """``dL/dV``: ``gy`` correlated with the flipped kernel, ``K`` and ``C`` exchanged. Fully
        padded (by 2), this is the padded input's gradient; padded by ``2 - lo`` and ``2 - hi``
        instead, only the input's cells are computed (a geometry padding more than 2 cuts the
        rest off)."""
        nd, groups = args.nd, args.groups
        wg = grouped_weight(w, groups)  # (G, K_g, C_g, 3...)
        wt = wg.swapaxes(1, 2)[(Ellipsis,) + (slice(None, None, -1),) * nd]
        wt = wt.reshape((args.in_channels, args.out_channels // groups) + args.geom.kernel)
        cut = tuple((min(lo, 2), min(hi, 2)) for lo, hi in args.geom.pad)
        inner = conv_shape_args(tuple(gy.shape), tuple(wt.shape), 1, tuple((2 - a, 2 - b) for a, b in cut), 1,
                                groups, nd)
        return _correlate(gy, wt, inner, self.m, tuple(lo - a for (lo, _), (a, _) in zip(args.geom.pad, cut)),
                          args.geom.in_size)

    def grad_weight(self, gy, x, args):
        """``dL/dK``: the direct sums (:mod:`convlab.reference.direct`). Its Winograd form,
        ``G^T [ sum over tiles of (A dy A^T) . (B^T d B) ] G``, sums rank-``tiles`` products
        into a ``points x K x C_g`` accumulator, and lost to the direct sums on every ResNet-50
        3x3 layer measured (docs/algorithms.md)."""
        return direct.grad_weight(gy, x, args)


# ----------------------------------------------------------------------------- protocol

def prepare(x, w, args, tile=None):
    """Winograd with ``tile`` outputs per tile (default :func:`tile_size`), or direct sums for
    non-finite operands: a tile's transform would spread NaN to the whole tile."""
    m = tile_size(args) if tile is None else tile
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m not in TRANSFORMS:
        raise ValueError(f"tile must be one of {tuple(TRANSFORMS)} (F(m, 3) with m outputs per tile and axis), "
                         f"got {tile!r}")
    reason = supports(args)
    if reason:
        return reason
    if not all_finite(*(a for a in (x, w) if a is not None)):
        return direct.prepare(x, w, args, note="winograd hands non-finite operands to direct")
    return Prepared("winograd", args, dtype_of(x, w, args), Tiles(m))


def forward(x, w, args, tile=None):
    return ready(prepare(x, w, args, tile)).forward(x, w)


def grad_input(gy, w, args, tile=None):
    return ready(prepare(gy, w, args, tile)).grad_input(gy, w)


def grad_weight(gy, x, args):
    return ready(prepare(gy, None, args)).grad_weight(gy, x)
