"""The 1x1 convolution without padding: a batched matrix product on the NCHW views.

With a one-tap kernel every output reads one input cell, ``j*s`` (dilation has no effect),
so eq. 9.7 is, per sample ``n`` and group ``g``, one matrix product over channels::

    Z[n, g]         = K[g] @ V[n, g, :, j*s]                 (K_g x C_g) @ (C_g x P)
    dV[n, g, :, j*s] = K[g].T @ G[n, g]                       (C_g x K_g) @ (K_g x P)
    dK[g]           = sum_n G[n, g] @ V[n, g, :, j*s].T       (K_g x P) @ (P x C_g)

On a ``(N, C, *n)`` array the planes are already matrices ``(C_g x P)``, so with stride 1
the products read the input and write the output in place, with no copy; a stride > 1 reads
the strided view ``V[..., ::s]``, copied once (``1/prod(s)`` of the input). This is what
direct and im2col both reduce to for such kernels (one tap, a patch matrix that is the
input itself); their ``prepare`` hands these shapes here.
"""
from __future__ import annotations

import math

from .._backend import get_array_module, workspace_limit
from .groups import grouped_weight, matmul, split_groups


def serves(args) -> bool:
    """A 1x1 (one tap on every axis) kernel without padding."""
    geom = args.geom
    return all(k == 1 for k in geom.kernel) and not any(lo or hi for lo, hi in geom.pad)


def _strided(x, args):
    """``V[n, c, j*s]``: the cells the outputs read (a view; the input itself for stride 1)."""
    return x[(Ellipsis,) + tuple(slice(None, None, s) for s in args.geom.stride)]


def _matrices(a, groups, nd):
    """``(N, C, *sp) -> (N, G, C_g, prod(sp))`` (a view when ``a`` is contiguous, else a copy)."""
    a = split_groups(a, groups)
    return a.reshape(a.shape[:3] + (math.prod(a.shape[3:3 + nd]),))


def _weight(w, args):
    """``(K, C_g, 1...) -> (G, K_g, C_g)``."""
    wg = grouped_weight(w, args.groups)
    return wg.reshape(wg.shape[:3])


def forward(x, w, args):
    v = _matrices(_strided(x, args), args.groups, args.nd)
    z = matmul(_weight(w, args), v)  # (N, G, K_g, P)
    return z.reshape((args.batch, args.out_channels) + args.geom.out_size)


def grad_input(gy, w, args):
    xp = get_array_module(gy)
    g = _matrices(gy, args.groups, args.nd)
    d = matmul(_weight(w, args).swapaxes(-1, -2), g)  # (N, G, C_g, P)
    d = d.reshape((args.batch, args.in_channels) + args.geom.out_size)
    if all(s == 1 for s in args.geom.stride):
        return d
    gx = xp.zeros((args.batch, args.in_channels) + args.geom.in_size, dtype=gy.dtype)
    _strided(gx, args)[...] = d
    return gx


def grad_weight(gy, x, args):
    """Samples in blocks whose per-sample products ``(nb, G, K_g, C_g)`` stay under the
    workspace limit, summed over the block."""
    xp = get_array_module(gy)
    v = _matrices(_strided(x, args), args.groups, args.nd)
    g = _matrices(gy, args.groups, args.nd)
    per_sample = max(1, args.out_channels * (args.in_channels // args.groups) * gy.itemsize)
    step = max(1, workspace_limit() // per_sample)
    gw = None
    for n0 in range(0, args.batch, step):
        part = xp.matmul(g[n0:n0 + step], v[n0:n0 + step].swapaxes(-1, -2)).sum(axis=0)
        gw = part if gw is None else gw + part
    if gw is None:  # an empty batch
        gw = xp.zeros(g.shape[1:3] + (v.shape[2],), dtype=gy.dtype)
    return gw.reshape((args.out_channels, args.in_channels // args.groups) + args.geom.kernel)


def counts(args):
    """The work of :func:`forward`: ``(multiply-adds, output elements, matrix products,
    copied elements)`` (the strided view's copy for a stride > 1)."""
    n, c, k, g = args.batch, args.in_channels, args.out_channels, args.groups
    cells = math.prod(args.geom.out_size)
    copied = 0 if all(s == 1 for s in args.geom.stride) else n * c * cells
    return n * k * (c // g) * cells, n * k * cells, n * g, copied
