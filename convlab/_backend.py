"""Array-module detection, the workspace limit, and what backends are available.

NumPy arrays run on the CPU reference; CuPy arrays run on the GPU, through the same
array-module-generic reference code. convlab never copies between host and device.
"""
from __future__ import annotations

import numpy as np

_cupy = None
_cupy_error = None
try:  # CuPy is optional; importing it must not fail the package.
    import cupy as _cupy  # type: ignore
except Exception as exc:  # pragma: no cover - depends on the machine
    _cupy_error = f"{type(exc).__name__}: {exc}"


def get_array_module(*arrays, name: str = "x"):
    """``numpy`` or ``cupy`` for the given arrays; ``TypeError`` for anything else or a mix."""
    mods = set()
    for a in arrays:
        if isinstance(a, np.ndarray):
            mods.add(np)
        elif _cupy is not None and isinstance(a, _cupy.ndarray):
            mods.add(_cupy)
        else:
            raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}")
    if len(mods) > 1:
        raise TypeError("operands mix NumPy and CuPy arrays; move them to one device first")
    return mods.pop() if mods else np


def as_strided(x, shape, strides):
    """A strided view of ``x`` in its own array module (no copy)."""
    if isinstance(x, np.ndarray):
        return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=False)
    return _cupy.lib.stride_tricks.as_strided(x, shape=shape, strides=strides)


# ----------------------------------------------------------------------------- workspace

_workspace_limit = 256 * 2**20


def workspace_limit() -> int:
    """Largest temporary buffer (bytes) an algorithm may allocate, e.g. im2col's patch matrix."""
    return _workspace_limit


def set_workspace_limit(nbytes: int) -> int:
    """Set the workspace limit in bytes; returns the previous value."""
    global _workspace_limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 1:
        raise ValueError(f"nbytes must be a positive int, got {nbytes!r}")
    old, _workspace_limit = _workspace_limit, int(nbytes)
    return old


# ----------------------------------------------------------------------------- info

def backend_info() -> dict:
    """Which backends, kernels and devices are available here, and why not when not."""
    import scipy

    info = {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_reference": True,
        "workspace_limit_bytes": _workspace_limit,
        "cupy": None,
        "cupy_unavailable_reason": None,
        "devices": [],
        "cuda_extension": False,
        "cuda_extension_unavailable_reason": "the CUDA extension convlab._C is not part of this build",
    }
    if _cupy is None:
        info["cupy_unavailable_reason"] = f"cupy is not importable ({_cupy_error})"
    else:
        info["cupy"] = _cupy.__version__
        try:
            n = _cupy.cuda.runtime.getDeviceCount()
            for i in range(n):
                props = _cupy.cuda.runtime.getDeviceProperties(i)
                name = props["name"]
                info["devices"].append(name.decode() if isinstance(name, bytes) else str(name))
        except Exception as exc:  # pragma: no cover - depends on the machine
            info["cupy_unavailable_reason"] = f"no usable CUDA device ({type(exc).__name__}: {exc})"
    return info
