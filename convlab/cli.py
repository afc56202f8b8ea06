"""``convlab bench``: time each algorithm on a default workload and check it against the reference."""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from . import conv as _conv


@dataclass
class Case:
    """One benchmark row: a layer, its floating-point work, and how to run it."""

    name: str
    x_shape: tuple
    w_shape: tuple
    params: dict

    @property
    def nd(self):
        return len(self.x_shape) - 2

    def flops(self, out_shape):
        # two flops (multiply + add) per weight per output position
        k, cg = self.w_shape[0], self.w_shape[1]
        return 2.0 * math.prod(out_shape) * cg * math.prod(self.w_shape[2:]) if k else 0.0


DEFAULT_CASES = [
    Case("resnet 3x3 64@56 (N=1)", (1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1)),
    Case("resnet 3x3 256@14 (N=4)", (4, 256, 14, 14), (256, 256, 3, 3), dict(padding=1)),
    Case("resnet 1x1 256->64@56 (N=1)", (1, 256, 56, 56), (64, 256, 1, 1), {}),
    Case("stem 7x7/2 3->64@112 (N=1)", (1, 3, 112, 112), (64, 3, 7, 7), dict(stride=2, padding=3)),
    Case("depthwise 3x3 64@56 (N=1)", (1, 64, 56, 56), (64, 1, 3, 3), dict(padding=1, groups=64)),
    Case("image 1@256 k=9", (1, 1, 256, 256), (1, 1, 9, 9), dict(padding="same")),
    Case("tiny 4->8@9 (naive shown)", (2, 4, 9, 9), (8, 4, 3, 3), dict(padding=1)),
]

# The loop oracle is only timed where it finishes in about a second.
NAIVE_MAX_MACS = 2e5


def _best_time(fn, repeat):
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_bench(cases=DEFAULT_CASES, dtype=np.float32, repeat=3, out=sys.stdout):
    """Time every available algorithm on each case; return the rows printed."""
    fn = {1: _conv.conv1d, 2: _conv.conv2d, 3: _conv.conv3d}
    rng = np.random.default_rng(0)
    rows = []
    header = f"{'layer':<30} {'algorithm':<10} {'time ms':>9} {'GFLOP/s':>8} {'max rel err':>11}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for case in cases:
        conv = fn[case.nd]
        x64 = rng.standard_normal(case.x_shape)
        w64 = rng.standard_normal(case.w_shape) / math.sqrt(math.prod(case.w_shape[1:]))
        ref = conv(x64, w64, algorithm="direct", **case.params)
        scale = float(np.abs(ref).max()) or 1.0
        x, w = x64.astype(dtype), w64.astype(dtype)
        chosen = _conv.choose_algorithm(case.x_shape, case.w_shape, groups=case.params.get("groups", 1),
                                        **{k: v for k, v in case.params.items() if k != "groups"}).algorithm
        flops = case.flops(ref.shape)
        for algo, module in _conv.ALGORITHMS.items():
            if getattr(module, "DEVICE", "cpu") != "cpu" or (algo == "naive" and flops / 2 > NAIVE_MAX_MACS):
                continue
            y = conv(x, w, algorithm=algo, **case.params)
            err = float(np.abs(y - ref).max()) / scale
            t = _best_time(lambda: conv(x, w, algorithm=algo, **case.params), 1 if algo == "naive" else repeat)
            mark = "*" if algo == chosen else " "
            rows.append(dict(layer=case.name, algorithm=algo, seconds=t, gflops=flops / t / 1e9, error=err,
                             chosen=algo == chosen))
            print(f"{case.name:<30} {algo + mark:<10} {t * 1e3:9.2f} {flops / t / 1e9:8.2f} {err:11.2e}",
                  file=out)
    print("\n* = the algorithm 'auto' chooses. Errors are relative to the largest output of the "
          "float64 direct reference.", file=out)
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
    header = f"{'pooling op':<30} {'pass':<8} {'impl':<8} {'time ms':>9} {'GB/s':>8} {'max rel err':>11}"
    print(f"\nPooling on x {tuple(shape)} {np.dtype(dtype).name}", file=out)
    print(header, file=out)
    print("-" * len(header), file=out)

    def row(name, direction, impl, fn, ref, nbytes):
        got = fn()
        err = float(np.abs(np.asarray(got, dtype=np.float64) - ref).max()) / (float(np.abs(ref).max()) or 1.0)
        t = _best_time(fn, repeat)
        rows.append(dict(op=name, direction=direction, impl=impl, seconds=t, gbps=nbytes / t / 1e9, error=err))
        print(f"{name:<30} {direction:<8} {impl:<8} {t * 1e3:9.2f} {nbytes / t / 1e9:8.2f} {err:11.2e}", file=out)

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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="convlab", description="convlab: convolution engine tools")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="time each algorithm on the default workload")
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    bench.add_argument("--repeat", type=int, default=3, help="timed runs per algorithm (best is shown)")
    args = parser.parse_args(argv)
    if args.command == "bench":
        run_bench(dtype=np.dtype(args.dtype), repeat=max(1, args.repeat))
        run_pool_bench(dtype=np.dtype(args.dtype), repeat=max(1, args.repeat))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
