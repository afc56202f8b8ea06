"""What the convolution tests share: one list of cases, operands, the loop oracle in float64,
one tolerance rule, PyTorch as a peer, and one hypothesis strategy of random problems."""
import numpy as np
from hypothesis import strategies as st

from convlab import _params as P
from convlab.conv import ALGORITHMS
from convlab.reference import naive

CONV = {1: "conv1d", 2: "conv2d", 3: "conv3d"}

# (id, x shape, w shape, params): odd sizes, stride > kernel, asymmetric pads, strings,
# dilation, groups, depthwise, kernel = input, 1-3 spatial dims.
CASES = [
    ("1d", (2, 3, 11), (4, 3, 3), dict()),
    ("1d-s2-p1", (2, 4, 12), (2, 4, 5), dict(stride=2, padding=1)),
    ("1d-d2-g2-same", (1, 4, 10), (6, 2, 3), dict(dilation=2, groups=2, padding="same")),
    ("1d-s3-d2-g2", (1, 4, 9), (6, 2, 4), dict(stride=3, padding=(2,), dilation=2, groups=2)),
    ("1d-s4-pair", (2, 2, 7), (2, 2, 2), dict(stride=4, padding=((3, 0),))),
    ("2d", (2, 3, 7, 6), (4, 3, 3, 2), dict()),
    ("2d-3x3-p1", (2, 3, 9, 7), (4, 3, 3, 3), dict(padding=1)),
    ("2d-s21-p1", (2, 3, 7, 6), (4, 3, 3, 2), dict(stride=(2, 1), padding=1)),
    ("2d-s2-same", (2, 2, 9, 8), (3, 2, 3, 3), dict(stride=2, padding="same")),
    ("2d-same-d21-g2", (1, 4, 8, 9), (6, 2, 3, 3), dict(padding="same", dilation=(2, 1), groups=2)),
    ("2d-s13-d21-pairs", (1, 3, 10, 9), (2, 3, 3, 2), dict(stride=(1, 3), dilation=(2, 1), padding=((2, 0), (1, 3)))),
    ("2d-g3-full", (2, 6, 5, 6), (3, 2, 2, 3), dict(groups=3, padding="full")),
    ("2d-full-s3", (2, 2, 5, 5), (3, 2, 2, 3), dict(padding="full", stride=3)),
    ("2d-depthwise-s3", (1, 4, 9, 9), (4, 1, 3, 3), dict(groups=4, stride=3, padding=1)),
    ("2d-depthwise-3x3", (1, 4, 6, 6), (4, 1, 3, 3), dict(groups=4, padding=1)),
    ("2d-g3-pairs-s12", (1, 3, 5, 4), (3, 1, 3, 3), dict(padding=((2, 1), (0, 2)), groups=3, stride=(1, 2))),
    ("2d-kernel-eq-input", (2, 2, 4, 5), (3, 2, 4, 5), dict()),
    ("2d-kernel-eq-input-2", (1, 2, 6, 5), (2, 2, 6, 5), dict()),
    ("2d-same-s2-small", (1, 2, 4, 4), (2, 2, 3, 3), dict(padding="same", stride=2)),
    ("3d", (1, 2, 5, 4, 6), (3, 2, 2, 3, 2), dict(padding=1)),
    ("3d-s122", (1, 2, 5, 4, 6), (3, 2, 2, 3, 2), dict(stride=(1, 2, 2), padding=(1, 0, 1))),
    ("3d-s2-d2-g2", (2, 4, 7, 6, 7), (2, 2, 3, 2, 3), dict(stride=2, dilation=(2, 1, 1), groups=2)),
    ("3d-same-d121-g2", (2, 4, 4, 5, 3), (4, 2, 3, 2, 2), dict(padding="same", dilation=(1, 2, 1), groups=2)),
    ("3d-3x3x3-p1", (1, 2, 6, 5, 7), (3, 2, 3, 3, 3), dict(padding=1)),
    # 1x1 kernels: a batched product on the input's own planes, or on a strided view
    ("2d-1x1", (2, 6, 5, 4), (4, 6, 1, 1), dict()),
    ("2d-1x1-s23-g2-d3", (3, 4, 7, 8), (6, 2, 1, 1), dict(stride=(2, 3), groups=2, dilation=3)),
    ("2d-1x1-p1", (1, 3, 4, 5), (2, 3, 1, 1), dict(padding=1)),
    ("1d-1x1-depthwise-s2", (2, 3, 9), (3, 1, 1), dict(groups=3, stride=2)),
    ("3d-1x1-s2", (1, 2, 5, 4, 3), (3, 2, 1, 1, 1), dict(stride=2)),
]
IDS = [c[0] for c in CASES]

# Tiny cases for finite differences, which perturb every element.
GRAD_CASES = [
    ("1d-s2-pairs", (2, 2, 7), (3, 2, 3), dict(stride=2, padding=((1, 2),))),
    ("1d-3-tap", (2, 2, 7), (2, 2, 3), dict(padding=((1, 0),))),
    ("2d-same-d12-g2", (1, 2, 5, 4), (2, 1, 2, 3), dict(stride=(2, 1), padding="same", dilation=(1, 2), groups=2)),
    ("2d-full-s3", (2, 1, 4, 5), (2, 1, 3, 3), dict(padding="full", stride=3)),
    ("2d-3x3", (1, 2, 5, 4), (2, 2, 3, 3), dict(padding=((1, 0), (1, 0)))),
    ("3d-s121", (1, 2, 3, 4, 3), (2, 2, 2, 2, 2), dict(padding=1, stride=(1, 2, 1))),
    ("3d-3x3x3", (1, 2, 4, 3, 3), (1, 2, 3, 3, 3), dict(padding=((1, 0),) * 3)),
    ("1d-s3-d2-p2", (1, 2, 9), (2, 2, 3), dict(stride=3, dilation=2, padding=(2,))),
    ("1d-s2-d2-p1", (1, 2, 8), (2, 2, 2), dict(stride=2, dilation=2, padding=(1,))),
    ("2d-s21-pairs-g2", (1, 4, 6, 5), (2, 2, 3, 2), dict(stride=(2, 1), padding=((1, 0), (2, 1)), groups=2)),
    ("3d-s121-d112", (1, 1, 4, 3, 5), (2, 1, 2, 2, 2), dict(stride=(1, 2, 1), dilation=(1, 1, 2), padding=1)),
    ("3d-d121-p1", (1, 1, 4, 4, 3), (1, 1, 2, 2, 3), dict(dilation=(1, 2, 1), padding=1)),
    ("2d-1x1-s2-g2", (2, 4, 5, 4), (2, 2, 1, 1), dict(stride=2, groups=2)),
]
GRAD_IDS = [c[0] for c in GRAD_CASES]


def args_of(x, w, params):
    nd = x.ndim - 2
    return P.conv_args(x, w, None, params.get("stride", 1), params.get("padding", 0), params.get("dilation", 1),
                       params.get("groups", 1), nd)


def transpose_params(args):
    """``conv_transpose``'s parameters that make it the adjoint of the convolution ``args``:
    its padding pairs, and the output_padding that gives back the input size (the cells the
    floor of the output size dropped)."""
    g = args.geom
    extra = tuple(n + lo + hi - d * (k - 1) - 1 - (o - 1) * s
                  for n, k, s, d, (lo, hi), o in zip(g.in_size, g.kernel, g.stride, g.dilation, g.pad, g.out_size))
    return dict(stride=g.stride, padding=g.pad, output_padding=extra, groups=args.groups, dilation=g.dilation)


def operands(x_shape, w_shape, dtype=np.float64, seed=0, rank_one=False):
    """Random ``x`` and ``w``; ``rank_one`` makes every kernel slice an outer product of one
    random vector per axis (a separable kernel)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    w = rng.standard_normal(w_shape)
    if rank_one:
        nd = len(w_shape) - 2
        w = np.ones(w_shape)
        for a, k in enumerate(w_shape[2:]):
            w = w * rng.standard_normal(w_shape[:2] + (1,) * a + (k,) + (1,) * (nd - 1 - a))
    return x.astype(dtype), w.astype(dtype)


def serving(algorithm, x, w, params=None, args=None):
    """Why ``algorithm`` cannot serve a convolution of ``x`` with ``w`` (its own ``prepare``;
    ``args`` default to the convolution's with ``params``), or None."""
    if algorithm == "auto":
        return None
    prepared = ALGORITHMS[algorithm].prepare(x, w, args or args_of(x, w, params))
    return prepared if isinstance(prepared, str) else None


def host(a):
    """A NumPy copy of a NumPy or CuPy array."""
    return a.get() if hasattr(a, "get") else np.asarray(a)


def naive_all(x, w, gy, params):
    """(forward, grad_input, grad_weight) of the loop oracle, in float64 on NumPy arrays."""
    x, w, gy = (host(a).astype(np.float64) for a in (x, w, gy))
    args = args_of(x, w, params)
    return naive.forward(x, w, args), naive.grad_input(gy, w, args), naive.grad_weight(gy, x, args)


def assert_close(actual, expected, dtype, reduction=1):
    """float64: tight. float32: relative to the largest output, growing with sqrt(reduction)."""
    actual = host(actual)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(1.0, float(np.abs(expected).max(initial=0.0)))
    if np.dtype(dtype) == np.float64:
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-10 * scale)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=2e-6 * scale * max(1, reduction) ** 0.5)


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_conv(x, w, params, gy=None, b=None):
    """PyTorch's convolution (explicit padding pairs applied with F.pad) and, given ``gy``,
    its input and weight gradients; ``None`` when torch is not installed."""
    torch = torch_or_none()
    if torch is None:
        return None
    import torch.nn.functional as F

    nd = x.ndim - 2
    args = args_of(x, w, params)
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    flat = [v for lo_hi in reversed(args.geom.pad) for v in lo_hi]
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[nd]
    y = fn(F.pad(xt, flat), wt, None if b is None else torch.tensor(b), stride=args.geom.stride,
           dilation=args.geom.dilation, groups=args.groups)
    if gy is None:
        return y.detach().numpy()
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


@st.composite
def conv_problems(draw, max_kernel=4):
    """``(nd, x_shape, w_shape, params)``: 1-3 spatial dims, groups, kernels up to
    ``max_kernel``, dilation, stride that may exceed the kernel, any padding form."""
    nd = draw(st.integers(1, 3))
    max_n = {1: 9, 2: 6, 3: 4}[nd]
    groups = draw(st.integers(1, 2))
    c = groups * draw(st.integers(1, 2))
    k_out = groups * draw(st.integers(1, 2))
    batch = draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(nd))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(nd))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(nd))
    pads = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(nd))
    sizes = []
    for k, d, (lo, hi) in zip(kernel, dilation, pads):
        span = d * (k - 1) + 1
        sizes.append(draw(st.integers(max(1, span - lo - hi), max(max_n, span - lo - hi))))
    padding = draw(st.sampled_from(["pairs", "valid", "same", "full"]))
    padding = pads if padding == "pairs" else padding
    if padding == "valid":
        sizes = [max(s, d * (k - 1) + 1) for s, k, d in zip(sizes, kernel, dilation)]
    return nd, (batch, c) + tuple(sizes), (k_out, c // groups) + kernel, dict(
        stride=stride, padding=padding, dilation=dilation, groups=groups)
