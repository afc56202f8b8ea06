"""Gabor functions, simulated simple and complex cells, reverse correlation and Gabor fits
(section 9.10 of the book).

The Gabor function (eq. 9.16-9.18)::

    w(x, y) = alpha * exp(-beta_x * x'^2 - beta_y * y'^2) * cos(f * x' + phi)
    x' =  (x - x0) * cos(tau) + (y - y0) * sin(tau)
    y' = -(x - x0) * sin(tau) + (y - y0) * cos(tau)

On a kernel of ``h x w`` pixels, ``x`` is the column and ``y`` the row, both measured from
the kernel's centre, so ``x0 = y0 = 0`` centres the function. ``f`` is in radians per
pixel. A simple cell responds ``s(I) = sum_{x,y} w(x, y) I(x, y)`` followed by a rectifying
nonlinearity; a complex cell is the quadrature energy model
``c(I) = sqrt(s_0(I)^2 + s_1(I)^2)`` of two simple cells a quarter period apart in phase.
"""
from __future__ import annotations

import math
from dataclasses import astuple, dataclass, fields, replace

import numpy as np

from .. import conv2d

PARAMETERS = ("alpha", "beta_x", "beta_y", "f", "phi", "x0", "y0", "tau")


@dataclass(frozen=True)
class Gabor:
    """The eight parameters of eq. 9.16-9.18 (``beta_x``, ``beta_y`` > 0)."""

    alpha: float = 1.0
    beta_x: float = 0.05
    beta_y: float = 0.05
    f: float = 0.8
    phi: float = 0.0
    x0: float = 0.0
    y0: float = 0.0
    tau: float = 0.0

    def __post_init__(self):
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise TypeError(f"{field.name} must be a real number, got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{field.name} must be finite, got {value!r}")
            object.__setattr__(self, field.name, float(value))
        for name in ("beta_x", "beta_y"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} (a Gaussian scale) must be positive, got {getattr(self, name)!r}")

    def __call__(self, x, y):
        """``w(x, y)`` at arrays of coordinates (broadcast together)."""
        return gabor(x, y, *astuple(self))

    def kernel(self, size):
        """The function sampled on a ``size`` (int or ``(h, w)``) pixel grid centred on 0: ``(h, w)``."""
        x, y = grid(size)
        return self(x, y)

    def replace(self, **changes):
        return replace(self, **changes)


def gabor(x, y, alpha=1.0, beta_x=0.05, beta_y=0.05, f=0.8, phi=0.0, x0=0.0, y0=0.0, tau=0.0):
    """Eq. 9.16-9.18 at coordinates ``x``, ``y`` (arrays, broadcast together); see the module docstring.

    Raises ``ValueError`` when ``beta_x`` or ``beta_y`` is not positive.
    """
    if not beta_x > 0:
        raise ValueError(f"beta_x (a Gaussian scale) must be positive, got {beta_x!r}")
    if not beta_y > 0:
        raise ValueError(f"beta_y (a Gaussian scale) must be positive, got {beta_y!r}")
    x, y = np.asarray(x, dtype=float) - x0, np.asarray(y, dtype=float) - y0
    xr = x * math.cos(tau) + y * math.sin(tau)
    yr = -x * math.sin(tau) + y * math.cos(tau)
    return alpha * np.exp(-beta_x * xr ** 2 - beta_y * yr ** 2) * np.cos(f * xr + phi)


def grid(size):
    """Pixel coordinates ``(x, y)``, each ``(h, w)``, of a kernel of ``size`` (int or ``(h, w)``), centre 0."""
    h, w = (size, size) if isinstance(size, (int, np.integer)) else tuple(size)
    if isinstance(h, bool) or isinstance(w, bool) or not all(isinstance(v, (int, np.integer)) for v in (h, w)) \
            or h < 1 or w < 1:
        raise ValueError(f"size must be a positive int or a pair of them, got {size!r}")
    y, x = np.mgrid[0:h, 0:w].astype(float)
    return x - (w - 1) / 2, y - (h - 1) / 2


def bank(size, orientations=8, frequencies=(0.6, 1.2), phases=(0.0, math.pi / 2), sigma_periods=0.5):
    """A filter bank of Gabor kernels, ``(K, 1, h, w)`` with ``K = orientations * len(frequencies) *
    len(phases)``, and the list of their :class:`Gabor` parameters (same order).

    Orientations ``tau = pi * i / orientations``; the Gaussian is round with a standard
    deviation of ``sigma_periods`` periods of each frequency (``beta = 1 / (2 sigma^2)``),
    and ``alpha`` normalises each kernel to unit L2 norm.
    """
    if isinstance(orientations, bool) or not isinstance(orientations, (int, np.integer)) or orientations < 1:
        raise ValueError(f"orientations must be a positive int, got {orientations!r}")
    if not sigma_periods > 0:
        raise ValueError(f"sigma_periods must be positive, got {sigma_periods!r}")
    params, kernels = [], []
    for f in frequencies:
        if not f > 0:
            raise ValueError(f"frequencies must be positive, got {f!r}")
        sigma = sigma_periods * 2 * math.pi / f
        beta = 1 / (2 * sigma ** 2)
        for i in range(orientations):
            for phi in phases:
                g = Gabor(1.0, beta, beta, f, phi, 0.0, 0.0, math.pi * i / orientations)
                k = g.kernel(size)
                g = g.replace(alpha=1 / np.linalg.norm(k))
                params.append(g)
                kernels.append(g.kernel(size))
    return np.stack(kernels)[:, None], params


def responses(images, kernels):
    """Linear responses ``s = sum_{x,y} w(x, y) I(x, y)`` of every kernel to every image.

    ``images (N, h, w)`` or ``(N, 1, h, w)``, ``kernels (K, h, w)`` or ``(K, 1, h, w)`` of the same
    size -> ``(N, K)``: a valid cross-correlation (convlab.conv2d) whose output plane is 1x1.
    """
    images = np.asarray(images, dtype=float)
    kernels = np.asarray(kernels, dtype=float)
    images = images[:, None] if images.ndim == 3 else images
    kernels = kernels[:, None] if kernels.ndim == 3 else kernels
    if images.ndim != 4 or kernels.ndim != 4 or images.shape[1:] != kernels.shape[1:]:
        raise ValueError(f"images {images.shape} and kernels {kernels.shape} must be (N, [1,] h, w) and "
                         "(K, [1,] h, w) of the same size")
    return conv2d(images, kernels)[:, :, 0, 0]


class SimpleCell:
    """A simple cell: ``r = max(0, s(I) + noise * e - threshold)``, ``e ~ N(0, 1)``, with a
    :class:`Gabor` receptive field of ``size`` pixels."""

    def __init__(self, field: Gabor, size, noise=0.0, threshold=0.0):
        if not noise >= 0:
            raise ValueError(f"noise must be non-negative, got {noise!r}")
        self.field, self.size, self.noise, self.threshold = field, size, float(noise), float(threshold)
        self.kernel = field.kernel(size)

    def drive(self, images):
        return responses(images, self.kernel[None])[:, 0]

    def __call__(self, images, rng=None):
        """Responses ``(N,)`` to ``images (N, h, w)``; ``rng`` draws the noise."""
        s = self.drive(images)
        if self.noise:
            s = s + self.noise * np.random.default_rng(rng).standard_normal(s.shape)
        return np.maximum(s - self.threshold, 0.0)


class ComplexCell:
    """A complex cell, the quadrature energy model: ``c = sqrt(s_0^2 + s_1^2) + noise * e``
    (clipped at 0) with ``s_0``, ``s_1`` simple-cell drives of ``field`` at phases ``phi`` and
    ``phi + pi/2``."""

    def __init__(self, field: Gabor, size, noise=0.0):
        if not noise >= 0:
            raise ValueError(f"noise must be non-negative, got {noise!r}")
        self.field, self.size, self.noise = field, size, float(noise)
        self.kernels = np.stack([field.kernel(size), field.replace(phi=field.phi + math.pi / 2).kernel(size)])

    def __call__(self, images, rng=None):
        s = responses(images, self.kernels)
        c = np.sqrt((s ** 2).sum(axis=1))
        if self.noise:
            c = np.maximum(c + self.noise * np.random.default_rng(rng).standard_normal(c.shape), 0.0)
        return c


def white_noise(n, size, rng=None):
    """``n`` white-noise probe images ``(n, h, w)`` of independent N(0, 1) pixels."""
    x, _ = grid(size)
    return np.random.default_rng(rng).standard_normal((n,) + x.shape)


def spike_triggered_average(images, rates):
    """The response-weighted mean of the (mean-removed) probes, ``sum_i r_i (I_i - mean I) / sum_i r_i``:
    ``(h, w)``. For Gaussian white noise it is proportional to the linear field of any cell
    that is a nonlinearity of one linear filter."""
    images, rates = np.asarray(images, dtype=float), np.asarray(rates, dtype=float)
    if images.ndim != 3 or rates.shape != images.shape[:1]:
        raise ValueError(f"images must be (N, h, w) and rates (N,), got {images.shape} and {rates.shape}")
    total = rates.sum()
    if total == 0:
        raise ValueError("rates are all zero: the cell never responded")
    centred = images - images.mean(axis=0)
    return np.tensordot(rates, centred, axes=1) / total


def least_squares_field(images, rates, ridge=1e-3):
    """The linear field that best predicts ``rates`` from ``images`` (ridge regression with an
    intercept): ``argmin_w sum_i (r_i - b - <w, I_i>)^2 + ridge * N * |w|^2``, ``(h, w)``.
    Unlike the spike-triggered average it does not need white probes."""
    images, rates = np.asarray(images, dtype=float), np.asarray(rates, dtype=float)
    if images.ndim != 3 or rates.shape != images.shape[:1]:
        raise ValueError(f"images must be (N, h, w) and rates (N,), got {images.shape} and {rates.shape}")
    n = len(rates)
    x = images.reshape(n, -1)
    x = x - x.mean(axis=0)
    gram = x.T @ x + ridge * n * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ (rates - rates.mean())).reshape(images.shape[1:])


def spike_triggered_covariance(images, rates, components=2):
    """The ``components`` leading eigenvectors ``(components, h, w)`` of the response-weighted
    probe covariance minus the probes' covariance, with their eigenvalues. For a complex
    cell, whose average is zero, they span its quadrature pair of fields."""
    images, rates = np.asarray(images, dtype=float), np.asarray(rates, dtype=float)
    n = len(rates)
    x = images.reshape(n, -1)
    x = x - x.mean(axis=0)
    weighted = (x * rates[:, None]).T @ x / rates.sum()
    values, vectors = np.linalg.eigh(weighted - x.T @ x / n)
    order = np.argsort(values)[::-1][:components]
    return vectors[:, order].T.reshape((components,) + images.shape[1:]), values[order]


def correlation(a, b):
    """Pearson correlation of two fields over their pixels."""
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    a, b = a - a.mean(), b - b.mean()
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom else 0.0


def subspace_overlap(fields_a, fields_b):
    """How much of the span of ``fields_b`` lies in the span of ``fields_a``: the mean squared
    cosine of the principal angles, 1 for equal spans and 0 for orthogonal ones."""
    qa, _ = np.linalg.qr(np.reshape(fields_a, (len(fields_a), -1)).T)
    qb, _ = np.linalg.qr(np.reshape(fields_b, (len(fields_b), -1)).T)
    cosines = np.linalg.svd(qa.T @ qb, compute_uv=False)
    return float(np.mean(cosines ** 2))


def _initial_guesses(field):
    """Starting points for :func:`fit`: the frequency and orientation of the spectrum's peak,
    the centre and spread of the field's energy, and four phases."""
    h, w = field.shape
    x, y = grid(field.shape)
    spectrum = np.abs(np.fft.fft2(field - field.mean()))
    spectrum[0, 0] = 0
    ky, kx = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    fy, fx = np.fft.fftfreq(h)[ky], np.fft.fftfreq(w)[kx]
    f = 2 * math.pi * math.hypot(fx, fy)
    tau = math.atan2(fy, fx)
    energy = field ** 2
    total = energy.sum() or 1.0
    x0, y0 = float((energy * x).sum() / total), float((energy * y).sum() / total)
    spread = float((energy * ((x - x0) ** 2 + (y - y0) ** 2)).sum() / total) / 2
    beta = 1 / (2 * max(spread, 0.5))
    alpha = float(np.abs(field).max())
    return [Gabor(alpha, beta, beta, max(f, 1e-3), phi, x0, y0, tau)
            for phi in (0.0, math.pi / 2, math.pi, -math.pi / 2)]


def fit(field, starts=None):
    """Least-squares fit of eq. 9.16-9.18 to ``field (h, w)`` with ``scipy.optimize.least_squares``
    from several starting points; returns ``(Gabor, r2)`` with ``r2`` the fraction of the
    field's variance (about zero) that the fit explains."""
    from scipy.optimize import least_squares

    field = np.asarray(field, dtype=float)
    if field.ndim != 2:
        raise ValueError(f"field must be (h, w), got shape {field.shape}")
    x, y = grid(field.shape)
    half = max(field.shape) / 2
    # betas on a log scale keep the scales positive; the centre stays within the kernel
    lower = [-np.inf, math.log(1e-4), math.log(1e-4), 0.0, -np.inf, -half, -half, -np.inf]
    upper = [np.inf, math.log(10.0), math.log(10.0), math.pi, np.inf, half, half, np.inf]

    def unpack(p):
        return (p[0], math.exp(p[1]), math.exp(p[2]), p[3], p[4], p[5], p[6], p[7])

    def residual(p):
        return (gabor(x, y, *unpack(p)) - field).ravel()

    best, best_cost = None, np.inf
    for g in (starts or _initial_guesses(field)):
        p0 = np.array([g.alpha, math.log(g.beta_x), math.log(g.beta_y), g.f, g.phi, g.x0, g.y0, g.tau])
        p0 = np.clip(p0, np.array(lower) + 1e-9, np.array(upper) - 1e-9)
        result = least_squares(residual, p0, bounds=(lower, upper), max_nfev=400)
        if result.cost < best_cost:
            best, best_cost = result.x, result.cost
    total = float((field ** 2).sum())
    r2 = 1 - 2 * best_cost / total if total else 0.0
    return Gabor(*unpack(best)), float(r2)
