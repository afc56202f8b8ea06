"""Shared helpers of the convlab.nn tests: a finite-difference check of any graph of Tensors
through ``convlab.gradcheck``, and float64 leaves."""
import numpy as np

from convlab import gradcheck
from convlab.nn import Tensor, no_grad


def check_grads(fn, tensors, **tolerances):
    """Gradcheck ``fn()`` (a Tensor built from ``tensors``, which may be leaves of any graph,
    module parameters included) in float64 by central differences of ``<R, fn()>``.

    ``convlab.gradcheck`` perturbs float64 copies of the tensors' arrays one element at a
    time; its forward installs them as the tensors' data and runs ``fn`` (no gradient), its
    backward runs ``fn().backward(R)`` and returns each tensor's ``.grad``. ``fn`` is called
    afresh for every evaluation, so it must be deterministic (seed dropout inside it).
    """
    tensors = list(tensors)
    for t in tensors:
        assert isinstance(t, Tensor) and t.requires_grad, "check_grads checks tensors that require grad"

    def install(arrays):
        for t, a in zip(tensors, arrays):
            t.data = a
            t.grad = None

    def forward(*arrays):
        install(arrays)
        with no_grad():
            return fn().data

    def backward(r, *arrays):
        install(arrays)
        out = fn()
        out.backward(r)
        return tuple(t.grad for t in tensors)

    originals = [t.data for t in tensors]
    try:
        return gradcheck(forward, backward, [t.data for t in tensors], **tolerances)
    finally:
        install(originals)


def leaves(*arrays):
    """float64 Tensors that require grad."""
    return [Tensor(np.asarray(a, dtype=np.float64), requires_grad=True) for a in arrays]
