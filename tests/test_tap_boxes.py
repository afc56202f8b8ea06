"""The pad-free tap reads of the pools (``windows.tap_boxes``) against the padded input they
replace: on every geometry, a tap's box holds exactly the windows whose tap reads an input
cell, and those read the cells that ``tap_view`` of the padded input shows."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convlab
from convlab import _params as P
from convlab.reference import windows as W


@st.composite
def geometries(draw):
    nd = draw(st.integers(1, 3))
    n = tuple(draw(st.integers(1, 8)) for _ in range(nd))
    k = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    s = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    d = tuple(draw(st.integers(1, 3)) for _ in range(nd))
    pad = tuple((draw(st.integers(0, kk // 2)), draw(st.integers(0, kk // 2))) for kk in k)
    try:
        return P.make_geometry(n, k, s, d, pad, ceil_mode=draw(st.booleans()))
    except ValueError:
        return P.make_geometry(n, (1,) * nd, s, (1,) * nd, ((0, 0),) * nd)


@settings(max_examples=200, deadline=None)
@given(geometries())
def test_tap_boxes_read_what_the_padded_input_shows(geom):
    x = np.random.default_rng(0).standard_normal((2,) + geom.in_size)
    xpad = W.pad(x, geom, np.nan)  # NaN marks the padding
    for tap, box in zip(W.taps(geom), W.tap_boxes(geom)):
        view = W.tap_view(xpad, tap, geom)
        expected = np.full(view.shape, np.nan)
        if box is not None:
            expected[box[1]] = x[box[0]]
        np.testing.assert_array_equal(view, expected)
        assert W.covers(box, geom) == bool(np.isfinite(view).all())


@pytest.mark.parametrize("threaded", [False, True])
def test_chunked_pools_match_a_padded_window_oracle(threaded, monkeypatch):
    """Many chunks of planes (and a thread per core over them): every pool and its backward
    against NumPy's sliding_window_view over an explicitly padded input."""
    from convlab.reference import pool

    monkeypatch.setattr(pool, "CACHE_BYTES", 1)  # a chunk per plane
    monkeypatch.setattr(pool, "SMALL_WINDOWS", -1)  # max pooling tap by tap, as on large inputs
    monkeypatch.setattr(pool, "PARALLEL_BYTES", 0 if threaded else 1 << 62)
    monkeypatch.setattr(pool._parallel, "workers", lambda: 2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 9, 8))
    kw = dict(kernel_size=3, stride=2, padding=1)
    win = np.lib.stride_tricks.sliding_window_view
    y, idx = convlab.max_pool2d(x, return_indices=True, **kw)
    xpad = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)], constant_values=-np.inf)
    np.testing.assert_array_equal(y, win(xpad, (3, 3), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1)))
    g = rng.standard_normal(y.shape)
    gx = convlab.max_pool2d_backward(g, x, **kw)
    expected = np.zeros(x.size)
    np.add.at(expected, (idx + np.arange(15).reshape(3, 5, 1, 1) * 72).ravel(), g.ravel())
    np.testing.assert_allclose(gx.ravel(), expected, atol=1e-14)
    np.testing.assert_allclose(convlab.max_pool2d_backward(g, x, indices=idx, **kw).ravel(), expected, atol=1e-14)
    idx[1, 2] = -1  # a plane in the middle whose windows hold no input cell adds nothing
    idx[2, 0] = idx[2, 0, 0, 0]  # and one whose windows all send to one cell
    expected = np.zeros(x.size)
    keep = (idx >= 0).ravel()
    np.add.at(expected, (idx + np.arange(15).reshape(3, 5, 1, 1) * 72).ravel()[keep], g.ravel()[keep])
    np.testing.assert_allclose(convlab.max_pool2d_backward(g, x, indices=idx, **kw).ravel(), expected, atol=1e-14)
    idx[1, 3, 4, 3] = 72  # a window of a chunk in the middle sends past its plane
    with pytest.raises(ValueError, match="window 19 of plane 8 holds 72"):
        convlab.max_pool2d_backward(g, x, indices=idx, **kw)
    zpad = np.pad(x, [(0, 0), (0, 0), (1, 1), (1, 1)])
    np.testing.assert_allclose(convlab.avg_pool2d(x, **kw),
                               win(zpad, (3, 3), axis=(2, 3))[:, :, ::2, ::2].mean(axis=(-2, -1)), atol=1e-14)
    np.testing.assert_allclose(convlab.lp_pool2d(x, 2, **kw),
                               np.sqrt((win(zpad, (3, 3), axis=(2, 3))[:, :, ::2, ::2] ** 2).sum(axis=(-2, -1))),
                               atol=1e-14)
    # the adjoint of the average: <avg(x), g> = <x, avg_backward(g)>
    assert np.isclose((convlab.avg_pool2d(x, **kw) * g).sum(), (x * convlab.avg_pool2d_backward(g, x, **kw)).sum())
    # Windows that do not overlap assign their cells (every cell, or with a last row no window reads).
    for xs in (x[:, :, :8], x):
        y, idx = convlab.max_pool2d(xs, 2, return_indices=True)
        np.testing.assert_array_equal(y, win(xs, (2, 2), axis=(2, 3))[:, :, ::2, ::2].max(axis=(-2, -1)))
        g = rng.standard_normal(y.shape)
        expected = np.zeros(xs.size)
        np.add.at(expected, (idx + np.arange(15).reshape(3, 5, 1, 1) * xs[0, 0].size).ravel(), g.ravel())
        np.testing.assert_array_equal(convlab.max_pool2d_backward(g, xs, 2).ravel(), expected)
        np.testing.assert_array_equal(convlab.max_pool2d_backward(g, xs, 2, indices=idx).ravel(), expected)
        expected = np.zeros(xs.shape)
        expected[:, :, :8, :8] = np.repeat(np.repeat(g / 4, 2, axis=2), 2, axis=3)
        np.testing.assert_array_equal(convlab.avg_pool2d_backward(g, xs, 2), expected)
