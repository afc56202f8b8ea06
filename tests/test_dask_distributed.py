"""convlab.dask on dask.distributed (a LocalCluster of 2 worker processes on the loopback
address) and the memory it takes, measured per worker: no process ever holds the whole image."""
import tracemalloc

import numpy as np
import pytest

import convlab

da = pytest.importorskip("dask.array", reason="Dask is not installed (pip install 'convlab[dask]')")
distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed "
                                                        "(pip install 'convlab[dask]')")
import dask  # noqa: E402

cd = pytest.importorskip("convlab.dask")

from oracles import assert_close  # noqa: E402

IMAGE = (1, 1, 4096, 4096)  # float32: 64 MiB
CHUNK = 256                 # 256 KiB per chunk
IMAGE_BYTES = int(np.prod(IMAGE)) * 4
# Each worker may hold a quarter of the image: beyond 60% of it Dask spills the data it holds to
# disk. Dask's other thresholds compare the whole process's resident set (the interpreter and
# libraries, over 100 MiB) with the limit, so they would stop a worker at once: they are off.
MEMORY_LIMIT = IMAGE_BYTES // 4
LIMIT_CONFIG = {"distributed.worker.memory.spill": False, "distributed.worker.memory.pause": False,
                "distributed.worker.memory.terminate": False}


@pytest.fixture(scope="module")
def client():
    with dask.config.set(LIMIT_CONFIG), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address=None, memory_limit=MEMORY_LIMIT) as cluster, \
            distributed.Client(cluster) as c:
        yield c


def blurred_sum(shape=IMAGE):
    """The sum of a 5x5 box blur of U(0, 1) noise made chunk by chunk where the graph runs."""
    x = da.random.default_rng(0).random(shape, dtype=np.float32, chunks=(1, 1, CHUNK, CHUNK))
    return cd.conv2d(x, np.ones((1, 1, 5, 5), np.float32) / 25, padding="same").sum(dtype=np.float64)


WARM_UP = (1, 1, 2 * CHUNK, 2 * CHUNK)  # the same code paths first: imports are not the image


def test_results_on_the_cluster_equal_in_memory(client):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 37, 29))
    w, b = rng.standard_normal((6, 2, 5, 3)), rng.standard_normal(6)
    xd = da.from_array(x, chunks=(2, 2, (10, 3, 24), 10))
    params = dict(stride=(2, 3), padding="same", dilation=(1, 2), groups=2)
    y, p = client.compute([cd.conv2d(xd, w, b, **params), cd.max_pool2d(xd, 3, 2, 1, ceil_mode=True)], sync=True)
    assert_close(y, convlab.conv2d(x, w, b, **params), np.float64)
    np.testing.assert_array_equal(p, convlab.max_pool2d(x, 3, 2, 1, ceil_mode=True))
    gy = rng.standard_normal(y.shape)
    got = client.compute(list(cd.conv2d_backward(da.from_array(gy, chunks=5), xd, w, b, **params)), sync=True)
    for g, r in zip(got, convlab.conv2d_backward(gy, x, w, b, **params)):
        assert_close(g, r, np.float64)


def _peak_bytes():
    return tracemalloc.get_traced_memory()[1]


def _run_traced(client, graph):
    """``graph``'s result and the peak bytes allocated in each worker (NumPy's arrays included:
    NumPy reports them to tracemalloc) while it ran."""
    client.run(tracemalloc.start)
    try:
        return client.compute(graph, sync=True), client.run(_peak_bytes)
    finally:
        client.run(tracemalloc.stop)


def _mib(peaks):
    return {k: round(v / 2**20, 2) for k, v in peaks.items()}


def test_no_worker_holds_the_image(client):
    """A 4096x4096 float32 image (64 MiB) made on the workers is convolved and reduced by two
    workers: the peak memory of each worker stays below the image's size (measured at about a
    third of it; on 2048x2048 the peak came within a few percent of the image, as Dask keeps a
    similar number of chunks alive whatever the image size). The same measure sees a worker that does hold the image (it must, to join it
    into one chunk), so the bound is not the measure's blind spot."""
    limits = client.run(lambda dask_worker: dask_worker.memory_manager.memory_limit)
    assert len(limits) == 2 and set(limits.values()) == {MEMORY_LIMIT}, limits
    client.compute(blurred_sum(WARM_UP), sync=True)  # imports and caches are not the image
    total, peaks = _run_traced(client, blurred_sum())
    assert abs(total / np.prod(IMAGE) - 0.5) < 0.01  # the blur of U(0, 1) noise averages 1/2 (but at the edges)
    print("peak per worker (MiB):", _mib(peaks))
    assert all(0 < peak < IMAGE_BYTES for peak in peaks.values()), _mib(peaks)

    image = da.random.default_rng(0).random(IMAGE, dtype=np.float32, chunks=(1, 1, CHUNK, CHUNK))
    _, whole = _run_traced(client, image.rechunk(IMAGE).sum(dtype=np.float64))
    print("peak per worker, the image joined in one (MiB):", _mib(whole))
    assert max(whole.values()) >= IMAGE_BYTES, _mib(whole)


def test_threaded_scheduler_memory():
    """The same on Dask's threaded scheduler, in this process (no limit: Dask's order of the
    graph alone keeps the peak below the image)."""
    image_bytes = IMAGE_BYTES
    blurred_sum(WARM_UP).compute(scheduler="threads", num_workers=2)
    tracemalloc.start()
    try:
        blurred_sum().compute(scheduler="threads", num_workers=2)
        peak = _peak_bytes()
    finally:
        tracemalloc.stop()
    print(f"peak (MiB): {peak / 2**20:.2f}")
    assert peak < image_bytes, peak
