"""csrc/conv2d.cu against the NumPy reference: every kernel version, float32 and float64,
forward, grad_input and grad_weight, on the cases tests/cuda_cpu runs too (tests/kernel_cases.py:
shapes that are not multiples of the tiles, split-K with groups), with NaN-filled outputs and
workspaces; split and unsplit sums; then the public API on CuPy arrays: dispatch, CuPy in and
out on the same device and stream, size checks before any launch."""
import numpy as np
import pytest
from gpu_env import assert_close, nan_filled_outputs, on_stream_after_delay, require_gpu  # noqa: F401
from kernel_cases import CONV2D_CASES, CONV2D_IDS, SPLIT_K_CASES, SPLIT_K_IDS, conv2d_data, conv2d_reductions

cupy = require_gpu()

import convlab  # noqa: E402
from convlab import _backend  # noqa: E402
from convlab.conv import _choose  # noqa: E402
from convlab.cuda import conv as cuda_conv  # noqa: E402
from convlab.cuda.conv import _shape  # noqa: E402
from convlab.reference import direct  # noqa: E402

VERSIONS = list(range(1, _backend.kernels().versions()["conv2d"] + 1))
SPLIT_VERSION = 5  # the version that splits reductions (split-K)
DTYPES = [np.float32, np.float64]
OPS = ("forward", "grad_input", "grad_weight")
CASES, IDS = CONV2D_CASES, CONV2D_IDS


_data = conv2d_data


def _workspaces(args, dtype, version):
    """The workspace bytes of each op for this device: nonzero where the plan splits."""
    module, device = _backend.kernels(), cupy.cuda.Device().id
    return {op: module.conv2d_workspace(op, version, np.dtype(dtype).name, device, _shape(args)) for op in OPS}


def _run_all(x, w, gy, args, dtype, version):
    xd, wd, gyd = (cupy.asarray(a, dtype=dtype) for a in (x, w, gy))
    return {"forward": cuda_conv.forward(xd, wd, args, version=version),
            "grad_input": cuda_conv.grad_input(gyd, wd, args, version=version),
            "grad_weight": cuda_conv.grad_weight(gyd, xd, args, version=version)}


def _reference(x, w, gy, args):
    return {"forward": direct.forward(x, w, args), "grad_input": direct.grad_input(gy, w, args),
            "grad_weight": direct.grad_weight(gy, x, args)}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_kernel_version_matches_the_reference(nan_filled_outputs, case, dtype, version):
    x, w, gy, args = _data(case, dtype)
    got, want = _run_all(x, w, gy, args, dtype, version), _reference(x, w, gy, args)
    for op, r in zip(OPS, conv2d_reductions(args)):
        assert_close(got[op], want[op], r, f"{op} v{version}")
    if version == SPLIT_VERSION and case in SPLIT_K_CASES:
        assert any(_workspaces(args, dtype, version).values()), "this case is meant to split its reduction"


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", SPLIT_K_CASES, ids=SPLIT_K_IDS)
def test_split_and_unsplit_sums_agree_exactly(nan_filled_outputs, case, dtype):
    """Small integers make every partial sum exact: v5 (split, with groups) must equal v4 (the same
    kernel, never split) and v1 bit for bit, and the reference exactly."""
    x, w, gy, args = _data(case, dtype, seed=3, integers=True)
    assert any(_workspaces(args, dtype, SPLIT_VERSION).values()) and not any(_workspaces(args, dtype, 4).values())
    split, unsplit, v1 = (_run_all(x, w, gy, args, dtype, v) for v in (SPLIT_VERSION, 4, 1))
    want = _reference(x, w, gy, args)
    for op in OPS:
        assert cupy.array_equal(split[op], unsplit[op]) and cupy.array_equal(v1[op], unsplit[op]), op
        np.testing.assert_array_equal(cupy.asnumpy(split[op]), want[op].astype(dtype), err_msg=op)


@pytest.mark.parametrize("version", VERSIONS)
def test_split_k_sums_are_deterministic(version):
    x, w, gy, args = _data(CASES[IDS.index("split_k_groups")], np.float32, seed=1)
    first = _run_all(x, w, gy, args, np.float32, version)
    again = _run_all(x, w, gy, args, np.float32, version)
    for op in OPS:
        assert cupy.array_equal(first[op], again[op]), f"{op}: sums must not depend on scheduling"


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


@pytest.mark.parametrize("version", [1, SPLIT_VERSION])
def test_kernels_run_on_the_current_cupy_stream(version):
    """Every op, on a split-K case with groups: an operand filled by a delayed copy on a new
    non-blocking stream must be read after that copy (the kernels and the split sum run on the
    current stream)."""
    x, w, gy, args = _data(CASES[IDS.index("split_k_groups")], np.float32, seed=6)
    assert version == 1 or any(_workspaces(args, np.float32, version).values())
    want = _reference(x, w, gy, args)
    xd, wd, gyd = (cupy.asarray(a, dtype=np.float32) for a in (x, w, gy))
    runs = {"forward": (xd, lambda xs: cuda_conv.forward(xs, wd, args, version=version)),
            "grad_input": (gyd, lambda g: cuda_conv.grad_input(g, wd, args, version=version)),
            "grad_weight": (gyd, lambda g: cuda_conv.grad_weight(g, xd, args, version=version))}
    for (op, (fresh, run)), r in zip(runs.items(), conv2d_reductions(args)):
        got = on_stream_after_delay(cupy, fresh, cupy.zeros_like(fresh), run)
        assert_close(got, want[op], r, f"{op} on a non-blocking stream")


def test_size_checks_come_before_any_launch():
    """Shapes past the kernels' limits raise ValueError before a launch, so null pointers are
    never dereferenced; a reduction near 2**31 terms plans its split in 64 bits."""
    from convlab._params import conv_shape_args, make_geometry
    from convlab.cuda._launch import window_shape

    module, device = _backend.kernels(), cupy.cuda.Device().id
    big = conv_shape_args((1, 2**31 - 5, 1, 1), (1, 2**31 - 5, 1, 1), 1, 0, 1, 1, 2)
    with pytest.raises(ValueError, match="2\\*\\*31"):
        module.conv2d("grad_weight", 0, "float32", device, 0, 0, 0, 0, 0, 0, _shape(big))
    geom = make_geometry((224, 224), (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)))
    with pytest.raises(ValueError, match="cols"):
        module.im2col(0, "float32", device, 0, 0, 0, window_shape(128 * 64, geom))
    out_big = make_geometry((1, 1), (1, 1), (1, 1), (1, 1), ((23171, 23171), (23171, 23171)))
    with pytest.raises(ValueError, match="y has"):
        module.pool2d_forward("avg", 0, "float32", device, 0, 0, 0, 0, window_shape(1, out_big))
    long = conv_shape_args((511, 1, 2048, 2048), (1, 1, 3, 3), 1, 1, 1, 1, 2)
    nbytes = module.conv2d_workspace("grad_weight", 0, "float32", device, _shape(long))
    assert nbytes % (4 * 9) == 0 and 1 < nbytes // (4 * 9) <= 256  # [splits][1][1][9] floats
    cupy.cuda.Device().synchronize()  # nothing was launched that could fault


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
