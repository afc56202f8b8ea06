"""convlab.nn against PyTorch (CPU, float64): the same structure, the same initial weights
through ``load_state_dict``, the same batches give the same loss at every step, the same
final weights and running statistics, and the same eval-mode output (relative 1e-8)."""
import numpy as np
import pytest

import convlab.nn as nn
import convlab.nn.functional as F
import convlab.optim as optim
from convlab.nn import Tensor

torch = pytest.importorskip("torch")
tnn, tF = torch.nn, torch.nn.functional

RTOL = 1e-8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """PyTorch's intra-op threads only slow these small shapes down on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def close(a, b, what=""):
    """Equal to relative 1e-8 of the array's scale (elementwise relative error is meaningless at 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = b.detach().numpy() if isinstance(b, torch.Tensor) else np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, what
    scale = max(np.abs(b).max(initial=0.0), 1e-300)
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL * scale, err_msg=what)


def copy_to_torch(model, tmodel):
    """Load convlab's state dict into the PyTorch model: the keys must be the same."""
    state = model.state_dict()
    assert list(state) == list(tmodel.state_dict()), "state_dict keys differ"
    tmodel.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=True)


def assert_same_state(model, tmodel):
    tstate = tmodel.state_dict()
    for k, v in model.state_dict().items():
        if np.asarray(v).dtype.kind == "i":
            assert int(v) == int(tstate[k]), k
        else:
            close(v, tstate[k], k)


def train_both(model, tmodel, make_opt, batches, loss, tloss, schedule=None, steps_per_epoch=2):
    """Train both on ``batches``; the losses must agree at every step."""
    opt, topt = make_opt(model.parameters(), optim), make_opt(tmodel.parameters(), torch.optim)
    sched = tsched = None
    if schedule is not None:
        sched, tsched = schedule(opt, optim.lr_scheduler), schedule(topt, torch.optim.lr_scheduler)
    model.train()
    tmodel.train()
    losses = []
    for step, (x, y) in enumerate(batches):
        opt.zero_grad()
        out = loss(model(Tensor(x)), y)
        out.backward()
        opt.step()
        topt.zero_grad()
        tout = tloss(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
        tout.backward()
        topt.step()
        assert out.item() == pytest.approx(tout.item(), rel=RTOL), f"step {step}"
        losses.append(out.item())
        if sched is not None and (step + 1) % steps_per_epoch == 0:
            sched.step()
            tsched.step()
            assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-12)
    assert_same_state(model, tmodel)
    return losses


def assert_same_eval(model, tmodel, x):
    model.eval()
    tmodel.eval()
    with nn.no_grad(), torch.no_grad():
        close(model(Tensor(x)).data, tmodel(torch.from_numpy(x)), "eval output")


def ce(out, y):
    return F.cross_entropy(out, y)


def tce(out, y):
    return tF.cross_entropy(out, y)


def mse(out, y):
    return F.mse_loss(out, y)


def tmse(out, y):
    return tF.mse_loss(out, y)


def classification_batches(shape, classes, steps, seed=0):
    r = np.random.default_rng(seed)
    return [(r.standard_normal(shape), r.integers(0, classes, shape[0])) for _ in range(steps)]


# ----------------------------------------------------------------------------- a CNN with BatchNorm


def cnn(lib):
    return lib.Sequential(
        lib.Conv2d(1, 4, 3, padding=1), lib.BatchNorm2d(4), lib.ReLU(), lib.MaxPool2d(2),
        lib.Conv2d(4, 6, 3, stride=1, padding=1, groups=2), lib.BatchNorm2d(6), lib.ReLU(),
        lib.AvgPool2d(2), lib.Flatten(), lib.Linear(6 * 2 * 2, 3))


OPTIMISERS = {
    "sgd_nesterov_wd": (lambda p, o: o.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), None),
    "sgd_momentum_dampening": (lambda p, o: o.SGD(p, lr=0.05, momentum=0.8, dampening=0.3), None),
    "adam_multistep": (lambda p, o: o.Adam(p, lr=0.01, weight_decay=1e-3),
                       lambda opt, s: s.MultiStepLR(opt, milestones=[1, 3], gamma=0.5)),
    "sgd_cosine": (lambda p, o: o.SGD(p, lr=0.1, momentum=0.5),
                   lambda opt, s: s.CosineAnnealingLR(opt, T_max=3, eta_min=0.001)),
    "adam_betas_cosine": (lambda p, o: o.Adam(p, lr=0.02, betas=(0.8, 0.99), eps=1e-6),
                          lambda opt, s: s.CosineAnnealingLR(opt, T_max=2)),
}


@pytest.mark.parametrize("name", OPTIMISERS)
def test_cnn_with_batchnorm_trains_identically(name):
    make_opt, schedule = OPTIMISERS[name]
    model, tmodel = cnn(nn).double(), cnn(tnn).double()
    copy_to_torch(model, tmodel)
    losses = train_both(model, tmodel, make_opt, classification_batches((6, 1, 8, 8), 3, 10), ce, tce, schedule)
    assert losses[-1] != losses[0]
    assert int(model.state_dict()["1.num_batches_tracked"]) == 10
    assert_same_eval(model, tmodel, np.random.default_rng(9).standard_normal((5, 1, 8, 8)))


# ----------------------------------------------------------------------------- a shared-weight recurrent ResNet


def recurrent_resnet(lib, functional, steps=3, channels=4):
    class RecurrentResNet(lib.Module):
        """A stem, one ResNet basic block applied ``steps`` times with the same convolutions and
        a BatchNorm pair per step, then global average pooling and a linear classifier."""

        def __init__(self):
            super().__init__()
            self.stem = lib.Conv2d(2, channels, 3, padding=1)
            self.conv1 = lib.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.conv2 = lib.Conv2d(channels, channels, 3, padding=1, bias=False)
            self.bns1 = lib.ModuleList([lib.BatchNorm2d(channels) for _ in range(steps)])
            self.bns2 = lib.ModuleList([lib.BatchNorm2d(channels) for _ in range(steps)])
            self.head = lib.Linear(channels, 3)

        def forward(self, x):
            h = functional.relu(self.stem(x))
            for t in range(steps):
                out = functional.relu(self.bns1[t](self.conv1(h)))
                h = functional.relu(h + self.bns2[t](self.conv2(out)))
            return self.head(h.mean((2, 3)))

    return RecurrentResNet()


@pytest.mark.parametrize("name", ["sgd_nesterov_wd", "adam_multistep"])
def test_shared_weight_recurrent_resnet_trains_identically(name):
    make_opt, schedule = OPTIMISERS[name]
    model, tmodel = recurrent_resnet(nn, F).double(), recurrent_resnet(tnn, tF).double()
    assert "bns2.2.running_mean" in model.state_dict()
    copy_to_torch(model, tmodel)
    train_both(model, tmodel, make_opt, classification_batches((4, 2, 6, 6), 3, 6), ce, tce, schedule)
    assert_same_eval(model, tmodel, np.random.default_rng(3).standard_normal((3, 2, 6, 6)))


# ----------------------------------------------------------------------------- recurrent cells


def sequence_model(lib, stack, cell_type):
    class SequenceModel(lib.Module):
        def __init__(self):
            super().__init__()
            self.cell = getattr(lib, cell_type)(3, 5)
            self.head = lib.Linear(5, 2)

        def forward(self, xs):  # xs (T, N, 3) -> (T, N, 2): a prediction at every step
            state, outs = None, []
            for t in range(xs.shape[0]):
                state = self.cell(xs[t], state)
                outs.append(self.head(state if cell_type == "GRUCell" else state[0]))
            return stack(outs)

    return SequenceModel()


@pytest.mark.parametrize("cell_type", ["GRUCell", "LSTMCell"])
@pytest.mark.parametrize("name", ["adam_multistep", "sgd_nesterov_wd"])
def test_recurrent_cells_train_identically(cell_type, name):
    make_opt, schedule = OPTIMISERS[name]
    model, tmodel = sequence_model(nn, nn.stack, cell_type).double(), sequence_model(tnn, torch.stack,
                                                                                      cell_type).double()
    copy_to_torch(model, tmodel)
    r = np.random.default_rng(4)
    batches = [(r.standard_normal((5, 4, 3)), r.standard_normal((5, 4, 2))) for _ in range(6)]
    train_both(model, tmodel, make_opt, batches, mse, tmse, schedule)
    assert_same_eval(model, tmodel, r.standard_normal((7, 3, 3)))


def test_cells_with_a_given_state_match():
    r = np.random.default_rng(8)
    for cell_type in ("GRUCell", "LSTMCell"):
        cell, tcell = getattr(nn, cell_type)(2, 3, dtype=np.float64), getattr(tnn, cell_type)(2, 3).double()
        copy_to_torch(cell, tcell)
        x, h, c = r.standard_normal((4, 2)), r.standard_normal((4, 3)), r.standard_normal((4, 3))
        if cell_type == "GRUCell":
            close(cell(Tensor(x), h).data, tcell(torch.from_numpy(x), torch.from_numpy(h)))
        else:
            out, tout = cell(Tensor(x), (h, c)), tcell(torch.from_numpy(x), (torch.from_numpy(h), torch.from_numpy(c)))
            close(out[0].data, tout[0])
            close(out[1].data, tout[1])


def test_cells_on_one_unbatched_sample_match():
    r = np.random.default_rng(9)
    for cell_type in ("GRUCell", "LSTMCell"):
        cell, tcell = getattr(nn, cell_type)(2, 3, dtype=np.float64), getattr(tnn, cell_type)(2, 3).double()
        copy_to_torch(cell, tcell)
        x, h, c = r.standard_normal(2), r.standard_normal(3), r.standard_normal(3)
        tx, th, tc = map(torch.from_numpy, (x, h, c))
        if cell_type == "GRUCell":
            out, tout = cell(Tensor(x), h), tcell(tx, th)
            assert out.shape == (3,)
            close(out.data, tout)
            close(cell(Tensor(x)).data, tcell(tx))
        else:
            out, tout = cell(Tensor(x), (h, c)), tcell(tx, (th, tc))
            assert out[0].shape == out[1].shape == (3,)
            close(out[0].data, tout[0])
            close(out[1].data, tout[1])


def test_flatten_dims_match_or_refuse():
    x = np.random.default_rng(10).standard_normal((2, 3, 4, 5))
    for start, end in ((1, -1), (0, 2), (-3, -2), (2, 2)):
        close(nn.Flatten(start, end)(Tensor(x)).data, tnn.Flatten(start, end)(torch.from_numpy(x)))
    for shape, start, end in (((5,), 1, -1), ((2, 3), 0, 2), ((2, 3, 4), 2, 1)):
        with pytest.raises((IndexError, RuntimeError)):
            tnn.Flatten(start, end)(torch.zeros(shape))
        with pytest.raises(ValueError, match="Flatten"):
            nn.Flatten(start, end)(Tensor(np.zeros(shape)))


# ----------------------------------------------------------------------------- transposed, 1-d and 3-d nets


def autoencoder(lib):
    return lib.Sequential(lib.Conv2d(2, 4, 3, stride=2, padding=1), lib.Tanh(),
                          lib.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1, groups=2),
                          lib.Sigmoid(), lib.ConvTranspose2d(4, 2, (2, 3), padding=(0, 1), dilation=(1, 1)))


def net1d(lib):
    return lib.Sequential(lib.Conv1d(2, 4, 3, padding=1), lib.BatchNorm1d(4), lib.ELU(), lib.MaxPool1d(3, 2, 1),
                          lib.Conv1d(4, 4, 3, dilation=2), lib.ConvTranspose1d(4, 3, 3, stride=2), lib.AvgPool1d(2),
                          lib.Flatten(), lib.Linear(3 * 2, 3))


def net3d(lib):
    return lib.Sequential(lib.Conv3d(1, 3, 3, padding=1), lib.BatchNorm3d(3), lib.SELU(), lib.MaxPool3d(2),
                          lib.Conv3d(3, 4, (1, 2, 2), stride=(1, 1, 2)), lib.ReLU(), lib.AdaptiveAvgPool3d(1),
                          lib.Flatten(), lib.Linear(4, 3))


def test_transposed_convolution_autoencoder_trains_identically():
    model, tmodel = autoencoder(nn).double(), autoencoder(tnn).double()
    copy_to_torch(model, tmodel)
    r = np.random.default_rng(5)
    batches = [(r.standard_normal((3, 2, 6, 6)), r.standard_normal((3, 2, 7, 6))) for _ in range(5)]
    train_both(model, tmodel, OPTIMISERS["sgd_nesterov_wd"][0], batches, mse, tmse)
    assert_same_eval(model, tmodel, batches[0][0])


def test_conv1d_net_trains_identically():
    model, tmodel = net1d(nn).double(), net1d(tnn).double()
    copy_to_torch(model, tmodel)
    train_both(model, tmodel, OPTIMISERS["adam_multistep"][0], classification_batches((4, 2, 12), 3, 6), ce, tce,
               OPTIMISERS["adam_multistep"][1])
    assert_same_eval(model, tmodel, np.random.default_rng(6).standard_normal((2, 2, 12)))


def test_conv3d_net_trains_identically():
    model, tmodel = net3d(nn).double(), net3d(tnn).double()
    copy_to_torch(model, tmodel)
    train_both(model, tmodel, OPTIMISERS["sgd_cosine"][0], classification_batches((3, 1, 4, 4, 4), 3, 5), ce, tce,
               OPTIMISERS["sgd_cosine"][1])
    assert_same_eval(model, tmodel, np.random.default_rng(7).standard_normal((2, 1, 4, 4, 4)))


# ----------------------------------------------------------------------------- pooling modules and functions

POOLS = [
    ("MaxPool1d", (3,), dict(stride=2, padding=1, dilation=2, ceil_mode=True), 1),
    ("MaxPool2d", (3,), dict(stride=2, padding=1), 2),
    ("MaxPool2d", ((2, 3),), dict(stride=1, dilation=(2, 1), ceil_mode=True), 2),
    ("MaxPool3d", (2,), dict(stride=(1, 2, 2)), 3),
    ("AvgPool1d", (3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False), 1),
    ("AvgPool2d", (3,), dict(stride=2, padding=1, ceil_mode=True), 2),
    ("AvgPool2d", (2,), dict(divisor_override=3), 2),
    ("AvgPool3d", (2,), dict(stride=1, padding=1, count_include_pad=False), 3),
    ("LPPool1d", (2, 3), dict(stride=2), 1),
    ("LPPool2d", (3, 2), dict(), 2),
    ("AdaptiveAvgPool1d", (4,), dict(), 1),
    ("AdaptiveAvgPool2d", ((3, None),), dict(), 2),
    ("AdaptiveAvgPool3d", ((2, 3, 2),), dict(), 3),
    ("AdaptiveMaxPool1d", (3,), dict(), 1),
    ("AdaptiveMaxPool2d", ((4, 3),), dict(), 2),
    ("AdaptiveMaxPool3d", (2,), dict(), 3),
]


@pytest.mark.parametrize("name, args, kw, nd", POOLS, ids=[p[0] for p in POOLS])
def test_pooling_modules_match(name, args, kw, nd):
    r = np.random.default_rng(2)
    x = r.standard_normal((2, 3) + (7, 6, 5)[:nd])
    if name.startswith("LP"):
        x = np.abs(x)  # PyTorch's LP pool raises x to the p without |x|
    layer, tlayer = getattr(nn, name)(*args, **kw), getattr(tnn, name)(*args, **kw)
    xt = Tensor(x, requires_grad=True)
    xtt = torch.from_numpy(x).requires_grad_()
    y, ty = layer(xt), tlayer(xtt)
    close(y.data, ty, "forward")
    g = r.standard_normal(y.shape)
    y.backward(g)
    ty.backward(torch.from_numpy(g))
    close(xt.grad, xtt.grad, "backward")


def test_max_pool_return_indices_match():
    x = np.random.default_rng(3).standard_normal((2, 2, 7, 7))
    y, idx = nn.MaxPool2d(3, 2, 1, return_indices=True)(Tensor(x))
    ty, tidx = tnn.MaxPool2d(3, 2, 1, return_indices=True)(torch.from_numpy(x))
    close(y.data, ty)
    assert np.array_equal(idx, tidx.numpy())


# ----------------------------------------------------------------------------- functions


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match(reduction):
    r = np.random.default_rng(1)
    z, t = r.standard_normal((4, 3, 2, 5)), r.integers(0, 3, (4, 2, 5))
    t[0, 0, :3] = -100
    t[2, 1, 1] = -100
    zt = Tensor(z, requires_grad=True)
    ztt = torch.from_numpy(z).requires_grad_()
    loss, tloss = F.cross_entropy(zt, t, reduction=reduction), tF.cross_entropy(ztt, torch.from_numpy(t),
                                                                               reduction=reduction)
    close(loss.data, tloss)
    g = r.standard_normal(loss.shape)
    loss.backward(g)
    tloss.backward(torch.from_numpy(g))
    close(zt.grad, ztt.grad)
    a, b = r.standard_normal((3, 4)), r.standard_normal((3, 4))
    close(F.mse_loss(Tensor(a), b, reduction=reduction).data,
          tF.mse_loss(torch.from_numpy(a), torch.from_numpy(b), reduction=reduction))


def test_cross_entropy_with_every_target_ignored_is_nan_as_torch():
    z, t = np.ones((2, 3)), np.full(2, -100)
    assert np.isnan(F.cross_entropy(Tensor(z), t).item())
    assert np.isnan(tF.cross_entropy(torch.from_numpy(z), torch.from_numpy(t)).item())
    assert F.cross_entropy(Tensor(z), t, reduction="sum").item() == 0.0


def test_activations_match():
    x = np.random.default_rng(2).standard_normal((3, 5)) * 3
    xt = torch.from_numpy(x)
    for ours, theirs in ((F.relu, tF.relu), (F.elu, tF.elu), (lambda v: F.elu(v, 0.4), lambda v: tF.elu(v, 0.4)),
                         (F.selu, tF.selu), (F.tanh, torch.tanh), (F.sigmoid, torch.sigmoid),
                         (lambda v: F.softmax(v, 0), lambda v: tF.softmax(v, 0)),
                         (lambda v: F.log_softmax(v, 1), lambda v: tF.log_softmax(v, 1))):
        close(ours(Tensor(x)).data, theirs(xt))


@pytest.mark.parametrize("momentum", [0.1, 0.7, None])
def test_batchnorm_running_statistics_match(momentum):
    r = np.random.default_rng(0)
    bn, tbn = nn.BatchNorm1d(3, momentum=momentum).double(), tnn.BatchNorm1d(3, momentum=momentum).double()
    for _ in range(3):
        x = r.standard_normal((5, 3, 4)) * 2 + 1
        close(bn(Tensor(x)).data, tbn(torch.from_numpy(x)))
    assert_same_state(bn, tbn)
    bn.eval()
    tbn.eval()
    close(bn(Tensor(x)).data, tbn(torch.from_numpy(x)))


# ----------------------------------------------------------------------------- state dicts


def test_state_dict_keys_match_for_the_same_structure():
    for make in (cnn, autoencoder, net1d, net3d, lambda lib: lib.Sequential(
            lib.LSTMCell(2, 3), lib.GRUCell(3, 3, bias=False), lib.Linear(2, 2, bias=False),
            lib.ModuleList([lib.BatchNorm2d(2, affine=False), lib.BatchNorm1d(2, track_running_stats=False),
                            lib.Sequential(lib.Conv2d(1, 1, 1, bias=False))]))):
        ours, theirs = make(nn).state_dict(), make(tnn).state_dict()
        assert list(ours) == list(theirs)
        for k in ours:
            assert tuple(np.shape(ours[k])) == tuple(theirs[k].shape), k
    assert list(recurrent_resnet(nn, F).state_dict()) == list(recurrent_resnet(tnn, tF).state_dict())
    assert "bns1.0.num_batches_tracked" in recurrent_resnet(nn, F).state_dict()


def test_weights_from_torch_load_into_convlab():
    tmodel, model = cnn(tnn).double(), cnn(nn).double()
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8))
    model.eval()
    tmodel.eval()
    with torch.no_grad():
        close(model(Tensor(x)).data, tmodel(torch.from_numpy(x)))


# ----------------------------------------------------------------------------- initialisation

SAMPLES = (128, 64, 5, 5)  # 204800 draws: the standard error of a std is about 0.16%


def _moments(a):
    a = np.asarray(a, dtype=np.float64).ravel()
    return a.mean(), a.std(), np.abs(a).max()


@pytest.mark.parametrize("name, kw, std", [
    ("kaiming_normal_", dict(), np.sqrt(2.0 / (64 * 25))),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"), np.sqrt(2.0 / (128 * 25))),
    ("kaiming_uniform_", dict(a=np.sqrt(5)), np.sqrt(1.0 / 3 / (64 * 25))),
    ("xavier_uniform_", dict(gain=2.0), 2.0 * np.sqrt(2.0 / (64 * 25 + 128 * 25))),
    ("xavier_normal_", dict(), np.sqrt(2.0 / (64 * 25 + 128 * 25))),
    ("lecun_normal_", dict(), np.sqrt(1.0 / (64 * 25))),
])
def test_init_moments(name, kw, std):
    """Mean 0 and the formula's std within 2% (more than ten standard errors), as PyTorch's
    initialiser draws them; uniform draws never pass their bound sqrt(3)*std."""
    w = nn.Parameter(np.zeros(SAMPLES))
    getattr(nn.init, name)(w, **kw)
    mean, s, top = _moments(w.data)
    assert abs(mean) < 0.02 * std and s == pytest.approx(std, rel=0.02)
    if "uniform" in name:
        assert np.sqrt(3) * std * 0.99 < top <= np.sqrt(3) * std
    if name != "lecun_normal_":  # PyTorch has no lecun_normal_; its std is checked against the formula
        tw = torch.zeros(SAMPLES, dtype=torch.float64)
        getattr(torch.nn.init, name)(tw, **kw)
        assert _moments(tw)[1] == pytest.approx(s, rel=0.03)


@pytest.mark.parametrize("make, fan_in", [
    (lambda lib: lib.Linear(300, 20), 300),
    (lambda lib: lib.Conv2d(16, 32, 3), 16 * 9),
    (lambda lib: lib.Conv2d(16, 32, 3, groups=4), 4 * 9),
    (lambda lib: lib.Conv1d(8, 64, 5), 8 * 5),
    (lambda lib: lib.Conv3d(4, 16, 3), 4 * 27),
    (lambda lib: lib.ConvTranspose2d(32, 16, 3), 16 * 9),
    (lambda lib: lib.GRUCell(10, 40), 40),
    (lambda lib: lib.LSTMCell(10, 30), 30),
])
def test_default_layer_init_bounds(make, fan_in):
    """PyTorch's default: every weight and bias ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``."""
    bound = 1 / np.sqrt(fan_in)
    ours, theirs = make(nn), make(tnn)
    for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert name == tname
        mean, s, top = _moments(p.data)
        assert top <= bound
        if p.size >= 2000:
            assert top > 0.99 * bound
            assert s == pytest.approx(bound / np.sqrt(3), rel=0.05)
            assert abs(mean) < 0.05 * bound
            assert _moments(tp.detach().numpy())[1] == pytest.approx(s, rel=0.08)
        assert _moments(tp.detach().numpy())[2] <= bound * (1 + 1e-6)


def test_batchnorm_init():
    bn, tbn = nn.BatchNorm2d(5), tnn.BatchNorm2d(5)
    for k, v in bn.state_dict().items():
        assert np.array_equal(np.asarray(v), tbn.state_dict()[k].numpy()), k
