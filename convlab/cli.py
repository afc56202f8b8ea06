"""``convlab bench``: time each algorithm and the peers (SciPy, PyTorch) on a default
workload, check every result against the reference, mark what "auto" chooses, and
optionally plot time against kernel size on a single-channel image. Cases, timing and
peers come from :mod:`convlab._harness`, shared with the benchmark suites."""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

from . import conv as _conv
from ._harness import PEERS, Case, candidates, time_runs

DEFAULT_CASES = [
    Case("resnet 3x3 64@56 (N=1)", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    Case("resnet 3x3 256@14 (N=4)", (4, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    Case("resnet 1x1 256->64@56 (N=1)", (1, 256, 56, 56), (64, 256, 1, 1), {}),
    Case("stem 7x7/2 3->64@112 (N=1)", (1, 3, 112, 112), (64, 3, 7, 7), dict(stride=2, padding=3)),
    Case("depthwise 3x3 64@56 (N=1)", (1, 64, 56, 56), (64, 1, 3, 3), dict(padding=1, groups=64)),
    Case("large 9x9 16->32@64", (1, 16, 64, 64), (32, 16, 9, 9), {}),
    Case("image 1@256 k=9", (1, 1, 256, 256), (1, 1, 9, 9), dict(padding="same")),
    Case("image 1@512 k=15 rank-1", (1, 1, 512, 512), (1, 1, 15, 15), dict(padding="same"), rank_one=True),
    Case("tiny 4->8@9 (naive shown)", (2, 4, 9, 9), (8, 4, 3, 3), dict(padding=1)),
]

# The loop oracle is only timed where it finishes in about a second.
NAIVE_MAX_MACS = 2e5
# The plot: a single-channel image and rank-1 kernels of these sizes (every algorithm runs).
PLOT_IMAGE = 512
PLOT_KERNELS = (3, 5, 7, 9, 11, 15, 21, 31)


def _contenders(case, x, w, conv):
    """``(name, callable)`` for every algorithm that can serve the case (the registry's own
    answer), the loop oracle only on tiny layers, then the peers."""
    for algo in candidates(case, x, w):
        if algo != "naive" or case.macs <= NAIVE_MAX_MACS:
            yield algo, (lambda algo=algo: conv(x, w, algorithm=algo, **case.params))
    for name, make in PEERS.items():
        run = make(case, x, w)
        if run is not None:
            yield name, run


def run_bench(cases=DEFAULT_CASES, dtype=np.float32, repeat=3, out=sys.stdout):
    """Time every algorithm and peer on each case; return the rows printed."""
    fn = {1: _conv.conv1d, 2: _conv.conv2d, 3: _conv.conv3d}
    rng = np.random.default_rng(0)
    rows = []
    header = (f"{'layer':<30} {'algorithm':<10} {'time ms':>9} {'median':>8} {'max':>8} {'GFLOP/s':>8} "
              f"{'max rel err':>11}")
    print(f"Convolution forward, {np.dtype(dtype).name}, best of {repeat} runs", file=out)
    print(header, file=out)
    print("-" * len(header), file=out)
    for case in cases:
        conv = fn[case.nd]
        x64, w64 = case.operands(rng)
        ref = conv(x64, w64, algorithm="direct", **case.params)
        scale = float(np.abs(ref).max()) or 1.0
        x, w = x64.astype(dtype), w64.astype(dtype)
        chosen = _conv._choose(case.args, x, w).algorithm
        flops = 2.0 * case.macs
        for name, run in _contenders(case, x, w, conv):
            err = float(np.abs(np.asarray(run(), dtype=np.float64) - ref).max()) / scale
            t = time_runs(run, 1 if name == "naive" else repeat, warmup=False)
            mark = "*" if name == chosen else " "
            rows.append(dict(layer=case.name, algorithm=name, seconds=t.min, median=t.median, max=t.max,
                             gflops=flops / t.min / 1e9, error=err, chosen=name == chosen))
            print(f"{case.name:<30} {name + mark:<10} {t.min * 1e3:9.2f} {t.median * 1e3:8.2f} {t.max * 1e3:8.2f} "
                  f"{flops / t.min / 1e9:8.2f} {err:11.2e}", file=out)
    print("\n* = the algorithm 'auto' chooses. Errors are relative to the largest output of the "
          "float64 direct reference; scipy and torch are peers, not convlab algorithms.", file=out)
    return rows


# ----------------------------------------------------------------------------- pooling

POOL_SHAPE = (8, 64, 112, 112)


def _pool_cases():
    """``(name, forward(x), backward(g, x), torch peer(F, t) or None)`` for the pooling table."""
    from . import pool as p

    k = dict(kernel_size=3, stride=2, padding=1)
    return [
        ("max_pool2d 3x3/2 pad 1", lambda x: p.max_pool2d(x, **k), lambda g, x: p.max_pool2d_backward(g, x, **k),
         lambda F, t: F.max_pool2d(t, **k)),
        ("avg_pool2d 3x3/2 pad 1", lambda x: p.avg_pool2d(x, **k), lambda g, x: p.avg_pool2d_backward(g, x, **k),
         lambda F, t: F.avg_pool2d(t, **k)),
        ("lp_pool2d p=2 3x3/2", lambda x: p.lp_pool2d(x, 2, 3, 2), lambda g, x: p.lp_pool2d_backward(g, x, 2, 3, 2),
         lambda F, t: F.lp_pool2d(t, 2, 3, 2)),
        ("adaptive_max_pool2d ->7x7", lambda x: p.adaptive_max_pool2d(x, 7),
         lambda g, x: p.adaptive_max_pool2d_backward(g, x, 7), lambda F, t: F.adaptive_max_pool2d(t, 7)),
        ("adaptive_avg_pool2d ->7x7", lambda x: p.adaptive_avg_pool2d(x, 7),
         lambda g, x: p.adaptive_avg_pool2d_backward(g, x, 7), lambda F, t: F.adaptive_avg_pool2d(t, 7)),
        ("maxout pieces=2", lambda x: p.maxout(x, 2), lambda g, x: p.maxout_backward(g, x, 2),
         lambda F, t: t.reshape(t.shape[0], -1, 2, *t.shape[2:]).amax(dim=2)),
    ]


def run_pool_bench(shape=POOL_SHAPE, dtype=np.float32, repeat=3, out=sys.stdout):
    """Time each pooling op forward and backward (and PyTorch's forward on the CPU, when installed)
    on one ``(N, C, H, W)`` input, each checked against convlab's float64 result; return the rows.
    GB/s counts every operand read or written once: ``x`` and ``y`` forward, ``g``, ``x`` and
    ``grad_x`` backward."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:  # PyTorch is an optional peer
        torch = None
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(dtype)
    x64 = x.astype(np.float64)  # the same values: float32 rounding must not move a maximum
    rows = []
    header = (f"{'pooling op':<30} {'pass':<8} {'impl':<8} {'time ms':>9} {'median':>8} {'max':>8} {'GB/s':>8} "
              f"{'max rel err':>11}")
    print(f"\nPooling on x {tuple(shape)} {np.dtype(dtype).name}, best of {repeat} runs", file=out)
    print(header, file=out)
    print("-" * len(header), file=out)

    def row(name, direction, impl, fn, ref, nbytes):
        got = fn()
        err = float(np.abs(np.asarray(got, dtype=np.float64) - ref).max()) / (float(np.abs(ref).max()) or 1.0)
        t = time_runs(fn, repeat, warmup=False)
        rows.append(dict(op=name, direction=direction, impl=impl, seconds=t.min, median=t.median, max=t.max,
                         gbps=nbytes / t.min / 1e9, error=err))
        print(f"{name:<30} {direction:<8} {impl:<8} {t.min * 1e3:9.2f} {t.median * 1e3:8.2f} {t.max * 1e3:8.2f} "
              f"{nbytes / t.min / 1e9:8.2f} {err:11.2e}", file=out)

    for name, forward, backward, peer in _pool_cases():
        y64 = forward(x64)
        g = rng.standard_normal(y64.shape).astype(dtype)
        g64 = g.astype(np.float64)
        fwd_bytes = (x.size + y64.size) * x.itemsize
        row(name, "forward", "convlab", lambda: forward(x), y64, fwd_bytes)
        if torch is not None:
            t = torch.from_numpy(x)
            row(name, "forward", "torch", lambda: peer(F, t).numpy(), y64, fwd_bytes)
        row(name, "backward", "convlab", lambda: backward(g, x), backward(g64, x64),
            (g.size + 2 * x.size) * x.itemsize)
    print("\nErrors are relative to the largest value of convlab's float64 result."
          + ("" if torch is not None else " PyTorch is not installed: no peer rows."), file=out)
    return rows


def kernel_sweep(size=PLOT_IMAGE, kernels=PLOT_KERNELS, dtype=np.float32, repeat=2):
    """``{name: [seconds per kernel size]}`` on a ``size``-square single-channel image with rank-1
    kernels, for every algorithm but the loop oracle and every peer (NaN where one cannot run)."""
    rng = np.random.default_rng(1)
    times = {}
    for i, k in enumerate(kernels):
        case = Case(f"image k={k}", (1, 1, size, size), (1, 1, k, k), dict(padding="same"), rank_one=True)
        x64, w64 = case.operands(rng)
        x, w = x64.astype(dtype), w64.astype(dtype)
        for name, run in _contenders(case, x, w, _conv.conv2d):
            if name != "naive":
                times.setdefault(name, [math.nan] * len(kernels))[i] = time_runs(run, repeat, warmup=False).min
    return times


def plot_sweep(times, kernels, path, size=PLOT_IMAGE):
    """Draw time against kernel size, one line per algorithm (log time axis), into ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, series in times.items():
        style = "--" if name in PEERS else "-"
        ax.plot(kernels, [t * 1e3 for t in series], style, marker="o", label=name)
    ax.set_yscale("log")
    ax.set_xlabel("kernel size k (k x k, rank-1)")
    ax.set_ylabel("time (ms)")
    ax.set_title(f"conv2d, one {size}x{size} channel, float32")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_experiment(parser, args):
    from . import experiments

    if args.list:
        for name, summary in experiments.summaries().items():
            print(f"{name:24s} {summary}")
        return 0
    if not args.name:
        parser.error("experiment needs a NAME (or --list)")
    if args.name not in experiments.EXPERIMENTS:
        parser.error(f"unknown experiment {args.name!r}; choose from {', '.join(sorted(experiments.EXPERIMENTS))}")
    record = experiments.run(args.name, quick=args.quick, out=args.out, seed=args.seed)
    out = args.out or f"results/{args.name}{'-quick' if args.quick else ''}"
    print(f"{args.name}: done in {record['seconds']} s; results in {out}/results.json")
    return 0


BENCH_HELP = """\
Times every convolution algorithm that can serve each layer of a default workload, and
the peers (SciPy, PyTorch on the CPU, when installed), then the pooling ops.

Columns of the convolution table:
  layer        the layer's name: shapes, kernel, stride (N = batch)
  algorithm    a convlab algorithm (naive, direct, im2col, fft, separable, winograd) or a
               peer (scipy, torch); * marks the one algorithm="auto" chooses
  time ms      the best of --repeat timed runs (one for naive), in milliseconds;
  median, max  the median and the slowest of those runs (their spread)
  GFLOP/s      2 * multiply-adds of the convolution / time
  max rel err  largest difference from the float64 direct result, over its largest value

Columns of the pooling table: the op, forward or backward pass, convlab or torch, time
(best of --repeat; median and max), GB/s (each operand read or written once / time) and the error
against convlab's float64 result."""


def main(argv=None):
    from . import __version__

    parser = argparse.ArgumentParser(prog="convlab", description="convlab: convolution engine tools")
    parser.add_argument("--version", action="version", version=f"convlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="time each algorithm on the default workload",
                           description=BENCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="dtype of the operands of every row (default: float32)")
    bench.add_argument("--repeat", type=int, default=3, help="timed runs per algorithm (best is shown)")
    bench.add_argument("--plot", metavar="FILE.png",
                       help="also plot time against kernel size on a single-channel image (needs matplotlib)")
    exp = sub.add_parser("experiment", help="run an experiment on convlab.nn (--list names them)")
    exp.add_argument("name", nargs="?", help="the experiment to run")
    exp.add_argument("--list", action="store_true", help="list the experiments and exit")
    exp.add_argument("--quick", action="store_true", help="a small run (under a minute), as CI runs it")
    exp.add_argument("--out", metavar="DIR", help="where results.json and the figures go "
                                                  "(default results/NAME[-quick])")
    exp.add_argument("--seed", type=int, default=0)
    tune = sub.add_parser("tune", help="refit the cost model behind algorithm='auto' on this machine",
                          description="Times every algorithm the cost model covers on a grid of convolutions "
                                      "(a few minutes on 2 cores), fits the model's constants and saves them "
                                      "where algorithm='auto' finds them.")
    tune.add_argument("--repeat", type=int, default=3, help="timed runs per algorithm and shape (best is used)")
    tune.add_argument("--quick", action="store_true", help="a small grid: seconds, a rough fit")
    tune.add_argument("--out", metavar="FILE.json",
                      help="where to save the constants (default: $CONVLAB_COST_CONSTANTS or "
                           "~/.cache/convlab/cost_constants.json, where 'auto' looks)")
    tune.add_argument("--dry-run", action="store_true", help="report the fit, save nothing")
    args = parser.parse_args(argv)
    if args.command == "experiment":
        return run_experiment(parser, args)
    if args.command == "tune":
        from . import _cost, _tune

        table, _ = _tune.run(max(1, args.repeat), grid=_tune.QUICK_GRID if args.quick else _tune.GRID)
        if not args.dry_run:
            path = _cost.save(table, _tune.machine(), args.out)
            print(f"saved {path}" + ("" if args.out is None or path == _cost.user_path() else
                                     f" (set CONVLAB_COST_CONSTANTS={path} for 'auto' to use it)"))
    if args.command == "bench":
        if args.plot:
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                parser.error("--plot needs matplotlib: pip install 'convlab[plot]'")
        dtype = np.dtype(args.dtype)
        run_bench(dtype=dtype, repeat=max(1, args.repeat))
        run_pool_bench(dtype=dtype, repeat=max(1, args.repeat))
        if args.plot:
            times = kernel_sweep(dtype=dtype)
            plot_sweep(times, PLOT_KERNELS, args.plot)
            print(f"\nwrote {args.plot}: time against kernel size on a {PLOT_IMAGE}x{PLOT_IMAGE} image")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
