"""The oracle: the book's equations as literal loops over output positions (tiny shapes only).

Eq. 9.7/9.8 (cross-correlation, channels and batch added, stride ``s``, dilation ``d``,
padding ``lo``)::

    Z[n, k, j] = sum_{c, m} V[n, g*C_g + c, j*s + m*d - lo] * K[k, c, m]

where ``g = k // K_g`` is the group of output channel ``k`` and ``V`` is zero outside the
input. Padding is not materialised: an out-of-range index reads the value 0, which still
multiplies (``0 * inf`` is NaN, as in PyTorch: docs/convolution.md), so this code shares
nothing with the windowing primitive it checks.
"""
from __future__ import annotations

import itertools

from .._backend import get_array_module
from .._protocol import plain


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


def _terms(args):
    """Every product of the sum: (n, k, input channel, kernel channel c, j, m, i), with
    ``i`` None where the tap reads the padding."""
    geom = args.geom
    kg, cg = args.out_channels // args.groups, args.in_channels // args.groups
    for n in range(args.batch):
        for k in range(args.out_channels):
            for j in _positions(geom.out_size):
                for m in _positions(geom.kernel):
                    i = _input_index(j, m, geom)
                    for c in range(cg):
                        yield n, k, (k // kg) * cg + c, c, j, m, i


def _value(v, n, ci, i):
    """``V[n, ci, i]``, and 0 in the padding."""
    return 0.0 if i is None else v[(n, ci) + i]


def forward(x, w, args):
    xp = get_array_module(x)
    y = xp.zeros((args.batch, args.out_channels) + args.geom.out_size, dtype=x.dtype)
    for n, k, ci, c, j, m, i in _terms(args):
        y[(n, k) + j] += _value(x, n, ci, i) * w[(k, c) + m]
    return y


def grad_input(gy, w, args):
    """dL/dV[n, g*C_g + c, i] = sum over (k in group g, j, m with j*s + m*d - lo = i) of G[n,k,j] K[k,c,m]."""
    xp = get_array_module(gy)
    gx = xp.zeros((args.batch, args.in_channels) + args.geom.in_size, dtype=gy.dtype)
    for n, k, ci, c, j, m, i in _terms(args):
        if i is not None:  # the padding is no input: its gradient is dropped
            gx[(n, ci) + i] += gy[(n, k) + j] * w[(k, c) + m]
    return gx


def grad_weight(gy, x, args):
    """dL/dK[k, c, m] = sum over n, j of G[n, k, j] V[n, g*C_g + c, j*s + m*d - lo] (eq. 9.11)."""
    xp = get_array_module(gy)
    gw = xp.zeros((args.out_channels, args.in_channels // args.groups) + args.geom.kernel, dtype=gy.dtype)
    for n, k, ci, c, j, m, i in _terms(args):
        gw[(k, c) + m] += gy[(n, k) + j] * _value(x, n, ci, i)
    return gw


def supports(args):
    return None


def prepare(x, w, args):
    """The loop oracle looks at nothing; ``"auto"`` never chooses it (``convlab._cost``)."""
    return plain(__name__, "naive", x, w, args)
