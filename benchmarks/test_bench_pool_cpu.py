"""CPU pooling, 3x3/2 pad 1 and 2x2/2 over (8, 64, 112, 112): convlab and PyTorch (two threads),
forward and backward, max (the backward through the forward's indices, as a network runs it),
average and L2. Each result is checked against convlab's float64 result on the same values
(and PyTorch's against it too) before timing."""
import os

import numpy as np
import pytest
from conftest import shapes

import convlab

SHAPES = shapes(full=[("64@112", (8, 64, 112, 112))], small=[("8@12", (2, 8, 12, 12))])
WINDOWS = {"3x3/2 pad 1": dict(kernel_size=3, stride=2, padding=1), "2x2/2": dict(kernel_size=2, stride=2)}
OPS = ("max_pool2d", "avg_pool2d", "lp_pool2d")


def _data(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return x, x.astype(np.float64)


def _ours(op, kw):
    """``(forward, backward(g, x, y_and_indices))`` of convlab."""
    if op == "max_pool2d":
        return (lambda x: convlab.max_pool2d(x, return_indices=True, **kw),
                lambda g, x, out: convlab.max_pool2d_backward(g, x, indices=out[1], **kw))
    if op == "lp_pool2d":
        return (lambda x: convlab.lp_pool2d(x, 2, **kw), lambda g, x, out: convlab.lp_pool2d_backward(g, x, 2, **kw))
    return (lambda x: convlab.avg_pool2d(x, **kw), lambda g, x, out: convlab.avg_pool2d_backward(g, x, **kw))


def _torch(op, kw):
    """PyTorch's forward and backward (autograd through the same op), or a skip reason."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(os.cpu_count() or 1)
    F = torch.nn.functional
    if op == "lp_pool2d" and kw.get("padding"):
        pytest.skip("PyTorch's lp_pool2d has no padding")
    fn = {"max_pool2d": lambda t: F.max_pool2d(t, **kw), "avg_pool2d": lambda t: F.avg_pool2d(t, **kw),
          "lp_pool2d": lambda t: F.lp_pool2d(t, 2, kw["kernel_size"], kw["stride"])}[op]
    return torch, fn


def _value(out):
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("window", sorted(WINDOWS))
@pytest.mark.parametrize("name,shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_pool_forward(benchmark, name, shape, window, op, impl):
    kw = WINDOWS[window]
    x, x64 = _data(shape)
    forward, _ = _ours(op, kw)
    ref = _value(forward(x64))
    if impl == "torch":
        torch, fn = _torch(op, kw)
        t = torch.from_numpy(x)
        run = lambda: fn(t)  # noqa: E731
        y = run().numpy()
    else:
        run = lambda: forward(x)  # noqa: E731
        y = _value(run())
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)
    benchmark.group = f"{op} {window} forward {name}"
    benchmark.extra_info["algorithm"] = impl
    benchmark(run)
    nbytes = (x.size + ref.size) * x.itemsize
    benchmark.extra_info["gbps"] = nbytes / benchmark.stats["min"] / 1e9 if benchmark.stats else None


@pytest.mark.parametrize("impl", ["convlab", "torch"])
@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("window", sorted(WINDOWS))
@pytest.mark.parametrize("name,shape", SHAPES, ids=[s[0] for s in SHAPES])
def test_pool_backward(benchmark, name, shape, window, op, impl):
    kw = WINDOWS[window]
    x, x64 = _data(shape)
    forward, backward = _ours(op, kw)
    out64 = forward(x64)
    g64 = np.random.default_rng(1).standard_normal(_value(out64).shape)
    g = g64.astype(np.float32)
    ref = backward(g64, x64, out64)
    if impl == "torch":
        torch, fn = _torch(op, kw)
        xt = torch.from_numpy(x).requires_grad_()
        yt = fn(xt)
        gt = torch.from_numpy(g)
        run = lambda: torch.autograd.grad(yt, xt, gt, retain_graph=True)[0]  # noqa: E731
        gx = run().numpy()
    else:
        out = forward(x)
        run = lambda: backward(g, x, out)  # noqa: E731
        gx = run()
    np.testing.assert_allclose(gx, ref, rtol=1e-4, atol=1e-4)
    benchmark.group = f"{op} {window} backward {name}"
    benchmark.extra_info["algorithm"] = impl
    benchmark(run)
    nbytes = (g.size + 2 * x.size) * x.itemsize
    benchmark.extra_info["gbps"] = nbytes / benchmark.stats["min"] / 1e9 if benchmark.stats else None
