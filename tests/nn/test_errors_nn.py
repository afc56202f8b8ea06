"""Bad input to convlab.nn and convlab.optim: a ValueError or TypeError (KeyError for state
dict keys, as a mapping would) whose message names the argument."""
import numpy as np
import pytest

import convlab.nn as nn
import convlab.nn.functional as F
import convlab.optim as optim
from convlab.nn import BackwardError, Tensor

X32 = Tensor(np.ones((2, 3, 5, 5), np.float32))


def params():
    return nn.Linear(2, 2).parameters()


CASES = [
    # shapes between layers
    (lambda: nn.Linear(4, 2)(Tensor(np.ones((2, 3), np.float32))), ValueError, "in_features"),
    (lambda: nn.Conv2d(4, 2, 3)(X32), ValueError, "in_channels is 4"),
    (lambda: nn.ConvTranspose2d(2, 2, 3)(X32), ValueError, "in_channels is 2"),
    (lambda: nn.Conv1d(4, 2, 3)(Tensor(np.ones((2, 3, 5), np.float32))), ValueError, "in_channels"),
    (lambda: nn.Conv3d(3, 2, 3)(X32), ValueError, "x must have 5 dims"),
    (lambda: nn.LocalConv2d(3, 2, (6, 6), 3)(X32), ValueError, "w must have shape"),
    (lambda: nn.TiledConv2d(2, 2, 3, 2)(X32), ValueError, "in_channels"),
    (lambda: nn.BatchNorm2d(4)(X32), ValueError, "BatchNorm2d\\(4\\) got input with 3 channels"),
    (lambda: nn.BatchNorm1d(3)(X32), ValueError, "expects input of 2 or 3 dims"),
    (lambda: nn.GRUCell(4, 2)(Tensor(np.ones((2, 3), np.float32))), ValueError, "input must be a Tensor \\(N, 4\\)"),
    (lambda: nn.LSTMCell(3, 2)(Tensor(np.ones((2, 3), np.float32)), (np.ones((2, 3), np.float32), None)),
     ValueError, "hidden state must have shape \\(2, 2\\)"),
    (lambda: nn.Maxout(4)(Tensor(np.ones((2, 6)))), ValueError, "pieces"),
    (lambda: nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2))(Tensor(np.ones((1, 3), np.float32))), ValueError,
     "in_features"),
    # losses
    (lambda: F.cross_entropy(Tensor(np.ones((2, 3))), np.array([0.0, 1.0])), TypeError, "target must be an integer"),
    (lambda: F.cross_entropy(Tensor(np.ones((2, 3))), [0, 1]), TypeError, "target"),
    (lambda: F.cross_entropy(Tensor(np.ones((2, 3))), np.array([0, 3])), ValueError, r"target values.*\[0, 3\)"),
    (lambda: F.cross_entropy(Tensor(np.ones((2, 3))), np.array([-1, 0])), ValueError, "found -1"),
    (lambda: F.cross_entropy(Tensor(np.ones((2, 3))), np.array([0, 1, 2])), ValueError, "target must have shape"),
    (lambda: F.cross_entropy(Tensor(np.ones((2, 3, 4))), np.zeros((2, 3), int)), ValueError, r"\(2, 4\)"),
    (lambda: F.cross_entropy(Tensor(np.ones(3)), np.zeros(3, int)), ValueError, "input must be"),
    (lambda: F.cross_entropy(Tensor(np.ones((2, 3))), np.zeros(2, int), reduction="avg"), ValueError, "reduction"),
    (lambda: F.mse_loss(Tensor(np.ones(3)), np.ones(4)), ValueError, "target must have input's shape"),
    # dtypes and kinds
    (lambda: nn.Conv2d(3, 2, 3, dtype=np.float64)(X32), TypeError, "dtype"),
    (lambda: nn.Linear(3, 2, dtype=np.float64)(Tensor(np.ones((2, 3), np.float32))), TypeError, "weight has dtype"),
    (lambda: nn.BatchNorm1d(3)(Tensor(np.ones((4, 3)))), TypeError, "dtype"),
    (lambda: nn.GRUCell(3, 2)(Tensor(np.ones((2, 3)))), TypeError, "dtype"),
    (lambda: F.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))), TypeError, "input must be a convlab.nn.Tensor"),
    (lambda: F.relu(np.ones(3)), TypeError, "input must be a convlab.nn.Tensor"),
    (lambda: Tensor(np.arange(3), requires_grad=True), TypeError, "floating-point"),
    (lambda: Tensor(np.ones(3)) ** Tensor(np.ones(3)), TypeError, "exponent"),
    (lambda: F.separable_conv2d(X32, np.ones((2, 3, 3))), TypeError, "factors"),
    # tensors
    (lambda: Tensor(np.ones(3)).sum(axis=2), ValueError, "axis 2"),
    (lambda: Tensor(np.ones((2, 3))).transpose(0, 0), ValueError, "permutation"),
    (lambda: F.batch_norm(Tensor(np.ones((2, 3))), np.zeros(4), np.ones(3), training=True), ValueError,
     "running_mean must have shape"),
    (lambda: F.batch_norm(Tensor(np.ones((1, 3))), None, None, training=True), ValueError, "more than one value"),
    (lambda: F.batch_norm(Tensor(np.ones((2, 3))), None, None), ValueError, "running_mean and running_var"),
    (lambda: F.dropout(Tensor(np.ones(3)), p=1.5), ValueError, "p must be a probability"),
    (lambda: nn.AlphaDropout(-0.1), ValueError, "p must be a probability"),
    # constructors
    (lambda: nn.Conv2d(3, 4, 3, groups=2), ValueError, "groups"),
    (lambda: nn.Conv2d(3, 4, (3, 3, 3)), TypeError, "kernel_size"),
    (lambda: nn.Linear(0, 3), ValueError, "in_features"),
    (lambda: nn.Linear(2, 2, dtype=np.int32), TypeError, "dtype"),
    (lambda: nn.BatchNorm2d(0), ValueError, "num_features"),
    (lambda: nn.GRUCell(3, 0), ValueError, "hidden_size"),
    (lambda: nn.MaxPool2d(), TypeError, "kernel_size"),
    (lambda: nn.AvgPool2d(2, foo=1), TypeError, "foo"),
    (lambda: nn.manual_seed(1.5), TypeError, "seed"),
    (lambda: nn.init.kaiming_normal_(Tensor(np.ones(3))), ValueError, "2 dims"),
    (lambda: nn.init.kaiming_normal_(np.ones((3, 3))), TypeError, "tensor"),
    (lambda: nn.init.kaiming_normal_(nn.Parameter(np.ones((3, 3))), mode="fan"), ValueError, "mode"),
    (lambda: nn.init.calculate_gain("swish"), ValueError, "nonlinearity"),
    # optimisers
    (lambda: optim.SGD(params(), lr=-0.1), ValueError, "lr"),
    (lambda: optim.SGD(params(), lr=0.1, momentum=-0.5), ValueError, "momentum"),
    (lambda: optim.SGD(params(), lr=0.1, weight_decay=-1), ValueError, "weight_decay"),
    (lambda: optim.SGD(params(), lr=0.1, nesterov=True), ValueError, "nesterov"),
    (lambda: optim.SGD(params(), lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), ValueError, "dampening"),
    (lambda: optim.SGD([], lr=0.1), ValueError, "params"),
    (lambda: optim.SGD([np.ones(3)], lr=0.1), TypeError, "params"),
    (lambda: optim.SGD([Tensor(np.ones(3))], lr=0.1), TypeError, "require grad"),
    (lambda: optim.Adam(params(), lr=-1), ValueError, "lr"),
    (lambda: optim.Adam(params(), betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
    (lambda: optim.Adam(params(), betas=(-0.1, 0.9)), ValueError, r"betas\[0\]"),
    (lambda: optim.Adam(params(), betas=0.9), ValueError, "betas"),
    (lambda: optim.Adam(params(), eps=-1e-8), ValueError, "eps"),
    (lambda: optim.lr_scheduler.MultiStepLR(optim.SGD(params(), lr=0.1), [3, 1]), ValueError, "milestones"),
    (lambda: optim.lr_scheduler.CosineAnnealingLR(optim.SGD(params(), lr=0.1), 0), ValueError, "T_max"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_bad_input_raises_naming_the_argument(case):
    call, error, match = CASES[case]
    with pytest.raises(error, match=match):
        call()


def test_backward_errors_are_backward_errors():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(BackwardError, match="non-scalar"):
        (x * 2.0).backward()
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(BackwardError, match="freed"):
        loss.backward()


def test_load_state_dict_missing_unexpected_and_shape():
    layer = nn.Linear(2, 2)
    with pytest.raises(KeyError, match=r"missing keys \['bias'\]"):
        layer.load_state_dict({"weight": np.ones((2, 2))})
    with pytest.raises(KeyError, match=r"unexpected keys \['extra'\]"):
        layer.load_state_dict({"weight": np.ones((2, 2)), "bias": np.ones(2), "extra": np.ones(1)})
    before = layer.weight.data.copy()
    with pytest.raises(ValueError, match=r"weight has shape \(2, 3\)"):
        layer.load_state_dict({"weight": np.ones((2, 3)), "bias": np.ones(2)})
    assert np.array_equal(layer.weight.data, before)
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="running_var"):
        bn.load_state_dict({**bn.state_dict(), "running_var": np.ones(4)})


def test_moving_to_cuda_without_cupy():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(ValueError, match="CuPy"):
            nn.Linear(2, 2).cuda()
        with pytest.raises(ValueError, match="device"):
            nn.Linear(2, 2).to(device="tpu")
        with pytest.raises(ValueError, match="a float dtype or a device"):
            nn.Linear(2, 2).to("gpu")
    else:
        pytest.skip("CuPy is installed: moving to the GPU is tested in tests/gpu")
