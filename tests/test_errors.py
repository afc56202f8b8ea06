"""Bad input gets a ValueError/TypeError that names the argument (and the shapes)."""
import numpy as np
import pytest

import convlab
from convlab import choose_algorithm, conv1d, conv2d, conv2d_backward, conv3d, conv_transpose2d

X = np.zeros((2, 4, 8, 8))
W = np.zeros((6, 4, 3, 3))


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(w=np.zeros((6, 3, 3, 3))), ValueError, r"channel mismatch.*\(2, 4, 8, 8\).*\(6, 3, 3, 3\)"),
    (dict(w=np.zeros((6, 2, 3, 3)), groups=3), ValueError, "groups=3 must divide the input channels C=4"),
    (dict(w=np.zeros((5, 2, 3, 3)), groups=2), ValueError, "groups=2 must divide the output channels K=5"),
    (dict(groups=0), ValueError, "groups must be >= 1"),
    (dict(groups=1.5), TypeError, "groups must be an int"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(stride=(1, 0)), ValueError, "stride must be >= 1"),
    (dict(dilation=-1), ValueError, "dilation must be >= 1"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(padding=((0, -1), (1, 1))), ValueError, "padding must be >= 0"),
    (dict(padding="half"), ValueError, "padding string must be one of"),
    (dict(padding=(1, 1, 1)), ValueError, "padding must be an int or 2 ints"),
    (dict(stride=(1, 2, 3)), ValueError, "stride must be an int or 2 ints"),
    (dict(padding=((1, 1),)), ValueError, r"padding as pairs must be 2 \(lo, hi\) pairs"),
    (dict(padding=1.0), TypeError, "padding must be an int"),
    (dict(stride=True), TypeError, "stride must be an int"),
    (dict(algorithm="winograd", stride=2), ValueError, "winograd.* needs stride 1"),
    (dict(algorithm="fastest"), ValueError, "unknown algorithm 'fastest'"),
    (dict(algorithm=3), TypeError, "algorithm must be a string"),
    (dict(flip="yes"), TypeError, "flip must be a bool"),
    (dict(x=np.zeros((4, 8, 8))), ValueError, r"x must have 4 dims.*\(4, 8, 8\)"),
    (dict(w=np.zeros((6, 4, 3))), ValueError, r"w must have 4 dims.*\(6, 4, 3\)"),
    (dict(b=np.zeros(5)), ValueError, r"b must have shape \(6,\)"),
    (dict(b=np.zeros((6, 1))), ValueError, r"b must have shape \(6,\)"),
    (dict(x=np.zeros((2, 4, 8, 8), dtype=np.int64)), TypeError, "x must be float32 or float64"),
    (dict(x=np.zeros((2, 4, 8, 8), dtype=np.complex128)), TypeError, "x must be float32 or float64"),
    (dict(w=np.zeros((6, 4, 3, 3), dtype=np.int32)), TypeError, "w must be float32 or float64"),
    (dict(x=[[[[0.0]]]]), TypeError, "x must be a NumPy or CuPy array"),
    (dict(b=[0.0] * 6), TypeError, "b must be a NumPy or CuPy array"),
    (dict(w=np.zeros((6, 4, 3, 3), dtype=np.float32)), TypeError, "w has dtype float32 but x has dtype float64"),
    (dict(w=np.zeros((6, 4, 9, 3))), ValueError, r"kernel larger than the padded input.*\(8, 8\).*\(9, 3\)"),
    (dict(w=np.zeros((6, 4, 5, 3)), dilation=2), ValueError, r"kernel larger than the padded input.*\(9, 5\)"),
    (dict(w=np.zeros((6, 4, 0, 3))), ValueError, "kernel sizes must be >= 1"),
])
def test_conv2d_bad_arguments(kwargs, exc, match):
    args = dict(x=X, w=W)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        conv2d(**args)


def test_kernel_equal_to_padded_input_is_fine():
    assert conv2d(X, np.zeros((1, 4, 10, 10)), padding=1).shape == (2, 1, 1, 1)


def test_backward_checks_grad_y():
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 6, 6, 6\).*got \(2, 6, 8, 8\)"):
        conv2d_backward(np.zeros((2, 6, 8, 8)), X, W)
    with pytest.raises(TypeError, match="grad_y has dtype float32"):
        conv2d_backward(np.zeros((2, 6, 6, 6), np.float32), X, W)
    with pytest.raises(TypeError, match="grad_y must be a NumPy or CuPy array"):
        conv2d_backward(None, X, W)


def test_wrong_number_of_spatial_dims_per_family():
    with pytest.raises(ValueError, match="x must have 3 dims"):
        conv1d(X, W)
    with pytest.raises(ValueError, match="x must have 5 dims"):
        conv3d(X, W)


def test_transpose_bad_arguments():
    x = np.zeros((1, 4, 5, 5))
    w = np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match="output_padding"):
        conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="padding must be an int, per-dim ints or"):
        conv_transpose2d(x, w, padding="same")
    with pytest.raises(ValueError, match="channel mismatch: x has C_in=4"):
        conv_transpose2d(x, np.zeros((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="groups=3 must divide"):
        conv_transpose2d(x, w, groups=3)
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        conv_transpose2d(x, w, np.zeros(2), groups=2)  # C_out = 2 * groups
    with pytest.raises(ValueError, match="not positive"):
        conv_transpose2d(x, w, padding=8)


def test_choose_algorithm_validates_and_explains():
    choice = choose_algorithm((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert choice.algorithm in convlab.conv.ALGORITHMS and choice.reason
    measured = choose_algorithm((2, 4, 9, 9), (4, 4, 3, 3), padding=1, measure=True)
    assert measured.reason.startswith("measured") and measured is choose_algorithm(
        (2, 4, 9, 9), (4, 4, 3, 3), padding=1, measure=True)
    with pytest.raises(ValueError, match="x_shape must have 3 to 5 dims"):
        choose_algorithm((8, 64), (64, 64))
    with pytest.raises(ValueError, match="channel mismatch"):
        choose_algorithm((8, 3, 9, 9), (4, 4, 3, 3))


def test_mixed_array_modules_are_rejected():
    class NotAnArray:
        shape, dtype, ndim = (2, 4, 8, 8), np.float64, 4

    with pytest.raises(TypeError, match="x must be a NumPy or CuPy array, got NotAnArray"):
        conv2d(NotAnArray(), W)


def test_unexpected_arguments_name_the_public_function():
    with pytest.raises(TypeError, match=r"^conv2d\(\) got an unexpected keyword argument 'padding_mode'"):
        conv2d(X, W, padding_mode="reflect")
    with pytest.raises(TypeError, match=r"^conv_transpose2d\(\) missing a required argument: 'w'"):
        conv_transpose2d(X)
    with pytest.raises(TypeError, match=r"^max_pool1d\(\) too many positional arguments"):
        convlab.max_pool1d(np.zeros((1, 1, 8)), 2, 2, 0, 1, False, False, 3)
    with pytest.raises(TypeError, match="x must be float32 or float64"):  # errors from inside pass through
        conv2d(X.astype(np.int32), W)


def test_col2im_output_size_is_the_spatial_size():
    with pytest.raises(ValueError, match=r"output_size must hold the 2 spatial sizes .* got \(1, 1, 6, 6\) \(the "
                                         r"spatial size only, not the \(N, C, \*spatial\) shape\)"):
        convlab.col2im(np.zeros((1, 9, 16)), (1, 1, 6, 6), (3, 3))
