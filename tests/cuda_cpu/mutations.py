"""Show that the CPU harness catches kernel bugs: apply each known mutation to a copy of csrc/,
build it for the CPU, run the tests that should catch it, and report what did.

    python tests/cuda_cpu/mutations.py [--only NAME ...] [--list]

Each mutation runs its pytest selection of tests/cuda_cpu on the mutated build (stopping at the
first failure); barrier mutations also run the ThreadSanitizer driver (tsan_conv2d.cpp), which
sees races that the results alone may hide, and bound-check mutations that the plain selection
misses run it again on the AddressSanitizer build. Every mutation must be caught by one of them:
the script exits 1 otherwise. Run by hand (several minutes a mutation on 2 cores); docs/cuda.md records its output.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cuda_cpu_build  # noqa: E402
from test_sanitizers_cpu import sanitizer_runtime_preload  # noqa: E402

ROOT = HERE.parent.parent


@dataclass
class Mutation:
    name: str
    file: str
    old: str  # replaced at its `nth` occurrence in `file`
    new: str
    tests: str  # pytest -k expression over tests/cuda_cpu/test_{conv2d,pool2d,im2col}_cpu.py
    nth: int = 0
    tsan: bool = False
    asan: bool = False


def barrier_mutations() -> list:
    """One mutation per __syncthreads of conv2d.cu's GEMM kernels, named after its kernel."""
    text = (ROOT / "csrc" / "conv2d.cu").read_text()
    out, seen = [], {}
    for m in re.finditer(r"__syncthreads\(\);", text):
        kernel = re.findall(r"__global__ void.*?\s(gemm_v\d)\(", text[:m.start()], re.S)[-1]
        nth = seen.get(kernel, 0)
        seen[kernel] = nth + 1
        line = text.count("\n", 0, m.start()) + 1
        versions = {"gemm_v2": "v2", "gemm_v3": "v3", "gemm_v4": "v4 or v5"}[kernel]
        out.append(Mutation(f"{kernel}: barrier {nth + 1} removed (conv2d.cu:{line})", "csrc/conv2d.cu",
                            "__syncthreads();", ";", f"test_conv2d_cpu and ({versions})",
                            nth=sum(seen.values()) - 1, tsan=True))
    return out


MUTATIONS = barrier_mutations() + [
    Mutation("window.cuh: a cell one past the edge counts as inside", "csrc/window.cuh",
             "return (unsigned)i < (unsigned)size;", "return (unsigned)i <= (unsigned)size;",
             "test_conv2d_cpu or test_pool2d_cpu or test_im2col_cpu", asan=True),
    Mutation("window.cuh: the covering range ends one output late", "csrc/window.cuh",
             "hi = min(out - 1, floor_div(i + pad, stride));", "hi = min(out, floor_div(i + pad, stride));",
             "test_pool2d_cpu", asan=True),
    Mutation("conv2d_gemm.cuh: weight rows read one reduction index past the end", "csrc/conv2d_gemm.cuh",
             "this->reg[j] = (r < k_end && 32 * j < rows)", "this->reg[j] = (r <= k_end && 32 * j < rows)",
             "test_conv2d_cpu", asan=True),
    Mutation("conv2d.cu: GEMM tiles store one row past M", "csrc/conv2d.cu",
             "if (m < gm.M && n < gm.N) *part", "if (m <= gm.M && n < gm.N) *part",
             "test_conv2d_cpu", asan=True),
    Mutation("conv2d.cu: split-K parts written [groups][splits] but summed as [splits][groups]", "csrc/conv2d.cu",
             "(std::size_t)(split() * s.groups + g)", "(std::size_t)(g * splits + split())",
             "test_conv2d_cpu and v5"),
]


def mutate(m: Mutation, dest: Path):
    shutil.copytree(ROOT / "csrc", dest)
    path = dest / Path(m.file).name
    text = path.read_text()
    starts = [i for i in range(len(text)) if text.startswith(m.old, i)]
    if len(starts) <= m.nth:
        raise SystemExit(f"{m.name}: '{m.old}' occurs {len(starts)} times in {m.file}; the sources changed")
    i = starts[m.nth]
    path.write_text(text[:i] + m.new + text[i + len(m.old):])


def first_failure(output: str) -> str:
    """The first failing test, the sanitizer's report, or the crash and the test it hit."""
    asan = re.search(r"ERROR: AddressSanitizer: ([\w-]+)", output)
    ubsan = re.search(r"runtime error: ([^\n]+)", output)
    crash = re.search(r"(?:malloc|free)\(\): [^\n]+", output) or re.search(r"Fatal Python error: ([^\n]+)", output)
    where = re.findall(r'test_\w+_cpu\.py", line \d+ in (test_\w+)', output)
    hit = re.search(r"^FAILED (\S+)", output, re.M) or re.search(r"^(ERROR \S+)", output, re.M)
    if asan:
        return f"AddressSanitizer: {asan.group(1)}" + (f" in {where[0]}" if where else "")
    if ubsan:
        return f"UndefinedBehaviorSanitizer: {ubsan.group(1)}"
    if crash:
        return f"crash ({crash.group(crash.lastindex or 0).strip()})" + (f" in {where[0]}" if where else "")
    return hit.group(1).split("::")[-1] if hit else "the run failed:\n" + output[-1500:]


def run_pytest(src: Path, expr: str, flavor="plain", extra_env=None) -> str:
    """'' when the selection passes, else the first failing test."""
    env = dict(os.environ, CONVLAB_CUDA_CPU_SRC=str(src), CONVLAB_CUDA_CPU_FLAVOR=flavor,
               CONVLAB_REQUIRE_CUDA_CPU="1", **(extra_env or {}))
    files = [str(HERE / f"test_{op}_cpu.py") for op in ("conv2d", "pool2d", "im2col")]
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-s", "-p", "no:cacheprovider", *files, "-k", expr],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    return "" if r.returncode == 0 else first_failure(r.stdout + r.stderr)


def run_tsan(src: Path) -> str:
    out = subprocess.run([str(cuda_cpu_build.build_tsan_driver(src))], capture_output=True, text=True)
    text = out.stdout + out.stderr
    if "WARNING: ThreadSanitizer: data race" in text:
        return "data race reported"
    return "" if out.returncode == 0 else "results differ from v1"


def run_asan(src: Path, expr: str) -> str:
    env = {"LD_PRELOAD": sanitizer_runtime_preload(), "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}
    cuda_cpu_build.build("sanitize", src)
    return run_pytest(src, expr, "sanitize", env)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", help="run the mutations whose names contain one of these")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    a = ap.parse_args(argv)
    todo = [m for m in MUTATIONS if not a.only or any(o in m.name for o in a.only)]
    if a.list:
        print("\n".join(m.name for m in todo))
        return 0
    missed = 0
    print("| mutation | tests/cuda_cpu | ThreadSanitizer driver | AddressSanitizer build |\n| --- | --- | --- | --- |")
    for m in todo:
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            src = Path(tmp) / "csrc"
            mutate(m, src)
            cuda_cpu_build.build("plain", src)
            plain = run_pytest(src, m.tests) or "passed"
            tsan = (run_tsan(src) or "passed") if m.tsan else "-"
            asan = (run_asan(src, m.tests) or "passed") if m.asan and plain == "passed" else "-"
        caught = any(r not in ("passed", "-") for r in (plain, tsan, asan))
        missed += not caught
        print(f"| {m.name} | {plain} | {tsan} | {asan} |" + ("" if caught else "  NOT CAUGHT"), flush=True)
        print(f"  ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
