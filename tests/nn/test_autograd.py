"""Autograd semantics: accumulation, graph order, retain_graph and freed graphs, no_grad,
detach, leaf gradients across backward calls, and ``needs=`` reaching the engine."""
import numpy as np
import pytest

import convlab
import convlab.nn as nn
import convlab.nn.functional as F
from convlab import GradcheckError
from convlab.nn import BackwardError, Tensor, no_grad
from convlab.nn import _functions as fn

from nn_helpers import check_grads, leaves

RNG = np.random.default_rng(11)


def test_check_grads_catches_a_wrong_backward(monkeypatch):
    """The oracle of test_functional_gradcheck can fail: a product whose backward is 1% off."""
    x, y = leaves(RNG.standard_normal(4), RNG.standard_normal(4))
    check_grads(lambda: x * y, [x, y])
    right = fn.Mul.backward
    monkeypatch.setattr(fn.Mul, "backward", lambda self, g: tuple(None if a is None else a * 1.01
                                                                  for a in right(self, g)))
    with pytest.raises(GradcheckError):
        check_grads(lambda: x * y, [x, y])


def test_a_tensor_used_several_times_accumulates():
    x = Tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    (x * x + x * 3.0 + x).sum().backward()
    assert np.array_equal(x.grad, 2 * x.data + 4)


def test_diamond_and_long_paths_are_ordered():
    """``b`` is reached by a short and a long path: its node must run after both."""
    x = Tensor(np.array([0.5, -1.5]), requires_grad=True)
    a = x * 2.0
    b = a * a                      # 4 x^2
    c = (b + 1.0) * a              # 8 x^3 + 2 x, via b and directly via a
    d = c + b * 3.0 + a            # 8 x^3 + 12 x^2 + 4 x
    d.sum().backward()
    v = x.data
    assert np.allclose(x.grad, 24 * v ** 2 + 24 * v + 4, rtol=1e-14)


def test_random_graphs_against_finite_differences():
    """Random DAGs over a pool of intermediates (many shared nodes) checked by central differences."""
    for seed in range(6):
        r = np.random.default_rng(seed)
        ops = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b * 0.5, lambda a, b: (a * b).tanh(),
               lambda a, b: a / (b * b + 1.0)]
        plan = [(r.integers(len(ops)), r.integers(0, 3 + i), r.integers(0, 3 + i)) for i in range(12)]
        xs = leaves(*(r.standard_normal((2, 3)) for _ in range(3)))

        def run():
            pool = list(xs)
            for k, i, j in plan:
                pool.append(ops[k](pool[i], pool[j]))
            return pool[-1] + pool[-4] * pool[-3]

        check_grads(run, xs)


def test_retain_graph_allows_a_second_backward():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert np.array_equal(x.grad, 4 * x.data)


def test_second_backward_through_a_freed_graph_raises():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    loss = (x.tanh() * x).sum()
    loss.backward()
    with pytest.raises(BackwardError, match="retain_graph") as info:
        loss.backward()
    assert isinstance(info.value, RuntimeError) and isinstance(info.value, ValueError)
    assert issubclass(BackwardError, RuntimeError) and issubclass(BackwardError, ValueError)


def test_nodes_free_their_residuals_after_backward():
    x = Tensor(RNG.standard_normal((1, 1, 4, 4)), requires_grad=True)
    y = F.max_pool2d(F.conv2d(x, RNG.standard_normal((1, 1, 3, 3)), padding=1), 2)
    node = y.grad_fn
    assert node.indices is not None
    y.sum().backward()
    assert node.freed and not hasattr(node, "indices") and not hasattr(node, "x")


def test_backward_on_a_non_scalar_needs_grad():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    y = x * 2.0
    with pytest.raises(BackwardError, match=r"non-scalar.*\(2, 3\)"):
        y.backward()
    g = RNG.standard_normal((2, 3))
    y.backward(g)
    assert np.array_equal(x.grad, 2 * g)


def test_backward_grad_of_the_wrong_shape_or_kind():
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ValueError, match="grad must have the tensor's shape"):
        (x * 2.0).backward(np.ones((3, 2)))
    with pytest.raises(TypeError, match="grad must be an array"):
        (x * 2.0).backward([[1.0] * 3] * 2)


def test_backward_on_a_tensor_without_grad_raises():
    with pytest.raises(BackwardError, match="does not require grad"):
        (Tensor(np.ones(3)) * 2.0).sum().backward()


def test_no_grad_records_nothing():
    x = Tensor(np.ones(3), requires_grad=True)
    with no_grad():
        y = (x * 2.0).sum()
        assert not nn.is_grad_enabled()
    assert nn.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None and y.is_leaf
    with pytest.raises(BackwardError):
        y.backward()

    @no_grad()
    def evaluate(t):
        return t * 3.0

    z = evaluate(x)
    assert not z.requires_grad and z.grad_fn is None and nn.is_grad_enabled()
    with pytest.raises(KeyError):
        with no_grad():
            raise KeyError("inside")
    assert nn.is_grad_enabled()


def test_detach_cuts_the_graph_and_shares_data():
    x = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    d = x.detach()
    assert d.data is x.data and not d.requires_grad and d.grad_fn is None
    (x * x.detach()).sum().backward()
    assert np.array_equal(x.grad, x.data)  # d(x*c)/dx = c, not 2x


def test_leaf_grad_accumulates_across_backward_calls_until_zeroed():
    x = Tensor(np.array([1.0, -1.0]), requires_grad=True)
    (x * 3.0).sum().backward()
    first = x.grad.copy()
    (x * 3.0).sum().backward()
    assert np.array_equal(x.grad, 2 * first)
    x.zero_grad()
    assert x.grad is None
    layer = nn.Linear(2, 1)
    for _ in range(2):
        layer(Tensor(np.ones((1, 2), np.float32))).sum().backward()
    assert np.allclose(layer.bias.grad, [2.0])
    layer.zero_grad()
    assert all(p.grad is None for p in layer.parameters())


def test_only_tensors_that_require_grad_receive_it():
    x, w = Tensor(RNG.standard_normal((2, 3))), Tensor(RNG.standard_normal((4, 3)), requires_grad=True)
    F.linear(x, w).sum().backward()
    assert x.grad is None and w.grad is not None
    assert np.allclose(w.grad, np.broadcast_to(x.data.sum(axis=0), (4, 3)))


def test_float32_graphs_keep_float32_gradients():
    layer = nn.Conv2d(2, 3, 3)
    x = Tensor(RNG.standard_normal((1, 2, 5, 5)).astype(np.float32), requires_grad=True)
    F.cross_entropy(layer(x).mean(axis=(2, 3)), np.array([1])).backward()
    assert x.grad.dtype == np.float32 and layer.weight.grad.dtype == np.float32


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.arange(3), requires_grad=True)
    with pytest.raises(TypeError, match="floating-point"):
        Tensor(np.arange(3)).requires_grad_()
    assert Tensor([1.5, 2.0]).dtype == np.float32  # Python floats: PyTorch's default dtype


def test_long_chains_do_not_recurse():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0 + 0.0
    y.sum().backward()
    assert x.grad[0] == 1.0


# ----------------------------------------------------------------------------- needs= reaches the engine


@pytest.fixture
def recorded(monkeypatch):
    """Record the ``needs`` each engine backward is called with and what it returns."""
    calls = []

    def spy(name, module):
        real = getattr(module, name)

        def wrapped(*args, **kwargs):
            out = real(*args, **kwargs)
            calls.append((name, kwargs.get("needs"), out))
            return out

        monkeypatch.setattr(module, name, wrapped)

    for name in ("conv_backward", "conv_transpose_backward"):
        spy(name, convlab.conv)
    for name in ("local_conv_backward", "tiled_conv_backward"):
        spy(name, convlab.local)
    spy("separable_conv_backward", convlab.separable)
    return calls


def test_first_layer_conv_does_not_compute_grad_x(recorded):
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 2, 3, bias=False))
    x = Tensor(RNG.standard_normal((1, 2, 7, 7)).astype(np.float32))
    net(x).sum().backward()
    (second, needs2, out2), (first, needs1, out1) = recorded  # backward runs last layer first
    assert needs2 == (True, True, False) and out2[0] is not None and out2[2] is None
    assert needs1 == (False, True, True) and out1[0] is None and out1[1] is not None and out1[2] is not None
    assert x.grad is None


def test_frozen_weights_are_not_computed(recorded):
    layer = nn.ConvTranspose2d(2, 3, 3, stride=2)
    layer.weight.requires_grad_(False)
    x = Tensor(RNG.standard_normal((1, 2, 3, 3)).astype(np.float32), requires_grad=True)
    layer(x).sum().backward()
    [(name, needs, out)] = recorded
    assert name == "conv_transpose_backward" and needs == (True, False, True)
    assert out[1] is None and layer.weight.grad is None and x.grad is not None


@pytest.mark.parametrize("family", ["local", "tiled", "separable"])
def test_other_families_receive_needs(recorded, family):
    x = Tensor(RNG.standard_normal((1, 2, 5, 5)))
    if family == "local":
        w = Tensor(RNG.standard_normal((2, 3, 3, 2, 3, 3)), requires_grad=True)
        y = F.local_conv2d(x, w)
    elif family == "tiled":
        w = Tensor(RNG.standard_normal((2, 2, 2, 2, 3, 3)), requires_grad=True)
        y = F.tiled_conv2d(x, w, np.zeros(2))
    else:
        w = Tensor(RNG.standard_normal((2, 2, 3)), requires_grad=True)
        y = F.separable_conv2d(x, [w, Tensor(RNG.standard_normal((2, 2, 3)))])
    y.sum().backward()
    [(name, needs, out)] = recorded
    assert needs == (False, True, False) and out[0] is None and out[1] is not None and out[2] is None
