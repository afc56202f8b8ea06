"""Array-module detection, the workspace limit, and what backends are available.

NumPy arrays run on the CPU reference; CuPy arrays run on the GPU: through the CUDA kernels
of the extension ``convlab._C`` where an op has one (:func:`kernels_unavailable` is the one
test that convolution, pooling and im2col make), otherwise through the same
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
    for a in arrays:  # the common case first: every call of every pass asks
        if type(a) is not np.ndarray:
            break
    else:
        return np
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


def as_strided(x, shape, strides, writeable=False):
    """A strided view of ``x`` in its own array module (no copy); read-only unless
    ``writeable`` (a writer must know that overlapping cells alias)."""
    if isinstance(x, np.ndarray):
        if not x.flags.c_contiguous:
            return np.lib.stride_tricks.as_strided(x, shape=shape, strides=strides, writeable=writeable)
        view = np.ndarray(shape, x.dtype, buffer=x, strides=strides)  # a few times cheaper per call
        view.flags.writeable = writeable
        return view
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


# ----------------------------------------------------------------------------- CUDA kernels

_kernels = None
_kernels_error = None
_kernels_tried = False
_device_errors: dict = {}


def kernels():
    """The CUDA extension module ``convlab._C``, or ``None`` when it is not available
    (:func:`kernels_error` says why). Importing it needs no GPU; its calls raise
    ``RuntimeError`` with CUDA's error text when there is none."""
    global _kernels, _kernels_error, _kernels_tried
    if not _kernels_tried:
        _kernels_tried = True
        try:
            from . import _C as module
        except ImportError as exc:
            _kernels_error = (f"the CUDA extension convlab._C is not part of this build ({exc}); "
                              "install with nvcc on PATH, see docs/building.md")
        else:
            _kernels = module
    return _kernels


def kernels_error():
    """Why :func:`kernels` is ``None`` (``None`` when the extension loaded)."""
    kernels()
    return _kernels_error


def _device_error(device_id: int):
    """Why the extension's machine code cannot run on this device, or None."""
    if device_id not in _device_errors:
        props = _cupy.cuda.runtime.getDeviceProperties(device_id)
        cc = (int(props["major"]), int(props["minor"]))
        built = [(int(a) // 10, int(a) % 10) for a in kernels().build_info()["archs"].split(";") if a]
        # cubins run on the same major at an equal or newer minor; the newest arch's PTX on anything newer.
        ok = any(cc[0] == b[0] and cc[1] >= b[1] for b in built) or (built and cc > max(built))
        _device_errors[device_id] = None if ok else (
            f"convlab._C was built for compute capabilities {built} but device {device_id} is {cc}; "
            f"rebuild with CONVLAB_CUDA_ARCHS={cc[0]}{cc[1]}")
    return _device_errors[device_id]


# Spatial dims the kernels take (a 1-d op runs as a 2-d one of height 1).
KERNEL_DIMS = (1, 2)


def dims_unavailable(nd: int):
    """Why the CUDA kernels cannot serve an op with ``nd`` spatial dims, or ``None``."""
    if nd in KERNEL_DIMS:
        return None
    return (f"there is no {nd}-d CUDA kernel (the kernels take {' or '.join(map(str, KERNEL_DIMS))} spatial "
            "dims); the reference runs on CuPy arrays instead")


def kernels_unavailable(x, nd=None):
    """Why the CUDA kernels cannot take array ``x`` (of an op with ``nd`` spatial dims, when
    given), or ``None`` when they can: the one test by which convolution, pooling and im2col
    reach their kernels."""
    reason = None if nd is None else dims_unavailable(nd)
    if reason:
        return reason
    if x is None:
        return "the CUDA kernels need the operands, not only their shapes"
    if _cupy is None or not isinstance(x, _cupy.ndarray):
        return f"the CUDA kernels take CuPy arrays, got {type(x).__module__}.{type(x).__name__}"
    if kernels() is None:
        return _kernels_error
    return _device_error(x.device.id)


# ----------------------------------------------------------------------------- info

def backend_info() -> dict:
    """Which backends, kernels and devices are available here, and why not when not."""
    import scipy

    from . import _cost

    info = {
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "cpu_reference": True,
        "workspace_limit_bytes": _workspace_limit,
        "cost_model_constants": _cost.constants()[1],
        "cupy": None,
        "cupy_unavailable_reason": None,
        "devices": [],
        "cuda_extension": kernels() is not None,
        "cuda_extension_unavailable_reason": kernels_error(),
        "cuda_build": None,
        "cuda_kernel_versions": None,
        "cuda_devices": [],
        "cuda_unavailable_reason": kernels_error(),
    }
    if kernels() is not None:
        info["cuda_build"] = kernels().build_info()
        info["cuda_kernel_versions"] = kernels().versions()
        try:
            info["cuda_devices"] = kernels().devices()
            info["cuda_unavailable_reason"] = None if info["cuda_devices"] else "no CUDA device found"
        except RuntimeError as exc:  # no driver or no device: the extension says why in CUDA's words
            info["cuda_unavailable_reason"] = str(exc)
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
