"""The test matrix: every algorithm x case x dtype x array module against the independent
oracles (the loop oracle, PyTorch, finite differences), forward, input, weight and bias
gradients. An algorithm that cannot serve a case is skipped with its own reason; the
per-algorithm files keep only what is specific to one algorithm."""
import math

import numpy as np
import pytest
from oracles import (CASES, CONV, GRAD_CASES, GRAD_IDS, IDS, assert_close, host, naive_all, operands, serving,
                     torch_conv)

import convlab

KERNELS = ["full", "rank-1"]  # rank-1 kernels let "separable" serve every case
_ORACLE: dict = {}


def _setup(xp, algorithm, x_shape, w_shape, params, dtype, kernel="full"):
    if xp is not np and algorithm == "naive":
        pytest.skip("the loop oracle's element loops are run on NumPy arrays")
    x, w = operands(x_shape, w_shape, dtype, rank_one=kernel == "rank-1")
    b = np.random.default_rng(2).standard_normal(w_shape[0]).astype(dtype)
    x, w, b = xp.asarray(x), xp.asarray(w), xp.asarray(b)
    reason = serving(algorithm, x, w, params)
    if reason:
        pytest.skip(reason)
    nd = len(x_shape) - 2
    return x, w, b, getattr(convlab, CONV[nd]), getattr(convlab, CONV[nd] + "_backward")


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,x_shape,w_shape,params", CASES, ids=IDS)
def test_matches_the_loop_oracle(name, x_shape, w_shape, params, dtype, kernel, algorithm, xp):
    x, w, b, conv, backward = _setup(xp, algorithm, x_shape, w_shape, params, dtype, kernel)
    y = conv(x, w, b, algorithm=algorithm, **params)
    assert type(y) is type(x)
    gy = xp.asarray(np.random.default_rng(1).standard_normal(y.shape).astype(dtype))
    gx, gw, gb = backward(gy, x, w, b, algorithm=algorithm, **params)
    key = (name, np.dtype(dtype).name, kernel)
    if key not in _ORACLE:  # the same for every algorithm and array module: computed once
        _ORACLE[key] = naive_all(x, w, gy, params)
    ref_y, ref_gx, ref_gw = _ORACLE[key]
    nd = len(x_shape) - 2
    red = math.prod(w_shape[1:])
    assert_close(y, ref_y + host(b).astype(np.float64).reshape((1, -1) + (1,) * nd), dtype, red)
    assert_close(gx, ref_gx, dtype, red)
    assert_close(gw, ref_gw, dtype, math.prod(y.shape) / y.shape[1])
    assert_close(gb, host(gy).astype(np.float64).sum(axis=(0,) + tuple(range(2, 2 + nd))), dtype, y.size)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("name,x_shape,w_shape,params", CASES, ids=IDS)
def test_matches_torch(name, x_shape, w_shape, params, kernel, algorithm, xp):
    x, w, b, conv, backward = _setup(xp, algorithm, x_shape, w_shape, params, np.float64, kernel)
    y = conv(x, w, b, algorithm=algorithm, **params)
    gy = np.random.default_rng(3).standard_normal(y.shape)
    peer = torch_conv(host(x), host(w), params, gy, host(b))
    if peer is None:
        pytest.skip("PyTorch is not installed (optional oracle)")
    gx, gw, _ = backward(xp.asarray(gy), x, w, b, algorithm=algorithm, **params)
    for ours, theirs in zip((y, gx, gw), peer):
        np.testing.assert_allclose(host(ours), theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("name,x_shape,w_shape,params", GRAD_CASES, ids=GRAD_IDS)
def test_backward_gradcheck(name, x_shape, w_shape, params, flip, algorithm, xp):
    if algorithm == "separable":
        pytest.skip("a perturbed kernel is not separable: tests/test_separable.py checks the input gradient "
                    "and the factors' gradients by finite differences")
    x, w, b, conv, backward = _setup(xp, algorithm, x_shape, w_shape, params, np.float64)
    report = convlab.gradcheck(conv, backward, (x, w, b), algorithm=algorithm, flip=flip, **params)
    assert report.passed and report.elements_checked == x.size + w.size + b.size
