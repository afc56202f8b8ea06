"""csrc/conv2d.cu against the NumPy reference: every kernel version, float32 and float64,
forward, grad_input and grad_weight, on shapes that are not multiples of the tile sizes
(128x128 / 64x128 / 64x64 tiles, slices of 8 along the reduction, split-K); then the public
API on CuPy arrays: dispatch, CuPy in and out on the same device and stream."""
import math

import numpy as np
import pytest
from gpu_env import assert_close, on_stream_after_delay, require_gpu

cupy = require_gpu()

import convlab  # noqa: E402
from convlab import _backend  # noqa: E402
from convlab._params import conv_args  # noqa: E402
from convlab.conv import _choose  # noqa: E402
from convlab.cuda import conv as cuda_conv  # noqa: E402
from convlab.reference import direct  # noqa: E402

VERSIONS = list(range(1, _backend.kernels().versions()["conv2d"] + 1))
DTYPES = [np.float32, np.float64]

# name, x shape, w shape, stride, padding, dilation, groups
CASES = [
    ("odd_3x3", (3, 5, 13, 11), (7, 5, 3, 3), 1, 1, 1, 1),
    ("strided_dilated_asym_pad_groups", (2, 6, 17, 15), (9, 2, 3, 2), (2, 3), ((1, 2), (0, 3)), (2, 1), 3),
    ("crosses_128_tiles", (2, 9, 19, 17), (130, 9, 3, 3), 1, 1, 1, 1),
    ("split_k_long_reduction", (1, 300, 5, 5), (70, 300, 3, 3), 1, 1, 1, 1),
    ("depthwise", (2, 8, 10, 9), (8, 1, 3, 3), 1, 1, 1, 8),
    ("pointwise", (4, 33, 7, 9), (65, 33, 1, 1), 1, 0, 1, 1),
    ("kernel_is_input", (2, 3, 5, 4), (4, 3, 5, 4), 1, 0, 1, 1),
    ("stride_above_kernel", (2, 3, 11, 10), (5, 3, 2, 2), 3, 0, 1, 1),
    ("batch_one_wide_strided_backward", (1, 4, 9, 23), (6, 2, 3, 5), 2, 2, 1, 2),
]
IDS = [c[0] for c in CASES]


def _data(case, dtype, seed=0):
    _, xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(xs)
    w = rng.standard_normal(ws) / math.sqrt(math.prod(ws[1:]))
    args = conv_args(x, w, None, stride, padding, dilation, groups, 2)
    gy = rng.standard_normal((args.batch, args.out_channels) + args.geom.out_size)
    # The reference sees exactly the values the GPU sees (rounded to dtype), in float64.
    x, w, gy = (a.astype(dtype).astype(np.float64) for a in (x, w, gy))
    return x, w, gy, args


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_kernel_version_matches_the_reference(case, dtype, version):
    x, w, gy, args = _data(case, dtype)
    xd, wd, gyd = (cupy.asarray(a, dtype=dtype) for a in (x, w, gy))
    r_fwd = args.in_channels // args.groups * math.prod(args.geom.kernel)
    assert_close(cuda_conv.forward(xd, wd, args, version=version), direct.forward(x, w, args), r_fwd, "forward")
    r_gx = args.out_channels // args.groups * math.prod(args.geom.kernel)
    assert_close(cuda_conv.grad_input(gyd, wd, args, version=version), direct.grad_input(gy, w, args), r_gx,
                 "grad_input")
    r_gw = args.batch * math.prod(args.geom.out_size)
    assert_close(cuda_conv.grad_weight(gyd, xd, args, version=version), direct.grad_weight(gy, x, args), r_gw,
                 "grad_weight")


@pytest.mark.parametrize("version", VERSIONS)
def test_split_k_sums_are_deterministic(version):
    x, w, gy, args = _data(CASES[3], np.float32, seed=1)
    xd, wd, gyd = (cupy.asarray(a, dtype=np.float32) for a in (x, w, gy))
    first = cuda_conv.grad_weight(gyd, xd, args, version=version)
    again = cuda_conv.grad_weight(gyd, xd, args, version=version)
    assert cupy.array_equal(first, again), "split-K sums must not depend on scheduling"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_public_conv2d_takes_and_returns_cupy_arrays_through_the_kernels(dtype):
    x, w, gy, args = _data(CASES[1], dtype)
    b = np.linspace(-1, 1, w.shape[0])
    xd, wd, gyd, bd = (cupy.asarray(a, dtype=dtype) for a in (x, w, gy, b))
    _, _, stride, padding, dilation, groups = CASES[1][1:]
    assert _choose(args, xd).algorithm == "cuda"
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    y = convlab.conv2d(xd, wd, bd, **kw)
    assert isinstance(y, cupy.ndarray) and y.device == xd.device and y.dtype == dtype
    ref = convlab.conv2d(x, w, b, algorithm="direct", **kw)
    assert_close(y, ref, 100, "conv2d")
    gx, gw, gb = convlab.conv2d_backward(gyd, xd, wd, bd, flip=True, **kw)
    rx, rw, rb = convlab.conv2d_backward(gy, x, w, b, flip=True, algorithm="direct", **kw)
    for got, want, name in ((gx, rx, "grad_x"), (gw, rw, "grad_w"), (gb, rb, "grad_b")):
        assert isinstance(got, cupy.ndarray) and got.device == xd.device
        assert_close(got, want, 1000, name)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_conv1d_and_conv_transpose_run_on_the_kernels(dtype):
    rng = np.random.default_rng(3)
    x1, w1 = rng.standard_normal((3, 4, 29)), rng.standard_normal((6, 2, 5))
    kw = dict(stride=2, padding=((3, 1),), dilation=2, groups=2)
    ref = convlab.conv1d(x1.astype(dtype), w1.astype(dtype), algorithm="direct", **kw)
    got = convlab.conv1d(cupy.asarray(x1, dtype=dtype), cupy.asarray(w1, dtype=dtype), algorithm="cuda", **kw)
    assert_close(got, ref.astype(np.float64), 10, "conv1d")
    xt, wt = rng.standard_normal((2, 6, 7, 5)), rng.standard_normal((6, 2, 3, 4))
    kt = dict(stride=(2, 3), padding=1, output_padding=(1, 2), groups=3, dilation=(1, 2))
    ref = convlab.conv_transpose2d(xt.astype(dtype), wt.astype(dtype), algorithm="direct", **kt)
    got = convlab.conv_transpose2d(cupy.asarray(xt, dtype=dtype), cupy.asarray(wt, dtype=dtype), **kt)
    assert_close(got, ref.astype(np.float64), 20, "conv_transpose2d")
    gy = rng.standard_normal(ref.shape)
    refs = convlab.conv_transpose2d_backward(gy.astype(dtype), xt.astype(dtype), wt.astype(dtype), algorithm="direct",
                                             **kt)
    gots = convlab.conv_transpose2d_backward(cupy.asarray(gy, dtype=dtype), cupy.asarray(xt, dtype=dtype),
                                             cupy.asarray(wt, dtype=dtype), **kt)
    for got, want in zip(gots[:2], refs[:2]):
        assert_close(got, want.astype(np.float64), 500, "conv_transpose2d_backward")


def test_conv3d_on_cupy_runs_the_reference_on_the_gpu():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((2, 3, 5, 6, 4)), rng.standard_normal((4, 3, 2, 3, 2))
    got = convlab.conv3d(cupy.asarray(x), cupy.asarray(w), padding=1)
    assert isinstance(got, cupy.ndarray)
    assert_close(got, convlab.conv3d(x, w, padding=1, algorithm="direct"), 36, "conv3d")
    with pytest.raises(ValueError, match="3-d"):
        convlab.conv3d(cupy.asarray(x), cupy.asarray(w), algorithm="cuda")


def test_non_contiguous_and_negative_stride_views():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((3, 4, 12, 14)), rng.standard_normal((5, 4, 3, 3))
    xv, wv = x[::2, :, ::-1, 1::2], w[:, ::-1]
    got = convlab.conv2d(cupy.asarray(x)[::2, :, ::-1, 1::2], cupy.asarray(w)[:, ::-1], padding=1)
    assert_close(got, convlab.conv2d(np.ascontiguousarray(xv), np.ascontiguousarray(wv), padding=1,
                                     algorithm="direct"), 36, "views")


@pytest.mark.parametrize("version", VERSIONS)
def test_kernels_run_on_the_current_cupy_stream(version):
    x, w, gy, args = _data(CASES[0], np.float32, seed=6)
    fresh = cupy.asarray(x, dtype=np.float32)
    stale = cupy.zeros_like(fresh)
    wd = cupy.asarray(w, dtype=np.float32)
    got = on_stream_after_delay(cupy, fresh, stale, lambda xs: cuda_conv.forward(xs, wd, args, version=version))
    assert_close(got, direct.forward(x, w, args), 45, "forward on a non-blocking stream")


def test_outputs_live_on_the_inputs_device():
    if cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("needs two CUDA devices")
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 3, 9, 9)), rng.standard_normal((4, 3, 3, 3))
    with cupy.cuda.Device(1):
        xd, wd = cupy.asarray(x), cupy.asarray(w)
    y = convlab.conv2d(xd, wd)  # device 0 is current
    assert y.device.id == 1
    assert_close(y, convlab.conv2d(x, w, algorithm="direct"), 27, "device 1")
