"""conv and conv_transpose backward: the matrix transpose, adjointness, finite differences and
PyTorch for the transposed convolution (the convolution's gradients for every algorithm against
finite differences, the loop oracle and PyTorch: test_conv_matrix.py)."""
import numpy as np
import pytest
from oracles import GRAD_CASES, GRAD_IDS, serving, torch_or_none

import convlab
from convlab import _params as P
from convlab import (conv1d, conv1d_backward, conv2d, conv2d_backward, conv3d, conv3d_backward,
                     conv_transpose1d, conv_transpose1d_backward, conv_transpose2d, conv_transpose2d_backward,
                     conv_transpose3d, conv_transpose3d_backward, gradcheck)

CONV = {1: (conv1d, conv1d_backward), 2: (conv2d, conv2d_backward), 3: (conv3d, conv3d_backward)}
TRANSPOSE = {1: (conv_transpose1d, conv_transpose1d_backward), 2: (conv_transpose2d, conv_transpose2d_backward),
             3: (conv_transpose3d, conv_transpose3d_backward)}


@pytest.mark.parametrize("name,x_shape,w_shape,params", GRAD_CASES, ids=GRAD_IDS)
def test_grad_input_is_matrix_transpose(name, x_shape, w_shape, params, algorithm):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    reason = serving(algorithm, x, w, params)
    if reason:
        pytest.skip(reason)
    fwd, bwd = CONV[len(x_shape) - 2]
    gy = rng.standard_normal(fwd(x, w, **params).shape)
    gx, _, gb = bwd(gy, x, w, algorithm=algorithm, **params)
    assert gb is None
    m = convlab.conv_matrix(x_shape, w, **params)
    np.testing.assert_allclose(gx.ravel(), m.T @ gy.ravel(), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_keeps_dtype_and_shapes(dtype):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 9, 8)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    y = conv2d(x, w, b, stride=2, padding=1, groups=2)
    gx, gw, gb = conv2d_backward(np.ones_like(y), x, w, b, stride=2, padding=1, groups=2)
    assert (gx.dtype, gw.dtype, gb.dtype) == (dtype,) * 3
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    np.testing.assert_allclose(gb, np.full(6, y[0, 0].size * 2), rtol=1e-6)


# (nd, x_shape, w_shape (C_in, C_out/groups, *k), params)
TCASES = [
    (1, (2, 2, 5), (2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    (2, (1, 4, 3, 4), (4, 1, 3, 2), dict(stride=(2, 3), padding=((1, 0), (0, 1)), groups=2, dilation=(1, 2))),
    (2, (2, 2, 3, 3), (2, 2, 2, 2), dict(stride=1, dilation=3, output_padding=2)),  # output_padding < dilation
    (3, (1, 2, 2, 3, 2), (2, 2, 2, 2, 3), dict(stride=(2, 1, 2), padding=(0, 1, 1), output_padding=(1, 0, 0))),
]


def _transposed_serving(algorithm, x, w, params):
    nd = x.ndim - 2
    targs = P.conv_transpose_args(x, w, None, params.get("stride", 1), params.get("padding", 0),
                                  params.get("output_padding", 0), params.get("groups", 1), params.get("dilation", 1), nd)
    reason = serving(algorithm, x, w, args=targs)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("nd,x_shape,w_shape,params", TCASES)
def test_transpose_is_adjoint_of_conv(nd, x_shape, w_shape, params, algorithm):
    """<conv(u), v> = <u, conv_transpose(v)> with the same weight and parameters."""
    rng = np.random.default_rng(3)
    v, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    _transposed_serving(algorithm, v, w, params)
    t = TRANSPOSE[nd][0](v, w, algorithm=algorithm, **params)
    u = rng.standard_normal(t.shape)
    conv_params = {k: val for k, val in params.items() if k != "output_padding"}
    cu = CONV[nd][0](u, w, algorithm=algorithm, **conv_params)
    # output_padding can give conv(u) extra trailing outputs that the transpose never produced.
    cu = cu[(Ellipsis,) + tuple(slice(0, n) for n in x_shape[2:])]
    np.testing.assert_allclose(np.vdot(cu, v), np.vdot(u, t), rtol=1e-11)


@pytest.mark.parametrize("nd,x_shape,w_shape,params", TCASES)
def test_transpose_backward_gradcheck(nd, x_shape, w_shape, params, algorithm):
    rng = np.random.default_rng(4)
    groups = params.get("groups", 1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    _transposed_serving(algorithm, x, w, params)
    b = rng.standard_normal(w_shape[1] * groups)
    fwd, bwd = TRANSPOSE[nd]
    assert gradcheck(fwd, bwd, (x, w, b), algorithm=algorithm, **params).passed


@pytest.mark.parametrize("nd,x_shape,w_shape,params", TCASES)
def test_transpose_matches_torch(nd, x_shape, w_shape, params):
    torch = torch_or_none()
    if torch is None:
        pytest.skip("PyTorch is not installed (optional oracle)")
    import torch.nn.functional as F

    pad = params.get("padding", 0)
    if isinstance(pad, tuple) and isinstance(pad[0], tuple):
        pytest.skip("torch's conv_transpose takes symmetric padding only")
    rng = np.random.default_rng(5)
    groups = params.get("groups", 1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * groups)
    fn = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[nd]
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = fn(xt, wt, bt, **params)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    np.testing.assert_allclose(TRANSPOSE[nd][0](x, w, b, **params), yt.detach().numpy(), atol=1e-11)
    for ours, theirs in zip(TRANSPOSE[nd][1](gy, x, w, b, **params), (xt, wt, bt)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=1e-11)


def test_conv_backward_matches_torch():
    torch = torch_or_none()
    if torch is None:
        pytest.skip("PyTorch is not installed (optional oracle)")
    import torch.nn.functional as F

    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 6, 9, 7)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    params = dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1), groups=2)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = F.conv2d(xt, wt, bt, **params)
    gy = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(gy))
    for algorithm in ("direct", "im2col"):
        for ours, theirs in zip(conv2d_backward(gy, x, w, b, algorithm=algorithm, **params), (xt, wt, bt)):
            np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=1e-11)
