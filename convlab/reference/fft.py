"""FFT convolution: the convolution theorem, all samples and channels in one transform.

Cross-correlation is a product in the frequency domain. With ``F`` the real FFT over the
spatial axes (size ``L >= padded size`` per axis, so nothing wraps around) and ``*`` the
complex conjugate::

    Z[n, k]  = F^-1( sum_c F(V_pad[n, c]) * conj(F(K_d[k, c])) )          then Z[j*s]

where ``K_d`` is the kernel dilated by ``d`` (zeros between taps) and the stride is
applied by keeping every ``s``-th output. The channel sum is a matrix product at every
frequency ``f``: ``Z_f (N x K_g) = V_f (N x C_g) @ conj(K_f) (C_g x K_g)`` per group,
one batched matmul over all frequencies. The backward passes are the same theorem::

    dV_pad[n, c] = F^-1( sum_k F(G_up[n, k]) * F(K_d[k, c]) )              (true convolution)
    dK_d[k, c]   = F^-1( sum_n F(V_pad[n, c]) * conj(F(G_up[n, k])) )      then dK_d[m*d]

with ``G_up`` the output gradient spread back onto the stride-1 grid (zeros between).

Arrays are kept spatial-axes-first, ``(*spatial, G, N, C_g)``, so the transforms return
frequency-major data and the per-frequency matrices are contiguous for the matmul.

Precision guard (see docs/algorithms.md). An FFT spreads every input cell's rounding
error over the whole plane: the error of each output is about ``eps * log2(L)`` times
the *largest* output, where a direct sum's error is relative to its own window. When the
input holds regions of very different magnitude, small outputs lose accuracy. Before a
float32 transform the input is cut into regions (the kernel's span, at least
``MIN_REGION`` cells, at most half of each axis: :func:`region_size`); with ``r`` the
ratio of the largest region maximum to the smallest nonzero one, the work is done in
float64 when ``eps32 * log2(prod L) * r`` exceeds ``FLOAT32_TOLERANCE`` (the accuracy
float32 results are held to). A non-finite input or weight would spread NaN to every
output, so it falls back to
:mod:`convlab.reference.direct`, where NaN stays inside the windows that read it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._backend import get_array_module, workspace_limit
from .._protocol import Prepared, all_finite, dtype_of
from . import direct
from .groups import grouped_weight, matmul, split_groups
from .phases import most, spans

FLOAT32_TOLERANCE = 1e-4
MIN_REGION = 8
THREADED_CELLS = 1 << 19


# ----------------------------------------------------------------------------- transforms

def _workers(a, size):
    """Threads for a transform: all cores for large ones, one where threads cost more than they save."""
    return -1 if math.prod(size) * math.prod(a.shape[len(size):]) >= THREADED_CELLS else 1


def _rfftn(a, size, nd):
    """Real FFT over the leading ``nd`` axes, zero-extended to ``size``."""
    axes = tuple(range(nd))
    if isinstance(a, np.ndarray):
        import scipy.fft
        return scipy.fft.rfftn(a, s=size, axes=axes, workers=_workers(a, size))
    return get_array_module(a).fft.rfftn(a, s=size, axes=axes)


def _irfftn(a, size, nd):
    axes = tuple(range(nd))
    if isinstance(a, np.ndarray):
        import scipy.fft
        return scipy.fft.irfftn(a, s=size, axes=axes, workers=_workers(a, size))
    return get_array_module(a).fft.irfftn(a, s=size, axes=axes)


def fft_size(geom):
    """Transform size per axis: the padded size rounded up to a fast length (2, 3, 5, 7-smooth)."""
    import scipy.fft
    return tuple(scipy.fft.next_fast_len(p, real=True) for p in geom.padded_size)


def _embed(a, size, nd, dtype, step=None, start=None):
    """``a``'s leading ``nd`` axes placed in zeros of ``size`` cells (the transform size) at
    ``start + j*step``: zero padding, dilation or stride spreading and the cast in one copy."""
    xp = get_array_module(a)
    out = xp.zeros(tuple(size) + a.shape[nd:], dtype=dtype)
    out[_every(step or (1,) * nd, a.shape[:nd], start)] = a
    return out


def _every(step, count, start=None):
    """Index of cells ``start, start + step, ..., start + (count-1)*step`` on each leading axis."""
    start = start or (0,) * len(step)
    return tuple(slice(b, b + (c - 1) * s + 1, s) for s, c, b in zip(step, count, start))


def _spatial_first(a, groups, nd):
    """``(N, C, *sp) -> (*sp, G, N, C/G)`` (a view)."""
    return _grouped_spatial_first(split_groups(a, groups), nd)


def _grouped_spatial_first(a, nd):
    """``(N, G, C_g, *sp) -> (*sp, G, N, C_g)`` (a view)."""
    return a.transpose(tuple(range(3, 3 + nd)) + (1, 0, 2))


def _padded(x, args, size, dtype):
    """``x (N, C, *n)`` zero padded to the transform size, ``(*L, G, N, C_g)`` in ``dtype``."""
    lo = tuple(lo for lo, _ in args.geom.pad)
    return _embed(_spatial_first(x, args.groups, args.nd), size, args.nd, dtype, start=lo)


def _kernel_spectrum(wg, args, size, dtype):
    """``wg (G, K_g, C_g, *k) -> (F, G, C_g, K_g)``: the dilated kernel's transform, frequency-major."""
    nd = args.nd
    ws = wg.transpose(tuple(range(3, 3 + nd)) + (0, 2, 1))  # (*k, G, C_g, K_g)
    spec = _rfftn(_embed(ws, size, nd, dtype, args.geom.dilation), size, nd)
    return _frequency_major(spec, nd)


def _conjugated(spec):
    """``conj(spec)`` in place: the spectra are fresh arrays, so no copy is needed."""
    return get_array_module(spec).conjugate(spec, out=spec)


def _frequency_major(spec, nd):
    """``(*F, ...) -> (prod F, ...)``."""
    return spec.reshape((math.prod(spec.shape[:nd]),) + spec.shape[nd:])


# ----------------------------------------------------------------------------- guard

def region_size(n, span):
    """Cells per region along an axis of ``n`` cells: the kernel's span and at least
    ``MIN_REGION``, but at most half the axis (rounded up), so that an axis of two cells or
    more has two regions or more; rounded up to a divisor of ``n`` when one is within 2x
    and at most ``n // 2`` (no edge padding)."""
    want = min(max(span, MIN_REGION), -(-n // 2))
    return next((b for b in range(want, min(2 * want, n // 2) + 1) if n % b == 0), want)


def _region_ratio(a, geom):
    """Largest over smallest nonzero regional maximum of ``|a|`` (``a``: ``(N, C, *sp)``),
    worst over samples; ``inf`` when ``a`` is not finite. Channels are merged: every output
    sums over them, so a region's scale is its largest channel. Samples are taken in chunks
    whose magnitudes (and their edge padding) stay under the workspace limit."""
    if a.size == 0:
        return 1.0
    nb = most(0, 2 * a[:1].nbytes, workspace_limit(), a.shape[0])
    return max(_chunk_ratio(a[n0:n1], geom) for n0, n1 in spans(a.shape[0], nb))


def _chunk_ratio(a, geom):
    xp = get_array_module(a)
    nd = geom.nd
    size = a.shape[2:]
    block = tuple(region_size(n, s) for n, s in zip(size, geom.span))
    counts = tuple(-(-n // b) for n, b in zip(size, block))
    mag = xp.abs(a)
    if any(c * b != n for c, b, n in zip(counts, block, size)):  # zeros do not change a maximum
        mag = xp.pad(mag, [(0, 0), (0, 0)] + [(0, c * b - n) for c, b, n in zip(counts, block, size)])
    # Leading axes first, with the contiguous last axis inside (fast), then the last axis.
    lead = tuple(v for cb in zip(counts[:-1], block[:-1]) for v in cb)
    mag = mag.reshape(mag.shape[:2] + lead + mag.shape[-1:]).max(axis=(1,) + tuple(range(3, 2 + 2 * (nd - 1), 2)))
    regions = mag.reshape(mag.shape[:-1] + (counts[-1], block[-1])).max(axis=-1).reshape(a.shape[0], -1)
    if not bool(xp.isfinite(regions).all()):
        return math.inf
    hi = regions.max(axis=1)
    lo = xp.where(regions > 0, regions, xp.inf).min(axis=1)
    ratio = xp.where(hi > 0, hi / lo, 1.0)
    return float(ratio.max())


def error_estimate(ratio, geom):
    """Estimated float32 FFT error relative to the smallest region's outputs."""
    return float(np.finfo(np.float32).eps) * math.log2(max(2, math.prod(fft_size(geom)))) * ratio


def work_dtype(signal, w, geom, dtype=None):
    """The dtype to transform ``dtype`` operands in, or ``None`` when a non-finite operand
    means: go direct. An operand given as ``None`` (shape known only) is taken as benign."""
    dtype = np.dtype(dtype or signal.dtype)
    if w is not None and not all_finite(w):
        return None
    ratio = 1.0 if signal is None else _region_ratio(signal, geom)
    if math.isinf(ratio):
        return None
    if dtype == np.float32 and error_estimate(ratio, geom) > FLOAT32_TOLERANCE:
        return np.dtype(np.float64)
    return dtype


# ----------------------------------------------------------------------------- algorithm

def _plane_bytes(size, dtype):
    """Bytes of one plane's spectrum (about those of one real plane of the transform size)."""
    return math.prod(size[:-1]) * (size[-1] // 2 + 1) * 2 * np.dtype(dtype).itemsize


def _chunking(args, size, dtype, c, r, weight=False):
    """``(samples, channels)`` per chunk of a pass that contracts ``c`` channels into ``r``
    per group: as many output channels as fit, then as many samples, so that the chunk's
    spectra stay under the workspace limit (at least one of each). Counted in planes: the
    samples' input planes and their spectra (``2 nb c``), the kernel's (``2 c kb``, or for
    the weight gradient its sum and the last product, ``3 c kb``) and the product's spectra
    and real planes (``2 nb G kb``)."""
    budget = workspace_limit() // _plane_bytes(size, dtype)
    kernel = 3 * c if weight else 2 * c
    kb = most(2 * c, kernel + 2 * args.groups, budget, r)
    nb = most(kernel * kb, 2 * c + 2 * args.groups * kb, budget, args.batch)
    return nb, kb


def correlate(x, w, args, dtype, out_dtype=None):
    """The forward pass computed in ``dtype`` (no guard): ``(N, K, *out)`` in ``out_dtype``
    (default ``dtype``), in chunks of samples and output channels (:func:`_chunking`)."""
    xp = get_array_module(x)
    geom, nd, groups = args.geom, args.nd, args.groups
    size = fft_size(geom)
    kg = args.out_channels // groups
    y = xp.empty((args.batch, args.out_channels) + geom.out_size, dtype=out_dtype or dtype)
    wg = grouped_weight(w, groups)  # (G, K_g, C_g, *k)
    nb, kb = _chunking(args, size, dtype, args.in_channels, kg)
    _contract(split_groups(y, groups), spans(args.batch, nb), spans(kg, kb),
              lambda n0, n1: _rfftn(_padded(x[n0:n1], args, size, dtype), size, nd),
              lambda k0, k1: _conjugated(_kernel_spectrum(wg[:, k0:k1], args, size, dtype)),
              _every(geom.stride, geom.out_size), size, nd)
    return y


def convolve_transposed(gy, w, args, dtype, out_dtype=None):
    """The input gradient computed in ``dtype`` (no guard): ``(N, C, *n)`` in ``out_dtype``
    (default ``dtype``), in chunks of samples and input channels."""
    xp = get_array_module(gy)
    geom, nd, groups = args.geom, args.nd, args.groups
    size = fft_size(geom)
    cg = args.in_channels // groups
    gx = xp.empty((args.batch, args.in_channels) + geom.in_size, dtype=out_dtype or dtype)
    wg = grouped_weight(w, groups)  # (G, K_g, C_g, *k)
    nb, cb = _chunking(args, size, dtype, args.out_channels, cg)
    _contract(split_groups(gx, groups), spans(args.batch, nb), spans(cg, cb),
              lambda n0, n1: _rfftn(_embed(_spatial_first(gy[n0:n1], groups, nd), size, nd, dtype, geom.stride),
                                    size, nd),
              lambda c0, c1: _kernel_spectrum(wg[:, :, c0:c1], args, size, dtype).swapaxes(-1, -2),
              tuple(slice(lo, lo + n) for n, (lo, _) in zip(geom.in_size, geom.pad)), size, nd)
    return gx


def _contract(out, samples, channels, source, kernel, cells, size, nd):
    """The loop of :func:`correlate` and :func:`convolve_transposed`: for each chunk of
    ``samples``, the spectrum ``source(n0, n1)`` (``(*F, G, nb, S)``, ``S`` channels
    contracted) times the kernel's spectrum ``kernel(r0, r1)`` (``(F, G, S, rb)``, made once
    when ``channels`` is one chunk) for each chunk of ``channels``, back to space, and its
    ``cells`` written into ``out[n0:n1, :, r0:r1]`` (``out``: ``(N, G, R, *sp)``)."""
    kept = [kernel(*channels[0])] if len(channels) == 1 else None
    for n0, n1 in samples:
        spec = source(n0, n1)
        freq = spec.shape[:nd]
        spec = _frequency_major(spec, nd)  # (F, G, nb, S)
        for i, (r0, r1) in enumerate(channels):
            wspec = kept[i] if kept else kernel(r0, r1)
            prod = matmul(spec, wspec)  # (F, G, nb, rb)
            del wspec
            z = _irfftn(prod.reshape(freq + prod.shape[1:]), size, nd)
            del prod
            out[n0:n1, :, r0:r1] = _channels_first_view(z[cells], nd)


def _channels_first_view(a, nd):
    """``(*sp, G, N, R) -> (N, G, R, *sp)`` (a view)."""
    return a.transpose((nd + 1, nd, nd + 2) + tuple(range(nd)))


def weight_gradient(gy, x, args, dtype):
    """The weight gradient computed in ``dtype`` (no guard): ``(K, C_g, *k)``, in chunks of
    output channels; within one, the spectral products are summed over chunks of samples."""
    xp = get_array_module(gy)
    geom, nd, groups = args.geom, args.nd, args.groups
    size = fft_size(geom)
    kg, cg = args.out_channels // groups, args.in_channels // groups
    gw = xp.empty((args.out_channels, cg) + geom.kernel, dtype=dtype)
    gwg = grouped_weight(gw, groups)  # (G, K_g, C_g, *k)
    nb, kb = _chunking(args, size, dtype, args.in_channels, kg, weight=True)
    freq = size[:-1] + (size[-1] // 2 + 1,)
    for k0, k1 in spans(kg, kb):
        acc = xp.zeros((math.prod(freq), groups, k1 - k0, cg), dtype=np.result_type(dtype, np.complex64))
        for n0, n1 in spans(args.batch, nb):
            g = _grouped_spatial_first(split_groups(gy[n0:n1], groups)[:, :, k0:k1], nd)
            gspec = _frequency_major(_rfftn(_embed(g, size, nd, dtype, geom.stride), size, nd), nd)
            xspec = _frequency_major(_rfftn(_padded(x[n0:n1], args, size, dtype), size, nd), nd)
            acc += matmul(_conjugated(gspec).swapaxes(-1, -2), xspec)  # (F, G, kb, C_g)
            del gspec, xspec
        gwd = _irfftn(acc.reshape(freq + acc.shape[1:]), size, nd)
        del acc
        gwg[:, k0:k1] = gwd[_every(geom.dilation, geom.kernel)].transpose((nd, nd + 1, nd + 2) + tuple(range(nd)))
    return gw


@dataclass(frozen=True)
class Passes:
    """The FFT's passes in the working ``dtype`` its guard chose (results keep the operands' dtype)."""

    dtype: np.dtype

    def forward(self, x, w, args):
        return correlate(x, w, args, self.dtype, x.dtype)

    def grad_input(self, gy, w, args):
        return convolve_transposed(gy, w, args, self.dtype, gy.dtype)

    def grad_weight(self, gy, x, args):
        # Each weight-gradient entry sums over the whole input, so its direct error is
        # relative to the same global magnitude as the FFT's: only non-finite data is routed.
        if not all_finite(gy, x):
            return direct.grad_weight(gy, x, args)
        return weight_gradient(gy, x, args, gy.dtype)


# ----------------------------------------------------------------------------- protocol

def supports(args):
    return None  # every convolution


def prepare(x, w, args):
    """The guard, run once on the signal ``x`` and the kernel ``w`` (either may be unknown:
    ``None``): the FFT in the dtype it chose, or direct sums for non-finite operands."""
    dtype = dtype_of(x, w, args)
    work = work_dtype(x, w, args.geom, dtype)
    if work is None:
        return direct.prepare(x, w, args, note="fft hands non-finite operands to direct")
    return Prepared("fft", args, work, Passes(work), f"fft in {work.name}" if work != dtype else "")
