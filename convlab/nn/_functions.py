"""The graph nodes of tensor arithmetic, shapes, activations, losses, normalisation and dropout.

Each class is one :class:`~convlab.nn.tensor.Function`: its forward computes on arrays
(NumPy or CuPy, through ``get_array_module``) and keeps only what its backward reads.
The engine's convolution and pooling nodes are in :mod:`convlab.nn.functional`.
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import get_array_module
from . import random as _random
from .tensor import Function, Tensor, as_tensor

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def _xp(*arrays):
    return get_array_module(*arrays)


def _unbroadcast(g, shape):
    """Sum ``g`` down to ``shape`` (the inverse of NumPy broadcasting)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape) if n == 1 and g.shape[lead + i] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape)


def _shape(a):
    return getattr(a, "shape", ())


# ----------------------------------------------------------------------------- arithmetic

class Add(Function):
    def forward(self, a, b):
        self.shapes = _shape(a), _shape(b)
        return a + b

    def backward(self, g):
        return _unbroadcast(g, self.shapes[0]), _unbroadcast(g, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = _shape(a), _shape(b)
        return a - b

    def backward(self, g):
        return _unbroadcast(g, self.shapes[0]), _unbroadcast(-g, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        a, b = self.a, self.b
        ga = _unbroadcast(g * b, _shape(a)) if self.needs[0] else None
        gb = _unbroadcast(g * a, _shape(b)) if self.needs[1] else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, g):
        a, b = self.a, self.b
        ga = _unbroadcast(g / b, _shape(a)) if self.needs[0] else None
        gb = _unbroadcast(-g * a / (b * b), _shape(b)) if self.needs[1] else None
        return ga, gb


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


class Pow(Function):
    """``a ** p`` for a constant exponent ``p``."""

    def __init__(self, p):
        self.p = p

    def forward(self, a):
        self.a = a
        return a ** self.p

    def backward(self, g):
        return g * self.p * self.a ** (self.p - 1)


class MatMul(Function):
    """``a @ b`` with NumPy's rules (1-d operands, batch broadcasting)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        a2 = a[None] if a.ndim == 1 else a          # (1, n): a row vector
        b2 = b[:, None] if b.ndim == 1 else b       # (n, 1): a column vector
        g2 = g                                      # restored to (..., m, p): p first, then m
        if b.ndim == 1:
            g2 = g2[..., None]
        if a.ndim == 1:
            g2 = g2[..., None, :]
        ga = gb = None
        if self.needs[0]:
            ga = _unbroadcast(g2 @ b2.swapaxes(-1, -2), a2.shape if a.ndim > 1 else
                              g2.shape[:-1] + (a2.shape[-1],))
            ga = ga.reshape(a.shape) if a.ndim > 1 else ga.reshape(-1, a.shape[0]).sum(axis=0)
        if self.needs[1]:
            gb = a2.swapaxes(-1, -2) @ g2
            gb = _unbroadcast(gb, b2.shape) if b.ndim > 1 else gb.reshape(-1, b.shape[0]).sum(axis=0)
        return ga, gb


# ----------------------------------------------------------------------------- reductions

def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axis:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a!r} is out of range for a tensor of {ndim} dims")
        out.append(int(a) % max(ndim, 1))
    return tuple(sorted(set(out)))


class Sum(Function):
    """``scale * a.sum(axis, keepdims)``; ``mean`` is the sum with ``scale = 1/count``."""

    def __init__(self, axis, keepdims, mean=False):
        self.axis, self.keepdims, self.mean = axis, keepdims, mean

    def forward(self, a):
        self.shape = a.shape
        self.axes = _axes(self.axis, a.ndim)
        count = math.prod(a.shape[i] for i in self.axes)
        self.scale = 1.0 / count if self.mean else 1.0
        y = a.sum(axis=self.axes, keepdims=self.keepdims)
        return y * self.scale if self.mean else y

    def backward(self, g):
        if not self.keepdims:
            g = g.reshape(tuple(1 if i in self.axes else n for i, n in enumerate(self.shape)))
        g = g * self.scale if self.mean else g
        return _xp(g).broadcast_to(g, self.shape).copy()


class Max(Function):
    """``a.max(axis, keepdims)``; the gradient goes to the first maximum."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, a):
        xp = _xp(a)
        self.shape = a.shape
        self.axes = _axes(self.axis, a.ndim)
        keep = [i for i in range(a.ndim) if i not in self.axes]
        moved = xp.transpose(a, keep + list(self.axes)).reshape([a.shape[i] for i in keep] + [-1])
        self.arg = moved.argmax(axis=-1)
        y = xp.take_along_axis(moved, self.arg[..., None], axis=-1)[..., 0]
        self.keep = keep
        if self.keepdims:
            y = y.reshape(tuple(1 if i in self.axes else n for i, n in enumerate(a.shape)))
        return y

    def backward(self, g):
        xp = _xp(g)
        red = math.prod(self.shape[i] for i in self.axes)
        first = xp.arange(red) == self.arg[..., None]  # one-hot of the first maximum
        moved = (first * g.reshape(self.arg.shape)[..., None]).astype(g.dtype, copy=False)
        moved = moved.reshape(tuple(self.shape[i] for i in self.keep) + tuple(self.shape[i] for i in self.axes))
        return xp.transpose(moved, np.argsort(self.keep + list(self.axes)))


# ----------------------------------------------------------------------------- shapes

class Reshape(Function):
    def __init__(self, shape):
        self.new = shape

    def forward(self, a):
        self.shape = a.shape
        return a.reshape(self.new)

    def backward(self, g):
        return g.reshape(self.shape)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, a):
        if self.axes is None:
            self.axes = tuple(range(a.ndim))[::-1]
        if sorted(int(i) % max(a.ndim, 1) for i in self.axes) != list(range(a.ndim)):
            raise ValueError(f"axes {self.axes} is not a permutation of the {a.ndim} dims")
        return _xp(a).transpose(a, self.axes)

    def backward(self, g):
        return _xp(g).transpose(g, np.argsort([int(i) % g.ndim for i in self.axes]))


def _advanced(index):
    items = index if isinstance(index, tuple) else (index,)
    return any(not isinstance(i, (slice, int, np.integer, type(None), type(Ellipsis))) for i in items)


def _scatter_add(xp, out, index, values):
    if xp is np:
        np.add.at(out, index, values)
    else:  # CuPy's spelling of the same
        import cupyx

        cupyx.scatter_add(out, index, values)


class GetItem(Function):
    def __init__(self, index):
        self.index = index

    def forward(self, a):
        self.shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, g):
        xp = _xp(g)
        out = xp.zeros(self.shape, dtype=self.dtype)
        if _advanced(self.index):  # repeated indices must add up
            _scatter_add(xp, out, self.index, g)
        else:
            out[self.index] = g
        return out


class Concat(Function):
    def __init__(self, axis, stack=False):
        self.axis, self.stack = axis, stack

    def forward(self, *arrays):
        xp = get_array_module(*arrays)
        if self.stack:
            y = xp.stack(arrays, axis=self.axis)
            self.sizes = [1] * len(arrays)
            self.cat_axis = self.axis % y.ndim
        else:
            y = xp.concatenate(arrays, axis=self.axis)
            self.cat_axis = self.axis % y.ndim
            self.sizes = [a.shape[self.cat_axis] for a in arrays]
        return y

    def backward(self, g):
        xp = _xp(g)
        bounds = np.cumsum(self.sizes)[:-1].tolist()
        parts = xp.split(g, bounds, axis=self.cat_axis)
        if self.stack:
            parts = [p.squeeze(self.cat_axis) for p in parts]
        return tuple(p if need else None for p, need in zip(parts, self.needs))


# ----------------------------------------------------------------------------- activations

class Exp(Function):
    def forward(self, a):
        self.y = _xp(a).exp(a)
        return self.y

    def backward(self, g):
        return g * self.y


class Log(Function):
    def forward(self, a):
        self.a = a
        return _xp(a).log(a)

    def backward(self, g):
        return g / self.a


class Tanh(Function):
    def forward(self, a):
        self.y = _xp(a).tanh(a)
        return self.y

    def backward(self, g):
        return g * (1 - self.y * self.y)


class Sigmoid(Function):
    def forward(self, a):
        xp = _xp(a)
        # 1/(1+exp(-a)) overflows exp for a << 0; tanh form is exact and stable.
        self.y = 0.5 * (xp.tanh(0.5 * a) + 1)
        return self.y

    def backward(self, g):
        return g * self.y * (1 - self.y)


class ReLU(Function):
    def forward(self, a):
        self.mask = a > 0
        return a * self.mask

    def backward(self, g):
        return g * self.mask


class ELU(Function):
    """``scale * (a if a > 0 else alpha * (exp(a) - 1))``; SELU is ELU with the paper's constants."""

    def __init__(self, alpha=1.0, scale=1.0):
        self.alpha, self.scale = alpha, scale

    def forward(self, a):
        xp = _xp(a)
        self.mask = a > 0
        self.neg = (self.scale * self.alpha) * xp.exp(xp.minimum(a, 0))  # d/da of the negative branch
        return xp.where(self.mask, self.scale * a, self.neg - self.scale * self.alpha).astype(a.dtype, copy=False)

    def backward(self, g):
        return g * _xp(g).where(self.mask, self.scale, self.neg).astype(g.dtype, copy=False)


class LogSoftmax(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, a):
        xp = _xp(a)
        shifted = a - a.max(axis=self.axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
        return self.y

    def backward(self, g):
        return g - _xp(g).exp(self.y) * g.sum(axis=self.axis, keepdims=True)


class Softmax(Function):
    def __init__(self, axis):
        self.axis = axis

    def forward(self, a):
        xp = _xp(a)
        e = xp.exp(a - a.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, g):
        return self.y * (g - (g * self.y).sum(axis=self.axis, keepdims=True))


# ----------------------------------------------------------------------------- losses

REDUCTIONS = ("mean", "sum", "none")


def _reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


class CrossEntropy(Function):
    """``-log softmax(z)[target]`` over the class axis 1, averaged over the targets that are
    not ``ignore_index`` (``reduction="mean"``), summed, or kept (``"none"``)."""

    def __init__(self, target, ignore_index, reduction):
        self.target, self.ignore_index, self.reduction = target, ignore_index, reduction

    def forward(self, z):
        xp = _xp(z)
        t = self.target
        shifted = z - z.max(axis=1, keepdims=True)
        logp = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
        self.valid = t != self.ignore_index
        safe = xp.where(self.valid, t, 0)
        picked = xp.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
        losses = -picked * self.valid
        self.logp, self.safe = logp, safe
        self.count = max(int(self.valid.sum()), 0)
        if self.reduction == "none":
            return losses
        total = losses.sum()
        if self.reduction == "sum":
            return total
        return total / self.count if self.count else total * np.nan  # all ignored: NaN, as PyTorch

    def backward(self, g):
        xp = _xp(g)
        w = g * self.valid                      # each target's weight in the loss
        if self.reduction == "mean":
            w = w / max(self.count, 1)
        w = w[:, None].astype(self.logp.dtype, copy=False)
        classes = xp.arange(self.logp.shape[1]).reshape((1, -1) + (1,) * (self.logp.ndim - 2))
        onehot = classes == self.safe[:, None]
        return (xp.exp(self.logp) - onehot) * w  # d/dz of -log softmax(z)[t] is softmax(z) - onehot(t)


class MSELoss(Function):
    def __init__(self, reduction):
        self.reduction = reduction

    def forward(self, a, b):
        self.diff = a - b
        sq = self.diff * self.diff
        if self.reduction == "none":
            return sq
        return sq.sum() if self.reduction == "sum" else sq.mean()

    def backward(self, g):
        scale = 2.0 if self.reduction != "mean" else 2.0 / self.diff.size
        gd = g * scale * self.diff
        return (gd if self.needs[0] else None), (-gd if self.needs[1] else None)


# ----------------------------------------------------------------------------- layers

class Linear(Function):
    """``y = x @ W.T + b``; shapes ``x (*, in)``, ``W (out, in)``, ``b (out,)`` -> ``(*, out)``."""

    def forward(self, x, w, b):
        self.x, self.w = x, w
        y = x @ w.T
        if b is not None:
            y += b
        return y

    def backward(self, g):
        x, w = self.x, self.w
        gx = g @ w if self.needs[0] else None
        g2 = g.reshape(-1, g.shape[-1])
        gw = g2.T @ x.reshape(-1, x.shape[-1]) if self.needs[1] else None
        gb = g2.sum(axis=0) if self.needs[2] else None
        return gx, gw, gb


class BatchNorm(Function):
    """Batch normalisation over every axis but the channel axis 1, with the batch's statistics:
    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` (``var`` biased)."""

    def __init__(self, eps):
        self.eps = eps

    def forward(self, x, weight, bias):
        xp = _xp(x)
        self.axes = (0,) + tuple(range(2, x.ndim))
        view = (1, -1) + (1,) * (x.ndim - 2)
        self.mean = x.mean(axis=self.axes)
        centred = x - self.mean.reshape(view)
        self.var = (centred * centred).mean(axis=self.axes)
        self.inv = 1.0 / xp.sqrt(self.var + self.eps)
        centred *= self.inv.reshape(view)
        self.xhat = centred
        self.view, self.weight = view, weight
        y = self.xhat * weight.reshape(view) if weight is not None else self.xhat.copy()
        if bias is not None:
            y += bias.reshape(view)
        return y

    def backward(self, g):
        # With gxhat = g * weight, the input's gradient is
        #   (gxhat - mean(gxhat) - xhat * mean(gxhat * xhat)) * inv
        # = (g - sum(g)/m - xhat * sum(g * xhat)/m) * weight * inv,
        # so the two sums that give the bias's and weight's gradients serve it too.
        view, xhat, needs = self.view, self.xhat, self.needs
        gb = g.sum(axis=self.axes) if needs[0] or needs[2] else None
        gw = (g * xhat).sum(axis=self.axes) if needs[0] or needs[1] else None
        gx = None
        if needs[0]:
            count = g.size // g.shape[1]
            scale = self.inv if self.weight is None else self.inv * self.weight
            gx = g - (gb / count).reshape(view)
            gx -= xhat * (gw / count).reshape(view)
            gx *= scale.reshape(view)
        return gx, (gw if needs[1] else None), (gb if needs[2] else None)


class MaskAffine(Function):
    """``y = a * (x * mask + fill * (1 - mask)) + b``: dropout (``fill=0``, ``a=1/q``, ``b=0``)
    and alpha-dropout (``fill=alpha'``) with one mask drawn by the caller."""

    def __init__(self, mask, fill, a, b):
        self.mask, self.fill, self.a, self.b = mask, fill, a, b

    def forward(self, x):
        y = x * (self.a * self.mask)
        if self.fill or self.b:
            y += (self.a * self.fill) * (1 - self.mask) + self.b
        return y.astype(x.dtype, copy=False)

    def backward(self, g):
        return g * (self.a * self.mask).astype(g.dtype, copy=False)


def keep_mask(x, q):
    """A Bernoulli(q) mask shaped like ``x``, in ``x``'s array module and dtype."""
    return (_random.uniform(x.shape, like=x) < q).astype(x.dtype)


# ----------------------------------------------------------------------------- Tensor methods

def _binary(cls, reflected=False):
    def op(self, other):
        other = as_tensor(other, like=self) if not isinstance(other, Tensor) else other
        return cls().apply(other, self) if reflected else cls().apply(self, other)

    return op


def _pow(self, p):
    if isinstance(p, Tensor) or not isinstance(p, (int, float, np.integer, np.floating)):
        raise TypeError(f"the exponent must be a Python number, got {type(p).__name__}")
    return Pow(p).apply(self)


def _reshape(self, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Reshape(tuple(shape)).apply(self)


def _transpose(self, *axes):
    axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    return Transpose(tuple(axes) if axes else None).apply(self)


def _getitem(self, index):
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index).apply(self)


Tensor.__add__ = _binary(Add)
Tensor.__radd__ = _binary(Add, reflected=True)
Tensor.__sub__ = _binary(Sub)
Tensor.__rsub__ = _binary(Sub, reflected=True)
Tensor.__mul__ = _binary(Mul)
Tensor.__rmul__ = _binary(Mul, reflected=True)
Tensor.__truediv__ = _binary(Div)
Tensor.__rtruediv__ = _binary(Div, reflected=True)
Tensor.__matmul__ = _binary(MatMul)
Tensor.__rmatmul__ = _binary(MatMul, reflected=True)
Tensor.__neg__ = lambda self: Neg().apply(self)
Tensor.__pow__ = _pow
Tensor.__getitem__ = _getitem
Tensor.sum = lambda self, axis=None, keepdims=False: Sum(axis, keepdims).apply(self)
Tensor.mean = lambda self, axis=None, keepdims=False: Sum(axis, keepdims, mean=True).apply(self)
Tensor.max = lambda self, axis=None, keepdims=False: Max(axis, keepdims).apply(self)
Tensor.reshape = _reshape
Tensor.view = _reshape
Tensor.transpose = _transpose
Tensor.permute = _transpose
Tensor.T = property(lambda self: Transpose(None).apply(self))
Tensor.exp = lambda self: Exp().apply(self)
Tensor.log = lambda self: Log().apply(self)
Tensor.tanh = lambda self: Tanh().apply(self)
Tensor.sigmoid = lambda self: Sigmoid().apply(self)
Tensor.relu = lambda self: ReLU().apply(self)
Tensor.flatten = lambda self, start_dim=0: Reshape(self.shape[:start_dim] + (-1,)).apply(self)
