"""Separable convolution: separable_conv*d against the loop oracle, PyTorch and finite differences;
conv*d(algorithm="separable")'s input gradient by finite differences; the factorisation and its
error message (algorithm="separable" on rank-1 kernels against the loop oracle and PyTorch:
test_conv_matrix.py)."""
import math

import numpy as np
import pytest
from oracles import CASES, CONV, IDS, assert_close, naive_all, torch_conv

import convlab
from convlab.reference import separable


def _factors(w_shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(w_shape[:2] + (k,)).astype(dtype) for k in w_shape[2:]]


def _outer(factors):
    """The full kernel, built independently of the code under test."""
    letters = "pqr"[:len(factors)]
    spec = ",".join(f"kc{a}" for a in letters) + "->kc" + letters
    return np.einsum(spec, *factors)


@pytest.mark.parametrize("name,x_shape,w_shape,params", CASES, ids=IDS)
def test_forward_in_row_chunks_matches_loop_oracle(monkeypatch, name, x_shape, w_shape, params):
    """One output row per chunk (the first spatial axis), the chunks on every core."""
    monkeypatch.setattr(separable, "CACHE_BYTES", 1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal(x_shape)
    factors = _factors(w_shape)
    w = _outer(factors)
    nd = len(x_shape) - 2
    y = getattr(convlab, CONV[nd])(x, w, algorithm="separable", **params)
    assert_close(y, naive_all(x, w, np.zeros_like(y), params)[0], np.float64, math.prod(w_shape[1:]))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,x_shape,w_shape,params", CASES, ids=IDS)
def test_separable_matches_loop_oracle(name, x_shape, w_shape, params, dtype):
    nd = len(x_shape) - 2
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    factors = _factors(w_shape, dtype)
    w = _outer(factors).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    sep = getattr(convlab, "separable_" + CONV[nd])
    y = sep(x, factors, b, **{k: v for k, v in params.items() if k != "groups"})
    gy = rng.standard_normal(y.shape).astype(dtype)
    ref_y, ref_gx, ref_gw = naive_all(x, w, gy, params)
    red = math.prod(w_shape[1:])
    assert_close(y, ref_y + b.reshape((1, -1) + (1,) * nd), dtype, red)
    gx, _, gb = getattr(convlab, "separable_" + CONV[nd] + "_backward")(
        gy, x, factors, b, **{k: v for k, v in params.items() if k != "groups"})
    assert_close(gx, ref_gx, dtype, red)
    assert_close(gb, gy.astype(np.float64).sum(axis=(0,) + tuple(range(2, 2 + nd))), dtype, y.size)


def test_separable_matches_torch():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 9, 8))
    factors = _factors((6, 2, 3, 4))
    params = dict(stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2), groups=2)
    peer = torch_conv(x, _outer(factors), params)
    if peer is None:
        pytest.skip("torch is not installed")
    y = convlab.separable_conv2d(x, factors, stride=(2, 1), padding=((1, 2), (0, 1)), dilation=(1, 2))
    np.testing.assert_allclose(y, peer, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("nd,params", [(1, dict(stride=2, padding=1)),
                                       (2, dict(stride=(2, 1), padding=1, dilation=(1, 2))),
                                       (3, dict(padding=((1, 0), (0, 1), (1, 1)), dilation=(2, 1, 1)))])
def test_separable_backward_gradcheck(nd, params):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4) + (6, 5, 4)[:nd])
    factors = _factors((4, 2) + (3, 2, 2)[:nd], seed=4)
    b = rng.standard_normal(4)
    fwd = getattr(convlab, "separable_" + CONV[nd])
    bwd = getattr(convlab, "separable_" + CONV[nd] + "_backward")

    def forward(x, b, *fs):
        return fwd(x, list(fs), b, **params)

    def backward(gy, x, b, *fs):
        gx, gf, gb = bwd(gy, x, list(fs), b, **params)
        return (gx, gb) + tuple(gf)

    convlab.gradcheck(forward, backward, [x, b] + factors)


def test_conv_separable_input_gradient_gradcheck():
    # Only x is perturbed: a perturbed kernel is no longer separable.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 2, 6, 5))
    w = _outer(_factors((2, 2, 3, 2)))
    kw = dict(algorithm="separable", stride=2, padding=1)
    convlab.gradcheck(lambda x: convlab.conv2d(x, w, **kw), lambda gy, x: convlab.conv2d_backward(gy, x, w, **kw)[0],
                      [x])


def test_factor_recovers_rank_one_kernels():
    for shape in [(3, 2, 5), (3, 2, 4, 3), (2, 2, 3, 4, 2)]:
        w = _outer(_factors(shape, seed=6))
        w[0, 1] = 0.0  # a zero slice is separable too
        factors, residual = separable.factor(w)
        assert residual < 1e-14
        assert [f.shape for f in factors] == [shape[:2] + (k,) for k in shape[2:]]
        np.testing.assert_allclose(_outer(factors), w, atol=1e-13)


def test_not_separable_error_says_by_how_much():
    rng = np.random.default_rng(7)
    w = _outer(_factors((2, 1, 3, 3)))
    w[1, 0] = rng.standard_normal((3, 3))  # one slice of full rank
    s = np.linalg.svd(w[1, 0], compute_uv=False)
    expected = math.sqrt((s[1:] ** 2).sum()) / math.sqrt((s ** 2).sum())
    x = rng.standard_normal((1, 1, 8, 8))
    with pytest.raises(ValueError, match=rf"not separable \(relative residual .*{expected:.3g} > tolerance"):
        convlab.conv2d(x, w, algorithm="separable")
    with pytest.raises(ValueError, match="not separable"):
        convlab.conv2d_backward(np.ones((1, 2, 6, 6)), x, w, algorithm="separable")
    # Within the tolerance is fine: a perturbation of one part in 1e15.
    w[1, 0] = w[0, 0] * 2 + 1e-15 * rng.standard_normal((3, 3))
    convlab.conv2d(x, w, algorithm="separable")


def test_separable_conv_validates_factors():
    x = np.zeros((2, 4, 8, 8))
    f = np.zeros((6, 2, 3))
    assert convlab.separable_conv2d(x, [f, f]).shape == (2, 6, 6, 6)  # groups = 4 / 2 inferred
    with pytest.raises(ValueError, match="factors must hold 2 arrays"):
        convlab.separable_conv2d(x, [f])
    with pytest.raises(TypeError, match="factors must be a list"):
        convlab.separable_conv2d(x, f)
    with pytest.raises(ValueError, match=r"factors must agree on \(K, C/groups\)"):
        convlab.separable_conv2d(x, [f, np.zeros((5, 2, 3))])
    with pytest.raises(ValueError, match="cannot infer groups: C=4"):
        convlab.separable_conv2d(x, [np.zeros((6, 3, 3))] * 2)
    with pytest.raises(ValueError, match="groups=4 must divide the output channels K=6"):
        convlab.separable_conv2d(x, [np.zeros((6, 1, 3))] * 2)
    with pytest.raises(TypeError, match=r"factors\[1\] has dtype float32"):
        convlab.separable_conv2d(x, [f, f.astype(np.float32)])
    with pytest.raises(ValueError, match=r"factors\[0\] must have 3 dims"):
        convlab.separable_conv2d(x, [np.zeros((6, 2)), f])
    with pytest.raises(ValueError, match=r"b must have shape \(6,\)"):
        convlab.separable_conv2d(x, [f, f], np.zeros(3))
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 6, 6, 6\)"):
        convlab.separable_conv2d_backward(np.zeros((2, 6, 5, 5)), x, [f, f])
