"""Every graph node of convlab.nn, gradchecked in float64 by central differences
(``convlab.gradcheck`` through ``check_grads``): tensor arithmetic, shapes, reductions,
activations, losses, normalisation, dropout and every engine op family."""
import numpy as np
import pytest

import convlab.nn as nn
import convlab.nn.functional as F
from convlab.nn import Tensor

from nn_helpers import check_grads, leaves

RNG = np.random.default_rng(7)


def randn(*shape):
    return RNG.standard_normal(shape)


def check(fn, *arrays, **tol):
    """Gradcheck ``fn(*tensors)`` over float64 leaves made from ``arrays``."""
    ts = leaves(*arrays)
    return check_grads(lambda: fn(*ts), ts, **tol)


# ----------------------------------------------------------------------------- arithmetic

BROADCAST_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((), (2, 3))]


@pytest.mark.parametrize("sa, sb", BROADCAST_SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_arithmetic_with_broadcasting(op, sa, sb):
    a, b = randn(*sa), randn(*sb)
    if op == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)  # keep away from 0
    f = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
         "div": lambda x, y: x / y}[op]
    check(f, a, b)
    check(lambda y, x: f(x, y), b, a)


def test_scalars_on_either_side_neg_and_pow():
    a = np.abs(randn(3, 4)) + 0.5
    check(lambda x: 2.0 - x * 3 + 1 / x - (-x) + 0.5 ** 2 * x, a)
    check(lambda x: x ** 3 + x ** -1.5 + x ** 0.5, a)


def test_numpy_array_constants_on_either_side():
    a, c = randn(2, 3), randn(2, 3)
    check(lambda x: c * x + x / (np.abs(c) + 1) - c, a)
    check(lambda x: (c + 1) @ x.T, a)


@pytest.mark.parametrize("sa, sb", [((4,), (4,)), ((3, 4), (4,)), ((4,), (4, 2)), ((3, 4), (4, 2)),
                                    ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5)),
                                    ((2, 1, 3, 4), (5, 4, 2)), ((2, 3, 4), (4,)), ((4,), (2, 4, 3))])
def test_matmul(sa, sb):
    check(lambda x, y: x @ y, randn(*sa), randn(*sb))


# ----------------------------------------------------------------------------- reductions and shapes

@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "max"])
def test_reductions(name, axis, keepdims):
    check(lambda x: getattr(x, name)(axis=axis, keepdims=keepdims), randn(2, 3, 4))


def test_reshape_transpose_flatten():
    a = randn(2, 3, 4)
    check(lambda x: x.reshape(4, 6) * x.reshape(-1)[:24].reshape((4, 6)), a)
    check(lambda x: x.transpose(2, 0, 1), a)
    check(lambda x: x.transpose() + 0, a)
    check(lambda x: x.T, a)
    check(lambda x: x.permute((1, 2, 0)), a)
    check(lambda x: x.flatten(1), a)
    check(lambda x: F.flatten(x, 2), a)
    check(lambda x: nn.Flatten(0, 1)(x), a)


INDICES = [
    (1,), (slice(None), 2), (Ellipsis, slice(1, 3)), (slice(None, None, -1),), (None, 0, slice(None), -1),
    (np.array([0, 1, 0]),),                                   # repeated rows add up
    (slice(None), np.array([2, 2, 0, 2])),
    (np.array([0, 1, 1]), slice(None), np.array([3, 0, 3])),  # two advanced indices, broadcast
    (np.array([[0, 1], [1, 1]]),),
]


@pytest.mark.parametrize("index", INDICES, ids=range(len(INDICES)))
def test_getitem(index):
    check(lambda x: x[index], randn(2, 3, 4))


def test_getitem_boolean_mask_and_tensor_index():
    a = randn(3, 4)
    mask = a > 0
    check(lambda x: x[mask], a)
    check(lambda x: x[Tensor(np.array([2, 0, 2]))], a)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cat_and_stack(axis):
    a, b, c = randn(2, 3), randn(2, 3), randn(2, 3)
    check(lambda x, y, z: nn.cat([x, y, z, x], dim=axis), a, b, c)
    check(lambda x, y, z: nn.stack([x, y, z, y], dim=axis), a, b, c)
    check(lambda x: F.concat([x, Tensor(b)], dim=axis), a)  # a constant among the operands


# ----------------------------------------------------------------------------- activations

ACTIVATIONS = {
    "relu": F.relu, "elu": F.elu, "elu_alpha": lambda x: F.elu(x, alpha=0.3), "selu": F.selu, "tanh": F.tanh,
    "sigmoid": F.sigmoid, "exp": lambda x: x.exp(), "log": lambda x: (x * x + 0.5).log(),
    "tensor_relu": lambda x: x.relu(), "tensor_tanh": lambda x: x.tanh(), "tensor_sigmoid": lambda x: x.sigmoid(),
    "softmax": F.softmax, "softmax_dim0": lambda x: F.softmax(x, dim=0), "log_softmax": F.log_softmax,
    "log_softmax_dim1": lambda x: F.log_softmax(x, dim=1),
    "module_relu": nn.ReLU(), "module_elu": nn.ELU(0.5), "module_selu": nn.SELU(), "module_tanh": nn.Tanh(),
    "module_sigmoid": nn.Sigmoid(), "module_softmax": nn.Softmax(1), "module_log_softmax": nn.LogSoftmax(0),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation(name):
    a = randn(3, 4, 5) * 2
    a[np.abs(a) < 1e-3] = 0.5  # no input at ReLU's and ELU's kink
    check(ACTIVATIONS[name], a)


def test_sigmoid_and_softmax_do_not_overflow():
    a = np.array([[-800.0, 0.0, 800.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert np.allclose(F.sigmoid(Tensor(a)).data, [[0.0, 0.5, 1.0]])
        assert np.allclose(F.softmax(Tensor(a)).data, [[0.0, 0.0, 1.0]])
        assert np.isfinite(F.log_softmax(Tensor(a)).data).all()
    check(F.sigmoid, np.array([-40.0, -3.0, 3.0, 40.0]))


# ----------------------------------------------------------------------------- losses

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy(reduction):
    target = np.array([0, 3, 1, 3, 2])
    check(lambda z: F.cross_entropy(z, target, reduction=reduction), randn(5, 4))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_ignore_index_and_spatial_targets(reduction):
    target = RNG.integers(0, 3, (2, 4, 3))
    target[0, 1, 2] = target[1, 3, 0] = -100
    check(lambda z: F.cross_entropy(z, target, reduction=reduction), randn(2, 3, 4, 3))
    target1 = np.array([1, 7, 0, 7])
    check(lambda z: F.cross_entropy(z, target1, ignore_index=7, reduction=reduction), randn(4, 3))
    check(lambda z: nn.CrossEntropyLoss(ignore_index=7, reduction=reduction)(z, target1), randn(4, 3))


def test_cross_entropy_equals_log_softmax_pick():
    """The fused node against its definition from other nodes."""
    z, target = randn(5, 4), np.array([0, 3, 1, 3, 2])
    fused = F.cross_entropy(Tensor(z), target).data
    composed = -F.log_softmax(Tensor(z), dim=1)[np.arange(5), target].mean().data
    assert np.allclose(fused, composed, rtol=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(reduction):
    check(lambda a, b: F.mse_loss(a, b, reduction=reduction), randn(3, 4), randn(3, 4))
    target = randn(3, 4)
    check(lambda a: nn.MSELoss(reduction=reduction)(a, target), randn(3, 4))


# ----------------------------------------------------------------------------- layers

@pytest.mark.parametrize("xs", [(5, 3), (2, 4, 3), (3,)])
def test_linear(xs):
    check(lambda x, w, b: F.linear(x, w, b), randn(*xs), randn(4, 3), randn(4))
    check(lambda x, w: F.linear(x, w), randn(*xs), randn(4, 3))


def test_linear_module_parameters():
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = leaves(randn(4, 3))[0]
    check_grads(lambda: layer(x), [x, layer.weight, layer.bias])


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 4, 3), (2, 3, 2, 2, 3)])
def test_batch_norm_training(shape):
    c = shape[1]
    check(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), randn(*shape) * 2 + 1, randn(c),
          randn(c))
    rm, rv = np.zeros(c), np.ones(c)
    check(lambda x: F.batch_norm(x, rm, rv, training=True, eps=1e-3), randn(*shape))


def test_batch_norm_eval_and_modules():
    rm, rv = randn(3), np.abs(randn(3)) + 0.5
    check(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False), randn(4, 3, 2), randn(3), randn(3))
    for bn, shape in ((nn.BatchNorm1d(3, dtype=np.float64), (5, 3)), (nn.BatchNorm2d(3, dtype=np.float64),
                                                                      (2, 3, 2, 3))):
        bn.weight.data[:] = randn(3)
        bn.bias.data[:] = randn(3)
        x = leaves(randn(*shape))[0]
        for mode in (True, False):
            bn.train(mode)
            check_grads(lambda: bn(x), [x, bn.weight, bn.bias])


@pytest.mark.parametrize("name", ["dropout", "alpha_dropout"])
def test_dropout_with_a_fixed_mask(name):
    f = getattr(F, name)

    def fn(x):
        nn.manual_seed(3)
        return f(x, p=0.4, training=True)

    report = check(fn, randn(4, 50))
    assert report.passed
    nn.manual_seed(3)
    y = f(Tensor(np.ones((4, 50))), p=0.4, training=True).data
    assert 0.2 < np.mean(y != y[0, np.argmax(y[0])]) < 0.6  # some values dropped, some kept


def test_dropout_modules_with_a_fixed_mask():
    for layer in (nn.Dropout(0.3), nn.AlphaDropout(0.3)):
        def fn(x):
            nn.manual_seed(5)
            return layer(x)

        check(fn, randn(3, 20))


# ----------------------------------------------------------------------------- engine ops

CONV_CASES = [
    (1, dict()), (1, dict(stride=2, padding=1, dilation=2)), (1, dict(groups=2, flip=True)),
    (2, dict()), (2, dict(stride=(2, 1), padding=((1, 0), (0, 2)), dilation=(1, 2))), (2, dict(groups=2)),
    (2, dict(padding="same", flip=True)), (2, dict(algorithm="direct", padding=1)),
    (3, dict(padding=1, stride=2)), (3, dict(groups=2, dilation=(1, 2, 1))),
]
SPATIAL = {1: (7,), 2: (5, 4), 3: (3, 4, 3)}
KERNEL = {1: (3,), 2: (3, 2), 3: (2, 2, 2)}


@pytest.mark.parametrize("nd, kw", CONV_CASES)
def test_conv(nd, kw):
    groups = kw.get("groups", 1)
    x, w, b = randn(2 if nd == 1 else 1, 2, *SPATIAL[nd]), randn(2, 2 // groups, *KERNEL[nd]), randn(2)
    f = getattr(F, f"conv{nd}d")
    check(lambda x, w, b: f(x, w, b, **kw), x, w, b)
    if nd == 1:
        check(lambda x, w: f(x, w, **kw), x, w)


TRANSPOSE_CASES = [
    (1, dict(stride=2, output_padding=1)), (1, dict(groups=2, dilation=2, padding=1)),
    (2, dict()), (2, dict(stride=(2, 3), padding=1, output_padding=(1, 2))), (2, dict(groups=2, dilation=(2, 1))),
    (3, dict(stride=2, padding=(0, 1, 1))),
]


@pytest.mark.parametrize("nd, kw", TRANSPOSE_CASES)
def test_conv_transpose(nd, kw):
    groups = kw.get("groups", 1)
    sp = (5,) if nd == 1 else (3, 4) if nd == 2 else (2, 3, 2)
    x, w, b = randn(1, 2, *sp), randn(2, 4 // groups, *KERNEL[nd]), randn(4)
    f = getattr(F, f"conv_transpose{nd}d")
    check(lambda x, w, b: f(x, w, b, **kw), x, w, b)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_local_and_tiled(nd):
    sp = (7,) if nd == 1 else (5, 4) if nd == 2 else (3, 3, 3)
    k = (3,) if nd == 1 else (2, 3) if nd == 2 else (2, 2, 2)
    osp = tuple(n - kk + 1 for n, kk in zip(sp, k))
    x = randn(1, 2, *sp)
    wl, bl = randn(2, *osp, 2, *k), randn(2, *osp)
    check(lambda x, w, b: getattr(F, f"local_conv{nd}d")(x, w, b), x, wl, bl)
    tiles = (2,) * nd
    wt, bt = randn(2, *tiles, 2, *k), randn(2)
    check(lambda x, w, b: getattr(F, f"tiled_conv{nd}d")(x, w, b), x, wt, bt)
    if nd < 3:  # stride, padding and dilation reach the backward too
        kw = dict(stride=2, padding=1, dilation=(2,) + (1,) * (nd - 1))
        osp2 = tuple((n + 2 - d * (kk - 1) - 1) // 2 + 1 for n, kk, d in zip(sp, k, kw["dilation"]))
        check(lambda x, w: getattr(F, f"local_conv{nd}d")(x, w, **kw), x, randn(2, *osp2, 2, *k))
        check(lambda x, w: getattr(F, f"tiled_conv{nd}d")(x, w, **kw), x, wt)


@pytest.mark.parametrize("nd, kw", [(1, dict()), (2, dict(stride=2, padding=1)), (2, dict(dilation=(2, 1))),
                                    (3, dict(padding=1))])
def test_separable(nd, kw):
    sp = (6,) if nd == 1 else (5, 4) if nd == 2 else (3, 2, 3)
    x = randn(1, 2, *sp)
    f = getattr(F, f"separable_conv{nd}d")
    factors = [randn(2, 2, 2) for _ in range(nd)]
    check(lambda x, b, *fs: f(x, list(fs), b, **kw), x, randn(2), *factors)
    factors = [randn(2, 1, 3) for _ in range(nd)]
    check(lambda x, *fs: f(x, list(fs), groups=2, **kw), x, *factors)


POOL_CASES = [
    (1, dict(kernel_size=3)), (1, dict(kernel_size=3, stride=2, padding=1, dilation=2, ceil_mode=True)),
    (2, dict(kernel_size=2)), (2, dict(kernel_size=3, stride=2, padding=1)),
    (2, dict(kernel_size=(3, 2), stride=(1, 2), dilation=(2, 1), ceil_mode=True)),
    (3, dict(kernel_size=2, stride=1)), (3, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
]


def _pool_input(nd):
    sp = (9,) if nd == 1 else (6, 7) if nd == 2 else (4, 5, 4)
    return randn(2, 2, *sp) if nd < 3 else randn(1, 1, *sp)


@pytest.mark.parametrize("nd, kw", POOL_CASES)
def test_max_pool(nd, kw):
    check(lambda x: getattr(F, f"max_pool{nd}d")(x, **kw), _pool_input(nd))


@pytest.mark.parametrize("nd, kw", [c for c in POOL_CASES if "dilation" not in c[1]])
@pytest.mark.parametrize("extra", [dict(), dict(count_include_pad=False), dict(divisor_override=3)])
def test_avg_pool(nd, kw, extra):
    check(lambda x: getattr(F, f"avg_pool{nd}d")(x, **kw, **extra), _pool_input(nd))


@pytest.mark.parametrize("nd, kw", [c for c in POOL_CASES if "dilation" not in c[1]])
@pytest.mark.parametrize("p", [2, 3.5])
def test_lp_pool(nd, kw, p):
    check(lambda x: getattr(F, f"lp_pool{nd}d")(x, p, **kw), _pool_input(nd))


@pytest.mark.parametrize("nd, size", [(1, 4), (2, (3, 2)), (2, (None, 4)), (3, (2, 3, 2))])
def test_adaptive_pools(nd, size):
    x = _pool_input(nd)
    check(lambda x: getattr(F, f"adaptive_avg_pool{nd}d")(x, size), x)
    check(lambda x: getattr(F, f"adaptive_max_pool{nd}d")(x, size), x)


@pytest.mark.parametrize("shape", [(3, 6), (2, 6, 4), (2, 4, 3, 2)])
def test_maxout(shape):
    check(lambda x: F.maxout(x, 2), randn(*shape))
    check(lambda x: nn.Maxout(3)(x.reshape(shape[0], -1)[:, :6]), randn(*shape))


def test_pooling_modules():
    x = _pool_input(2)
    for layer in (nn.MaxPool2d(3, 2, 1), nn.AvgPool2d(2, ceil_mode=True), nn.LPPool2d(2, 3, 2),
                  nn.AdaptiveAvgPool2d(3), nn.AdaptiveMaxPool2d((2, 3))):
        check(layer, x)


# ----------------------------------------------------------------------------- composite graphs


def _set_random(module, scale=0.5):
    for p in module.parameters():
        p.data[...] = RNG.standard_normal(p.shape) * scale


@pytest.mark.parametrize("cell_type", ["GRUCell", "LSTMCell"])
def test_recurrent_cells_unrolled_with_shared_weights(cell_type):
    """Four steps of one cell: the weights' gradient is the sum over the steps (BPTT)."""
    cell = getattr(nn, cell_type)(3, 4, dtype=np.float64)
    _set_random(cell)
    xs, h0, c0 = leaves(randn(4, 2, 3), randn(2, 4), randn(2, 4))

    def run():
        state = h0 if cell_type == "GRUCell" else (h0, c0)
        outs = []
        for t in range(xs.shape[0]):
            state = cell(xs[t], state)
            h = state if cell_type == "GRUCell" else state[0] * 1.0 + state[1] * 0.5
            outs.append(h)
        return nn.stack(outs)

    tensors = [xs, h0] + ([c0] if cell_type == "LSTMCell" else []) + list(cell.parameters())
    check_grads(run, tensors)


def test_cells_without_bias_and_default_state():
    for cell in (nn.GRUCell(2, 3, bias=False, dtype=np.float64), nn.LSTMCell(2, 3, bias=False, dtype=np.float64)):
        assert len(list(cell.parameters())) == 2
        x = leaves(randn(3, 2))[0]

        def run():
            s = cell(x)
            s = cell(x * 2.0, s)
            return s if isinstance(s, Tensor) else s[0] + s[1]

        check_grads(run, [x] + list(cell.parameters()))


class RecurrentBlock(nn.Module):
    """A ResNet basic block applied ``steps`` times with the same two convolutions and a
    separate pair of BatchNorms per step: ``h = relu(h + bn2_t(conv2(relu(bn1_t(conv1(h))))))``."""

    def __init__(self, channels, steps):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, dtype=np.float64)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False, dtype=np.float64)
        self.bns1 = nn.ModuleList([nn.BatchNorm2d(channels, dtype=np.float64) for _ in range(steps)])
        self.bns2 = nn.ModuleList([nn.BatchNorm2d(channels, dtype=np.float64) for _ in range(steps)])

    def forward(self, h):
        for bn1, bn2 in zip(self.bns1, self.bns2):
            out = F.relu(bn1(self.conv1(h)))
            h = F.relu(h + bn2(self.conv2(out)))
        return h


def test_resnet_block_applied_three_times_with_shared_weights():
    block = RecurrentBlock(2, 3)
    for bn in list(block.bns1) + list(block.bns2):
        bn.weight.data[:] = 1 + 0.3 * randn(2)
        bn.bias.data[:] = 0.3 * randn(2)
    x = leaves(randn(2, 2, 4, 4))[0]
    params = list(block.parameters())
    assert len(params) == 2 + 4 * 3
    check_grads(lambda: block(x), [x] + params)
