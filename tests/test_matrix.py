"""im2col / col2im / conv_matrix, and im2col's bounded workspace."""
import tracemalloc

import numpy as np
import pytest
from oracles import torch_or_none

import convlab
from convlab import col2im, conv2d, conv_matrix, im2col


def _loop_im2col(x, k, s, p, d):
    """Independent oracle: PyTorch's unfold layout written as loops over (c, tap) rows, positions columns."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])))
    oh = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    ow = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = np.zeros((n, c * k[0] * k[1], oh * ow))
    for ci in range(c):
        for a in range(k[0]):
            for b in range(k[1]):
                row = (ci * k[0] + a) * k[1] + b
                for i in range(oh):
                    for j in range(ow):
                        out[:, row, i * ow + j] = xp[:, ci, i * s[0] + a * d[0], j * s[1] + b * d[1]]
    return out


@pytest.mark.parametrize("k,s,p,d", [((3, 3), (1, 1), (1, 1), (1, 1)), ((2, 3), (2, 1), (0, 2), (2, 1))])
def test_im2col_layout_and_col2im_adjoint(k, s, p, d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, k, stride=s, padding=p, dilation=d)
    np.testing.assert_array_equal(cols, _loop_im2col(x, k, s, p, d))
    c = rng.standard_normal(cols.shape)
    back = col2im(c, (7, 6), k, stride=s, padding=p, dilation=d)
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(cols, c), np.vdot(x, back), rtol=1e-12)


def test_im2col_nd_and_torch_fold():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 4, 5, 3))
    cols = im2col(x, (2, 3, 2), padding=1, stride=(1, 2, 1))
    w = rng.standard_normal((3, 2, 2, 3, 2))
    y3 = convlab.conv3d(x, w, padding=1, stride=(1, 2, 1), algorithm="naive")
    np.testing.assert_allclose((w.reshape(3, -1) @ cols[0]).reshape(y3.shape[1:]), y3[0], atol=1e-12)
    torch = torch_or_none()
    if torch is not None:
        import torch.nn.functional as F

        c = rng.standard_normal((2, 12, 28))
        ref = F.fold(torch.tensor(c), (6, 7), (2, 3), padding=1, stride=(1, 2)).numpy()
        np.testing.assert_allclose(col2im(c, (6, 7), (2, 3), padding=1, stride=(1, 2)), ref, atol=1e-12)


def test_conv_matrix_structure_and_batch():
    rng = np.random.default_rng(2)
    w = rng.standard_normal((2, 3, 3, 3))
    m = conv_matrix((3, 6, 6), w, padding=1)
    assert m.shape == (2 * 36, 3 * 36)
    # sparse interactions: each output reads at most C*k*k inputs
    assert np.diff(m.indptr).max() == 27
    mb = conv_matrix((2, 3, 6, 6), w, padding=1)
    x = rng.standard_normal((2, 3, 6, 6))
    np.testing.assert_allclose(mb @ x.ravel(), conv2d(x, w, padding=1).ravel(), atol=1e-12)
    with pytest.raises(ValueError, match="input_shape"):
        conv_matrix((6, 6), w)


def test_col2im_rejects_wrong_shape():
    with pytest.raises(ValueError, match="cols must have shape"):
        col2im(np.zeros((1, 10, 4)), (4, 4), 3)
    with pytest.raises(TypeError, match="output_size"):
        col2im(np.zeros((1, 9, 4)), 4, 3)


def test_im2col_conv_stays_under_workspace_limit():
    """The unchunked patch matrix here is 28 MiB; with a 1 MiB limit the peak stays near the limit."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 40, 40))        # 0.8 MiB
    w = rng.standard_normal((8, 16, 5, 5))
    full_patch = 4 * 16 * 25 * 36 * 36 * 8          # bytes, ~28 MiB
    ref = conv2d(x, w, algorithm="direct")
    gy = rng.standard_normal(ref.shape)
    old = convlab.set_workspace_limit(2**20)
    try:
        for run in (lambda: conv2d(x, w, algorithm="im2col"),
                    lambda: convlab.conv2d_backward(gy, x, w, algorithm="im2col")):
            tracemalloc.start()
            out = run()
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            # inputs/outputs/gradients are ~1-2 MiB; the patch matrix chunks add about 2x the limit
            assert peak < 6 * 2**20 < full_patch, peak
        np.testing.assert_allclose(conv2d(x, w, algorithm="im2col"), ref, atol=1e-10)
        np.testing.assert_allclose(out[0], convlab.conv2d_backward(gy, x, w, algorithm="direct")[0], atol=1e-10)
    finally:
        convlab.set_workspace_limit(old)
    assert convlab.workspace_limit() == old


def test_row_chunking_when_one_sample_exceeds_the_limit():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 8, 30, 30))
    w = rng.standard_normal((4, 4, 3, 3))
    ref = conv2d(x, w, padding=1, groups=2, stride=(2, 1), algorithm="direct")
    gy = rng.standard_normal(ref.shape)
    old = convlab.set_workspace_limit(8 * 8 * 9 * 30 * 3)  # three output rows of one sample
    try:
        np.testing.assert_allclose(conv2d(x, w, padding=1, groups=2, stride=(2, 1), algorithm="im2col"), ref,
                                   atol=1e-11)
        got = convlab.conv2d_backward(gy, x, w, padding=1, groups=2, stride=(2, 1), algorithm="im2col")
        want = convlab.conv2d_backward(gy, x, w, padding=1, groups=2, stride=(2, 1), algorithm="direct")
        for a, b in zip(got[:2], want[:2]):
            np.testing.assert_allclose(a, b, atol=1e-11)
    finally:
        convlab.set_workspace_limit(old)
    with pytest.raises(ValueError, match="nbytes"):
        convlab.set_workspace_limit(0)
