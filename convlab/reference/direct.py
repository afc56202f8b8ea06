"""Direct convolution: a sum over kernel taps, one small matrix product per tap.

With the input split into ``G`` groups of ``C_g`` channels and the output into groups of
``K_g``, each tap ``m`` contributes (eq. 9.7 regrouped)::

    Z[n, g, :, j] += K[g, :, :, m] @ V_pad[n, g, :, j*s + m*d]      (K_g x C_g) @ (C_g x P)

where ``P`` is the number of output positions. Backward (eq. 9.11-9.13)::

    dV_pad[n, g, :, j*s + m*d] += K[g, :, :, m].T @ G[n, g, :, j]
    dK[g, :, :, m]              = sum_n G[n, g] @ V_pad[n, g, :, j*s + m*d].T

No temporary is larger than one tap's view of the input.
"""
from __future__ import annotations

import math

from .._backend import get_array_module
from .windows import add_tap, pad, tap_view, taps, unpad


def split_groups(a, groups):
    """``(N, C, *sp) -> (N, G, C/G, *sp)`` (a view)."""
    return a.reshape(a.shape[:1] + (groups, a.shape[1] // groups) + a.shape[2:])


def grouped_weight(w, groups):
    """``(K, C_g, *k) -> (G, K_g, C_g, *k)`` (a view)."""
    return w.reshape((groups, w.shape[0] // groups) + w.shape[1:])


def forward(x, w, args):
    xp = get_array_module(x)
    geom, groups = args.geom, args.groups
    n, p = args.batch, math.prod(geom.out_size)
    xg = split_groups(pad(x, geom), groups)
    wg = grouped_weight(w, groups)
    cg = xg.shape[2]
    y = xp.zeros((n, groups, wg.shape[1], p), dtype=x.dtype)
    for tap in taps(geom):
        v = tap_view(xg, tap, geom).reshape(n, groups, cg, p)
        y += xp.matmul(wg[(Ellipsis,) + tap], v)
    return y.reshape((n, args.out_channels) + geom.out_size)


def grad_input(gy, w, args):
    xp = get_array_module(gy)
    geom, groups = args.geom, args.groups
    n, p = args.batch, math.prod(geom.out_size)
    wg = grouped_weight(w, groups)
    kg, cg = wg.shape[1], wg.shape[2]
    gyg = gy.reshape(n, groups, kg, p)
    gpad = xp.zeros((n, groups, cg) + geom.padded_size, dtype=gy.dtype)
    for tap in taps(geom):
        contrib = xp.matmul(wg[(Ellipsis,) + tap].swapaxes(-1, -2), gyg)
        add_tap(gpad, contrib.reshape((n, groups, cg) + geom.out_size), tap, geom)
    return xp.ascontiguousarray(unpad(gpad, geom)).reshape((n, args.in_channels) + geom.in_size)


def grad_weight(gy, x, args):
    xp = get_array_module(gy)
    geom, groups = args.geom, args.groups
    n, p = args.batch, math.prod(geom.out_size)
    xg = split_groups(pad(x, geom), groups)
    kg, cg = args.out_channels // groups, args.in_channels // groups
    # (G, K_g, N*P): the output gradient with the batch folded into the sum.
    gyt = gy.reshape(n, groups, kg, p).transpose(1, 2, 0, 3).reshape(groups, kg, n * p)
    gw = xp.empty((groups, kg, cg) + geom.kernel, dtype=gy.dtype)
    for tap in taps(geom):
        v = tap_view(xg, tap, geom).reshape(n, groups, cg, p).transpose(1, 0, 3, 2).reshape(groups, n * p, cg)
        gw[(Ellipsis,) + tap] = xp.matmul(gyt, v)
    return gw.reshape((args.out_channels, cg) + geom.kernel)
