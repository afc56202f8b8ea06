"""csrc/pool2d.cu against a NumPy loop oracle (and PyTorch when installed): every kernel
version, float32 and float64, max/avg/lp, forward and backward, 1-D and 2-D, with ceil_mode,
dilation, asymmetric padding, count_include_pad and divisor_override; CuPy in and out on the
current stream."""
import math

import numpy as np
import pytest
from gpu_env import assert_close, nan_filled_outputs, on_stream_after_delay, require_gpu  # noqa: F401

cupy = require_gpu()

import convlab  # noqa: E402
from convlab import _backend  # noqa: E402
from convlab._params import make_geometry  # noqa: E402
from convlab.cuda import pool  # noqa: E402

VERSIONS = list(range(1, _backend.kernels().versions()["pool2d"] + 1))
DTYPES = [np.float32, np.float64]

# name, x shape, kernel, stride, dilation, ((lo, hi) per axis), ceil_mode
GEOMETRIES = [
    ("3x3s2p1", (2, 3, 13, 11), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), False),
    ("dilated_ceil", (2, 2, 10, 9), (2, 3), (2, 1), (2, 1), ((1, 1), (1, 1)), True),
    ("ceil_overhang", (1, 3, 11, 8), (3, 3), (3, 3), (1, 1), ((0, 0), (0, 0)), True),
    ("asym_pad_stride_gt_kernel", (3, 2, 9, 14), (2, 2), (3, 4), (1, 1), ((1, 0), (1, 1)), False),
    ("1d", (2, 5, 23), (4,), (3,), (1,), ((2, 2),), True),
]
IDS = [g[0] for g in GEOMETRIES]


def _geometry(g):
    _, xs, k, s, d, pad, ceil_mode = g
    return make_geometry(xs[2:], k, s, d, pad, ceil_mode=ceil_mode)


def oracle(x, gy, geom, mode, include_pad=True, divisor=0, p=2.0):
    """Loops over output positions and taps (the book's pooling, PyTorch's conventions):
    returns y, the max indices, and grad_x for upstream gradient gy."""
    nd = geom.nd
    in2 = (1,) * (2 - nd) + tuple(geom.in_size)
    out2 = (1,) * (2 - nd) + tuple(geom.out_size)
    k2, s2, d2 = ((1,) * (2 - nd) + tuple(v) for v in (geom.kernel, geom.stride, geom.dilation))
    pad2 = ((0, 0),) * (2 - nd) + tuple(geom.pad)
    h, w = in2
    planes = x.reshape(-1, h, w)
    g = gy.reshape(-1, *out2)
    y = np.zeros(g.shape)
    idx = np.full(g.shape, -1, dtype=np.int64)
    gx = np.zeros(planes.shape)
    for oy in range(out2[0]):
        for ox in range(out2[1]):
            cells, padded = [], 0
            for ky in range(k2[0]):
                for kx in range(k2[1]):
                    iy, ix = oy * s2[0] - pad2[0][0] + ky * d2[0], ox * s2[1] - pad2[1][0] + kx * d2[1]
                    padded += -pad2[0][0] <= iy < h + pad2[0][1] and -pad2[1][0] <= ix < w + pad2[1][1]
                    if 0 <= iy < h and 0 <= ix < w:
                        cells.append((iy, ix))
            iys, ixs = np.array([c[0] for c in cells], int), np.array([c[1] for c in cells], int)
            v = planes[:, iys, ixs]
            go = g[:, oy, ox]
            if mode == "max":
                a = np.argmax(v, axis=1)  # first maximum in row-major window order
                y[:, oy, ox] = v[np.arange(len(v)), a]
                idx[:, oy, ox] = iys[a] * w + ixs[a]
                np.add.at(gx, (np.arange(len(v)), iys[a], ixs[a]), go)
            elif mode == "avg":
                div = divisor or (padded if include_pad else len(cells))
                y[:, oy, ox] = v.sum(axis=1) / div
                gx[:, iys, ixs] += go[:, None] / div
            else:
                yo = (np.abs(v) ** p).sum(axis=1) ** (1 / p)
                y[:, oy, ox] = yo
                with np.errstate(divide="ignore", invalid="ignore"):
                    t = np.sign(v) * np.abs(v) ** (p - 1) * (go / yo ** (p - 1))[:, None]
                gx[:, iys, ixs] += np.where(yo[:, None] != 0, np.nan_to_num(t), 0.0)
    shape_out = x.shape[:2] + tuple(geom.out_size)
    return y.reshape(shape_out), idx.reshape(shape_out), gx.reshape(x.shape)


def _data(g, dtype, seed=0, ties=False):
    rng = np.random.default_rng(seed)
    geom = _geometry(g)
    x = rng.integers(-3, 4, g[1]).astype(np.float64) if ties else rng.standard_normal(g[1])
    gy = rng.standard_normal(g[1][:2] + tuple(geom.out_size))
    x, gy = x.astype(dtype).astype(np.float64), gy.astype(dtype).astype(np.float64)
    return x, gy, geom


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_max_pool_with_ties(nan_filled_outputs, g, dtype, version):
    x, gy, geom = _data(g, dtype, ties=True)
    y_ref, idx_ref, gx_ref = oracle(x, gy, geom, "max")
    xd, gyd = cupy.asarray(x, dtype=dtype), cupy.asarray(gy, dtype=dtype)
    y, idx = pool.max_pool2d(xd, geom, return_indices=True, version=version)
    assert_close(y, y_ref, 1, "max y")
    assert idx.dtype == np.int64 and np.array_equal(cupy.asnumpy(idx), idx_ref), "first maximum wins"
    assert_close(pool.max_pool2d_backward(gyd, xd, geom, indices=idx, version=version), gx_ref, 9, "max grad_x")
    assert_close(pool.max_pool2d_backward(gyd, xd, geom, version=version), gx_ref, 9, "max grad_x, no indices")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("include_pad,divisor", [(True, None), (False, None), (True, 5)])
@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_avg_pool(nan_filled_outputs, g, include_pad, divisor, dtype, version):
    x, gy, geom = _data(g, dtype, seed=1)
    y_ref, _, gx_ref = oracle(x, gy, geom, "avg", include_pad, divisor or 0)
    xd, gyd = cupy.asarray(x, dtype=dtype), cupy.asarray(gy, dtype=dtype)
    kw = dict(count_include_pad=include_pad, divisor_override=divisor, version=version)
    assert_close(pool.avg_pool2d(xd, geom, **kw), y_ref, 9, "avg y")
    assert_close(pool.avg_pool2d_backward(gyd, xd, geom, **kw), gx_ref, 9, "avg grad_x")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_lp_pool(nan_filled_outputs, g, p, dtype, version):
    x, gy, geom = _data(g, dtype, seed=2)
    y_ref, _, gx_ref = oracle(x, gy, geom, "lp", p=p)
    xd, gyd = cupy.asarray(x, dtype=dtype), cupy.asarray(gy, dtype=dtype)
    y = pool.lp_pool2d(xd, p, geom, version=version)
    assert_close(y, y_ref, 100, "lp y")
    assert_close(pool.lp_pool2d_backward(gyd, xd, p, geom, y=y, version=version), gx_ref, 100, "lp grad_x")


def test_lp_gradient_is_zero_where_the_window_is_zero():
    geom = make_geometry((4, 4), (2, 2), (2, 2), (1, 1), ((0, 0), (0, 0)))
    x = cupy.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = 2.0
    gx = pool.lp_pool2d_backward(cupy.ones((1, 1, 2, 2)), x, 2, geom)
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, 0, 0] = 1.0
    assert np.array_equal(cupy.asnumpy(gx), expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_against_torch_max_and_avg(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 15, 12)).astype(dtype)
    xt = torch.from_numpy(x)
    geom = make_geometry((15, 12), (3, 2), (2, 2), (1, 1), ((1, 1), (1, 1)), ceil_mode=True)
    ym, im = torch.nn.functional.max_pool2d(xt, (3, 2), (2, 2), (1, 1), ceil_mode=True, return_indices=True)
    y, idx = pool.max_pool2d(cupy.asarray(x), geom, return_indices=True)
    assert_close(y, ym.double().numpy(), 1, "max vs torch")
    assert np.array_equal(cupy.asnumpy(idx), im.numpy())
    for include_pad in (True, False):
        ya = torch.nn.functional.avg_pool2d(xt, (3, 2), (2, 2), (1, 1), ceil_mode=True,
                                            count_include_pad=include_pad)
        got = pool.avg_pool2d(cupy.asarray(x), geom, count_include_pad=include_pad)
        assert_close(got, ya.double().numpy(), 6, f"avg vs torch, count_include_pad={include_pad}")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_pool_with_nan_and_inf(nan_filled_outputs, dtype, version):
    """A NaN wins its windows (the first NaN in window order), +inf beats numbers, a window of
    -inf cells reports its first cell; the gradient follows the indices."""
    x, gy, geom = _data(GEOMETRIES[0], dtype, seed=5)
    x[0, 0, 2, 3] = x[0, 0, 3, 3] = np.nan
    x[0, 1, 5, 5] = np.inf
    x[1, 2, :4, :4] = -np.inf
    y_ref, idx_ref, gx_ref = oracle(x, gy, geom, "max")
    xd, gyd = cupy.asarray(x, dtype=dtype), cupy.asarray(gy, dtype=dtype)
    y, idx = pool.max_pool2d(xd, geom, return_indices=True, version=version)
    np.testing.assert_array_equal(cupy.asnumpy(y), y_ref.astype(dtype))  # NaN where the oracle has NaN
    np.testing.assert_array_equal(cupy.asnumpy(idx), idx_ref)
    assert np.isnan(cupy.asnumpy(y)[0, 0]).sum() == 4 and np.isposinf(cupy.asnumpy(y)[0, 1]).sum() == 4
    assert_close(pool.max_pool2d_backward(gyd, xd, geom, indices=idx, version=version), gx_ref, 9, "max grad_x")


def test_pool_runs_on_the_current_stream():
    """avg, max and lp, forward and backward: an operand filled by a delayed copy on a new
    non-blocking stream must be read after that copy."""
    x, gy, geom = _data(GEOMETRIES[0], np.float32, seed=4)
    xd, gyd = cupy.asarray(x, dtype=np.float32), cupy.asarray(gy, dtype=np.float32)
    for mode, kw in (("avg", {}), ("max", {}), ("lp", {"p": 2.0})):
        y_ref, _, gx_ref = oracle(x, gy, geom, mode, **kw)
        p = (kw["p"],) if kw else ()
        fwd, bwd = getattr(pool, f"{mode}_pool2d"), getattr(pool, f"{mode}_pool2d_backward")
        got = on_stream_after_delay(cupy, xd, cupy.zeros_like(xd), lambda xs: fwd(xs, *p, geom))
        assert_close(got, y_ref, 9, f"{mode} forward on a non-blocking stream")
        got = on_stream_after_delay(cupy, gyd, cupy.zeros_like(gyd), lambda g: bwd(g, xd, *p, geom))
        assert_close(got, gx_ref, 9, f"{mode} backward on a non-blocking stream")


def test_bad_arguments_raise_value_errors():
    geom = _geometry(GEOMETRIES[0])
    x = cupy.zeros((2, 3, 13, 11), dtype=np.float32)
    with pytest.raises(ValueError, match="shape"):
        pool.max_pool2d(x[:, :, :12], geom)
    with pytest.raises(ValueError, match="p must be"):
        pool.lp_pool2d(x, 0, geom)
    with pytest.raises(ValueError, match="divisor_override"):
        convlab.avg_pool2d(x, 3, divisor_override=0)
    with pytest.raises(ValueError, match="CuPy"):
        pool.max_pool2d(np.zeros((2, 3, 13, 11)), geom)
    assert math.prod(pool.max_pool2d(x, geom).shape) == 2 * 3 * math.prod(geom.out_size)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_public_pooling_api_dispatches_cupy_to_the_kernels(dtype):
    """convlab.*_pool{1,2}d on CuPy arrays: CuPy out, equal to the NumPy reference, forward and backward."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 13, 11)).astype(dtype)
    cases = [
        (convlab.max_pool2d, convlab.max_pool2d_backward, (3,), dict(stride=2, padding=1, dilation=(1, 2))),
        (convlab.avg_pool2d, convlab.avg_pool2d_backward, (3,), dict(stride=2, padding=1, ceil_mode=True,
                                                                     count_include_pad=False)),
        (convlab.avg_pool2d, convlab.avg_pool2d_backward, (2,), dict(divisor_override=-3)),
        (convlab.lp_pool2d, convlab.lp_pool2d_backward, (2.5, 3), dict(stride=2, ceil_mode=True)),
        (convlab.max_pool1d, convlab.max_pool1d_backward, (4,), dict(stride=3, padding=2, ceil_mode=True)),
    ]
    for fwd, bwd, args, kw in cases:
        xin = x[:, :, 0] if fwd is convlab.max_pool1d else x
        ref = fwd(xin, *args, **kw)
        got = fwd(cupy.asarray(xin), *args, **kw)
        assert isinstance(got, cupy.ndarray) and got.dtype == xin.dtype
        assert_close(got, ref, 9, f"{fwd.__name__} forward")
        gy = rng.standard_normal(ref.shape).astype(dtype)
        gref = bwd(gy, xin, *args, **kw)
        ggot = bwd(cupy.asarray(gy), cupy.asarray(xin), *args, **kw)
        assert isinstance(ggot, cupy.ndarray)
        assert_close(ggot, gref, 9, f"{fwd.__name__} backward")
    y, idx = convlab.max_pool2d(cupy.asarray(x), 3, stride=2, padding=1, return_indices=True)
    y_ref, idx_ref = convlab.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(cupy.asnumpy(idx), idx_ref)
