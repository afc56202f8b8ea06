"""Channel groups and the products over them, shared by the algorithms.

With ``G`` groups, input channels split into ``G`` groups of ``C_g`` and output channels
into ``G`` groups of ``K_g``; output channel ``g*K_g + k`` reads only input group ``g``.
"""
from __future__ import annotations

import math

from .._backend import get_array_module


def split_groups(a, groups):
    """``(N, C, *sp) -> (N, G, C/G, *sp)`` (a view)."""
    return a.reshape(a.shape[:1] + (groups, a.shape[1] // groups) + a.shape[2:])


def grouped_weight(w, groups):
    """``(K, C_g, *k) -> (G, K_g, C_g, *k)`` (a view)."""
    return w.reshape((groups, w.shape[0] // groups) + w.shape[1:])


def tap_weights(w, args):
    """``(K, C_g, *k) -> (taps, G, K_g, C_g)``, contiguous: one ``K_g x C_g`` matrix per tap."""
    xp = get_array_module(w)
    wg = grouped_weight(w, args.groups)
    wg = wg.reshape(wg.shape[:3] + (math.prod(args.geom.kernel),))
    return xp.ascontiguousarray(wg.transpose(3, 0, 1, 2))


def matmul(a, b, out=None):
    """Batched matrix product ``a @ b``. Over an inner axis of length 1 it is an outer
    product, done as a broadcast multiply: BLAS calls with one inner term are slow."""
    xp = get_array_module(a)
    if a.shape[-1] == 1:
        return xp.multiply(a, b, out=out)
    return xp.matmul(a, b, out=out)
