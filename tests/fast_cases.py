"""Cases and oracles shared by the tests of the fast algorithms (FFT, separable, Winograd, auto)."""
import numpy as np

from convlab import _params as P
from convlab.reference import naive

CONV = {1: "conv1d", 2: "conv2d", 3: "conv3d"}

# (id, x shape, w shape, params): strides, paddings, dilations, groups, 1-3 spatial dims.
CASES = [
    ("1d", (2, 3, 11), (4, 3, 3), dict()),
    ("1d-s2-p1", (2, 4, 12), (2, 4, 5), dict(stride=2, padding=1)),
    ("1d-d2-g2-same", (1, 4, 10), (6, 2, 3), dict(dilation=2, groups=2, padding="same")),
    ("2d", (2, 3, 7, 6), (4, 3, 3, 2), dict()),
    ("2d-s2-same", (2, 2, 9, 8), (3, 2, 3, 3), dict(stride=2, padding="same")),
    ("2d-s13-d21-pairs", (1, 3, 10, 9), (2, 3, 3, 2), dict(stride=(1, 3), dilation=(2, 1), padding=((2, 0), (1, 3)))),
    ("2d-g3-full", (2, 6, 5, 6), (3, 2, 2, 3), dict(groups=3, padding="full")),
    ("2d-depthwise-s3", (1, 4, 9, 9), (4, 1, 3, 3), dict(groups=4, stride=3, padding=1)),
    ("2d-kernel-eq-input", (2, 2, 4, 5), (3, 2, 4, 5), dict()),
    ("3d", (1, 2, 5, 4, 6), (3, 2, 2, 3, 2), dict(padding=1)),
    ("3d-s2-d2-g2", (2, 4, 7, 6, 7), (2, 2, 3, 2, 3), dict(stride=2, dilation=(2, 1, 1), groups=2)),
]
IDS = [c[0] for c in CASES]


def args_of(x, w, params):
    nd = x.ndim - 2
    return P.conv_args(x, w, None, params.get("stride", 1), params.get("padding", 0), params.get("dilation", 1),
                       params.get("groups", 1), nd)


def operands(x_shape, w_shape, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)


def naive_all(x, w, gy, params):
    """(forward, grad_input, grad_weight) of the loop oracle, in float64."""
    args = args_of(x, w, params)
    x, w, gy = (a.astype(np.float64) for a in (x, w, gy))
    return naive.forward(x, w, args), naive.grad_input(gy, w, args), naive.grad_weight(gy, x, args)


def assert_close(actual, expected, dtype, reduction=1):
    """float64: tight. float32: relative to the largest output, growing with sqrt(reduction)."""
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-6 * scale * max(1, reduction) ** 0.5)


def torch_conv(x, w, params, gy=None):
    """PyTorch's convolution (explicit padding pairs applied with F.pad) and, given ``gy``,
    its input and weight gradients; ``None`` when torch is not installed."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    nd = x.ndim - 2
    args = args_of(x, w, params)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    flat = [v for lo_hi in reversed(args.geom.pad) for v in lo_hi]
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    y = fn(F.pad(xt, flat), wt, stride=args.geom.stride, dilation=args.geom.dilation, groups=args.groups)
    if gy is None:
        return y.detach().numpy()
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()
