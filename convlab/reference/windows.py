"""The one windowing primitive: sliding windows over the padded input, and its adjoint.

Convolution, locally connected and tiled layers and every pooling op read their input
through :func:`windows` (all windows at once, a strided view) or :func:`tap_view` (one
kernel tap at every output position); their input gradients scatter back through
:func:`add_tap` and :func:`unpad`. Shapes, with ``nd`` spatial axes and the sizes held
by a :class:`convlab._params.Geometry`::

    pad(x)          (..., *n)              -> (..., *(n + lo + hi))
    windows(xpad)   (..., *(n + lo + hi))  -> (..., *out, *k)       a view, no copy
    tap_view(xpad)  (..., *(n + lo + hi))  -> (..., *out)           for one tap m

Window ``j`` at tap ``m`` reads padded cell ``j*s + m*d`` on each axis (:func:`cells`).
A pool's ``ceil_mode`` may let the last window run past the high padding; :func:`pad`
then adds those ``geom.overhang`` cells too, so every window stays inside the array.
The same windows read through the stride phases of the padded input are :mod:`.phases`.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np

from .._backend import as_strided, get_array_module


def pad(x, geom, value=0.0):
    """Pad the trailing ``geom.nd`` axes of ``x`` by ``geom.pad`` (and any ``geom.overhang``
    at the high end) with ``value``: shape ``(..., *geom.padded_size)``."""
    if geom.padded_size == geom.in_size:
        return x
    xp = get_array_module(x)  # not xp.pad: its per-call cost is many times a copy of a small input
    out = xp.full(x.shape[:x.ndim - geom.nd] + geom.padded_size, value, dtype=x.dtype)
    out[_inside(geom)] = x
    return out


@functools.lru_cache(maxsize=1024)
def _inside(geom):
    """Index of the input's cells within the padded input."""
    return (Ellipsis,) + tuple(slice(lo, lo + n) for n, (lo, _) in zip(geom.in_size, geom.pad))


def unpad(xpad, geom):
    """The inverse of :func:`pad` for gradients: crop the padding off (a view)."""
    return xpad[_inside(geom)]


def windows(xpad, geom):
    """All windows of ``xpad``: a read-only view of shape ``(..., *out, *kernel)``."""
    nd = geom.nd
    lead = xpad.shape[:-nd]
    sp = xpad.strides[-nd:]
    shape = tuple(lead) + tuple(geom.out_size) + tuple(geom.kernel)
    strides = (tuple(xpad.strides[:-nd]) + tuple(st * s for st, s in zip(sp, geom.stride))
               + tuple(st * d for st, d in zip(sp, geom.dilation)))
    return as_strided(xpad, shape, strides)


def cells(geom, axis):
    """The padded cell ``j*s + m*d`` that window ``j`` reads at tap ``m`` along one axis, as a
    small NumPy table of shape ``(out, k)`` (for masks and counts that depend on the position)."""
    j = np.arange(geom.out_size[axis])[:, None]
    m = np.arange(geom.kernel[axis])[None, :]
    return j * geom.stride[axis] + m * geom.dilation[axis]


def taps(geom):
    """Every kernel tap ``m`` in row-major order."""
    return itertools.product(*(range(k) for k in geom.kernel))


def tap_index(tap, geom):
    """Index of the padded cells that tap ``m`` reads at every output position."""
    return (Ellipsis,) + tuple(slice(m * d, m * d + s * (o - 1) + 1, s)
                               for m, d, s, o in zip(tap, geom.dilation, geom.stride, geom.out_size))


def tap_view(xpad, tap, geom):
    """``xpad[..., j*s + m*d]`` for all output positions ``j``: shape ``(..., *out)``."""
    return xpad[tap_index(tap, geom)]


def add_tap(gpad, values, tap, geom):
    """Adjoint of :func:`tap_view`: ``gpad[..., j*s + m*d] += values[..., j]`` in place."""
    gpad[tap_index(tap, geom)] += values


@functools.lru_cache(maxsize=256)
def tap_boxes(geom):
    """Tap ``m``'s reads without padding: one ``(cells, outputs)`` pair of indices per tap
    (row-major), or ``None`` for a tap that reads only padding. Along each axis the outputs
    whose tap reads an input cell, ``0 <= j*s + m*d - lo < n``, are a range ``j0 <= j < j1``
    and read cells ``i0, i0 + s, ...``: so ``x[cells]`` and ``y[outputs]`` have one shape, and
    ``y[outputs] op= x[cells]`` applies the tap to every window with no padded copy of ``x``
    (the padding's cells are skipped, as if they held the identity of ``op``)."""
    boxes = []
    for tap in taps(geom):
        src, dst = [], []
        for m, n, s, d, (lo, _), o in zip(tap, geom.in_size, geom.stride, geom.dilation, geom.pad, geom.out_size):
            c = m * d - lo  # the cell output 0 reads
            j0, j1 = max(0, -(-(-c) // s)), min(o, (n - 1 - c) // s + 1)
            if j1 <= j0:
                break
            src.append(slice(j0 * s + c, (j1 - 1) * s + c + 1, s))
            dst.append(slice(j0, j1))
        else:
            boxes.append(((Ellipsis,) + tuple(src), (Ellipsis,) + tuple(dst)))
            continue
        boxes.append(None)
    return tuple(boxes)


def covers(box, geom):
    """Whether a tap's box reaches every output (its tap reads no padding anywhere)."""
    return box is not None and all(sl.start == 0 and sl.stop == o for sl, o in zip(box[1][1:], geom.out_size))


def fold(grad_windows, geom, lead_shape):
    """Adjoint of ``windows(pad(x))``: sum window gradients ``(..., *out, *k)`` back onto
    the unpadded input ``(..., *n)`` (lead_shape gives the ``...``)."""
    xp = get_array_module(grad_windows)
    gpad = xp.zeros(tuple(lead_shape) + geom.padded_size, dtype=grad_windows.dtype)
    for tap in taps(geom):
        add_tap(gpad, grad_windows[(Ellipsis,) + tuple(tap)], tap, geom)
    return unpad(gpad, geom)
