"""The pad-free tap reads of the pools (``windows.tap_boxes``) against the padded input they
replace: on every geometry, a tap's box holds exactly the windows whose tap reads an input
cell, and those read the cells that ``tap_view`` of the padded input shows."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

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
