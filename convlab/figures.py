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

from . import adaptive_max_pool2d, conv1d, conv2d, conv_matrix, local_conv1d, max_pool1d, maxout, tiled_conv1d
from .models import gabor as G
from .plotting import pyplot, save, show


def smoothing(path):
    """Eq. 9.1-9.3: a noisy measurement x(t) of a position, smoothed by a weighted average that
    favours recent measurements, s(t) = sum_a x(a) w(t - a) with w(a) = exp(-a / 4) / Z for
    0 <= a < 16: conv1d with the kernel flipped (true convolution) and all padding on the left, so
    that s(t) uses measurements up to t only."""
    plt = pyplot()
    rng = np.random.default_rng(0)
    n, k = 200, 16
    t = np.arange(n)
    position = 2 * np.sin(2 * math.pi * t / n)
    x = position + rng.normal(scale=0.6, size=n)
    w = np.exp(-np.arange(k) / 4.0)
    w /= w.sum()
    s = conv1d(x[None, None], w[None, None], padding=((k - 1, 0),), flip=True)[0, 0]
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(t, x, ".", ms=3, color="0.6", label="measurements x(t)")
    ax.plot(t, position, "k", lw=1, label="true position")
    ax.plot(t, s, lw=2, label="s(t) = (x * w)(t)")
    ax.set_xlabel("t")
    ax.legend(fontsize=7, loc="lower left")
    save(fig, path)
    late = slice(k, None)  # after the first window; the start sees zero padding
    return {"kernel_size": k, "matches_numpy_convolve": bool(np.allclose(s, np.convolve(x, w)[:n])),
            "rms_error_measurements": float(np.sqrt(np.mean((x - position)[late] ** 2))),
            "rms_error_smoothed": float(np.sqrt(np.mean((s - position)[late] ** 2)))}


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


def strong_prior(path):
    """Section 9.4: a convolutional layer is a dense layer whose weight matrix is forced to
    repeat one small kernel along its diagonals. The matrix of a 3x3 kernel (taps numbered
    1-9) on a 6x6 input with 'same' padding: every nonzero entry is one of the 9 taps."""
    plt = pyplot()
    n = 6
    w = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    m = conv_matrix((1, n, n), w, padding="same").toarray()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6), gridspec_kw={"width_ratios": [1, 2.6]})
    show(axes[0], w[0, 0], "kernel taps 1-9", cmap="tab10", vmin=0.5, vmax=10.5)
    masked = np.ma.masked_equal(m, 0)
    show(axes[1], masked, f"conv_matrix: {n * n}x{n * n}, {int((m != 0).sum())} nonzeros, 9 distinct",
         cmap="tab10", vmin=0.5, vmax=10.5)
    save(fig, path)
    return {"distinct_values": sorted({float(v) for v in m[m != 0]}), "nonzeros": int((m != 0).sum()),
            "dense_parameters": m.size, "conv_parameters": 9}


def connectivity(path):
    """Fig. 9.14 and 9.16: the weight matrices of a locally connected layer (every output its own
    kernel), a tiled convolution (t = 2 kernels in turn) and a convolution (one kernel), each
    found by applying the layer to the unit vectors. 8 inputs, kernel width 3, 6 outputs."""
    plt = pyplot()
    rng = np.random.default_rng(1)
    n, k = 8, 3
    out = n - k + 1
    eye = np.eye(n)[:, None, :]  # (n, 1, n): a batch of unit vectors
    layers = {"local": (local_conv1d, rng.normal(size=(1, out, 1, k))),
              "tiled, t = 2": (tiled_conv1d, rng.normal(size=(1, 2, 1, k))),
              "convolution": (conv1d, rng.normal(size=(1, 1, k)))}
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.6))
    numbers = {}
    for ax, (name, (op, w)) in zip(axes, layers.items()):
        m = op(eye, w)[:, 0, :].T  # (out, n): column i is the response to unit vector i
        m[np.abs(m) < 1e-12] = 0  # round-off of the algorithm "auto" picks, not a connection
        distinct = len({round(float(v), 9) for v in m[m != 0]})
        numbers[name] = {"parameters": int(w.size), "distinct_nonzeros": distinct}
        show(ax, np.ma.masked_equal(m, 0), f"{name}: {distinct} distinct weights", cmap="coolwarm", vmin=-2.5,
             vmax=2.5)
    save(fig, path)
    return numbers


def padding_and_stride(path):
    """Fig. 9.12-9.13: widths through a stack of kernel-6 convolutions on 16 inputs for each
    padding, and a stride-2 convolution equals the stride-1 one sampled at every other output."""
    plt = pyplot()
    rng = np.random.default_rng(2)
    n, k, depth = 16, 6, 4
    w = rng.normal(size=(1, 1, k)) / k
    widths = {}
    for padding in ("valid", "same", "full"):
        x, sizes = rng.normal(size=(1, 1, n)), [n]
        for _ in range(depth):
            if x.shape[-1] < k and padding == "valid":
                break
            x = conv1d(x, w, padding=padding)
            sizes.append(x.shape[-1])
        widths[padding] = sizes
    x = np.cumsum(rng.normal(size=(1, 1, 40)), axis=-1)
    w3 = np.array([[[0.25, 0.5, 0.25]]])
    dense, strided = conv1d(x, w3, padding=1), conv1d(x, w3, padding=1, stride=2)
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
    for name, sizes in widths.items():
        axes[0].plot(sizes, marker="o", label=name)
    axes[0].set_xlabel("layer")
    axes[0].set_ylabel("width")
    axes[0].set_title(f"{n} inputs, kernel width {k}", fontsize=9)
    axes[0].legend(fontsize=7)
    axes[1].plot(dense[0, 0], label="stride 1")
    axes[1].plot(np.arange(0, 40, 2), strided[0, 0], "o", label="stride 2")
    axes[1].set_title("stride 2 = stride 1, then every other output", fontsize=9)
    axes[1].legend(fontsize=7)
    save(fig, path)
    return {"widths": widths, "stride2_max_error": float(np.abs(strided - dense[..., ::2]).max())}


def variable_size(path):
    """Section 9.7: one kernel applies to images of any size; an adaptive max pool then gives a
    fixed-size output (here 4x4) whatever the input size, as a classifier on top needs."""
    plt = pyplot()
    from sklearn.datasets import load_sample_images

    image = load_sample_images().images[1].mean(axis=2)[::3, ::3] / 255  # 142 x 214
    crops = [image[35:95, 75:135], image[20:110, 40:190]]
    kernel = np.array([[[[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]]]])
    fig, axes = plt.subplots(2, 3, figsize=(8, 5))
    shapes = []
    for row, crop in zip(axes, crops):
        edges = np.abs(conv2d(crop[None, None], kernel, padding="same"))
        pooled = adaptive_max_pool2d(edges, 4)
        shapes.append({"input": list(crop.shape), "conv": list(edges.shape[2:]), "pooled": list(pooled.shape[2:])})
        show(row[0], crop, f"input {crop.shape[0]}x{crop.shape[1]}")
        show(row[1], edges[0, 0], f"|conv2d|, same: {edges.shape[2]}x{edges.shape[3]}")
        show(row[2], pooled[0, 0], "adaptive_max_pool2d(., 4)")
    save(fig, path, dpi=80)
    return {"shapes": shapes}


def separable(path):
    """Section 9.8: a 15x15 Gaussian kernel is the outer product of two 1-D kernels, so the
    2-D convolution is two 1-D passes: 2k instead of k^2 multiplications per output."""
    plt = pyplot()
    from sklearn.datasets import load_sample_images

    image = load_sample_images().images[0].mean(axis=2)[::2, ::2] / 255
    k = 15
    g = np.exp(-0.5 * ((np.arange(k) - k // 2) / 3.0) ** 2)
    g /= g.sum()
    kernel = np.outer(g, g)[None, None]
    direct = conv2d(image[None, None], kernel, padding="same", algorithm="direct")
    split = conv2d(image[None, None], kernel, padding="same", algorithm="separable")
    fig, axes = plt.subplots(1, 3, figsize=(9, 2.8), gridspec_kw={"width_ratios": [1, 1, 1.5]})
    show(axes[0], kernel[0, 0], f"{k}x{k} kernel")
    axes[1].plot(g)
    axes[1].set_title("its 1-D factor g: K = g g^T", fontsize=9)
    show(axes[2], split[0, 0], "conv2d(..., algorithm='separable')")
    save(fig, path, dpi=80)
    return {"kernel_size": k, "max_difference_to_direct": float(np.abs(direct - split).max()),
            "multiplies_per_output": {"direct": k * k, "separable": 2 * k}}


FIGURES = {
    "smoothing.png": smoothing,
    "sparse_interactions.png": sparse_interactions,
    "equivariance.png": equivariance,
    "edge_detection.png": edge_detection,
    "pooling_invariance.png": pooling_invariance,
    "maxout_invariance.png": maxout_invariance,
    "strong_prior.png": strong_prior,
    "connectivity.png": connectivity,
    "padding_and_stride.png": padding_and_stride,
    "variable_size.png": variable_size,
    "separable.png": separable,
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
