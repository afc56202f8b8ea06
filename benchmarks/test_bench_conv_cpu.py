"""CPU convolution: every algorithm and the peers (SciPy, PyTorch) on the same layer, one
table per shape (``benchmark.group``), run one after the other so that they share the
machine's conditions. Each result is checked against the float64 direct reference before
it is timed; ``extra_info`` holds GFLOP/s (and, for "auto", what it chose).

    pytest benchmarks/ --benchmark-only --benchmark-json=out.json
    python benchmarks/report.py out.json          # the tables of docs/benchmarks.md
"""
import os
import time

import numpy as np
import pytest
import scipy.signal
from conftest import shapes

import convlab
from convlab import conv as conv_module
from convlab._harness import Case, scipy_peer, settle, torch_peer

ALGORITHMS = ("naive", "direct", "im2col", "fft", "separable", "winograd", "auto")
PEERS = ("torch", "scipy.signal.correlate", "scipy.fftconvolve per channel pair")
NAIVE_MAX_MACS = 3e5  # the loop oracle is only timed on tiny layers
SLOW_SECONDS = 0.1    # slower methods are timed in fewer rounds, so the suite takes minutes
SETTLE_SECONDS = 0.2  # torch's idle OpenMP threads need longer than the harness's default pause


def _resnet(name, c, k, n, ksize, stride=1):
    return Case(f"resnet {name}", (8, c, n, n), (k, c, ksize, ksize), dict(stride=stride, padding=ksize // 2),
                backward=True)


def _image(n, k, rank_one=False):
    return Case(f"image 1@{n} k={k}{' rank-1' if rank_one else ''}", (1, 1, n, n), (1, 1, k, k),
                dict(padding="same"), rank_one=rank_one)


CASES = shapes(
    full=[_resnet("3x3 64@56", 64, 64, 56, 3), _resnet("3x3 128@28", 128, 128, 28, 3),
          _resnet("3x3 256@14", 256, 256, 14, 3), _resnet("3x3 512@7", 512, 512, 7, 3),
          _resnet("1x1 256->64@56", 256, 64, 56, 1), _resnet("1x1 1024->256@14", 1024, 256, 14, 1),
          _resnet("stem 7x7/2 3->64@224", 3, 64, 224, 7, stride=2), _resnet("3x3/2 128@56", 128, 128, 56, 3, stride=2),
          Case("large 9x9 64->128@64", (1, 64, 64, 64), (128, 64, 9, 9), dict(padding=4)),
          Case("large 9x9 16->32@64", (1, 16, 64, 64), (32, 16, 9, 9)),
          Case("large 11x11 3->64@128", (2, 3, 128, 128), (64, 3, 11, 11), dict(padding=5)),
          Case("tiny 4->8@9", (2, 4, 9, 9), (8, 4, 3, 3), dict(padding=1))]
    + [_image(512, k) for k in (3, 5, 7, 9, 11, 15, 21, 31)]
    + [_image(1024, k) for k in (3, 9, 15, 31)]
    + [_image(1024, 15, rank_one=True)],
    small=[Case("small 3x3 8@12", (2, 8, 12, 12), (8, 8, 3, 3), dict(padding=1), backward=True),
           Case("small 5x5/2 3->4@11", (1, 3, 11, 11), (4, 3, 5, 5), dict(stride=2, padding=2), backward=True),
           Case("small 5x5 4->6@12", (1, 4, 12, 12), (6, 4, 5, 5)),
           _image(24, 5), _image(24, 5, rank_one=True)],
)
IDS = [c.name.replace(" ", "_") for c in CASES]
# The FFT's baseline: SciPy's fftconvolve looped over channel pairs (valid padding).
PAIRS = ("large 9x9 16->32@64", "small 5x5 4->6@12")

_operands, _gradients = {}, {}


def operands(case):
    """float32 ``x, w`` and the float64 direct reference output, made once per case."""
    if case.name not in _operands:
        x, w = case.operands(np.random.default_rng(0))
        ref = _conv(case)(x, w, algorithm="direct", **case.params)
        _operands[case.name] = (x.astype(np.float32), w.astype(np.float32), ref)
    return _operands[case.name]


def gradients(case):
    """float32 output gradient and the float64 reference input and weight gradients."""
    if case.name not in _gradients:
        x, w, ref = operands(case)
        gy = np.random.default_rng(1).standard_normal(ref.shape)
        gx, gw, _ = _backward(case)(gy, x.astype(np.float64), w.astype(np.float64), algorithm="direct",
                                    **case.params)
        _gradients[case.name] = (gy.astype(np.float32), gx, gw)
    return _gradients[case.name]


def _conv(case):
    return getattr(convlab, f"conv{len(case.x_shape) - 2}d")


def _backward(case):
    return getattr(convlab, f"conv{len(case.x_shape) - 2}d_backward")


def _error(y, ref):
    """Largest error relative to the largest reference value; fails the benchmark above 1e-4."""
    assert y.shape == ref.shape, (y.shape, ref.shape)
    err = float(np.abs(np.asarray(y, dtype=np.float64) - ref).max()) / (float(np.abs(ref).max()) or 1.0)
    assert err < 1e-4, f"relative error {err:.2e}"
    return err


def _skip_reason(case, method):
    if method == "naive" and case.macs > NAIVE_MAX_MACS:
        return "the loop oracle is only timed on tiny layers"
    if method == "separable" and not case.rank_one:
        return "the kernel is not separable"
    if method in conv_module.ALGORITHMS:
        return conv_module.ALGORITHMS[method].supports(case.args)
    if method == "scipy.signal.correlate" and not case.single_channel:
        return "scipy.signal.correlate is timed on single-channel images"
    if method == "scipy.fftconvolve per channel pair" and case.name not in PAIRS:
        return "the per-channel-pair FFT baseline is timed on the FFT layers"
    return None


def _time(benchmark, fn, case, kind, method, error, first_seconds):
    if not benchmark.disabled:
        settle(SETTLE_SECONDS)
    benchmark.group = f"{kind} {case.name}"
    benchmark.extra_info.update(algorithm=method, error=error)
    rounds = 3 if first_seconds > SLOW_SECONDS else 15
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=0 if first_seconds > SLOW_SECONDS else 1)
    if benchmark.stats:  # absent under --benchmark-disable
        work = 2.0 * case.macs * (2 if kind == "backward" else 1)  # backward: input and weight gradients
        benchmark.extra_info["gflops"] = work / benchmark.stats["min"] / 1e9


def _first(fn):
    """Run ``fn`` once (the result is checked) and say how long it took."""
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------- forward

def _torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch


def _forward_callable(case, method, x, w):
    if method in ALGORITHMS:
        conv = _conv(case)
        return lambda: conv(x, w, algorithm=method, **case.params)
    if method == "torch":
        _torch()
        return torch_peer(case, x, w)
    if method == "scipy.signal.correlate":  # its own choice of direct or FFT (method="auto")
        return scipy_peer(case, x, w)
    return lambda: _fftconvolve_pairs(x, w)


def _fftconvolve_pairs(x, w):
    """Cross-correlation by ``scipy.signal.fftconvolve``: one call per (sample, out, in) channel triple."""
    flipped = w[:, :, ::-1, ::-1]
    return np.stack([np.stack([sum(scipy.signal.fftconvolve(xn[c], flipped[k, c], mode="valid")
                                   for c in range(x.shape[1])) for k in range(w.shape[0])]) for xn in x])


@pytest.mark.parametrize("method", ALGORITHMS + PEERS)
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward(benchmark, case, method):
    reason = _skip_reason(case, method)
    if reason:
        pytest.skip(reason)
    x, w, ref = operands(case)
    run = _forward_callable(case, method, x, w)
    y, seconds = _first(run)
    _time(benchmark, run, case, "forward", method, _error(y, ref), seconds)
    if method == "auto":
        benchmark.extra_info["chosen"] = conv_module._choose(case.args, x, w).algorithm


# ----------------------------------------------------------------------------- backward

BACKWARD = [c for c in CASES if c.backward]


@pytest.mark.parametrize("method", ("direct", "im2col", "fft", "winograd", "auto", "torch"))
@pytest.mark.parametrize("case", BACKWARD, ids=[c.name.replace(" ", "_") for c in BACKWARD])
def test_backward(benchmark, case, method):
    reason = _skip_reason(case, method)
    if reason:
        pytest.skip(reason)
    x, w, _ = operands(case)
    gy, ref_gx, ref_gw = gradients(case)
    if method == "torch":
        torch = _torch()
        args = case.args
        xt, wt, gyt = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(gy)

        def run():
            gx, gw, _ = torch.ops.aten.convolution_backward(
                gyt, xt, wt, None, list(args.geom.stride), [lo for lo, _ in args.geom.pad],
                list(args.geom.dilation), False, [0] * args.nd, args.groups, [True, True, False])
            return gx.numpy(), gw.numpy()
    else:
        back = _backward(case)

        def run():
            return back(gy, x, w, algorithm=method, **case.params)[:2]
    (gx, gw), seconds = _first(run)
    _time(benchmark, run, case, "backward", method, max(_error(gx, ref_gx), _error(gw, ref_gw)), seconds)
    if method == "auto":
        benchmark.extra_info["chosen"] = conv_module._choose(case.args, gy, w).algorithm
