"""convlab.nn on CuPy arrays: the same network on the GPU gives the CPU's loss, gradients and
updates, with every array staying on the device. Skipped, with the reason, without a GPU."""
import numpy as np
import pytest
from gpu_env import require_device

cupy = require_device()

import convlab.nn as nn  # noqa: E402
import convlab.nn.functional as F  # noqa: E402
from convlab import optim  # noqa: E402


def _net():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Linear(8, 10))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cnn_step_matches_cpu(dtype):
    nn.manual_seed(0)
    cpu = _net().to(dtype)
    gpu = _net().to(dtype).cuda()
    gpu.load_state_dict(cpu.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 1, 8, 8)).astype(dtype)
    y = rng.integers(0, 10, 6)
    opt_c = optim.SGD(cpu.parameters(), lr=0.1, momentum=0.9)
    opt_g = optim.SGD(gpu.parameters(), lr=0.1, momentum=0.9)
    tol = 1e-9 if dtype == np.float64 else 2e-4
    for _ in range(3):
        lc = F.cross_entropy(cpu(nn.Tensor(x)), y)
        lg = F.cross_entropy(gpu(nn.Tensor(cupy.asarray(x))), cupy.asarray(y))
        assert isinstance(lg.data, cupy.ndarray)
        for opt, loss in ((opt_c, lc), (opt_g, lg)):
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert abs(float(lc.item()) - float(lg.item())) <= tol * max(1.0, abs(float(lc.item())))
    for (name, pc), (_, pg) in zip(cpu.named_parameters(), gpu.named_parameters()):
        assert isinstance(pg.data, cupy.ndarray) and isinstance(pg.grad, cupy.ndarray), name
        np.testing.assert_allclose(cupy.asnumpy(pg.data), pc.data, rtol=0, atol=tol * 10, err_msg=name)


def test_gru_and_lstm_on_gpu():
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((4, 3, 5))
    for cell in (nn.GRUCell, nn.LSTMCell):
        nn.manual_seed(1)
        c_cpu = cell(5, 7).double()
        c_gpu = cell(5, 7).double().cuda()
        c_gpu.load_state_dict(c_cpu.state_dict())
        hc = hg = None
        for x in xs:
            hc = c_cpu(nn.Tensor(x), hc)
            hg = c_gpu(nn.Tensor(cupy.asarray(x)), hg)
        out_c = hc if cell is nn.GRUCell else hc[0]
        out_g = hg if cell is nn.GRUCell else hg[0]
        out_c.sum().backward()
        out_g.sum().backward()
        np.testing.assert_allclose(cupy.asnumpy(out_g.data), out_c.data, atol=1e-12)
        np.testing.assert_allclose(cupy.asnumpy(c_gpu.weight_hh.grad), c_cpu.weight_hh.grad, atol=1e-12)


def test_mixing_numpy_and_cupy_tensors_is_a_type_error():
    a = nn.Tensor(np.ones(3), requires_grad=True)
    b = nn.Tensor(cupy.ones(3), requires_grad=True)
    with pytest.raises(TypeError, match="mix NumPy and CuPy"):
        a + b
