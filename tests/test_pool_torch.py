"""Pooling against PyTorch (CPU) as a second oracle: values, indices and gradients on random
configurations. Skipped when torch is not installed."""
import numpy as np
import pytest

import convlab

torch = pytest.importorskip("torch")
F = torch.nn.functional


def every_window_holds_an_input_cell(n, k, s, p, d, ceil_mode):
    """False for the degenerate dilated windows that fall wholly in the padding, where PyTorch
    returns an index outside the input (convlab returns -inf, index -1 and drops the gradient)."""
    geom = convlab._params.make_geometry(n, k, s, d, tuple((pp, pp) for pp in p), ceil_mode=ceil_mode)
    for a in range(len(n)):
        cells = np.arange(geom.out_size[a])[:, None] * s[a] + np.arange(k[a])[None, :] * d[a]
        if not np.all(((cells >= p[a]) & (cells < p[a] + n[a])).any(axis=1)):
            return False
    return True


def random_configs(nd, count, seed, dilation=True, smaller_than_kernel=True):
    """Valid PyTorch pooling configurations: (x shape, kernel, stride, padding, dilation, ceil_mode);
    the input may be smaller than the kernel (but not than the padded input) if ``smaller_than_kernel``."""
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        k = tuple(int(v) for v in rng.integers(1, 5, nd))
        s = tuple(int(v) for v in rng.integers(1, 4, nd))
        p = tuple(int(rng.integers(0, kk // 2 + 1)) for kk in k)
        d = tuple(int(v) for v in rng.integers(1, 3, nd)) if dilation else (1,) * nd
        span = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
        n = tuple(int(max(1, sp - (2 * pp if smaller_than_kernel else 0) + int(rng.integers(0, 6))))
                  for sp, pp in zip(span, p))
        ceil_mode = bool(rng.integers(0, 2))
        if every_window_holds_an_input_cell(n, k, s, p, d, ceil_mode):
            configs.append(((2, 3) + n, k, s, p, d, ceil_mode))
    return configs


def torch_grad(fn, x, g, **kw):
    xt = torch.tensor(x, requires_grad=True)
    y = fn(xt, **kw)
    y = y[0] if isinstance(y, tuple) else y
    y.backward(torch.tensor(g))
    return xt.grad.numpy()


MAX_T = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_T = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
LP_T = {1: F.lp_pool1d, 2: F.lp_pool2d, 3: F.lp_pool3d}
AMAX_T = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}
AAVG_T = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def ours(name, nd, suffix=""):
    return getattr(convlab, f"{name}{nd}d{suffix}")


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_max_pool(nd):
    for i, (shape, k, s, p, d, ceil_mode) in enumerate(random_configs(nd, 25, seed=nd)):
        x = np.round(np.random.default_rng(i).standard_normal(shape) * 2)  # many ties
        kw = dict(kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode)
        yt, it = MAX_T[nd](torch.tensor(x), return_indices=True, **kw)
        y, idx = ours("max_pool", nd)(x, return_indices=True, **kw)
        np.testing.assert_array_equal(y, yt.numpy(), err_msg=str(kw))
        np.testing.assert_array_equal(idx, it.numpy(), err_msg=str(kw))
        g = np.random.default_rng(100 + i).standard_normal(y.shape)
        np.testing.assert_allclose(ours("max_pool", nd, "_backward")(g, x, **kw), torch_grad(MAX_T[nd], x, g, **kw),
                                   rtol=1e-14, atol=1e-14, err_msg=str(kw))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_avg_pool(nd):
    for i, (shape, k, s, p, _, ceil_mode) in enumerate(random_configs(nd, 25, seed=10 + nd, dilation=False,
                                                                           smaller_than_kernel=nd < 3)):
        x = np.random.default_rng(i).standard_normal(shape)
        for include in (True, False):
            for div in ((None, 2) if nd > 1 else (None,)):  # torch's avg_pool1d has no divisor_override
                kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode, count_include_pad=include)
                kwd = dict(kw, divisor_override=div) if div is not None else kw
                y = ours("avg_pool", nd)(x, **kwd)
                np.testing.assert_allclose(y, AVG_T[nd](torch.tensor(x), **kwd).numpy(), rtol=1e-13, atol=1e-14,
                                           err_msg=str(kwd))
                g = np.random.default_rng(100 + i).standard_normal(y.shape)
                np.testing.assert_allclose(ours("avg_pool", nd, "_backward")(g, x, **kwd),
                                           torch_grad(AVG_T[nd], x, g, **kwd), rtol=1e-13, atol=1e-14,
                                           err_msg=str(kwd))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_lp_pool(nd):
    """Where PyTorch's lp_pool is the p-norm of the window: no padding, no partial ceil_mode
    window, and (for odd or fractional p) nonnegative inputs, since PyTorch uses x**p, not |x|**p."""
    configs = random_configs(nd, 15, seed=20 + nd, dilation=False, smaller_than_kernel=False)
    for i, (shape, k, s, _, _, _) in enumerate(configs):
        for p in (2, 3, 1.5):
            x = np.random.default_rng(i).standard_normal(shape)
            if p != 2:
                x = np.abs(x) + 0.1
            kw = dict(kernel_size=k[0] if nd == 1 else k, stride=s[0] if nd == 1 else s)  # torch 1-d wants ints
            y = ours("lp_pool", nd)(x, p, **kw)
            np.testing.assert_allclose(y, LP_T[nd](torch.tensor(x), p, **kw).numpy(), rtol=1e-12, err_msg=str(kw))
            g = np.random.default_rng(100 + i).standard_normal(y.shape)
            np.testing.assert_allclose(ours("lp_pool", nd, "_backward")(g, x, p, **kw),
                                       torch_grad(lambda a, **q: LP_T[nd](a, p, **q), x, g, **kw),
                                       rtol=1e-10, atol=1e-12, err_msg=str(kw))


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_adaptive_pools(nd):
    rng = np.random.default_rng(30 + nd)
    for i in range(15):
        n = tuple(int(v) for v in rng.integers(1, 9, nd))
        out = tuple(int(v) for v in rng.integers(1, 9, nd))
        x = np.round(np.random.default_rng(i).standard_normal((2, 3) + n) * 2)
        g = np.random.default_rng(100 + i).standard_normal((2, 3) + out)
        y, idx = ours("adaptive_max_pool", nd)(x, out, return_indices=True)
        yt, it = AMAX_T[nd](torch.tensor(x), out, return_indices=True)
        np.testing.assert_array_equal(y, yt.numpy())
        np.testing.assert_array_equal(idx, it.numpy())
        np.testing.assert_allclose(ours("adaptive_max_pool", nd, "_backward")(g, x, out),
                                   torch_grad(AMAX_T[nd], x, g, output_size=out), rtol=1e-14, atol=1e-14)
        y = ours("adaptive_avg_pool", nd)(x, out)
        np.testing.assert_allclose(y, AAVG_T[nd](torch.tensor(x), out).numpy(), rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(ours("adaptive_avg_pool", nd, "_backward")(g, x, out),
                                   torch_grad(AAVG_T[nd], x, g, output_size=out), rtol=1e-13, atol=1e-14)


def test_float32_matches_torch():
    x = np.random.default_rng(0).standard_normal((2, 4, 13, 11)).astype(np.float32)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    y, idx = convlab.max_pool2d(x, return_indices=True, **kw)
    yt, it = F.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_allclose(convlab.avg_pool2d(x, **kw), F.avg_pool2d(torch.tensor(x), **kw).numpy(), rtol=1e-6)


def test_maxout_matches_torch_max_over_channel_groups():
    x = np.round(np.random.default_rng(0).standard_normal((2, 6, 4, 5)) * 2)
    xt = torch.tensor(x, requires_grad=True)
    yt = xt.reshape(2, 3, 2, 4, 5).max(dim=2).values
    g = np.random.default_rng(1).standard_normal(yt.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_array_equal(convlab.maxout(x, 2), yt.detach().numpy())
    np.testing.assert_array_equal(convlab.maxout_backward(g, x, 2), xt.grad.numpy())
