"""``Optimizer``, ``SGD`` and ``Adam``: parameter updates in place, in PyTorch's order of operations
(so that the same gradients give the same weights to rounding)."""
from __future__ import annotations

import math

from ..nn.tensor import Tensor


def _number(value, name, low=0.0, high=math.inf, open_high=False):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (low <= value and
                                                                            (value < high if open_high else value <= high)):
        bound = f"[{low}, {high})" if open_high else f"[{low}, {high}]"
        raise ValueError(f"{name} must be a number in {bound}, got {value!r}")
    return float(value)


class Optimizer:
    """Holds ``param_groups`` (dicts with ``"params"`` and the hyperparameters, as PyTorch) and a
    ``state`` per parameter. ``params`` is an iterable of Tensors or of such dicts."""

    def __init__(self, params, defaults):
        params = list(params)
        if not params:
            raise ValueError("params is an empty list: the optimiser has nothing to update")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        self.state = {}
        for g in groups:
            group = dict(defaults)
            group.update(g)
            group["params"] = list(group["params"])
            for p in group["params"]:
                if not isinstance(p, Tensor) or not p.requires_grad:
                    raise TypeError(f"params must be Tensors that require grad, got {type(p).__name__}")
            self.param_groups.append(group)

    def zero_grad(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group, self.state.setdefault(id(p), {}))

    def _update(self, p, g, group, state):  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent with momentum (Algorithm 8.2 of the book, in PyTorch's form)::

        g = grad + weight_decay * p
        v = g (first step) or momentum * v + (1 - dampening) * g
        p -= lr * (g + momentum * v if nesterov else v)        (v = g without momentum)
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        _number(lr, "lr")
        _number(momentum, "momentum")
        _number(weight_decay, "weight_decay")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _update(self, p, g, group, state):
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        mu = group["momentum"]
        if mu:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = g.copy()
            else:
                buf = state["momentum_buffer"]
                buf *= mu
                buf += (1 - group["dampening"]) * g
            buf = state["momentum_buffer"]
            g = g + mu * buf if group["nesterov"] else buf
        p.data -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015; Algorithm 8.7 of the book), PyTorch's form::

        m = b1 m + (1 - b1) g        v = b2 v + (1 - b2) g^2
        p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    """

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        _number(lr, "lr")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"betas must be a pair of numbers in [0, 1), got {betas!r}")
        for i, b in enumerate(betas):
            _number(b, f"betas[{i}]", 0.0, 1.0, open_high=True)
        _number(eps, "eps")
        _number(weight_decay, "weight_decay")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    def _update(self, p, g, group, state):
        xp = p._xp
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        b1, b2 = group["betas"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.data)
            state["exp_avg_sq"] = xp.zeros_like(p.data)
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        correction1, correction2 = 1 - b1 ** t, 1 - b2 ** t
        denom = xp.sqrt(v) / math.sqrt(correction2) + group["eps"]
        p.data -= (group["lr"] / correction1) * (m / denom)
