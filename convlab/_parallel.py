"""Every core on one pass: independent chunks of work run by a pool of threads.

NumPy's copies and ufuncs and BLAS's products release the GIL, so chunks that write disjoint
parts of one result (or return partial sums) run side by side in threads. A pass whose
chunks call BLAS runs them with BLAS held to one thread (``threadpoolctl``), so that the
two levels of threads do not fight over the cores; without ``threadpoolctl`` such chunks
run one after another, each product on BLAS's own threads. CuPy arrays run in order: the
device is already parallel.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os

import numpy as np

_pool = None
_controller = None


@functools.lru_cache(maxsize=None)
def workers() -> int:
    """Threads a pass may use: the cores of the machine."""
    return os.cpu_count() or 1


def _blas_controller():
    """A ``threadpoolctl`` controller of the loaded libraries (made once), or ``None``."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _controller = False
        else:
            _controller = ThreadpoolController()
    return _controller or None


def map_groups(fn, chunks, xp=np, blas=False):
    """``[fn(group) for group in groups]``: the chunks dealt round-robin into one group per
    worker, each group run by one thread (its chunks in order). ``blas``: the chunks call
    BLAS (see the module's docstring). The groups depend only on the chunks and the number
    of workers, never on whether threads run them, so partial results combine the same way.
    One group, one core or a GPU array: the groups run here, in order."""
    chunks = list(chunks)
    n = max(1, min(workers(), len(chunks)))
    groups = [chunks[i::n] for i in range(n)]
    controller = _blas_controller() if blas and n > 1 else None
    if n < 2 or xp is not np or (blas and controller is None):
        return [fn(group) for group in groups]
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(workers(), thread_name_prefix="convlab")
    if controller is None:
        return list(_pool.map(fn, groups))
    with controller.limit(limits=1, user_api="blas"):
        return list(_pool.map(fn, groups))
