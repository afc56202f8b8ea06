"""The CPU build under sanitizers. Opt-in (CI sets CONVLAB_CUDA_CPU_SANITIZERS=1): each builds
its own instrumented objects.

- AddressSanitizer + UndefinedBehaviorSanitizer: a reduced selection of this suite runs in a
  child pytest on the ``sanitize`` build (an out-of-bounds read or write, a misaligned vector
  load or a signed overflow in index math aborts the child).
- ThreadSanitizer: the standalone driver tsan_conv2d.cpp (every conv2d GEMM version, split and
  unsplit plans, checked against v1) must run without a race report."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cuda_cpu_build

pytestmark = pytest.mark.skipif(os.environ.get("CONVLAB_CUDA_CPU_SANITIZERS") != "1",
                                reason="sanitizer builds are opt-in: set CONVLAB_CUDA_CPU_SANITIZERS=1 (CI does)")

HERE = Path(__file__).resolve().parent

# Small shapes that still reach every path: tiles, split-K with groups, ceil_mode and padding-only
# windows, NaN inputs, the launch limits and the dry runs of huge shapes.
SANITIZED = ["odd_3x3", "strided_dilated_asym_pad_groups", "split_k_groups-", "tiles_past",
             "3x3s2p1", "window_in_padding", "nan_and_inf", "im2col", "test_harness_cpu", "test_limits_cpu"]


def sanitizer_runtime_preload() -> str:
    """libasan first (it must come before everything it intercepts), then libstdc++: the Python
    binary does not link it, and ASan's interception of C++ exceptions needs it loaded."""
    cxx = cuda_cpu_build.compiler()
    libs = [subprocess.run([cxx, f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
            for lib in ("libasan.so", "libstdc++.so")]
    if not all(os.path.isabs(p) for p in libs):
        pytest.skip(f"{cxx} has no AddressSanitizer runtime")
    return " ".join(libs)


def test_suite_selection_passes_under_address_and_undefined_behaviour_sanitizers():
    try:
        cuda_cpu_build.build("sanitize")
    except cuda_cpu_build.Unavailable as exc:
        pytest.skip(str(exc))
    env = dict(os.environ, CONVLAB_CUDA_CPU_FLAVOR="sanitize", LD_PRELOAD=sanitizer_runtime_preload(),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1", UBSAN_OPTIONS="print_stacktrace=1")
    files = sorted(str(p) for p in HERE.glob("test_*_cpu.py") if p.name != Path(__file__).name)
    # -s: a sanitizer's report goes to stderr, which pytest's capture would lose when the child aborts
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-s", "-p", "no:cacheprovider", *files, "-k", " or ".join(SANITIZED)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    out = r.stdout + r.stderr
    assert "ERROR: AddressSanitizer" not in out and "runtime error:" not in out, out[-6000:]
    assert r.returncode == 0, out[-6000:]
    assert " passed" in out and " skipped" not in out, out[-3000:]


def test_conv2d_gemm_versions_have_no_data_race_under_thread_sanitizer():
    try:
        driver = cuda_cpu_build.build_tsan_driver()
    except cuda_cpu_build.Unavailable as exc:
        pytest.skip(str(exc))
    r = subprocess.run([str(driver)], capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert "WARNING: ThreadSanitizer" not in out, out[-4000:]
    assert r.returncode == 0 and "all match" in out, out[-4000:]
    assert "split-K planned" in out  # the split path ran too
