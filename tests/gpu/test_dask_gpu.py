"""convlab.dask on CuPy-chunked Dask arrays: every block stays on the device (through the CUDA
kernels where the extension serves the op, the array-module-generic reference otherwise) and the
result equals the NumPy reference. Skipped, with the reason, without CuPy, a device or Dask."""
import numpy as np
import pytest
from gpu_env import assert_close, require_device

cupy = require_device()
da = pytest.importorskip("dask.array", reason="Dask is not installed (pip install 'convlab[dask]')")

import dask  # noqa: E402

import convlab  # noqa: E402
import convlab.dask as cd  # noqa: E402

CHUNKS = (1, 2, (9, 1, 13), (5, 5, 5, 4))  # a 1-cell chunk, uneven chunks, batch chunks


def _blocks(*arrays):
    return dask.compute(*[blk for a in arrays for blk in a.to_delayed().ravel()], scheduler="sync")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cupy_chunks(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 23, 19))
    w, b = rng.standard_normal((4, 2, 3, 4)), rng.standard_normal(4)
    params = dict(stride=(2, 1), padding="same", dilation=(1, 2), groups=2)
    xg, wg, bg = (cupy.asarray(a, dtype=dtype) for a in (x, w, b))
    xd = da.from_array(xg, chunks=CHUNKS, asarray=False)
    assert isinstance(xd._meta, cupy.ndarray)

    y = cd.conv2d(xd, wg, bg, **params)
    gy = rng.standard_normal(y.shape)
    grads = cd.conv2d_backward(da.from_array(cupy.asarray(gy, dtype=dtype), chunks=(1, 2, 4, 5), asarray=False),
                               xd, wg, bg, **params)
    pooled, idx = cd.max_pool2d(xd, 3, 2, 1, ceil_mode=True, return_indices=True)
    avg = cd.avg_pool2d(xd, 3, 2, 1, count_include_pad=False)
    transposed = cd.conv_transpose2d(xd, wg, stride=2, padding=1, groups=2)
    adaptive = cd.adaptive_avg_pool2d(xd, (5, 4))
    outputs = [y, *grads, pooled, idx, avg, transposed, adaptive]
    assert all(isinstance(blk, cupy.ndarray) for blk in _blocks(*outputs))  # nothing came back to the host

    got = dask.compute(*outputs, scheduler="sync")
    ref_gx, ref_gw, ref_gb = convlab.conv2d_backward(gy, x, w, b, **params)
    ref_pool, ref_idx = convlab.max_pool2d(x, 3, 2, 1, ceil_mode=True, return_indices=True)
    refs = [(convlab.conv2d(x, w, b, **params), 2 * 12), (ref_gx, 2 * 12), (ref_gw, 2 * 12 * 12),
            (ref_gb, 12 * 12), (ref_pool, 1), (None, 0), (convlab.avg_pool2d(x, 3, 2, 1, count_include_pad=False), 9),
            (convlab.conv_transpose2d(x, w, stride=2, padding=1, groups=2), 2 * 12),
            (convlab.adaptive_avg_pool2d(x, (5, 4)), 30)]
    for name, g, (r, reduction) in zip(["conv", "grad_x", "grad_w", "grad_b", "max", "idx", "avg", "transposed",
                                        "adaptive"], got, refs):
        if r is None:
            np.testing.assert_array_equal(cupy.asnumpy(g), ref_idx)
        else:
            assert_close(g, r, reduction, name)
