"""Make the public ``op1d/op2d/op3d`` functions from one generic ``op(nd, ...)``."""
from __future__ import annotations

import inspect

SPATIAL = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def specialise(generic, nd: int, name: str):
    """``generic(nd, *args, **kw)`` as ``name(*args, **kw)`` with its signature and a docstring
    whose ``{nd}``, ``{sp}`` (e.g. ``H, W``), ``{ksp}`` (e.g. ``kH, kW``), ``{osp}`` (e.g.
    ``H_out, W_out``) and ``{tsp}`` (e.g. ``tH, tW``) are filled in."""

    sig = inspect.signature(generic)
    public = sig.replace(parameters=list(sig.parameters.values())[1:])

    def op(*args, **kwargs):
        try:
            return generic(nd, *args, **kwargs)
        except TypeError:
            try:  # a call that does not fit the signature: say so with the public name
                public.bind(*args, **kwargs)
            except TypeError as exc:
                raise TypeError(f"{name}() {exc}") from None
            raise

    op.__signature__ = public
    op.__name__ = op.__qualname__ = name
    op.__module__ = "convlab"
    sp = SPATIAL[nd]
    op.__doc__ = (generic.__doc__ or "").format(nd=nd, sp=", ".join(sp), ksp=", ".join("k" + a for a in sp),
                                                osp=", ".join(a + "_out" for a in sp),
                                                tsp=", ".join("t" + a for a in sp))
    return op


def family(generic, stem: str, namespace: dict, suffix: str = ""):
    """Define ``{stem}1d{suffix}``, ``{stem}2d{suffix}``, ``{stem}3d{suffix}`` in ``namespace``."""
    names = []
    for nd in (1, 2, 3):
        name = f"{stem}{nd}d{suffix}"
        namespace[name] = specialise(generic, nd, name)
        names.append(name)
    return names
