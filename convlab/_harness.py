"""The benchmark harness shared by ``convlab bench``, the pytest-benchmark suites in
benchmarks/ and the cost-model fit: cases, operands, settle-then-time with the spread of
the repeats, the registry's candidates, and the peers (SciPy, PyTorch on the CPU)."""
from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

from . import _params

# Idle library threads (OpenMP's in torch, OpenBLAS's) spin for a while after a call and
# would slow down the next contender on a small machine: each one starts after this pause.
SETTLE_SECONDS = 0.05


@dataclass(frozen=True)
class Case:
    """One convolution to time: shapes, parameters, and whether its kernel is rank-1."""

    name: str
    x_shape: tuple
    w_shape: tuple
    params: dict = field(default_factory=dict)
    rank_one: bool = False   # a separable kernel, so that "separable" runs too
    backward: bool = False   # the pytest suites also time its backward pass

    @property
    def nd(self) -> int:
        return len(self.x_shape) - 2

    @property
    def args(self):
        p = self.params
        return _params.conv_shape_args(self.x_shape, self.w_shape, p.get("stride", 1), p.get("padding", 0),
                                       p.get("dilation", 1), p.get("groups", 1), self.nd)

    @property
    def macs(self) -> int:
        """Multiply-adds of the forward pass: one per weight per output position."""
        a = self.args
        return a.batch * a.out_channels * math.prod(a.geom.out_size) * math.prod(self.w_shape[1:])

    @property
    def single_channel(self) -> bool:
        return self.x_shape[:2] == (1, 1) and self.w_shape[0] == 1

    def operands(self, rng):
        """float64 ``x`` and ``w`` (scaled so that outputs are O(1)); ``w`` rank-1 per slice
        when ``rank_one``."""
        x = rng.standard_normal(self.x_shape)
        if self.rank_one:
            w = np.ones(self.w_shape)
            for a, k in enumerate(self.w_shape[2:]):
                w = w * rng.standard_normal(self.w_shape[:2] + (1,) * a + (k,) + (1,) * (self.nd - 1 - a))
        else:
            w = rng.standard_normal(self.w_shape)
        return x, w / math.sqrt(math.prod(self.w_shape[1:]))


@dataclass(frozen=True)
class Timing:
    """Seconds of the timed runs: the best (what tables report), the median and the worst."""

    min: float
    median: float
    max: float


def settle(seconds=SETTLE_SECONDS):
    time.sleep(seconds)


def time_runs(fn, repeat, slow=math.inf, warmup=True) -> Timing:
    """Settle, run ``fn`` once untimed (``warmup``), then time up to ``repeat`` runs,
    stopping early once a run takes longer than ``slow`` seconds."""
    settle()
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if times[-1] > slow:
            break
    return Timing(min(times), statistics.median(times), max(times))


def candidates(case, x, w):
    """``name`` of every algorithm of the registry that can serve the case's operands (its
    own ``prepare``, not handing them to another)."""
    from . import conv

    args = case.args
    for name, module in conv.ALGORITHMS.items():
        prepared = module.prepare(x, w, args)
        if not isinstance(prepared, str) and prepared.name == name:
            yield name


# ----------------------------------------------------------------------------- peers

def scipy_peer(case, x, w):
    """``scipy.signal.correlate`` (its own choice of direct or FFT) on single-channel,
    stride-1, dilation-1 layers, else None."""
    args = case.args
    if not case.single_channel or any(s != 1 for s in args.geom.stride) or any(d != 1 for d in args.geom.dilation):
        return None
    import scipy.signal

    img, ker = np.pad(x[0, 0], args.geom.pad), w[0, 0]
    return lambda: scipy.signal.correlate(img, ker, mode="valid")[None, None]


def torch_peer(case, x, w):
    """PyTorch's CPU convolution on all cores, when torch is installed, else None. The input
    is padded with ``F.pad`` and convolved without padding: on single-channel images torch's
    own ``padding=`` takes a path about 15x slower (torch 2.13, 2 cores), on the other
    layers the two are within noise."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(os.cpu_count() or 1)
    args = case.args
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[case.nd]
    flat = [v for lo_hi in reversed(args.geom.pad) for v in lo_hi]
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)

    def run():
        with torch.no_grad():
            return fn(F.pad(xt, flat), wt, stride=args.geom.stride, dilation=args.geom.dilation,
                      groups=args.groups).numpy()
    return run


PEERS = {"scipy": scipy_peer, "torch": torch_peer}
