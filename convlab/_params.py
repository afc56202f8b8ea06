"""Argument normalisation, validation and output-size math: the one place for all of it.

Every public op turns its arguments into a :class:`Geometry` here, and every algorithm
(reference or CUDA) reads sizes, padding, stride and dilation from that object alone.

Notation (per spatial axis): input size ``n``, kernel size ``k``, stride ``s``,
dilation ``d``, padding ``lo``/``hi``. The kernel spans ``d*(k-1) + 1`` input cells
and the output size is::

    out = floor((n + lo + hi - d*(k-1) - 1) / s) + 1
"""
from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass

import numpy as np

from ._backend import get_array_module

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def hash_once(cls):
    """A frozen dataclass whose instances hash their fields once: they key every shape-keyed
    cache (plans, rankings, predictions), each looked up on every call. The hash stays out
    of pickles (string hashes differ between processes)."""

    def __hash__(self):
        try:
            return self.__dict__["_hash"]
        except KeyError:
            h = hash(tuple(getattr(self, f.name) for f in dataclasses.fields(self)))
            object.__setattr__(self, "_hash", h)
            return h

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    cls.__hash__, cls.__getstate__ = __hash__, __getstate__
    return cls


@hash_once
@dataclass(frozen=True)
class Geometry:
    """Sizes of one sliding-window op along its spatial axes.

    ``in_size`` is the unpadded input, ``pad`` holds ``(lo, hi)`` per axis and
    ``out_size`` the number of window positions per axis.
    """

    in_size: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    pad: tuple
    out_size: tuple

    @property
    def nd(self) -> int:
        return len(self.in_size)

    @functools.cached_property
    def span(self) -> tuple:
        """Input cells covered by one (dilated) window, per axis."""
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation))

    @functools.cached_property
    def overhang(self) -> tuple:
        """Cells past the high padding that the last window reads, per axis: 0 except under a
        pool's ``ceil_mode``, whose last window may run off the end (those cells hold the pad value)."""
        return tuple(max(0, (o - 1) * s + sp - (n + lo + hi))
                     for o, s, sp, n, (lo, hi) in zip(self.out_size, self.stride, self.span, self.in_size, self.pad))

    @functools.cached_property
    def padded_size(self) -> tuple:
        """Size of the padded input the windows read: ``n + lo + hi`` plus any :attr:`overhang`."""
        return tuple(n + lo + hi + e for n, (lo, hi), e in zip(self.in_size, self.pad, self.overhang))


# ----------------------------------------------------------------------------- memo

_NOT_PLAIN = object()
MEMO_SIZE = 4096


def _plain_key(values):
    """``values`` as a cache key when each is an exact int, str, ``None``, dtype, or a tuple of
    ints or of int tuples (shapes, per-axis values, ``(lo, hi)`` pairs), with bools tagged
    (``True == 1`` would otherwise let ``ceil_mode=1`` pass as ``True``); else ``_NOT_PLAIN``
    (floats, lists, NumPy scalars: parsed every time)."""
    tagged = False
    for v in values:
        t = type(v)
        if t is int or v is None or t is str:
            continue
        if t is tuple:
            for e in v:
                if type(e) is not int and not (type(e) is tuple and all(type(f) is int for f in e)):
                    return _NOT_PLAIN
        elif t is bool:
            tagged = True
        elif not isinstance(v, np.dtype):
            return _NOT_PLAIN
    return tuple((bool, v) if type(v) is bool else v for v in values) if tagged else values


def memo(fn):
    """``fn`` remembered by the exact values of its (positional) arguments: parsing and
    validating depend on shapes and parameters alone, so a call with the arguments of an
    earlier one returns its (frozen) result. Arguments that are not plain values
    (:func:`_plain_key`) are parsed every time; errors are never remembered."""
    cache = {}

    @functools.wraps(fn)
    def remembered(*values, **named):
        key = _NOT_PLAIN if named else _plain_key(values)
        if key is _NOT_PLAIN:
            return fn(*values, **named)
        try:
            return cache[key]
        except KeyError:
            pass
        result = fn(*values)
        if len(cache) >= MEMO_SIZE:
            cache.clear()
        cache[key] = result
        return result

    remembered.cache_clear = cache.clear
    return remembered


# ----------------------------------------------------------------------------- scalars

def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def ntuple(value, nd: int, name: str, minimum: int | None = None) -> tuple:
    """An int or a sequence of ``nd`` ints -> tuple of ``nd`` Python ints."""
    if _is_int(value):
        out = (int(value),) * nd
    elif isinstance(value, (tuple, list)):
        if len(value) != nd:
            raise ValueError(f"{name} must be an int or {nd} ints (one per spatial dim), got {value!r}")
        if not all(_is_int(v) for v in value):
            raise TypeError(f"{name} must hold ints, got {value!r}")
        out = tuple(int(v) for v in value)
    else:
        raise TypeError(f"{name} must be an int or a tuple of {nd} ints, got {type(value).__name__} {value!r}")
    if minimum is not None and any(v < minimum for v in out):
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return out


def boolean(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return bool(value)


def pool_indices(indices, grad_y, name="indices"):
    """Check the flat plane indices a max pool returned: int64, ``grad_y``'s shape and device.
    Their values (each in ``[-1, cells)``) are checked by the pass that uses them, which reads
    them anyway (``convlab.reference.pool.scatter_planes``)."""
    xp = get_array_module(grad_y)
    try:
        mod = get_array_module(indices, name=name)
    except TypeError:
        raise TypeError(f"{name} must be an array of int64 plane indices, got {type(indices).__name__}") from None
    if mod is not xp:
        raise TypeError(f"{name} must be on the same device as grad_y")
    if indices.dtype != np.int64:
        raise TypeError(f"{name} must be int64 (the forward's return_indices), got dtype {indices.dtype}")
    check_shape(indices, grad_y.shape, name, " (grad_y's shape)")
    return indices


def needs(value, b=None) -> tuple:
    """``needs=(grad_x, grad_w, grad_b)`` of a backward function: which gradients to compute.
    ``grad_b`` is never needed without a bias."""
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise TypeError(f"needs must be a tuple of 3 bools (grad_x, grad_w, grad_b), got {value!r}")
    x, w, bias = (boolean(v, "needs") for v in value)
    return x, w, bias and b is not None


def positive_int(value, name: str) -> int:
    if not _is_int(value):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


# ----------------------------------------------------------------------------- padding

PADDING_STRINGS = ("valid", "same", "full")


def same_padding(n: int, k: int, s: int, d: int) -> tuple:
    """TensorFlow/PyTorch ``"same"``: output ``ceil(n/s)``, the odd extra cell at the end."""
    total = max((math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n, 0)
    return (total // 2, total - total // 2)


def parse_padding(padding, nd: int, *, kernel=None, stride=None, dilation=None, in_size=None,
                  allow_strings: bool = True, name: str = "padding") -> tuple:
    """Normalise ``padding`` to ``((lo, hi),) * nd``.

    Accepts an int, ``nd`` ints, ``nd`` ``(lo, hi)`` pairs, or (when ``allow_strings``)
    ``"valid"``, ``"same"`` (output ``ceil(n/s)``) and ``"full"`` (``d*(k-1)`` each side).
    """
    if isinstance(padding, str):
        if not allow_strings:
            raise ValueError(f"{name} must be an int, per-dim ints or (lo, hi) pairs here, got {padding!r}")
        if padding == "valid":
            return ((0, 0),) * nd
        if padding == "same":
            return tuple(same_padding(n, k, s, d) for n, k, s, d in zip(in_size, kernel, stride, dilation))
        if padding == "full":
            return tuple((d * (k - 1),) * 2 for k, d in zip(kernel, dilation))
        raise ValueError(f"{name} string must be one of {PADDING_STRINGS}, got {padding!r}")
    if isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list)) for p in padding):
        if len(padding) != nd or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in padding):
            raise ValueError(f"{name} as pairs must be {nd} (lo, hi) pairs, got {padding!r}")
        pairs = tuple(ntuple(tuple(p), 2, name, minimum=0) for p in padding)
    else:
        pairs = tuple((p, p) for p in ntuple(padding, nd, name, minimum=0))
    return pairs


# ----------------------------------------------------------------------------- sizes

def out_size(n: int, k: int, s: int, d: int, lo: int, hi: int, ceil_mode: bool = False) -> int:
    """Window positions along one axis; with ``ceil_mode`` the last partial window counts
    unless it would start inside the right padding (PyTorch's pooling rule)."""
    span = d * (k - 1) + 1
    avail = n + lo + hi - span
    if avail < 0:
        return 0
    if ceil_mode:
        out = -(-avail // s) + 1
        if (out - 1) * s >= n + lo:
            out -= 1
        return out
    return avail // s + 1


# Cells of one float64 plane that an address can reach: larger sizes can never be allocated.
MAX_CELLS = np.iinfo(np.intp).max // 8


def check_cells(sizes, why: str):
    """A plane of ``sizes`` must fit in memory addresses; else ``ValueError`` saying ``why``
    it is that large (the arguments to blame)."""
    if math.prod(sizes) > MAX_CELLS:
        raise ValueError(f"{why} leads to a plane of shape {tuple(sizes)}: more cells than an array can hold")


def make_geometry(in_size, kernel, stride, dilation, pad, *, ceil_mode=False, what="input") -> Geometry:
    check_cells(tuple(n + lo + hi for n, (lo, hi) in zip(in_size, pad)), f"padding {tuple(pad)} of the {what}")
    outs = tuple(out_size(n, k, s, d, lo, hi, ceil_mode)
                 for n, k, s, d, (lo, hi) in zip(in_size, kernel, stride, dilation, pad))
    if any(o < 1 for o in outs):
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_size, pad))
        raise ValueError(f"kernel larger than the padded {what}: padded {what} spatial size {padded}, "
                         f"dilated kernel size {span} (kernel {tuple(kernel)}, dilation {tuple(dilation)})")
    return Geometry(tuple(in_size), tuple(kernel), tuple(stride), tuple(dilation), tuple(pad), outs)


# ----------------------------------------------------------------------------- arrays

def check_array(x, name: str, xp=None):
    """``x`` must be a float32/float64 NumPy or CuPy array (of module ``xp`` if given)."""
    mod = np if type(x) is np.ndarray else get_array_module(x, name=name)  # the common case first
    if xp is not None and mod is not xp:
        raise TypeError(f"{name} is a {mod.__name__} array but the other operands are {xp.__name__} arrays; "
                        "move them to one device first")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got dtype {x.dtype}")
    return mod


def check_ndim(x, nd: int, name: str, layout: str = "(N, C, *spatial)"):
    if x.ndim != nd + 2:
        raise ValueError(f"{name} must have {nd + 2} dims {layout} for a {nd}-d op, got shape {tuple(x.shape)}")


def check_same_dtype(ref, other, ref_name: str, name: str):
    if other.dtype != ref.dtype:
        raise TypeError(f"{name} has dtype {other.dtype} but {ref_name} has dtype {ref.dtype}; "
                        "cast one so they match")


def check_shape(a, expected: tuple, name: str, why: str = ""):
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)}{why}, got {tuple(a.shape)}")


# ----------------------------------------------------------------------------- conv family

@hash_once
@dataclass(frozen=True)
class ConvArgs:
    """A validated convolution: its geometry plus the channel bookkeeping, and the dtype of
    its operands (``None`` when it was made from shapes alone)."""

    geom: Geometry
    batch: int
    in_channels: int
    out_channels: int
    groups: int
    dtype: object = None

    @property
    def nd(self) -> int:
        return self.geom.nd


def conv_args(x, w, b, stride, padding, dilation, groups, nd: int) -> ConvArgs:
    """Validate a forward convolution ``x (N, C, *n)``, ``w (K, C/groups, *k)``, ``b (K,)``."""
    xp = check_array(x, "x")
    check_array(w, "w", xp)
    check_same_dtype(x, w, "x", "w")
    args = conv_shape_args(tuple(x.shape), tuple(w.shape), stride, padding, dilation, groups, nd, x.dtype)
    if b is not None:
        check_array(b, "b", xp)
        check_same_dtype(x, b, "x", "b")
        check_shape(b, (args.out_channels,), "b", f" (one bias per output channel of w {tuple(w.shape)})")
    return args


@memo
def conv_shape_args(x_shape, w_shape, stride, padding, dilation, groups, nd: int, dtype=None) -> ConvArgs:
    """The shape checks and geometry of :func:`conv_args`, from shapes (and a dtype) alone."""
    if len(x_shape) != nd + 2:
        raise ValueError(f"x must have {nd + 2} dims (N, C, *spatial) for a {nd}-d op, got shape {x_shape}")
    if len(w_shape) != nd + 2:
        raise ValueError(f"w must have {nd + 2} dims (K, C/groups, *kernel) for a {nd}-d op, got shape {w_shape}")
    groups = positive_int(groups, "groups")
    n_batch, c = x_shape[:2]
    k_out, c_per_group = w_shape[:2]
    if c % groups:
        raise ValueError(f"groups={groups} must divide the input channels C={c} (x shape {x_shape})")
    if k_out % groups:
        raise ValueError(f"groups={groups} must divide the output channels K={k_out} (w shape {w_shape})")
    if c_per_group != c // groups:
        raise ValueError(f"channel mismatch: x has C={c} channels, so with groups={groups} w must have "
                         f"C/groups={c // groups} in dim 1; got x shape {x_shape}, w shape {w_shape}")
    kernel = tuple(int(k) for k in w_shape[2:])
    if any(k < 1 for k in kernel):
        raise ValueError(f"kernel sizes must be >= 1, got w shape {w_shape}")
    stride = ntuple(stride, nd, "stride", minimum=1)
    dilation = ntuple(dilation, nd, "dilation", minimum=1)
    in_size = tuple(int(v) for v in x_shape[2:])
    pad = parse_padding(padding, nd, kernel=kernel, stride=stride, dilation=dilation, in_size=in_size)
    geom = make_geometry(in_size, kernel, stride, dilation, pad)
    return ConvArgs(geom, int(n_batch), int(c), int(k_out), groups, None if dtype is None else np.dtype(dtype))


def conv_transpose_args(x, w, b, stride, padding, output_padding, groups, dilation, nd: int) -> ConvArgs:
    """Validate a transposed convolution ``x (N, C_in, *n)``, ``w (C_in, C_out/groups, *k)``.

    Returns the arguments of the *forward* convolution it is the adjoint of: that
    convolution maps ``(N, C_out, *o)`` to ``(N, C_in, *n)`` with weight ``w``, where
    ``o = (n-1)*s - lo - hi + d*(k-1) + output_padding + 1``.
    """
    xp = check_array(x, "x")
    check_array(w, "w", xp)
    check_same_dtype(x, w, "x", "w")
    check_ndim(x, nd, "x")
    check_ndim(w, nd, "w", "(C_in, C_out/groups, *kernel)")
    groups = positive_int(groups, "groups")
    n_batch, c_in = x.shape[:2]
    if w.shape[0] != c_in:
        raise ValueError(f"channel mismatch: x has C_in={c_in} channels but w has {w.shape[0]} in dim 0 "
                         f"(x shape {tuple(x.shape)}, w shape {tuple(w.shape)})")
    if c_in % groups:
        raise ValueError(f"groups={groups} must divide the input channels C_in={c_in} (x shape {tuple(x.shape)})")
    c_out = w.shape[1] * groups
    kernel = tuple(int(k) for k in w.shape[2:])
    if any(k < 1 for k in kernel):
        raise ValueError(f"kernel sizes must be >= 1, got w shape {tuple(w.shape)}")
    stride = ntuple(stride, nd, "stride", minimum=1)
    dilation = ntuple(dilation, nd, "dilation", minimum=1)
    pad = parse_padding(padding, nd, allow_strings=False)
    opad = ntuple(output_padding, nd, "output_padding", minimum=0)
    for op, s, d in zip(opad, stride, dilation):
        if op >= max(s, d):
            raise ValueError(f"output_padding {opad} must be smaller than stride {stride} or dilation {dilation}")
    n_in = tuple(int(v) for v in x.shape[2:])
    o = tuple((n - 1) * s - lo - hi + d * (k - 1) + op + 1
              for n, s, (lo, hi), d, k, op in zip(n_in, stride, pad, dilation, kernel, opad))
    if any(v < 1 for v in o):
        raise ValueError(f"output size {o} of the transposed convolution is not positive "
                         f"(x shape {tuple(x.shape)}, w shape {tuple(w.shape)}, padding {pad})")
    check_cells(tuple(v + lo + hi for v, (lo, hi) in zip(o, pad)),
                f"stride {stride}, dilation {dilation}, output_padding {opad} and padding {pad}")
    geom = Geometry(o, kernel, stride, dilation, pad, n_in)
    if b is not None:
        check_array(b, "b", xp)
        check_same_dtype(x, b, "x", "b")
        check_shape(b, (c_out,), "b", f" (one bias per output channel C_out of w {tuple(w.shape)})")
    return ConvArgs(geom, int(n_batch), int(c_out), int(c_in), groups, x.dtype)


def check_grad_y(grad_y, x, expected_shape, name="grad_y"):
    xp = get_array_module(x)
    check_array(grad_y, name, xp)
    check_same_dtype(x, grad_y, "x", name)
    check_shape(grad_y, expected_shape, name, " (the forward output's shape)")


def separable_args(x, factors, b, stride, padding, dilation, groups, nd: int) -> ConvArgs:
    """Validate a separable convolution: ``x (N, C, *n)``, ``factors`` a list of ``nd`` arrays
    ``(K, C/groups, k_a)`` (one 1-D factor per spatial axis), ``b (K,)``. ``groups=None``
    infers ``C / C_g`` from the shapes."""
    xp = check_array(x, "x")
    if not isinstance(factors, (list, tuple)):
        raise TypeError(f"factors must be a list of {nd} arrays (one 1-D factor per spatial axis), "
                        f"got {type(factors).__name__}")
    if len(factors) != nd:
        raise ValueError(f"factors must hold {nd} arrays (one per spatial axis) for a {nd}-d op, got {len(factors)}")
    for a, f in enumerate(factors):
        check_array(f, f"factors[{a}]", xp)
        check_same_dtype(x, f, "x", f"factors[{a}]")
        if f.ndim != 3:
            raise ValueError(f"factors[{a}] must have 3 dims (K, C/groups, k), got shape {tuple(f.shape)}")
    lead = tuple(factors[0].shape[:2])
    if any(tuple(f.shape[:2]) != lead for f in factors):
        raise ValueError(f"factors must agree on (K, C/groups), got shapes {[tuple(f.shape) for f in factors]}")
    if groups is None:
        c = x.shape[1] if x.ndim >= 2 else 0
        if lead[1] < 1 or c % lead[1]:
            raise ValueError(f"cannot infer groups: C={c} of x (shape {tuple(x.shape)}) is not a multiple of "
                             f"C/groups={lead[1]} of the factors")
        groups = c // lead[1]
    w_shape = lead + tuple(int(f.shape[2]) for f in factors)
    args = conv_shape_args(tuple(x.shape), w_shape, stride, padding, dilation, groups, nd)
    if b is not None:
        check_array(b, "b", xp)
        check_same_dtype(x, b, "x", "b")
        check_shape(b, (args.out_channels,), "b", f" (one bias per output channel K={args.out_channels})")
    return args


# ----------------------------------------------------------------------------- local and tiled

@hash_once
@dataclass(frozen=True)
class LocalArgs(ConvArgs):
    """A validated locally connected or tiled convolution: ``tiles`` kernels per spatial axis
    (the output size for a locally connected layer)."""

    tiles: tuple = ()


def local_args(x, w, b, stride, padding, dilation, nd: int, *, tiled: bool) -> LocalArgs:
    """Validate ``x (N, C, *n)`` with ``w (K, *out, C, *k)``, ``b (K, *out)`` (locally connected)
    or ``w (K, *tiles, C, *k)``, ``b (K,)`` (tiled)."""
    what = "(K, *tiles, C, *kernel)" if tiled else "(K, *out_spatial, C, *kernel)"
    xp = check_array(x, "x")
    check_array(w, "w", xp)
    check_same_dtype(x, w, "x", "w")
    check_ndim(x, nd, "x")
    if w.ndim != 2 * nd + 2:
        raise ValueError(f"w must have {2 * nd + 2} dims {what} for a {nd}-d op, got shape {tuple(w.shape)}")
    n_batch, c = (int(v) for v in x.shape[:2])
    k_out = int(w.shape[0])
    tiles = tuple(int(v) for v in w.shape[1:1 + nd])
    kernel = tuple(int(v) for v in w.shape[2 + nd:])
    if w.shape[1 + nd] != c:
        raise ValueError(f"channel mismatch: x has C={c} channels but w {what} has {w.shape[1 + nd]} in dim "
                         f"{1 + nd} (x shape {tuple(x.shape)}, w shape {tuple(w.shape)})")
    if any(v < 1 for v in tiles + kernel):
        raise ValueError(f"w {what} must have sizes >= 1, got shape {tuple(w.shape)}")
    stride = ntuple(stride, nd, "stride", minimum=1)
    dilation = ntuple(dilation, nd, "dilation", minimum=1)
    in_size = tuple(int(v) for v in x.shape[2:])
    pad = parse_padding(padding, nd, kernel=kernel, stride=stride, dilation=dilation, in_size=in_size)
    geom = make_geometry(in_size, kernel, stride, dilation, pad)
    if not tiled and tiles != geom.out_size:
        raise ValueError(f"w must have shape {(k_out,) + geom.out_size + (c,) + kernel} {what}: one kernel per "
                         f"output position, and x shape {tuple(x.shape)} with stride {stride}, padding {pad}, "
                         f"dilation {dilation} gives output size {geom.out_size}; got w shape {tuple(w.shape)}")
    if b is not None:
        check_array(b, "b", xp)
        check_same_dtype(x, b, "x", "b")
        expected = (k_out,) if tiled else (k_out,) + geom.out_size
        check_shape(b, expected, "b", " (one bias per output channel)" if tiled
                    else " (one bias per output channel and position, (K, *out_spatial))")
    return LocalArgs(geom, n_batch, c, k_out, 1, x.dtype, tiles)


# ----------------------------------------------------------------------------- pooling

def pool_args(x, kernel_size, stride, padding, dilation, ceil_mode, nd: int) -> Geometry:
    """Validate a pooling window over ``x (N, C, *n)`` (PyTorch's rules).

    ``stride`` defaults to ``kernel_size``; ``padding`` is an int, per-dim ints or per-dim
    ``(lo, hi)`` pairs, each at most half the kernel; with ``ceil_mode`` the output size rounds
    up, but a window that would start in the high padding is dropped (:func:`out_size`).
    """
    check_array(x, "x")
    check_ndim(x, nd, "x")
    return pool_geometry(tuple(x.shape[2:]), kernel_size, stride, padding, dilation, ceil_mode, nd)


@memo
def pool_geometry(in_size, kernel_size, stride, padding, dilation, ceil_mode, nd: int) -> Geometry:
    """The shape checks and geometry of :func:`pool_args`, from the spatial size alone."""
    kernel = ntuple(kernel_size, nd, "kernel_size", minimum=1)
    stride = kernel if stride is None else ntuple(stride, nd, "stride", minimum=1)
    dilation = ntuple(dilation, nd, "dilation", minimum=1)
    pad = parse_padding(padding, nd, allow_strings=False)
    if any(lo > k // 2 or hi > k // 2 for (lo, hi), k in zip(pad, kernel)):
        raise ValueError(f"padding {pad} (as (lo, hi) per dim) must be at most half of kernel_size {kernel} "
                         "on each side")
    ceil_mode = boolean(ceil_mode, "ceil_mode")
    return make_geometry(tuple(int(v) for v in in_size), kernel, stride, dilation, pad, ceil_mode=ceil_mode)


def lp_norm(p) -> float:
    """The ``p`` of an Lp pool: a real number > 0 (``inf`` allowed: the max of ``|x|``)."""
    if isinstance(p, (bool, np.bool_)) or not isinstance(p, numbers.Real):
        raise TypeError(f"p must be a real number > 0, got {type(p).__name__} {p!r}")
    if not p > 0:  # also rejects NaN
        raise ValueError(f"p must be > 0, got {p!r}")
    return float(p)


def divisor_override(value):
    """``None`` or a nonzero int (avg_pool's divisor, PyTorch's rule)."""
    if value is None:
        return None
    if not _is_int(value):
        raise TypeError(f"divisor_override must be None or an int, got {type(value).__name__} {value!r}")
    if value == 0:
        raise ValueError("divisor_override must not be 0")
    return int(value)


def maxout_args(x, pieces) -> Geometry:
    """Maxout over ``x (N, C, *spatial)``: a pool over the channel axis with kernel and stride ``pieces``."""
    check_array(x, "x")
    if not 2 <= x.ndim <= 5:
        raise ValueError(f"x must have 2 to 5 dims (N, C, *spatial), got shape {tuple(x.shape)}")
    pieces = positive_int(pieces, "pieces")
    c = int(x.shape[1])
    if c % pieces:
        raise ValueError(f"pieces={pieces} must divide the channels C={c} (x shape {tuple(x.shape)})")
    return Geometry((c,), (pieces,), (pieces,), (1,), ((0, 0),), (c // pieces,))  # zero channels: zero groups


def adaptive_bins(n: int, o: int) -> tuple:
    """PyTorch's adaptive-pool bins along one axis: bin ``i`` covers input cells
    ``floor(i*n/o) <= cell < ceil((i+1)*n/o)``."""
    return tuple((i * n // o, -(-(i + 1) * n // o)) for i in range(o))


def adaptive_args(x, output_size, nd: int) -> tuple:
    """Validate an adaptive pool of ``x (N, C, *n)``; returns the bins of each spatial axis.
    ``output_size`` is an int or ``nd`` entries, each an int >= 1 or ``None`` (keep the input size)."""
    check_array(x, "x")
    check_ndim(x, nd, "x")
    in_size = tuple(int(v) for v in x.shape[2:])
    if isinstance(output_size, (tuple, list)) and len(output_size) == nd:
        output_size = tuple(n if o is None else o for o, n in zip(output_size, in_size))
    out = ntuple(output_size, nd, "output_size", minimum=1)
    if any(n < 1 for n in in_size):
        raise ValueError(f"x must have non-empty spatial dims, got shape {tuple(x.shape)}")
    return tuple(adaptive_bins(n, o) for n, o in zip(in_size, out))
