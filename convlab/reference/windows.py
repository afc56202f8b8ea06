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

The same windows seen through the *phases* of the padded input serve the fast direct
algorithm. Phase ``r`` (one per residue of the cell index modulo the stride) holds cells
``p*s + r``, so tap ``m`` reads phase ``(m*d) % s`` at ``j + (m*d) // s``: a strided
convolution is a sum of stride-1 ones. On the flattened phase grid, output ``j`` sits at
flat index ``q = sum_a j_a * grid_stride_a`` and tap ``m`` reads ``q + offset_m``, so every
tap sees all outputs through one contiguous range of columns::

    to_phases(x)    (..., *n)              -> (S, ..., prod(grid))   S = prod(s); zero padded
    phase_layout()  per tap: (phase, offset); the grid; columns spanned by one plane's outputs

(outputs occupy the first ``out`` cells of each grid axis; the rest of the grid is
computed and cropped).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from .._backend import as_strided, get_array_module


def pad(x, geom, value=0.0):
    """Pad the trailing ``geom.nd`` axes of ``x`` by ``geom.pad`` (and any ``geom.overhang``
    at the high end) with ``value``: shape ``(..., *geom.padded_size)``."""
    widths = [(lo, hi + e) for (lo, hi), e in zip(geom.pad, geom.overhang)]
    if not any(lo or hi for lo, hi in widths):
        return x
    xp = get_array_module(x)
    return xp.pad(x, [(0, 0)] * (x.ndim - geom.nd) + widths, mode="constant", constant_values=value)


def unpad(xpad, geom):
    """The inverse of :func:`pad` for gradients: crop the padding off (a view)."""
    idx = (Ellipsis,) + tuple(slice(lo, lo + n) for n, (lo, _) in zip(geom.in_size, geom.pad))
    return xpad[idx]


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


def fold(grad_windows, geom, lead_shape):
    """Adjoint of ``windows(pad(x))``: sum window gradients ``(..., *out, *k)`` back onto
    the unpadded input ``(..., *n)`` (lead_shape gives the ``...``)."""
    xp = get_array_module(grad_windows)
    gpad = xp.zeros(tuple(lead_shape) + geom.padded_size, dtype=grad_windows.dtype)
    for tap in taps(geom):
        add_tap(gpad, grad_windows[(Ellipsis,) + tuple(tap)], tap, geom)
    return unpad(gpad, geom)


# ----------------------------------------------------------------------------- phases

@dataclass(frozen=True)
class PhaseLayout:
    """Where each tap reads on the flattened phase grid (see the module docstring)."""

    grid: tuple    # cells per axis of every phase: ceil(padded / s)
    taps: tuple    # one (phase, flat offset) per tap, row-major tap order
    span: int      # flat columns from the first output of a plane to its last, inclusive

    @property
    def plane(self) -> int:
        return math.prod(self.grid)

    @property
    def phases(self) -> int:
        return max(p for p, _ in self.taps) + 1


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


def trivial(geom):
    """Stride 1 and no padding: the input is its own (only) phase."""
    return all(s == 1 for s in geom.stride) and not any(lo or hi for lo, hi in geom.pad)


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


def to_phases(x, geom, layout):
    """``x (..., *n) -> (S, ..., prod(grid))``: zero padding and the phase split in one copy."""
    xp = get_array_module(x)
    nd = geom.nd
    lead = x.shape[:-nd]
    if trivial(geom):  # stride 1, no padding: the input is its only phase
        return x.reshape((1,) + lead + (layout.plane,))
    out = xp.zeros((layout.phases,) + lead + layout.grid, dtype=x.dtype)
    for phase in range(layout.phases):
        cut = _phase_slices(geom, layout.grid, phase)
        if cut is not None:
            out[(phase, Ellipsis) + cut[0]] = x[(Ellipsis,) + cut[1]]
    return out.reshape((layout.phases,) + lead + (layout.plane,))


def from_phases(ph, geom, layout):
    """Adjoint of :func:`to_phases` for gradients: ``(S, ..., prod(grid)) -> (..., *n)``
    (each input cell lives in exactly one phase; padding cells are dropped)."""
    xp = get_array_module(ph)
    nd = geom.nd
    lead = ph.shape[1:-1]
    ph = ph.reshape(ph.shape[:-1] + layout.grid)
    if trivial(geom):
        return ph[0]
    out = xp.zeros(lead + geom.in_size, dtype=ph.dtype)
    for phase in range(layout.phases):
        cut = _phase_slices(geom, layout.grid, phase)
        if cut is not None:
            out[(Ellipsis,) + cut[1]] = ph[(phase, Ellipsis) + cut[0]]
    return out
