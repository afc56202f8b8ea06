"""Data sets that are on the machine already, and minibatches. Nothing downloads.

- :func:`digits`: scikit-learn's bundled 8x8 handwritten digits (1797 images).
- :func:`fashion_mnist`: the IDX files of Debian's ``dataset-fashion-mnist`` package
  (``apt-get install dataset-fashion-mnist``), or of a folder you name.
- :func:`cifar10`: the Python pickle batches of CIFAR-10 in a folder you downloaded.
- :func:`batches`: shuffled minibatches of several arrays, reproducible from a seed.
- :func:`delayed_recall`: sequences of the delayed-recall memory task built from any image set.

Images come as float32 ``(N, C, H, W)`` in ``[0, 1]`` and labels as int64 ``(N,)``.
"""
from __future__ import annotations

import gzip
import os
import pickle
from typing import NamedTuple
from pathlib import Path

import numpy as np

FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on this machine; the message says how to get it."""


def _split(split):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def digits(split=None, test_fraction=0.25, seed=0):
    """scikit-learn's 8x8 digits: ``(images (N, 1, 8, 8) float32 in [0, 1], labels (N,) int64)``.

    ``split=None`` gives all 1797; ``"train"``/``"test"`` a stratified-free shuffled split
    of ``test_fraction``, the same for the same ``seed``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DatasetNotFoundError("digits() needs scikit-learn: pip install 'convlab[data]'") from exc
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    y = d.target.astype(np.int64)
    if split is None:
        return x, y
    _split(split)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    pick = order[:n_test] if split == "test" else order[n_test:]
    return x[pick], y[pick]


def _open(path):
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def read_idx(path):
    """An IDX file (the MNIST format, gzipped or not) as a NumPy array."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX element type {data[2]:#x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=dtypes[data[2]], offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape}, the file holds {body.size} values")
    return body.reshape(shape)


def _find(name, root, defaults, env="CONVLAB_DATA"):
    """The first folder holding ``name``: the defaults (a system package), then ``root``, then
    ``$CONVLAB_DATA`` (itself or its subfolder ``name``)."""
    candidates = list(defaults)
    if root is not None:
        candidates.append(root)
    if os.environ.get(env):
        candidates += [os.environ[env], os.path.join(os.environ[env], name)]
    return [Path(c) for c in candidates]


def fashion_mnist(split="train", root=None):
    """Fashion-MNIST (Xiao et al. 2017): ``(images (N, 1, 28, 28) float32 in [0, 1], labels (N,) int64)``,
    60000 train or 10000 test images of 10 clothing classes (:data:`FASHION_MNIST_CLASSES`).

    Looks in Debian's install folder ``/usr/share/datasets/fashion-mnist``, then ``root``,
    then ``$CONVLAB_DATA`` (or its ``fashion-mnist`` subfolder), for ``train-images-idx3-ubyte``
    and friends, gzipped or not.
    """
    prefix = "train" if _split(split) == "train" else "t10k"
    for folder in _find("fashion-mnist", root, FASHION_MNIST_DIRS):
        for suffix in (".gz", ""):
            images = folder / f"{prefix}-images-idx3-ubyte{suffix}"
            labels = folder / f"{prefix}-labels-idx1-ubyte{suffix}"
            if images.exists() and labels.exists():
                x = read_idx(images).astype(np.float32)[:, None] / 255.0
                y = read_idx(labels).astype(np.int64)
                if len(x) != len(y):
                    raise ValueError(f"{folder}: {len(x)} images but {len(y)} labels")
                return x, y
    raise DatasetNotFoundError(
        "Fashion-MNIST was not found. Install Debian's package (apt-get install dataset-fashion-mnist), "
        "or put train-/t10k-images-idx3-ubyte(.gz) and -labels-idx1-ubyte(.gz) in a folder and pass "
        "root=FOLDER or set CONVLAB_DATA=FOLDER")


def fashion_mnist_or_digits(n_train=None, n_test=None):
    """``(name, x, y, x_test, y_test)``: Fashion-MNIST when it is installed, else scikit-learn's
    digits (so that an experiment runs anywhere), each cut to its first ``n_train``/``n_test``."""
    try:
        (x, y), (xt, yt) = fashion_mnist("train"), fashion_mnist("test")
        name = "fashion-mnist"
    except DatasetNotFoundError:
        (x, y), (xt, yt) = digits("train"), digits("test")
        name = "digits"
    return name, x[:n_train], y[:n_train], xt[:n_test], yt[:n_test]


def cifar10(root, split="train"):
    """CIFAR-10 from the Python pickle batches (``data_batch_1`` .. ``data_batch_5``, ``test_batch``)
    in ``root`` (or its ``cifar-10-batches-py`` subfolder), downloaded by the user:
    ``(images (N, 3, 32, 32) float32 in [0, 1], labels (N,) int64)``."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if _split(split) == "train" else ["test_batch"]
    for folder in (Path(root), Path(root) / "cifar-10-batches-py"):
        if all((folder / n).exists() for n in names):
            xs, ys = [], []
            for n in names:
                with open(folder / n, "rb") as f:
                    batch = pickle.load(f, encoding="bytes")
                data, labels = batch.get(b"data", batch.get("data")), batch.get(b"labels", batch.get("labels"))
                if data is None or labels is None:
                    raise ValueError(f"{folder / n} is not a CIFAR-10 batch (no data/labels)")
                xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
                ys.append(np.asarray(labels, dtype=np.int64))
            return np.concatenate(xs).astype(np.float32) / 255.0, np.concatenate(ys)
    raise DatasetNotFoundError(f"CIFAR-10 batches ({', '.join(names)}) were not found in {root}; download the "
                               "python version of CIFAR-10 and pass its folder as root")


def batches(*arrays, batch_size, shuffle=True, seed=None, drop_last=False):
    """Minibatches ``(a[idx], b[idx], ...)`` over the first axis of equally long arrays.

    With ``shuffle`` the order is a permutation drawn from ``seed`` (pass the epoch number,
    for example, for a new order each epoch that a rerun reproduces).
    """
    if not arrays:
        raise ValueError("batches needs at least one array")
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError(f"arrays must have the same length, got {[len(a) for a in arrays]}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield tuple(a[idx] for a in arrays)


class DelayedRecall(NamedTuple):
    """One batch of the delayed-recall task (see :func:`delayed_recall`)."""
    inputs: np.ndarray   # (n, t_max, D + 1) float32: the frame (flattened) then the trigger
    targets: np.ndarray  # (n, t_max) int64: the label at t_a, ``null`` elsewhere
    t_s: np.ndarray      # (n,) int64 stimulus times in [1, t_max]
    t_a: np.ndarray      # (n,) int64 answer times in [1, t_max], t_a - t_s > min_gap
    labels: np.ndarray   # (n,) int64 the stimulus labels
    null: int            # the "nothing" class


def delayed_recall(images, labels, t_max, n_classes, min_gap=4, noise=0.1, seed=None, n=None, delay=None):
    """The delayed-recall task of Haviv, Rivkind & Barak (2019) on any labelled image set.

    Each of ``n`` sequences has ``t_max`` frames at times ``t = 1 .. t_max`` (array index
    ``t - 1``); a frame is an image flattened to ``D`` values plus one trigger value:

    - at ``t_s`` an image whose label is one of the first ``n_classes`` classes (labels
      ``0 .. n_classes - 1``), trigger 0;
    - at ``t_a`` a noise frame with trigger 1, where the target is the image's label;
    - elsewhere a noise frame with trigger 0 and the target ``null``.

    ``t_s`` and ``t_a`` are uniform over the pairs in ``[1, t_max]`` with ``t_a - t_s > min_gap``,
    or, with ``delay``, ``t_a - t_s = delay`` exactly and ``t_s`` uniform in ``[1, t_max - delay]``.
    Noise frames are i.i.d. normal with standard deviation ``noise`` per value. ``null`` is the
    data set's class count ``labels.max() + 1``, the same for every ``n_classes``, so a
    vocabulary curriculum keeps its output layer. ``n`` defaults to the number of eligible
    images; images are drawn with replacement. The same ``seed`` gives the same batch.

    Shapes: ``images (N, ...)`` and ``labels (N,)``; the result is a :class:`DelayedRecall`.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim < 2 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"images must be (N, ...) and labels (N,), got {images.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu" or len(labels) == 0 or labels.min() < 0:
        raise ValueError("labels must be a non-empty integer array of classes >= 0")
    for name, v in (("t_max", t_max), ("n_classes", n_classes), ("min_gap", min_gap)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    if t_max < min_gap + 2:
        raise ValueError(f"t_max={t_max} is too small for min_gap={min_gap}: t_a - t_s > min_gap needs "
                         f"t_max >= {min_gap + 2}")
    classes = int(labels.max()) + 1
    if not 1 <= n_classes <= classes:
        raise ValueError(f"n_classes must lie in [1, {classes}] (the data set's class count), got {n_classes}")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, np.integer)) or not min_gap < delay < t_max:
            raise ValueError(f"delay must be an int with min_gap={min_gap} < delay < t_max={t_max}, got {delay!r}")
    if not (isinstance(noise, (int, float, np.floating)) and noise >= 0):
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    eligible = np.flatnonzero(labels < n_classes)
    if len(eligible) == 0:
        raise ValueError(f"no image has a label below n_classes={n_classes}")
    n = len(eligible) if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    rng = np.random.default_rng(seed)
    pick = eligible[rng.integers(0, len(eligible), n)]
    if delay is None:
        # Uniform over the valid pairs: t_s with weight (number of t_a after it), then t_a.
        t_s_values = np.arange(1, t_max - min_gap)
        weights = (t_max - min_gap - t_s_values).astype(float)
        t_s = rng.choice(t_s_values, size=n, p=weights / weights.sum())
        t_a = t_s + min_gap + 1 + (rng.random(n) * (t_max - min_gap - t_s)).astype(np.int64)
    else:
        t_s = rng.integers(1, t_max - delay + 1, n)
        t_a = t_s + delay
    d = int(np.prod(images.shape[1:]))
    inputs = (rng.standard_normal((n, t_max, d + 1), dtype=np.float32) * np.float32(noise))
    inputs[..., d] = 0
    rows = np.arange(n)
    inputs[rows, t_s - 1, :d] = images[pick].reshape(n, d)
    inputs[rows, t_a - 1, d] = 1
    targets = np.full((n, t_max), classes, dtype=np.int64)
    targets[rows, t_a - 1] = labels[pick]
    return DelayedRecall(inputs, targets, t_s.astype(np.int64), t_a.astype(np.int64), labels[pick].astype(np.int64),
                         classes)


def scenes(images, labels, count, size=56, items=(2, 4), threshold=0.2, seed=0):
    """Scenes for pixel-wise labelling: ``count`` canvases ``(count, 1, size, size)`` float32,
    each holding ``items[0]`` to ``items[1]`` items of ``images (N, 1, h, w)`` at random
    places, and their labels ``(count, size, size)`` int64: an item's class + 1 where its
    pixel exceeds ``threshold`` and is the brightest there, 0 (background) elsewhere.
    ``size`` may be a pair ``(H, W)``. The same ``seed`` gives the same scenes.
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[1] != 1 or len(images) != len(labels):
        raise ValueError(f"images must be (N, 1, h, w) with one label each, got {images.shape} and {labels.shape}")
    height, width = (size, size) if np.isscalar(size) else size
    h, w = images.shape[2:]
    if height < h or width < w:
        raise ValueError(f"size must be at least the items' {h}x{w}, got {size!r}")
    lo, hi = items
    if not 1 <= lo <= hi:
        raise ValueError(f"items must be a (min, max) pair with 1 <= min <= max, got {items!r}")
    rng = np.random.default_rng(seed)
    x = np.zeros((count, 1, height, width), np.float32)
    y = np.zeros((count, height, width), np.int64)
    for i in range(count):
        for j in rng.choice(len(images), size=rng.integers(lo, hi + 1), replace=False):
            r, c = rng.integers(height - h + 1), rng.integers(width - w + 1)
            item = images[j, 0]
            region = x[i, 0, r:r + h, c:c + w]
            on = (item > threshold) & (item >= region)
            y[i, r:r + h, c:c + w][on] = labels[j] + 1
            np.maximum(region, item, out=region)
    return x, y
