"""Section 9.9: ZCA whitening, k-means, the triangle encoding and the convolutional feature
pipeline against literal computations, and the quick experiment."""
import itertools
import json

import numpy as np
import pytest

from convlab import experiments
from convlab.models import features as M


def test_whitening_gives_identity_covariance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 6)) @ rng.normal(size=(6, 6)) + 3.0
    zca = M.ZCA(eps=0).fit(x)
    z = zca(x)
    np.testing.assert_allclose(np.cov(z, rowvar=False), np.eye(6), atol=1e-8)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(zca.matrix, zca.matrix.T, atol=1e-12)  # ZCA, not just any whitening
    # with eps > 0 the small directions are damped, not blown up
    assert np.all(np.diag(np.cov(M.ZCA(eps=1.0).fit(x)(x), rowvar=False)) < 1)
    with pytest.raises(ValueError, match="eps"):
        M.ZCA(eps=-1)


def test_kmeans_finds_separable_clusters():
    rng = np.random.default_rng(1)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], float)
    truth = rng.integers(4, size=800)
    x = centres[truth] + rng.normal(scale=0.5, size=(800, 2))
    found, labels, history = M.kmeans(x, 4, iterations=50, rng=rng)
    # every true centre has one found centroid next to it
    order = [int(np.argmin(np.linalg.norm(found - c, axis=1))) for c in centres]
    assert sorted(order) == [0, 1, 2, 3]
    np.testing.assert_allclose(found[order], centres, atol=0.15)
    # the clustering equals the truth up to the names of the clusters
    assert len({(a, b) for a, b in zip(truth, labels)}) == 4
    assert all(b <= a + 1e-9 for a, b in zip(history, history[1:]))  # Lloyd's never increases the inertia
    with pytest.raises(ValueError, match="k must be"):
        M.kmeans(x, 0)


def test_triangle_encoding_is_the_formula():
    rng = np.random.default_rng(2)
    z, c = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    f = M.triangle(z, c)
    for i, k in itertools.product(range(7), range(4)):
        d = [np.linalg.norm(z[i] - c[j]) for j in range(4)]
        assert f[i, k] == pytest.approx(max(0.0, np.mean(d) - d[k]), abs=1e-10)
    assert (f > 0).any() and (f == 0).any()  # about half the features are off


def test_normalize_patches():
    p = M.normalize_patches(np.random.default_rng(3).normal(size=(10, 9)) * 5 + 2, eps=0)
    np.testing.assert_allclose(p.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(p.var(axis=1), 1, atol=1e-12)


def test_random_patches_come_from_the_images():
    images = np.arange(2 * 5 * 6, dtype=float).reshape(2, 5, 6)
    patches = M.random_patches(images, 3, 20, rng=0)
    for p in patches.reshape(20, 3, 3):
        n, r, c = np.unravel_index(int(p[0, 0]), images.shape)
        np.testing.assert_array_equal(p, images[n, r:r + 3, c:c + 3])
    with pytest.raises(ValueError, match="size"):
        M.random_patches(images, 6, 1)


def test_encoder_matches_a_loop_over_patches():
    rng = np.random.default_rng(4)
    images = rng.random((3, 1, 9, 8)).astype(np.float32)
    size, k = 3, 5
    patches = M.normalize_patches(M.random_patches(images, size, 400, rng))
    zca = M.ZCA().fit(patches)
    centroids = rng.normal(size=(k, size * size))
    features = M.PatchEncoder(centroids, zca, size)(images, batch_size=2)
    assert features.shape == (3, 4 * k)
    oh, ow = 9 - size + 1, 8 - size + 1
    for n in range(3):
        maps = np.zeros((k, oh, ow))
        for r, c in itertools.product(range(oh), range(ow)):
            p = images[n, 0, r:r + size, c:c + size].reshape(1, -1).astype(float)
            maps[:, r, c] = M.triangle(zca(M.normalize_patches(p)), centroids)[0]
        # quadrants of a 7x6 plane: rows [0, 4) and [3, 7) (PyTorch's adaptive windows), columns [0, 3) and [3, 6)
        quads = [maps[:, :4, :3], maps[:, :4, 3:], maps[:, 3:, :3], maps[:, 3:, 3:]]
        expected = np.stack([q.sum(axis=(1, 2)) * (oh * ow / 4) / q[0].size for q in quads], axis=1).ravel()
        np.testing.assert_allclose(features[n], expected, rtol=1e-5)


def test_linear_classifier_learns_a_separable_problem():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    test_acc, train_acc = M.linear_classifier(x[:400], y[:400], x[400:], y[400:], epochs=20, lr=0.05)
    assert test_acc > 0.95 and train_acc > 0.95


def test_quick_experiment(tmp_path):
    record = experiments.run("features", quick=True, out=tmp_path, seed=0)
    assert json.loads((tmp_path / "results.json").read_text())["experiment"] == "features"
    for name in record["figures"]:
        assert (tmp_path / name).stat().st_size > 1000
    assert set(record["accuracy"]) == {"k-means filters", "random filters", "raw pixels", "CNN end to end"}
    for row in record["accuracy"].values():
        assert 0.2 < row["test_accuracy"] <= 1.0  # all well above chance (0.1)
    assert record["accuracy"]["k-means filters"]["features"] == 4 * record["settings"]["k"]
