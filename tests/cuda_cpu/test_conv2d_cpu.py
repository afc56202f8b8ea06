"""csrc/conv2d.cu run on the CPU against the NumPy reference: every kernel version, float32
and float64, forward, grad_input and grad_weight, on the shapes of tests/gpu and on shapes where
split-K and groups meet, on a 132-SM device (reductions split) and a 1-SM one (split only when a single tile is left).
Outputs and the split-K workspace are NaN before each launch."""
import math

import numpy as np
import pytest
from cuda_cpu_harness import DTYPES, NO_SPLIT, SPLIT, TILE_LOOP, assert_close

from convlab._params import conv_args
from convlab.reference import direct

VERSIONS = [1, 2]  # test_every_version_is_tested checks this against the build

# name, x shape, w shape, stride, padding, dilation, groups
CASES = [
    # the shapes of tests/gpu/test_conv2d_gpu.py
    ("odd_3x3", (3, 5, 13, 11), (7, 5, 3, 3), 1, 1, 1, 1),
    ("strided_dilated_asym_pad_groups", (2, 6, 17, 15), (9, 2, 3, 2), (2, 3), ((1, 2), (0, 3)), (2, 1), 3),
    ("crosses_128_tiles", (2, 9, 19, 17), (130, 9, 3, 3), 1, 1, 1, 1),
    ("split_k_long_reduction", (1, 300, 5, 5), (70, 300, 3, 3), 1, 1, 1, 1),
    ("depthwise", (2, 8, 10, 9), (8, 1, 3, 3), 1, 1, 1, 8),
    ("pointwise", (4, 33, 7, 9), (65, 33, 1, 1), 1, 0, 1, 1),
    ("kernel_is_input", (2, 3, 5, 4), (4, 3, 5, 4), 1, 0, 1, 1),
    ("stride_above_kernel", (2, 3, 11, 10), (5, 3, 2, 2), 3, 0, 1, 1),
    ("batch_one_wide_strided_backward", (1, 4, 9, 23), (6, 2, 3, 5), 2, 2, 1, 2),
    # split-K meeting groups: every op's reduction is split on the 132-SM device
    ("split_k_groups", (2, 96, 6, 5), (39, 32, 3, 3), 1, 1, 1, 3),
    ("split_k_groups_strided_dilated", (3, 64, 15, 12), (34, 32, 3, 2), (2, 1), ((2, 0), (1, 1)), (1, 2), 2),
    ("split_k_depthwise_weight", (3, 4, 21, 19), (4, 1, 3, 3), 1, 1, 1, 4),
]
IDS = [c[0] for c in CASES]
SPLIT_CASES = {"split_k_long_reduction", "split_k_groups", "split_k_groups_strided_dilated",
               "split_k_depthwise_weight"}


def data(case, dtype, seed=0, integers=False):
    """x, w, grad_y as float64 holding dtype-rounded values, and the ConvArgs."""
    _, xs, ws, stride, padding, dilation, groups = case
    rng = np.random.default_rng(seed)
    if integers:  # small integers: every sum is exact, in any order, in float32 too
        x, w = rng.integers(-3, 4, xs).astype(float), rng.integers(-2, 3, ws).astype(float)
    else:
        x, w = rng.standard_normal(xs), rng.standard_normal(ws) / math.sqrt(math.prod(ws[1:]))
    args = conv_args(x, w, None, stride, padding, dilation, groups, 2)
    gy_shape = (args.batch, args.out_channels) + args.geom.out_size
    gy = rng.integers(-3, 4, gy_shape).astype(float) if integers else rng.standard_normal(gy_shape)
    x, w, gy = (a.astype(dtype).astype(np.float64) for a in (x, w, gy))
    return x, w, gy, args


def reductions(args):
    """The sum lengths behind one element of forward, grad_input and grad_weight."""
    k = math.prod(args.geom.kernel)
    return (args.in_channels // args.groups * k, args.out_channels // args.groups * k,
            args.batch * math.prod(args.geom.out_size))


def run_all(cuda_cpu, version, dtype, x, w, gy, args, device):
    """{op: (out, workspace bytes)} for the three ops."""
    c = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    return {
        "forward": cuda_cpu.conv2d("forward", version, c(x), c(w), args, device),
        "grad_input": cuda_cpu.conv2d("grad_input", version, c(gy), c(w), args, device),
        "grad_weight": cuda_cpu.conv2d("grad_weight", version, c(gy), c(x), args, device),
    }


def test_every_version_is_tested(cuda_cpu):
    assert cuda_cpu.versions["conv2d"] == max(VERSIONS)


# v1 does not depend on the SM count; v2 runs split and unsplit plans.
@pytest.mark.parametrize("version,device", [(1, SPLIT), (2, SPLIT), (2, NO_SPLIT)], ids=["v1", "v2-132sm", "v2-1sm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_each_kernel_version_matches_the_reference(cuda_cpu, case, dtype, version, device):
    x, w, gy, args = data(case, dtype)
    got = run_all(cuda_cpu, version, dtype, x, w, gy, args, device)
    want = {"forward": direct.forward(x, w, args), "grad_input": direct.grad_input(gy, w, args),
            "grad_weight": direct.grad_weight(gy, x, args)}
    for op, r in zip(want, reductions(args)):
        assert_close(got[op][0], want[op], r, f"{case[0]} {op} v{version}")
    if version == 2 and device == SPLIT and case[0] in SPLIT_CASES:
        assert any(nbytes > 0 for _, nbytes in got.values()), "this case is meant to split its reduction"
    if version == 1:
        assert all(nbytes == 0 for _, nbytes in got.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in SPLIT_CASES], ids=sorted(SPLIT_CASES))
def test_split_counts_do_not_change_exact_sums(cuda_cpu, case, dtype):
    """With small integers every partial sum is exact, so the split (132 SMs) and unsplit (1 SM)
    plans and v1 must agree bit for bit, and equal the reference exactly."""
    x, w, gy, args = data(case, dtype, seed=3, integers=True)
    split = run_all(cuda_cpu, 2, dtype, x, w, gy, args, SPLIT)
    unsplit = run_all(cuda_cpu, 2, dtype, x, w, gy, args, NO_SPLIT)
    v1 = run_all(cuda_cpu, 1, dtype, x, w, gy, args, SPLIT)
    want = {"forward": direct.forward(x, w, args), "grad_input": direct.grad_input(gy, w, args),
            "grad_weight": direct.grad_weight(gy, x, args)}
    assert any(split[op][1] > unsplit[op][1] for op in want), "the 132-SM plan must split"
    for op in want:
        np.testing.assert_array_equal(split[op][0], unsplit[op][0], err_msg=op)
        np.testing.assert_array_equal(v1[op][0], unsplit[op][0], err_msg=op)
        np.testing.assert_array_equal(split[op][0], want[op].astype(dtype), err_msg=op)


def test_split_sums_are_reproducible(cuda_cpu):
    """Random data: the same plan twice gives the same bits (the parts are added in split order)."""
    case = CASES[IDS.index("split_k_groups")]
    x, w, gy, args = data(case, np.float32, seed=4)
    first = run_all(cuda_cpu, 2, np.float32, x, w, gy, args, SPLIT)
    again = run_all(cuda_cpu, 2, np.float32, x, w, gy, args, SPLIT)
    assert any(nbytes > 0 for _, nbytes in first.values()), "this case is meant to split"
    for op in first:
        np.testing.assert_array_equal(first[op][0], again[op][0], err_msg=op)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_tiles_past_the_grid_y_limit_are_looped_over(cuda_cpu, dtype):
    """A device whose grid y holds 2 blocks: grad_input with 200 channels (4 tiles of 64 rows in
    float64, 2 of 128 in float32) and forward with 300 output channels must still cover every row."""
    case = ("many_channels", (1, 200, 3, 4), (300, 200, 1, 1), 1, 0, 1, 1)
    x, w, gy, args = data(case, dtype, seed=5)
    cuda_cpu.log()  # forget earlier launches
    got = run_all(cuda_cpu, 2, dtype, x, w, gy, args, TILE_LOOP)
    want = {"forward": direct.forward(x, w, args), "grad_input": direct.grad_input(gy, w, args),
            "grad_weight": direct.grad_weight(gy, x, args)}
    for op, r in zip(want, reductions(args)):
        assert_close(got[op][0], want[op], r, op)
    assert all(("grid=(" not in line) or int(line.split("grid=(")[1].split(",")[1]) <= 2
               for line in cuda_cpu.log())
