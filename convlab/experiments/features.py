"""Section 9.9: convolutional features learned without supervision (k-means on whitened
patches, Coates, Lee & Ng 2011) or not learned at all (random filters), each with a linear
classifier on top, against the same classifier on raw pixels and a conv net trained end to
end, on Fashion-MNIST with the same training images and epochs; and k-means filters learned
on natural-image patches."""
from __future__ import annotations

import time

import numpy as np

from .. import data, nn, optim
from ..models import features as M
from ..models import gabor as G
from ..plotting import pyplot, save, show, tile
from ..training import evaluate, train_epoch
from .fashion_cnn import load, model

SUMMARY = "random vs k-means (whitened patches, triangle code, quadrant pooling) vs raw pixels vs CNN; natural-image filters"


def natural_images():
    """Grey-level natural images in [0, 1]: scikit-image's bundled photographs when it is
    installed, else scikit-learn's two sample images. Returns ``(list of (H, W) arrays, source)``."""
    try:
        from skimage import color, data as skdata

        names = ("astronaut", "camera", "coffee", "chelsea", "rocket", "grass", "gravel", "brick")
        images = []
        for name in names:
            image = np.asarray(getattr(skdata, name)(), dtype=np.float64)
            image = color.rgb2gray(image / 255) if image.ndim == 3 else image / 255
            images.append(image)
        return images, "scikit-image data"
    except ImportError:
        from sklearn.datasets import load_sample_images

        return [im.astype(np.float64).mean(axis=2) / 255 for im in load_sample_images().images], \
            "scikit-learn load_sample_images"


def natural_patches(count, size, rng):
    images, source = natural_images()
    per = -(-count // len(images))
    patches = np.concatenate([M.random_patches(im[None], size, per, rng) for im in images])[:count]
    return patches, source


def run(quick, out, seed):
    rng = np.random.default_rng(seed)
    plt = pyplot()
    name, x, y, xt, yt = load(quick)
    if quick:
        settings = dict(train_size=1000, test_size=500, k=32, patch=6, patches=5000, kmeans_iterations=10,
                        epochs=4, natural_k=16, natural_patches=5000)
    else:
        settings = dict(train_size=20000, test_size=10000, k=256, patch=6, patches=50000, kmeans_iterations=20,
                        epochs=4, natural_k=64, natural_patches=50000)
    settings["patch"] = min(settings["patch"], x.shape[-1] - 2)
    x, y = x[:settings["train_size"]], y[:settings["train_size"]]
    xt, yt = xt[:settings["test_size"]], yt[:settings["test_size"]]
    settings.update(dataset=name, train_size=len(y), test_size=len(yt), classifier_lr=3e-3, cnn_lr=0.05,
                    eps_norm=M.EPS_NORM, eps_zca=M.EPS_ZCA, seed=seed)
    size, k, epochs = settings["patch"], settings["k"], settings["epochs"]
    rows = {}

    t0 = time.perf_counter()
    centroids, zca, history = M.learn_filters(x, size, k, settings["patches"], settings["kmeans_iterations"], rng)
    kmeans_seconds = time.perf_counter() - t0
    scale = float(np.linalg.norm(centroids, axis=1).mean())
    filters = {"k-means filters": centroids, "random filters": M.random_filters(k, zca, scale, rng)}
    for label, c in filters.items():
        t0 = time.perf_counter()
        encoder = M.PatchEncoder(c, zca, size)
        f, ft = encoder(x), encoder(xt)
        encode_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        acc, train_acc = M.linear_classifier(f, y, ft, yt, epochs=epochs, lr=settings["classifier_lr"], seed=seed)
        rows[label] = {"test_accuracy": acc, "train_accuracy": train_acc, "features": f.shape[1],
                       "unsupervised_seconds": (kmeans_seconds if label.startswith("k") else 0.0) + encode_seconds,
                       "classifier_seconds": time.perf_counter() - t0}
    t0 = time.perf_counter()
    acc, train_acc = M.linear_classifier(x.reshape(len(x), -1), y, xt.reshape(len(xt), -1), yt, epochs=epochs,
                                         lr=settings["classifier_lr"], seed=seed)
    rows["raw pixels"] = {"test_accuracy": acc, "train_accuracy": train_acc, "features": int(np.prod(x.shape[1:])),
                          "unsupervised_seconds": 0.0, "classifier_seconds": time.perf_counter() - t0}
    nn.manual_seed(seed)
    net = model(channels=x.shape[1])
    opt = optim.SGD(net.parameters(), lr=settings["cnn_lr"], momentum=0.9, weight_decay=5e-4)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        _, train_acc = train_epoch(net, opt, data.batches(x, y, batch_size=64, seed=seed * 1000 + epoch),
                                   desc=f"CNN epoch {epoch + 1}/{epochs}", total=-(-len(y) // 64))
        sched.step()
    rows["CNN end to end"] = {"test_accuracy": evaluate(net, xt, yt)[1], "train_accuracy": train_acc,
                              "features": None, "unsupervised_seconds": 0.0,
                              "classifier_seconds": time.perf_counter() - t0}

    fig, ax = plt.subplots(figsize=(6, 3))
    labels = list(rows)
    accs = [rows[k]["test_accuracy"] for k in labels]
    ax.barh(labels, accs, color=["C0", "C1", "C2", "C3"])
    for i, a in enumerate(accs):
        ax.text(a, i, f" {a:.3f}", va="center")
    ax.set_xlim(min(accs) - 0.05, 1.0)
    ax.set_xlabel(f"test accuracy ({name}, {len(y)} training images, {epochs} epochs)")
    save(fig, out / "accuracy.png")

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    shown = min(k, 64)
    for ax, (label, c) in zip(axes, filters.items()):
        show(ax, tile(c[:shown].reshape(shown, size, size), cols=8), f"{label} (first {shown} of {k}), whitened")
    save(fig, out / "fashion_filters.png")

    # k-means on natural-image patches: the centroids come out as oriented edges
    patches, source = natural_patches(settings["natural_patches"], 8, rng)
    white = M.ZCA().fit(M.normalize_patches(patches))
    natural, _, natural_history = M.kmeans(white(M.normalize_patches(patches)), settings["natural_k"],
                                           settings["kmeans_iterations"], rng)
    natural = natural.reshape(-1, 8, 8)
    fits = [G.fit(c)[1] for c in natural]
    fig, ax = plt.subplots(figsize=(5, 5.3))
    show(ax, tile(natural, cols=8), f"k-means on whitened 8x8 natural patches\nmedian Gabor-fit R2 {np.median(fits):.2f}")
    save(fig, out / "natural_filters.png")

    return {"settings": settings, "accuracy": rows, "kmeans_inertia": history, "kmeans_seconds": kmeans_seconds,
            "natural": {"source": source, "patches": len(patches), "k": settings["natural_k"],
                        "inertia": natural_history, "gabor_fit_r2": fits, "gabor_fit_r2_median": float(np.median(fits))},
            "figures": ["accuracy.png", "fashion_filters.png", "natural_filters.png"]}
