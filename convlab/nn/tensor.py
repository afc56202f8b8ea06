"""Reverse-mode automatic differentiation over NumPy and CuPy arrays.

A :class:`Tensor` wraps an array. An operation on tensors that need gradients records one
:class:`Function` node: the node keeps what its backward needs (its "residuals") and a
link to its input tensors. ``loss.backward()`` visits the recorded nodes in reverse
topological order; each node turns the gradient of its output into the gradients of its
inputs (the chain rule, eq. 6.46 of the book), and a tensor used several times receives
the sum of its gradients. Leaves (tensors made by the user, such as parameters) keep
their gradient in ``.grad``; a node frees its residuals once its backward has run.
"""
from __future__ import annotations

import threading

import numpy as np

from .._backend import get_array_module

_state = threading.local()


def is_grad_enabled() -> bool:
    """Whether operations are recorded for backward (False inside :class:`no_grad`)."""
    return getattr(_state, "enabled", True)


class no_grad:
    """Context manager (and decorator) in which no graph is recorded: for evaluation and
    for updates of parameters in place."""

    def __enter__(self):
        self._prev = is_grad_enabled()
        _state.enabled = False

    def __exit__(self, *exc):
        _state.enabled = self._prev

    def __call__(self, fn):
        def wrapped(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        wrapped.__name__, wrapped.__doc__ = fn.__name__, fn.__doc__
        return wrapped


class BackwardError(RuntimeError, ValueError):
    """A backward pass that cannot run: a non-scalar output without ``grad``, or a graph
    whose residuals were freed by an earlier backward (pass ``retain_graph=True`` to keep them)."""


# ----------------------------------------------------------------------------- Function

class Function:
    """One node of the graph: ``forward`` maps input arrays to one output array,
    ``backward`` maps the output's gradient to one gradient (or None) per input.

    Subclasses take their non-array parameters in ``__init__``; ``apply(*inputs)`` takes
    Tensors, arrays, Python numbers or None (the last three are constants). Before
    ``forward`` runs, ``self.needs`` says which inputs need a gradient, so a forward can
    keep only the residuals its backward will use.
    """

    needs: tuple = ()
    inputs: tuple = ()
    freed = False

    def forward(self, *arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad):  # pragma: no cover - abstract
        raise NotImplementedError

    def apply(self, *inputs):
        arrays, tensors, needs = [], [], []
        xp = None
        for a in inputs:
            if isinstance(a, Tensor):
                if xp is None:
                    xp = a._xp
                elif a._xp is not xp:
                    raise TypeError(f"{type(self).__name__}: operands mix NumPy and CuPy tensors; "
                                    "move them to one device first")
                arrays.append(a.data)
                tensors.append(a)
                needs.append(a.requires_grad)
            else:
                arrays.append(a)
                tensors.append(None)
                needs.append(False)
        record = any(needs) and is_grad_enabled()
        self.needs = tuple(needs) if record else (False,) * len(needs)
        out = self.forward(*arrays)
        if not record:
            return Tensor(out)
        self.inputs = tuple(tensors)
        return Tensor(out, requires_grad=True, _node=self)

    def release(self):
        """Drop the residuals and the links to the inputs (after a backward)."""
        self.__dict__.clear()
        self.freed = True


def _topological(root_node):
    """The nodes reachable from ``root_node``, each before every node it feeds from
    (a depth-first post-order, reversed)."""
    order, visited, stack = [], set(), [(root_node, False)]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for t in node.inputs:
            child = None if t is None else t._node
            if child is not None and id(child) not in visited:
                stack.append((child, False))
    order.reverse()
    return order


def _backward(root, grad, retain_graph):
    if root._node is None:
        root._accumulate(grad)
        return
    nodes = _topological(root._node)
    grads = {id(root._node): grad}
    for node in nodes:
        if node.freed:
            raise BackwardError("backward through a graph that was already freed by a previous backward; "
                                "call backward(retain_graph=True) the first time to run it twice")
        g = grads.pop(id(node), None)
        if g is None:  # no path from the root reaches this node's output with a gradient
            continue
        in_grads = node.backward(g)
        if not isinstance(in_grads, tuple):
            in_grads = (in_grads,)
        for t, need, gi in zip(node.inputs, node.needs, in_grads):
            if not need or gi is None:
                continue
            if isinstance(gi, np.generic):  # NumPy arithmetic on 0-d arrays gives scalars
                gi = np.asarray(gi)
            if gi.shape != t.shape:
                raise AssertionError(f"{type(node).__name__} returned a gradient of shape {gi.shape} "
                                     f"for an input of shape {t.shape}")
            if t._node is None:
                t._accumulate(gi)
            else:
                key = id(t._node)
                grads[key] = gi if key not in grads else grads[key] + gi
        if not retain_graph:
            node.release()


# ----------------------------------------------------------------------------- Tensor

class Tensor:
    """An array with an optional gradient: ``Tensor(data, requires_grad=False)``.

    ``data`` is a NumPy or CuPy array (a Python number or list becomes a float32 NumPy
    array when it holds floats); ``grad`` is an array like ``data`` after a backward, or
    None. Operators ``+ - * / @ **`` and unary minus, ``sum``, ``mean``, ``reshape``,
    ``transpose``, indexing, and the functions of :mod:`convlab.nn.functional` record the
    graph that :meth:`backward` walks.
    """

    __array_priority__ = 1000  # numpy scalars and arrays defer to Tensor's operators

    def __init__(self, data, requires_grad=False, *, _node=None):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.generic):  # a NumPy scalar (a full reduction) keeps its dtype
            data = np.asarray(data)
        elif not _is_array(data):  # Python numbers and lists: float32, as PyTorch's default dtype
            data = np.asarray(data)
            if data.dtype == np.float64:
                data = data.astype(np.float32)
        if requires_grad and data.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {data.dtype}")
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._node = _node

    # -- array facts
    @property
    def _xp(self):
        return get_array_module(self.data)

    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return self.data.size

    @property
    def device(self):
        return "cpu" if isinstance(self.data, np.ndarray) else "cuda"

    @property
    def is_leaf(self):
        return self._node is None

    @property
    def grad_fn(self):
        return self._node

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        extra = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self.data!r}{extra})"

    def numpy(self):
        """The data as a NumPy array (a copy from the GPU for a CuPy tensor)."""
        return self.data if isinstance(self.data, np.ndarray) else self.data.get()

    def item(self):
        return self.data.item()

    def detach(self):
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag=True):
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    # -- backward
    def backward(self, grad=None, retain_graph=False):
        """Accumulate ``d self / d leaf`` (times ``grad``) into the ``.grad`` of every leaf
        that requires it. ``grad`` may be omitted only for a one-element tensor."""
        if not self.requires_grad:
            raise BackwardError("backward on a tensor that does not require grad (no input of the "
                                "computation had requires_grad=True, or it ran under no_grad)")
        if grad is None:
            if self.size != 1:
                raise BackwardError(f"backward on a non-scalar tensor of shape {self.shape} needs grad, "
                                    "an array of that shape")
            grad = self._xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            if not _is_array(grad) or get_array_module(grad) is not self._xp:
                raise TypeError(f"grad must be an array of the tensor's array module, got {type(grad).__name__}")
            if tuple(grad.shape) != self.shape:
                raise ValueError(f"grad must have the tensor's shape {self.shape}, got {tuple(grad.shape)}")
            grad = grad.astype(self.dtype, copy=False)
        _backward(self, grad, retain_graph)

    def _accumulate(self, g):
        if self.requires_grad:
            self.grad = g.copy() if self.grad is None else self.grad + g

    def zero_grad(self):
        self.grad = None


def _is_array(a):
    try:
        get_array_module(a)
    except TypeError:
        return False
    return True


def as_tensor(a, like=None):
    """``a`` as a Tensor: Tensors pass through; arrays are wrapped; numbers take ``like``'s
    dtype and array module."""
    if isinstance(a, Tensor):
        return a
    if _is_array(a):
        return Tensor(a)
    if like is not None:
        return Tensor(like._xp.asarray(a, dtype=like.dtype))
    return Tensor(a)
