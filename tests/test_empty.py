"""Empty batches and zero channels (docs/convolution.md): every op accepts them and returns
the empty result of the right shape, and a sum over no input channel is zero (the bias),
as the loop oracle computes it."""
import numpy as np
import pytest
from oracles import args_of, operands

import convlab
from convlab.conv import conv, conv_backward, conv_transpose, conv_transpose_backward
from convlab.reference import naive

ALGORITHMS = ["naive", "direct", "im2col", "fft", "separable", "winograd", "auto"]
# (N, C, K): an empty batch, no input channel, no output channel
EMPTY = [(0, 2, 3), (2, 0, 3), (2, 2, 0)]
POOLS = [("max_pool", (2,)), ("avg_pool", (2,)), ("lp_pool", (2.0, 2)), ("adaptive_max_pool", (3,)),
         ("adaptive_avg_pool", (3,))]


def _oracle(nd, x, w, gy, b):
    """Forward and gradients by the loop oracle (no algorithm dispatch), bias added here."""
    args = args_of(x, w, {})
    y = naive.forward(x, w, args) + b.reshape((1, -1) + (1,) * nd)
    return y, naive.grad_input(gy, w, args), naive.grad_weight(gy, x, args), gy.sum(axis=(0,) + tuple(range(2, 2 + nd)))


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("n,c,k", EMPTY)
@pytest.mark.parametrize("nd", [1, 2, 3])
def test_conv_of_nothing(nd, n, c, k, algorithm):
    x, w = operands((n, c) + (5,) * nd, (k, c) + (3,) * nd, rank_one=True)  # separable serves it
    rng = np.random.default_rng(0)
    b = rng.standard_normal(k)
    gy = rng.standard_normal((n, k) + (3,) * nd)
    y_ref, gx_ref, gw_ref, gb_ref = _oracle(nd, x, w, gy, b)
    y = conv(nd, x, w, b, algorithm=algorithm)
    gx, gw, gb = conv_backward(nd, gy, x, w, b, algorithm=algorithm)
    for got, ref in ((y, y_ref), (gx, gx_ref), (gw, gw_ref), (gb, gb_ref)):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, atol=1e-12)
    if c == 0:  # no input channel: the output is the bias, the weight gradient has no entry
        np.testing.assert_array_equal(y, np.broadcast_to(b.reshape((1, -1) + (1,) * nd), y.shape))
    # the transposed convolution (weight (C_in, C_out, *k)) and its backward
    yt = conv_transpose(nd, gy, w, algorithm=algorithm)
    np.testing.assert_allclose(yt, gx_ref, atol=1e-12)
    gu, gwt, _ = conv_transpose_backward(nd, x, gy, w, algorithm=algorithm)
    assert gu.shape == gy.shape and gwt.shape == w.shape
    np.testing.assert_allclose(gu, y_ref - b.reshape((1, -1) + (1,) * nd), atol=1e-12)


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("lead", [(0, 2), (2, 0)])
@pytest.mark.parametrize("name,extra", POOLS)
def test_pools_of_nothing(name, extra, lead, nd):
    x = np.ones(lead + (6,) * nd)
    y = getattr(convlab, f"{name}{nd}d")(x, *extra)
    assert y.shape == lead + (3,) * nd
    gx = getattr(convlab, f"{name}{nd}d_backward")(y, x, *extra)
    assert gx.shape == x.shape
    if name.startswith("max") or name == "adaptive_max_pool":
        y, idx = getattr(convlab, f"{name}{nd}d")(x, *extra, return_indices=True)
        assert idx.shape == y.shape
        assert getattr(convlab, f"{name}{nd}d_backward")(y, x, *extra, indices=idx).shape == x.shape


@pytest.mark.parametrize("lead", [(0, 4), (2, 0)])
def test_maxout_of_nothing(lead):
    x = np.ones(lead + (3, 3))
    y = convlab.maxout(x, 2)
    assert y.shape == (lead[0], lead[1] // 2, 3, 3)
    assert convlab.maxout_backward(y, x, 2).shape == x.shape


@pytest.mark.parametrize("lead", [(0, 2), (2, 0)])
def test_unshared_separable_and_matrix_ops_of_nothing(lead):
    n, c = lead
    x = np.ones(lead + (6, 6))
    gy = np.ones((n, 3, 4, 4))
    local_w, tiled_w = np.ones((3, 4, 4, c, 3, 3)), np.ones((3, 2, 2, c, 3, 3))
    for op, w in ((convlab.local_conv2d, local_w), (convlab.tiled_conv2d, tiled_w)):
        y = op(x, w)
        assert y.shape == (n, 3, 4, 4) and not y.any()
    for op, w in ((convlab.local_conv2d_backward, local_w), (convlab.tiled_conv2d_backward, tiled_w)):
        gx, gw, _ = op(gy, x, w)
        assert gx.shape == x.shape and gw.shape == w.shape and not gw.any()
    factors = [np.ones((3, c, 3)), np.ones((3, c, 3))]
    assert convlab.separable_conv2d(x, factors, groups=1).shape == (n, 3, 4, 4)
    gx, gf, _ = convlab.separable_conv2d_backward(gy, x, factors, groups=1)
    assert gx.shape == x.shape and [g.shape for g in gf] == [f.shape for f in factors]
    cols = convlab.im2col(x, 3)
    assert cols.shape == (n, c * 9, 16)
    assert convlab.col2im(cols, (6, 6), 3).shape == x.shape
    assert convlab.conv_matrix(x.shape, np.ones((3, c, 3, 3))).shape == (n * 3 * 16, n * c * 36)
