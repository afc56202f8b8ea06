"""algorithm="winograd": the transforms built from interpolation points against the correlation
they compute and against Lavin and Gray's matrices; every tile size, F(2, 3), F(4, 3) and F(6, 3),
against the loop oracle; its rejection messages and its measured float32 error bounds (the default
tile against the loop oracle, PyTorch and finite differences: test_conv_matrix.py)."""
import math
from fractions import Fraction

import numpy as np
import pytest
from oracles import args_of, assert_close, naive_all, operands

import convlab
from convlab import _parallel
from convlab._params import conv_shape_args
from convlab.reference import direct, winograd

CASES = [
    ("1d", (2, 3, 11), (4, 3, 3), dict()),
    ("1d-same-g2", (1, 4, 10), (6, 2, 3), dict(groups=2, padding="same")),
    ("2d", (2, 3, 9, 7), (4, 3, 3, 3), dict()),
    ("2d-pairs", (1, 2, 10, 13), (3, 2, 3, 3), dict(padding=((2, 0), (1, 3)))),
    ("2d-full-g3", (2, 6, 5, 6), (3, 2, 3, 3), dict(groups=3, padding="full")),
    ("2d-depthwise", (1, 4, 6, 6), (4, 1, 3, 3), dict(groups=4, padding=1)),
    ("2d-one-tile", (1, 2, 3, 3), (2, 2, 3, 3), dict()),
    ("3d", (1, 2, 6, 5, 7), (3, 2, 3, 3, 3), dict(padding=1)),
]
IDS = [c[0] for c in CASES]
TILES = [2, 4, 6]

# Lavin and Gray's F(2, 3) and F(4, 3) (B^T, G, A^T), as printed in "Fast Algorithms for
# Convolutional Neural Networks" (2016).
PUBLISHED = {
    2: ([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]]),
    4: ([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
         [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]),
}


@pytest.mark.parametrize("m", TILES)
def test_transforms_compute_the_correlation(m):
    """y = A^T [ (G g) . (B^T d) ] is y_i = sum_j g_j d_(i+j) for any d and g (float64 against
    NumPy's correlate), and only G holds constants that binary floating point rounds (B^T and
    A^T hold small dyadic fractions)."""
    bt, g, at = winograd.transforms(winograd.POINTS[m])
    assert bt.shape == (m + 2, m + 2) and g.shape == (m + 2, 3) and at.shape == (m, m + 2)
    rng = np.random.default_rng(m)
    for _ in range(5):
        d, k = rng.standard_normal(m + 2), rng.standard_normal(3)
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), np.correlate(d, k, "valid"), rtol=0, atol=1e-13)
    # Every float is a dyadic fraction; a rounded one (1/6) has a denominator near 2^55.
    assert max(Fraction(v).denominator for v in np.concatenate([bt.ravel(), at.ravel()])) <= 32
    assert (max(Fraction(v).denominator for v in g.ravel()) > 2 ** 40) == (m > 2)


def test_transforms_need_distinct_points():
    with pytest.raises(ValueError, match=r"points must be at least 2 distinct finite numbers, got \(0, 1, 1\)"):
        winograd.transforms((0, 1, 1))


@pytest.mark.parametrize("m", sorted(PUBLISHED))
def test_transforms_are_the_published_ones_up_to_scaling(m):
    """Each point's row of B^T, row of G and column of A^T equal the published ones times
    factors b, c, a with a b c = 1 (F(4, 3): all 1; F(2, 3): the signs of 0 and infinity)."""
    built = winograd.TRANSFORMS[m]
    pub = [np.array(t, dtype=float) for t in PUBLISHED[m]]
    factors = []
    for ours, theirs in zip((built[0], built[1], built[2].T), (pub[0], pub[1], pub[2].T)):  # one row per point
        assert ours.shape == theirs.shape
        f = np.array([o[np.argmax(np.abs(t))] / t[np.argmax(np.abs(t))] for o, t in zip(ours, theirs)])
        np.testing.assert_allclose(ours, f[:, None] * theirs, rtol=0, atol=1e-15)
        factors.append(f)
    np.testing.assert_allclose(np.prod(factors, axis=0), 1.0, rtol=1e-15)
    if m == 4:
        for ours, theirs in zip(built, pub):
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,x_shape,w_shape,params", CASES, ids=IDS)
def test_winograd_matches_loop_oracle(name, x_shape, w_shape, params, dtype, tile):
    x, w = operands(x_shape, w_shape, dtype)
    args = args_of(x, w, params)
    y = winograd.forward(x, w, args, tile=tile)
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    ref_y, ref_gx, ref_gw = naive_all(x, w, gy, params)
    red = math.prod(w_shape[1:]) * 10  # the transforms' constants grow the float32 error
    assert_close(y, ref_y, dtype, red)
    assert_close(winograd.grad_input(gy, w, args, tile=tile), ref_gx, dtype, red)
    assert_close(winograd.grad_weight(gy, x, args), ref_gw, dtype, math.prod(y.shape) / y.shape[1])


def test_winograd_workspace_chunks_agree():
    x, w = operands((5, 3, 9, 9), (4, 3, 3, 3))
    whole = convlab.conv2d(x, w, padding=1, algorithm="winograd")
    old = convlab.set_workspace_limit(1)  # one sample per chunk
    try:
        np.testing.assert_array_equal(convlab.conv2d(x, w, padding=1, algorithm="winograd"), whole)
    finally:
        convlab.set_workspace_limit(old)


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("x_shape,limit", [((2, 3, 13, 11), None), ((1, 2, 102, 96), None), ((3, 2, 40, 40), 1)],
                         ids=["channel-chunks", "tile-row-chunks", "one-row-chunks"])
def test_winograd_chunk_plans_match_direct(monkeypatch, x_shape, limit, tile):
    """Each way of cutting the work (output channels of all tiles, rows of tiles, one tile row
    and one sample at a time under a tiny workspace limit) against the float64 direct sums,
    on two workers whatever the machine (the plan depends on their number)."""
    monkeypatch.setattr(_parallel, "workers", lambda: 2)
    x, w = operands(x_shape, (8, x_shape[1], 3, 3))
    args = args_of(x, w, dict(padding=1))
    if x_shape == (2, 3, 13, 11) and tile == 4:  # few tiles: the chunks split the output channels
        assert {c[4:] for c in winograd._plan(args, tile, 8, x_shape[0])} != {(0, 8)}
    gy = np.random.default_rng(2).standard_normal((x_shape[0], 8) + x_shape[2:])
    old = convlab.set_workspace_limit(limit) if limit else None
    try:
        y, gx = winograd.forward(x, w, args, tile=tile), winograd.grad_input(gy, w, args, tile=tile)
    finally:
        if limit:
            convlab.set_workspace_limit(old)
    assert_close(y, direct.forward(x, w, args), np.float64)
    assert_close(gx, direct.grad_input(gy, w, args), np.float64)


@pytest.mark.parametrize("kwargs,match", [
    (dict(w=np.zeros((2, 2, 5, 5))), r"F\(m, 3\) only: it needs a 3-tap kernel on every axis, got kernel \(5, 5\)"),
    (dict(w=np.zeros((2, 2, 3, 1))), r"got kernel \(3, 1\)"),
    (dict(stride=2), r"needs stride 1 .* got stride \(2, 2\)"),
    (dict(stride=(1, 3)), r"got stride \(1, 3\)"),
    (dict(dilation=(2, 1)), r"needs dilation 1, got dilation \(2, 1\)"),
])
def test_winograd_rejects_what_it_cannot_compute(kwargs, match):
    args = dict(x=np.zeros((1, 2, 12, 12)), w=np.zeros((2, 2, 3, 3)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        convlab.conv2d(algorithm="winograd", **args)
    with pytest.raises(ValueError, match=match):
        y = convlab.conv2d(args["x"], args["w"], **{k: v for k, v in kwargs.items() if k != "w"})
        convlab.conv2d_backward(np.zeros_like(y), algorithm="winograd", **args)


@pytest.mark.parametrize("tile", [3, 8, "4", 4.0, True])
def test_winograd_tile_must_be_two_four_or_six(tile):
    x, w = operands((1, 1, 8, 8), (1, 1, 3, 3))
    args = args_of(x, w, {})
    for run in (lambda: winograd.forward(x, w, args, tile=tile), lambda: winograd.grad_input(x, w, args, tile=tile),
                lambda: winograd.prepare(x, w, args, tile=tile)):
        with pytest.raises(ValueError, match=r"tile must be one of \(2, 4, 6\) .* got " + repr(tile)):
            run()


def test_tile_rule():
    """F(4, 3) where every worker gets MIN_TILES of its tiles, else F(2, 3); F(2, 3) in 3-D."""
    need = winograd.MIN_TILES * _parallel.workers()
    for nd, n, tile in [(1, 4 * need, 4), (1, 4 * need - 4, 2), (2, 4 * math.isqrt(need) + 4, 4), (2, 8, 2),
                        (3, 64, 2)]:
        args = conv_shape_args((1, 1) + (n,) * nd, (1, 1) + (3,) * nd, 1, 1, 1, 1, nd)
        assert winograd.tile_size(args) == tile, (nd, n)


# The float32 error bounds documented in docs/algorithms.md (largest error relative to the
# largest output, 32 channels, against float64): F(4, 3) and F(6, 3) trade accuracy for fewer
# products.
BOUNDS = {(1, 2): 1e-6, (1, 4): 5e-6, (1, 6): 5e-6,
          (2, 2): 1e-6, (2, 4): 2e-5, (2, 6): 2e-5,
          (3, 2): 2e-6, (3, 4): 1e-4, (3, 6): 2e-4}


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_winograd_float32_error_within_documented_bounds(nd):
    """Forward and input gradient, each against the float64 direct sums."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 32) + ((256,), (24, 24), (10, 10, 10))[nd - 1])
    w = rng.standard_normal((8, 32) + (3,) * nd) / math.sqrt(32 * 3 ** nd)
    args = args_of(x, w, dict(padding=1))
    ref = direct.forward(x, w, args)
    gy = rng.standard_normal(ref.shape)
    refs = (ref, direct.grad_input(gy, w, args))
    x32, w32, g32 = x.astype(np.float32), w.astype(np.float32), gy.astype(np.float32)
    for p, r in enumerate(refs):
        err = {}
        for m in TILES:
            t = winograd.Tiles(m)
            got = (t.forward(x32, w32, args), t.grad_input(g32, w32, args))[p]
            err[m] = float(np.abs(got - r).max() / np.abs(r).max())
        assert all(err[m] < BOUNDS[nd, m] for m in TILES), (p, err)
        assert err[2] < err[4] and err[2] < err[6], (p, err)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_winograd_nonfinite_input_stays_inside_its_windows(bad):
    x, w = operands((1, 2, 12, 12), (2, 2, 3, 3))
    x[0, 0, 6, 5] = bad
    y = convlab.conv2d(x, w, padding=1, algorithm="winograd")
    touched = np.zeros((12, 12), bool)
    touched[5:8, 4:7] = True  # the outputs whose 3x3 windows read cell (6, 5), not its whole 4x4 tile
    assert np.array_equal(~np.isfinite(y[0, 0]), touched)
    np.testing.assert_allclose(y, convlab.conv2d(x, w, padding=1, algorithm="naive"), atol=1e-12)
    gy = np.ones_like(y)
    gy[0, 1, 0, 0] = bad
    with np.errstate(invalid="ignore"):  # inf * 0 in the weight gradient
        gx = convlab.conv2d_backward(gy, x, w, padding=1, algorithm="winograd")[0]
    assert not np.isfinite(gx[0, :, :2, :2]).all() and np.isfinite(gx[0, :, 3:, 3:]).all()

