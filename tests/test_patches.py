"""im2col's channel-last patches (strided layers) against the loop oracle."""
import numpy as np
import pytest
from oracles import args_of, assert_close, naive_all, operands

import convlab
from convlab.reference import im2col, patches

CASES = [
    ("1d-stride2", (2, 3, 17), (4, 3, 5), dict(stride=2, padding=2)),
    ("2d-stem", (2, 3, 19, 16), (5, 3, 7, 7), dict(stride=2, padding=3)),
    ("2d-stride2-dil2", (1, 8, 15, 14), (6, 8, 3, 3), dict(stride=2, dilation=2, padding=1)),
    ("2d-stride-pairs-g2", (2, 8, 13, 11), (6, 4, 3, 2), dict(stride=(2, 3), padding=((1, 2), (0, 1)), groups=2)),
    ("3d-stride2", (1, 2, 7, 8, 6), (3, 2, 3, 3, 3), dict(stride=2, padding=1)),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,x_shape,w_shape,params", CASES, ids=[c[0] for c in CASES])
def test_patches_match_the_loop_oracle(name, x_shape, w_shape, params, dtype):
    x, w = operands(x_shape, w_shape, dtype)
    args = args_of(x, w, params)
    assert patches.serves(args)
    y = patches.forward(x, w, args)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    ref_y, ref_gx, ref_gw = naive_all(x, w, gy, params)
    assert_close(y, ref_y, dtype, np.prod(w_shape[1:]))
    assert_close(patches.grad_weight(gy, x, args), ref_gw, dtype, y.size // y.shape[1])
    assert_close(patches.grad_input(gy, w, args), ref_gx, dtype, w_shape[0] * np.prod(w_shape[2:]))


def test_patches_in_small_chunks_agree_with_one_chunk():
    x, w = operands((3, 3, 21, 18), (4, 3, 5, 5))
    whole = convlab.conv2d(x, w, stride=2, padding=2, algorithm="im2col")
    y = convlab.conv2d(x, w, stride=2, padding=2)
    gy = np.random.default_rng(2).standard_normal(y.shape)
    gw = convlab.conv2d_backward(gy, x, w, stride=2, padding=2, algorithm="im2col")[1]
    args = args_of(x, w, dict(stride=2, padding=2))
    gx = patches.grad_input(gy, w, args)
    old = convlab.set_workspace_limit(1)  # one sample per block, one output row per chunk
    try:
        np.testing.assert_allclose(convlab.conv2d(x, w, stride=2, padding=2, algorithm="im2col"), whole, rtol=1e-13)
        np.testing.assert_allclose(convlab.conv2d_backward(gy, x, w, stride=2, padding=2, algorithm="im2col")[1], gw,
                                   rtol=1e-12)
        np.testing.assert_allclose(patches.grad_input(gy, w, args), gx, rtol=1e-12)
    finally:
        convlab.set_workspace_limit(old)


def test_im2col_hands_strided_layers_here():
    x, w = operands((2, 16, 40, 40), (8, 16, 3, 3))
    assert im2col.prepare(x, w, args_of(x, w, dict(stride=2, padding=1))).run.forward is patches.forward


def test_stride_one_keeps_the_phase_layout():
    x, w = operands((1, 3, 9, 9), (4, 3, 3, 3))
    assert not patches.serves(args_of(x, w, dict(padding=1)))


@pytest.mark.parametrize("channels,used", [(128, True), (64, False)])
def test_input_gradient_adds_back_channel_last_only_on_long_runs(monkeypatch, channels, used):
    x, w = operands((1, channels, 9, 9), (4, channels, 3, 3), np.float32)
    calls = []
    real = patches.grad_input
    monkeypatch.setattr(patches, "grad_input", lambda *a: calls.append(1) or real(*a))
    y = convlab.conv2d(x, w, stride=2, padding=1, algorithm="im2col")
    gy = np.random.default_rng(3).standard_normal(y.shape).astype(np.float32)
    gx = convlab.conv2d_backward(gy, x, w, stride=2, padding=1, algorithm="im2col")[0]
    assert bool(calls) == used
    ref = convlab.conv2d_backward(gy.astype(np.float64), x.astype(np.float64), w.astype(np.float64), stride=2,
                                  padding=1, algorithm="naive")[0]
    assert_close(gx, ref, np.float32, 4 * 9)
