import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from cuda_cpu_harness import require_build  # noqa: E402


@pytest.fixture(scope="session")
def cuda_cpu():
    """csrc/ built once per session for the CPU: the flavor from CONVLAB_CUDA_CPU_FLAVOR, the
    sources from CONVLAB_CUDA_CPU_SRC (a mutated copy of csrc/, see mutations.py) or csrc/."""
    return require_build(os.environ.get("CONVLAB_CUDA_CPU_FLAVOR", "plain"), os.environ.get("CONVLAB_CUDA_CPU_SRC"))
