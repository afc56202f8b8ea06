"""conv forward against the sparse matrix, SciPy and NumPy, and the identities of section 9.2 (the loop
oracle and PyTorch for every algorithm: test_conv_matrix.py)."""
import itertools
import math

import numpy as np
import pytest
import scipy.signal
from oracles import CASES, IDS, operands, serving

import convlab
from convlab import conv1d, conv2d, conv3d

CONV = {1: conv1d, 2: conv2d, 3: conv3d}


def _make(rng, x_shape, w_shape, dtype=np.float64):
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("name,x_shape,w_shape,params", CASES, ids=IDS)
def test_matches_sparse_matrix(name, x_shape, w_shape, params, algorithm):
    x, w = operands(x_shape, w_shape, seed=1, rank_one=algorithm == "separable")
    reason = serving(algorithm, x, w, params)
    if reason:
        pytest.skip(reason)
    m = convlab.conv_matrix(x_shape, w, **params)
    y = CONV[len(x_shape) - 2](x, w, algorithm=algorithm, **params)
    np.testing.assert_allclose(m @ x.ravel(), y.ravel(), rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize("mode", ["full", "valid", "same"])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("algorithm", ["naive", "direct", "im2col"])
def test_single_channel_matches_scipy_2d(mode, flip, algorithm):
    rng = np.random.default_rng(3)
    img, ker = rng.standard_normal((9, 8)), rng.standard_normal((3, 5))
    ref = (scipy.signal.convolve2d if flip else scipy.signal.correlate2d)(img, ker, mode=mode)
    if mode == "same":
        # SciPy centres with the odd extra cell at the start for flip=False; reach its rule with
        # explicit (lo, hi) pairs, as the contract says.
        pads = []
        for k in ker.shape:
            total = k - 1
            lo = total - total // 2 if not flip else total // 2
            pads.append((lo, total - lo))
        padding = tuple(pads)
    else:
        padding = mode
    y = conv2d(img[None, None], ker[None, None], padding=padding, flip=flip, algorithm=algorithm)[0, 0]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", ["full", "valid"])
@pytest.mark.parametrize("flip", [False, True])
def test_single_channel_matches_numpy_1d(mode, flip):
    rng = np.random.default_rng(4)
    sig, ker = rng.standard_normal(17), rng.standard_normal(5)
    ref = np.convolve(sig, ker, mode=mode) if flip else np.correlate(sig, ker, mode=mode)
    y = conv1d(sig[None, None], ker[None, None], padding=mode, flip=flip)[0, 0]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_same_padding_output_size_and_odd_pad_at_end():
    x = np.zeros((1, 1, 10, 7))
    x[0, 0, -1, -1] = 1.0
    for stride in (1, 2, 3):
        y = conv2d(x, np.ones((1, 1, 4, 4)), padding="same", stride=stride)
        assert y.shape[2:] == (math.ceil(10 / stride), math.ceil(7 / stride))
    # kernel 4 (even): pads (1, 2), so output j covers inputs j-1..j+2 and output n-3 is the
    # first to see the last input; with (2, 1) it would be output n-2.
    y = conv2d(x, np.ones((1, 1, 4, 4)), padding="same")  # auto may factor the all-ones kernel: round-off
    assert y[0, 0, -3, -3] == pytest.approx(1.0, abs=1e-12) and abs(y[0, 0, -4, -4]) < 1e-12


def test_flip_is_true_convolution():
    rng = np.random.default_rng(6)
    x, w, _ = _make(rng, (1, 2, 6, 6), (3, 2, 3, 2))
    np.testing.assert_allclose(conv2d(x, w, flip=True), conv2d(x, w[:, :, ::-1, ::-1].copy()), atol=1e-13)


def test_translation_equivariance():
    """Section 9.2: shifting the input shifts the output (stride 1, away from the borders)."""
    rng = np.random.default_rng(7)
    x = np.zeros((1, 2, 16, 16))
    x[:, :, 3:8, 4:9] = rng.standard_normal((1, 2, 5, 5))
    w = rng.standard_normal((3, 2, 3, 3))
    y = conv2d(x, w, padding=1)
    ys = conv2d(np.roll(x, (2, 3), axis=(2, 3)), w, padding=1)
    np.testing.assert_allclose(ys, np.roll(y, (2, 3), axis=(2, 3)), atol=1e-12)


def test_linearity():
    rng = np.random.default_rng(8)
    x1, w, _ = _make(rng, (2, 3, 7, 7), (4, 3, 3, 3))
    x2 = rng.standard_normal(x1.shape)
    lhs = conv2d(2.0 * x1 - 3.0 * x2, w, stride=2)
    np.testing.assert_allclose(lhs, 2.0 * conv2d(x1, w, stride=2) - 3.0 * conv2d(x2, w, stride=2), atol=1e-12)


def test_views_and_empty_batch(algorithm):
    rng = np.random.default_rng(9)
    base = rng.standard_normal((3, 4, 12, 10))
    w = rng.standard_normal((5, 4, 3, 3))
    reason = serving(algorithm, base, w, dict(padding=1))
    if reason:
        pytest.skip(reason)
    for x in (base[:, :, ::2, ::-1], base.transpose(0, 1, 3, 2), base[::-1, :, 1:-1, 2:]):
        ref = conv2d(np.ascontiguousarray(x), w, padding=1, algorithm="direct")
        np.testing.assert_allclose(conv2d(x, w, padding=1, algorithm=algorithm), ref, atol=1e-12)
    wv = np.ascontiguousarray(rng.standard_normal((4, 5, 3, 3)).transpose(1, 0, 3, 2))
    np.testing.assert_allclose(conv2d(base, wv, algorithm=algorithm),
                               conv2d(base, np.ascontiguousarray(wv), algorithm="naive"), atol=1e-12)
    empty = conv2d(base[:0], w, padding=1, algorithm=algorithm)
    assert empty.shape == (0, 5, 12, 10)


def test_nan_propagates_to_affected_outputs_only(algorithm):
    x = np.ones((1, 1, 9, 9))
    x[0, 0, 4, 4] = np.nan
    reason = serving(algorithm, x, np.ones((1, 1, 3, 3)), {})
    if reason:
        pytest.skip(reason)
    y = conv2d(x, np.ones((1, 1, 3, 3)), algorithm=algorithm)  # valid: output 7x7
    nan = np.isnan(y[0, 0])
    expected = np.zeros((7, 7), bool)
    expected[2:5, 2:5] = True  # outputs whose 3x3 window contains input (4, 4)
    np.testing.assert_array_equal(nan, expected)


def test_full_padding_is_the_pairs_it_promises():
    """Padding "full" pads d*(k-1) on both sides."""
    rng = np.random.default_rng(10)
    x, w, _ = _make(rng, (1, 1, 7, 6), (1, 1, 3, 4))
    for stride, dil in itertools.product((1, 2), (1, 2)):
        full = conv2d(x, w, padding="full", stride=stride, dilation=dil, algorithm="naive")
        pairs = tuple((dil * (k - 1),) * 2 for k in (3, 4))
        np.testing.assert_array_equal(full, conv2d(x, w, padding=pairs, stride=stride, dilation=dil, algorithm="naive"))
