"""Networks on the engine: reverse-mode autograd (:class:`Tensor`), layers with PyTorch's
names (:mod:`convlab.nn.modules`), their functions (:mod:`convlab.nn.functional`) and
initialisers (:mod:`convlab.nn.init`)."""
from . import _functions  # noqa: F401  (attaches the operators to Tensor)
from . import functional, init
from .functional import cat, stack
from .modules import *  # noqa: F401,F403
from .modules import __all__ as _modules
from .random import manual_seed
from .tensor import BackwardError, Function, Tensor, is_grad_enabled, no_grad

__all__ = ["Tensor", "Function", "BackwardError", "no_grad", "is_grad_enabled", "manual_seed", "functional", "init",
           "cat", "stack"] + _modules
