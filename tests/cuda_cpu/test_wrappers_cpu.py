"""The checks the Python wrappers of convlab/cuda make before a launch, run without CuPy: the
operands are stand-ins that carry a shape, a dtype and a device, and the wrappers' kernel
lookup is replaced, so the test reaches exactly the checks that must stop a bad launch."""
import types

import numpy as np
import pytest

from convlab._params import conv_shape_args, make_geometry
from convlab.cuda import conv, pool


class FakeDeviceArray:
    """Shape, dtype and ``device.id`` of a CuPy array; nothing else (any launch would fail)."""

    def __init__(self, shape, dtype=np.float32, device=0):
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)
        self.device = types.SimpleNamespace(id=device)
        self.size = int(np.prod(shape))


@pytest.fixture
def no_cupy_needed(monkeypatch):
    for module in (conv, pool):  # the device checks come before any use of the kernels
        monkeypatch.setattr(module, "require_kernels", lambda x, what, nd=None: None)


@pytest.mark.parametrize("op,first,second", [("forward", "x", "w"), ("grad_input", "grad_y", "w"),
                                              ("grad_weight", "grad_y", "x")])
def test_conv_operands_must_share_a_device(no_cupy_needed, op, first, second):
    args = conv_shape_args((2, 3, 8, 8), (4, 3, 3, 3), 1, 1, 1, 1, 2)
    shapes = {"x": (2, 3, 8, 8), "w": (4, 3, 3, 3), "grad_y": (2, 4, 8, 8)}
    a, b = FakeDeviceArray(shapes[first], device=0), FakeDeviceArray(shapes[second], device=1)
    with pytest.raises(ValueError, match=f"{second} is on device 1 but {first} is on device 0"):
        getattr(conv, op)(a, b, args)


def test_pool_backward_operands_must_share_a_device_and_dtype(no_cupy_needed):
    geom = make_geometry((8, 8), (2, 2), (2, 2), (1, 1), ((0, 0), (0, 0)))
    x, gy = FakeDeviceArray((2, 3, 8, 8)), FakeDeviceArray((2, 3, 4, 4))
    with pytest.raises(ValueError, match="grad_y is on device 1"):
        pool.avg_pool2d_backward(FakeDeviceArray((2, 3, 4, 4), device=1), x, geom)
    with pytest.raises(ValueError, match="indices is on device 1"):
        pool.max_pool2d_backward(gy, x, geom, indices=FakeDeviceArray((2, 3, 4, 4), np.int64, device=1))
    with pytest.raises(ValueError, match="y is on device 1"):
        pool.lp_pool2d_backward(gy, x, 2, geom, y=FakeDeviceArray((2, 3, 4, 4), device=1))
    with pytest.raises(TypeError, match="y has dtype float64 but x has dtype float32"):
        pool.lp_pool2d_backward(gy, x, 2, geom, y=FakeDeviceArray((2, 3, 4, 4), np.float64))
