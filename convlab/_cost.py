"""The cost model behind ``algorithm="auto"``: predicted forward time of each algorithm.

Each algorithm's time is a non-negative combination of counts of its work::

    t = sum_i theta[dtype][algorithm][i] * feature_i(shapes)

The features are exact counts for the implementations in :mod:`convlab.reference`
(multiply-adds, elements written or copied, library calls): for direct and im2col they are
read from the same :class:`~convlab.reference.phases.Plan` that runs the chunks; the constants ``theta``
(seconds per unit) are fitted on the machine by ``benchmarks/fit_cost_model.py``, which
times every algorithm on a grid of shapes and rewrites :mod:`convlab._cost_constants`.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from . import _cost_constants
from ._backend import workspace_limit
from .reference import direct as _direct
from .reference import fft as _fft
from .reference import im2col as _im2col
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


def _grid_features(p):
    """Counts of a pass on the phase grid, read from its :class:`.reference.phases.Plan`:
    multiply-adds, computed columns, taps, copied elements."""
    a = p.args
    taps = len(p.layout.taps)
    macs = a.out_channels * (a.in_channels // a.groups) * taps * p.computed
    return macs, p.computed, taps, p.copied_in + p.copied_out


def features(name, args, dtype):
    """The counts of ``FEATURES[name]`` for the forward pass of ``args`` (a ``ConvArgs``) in ``dtype``."""
    geom = args.geom
    n, c, k, g = args.batch, args.in_channels, args.out_channels, args.groups
    cg = c // g
    itemsize = np.dtype(dtype).itemsize
    if name == "direct":
        p = _direct.forward_plan(args, itemsize)
        macs, cols, taps, copied = _grid_features(p)
        return (macs, k * taps * cols, taps * p.chunk_count * g, copied, 1.0)
    if name == "im2col":
        p = _im2col.column_plan(args, itemsize)[0]
        macs, cols, taps, copied = _grid_features(p)
        return (macs, c * taps * cols, p.chunk_count * (taps + g), copied, 1.0)
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


def predict(name, args, dtype):
    """Predicted seconds of ``name``'s forward pass in ``dtype`` (constants: :mod:`convlab._cost_constants`)."""
    return _predict(name, args, np.dtype(dtype), workspace_limit())  # the plans depend on the limit


@functools.lru_cache(maxsize=4096)
def _predict(name, args, dtype, limit):
    if name in UNMODELLED:
        return UNMODELLED[name]
    theta = _cost_constants.CONSTANTS[dtype.name][name]
    return float(sum(t * f for t, f in zip(theta, features(name, args, dtype))))
