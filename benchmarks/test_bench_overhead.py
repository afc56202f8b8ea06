"""Per-call cost on tiny inputs, where it is all there is: conv2d, max_pool2d and their
backward passes on a (1, 2, 5, 5) input against PyTorch's per-call time (two threads), and
convlab's parse-validate-dispatch path alone (the arguments parsed and checked, "auto"'s
algorithm prepared: what a call costs before any arithmetic). Results are checked against
the loop oracle (convolution) and PyTorch (pooling) first."""
import os

import numpy as np
import pytest

import convlab
from convlab import _params as P
from convlab import conv as conv_module
from convlab.reference import naive

X_SHAPE, W_SHAPE, PAD = (1, 2, 5, 5), (2, 2, 3, 3), 1
POOL = dict(kernel_size=2, stride=2)


def _operands():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(X_SHAPE).astype(np.float32), rng.standard_normal(W_SHAPE).astype(np.float32)
    gy = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    gp = rng.standard_normal((1, 2, 2, 2)).astype(np.float32)
    return x, w, gy, gp


def _ours(op):
    x, w, gy, gp = _operands()
    y, idx = convlab.max_pool2d(x, return_indices=True, **POOL)
    if op == "conv2d":
        args = P.conv_args(x.astype(np.float64), w.astype(np.float64), None, 1, PAD, 1, 1, 2)
        ref = naive.forward(x.astype(np.float64), w.astype(np.float64), args)
        return lambda: convlab.conv2d(x, w, padding=PAD), ref
    if op == "conv2d_backward":
        args = P.conv_args(x.astype(np.float64), w.astype(np.float64), None, 1, PAD, 1, 1, 2)
        ref = naive.grad_input(gy.astype(np.float64), w.astype(np.float64), args)
        return lambda: convlab.conv2d_backward(gy, x, w, padding=PAD)[0], ref
    if op == "max_pool2d":
        return lambda: convlab.max_pool2d(x, return_indices=True, **POOL)[0], None
    if op == "max_pool2d_backward":
        return lambda: convlab.max_pool2d_backward(gp, x, indices=idx, **POOL), None
    # the dispatch path alone: parse and check the arguments, prepare "auto"'s choice
    return lambda: conv_module._prepare("auto", P.conv_args(x, w, None, 1, PAD, 1, 1, 2), x, w), None


def _torch(op):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(os.cpu_count() or 1)
    F = torch.nn.functional
    x, w, gy, gp = (torch.from_numpy(a) for a in _operands())
    y, idx = F.max_pool2d(x, return_indices=True, **POOL)
    if op == "conv2d":
        return lambda: F.conv2d(x, w, padding=PAD).numpy()
    if op == "conv2d_backward":
        return lambda: torch.ops.aten.convolution_backward(gy, x, w, None, [1, 1], [PAD, PAD], [1, 1], False,
                                                           [0, 0], 1, [True, True, False])[0].numpy()
    if op == "max_pool2d":
        return lambda: F.max_pool2d(x, return_indices=True, **POOL)[0].numpy()
    if op == "max_pool2d_backward":
        return lambda: torch.ops.aten.max_pool2d_with_indices_backward(gp, x, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                                       idx).numpy()
    pytest.skip("the dispatch path is convlab's own")


OPS = ("conv2d", "conv2d_backward", "max_pool2d", "max_pool2d_backward", "dispatch")


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("op", OPS)
def test_per_call(benchmark, op, impl):
    ours, ref = _ours(op)
    if impl == "torch":
        run = _torch(op)
        np.testing.assert_allclose(run(), ours(), rtol=1e-5, atol=1e-6)
    else:
        run = ours
        if ref is not None:
            np.testing.assert_allclose(run(), ref, rtol=1e-5, atol=1e-6)
    benchmark.group = f"per call {op} tiny"
    benchmark.extra_info["algorithm"] = impl
    benchmark.pedantic(run, rounds=200, iterations=10, warmup_rounds=5)
