"""Section 9.10: Gabor functions, simulated simple and complex cells probed with white noise,
their receptive fields recovered by reverse correlation, and Gabor fits (scipy.optimize) to
the recovered fields and to the first-layer kernels of a conv net trained on Fashion-MNIST."""
from __future__ import annotations

import math

import numpy as np

from .. import data, nn, optim
from ..models import gabor as G
from ..plotting import pyplot, save, show, tile
from ..training import evaluate, train_epoch

SUMMARY = "Gabor functions (Fig. 9.18), simple/complex cells, reverse correlation, Gabor fits to cells and CNN kernels"

SIZE = 16  # receptive-field size of the simulated cells, pixels


def figure_functions(path):
    """Fig. 9.18: Gabor functions varying the coordinate system (x0, y0, tau), the Gaussian
    scales (beta_x, beta_y), and the frequency and phase (f, phi)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    n, cell = 5, 15
    x, y = G.grid(n * cell)
    # left: each grid cell's Gabor is centred on that cell and oriented away from the centre
    canvas = np.zeros(x.shape)
    for i in range(n):
        for j in range(n):
            x0, y0 = (j - (n - 1) / 2) * cell, (i - (n - 1) / 2) * cell
            g = G.Gabor(1.0, 0.03, 0.03, 0.9, 0.0, x0, y0, math.atan2(y0, x0))
            block = (slice(i * cell, (i + 1) * cell), slice(j * cell, (j + 1) * cell))
            canvas[block] = g(x[block], y[block])
    show(axes[0], canvas, "x0, y0 by position, tau radial", vmin=-1, vmax=1)
    betas = np.geomspace(0.006, 0.2, n)
    show(axes[1], tile([G.Gabor(1.0, bx, by, 0.9).kernel(cell + 6) for by in betas for bx in betas], cols=n,
                       normalize="all"), "beta_x across, beta_y down")
    fs, phis = np.linspace(0.3, 1.5, n), np.linspace(0, math.pi, n)
    show(axes[2], tile([G.Gabor(1.0, 0.03, 0.03, f, phi).kernel(cell + 6) for phi in phis for f in fs], cols=n,
                       normalize="all"), "f across, phi down")
    save(fig, path)


def random_cells(count, rng):
    """``count`` random Gabor receptive fields that fit in SIZE x SIZE pixels."""
    cells = []
    for _ in range(count):
        sigma_x, sigma_y = rng.uniform(1.6, 3.0), rng.uniform(1.6, 3.0)
        cells.append(G.Gabor(1.0, 1 / (2 * sigma_x ** 2), 1 / (2 * sigma_y ** 2), rng.uniform(0.5, 1.3),
                             rng.uniform(-math.pi, math.pi), rng.uniform(-2, 2), rng.uniform(-2, 2),
                             rng.uniform(0, math.pi)))
    return cells


def _angle_error(a, b, period):
    d = (a - b) % period
    return min(d, period - d)


def grating(params: G.Gabor, shift, size=SIZE):
    """A full-field grating at the cell's frequency and orientation, moved ``shift`` pixels along x'."""
    x, y = G.grid(size)
    xr = x * math.cos(params.tau) + y * math.sin(params.tau)
    return np.cos(params.f * (xr - shift))


def first_layer_net(kernel=7, width=12):
    """conv(kernel x kernel, width)-ReLU-maxpool2, conv3x3(2*width)-ReLU-maxpool2, linear: the
    first layer's kernels are big enough to fit Gabor functions to."""
    return nn.Sequential(nn.Conv2d(1, width, kernel, padding=kernel // 2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, 10))


def run(quick, out, seed):
    rng = np.random.default_rng(seed)
    plt = pyplot()
    results = {"figures": []}

    figure_functions(out / "gabor_functions.png")
    kernels, _ = G.bank(SIZE - 1, orientations=8, frequencies=(0.6, 1.2), phases=(0.0, math.pi / 2))
    fig, ax = plt.subplots(figsize=(7, 2.4))
    show(ax, tile(kernels, cols=16), f"bank(): {kernels.shape[0]} kernels, 8 orientations x 2 frequencies x 2 phases")
    save(fig, out / "gabor_bank.png")
    results["bank_shape"] = list(kernels.shape)

    # simple cells: reverse correlation from white noise
    n_cells, n_probes = (3, 3000) if quick else (12, 20000)
    noise = 0.5  # standard deviation of the added noise; the drive's is about 1 (unit-norm field)
    cells = [G.SimpleCell(g.replace(alpha=1 / np.linalg.norm(g.kernel(SIZE))), SIZE, noise=noise)
             for g in random_cells(n_cells, rng)]
    rows = []
    for i, cell in enumerate(cells):
        probes = G.white_noise(n_probes, SIZE, rng)
        rates = cell(probes, rng)
        sta = G.spike_triggered_average(probes, rates)
        ls = G.least_squares_field(probes, rates)
        fitted, r2 = G.fit(sta)
        rows.append({"cell": i, "sta_correlation": G.correlation(sta, cell.kernel),
                     "least_squares_correlation": G.correlation(ls, cell.kernel),
                     "fit_r2": r2, "fit_correlation_with_true": G.correlation(fitted.kernel(SIZE), cell.kernel),
                     "f_true": cell.field.f, "f_fit": fitted.f,
                     "tau_error_deg": math.degrees(_angle_error(fitted.tau, cell.field.tau, math.pi)),
                     "sta": sta, "ls": ls, "fit": fitted.kernel(SIZE)})
    shown = rows[:4]
    fig, axes = plt.subplots(len(shown), 4, figsize=(6.4, 1.7 * len(shown)), squeeze=False)
    for r, (row, cell) in enumerate(zip(shown, cells)):
        for c, (image, name) in enumerate([(cell.kernel, "true field"),
                                           (row["sta"], f"STA r={row['sta_correlation']:.3f}"),
                                           (row["ls"], f"least sq. r={row['least_squares_correlation']:.3f}"),
                                           (row["fit"], f"Gabor fit R2={row['fit_r2']:.3f}")]):
            show(axes[r, c], image, name)
    save(fig, out / "reverse_correlation.png")
    for row in rows:
        for k in ("sta", "ls", "fit"):
            row.pop(k)
    sta_corr = np.array([r["sta_correlation"] for r in rows])
    results["simple_cells"] = {"cells": n_cells, "probes": n_probes, "noise_sd": noise, "size": SIZE,
                               "sta_correlation_mean": float(sta_corr.mean()),
                               "sta_correlation_min": float(sta_corr.min()),
                               "least_squares_correlation_mean": float(np.mean([r["least_squares_correlation"]
                                                                                for r in rows])),
                               "fit_r2_mean": float(np.mean([r["fit_r2"] for r in rows])),
                               "per_cell": rows}

    # correlation against the number of probes, first cell
    counts = [250, 1000, 3000] if quick else [250, 500, 1000, 2000, 5000, 10000, 20000, 50000]
    curve = {"probes": counts, "sta": [], "least_squares": []}
    for n in counts:
        probes = G.white_noise(n, SIZE, rng)
        rates = cells[0](probes, rng)
        curve["sta"].append(G.correlation(G.spike_triggered_average(probes, rates), cells[0].kernel))
        curve["least_squares"].append(G.correlation(G.least_squares_field(probes, rates), cells[0].kernel))
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.semilogx(counts, curve["sta"], "o-", label="spike-triggered average")
    ax.semilogx(counts, curve["least_squares"], "s-", label="least squares")
    ax.axhline(0.95, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("white-noise probes")
    ax.set_ylabel("correlation with the true field")
    ax.legend()
    ax.grid(alpha=0.3)
    save(fig, out / "probes.png")
    results["correlation_vs_probes"] = curve

    # complex cell: the average is blind to it, the covariance finds its quadrature pair,
    # and its response does not move when a grating shifts under it
    field = cells[0].field
    complex_cell = G.ComplexCell(field, SIZE, noise=0.1)
    probes = G.white_noise(n_probes, SIZE, rng)
    rates = complex_cell(probes, rng)
    sta = G.spike_triggered_average(probes, rates)
    stc, eigenvalues = G.spike_triggered_covariance(probes, rates)
    shifts = np.linspace(0, 2 * 2 * math.pi / field.f, 33)  # two periods
    gratings = np.stack([grating(field, s) for s in shifts])
    simple_response = G.SimpleCell(field, SIZE)(gratings)
    complex_response = G.ComplexCell(field, SIZE)(gratings)

    def variation(r):
        return float((r.max() - r.min()) / r.mean())

    results["complex_cell"] = {"sta_correlation": G.correlation(sta, complex_cell.kernels[0]),
                               "stc_subspace_overlap": G.subspace_overlap(stc, complex_cell.kernels),
                               "stc_eigenvalues": eigenvalues,
                               "shift_variation_simple": variation(simple_response),
                               "shift_variation_complex": variation(complex_response)}
    fig = plt.figure(figsize=(9, 3.4))
    grid = fig.add_gridspec(2, 5)
    for k, (image, name) in enumerate([(complex_cell.kernels[0], "field, phase phi"),
                                       (complex_cell.kernels[1], "phase phi + pi/2"),
                                       (sta, f"STA r={results['complex_cell']['sta_correlation']:.2f}"),
                                       (stc[0], "STC eigenvector 1"), (stc[1], "STC eigenvector 2"),
                                       (gratings[0], "probe grating")]):
        show(fig.add_subplot(grid[k // 3, k % 3]), image, name)
    ax = fig.add_subplot(grid[:, 3:])
    ax.plot(shifts, simple_response, label="simple cell")
    ax.plot(shifts, complex_response, label="complex cell")
    ax.set_xlabel("grating shift (pixels)")
    ax.set_ylabel("response")
    ax.legend(fontsize=8)
    save(fig, out / "complex_cell.png")

    # Gabor fits to the first-layer kernels of a conv net trained end to end
    nn.manual_seed(seed)
    try:
        (x, y), (xt, yt), name = data.fashion_mnist("train"), data.fashion_mnist("test"), "fashion-mnist"
    except data.DatasetNotFoundError:
        (x, y), (xt, yt), name = data.digits("train"), data.digits("test"), "digits"
    train_size, epochs = (1024, 1) if quick else (20000, 3)
    x, y, xt, yt = x[:train_size], y[:train_size], xt[:2000], yt[:2000]
    net = first_layer_net()
    opt = optim.Adam(net.parameters(), lr=2e-3)
    for epoch in range(epochs):
        train_epoch(net, opt, data.batches(x, y, batch_size=64, seed=seed * 1000 + epoch),
                    desc=f"CNN epoch {epoch + 1}/{epochs}", total=-(-len(y) // 64))
    _, accuracy = evaluate(net, xt, yt)
    filters = net[0].weight.data[:, 0].astype(float)
    fits = [G.fit(k) for k in filters]
    r2 = np.array([r for _, r in fits])
    results["cnn"] = {"dataset": name, "train_size": len(y), "epochs": epochs, "test_accuracy": accuracy,
                      "kernel": list(filters.shape[1:]), "fit_r2": r2, "fit_r2_median": float(np.median(r2)),
                      "filters_r2_above_0.8": int((r2 > 0.8).sum())}
    fig, axes = plt.subplots(2, 1, figsize=(8, 2.2))
    show(axes[0], tile(filters, cols=len(filters)), f"first-layer kernels ({name}, test acc. {accuracy:.3f})")
    show(axes[1], tile([g.kernel(filters.shape[1:]) for g, _ in fits], cols=len(filters)),
         f"Gabor fits, median R2 {np.median(r2):.2f}")
    save(fig, out / "cnn_fits.png")

    results["figures"] = ["gabor_functions.png", "gabor_bank.png", "reverse_correlation.png", "probes.png",
                          "complex_cell.png", "cnn_fits.png"]
    return results
