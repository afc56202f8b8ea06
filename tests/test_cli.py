"""convlab bench and backend_info."""
import io
import os
import subprocess
import sys

import numpy as np

import convlab
import convlab.cli
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


def test_version_and_bench_help_explain_themselves():
    res = subprocess.run([sys.executable, "-m", "convlab", "--version"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"convlab {convlab.__version__}"
    res = subprocess.run([sys.executable, "-m", "convlab", "bench", "--help"], capture_output=True, text=True)
    help_text = " ".join(res.stdout.split())
    for column in ("time ms", "GFLOP/s", "max rel err", "GB/s"):
        assert column in help_text
    assert "dtype of the operands of every row (default: float32)" in help_text


def test_bench_table_states_its_dtype():
    out = io.StringIO()
    run_bench([Case("tiny", (1, 1, 5, 5), (1, 1, 3, 3), {})], dtype=np.float64, repeat=2, out=out)
    assert out.getvalue().startswith("Convolution forward, float64, best of 2 runs\n")


def test_install_says_in_one_line_whether_it_builds_the_cuda_extension():
    from pathlib import Path

    setup_py = Path(__file__).resolve().parent.parent / "setup.py"
    res = subprocess.run([sys.executable, str(setup_py), "--name"], capture_output=True, text=True)
    notices = [line for line in res.stderr.splitlines() if line.startswith("convlab: ")]
    assert res.returncode == 0 and len(notices) == 1, res.stderr
    assert "building the CUDA extension" in notices[0] or "pure-Python package" in notices[0]
    env = dict(os.environ, CONVLAB_NO_CUDA="1")
    res = subprocess.run([sys.executable, str(setup_py), "--name"], capture_output=True, text=True, env=env)
    assert "CONVLAB_NO_CUDA=1: installing the pure-Python package" in res.stderr


def test_tune_saves_constants_where_auto_finds_them(tmp_path, monkeypatch, capsys):
    import json

    from convlab import _cost
    from convlab._params import conv_shape_args

    path = tmp_path / "constants.json"
    monkeypatch.setenv("CONVLAB_COST_CONSTANTS", str(path))
    monkeypatch.setattr(_cost, "_loaded", None)  # restored, with the shipped constants, afterwards
    try:
        assert "shipped" in _cost.constants()[1]
        path.write_text(json.dumps({"fitted_on": "elsewhere", "constants": {"float32": {}}}))
        monkeypatch.setattr(_cost, "_loaded", None)
        assert "shipped" in _cost.constants()[1]  # an incomplete file is ignored
        assert convlab.cli.main(["tune", "--quick", "--repeat", "1"]) == 0
        assert f"saved {path}" in capsys.readouterr().out
        table, source = _cost.constants()
        assert str(path) in source and "convlab tune" in source
        assert table == json.loads(path.read_text())["constants"]
        args = conv_shape_args((1, 8, 16, 16), (8, 8, 3, 3), 1, 1, 1, 1, 2)
        theta = table["float32"]["direct"]
        assert _cost.predict("direct", args, np.float32) == sum(
            t * f for t, f in zip(theta, _cost.features("direct", args, np.float32)))
        assert convlab.backend_info()["cost_model_constants"] == source
    finally:
        _cost._predict.cache_clear()
