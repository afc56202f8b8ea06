"""convlab.training.parallel_map: the serial result, in order, from other processes."""
import os

from convlab.training import parallel_map


def _square_where(job):
    return job * job, os.getpid()


def test_parallel_map_keeps_order_and_runs_in_workers():
    jobs = list(range(7))
    serial = parallel_map(_square_where, jobs, workers=1)
    forked = parallel_map(_square_where, jobs, workers=2)
    assert [v for v, _ in forked] == [v for v, _ in serial] == [j * j for j in jobs]
    assert {pid for _, pid in serial} == {os.getpid()}
    assert os.getpid() not in {pid for _, pid in forked}
