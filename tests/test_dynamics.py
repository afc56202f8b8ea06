"""convlab.analysis.dynamics: speed, its gradients, the slow-point finder, Jacobians, PCA and
the one-pass recall-against-delay test, against closed forms and finite differences."""
import numpy as np
import pytest
from scipy.optimize import brentq

from convlab import data, nn
from convlab.analysis import dynamics as dyn
from convlab.nn import Tensor


def cells(seed=0, hidden=4, inputs=3):
    nn.manual_seed(seed)
    return [nn.GRUCell(inputs, hidden, dtype=np.float64), nn.LSTMCell(inputs, hidden, dtype=np.float64)]


def linear_system(seed=0, n=4):
    """``F(s) = A s + b`` on Tensors, with its fixed point ``(I - A)^-1 b``."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n)) * 0.6
    b = rng.standard_normal(n)
    fixed = np.linalg.solve(np.eye(n) - a, b)
    return (lambda s: s @ Tensor(a.T) + Tensor(b)), a, fixed


def bistable_gru():
    """A 2-unit GRU with r = 1, z = 1/2 and W_hn = 2 I at rest: h' = (tanh(2h) + h) / 2 per unit,
    whose fixed points are every pair of {-h*, 0, h*} with h* = tanh(2 h*)."""
    cell = nn.GRUCell(1, 2, dtype=np.float64)
    for p in cell.parameters():
        p.data[...] = 0
    cell.bias_hh.data[:2] = 40.0  # r = sigmoid(40) = 1 to 4e-18
    cell.weight_hh.data[4:6] = 2 * np.eye(2)
    h_star = brentq(lambda h: h - np.tanh(2 * h), 0.5, 1.0)
    return cell, h_star


@pytest.mark.parametrize("kind", [0, 1], ids=["gru", "lstm"])
def test_speed_zero_at_known_fixed_point(kind):
    cell = cells()[kind]
    for p in (cell.bias_ih, cell.bias_hh):
        p.data[...] = 0  # then s = 0 maps to 0: tanh(0) = 0 and every gate multiplies it
    q = dyn.speed(cell, np.zeros((1, dyn.state_size(cell))))
    assert q.data[0] == 0.0
    assert dyn.speed(cell, np.full((1, dyn.state_size(cell)), 0.3)).data[0] > 1e-4


def test_speed_zero_at_linear_fixed_point_and_quadratic_elsewhere():
    f, a, fixed = linear_system()
    assert dyn.speed(f, fixed[None]).data[0] < 1e-25
    s = fixed + np.array([0.1, -0.2, 0.3, 0.05])
    d = a @ s + (fixed - a @ fixed) - s
    assert np.isclose(dyn.speed(f, s[None]).data[0], 0.5 * d @ d)


@pytest.mark.parametrize("kind", [0, 1], ids=["gru", "lstm"])
def test_speed_gradients_match_finite_differences(kind):
    cell = cells(seed=3)[kind]
    rng = np.random.default_rng(1)
    s0 = rng.standard_normal((1, dyn.state_size(cell))) * 0.5
    s = Tensor(s0.copy(), requires_grad=True)
    dyn.speed(cell, s).sum().backward()
    eps = 1e-6
    fd = np.zeros_like(s0)
    for i in range(s0.size):
        e = np.zeros_like(s0)
        e.flat[i] = eps
        fd.flat[i] = (dyn.speed(cell, s0 + e).data[0] - dyn.speed(cell, s0 - e).data[0]) / (2 * eps)
    np.testing.assert_allclose(s.grad, fd, rtol=1e-6, atol=1e-9)
    # and in the recurrent weights (what the speed regulariser trains)
    cell.zero_grad()
    dyn.speed(cell, s0).sum().backward()
    w = cell.weight_hh.data
    for idx in [(0, 0), (1, 2), (w.shape[0] - 1, 3)]:
        old = w[idx]
        w[idx] = old + eps
        up = dyn.speed(cell, s0).data[0]
        w[idx] = old - eps
        down = dyn.speed(cell, s0).data[0]
        w[idx] = old
        assert np.isclose(cell.weight_hh.grad[idx], (up - down) / (2 * eps), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("kind", [0, 1], ids=["gru", "lstm"])
def test_jacobian_matches_finite_differences(kind):
    cell = cells(seed=5)[kind]
    f = dyn.cell_map(cell)
    s0 = np.random.default_rng(2).standard_normal(dyn.state_size(cell)) * 0.5
    eps = 1e-6
    fd = np.stack([(f(Tensor((s0 + eps * e)[None])).data[0] - f(Tensor((s0 - eps * e)[None])).data[0]) / (2 * eps)
                   for e in np.eye(s0.size)], axis=1)
    np.testing.assert_allclose(dyn.jacobian(cell, s0), fd, rtol=1e-6, atol=1e-9)


def test_finder_recovers_linear_fixed_point_and_spectrum():
    f, a, fixed = linear_system(seed=4)
    starts = np.random.default_rng(0).standard_normal((3, 4)) * 3
    found = dyn.find_slow_points(f, starts, n_eig=4)
    for p in found.points:
        np.testing.assert_allclose(p, fixed, atol=1e-6)
    assert np.all(found.speeds < 1e-12)
    expected = np.linalg.eigvals(a)
    expected = expected[np.argsort(-np.abs(expected))]
    np.testing.assert_allclose(np.abs(found.eigenvalues[0]), np.abs(expected), rtol=1e-8)


def test_finder_recovers_the_nine_fixed_points_of_a_bistable_gru():
    cell, h = bistable_gru()
    levels = (-h, 0.0, h)
    known = np.array([(u, v) for u in levels for v in levels])
    starts = known + np.random.default_rng(0).uniform(-0.15, 0.15, known.shape)
    found = dyn.find_slow_points(cell, starts, n_eig=2)
    np.testing.assert_allclose(found.points, known, atol=1e-6)
    assert np.all(found.speeds < 1e-12)
    # Jacobian diag(0.5 + (1 - h_i^2)): 0.5 + 1 - h*^2 at +-h*, 1.5 at 0
    slope = {0.0: 1.5, h: 1.5 - h * h, -h: 1.5 - h * h}
    for point, ev in zip(known, found.eigenvalues):
        np.testing.assert_allclose(sorted(ev.real), sorted(slope[x] for x in point), atol=1e-6)
        np.testing.assert_allclose(ev.imag, 0, atol=1e-9)


def test_pca_against_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((200, 2)) * [3.0, 1.0] @ rng.standard_normal((2, 5)) + rng.standard_normal(5)
    proj, comps, mean, explained = dyn.pca(pts, k=2)
    vals, vecs = np.linalg.eigh(np.cov(pts.T))
    order = np.argsort(-vals)
    np.testing.assert_allclose(np.abs(comps @ vecs[:, order[:2]]), np.eye(2), atol=1e-8)
    np.testing.assert_allclose(explained.sum(), 1.0, atol=1e-10)  # the points span a plane
    np.testing.assert_allclose(proj @ comps + mean, pts, atol=1e-8)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_accuracy_against_delay_equals_the_task_sequences(kind):
    """Without noise the one-pass side steps are exactly the sequences t_s = 1, t_a = 1 + d."""
    from convlab.models.rnn_memory import RecallRNN

    x, y = data.digits()
    x, y = x[:60], y[:60]
    nn.manual_seed(1)
    net = RecallRNN(65, 8, 11, kind, dtype=np.float64)
    delays = [5, 7, 12]
    test = dyn.accuracy_against_delay(net, x, y, delays, noise=0.0)
    for d, acc in zip(delays, test.accuracy):
        n = len(y)
        seqs = np.zeros((n, d + 1, 65))
        seqs[:, 0, :64] = x.reshape(n, 64)
        seqs[:, d, 64] = 1
        pred = net(seqs).data[:, d].argmax(axis=1)
        assert acc == np.mean(pred == y)
    assert test.states.shape == (60, 13, dyn.state_size(net.cell))
