"""Features without supervised training of the convolution (section 9.9): k-means on whitened
patches after Coates, Lee & Ng (2011), random filters, and a linear classifier on top.

The pipeline, for ``s x s`` patches ``p`` (one per output position, by ``convlab.im2col``)::

    p~ = (p - mean(p)) / sqrt(var(p) + eps_norm)      brightness and contrast normalisation
    z  = W (p~ - mu)                                   ZCA whitening, W = U diag(1/sqrt(l + eps)) U^T
    d_k = |z - c_k|                                    distance to each centroid (filter) c_k
    f_k = max(0, mean_j(d_j) - d_k)                    the triangle encoding
    F   = sum of f over the four quadrants of the output plane -> 4K features

and a softmax linear classifier on ``F``. With k-means centroids as ``c_k`` these are the
learned features; random ``c_k`` give random filters through the same encoder.
"""
from __future__ import annotations

import numpy as np

from .. import adaptive_avg_pool2d, im2col
from .. import nn, optim
from ..nn import functional as F

EPS_NORM = 1e-2  # contrast normalisation's variance floor for pixels in [0, 1]
EPS_ZCA = 0.1    # whitening's eigenvalue floor (normalised patches have unit variance)


def _images(images):
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"images must be (N, H, W) or (N, C, H, W), got shape {images.shape}")
    return images


def random_patches(images, size, count, rng=None):
    """``count`` patches ``(count, C*size*size)`` at random positions of random images."""
    images = _images(images)
    n, c, h, w = images.shape
    if not 1 <= size <= min(h, w):
        raise ValueError(f"size must be in [1, {min(h, w)}] for images of {h}x{w}, got {size}")
    rng = np.random.default_rng(rng)
    which, rows, cols = rng.integers(n, size=count), rng.integers(h - size + 1, size=count), \
        rng.integers(w - size + 1, size=count)
    offsets = np.arange(size)
    patches = images[which[:, None, None, None], np.arange(c)[None, :, None, None],
                     (rows[:, None] + offsets)[:, None, :, None], (cols[:, None] + offsets)[:, None, None, :]]
    return patches.reshape(count, -1).astype(np.float64)


def normalize_patches(patches, eps=EPS_NORM):
    """Each row minus its mean, divided by ``sqrt(its variance + eps)``."""
    patches = np.asarray(patches, dtype=np.float64)
    centred = patches - patches.mean(axis=1, keepdims=True)
    return centred / np.sqrt(centred.var(axis=1, keepdims=True) + eps)


class ZCA:
    """ZCA whitening: ``z = W (x - mu)`` with ``W = U diag(1 / sqrt(l + eps)) U^T`` from the
    eigendecomposition ``U diag(l) U^T`` of the covariance of the rows of ``x (n, d)``. With
    ``eps = 0`` the whitened rows have identity covariance; ``W`` is symmetric, so ``z`` stays
    as close as possible to ``x`` (the patches still look like patches)."""

    def __init__(self, eps=EPS_ZCA):
        if not eps >= 0:
            raise ValueError(f"eps must be non-negative, got {eps!r}")
        self.eps = float(eps)

    def fit(self, x):
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or len(x) < 2:
            raise ValueError(f"x must be (n, d) with n >= 2, got shape {x.shape}")
        self.mean = x.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
        self.matrix = (vectors / np.sqrt(np.maximum(values, 0) + self.eps)) @ vectors.T
        return self

    def __call__(self, x):
        return (np.asarray(x, dtype=np.float64) - self.mean) @ self.matrix


def kmeans(x, k, iterations=20, rng=None, tol=1e-6):
    """Lloyd's k-means on the rows of ``x (n, d)``: centroids start at ``k`` random rows; an
    empty cluster takes the row farthest from its centroid. Returns ``(centroids (k, d),
    labels (n,), inertia per iteration)``; stops early when the inertia improves by less than
    ``tol`` relatively."""
    x = np.asarray(x, dtype=np.float64)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(x):
        raise ValueError(f"k must be an int in [1, {len(x)}], got {k!r}")
    rng = np.random.default_rng(rng)
    centroids = x[rng.choice(len(x), size=k, replace=False)].copy()
    sq = (x ** 2).sum(axis=1)
    history = []
    for _ in range(iterations):
        d2 = np.maximum(sq[:, None] - 2 * x @ centroids.T + (centroids ** 2).sum(axis=1), 0)
        labels = d2.argmin(axis=1)
        nearest = d2[np.arange(len(x)), labels]
        history.append(float(nearest.sum()))
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centroids)
        np.add.at(sums, labels, x)
        far = np.argsort(nearest)[::-1]
        for j, empty in enumerate(np.flatnonzero(counts == 0)):
            sums[empty], counts[empty] = x[far[j]], 1
        centroids = sums / counts[:, None]
        if len(history) > 1 and history[-2] - history[-1] <= tol * history[-2]:
            break
    return centroids, labels, history


def triangle(z, centroids):
    """The triangle encoding ``f_k = max(0, mean_j |z - c_j| - |z - c_k|)``: ``(n, d) -> (n, K)``."""
    d2 = (z ** 2).sum(axis=1)[:, None] - 2 * z @ centroids.T + (centroids ** 2).sum(axis=1)
    dist = np.sqrt(np.maximum(d2, 0))
    return np.maximum(dist.mean(axis=1, keepdims=True) - dist, 0)


class PatchEncoder:
    """Convolutional features of ``size x size`` filters ``centroids (K, C*size*size)`` living
    in the whitened space of ``zca``: every patch (stride 1, no padding) normalised, whitened,
    triangle-encoded, then sum-pooled over the four quadrants. ``(N, C, H, W) -> (N, 4K)``."""

    def __init__(self, centroids, zca, size, eps_norm=EPS_NORM):
        self.centroids, self.zca, self.size, self.eps_norm = np.asarray(centroids, float), zca, size, eps_norm

    def feature_maps(self, images):
        images = _images(images).astype(np.float64)
        n, _, h, w = images.shape
        oh, ow = h - self.size + 1, w - self.size + 1
        cols = im2col(images, self.size)  # (N, C*s*s, L)
        patches = cols.transpose(0, 2, 1).reshape(n * oh * ow, -1)
        codes = triangle(self.zca(normalize_patches(patches, self.eps_norm)), self.centroids)
        return codes.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2)  # (N, K, oh, ow)

    def __call__(self, images, batch_size=250):
        images = _images(images)
        out = []
        for start in range(0, len(images), batch_size):
            maps = self.feature_maps(images[start:start + batch_size])
            # quadrant sums: adaptive average pooling to 2x2 times each quadrant's area
            area = (maps.shape[2] / 2) * (maps.shape[3] / 2)
            out.append((adaptive_avg_pool2d(np.ascontiguousarray(maps), 2) * area).reshape(len(maps), -1))
        return np.concatenate(out).astype(np.float32)


def learn_filters(images, size, k, patches=50000, iterations=20, rng=None, eps_norm=EPS_NORM, eps_zca=EPS_ZCA):
    """k-means filters: ``patches`` random patches, normalised and ZCA-whitened, clustered into
    ``k`` centroids. Returns ``(centroids (k, C*size*size), zca, inertia history)``."""
    rng = np.random.default_rng(rng)
    p = normalize_patches(random_patches(images, size, patches, rng), eps_norm)
    zca = ZCA(eps_zca).fit(p)
    centroids, _, history = kmeans(zca(p), k, iterations, rng)
    return centroids, zca, history


def random_filters(k, zca, scale, rng=None):
    """``k`` random filters ``(k, d)`` in the whitened space of ``zca``: Gaussian directions of
    norm ``scale`` (give them the k-means centroids' typical norm to compare like with like)."""
    c = np.random.default_rng(rng).standard_normal((k, len(zca.mean)))
    return scale * c / np.linalg.norm(c, axis=1, keepdims=True)


def linear_classifier(x, y, x_test, y_test, epochs=30, lr=1e-3, weight_decay=1e-4, batch_size=256, seed=0):
    """A softmax linear classifier (convlab.nn.Linear, Adam) on standardised features
    ``x (N, D)``; returns ``(test accuracy, train accuracy)``."""
    from .. import data

    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    x, x_test = ((x - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)
    nn.manual_seed(seed)
    layer = nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = optim.Adam(layer.parameters(), lr=lr, weight_decay=weight_decay)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    for epoch in range(epochs):
        for xb, yb in data.batches(x, y, batch_size=batch_size, seed=seed * 1000 + epoch):
            loss = F.cross_entropy(layer(nn.Tensor(xb)), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    with nn.no_grad():
        train_acc = float((layer(nn.Tensor(x)).data.argmax(axis=1) == y).mean())
        test_acc = float((layer(nn.Tensor(x_test)).data.argmax(axis=1) == y_test).mean())
    return test_acc, train_acc
