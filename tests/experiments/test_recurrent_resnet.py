"""Multi-state recurrent nets (Liao & Poggio 2016): the unrolled schedule, weight sharing as
gradient summation, time-specific batch norm, finite differences, and the quick experiment."""
import json

import numpy as np
import pytest

import convlab.nn as nn
import convlab.nn.functional as F
from convlab.models.recurrent import MultiStateRNN, preset, schedule

RESNET3 = [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2)]
FRNN2 = [(0, 0), (1, 1), (0, 1), (1, 0)]


def test_schedule_hand_computed():
    s = schedule(3, RESNET3, 4)
    # state 1 is reached through 0->1 in the first step, state 2 through 1->2 in the second
    assert s.defined_at == (0, 1, 2)
    assert set(s.active[0]) == {(0, 0), (0, 1)}
    assert set(s.active[1]) == {(0, 0), (0, 1), (1, 1), (1, 2)}
    assert set(s.active[2]) == set(RESNET3) == set(s.active[3])
    assert schedule(2, FRNN2, 3).defined_at == (0, 1)
    assert schedule(1, [(0, 0)], 5).active == (((0, 0),),) * 5


def test_schedule_errors():
    with pytest.raises(ValueError, match="cannot be reached"):
        schedule(2, [(0, 0), (1, 1)], 3)
    with pytest.raises(ValueError, match="readout=1 is before"):
        schedule(3, RESNET3, 1)
    with pytest.raises(ValueError, match="readout"):
        schedule(1, [(0, 0)], 0)
    with pytest.raises(ValueError, match="neighbour"):
        MultiStateRNN(1, 3, 8, (2, 2, 2), [(0, 0), (0, 2)], 3)


def _double(model):
    return model.double()


def test_one_state_shared_net_is_a_resnet_of_identical_blocks():
    nn.manual_seed(0)
    model = _double(preset("resnet1", 1, 3, 6, width=2, readout=3))
    model.eval()  # running statistics: each step's batch norm is a fixed affine map
    for bns in model.norms:
        for bn in bns:
            bn.running_mean[:] = np.random.default_rng(1).standard_normal(2)
            bn.running_var[:] = 0.5 + np.random.default_rng(2).random(2)
    x = nn.Tensor(np.random.default_rng(3).standard_normal((2, 1, 6, 6)))
    block = model.transitions[0]
    assert len(model.transitions) == 1
    h = model.prenet(x)
    for t in range(3):  # h(t+1) = h(t) + K_t(h(t)) with the same convolutions at every t
        bn1, bn2 = model.norms[t]
        a = F.conv2d(F.relu(bn1(h)), block.conv1.weight, None, padding=1)
        h = h + F.conv2d(F.relu(bn2(a)), block.conv2.weight, None, padding=1)
    expected = model.fc(F.relu(model.postnet_bn(h)).mean(axis=(2, 3)))
    np.testing.assert_allclose(model(x).data, expected.data, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["resnet1", "frnn2"])
def test_shared_gradient_is_the_sum_of_tied_unshared_gradients(name):
    nn.manual_seed(0)
    shared = _double(preset(name, 1, 3, 6, width=2, readout=3, shared=True))
    unshared = _double(preset(name, 1, 3, 6, width=2, readout=3, shared=False))
    # tie: every step's convolutions of the unshared net get the shared net's weights
    state = unshared.state_dict()
    own = shared.state_dict()
    for key in state:
        if key.startswith("transitions."):
            continue
        state[key] = own[key]
    for (i, j, t), ukey in unshared.conv_key.items():
        src = shared.transitions[shared._conv_index[shared.conv_key[(i, j, t)]]]
        dst = unshared.transitions[unshared._conv_index[ukey]]
        dst.load_state_dict(src.state_dict())
    unshared.load_state_dict(state)
    x = np.random.default_rng(0).standard_normal((4, 1, 6, 6))
    y = np.array([0, 1, 2, 1])
    ls = F.cross_entropy(shared(nn.Tensor(x)), y)
    lu = F.cross_entropy(unshared(nn.Tensor(x)), y)
    assert abs(ls.item() - lu.item()) < 1e-12
    ls.backward()
    lu.backward()
    for (i, j, t0), skey in shared.conv_key.items():
        if t0 != min(t for (a, b, t) in shared.conv_key if (a, b) == (i, j)):
            continue
        # a step whose output the read-out never uses (e.g. 1->0 at the last step) has no gradient
        grads = [unshared.transitions[unshared._conv_index[ukey]].conv1.weight.grad
                 for (a, b, t), ukey in unshared.conv_key.items() if (a, b) == (i, j)]
        assert any(g is not None for g in grads)
        total = sum(g for g in grads if g is not None)
        got = shared.transitions[shared._conv_index[skey]].conv1.weight.grad
        np.testing.assert_allclose(got, total, rtol=1e-10, atol=1e-12)


def test_time_specific_batch_norm_keeps_statistics_per_step():
    nn.manual_seed(0)
    model = preset("resnet1", 1, 3, 6, width=2, readout=3, bn="time")
    assert len(model.norms) == 3
    model(nn.Tensor(np.random.default_rng(0).standard_normal((8, 1, 6, 6)).astype(np.float32)))
    means = [bns[0].running_mean.copy() for bns in model.norms]
    assert not np.allclose(means[0], means[1]) and not np.allclose(means[1], means[2])
    assert all(int(bns[0].num_batches_tracked) == 1 for bns in model.norms)
    shared_bn = preset("resnet1", 1, 3, 6, width=2, readout=3, bn="shared")
    assert len(shared_bn.norms) == 1
    shared_bn(nn.Tensor(np.random.default_rng(0).standard_normal((8, 1, 6, 6)).astype(np.float32)))
    assert int(shared_bn.norms[0][0].num_batches_tracked) == 3  # one set, updated at every step
    # learned scale and shift in the post-net's batch norm only, as the paper
    assert [name for name, _ in model.named_parameters() if "norms" in name] == []
    assert {"postnet_bn.weight", "postnet_bn.bias"} <= {name for name, _ in model.named_parameters()}


def test_share_states_uses_one_transition_per_kind():
    a = MultiStateRNN(1, 3, 8, (2, 2, 2), RESNET3, 4, share_states=False)
    b = MultiStateRNN(1, 3, 8, (2, 2, 2), RESNET3, 4, share_states=True)
    assert len(a.transitions) == 5 and len(b.transitions) == 2  # self and bottom-up


@pytest.mark.parametrize("build", [
    lambda: preset("frnn2", 1, 3, 4, width=2, readout=2),
    lambda: preset("frnn2", 1, 3, 4, width=2, readout=3, shared=False),
    lambda: preset("resnet1", 1, 3, 4, width=2, readout=3, bn="shared"),
    lambda: MultiStateRNN(1, 3, 4, (2, 2, 2), RESNET3, 3, share_states=True),
], ids=["frnn2-shared", "frnn2-unshared", "resnet1-shared-bn", "resnet3-share-states"])
def test_whole_net_gradient_by_finite_differences(build):
    nn.manual_seed(0)
    model = _double(build())
    x = np.random.default_rng(0).standard_normal((3, 1, 4, 4))
    y = np.array([0, 2, 1])
    loss = F.cross_entropy(model(nn.Tensor(x)), y)
    loss.backward()
    rng = np.random.default_rng(1)
    for name, p in model.named_parameters():
        idx = tuple(rng.integers(0, n) for n in p.shape)
        old = p.data[idx]
        with nn.no_grad():
            p.data[idx] = old + 1e-6
            up = F.cross_entropy(model(nn.Tensor(x)), y).item()
            p.data[idx] = old - 1e-6
            down = F.cross_entropy(model(nn.Tensor(x)), y).item()
        p.data[idx] = old
        numeric = (up - down) / 2e-6
        analytic = 0.0 if p.grad is None else p.grad[idx]  # None: the read-out does not depend on it
        assert abs(numeric - analytic) < 1e-6 + 1e-4 * abs(numeric), name


def test_readout_beyond_training_needs_shared_weights():
    nn.manual_seed(0)
    x = nn.Tensor(np.random.default_rng(0).standard_normal((2, 1, 6, 6)).astype(np.float32))
    shared = preset("resnet1", 1, 3, 6, width=2, readout=2)
    assert shared(x, readout=5).shape == (2, 3)
    unshared = preset("resnet1", 1, 3, 6, width=2, readout=2, shared=False)
    with pytest.raises(ValueError, match="unshared"):
        unshared(x, readout=5)
    with pytest.raises(ValueError, match="unknown preset"):
        preset("resnet9", 1, 3, 6)


def test_quick_experiment_end_to_end(tmp_path):
    from convlab import experiments

    record = experiments.run("recurrent-resnet", quick=True, out=tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "recurrent-resnet" and saved["quick"] is True
    comparison = saved["comparison"]
    for key in ("resnet1 shared", "resnet1 unshared", "resnet3 shared", "frnn2 unshared"):
        assert 0 <= comparison[key]["test_error_mean"] <= 1
    # unshared nets have more parameters than their shared versions
    assert comparison["resnet3 unshared"]["parameters"] > comparison["resnet3 shared"]["parameters"]
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 1000


def test_full_run_reads_the_users_cifar10_when_named(tmp_path, monkeypatch):
    import pickle

    from convlab.experiments import recurrent_resnet

    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 6) for i in range(1, 6)] + [("test_batch", 4)]:
        batch = {b"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n))}
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f)
    monkeypatch.setenv("CONVLAB_CIFAR10", str(tmp_path))
    name, x, y, xt, yt = recurrent_resnet._data(quick=False, seed=0)
    assert name.startswith("cifar-10") and x.shape == (30, 3, 32, 32) and xt.shape == (4, 3, 32, 32)
    xs, _ = recurrent_resnet._standardise(x, xt)
    np.testing.assert_allclose(xs.mean(axis=(0, 2, 3)), 0, atol=1e-5)  # per channel
    np.testing.assert_allclose(xs.std(axis=(0, 2, 3)), 1, atol=1e-4)
