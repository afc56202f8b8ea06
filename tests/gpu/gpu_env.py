"""Shared by tests/gpu: skip a whole test module, with the reason, unless CuPy, a CUDA device
and the CUDA extension are all usable; helpers to compare GPU results with the NumPy reference."""

import numpy as np
import pytest

import kernel_cases


def require_device():
    """The ``cupy`` module with a CUDA device (CuPy arrays without the extension, as convlab.nn
    runs them), or a module-level skip saying what is missing."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (the GPU tests need cupy and a CUDA device)")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver, no device
        pytest.skip(f"no usable CUDA device ({type(exc).__name__}: {exc})", allow_module_level=True)
    if count < 1:
        pytest.skip("no CUDA device", allow_module_level=True)
    return cupy


def require_gpu():
    """The ``cupy`` module, or a module-level skip saying what is missing (CuPy, a device, or
    the CUDA extension)."""
    cupy = require_device()
    from convlab._backend import kernels, kernels_error, kernels_unavailable

    if kernels() is None:
        pytest.skip(f"CUDA extension unavailable: {kernels_error()}", allow_module_level=True)
    reason = kernels_unavailable(cupy.zeros(1))
    if reason is not None:
        pytest.skip(reason, allow_module_level=True)
    return cupy


@pytest.fixture
def nan_filled_outputs(monkeypatch):
    """Every ``cupy.empty`` (the wrappers' outputs and workspaces) comes back filled with NaN
    (all-ones bytes; -7 for int64), so an element a kernel fails to write cannot pass as a value
    left over in memory."""
    import cupy

    empty = cupy.empty

    def filled(shape, dtype=float, order="C"):
        a = empty(shape, dtype=dtype, order=order)
        kind = np.dtype(dtype).kind
        a.fill(np.nan if kind == "f" else 255 if np.dtype(dtype) == np.uint8 else -7)
        return a

    monkeypatch.setattr(cupy, "empty", filled)


def assert_close(got, ref, reduction: int, what: str = ""):
    """``got`` (a CuPy array) against the float64 NumPy ``ref``: kernel_cases.assert_close on the host."""
    import cupy

    assert isinstance(got, cupy.ndarray), f"{what}: expected a CuPy array, got {type(got).__name__}"
    kernel_cases.assert_close(cupy.asnumpy(got), ref, reduction, what)


def delayed_copy_kernel(cupy, dtype):
    """A raw kernel that spins for ``cycles`` clock ticks, then copies ``src`` to ``dst``: queued
    first on a stream, it makes any work that ignores that stream read stale data."""
    t = "float" if dtype == np.float32 else "double"
    return cupy.RawKernel(r'''
extern "C" __global__ void delayed_copy(const %s* src, %s* dst, long long n, long long cycles) {
  long long t0 = clock64();
  while (clock64() - t0 < cycles) {}
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    dst[i] = src[i];
}''' % (t, t), "delayed_copy")


def on_stream_after_delay(cupy, fresh, stale_buffer, op):
    """Queue on a new non-blocking stream: a delayed copy of ``fresh`` into ``stale_buffer``, then
    ``op(stale_buffer)``; return op's result after synchronizing. Only an op that runs on the
    current stream sees the fresh values."""
    cupy.cuda.Device().synchronize()  # stale_buffer's own initialisation is done
    stream = cupy.cuda.Stream(non_blocking=True)
    kernel = delayed_copy_kernel(cupy, fresh.dtype)
    with stream:
        kernel((64,), (256,), (fresh, stale_buffer, np.int64(fresh.size), np.int64(200_000_000)))
        out = op(stale_buffer)
    stream.synchronize()
    return out
