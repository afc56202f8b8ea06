"""Training steps of convlab.nn against PyTorch CPU (the same structure, the same weights).

Three workloads, float32:
- ``fashion-cnn``: the CNN of :mod:`convlab.experiments.fashion_cnn` on a batch of 64
  1x28x28 images: forward, cross-entropy, backward, SGD step (momentum 0.9).
- ``digits-cnn``: the same CNN on a batch of 64 1x8x8 images (the digits the experiments
  fall back to): small enough that the per-call cost of every op dominates.
- ``resnet-block``: a ResNet basic block ``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + x)`` at
  64@56x56, N=8: forward, a fixed random projection of the output as the loss, backward.

Before timing, both peers compute the loss and every gradient from the same weights in
float64 on small shapes (they must agree to 1e-8), and the loss on the timed shape in
float32. PyTorch runs with two threads (``torch.set_num_threads(2)``).

convlab's ``extra_info`` splits a step: ``engine_ms`` is the time inside the graph nodes'
``forward``/``backward`` (the engine calls and the array arithmetic a step cannot avoid)
plus the optimiser's update; ``overhead_fraction`` is the rest of the step (graph
recording, topological order, gradient routing, Module calls) as a fraction of the step.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import SMALL

from convlab import nn, optim
from convlab.experiments.fashion_cnn import model as fashion_model
from convlab.nn import functional as F
from convlab.nn.tensor import Function

IMPLS = ["convlab", "torch"]
SETTLE_SECONDS = 0.2  # let the previous benchmark's idle library threads stop spinning


# ----------------------------------------------------------------------------- models


class BasicBlock(nn.Module):
    """ResNet basic block with an identity shortcut: ``(N, C, H, W) -> (N, C, H, W)``."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


def torch_fashion(torch, width):
    tnn = torch.nn
    return tnn.Sequential(
        tnn.Conv2d(1, width, 3, padding=1), tnn.BatchNorm2d(width), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(width, 2 * width, 3, padding=1), tnn.BatchNorm2d(2 * width), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(2 * width, 10))


def torch_block(torch, channels):
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn1 = tnn.BatchNorm2d(channels)
            self.conv2 = tnn.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bn2 = tnn.BatchNorm2d(channels)

        def forward(self, x):
            f = tnn.functional
            return f.relu(self.bn2(self.conv2(f.relu(self.bn1(self.conv1(x))))) + x)

    return Block()


# Each workload: the convlab model, the PyTorch model, the timed and the checked input shapes,
# whether it is a classifier (cross-entropy and an SGD step) and how many timed rounds.
WORKLOADS = {
    "fashion-cnn": dict(ours=lambda: fashion_model(width=16), peer=lambda torch: torch_fashion(torch, 16),
                        shape=(64, 1, 28, 28), small=(4, 1, 10, 10), classifier=True, rounds=10),
    "digits-cnn": dict(ours=lambda: fashion_model(width=16), peer=lambda torch: torch_fashion(torch, 16),
                       shape=(64, 1, 8, 8), small=(4, 1, 8, 8), classifier=True, rounds=50),
    "resnet-block": dict(ours=lambda: BasicBlock(64), peer=lambda torch: torch_block(torch, 64),
                         shape=(8, 64, 56, 56), small=(2, 64, 6, 6), classifier=False, rounds=5),
}


# ----------------------------------------------------------------------------- steps


def _data(work, shape, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    if work["classifier"]:
        return x, rng.integers(0, 10, shape[0])
    return x, rng.standard_normal(shape).astype(dtype)  # the loss is <output, target>


def _convlab_step(work, dtype, x, target):
    """``(step, net)``: ``step()`` runs one training step and returns the loss as a float."""
    nn.manual_seed(0)
    net = work["ours"]().to(dtype)
    opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step():
        out = net(nn.Tensor(x))
        loss = F.cross_entropy(out, target) if work["classifier"] else (out * nn.Tensor(target)).sum()
        opt.zero_grad()
        loss.backward()
        if work["classifier"]:
            opt.step()
        return loss.item()

    return step, net, opt


def _torch_step(torch, work, net, x, target):
    """The same step in PyTorch, from convlab ``net``'s weights (its state_dict as plain arrays)."""
    dtype = {np.float32: torch.float32, np.float64: torch.float64}[x.dtype.type]
    peer = work["peer"](torch).to(dtype)
    peer.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()})
    opt = torch.optim.SGD(peer.parameters(), lr=0.01, momentum=0.9)
    tx = torch.from_numpy(x)
    tt = torch.from_numpy(target)

    def step():
        out = peer(tx)
        loss = torch.nn.functional.cross_entropy(out, tt) if work["classifier"] else (out * tt).sum()
        opt.zero_grad()
        loss.backward()
        if work["classifier"]:
            opt.step()
        return loss.item()

    return step, peer


def _check_against_torch(torch, work):
    """float64, small shapes: the same loss and the same gradient of every parameter, two steps."""
    x, target = _data(work, work["small"], np.float64)
    ours, net, _ = _convlab_step(work, np.float64, x, target)
    theirs, peer = _torch_step(torch, work, net, x, target)
    for _ in range(2):
        np.testing.assert_allclose(ours(), theirs(), rtol=1e-8)
        grads = dict(peer.named_parameters())
        for name, p in net.named_parameters():
            np.testing.assert_allclose(p.grad, grads[name].grad.numpy(), rtol=1e-7, atol=1e-10, err_msg=name)


# ----------------------------------------------------------------------------- the split of a step


class _NodeClock:
    """Adds up the time spent inside every Function's ``forward`` and ``backward`` while active."""

    def __init__(self):
        self.seconds = 0.0
        self.saved = []

    def _wrap(self, method):
        clock = self

        def timed(*args):
            t0 = time.perf_counter()
            try:
                return method(*args)
            finally:
                clock.seconds += time.perf_counter() - t0

        return timed

    def __enter__(self):
        classes, stack = set(), [Function]
        while stack:
            for sub in stack.pop().__subclasses__():
                if sub not in classes:
                    classes.add(sub)
                    stack.append(sub)
        for cls in classes:
            for name in ("forward", "backward"):
                if name in cls.__dict__:
                    self.saved.append((cls, name, cls.__dict__[name]))
                    setattr(cls, name, self._wrap(cls.__dict__[name]))
        return self

    def __exit__(self, *exc):
        for cls, name, method in self.saved:
            setattr(cls, name, method)


def _split(step, opt, repeats):
    """``(step seconds, engine seconds)`` of the fastest of ``repeats`` instrumented steps; the
    engine's share is the time inside the graph nodes plus the optimiser's update."""
    clock = _NodeClock()
    update = opt.step
    spent = [0.0]

    def timed_update():
        t0 = time.perf_counter()
        update()
        spent[0] += time.perf_counter() - t0

    opt.step = timed_update
    best = None
    try:
        with clock:
            for _ in range(repeats):
                clock.seconds = spent[0] = 0.0
                t0 = time.perf_counter()
                step()
                total = time.perf_counter() - t0
                if best is None or total < best[0]:
                    best = (total, clock.seconds + spent[0])
    finally:
        del opt.step
    return best


# ----------------------------------------------------------------------------- the benchmark


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_train_step(benchmark, workload, impl):
    work = WORKLOADS[workload]
    torch = pytest.importorskip("torch") if impl == "torch" else None
    shape = work["small"] if SMALL else work["shape"]
    x, target = _data(work, shape, np.float32)
    step, net, opt = _convlab_step(work, np.float32, x, target)
    if torch is not None:
        torch.set_num_threads(2)
        _check_against_torch(torch, work)
        peer_step, _ = _torch_step(torch, work, net, x, target)
        np.testing.assert_allclose(peer_step(), step(), rtol=1e-4)  # float32, the timed shape, same weights
        step = peer_step
    benchmark.group = f"train step {workload} {'x'.join(map(str, shape))}"
    benchmark.extra_info["algorithm"] = impl
    if not benchmark.disabled:
        time.sleep(SETTLE_SECONDS)
    benchmark.pedantic(step, rounds=1 if SMALL else work["rounds"], warmup_rounds=1)
    if impl == "convlab":
        if not benchmark.disabled:
            time.sleep(SETTLE_SECONDS)
        total, engine = _split(step, opt, repeats=1 if SMALL else 3)
        benchmark.extra_info["step_ms"] = total * 1e3
        benchmark.extra_info["engine_ms"] = engine * 1e3
        benchmark.extra_info["overhead_fraction"] = max(0.0, 1 - engine / total)
