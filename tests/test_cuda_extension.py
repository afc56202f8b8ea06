"""CPU-side checks of the CUDA extension and the GPU dispatch (no GPU needed).

The extension must import on a machine without a GPU or driver and say why it cannot run;
NumPy arrays must never be routed to it.
"""
import numpy as np
import pytest

import convlab
from convlab import _backend
from convlab.conv import ALGORITHMS, _choose
from convlab._params import conv_shape_args


def _no_device_reason():
    try:
        devices = _backend.kernels().devices()
    except RuntimeError as exc:
        return str(exc)
    return None if devices else "no CUDA device found"


def test_backend_info_reports_the_extension_or_why_not():
    info = convlab.backend_info()
    assert info["cuda_extension"] == (_backend.kernels() is not None)
    if _backend.kernels() is None:
        assert "convlab._C" in info["cuda_extension_unavailable_reason"]
        assert info["cuda_unavailable_reason"]
    else:
        assert info["cuda_extension_unavailable_reason"] is None
        assert set(info["cuda_kernel_versions"]) == {"conv2d", "pool2d", "im2col"}
        assert all(v >= 1 for v in info["cuda_kernel_versions"].values())
        assert info["cuda_build"]["archs"]


def test_extension_imports_without_a_gpu_and_says_why():
    if _backend.kernels() is None:
        pytest.skip(f"the CUDA extension is not built here: {_backend.kernels_error()}")
    import convlab._C as C  # must not need a driver or a device

    reason = _no_device_reason()
    if reason is None:
        pytest.skip("a CUDA device is present; tests/gpu covers this machine")
    assert "cuda" in reason.lower()  # CUDA's own error name/text, e.g. cudaErrorNoDevice
    assert convlab.backend_info()["cuda_unavailable_reason"] == reason
    # A kernel call raises RuntimeError carrying CUDA's error text, not a crash.
    shape = (1, 1, 4, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(RuntimeError, match="cuda"):
        C.conv2d("forward", 1, "float32", 0, 0, 0, 0, 0, 0, 0, shape)
    with pytest.raises(RuntimeError, match="cuda"):
        C.conv2d_workspace("forward", 2, "float32", 0, shape)


def test_extension_rejects_bad_arguments_before_touching_the_device():
    if _backend.kernels() is None:
        pytest.skip(f"the CUDA extension is not built here: {_backend.kernels_error()}")
    C = _backend.kernels()
    good = (1, 1, 4, 4, 1, 3, 3, 2, 2, 1, 1, 0, 0, 1, 1, 1)
    with pytest.raises(ValueError, match="16 ints"):
        C.conv2d("forward", 1, "float32", 0, 0, 0, 0, 0, 0, 0, good[:-1])
    with pytest.raises(ValueError, match="version"):
        C.conv2d("forward", 99, "float32", 0, 0, 0, 0, 0, 0, 0, good)
    with pytest.raises(ValueError, match="dtype"):
        C.conv2d("forward", 1, "float16", 0, 0, 0, 0, 0, 0, 0, good)
    with pytest.raises(ValueError, match="op"):
        C.conv2d("sideways", 1, "float32", 0, 0, 0, 0, 0, 0, 0, good)
    with pytest.raises(ValueError, match="groups"):
        C.conv2d("forward", 1, "float32", 0, 0, 0, 0, 0, 0, 0, good[:-1] + (2,))
    with pytest.raises(ValueError, match="2\\*\\*31"):
        C.conv2d("forward", 1, "float32", 0, 0, 0, 0, 0, 0, 0, (2**16, 2**16) + good[2:])
    window = (2, 5, 5, 3, 3, 3, 3, 1, 1, 0, 0, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="mode"):
        C.pool2d_forward("median", 1, "float32", 0, 0, 0, 0, 0, window)
    with pytest.raises(ValueError, match="p > 0"):
        C.pool2d_forward("lp", 1, "float32", 0, 0, 0, 0, 0, window, p=-1.0)
    with pytest.raises(ValueError, match="indices"):
        C.pool2d_backward("max", 1, "float32", 0, 0, 0, 0, 0, 0, 0, window)


def test_numpy_arrays_never_go_to_the_cuda_algorithm():
    x = np.zeros((1, 2, 5, 5))
    w = np.zeros((3, 2, 3, 3))
    args = conv_shape_args(x.shape, w.shape, 1, 0, 1, 1, 2)
    assert _choose(args, x, w).algorithm != "cuda"
    assert "CuPy arrays" in ALGORITHMS["cuda"].prepare(x, w, args)
    with pytest.raises(ValueError, match="CuPy arrays"):
        convlab.conv2d(x, w, algorithm="cuda")
    with pytest.raises(ValueError, match="CuPy arrays"):
        convlab.conv2d_backward(np.zeros((1, 3, 3, 3)), x, w, algorithm="cuda")
    assert "CuPy arrays" in _backend.kernels_unavailable(x, 2)


def test_cuda_algorithm_says_it_has_no_3d_kernel():
    args = conv_shape_args((1, 2, 4, 4, 4), (3, 2, 2, 2, 2), 1, 0, 1, 1, 3)
    assert "3-d" in ALGORITHMS["cuda"].supports(args)
    assert "3-d" in _backend.kernels_unavailable(np.zeros(1), 3)
