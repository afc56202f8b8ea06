"""Initialisers with PyTorch's names and distributions; each fills a Tensor in place and returns it.

Fan-in and fan-out of a weight ``(out, in, *kernel)`` are ``in * prod(kernel)`` and
``out * prod(kernel)`` (for a convolution ``(K, C/groups, kh, kw)`` the fan-in is ``C/groups*kh*kw``).
Random numbers come from :func:`convlab.nn.manual_seed`'s generator.
"""
from __future__ import annotations

import math

import numpy as np

from .._backend import get_array_module
from . import random as _random
from .tensor import Tensor

GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3,
         "relu": math.sqrt(2.0), "selu": 0.75}


def calculate_gain(nonlinearity, param=None):
    """The standard deviation gain of a nonlinearity (PyTorch's table; ``leaky_relu`` with
    negative slope ``param``, default 0.01)."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity not in GAINS:
        raise ValueError(f"nonlinearity must be one of {sorted(GAINS) + ['leaky_relu']}, got {nonlinearity!r}")
    return GAINS[nonlinearity]


def fans(shape):
    """``(fan_in, fan_out)`` of a weight of ``shape`` ``(out, in, *kernel)``."""
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dims, got shape {tuple(shape)}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fill(tensor, sample):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor must be a convlab.nn.Tensor, got {type(tensor).__name__}")
    xp = get_array_module(tensor.data)
    values = sample(_random.generator(np), tensor.shape)  # drawn on the host: the same numbers on any device
    tensor.data[...] = xp.asarray(np.asarray(values, dtype=tensor.dtype))
    return tensor


def uniform_(tensor, a=0.0, b=1.0):
    return _fill(tensor, lambda g, s: g.uniform(a, b, s))


def normal_(tensor, mean=0.0, std=1.0):
    return _fill(tensor, lambda g, s: g.normal(mean, std, s))


def constant_(tensor, value):
    return _fill(tensor, lambda g, s: np.full(s, value))


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def _fan(tensor, mode):
    fan_in, fan_out = fans(tensor.shape)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    return fan_in if mode == "fan_in" else fan_out


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """``U(-bound, bound)`` with ``bound = gain * sqrt(3 / fan)`` (He et al. 2015)."""
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / _fan(tensor, mode))
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    """``N(0, std^2)`` with ``std = gain / sqrt(fan)`` (He et al. 2015)."""
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)))


def xavier_uniform_(tensor, gain=1.0):
    """``U(-bound, bound)`` with ``bound = gain * sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010)."""
    fan_in, fan_out = fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain=1.0):
    fan_in, fan_out = fans(tensor.shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def lecun_normal_(tensor, fan_in=None):
    """``N(0, 1/fan_in)``: the initialisation of self-normalising networks (LeCun et al. 1998,
    Klambauer et al. 2017). ``fan_in`` defaults to ``in * prod(kernel)`` of ``(out, in, *kernel)``."""
    fan_in = fans(tensor.shape)[0] if fan_in is None else fan_in
    return normal_(tensor, 0.0, 1.0 / math.sqrt(fan_in))
