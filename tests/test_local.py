"""Locally connected (eq. 9.9) and tiled (eq. 9.10) convolution against loop oracles written here."""
import itertools
import math

import numpy as np
import pytest

import convlab

LOCAL = {1: convlab.local_conv1d, 2: convlab.local_conv2d, 3: convlab.local_conv3d}
LOCAL_BWD = {1: convlab.local_conv1d_backward, 2: convlab.local_conv2d_backward, 3: convlab.local_conv3d_backward}
TILED = {1: convlab.tiled_conv1d, 2: convlab.tiled_conv2d, 3: convlab.tiled_conv3d}
TILED_BWD = {1: convlab.tiled_conv1d_backward, 2: convlab.tiled_conv2d_backward, 3: convlab.tiled_conv3d_backward}
CONV = {1: convlab.conv1d, 2: convlab.conv2d, 3: convlab.conv3d}


# ----------------------------------------------------------------------------- the oracle

def out_len(n, k, s, d, lo, hi):
    return (n + lo + hi - d * (k - 1) - 1) // s + 1


def oracle(x, w, b, stride, pads, dilation, tiles=None):
    """Eq. 9.9 (``tiles=None``: ``w (K, *out, C, *k)``) or eq. 9.10 (``w (K, *tiles, C, *k)``)
    as literal loops; ``pads`` are (lo, hi) per axis. Returns ``y`` and a function giving
    ``(grad_x, grad_w, grad_b)`` for an output gradient, by the same loops."""
    nd = x.ndim - 2
    n_batch, c_in = x.shape[:2]
    k_out = w.shape[0]
    kernel = w.shape[2 + nd:]
    out = tuple(out_len(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi)
                in zip(x.shape[2:], kernel, stride, dilation, pads))

    def products():
        """Every (j, m, i, kernel index) with input cell i in range."""
        for j in itertools.product(*map(range, out)):
            wj = j if tiles is None else tuple(jj % t for jj, t in zip(j, tiles))
            for m in itertools.product(*map(range, kernel)):
                i = tuple(jj * s + mm * d - lo for jj, mm, s, d, (lo, _) in zip(j, m, stride, dilation, pads))
                if all(0 <= ii < n for ii, n in zip(i, x.shape[2:])):
                    yield j, m, i, wj

    y = np.zeros((n_batch, k_out) + out)
    for n, k in itertools.product(range(n_batch), range(k_out)):
        for j in itertools.product(*map(range, out)):
            if b is not None:
                y[(n, k) + j] = b[(k,) + (j if tiles is None else ())]
        for j, m, i, wj in products():
            for c in range(c_in):
                y[(n, k) + j] += x[(n, c) + i] * w[(k,) + wj + (c,) + m]

    def backward(g):
        gx, gw = np.zeros(x.shape), np.zeros(w.shape)
        for n, k in itertools.product(range(n_batch), range(k_out)):
            for j, m, i, wj in products():
                for c in range(c_in):
                    gx[(n, c) + i] += g[(n, k) + j] * w[(k,) + wj + (c,) + m]
                    gw[(k,) + wj + (c,) + m] += g[(n, k) + j] * x[(n, c) + i]
        gb = None
        if b is not None:
            gb = g.sum(axis=0) if tiles is None else g.sum(axis=(0,) + tuple(range(2, 2 + nd)))
        return gx, gw, gb

    return y, backward


# ----------------------------------------------------------------------------- cases

# (x spatial, kernel, stride, dilation, padding as passed, padding as (lo, hi) pairs)
CASES = {
    1: [((7,), (3,), (1,), (1,), 0, ((0, 0),)),
        ((9,), (2,), (2,), (2,), 1, ((1, 1),)),
        ((6,), (3,), (1,), (1,), "same", ((1, 1),)),
        ((5,), (2,), (1,), (1,), "full", ((1, 1),)),
        ((8,), (3,), (3,), (1,), [(2, 0)], ((2, 0),))],
    2: [((5, 4), (3, 2), (1, 1), (1, 1), 0, ((0, 0), (0, 0))),
        ((6, 5), (2, 3), (2, 1), (1, 2), (1, 2), ((1, 1), (2, 2))),
        ((5, 6), (3, 3), (2, 2), (1, 1), "same", ((1, 1), (0, 1))),
        ((4, 4), (2, 2), (1, 1), (1, 1), "full", ((1, 1), (1, 1))),
        ((5, 5), (2, 3), (1, 2), (1, 1), ((0, 1), (2, 0)), ((0, 1), (2, 0))),
        ((4, 5), (1, 2), (1, 1), (1, 1), "valid", ((0, 0), (0, 0)))],
    3: [((4, 3, 4), (2, 2, 3), (1, 1, 1), (1, 1, 1), 0, ((0, 0),) * 3),
        ((5, 4, 3), (2, 1, 2), (2, 1, 1), (1, 1, 2), 1, ((1, 1),) * 3)],
}
ALL_CASES = [(nd,) + case for nd in CASES for case in CASES[nd]]
IDS = [f"{c[0]}d-n{c[1]}-k{c[2]}-s{c[3]}-d{c[4]}-p{c[5]}" for c in ALL_CASES]


def make(nd, spatial, kernel, stride, dilation, pads, tiles=None, batch=2, c_in=2, k_out=3, seed=0,
         dtype=np.float64):
    rng = np.random.default_rng(seed)
    out = tuple(out_len(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads))
    x = rng.standard_normal((batch, c_in) + spatial).astype(dtype)
    w = rng.standard_normal((k_out,) + (out if tiles is None else tiles) + (c_in,) + kernel).astype(dtype)
    b = rng.standard_normal((k_out,) + (out if tiles is None else ())).astype(dtype)
    return x, w, b, out


def tiles_for(out):
    """Tiles that do not divide the output where possible (2 on each axis, capped at the size)."""
    return tuple(min(2, o) for o in out)


# ----------------------------------------------------------------------------- forward and backward

@pytest.mark.parametrize("nd,spatial,kernel,stride,dilation,padding,pads", ALL_CASES, ids=IDS)
def test_local_conv_matches_oracle(nd, spatial, kernel, stride, dilation, padding, pads):
    x, w, b, out = make(nd, spatial, kernel, stride, dilation, pads)
    params = dict(stride=stride, padding=padding, dilation=dilation)
    y_ref, backward = oracle(x, w, b, stride, pads, dilation)
    np.testing.assert_allclose(LOCAL[nd](x, w, b, **params), y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(LOCAL[nd](x, w, **params), y_ref - b[None], rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(y_ref.shape)
    for got, want in zip(LOCAL_BWD[nd](g, x, w, b, **params), backward(g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd,spatial,kernel,stride,dilation,padding,pads", ALL_CASES, ids=IDS)
def test_tiled_conv_matches_oracle(nd, spatial, kernel, stride, dilation, padding, pads):
    out = tuple(out_len(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads))
    tiles = tiles_for(out)
    x, w, b, _ = make(nd, spatial, kernel, stride, dilation, pads, tiles=tiles)
    params = dict(stride=stride, padding=padding, dilation=dilation)
    y_ref, backward = oracle(x, w, b, stride, pads, dilation, tiles=tiles)
    np.testing.assert_allclose(TILED[nd](x, w, b, **params), y_ref, rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(1).standard_normal(y_ref.shape)
    for got, want in zip(TILED_BWD[nd](g, x, w, b, **params), backward(g)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    gx, gw, gb = TILED_BWD[nd](g, x, w, **params)
    assert gb is None and gx.shape == x.shape and gw.shape == w.shape


@pytest.mark.parametrize("nd", [1, 2, 3])
@pytest.mark.parametrize("op", ["local", "tiled"])
def test_gradcheck(nd, op):
    spatial, kernel, stride, dilation, padding, pads = CASES[nd][1]
    out = tuple(out_len(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads))
    tiles = tiles_for(out) if op == "tiled" else None
    x, w, b, _ = make(nd, spatial, kernel, stride, dilation, pads, tiles=tiles, batch=1, c_in=2, k_out=2)
    fwd, bwd = (LOCAL[nd], LOCAL_BWD[nd]) if op == "local" else (TILED[nd], TILED_BWD[nd])
    report = convlab.gradcheck(fwd, bwd, (x, w, b), stride=stride, padding=padding, dilation=dilation)
    assert report.passed


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("op", ["local", "tiled"])
def test_float32_and_float64(dtype, tol, op):
    spatial, kernel, stride, dilation, padding, pads = CASES[2][1]
    out = tuple(out_len(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads))
    tiles = tiles_for(out) if op == "tiled" else None
    x, w, b, _ = make(2, spatial, kernel, stride, dilation, pads, tiles=tiles, c_in=4)
    params = dict(stride=stride, padding=padding, dilation=dilation)
    fwd, bwd = (LOCAL[2], LOCAL_BWD[2]) if op == "local" else (TILED[2], TILED_BWD[2])
    y64 = fwd(x, w, b, **params)
    g = np.random.default_rng(2).standard_normal(y64.shape)
    grads64 = bwd(g, x, w, b, **params)
    cast = [a.astype(dtype) for a in (g, x, w, b)]
    y = fwd(*cast[1:], **params)
    assert y.dtype == dtype
    reduction = 4 * math.prod(kernel)
    np.testing.assert_allclose(y, y64, rtol=tol * reduction, atol=tol * reduction)
    for got, want in zip(bwd(*cast, **params), grads64):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tol * reduction * 4, atol=tol * reduction * 4)


# ----------------------------------------------------------------------------- the tiled limits

@pytest.mark.parametrize("nd,spatial,kernel,stride,dilation,padding,pads", ALL_CASES, ids=IDS)
def test_tiles_of_one_are_conv(nd, spatial, kernel, stride, dilation, padding, pads):
    x, w, b, _ = make(nd, spatial, kernel, stride, dilation, pads, tiles=(1,) * nd)
    w_conv = w.reshape(w.shape[:1] + w.shape[1 + nd:])  # (K, C, *k)
    params = dict(stride=stride, padding=padding, dilation=dilation)
    y = TILED[nd](x, w, b, **params)
    np.testing.assert_allclose(y, CONV[nd](x, w_conv, b, **params), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(3).standard_normal(y.shape)
    gx, gw, gb = TILED_BWD[nd](g, x, w, b, **params)
    cx, cw, cb = getattr(convlab, f"conv{nd}d_backward")(g, x, w_conv, b, **params)
    np.testing.assert_allclose(gx, cx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gw.reshape(cw.shape), cw, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(gb, cb, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("nd,spatial,kernel,stride,dilation,padding,pads", ALL_CASES, ids=IDS)
def test_tiles_of_the_output_size_are_local(nd, spatial, kernel, stride, dilation, padding, pads):
    x, w, b, out = make(nd, spatial, kernel, stride, dilation, pads)  # w (K, *out, C, *k)
    params = dict(stride=stride, padding=padding, dilation=dilation)
    y = TILED[nd](x, w, **params)
    np.testing.assert_allclose(y, LOCAL[nd](x, w, **params), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(4).standard_normal(y.shape)
    for got, want in zip(TILED_BWD[nd](g, x, w, **params)[:2], LOCAL_BWD[nd](g, x, w, **params)[:2]):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_tiles_larger_than_the_output_leave_unused_kernels_untouched():
    x, w, b, out = make(1, (6,), (3,), (2,), (1,), ((0, 0),), tiles=(4,))  # out = 2: kernels 2, 3 unused
    assert out == (2,)
    y = convlab.tiled_conv1d(x, w, stride=2)
    np.testing.assert_allclose(y, convlab.local_conv1d(x, w[:, :2], stride=2), rtol=1e-12)
    _, gw, _ = convlab.tiled_conv1d_backward(np.ones_like(y), x, w, stride=2)
    assert np.all(gw[:, 2:] == 0) and np.any(gw[:, :2] != 0)


def test_local_conv_with_shared_weights_is_conv():
    """Copying one kernel to every position turns eq. 9.9 back into the convolution."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, 7, 6))
    k = rng.standard_normal((4, 3, 3, 2))
    y_conv = convlab.conv2d(x, k, stride=(2, 1), padding=1)
    w = np.broadcast_to(k[:, None, None], (4,) + y_conv.shape[2:] + (3, 3, 2)).copy()
    np.testing.assert_allclose(convlab.local_conv2d(x, w, stride=(2, 1), padding=1), y_conv, rtol=1e-12, atol=1e-12)


def test_noncontiguous_inputs():
    x, w, b, out = make(2, (6, 5), (2, 2), (1, 1), (1, 1), ((0, 0), (0, 0)))
    xt = np.asfortranarray(x)[:, :, ::-1]
    y_ref, _ = oracle(xt, w, b, (1, 1), ((0, 0), (0, 0)), (1, 1))
    np.testing.assert_allclose(convlab.local_conv2d(xt, w, b), y_ref, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------- bad input

def test_bad_input():
    x = np.zeros((2, 3, 6, 6))
    w = np.zeros((4, 4, 4, 3, 3, 3))  # output 4x4 with a 3x3 kernel
    convlab.local_conv2d(x, w)  # the good case
    with pytest.raises(ValueError, match="output size"):
        convlab.local_conv2d(x, np.zeros((4, 5, 4, 3, 3, 3)))  # wrong shape for the output size
    with pytest.raises(ValueError, match="output size"):
        convlab.local_conv2d(x, w, stride=2)
    with pytest.raises(ValueError, match="dims"):
        convlab.local_conv2d(x, np.zeros((4, 3, 3, 3)))  # a conv weight
    with pytest.raises(ValueError, match="dims"):
        convlab.tiled_conv1d(x, np.zeros((4, 1, 3, 3)))  # 2-d input to a 1-d op
    with pytest.raises(ValueError, match="channel"):
        convlab.local_conv2d(x, np.zeros((4, 4, 4, 2, 3, 3)))
    with pytest.raises(ValueError, match=">= 1"):
        convlab.tiled_conv2d(x, np.zeros((4, 1, 1, 3, 0, 3)))  # kernel 0
    with pytest.raises(ValueError, match=">= 1"):
        convlab.tiled_conv2d(x, np.zeros((4, 0, 1, 3, 3, 3)))  # tiles 0
    with pytest.raises(ValueError, match="b must have shape"):
        convlab.local_conv2d(x, w, np.zeros(4))  # local bias is (K, *out)
    with pytest.raises(ValueError, match="b must have shape"):
        convlab.tiled_conv2d(x, np.zeros((4, 2, 2, 3, 3, 3)), np.zeros((4, 4, 4)))
    with pytest.raises(ValueError, match="kernel larger"):
        convlab.tiled_conv2d(x, np.zeros((4, 1, 1, 3, 7, 7)))
    with pytest.raises(ValueError, match="padding"):
        convlab.tiled_conv2d(x, np.zeros((4, 1, 1, 3, 3, 3)), padding="half")
    with pytest.raises(TypeError, match="NumPy or CuPy"):
        convlab.local_conv2d(x.tolist(), w)
    with pytest.raises(TypeError, match="float32 or float64"):
        convlab.local_conv2d(x.astype(np.int64), w)
    with pytest.raises(TypeError, match="dtype"):
        convlab.local_conv2d(x.astype(np.float32), w)
    with pytest.raises(ValueError, match="grad_y must have shape"):
        convlab.local_conv2d_backward(np.zeros((2, 4, 3, 3)), x, w)
    with pytest.raises(ValueError, match="stride"):
        convlab.tiled_conv2d(x, np.zeros((4, 1, 1, 3, 3, 3)), stride=0)
