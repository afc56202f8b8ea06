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
        for algo in _conv.ALGORITHMS:
            if algo == "naive" and flops / 2 > NAIVE_MAX_MACS:
                continue
            try:
                conv(x, w, algorithm=algo, **case.params)
            except ValueError:  # the algorithm cannot serve this layer (e.g. winograd for 7x7)
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


def main(argv=None):
    parser = argparse.ArgumentParser(prog="convlab", description="convlab: convolution engine tools")
    sub = parser.add_subparsers(dest="command", required=True)
    bench = sub.add_parser("bench", help="time each algorithm on the default workload")
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    bench.add_argument("--repeat", type=int, default=3, help="timed runs per algorithm (best is shown)")
    args = parser.parse_args(argv)
    if args.command == "bench":
        run_bench(dtype=np.dtype(args.dtype), repeat=max(1, args.repeat))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
