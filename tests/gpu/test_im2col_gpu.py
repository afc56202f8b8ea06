"""csrc/im2col.cu through convlab.im2col/col2im on CuPy arrays, against the NumPy reference,
1-D and 2-D, float32 and float64; col2im is checked as the adjoint of im2col as well."""
import numpy as np
import pytest
from gpu_env import assert_close, nan_filled_outputs, on_stream_after_delay, require_gpu  # noqa: F401

cupy = require_gpu()

import convlab  # noqa: E402

CASES = [
    ((2, 3, 11, 9), (3, 2), (2, 1), ((1, 2), (0, 1)), (1, 2)),
    ((1, 4, 7, 13), (2, 4), 3, 1, 1),
    ((3, 2, 17), (5,), 2, 3, 2),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES)
def test_im2col_and_col2im_match_the_reference(nan_filled_outputs, case, dtype):
    shape, k, s, p, d = case
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    ref = convlab.im2col(x, k, stride=s, padding=p, dilation=d)
    cols = convlab.im2col(cupy.asarray(x), k, stride=s, padding=p, dilation=d)
    assert_close(cols, ref.astype(np.float64), 1, "im2col")
    c = rng.standard_normal(ref.shape).astype(dtype)
    back = convlab.col2im(cupy.asarray(c), shape[2:], k, stride=s, padding=p, dilation=d)
    ref_back = convlab.col2im(c, shape[2:], k, stride=s, padding=p, dilation=d)
    assert_close(back, ref_back.astype(np.float64), int(np.prod(k)), "col2im")
    # adjointness: <im2col(x), c> = <x, col2im(c)>
    lhs = float(cupy.vdot(cols, cupy.asarray(c)))
    rhs = float(cupy.vdot(cupy.asarray(x), back))
    assert abs(lhs - rhs) <= (1e-3 if dtype == np.float32 else 1e-10) * max(1.0, abs(lhs))


def test_im2col_and_col2im_run_on_the_current_stream():
    shape, k, s, p, d = CASES[0]
    x = np.random.default_rng(1).standard_normal(shape)
    ref = convlab.im2col(x, k, stride=s, padding=p, dilation=d)
    xd = cupy.asarray(x)
    cols = on_stream_after_delay(cupy, xd, cupy.zeros_like(xd),
                                 lambda xs: convlab.im2col(xs, k, stride=s, padding=p, dilation=d))
    assert_close(cols, ref, 1, "im2col on a non-blocking stream")
    c = cupy.asarray(ref)
    back = on_stream_after_delay(cupy, c, cupy.zeros_like(c),
                                 lambda cs: convlab.col2im(cs, shape[2:], k, stride=s, padding=p, dilation=d))
    assert_close(back, convlab.col2im(ref, shape[2:], k, stride=s, padding=p, dilation=d), int(np.prod(k)), "col2im")
