"""Build entry for convlab: the pure-Python package plus, when nvcc is found, the CUDA
extension ``convlab._C`` (csrc/*.cu compiled by nvcc, linked with csrc/bindings.cpp).

The extension is built when nvcc is found and the machine has a usable GPU driver; one
line on the terminal says whether it is built or skipped, and why.

Environment:
  CONVLAB_NO_CUDA=1        skip the extension (pure-Python install)
  CONVLAB_REQUIRE_CUDA=1   build it even without a GPU; a missing nvcc or a failed CUDA build
                           is an error, not a notice
  CONVLAB_CUDA_ARCHS       compute capabilities to build for, e.g. "90" or "80;90" (default "90")
  CUDA_HOME / CUDA_PATH    the toolkit root, when nvcc is not on PATH
Metadata lives in pyproject.toml.
"""
import os
import re
import shutil
import subprocess
import sys
from glob import glob

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# Commands that build (pip's metadata steps run setup.py too, and need not repeat the notice).
BUILD_COMMANDS = ("build", "build_ext", "bdist_wheel", "editable_wheel", "install", "develop")


def _notice(msg):
    """One line on stderr and, while building, on the terminal itself: pip captures a
    build's output and shows it only with -v."""
    line = f"convlab: {msg}\n"
    sys.stderr.write(line)
    if sys.stderr.isatty() or not any(cmd in sys.argv for cmd in BUILD_COMMANDS):
        return
    try:
        with open("/dev/tty", "w") as tty:
            tty.write(line)
    except OSError:  # no terminal (CI, a pipe): stderr is all there is
        pass


def gpu_driver_error():
    """Why this machine has no usable CUDA driver and device, or None: asks the driver library."""
    import ctypes

    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return "no CUDA driver (libcuda.so.1) on this machine"
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
        return "the CUDA driver finds no usable GPU"
    return None


def find_nvcc():
    for root_var in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(root_var)
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return shutil.which("nvcc")


def _has_runtime_header(root):
    return bool(root) and (os.path.isfile(os.path.join(root, "include", "cuda_runtime.h"))
                           or os.path.isfile(os.path.join(root, "targets", "x86_64-linux", "include",
                                                          "cuda_runtime.h")))


def find_cuda_root(nvcc):
    """The toolkit root. nvcc may be a wrapper script living outside the toolkit, so its own
    folder is only trusted when include/cuda_runtime.h sits beside it; otherwise ask nvcc."""
    for root_var in ("CUDA_HOME", "CUDA_PATH"):
        if _has_runtime_header(os.environ.get(root_var)):
            return os.environ[root_var]
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    if _has_runtime_header(root):
        return root
    out = subprocess.run([nvcc, "-dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                         capture_output=True, text=True)
    m = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.M)
    if m and _has_runtime_header(os.path.normpath(m.group(1).strip())):
        return os.path.normpath(m.group(1).strip())
    raise RuntimeError(f"cannot find the CUDA toolkit root of {nvcc} (no include/cuda_runtime.h); set CUDA_HOME")


def cuda_lib_dir(root):
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib")):
        if os.path.isfile(os.path.join(root, sub, "libcudart_static.a")):
            return os.path.join(root, sub)
    raise RuntimeError(f"libcudart_static.a not found under {root}")


def gencode_flags(archs):
    """Machine code for each architecture, plus PTX of the newest for later GPUs."""
    archs = [a.strip().replace(".", "") for a in re.split(r"[;, ]+", archs) if a.strip()]
    if not archs or not all(a.isdigit() for a in archs):
        raise RuntimeError(f"CONVLAB_CUDA_ARCHS must list compute capabilities like '90' or '80;90', got {archs}")
    flags = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    newest = max(archs, key=int)
    return flags + [f"-gencode=arch=compute_{newest},code=compute_{newest}"], archs


class CudaBuildExt(build_ext):
    """Compile the extension's .cu sources with nvcc, then link as usual.

    nvcc runs through ``self.spawn`` so a failure is a DistutilsExecError, which setuptools
    turns into a warning for an optional extension and an error for a required one.
    """

    def build_extension(self, ext):
        cu = [s for s in ext.sources if s.endswith(".cu")]
        ext.sources = [s for s in ext.sources if not s.endswith(".cu")]
        objects = []
        for src in cu:
            obj = os.path.join(self.build_temp, os.path.splitext(src)[0] + ".o")
            os.makedirs(os.path.dirname(obj), exist_ok=True)
            if self.force or not os.path.exists(obj) or _newer(src, obj):
                self.spawn([ext.nvcc, "-c", src, "-o", obj] + ext.nvcc_flags)
            objects.append(obj)
        ext.extra_objects = objects + list(ext.extra_objects or [])
        super().build_extension(ext)


def _newer(src, obj):
    deps = [src] + glob(os.path.join(os.path.dirname(src), "*.cuh")) + glob(os.path.join(os.path.dirname(src), "*.h"))
    return max(os.path.getmtime(d) for d in deps) > os.path.getmtime(obj)


def cuda_extension():
    """The ``convlab._C`` Extension, or None (with a one-line notice) when it is not built."""
    require = _flag("CONVLAB_REQUIRE_CUDA")
    if _flag("CONVLAB_NO_CUDA"):
        if require:
            raise RuntimeError("CONVLAB_NO_CUDA=1 and CONVLAB_REQUIRE_CUDA=1 contradict each other")
        _notice("CONVLAB_NO_CUDA=1: installing the pure-Python package without the CUDA extension")
        return None
    nvcc = find_nvcc()
    if nvcc is None:
        if require:
            raise RuntimeError("CONVLAB_REQUIRE_CUDA=1 but nvcc was not found (put it on PATH or set CUDA_HOME)")
        _notice("nvcc not found: installing the pure-Python package without the CUDA extension")
        return None
    driver = gpu_driver_error()
    if driver and not require:
        _notice(f"{driver}: installing the pure-Python package without the CUDA extension "
                "(CONVLAB_REQUIRE_CUDA=1 builds it anyway, e.g. for another machine)")
        return None
    try:
        import pybind11

        root = find_cuda_root(nvcc)
        libdir = cuda_lib_dir(root)
        gencode, archs = gencode_flags(os.environ.get("CONVLAB_CUDA_ARCHS", "90"))
    except Exception as exc:
        if require:
            raise
        _notice(f"CUDA extension skipped ({exc}): installing the pure-Python package")
        return None
    include = os.path.join(root, "include")
    arch_macro = ("CONVLAB_CUDA_ARCHS", '"' + ";".join(archs) + '"')
    ext = Extension(
        "convlab._C",
        sources=sorted(glob("csrc/*.cu")) + ["csrc/bindings.cpp"],
        include_dirs=[pybind11.get_include(), include, "csrc"],
        library_dirs=[libdir],
        # The static runtime lets the module import on a machine with no CUDA driver.
        libraries=["cudart_static", "rt", "pthread", "dl"],
        define_macros=[arch_macro],
        extra_compile_args=["-std=c++17", "-O2", "-fvisibility=hidden"],
        language="c++",
        optional=not require,
    )
    _notice(f"building the CUDA extension with {nvcc} for compute capability {', '.join(archs)} "
            "(a minute or more; CONVLAB_NO_CUDA=1 skips it)")
    ext.nvcc = nvcc
    ext.nvcc_flags = (["-O3", "-std=c++17", "-Xcompiler", "-fPIC,-fvisibility=hidden", "-Icsrc",
                       "--expt-relaxed-constexpr", "-Xptxas", "-warn-spills", "-lineinfo"] + gencode)
    return ext


os.chdir(HERE)
_ext = cuda_extension()
setup(ext_modules=[_ext] if _ext else [], cmdclass={"build_ext": CudaBuildExt} if _ext else {})
