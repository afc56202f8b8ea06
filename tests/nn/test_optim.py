"""Optimisers and schedules against their update rules written out by hand (PyTorch's
training comparisons are in test_vs_torch.py)."""
import math

import numpy as np
import pytest

import convlab.optim as optim
from convlab.nn import Parameter, Tensor


def param(values):
    return Parameter(np.array(values, dtype=np.float64))


def run(opt, p, grads):
    """Apply ``grads`` one step at a time; returns the parameter after each step."""
    out = []
    for g in grads:
        p.grad = np.array(g, dtype=np.float64)
        opt.step()
        out.append(p.data.copy())
    return out


GRADS = [[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0], [2.0, 0.0]]


def test_sgd_plain():
    p = param([1.0, 2.0])
    got = run(optim.SGD([p], lr=0.1), p, GRADS)
    expected, w = [], np.array([1.0, 2.0])
    for g in GRADS:
        w = w - 0.1 * np.array(g)
        expected.append(w)
    np.testing.assert_allclose(got, expected, rtol=1e-15)


@pytest.mark.parametrize("nesterov, dampening, wd", [(False, 0.0, 0.0), (False, 0.25, 0.01), (True, 0.0, 0.05)])
def test_sgd_momentum(nesterov, dampening, wd):
    p = param([1.0, 2.0])
    got = run(optim.SGD([p], lr=0.1, momentum=0.9, dampening=dampening, weight_decay=wd, nesterov=nesterov), p,
              GRADS)
    w, v, expected = np.array([1.0, 2.0]), None, []
    for g in GRADS:
        d = np.array(g) + wd * w
        v = d.copy() if v is None else 0.9 * v + (1 - dampening) * d  # the first step takes the gradient whole
        w = w - 0.1 * (d + 0.9 * v if nesterov else v)
        expected.append(w)
    np.testing.assert_allclose(got, expected, rtol=1e-14)


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam(wd):
    p = param([1.0, -2.0])
    got = run(optim.Adam([p], lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=wd), p, GRADS)
    w, m, v, expected = np.array([1.0, -2.0]), 0.0, 0.0, []
    for t, g in enumerate(GRADS, 1):
        g = np.array(g) + wd * w
        m = 0.8 * m + 0.2 * g
        v = 0.95 * v + 0.05 * g * g
        m_hat, v_hat = m / (1 - 0.8 ** t), v / (1 - 0.95 ** t)
        w = w - 0.01 * m_hat / (np.sqrt(v_hat) + 1e-6)
        expected.append(w)
    np.testing.assert_allclose(got, expected, rtol=1e-13)


def test_adam_first_step_moves_by_lr_times_the_sign():
    p = param([3.0, -4.0, 0.5])
    opt = optim.Adam([p], lr=0.1, eps=0.0)
    p.grad = np.array([100.0, -0.001, 2.0])
    opt.step()
    np.testing.assert_allclose(p.data, [2.9, -3.9, 0.4], rtol=1e-14)


def test_parameters_without_grad_are_skipped_and_zero_grad():
    a, b = param([1.0]), param([2.0])
    opt = optim.SGD([a, b], lr=1.0, momentum=0.5)
    a.grad = np.array([1.0])
    opt.step()
    assert a.data[0] == 0.0 and b.data[0] == 2.0
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_param_groups_have_their_own_hyperparameters():
    a, b = param([1.0]), param([1.0])
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    assert a.data[0] == pytest.approx(0.9) and b.data[0] == pytest.approx(0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]


def test_updates_are_in_place_and_keep_dtype():
    p = Parameter(np.ones(3, np.float32))
    data = p.data
    opt = optim.Adam([p])
    p.grad = np.ones(3, np.float32)
    opt.step()
    assert p.data is data and p.dtype == np.float32


def test_multistep_lr():
    p = param([0.0])
    opt = optim.SGD([p], lr=1.0)
    sched = optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 5], gamma=0.1)
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    np.testing.assert_allclose(lrs, [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01], rtol=1e-12)
    assert sched.get_last_lr() == [pytest.approx(0.01)]


def test_cosine_annealing_lr():
    p = param([0.0])
    opt = optim.Adam([p], lr=0.2)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4, eta_min=0.02)
    lrs = []
    for _ in range(5):
        lrs.append(opt.param_groups[0]["lr"])
        sched.step()
    expected = [0.02 + 0.18 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[0] == pytest.approx(0.2) and lrs[2] == pytest.approx(0.11) and lrs[4] == pytest.approx(0.02)


def test_optimiser_updates_a_trained_tensor():
    """One SGD step on a graph: ``w - lr * d(sum(w*x))/dw`` = ``w - lr * x``."""
    w = param([1.0, 2.0])
    x = np.array([3.0, -1.0])
    opt = optim.SGD([w], lr=0.5)
    (w * Tensor(x)).sum().backward()
    opt.step()
    np.testing.assert_allclose(w.data, [1.0 - 1.5, 2.0 + 0.5])
