"""Finite-difference check of any ``*_backward`` against its forward op, in float64."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._backend import get_array_module


class GradcheckError(AssertionError):
    """A backward pass disagrees with central differences; the message names the worst element."""


@dataclass
class GradcheckReport:
    """Per checked input: the largest absolute and relative error and where it occurred."""

    max_abs_error: list = field(default_factory=list)
    max_rel_error: list = field(default_factory=list)
    worst_index: list = field(default_factory=list)
    elements_checked: int = 0
    passed: bool = True

    def __str__(self):
        rows = [f"input {i}: max abs err {a:.3e}, max rel err {r:.3e} at {w}"
                for i, (a, r, w) in enumerate(zip(self.max_abs_error, self.max_rel_error, self.worst_index))]
        return "\n".join([f"gradcheck {'passed' if self.passed else 'FAILED'} ({self.elements_checked} elements)"]
                         + rows)


def _as_tuple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,)


def gradcheck(forward, backward, inputs, *, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0, raise_on_failure=True,
              **params) -> GradcheckReport:
    """Compare ``backward(grad_y, *inputs, **params)`` with central differences of ``forward``.

    ``inputs`` is a sequence of arrays (``None`` entries are passed through and skipped);
    each is copied to float64. With a fixed random ``R`` the same shape as the output,
    the reference for element ``e`` of input ``i`` is::

        (<R, forward(.., x_i + eps*e, ..)> - <R, forward(.., x_i - eps*e, ..)>) / (2*eps)

    and it must match ``backward(R, ...)[i][e]`` within ``atol + rtol*|reference|``.
    ``backward`` returns one gradient per input (a single array when there is one input).
    Raises :class:`GradcheckError` naming the worst element unless ``raise_on_failure=False``.
    """
    if not isinstance(inputs, (tuple, list)):
        raise TypeError(f"inputs must be a tuple or list of arrays, got {type(inputs).__name__}")
    arrays = [a for a in inputs if a is not None]
    xp = get_array_module(*arrays, name="inputs")
    inputs = [None if a is None else a.astype(xp.float64, copy=True) for a in inputs]
    y = forward(*inputs, **params)
    rng = np.random.default_rng(seed)
    r = xp.asarray(rng.standard_normal(y.shape))
    analytic = _as_tuple(backward(r, *inputs, **params))
    checked = [i for i, a in enumerate(inputs) if a is not None]
    if len(analytic) < len(inputs):
        raise ValueError(f"backward returned {len(analytic)} gradients for {len(inputs)} inputs")

    def objective():
        return float((forward(*inputs, **params) * r).sum())

    report = GradcheckReport()
    worst_msg, worst_excess = None, 0.0
    for i in checked:
        x, g = inputs[i], analytic[i]
        if g is None or tuple(g.shape) != tuple(x.shape):
            raise GradcheckError(f"gradient {i} has shape {None if g is None else tuple(g.shape)}, "
                                 f"input {i} has shape {tuple(x.shape)}")
        g = np.asarray(g.get() if hasattr(g, "get") else g, dtype=np.float64)
        max_abs, max_rel, where = 0.0, 0.0, None
        for e in np.ndindex(*x.shape):
            old = float(x[e])
            x[e] = old + eps
            fp = objective()
            x[e] = old - eps
            fm = objective()
            x[e] = old
            num = (fp - fm) / (2 * eps)
            err = abs(g[e] - num)
            rel = err / max(abs(num), 1e-300)
            excess = err - (atol + rtol * abs(num))
            if err >= max_abs:
                max_abs, where = err, e
            max_rel = max(max_rel, rel if abs(num) > atol else 0.0)
            if excess > worst_excess:
                worst_excess = excess
                worst_msg = (f"gradient of input {i} at index {e}: backward gives {g[e]:.10g}, "
                             f"central differences give {num:.10g} (abs err {err:.3e}, "
                             f"tolerance {atol + rtol * abs(num):.3e})")
            report.elements_checked += 1
        report.max_abs_error.append(max_abs)
        report.max_rel_error.append(max_rel)
        report.worst_index.append(where)
    report.passed = worst_msg is None
    if not report.passed and raise_on_failure:
        raise GradcheckError(worst_msg + "\n" + str(report))
    return report
