"""Winograd's minimal filtering F(m, 3): ``m`` outputs of a 3-tap correlation from
``m + 2`` inputs with ``m + 2`` multiplications instead of ``3m`` (Lavin and Gray, 2016).

For one input tile ``d`` (``m + 2`` cells) and kernel ``g`` (3 taps)::

    y = A^T [ (G g) . (B^T d) ]                         (. is the elementwise product)

and in ``nd`` dimensions the transforms act along every axis, e.g. in 2-D
``Y = A^T [ (G g G^T) . (B^T d B) ] A``. With channels, the elementwise products at each
of the ``(m + 2)^nd`` transform points become a matrix product over channels::

    M[xi, g] = U[xi, g] @ V[xi, g]         U: (K_g x C_g) transformed kernels,
                                           V: (C_g x N*tiles) transformed input tiles

F(2, 3) uses the interpolation points 0, 1, -1, inf; F(4, 3) adds 2 and -2 and saves more
multiplications (36 instead of 144 per 4x4 output tile in 2-D) but its transforms hold
larger constants, so its float32 error is larger (measured in docs/algorithms.md).
:func:`tile_size` picks ``m``: 4 for 1-D and 2-D, 2 for 3-D, where the error of the
216-point F(4x4x4, 3x3x3) transform grows too large.

Only 3-tap kernels on every axis with stride 1 and dilation 1 are served. The transforms
mix a tile's inputs, so a NaN or infinity would reach every output of its tile: inputs that
are not finite go to the direct algorithm, where they stay inside their windows. The input
gradient is a Winograd correlation of the fully padded output gradient with the flipped
kernel, input and output channels exchanged. The weight gradient uses the direct sum
over taps (:mod:`convlab.reference.direct`): it is a correlation of the input with the
output gradient, whose "kernel" is as large as the output, not 3 taps.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .._backend import get_array_module, workspace_limit
from .._params import Geometry, conv_shape_args
from .._protocol import Prepared, all_finite, dtype_of, ready
from . import direct
from .groups import grouped_weight, matmul, split_groups
from .windows import pad, unpad, windows

CACHE_BYTES = 4 << 20
MIN_TILES = 256

# (B^T, G, A^T) for F(m, 3).
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0],
                  [0, 1, 1, 0],
                  [0, -1, 1, 0],
                  [0, 1, 0, -1]], dtype=float),
        np.array([[1, 0, 0],
                  [1 / 2, 1 / 2, 1 / 2],
                  [1 / 2, -1 / 2, 1 / 2],
                  [0, 0, 1]], dtype=float),
        np.array([[1, 1, 1, 0],
                  [0, 1, -1, -1]], dtype=float)),
    4: (np.array([[4, 0, -5, 0, 1, 0],
                  [0, -4, -4, 1, 1, 0],
                  [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0],
                  [0, 2, -1, -2, 1, 0],
                  [0, 4, 0, -5, 0, 1]], dtype=float),
        np.array([[1 / 4, 0, 0],
                  [-1 / 6, -1 / 6, -1 / 6],
                  [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6],
                  [1 / 24, -1 / 12, 1 / 6],
                  [0, 0, 1]], dtype=float),
        np.array([[1, 1, 1, 1, 1, 0],
                  [0, 1, -1, 2, -2, 0],
                  [0, 1, 1, 4, 4, 0],
                  [0, 1, -1, 8, -8, 1]], dtype=float)),
}


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
    """Outputs per tile and axis: 4 (F(4, 3)) in 1-D and 2-D, 2 (F(2, 3)) in 3-D."""
    return 4 if args.nd <= 2 else 2


def _transform(mat, a, nd):
    """Apply ``mat (p x q)`` along each of the leading ``nd`` axes of ``a`` (``q`` cells each)."""
    xp = get_array_module(a)
    for axis in range(nd):
        shape = a.shape
        lead, rest = math.prod(shape[:axis]), math.prod(shape[axis + 1:])
        a = xp.matmul(mat, a.reshape(lead, shape[axis], rest))
        a = a.reshape(shape[:axis] + (mat.shape[0],) + shape[axis + 1:])
    return a


def _tiles(xext, m, tiles):
    """Overlapping ``(m + 2)``-cell tiles every ``m`` cells: ``(..., *tiles, *(m + 2))`` (a view)."""
    nd = len(tiles)
    geom = _tile_geometry(tuple(xext.shape[-nd:]), m, tiles)
    return windows(xext, geom)


def _tile_geometry(size, m, tiles):
    nd = len(tiles)
    return Geometry(size, (m + 2,) * nd, (m,) * nd, (1,) * nd, ((0, 0),) * nd, tuple(tiles))


def _correlate(x, w, args, m):
    """The stride-1 correlation of ``x`` with 3-tap kernels ``w``, tile by tile."""
    xp = get_array_module(x)
    geom, nd, groups = args.geom, args.nd, args.groups
    bt, gm, at = (xp.asarray(t, dtype=x.dtype) for t in TRANSFORMS[m])
    alpha = m + 2
    kg, cg = args.out_channels // groups, args.in_channels // groups
    tiles = tuple(-(-o // m) for o in geom.out_size)
    # Pad once: the geometry's padding plus zeros up to whole tiles at the high end.
    ext = tuple(t * m + 2 for t in tiles)
    xext = pad(x, dataclasses.replace(geom, pad=tuple((lo, e - n - lo) for e, n, (lo, _)
                                                     in zip(ext, geom.in_size, geom.pad))))
    # U: (alpha^nd, G, K_g, C_g) transformed kernels.
    wg = grouped_weight(w, groups)
    u = _transform(gm, wg.transpose(tuple(range(3, 3 + nd)) + (0, 1, 2)), nd).reshape(alpha ** nd, groups, kg, cg)
    y = xp.empty((args.batch, groups, kg) + tuple(t * m for t in tiles), dtype=x.dtype)
    # Samples per chunk: the transformed tiles stay in cache (and under the workspace
    # limit), yet each product has at least MIN_TILES columns.
    per_sample = max(1, (alpha ** nd) * (args.in_channels + args.out_channels) * math.prod(tiles) * x.itemsize)
    step = max(-(-MIN_TILES // math.prod(tiles)), CACHE_BYTES // per_sample)
    step = max(1, min(step, workspace_limit() // per_sample))
    for n0 in range(0, args.batch, step):
        xs = split_groups(xext[n0:n0 + step], groups)  # (nb, G, C_g, *ext)
        nb = xs.shape[0]
        d = _tiles(xs, m, tiles)  # (nb, G, C_g, *tiles, *alpha)
        order = tuple(range(3 + nd, 3 + 2 * nd)) + (1, 2, 0) + tuple(range(3, 3 + nd))
        v = _transform(bt, xp.ascontiguousarray(d.transpose(order)), nd)  # (*alpha, G, C_g, nb, *tiles)
        mm = matmul(u, v.reshape(alpha ** nd, groups, cg, nb * math.prod(tiles)))  # (alpha^nd, G, K_g, nb*T)
        z = _transform(at, mm.reshape((alpha,) * nd + (groups, kg, nb) + tiles), nd)  # (*m, G, K_g, nb, *tiles)
        order = (nd + 2, nd, nd + 1) + tuple(i for a in range(nd) for i in (nd + 3 + a, a))
        y[n0:n0 + nb] = z.transpose(order).reshape((nb, groups, kg) + tuple(t * m for t in tiles))
    crop = (Ellipsis,) + tuple(slice(0, o) for o in geom.out_size)
    return xp.ascontiguousarray(y[crop]).reshape((args.batch, args.out_channels) + geom.out_size)


@dataclass(frozen=True)
class Tiles:
    """Winograd's passes with ``m`` outputs per tile and axis."""

    m: int

    def forward(self, x, w, args):
        return _correlate(x, w, args, self.m)

    def grad_input(self, gy, w, args):
        """``dL/dV``: the fully padded ``gy`` correlated with the flipped kernel, ``K`` and ``C`` exchanged."""
        nd, groups = args.nd, args.groups
        wg = grouped_weight(w, groups)  # (G, K_g, C_g, 3...)
        wt = wg.swapaxes(1, 2)[(Ellipsis,) + (slice(None, None, -1),) * nd]
        wt = wt.reshape((args.in_channels, args.out_channels // groups) + args.geom.kernel)
        full = conv_shape_args(tuple(gy.shape), tuple(wt.shape), 1, ((2, 2),) * nd, 1, groups, nd)
        gpad = _correlate(gy, wt, full, self.m)  # (N, C, *padded)
        xp = get_array_module(gy)
        return xp.ascontiguousarray(unpad(gpad, args.geom))

    def grad_weight(self, gy, x, args):
        return direct.grad_weight(gy, x, args)


# ----------------------------------------------------------------------------- protocol

def prepare(x, w, args, tile=None):
    """Winograd with ``tile`` outputs per tile (default :func:`tile_size`), or direct sums for
    non-finite operands: a tile's transform would spread NaN to the whole tile."""
    m = tile_size(args) if tile is None else tile
    if m not in TRANSFORMS:
        raise ValueError(f"tile must be one of {tuple(TRANSFORMS)} (F(2, 3) or F(4, 3)), got {tile!r}")
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
