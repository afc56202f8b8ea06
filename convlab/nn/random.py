"""The random numbers of convlab.nn: initialisation and dropout masks draw from one
generator per array module, seeded together by :func:`manual_seed`."""
from __future__ import annotations

import numpy as np

_generators: dict = {}
_seed = None


def manual_seed(seed):
    """Seed the generators of initialisation and dropout (NumPy's, and CuPy's when used)."""
    global _seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    _seed = int(seed)
    _generators.clear()


def generator(xp=np):
    """The generator for array module ``xp`` (NumPy's ``Generator`` or CuPy's)."""
    if xp not in _generators:
        _generators[xp] = (np.random.default_rng(_seed) if xp is np
                           else xp.random.default_rng(_seed if _seed is not None else None))
    return _generators[xp]


def uniform(shape, like):
    """Uniform [0, 1) numbers of ``shape`` in ``like``'s array module and dtype."""
    from .._backend import get_array_module

    xp = get_array_module(like)
    return generator(xp).random(shape, dtype=like.dtype)
