"""The conv2d kernel cases that tests/gpu (on a GPU) and tests/cuda_cpu (the same kernels on the
CPU) both run: one list, so a shape added for one is tested on both.

Each case: name, x shape, w shape, stride, padding, dilation, groups. None is a multiple of the
GEMM kernels' tiles (32, 64 or 128 along M and N, slices of 8 along R)."""
import math

import numpy as np

from convlab._params import conv_args

CONV2D_CASES = [
    ("odd_3x3", (3, 5, 13, 11), (7, 5, 3, 3), 1, 1, 1, 1),
    ("strided_dilated_asym_pad_groups", (2, 6, 17, 15), (9, 2, 3, 2), (2, 3), ((1, 2), (0, 3)), (2, 1), 3),
    ("crosses_128_tiles", (2, 9, 19, 17), (130, 9, 3, 3), 1, 1, 1, 1),
    ("split_k_long_reduction", (1, 300, 5, 5), (70, 300, 3, 3), 1, 1, 1, 1),
    ("depthwise", (2, 8, 10, 9), (8, 1, 3, 3), 1, 1, 1, 8),
    ("pointwise", (4, 33, 7, 9), (65, 33, 1, 1), 1, 0, 1, 1),
    ("kernel_is_input", (2, 3, 5, 4), (4, 3, 5, 4), 1, 0, 1, 1),
    ("stride_above_kernel", (2, 3, 11, 10), (5, 3, 2, 2), 3, 0, 1, 1),
    ("batch_one_wide_strided_backward", (1, 4, 9, 23), (6, 2, 3, 5), 2, 2, 1, 2),
    # split-K meeting groups: v5 splits every op's reduction on any GPU of 2 or more multiprocessors
    ("split_k_groups", (2, 96, 6, 5), (39, 32, 3, 3), 1, 1, 1, 3),
    ("split_k_groups_strided_dilated", (3, 64, 15, 12), (34, 32, 3, 2), (2, 1), ((2, 0), (1, 1)), (1, 2), 2),
    ("split_k_depthwise_weight", (3, 4, 21, 19), (4, 1, 3, 3), 1, 1, 1, 4),
]
CONV2D_IDS = [c[0] for c in CONV2D_CASES]

# The cases whose v5 plan splits the reduction of at least one op (the tests check that it does).
SPLIT_K_CASES = [c for c in CONV2D_CASES if c[0].startswith("split_k")]
SPLIT_K_IDS = [c[0] for c in SPLIT_K_CASES]


def conv2d_data(case, dtype, seed=0, integers=False):
    """x, w, grad_y as float64 arrays holding ``dtype``-rounded values (the reference sees exactly
    what the kernels see), and the ConvArgs. ``integers``: small integers, so that every sum is
    exact in any order, in float32 too."""
    _, xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    if integers:
        x, w = rng.integers(-3, 4, xs).astype(float), rng.integers(-2, 3, ws).astype(float)
    else:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws) / math.sqrt(math.prod(ws[1:]))
    args = conv_args(x, w, None, stride, padding, dilation, groups, 2)
    gy_shape = (args.batch, args.out_channels) + args.geom.out_size
    gy = rng.integers(-3, 4, gy_shape).astype(float) if integers else rng.standard_normal(gy_shape)
    x, w, gy = (a.astype(dtype).astype(np.float64) for a in (x, w, gy))
    return x, w, gy, args


def conv2d_reductions(args):
    """The sum lengths behind one element of forward, grad_input and grad_weight."""
    k = math.prod(args.geom.kernel)
    return (args.in_channels // args.groups * k, args.out_channels // args.groups * k,
            args.batch * math.prod(args.geom.out_size))


def assert_close(got, ref, reduction: int, what: str = ""):
    """A kernel's host-side result ``got`` against the float64 ``ref``: every element written
    (no NaN left where ``ref`` has none), within a tolerance that grows with the sum length
    behind each element and with the dtype."""
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    unwritten = np.isnan(got) & ~np.isnan(ref)
    assert not unwritten.any(), f"{what}: {int(unwritten.sum())} of {got.size} elements never written (still NaN)"
    eps = 1e-5 if got.dtype == np.float32 else 1e-12
    finite = np.abs(ref[np.isfinite(ref)])
    scale = max(float(finite.max()) if finite.size else 0.0, 1.0)
    np.testing.assert_allclose(got, ref, rtol=0, atol=eps * math.sqrt(max(reduction, 1)) * scale, err_msg=what)
