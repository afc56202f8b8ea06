"""The cost model behind ``algorithm="auto"``: predicted forward time of each algorithm.

Each algorithm's time is a non-negative combination of counts of its work::

    t = sum_i theta[dtype][algorithm][i] * feature_i(shapes)

The features are exact counts for the implementations in :mod:`convlab.reference`
(multiply-adds, elements written or copied, library calls); the constants ``theta``
(seconds per unit) are fitted on the machine by ``benchmarks/fit_cost_model.py``, which
times every algorithm on a grid of shapes and rewrites :mod:`convlab._cost_constants`.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from . import _cost_constants
from .reference import direct as _direct
from .reference import fft as _fft
from .reference import im2col as _im2col
from .reference import windows as _windows
from .reference import winograd as _winograd

FEATURES = {
    # matrix products' multiply-adds, accumulator elements, matrix products, copied elements, 1
    "direct": ("macs", "accumulated", "calls", "copied", "call"),
    # multiply-adds, patch elements, block copies and products, copied elements, 1
    "im2col": ("macs", "patch", "calls", "copied", "call"),
    # transform work (planes * L * log2 L), spectral multiply-adds, elements moved, 1
    "fft": ("transform", "spectral_macs", "moved", "call"),
    # multiply-adds at the transform points, transform work, 1
    "winograd": ("macs", "transform", "call"),
    # multiply-adds of the 1-D passes, pass elements, passes' taps, kernel slices factored by SVD, 1
    "separable": ("macs", "elements", "taps", "slices", "call"),
}


def _grid_features(args, bytes_per_column, min_columns, exact=False):
    """Shared by the two algorithms on the flattened phase grid (:mod:`.reference.direct`)."""
    p = _direct.plan(args)
    g, kg = args.groups, args.out_channels // args.groups
    cg = args.in_channels // g
    count = p.columns  # computed columns, the grid's cropped cells included, or only the outputs'
    if exact and _im2col.exact_columns(args, p) is not None:
        count = p.samples * math.prod(args.geom.out_size)
    step = max(min_columns, _direct.CACHE_BYTES // max(1, bytes_per_column))
    chunks = -(-count // step)
    cols = p.blocks * count
    taps = len(p.layout.taps)
    copied = 0
    if p.samples > 1 or not _windows.trivial(args.geom):  # else the input is its own phase
        copied += args.batch * args.in_channels * p.layout.plane * p.layout.phases
    if p.samples > 1 or p.layout.grid != args.geom.out_size:  # else the output grid is the output
        copied += args.batch * args.out_channels * p.layout.plane
    return p, g * kg * cg * taps * cols, cols, chunks, taps, copied


def features(name, args):
    """The counts of ``FEATURES[name]`` for the forward pass of ``args`` (a ``ConvArgs``)."""
    geom = args.geom
    n, c, k, g = args.batch, args.in_channels, args.out_channels, args.groups
    cg = c // g
    if name == "direct":
        p, macs, cols, chunks, taps, copied = _grid_features(args, 8 * k, _direct.MIN_CHUNK)
        return (macs, k * taps * cols, taps * chunks * p.blocks * g, copied, 1.0)
    if name == "im2col":
        wide = max(_direct.MIN_CHUNK, _im2col.COPY_ELEMENTS // max(1, cg))
        p, macs, cols, chunks, taps, copied = _grid_features(args, 4 * c * math.prod(geom.kernel), wide, exact=True)
        return (macs, c * taps * cols, p.blocks * chunks * (taps + g), copied, 1.0)
    if name == "fft":
        size = _fft.fft_size(geom)
        cells = math.prod(size)
        freqs = cells // size[-1] * (size[-1] // 2 + 1)
        planes = n * c + n * k + k * cg
        return (planes * cells * math.log2(max(cells, 2)), n * k * cg * freqs, (n * c + n * k) * cells, 1.0)
    if name == "winograd":
        m = _winograd.tile_size(args)
        alpha, nd = m + 2, geom.nd
        tiles = math.prod(-(-o // m) for o in geom.out_size)
        points = alpha ** nd
        return (n * k * cg * points * tiles, (n * c + n * k) * tiles * points * alpha * nd, 1.0)
    if name == "separable":
        size, macs, elements = list(geom.padded_size), 0, 0
        for axis, kk in enumerate(geom.kernel):
            size[axis] = geom.out_size[axis]
            cells = n * k * cg * math.prod(size)
            macs += cells * kk
            elements += cells
        return (macs, elements, sum(geom.kernel), k * cg, 1.0)
    raise KeyError(name)


# Algorithms outside the model: the loop oracle is for checking and never chosen; a CUDA
# kernel is chosen whenever it can take the operands.
UNMODELLED = {"naive": math.inf, "cuda": 0.0}


@functools.lru_cache(maxsize=4096)
def predict(name, args, dtype):
    """Predicted seconds of ``name``'s forward pass in ``dtype`` (constants: :mod:`convlab._cost_constants`)."""
    if name in UNMODELLED:
        return UNMODELLED[name]
    theta = _cost_constants.CONSTANTS[np.dtype(dtype).name][name]
    return float(sum(t * f for t, f in zip(theta, features(name, args))))
