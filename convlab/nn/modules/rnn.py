"""Recurrent cells with PyTorch's parameter names, shapes, gate order and initialisation.

Both cells take ``input (N, input_size)`` and a state of ``(N, hidden_size)`` arrays (zeros
when omitted), or one unbatched sample ``(input_size,)`` with ``(hidden_size,)`` states. A cell applied at every step of a sequence reuses its weights, and the
gradients of the steps add up in them (backpropagation through time, section 10.2.2).
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .. import init
from ..tensor import Tensor
from .module import Module, Parameter, _float_dtype


class _Cell(Module):
    gates = 1

    def __init__(self, input_size, hidden_size, bias=True, dtype=None):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        dtype = _float_dtype(dtype)
        self.input_size, self.hidden_size, self.bias = int(input_size), int(hidden_size), bias
        rows = self.gates * hidden_size
        self.weight_ih = Parameter(np.empty((rows, input_size), dtype))
        self.weight_hh = Parameter(np.empty((rows, hidden_size), dtype))
        self.bias_ih = Parameter(np.empty(rows, dtype)) if bias else None
        self.bias_hh = Parameter(np.empty(rows, dtype)) if bias else None
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            init.uniform_(p, -bound, bound)

    def forward(self, input, hx=None):
        """One step; ``input (N, input_size)`` or, unbatched, ``(input_size,)`` with states of
        ``(hidden_size,)``, as PyTorch's cells take."""
        if isinstance(input, Tensor) and input.ndim == 1:
            row = lambda a: (a if isinstance(a, Tensor) else Tensor(a)).reshape((1, -1))  # noqa: E731
            hx = None if hx is None else (tuple(map(row, hx)) if isinstance(hx, tuple) else row(hx))
            out = self.step(input.reshape((1, -1)), hx)
            return tuple(o.reshape((-1,)) for o in out) if isinstance(out, tuple) else out.reshape((-1,))
        return self.step(input, hx)

    def _check(self, x, state):
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: input must be a Tensor (N, {self.input_size}), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        shape = (x.shape[0], self.hidden_size)
        if state is None:
            return Tensor(x._xp.zeros(shape, dtype=x.dtype))
        state = state if isinstance(state, Tensor) else Tensor(state)
        if state.shape != shape:
            raise ValueError(f"{type(self).__name__}: hidden state must have shape {shape}, got {state.shape}")
        return state

    def _gates(self, x, h):
        """``(W_ih x + b_ih, W_hh h + b_hh)``, each ``(N, gates * hidden)``."""
        return F.linear(x, self.weight_ih, self.bias_ih), F.linear(h, self.weight_hh, self.bias_hh)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class GRUCell(_Cell):
    """Gated recurrent unit (Cho et al. 2014), gates in PyTorch's order ``r, z, n``::

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    ``weight_ih (3*hidden, input)``, ``weight_hh (3*hidden, hidden)``, biases ``(3*hidden,)``.
    """

    gates = 3

    def step(self, input, hx=None):
        h = self._check(input, hx)
        gi, gh = self._gates(input, h)
        H = self.hidden_size
        r = F.sigmoid(gi[:, :H] + gh[:, :H])
        z = F.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = F.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        return n + z * (h - n)


class LSTMCell(_Cell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997), gates in PyTorch's order ``i, f, g, o``::

        i, f, o = sigmoid(...), g = tanh(...)      (each W_i* x + b_i* + W_h* h + b_h*)
        c' = f * c + i * g        h' = o * tanh(c')

    ``forward(input, (h, c))`` returns ``(h', c')``; ``weight_ih (4*hidden, input)``.
    """

    gates = 4

    def step(self, input, hx=None):
        h, c = (None, None) if hx is None else hx
        h, c = self._check(input, h), self._check(input, c)
        gi, gh = self._gates(input, h)
        a = gi + gh
        H = self.hidden_size
        i, f = F.sigmoid(a[:, :H]), F.sigmoid(a[:, H:2 * H])
        g, o = F.tanh(a[:, 2 * H:3 * H]), F.sigmoid(a[:, 3 * H:])
        c2 = f * c + i * g
        return o * F.tanh(c2), c2
