"""The kernels of csrc/ built for the CPU (cuda_cpu_build.py) and loaded into this process,
with NumPy arrays standing in for device memory: every launch writes into NaN-filled outputs,
so an element a kernel fails to write shows up as NaN.

Devices of the CPU runtime (their SM counts drive the split-K plan of conv2d v2):
  SPLIT = 0      132 SMs, as an H100/H200: small layers split their reductions
  NO_SPLIT = 1   1 SM: the same layers run unsplit
  TILE_LOOP = 2  132 SMs, grid y limited to 2 blocks, so tiles past it are looped over
"""
from __future__ import annotations

import ctypes
import importlib.util
import math
import os

import numpy as np
import pytest

import cuda_cpu_build
from kernel_cases import assert_close  # noqa: F401  (the kernels' tolerance, shared with tests/gpu)
from convlab.cuda._launch import window_shape
from convlab.cuda.conv import _shape as conv_shape

SPLIT, NO_SPLIT, TILE_LOOP = 0, 1, 2
DEVICES = b"132,1,132:2"
DTYPES = [np.float32, np.float64]


def require_build(flavor: str = "plain", src=None):
    """Build (cached) and load ``_C`` for the CPU from ``src`` (default csrc/); skip with the
    reason when this machine cannot (a failure instead when CONVLAB_REQUIRE_CUDA_CPU=1, as in CI)."""
    try:
        return Kernels(cuda_cpu_build.build(flavor, src or cuda_cpu_build.CSRC))
    except cuda_cpu_build.Unavailable as exc:
        if os.environ.get("CONVLAB_REQUIRE_CUDA_CPU") == "1":
            pytest.fail(f"CONVLAB_REQUIRE_CUDA_CPU=1 but {exc}")
        pytest.skip(str(exc))


class Kernels:
    """``C``: the module (convlab._C's bindings); ``lib``: the CPU runtime's controls."""

    def __init__(self, path):
        spec = importlib.util.spec_from_file_location("_C", path)
        self.C = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.C)
        self.lib = ctypes.CDLL(str(path))
        self.lib.cudacpu_log.restype = ctypes.c_char_p
        self.lib.cudacpu_selftest.restype = ctypes.c_char_p
        if self.lib.cudacpu_set_devices(DEVICES) != 0:
            raise RuntimeError("cudacpu_set_devices refused " + DEVICES.decode())
        self.versions = self.C.versions()

    def log(self) -> list:
        """The launches since the last call: ``name grid=(x,y,z) block=(x,y,z)``."""
        return self.lib.cudacpu_log().decode().splitlines()

    def dry_run(self, on: bool):
        self.lib.cudacpu_set_dry_run(int(on))

    # ---------------------------------------------------------------- conv2d

    def conv2d(self, op, version, x_or_gy, w_or_x, args, device=SPLIT):
        """``(out, workspace_bytes)`` of ``op`` with kernel ``version`` on the CPU runtime's ``device``."""
        dtype = x_or_gy.dtype
        if op == "forward":
            out_shape = (args.batch, args.out_channels) + args.geom.out_size
        elif op == "grad_input":
            out_shape = (args.batch, args.in_channels) + args.geom.in_size
        else:
            out_shape = (args.out_channels, args.in_channels // args.groups) + args.geom.kernel
        shape = conv_shape(args)
        nbytes = self.C.conv2d_workspace(op, version, dtype.name, device, shape)
        ws = np.full(nbytes // dtype.itemsize, np.nan, dtype)
        out = np.full(out_shape, np.nan, dtype)
        self.C.conv2d(op, version, dtype.name, device, 0, out.ctypes.data, ptr(x_or_gy), ptr(w_or_x),
                      ptr(ws) if nbytes else 0, nbytes, shape)
        return out, nbytes

    # ---------------------------------------------------------------- pool2d

    def pool_forward(self, mode, version, x, geom, count_include_pad=True, divisor=0, p=2.0):
        """``(y, indices)`` (indices None unless max) of ``x (N, C, *n)``."""
        out_shape = x.shape[:2] + tuple(geom.out_size)
        y = np.full(out_shape, np.nan, x.dtype)
        idx = np.full(out_shape, -7, np.int64) if mode == "max" else None
        self.C.pool2d_forward(mode, version, x.dtype.name, SPLIT, 0, ptr(y), ptr(x), ptr(idx),
                              window_shape(math.prod(x.shape[:2]), geom), count_include_pad, divisor, p)
        return y, idx

    def pool_backward(self, mode, version, gy, x, geom, y=None, idx=None, count_include_pad=True, divisor=0, p=2.0):
        gx = np.full(x.shape, np.nan, x.dtype)
        self.C.pool2d_backward(mode, version, x.dtype.name, SPLIT, 0, ptr(gx), ptr(gy), ptr(x), ptr(y), ptr(idx),
                               window_shape(math.prod(x.shape[:2]), geom), count_include_pad, divisor, p)
        return gx

    # ---------------------------------------------------------------- im2col

    def im2col(self, version, x, geom):
        cols = np.full((x.shape[0], x.shape[1] * math.prod(geom.kernel), math.prod(geom.out_size)), np.nan, x.dtype)
        self.C.im2col(version, x.dtype.name, SPLIT, 0, ptr(cols), ptr(x), window_shape(math.prod(x.shape[:2]), geom))
        return cols

    def col2im(self, version, cols, geom, n, c):
        x = np.full((n, c) + tuple(geom.in_size), np.nan, cols.dtype)
        self.C.col2im(version, cols.dtype.name, SPLIT, 0, ptr(x), ptr(cols), window_shape(n * c, geom))
        return x


def ptr(a) -> int:
    """The address of a C-contiguous array (0 for None), as a device pointer would be passed."""
    if a is None:
        return 0
    assert a.flags.c_contiguous, "the kernels take contiguous arrays"
    return a.ctypes.data


