"""csrc/pool2d.cu run on the CPU against the NumPy reference (convlab.reference.pool): every
kernel version, float32 and float64, max/avg/lp, forward and backward, on the geometries of
tests/gpu (ceil_mode, dilation, asymmetric padding, stride above the kernel, 1-d) plus windows
that lie wholly in the padding; count_include_pad and divisor_override; NaN and inf inputs to
max pooling. Outputs are NaN (indices -7) before each launch."""
import numpy as np
import pytest
from cuda_cpu_harness import DTYPES, assert_close

from convlab._params import make_geometry
from convlab.reference import pool as ref

VERSIONS = [1, 2]

# name, x shape, kernel, stride, dilation, ((lo, hi) per axis), ceil_mode
GEOMETRIES = [
    ("3x3s2p1", (2, 3, 13, 11), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), False),
    ("dilated_ceil", (2, 2, 10, 9), (2, 3), (2, 1), (2, 1), ((1, 1), (1, 1)), True),
    ("ceil_overhang", (1, 3, 11, 8), (3, 3), (3, 3), (1, 1), ((0, 0), (0, 0)), True),
    ("asym_pad_stride_gt_kernel", (3, 2, 9, 14), (2, 2), (3, 4), (1, 1), ((1, 0), (1, 1)), False),
    ("1d", (2, 5, 1, 23), (1, 4), (1, 3), (1, 1), ((0, 0), (2, 2)), True),
    ("window_in_padding", (1, 2, 3, 4), (2, 2), (1, 1), (1, 1), ((2, 2), (3, 3)), False),
    ("strip_tail", (2, 2, 7, 5), (2, 2), (1, 1), (1, 1), ((0, 0), (0, 0)), False),  # 6 rows: 4 + 2 per strip
]
IDS = [g[0] for g in GEOMETRIES]


def setup(g, dtype, seed=0, ties=False):
    """x and grad_y (float64 holding dtype-rounded values) and the geometry."""
    _, xs, k, s, d, pad, ceil_mode = g
    geom = make_geometry(xs[2:], k, s, d, pad, ceil_mode=ceil_mode)
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, xs).astype(float) if ties else rng.standard_normal(xs)
    gy = rng.standard_normal(xs[:2] + tuple(geom.out_size))
    return x.astype(dtype).astype(np.float64), gy.astype(dtype).astype(np.float64), geom


def test_every_version_is_tested(cuda_cpu):
    assert cuda_cpu.versions["pool2d"] == max(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_max_pool_with_ties(cuda_cpu, g, dtype, version):
    x, gy, geom = setup(g, dtype, ties=True)
    xd, gyd = x.astype(dtype), gy.astype(dtype)
    y, idx = cuda_cpu.pool_forward("max", version, xd, geom)
    y_ref, arg = ref.max_pool_argmax(x, geom)
    idx_ref = ref.plane_index(arg, geom)
    empty = np.isneginf(y_ref)  # a window wholly in the padding: -inf, index -1
    assert_close(y, y_ref, 1, "max y")
    np.testing.assert_array_equal(idx, np.where(empty, -1, idx_ref), err_msg="first maximum wins")
    gx_ref = ref.max_pool_grad(gy, x, geom)
    assert_close(cuda_cpu.pool_backward("max", version, gyd, xd, geom, idx=idx), gx_ref, 9, "max grad_x")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_max_pool_with_nan_and_inf(cuda_cpu, dtype, version):
    """A NaN wins its windows (the first NaN in window order), +inf beats numbers, and a window of
    -inf cells reports its first cell."""
    g = GEOMETRIES[0]
    x, gy, geom = setup(g, dtype, seed=1)
    x[0, 0, 2, 3] = np.nan
    x[0, 0, 3, 3] = np.nan
    x[0, 1, 5, 5] = np.inf
    x[1, 2, :4, :4] = -np.inf
    xd = x.astype(dtype)
    y, idx = cuda_cpu.pool_forward("max", version, xd, geom)
    y_ref, arg = ref.max_pool_argmax(x, geom)
    np.testing.assert_array_equal(y, y_ref.astype(dtype))  # NaN where the reference has NaN
    np.testing.assert_array_equal(idx, ref.plane_index(arg, geom))
    assert np.isnan(y[0, 0]).sum() == 4 and np.isposinf(y[0, 1]).sum() == 4
    gx = cuda_cpu.pool_backward("max", version, gy.astype(dtype), xd, geom, idx=idx)
    assert_close(gx, ref.max_pool_grad(gy, x, geom), 9, "max grad_x")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("include_pad,divisor", [(True, 0), (False, 0), (True, 5), (False, -3)])
@pytest.mark.parametrize("g", [g for g in GEOMETRIES if g[0] != "window_in_padding"],
                         ids=[i for i in IDS if i != "window_in_padding"])
def test_avg_pool(cuda_cpu, g, include_pad, divisor, dtype, version):
    x, gy, geom = setup(g, dtype, seed=2)
    kw = dict(count_include_pad=include_pad, divisor=divisor)
    override = divisor or None
    y, _ = cuda_cpu.pool_forward("avg", version, x.astype(dtype), geom, **kw)
    assert_close(y, ref.avg_pool(x, geom, include_pad, override), 9, "avg y")
    gx = cuda_cpu.pool_backward("avg", version, gy.astype(dtype), x.astype(dtype), geom, **kw)
    assert_close(gx, ref.avg_pool_grad(gy, geom, include_pad, override), 9, "avg grad_x")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.5])
@pytest.mark.parametrize("g", GEOMETRIES, ids=IDS)
def test_lp_pool(cuda_cpu, g, p, dtype, version):
    x, gy, geom = setup(g, dtype, seed=3)
    x[0, 0, 0, :3] = 0.0  # zero cells and, with the padding, all-zero windows
    xd = x.astype(dtype)
    y, _ = cuda_cpu.pool_forward("lp", version, xd, geom, p=p)
    assert_close(y, ref.lp_pool(x, p, geom), 100, "lp y")
    gx = cuda_cpu.pool_backward("lp", version, gy.astype(dtype), xd, geom, y=y, p=p)
    assert_close(gx, ref.lp_pool_grad(gy, x, p, geom), 100, "lp grad_x")
