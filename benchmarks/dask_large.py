"""convlab.dask on an image that one worker must not hold: time, throughput and peak memory.

    python benchmarks/dask_large.py --size 16384 --kernel 31 --chunk 2048 --scheduler distributed
    python benchmarks/dask_large.py --size 4096 --kernel 31 --chunk 1024 --scheduler threads --in-memory

The image (N=1, C channels, size x size, float32) is drawn chunk by chunk where the graph runs,
convolved ("same" padding, C -> C channels) and summed, so no process ever needs all of it.
``distributed`` runs a LocalCluster of ``--workers`` processes (one thread each) on 127.0.0.1
with ``--memory-limit`` per worker. Peak memory per process: the resident set (ru_maxrss, which
includes the interpreter and libraries) of the timed run, and with ``--trace`` NumPy's own
allocations (tracemalloc, in a second run: tracing slows the scheduler). ``--in-memory``
also times ``convlab.conv2d`` on the whole image in this process, for the throughput ratio.
Prints one JSON object (and writes it to ``--out`` if given).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import time
import tracemalloc

import numpy as np


def _image(size, channels, chunk, seed=0):
    import dask.array as da

    return da.random.default_rng(seed).random((1, channels, size, size), dtype=np.float32,
                                              chunks=(1, channels, chunk, chunk))


def _weight(channels, kernel):
    w = np.random.default_rng(1).standard_normal((channels, channels, kernel, kernel)).astype(np.float32)
    return w / np.float32(np.sqrt(channels * kernel * kernel))


def _graph(args):
    import convlab.dask as cd

    y = cd.conv2d(_image(args.size, args.channels, args.chunk), _weight(args.channels, args.kernel),
                  padding="same", algorithm=args.algorithm)
    return y.sum(dtype=np.float64)


def _start_trace():
    tracemalloc.start()


def _stop_trace():
    """NumPy's peak bytes since the trace started."""
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def _max_rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run(args) -> dict:
    import dask

    flops = 2.0 * args.size ** 2 * args.channels ** 2 * args.kernel ** 2
    image_bytes = 4 * args.channels * args.size ** 2
    warm = argparse.Namespace(**{**vars(args), "size": min(args.size, args.chunk)})
    result = dict(size=args.size, channels=args.channels, kernel=args.kernel, chunk=args.chunk,
                  scheduler=args.scheduler, algorithm=args.algorithm, image_mib=image_bytes / 2**20,
                  machine=f"{platform.machine()} {os.cpu_count()} cores ({platform.processor() or 'cpu'})",
                  load_average=os.getloadavg(), date=datetime.datetime.now(datetime.timezone.utc).isoformat(),
                  numpy=np.__version__, dask=dask.__version__)
    if args.scheduler == "distributed":
        import distributed

        result["distributed"] = distributed.__version__
        result.update(workers=args.workers, memory_limit=args.memory_limit)
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                      host="127.0.0.1", dashboard_address=None,
                                      memory_limit=args.memory_limit) as cluster, distributed.Client(cluster) as c:
            c.compute(_graph(warm), sync=True)  # imports and caches, not timed
            result["rss_mib_per_process_before"] = [v / 2**20 for v in c.run(_max_rss).values()]
            t0 = time.perf_counter()
            total = c.compute(_graph(args), sync=True)
            seconds = time.perf_counter() - t0
            rss = list(c.run(_max_rss).values())
            if args.trace:
                c.run(_start_trace)
                c.compute(_graph(args), sync=True)
                result["peak_numpy_mib_per_process"] = [v / 2**20 for v in c.run(_stop_trace).values()]
    else:
        dask.compute(_graph(warm), scheduler="threads", num_workers=args.workers)
        result["rss_mib_per_process_before"] = [_max_rss() / 2**20]
        t0 = time.perf_counter()
        total, = dask.compute(_graph(args), scheduler="threads", num_workers=args.workers)
        seconds = time.perf_counter() - t0
        rss = [_max_rss()]
        if args.trace:
            _start_trace()
            dask.compute(_graph(args), scheduler="threads", num_workers=args.workers)
            result["peak_numpy_mib_per_process"] = [_stop_trace() / 2**20]
    result.update(seconds=seconds, gflops=flops / seconds / 1e9, mpixels_per_s=args.size ** 2 / seconds / 1e6,
                  sum=float(total), peak_rss_mib_per_process=[v / 2**20 for v in rss])
    if args.in_memory:
        import convlab

        x = _image(args.size, args.channels, args.chunk).compute()
        w = _weight(args.channels, args.kernel)
        convlab.conv2d(x[..., :2 * args.chunk, :2 * args.chunk], w, padding="same", algorithm=args.algorithm)
        t0 = time.perf_counter()
        y = convlab.conv2d(x, w, padding="same", algorithm=args.algorithm)
        result["in_memory_seconds"] = time.perf_counter() - t0
        result["in_memory_sum"] = float(y.sum(dtype=np.float64))
        result["dask_over_in_memory_time"] = seconds / result["in_memory_seconds"]
    return result


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=16384)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--kernel", type=int, default=31)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--scheduler", choices=["threads", "distributed"], default="threads")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GiB")
    p.add_argument("--algorithm", default="auto")
    p.add_argument("--in-memory", action="store_true")
    p.add_argument("--trace", action="store_true")
    p.add_argument("--out")
    args = p.parse_args(argv)
    result = run(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
