"""The channel-last layout ``(N, *n, C)`` and its inverse, copied on every core.

In this layout each cell of the input is a contiguous run of ``C`` values, so a tile or a
window of cells is gathered by copying long runs (Winograd's tiles, the patches of
:mod:`.patches`), whatever the spatial size; the algorithms copy their operands in once
and their results out once.
"""
from __future__ import annotations

from .. import _parallel
from .._backend import get_array_module
from .phases import spans


def channel_last(a, lo, size):
    """``(N, C, *n) -> (N, *size, C)``: ``a`` at offset ``lo`` in zeros (the padding)."""
    xp = get_array_module(a)
    nd = len(size)
    out = xp.empty(a.shape[:1] + tuple(size) + a.shape[1:2], dtype=a.dtype)
    inner = (slice(None),) + tuple(slice(o, o + n) for o, n in zip(lo, a.shape[2:]))
    for axis, (o, n) in enumerate(zip(lo, a.shape[2:])):  # zero only the border
        before = (slice(None),) * (axis + 1)
        out[before + (slice(0, o),)] = 0
        out[before + (slice(o + n, None),)] = 0

    def run(group):
        for n0, n1 in group:
            out[(slice(n0, n1),) + inner[1:]] = a[n0:n1].transpose((0,) + tuple(range(2, 2 + nd)) + (1,))

    _parallel.map_groups(run, samples(a.shape[0]), xp)
    return out


def channel_first(at, lo, size, out=None):
    """The inverse of :func:`channel_last`: ``(N, *m, K) -> (N, K, *size)``, the cells from
    offset ``lo`` (into ``out`` when given)."""
    xp = get_array_module(at)
    nd = len(size)
    if out is None:
        out = xp.empty(at.shape[:1] + at.shape[-1:] + tuple(size), dtype=at.dtype)
    crop = tuple(slice(o, o + n) for o, n in zip(lo, size))

    def run(group):
        for n0, n1 in group:
            out[n0:n1] = at[(slice(n0, n1),) + crop].transpose((0, nd + 1) + tuple(range(1, nd + 1)))

    _parallel.map_groups(run, samples(at.shape[0]), xp)
    return out


def samples(n):
    """Sample ranges, one or more per worker."""
    return spans(n, max(1, -(-n // _parallel.workers())))
