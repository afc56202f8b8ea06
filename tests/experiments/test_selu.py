"""Self-normalising networks: SELU, alpha-dropout and LeCun init in convlab.nn, the
mean/variance map and its fixed point (against the closed-form Gaussian integrals, finite
differences and Monte-Carlo layers), depth statistics, and the experiment end to end."""
import math

import numpy as np
import pytest
from scipy.special import erfc
from scipy.stats import norm

from convlab import nn
from convlab.models import selu as S
from convlab.nn import functional as F

# ----------------------------------------------------------------------------- closed forms (the oracles)


def closed_alpha_lambda():
    """alpha and lambda from the fixed-point conditions at z ~ N(0, 1), worked by hand:
    E[selu] = 0 gives alpha, E[selu^2] = 1 then gives lambda."""
    alpha = math.sqrt(2 / math.pi) / (1 - math.sqrt(math.e) * erfc(1 / math.sqrt(2)))
    second = 0.5 + alpha ** 2 * (math.e ** 2 * erfc(math.sqrt(2)) / 2
                                 - 2 * math.sqrt(math.e) * erfc(1 / math.sqrt(2)) / 2 + 0.5)
    return alpha, second ** -0.5


def closed_map(mu, nu, omega, tau, alpha=S.ALPHA, lam=S.LAMBDA):
    """The map in closed form (normal CDF/PDF, as the paper's erf/erfc expressions):
    with z ~ N(m, v), s = sqrt(v), Phi and phi the standard normal CDF and PDF,
    E[z 1(z>0)] = m Phi(m/s) + s phi(m/s), E[z^2 1(z>0)] = (m^2+v) Phi(m/s) + m s phi(m/s),
    E[e^(kz) 1(z<=0)] = e^(km + k^2 v/2) Phi(-(m + k v)/s)."""
    m, v = mu * omega, nu * tau
    s = math.sqrt(v)
    Phi, phi = norm.cdf, norm.pdf

    def exp_neg(k):
        return math.exp(k * m + k * k * v / 2) * Phi(-(m + k * v) / s)

    e1 = lam * (m * Phi(m / s) + s * phi(m / s) + alpha * (exp_neg(1) - Phi(-m / s)))
    e2 = lam ** 2 * ((m * m + v) * Phi(m / s) + m * s * phi(m / s)
                     + alpha ** 2 * (exp_neg(2) - 2 * exp_neg(1) + Phi(-m / s)))
    return np.array([e1, e2 - e1 * e1])


POINTS = [(0.0, 1.0, 0.0, 1.0), (0.1, 1.2, 0.1, 1.05), (-0.5, 2.0, -0.3, 0.9), (1.0, 0.1, 1.0, 1.25),
          (0.3, 9.0, 0.05, 1.0)]

# ----------------------------------------------------------------------------- convlab.nn pieces


def test_constants_match_their_closed_form():
    alpha, lam = closed_alpha_lambda()
    assert S.ALPHA == pytest.approx(alpha, rel=1e-14) and S.LAMBDA == pytest.approx(lam, rel=1e-14)
    assert (alpha, lam) == pytest.approx((1.6732632423543772, 1.0507009873554804), rel=1e-14)


def test_selu_matches_formula_and_torch():
    x = np.linspace(-6, 6, 1001)
    want = np.where(x > 0, S.LAMBDA * x, S.LAMBDA * S.ALPHA * (np.exp(x) - 1))
    np.testing.assert_allclose(F.selu(nn.Tensor(x)).data, want, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(nn.SELU()(nn.Tensor(x)).data, want, rtol=1e-13, atol=1e-15)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(torch.nn.functional.selu(torch.from_numpy(x)).numpy(), want, rtol=1e-13, atol=1e-15)


def _numeric_grad(f, x, r, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += eps
        xm[i] -= eps
        g[i] = (np.sum(r * f(xp)) - np.sum(r * f(xm))) / (2 * eps)
    return g


def _autograd(f, x, r):
    t = nn.Tensor(x.copy(), requires_grad=True)
    f_t = f(t)
    (f_t * nn.Tensor(r)).sum().backward()
    return t.grad


def test_selu_gradcheck():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep clear of the kink
    r = rng.standard_normal(x.shape)
    np.testing.assert_allclose(_autograd(F.selu, x, r), _numeric_grad(lambda a: F.selu(nn.Tensor(a)).data, x, r),
                               rtol=1e-6, atol=1e-8)


def test_alpha_dropout_gradcheck():
    rng = np.random.default_rng(1)
    x, r = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))

    def f(a):  # the same mask on every call
        nn.manual_seed(7)
        return F.alpha_dropout(a if isinstance(a, nn.Tensor) else nn.Tensor(a), 0.3, training=True)

    grad = _autograd(f, x, r)
    np.testing.assert_allclose(grad, _numeric_grad(lambda a: f(a).data, x, r), rtol=1e-6, atol=1e-8)
    assert (grad == 0).any() and (grad != 0).any()  # some dropped, some kept


@pytest.mark.parametrize("p", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_mean_zero_variance_one(p):
    nn.manual_seed(3)
    x = np.random.default_rng(3).standard_normal(1_000_000)
    y = F.alpha_dropout(nn.Tensor(x), p, training=True).data
    assert abs(y.mean()) < 0.01 and abs(y.var() - 1) < 0.02
    # dropped units sit at a*alpha' + b with alpha' = -lambda*alpha and the a, b
    q, fill = 1 - p, -S.LAMBDA * S.ALPHA
    a = (q + fill ** 2 * q * (1 - q)) ** -0.5
    dropped = np.isclose(y, a * fill - a * (1 - q) * fill, rtol=0, atol=1e-12)
    assert abs(dropped.mean() - p) < 0.005
    np.testing.assert_allclose(y[~dropped], a * x[~dropped] - a * (1 - q) * fill, rtol=1e-12)


def test_alpha_dropout_is_identity_in_eval():
    x = nn.Tensor(np.random.default_rng(0).standard_normal((8, 5)))
    layer = nn.AlphaDropout(0.5)
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x.data)
    np.testing.assert_array_equal(F.alpha_dropout(x, 0.5, training=False).data, x.data)
    layer.train()
    assert not np.array_equal(layer(x).data, x.data)
    with pytest.raises(ValueError, match="p"):
        nn.AlphaDropout(1.5)


def test_lecun_normal_variance_is_one_over_fan_in():
    nn.manual_seed(0)
    w = nn.init.lecun_normal_(nn.Tensor(np.empty((128, 32, 3, 3))))
    fan_in = 32 * 9
    assert abs(w.data.mean()) < 0.002
    assert w.data.var() * fan_in == pytest.approx(1.0, abs=0.02)

# ----------------------------------------------------------------------------- the mean/variance map


@pytest.mark.parametrize("mu,nu,omega,tau", POINTS)
def test_map_matches_closed_form(mu, nu, omega, tau):
    np.testing.assert_allclose(S.mean_variance_map(mu, nu, omega, tau), closed_map(mu, nu, omega, tau),
                               rtol=1e-10, atol=1e-12)


def test_fixed_point_is_zero_one_and_attracting():
    p = S.fixed_point(0.0, 1.0, start=(0.3, 1.6))
    assert abs(p[0]) < 1e-6 and abs(p[1] - 1) < 1e-6
    j = S.jacobian(0.0, 1.0)
    assert S.spectral_norm(j) < 1
    # the paper's values (Theorem 1's proof): J = [[0, 0.088834], [0, 0.782648]], norm 0.7877
    np.testing.assert_allclose(j, [[0, 0.088834], [0, 0.782648]], atol=1e-6)
    assert S.spectral_norm(j) == pytest.approx(0.7877, abs=1e-4)


@pytest.mark.parametrize("mu,nu,omega,tau", POINTS)
def test_jacobian_matches_finite_differences_of_closed_form(mu, nu, omega, tau):
    h = 1e-6
    fd = np.column_stack([(closed_map(mu + h, nu, omega, tau) - closed_map(mu - h, nu, omega, tau)) / (2 * h),
                          (closed_map(mu, nu + h, omega, tau) - closed_map(mu, nu - h, omega, tau)) / (2 * h)])
    np.testing.assert_allclose(S.jacobian(mu, nu, omega, tau), fd, rtol=1e-6, atol=1e-8)


def test_constants_derived_from_fixed_point_conditions():
    alpha, lam = S.derive_constants()
    want = closed_alpha_lambda()
    assert abs(alpha - want[0]) < 1e-9 and abs(lam - want[1]) < 1e-9


@pytest.mark.parametrize("omega,tau", [(-0.1, 0.95), (-0.1, 1.1), (0.1, 0.95), (0.1, 1.1)])
def test_fixed_points_near_zero_one_attract_over_theorem_1_domain(omega, tau):
    p = S.fixed_point(omega, tau)
    np.testing.assert_allclose(S.mean_variance_map(*p, omega, tau), p, atol=1e-10)
    assert abs(p[0]) < 0.1 and 0.8 < p[1] < 1.5
    assert S.spectral_norm(S.jacobian(*p, omega, tau)) < 1


def test_variance_bounded_from_above_and_below():
    shrink = S.variance_change([-1, 1], [-0.1, 0.1], [3, 16], [0.8, 1.25])
    grow = S.variance_change([-1, 1], [-0.1, 0.1], [0.05, 0.16], [0.8, 1.25])
    assert (shrink < 0).all() and (grow > 0).all()


def test_monte_carlo_layers_follow_the_map():
    steps = 6
    for mu, nu in [(0.5, 2.5), (-0.3, 0.3)]:
        for omega, tau in [(0.0, 1.0), (0.2, 1.1)]:
            want = S.trajectory(mu, nu, steps, omega, tau)
            got = S.monte_carlo_trajectory(mu, nu, steps, width=256, samples=1000, omega=omega, tau=tau, seed=1)
            np.testing.assert_allclose(got, want, atol=0.05, rtol=0.04)
    assert np.abs(S.trajectory(0.5, 2.5, 40)[-1] - [0, 1]).max() < 1e-3


def test_map_rejects_bad_variance():
    with pytest.raises(ValueError, match="nu"):
        S.mean_variance_map(0.0, -1.0)
    with pytest.raises(ValueError, match="tau"):
        S.constrained_weights(4, 8, omega=2.0, tau=0.1, rng=np.random.default_rng(0))

# ----------------------------------------------------------------------------- networks and the experiment


def test_selu_keeps_mean_and_variance_through_depth_while_relu_lecun_collapses():
    selu = S.depth_statistics("SELU + LeCun", depth=32, width=512, samples=512, seed=0)
    assert abs(selu["mean"][-1]) < 0.1 and abs(selu["variance"][-1] - 1) < 0.2
    dropout = S.depth_statistics("SELU + alpha-dropout", depth=32, width=512, samples=512, seed=0)
    assert abs(dropout["mean"][-1]) < 0.1 and abs(dropout["variance"][-1] - 1) < 0.2
    relu = S.depth_statistics("ReLU + LeCun", depth=32, width=512, samples=512, seed=0)
    assert relu["variance"][-1] < 0.1
    # ReLU halves the second moment at every LeCun layer: E[relu(z)^2] = v/2
    assert relu["variance"][-1] < 2.0 ** -20


def test_networks_shapes_and_initialisation():
    nn.manual_seed(0)
    net = S.mlp(20, 3, depth=4, width=64, config="selu")
    assert net(nn.Tensor(np.zeros((5, 20), np.float32))).shape == (5, 3)
    first = net[0]
    assert first.weight.data.std() * math.sqrt(20) == pytest.approx(1.0, abs=0.15)
    assert not first.bias.data.any()
    assert sum(isinstance(m, nn.BatchNorm1d) for m in S.mlp(20, 3, 4, 64, "relu-bn")) == 4
    for kind in S.KINDS:
        cnn = S.cnn(kind, channels=1, size=8, width=4, hidden=16)
        assert cnn(nn.Tensor(np.zeros((2, 1, 8, 8), np.float32))).shape == (2, 10)
    assert any(isinstance(m, nn.AlphaDropout) for m in S.cnn("selu", size=8, width=4))
    with pytest.raises(ValueError, match="config"):
        S.mlp(20, 3, 2, 8, config="gelu")


def test_quick_experiment_end_to_end(tmp_path):
    import json

    from convlab import experiments

    record = experiments.run("selu", quick=True, out=tmp_path, seed=0)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["experiment"] == "selu" and saved["quick"]
    fp = saved["fixed_point"]
    assert np.allclose(fp["fixed_point"], [0, 1], atol=1e-6) and fp["spectral_norm"] < 1
    assert abs(fp["alpha_error"]) < 1e-9 and abs(fp["lambda_error"]) < 1e-9
    assert fp["theorem2_max_variance_change"] < 0 < fp["theorem3_min_variance_change"]
    assert fp["monte_carlo"]["max_mean_gap"] < 0.05 and fp["monte_carlo"]["max_relative_variance_gap"] < 0.1
    table = saved["depth_statistics"]["table"]
    assert set(table) == set(S.CONFIGS)
    for section in ("fully_connected", "cnn"):
        for spread in saved[section]["test_accuracy"].values():
            assert all(0 <= v <= 1 for v in spread["values"])
    assert set(saved["tabular"]["accuracy"]["iris"]) == {*S.KINDS.values(), "SVM (RBF)", "random forest"}
    for name in record["figures"]:
        assert 0 < (tmp_path / name).stat().st_size < 150_000
