"""Build csrc/ for the CPU: the kernels' launch syntax rewritten, compiled by a C++ compiler
against tests/cuda_cpu/include/cuda_runtime.h, linked with bindings.cpp into a ``_C`` module.

    python tests/cuda_cpu/cuda_cpu_build.py [plain|sanitize|tsan-driver] [--src DIR]

prints the path of the built module (or of the ThreadSanitizer driver of conv2d). Objects are cached under build/cuda_cpu/ by the hash of
their sources, headers and flags, so a rebuild after a change compiles only what changed.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CSRC = ROOT / "csrc"
INCLUDE = HERE / "include"
CACHE = ROOT / "build" / "cuda_cpu"

COMMON = ["-std=c++20", "-fPIC", "-pthread", "-fno-strict-aliasing", "-Wno-unknown-pragmas"]
FLAVORS = {
    "plain": ["-O2"],
    # Undefined behaviour (signed overflow in index math, misaligned vector loads) aborts.
    "sanitize": ["-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                 "-fno-sanitize-recover=undefined"],
    "thread": ["-O1", "-g", "-fsanitize=thread"],
}

# kernel<<<grid, block[, smem[, stream]]>>>(args): the kernel name, with template arguments.
LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;{}]*>)?)\s*<<<")


class Unavailable(RuntimeError):
    """What is missing to build here (the tests skip with this text)."""


def rewrite_launches(text: str) -> str:
    """``k<<<cfg>>>(args)`` -> ``::cudacpu::Launcher(k, "k", cfg)(args)``, line numbers kept."""
    out = LAUNCH.sub(lambda m: f'::cudacpu::Launcher({m.group(1)}, "{m.group(1)}", ', text)
    out = out.replace(">>>(", ")(")
    if "<<<" in out or ">>>" in out:
        raise ValueError("a launch the rewrite does not understand is left: " +
                         out[max(0, out.find("<<<") - 80):out.find("<<<") + 80])
    return out


def compiler() -> str:
    cxx = os.environ.get("CXX") or "g++"
    found = shutil.which(cxx) or (cxx == "g++" and shutil.which("c++"))
    if not found:
        raise Unavailable(f"no C++ compiler ({cxx}; set CXX) to build the kernels for the CPU")
    return found


def pybind11_include() -> str:
    try:
        import pybind11
    except ImportError:
        raise Unavailable("pybind11 is not installed (pip install pybind11) to build the kernels for the CPU")
    return pybind11.get_include()


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:20]


def _run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)}\n{r.stdout}{r.stderr}")


def _stage(src: Path, dest: Path, extra=()):
    """Copy csrc/ (from ``src``) and the runtime's sources into ``dest`` with launches rewritten;
    returns the translation units."""
    dest.mkdir(parents=True, exist_ok=True)
    units = []
    for f in sorted(src.iterdir()):
        if f.suffix not in (".cu", ".cuh", ".h", ".cpp"):
            continue
        text = f.read_text()
        if f.suffix == ".cu":
            text = f'#line 1 "csrc/{f.name}"\n' + rewrite_launches(text)
        (dest / f.name).write_text(text)
        if f.suffix in (".cu", ".cpp"):
            units.append(dest / f.name)
    for f in ("cuda_cpu_runtime.cpp",) + tuple(extra):
        (dest / f).write_text(f'#line 1 "tests/cuda_cpu/{f}"\n' + rewrite_launches((HERE / f).read_text()))
        units.append(dest / f)
    return units


def _compile(flavor, src, keep, extra=(), jobs=None):
    """Objects of the translation units whose names ``keep`` accepts, compiled with ``flavor``'s flags
    (each cached by the hash of its source, every header, the flags and the compiler)."""
    cxx = compiler()
    includes = [f"-I{INCLUDE}", f"-I{pybind11_include()}", f"-I{sysconfig.get_paths()['include']}"]
    flags = COMMON + FLAVORS[flavor]
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    (CACHE / "obj").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        stage = Path(tmp)
        units = [u for u in _stage(Path(src), stage, extra) if keep(u.name)]
        headers = b"".join(p.read_bytes() for p in sorted(INCLUDE.iterdir()))
        headers += b"".join(p.read_bytes() for p in sorted(stage.iterdir()) if p.suffix in (".cuh", ".h"))
        objects, todo = [], []
        for unit in units:
            obj = CACHE / "obj" / f"{unit.stem}-{_digest(unit.read_bytes(), headers, flags, version)}.o"
            objects.append(obj)
            if not obj.exists():
                todo.append((unit, obj))

        def compile_one(item):
            unit, obj = item
            part = obj.with_suffix(f".{os.getpid()}.tmp")
            _run([cxx, "-x", "c++", *flags, f"-I{stage}", *includes, "-c", str(unit), "-o", str(part)])
            os.replace(part, obj)

        with concurrent.futures.ThreadPoolExecutor(jobs or os.cpu_count() or 1) as pool:
            list(pool.map(compile_one, todo))
    return cxx, flags, objects


def _link(cxx, flags, objects, name, kind):
    out_dir = CACHE / _digest(*(o.name for o in objects), kind)
    target = out_dir / name
    if not target.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        part = target.with_suffix(f".{os.getpid()}.tmp")
        _run([cxx, *(["-shared"] if kind == "module" else []), *flags, *map(str, objects), "-o", str(part)])
        os.replace(part, target)
    return target


def build(flavor: str = "plain", src: Path | str = CSRC, jobs: int | None = None) -> Path:
    """The path of ``_C`` built from ``src`` (default csrc/) with ``flavor``'s flags."""
    cxx, flags, objects = _compile(flavor, src, lambda name: True, jobs=jobs)
    return _link(cxx, flags, objects, "_C" + sysconfig.get_config_var("EXT_SUFFIX"), "module")


def build_tsan_driver(src: Path | str = CSRC) -> Path:
    """tsan_conv2d.cpp linked with conv2d.cu, all under ThreadSanitizer: an executable."""
    keep = {"conv2d.cu", "cuda_cpu_runtime.cpp", "tsan_conv2d.cpp"}.__contains__
    cxx, flags, objects = _compile("thread", src, keep, extra=("tsan_conv2d.cpp",))
    return _link(cxx, flags, objects, "tsan_conv2d", "executable")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("flavor", nargs="?", default="plain", choices=["plain", "sanitize", "tsan-driver"])
    ap.add_argument("--src", default=str(CSRC), help="the csrc/ folder to build (default: the project's)")
    a = ap.parse_args(argv)
    print(build_tsan_driver(a.src) if a.flavor == "tsan-driver" else build(a.flavor, a.src))


if __name__ == "__main__":
    sys.exit(main())
