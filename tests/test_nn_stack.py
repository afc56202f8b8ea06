"""nn.stack and nn.cat of several tensors: values and gradients against NumPy."""
import numpy as np

from convlab import nn


def test_stack_and_cat_of_three_tensors():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((2, 3)) for _ in range(3)]
    ts = [nn.Tensor(a, requires_grad=True) for a in arrays]
    s = nn.stack(ts, dim=1)
    np.testing.assert_array_equal(s.data, np.stack(arrays, axis=1))
    w = rng.standard_normal(s.shape)
    (s * nn.Tensor(w)).sum().backward()
    for i, t in enumerate(ts):
        np.testing.assert_array_equal(t.grad, w[:, i])
    c = nn.cat([nn.Tensor(a) for a in arrays], dim=0)
    np.testing.assert_array_equal(c.data, np.concatenate(arrays, axis=0))
