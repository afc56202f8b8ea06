"""The CPU runtime itself: the launch rewrite, per-block shared memory, the barrier checks
(threads at different barriers, threads returning while others wait), launch limits, devices."""
import ctypes
from pathlib import Path

import numpy as np
import pytest
from cuda_cpu_build import CSRC, rewrite_launches


def test_launches_are_rewritten_with_their_template_arguments():
    src = "  f<T, decltype(m)::value><<<grid_for(n * 2, 256), 256, 0, st>>>(s, a, xp);\n  g<<<1, 32>>>(p);\n"
    assert rewrite_launches(src) == (
        '  ::cudacpu::Launcher(f<T, decltype(m)::value>, "f<T, decltype(m)::value>", grid_for(n * 2, 256), 256, 0, '
        'st)(s, a, xp);\n  ::cudacpu::Launcher(g, "g", 1, 32)(p);\n')


def test_every_launch_in_csrc_is_rewritten():
    for f in sorted(CSRC.glob("*.cu")):
        text = f.read_text()
        out = rewrite_launches(text)
        assert out.count("::cudacpu::Launcher(") == text.count("<<<") > 0, f.name
        assert out.count("\n") == text.count("\n"), "line numbers must survive the rewrite"


def selftest(cuda_cpu, name, blocks, threads):
    out = np.full(blocks * max(threads, 1), -1, dtype=np.int32)
    msg = cuda_cpu.lib.cudacpu_selftest(name.encode(), blocks, threads, out.ctypes.data_as(ctypes.POINTER(ctypes.c_int)))
    return msg.decode(), out


def test_shared_memory_and_barriers_of_each_block(cuda_cpu):
    msg, out = selftest(cuda_cpu, "uniform", 3, 64)
    assert msg.startswith("cudaSuccess"), msg
    # each thread reads its neighbour's value from shared memory after the barrier
    np.testing.assert_array_equal(out, np.tile((np.arange(64) + 1) % 64, 3))


def test_threads_at_different_barriers_fail_the_launch(cuda_cpu):
    msg, _ = selftest(cuda_cpu, "divergent", 2, 64)
    assert msg.startswith("cudaErrorLaunchFailure"), msg
    assert "threads 0-15 wait at tests/cuda_cpu/cuda_cpu_runtime.cpp:" in msg
    assert "threads 16-63 wait at tests/cuda_cpu/cuda_cpu_runtime.cpp:" in msg


def test_threads_returning_while_others_wait_fail_the_launch(cuda_cpu):
    msg, _ = selftest(cuda_cpu, "early_return", 1, 64)
    assert msg.startswith("cudaErrorLaunchFailure"), msg
    assert "threads 0-31 wait at" in msg and "threads 32-63 returned" in msg
    # the runtime is usable afterwards
    msg, _ = selftest(cuda_cpu, "uniform", 1, 64)
    assert msg.startswith("cudaSuccess"), msg


@pytest.mark.parametrize("blocks,threads", [(1, 1025), (0, 32), (1, 0)])
def test_launch_limits(cuda_cpu, blocks, threads):
    msg, _ = selftest(cuda_cpu, "uniform", blocks, threads)
    assert msg.startswith("cudaErrorInvalidConfiguration"), msg


def test_devices_have_the_configured_multiprocessors(cuda_cpu):
    assert [d["multiprocessors"] for d in cuda_cpu.C.devices()] == [132, 1, 132]
    assert cuda_cpu.C.build_info()["cuda_runtime"] == 0  # the CPU runtime, not CUDA's


def test_kernel_sources_are_unchanged_by_the_build():
    assert all("cudacpu" not in f.read_text() for f in Path(CSRC).iterdir())
