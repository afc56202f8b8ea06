import numpy as np

import convlab


def test_conv2d_matches_naive_oracle():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 5))
    w = rng.standard_normal((4, 3, 3, 2))
    ref = convlab.conv2d(x, w, algorithm="naive")
    for algo in ("direct", "im2col", "auto"):
        np.testing.assert_allclose(convlab.conv2d(x, w, algorithm=algo), ref, rtol=1e-12, atol=1e-12)
