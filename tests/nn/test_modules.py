"""Modules: registration, traversal, modes, dtype conversion, containers, save/load, and the
statistics of self-normalising networks (SELU with LeCun-normal weights, alpha-dropout)."""
from collections import OrderedDict

import numpy as np
import pytest

import convlab.nn as nn
import convlab.nn.functional as F
from convlab.nn import Tensor


def small_net():
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, dtype=np.float64), nn.BatchNorm2d(2, dtype=np.float64),
                         nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3, dtype=np.float64))


def test_registration_names_and_order():
    net = small_net()
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    assert list(net.state_dict()) == names[:4] + ["1.running_mean", "1.running_var", "1.num_batches_tracked"] \
        + names[4:]
    assert [n for n, _ in net.named_buffers()] == ["1.running_mean", "1.running_var", "1.num_batches_tracked"]
    assert len(list(net.children())) == 5 and len(list(net.modules())) == 6
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_a_module_used_twice_has_its_parameters_once():
    shared = nn.Linear(2, 2)
    net = nn.Sequential(shared, nn.Tanh(), shared)
    assert len(list(net.parameters())) == 2
    assert list(net.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]  # as PyTorch


def test_reassigning_and_deleting_attributes():
    layer = nn.Linear(2, 3)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    layer.extra = nn.Parameter(np.zeros(2, np.float32))
    assert "extra" in dict(layer.named_parameters())
    del layer.extra
    assert "extra" not in dict(layer.named_parameters())
    with pytest.raises(AttributeError, match="no attribute"):
        layer.missing


def test_module_without_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(AttributeError, match=r"super\(\).__init__"):
        Broken()


def test_train_eval_reach_every_module():
    net = nn.Sequential(nn.Dropout(), nn.Sequential(nn.BatchNorm1d(2)))
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())


def test_dtype_conversion_keeps_integer_buffers():
    net = small_net().float()
    assert all(p.dtype == np.float32 for p in net.parameters())
    state = net.state_dict()
    assert state["1.running_var"].dtype == np.float32 and state["1.num_batches_tracked"].dtype == np.int64
    net.double()
    assert all(p.dtype == np.float64 for p in net.parameters())


def test_requires_grad_freezes():
    net = small_net()
    net[0].requires_grad_(False)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 1, 4, 4)))
    F.cross_entropy(net(x), np.array([0, 2])).backward()
    assert net[0].weight.grad is None and net[4].weight.grad is not None


def test_sequential_and_module_list_containers():
    layers = [nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)]
    seq = nn.Sequential(*layers)
    assert len(seq) == 3 and seq[0] is layers[0] and seq[-1] is layers[2] and list(seq) == layers
    assert isinstance(seq[1:], nn.Sequential) and len(seq[1:]) == 2
    seq.append(nn.Sigmoid())
    assert len(seq) == 4 and "3" in dict(seq.named_children())
    named = nn.Sequential(OrderedDict([("enc", nn.Linear(2, 2)), ("act", nn.Tanh())]))
    assert list(named.state_dict()) == ["enc.weight", "enc.bias"]
    ml = nn.ModuleList([nn.Linear(1, 1) for _ in range(3)])
    assert len(ml) == 3 and list(ml.state_dict())[-1] == "2.bias" and len(ml[:2]) == 2
    ml.extend([nn.Linear(1, 1)])
    assert len(list(ml.parameters())) == 8
    assert "Linear(in_features=2, out_features=2, bias=True)" in repr(named)


def test_save_and_load_npz_round_trip(tmp_path):
    net = small_net()
    net(Tensor(np.random.default_rng(1).standard_normal((3, 1, 4, 4))))  # running stats move
    path = tmp_path / "weights.npz"
    nn.save(net, path)
    state = nn.load(path)
    assert list(state) == list(net.state_dict())
    for k, v in net.state_dict().items():
        assert state[k].dtype == np.asarray(v).dtype and np.array_equal(state[k], v), k
    other = small_net()
    result = other.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = Tensor(np.random.default_rng(2).standard_normal((2, 1, 4, 4)))
    net.eval()
    other.eval()
    assert np.array_equal(net(x).data, other(x).data)
    assert int(other.state_dict()["1.num_batches_tracked"]) == 1


def test_load_state_dict_copies_in_place_in_the_module_dtype():
    net = small_net()
    weight = net[0].weight
    state = {k: np.asarray(v, dtype=np.float32) + 1 for k, v in small_net().state_dict().items()}
    net.load_state_dict(state)
    assert net[0].weight is weight and weight.dtype == np.float64
    assert np.array_equal(weight.data, state["0.weight"].astype(np.float64))


def test_load_state_dict_non_strict_reports_keys():
    net = nn.Linear(2, 2)
    result = net.load_state_dict({"weight": np.ones((2, 2)), "other": np.ones(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["other"]
    assert np.array_equal(net.weight.data, np.ones((2, 2)))


# ----------------------------------------------------------------------------- batch norm, dropout modes


def test_batchnorm_without_running_stats_uses_the_batch_in_eval():
    bn = nn.BatchNorm1d(2, track_running_stats=False, affine=False, dtype=np.float64).eval()
    x = np.random.default_rng(3).standard_normal((6, 2)) * 3 + 2
    y = bn(Tensor(x)).data
    assert np.allclose(y.mean(0), 0, atol=1e-12) and np.allclose(y.var(0), 1 / (1 + 1e-5 / x.var(0)), rtol=1e-12)
    assert list(bn.state_dict()) == []


def test_batchnorm_training_statistics_by_hand():
    """Momentum 0.1 towards the batch mean and the unbiased batch variance."""
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    x = np.random.default_rng(4).standard_normal((3, 2, 2, 2)) * 2 + 1
    y = bn(Tensor(x)).data
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    assert np.allclose(y, (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5), atol=1e-12)
    assert np.allclose(bn.running_mean, 0.1 * mean, rtol=1e-12)
    assert np.allclose(bn.running_var, 0.9 + 0.1 * var * 12 / 11, rtol=1e-12)


def test_dropout_keeps_the_mean_and_is_the_identity_in_eval():
    x = Tensor(np.ones((200, 500)))
    layer = nn.Dropout(0.3)
    y = layer(x).data
    assert set(np.unique(y)) == {0.0, 1 / 0.7}
    assert abs((y == 0).mean() - 0.3) < 0.01 and abs(y.mean() - 1) < 0.02
    assert layer.eval()(x) is x
    assert F.dropout(x, 0.0) is x and np.array_equal(F.dropout(x, 1.0).data, np.zeros((200, 500)))


def test_dropout_masks_follow_the_seed():
    x = Tensor(np.ones((4, 50)))
    nn.manual_seed(7)
    a = F.dropout(x, 0.5).data
    nn.manual_seed(7)
    b = F.dropout(x, 0.5).data
    c = F.dropout(x, 0.5).data
    assert np.array_equal(a, b) and not np.array_equal(b, c)


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_alpha_dropout_keeps_mean_zero_and_variance_one(p):
    """1e6 standard normal inputs: the standard errors of the mean and the variance are
    about 0.001 and 0.002; the tolerance 0.01 is five of them or more."""
    x = Tensor(np.random.default_rng(5).standard_normal((1000, 1000)))
    layer = nn.AlphaDropout(p)
    y = layer(x).data
    assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.01
    # a dropped value becomes alpha' = -lambda*alpha, then a*alpha' + b (the paper's constants)
    alpha_ = -1.0507009873554805 * 1.6732632423543772
    q = 1 - p
    a = (q + alpha_ ** 2 * q * (1 - q)) ** -0.5
    b = -a * (1 - q) * alpha_
    dropped = np.isclose(y, a * alpha_ + b, rtol=0, atol=1e-12)
    assert abs(dropped.mean() - p) < 0.01
    kept = ~dropped
    assert np.allclose(y[kept], a * x.data[kept] + b, rtol=1e-12)
    assert layer.eval()(x) is x
    assert F.alpha_dropout(x, p) is x  # training=False by default, as PyTorch


def test_selu_network_with_lecun_normal_keeps_mean_zero_variance_one():
    """32 layers of width 256 with N(0, 1/256) weights, zero biases, SELU, on 1024 standard
    normal samples: mean 0 and variance 1 is an attracting fixed point (Klambauer et al. 2017).

    Tolerance |mean| < 0.05 and |var - 1| < 0.15 at every layer. At finite width each layer's
    weights scale the variance by a chi^2(256)/256 factor per unit (std 0.088, about 0.006 for
    the mean over 256 units) and the fixed point pulls it back, so it does not accumulate:
    over 8 seeds the worst layer was |mean| 0.018, |var - 1| 0.065. The same net with the
    default ``U(-1/16, 1/16)`` weights (variance 1/3 of LeCun's) falls to variance 0.008."""
    x0 = np.random.default_rng(6).standard_normal((1024, 256))

    def run(init):
        layers = [nn.Linear(256, 256, dtype=np.float64) for _ in range(32)]
        for layer in layers:
            init(layer.weight)
            nn.init.zeros_(layer.bias)
        x, stats = Tensor(x0), []
        with nn.no_grad():
            for layer in layers:
                x = F.selu(layer(x))
                stats.append((x.data.mean(), x.data.var()))
        return np.array(stats)

    stats = run(nn.init.lecun_normal_)
    assert np.abs(stats[:, 0]).max() < 0.05 and np.abs(stats[:, 1] - 1).max() < 0.15
    collapsed = run(lambda w: w)  # the layer's default initialisation
    assert collapsed[-1, 1] < 0.1


def test_selu_network_with_alpha_dropout_in_training():
    x = Tensor(np.random.default_rng(8).standard_normal((2048, 128)))
    net = nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(128, 128, dtype=np.float64), nn.SELU(),
                                                        nn.AlphaDropout(0.1))])
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.lecun_normal_(m.weight)
            nn.init.zeros_(m.bias)
    with nn.no_grad():
        y = net(x).data
    assert abs(y.mean()) < 0.05 and abs(y.var() - 1) < 0.15


def test_init_fans_of_a_convolution():
    assert nn.init.fans((8, 3, 5, 5)) == (75, 200)
    assert nn.init.fans((8, 3)) == (3, 8)
    w = nn.Parameter(np.zeros((16, 4, 3, 3)))
    assert nn.init.constant_(w, 2.5) is w and np.all(w.data == 2.5)
    assert nn.init.calculate_gain("relu") == pytest.approx(np.sqrt(2))
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(np.sqrt(2 / 1.04))
