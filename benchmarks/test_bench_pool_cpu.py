"""CPU pooling 3x3/2 (pad 1): convlab forward and backward, PyTorch's forward as a peer when installed.
Each result is checked against convlab's float64 result on the same values before timing."""
import numpy as np
import pytest
from conftest import shapes

import convlab

SHAPES = shapes(full=[("64@112", (8, 64, 112, 112))], small=[("8@12", (2, 8, 12, 12))])
POOL = dict(kernel_size=3, stride=2, padding=1)
OPS = {
    "max_pool2d": (convlab.max_pool2d, convlab.max_pool2d_backward, "max_pool2d"),
    "avg_pool2d": (convlab.avg_pool2d, convlab.avg_pool2d_backward, "avg_pool2d"),
}


def _data(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return x, x.astype(np.float64)


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("name,shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_pool_forward(benchmark, name, shape, op, impl):
    forward, _, torch_name = OPS[op]
    x, x64 = _data(shape)
    ref = forward(x64, **POOL)
    if impl == "torch":
        torch = pytest.importorskip("torch")
        fn = getattr(torch.nn.functional, torch_name)
        t = torch.from_numpy(x)
        run = lambda: fn(t, **POOL)  # noqa: E731
        y = run().numpy()
    else:
        run = lambda: forward(x, **POOL)  # noqa: E731
        y = run()
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)
    benchmark.group = f"{op} forward {name}"
    benchmark(run)
    nbytes = (x.size + ref.size) * x.itemsize
    benchmark.extra_info["gbps"] = nbytes / benchmark.stats["min"] / 1e9 if benchmark.stats else None


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("name,shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_pool_backward(benchmark, name, shape, op):
    forward, backward, _ = OPS[op]
    x, x64 = _data(shape)
    g64 = np.random.default_rng(1).standard_normal(forward(x64, **POOL).shape)
    g = g64.astype(np.float32)
    ref = backward(g.astype(np.float64), x64, **POOL)
    np.testing.assert_allclose(backward(g, x, **POOL), ref, rtol=1e-5, atol=1e-5)
    benchmark.group = f"{op} backward {name}"
    benchmark(backward, g, x, **POOL)
    nbytes = (g.size + 2 * x.size) * x.itemsize
    benchmark.extra_info["gbps"] = nbytes / benchmark.stats["min"] / 1e9 if benchmark.stats else None
