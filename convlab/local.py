"""Unshared convolution (section 9.6): locally connected and tiled layers, forward and backward.

The public ``local_conv{1,2,3}d*`` and ``tiled_conv{1,2,3}d*`` functions are made from the
generic functions here; they validate with :mod:`convlab._params` and compute with
:mod:`convlab.reference.local`.
"""
from __future__ import annotations

from . import _params as P
from ._nd import family
from .reference import local as ref


def _check_grad_y(grad_y, x, args):
    P.check_grad_y(grad_y, x, (args.batch, args.out_channels) + args.geom.out_size)


def local_conv(nd, x, w, b=None, stride=1, padding=0, dilation=1):
    """{nd}-d locally connected layer (unshared convolution, eq. 9.9): one kernel per output position.

    Shapes: ``x (N, C, {sp})``, ``w (K, {osp}, C, {ksp})``, ``b (K, {osp})`` -> ``(N, K, {osp})``::

        Z[n, k, j] = b[k, j] + sum_{{c, m}} V[n, c, j*s + m*d - lo] * W[k, j, c, m]

    ``stride``, ``padding`` (int, per-dim ints, ``(lo, hi)`` pairs, ``"valid"``, ``"same"``,
    ``"full"``) and ``dilation`` as in ``conv{nd}d``; the output size they give must equal
    the ``{osp}`` dims of ``w``.
    """
    args = P.local_args(x, w, b, stride, padding, dilation, nd, tiled=False)
    y = ref.forward(x, w, args)
    if b is not None:
        y += b[None]
    return y


def local_conv_backward(nd, grad_y, x, w, b=None, stride=1, padding=0, dilation=1, *, needs=(True, True, True)):
    """Backward pass of ``local_conv{nd}d``: ``(grad_x, grad_w, grad_b)``; ``grad_b`` is None without ``b``,
    and ``needs`` as in ``conv{nd}d_backward``.

    Shapes as the forward, ``grad_y (N, K, {osp})``. With ``G = dL/dZ``::

        grad_w[k, j, c, m] = sum_n G[n, k, j] V[n, c, j*s + m*d - lo]
        grad_x[n, c, i]    = sum_{{k, j, m : j*s + m*d - lo = i}} G[n, k, j] W[k, j, c, m]
        grad_b[k, j]       = sum_n G[n, k, j]
    """
    args = P.local_args(x, w, b, stride, padding, dilation, nd, tiled=False)
    _check_grad_y(grad_y, x, args)
    need_x, need_w, need_b = P.needs(needs, b)
    gx = ref.grad_input(grad_y, w, args) if need_x else None
    gw = ref.grad_weight(grad_y, x, args) if need_w else None
    gb = grad_y.sum(axis=0) if need_b else None
    return gx, gw, gb


def tiled_conv(nd, x, w, b=None, stride=1, padding=0, dilation=1):
    """{nd}-d tiled convolution (eq. 9.10): ``t`` kernels per axis, used in turn across the output.

    Shapes: ``x (N, C, {sp})``, ``w (K, {tsp}, C, {ksp})``, ``b (K,)`` -> ``(N, K, {osp})``::

        Z[n, k, j] = b[k] + sum_{{c, m}} V[n, c, j*s + m*d - lo] * W[k, j mod t, c, m]

    Tiles of 1 give ``conv{nd}d``; tiles equal to the output size give ``local_conv{nd}d``.
    Parameters as ``conv{nd}d`` (no groups).
    """
    args = P.local_args(x, w, b, stride, padding, dilation, nd, tiled=True)
    y = ref.forward(x, ref.untile(w, args), args)
    if b is not None:
        y += b.reshape((1, -1) + (1,) * nd)
    return y


def tiled_conv_backward(nd, grad_y, x, w, b=None, stride=1, padding=0, dilation=1, *, needs=(True, True, True)):
    """Backward pass of ``tiled_conv{nd}d``: ``(grad_x, grad_w, grad_b)``; ``grad_b`` is None without ``b``,
    and ``needs`` as in ``conv{nd}d_backward``.

    ``grad_w[k, r, c, m]`` sums the locally connected weight gradient over the positions
    ``j`` with ``j mod t = r``; ``grad_x`` is the locally connected one with the untiled weight.
    """
    args = P.local_args(x, w, b, stride, padding, dilation, nd, tiled=True)
    _check_grad_y(grad_y, x, args)
    need_x, need_w, need_b = P.needs(needs, b)
    gx = ref.grad_input(grad_y, ref.untile(w, args), args) if need_x else None
    gw = ref.tile_sum(ref.grad_weight(grad_y, x, args), args) if need_w else None
    gb = grad_y.sum(axis=(0,) + tuple(range(2, 2 + nd))) if need_b else None
    return gx, gw, gb


__all__ = (family(local_conv, "local_conv", globals())
           + family(local_conv_backward, "local_conv", globals(), "_backward")
           + family(tiled_conv, "tiled_conv", globals())
           + family(tiled_conv_backward, "tiled_conv", globals(), "_backward"))
