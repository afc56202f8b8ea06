"""CPU convolution: each algorithm on the same layer, checked against the float64 reference first."""
import math

import numpy as np
import pytest
from conftest import shapes

import convlab

LAYERS = shapes(
    full=[("resnet3x3_64@56", (8, 64, 56, 56), (64, 64, 3, 3), 1),
          ("resnet3x3_256@14", (8, 256, 14, 14), (256, 256, 3, 3), 1)],
    small=[("small3x3_8@12", (2, 8, 12, 12), (8, 8, 3, 3), 1)],
)


@pytest.mark.parametrize("algorithm", ["direct", "im2col"])
@pytest.mark.parametrize("name,x_shape,w_shape,pad", LAYERS, ids=[layer[0] for layer in LAYERS])
def test_conv2d_forward(benchmark, name, x_shape, w_shape, pad, algorithm):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / math.sqrt(math.prod(w_shape[1:]))).astype(np.float32)
    ref = convlab.conv2d(x.astype(np.float64), w.astype(np.float64), padding=pad, algorithm="direct")
    y = convlab.conv2d(x, w, padding=pad, algorithm=algorithm)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    benchmark.group = f"conv2d forward {name}"
    flops = 2.0 * math.prod(y.shape) * math.prod(w_shape[1:])
    benchmark(convlab.conv2d, x, w, padding=pad, algorithm=algorithm)
    benchmark.extra_info["gflops"] = flops / benchmark.stats["min"] / 1e9 if benchmark.stats else None
