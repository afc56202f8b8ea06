"""csrc/conv2d.cu run on the CPU against the NumPy reference: every kernel version, float32
and float64, forward, grad_input and grad_weight, on the cases tests/gpu runs (tests/kernel_cases.py,
including shapes where split-K and groups meet); v5 on a 132-SM device (reductions split) and a
1-SM one (split only when a single tile is left). Outputs and the split-K workspace are NaN
before each launch."""
import numpy as np
import pytest
from cuda_cpu_harness import DTYPES, NO_SPLIT, SPLIT, TILE_LOOP, assert_close
from kernel_cases import CONV2D_CASES, CONV2D_IDS, SPLIT_K_CASES, SPLIT_K_IDS, conv2d_data, conv2d_reductions

from convlab.reference import direct

VERSIONS = [1, 2, 3, 4, 5]  # test_every_version_is_tested checks this against the build
SPLIT_VERSION = 5  # the one version whose plan follows the SM count


def run_all(cuda_cpu, version, dtype, x, w, gy, args, device):
    """{op: (out, workspace bytes)} for the three ops."""
    c = lambda a: np.ascontiguousarray(a, dtype=dtype)  # noqa: E731
    return {
        "forward": cuda_cpu.conv2d("forward", version, c(x), c(w), args, device),
        "grad_input": cuda_cpu.conv2d("grad_input", version, c(gy), c(w), args, device),
        "grad_weight": cuda_cpu.conv2d("grad_weight", version, c(gy), c(x), args, device),
    }


def reference(x, w, gy, args):
    return {"forward": direct.forward(x, w, args), "grad_input": direct.grad_input(gy, w, args),
            "grad_weight": direct.grad_weight(gy, x, args)}


def test_every_version_is_tested(cuda_cpu):
    assert cuda_cpu.versions["conv2d"] == max(VERSIONS)


RUNS = [(v, SPLIT) for v in VERSIONS] + [(SPLIT_VERSION, NO_SPLIT)]


@pytest.mark.parametrize("version,device", RUNS, ids=[f"v{v}" for v in VERSIONS] + ["v5-1sm"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CONV2D_CASES, ids=CONV2D_IDS)
def test_each_kernel_version_matches_the_reference(cuda_cpu, case, dtype, version, device):
    x, w, gy, args = conv2d_data(case, dtype)
    got = run_all(cuda_cpu, version, dtype, x, w, gy, args, device)
    want = reference(x, w, gy, args)
    for op, r in zip(want, conv2d_reductions(args)):
        assert_close(got[op][0], want[op], r, f"{case[0]} {op} v{version}")
    if version == SPLIT_VERSION and device == SPLIT and case in SPLIT_K_CASES:
        assert any(nbytes > 0 for _, nbytes in got.values()), "this case is meant to split its reduction"
    if version != SPLIT_VERSION:
        assert all(nbytes == 0 for _, nbytes in got.values())


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", SPLIT_K_CASES, ids=SPLIT_K_IDS)
def test_split_counts_do_not_change_exact_sums(cuda_cpu, case, dtype):
    """With small integers every partial sum is exact, so the split (132 SMs) and unsplit (1 SM)
    plans of v5, v4 (the same kernel, never split) and v1 must agree bit for bit, and equal the
    reference exactly."""
    x, w, gy, args = conv2d_data(case, dtype, seed=3, integers=True)
    split = run_all(cuda_cpu, SPLIT_VERSION, dtype, x, w, gy, args, SPLIT)
    unsplit = run_all(cuda_cpu, SPLIT_VERSION, dtype, x, w, gy, args, NO_SPLIT)
    want = reference(x, w, gy, args)
    assert any(split[op][1] > unsplit[op][1] for op in want), "the 132-SM plan must split"
    for op in want:
        np.testing.assert_array_equal(split[op][0], unsplit[op][0], err_msg=op)
        np.testing.assert_array_equal(split[op][0], want[op].astype(dtype), err_msg=op)
    for version in (1, 4):
        other = run_all(cuda_cpu, version, dtype, x, w, gy, args, SPLIT)
        for op in want:
            np.testing.assert_array_equal(other[op][0], unsplit[op][0], err_msg=f"{op} v{version}")


def test_split_sums_are_reproducible(cuda_cpu):
    """Random data: the same plan twice gives the same bits (the parts are added in split order)."""
    case = CONV2D_CASES[CONV2D_IDS.index("split_k_groups")]
    x, w, gy, args = conv2d_data(case, np.float32, seed=4)
    first = run_all(cuda_cpu, SPLIT_VERSION, np.float32, x, w, gy, args, SPLIT)
    again = run_all(cuda_cpu, SPLIT_VERSION, np.float32, x, w, gy, args, SPLIT)
    assert any(nbytes > 0 for _, nbytes in first.values()), "this case is meant to split"
    for op in first:
        np.testing.assert_array_equal(first[op][0], again[op][0], err_msg=op)


@pytest.mark.parametrize("version", VERSIONS[1:])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_tiles_past_the_grid_y_limit_are_looped_over(cuda_cpu, dtype, version):
    """A device whose grid y holds 2 blocks: grad_input with 200 channels and forward with 300
    output channels have more row tiles than that (64 or 128 rows each), yet every GEMM
    version must cover every row."""
    case = ("many_channels", (1, 200, 3, 4), (300, 200, 1, 1), 1, 0, 1, 1)
    x, w, gy, args = conv2d_data(case, dtype, seed=5)
    cuda_cpu.log()  # forget earlier launches
    got = run_all(cuda_cpu, version, dtype, x, w, gy, args, TILE_LOOP)
    want = reference(x, w, gy, args)
    for op, r in zip(want, conv2d_reductions(args)):
        assert_close(got[op][0], want[op], r, op)
    grids = [line for line in cuda_cpu.log() if line.startswith("gemm_v")]
    assert grids and all(int(line.split("grid=(")[1].split(",")[1]) <= 2 for line in grids)
