"""convlab.models.rnn_memory and the rnn-memory experiment: the nets against PyTorch, the loss
against a hand-written cross-entropy, the regularised loss's gradient against finite
differences, the curricula, and the --quick run end to end."""
import json

import numpy as np
import pytest

from convlab import data, nn
from convlab.analysis import dynamics as dyn
from convlab.models import rnn_memory as rm


def small_net(kind, seed=0, dtype=np.float64):
    nn.manual_seed(seed)
    return rm.RecallRNN(5, 4, 3, kind, dtype=dtype)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_scores_match_pytorch(kind):
    torch = pytest.importorskip("torch")
    net = small_net(kind)
    x = np.random.default_rng(0).standard_normal((2, 6, 5))
    cell_t = (torch.nn.GRUCell if kind == "gru" else torch.nn.LSTMCell)(5, 4).double()
    lin = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        for name, p in cell_t.named_parameters():
            p.copy_(torch.from_numpy(getattr(net.cell, name).data))
        lin.weight.copy_(torch.from_numpy(net.readout.weight.data))
        lin.bias.copy_(torch.from_numpy(net.readout.bias.data))
        state, outs = None, []
        for t in range(6):
            state = cell_t(torch.from_numpy(x[:, t]), state)
            outs.append(lin(state if kind == "gru" else state[0]))
        expected = torch.stack(outs, 1).numpy()
    scores, states = net(x, return_states=True)
    np.testing.assert_allclose(scores.data, expected, rtol=1e-10, atol=1e-12)
    final = state.numpy() if kind == "gru" else np.concatenate([s.numpy() for s in state], axis=1)
    np.testing.assert_allclose(states[-1].data, final, rtol=1e-10, atol=1e-12)


def test_recall_loss_is_the_mean_over_every_step():
    rng = np.random.default_rng(1)
    scores = rng.standard_normal((3, 4, 5))
    targets = rng.integers(0, 5, (3, 4))
    logp = scores - np.log(np.exp(scores).sum(axis=2, keepdims=True))
    expected = -np.mean(np.take_along_axis(logp, targets[..., None], axis=2))
    assert np.isclose(rm.recall_loss(nn.Tensor(scores), targets).item(), expected)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_regularised_loss_gradient_matches_finite_differences(kind):
    net = small_net(kind, seed=2)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 5, 5))
    targets = rng.integers(0, 3, (3, 5))
    points = rng.standard_normal((2, dyn.state_size(net.cell))) * 0.5

    def loss():
        return rm.recall_loss(net(x), targets) + rm.speed_penalty(net.cell, points) * 0.7

    net.zero_grad()
    loss().backward()
    eps = 1e-6
    for p, idx in [(net.cell.weight_hh, (1, 2)), (net.cell.weight_ih, (0, 4)), (net.cell.bias_hh, (3,)),
                   (net.readout.weight, (2, 1))]:
        old = p.data[idx]
        p.data[idx] = old + eps
        up = loss().item()
        p.data[idx] = old - eps
        down = loss().item()
        p.data[idx] = old
        assert np.isclose(p.grad[idx], (up - down) / (2 * eps), rtol=1e-6, atol=1e-9)


def test_speed_penalty_is_the_mean_speed_and_the_points_get_no_gradient():
    net = small_net("gru")
    points = np.random.default_rng(4).standard_normal((3, 4))
    pen = rm.speed_penalty(net.cell, points)
    assert np.isclose(pen.item(), dyn.speed(net.cell, points).data.mean())
    f = dyn.cell_map(net.cell)(nn.Tensor(points)).data
    assert np.isclose(pen.item(), np.mean(0.5 * ((f - points) ** 2).sum(axis=1)))


def test_class_centres_average_the_delay_states():
    batch = data.DelayedRecall(inputs=None, targets=None, t_s=np.array([1, 2, 1]), t_a=np.array([3, 4, 4]),
                               labels=np.array([0, 0, 1]), null=2)
    states = np.arange(3 * 4 * 2, dtype=float).reshape(3, 4, 2)
    centres = rm.class_centres(states, batch, 2)
    # class 0: sequence 0 at t = 1, 2 and sequence 1 at t = 2, 3; class 1: sequence 2 at t = 1, 2, 3
    np.testing.assert_allclose(centres[0], np.mean([states[0, 0], states[0, 1], states[1, 1], states[1, 2]], axis=0))
    np.testing.assert_allclose(centres[1], states[2, :3].mean(axis=0))


def test_curricula_end_at_the_full_task():
    voc = rm.vocabulary_curriculum(10, t_max=20)
    assert [s.n_classes for s in voc] == list(range(2, 11)) and {s.t_max for s in voc} == {20}
    dec = rm.delay_curriculum(10, t_max=20)
    assert [s.t_max for s in dec] == [6, 8, 10, 12, 14, 16, 18, 20] and {s.n_classes for s in dec} == {10}
    assert rm.delay_curriculum(10, t_max=11)[-1] == rm.Stage(10, 11)
    assert rm.direct(10, 20) == [rm.Stage(10, 20)]


def tiny_task():
    x, y = data.digits()
    return x[:300], y[:300], x[300:500], y[300:500]


def test_curriculum_advances_on_the_criterion_or_the_stage_limit():
    x, y, xv, yv = tiny_task()
    stages = rm.vocabulary_curriculum(4, t_max=7)
    net = rm.RecallRNN(65, 8, 11, "gru")
    log = rm.train(net, x, y, xv, yv, stages, steps=8, check_every=2, advance_at=0.0, show_progress=False)
    assert [r["stage"] for r in log] == [0, 1, 2, 2] and all(r["by_criterion"] for r in log[:2])
    log = rm.train(net, x, y, xv, yv, stages, steps=8, check_every=2, advance_at=2.0, show_progress=False)
    assert [r["stage"] for r in log] == [0, 0, 0, 0]
    log = rm.train(net, x, y, xv, yv, stages, steps=8, check_every=2, advance_at=2.0, max_stage_steps=4,
                   show_progress=False)
    assert [r["stage"] for r in log] == [0, 0, 1, 1] and not any(r["by_criterion"] for r in log)
    assert [r["n_classes"] for r in log] == [2, 2, 3, 3]


@pytest.mark.parametrize("regulariser", ["centres", "slow_points"])
def test_regularised_training_runs_and_logs_speed(regulariser):
    x, y, xv, yv = tiny_task()
    net = rm.RecallRNN(65, 8, 11, "lstm")
    log = rm.train(net, x, y, xv, yv, rm.direct(3, 7), steps=4, check_every=2, regulariser=regulariser,
                   refresh=2, show_progress=False)
    assert len(log) == 2 and all(np.isfinite(r["loss"]) and r["speed"] >= 0 for r in log)


def test_bad_arguments():
    with pytest.raises(ValueError, match="cell must be"):
        rm.RecallRNN(5, 4, 3, "rnn")
    net = small_net("gru")
    with pytest.raises(ValueError, match="inputs must be"):
        net(np.zeros((2, 3, 6)))
    x, y, xv, yv = tiny_task()
    with pytest.raises(ValueError, match="regulariser"):
        rm.train(net, x, y, xv, yv, rm.direct(3, 7), steps=1, regulariser="fixed")


def test_quick_run_recalls_above_chance(tmp_path):
    from convlab.experiments import run

    record = run("rnn-memory", quick=True, out=tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "rnn-memory" and saved["quick"]
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 1000
    t_max = record["settings"]["t_max"]
    for cur in record["settings"]["curricula"]:
        acc = record["summary"][f"gru/{cur}"]["accuracy"]
        trained = [acc[d]["mean"] for d in acc if d < t_max]
        # chance is 1/10 with 300 test images (standard deviation 0.017)
        assert np.mean(trained) > 0.2, (cur, acc)
