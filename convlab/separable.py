"""Separable convolution with the 1-D factors given directly (section 9.8)."""
from __future__ import annotations

from . import _params as P
from ._nd import family
from .conv import _bias_view, _sum_bias_grad
from .reference import separable as _ref


def separable_conv(nd, x, factors, b=None, stride=1, padding=0, dilation=1, groups=None):
    """{nd}-d convolution with a separable kernel given by one 1-D factor per spatial axis.

    Shapes: ``x (N, C, {sp})``, ``factors`` a list of {nd} arrays ``(K, C/groups, k_a)``
    (for axes {sp}), ``b (K,)`` -> ``(N, K, {osp})``. ``groups`` is inferred as
    ``C / factors[0].shape[1]`` when None. Other parameters as in ``conv{nd}d``.

    The kernel is ``K[k, c] = f_1[k, c] (x) ... (x) f_{nd}[k, c]`` (outer product) and
    the result equals ``conv{nd}d(x, K, ...)``, computed as one 1-D pass per axis::

        T_a[n, k, c, ..., j_a, ...] = sum_m f_a[k, c, m] T_{{a-1}}[n, k, c, ..., j_a*s_a + m*d_a - lo_a, ...]
        Z[n, k] = b[k] + sum_c T_{nd}[n, k, c]

    ``sum_a k_a`` multiply-adds per output and channel pair instead of ``prod_a k_a``.
    """
    args = P.separable_args(x, factors, b, stride, padding, dilation, groups, nd)
    y = _ref.forward_factors(x, list(factors), args)
    if b is not None:
        y += _bias_view(b, nd)
    return y


def separable_conv_backward(nd, grad_y, x, factors, b=None, stride=1, padding=0, dilation=1, groups=None, *,
                            needs=(True, True, True)):
    """Backward pass of ``separable_conv{nd}d``: ``(grad_x, grad_factors, grad_b)``; ``needs`` as in
    ``conv{nd}d_backward`` (the chain through the passes computes ``grad_x`` and ``grad_factors``
    together, so ``needs`` only drops what is not asked for).

    Shapes: ``grad_y (N, K, {osp})``, ``x (N, C, {sp})`` -> ``grad_x`` like ``x``,
    ``grad_factors`` a list like ``factors``, ``grad_b (K,)`` (None without ``b``).
    By the chain rule through the passes, with ``G_a = dL/dT_a``::

        grad_f_a[k, c, m] = sum_{{n, j}} G_a[n, k, c, j] T_{{a-1}}[n, k, c, ..., j_a*s_a + m*d_a, ...]
    """
    args = P.separable_args(x, factors, b, stride, padding, dilation, groups, nd)
    P.check_grad_y(grad_y, x, (args.batch, args.out_channels) + args.geom.out_size)
    need_x, need_f, need_b = P.needs(needs, b)
    gx, gf = _ref.backward_factors(grad_y, x, list(factors), args) if need_x or need_f else (None, None)
    gb = _sum_bias_grad(grad_y, nd) if need_b else None
    return (gx if need_x else None), (gf if need_f else None), gb


__all__ = (family(separable_conv, "separable_conv", globals())
           + family(separable_conv_backward, "separable_conv", globals(), "_backward"))
