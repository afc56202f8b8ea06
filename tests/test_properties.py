"""Random shapes and parameters (hypothesis): every algorithm against the loop oracle and the matrix."""
import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from oracles import conv_problems

from convlab import conv1d, conv2d, conv3d, conv_matrix, conv_transpose1d, conv_transpose2d, conv_transpose3d
from convlab._params import parse_padding
from convlab.conv import conv_backward

CONV = {1: conv1d, 2: conv2d, 3: conv3d}
TRANSPOSE = {1: conv_transpose1d, 2: conv_transpose2d, 3: conv_transpose3d}
# derandomize: CI must not fail by chance; each run covers the same 60 cases per test.
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(conv_problems(max_kernel=3), st.sampled_from(["direct", "im2col"]), st.integers(0, 2**31 - 1))
def test_random_conv_matches_oracles(case, algorithm, seed):
    nd, x_shape, w_shape, params = case
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    ref = CONV[nd](x, w, algorithm="naive", **params)
    y = CONV[nd](x, w, algorithm=algorithm, **params)
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)
    m = conv_matrix(x_shape, w, **params)
    np.testing.assert_allclose(m @ x.ravel(), ref.ravel(), rtol=1e-12, atol=1e-12)
    gy = rng.standard_normal(y.shape)
    gx, gw, _ = conv_backward(nd, gy, x, w, algorithm=algorithm, **params)
    np.testing.assert_allclose(gx.ravel(), m.T @ gy.ravel(), rtol=1e-12, atol=1e-12)
    _, gw_ref, _ = conv_backward(nd, gy, x, w, algorithm="naive", **params)
    np.testing.assert_allclose(gw, gw_ref, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(conv_problems(max_kernel=3), st.sampled_from(["direct", "im2col"]), st.integers(0, 2**31 - 1))
def test_random_transpose_is_adjoint(case, algorithm, seed):
    nd, x_shape, w_shape, params = case
    if isinstance(params["padding"], str):  # the transpose takes the pairs the string stands for
        params = dict(params, padding=parse_padding(params["padding"], nd, kernel=w_shape[2:], in_size=x_shape[2:],
                                                    stride=params["stride"], dilation=params["dilation"]))
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(w_shape)  # conv weight (K, C/g, k) is the transpose's (C_in, C_out/g, k)
    x = rng.standard_normal(x_shape)
    y = CONV[nd](x, w, **params)
    v = rng.standard_normal(y.shape)
    try:
        t = TRANSPOSE[nd](v, w, algorithm=algorithm, **params)
    except ValueError as exc:  # padding can exceed what any input needs: output size 0 is refused
        assume("not positive" not in str(exc))
        raise
    # the transpose's output is the smallest input that gives y's size; x may be larger by < stride
    crop = tuple(slice(0, n) for n in t.shape[2:])
    x_c = x[(Ellipsis,) + crop]
    y_c = CONV[nd](np.ascontiguousarray(x_c), w, **params)
    np.testing.assert_allclose(np.vdot(y_c, v), np.vdot(x_c, t), rtol=1e-10, atol=1e-10)
