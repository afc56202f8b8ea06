"""The oracle: the book's equations as literal loops over output positions (tiny shapes only).

Eq. 9.7/9.8 (cross-correlation, channels and batch added, stride ``s``, dilation ``d``,
padding ``lo``)::

    Z[n, k, j] = sum_{c, m} V[n, g*C_g + c, j*s + m*d - lo] * K[k, c, m]

where ``g = k // K_g`` is the group of output channel ``k`` and ``V`` is zero outside the
input. Padding is not materialised: an out-of-range index simply contributes nothing, so
this code shares nothing with the windowing primitive it checks.
"""
from __future__ import annotations

import itertools

from .._backend import get_array_module


def _positions(shape):
    return itertools.product(*(range(v) for v in shape))


def _input_index(j, m, geom):
    """Input cell read by output ``j`` at tap ``m``, or None when it falls in the padding."""
    idx = []
    for jj, mm, s, d, (lo, _), n in zip(j, m, geom.stride, geom.dilation, geom.pad, geom.in_size):
        i = jj * s + mm * d - lo
        if not 0 <= i < n:
            return None
        idx.append(i)
    return tuple(idx)


def _pairs(geom):
    """(output position j, tap m, input cell i) for every in-range product of the sum."""
    for j in _positions(geom.out_size):
        for m in _positions(geom.kernel):
            i = _input_index(j, m, geom)
            if i is not None:
                yield j, m, i


def forward(x, w, args):
    xp, xn, wn = get_array_module(x), x, w
    geom, groups = args.geom, args.groups
    kg, cg = args.out_channels // groups, args.in_channels // groups
    y = xp.zeros((args.batch, args.out_channels) + geom.out_size, dtype=xn.dtype)
    for n in range(args.batch):
        for k in range(args.out_channels):
            g = k // kg
            for j, m, i in _pairs(geom):
                for c in range(cg):
                    y[(n, k) + j] += xn[(n, g * cg + c) + i] * wn[(k, c) + m]
    return y


def grad_input(gy, w, args):
    """dL/dV[n, g*C_g + c, i] = sum over (k in group g, j, m with j*s + m*d - lo = i) of G[n,k,j] K[k,c,m]."""
    xp, gyn, wn = get_array_module(gy), gy, w
    geom, groups = args.geom, args.groups
    kg, cg = args.out_channels // groups, args.in_channels // groups
    gx = xp.zeros((args.batch, args.in_channels) + geom.in_size, dtype=gyn.dtype)
    for n in range(args.batch):
        for k in range(args.out_channels):
            g = k // kg
            for j, m, i in _pairs(geom):
                for c in range(cg):
                    gx[(n, g * cg + c) + i] += gyn[(n, k) + j] * wn[(k, c) + m]
    return gx


def grad_weight(gy, x, args):
    """dL/dK[k, c, m] = sum over n, j of G[n, k, j] V[n, g*C_g + c, j*s + m*d - lo] (eq. 9.11)."""
    xp, gyn, xn = get_array_module(gy), gy, x
    geom, groups = args.geom, args.groups
    kg, cg = args.out_channels // groups, args.in_channels // groups
    gw = xp.zeros((args.out_channels, cg) + geom.kernel, dtype=gyn.dtype)
    for n in range(args.batch):
        for k in range(args.out_channels):
            g = k // kg
            for j, m, i in _pairs(geom):
                for c in range(cg):
                    gw[(k, c) + m] += gyn[(n, k) + j] * xn[(n, g * cg + c) + i]
    return gw
