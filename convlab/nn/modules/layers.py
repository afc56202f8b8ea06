"""Layers without weights (activations, pooling, dropout, shapes, losses) and batch normalisation,
with PyTorch's names, constructor arguments and defaults."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .module import Module, Parameter, _float_dtype


class _Stateless(Module):
    """A Module that applies one function with the arguments it was built with."""

    def __init__(self, **kwargs):
        super().__init__()
        self.kwargs = kwargs

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


class Identity(Module):
    def forward(self, x):
        return x


class ReLU(_Stateless):
    def forward(self, x):
        return F.relu(x)


class ELU(_Stateless):
    def __init__(self, alpha=1.0):
        super().__init__(alpha=alpha)

    def forward(self, x):
        return F.elu(x, **self.kwargs)


class SELU(_Stateless):
    def forward(self, x):
        return F.selu(x)


class Tanh(_Stateless):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(_Stateless):
    def forward(self, x):
        return F.sigmoid(x)


class Softmax(_Stateless):
    def __init__(self, dim=-1):
        super().__init__(dim=dim)

    def forward(self, x):
        return F.softmax(x, **self.kwargs)


class LogSoftmax(Softmax):
    def forward(self, x):
        return F.log_softmax(x, **self.kwargs)


class Flatten(_Stateless):
    """``(N, d1, d2, ...)`` -> ``(N, d1*d2*...)`` from ``start_dim`` to ``end_dim``."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__(start_dim=start_dim, end_dim=end_dim)

    def forward(self, x):
        dims = {}
        for name in ("start_dim", "end_dim"):
            d = self.kwargs[name]
            if not -x.ndim <= d < x.ndim:
                raise ValueError(f"Flatten: {name}={d} is out of range for a {x.ndim}-d input")
            dims[name] = d % x.ndim
        start, end = dims["start_dim"], dims["end_dim"]
        if start > end:
            raise ValueError(f"Flatten: start_dim ({start}) comes after end_dim ({end})")
        return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


# ----------------------------------------------------------------------------- pooling


def _pool_class(name, nd, fn, params, doc):
    """A pooling Module ``name`` whose constructor takes ``params`` (name, default) in order
    and whose forward is ``fn(nd, x, **params)``."""

    def __init__(self, *args, **kwargs):
        _Stateless.__init__(self)
        names = [p for p, _ in params]
        if len(args) > len(names):
            raise TypeError(f"{name} takes at most {len(names)} arguments, got {len(args)}")
        values = dict(params)
        values.update(zip(names, args))
        for k, v in kwargs.items():
            if k not in values:
                raise TypeError(f"{name} got an unexpected keyword argument {k!r}")
            values[k] = v
        missing = [p for p in names if values[p] is _REQUIRED]
        if missing:
            raise TypeError(f"{name} missing required argument {missing[0]!r}")
        self.kwargs = values

    def forward(self, x):
        return fn(nd, x, **self.kwargs)

    return type(name, (_Stateless,), {"__init__": __init__, "forward": forward, "__doc__": doc})


_REQUIRED = object()
_MAX = (("kernel_size", _REQUIRED), ("stride", None), ("padding", 0), ("dilation", 1), ("return_indices", False),
        ("ceil_mode", False))
_AVG = (("kernel_size", _REQUIRED), ("stride", None), ("padding", 0), ("ceil_mode", False),
        ("count_include_pad", True), ("divisor_override", None))
_LP = (("norm_type", _REQUIRED), ("kernel_size", _REQUIRED), ("stride", None), ("ceil_mode", False))


def _lp(nd, x, norm_type, kernel_size, stride, ceil_mode):
    return F.lp_pool(nd, x, norm_type, kernel_size, stride, 0, ceil_mode)


for _nd in (1, 2, 3):
    globals()[f"MaxPool{_nd}d"] = _pool_class(f"MaxPool{_nd}d", _nd, F.max_pool, _MAX,
                                              f"``max_pool{_nd}d`` with PyTorch's arguments.")
    globals()[f"AvgPool{_nd}d"] = _pool_class(f"AvgPool{_nd}d", _nd, F.avg_pool, _AVG,
                                              f"``avg_pool{_nd}d`` with PyTorch's arguments.")
    globals()[f"LPPool{_nd}d"] = _pool_class(f"LPPool{_nd}d", _nd, _lp, _LP,
                                             f"``lp_pool{_nd}d`` (the p-norm of each window) with PyTorch's arguments.")
    globals()[f"AdaptiveAvgPool{_nd}d"] = _pool_class(f"AdaptiveAvgPool{_nd}d", _nd, F.adaptive_avg_pool,
                                                      (("output_size", _REQUIRED),),
                                                      "Adaptive average pooling to ``output_size`` (section 9.7).")
    globals()[f"AdaptiveMaxPool{_nd}d"] = _pool_class(f"AdaptiveMaxPool{_nd}d", _nd, F.adaptive_max_pool,
                                                      (("output_size", _REQUIRED), ("return_indices", False)),
                                                      "Adaptive max pooling to ``output_size`` (section 9.7).")


class Maxout(_Stateless):
    """Maxout over groups of ``pieces`` channels (Fig. 9.9)."""

    def __init__(self, pieces):
        super().__init__(pieces=pieces)

    def forward(self, x):
        return F.maxout(x, **self.kwargs)


# ----------------------------------------------------------------------------- dropout


class Dropout(_Stateless):
    """Dropout with probability ``p`` in training; the identity in ``eval()``."""

    def __init__(self, p=0.5):
        super().__init__(p=F._probability(p))

    def forward(self, x):
        return F.dropout(x, self.kwargs["p"], self.training)


class AlphaDropout(Dropout):
    """Alpha-dropout for SELU networks (keeps mean 0 and variance 1); the identity in ``eval()``."""

    def forward(self, x):
        return F.alpha_dropout(x, self.kwargs["p"], self.training)


# ----------------------------------------------------------------------------- losses


class CrossEntropyLoss(_Stateless):
    def __init__(self, ignore_index=-100, reduction="mean"):
        super().__init__(ignore_index=ignore_index, reduction=reduction)

    def forward(self, input, target):
        return F.cross_entropy(input, target, **self.kwargs)


class MSELoss(_Stateless):
    def __init__(self, reduction="mean"):
        super().__init__(reduction=reduction)

    def forward(self, input, target):
        return F.mse_loss(input, target, **self.kwargs)


# ----------------------------------------------------------------------------- batch norm


class _BatchNorm(Module):
    ndims = (4,)

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, dtype=None):
        super().__init__()
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
            raise ValueError(f"num_features must be a positive int, got {num_features!r}")
        dtype = _float_dtype(dtype)
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        self.weight = Parameter(np.ones(num_features, dtype)) if affine else None
        self.bias = Parameter(np.zeros(num_features, dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(num_features, dtype))
            self.register_buffer("running_var", np.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None

    def forward(self, x):
        if x.ndim not in self.ndims:
            raise ValueError(f"{type(self).__name__} expects input of {' or '.join(map(str, self.ndims))} dims, "
                             f"got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got input with {x.shape[1]} channels "
                             f"(shape {x.shape})")
        use_batch = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked)
        update = self.training and self.track_running_stats
        return F.batch_norm(x, self.running_mean if update or not use_batch else None,
                            self.running_var if update or not use_batch else None,
                            self.weight, self.bias, use_batch, momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)``."""

    ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)``: one mean and variance per channel."""

    ndims = (4,)


class BatchNorm3d(_BatchNorm):
    ndims = (5,)
