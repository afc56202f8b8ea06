"""The convolution family: conv, its backward pass, and the transposed convolution.

All public ``conv{1,2,3}d*`` functions are made from the generic functions here; the
algorithms they dispatch to live in :mod:`convlab.reference` (and :mod:`convlab.cuda.conv`
for CuPy arrays) and each provides
``forward(x, w, args)``, ``grad_input(gy, w, args)`` and ``grad_weight(gy, x, args)``,
and, when it cannot serve every convolution, ``unsupported(args)`` (the reason or None).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from . import _cost
from . import _params as P
from ._backend import get_array_module
from ._nd import family
from .cuda import conv as cuda
from .reference import direct, fft, im2col, naive, separable, winograd

ALGORITHMS = {"naive": naive, "direct": direct, "im2col": im2col, "fft": fft, "separable": separable,
              "winograd": winograd, "cuda": cuda}
CHOICES = ("auto",) + tuple(ALGORITHMS)
# What "auto" chooses among (the loop oracle is for checking only).
CANDIDATES = tuple(_cost.FEATURES)


def _algorithm(name, args, signal, w):
    """The algorithm module for ``name``; ``signal`` is the array the pass slides over (x, or
    the output gradient of a transposed pass) and ``w`` the kernel, used by "auto"."""
    if not isinstance(name, str):
        raise TypeError(f"algorithm must be a string, one of {CHOICES}, got {name!r}")
    if name == "auto":
        return _choose_runner(args, signal.dtype, signal, w)[1]
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {CHOICES}")
    reason = _unsupported(name, args)
    if reason:
        raise ValueError(reason)
    return ALGORITHMS[name]


def _unsupported(name, args):
    check = getattr(ALGORITHMS[name], "unsupported", None)
    return check(args) if check else None


def _flip(w, nd):
    return w[(Ellipsis,) + (slice(None, None, -1),) * nd]


def _bias_view(b, nd):
    return b.reshape((1, -1) + (1,) * nd)


def _sum_bias_grad(gy, nd):
    return gy.sum(axis=(0,) + tuple(range(2, 2 + nd)))


# ----------------------------------------------------------------------------- choice

@dataclass(frozen=True)
class Choice:
    """What ``algorithm="auto"`` runs for a convolution, and why."""

    algorithm: str
    reason: str


_measured: dict = {}


def _key(args, dtype):
    return (args.batch, args.in_channels, args.out_channels, args.groups, args.geom, np.dtype(dtype).name)


def _choose(args, dtype, signal=None, w=None):
    """The cheapest algorithm by the cost model (or by measurement, once measured) that can
    serve the arguments within its precision guard. Never fails: "direct" serves everything.

    With the operands given, "separable" is considered only for a separable ``w`` and "fft"
    is costed in float64 when its guard would promote a float32 ``signal``, and dropped
    for a non-finite one (it would fall back to "direct" anyway)."""
    return _choose_runner(args, dtype, signal, w)[0]


def _choose_runner(args, dtype, signal=None, w=None):
    """``(Choice, what to run)``: the algorithm module, or the FFT with its guard's decision
    made (so that the signal is not scanned twice)."""
    if signal is not None and cuda.unavailable(args, signal) is None:
        return Choice("cuda", "CuPy arrays and the CUDA extension: the kernels of csrc/conv2d.cu"), cuda
    measured = _measured.get(_key(args, dtype))
    if measured is not None and (measured.algorithm != "separable" or _is_separable(w)):
        return measured, ALGORITHMS[measured.algorithm]
    dtype = np.dtype(dtype)
    costs = dict(_predicted(args, dtype))
    notes, work = [], None
    while True:
        best = min(costs, key=costs.get)
        if best == "separable" and not _is_separable(w):
            del costs[best]
            continue
        if best == "fft" and signal is not None and w is not None and work is None:
            work = fft.work_dtype(signal, w, args.geom) or "non-finite"
            if work == "non-finite":
                notes.append("fft skipped: non-finite operands")
                del costs[best]
                continue
            if work != dtype:
                notes.append("fft in float64")
                costs[best] = _cost.predict(best, args, work)
                continue
        break
    ranked = " < ".join(f"{name} {costs[name] * 1e3:.3g} ms" for name in sorted(costs, key=costs.get))
    choice = Choice(best, "predicted " + ranked + (f" ({'; '.join(notes)})" if notes else ""))
    return choice, fft.Decided(work) if best == "fft" and work is not None else ALGORITHMS[best]


@functools.lru_cache(maxsize=1024)
def _predicted(args, dtype):
    """The cost model's predicted seconds of every candidate that can serve ``args`` (by shape)."""
    return tuple((name, _cost.predict(name, args, dtype)) for name in CANDIDATES if not _unsupported(name, args))


_separable_memo: dict = {}
MEMO_BYTES = 1 << 16


def _is_separable(w):
    """Whether ``w`` is separable within tolerance; small kernels' answers are remembered by
    content (auto asks on every call, and a layer keeps its kernel)."""
    if w is None:
        return False
    key = (w.shape, w.dtype.str, w.tobytes()) if w.nbytes <= MEMO_BYTES and isinstance(w, np.ndarray) else None
    if key in _separable_memo:
        return _separable_memo[key]
    answer = separable.factor(w)[1] <= separable.rtol(w.dtype)
    if key is not None:
        if len(_separable_memo) >= 256:
            _separable_memo.clear()
        _separable_memo[key] = answer
    return answer


def _time_once(algo, x, w, args):
    t0 = time.perf_counter()
    algo.forward(x, w, args)
    return time.perf_counter() - t0


def choose_algorithm(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, *,
                     dtype="float32", measure=False, w=None) -> Choice:
    """What ``algorithm="auto"`` would use for ``conv`` with these shapes, and why.

    ``x_shape`` is ``(N, C, *n)`` and ``w_shape`` ``(K, C/groups, *k)``; the number of
    spatial dims is taken from them. The choice minimises the cost model's predicted time
    (constants fitted on this machine, see docs/algorithms.md) over the algorithms that
    can serve the arguments; "separable" is considered only when the kernel ``w`` is given
    and separable. With ``measure=True`` each candidate is timed once on random data of
    these shapes and the fastest is cached per shape: later ``"auto"`` calls use it.
    """
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    nd = len(x_shape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"x_shape must have 3 to 5 dims (N, C, *spatial), got {x_shape}")
    args = P.conv_shape_args(x_shape, w_shape, stride, padding, dilation, groups, nd)
    dtype = np.dtype(dtype)
    if dtype not in P.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    if w is not None:
        P.check_shape(w, w_shape, "w")
    if not measure:
        return _choose(args, dtype, w=w)
    key = _key(args, dtype)
    if key not in _measured:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(x_shape).astype(dtype)
        wt = rng.standard_normal(w_shape).astype(dtype) if w is None else w.astype(dtype)
        times = {name: _time_once(ALGORITHMS[name], x, wt, args) for name in CANDIDATES
                 if not _unsupported(name, args) and (name != "separable" or _is_separable(wt))}
        best = min(times, key=times.get)
        _measured[key] = Choice(best, "measured: " + ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in times.items()))
    return _measured[key]


# ----------------------------------------------------------------------------- convolution

def conv(nd, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False, algorithm="auto"):
    """{nd}-d convolution (cross-correlation unless ``flip=True``) with stride, padding, dilation, groups.

    Shapes: ``x (N, C, {sp})``, ``w (K, C/groups, {ksp})``, ``b (K,)`` -> ``(N, K, {osp})``.

    Eq. 9.7/9.8 of the book with batch, groups, stride ``s``, dilation ``d`` and zero
    padding ``lo`` (``V`` is zero outside the input, ``g`` the group of channel ``k``)::

        Z[n, k, j] = b[k] + sum_{{c, m}} V[n, g*C_g + c, j*s + m*d - lo] * K[k, c, m]

    ``flip=True`` flips the kernel on every spatial axis: true convolution, eq. 9.1-9.4.
    ``padding``: int, per-dim ints, per-dim ``(lo, hi)`` pairs, ``"valid"``, ``"same"``
    (output ``ceil(n/s)``, odd extra pad at the end) or ``"full"`` (``d*(k-1)`` each side).
    Output size per axis: ``floor((n + lo + hi - d*(k-1) - 1) / s) + 1``.
    ``algorithm``: ``"naive"`` (the loop oracle), ``"direct"``, ``"im2col"``, ``"fft"``,
    ``"separable"`` (rank-1 kernels, factored by SVD), ``"winograd"`` (3-tap kernels,
    stride 1, dilation 1) or ``"auto"`` (the cheapest that serves the arguments, see
    ``choose_algorithm``), or ``"cuda"`` (CuPy arrays, 1-d and 2-d: the kernels of
    csrc/conv2d.cu, which ``"auto"`` picks when the extension is built); an algorithm that
    cannot serve them raises ``ValueError``.
    """
    args = P.conv_args(x, w, b, stride, padding, dilation, groups, nd)
    if not isinstance(flip, bool):
        raise TypeError(f"flip must be a bool, got {flip!r}")
    wf = _flip(w, nd) if flip else w
    y = _algorithm(algorithm, args, x, wf).forward(x, wf, args)
    if b is not None:
        y += _bias_view(b, nd)
    return y


def conv_backward(nd, grad_y, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *,
                  flip=False, algorithm="auto", needs=(True, True, True)):
    """Backward pass of ``conv{nd}d``: ``(grad_x, grad_w, grad_b)``; ``grad_b`` is None without ``b``.

    ``needs=(grad_x, grad_w, grad_b)`` says which gradients to compute; the others are None
    (a network's first layer needs no ``grad_x``).

    Shapes: ``grad_y (N, K, {osp})`` (the forward output's shape), ``x (N, C, {sp})``,
    ``w (K, C/groups, {ksp})`` -> ``grad_x`` like ``x``, ``grad_w`` like ``w``, ``grad_b (K,)``.

    Eq. 9.11-9.13 with ``G = dL/dZ``::

        grad_w[k, c, m]    = sum_{{n, j}} G[n, k, j] V[n, g*C_g + c, j*s + m*d - lo]
        grad_x[n, g*C_g + c, i] = sum_{{k in g, j, m : j*s + m*d - lo = i}} G[n, k, j] K[k, c, m]
        grad_b[k]          = sum_{{n, j}} G[n, k, j]
    """
    args = P.conv_args(x, w, b, stride, padding, dilation, groups, nd)
    P.check_grad_y(grad_y, x, (args.batch, args.out_channels) + args.geom.out_size)
    need_x, need_w, need_b = P.needs(needs, b)
    wf = _flip(w, nd) if flip else w
    algo = _algorithm(algorithm, args, grad_y, wf) if need_x or need_w else None
    gx = algo.grad_input(grad_y, wf, args) if need_x else None
    gw = algo.grad_weight(grad_y, x, args) if need_w else None
    if flip and need_w:
        gw = get_array_module(gw).ascontiguousarray(_flip(gw, nd))
    gb = _sum_bias_grad(grad_y, nd) if need_b else None
    return gx, gw, gb


# ----------------------------------------------------------------------------- transposed

def conv_transpose(nd, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                   algorithm="auto"):
    """{nd}-d transposed convolution: the adjoint of ``conv{nd}d`` (the book's h(K, H, s), section 9.5).

    Shapes (PyTorch's layout): ``x (N, C_in, {sp})``, ``w (C_in, C_out/groups, {ksp})``,
    ``b (C_out,)`` -> ``(N, C_out, {osp})`` with, per axis,
    ``out = (n - 1)*s - lo - hi + d*(k - 1) + output_padding + 1``.

    It is the input gradient of the convolution that maps ``(N, C_out, *out)`` to
    ``(N, C_in, *n)`` with weight ``w``::

        Y[n, g*C_g + c, i] = b[c'] + sum_{{k in g, j, m : j*s + m*d - lo = i}} X[n, k, j] W[k, c, m]

    ``padding`` is an int, per-dim ints or per-dim ``(lo, hi)`` pairs; ``output_padding``
    (smaller than the stride or the dilation) adds cells at the high end of each axis.
    """
    args = P.conv_transpose_args(x, w, b, stride, padding, output_padding, groups, dilation, nd)
    y = _algorithm(algorithm, args, x, w).grad_input(x, w, args)
    if b is not None:
        y += _bias_view(b, nd)
    return y


def conv_transpose_backward(nd, grad_y, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1,
                            dilation=1, *, algorithm="auto", needs=(True, True, True)):
    """Backward pass of ``conv_transpose{nd}d``: ``(grad_x, grad_w, grad_b)``; ``needs`` as in
    ``conv{nd}d_backward``.

    Shapes: ``grad_y (N, C_out, {osp})``, ``x (N, C_in, {sp})``, ``w (C_in, C_out/groups, {ksp})``.
    The input gradient is the forward convolution of ``grad_y`` with ``w``; the weight
    gradient is the convolution's weight gradient with the roles of input and output
    exchanged::

        grad_x = conv(grad_y, w)            grad_w[k, c, m] = sum_{{n, j}} X[n, k, j] G[n, g*C_g + c, j*s + m*d - lo]
    """
    args = P.conv_transpose_args(x, w, b, stride, padding, output_padding, groups, dilation, nd)
    P.check_grad_y(grad_y, x, (args.batch, args.in_channels) + args.geom.in_size)
    need_x, need_w, need_b = P.needs(needs, b)
    algo = _algorithm(algorithm, args, grad_y, w) if need_x or need_w else None
    gx = algo.forward(grad_y, w, args) if need_x else None
    gw = algo.grad_weight(x, grad_y, args) if need_w else None
    gb = _sum_bias_grad(grad_y, nd) if need_b else None
    return gx, gw, gb


__all__ = (family(conv, "conv", globals()) + family(conv_backward, "conv", globals(), "_backward")
           + family(conv_transpose, "conv_transpose", globals())
           + family(conv_transpose_backward, "conv_transpose", globals(), "_backward")
           + ["choose_algorithm", "Choice"])
