"""The cost model behind ``algorithm="auto"``: predicted forward time of each algorithm.

Each algorithm's time is a non-negative combination of counts of its work::

    t = sum_i theta[dtype][algorithm][i] * feature_i(shapes)

The features are exact counts for the implementations in :mod:`convlab.reference`
(multiply-adds, elements written or copied, library calls): for direct and im2col they are
read from the same :class:`~convlab.reference.phases.Plan` that runs the chunks. The
constants ``theta`` (seconds per unit) are fitted by timing every algorithm on a grid of
shapes (:mod:`convlab._tune`): ``convlab tune`` fits them on the user's machine and saves
them at :func:`user_path`, where :func:`constants` finds them; otherwise the package's
own, fitted on the machine named in :mod:`convlab._cost_constants`, are used.
"""
from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import numpy as np

from . import _cost_constants
from ._backend import workspace_limit
from .reference import direct as _direct
from .reference import fft as _fft
from .reference import im2col as _im2col
from .reference import patches as _patches
from .reference import small as _small
from .reference import winograd as _winograd

FEATURES = {
    # matrix products' multiply-adds, accumulator elements, matrix products, copied elements, 1
    "direct": ("macs", "accumulated", "calls", "copied", "call"),
    # multiply-adds, patch elements, block copies and products, copied elements, 1
    "im2col": ("macs", "patch", "calls", "copied", "call"),
    # transform work (planes * L * log2 L), spectral multiply-adds, elements moved, 1
    "fft": ("transform", "spectral_macs", "moved", "call"),
    # multiply-adds at the transform points, the transforms' multiply-adds, elements copied, 1
    "winograd": ("macs", "transform", "copied", "call"),
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
    handler = _small.handler(args) if name in ("direct", "im2col") else None
    if handler is not None:  # both run the same batched product (1x1 kernels, small patches)
        macs, elements, calls, copied = handler.counts(args)
        return (macs, elements, calls, copied, 1.0)
    if name == "im2col" and _patches.serves(args):  # patches from a channel-last copy
        return _patches.counts(args, itemsize) + (1.0,)
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
        nd = geom.nd
        tiles = n * math.prod(-(-o // m) for o in geom.out_size)
        points = (m + 2) ** nd
        transform = tiles * points * (points * c + m ** nd * k) + points * 3 ** nd * k * cg
        copied = n * c * math.prod(o + 2 for o in geom.out_size) + n * k * math.prod(geom.out_size) + tiles * points * c
        return (tiles * points * k * cg, transform, copied, 1.0)
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
    """Predicted seconds of ``name``'s forward pass in ``dtype``, with the constants of :func:`constants`."""
    return _predict(name, args, np.dtype(dtype), workspace_limit())  # the plans depend on the limit


@functools.lru_cache(maxsize=4096)
def _predict(name, args, dtype, limit):
    if name in UNMODELLED:
        return UNMODELLED[name]
    theta = constants()[0][dtype.name][name]
    return float(sum(t * f for t, f in zip(theta, features(name, args, dtype))))


# ----------------------------------------------------------------------------- constants

def user_path() -> Path:
    """Where ``convlab tune`` saves this machine's constants, and where ``"auto"`` looks for
    them: ``$CONVLAB_COST_CONSTANTS``, else ``$XDG_CACHE_HOME/convlab/cost_constants.json``
    (``~/.cache/...``)."""
    if os.environ.get("CONVLAB_COST_CONSTANTS"):
        return Path(os.environ["CONVLAB_COST_CONSTANTS"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "convlab" / "cost_constants.json"


_loaded = None
_loads = 0


def version() -> int:
    """Counts the loads of :func:`constants`: a new number means new constants (for caches)."""
    constants()
    return _loads


def constants():
    """``(constants, source)``: this machine's fit when ``convlab tune`` saved a complete one
    at :func:`user_path`, else the package's (:mod:`convlab._cost_constants`); ``source``
    says which, and the machine and date of the fit."""
    global _loaded, _loads
    if _loaded is None:
        _loads += 1
        _loaded = (_cost_constants.CONSTANTS,
                   f"convlab/_cost_constants.py (shipped; fitted on {_cost_constants.FITTED_ON})")
        path = user_path()
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            return _loaded
        if _complete(saved.get("constants") if isinstance(saved, dict) else None):
            _loaded = (saved["constants"], f"{path} (convlab tune; fitted on {saved.get('fitted_on')})")
    return _loaded


def _complete(table):
    """Whether ``table`` holds non-negative constants of every feature, dtype and algorithm."""
    try:
        return all(len(table[d][name]) == len(names) and all(float(v) >= 0 for v in table[d][name])
                   for d in ("float32", "float64") for name, names in FEATURES.items())
    except (KeyError, TypeError, ValueError):
        return False


def save(table, fitted_on, path=None) -> Path:
    """Save fitted constants where :func:`constants` finds them, and use them from now on."""
    global _loaded
    if not _complete(table):
        raise ValueError("the constants must cover every algorithm of convlab._cost.FEATURES in float32 and float64")
    path = Path(path) if path else user_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"fitted_on": fitted_on, "constants": table}, indent=1))
    _loaded = None
    _predict.cache_clear()
    return path
