"""Pooling (section 9.3) against loop oracles written here, finite differences, the first-maximum
rule for ties, translation invariance of max pooling, and the bad-input list."""
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convlab

OPS = {name: {nd: getattr(convlab, f"{name}{nd}d") for nd in (1, 2, 3)}
       for name in ("max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool")}
BWD = {name: {nd: getattr(convlab, f"{name}{nd}d_backward") for nd in (1, 2, 3)} for name in OPS}


@pytest.fixture(params=["all windows at once", "tap by tap"])
def max_path(request, monkeypatch):
    """Max pooling's two ways to its maxima and indices: small inputs copy all their windows at
    once, larger ones pass over the taps (a test's inputs are small, so both are forced)."""
    from convlab.reference import pool

    monkeypatch.setattr(pool, "SMALL_WINDOWS", 1 << 62 if request.param == "all windows at once" else -1)
    return request.param


@pytest.fixture(params=["SciPy's loop", "np.add.at"])
def adds(request, monkeypatch):
    """The backward through indices adds with SciPy's compiled loop, or without it."""
    from convlab.reference import pool

    if request.param == "np.add.at":
        monkeypatch.setattr(pool, "_csr_add", None)
    return request.param


# ----------------------------------------------------------------------------- the oracle

def _chain(shape, deriv):
    """``grad_x(g)`` from ``deriv[(n, c, *j)] = [(input cell i, dY[j]/dV[i]), ...]`` (chain rule)."""

    def backward(g):
        gx = np.zeros(shape)
        for key, pairs in deriv.items():
            for i, dv in pairs:
                gx[key[:2] + i] += g[key] * dv
        return gx

    return backward


def out_len(n, k, s, d, lo, hi, ceil_mode):
    """PyTorch's pooling output size, written out."""
    span = d * (k - 1) + 1
    if ceil_mode:
        out = math.ceil((n + lo + hi - span) / s) + 1
        if (out - 1) * s >= n + lo:  # the last window would start in the high padding
            out -= 1
        return out
    return (n + lo + hi - span) // s + 1


def first_maximum(vals):
    """Index of the first largest value; NaN is the largest (the first NaN wins)."""
    best = 0
    for q in range(1, len(vals)):
        if vals[q] > vals[best] or (np.isnan(vals[q]) and not np.isnan(vals[best])):  # ties: the first
            best = q
    return best


def windows_of(spatial, kernel, stride, dilation, pads, ceil_mode):
    """For every output position j: the list of taps (m, input cell or None when outside the input)
    in row-major order, and the number of taps inside the padded input (n + lo + hi cells)."""
    out = tuple(out_len(n, k, s, d, lo, hi, ceil_mode)
                for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads))
    result = {}
    for j in itertools.product(*map(range, out)):
        taps, in_padded = [], 0
        for m in itertools.product(*map(range, kernel)):
            i = tuple(jj * s + mm * d - lo for jj, mm, s, d, (lo, _) in zip(j, m, stride, dilation, pads))
            inside = all(0 <= ii < n for ii, n in zip(i, spatial))
            taps.append(i if inside else None)
            in_padded += all(-lo <= ii < n + hi for ii, n, (lo, hi) in zip(i, spatial, pads))
        result[j] = (taps, in_padded)
    return out, result


def pool_oracle(x, kind, kernel, stride, pads, dilation=None, ceil_mode=False, count_include_pad=True,
                divisor_override=None, p=2.0):
    """Max / avg / Lp pooling of ``x (N, C, *n)`` by loops. Returns ``y``, the flat plane index of
    each max (max only) and a function from ``grad_y`` to ``grad_x``."""
    nd = x.ndim - 2
    dilation = dilation or (1,) * nd
    spatial = x.shape[2:]
    out, wins = windows_of(spatial, kernel, stride, dilation, pads, ceil_mode)
    lead = list(itertools.product(*map(range, x.shape[:2])))
    y = np.zeros(x.shape[:2] + out)
    idx = np.zeros(x.shape[:2] + out, dtype=np.int64)
    # per output: list of (input cell, d y / d x at that cell)
    deriv = {}
    for nc in lead:
        for j, (taps, in_padded) in wins.items():
            cells = [i for i in taps if i is not None]
            vals = [x[nc + i] for i in cells]
            if kind == "max" and not cells:  # a dilated window wholly in the padding
                y[nc + j], idx[nc + j], deriv[nc + j] = -np.inf, -1, []
            elif kind == "max":
                best = first_maximum(vals)
                y[nc + j] = vals[best]
                idx[nc + j] = np.ravel_multi_index(cells[best], spatial)
                deriv[nc + j] = [(cells[best], 1.0)]
            elif kind == "avg":
                if divisor_override is not None:
                    div = divisor_override
                else:
                    div = in_padded if count_include_pad else len(cells)
                y[nc + j] = sum(vals) / div
                deriv[nc + j] = [(i, 1.0 / div) for i in cells]
            else:  # lp
                s = sum(abs(v) ** p for v in vals)
                y[nc + j] = s ** (1 / p)
                yy = y[nc + j]
                deriv[nc + j] = [(i, 0.0 if yy == 0 or v == 0 else np.sign(v) * abs(v) ** (p - 1) * yy ** (1 - p))
                                 for i, v in zip(cells, vals)]

    return y, idx, _chain(x.shape, deriv)


def adaptive_oracle(x, kind, out):
    """Adaptive max/avg pooling by loops over PyTorch's bins
    ``[floor(i*n/o), ceil((i+1)*n/o))``; returns ``y``, the max's plane index and ``grad_x(g)``."""
    spatial = x.shape[2:]
    bins = [[(i * n // o, -((-(i + 1) * n) // o)) for i in range(o)] for n, o in zip(spatial, out)]
    y = np.zeros(x.shape[:2] + tuple(out))
    idx = np.zeros(y.shape, dtype=np.int64)
    deriv = {}
    for nc in itertools.product(*map(range, x.shape[:2])):
        for j in itertools.product(*map(range, out)):
            cells = list(itertools.product(*(range(*bins[a][j[a]]) for a in range(len(out)))))
            vals = [x[nc + i] for i in cells]
            if kind == "max":
                best = first_maximum(vals)
                y[nc + j], idx[nc + j] = vals[best], np.ravel_multi_index(cells[best], spatial)
                deriv[nc + j] = [(cells[best], 1.0)]
            else:
                y[nc + j] = sum(vals) / len(vals)
                deriv[nc + j] = [(i, 1.0 / len(vals)) for i in cells]

    return y, idx, _chain(x.shape, deriv)


def distinct(shape, seed=0):
    """Values 0.1 apart in random order: no ties, and finite differences never change a winner."""
    rng = np.random.default_rng(seed)
    return (rng.permutation(math.prod(shape)).reshape(shape) * 0.1 - 1.0).astype(np.float64)


# ----------------------------------------------------------------------------- cases

# (x spatial, kernel_size, stride, padding as passed, padding as (lo, hi), dilation, ceil_mode)
CASES = [
    ((7,), 3, None, 0, ((0, 0),), 1, False),
    ((8,), 3, 2, 1, ((1, 1),), 1, False),
    ((8,), 3, 2, 1, ((1, 1),), 1, True),
    ((10,), 2, 3, 1, ((1, 1),), 2, True),
    ((6,), 4, 1, [(2, 1)], ((2, 1),), 1, False),
    ((5, 6), 2, None, 0, ((0, 0),) * 2, 1, False),
    ((5, 6), 2, None, 0, ((0, 0),) * 2, 1, True),
    ((7, 6), (3, 2), (2, 1), (1, 1), ((1, 1),) * 2, 1, True),
    ((7, 7), 3, 2, 1, ((1, 1),) * 2, (2, 1), False),
    ((6, 5), (3, 3), (3, 2), ((1, 0), (0, 1)), ((1, 0), (0, 1)), 1, True),
    ((8, 6), (4, 2), (3, 3), (2, 1), ((2, 2), (1, 1)), 1, True),
    ((4, 5, 4), 2, None, 0, ((0, 0),) * 3, 1, True),
    ((5, 4, 5), (3, 2, 2), (2, 1, 2), (1, 0, 1), ((1, 1), (0, 0), (1, 1)), (1, 2, 1), True),
]
IDS = [f"{len(c[0])}d-n{c[0]}-k{c[1]}-s{c[2]}-p{c[3]}-d{c[5]}-{'ceil' if c[6] else 'floor'}" for c in CASES]


def unpack(case):
    spatial, k, s, padding, pads, d, ceil_mode = case
    nd = len(spatial)
    kernel = (k,) * nd if isinstance(k, int) else k
    stride = kernel if s is None else ((s,) * nd if isinstance(s, int) else s)
    dilation = (d,) * nd if isinstance(d, int) else d
    return nd, spatial, kernel, stride, dilation, pads, ceil_mode, dict(kernel_size=k, stride=s, padding=padding,
                                                                       ceil_mode=ceil_mode)


# ----------------------------------------------------------------------------- max pool

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool_matches_oracle(case, max_path):
    nd, spatial, kernel, stride, dilation, pads, ceil_mode, params = unpack(case)
    x = np.random.default_rng(0).standard_normal((2, 3) + spatial)
    x[0, 0] = np.round(x[0, 0])  # ties in one plane
    y_ref, idx_ref, backward = pool_oracle(x, "max", kernel, stride, pads, dilation, ceil_mode)
    y, idx = OPS["max_pool"][nd](x, dilation=case[5], return_indices=True, **params)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(OPS["max_pool"][nd](x, dilation=case[5], **params), y_ref)
    g = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(BWD["max_pool"][nd](g, x, dilation=case[5], **params), backward(g),
                               rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(BWD["max_pool"][nd](g, x, dilation=case[5], indices=idx, **params), backward(g),
                               rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_backward_adds_at_any_given_indices(dtype, adds):
    """``indices`` need not come from the forward: repeated cells add up, -1 adds nothing,
    a cell outside the window still receives its gradient (a loop oracle)."""
    rng = np.random.default_rng(3)
    x = np.zeros((3, 2, 5, 4), dtype=dtype)
    g = rng.standard_normal((3, 2, 2, 2)).astype(dtype)
    idx = rng.integers(-1, 20, g.shape)
    idx[0, 0] = 7  # one plane sends all four windows to the same cell
    idx[2, 1, 1] = -1
    expected = np.zeros(x.shape)
    for n, c, a, b in itertools.product(*map(range, g.shape)):
        if idx[n, c, a, b] >= 0:
            expected[(n, c) + np.unravel_index(idx[n, c, a, b], (5, 4))] += g[n, c, a, b]
    gx = convlab.max_pool2d_backward(g, x, 2, indices=idx)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, expected, rtol=1e-6, atol=1e-6)
    assert gx[0, 0, 1, 3] == pytest.approx(g[0, 0].sum(), rel=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_backward_adds_what_overlapping_windows_send(dtype, adds):
    """Overlapping windows (3x3, stride 1, padding 1) each send to a random cell of their own,
    and the nine that hold one cell all send to it: every cell adds what it receives (a loop
    oracle), as the forward's indices of overlapping windows need."""
    rng = np.random.default_rng(3)
    x = np.zeros((3, 2, 5, 4), dtype=dtype)
    g = rng.standard_normal((3, 2, 5, 4)).astype(dtype)
    idx = np.empty(g.shape, dtype=np.int64)  # 3x3 windows, stride 1, padding 1: a random cell of each
    for n, c, a, b in itertools.product(*map(range, g.shape)):
        r, q = rng.integers(max(a - 1, 0), min(a + 1, 4) + 1), rng.integers(max(b - 1, 0), min(b + 1, 3) + 1)
        idx[n, c, a, b] = r * 4 + q
    idx[0, 0, 1:4, 1:4] = 2 * 4 + 2  # the nine windows that hold cell (2, 2) all send to it
    expected = np.zeros(x.shape)
    for n, c, a, b in itertools.product(*map(range, g.shape)):
        expected[(n, c) + np.unravel_index(idx[n, c, a, b], (5, 4))] += g[n, c, a, b]
    gx = convlab.max_pool2d_backward(g, x, 3, stride=1, padding=1, indices=idx)
    assert gx.dtype == dtype and gx.shape == x.shape
    np.testing.assert_allclose(gx, expected, rtol=1e-6, atol=1e-6)
    assert gx[0, 0, 2, 2] == pytest.approx(g[0, 0, 1:4, 1:4].sum(), rel=1e-6)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool_backward_refuses_an_index_outside_the_plane(nd):
    """An index outside [-1, cells) is a ValueError naming the window and its plane, in 1-3
    dims, beside a -1 or not (the unsigned largest index finds both); the forward's own
    indices pass."""
    kw = dict(kernel_size=2, stride=2)
    x = np.random.default_rng(4).standard_normal((2, 3) + (6,) * nd)
    y, idx = OPS["max_pool"][nd](x, return_indices=True, **kw)
    g = np.ones(y.shape)
    assert BWD["max_pool"][nd](g, x, indices=idx, **kw).sum() == g.size
    cells = 6 ** nd
    last = (1, 2) + (2,) * nd  # the last window of the last plane
    for bad in (cells, cells + 7, -2, np.iinfo(np.int64).max, np.iinfo(np.int64).min):
        for other in (None, -1):
            wrong = idx.copy()
            wrong[last] = bad
            if other is not None:
                wrong[(1, 2) + (0,) * nd] = other
            with pytest.raises(ValueError, match=rf"indices must lie in \[-1, {cells}\).*window {3 ** nd - 1} "
                                                 rf"of plane 5 holds {bad}$"):
                BWD["max_pool"][nd](g, x, indices=wrong, **kw)
    y, idx = OPS["adaptive_max_pool"][nd](x, 3, return_indices=True)
    idx[(1, 2) + (2,) * nd] = cells
    with pytest.raises(ValueError, match="indices must lie in"):
        BWD["adaptive_max_pool"][nd](np.ones(y.shape), x, 3, indices=idx)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_max_pool_gradcheck(case, max_path):
    nd, spatial, kernel, stride, dilation, pads, ceil_mode, params = unpack(case)
    x = distinct((1, 2) + spatial)
    convlab.gradcheck(OPS["max_pool"][nd], BWD["max_pool"][nd], (x,), dilation=case[5], **params)


def test_max_pool_ties_go_to_the_first_maximum(max_path):
    # One 3x3 window full of equal values: the gradient goes to its first cell.
    x = np.ones((1, 1, 3, 3))
    g = convlab.max_pool2d_backward(np.full((1, 1, 1, 1), 5.0), x, 3)
    expected = np.zeros((3, 3))
    expected[0, 0] = 5.0
    np.testing.assert_array_equal(g[0, 0], expected)
    # Maxima at (0, 2), (1, 0) and (2, 1): row-major order picks (0, 2).
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 0, 2] = x[0, 0, 1, 0] = x[0, 0, 2, 1] = 7.0
    g = convlab.max_pool2d_backward(np.ones((1, 1, 1, 1)), x, 3)
    assert g[0, 0, 0, 2] == 1.0 and g.sum() == 1.0
    assert convlab.max_pool2d(x, 3, return_indices=True)[1].item() == 2
    # Overlapping windows (stride 1) that share a tied pair: each window picks its own first.
    x = np.array([[[1.0, 3.0, 3.0, 3.0, 0.0]]])
    y, idx = convlab.max_pool1d(x, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [3.0, 3.0, 3.0, 3.0])
    np.testing.assert_array_equal(idx[0, 0], [1, 1, 2, 3])
    g = convlab.max_pool1d_backward(np.array([[[1.0, 10.0, 100.0, 1000.0]]]), x, 2, stride=1)
    np.testing.assert_array_equal(g[0, 0], [0.0, 11.0, 100.0, 1000.0, 0.0])
    # 3-d, with dilation: the first maximum in row-major order of the dilated window.
    x = np.zeros((1, 1, 3, 3, 3))
    x[0, 0, 2, 0, 0] = x[0, 0, 0, 2, 2] = 1.0
    g = convlab.max_pool3d_backward(np.ones((1, 1, 1, 1, 1)), x, 2, dilation=2)
    assert g[0, 0, 0, 2, 2] == 1.0 and g.sum() == 1.0


def test_max_pool_padding_never_wins(max_path):
    # Every input is -inf: the padding (-inf too) ties but never wins; the first cell inside does.
    x = np.full((1, 1, 4), -np.inf)
    y, idx = convlab.max_pool1d(x, 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [-np.inf, -np.inf])
    np.testing.assert_array_equal(idx[0, 0], [0, 1])
    g = convlab.max_pool1d_backward(np.ones((1, 1, 2)), x, 3, stride=2, padding=1)
    np.testing.assert_array_equal(g[0, 0], [1.0, 1.0, 0.0, 0.0])
    # A negative input next to the padding beats it.
    x = np.array([[[-5.0, -6.0]]])
    y, idx = convlab.max_pool1d(x, 2, stride=1, padding=1, return_indices=True)
    np.testing.assert_array_equal(y[0, 0], [-5.0, -5.0, -6.0])
    np.testing.assert_array_equal(idx[0, 0], [0, 0, 1])


def test_max_pool_window_with_no_input_cell(max_path):
    # Dilation can put a whole window in the padding (cells -1 and 1 of a 1-cell input):
    # its max is -inf, its index -1, and it passes no gradient.
    x = np.array([[[3.0]]])
    y, idx = convlab.max_pool1d(x, 2, stride=1, padding=1, dilation=2, return_indices=True)
    assert y[0, 0, 0] == -np.inf and idx[0, 0, 0] == -1
    assert convlab.max_pool1d_backward(np.ones((1, 1, 1)), x, 2, stride=1, padding=1, dilation=2)[0, 0, 0] == 0
    # In 2-d and 3-d too (the flat index of the window's first padded cell would be -2, -3),
    # and the index goes back through the backward.
    for nd in (2, 3):
        x = np.full((2, 1) + (1,) * nd, 3.0)
        kw = dict(kernel_size=2, stride=1, padding=1, dilation=2)
        y, idx = OPS["max_pool"][nd](x, return_indices=True, **kw)
        assert (y == -np.inf).all() and (idx == -1).all()
        np.testing.assert_array_equal(BWD["max_pool"][nd](np.ones(y.shape), x, indices=idx, **kw), np.zeros(x.shape))


def test_max_pool_nan_is_the_maximum(max_path):
    x = np.array([[[1.0, np.nan, 2.0, np.nan]]])
    y, idx = convlab.max_pool1d(x, 4, return_indices=True)
    assert np.isnan(y[0, 0, 0]) and idx[0, 0, 0] == 1
    assert np.isnan(convlab.max_pool1d(x, 4)[0, 0, 0])
    np.testing.assert_array_equal(convlab.max_pool1d_backward(np.ones((1, 1, 1)), x, 4)[0, 0], [0, 1, 0, 0])


def test_max_pool_ceil_mode_drops_a_window_starting_in_the_padding():
    # n=5, k=2, s=2, pad 1: floor gives 3 windows; ceil would give a 4th starting at padded cell 6
    # = the high padding, so it is dropped (PyTorch's rule); with n=6 the 4th starts inside the input.
    assert convlab.max_pool1d(np.zeros((1, 1, 5)), 2, 2, padding=1, ceil_mode=True).shape[-1] == 3
    assert convlab.max_pool1d(np.zeros((1, 1, 6)), 2, 2, padding=1, ceil_mode=True).shape[-1] == 4
    assert convlab.max_pool1d(np.zeros((1, 1, 6)), 2, 2, padding=1, ceil_mode=False).shape[-1] == 4
    y = convlab.max_pool1d(np.arange(5.0).reshape(1, 1, 5), 2, ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [1.0, 3.0, 4.0])  # the partial last window holds one cell


# ----------------------------------------------------------------------------- average pool

AVG_CASES = [c for c in CASES if c[5] == 1]


@pytest.mark.parametrize("divisor_override", [None, 3])
@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", AVG_CASES, ids=[i for i, c in zip(IDS, CASES) if c[5] == 1])
def test_avg_pool_matches_oracle(case, count_include_pad, divisor_override):
    nd, spatial, kernel, stride, dilation, pads, ceil_mode, params = unpack(case)
    x = np.random.default_rng(0).standard_normal((2, 3) + spatial)
    opts = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    y_ref, _, backward = pool_oracle(x, "avg", kernel, stride, pads, None, ceil_mode, **opts)
    y = OPS["avg_pool"][nd](x, **params, **opts)
    np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-14)
    g = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(BWD["avg_pool"][nd](g, x, **params, **opts), backward(g), rtol=1e-13, atol=1e-14)
    convlab.gradcheck(OPS["avg_pool"][nd], BWD["avg_pool"][nd], (x[:1, :2],), **params, **opts)


def test_avg_pool_divisor_with_ceil_mode():
    # n=6, k=3, s=2, pad 1, ceil: windows start at padded cells 0, 2, 4, 6 (padded size 8; the
    # last window reads cell 6 of the input, the high padding and one cell past it).
    # count_include_pad counts the cells up to the end of the padding: 3, 3, 3, 2; without the
    # padding: 2, 3, 3, 1 (PyTorch: [1, 3, 5, 3] and [1.5, 3, 5, 6]).
    x = np.arange(1.0, 7.0).reshape(1, 1, 6)
    y = convlab.avg_pool1d(x, 3, 2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(y[0, 0], [(1 + 2) / 3, (2 + 3 + 4) / 3, (4 + 5 + 6) / 3, 6 / 2])
    y = convlab.avg_pool1d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False)
    np.testing.assert_allclose(y[0, 0], [(1 + 2) / 2, (2 + 3 + 4) / 3, (4 + 5 + 6) / 3, 6 / 1])
    y = convlab.avg_pool1d(x, 3, 2, padding=1, ceil_mode=True, divisor_override=2)
    np.testing.assert_allclose(y[0, 0], [(1 + 2) / 2, (2 + 3 + 4) / 2, (4 + 5 + 6) / 2, 6 / 2])
    g = convlab.avg_pool1d_backward(np.ones((1, 1, 4)), x, 3, 2, padding=1, ceil_mode=True)
    np.testing.assert_allclose(g[0, 0], [1 / 3, 2 / 3, 1 / 3, 2 / 3, 1 / 3, 1 / 3 + 1 / 2])


# ----------------------------------------------------------------------------- Lp pool

LP_CASES = AVG_CASES[1::2]  # padding, (lo, hi) pairs, ceil_mode, 1-3 dims


@pytest.mark.parametrize("p", [2, 1, 3, 1.5, 0.5])
@pytest.mark.parametrize("case", LP_CASES, ids=[i for i, c in zip(IDS, CASES) if c[5] == 1][1::2])
def test_lp_pool_matches_oracle(case, p):
    nd, spatial, kernel, stride, dilation, pads, ceil_mode, params = unpack(case)
    x = distinct((1, 2) + spatial) + 0.05  # no zeros: |x|^(p-1) stays finite for p < 1
    y_ref, _, backward = pool_oracle(x, "lp", kernel, stride, pads, None, ceil_mode, p=p)
    y = OPS["lp_pool"][nd](x, p, **params)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12)
    g = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(BWD["lp_pool"][nd](g, x, p, **params), backward(g), rtol=1e-11, atol=1e-12)
    convlab.gradcheck(OPS["lp_pool"][nd], BWD["lp_pool"][nd], (x,), p=p, rtol=1e-4, **params)


def test_lp_pool_special_cases():
    x = np.array([[[3.0, -4.0, 0.0, 0.0, -1.0, 1.0]]])
    np.testing.assert_allclose(convlab.lp_pool1d(x, 2, 2)[0, 0], [5.0, 0.0, math.sqrt(2)])
    np.testing.assert_allclose(convlab.lp_pool1d(x, 1, 2)[0, 0], [7.0, 0.0, 2.0])
    # p = inf is the max of |x|; its gradient follows the first largest |x| with the sign of x.
    np.testing.assert_allclose(convlab.lp_pool1d(x, math.inf, 2)[0, 0], [4.0, 0.0, 1.0])
    g = convlab.lp_pool1d_backward(np.ones((1, 1, 3)), x, math.inf, 2)
    np.testing.assert_array_equal(g[0, 0], [0.0, -1.0, 0.0, 0.0, -1.0, 0.0])
    # a non-finite cell that no window reads (the last of 7 under windows of 2) gets 0, not 0 * inf
    for p in (2, 3):
        g = convlab.lp_pool1d_backward(np.ones((1, 1, 3)), np.append(x, np.inf)[None, None], p, 2)
        assert g[0, 0, -1] == 0 and np.all(np.isfinite(g))
    # an all-zero window has gradient 0 (not NaN) for every p
    for p in (0.5, 1, 2, 3, math.inf):
        g = convlab.lp_pool1d_backward(np.ones((1, 1, 3)), x, p, 2)
        assert np.all(np.isfinite(g)) and np.all(g[0, 0, 2:4] == 0)
    # L2 pooling is the Euclidean norm of each window, padding included as zeros
    y = convlab.lp_pool2d(np.ones((1, 1, 4, 4)), 2, 3, stride=2, padding=1)
    np.testing.assert_allclose(y[0, 0], [[2.0, math.sqrt(6)], [math.sqrt(6), 3.0]])
    xp = distinct((1, 1, 4, 4)) + 1.2  # positive: lp_pool with p = inf equals max_pool
    np.testing.assert_array_equal(convlab.lp_pool2d(xp, math.inf, 2), convlab.max_pool2d(xp, 2))


# ----------------------------------------------------------------------------- maxout

def maxout_oracle(x, pieces):
    y = np.zeros((x.shape[0], x.shape[1] // pieces) + x.shape[2:])
    gx_index = {}
    for idx in np.ndindex(*y.shape):
        n, c, sp = idx[0], idx[1], idx[2:]
        vals = [x[(n, c * pieces + q) + sp] for q in range(pieces)]
        best = 0
        for q in range(1, pieces):
            if vals[q] > vals[best]:
                best = q
        y[idx] = vals[best]
        gx_index[idx] = (n, c * pieces + best) + sp
    return y, gx_index


@pytest.mark.parametrize("shape,pieces", [((3, 6), 2), ((2, 6, 5), 3), ((2, 4, 3, 3), 4), ((1, 6, 2, 3, 2), 2),
                                          ((2, 5, 4), 1)])
def test_maxout(shape, pieces):
    x = np.round(np.random.default_rng(0).standard_normal(shape) * 2) / 2  # plenty of ties
    y_ref, where = maxout_oracle(x, pieces)
    y = convlab.maxout(x, pieces)
    np.testing.assert_array_equal(y, y_ref)
    g = np.random.default_rng(1).standard_normal(y.shape)
    expected = np.zeros(x.shape)
    for idx, cell in where.items():
        expected[cell] += g[idx]
    np.testing.assert_array_equal(convlab.maxout_backward(g, x, pieces), expected)
    convlab.gradcheck(convlab.maxout, convlab.maxout_backward, (distinct(shape),), pieces=pieces)


def test_maxout_ties_go_to_the_first_piece():
    x = np.array([[2.0, 2.0, 1.0, 5.0, 5.0, 5.0]])  # (N=1, C=6), pieces=3
    np.testing.assert_array_equal(convlab.maxout(x, 3), [[2.0, 5.0]])
    np.testing.assert_array_equal(convlab.maxout_backward(np.array([[1.0, 2.0]]), x, 3),
                                  [[1.0, 0.0, 0.0, 2.0, 0.0, 0.0]])


# ----------------------------------------------------------------------------- adaptive

ADAPTIVE = [((7,), (3,)), ((5,), (5,)), ((3,), (5,)), ((10,), (4,)), ((6, 5), (4, 3)), ((5, 7), (5, 2)),
            ((3, 4), (5, 6)), ((4, 5, 6), (2, 3, 4)), ((3, 2, 5), (3, 4, 1)),
            ((8, 12), (4, 3)), ((9, 6, 4), (3, 1, 4))]  # uniform bins: the plain pools serve them


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("spatial,out", ADAPTIVE, ids=[f"{a}->{b}" for a, b in ADAPTIVE])
def test_adaptive_pool_matches_oracle(spatial, out, kind):
    nd = len(spatial)
    x = np.random.default_rng(0).standard_normal((2, 3) + spatial)
    x[0, 0] = np.round(x[0, 0])
    y_ref, idx_ref, backward = adaptive_oracle(x, kind, out)
    name = f"adaptive_{kind}_pool"
    if kind == "max":
        y, idx = OPS[name][nd](x, out, return_indices=True)
        np.testing.assert_array_equal(idx, idx_ref)
        np.testing.assert_array_equal(y, y_ref)
    else:
        y = OPS[name][nd](x, out)
        np.testing.assert_allclose(y, y_ref, rtol=1e-13, atol=1e-15)
    g = np.random.default_rng(1).standard_normal(y.shape)
    np.testing.assert_allclose(BWD[name][nd](g, x, out), backward(g), rtol=1e-13, atol=1e-15)
    xd = distinct((1, 2) + spatial)
    convlab.gradcheck(OPS[name][nd], BWD[name][nd], (xd,), output_size=out)


def test_adaptive_output_size_forms():
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 4))
    np.testing.assert_array_equal(convlab.adaptive_max_pool2d(x, 2), convlab.adaptive_max_pool2d(x, (2, 2)))
    np.testing.assert_array_equal(convlab.adaptive_avg_pool2d(x, (3, None)), convlab.adaptive_avg_pool2d(x, (3, 4)))
    # a size that divides the input is the plain pool with kernel = stride = n / o
    np.testing.assert_array_equal(convlab.adaptive_max_pool2d(x, (3, 2)), convlab.max_pool2d(x, 2))
    np.testing.assert_allclose(convlab.adaptive_avg_pool2d(x, (2, 1)), convlab.avg_pool2d(x, (3, 4)), rtol=1e-14)
    # global average pooling
    np.testing.assert_allclose(convlab.adaptive_avg_pool2d(x, 1)[..., 0, 0], x.mean(axis=(2, 3)), rtol=1e-14)


# ----------------------------------------------------------------------------- dtypes, layouts

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_are_kept(dtype, max_path):
    x = np.random.default_rng(0).standard_normal((2, 4, 7, 6)).astype(dtype)
    x64 = x.astype(np.float64)
    tol = 1e-6 if dtype == np.float32 else 1e-14
    calls = [
        (convlab.max_pool2d, convlab.max_pool2d_backward, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        (convlab.avg_pool2d, convlab.avg_pool2d_backward, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
        (convlab.lp_pool2d, convlab.lp_pool2d_backward, dict(p=2, kernel_size=2)),
        (convlab.adaptive_max_pool2d, convlab.adaptive_max_pool2d_backward, dict(output_size=(3, 4))),
        (convlab.adaptive_avg_pool2d, convlab.adaptive_avg_pool2d_backward, dict(output_size=(3, 4))),
        (convlab.maxout, convlab.maxout_backward, dict(pieces=2)),
    ]
    for fwd, bwd, params in calls:
        y = fwd(x, **params)
        assert y.dtype == dtype, fwd.__name__
        np.testing.assert_allclose(y, fwd(x64, **params), rtol=tol * 10, atol=tol * 10)
        g = np.ones_like(y)
        gx = bwd(g, x, **params)
        assert gx.dtype == dtype and gx.shape == x.shape, fwd.__name__
        np.testing.assert_allclose(gx, bwd(g.astype(np.float64), x64, **params), rtol=tol * 10, atol=tol * 10)


def test_noncontiguous_and_negative_stride_views(max_path):
    base = np.random.default_rng(0).standard_normal((2, 3, 9, 8))
    x = base[:, ::-1, 1::2, ::-1]
    xc = np.ascontiguousarray(x)
    for fwd in (lambda a: convlab.max_pool2d(a, 2, 1, padding=1), lambda a: convlab.avg_pool2d(a, 3, 2, 1),
                lambda a: convlab.max_pool2d(a, 2, return_indices=True),
                lambda a: convlab.max_pool2d(a, 3, 2, padding=1, return_indices=True),
                lambda a: convlab.lp_pool2d(a, 3, 2), lambda a: convlab.adaptive_max_pool2d(a, (2, 3)),
                lambda a: convlab.maxout(a[:, :2], 2)):
        np.testing.assert_array_equal(fwd(x), fwd(xc))


# ----------------------------------------------------------------------------- translation invariance

@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_max_pool_is_invariant_to_small_shifts_where_the_max_stays_inside(data):
    """Section 9.3: translating the input by less than the window changes a pooled output only
    if the window's maximum enters or leaves it. Here every output j whose two windows (before
    and after the shift) have the maximum of their union inside their intersection is unchanged."""
    k = data.draw(st.tuples(st.integers(2, 4), st.integers(2, 4)), label="kernel")
    s = data.draw(st.tuples(st.integers(1, 3), st.integers(1, 3)), label="stride")
    shift = data.draw(st.tuples(st.integers(-k[0] + 1, k[0] - 1), st.integers(-k[1] + 1, k[1] - 1)), label="shift")
    size = data.draw(st.tuples(st.integers(k[0], 9), st.integers(k[1], 9)), label="size")
    seed = data.draw(st.integers(0, 2**31), label="seed")
    rng = np.random.default_rng(seed)
    big = rng.integers(-3, 4, size=(1, 1, size[0] + 6, size[1] + 6)).astype(np.float64)  # ties too
    a0, a1 = 3, 3  # crop origin; the shifted crop starts at (3 + shift)
    x = big[:, :, a0:a0 + size[0], a1:a1 + size[1]]
    x_shift = big[:, :, a0 + shift[0]:a0 + shift[0] + size[0], a1 + shift[1]:a1 + shift[1] + size[1]]
    y, y_shift = convlab.max_pool2d(x, k, s), convlab.max_pool2d(x_shift, k, s)
    assert y.shape == y_shift.shape
    for j0, j1 in np.ndindex(*y.shape[2:]):
        r0, r1 = a0 + j0 * s[0], a1 + j1 * s[1]  # the window before the shift, in `big`
        win = big[0, 0, r0:r0 + k[0], r1:r1 + k[1]]
        win_s = big[0, 0, r0 + shift[0]:r0 + shift[0] + k[0], r1 + shift[1]:r1 + shift[1] + k[1]]
        lo0, lo1 = r0 + max(shift[0], 0), r1 + max(shift[1], 0)
        inter = big[0, 0, lo0:r0 + min(shift[0], 0) + k[0], lo1:r1 + min(shift[1], 0) + k[1]]
        if inter.max() >= max(win.max(), win_s.max()):
            assert y[0, 0, j0, j1] == y_shift[0, 0, j0, j1]


def test_max_pool_shift_by_one_changes_few_outputs():
    """Fig. 9.8: shift a detector signal right by one; every input changes, few pooled outputs do."""
    detector = np.array([0.1, 1.0, 0.2, 0.1, 0.0, 0.1, 0.9, 0.3, 0.1, 0.2])
    shifted = np.concatenate([[0.3], detector[:-1]])
    y = convlab.max_pool1d(detector.reshape(1, 1, -1), 3, stride=1)[0, 0]
    y_shifted = convlab.max_pool1d(shifted.reshape(1, 1, -1), 3, stride=1)[0, 0]
    assert np.all(detector != shifted)
    assert np.count_nonzero(y != y_shifted) <= len(y) // 2


# ----------------------------------------------------------------------------- bad input

def test_bad_input():
    x = np.zeros((2, 4, 6, 6))
    with pytest.raises(ValueError, match="kernel_size"):
        convlab.max_pool2d(x, 0)
    with pytest.raises(ValueError, match="kernel_size"):
        convlab.avg_pool2d(x, (3, 0))
    with pytest.raises(ValueError, match="half"):
        convlab.max_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="half"):
        convlab.avg_pool1d(x[..., 0], 2, padding=[(0, 2)])
    with pytest.raises(ValueError, match="half"):
        convlab.lp_pool2d(x, 2, 2, padding=2)
    with pytest.raises(ValueError, match="dims"):
        convlab.max_pool2d(x[0], 2)
    with pytest.raises(ValueError, match="dims"):
        convlab.avg_pool3d(x, 2)
    with pytest.raises(ValueError, match="dims"):
        convlab.adaptive_max_pool1d(x, 2)
    with pytest.raises(ValueError, match="kernel larger"):
        convlab.max_pool2d(x, 7)
    with pytest.raises(ValueError, match="stride"):
        convlab.max_pool2d(x, 2, stride=0)
    with pytest.raises(ValueError, match="p must be > 0"):
        convlab.lp_pool2d(x, 0, 2)
    with pytest.raises(ValueError, match="p must be > 0"):
        convlab.lp_pool2d(x, -2, 2)
    with pytest.raises(ValueError, match="p must be > 0"):
        convlab.lp_pool2d_backward(np.zeros((2, 4, 3, 3)), x, float("nan"), 2)
    with pytest.raises(TypeError, match="p must be a real number"):
        convlab.lp_pool2d(x, "2", 2)
    with pytest.raises(ValueError, match="pieces=3 must divide"):
        convlab.maxout(x, 3)
    with pytest.raises(ValueError, match="pieces must be >= 1"):
        convlab.maxout(x, 0)
    with pytest.raises(ValueError, match="dims"):
        convlab.maxout(x[0, 0, 0], 2)
    with pytest.raises(ValueError, match="output_size"):
        convlab.adaptive_avg_pool2d(x, (0, 2))
    with pytest.raises(ValueError, match="output_size"):
        convlab.adaptive_avg_pool2d(x, (2, 2, 2))
    with pytest.raises(ValueError, match="divisor_override"):
        convlab.avg_pool2d(x, 2, divisor_override=0)
    with pytest.raises(TypeError, match="return_indices"):
        convlab.max_pool2d(x, 2, return_indices=1)
    with pytest.raises(TypeError, match="ceil_mode"):
        convlab.avg_pool2d(x, 2, ceil_mode="yes")
    with pytest.raises(ValueError, match="padding"):
        convlab.max_pool2d(x, 2, padding="same")
    for op, args in [(convlab.max_pool2d, (2,)), (convlab.avg_pool2d, (2,)), (convlab.lp_pool2d, (2, 2)),
                     (convlab.maxout, (2,)), (convlab.adaptive_max_pool2d, (2,)), (convlab.adaptive_avg_pool2d, (2,))]:
        with pytest.raises(TypeError, match="NumPy or CuPy"):
            op(x.tolist(), *args)
        with pytest.raises(TypeError, match="float32 or float64"):
            op(x.astype(np.int32), *args)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        convlab.max_pool2d_backward(np.zeros((2, 4, 2, 2)), x, 2)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        convlab.maxout_backward(np.zeros((2, 4, 6, 6)), x, 2)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        convlab.adaptive_avg_pool2d_backward(np.zeros((2, 4, 2, 2)), x, 3)
    with pytest.raises(TypeError, match="dtype"):
        convlab.avg_pool2d_backward(np.zeros((2, 4, 3, 3), np.float32), x, 2)


# ----------------------------------------------------------------------------- convlab bench

def test_pool_bench_rows_check_against_reference():
    import io

    from convlab.cli import run_pool_bench

    out = io.StringIO()
    rows = run_pool_bench(shape=(2, 4, 15, 14), repeat=1, out=out)
    ours = [r for r in rows if r["impl"] == "convlab"]
    assert {r["direction"] for r in ours} == {"forward", "backward"} and len(ours) == 12
    assert all(r["error"] < 1e-5 and r["seconds"] > 0 and r["gbps"] > 0 for r in rows)
    assert "max_pool2d 3x3/2" in out.getvalue()
