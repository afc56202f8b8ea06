"""GPU benchmarks: the CUDA kernels against cuDNN (through PyTorch), device-to-device copy
bandwidth and cupyx.scipy.ndimage. Skipped without CuPy, a CUDA device and the extension.

Every body checks its result before timing. Times are taken with CUDA events on the current
stream (best of several runs, after a warm-up) and recorded in ``extra_info`` next to the
baseline's, so one run gives the ratios docs/benchmarks.md reports:

- conv2d forward and backward (grad_x + grad_w), float32, N=32, ResNet-50's 3x3 and 1x1
  layers, against cuDNN with TF32 off (``torch.backends.cudnn.allow_tf32 = False``);
- pooling 3x3/2 on 64x112x112 (N=32), forward and backward, as a fraction of the measured
  device-to-device copy bandwidth;
- single-channel filters (1024x1024 image, kernels 3..31) against cupyx.scipy.ndimage.correlate.
"""
import math

import numpy as np
import pytest
from conftest import shapes

cupy = pytest.importorskip("cupy", reason="CuPy is not installed (the GPU benchmarks need cupy and a CUDA device)")
try:
    _devices = cupy.cuda.runtime.getDeviceCount()
except Exception as exc:  # no driver, no device
    pytest.skip(f"no usable CUDA device ({type(exc).__name__}: {exc})", allow_module_level=True)
from convlab._backend import kernels_unavailable  # noqa: E402

if not _devices or kernels_unavailable(cupy.zeros(1)):
    pytest.skip(f"CUDA kernels unavailable: {kernels_unavailable(cupy.zeros(1)) if _devices else 'no device'}",
                allow_module_level=True)

import convlab  # noqa: E402
from convlab._params import conv_args, make_geometry  # noqa: E402
from convlab.cuda import conv as cuda_conv  # noqa: E402
from convlab.cuda import pool  # noqa: E402

try:
    import torch

    HAVE_CUDNN = torch.cuda.is_available() and torch.backends.cudnn.is_available()
except ImportError:  # pragma: no cover - depends on the machine
    torch, HAVE_CUDNN = None, False
if HAVE_CUDNN:
    torch.backends.cudnn.allow_tf32 = False  # fair float32: no TF32 on either side
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithm

N = 32
# name, C, K, spatial, kernel, padding
CONV_LAYERS = shapes(
    full=[("3x3_64@56", 64, 64, 56, 3, 1), ("3x3_128@28", 128, 128, 28, 3, 1),
          ("3x3_256@14", 256, 256, 14, 3, 1), ("3x3_512@7", 512, 512, 7, 3, 1),
          ("1x1_64->256@56", 64, 256, 56, 1, 0), ("1x1_256->64@56", 256, 64, 56, 1, 0),
          ("1x1_512->128@28", 512, 128, 28, 1, 0), ("1x1_1024->256@14", 1024, 256, 14, 1, 0),
          ("1x1_2048->512@7", 2048, 512, 7, 1, 0)],
    small=[("3x3_8@12", 8, 8, 12, 3, 1)],
)
BATCH = shapes(full=N, small=2)
POOL_SHAPE = shapes(full=(N, 64, 112, 112), small=(2, 4, 16, 16))
IMAGE = shapes(full=1024, small=64)
FILTERS = shapes(full=[3, 7, 15, 31], small=[3])


def gpu_seconds(fn, repeat=10, warmup=2):
    """Best time of ``fn()`` in seconds, measured with CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    best = math.inf
    for _ in range(repeat):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        best = min(best, cupy.cuda.get_elapsed_time(start, stop) / 1e3)
    return best


def timed(benchmark, fn):
    """Let pytest-benchmark time ``fn`` to completion (it returns only once the stream is idle),
    then return the CUDA-event time of ``fn`` alone."""
    stream = cupy.cuda.get_current_stream()
    benchmark.pedantic(lambda: (fn(), stream.synchronize()), rounds=5, iterations=1, warmup_rounds=1)
    return gpu_seconds(fn)


def _torch(a):
    return torch.from_dlpack(a)


def _conv_data(c, k, size, ksize, pad):
    rng = np.random.default_rng(0)
    x = cupy.asarray(rng.standard_normal((BATCH, c, size, size)), dtype=np.float32)
    w = cupy.asarray(rng.standard_normal((k, c, ksize, ksize)) / math.sqrt(c * ksize * ksize), dtype=np.float32)
    args = conv_args(x, w, None, 1, pad, 1, 1, 2)
    gy = cupy.asarray(rng.standard_normal((BATCH, k) + args.geom.out_size), dtype=np.float32)
    return x, w, gy, args


def _close(got, ref, reduction, what):
    scale = max(float(cupy.abs(ref).max()), 1.0)
    err = float(cupy.abs(got - ref).max())
    assert err <= 1e-5 * math.sqrt(reduction) * scale, f"{what}: max error {err:.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("name,c,k,size,ksize,pad", CONV_LAYERS, ids=[layer[0] for layer in CONV_LAYERS])
def test_conv2d_forward_vs_cudnn(benchmark, name, c, k, size, ksize, pad):
    x, w, _, args = _conv_data(c, k, size, ksize, pad)
    y = cuda_conv.forward(x, w, args)
    ref = convlab.conv2d(x.astype(np.float64), w.astype(np.float64), padding=pad, algorithm="im2col")
    _close(y, ref, c * ksize * ksize, "forward")
    flops = 2.0 * y.size * c * ksize * ksize
    benchmark.group = f"gpu conv2d forward {name}"
    ours = timed(benchmark, lambda: cuda_conv.forward(x, w, args))
    benchmark.extra_info.update(shape=f"N={BATCH} {c}->{k} {size}x{size} k{ksize}", ms=ours * 1e3,
                                gflops=flops / ours / 1e9)
    if HAVE_CUDNN:
        xt, wt = _torch(x), _torch(w)
        yt = torch.nn.functional.conv2d(xt, wt, padding=pad)
        _close(cupy.from_dlpack(yt), ref, c * ksize * ksize, "cuDNN forward")
        theirs = gpu_seconds(lambda: torch.nn.functional.conv2d(xt, wt, padding=pad))
        benchmark.extra_info.update(cudnn_ms=theirs * 1e3, vs_cudnn=theirs / ours)


@pytest.mark.parametrize("name,c,k,size,ksize,pad", CONV_LAYERS, ids=[layer[0] for layer in CONV_LAYERS])
def test_conv2d_backward_vs_cudnn(benchmark, name, c, k, size, ksize, pad):
    x, w, gy, args = _conv_data(c, k, size, ksize, pad)

    def ours_fn():
        return cuda_conv.grad_input(gy, w, args), cuda_conv.grad_weight(gy, x, args)

    gx, gw = ours_fn()
    rx, rw, _ = convlab.conv2d_backward(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64),
                                        padding=pad, algorithm="im2col")
    _close(gx, rx, k * ksize * ksize, "grad_x")
    _close(gw, rw, BATCH * size * size, "grad_w")
    flops = 2 * 2.0 * gy.size * c * ksize * ksize
    benchmark.group = f"gpu conv2d backward {name}"
    ours = timed(benchmark, ours_fn)
    benchmark.extra_info.update(shape=f"N={BATCH} {c}->{k} {size}x{size} k{ksize}", ms=ours * 1e3,
                                gflops=flops / ours / 1e9)
    if HAVE_CUDNN:
        xt, wt, gyt = _torch(x), _torch(w), _torch(gy)

        def theirs_fn():
            return torch.ops.aten.convolution_backward(gyt, xt, wt, None, [1, 1], [pad, pad], [1, 1], False, [0, 0],
                                                       1, [True, True, False])

        tx, tw, _ = theirs_fn()
        _close(cupy.from_dlpack(tx), rx, k * ksize * ksize, "cuDNN grad_x")
        theirs = gpu_seconds(theirs_fn)
        benchmark.extra_info.update(cudnn_ms=theirs * 1e3, vs_cudnn=theirs / ours)


def _copy_bandwidth(x):
    """Bytes per second of a device-to-device copy of ``x`` (read + write)."""
    dst = cupy.empty_like(x)
    return 2 * x.nbytes / gpu_seconds(lambda: cupy.copyto(dst, x))


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_pool2d_vs_copy_bandwidth(benchmark, mode, direction):
    rng = np.random.default_rng(1)
    x = cupy.asarray(rng.standard_normal(POOL_SHAPE), dtype=np.float32)
    geom = make_geometry(POOL_SHAPE[2:], (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)))
    gy = cupy.asarray(rng.standard_normal(POOL_SHAPE[:2] + geom.out_size), dtype=np.float32)
    y, idx = pool.max_pool2d(x, geom, return_indices=True)
    # Check against the windowed reference on the GPU (a strided view of the padded input).
    from convlab.reference.windows import pad, windows

    win = windows(pad(x, geom, -np.inf if mode == "max" else 0.0), geom)
    ref = win.max(axis=(-2, -1)) if mode == "max" else win.sum(axis=(-2, -1)) / 9
    got = y if mode == "max" else pool.avg_pool2d(x, geom)
    _close(got, ref, 9, f"{mode} pool forward")
    if direction == "forward":
        fn = (lambda: pool.max_pool2d(x, geom)) if mode == "max" else (lambda: pool.avg_pool2d(x, geom))
        nbytes = x.nbytes + gy.nbytes
    else:
        fn = ((lambda: pool.max_pool2d_backward(gy, x, geom, indices=idx)) if mode == "max"
              else (lambda: pool.avg_pool2d_backward(gy, x, geom)))
        nbytes = x.nbytes + gy.nbytes + (idx.nbytes if mode == "max" else 0)
    benchmark.group = f"gpu pool2d 3x3/2 {direction}"
    seconds = timed(benchmark, fn)
    copy = _copy_bandwidth(x)
    benchmark.extra_info.update(shape=f"{POOL_SHAPE} float32", ms=seconds * 1e3, gbps=nbytes / seconds / 1e9,
                                copy_gbps=copy / 1e9, fraction_of_copy=nbytes / seconds / copy)


@pytest.mark.parametrize("ksize", FILTERS)
def test_single_channel_filter_vs_cupyx_ndimage(benchmark, ksize):
    from cupyx.scipy import ndimage

    rng = np.random.default_rng(2)
    img = cupy.asarray(rng.standard_normal((IMAGE, IMAGE)), dtype=np.float32)
    k = cupy.asarray(rng.standard_normal((ksize, ksize)) / ksize, dtype=np.float32)
    x, w = img[None, None], k[None, None]
    ours_fn = (lambda: convlab.conv2d(x, w, padding="same"))
    ref = ndimage.correlate(img.astype(np.float64), k.astype(np.float64), mode="constant", cval=0.0)
    _close(ours_fn()[0, 0], ref, ksize * ksize, "single-channel conv2d")
    benchmark.group = f"gpu single-channel {IMAGE}x{IMAGE} k{ksize}"
    ours = timed(benchmark, ours_fn)
    theirs = gpu_seconds(lambda: ndimage.correlate(img, k, mode="constant", cval=0.0))
    flops = 2.0 * IMAGE * IMAGE * ksize * ksize
    benchmark.extra_info.update(ms=ours * 1e3, gflops=flops / ours / 1e9, cupyx_ms=theirs * 1e3,
                                vs_cupyx=theirs / ours)
