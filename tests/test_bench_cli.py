"""convlab bench: every algorithm and the peers, checked and marked; the kernel-size sweep and its plot."""
import io
import math
import sys

import numpy as np
import pytest

from convlab import cli


def test_bench_rows_cover_algorithms_and_peers():
    out = io.StringIO()
    cases = [cli.Case("tiny3x3", (1, 2, 7, 7), (3, 2, 3, 3), dict(padding=1)),
             cli.Case("image rank-1", (1, 1, 20, 20), (1, 1, 5, 5), dict(padding="same"), rank_one=True)]
    rows = cli.run_bench(cases, dtype=np.float32, repeat=1, out=out)
    names = {case.name: {r["algorithm"] for r in rows if r["layer"] == case.name} for case in cases}
    assert {"naive", "direct", "im2col", "fft", "winograd"} <= names["tiny3x3"]
    assert "separable" not in names["tiny3x3"]  # a random 3x3 kernel is not separable
    assert {"direct", "im2col", "fft", "separable", "scipy"} <= names["image rank-1"]
    assert "winograd" not in names["image rank-1"] and "scipy" not in names["tiny3x3"]
    try:
        import torch  # noqa: F401
        assert all("torch" in n for n in names.values())
    except ImportError:
        assert not any("torch" in n for n in names.values())
    for case in cases:  # exactly one convlab algorithm is marked as auto's choice, never a peer
        chosen = [r["algorithm"] for r in rows if r["layer"] == case.name and r["chosen"]]
        assert len(chosen) == 1 and chosen[0] not in cli.PEERS
    assert all(r["error"] < 1e-5 and r["seconds"] > 0 for r in rows)
    assert "image rank-1" in out.getvalue() and "peers" in out.getvalue()


def test_kernel_sweep_times_every_algorithm_where_it_serves():
    times = cli.kernel_sweep(size=24, kernels=(3, 5), repeat=1)
    for name in ("direct", "im2col", "fft", "separable"):
        assert all(t > 0 for t in times[name])
    assert times["winograd"][0] > 0 and math.isnan(times["winograd"][1])  # 3x3 only
    assert "naive" not in times


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "sweep.png"
    cli.plot_sweep({"direct": [1e-3, 2e-3], "fft": [3e-3, math.nan]}, (3, 5), path, size=24)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    with pytest.raises(SystemExit):
        cli.main(["bench", "--plot", "out.png"])
    assert "--plot needs matplotlib" in capsys.readouterr().err


def test_bench_rows_show_the_spread_of_the_repeats():
    rows = cli.run_bench([cli.Case("tiny", (1, 2, 7, 7), (3, 2, 3, 3), dict(padding=1))], repeat=3, out=io.StringIO())
    assert all(r["seconds"] <= r["median"] <= r["max"] for r in rows)
    pool = cli.run_pool_bench(shape=(1, 2, 8, 8), repeat=3, out=io.StringIO())
    assert all(r["seconds"] <= r["median"] <= r["max"] for r in pool)


def test_harness_times_the_repeats_and_stops_slow_ones():
    from convlab import _harness

    calls = []
    timing = _harness.time_runs(lambda: calls.append(1), 4)
    assert len(calls) == 5 and timing.min <= timing.median <= timing.max  # one untimed warm-up run
    calls.clear()
    _harness.time_runs(lambda: calls.append(1), 4, slow=0.0, warmup=False)
    assert len(calls) == 1  # the first run is already slower than 0 s
