"""Tables and summary figures from a pytest-benchmark JSON file of the CPU convolution suite.

    pytest benchmarks/ --benchmark-only --benchmark-json=out.json
    python benchmarks/report.py out.json [more runs.json ...]

Prints one Markdown table per shape (best time, GFLOP/s, ratio to the fastest convlab
algorithm) and the figures quoted in docs/benchmarks.md: convlab against PyTorch on the
ResNet-50 layers, the FFT against SciPy's fftconvolve per channel pair, "auto" against
scipy.signal.correlate on single-channel images, separable against direct, and how often
"auto" is within 1.25x of the fastest convlab algorithm. Given several runs, each
method's best time over the runs is used.
"""
from __future__ import annotations

import json
import math
import sys
from collections import defaultdict

ALGORITHMS = ("naive", "direct", "im2col", "fft", "separable", "winograd", "auto")


def load(paths):
    """``{group: {name: (seconds, extra_info)}}``, the best time of each over all runs (other
    work on a shared machine only ever slows a run down)."""
    groups = defaultdict(dict)
    for path in paths:
        with open(path) as fh:
            data = json.load(fh)
        for b in data["benchmarks"]:
            name, sec = b["extra_info"]["algorithm"], b["stats"]["min"]
            if name not in groups[b["group"]] or sec < groups[b["group"]][name][0]:
                groups[b["group"]][name] = (sec, b["extra_info"])
    return data, groups


def geomean(values):
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else math.nan


def tables(groups, out):
    for group in sorted(groups):
        rows = groups[group]
        ours = [rows[a][0] for a in ALGORITHMS if a in rows and a != "auto"]
        fastest = min(ours) if ours else math.nan
        print(f"\n**{group}**\n", file=out)
        print("| algorithm | time (ms) | GFLOP/s | vs fastest convlab |", file=out)
        print("|---|---:|---:|---:|", file=out)
        for name, (sec, info) in sorted(rows.items(), key=lambda kv: kv[1][0]):
            label = name + (f" (chose {info['chosen']})" if "chosen" in info else "")
            print(f"| {label} | {sec * 1e3:.2f} | {info.get('gflops', math.nan):.1f} | {sec / fastest:.2f}x |",
                  file=out)


def summary(groups, out):
    def ratio(group, ours, peer):
        rows = groups.get(group, {})
        best = min((rows[a][0] for a in ours if a in rows), default=None)
        return rows[peer][0] / best if best and peer in rows else None

    print("\n## Summary\n", file=out)
    for kind in ("forward", "backward"):
        resnet = sorted(g for g in groups if g.startswith(f"{kind} resnet"))
        for label, ours in (("direct/im2col (best of)", ("direct", "im2col")), ("auto", ("auto",))):
            r = {g: ratio(g, ours, "torch") for g in resnet}
            r = {g: v for g, v in r.items() if v}
            if r:
                worst = min(r, key=r.get)
                print(f"- {kind} ResNet-50 layers, {label} / torch throughput: geomean {geomean(r.values()):.2f}x, "
                      f"lowest {r[worst]:.2f}x ({worst})", file=out)
    for g in sorted(g for g in groups if "scipy.fftconvolve per channel pair" in groups[g]):
        r = ratio(g, ("fft",), "scipy.fftconvolve per channel pair")
        print(f"- {g}: fft is {r:.1f}x faster than scipy.signal.fftconvolve per channel pair", file=out)
    images = sorted((g for g in groups if "scipy.signal.correlate" in groups[g] and "rank-1" not in g),
                    key=lambda g: (len(g), g))
    r = {g: ratio(g, ("auto",), "scipy.signal.correlate") for g in images}
    r = {g: v for g, v in r.items() if v}
    if r:
        worst = min(r, key=r.get)
        print(f"- single-channel images, auto / scipy.signal.correlate throughput: geomean {geomean(r.values()):.2f}x, "
              f"lowest {r[worst]:.2f}x ({worst})", file=out)
    for g in sorted(g for g in groups if "rank-1" in g):
        r = ratio(g, ("separable",), "direct")
        if r:
            print(f"- {g}: separable is {r:.1f}x faster than direct", file=out)
    within, total, misses = 0, 0, []
    for g, rows in groups.items():
        ours = {a: rows[a][0] for a in ALGORITHMS if a in rows and a not in ("auto", "naive")}
        if "auto" in rows and ours:
            total += 1
            ok = rows["auto"][0] <= 1.25 * min(ours.values())
            within += ok
            if not ok:
                misses.append(f"{g} (auto chose {rows['auto'][1].get('chosen')}, fastest {min(ours, key=ours.get)})")
    if total:
        print(f"- auto within 1.25x of the fastest convlab algorithm on {within}/{total} shapes "
              f"({100 * within / total:.0f}%)" + (f"; misses: {'; '.join(misses)}" if misses else ""), file=out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    data, groups = load(argv)
    info = data.get("machine_info", {})
    print(f"Machine: {info.get('cpu', {}).get('brand_raw', '?')}, {info.get('cpu', {}).get('count', '?')} cores; "
          f"Python {info.get('python_version', '?')}; run {data.get('datetime', '?')}")
    tables(groups, sys.stdout)
    summary(groups, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
