"""The cost model behind ``algorithm="auto"``: predicted forward time of each algorithm.

Each algorithm's time is a non-negative combination of a few counts of its work::

    t = sum_i theta[dtype][algorithm][i] * feature_i(shapes)

The features below are exact counts (multiply-adds, elements moved, transform work);
the constants ``theta`` (seconds per unit) are fitted on the machine by
``benchmarks/fit_cost_model.py``, which times every algorithm on a grid of shapes and
writes them to :mod:`convlab._cost_constants`.
"""
from __future__ import annotations

import math

import numpy as np

from . import _cost_constants
from .reference import fft as _fft
from .reference import winograd as _winograd

FEATURES = {
    "direct": ("macs", "tap_elements", "taps", "call"),
    "im2col": ("macs", "patch_elements", "out_elements", "call"),
    "fft": ("transform", "spectral_macs", "elements", "call"),
    "winograd": ("macs", "transform", "call"),
    "separable": ("pass_macs", "pass_elements", "call"),
}


def features(name, args):
    """The counts of ``FEATURES[name]`` for the forward pass of ``args`` (a ``ConvArgs``)."""
    geom = args.geom
    n, c, k, g = args.batch, args.in_channels, args.out_channels, args.groups
    cg = c // g
    taps, out = math.prod(geom.kernel), math.prod(geom.out_size)
    macs = n * k * cg * taps * out
    if name == "direct":
        return (macs, n * c * out * taps, taps * g, 1.0)
    if name == "im2col":
        return (macs, n * c * taps * out, n * k * out, 1.0)
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
        size, pass_macs, elements = list(geom.padded_size), 0, 0
        for axis, kk in enumerate(geom.kernel):
            size[axis] = geom.out_size[axis]
            cells = n * k * cg * math.prod(size)
            pass_macs += cells * kk
            elements += cells
        return (pass_macs, elements, 1.0)
    raise KeyError(name)


def predict(name, args, dtype):
    """Predicted seconds of ``name``'s forward pass in ``dtype`` on this machine."""
    theta = _cost_constants.CONSTANTS[np.dtype(dtype).name][name]
    return float(sum(t * f for t, f in zip(theta, features(name, args))))
