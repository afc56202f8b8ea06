"""Functions on Tensors: every engine op of convlab, and the activations, losses,
normalisation and dropout a network needs.

The engine ops take the same arguments as their ``convlab.*`` counterparts and record one
graph node each, whose backward calls the engine's ``*_backward`` with exactly the arrays
and keyword arguments the forward used (and ``needs=`` so that only the gradients the
graph asks for are computed; max pools hand their forward's indices to the backward).
"""
from __future__ import annotations

import numpy as np

from .. import conv as _conv
from .. import local as _local
from .. import pool as _pool
from .. import separable as _separable
from .._nd import family
from . import _functions as fn
from .tensor import Function, Tensor, as_tensor

# ----------------------------------------------------------------------------- engine nodes


class EngineOp(Function):
    """``op(x, w, b, **params)`` with ``op_backward(grad_y, x, w, b, **params, needs=...)``:
    the convolution, transposed, local and tiled families."""

    def __init__(self, op, op_backward, params):
        self.op, self.op_backward, self.params = op, op_backward, params

    def forward(self, x, w, b):
        self.arrays = x, w, b
        return self.op(x, w, b, **self.params)

    def backward(self, g):
        return self.op_backward(g, *self.arrays, **self.params, needs=self.needs)


class SeparableOp(Function):
    """``separable_conv(x, [f_1 .. f_nd], b)``: the factors are inputs of their own."""

    def __init__(self, nd, params):
        self.nd, self.params = nd, params

    def forward(self, x, *rest):
        factors, b = list(rest[:-1]), rest[-1]
        self.arrays = x, factors, b
        return _separable.separable_conv(self.nd, x, factors, b, **self.params)

    def backward(self, g):
        x, factors, b = self.arrays
        need_f = any(self.needs[1:-1])
        gx, gf, gb = _separable.separable_conv_backward(self.nd, g, x, factors, b, **self.params,
                                                        needs=(self.needs[0], need_f, self.needs[-1]))
        return (gx,) + (tuple(gf) if gf is not None else (None,) * len(factors)) + (gb,)


class PoolOp(Function):
    """``op(x, *args)`` with ``op_backward(grad_y, x, *args)``; a max pool keeps its indices
    and gives them to the backward instead of finding the maxima again."""

    def __init__(self, op, op_backward, args, params, indices=False):
        self.op, self.op_backward, self.args, self.params = op, op_backward, args, params
        self.keeps_indices = indices

    def forward(self, x):
        self.x = x
        if not self.keeps_indices:
            return self.op(x, *self.args, **self.params)
        y, self.indices = self.op(x, *self.args, **self.params, return_indices=True)
        return y

    def backward(self, g):
        extra = {"indices": self.indices} if self.keeps_indices else {}
        return self.op_backward(g, self.x, *self.args, **self.params, **extra)


def _check_tensor(x, name="input"):
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a convlab.nn.Tensor, got {type(x).__name__}")
    return x


def _engine(op, op_backward, x, w, b, params):
    _check_tensor(x)
    return EngineOp(op, op_backward, params).apply(x, as_tensor(w), None if b is None else as_tensor(b))


def conv(nd, x, w, b=None, stride=1, padding=0, dilation=1, groups=1, *, flip=False, algorithm="auto"):
    """``convlab.conv{nd}d`` on Tensors (see its docstring): ``x (N, C, {sp})``,
    ``w (K, C/groups, {ksp})``, ``b (K,)`` -> ``(N, K, {osp})``."""
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, flip=flip, algorithm=algorithm)
    return _engine(_nd_op(_conv.conv, nd), _nd_op(_conv.conv_backward, nd), x, w, b, params)


def conv_transpose(nd, x, w, b=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                   algorithm="auto"):
    """``convlab.conv_transpose{nd}d`` on Tensors: ``x (N, C_in, {sp})``, ``w (C_in, C_out/groups, {ksp})``."""
    params = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation,
                  algorithm=algorithm)
    return _engine(_nd_op(_conv.conv_transpose, nd), _nd_op(_conv.conv_transpose_backward, nd), x, w, b, params)


def local_conv(nd, x, w, b=None, stride=1, padding=0, dilation=1):
    """``convlab.local_conv{nd}d`` on Tensors: ``w (K, {osp}, C, {ksp})``, ``b (K, {osp})``."""
    params = dict(stride=stride, padding=padding, dilation=dilation)
    return _engine(_nd_op(_local.local_conv, nd), _nd_op(_local.local_conv_backward, nd), x, w, b, params)


def tiled_conv(nd, x, w, b=None, stride=1, padding=0, dilation=1):
    """``convlab.tiled_conv{nd}d`` on Tensors: ``w (K, {tsp}, C, {ksp})``, ``b (K,)``."""
    params = dict(stride=stride, padding=padding, dilation=dilation)
    return _engine(_nd_op(_local.tiled_conv, nd), _nd_op(_local.tiled_conv_backward, nd), x, w, b, params)


def separable_conv(nd, x, factors, b=None, stride=1, padding=0, dilation=1, groups=None):
    """``convlab.separable_conv{nd}d`` on Tensors: ``factors`` a list of {nd} Tensors ``(K, C/groups, k_a)``."""
    _check_tensor(x)
    if not isinstance(factors, (list, tuple)):
        raise TypeError(f"factors must be a list of {nd} tensors, got {type(factors).__name__}")
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    inputs = [as_tensor(f) for f in factors] + [None if b is None else as_tensor(b)]
    return SeparableOp(nd, params).apply(x, *inputs)


def _nd_op(generic, nd):
    def op(*args, **kwargs):
        return generic(nd, *args, **kwargs)

    return op


def _pool_node(generic, generic_backward, nd, x, args, params, indices=False):
    _check_tensor(x)
    return PoolOp(_nd_op(generic, nd), _nd_op(generic_backward, nd), args, params, indices).apply(x)


def max_pool(nd, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """``convlab.max_pool{nd}d`` on Tensors: ``x (N, C, {sp})`` -> ``(N, C, {osp})`` (and the
    int64 indices, an array, with ``return_indices=True``)."""
    params = dict(stride=stride, padding=padding, dilation=dilation, ceil_mode=ceil_mode)
    node = PoolOp(_nd_op(_pool.max_pool, nd), _nd_op(_pool.max_pool_backward, nd), (kernel_size,), params, True)
    y = node.apply(_check_tensor(x))
    return (y, node.indices) if return_indices else y


def avg_pool(nd, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
             divisor_override=None):
    """``convlab.avg_pool{nd}d`` on Tensors."""
    params = dict(stride=stride, padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
                  divisor_override=divisor_override)
    return _pool_node(_pool.avg_pool, _pool.avg_pool_backward, nd, x, (kernel_size,), params)


def lp_pool(nd, x, p, kernel_size, stride=None, padding=0, ceil_mode=False):
    """``convlab.lp_pool{nd}d`` on Tensors: the p-norm of each window."""
    params = dict(stride=stride, padding=padding, ceil_mode=ceil_mode)
    return _pool_node(_pool.lp_pool, _pool.lp_pool_backward, nd, x, (p, kernel_size), params)


def adaptive_max_pool(nd, x, output_size, return_indices=False):
    """``convlab.adaptive_max_pool{nd}d`` on Tensors."""
    node = PoolOp(_nd_op(_pool.adaptive_max_pool, nd), _nd_op(_pool.adaptive_max_pool_backward, nd),
                  (output_size,), {}, True)
    y = node.apply(_check_tensor(x))
    return (y, node.indices) if return_indices else y


def adaptive_avg_pool(nd, x, output_size):
    """``convlab.adaptive_avg_pool{nd}d`` on Tensors."""
    return _pool_node(_pool.adaptive_avg_pool, _pool.adaptive_avg_pool_backward, nd, x, (output_size,), {})


def maxout(x, pieces):
    """``convlab.maxout`` on Tensors: ``(N, C, *spatial)`` -> ``(N, C/pieces, *spatial)``."""
    _check_tensor(x)
    return PoolOp(_pool.maxout, _pool.maxout_backward, (pieces,), {}).apply(x)


def _families():
    names = []
    for generic, stem in ((conv, "conv"), (conv_transpose, "conv_transpose"), (local_conv, "local_conv"),
                          (tiled_conv, "tiled_conv"), (separable_conv, "separable_conv"), (max_pool, "max_pool"),
                          (avg_pool, "avg_pool"), (lp_pool, "lp_pool"), (adaptive_max_pool, "adaptive_max_pool"),
                          (adaptive_avg_pool, "adaptive_avg_pool")):
        names += family(generic, stem, globals())
    for name in names:
        globals()[name].__module__ = __name__
    return names


_ENGINE_NAMES = _families()

# ----------------------------------------------------------------------------- layers and activations


def linear(x, weight, bias=None):
    """``y = x @ weight.T + bias``: ``x (*, in)``, ``weight (out, in)``, ``bias (out,)`` -> ``(*, out)``."""
    _check_tensor(x)
    weight = as_tensor(weight)
    if x.ndim < 1 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input's last dim must equal weight's in_features; got input {x.shape}, "
                         f"weight {weight.shape}")
    if bias is not None and as_tensor(bias).shape != (weight.shape[0],):
        raise ValueError(f"linear: bias must have shape ({weight.shape[0]},), got {as_tensor(bias).shape}")
    for name, a in (("weight", weight), ("bias", bias)):
        if a is not None and as_tensor(a).dtype != x.dtype:
            raise TypeError(f"linear: {name} has dtype {as_tensor(a).dtype} but input has dtype {x.dtype}; "
                            "cast one so they match")
    return fn.Linear().apply(x, weight, None if bias is None else as_tensor(bias))


def relu(x):
    """``max(x, 0)``."""
    return fn.ReLU().apply(_check_tensor(x))


def elu(x, alpha=1.0):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise."""
    return fn.ELU(alpha).apply(_check_tensor(x))


def selu(x):
    """Self-normalising ELU (Klambauer et al. 2017): ``lambda * x`` for ``x > 0``,
    ``lambda * alpha * (exp(x) - 1)`` otherwise, ``alpha = 1.67326...``, ``lambda = 1.05070...``."""
    return fn.ELU(fn.SELU_ALPHA, fn.SELU_SCALE).apply(_check_tensor(x))


def tanh(x):
    return fn.Tanh().apply(_check_tensor(x))


def sigmoid(x):
    """``1 / (1 + exp(-x))``."""
    return fn.Sigmoid().apply(_check_tensor(x))


def softmax(x, dim=-1):
    """``exp(x) / sum exp(x)`` along ``dim``."""
    return fn.Softmax(dim).apply(_check_tensor(x))


def log_softmax(x, dim=-1):
    """``x - log sum exp(x)`` along ``dim``, computed without overflow."""
    return fn.LogSoftmax(dim).apply(_check_tensor(x))


def flatten(x, start_dim=1):
    """``(N, d1, d2, ...)`` -> ``(N, d1*d2*...)`` (from ``start_dim`` on)."""
    _check_tensor(x)
    return x.reshape(x.shape[:start_dim] + (-1,))


def cat(tensors, dim=0):
    """Concatenate tensors along an existing axis."""
    return fn.Concat(dim).apply(*[as_tensor(t) for t in tensors])


def stack(tensors, dim=0):
    """Stack tensors along a new axis."""
    return fn.Concat(dim, stack=True).apply(*[as_tensor(t) for t in tensors])


concat = cat

# ----------------------------------------------------------------------------- losses


def cross_entropy(input, target, ignore_index=-100, reduction="mean"):
    """Softmax cross-entropy: ``-log softmax(input)[target]`` averaged over the targets.

    Shapes: ``input (N, C)`` or ``(N, C, *spatial)`` of scores, ``target (N,)`` or
    ``(N, *spatial)`` of integer classes in ``[0, C)`` (or ``ignore_index``, left out of the
    loss and of the count). ``reduction``: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    _check_tensor(input)
    fn._reduction(reduction)
    t = target.data if isinstance(target, Tensor) else target
    xp = input._xp
    if not hasattr(t, "dtype") or t.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must be an integer array of class indices, got "
                        f"{getattr(t, 'dtype', type(t).__name__)}")
    t = xp.asarray(t)
    if input.ndim < 2:
        raise ValueError(f"cross_entropy: input must be (N, C) or (N, C, *spatial), got shape {input.shape}")
    if t.shape != (input.shape[0],) + input.shape[2:]:
        raise ValueError(f"cross_entropy: target must have shape {(input.shape[0],) + input.shape[2:]} for input "
                         f"{input.shape}, got {tuple(t.shape)}")
    classes = input.shape[1]
    bad = (t != ignore_index) & ((t < 0) | (t >= classes))
    if bool(bad.any()):
        raise ValueError(f"cross_entropy: target values must lie in [0, {classes}) or equal ignore_index "
                         f"({ignore_index}); found {int(t[bad].ravel()[0])}")
    return fn.CrossEntropy(t.astype(np.int64, copy=False), ignore_index, reduction).apply(input)


def mse_loss(input, target, reduction="mean"):
    """Mean squared error ``mean((input - target)^2)`` (or its sum, or each term)."""
    _check_tensor(input)
    fn._reduction(reduction)
    target = as_tensor(target, like=input)
    if target.shape != input.shape:
        raise ValueError(f"mse_loss: target must have input's shape {input.shape}, got {target.shape}")
    return fn.MSELoss(reduction).apply(input, target)


# ----------------------------------------------------------------------------- normalisation, dropout


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation over the channel axis 1 of ``input (N, C, *spatial)``.

    Training: ``y = (x - mean_B) / sqrt(var_B + eps) * weight + bias`` with the batch's
    statistics (biased variance), and the running statistics move by ``momentum`` towards
    the batch's (the unbiased variance ``var_B * m / (m - 1)``, ``m`` values per channel).
    Evaluation: the running statistics take the batch's place. ``running_mean`` and
    ``running_var`` are arrays ``(C,)``, updated in place (either may be None in training).
    """
    _check_tensor(input)
    if input.ndim < 2:
        raise ValueError(f"batch_norm: input must be (N, C, *spatial), got shape {input.shape}")
    channels = input.shape[1]
    for name, a in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                    ("bias", bias)):
        if a is not None and tuple(getattr(a, "shape", ())) != (channels,):
            raise ValueError(f"batch_norm: {name} must have shape ({channels},) for input {input.shape}, "
                             f"got {getattr(a, 'shape', type(a).__name__)}")
        if a is not None and getattr(a, "dtype", None) != input.dtype:
            raise TypeError(f"batch_norm: {name} has dtype {a.dtype} but input has dtype {input.dtype}; "
                            "cast one so they match")
    w = None if weight is None else as_tensor(weight)
    b = None if bias is None else as_tensor(bias)
    view = (1, channels) + (1,) * (input.ndim - 2)
    if training:
        count = input.size // channels
        if count < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel, got input {input.shape}")
        node = fn.BatchNorm(eps)
        y = node.apply(input, w, b)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * node.mean
        if running_var is not None:
            running_var *= 1 - momentum
            running_var += (momentum * count / (count - 1)) * node.var
        return y
    if running_mean is None or running_var is None:
        raise ValueError("batch_norm: evaluation (training=False) needs running_mean and running_var")
    inv = 1.0 / input._xp.sqrt(running_var + eps)
    y = (input - Tensor(running_mean.reshape(view))) * Tensor(inv.astype(input.dtype, copy=False).reshape(view))
    if w is not None:
        y = y * w.reshape(view)
    if b is not None:
        y = y + b.reshape(view)
    return y


def _probability(p, name="p"):
    if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p <= 1:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
    return float(p)


def dropout(input, p=0.5, training=True):
    """Drop each value with probability ``p`` and scale the kept ones by ``1 / (1 - p)``
    (the identity when not training)."""
    _check_tensor(input)
    p = _probability(p)
    if not training or p == 0:
        return input
    if p == 1:
        return input * 0.0
    mask = fn.keep_mask(input.data, 1 - p)
    return fn.MaskAffine(mask, 0.0, 1.0 / (1 - p), 0.0).apply(input)


def alpha_dropout(input, p=0.5, training=False):
    """Alpha-dropout (Klambauer et al. 2017): dropped values are set to ``alpha' = -lambda*alpha``
    (SELU's negative saturation), then ``a*x + b`` restores mean 0 and variance 1, with ``q = 1-p``::

        a = (q + alpha'^2 q (1 - q))^(-1/2)        b = -a (1 - q) alpha'

    The identity when not training."""
    _check_tensor(input)
    p = _probability(p)
    if not training or p == 0:
        return input
    fill = -fn.SELU_SCALE * fn.SELU_ALPHA
    q = 1.0 - p
    if q == 0:
        return input * 0.0
    a = (q + fill * fill * q * (1 - q)) ** -0.5
    mask = fn.keep_mask(input.data, q)
    return fn.MaskAffine(mask, fill, a, -a * (1 - q) * fill).apply(input)


__all__ = _ENGINE_NAMES + ["maxout", "linear", "relu", "elu", "selu", "tanh", "sigmoid", "softmax", "log_softmax",
                           "flatten", "cat", "concat", "stack", "cross_entropy", "mse_loss", "batch_norm", "dropout",
                           "alpha_dropout"]
