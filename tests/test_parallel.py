"""convlab._parallel: chunks dealt to threads, BLAS held to one thread inside, and the
algorithms that use it give the same bits in threads as in order."""
import threading

import numpy as np
import pytest

import convlab
from convlab import _parallel


def test_every_chunk_runs_once_in_one_group_per_worker(monkeypatch):
    monkeypatch.setattr(_parallel, "workers", lambda: 3)
    seen, names = [], set()

    def run(group):
        names.add(threading.current_thread().name)
        seen.extend(group)
        return list(group)

    groups = _parallel.map_groups(run, range(10))
    assert sorted(seen) == list(range(10))
    assert groups == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert all(name.startswith("convlab") for name in names)


def test_one_chunk_or_one_core_runs_here(monkeypatch):
    here = threading.current_thread().name
    assert _parallel.map_groups(lambda g: (threading.current_thread().name, g), [7]) == [(here, [7])]
    monkeypatch.setattr(_parallel, "workers", lambda: 1)
    assert _parallel.map_groups(lambda g: (threading.current_thread().name, g), [1, 2]) == [(here, [1, 2])]


def test_blas_is_held_to_one_thread_inside(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(_parallel, "workers", lambda: 2)
    blas = [i for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    if not blas:
        pytest.skip("no BLAS library found by threadpoolctl")

    def run(group):
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    assert _parallel.map_groups(run, [0, 1], blas=True) == [[1] * len(blas)] * 2
    assert [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"] \
        == [i["num_threads"] for i in blas]  # restored after


def test_without_threadpoolctl_blas_chunks_run_in_order_here(monkeypatch):
    monkeypatch.setattr(_parallel, "workers", lambda: 2)
    monkeypatch.setattr(_parallel, "_controller", False)
    here = threading.current_thread().name
    assert _parallel.map_groups(lambda g: (threading.current_thread().name, g), [1, 2], blas=True) \
        == [(here, [1]), (here, [2])]  # the same groups as with threads
    # chunks that do not call BLAS still use the threads
    assert len(_parallel.map_groups(lambda g: g, [1, 2])) == 2


@pytest.mark.parametrize("shape,wshape,params", [
    ((4, 6, 33, 30), (5, 6, 3, 3), dict(padding=1)),  # enough tiles for Winograd's weight gradient
    ((8, 4, 29, 25), (6, 2, 3, 3), dict(groups=2)),
    ((3, 3, 7, 6, 9), (4, 3, 3, 3, 3), dict(padding=1)),
])
def test_winograd_gives_the_same_bits_in_threads_as_in_order(monkeypatch, shape, wshape, params):
    """The same chunks run by two threads and one after another here: the chunks write
    disjoint parts (or return partial sums added in a fixed order), so no bit may differ."""
    monkeypatch.setattr(_parallel, "workers", lambda: 2)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(shape), rng.standard_normal(wshape)
    conv = getattr(convlab, f"conv{len(shape) - 2}d")
    back = getattr(convlab, f"conv{len(shape) - 2}d_backward")
    old = convlab.set_workspace_limit(4096)  # many chunks
    try:
        y = conv(x, w, algorithm="winograd", **params)
        gy = rng.standard_normal(y.shape)
        grads = back(gy, x, w, algorithm="winograd", **params)[:2]
        monkeypatch.setattr(_parallel, "_controller", False)  # BLAS chunks in order, here
        np.testing.assert_array_equal(conv(x, w, algorithm="winograd", **params), y)
        for a, b in zip(back(gy, x, w, algorithm="winograd", **params)[:2], grads):
            np.testing.assert_array_equal(a, b)
    finally:
        convlab.set_workspace_limit(old)
