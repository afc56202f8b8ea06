"""``Module``, ``Parameter`` and the containers, with PyTorch's names and ``state_dict`` keys."""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from ..._backend import get_array_module
from ..tensor import Tensor

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimiser updates (``requires_grad=True``)."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return f"Parameter({self.data!r})"


def _float_dtype(dtype):
    dtype = np.dtype(np.float32 if dtype is None else dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dtype


class Module:
    """Base of every layer: holds Parameters, buffers (arrays saved with the weights, such as
    running statistics) and sub-Modules, found by attribute assignment.

    ``state_dict()`` names them as PyTorch does (``"0.weight"``, ``"bns.2.running_mean"``),
    so weights move between the two as plain arrays.
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() before "
                                 f"assigning {name!r}")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            self._buffers[name] = value  # a buffer reassigned, e.g. by ``+=``
            return
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        for registry in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(registry)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name):
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry:
                del registry[name]
                return
        object.__delattr__(self, name)

    def register_buffer(self, name, array):
        """Keep ``array`` (or None) in the state dict under ``name``; it is not a parameter."""
        if array is not None:
            get_array_module(array, name=name)
        self.__dict__.pop(name, None)
        self._buffers[name] = array

    def register_parameter(self, name, param):
        if param is None:
            self._parameters[name] = None
        else:
            setattr(self, name, param)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"{name} must be a Module, got {type(module).__name__}")
        self._modules[name] = module

    # -- traversal
    def named_modules(self, prefix=""):
        seen = set()

        def walk(module, prefix):
            if id(module) in seen:
                return
            seen.add(id(module))
            yield prefix, module
            for name, child in module._modules.items():
                if child is not None:
                    yield from walk(child, f"{prefix}.{name}" if prefix else name)

        yield from walk(self, prefix)

    def modules(self):
        return (m for _, m in self.named_modules())

    def children(self):
        return (m for m in self._modules.values() if m is not None)

    def named_children(self):
        return ((n, m) for n, m in self._modules.items() if m is not None)

    def named_parameters(self, prefix="", recurse=True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_prefix, module in modules:
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), p

    def parameters(self, recurse=True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix=""):
        for mod_prefix, module in self.named_modules(prefix):
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{mod_prefix}.{name}" if mod_prefix else name), b

    def buffers(self):
        return (b for _, b in self.named_buffers())

    # -- state
    def state_dict(self):
        """An ordered dict of every parameter's and buffer's array, keyed as PyTorch keys them
        (a module's parameters, then its buffers, then its children's, recursively)."""
        state = OrderedDict()

        def collect(module, prefix):
            for name, p in module._parameters.items():
                if p is not None:
                    state[prefix + name] = p.data
            for name, b in module._buffers.items():
                if b is not None:
                    state[prefix + name] = b
            for name, child in module._modules.items():
                if child is not None:
                    collect(child, prefix + name + ".")

        collect(self, "")
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, CuPy, or anything with ``__array__``, such as a PyTorch CPU tensor's
        ``.numpy()``) into the parameters and buffers, in place and in their own dtype and device.
        ``strict`` raises ``KeyError`` on a missing or unexpected key; a shape mismatch is a ``ValueError``."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        targets = {}
        for prefix, module in self.named_modules():
            for name, p in module._parameters.items():
                if p is not None:
                    targets[(prefix + "." if prefix else "") + name] = (module, name, True)
            for name, b in module._buffers.items():
                if b is not None:
                    targets[(prefix + "." if prefix else "") + name] = (module, name, False)
        for key, value in state_dict.items():
            if key not in targets:
                continue
            module, name, is_param = targets[key]
            dest = module._parameters[name].data if is_param else module._buffers[name]
            xp = get_array_module(dest)
            src = value.data if isinstance(value, Tensor) else value
            if not isinstance(src, (np.ndarray, np.generic)) and xp is np and hasattr(src, "get"):
                src = src.get()  # a CuPy array loaded into a NumPy module
            src = xp.asarray(np.asarray(src) if xp is np else src)
            if tuple(src.shape) != tuple(dest.shape):
                raise ValueError(f"load_state_dict: {key} has shape {tuple(src.shape)}, the module's "
                                 f"is {tuple(dest.shape)}")
            dest[...] = src.astype(dest.dtype, copy=False)
        return IncompatibleKeys(missing, unexpected)

    # -- modes and devices
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, flag=True):
        for p in self.parameters():
            p.requires_grad_(flag)
        return self

    def apply(self, fn):
        for m in self.children():
            m.apply(fn)
        fn(self)
        return self

    def to(self, dtype=None, device=None):
        """Convert every parameter and floating buffer to ``dtype`` and/or move them to
        ``device`` (``"cpu"`` or ``"cuda"``), in place; returns ``self``."""
        if isinstance(dtype, str) and dtype in ("cpu", "cuda"):
            dtype, device = None, dtype
        elif isinstance(dtype, str):
            try:
                np.dtype(dtype)
            except TypeError:
                raise ValueError(f"to() takes a float dtype or a device ('cpu' or 'cuda'), got {dtype!r}") from None
        dtype = None if dtype is None else _float_dtype(dtype)
        xp = _device_module(device)

        def convert(a):
            if device is not None:
                a = _move(a, xp)
            if dtype is not None and a.dtype.kind == "f":
                a = a.astype(dtype, copy=False)
            return a

        for m in self.modules():
            for name, p in m._parameters.items():
                if p is not None:
                    p.data = convert(p.data)
                    p.grad = None if p.grad is None else convert(p.grad)
            for name, b in list(m._buffers.items()):
                if b is not None:
                    m._buffers[name] = convert(b)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    def cuda(self):
        return self.to(device="cuda")

    def cpu(self):
        return self.to(device="cpu")

    # -- calling
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        return head + ("\n" + "\n".join(lines) + "\n)" if lines else ")")


def _device_module(device):
    if device is None or device == "cpu":
        return np
    if device == "cuda":
        from ..._backend import _cupy

        if _cupy is None:
            raise ValueError("device 'cuda' needs CuPy, which is not installed")
        return _cupy
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def _move(a, xp):
    if get_array_module(a) is xp:
        return a
    return a.get() if xp is np else xp.asarray(a)


class Sequential(Module):
    """Modules applied in order: ``Sequential(m0, m1, ...)`` or ``Sequential(OrderedDict(...))``;
    their state dict keys are ``"0.weight"``, ``"1.bias"`` ... (or the given names)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        if isinstance(i, slice):
            return Sequential(*items[i])
        return items[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleList(Module):
    """A list of Modules whose parameters are registered (keys ``"0.weight"``, ``"1.weight"`` ...)."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module):
        self.add_module(str(len(self._modules)), module)
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def __getitem__(self, i):
        items = list(self._modules.values())
        return ModuleList(items[i]) if isinstance(i, slice) else items[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


def save(state, path):
    """Write a state dict (or a Module's) to ``path`` as ``.npz``; CuPy arrays are copied to the host."""
    if isinstance(state, Module):
        state = state.state_dict()
    arrays = {k: (v.get() if hasattr(v, "get") and not isinstance(v, np.ndarray) else np.asarray(v))
              for k, v in state.items()}
    np.savez(path, **arrays)


def load(path):
    """Read a state dict written by :func:`save`: an ordered dict of NumPy arrays."""
    with np.load(path, allow_pickle=False) as f:
        return OrderedDict((k, f[k]) for k in f.files)
