"""The figures of the chapter 9 guide (docs/chapter9/), computed with convlab:

    python -m convlab.figures [--out docs/chapter9/figures]

writes one PNG per figure and ``figures.json`` with the numbers the guide quotes. The
experiments' figures (sections 9.6, 9.9, 9.10) come from ``convlab experiment NAME``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from . import conv1d, conv2d, conv_matrix, max_pool1d, maxout
from .models import gabor as G
from .plotting import pyplot, save, show


def sparse_interactions(path):
    """Fig. 9.2-9.4: the matrix of a 3-tap convolution (sparse, shared) against a dense layer,
    and the receptive field of one output growing with depth (from products of the matrices)."""
    plt = pyplot()
    n, depth = 13, 3
    w = np.array([[[1.0, 1.0, 1.0]]])
    m = conv_matrix((1, n), w, padding=1).toarray()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
    show(axes[0], m != 0, f"conv_matrix, kernel 3: {int((m != 0).sum())} of {m.size} entries", cmap="Greys")
    show(axes[1], np.ones_like(m), f"dense layer: {m.size} entries", cmap="Greys", vmin=0, vmax=1)
    reach, fields = np.eye(n), []
    for _ in range(depth):
        reach = m @ reach
        fields.append(reach[n // 2] != 0)
    show(axes[2], np.array(fields), "inputs reaching the middle unit, depth 1-3", cmap="Greys")
    axes[2].set_ylabel("depth")
    save(fig, path)
    return {"n": n, "nonzeros": int((m != 0).sum()), "dense_entries": m.size,
            "receptive_field_by_depth": [int(f.sum()) for f in fields]}


def equivariance(path):
    """Section 9.2: convolving a shifted input equals shifting the convolved input (stride 1),
    and stride 2 breaks it for odd shifts."""
    plt = pyplot()
    rng = np.random.default_rng(0)
    x = np.zeros((1, 1, 40))
    x[0, 0, 10:16] = rng.random(6) + 0.5
    w = np.array([[[1.0, -2.0, 1.0]]])

    def shift(a, s):
        return np.roll(a, s, axis=-1)

    y, y_shifted = conv1d(x, w, padding=1), conv1d(shift(x, 5), w, padding=1)
    s2, s2_shifted = conv1d(x, w, padding=1, stride=2), conv1d(shift(x, 5), w, padding=1, stride=2)
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
    axes[0].plot(y[0, 0], label="conv(x)")
    axes[0].plot(y_shifted[0, 0], "--", label="conv(shift(x, 5))")
    axes[0].set_title("stride 1: the output shifts with the input", fontsize=9)
    axes[1].plot(s2[0, 0], label="conv(x), stride 2")
    axes[1].plot(s2_shifted[0, 0], "--", label="conv(shift(x, 5)), stride 2")
    axes[1].set_title("stride 2, odd shift: other samples, not a shift", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=7)
    save(fig, path)
    return {"stride1_max_error": float(np.abs(y_shifted - shift(y, 5)).max()),
            "stride2_shift5_min_error": float(min(np.abs(s2_shifted - shift(s2, k)).max() for k in range(-5, 6)))}


def pooling_invariance(path):
    """Fig. 9.8: shift a detector stage's input by one: every detector output changes, the max
    pool (width 3, stride 1) outputs change far less."""
    plt = pyplot()
    detector = np.array([0.1, 1.0, 0.2, 0.1, 0.0, 0.1, 0.3, 0.1, 1.0, 0.2, 0.1, 0.0])[None, None]
    shifted = np.roll(detector, 1, axis=-1)
    pooled, pooled_shifted = max_pool1d(detector, 3, stride=1, padding=1), max_pool1d(shifted, 3, stride=1, padding=1)
    changed_detector = float(np.mean(detector != shifted))
    changed_pool = float(np.mean(pooled != pooled_shifted))
    fig, axes = plt.subplots(2, 1, figsize=(6, 2.6))
    show(axes[0], np.vstack([pooled[0], detector[0]]), f"input: pooling / detector ({changed_pool:.0%} / "
         f"{changed_detector:.0%} of values change under the shift)", vmin=0, vmax=1)
    show(axes[1], np.vstack([pooled_shifted[0], shifted[0]]), "shifted right by one", vmin=0, vmax=1)
    save(fig, path)
    return {"detector_changed": changed_detector, "pooled_changed": changed_pool}


def maxout_invariance(path):
    """Fig. 9.9: a maxout unit over Gabor filters at several orientations responds to a grating
    at any of them; one filter responds only near its own orientation."""
    plt = pyplot()
    size, f, orientations = 15, 1.0, 8
    kernels, _ = G.bank(size, orientations=orientations, frequencies=(f,), phases=(0.0,))
    angles = np.linspace(0, math.pi, 73)
    x, y = G.grid(size)
    best = []
    for a in angles:
        xr = x * math.cos(a) + y * math.sin(a)
        # the best phase of the grating for each filter: the quadrature energy of the stimulus
        s = np.stack([np.abs(G.responses(np.cos(f * xr - p)[None], kernels)[0]) for p in np.linspace(0, math.pi, 8)])
        best.append(s.max(axis=0))
    best = np.array(best)  # (angles, filters)
    pooled = maxout(best.T[None, :, :], orientations)[0, 0]  # max over the filters
    fig, axes = plt.subplots(1, 2, figsize=(9, 3), gridspec_kw={"width_ratios": [1, 1.4]})
    show(axes[0], np.hstack([k[0] for k in kernels]), "8 detector filters (tau = 0 to 7pi/8)")
    axes[1].plot(np.degrees(angles), best[:, 0], label="one filter (tau = 0)")
    axes[1].plot(np.degrees(angles), pooled, label="maxout over the 8")
    axes[1].set_xlabel("grating orientation (degrees)")
    axes[1].set_ylabel("response")
    axes[1].legend(fontsize=8)
    save(fig, path)
    return {"single_filter_range": [float(best[:, 0].min()), float(best[:, 0].max())],
            "maxout_range": [float(pooled.min()), float(pooled.max())]}


def edge_detection(path):
    """Fig. 9.6: the kernel [-1, 1] as a convolution (each output is one pixel minus its left
    neighbour) and what it costs against the same linear map as a dense matrix."""
    plt = pyplot()
    from sklearn.datasets import load_sample_images

    image = load_sample_images().images[0].mean(axis=2)[::2, ::2] / 255  # 214 x 320
    h, w = image.shape
    kernel = np.array([[[[-1.0, 1.0]]]])
    edges = conv2d(image[None, None], kernel)[0, 0]  # (h, w - 1)
    outputs = edges.size
    conv_flops = 3 * outputs  # two multiplications and one addition per output, as the book counts
    dense_entries = image.size * outputs
    sparse = conv_matrix((1, h, w), kernel)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    show(axes[0], image, f"input {h}x{w}")
    show(axes[1], edges, f"conv2d with [-1, 1]: {h}x{w - 1}", cmap="gray")
    save(fig, path, dpi=70)
    return {"input": [h, w], "output": [h, w - 1], "conv_flops": conv_flops, "dense_matrix_entries": dense_entries,
            "dense_flops": 2 * dense_entries, "ratio": 2 * dense_entries / conv_flops,
            "conv_matrix_nonzeros": int(sparse.nnz),
            "conv_matrix_matches": bool(np.allclose(sparse @ image.ravel(), edges.ravel()))}


FIGURES = {
    "sparse_interactions.png": sparse_interactions,
    "equivariance.png": equivariance,
    "pooling_invariance.png": pooling_invariance,
    "maxout_invariance.png": maxout_invariance,
    "edge_detection.png": edge_detection,
}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convlab.figures", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/chapter9/figures", help="folder for the PNGs and figures.json")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from .experiments.gabor import figure_functions

    numbers = {}
    for name, make in FIGURES.items():
        numbers[name] = make(out / name)
        print(out / name)
    figure_functions(out / "gabor_functions.png")
    print(out / "gabor_functions.png")
    with open(out / "figures.json", "w") as f:
        json.dump(numbers, f, indent=2)
    return numbers


if __name__ == "__main__":
    main()
