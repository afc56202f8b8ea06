"""csrc/im2col.cu run on the CPU: im2col against the reference's patch matrix (convlab.im2col
on NumPy arrays), col2im against the reference's col2im, and the two as adjoints, float32 and
float64, 1-d and 2-d, with stride, dilation and asymmetric padding. Outputs are NaN before each
launch."""
import numpy as np
import pytest
from cuda_cpu_harness import DTYPES, assert_close

import convlab
from convlab._params import make_geometry

VERSIONS = [1]

# x shape, kernel, stride, ((lo, hi) per axis), dilation
CASES = [
    ((2, 3, 11, 9), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2)),
    ((1, 4, 7, 13), (2, 4), (3, 3), ((1, 1), (1, 1)), (1, 1)),
    ((3, 2, 1, 17), (1, 5), (1, 2), ((0, 0), (3, 3)), (1, 2)),
    ((2, 2, 4, 5), (4, 5), (1, 1), ((0, 0), (0, 0)), (1, 1)),  # kernel = input
    ((1, 2, 9, 8), (2, 2), (4, 3), ((0, 0), (0, 0)), (1, 1)),  # stride > kernel: cells no window reads
]


def test_every_version_is_tested(cuda_cpu):
    assert cuda_cpu.versions["im2col"] == max(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_im2col_and_col2im_match_the_reference(cuda_cpu, case, dtype, version):
    shape, k, s, pad, d = case
    geom = make_geometry(shape[2:], k, s, d, pad)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    cols = cuda_cpu.im2col(version, x, geom)
    want = convlab.im2col(x.astype(np.float64), k, stride=s, padding=pad, dilation=d)
    np.testing.assert_array_equal(cols, want.astype(dtype), err_msg="im2col copies, exactly")
    c = rng.standard_normal(cols.shape).astype(dtype)
    back = cuda_cpu.col2im(version, c, geom, shape[0], shape[1])
    ref_back = convlab.col2im(c.astype(np.float64), shape[2:], k, stride=s, padding=pad, dilation=d)
    assert_close(back, ref_back, int(np.prod(k)), "col2im")
    lhs, rhs = np.vdot(cols.astype(np.float64), c), np.vdot(x.astype(np.float64), back)
    assert abs(lhs - rhs) <= (1e-4 if dtype == np.float32 else 1e-11) * max(1.0, abs(lhs)), "adjoint"
