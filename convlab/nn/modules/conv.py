"""Layers with weights: ``Linear``, ``Conv{1,2,3}d``, ``ConvTranspose{1,2,3}d``, ``LocalConv2d``, ``TiledConv2d``.

Constructor arguments, defaults, parameter shapes and initial distributions are PyTorch's:
weights and biases start ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (``kaiming_uniform_`` with
``a = sqrt(5)``), ``fan_in`` being the inputs one output reads (``C/groups * prod(kernel)``).
"""
from __future__ import annotations

import math

import numpy as np

from ... import _params as P
from .. import functional as F
from .. import init
from .module import Module, Parameter, _float_dtype


def _tuple(value, nd, name):
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),) * nd
    if isinstance(value, (tuple, list)) and len(value) == nd and all(isinstance(v, (int, np.integer)) for v in value):
        return tuple(int(v) for v in value)
    raise TypeError(f"{name} must be an int or {nd} ints, got {value!r}")


def _count(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _reset(weight, bias, fan_in):
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    init.uniform_(weight, -bound, bound)
    if bias is not None:
        init.uniform_(bias, -bound, bound)


def _param(shape, dtype):
    return Parameter(np.empty(shape, dtype=_float_dtype(dtype)))


def _check_in_channels(module, x):
    """A layer's input must have its ``in_channels`` on axis 1 (the engine would blame the weight's shape)."""
    shape = getattr(x, "shape", ())
    if len(shape) >= 2 and shape[1] != module.in_channels:
        raise ValueError(f"{type(module).__name__}: input has {shape[1]} channels but in_channels is "
                         f"{module.in_channels} (input shape {tuple(shape)})")


class Linear(Module):
    """``y = x @ weight.T + bias``: ``(*, in_features)`` -> ``(*, out_features)``."""

    def __init__(self, in_features, out_features, bias=True, dtype=None):
        super().__init__()
        self.in_features, self.out_features = _count(in_features, "in_features"), _count(out_features, "out_features")
        self.weight = _param((out_features, in_features), dtype)
        self.bias = _param((out_features,), dtype) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        _reset(self.weight, self.bias, self.in_features)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _ConvNd(Module):
    nd = 2
    transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, output_padding=0, algorithm="auto", dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = _count(in_channels, "in_channels"), _count(out_channels, "out_channels")
        self.groups = _count(groups, "groups")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by "
                             f"groups ({groups})")
        self.kernel_size = _tuple(kernel_size, self.nd, "kernel_size")
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.output_padding, self.algorithm = output_padding, algorithm
        if self.transposed:
            shape = (in_channels, out_channels // groups) + self.kernel_size
        else:
            shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = _param(shape, dtype)
        self.bias = _param((out_channels,), dtype) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        _reset(self.weight, self.bias, init.fans(self.weight.shape)[0])

    def forward(self, x):
        _check_in_channels(self, x)
        if self.transposed:
            return F.conv_transpose(self.nd, x, self.weight, self.bias, self.stride, self.padding,
                                    self.output_padding, self.groups, self.dilation, algorithm=self.algorithm)
        return F.conv(self.nd, x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                      algorithm=self.algorithm)

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}")


class Conv1d(_ConvNd):
    """``conv1d`` with a weight ``(out_channels, in_channels/groups, k)`` and a bias ``(out_channels,)``."""

    nd = 1

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, algorithm="auto", dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         algorithm=algorithm, dtype=dtype)


class Conv2d(Conv1d):
    """``conv2d`` with a weight ``(out_channels, in_channels/groups, kH, kW)`` and a bias ``(out_channels,)``."""

    nd = 2


class Conv3d(Conv1d):
    """``conv3d`` with a weight ``(out_channels, in_channels/groups, kD, kH, kW)``."""

    nd = 3


class ConvTranspose1d(_ConvNd):
    """``conv_transpose1d`` with PyTorch's weight ``(in_channels, out_channels/groups, k)``."""

    nd = 1
    transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, algorithm="auto", dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         output_padding=output_padding, algorithm=algorithm, dtype=dtype)


class ConvTranspose2d(ConvTranspose1d):
    """``conv_transpose2d`` with PyTorch's weight ``(in_channels, out_channels/groups, kH, kW)``."""

    nd = 2


class ConvTranspose3d(ConvTranspose1d):
    nd = 3


class LocalConv2d(Module):
    """Locally connected layer (unshared convolution, eq. 9.9): one kernel per output position.

    The output size must be known to size the weight, so the layer takes ``input_size
    (H, W)``. Weight ``(out_channels, H_out, W_out, in_channels, kH, kW)``, bias
    ``(out_channels, H_out, W_out)``; fan-in ``in_channels * kH * kW``.
    """

    def __init__(self, in_channels, out_channels, input_size, kernel_size, stride=1, padding=0, dilation=1,
                 bias=True, dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = _count(in_channels, "in_channels"), _count(out_channels, "out_channels")
        self.input_size = _tuple(input_size, 2, "input_size")
        self.kernel_size = _tuple(kernel_size, 2, "kernel_size")
        self.stride, self.padding, self.dilation = stride, padding, dilation
        args = P.conv_shape_args((1, in_channels) + self.input_size, (out_channels, in_channels) + self.kernel_size,
                                 stride, padding, dilation, 1, 2)
        self.output_size = args.geom.out_size
        self.weight = _param((out_channels,) + self.output_size + (in_channels,) + self.kernel_size, dtype)
        self.bias = _param((out_channels,) + self.output_size, dtype) if bias else None
        _reset(self.weight, self.bias, in_channels * math.prod(self.kernel_size))

    def forward(self, x):
        _check_in_channels(self, x)
        return F.local_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


class TiledConv2d(Module):
    """Tiled convolution (eq. 9.10): ``tiles (tH, tW)`` kernels used in turn across the output.

    Weight ``(out_channels, tH, tW, in_channels, kH, kW)``, bias ``(out_channels,)``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, tiles, stride=1, padding=0, dilation=1, bias=True,
                 dtype=None):
        super().__init__()
        self.in_channels, self.out_channels = _count(in_channels, "in_channels"), _count(out_channels, "out_channels")
        self.kernel_size = _tuple(kernel_size, 2, "kernel_size")
        self.tiles = _tuple(tiles, 2, "tiles")
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.weight = _param((out_channels,) + self.tiles + (in_channels,) + self.kernel_size, dtype)
        self.bias = _param((out_channels,), dtype) if bias else None
        _reset(self.weight, self.bias, in_channels * math.prod(self.kernel_size))

    def forward(self, x):
        _check_in_channels(self, x)
        return F.tiled_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
