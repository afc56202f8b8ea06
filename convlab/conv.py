"""The convolution family: conv, its backward pass, and the transposed convolution.

All public ``conv{1,2,3}d*`` functions are made from the generic functions here. The
algorithms they dispatch to live in :mod:`convlab.reference` (and :mod:`convlab.cuda.conv`
for CuPy arrays); each follows the protocol of :mod:`convlab._protocol`: ``supports(args)``
says from the shapes why it cannot serve them, ``prepare(x, w, args)`` looks at the operands
once and returns a ``Prepared`` with ``forward``, ``grad_input``, ``grad_weight`` and
``cost()``. ``"auto"`` prepares the candidates and runs the cheapest.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import _cost
from . import _params as P
from ._backend import get_array_module, workspace_limit
from ._nd import family
from ._protocol import dtype_of, ready
from .cuda import conv as cuda
from .reference import direct, fft, im2col, naive, separable, winograd

ALGORITHMS = {"naive": naive, "direct": direct, "im2col": im2col, "fft": fft, "separable": separable,
              "winograd": winograd, "cuda": cuda}
CHOICES = ("auto",) + tuple(ALGORITHMS)


def _prepare(name, args, x, w):
    """Algorithm ``name`` (or ``"auto"``'s choice) prepared for ``args``: ``x`` is the array
    the pass slides over (the input, or the output gradient of a backward or transposed
    pass) and ``w`` the kernel. ``ValueError`` saying why when it cannot serve them."""
    if not isinstance(name, str):
        raise TypeError(f"algorithm must be a string, one of {CHOICES}, got {name!r}")
    if name == "auto":
        return _pick(args, x, w)[0]
    if name not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {name!r}; expected one of {CHOICES}")
    return ready(ALGORITHMS[name].prepare(x, w, args))


def _flip(w, nd):
    return w[(Ellipsis,) + (slice(None, None, -1),) * nd]


def _bias_view(b, nd):
    return b.reshape((1, -1) + (1,) * nd)


def _sum_bias_grad(gy, nd):
    return gy.sum(axis=(0,) + tuple(range(2, 2 + nd)))


# ----------------------------------------------------------------------------- choice

@dataclass(frozen=True)
class Choice:
    """What ``algorithm="auto"`` runs for a convolution, and why (``prepared``: ready to run)."""

    algorithm: str
    reason: str
    prepared: object = field(default=None, repr=False, compare=False)


_measured: dict = {}


def _key(args, dtype):
    return (args.batch, args.in_channels, args.out_channels, args.groups, args.geom, np.dtype(dtype).name)


def _ranked(args, dtype, on_host=False):
    """``(ranking, estimates)``: ``(estimate, name)`` of every algorithm that can serve ``args``
    by shape, cheapest first (registry order among equals), and the finite estimates by
    name: the cost model's prediction from the shapes alone. ``on_host``: the operands are
    NumPy arrays, which the algorithms that take only device arrays cannot serve."""
    return _ranked_with(args, np.dtype(dtype), _cost.version(), workspace_limit(), on_host)


@functools.lru_cache(maxsize=1024)
def _ranked_with(args, dtype, constants, limit, on_host):
    """:func:`_ranked` for the cost model's ``constants`` (their version) and workspace ``limit``."""
    costs = [(_cost.predict(name, args, dtype), name) for name, module in ALGORITHMS.items()
             if not module.supports(args) and not (on_host and getattr(module, "DEVICE", None) == "gpu")]
    ranked = tuple(sorted(costs, key=lambda c: c[0]))
    return ranked, {name: estimate for estimate, name in ranked if math.isfinite(estimate)}


def _pick(args, x=None, w=None):
    """``(prepared, costs, notes)``: what ``"auto"`` runs on operands ``x`` and ``w`` (see
    :func:`_prepare`; ``None`` when only the shape is known), the predicted seconds of the
    candidates looked at, and what their ``prepare`` said; ``costs`` is ``None`` for a
    measured choice (:func:`choose_algorithm`), which is used when it can serve the operands.

    Candidates are prepared cheapest estimate first, and the search stops at the first
    estimate that cannot beat the best prepared cost (preparing does not lower a cost: it
    can only promote the FFT to float64), so the operands are looked at only by the
    algorithms that may win. A candidate that cannot serve the operands, or hands them to
    another algorithm, drops out. Never fails: "direct" serves everything."""
    dtype = dtype_of(x, w, args)
    if _measured:
        measured = _measured.get(_key(args, dtype))
        if measured is not None:
            prepared = ALGORITHMS[measured.algorithm].prepare(x, w, args)
            if not isinstance(prepared, str) and prepared.name == measured.algorithm:
                return prepared, None, [measured.reason]
    ranked, estimates = _ranked(args, dtype, isinstance(x, np.ndarray))
    costs = dict(estimates)
    best, notes = None, []
    for estimate, name in ranked:
        if best is not None and estimate >= costs[best.name]:
            break
        prepared = ALGORITHMS[name].prepare(x, w, args)
        if isinstance(prepared, str) or prepared.name != name:
            costs.pop(name, None)
            notes += [prepared.note] if not isinstance(prepared, str) and prepared.note else []
            continue
        costs[name] = prepared.cost()
        notes += [prepared.note] if prepared.note else []
        if best is None or costs[name] < costs[best.name]:
            best = prepared
    return best, costs, notes


def _choose(args, x=None, w=None) -> Choice:
    """:func:`_pick`'s choice as a :class:`Choice`, with the ranking it was made from."""
    best, costs, notes = _pick(args, x, w)
    if costs is None:
        return Choice(best.name, notes[0], best)
    ranking = " < ".join(f"{name} {costs[name] * 1e3:.3g} ms" for name in sorted(costs, key=costs.get))
    return Choice(best.name, "predicted " + ranking + (f" ({'; '.join(notes)})" if notes else ""), best)


def _time_once(prepared, x, w):
    t0 = time.perf_counter()
    prepared.forward(x, w)
    return time.perf_counter() - t0


def choose_algorithm(x_shape, w_shape, stride=1, padding=0, dilation=1, groups=1, *,
                     dtype="float32", measure=False, w=None) -> Choice:
    """What ``algorithm="auto"`` would use for ``conv`` with these shapes, and why.

    ``x_shape`` is ``(N, C, *n)`` and ``w_shape`` ``(K, C/groups, *k)``; the number of
    spatial dims is taken from them. The choice minimises the cost model's predicted time
    over the algorithms that can serve the arguments (docs/algorithms.md; the constants in
    use, and the machine and date they were fitted on, are ``convlab._cost.constants()``:
    this machine's when ``convlab tune`` has been run, else the package's). "separable" is
    considered only when the kernel ``w`` is given and separable. With ``measure=True`` each candidate is timed once on random data of these shapes and
    the fastest is cached per shape: later ``"auto"`` calls use it.
    """
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    nd = len(x_shape) - 2
    if nd not in (1, 2, 3):
        raise ValueError(f"x_shape must have 3 to 5 dims (N, C, *spatial), got {x_shape}")
    dtype = np.dtype(dtype)
    if dtype not in P.FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    args = P.conv_shape_args(x_shape, w_shape, stride, padding, dilation, groups, nd, dtype)
    if w is not None:
        P.check_shape(w, w_shape, "w")
    if not measure:
        return dataclasses.replace(_choose(args, None, w), prepared=None)
    key = _key(args, dtype)
    if key not in _measured:
        rng = np.random.default_rng(0)
        x = rng.standard_normal(x_shape).astype(dtype)
        wt = rng.standard_normal(w_shape).astype(dtype) if w is None else w.astype(dtype)
        times = {}
        for name, module in ALGORITHMS.items():
            prepared = module.prepare(x, wt, args)
            if not isinstance(prepared, str) and prepared.name == name and math.isfinite(prepared.cost()):
                times[name] = _time_once(prepared, x, wt)
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
    y = _prepare(algorithm, args, x, wf).forward(x, wf)
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
    algo = _prepare(algorithm, args, grad_y, wf) if need_x or need_w else None
    gx = algo.grad_input(grad_y, wf) if need_x else None
    gw = algo.grad_weight(grad_y, x) if need_w else None
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
    y = _prepare(algorithm, args, x, w).grad_input(x, w)
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
    algo = _prepare(algorithm, args, grad_y, w) if need_x or need_w else None
    gx = algo.forward(grad_y, w) if need_x else None
    gw = algo.grad_weight(x, grad_y) if need_w else None
    gb = _sum_bias_grad(grad_y, nd) if need_b else None
    return gx, gw, gb


__all__ = (family(conv, "conv", globals()) + family(conv_backward, "conv", globals(), "_backward")
           + family(conv_transpose, "conv_transpose", globals())
           + family(conv_transpose_backward, "conv_transpose", globals(), "_backward")
           + ["choose_algorithm", "Choice"])
