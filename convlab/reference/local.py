"""Unshared convolution (section 9.6): locally connected (eq. 9.9) and tiled (eq. 9.10) layers.

A locally connected layer has one kernel per output position ``j`` (``W (K, *out, C, *k)``)::

    Z[n, k, j] = sum_{c, m} V[n, c, j*s + m*d - lo] * W[k, j, c, m]                 (eq. 9.9)

A tiled layer cycles through ``t`` kernels per axis (``W (K, *t, C, *k)``), so output ``j``
uses kernel ``j mod t``::

    Z[n, k, j] = sum_{c, m} V[n, c, j*s + m*d - lo] * W[k, j mod t, c, m]           (eq. 9.10)

which is the locally connected layer with the weight expanded to ``(K, *out, C, *k)`` by :func:`untile`;
its weight gradient is the locally connected one summed over the positions that share a
kernel (:func:`tile_sum`, the adjoint of :func:`untile`). As in :mod:`.direct`, each sum runs
over kernel taps, reading one :func:`.windows.tap_view` of the padded input at a time.
"""
from __future__ import annotations

import math

from .._backend import get_array_module
from .windows import add_tap, pad, tap_view, taps, unpad


def _tap_weight(w, tap, args):
    """``W[k, j, c, m]`` for one tap ``m`` as ``(K, P, C)``, ``P`` the number of output positions."""
    return w[(Ellipsis,) + tuple(tap)].reshape(args.out_channels, math.prod(args.geom.out_size), args.in_channels)


def forward(x, w, args):
    """Eq. 9.9: ``Z[n, k, j] = sum_m sum_c V_pad[n, c, j*s + m*d] W[k, j, c, m]``."""
    xp = get_array_module(x)
    geom = args.geom
    n, c, p = args.batch, args.in_channels, math.prod(geom.out_size)
    xpad = pad(x, geom)
    y = xp.zeros((n, args.out_channels, p), dtype=x.dtype)
    for tap in taps(geom):
        v = tap_view(xpad, tap, geom).reshape(n, c, p)
        y += xp.einsum("ncp,kpc->nkp", v, _tap_weight(w, tap, args))
    return y.reshape((n, args.out_channels) + geom.out_size)


def grad_input(gy, w, args):
    """``dV_pad[n, c, j*s + m*d] += sum_k G[n, k, j] W[k, j, c, m]`` for every tap ``m``."""
    xp = get_array_module(gy)
    geom = args.geom
    n, c, p = args.batch, args.in_channels, math.prod(geom.out_size)
    g = gy.reshape(n, args.out_channels, p)
    gpad = xp.zeros((n, c) + geom.padded_size, dtype=gy.dtype)
    for tap in taps(geom):
        contrib = xp.einsum("nkp,kpc->ncp", g, _tap_weight(w, tap, args))
        add_tap(gpad, contrib.reshape((n, c) + geom.out_size), tap, geom)
    return xp.ascontiguousarray(unpad(gpad, geom))


def grad_weight(gy, x, args):
    """``dW[k, j, c, m] = sum_n G[n, k, j] V_pad[n, c, j*s + m*d]``."""
    xp = get_array_module(gy)
    geom = args.geom
    n, k, c, p = args.batch, args.out_channels, args.in_channels, math.prod(geom.out_size)
    g = gy.reshape(n, k, p)
    xpad = pad(x, geom)
    gw = xp.empty((k,) + geom.out_size + (c,) + geom.kernel, dtype=gy.dtype)
    for tap in taps(geom):
        v = tap_view(xpad, tap, geom).reshape(n, c, p)
        gw[(Ellipsis,) + tuple(tap)] = xp.einsum("nkp,ncp->kpc", g, v).reshape((k,) + geom.out_size + (c,))
    return gw


def untile(w, args):
    """Tiled weight ``(K, *t, C, *k)`` -> locally connected ``(K, *out, C, *k)``: position ``j``
    gets kernel ``j mod t``."""
    xp = get_array_module(w)
    for a, (o, t) in enumerate(zip(args.geom.out_size, args.tiles)):
        w = xp.take(w, xp.arange(o) % t, axis=1 + a)
    return w


def tile_sum(gw_local, args):
    """Adjoint of :func:`untile`: sum the gradients of the positions that share a kernel
    (kernels that no position uses, when ``t > out``, get 0)."""
    xp = get_array_module(gw_local)
    g = gw_local
    for a, t in enumerate(args.tiles):
        axis = 1 + a
        g = xp.stack([g[(slice(None),) * axis + (slice(r, None, t),)].sum(axis=axis) for r in range(t)], axis=axis)
    return g
