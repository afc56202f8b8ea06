"""Small helpers shared by the experiments' and the guide's figures (matplotlib, Agg backend)."""
from __future__ import annotations

import math

import numpy as np


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tile(kernels, cols=None, pad=1, normalize="each"):
    """Kernels ``(K, h, w)`` (or ``(K, 1, h, w)``) laid out as one image ``(rows*(h+pad)-pad, ...)``
    with ``cols`` per row; ``normalize="each"`` scales each kernel to [0, 1] by its own largest
    magnitude around 0.5 (so zero is mid-grey), ``"all"`` uses one scale for all. Gaps are white."""
    k = np.asarray(kernels, dtype=float)
    k = k[:, 0] if k.ndim == 4 else k
    if k.ndim != 3:
        raise ValueError(f"kernels must be (K, h, w) or (K, 1, h, w), got shape {np.shape(kernels)}")
    n, h, w = k.shape
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    if normalize == "each":
        scale = np.abs(k).reshape(n, -1).max(axis=1)[:, None, None]
    elif normalize == "all":
        scale = np.abs(k).max()
    else:
        raise ValueError(f"normalize must be 'each' or 'all', got {normalize!r}")
    k = 0.5 + 0.5 * k / np.where(scale == 0, 1, scale)
    canvas = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad))
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = k[i]
    return canvas


def show(ax, image, title=None, cmap="gray", **kwargs):
    """``image`` on ``ax`` without ticks."""
    ax.imshow(image, cmap=cmap, interpolation="nearest", **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def save(fig, path, dpi=90):
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
