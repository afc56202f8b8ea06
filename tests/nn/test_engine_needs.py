"""The engine's backward functions for autograd: ``needs=`` gives None exactly where a
gradient is not asked for and the same arrays as the full backward elsewhere; max-pool
backward from the forward's indices equals the one that finds the maxima again."""
import itertools

import numpy as np
import pytest

import convlab

RNG = np.random.default_rng(5)
NEEDS = list(itertools.product([False, True], repeat=3))


def _cases():
    r = RNG.standard_normal
    yield "conv1d", (r((2, 4, 9)), r((6, 2, 3)), r(6)), dict(stride=2, padding=1, dilation=2, groups=2)
    yield "conv2d", (r((2, 3, 6, 5)), r((4, 3, 3, 2)), r(4)), dict(padding="same", flip=True)
    yield "conv3d", (r((1, 2, 4, 5, 4)), r((3, 2, 2, 3, 2)), r(3)), dict(stride=(1, 2, 1), padding=1)
    yield "conv_transpose1d", (r((2, 4, 5)), r((4, 3, 3)), r(6)), dict(stride=2, output_padding=1, groups=2)
    yield "conv_transpose2d", (r((2, 3, 4, 3)), r((3, 2, 3, 3)), r(2)), dict(stride=2, padding=1, dilation=2)
    yield "conv_transpose3d", (r((1, 2, 3, 2, 3)), r((2, 2, 2, 2, 2)), r(2)), dict(stride=2)
    yield "local_conv1d", (r((2, 2, 7)), r((3, 3, 2, 3)), r((3, 3))), dict(stride=2)
    yield "local_conv2d", (r((2, 2, 5, 4)), r((3, 5, 2, 2, 3, 3)), r((3, 5, 2))), dict(padding=1, stride=(1, 2))
    yield "local_conv3d", (r((1, 2, 3, 3, 3)), r((2, 2, 2, 2, 2, 2, 2, 2)), r((2, 2, 2, 2))), dict()
    yield "tiled_conv1d", (r((2, 2, 8)), r((3, 2, 2, 3)), r(3)), dict(dilation=2)
    yield "tiled_conv2d", (r((2, 2, 5, 5)), r((3, 2, 2, 2, 3, 3)), r(3)), dict(padding=1)
    yield "tiled_conv3d", (r((1, 2, 4, 3, 3)), r((2, 2, 1, 2, 2, 2, 2, 2)), r(2)), dict()
    yield "separable_conv1d", (r((2, 2, 7)), [r((3, 2, 3))], r(3)), dict()
    yield "separable_conv2d", (r((2, 4, 6, 5)), [r((2, 2, 3)), r((2, 2, 2))], r(2)), dict(groups=2, padding=1)
    yield "separable_conv3d", (r((1, 2, 4, 4, 3)), [r((3, 2, 2)), r((3, 2, 3)), r((3, 2, 2))], r(3)), dict()


CASES = list(_cases())


def _same(a, b):
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))
    return np.array_equal(a, b)


@pytest.mark.parametrize("name, arrays, kw", CASES, ids=[c[0] for c in CASES])
def test_needs_gives_none_where_not_needed_and_the_same_arrays_elsewhere(name, arrays, kw):
    forward, backward = getattr(convlab, name), getattr(convlab, name + "_backward")
    x, w, b = arrays
    gy = RNG.standard_normal(forward(x, w, b, **kw).shape)
    full = backward(gy, x, w, b, **kw)
    assert all(g is not None for g in full)
    for needs in NEEDS:
        out = backward(gy, x, w, b, **kw, needs=needs)
        assert len(out) == 3
        for need, got, ref in zip(needs, out, full):
            if need:
                assert _same(got, ref), (needs, name)
            else:
                assert got is None, (needs, name)
    # without a bias there is never a bias gradient
    for needs in NEEDS:
        out = backward(gy, x, w, None, **kw, needs=needs)
        assert out[2] is None
        assert (out[0] is None) != needs[0] and (out[1] is None) != needs[1]


@pytest.mark.parametrize("bad", [(True, True), [True, True, True, True], "xyz", True, (1, "a", 0)])
def test_bad_needs_raise(bad):
    x, w = RNG.standard_normal((1, 1, 4, 4)), RNG.standard_normal((1, 1, 3, 3))
    with pytest.raises(TypeError, match="needs"):
        convlab.conv2d_backward(np.ones((1, 1, 2, 2)), x, w, needs=bad)


# ----------------------------------------------------------------------------- max pool from indices

MAX_POOL_CASES = [
    (1, dict(kernel_size=3, stride=1)),
    (1, dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (2, dict(kernel_size=3, stride=2, padding=1)),
    (2, dict(kernel_size=(3, 2), stride=1, dilation=(2, 1))),
    (2, dict(kernel_size=2, stride=2, ceil_mode=True)),
    (2, dict(kernel_size=3, stride=1, padding=(1, 0), dilation=2, ceil_mode=True)),
    (3, dict(kernel_size=2, stride=1)),
    (3, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
]
SIZES = {1: (11,), 2: (7, 6), 3: (5, 4, 5)}


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("nd, kw", MAX_POOL_CASES)
def test_max_pool_backward_from_indices_equals_recomputed(nd, kw, ties):
    x = RNG.standard_normal((2, 3) + SIZES[nd])
    if ties:  # few distinct values: windows hold several maxima, the first one wins
        x = np.round(x)
    y, idx = getattr(convlab, f"max_pool{nd}d")(x, **kw, return_indices=True)
    gy = RNG.standard_normal(y.shape)
    backward = getattr(convlab, f"max_pool{nd}d_backward")
    recomputed = backward(gy, x, **kw)
    from_indices = backward(gy, x, **kw, indices=idx)
    # a cell that is the maximum of several windows sums their gradients in another order
    np.testing.assert_allclose(from_indices, recomputed, rtol=0, atol=1e-13)
    assert from_indices.dtype == x.dtype and from_indices.shape == x.shape


def test_max_pool_backward_from_indices_skips_empty_windows():
    """A dilated window entirely in the padding has index -1 and passes no gradient."""
    x = RNG.standard_normal((2, 3, 2))
    kw = dict(kernel_size=2, stride=1, padding=1, dilation=3)  # one window: cells -1 and 2
    y, idx = convlab.max_pool1d(x, **kw, return_indices=True)
    gy = RNG.standard_normal(y.shape)
    assert (idx == -1).all()
    assert np.array_equal(convlab.max_pool1d_backward(gy, x, **kw, indices=idx), np.zeros_like(x))
    assert np.array_equal(convlab.max_pool1d_backward(gy, x, **kw), np.zeros_like(x))


@pytest.mark.parametrize("nd, size", [(1, 4), (2, (3, 4)), (2, (5, None)), (3, (2, 3, 2))])
@pytest.mark.parametrize("ties", [False, True])
def test_adaptive_max_pool_backward_from_indices(nd, size, ties):
    x = RNG.standard_normal((2, 2) + SIZES[nd])
    if ties:
        x = np.round(x)
    y, idx = getattr(convlab, f"adaptive_max_pool{nd}d")(x, size, return_indices=True)
    gy = RNG.standard_normal(y.shape)
    backward = getattr(convlab, f"adaptive_max_pool{nd}d_backward")
    np.testing.assert_allclose(backward(gy, x, size, indices=idx), backward(gy, x, size), rtol=0, atol=1e-13)


def _pool_and_indices():
    x = RNG.standard_normal((2, 2, 6, 6))
    y, idx = convlab.max_pool2d(x, 3, stride=2, padding=1, return_indices=True)
    return x, RNG.standard_normal(y.shape), idx


@pytest.mark.parametrize("bad, error, match", [
    (lambda i: i.astype(np.int32), TypeError, "int64"),
    (lambda i: i.astype(np.float64), TypeError, "int64"),
    (lambda i: i[:, :, :2], ValueError, "indices"),
    (lambda i: i.reshape(2, 2, -1), ValueError, "indices"),
    (lambda i: i + 36, ValueError, r"\[-1, 36\)"),
    (lambda i: i - 100, ValueError, r"\[-1, 36\)"),
    (lambda i: i.tolist(), TypeError, "indices"),
])
def test_bad_indices_raise(bad, error, match):
    x, gy, idx = _pool_and_indices()
    with pytest.raises(error, match=match):
        convlab.max_pool2d_backward(gy, x, 3, stride=2, padding=1, indices=bad(idx))
    y, aidx = convlab.adaptive_max_pool2d(x, 3, return_indices=True)
    with pytest.raises(error, match=match):
        convlab.adaptive_max_pool2d_backward(RNG.standard_normal(y.shape), x, 3, indices=bad(aidx))
