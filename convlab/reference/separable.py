"""Separable convolution (section 9.8): a rank-1 kernel as one 1-D convolution per axis.

When every kernel slice is an outer product of one 1-D factor per spatial axis,
``K[k, c] = f_1[k, c] (x) f_2[k, c] (x) ... (x) f_nd[k, c]``, the sum over the kernel
window factorises into ``nd`` sums of ``k_a`` taps each::

    T_0[n, k, c]  = V_pad[n, c]                                   (the same for every k)
    T_a[n, k, c, ..., j_a, ...] = sum_m f_a[k, c, m] T_{a-1}[n, k, c, ..., j_a*s_a + m*d_a, ...]
    Z[n, k]       = sum_c T_nd[n, k, c]

which costs ``sum_a k_a`` instead of ``prod_a k_a`` multiply-adds per output and channel
pair (the book: O(w*d) instead of O(w^d) runtime and parameter storage).

Backward: every pass is linear, so it is run in reverse with the tap's adjoint
(:func:`~convlab.reference.windows.add_tap`) and ``dL/df_a[k, c, m]`` is the sum over
samples and positions of ``dL/dT_a`` times the tap view of ``T_{a-1}``.

:func:`factor` splits a full kernel by repeated SVD: the kernel slice unfolded along
axis 1 is a rank-1 matrix ``u s v^T`` when it is separable; ``u`` is the first factor and
``s v`` holds the rest, split the same way. The relative residual of the rebuilt kernel
decides whether it is separable within ``RTOL`` (100 ulp of the dtype).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np

from .. import _parallel
from .._backend import get_array_module, workspace_limit
from .._protocol import Prepared, all_finite
from . import direct
from .groups import split_groups
from .phases import most, spans
from .windows import add_tap, pad, tap_view, unpad


@functools.lru_cache(maxsize=None)
def rtol(dtype):
    """Largest relative residual accepted as separable: 100 units in the last place."""
    return 100 * float(np.finfo(dtype).eps)


# ----------------------------------------------------------------------------- factoring

def outer(factors):
    """Rebuild ``(K, C_g, *k)`` kernels from factors ``[(K, C_g, k_a)] * nd``."""
    out = factors[0]
    for f in factors[1:]:
        out = out[..., None] * f.reshape(f.shape[:2] + (1,) * (out.ndim - 2) + f.shape[2:])
    return out


def factor(w):
    """Rank-1 factors of each kernel slice and the worst relative residual.

    ``w (K, C_g, *k) -> ([f_1 (K, C_g, k_1), ..., f_nd (K, C_g, k_nd)], residual)`` where
    ``residual = max over slices of |w[k, c] - outer(f[k, c])| / |w[k, c]|`` (Frobenius;
    zero slices count as separable). The SVDs run in float64; factors have ``w``'s dtype
    and equal norms. ``w`` must be finite (:func:`prepare` checks before calling).
    """
    xp = get_array_module(w)
    lead, kernel = w.shape[:2], w.shape[2:]
    taps = math.prod(kernel)
    rest = w.astype(xp.float64).reshape(lead + (taps,))
    factors = []
    for k in kernel[:-1]:
        taps //= k
        u, s, vt = xp.linalg.svd(rest.reshape(lead + (k, taps)), full_matrices=False)
        factors.append(u[..., :, 0])
        rest = s[..., :1] * vt[..., 0, :]
    factors.append(rest)
    norms = [xp.linalg.norm(f, axis=-1, keepdims=True) for f in factors]
    total = math.prod(norms)
    share = total ** (1.0 / len(factors))
    factors = [xp.where(total > 0, f * share / xp.where(n > 0, n, 1.0), 0.0) for f, n in zip(factors, norms)]
    w64 = w.astype(xp.float64)
    axes = tuple(range(2, w.ndim))
    err = xp.sqrt(((w64 - outer(factors)) ** 2).sum(axis=axes))
    size = xp.sqrt((w64 ** 2).sum(axis=axes))
    residual = float(xp.where(size > 0, err / xp.where(size > 0, size, 1.0), 0.0).max()) if w.size else 0.0
    return [f.astype(w.dtype) for f in factors], residual


_factored: dict = {}
MEMO_BYTES = 1 << 16


def factored(w):
    """:func:`factor`, or ``None`` for a kernel holding NaN or infinity (LAPACK's SVD may not
    return on one), remembered by content for small NumPy kernels ("auto" prepares this
    algorithm on every call, and a layer keeps its kernel: a second call looks at nothing)."""
    key = (w.shape, w.dtype.str, w.tobytes()) if isinstance(w, np.ndarray) and w.nbytes <= MEMO_BYTES else None
    if key in _factored:
        return _factored[key]
    result = factor(w) if all_finite(w) else None
    if key is not None:
        if len(_factored) >= 256:
            _factored.clear()
        _factored[key] = result
    return result


# ----------------------------------------------------------------------------- passes

# Bytes of one pass's array for a chunk of output rows: it stays in L2 while the taps pass.
CACHE_BYTES = 1 << 19


def _axis_geometry(spatial, axis, geom):
    """Geometry of the 1-D pass along ``axis`` over arrays of spatial size ``spatial``."""
    nd = geom.nd

    def only(value, other):
        return tuple(value if a == axis else other for a in range(nd))

    out = tuple(geom.out_size[a] if a == axis else spatial[a] for a in range(nd))
    return dataclasses.replace(geom, in_size=tuple(spatial), kernel=only(geom.kernel[axis], 1),
                               stride=only(geom.stride[axis], 1), dilation=only(geom.dilation[axis], 1),
                               pad=((0, 0),) * nd, out_size=out)


def _taps(axis, geom):
    return [tuple(m if a == axis else 0 for a in range(geom.nd)) for m in range(geom.kernel[axis])]


def _coefficients(f, args):
    """``(K, C_g, k_a) -> (G, K_g, C_g, k_a, 1, ..., 1)`` broadcasting against ``(N, G, K_g, C_g, *sp)``."""
    g = args.groups
    return f.reshape((g, f.shape[0] // g) + f.shape[1:] + (1,) * args.nd)


def _chunking(args, itemsize, copies):
    """``(samples, output channels per group)`` per chunk, so that the passes' arrays stay
    under the workspace limit (at least one of each). Counted in planes of the padded size:
    the chunk's padded input (or input gradient) and its channel sum, ``2 nb C``, the
    ``copies`` arrays of ``nb kb C`` planes the passes hold at once, and the output's
    ``nb G kb``."""
    budget = workspace_limit() // max(1, math.prod(args.geom.padded_size) * itemsize)
    c, g = args.in_channels, args.groups
    kb = most(2 * c, copies * c + g, budget, args.out_channels // g)
    nb = most(0, 2 * c + (copies * c + g) * kb, budget, args.batch)
    return spans(args.batch, nb), spans(args.out_channels // g, kb)


def _passes(t, coefs, args):
    """``[T_0, T_1, ..., T_nd]``, each ``(nb, G, kb or 1, C_g, *sp)``, from the padded input
    ``T_0 = t (nb, G, 1, C_g, *padded)`` and one chunk's coefficients (:func:`_coefficients`)."""
    xp = get_array_module(t)
    geom = args.geom
    ts = [t]
    for axis, coef in enumerate(coefs):
        sub = _axis_geometry(t.shape[-geom.nd:], axis, geom)
        shape = t.shape[:2] + coef.shape[1:3] + sub.out_size
        out, tmp = xp.empty(shape, dtype=t.dtype), xp.empty(shape, dtype=t.dtype)
        for m, tap in enumerate(_taps(axis, sub)):  # the first tap writes, the others add
            xp.multiply(coef[:, :, :, m], tap_view(t, tap, sub), out=tmp if m else out)
            if m:
                out += tmp
        del tmp
        t = out
        ts.append(t)
    return ts


def _padded_chunk(x, n0, n1, args):
    """``x[n0:n1]`` padded: ``(nb, G, 1, C_g, *padded)``."""
    return split_groups(pad(x[n0:n1], args.geom), args.groups)[:, :, None]


def forward_factors(x, factors, args):
    """``Z (N, K, *out)`` from ``x (N, C, *n)`` and factors ``[(K, C_g, k_a)] * nd``, in
    chunks of samples and output channels, and within them of output rows (the first
    spatial axis), whose passes stay in cache and run on every core: each pass reads and
    writes its whole array once per tap."""
    xp = get_array_module(x)
    geom = args.geom
    coefs = [_coefficients(f, args) for f in factors]
    y = xp.empty((args.batch, args.out_channels) + geom.out_size, dtype=x.dtype)
    yg = split_groups(y, args.groups)
    samples, channels = _chunking(args, x.itemsize, 3)
    for n0, n1 in samples:
        t0 = _padded_chunk(x, n0, n1, args)
        for k0, k1 in channels:
            cs = [c[:, k0:k1] for c in coefs]
            row = (n1 - n0) * args.in_channels * (k1 - k0) * math.prod(geom.padded_size[1:]) * x.itemsize

            def run(group):
                s, reach = geom.stride[0], (geom.kernel[0] - 1) * geom.dilation[0] + 1
                for r0, r1 in group:  # output rows r0:r1 read padded rows r0*s to (r1-1)*s + reach
                    part = dataclasses.replace(geom, out_size=(r1 - r0,) + geom.out_size[1:])
                    rows = dataclasses.replace(args, geom=part)
                    t = t0[:, :, :, :, r0 * s:(r1 - 1) * s + reach]
                    yg[n0:n1, :, k0:k1, r0:r1] = _passes(t, cs, rows)[-1].sum(axis=3)

            step = max(1, min(CACHE_BYTES // max(1, row), -(-geom.out_size[0] // _parallel.workers())))
            _parallel.map_groups(run, spans(geom.out_size[0], step), xp)
    return y


def _back_passes(gt, coefs, args, ts=None):
    """Run the passes backwards from one chunk's output gradient ``gt (nb, G, kb, 1, *out)``:
    ``dL/dT_0`` summed over ``k`` (the chunk's padded input gradient, ``(nb, G, C_g, *padded)``),
    and, when the chunk's forward intermediates ``ts`` are given, its factor gradients."""
    xp = get_array_module(gt)
    geom = args.geom
    nb, g, kb = gt.shape[:3]
    cg = args.in_channels // g
    spatial = [geom.padded_size]
    for axis in range(geom.nd - 1):
        spatial.append(tuple(geom.out_size[a] if a <= axis else geom.padded_size[a] for a in range(geom.nd)))
    grads = [None] * geom.nd
    for axis in reversed(range(geom.nd)):
        sub = _axis_geometry(spatial[axis], axis, geom)
        coef = coefs[axis]
        prev = xp.zeros((nb, g, kb, cg) + sub.in_size, dtype=gt.dtype)
        gf = []
        for m, tap in enumerate(_taps(axis, sub)):
            add_tap(prev, coef[:, :, :, m] * gt, tap, sub)
            if ts is not None:
                prod = gt * tap_view(ts[axis], tap, sub)
                gf.append(prod.sum(axis=(0,) + tuple(range(4, 4 + geom.nd))))
                del prod
        if ts is not None:
            grads[axis] = xp.stack(gf, axis=-1)  # (G, kb, C_g, k_a)
        gt = prev
    return gt.sum(axis=2), grads


def backward_factors(gy, x, factors, args):
    """``(dL/dx, [dL/df_a])`` of :func:`forward_factors` for output gradient ``gy``, chunk by
    chunk; with ``x`` None only ``dL/dx`` (and None for the factor gradients)."""
    xp = get_array_module(gy)
    geom, g = args.geom, args.groups
    coefs = [_coefficients(f, args) for f in factors]
    gyg = split_groups(gy, g)[:, :, :, None]  # (N, G, K_g, 1, *out)
    gx = xp.zeros((args.batch, args.in_channels) + geom.in_size, dtype=gy.dtype)
    grads = None if x is None else [xp.zeros(c.shape[:4], dtype=gy.dtype) for c in coefs]
    samples, channels = _chunking(args, gy.itemsize, 3 if x is None else geom.nd + 4)
    for n0, n1 in samples:
        gpad = None
        t0 = None if x is None else _padded_chunk(x, n0, n1, args)
        for k0, k1 in channels:
            cs = [c[:, k0:k1] for c in coefs]
            ts = None if x is None else _passes(t0, cs, args)
            part, gf = _back_passes(gyg[n0:n1, :, k0:k1], cs, args, ts)
            del ts
            if gpad is None:
                gpad = part
            else:
                gpad += part
            for total, more in zip(grads or (), gf):
                total[:, k0:k1] += more
        if gpad is not None:  # else no output channels: a zero gradient
            gx[n0:n1] = unpad(gpad.reshape((n1 - n0, args.in_channels) + geom.padded_size), geom)
    return gx, None if grads is None else [a.reshape(f.shape) for a, f in zip(grads, factors)]


# ----------------------------------------------------------------------------- protocol

@dataclass(frozen=True)
class Factored:
    """The passes with the factors of the kernel, found once by :func:`prepare`."""

    factors: list

    def forward(self, x, w, args):
        return forward_factors(x, self.factors, args)

    def grad_input(self, gy, w, args):
        return backward_factors(gy, None, self.factors, args)[0]

    def grad_weight(self, gy, x, args):
        # The gradient of a full kernel is not rank-1 in general: the direct sum over taps.
        return direct.grad_weight(gy, x, args)


def supports(args):
    return None  # any shape; whether the kernel factors is a question for prepare


def prepare(x, w, args):
    """The kernel's rank-1 factors (one SVD pass, :func:`factored`), or why it has none.

    A kernel holding NaN or infinity is never factored (its factors would be NaN): it goes
    to :mod:`.direct`, as in the FFT and Winograd.
    A residual that is not a number (overflow) counts as not separable."""
    if w is None:
        return "algorithm='separable' needs the kernel w to factor it; only its shape was given"
    result = factored(w)
    if result is None:
        return direct.prepare(x, w, args, note="separable hands a non-finite kernel to direct")
    factors, residual = result
    if not residual <= rtol(w.dtype):
        return _not_separable(tuple(w.shape), residual, w.dtype)
    return Prepared("separable", args, np.dtype(w.dtype), Factored(factors))


@functools.lru_cache(maxsize=256)
def _not_separable(shape, residual, dtype):
    return (f"algorithm='separable' needs rank-1 kernels: the kernel w of shape {shape} is not separable "
            f"(relative residual of its best rank-1 factors {residual:.3g} > tolerance {rtol(dtype):.3g}); "
            f"use another algorithm")
