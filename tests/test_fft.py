"""algorithm="fft": SciPy, the transposed convolution, the precision guard, NaN (the loop oracle,
PyTorch and finite differences: test_conv_matrix.py)."""
import itertools
import math

import numpy as np
import pytest
import scipy.signal
from oracles import args_of, assert_close, operands

import convlab
from convlab.reference import direct, fft


@pytest.mark.parametrize("mode", ["full", "valid"])
def test_fft_single_channel_matches_scipy(mode):
    rng = np.random.default_rng(3)
    img, ker = rng.standard_normal((37, 41)), rng.standard_normal((6, 9))
    y = convlab.conv2d(img[None, None], ker[None, None], padding=mode, algorithm="fft")[0, 0]
    np.testing.assert_allclose(y, scipy.signal.correlate(img, ker, mode=mode, method="direct"), atol=1e-11)
    z = convlab.conv2d(img[None, None], ker[None, None], padding=mode, algorithm="fft", flip=True)[0, 0]
    np.testing.assert_allclose(z, scipy.signal.convolve(img, ker, mode=mode, method="direct"), atol=1e-11)


def test_fft_transposed_convolution_matches_direct():
    x, w = operands((2, 4, 5, 6), (4, 3, 3, 2))
    kw = dict(stride=2, padding=1, output_padding=1, dilation=(1, 2))
    y = convlab.conv_transpose2d(x, w, algorithm="fft", **kw)
    np.testing.assert_allclose(y, convlab.conv_transpose2d(x, w, algorithm="direct", **kw), atol=1e-11)
    gy = np.random.default_rng(5).standard_normal(y.shape)
    for a, b in zip(convlab.conv_transpose2d_backward(gy, x, w, algorithm="fft", **kw)[:2],
                    convlab.conv_transpose2d_backward(gy, x, w, algorithm="direct", **kw)[:2]):
        np.testing.assert_allclose(a, b, atol=1e-10)


# ----------------------------------------------------------------------------- precision guard

def _two_regions(big, seed=6):
    """A float32 image whose left half is ``big`` times larger than its right half."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, 2, 128, 128))
    x[..., :64] *= big
    w = rng.standard_normal((3, 2, 5, 5))
    return x, w


def _small_region_error(y, ref):
    """Largest error over the outputs whose windows lie in the small right half, relative to them."""
    part = (Ellipsis, slice(None), slice(66, None))
    return float(np.abs(y[part] - ref[part]).max() / np.abs(ref[part]).max())


def test_fft_precision_guard_promotes_two_scale_input_to_float64():
    x, w = _two_regions(1e4)
    ref = convlab.conv2d(x, w, padding=2, algorithm="direct")
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    args = args_of(x32, w32, dict(padding=2))
    # The guard's bound says float32 transforms cannot resolve the small half ...
    assert fft.work_dtype(x32, w32, args.geom) == np.float64
    # ... and indeed they lose about four digits there, while float32 direct sums do not.
    raw = fft.correlate(x32, w32, args, np.float32)
    assert _small_region_error(raw, ref) > 1e-4
    assert _small_region_error(direct.forward(x32, w32, args), ref) < 1e-6
    # The guarded algorithm is as accurate as float32 direct sums and keeps the dtype.
    y = convlab.conv2d(x32, w32, padding=2, algorithm="fft")
    assert y.dtype == np.float32
    assert _small_region_error(y, ref) < 1e-6
    gy = np.random.default_rng(7).standard_normal(ref.shape)
    gy[..., :64] *= 1e4
    gx, _, _ = convlab.conv2d_backward(gy.astype(np.float32), x32, w32, padding=2, algorithm="fft")
    ref_gx = convlab.conv2d_backward(gy, x, w, padding=2, algorithm="direct")[0]
    assert _small_region_error(gx, ref_gx) < 1e-6


def test_fft_precision_guard_keeps_float32_for_one_scale_input():
    x, w = _two_regions(1.0)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    args = args_of(x32, w32, dict(padding=2))
    assert fft.work_dtype(x32, w32, args.geom) == np.float32
    assert fft.error_estimate(2.0, args.geom) < fft.FLOAT32_TOLERANCE < fft.error_estimate(1e4, args.geom)
    ref = convlab.conv2d(x, w, padding=2, algorithm="direct")
    assert_close(convlab.conv2d(x32, w32, padding=2, algorithm="fft"), ref, np.float32, 50)


# ----------------------------------------------------------------------------- non-finite input

@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_fft_nonfinite_input_stays_inside_its_windows(bad):
    x, w = operands((1, 2, 12, 12), (2, 2, 3, 3))
    x[0, 1, 5, 7] = bad
    y = convlab.conv2d(x, w, padding=1, algorithm="fft")
    ref = convlab.conv2d(x, w, padding=1, algorithm="naive")
    touched = np.zeros((12, 12), bool)
    touched[4:7, 6:9] = True  # the 3x3 outputs whose windows read cell (5, 7)
    assert np.array_equal(np.isfinite(y[0, 0]), ~touched)
    np.testing.assert_allclose(y, ref, atol=1e-12)  # equal NaN/inf positions, equal values elsewhere
    gy = np.ones_like(y)
    gy[0, 0, 0, 0] = np.nan
    gx, gw, _ = convlab.conv2d_backward(gy, x, w, padding=1, algorithm="fft")
    assert np.isnan(gx[0, :, :2, :2]).all() and np.isfinite(gx[0, :, 3:, 3:]).all()


@pytest.mark.parametrize("shape,k", [((2, 3, 37), 3), ((1, 2, 20, 17), 5), ((2, 1, 9, 10, 11), 3),
                                     ((3, 2, 33, 40), 12), ((1, 1, 64, 60), 11)])
def test_region_ratio_matches_loops(shape, k):
    """The guard's statistic, written out: max over regions of the kernel's span (at least
    MIN_REGION cells, at most half the axis, grown to a divisor of the size when one is within
    2x and at most half the axis, else cut at the edge) of |x| over channels; largest over
    smallest nonzero."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal(shape) * np.exp(2 * rng.standard_normal(shape))
    a[0, ..., :5] = 0.0  # zero regions do not count
    nd = len(shape) - 2
    args = args_of(a, np.zeros((1, shape[1]) + (k,) * nd), {})
    block = []
    for n in shape[2:]:
        want = min(max(k, fft.MIN_REGION), math.ceil(n / 2))
        divisors = [b for b in range(want, min(2 * want, n // 2) + 1) if n % b == 0]
        block.append(divisors[0] if divisors else want)
    worst = 1.0
    for n in range(shape[0]):
        maxima = []
        for corner in itertools.product(*[range(0, s, b) for s, b in zip(shape[2:], block)]):
            maxima.append(np.abs(a[(n, slice(None)) + tuple(slice(c, c + b) for c, b in zip(corner, block))]).max())
        nonzero = [m for m in maxima if m > 0]
        worst = max(worst, max(maxima) / min(nonzero))
    assert fft._region_ratio(a, args.geom) == pytest.approx(worst, rel=1e-12)
    a[-1, 0, ..., -1] = np.nan
    assert fft._region_ratio(a, args.geom) == math.inf
