"""Differential fuzz: random ops, parameters, dtypes, layouts, non-finite cells and empty
batches, against the loop oracles and, when it is installed, PyTorch (CPU).

    python tests/fuzz.py --cases 5000 --seed 1       # many cases by hand
    python tests/fuzz.py --seed 1 --case 417         # one case again, with its description

Case ``i`` of seed ``s`` draws from ``numpy.random.default_rng([s, i])``, so every case
can be rerun alone. Each case runs one op family forward and backward:

- ``conv``: ``conv{nd}d`` and its backward with a random algorithm, against the loop
  oracle (:mod:`convlab.reference.naive`, float64) and ``torch.nn.functional.conv{nd}d``;
- ``transpose``: ``conv_transpose{nd}d`` and its backward, against the loop oracle (the
  adjoint's passes) and PyTorch's (symmetric padding only);
- ``pool``: max, average, Lp and adaptive pools, against the loops of tests/test_pool.py
  and PyTorch (not Lp, whose definition differs, docs/pooling.md).

Results must agree exactly in where they are NaN, +inf and -inf, and closely elsewhere.
``tests/test_fuzz.py`` runs a fixed seed's first cases in CI.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

import numpy as np

if __name__ == "__main__":  # run by hand from a checkout: this checkout's convlab
    sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import convlab  # noqa: E402
from convlab import _params as P  # noqa: E402
from oracles import transpose_params  # noqa: E402
from convlab.reference import naive  # noqa: E402

ALGORITHMS = ("naive", "direct", "im2col", "fft", "separable", "winograd", "auto")
POOLS = ("max_pool", "avg_pool", "lp_pool", "adaptive_max_pool", "adaptive_avg_pool")
BAD = (np.nan, np.inf, -np.inf)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# ----------------------------------------------------------------------------- drawing a case

def _layout(a, rng):
    """``a``'s values in a random memory layout: contiguous, strided, reversed or transposed."""
    kind = rng.choice(["contiguous", "strided", "reversed", "transposed"])
    if kind == "strided" and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        big[..., ::2] = a
        return big[..., ::2], kind
    if kind == "reversed" and a.ndim:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1], kind
    if kind == "transposed" and a.ndim >= 2:
        return np.ascontiguousarray(a.swapaxes(0, 1)).swapaxes(0, 1), kind
    return a, "contiguous"


def _spoil(arrays, rng):
    """Put NaN or +-inf in one or two random cells of one or two operands (none, half the time)."""
    spoilt = []
    names = sorted(k for k, a in arrays.items() if a.size)
    if names and rng.random() < 0.5:
        for _ in range(1 + (rng.random() < 0.2)):
            name = rng.choice(names)
            a = arrays[name]
            index = tuple(int(rng.integers(s)) for s in a.shape)
            bad = BAD[int(rng.integers(3))]
            a[index] = bad
            spoilt.append((name, index, float(bad)))
    return spoilt


def _conv_params(rng, nd):
    groups = int(rng.integers(1, 3))
    c, k = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    batch = 0 if rng.random() < 0.05 else int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 4, nd))
    dilation = tuple(int(v) for v in rng.integers(1, 3, nd))
    stride = tuple(int(v) for v in rng.integers(1, 4, nd))
    pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(nd))
    max_n = {1: 9, 2: 6, 3: 4}[nd]
    sizes = tuple(max(1, d * (kk - 1) + 1 - lo - hi) + int(rng.integers(0, max_n))
                  for kk, d, (lo, hi) in zip(kernel, dilation, pads))
    form = rng.choice(["pairs", "ints", "same", "full"])
    padding = {"pairs": pads, "ints": tuple(lo for lo, _ in pads), "same": "same", "full": "full"}[form]
    if form == "ints":
        sizes = tuple(max(s, d * (kk - 1) + 1) for s, kk, d in zip(sizes, kernel, dilation))
    params = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (batch, c) + sizes, (k, c // groups) + kernel, params


def draw(seed, index):
    """Case ``index`` of ``seed``: a dict with the op, its operands (in their layouts), its
    parameters and what was spoilt."""
    rng = np.random.default_rng([seed, index])
    family = rng.choice(["conv", "conv", "transpose", "pool"])
    nd = int(rng.integers(1, 4))
    dtype = np.dtype(rng.choice([np.float64, np.float32]))
    case = dict(seed=seed, index=index, family=str(family), nd=nd, dtype=dtype.name)
    if family in ("conv", "transpose"):
        x_shape, w_shape, params = _conv_params(rng, nd)
        args = P.conv_shape_args(x_shape, w_shape, params["stride"], params["padding"], params["dilation"],
                                 params["groups"], nd)
        rank_one = rng.random() < 0.3
        w = rng.standard_normal(w_shape)
        if rank_one:  # a separable kernel, so that algorithm="separable" serves it
            w = np.ones(w_shape)
            for a, k in enumerate(w_shape[2:]):
                w = w * rng.standard_normal(w_shape[:2] + (1,) * a + (k,) + (1,) * (nd - 1 - a))
        arrays = dict(x=rng.standard_normal(x_shape), w=w,
                      gy=rng.standard_normal((args.batch, args.out_channels) + args.geom.out_size))
        case.update(params=params, args=args, algorithm=str(rng.choice(ALGORITHMS)))
    else:
        op = str(rng.choice(POOLS))
        batch = 0 if rng.random() < 0.05 else int(rng.integers(1, 3))
        shape = (batch, int(rng.integers(1, 3))) + tuple(int(v) for v in rng.integers(1, 7, nd))
        if op.startswith("adaptive"):
            params = dict(output_size=tuple(int(v) for v in rng.integers(1, 5, nd)))
        else:
            kernel = tuple(int(rng.integers(1, min(4, n + 1) + 1)) for n in shape[2:])
            pads = tuple(int(rng.integers(0, k // 2 + 1)) for k in kernel)
            params = dict(kernel_size=kernel, stride=tuple(int(v) for v in rng.integers(1, 4, nd)), padding=pads,
                          ceil_mode=bool(rng.random() < 0.5))
            if op == "max_pool":
                params["dilation"] = tuple(int(v) for v in rng.integers(1, 3, nd))
            if op == "lp_pool":
                params["p"] = float(rng.choice([1.0, 2.0, 3.5]))
            if op == "avg_pool":
                params["count_include_pad"] = bool(rng.random() < 0.5)
        x = rng.uniform(0.5, 1.5, shape) * rng.choice([-1.0, 1.0], shape)
        arrays = dict(x=x)
        case.update(op=op, params=params)
    case["spoilt"] = _spoil(arrays, rng)
    case["layouts"] = {}
    for name, a in arrays.items():
        arrays[name], case["layouts"][name] = _layout(a.astype(dtype), rng)
    case["arrays"] = arrays
    return case, rng


def describe(case):
    keep = ("seed", "index", "family", "op", "algorithm", "nd", "dtype", "params", "spoilt", "layouts")
    shapes = {k: tuple(a.shape) for k, a in case["arrays"].items()}
    return ", ".join(f"{k}={case[k]!r}" for k in keep if k in case) + f", shapes={shapes}"


# ----------------------------------------------------------------------------- oracles

def _conv_oracle(case):
    """Loop oracle in float64: (y, grad_x, grad_w) of conv, or of conv_transpose (whose
    forward is the conv's grad_x, whose grad_x is the conv's forward)."""
    a = {k: v.astype(np.float64) for k, v in case["arrays"].items()}
    args = case["args"]
    with np.errstate(invalid="ignore", over="ignore"):
        if case["family"] == "conv":
            return (naive.forward(a["x"], a["w"], args), naive.grad_input(a["gy"], a["w"], args),
                    naive.grad_weight(a["gy"], a["x"], args))
        # transpose: input u = gy (N, K, *out), output gradient = x (N, C, *n)
        return (naive.grad_input(a["gy"], a["w"], args), naive.forward(a["x"], a["w"], args),
                naive.grad_weight(a["gy"], a["x"], args))


def _conv_ours(case):
    a, nd, algorithm = case["arrays"], case["nd"], case["algorithm"]
    with np.errstate(invalid="ignore", over="ignore"):
        if case["family"] == "conv":
            p = case["params"]
            y = getattr(convlab, f"conv{nd}d")(a["x"], a["w"], algorithm=algorithm, **p)
            gx, gw, _ = getattr(convlab, f"conv{nd}d_backward")(a["gy"], a["x"], a["w"], algorithm=algorithm, **p)
            return y, gx, gw
        p = transpose_params(case["args"])
        y = getattr(convlab, f"conv_transpose{nd}d")(a["gy"], a["w"], algorithm=algorithm, **p)
        gu, gw, _ = getattr(convlab, f"conv_transpose{nd}d_backward")(a["x"], a["gy"], a["w"], algorithm=algorithm,
                                                                      **p)
        return y, gu, gw


def _conv_torch(case, torch):
    F = torch.nn.functional
    a = {k: torch.tensor(v.astype(np.float64), requires_grad=True) for k, v in case["arrays"].items()}
    g, nd = case["args"].geom, case["nd"]
    if case["family"] == "conv":
        flat = [v for lo_hi in reversed(g.pad) for v in lo_hi]
        y = getattr(F, f"conv{nd}d")(F.pad(a["x"], flat), a["w"], stride=g.stride, dilation=g.dilation,
                                     groups=case["args"].groups)
        y.backward(a["gy"].detach())
        return y.detach().numpy(), a["x"].grad.numpy(), a["w"].grad.numpy()
    if any(lo != hi for lo, hi in g.pad):
        return None  # torch's conv_transpose takes symmetric padding only
    p = transpose_params(case["args"])
    y = getattr(F, f"conv_transpose{nd}d")(a["gy"], a["w"], stride=g.stride, padding=tuple(lo for lo, _ in g.pad),
                                           output_padding=p["output_padding"], groups=p["groups"], dilation=g.dilation)
    y.backward(a["x"].detach())
    return y.detach().numpy(), a["gy"].grad.numpy(), a["w"].grad.numpy()


def _pool_ours(case, gy):
    x, nd, op, p = case["arrays"]["x"], case["nd"], case["op"], dict(case["params"])
    extra = (p.pop("p"),) if op == "lp_pool" else ()
    kernel = (p.pop("output_size"),) if op.startswith("adaptive") else (p.pop("kernel_size"),)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        y = getattr(convlab, f"{op}{nd}d")(x, *extra, *kernel, **p)
        if gy is None:
            return y, None
        return y, getattr(convlab, f"{op}{nd}d_backward")(gy, x, *extra, *kernel, **p)


def _pool_oracle(case, gy):
    from test_pool import adaptive_oracle, pool_oracle

    x, op, p = case["arrays"]["x"].astype(np.float64), case["op"], case["params"]
    nd = case["nd"]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if op.startswith("adaptive"):
            y, _, backward = adaptive_oracle(x, op.split("_")[1], p["output_size"])
        else:
            kind = op.split("_")[0]
            stride = p["stride"]
            y, _, backward = pool_oracle(x, kind, p["kernel_size"], stride, tuple((v, v) for v in p["padding"]),
                                         p.get("dilation", (1,) * nd), p["ceil_mode"],
                                         p.get("count_include_pad", True), None, p.get("p", 2.0))
        return y, backward(gy.astype(np.float64))


def _pool_torch(case, gy, torch):
    op = case["op"]
    if op == "lp_pool":
        return None  # PyTorch's Lp pool is another definition (docs/pooling.md)
    F, nd, p = torch.nn.functional, case["nd"], dict(case["params"])
    x = case["arrays"]["x"].astype(np.float64)
    if "max" in op and np.isnan(x).sum() > 1:
        return None  # PyTorch's max may pass a window's gradient to another of its NaNs
    if op == "max_pool" and not _every_window_reads_input(case):
        return None  # PyTorch then returns an index outside the input
    xt = torch.tensor(x, requires_grad=True)
    try:
        y = getattr(F, f"{op}{nd}d")(xt, *((p["output_size"],) if op.startswith("adaptive") else ()),
                                     **({} if op.startswith("adaptive") else p))
    except RuntimeError as e:
        if "smaller than kernel size" in str(e):
            return None  # PyTorch's 3-d average pool refuses windows larger than the unpadded input
        raise
    y.backward(torch.tensor(gy.astype(np.float64)))
    return y.detach().numpy(), xt.grad.numpy()


def _every_window_reads_input(case):
    x, p = case["arrays"]["x"], case["params"]
    nd = case["nd"]
    pads = tuple((v, v) for v in p["padding"])
    geom = P.make_geometry(x.shape[2:], p["kernel_size"], p["stride"], p["dilation"], pads, ceil_mode=p["ceil_mode"])
    for a in range(nd):
        cells = np.arange(geom.out_size[a])[:, None] * geom.stride[a] + np.arange(geom.kernel[a]) * geom.dilation[a]
        if not ((cells >= pads[a][0]) & (cells < pads[a][0] + x.shape[2 + a])).any(axis=1).all():
            return False
    return True


# ----------------------------------------------------------------------------- comparing

def mismatch(got, ref, dtype, what):
    """Why ``got`` does not agree with ``ref``, or None: equal shapes, NaN, +inf and -inf in
    the same cells, finite values within float64's or float32's tolerance."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return f"{what}: shape {got.shape}, expected {ref.shape}"
    for name, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        if not np.array_equal(test(got), test(ref)):
            return (f"{what}: {name} at {np.argwhere(test(got))[:6].tolist()}, expected at "
                    f"{np.argwhere(test(ref))[:6].tolist()}")
    finite = np.isfinite(ref)
    scale = max(1.0, float(np.abs(ref[finite]).max(initial=0.0)))
    rtol, atol = (1e-9, 1e-9 * scale) if np.dtype(dtype) == np.float64 else (1e-4, 1e-4 * scale)
    err = np.abs(got[finite].astype(np.float64) - ref[finite])
    if err.size and not (err <= atol + rtol * np.abs(ref[finite])).all():
        return f"{what}: largest error {err.max():.3g} (scale {scale:.3g})"
    return None


def run_case(case, rng, torch):
    """Problems of one case: a list of strings (empty when every oracle agrees)."""
    problems = []
    if case["family"] == "pool":
        try:
            y, _ = _pool_ours(case, None)
        except ValueError as e:
            if "kernel larger than the padded" in str(e):  # drawn too large: not a case
                return []
            raise
        gy = rng.standard_normal(y.shape).astype(case["dtype"])
        if rng.random() < 0.3 and gy.size:  # a non-finite output gradient too
            index, bad = tuple(int(rng.integers(s)) for s in gy.shape), BAD[int(rng.integers(3))]
            gy[index] = bad
            case["spoilt"].append(("gy", index, bad))
        ours = _pool_ours(case, gy)
        refs = {"loops": _pool_oracle(case, gy), "torch": torch and _pool_torch(case, gy, torch)}
        names = ("y", "grad_x")
    else:
        try:
            ours = _conv_ours(case)
        except ValueError as e:
            if "algorithm=" in str(e):  # the algorithm cannot serve these shapes, and says so
                return []
            raise
        refs = {"loops": _conv_oracle(case), "torch": torch and _conv_torch(case, torch)}
        names = ("y", "grad_x", "grad_w")
    for oracle, ref in refs.items():
        if ref is None:
            continue
        for name, got, expected in zip(names, ours, ref):
            why = mismatch(got, expected, case["dtype"], f"{name} vs {oracle}")
            if why:
                problems.append(why)
    return problems


def run(cases, seed=0, use_torch=True, first=0, out=None):
    """Run ``cases`` cases from index ``first``; returns ``[(description, problems)]`` of
    the cases that disagreed or raised."""
    torch = _torch() if use_torch else None
    failures = []
    for index in range(first, first + cases):
        case, rng = draw(seed, index)
        try:
            problems = run_case(case, rng, torch)
        except Exception:  # a crash is a failure too, with its traceback
            problems = ["raised " + traceback.format_exc(limit=-3)]
        if problems:
            failures.append((describe(case), problems))
            if out:
                print(f"FAIL {describe(case)}\n  " + "\n  ".join(problems), file=out, flush=True)
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--case", type=int, default=None, help="run this one case")
    parser.add_argument("--no-torch", action="store_true", help="the loop oracles only")
    opts = parser.parse_args(argv)
    first, count = (opts.case, 1) if opts.case is not None else (0, opts.cases)
    failures = run(count, opts.seed, not opts.no_torch, first, out=sys.stdout)
    torch = "" if opts.no_torch or _torch() is None else " and PyTorch"
    print(f"{count} cases (seed {opts.seed}) against the loop oracles{torch}: {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
