"""Fit the constants of the cost model behind ``algorithm="auto"`` on this machine.

Times every algorithm the model covers (``convlab._cost.FEATURES``: its forward pass, as
``"auto"`` runs it) on a grid of convolutions, in float32 and float64, fits each
algorithm's non-negative constants by least squares on the relative error
(``scipy.optimize.nnls``) and reports how well the fitted model ranks the algorithms.
``convlab tune`` saves the result where ``"auto"`` finds it (:func:`convlab._cost.user_path`);
``benchmarks/fit_cost_model.py`` rewrites the constants shipped with the package.
"""
from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path

import numpy as np

from . import _cost, _params
from . import conv as conv_module
from ._harness import Case, time_runs

# (x shape, w shape, stride, padding): ResNet-like layers, large kernels, single-channel
# images, 1-D and 3-D, depthwise and grouped.
GRID = [
    ((8, 64, 56, 56), (64, 64, 3, 3), 1, 1), ((8, 128, 28, 28), (128, 128, 3, 3), 1, 1),
    ((8, 256, 14, 14), (256, 256, 3, 3), 1, 1), ((8, 512, 7, 7), (512, 512, 3, 3), 1, 1),
    ((8, 256, 56, 56), (64, 256, 1, 1), 1, 0), ((8, 1024, 14, 14), (256, 1024, 1, 1), 1, 0),
    ((8, 3, 224, 224), (64, 3, 7, 7), 2, 3), ((8, 128, 56, 56), (128, 128, 3, 3), 2, 1),
    ((2, 64, 56, 56), (64, 64, 3, 3), 1, 1), ((1, 256, 14, 14), (256, 256, 3, 3), 1, 1),
    ((4, 32, 32, 32), (32, 32, 3, 3), 1, 1), ((8, 16, 32, 32), (16, 16, 3, 3), 1, 1),
    ((1, 64, 64, 64), (128, 64, 9, 9), 1, 4), ((1, 16, 64, 64), (32, 16, 9, 9), 1, 0),
    ((1, 8, 64, 64), (8, 8, 11, 11), 1, 5), ((2, 32, 32, 32), (32, 32, 5, 5), 1, 2),
    ((4, 64, 28, 28), (64, 64, 5, 5), 2, 2), ((8, 64, 28, 28), (128, 64, 1, 1), 2, 0),
    ((1, 32, 56, 56), (32, 1, 3, 3), 1, 1, 32), ((1, 64, 28, 28), (64, 8, 3, 3), 1, 1, 8),
    ((1, 3, 128, 128), (16, 3, 5, 5), 1, 2), ((4, 3, 64, 64), (8, 3, 3, 3), 1, 1),
    ((1, 1, 256, 256), (1, 1, 3, 3), 1, 1), ((1, 1, 256, 256), (1, 1, 9, 9), 1, 4),
    ((1, 1, 256, 256), (1, 1, 21, 21), 1, 10),
    ((1, 1, 512, 512), (1, 1, 3, 3), 1, 1), ((1, 1, 512, 512), (1, 1, 5, 5), 1, 2),
    ((1, 1, 512, 512), (1, 1, 7, 7), 1, 3), ((1, 1, 512, 512), (1, 1, 11, 11), 1, 5),
    ((1, 1, 512, 512), (1, 1, 15, 15), 1, 7), ((1, 1, 512, 512), (1, 1, 31, 31), 1, 15),
    ((1, 1, 1024, 1024), (1, 1, 3, 3), 1, 1), ((1, 1, 1024, 1024), (1, 1, 15, 15), 1, 7),
    ((4, 1, 128, 128), (4, 1, 7, 7), 1, 3), ((1, 3, 256, 256), (3, 3, 15, 15), 1, 7),
    ((8, 16, 1000), (32, 16, 3), 1, 1), ((4, 8, 4000), (8, 8, 31), 1, 15), ((1, 1, 100000), (1, 1, 9), 1, 4),
    ((2, 8, 16, 16, 16), (8, 8, 3, 3, 3), 1, 1), ((1, 4, 32, 32, 32), (4, 4, 5, 5, 5), 1, 2),
]

# A few small shapes that still give every algorithm several rows (convlab tune --quick).
QUICK_GRID = [
    ((1, 8, 16, 16), (8, 8, 3, 3), 1, 1), ((2, 4, 12, 12), (4, 4, 3, 3), 1, 1), ((1, 16, 8, 8), (16, 16, 3, 3), 1, 1),
    ((1, 1, 64, 64), (1, 1, 3, 3), 1, 1), ((1, 1, 64, 64), (1, 1, 9, 9), 1, 4), ((1, 4, 20, 20), (8, 4, 5, 5), 2, 2),
    ((2, 8, 100), (8, 8, 3), 1, 1), ((1, 2, 8, 8, 8), (2, 2, 3, 3, 3), 1, 1),
]

SLOW = 0.5  # seconds: a run this slow is timed once


def _grid_args(entry):
    x_shape, w_shape, stride, padding = entry[:4]
    groups = entry[4] if len(entry) > 4 else 1
    return _params.conv_shape_args(x_shape, w_shape, stride, padding, 1, groups, len(x_shape) - 2)


def measure(dtype, repeat, log, grid=GRID):
    """``[(args, {algorithm: seconds})]`` over the grid; separable runs on rank-1 kernels."""
    rng = np.random.default_rng(0)
    rows = []
    for entry in grid:
        x_shape, w_shape, stride = entry[:3]
        args = _grid_args(entry)
        times = {}
        for name in _cost.FEATURES:
            if conv_module.ALGORITHMS[name].supports(args):
                continue
            x, w = (a.astype(dtype) for a in Case(name, x_shape, w_shape, rank_one=name == "separable").operands(rng))
            # what "auto" runs: prepare (the FFT's guard, the SVD) and the forward pass
            run = lambda: conv_module._prepare(name, args, x, w).forward(x, w)  # noqa: E731
            times[name] = time_runs(run, repeat, slow=SLOW).min
        rows.append((args, times))
        log(f"{np.dtype(dtype).name} {x_shape} {w_shape} s={stride} " +
            " ".join(f"{k} {v * 1e3:.2f}ms" for k, v in times.items()))
    return rows


def fit(rows, name, dtype):
    """Non-negative constants minimising the squared relative error of ``name``'s times."""
    data = [(_cost.features(name, args, dtype), t[name]) for args, t in rows if name in t]
    a = np.array([[f / sec for f in feats] for feats, sec in data])
    scale = a.max(axis=0)
    scale[scale == 0] = 1.0
    import scipy.optimize

    theta, _ = scipy.optimize.nnls(a / scale, np.ones(len(data)))
    return [float(v) for v in theta / scale]


def report(rows, constants, dtype, log, verbose=False):
    """Prediction errors and how often the predicted best is within 1.25x of the measured best."""
    good = 0
    if verbose:
        for args, t in rows:
            pred = {n: sum(c * f for c, f in zip(constants[n], _cost.features(n, args, dtype))) for n in t}
            log(f"{dtype} N={args.batch} C={args.in_channels} K={args.out_channels} {args.geom.in_size} "
                f"k={args.geom.kernel} s={args.geom.stride}: " +
                " ".join(f"{n} {t[n] * 1e3:.2f}/{pred[n] * 1e3:.2f}" for n in t))
    for name in _cost.FEATURES:
        errs = [abs(sum(c * f for c, f in zip(constants[name], _cost.features(name, args, dtype))) / t[name] - 1)
                for args, t in rows if name in t]
        log(f"{dtype} {name:9s} relative error median {np.median(errs):.2f} max {max(errs):.2f}")
    for args, t in rows:
        pred = {n: sum(c * f for c, f in zip(constants[n], _cost.features(n, args, dtype))) for n in t if n != "separable"}
        best = min(pred, key=pred.get)
        measured = {n: v for n, v in t.items() if n != "separable"}
        good += measured[best] <= 1.25 * min(measured.values())
    log(f"{dtype}: predicted choice within 1.25x of the fastest on {good}/{len(rows)} shapes")


def _cpu_name():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine():
    """The CPU's name, its core count and today's date: where and when a fit was made."""
    return f"{_cpu_name()}, {os.cpu_count()} cores, {datetime.date.today()}"


def run(repeat=3, log=print, grid=GRID, verbose=False, measured=None):
    """``(constants, times)``: the fitted constants per dtype and algorithm, and the times
    measured (or given in ``measured``, one list of ``{algorithm: seconds}`` per grid entry)."""
    constants, times = {}, {}
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        if measured:
            rows = [(_grid_args(entry), t) for entry, t in zip(grid, measured[name])]
        else:
            rows = measure(dtype, repeat, log, grid)
        times[name] = [t for _, t in rows]
        constants[name] = {algo: fit(rows, algo, name) for algo in _cost.FEATURES}
        report(rows, constants[name], name, log, verbose)
    return constants, times
