"""The algorithm protocol: what every convolution algorithm, reference or CUDA, provides.

An algorithm is a module with two functions::

    supports(args)       -> None, or why it cannot serve these shapes (a str)
    prepare(x, w, args)  -> a Prepared, or why it cannot serve these operands (a str)

``args`` is a :class:`convlab._params.ConvArgs`; ``x`` is the array the pass slides over
(the input, or the output gradient of a backward or transposed pass) and ``w`` the kernel.
Either may be ``None`` when only its shape is known (``choose_algorithm``): an algorithm
that must look at values then assumes nothing unusual, or says why it cannot decide.
``prepare`` looks at the operands once (finiteness, the FFT's precision guard, the
separable factors, the CUDA device) and returns what it decided as a :class:`Prepared`.
"""
from __future__ import annotations

import functools
import sys
from dataclasses import dataclass

import numpy as np

from ._backend import get_array_module


@dataclass(frozen=True)
class Prepared:
    """One algorithm made ready for one convolution ``args``.

    ``run`` provides ``forward(x, w, args)``, ``grad_input(gy, w, args)`` and
    ``grad_weight(gy, x, args)`` (eq. 9.7/9.8 and 9.11-9.13; shapes as in
    :mod:`convlab.conv`): the algorithm module itself, or an object holding what
    ``prepare`` decided (the FFT's working dtype, the separable factors). ``name`` is the
    algorithm that runs (an algorithm may hand operands it cannot serve faithfully to
    another, saying so in ``note``) and ``dtype`` the dtype it computes in.
    """

    name: str
    args: object
    dtype: np.dtype
    run: object
    note: str = ""

    def forward(self, x, w):
        return self.run.forward(x, w, self.args)

    def grad_input(self, gy, w):
        return self.run.grad_input(gy, w, self.args)

    def grad_weight(self, gy, x):
        return self.run.grad_weight(gy, x, self.args)

    def cost(self) -> float:
        """Predicted seconds of the forward pass (:func:`convlab._cost.predict`)."""
        return _cost_model().predict(self.name, self.args, self.dtype)


@functools.cache
def _cost_model():
    """:mod:`convlab._cost`, imported when first asked: it reads the algorithms' plans, and
    the algorithms import this module."""
    from . import _cost

    return _cost


def dtype_of(x, w, args):
    """The dtype of the convolution: the operands', else the one ``args`` was made for."""
    for a in (x, w):
        if a is not None:
            return a.dtype  # an array's dtype is an np.dtype already
    return np.dtype(args.dtype or np.float64)


def plain(module_name, name, x, w, args, note="", run=None):
    """The algorithm module ``module_name`` itself (or ``run``, an object serving these shapes
    for it), prepared as ``name``: for algorithms that need no look at the operands. Such a
    preparation depends on the shapes and the dtype alone, so it is made once for them."""
    dtype = dtype_of(x, w, args)
    key = (module_name, name, args, dtype, note, id(run))  # a remembered Prepared holds run: its id stays unique
    try:
        return _plain[key]
    except KeyError:
        pass
    module = sys.modules[module_name]
    prepared = module.supports(args) or Prepared(name, args, dtype, run or module, note)
    if len(_plain) >= PLAIN_SIZE:
        _plain.clear()
    _plain[key] = prepared
    return prepared


_plain: dict = {}
PLAIN_SIZE = 4096


def all_finite(*arrays):
    """True when no array holds NaN or infinity (algorithms that mix a window's inputs with
    their neighbours' ask, to keep NaN inside the windows that read it)."""
    return all(bool(get_array_module(a).isfinite(a).all()) for a in arrays)


def ready(prepared):
    """``prepared`` when it is a :class:`Prepared`; a reason (str) raises ``ValueError`` with it."""
    if isinstance(prepared, str):
        raise ValueError(prepared)
    return prepared
