"""The test matrix's fixtures: the array module (NumPy, and CuPy where a GPU is usable) and
the algorithm (every registered one, and "auto"). Tests see the cost-model constants shipped
with the package, not a machine's own fit (``convlab tune``)."""
import os

os.environ["CONVLAB_COST_CONSTANTS"] = os.path.join(os.path.dirname(__file__), "no-tuned-constants.json")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from convlab.conv import ALGORITHMS  # noqa: E402


try:
    import cupy
except ImportError:  # the matrix then runs on NumPy only
    cupy = None


def _cupy_device_error():
    try:
        return None if cupy.cuda.runtime.getDeviceCount() > 0 else "no CUDA device"
    except Exception as exc:  # no driver
        return f"CuPy is installed but has no usable CUDA device ({type(exc).__name__}: {exc})"


@pytest.fixture(params=["numpy"] + (["cupy"] if cupy is not None else []))
def xp(request):
    """The array module the operands live in: NumPy, and CuPy where it is installed."""
    if request.param == "numpy":
        return np
    reason = _cupy_device_error()
    if reason:
        pytest.skip(reason)
    return cupy


@pytest.fixture(params=tuple(ALGORITHMS) + ("auto",))
def algorithm(request):
    """Every algorithm of the registry, and "auto"; a test skips one that cannot serve its
    operands, with that algorithm's own reason (``oracles.serving``)."""
    return request.param
