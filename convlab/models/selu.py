"""Self-normalising networks (Klambauer et al. 2017): the mean/variance map of a SELU layer,
its fixed point, and the networks the paper compares.

A unit ``y = selu(z)``, ``z = sum_i w_i x_i``, reads inputs ``x_i`` of mean ``mu`` and
variance ``nu`` through weights with sums ``omega = sum_i w_i`` and ``tau = sum_i w_i^2``.
For many inputs ``z`` is normal, ``z ~ N(mu*omega, nu*tau)``, and the next layer's mean and
variance are Gaussian integrals (the paper's Eq. 4 and 5)::

    mu~ = E[selu(z)]        nu~ = E[selu(z)^2] - mu~^2

:func:`mean_variance_map` computes them by numerical integration (``scipy.integrate.quad``,
split at the kink ``z = 0``). With ``omega = 0, tau = 1`` the map has the fixed point
``(0, 1)`` exactly when ``alpha`` and ``lambda`` are the SELU constants
(:func:`derive_constants` solves for them), and its Jacobian there has spectral norm below 1
(Theorem 1: the fixed point attracts). The Jacobian comes from the same integrals
differentiated under the integral sign (``dE[h]/dm = E[h(z)(z-m)]/v``,
``dE[h]/dv = E[h(z)((z-m)^2 - v)]/(2 v^2)`` for ``z ~ N(m, v)``).
:func:`monte_carlo_trajectory` checks the map against layers of finite width.
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn
from ..nn._functions import SELU_ALPHA as ALPHA
from ..nn._functions import SELU_SCALE as LAMBDA

_QUAD = dict(epsabs=1e-13, epsrel=1e-12, limit=200)


def selu(z, alpha=ALPHA, lam=LAMBDA):
    """``lam * z`` for ``z > 0``, ``lam * alpha * (exp(z) - 1)`` otherwise, on NumPy arrays or floats."""
    z = np.asarray(z, dtype=float)
    return lam * np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))


def _check_variance(nu, tau):
    if not (np.isfinite(nu) and np.isfinite(tau)) or nu * tau <= 0:
        raise ValueError(f"nu * tau must be a positive variance, got nu={nu!r}, tau={tau!r}")


def _expectations(m, v, alpha, lam, derivatives=False):
    """``E[f]`` and ``E[f^2]`` for ``f = selu(z)``, ``z ~ N(m, v)`` (and, with ``derivatives``,
    their partial derivatives in ``m`` and ``v``), as ``quad`` integrals over ``t = (z-m)/sqrt(v)``."""
    from scipy.integrate import quad

    s = math.sqrt(v)
    kink = -m / s
    norm = 1.0 / math.sqrt(2.0 * math.pi)

    def negative(t):  # z <= 0
        return lam * alpha * math.expm1(m + s * t)

    def positive(t):
        return lam * (m + s * t)

    weights = [lambda t: 1.0]
    if derivatives:
        weights += [lambda t: t / s, lambda t: (t * t - 1.0) / (2.0 * v)]

    def integral(power, weight):
        total = 0.0
        for branch, lo, hi in ((negative, -np.inf, kink), (positive, kink, np.inf)):
            total += quad(lambda t: branch(t) ** power * weight(t) * norm * math.exp(-0.5 * t * t), lo, hi,
                          **_QUAD)[0]
        return total

    return [[integral(power, w) for w in weights] for power in (1, 2)]


def mean_variance_map(mu, nu, omega=0.0, tau=1.0, alpha=ALPHA, lam=LAMBDA):
    """``g(mu, nu) = (mu~, nu~)``: mean and variance of a SELU unit's output for inputs of mean
    ``mu``, variance ``nu`` and weight sums ``omega``, ``tau`` (Eq. 4 and 5, by quadrature)."""
    _check_variance(nu, tau)
    (e1,), (e2,) = _expectations(mu * omega, nu * tau, alpha, lam)
    return e1, e2 - e1 * e1


def jacobian(mu, nu, omega=0.0, tau=1.0, alpha=ALPHA, lam=LAMBDA):
    """The 2x2 Jacobian ``d(mu~, nu~) / d(mu, nu)`` of :func:`mean_variance_map` (rows mu~, nu~)."""
    _check_variance(nu, tau)
    (e1, e1_m, e1_v), (e2, e2_m, e2_v) = _expectations(mu * omega, nu * tau, alpha, lam, derivatives=True)
    # m = mu*omega, v = nu*tau; nu~ = E2 - E1^2
    return np.array([[omega * e1_m, tau * e1_v],
                     [omega * (e2_m - 2 * e1 * e1_m), tau * (e2_v - 2 * e1 * e1_v)]])


def spectral_norm(matrix):
    """The largest singular value of ``matrix``; below 1 makes the map a contraction near its fixed point."""
    return float(np.linalg.norm(np.asarray(matrix, dtype=float), 2))


def fixed_point(omega=0.0, tau=1.0, start=(0.0, 1.0), alpha=ALPHA, lam=LAMBDA):
    """``(mu*, nu*)`` with ``g(mu*, nu*) = (mu*, nu*)``, by Newton's method (``scipy.optimize.root``)."""
    from scipy.optimize import root

    def residual(p):
        return np.subtract(mean_variance_map(p[0], p[1], omega, tau, alpha, lam), p)

    def residual_jacobian(p):
        return jacobian(p[0], p[1], omega, tau, alpha, lam) - np.eye(2)

    sol = root(residual, np.asarray(start, dtype=float), jac=residual_jacobian, tol=1e-13)
    if np.max(np.abs(residual(sol.x))) > 1e-10:  # judged by the residual: quad's noise stops hybr short of tol
        raise RuntimeError(f"no fixed point found from {start} for omega={omega}, tau={tau}: {sol.message}")
    return sol.x


def derive_constants(mu=0.0, nu=1.0, omega=0.0, tau=1.0, start=(1.5, 1.0)):
    """``(alpha, lambda)`` that make ``(mu, nu)`` the fixed point of the map: the two equations
    ``g(mu, nu; alpha, lambda) = (mu, nu)`` solved numerically. With the defaults they are the
    SELU constants ``alpha_01 = 1.67326...``, ``lambda_01 = 1.05070...``."""
    from scipy.optimize import root

    def residual(p):
        return np.subtract(mean_variance_map(mu, nu, omega, tau, alpha=p[0], lam=p[1]), (mu, nu))

    sol = root(residual, np.asarray(start, dtype=float), tol=1e-13)
    if np.max(np.abs(residual(sol.x))) > 1e-12:  # as in fixed_point
        raise RuntimeError(f"no (alpha, lambda) found for the fixed point ({mu}, {nu}): {sol.message}")
    return float(sol.x[0]), float(sol.x[1])


def trajectory(mu, nu, steps, omega=0.0, tau=1.0, alpha=ALPHA, lam=LAMBDA):
    """``(steps + 1, 2)`` array of ``(mu, nu)`` under repeated :func:`mean_variance_map`."""
    points = [(float(mu), float(nu))]
    for _ in range(steps):
        points.append(mean_variance_map(*points[-1], omega, tau, alpha, lam))
    return np.array(points)


def constrained_weights(n_out, n_in, omega, tau, rng):
    """``(n_out, n_in)`` Gaussian weights whose every row sums to ``omega`` with squares summing to
    ``tau``: the weights the map assumes, for Monte-Carlo layers."""
    if tau <= omega * omega / n_in:
        raise ValueError(f"tau must exceed omega^2/n_in = {omega * omega / n_in}, got {tau!r}")
    w = rng.standard_normal((n_out, n_in))
    w -= w.mean(axis=1, keepdims=True)
    w *= np.sqrt((tau - omega * omega / n_in) / (w * w).sum(axis=1, keepdims=True))
    return w + omega / n_in


def monte_carlo_trajectory(mu, nu, steps, width=512, samples=2000, omega=0.0, tau=1.0, seed=0):
    """``(steps + 1, 2)`` array of the empirical mean and variance (over samples and units) through
    ``steps`` SELU layers of ``width`` units with :func:`constrained_weights`, from Gaussian inputs
    of mean ``mu`` and variance ``nu``."""
    rng = np.random.default_rng(seed)
    x = mu + math.sqrt(nu) * rng.standard_normal((samples, width))
    points = [(x.mean(), x.var())]
    for _ in range(steps):
        x = selu(x @ constrained_weights(width, width, omega, tau, rng).T)
        points.append((x.mean(), x.var()))
    return np.array(points)


def variance_change(mus, omegas, nus, taus, alpha=ALPHA, lam=LAMBDA):
    """``nu~ - nu`` on the grid ``mus x omegas x nus x taus`` (an array of that shape):
    negative where the map shrinks the variance (Theorem 2), positive where it grows it (Theorem 3)."""
    out = np.empty((len(mus), len(omegas), len(nus), len(taus)))
    for idx in np.ndindex(out.shape):
        mu, omega, nu, tau = mus[idx[0]], omegas[idx[1]], nus[idx[2]], taus[idx[3]]
        out[idx] = mean_variance_map(mu, nu, omega, tau, alpha, lam)[1] - nu
    return out


# ----------------------------------------------------------------------------- networks

# name -> (activation, initialiser, batch norm, alpha-dropout rate): the depth-statistics configurations
CONFIGS = {
    "SELU + LeCun": ("selu", "lecun", False, 0.0),
    "SELU + alpha-dropout": ("selu", "lecun", False, 0.1),
    "ReLU + LeCun": ("relu", "lecun", False, 0.0),
    "ReLU + He": ("relu", "he", False, 0.0),
    "tanh + LeCun": ("tanh", "lecun", False, 0.0),
    "ReLU + batch norm": ("relu", "he", True, 0.0),
}
# name -> CONFIGS entry of the nets the training comparisons use
KINDS = {"selu": "SELU + LeCun", "relu-bn": "ReLU + batch norm", "relu": "ReLU + He"}
_ACTIVATIONS = {"selu": nn.SELU, "relu": nn.ReLU, "tanh": nn.Tanh}


def _init(layer, init):
    """LeCun normal ``N(0, 1/fan_in)`` or He normal ``N(0, 2/fan_in)`` weights, zero biases."""
    if init == "lecun":
        nn.init.lecun_normal_(layer.weight)
    elif init == "he":
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    else:
        raise ValueError(f"init must be 'lecun' or 'he', got {init!r}")
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)
    return layer


def _config(config):
    if config in KINDS:
        config = KINDS[config]
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS) + sorted(KINDS)}, got {config!r}")
    return CONFIGS[config]


def hidden_block(in_features, width, config, dropout=None):
    """Linear (initialised per ``config``) [-BatchNorm1d] -activation [-AlphaDropout], as a list of modules.
    ``dropout`` overrides the configuration's alpha-dropout rate."""
    activation, init, batch_norm, rate = _config(config)
    rate = rate if dropout is None else dropout
    layers = [_init(nn.Linear(in_features, width, bias=not batch_norm), init)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(width))
    layers.append(_ACTIVATIONS[activation]())
    if rate:
        layers.append(nn.AlphaDropout(rate) if activation == "selu" else nn.Dropout(rate))
    return layers


def mlp(in_features, classes, depth, width, config="selu", dropout=None):
    """``depth`` hidden blocks of ``width`` units (:func:`hidden_block`) and a LeCun-initialised
    linear read-out: ``(N, in_features)`` -> ``(N, classes)`` logits."""
    layers = []
    for i in range(depth):
        layers += hidden_block(in_features if i == 0 else width, width, config, dropout)
    return nn.Sequential(*layers, _init(nn.Linear(width, classes), "lecun"))


def cnn(config="selu", channels=1, size=28, classes=10, width=16, hidden=128, dropout=0.05):
    """conv3x3-act-conv3x3-act-maxpool2-dropout-dense-act-dropout-dense: ``(N, channels, size, size)``
    -> ``(N, classes)``. ``"selu"``: SELU, LeCun init, alpha-dropout; ``"relu"``: ReLU, He init,
    dropout; ``"relu-bn"``: ReLU after batch norm, He init, dropout."""
    activation, init, batch_norm, _ = _config(config)
    act = _ACTIVATIONS[activation]
    drop = nn.AlphaDropout if activation == "selu" else nn.Dropout

    def conv(c_in, c_out):
        block = [_init(nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm), init)]
        return block + ([nn.BatchNorm2d(c_out)] if batch_norm else []) + [act()]

    return nn.Sequential(*conv(channels, width), *conv(width, width), nn.MaxPool2d(2), drop(dropout), nn.Flatten(),
                         *hidden_block(width * (size // 2) ** 2, hidden, config, dropout=0.0), drop(dropout),
                         _init(nn.Linear(hidden, classes), "lecun"))


def depth_statistics(config, depth=64, width=512, samples=1024, seed=0):
    """Mean and variance (over samples and units) of the activations after each of ``depth``
    hidden blocks of ``config`` (a :data:`CONFIGS` name), in training mode (batch norm uses the
    batch, dropout drops), from standard normal inputs ``(samples, width)``.
    Returns ``{"mean": (depth,), "variance": (depth,)}``."""
    nn.manual_seed(seed)
    x = nn.Tensor(np.random.default_rng(seed).standard_normal((samples, width)).astype(np.float32))
    means, variances = [], []
    with nn.no_grad():
        for _ in range(depth):
            for layer in hidden_block(width, width, config):
                x = layer(x)
            means.append(float(x.data.mean(dtype=np.float64)))
            variances.append(float(x.data.var(dtype=np.float64)))
    return {"mean": np.array(means), "variance": np.array(variances)}
