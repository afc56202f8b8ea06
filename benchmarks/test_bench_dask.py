"""convlab.dask against the in-memory op on an image that fits: the cost of chunks, halos and
the scheduler. Contenders in the same run: ``convlab.conv2d`` on the whole array, and
``convlab.dask.conv2d`` on the threaded scheduler (2 threads) and on a LocalCluster of 2 worker
processes (127.0.0.1). Each result is checked against the in-memory op before timing.
The images larger than memory are run by ``benchmarks/dask_large.py`` (see docs/dask.md)."""
import numpy as np
import pytest
from conftest import shapes

import convlab

da = pytest.importorskip("dask.array", reason="Dask is not installed (pip install 'convlab[dask]')")
import dask  # noqa: E402

cd = pytest.importorskip("convlab.dask")

# (name, x shape, w shape, chunk)
CASES = shapes(
    full=[("1@4096 31x31", (1, 1, 4096, 4096), (1, 1, 31, 31), 1024),
          ("64@1024 3x3", (1, 64, 1024, 1024), (64, 64, 3, 3), 512)],
    small=[("1@96 7x7", (1, 1, 96, 96), (1, 1, 7, 7), 32),
           ("4@48 3x3", (1, 4, 48, 48), (4, 4, 3, 3), 16)])


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c


@pytest.mark.parametrize("impl", ["in-memory", "threads", "distributed"])
@pytest.mark.parametrize("name,x_shape,w_shape,chunk", CASES, ids=[c[0] for c in CASES])
def test_dask_conv2d(benchmark, request, name, x_shape, w_shape, chunk, impl):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[1:]))).astype(np.float32)
    ref = convlab.conv2d(x, w, padding="same")
    if impl == "in-memory":
        run = lambda: convlab.conv2d(x, w, padding="same")  # noqa: E731
    else:
        y = cd.conv2d(da.from_array(x, chunks=(1, x_shape[1], chunk, chunk)), w, padding="same")
        if impl == "threads":
            run = lambda: y.compute(scheduler="threads", num_workers=2)  # noqa: E731
        else:
            c = request.getfixturevalue("client")
            run = lambda: c.compute(y, sync=True)  # noqa: E731
    np.testing.assert_allclose(run(), ref, rtol=1e-4, atol=1e-4)
    benchmark.group = f"dask conv2d {name}, chunks {chunk}"
    benchmark.pedantic(run, rounds=3, iterations=1)
    flops = 2.0 * np.prod(ref.shape) * np.prod(w_shape[1:])
    benchmark.extra_info["gflops"] = flops / benchmark.stats["min"] / 1e9 if benchmark.stats else None
