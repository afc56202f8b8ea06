"""convlab bench and backend_info."""
import io
import subprocess
import sys

import numpy as np

import convlab
from convlab.cli import Case, run_bench


def test_bench_rows_check_against_reference():
    out = io.StringIO()
    cases = [Case("tiny", (1, 2, 6, 6), (3, 2, 3, 3), dict(padding=1)),
             Case("tiny1d", (2, 2, 9), (2, 1, 3), dict(groups=2, stride=2))]
    rows = run_bench(cases, dtype=np.float32, repeat=1, out=out)
    algos = {r["algorithm"] for r in rows}
    assert {"naive", "direct", "im2col"} <= algos
    assert sum(r["chosen"] for r in rows) == 2  # one chosen algorithm per case
    assert all(r["error"] < 1e-5 and r["seconds"] > 0 for r in rows)
    assert "tiny1d" in out.getvalue()


def test_python_m_convlab_help():
    res = subprocess.run([sys.executable, "-m", "convlab", "bench", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "--dtype" in res.stdout


def test_backend_info_reports_reasons():
    info = convlab.backend_info()
    assert info["cpu_reference"] is True and info["numpy"] == np.__version__
    if info["cupy"] is None:
        assert "cupy" in info["cupy_unavailable_reason"]
    if not info["cuda_extension"]:
        assert info["cuda_extension_unavailable_reason"]
